//! Signed distribution on the terminal (SPEC §3.4, issue 11): the agent believes nothing its
//! upstream (the center, a site server, any mirror) says about software unless TUF metadata
//! signed by the right keys vouches for it.
//!
//! - `store.rs`: `<state>/trust/`, the trusted documents, kept across restarts;
//! - [`TrustClient::refresh`]: TUF's client workflow over HTTP(S) — root chain walk
//!   (`N+1.root.json` until 404), `timestamp.json`, and only when the snapshot changed
//!   `N.snapshot.json` and `N.targets.json`; delegated roles are loaded when a plan needs them
//!   ([`TrustClient::find_target`]); every read bounded in bytes and time (herd-client's
//!   `Repository`), every document checked by herd-tuf's `TrustedSet`;
//! - `plan.rs`: a plan's steps checked against the verified targets, and the scripts the agent
//!   generates itself from signed metadata (only those are ever run);
//! - `fetcher.rs`: packages from a mirror's `/tuf/targets/…` (consistent-snapshot names);
//! - `program.rs`: a replacement program a fault verdict names, checked as a signed target
//!   and downloaded bounded by it;
//! - `deltas.rs`: definition deltas from the content the terminal keeps, looked up in the
//!   verified metadata and checked against the package's signed content digest;
//! - `refusal.rs`: what a refusal is reported as (`trust.refused`), its kind decided in one
//!   function from the error's variant.
//!
//! An idle refresh (nothing changed upstream) costs one small read, `timestamp.json`; snapshot
//! and targets come from the store. The next root is probed at the first refresh of a process,
//! at least once every [`ROOT_PROBE_SECS`], and whenever the timestamp does not verify against
//! the trusted root (a rotation of its key is how a new root shows first). TUF's workflow probes
//! at every refresh; what probing less gives up is small: an upstream that wants to hide a new
//! root just answers 404 anyway, so only an honest upstream's new root waits, and then its
//! timestamp, signed by the new key, forces the probe at once.

mod deltas;
mod fetcher;
mod plan;
mod program;
mod refusal;
mod store;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use herd_client::{ReadLimits, Repository, RepositoryError};
use herd_core::Timestamp;
use herd_proto::api::trust_refusals as kinds;
use herd_proto::distribution::METADATA_PATH;
use herd_tuf::client::{
    MAX_METADATA_BYTES, MAX_ROOT_BYTES, MAX_ROOT_ROTATIONS, MAX_TIMESTAMP_BYTES,
};
use herd_tuf::metadata::Envelope;
use herd_tuf::{Snapshot, TargetFile, TargetSearch, Targets, TimestampRole, TrustedSet};

pub use deltas::{DeltaFetcher, Offers, find_offers};
pub use fetcher::MirrorFetcher;
pub use plan::{Ours, VerifiedPlan, verify_plan};
pub use program::{SignedProgram, download_program, verify_program};
pub use refusal::Refusal;
pub use store::{StoreError, TrustStore};

/// The longest an agent goes without probing for the next root (see the module documentation).
pub const ROOT_PROBE_SECS: i64 = 86_400;

/// What one refresh did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refreshed {
    /// Body bytes received and requests made (what an idle refresh costs).
    pub bytes: u64,
    pub requests: u64,
    pub root_version: u64,
    pub timestamp_version: u64,
    pub snapshot_version: u64,
    /// Whether the snapshot was new (and snapshot and targets were read).
    pub snapshot_changed: bool,
}

/// How a refresh attempt failed: for good, or in a way a probe for a new root may cure.
enum Retry {
    Refused(Refusal),
    ProbeRoot(Refusal),
}

impl Retry {
    fn into_refusal(self) -> Refusal {
        match self {
            Retry::Refused(refusal) | Retry::ProbeRoot(refusal) => refusal,
        }
    }
}

impl From<Refusal> for Retry {
    fn from(refusal: Refusal) -> Retry {
        Retry::Refused(refusal)
    }
}

