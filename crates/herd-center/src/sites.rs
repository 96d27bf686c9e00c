//! Site servers as the center sees them (SPEC §2, §3.4, §3.5): site enrolment tokens, a site's
//! enrolment (its certificate, `urn:herd:site:<id>`, serves its terminals and calls the center),
//! what a site replicates (the catalog's inputs, groups and rules), the site's pull (held until
//! something changes) and the center's push when a site has not pulled after a change, the
//! enrolments and renewals a site relays, and the site's queue applied once per seq.
//!
//! A site acts only as itself (its certificate's SHA-256 is the one stored at its enrolment)
//! and only for the terminals enrolled through it.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use herd_proto::api::{CertificateRenewed, EnrolResponse, EventBatch, TokenCreated};
use herd_proto::site::{
    CatalogInputs, FeedInput, GroupInput, GroupInputs, MAX_RELAY_ITEMS, MAX_WAIT_SECS, RelayAck,
    RelayBatch, RelayBody, RelayedEnrol, RelayedRenewal, RuleInput, SiteChanges, SiteEnrolRequest,
    SiteEnrolResponse, SiteRenewRequest, SiteRenewed, SiteStatus, SiteSummary, SiteTerminal,
    ThreatOwnerInput, VendorApprovalInput,
};
use herd_store::{EnrolError, EnrolTokenRow, NewTerminal, SiteRow};
use tokio::sync::watch;

use crate::auth::{PeerIdentity, new_secret, secret_hash};
use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::{Center, KnownTerminal, rfc3339, unix_now};

/// How long a site's certificate is valid (it renews by enrolling again).
const SITE_CERT_DAYS: u32 = 365;

/// How long a site enrolment token lives at most, and by default.
const SITE_TOKEN_DAYS: i64 = 7;

impl Center {
    /// A site enrolment token (one site, [`SITE_TOKEN_DAYS`]).
    pub async fn new_site_token(&self, label: String) -> CenterResult<TokenCreated> {
        self.refuse_at_site("site enrolment tokens are made by the center")?;
        let now = unix_now();
        let expires_at = now + SITE_TOKEN_DAYS * 86_400;
        let token = new_secret();
        self.store
            .site_token_insert(EnrolTokenRow {
                hash: secret_hash(&token),
                label: if label.is_empty() {
                    "site enrolment".to_owned()
                } else {
                    label
                },
                uses_left: 1,
                created_at: now,
                expires_at,
                reenrol_terminal: None,
            })
            .await?;
        Ok(TokenCreated {
            token,
            expires_at: rfc3339(expires_at),
        })
    }

    /// Enrols a site: a certificate for its key and names, the CA and the TUF root.
    pub async fn enrol_site(&self, request: SiteEnrolRequest) -> CenterResult<SiteEnrolResponse> {
        self.refuse_at_site("sites enrol with the center")?;
        if !herd_tls::is_valid_terminal_id(&request.id) {
            return Err(invalid(format!(
                "the site enrolment: $.id: {:?} is not 1 to 128 characters of [A-Za-z0-9._-]",
                request.id
            )));
        }
        if !request.url.starts_with("https://") || request.url.len() > 2048 {
            return Err(invalid(format!(
                "the site enrolment: $.url: {:?} is not an https:// URL",
                request.url
            )));
        }
        check_server_names("the site enrolment", &request.server_names)?;
        let token_hash = secret_hash(&request.token);
        let now = unix_now();
        // Refused before the CA signs anything (and again, atomically, by the store).
        match self.store.enrol_token_find(&token_hash).await? {
            None => return Err(EnrolError::TokenUnknown.into()),
            Some(token) if token.expires_at <= now => return Err(EnrolError::TokenExpired.into()),
            Some(token) if token.uses_left == 0 => return Err(EnrolError::TokenUsedUp.into()),
            Some(_) => {}
        }
        let issued = self
            .ca()
            .sign_site_csr(
                &request.csr_pem,
                &request.id,
                &request.server_names,
                SITE_CERT_DAYS,
            )
            .map_err(|err| CenterError::new(ErrorKind::CsrInvalid, err.to_string()))?;
        let site = self
            .store
            .site_enrol(
                &token_hash,
                now,
                &request.id,
                &request.url,
                &issued.cert_sha256,
            )
            .await?;
        tracing::info!(site = %site.id, url = %site.url, "site enrolled");
        Ok(SiteEnrolResponse {
            site: site.id,
            certificate_pem: issued.cert_pem,
            ca_pem: self.ca().trust_pem().to_owned(),
            tuf_root: self.tuf_root_text().await?.unwrap_or_default(),
            poll_secs: 30,
        })
    }

