//! What a site replicates, and when (seed 001 S109–S114): the site pulls — a request the
//! center holds until its change token moves (or `site_poll_secs` pass), so a change reaches
//! the site at once — and when a site has not pulled for a while after a change, the center
//! pushes (`POST /v1/site/notify`), which makes the site pull at once. A pull fetches what
//! moved: the catalog's inputs (by revision), groups and rules; the catalog is installed last,
//! so terminals woken by it find the signed metadata that lists its packages.
//!
//! Also here: what a site asks of the center for its terminals — enrolments and renewals
//! relayed, and a terminal it does not know (one failing over from another site) adopted.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use herd_proto::api::{CertificateRenewal, CertificateRenewed, EnrolRequest, EnrolResponse};
use herd_proto::site::{RelayedEnrol, RelayedRenewal, SiteChanges, SiteStatus};
use herd_store::{
    Approval, GroupRow, NewTerminal, Registry, RuleRow, StoredFeed, ThreatOwnerRow,
    VendorApprovalRow,
};
use tokio::sync::watch;

use crate::auth::PeerIdentity;
use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::{Center, unix_now};

/// The longest pause between two pulls while the center does not answer.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Center {
    /// Pulls from the center for as long as the site runs.
    pub(super) async fn pull_loop(self: Arc<Center>, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let held = self
                .site()
                .map(|s| s.last_token.lock().expect("token").clone());
            let result = tokio::select! {
                result = self.pull(held.flatten()) => result,
                _ = shutdown.changed() => return,
            };
            match result {
                Ok(()) => backoff = Duration::from_secs(1),
                Err(err) => {
                    self.metrics.sites.upstream_up.store(0, Relaxed);
                    tracing::warn!(err = %format!("{err:#}"), retry_in = ?backoff, "cannot pull from the center; serving what this site has");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// One pull: waits (held by the center) for a change after the last token seen, then
    /// fetches what moved.
    async fn pull(&self, after: Option<String>) -> anyhow::Result<()> {
        let site = self.site().expect("a site's task");
        let status = self.site_status().await;
        let client = site.client();
        let hold = self
            .config
            .site
            .as_ref()
            .map_or(Duration::from_secs(30), |s| s.poll);
        let changes = tokio::task::spawn_blocking(move || {
            client.site_changes(after.as_deref(), hold, &status)
        })
        .await??;
        self.metrics.sites.upstream_up.store(1, Relaxed);
        // The center answers again: the queue need not wait for its sender's back-off.
        site.forward_wake.notify_one();
        if changes.renew_certificate {
            // Before the changes are applied: the renewal is what the operator is waiting for.
            if let Err(err) = self.renew_site_certificate("an operator asked").await {
                tracing::warn!(err = %format!("{err:#}"), "cannot renew the site's certificate; the center asks again at the next pull");
            }
        }
        self.apply_changes(&changes).await
    }

    /// The center's push: pull at once, without waiting for the held request.
    pub async fn site_notified(&self, changes: SiteChanges) -> CenterResult<()> {
        let Some(site) = self.site() else {
            return Err(CenterError::new(
                ErrorKind::WrongRole,
                "this is a center; only a site server is notified",
            ));
        };
        self.metrics.sites.notified.fetch_add(1, Relaxed);
        let current = site.last_token.lock().expect("token").clone();
        if current.as_deref() == Some(changes.token.as_str()) {
            return Ok(());
        }
        let client = site.client();
        let status = self.site_status().await;
        let fresh =
            tokio::task::spawn_blocking(move || client.site_changes(None, Duration::ZERO, &status))
                .await
                .map_err(|err| CenterError::internal(format!("the pull task failed: {err}")))?
                .map_err(|err| {
                    CenterError::new(
                        ErrorKind::Unavailable,
                        format!("cannot pull from the center: {err}"),
                    )
                })?;
        self.apply_changes(&fresh)
            .await
            .map_err(|err| CenterError::new(ErrorKind::Unavailable, format!("{err:#}")))
    }

    /// Fetches and installs what moved since the last sync. One at a time.
    async fn apply_changes(&self, changes: &SiteChanges) -> anyhow::Result<()> {
        let site = self.site().expect("a site");
        let _one = site.syncing.lock().await;
        let revisions = self.store.revisions().await?;
        let client = site.client();
        let need_catalog = changes.catalog_revision != revisions.catalog;
        let need_groups = changes.groups_revision != revisions.groups;
        let (catalog, groups) = tokio::task::spawn_blocking(move || {
            let catalog = need_catalog.then(|| client.site_catalog()).transpose()?;
            let groups = need_groups.then(|| client.site_groups()).transpose()?;
            Ok::<_, herd_client::ClientError>((catalog, groups))
        })
        .await??;
        // The signed metadata first: a terminal woken by the new catalog must find it.
        self.sync_mirror(changes.timestamp_version).await?;
        // The center's ring gates before its catalog, so no new release is offered here
        // beyond its ring (a release without a rollout yet is gated in the first ring).
        let client = site.client();
        match tokio::task::spawn_blocking(move || client.site_rollouts()).await? {
            Ok(rollouts) => self.install_site_rollouts(&rollouts)?,
            Err(err) => {
                tracing::warn!(%err, "cannot read the center's rollouts; planning under the last ones")
            }
        }
        if let Some(groups) = groups {
            let rows: Vec<GroupRow> = groups
                .groups
                .into_iter()
                .map(|g| GroupRow {
                    id: g.id,
                    description: g.description,
                    policy: g.policy,
                })
                .collect();
            let rules: Vec<RuleRow> = groups
                .rules
                .into_iter()
                .map(|r| RuleRow {
                    group: r.group,
                    rule: r.rule,
                })
                .collect();
            self.store
                .replicate_groups(groups.revision, &rows, &rules)
                .await?;
            self.reload_groups().await?;
            self.metrics.sites.syncs.fetch_add(1, Relaxed);
            tracing::info!(
                revision = groups.revision,
                "groups replicated from the center"
            );
        }
        if let Some(catalog) = catalog {
            let feeds: Vec<StoredFeed> = catalog
                .feeds
                .into_iter()
                .map(|f| StoredFeed {
                    vendor: f.vendor,
                    doc: f.doc,
                    sha256: f.sha256,
                    published_at: f.published_at,
                })
                .collect();
            let approval = |text: &str| {
                Approval::parse(text)
                    .ok_or_else(|| anyhow::anyhow!("the center sent an unknown approval {text:?}"))
            };
            let registry = Registry {
                threats: catalog
                    .threats
                    .into_iter()
                    .map(|t| {
                        Ok(ThreatOwnerRow {
                            status: approval(&t.status)?,
                            threat: t.threat,
                            vendor: t.vendor,
                            declared_at: t.declared_at,
                        })
                    })
                    .collect::<anyhow::Result<_>>()?,
                vendors: catalog
                    .vendors
                    .into_iter()
                    .map(|v| {
                        Ok(VendorApprovalRow {
                            status: approval(&v.status)?,
                            vendor: v.vendor,
                            first_published_at: v.first_published_at,
                        })
                    })
                    .collect::<anyhow::Result<_>>()?,
            };
            // Validated before it is stored: a catalog this site cannot build is refused whole.
            let revision = catalog.revision;
            let check_feeds = feeds.clone();
            let check_registry = registry.clone();
            tokio::task::spawn_blocking(move || {
                crate::catalog::CatalogSnapshot::from_feeds(revision, check_feeds, &check_registry)
                    .map(drop)
            })
            .await?
            .map_err(|err| anyhow::anyhow!("the center's catalog does not validate here: {err}"))?;
            self.store
                .replicate_catalog(revision, &feeds, &registry)
                .await?;
            self.refresh_catalog().await?;
            self.metrics.sites.syncs.fetch_add(1, Relaxed);
            tracing::info!(revision, "catalog replicated from the center");
        }
        // The operators' messages for this site's terminals (usually none new: one request).
        match self.replicate_messages(&site.client()).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "messages replicated from the center"),
            Err(err) => {
                tracing::warn!(err = %format!("{err:#}"), "cannot replicate messages; trying at the next pull")
            }
        }
        *site.last_token.lock().expect("token") = Some(changes.token.clone());
        self.announce_changes();
        Ok(())
    }

    /// Mirrors the center's signed metadata up to `timestamp_version`.
    async fn sync_mirror(&self, timestamp_version: u64) -> anyhow::Result<()> {
        let site = self.site().expect("a site");
        if site.timestamp_version() == timestamp_version {
            return Ok(());
        }
        let outcome =
            site.mirror.sync_metadata().await.map_err(|err| {
                anyhow::anyhow!("cannot mirror the center's signed metadata: {err}")
            })?;
        site.timestamp_version
            .store(outcome.timestamp_version, Relaxed);
        if outcome.changed {
            self.metrics.sites.syncs.fetch_add(1, Relaxed);
        }
        Ok(())
    }

    /// What the site says of itself with each pull.
    async fn site_status(&self) -> SiteStatus {
        let stats = self.store.queue_stats().await.unwrap_or_default();
        SiteStatus {
            queue_depth: stats.depth,
            queue_oldest_secs: stats
                .oldest_at
                .map_or(0, |at| unix_now().saturating_sub(at).max(0) as u64),
            cache_bytes: self.site().map_or(0, |s| s.mirror.stats().cache_bytes),
            cache_limit_bytes: self.config.site.as_ref().map_or(0, |s| s.cache_bytes),
            // Groups are counted with their terminals: their sum is every terminal here.
            terminals: self
                .store
                .groups()
                .await
                .map(|groups| groups.iter().map(|(_, count)| count).sum())
                .unwrap_or_default(),
        }
    }

    /// A terminal's enrolment through this site: relayed to the center, which issues the
    /// certificate; the site keeps the terminal and tells it where to check in.
    pub(crate) async fn site_relay_enrol(
        &self,
        request: EnrolRequest,
        address: IpAddr,
    ) -> CenterResult<EnrolResponse> {
        let site = self.site().expect("a site");
        let client = site.client();
        let relayed = RelayedEnrol {
            request: request.clone(),
            address: address.to_string(),
        };
        let mut response = tokio::task::spawn_blocking(move || client.relay_enrol(&relayed))
            .await
            .map_err(|err| CenterError::internal(format!("the enrolment task failed: {err}")))?
            .map_err(upstream_error)?;
        let cert_sha256 = herd_tls::cert_der_from_pem(&response.certificate_pem)
            .map(|der| herd_tls::cert_sha256_hex(&der))
            .map_err(|err| CenterError::internal(format!("the center's certificate: {err}")))?;
        self.store
            .terminal_adopt(NewTerminal {
                id: response.terminal.clone(),
                user: request.user,
                hardware: serde_json::to_string(&request.hardware).expect("hardware serialises"),
                tz: request.tz,
                group: response.group.clone(),
                cert_sha256,
                enrolled_at: unix_now(),
                address: address.to_string(),
                site: Some(site.identity.id.clone()),
            })
            .await?;
        self.follow_terminal_changes().await?;
        response.upstreams = vec![site.identity.url.clone(), site.identity.upstream.clone()];
        tracing::info!(terminal = %response.terminal, %address, "terminal enrolled through this site");
        Ok(response)
    }

    /// A terminal's renewal through this site: relayed; the site then accepts the new
    /// certificate.
    pub(crate) async fn site_relay_renew(
        &self,
        peer: Option<&PeerIdentity>,
        request: CertificateRenewal,
    ) -> CenterResult<CertificateRenewed> {
        let site = self.site().expect("a site");
        let peer = peer.ok_or_else(|| {
            CenterError::new(
                ErrorKind::ClientCertRequired,
                "renewal needs the client certificate it renews",
            )
        })?;
        let terminal = peer.terminal.clone().ok_or_else(|| {
            CenterError::new(
                ErrorKind::ClientCertNotTerminal,
                "the client certificate does not name a terminal",
            )
        })?;
        let known = self.known_terminal(&terminal).await?;
        let relayed = RelayedRenewal {
            terminal: terminal.clone(),
            presented_cert_sha256: peer.sha256.clone(),
            request,
        };
        let client = site.client();
        let renewed = tokio::task::spawn_blocking(move || client.relay_renew(&relayed))
            .await
            .map_err(|err| CenterError::internal(format!("the renewal task failed: {err}")))?
            .map_err(upstream_error)?;
        let cert_sha256 = herd_tls::cert_der_from_pem(&renewed.certificate_pem)
            .map(|der| herd_tls::cert_sha256_hex(&der))
            .map_err(|err| CenterError::internal(format!("the center's certificate: {err}")))?;
        self.store
            .terminal_adopt(NewTerminal {
                id: terminal,
                user: known.user.clone(),
                hardware: serde_json::to_string(&known.hardware).expect("hardware serialises"),
                tz: known.tz.clone(),
                group: known.group.clone(),
                cert_sha256,
                enrolled_at: unix_now(),
                address: String::new(),
                site: Some(site.identity.id.clone()),
            })
            .await?;
        self.follow_terminal_changes().await?;
        Ok(renewed)
    }

    /// A terminal this site does not know, asked of the center (one that failed over from
    /// another site, presenting the certificate whose SHA-256 is `cert_sha256`): adopted, so
    /// this site serves it from now on. `false` when the center does not know it with that
    /// certificate, or cannot be asked.
    pub(crate) async fn site_adopt_terminal(
        &self,
        id: &str,
        cert_sha256: &str,
    ) -> CenterResult<bool> {
        let Some(site) = self.site() else {
            return Ok(false);
        };
        let client = site.client();
        let wanted = id.to_owned();
        let cert = cert_sha256.to_owned();
        let found = match tokio::task::spawn_blocking(move || client.site_terminal(&wanted, &cert))
            .await
        {
            Ok(Ok(found)) => found,
            Ok(Err(herd_client::ClientError::Refused { status: 404, .. })) => return Ok(false),
            Ok(Err(err)) => {
                tracing::warn!(terminal = id, %err, "cannot ask the center for an unknown terminal");
                return Ok(false);
            }
            Err(err) => return Err(CenterError::internal(format!("the lookup failed: {err}"))),
        };
        self.store
            .terminal_adopt(NewTerminal {
                id: found.id,
                user: found.user,
                hardware: serde_json::to_string(&found.hardware).expect("hardware serialises"),
                tz: found.tz,
                group: found.group,
                cert_sha256: found.cert_sha256,
                enrolled_at: found.enrolled_at,
                address: String::new(),
                site: Some(site.identity.id.clone()),
            })
            .await?;
        self.follow_terminal_changes().await?;
        tracing::info!(
            terminal = id,
            "terminal adopted from the center (it came from elsewhere)"
        );
        Ok(true)
    }
}

/// What the center answered, or why it could not be asked, as this site's answer: a refusal
/// keeps its code; an unreachable center is `unavailable` (try again later).
fn upstream_error(err: herd_client::ClientError) -> CenterError {
    match err {
        herd_client::ClientError::Refused {
            status,
            code,
            message,
            ..
        } => {
            let kind = match status {
                400 => ErrorKind::BadRequest,
                401 => ErrorKind::CertRevoked,
                403 if code == herd_proto::api::codes::ENROL_TOKEN_INVALID => {
                    ErrorKind::EnrolTokenInvalid
                }
                403 => ErrorKind::Forbidden,
                404 => ErrorKind::NotFound,
                409 => ErrorKind::TerminalExists,
                413 => ErrorKind::TooLarge,
                422 if code == herd_proto::api::codes::CSR_INVALID => ErrorKind::CsrInvalid,
                422 => ErrorKind::DocumentInvalid,
                429 => ErrorKind::QuotaExceeded,
                _ => ErrorKind::Unavailable,
            };
            CenterError::new(kind, format!("the center refused: {message}"))
        }
        other => CenterError::new(
            ErrorKind::Unavailable,
            format!("the center cannot be reached to do this; try again later: {other}"),
        ),
    }
}
