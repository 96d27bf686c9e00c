//! API v1 wire types: the JSON bodies the center, the agent, `herd sim` and the admin CLI
//! exchange over HTTPS (SPEC §3.1, §3.6, §7). Catalog feeds and plans travel as their own
//! formats ([`crate::catalog::CatalogDoc`], [`crate::plan::PlanDoc`]).
//!
//! Requests refuse unknown fields (a typo is an error, not a silently dropped setting);
//! responses may grow fields, so clients must ignore what they do not know.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::plan::PlanDoc;
use crate::terminal::{HardwareDoc, InstalledDoc, PolicyDoc};

// Patterns in the schemas say what validation accepts (`herd_core::check_identifier`,
// `TzOffset::parse`…): the document and the code must agree, or an independent tester finds
// schema-valid requests refused. utoipa takes only literals, hence the repetition.
#[cfg(feature = "openapi")]
const IDENTIFIER_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$";

/// The schema of a group's policy in request bodies (a terminal's `policy` without `tz`).
#[cfg(feature = "openapi")]
fn group_policy_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    let text = |pattern: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(pattern))
    };
    let optional = |pattern: &str| {
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
            .pattern(Some(pattern))
    };
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "apply",
            text("^(latest-any-vendor|latest-same-vendor|pinned)$"),
        )
        .required("apply")
        .property("min_danger", optional("^(low|medium|high|critical)$"))
        .property("consent", optional("^(auto|ask)$"))
        .property(
            "window",
            optional("^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$").description(
                Some("`HH:MM-HH:MM` in each terminal's time, or null for any time."),
            ),
        )
        .additional_properties(Some(
            utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
        ))
        .build()
}

/// Integers in request bodies: JSON Schema counts `5.0` as the integer 5, so the center does
/// too (serde alone would refuse it); and the document calls them `int64`, so nothing above
/// `i64::MAX` is taken.
pub(crate) mod whole_number {
    use serde::{Deserialize, Deserializer, de::Error as _};

    fn from_f64<E: serde::de::Error>(value: f64) -> Result<u64, E> {
        // 2^63 is exactly representable; everything below it that is whole fits an i64.
        if value.fract() == 0.0 && (0.0..9_223_372_036_854_775_808.0).contains(&value) {
            Ok(value as u64)
        } else {
            Err(E::custom(format!(
                "{value} is not a whole number from 0 to 2^63 - 1"
            )))
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Whole(u64),
        Float(f64),
    }

    pub fn required<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        option(d)?.ok_or_else(|| D::Error::custom("expected a whole number from 0, not null"))
    }

    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<Number>::deserialize(d) {
            Ok(None) => Ok(None),
            Ok(Some(Number::Whole(n))) if n <= i64::MAX as u64 => Ok(Some(n)),
            Ok(Some(Number::Whole(n))) => Err(D::Error::custom(format!(
                "{n} is larger than the largest int64"
            ))),
            Ok(Some(Number::Float(f))) => from_f64(f).map(Some),
            Err(_) => Err(D::Error::custom("expected a whole number from 0, or null")),
        }
    }
}

/// The schema of a hardware description (`herd.terminal` `hardware`) in request bodies.
#[cfg(feature = "openapi")]
fn hardware_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let identifier = || {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(IDENTIFIER_PATTERN))
    };
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "kind",
            identifier().description(Some("Like `phone` or `laptop`.")),
        )
        .required("kind")
        .property(
            "platform",
            identifier().description(Some("Like `android-14`.")),
        )
        .required("platform")
        .property(
            "model",
            ObjectBuilder::new().schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                Type::String,
                Type::Null,
            ])),
        )
        .additional_properties(Some(
            utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
        ))
        .build()
}

/// Every error response: `{"error": {"code": "...", "message": "...", "problems": [...]}}`.
/// `code` is stable and machine-readable (see [`codes`]); `message` is for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ApiError,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    pub code: String,
    pub message: String,
    /// For refused documents: every problem, each with its JSON path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<ApiProblem>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiProblem {
    pub path: String,
    pub message: String,
}

impl From<&crate::Problem> for ApiProblem {
    fn from(problem: &crate::Problem) -> ApiProblem {
        ApiProblem {
            path: problem.path.clone(),
            message: problem.message.clone(),
        }
    }
}

