//! The HTTP edge of the center: API v1's router, the OpenAPI document generated from the
//! handlers' annotations (so the served `/v1/openapi.json` cannot drift from the code), and
//! [`run`], which binds the listeners and serves until a signal. Handlers are thin: their
//! extractors authenticate and parse, they call a domain service of the
//! [`Center`](crate::Center), and answer; failures answer through `error.rs`.

mod alerts;
pub mod blobs;
mod consent;
pub mod console;
pub mod error;
pub mod extract;
mod faults;
mod feed_sources;
mod immunity;
pub mod listener;
mod messages;
mod operators;
mod registry;
mod rollouts;
pub mod site_mirror;
mod sites;
mod terminals;
mod trust;
pub mod tuf;
mod vendors;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use herd_proto::api as wire;
use tokio::sync::watch;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::CenterConfig;
use crate::{Center, CenterError};

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
        (name = "sites", description = "Site servers: operators make site tokens and list sites; a site enrols, pulls, replicates and relays with its certificate; the center pushes to a site."),
        (name = "public", description = "Health, the CA certificate, this document."),
        (name = "rollouts", description = "Releases rolling out in rings: list, show, pause, resume, promote, revert (operator token).")
    )
)]
struct ApiDoc;

/// The application and its OpenAPI document. Everything a test needs to call the API in
/// process, without a socket.
pub fn router(center: Arc<Center>) -> (Router, utoipa::openapi::OpenApi) {
    if center.site().is_some() {
        return site_router(center);
    }
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(ca_pem))
        .routes(routes!(operators::get_ca, operators::put_ca))
        .routes(routes!(terminals::enrol))
        .routes(routes!(terminals::checkin))
        .routes(routes!(terminals::events))
        .routes(routes!(terminals::renew))
        .routes(routes!(terminals::wait))
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
        .routes(routes!(operators::terminal_gap))
        .routes(routes!(operators::exposed))
        .routes(routes!(operators::list_groups))
        .routes(routes!(operators::put_group, operators::delete_group))
        .routes(routes!(operators::get_rules, operators::put_rules))
        .routes(routes!(operators::new_enrolment_token))
        .routes(routes!(operators::new_api_token, operators::list_tokens))
        .routes(routes!(operators::revoke_token))
        .routes(routes!(operators::new_console_link))
        .routes(routes!(registry::list_threats))
        .routes(routes!(registry::approve_threat))
        .routes(routes!(registry::reject_threat))
        .routes(routes!(registry::reassign_threat))
        .routes(routes!(registry::list_vendors))
        .routes(routes!(registry::approve_vendor))
        .routes(routes!(registry::reject_vendor))
        .routes(routes!(registry::collect_blobs))
        .routes(routes!(trust::status))
        .routes(routes!(trust::put_root))
        .routes(routes!(trust::new_online_key))
        .routes(routes!(trust::put_signing_key))
        .routes(routes!(trust::put_role))
        .routes(routes!(sites::new_site_token))
        .routes(routes!(sites::list_sites))
        .routes(routes!(sites::enrol_site))
        .routes(routes!(sites::site_changes))
        .routes(routes!(sites::site_catalog))
        .routes(routes!(sites::site_rollouts))
        .routes(routes!(sites::site_groups))
        .routes(routes!(sites::relay_enrol))
        .routes(routes!(sites::relay_renew))
        .routes(routes!(sites::renew_site))
        .routes(routes!(sites::request_site_renewal))
        .routes(routes!(sites::site_terminal))
        .routes(routes!(sites::site_fault_verdicts))
        .routes(routes!(sites::site_consent))
        .routes(routes!(sites::site_messages))
        .routes(routes!(sites::site_sample_held))
        .routes(routes!(immunity::sample_held))
        .routes(routes!(sites::relay))
        .routes(routes!(sites::notify))
        .routes(routes!(rollouts::list_rollouts))
        .routes(routes!(rollouts::show_rollout))
        .routes(routes!(rollouts::act_on_rollout))
        .routes(routes!(faults::verdicts))
        .routes(routes!(faults::list))
        .routes(routes!(faults::show))
        .routes(routes!(faults::list_rules))
        .routes(routes!(faults::put_rule, faults::delete_rule))
        .routes(routes!(faults::list_replacements))
        .routes(routes!(faults::put_replacement, faults::delete_replacement))
        .routes(routes!(immunity::post_verdict))
        .routes(routes!(immunity::list_herd_set))
        .routes(routes!(
            immunity::list_body_signatures,
            immunity::add_body_signatures
        ))
        .routes(routes!(immunity::remove_body_signature))
        .routes(routes!(immunity::list_samples))
        .routes(routes!(immunity::download_sample))
        .routes(routes!(alerts::list_alerts))
        .routes(routes!(alerts::alert_setup))
        .routes(routes!(alerts::test_channel))
        .routes(routes!(
            feed_sources::put_source,
            feed_sources::delete_source
        ))
        .routes(routes!(feed_sources::poll_source))
        .routes(routes!(feed_sources::list_sources))
        .routes(routes!(consent::put_email))
        .routes(routes!(consent::list_consents))
        .routes(routes!(messages::send, messages::list))
        .routes(routes!(messages::inbox))
        .with_state(center.clone())
        .split_for_parts();
    let mut openapi = openapi;
    document_common_errors(&mut openapi);
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
        .merge(tuf::router(center.clone()))
        .merge(console::router(center.clone()))
        .merge(if center.config.metrics_listen.is_some() {
            Router::new()
        } else {
            metrics_router(center.clone())
        })
        .fallback(|| async {
            CenterError::not_found("no such endpoint; the API is described at /v1/openapi.json")
        })
        .layer(axum::middleware::from_fn_with_state(
            center,
            count_responses,
        ));
    (router, openapi)
}

