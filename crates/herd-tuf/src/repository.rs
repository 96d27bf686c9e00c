//! The repository side of TUF, pure: given the root chain, the online keys and what each
//! targets role should list, [`Repository::update`] signs the documents that changed or are
//! about to expire — delegated roles, top-level targets, snapshot, timestamp, in that order —
//! and returns them as files to serve (`N.ROLE.json`, `timestamp.json`), each version exactly
//! one more than the last.
//!
//! The center keeps one `Repository` per process, feeds it what its catalog says each role
//! should list ([`Desired`]), stores and serves what comes out, and calls `update` again when
//! the catalog changes and periodically (a role is re-signed once less than half its lifetime
//! remains, so a client never sees it expire while the center runs). A role signed elsewhere
//! (a vendor's own key) is handed over as signed bytes and only checked and adopted.
//!
//! No I/O and no clock: `now` is an argument, files are bytes.

use std::collections::BTreeMap;

use herd_core::Timestamp;
use thiserror::Error;

use crate::keys::{PublicKey, SigningKey};
use crate::metadata::{
    DelegatedRole, Delegations, Envelope, MetaFile, MetadataError, Role, RoleKeys, Root,
    SPEC_VERSION, Snapshot, Targets, TimestampRole, format_expiry, hashes_of, sign,
};

/// How long each online role's signature is good for. Defaults a deployment would use:
/// timestamp hours (a client is never frozen for longer), snapshot and targets days, root a year.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetimes {
    pub timestamp_secs: i64,
    pub snapshot_secs: i64,
    pub targets_secs: i64,
    pub root_secs: i64,
}

impl Default for Lifetimes {
    fn default() -> Lifetimes {
        Lifetimes {
            timestamp_secs: 6 * 3600,
            snapshot_secs: 7 * 86_400,
            targets_secs: 7 * 86_400,
            root_secs: 365 * 86_400,
        }
    }
}

/// The keys the repository signs with while online.
pub struct OnlineKeys {
    pub timestamp: SigningKey,
    pub snapshot: SigningKey,
    pub targets: SigningKey,
}

/// What one delegated targets role should be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredRole {
    pub name: String,
    pub paths: Vec<String>,
    pub terminating: bool,
    /// The keys that sign it and how many must.
    pub keys: Vec<PublicKey>,
    pub threshold: u32,
    pub content: RoleContent,
}

/// Who writes a delegated role's document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoleContent {
    /// The repository signs it with the online targets key (which must be among `keys`).
    Online(BTreeMap<String, crate::metadata::TargetFile>),
    /// Signed elsewhere (a vendor's key): the document as uploaded, adopted once it is
    /// checked; `None` until the first one arrives (the role is delegated but serves nothing).
    Signed(Option<Vec<u8>>),
}

/// Everything the repository should list, in delegation order (the first role whose paths
/// match a target is searched first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    pub roles: Vec<DesiredRole>,
}

/// A document to serve under `/tuf/metadata/`, by its file name there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    pub name: String,
    pub role: String,
    pub version: u64,
    pub expires: Timestamp,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RepositoryError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("role {role}: {why}")]
    Role { role: String, why: String },
    #[error("the root chain is empty or broken: {0}")]
    RootChain(String),
}

/// The latest signed state of one role.
#[derive(Clone, Debug)]
struct Current {
    version: u64,
    expires: Timestamp,
    bytes: Vec<u8>,
    /// The key ids its signatures name: a document the repository signs online is signed
    /// again when the online key that should sign it is not among them (a rotated key).
    signers: Vec<String>,
}

impl Current {
    fn signed(version: u64, expires: Timestamp, bytes: Vec<u8>, key: &SigningKey) -> Current {
        Current {
            version,
            expires,
            bytes,
            signers: vec![key.key_id()],
        }
    }

    fn signed_by(&self, key: &SigningKey) -> bool {
        self.signers.contains(&key.key_id())
    }
}

