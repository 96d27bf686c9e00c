//! Operator endpoints: the catalog and coverage matrix, the fleet (terminals with their plan,
//! last check-in and network map; exposed terminals), groups and placement rules, tokens.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderName, StatusCode, header};
use herd_proto::api::{
    CaInfo, CaInstall, ConsoleLink, CoverageMatrix, ErrorBody, GroupDoc, GroupList, NewApiToken,
    NewConsoleLink, NewEnrolmentToken, PlacementRules, TerminalDetail, TerminalGap, TerminalList,
    TokenCreated, TokenList, TokenRevoked,
};
use herd_proto::catalog::CatalogDoc;
use serde::Deserialize;

use super::extract::{JsonBody, Operator, OperatorToken, Path, Query};
use crate::fleet::FleetQuery;
use crate::{Center, CenterResult};

/// The merged catalog every plan is computed from (all vendors' feeds).
#[utoipa::path(get, path = "/v1/catalog", tag = "operators",
    responses((status = 200, description = "A `herd.catalog/v1` document.", body = Object), (status = 401, body = ErrorBody)))]
pub async fn catalog(
    State(center): State<Arc<Center>>,
    _: Operator,
) -> CenterResult<Json<CatalogDoc>> {
    Ok(Json(center.catalog().doc()))
}

/// Threats × products: which product covers which threat, since when.
#[utoipa::path(get, path = "/v1/coverage", tag = "operators",
    responses((status = 200, body = CoverageMatrix), (status = 401, body = ErrorBody)))]
pub async fn coverage(
    State(center): State<Arc<Center>>,
    _: Operator,
) -> CenterResult<Json<CoverageMatrix>> {
    Ok(Json(center.catalog().coverage_matrix()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only terminals of this group.
    group: Option<String>,
    /// Only terminals whose current plan has this action: none, update, switch, exposed.
    #[param(pattern = r"^(none|update|switch|exposed)$")]
    action: Option<String>,
    /// Continue after this terminal id (the `next` of the previous page).
    after: Option<String>,
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// The query of `/v1/exposed`: a listing whose action is fixed.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExposedParams {
    /// Only terminals of this group.
    group: Option<String>,
    /// Continue after this terminal id (the `next` of the previous page).
    after: Option<String>,
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

impl From<ExposedParams> for FleetQuery {
    fn from(params: ExposedParams) -> FleetQuery {
        FleetQuery {
            group: params.group,
            action: None,
            after: params.after,
            limit: params.limit,
            search: None,
        }
    }
}

impl From<ListParams> for FleetQuery {
    fn from(params: ListParams) -> FleetQuery {
        FleetQuery {
            group: params.group,
            action: params.action,
            after: params.after,
            limit: params.limit,
            search: None,
        }
    }
}

/// The fleet, ordered by terminal id, a page at a time.
#[utoipa::path(get, path = "/v1/terminals", tag = "operators", params(ListParams),
    responses((status = 200, body = TerminalList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_terminals(
    State(center): State<Arc<Center>>,
    _: Operator,
    Query(params): Query<ListParams>,
) -> CenterResult<Json<TerminalList>> {
    center.terminals(params.into()).await.map(Json)
}

/// Terminals whose current plan is `exposed`: no product they may run covers every required threat.
#[utoipa::path(get, path = "/v1/exposed", tag = "operators", params(ExposedParams),
    responses((status = 200, body = TerminalList), (status = 401, body = ErrorBody)))]
pub async fn exposed(
    State(center): State<Arc<Center>>,
    _: Operator,
    Query(params): Query<ExposedParams>,
) -> CenterResult<Json<TerminalList>> {
    center.exposed(params.into()).await.map(Json)
}

/// One terminal: its inventory, current plan, last report and network map.
#[utoipa::path(get, path = "/v1/terminals/{id}", tag = "operators",
    params(("id" = String, Path, description = "The terminal id.")),
    responses((status = 200, body = TerminalDetail), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn terminal_detail(
    State(center): State<Arc<Center>>,
    _: Operator,
    Path(id): Path<String>,
) -> CenterResult<Json<TerminalDetail>> {
    center.terminal_detail(&id).await.map(Json)
}

/// A terminal's current plan, exactly as it was handed to the terminal.
#[utoipa::path(get, path = "/v1/terminals/{id}/plan", tag = "operators",
    params(("id" = String, Path, description = "The terminal id.")),
    responses((status = 200, description = "The plan (SPEC §4).", body = Object), (status = 404, body = ErrorBody, description = "No such terminal, or it has not checked in yet.")))]
pub async fn terminal_plan(
    State(center): State<Arc<Center>>,
    _: Operator,
    Path(id): Path<String>,
) -> CenterResult<([(HeaderName, &'static str); 1], String)> {
    let plan = center.terminal_plan(&id).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], plan))
}

/// A terminal's whole gaps: every threat its plan lists only the first of (SPEC §4).
#[utoipa::path(get, path = "/v1/terminals/{id}/gap", tag = "operators",
    params(("id" = String, Path, description = "The terminal id.")),
    responses((status = 200, body = TerminalGap), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody, description = "No such terminal."), (status = 409, body = ErrorBody, description = "`conflict`: its last inventory does not fit the current catalog.")))]
