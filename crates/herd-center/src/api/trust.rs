//! Signed distribution's API: the repository's status and root (operators), online keys for a
//! root to come (operators), vendors' signing keys and their own signed roles (vendors, or
//! operators for them). The repository itself is served by `tuf.rs`, without credentials.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use herd_proto::api::{
    ErrorBody, OnlineKey, RoleAccepted, TrustStatus, VendorSigningKey, VendorSigningKeyInfo,
};
use herd_tuf::client::{MAX_METADATA_BYTES, MAX_ROOT_BYTES};

use super::extract::{JsonBody, Operator, Path, check_json_content_type, read_body};
use crate::{Caller, Center, CenterResult};

/// The signed repository: the newest root (keys, thresholds, pins), every role's version and
/// expiry, what top-level targets delegates and who signs each role, the online keys.
#[utoipa::path(get, path = "/v1/trust", tag = "operators",
    responses((status = 200, body = TrustStatus), (status = 401, body = ErrorBody)))]
pub async fn status(
    State(center): State<Arc<Center>>,
    _: Operator,
) -> CenterResult<Json<TrustStatus>> {
    center.trust_status().await.map(Json)
}

/// Installs the next root (`N+1.root.json`, signed by a threshold of the current root's keys
/// and of its own). It must name, for timestamp, snapshot and targets, keys the center holds
/// (current or pending). While the center holds root keys itself (a repository it initialised)
/// it adds their signatures before checking.
#[utoipa::path(put, path = "/v1/trust/root", tag = "operators",
    request_body(content = Object, description = "The signed root document, as TUF writes it: `{\"signed\": {…}, \"signatures\": […]}`.", content_type = "application/json"),
    responses((status = 200, body = TrustStatus),
        (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "`conflict`: not the next version, or another process changed the repository first"),
        (status = 422, body = ErrorBody, description = "`bad_request`: a root that does not chain, has expired, or names online keys the center does not hold")))]
pub async fn put_root(
    State(center): State<Arc<Center>>,
    _: Operator,
    headers: HeaderMap,
    body: Body,
) -> CenterResult<Json<TrustStatus>> {
    check_json_content_type(&headers, "the root")?;
    let bytes = read_body(body, MAX_ROOT_BYTES, "the root").await?;
    center.install_root(&bytes).await.map(Json)
}

/// A new online key for `role`, pending until a root naming it is installed; the answer has
/// its public key to put in that root.
#[utoipa::path(post, path = "/v1/trust/online-keys/{role}", tag = "operators",
    params(("role" = String, Path, description = "timestamp, snapshot or targets", pattern = r"^(timestamp|snapshot|targets)$")),
    responses((status = 201, body = OnlineKey),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`not_found`: not an online role"),
        (status = 409, body = ErrorBody, description = "`conflict`: too many keys pending for this role")))]
pub async fn new_online_key(
    State(center): State<Arc<Center>>,
    _: Operator,
    Path(role): Path<String>,
) -> CenterResult<(StatusCode, Json<OnlineKey>)> {
    let key = center.new_online_key(&role).await?;
    Ok((StatusCode::CREATED, Json(key)))
}

/// Registers the vendor's ed25519 signing key: from now on its role `vendor-<vendor>` is
/// delegated to it, and only role documents it signed are served.
#[utoipa::path(put, path = "/v1/vendors/{vendor}/signing-key", tag = "vendors",
    params(("vendor" = String, Path, description = "The vendor id.", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")),
    request_body = VendorSigningKey,
    responses((status = 200, body = VendorSigningKeyInfo),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "`forbidden_vendor`: another vendor's token"),
        (status = 422, body = ErrorBody, description = "`bad_request`: not an ed25519 key in TUF's form")))]
pub async fn put_signing_key(
    State(center): State<Arc<Center>>,
    caller: Caller,
    Path(vendor): Path<String>,
    JsonBody(request): JsonBody<VendorSigningKey>,
) -> CenterResult<Json<VendorSigningKeyInfo>> {
    center
        .register_vendor_key(&caller, &vendor, request)
        .await
        .map(Json)
}

/// The vendor's own signed role document (`vendor-<vendor>`), served once checked: signed by
/// its registered key, a version above the one served, not expired, and listing only packages
/// of its current feed, each with the feed's length and SHA-256.
#[utoipa::path(put, path = "/v1/tuf/roles/{role}", tag = "vendors",
    params(("role" = String, Path, description = "`vendor-<vendor>`.", pattern = r"^vendor-[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")),
    request_body(content = Object, description = "The signed targets document, as TUF writes it.", content_type = "application/json"),
    responses((status = 200, body = RoleAccepted),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "`forbidden_vendor`: another vendor's role"),
        (status = 404, body = ErrorBody, description = "`not_found`: not a vendor's role"),
        (status = 409, body = ErrorBody, description = "`conflict`: no registered key, no current feed, or a version not above the one served"),
        (status = 422, body = ErrorBody, description = "`bad_request`: not signed by the registered key, expired, outside its paths, or listing what the feed does not")))]
pub async fn put_role(
    State(center): State<Arc<Center>>,
    caller: Caller,
    Path(role): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> CenterResult<Json<RoleAccepted>> {
    check_json_content_type(&headers, "the role")?;
    let bytes = read_body(body, MAX_METADATA_BYTES, "the role").await?;
    center
        .accept_vendor_role(&caller, &role, &bytes)
        .await
        .map(Json)
}
