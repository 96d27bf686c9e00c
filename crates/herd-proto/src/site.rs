//! The site tier's wire contract (SPEC §2, §3.4, §3.5; seed 001's three tiers): how a site
//! server enrols with its center, replicates what its planner needs, relays its terminals'
//! enrolments, renewals, check-ins and events upstream through its durable queue, and how
//! terminals and sites are woken when something new is there (push, with pull behind it).
//!
//! A site authenticates to the center with the certificate the center issued it at site
//! enrolment (SAN `urn:herd:site:<id>`, usable for client and server authentication, so the
//! same certificate serves its terminals under the center's CA, which they pin). A site's
//! certificate is refused on every terminal, vendor and operator endpoint, and a terminal's
//! on every site endpoint; a site acts only for the terminals enrolled through it.
//!
//! A site runs as `herd serve --role site --upstream URL --site-id ID --site-token TOKEN
//! [--listen ADDR] [--server-name NAME]... [--data-dir DIR]` (the token only at first start).

use serde::{Deserialize, Serialize};

use crate::api::{CertificateRenewal, CheckinRequest, EnrolRequest, EventBatch};

/// `POST` — a site enrols (site enrolment token, no certificate yet): [`SiteEnrolRequest`] →
/// [`SiteEnrolResponse`].
pub const SITE_ENROL: &str = "/v1/sites/enrol";
/// `GET ?after=TOKEN&timeout_secs=N` (site certificate) — the site's pull: held until the
/// center's [`SiteChanges::token`] differs from `after` or the timeout passes.
pub const SITE_CHANGES: &str = "/v1/sites/changes";
/// `GET` (site certificate) — what the site's planner merges: [`CatalogInputs`]; `ETag` is
/// the catalog revision (`If-None-Match` answers 304).
pub const SITE_CATALOG: &str = "/v1/sites/catalog";
/// `GET` (site certificate) — groups and placement rules: [`GroupInputs`]; `ETag` as above.
pub const SITE_GROUPS: &str = "/v1/sites/groups";
/// `POST` (site certificate) — a terminal enrolling through the site: [`RelayedEnrol`] →
/// `EnrolResponse`.
pub const SITE_TERMINAL_ENROL: &str = "/v1/sites/terminals/enrol";
/// `POST` (site certificate) — a terminal renewing through the site: [`RelayedRenewal`] →
/// `CertificateRenewed`.
pub const SITE_TERMINAL_RENEW: &str = "/v1/sites/terminals/renew";
/// `POST` (site certificate, the current one or the one it last renewed from) — the site's
/// own certificate renewed: [`SiteRenewRequest`] → [`SiteRenewed`].
pub const SITE_RENEW: &str = "/v1/sites/renew";
/// `GET /v1/sites/terminals/{id}` (site certificate) — a terminal the site does not know yet
/// (one failing over from another site): [`SiteTerminal`].
pub const SITE_TERMINALS: &str = "/v1/sites/terminals";
/// `GET` (site certificate) — the center's rollout rings and where every rollout stands:
/// [`SiteRollouts`], so the site plans under the same ring gates.
pub const SITE_ROLLOUTS: &str = "/v1/sites/rollouts";
/// `POST` (site certificate) — the site's queue, oldest first: [`RelayBatch`] → [`RelayAck`].
pub const SITE_RELAY: &str = "/v1/sites/relay";
/// The operators' messages a site relays to its terminals (`GET`, `?after=` the newest id it has).
pub const SITE_MESSAGES: &str = "/v1/sites/messages";
/// `POST` on a site, called by the center (center certificate) when the site has not pulled
/// for a few of its poll intervals: the site pulls at once. Body: [`SiteChanges`].
pub const SITE_NOTIFY: &str = "/v1/site/notify";
/// `POST` (operator token, body `{"label"}`) — a site enrolment token, shown once:
/// `api::TokenCreated`.
/// `herd sites token create`.
pub const SITE_TOKENS: &str = "/v1/site-tokens";
/// `GET` (operator token) — every site: `Vec<`[`SiteSummary`]`>`. `herd sites`.
pub const SITES: &str = "/v1/sites";
/// `GET ?after=TOKEN&timeout_secs=N` (terminal certificate), on the center and on a site —
/// the agent's push connection: [`WaitResponse`].
pub const WAIT: &str = "/v1/wait";