    /// Renews the certificate of the site behind `peer`, presented as its current certificate
    /// or the one it last renewed from (whose renewal answer it may have lost): a certificate
    /// for the CSR's new key, valid [`SITE_CERT_DAYS`], after which only it acts as the site.
    /// A refused renewal changes nothing.
    pub async fn renew_site(
        &self,
        peer: Option<&PeerIdentity>,
        request: SiteRenewRequest,
    ) -> CenterResult<SiteRenewed> {
        self.refuse_at_site("a site renews with the center")?;
        let peer = peer.ok_or_else(|| {
            CenterError::new(
                ErrorKind::ClientCertRequired,
                "a site renews with the certificate it has",
            )
        })?;
        let id = peer.site.as_deref().ok_or_else(|| {
            CenterError::forbidden(
                "site renewal is for site servers; this certificate is not a site's",
            )
        })?;
        let id = id.to_owned();
        let revoked = {
            let id = id.clone();
            move || {
                CenterError::new(
                    ErrorKind::CertRevoked,
                    format!(
                        "this certificate is neither site {id:?}'s current one nor the one it \
                         renewed from: enrol the site again with a site enrolment token"
                    ),
                )
            }
        };
        let site = self.store.site(&id).await?.ok_or_else(&revoked)?;
        if site.cert_sha256 != peer.sha256
            && site.previous_cert_sha256.as_deref() != Some(peer.sha256.as_str())
        {
            return Err(revoked());
        }
        check_server_names("the site renewal", &request.server_names)?;
        let issued = self
            .ca()
            .sign_site_csr(&request.csr_pem, &id, &request.server_names, SITE_CERT_DAYS)
            .map_err(|err| CenterError::new(ErrorKind::CsrInvalid, err.to_string()))?;
        // Compared with the certificate presented again: a racing renewal from the same one
        // wins once, the other is refused.
        if !self
            .store
            .site_renew(&id, &peer.sha256, &issued.cert_sha256)
            .await?
        {
            return Err(revoked());
        }
        let (_, not_after) = herd_tls::cert_validity(&issued.cert_pem)
            .map_err(|err| CenterError::internal(format!("the issued certificate: {err}")))?;
        let expires_at = not_after
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        tracing::info!(site = %id, expires_at = %rfc3339(expires_at), "site certificate renewed");
        Ok(SiteRenewed {
            certificate_pem: issued.cert_pem,
            expires_at: rfc3339(expires_at),
        })
    }

    /// The site behind a connection's certificate: refused unless it is a site's current one.
    pub async fn site_caller(&self, peer: Option<&PeerIdentity>) -> CenterResult<String> {
        self.refuse_at_site("a site calls the center, not another site")?;
        let peer = peer.ok_or_else(|| {
            CenterError::new(
                ErrorKind::ClientCertRequired,
                "site endpoints need the certificate issued at site enrolment",
            )
        })?;
        let id = peer.site.as_deref().ok_or_else(|| {
            CenterError::forbidden(
                "site endpoints are for site servers; this certificate is not a site's",
            )
        })?;
        let site = self.store.site(id).await?.ok_or_else(|| {
            CenterError::new(
                ErrorKind::CertRevoked,
                format!("site {id:?} is not enrolled"),
            )
        })?;
        if site.cert_sha256 != peer.sha256 {
            return Err(CenterError::new(
                ErrorKind::CertRevoked,
                format!("this certificate is no longer site {id:?}'s (it enrolled again)"),
            ));
        }
        Ok(site.id)
    }