/// The stable error codes of API v1.
pub mod codes {
    /// The request body is not valid JSON or does not match the request schema.
    pub const BAD_REQUEST: &str = "bad_request";
    /// The request body's `Content-Type` is not the one the endpoint reads.
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    /// A catalog feed failed validation (alone or merged with the other vendors' feeds).
    pub const FEED_INVALID: &str = "feed_invalid";
    /// A vendor tried to publish or upload for another vendor.
    pub const FORBIDDEN_VENDOR: &str = "forbidden_vendor";
    /// No credentials, or unknown credentials.
    pub const UNAUTHENTICATED: &str = "unauthenticated";
    /// The API token has expired.
    pub const TOKEN_EXPIRED: &str = "token_expired";
    /// The credentials are valid but not allowed to do this.
    pub const FORBIDDEN: &str = "forbidden";
    /// A terminal tried to act as another terminal.
    pub const IDENTITY_MISMATCH: &str = "identity_mismatch";
    /// Terminal endpoints need the client certificate issued at enrolment.
    pub const CLIENT_CERT_REQUIRED: &str = "client_certificate_required";
    /// The client certificate is not the terminal's current one (re-enrolled or deleted).
    pub const CERT_REVOKED: &str = "certificate_revoked";
    /// The enrolment token is unknown, expired or used up.
    pub const ENROL_TOKEN_INVALID: &str = "enrolment_token_invalid";
    /// A terminal with this id is already enrolled.
    pub const TERMINAL_EXISTS: &str = "terminal_exists";
    /// The certificate signing request could not be parsed or its signature is wrong.
    pub const CSR_INVALID: &str = "csr_invalid";
    /// An uploaded package's SHA-256 or size does not match what was declared.
    pub const DIGEST_MISMATCH: &str = "digest_mismatch";
    /// A body or upload is larger than the configured limit.
    pub const TOO_LARGE: &str = "too_large";
    /// The caller has used up a quota (a terminal's stored events, a vendor's package storage);
    /// retry later, keeping what was refused.
    pub const QUOTA_EXCEEDED: &str = "quota_exceeded";
    /// The request body arrived too slowly.
    pub const REQUEST_TIMEOUT: &str = "request_timeout";
    /// The requested thing does not exist.
    pub const NOT_FOUND: &str = "not_found";
    /// The request conflicts with the current state (for example deleting a group in use).
    pub const CONFLICT: &str = "conflict";
    /// A `Range` header the package cannot satisfy.
    pub const RANGE_NOT_SATISFIABLE: &str = "range_not_satisfiable";
    /// The terminal reported something the catalog cannot validate (unknown platform, product…).
    pub const INVENTORY_INVALID: &str = "inventory_invalid";
    /// Something failed inside the center; the message says what, the log has details.
    pub const INTERNAL: &str = "internal";
    /// The store (database) is unreachable or failing.
    pub const UNAVAILABLE: &str = "unavailable";
    /// The endpoint belongs to the other role: a center-only action asked of a site server,
    /// or a site's endpoint of the center.
    pub const WRONG_ROLE: &str = "wrong_role";
}

// ---------------------------------------------------------------------------------------------
// Terminals: enrolment, check-in, events.

/// `POST /v1/enrol` (no client certificate yet): trade an enrolment token and a certificate
/// signing request for the terminal's own client certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrolRequest {
    pub token: String,
    /// PKCS#10 CSR in PEM; its key stays on the terminal.
    pub csr_pem: String,
    /// The terminal's id (an identifier); the center assigns one when absent.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    )]
    pub id: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[cfg_attr(feature = "openapi", schema(schema_with = hardware_schema))]
    pub hardware: HardwareDoc,
    /// The terminal's UTC offset like `+09:00` (maintenance windows are in terminal time).
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")
    )]
    pub tz: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrolResponse {
    pub terminal: String,
    /// The terminal's client certificate (PEM), valid for mutual TLS on terminal endpoints.
    pub certificate_pem: String,
    /// The center's CA certificate (PEM): trust it for the server's certificate.
    pub ca_pem: String,
    /// The group placement rules put the terminal in (`unknown` when none matched).
    pub group: String,
    /// Check in again after about this many seconds.
    pub checkin_interval_secs: u64,
    /// The center's current TUF `root.json` (exactly as signed): the terminal's initial root of
    /// trust for signed distribution. Absent from centers older than signed distribution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuf_root: Option<String>,
    /// Where the terminal checks in, in order of preference: the site it enrolled through,
    /// then the center (an agent fails over to the next when one is unreachable). Empty from a
    /// center enrolled with directly: the terminal uses the address it enrolled at.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<String>,
}

/// `POST /v1/checkin` (client certificate): the terminal's inventory; the answer is its plan.
/// `Default` is a check-in that reports nothing (every field absent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckinRequest {
    /// If present it must be the id in the client certificate.
    #[serde(default)]
    pub terminal: Option<String>,
    /// What runs now; `null` when no vaccine product is installed.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub installed: Option<InstalledDoc>,
    /// Hardware as detected now; the enrolment record is kept when absent.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub hardware: Option<HardwareDoc>,
    #[serde(default)]
    pub tz: Option<String>,
    #[serde(default)]
    pub agent_version: Option<String>,
    /// The terminal's network interfaces now (the network map); absent from older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<Object>>))]
    pub interfaces: Option<Vec<NetworkInterface>>,
    /// The version of the signed `timestamp.json` the terminal holds: the answer then carries
    /// the upstream's own when it is another (`CheckinResponse::tuf_timestamp`), which saves
    /// the refresh that follows a check-in its first request. Absent from older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuf_timestamp_version: Option<u64>,
    /// The plan whose consent question the terminal is waiting on, unanswered on the device:
    /// the answer carries the user's answer if it was given by e-mail. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_waiting: Option<String>,
    /// The newest message id the terminal has from its operators: the answer carries the
    /// newer ones (`CheckinResponse::messages`). Absent from agents that fetch them apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_after: Option<u64>,
    /// The versions of the signed metadata the terminal holds besides the timestamp:
    /// `snapshot` and each targets role it has loaded (`targets` and the delegated roles its
    /// searches needed). The answer then carries the documents the upstream serves in another
    /// version (`CheckinResponse::tuf_metadata`), which saves the refresh after a check-in a
    /// request per document. At most [`MAX_TUF_HELD`] roles; names the upstream does not
    /// serve are ignored. Absent from older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuf_held: Option<BTreeMap<String, u64>>,
}

/// The most roles a check-in's `tuf_held` names.
pub const MAX_TUF_HELD: usize = 64;

/// The most bytes of signed metadata one check-in answer carries in `tuf_metadata`; the
/// agent fetches what did not fit.
pub const MAX_CHECKIN_METADATA_BYTES: usize = 512 * 1024;

