//! The repository side: what `Repository::update` signs is what a client accepts, versions move
//! only when something changed or is about to expire, a vendor-signed role is adopted only
//! when its keys signed it within its paths, a rotated root is walked, and a root's pin keeps
//! the online targets key from handing a vendor's packages to another key.

mod support;

use std::collections::BTreeMap;

use herd_core::Timestamp;
use herd_tuf::repository::{
    Desired, DesiredRole, File, Lifetimes, OnlineKeys, Repository, RoleContent, root_document,
};
use herd_tuf::{
    Root, SigningKey, TargetFile, TargetSearch, Targets, TrustError, TrustedSet, format_expiry,
    hashes_of, sign,
};
use support::now;

const PACKAGE: &[u8] = b"the genuine vaccine package";
const PATH: &str = "packages/maker-a/vaccine-a/1.0/linux.archive";

struct Keys {
    root: SigningKey,
    online: OnlineKeys,
    vendor: SigningKey,
}

fn keys() -> Keys {
    let generate = || SigningKey::generate().unwrap();
    Keys {
        root: generate(),
        online: OnlineKeys {
            timestamp: generate(),
            snapshot: generate(),
            targets: generate(),
        },
        vendor: generate(),
    }
}

fn root_of(keys: &Keys, previous: Option<&Root>) -> Root {
    root_document(
        previous,
        &[keys.root.public()],
        1,
        [
            &keys.online.timestamp.public(),
            &keys.online.snapshot.public(),
            &keys.online.targets.public(),
        ],
        now().plus_seconds(365 * 86_400),
    )
}

fn copy(online: &OnlineKeys) -> OnlineKeys {
    let again = |k: &SigningKey| SigningKey::from_pkcs8(k.pkcs8()).unwrap();
    OnlineKeys {
        timestamp: again(&online.timestamp),
        snapshot: again(&online.snapshot),
        targets: again(&online.targets),
    }
}

fn repository(keys: &Keys) -> (Repository, Vec<u8>) {
    let root = sign(&root_of(keys, None), &[&keys.root]);
    let repo =
        Repository::new(vec![root.clone()], copy(&keys.online), Lifetimes::default()).unwrap();
    (repo, root)
}

fn targets(content: &[u8]) -> BTreeMap<String, TargetFile> {
    BTreeMap::from([(
        PATH.to_owned(),
        TargetFile {
            length: content.len() as u64,
            hashes: hashes_of(content),
            custom: None,
        },
    )])
}

fn online_vendor(keys: &Keys, content: &[u8]) -> Desired {
    Desired {
        roles: vec![DesiredRole {
            name: "vendor-maker-a".into(),
            paths: vec!["packages/maker-a/*/*/*".into()],
            terminating: true,
            keys: vec![keys.online.targets.public()],
            threshold: 1,
            content: RoleContent::Online(targets(content)),
        }],
    }
}

fn by_role(files: &[File]) -> BTreeMap<String, File> {
    files.iter().map(|f| (f.role.clone(), f.clone())).collect()
}

/// A client's full refresh from what the repository served, at `at`.
fn refresh(
    root: &[u8],
    files: &BTreeMap<String, File>,
    at: Timestamp,
) -> Result<TrustedSet, TrustError> {
    let mut set = TrustedSet::new(root, at)?;
    set.root_update_finished()?;
    set.update_timestamp(&files["timestamp"].bytes, None)?;
    set.update_snapshot(&files["snapshot"].bytes, None)?;
    set.update_targets(&files["targets"].bytes)?;
    set.update_delegated("vendor-maker-a", "targets", &files["vendor-maker-a"].bytes)?;
    Ok(set)
}