/// The agent's view of its upstream's repository: the store, the upstream, and (after a
/// refresh) the trusted set.
#[derive(Debug)]
pub struct TrustClient {
    store: TrustStore,
    upstream: Repository,
    /// Overrides of the read bounds' deadline (tests).
    pub metadata_deadline: std::time::Duration,
    trusted: Option<TrustedSet>,
    /// When the next root was last probed for (in this process).
    root_probed_at: Option<Timestamp>,
    /// A `timestamp.json` the check-in's answer carried (or the stored one, when the answer
    /// said it is current), used by the next refresh instead of fetching it: verified the
    /// same way, since a signed document is as good from one channel as from another.
    offered_timestamp: Option<Vec<u8>>,
    /// Versioned metadata documents (`N.snapshot.json`, `N.<role>.json`) the check-in's
    /// answer carried: read instead of fetching a document of that name, and verified the same
    /// way. Replaced by the next answer's.
    offered: HashMap<String, Vec<u8>>,
}

impl TrustClient {
    pub fn new(store: TrustStore, upstream: Repository) -> TrustClient {
        TrustClient {
            store,
            upstream,
            metadata_deadline: ReadLimits::metadata(0).deadline,
            trusted: None,
            root_probed_at: None,
            offered_timestamp: None,
            offered: HashMap::new(),
        }
    }

    /// The versions of the signed documents the store holds besides root and timestamp
    /// (`snapshot`, `targets`, the delegated roles searches loaded): a check-in names them
    /// (`tuf_held`) so that its answer carries the newer ones. Documents that do not parse
    /// are left out (they are fetched again).
    pub fn held_versions(&self) -> BTreeMap<String, u64> {
        let mut held = BTreeMap::new();
        if let Some(version) = self
            .load("snapshot")
            .ok()
            .flatten()
            .and_then(|bytes| version_of::<Snapshot>("snapshot", &bytes))
        {
            held.insert("snapshot".to_owned(), version);
        }
        for role in self.store.roles().unwrap_or_default() {
            if matches!(role.as_str(), "root" | "timestamp" | "snapshot") {
                continue;
            }
            if let Some(version) = self
                .load(&role)
                .ok()
                .flatten()
                .and_then(|bytes| version_of::<Targets>(&role, &bytes))
            {
                held.insert(role, version);
            }
        }
        held
    }

    /// The documents the check-in's answer carried (`tuf_metadata`: name → document), used by
    /// the refreshes and searches that follow instead of fetching them.
    pub fn offer_metadata(&mut self, documents: Option<BTreeMap<String, String>>) {
        self.offered = documents
            .unwrap_or_default()
            .into_iter()
            .map(|(name, text)| (name, text.into_bytes()))
            .collect();
    }

    /// The version of the `timestamp.json` trusted last (`None` before the first refresh or
    /// when the stored one does not parse).
    pub fn stored_timestamp_version(&self) -> Option<u64> {
        let bytes = self.store.load("timestamp").ok()??;
        version_of::<TimestampRole>("timestamp", &bytes)
    }

    /// What the check-in's answer said of the timestamp: a newer document (`Some`), or, with
    /// `None`, that the one stored is current. The next refresh uses it instead of asking the
    /// upstream; it is verified exactly as a fetched one (signature, no rollback, expiry).
    pub fn offer_timestamp(&mut self, document: Option<Vec<u8>>) {
        self.offered_timestamp = match document {
            Some(bytes) => Some(bytes),
            None => self.store.load("timestamp").ok().flatten(),
        };
    }

    pub fn upstream(&self) -> &Repository {
        &self.upstream
    }

    /// The trusted set of the last successful refresh.
    #[cfg(test)]
    pub fn trusted(&self) -> Option<&TrustedSet> {
        self.trusted.as_ref()
    }

    fn limits(&self, max_bytes: u64) -> ReadLimits {
        ReadLimits {
            deadline: self.metadata_deadline,
            ..ReadLimits::metadata(max_bytes)
        }
    }

    fn get(&self, name: &str, max_bytes: u64) -> Result<Vec<u8>, RepositoryError> {
        self.upstream
            .get(&format!("{METADATA_PATH}{name}"), self.limits(max_bytes))
    }

    fn fetch(&self, name: &str, max_bytes: u64) -> Result<Vec<u8>, Refusal> {
        if let Some(offered) = self.offered.get(name)
            && offered.len() as u64 <= max_bytes
        {
            return Ok(offered.clone());
        }
        self.get(name, max_bytes)
            .map_err(|e| Refusal::of_read(&e, name))
    }

