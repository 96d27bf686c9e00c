//! The site tier's endpoints: on the center, what operators do with sites (tokens, the list)
//! and what a site calls with its certificate (enrol, pull, replicate, relay); on a site, the
//! center's push (`/v1/site/notify`).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use herd_proto::api::{CertificateRenewed, EnrolResponse, ErrorBody, NewSiteToken, TokenCreated};
use herd_proto::site::{
    CatalogInputs, GroupInputs, RelayAck, RelayBatch, RelayedEnrol, RelayedRenewal, SiteChanges,
    SiteEnrolRequest, SiteEnrolResponse, SiteRenewRequest, SiteRenewed, SiteStatus, SiteSummary,
    SiteTerminal,
};
use serde::Deserialize;

use super::extract::{CenterCaller, JsonBody, Operator, Path, Query, SiteCaller};
use super::listener::ConnInfo;
use crate::{Center, CenterResult};

/// A site enrolment token (one site, valid 7 days); shown once.
#[utoipa::path(post, path = "/v1/site-tokens", tag = "sites", request_body = NewSiteToken,
    responses((status = 201, body = TokenCreated), (status = 421, body = ErrorBody, description = "`wrong_role`: asked of a site server")))]
pub async fn new_site_token(
    State(center): State<Arc<Center>>,
    _: Operator,
    JsonBody(request): JsonBody<NewSiteToken>,
) -> CenterResult<(StatusCode, Json<TokenCreated>)> {
    let created = center.new_site_token(request.label).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Every site: its URL, last contact, applied queue seq, terminals, what it last said of its
/// queue and cache, and whether it is `ok`, `late` or `unreachable`.
#[utoipa::path(get, path = "/v1/sites", tag = "sites",
    responses((status = 200, body = Vec<SiteSummary>)))]
pub async fn list_sites(
    State(center): State<Arc<Center>>,
    _: Operator,
) -> CenterResult<Json<Vec<SiteSummary>>> {
    center.sites().await.map(Json)
}

/// A site enrols with a site enrolment token and a CSR; it gets its certificate (client and
/// server), the CA and the TUF root.
#[utoipa::path(post, path = "/v1/sites/enrol", tag = "sites", request_body = SiteEnrolRequest,
    responses(
        (status = 201, body = SiteEnrolResponse),
        (status = 403, body = ErrorBody, description = "`enrolment_token_invalid`"),
        (status = 422, body = ErrorBody, description = "`csr_invalid`; or `bad_request`: an id, URL or server name that is not one"),
        (status = 421, body = ErrorBody, description = "`wrong_role`: asked of a site server"),
    ))]
pub async fn enrol_site(
    State(center): State<Arc<Center>>,
    JsonBody(request): JsonBody<SiteEnrolRequest>,
) -> CenterResult<(StatusCode, Json<SiteEnrolResponse>)> {
    let enrolled = center.enrol_site(request).await?;
    Ok((StatusCode::CREATED, Json(enrolled)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChangesParams {
    /// The change token the site last saw: the answer is held until the center's differs.
    after: Option<String>,
    /// How long to hold the request, at most 300 s [default 30].
    timeout_secs: Option<u64>,
    queue_depth: Option<u64>,
    queue_oldest_secs: Option<u64>,
    cache_bytes: Option<u64>,
    cache_limit_bytes: Option<u64>,
    terminals: Option<u64>,
}

/// The site's pull, held until something changes (or the timeout); it reports the site's
/// queue and cache on the way.
#[utoipa::path(get, path = "/v1/sites/changes", tag = "sites", params(ChangesParams),
    responses((status = 200, body = SiteChanges)))]
pub async fn site_changes(
    State(center): State<Arc<Center>>,
    SiteCaller(site): SiteCaller,
    Query(params): Query<ChangesParams>,
) -> CenterResult<Json<SiteChanges>> {
    let status = params.queue_depth.map(|queue_depth| SiteStatus {
        queue_depth,
        queue_oldest_secs: params.queue_oldest_secs.unwrap_or(0),
        cache_bytes: params.cache_bytes.unwrap_or(0),
        cache_limit_bytes: params.cache_limit_bytes.unwrap_or(0),
        terminals: params.terminals.unwrap_or(0),
    });
    let timeout = Duration::from_secs(params.timeout_secs.unwrap_or(30));
    center
        .site_changes(&site, params.after.as_deref(), timeout, status)
        .await
        .map(Json)
}

/// What the site's planner merges: every stored feed and the registry. `ETag` is the catalog
/// revision.
#[utoipa::path(get, path = "/v1/sites/catalog", tag = "sites",
    responses((status = 200, body = CatalogInputs), (status = 304, description = "Not modified")))]
pub async fn site_catalog(
    State(center): State<Arc<Center>>,
    _: SiteCaller,
    headers: HeaderMap,
) -> CenterResult<Response> {
    let revision = center.catalog().revision;
    if not_modified(&headers, revision) {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let inputs = center.site_catalog().await?;
    Ok(with_etag(inputs.revision, Json(inputs)))
}

/// The center's rollout rings and where every rollout stands, so the site plans under the
/// same ring gates (no rings: the center rolls releases out to everyone at once).
#[utoipa::path(get, path = "/v1/sites/rollouts", tag = "sites",
    responses((status = 200, body = herd_proto::site::SiteRollouts)))]
