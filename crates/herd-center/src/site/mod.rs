//! The site server (`herd serve --role site`, SPEC §2, §3.5): the center's code in its second
//! role. A site enrols with its center once (`link.rs`: its identity under `<data>/site/`), then
//! replicates what its planner needs — the catalog's inputs, groups and rules (`sync.rs`, the
//! pull held by the center, with the center's push behind it) — answers its terminals'
//! check-ins itself with the same planner, relays their enrolments and renewals, and sends what
//! they report upstream through its durable queue (`queue.rs`), so its terminals keep being
//! served while the center is down and nothing they reported is lost or applied twice.

mod link;
pub mod mirror;
mod queue;
mod renew;
mod sync;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use herd_tls::KeyPairPem;
use tokio::sync::{Mutex, Notify, watch};

pub use link::SiteIdentity;

use crate::Center;

impl SiteLink {
    /// A terminal's fault verdicts, asked of the center (faults are decided there).
    pub(crate) async fn fault_verdicts_of(
        &self,
        terminal: &str,
    ) -> crate::CenterResult<herd_proto::fault::FaultVerdicts> {
        let client = self.client();
        let id = terminal.to_owned();
        tokio::task::spawn_blocking(move || client.site_fault_verdicts(&id))
            .await
            .map_err(|err| crate::CenterError::internal(format!("the verdict task failed: {err}")))?
            .map_err(|err| {
                crate::CenterError::new(
                    crate::error::ErrorKind::Unavailable,
                    format!("cannot read the terminal's fault verdicts from the center: {err}"),
                )
            })
    }
}

impl SiteLink {
    /// A terminal's e-mailed consent answer, asked of the center (consent requests live
    /// there); none when the center does not answer within a few seconds, so a check-in at
    /// the site never waits long for it.
    pub(crate) async fn consent_of(
        &self,
        terminal: &str,
        plan_id: &str,
    ) -> Option<herd_proto::consent::ConsentAnswer> {
        let client = self.client();
        let (id, plan) = (terminal.to_owned(), plan_id.to_owned());
        let asked = tokio::task::spawn_blocking(move || client.site_consent(&id, &plan));
        match tokio::time::timeout(std::time::Duration::from_secs(3), asked).await {
            Ok(Ok(Ok(answer))) => answer.consent,
            Ok(Ok(Err(err))) => {
                tracing::warn!(%terminal, %err, "cannot read a consent answer from the center");
                None
            }
            _ => None,
        }
    }
}

impl SiteLink {
    /// Whether the center has sample `sha256`; `false` when it does not answer within a few
    /// seconds (the terminal then uploads, and the center keeps the sample once anyway).
    pub(crate) async fn sample_held(&self, sha256: &str) -> bool {
        let client = self.client();
        let sha256 = sha256.to_owned();
        let asked = tokio::task::spawn_blocking(move || client.site_sample_held(&sha256));
        match tokio::time::timeout(std::time::Duration::from_secs(3), asked).await {
            Ok(Ok(Ok(presence))) => presence.held,
            _ => false,
        }
    }
}

/// The site's certificate and key, and the center's client that presents them.
#[derive(Debug)]
struct Credentials {
    key_pair: KeyPairPem,
    client: herd_client::Client,
}

/// What a site process holds of its link to the center.
#[derive(Debug)]
pub struct SiteLink {
    /// As enrolled; its certificate and key as of the start (see `credentials` since).
    pub identity: SiteIdentity,
    /// The site's certificate and key now, and the center's client with them (blocking:
    /// called off the async threads); replaced when the site renews (`renew.rs`).
    credentials: std::sync::RwLock<Credentials>,
    /// Wakes the forwarder when something was queued.
    forward_wake: Notify,
    /// One sync at a time (the pull loop's and a push's).
    syncing: Mutex<()>,
    /// One renewal of the site's certificate at a time.
    renewing: Mutex<()>,
    /// The change token of the center as of the last sync.
    last_token: std::sync::Mutex<Option<String>>,
    /// The center's `timestamp.json` version as of the last sync.
    timestamp_version: AtomicU64,
    /// The center's signed metadata and packages, mirrored for this site's terminals.
    pub mirror: Arc<mirror::Mirror>,
}

impl SiteLink {
    /// Opens the site's identity, enrolling with the center at the first start.
    pub(crate) async fn open(
        data_dir: &std::path::Path,
        config: &crate::config::SiteConfig,
        server_names: &[String],
    ) -> anyhow::Result<SiteLink> {
        let identity = link::open_or_enrol(data_dir, config, server_names).await?;
        let client = herd_client::Client::new(
            &identity.upstream,
            &identity.ca_pem,
            Some(&identity.key_pair()),
        )?;
        // Opening reads the cache once (every blob is hashed again): off the async threads.
        let mirror_dir = data_dir.join("site").join("mirror");
        let repository = client.repository();
        let root = identity.tuf_root.clone();
        let limit = config.cache_bytes;
        let mirror = tokio::task::spawn_blocking(move || {
            mirror::Mirror::open(&mirror_dir, limit, repository, root.as_bytes())
        })
        .await?
        .map_err(|err| anyhow::anyhow!("cannot open the site's mirror: {err}"))?;
        Ok(SiteLink {
            mirror,
            credentials: std::sync::RwLock::new(Credentials {
                key_pair: identity.key_pair(),
                client,
            }),
            identity,
            forward_wake: Notify::new(),
            syncing: Mutex::new(()),
            renewing: Mutex::new(()),
            last_token: std::sync::Mutex::new(None),
            timestamp_version: AtomicU64::new(0),
        })
    }

    /// The site's certificate and key now, which its listener serves.
    pub fn key_pair(&self) -> KeyPairPem {
        self.credentials().key_pair.clone()
    }

    /// The center, called with the site's certificate now.
    pub(crate) fn client(&self) -> herd_client::Client {
        self.credentials().client.clone()
    }

    fn credentials(&self) -> std::sync::RwLockReadGuard<'_, Credentials> {
        self.credentials
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The version of the center's `timestamp.json` this site mirrors.
    pub fn timestamp_version(&self) -> u64 {
        self.timestamp_version.load(Relaxed)
    }
}

impl Center {
    /// The site link, when this process is a site server.
    pub fn site(&self) -> Option<&SiteLink> {
        self.site.as_deref()
    }

    /// Starts a site's background work: the pull loop and the queue's forwarder.
    pub(crate) fn start_site_tasks(self: &Arc<Center>, shutdown: watch::Receiver<bool>) {
        if self.site.is_none() {
            return;
        }
        tokio::spawn(self.clone().pull_loop(shutdown.clone()));
        tokio::spawn(self.clone().renew_when_due(shutdown.clone()));
        tokio::spawn(self.clone().forward_loop(shutdown));
    }
}