/// One network interface as the agent saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkInterface {
    /// The interface's name (`eth0`, `wlan0`, `ppp0`).
    pub name: String,
    /// Its hardware address (`aa:bb:cc:dd:ee:ff`), absent for interfaces without one.
    #[serde(default)]
    pub mac: Option<String>,
    /// Its addresses, IPv4 and IPv6, without prefix lengths.
    #[serde(default)]
    pub addresses: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckinResponse {
    /// Identifies this plan in reports: the SHA-256 of its JSON, so the same plan keeps its id.
    pub plan_id: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub plan: PlanDoc,
    /// Check in again after this many seconds (the interval with jitter applied).
    pub next_checkin_secs: u64,
    /// The center's clock, RFC 3339 UTC.
    pub server_time: String,
    /// The user's answer to the plan named in the request's `consent_waiting`, when it was
    /// given by e-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<crate::consent::ConsentAnswer>,
    /// Messages to this terminal newer than the request's `messages_after`, oldest first (at
    /// most `MAX_CHECKIN_MESSAGES`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<crate::messages::Message>,
    /// The message id the terminal may keep as its `messages_after` from now on: every
    /// message for it up to this one is in `messages` or was sent before. Absent when the
    /// request had no `messages_after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_through: Option<u64>,
    /// Last (the center appends it to an answer already made). When the request named a `tuf_timestamp_version` other than the one this upstream
    /// serves: its signed `timestamp.json`, byte for byte as `/tuf/metadata/timestamp.json`
    /// serves it. The agent verifies it exactly as if it had fetched it; absent, with a
    /// version named, the terminal's own is the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuf_timestamp: Option<String>,
    /// Last (appended after `tuf_timestamp`). The signed metadata documents the upstream
    /// serves in another version than the request's `tuf_held` names, keyed by the name
    /// `/tuf/metadata/` serves each under (`N.snapshot.json`, `N.<role>.json`), byte for byte:
    /// a release wakes a terminal to one request instead of one per changed document. At most
    /// [`MAX_CHECKIN_METADATA_BYTES`] in all; the agent fetches what is missing, and verifies
    /// what is here exactly as if it had fetched it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuf_metadata: Option<BTreeMap<String, String>>,
}

/// The most messages one check-in answer carries; more wait for the next check-in.
pub const MAX_CHECKIN_MESSAGES: usize = 20;

/// `POST /v1/events` (client certificate): a batch from the agent's outbox, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventBatch {
    /// At least one event, at most 1000.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 1000))]
    pub events: Vec<EventDoc>,
}

/// The kinds of event an agent sends (`EventDoc::kind`): names the agent, the center and the
/// store must agree on, so each is spelled here once. Kinds are open-ended on the wire (the
/// center stores any kind it does not know), but a kind someone acts on lives here.
pub mod events {
    /// The agent started (`data`: version, pid, whether it runs once).
    pub const AGENT_STARTED: &str = "agent.started";
    /// A new plan arrived at the terminal (`data`: plan id, action, reason, consent, window).
    pub const PLAN_RECEIVED: &str = "plan.received";
    /// What happened to a plan (`data`: a [`super::PlanReport`]); the center keeps the latest
    /// per terminal.
    pub const PLAN_REPORT: &str = "plan.report";
    /// The agent asked the user for consent to a plan.
    pub const CONSENT_REQUESTED: &str = "consent.requested";
    /// The user declined a plan (`data`: plan id, change, and `by`: `device` or `email`).
    pub const CONSENT_DECLINED: &str = "consent.declined";
    /// The user accepted a plan (`data`: plan id, change, and `by`: `device` or `email`).
    pub const CONSENT_ACCEPTED: &str = "consent.accepted";
    /// The agent refused what its upstream served because the signed metadata does not vouch
    /// for it (`data`: a [`super::TrustRefusal`]): tampered, rolled back, expired, unsigned.
    pub const TRUST_REFUSED: &str = "trust.refused";
    /// Filler events `herd-agent run --emit-test-events N` queues to exercise the outbox.
    pub const TEST_EVENT: &str = "test.event";
    /// A supervised program failed, or reported its own fault (`data`: a
    /// [`crate::fault::FaultReport`]); the center buckets it and decides (`fault.rs`).
    pub const FAULT_REPORT: &str = "fault.report";
    /// The agent replaced a failing program, or tried to and restored it (`data`: program,
    /// alternative, outcome, message).
    pub const FAULT_REPLACED: &str = "fault.replaced";
    /// The agent's scanner detected a file (`data`: a [`super::Detection`]).
    pub const SCAN_DETECTION: &str = "scan.detection";
    /// A sample for the center's analysts (`data`: a [`super::SampleUpload`]); the center
    /// keeps the bytes in its sample store and the event without them.
    pub const SAMPLE_UPLOAD: &str = "sample.upload";

    /// The user's answer or status to operators (`data`: a
    /// [`crate::messages::MessageAnswer`]); the center stores it as a message.
    pub const MESSAGE_SENT: &str = "message.sent";
    /// The agent put back the product it had before because the one it had just activated
    /// kept failing (`data`: a [`super::SelfProtection`]); the center counts it as a failed
    /// install of that release's rollout.
    pub const SELF_PROTECTED: &str = "rollout.self_protected";
    /// A scanning agent fetched and verified a new Herd signature set and its scanner uses it
    /// from now on (`data`: a [`super::HerdSetUpdated`]): what tells the center, and `herd sim
    /// protect --verdict`, that a verdict reached the terminal.
    pub const HERD_SET_UPDATED: &str = "herd_set.updated";
}

/// The data of a `herd_set.updated` event: which Herd signature set the terminal holds now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HerdSetUpdated {
    /// Lower-case hex SHA-256 of the set's bytes, as its signed target lists it.
    pub sha256: String,
    /// Signatures in the set.
    pub signatures: u64,
}

/// Why an agent undid a release by itself (`rollout.self_protected` events, issue 14): the
/// release it had activated (`product`, `version`) failed `faults` times within `window_secs`
/// of its activation, so the agent restored `restored_version` of `restored_product` and will
/// not install that release again until its upstream offers another one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SelfProtection {
    pub product: String,
    pub version: String,
    pub restored_product: String,
    pub restored_version: String,
    /// Fault reports about the product counted since its activation.
    pub faults: u32,
    pub window_secs: u64,
    /// What the faults were and what the agent did, in a sentence.
    pub reason: String,
}