pub async fn terminal_gap(
    State(center): State<Arc<Center>>,
    _: Operator,
    Path(id): Path<String>,
) -> CenterResult<Json<TerminalGap>> {
    center.terminal_gap(&id).await.map(Json)
}

/// Remove a terminal: its certificate stops working at once on every center process.
#[utoipa::path(delete, path = "/v1/terminals/{id}", tag = "operators",
    params(("id" = String, Path, description = "The terminal id.")),
    responses((status = 204, description = "Deleted."), (status = 404, body = ErrorBody)))]
pub async fn delete_terminal(
    State(center): State<Arc<Center>>,
    _: Operator,
    Path(id): Path<String>,
) -> CenterResult<StatusCode> {
    center.delete_terminal(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Groups, each with its policy and how many terminals are in it.
#[utoipa::path(get, path = "/v1/groups", tag = "operators",
    responses((status = 200, body = GroupList), (status = 401, body = ErrorBody)))]
pub async fn list_groups(
    State(center): State<Arc<Center>>,
    _: Operator,
) -> CenterResult<Json<GroupList>> {
    center.groups().await.map(Json)
}

/// Create or replace a group and its policy. Its terminals plan with it from their next check-in.
#[utoipa::path(put, path = "/v1/groups/{id}", tag = "operators",
    params(("id" = String, Path, description = "The group id (an identifier).", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")),
    request_body = GroupDoc,
    responses((status = 200, body = GroupDoc), (status = 422, body = ErrorBody, description = "`bad_request`: the policy does not validate against the catalog, has a `tz`, or the id differs from the path's")))]
pub async fn put_group(
    State(center): State<Arc<Center>>,
    _: Operator,
    Path(id): Path<String>,
    JsonBody(group): JsonBody<GroupDoc>,
) -> CenterResult<Json<GroupDoc>> {
    center.put_group(&id, group).await.map(Json)
}

/// Delete a group that no terminal and no rule uses (`unknown` cannot be deleted).
#[utoipa::path(delete, path = "/v1/groups/{id}", tag = "operators",
    params(("id" = String, Path, description = "The group id.")),
    responses((status = 204, description = "Deleted."), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "`conflict`: still in use")))]
pub async fn delete_group(
    State(center): State<Arc<Center>>,
    _: Operator,
    Path(id): Path<String>,
) -> CenterResult<StatusCode> {
    center.delete_group(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The placement rules, in evaluation order.
#[utoipa::path(get, path = "/v1/placement-rules", tag = "operators",
    responses((status = 200, body = PlacementRules), (status = 401, body = ErrorBody)))]
pub async fn get_rules(
    State(center): State<Arc<Center>>,
    _: Operator,
) -> CenterResult<Json<PlacementRules>> {
    center.rules().await.map(Json)
}

/// Replace every placement rule at once. They apply to terminals enrolling from now on.
#[utoipa::path(put, path = "/v1/placement-rules", tag = "operators",
    request_body = PlacementRules,
    responses((status = 200, body = PlacementRules), (status = 409, body = ErrorBody, description = "`conflict`: a rule names a missing group"), (status = 422, body = ErrorBody)))]
pub async fn put_rules(
    State(center): State<Arc<Center>>,
    _: Operator,
    JsonBody(rules): JsonBody<PlacementRules>,
) -> CenterResult<Json<PlacementRules>> {
    center.put_rules(rules).await.map(Json)
}

/// A new enrolment token: give it to the terminals that should enrol (shown once). With
/// `reenrol_terminal`, a one-use token with which only that enrolled terminal enrols again,
/// keeping its id and history (after its certificate expired or was lost).
#[utoipa::path(post, path = "/v1/enrolment-tokens", tag = "operators",
    request_body = NewEnrolmentToken,
    responses((status = 201, body = TokenCreated), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody, description = "`not_found`: the terminal to re-enrol is not enrolled"), (status = 422, body = ErrorBody, description = "`bad_request`: a lifetime beyond this center's cap (`max_enrol_token_days`), or a re-enrolment token for more than one use")))]
