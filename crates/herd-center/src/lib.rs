//! The center as a library: the maintenance server of SPEC §2–3.1, which `herd serve` runs.
//!
//! [`Center`] is the state every request shares: the store (the single source of truth that
//! several center processes agree through), the blob store, the CA, and caches derived from
//! the store that are refreshed when the store's revisions move (so no process knows anything
//! the others cannot learn). [`run`] opens everything, binds the listeners and serves until
//! SIGINT/SIGTERM. The HTTP surface is in `api`.

pub mod api;
mod auth;
pub mod blobs;
pub mod catalog;
mod checkin;
pub mod config;
pub mod error;
mod feeds;
mod listener;
pub mod metrics;
mod placement;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use herd_store::{ApiTokenRow, Role, Store};
use herd_tls::CertificateAuthority;
use tokio::sync::watch;

use crate::blobs::BlobStore;
use catalog::CatalogSnapshot;
use config::CenterConfig;
use metrics::Metrics;

pub use auth::KnownTerminal;

/// Everything requests share.
#[derive(Debug)]
pub struct Center {
    pub config: CenterConfig,
    pub store: Arc<dyn Store>,
    pub blobs: BlobStore,
    pub ca: CertificateAuthority,
    pub metrics: Arc<Metrics>,
    catalog: RwLock<Arc<CatalogSnapshot>>,
    /// Terminals seen by this process, valid while the store's config revision is
    /// `terminals_revision` (any group, rule or terminal change empties it).
    terminals: Mutex<HashMap<String, Arc<KnownTerminal>>>,
    terminals_revision: AtomicU64,
    /// API tokens by hash, re-read from the store after a short time.
    tokens: Mutex<HashMap<String, (ApiTokenRow, std::time::Instant)>>,
    checkins: checkin::CheckinWriter,
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
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                config.data_dir.display()
            )
        })?;
        check_writable(&config.data_dir)?;
        let store: Arc<dyn Store> = herd_store::open(&config.database)
            .await
            .with_context(|| format!("cannot open the store {}", config.database_for_display()))?
            .into();
        let blobs = BlobStore::open(&config.blob_dir).with_context(|| {
            format!(
                "cannot open the blob directory {}",
                config.blob_dir.display()
            )
        })?;

        // The CA lives in the store so that every center process on one database shares it.
        let (cert_pem, key_pem) = CertificateAuthority::generate("Herd center CA")?;
        let ca_material = store
            .ca_get_or_insert(herd_store::CaMaterial { cert_pem, key_pem })
            .await?;
        let ca = CertificateAuthority::from_pem(&ca_material.cert_pem, &ca_material.key_pem)
            .context("the CA stored in the database is unusable")?;

        let (revision, feeds) = store.feeds().await?;
        let snapshot = CatalogSnapshot::from_feeds(revision, &feeds)
            .map_err(|err| anyhow::anyhow!("the stored catalog does not validate: {err}"))?;
        let metrics = Arc::new(Metrics::default());
        metrics.catalog_revision.store(revision, Relaxed);
        let checkins = checkin::CheckinWriter::start(store.clone(), metrics.clone());
        let center = Arc::new(Center {
            config,
            store,
            blobs,
            ca,
            metrics,
            catalog: RwLock::new(Arc::new(snapshot)),
            terminals: Mutex::new(HashMap::new()),
            terminals_revision: AtomicU64::new(0),
            tokens: Mutex::new(HashMap::new()),
            checkins,
        });
        center.bootstrap_operator_token().await?;
        // Written last: its presence tells scripts and tests that start-up is complete.
        write_private(
            &center.config.data_dir.join("ca.pem"),
            center.ca.cert_pem().as_bytes(),
            0o644,
        )?;
        let revisions = center.store.revisions().await?;
        center.terminals_revision.store(revisions.config, Relaxed);
        Ok(center)
    }

    /// The catalog snapshot current in this process.
    pub fn catalog(&self) -> Arc<CatalogSnapshot> {
        self.catalog.read().expect("catalog lock").clone()
    }

    /// Re-reads the catalog from the store if its revision moved.
    pub async fn refresh_catalog(&self) -> anyhow::Result<()> {
        let (revision, feeds) = self.store.feeds().await?;
        if revision == self.catalog().revision {
            return Ok(());
        }
        let snapshot = CatalogSnapshot::from_feeds(revision, &feeds)
            .map_err(|err| anyhow::anyhow!("the stored catalog does not validate: {err}"))?;
        *self.catalog.write().expect("catalog lock") = Arc::new(snapshot);
        self.metrics.catalog_revision.store(revision, Relaxed);
        tracing::info!(revision, "catalog updated");
        Ok(())
    }

    /// Drops cached terminals, groups and tokens (their source changed in the store).
    pub fn forget_config(&self, revision: u64) {
        self.terminals.lock().expect("terminal cache").clear();
        self.tokens.lock().expect("token cache").clear();
        self.terminals_revision.store(revision, Relaxed);
    }

    /// Follows the store's revisions, so changes made through other center processes reach
    /// this one within about a second.
    async fn follow_revisions(self: Arc<Center>, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            match self.store.revisions().await {
                Ok(revisions) => {
                    if revisions.catalog != self.catalog().revision {
                        if let Err(err) = self.refresh_catalog().await {
                            tracing::error!(%err, "cannot reload the catalog");
                        }
                    }
                    if revisions.config != self.terminals_revision.load(Relaxed) {
                        self.forget_config(revisions.config);
                    }
                }
                Err(err) => tracing::warn!(%err, "cannot read the store's revisions"),
            }
        }
    }

    /// At first start there is no operator: create a token and leave it, readable only by
    /// the owner, in the data directory.
    async fn bootstrap_operator_token(&self) -> anyhow::Result<()> {
        if self.store.api_tokens_count().await? > 0 {
            return Ok(());
        }
        let token = auth::new_secret();
        let now = unix_now();
        self.store
            .api_token_insert(ApiTokenRow {
                hash: auth::secret_hash(&token),
                role: Role::Operator,
                vendor: None,
                label: "bootstrap operator token".to_owned(),
                created_at: now,
                expires_at: now + 10 * 365 * 86_400,
            })
            .await?;
        let path = self.config.data_dir.join("operator.token");
        write_private(&path, format!("{token}\n").as_bytes(), 0o600)?;
        tracing::info!(path = %path.display(), "created the first operator token");
        Ok(())
    }
}