    /// The site's pull: answers at once when the change token differs from `after`, else
    /// when it moves or `timeout` passes. Records the contact and what the site said of itself.
    pub async fn site_changes(
        &self,
        site: &str,
        after: Option<&str>,
        timeout: Duration,
        status: Option<SiteStatus>,
    ) -> CenterResult<SiteChanges> {
        self.site_alerts(site, status.as_ref());
        let status = status.map(|s| serde_json::to_string(&s).expect("status serialises"));
        self.store
            .site_contact(site, unix_now(), status.as_deref())
            .await?;
        // A renewal an operator asked for is answered at once, not after the hold.
        let renew_certificate = self
            .store
            .site(site)
            .await?
            .is_some_and(|row| row.renew_requested_at.is_some());
        let timeout = timeout.min(Duration::from_secs(MAX_WAIT_SECS));
        let mut changes = self.subscribe_changes();
        if !renew_certificate && after.is_some_and(|after| *changes.borrow_and_update() == after) {
            // The contact is recorded when a pull starts, not when it is answered: whether the
            // answer reached the site is known only when it pulls again, after applying it.
            let _ = tokio::time::timeout(timeout, changes.changed()).await;
        }
        Ok(SiteChanges {
            renew_certificate,
            ..self.site_change_numbers()
        })
    }

    /// Asks site `id` to renew its certificate at its next pull (within its poll interval):
    /// a rotation an operator forces, say after its host was exposed. Its current certificate
    /// keeps working until it has renewed.
    pub async fn request_site_renewal(&self, id: &str) -> CenterResult<()> {
        self.refuse_at_site("sites renew with the center")?;
        if self.store.site_request_renewal(id, unix_now()).await? {
            tracing::info!(site = %id, "site asked to renew its certificate");
            Ok(())
        } else {
            Err(CenterError::new(
                ErrorKind::NotFound,
                format!("no site {id:?} is enrolled"),
            ))
        }
    }

    /// The change token and its parts.
    pub fn site_change_numbers(&self) -> SiteChanges {
        SiteChanges {
            token: self.change_token(),
            catalog_revision: self.catalog().revision,
            groups_revision: self.caches.groups_revision(),
            timestamp_version: self.trust.timestamp_version(),
            renew_certificate: false,
        }
    }

    /// What the site's planner merges: the stored feeds and registry.
    pub async fn site_catalog(&self) -> CenterResult<CatalogInputs> {
        let (revision, feeds, registry) = self.store.catalog_inputs().await?;
        Ok(CatalogInputs {
            revision,
            feeds: feeds
                .into_iter()
                .map(|f| FeedInput {
                    vendor: f.vendor,
                    doc: f.doc,
                    sha256: f.sha256,
                    published_at: f.published_at,
                })
                .collect(),
            threats: registry
                .threats
                .into_iter()
                .map(|t| ThreatOwnerInput {
                    threat: t.threat,
                    vendor: t.vendor,
                    status: t.status.as_str().to_owned(),
                    declared_at: t.declared_at,
                })
                .collect(),
            vendors: registry
                .vendors
                .into_iter()
                .map(|v| VendorApprovalInput {
                    vendor: v.vendor,
                    status: v.status.as_str().to_owned(),
                    first_published_at: v.first_published_at,
                })
                .collect(),
        })
    }

    /// Groups and placement rules, as stored.
    pub async fn site_groups(&self) -> CenterResult<GroupInputs> {
        let revision = self.store.revisions().await?.groups;
        let groups = self.store.groups().await?;
        let rules = self.store.rules().await?;
        Ok(GroupInputs {
            revision,
            groups: groups
                .into_iter()
                .map(|(g, _)| GroupInput {
                    id: g.id,
                    description: g.description,
                    policy: g.policy,
                })
                .collect(),
            rules: rules
                .into_iter()
                .map(|r| RuleInput {
                    group: r.group,
                    rule: r.rule,
                })
                .collect(),
        })
    }

