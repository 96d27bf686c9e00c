//! The rollouts endpoints (SPEC §3.4): operators list and look at releases rolling out in
//! rings, and pause, resume, promote or revert one.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use herd_proto::api::{ErrorBody, RolloutSummary};

use super::extract::{Operator, Path};
use crate::{Center, CenterResult};

/// Every release that rolled out or rolls out in rings, oldest first.
#[utoipa::path(get, path = "/v1/rollouts", tag = "rollouts",
    responses((status = 200, body = Vec<RolloutSummary>),
              (status = 409, body = ErrorBody, description = "`conflict`: this center has no rollout rings configured")))]
pub async fn list_rollouts(
    State(center): State<Arc<Center>>,
    _: Operator,
) -> CenterResult<Json<Vec<RolloutSummary>>> {
    center.rollout_summaries().await.map(Json)
}

/// One release's rollout.
#[utoipa::path(get, path = "/v1/rollouts/{vendor}/{product}/{version}", tag = "rollouts",
    params(("vendor" = String, Path), ("product" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = RolloutSummary), (status = 404, body = ErrorBody, description = "No rollout of this release."), (status = 409, body = ErrorBody, description = "`conflict`: this center does not roll releases out in rings (`rollout_rings` is empty).")))]
pub async fn show_rollout(
    State(center): State<Arc<Center>>,
    _: Operator,
    Path((vendor, product, version)): Path<(String, String, String)>,
) -> CenterResult<Json<RolloutSummary>> {
    center
        .rollout_summary(&format!("{vendor}/{product}/{version}"))
        .await
        .map(Json)
}

/// `pause` (hold at its ring), `resume` (go on, counting afresh), `promote` (next ring now) or
/// `revert` (halt, withdraw and plan the terminals that took it back to the last good release).
#[utoipa::path(post, path = "/v1/rollouts/{vendor}/{product}/{version}/{action}", tag = "rollouts",
    params(("vendor" = String, Path), ("product" = String, Path), ("version" = String, Path),
           ("action" = String, Path, description = "pause, resume, promote or revert")),
    responses((status = 200, body = RolloutSummary),
              (status = 400, body = ErrorBody, description = "`bad_request`: not an action"),
              (status = 404, body = ErrorBody, description = "No rollout of this release."),
              (status = 409, body = ErrorBody, description = "`conflict`: not possible in its phase, or it changed meanwhile")))]
pub async fn act_on_rollout(
    State(center): State<Arc<Center>>,
    _: Operator,
    Path((vendor, product, version, action)): Path<(String, String, String, String)>,
) -> CenterResult<Json<RolloutSummary>> {
    center
        .rollout_act(&format!("{vendor}/{product}/{version}"), &action)
        .await
        .map(Json)
}