/// A site server's router: its terminals' endpoints (enrolment and renewal relayed to the
/// center), the center's push, the fleet as this site sees it (read-only for its operators),
/// health and metrics. What only the center does answers `wrong_role` with where to go.
fn site_router(center: Arc<Center>) -> (Router, utoipa::openapi::OpenApi) {
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(ca_pem))
        .routes(routes!(terminals::enrol))
        .routes(routes!(terminals::checkin))
        .routes(routes!(terminals::events))
        .routes(routes!(terminals::renew))
        .routes(routes!(terminals::wait))
        .routes(routes!(sites::notify))
        .routes(routes!(faults::verdicts))
        .routes(routes!(messages::inbox))
        .routes(routes!(immunity::sample_held))
        .routes(routes!(operators::catalog))
        .routes(routes!(operators::coverage))
        .routes(routes!(operators::list_terminals))
        .routes(routes!(operators::terminal_detail))
        .routes(routes!(operators::terminal_plan))
        .routes(routes!(operators::terminal_gap))
        .routes(routes!(operators::exposed))
        .routes(routes!(operators::list_groups))
        .with_state(center.clone())
        .split_for_parts();
    let mirror = center
        .site()
        .map(|site| site.mirror.clone())
        .expect("a site router is built for a site");
    // Packages go to this site's terminals only, as the center's go to terminals and callers
    // with tokens; the signed metadata and targets are public, as on the center.
    let packages = site_mirror::packages_router(mirror.clone()).route_layer(
        axum::middleware::from_fn_with_state(center.clone(), require_terminal),
    );
    let router = router
        .merge(site_mirror::tuf_router(mirror))
        .merge(packages)
        .merge(console::router(center.clone()));
    let upstream = center
        .site()
        .map(|site| site.identity.upstream.clone())
        .unwrap_or_default();
    let router = router
        .merge(if center.config.metrics_listen.is_some() {
            Router::new()
        } else {
            metrics_router(center.clone())
        })
        .fallback(move || {
            let upstream = upstream.clone();
            async move {
                CenterError::new(
                    crate::ErrorKind::WrongRole,
                    format!(
                        "this is a site server, which serves its terminals; everything else is \
                         done at the center, {upstream}"
                    ),
                )
            }
        })
        .layer(axum::middleware::from_fn_with_state(
            center,
            count_responses,
        ));
    (router, openapi)
}

/// Documents, on every operation that can answer them and does not already say more, the
/// errors every endpoint of its kind shares: 400 for a malformed path, query or body, 401 and
/// 403 from the extractors, 408, 413 and 415 for bodies, 503 when the store fails. An independent
/// tester (schemathesis, in CI) holds the document to every status the center answers.
fn document_common_errors(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    for (path, item) in openapi.paths.paths.iter_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            let public = operation
                .tags
                .as_ref()
                .is_some_and(|tags| tags.iter().any(|tag| tag == "public"));
            if public {
                continue;
            }
            let has_parameters = operation
                .parameters
                .as_ref()
                .is_some_and(|parameters| !parameters.is_empty());
            let body = operation.request_body.as_ref().map(|body| {
                body.content
                    .keys()
                    .any(|media_type| media_type == "application/json")
            });
            // Enrolment is the one endpoint without credentials: its token is in the body.
            let authenticated = path != "/v1/enrol";
            let mut errors: Vec<(&str, &str)> = Vec::new();
            if has_parameters || body.is_some() {
                errors.push((
                    "400",
                    "`bad_request`: a malformed path, query string or body",
                ));
            }
            if authenticated {
                errors.push((
                    "401",
                    "`unauthenticated`, `token_expired`, `client_certificate_required` or `certificate_revoked`",
                ));
                errors.push(("403", "`forbidden`: these credentials may not do this"));
            }
            if body.is_some() {
                errors.push(("408", "`request_timeout`: the body arrived too slowly"));
                errors.push(("413", "`too_large`: the body is over its limit"));
            }
            if body == Some(true) {
                errors.push((
                    "415",
                    "`unsupported_media_type`: the body is declared as something other than JSON",
                ));
            }
            errors.push(("503", "`unavailable`: the center's database is failing"));
            for (status, description) in errors {
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| {
                        ResponseBuilder::new()
                            .description(description)
                            .content(
                                "application/json",
                                ContentBuilder::new()
                                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                                    .build(),
                            )
                            .build()
                            .into()
                    });
            }
        }
    }
}

