//! API v1's alert documents (`/v1/alerts…`): the delivery record, the configured channels and
//! rules, and a channel test's outcome.

use serde::{Deserialize, Serialize};

/// One alert sent (or to be sent) to one channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertDelivery {
    pub id: u64,
    pub channel: String,
    /// The alert's kind (`detection`, `site_unreachable`…), or `summary` and `digest` for
    /// what an outbreak was aggregated into.
    pub kind: String,
    pub subject: String,
    pub text: String,
    /// RFC 3339.
    pub created_at: String,
    /// `pending`, `delivered` or `failed` (given up).
    pub state: String,
    pub attempts: u32,
    /// When a pending delivery is tried next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<String>,
    /// What the sink answered at the last failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A page of deliveries, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertList {
    pub deliveries: Vec<AlertDelivery>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<u64>,
}

/// A configured channel, without its secrets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertChannelInfo {
    pub name: String,
    /// `webhook`, `email` or `sms`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Where it delivers: a URL's origin, or recipients and SMTP server.
    pub target: String,
}

/// A configured rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertRuleInfo {
    pub name: String,
    pub kinds: Vec<String>,
    pub channels: Vec<String>,
    /// Terminal event kinds (for the kind `terminal_event`).
    pub events: Vec<String>,
}

/// The alert configuration in force (`GET /v1/alerts/setup`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertSetup {
    pub window_secs: u64,
    pub burst: u32,
    pub channels: Vec<AlertChannelInfo>,
    pub rules: Vec<AlertRuleInfo>,
}

/// What a test alert did (`POST /v1/alerts/channels/{name}/test`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertTestResult {
    pub channel: String,
    pub delivered: bool,
    /// Why it was not, as the sink or the connection said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
