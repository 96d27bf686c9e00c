//! The site's mirror over HTTP: `/tuf/metadata/{file}` and `/tuf/targets/{path}` exactly as the
//! center serves them (`api/tuf.rs`: the same cache headers, TUF's layout, no credentials), and
//! `/v1/packages/{sha256}`, what an agent's center fetcher downloads. Targets are served from
//! the site's cache with `Range`, `If-Range` and `ETag` through `api/blobs.rs`'s `serve_file`;
//! the cached blob is held in the cache until its response body is dropped.
//!
//! `/v1/packages/` needs a terminal certificate on the center; on the site the caller adds the
//! authentication it wants around [`packages_router`] (a `route_layer`), or uses [`router`],
//! which serves it without (the content is public under `/tuf/targets/` anyway).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper::body::{Frame, SizeHint};

use super::blobs;
use crate::site::mirror::{CachedBlob, Mirror, ReaderGuard};
use crate::{CenterError, CenterResult};

const NO_CACHE: &str = "no-cache";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Every route of the mirror: [`tuf_router`] and [`packages_router`].
pub fn router(mirror: Arc<Mirror>) -> Router {
    tuf_router(mirror.clone()).merge(packages_router(mirror))
}

/// `/tuf/metadata/{file}` and `/tuf/targets/{*path}`, public as on the center.
pub fn tuf_router(mirror: Arc<Mirror>) -> Router {
    Router::new()
        .route("/tuf/metadata/{file}", get(metadata))
        .route("/tuf/targets/{*path}", get(target))
        .with_state(mirror)
}

/// `GET /v1/packages/{sha256}`, without authentication: wrap it in the site's own.
pub fn packages_router(mirror: Arc<Mirror>) -> Router {
    Router::new()
        .route("/v1/packages/{sha256}", get(package))
        .with_state(mirror)
}

async fn metadata(
    State(mirror): State<Arc<Mirror>>,
    Path(file): Path<String>,
) -> CenterResult<Response> {
    let found = mirror.metadata(&file).await?;
    let cache = if found.mutable { NO_CACHE } else { IMMUTABLE };
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        found.bytes,
    )
        .into_response())
}

async fn target(
    State(mirror): State<Arc<Mirror>>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> CenterResult<Response> {
    serve(mirror.target(&path).await?, &headers).await
}

async fn package(
    State(mirror): State<Arc<Mirror>>,
    Path(sha256): Path<String>,
    headers: HeaderMap,
) -> CenterResult<Response> {
    serve(mirror.package(&sha256).await?, &headers).await
}

async fn serve(blob: CachedBlob, headers: &HeaderMap) -> CenterResult<Response> {
    let (file, size, sha256, guard) = blob.into_parts();
    let response = blobs::serve_file(file, size, &sha256, headers)
        .await
        .map_err(|err| CenterError::internal(format!("reading the cached blob {sha256}: {err}")))?;
    let (parts, body) = response.into_parts();
    Ok(Response::from_parts(
        parts,
        Body::new(Guarded {
            inner: body,
            _guard: guard,
        }),
    ))
}

/// A body that keeps its blob in the cache until the client has it (or went away).
struct Guarded {
    inner: Body,
    _guard: ReaderGuard,
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
