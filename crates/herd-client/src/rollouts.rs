//! The rollouts calls (`/v1/rollouts`, operator): releases rolling out in rings, and an
//! operator's pause, resume, promote or revert.

use herd_proto::api::RolloutSummary;
use ureq::http::Method;

use crate::{Client, ClientError, MAX_JSON_ANSWER, segment};

/// `vendor/product/version` as three path segments, each encoded.
fn release_path(release: &str) -> Result<String, ClientError> {
    let parts: Vec<&str> = release.split('/').collect();
    match parts[..] {
        [vendor, product, version]
            if !vendor.is_empty() && !product.is_empty() && !version.is_empty() =>
        {
            Ok(format!(
                "/v1/rollouts/{}/{}/{}",
                segment(vendor),
                segment(product),
                segment(version)
            ))
        }
        _ => Err(ClientError::Invalid(format!(
            "{release:?} is not a release: write vendor/product/version"
        ))),
    }
}

impl Client {
    /// Every rollout (`GET /v1/rollouts`).
    pub fn rollouts(&self) -> Result<Vec<RolloutSummary>, ClientError> {
        self.get_json("/v1/rollouts", &[], MAX_JSON_ANSWER)
    }

    /// One release's rollout (`GET /v1/rollouts/{vendor}/{product}/{version}`).
    pub fn rollout(&self, release: &str) -> Result<RolloutSummary, ClientError> {
        self.get_json(&release_path(release)?, &[], MAX_JSON_ANSWER)
    }

    /// `pause`, `resume`, `promote` or `revert` (`herd_proto::api::rollout_actions`).
    pub fn rollout_act(&self, release: &str, action: &str) -> Result<RolloutSummary, ClientError> {
        let path = format!("{}/{}", release_path(release)?, segment(action));
        self.send_json(Method::POST, &path, &serde_json::json!({}))
    }
}