/// Lets a request through only with the client certificate of a terminal this site serves.
async fn require_terminal(
    State(center): State<Arc<Center>>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<listener::ConnInfo>()
        .and_then(|conn| conn.peer.clone());
    match center.terminal(peer.as_deref()).await {
        Ok(_) => next.run(request).await,
        Err(err) => err.into_response(),
    }
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
        center.trust_pem(),
    )
}

/// `/metrics` alone: on the API listeners, or on a listener of its own (`metrics_listen`).
fn metrics_router(center: Arc<Center>) -> Router {
    Router::new().route("/metrics", get(metrics).with_state(center))
}

async fn metrics(State(center): State<Arc<Center>>) -> impl IntoResponse {
    let mut text = center.metrics.render();
    if let Some(site) = center.site() {
        text.push_str(&site.mirror.stats().render());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// Runs the center until SIGINT or SIGTERM. Binding errors (port in use, no permission) are
/// returned with the address named.
pub async fn run(config: CenterConfig) -> anyhow::Result<()> {
    herd_tls::install_crypto_provider();
    let listen = config.listen;
    let plaintext = config.plaintext_listen;
    // Bind first: a port in use is the most common start-up error and needs no database.
    let tls_listener = bind(listen).await?;
    let plain_listener = match plaintext {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let center = Center::open(config).await?;
    let tls = tokio_rustls::TlsAcceptor::from(center.server_config()?);
    let (router, _openapi) = router(center.clone());

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(center.clone().follow_revisions(stop_rx.clone()));
    tokio::spawn({
        let (center, stop_rx) = (center.clone(), stop_rx.clone());
        async move {
            center
                .live
                .share(&*center.store, &center.waits, stop_rx)
                .await
        }
    });
    if center.site().is_some() {
        // A site's certificate is the center's to issue; it enrols again to replace it.
        center.start_site_tasks(stop_rx.clone());
    } else {
        tokio::spawn(
            center
                .clone()
                .keep_server_certificate_fresh(stop_rx.clone()),
        );
        tokio::spawn(center.clone().collect_blobs_periodically(stop_rx.clone()));
        tokio::spawn(center.clone().push_to_late_sites(stop_rx.clone()));
        tokio::spawn(center.clone().follow_rollouts(stop_rx.clone()));
        tokio::spawn(center.clone().poll_feeds(stop_rx.clone()));
        if !center.alerts.config().channels.is_empty() {
            tokio::spawn(center.clone().deliver_alerts(stop_rx.clone()));
        }
    }
    let local = tls_listener.local_addr()?;
    let mut servers = vec![tokio::spawn(listener::serve(
        tls_listener,
        Some(tls),
        router.clone(),
        center.metrics.clone(),
        center.config.limits,
        stop_rx.clone(),
    ))];
    if let Some(scrape) = metrics_listener {
        tracing::info!(addr = %scrape.local_addr()?, "metrics served here only (plaintext)");
        servers.push(tokio::spawn(listener::serve(
            scrape,
            None,
            metrics_router(center.clone()).fallback(|| async {
                CenterError::not_found("this listener serves /metrics only")
            }),
            center.metrics.clone(),
            center.config.limits,
            stop_rx.clone(),
        )));
    }
    if let Some(plain) = plain_listener {
        tracing::warn!(addr = %plain.local_addr()?, "plaintext HTTP listener on loopback (no terminal endpoints)");
        servers.push(tokio::spawn(listener::serve(
            plain,
            None,
            router,
            center.metrics.clone(),
            center.config.limits,
            stop_rx,
        )));
    }
    tracing::info!(
        addr = %local,
        url = %format!("https://{local}"),
        store = %center.config.database_for_display(),
        ca = %center.config.data_dir.join("ca.pem").display(),
        "herd {} listening",
        if center.site().is_some() { "site server" } else { "center" }
    );
    shutdown_signal().await;
    tracing::info!("shutting down: finishing requests in flight");
    // Held waits would otherwise keep their connections until they time out.
    center.waits.stop();
    let _ = stop_tx.send(true);
    for server in servers {
        let _ = server.await;
    }
    center.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|err| {
        let hint = match err.kind() {
            std::io::ErrorKind::AddrInUse => {
                " (another program is using this port; choose another with --listen)"
            }
            std::io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges)",
            _ => "",
        };
        anyhow::anyhow!("cannot listen on {addr}: {err}{hint}")
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
