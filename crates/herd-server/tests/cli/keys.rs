//! `herd keys` and `herd vendor key` on the offline machine, with the real binary and no center:
//! making root keys (clear and sealed), refusing unusable thresholds and used directories,
//! signing a root proposal (the center's side of the proposal is built here with herd-tuf, as
//! `herd keys propose-root` builds it), refusing the wrong key directory, a sealed key without
//! its KEK and a proposal that does not follow the root the keys signed, and listing a key
//! directory with a root due for renewal.

use std::path::Path;

use herd_core::Timestamp;
use herd_tuf::ceremony::{RootChanges, RootProposal, next_root};
use herd_tuf::repository::{check_root_chain, root_document};
use herd_tuf::{PublicKey, SigningKey, sign};

use super::herd_in;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(dir: &Path, args: &[&str]) -> std::process::Output {
    let out = herd_in(dir, args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    out
}

fn refused(dir: &Path, args: &[&str], expected: &str) {
    let out = herd_in(dir, args);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    assert!(
        stderr(&out).contains(expected),
        "{args:?}: {}",
        stderr(&out)
    );
}

/// The center's auto-initialised root v1: one root key it holds, three online keys.
struct CenterRoot {
    root_key: SigningKey,
    v1: Vec<u8>,
}

fn center_root(expires: &str) -> CenterRoot {
    let root_key = SigningKey::generate().unwrap();
    let online: Vec<PublicKey> = (0..3)
        .map(|_| SigningKey::generate().unwrap().public())
        .collect();
    let root = root_document(
        None,
        &[root_key.public()],
        1,
        [&online[0], &online[1], &online[2]],
        Timestamp::parse(expires).unwrap(),
    );
    let v1 = sign(&root, &[&root_key]);
    CenterRoot { root_key, v1 }
}

/// What `herd keys propose-root --new-keys DIR` writes: the next root naming DIR's keys.
fn proposal_to(center: &CenterRoot, keys_dir: &Path) -> RootProposal {
    let listing: serde_json::Value =
        serde_json::from_slice(&std::fs::read(keys_dir.join("root-keys.pub.json")).unwrap())
            .unwrap();
    let keys: Vec<PublicKey> = serde_json::from_value(listing["keys"].clone()).unwrap();
    let previous = herd_tuf::metadata::Envelope::<herd_tuf::Root>::parse("root", &center.v1)
        .unwrap()
        .signed;
    let now = Timestamp::parse("2026-12-01T00:00:00Z").unwrap();
    let changes = RootChanges {
        root_keys: Some(keys),
        threshold: Some(listing["threshold"].as_u64().unwrap() as u32),
        ..RootChanges::renewal(Timestamp::parse("2099-01-01T00:00:00Z").unwrap())
    };
    RootProposal::new(&center.v1, next_root(&previous, &changes, now).unwrap()).unwrap()
}

#[test]
fn init_refuses_unusable_thresholds_and_used_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    refused(
        dir,
        &[
            "keys",
            "init",
            "--out",
            "k",
            "--keys",
            "3",
            "--threshold",
            "4",
        ],
        "a threshold of 4 with 3 key(s): it must be 1 to 3",
    );
    refused(
        dir,
        &["keys", "init", "--out", "k", "--threshold", "0"],
        "a threshold of 0 with 3 key(s)",
    );
    assert!(!dir.join("k").exists(), "nothing is written when refused");
    let out = ok(dir, &["keys", "init", "--out", "k"]);
    let ids: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(ids.len(), 3, "one key id per line");
    for id in &ids {
        let file = dir.join("k").join(format!("root-{}.key", &id[..16]));
        let mode = std::os::unix::fs::PermissionsExt::mode(&file.metadata().unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    }
    refused(
        dir,
        &["keys", "init", "--out", "k"],
        "k is not empty: `herd keys init` writes into a new directory",
    );
    refused(
        dir,
        &["keys", "init", "--out", "k2", "--kek-file", "missing.kek"],
        "cannot read the key-encryption key missing.kek",
    );
}

#[test]
fn the_offline_machine_signs_a_proposal_and_refuses_what_it_cannot_vouch_for() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("root.kek"), "0123456789abcdef0123456789abcdef\n").unwrap();
    ok(
        dir,
        &["keys", "init", "--out", "offline", "--kek-file", "root.kek"],
    );
    ok(
        dir,
        &[
            "keys",
            "init",
            "--out",
            "stranger",
            "--keys",
            "1",
            "--threshold",
            "1",
        ],
    );
    let center = center_root("2027-01-01T00:00:00Z");
    let proposal = proposal_to(&center, &dir.join("offline"));
    std::fs::write(dir.join("next.json"), proposal.to_text()).unwrap();

    refused(
        dir,
        &["keys", "sign-root", "next.json", "--keys", "offline"],
        "is sealed: pass --kek-file",
    );
    refused(
        dir,
        &["keys", "sign-root", "next.json", "--keys", "stranger"],
        "is it the right key directory?",
    );
    let out = ok(
        dir,
        &[
            "keys",
            "sign-root",
            "next.json",
            "--keys",
            "offline",
            "--kek-file",
            "root.kek",
        ],
    );
    let shown = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(shown.contains("root version 1 -> 2"), "{shown}");
    assert!(
        shown.contains("root keys: 1 of ["),
        "the signer sees the change: {shown}"
    );
    assert!(
        stderr(&out).contains("0 of 1 needed from the current root keys, 3 of 2 from the new ones"),
        "{}",
        stderr(&out)
    );

    // Back online, the center co-signs with its own root key; the chain is what clients walk.
    let text = std::fs::read_to_string(dir.join("next.json")).unwrap();
    let mut signed = RootProposal::parse("next.json", &text).unwrap();
    let now = Timestamp::parse("2026-12-01T00:00:00Z").unwrap();
    signed.check_own(now).unwrap();
    assert!(
        signed.check(now).is_err(),
        "the center's signature is still missing"
    );
    signed.sign(&[&center.root_key]);
    signed.check(now).unwrap();
    let root = check_root_chain(&[center.v1.clone(), signed.bytes()]).unwrap();
    assert_eq!(root.roles["root"].threshold, 2);

    // A proposal that does not follow the root the keys signed is not signed.
    std::fs::write(dir.join("offline/1.root.json"), &center.v1).unwrap();
    let impostor = center_root("2027-01-01T00:00:00Z");
    let forged = proposal_to(&impostor, &dir.join("offline"));
    std::fs::write(dir.join("forged.json"), forged.to_text()).unwrap();
    refused(
        dir,
        &[
            "keys",
            "sign-root",
            "forged.json",
            "--keys",
            "offline",
            "--kek-file",
            "root.kek",
        ],
        "another deployment's root, or a forged one",
    );
    std::fs::write(dir.join("broken.json"), "{\"format\": 1}").unwrap();
    refused(
        dir,
        &["keys", "sign-root", "broken.json", "--keys", "offline"],
        "broken.json: not a root proposal",
    );
}