/// The longest a held request (`/v1/wait`, `/v1/sites/changes`) is held, in seconds; a larger
/// `timeout_secs` is clamped to it.
pub const MAX_WAIT_SECS: u64 = 300;

/// The identity URI a site's certificate carries.
pub fn site_uri(site: &str) -> String {
    format!("urn:herd:site:{site}")
}

/// The identity URI the center's client certificate carries (when it pushes to a site).
pub const CENTER_URI: &str = "urn:herd:center";

/// `POST /v1/sites/enrol`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SiteEnrolRequest {
    /// A site enrolment token (`herd sites token`).
    pub token: String,
    /// PKCS#10 CSR in PEM; its key stays on the site.
    pub csr_pem: String,
    /// The site's id (an identifier, like a terminal's).
    pub id: String,
    /// Where terminals and the center reach the site (`https://host:port`).
    pub url: String,
    /// DNS names and IP addresses the site's certificate must carry for its terminals.
    pub server_names: Vec<String>,
}

/// `POST /v1/sites/renew`: a new key's CSR, for the same site.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SiteRenewRequest {
    /// PKCS#10 CSR in PEM of a new key; the key stays on the site.
    pub csr_pem: String,
    /// DNS names and IP addresses the new certificate must carry for its terminals.
    pub server_names: Vec<String>,
}

/// The answer to a site's renewal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SiteRenewed {
    /// The site's new certificate (PEM): from now on only it acts as the site.
    pub certificate_pem: String,
    /// When it expires (RFC 3339).
    pub expires_at: String,
}

/// The answer to a site enrolment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SiteEnrolResponse {
    pub site: String,
    /// The site's certificate (PEM, with any intermediate after it): client and server.
    pub certificate_pem: String,
    /// The center's CA (trust anchors, PEM).
    pub ca_pem: String,
    /// The center's TUF `root.json` as signed.
    pub tuf_root: String,
    /// How often the site should pull when nothing wakes it, in seconds.
    pub poll_secs: u64,
}

/// What moved at the center since a site last looked. `token` is opaque; the numbers say what
/// to fetch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SiteChanges {
    pub token: String,
    pub catalog_revision: u64,
    pub groups_revision: u64,
    /// The version of the center's current `timestamp.json`.
    pub timestamp_version: u64,
    /// An operator asked this site to renew its certificate now (`herd sites renew`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub renew_certificate: bool,
}

/// One vendor's feed as stored (the document as published, byte for byte).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeedInput {
    pub vendor: String,
    pub doc: String,
    pub sha256: String,
    pub published_at: i64,
}

/// An owned threat or a vendor, with its approval (`pending`, `approved`, `rejected`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ThreatOwnerInput {
    pub threat: String,
    pub vendor: String,
    pub status: String,
    pub declared_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VendorApprovalInput {
    pub vendor: String,
    pub status: String,
    pub first_published_at: i64,
}

/// `GET /v1/sites/catalog`: exactly what the center merges its catalog from, so the site's
/// planner plans with the same catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CatalogInputs {
    pub revision: u64,
    pub feeds: Vec<FeedInput>,
    pub threats: Vec<ThreatOwnerInput>,
    pub vendors: Vec<VendorApprovalInput>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupInput {
    pub id: String,
    pub description: String,
    /// `PolicyDoc` JSON.
    pub policy: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RuleInput {
    pub group: String,
    /// `PlacementRule` JSON.
    pub rule: String,
}

/// `GET /v1/sites/groups`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupInputs {
    pub revision: u64,
    pub groups: Vec<GroupInput>,
    pub rules: Vec<RuleInput>,
}