#[test]
fn what_the_repository_signs_a_client_trusts() {
    let keys = keys();
    let (mut repo, root) = repository(&keys);
    let files = repo.update(&online_vendor(&keys, PACKAGE), now()).unwrap();
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "1.vendor-maker-a.json",
            "1.targets.json",
            "1.snapshot.json",
            "timestamp.json"
        ],
        "delegated roles first, the timestamp last"
    );
    let set = refresh(&root, &by_role(&files), now()).unwrap();
    match set.find_target(PATH) {
        TargetSearch::Found { file, .. } => herd_tuf::verify_target(PATH, &file, PACKAGE).unwrap(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn nothing_changed_nothing_signed_and_only_what_expires_is_refreshed() {
    let keys = keys();
    let (mut repo, _) = repository(&keys);
    let desired = online_vendor(&keys, PACKAGE);
    repo.update(&desired, now()).unwrap();
    assert!(
        repo.update(&desired, now().plus_seconds(60))
            .unwrap()
            .is_empty()
    );
    // Past half the timestamp's six hours: only the timestamp is signed again.
    let files = repo.update(&desired, now().plus_seconds(4 * 3600)).unwrap();
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["timestamp.json"]);
    assert_eq!(files[0].version, 2);
}

#[test]
fn a_changed_role_moves_its_version_the_snapshot_and_the_timestamp() {
    let keys = keys();
    let (mut repo, root) = repository(&keys);
    repo.update(&online_vendor(&keys, PACKAGE), now()).unwrap();
    let files = repo
        .update(&online_vendor(&keys, b"the next release"), now())
        .unwrap();
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["2.vendor-maker-a.json", "2.snapshot.json", "timestamp.json"],
        "the top-level targets did not change"
    );
    assert_eq!(files[0].version, 2);
    let _ = root;
}

fn vendor_signed(
    keys: &Keys,
    version: u64,
    path: &str,
    signer: &SigningKey,
    expires: Timestamp,
) -> Vec<u8> {
    let role = Targets {
        type_: "targets".into(),
        spec_version: "1.0.31".into(),
        version,
        expires: format_expiry(expires),
        targets: BTreeMap::from([(
            path.to_owned(),
            TargetFile {
                length: PACKAGE.len() as u64,
                hashes: hashes_of(PACKAGE),
                custom: None,
            },
        )]),
        delegations: None,
    };
    let _ = keys;
    sign(&role, &[signer])
}

fn vendor_desired(keys: &Keys, bytes: Option<Vec<u8>>) -> Desired {
    Desired {
        roles: vec![DesiredRole {
            name: "vendor-maker-a".into(),
            paths: vec!["packages/maker-a/*/*/*".into()],
            terminating: true,
            keys: vec![keys.vendor.public()],
            threshold: 1,
            content: RoleContent::Signed(bytes),
        }],
    }
}

#[test]
fn a_vendor_signed_role_is_adopted_and_a_client_trusts_it() {
    let keys = keys();
    let (mut repo, root) = repository(&keys);
    let week = now().plus_seconds(7 * 86_400);
    let signed = vendor_signed(&keys, 1, PATH, &keys.vendor, week);
    let files = repo
        .update(&vendor_desired(&keys, Some(signed.clone())), now())
        .unwrap();
    let files = by_role(&files);
    assert_eq!(
        files["vendor-maker-a"].bytes, signed,
        "served exactly as signed"
    );
    refresh(&root, &files, now()).unwrap();
}

#[test]
fn a_vendor_role_signed_by_another_key_rolled_back_expired_or_outside_its_paths_is_refused() {
    let keys = keys();
    let (mut repo, _) = repository(&keys);
    let week = now().plus_seconds(7 * 86_400);
    let forged = vendor_signed(&keys, 1, PATH, &keys.online.targets, week);
    let err = repo
        .update(&vendor_desired(&keys, Some(forged)), now())
        .unwrap_err();
    assert!(err.to_string().contains("0 valid signature"), "{err}");

    let outside = vendor_signed(
        &keys,
        1,
        "packages/maker-b/x/1/linux.archive",
        &keys.vendor,
        week,
    );
    let err = repo
        .update(&vendor_desired(&keys, Some(outside)), now())
        .unwrap_err();
    assert!(err.to_string().contains("outside its paths"), "{err}");

    let expired = vendor_signed(&keys, 1, PATH, &keys.vendor, now().plus_seconds(-1));
    let err = repo
        .update(&vendor_desired(&keys, Some(expired)), now())
        .unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");

    let v2 = vendor_signed(&keys, 2, PATH, &keys.vendor, week);
    repo.update(&vendor_desired(&keys, Some(v2)), now())
        .unwrap();
    let v1 = vendor_signed(&keys, 1, PATH, &keys.vendor, week);
    let err = repo
        .update(&vendor_desired(&keys, Some(v1)), now())
        .unwrap_err();
    assert!(err.to_string().contains("not above the current 2"), "{err}");
}

