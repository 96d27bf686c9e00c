//! Fault recovery's endpoints: a terminal reads its verdicts (mutual TLS); operators list and
//! show fault buckets and edit the fault database and the replacement table. Fault reports
//! themselves arrive as `fault.report` events (`/v1/events`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use herd_proto::api::ErrorBody;
use herd_proto::fault::{
    FaultBucketDetail, FaultBucketList, FaultRule, FaultRuleList, FaultVerdicts, ReplacementEntry,
    ReplacementList,
};

use super::extract::{JsonBody, Operator, Path, Query, TerminalIdentity};
use crate::{Center, CenterResult};

/// Which verdicts a reader understands.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VerdictParams {
    /// List `held` verdicts too (a replacement rolling out in rings that have not reached the
    /// terminal). Agents that know the decision ask for them; an older agent, which would
    /// refuse the whole answer for a decision it does not know, is not sent them.
    held: Option<bool>,
}

impl VerdictParams {
    pub(super) fn held(&self) -> bool {
        self.held.unwrap_or(false)
    }
}

/// The calling terminal's latest fault verdicts, newest first: the cause and remedy of a
/// known fault, or the alternative to replace a failing program with.
#[utoipa::path(get, path = "/v1/fault-verdicts", tag = "terminals", params(VerdictParams),
    responses((status = 200, body = FaultVerdicts), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn verdicts(
    State(center): State<Arc<Center>>,
    TerminalIdentity(terminal): TerminalIdentity,
    Query(params): Query<VerdictParams>,
) -> CenterResult<Json<FaultVerdicts>> {
    center
        .fault_verdicts(&terminal.id, params.held())
        .await
        .map(Json)
}

/// Fault buckets (faults with the same signature), most recently seen first.
#[utoipa::path(get, path = "/v1/faults", tag = "operators",
    responses((status = 200, body = FaultBucketList), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(center): State<Arc<Center>>,
    _: Operator,
) -> CenterResult<Json<FaultBucketList>> {
    center.fault_buckets().await.map(Json)
}

/// One bucket (by id or an unambiguous prefix) with its latest faults and their verdicts.
#[utoipa::path(get, path = "/v1/faults/{bucket}", tag = "operators",
    params(("bucket" = String, Path, description = "The bucket id, or a prefix of it.")),
    responses((status = 200, body = FaultBucketDetail), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "`conflict`: the prefix is ambiguous")))]
pub async fn show(
    State(center): State<Arc<Center>>,
    _: Operator,
    Path(bucket): Path<String>,
) -> CenterResult<Json<FaultBucketDetail>> {
    center.fault_bucket(&bucket).await.map(Json)
}

/// The fault database, in the order rules are tried (by id).
#[utoipa::path(get, path = "/v1/fault-rules", tag = "operators",
    responses((status = 200, body = FaultRuleList), (status = 401, body = ErrorBody)))]
pub async fn list_rules(
    State(center): State<Arc<Center>>,
    _: Operator,
) -> CenterResult<Json<FaultRuleList>> {
    center.fault_rules().await.map(Json)
}

/// Add or replace a rule of the fault database.
#[utoipa::path(put, path = "/v1/fault-rules/{id}", tag = "operators",
    params(("id" = String, Path, description = "The rule id.")),
    request_body = FaultRule,
    responses((status = 200, body = FaultRule), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody, description = "`bad_request`: the rule does not validate, or its id differs from the path's")))]
pub async fn put_rule(
    State(center): State<Arc<Center>>,
    _: Operator,
    Path(id): Path<String>,
    JsonBody(rule): JsonBody<FaultRule>,
) -> CenterResult<Json<FaultRule>> {
    center.put_fault_rule(&id, rule).await.map(Json)
}

/// Delete a rule of the fault database.
#[utoipa::path(delete, path = "/v1/fault-rules/{id}", tag = "operators",
    params(("id" = String, Path, description = "The rule id.")),
    responses((status = 204, description = "Deleted."), (status = 404, body = ErrorBody)))]
pub async fn delete_rule(
    State(center): State<Arc<Center>>,
    _: Operator,
    Path(id): Path<String>,
) -> CenterResult<StatusCode> {
    center.delete_fault_rule(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The replacement table.
#[utoipa::path(get, path = "/v1/replacements", tag = "operators",
    responses((status = 200, body = ReplacementList), (status = 401, body = ErrorBody)))]
pub async fn list_replacements(
    State(center): State<Arc<Center>>,
    _: Operator,
) -> CenterResult<Json<ReplacementList>> {
    center.replacements().await.map(Json)
}

/// Add or replace the approved alternatives of a program on a platform.
#[utoipa::path(put, path = "/v1/replacements/{program}/{platform}", tag = "operators",
    params(("program" = String, Path, description = "The failing program."),
        ("platform" = String, Path, description = "The platform.")),
    request_body = ReplacementEntry,
    responses((status = 200, body = ReplacementEntry), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody, description = "`bad_request`: the entry does not validate, or its program and platform differ from the path's")))]
pub async fn put_replacement(
    State(center): State<Arc<Center>>,
    _: Operator,
    Path((program, platform)): Path<(String, String)>,
    JsonBody(entry): JsonBody<ReplacementEntry>,
) -> CenterResult<Json<ReplacementEntry>> {
    center
        .put_replacement(&program, &platform, entry)
        .await
        .map(Json)
}

/// Delete the alternatives of a program on a platform.
#[utoipa::path(delete, path = "/v1/replacements/{program}/{platform}", tag = "operators",
    params(("program" = String, Path, description = "The failing program."),
        ("platform" = String, Path, description = "The platform.")),
    responses((status = 204, description = "Deleted."), (status = 404, body = ErrorBody)))]
pub async fn delete_replacement(
    State(center): State<Arc<Center>>,
    _: Operator,
    Path((program, platform)): Path<(String, String)>,
) -> CenterResult<StatusCode> {
    center.delete_replacement(&program, &platform).await?;
    Ok(StatusCode::NO_CONTENT)
}

impl super::extract::JsonRequest for FaultRule {
    const WHAT: &'static str = "the fault rule";
}

impl super::extract::JsonRequest for ReplacementEntry {
    const WHAT: &'static str = "the replacement entry";
}
