//! The center's storage: the [`Store`] trait, in the words of the domain (enrol a terminal,
//! record check-ins, publish a vendor's feed…), and its two implementations, embedded SQLite
//! (the default, WAL mode) and PostgreSQL (several center processes sharing one database).
//!
//! Everything a center process needs to agree on with other center processes lives here:
//! the CA, the catalog feeds and their revision, tokens, terminals, groups and rules, events.
//! Multi-row changes are single transactions, so a failure applies nothing. Each backend has
//! its own migrations (`migrations/sqlite`, `migrations/postgres`); one conformance suite
//! (`tests/conformance.rs`) runs against both.
//!
//! Times are Unix seconds (`i64`, UTC). JSON-shaped parts (inventory, plans, policies, event
//! data) are stored as JSON text: the center validates them before they get here.

use std::collections::HashMap;
use std::fmt::Debug;

use async_trait::async_trait;

mod common;
mod consent;
mod operations;
mod postgres;
mod sql;
mod sqlite;

pub use consent::{ConsentRequestRow, NewConsentRequest};
pub use operations::{
    AlertAttempt, AlertDeliveryRow, AlertWindowRow, FeedPolled, FeedSourceRow, MessageQuery,
    MessageRow, NewAlertDelivery, NewMessage,
};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Opens the store a URL names: `sqlite://PATH` (created if missing) or `postgres://…`.
/// Runs the backend's migrations before returning.
pub async fn open(url: &str) -> Result<Box<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Box::new(PostgresStore::open(url).await?))
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Box::new(
            SqliteStore::open(std::path::Path::new(path)).await?,
        ))
    } else {
        Err(StoreError::BadUrl(url.to_owned()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://USER@HOST:PORT/DB")]
    BadUrl(String),
    /// The database cannot be reached or opened (the message says which and why).
    #[error("cannot open the database {url}: {source}")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A unique key already exists (terminal id, token, group…); the message names it.
    #[error("{0}")]
    Conflict(String),
    /// The thing to change does not exist; the message names it.
    #[error("{0}")]
    NotFound(String),
    /// A value read back from the database is not what this program wrote (corruption or a
    /// newer schema).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

/// Why an enrolment was refused; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    #[error("the enrolment token is unknown")]
    TokenUnknown,
    #[error("the enrolment token expired")]
    TokenExpired,
    #[error("the enrolment token has been used up")]
    TokenUsedUp,
    #[error("a terminal with id {0:?} is already enrolled")]
    TerminalExists(String),
    /// A re-enrolment token was presented for another terminal than the one it is bound to.
    #[error("the enrolment token re-enrols terminal {bound:?} only, not {asked:?}")]
    TokenForAnotherTerminal { bound: String, asked: String },
    /// The terminal a re-enrolment token is bound to no longer exists.
    #[error("terminal {0:?}, which the re-enrolment token is for, is not enrolled (deleted?)")]
    ReenrolTerminalGone(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The center's CA: created once by whichever center process starts first, then shared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaMaterial {
    /// The issuing CA's certificate.
    pub cert_pem: String,
    /// Its private key: sealed under the operator's key-encryption key (the store neither
    /// knows nor checks; the center seals and opens).
    pub key_pem: String,
    /// The trust anchors clients verify against, when the issuer is an intermediate under an
    /// offline root; `None` when the CA is its own anchor.
    pub trust_pem: Option<String>,
    /// Bumped by every [`Store::ca_replace`]; ignored on insert (the first is 1).
    pub generation: u64,
}

/// Counters that grow with every change of their kind, so center processes can tell cheaply
/// which of their caches is stale, and keep the others.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Revisions {
    /// Bumped when a published feed changes the merged catalog.
    pub catalog: u64,
    /// Bumped by every change of groups or placement rules ([`Store::group_put`],
    /// [`Store::group_delete`], [`Store::rules_replace`]).
    pub groups: u64,
    /// The id of the latest terminal change ([`Store::terminal_changes`]), 0 before the first:
    /// a process that saw an older one evicts the terminals changed since.
    pub terminals: u64,
    /// The CA's generation ([`CaMaterial::generation`]), 0 before there is one.
    pub ca: u64,
    /// Bumped by every change of the signed repository ([`Store::tuf_state`]): metadata
    /// signed, a root installed, an online key or a vendor's key added.
    pub tuf: u64,
}

/// The PostgreSQL notification channel a transaction that moves a revision notifies (the
/// triggers of migration 0009 spell it in SQL; the conformance suite holds them to this).
pub const REVISIONS_CHANNEL: &str = "herd_revisions";

/// The PostgreSQL notification channel that carries the console's live view between center
/// processes ([`Store::live_messages`]), followed by `.` and the store's schema.
pub const LIVE_CHANNEL: &str = "herd_live";

/// The longest payload [`Store::live_send`] takes: PostgreSQL refuses a notification of 8,000
/// bytes or more.
pub const LIVE_PAYLOAD_MAX: usize = 7_900;

/// Wake-ups when another process may have moved a revision ([`Store::revision_changes`]).
#[derive(Clone, Debug)]
pub struct RevisionChanges(tokio::sync::watch::Receiver<u64>);

impl RevisionChanges {
    pub(crate) fn new(receiver: tokio::sync::watch::Receiver<u64>) -> RevisionChanges {
        RevisionChanges(receiver)
    }

    /// Waits for the next wake-up (several while waiting count as one). False once nothing
    /// will wake it any more: poll from then on.
    pub async fn changed(&mut self) -> bool {
        self.0.changed().await.is_ok()
    }
}

/// One vendor's published feed: the whole `herd.catalog/v1` document as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFeed {
    pub vendor: String,
    /// The document as JSON text.
    pub doc: String,
    /// SHA-256 (hex) of `doc`: republishing the same bytes changes nothing.
    pub sha256: String,
    pub published_at: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishOutcome {
    /// The catalog revision after the publish (unchanged when `changed` is false).
    pub revision: u64,
    pub changed: bool,
}

/// Whether an operator lets a vendor or a threat count: a pending or rejected one is stored
/// but not planned with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Approval {
    Approved,
    Pending,
    Rejected,
}

impl Approval {
    pub fn as_str(self) -> &'static str {
        match self {
            Approval::Approved => "approved",
            Approval::Pending => "pending",
            Approval::Rejected => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<Approval> {
        match text {
            "approved" => Some(Approval::Approved),
            "pending" => Some(Approval::Pending),
            "rejected" => Some(Approval::Rejected),
            _ => None,
        }
    }
}

/// A threat's owner: the vendor whose feed declared it first (or whom an operator gave it
/// to). Only the owner's feed says what the threat is called, how dangerous it is and when it
/// was discovered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreatOwnerRow {
    pub threat: String,
    pub vendor: String,
    pub status: Approval,
    pub declared_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VendorApprovalRow {
    pub vendor: String,
    pub status: Approval,
    pub first_published_at: i64,
}

/// Everything the merge of the feeds is scoped by: threat owners and vendors' approvals,
/// each ordered by id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registry {
    pub threats: Vec<ThreatOwnerRow>,
    pub vendors: Vec<VendorApprovalRow>,
}

/// What a publish claims: the threats its feed lists, which become the publishing vendor's if
/// nobody owns them yet, with the status new threats and a new vendor get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedClaims {
    pub threats: Vec<String>,
    pub new_threat_status: Approval,
    pub new_vendor_status: Approval,
}