    /// A terminal enrolling through `site`.
    pub async fn relay_enrol(
        &self,
        site: &str,
        relayed: RelayedEnrol,
    ) -> CenterResult<EnrolResponse> {
        let address: IpAddr = relayed.address.parse().map_err(|_| {
            CenterError::bad_request(format!(
                "the relayed enrolment: $.address: {:?} is not an IP address",
                relayed.address
            ))
        })?;
        let result = self
            .enrol_terminal(relayed.request, address, Some(site))
            .await;
        match &result {
            Ok(_) => self.metrics.enrolments.fetch_add(1, Relaxed),
            Err(_) => self.metrics.enrolments_refused.fetch_add(1, Relaxed),
        };
        result
    }

    /// A terminal of `site` renewing its certificate through it.
    pub async fn relay_renew(
        &self,
        site: &str,
        relayed: RelayedRenewal,
    ) -> CenterResult<CertificateRenewed> {
        self.terminal_of_site(site, &relayed.terminal).await?;
        let peer = PeerIdentity {
            sha256: relayed.presented_cert_sha256,
            terminal: Some(relayed.terminal),
            site: None,
            center: false,
        };
        self.renew_certificate(Some(&peer), relayed.request).await
    }

    /// What a site needs to serve terminal `id` (one that failed over to it from another
    /// site, or that it lost): the terminal is the asking site's from now on, so that site
    /// relays for it (a terminal belongs to the site it last came through).
    pub async fn site_terminal(
        &self,
        site: &str,
        id: &str,
        presented_cert_sha256: &str,
    ) -> CenterResult<SiteTerminal> {
        let row = self
            .store
            .terminal(id)
            .await?
            .ok_or_else(|| CenterError::not_found(format!("no terminal {id:?} is enrolled")))?;
        // A site hands over only a terminal that presented it the certificate this center
        // issued (a site cannot claim terminals it never saw). Answered like an unknown
        // terminal, so a site learns nothing about a certificate it guesses.
        if !crate::sessions::same_secret(presented_cert_sha256, &row.cert_sha256) {
            return Err(CenterError::not_found(format!(
                "no terminal {id:?} is enrolled with the certificate the site names \
                 (re-enrolled or renewed since?)"
            )));
        }
        let hardware = serde_json::from_str(&row.hardware).map_err(|err| {
            CenterError::internal(format!(
                "terminal {id:?} has a corrupt hardware record: {err}"
            ))
        })?;
        self.store
            .terminal_adopt(NewTerminal {
                id: row.id.clone(),
                user: row.user.clone(),
                hardware: row.hardware.clone(),
                tz: row.tz.clone(),
                group: row.group.clone(),
                cert_sha256: row.cert_sha256.clone(),
                enrolled_at: row.enrolled_at,
                address: String::new(),
                site: Some(site.to_owned()),
            })
            .await?;
        self.follow_terminal_changes().await?;
        tracing::info!(terminal = id, site, "terminal moved to another site");
        Ok(SiteTerminal {
            id: row.id,
            user: row.user,
            hardware,
            tz: row.tz,
            group: row.group,
            cert_sha256: row.cert_sha256,
            enrolled_at: row.enrolled_at,
        })
    }

    /// Refuses unless `site` has served terminal `id` (enrolled it, or adopted it).
    /// The fault verdicts of terminal `id`, for the site that serves it.
    pub async fn site_fault_verdicts(
        &self,
        site: &str,
        id: &str,
        held: bool,
    ) -> CenterResult<herd_proto::fault::FaultVerdicts> {
        self.terminal_of_site(site, id).await?;
        self.fault_verdicts(id, held).await
    }

    /// The e-mailed consent answer of a terminal `site` serves, for its plan `plan_id`.
    pub async fn site_consent(
        &self,
        site: &str,
        id: &str,
        plan_id: &str,
    ) -> CenterResult<herd_proto::consent::SiteConsent> {
        self.terminal_of_site(site, id).await?;
        Ok(herd_proto::consent::SiteConsent {
            consent: self.consent_answer(id, plan_id).await,
        })
    }

