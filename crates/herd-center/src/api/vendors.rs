//! Vendor endpoints: publish a catalog feed (validated alone and merged with every other
//! vendor's, applied atomically, idempotent), upload packages (streamed to the blob store,
//! digest and size verified), and download them (with `Range`, so interrupted downloads
//! resume). Operators may do what any vendor may.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use herd_proto::api::{ErrorBody, PackageInfo, PublishResponse, codes};
use herd_store::PackageRow;

use super::read_body;
use crate::auth::Caller;
use crate::blobs::BlobError;
use crate::error::{ApiErr, ApiResult};
use crate::listener::ConnInfo;
use crate::{Center, rfc3339, unix_now};

/// Publish a vendor's whole catalog feed (`herd.catalog/v1`), replacing its previous one.
#[utoipa::path(
    put, path = "/v1/feeds/{vendor}", tag = "vendors",
    params(("vendor" = String, Path, description = "The vendor id the feed is for.")),
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
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<PublishResponse>> {
    let caller = center.caller(&headers).await?;
    if let Caller::Vendor(own) = &caller {
        if own != &vendor {
            center.metrics.feeds_refused.fetch_add(1, Relaxed);
            return Err(ApiErr::new(
                StatusCode::FORBIDDEN,
                codes::FORBIDDEN_VENDOR,
                format!("this token publishes for vendor {own:?}, not {vendor:?}"),
            ));
        }
    }
    let result = match read_body(body, center.config.max_feed_bytes, "the feed").await {
        Ok(bytes) => center.publish_feed(&vendor, &bytes).await,
        Err(err) => Err(err),
    };
    if result.is_err() {
        center.metrics.feeds_refused.fetch_add(1, Relaxed);
    }
    result.map(Json)
}

/// Upload a package by its SHA-256; the body is the package, streamed and verified.
#[utoipa::path(
    put, path = "/v1/packages/{sha256}", tag = "vendors",
    params(("sha256" = String, Path, description = "The package's SHA-256, 64 lowercase hex digits.")),
    request_body(content = Vec<u8>, description = "The package bytes. Send Content-Length: it is checked against what arrives.", content_type = "application/octet-stream"),
    responses(
        (status = 201, body = PackageInfo, description = "Stored."),
        (status = 200, body = PackageInfo, description = "Already stored (the upload was still verified)."),
        (status = 400, body = ErrorBody, description = "`bad_request` (malformed digest)"),
        (status = 413, body = ErrorBody, description = "`too_large`"),
        (status = 422, body = ErrorBody, description = "`digest_mismatch`: the bytes do not have this SHA-256 or Content-Length"),
    )
)]
pub async fn upload_package(
    State(center): State<Arc<Center>>,
    Path(sha256): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<PackageInfo>)> {
    let caller = center.caller(&headers).await?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| ApiErr::bad_request("Content-Length is not a number"))
        })
        .transpose()?;
    let limit = center.config.max_package_bytes;
    if declared.is_some_and(|size| size > limit) {
        return Err(too_large(limit));
    }
    let outcome = center
        .blobs
        .put(&sha256, declared, limit, body)
        .await
        .map_err(blob_error)?;
    let vendor = match caller {
        Caller::Vendor(vendor) => Some(vendor),
        Caller::Operator => None,
    };
    let row = PackageRow {
        sha256: sha256.clone(),
        size: outcome.size,
        vendor,
        uploaded_at: unix_now(),
    };
    let created = center.store.package_put(row.clone()).await?;
    let stored = if created {
        row
    } else {
        center.store.package_get(&sha256).await?.unwrap_or(row)
    };
    if created {
        center.metrics.packages_uploaded.fetch_add(1, Relaxed);
        center
            .metrics
            .package_bytes_uploaded
            .fetch_add(outcome.size, Relaxed);
        tracing::info!(%sha256, size = outcome.size, "package stored");
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(PackageInfo {
            sha256,
            size: stored.size,
            vendor: stored.vendor,
            uploaded_at: rfc3339(stored.uploaded_at),
            created,
        }),
    ))
}

/// Download a package; `Range: bytes=N-` resumes an interrupted download.
/// Terminals use their client certificate; vendors and operators their token.
#[utoipa::path(
    get, path = "/v1/packages/{sha256}", tag = "vendors",
    params(("sha256" = String, Path, description = "The package's SHA-256.")),
    responses(
        (status = 200, description = "The whole package.", content_type = "application/octet-stream"),
        (status = 206, description = "The requested range.", content_type = "application/octet-stream"),
        (status = 404, body = ErrorBody, description = "`not_found`"),
        (status = 416, body = ErrorBody, description = "`range_not_satisfiable`"),
    )
)]
pub async fn download_package(
    State(center): State<Arc<Center>>,
    Extension(conn): Extension<ConnInfo>,
    Path(sha256): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if conn.peer.is_some() {
        center.terminal(&conn).await?;
    } else {
        center.caller(&headers).await?;
    }
    center
        .blobs
        .serve(&sha256, &headers)
        .await
        .map_err(blob_error)
}

fn too_large(limit: u64) -> ApiErr {
    ApiErr::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        codes::TOO_LARGE,
        format!("the package is larger than the limit of {limit} bytes (max_package_bytes)"),
    )
}

fn blob_error(err: BlobError) -> ApiErr {
    match err {
        BlobError::BadDigest { .. } => ApiErr::bad_request(err.to_string()),
        BlobError::DigestMismatch { .. } | BlobError::SizeMismatch { .. } => ApiErr::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            codes::DIGEST_MISMATCH,
            err.to_string(),
        ),
        BlobError::TooLarge { limit } => too_large(limit),
        BlobError::NotFound { .. } => ApiErr::not_found(err.to_string()),
        BlobError::Body { .. } => ApiErr::bad_request(err.to_string()),
        other => ApiErr::internal(other.to_string()),
    }
}
