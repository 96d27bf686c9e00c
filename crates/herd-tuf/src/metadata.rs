//! TUF 1.0 metadata: the four top-level roles and delegated targets roles as typed documents,
//! the signed envelope `{"signatures": [...], "signed": {...}}`, signing, and checking a
//! role's signature threshold over the canonical JSON of exactly what was received.
//!
//! Signatures are checked over the `signed` object as parsed from the bytes received, never as
//! re-serialised from the typed form: fields this version does not know (TUF lets a repository
//! add them) are covered by the signature all the same.

use std::collections::{BTreeMap, BTreeSet};

use herd_core::Timestamp;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};

use crate::canonical;
use crate::keys::{PublicKey, SigningKey};

/// The specification version Herd writes.
pub const SPEC_VERSION: &str = "1.0.31";

/// Which role a document is, as its `_type` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleType {
    Root,
    Timestamp,
    Snapshot,
    Targets,
}

impl RoleType {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleType::Root => "root",
            RoleType::Timestamp => "timestamp",
            RoleType::Snapshot => "snapshot",
            RoleType::Targets => "targets",
        }
    }
}

/// Something wrong with a metadata document; the message names the role and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("{role}: not valid metadata JSON: {reason}")]
    Malformed { role: String, reason: String },
    #[error("{role}: the document is a {found} document, not {expected}")]
    WrongType {
        role: String,
        expected: &'static str,
        found: String,
    },
    #[error("{role}: {valid} valid signature(s) from its keys, {threshold} needed")]
    Threshold {
        role: String,
        valid: usize,
        threshold: u32,
    },
    #[error("{role}: its expiry {expires:?} is not a UTC time like 2030-01-01T00:00:00Z")]
    BadExpiry { role: String, expires: String },
}

/// A signature in the envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub keyid: String,
    pub sig: String,
}

/// The keys and threshold of a role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleKeys {
    pub keyids: Vec<String>,
    pub threshold: u32,
}

/// `root.json`: the keys of every top-level role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root {
    #[serde(rename = "_type")]
    pub type_: String,
    pub spec_version: String,
    pub version: u64,
    pub expires: String,
    pub consistent_snapshot: bool,
    pub keys: BTreeMap<String, PublicKey>,
    pub roles: BTreeMap<String, RoleKeys>,
    /// Herd's pins of delegated roles' keys (a vendor's `vendor-<id>` role), an extension field
    /// other TUF clients ignore (and still verify, as part of the signed document): a role
    /// named here is trusted only when delegated to keys all among these key ids. Only the
    /// offline root keys sign root, so not even the center can replace a vendor's pinned key.
    #[serde(
        rename = "x-herd-pinned-roles",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub pinned_roles: BTreeMap<String, Vec<String>>,
}

/// What timestamp says of snapshot, and snapshot of each targets role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaFile {
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes: Option<BTreeMap<String, String>>,
}

/// `timestamp.json`: the current snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimestampRole {
    #[serde(rename = "_type")]
    pub type_: String,
    pub spec_version: String,
    pub version: u64,
    pub expires: String,
    pub meta: BTreeMap<String, MetaFile>,
}

/// `N.snapshot.json`: the version of every targets role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    #[serde(rename = "_type")]
    pub type_: String,
    pub spec_version: String,
    pub version: u64,
    pub expires: String,
    pub meta: BTreeMap<String, MetaFile>,
}

/// A target: its length and hashes, and what Herd says of it (`custom`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetFile {
    pub length: u64,
    pub hashes: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<Value>,
}

/// A targets role another one trusts for some paths.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegatedRole {
    pub name: String,
    pub keyids: Vec<String>,
    pub threshold: u32,
    pub terminating: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hash_prefixes: Option<Vec<String>>,
}

/// The roles a targets role delegates to, and their keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegations {
    pub keys: BTreeMap<String, PublicKey>,
    pub roles: Vec<DelegatedRole>,
}

/// `N.targets.json` and delegated roles' `N.<name>.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targets {
    #[serde(rename = "_type")]
    pub type_: String,
    pub spec_version: String,
    pub version: u64,
    pub expires: String,
    pub targets: BTreeMap<String, TargetFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegations: Option<Delegations>,
}

/// What every role document has.
pub trait Role: Serialize + DeserializeOwned {
    const TYPE: RoleType;
    fn version(&self) -> u64;
    fn expires(&self) -> &str;
}

macro_rules! role {
    ($ty:ty, $role:expr) => {
        impl Role for $ty {
            const TYPE: RoleType = $role;
            fn version(&self) -> u64 {
                self.version
            }
            fn expires(&self) -> &str {
                &self.expires
            }
        }
    };
}
role!(Root, RoleType::Root);
role!(TimestampRole, RoleType::Timestamp);
role!(Snapshot, RoleType::Snapshot);
role!(Targets, RoleType::Targets);

/// A document as received: its signatures, the canonical bytes they sign, and the typed role.
#[derive(Clone, Debug)]
pub struct Envelope<T> {
    pub signatures: Vec<Signature>,
    /// Canonical JSON of `signed` exactly as received.
    pub canonical_signed: Vec<u8>,
    pub signed: T,
}