    async fn terminal_of_site(&self, site: &str, id: &str) -> CenterResult<Arc<KnownTerminal>> {
        let serves = self.store.site_serves(site, id).await?;
        self.served_terminal(site, serves, id).await
    }

    /// Terminal `id`, if `site` serves it (`serves`, as the store says; `None`: unknown).
    async fn served_terminal(
        &self,
        site: &str,
        serves: Option<bool>,
        id: &str,
    ) -> CenterResult<Arc<KnownTerminal>> {
        match serves {
            None => Err(CenterError::not_found(format!(
                "no terminal {id:?} is enrolled"
            ))),
            Some(true) => self.known_terminal(id).await,
            Some(false) => Err(CenterError::forbidden(format!(
                "site {site:?} has never served terminal {id:?}; a site acts only for its own terminals"
            ))),
        }
    }

    /// Applies a site's queue batch, each seq once: items at or below the site's applied seq
    /// are acknowledged without being applied again. Items are applied in order; the first
    /// refusal stops the batch (what came before it stays applied and acknowledged).
    pub async fn relay(
        self: &Arc<Center>,
        site: &str,
        batch: RelayBatch,
    ) -> CenterResult<RelayAck> {
        if batch.items.len() > MAX_RELAY_ITEMS {
            return Err(CenterError::new(
                ErrorKind::TooLarge,
                format!(
                    "the relay batch has {} items; send at most {MAX_RELAY_ITEMS}",
                    batch.items.len()
                ),
            ));
        }
        let mut previous = 0;
        for (i, item) in batch.items.iter().enumerate() {
            if item.seq <= previous {
                return Err(CenterError::new(
                    ErrorKind::DocumentInvalid,
                    format!(
                        "the relay batch: $.items[{i}].seq: {} must be greater than the previous item's ({previous})",
                        item.seq
                    ),
                ));
            }
            previous = item.seq;
        }
        let row = self
            .store
            .site(site)
            .await?
            .ok_or_else(|| CenterError::not_found(format!("site {site:?} is not enrolled")))?;
        let mut applied_through = row.relay_applied;
        // Which of the batch's terminals this site may relay for, read once for the batch.
        let mut named: Vec<&str> = batch.items.iter().map(|i| i.terminal.as_str()).collect();
        named.sort_unstable();
        named.dedup();
        let serves = Arc::new(self.store.site_serves_many(site, &named).await?);
        let (mut applied, mut duplicates) = (0u64, 0u64);
        let mut outcome = Ok(());
        let mut items = batch.items.into_iter().peekable();
        while let Some(item) = items.next() {
            if item.seq <= applied_through {
                duplicates += 1;
                continue;
            }
            // Consecutive items of distinct terminals are applied together, so the group-commit
            // writers store their check-ins and event batches a transaction at a time; a
            // terminal's own items stay in order (its next item starts the next run).
            let mut run = vec![item];
            let mut terminals: HashSet<String> = HashSet::from([run[0].terminal.clone()]);
            while let Some(next) = items
                .next_if(|next| next.seq > applied_through && !terminals.contains(&next.terminal))
            {
                terminals.insert(next.terminal.clone());
                run.push(next);
            }
            let last = run.last().map_or(applied_through, |item| item.seq);
            let count = run.len() as u64;
            let mut tasks = tokio::task::JoinSet::new();
            for item in run {
                let center = self.clone();
                let site = site.to_owned();
                let serves = serves.clone();
                tasks.spawn(async move {
                    let result = center
                        .apply_relayed(
                            &site,
                            serves.get(&item.terminal).copied(),
                            &item.terminal,
                            item.body,
                        )
                        .await;
                    (item.terminal, item.seq, result)
                });
            }
            let mut failed = None;
            while let Some(joined) = tasks.join_next().await {
                let (terminal, seq, result) = joined.map_err(|err| {
                    CenterError::internal(format!("a relayed item's task failed: {err}"))
                })?;
                match result {
                    Ok(()) => {}
                    // A terminal deleted at the center since: its reports have nowhere to go.
                    Err(err) if err.kind == ErrorKind::NotFound => {
                        tracing::warn!(site, %terminal, seq, %err, "relayed item dropped");
                    }
                    Err(err) => failed = Some(err),
                }
            }
            if let Some(err) = failed {
                // Nothing of this run is acknowledged; what of it was applied is applied again
                // when the site sends it again (a check-in is state, events are deduplicated).
                outcome = Err(err);
                break;
            }
            applied += count;
            applied_through = last;
        }
        if applied_through > row.relay_applied {
            self.store.site_relay_advance(site, applied_through).await?;
        }
        self.metrics.sites.relayed_items.fetch_add(applied, Relaxed);
        self.metrics
            .sites
            .relayed_duplicates
            .fetch_add(duplicates, Relaxed);
        match outcome {
            Ok(()) => Ok(RelayAck {
                acked_through: applied_through,
                applied,
                duplicates,
            }),
            Err(err) if applied > 0 || duplicates > 0 => {
                tracing::warn!(site, %err, "a relayed item was refused; the rest waits");
                Ok(RelayAck {
                    acked_through: applied_through,
                    applied,
                    duplicates,
                })
            }
            Err(err) => Err(err),
        }
    }