pub async fn new_enrolment_token(
    State(center): State<Arc<Center>>,
    _: Operator,
    JsonBody(request): JsonBody<NewEnrolmentToken>,
) -> CenterResult<(StatusCode, Json<TokenCreated>)> {
    let created = center.new_enrolment_token(request).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// A new API token for an operator or a vendor (shown once).
#[utoipa::path(post, path = "/v1/tokens", tag = "operators",
    request_body = NewApiToken,
    responses((status = 201, body = TokenCreated), (status = 422, body = ErrorBody, description = "`bad_request`: a vendor token without a vendor, an operator token with one, or a lifetime beyond this center's cap (`max_api_token_days`)")))]
pub async fn new_api_token(
    State(center): State<Arc<Center>>,
    _: Operator,
    JsonBody(request): JsonBody<NewApiToken>,
) -> CenterResult<(StatusCode, Json<TokenCreated>)> {
    let created = center.new_api_token(request).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// A one-time link that signs a browser in to the web console as the caller's token (shown
/// once; open it on this server before it expires). `herd console link` prints one.
#[utoipa::path(post, path = "/v1/console/links", tag = "operators",
    request_body = NewConsoleLink,
    responses((status = 201, body = ConsoleLink), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "`forbidden`: not an operator's token"), (status = 400, body = ErrorBody, description = "`bad_request`: a lifetime outside 60..=86400 seconds, or an unknown field")))]
pub async fn new_console_link(
    State(center): State<Arc<Center>>,
    OperatorToken(token): OperatorToken,
    JsonBody(request): JsonBody<NewConsoleLink>,
) -> CenterResult<(StatusCode, Json<ConsoleLink>)> {
    let ttl = request
        .ttl_secs
        .map(|secs| secs.min(i64::MAX as u64) as i64);
    let (secret, expires_at) = center
        .console_link_create(&token, &request.label, ttl)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ConsoleLink {
            path: format!("/console/link/{secret}"),
            expires_at: crate::rfc3339(expires_at),
        }),
    ))
}

/// The center's CA: its trust anchors, the issuing CA and when it expires, whether it is an
/// intermediate under an offline root.
#[utoipa::path(get, path = "/v1/ca", tag = "operators",
    responses((status = 200, body = CaInfo), (status = 401, body = ErrorBody)))]
pub async fn get_ca(State(center): State<Arc<Center>>, _: Operator) -> CenterResult<Json<CaInfo>> {
    Ok(Json(center.ca_info()?))
}

/// Installs an online intermediate CA signed by an offline root (made with
/// `herd ca intermediate`): its key is sealed before it is stored, and every center process
/// issues with it within a second. A new root while terminals trust only the current CA needs
/// `force` (those terminals must re-enrol).
#[utoipa::path(put, path = "/v1/ca", tag = "operators",
    request_body = CaInstall,
    responses((status = 200, body = CaInfo),
        (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "`conflict`: a new root while terminals trust only the current CA, or another process changed the CA first"),
        (status = 422, body = ErrorBody, description = "`document_invalid`: not an intermediate, a key that does not match, or a chain that does not reach the root")))]
pub async fn put_ca(
    State(center): State<Arc<Center>>,
    _: Operator,
    JsonBody(request): JsonBody<CaInstall>,
) -> CenterResult<Json<CaInfo>> {
    Ok(Json(center.install_ca(request).await?))
}

/// Every API and enrolment token: id (the first digits of its hash), kind, label, lifetime,
/// uses left. Never the secrets.
#[utoipa::path(get, path = "/v1/tokens", tag = "operators",
    responses((status = 200, body = TokenList), (status = 401, body = ErrorBody)))]
pub async fn list_tokens(
    State(center): State<Arc<Center>>,
    _: Operator,
) -> CenterResult<Json<TokenList>> {
    center.tokens().await.map(Json)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RevokeParams {
    /// Revoke even the last operator token still valid (then nobody can administer the
    /// center until it is restarted, which creates a new one in its data directory).
    #[serde(default)]
    force: bool,
}

/// Revoke a token: refused from now on by every center process.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "operators",
    params(("id" = String, Path, description = "The token's id as listed: 8 to 64 hex digits of its hash."), RevokeParams),
    responses((status = 200, body = TokenRevoked), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "`conflict`: several tokens have this id, or it is the last operator token (see `force`)")))]
pub async fn revoke_token(
    State(center): State<Arc<Center>>,
    _: Operator,
    Path(id): Path<String>,
    Query(params): Query<RevokeParams>,
) -> CenterResult<Json<TokenRevoked>> {
    center.revoke_token(&id, params.force).await.map(Json)
}
