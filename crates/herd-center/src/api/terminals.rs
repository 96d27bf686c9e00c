//! Terminal endpoints: enrolment (with an enrolment token, no certificate yet), then check-in
//! and events over mutual TLS, where the client certificate is the terminal's identity; and
//! the push connection (`/v1/wait`) that tells a terminal to check in now.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use herd_proto::api::{
    CertificateRenewal, CertificateRenewed, CheckinRequest, CheckinResponse, EnrolRequest,
    EnrolResponse, ErrorBody, EventAck, EventBatch,
};
use herd_proto::site::WaitResponse;

use super::extract::{JsonBody, Query, TerminalIdentity};
use super::listener::ConnInfo;
use crate::error::{CenterError, ErrorKind};
use crate::wait::WaitOutcome;
use crate::{Center, CenterResult, CheckinAnswer};

/// Enrol a terminal: trade an enrolment token and a CSR for a client certificate.
#[utoipa::path(
    post, path = "/v1/enrol", tag = "terminals",
    request_body = EnrolRequest,
    responses(
        (status = 201, body = EnrolResponse, description = "Enrolled; keep the certificate with the key the CSR was made from."),
        (status = 400, body = ErrorBody, description = "`bad_request`"),
        (status = 422, body = ErrorBody, description = "`csr_invalid`: the CSR cannot be parsed or its signature is wrong"),
        (status = 403, body = ErrorBody, description = "`enrolment_token_invalid`"),
        (status = 409, body = ErrorBody, description = "`terminal_exists`"),
    )
)]
pub async fn enrol(
    State(center): State<Arc<Center>>,
    conn: ConnInfo,
    JsonBody(request): JsonBody<EnrolRequest>,
) -> CenterResult<(StatusCode, Json<EnrolResponse>)> {
    let response = center.enrol(request, conn.remote.ip()).await?;
    Ok((StatusCode::CREATED, Json(response)))
}

/// Check in: report the inventory, receive the plan (computed, stored, returned).
#[utoipa::path(
    post, path = "/v1/checkin", tag = "terminals",
    request_body = CheckinRequest,
    responses(
        (status = 200, body = CheckinResponse),
        (status = 400, body = ErrorBody, description = "`bad_request`"),
        (status = 401, body = ErrorBody, description = "`client_certificate_required` or `certificate_revoked`"),
        (status = 403, body = ErrorBody, description = "`identity_mismatch`"),
        (status = 422, body = ErrorBody, description = "`inventory_invalid`, or `document_invalid` (`tuf_held` names more than 64 roles)"),
    )
)]
pub async fn checkin(
    State(center): State<Arc<Center>>,
    TerminalIdentity(terminal): TerminalIdentity,
    conn: ConnInfo,
    JsonBody(request): JsonBody<CheckinRequest>,
) -> CenterResult<CheckinAnswer> {
    center
        .check_in(&terminal, request, conn.remote.ip().to_string())
        .await
}

impl IntoResponse for CheckinAnswer {
    fn into_response(self) -> Response {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.into_json(),
        )
            .into_response()
    }
}

/// Deliver events from the terminal's outbox, in order; idempotent by `seq`.
#[utoipa::path(
    post, path = "/v1/events", tag = "terminals",
    request_body = EventBatch,
    responses(
        (status = 200, body = EventAck, description = "Stored; delete everything up to `acked_through` from the outbox."),
        (status = 400, body = ErrorBody, description = "`bad_request` (the message names the event and field)"),
        (status = 401, body = ErrorBody, description = "`client_certificate_required` or `certificate_revoked`"),
        (status = 413, body = ErrorBody, description = "`too_large`: more than 1000 events, or a body over its limit"),
        (status = 422, body = ErrorBody, description = "`bad_request`: events out of order, a time that is not RFC 3339, a `plan.report` that is not a plan report"),
        (status = 429, body = ErrorBody, description = "`quota_exceeded`: the terminal has `max_events_per_terminal` events stored; keep the batch and send it again later"),
    )
)]
pub async fn events(
    State(center): State<Arc<Center>>,
    TerminalIdentity(terminal): TerminalIdentity,
    JsonBody(batch): JsonBody<EventBatch>,
) -> CenterResult<Json<EventAck>> {
    center.append_events(&terminal, batch).await.map(Json)
}

/// Renew the calling terminal's client certificate: a new one for the same terminal, from a
/// CSR for a fresh key, with the center's current CA certificates. Authenticated by the
/// certificate it renews — the current one, or the one the terminal renewed from last (whose
/// renewal answer may have been lost); that one stays valid until it expires or the next
/// renewal. A refused renewal changes nothing.
#[utoipa::path(
    post, path = "/v1/renew", tag = "terminals",
    request_body = CertificateRenewal,
    responses(
        (status = 200, body = CertificateRenewed, description = "Renewed; use the new certificate, with the key the CSR was made from, from the next connection."),
        (status = 401, body = ErrorBody, description = "`client_certificate_required` or `certificate_revoked`"),
        (status = 422, body = ErrorBody, description = "`csr_invalid`"),
    )
)]
pub async fn renew(
    State(center): State<Arc<Center>>,
    conn: ConnInfo,
    JsonBody(request): JsonBody<CertificateRenewal>,
) -> CenterResult<Json<CertificateRenewed>> {
    center
        .renew_certificate(conn.peer.as_deref(), request)
        .await
        .map(Json)
}

/// The query of `/v1/wait`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WaitParams {
    /// The token of the last answer (absent: answered at once with the current one).
    #[param(max_length = 200)]
    after: Option<String>,
    /// How long to hold, in seconds (default 240, at most 300).
    #[param(minimum = 1, maximum = 300)]
    timeout_secs: Option<u64>,
}

/// The push connection: held until what a terminal's plan or signed metadata depend on changes
/// (answered `changed: true`: check in now), or the timeout passes (`changed: false`: ask again
/// with the same token). A stale or absent `after` is answered at once.
#[utoipa::path(
    get, path = "/v1/wait", tag = "terminals", params(WaitParams),
    responses(
        (status = 200, body = WaitResponse),
        (status = 401, body = ErrorBody, description = "`client_certificate_required` or `certificate_revoked`"),
        (status = 503, body = ErrorBody, description = "`unavailable`: this process holds `max_waits` waits; check in at the interval and try again after `Retry-After` seconds"),
    )
)]
pub async fn wait(
    State(center): State<Arc<Center>>,
    TerminalIdentity(terminal): TerminalIdentity,
    Query(params): Query<WaitParams>,
) -> Response {
    let timeout = crate::wait::wait_timeout(params.timeout_secs);
    match center
        .wait_for_change(&terminal.id, params.after.as_deref(), timeout)
        .await
    {
        WaitOutcome::Answered(answer) => Json(answer).into_response(),
        WaitOutcome::Full { retry_after_secs } => {
            let mut response = CenterError::new(
                ErrorKind::Unavailable,
                "this server holds as many push connections as it may (max_waits); check in at \
                 the interval and try to wait again later",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            response
        }
    }
}
