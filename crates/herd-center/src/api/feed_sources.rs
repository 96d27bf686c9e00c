//! Vendor feeds the center fetches itself: a vendor (or an operator) registers, polls now or
//! forgets its feed URL; operators list every source and its last poll.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use herd_proto::api::ErrorBody;
use herd_proto::feed_sources::{FeedPollResult, FeedSource, FeedSourceDoc, FeedSourceList};

use super::extract::{JsonBody, JsonRequest, Operator, Path};
use crate::{Caller, Center, CenterResult};

impl JsonRequest for FeedSourceDoc {
    const WHAT: &'static str = "the feed source";
}

/// Register (or replace) the vendor's feed URL; the center polls it at once, then every
/// `interval_secs`, and applies what changed as if the vendor had pushed it.
#[utoipa::path(put, path = "/v1/vendors/{vendor}/feed-source", tag = "vendors",
    params(("vendor" = String, Path, description = "The vendor id.")),
    request_body = FeedSourceDoc,
    responses(
        (status = 200, body = FeedSource),
        (status = 400, body = ErrorBody, description = "`bad_request`: a URL or interval that is not one"),
        (status = 422, body = ErrorBody, description = "`document_invalid`: plain http off loopback, or a loopback, private or link-local host the center's `feed_allowed_hosts` does not list"),
        (status = 403, body = ErrorBody, description = "`forbidden_vendor`: another vendor's source"),
    ))]
pub async fn put_source(
    State(center): State<Arc<Center>>,
    Path(vendor): Path<String>,
    caller: Caller,
    JsonBody(doc): JsonBody<FeedSourceDoc>,
) -> CenterResult<Json<FeedSource>> {
    center
        .put_feed_source(&caller, &vendor, doc)
        .await
        .map(Json)
}

/// Forget the vendor's feed URL (its published feed stays).
#[utoipa::path(delete, path = "/v1/vendors/{vendor}/feed-source", tag = "vendors",
    params(("vendor" = String, Path, description = "The vendor id.")),
    responses((status = 204, description = "Forgotten."), (status = 404, body = ErrorBody)))]
pub async fn delete_source(
    State(center): State<Arc<Center>>,
    Path(vendor): Path<String>,
    caller: Caller,
) -> CenterResult<StatusCode> {
    center.delete_feed_source(&caller, &vendor).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Poll the vendor's feed URL now: `applied`, `not modified`, `refused` (with why), `failed`.
#[utoipa::path(post, path = "/v1/vendors/{vendor}/feed-source/poll", tag = "vendors",
    params(("vendor" = String, Path, description = "The vendor id.")),
    responses((status = 200, body = FeedPollResult), (status = 404, body = ErrorBody)))]
pub async fn poll_source(
    State(center): State<Arc<Center>>,
    Path(vendor): Path<String>,
    caller: Caller,
) -> CenterResult<Json<FeedPollResult>> {
    center.poll_feed(&caller, &vendor).await.map(Json)
}

/// Every vendor feed source and what its last poll did.
#[utoipa::path(get, path = "/v1/feed-sources", tag = "operators",
    responses((status = 200, body = FeedSourceList), (status = 401, body = ErrorBody)))]
pub async fn list_sources(
    State(center): State<Arc<Center>>,
    _: Operator,
) -> CenterResult<Json<FeedSourceList>> {
    center.feed_sources().await.map(Json)
}
