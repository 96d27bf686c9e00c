//! Rollout rings at the center (SPEC §3.4, §3.3.5): every new release of a product reaches the
//! fleet ring by ring (canary, early, broad: by a stable hash of terminal and release), is
//! promoted when its ring soaked without crossing the error threshold, and is halted and
//! reverted when failed installs or faults attributed to it cross it.
//!
//! The state lives in the store (`rollouts`, migration 0013) and every center process drives it
//! with the same task ([`Center::follow_rollouts`]): it starts a rollout for each release the
//! catalog gained, asks the pure policy (`herd_planner::rings::Policy`) what each rolling one
//! calls for, stores a transition only from the version it read (so two processes never both
//! promote or halt), and gives the planner the resulting gates. A release no row describes yet
//! is gated as if it were in its first ring, so a publish is never offered beyond the canary
//! ring in the instant before the task has seen it.
//!
//! Counting: plan reports feed successes and failed installs ([`Center::count_plan_reports`]),
//! and fault intake calls [`Center::on_fault`]; terminals planned the release that stopped
//! checking in for [`SILENT_AFTER_INTERVALS`] intervals count as silent.
//!
//! A program release (a catalog product of kind `program`) is never planned: it reaches
//! terminals as a replacement, through fault verdicts (`faults.rs`). Its rollout is the same
//! row, keyed by the same `vendor/program/version` — the release is what may be bad, whichever
//! fault bucket asked for it, and a revert withdraws its targets like any release's — and its
//! rings decide which faulting terminals are sent it (the others are `held`). It rolls out in
//! rings even as its product's first release: what it falls back to is the program it
//! replaces. Its successes and failed installs are the replacements' outcomes
//! ([`Center::count_replaced`]), its faults those reports of the program itself.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use herd_core::{Catalog, ReleaseIdx};
use herd_planner::rings::{
    Counts, FULL_REACH, Gate, Phase, Policy, RingGates, RolloutState, Step, Thresholds,
    parse_rings, release_key,
};
use herd_proto::api::{PlanReport, ReportOutcome, RolloutSummary, SelfProtection, rollout_actions};
use herd_store::{RolloutCounts, RolloutRow, StoreError};
use tokio::sync::watch;

use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::{Center, rfc3339, unix_now};

/// The rings and thresholds rollouts follow (`rollout_*` keys); `None` in the configuration
/// when `rollout_rings` is empty: every release is offered to every terminal at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolloutSettings {
    pub policy: Policy,
    /// How often each process looks at the rollouts.
    pub check_every: Duration,
}

impl RolloutSettings {
    /// From the configuration's keys; `rings` empty means no rollouts.
    pub fn from_keys(
        rings: &str,
        max_bad: Option<u64>,
        max_bad_percent: Option<u64>,
        min_reports: Option<u64>,
        check_secs: Option<u64>,
    ) -> anyhow::Result<Option<RolloutSettings>> {
        let rings = parse_rings(rings).map_err(|err| anyhow::anyhow!("rollout_rings: {err}"))?;
        if rings.is_empty() {
            return Ok(None);
        }
        let max_bad = max_bad.unwrap_or(5);
        if max_bad == 0 {
            bail!("rollout_max_bad: must be at least 1");
        }
        let max_bad_percent = max_bad_percent.unwrap_or(20);
        if max_bad_percent > 100 {
            bail!("rollout_max_bad_percent: {max_bad_percent} is over 100");
        }
        let check_secs = check_secs.unwrap_or(2);
        if check_secs == 0 {
            bail!("rollout_check_secs: must be at least 1");
        }
        Ok(Some(RolloutSettings {
            policy: Policy {
                rings,
                thresholds: Thresholds {
                    max_bad,
                    max_bad_percent,
                    min_reports: min_reports.unwrap_or(20),
                },
            },
            check_every: Duration::from_secs(check_secs),
        }))
    }
}

/// A terminal planned a release under rollout that has not checked in for this many check-in
/// intervals counts as silent (it may have crashed for good on the release).
pub const SILENT_AFTER_INTERVALS: u64 = 3;

/// What a process knows of the rollouts: the rows it read last, and a generation that moves
/// whenever the gates it plans with change (part of the change token, so a halt wakes the
/// terminals waiting on `/v1/wait`).
#[derive(Debug, Default)]
pub(crate) struct RolloutCache {
    rows: Mutex<Vec<RolloutRow>>,
    generation: AtomicU64,
    /// On a site: the center's rings, replicated with the rollouts (`site_rollouts`).
    site_policy: Mutex<Option<Policy>>,
    /// The gates this process last decided the held faults again under (`None`: not yet, or
    /// a fault was held since): the held faults are read again only when they changed.
    pub(crate) held_decided_under: Mutex<Option<RingGates>>,
}

impl RolloutCache {
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Relaxed)
    }
}

/// The state the policy reads from a stored row (an unknown phase reads as paused: held, not
/// moved, until an operator says).
fn state_of(row: &RolloutRow) -> RolloutState {
    RolloutState {
        phase: Phase::parse(&row.phase).unwrap_or(Phase::Paused),
        ring: row.ring as usize,
        ring_started: row.ring_started,
        counts: Counts {
            succeeded: row.counts.succeeded,
            failed: row.counts.failed,
            faults: row.counts.faults,
            silent: row.counts.silent,
        },
    }
}

