//! Interoperability: python-tuf's `ngclient`, an independent TUF client, refreshes from a
//! repository Herd signed (served over HTTP by Python's own server, consistent snapshots),
//! downloads the vendor's target and verifies it — and refuses the same target tampered; and
//! its client follows a root chain Herd's key ceremony signed (offline keys, a rotated online
//! key, a vendor pinned) and refuses a root under its own threshold.
//!
//! Needs a Python with `tuf` installed: `HERD_TEST_PYTHON` names it (CI sets it to a venv with
//! a pinned python-tuf, and then a missing `tuf` fails the test); otherwise `python3` is tried
//! and the test is skipped, saying so, when it has no `tuf`.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use herd_core::Timestamp;
use support::{PACKAGE, PACKAGE_PATH, Repo};

const CLIENT: &str = r#"
import sys
from tuf.ngclient import Updater
metadata_dir, base, target_dir, path, root_file = sys.argv[1:]
with open(root_file, "rb") as f:
    root = f.read()
updater = Updater(metadata_dir, base + "/metadata/", target_dir, base + "/targets/", bootstrap=root)
updater.refresh()
info = updater.get_targetinfo(path)
if info is None:
    print("not found", file=sys.stderr)
    sys.exit(3)
with open(updater.download_target(info), "rb") as f:
    sys.stdout.write(f.read().decode())
"#;

