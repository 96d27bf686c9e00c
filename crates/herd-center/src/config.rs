//! `herd serve` configuration: a TOML file (every key documented in [`DEFAULT_CONFIG`], unknown
//! keys refused with their name) overridden by command-line flags, then checked into a
//! [`CenterConfig`] the rest of the center takes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// The commented default configuration that `herd config default` prints.
pub const DEFAULT_CONFIG: &str = r#"# herd serve configuration (TOML). Every key is optional; flags override the file.

# Address of the HTTPS listener (mutual TLS for terminals, API tokens for vendors and operators).
listen = "127.0.0.1:8443"

# Where the center keeps its embedded database (herd.db), package blobs and its CA certificate copy.
data_dir = "herd-data"

# The store: empty for embedded SQLite in data_dir, or a PostgreSQL URL such as
# "postgres://herd@db.example:5432/herd". Several center processes may share one PostgreSQL
# database; they must then also share their package blobs: one blob_dir on a shared file
# system, or one bucket (blob_store = "s3" below).
database = ""

# A PostgreSQL server not on loopback must be reached over TLS that verifies its certificate:
# the URL needs sslmode=verify-full (or verify-ca) and sslrootcert=FILE, e.g.
# "postgres://herd@db.example/herd?sslmode=verify-full&sslrootcert=/etc/herd/db-ca.pem".
# false accepts an unverified or plaintext connection (a network attacker could then read and
# change everything the center stores).
database_require_verified_tls = true

# The key-encryption key (KEK) the CA's private key is sealed under in the database: a file
# holding a secret of at least 16 bytes (`herd ca new-kek --out FILE` makes one; a long
# passphrase works too). Keep it outside data_dir and out of database backups, e.g.
# /etc/herd/ca.kek readable only by the center's user, or a systemd credential named
# herd-ca-kek. The environment can give it instead: HERD_CA_KEK (the secret itself) or
# HERD_CA_KEK_FILE. With none of these, the center generates <data_dir>/ca.kek at first start
# and warns: the database alone (a backup, a PostgreSQL dump) then still does not reveal the key.
ca_kek_file = ""

# Package blobs (content-addressed by SHA-256). Empty: <data_dir>/blobs. With
# blob_store = "s3" only uploads and reads in progress are spooled here.
blob_dir = ""

# Where package blobs (and definition deltas) live: "fs" (blob_dir) or "s3", a bucket of an
# S3-compatible object store (AWS S3, MinIO, Ceph, Garage), so several center processes on one
# PostgreSQL need no shared disk. Each blob is the object <s3_prefix><sha256>, stored only once
# verified and served with ranges. The center checks at start that the bucket answers.
blob_store = "fs"
# The endpoint, path-style: "https://s3.eu-west-1.amazonaws.com", "http://127.0.0.1:9000".
# Plain http is refused unless the host is a loopback address.
s3_endpoint = ""
s3_bucket = ""
s3_region = "us-east-1"
# Prepended to each blob's SHA-256, e.g. "herd/blobs/" (letters, digits, ". _ - /").
s3_prefix = ""
# Credentials: the access key id and a file holding the secret access key (readable by the
# center's user only), or else the environment's AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY
# (and AWS_SESSION_TOKEN for temporary credentials).
s3_access_key_id = ""
s3_secret_access_key_file = ""
# PEM certificates to trust for an https endpoint besides the public web roots (a private CA).
s3_ca_file = ""

# Names (DNS names or IP addresses) the server certificate is issued for.
server_names = ["localhost", "127.0.0.1", "::1"]

# An extra plaintext HTTP listener, for debugging and local metrics scraping only.
# Refused unless it is a loopback address. Terminal endpoints never work over it.
plaintext_listen = ""

# Serve Prometheus metrics (`/metrics`) only on this plaintext listener, e.g. a loopback or
# management address, instead of to every client of the API. Empty: served at /metrics of the
# API listeners.
metrics_listen = ""

# How often terminals check in, and the random spread applied to it (0.1 = ±10 %).
checkin_interval_secs = 3600
checkin_jitter = 0.1

# Lifetime of the client certificates issued to terminals at enrolment and renewal (agents
# renew when less than a third of it, or 30 days, remains). At most 3653, and refused at start
# if it would outlive the CA certificate.
terminal_cert_days = 365

# How often (seconds) the center checks whether its server certificate (valid one year) needs
# reissuing: it is reissued when less than a third of its validity remains, without a restart.
server_cert_check_secs = 3600

# Longest lifetime an API token (operator or vendor) and an enrolment token may be given;
# longer requests are refused, naming the cap.
max_api_token_days = 365
max_enrol_token_days = 30

# Largest catalog feed and package a vendor may upload. A feed of 100,000 threats with two
# products' coverage is about 25 MB; the default leaves room for ten times that.
max_feed_bytes = 268435456
max_package_bytes = 2147483648

# Logs: "text" or "json"; the filter uses tracing's syntax ("info", "herd_center=debug,info").
log_format = "text"
log = "info"

# What one client can make the center spend. Connections beyond max_connections (per listener)
# are closed as they are accepted. A TLS handshake must finish within handshake_timeout_secs;
# a request's headers within header_timeout_secs of their first byte; a connection waiting for
# its next request is closed after idle_timeout_secs; a request body must keep arriving (after
# body_timeout_secs it is cut unless it comes at 1 KiB/s or more).
max_connections = 10000
handshake_timeout_secs = 10
header_timeout_secs = 30
idle_timeout_secs = 120
body_timeout_secs = 60

# Events a terminal may keep stored; beyond it its batches are refused (429, quota_exceeded)
# and stay in the agent's outbox until an operator deletes or re-enrols the terminal.
max_events_per_terminal = 100000

# Push connections (GET /v1/wait) one process holds at once; beyond it a wait is refused with
# 503 and Retry-After, and the agent checks in at its interval until it tries again. Each held
# wait is one open connection too, so max_connections bounds them first.
max_waits = 200000

# Terminals a process wakes from their waits at once when something new arrives: a woken
# terminal holds a slot until it has checked in (or 5 s passed), and the next ones are woken as
# slots come back, in the order they waited. Waking 10,000 at once made every check-in slow
# enough to time out and be sent again.
wake_concurrency = 256

# The web console (/console/): a signed-in browser that does nothing for this long is signed
# out (a session never outlives 12 hours, nor the API token it was opened with).
console_idle_secs = 1800

# Whether what a vendor's feed introduces counts at once ("auto") or only once an operator
# approves it ("operator": `herd threats pending|approve|reject`, `herd vendors pending|...`).
# threat_approval covers threats nobody declared before; vendor_approval a vendor's first
# feed. "auto" is the default so a center keeps working as before for a single trusted vendor
# or a demo; a center serving competing vendors should say "operator" for both. Either way a
# threat belongs to the vendor that declared it first: other feeds cannot rename or rate it.
threat_approval = "auto"
vendor_approval = "auto"