impl std::fmt::Debug for OnlineKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnlineKeys")
            .field("timestamp", &self.timestamp.key_id())
            .field("snapshot", &self.snapshot.key_id())
            .field("targets", &self.targets.key_id())
            .finish()
    }
}

/// A repository's signed state. See the module documentation.
#[derive(Debug)]
pub struct Repository {
    roots: Vec<Vec<u8>>,
    root: Root,
    keys: OnlineKeys,
    lifetimes: Lifetimes,
    targets: Option<(Current, Targets)>,
    delegated: BTreeMap<String, (Current, Targets)>,
    snapshot: Option<(Current, Snapshot)>,
    timestamp: Option<Current>,
}

fn parse_current<T: Role>(name: &str, bytes: &[u8]) -> Result<(Current, T), RepositoryError> {
    let envelope = Envelope::<T>::parse(name, bytes)?;
    let expires = envelope.expires(name)?;
    Ok((
        Current {
            version: envelope.signed.version(),
            expires,
            bytes: bytes.to_vec(),
            signers: envelope
                .signatures
                .iter()
                .map(|s| s.keyid.clone())
                .collect(),
        },
        envelope.signed,
    ))
}

impl Repository {
    /// A repository serving `roots` (every signed root, version 1 first), signing with `keys`,
    /// which must be the ones the newest root names for timestamp, snapshot and targets.
    pub fn new(
        roots: Vec<Vec<u8>>,
        keys: OnlineKeys,
        lifetimes: Lifetimes,
    ) -> Result<Repository, RepositoryError> {
        let root = check_root_chain(&roots)?;
        for (role, key) in [
            ("timestamp", &keys.timestamp),
            ("snapshot", &keys.snapshot),
            ("targets", &keys.targets),
        ] {
            let named = root
                .roles
                .get(role)
                .is_some_and(|r| r.keyids.contains(&key.key_id()));
            if !named {
                return Err(RepositoryError::Role {
                    role: role.to_owned(),
                    why: format!(
                        "root version {} does not name the online key {} for it",
                        root.version,
                        key.key_id()
                    ),
                });
            }
        }
        Ok(Repository {
            roots,
            root,
            keys,
            lifetimes,
            targets: None,
            delegated: BTreeMap::new(),
            snapshot: None,
            timestamp: None,
        })
    }

    /// Continues from documents signed before (read back from storage): each file's version
    /// is where the next one counts from. Files of unknown roles are delegated roles.
    pub fn resume(&mut self, files: &[(String, Vec<u8>)]) -> Result<(), RepositoryError> {
        for (role, bytes) in files {
            match role.as_str() {
                "root" => {}
                "timestamp" => {
                    self.timestamp = Some(parse_current::<TimestampRole>(role, bytes)?.0)
                }
                "snapshot" => self.snapshot = Some(parse_current::<Snapshot>(role, bytes)?),
                "targets" => self.targets = Some(parse_current::<Targets>(role, bytes)?),
                _ => {
                    let current = parse_current::<Targets>(role, bytes)?;
                    self.delegated.insert(role.clone(), current);
                }
            }
        }
        Ok(())
    }

    /// The newest root.
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// Every signed root, version 1 first.
    pub fn roots(&self) -> &[Vec<u8>] {
        &self.roots
    }

    /// Serves a new root: it must be the next version, signed by a threshold of the current
    /// root's keys and of its own, and name the online keys this repository holds (after
    /// [`Repository::set_online_keys`] when they change with it). Top-level roles are
    /// re-signed at the next `update` (their keys may have changed).
    pub fn add_root(&mut self, bytes: Vec<u8>) -> Result<(), RepositoryError> {
        let mut chain = self.roots.clone();
        chain.push(bytes);
        let root = check_root_chain(&chain)?;
        self.roots = chain;
        self.root = root;
        // Force new top-level documents signed with whatever keys the root now names.
        if let Some((current, _)) = &mut self.targets {
            current.expires = Timestamp::from_unix_seconds(0);
        }
        if let Some((current, _)) = &mut self.snapshot {
            current.expires = Timestamp::from_unix_seconds(0);
        }
        if let Some(current) = &mut self.timestamp {
            current.expires = Timestamp::from_unix_seconds(0);
        }
        Ok(())
    }