/// Whether the release rolls out in rings once rollouts are recorded: a vaccine release that
/// has an earlier one of its product in the catalog (a product's first release has nothing
/// to fall back to and no installed base to protect), and every program release (sent as a
/// replacement onto terminals whose program faults: the fallback is that program, kept while
/// the replacement is held).
fn rolls_out(catalog: &Catalog, release: ReleaseIdx) -> bool {
    let r = catalog.release(release);
    catalog.product(r.product).kind == herd_core::ProductKind::Program
        || catalog
            .product_releases(r.product)
            .first()
            .is_some_and(|first| first.seq < r.seq)
}

/// The planner's gates for `catalog` under the stored rows. Releases without a row are gated
/// in the first ring (a rollout not started yet), except a product's first release, and
/// except before any rollout was ever recorded (the releases a center had when rollouts were
/// switched on are not rolled out again: the task records them as complete).
pub(crate) fn gates_for(catalog: &Catalog, rows: &[RolloutRow], policy: &Policy) -> RingGates {
    let by_key: HashMap<&str, &RolloutRow> = rows.iter().map(|r| (r.release.as_str(), r)).collect();
    let first_ring = policy.rings.first().map_or(FULL_REACH, |r| r.reach);
    let first_groups = policy
        .rings
        .first()
        .map(|r| r.groups.clone())
        .unwrap_or_default();
    let mut gates = Vec::new();
    for i in 0..catalog.releases.len() {
        let release = ReleaseIdx(i as u32);
        let key = release_key(catalog, release);
        let (offer, groups) = match by_key.get(key.as_str()) {
            Some(row) => (policy.offer(&state_of(row)), policy.groups(&state_of(row))),
            None if rows.is_empty() || !rolls_out(catalog, release) => (None, Vec::new()),
            None => (
                Some(herd_planner::rings::Offer::Ring { reach: first_ring }),
                first_groups.clone(),
            ),
        };
        if let Some(offer) = offer {
            gates.push(Gate {
                release,
                key,
                offer,
                groups,
            });
        }
    }
    RingGates::new(gates)
}

impl Center {
    /// The rollout settings, when rings are configured.
    fn rollout_settings(&self) -> Option<&RolloutSettings> {
        self.config.rollouts.as_ref()
    }

    /// The policy this process plans with: its own `rollout_rings`, or on a site the
    /// center's, replicated.
    fn gating_policy(&self) -> Option<Policy> {
        match self.rollout_settings() {
            Some(settings) => Some(settings.policy.clone()),
            None => self
                .rollouts
                .site_policy
                .lock()
                .expect("site policy")
                .clone(),
        }
    }

    /// Gives `snapshot`'s planners the gates of the rows this process read last (called for
    /// every snapshot before it is installed).
    pub(crate) fn gate_snapshot(&self, snapshot: &crate::catalog::CatalogSnapshot) {
        let Some(policy) = self.gating_policy() else {
            return;
        };
        let rows = self.rollouts.rows.lock().expect("rollout rows").clone();
        let gates = gates_for(&snapshot.catalog, &rows, &policy);
        snapshot.set_gates(Arc::new(gates));
    }

    /// What a site needs to plan under the same gates (`GET /v1/sites/rollouts`).
    pub async fn site_rollouts(&self) -> CenterResult<herd_proto::site::SiteRollouts> {
        let Some(settings) = self.rollout_settings() else {
            return Ok(herd_proto::site::SiteRollouts::default());
        };
        let rows = self.store.rollouts().await?;
        Ok(herd_proto::site::SiteRollouts {
            rings: settings
                .policy
                .rings
                .iter()
                .map(|ring| herd_proto::site::SiteRing {
                    name: ring.name.clone(),
                    reach_bp: ring.reach,
                    groups: ring.groups.clone(),
                })
                .collect(),
            rollouts: rows
                .iter()
                .map(|row| herd_proto::site::SiteRollout {
                    release: row.release.clone(),
                    phase: row.phase.clone(),
                    ring: row.ring,
                })
                .collect(),
        })
    }

    /// Where a site keeps the center's rollouts, for a restart without the center.
    fn site_rollouts_file(&self) -> std::path::PathBuf {
        self.config.data_dir.join("site").join(SITE_ROLLOUTS_FILE)
    }

    /// On a site: plans under the center's rings and rollouts from now on (kept on disk first,
    /// so a restart before the next pull plans the same). Refuses rings it cannot use.
    pub(crate) fn install_site_rollouts(
        &self,
        rollouts: &herd_proto::site::SiteRollouts,
    ) -> anyhow::Result<()> {
        let policy = site_policy(rollouts)?;
        let bytes = serde_json::to_vec(rollouts)?;
        let path = self.site_rollouts_file();
        if std::fs::read(&path).ok().as_deref() != Some(bytes.as_slice()) {
            herd_fs::write_atomic(&path, &bytes, 0o600)
                .map_err(|err| anyhow::anyhow!("cannot keep the center's rollouts: {err}"))?;
        }
        let rows = rollouts.rollouts.iter().map(site_row).collect();
        let off = policy.is_none();
        *self.rollouts.site_policy.lock().expect("site policy") = policy;
        if off {
            // The center rolls releases out at once: nothing gated any more.
            *self.rollouts.rows.lock().expect("rollout rows") = Vec::new();
            let snapshot = self.catalog();
            if !snapshot.gates().is_empty() {
                snapshot.set_gates(Arc::new(RingGates::default()));
                self.rollouts.generation.fetch_add(1, Relaxed);
                self.announce_changes();
            }
            return Ok(());
        }
        self.install_rollout_rows(rows);
        Ok(())
    }