# Bytes of packages each vendor may keep stored (uploads past it are refused with 413,
# quota_exceeded). Operators' uploads are not counted. 21474836480 = 20 GiB.
vendor_storage_quota_bytes = 21474836480

# Blobs no current feed references, and uploads abandoned half-way, are deleted once they are
# this old (seconds): long enough to upload packages and then publish the feed naming them.
blob_grace_secs = 86400

# Signed distribution (TUF, SPEC §3.4): how long each signature the center makes online is
# good for. A role is signed again once less than half of it remains, so a terminal never sees
# one expire while the center runs; the timestamp's lifetime is also how long an attacker who
# cuts a terminal off its center can keep it on stale metadata. Minimums: timestamp 10 s,
# snapshot and targets 60 s.
tuf_timestamp_lifetime_secs = 21600
tuf_snapshot_lifetime_secs = 604800
tuf_targets_lifetime_secs = 604800

# When true, a vendor must register its own signing key (`herd vendor key register`) before
# its feed is accepted, and the center never signs a vendor's packages itself.
require_vendor_signatures = false

# Herd immunity (issue 13): automatic verdicts that publish a file's exact-hash signature in
# Herd's own signature set, which every scanning agent loads beside its vendor's definitions.
# immunity_cross_vendor: a terminal's vendor product detects a file by name (a scan.detection
# event naming a signature other than Herd's own) -> its hash protects the whole fleet.
# immunity_suspect_terminals: the same suspicious-only hash reported by this many distinct
# terminals is judged malicious (0 turns the rule off).
immunity_cross_vendor = true
immunity_suspect_terminals = 3
# The largest sample (original bytes) a terminal may send to the sample store.
max_sample_bytes = 1048576
# Vendor feed URLs the center polls (issue 13) are fetched only from public addresses:
# loopback, private, link-local and other internal addresses are refused, at registration
# and at every fetch, unless this lists the URL's host name or the address (against request
# forgery). Example: ["feeds.internal.example", "10.0.0.5"].
feed_allowed_hosts = []

# The role of this process: "center" (the default), or "site" — a site server (SPEC §2): it
# enrols with the center at `upstream`, replicates the catalog and the groups, mirrors the
# signed metadata and packages, answers its terminals' check-ins itself and relays what they
# report through a durable queue, so its terminals keep being served while the center is down.
role = "center"

# Site only: the center's URL, and its CA certificate (the center's ca.pem) for the first
# start; afterwards the site keeps its identity in <data_dir>/site/.
upstream = ""
upstream_ca = ""
# Site only: this site's id, the site enrolment token for its first start (`herd sites token
# create` at the center), and the URL its terminals and the center reach it at (empty: https://
# the first server name and the listen port).
site_id = ""
site_token = ""
site_url = ""
# Site only: how often the site asks the center for news when nothing wakes it (seconds; the
# request is held by the center until something changes, up to this long), and the most bytes
# of packages its cache keeps.
site_poll_secs = 30
site_cache_bytes = 10737418240

# The URL people's browsers reach this center at, for the links of consent e-mails (empty:
# https:// the first server name and the listen port).
public_url = ""

# Center only: a site that has not pulled for this many seconds after a change is pushed to
# (the center calls the site's URL, which then pulls at once).
site_push_after_secs = 90

# Rollout rings (SPEC §3.4): empty offers every release to every terminal at once. Otherwise
# each new release of a product reaches the fleet ring by ring, as
# "name=PERCENT%/SOAKs/MIN_SUCCESSES" separated by commas, e.g.
# "canary=1%/600s/5, early=10%/1800s/50, broad=100%/0s/0": a terminal is in a ring by a
# stable hash of its id and the release; a ring is promoted once it ran SOAK seconds and MIN
# successful installs were reported; the last ring reaches 100 %. A product's first release
# is not gated, nor are the releases a center had when rings were switched on.
rollout_rings = ""
# A rollout is halted, its release withdrawn and planned back to the last good release on the
# terminals that took it, once this many failed installs and faults attributed to it arrived…
rollout_max_bad = 5
# …or once they are over this percentage of its reports, counted from rollout_min_reports on.
rollout_max_bad_percent = 20
rollout_min_reports = 20
# How often each center process looks at the rollouts (promotions and halts are this late).
rollout_check_secs = 2

# Alerts (SPEC §3.6): rules send alerts of some kinds to channels. Kinds: new_threat,
# detection, sample_waiting, exposed, site_unreachable, site_queue_growing, rollout_halted,
# fault_escalated, terminal_event (terminal events whose kind a rule lists in `events`).
# Deliveries wait in the database and are retried with back-off until delivered, so a sink
# that is down receives them once it is back. `herd alerts test CHANNEL` sends a test alert.
[alerts]
# Per rule, the first `burst` alerts of a window of `window_secs` go out one by one; the next
# sends one summary and the rest of the window is collected into a digest sent when it ends
# (and every window after it while alerts keep coming).
window_secs = 300
burst = 5
# Retries: after base * 2^(attempt-1) seconds, at most retry_max_secs apart, given up after
# max_attempts.
retry_base_secs = 10
retry_max_secs = 3600
max_attempts = 20
# `exposed` alerts when more terminals than this are exposed after a catalog change (0: never).
exposed_threshold = 0
# `site_queue_growing` when a site reports more queued items than this (0: never).
site_queue_threshold = 10000
# Consent by e-mail (SPEC §3.1.6): the e-mail channel through which a terminal's user (the
# address `herd terminals set-email` gives) is asked to accept or decline a plan that needs
# consent, with signed links that work once for consent_link_secs (empty: no e-mails; the
# user answers on the terminal). The channel's own `to` is not used for these notices.
consent_channel = ""
consent_link_secs = 259200

# [[alerts.channels]]
# name = "ops"
# type = "webhook"             # a POST of JSON with a Slack-compatible "text" field
# url = "https://hooks.slack.com/services/…"
# ca_file = ""                 # PEM certificates to trust besides the public web roots
#
# [[alerts.channels]]
# name = "oncall-mail"
# type = "email"
# smtp_host = "mail.example"
# smtp_port = 587
# smtp_tls = "starttls"        # "starttls" (required), "tls" (port 465), or "none" (loopback only)
# smtp_username = ""
# smtp_password_file = ""      # a file holding the password (readable by the center only)
# from = "herd@example.org"
# to = ["oncall@example.org"]
# ca_file = ""
#
# [[alerts.channels]]
# name = "sms"
# type = "sms"                 # an HTTP request made from templates: {text}, {kind}, {subject}
# url = "https://sms.example/send?to=%2B8190000000&message={text}"   # values URL-encoded
# method = "POST"
# content_type = "application/json"   # {…} in the body: JSON-escaped for JSON, form-encoded for
# body = '{"text": "{text}"}'         # application/x-www-form-urlencoded, as is otherwise
# headers = { "X-Api-Key" = "…" }
#
# [[alerts.rules]]
# name = "outbreaks"
# kinds = ["new_threat", "detection", "exposed"]
# channels = ["ops", "oncall-mail"]
# events = []                  # terminal event kinds, for the kind terminal_event
"#;