/// A package in the blob store (the bytes live in the content-addressed blob directory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageRow {
    pub sha256: String,
    pub size: u64,
    /// The vendor whose token uploaded it (`None` for operators).
    pub vendor: Option<String>,
    pub uploaded_at: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Operator,
    Vendor,
    /// Reads what operators read (the console's and the API's views); changes nothing.
    Viewer,
    /// Judges samples and files (verdicts, Herd's own signature set) and reads the console.
    Analyst,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Vendor => "vendor",
            Role::Viewer => "viewer",
            Role::Analyst => "analyst",
        }
    }
}

/// An API token, stored by the SHA-256 (hex) of its secret only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiTokenRow {
    pub hash: String,
    pub role: Role,
    /// For vendor tokens: the vendor id they act for.
    pub vendor: Option<String>,
    pub label: String,
    pub created_at: i64,
    pub expires_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrolTokenRow {
    pub hash: String,
    pub label: String,
    /// How many more terminals may enrol with it.
    pub uses_left: u64,
    pub created_at: i64,
    pub expires_at: i64,
    /// A re-enrolment token: only this terminal may enrol with it, and it keeps its id, group
    /// and history (its certificate is replaced). `None`: an ordinary enrolment token.
    pub reenrol_terminal: Option<String>,
}

/// Which kind of token [`Store::token_revoke`] revoked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevokedToken {
    Api(ApiTokenRow),
    Enrolment(EnrolTokenRow),
}

/// Why [`Store::terminal_renew_cert`] renewed nothing.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error("terminal {0:?} is not enrolled")]
    TerminalGone(String),
    /// The certificate presented is neither the terminal's current one nor the one it replaced
    /// last: an older certificate cannot renew.
    #[error("this certificate is no longer terminal {0:?}'s, so it cannot renew it")]
    NotCurrent(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What enrolment writes. `group` was chosen by the placement rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTerminal {
    pub id: String,
    pub user: Option<String>,
    /// `HardwareDoc` as JSON text.
    pub hardware: String,
    pub tz: Option<String>,
    pub group: String,
    /// SHA-256 (hex) of the DER client certificate issued: terminal endpoints accept only it.
    pub cert_sha256: String,
    pub enrolled_at: i64,
    /// The address the terminal enrolled from (the first entry of its network map).
    pub address: String,
    /// The site server it enrolled through, `None` when it enrolled with the center directly.
    pub site: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TerminalRow {
    pub id: String,
    pub user: Option<String>,
    /// `HardwareDoc` JSON.
    pub hardware: String,
    pub tz: Option<String>,
    pub group: String,
    pub cert_sha256: String,
    pub enrolled_at: i64,
    pub last_checkin: Option<i64>,
    pub last_address: Option<String>,
    /// `InstalledDoc` JSON or `None` when nothing is installed (or never checked in).
    pub installed: Option<String>,
    pub agent_version: Option<String>,
    /// The current plan: its id, action, uncovered count, `PlanDoc` JSON and when it was made.
    pub plan_id: Option<String>,
    pub plan_action: Option<String>,
    pub plan_uncovered: u64,
    pub plan: Option<String>,
    pub planned_at: Option<i64>,
    /// The last `plan.report` event's data (JSON).
    pub last_report: Option<String>,
}

/// A site server enrolled with this center.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteRow {
    pub id: String,
    pub url: String,
    /// SHA-256 (hex) of the DER certificate issued at its enrolment or last renewal: only it
    /// acts as the site.
    pub cert_sha256: String,
    /// The certificate it last renewed from: it may renew once more (a lost answer), nothing
    /// else.
    pub previous_cert_sha256: Option<String>,
    /// When an operator asked it to renew its certificate at its next pull (cleared by the
    /// renewal).
    pub renew_requested_at: Option<i64>,
    pub enrolled_at: i64,
    pub last_contact: Option<i64>,
    /// The highest queue seq of the site applied here.
    pub relay_applied: u64,
    /// What the site said of itself at its last pull (`SiteStatus` JSON).
    pub status: Option<String>,
    /// When the center last pushed to it (it had not pulled for a while).
    pub pushed_at: Option<i64>,
    /// Terminals enrolled through it: counted (reading their index entries) by `sites` and
    /// `site_enrol`; `None` from `site`, which the center reads at every request of a site.
    pub terminals: Option<u64>,
}

/// One item of a site's queue to its center ([`Store::queue_push`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueItem {
    pub terminal: String,
    /// `checkin` (a terminal has at most one waiting: a newer one replaces it) or `events`.
    pub kind: String,
    /// The item's JSON.
    pub body: String,
    pub created_at: i64,
}

/// A queued item with its seq.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedItem {
    pub seq: u64,
    pub item: QueueItem,
}

/// How much a site's queue holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub depth: u64,
    pub oldest_at: Option<i64>,
}

/// What one check-in changes. Written in batches: [`Store::record_checkins`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckinWrite {
    pub terminal: String,
    pub at: i64,
    pub address: String,
    /// The inventory reported (`InstalledDoc` JSON or `None` for nothing installed).
    pub installed: Option<String>,
    /// `HardwareDoc` JSON when the terminal reported it (`None` keeps the stored one).
    pub hardware: Option<String>,
    /// `None` keeps the stored time zone.
    pub tz: Option<String>,
    /// `None` keeps the stored agent version.
    pub agent_version: Option<String>,
    /// The plan computed, written only when its id differs from the stored one.
    pub plan: PlanWrite,
    /// On a site: the check-in queued for the center, in the same transaction (so a check-in
    /// answered is a check-in queued, for one commit).
    pub relay: Option<QueueItem>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanWrite {
    pub id: String,
    pub action: String,
    pub uncovered: u64,
    pub doc: String,
}

/// A signed-in console browser, stored by the SHA-256 (hex) of its cookie's secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleSessionRow {
    pub hash: String,
    /// The API token it was opened with (its SHA-256): the session has the token's role, read
    /// at every request, and ends when the token is revoked or expires.
    pub token_hash: String,
    pub label: String,
    /// The token every form of this session carries (CSRF).
    pub csrf: String,
    pub created_at: i64,
    pub last_seen: i64,
}

/// A one-time console sign-in link, stored by the SHA-256 (hex) of its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleLinkRow {
    pub hash: String,
    /// The API token of the operator who made it: the session it opens acts as that token.
    pub token_hash: String,
    pub label: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// What taking a one-time link found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkTaken {
    /// Taken now, by this request only.
    Taken(ConsoleLinkRow),
    /// Taken before (at this time).
    Used(i64),
    /// Never taken, but past its expiry (at this time).
    Expired(i64),
    Unknown,
}

/// How long ago a terminal last checked in, as the fleet overview counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Recency {
    Never,
    WithinHour,
    WithinDay,
    WithinWeek,
    Older,
}

impl Recency {
    pub const ALL: [Recency; 5] = [
        Recency::WithinHour,
        Recency::WithinDay,
        Recency::WithinWeek,
        Recency::Older,
        Recency::Never,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Recency::Never => "never",
            Recency::WithinHour => "within an hour",
            Recency::WithinDay => "within a day",
            Recency::WithinWeek => "within a week",
            Recency::Older => "over a week ago",
        }
    }

    fn from_code(code: i64) -> Option<Recency> {
        Some(match code {
            0 => Recency::Never,
            1 => Recency::WithinHour,
            2 => Recency::WithinDay,
            3 => Recency::WithinWeek,
            4 => Recency::Older,
            _ => return None,
        })
    }
}

