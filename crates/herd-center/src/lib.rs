//! The center as a library: the maintenance server of SPEC §2–3.1, which `herd serve` runs.
//!
//! [`Center`] is the state every request shares: the store (the single source of truth that
//! several center processes agree through), the blob store, the CA, and caches derived from
//! the store that are refreshed when the store's revisions move (so no process knows anything
//! the others cannot learn). [`run`] opens everything, binds the listeners and serves until
//! SIGINT/SIGTERM.
//!
//! Two layers: the domain services (every module but `api`: enrolment, check-in, events,
//! feeds, the fleet, groups and rules, tokens, packages and the blob store, authentication)
//! take plain values and return [`CenterResult`]s; they know nothing of HTTP, which
//! `tests/boundaries.rs` in herd-server checks. `api` is the edge: the router and its thin
//! handlers, the extractors, the one mapping of [`ErrorKind`] to a status, the blob store's
//! HTTP serving, the TLS listener and [`run`].

pub mod alerts;
pub mod api;
mod auth;
pub mod blobs;
pub mod body_signatures;
mod cache;
pub mod catalog;
mod checkin;
pub mod config;
pub mod consent;
mod deltas;
mod enrol;
pub mod error;
pub mod events;
pub mod fault_rules;
pub mod faults;
mod feed_poll;
mod feeds;
pub mod fleet;
mod group_commit;
mod groups;
pub mod herd_set;
mod identity;
pub mod keys;
pub mod live;
mod memory;
pub mod messages;
pub mod metrics;
mod packages;
mod placement;
pub mod planners;
mod registry;
pub mod replacements;
pub mod rollouts;
pub mod samples;
pub mod sessions;
pub mod site;
mod sites;
mod tokens;
mod trust;
pub mod tuf;
pub mod wait;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use herd_store::{ApiTokenRow, Role, Store};
use herd_tls::CertificateAuthority;
use tokio::sync::watch;

use crate::blobs::BlobStore;
use catalog::CatalogSnapshot;
use config::CenterConfig;
use metrics::Metrics;

pub use api::run;
pub use auth::{Caller, KnownTerminal, PeerIdentity};
pub use checkin::CheckinAnswer;
pub use error::{CenterError, CenterResult, ErrorKind};
pub use packages::PackageUpload;

/// The longest a site's pull is held by the center (and so the longest `site_poll_secs`).
pub const SITE_MAX_POLL_SECS: u64 = herd_proto::site::MAX_WAIT_SECS;

/// Seconds after a catalog change when the memory of the catalog it replaced, dropped by the
/// planners at their next check-in, is given back to the system.
const RELEASE_MEMORY_AFTER_TICKS: u64 = 3;
/// Seconds between two times freed memory is given back anyway.
const RELEASE_MEMORY_EVERY_TICKS: u64 = 30;
/// Seconds between two reads of the store's revisions when the store also wakes the follower
/// on every change: only for notifications that were lost.
const REVISIONS_FALLBACK_POLL_TICKS: u64 = 10;

