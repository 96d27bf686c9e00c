//! Consent by e-mail, the operators' side: where a terminal's user is written to
//! (`PUT /v1/terminals/{id}/email`) and what was asked and answered
//! (`GET /v1/terminals/{id}/consents`). The user's side is the console's `/consent/{token}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use herd_proto::api::ErrorBody;
use herd_proto::consent::{ConsentRequestList, TerminalEmail};

use super::extract::{JsonBody, JsonRequest, Operator, Path};
use crate::{Center, CenterResult};

impl JsonRequest for TerminalEmail {
    const WHAT: &'static str = "the e-mail address";
}

/// Set (or with `null` remove) the address a terminal's user gets consent notices at: a plan
/// that asks for consent mails them accept and decline links.
#[utoipa::path(put, path = "/v1/terminals/{id}/email", tag = "operators",
    params(("id" = String, Path, description = "The terminal id.")),
    request_body = TerminalEmail,
    responses(
        (status = 204, description = "Set."),
        (status = 422, body = ErrorBody, description = "`document_invalid`: not an e-mail address, or longer than one"),
        (status = 404, body = ErrorBody)))]
pub async fn put_email(
    State(center): State<Arc<Center>>,
    _: Operator,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<TerminalEmail>,
) -> CenterResult<StatusCode> {
    center.set_terminal_email(&id, body).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The consent questions mailed for a terminal, newest first, with their answers.
#[utoipa::path(get, path = "/v1/terminals/{id}/consents", tag = "operators",
    params(("id" = String, Path, description = "The terminal id.")),
    responses((status = 200, body = ConsentRequestList), (status = 404, body = ErrorBody)))]
pub async fn list_consents(
    State(center): State<Arc<Center>>,
    _: Operator,
    Path(id): Path<String>,
) -> CenterResult<Json<ConsentRequestList>> {
    center.consent_requests(&id).await.map(Json)
}