#[test]
fn a_rotated_root_is_walked_and_its_new_online_keys_trusted() {
    let old = keys();
    let (mut repo, root_v1) = repository(&old);
    repo.update(&online_vendor(&old, PACKAGE), now()).unwrap();
    // New root key and new online keys: version 2, signed by the old root key and the new one.
    let new = keys();
    let next = root_of(&new, Some(repo.root()));
    let root_v2 = sign(&next, &[&old.root, &new.root]);
    repo.set_online_keys(copy(&new.online));
    repo.add_root(root_v2.clone()).unwrap();
    let files = by_role(&repo.update(&online_vendor(&new, PACKAGE), now()).unwrap());
    assert_eq!(files["timestamp"].version, 2, "re-signed with the new keys");

    let mut set = TrustedSet::new(&root_v1, now()).unwrap();
    set.update_root(&root_v2).unwrap();
    set.root_update_finished().unwrap();
    set.update_timestamp(&files["timestamp"].bytes, None)
        .unwrap();
    set.update_snapshot(&files["snapshot"].bytes, None).unwrap();
    set.update_targets(&files["targets"].bytes).unwrap();
    set.update_delegated("vendor-maker-a", "targets", &files["vendor-maker-a"].bytes)
        .unwrap();
}

#[test]
fn a_root_signed_by_the_new_keys_alone_is_not_a_rotation() {
    let old = keys();
    let (mut repo, _) = repository(&old);
    let new = keys();
    let next = root_of(&new, Some(repo.root()));
    let err = repo.add_root(sign(&next, &[&new.root])).unwrap_err();
    assert!(err.to_string().contains("0 valid signature"), "{err}");
}

#[test]
fn a_pinned_vendor_role_delegated_to_the_centers_key_is_refused() {
    let keys = keys();
    let mut root = root_of(&keys, None);
    root.pinned_roles
        .insert("vendor-maker-a".into(), vec![keys.vendor.key_id()]);
    let root_bytes = sign(&root, &[&keys.root]);
    let mut repo = Repository::new(
        vec![root_bytes.clone()],
        copy(&keys.online),
        Lifetimes::default(),
    )
    .unwrap();
    // A center holding only the online targets key delegates the vendor's role to itself.
    let files = by_role(
        &repo
            .update(&online_vendor(&keys, b"forged"), now())
            .unwrap(),
    );
    let err = refresh(&root_bytes, &files, now()).unwrap_err();
    assert!(matches!(err, TrustError::Unpinned { .. }), "{err}");
}

#[test]
fn a_pinned_key_id_mapped_to_another_key_is_refused() {
    let keys = keys();
    let mut root = root_of(&keys, None);
    root.pinned_roles
        .insert("vendor-maker-a".into(), vec![keys.vendor.key_id()]);
    let root_bytes = sign(&root, &[&keys.root]);
    let mut repo = Repository::new(
        vec![root_bytes.clone()],
        copy(&keys.online),
        Lifetimes::default(),
    )
    .unwrap();
    repo.update(&online_vendor(&keys, PACKAGE), now()).unwrap();
    // The forger lists the pinned key id but with its own public key, and signs with it.
    let files = by_role(
        &repo
            .update(
                &online_vendor(&keys, PACKAGE),
                now().plus_seconds(5 * 86_400),
            )
            .unwrap(),
    );
    let forged_key = SigningKey::generate().unwrap();
    let envelope: serde_json::Value = serde_json::from_slice(&files["targets"].bytes).unwrap();
    let mut targets: Targets = serde_json::from_value(envelope["signed"].clone()).unwrap();
    let delegations = targets.delegations.as_mut().unwrap();
    delegations.keys = BTreeMap::from([(keys.vendor.key_id(), forged_key.public())]);
    delegations.roles[0].keyids = vec![keys.vendor.key_id()];
    // The snapshot names targets by version only, so the forged document of the same version
    // passes it; the pin is what stops it.
    let forged_targets = sign(&targets, &[&keys.online.targets]);
    let forged_role = vendor_signed(&keys, 1, PATH, &forged_key, now().plus_seconds(86_400));
    let mut set = TrustedSet::new(&root_bytes, now()).unwrap();
    set.root_update_finished().unwrap();
    set.update_timestamp(&files["timestamp"].bytes, None)
        .unwrap();
    set.update_snapshot(&files["snapshot"].bytes, None).unwrap();
    set.update_targets(&forged_targets).unwrap();
    let err = set
        .update_delegated("vendor-maker-a", "targets", &forged_role)
        .unwrap_err();
    assert!(matches!(err, TrustError::Unpinned { .. }), "{err}");
}
