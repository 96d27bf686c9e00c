//! The attacks of TUF's threat model, each attempted against the client's trusted set with
//! real signed metadata, and refused for the reason it should be (named after the attack, in
//! the manner of tough's `tests/data/<attack>`).

mod support;

use herd_tuf::{SigningKey, TargetSearch, TrustError, TrustedSet, sign, verify_target};
use support::{PACKAGE, PACKAGE_PATH, Repo, days, now};

/// A full refresh as a client does it, up to the vendor's role.
fn refresh(repo: &Repo) -> Result<TrustedSet, TrustError> {
    let mut set = TrustedSet::new(&repo.root_bytes(), now())?;
    set.root_update_finished()?;
    set.update_timestamp(&repo.timestamp_bytes(), None)?;
    set.update_snapshot(&repo.snapshot_bytes(), None)?;
    set.update_targets(&repo.targets_bytes())?;
    set.update_delegated("maker-a", "targets", &repo.vendor_bytes())?;
    Ok(set)
}

fn found(set: &TrustedSet, path: &str) -> herd_tuf::TargetFile {
    match set.find_target(path) {
        TargetSearch::Found { file, .. } => file,
        other => panic!("{path}: {other:?}"),
    }
}

#[test]
fn a_genuine_repository_is_trusted_and_its_target_verifies() {
    let repo = Repo::new();
    let set = refresh(&repo).unwrap();
    let file = found(&set, PACKAGE_PATH);
    verify_target(PACKAGE_PATH, &file, PACKAGE).unwrap();
}

#[test]
fn arbitrary_installation_a_tampered_target_is_refused() {
    let repo = Repo::new();
    let set = refresh(&repo).unwrap();
    let file = found(&set, PACKAGE_PATH);
    let err = verify_target(PACKAGE_PATH, &file, b"the malicious vaccine a package").unwrap_err();
    assert!(matches!(err, TrustError::Target { .. }), "{err}");
}

#[test]
fn arbitrary_installation_metadata_changed_without_its_key_is_refused() {
    let repo = Repo::new();
    // A mirror rewrites the vendor's role to list its own package, keeping the signature.
    let mut tampered: serde_json::Value = serde_json::from_slice(&repo.vendor_bytes()).unwrap();
    tampered["signed"]["targets"][PACKAGE_PATH]["length"] = 6.into();
    let tampered = serde_json::to_vec(&tampered).unwrap();
    let mut set = TrustedSet::new(&repo.root_bytes(), now()).unwrap();
    set.update_timestamp(&repo.timestamp_bytes(), None).unwrap();
    set.update_snapshot(&repo.snapshot_bytes(), None).unwrap();
    set.update_targets(&repo.targets_bytes()).unwrap();
    let err = set
        .update_delegated("maker-a", "targets", &tampered)
        .unwrap_err();
    assert!(err.to_string().contains("0 valid signature(s)"), "{err}");
}

#[test]
fn a_center_cannot_forge_a_vendors_role_with_its_own_targets_key() {
    let repo = Repo::new();
    let forged = sign(&repo.vendor, &[&repo.targets_key]);
    let mut set = TrustedSet::new(&repo.root_bytes(), now()).unwrap();
    set.update_timestamp(&repo.timestamp_bytes(), None).unwrap();
    set.update_snapshot(&repo.snapshot_bytes(), None).unwrap();
    set.update_targets(&repo.targets_bytes()).unwrap();
    let err = set
        .update_delegated("maker-a", "targets", &forged)
        .unwrap_err();
    assert!(matches!(err, TrustError::Metadata(_)), "{err}");
}

#[test]
fn rollback_an_older_timestamp_is_refused() {
    let mut repo = Repo::new();
    let old = repo.timestamp_bytes();
    repo.publish();
    let trusted = refresh(&repo).unwrap();
    let mut set = TrustedSet::new(&repo.root_bytes(), now()).unwrap();
    let err = set.update_timestamp(&old, trusted.timestamp()).unwrap_err();
    assert!(matches!(err, TrustError::Rollback { .. }), "{err}");
}

#[test]
fn rollback_a_snapshot_with_an_older_targets_version_is_refused() {
    let mut repo = Repo::new();
    repo.vendor.version = 5;
    repo.publish();
    let trusted = refresh(&repo).unwrap();
    // A newer snapshot and timestamp that point the vendor back at version 4.
    repo.vendor.version = 4;
    repo.publish();
    let mut set = TrustedSet::new(&repo.root_bytes(), now()).unwrap();
    set.update_timestamp(&repo.timestamp_bytes(), trusted.timestamp())
        .unwrap();
    let err = set
        .update_snapshot(&repo.snapshot_bytes(), trusted.snapshot())
        .unwrap_err();
    assert!(
        matches!(err, TrustError::Rollback { ref role, .. } if role == "maker-a"),
        "{err}"
    );
}