/// A detection by the scanner `herd-agent run` hosts (`scan.detection` events, issue 13): the
/// file, its digest and size (what a Herd signature is made of), every signature that matched,
/// the product whose definitions (or Herd's own set) named it, and what the agent did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Detection {
    pub path: String,
    /// Lower-case hex SHA-256 of the content scanned.
    pub sha256: String,
    pub size: u64,
    /// At least one signature name.
    pub signatures: Vec<String>,
    /// The product active on the terminal (`product/version`), "" when none is installed.
    pub product: String,
    /// `on-access`, `scheduled` or `submitted`.
    pub mode: String,
    /// What was done: `quarantined` (with `quarantine_id`), `not-quarantined` (with the
    /// reason in `detail`), `reported` (suspicious only: left in place). Never `cured`: no
    /// definition format the agent loads says a file can be repaired.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Detection {
    /// Whether every signature that matched is one of Herd's own (`Herd.Immunity.…`): such a
    /// detection is the set at work, not a vendor's new finding.
    pub fn only_herd(&self) -> bool {
        self.signatures
            .iter()
            .all(|s| s.starts_with(crate::distribution::HERD_SIGNATURE_PREFIX))
    }
}

/// A file sent to the center's sample store (`sample.upload` events, issue 13), neutralised:
/// its bytes XOR-ed with a keystream of SHA-256(`sha256` ‖ block number as u64 LE), one 32-byte
/// block at a time (the agent's quarantine scheme), so the upload and the stored copy can
/// neither run nor match a signature; then hex-encoded. The center checks `size` against its
/// limit and `sha256` against the restored bytes before keeping anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SampleUpload {
    /// Lower-case hex SHA-256 of the original bytes.
    pub sha256: String,
    pub size: u64,
    /// The file's path on the terminal.
    pub path: String,
    /// Why it is sent: `submitted` (by the user), `suspicious`, `not-quarantinable`.
    pub reason: String,
    /// The neutralised bytes, hex; absent from the event as the center stores it, and when
    /// `held` says the center has the sample already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neutralised: Option<String>,
    /// The center (asked through `GET /v1/terminal/samples/{sha256}` before sending) said it
    /// has this sample: the event reports it without its bytes (seed 001 S104–S106).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
}

/// `GET /v1/terminal/samples/{sha256}`: whether the center has a sample, asked by a terminal
/// before it uploads one (through its site too).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SamplePresence {
    pub sha256: String,
    pub held: bool,
}

/// One sample in the center's store (`GET /v1/samples`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SampleDoc {
    pub sha256: String,
    pub size: u64,
    pub reason: String,
    pub path: String,
    pub first_terminal: String,
    /// RFC 3339.
    pub received_at: String,
    /// Whether Herd's set holds its signature now.
    pub in_herd_set: bool,
    /// The latest verdict a person gave on it (`malicious` or `benign`), and who (`operator`
    /// or `analyst`); absent while it awaits one. A rule's verdict shows as `in_herd_set`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judged_by: Option<String>,
}

/// `POST /v1/verdicts` (operator): a judgement on a file by its SHA-256 (issue 13). `malicious`
/// publishes its exact-hash signature in Herd's own set at once; `benign` (also a
/// false-positive report) removes it the same way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerdictDoc {
    /// Lower-case hex SHA-256 (64 digits).
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: String,
    /// The file's size in bytes (needed for `malicious`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole_number::option"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub size: Option<u64>,
    /// `malicious` or `benign`.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^(malicious|benign)$"))]
    pub verdict: String,
    /// The catalog threat it is (an id), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_-]{1,64}$"))]
    pub threat: Option<String>,
    /// For `malicious`: the danger of the catalog threat the verdict makes (`high` unless
    /// given; a vendor's threat of the same id or file keeps its vendor's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^(low|medium|high|critical)$"))]
    pub danger: Option<String>,
    /// For `malicious`: the threat's name in the catalog (its id unless given): 1 to 200
    /// characters, not only spaces, no NUL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 200,
            pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"
        )
    )]
    pub name: Option<String>,
}

/// One signature of Herd's own set, as `GET /v1/herd-set` lists it and a verdict answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HerdSignatureDoc {
    pub sha256: String,
    pub size: u64,
    pub name: String,
    pub threat: String,
    pub source: String,
    pub first_terminal: String,
    pub first_signature: String,
    /// RFC 3339.
    pub created_at: String,
}

/// Body signatures an analyst adds to Herd's own set (`POST /v1/herd-set/body-signatures`,
/// issue 13): the text of one ClamAV `.ndb` or `.ldb` file (a signature per line, each named
/// `Herd.Immunity.…`) or of one YARA file. Every line is checked with the scan engine's own
/// parser; any refused line refuses the whole document, each named by its line number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BodySignaturesDoc {
    /// `ndb`, `ldb` or `yar`.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^(ndb|ldb|yar)$"))]
    pub format: String,
    /// The file's text.
    pub text: String,
    /// For `yar` only: the name the file's rules are listed and removed by (1-64 of A-Z, a-z,
    /// 0-9, '.', '-', '_'); an `.ndb` or `.ldb` line is named by its own first field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// One analyst's body signature of Herd's set (`GET /v1/herd-set/body-signatures`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BodySignatureDoc {
    pub name: String,
    /// `ndb`, `ldb` or `yar`.
    pub format: String,
    /// The signature's line (`ndb`, `ldb`) or the file's rules (`yar`), as written into the set.
    pub text: String,
    /// The role that added it: `analyst` or `operator`.
    pub added_by: String,
    /// RFC 3339.
    pub added_at: String,
}

