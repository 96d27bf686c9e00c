//! The root key ceremony, pure: the next root from the current one and the changes asked for
//! ([`next_root`]: new root keys and threshold, a new online key for a role, vendor pins, a new
//! expiry), a [`RootProposal`] that carries it between the online machine (which knows the
//! center's current root) and the offline one (which holds the root keys) and gathers
//! signatures from whichever root keys are at hand, and the checks that it will chain before it
//! is sent ([`RootProposal::check`], [`check_next`]).
//!
//! A root is accepted by a client only when signed by a threshold of the previous root's root
//! keys *and* of its own (TUF 5.3.4), so a proposal counts both. The center co-signs with the
//! root key it auto-initialised while it still holds it; [`RootProposal::check_own`] is what
//! must hold without it.
//!
//! No I/O, no clock: `now` is an argument, files are text.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use herd_core::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::canonical;
use crate::keyfile::check_public;
use crate::keys::{PublicKey, SigningKey};
use crate::metadata::{
    Envelope, MetadataError, RoleKeys, Root, SPEC_VERSION, Signature, format_expiry, parse_expiry,
};

/// The format name of a root proposal file.
pub const PROPOSAL_FORMAT: &str = "herd.root-proposal/v1";

/// The top-level roles the center signs with online keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum OnlineRole {
    Timestamp,
    Snapshot,
    Targets,
}

impl OnlineRole {
    pub const ALL: [OnlineRole; 3] = [
        OnlineRole::Timestamp,
        OnlineRole::Snapshot,
        OnlineRole::Targets,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OnlineRole::Timestamp => "timestamp",
            OnlineRole::Snapshot => "snapshot",
            OnlineRole::Targets => "targets",
        }
    }

    /// The role named `name`; the error lists the ones there are.
    pub fn parse(name: &str) -> Result<OnlineRole, String> {
        OnlineRole::ALL
            .into_iter()
            .find(|r| r.as_str() == name)
            .ok_or_else(|| {
                format!("{name:?} is not an online role (timestamp, snapshot or targets)")
            })
    }
}

impl fmt::Display for OnlineRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the next root changes. Everything not named stays as the current root has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootChanges {
    /// Replace the root keys by these.
    pub root_keys: Option<Vec<PublicKey>>,
    /// The root keys' threshold (default: the current one).
    pub threshold: Option<u32>,
    /// A new key for an online role (each replaces that role's keys).
    pub online: Vec<(OnlineRole, PublicKey)>,
    /// Pin a delegated role (a vendor's `vendor-<id>`) to these key ids.
    pub pin: Vec<(String, Vec<String>)>,
    /// Remove a role's pin.
    pub unpin: Vec<String>,
    /// When the next root expires.
    pub expires: Timestamp,
}

impl RootChanges {
    /// No change but the expiry: a renewal.
    pub fn renewal(expires: Timestamp) -> RootChanges {
        RootChanges {
            root_keys: None,
            threshold: None,
            online: Vec::new(),
            pin: Vec::new(),
            unpin: Vec::new(),
            expires,
        }
    }
}

/// Why a root could not be built, signed or sent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CeremonyError {
    #[error("the current root: {0}")]
    Previous(String),
    #[error("a root threshold of {threshold} with {keys} root key(s): it must be 1 to {keys}")]
    Threshold { threshold: u32, keys: usize },
    #[error("the new root keys: there are none")]
    NoRootKeys,
    #[error("{what}: {why}")]
    BadKey { what: String, why: String },
    #[error(
        "key {keyid} would be both a root key and the online {role} key: root keys must stay \
         offline, apart from the keys the center holds"
    )]
    RootKeyOnline { keyid: String, role: String },
    #[error("the next root would expire at {expires}, which is not after now ({now})")]
    Expiry { expires: String, now: String },
    #[error("{role} is not pinned in root version {version}")]
    NotPinned { role: String, version: u64 },
    #[error("pinning {role}: {why}")]
    Pin { role: String, why: String },
    #[error("{file}: {why}")]
    Proposal { file: String, why: String },
    #[error(
        "root version {version} is signed by {valid} of the {which} root keys, {threshold} \
         needed (missing: {missing})"
    )]
    Unsigned {
        version: u64,
        which: &'static str,
        valid: usize,
        threshold: u32,
        missing: String,
    },
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

