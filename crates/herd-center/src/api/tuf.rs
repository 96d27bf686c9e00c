//! The signed repository over HTTP, outside API v1 and without credentials (TUF's own layout,
//! which any mirror serves byte for byte): `/tuf/metadata/{file}` and `/tuf/targets/{path}`.
//! `root.json` and `timestamp.json` change in place, so they are never cached without asking;
//! every other file is immutable under its name (a version, or a target's SHA-256).
//! Not in the OpenAPI document: its layout is TUF's (`herd_proto::distribution`), not API v1.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::blobs;
use crate::{Center, CenterResult};

const NO_CACHE: &str = "no-cache";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The repository's routes.
pub fn router(center: Arc<Center>) -> Router {
    Router::new()
        .route("/tuf/metadata/{file}", get(metadata))
        .route("/tuf/targets/{*path}", get(target))
        .with_state(center)
}

async fn metadata(
    State(center): State<Arc<Center>>,
    Path(file): Path<String>,
) -> CenterResult<Response> {
    let bytes = center.tuf_metadata(&file).await?;
    let cache = match file.as_str() {
        "root.json" | "timestamp.json" => NO_CACHE,
        _ => IMMUTABLE,
    };
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        bytes,
    )
        .into_response())
}

async fn target(
    State(center): State<Arc<Center>>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> CenterResult<Response> {
    let sha256 = center.tuf_target_blob(&path)?;
    let response = blobs::serve(&center.blobs, &sha256, &headers).await?;
    // What terminals download of Herd's set, whole or as deltas (`crate::herd_set`).
    if path.starts_with(HERD_SET_DIR) {
        let served = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let counter = if path.contains(".from-") {
            &center.metrics.herd_set_bytes_served_delta
        } else {
            &center.metrics.herd_set_bytes_served_whole
        };
        counter.fetch_add(served, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(response)
}

/// Where Herd's set's files and their deltas are served, under `/tuf/targets/`.
const HERD_SET_DIR: &str = "herd/signatures/";
