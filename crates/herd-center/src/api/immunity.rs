//! Herd immunity's operator endpoints (issue 13): verdicts on files by SHA-256, which publish
//! or remove their signature in Herd's own set at once, and the set's listing.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use herd_proto::api::{ErrorBody, HerdSignatureDoc, VerdictDoc, VerdictOutcome};

use super::extract::{JsonBody, JsonRequest, Operator};
use crate::{Center, CenterResult};

impl JsonRequest for VerdictDoc {
    const WHAT: &'static str = "the verdict";
}

/// Judge a file: `malicious` publishes its exact-hash signature in Herd's own signature set
/// (signed and pushed at once), `benign` removes it.
#[utoipa::path(post, path = "/v1/verdicts", tag = "operators",
    request_body = VerdictDoc,
    responses((status = 200, body = VerdictOutcome), (status = 400, body = ErrorBody, description = "`bad_request`: the SHA-256, size, threat or verdict is not valid")))]
pub async fn post_verdict(
    State(center): State<Arc<Center>>,
    _: Operator,
    JsonBody(verdict): JsonBody<VerdictDoc>,
) -> CenterResult<Json<VerdictOutcome>> {
    center.verdict(verdict, "operator").await.map(Json)
}

/// Herd's own signature set: every signature, by SHA-256.
#[utoipa::path(get, path = "/v1/herd-set", tag = "operators",
    responses((status = 200, body = Vec<HerdSignatureDoc>), (status = 401, body = ErrorBody)))]
pub async fn list_herd_set(
    State(center): State<Arc<Center>>,
    _: Operator,
) -> CenterResult<Json<Vec<HerdSignatureDoc>>> {
    center.herd_signatures().await.map(Json)
}