/// What adding body signatures changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BodySignaturesOutcome {
    /// The names added, in the document's order.
    pub added: Vec<String>,
    /// Body signatures in the set now.
    pub body_signatures: u64,
}

/// What a verdict changed (`POST /v1/verdicts`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerdictOutcome {
    /// Whether Herd's set changed (false: the signature was already there, or already gone).
    pub changed: bool,
    /// The set's SHA-256 as now listed in the signed `herd` role ("" when it lists none).
    pub set_sha256: String,
    /// Signatures in the set now.
    pub signatures: u64,
}

/// Why an agent refused metadata or a target (`trust.refused` events): `kind` is one of
/// [`trust_refusals`]' names (the center counts refusals by it), `detail` the agent's words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrustRefusal {
    pub kind: String,
    /// The role or target refused, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub detail: String,
    /// The plan the refusal stopped, when it stopped one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

/// The kinds of [`TrustRefusal`], the labels of the center's refusal metric.
pub mod trust_refusals {
    /// Metadata not signed by a threshold of the role's keys.
    pub const SIGNATURE: &str = "signature";
    /// A version lower than one already trusted (rollback), or a version other than the one
    /// the higher role names (mix-and-match).
    pub const ROLLBACK: &str = "rollback";
    /// Metadata past its expiry (a freeze attack, or a repository not refreshed).
    pub const EXPIRED: &str = "expired";
    /// A length or hash other than the signed one, or more bytes than allowed (endless data).
    pub const MISMATCH: &str = "mismatch";
    /// A download that stalled or did not finish in time (slow retrieval).
    pub const SLOW: &str = "slow";
    /// A plan naming a target the verified metadata does not list, or lists for another
    /// product, version or platform (arbitrary installation, wrong software).
    pub const UNLISTED: &str = "unlisted";
    /// A plan whose script is not the one the agent generates from signed metadata.
    pub const SCRIPT: &str = "script";
    /// The upstream could not be reached or did not serve the metadata.
    pub const UNAVAILABLE: &str = "unavailable";
    /// Anything else the metadata got wrong (malformed documents, bad delegations).
    pub const INVALID: &str = "invalid";

    /// Every kind, in the order the metrics list them.
    pub const ALL: [&str; 9] = [
        SIGNATURE,
        ROLLBACK,
        EXPIRED,
        MISMATCH,
        SLOW,
        UNLISTED,
        SCRIPT,
        UNAVAILABLE,
        INVALID,
    ];
}

/// One event. `seq` is the agent's outbox sequence number, strictly increasing per terminal:
/// it is the idempotency key, so a batch sent twice is stored once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventDoc {
    /// At least 1, and greater than the previous event's in the batch.
    #[serde(deserialize_with = "whole_number::required")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub seq: u64,
    /// RFC 3339 time the event happened on the terminal.
    pub at: String,
    /// For example `plan.report`, `scan.detection`, `agent.started`, `consent.declined`.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._-]{1,64}$"))]
    pub kind: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventAck {
    /// Every event with `seq` ≤ this is stored: the agent may delete them from its outbox.
    pub acked_through: u64,
    pub accepted: u64,
    pub duplicates: u64,
}

/// The `data` of a `plan.report` event: what happened when the terminal carried out a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlanReport {
    pub plan_id: String,
    pub outcome: ReportOutcome,
    pub steps: Vec<StepResult>,
    /// What runs after the plan (the new product, or the old one after a rollback).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub installed: Option<InstalledDoc>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ReportOutcome {
    /// Every step succeeded; the new product is active.
    Succeeded,
    /// A step failed and the previous product was kept or restored.
    RolledBack,
    /// The user declined (consent `ask`).
    Declined,
    /// Not carried out yet: waiting for consent, a maintenance window or disk space.
    Deferred,
}

impl ReportOutcome {
    /// Every outcome.
    pub const ALL: [ReportOutcome; 4] = [
        ReportOutcome::Succeeded,
        ReportOutcome::RolledBack,
        ReportOutcome::Declined,
        ReportOutcome::Deferred,
    ];

    /// The wire name, as serde writes it (`rolled_back`); a test holds the two together.
    pub const fn as_str(self) -> &'static str {
        match self {
            ReportOutcome::Succeeded => "succeeded",
            ReportOutcome::RolledBack => "rolled_back",
            ReportOutcome::Declined => "declined",
            ReportOutcome::Deferred => "deferred",
        }
    }
}

impl std::fmt::Display for ReportOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepResult {
    /// Index into the plan's `steps`.
    pub step: usize,
    /// `fetch`, `install`, `verify`, `uninstall`, `activate` or `rollback`.
    pub kind: String,
    pub status: StepStatus,
    #[serde(default)]
    pub detail: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum StepStatus {
    Ok,
    Failed,
    Skipped,
    Undone,
}

// ---------------------------------------------------------------------------------------------
// Vendors.

/// `PUT /v1/feeds/{vendor}` answers with the catalog revision the feed produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublishResponse {
    pub vendor: String,
    pub revision: u64,
    /// False when the same feed was already published (republishing is idempotent).
    pub changed: bool,
    pub sha256: String,
    /// Packages the feed's releases list that the center does not hold yet: upload them
    /// (`PUT /v1/packages/{sha256}`) before terminals need them.
    pub missing_packages: Vec<String>,
    /// What the feed says that does not count, with its JSON path: descriptions of threats
    /// another vendor owns, threats or a vendor awaiting an operator's approval.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<ApiProblem>,
}

/// `PUT /v1/packages/{sha256}` answers with what was stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PackageInfo {
    pub sha256: String,
    pub size: u64,
    pub vendor: Option<String>,
    /// RFC 3339 UTC.
    pub uploaded_at: String,
    /// False when the package was already stored.
    pub created: bool,
}