#[test]
fn show_lists_keys_and_says_when_the_root_needs_renewing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(
        dir,
        &[
            "keys",
            "init",
            "--out",
            "k",
            "--keys",
            "1",
            "--threshold",
            "1",
        ],
    );
    // A root naming that key, expiring in ten days.
    let key_file = std::fs::read_dir(dir.join("k"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "key"))
        .unwrap();
    let herd_tuf::keyfile::KeyFile::Clear(key) =
        herd_tuf::keyfile::decode("k", &std::fs::read_to_string(&key_file).unwrap()).unwrap()
    else {
        panic!("a clear key")
    };
    let online: Vec<PublicKey> = (0..3)
        .map(|_| SigningKey::generate().unwrap().public())
        .collect();
    let soon = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 10 * 86_400;
    let root = root_document(
        None,
        &[key.public()],
        1,
        [&online[0], &online[1], &online[2]],
        Timestamp::from_unix_seconds(soon),
    );
    std::fs::write(dir.join("k/1.root.json"), sign(&root, &[&key])).unwrap();
    let out = ok(dir, &["keys", "show", "k"]);
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        text.contains(&key.key_id()) && text.contains("clear"),
        "{text}"
    );
    assert!(
        text.contains("root  version 1") && text.contains("root keys 1 of 1 (1 here)"),
        "{text}"
    );
    assert!(
        stderr(&out).contains("renew it with `herd keys rotate-root --keys k`"),
        "{}",
        stderr(&out)
    );
    refused(
        dir,
        &["keys", "show", "nowhere"],
        "cannot read the key directory nowhere",
    );
}

#[test]
fn a_vendor_key_is_made_once_and_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = ok(dir, &["vendor", "key", "generate", "--out", "maker-a.key"]);
    let id = String::from_utf8(out.stdout).unwrap();
    let text = std::fs::read_to_string(dir.join("maker-a.key")).unwrap();
    let key = herd_tuf::keyfile::decode("maker-a.key", &text).unwrap();
    assert!(id.starts_with(&key.key_id()), "{id}");
    refused(
        dir,
        &["vendors", "key", "generate", "--out", "maker-a.key"],
        "maker-a.key exists",
    );
    // publish --key refuses a key it cannot read before anything is sent.
    std::fs::write(dir.join("feed.json"), "{}").unwrap();
    std::fs::write(dir.join("bad.key"), "not a key\n").unwrap();
    refused(
        dir,
        &[
            "publish",
            "feed.json",
            "--vendor",
            "maker-a",
            "--key",
            "bad.key",
        ],
        "bad.key: line 1: not a Herd TUF key file",
    );
}