fn check_writable(dir: &Path) -> anyhow::Result<()> {
    let probe = dir.join(".herd-write-test");
    std::fs::write(&probe, b"")
        .with_context(|| format!("the data directory {} is not writable", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Writes a file atomically with the given mode (secrets: 0600).
pub fn write_private(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Runs the center until SIGINT or SIGTERM. Binding errors (port in use, no permission) are
/// returned with the address named.
pub async fn run(config: CenterConfig) -> anyhow::Result<()> {
    herd_tls::install_crypto_provider();
    let listen = config.listen;
    let plaintext = config.plaintext_listen;
    // Bind first: a port in use is the most common start-up error and needs no database.
    let tls_listener = bind(listen).await?;
    let plain_listener = match plaintext {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let center = Center::open(config).await?;
    let server_cert = center.ca.issue_server(&center.config.server_names)?;
    let tls = tokio_rustls::TlsAcceptor::from(center.ca.server_config(&server_cert)?);
    let (router, _openapi) = api::router(center.clone());

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(center.clone().follow_revisions(stop_rx.clone()));
    let local = tls_listener.local_addr()?;
    let mut servers = vec![tokio::spawn(listener::serve(
        tls_listener,
        Some(tls),
        router.clone(),
        center.metrics.clone(),
        stop_rx.clone(),
    ))];
    if let Some(plain) = plain_listener {
        tracing::warn!(addr = %plain.local_addr()?, "plaintext HTTP listener on loopback (no terminal endpoints)");
        servers.push(tokio::spawn(listener::serve(
            plain,
            None,
            router,
            center.metrics.clone(),
            stop_rx,
        )));
    }
    tracing::info!(
        addr = %local,
        url = %format!("https://{local}"),
        store = %center.config.database_for_display(),
        ca = %center.config.data_dir.join("ca.pem").display(),
        "herd center listening"
    );
    shutdown_signal().await;
    tracing::info!("shutting down: finishing requests in flight");
    let _ = stop_tx.send(true);
    for server in servers {
        let _ = server.await;
    }
    center.checkins.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|err| {
        let hint = match err.kind() {
            std::io::ErrorKind::AddrInUse => {
                " (another program is using this port; choose another with --listen)"
            }
            std::io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges)",
            _ => "",
        };
        anyhow::anyhow!("cannot listen on {addr}: {err}{hint}")
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