    /// Replaces the online keys (a rotation the newest root already names).
    pub fn set_online_keys(&mut self, keys: OnlineKeys) {
        self.keys = keys;
    }

    /// The current timestamp document, if one was signed.
    pub fn timestamp_bytes(&self) -> Option<&[u8]> {
        self.timestamp.as_ref().map(|c| c.bytes.as_slice())
    }

    /// Signs what changed or expires within half its lifetime, and returns the new files in
    /// the order a reader must see them stored (delegated roles, targets, snapshot, timestamp:
    /// nothing names a document that is not already there).
    pub fn update(
        &mut self,
        desired: &Desired,
        now: Timestamp,
    ) -> Result<Vec<File>, RepositoryError> {
        let mut out = Vec::new();
        let lifetimes = self.lifetimes;
        let stale =
            |current: &Current, lifetime: i64| current.expires < now.plus_seconds(lifetime / 2);
        let targets_key_id = self.keys.targets.key_id();

        // Delegated roles.
        let mut delegations = Delegations {
            keys: BTreeMap::new(),
            roles: Vec::new(),
        };
        let mut any_changed = false;
        for role in &desired.roles {
            let keyids: Vec<String> = role.keys.iter().map(PublicKey::key_id).collect();
            for key in &role.keys {
                delegations.keys.insert(key.key_id(), key.clone());
            }
            delegations.roles.push(DelegatedRole {
                name: role.name.clone(),
                keyids: keyids.clone(),
                threshold: role.threshold,
                terminating: role.terminating,
                paths: Some(role.paths.clone()),
                path_hash_prefixes: None,
            });
            match &role.content {
                RoleContent::Online(targets) => {
                    if !keyids.contains(&targets_key_id) {
                        return Err(RepositoryError::Role {
                            role: role.name.clone(),
                            why: "the online targets key does not sign it".into(),
                        });
                    }
                    let previous = self.delegated.get(&role.name);
                    let unchanged = previous.is_some_and(|(current, signed)| {
                        &signed.targets == targets
                            && !stale(current, lifetimes.targets_secs)
                            && current.signed_by(&self.keys.targets)
                    });
                    if unchanged {
                        continue;
                    }
                    let version = previous.map_or(1, |(c, _)| c.version + 1);
                    let expires = now.plus_seconds(lifetimes.targets_secs);
                    let signed = Targets {
                        type_: "targets".into(),
                        spec_version: SPEC_VERSION.into(),
                        version,
                        expires: format_expiry(expires),
                        targets: targets.clone(),
                        delegations: None,
                    };
                    let bytes = sign(&signed, &[&self.keys.targets]);
                    out.push(file(&role.name, version, expires, &bytes));
                    self.delegated.insert(
                        role.name.clone(),
                        (
                            Current::signed(version, expires, bytes, &self.keys.targets),
                            signed,
                        ),
                    );
                    any_changed = true;
                }
                RoleContent::Signed(None) => {}
                RoleContent::Signed(Some(bytes)) => {
                    if self
                        .delegated
                        .get(&role.name)
                        .is_some_and(|(current, _)| &current.bytes == bytes)
                    {
                        continue;
                    }
                    let envelope = Envelope::<Targets>::parse(&role.name, bytes)?;
                    let keys = role.keys.iter().map(|k| (k.key_id(), k.clone())).collect();
                    envelope.check_threshold(
                        &role.name,
                        &RoleKeys {
                            keyids: keyids.clone(),
                            threshold: role.threshold,
                        },
                        &keys,
                    )?;
                    let expires = envelope.expires(&role.name)?;
                    if expires <= now {
                        return Err(RepositoryError::Role {
                            role: role.name.clone(),
                            why: format!("it expired at {}", envelope.signed.expires),
                        });
                    }
                    let version = envelope.signed.version;
                    if let Some((current, _)) = self.delegated.get(&role.name)
                        && version <= current.version
                    {
                        return Err(RepositoryError::Role {
                            role: role.name.clone(),
                            why: format!(
                                "its version {version} is not above the current {}",
                                current.version
                            ),
                        });
                    }
                    if envelope.signed.delegations.is_some() {
                        return Err(RepositoryError::Role {
                            role: role.name.clone(),
                            why: "a vendor's role may not delegate further".into(),
                        });
                    }
                    for path in envelope.signed.targets.keys() {
                        if !role
                            .paths
                            .iter()
                            .any(|p| crate::client::path_matches(p, path))
                        {
                            return Err(RepositoryError::Role {
                                role: role.name.clone(),
                                why: format!("it lists {path}, outside its paths {:?}", role.paths),
                            });
                        }
                    }
                    out.push(file(&role.name, version, expires, bytes));
                    self.delegated.insert(
                        role.name.clone(),
                        (
                            Current {
                                version,
                                expires,
                                bytes: bytes.clone(),
                                signers: envelope
                                    .signatures
                                    .iter()
                                    .map(|s| s.keyid.clone())
                                    .collect(),
                            },
                            envelope.signed,
                        ),
                    );
                    any_changed = true;
                }
            }
        }

        // Top-level targets: lists nothing itself, delegates everything.
        let delegations = Some(delegations);
        let targets_changed = match &self.targets {
            Some((current, signed)) => {
                signed.delegations != delegations
                    || stale(current, lifetimes.targets_secs)
                    || !current.signed_by(&self.keys.targets)
            }
            None => true,
        };
        if targets_changed {
            let version = self.targets.as_ref().map_or(1, |(c, _)| c.version + 1);
            let expires = now.plus_seconds(lifetimes.targets_secs);
            let signed = Targets {
                type_: "targets".into(),
                spec_version: SPEC_VERSION.into(),
                version,
                expires: format_expiry(expires),
                targets: BTreeMap::new(),
                delegations,
            };
            let bytes = sign(&signed, &[&self.keys.targets]);
            out.push(file("targets", version, expires, &bytes));
            self.targets = Some((
                Current::signed(version, expires, bytes, &self.keys.targets),
                signed,
            ));
            any_changed = true;
        }

        // Snapshot: every targets role's version (roles no longer delegated drop out).
        let mut meta = BTreeMap::new();
        if let Some((current, _)) = &self.targets {
            meta.insert("targets.json".to_owned(), meta_version(current.version));
        }
        for role in &desired.roles {
            if let Some((current, _)) = self.delegated.get(&role.name) {
                meta.insert(format!("{}.json", role.name), meta_version(current.version));
            }
        }
        let snapshot_changed = match &self.snapshot {
            Some((current, signed)) => {
                any_changed
                    || signed.meta != meta
                    || stale(current, lifetimes.snapshot_secs)
                    || !current.signed_by(&self.keys.snapshot)
            }
            None => true,
        };
        if snapshot_changed {
            let version = self.snapshot.as_ref().map_or(1, |(c, _)| c.version + 1);
            let expires = now.plus_seconds(lifetimes.snapshot_secs);
            let signed = Snapshot {
                type_: "snapshot".into(),
                spec_version: SPEC_VERSION.into(),
                version,
                expires: format_expiry(expires),
                meta,
            };
            let bytes = sign(&signed, &[&self.keys.snapshot]);
            out.push(file("snapshot", version, expires, &bytes));
            self.snapshot = Some((
                Current::signed(version, expires, bytes, &self.keys.snapshot),
                signed,
            ));
        }

        // Timestamp: the snapshot's version, length and hashes.
        let timestamp_stale = match &self.timestamp {
            Some(current) => {
                snapshot_changed
                    || stale(current, lifetimes.timestamp_secs)
                    || !current.signed_by(&self.keys.timestamp)
            }
            None => true,
        };
        if timestamp_stale {
            let (snapshot, _) = self.snapshot.as_ref().expect("signed above");
            let version = self.timestamp.as_ref().map_or(1, |c| c.version + 1);
            let expires = now.plus_seconds(lifetimes.timestamp_secs);
            let signed = TimestampRole {
                type_: "timestamp".into(),
                spec_version: SPEC_VERSION.into(),
                version,
                expires: format_expiry(expires),
                meta: BTreeMap::from([(
                    "snapshot.json".to_owned(),
                    MetaFile {
                        version: snapshot.version,
                        length: Some(snapshot.bytes.len() as u64),
                        hashes: Some(hashes_of(&snapshot.bytes)),
                    },
                )]),
            };
            let bytes = sign(&signed, &[&self.keys.timestamp]);
            out.push(file("timestamp", version, expires, &bytes));
            self.timestamp = Some(Current::signed(
                version,
                expires,
                bytes,
                &self.keys.timestamp,
            ));
        }
        Ok(out)
    }
}

