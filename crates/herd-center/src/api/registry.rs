//! Operator endpoints for what vendors may assert: threats with their owner and approval,
//! vendors with theirs (approve, reject, reassign), and the collection of unreferenced blobs.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use herd_proto::api::{BlobCollection, ErrorBody, ThreatList, ThreatOwner, VendorList};
use herd_store::Approval;
use serde::Deserialize;

use super::extract::{JsonBody, Operator, Path, Query};
use crate::{Center, CenterResult};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatusParams {
    /// Only entries with this status.
    #[param(pattern = r"^(approved|pending|rejected)$")]
    status: Option<String>,
}

/// Threats with the vendor that owns them (only the owner's feed names and rates a threat)
/// and whether they are planned against.
#[utoipa::path(get, path = "/v1/threats", tag = "operators", params(StatusParams),
    responses((status = 200, body = ThreatList), (status = 401, body = ErrorBody)))]
pub async fn list_threats(
    State(center): State<Arc<Center>>,
    _: Operator,
    Query(params): Query<StatusParams>,
) -> CenterResult<Json<ThreatList>> {
    center.threats(params.status.as_deref()).await.map(Json)
}

/// Approve a threat: terminals are planned against it from now on.
#[utoipa::path(post, path = "/v1/threats/{id}/approve", tag = "operators",
    params(("id" = String, Path, description = "The threat id.")),
    responses((status = 204, description = "Approved."), (status = 404, body = ErrorBody)))]
pub async fn approve_threat(
    State(center): State<Arc<Center>>,
    _: Operator,
    Path(id): Path<String>,
) -> CenterResult<StatusCode> {
    center.set_threat_status(&id, Approval::Approved).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Reject a threat: no terminal is planned against it, whatever feeds say.
#[utoipa::path(post, path = "/v1/threats/{id}/reject", tag = "operators",
    params(("id" = String, Path, description = "The threat id.")),
    responses((status = 204, description = "Rejected."), (status = 404, body = ErrorBody)))]
pub async fn reject_threat(
    State(center): State<Arc<Center>>,
    _: Operator,
    Path(id): Path<String>,
) -> CenterResult<StatusCode> {
    center.set_threat_status(&id, Approval::Rejected).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Give a threat to another vendor, whose feed then names and rates it.
#[utoipa::path(put, path = "/v1/threats/{id}/owner", tag = "operators",
    params(("id" = String, Path, description = "The threat id.")),
    request_body = ThreatOwner,
    responses((status = 204, description = "Reassigned."), (status = 404, body = ErrorBody)))]
pub async fn reassign_threat(
    State(center): State<Arc<Center>>,
    _: Operator,
    Path(id): Path<String>,
    JsonBody(owner): JsonBody<ThreatOwner>,
) -> CenterResult<StatusCode> {
    center.reassign_threat(&id, &owner.vendor).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Vendors that have published, and whether their feeds count.
#[utoipa::path(get, path = "/v1/vendors", tag = "operators", params(StatusParams),
    responses((status = 200, body = VendorList), (status = 401, body = ErrorBody)))]
pub async fn list_vendors(
    State(center): State<Arc<Center>>,
    _: Operator,
    Query(params): Query<StatusParams>,
) -> CenterResult<Json<VendorList>> {
    center.vendors(params.status.as_deref()).await.map(Json)
}

/// Approve a vendor: its feed counts in the catalog from now on.
#[utoipa::path(post, path = "/v1/vendors/{id}/approve", tag = "operators",
    params(("id" = String, Path, description = "The vendor id.")),
    responses((status = 204, description = "Approved."), (status = 404, body = ErrorBody)))]
pub async fn approve_vendor(
    State(center): State<Arc<Center>>,
    _: Operator,
    Path(id): Path<String>,
) -> CenterResult<StatusCode> {
    center.set_vendor_status(&id, Approval::Approved).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Reject a vendor: its feed is kept but does not count.
#[utoipa::path(post, path = "/v1/vendors/{id}/reject", tag = "operators",
    params(("id" = String, Path, description = "The vendor id.")),
    responses((status = 204, description = "Rejected."), (status = 404, body = ErrorBody)))]
pub async fn reject_vendor(
    State(center): State<Arc<Center>>,
    _: Operator,
    Path(id): Path<String>,
) -> CenterResult<StatusCode> {
    center.set_vendor_status(&id, Approval::Rejected).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Collect the blob store now: blobs no current feed references and abandoned uploads, older
/// than the grace period (`blob_grace_secs`). The center also does this periodically.
#[utoipa::path(post, path = "/v1/blobs/collect", tag = "operators",
    responses((status = 200, body = BlobCollection), (status = 401, body = ErrorBody)))]
pub async fn collect_blobs(
    State(center): State<Arc<Center>>,
    _: Operator,
) -> CenterResult<Json<BlobCollection>> {
    center.collect_blobs(crate::unix_now()).await.map(Json)
}

impl super::extract::JsonRequest for ThreatOwner {
    const WHAT: &'static str = "the threat's owner";
}