    /// Applies one relayed item of `terminal`, which `site` serves if `serves` says so (`None`:
    /// no such terminal).
    async fn apply_relayed(
        &self,
        site: &str,
        serves: Option<bool>,
        terminal: &str,
        body: RelayBody,
    ) -> CenterResult<()> {
        let known = self.served_terminal(site, serves, terminal).await?;
        match body {
            RelayBody::Checkin {
                at,
                address,
                request,
            } => {
                self.record_relayed_checkin(&known, *request, address, at)
                    .await
            }
            RelayBody::Events { batch } => self.append_relayed_events(&known, batch).await,
        }
    }

    async fn append_relayed_events(
        &self,
        known: &KnownTerminal,
        batch: EventBatch,
    ) -> CenterResult<()> {
        match self.append_events(known, batch).await {
            Ok(_) => Ok(()),
            // The site keeps the batch and sends it again later.
            Err(err) => Err(err),
        }
    }

    /// Every site with what the center knows of it.
    pub async fn sites(&self) -> CenterResult<Vec<SiteSummary>> {
        let now = unix_now();
        let late_after = self.config.site_push_after.as_secs() as i64;
        Ok(self
            .store
            .sites()
            .await?
            .into_iter()
            .map(|row| {
                let state = site_state(&row, now, late_after);
                SiteSummary {
                    status: row
                        .status
                        .as_deref()
                        .and_then(|s| serde_json::from_str(s).ok()),
                    id: row.id,
                    url: row.url,
                    enrolled_at: rfc3339(row.enrolled_at),
                    last_contact: row.last_contact.map(rfc3339),
                    relay_applied: row.relay_applied,
                    terminals: row.terminals.unwrap_or_default(),
                    state: state.to_owned(),
                }
            })
            .collect())
    }

    /// Refuses what only a center does, on a site server.
    pub(crate) fn refuse_at_site(&self, what: &str) -> CenterResult<()> {
        if self.config.site.is_some() {
            return Err(CenterError::new(
                ErrorKind::WrongRole,
                format!("this is a site server: {what}"),
            ));
        }
        Ok(())
    }