    /// Reads the stored rollouts into this process (at start, before anything is planned).
    pub(crate) async fn load_rollouts(&self) -> Result<(), StoreError> {
        if self.site().is_some() && self.rollout_settings().is_none() {
            // A site plans under what it last replicated from the center.
            let kept = std::fs::read(self.site_rollouts_file())
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok());
            if let Some(rollouts) = kept
                && let Err(err) = self.install_site_rollouts(&rollouts)
            {
                tracing::warn!(err = %format!("{err:#}"), "cannot plan under the rollouts kept");
            }
            return Ok(());
        }
        if self.rollout_settings().is_none() {
            // Faults held while rings were configured would wait for a rollout nobody drives
            // any more: with rings off, their replacements reach everyone.
            if self.site().is_none() {
                self.redecide_held(&[]).await;
            }
            return Ok(());
        }
        let rows = self.store.rollouts().await?;
        *self.rollouts.rows.lock().expect("rollout rows") = rows;
        self.gate_snapshot(&self.catalog());
        Ok(())
    }

    /// The rollout task of every center process: each `check_every`, [`Center::rollout_tick`].
    pub(crate) async fn follow_rollouts(self: Arc<Center>, mut shutdown: watch::Receiver<bool>) {
        let Some(every) = self.rollout_settings().map(|s| s.check_every) else {
            return;
        };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if let Err(err) = self.rollout_tick(unix_now()).await {
                tracing::error!(%err, "cannot drive the rollouts");
            }
        }
    }

    /// Starts rollouts for new releases, promotes, completes or halts the rolling ones as the
    /// policy says at `now`, and plans with the result. Returns how many transitions this
    /// process stored.
    pub async fn rollout_tick(&self, now: i64) -> Result<usize, StoreError> {
        let Some(settings) = self.rollout_settings() else {
            return Ok(0);
        };
        let policy = &settings.policy;
        let snapshot = self.catalog();
        let catalog = &*snapshot.catalog;
        let mut rows = self.store.rollouts().await?;
        let mut changed = 0;
        let known: std::collections::HashSet<String> =
            rows.iter().map(|r| r.release.clone()).collect();
        let first_pass = rows.is_empty();
        for i in 0..catalog.releases.len() {
            let idx = ReleaseIdx(i as u32);
            let key = release_key(catalog, idx);
            if known.contains(&key) {
                continue;
            }
            let release = catalog.release(idx);
            let gated = !first_pass && rolls_out(catalog, idx);
            let row = RolloutRow {
                release: key.clone(),
                product: catalog.product(release.product).id.clone(),
                version: release.version.clone(),
                seq: release.seq,
                phase: if gated {
                    Phase::Rolling
                } else {
                    Phase::Complete
                }
                .as_str()
                .to_owned(),
                ring: if gated {
                    0
                } else {
                    policy.rings.len().saturating_sub(1) as u32
                },
                ring_started: now,
                started_at: now,
                updated_at: now,
                reason: (!gated).then(|| {
                    if first_pass {
                        "released before rollouts were recorded".to_owned()
                    } else {
                        "the product's first release: nothing to fall back to".to_owned()
                    }
                }),
                counts: RolloutCounts::default(),
                row_version: 1,
            };
            if self.store.rollout_insert(&row).await? {
                changed += 1;
                if gated {
                    tracing::info!(release = %key, ring = %policy.rings[0].name, "rollout started");
                }
            }
        }
        if changed > 0 {
            rows = self.store.rollouts().await?;
        }
        let silent = if rows.iter().any(|r| r.phase == Phase::Rolling.as_str()) {
            self.silent_by_release(now).await?
        } else {
            HashMap::new()
        };
        let mut transitions = 0;
        for row in &rows {
            let mut state = state_of(row);
            // Terminals gone silent since they were planned the release: counted from the
            // store each time (a terminal that comes back stops counting), recorded as the
            // highest seen.
            if state.phase == Phase::Rolling
                && let Some(&now_silent) = silent.get(row.release.as_str())
            {
                state.counts.silent = state.counts.silent.max(now_silent);
                if now_silent > row.counts.silent {
                    let add = RolloutCounts {
                        silent: now_silent - row.counts.silent,
                        ..RolloutCounts::default()
                    };
                    self.store.rollout_count(&row.release, add).await?;
                }
            }
            let Some(step) = policy.step(&state, now) else {
                continue;
            };
            let mut next = row.clone();
            next.updated_at = now;
            match &step {
                Step::Promote { ring } => {
                    next.ring = *ring as u32;
                    next.ring_started = now;
                }
                Step::Complete => next.phase = Phase::Complete.as_str().to_owned(),
                Step::Halt { reason } => {
                    next.phase = Phase::Reverted.as_str().to_owned();
                    next.reason = Some(reason.clone());
                }
            }
            if self.store.rollout_transition(&next, false).await? {
                transitions += 1;
                match &step {
                    Step::Halt { reason } => {
                        tracing::warn!(
                            release = %row.release, ring = %ring_name(policy, row.ring), %reason,
                            "rollout halted and reverted"
                        );
                        self.alerts.raise(crate::alerts::AlertEvent::new(
                            crate::alerts::AlertKind::RolloutHalted,
                            row.release.clone(),
                            format!(
                                "halted in ring {} and reverted: {reason}",
                                ring_name(policy, row.ring)
                            ),
                        ));
                    }
                    _ => tracing::info!(release = %row.release, step = ?step, "rollout moved"),
                }
            }
        }
        if transitions > 0 {
            rows = self.store.rollouts().await?;
        }
        // Before the gates are installed and the terminals woken: a terminal woken by a
        // promotion then finds the verdict its ring opened for. Every round, not only after
        // this process's transitions: another process may have stored them.
        self.redecide_held(&rows).await;
        self.install_rollout_rows(rows);
        // A halt (or a resume) changes what the signed metadata lists.
        self.sign_if_due().await;
        Ok(changed + transitions)
    }

    /// Per release key, the terminals whose current plan installs it and that have not
    /// checked in for [`SILENT_AFTER_INTERVALS`] check-in intervals since: they may have
    /// received it and crashed for good. Reads the terminals whose plan is an update or a
    /// switch (few outside a rollout's rings), page by page.
    async fn silent_by_release(&self, now: i64) -> Result<HashMap<String, u64>, StoreError> {
        let before =
            now.saturating_sub((SILENT_AFTER_INTERVALS * self.config.checkin_interval_secs) as i64);
        let snapshot = self.catalog();
        let mut silent: HashMap<String, u64> = HashMap::new();
        for action in [
            herd_proto::plan::Action::Update,
            herd_proto::plan::Action::Switch,
        ] {
            let mut after = None;
            loop {
                let page = self
                    .store
                    .terminals(&herd_store::TerminalQuery {
                        group: None,
                        action: Some(action.as_str().to_owned()),
                        after: after.clone(),
                        limit: 1000,
                        search: None,
                    })
                    .await?;
                for row in &page {
                    if row.planned_at.is_none_or(|at| at >= before)
                        || row.last_checkin.is_none_or(|at| at >= before)
                    {
                        continue;
                    }
                    let Some(to) = row
                        .plan
                        .as_deref()
                        .and_then(|doc| serde_json::from_str::<herd_proto::plan::PlanDoc>(doc).ok())
                        .and_then(|plan| plan.to)
                    else {
                        continue;
                    };
                    if let Some(key) = key_of(&snapshot.catalog, &to.product, &to.version) {
                        *silent.entry(key).or_default() += 1;
                    }
                }
                match page.last() {
                    Some(last) if page.len() == 1000 => after = Some(last.id.clone()),
                    _ => break,
                }
            }
        }
        Ok(silent)
    }

    /// The releases this process holds withdrawn (their rollout reverted), sorted: a sign round
    /// takes their targets out of the signed metadata ([`withdraw_targets`]).
    pub(crate) fn withdrawn_releases(&self) -> Vec<String> {
        if self.rollout_settings().is_none() {
            return Vec::new();
        }
        let rows = self.rollouts.rows.lock().expect("rollout rows");
        let mut keys: Vec<String> = rows
            .iter()
            .filter(|row| row.phase == Phase::Reverted.as_str())
            .map(|row| row.release.clone())
            .collect();
        keys.sort();
        keys
    }

    /// The gates `rows` give the current catalog (`None`: rings are off), for deciding which
    /// faulting terminals a replacement reaches.
    pub(crate) fn replacement_gates(&self, rows: &[RolloutRow]) -> Option<RingGates> {
        let policy = self.gating_policy()?;
        Some(gates_for(&self.catalog().catalog, rows, &policy))
    }

    /// Plans with these rows from now on; wakes the waiting terminals if the gates changed.
    fn install_rollout_rows(&self, rows: Vec<RolloutRow>) {
        let Some(policy) = self.gating_policy() else {
            return;
        };
        let snapshot = self.catalog();
        let gates = gates_for(&snapshot.catalog, &rows, &policy);
        *self.rollouts.rows.lock().expect("rollout rows") = rows;
        if *snapshot.gates() != gates {
            snapshot.set_gates(Arc::new(gates));
            self.rollouts.generation.fetch_add(1, Relaxed);
            self.announce_changes();
        }
    }

    /// Every rollout, oldest first.
    pub async fn rollout_summaries(&self) -> CenterResult<Vec<RolloutSummary>> {
        let policy = self.rollout_policy()?;
        let rows = self.store.rollouts().await?;
        let catalog = self.catalog();
        Ok(rows
            .iter()
            .map(|row| summary(policy, &catalog.catalog, row))
            .collect())
    }

    /// One release's rollout.
    pub async fn rollout_summary(&self, release: &str) -> CenterResult<RolloutSummary> {
        let policy = self.rollout_policy()?;
        let rows = self.store.rollouts().await?;
        rows.iter()
            .find(|r| r.release == release)
            .map(|row| summary(policy, &self.catalog().catalog, row))
            .ok_or_else(|| no_rollout(release))
    }

    fn rollout_policy(&self) -> CenterResult<&Policy> {
        self.rollout_settings().map(|s| &s.policy).ok_or_else(|| {
            CenterError::new(
                ErrorKind::Conflict,
                "this center rolls releases out to every terminal at once: set rollout_rings \
                     in its configuration to roll them out in rings",
            )
        })
    }

    /// An operator's `pause`, `resume`, `promote` or `revert` of `release`'s rollout, stored
    /// from the version read and applied to this process's plans at once.
    pub async fn rollout_act(&self, release: &str, action: &str) -> CenterResult<RolloutSummary> {
        let policy = self.rollout_policy()?;
        let rows = self.store.rollouts().await?;
        let row = rows
            .iter()
            .find(|r| r.release == release)
            .ok_or_else(|| no_rollout(release))?;
        let now = unix_now();
        let phase = Phase::parse(&row.phase).unwrap_or(Phase::Paused);
        let mut next = row.clone();
        next.updated_at = now;
        let refused = |why: &str| {
            Err(CenterError::new(
                ErrorKind::Conflict,
                format!(
                    "cannot {action} the rollout of {release}: it is {}{why}",
                    row.phase
                ),
            ))
        };
        let mut reset = false;
        match action {
            rollout_actions::PAUSE => {
                if phase != Phase::Rolling {
                    return refused("; only a rolling rollout pauses");
                }
                next.phase = Phase::Paused.as_str().to_owned();
                next.reason = Some("paused by an operator".to_owned());
            }
            rollout_actions::RESUME => {
                if !matches!(phase, Phase::Paused | Phase::Reverted) {
                    return refused("; only a paused or reverted rollout resumes");
                }
                next.phase = Phase::Rolling.as_str().to_owned();
                next.ring_started = now;
                next.reason = Some("resumed by an operator".to_owned());
                reset = true;
            }
            rollout_actions::PROMOTE => {
                if !matches!(phase, Phase::Rolling | Phase::Paused) {
                    return refused("; only a rolling or paused rollout is promoted");
                }
                if (row.ring as usize) + 1 < policy.rings.len() {
                    next.ring += 1;
                    next.ring_started = now;
                    next.phase = Phase::Rolling.as_str().to_owned();
                } else {
                    next.phase = Phase::Complete.as_str().to_owned();
                }
                next.reason = Some("promoted by an operator".to_owned());
            }
            rollout_actions::REVERT => {
                if phase == Phase::Reverted {
                    return refused("");
                }
                next.phase = Phase::Reverted.as_str().to_owned();
                next.reason = Some("reverted by an operator".to_owned());
            }
            other => {
                return Err(CenterError::bad_request(format!(
                    "{other:?} is not a rollout action: use one of {}",
                    rollout_actions::ALL.join(", ")
                )));
            }
        }
        if !self.store.rollout_transition(&next, reset).await? {
            return Err(CenterError::new(
                ErrorKind::Conflict,
                format!("the rollout of {release} changed meanwhile; look again and retry"),
            ));
        }
        tracing::info!(%release, %action, "rollout changed by an operator");
        let rows = self.store.rollouts().await?;
        self.redecide_held(&rows).await;
        self.install_rollout_rows(rows.clone());
        self.sign_if_due().await;
        rows.iter()
            .find(|r| r.release == release)
            .map(|row| summary(policy, &self.catalog().catalog, row))
            .ok_or_else(|| no_rollout(release))
    }

    /// Counts a terminal's newly stored plan reports for the rollouts of the releases they
    /// concern: a success for the release now installed, a failed install (rolled back) for
    /// the release its plan was to install.
    pub(crate) async fn count_plan_reports(&self, terminal: &str, reports: &[PlanReport]) {
        if self.rollout_settings().is_none() || reports.is_empty() {
            return;
        }
        let snapshot = self.catalog();
        for report in reports {
            let (release, add) = match report.outcome {
                ReportOutcome::Succeeded => {
                    let Some(installed) = &report.installed else {
                        continue;
                    };
                    let Some(key) =
                        key_of(&snapshot.catalog, &installed.product, &installed.version)
                    else {
                        continue;
                    };
                    (
                        key,
                        RolloutCounts {
                            succeeded: 1,
                            ..RolloutCounts::default()
                        },
                    )
                }
                ReportOutcome::RolledBack => {
                    let Some(key) = self.planned_release(terminal, &report.plan_id).await else {
                        continue;
                    };
                    (
                        key,
                        RolloutCounts {
                            failed: 1,
                            ..RolloutCounts::default()
                        },
                    )
                }
                ReportOutcome::Declined | ReportOutcome::Deferred => continue,
            };
            if let Err(err) = self.count_for_rollout(&release, add).await {
                tracing::warn!(%err, %release, "cannot count a plan report for its rollout");
            }
        }
    }

    /// Counts agents' self-protections (`rollout.self_protected`: the agent undid a release it
    /// had activated because it kept failing) as failed installs of the release's rollout.
    pub(crate) async fn count_self_protections(
        &self,
        terminal: &str,
        protections: &[SelfProtection],
    ) {
        if self.rollout_settings().is_none() || protections.is_empty() {
            return;
        }
        let snapshot = self.catalog();
        for protection in protections {
            let Some(key) = key_of(&snapshot.catalog, &protection.product, &protection.version)
            else {
                continue;
            };
            tracing::warn!(
                %terminal, release = %key, faults = protection.faults,
                restored = %protection.restored_version, "an agent undid a release by itself"
            );
            let add = RolloutCounts {
                failed: 1,
                ..RolloutCounts::default()
            };
            if let Err(err) = self.count_for_rollout(&key, add).await {
                tracing::warn!(%err, release = %key, "cannot count a self-protection for its rollout");
            }
        }
    }

    /// The hook of fault intake (SPEC §3.3.5): a fault on `terminal` is attributed to the
    /// release it runs while that release is still rolling out (or paused), and a fault of a
    /// program release (the `report` names its program, vendor and version: a replacement
    /// the terminal took, or that program installed otherwise) to that release's rollout;
    /// each counts towards halting it. Returns the releases it was attributed to.
    pub async fn on_fault(
        &self,
        terminal: &str,
        report: Option<&herd_proto::fault::FaultReport>,
        at: i64,
    ) -> CenterResult<Vec<String>> {
        if self.rollout_settings().is_none() {
            return Ok(Vec::new());
        }
        let Some(row) = self.store.terminal(terminal).await? else {
            return Err(CenterError::new(
                ErrorKind::NotFound,
                format!("terminal {terminal:?} is not enrolled"),
            ));
        };
        let snapshot = self.catalog();
        let mut keys = Vec::new();
        if let Some(installed) = row
            .installed
            .as_deref()
            .and_then(|json| serde_json::from_str::<herd_proto::terminal::InstalledDoc>(json).ok())
            && let Some(key) = key_of(&snapshot.catalog, &installed.product, &installed.version)
        {
            keys.push(key);
        }
        if let Some(report) = report
            && let Some(key) = program_key_of(&snapshot.catalog, report)
            && !keys.contains(&key)
        {
            keys.push(key);
        }
        let mut counted_for = Vec::new();
        for key in keys {
            let counted = self
                .count_for_rollout(
                    &key,
                    RolloutCounts {
                        faults: 1,
                        ..RolloutCounts::default()
                    },
                )
                .await?;
            tracing::info!(%terminal, release = %key, at, counted, "fault attributed to a release");
            if counted {
                counted_for.push(key);
            }
        }
        Ok(counted_for)
    }

    /// Counts a replacement's outcome (a newly stored `fault.replaced` event answering a
    /// `replace` verdict) for the rollout of the program release it distributed: a success,
    /// or a failed install (the terminal restored the old program). A switch to an
    /// alternative the terminal already had distributed nothing and counts for no rollout.
    pub(crate) async fn count_replaced(
        &self,
        replaced: &herd_proto::fault::FaultReplaced,
        verdict: &herd_proto::fault::FaultVerdict,
    ) {
        if self.rollout_settings().is_none()
            || verdict.decision != herd_proto::fault::Decision::Replace
        {
            return;
        }
        let Some(alternative) = &verdict.alternative else {
            return;
        };
        let key = crate::faults::alternative_key(alternative);
        let add = if replaced.replaced {
            RolloutCounts {
                succeeded: 1,
                ..RolloutCounts::default()
            }
        } else {
            RolloutCounts {
                failed: 1,
                ..RolloutCounts::default()
            }
        };
        match self.count_for_rollout(&key, add).await {
            Ok(counted) => tracing::info!(
                release = %key, replaced = replaced.replaced, counted,
                "a replacement's outcome counted for its rollout"
            ),
            Err(err) => {
                tracing::warn!(%err, release = %key, "cannot count a replacement's outcome")
            }
        }
    }

    /// Adds to a release's rollout counters while it is rolling or paused (the store checks
    /// the phase in the same statement).
    async fn count_for_rollout(&self, release: &str, add: RolloutCounts) -> CenterResult<bool> {
        Ok(self.store.rollout_count(release, add).await?)
    }

    /// The release a terminal's stored plan `plan_id` was to install, if that is its current plan.
    async fn planned_release(&self, terminal: &str, plan_id: &str) -> Option<String> {
        let row = self.store.terminal(terminal).await.ok()??;
        if row.plan_id.as_deref() != Some(plan_id) {
            return None;
        }
        let plan: herd_proto::plan::PlanDoc = serde_json::from_str(row.plan.as_deref()?).ok()?;
        let to = plan.to?;
        key_of(&self.catalog().catalog, &to.product, &to.version)
    }
}