    fn save(&self, role: &str, bytes: &[u8]) -> Result<(), Refusal> {
        self.store
            .save(role, bytes)
            .map_err(|e| Refusal::new(kinds::INVALID, Some(role), format!("trust store: {e}")))
    }

    fn load(&self, role: &str) -> Result<Option<Vec<u8>>, Refusal> {
        self.store
            .load(role)
            .map_err(|e| Refusal::new(kinds::INVALID, Some(role), format!("trust store: {e}")))
    }

    /// TUF's client workflow (§5.3–5.6) against the upstream, at `now`. On a refusal the
    /// previous trusted set is dropped: no plan is verified against stale trust.
    pub fn refresh(&mut self, now: Timestamp) -> Result<Refreshed, Refusal> {
        self.trusted = None;
        self.upstream.take_counts();
        let probe = self
            .root_probed_at
            .is_none_or(|at| now.unix_seconds() - at.unix_seconds() >= ROOT_PROBE_SECS);
        let result = match self.refresh_inner(now, probe) {
            // A timestamp the trusted root's keys do not sign: probe for a new root first.
            Err(Retry::ProbeRoot(_)) => self.refresh_inner(now, true),
            other => other,
        }
        .map_err(Retry::into_refusal);
        let (bytes, requests) = self.upstream.take_counts();
        let (set, snapshot_changed) = result?;
        let refreshed = Refreshed {
            bytes,
            requests,
            root_version: set.root_version(),
            timestamp_version: set.timestamp().map_or(0, |t| t.version),
            snapshot_version: set.snapshot().map_or(0, |s| s.version),
            snapshot_changed,
        };
        self.trusted = Some(set);
        Ok(refreshed)
    }

    fn refresh_inner(
        &mut self,
        now: Timestamp,
        probe_root: bool,
    ) -> Result<(TrustedSet, bool), Retry> {
        let root = self.load("root")?.ok_or_else(|| {
            Refusal::new(
                kinds::INVALID,
                Some("root"),
                format!(
                    "no trusted root in {} (enrolment stores the center's)",
                    self.store.dir().display()
                ),
            )
        })?;
        let mut set = TrustedSet::new(&root, now).map_err(|e| Refusal::of_trust(&e))?;
        let first_root = set.root().clone();

        // The root chain: each next version signed by the previous root's keys and its own.
        let rotations = if probe_root {
            self.root_probed_at = Some(now);
            MAX_ROOT_ROTATIONS
        } else {
            0
        };
        for _ in 0..rotations {
            let name = format!("{}.root.json", set.root_version() + 1);
            match self.get(&name, MAX_ROOT_BYTES) {
                Err(RepositoryError::NotFound { .. }) => break,
                Err(e) => return Err(Refusal::of_read(&e, &name).into()),
                Ok(bytes) => {
                    set.update_root(&bytes).map_err(|e| Refusal::of_trust(&e))?;
                    self.save("root", &bytes)?;
                }
            }
        }
        set.root_update_finished()
            .map_err(|e| Refusal::of_trust(&e))?;
        // Fast-forward attack recovery (§5.3.11): documents signed by rotated keys are
        // forgotten, so a version a compromised key pushed high no longer blocks the new ones.
        if set.keys_rotated(&first_root, "timestamp") || set.keys_rotated(&first_root, "snapshot") {
            for role in ["timestamp", "snapshot"] {
                self.store.remove(role).map_err(|e| {
                    Refusal::new(kinds::INVALID, Some(role), format!("trust store: {e}"))
                })?;
            }
        }
        if set.keys_rotated(&first_root, "targets") {
            self.store.remove("targets").map_err(|e| {
                Refusal::new(kinds::INVALID, Some("targets"), format!("trust store: {e}"))
            })?;
        }

        // Timestamp: never older than the stored one (rollback), never expired (freeze).
        let stored_timestamp = self.load("timestamp")?;
        let stored = stored_timestamp
            .as_deref()
            .and_then(|b| Envelope::<TimestampRole>::parse("timestamp", b).ok())
            .map(|e| e.signed);
        let bytes = match self.offered_timestamp.take() {
            Some(offered) if offered.len() as u64 <= MAX_TIMESTAMP_BYTES => offered,
            _ => self.fetch("timestamp.json", MAX_TIMESTAMP_BYTES)?,
        };
        if let Err(e) = set.update_timestamp(&bytes, stored.as_ref()) {
            let refusal = Refusal::of_trust(&e);
            return Err(if probe_root {
                Retry::Refused(refusal)
            } else {
                Retry::ProbeRoot(refusal)
            });
        }
        if stored_timestamp.as_deref() != Some(bytes.as_slice()) {
            self.save("timestamp", &bytes)?;
        }

        // Snapshot: from the store when it is the version the timestamp names and still valid.
        let meta = set
            .snapshot_meta()
            .map_err(|e| Refusal::of_trust(&e))?
            .clone();
        let stored_snapshot = self.load("snapshot")?;
        let local_ok = stored_snapshot.as_deref().is_some_and(|bytes| {
            version_of::<Snapshot>("snapshot", bytes) == Some(meta.version)
                && set.update_snapshot(bytes, None).is_ok()
        });
        let snapshot_changed = !local_ok;
        if !local_ok {
            let previous = stored_snapshot
                .as_deref()
                .and_then(|b| Envelope::<Snapshot>::parse("snapshot", b).ok())
                .map(|e| e.signed);
            let name = format!("{}.snapshot.json", meta.version);
            let bytes = self.fetch(&name, meta.length.unwrap_or(MAX_METADATA_BYTES))?;
            set.update_snapshot(&bytes, previous.as_ref())
                .map_err(|e| Refusal::of_trust(&e))?;
            self.save("snapshot", &bytes)?;
        }
        self.load_role(&mut set, "targets", None)?;
        Ok((set, snapshot_changed))
    }

