//! API v1: the router, the OpenAPI document generated from the handlers' annotations (so the
//! served `/v1/openapi.json` cannot drift from the code), and the helpers every handler uses
//! to read bodies and turn results into responses. Handlers are thin: they authenticate,
//! parse, call the [`Center`](super::Center), and answer.

mod operators;
mod terminals;
mod vendors;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use herd_proto::api::{self as wire, codes};
use serde::de::DeserializeOwned;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Center;
use super::error::{ApiErr, ApiResult};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herd center API",
        version = "1",
        description = "Vendors publish coverage and packages; terminals enrol, check in and receive plans; operators see the fleet. Terminal endpoints need the client certificate issued at enrolment (mutual TLS); vendor and operator endpoints need `Authorization: Bearer <token>`. Every error is `{\"error\": {\"code\", \"message\", \"problems\"}}` with a stable code."
    ),
    components(schemas(wire::ErrorBody, wire::ApiError, wire::ApiProblem)),
    tags(
        (name = "terminals", description = "Enrolment, check-in and events (mutual TLS)."),
        (name = "vendors", description = "Catalog feeds and packages (vendor or operator token)."),
        (name = "operators", description = "The fleet, the catalog, groups and tokens (operator token)."),
        (name = "public", description = "Health, the CA certificate, this document.")
    )
)]
struct ApiDoc;

/// The application and its OpenAPI document. Everything a test needs to call the API in
/// process, without a socket.
pub fn router(center: Arc<Center>) -> (Router, utoipa::openapi::OpenApi) {
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(ca_pem))
        .routes(routes!(terminals::enrol))
        .routes(routes!(terminals::checkin))
        .routes(routes!(terminals::events))
        .routes(routes!(vendors::publish_feed))
        .routes(routes!(vendors::upload_package, vendors::download_package))
        .routes(routes!(operators::catalog))
        .routes(routes!(operators::coverage))
        .routes(routes!(operators::list_terminals))
        .routes(routes!(
            operators::terminal_detail,
            operators::delete_terminal
        ))
        .routes(routes!(operators::terminal_plan))
        .routes(routes!(operators::exposed))
        .routes(routes!(operators::list_groups))
        .routes(routes!(operators::put_group, operators::delete_group))
        .routes(routes!(operators::get_rules, operators::put_rules))
        .routes(routes!(operators::new_enrolment_token))
        .routes(routes!(operators::new_api_token))
        .with_state(center.clone())
        .split_for_parts();
    let openapi_json: Arc<str> = openapi
        .to_pretty_json()
        .expect("the OpenAPI document serialises")
        .into();
    let router = router
        .route(
            "/v1/openapi.json",
            get(move || {
                let json = openapi_json.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        json.to_string(),
                    )
                }
            }),
        )
        .route("/metrics", get(metrics).with_state(center.clone()))
        .fallback(|| async {
            ApiErr::not_found("no such endpoint; the API is described at /v1/openapi.json")
        })
        .layer(axum::middleware::from_fn_with_state(
            center,
            count_responses,
        ));
    (router, openapi)
}

async fn count_responses(
    State(center): State<Arc<Center>>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    center.metrics.count_status(response.status().as_u16());
    response
}

/// Liveness: answers when the process serves requests.
#[utoipa::path(get, path = "/v1/health", tag = "public", responses((status = 200, description = "The center is up.")))]
async fn health() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// The center's CA certificate (PEM). Agents and clients pin it; fetching it over an
/// unauthenticated channel is trust-on-first-use, so compare its fingerprint out of band.
#[utoipa::path(get, path = "/v1/ca.pem", tag = "public", responses((status = 200, description = "PEM certificate", content_type = "application/x-pem-file")))]
async fn ca_pem(State(center): State<Arc<Center>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        center.ca.cert_pem().to_owned(),
    )
}

async fn metrics(State(center): State<Arc<Center>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        center.metrics.render(),
    )
}

/// Reads a whole request body, refusing more than `limit` bytes with `too_large`.
pub async fn read_body(body: Body, limit: u64, what: &str) -> ApiResult<axum::body::Bytes> {
    axum::body::to_bytes(body, usize::try_from(limit).unwrap_or(usize::MAX))
        .await
        .map_err(|err| {
            let too_large = std::error::Error::source(&err)
                .is_some_and(|source| source.to_string().contains("length limit"))
                || err.to_string().contains("length limit");
            if too_large {
                ApiErr::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    codes::TOO_LARGE,
                    format!("{what} is larger than the limit of {limit} bytes"),
                )
            } else {
                ApiErr::bad_request(format!("cannot read {what}: {err}"))
            }
        })
}

/// Parses a JSON body; a mistake is named with its JSON path (`$.hardware.kind: …`).
pub fn parse_json<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> ApiResult<T> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let path = if path == "." {
            "$".to_owned()
        } else {
            format!("$.{path}")
        };
        ApiErr::bad_request(format!("{what}: {path}: {}", err.inner()))
    })?;
    deserializer.end().map_err(|err| {
        ApiErr::bad_request(format!(
            "{what}: trailing characters after the JSON value: {err}"
        ))
    })?;
    Ok(value)
}

/// The JSON bodies of API v1 are small; feeds have their own, configurable limit.
pub const MAX_JSON_BODY: u64 = 1 << 20;
