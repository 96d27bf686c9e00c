//! A TUF repository built in memory for tests: root (threshold 2 of 3 keys), timestamp,
//! snapshot, targets delegating `maker-a/*` to maker A's own key, every document signed and
//! linked (lengths, hashes, versions) the way the center will.

#![allow(dead_code)] // Each test binary uses a different part.

use std::collections::BTreeMap;

use herd_core::Timestamp;
use herd_tuf::{
    DelegatedRole, Delegations, MetaFile, RoleKeys, Root, SigningKey, Snapshot, TargetFile,
    Targets, TimestampRole, format_expiry, hashes_of, sign,
};

pub const SPEC: &str = "1.0.31";
pub const PACKAGE_PATH: &str = "maker-a/vaccine-a-1.0.tar.gz";
pub const PACKAGE: &[u8] = b"the genuine vaccine a package";

pub fn now() -> Timestamp {
    Timestamp::parse("2026-12-05T12:00:00Z").unwrap()
}

pub fn days(n: i64) -> Timestamp {
    days_after(now(), n)
}

fn days_after(at: Timestamp, n: i64) -> Timestamp {
    at.plus_seconds(n * 86_400)
}

pub struct Repo {
    pub root_keys: Vec<SigningKey>,
    pub timestamp_key: SigningKey,
    pub snapshot_key: SigningKey,
    pub targets_key: SigningKey,
    pub vendor_key: SigningKey,
    pub root: Root,
    pub timestamp: TimestampRole,
    pub snapshot: Snapshot,
    pub targets: Targets,
    pub vendor: Targets,
}

fn role(keys: &[&SigningKey], threshold: u32) -> RoleKeys {
    RoleKeys {
        keyids: keys.iter().map(|k| k.key_id()).collect(),
        threshold,
    }
}

impl Repo {
    /// A repository whose expiries count from the tests' fixed `now()`.
    pub fn new() -> Repo {
        Repo::new_at(now())
    }

    /// A repository whose expiries count from `at` (the real time, for a client with a clock).
    pub fn new_at(at: Timestamp) -> Repo {
        let days = |n| days_after(at, n);
        let root_keys: Vec<SigningKey> = (0..3).map(|_| SigningKey::generate().unwrap()).collect();
        let timestamp_key = SigningKey::generate().unwrap();
        let snapshot_key = SigningKey::generate().unwrap();
        let targets_key = SigningKey::generate().unwrap();
        let vendor_key = SigningKey::generate().unwrap();
        let mut keys = BTreeMap::new();
        for key in root_keys
            .iter()
            .chain([&timestamp_key, &snapshot_key, &targets_key])
        {
            keys.insert(key.key_id(), key.public());
        }
        let root = Root {
            type_: "root".into(),
            spec_version: SPEC.into(),
            version: 1,
            expires: format_expiry(days(365)),
            consistent_snapshot: true,
            keys,
            pinned_roles: BTreeMap::new(),
            roles: BTreeMap::from([
                (
                    "root".to_owned(),
                    role(&root_keys.iter().collect::<Vec<_>>(), 2),
                ),
                ("timestamp".to_owned(), role(&[&timestamp_key], 1)),
                ("snapshot".to_owned(), role(&[&snapshot_key], 1)),
                ("targets".to_owned(), role(&[&targets_key], 1)),
            ]),
        };
        let vendor = Targets {
            type_: "targets".into(),
            spec_version: SPEC.into(),
            version: 1,
            expires: format_expiry(days(30)),
            targets: BTreeMap::from([(
                PACKAGE_PATH.to_owned(),
                TargetFile {
                    length: PACKAGE.len() as u64,
                    hashes: hashes_of(PACKAGE),
                    custom: None,
                },
            )]),
            delegations: None,
        };
        let targets = Targets {
            type_: "targets".into(),
            spec_version: SPEC.into(),
            version: 1,
            expires: format_expiry(days(30)),
            targets: BTreeMap::new(),
            delegations: Some(Delegations {
                keys: BTreeMap::from([(vendor_key.key_id(), vendor_key.public())]),
                roles: vec![DelegatedRole {
                    name: "maker-a".into(),
                    keyids: vec![vendor_key.key_id()],
                    threshold: 1,
                    terminating: true,
                    paths: Some(vec!["maker-a/*".into()]),
                    path_hash_prefixes: None,
                }],
            }),
        };
        let mut repo = Repo {
            root_keys,
            timestamp_key,
            snapshot_key,
            targets_key,
            vendor_key,
            root,
            timestamp: TimestampRole {
                type_: "timestamp".into(),
                spec_version: SPEC.into(),
                version: 0,
                expires: format_expiry(days(1)),
                meta: BTreeMap::new(),
            },
            snapshot: Snapshot {
                type_: "snapshot".into(),
                spec_version: SPEC.into(),
                version: 0,
                expires: format_expiry(days(7)),
                meta: BTreeMap::new(),
            },
            targets,
            vendor,
        };
        repo.publish();
        repo
    }

    pub fn root_bytes(&self) -> Vec<u8> {
        sign(&self.root, &self.root_keys.iter().collect::<Vec<_>>())
    }
    pub fn timestamp_bytes(&self) -> Vec<u8> {
        sign(&self.timestamp, &[&self.timestamp_key])
    }
    pub fn snapshot_bytes(&self) -> Vec<u8> {
        sign(&self.snapshot, &[&self.snapshot_key])
    }
    pub fn targets_bytes(&self) -> Vec<u8> {
        sign(&self.targets, &[&self.targets_key])
    }
    pub fn vendor_bytes(&self) -> Vec<u8> {
        sign(&self.vendor, &[&self.vendor_key])
    }

    /// Re-signs snapshot and timestamp over the current targets roles, each one version newer.
    pub fn publish(&mut self) {
        self.snapshot.version += 1;
        self.snapshot.meta = BTreeMap::from([
            (
                "targets.json".to_owned(),
                MetaFile {
                    version: self.targets.version,
                    length: None,
                    hashes: None,
                },
            ),
            (
                "maker-a.json".to_owned(),
                MetaFile {
                    version: self.vendor.version,
                    length: None,
                    hashes: None,
                },
            ),
        ]);
        let snapshot = self.snapshot_bytes();
        self.timestamp.version += 1;
        self.timestamp.meta = BTreeMap::from([(
            "snapshot.json".to_owned(),
            MetaFile {
                version: self.snapshot.version,
                length: Some(snapshot.len() as u64),
                hashes: Some(hashes_of(&snapshot)),
            },
        )]);
    }
}