/// Everything requests share.
#[derive(Debug)]
pub struct Center {
    pub config: CenterConfig,
    pub store: Arc<dyn Store>,
    pub blobs: BlobStore,
    /// The CA, replaced when an operator installs an intermediate (see `keys.rs`; read it
    /// with [`Center::ca`]). `None` on a site server, which holds no CA.
    ca: RwLock<Option<Arc<CertificateAuthority>>>,
    ca_generation: AtomicU64,
    /// The key-encryption key the CA's key is sealed under in the store.
    kek: herd_tls::seal::KeyEncryptionKey,
    pub metrics: Arc<Metrics>,
    catalog: RwLock<Arc<CatalogSnapshot>>,
    /// Terminals and group policies this process has read (see `cache`).
    caches: cache::Caches,
    /// The server certificate the TLS listener serves, reissued before it expires.
    server_cert: identity::ServerCertificate,
    checkins: checkin::CheckinWriter,
    events: events::EventWriter,
    /// Ticks of the revision follower left until freed memory is given back after a catalog
    /// change (the worker threads' planners drop the old catalog at their next check-in).
    release_memory_in: AtomicU64,
    /// Bytes announced by package uploads in progress, per vendor (see `packages`).
    package_reservations: packages::Reservations,
    /// Held by a collection of the blob store and by a publish, so no feed is published
    /// naming a blob a collection is deleting.
    blob_collection: tokio::sync::Mutex<()>,
    /// The signed repository as this process serves and signs it (see `tuf`).
    trust: tuf::Trust,
    /// What a terminal's plan or its signed metadata depend on, as a token that moves with
    /// each change (see [`Center::change_token`]); held requests (`/v1/wait`, a site's
    /// `/v1/sites/changes`) wait on it.
    changes: watch::Sender<String>,
    /// A site server's link to its center; `None` on a center.
    site: Option<Arc<site::SiteLink>>,
    /// The center's own client certificate, issued when it first pushes to a site.
    center_client: std::sync::Mutex<Option<herd_tls::KeyPairPem>>,
    /// The push connections held now (`/v1/wait`), their cap and their shutdown.
    pub waits: wait::Waits,
    /// What happens, for whoever watches (the console's live view).
    pub live: live::Live,
    /// The rollouts this process read last (see `rollouts`).
    rollouts: rollouts::RolloutCache,
    /// Alerts: raise one with `center.alerts.raise(AlertEvent::new(kind, subject, detail))`.
    pub alerts: alerts::Alerts,
    /// Wakes the vendor feed poller (see `feed_poll`, [`Center::poke_feeds`]).
    feed_poller: feed_poll::FeedPoller,
    /// Rebuilds of Herd's own threats in the catalog, coalesced (`herd_set`).
    herd_feed: herd_set::HerdFeedRebuilds,
    /// The newest message id, read at most once a second (`messages`): a check-in whose
    /// terminal has it needs no read of its inbox.
    newest_message: messages::NewestMessage,
}

/// Seconds since the Unix epoch: the center's one clock.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// RFC 3339 (UTC) for Unix seconds.
pub fn rfc3339(seconds: i64) -> String {
    herd_core::Timestamp::from_unix_seconds(seconds).to_string()
}

impl Center {
    /// Opens the store, the CA and the blob store; bootstraps what a first start needs.
    pub async fn open(config: CenterConfig) -> anyhow::Result<Arc<Center>> {
        create_private_dir(&config.data_dir)?;
        check_writable(&config.data_dir)?;
        let store: Arc<dyn Store> = herd_store::open(&config.database)
            .await
            .with_context(|| format!("cannot open the store {}", config.database_for_display()))?
            .into();
        Center::open_with_store(config, store).await
    }