fn meta_version(version: u64) -> MetaFile {
    MetaFile {
        version,
        length: None,
        hashes: None,
    }
}

/// The file name a document is served under: `timestamp.json`, or `N.ROLE.json` (consistent
/// snapshots; root is also served as `root.json` by whoever serves the newest).
pub fn file_name(role: &str, version: u64) -> String {
    if role == "timestamp" {
        "timestamp.json".to_owned()
    } else {
        format!("{version}.{role}.json")
    }
}

fn file(role: &str, version: u64, expires: Timestamp, bytes: &[u8]) -> File {
    File {
        name: file_name(role, version),
        role: role.to_owned(),
        version,
        expires,
        bytes: bytes.to_vec(),
    }
}

/// Checks a root chain as a client walks it (each version one more than the last, signed by a
/// threshold of the previous root's keys and of its own) and returns the newest root.
/// Expiry is not checked: an expired root in the middle of the chain is normal.
pub fn check_root_chain(roots: &[Vec<u8>]) -> Result<Root, RepositoryError> {
    let mut trusted: Option<Root> = None;
    for (i, bytes) in roots.iter().enumerate() {
        let name = format!("{}.root.json", i + 1);
        let envelope = Envelope::<Root>::parse(&name, bytes)?;
        if envelope.signed.version != i as u64 + 1 {
            return Err(RepositoryError::RootChain(format!(
                "{name} says it is version {}",
                envelope.signed.version
            )));
        }
        let signer = trusted.as_ref().unwrap_or(&envelope.signed);
        let role = |root: &Root| {
            root.roles
                .get("root")
                .cloned()
                .ok_or_else(|| RepositoryError::RootChain(format!("{name} has no root role")))
        };
        envelope.check_threshold(&name, &role(signer)?, &signer.keys)?;
        envelope.check_threshold(&name, &role(&envelope.signed)?, &envelope.signed.keys)?;
        trusted = Some(envelope.signed);
    }
    trusted.ok_or_else(|| RepositoryError::RootChain("no root".into()))
}