/// The file, under `<data>/site/`, where a site keeps the center's rollouts.
const SITE_ROLLOUTS_FILE: &str = "rollouts.json";

/// The policy a site plans with, from the center's rings (`None`: no rings); rings that do not
/// end at 100 % or reach beyond it are refused.
fn site_policy(rollouts: &herd_proto::site::SiteRollouts) -> anyhow::Result<Option<Policy>> {
    if rollouts.rings.is_empty() {
        return Ok(None);
    }
    let mut rings = Vec::with_capacity(rollouts.rings.len());
    for ring in &rollouts.rings {
        if ring.reach_bp > FULL_REACH {
            bail!(
                "the center's ring {} reaches {} basis points",
                ring.name,
                ring.reach_bp
            );
        }
        rings.push(herd_planner::rings::RingSpec {
            name: ring.name.clone(),
            reach: ring.reach_bp,
            groups: ring.groups.clone(),
            soak_secs: 0,
            min_successes: 0,
        });
    }
    if rings.last().is_some_and(|r| r.reach != FULL_REACH) {
        bail!("the center's last ring does not reach the whole fleet");
    }
    // A site never decides a rollout's step: the thresholds are the center's business.
    Ok(Some(Policy {
        rings,
        thresholds: Thresholds {
            max_bad: u64::MAX,
            max_bad_percent: 100,
            min_reports: u64::MAX,
        },
    }))
}