    /// [`Center::open`] with a store the caller opened (a test may wrap it to watch what the
    /// center asks of it). `config.database` is then only shown, not opened.
    pub async fn open_with_store(
        config: CenterConfig,
        store: Arc<dyn Store>,
    ) -> anyhow::Result<Arc<Center>> {
        create_private_dir(&config.data_dir)?;
        // The embedded database holds the (sealed) CA key, token hashes and the whole fleet:
        // whatever created it, and whatever the umask was, it is readable by its owner only.
        make_private_files(&config.data_dir)?;
        let blobs = match &config.blob_store {
            config::BlobBackend::Files => BlobStore::open(&config.blob_dir).with_context(|| {
                format!(
                    "cannot open the blob directory {}",
                    config.blob_dir.display()
                )
            })?,
            config::BlobBackend::S3 { bucket, prefix } => {
                BlobStore::open_s3(&config.blob_dir, bucket.clone(), prefix)
                    .await
                    .with_context(|| {
                        format!(
                            "cannot open the blob store s3://{}/{prefix} (blob_store = \"s3\")",
                            bucket.name()
                        )
                    })?
            }
        };

        // A site holds no CA: its certificate, and the anchors it verifies its terminals
        // against, come from the center it enrolled with.
        let site = match &config.site {
            Some(site_config) => Some(Arc::new(
                site::SiteLink::open(&config.data_dir, site_config, &config.server_names).await?,
            )),
            None => None,
        };
        let (kek, ca, ca_generation, server_cert) = match &site {
            Some(site) => {
                let (kek, _) = keys::load_kek(&config)?;
                let server_cert = identity::ServerCertificate::from_site(site)?;
                (kek, None, 0, server_cert)
            }
            None => {
                let (kek, ca, ca_generation, server_cert) =
                    Center::open_ca_and_repository(&config, &*store).await?;
                (kek, Some(ca), ca_generation, server_cert)
            }
        };

        let (revision, feeds, registry) = store.catalog_inputs().await?;
        let snapshot = CatalogSnapshot::from_feeds(revision, feeds, &registry)
            .map_err(|err| anyhow::anyhow!("the stored catalog does not validate: {err}"))?;
        let metrics = Arc::new(Metrics::default());
        metrics.catalog_revision.store(revision, Relaxed);
        let checkins = checkin::CheckinWriter::start(store.clone(), metrics.clone());
        let events = events::EventWriter::start(store.clone());
        // Read before anything is cached, so no change made from here on is missed.
        let revisions = store.revisions().await?;
        let max_waits = config.max_waits;
        let alerts = alerts::Alerts::start(config.alerts.clone(), store.clone());
        let center = Arc::new(Center {
            alerts,
            feed_poller: Default::default(),
            herd_feed: Default::default(),
            newest_message: Default::default(),
            waits: wait::Waits::new(max_waits, config.wake_concurrency, metrics.clone()),
            config,
            store,
            blobs,
            ca: RwLock::new(ca.map(Arc::new)),
            ca_generation: AtomicU64::new(ca_generation),
            kek,
            metrics,
            catalog: RwLock::new(Arc::new(snapshot)),
            caches: cache::Caches::starting_at(revisions),
            server_cert,
            checkins,
            events,
            release_memory_in: AtomicU64::new(0),
            package_reservations: Default::default(),
            blob_collection: tokio::sync::Mutex::new(()),
            trust: tuf::Trust::default(),
            changes: watch::Sender::new(String::new()),
            site,
            center_client: std::sync::Mutex::new(None),
            live: live::Live::default(),
            rollouts: Default::default(),
        });
        // Before anything is planned: a release under rollout is never offered beyond its ring.
        center.load_rollouts().await?;
        center.note_server_cert_expiry();
        center.bootstrap_operator_token().await?;
        center.reload_groups().await?;
        if center.site.is_none() {
            center
                .sign_repository(None)
                .await
                .map_err(|err| anyhow::anyhow!("cannot sign the repository: {err}"))?;
        }
        // Written last: its presence tells scripts and tests that start-up is complete.
        herd_fs::write_atomic(
            &center.config.data_dir.join("ca.pem"),
            center.trust_pem().as_bytes(),
            0o644,
        )?;
        Ok(center)
    }

    /// A center's CA (opened from the store, or generated at first start), its server
    /// certificate, and its signed repository (initialised at first start).
    async fn open_ca_and_repository(
        config: &CenterConfig,
        store: &dyn Store,
    ) -> anyhow::Result<(
        herd_tls::seal::KeyEncryptionKey,
        CertificateAuthority,
        u64,
        identity::ServerCertificate,
    )> {
        // The CA lives in the store so that every center process on one database shares it,
        // its key sealed under the operator's key-encryption key.
        let (kek, kek_source) = keys::load_kek(&config)?;
        if let keys::KekSource::Generated(path) = &kek_source {
            tracing::warn!(
                path = %path.display(),
                "the CA key is sealed under a key-encryption key kept in the data directory; \
                 move it elsewhere and set ca_kek_file (or HERD_CA_KEK_FILE) so that a copy of \
                 the data directory does not hold both"
            );
        }
        let (ca, ca_generation) = keys::open_ca(store, &kek).await?;
        // Certificates are cut to the issuing CA's expiry (herd-tls); say so at start, while
        // there is time to install the next intermediate, rather than refuse to serve.
        if let Some(ca_expiry) = identity::outlives_ca(
            ca.issuer_cert_pem(),
            config.terminal_cert_days,
            SystemTime::now(),
        )? {
            tracing::warn!(
                ca_expires_at = %rfc3339(
                    ca_expiry
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs() as i64)
                        .unwrap_or(0)
                ),
                "terminal certificates of terminal_cert_days = {} would outlive the issuing CA: \
                 they end with it; install a new intermediate (`herd ca intermediate`)",
                config.terminal_cert_days
            );
        }
        let server_cert = identity::ServerCertificate::issue(&ca, &config.server_names)?;
        // The signed repository: initialised at first start (its online keys sealed under the
        // same KEK as the CA's key), signed below once the catalog is loaded.
        tuf::initialise(store, &kek, &config)
            .await
            .context("cannot initialise the signed repository")?;