#[test]
fn indefinite_freeze_expired_metadata_is_refused() {
    let mut repo = Repo::new();
    repo.timestamp.expires = herd_tuf::format_expiry(days(-1));
    let mut set = TrustedSet::new(&repo.root_bytes(), now()).unwrap();
    let err = set
        .update_timestamp(&repo.timestamp_bytes(), None)
        .unwrap_err();
    assert!(matches!(err, TrustError::Expired { .. }), "{err}");

    let mut repo = Repo::new();
    repo.vendor.expires = herd_tuf::format_expiry(days(-1));
    repo.publish();
    let err = refresh(&repo).unwrap_err();
    assert!(
        matches!(err, TrustError::Expired { ref role, .. } if role == "maker-a"),
        "{err}"
    );
}

#[test]
fn endless_data_a_longer_snapshot_than_listed_is_refused() {
    let repo = Repo::new();
    let mut longer = repo.snapshot_bytes();
    longer.extend(std::iter::repeat_n(b' ', 1 << 20));
    let mut set = TrustedSet::new(&repo.root_bytes(), now()).unwrap();
    set.update_timestamp(&repo.timestamp_bytes(), None).unwrap();
    let err = set.update_snapshot(&longer, None).unwrap_err();
    assert!(matches!(err, TrustError::Mismatch { .. }), "{err}");
    // A fetcher reads at most the listed length (or the bound when none is listed).
    assert_eq!(
        set.snapshot_meta().unwrap().length,
        Some(repo.snapshot_bytes().len() as u64)
    );
}

#[test]
fn mix_and_match_a_snapshot_the_timestamp_does_not_name_is_refused() {
    let mut repo = Repo::new();
    let first_snapshot = repo.snapshot_bytes();
    repo.publish();
    let mut set = TrustedSet::new(&repo.root_bytes(), now()).unwrap();
    set.update_timestamp(&repo.timestamp_bytes(), None).unwrap();
    let err = set.update_snapshot(&first_snapshot, None).unwrap_err();
    assert!(matches!(err, TrustError::Mismatch { .. }), "{err}");

    // Targets of another version than the snapshot lists.
    let mut repo = Repo::new();
    let old_targets = repo.targets_bytes();
    repo.targets.version = 2;
    repo.publish();
    let mut set = TrustedSet::new(&repo.root_bytes(), now()).unwrap();
    set.update_timestamp(&repo.timestamp_bytes(), None).unwrap();
    set.update_snapshot(&repo.snapshot_bytes(), None).unwrap();
    let err = set.update_targets(&old_targets).unwrap_err();
    assert!(matches!(err, TrustError::WrongVersion { .. }), "{err}");
}

#[test]
fn wrong_software_a_vendor_cannot_sign_another_vendors_path() {
    let mut repo = Repo::new();
    // Maker A's key lists a package under maker B's path: the delegation covers maker-a/*
    // only, so the search never asks maker A about it.
    repo.vendor.targets.insert(
        "maker-b/vaccine-b-7.0.tar.gz".into(),
        herd_tuf::TargetFile {
            length: 3,
            hashes: herd_tuf::hashes_of(b"bad"),
            custom: None,
        },
    );
    repo.vendor.version = 2;
    repo.publish();
    let set = refresh(&repo).unwrap();
    assert_eq!(
        set.find_target("maker-b/vaccine-b-7.0.tar.gz"),
        TargetSearch::NotFound
    );
    found(&set, PACKAGE_PATH);
}

#[test]
fn key_compromise_below_threshold_a_root_signed_by_one_of_three_is_refused() {
    let repo = Repo::new();
    let mut next = repo.root.clone();
    next.version = 2;
    let attacker = SigningKey::generate().unwrap();
    next.keys.insert(attacker.key_id(), attacker.public());
    next.roles.get_mut("timestamp").unwrap().keyids = vec![attacker.key_id()];
    let one_key = sign(&next, &[&repo.root_keys[0]]);
    let mut set = TrustedSet::new(&repo.root_bytes(), now()).unwrap();
    let err = set.update_root(&one_key).unwrap_err();
    assert!(
        err.to_string()
            .contains("1 valid signature(s) from its keys, 2 needed"),
        "{err}"
    );
    // One key's signature listed twice does not make two.
    let mut doubled: serde_json::Value = serde_json::from_slice(&one_key).unwrap();
    let signature = doubled["signatures"][0].clone();
    doubled["signatures"]
        .as_array_mut()
        .unwrap()
        .push(signature);
    let err = set
        .update_root(&serde_json::to_vec(&doubled).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("1 valid signature(s)"), "{err}");
}

