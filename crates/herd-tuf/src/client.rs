//! The client's trusted metadata (TUF 1.0 §5, "detailed client workflow"): what a terminal
//! believes, updated one document at a time in the order the specification gives — root
//! (walking `N+1.root.json`), timestamp, snapshot, targets, delegated roles — each refused
//! unless it is signed by a threshold of the keys its delegator names, is not older than what
//! is trusted (rollback), is the version the higher role names (mix-and-match), has the length
//! and hashes listed for it, and has not expired (freeze).
//!
//! Pure: bytes and `now` in, decisions out. Fetching (with the size limits below, against
//! endless data, and a deadline, against slow retrieval) is the caller's.

use std::collections::BTreeMap;

use herd_core::Timestamp;

use crate::metadata::{
    DelegatedRole, Envelope, MetaFile, MetadataError, RoleKeys, Root, Snapshot, TargetFile,
    Targets, TimestampRole, matches,
};

/// Largest `root.json` fetched (python-tuf uses the same bound).
pub const MAX_ROOT_BYTES: u64 = 512_000;
/// Largest `timestamp.json` fetched: it never lists more than the snapshot.
pub const MAX_TIMESTAMP_BYTES: u64 = 16_384;
/// Largest snapshot or targets document fetched when its length is not listed.
pub const MAX_METADATA_BYTES: u64 = 2_000_000;
/// How many root versions one refresh walks before giving up (a repository cannot keep a
/// client walking forever).
pub const MAX_ROOT_ROTATIONS: u64 = 256;
/// How many delegated roles one target search visits.
pub const MAX_DELEGATIONS: usize = 32;

/// Why a document was refused; each names the role and the attack it stops.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("{role}: version {offered} is older than the trusted version {trusted} (rollback)")]
    Rollback {
        role: String,
        offered: u64,
        trusted: u64,
    },
    #[error("{role}: version {offered}, but {by} says version {expected} (mix-and-match)")]
    WrongVersion {
        role: String,
        offered: u64,
        expected: u64,
        by: &'static str,
    },
    #[error("{role}: expired at {expires} (freeze attack, or a repository not refreshing it)")]
    Expired { role: String, expires: String },
    #[error("{role}: {detail} (tampered or mixed metadata)")]
    Mismatch { role: String, detail: String },
    #[error("{role}: needed first, but it is not loaded yet")]
    OutOfOrder { role: String },
    #[error("{role}: not delegated by {delegator}")]
    NotDelegated { role: String, delegator: String },
    #[error("snapshot: it dropped {role}, which the trusted snapshot lists (rollback)")]
    Dropped { role: String },
    #[error("target {path}: {detail}")]
    Target { path: String, detail: String },
    #[error(
        "{role}: delegated to key {keyid}, but root pins it to {pinned:?} (a forged delegation)"
    )]
    Unpinned {
        role: String,
        keyid: String,
        pinned: Vec<String>,
    },
}

/// A document that passed every check, with its envelope.
#[derive(Clone, Debug)]
struct Trusted<T> {
    envelope: Envelope<T>,
}

/// What a client trusts.
#[derive(Clone, Debug)]
pub struct TrustedSet {
    now: Timestamp,
    root: Trusted<Root>,
    timestamp: Option<Trusted<TimestampRole>>,
    snapshot: Option<Trusted<Snapshot>>,
    /// `targets` and delegated roles by name.
    targets: BTreeMap<String, Trusted<Targets>>,
}

fn role_keys<'a>(root: &'a Root, role: &str) -> Result<&'a RoleKeys, TrustError> {
    root.roles.get(role).ok_or_else(|| {
        TrustError::Metadata(MetadataError::Malformed {
            role: "root".into(),
            reason: format!("it names no keys for the {role} role"),
        })
    })
}

fn check_not_expired<T: crate::metadata::Role>(
    name: &str,
    envelope: &Envelope<T>,
    now: Timestamp,
) -> Result<(), TrustError> {
    let expires = envelope.expires(name)?;
    if expires <= now {
        return Err(TrustError::Expired {
            role: name.to_owned(),
            expires: envelope.signed.expires().to_owned(),
        });
    }
    Ok(())
}

impl TrustedSet {
    /// Trust starts from a root the client got out of band (at enrolment): it must be signed
    /// by a threshold of its own root keys. It may have expired: a newer root is looked for
    /// before anything else, and [`TrustedSet::root_update_finished`] checks the last.
    pub fn new(root: &[u8], now: Timestamp) -> Result<TrustedSet, TrustError> {
        let envelope = Envelope::<Root>::parse("root", root)?;
        let keys = role_keys(&envelope.signed, "root")?;
        envelope.check_threshold("root", keys, &envelope.signed.keys)?;
        Ok(TrustedSet {
            now,
            root: Trusted { envelope },
            timestamp: None,
            snapshot: None,
            targets: BTreeMap::new(),
        })
    }