// ---------------------------------------------------------------------------------------------
// Operators.

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TerminalSummary {
    pub id: String,
    pub user: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub hardware: HardwareDoc,
    pub tz: Option<String>,
    pub group: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub installed: Option<InstalledDoc>,
    /// RFC 3339 UTC.
    pub enrolled_at: String,
    pub last_checkin: Option<String>,
    pub last_address: Option<String>,
    /// The action of the current plan (`none`, `update`, `switch`, `exposed`), if planned yet.
    pub action: Option<String>,
    /// How many required threats the installed product does not cover.
    pub uncovered: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TerminalList {
    pub terminals: Vec<TerminalSummary>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next: Option<String>,
}

/// `GET /v1/terminals/{id}/gap` (operator): the whole of what a plan lists only the first
/// `LISTED_THREATS` of (SPEC §4) — every required threat the terminal's installed product
/// leaves uncovered now, and those still uncovered once its plan is carried out — in the
/// plan's order (most dangerous, then newest, first), planned now with the current catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TerminalGap {
    pub terminal: String,
    pub uncovered_now: Vec<GapThreat>,
    pub uncovered_after: Vec<GapThreat>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GapThreat {
    pub id: String,
    pub name: String,
    pub danger: String,
    /// `YYYY-MM-DD`.
    pub discovered: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TerminalDetail {
    #[serde(flatten)]
    pub summary: TerminalSummary,
    pub plan_id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub plan: Option<PlanDoc>,
    pub planned_at: Option<String>,
    /// The network map: every source address seen, most recent first.
    pub addresses: Vec<AddressSeen>,
    /// The last `plan.report` the terminal sent.
    pub last_report: Option<PlanReport>,
    /// The network map as the terminal's agent reports it: every (interface, MAC, address)
    /// it held, those it holds now first, then most recently seen first.
    #[serde(default)]
    pub interfaces: Vec<InterfaceSeen>,
}

/// One (interface, MAC, address) a terminal held, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InterfaceSeen {
    pub name: String,
    #[serde(default)]
    pub mac: Option<String>,
    /// Absent for an interface reported without addresses.
    #[serde(default)]
    pub address: Option<String>,
    /// RFC 3339.
    pub first_seen: String,
    /// When the agent last reported holding it (RFC 3339); for current rows, the terminal's
    /// last check-in says it still does.
    pub last_seen: String,
    /// Part of what the agent reported last.
    pub current: bool,
}

/// How many interfaces one check-in may report, and addresses per interface.
pub const MAX_INTERFACES: usize = 64;
pub const MAX_INTERFACE_ADDRESSES: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddressSeen {
    pub address: String,
    pub first_seen: String,
    pub last_seen: String,
    pub checkins: u64,
}

/// `GET /v1/coverage`: threats × products, with since when each product covers each threat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CoverageMatrix {
    pub revision: u64,
    pub products: Vec<CoverageProduct>,
    pub threats: Vec<CoverageRow>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CoverageProduct {
    pub id: String,
    pub vendor: String,
    pub name: String,
    /// The newest release's version and seq.
    pub latest_version: Option<String>,
    pub latest_seq: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CoverageRow {
    pub threat: String,
    pub name: String,
    pub danger: String,
    pub discovered: String,
    /// One cell per product, in the order of `products`.
    pub cells: Vec<CoverageCell>,
    /// RFC 3339: since when Herd's own signature set covers the threat (on every terminal,
    /// whatever its product), if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub herd_since: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CoverageCell {
    /// Covered by the product's newest release.
    pub covered: bool,
    pub since_seq: Option<u64>,
    pub covered_on: Option<String>,
    pub expected: Option<String>,
}

/// A group and the policy its terminals get.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupDoc {
    /// The same id as in the path.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    )]
    pub id: String,
    #[serde(default)]
    pub description: String,
    /// The terminal's `tz` comes from the terminal; a `tz` here is refused.
    #[cfg_attr(feature = "openapi", schema(schema_with = group_policy_schema))]
    pub policy: PolicyDoc,
    /// How many terminals are in it (in responses; ignored in requests).
    #[serde(default, deserialize_with = "whole_number::required")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub terminals: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupList {
    pub groups: Vec<GroupDoc>,
}

/// A placement rule: every condition given must hold; the first matching rule wins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlacementRule {
    pub group: String,
    /// Hardware kind, like `phone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// An address range in CIDR notation (`10.1.0.0/16`, `fd00::/8`) matched against the
    /// address the terminal enrols from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlacementRules {
    pub rules: Vec<PlacementRule>,
}

/// `POST /v1/site-tokens` (operator): a site enrolment token for one site, valid 7 days.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewSiteToken {
    /// A note for operators (which site it is for).
    #[serde(default)]
    pub label: String,
}

/// `POST /v1/enrolment-tokens` (operator).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewEnrolmentToken {
    #[serde(default)]
    pub label: String,
    /// How many terminals may enrol with it (default 1, at most 1,000,000,000).
    #[serde(default, deserialize_with = "whole_number::option")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1_000_000_000))]
    pub uses: Option<u64>,
    /// Lifetime in seconds (default 7 days or the center's `max_enrol_token_days`, whichever
    /// is less; a longer one is refused).
    #[serde(default, deserialize_with = "whole_number::option")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub ttl_secs: Option<u64>,
    /// A re-enrolment token: only this (enrolled) terminal may enrol with it, keeping its id,
    /// group and history, with a new certificate — the way back for a terminal whose
    /// certificate expired or was lost. Such a token has one use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    )]
    pub reenrol_terminal: Option<String>,
}

