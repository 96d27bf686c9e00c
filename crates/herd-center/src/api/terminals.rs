//! Terminal endpoints: enrolment (with an enrolment token, no certificate yet), then check-in
//! and events over mutual TLS, where the client certificate is the terminal's identity.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use herd_core::{Timestamp, check_identifier};
use herd_proto::api::{
    CheckinRequest, CheckinResponse, EnrolRequest, EnrolResponse, ErrorBody, EventAck, EventBatch,
    PlacementRule, PlanReport, codes,
};
use herd_store::{EventRow, NewTerminal, UNKNOWN_GROUP};

use super::{MAX_JSON_BODY, parse_json, read_body};
use crate::auth::secret_hash;
use crate::checkin::CheckinAnswer;
use crate::error::{ApiErr, ApiResult};
use crate::listener::ConnInfo;
use crate::placement::{self, Candidate};
use crate::{Center, unix_now};

/// The most events one batch may carry.
const MAX_EVENTS_PER_BATCH: usize = 1000;

/// Enrol a terminal: trade an enrolment token and a CSR for a client certificate.
#[utoipa::path(
    post, path = "/v1/enrol", tag = "terminals",
    request_body = EnrolRequest,
    responses(
        (status = 201, body = EnrolResponse, description = "Enrolled; keep the certificate with the key the CSR was made from."),
        (status = 400, body = ErrorBody, description = "`bad_request` or `csr_invalid`"),
        (status = 403, body = ErrorBody, description = "`enrolment_token_invalid`"),
        (status = 409, body = ErrorBody, description = "`terminal_exists`"),
    )
)]
pub async fn enrol(
    State(center): State<Arc<Center>>,
    Extension(conn): Extension<ConnInfo>,
    body: Body,
) -> ApiResult<(StatusCode, Json<EnrolResponse>)> {
    let bytes = read_body(body, MAX_JSON_BODY, "the enrolment request").await?;
    let request: EnrolRequest = parse_json("the enrolment request", &bytes)?;
    let result = enrol_terminal(&center, &conn, request).await;
    match &result {
        Ok(_) => center.metrics.enrolments.fetch_add(1, Relaxed),
        Err(_) => center.metrics.enrolments_refused.fetch_add(1, Relaxed),
    };
    result.map(|response| (StatusCode::CREATED, Json(response)))
}

async fn enrol_terminal(
    center: &Center,
    conn: &ConnInfo,
    request: EnrolRequest,
) -> ApiResult<EnrolResponse> {
    let id = match request.id {
        Some(id) => {
            check_identifier(&id).map_err(|message| {
                ApiErr::bad_request(format!("the enrolment request: $.id: {message}"))
            })?;
            id
        }
        None => format!("t-{}", &secret_hash(&crate::auth::new_secret())[..12]),
    };
    for (path, value) in [
        ("$.hardware.kind", &request.hardware.kind),
        ("$.hardware.platform", &request.hardware.platform),
    ] {
        check_identifier(value).map_err(|message| {
            ApiErr::bad_request(format!("the enrolment request: {path}: {message}"))
        })?;
    }
    if let Some(tz) = &request.tz {
        herd_core::TzOffset::parse(tz).map_err(|message| {
            ApiErr::bad_request(format!("the enrolment request: $.tz: {message}"))
        })?;
    }
    let issued = center
        .ca
        .sign_terminal_csr(&request.csr_pem, &id, center.config.terminal_cert_days)
        .map_err(|err| ApiErr::new(StatusCode::BAD_REQUEST, codes::CSR_INVALID, err.to_string()))?;

    let rules: Vec<PlacementRule> = center
        .store
        .rules()
        .await?
        .iter()
        .filter_map(|row| serde_json::from_str(&row.rule).ok())
        .collect();
    let group = placement::place(
        &rules,
        Candidate {
            kind: &request.hardware.kind,
            platform: &request.hardware.platform,
            address: conn.remote.ip(),
            user: request.user.as_deref(),
        },
    )
    .unwrap_or(UNKNOWN_GROUP)
    .to_owned();

    let row = center
        .store
        .enrol(
            &secret_hash(&request.token),
            unix_now(),
            NewTerminal {
                id: id.clone(),
                user: request.user,
                hardware: serde_json::to_string(&request.hardware).expect("hardware serialises"),
                tz: request.tz,
                group: group.clone(),
                cert_sha256: issued.cert_sha256,
                enrolled_at: unix_now(),
                address: conn.remote.ip().to_string(),
            },
        )
        .await?;
    tracing::info!(terminal = %row.id, group = %row.group, address = %conn.remote.ip(), "terminal enrolled");
    Ok(EnrolResponse {
        terminal: row.id,
        certificate_pem: issued.cert_pem,
        ca_pem: center.ca.cert_pem().to_owned(),
        group,
        checkin_interval_secs: center.next_checkin_secs(),
    })
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
        (status = 422, body = ErrorBody, description = "`inventory_invalid`"),
    )
)]
pub async fn checkin(
    State(center): State<Arc<Center>>,
    Extension(conn): Extension<ConnInfo>,
    body: Body,
) -> ApiResult<CheckinAnswer> {
    let terminal = center.terminal(&conn).await?;
    let bytes = read_body(body, MAX_JSON_BODY, "the check-in").await?;
    let request: CheckinRequest = parse_json("the check-in", &bytes)?;
    center
        .check_in(&terminal, request, conn.remote.ip().to_string())
        .await
}