    pub fn root(&self) -> &Root {
        &self.root.envelope.signed
    }

    /// The canonical bytes of the trusted root's `signed`, e.g. to persist what is trusted.
    pub fn root_version(&self) -> u64 {
        self.root().version
    }

    pub fn timestamp(&self) -> Option<&TimestampRole> {
        self.timestamp.as_ref().map(|t| &t.envelope.signed)
    }

    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref().map(|t| &t.envelope.signed)
    }

    pub fn targets(&self, role: &str) -> Option<&Targets> {
        self.targets.get(role).map(|t| &t.envelope.signed)
    }

    /// The next root (`N+1.root.json`): signed by a threshold of the trusted root's root keys
    /// *and* of its own, and exactly one version newer. When the timestamp or snapshot keys
    /// changed, what they signed is forgotten (fast-forward attack recovery, TUF 5.3.11).
    pub fn update_root(&mut self, bytes: &[u8]) -> Result<(), TrustError> {
        if self.timestamp.is_some() {
            return Err(TrustError::OutOfOrder {
                role: "root (roots are updated before the timestamp)".into(),
            });
        }
        let envelope = Envelope::<Root>::parse("root", bytes)?;
        let trusted = self.root();
        envelope.check_threshold("root", role_keys(trusted, "root")?, &trusted.keys)?;
        let expected = trusted.version + 1;
        if envelope.signed.version != expected {
            return Err(TrustError::WrongVersion {
                role: "root".into(),
                offered: envelope.signed.version,
                expected,
                by: "the root rotation chain",
            });
        }
        envelope.check_threshold(
            "root",
            role_keys(&envelope.signed, "root")?,
            &envelope.signed.keys,
        )?;
        self.root = Trusted { envelope };
        Ok(())
    }

    /// After the last root: it must not have expired.
    pub fn root_update_finished(&self) -> Result<(), TrustError> {
        check_not_expired("root", &self.root.envelope, self.now)
    }

    /// Whether `previous_root`'s keys for `role` differ from the trusted root's: the client
    /// then deletes its stored timestamp/snapshot (they may have been signed by a compromised
    /// key and pinned to a huge version).
    pub fn keys_rotated(&self, previous_root: &Root, role: &str) -> bool {
        let keys_of = |root: &Root| {
            root.roles.get(role).map(|r| {
                let mut ids = r.keyids.clone();
                ids.sort();
                (ids, r.threshold)
            })
        };
        keys_of(previous_root) != keys_of(self.root())
    }

    /// `timestamp.json`, compared with `stored` (the last one this client trusted, if kept):
    /// signed by the root's timestamp keys, not older, not naming an older snapshot, not
    /// expired. Returns false when it is the very version already trusted (nothing new).
    pub fn update_timestamp(
        &mut self,
        bytes: &[u8],
        stored: Option<&TimestampRole>,
    ) -> Result<bool, TrustError> {
        if self.snapshot.is_some() {
            return Err(TrustError::OutOfOrder {
                role: "timestamp (updated before the snapshot)".into(),
            });
        }
        self.root_update_finished()?;
        let envelope = Envelope::<TimestampRole>::parse("timestamp", bytes)?;
        let root = self.root();
        envelope.check_threshold("timestamp", role_keys(root, "timestamp")?, &root.keys)?;
        let snapshot_meta =
            envelope
                .signed
                .meta
                .get("snapshot.json")
                .ok_or_else(|| TrustError::Mismatch {
                    role: "timestamp".into(),
                    detail: "it names no snapshot.json".into(),
                })?;
        let previous = self
            .timestamp
            .as_ref()
            .map(|t| &t.envelope.signed)
            .or(stored);
        let mut unchanged = false;
        if let Some(previous) = previous {
            if envelope.signed.version < previous.version {
                return Err(TrustError::Rollback {
                    role: "timestamp".into(),
                    offered: envelope.signed.version,
                    trusted: previous.version,
                });
            }
            unchanged = envelope.signed.version == previous.version;
            if let Some(old) = previous.meta.get("snapshot.json")
                && snapshot_meta.version < old.version
            {
                return Err(TrustError::Rollback {
                    role: "snapshot (as the timestamp names it)".into(),
                    offered: snapshot_meta.version,
                    trusted: old.version,
                });
            }
        }
        check_not_expired("timestamp", &envelope, self.now)?;
        self.timestamp = Some(Trusted { envelope });
        Ok(!unchanged)
    }

    /// What the trusted timestamp says of the snapshot (to fetch `N.snapshot.json`, at most
    /// its length).
    pub fn snapshot_meta(&self) -> Result<&MetaFile, TrustError> {
        self.timestamp()
            .and_then(|t| t.meta.get("snapshot.json"))
            .ok_or(TrustError::OutOfOrder {
                role: "timestamp".into(),
            })
    }

    /// The snapshot: the length and hashes the timestamp lists, the root's snapshot keys, the
    /// version the timestamp names, no targets role older than in `stored` (the last trusted
    /// snapshot) or dropped from it, not expired.
    pub fn update_snapshot(
        &mut self,
        bytes: &[u8],
        stored: Option<&Snapshot>,
    ) -> Result<(), TrustError> {
        if !self.targets.is_empty() {
            return Err(TrustError::OutOfOrder {
                role: "snapshot (updated before targets)".into(),
            });
        }
        let meta = self.snapshot_meta()?.clone();
        matches(meta.length, meta.hashes.as_ref(), bytes).map_err(|detail| {
            TrustError::Mismatch {
                role: "snapshot".into(),
                detail,
            }
        })?;
        let envelope = Envelope::<Snapshot>::parse("snapshot", bytes)?;
        let root = self.root();
        envelope.check_threshold("snapshot", role_keys(root, "snapshot")?, &root.keys)?;
        if envelope.signed.version != meta.version {
            return Err(TrustError::WrongVersion {
                role: "snapshot".into(),
                offered: envelope.signed.version,
                expected: meta.version,
                by: "the timestamp",
            });
        }
        if let Some(previous) = stored {
            for (name, old) in &previous.meta {
                match envelope.signed.meta.get(name) {
                    None => {
                        return Err(TrustError::Dropped { role: name.clone() });
                    }
                    Some(new) if new.version < old.version => {
                        return Err(TrustError::Rollback {
                            role: name.trim_end_matches(".json").to_owned(),
                            offered: new.version,
                            trusted: old.version,
                        });
                    }
                    Some(_) => {}
                }
            }
        }
        check_not_expired("snapshot", &envelope, self.now)?;
        self.snapshot = Some(Trusted { envelope });
        Ok(())
    }

    /// What the trusted snapshot says of a targets role (to fetch `N.<role>.json`).
    pub fn targets_meta(&self, role: &str) -> Result<&MetaFile, TrustError> {
        let snapshot = self.snapshot().ok_or(TrustError::OutOfOrder {
            role: "snapshot".into(),
        })?;
        snapshot
            .meta
            .get(&format!("{role}.json"))
            .ok_or_else(|| TrustError::Mismatch {
                role: role.to_owned(),
                detail: "the snapshot does not list it".into(),
            })
    }

    /// The top-level `targets` role.
    pub fn update_targets(&mut self, bytes: &[u8]) -> Result<(), TrustError> {
        let root = self.root().clone();
        let keys = role_keys(&root, "targets")?.clone();
        self.update_targets_role("targets", &keys, &root.keys, bytes)
    }

    /// A delegated targets role, signed by the keys its delegator lists for it.
    pub fn update_delegated(
        &mut self,
        role: &str,
        delegator: &str,
        bytes: &[u8],
    ) -> Result<(), TrustError> {
        let parent = self
            .targets(delegator)
            .ok_or_else(|| TrustError::OutOfOrder {
                role: delegator.to_owned(),
            })?;
        let not_delegated = || TrustError::NotDelegated {
            role: role.to_owned(),
            delegator: delegator.to_owned(),
        };
        let delegations = parent.delegations.as_ref().ok_or_else(not_delegated)?;
        let delegated = delegations
            .roles
            .iter()
            .find(|r| r.name == role)
            .ok_or_else(not_delegated)?;
        // A role root pins may be delegated only to the pinned keys: whoever holds the online
        // targets key (the center) cannot hand a vendor's packages to a key of its own.
        if let Some(pinned) = self.root().pinned_roles.get(role) {
            // The key id must also be the listed key's own (its canonical JSON's SHA-256), or a
            // forged delegation could map a pinned id to another key.
            let forged = |k: &&String| {
                !pinned.contains(k)
                    || delegations.keys.get(*k).map(|key| key.key_id()).as_ref() != Some(*k)
            };
            if let Some(keyid) = delegated.keyids.iter().find(forged) {
                return Err(TrustError::Unpinned {
                    role: role.to_owned(),
                    keyid: keyid.clone(),
                    pinned: pinned.clone(),
                });
            }
        }
        let keys = RoleKeys {
            keyids: delegated.keyids.clone(),
            threshold: delegated.threshold,
        };
        let key_map = delegations.keys.clone();
        self.update_targets_role(role, &keys, &key_map, bytes)
    }

    fn update_targets_role(
        &mut self,
        role: &str,
        keys: &RoleKeys,
        key_map: &BTreeMap<String, crate::keys::PublicKey>,
        bytes: &[u8],
    ) -> Result<(), TrustError> {
        let meta = self.targets_meta(role)?.clone();
        matches(meta.length, meta.hashes.as_ref(), bytes).map_err(|detail| {
            TrustError::Mismatch {
                role: role.to_owned(),
                detail,
            }
        })?;
        let envelope = Envelope::<Targets>::parse(role, bytes)?;
        envelope.check_threshold(role, keys, key_map)?;
        if envelope.signed.version != meta.version {
            return Err(TrustError::WrongVersion {
                role: role.to_owned(),
                offered: envelope.signed.version,
                expected: meta.version,
                by: "the snapshot",
            });
        }
        check_not_expired(role, &envelope, self.now)?;
        self.targets.insert(role.to_owned(), Trusted { envelope });
        Ok(())
    }

    /// Where `path` is described: searches `targets`, then the roles delegated for that path
    /// in order (pre-order, depth first, stopping at a terminating delegation), as TUF §5.7.7.
    /// `Ok(None)` while a role to visit is not loaded yet: its name is in `Err`'s place via
    /// [`TargetSearch::NeedRole`].
    pub fn find_target(&self, path: &str) -> TargetSearch {
        let mut to_visit: Vec<(String, String)> = vec![("targets".into(), String::new())];
        let mut visited = 0;
        while let Some((role, delegator)) = to_visit.pop() {
            visited += 1;
            if visited > MAX_DELEGATIONS {
                break;
            }
            let Some(targets) = self.targets(&role) else {
                return TargetSearch::NeedRole { role, delegator };
            };
            if let Some(file) = targets.targets.get(path) {
                return TargetSearch::Found {
                    role,
                    file: file.clone(),
                };
            }
            let Some(delegations) = &targets.delegations else {
                continue;
            };
            let mut children = Vec::new();
            for delegated in &delegations.roles {
                if delegated_for(delegated, path) {
                    children.push((delegated.name.clone(), role.clone()));
                    if delegated.terminating {
                        break;
                    }
                }
            }
            // Visited in listing order: push in reverse onto the stack.
            to_visit.extend(children.into_iter().rev());
        }
        TargetSearch::NotFound
    }
}