/// `POST /v1/console/links` (operator): a one-time link that signs a browser in to the web
/// console as the caller's token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewConsoleLink {
    /// Shown as who is signed in (default: the token's label).
    #[serde(default)]
    pub label: String,
    /// Seconds until the link expires, 60..=86400 (default 600).
    #[serde(default, deserialize_with = "whole_number::option")]
    #[cfg_attr(feature = "openapi", schema(minimum = 60, maximum = 86400))]
    pub ttl_secs: Option<u64>,
}

/// A one-time console sign-in link: open `path` on this server once, before `expires_at`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsoleLink {
    /// `/console/link/<secret>`: the secret is shown only now.
    pub path: String,
    /// RFC 3339.
    pub expires_at: String,
}

/// `POST /v1/tokens` (operator): an API token for an operator or a vendor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewApiToken {
    /// `operator`, `vendor`, `analyst` (judges samples, reads the console) or `viewer` (reads in the
    /// console, changes nothing).
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^(operator|vendor|analyst|viewer)$")
    )]
    pub role: String,
    /// Required for `vendor`, refused for `operator`: the vendor id the token may publish for.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    )]
    pub vendor: Option<String>,
    #[serde(default)]
    pub label: String,
    /// Lifetime in seconds (default 365 days or the center's `max_api_token_days`, whichever
    /// is less; a longer one is refused).
    #[serde(default, deserialize_with = "whole_number::option")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub ttl_secs: Option<u64>,
}

/// The center's CA as clients may know it (`GET /v1/ca`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaInfo {
    /// The trust anchors, PEM: what terminals and tools pin as `ca.pem`.
    pub trust_pem: String,
    /// The certificate of the CA that issues (an intermediate when `offline_root`).
    pub issuer_pem: String,
    /// When the issuing CA's certificate expires (RFC 3339).
    pub issuer_not_after: String,
    /// True when the issuer is an online intermediate under an offline root.
    pub offline_root: bool,
    /// Bumped by every change of the CA.
    pub generation: u64,
}

/// An intermediate CA to install in place of the center's CA (`PUT /v1/ca`), as
/// `herd ca intermediate` writes it. Its `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaInstall {
    /// The intermediate's certificate, PEM (then any certificates between it and the root).
    pub certificate_pem: String,
    /// Its private key, PKCS#8 PEM; sealed by the center before it is stored.
    pub key_pem: String,
    /// The offline root's certificate, PEM: the trust anchor the intermediate must chain to.
    pub trust_pem: String,
    /// Install a new root although enrolled terminals trust only the current CA (they must
    /// then re-enrol).
    #[serde(default)]
    pub force: bool,
}

impl std::fmt::Debug for CaInstall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaInstall")
            .field("certificate_pem", &self.certificate_pem)
            .field("key_pem", &"[elided]")
            .field("trust_pem", &self.trust_pem)
            .field("force", &self.force)
            .finish()
    }
}

/// `GET /v1/tokens` (operator): every API and enrolment token, never their secrets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

/// A token as operators see it: what it is for, not what it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenInfo {
    /// The first 12 hex digits of the secret's SHA-256: what `DELETE /v1/tokens/{id}` takes.
    pub id: String,
    /// `operator`, `vendor` (API tokens) or `enrolment`.
    pub kind: String,
    /// The vendor a vendor token publishes for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// The terminal a re-enrolment token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reenrol_terminal: Option<String>,
    pub label: String,
    pub created_at: String,
    pub expires_at: String,
    pub expired: bool,
    /// Enrolment tokens: how many more terminals may enrol with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses_left: Option<u64>,
}

/// `DELETE /v1/tokens/{id}` (operator): the token revoked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenRevoked {
    pub token: TokenInfo,
}

/// `POST /v1/terminals/self/certificate` (the terminal's current client certificate): a new
/// certificate for the same terminal, from a request for a fresh key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CertificateRenewal {
    /// PKCS#10 CSR in PEM for a new key; its key stays on the terminal.
    pub csr_pem: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CertificateRenewed {
    pub terminal: String,
    /// The new client certificate (PEM; possibly followed by the chain to the CA). The
    /// certificate that renewed stays valid until it expires or the next renewal.
    pub certificate_pem: String,
    /// The center's CA certificates (PEM): trust them for the server's certificate from now on.
    pub ca_pem: String,
    /// When the new certificate expires (RFC 3339).
    pub expires_at: String,
}

/// A newly created secret: shown once, stored only as its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenCreated {
    pub token: String,
    pub expires_at: String,
}

// ---------------------------------------------------------------------------------------------
// Operators: who may say what about threats, and the blob store.

/// A threat as the center's registry knows it: who owns it (only the owner's feed names and
/// rates it) and whether it is planned against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ThreatEntry {
    pub id: String,
    /// The vendor that owns it: the first to declare it, or the one an operator gave it to.
    pub vendor: String,
    /// `approved`, `pending` (not planned against until approved) or `rejected`.
    pub status: String,
    /// RFC 3339 UTC: when its owner's feed first declared it.
    pub declared_at: String,
    /// From the owner's current feed; absent when that feed no longer lists it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub danger: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovered: Option<String>,
}

/// `GET /v1/threats`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ThreatList {
    pub threats: Vec<ThreatEntry>,
}

/// `PUT /v1/threats/{id}/owner`: give a threat to another vendor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ThreatOwner {
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    )]
    pub vendor: String,
}

/// A vendor that has published, and whether its feed counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VendorEntry {
    pub id: String,
    /// `approved`, `pending` (its feed does not count until approved) or `rejected`.
    pub status: String,
    /// RFC 3339 UTC.
    pub first_published_at: String,
}

/// `GET /v1/vendors`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VendorList {
    pub vendors: Vec<VendorEntry>,
}