#[test]
fn a_key_listed_under_two_ids_counts_once() {
    let mut repo = Repo::new();
    // The root lists the timestamp key a second time under another id, threshold 2.
    let key = repo.timestamp_key.public();
    repo.root.keys.insert("another-id".into(), key);
    let timestamp_role = repo.root.roles.get_mut("timestamp").unwrap();
    timestamp_role.keyids.push("another-id".into());
    timestamp_role.threshold = 2;
    let mut document: serde_json::Value = serde_json::from_slice(&repo.timestamp_bytes()).unwrap();
    let mut second = document["signatures"][0].clone();
    second["keyid"] = "another-id".into();
    document["signatures"].as_array_mut().unwrap().push(second);
    let mut set = TrustedSet::new(&repo.root_bytes(), now()).unwrap();
    let err = set
        .update_timestamp(&serde_json::to_vec(&document).unwrap(), None)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("1 valid signature(s) from its keys, 2 needed"),
        "{err}"
    );
}

#[test]
fn fast_forward_recovery_after_the_timestamp_key_is_rotated() {
    let mut repo = Repo::new();
    let old_root = repo.root.clone();
    // The timestamp key was compromised and signed a version far in the future.
    repo.timestamp.version = 1_000_000;
    let fast_forwarded = repo.timestamp_bytes();
    let mut set = TrustedSet::new(&repo.root_bytes(), now()).unwrap();
    set.update_timestamp(&fast_forwarded, None).unwrap();
    let pinned = set.timestamp().unwrap().clone();

    // The root rotates the timestamp key (signed by the old and the new root keys).
    let new_key = SigningKey::generate().unwrap();
    repo.root.version = 2;
    repo.root.keys.insert(new_key.key_id(), new_key.public());
    repo.root.roles.get_mut("timestamp").unwrap().keyids = vec![new_key.key_id()];
    repo.timestamp_key = new_key;
    repo.timestamp.version = 2;
    repo.publish();
    let mut set = TrustedSet::new(
        &sign(&old_root, &repo.root_keys.iter().collect::<Vec<_>>()),
        now(),
    )
    .unwrap();
    set.update_root(&repo.root_bytes()).unwrap();
    set.root_update_finished().unwrap();
    assert!(
        set.keys_rotated(&old_root, "timestamp"),
        "the client drops its stored timestamp"
    );
    assert!(!set.keys_rotated(&old_root, "snapshot"));
    // Without the pinned timestamp the genuine one is accepted; with it, it would not be.
    let mut with_pin = set.clone();
    assert!(matches!(
        with_pin.update_timestamp(&repo.timestamp_bytes(), Some(&pinned)),
        Err(TrustError::Rollback { .. })
    ));
    set.update_timestamp(&repo.timestamp_bytes(), None).unwrap();
    // The old key's documents are no longer trusted at all.
    let err = set.clone().update_timestamp(&fast_forwarded, None);
    assert!(err.is_err());
}

#[test]
fn a_root_that_skips_a_version_is_refused() {
    let repo = Repo::new();
    let mut next = repo.root.clone();
    next.version = 3;
    let skipped = sign(&next, &repo.root_keys.iter().collect::<Vec<_>>());
    let mut set = TrustedSet::new(&repo.root_bytes(), now()).unwrap();
    let err = set.update_root(&skipped).unwrap_err();
    assert!(matches!(err, TrustError::WrongVersion { .. }), "{err}");
}

#[test]
fn an_unchanged_timestamp_is_recognised_so_nothing_else_is_fetched() {
    let repo = Repo::new();
    let trusted = refresh(&repo).unwrap();
    let mut set = TrustedSet::new(&repo.root_bytes(), now()).unwrap();
    let changed = set
        .update_timestamp(&repo.timestamp_bytes(), trusted.timestamp())
        .unwrap();
    assert!(!changed);
}

#[test]
fn a_document_of_another_role_is_refused_as_such() {
    let repo = Repo::new();
    let mut set = TrustedSet::new(&repo.root_bytes(), now()).unwrap();
    let err = set
        .update_timestamp(&repo.snapshot_bytes(), None)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("is a snapshot document, not timestamp"),
        "{err}"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Metadata is what a network hands over: any bytes, or a genuine document with one byte
    /// changed, is refused or trusted, never a panic; a changed document is never trusted
    /// with different content.
    #[test]
    fn any_bytes_or_one_changed_byte_never_panic(
        junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
        position in 0usize..4096,
        byte in proptest::prelude::any::<u8>(),
    ) {
        let _ = TrustedSet::new(&junk, now());
        let repo = Repo::new();
        let mut timestamp = repo.timestamp_bytes();
        let at = position % timestamp.len();
        timestamp[at] = byte;
        let mut set = TrustedSet::new(&repo.root_bytes(), now()).unwrap();
        if set.update_timestamp(&timestamp, None).is_ok() {
            proptest::prop_assert_eq!(set.timestamp().unwrap(), &repo.timestamp);
        }
    }
}