/// One cell of the fleet overview: how many terminals of a group, through a site (`None`:
/// enrolled with the center itself), with a plan action (`None`: not planned yet), last seen
/// at a recency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetCountRow {
    pub group: String,
    pub site: Option<String>,
    pub action: Option<String>,
    pub recency: Recency,
    pub count: u64,
}

impl FleetCountRow {
    pub(crate) fn recency_from_code(code: i64) -> Result<Recency, StoreError> {
        Recency::from_code(code)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown recency code {code}")))
    }
}

/// Listing filter for [`Store::terminals`]; results are ordered by id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TerminalQuery {
    pub group: Option<String>,
    /// Only terminals whose current plan has this action (`exposed`, `switch`…).
    pub action: Option<String>,
    /// Only ids greater than this (keyset paging).
    pub after: Option<String>,
    /// At most this many rows; 0 means no limit.
    pub limit: u32,
    /// Only terminals whose id or user contains this text (case-insensitively for ASCII).
    pub search: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressRow {
    pub address: String,
    pub first_seen: i64,
    pub last_seen: i64,
    /// Check-ins from this address (the enrolment that may have created the entry is not one).
    pub checkins: u64,
}

/// One (interface, MAC, address) of a terminal's network map (migration 0008); `mac` and
/// `address` are empty when the interface has none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceRow {
    pub interface: String,
    pub mac: String,
    pub address: String,
    pub first_seen: i64,
    pub last_seen: i64,
    /// Part of the set the terminal reported last.
    pub current: bool,
}

/// One signature of Herd's own set (migration 0010, issue 13): an exact-hash signature a
/// malicious verdict published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HerdSignatureRow {
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
    pub size: u64,
    /// The signature name agents report.
    pub name: String,
    /// The catalog threat it stands for ("" when none).
    pub threat: String,
    /// Who or what judged it (`analyst:<label>`, `rule:cross-vendor`, `rule:uploads`).
    pub source: String,
    /// The terminal and signature whose detection led to it ("" for a manual verdict).
    pub first_terminal: String,
    pub first_signature: String,
    pub created_at: i64,
}

/// One analyst's body signature of Herd's own set (migration 0022, issue 13): an `.ndb` or
/// `.ldb` line, or a YARA file, already checked with the scan engine's parser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HerdBodySignatureRow {
    /// The signature's name (an `.ndb`/`.ldb` line's first field, a YARA file's given name),
    /// unique across formats.
    pub name: String,
    /// `ndb`, `ldb` or `yar`.
    pub format: String,
    /// The line without its line break, or the YARA file's text.
    pub body: String,
    /// The role that added it (`analyst`, `operator`).
    pub added_by: String,
    pub added_at: i64,
}

/// One threat of Herd's own (migration 0015, issue 13): what a malicious verdict made its
/// file; the files are the [`HerdSignatureRow`]s naming it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HerdThreatRow {
    pub id: String,
    pub name: String,
    /// `low`, `medium`, `high` or `critical`.
    pub danger: String,
    /// Unix seconds.
    pub first_seen: i64,
}

/// Builds the catalog document of Herd's own threats, and its SHA-256 in hex, from the set and
/// the threats, both ordered (signatures by SHA-256, threats by id); see
/// [`Store::herd_feed_rebuild`].
pub type HerdFeedBuild =
    dyn Fn(&[HerdSignatureRow], &[HerdThreatRow]) -> (String, String) + Send + Sync;

/// One sample in the center's sample store (migration 0010).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampleRow {
    pub sha256: String,
    pub size: u64,
    pub reason: String,
    pub path: String,
    pub first_terminal: String,
    pub received_at: i64,
}

/// The latest verdict a person gave on a file (`file_verdicts`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileVerdictRow {
    pub sha256: String,
    /// `malicious` or `benign`.
    pub verdict: String,
    /// `operator` or `analyst`.
    pub judged_by: String,
    pub judged_at: i64,
}

/// One (interface, MAC, address) a terminal reports holding now.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct InterfaceSeen {
    pub interface: String,
    pub mac: String,
    pub address: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRow {
    pub id: String,
    pub description: String,
    /// `PolicyDoc` JSON (without `tz`).
    pub policy: String,
}

/// A placement rule, as `PlacementRule` JSON; the list order is the evaluation order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleRow {
    /// The group the rule places terminals in (must exist).
    pub group: String,
    /// The whole rule as `PlacementRule` JSON.
    pub rule: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EventRow {
    pub terminal: String,
    pub seq: u64,
    /// When it happened on the terminal.
    pub at: i64,
    pub kind: String,
    /// JSON.
    pub data: String,
    /// When the center received it (the caller's `now`; the store reads no clock).
    pub received_at: i64,
}

/// One terminal's batch of events for [`Store::events_append_many`].
#[derive(Clone, Debug, PartialEq)]
pub struct EventsWrite {
    pub rows: Vec<EventRow>,
    /// On a site: the batch queued for the center, in the same transaction.
    pub relay: Option<QueueItem>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    pub accepted: u64,
    /// Events whose (terminal, seq) was already stored: dropped, harmlessly.
    pub duplicates: u64,
    /// The highest seq stored for the terminal after this append.
    pub last_seq: u64,
}

/// One signed metadata document as served under `/tuf/metadata/`, byte for byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TufDocument {
    /// `root`, `timestamp`, `snapshot`, `targets` or a delegated role's name.
    pub role: String,
    pub version: u64,
    /// When its signature expires (Unix seconds).
    pub expires_at: i64,
    /// The signed JSON exactly as signed.
    pub doc: String,
}

/// Whether an online key signs now or waits for a root that names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnlineKeyState {
    Active,
    Pending,
}

impl OnlineKeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            OnlineKeyState::Active => "active",
            OnlineKeyState::Pending => "pending",
        }
    }

    pub fn parse(text: &str) -> Option<OnlineKeyState> {
        match text {
            "active" => Some(OnlineKeyState::Active),
            "pending" => Some(OnlineKeyState::Pending),
            _ => None,
        }
    }
}

/// A key the center signs with while online (timestamp, snapshot or targets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnlineKeyRow {
    pub keyid: String,
    /// `timestamp`, `snapshot` or `targets`.
    pub role: String,
    /// The TUF public key JSON.
    pub public: String,
    /// The PKCS#8 private key sealed under the key-encryption key (the store neither knows
    /// nor checks; the center seals and opens).
    pub sealed: String,
    pub state: OnlineKeyState,
    pub created_at: i64,
}

/// A vendor's own signing key: its role is delegated to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VendorKeyRow {
    pub vendor: String,
    pub keyid: String,
    /// The TUF public key JSON.
    pub public: String,
    pub registered_at: i64,
}

/// The latest role document a vendor signed and uploaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VendorRoleRow {
    pub vendor: String,
    pub version: u64,
    pub doc: String,
    pub uploaded_at: i64,
}