/// The root after `previous` with `changes` made: version one more, every role's keys checked,
/// keys no role names any longer dropped, the Herd pins carried over.
pub fn next_root(
    previous: &Root,
    changes: &RootChanges,
    now: Timestamp,
) -> Result<Root, CeremonyError> {
    if changes.expires <= now {
        return Err(CeremonyError::Expiry {
            expires: format_expiry(changes.expires),
            now: format_expiry(now),
        });
    }
    let current_root_role = previous
        .roles
        .get("root")
        .ok_or_else(|| CeremonyError::Previous("it names no root keys".into()))?;
    let mut root = previous.clone();
    root.version = previous.version + 1;
    root.spec_version = SPEC_VERSION.to_owned();
    root.expires = format_expiry(changes.expires);
    root.consistent_snapshot = true;

    let root_keyids = match &changes.root_keys {
        Some(keys) => {
            let mut ids = Vec::new();
            for key in keys {
                check_public(key).map_err(|why| CeremonyError::BadKey {
                    what: "a new root key".into(),
                    why,
                })?;
                let id = key.key_id();
                if !ids.contains(&id) {
                    root.keys.insert(id.clone(), key.clone());
                    ids.push(id);
                }
            }
            if ids.is_empty() {
                return Err(CeremonyError::NoRootKeys);
            }
            ids
        }
        None => current_root_role.keyids.clone(),
    };
    let threshold = changes.threshold.unwrap_or(current_root_role.threshold);
    let distinct: BTreeSet<&str> = root_keyids.iter().map(String::as_str).collect();
    if threshold == 0 || threshold as usize > distinct.len() {
        return Err(CeremonyError::Threshold {
            threshold,
            keys: distinct.len(),
        });
    }
    root.roles.insert(
        "root".into(),
        RoleKeys {
            keyids: root_keyids.clone(),
            threshold,
        },
    );

    for (role, key) in &changes.online {
        check_public(key).map_err(|why| CeremonyError::BadKey {
            what: format!("the new {role} key"),
            why,
        })?;
        let id = key.key_id();
        root.keys.insert(id.clone(), key.clone());
        root.roles.insert(
            role.as_str().into(),
            RoleKeys {
                keyids: vec![id],
                threshold: 1,
            },
        );
    }
    for role in OnlineRole::ALL {
        let keys = root
            .roles
            .get(role.as_str())
            .ok_or_else(|| CeremonyError::Previous(format!("it names no {role} keys")))?;
        if let Some(shared) = keys.keyids.iter().find(|id| root_keyids.contains(id)) {
            return Err(CeremonyError::RootKeyOnline {
                keyid: shared.clone(),
                role: role.as_str().into(),
            });
        }
    }

    for role in &changes.unpin {
        if root.pinned_roles.remove(role).is_none() {
            return Err(CeremonyError::NotPinned {
                role: role.clone(),
                version: previous.version,
            });
        }
    }
    for (role, keyids) in &changes.pin {
        let pin_error = |why: String| CeremonyError::Pin {
            role: role.clone(),
            why,
        };
        if !role.starts_with("vendor-") || role.len() == "vendor-".len() {
            return Err(pin_error(
                "only a vendor's role (`vendor-<vendor>`) is pinned".into(),
            ));
        }
        if keyids.is_empty() {
            return Err(pin_error("no key ids".into()));
        }
        if let Some(bad) = keyids.iter().find(|id| !is_key_id(id)) {
            return Err(pin_error(format!(
                "{bad:?} is not a key id (64 lowercase hex digits)"
            )));
        }
        root.pinned_roles.insert(role.clone(), keyids.clone());
    }

    // Keys no role names any longer leave the root: a retired key must not look trusted.
    let named: BTreeSet<String> = root
        .roles
        .values()
        .flat_map(|r| r.keyids.iter().cloned())
        .collect();
    root.keys.retain(|id, _| named.contains(id));
    Ok(root)
}

fn is_key_id(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// How far a proposal is signed by one set of root keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureCount {
    pub valid: usize,
    pub threshold: u32,
    /// Key ids of that set that have not signed.
    pub missing: Vec<String>,
}

