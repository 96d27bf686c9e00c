//! What a center process remembers of the store between requests, and how it follows the
//! store's changes: terminals (identity, certificate, group) and group policies.
//!
//! The costs here must not grow with the fleet. A terminal missing from the cache costs one
//! row read; its group's policy comes from the group cache. A group or rule change reloads the
//! groups (a few rows) and leaves every cached terminal in place. A terminal's identity
//! changes (deletion, re-enrolment) arrive through the store's terminal change log, and each
//! evicts exactly that terminal — in this process at once, in the others within about a
//! second.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};

use herd_proto::terminal::{HardwareDoc, PolicyDoc};

use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::{Center, KnownTerminal};

/// How many terminal changes are read from the store at a time.
const CHANGES_PAGE: u32 = 10_000;

/// The caches of one center process.
#[derive(Debug, Default)]
pub(crate) struct Caches {
    terminals: Mutex<HashMap<String, Arc<KnownTerminal>>>,
    /// The newest terminal change applied to `terminals`.
    terminal_changes_seen: AtomicU64,
    groups: RwLock<Arc<GroupPolicies>>,
    /// Serialises reloads of `groups`, so a burst of misses reads the store once.
    groups_reload: tokio::sync::Mutex<()>,
}

/// Every group's policy, as of a groups revision of the store.
#[derive(Debug, Default)]
pub(crate) struct GroupPolicies {
    pub revision: u64,
    by_id: HashMap<String, Arc<PolicyDoc>>,
}

impl Caches {
    /// Starts following the store from `revisions` (read before anything is cached).
    pub fn starting_at(revisions: herd_store::Revisions) -> Caches {
        let caches = Caches::default();
        caches
            .terminal_changes_seen
            .store(revisions.terminals, Relaxed);
        caches
    }

    pub fn groups_revision(&self) -> u64 {
        self.groups.read().expect("group cache").revision
    }

    pub fn terminal_changes_seen(&self) -> u64 {
        self.terminal_changes_seen.load(Relaxed)
    }
}

impl Center {
    /// A terminal's identity, from the cache or the store (one row).
    pub async fn known_terminal(&self, id: &str) -> CenterResult<Arc<KnownTerminal>> {
        self.known_terminal_presenting(id, None).await
    }

    /// [`Center::known_terminal`] for a terminal that presented the certificate whose SHA-256 is
    /// `presented`: a site that does not know the terminal asks the center for it.
    pub async fn known_terminal_presenting(
        &self,
        id: &str,
        presented: Option<&str>,
    ) -> CenterResult<Arc<KnownTerminal>> {
        if let Some(known) = self
            .caches
            .terminals
            .lock()
            .expect("terminal cache")
            .get(id)
        {
            return Ok(known.clone());
        }
        let seen = self.caches.terminal_changes_seen.load(Relaxed);
        let mut row = self.store.terminal(id).await?;
        // A site that does not know a terminal (one failing over from another site) asks the
        // center, whose CA issued the certificate the terminal presented.
        if row.is_none()
            && self.site().is_some()
            && let Some(presented) = presented
            && self.site_adopt_terminal(id, presented).await?
        {
            row = self.store.terminal(id).await?;
        }
        let row = row.ok_or_else(|| {
            CenterError::new(
                ErrorKind::CertRevoked,
                format!("terminal {id:?} is not enrolled (deleted?); enrol it again"),
            )
        })?;
        let hardware: HardwareDoc = serde_json::from_str(&row.hardware).map_err(|err| {
            CenterError::internal(format!("terminal {id:?} has corrupt hardware: {err}"))
        })?;
        let known = Arc::new(KnownTerminal {
            id: row.id,
            user: row.user,
            hardware,
            tz: row.tz,
            group: row.group,
            cert_sha256: row.cert_sha256,
            interfaces_digest: Default::default(),
            events_at_most: u64::MAX.into(),
        });
        // Cache it only if no terminal change was applied while the row was read: that
        // change may be this terminal's, and the row then already stale.
        if self.caches.terminal_changes_seen.load(Relaxed) == seen {
            self.caches
                .terminals
                .lock()
                .expect("terminal cache")
                .insert(known.id.clone(), known.clone());
        }
        Ok(known)
    }

    /// The policy of `group`, from the group cache; reloaded once if the group is not known
    /// yet (another process may have just created it).
    pub async fn group_policy(&self, group: &str) -> CenterResult<Arc<PolicyDoc>> {
        let cached = self
            .caches
            .groups
            .read()
            .expect("group cache")
            .by_id
            .get(group)
            .cloned();
        if let Some(policy) = cached {
            return Ok(policy);
        }
        self.reload_groups().await?;
        self.caches
            .groups
            .read()
            .expect("group cache")
            .by_id
            .get(group)
            .cloned()
            .ok_or_else(|| CenterError::internal(format!("group {group:?} does not exist")))
    }

    /// Re-reads every group's policy (a few rows: no terminal is counted or read).
    pub async fn reload_groups(&self) -> CenterResult<()> {
        let _one_at_a_time = self.caches.groups_reload.lock().await;
        let revision = self.store.revisions().await?.groups;
        let rows = self.store.group_policies().await?;
        let mut by_id = HashMap::with_capacity(rows.len());
        for row in rows {
            let policy: PolicyDoc = serde_json::from_str(&row.policy).map_err(|err| {
                CenterError::internal(format!("group {:?} has a corrupt policy: {err}", row.id))
            })?;
            by_id.insert(row.id, Arc::new(policy));
        }
        *self.caches.groups.write().expect("group cache") =
            Arc::new(GroupPolicies { revision, by_id });
        self.announce_changes();
        Ok(())
    }

    /// Evicts every terminal the store's change log names since the last call.
    pub async fn follow_terminal_changes(&self) -> CenterResult<()> {
        loop {
            let seen = self.caches.terminal_changes_seen.load(Relaxed);
            let changes = self.store.terminal_changes(seen, CHANGES_PAGE).await?;
            let Some(&(last, _)) = changes.last() else {
                return Ok(());
            };
            {
                let mut terminals = self.caches.terminals.lock().expect("terminal cache");
                for (_, id) in &changes {
                    terminals.remove(id);
                }
            }
            // Only moves forward, even if two callers raced through the same page.
            self.caches.terminal_changes_seen.fetch_max(last, Relaxed);
            if changes.len() < CHANGES_PAGE as usize {
                return Ok(());
            }
        }
    }

    /// Drops this process's copy of terminal `id`, so the next look-up reads the store.
    pub(crate) fn forget_terminal(&self, id: &str) {
        self.caches
            .terminals
            .lock()
            .expect("terminal cache")
            .remove(id);
    }

    /// How many terminals this process has cached (for tests and metrics).
    pub fn cached_terminals(&self) -> usize {
        self.caches.terminals.lock().expect("terminal cache").len()
    }
}