/// The file's keys, as written; every field optional so flags can fill the gaps.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database: Option<String>,
    pub database_require_verified_tls: Option<bool>,
    pub ca_kek_file: Option<PathBuf>,
    pub blob_dir: Option<PathBuf>,
    pub blob_store: Option<String>,
    pub s3_endpoint: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_region: Option<String>,
    pub s3_prefix: Option<String>,
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key_file: Option<PathBuf>,
    pub s3_ca_file: Option<PathBuf>,
    pub server_names: Option<Vec<String>>,
    pub plaintext_listen: Option<String>,
    pub metrics_listen: Option<String>,
    pub checkin_interval_secs: Option<u64>,
    pub checkin_jitter: Option<f64>,
    pub terminal_cert_days: Option<u32>,
    pub server_cert_check_secs: Option<u64>,
    pub max_api_token_days: Option<u32>,
    pub max_enrol_token_days: Option<u32>,
    pub max_feed_bytes: Option<u64>,
    pub max_package_bytes: Option<u64>,
    pub log_format: Option<String>,
    pub log: Option<String>,
    pub max_connections: Option<usize>,
    pub handshake_timeout_secs: Option<u64>,
    pub header_timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub body_timeout_secs: Option<u64>,
    pub max_events_per_terminal: Option<u64>,
    pub max_waits: Option<u64>,
    pub wake_concurrency: Option<usize>,
    pub console_idle_secs: Option<u64>,
    pub threat_approval: Option<String>,
    pub vendor_approval: Option<String>,
    pub vendor_storage_quota_bytes: Option<u64>,
    pub blob_grace_secs: Option<u64>,
    pub tuf_timestamp_lifetime_secs: Option<u64>,
    pub tuf_snapshot_lifetime_secs: Option<u64>,
    pub tuf_targets_lifetime_secs: Option<u64>,
    pub require_vendor_signatures: Option<bool>,
    pub immunity_cross_vendor: Option<bool>,
    pub immunity_suspect_terminals: Option<u64>,
    pub max_sample_bytes: Option<u64>,
    pub feed_allowed_hosts: Option<Vec<String>>,
    pub role: Option<String>,
    pub upstream: Option<String>,
    pub upstream_ca: Option<PathBuf>,
    pub site_id: Option<String>,
    pub site_token: Option<String>,
    pub site_url: Option<String>,
    pub public_url: Option<String>,
    pub site_poll_secs: Option<u64>,
    pub site_cache_bytes: Option<u64>,
    pub site_push_after_secs: Option<u64>,
    /// `[alerts]`: channels, rules, throttling (see `alerts::config`).
    pub alerts: Option<crate::alerts::config::AlertsFile>,
    pub rollout_rings: Option<String>,
    pub rollout_max_bad: Option<u64>,
    pub rollout_max_bad_percent: Option<u64>,
    pub rollout_min_reports: Option<u64>,
    pub rollout_check_secs: Option<u64>,
}