impl SignatureCount {
    pub fn met(&self) -> bool {
        self.threshold > 0 && self.valid >= self.threshold as usize
    }
}

/// The signatures a proposal has: by the current root's root keys, and by its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureStatus {
    pub previous: SignatureCount,
    pub own: SignatureCount,
}

/// What [`RootProposal::sign`] did with the keys it was given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Signed {
    /// Keys that signed now.
    pub added: Vec<String>,
    /// Keys that had signed already.
    pub already: Vec<String>,
    /// Keys neither the current root nor the proposed one names as root keys.
    pub not_root_keys: Vec<String>,
}

/// The next root on its way through the ceremony: the current root it follows (exactly as the
/// center served it), the proposed root, and the signatures gathered so far.
#[derive(Clone, Debug)]
pub struct RootProposal {
    previous_bytes: Vec<u8>,
    previous: Root,
    root: Root,
    signatures: Vec<Signature>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProposalFile {
    format: String,
    /// The current root, exactly as served (its signatures cover these bytes).
    previous: String,
    /// The proposed root with the signatures so far, TUF's envelope.
    root: Value,
}

impl RootProposal {
    /// A proposal of `root` (unsigned) to follow the current root `previous_bytes`.
    pub fn new(previous_bytes: &[u8], root: Root) -> Result<RootProposal, CeremonyError> {
        let previous = parse_previous(previous_bytes)?;
        if root.version != previous.version + 1 {
            return Err(CeremonyError::Proposal {
                file: "the proposed root".into(),
                why: format!(
                    "it is version {}, the current root is version {}",
                    root.version, previous.version
                ),
            });
        }
        Ok(RootProposal {
            previous_bytes: previous_bytes.to_vec(),
            previous,
            root,
            signatures: Vec::new(),
        })
    }

    /// Reads a proposal file's text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<RootProposal, CeremonyError> {
        let bad = |why: String| CeremonyError::Proposal {
            file: file.to_owned(),
            why,
        };
        let doc: ProposalFile = serde_json::from_str(text)
            .map_err(|e| bad(format!("not a root proposal ({PROPOSAL_FORMAT}): {e}")))?;
        if doc.format != PROPOSAL_FORMAT {
            return Err(bad(format!(
                "its format is {:?}, not {PROPOSAL_FORMAT:?}",
                doc.format
            )));
        }
        let envelope_bytes = serde_json::to_vec(&doc.root).expect("a value serialises");
        let envelope = Envelope::<Root>::parse("the proposed root", &envelope_bytes)
            .map_err(|e| bad(e.to_string()))?;
        // Signatures are made over the typed root re-encoded; a field this version does not
        // know would be signed by nobody, so it is refused rather than dropped.
        if canonical_root(&envelope.signed) != envelope.canonical_signed {
            return Err(bad(
                "the proposed root has fields this version of herd does not know".into(),
            ));
        }
        let mut proposal = RootProposal::new(doc.previous.as_bytes(), envelope.signed)
            .map_err(|e| bad(e.to_string()))?;
        proposal.signatures = envelope.signatures;
        Ok(proposal)
    }

    /// The proposal file's text (pretty JSON, so the signer can read what it signs).
    pub fn to_text(&self) -> String {
        let doc = ProposalFile {
            format: PROPOSAL_FORMAT.into(),
            previous: String::from_utf8_lossy(&self.previous_bytes).into_owned(),
            root: serde_json::json!({
                "signatures": self.signatures,
                "signed": serde_json::to_value(&self.root).expect("a root serialises"),
            }),
        };
        let mut text = serde_json::to_string_pretty(&doc).expect("a proposal serialises");
        text.push('\n');
        text
    }

    pub fn previous(&self) -> &Root {
        &self.previous
    }