/// A root naming `root_keys` (threshold `root_threshold`) and one online key for each of
/// timestamp, snapshot and targets: version 1 of a new repository, or the next version
/// (`previous`) with the keys changed. Sign it with [`sign`] and a threshold of the previous
/// root's keys and of its own.
pub fn root_document(
    previous: Option<&Root>,
    root_keys: &[PublicKey],
    root_threshold: u32,
    online: [&PublicKey; 3],
    expires: Timestamp,
) -> Root {
    let mut keys = BTreeMap::new();
    for key in root_keys.iter().chain(online) {
        keys.insert(key.key_id(), key.clone());
    }
    let role = |keys: &[&PublicKey], threshold| RoleKeys {
        keyids: keys.iter().map(|k| k.key_id()).collect(),
        threshold,
    };
    let [timestamp, snapshot, targets] = online;
    Root {
        type_: "root".into(),
        spec_version: SPEC_VERSION.into(),
        version: previous.map_or(1, |p| p.version + 1),
        expires: format_expiry(expires),
        consistent_snapshot: true,
        keys,
        pinned_roles: BTreeMap::new(),
        roles: BTreeMap::from([
            (
                "root".to_owned(),
                role(&root_keys.iter().collect::<Vec<_>>(), root_threshold),
            ),
            ("timestamp".to_owned(), role(&[timestamp], 1)),
            ("snapshot".to_owned(), role(&[snapshot], 1)),
            ("targets".to_owned(), role(&[targets], 1)),
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn online() -> OnlineKeys {
        OnlineKeys {
            timestamp: SigningKey::generate().unwrap(),
            snapshot: SigningKey::generate().unwrap(),
            targets: SigningKey::generate().unwrap(),
        }
    }

    fn root_of(root_key: &SigningKey, keys: &OnlineKeys, previous: Option<&Root>) -> Root {
        root_document(
            previous,
            &[root_key.public()],
            1,
            [
                &keys.timestamp.public(),
                &keys.snapshot.public(),
                &keys.targets.public(),
            ],
            Timestamp::from_unix_seconds(10_000_000),
        )
    }

    fn desired(keys: &OnlineKeys) -> Desired {
        Desired {
            roles: vec![DesiredRole {
                name: "herd".into(),
                paths: vec!["herd/*".into()],
                terminating: true,
                keys: vec![keys.targets.public()],
                threshold: 1,
                content: RoleContent::Online(BTreeMap::new()),
            }],
        }
    }

    #[test]
    fn a_resumed_repository_signs_again_what_a_rotated_online_key_signed() {
        let root_key = SigningKey::generate().unwrap();
        let first_keys = online();
        let root1 = root_of(&root_key, &first_keys, None);
        let root1_bytes = sign(&root1, &[&root_key]);
        let now = Timestamp::from_unix_seconds(1_000);
        let mut repository =
            Repository::new(vec![root1_bytes.clone()], first_keys, Lifetimes::default()).unwrap();
        let first_desired = desired(&repository.keys);
        let files = repository.update(&first_desired, now).unwrap();
        assert_eq!(files.len(), 4, "herd, targets, snapshot, timestamp");
        let stored: Vec<(String, Vec<u8>)> = files
            .iter()
            .map(|f| (f.role.clone(), f.bytes.clone()))
            .collect();

        // Resumed with the same keys, nothing is due.
        let same = OnlineKeys {
            timestamp: SigningKey::from_pkcs8(repository.keys.timestamp.pkcs8()).unwrap(),
            snapshot: SigningKey::from_pkcs8(repository.keys.snapshot.pkcs8()).unwrap(),
            targets: SigningKey::from_pkcs8(repository.keys.targets.pkcs8()).unwrap(),
        };
        let mut again =
            Repository::new(vec![root1_bytes.clone()], same, Lifetimes::default()).unwrap();
        again.resume(&stored).unwrap();
        assert!(again.update(&first_desired, now).unwrap().is_empty());

        // Resumed under a root naming new online keys, everything is signed again by them,
        // each version one above the last.
        let new_keys = online();
        let root2 = root_of(&root_key, &new_keys, Some(&root1));
        let root2_bytes = sign(&root2, &[&root_key]);
        let mut rotated = Repository::new(
            vec![root1_bytes, root2_bytes],
            new_keys,
            Lifetimes::default(),
        )
        .unwrap();
        rotated.resume(&stored).unwrap();
        let files = rotated.update(&desired(&rotated.keys), now).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "2.herd.json",
                "2.targets.json",
                "2.snapshot.json",
                "timestamp.json"
            ]
        );
        assert_eq!(files[3].version, 2);
    }
}