/// The result of [`TrustedSet::find_target`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetSearch {
    Found {
        role: String,
        file: TargetFile,
    },
    /// Load this role (delegated by `delegator`) and search again.
    NeedRole {
        role: String,
        delegator: String,
    },
    NotFound,
}

/// Whether a delegation covers `path`: a pattern matches when it has as many `/`-separated
/// components and each matches shell-style (`*`, `?`), as python-tuf reads TUF's `paths`.
fn delegated_for(role: &DelegatedRole, path: &str) -> bool {
    if let Some(patterns) = &role.paths {
        return patterns.iter().any(|pattern| path_matches(pattern, path));
    }
    if let Some(prefixes) = &role.path_hash_prefixes {
        use sha2::{Digest, Sha256};
        let digest = hex::encode(Sha256::digest(path.as_bytes()));
        return prefixes
            .iter()
            .any(|prefix| digest.starts_with(prefix.as_str()));
    }
    false
}

/// Whether one of TUF's `paths` patterns matches `path`: as many `/`-separated components,
/// each matching shell-style.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let parts: Vec<&str> = pattern.split('/').collect();
    let names: Vec<&str> = path.split('/').collect();
    parts.len() == names.len()
        && parts
            .iter()
            .zip(&names)
            .all(|(p, n)| glob(p.as_bytes(), n.as_bytes()))
}