    /// The current root's bytes, exactly as served.
    pub fn previous_bytes(&self) -> &[u8] {
        &self.previous_bytes
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    /// Signs with each key the current or the proposed root names as a root key and that has
    /// not signed yet; says what it did with each key.
    pub fn sign(&mut self, keys: &[&SigningKey]) -> Signed {
        let message = canonical_root(&self.root);
        let mut signed = Signed::default();
        let named = |root: &Root, id: &String| {
            root.roles
                .get("root")
                .is_some_and(|role| role.keyids.contains(id))
        };
        for key in keys {
            let id = key.key_id();
            if !named(&self.previous, &id) && !named(&self.root, &id) {
                signed.not_root_keys.push(id);
                continue;
            }
            let public = key.public();
            let has_signed = self
                .signatures
                .iter()
                .any(|s| s.keyid == id && public.verifies(&message, &s.sig));
            if has_signed {
                signed.already.push(id);
                continue;
            }
            // A stale or broken signature by this key id is replaced.
            self.signatures.retain(|s| s.keyid != id);
            self.signatures.push(Signature {
                keyid: id.clone(),
                sig: key.sign(&message),
            });
            signed.added.push(id);
        }
        signed
    }

    /// Signatures by the current root's root keys and by the proposed root's own.
    pub fn status(&self) -> SignatureStatus {
        let message = canonical_root(&self.root);
        let count = |root: &Root| {
            let Some(role) = root.roles.get("root") else {
                return SignatureCount {
                    valid: 0,
                    threshold: 0,
                    missing: Vec::new(),
                };
            };
            let mut signers = BTreeSet::new();
            let mut missing = Vec::new();
            for id in &role.keyids {
                let valid = root.keys.get(id).is_some_and(|key| {
                    self.signatures
                        .iter()
                        .any(|s| &s.keyid == id && key.verifies(&message, &s.sig))
                });
                match (valid, root.keys.get(id)) {
                    (true, Some(key)) => {
                        signers.insert(key.keyval.public.clone());
                    }
                    _ => missing.push(id.clone()),
                }
            }
            SignatureCount {
                valid: signers.len(),
                threshold: role.threshold,
                missing,
            }
        };
        SignatureStatus {
            previous: count(&self.previous),
            own: count(&self.root),
        }
    }

    /// The signed root as served (`N.root.json`): canonical JSON of TUF's envelope.
    pub fn bytes(&self) -> Vec<u8> {
        let document = serde_json::json!({
            "signatures": self.signatures,
            "signed": serde_json::to_value(&self.root).expect("a root serialises"),
        });
        canonical::encode(&document).expect("a root has no floats")
    }

    /// What must hold whoever else signs: not expired, and signed by a threshold of its own
    /// root keys (only their holders can give those signatures).
    pub fn check_own(&self, now: Timestamp) -> Result<(), CeremonyError> {
        let expires = parse_expiry("the proposed root", &self.root.expires)?;
        if expires <= now {
            return Err(CeremonyError::Expiry {
                expires: self.root.expires.clone(),
                now: format_expiry(now),
            });
        }
        let status = self.status();
        unsigned(self.root.version, "proposed root's own", &status.own)
    }

    /// Everything a client will check: [`check_own`](Self::check_own), and a threshold of the
    /// current root's root keys — checked through the same code clients run ([`check_next`]).
    pub fn check(&self, now: Timestamp) -> Result<(), CeremonyError> {
        self.check_own(now)?;
        let status = self.status();
        unsigned(self.root.version, "current", &status.previous)?;
        check_next(&self.previous_bytes, &self.bytes())?;
        Ok(())
    }

    /// What the proposal changes, one line each, for the signer to read before signing.
    pub fn describe(&self) -> Vec<String> {
        describe_changes(&self.previous, &self.root)
    }
}

fn unsigned(
    version: u64,
    which: &'static str,
    count: &SignatureCount,
) -> Result<(), CeremonyError> {
    if count.met() {
        return Ok(());
    }
    Err(CeremonyError::Unsigned {
        version,
        which,
        valid: count.valid,
        threshold: count.threshold,
        missing: count
            .missing
            .iter()
            .map(|id| short(id))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

fn parse_previous(bytes: &[u8]) -> Result<Root, CeremonyError> {
    let envelope = Envelope::<Root>::parse("the current root", bytes)?;
    let role = envelope
        .signed
        .roles
        .get("root")
        .ok_or_else(|| CeremonyError::Previous("it names no root keys".into()))?;
    envelope.check_threshold("the current root", role, &envelope.signed.keys)?;
    Ok(envelope.signed)
}

fn canonical_root(root: &Root) -> Vec<u8> {
    canonical::encode(&serde_json::to_value(root).expect("a root serialises"))
        .expect("a root has no floats")
}

/// Checks that `next` follows `previous` as a client checks it: one version more, signed by a
/// threshold of the previous root's root keys and of its own. Returns the next root.
pub fn check_next(previous: &[u8], next: &[u8]) -> Result<Root, CeremonyError> {
    let previous = parse_previous(previous)?;
    let envelope = Envelope::<Root>::parse("the next root", next)?;
    if envelope.signed.version != previous.version + 1 {
        return Err(CeremonyError::Proposal {
            file: "the next root".into(),
            why: format!(
                "it is version {}, not {}",
                envelope.signed.version,
                previous.version + 1
            ),
        });
    }
    let role = |root: &Root| {
        root.roles
            .get("root")
            .cloned()
            .ok_or_else(|| CeremonyError::Previous("a root names no root keys".into()))
    };
    envelope.check_threshold(
        "the next root (by the current root's keys)",
        &role(&previous)?,
        &previous.keys,
    )?;
    envelope.check_threshold(
        "the next root (by its own keys)",
        &role(&envelope.signed)?,
        &envelope.signed.keys,
    )?;
    Ok(envelope.signed)
}

/// A key id's first 16 hex digits, as key files are named.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(16)]
}

/// What `next` changes from `previous`, one line each.
pub fn describe_changes(previous: &Root, next: &Root) -> Vec<String> {
    let mut lines = vec![format!(
        "root version {} -> {}, expires {} (was {})",
        previous.version, next.version, next.expires, previous.expires
    )];
    let ids = |role: Option<&RoleKeys>| -> (Vec<String>, u32) {
        role.map(|r| {
            let mut ids: Vec<String> = r.keyids.iter().map(|id| short(id).to_owned()).collect();
            ids.sort();
            (ids, r.threshold)
        })
        .unwrap_or_default()
    };
    for role in ["root", "timestamp", "snapshot", "targets"] {
        let (old, old_threshold) = ids(previous.roles.get(role));
        let (new, new_threshold) = ids(next.roles.get(role));
        if old == new && old_threshold == new_threshold {
            lines.push(format!(
                "{role} keys unchanged: {new_threshold} of [{}]",
                new.join(", ")
            ));
        } else {
            lines.push(format!(
                "{role} keys: {old_threshold} of [{}] -> {new_threshold} of [{}]",
                old.join(", "),
                new.join(", ")
            ));
        }
    }
    let pins = |root: &Root| -> BTreeMap<String, Vec<String>> { root.pinned_roles.clone() };
    let (old_pins, new_pins) = (pins(previous), pins(next));
    for (role, keys) in &new_pins {
        let shown: Vec<&str> = keys.iter().map(|k| short(k)).collect();
        match old_pins.get(role) {
            None => lines.push(format!("pins {role} to [{}]", shown.join(", "))),
            Some(old) if old != keys => {
                lines.push(format!("re-pins {role} to [{}]", shown.join(", ")))
            }
            Some(_) => lines.push(format!("keeps {role} pinned to [{}]", shown.join(", "))),
        }
    }
    for role in old_pins.keys().filter(|r| !new_pins.contains_key(*r)) {
        lines.push(format!("unpins {role}"));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::sign;
    use crate::repository::{check_root_chain, root_document};

    fn at(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap()
    }

    struct World {
        root_keys: Vec<SigningKey>,
        online: [SigningKey; 3],
        v1: Vec<u8>,
    }

    /// A center's root v1: one root key (as auto-initialised), three online keys.
    fn world() -> World {
        let root_keys = vec![SigningKey::generate().unwrap()];
        let online = [
            SigningKey::generate().unwrap(),
            SigningKey::generate().unwrap(),
            SigningKey::generate().unwrap(),
        ];
        let publics: Vec<PublicKey> = online.iter().map(SigningKey::public).collect();
        let root = root_document(
            None,
            &[root_keys[0].public()],
            1,
            [&publics[0], &publics[1], &publics[2]],
            at("2027-01-01T00:00:00Z"),
        );
        let v1 = sign(&root, &[&root_keys[0]]);
        World {
            root_keys,
            online,
            v1,
        }
    }

    fn now() -> Timestamp {
        at("2026-12-06T00:00:00Z")
    }

    fn v1_root(world: &World) -> Root {
        Envelope::<Root>::parse("root", &world.v1).unwrap().signed
    }

    #[test]
    fn moving_the_root_offline_chains_for_every_client() {
        let world = world();
        let offline: Vec<SigningKey> = (0..3).map(|_| SigningKey::generate().unwrap()).collect();
        let changes = RootChanges {
            root_keys: Some(offline.iter().map(SigningKey::public).collect()),
            threshold: Some(2),
            ..RootChanges::renewal(at("2027-12-01T00:00:00Z"))
        };
        let next = next_root(&v1_root(&world), &changes, now()).unwrap();
        assert_eq!(next.version, 2);
        assert_eq!(next.roles["root"].threshold, 2);
        assert!(
            !next.keys.contains_key(&world.root_keys[0].key_id()),
            "the retired root key leaves the root"
        );
        assert!(next.keys.contains_key(&world.online[2].key_id()));

        let proposal = RootProposal::new(&world.v1, next).unwrap();
        // Travels to the offline machine and back as text.
        let mut proposal = {
            let text = proposal.to_text();
            RootProposal::parse("proposal.json", &text).unwrap()
        };
        let signed = proposal.sign(&[&offline[0], &offline[1]]);
        assert_eq!(signed.added.len(), 2);
        proposal.check_own(now()).unwrap();
        let err = proposal.check(now()).unwrap_err().to_string();
        assert!(
            err.contains("signed by 0 of the current root keys, 1 needed"),
            "the center's co-signature is still missing: {err}"
        );
        // The center co-signs with the key it auto-initialised.
        let signed = proposal.sign(&[&world.root_keys[0]]);
        assert_eq!(signed.added, [world.root_keys[0].key_id()]);
        proposal.check(now()).unwrap();
        let root = check_root_chain(&[world.v1.clone(), proposal.bytes()]).unwrap();
        assert_eq!(root.version, 2);
        assert_eq!(check_next(&world.v1, &proposal.bytes()).unwrap(), root);
        // Signing again changes nothing.
        let again = proposal.sign(&[&offline[0]]);
        assert_eq!(again.already, [offline[0].key_id()]);
    }

    #[test]
    fn a_rotation_needs_the_old_threshold_and_the_new() {
        let world = world();
        let old: Vec<SigningKey> = (0..2).map(|_| SigningKey::generate().unwrap()).collect();
        // v2: two offline keys, threshold 2.
        let changes = RootChanges {
            root_keys: Some(old.iter().map(SigningKey::public).collect()),
            threshold: Some(2),
            ..RootChanges::renewal(at("2027-12-01T00:00:00Z"))
        };
        let mut p2 = RootProposal::new(
            &world.v1,
            next_root(&v1_root(&world), &changes, now()).unwrap(),
        )
        .unwrap();
        p2.sign(&[&world.root_keys[0], &old[0], &old[1]]);
        p2.check(now()).unwrap();
        let v2 = p2.bytes();
        // v3: one new key, threshold 1, signed by only one of the two old keys.
        let new = SigningKey::generate().unwrap();
        let changes = RootChanges {
            root_keys: Some(vec![new.public()]),
            threshold: Some(1),
            ..RootChanges::renewal(at("2027-12-01T00:00:00Z"))
        };
        let mut p3 =
            RootProposal::new(&v2, next_root(p2.root(), &changes, now()).unwrap()).unwrap();
        let signed = p3.sign(&[&old[0], &new, &world.online[0]]);
        assert_eq!(signed.not_root_keys, [world.online[0].key_id()]);
        let status = p3.status();
        assert_eq!((status.previous.valid, status.previous.threshold), (1, 2));
        assert_eq!(status.previous.missing, [old[1].key_id()]);
        assert!(status.own.met());
        let err = p3.check(now()).unwrap_err().to_string();
        assert!(
            err.contains("signed by 1 of the current root keys, 2 needed"),
            "{err}"
        );
        assert!(
            err.contains(short(&old[1].key_id())),
            "names the missing key: {err}"
        );
        p3.sign(&[&old[1]]);
        p3.check(now()).unwrap();
        check_root_chain(&[world.v1.clone(), v2, p3.bytes()]).unwrap();
    }

    #[test]
    fn online_keys_and_pins_change_and_old_keys_leave() {
        let world = world();
        let v1 = v1_root(&world);
        let pending = SigningKey::generate().unwrap();
        let vendor_key = SigningKey::generate().unwrap().key_id();
        let changes = RootChanges {
            online: vec![(OnlineRole::Targets, pending.public())],
            pin: vec![("vendor-acme".into(), vec![vendor_key.clone()])],
            ..RootChanges::renewal(at("2027-06-01T00:00:00Z"))
        };
        let v2 = next_root(&v1, &changes, now()).unwrap();
        assert_eq!(v2.roles["targets"].keyids, [pending.key_id()]);
        assert!(!v2.keys.contains_key(&world.online[2].key_id()));
        assert_eq!(v2.roles["root"], v1.roles["root"], "root keys unchanged");
        assert_eq!(v2.pinned_roles["vendor-acme"], [vendor_key]);
        let lines = describe_changes(&v1, &v2).join("\n");
        assert!(lines.contains("targets keys: 1 of ["), "{lines}");
        assert!(lines.contains("root keys unchanged: 1 of ["), "{lines}");
        assert!(lines.contains("pins vendor-acme to ["), "{lines}");
        // Pins are carried into the next root, and removed only when asked.
        let v3 = next_root(
            &v2,
            &RootChanges::renewal(at("2027-07-01T00:00:00Z")),
            now(),
        )
        .unwrap();
        assert_eq!(v3.pinned_roles, v2.pinned_roles);
        let unpin = RootChanges {
            unpin: vec!["vendor-acme".into()],
            ..RootChanges::renewal(at("2027-07-01T00:00:00Z"))
        };
        let v4 = next_root(&v3, &unpin, now()).unwrap();
        assert!(v4.pinned_roles.is_empty());
        assert!(describe_changes(&v3, &v4).contains(&"unpins vendor-acme".to_owned()));
    }

    #[test]
    fn a_renewal_changes_only_the_version_and_expiry() {
        let world = world();
        let v1 = v1_root(&world);
        let v2 = next_root(
            &v1,
            &RootChanges::renewal(at("2027-11-01T00:00:00Z")),
            now(),
        )
        .unwrap();
        assert_eq!(v2.version, 2);
        assert_eq!(v2.expires, "2027-11-01T00:00:00Z");
        assert_eq!((v2.keys.clone(), v2.roles.clone()), (v1.keys, v1.roles));
        let mut proposal = RootProposal::new(&world.v1, v2).unwrap();
        proposal.sign(&[&world.root_keys[0]]);
        proposal.check(now()).unwrap();
    }

    #[test]
    fn every_unusable_change_is_refused_with_its_reason() {
        let world = world();
        let v1 = v1_root(&world);
        let expires = at("2027-06-01T00:00:00Z");
        let three: Vec<PublicKey> = (0..3)
            .map(|_| SigningKey::generate().unwrap().public())
            .collect();
        let mut bad_key = three[0].clone();
        bad_key.keyval.public = "00".into();
        let cases: Vec<(RootChanges, &str)> = vec![
            (
                RootChanges {
                    root_keys: Some(three.clone()),
                    threshold: Some(4),
                    ..RootChanges::renewal(expires)
                },
                "a root threshold of 4 with 3 root key(s): it must be 1 to 3",
            ),
            (
                RootChanges {
                    root_keys: Some(three.clone()),
                    threshold: Some(0),
                    ..RootChanges::renewal(expires)
                },
                "a root threshold of 0 with 3 root key(s)",
            ),
            (
                RootChanges {
                    root_keys: Some(vec![three[0].clone(), three[0].clone()]),
                    threshold: Some(2),
                    ..RootChanges::renewal(expires)
                },
                "a root threshold of 2 with 1 root key(s)",
            ),
            (
                RootChanges {
                    root_keys: Some(Vec::new()),
                    ..RootChanges::renewal(expires)
                },
                "there are none",
            ),
            (
                RootChanges {
                    root_keys: Some(vec![bad_key]),
                    ..RootChanges::renewal(expires)
                },
                "a new root key: keyval.public is 2 characters",
            ),
            (
                RootChanges {
                    root_keys: Some(vec![world.online[1].public()]),
                    ..RootChanges::renewal(expires)
                },
                "would be both a root key and the online snapshot key",
            ),
            (
                RootChanges::renewal(now()),
                "which is not after now (2026-12-06T00:00:00Z)",
            ),
            (
                RootChanges {
                    unpin: vec!["vendor-acme".into()],
                    ..RootChanges::renewal(expires)
                },
                "vendor-acme is not pinned in root version 1",
            ),
            (
                RootChanges {
                    pin: vec![("targets".into(), vec!["ab".repeat(32)])],
                    ..RootChanges::renewal(expires)
                },
                "pinning targets: only a vendor's role",
            ),
            (
                RootChanges {
                    pin: vec![("vendor-acme".into(), vec!["AB".repeat(32)])],
                    ..RootChanges::renewal(expires)
                },
                "is not a key id",
            ),
            (
                RootChanges {
                    pin: vec![("vendor-acme".into(), Vec::new())],
                    ..RootChanges::renewal(expires)
                },
                "pinning vendor-acme: no key ids",
            ),
        ];
        for (changes, expected) in cases {
            let err = next_root(&v1, &changes, now()).unwrap_err().to_string();
            assert!(err.contains(expected), "{changes:?}: {err}");
        }
    }

    #[test]
    fn proposals_that_cannot_chain_are_refused() {
        let world = world();
        let v1 = v1_root(&world);
        let next = next_root(
            &v1,
            &RootChanges::renewal(at("2027-06-01T00:00:00Z")),
            now(),
        )
        .unwrap();
        // Not the next version.
        let mut skipped = next.clone();
        skipped.version = 3;
        let err = RootProposal::new(&world.v1, skipped)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("it is version 3, the current root is version 1"),
            "{err}"
        );
        // A current root that is not signed by its own keys.
        let forged = sign(&v1, &[&world.online[0]]);
        let err = RootProposal::new(&forged, next.clone())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the current root: 0 valid signature(s)"),
            "{err}"
        );
        // Signed by nobody: check_own names the missing key.
        let proposal = RootProposal::new(&world.v1, next.clone()).unwrap();
        let err = proposal.check_own(now()).unwrap_err().to_string();
        assert!(
            err.contains("signed by 0 of the proposed root's own root keys, 1 needed")
                && err.contains(short(&world.root_keys[0].key_id())),
            "{err}"
        );
        // check_next refuses a root that skips a version or lacks signatures.
        let mut signed = RootProposal::new(&world.v1, next).unwrap();
        signed.sign(&[&world.root_keys[0]]);
        let err = check_next(&signed.bytes(), &signed.bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("it is version 2, not 3"), "{err}");
        let unsigned = RootProposal::new(&world.v1, signed.root().clone()).unwrap();
        let err = check_next(&world.v1, &unsigned.bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("by the current root's keys"), "{err}");
    }

    #[test]
    fn a_proposal_file_is_checked_when_read() {
        let world = world();
        let v1 = v1_root(&world);
        let next = next_root(
            &v1,
            &RootChanges::renewal(at("2027-06-01T00:00:00Z")),
            now(),
        )
        .unwrap();
        let proposal = RootProposal::new(&world.v1, next).unwrap();
        let text = proposal.to_text();
        let read = |text: &str| {
            RootProposal::parse("p.json", text)
                .map(|_| ())
                .unwrap_err()
                .to_string()
        };
        assert!(
            read("{").starts_with("p.json: not a root proposal"),
            "{}",
            read("{")
        );
        let other = text.replace(PROPOSAL_FORMAT, "herd.root-proposal/v9");
        assert!(read(&other).contains("its format is \"herd.root-proposal/v9\""));
        let extra = text.replace(
            "\"consistent_snapshot\"",
            "\"x-extra\": 1,\n\"consistent_snapshot\"",
        );
        assert!(
            read(&extra).contains("fields this version of herd does not know"),
            "{}",
            read(&extra)
        );
        let mut value: Value = serde_json::from_str(&text).unwrap();
        value["previous"] = Value::String("{}".into());
        assert!(
            read(&value.to_string()).contains("the current root"),
            "{}",
            read(&value.to_string())
        );
    }
}