/// Everything the signed repository is, read in one snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TufState {
    /// [`Revisions::tuf`] of exactly this state.
    pub revision: u64,
    /// Every root, version 1 first.
    pub roots: Vec<TufDocument>,
    /// The newest document of every other role, ordered by role.
    pub latest: Vec<TufDocument>,
    /// Ordered by role, then key id.
    pub online_keys: Vec<OnlineKeyRow>,
    /// Ordered by vendor.
    pub vendor_keys: Vec<VendorKeyRow>,
    /// Ordered by vendor.
    pub vendor_roles: Vec<VendorRoleRow>,
}

/// What a sign round stores: new documents (in the order a reader must find them), and the
/// vendor's upload they adopt, if any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TufSigned {
    pub documents: Vec<TufDocument>,
    pub upload: Option<VendorRoleRow>,
}

/// The uncompressed content of an archive package (the tar inside its gzip).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageContent {
    /// The package's (the blob's) SHA-256.
    pub sha256: String,
    pub content_sha256: String,
    pub content_length: u64,
}

/// How many versions of each role but root the store keeps: a client that read an older
/// timestamp may still fetch the snapshot and targets it names, for a few sign rounds.
pub const TUF_VERSIONS_KEPT: u64 = 4;

/// The id of the group terminals land in when no placement rule matches. It always exists
/// (the migrations create it with the default policy) and cannot be deleted.
pub const UNKNOWN_GROUP: &str = "unknown";

// --- fault recovery (migration 0012) -----------------------------------------------------

/// What identifies a fault bucket: faults with the same signature share it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultBucketKey {
    /// A prefix of the signature's SHA-256 (hex).
    pub id: String,
    pub program: String,
    pub version: String,
    pub kind: String,
    /// The signature itself, one line per part.
    pub signature: String,
}

/// One fault report to record with the center's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultWrite {
    pub terminal: String,
    /// The `fault.report` event's seq: a report is recorded once per (terminal, seq).
    pub seq: u64,
    pub at: i64,
    pub bucket: FaultBucketKey,
    /// The verdict's decision (`known`, `replace`, `use_alternative`, `escalated`).
    pub decision: String,
    /// The report and the verdict, JSON.
    pub report: String,
    pub verdict: String,
}

/// The decision that marks a bucket escalated (its first time is kept in `escalated_at`).
pub const FAULT_ESCALATED: &str = "escalated";
/// The decision of a fault whose replacement rolls out in rings that have not reached its
/// terminal yet: decided again when the rollout moves (`faults_held`, `fault_redecide`). The
/// partial index of migration 0024 spells it as an SQL literal.
pub const FAULT_HELD: &str = "held";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultBucketRow {
    pub key: FaultBucketKey,
    pub faults: u64,
    /// Distinct terminals with a fault in the bucket.
    pub terminals: u64,
    pub first_seen: i64,
    pub last_seen: i64,
    /// The decision on its latest recorded fault.
    pub decision: String,
    pub escalated_at: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRow {
    pub terminal: String,
    pub seq: u64,
    pub at: i64,
    pub bucket: String,
    pub decision: String,
    pub report: String,
    pub verdict: String,
    /// What the terminal did with the verdict (a `fault.replaced` event's data, JSON), once
    /// it said (migration 0019).
    pub outcome: Option<String>,
}

/// A rule of the fault database, as its validated JSON document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRuleRow {
    pub id: String,
    pub doc: String,
}

/// An entry of the replacement table, as its validated JSON document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplacementRow {
    pub program: String,
    pub platform: String,
    pub doc: String,
}

/// The center's storage, in domain terms. Every method is one transaction.
#[async_trait]
pub trait Store: Send + Sync + Debug {
    fn backend(&self) -> Backend;

    /// Stores `candidate` as the CA unless one exists; returns the one that is stored.
    /// Safe when several processes race at first start.
    async fn ca_get_or_insert(&self, candidate: CaMaterial) -> Result<CaMaterial, StoreError>;

    /// The CA, if one was stored.
    async fn ca_get(&self) -> Result<Option<CaMaterial>, StoreError>;

    /// Replaces the CA if its generation is still `expected_generation` (a rotation, or a key
    /// sealed afresh), bumping the generation; a [`StoreError::Conflict`] when another process
    /// replaced it first. Returns what is stored.
    async fn ca_replace(
        &self,
        expected_generation: u64,
        replacement: CaMaterial,
    ) -> Result<CaMaterial, StoreError>;

    async fn revisions(&self) -> Result<Revisions, StoreError>;

    /// Wakes its holder whenever a revision may have moved in another process (the moment
    /// the changing transaction commits), so the [`Store::revisions`] poll can be slow.
    /// `None` where nothing can wake it (SQLite, one process; a wrapper): poll then.
    /// Notifications can be lost (a dropped connection); after each reconnection the holder
    /// is woken once, and it should still poll now and then.
    fn revision_changes(&self) -> Option<RevisionChanges> {
        None
    }

    /// Short texts other processes on this store sent with [`Store::live_send`] (and this
    /// one's own), as they arrive: PostgreSQL's `LISTEN` on [`LIVE_CHANNEL`] (of the store's
    /// schema) on a connection
    /// of its own, started at the first call. `None` where processes cannot reach each other
    /// through the store (SQLite; a wrapper). Best effort: a dropped connection loses what
    /// was sent meanwhile, and a receiver that falls behind skips ahead.
    fn live_messages(&self) -> Option<tokio::sync::broadcast::Receiver<std::sync::Arc<str>>> {
        None
    }

    /// Sends `payload` (at most [`LIVE_PAYLOAD_MAX`] bytes) to every process listening with
    /// [`Store::live_messages`]; nothing where the store has no such channel.
    async fn live_send(&self, payload: &str) -> Result<(), StoreError> {
        let _ = payload;
        Ok(())
    }

    // --- catalog -------------------------------------------------------------------------

    /// Every vendor's current feed (ordered by vendor) and the catalog revision they make.
    async fn feeds(&self) -> Result<(u64, Vec<StoredFeed>), StoreError>;

    /// Replaces `feed.vendor`'s feed, atomically and serialised against other publishes.
    /// Inside the transaction, `check` is called with the feeds of every *other* vendor, so the
    /// caller can validate the merged catalog; its error aborts the publish and is returned
    /// as is. Publishing the same `sha256` again changes nothing (`changed: false`) and does
    /// not call `check`. (The `for<'a>` is spelled out: left implicit, `async_trait` would tie
    /// the slice's lifetime to the call's, and no slice made inside the call outlives that.)
    ///
    /// Before `check`, the publish claims what it may: the vendor is recorded (with
    /// `claims.new_vendor_status`) if it never published, and each threat of
    /// `claims.threats` nobody owns becomes the vendor's (with `claims.new_threat_status`);
    /// `check` then sees the registry with those claims, and a refusal undoes them.
    async fn publish_feed(
        &self,
        feed: StoredFeed,
        claims: &FeedClaims,
        check: &(
             dyn for<'a> Fn(&'a [StoredFeed], &'a Registry) -> Result<(), String> + Send + Sync
         ),
    ) -> Result<Result<PublishOutcome, String>, StoreError>;

    /// Every feed, the catalog revision they make and the registry that scopes their merge,
    /// read in one snapshot.
    async fn catalog_inputs(&self) -> Result<(u64, Vec<StoredFeed>, Registry), StoreError>;