/// A rollout as the site's gates need it (phase and ring; the counts stay at the center).
fn site_row(rollout: &herd_proto::site::SiteRollout) -> RolloutRow {
    RolloutRow {
        release: rollout.release.clone(),
        product: String::new(),
        version: String::new(),
        seq: 0,
        phase: rollout.phase.clone(),
        ring: rollout.ring,
        ring_started: 0,
        started_at: 0,
        updated_at: 0,
        reason: None,
        counts: RolloutCounts::default(),
        row_version: 0,
    }
}

/// Checks a `rollout.self_protected` event's data: a [`SelfProtection`] naming products and
/// versions as the catalog spells them, with a bounded reason.
pub(crate) fn check_self_protection(data: &serde_json::Value) -> Result<(), String> {
    let protection: SelfProtection = serde_json::from_value(data.clone())
        .map_err(|err| format!("not a self-protection report: {err}"))?;
    for (field, id) in [
        ("product", &protection.product),
        ("restored_product", &protection.restored_product),
    ] {
        herd_core::check_identifier(id).map_err(|why| format!("{field}: {why}"))?;
    }
    for (field, version) in [
        ("version", &protection.version),
        ("restored_version", &protection.restored_version),
    ] {
        herd_core::check_version(version).map_err(|why| format!("{field}: {why}"))?;
    }
    if protection.reason.len() > MAX_SELF_PROTECTION_REASON {
        return Err(format!(
            "reason: {} bytes; at most {MAX_SELF_PROTECTION_REASON}",
            protection.reason.len()
        ));
    }
    Ok(())
}