impl ConfigFile {
    pub fn read(path: &Path) -> anyhow::Result<ConfigFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        ConfigFile::parse(&path.display().to_string(), &text)
    }

    pub fn parse(name: &str, text: &str) -> anyhow::Result<ConfigFile> {
        // toml's messages name the key and the line, e.g. "unknown field `listn`, expected one of …".
        toml::from_str(text).map_err(|err| anyhow::anyhow!("{name}: {err}"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The checked configuration.
#[derive(Clone, Debug)]
pub struct CenterConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`.
    pub database: String,
    /// Where the CA key's key-encryption key is read from, when the file names one (the
    /// environment and systemd credentials are looked at by `keys::load_kek`).
    pub ca_kek_file: Option<PathBuf>,
    pub blob_dir: PathBuf,
    /// Where blobs live: `blob_dir`, or a bucket (then `blob_dir` only spools).
    pub blob_store: BlobBackend,
    pub server_names: Vec<String>,
    pub plaintext_listen: Option<SocketAddr>,
    /// Where `/metrics` is served instead of on the API listeners.
    pub metrics_listen: Option<SocketAddr>,
    pub checkin_interval_secs: u64,
    pub checkin_jitter: f64,
    pub terminal_cert_days: u32,
    /// How often the server certificate's remaining validity is checked.
    pub server_cert_check: std::time::Duration,
    /// Caps on the lifetimes tokens may be given (requests over them are refused).
    pub max_api_token_days: u32,
    pub max_enrol_token_days: u32,
    pub max_feed_bytes: u64,
    pub max_package_bytes: u64,
    pub log_format: LogFormat,
    pub log: String,
    /// What one client can make the listeners spend: connections and timeouts.
    pub limits: Limits,
    /// Events a terminal may keep stored before its batches are refused.
    pub max_events_per_terminal: u64,
    /// Push connections (`/v1/wait`) held at once by a process.
    pub max_waits: u64,
    /// Woken terminals that have not checked in yet, at most, per process.
    pub wake_concurrency: usize,
    /// A console session idle this long is signed out.
    pub console_idle_secs: u64,
    /// What a vendor's feed introduces counts at once or awaits an operator.
    pub threat_approval: ApprovalMode,
    pub vendor_approval: ApprovalMode,
    /// Bytes of packages each vendor may keep stored.
    pub vendor_storage_quota_bytes: u64,
    /// How old an unreferenced blob or an abandoned upload must be to be collected.
    pub blob_grace: std::time::Duration,
    /// How long the signatures the center makes online are good for (root's is the
    /// operator's business once it moves offline; the auto-initialised one lives a year).
    pub tuf_lifetimes: herd_tuf::repository::Lifetimes,
    /// Vendors must sign their own roles; the center never signs one for them.
    pub require_vendor_signatures: bool,
    /// Herd immunity's automatic verdicts (issue 13): a vendor's detection publishes the
    /// file's hash in Herd's set; the same suspicious hash from this many distinct terminals
    /// (0: never) does too.
    pub immunity_cross_vendor: bool,
    pub immunity_suspect_terminals: u64,
    /// The largest sample a terminal may send (original bytes; sent hex-encoded in an event,
    /// so at most 3 MiB fits a batch).
    pub max_sample_bytes: u64,
    /// Host names and addresses vendor feeds may be fetched from although internal
    /// (`feed_poll::internal_address`); every other internal address is refused.
    pub feed_allowed_hosts: Vec<String>,
    /// `Some` when this process is a site server.
    pub site: Option<SiteConfig>,
    /// A center pushes to a site that has not pulled for this long after a change.
    pub site_push_after: std::time::Duration,
    /// The URL people's browsers reach this center at (consent links).
    pub public_url: String,
    /// Alert channels, rules, throttling and retries (`[alerts]`).
    pub alerts: std::sync::Arc<crate::alerts::config::AlertsConfig>,
    /// Rollout rings and thresholds; `None`: every release is offered to everyone at once.
    pub rollouts: Option<crate::rollouts::RolloutSettings>,
}

/// A site server's settings (`role = "site"`).
#[derive(Clone, Debug)]
pub struct SiteConfig {
    /// The center, `https://host:port`.
    pub upstream: String,
    /// The center's CA (needed at the first start only).
    pub upstream_ca: Option<PathBuf>,
    pub id: String,
    /// The site enrolment token (first start only).
    pub token: Option<String>,
    /// Where terminals and the center reach this site.
    pub url: String,
    pub poll: std::time::Duration,
    pub cache_bytes: u64,
}

/// Where the center keeps package blobs.
#[derive(Clone, Debug)]
pub enum BlobBackend {
    /// Files under `blob_dir`.
    Files,
    /// Objects `<prefix><sha256>` of a bucket.
    S3 {
        bucket: herd_s3::Bucket,
        prefix: String,
    },
}

/// The `s3_*` keys, which only `blob_store = "s3"` uses.
const S3_KEYS: [&str; 7] = [
    "s3_endpoint",
    "s3_bucket",
    "s3_region",
    "s3_prefix",
    "s3_access_key_id",
    "s3_secret_access_key_file",
    "s3_ca_file",
];

impl BlobBackend {
    /// Reads `blob_store` and the `s3_*` keys; `env` looks up the environment (the AWS
    /// credentials' variables).
    fn from_file(
        file: &ConfigFile,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<BlobBackend> {
        let text = |value: &Option<String>| value.clone().filter(|v| !v.is_empty());
        let path = |value: &Option<PathBuf>| value.clone().filter(|p| !p.as_os_str().is_empty());
        let given = [
            text(&file.s3_endpoint).is_some(),
            text(&file.s3_bucket).is_some(),
            // The default file spells out the default region.
            text(&file.s3_region).is_some_and(|region| region != "us-east-1"),
            text(&file.s3_prefix).is_some(),
            text(&file.s3_access_key_id).is_some(),
            path(&file.s3_secret_access_key_file).is_some(),
            path(&file.s3_ca_file).is_some(),
        ];
        match file.blob_store.as_deref().unwrap_or("fs") {
            "fs" => match given.iter().position(|given| *given) {
                Some(key) => bail!(
                    "{}: set, but blob_store is \"fs\"; say blob_store = \"s3\" to keep blobs in a bucket",
                    S3_KEYS[key]
                ),
                None => Ok(BlobBackend::Files),
            },
            "s3" => {
                let endpoint = text(&file.s3_endpoint).with_context(|| {
                    "s3_endpoint: required with blob_store = \"s3\" (e.g. \"https://s3.eu-west-1.amazonaws.com\" or \"http://127.0.0.1:9000\")"
                })?;
                check_s3_endpoint(&endpoint)?;
                let bucket = text(&file.s3_bucket)
                    .context("s3_bucket: required with blob_store = \"s3\"")?;
                let region = text(&file.s3_region).unwrap_or_else(|| "us-east-1".to_owned());
                let prefix = text(&file.s3_prefix).unwrap_or_default();
                if prefix.starts_with('/')
                    || prefix.split('/').any(|part| part == "..")
                    || !prefix
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
                {
                    bail!(
                        "s3_prefix: {prefix:?} may hold only letters, digits, '.', '_', '-' and '/', and not start with '/'"
                    );
                }
                let access_key_id = text(&file.s3_access_key_id)
                    .or_else(|| env("AWS_ACCESS_KEY_ID").filter(|v| !v.is_empty()))
                    .context(
                        "s3_access_key_id: no access key; set s3_access_key_id and s3_secret_access_key_file, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                    )?;
                let secret = match path(&file.s3_secret_access_key_file) {
                    Some(secret_file) => read_secret_file(&secret_file)?,
                    None => env("AWS_SECRET_ACCESS_KEY")
                        .filter(|v| !v.is_empty())
                        .context(
                            "s3_secret_access_key_file: no secret access key; set s3_secret_access_key_file or AWS_SECRET_ACCESS_KEY",
                        )?,
                };
                let session_token = env("AWS_SESSION_TOKEN").filter(|v| !v.is_empty());
                let extra_roots_pem = match path(&file.s3_ca_file) {
                    None => None,
                    Some(ca) => Some(
                        std::fs::read(&ca)
                            .with_context(|| format!("s3_ca_file: cannot read {}", ca.display()))?,
                    ),
                };
                let bucket = herd_s3::Bucket::new(herd_s3::BucketConfig {
                    endpoint,
                    bucket,
                    region,
                    credentials: herd_s3::Credentials::new(
                        &access_key_id,
                        &secret,
                        session_token.as_deref(),
                    ),
                    extra_roots_pem,
                })
                .map_err(|err| anyhow::anyhow!("s3_endpoint: {err}"))?;
                Ok(BlobBackend::S3 { bucket, prefix })
            }
            other => bail!("blob_store: {other:?} is neither \"fs\" nor \"s3\""),
        }
    }
}

/// `https://<first server name>:<listen port>`: how this process names itself by default.
fn own_url(server_names: &[String], listen: SocketAddr) -> String {
    let host = &server_names[0];
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    format!("https://{host}:{}", listen.port())
}

/// Plain http only to a loopback host: over a network, the object store's answers would be
/// open to tampering (terminals verify packages, but the center hashes and signs what it reads).
fn check_s3_endpoint(endpoint: &str) -> anyhow::Result<()> {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return Ok(());
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("s3_endpoint: {endpoint:?} is plain http to a host that is not loopback; use https");
    }
    Ok(())
}

/// The secret access key in `path` (surrounding whitespace dropped), refused when other
/// users could read it.
fn read_secret_file(path: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let key = "s3_secret_access_key_file";
    let meta = std::fs::metadata(path)
        .with_context(|| format!("{key}: cannot read {}", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "{key}: {} is open to other users (mode {:04o}); make it readable by the center's user only (chmod 600)",
            path.display(),
            mode & 0o7777
        );
    }
    let secret = std::fs::read_to_string(path)
        .with_context(|| format!("{key}: cannot read {}", path.display()))?;
    let secret = secret.trim().to_owned();
    if secret.is_empty() {
        bail!("{key}: {} is empty", path.display());
    }
    Ok(secret)
}

/// Whether something new a vendor publishes counts at once or waits for an operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApprovalMode {
    Auto,
    Operator,
}

impl ApprovalMode {
    fn parse(key: &str, value: Option<&str>) -> anyhow::Result<ApprovalMode> {
        match value.unwrap_or("auto") {
            "auto" => Ok(ApprovalMode::Auto),
            "operator" => Ok(ApprovalMode::Operator),
            other => bail!("{key}: {other:?} is neither \"auto\" nor \"operator\""),
        }
    }
}

/// The shortest timestamp lifetime: the center checks its signatures four times per the
/// shortest lifetime, and a terminal must be able to fetch the chain before it expires.
pub const MIN_TUF_TIMESTAMP_LIFETIME_SECS: i64 = 10;
/// The shortest snapshot and targets lifetime.
pub const MIN_TUF_LIFETIME_SECS: i64 = 60;
/// The longest lifetime of an online signature (a year): longer would leave a stolen online
/// key's signatures valid for too long.
pub const MAX_TUF_LIFETIME_SECS: i64 = 366 * 86_400;

/// Below this, a package uploaded for a feed could be collected before the feed is published.
pub const MIN_BLOB_GRACE_SECS: u64 = 600;

impl CenterConfig {
    /// Checks the merged file-and-flag values; every error names the key.
    pub fn from_file(file: ConfigFile) -> anyhow::Result<CenterConfig> {
        let blob_store = BlobBackend::from_file(&file, &|name| std::env::var(name).ok())?;
        let listen_text = file.listen.unwrap_or_else(|| "127.0.0.1:8443".to_owned());
        let listen: SocketAddr = listen_text.parse().with_context(|| {
            format!("listen: {listen_text:?} is not an address like 127.0.0.1:8443")
        })?;
        let data_dir = file.data_dir.unwrap_or_else(|| PathBuf::from("herd-data"));
        let database = match file.database.filter(|d| !d.is_empty()) {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => url,
            Some(url) if url.starts_with("sqlite://") => url,
            Some(other) => bail!(
                "database: {other:?} is neither empty (embedded SQLite) nor a postgres:// or sqlite:// URL"
            ),
            None => format!("sqlite://{}", data_dir.join("herd.db").display()),
        };
        if file.database_require_verified_tls.unwrap_or(true) {
            check_database_tls(&database)?;
        }
        let ca_kek_file = file.ca_kek_file.filter(|p| !p.as_os_str().is_empty());
        let blob_dir = file
            .blob_dir
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| data_dir.join("blobs"));
        let server_names = file
            .server_names
            .unwrap_or_else(|| vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]);
        if server_names.is_empty() {
            bail!("server_names: give at least one name for the server certificate");
        }
        // Checked here, not when the certificate is issued: a bad name would stop every start.
        if let Some(bad) = server_names
            .iter()
            .find(|name| !herd_tls::is_valid_server_name(name))
        {
            bail!("server_names: {bad:?} is neither a DNS name nor an IP address");
        }
        let plaintext_listen = match file.plaintext_listen.filter(|s| !s.is_empty()) {
            None => None,
            Some(text) => {
                let addr: SocketAddr = text.parse().with_context(|| {
                    format!("plaintext_listen: {text:?} is not an address like 127.0.0.1:8080")
                })?;
                if !addr.ip().is_loopback() {
                    bail!(
                        "plaintext_listen: {addr} is not a loopback address; plaintext HTTP is only allowed on loopback"
                    );
                }
                Some(addr)
            }
        };
        let metrics_listen = match file.metrics_listen.filter(|s| !s.is_empty()) {
            None => None,
            Some(text) => Some(text.parse::<SocketAddr>().with_context(|| {
                format!("metrics_listen: {text:?} is not an address like 127.0.0.1:9464")
            })?),
        };
        let checkin_interval_secs = file.checkin_interval_secs.unwrap_or(3600);
        if checkin_interval_secs == 0 {
            bail!("checkin_interval_secs: must be at least 1");
        }
        let checkin_jitter = file.checkin_jitter.unwrap_or(0.1);
        if !(0.0..=0.5).contains(&checkin_jitter) {
            bail!("checkin_jitter: {checkin_jitter} is outside 0.0..=0.5");
        }
        let terminal_cert_days = file.terminal_cert_days.unwrap_or(365);
        if terminal_cert_days == 0 || terminal_cert_days > herd_tls::MAX_TERMINAL_VALIDITY_DAYS {
            bail!(
                "terminal_cert_days: {terminal_cert_days} is outside 1..={} (every enrolment would be refused)",
                herd_tls::MAX_TERMINAL_VALIDITY_DAYS
            );
        }
        let server_cert_check_secs = file.server_cert_check_secs.unwrap_or(3600);
        // The certificate is reissued with four months left: a check less often than daily
        // could still be in time, but an operator who wrote more meant something else.
        if !(1..=86_400).contains(&server_cert_check_secs) {
            bail!(
                "server_cert_check_secs: {server_cert_check_secs} is outside 1..=86400 (one day)"
            );
        }
        let max_api_token_days = file.max_api_token_days.unwrap_or(365);
        if !(1..=3653).contains(&max_api_token_days) {
            bail!("max_api_token_days: {max_api_token_days} is outside 1..=3653");
        }
        let max_enrol_token_days = file.max_enrol_token_days.unwrap_or(30);
        if !(1..=3653).contains(&max_enrol_token_days) {
            bail!("max_enrol_token_days: {max_enrol_token_days} is outside 1..=3653");
        }
        let log_format = match file.log_format.as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => bail!("log_format: {other:?} is neither \"text\" nor \"json\""),
        };
        let limits = Limits::default();
        let positive = |value: Option<u64>, key: &str, default: std::time::Duration| match value {
            None => Ok(default),
            Some(0) => bail!("{key}: must be at least 1"),
            Some(secs) => Ok(std::time::Duration::from_secs(secs)),
        };
        let limits = Limits {
            max_connections: match file.max_connections {
                None => limits.max_connections,
                Some(0) => bail!("max_connections: must be at least 1"),
                Some(n) => n,
            },
            handshake_timeout: positive(
                file.handshake_timeout_secs,
                "handshake_timeout_secs",
                limits.handshake_timeout,
            )?,
            header_timeout: positive(
                file.header_timeout_secs,
                "header_timeout_secs",
                limits.header_timeout,
            )?,
            idle_timeout: positive(
                file.idle_timeout_secs,
                "idle_timeout_secs",
                limits.idle_timeout,
            )?,
            body_timeout: positive(
                file.body_timeout_secs,
                "body_timeout_secs",
                limits.body_timeout,
            )?,
        };
        let max_events_per_terminal = match file.max_events_per_terminal {
            None => 100_000,
            Some(0) => bail!("max_events_per_terminal: must be at least 1"),
            Some(n) => n,
        };
        let max_waits = match file.max_waits {
            None => 200_000,
            Some(0) => bail!("max_waits: must be at least 1"),
            Some(n) => n,
        };
        let wake_concurrency = match file.wake_concurrency {
            None => 256,
            Some(0) => bail!("wake_concurrency: must be at least 1"),
            Some(n) if n > tokio::sync::Semaphore::MAX_PERMITS => {
                bail!("wake_concurrency: {n} is more than a process can count")
            }
            Some(n) => n,
        };
        let console_idle_secs = match file.console_idle_secs {
            None => 1800,
            Some(n) if !(60..=86_400).contains(&n) => {
                bail!("console_idle_secs: {n} is outside 60..=86400 (a minute to a day)")
            }
            Some(n) => n,
        };
        let threat_approval =
            ApprovalMode::parse("threat_approval", file.threat_approval.as_deref())?;
        let vendor_approval =
            ApprovalMode::parse("vendor_approval", file.vendor_approval.as_deref())?;
        let vendor_storage_quota_bytes = match file.vendor_storage_quota_bytes {
            None => 20 << 30,
            Some(0) => bail!("vendor_storage_quota_bytes: must be at least 1"),
            Some(n) => n,
        };
        let blob_grace = match file.blob_grace_secs {
            None => std::time::Duration::from_secs(86_400),
            Some(secs) if secs < MIN_BLOB_GRACE_SECS => bail!(
                "blob_grace_secs: {secs} is below {MIN_BLOB_GRACE_SECS}; a package could be collected between its upload and the publish of its feed"
            ),
            Some(secs) => std::time::Duration::from_secs(secs),
        };
        let defaults = herd_tuf::repository::Lifetimes::default();
        let lifetime = |key: &str, value: Option<u64>, default: i64, minimum: i64| match value {
            None => Ok(default),
            Some(secs) if secs < minimum as u64 || secs > MAX_TUF_LIFETIME_SECS as u64 => bail!(
                "{key}: {secs} is outside {minimum}..={MAX_TUF_LIFETIME_SECS} seconds; the center \
                 signs again when half of it remains"
            ),
            Some(secs) => Ok(secs as i64),
        };
        let tuf_lifetimes = herd_tuf::repository::Lifetimes {
            timestamp_secs: lifetime(
                "tuf_timestamp_lifetime_secs",
                file.tuf_timestamp_lifetime_secs,
                defaults.timestamp_secs,
                MIN_TUF_TIMESTAMP_LIFETIME_SECS,
            )?,
            snapshot_secs: lifetime(
                "tuf_snapshot_lifetime_secs",
                file.tuf_snapshot_lifetime_secs,
                defaults.snapshot_secs,
                MIN_TUF_LIFETIME_SECS,
            )?,
            targets_secs: lifetime(
                "tuf_targets_lifetime_secs",
                file.tuf_targets_lifetime_secs,
                defaults.targets_secs,
                MIN_TUF_LIFETIME_SECS,
            )?,
            root_secs: defaults.root_secs,
        };
        let site = match file.role.as_deref().unwrap_or("center") {
            "center" | "" => None,
            "site" => {
                let upstream = file.upstream.filter(|u| !u.is_empty()).context(
                    "upstream: a site needs the center's URL (--upstream https://center:8443)",
                )?;
                if !upstream.starts_with("https://") {
                    bail!("upstream: {upstream:?} is not an https:// URL");
                }
                let id = file
                    .site_id
                    .filter(|id| !id.is_empty())
                    .context("site_id: a site needs an id (--site-id office-1)")?;
                if !herd_tls::is_valid_terminal_id(&id) {
                    bail!("site_id: {id:?} is not 1 to 128 characters of [A-Za-z0-9._-]");
                }
                let url = match file.site_url.filter(|u| !u.is_empty()) {
                    Some(url) if url.starts_with("https://") => url,
                    Some(url) => bail!("site_url: {url:?} is not an https:// URL"),
                    None => own_url(&server_names, listen),
                };
                let poll_secs = file.site_poll_secs.unwrap_or(30);
                if !(1..=crate::SITE_MAX_POLL_SECS).contains(&poll_secs) {
                    bail!(
                        "site_poll_secs: {poll_secs} is outside 1..={}",
                        crate::SITE_MAX_POLL_SECS
                    );
                }
                let cache_bytes = match file.site_cache_bytes {
                    None => 10 << 30,
                    Some(0) => bail!("site_cache_bytes: must be at least 1"),
                    Some(n) => n,
                };
                Some(SiteConfig {
                    upstream,
                    upstream_ca: file.upstream_ca.filter(|p| !p.as_os_str().is_empty()),
                    id,
                    token: file.site_token.filter(|t| !t.is_empty()),
                    url,
                    poll: std::time::Duration::from_secs(poll_secs),
                    cache_bytes,
                })
            }
            other => bail!("role: {other:?} is neither \"center\" nor \"site\""),
        };
        if site.is_some() && database.starts_with("postgres") {
            bail!(
                "database: a site server keeps its own embedded SQLite store; leave database empty"
            );
        }
        let site_push_after = match file.site_push_after_secs {
            None => std::time::Duration::from_secs(90),
            Some(0) => bail!("site_push_after_secs: must be at least 1"),
            Some(secs) => std::time::Duration::from_secs(secs),
        };
        let public_url = match file.public_url.filter(|u| !u.is_empty()) {
            Some(url) if url.starts_with("https://") => url.trim_end_matches('/').to_owned(),
            Some(url) => bail!("public_url: {url:?} is not an https:// URL"),
            None => own_url(&server_names, listen),
        };
        let alerts = std::sync::Arc::new(crate::alerts::config::AlertsConfig::from_file(
            file.alerts.unwrap_or_default(),
        )?);
        let rollouts = crate::rollouts::RolloutSettings::from_keys(
            file.rollout_rings.as_deref().unwrap_or(""),
            file.rollout_max_bad,
            file.rollout_max_bad_percent,
            file.rollout_min_reports,
            file.rollout_check_secs,
        )?;
        Ok(CenterConfig {
            public_url,
            alerts,
            rollouts,
            site,
            site_push_after,
            tuf_lifetimes,
            require_vendor_signatures: file.require_vendor_signatures.unwrap_or(false),
            immunity_cross_vendor: file.immunity_cross_vendor.unwrap_or(true),
            immunity_suspect_terminals: file.immunity_suspect_terminals.unwrap_or(3),
            max_sample_bytes: match file.max_sample_bytes {
                None => 1 << 20,
                Some(n) if (1..=3 << 20).contains(&n) => n,
                Some(_) => bail!("max_sample_bytes: must be between 1 and 3145728"),
            },
            feed_allowed_hosts: {
                let hosts = file.feed_allowed_hosts.unwrap_or_default();
                if let Some(bad) = hosts.iter().find(|h| {
                    h.is_empty()
                        || !h
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
                }) {
                    bail!("feed_allowed_hosts: {bad:?} is neither a host name nor an IP address");
                }
                hosts
            },
            listen,
            data_dir,
            database,
            ca_kek_file,
            blob_dir,
            blob_store,
            server_names,
            plaintext_listen,
            metrics_listen,
            checkin_interval_secs,
            checkin_jitter,
            terminal_cert_days,
            server_cert_check: std::time::Duration::from_secs(server_cert_check_secs),
            max_api_token_days,
            max_enrol_token_days,
            max_feed_bytes: file.max_feed_bytes.unwrap_or(256 << 20),
            max_package_bytes: file.max_package_bytes.unwrap_or(2 << 30),
            log_format,
            log: file.log.unwrap_or_else(|| "info".to_owned()),
            limits,
            max_events_per_terminal,
            max_waits,
            wake_concurrency,
            console_idle_secs,
            threat_approval,
            vendor_approval,
            vendor_storage_quota_bytes,
            blob_grace,
        })
    }

    /// The database URL with any password hidden, for logs and messages.
    pub fn database_for_display(&self) -> String {
        redact_url(&self.database)
    }
}