/// Shell-style matching of one component: `*` any run, `?` one byte, `[…]` not supported
/// (matched literally), no backtracking blow-up (iterative with one saved star).
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == name[n]) && pattern[p] != b'*'
        {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((star_p, star_n)) = star {
            p = star_p + 1;
            n = star_n + 1;
            star = Some((star_p, star_n + 1));
        } else {
            return false;
        }
    }
    while p < pattern.len() && pattern[p] == b'*' {
        p += 1;
    }
    p == pattern.len()
}

/// Checks a downloaded target against what signed metadata says of it.
pub fn verify_target(path: &str, file: &TargetFile, bytes: &[u8]) -> Result<(), TrustError> {
    matches(Some(file.length), Some(&file.hashes), bytes).map_err(|detail| TrustError::Target {
        path: path.to_owned(),
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn glob_matches_like_fnmatch_within_a_component() {
        assert!(glob(b"*", b"anything"));
        assert!(glob(b"vendor-*.tar.gz", b"vendor-a-1.0.tar.gz"));
        assert!(glob(b"a?c", b"abc"));
        assert!(!glob(b"a?c", b"ac"));
        assert!(!glob(b"vendor-*", b"other-1"));
        assert!(glob(b"*a*b*", b"xxaxxbxx"));
        assert!(!glob(b"*a*b", b"xxaxxbxxc"));
        assert!(glob(b"", b""));
        assert!(!glob(b"", b"x"));
    }
}