/// What a collection of the blob store removed (`POST /v1/blobs/collect`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BlobCollection {
    /// Blobs no current feed references, older than the grace period, deleted.
    pub blobs_collected: u64,
    pub bytes_collected: u64,
    /// Uploads abandoned half-way, older than the grace period, deleted.
    pub partial_uploads_removed: u64,
    /// Bytes of blobs still stored.
    pub bytes_stored: u64,
}

// --- signed distribution: the center's TUF repository ---------------------------------------

/// The signed repository as the center serves it (`GET /v1/trust`): what an operator checks
/// before and after a key ceremony, and what `herd keys` builds the next root from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrustStatus {
    pub root: TrustRoot,
    /// Every other role the repository serves: its newest version and expiry.
    pub roles: Vec<TrustRoleStatus>,
    /// What top-level `targets` delegates, in its order.
    pub delegations: Vec<TrustDelegation>,
    /// The keys the center signs with online (active), or holds for a root not installed yet
    /// (pending).
    pub online_keys: Vec<OnlineKey>,
    /// Vendors' registered signing keys.
    pub vendor_keys: Vec<VendorSigningKeyInfo>,
    /// Root keys the center holds itself (an auto-initialised repository; empty once the root
    /// moved offline): it co-signs a root installed with `PUT /v1/trust/root` with them.
    pub center_root_keyids: Vec<String>,
}

/// The newest root.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrustRoot {
    pub version: u64,
    /// RFC 3339.
    pub expires: String,
    /// Each top-level role's key ids and threshold.
    pub roles: Vec<TrustRoleKeys>,
    /// Every key the root names, by key id, in TUF's JSON form.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub keys: serde_json::Value,
    /// Delegated roles whose keys the root pins (`x-herd-pinned-roles`).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub pinned_roles: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrustRoleKeys {
    pub role: String,
    pub keyids: Vec<String>,
    pub threshold: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrustRoleStatus {
    pub role: String,
    pub version: u64,
    /// RFC 3339.
    pub expires: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrustDelegation {
    pub role: String,
    pub keyids: Vec<String>,
    pub threshold: u32,
    pub paths: Vec<String>,
    /// `center` (the online targets key) or `vendor` (the vendor's registered key).
    pub signed_by: String,
}

/// An online key (`POST /v1/trust/online-keys/{role}` answers the one it generated).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OnlineKey {
    /// `timestamp`, `snapshot` or `targets`.
    pub role: String,
    pub keyid: String,
    /// The TUF public key JSON (`{"keytype": "ed25519", "scheme": "ed25519", "keyval": …}`).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub public: serde_json::Value,
    /// `active` (signs now) or `pending` (waits for a root naming it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// A vendor's signing key (`PUT /v1/vendors/{vendor}/signing-key`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VendorSigningKey {
    /// The TUF ed25519 public key JSON.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub public: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VendorSigningKeyInfo {
    pub vendor: String,
    pub keyid: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub public: serde_json::Value,
    /// RFC 3339.
    pub registered_at: String,
}

/// What the center did with a vendor's signed role (`PUT /v1/tuf/roles/{role}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoleAccepted {
    pub role: String,
    pub version: u64,
    /// The snapshot version that lists it.
    pub snapshot_version: u64,
}

/// `GET /v1/rollouts` (operator): one release's rollout in rings (SPEC §3.4).
///
/// Answers read by clients accept fields they do not know (no `deny_unknown_fields`), so a
/// center that adds one does not break older CLIs and agents; requests stay strict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RolloutSummary {
    /// `vendor/product/version`.
    pub release: String,
    pub product: String,
    pub version: String,
    pub seq: u64,
    /// A program release (a catalog product of kind `program`): it rolls out as a
    /// replacement, to the faulting terminals whose fault verdict names it, ring by ring
    /// (terminals outside the open rings are told `held`); its successes and failed installs
    /// are the replacements' outcomes, its faults those the new program reports. Absent
    /// (false) for a vaccine release, which rolls out through plans.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replacement: bool,
    /// `rolling`, `paused`, `complete` or `reverted` (halted, withdrawn and planned back on
    /// the terminals that took it).
    pub phase: String,
    /// The current ring's name (`canary`…) and index among the configured rings.
    pub ring: String,
    pub ring_index: u32,
    /// How much of the fleet the current ring reaches, in basis points (10,000: everyone).
    pub reach_bp: u32,
    /// The groups the current ring reaches whatever their terminals' buckets (cumulative,
    /// sorted; none once complete or reverted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// RFC 3339.
    pub started_at: String,
    pub ring_started_at: String,
    pub updated_at: String,
    /// Why it was halted, or what an operator said.
    pub reason: Option<String>,
    pub succeeded: u64,
    pub failed: u64,
    pub faults: u64,
    pub silent: u64,
}

/// What an operator does to a rollout (`POST /v1/rollouts/{vendor}/{product}/{version}/{action}`).
pub mod rollout_actions {
    /// Hold it at its current ring (still offered within it).
    pub const PAUSE: &str = "pause";
    /// Let a paused or reverted rollout go on from its current ring, counting afresh.
    pub const RESUME: &str = "resume";
    /// Move it to its next ring now (or complete it from the last).
    pub const PROMOTE: &str = "promote";
    /// Halt it and plan the terminals that took it back to the last good release.
    pub const REVERT: &str = "revert";
    pub const ALL: [&str; 4] = [PAUSE, RESUME, PROMOTE, REVERT];
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `as_str` is what serde writes: one spelling of each outcome.
    #[test]
    fn outcome_names_are_the_serde_names() {
        for outcome in ReportOutcome::ALL {
            let json = serde_json::to_string(&outcome).unwrap();
            assert_eq!(json, format!("\"{}\"", outcome.as_str()));
        }
    }
}