    /// Sets a threat's status (bumps the catalog revision); `NotFound` if no feed declared it.
    async fn threat_set_status(&self, threat: &str, status: Approval) -> Result<(), StoreError>;
    /// Gives a threat to another vendor (bumps the catalog revision); `NotFound` if no feed
    /// declared it.
    async fn threat_reassign(&self, threat: &str, vendor: &str) -> Result<(), StoreError>;
    /// Sets a vendor's status (bumps the catalog revision); `NotFound` if it never published.
    async fn vendor_set_status(&self, vendor: &str, status: Approval) -> Result<(), StoreError>;

    // --- packages ------------------------------------------------------------------------

    /// Records a stored blob; returns false (and keeps the first row) if it was known.
    async fn package_put(&self, package: PackageRow) -> Result<bool, StoreError>;
    async fn package_get(&self, sha256: &str) -> Result<Option<PackageRow>, StoreError>;
    /// The bytes of every package `vendor`'s tokens uploaded: what its quota is checked against.
    async fn package_bytes_of(&self, vendor: &str) -> Result<u64, StoreError>;
    /// Every package, ordered by digest.
    async fn packages(&self) -> Result<Vec<PackageRow>, StoreError>;
    /// Forgets a package whose blob was collected; false if there was no row.
    async fn package_delete(&self, sha256: &str) -> Result<bool, StoreError>;
    /// Records what an archive package's uncompressed content is (computed once); `NotFound`
    /// if the package is unknown.
    async fn package_content_set(&self, content: &PackageContent) -> Result<(), StoreError>;
    /// The content recorded for every package that has one, ordered by digest.
    async fn package_contents(&self) -> Result<Vec<PackageContent>, StoreError>;

    // --- the signed repository (TUF) -----------------------------------------------------

    /// The repository's whole state, in one snapshot.
    async fn tuf_state(&self) -> Result<TufState, StoreError>;
    /// A first start's repository: stores `root` (version 1) and its online keys (active)
    /// unless a root exists; false (and nothing written) when another process was first.
    async fn tuf_initialise(
        &self,
        root: &TufDocument,
        keys: &[OnlineKeyRow],
    ) -> Result<bool, StoreError>;
    /// Stores what a sign round made, if the repository is still at `expected_revision`
    /// (else `Conflict`: another process signed first, and this one must read its state
    /// again), and forgets versions older than the last [`TUF_VERSIONS_KEPT`] of each role
    /// but root. Returns the new revision.
    async fn tuf_sign(&self, expected_revision: u64, signed: &TufSigned)
    -> Result<u64, StoreError>;
    /// Installs the next root (`Conflict` if the revision moved or the version is taken)
    /// and makes exactly the keys `active_keyids` the active online keys (pending ones
    /// become active, active ones not named are forgotten; `NotFound` naming an unknown one).
    async fn tuf_root_install(
        &self,
        expected_revision: u64,
        root: &TufDocument,
        active_keyids: &[String],
    ) -> Result<u64, StoreError>;
    /// Adds an online key (normally pending).
    async fn tuf_online_key_add(&self, key: &OnlineKeyRow) -> Result<u64, StoreError>;
    /// Registers (or replaces) a vendor's signing key.
    async fn tuf_vendor_key_put(&self, key: &VendorKeyRow) -> Result<u64, StoreError>;
    /// One stored document: `version` `None` is the newest of the role.
    async fn tuf_document(
        &self,
        role: &str,
        version: Option<u64>,
    ) -> Result<Option<TufDocument>, StoreError>;

    // --- credentials ---------------------------------------------------------------------

    async fn api_token_insert(&self, token: ApiTokenRow) -> Result<(), StoreError>;
    async fn api_token_find(&self, hash: &str) -> Result<Option<ApiTokenRow>, StoreError>;
    async fn api_tokens_count(&self) -> Result<u64, StoreError>;
    async fn enrol_token_insert(&self, token: EnrolTokenRow) -> Result<(), StoreError>;
    /// The enrolment token with this hash, read without the writer: what enrolment checks
    /// before any expensive work, so a bogus token costs one indexed read. Only a hint: the
    /// use is taken atomically by [`Store::enrol`].
    async fn enrol_token_find(&self, hash: &str) -> Result<Option<EnrolTokenRow>, StoreError>;
    /// Every API token, oldest first (by creation, then hash).
    async fn api_tokens(&self) -> Result<Vec<ApiTokenRow>, StoreError>;
    /// Every enrolment token, used up or expired included, oldest first.
    async fn enrol_tokens(&self) -> Result<Vec<EnrolTokenRow>, StoreError>;
    /// Deletes the one API or enrolment token whose hash starts with `hash_prefix` (hex, at
    /// least 8 digits). `NotFound` if none does, `Conflict` if several do (nothing is
    /// deleted), and `Conflict` if it is the last operator token not expired at `now`, unless
    /// `allow_last_operator`: without one nobody can administer the center. Center processes
    /// read tokens from the store on every request, so it takes effect at once everywhere.
    async fn token_revoke(
        &self,
        hash_prefix: &str,
        now: i64,
        allow_last_operator: bool,
    ) -> Result<RevokedToken, StoreError>;

    // --- terminals -----------------------------------------------------------------------

    /// Consumes one use of the enrolment token (by hash) and inserts the terminal, with its
    /// first network-map entry, in one transaction: a refused enrolment writes nothing.
    /// With a re-enrolment token (bound to `terminal.id`, else `TokenForAnotherTerminal`) the
    /// terminal must exist, and only its certificate is replaced (the previous one forgotten):
    /// it keeps its group, documents, addresses and events.
    /// Appends a terminal change, so an id enrolled again after a deletion is evicted from
    /// every process's cache.
    async fn enrol(
        &self,
        token_hash: &str,
        now: i64,
        terminal: NewTerminal,
    ) -> Result<TerminalRow, EnrolError>;

    /// Makes `new_sha256` terminal `id`'s certificate, renewing from the certificate
    /// `presented_sha256`. Presented the current one, that one is kept as the previous
    /// certificate (still accepted, until it expires or the next renewal, so a terminal whose
    /// renewal answer was lost can renew again with it); presented the previous one (that
    /// retry), the current one is replaced and the previous one kept. Anything else renews
    /// nothing. Appends a terminal change, so every process re-reads the certificate.
    async fn terminal_renew_cert(
        &self,
        id: &str,
        presented_sha256: &str,
        new_sha256: &str,
    ) -> Result<(), RenewError>;
    /// The certificate terminal `id` renewed from last ([`Store::terminal_renew_cert`]), if
    /// any: read only when a terminal presents a certificate other than its current one.
    async fn terminal_previous_cert(&self, id: &str) -> Result<Option<String>, StoreError>;

    async fn terminal(&self, id: &str) -> Result<Option<TerminalRow>, StoreError>;
    async fn terminals(&self, query: &TerminalQuery) -> Result<Vec<TerminalRow>, StoreError>;
    /// Deletes a terminal with its addresses and events, and appends a terminal change, so its
    /// certificate stops working everywhere. False if there was none (and nothing changes).
    async fn terminal_delete(&self, id: &str) -> Result<bool, StoreError>;