    /// Pushes to the sites that have not pulled since a change for `site_push_after`: the
    /// seed's fallback from pull to push (S110–S111). Runs until `shutdown`.
    pub(crate) async fn push_to_late_sites(self: Arc<Center>, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        let mut changed_at: Option<i64> = None;
        let mut changes = self.subscribe_changes();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                result = changes.changed() => {
                    if result.is_ok() {
                        changed_at = Some(unix_now());
                    }
                    continue;
                }
                _ = shutdown.changed() => return,
            }
            let Some(since) = changed_at else { continue };
            let now = unix_now();
            let late_after = self.config.site_push_after.as_secs() as i64;
            if now - since < late_after {
                continue;
            }
            let sites = match self.store.sites().await {
                Ok(sites) => sites,
                Err(err) => {
                    tracing::warn!(%err, "cannot read the sites");
                    continue;
                }
            };
            let mut all_caught_up = true;
            for site in sites {
                // Strictly after: contacts are in whole seconds, and a pull started in the
                // second of the change may have started before it (a needless push costs the
                // site one pull).
                let pulled_since = site.last_contact.is_some_and(|at| at > since);
                if pulled_since {
                    continue;
                }
                all_caught_up = false;
                // One push per change, then one per interval while the site stays silent.
                if site.pushed_at.is_some_and(|at| now - at < late_after) {
                    continue;
                }
                let center = self.clone();
                tokio::spawn(async move { center.push_to_site(site).await });
            }
            if all_caught_up {
                changed_at = None;
            }
        }
    }

    async fn push_to_site(self: Arc<Center>, site: SiteRow) {
        let now = unix_now();
        if let Err(err) = self.store.site_pushed(&site.id, now).await {
            tracing::warn!(%err, "cannot record a push");
        }
        let changes = self.site_change_numbers();
        let client = match self.center_client(&site.url) {
            Ok(client) => client,
            Err(err) => {
                tracing::warn!(site = %site.id, %err, "cannot push to the site");
                return;
            }
        };
        let result = tokio::task::spawn_blocking(move || client.site_notify(&changes)).await;
        match result {
            Ok(Ok(())) => {
                self.metrics.sites.pushes.fetch_add(1, Relaxed);
                tracing::info!(site = %site.id, "site had not pulled since a change: pushed to it");
            }
            Ok(Err(err)) => {
                self.metrics.sites.pushes_failed.fetch_add(1, Relaxed);
                self.alerts.raise_condition(
                    &format!("site_unreachable:{}", site.id),
                    crate::alerts::AlertEvent::new(
                        crate::alerts::AlertKind::SiteUnreachable,
                        site.id.clone(),
                        format!(
                            "site {} at {} has not pulled since a change and did not answer a push: {err}",
                            site.id, site.url
                        ),
                    ),
                );
                tracing::warn!(site = %site.id, url = %site.url, %err, "site unreachable: it neither pulled nor answered a push");
            }
            Err(err) => tracing::warn!(%err, "the push task failed"),
        }
    }

    /// A client presenting the center's own certificate to a site at `url`.
    fn center_client(&self, url: &str) -> anyhow::Result<herd_client::Client> {
        let identity = self.center_client_identity()?;
        Ok(herd_client::Client::new(
            url,
            self.ca().trust_pem(),
            Some(&identity),
        )?)
    }
}

/// `ok`, `late` (has not called for a few poll intervals) or `unreachable` (nor for long).
fn site_state(row: &SiteRow, now: i64, late_after: i64) -> &'static str {
    match row.last_contact {
        Some(at) if now - at <= late_after => "ok",
        Some(at) if now - at <= late_after * 10 => "late",
        _ => "unreachable",
    }
}

/// At most 32 names, each a DNS name or an IP address; `what` names the document.
fn check_server_names(what: &str, names: &[String]) -> CenterResult<()> {
    if names.len() > 32 {
        return Err(invalid(format!("{what}: $.server_names: at most 32 names")));
    }
    for (i, name) in names.iter().enumerate() {
        if !herd_tls::is_valid_server_name(name) {
            return Err(invalid(format!(
                "{what}: $.server_names[{i}]: {name:?} is neither a DNS name nor an IP address"
            )));
        }
    }
    Ok(())
}

/// Content the schema cannot express, refused as such (422), as API v1 answers elsewhere.
fn invalid(message: impl Into<String>) -> CenterError {
    CenterError::new(ErrorKind::DocumentInvalid, message.into())
}