pub async fn site_rollouts(
    State(center): State<Arc<Center>>,
    _: SiteCaller,
) -> CenterResult<Json<herd_proto::site::SiteRollouts>> {
    Ok(Json(center.site_rollouts().await?))
}

/// Groups and placement rules. `ETag` is the groups revision.
#[utoipa::path(get, path = "/v1/sites/groups", tag = "sites",
    responses((status = 200, body = GroupInputs)))]
pub async fn site_groups(
    State(center): State<Arc<Center>>,
    _: SiteCaller,
) -> CenterResult<Response> {
    let inputs = center.site_groups().await?;
    Ok(with_etag(inputs.revision, Json(inputs)))
}

/// A terminal enrolling through the site.
#[utoipa::path(post, path = "/v1/sites/terminals/enrol", tag = "sites", request_body = RelayedEnrol,
    responses((status = 201, body = EnrolResponse), (status = 403, body = ErrorBody, description = "`enrolment_token_invalid`"), (status = 409, body = ErrorBody, description = "`terminal_exists`"), (status = 422, body = ErrorBody, description = "`csr_invalid`")))]
pub async fn relay_enrol(
    State(center): State<Arc<Center>>,
    SiteCaller(site): SiteCaller,
    JsonBody(relayed): JsonBody<RelayedEnrol>,
) -> CenterResult<(StatusCode, Json<EnrolResponse>)> {
    let enrolled = center.relay_enrol(&site, relayed).await?;
    Ok((StatusCode::CREATED, Json(enrolled)))
}

/// A site renewing its own certificate, with its current certificate or the one it renewed
/// from last (a renewal whose answer was lost is asked again). A refused renewal changes
/// nothing.
#[utoipa::path(post, path = "/v1/sites/renew", tag = "sites", request_body = SiteRenewRequest,
    responses(
        (status = 200, body = SiteRenewed, description = "Renewed; use the new certificate, with the key the CSR was made from, from the next connection."),
        (status = 401, body = ErrorBody, description = "`client_certificate_required` or `certificate_revoked`"),
        (status = 403, body = ErrorBody, description = "`forbidden`: not a site's certificate"),
        (status = 422, body = ErrorBody, description = "`csr_invalid`; or `document_invalid`: a server name that is not one"),
        (status = 421, body = ErrorBody, description = "`wrong_role`: asked of a site server"),
    ))]
pub async fn renew_site(
    State(center): State<Arc<Center>>,
    conn: ConnInfo,
    JsonBody(request): JsonBody<SiteRenewRequest>,
) -> CenterResult<Json<SiteRenewed>> {
    center
        .renew_site(conn.peer.as_deref(), request)
        .await
        .map(Json)
}

/// Asks a site to renew its certificate at its next pull (within its poll interval); its
/// current certificate works until then.
#[utoipa::path(post, path = "/v1/sites/{id}/renewal", tag = "sites",
    params(("id" = String, Path, description = "The site's id")),
    responses(
        (status = 202, description = "Asked; the site renews at its next pull."),
        (status = 404, body = ErrorBody, description = "`not_found`: no such site"),
        (status = 421, body = ErrorBody, description = "`wrong_role`: asked of a site server"),
    ))]
pub async fn request_site_renewal(
    State(center): State<Arc<Center>>,
    _: Operator,
    Path(id): Path<String>,
) -> CenterResult<StatusCode> {
    center.request_site_renewal(&id).await?;
    Ok(StatusCode::ACCEPTED)
}

/// A terminal of the site renewing its certificate through it.
#[utoipa::path(post, path = "/v1/sites/terminals/renew", tag = "sites", request_body = RelayedRenewal,
    responses((status = 200, body = CertificateRenewed), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody, description = "`csr_invalid`")))]
pub async fn relay_renew(
    State(center): State<Arc<Center>>,
    SiteCaller(site): SiteCaller,
    JsonBody(relayed): JsonBody<RelayedRenewal>,
) -> CenterResult<Json<CertificateRenewed>> {
    center.relay_renew(&site, relayed).await.map(Json)
}

/// Which certificate the terminal presented to the site.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PresentedCertificate {
    /// The SHA-256 (lower-case hex) of the client certificate the terminal presented to the
    /// site: the center hands the terminal over only if it is the one it issued.
    #[param(pattern = r"^[0-9a-f]{64}$")]
    cert_sha256: String,
}

/// A terminal the site does not know (one failing over to it, presenting the certificate the
/// center issued it): the site serves it from now on.
#[utoipa::path(get, path = "/v1/sites/terminals/{id}", tag = "sites",
    params(("id" = String, Path, description = "The terminal's id"), PresentedCertificate),
    responses((status = 200, body = SiteTerminal), (status = 400, body = ErrorBody, description = "`bad_request`: the certificate's SHA-256 is missing"), (status = 404, body = ErrorBody, description = "`not_found`: no such terminal, or not with that certificate")))]
