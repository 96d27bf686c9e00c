//! The key ceremony and vendor signing end to end, with a real `herd serve` and the real `herd`
//! commands: moving the center's auto-initialised root offline (at once, and through the
//! offline machine's proposal), renewing and rotating it, a vendor signing its own role and the
//! root pinning that vendor's key — each result walked as a terminal walks it, with herd-tuf's
//! client, from the root the terminal trusted first.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use herd_core::Timestamp;
use herd_proto::distribution::{PackageCustom, package_target, read_custom, vendor_role};
use herd_tuf::metadata::Envelope;
use herd_tuf::repository::check_root_chain;
use herd_tuf::{Root, TargetSearch, TrustedSet};
use serde_json::json;
use support::{HERD, TestCenter, vendor_token};

struct Env {
    center: TestCenter,
    work: tempfile::TempDir,
}

impl Env {
    fn start() -> Env {
        Env {
            center: TestCenter::start(),
            work: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// `herd ARGS` in the work directory, as the operator unless the arguments say otherwise.
    fn herd(&self, args: &[&str]) -> Output {
        Command::new(HERD)
            .args(args)
            .current_dir(self.work.path())
            .env("HERD_SERVER", &self.center.url)
            .env("HERD_CA", self.center.data_dir.join("ca.pem"))
            .env(
                "HERD_TOKEN_FILE",
                self.center.data_dir.join("operator.token"),
            )
            .env_remove("HERD_TOKEN")
            .output()
            .expect("herd runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.herd(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn refused(&self, args: &[&str], code: i32, expected: &str) {
        let out = self.herd(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }

    /// A metadata file as the center serves it.
    fn metadata(&self, file: &str) -> Option<Vec<u8>> {
        self.center.anonymous().tuf_metadata(file).unwrap()
    }

    /// Every root the center serves, version 1 first.
    fn roots(&self) -> Vec<Vec<u8>> {
        (1..)
            .map_while(|version| self.metadata(&format!("{version}.root.json")))
            .collect()
    }

    /// What a terminal that trusted `first_root` trusts after one refresh: the root chain, then
    /// timestamp, snapshot and top-level targets.
    fn walk(&self, first_root: &[u8]) -> TrustedSet {
        let mut trusted = TrustedSet::new(first_root, now()).unwrap();
        for root in self.roots().iter().skip(trusted.root_version() as usize) {
            trusted.update_root(root).unwrap();
        }
        trusted.root_update_finished().unwrap();
        trusted
            .update_timestamp(&self.metadata("timestamp.json").unwrap(), None)
            .unwrap();
        let snapshot = trusted.snapshot_meta().unwrap().version;
        trusted
            .update_snapshot(
                &self.metadata(&format!("{snapshot}.snapshot.json")).unwrap(),
                None,
            )
            .unwrap();
        let targets = trusted.targets_meta("targets").unwrap().version;
        trusted
            .update_targets(&self.metadata(&format!("{targets}.targets.json")).unwrap())
            .unwrap();
        trusted
    }
}

fn now() -> Timestamp {
    Timestamp::from_unix_seconds(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
    )
}

fn root_of(bytes: &[u8]) -> Root {
    Envelope::<Root>::parse("root", bytes).unwrap().signed
}

#[test]
fn the_root_moves_offline_then_is_renewed_and_rotated_and_every_terminal_follows() {
    let env = Env::start();
    let v1 = env
        .metadata("root.json")
        .expect("the center auto-initialises its root");
    assert_eq!(root_of(&v1).version, 1);

    let ids = env.ok(&[
        "keys",
        "init",
        "--out",
        "offline",
        "--keys",
        "3",
        "--threshold",
        "2",
        "--install",
    ]);
    let v2 = env
        .metadata("2.root.json")
        .expect("root version 2 installed");
    assert_eq!(std::fs::read(env.path("offline/2.root.json")).unwrap(), v2);
    let root = check_root_chain(&[v1.clone(), v2.clone()]).unwrap();
    let mut named = root.roles["root"].keyids.clone();
    named.sort();
    let mut made: Vec<String> = ids.lines().map(str::to_owned).collect();
    made.sort();
    assert_eq!((named, root.roles["root"].threshold), (made, 2));
    assert_eq!(
        root.roles["timestamp"],
        root_of(&v1).roles["timestamp"],
        "online keys stay"
    );
    env.walk(&v1);

    // The center no longer holds a root key: a second init cannot take the root over.
    env.refused(
        &[
            "keys",
            "init",
            "--out",
            "again",
            "--keys",
            "1",
            "--threshold",
            "1",
            "--install",
        ],
        1,
        "installing root version 3",
    );
    // Nor can a directory of other keys rotate it.
    env.ok(&[
        "keys",
        "init",
        "--out",
        "stranger",
        "--keys",
        "1",
        "--threshold",
        "1",
    ]);
    env.refused(
        &["keys", "rotate-root", "--keys", "stranger"],
        2,
        "is it the right key directory?",
    );

    // Renewal: same keys, a new expiry.
    env.ok(&[
        "keys",
        "rotate-root",
        "--keys",
        "offline",
        "--expires-days",
        "300",
    ]);
    let v3 = root_of(&env.metadata("3.root.json").unwrap());
    assert_eq!(
        (v3.keys.clone(), v3.roles.clone()),
        (root.keys.clone(), root.roles.clone())
    );

    // A new timestamp key: the center signs with it once the root naming it is installed.
    env.ok(&[
        "keys",
        "rotate-root",
        "--keys",
        "offline",
        "--rotate-online",
        "timestamp",
    ]);
    let v4 = root_of(&env.metadata("4.root.json").unwrap());
    assert_ne!(v4.roles["timestamp"], v3.roles["timestamp"]);
    assert_eq!(v4.roles["snapshot"], v3.roles["snapshot"]);
    let trusted = env.walk(&v1);
    assert_eq!(trusted.root_version(), 4);

    // New root keys, signed by two of the old and two of the new.
    env.ok(&[
        "keys",
        "init",
        "--out",
        "next",
        "--keys",
        "2",
        "--threshold",
        "2",
    ]);
    env.ok(&[
        "keys",
        "rotate-root",
        "--keys",
        "offline",
        "--new-keys",
        "next",
    ]);
    assert!(env.path("next/5.root.json").exists());
    check_root_chain(&env.roots()).unwrap();
    env.walk(&v1);
    env.refused(
        &["keys", "rotate-root", "--keys", "offline"],
        2,
        "is it the right key directory?",
    );
}

#[test]
fn the_offline_machine_signs_a_proposal_without_the_network() {
    let env = Env::start();
    let v1 = env.metadata("root.json").unwrap();
    env.ok(&["keys", "init", "--out", "offline"]);
    env.ok(&[
        "keys",
        "propose-root",
        "--new-keys",
        "offline/root-keys.pub.json",
        "--out",
        "next.json",
    ]);
    // Signing reads no center: point it at an address nobody answers.
    let out = Command::new(HERD)
        .args(["keys", "sign-root", "next.json", "--keys", "offline"])
        .current_dir(env.work.path())
        .env("HERD_SERVER", "https://127.0.0.1:1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.ok(&["keys", "install-root", "next.json"]);
    let v2 = env.metadata("2.root.json").unwrap();
    assert_eq!(std::fs::read(env.path("2.root.json")).unwrap(), v2);
    env.walk(&v1);
    env.refused(
        &["keys", "install-root", "next.json"],
        2,
        "the center serves root version 2, not the root version 1 the proposal",
    );
}

fn build_package(dir: &Path) -> herd_package::BuiltPackage {
    let defs = dir.join("a.ndb");
    std::fs::write(&defs, "Herd.Test.A:0:*:3d3d206d616b65722d61203d3d\n").unwrap();
    let test = dir.join("test.txt");
    std::fs::write(&test, "== maker-a ==\n").unwrap();
    let spec = herd_package::PackageSpec {
        product: "vaccine-a".into(),
        vendor: "maker-a".into(),
        version: "2.0".into(),
        seq: 2,
        pattern: "a-2".into(),
        definitions: vec![defs],
        test_pattern: test,
        post_install: None,
        pre_uninstall: None,
        platforms: vec!["phone".into()],
    };
    herd_package::build(&spec, &dir.join("dist/vaccine-a-2.0.tar.gz")).unwrap()
}

#[test]
fn a_vendor_signs_its_own_role_and_the_root_pins_its_key() {
    let env = Env::start();
    let v1 = env.metadata("root.json").unwrap();
    std::fs::create_dir(env.path("dist")).unwrap();
    let built = build_package(env.work.path());
    let token = vendor_token(&env.center, "maker-a");
    let feed = json!({
        "format": "herd.catalog/v1",
        "vendors": [{"id": "maker-a", "name": "Maker A"}],
        "products": [{"id": "vaccine-a", "vendor": "maker-a", "name": "Vaccine a", "platforms": ["phone"]}],
        "releases": [{"product": "vaccine-a", "version": "2.0", "pattern": "a-2", "seq": 2,
                      "published": "2026-01-01T00:00:00Z", "packages": built.catalog_packages}],
        "threats": [], "coverage": []
    });
    std::fs::write(env.path("dist/feed.json"), feed.to_string()).unwrap();
    env.ok(&["upload", "dist/vaccine-a-2.0.tar.gz", "--token", &token]);
    let key_id = env.ok(&["vendor", "key", "generate", "--out", "maker-a.key"]);
    let key_id = key_id.split_whitespace().next().unwrap().to_owned();
    env.ok(&[
        "vendor",
        "key",
        "register",
        "--key",
        "maker-a.key",
        "--vendor",
        "maker-a",
        "--token",
        &token,
    ]);
    // A package file that is not there stops the signing, naming the package.
    std::fs::create_dir(env.path("empty")).unwrap();
    env.refused(
        &[
            "publish",
            "dist/feed.json",
            "--key",
            "maker-a.key",
            "--packages",
            "empty",
            "--token",
            &token,
        ],
        2,
        "packages/maker-a/vaccine-a/2.0/phone.archive",
    );
    let out = env.ok(&[
        "publish",
        "dist/feed.json",
        "--key",
        "maker-a.key",
        "--token",
        &token,
    ]);
    assert!(out.contains("signed vendor-maker-a version"), "{out}");

    // A terminal finds the package through the vendor's role, signed by the vendor's key.
    let mut trusted = env.walk(&v1);
    let role = vendor_role("maker-a");
    let delegation = trusted
        .targets("targets")
        .unwrap()
        .delegations
        .clone()
        .unwrap();
    let delegated = delegation.roles.iter().find(|r| r.name == role).unwrap();
    assert_eq!(delegated.keyids, std::slice::from_ref(&key_id));
    let version = trusted.targets_meta(&role).unwrap().version;
    let bytes = env.metadata(&format!("{version}.{role}.json")).unwrap();
    trusted.update_delegated(&role, "targets", &bytes).unwrap();
    let path = package_target("maker-a", "vaccine-a", "2.0", "phone", "archive");
    let TargetSearch::Found { role: found, file } = trusted.find_target(&path) else {
        panic!("{path} not found")
    };
    assert_eq!(found, role);
    assert_eq!(
        (file.length, &file.hashes["sha256"]),
        (built.size, &built.sha256)
    );
    let custom: PackageCustom = read_custom(&path, file.custom.as_ref()).unwrap();
    assert!(
        custom.content.is_some(),
        "an archive package carries its content digest"
    );

    // The root pins the vendor's key: the center can no longer sign for it.
    env.ok(&[
        "keys",
        "init",
        "--out",
        "offline",
        "--keys",
        "1",
        "--threshold",
        "1",
        "--install",
    ]);
    env.refused(
        &[
            "keys",
            "rotate-root",
            "--keys",
            "offline",
            "--pin-vendor",
            "maker-a=0000",
        ],
        2,
        "do not pin it",
    );
    env.ok(&[
        "keys",
        "rotate-root",
        "--keys",
        "offline",
        "--pin-vendor",
        &format!("maker-a={key_id}"),
    ]);
    let pinned = root_of(&env.metadata("root.json").unwrap());
    assert_eq!(pinned.pinned_roles[&role], [key_id]);
    env.walk(&v1);
    env.ok(&[
        "keys",
        "rotate-root",
        "--keys",
        "offline",
        "--unpin-vendor",
        "maker-a",
    ]);
    assert!(
        root_of(&env.metadata("root.json").unwrap())
            .pinned_roles
            .is_empty()
    );
}