/// The longest reason a self-protection report may give.
pub const MAX_SELF_PROTECTION_REASON: usize = 2048;

/// Takes the withdrawn releases' package targets, whatever their format
/// (`packages/<vendor>/<product>/<version>/<platform>.<format>`, `withdrawn` holding release
/// keys), out of what a sign round lists, with the deltas that rebuild them: such a halted
/// release is then in no signed metadata the center writes, so no terminal and no site mirror
/// (which serves only what its verified metadata lists) can fetch it. Its revert still
/// verifies: it fetches the release before, and it removes the withdrawn version with the
/// agent's own code, which needs no target: the agent installs `archive` packages only (its
/// executor carries out a plan with one `archive` install, `execute/shape.rs`), so the version
/// a terminal runs and must give up is always an `archive` one, removed as the agent unpacked
/// it. An uninstall step of another format names a target only for the uninstall script the
/// agent generates from it; such a step can only concern a product this agent did not
/// install, and a withdrawn one is refused as unlisted. Returns how many targets were taken
/// out.
pub fn withdraw_targets(
    withdrawn: &[String],
    targets: &mut std::collections::BTreeMap<
        String,
        std::collections::BTreeMap<String, herd_tuf::TargetFile>,
    >,
    deltas: &mut std::collections::BTreeMap<String, herd_tuf::TargetFile>,
) -> usize {
    if withdrawn.is_empty() {
        return 0;
    }
    let dirs: Vec<String> = withdrawn
        .iter()
        .map(|key| release_targets_dir(key))
        .collect();
    let is_withdrawn = |path: &str| dirs.iter().any(|dir| path.starts_with(dir.as_str()));
    let mut taken = 0;
    for listed in targets.values_mut() {
        let before = listed.len();
        listed.retain(|path, _| !is_withdrawn(path));
        taken += before - listed.len();
    }
    let before = deltas.len();
    deltas.retain(|path, file| {
        herd_proto::distribution::read_custom::<herd_proto::distribution::DeltaCustom>(
            path,
            file.custom.as_ref(),
        )
        .map_or(true, |delta| !is_withdrawn(&delta.result))
    });
    taken + (before - deltas.len())
}

