//! Operator endpoints for alerts: the delivery record (`GET /v1/alerts`), the channels and
//! rules in force (`GET /v1/alerts/setup`), and a test alert to one channel.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use herd_proto::alerts::{AlertList, AlertSetup, AlertTestResult};
use herd_proto::api::ErrorBody;
use serde::Deserialize;

use super::extract::{Operator, Path, Query};
use crate::{Center, CenterResult};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only deliveries older than this id (the previous page's `next_before`).
    before: Option<u64>,
    /// At most this many, 1 to 500 [default 100].
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// Alert deliveries, newest first: pending (with their next attempt and last error),
/// delivered, or given up.
#[utoipa::path(get, path = "/v1/alerts", tag = "operators", params(ListParams),
    responses((status = 200, body = AlertList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_alerts(
    State(center): State<Arc<Center>>,
    _: Operator,
    Query(params): Query<ListParams>,
) -> CenterResult<Json<AlertList>> {
    center
        .alert_deliveries(params.before, params.limit)
        .await
        .map(Json)
}

/// The alert channels (without secrets) and rules of the center's configuration.
#[utoipa::path(get, path = "/v1/alerts/setup", tag = "operators",
    responses((status = 200, body = AlertSetup), (status = 401, body = ErrorBody)))]
pub async fn alert_setup(
    State(center): State<Arc<Center>>,
    _: Operator,
) -> CenterResult<Json<AlertSetup>> {
    Ok(Json(center.alert_setup()))
}

/// Sends a test alert to one channel now (past rules, throttle and queue) and says whether
/// the sink took it, or what it answered.
#[utoipa::path(post, path = "/v1/alerts/channels/{name}/test", tag = "operators",
    params(("name" = String, Path, description = "The channel's name.")),
    responses((status = 200, body = AlertTestResult), (status = 404, body = ErrorBody)))]
pub async fn test_channel(
    State(center): State<Arc<Center>>,
    _: Operator,
    Path(name): Path<String>,
) -> CenterResult<Json<AlertTestResult>> {
    center.test_alert_channel(&name).await.map(Json)
}