/// Deliver events from the terminal's outbox, in order; idempotent by `seq`.
#[utoipa::path(
    post, path = "/v1/events", tag = "terminals",
    request_body = EventBatch,
    responses(
        (status = 200, body = EventAck, description = "Stored; delete everything up to `acked_through` from the outbox."),
        (status = 400, body = ErrorBody, description = "`bad_request` (the message names the event and field)"),
        (status = 401, body = ErrorBody, description = "`client_certificate_required` or `certificate_revoked`"),
    )
)]
pub async fn events(
    State(center): State<Arc<Center>>,
    Extension(conn): Extension<ConnInfo>,
    body: Body,
) -> ApiResult<Json<EventAck>> {
    let terminal = center.terminal(&conn).await?;
    let bytes = read_body(body, 8 * MAX_JSON_BODY, "the event batch").await?;
    let batch: EventBatch = parse_json("the event batch", &bytes)?;
    if batch.events.len() > MAX_EVENTS_PER_BATCH {
        return Err(ApiErr::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::TOO_LARGE,
            format!(
                "the batch has {} events; send at most {MAX_EVENTS_PER_BATCH} at a time",
                batch.events.len()
            ),
        ));
    }
    let received_at = unix_now();
    let mut rows = Vec::with_capacity(batch.events.len());
    let mut previous = 0u64;
    for (i, event) in batch.events.into_iter().enumerate() {
        let at_path = |field: &str| format!("the event batch: $.events[{i}].{field}");
        if event.seq == 0 || event.seq <= previous {
            return Err(ApiErr::bad_request(format!(
                "{}: seq {} must be at least 1 and greater than the previous event's ({previous})",
                at_path("seq"),
                event.seq
            )));
        }
        previous = event.seq;
        let at = Timestamp::parse(&event.at)
            .map_err(|message| ApiErr::bad_request(format!("{}: {message}", at_path("at"))))?;
        if event.kind.is_empty()
            || event.kind.len() > 64
            || !event
                .kind
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(ApiErr::bad_request(format!(
                "{}: {:?} is not an event kind (1-64 of a-z, 0-9, '.', '_', '-')",
                at_path("kind"),
                event.kind
            )));
        }
        if event.kind == "plan.report" {
            let report: Result<PlanReport, _> = serde_json::from_value(event.data.clone());
            if let Err(err) = report {
                return Err(ApiErr::bad_request(format!(
                    "{}: not a plan report: {err}",
                    at_path("data")
                )));
            }
        }
        rows.push(EventRow {
            terminal: terminal.id.clone(),
            seq: event.seq,
            at: at.unix_seconds(),
            kind: event.kind,
            data: event.data.to_string(),
            received_at,
        });
    }
    if rows.is_empty() {
        return Err(ApiErr::bad_request(
            "the event batch: $.events: send at least one event",
        ));
    }
    let outcome = center.store.events_append(&rows).await?;
    center
        .metrics
        .events_accepted
        .fetch_add(outcome.accepted, Relaxed);
    center
        .metrics
        .events_duplicate
        .fetch_add(outcome.duplicates, Relaxed);
    Ok(Json(EventAck {
        acked_through: outcome.last_seq,
        accepted: outcome.accepted,
        duplicates: outcome.duplicates,
    }))
}