/// Whether a target path belongs to one of the withdrawn releases.
pub fn is_withdrawn_target(withdrawn: &[String], path: &str) -> bool {
    withdrawn
        .iter()
        .any(|key| path.starts_with(release_targets_dir(key).as_str()))
}

/// The directory of a release's package targets.
fn release_targets_dir(key: &str) -> String {
    format!("{}/{key}/", herd_proto::distribution::PACKAGES_DIR)
}

/// `vendor/product/version` of a release the catalog lists.
fn key_of(catalog: &Catalog, product: &str, version: &str) -> Option<String> {
    let p = catalog.products.iter().position(|p| p.id == product)?;
    let product = herd_core::ProductIdx(p as u32);
    let release = catalog
        .releases_of(product)
        .find(|&r| catalog.release(r).version == version)?;
    Some(release_key(catalog, release))
}

/// `vendor/program/version` of the program release a fault report names, if the catalog lists
/// it as a program of that vendor.
fn program_key_of(catalog: &Catalog, report: &herd_proto::fault::FaultReport) -> Option<String> {
    let product = catalog.product(catalog.product_by_id(&report.program)?);
    if product.kind != herd_core::ProductKind::Program
        || catalog.vendors[product.vendor.get()].id != report.vendor
    {
        return None;
    }
    key_of(catalog, &report.program, &report.version)
}

fn ring_name(policy: &Policy, ring: u32) -> &str {
    policy
        .rings
        .get(ring as usize)
        .map_or("?", |r| r.name.as_str())
}

fn no_rollout(release: &str) -> CenterError {
    CenterError::new(
        ErrorKind::NotFound,
        format!("no rollout of {release:?} (releases are named vendor/product/version)"),
    )
}

