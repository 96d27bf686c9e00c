//! Vendor endpoints: publish a catalog feed (validated alone and merged with every other
//! vendor's, applied atomically, idempotent), upload packages (streamed to the blob store,
//! digest and size verified), and download them (with `Range`, so interrupted downloads
//! resume). Operators may do what any vendor may.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use herd_proto::api::{ErrorBody, PackageInfo, PublishResponse};

use super::blobs;
use super::extract::{Downloader, Path, check_json_content_type, read_body};
use crate::{Caller, Center, CenterError, CenterResult};

/// Publish a vendor's whole catalog feed (`herd.catalog/v1`), replacing its previous one.
#[utoipa::path(
    put, path = "/v1/feeds/{vendor}", tag = "vendors",
    params(("vendor" = String, Path, description = "The vendor id the feed is for (an identifier).", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")),
    request_body(content = Object, description = "A `herd.catalog/v1` document describing only this vendor and its products.", content_type = "application/json"),
    responses(
        (status = 200, body = PublishResponse),
        (status = 401, body = ErrorBody, description = "`unauthenticated` or `token_expired`"),
        (status = 403, body = ErrorBody, description = "`forbidden_vendor`: the token is another vendor's, or the feed describes another vendor's products"),
        (status = 413, body = ErrorBody, description = "`too_large`"),
        (status = 422, body = ErrorBody, description = "`feed_invalid`, with every problem and its JSON path"),
    )
)]
pub async fn publish_feed(
    State(center): State<Arc<Center>>,
    Path(vendor): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<PublishResponse>, Response> {
    if let Err(err) = center.may_publish(&caller, &vendor) {
        // Refused before the body is read: the server closes the connection after answering,
        // so it says so — a client would otherwise send its next request on a connection
        // being closed (seen as "peer disconnected").
        let mut response = err.into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Err(response);
    }
    let publish = async {
        let bytes = async {
            check_json_content_type(&headers, "the feed")?;
            read_body(body, center.config.max_feed_bytes, "the feed").await
        }
        .await
        .inspect_err(|_| center.feed_refused())?;
        center.publish_feed(&caller, &vendor, &bytes).await
    };
    publish.await.map(Json).map_err(IntoResponse::into_response)
}

/// Upload a package by its SHA-256; the body is the package, streamed and verified.
#[utoipa::path(
    put, path = "/v1/packages/{sha256}", tag = "vendors",
    params(("sha256" = String, Path, description = "The package's SHA-256, 64 lowercase hex digits.", pattern = r"^[0-9a-f]{64}$")),
    request_body(content = Vec<u8>, description = "The package bytes. Send Content-Length: it is checked against what arrives.", content_type = "application/octet-stream"),
    responses(
        (status = 201, body = PackageInfo, description = "Stored."),
        (status = 200, body = PackageInfo, description = "Already stored (the upload was still verified)."),
        (status = 400, body = ErrorBody, description = "`bad_request` (malformed digest)"),
        (status = 413, body = ErrorBody, description = "`too_large`"),
        (status = 422, body = ErrorBody, description = "`digest_mismatch`: the bytes do not have this SHA-256 or Content-Length"),
        (status = 429, body = ErrorBody, description = "`quota_exceeded`: the vendor's stored packages and this one exceed its storage quota"),
    )
)]
pub async fn upload_package(
    State(center): State<Arc<Center>>,
    Path(sha256): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> CenterResult<(StatusCode, Json<PackageInfo>)> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| CenterError::bad_request("Content-Length is not a number"))
        })
        .transpose()?;
    let mut upload = center
        .begin_package_upload(&caller, &sha256, declared)
        .await?;
    blobs::receive(body, &mut upload.blob)
        .await
        .inspect_err(|err| center.package_upload_failed(err))?;
    let info = center.finish_package_upload(upload).await?;
    let status = match info.created {
        true => StatusCode::CREATED,
        false => StatusCode::OK,
    };
    Ok((status, Json(info)))
}

/// Download a package; `Range: bytes=N-` resumes an interrupted download.
/// Terminals use their client certificate; vendors and operators their token.
#[utoipa::path(
    get, path = "/v1/packages/{sha256}", tag = "vendors",
    params(("sha256" = String, Path, description = "The package's SHA-256, 64 lowercase hex digits.", pattern = r"^[0-9a-f]{64}$")),
    responses(
        (status = 200, description = "The whole package.", content_type = "application/octet-stream"),
        (status = 206, description = "The requested range.", content_type = "application/octet-stream"),
        (status = 404, body = ErrorBody, description = "`not_found`"),
        (status = 416, body = ErrorBody, description = "`range_not_satisfiable`"),
    )
)]
pub async fn download_package(
    State(center): State<Arc<Center>>,
    Path(sha256): Path<String>,
    _who: Downloader,
    headers: HeaderMap,
) -> CenterResult<Response> {
    Ok(blobs::serve(&center.blobs, &sha256, &headers).await?)
}