fn python() -> Option<String> {
    match std::env::var("HERD_TEST_PYTHON") {
        Ok(python) => {
            let ok = Command::new(&python)
                .args(["-c", "import tuf.ngclient"])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "HERD_TEST_PYTHON={python} cannot import tuf.ngclient");
            Some(python)
        }
        Err(_) => Command::new("python3")
            .args(["-c", "import tuf.ngclient"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
            .then(|| "python3".to_owned()),
    }
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(python: &str, dir: &Path) -> (Server, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(python)
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the HTTP server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, format!("http://127.0.0.1:{port}"))
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn python_tuf_ngclient_refreshes_downloads_and_verifies_a_herd_signed_target() {
    let Some(python) = python() else {
        eprintln!("skipped: no python with tuf (set HERD_TEST_PYTHON, as CI does)");
        return;
    };
    let real_now = Timestamp::from_unix_seconds(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
    );
    let repo = Repo::new_at(real_now);
    let tmp = tempfile::tempdir().unwrap();
    let served = tmp.path().join("repository");
    let metadata = served.join("metadata");
    // Consistent snapshots: versioned names, and targets prefixed with their hash.
    write(&metadata.join("1.root.json"), &repo.root_bytes());
    write(&metadata.join("timestamp.json"), &repo.timestamp_bytes());
    write(
        &metadata.join(format!("{}.snapshot.json", repo.snapshot.version)),
        &repo.snapshot_bytes(),
    );
    write(
        &metadata.join(format!("{}.targets.json", repo.targets.version)),
        &repo.targets_bytes(),
    );
    write(
        &metadata.join(format!("{}.maker-a.json", repo.vendor.version)),
        &repo.vendor_bytes(),
    );
    let sha256 = &repo.vendor.targets[PACKAGE_PATH].hashes["sha256"];
    let (dir, name) = PACKAGE_PATH.rsplit_once('/').unwrap();
    let target = served
        .join("targets")
        .join(dir)
        .join(format!("{sha256}.{name}"));
    write(&target, PACKAGE);
    let root_file = tmp.path().join("trusted-root.json");
    write(&root_file, &repo.root_bytes());
    let (_server, base) = serve(&python, &served);

    let run = |client_dir: &str| {
        let metadata_dir = tmp.path().join(client_dir).join("metadata");
        let target_dir = tmp.path().join(client_dir).join("targets");
        std::fs::create_dir_all(&metadata_dir).unwrap();
        std::fs::create_dir_all(&target_dir).unwrap();
        Command::new(&python)
            .args(["-c", CLIENT])
            .arg(&metadata_dir)
            .arg(&base)
            .arg(&target_dir)
            .arg(PACKAGE_PATH)
            .arg(&root_file)
            .output()
            .unwrap()
    };
    let output = run("client");
    assert!(
        output.status.success(),
        "python-tuf refused Herd's repository: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout, PACKAGE, "the verified target's content");

    // The same target, tampered on the server: python-tuf refuses it by the signed hash.
    write(&target, b"the malicious vaccine a package");
    let output = run("second-client");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a tampered target was accepted");
    assert!(
        stderr.contains("LengthOrHashMismatchError") || stderr.contains("length"),
        "{stderr}"
    );
}

/// python-tuf's client walks a root chain (its `TrustedMetadataSet.update_root`, as `refresh`
/// does) and prints the newest root's version and the roles it pins.
const ROOT_CHAIN: &str = r#"
import sys
from tuf.ngclient._internal.trusted_metadata_set import TrustedMetadataSet
from tuf.ngclient.config import EnvelopeType
roots = [open(f, "rb").read() for f in sys.argv[1:]]
trusted = TrustedMetadataSet(roots[0], EnvelopeType.METADATA)
for root in roots[1:]:
    trusted.update_root(root)
pins = trusted.root.unrecognized_fields.get("x-herd-pinned-roles", {})
print(trusted.root.version, ",".join(sorted(pins)))
"#;

#[test]
fn python_tuf_follows_roots_the_key_ceremony_signs_and_refuses_an_under_signed_one() {
    use herd_tuf::ceremony::{OnlineRole, RootChanges, RootProposal, next_root};
    use herd_tuf::metadata::Envelope;
    use herd_tuf::repository::root_document;
    use herd_tuf::{Root, SigningKey, sign};

    let Some(python) = python() else {
        eprintln!("skipped: no python with tuf (set HERD_TEST_PYTHON, as CI does)");
        return;
    };
    let now = Timestamp::from_unix_seconds(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
    );
    let year = now.plus_seconds(365 * 86_400);
    // Root v1 as a center auto-initialises it.
    let center_key = SigningKey::generate().unwrap();
    let online: Vec<SigningKey> = (0..3).map(|_| SigningKey::generate().unwrap()).collect();
    let v1 = sign(
        &root_document(
            None,
            &[center_key.public()],
            1,
            [
                &online[0].public(),
                &online[1].public(),
                &online[2].public(),
            ],
            year,
        ),
        &[&center_key],
    );
    // v2: three offline keys (two sign), a new timestamp key, a vendor pinned; co-signed by
    // the center's key.
    let offline: Vec<SigningKey> = (0..3).map(|_| SigningKey::generate().unwrap()).collect();
    let changes = RootChanges {
        root_keys: Some(offline.iter().map(SigningKey::public).collect()),
        threshold: Some(2),
        online: vec![(
            OnlineRole::Timestamp,
            SigningKey::generate().unwrap().public(),
        )],
        pin: vec![(
            "vendor-acme".into(),
            vec![SigningKey::generate().unwrap().key_id()],
        )],
        ..RootChanges::renewal(year)
    };
    let root_v1 = Envelope::<Root>::parse("root", &v1).unwrap().signed;
    let mut v2 = RootProposal::new(&v1, next_root(&root_v1, &changes, now).unwrap()).unwrap();
    v2.sign(&[&offline[0], &offline[2], &center_key]);
    v2.check(now).unwrap();
    // v3: a renewal signed by two of the three offline keys.
    let mut v3 = RootProposal::new(
        &v2.bytes(),
        next_root(
            v2.root(),
            &RootChanges::renewal(year.plus_seconds(86_400)),
            now,
        )
        .unwrap(),
    )
    .unwrap();
    v3.sign(&[&offline[1], &offline[2]]);
    v3.check(now).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let walk = |roots: &[Vec<u8>]| {
        let files: Vec<_> = roots
            .iter()
            .enumerate()
            .map(|(i, bytes)| {
                let path = tmp.path().join(format!("{}.root.json", i + 1));
                write(&path, bytes);
                path
            })
            .collect();
        Command::new(&python)
            .args(["-c", ROOT_CHAIN])
            .args(&files)
            .output()
            .unwrap()
    };
    let output = walk(&[v1.clone(), v2.bytes(), v3.bytes()]);
    assert!(
        output.status.success(),
        "python-tuf refused the chain: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "3 vendor-acme"
    );

    // The same v2 with one of the offline keys only: under its own threshold.
    let mut under = RootProposal::new(&v1, v2.root().clone()).unwrap();
    under.sign(&[&offline[0], &center_key]);
    assert!(under.check(now).is_err());
    let output = walk(&[v1, under.bytes()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "an under-signed root was accepted"
    );
    assert!(stderr.contains("UnsignedMetadataError"), "{stderr}");
}