    /// Loads a targets role into `set`: the stored document when it is the version the
    /// snapshot names and still verifies, else `N.<role>.json` from the upstream.
    fn load_role(
        &self,
        set: &mut TrustedSet,
        role: &str,
        delegator: Option<&str>,
    ) -> Result<(), Refusal> {
        if delegator.is_some() && !store::is_role_name(role) {
            return Err(Refusal::new(
                kinds::INVALID,
                Some(role),
                format!("delegated role name {role:?} is not one the agent can fetch or keep"),
            ));
        }
        let meta = set
            .targets_meta(role)
            .map_err(|e| Refusal::of_trust(&e))?
            .clone();
        let update = |set: &mut TrustedSet, bytes: &[u8]| match delegator {
            None => set.update_targets(bytes),
            Some(delegator) => set.update_delegated(role, delegator, bytes),
        };
        if let Some(local) = self.load(role)?
            && version_of::<Targets>(role, &local) == Some(meta.version)
            && update(set, &local).is_ok()
        {
            return Ok(());
        }
        let name = format!("{}.{role}.json", meta.version);
        let bytes = self.fetch(&name, meta.length.unwrap_or(MAX_METADATA_BYTES))?;
        update(set, &bytes).map_err(|e| Refusal::of_trust(&e))?;
        self.save(role, &bytes)
    }

    /// The signed description of `path`, loading the delegated roles the search needs;
    /// `Ok(None)` when no role delegated for it lists it. Needs a refresh first.
    pub fn find_target(&mut self, path: &str) -> Result<Option<(String, TargetFile)>, Refusal> {
        let mut set = self
            .trusted
            .take()
            .ok_or_else(|| Refusal::new(kinds::INVALID, None, "the metadata was not refreshed"))?;
        let result = (|| {
            for _ in 0..=herd_tuf::client::MAX_DELEGATIONS {
                match set.find_target(path) {
                    TargetSearch::Found { role, file } => return Ok(Some((role, file))),
                    TargetSearch::NotFound => return Ok(None),
                    TargetSearch::NeedRole { role, delegator } => {
                        self.load_role(&mut set, &role, Some(&delegator))?;
                    }
                }
            }
            Ok(None)
        })();
        self.trusted = Some(set);
        result
    }
}

/// The version a stored document says it has, if it parses.
fn version_of<T: herd_tuf::metadata::Role>(role: &str, bytes: &[u8]) -> Option<u64> {
    Envelope::<T>::parse(role, bytes)
        .ok()
        .map(|e| e.signed.version())
}