/// Refuses a PostgreSQL URL whose server is not on loopback unless it verifies the server's
/// certificate (`sslmode=verify-full` or `verify-ca`): everything the center stores, the sealed
/// CA key and the token hashes included, crosses that connection.
fn check_database_tls(url: &str) -> anyhow::Result<()> {
    let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    else {
        return Ok(());
    };
    let (authority, query) = match rest.split_once('?') {
        Some((authority, query)) => (authority, query),
        None => (rest, ""),
    };
    let hostport = authority.split('/').next().unwrap_or("");
    let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, host)| host);
    let host = match hostport.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
        None => hostport.split(':').next().unwrap_or(""),
    };
    let param = |name: &str| {
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            (key == name).then_some(value)
        })
    };
    // A `host=/run/postgresql` parameter or an empty host is a Unix socket: local.
    let host = param("host").unwrap_or(host);
    let local = host.is_empty()
        || host.starts_with('/')
        || host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if local {
        return Ok(());
    }
    match param("sslmode") {
        Some("verify-full" | "verify-ca") if param("sslrootcert").is_some() => Ok(()),
        Some("verify-full" | "verify-ca") => bail!(
            "database: the URL asks to verify the PostgreSQL server's certificate but names no \
             CA to verify it with: add &sslrootcert=/path/to/ca.pem"
        ),
        mode => bail!(
            "database: the PostgreSQL server {host:?} is not on loopback and the URL does not \
             verify its certificate (sslmode={}): add ?sslmode=verify-full&sslrootcert=/path/to/ca.pem, \
             or set database_require_verified_tls = false to accept a connection a network \
             attacker could read and change",
            mode.unwrap_or("prefer, the default")
        ),
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((userinfo, host)) = rest.split_once('@') {
            if let Some((user, _password)) = userinfo.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
    }
    url.to_owned()
}