fn summary(policy: &Policy, catalog: &Catalog, row: &RolloutRow) -> RolloutSummary {
    let (reach_bp, groups) = match Phase::parse(&row.phase) {
        Some(Phase::Complete) => (FULL_REACH, Vec::new()),
        Some(Phase::Reverted) => (0, Vec::new()),
        _ => policy
            .rings
            .get(row.ring as usize)
            .map_or((FULL_REACH, Vec::new()), |r| (r.reach, r.groups.clone())),
    };
    RolloutSummary {
        release: row.release.clone(),
        product: row.product.clone(),
        version: row.version.clone(),
        seq: row.seq,
        replacement: catalog
            .product_by_id(&row.product)
            .is_some_and(|p| catalog.product(p).kind == herd_core::ProductKind::Program),
        phase: row.phase.clone(),
        ring: ring_name(policy, row.ring).to_owned(),
        ring_index: row.ring,
        reach_bp,
        groups,
        started_at: rfc3339(row.started_at),
        ring_started_at: rfc3339(row.ring_started),
        updated_at: rfc3339(row.updated_at),
        reason: row.reason.clone(),
        succeeded: row.counts.succeeded,
        failed: row.counts.failed,
        faults: row.counts.faults,
        silent: row.counts.silent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str, custom: Option<serde_json::Value>) -> (String, herd_tuf::TargetFile) {
        let file = herd_tuf::TargetFile {
            length: 1,
            hashes: std::collections::BTreeMap::from([("sha256".to_owned(), "0".repeat(64))]),
            custom,
        };
        (path.to_owned(), file)
    }

    #[test]
    fn withdrawn_releases_leave_the_signed_targets_whatever_their_format() {
        let withdrawn = vec!["acme/av/1.1".to_owned()];
        let mut targets = std::collections::BTreeMap::from([(
            "acme".to_owned(),
            std::collections::BTreeMap::from([
                target("packages/acme/av/1.0/linux.archive", None),
                target("packages/acme/av/1.1/linux.archive", None),
                target("packages/acme/av/1.1/linux.deb", None),
                target("packages/acme/av/1.10/linux.archive", None),
            ]),
        )]);
        let delta = |result: &str| {
            Some(herd_proto::distribution::custom_value(
                &herd_proto::distribution::DeltaCustom {
                    result: result.to_owned(),
                    base_sha256: "1".repeat(64),
                },
            ))
        };
        let mut deltas = std::collections::BTreeMap::from([
            target("deltas/a", delta("packages/acme/av/1.1/linux.archive")),
            target("deltas/b", delta("packages/acme/av/1.10/linux.archive")),
            target("herd/set", None),
        ]);
        assert_eq!(withdraw_targets(&withdrawn, &mut targets, &mut deltas), 3);
        let left: Vec<&str> = targets["acme"].keys().map(String::as_str).collect();
        assert_eq!(
            left,
            [
                "packages/acme/av/1.0/linux.archive",
                "packages/acme/av/1.10/linux.archive"
            ]
        );
        assert_eq!(
            deltas.keys().map(String::as_str).collect::<Vec<_>>(),
            ["deltas/b", "herd/set"]
        );
        // Never served, whatever the format; 1.10 is another release.
        assert!(is_withdrawn_target(
            &withdrawn,
            "packages/acme/av/1.1/linux.deb"
        ));
        assert!(!is_withdrawn_target(
            &withdrawn,
            "packages/acme/av/1.10/linux.archive"
        ));
        assert_eq!(withdraw_targets(&[], &mut targets, &mut deltas), 0);
    }

    #[test]
    fn self_protection_reports_are_checked() {
        let good = serde_json::json!({"product": "vaccine-r", "version": "1.1",
            "restored_product": "vaccine-r", "restored_version": "1.0", "faults": 3,
            "window_secs": 600, "reason": "it crashed"});
        check_self_protection(&good).unwrap();
        let mut unknown = good.clone();
        unknown["extra"] = serde_json::json!(1);
        assert!(
            check_self_protection(&unknown)
                .unwrap_err()
                .contains("not a self-protection")
        );
        let mut bad_product = good.clone();
        bad_product["product"] = serde_json::json!("../x");
        assert!(
            check_self_protection(&bad_product)
                .unwrap_err()
                .starts_with("product:")
        );
        let mut bad_version = good.clone();
        bad_version["restored_version"] = serde_json::json!("");
        assert!(
            check_self_protection(&bad_version)
                .unwrap_err()
                .starts_with("restored_version:")
        );
        let mut long = good.clone();
        long["reason"] = serde_json::json!("x".repeat(MAX_SELF_PROTECTION_REASON + 1));
        assert!(
            check_self_protection(&long)
                .unwrap_err()
                .starts_with("reason:")
        );
    }

    #[test]
    fn settings_are_off_without_rings_and_check_their_thresholds() {
        assert_eq!(
            RolloutSettings::from_keys("", None, None, None, None).unwrap(),
            None
        );
        let on = RolloutSettings::from_keys("all=100%/0s/0", None, None, None, None)
            .unwrap()
            .expect("on");
        assert_eq!(on.policy.thresholds.max_bad, 5);
        assert!(RolloutSettings::from_keys("all=100%/0s/0", Some(0), None, None, None).is_err());
        assert!(RolloutSettings::from_keys("all=100%/0s/0", None, Some(101), None, None).is_err());
        assert!(RolloutSettings::from_keys("all=100%/0s/0", None, None, None, Some(0)).is_err());
    }
}