        Ok((kek, ca, ca_generation, server_cert))
    }

    /// The catalog snapshot current in this process.
    pub fn catalog(&self) -> Arc<CatalogSnapshot> {
        self.catalog.read().expect("catalog lock").clone()
    }

    /// Re-reads the catalog from the store if its revision moved.
    pub async fn refresh_catalog(&self) -> anyhow::Result<()> {
        let (revision, feeds, registry) = self.store.catalog_inputs().await?;
        if revision == self.catalog().revision {
            return Ok(());
        }
        // Parsing and validating a large catalog takes seconds: not on a request thread.
        let snapshot = tokio::task::spawn_blocking(move || {
            CatalogSnapshot::from_feeds(revision, feeds, &registry)
        })
        .await
        .map_err(|err| anyhow::anyhow!("building the catalog failed: {err}"))?
        .map_err(|err| anyhow::anyhow!("the stored catalog does not validate: {err}"))?;
        self.install_catalog(snapshot);
        Ok(())
    }

    /// Makes `snapshot` the catalog this process plans with, unless a newer one is installed.
    pub(crate) fn install_catalog(&self, snapshot: CatalogSnapshot) {
        let revision = snapshot.revision;
        // Gated before anyone plans with it: a release it adds starts in its first ring.
        self.gate_snapshot(&snapshot);
        {
            let mut current = self.catalog.write().expect("catalog lock");
            if revision <= current.revision {
                return;
            }
            *current = Arc::new(snapshot);
        }
        self.metrics.catalog_revision.store(revision, Relaxed);
        self.release_memory_in
            .store(RELEASE_MEMORY_AFTER_TICKS, Relaxed);
        crate::memory::release_freed();
        tracing::info!(revision, "catalog updated");
        self.announce_changes();
    }

    /// The change token: the catalog revision, the groups revision, the version of the
    /// served `timestamp.json` and the generation of the rollout gates, as `C.G.T.R`. It moves whenever a terminal's plan may differ or
    /// new signed metadata is there.
    pub fn change_token(&self) -> String {
        let timestamp = match self.site() {
            Some(site) => site.timestamp_version(),
            None => self.trust.timestamp_version(),
        };
        format!(
            "{}.{}.{}.{}.{}",
            self.catalog().revision,
            self.caches.groups_revision(),
            timestamp,
            self.rollouts.generation(),
            self.newest_message_known()
        )
    }

    /// Wakes every held request if the change token moved. Called wherever one of its parts
    /// changes in this process.
    pub(crate) fn announce_changes(&self) {
        let token = self.change_token();
        self.changes.send_if_modified(|current| {
            if *current == token {
                false
            } else {
                *current = token;
                true
            }
        });
    }

    /// A receiver that sees each new change token (see [`Center::change_token`]).
    pub fn subscribe_changes(&self) -> watch::Receiver<String> {
        self.changes.subscribe()
    }

    /// Follows the store's revisions, so changes made through other center processes reach
    /// this one: at once where the store wakes it ([`Store::revision_changes`], PostgreSQL's
    /// LISTEN/NOTIFY), with a poll every `REVISIONS_FALLBACK_POLL_TICKS` seconds in case a
    /// notification was lost; else by reading them every second.
    pub async fn follow_revisions(self: Arc<Center>, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut ticks: u64 = 1;
        let mut changes = self.store.revision_changes();
        loop {
            let woken = tokio::select! {
                _ = tick.tick() => false,
                alive = next_revision_change(&mut changes) => {
                    if !alive {
                        tracing::warn!("revision changes are no longer notified; polling every second");
                        changes = None;
                    }
                    true
                }
                _ = shutdown.changed() => return,
            };
            if !woken {
                // Give freed memory back a few seconds after a catalog change (when the worker
                // threads have let go of the old catalog), and every half minute anyway:
                // thousands of connections opened and closed a second leave freed buffers.
                let due = self.release_memory_in.load(Relaxed);
                self.release_memory_in.store(due.saturating_sub(1), Relaxed);
                if due == 1 || ticks % RELEASE_MEMORY_EVERY_TICKS == 0 {
                    crate::memory::release_freed();
                }
                ticks += 1;
            }
            // Notified processes read only when woken, and now and then in case one was lost.
            let read_revisions =
                woken || changes.is_none() || ticks.is_multiple_of(REVISIONS_FALLBACK_POLL_TICKS);
            let revisions = match read_revisions {
                true => Some(self.store.revisions().await),
                false => None,
            };
            match revisions {
                None => {}
                Some(Ok(revisions)) => {
                    if revisions.catalog != self.catalog().revision {
                        if let Err(err) = self.refresh_catalog().await {
                            tracing::error!(%err, "cannot reload the catalog");
                        }
                    }
                    if revisions.groups != self.caches.groups_revision() {
                        if let Err(err) = self.reload_groups().await {
                            tracing::error!(%err, "cannot reload the groups");
                        }
                    }
                    if self.site.is_none() && revisions.ca != self.ca_generation.load(Relaxed) {
                        if let Err(err) = self.reload_ca().await {
                            tracing::error!(%err, "cannot reload the CA");
                        }
                    }
                    if revisions.terminals != self.caches.terminal_changes_seen() {
                        if let Err(err) = self.follow_terminal_changes().await {
                            tracing::error!(%err, "cannot follow the terminals' changes");
                        }
                    }
                    if self.site.is_none()
                        && revisions.tuf != self.trust.served().revision
                        && let Err(err) = self.reload_repository().await
                    {
                        tracing::error!(%err, "cannot reload the signed repository");
                    }
                }
                Some(Err(err)) => tracing::warn!(%err, "cannot read the store's revisions"),
            }
            if self.site.is_none() {
                self.sign_if_due().await;
            }
        }
    }

    /// Stops taking check-ins and waits until those queued are stored.
    pub async fn close(&self) {
        self.checkins.close().await;
        self.events.close().await;
    }

    /// At first start there is no operator: create a token and leave it, readable only by
    /// the owner, in the data directory. The same when every operator token has expired or was
    /// revoked (tokens live at most `max_api_token_days`): whoever can restart the center can
    /// read its data directory anyway, so this is the way back in, not a new one.
    async fn bootstrap_operator_token(&self) -> anyhow::Result<()> {
        let now = unix_now();
        let operators = self.store.api_tokens().await?;
        if operators
            .iter()
            .any(|t| t.role == Role::Operator && t.expires_at > now)
        {
            return Ok(());
        }
        if !operators.is_empty() {
            tracing::warn!("no operator token is valid any more: creating a new one");
        }
        let token = auth::new_secret();
        self.store
            .api_token_insert(ApiTokenRow {
                hash: auth::secret_hash(&token),
                role: Role::Operator,
                vendor: None,
                label: "bootstrap operator token".to_owned(),
                created_at: now,
                expires_at: now + i64::from(self.config.max_api_token_days) * 86_400,
            })
            .await?;
        let path = self.config.data_dir.join("operator.token");
        herd_fs::write_atomic(&path, format!("{token}\n").as_bytes(), 0o600)?;
        tracing::info!(path = %path.display(), "created the first operator token");
        Ok(())
    }
}

/// The next wake-up from `changes` (true), or false once it can give none; never, without one.
async fn next_revision_change(changes: &mut Option<herd_store::RevisionChanges>) -> bool {
    match changes {
        Some(changes) => changes.changed().await,
        None => std::future::pending().await,
    }
}

/// Creates `dir` (and its missing parents) readable by its owner only, and tightens an existing
/// one that others could enter.
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("cannot read the data directory {}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make the data directory {} private", dir.display()))?;
        tracing::warn!(dir = %dir.display(), "the data directory was open to other users ({:04o}); it is now 0700", mode & 0o7777);
    }
    Ok(())
}

/// Makes the embedded database's files (and any other file in the data directory but the
/// public `ca.pem`) readable by their owner only.
fn make_private_files(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the data directory {}", dir.display()))?
    {
        let entry = entry?;
        let meta = entry.metadata()?;
        if !meta.is_file() || entry.file_name() == "ca.pem" {
            continue;
        }
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot make {} private", entry.path().display()))?;
        }
    }
    Ok(())
}

fn check_writable(dir: &Path) -> anyhow::Result<()> {
    let probe = dir.join(".herd-write-test");
    std::fs::write(&probe, b"")
        .with_context(|| format!("the data directory {} is not writable", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}
