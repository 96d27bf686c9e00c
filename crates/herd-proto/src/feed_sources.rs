//! API v1's documents for vendor feeds the center fetches itself
//! (`/v1/vendors/{vendor}/feed-source`, `/v1/feed-sources`).

use serde::{Deserialize, Serialize};

/// A vendor's feed URL to register (`PUT /v1/vendors/{vendor}/feed-source`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeedSourceDoc {
    /// `https://…` (plain `http://` only on loopback): the vendor's `herd.catalog/v1` feed.
    pub url: String,
    /// Seconds between polls, 60 to 604800 [default 900].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_secs: Option<u64>,
}

/// A registered feed source and what its last poll did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeedSource {
    pub vendor: String,
    pub url: String,
    pub interval_secs: u64,
    /// RFC 3339.
    pub registered_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_polled_at: Option<String>,
    /// `applied …`, `not modified`, `refused: …` (the feed did not validate), `failed: …`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<String>,
    /// The validator the next poll sends as `If-None-Match`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeedSourceList {
    pub sources: Vec<FeedSource>,
}

/// What one poll did (`POST /v1/vendors/{vendor}/feed-source/poll`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeedPollResult {
    pub vendor: String,
    /// The fetched feed was applied (as if the vendor had pushed it).
    pub applied: bool,
    /// The catalog revision after applying it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    pub status: String,
}