pub async fn site_terminal(
    State(center): State<Arc<Center>>,
    SiteCaller(site): SiteCaller,
    Path(id): Path<String>,
    Query(presented): Query<PresentedCertificate>,
) -> CenterResult<Json<SiteTerminal>> {
    center
        .site_terminal(&site, &id, &presented.cert_sha256)
        .await
        .map(Json)
}

/// The fault verdicts of a terminal the site serves: a site's terminals read their verdicts
/// at the site, which asks here (faults are decided at the center only).
#[utoipa::path(get, path = "/v1/sites/terminals/{id}/fault-verdicts", tag = "sites",
    params(("id" = String, Path, description = "The terminal's id"), super::faults::VerdictParams),
    responses((status = 200, body = herd_proto::fault::FaultVerdicts), (status = 403, body = ErrorBody, description = "Not a terminal this site serves"), (status = 404, body = ErrorBody)))]
pub async fn site_fault_verdicts(
    State(center): State<Arc<Center>>,
    SiteCaller(site): SiteCaller,
    Path(id): Path<String>,
    super::extract::Query(params): super::extract::Query<super::faults::VerdictParams>,
) -> CenterResult<Json<herd_proto::fault::FaultVerdicts>> {
    center
        .site_fault_verdicts(&site, &id, params.held())
        .await
        .map(Json)
}

/// From which message on a site asks.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessagesAfter {
    /// The newest message id the site has.
    pub after: Option<u64>,
}

/// The operators' messages a site relays to its terminals, oldest first, at most 500: to all,
/// to a group, and to the terminals it ever served. The site keeps them under these ids and
/// answers its terminals' check-ins with them.
#[utoipa::path(get, path = "/v1/sites/messages", tag = "sites", params(MessagesAfter),
    responses((status = 200, body = herd_proto::messages::MessageList), (status = 400, body = ErrorBody)))]
pub async fn site_messages(
    State(center): State<Arc<Center>>,
    SiteCaller(site): SiteCaller,
    Query(after): Query<MessagesAfter>,
) -> CenterResult<Json<herd_proto::messages::MessageList>> {
    center.site_messages(&site, after.after).await.map(Json)
}

/// Whether the center has a sample: a site asks for its terminals before they upload one.
#[utoipa::path(get, path = "/v1/sites/samples/{sha256}", tag = "sites",
    params(("sha256" = String, Path, description = "The sample's SHA-256.", pattern = r"^[0-9a-f]{64}$")),
    responses((status = 200, body = herd_proto::api::SamplePresence), (status = 400, body = ErrorBody)))]
pub async fn site_sample_held(
    State(center): State<Arc<Center>>,
    _: SiteCaller,
    Path(sha256): Path<String>,
) -> CenterResult<Json<herd_proto::api::SamplePresence>> {
    center.sample_held(&sha256).await.map(Json)
}

/// Which plan's consent a site asks about.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsentOf {
    /// The plan the terminal waits for consent to.
    pub plan_id: String,
}

/// The e-mailed consent answer of a terminal the site serves: a site's terminals ask at their
/// check-in, and the site asks here (consent requests live at the center).
#[utoipa::path(get, path = "/v1/sites/terminals/{id}/consent", tag = "sites",
    params(("id" = String, Path, description = "The terminal's id"), ConsentOf),
    responses((status = 200, body = herd_proto::consent::SiteConsent), (status = 403, body = ErrorBody, description = "Not a terminal this site serves"), (status = 404, body = ErrorBody)))]
pub async fn site_consent(
    State(center): State<Arc<Center>>,
    SiteCaller(site): SiteCaller,
    Path(id): Path<String>,
    Query(of): Query<ConsentOf>,
) -> CenterResult<Json<herd_proto::consent::SiteConsent>> {
    center.site_consent(&site, &id, &of.plan_id).await.map(Json)
}

/// A batch of the site's queue, oldest first; each seq is applied once.
#[utoipa::path(post, path = "/v1/sites/relay", tag = "sites", request_body = RelayBatch,
    responses((status = 200, body = RelayAck, description = "Applied through `acked_through`: delete it from the queue."), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody, description = "`quota_exceeded`: keep the batch and send it later")))]
pub async fn relay(
    State(center): State<Arc<Center>>,
    SiteCaller(site): SiteCaller,
    JsonBody(batch): JsonBody<RelayBatch>,
) -> CenterResult<Json<RelayAck>> {
    center.relay(&site, batch).await.map(Json)
}

/// On a site: the center's push. The site pulls at once.
#[utoipa::path(post, path = "/v1/site/notify", tag = "sites", request_body = SiteChanges,
    responses((status = 204, description = "Pulled."), (status = 421, body = ErrorBody, description = "`wrong_role`: this is a center")))]
pub async fn notify(
    State(center): State<Arc<Center>>,
    _: CenterCaller,
    JsonBody(changes): JsonBody<SiteChanges>,
) -> CenterResult<StatusCode> {
    center.site_notified(changes).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn not_modified(headers: &HeaderMap, revision: u64) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_matches('"') == revision.to_string())
}

fn with_etag(revision: u64, body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("\"{revision}\"")) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}