/// `GET /v1/sites/rollouts`: the center's rings (none: it rolls releases out to everyone at
/// once) and every rollout's phase and ring, from which a site computes the same ring gates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SiteRollouts {
    pub rings: Vec<SiteRing>,
    pub rollouts: Vec<SiteRollout>,
}

/// One ring of the center's `rollout_rings`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SiteRing {
    pub name: String,
    /// Basis points of the fleet (cumulative; 10,000 is everyone).
    #[cfg_attr(feature = "openapi", schema(maximum = 10000))]
    pub reach_bp: u32,
    /// Groups reached whatever their terminals' buckets (cumulative).
    pub groups: Vec<String>,
}

/// One release's rollout, as far as planning goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SiteRollout {
    /// `vendor/product/version`.
    pub release: String,
    /// `rolling`, `paused`, `complete` or `reverted`.
    pub phase: String,
    /// Index into `rings`.
    pub ring: u32,
}

/// `POST /v1/sites/terminals/enrol`: a terminal's enrolment as the site received it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RelayedEnrol {
    pub request: EnrolRequest,
    /// The terminal's address as the site saw it.
    pub address: String,
}

/// `POST /v1/sites/terminals/renew`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RelayedRenewal {
    pub terminal: String,
    /// SHA-256 (hex) of the certificate the terminal presented to the site.
    pub presented_cert_sha256: String,
    pub request: CertificateRenewal,
}

/// What a site needs to serve a terminal (`GET /v1/sites/terminals/{id}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SiteTerminal {
    pub id: String,
    #[serde(default)]
    pub user: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub hardware: crate::terminal::HardwareDoc,
    #[serde(default)]
    pub tz: Option<String>,
    pub group: String,
    pub cert_sha256: String,
    pub enrolled_at: i64,
}

/// One item of a site's queue. `seq` is the site queue's own id: increasing, never reused; the
/// center applies each seq once per site.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RelayItem {
    pub seq: u64,
    pub terminal: String,
    pub body: RelayBody,
}

// A check-in is the common item and is built, queued as JSON and dropped: boxing it would buy
// nothing but an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RelayBody {
    /// A check-in the site answered: when (Unix seconds), from where, and what it reported.
    Checkin {
        at: i64,
        address: String,
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        request: Box<CheckinRequest>,
    },
    /// A batch of the terminal's outbox the site acknowledged.
    Events {
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        batch: EventBatch,
    },
}

/// `POST /v1/sites/relay`: at most [`MAX_RELAY_ITEMS`], in queue order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RelayBatch {
    pub items: Vec<RelayItem>,
}

/// The most items one relay batch carries.
pub const MAX_RELAY_ITEMS: usize = 500;

/// The answer: everything up to `acked_through` is applied (now or before) and may be deleted
/// from the site's queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RelayAck {
    pub acked_through: u64,
    /// Items applied now.
    pub applied: u64,
    /// Items already applied before (a replay).
    pub duplicates: u64,
}

/// `GET /v1/wait`: `changed` when the token moved (check in now), else the wait timed out (ask
/// again with the same token).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WaitResponse {
    pub token: String,
    pub changed: bool,
}

/// `GET /v1/sites` (operator): one row per site.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SiteSummary {
    pub id: String,
    pub url: String,
    pub enrolled_at: String,
    /// The last time the site called the center (any site endpoint), RFC 3339.
    pub last_contact: Option<String>,
    /// The last queue seq the center applied.
    pub relay_applied: u64,
    /// Terminals enrolled through the site.
    pub terminals: u64,
    /// What the site said of itself at its last pull (queue depth, cache use); absent before.
    #[serde(default)]
    pub status: Option<SiteStatus>,
    /// `ok`, `late` (has not pulled for a few poll intervals; the center pushes) or
    /// `unreachable` (nor could it be pushed to).
    pub state: String,
}

/// What a site reports of itself with each pull (query parameters of `/v1/sites/changes`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SiteStatus {
    pub queue_depth: u64,
    pub queue_oldest_secs: u64,
    pub cache_bytes: u64,
    pub cache_limit_bytes: u64,
    pub terminals: u64,
}