#[derive(Deserialize)]
struct RawEnvelope {
    signatures: Vec<Signature>,
    signed: Value,
}

impl<T: Role> Envelope<T> {
    /// Parses `bytes` as a document of role type `T` (named `name` in messages). Signatures
    /// are not checked here: see [`Envelope::check_threshold`].
    pub fn parse(name: &str, bytes: &[u8]) -> Result<Envelope<T>, MetadataError> {
        let malformed = |reason: String| MetadataError::Malformed {
            role: name.to_owned(),
            reason,
        };
        let raw: RawEnvelope =
            serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        let found = raw
            .signed
            .get("_type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if found != T::TYPE.as_str() {
            return Err(MetadataError::WrongType {
                role: name.to_owned(),
                expected: T::TYPE.as_str(),
                found,
            });
        }
        let canonical_signed =
            canonical::encode(&raw.signed).map_err(|e| malformed(e.to_string()))?;
        let signed: T = serde_json::from_value(raw.signed).map_err(|e| malformed(e.to_string()))?;
        Ok(Envelope {
            signatures: raw.signatures,
            canonical_signed,
            signed,
        })
    }

    /// Checks that at least `role.threshold` distinct keys among `role.keyids` (looked up in
    /// `keys`) signed. A key listed under two ids, or two signatures by one key, count once.
    pub fn check_threshold(
        &self,
        name: &str,
        role: &RoleKeys,
        keys: &BTreeMap<String, PublicKey>,
    ) -> Result<(), MetadataError> {
        let mut signers: BTreeSet<&str> = BTreeSet::new();
        for signature in &self.signatures {
            if !role.keyids.contains(&signature.keyid) {
                continue;
            }
            let Some(key) = keys.get(&signature.keyid) else {
                continue;
            };
            if key.verifies(&self.canonical_signed, &signature.sig) {
                signers.insert(key.keyval.public.as_str());
            }
        }
        // A threshold of 0 would accept anything: TUF requires at least 1.
        if role.threshold == 0 || signers.len() < role.threshold as usize {
            return Err(MetadataError::Threshold {
                role: name.to_owned(),
                valid: signers.len(),
                threshold: role.threshold,
            });
        }
        Ok(())
    }

    /// The expiry as an instant.
    pub fn expires(&self, name: &str) -> Result<Timestamp, MetadataError> {
        parse_expiry(name, self.signed.expires())
    }
}

/// TUF expiries are UTC, `YYYY-MM-DDTHH:MM:SSZ`.
pub fn parse_expiry(name: &str, expires: &str) -> Result<Timestamp, MetadataError> {
    let bad = || MetadataError::BadExpiry {
        role: name.to_owned(),
        expires: expires.to_owned(),
    };
    if !expires.ends_with('Z') {
        return Err(bad());
    }
    Timestamp::parse(expires).map_err(|_| bad())
}

/// TUF's expiry text for an instant.
pub fn format_expiry(at: Timestamp) -> String {
    let text = at.to_string();
    // herd-core writes UTC as `…+00:00` or `…Z`; TUF wants `Z`.
    match text.strip_suffix("+00:00") {
        Some(stem) => format!("{stem}Z"),
        None => text,
    }
}

/// Signs `signed` with every key given: the whole document, as canonical JSON (so the same
/// metadata always has the same bytes, and the same hashes in snapshot and timestamp).
pub fn sign<T: Serialize>(signed: &T, keys: &[&SigningKey]) -> Vec<u8> {
    let value = serde_json::to_value(signed).expect("metadata serialises");
    let message = canonical::encode(&value).expect("metadata has no floats");
    let signatures: Vec<Signature> = keys
        .iter()
        .map(|key| Signature {
            keyid: key.key_id(),
            sig: key.sign(&message),
        })
        .collect();
    let document = serde_json::json!({"signatures": signatures, "signed": value});
    canonical::encode(&document).expect("metadata has no floats")
}

/// The hashes TUF lists for a file: sha256 and sha512, hex.
pub fn hashes_of(bytes: &[u8]) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("sha256".to_owned(), hex::encode(Sha256::digest(bytes))),
        ("sha512".to_owned(), hex::encode(Sha512::digest(bytes))),
    ])
}

/// Whether `bytes` have `length` and every listed hash (at least one, of a kind this client
/// computes: an unknown algorithm cannot vouch for anything).
pub fn matches(
    length: Option<u64>,
    hashes: Option<&BTreeMap<String, String>>,
    bytes: &[u8],
) -> Result<(), String> {
    if let Some(length) = length
        && bytes.len() as u64 != length
    {
        return Err(format!("{} bytes, {length} expected", bytes.len()));
    }
    let Some(hashes) = hashes else {
        return Ok(());
    };
    let mut checked = 0;
    for (algorithm, expected) in hashes {
        let actual = match algorithm.as_str() {
            "sha256" => hex::encode(Sha256::digest(bytes)),
            "sha512" => hex::encode(Sha512::digest(bytes)),
            _ => continue,
        };
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(format!("its {algorithm} is {actual}, {expected} expected"));
        }
        checked += 1;
    }
    if checked == 0 {
        return Err("none of its hashes is sha256 or sha512".to_owned());
    }
    Ok(())
}