/// What one client can make a listener spend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; more are closed as they are accepted, before any TLS work.
    pub max_connections: usize,
    /// From accept to the end of the TLS handshake.
    pub handshake_timeout: std::time::Duration,
    /// From the first byte of a request's headers to their end.
    pub header_timeout: std::time::Duration,
    /// How long a connection may wait for a request (a new one that sends nothing, or an idle
    /// keep-alive one) with nothing in flight.
    pub idle_timeout: std::time::Duration,
    /// How long a request body may take before it must keep arriving at
    /// `api::listener::MIN_BODY_RATE` or faster.
    pub body_timeout: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 10_000,
            handshake_timeout: std::time::Duration::from_secs(10),
            header_timeout: std::time::Duration::from_secs(30),
            idle_timeout: std::time::Duration::from_secs(120),
            body_timeout: std::time::Duration::from_secs(60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_file_parses_to_the_defaults() {
        let file = ConfigFile::parse("default", DEFAULT_CONFIG).unwrap();
        let config = CenterConfig::from_file(file).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8443");
        assert!(config.database.starts_with("sqlite://"));
        assert_eq!(config.checkin_interval_secs, 3600);
        assert!(config.plaintext_listen.is_none());
        assert_eq!(config.limits, Limits::default());
        assert_eq!(config.max_events_per_terminal, 100_000);
        assert_eq!(config.threat_approval, ApprovalMode::Auto);
        assert_eq!(config.vendor_storage_quota_bytes, 20 << 30);
        assert_eq!(config.blob_grace.as_secs(), 86_400);
        assert_eq!(
            config.tuf_lifetimes,
            herd_tuf::repository::Lifetimes::default()
        );
        assert!(!config.require_vendor_signatures);
    }

    fn s3_file(endpoint: &str) -> ConfigFile {
        ConfigFile {
            blob_store: Some("s3".into()),
            s3_endpoint: Some(endpoint.into()),
            s3_bucket: Some("herd".into()),
            s3_access_key_id: Some("AKID".into()),
            ..ConfigFile::default()
        }
    }

    fn with_secret(name: &str) -> Option<String> {
        (name == "AWS_SECRET_ACCESS_KEY").then(|| "secret".to_owned())
    }

    #[test]
    fn an_s3_blob_store_is_read_from_its_keys_and_the_environment() {
        let backend =
            BlobBackend::from_file(&s3_file("http://127.0.0.1:9000"), &with_secret).unwrap();
        let BlobBackend::S3 { bucket, prefix } = backend else {
            panic!("not s3");
        };
        assert_eq!((bucket.name(), prefix.as_str()), ("herd", ""));
        // Credentials from the environment alone.
        let file = ConfigFile {
            s3_access_key_id: None,
            s3_prefix: Some("herd/blobs/".into()),
            ..s3_file("https://s3.example")
        };
        let env = |name: &str| match name {
            "AWS_ACCESS_KEY_ID" => Some("AKID".to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some("secret".to_owned()),
            _ => None,
        };
        assert!(matches!(
            BlobBackend::from_file(&file, &env).unwrap(),
            BlobBackend::S3 { prefix, .. } if prefix == "herd/blobs/"
        ));
        // A secret file readable by its owner only.
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("s3.secret");
        std::fs::write(&secret, "from-file\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let file = ConfigFile {
            s3_secret_access_key_file: Some(secret.clone()),
            ..s3_file("http://localhost:9000")
        };
        assert!(BlobBackend::from_file(&file, &|_| None).is_ok());
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = BlobBackend::from_file(&file, &|_| None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("s3_secret_access_key_file:") && err.contains("chmod 600"),
            "{err}"
        );
        assert!(matches!(
            BlobBackend::from_file(&ConfigFile::default(), &with_secret).unwrap(),
            BlobBackend::Files
        ));
    }

    #[test]
    fn unusable_s3_settings_name_their_key() {
        let no = |file: ConfigFile, key: &str, why: &str| {
            let err = BlobBackend::from_file(&file, &with_secret)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(key) && err.contains(why), "{key}: {err}");
        };
        no(
            ConfigFile {
                blob_store: Some("nfs".into()),
                ..ConfigFile::default()
            },
            "blob_store",
            "neither",
        );
        no(
            ConfigFile {
                s3_bucket: Some("herd".into()),
                ..ConfigFile::default()
            },
            "s3_bucket",
            "blob_store is \"fs\"",
        );
        no(
            ConfigFile {
                s3_bucket: None,
                ..s3_file("http://127.0.0.1:9000")
            },
            "s3_bucket",
            "required",
        );
        no(
            ConfigFile {
                s3_endpoint: None,
                ..s3_file("")
            },
            "s3_endpoint",
            "required",
        );
        no(s3_file("http://s3.example"), "s3_endpoint", "not loopback");
        no(s3_file("127.0.0.1:9000"), "s3_endpoint", "not a URL");
        no(
            ConfigFile {
                s3_prefix: Some("../x".into()),
                ..s3_file("http://127.0.0.1:9000")
            },
            "s3_prefix",
            "letters",
        );
        no(
            ConfigFile {
                s3_access_key_id: None,
                ..s3_file("http://127.0.0.1:9000")
            },
            "s3_access_key_id",
            "AWS_ACCESS_KEY_ID",
        );
        let err = BlobBackend::from_file(&s3_file("http://127.0.0.1:9000"), &|_| None)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s3_secret_access_key_file"), "{err}");
        no(
            ConfigFile {
                s3_secret_access_key_file: Some("/nonexistent/secret".into()),
                ..s3_file("http://127.0.0.1:9000")
            },
            "s3_secret_access_key_file",
            "/nonexistent/secret",
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = ConfigFile::parse("herd.toml", "listn = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("herd.toml") && err.contains("listn"), "{err}");
    }

    #[test]
    fn plaintext_must_be_loopback() {
        let file = ConfigFile {
            plaintext_listen: Some("0.0.0.0:8080".into()),
            ..ConfigFile::default()
        };
        let err = CenterConfig::from_file(file).unwrap_err().to_string();
        assert!(
            err.contains("plaintext_listen") && err.contains("loopback"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (file, key) in [
            (
                ConfigFile {
                    listen: Some("nowhere".into()),
                    ..Default::default()
                },
                "listen",
            ),
            (
                ConfigFile {
                    database: Some("mysql://x".into()),
                    ..Default::default()
                },
                "database",
            ),
            (
                ConfigFile {
                    checkin_jitter: Some(2.0),
                    ..Default::default()
                },
                "checkin_jitter",
            ),
            (
                ConfigFile {
                    max_connections: Some(0),
                    ..Default::default()
                },
                "max_connections",
            ),
            (
                ConfigFile {
                    idle_timeout_secs: Some(0),
                    ..Default::default()
                },
                "idle_timeout_secs",
            ),
            (
                ConfigFile {
                    max_events_per_terminal: Some(0),
                    ..Default::default()
                },
                "max_events_per_terminal",
            ),
            (
                ConfigFile {
                    threat_approval: Some("sometimes".into()),
                    ..Default::default()
                },
                "threat_approval",
            ),
            (
                ConfigFile {
                    vendor_storage_quota_bytes: Some(0),
                    ..Default::default()
                },
                "vendor_storage_quota_bytes",
            ),
            (
                ConfigFile {
                    blob_grace_secs: Some(5),
                    ..Default::default()
                },
                "blob_grace_secs",
            ),
            (
                ConfigFile {
                    tuf_timestamp_lifetime_secs: Some(9),
                    ..Default::default()
                },
                "tuf_timestamp_lifetime_secs",
            ),
            (
                ConfigFile {
                    tuf_snapshot_lifetime_secs: Some(59),
                    ..Default::default()
                },
                "tuf_snapshot_lifetime_secs",
            ),
            (
                ConfigFile {
                    tuf_targets_lifetime_secs: Some(400 * 86_400),
                    ..Default::default()
                },
                "tuf_targets_lifetime_secs",
            ),
            (
                ConfigFile {
                    log_format: Some("xml".into()),
                    ..Default::default()
                },
                "log_format",
            ),
        ] {
            let err = CenterConfig::from_file(file).unwrap_err().to_string();
            assert!(err.starts_with(key), "{err}");
        }
    }

    #[test]
    fn a_remote_database_without_verified_tls_is_refused() {
        let load = |database: &str, require: Option<bool>| {
            CenterConfig::from_file(ConfigFile {
                database: Some(database.to_owned()),
                database_require_verified_tls: require,
                ..ConfigFile::default()
            })
        };
        for refused in [
            "postgres://herd@db.example/herd",
            "postgres://herd:pw@10.0.0.5:5432/herd?sslmode=require",
            "postgresql://herd@[2001:db8::1]:5432/herd?sslmode=prefer",
            "postgres://herd@db.example/herd?sslmode=verify-full",
        ] {
            let err = load(refused, None).unwrap_err().to_string();
            assert!(err.starts_with("database:"), "{refused}: {err}");
            assert!(!err.contains("pw"), "the password is not repeated: {err}");
        }
        for accepted in [
            "postgres://herd@127.0.0.1:5432/herd",
            "postgres://herd@localhost/herd",
            "postgres://herd@[::1]/herd",
            "postgres:///herd?host=/run/postgresql",
            "postgres://herd@db.example/herd?sslmode=verify-full&sslrootcert=/etc/herd/db-ca.pem",
            "postgres://herd@db.example/herd?sslmode=verify-ca&sslrootcert=ca.pem",
        ] {
            load(accepted, None).unwrap_or_else(|e| panic!("{accepted}: {e}"));
        }
        load("postgres://herd@db.example/herd", Some(false)).expect("explicitly allowed");
    }

    #[test]
    fn a_config_that_would_fail_every_enrolment_is_refused_at_load() {
        for (file, key) in [
            (
                ConfigFile {
                    terminal_cert_days: Some(herd_tls::MAX_TERMINAL_VALIDITY_DAYS + 1),
                    ..Default::default()
                },
                "terminal_cert_days",
            ),
            (
                ConfigFile {
                    terminal_cert_days: Some(0),
                    ..Default::default()
                },
                "terminal_cert_days",
            ),
            (
                ConfigFile {
                    server_names: Some(vec!["localhost".into(), "not a name!".into()]),
                    ..Default::default()
                },
                "server_names",
            ),
            (
                ConfigFile {
                    server_names: Some(vec!["*.*.example".into()]),
                    ..Default::default()
                },
                "server_names",
            ),
            (
                ConfigFile {
                    server_cert_check_secs: Some(0),
                    ..Default::default()
                },
                "server_cert_check_secs",
            ),
            (
                ConfigFile {
                    server_cert_check_secs: Some(30 * 86_400),
                    ..Default::default()
                },
                "server_cert_check_secs",
            ),
            (
                ConfigFile {
                    max_api_token_days: Some(0),
                    ..Default::default()
                },
                "max_api_token_days",
            ),
            (
                ConfigFile {
                    max_enrol_token_days: Some(100_000),
                    ..Default::default()
                },
                "max_enrol_token_days",
            ),
        ] {
            let err = CenterConfig::from_file(file).unwrap_err().to_string();
            assert!(err.starts_with(key), "{err}");
        }
        let file = ConfigFile::parse("default", DEFAULT_CONFIG).unwrap();
        let config = CenterConfig::from_file(file).unwrap();
        assert_eq!(
            (config.max_api_token_days, config.max_enrol_token_days),
            (365, 30)
        );
    }

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact_url("postgres://herd:s3cret@db/herd"),
            "postgres://herd:***@db/herd"
        );
        assert_eq!(
            redact_url("postgres://herd@db/herd"),
            "postgres://herd@db/herd"
        );
    }
}