    /// Changes of terminals' identities (enrolment, deletion) with an id above `after`, in id
    /// order, at most `limit` (0 means no limit): `(id, terminal)`. The ids grow with every
    /// change, and a change becomes visible only after every change with a lower id, so a
    /// reader that continues after the last id it saw misses none.
    async fn terminal_changes(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<(u64, String)>, StoreError>;

    /// Records a batch of check-ins in one transaction: last check-in time and address,
    /// inventory, the network map (address first/last seen, count), and the plan where its
    /// id changed. A write for an unknown terminal is skipped.
    async fn record_checkins(&self, batch: &[CheckinWrite]) -> Result<(), StoreError>;

    /// The terminal's network map, most recently seen first.
    async fn addresses(&self, terminal: &str) -> Result<Vec<AddressRow>, StoreError>;

    /// Records the set of (interface, MAC, address) the terminal reported at `at`, in one
    /// transaction: rows of the set are added (first seen `at`) or seen again (last seen `at`)
    /// and marked current, every other row of the terminal stays as history, no longer
    /// current. Called only when the reported set changed. An unknown terminal is skipped.
    async fn record_interfaces(
        &self,
        terminal: &str,
        at: i64,
        seen: &[InterfaceSeen],
    ) -> Result<(), StoreError>;

    /// The terminal's interfaces over time: current ones first, then most recently seen first.
    async fn interfaces(&self, terminal: &str) -> Result<Vec<InterfaceRow>, StoreError>;

    // --- groups and placement ------------------------------------------------------------

    /// Groups ordered by id, each with its terminal count (which counts the whole fleet: for
    /// the operator's listing, not for a cache).
    async fn groups(&self) -> Result<Vec<(GroupRow, u64)>, StoreError>;
    /// Groups ordered by id, without counting their terminals: what a center process caches
    /// to plan by, reloaded when the groups revision moves.
    async fn group_policies(&self) -> Result<Vec<GroupRow>, StoreError>;
    /// Creates or replaces a group (bumps the groups revision).
    async fn group_put(&self, group: GroupRow) -> Result<(), StoreError>;
    /// Deletes a group (bumps the groups revision): `Conflict` if terminals or rules still use
    /// it or it is `unknown`, `NotFound` if it does not exist.
    async fn group_delete(&self, id: &str) -> Result<(), StoreError>;
    async fn rules(&self) -> Result<Vec<RuleRow>, StoreError>;
    /// Replaces all placement rules (bumps the groups revision). `Conflict` naming the group
    /// if a rule names a group that does not exist.
    async fn rules_replace(&self, rules: &[RuleRow]) -> Result<(), StoreError>;

    // --- events --------------------------------------------------------------------------

    /// Appends a terminal's events, idempotently by (terminal, seq). For `plan.report`
    /// events the terminal's `last_report` is updated in the same transaction (to the stored
    /// report with the highest seq). All events must belong to one terminal (`Conflict`
    /// otherwise); `NotFound` if it is not enrolled. An empty slice changes nothing and
    /// returns zeros.
    async fn events_append(&self, events: &[EventRow]) -> Result<AppendOutcome, StoreError> {
        let write = EventsWrite {
            rows: events.to_vec(),
            relay: None,
        };
        let mut outcomes = self
            .events_append_many(std::slice::from_ref(&write))
            .await?;
        outcomes.pop().unwrap_or(Ok(AppendOutcome::default()))
    }

    /// Appends several terminals' batches in one transaction (the group commit of event
    /// batches), each as [`Store::events_append`] would, with its relay item queued with it.
    /// One outcome per batch, in order: a batch whose terminal is not enrolled (`NotFound`)
    /// or that mixes terminals (`Conflict`) fails alone and the others are stored. `Err` when
    /// the transaction failed: nothing was stored.
    async fn events_append_many(
        &self,
        batches: &[EventsWrite],
    ) -> Result<Vec<Result<AppendOutcome, StoreError>>, StoreError>;
    /// How many events are stored for `terminal` (0 for an unknown one), read without the
    /// writer: what the center's per-terminal quota is checked against.
    async fn events_count(&self, terminal: &str) -> Result<u64, StoreError>;
    /// Events ordered by (terminal, seq): of one terminal, or all; with seq above `after_seq`;
    /// at most `limit` (0 means no limit).
    async fn events(
        &self,
        terminal: Option<&str>,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<EventRow>, StoreError>;

    // Site servers, the center's side.

    /// Stores a site enrolment token (one use; `uses_left` and `reenrol_terminal` are ignored).
    async fn site_token_insert(&self, token: EnrolTokenRow) -> Result<(), StoreError>;
    /// Enrols a site with a site token, consuming it. A site already enrolled under this id is
    /// enrolled again (a site that lost its data directory): its certificate and URL replaced,
    /// its applied queue seq reset, since its new queue starts again at 1.
    async fn site_enrol(
        &self,
        token_hash: &str,
        now: i64,
        id: &str,
        url: &str,
        cert_sha256: &str,
    ) -> Result<SiteRow, EnrolError>;
    async fn site(&self, id: &str) -> Result<Option<SiteRow>, StoreError>;
    async fn sites(&self) -> Result<Vec<SiteRow>, StoreError>;
    /// Records a site's call (and what it said of itself, when it said it).
    async fn site_contact(&self, id: &str, at: i64, status: Option<&str>)
    -> Result<(), StoreError>;
    /// Raises a site's applied queue seq to `through` (never lowers it).
    async fn site_relay_advance(&self, id: &str, through: u64) -> Result<(), StoreError>;
    /// Replaces site `id`'s certificate by `new_sha256` when `presented_sha256` is its current
    /// or previous one (see [`SiteRow::previous_cert_sha256`]); false (nothing changed) for
    /// any other certificate or an unknown site.
    async fn site_renew(
        &self,
        id: &str,
        presented_sha256: &str,
        new_sha256: &str,
    ) -> Result<bool, StoreError>;
    /// Asks site `id` to renew its certificate at its next pull (a request already pending
    /// keeps its time); false for an unknown site.
    async fn site_request_renewal(&self, id: &str, at: i64) -> Result<bool, StoreError>;
    async fn site_pushed(&self, id: &str, at: i64) -> Result<(), StoreError>;
    /// Whether `site` has served `terminal` (enrolled it, or adopted it when it failed over
    /// there) and so may relay for it; `None` for an unknown terminal.
    async fn site_serves(&self, site: &str, terminal: &str) -> Result<Option<bool>, StoreError> {
        Ok(self
            .site_serves_many(site, &[terminal])
            .await?
            .get(terminal)
            .copied())
    }
    /// [`Store::site_serves`] for many terminals at once (a relay batch's): each known terminal
    /// of `terminals` with whether `site` has served it; an unknown terminal is left out.
    async fn site_serves_many(
        &self,
        site: &str,
        terminals: &[&str],
    ) -> Result<HashMap<String, bool>, StoreError>;

    // Site servers, a site's side.

    /// Replaces the feeds and the registry with the center's, at the center's catalog
    /// revision (one transaction).
    async fn replicate_catalog(
        &self,
        revision: u64,
        feeds: &[StoredFeed],
        registry: &Registry,
    ) -> Result<(), StoreError>;
    /// Replaces groups and placement rules with the center's, at its groups revision. A group
    /// no longer at the center but still holding terminals here is kept until they move.
    async fn replicate_groups(
        &self,
        revision: u64,
        groups: &[GroupRow],
        rules: &[RuleRow],
    ) -> Result<(), StoreError>;
    /// Adds a terminal the center enrolled (through this site or another), or replaces its
    /// certificate, group and description when it is known already.
    async fn terminal_adopt(&self, terminal: NewTerminal) -> Result<(), StoreError>;
    /// Appends to the queue in order; a `checkin` replaces the terminal's waiting one.
    async fn queue_push(&self, items: &[QueueItem]) -> Result<(), StoreError>;
    /// The oldest `limit` items.
    async fn queue_peek(&self, limit: u32) -> Result<Vec<QueuedItem>, StoreError>;
    /// Deletes every item up to `through` (what the center acknowledged).
    async fn queue_delete_through(&self, through: u64) -> Result<u64, StoreError>;
    async fn queue_stats(&self) -> Result<QueueStats, StoreError>;

    // Alerts (migration 0011): the durable queue of deliveries, one row per alert and channel.

    /// Queues deliveries, due at once (`created_at`), in one transaction.
    async fn alert_enqueue(&self, deliveries: &[NewAlertDelivery]) -> Result<(), StoreError>;
    /// The throttle window of the alert rule `rule`, `None` before its first alert.
    async fn alert_window(&self, rule: &str) -> Result<Option<AlertWindowRow>, StoreError>;
    /// Every rule's throttle window, by rule.
    async fn alert_windows(&self) -> Result<Vec<AlertWindowRow>, StoreError>;
    /// Writes `rule`'s window as `state` if it is still at `expected_version` (0: none yet),
    /// and queues `deliveries` in the same transaction; false, writing nothing, when another
    /// process wrote it first (read it again and decide again).
    async fn alert_window_replace(
        &self,
        rule: &str,
        expected_version: u64,
        state: &str,
        deliveries: &[NewAlertDelivery],
    ) -> Result<bool, StoreError>;
    /// Claims up to `limit` deliveries due at `now` (oldest first): each one's attempts grow
    /// by one and its next attempt moves to `lease_until`, so no other process sends it
    /// meanwhile; a worker that dies mid-attempt leaves it to be retried after the lease.
    async fn alert_claim(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<AlertDeliveryRow>, StoreError>;
    /// Records how a claimed delivery's attempt ended.
    async fn alert_attempted(
        &self,
        id: u64,
        at: i64,
        outcome: &AlertAttempt,
    ) -> Result<(), StoreError>;
    /// Deliveries newest first, those before `before_id` (all when `None`); `limit` 0 is all.
    async fn alert_deliveries(
        &self,
        before_id: Option<u64>,
        limit: u32,
    ) -> Result<Vec<AlertDeliveryRow>, StoreError>;

    // Vendor feed sources (migration 0011): URLs the center polls.

    /// Registers (or replaces) a vendor's feed URL; a replaced one starts over.
    async fn feed_source_put(&self, source: &FeedSourceRow) -> Result<(), StoreError>;
    /// Forgets a vendor's feed URL; false if it had none.
    async fn feed_source_delete(&self, vendor: &str) -> Result<bool, StoreError>;
    /// Every feed source, by vendor.
    async fn feed_sources(&self) -> Result<Vec<FeedSourceRow>, StoreError>;
    /// Records a poll of `vendor`'s source at `url`; false if the source changed meanwhile
    /// (nothing recorded).
    async fn feed_source_polled(
        &self,
        vendor: &str,
        url: &str,
        polled: &FeedPolled<'_>,
    ) -> Result<bool, StoreError>;

    // Messages (migration 0011).

    /// Stores a message; its site is the site of the terminal it is to or from.
    async fn message_insert(&self, message: &NewMessage) -> Result<MessageRow, StoreError>;
    /// Messages oldest first, as `query` selects.
    async fn messages(&self, query: &MessageQuery<'_>) -> Result<Vec<MessageRow>, StoreError>;
    /// The newest message's id (0 when there is none).
    async fn message_newest_id(&self) -> Result<u64, StoreError>;
    /// What a site replicates, oldest first after `after_id`: messages to all, to a group,
    /// and to the terminals the site ever served.
    async fn messages_for_site(
        &self,
        site: &str,
        after_id: u64,
        limit: u32,
    ) -> Result<Vec<MessageRow>, StoreError>;
    /// On a site: stores the center's messages under the center's ids (a known id is kept).
    async fn messages_replicate(&self, rows: &[MessageRow]) -> Result<(), StoreError>;

    // The console (SPEC §3.6).
    async fn console_session_insert(&self, session: &ConsoleSessionRow) -> Result<(), StoreError>;
    async fn console_session_find(
        &self,
        hash: &str,
    ) -> Result<Option<ConsoleSessionRow>, StoreError>;
    async fn console_session_touch(&self, hash: &str, at: i64) -> Result<(), StoreError>;
    async fn console_session_delete(&self, hash: &str) -> Result<bool, StoreError>;
    /// Deletes the sessions last seen before `idle_before`; returns how many.
    async fn console_sessions_expire(&self, idle_before: i64) -> Result<u64, StoreError>;
    async fn console_link_insert(&self, link: &ConsoleLinkRow) -> Result<(), StoreError>;
    /// Takes a one-time link: exactly one caller ever gets [`LinkTaken::Taken`] for it.
    async fn console_link_take(&self, hash: &str, now: i64) -> Result<LinkTaken, StoreError>;
    /// The fleet counted by group, site, plan action and check-in recency (as of `now`).
    async fn fleet_counts(&self, now: i64) -> Result<Vec<FleetCountRow>, StoreError>;
    /// Plan reports received since `since`, counted by hour (the Unix seconds it starts at)
    /// and outcome (`succeeded`, `rolled_back`, `declined`, or `other`), oldest hour first.
    async fn plan_reports_by_hour(&self, since: i64)
    -> Result<Vec<(i64, String, u64)>, StoreError>;
    // Rollout rings (migration 0013).
    /// Every release under rollout (or that went through one), by release key.
    async fn rollouts(&self) -> Result<Vec<RolloutRow>, StoreError>;
    /// Starts a rollout unless the release has one already (then nothing changes: `false`).
    async fn rollout_insert(&self, row: &RolloutRow) -> Result<bool, StoreError>;
    /// A transition (phase, ring, when, why), written only if the stored row is still at
    /// `row.row_version` (which then moves one up); `reset_counts` zeroes the counters (an
    /// operator resuming a halted rollout starts counting again). `false`: someone else
    /// moved it first, or it is gone.
    async fn rollout_transition(
        &self,
        row: &RolloutRow,
        reset_counts: bool,
    ) -> Result<bool, StoreError>;
    /// Adds to a rollout's counters in place (no version change) while it is `rolling` or
    /// `paused`; other phases and unknown releases are left alone (`false`).
    async fn rollout_count(&self, release: &str, add: RolloutCounts) -> Result<bool, StoreError>;

    // --- fault recovery (migration 0012) -------------------------------------------------

    /// Records a fault report with its verdict, once per (terminal, seq): creates its bucket
    /// if new, counts the fault in it (first and last seen, the latest decision, the first
    /// escalation). Returns false (and changes nothing) for a report recorded before or a
    /// terminal that is not enrolled.
    async fn fault_record(&self, fault: &FaultWrite) -> Result<bool, StoreError>;
    /// Every bucket, most recently seen first.
    async fn fault_buckets(&self) -> Result<Vec<FaultBucketRow>, StoreError>;
    /// Faults, newest first (by time, then seq): of one terminal and/or one bucket, or all;
    /// at most `limit` (0 means no limit).
    async fn faults(
        &self,
        terminal: Option<&str>,
        bucket: Option<&str>,
        limit: u32,
    ) -> Result<Vec<FaultRow>, StoreError>;
    /// Keeps what the terminal did with the verdict on its fault `seq` (JSON, migration
    /// 0019); false when no such fault is recorded.
    async fn fault_outcome(
        &self,
        terminal: &str,
        seq: u64,
        outcome: &str,
    ) -> Result<bool, StoreError>;
    /// The faults whose decision is `held` ([`FAULT_HELD`]), oldest first, at most `limit`
    /// (0 means no limit).
    async fn faults_held(&self, limit: u32) -> Result<Vec<FaultRow>, StoreError>;
    /// Decides a held fault again: its decision and verdict become these, only while it is
    /// still `held` (so two processes deciding it again both write the same, or one of them
    /// nothing); its bucket's decision too (and its first escalation). False when the fault
    /// is not held (any more), or unknown.
    async fn fault_redecide(
        &self,
        terminal: &str,
        seq: u64,
        decision: &str,
        verdict: &str,
    ) -> Result<bool, StoreError>;
    /// The fault database, ordered by rule id.
    async fn fault_rules(&self) -> Result<Vec<FaultRuleRow>, StoreError>;
    /// Adds or replaces a rule by id.
    async fn fault_rule_put(&self, rule: &FaultRuleRow) -> Result<(), StoreError>;
    /// Deletes a rule; false if there was none.
    async fn fault_rule_delete(&self, id: &str) -> Result<bool, StoreError>;
    /// The replacement table, ordered by program and platform.
    async fn replacements(&self) -> Result<Vec<ReplacementRow>, StoreError>;
    /// Adds or replaces the entry of (program, platform).
    async fn replacement_put(&self, entry: &ReplacementRow) -> Result<(), StoreError>;
    /// Deletes an entry; false if there was none.
    async fn replacement_delete(&self, program: &str, platform: &str) -> Result<bool, StoreError>;

    // --- Herd's own signature set (issue 13) --------------------------------------------

    /// Every signature of Herd's set, ordered by SHA-256.
    async fn herd_signatures(&self) -> Result<Vec<HerdSignatureRow>, StoreError>;
    /// Adds a signature; false (and nothing changes) when one for its SHA-256 exists.
    async fn herd_signature_add(&self, row: &HerdSignatureRow) -> Result<bool, StoreError>;
    /// Removes the signature for `sha256`; false when there was none.
    async fn herd_signature_remove(&self, sha256: &str) -> Result<bool, StoreError>;
    /// Analysts' body signatures of Herd's set, ordered by format, then name.
    async fn herd_body_signatures(&self) -> Result<Vec<HerdBodySignatureRow>, StoreError>;
    /// Adds body signatures in one transaction: a name already stored (or given twice) is a
    /// `Conflict` naming it, and then nothing is added.
    async fn herd_body_signatures_add(
        &self,
        rows: &[HerdBodySignatureRow],
    ) -> Result<(), StoreError>;
    /// Removes the body signature `name`; false when there was none.
    async fn herd_body_signature_remove(&self, name: &str) -> Result<bool, StoreError>;
    /// Records that `terminal` reported `sha256` as suspicious (once per pair) and returns how
    /// many distinct terminals have.
    async fn herd_suspect_record(
        &self,
        sha256: &str,
        terminal: &str,
        size: u64,
        signature: &str,
        at: i64,
    ) -> Result<u64, StoreError>;
    /// Adds a threat of Herd's own; with `replace`, an existing one takes the new name and
    /// danger (keeping the earlier `first_seen`), else it is left as it is.
    async fn herd_threat_put(&self, row: &HerdThreatRow, replace: bool) -> Result<(), StoreError>;
    /// Every threat of Herd's own, by id.
    async fn herd_threats(&self) -> Result<Vec<HerdThreatRow>, StoreError>;
    /// In one write transaction: reads the set and Herd's threats, builds the catalog
    /// document of Herd's threats with `build`, and stores it as the feed
    /// `herd_proto::merge::HERD_FEED_VENDOR` ("herd:immunity") with a catalog revision bump
    /// when its text changed. Returns the new catalog revision, `None` when nothing changed.
    async fn herd_feed_rebuild(
        &self,
        build: &HerdFeedBuild,
        at: i64,
    ) -> Result<Option<u64>, StoreError>;
    /// Records a sample; false (and nothing changes) when one with its SHA-256 is known.
    async fn sample_add(&self, row: &SampleRow) -> Result<bool, StoreError>;
    /// Every sample, newest first.
    async fn samples(&self) -> Result<Vec<SampleRow>, StoreError>;
    /// Records a person's verdict on a file, replacing any earlier one.
    async fn file_verdict_record(&self, row: &FileVerdictRow) -> Result<(), StoreError>;
    /// The latest verdict people gave on each file judged.
    async fn file_verdicts(&self) -> Result<Vec<FileVerdictRow>, StoreError>;

    // Consent by e-mail (migration 0020).

    /// Sets (or with `None` removes) the address consent notices for `terminal` go to; false
    /// when there is no such terminal.
    async fn terminal_email_set(
        &self,
        terminal: &str,
        email: Option<&str>,
        at: i64,
    ) -> Result<bool, StoreError>;
    /// The address consent notices for `terminal` go to.
    async fn terminal_email(&self, terminal: &str) -> Result<Option<String>, StoreError>;
    /// Records a consent request; `None` (and nothing changes) when one for the same terminal
    /// and plan exists.
    async fn consent_request_open(
        &self,
        request: &NewConsentRequest,
    ) -> Result<Option<ConsentRequestRow>, StoreError>;
    /// A consent request by id (read from the writer: it decides whether a link still works).
    async fn consent_request(&self, id: u64) -> Result<Option<ConsentRequestRow>, StoreError>;
    /// The consent request of a terminal's plan.
    async fn consent_request_of(
        &self,
        terminal: &str,
        plan_id: &str,
    ) -> Result<Option<ConsentRequestRow>, StoreError>;
    /// A terminal's latest 100 consent requests, newest first.
    async fn consent_requests_of(
        &self,
        terminal: &str,
    ) -> Result<Vec<ConsentRequestRow>, StoreError>;
    /// Records the answer to a request that has none; false when it was answered already (or
    /// does not exist), so only the first answer counts.
    async fn consent_decide(
        &self,
        id: u64,
        decision: &str,
        at: i64,
        by: &str,
    ) -> Result<bool, StoreError>;
}

/// What a rollout counted: successful and failed installs, faults attributed to the release,
/// terminals that stopped checking in after receiving it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RolloutCounts {
    pub succeeded: u64,
    pub failed: u64,
    pub faults: u64,
    pub silent: u64,
}

/// One release's rollout (migration 0013).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolloutRow {
    /// `vendor/product/version`.
    pub release: String,
    pub product: String,
    pub version: String,
    pub seq: u64,
    /// `rolling`, `paused`, `complete` or `reverted`.
    pub phase: String,
    /// Index into the configured rings.
    pub ring: u32,
    pub ring_started: i64,
    pub started_at: i64,
    pub updated_at: i64,
    /// Why it was last halted, paused or moved by an operator.
    pub reason: Option<String>,
    pub counts: RolloutCounts,
    /// Moves one up with every transition.
    pub row_version: u64,
}
