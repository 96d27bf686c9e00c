//! The center as a TUF repository, through a real `herd serve`: a vendor's uploaded archive
//! package is listed in signed metadata that verifies from the served root with Herd's own
//! client (`herd_tuf::TrustedSet`) and with python-tuf's `ngclient`, a republish signs only
//! what changed, signatures are renewed before they expire, and what is not in the
//! repository is a 404 with the API's JSON error.

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use herd_client::Client;
use herd_core::Timestamp;
use herd_proto::distribution::{PackageCustom, package_target, read_custom};
use herd_tuf::{TargetFile, TrustedSet, verify_target};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{TestCenter, build_package, enrolment_token, feed, refresh_and_find, vendor_client};

/// `GET path` with curl, trusting the center's CA: (status, headers, body).
fn fetch(center: &TestCenter, path: &str) -> (u16, String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let (headers, body) = (dir.path().join("headers"), dir.path().join("body"));
    let out = std::process::Command::new("curl")
        .args(["-s", "-g", "--path-as-is", "-w", "%{http_code}", "--cacert"])
        .arg(center.data_dir.join("ca.pem"))
        .arg("-D")
        .arg(&headers)
        .arg("-o")
        .arg(&body)
        .arg(format!("{}{path}", center.url))
        .output()
        .expect("curl runs");
    let status = String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0);
    (
        status,
        std::fs::read_to_string(&headers).unwrap_or_default(),
        std::fs::read(&body).unwrap_or_default(),
    )
}

/// The bytes at `path`, which must be served.
fn get(center: &TestCenter, path: &str) -> Vec<u8> {
    let (status, _, body) = fetch(center, path);
    assert_eq!(
        status,
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&body)
    );
    body
}

fn signed(bytes: &[u8]) -> Value {
    serde_json::from_slice::<Value>(bytes).unwrap()["signed"].clone()
}

/// Versions of every role the timestamp and snapshot name: ("timestamp", N), ("snapshot", N),
/// ("targets", N), ("vendor-acme", N)…
fn versions(center: &TestCenter) -> Vec<(String, u64)> {
    let timestamp = signed(&get(center, "/tuf/metadata/timestamp.json"));
    let snapshot_version = timestamp["meta"]["snapshot.json"]["version"]
        .as_u64()
        .unwrap();
    let snapshot = signed(&get(
        center,
        &format!("/tuf/metadata/{snapshot_version}.snapshot.json"),
    ));
    let mut out = vec![
        (
            "timestamp".to_owned(),
            timestamp["version"].as_u64().unwrap(),
        ),
        ("snapshot".to_owned(), snapshot_version),
    ];
    for (file, meta) in snapshot["meta"].as_object().unwrap() {
        out.push((
            file.trim_end_matches(".json").to_owned(),
            meta["version"].as_u64().unwrap(),
        ));
    }
    out
}

fn version_of(versions: &[(String, u64)], role: &str) -> Option<u64> {
    versions.iter().find(|(r, _)| r == role).map(|(_, v)| *v)
}

/// Waits (at most 20 s) until `ready` holds of the served versions.
fn wait_for(
    center: &TestCenter,
    what: &str,
    ready: impl Fn(&[(String, u64)]) -> bool,
) -> Vec<(String, u64)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = versions(center);
        if ready(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "{what}: still {now:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn publish(client: &Client, vendor: &str, feed: &Value) {
    client
        .publish_feed(vendor, &serde_json::to_vec(feed).unwrap())
        .expect("publish");
}

/// The SHA-256 (hex) and length of the tar inside a package.
fn content_of(package: &[u8]) -> (String, u64) {
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(package)
        .read_to_end(&mut tar)
        .unwrap();
    (hex::encode(Sha256::digest(&tar)), tar.len() as u64)
}

/// The target path of acme-av `version`'s package, and where the center serves its bytes.
fn acme_paths(version: &str, sha256: &str) -> (String, String) {
    let path = package_target("acme", "acme-av", version, "linux", "archive");
    let url = format!(
        "/tuf/targets/{}",
        herd_proto::distribution::consistent_target_name(&path, sha256)
    );
    (path, url)
}

#[test]
fn a_published_package_is_listed_signed_and_verifies_from_the_root() {
    let center = TestCenter::start();
    let work = tempfile::tempdir().unwrap();
    let acme = vendor_client(&center, "acme");
    let (package, packages) = build_package(work.path(), "1.0", 1);
    acme.upload_package(&package).unwrap();
    publish(&acme, "acme", &feed("acme", &[("1.0", 1, &packages)]));
    wait_for(&center, "acme's role", |v| {
        version_of(v, "vendor-acme").is_some()
    });

    // The root a terminal gets at enrolment is the one served.
    let root = get(&center, "/tuf/metadata/root.json");
    assert_eq!(root, get(&center, "/tuf/metadata/1.root.json"));
    let token = enrolment_token(&center, 1);
    let (_key_pem, csr_pem) = herd_tls::new_key_and_csr("t1").unwrap();
    let enrolled = center
        .anonymous()
        .enrol(&herd_proto::api::EnrolRequest {
            token,
            csr_pem,
            id: Some("t1".into()),
            user: None,
            hardware: herd_proto::terminal::HardwareDoc {
                kind: "linux".into(),
                platform: "linux".into(),
                model: None,
            },
            tz: None,
        })
        .unwrap();
    assert_eq!(
        enrolled.tuf_root.as_deref().map(str::as_bytes),
        Some(&root[..])
    );

    let bytes = std::fs::read(&package).unwrap();
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let (path, url) = acme_paths("1.0", &sha256);
    let file = refresh_and_find(|p| get(&center, p), &root, &path);
    assert_eq!(file.length, bytes.len() as u64);
    assert_eq!(
        file.hashes.keys().collect::<Vec<_>>(),
        ["sha256"],
        "the blob store's hash only"
    );
    let custom: PackageCustom = read_custom(&path, file.custom.as_ref()).unwrap();
    assert_eq!(
        (
            custom.vendor.as_str(),
            custom.product.as_str(),
            custom.version.as_str()
        ),
        ("acme", "acme-av", "1.0")
    );
    assert_eq!((custom.seq, custom.pattern.as_str()), (1, "acme-1"));
    assert_eq!(
        (custom.platform.as_str(), custom.format.as_str()),
        ("linux", "archive")
    );
    let content = custom
        .content
        .expect("an archive package's content is signed");
    assert_eq!((content.sha256, content.length), content_of(&bytes));

    // The target's bytes, content-addressed, verify against the signed metadata.
    let (status, headers, served) = fetch(&center, &url);
    assert_eq!(status, 200);
    verify_target(&path, &file, &served).unwrap();
    assert!(
        headers.to_ascii_lowercase().contains("immutable"),
        "{headers}"
    );
    let (status, headers, _) = fetch(&center, "/tuf/metadata/timestamp.json");
    assert_eq!(status, 200);
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("cache-control: no-cache"),
        "{headers}"
    );

    // What /metrics says of it.
    let metrics = String::from_utf8(get(&center, "/metrics")).unwrap();
    assert!(
        metrics.contains("herd_tuf_signatures_total{role=\"vendor-acme\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("herd_tuf_expiry_seconds{role=\"timestamp\"}"),
        "{metrics}"
    );
}

#[test]
fn a_republish_signs_only_what_changed() {
    let center = TestCenter::start();
    let work = tempfile::tempdir().unwrap();
    let acme = vendor_client(&center, "acme");
    let (first, first_packages) = build_package(work.path(), "1.0", 1);
    acme.upload_package(&first).unwrap();
    publish(&acme, "acme", &feed("acme", &[("1.0", 1, &first_packages)]));
    let before = wait_for(&center, "acme's role", |v| {
        version_of(v, "vendor-acme").is_some()
    });
    let at = |versions: &[(String, u64)], role: &str| version_of(versions, role).unwrap();

    // Acme adds a release: its role, the snapshot and the timestamp move, and Herd's role
    // (it lists the definitions delta from 1.0's content, in the same round); the delegations
    // (top-level targets) do not.
    let (second, second_packages) = build_package(work.path(), "1.1", 2);
    acme.upload_package(&second).unwrap();
    publish(
        &acme,
        "acme",
        &feed(
            "acme",
            &[("1.0", 1, &first_packages), ("1.1", 2, &second_packages)],
        ),
    );
    let after = wait_for(&center, "acme's new release", |v| {
        at(v, "vendor-acme") > at(&before, "vendor-acme")
    });
    assert_eq!(at(&after, "vendor-acme"), at(&before, "vendor-acme") + 1);
    assert_eq!(at(&after, "snapshot"), at(&before, "snapshot") + 1);
    assert_eq!(at(&after, "timestamp"), at(&before, "timestamp") + 1);
    assert_eq!(at(&after, "targets"), at(&before, "targets"), "{after:?}");
    assert_eq!(at(&after, "herd"), at(&before, "herd") + 1);

    // Another vendor: a new delegation (top-level targets moves), acme's role does not.
    let beta = vendor_client(&center, "beta");
    publish(&beta, "beta", &feed("beta", &[("1", 1, &json!([]))]));
    let third = wait_for(&center, "beta's role", |v| {
        version_of(v, "vendor-beta").is_some()
    });
    assert_eq!(at(&third, "targets"), at(&after, "targets") + 1);
    assert_eq!(at(&third, "vendor-acme"), at(&after, "vendor-acme"));

    // The same feed again changes nothing at all.
    publish(&beta, "beta", &feed("beta", &[("1", 1, &json!([]))]));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(versions(&center), third);
}

#[test]
fn signatures_are_renewed_before_they_expire() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herd.toml");
    std::fs::write(
        &config,
        "tuf_timestamp_lifetime_secs = 10\ntuf_snapshot_lifetime_secs = 60\n",
    )
    .unwrap();
    let center = TestCenter::start_with(&["--config", config.to_str().unwrap()]);
    let first = signed(&get(&center, "/tuf/metadata/timestamp.json"));
    let expires = |doc: &Value| Timestamp::parse(doc["expires"].as_str().unwrap()).unwrap();
    let started = versions(&center);
    // Re-signed once less than half of its 10 s remains: within about 5 s, never after expiry.
    let renewed = wait_for(&center, "a renewed timestamp", |v| {
        version_of(v, "timestamp") > version_of(&started, "timestamp")
    });
    let second = signed(&get(&center, "/tuf/metadata/timestamp.json"));
    assert!(expires(&second) > expires(&first));
    assert!(
        Timestamp::from_unix_seconds(herd_center::unix_now()) < expires(&first),
        "renewed before the first one expired"
    );
    assert_eq!(
        version_of(&renewed, "snapshot"),
        version_of(&started, "snapshot"),
        "the snapshot's 60 s are not half gone"
    );
}

#[test]
fn lifetimes_too_short_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herd.toml");
    std::fs::write(&config, "tuf_targets_lifetime_secs = 5\n").unwrap();
    let out = std::process::Command::new(support::HERD)
        .args(["serve", "--config", config.to_str().unwrap(), "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tuf_targets_lifetime_secs: 5"), "{stderr}");
}

#[test]
fn what_the_repository_does_not_hold_is_a_404_with_the_json_error() {
    let center = TestCenter::start();
    let work = tempfile::tempdir().unwrap();
    let acme = vendor_client(&center, "acme");
    let (package, packages) = build_package(work.path(), "1.0", 1);
    acme.upload_package(&package).unwrap();
    publish(&acme, "acme", &feed("acme", &[("1.0", 1, &packages)]));
    wait_for(&center, "acme's role", |v| {
        version_of(v, "vendor-acme").is_some()
    });
    let sha256 = hex::encode(Sha256::digest(std::fs::read(&package).unwrap()));
    let (_, url) = acme_paths("1.0", &sha256);
    let other = "0".repeat(64);
    for path in [
        "/tuf/metadata/0.root.json".to_owned(),
        "/tuf/metadata/2.root.json".to_owned(),
        "/tuf/metadata/99.snapshot.json".to_owned(),
        "/tuf/metadata/1.vendor-ghost.json".to_owned(),
        "/tuf/metadata/1.timestamp.json".to_owned(),
        "/tuf/metadata/01.targets.json".to_owned(),
        "/tuf/metadata/snapshot.json".to_owned(),
        "/tuf/metadata/1.targets".to_owned(),
        "/tuf/metadata/%2e%2e%2fca.pem".to_owned(),
        "/tuf/targets/packages/acme/acme-av/1.0/linux.archive".to_owned(),
        url.replace(&sha256, &other),
        url.replace("1.0", "2.0"),
        format!("/tuf/targets/{sha256}"),
        "/tuf/targets/".to_owned(),
    ] {
        let (status, _, body) = fetch(&center, &path);
        assert_eq!(status, 404, "{path}: {}", String::from_utf8_lossy(&body));
        let body: Value =
            serde_json::from_slice(&body).unwrap_or_else(|err| panic!("{path}: not JSON ({err})"));
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
    }
    // Still served by the right name.
    assert_eq!(fetch(&center, &url).0, 200);
}

/// python-tuf's `ngclient` against the real center over HTTPS (the center's own CA, given
/// to OpenSSL as `SSL_CERT_FILE`): refresh, then download and verify the package target.
#[test]
fn python_tuf_refreshes_from_the_center_and_verifies_a_package() {
    let Some(python) = python() else {
        eprintln!("skipped: set HERD_TEST_PYTHON to a Python with tuf==7.0.1");
        return;
    };
    let center = TestCenter::start();
    let work = tempfile::tempdir().unwrap();
    let acme = vendor_client(&center, "acme");
    let (package, packages) = build_package(work.path(), "1.0", 1);
    acme.upload_package(&package).unwrap();
    publish(&acme, "acme", &feed("acme", &[("1.0", 1, &packages)]));
    wait_for(&center, "acme's role", |v| {
        version_of(v, "vendor-acme").is_some()
    });
    let bytes = std::fs::read(&package).unwrap();
    let (path, _) = acme_paths("1.0", &hex::encode(Sha256::digest(&bytes)));
    let root = work.path().join("root.json");
    std::fs::write(&root, get(&center, "/tuf/metadata/root.json")).unwrap();
    let (metadata, targets) = (work.path().join("metadata"), work.path().join("targets"));
    std::fs::create_dir_all(&metadata).unwrap();
    std::fs::create_dir_all(&targets).unwrap();
    let out = std::process::Command::new(&python)
        .args(["-c", PYTHON_CLIENT])
        .arg(&metadata)
        .arg(format!("{}/tuf", center.url))
        .arg(&targets)
        .arg(&path)
        .arg(&root)
        .env("SSL_CERT_FILE", center.data_dir.join("ca.pem"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python-tuf failed: {stderr}");
    let downloaded = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert_eq!(std::fs::read(downloaded).unwrap(), bytes);
}

const PYTHON_CLIENT: &str = r#"
import sys
from tuf.ngclient import Updater
metadata_dir, base, target_dir, path, root_file = sys.argv[1:]
with open(root_file, "rb") as f:
    root = f.read()
updater = Updater(metadata_dir, base + "/metadata/", target_dir, base + "/targets/", bootstrap=root)
updater.refresh()
info = updater.get_targetinfo(path)
if info is None:
    print("not found: " + path, file=sys.stderr)
    sys.exit(3)
print(updater.download_target(info))
"#;

/// The Python to run python-tuf with: `HERD_TEST_PYTHON` (which must have it), else none.
fn python() -> Option<String> {
    let python = std::env::var("HERD_TEST_PYTHON").ok()?;
    let ok = std::process::Command::new(&python)
        .args(["-c", "import tuf.ngclient"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "HERD_TEST_PYTHON={python} cannot import tuf.ngclient");
    Some(python)
}

// --- the repository's keys: status, the next root, online keys ---------------------------

fn expires_in(days: i64) -> Timestamp {
    Timestamp::from_unix_seconds(herd_center::unix_now()).plus_seconds(days * 86_400)
}

fn refused(result: Result<impl std::fmt::Debug, herd_client::ClientError>) -> (u16, String) {
    match result {
        Err(herd_client::ClientError::Refused {
            status, message, ..
        }) => (status, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn public_of(key: &Value) -> herd_tuf::PublicKey {
    serde_json::from_value(key.clone()).unwrap()
}

#[test]
fn an_operator_moves_the_root_offline_and_rotates_an_online_key() {
    let center = TestCenter::start();
    let operator = center.operator();
    let status = operator.trust_status().unwrap();
    assert_eq!(status.root.version, 1);
    assert_eq!(status.online_keys.len(), 3);
    assert!(
        status
            .online_keys
            .iter()
            .all(|k| k.state.as_deref() == Some("active"))
    );
    let root_role = status.root.roles.iter().find(|r| r.role == "root").unwrap();
    assert_eq!(
        status.center_root_keyids, root_role.keyids,
        "auto-initialised: 1 of 1, held"
    );
    assert_eq!(
        status
            .delegations
            .iter()
            .map(|d| (d.role.as_str(), d.signed_by.as_str()))
            .collect::<Vec<_>>(),
        [("herd", "center")]
    );
    assert_eq!(refused(center.anonymous().trust_status()).0, 401);
    assert_eq!(
        refused(vendor_client(&center, "acme").trust_status()).0,
        403
    );

    // The root key the center holds sits in the data directory, readable by the center only.
    let keys_dir = center.data_dir.join("tuf-root-keys");
    let key_file = std::fs::read_dir(&keys_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "key"))
        .expect("a root key file");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::read(keys_dir.join("1.root.json")).unwrap(),
        get(&center, "/tuf/metadata/1.root.json")
    );

    // A pending snapshot key for the next root; an unknown role has none.
    let pending = operator.new_online_key("snapshot").unwrap();
    assert_eq!(pending.state.as_deref(), Some("pending"));
    assert_eq!(refused(operator.new_online_key("root")).0, 404);

    // Root version 2: two offline keys (2 of 2), the new snapshot key, the same timestamp and
    // targets keys. Signed by the new keys only: the center co-signs with the key it holds.
    let root1_bytes = get(&center, "/tuf/metadata/root.json");
    let root1: herd_tuf::Root = serde_json::from_value(signed(&root1_bytes)).unwrap();
    let offline = [
        herd_tuf::SigningKey::generate().unwrap(),
        herd_tuf::SigningKey::generate().unwrap(),
    ];
    let online_public = |role: &str| {
        let id = &root1.roles[role].keyids[0];
        root1.keys[id].clone()
    };
    let root2 = herd_tuf::repository::root_document(
        Some(&root1),
        &[offline[0].public(), offline[1].public()],
        2,
        [
            &online_public("timestamp"),
            &public_of(&pending.public),
            &online_public("targets"),
        ],
        expires_in(365),
    );
    let unsigned_by_center = herd_tuf::sign(&root2, &[&offline[0], &offline[1]]);
    let status = operator.install_root(&unsigned_by_center).unwrap();
    assert_eq!(status.root.version, 2);
    assert!(
        status.center_root_keyids.is_empty(),
        "the root is offline now"
    );
    let snapshot_keys: Vec<_> = status
        .online_keys
        .iter()
        .filter(|k| k.role == "snapshot")
        .collect();
    assert_eq!(snapshot_keys.len(), 1, "the old snapshot key is forgotten");
    assert_eq!(snapshot_keys[0].keyid, pending.keyid);
    assert_eq!(snapshot_keys[0].state.as_deref(), Some("active"));
    let root2_served = get(&center, "/tuf/metadata/2.root.json");
    assert_eq!(get(&center, "/tuf/metadata/root.json"), root2_served);
    assert_eq!(
        std::fs::read(keys_dir.join("2.root.json")).unwrap(),
        root2_served
    );

    // A terminal holding root 1 walks to root 2 and trusts the snapshot its new key signed.
    let now = Timestamp::from_unix_seconds(herd_center::unix_now());
    let mut set = TrustedSet::new(&root1_bytes, now).unwrap();
    set.update_root(&root2_served).unwrap();
    set.root_update_finished().unwrap();
    set.update_timestamp(&get(&center, "/tuf/metadata/timestamp.json"), None)
        .unwrap();
    let snapshot = set.snapshot_meta().unwrap().version;
    set.update_snapshot(
        &get(&center, &format!("/tuf/metadata/{snapshot}.snapshot.json")),
        None,
    )
    .unwrap();

    // Refusals, each naming why; nothing changes.
    let (status, message) = refused(operator.install_root(&unsigned_by_center));
    assert_eq!(status, 409, "{message}");
    assert!(message.contains("next root is version 3"), "{message}");
    let root2_typed: herd_tuf::Root = serde_json::from_value(signed(&root2_served)).unwrap();
    let next = |online: [&herd_tuf::PublicKey; 3], expires: Timestamp| {
        herd_tuf::repository::root_document(
            Some(&root2_typed),
            &[offline[0].public(), offline[1].public()],
            2,
            online,
            expires,
        )
    };
    let same_online = [
        &online_public("timestamp"),
        &public_of(&pending.public),
        &online_public("targets"),
    ];
    let under_threshold = herd_tuf::sign(&next(same_online, expires_in(365)), &[&offline[0]]);
    let (status, message) = refused(operator.install_root(&under_threshold));
    assert_eq!(status, 422, "{message}");
    assert!(message.contains("signature"), "{message}");
    let stranger = herd_tuf::SigningKey::generate().unwrap().public();
    let foreign_online = herd_tuf::sign(
        &next(
            [
                &stranger,
                &public_of(&pending.public),
                &online_public("targets"),
            ],
            expires_in(365),
        ),
        &[&offline[0], &offline[1]],
    );
    let (status, message) = refused(operator.install_root(&foreign_online));
    assert_eq!(status, 422, "{message}");
    assert!(
        message.contains("names no timestamp key the center holds"),
        "{message}"
    );
    let expired = herd_tuf::sign(
        &next(same_online, expires_in(-1)),
        &[&offline[0], &offline[1]],
    );
    let (status, message) = refused(operator.install_root(&expired));
    assert_eq!(status, 422, "{message}");
    assert!(message.contains("expired"), "{message}");
    let (status, _) = refused(operator.install_root(b"{\"signed\": 1}"));
    assert_eq!(status, 422);
    assert_eq!(operator.trust_status().unwrap().root.version, 2);
}

// --- vendors' own keys ----------------------------------------------------------------------

/// A vendor's role document listing `targets`, version `version`, signed by `key`.
fn vendor_role_doc(
    targets: &std::collections::BTreeMap<String, TargetFile>,
    version: u64,
    expires: Timestamp,
    key: &herd_tuf::SigningKey,
) -> Vec<u8> {
    herd_tuf::sign(
        &herd_tuf::Targets {
            type_: "targets".into(),
            spec_version: herd_tuf::metadata::SPEC_VERSION.into(),
            version,
            expires: herd_tuf::format_expiry(expires),
            targets: targets.clone(),
            delegations: None,
        },
        &[key],
    )
}

fn signing_key_request(key: &herd_tuf::SigningKey) -> herd_proto::api::VendorSigningKey {
    herd_proto::api::VendorSigningKey {
        public: serde_json::to_value(key.public()).unwrap(),
    }
}

#[test]
fn a_vendor_signs_its_own_role_and_the_center_serves_only_that() {
    let center = TestCenter::start();
    let work = tempfile::tempdir().unwrap();
    let acme = vendor_client(&center, "acme");
    let (package, packages) = build_package(work.path(), "1.0", 1);
    acme.upload_package(&package).unwrap();
    publish(&acme, "acme", &feed("acme", &[("1.0", 1, &packages)]));
    let before = wait_for(&center, "acme's role", |v| {
        version_of(v, "vendor-acme").is_some()
    });
    let online_version = version_of(&before, "vendor-acme").unwrap();
    let listed: herd_tuf::Targets = serde_json::from_value(signed(&get(
        &center,
        &format!("/tuf/metadata/{online_version}.vendor-acme.json"),
    )))
    .unwrap();
    let targets = listed.targets;

    // Registering: only acme (or an operator) for acme, and only an ed25519 key.
    let key = herd_tuf::SigningKey::generate().unwrap();
    let beta = vendor_client(&center, "beta");
    assert_eq!(
        refused(beta.register_signing_key("acme", &signing_key_request(&key))).0,
        403
    );
    let (status, message) = refused(acme.register_signing_key(
        "acme",
        &herd_proto::api::VendorSigningKey {
            public: json!({"keytype": "rsa", "scheme": "rsa", "keyval": {"public": "00"}}),
        },
    ));
    assert_eq!(status, 422, "{message}");
    assert!(message.contains("ed25519"), "{message}");
    let registered = acme
        .register_signing_key("acme", &signing_key_request(&key))
        .unwrap();
    assert_eq!(registered.keyid, key.key_id());

    // From now on the role is delegated to acme's key, and what the center signed for it is
    // no longer in the snapshot: until acme uploads, its packages are simply not listed.
    let status = center.operator().trust_status().unwrap();
    let delegation = status
        .delegations
        .iter()
        .find(|d| d.role == "vendor-acme")
        .unwrap();
    assert_eq!(
        (delegation.signed_by.as_str(), delegation.keyids.clone()),
        ("vendor", vec![key.key_id()])
    );
    let unlisted = wait_for(&center, "the online-signed role withdrawn", |v| {
        version_of(v, "vendor-acme").is_none()
    });
    assert!(version_of(&unlisted, "targets").unwrap() > version_of(&before, "targets").unwrap());
    let package_sha256 = hex::encode(Sha256::digest(std::fs::read(&package).unwrap()));
    assert_eq!(
        fetch(&center, &acme_paths("1.0", &package_sha256).1).0,
        404,
        "not listed by any signed role, not served"
    );

    // Refusals, each with its reason, before anything is served.
    let good = |version| vendor_role_doc(&targets, version, expires_in(30), &key);
    let next = online_version + 1;
    let other_key = herd_tuf::SigningKey::generate().unwrap();
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "signed by another key",
            vendor_role_doc(&targets, next, expires_in(30), &other_key),
            422,
            "not signed by",
        ),
        ("a rollback", good(online_version), 409, "not above"),
        (
            "expired",
            vendor_role_doc(&targets, next, expires_in(-1), &key),
            422,
            "expired",
        ),
        {
            let mut extra = targets.clone();
            let (_, file) = targets.iter().next().unwrap();
            extra.insert(
                package_target("acme", "acme-av", "9.9", "linux", "archive"),
                file.clone(),
            );
            (
                "a package not in the feed",
                vendor_role_doc(&extra, next, expires_in(30), &key),
                422,
                "not a package of vendor \"acme\"'s current feed",
            )
        },
        {
            let mut outside = targets.clone();
            let (_, file) = targets.iter().next().unwrap();
            outside.insert(
                package_target("beta", "beta-av", "1", "linux", "archive"),
                file.clone(),
            );
            (
                "outside its paths",
                vendor_role_doc(&outside, next, expires_in(30), &key),
                422,
                "outside its paths",
            )
        },
        {
            let mut longer = targets.clone();
            longer.values_mut().for_each(|f| f.length += 1);
            (
                "another length",
                vendor_role_doc(&longer, next, expires_in(30), &key),
                422,
                "but the feed's package has length",
            )
        },
    ];
    for (what, document, status, words) in cases {
        let (got, message) = refused(acme.put_role("vendor-acme", &document));
        assert_eq!(got, status, "{what}: {message}");
        assert!(message.contains(words), "{what}: {message}");
    }
    assert_eq!(refused(beta.put_role("vendor-acme", &good(next))).0, 403);
    assert_eq!(refused(acme.put_role("herd", &good(next))).0, 404);
    let (status, message) = refused(beta.put_role("vendor-beta", &good(1)));
    assert_eq!(status, 409, "no key registered: {message}");
    assert_eq!(versions(&center), unlisted, "nothing changed");

    // The genuine document is served byte for byte and verifies from the root.
    let document = good(next);
    let accepted = acme.put_role("vendor-acme", &document).unwrap();
    assert_eq!(accepted.version, next);
    let served = wait_for(&center, "acme's own role", |v| {
        version_of(v, "vendor-acme") == Some(next)
    });
    assert_eq!(
        accepted.snapshot_version,
        version_of(&served, "snapshot").unwrap()
    );
    assert_eq!(
        get(&center, &format!("/tuf/metadata/{next}.vendor-acme.json")),
        document
    );
    let bytes = std::fs::read(&package).unwrap();
    let (path, url) = acme_paths("1.0", &hex::encode(Sha256::digest(&bytes)));
    let root = get(&center, "/tuf/metadata/root.json");
    let file = refresh_and_find(|p| get(&center, p), &root, &path);
    verify_target(&path, &file, &get(&center, &url)).unwrap();

    // A republish and an expiry refresh never put a center-signed acme role back.
    let (second, second_packages) = build_package(work.path(), "1.1", 2);
    acme.upload_package(&second).unwrap();
    publish(
        &acme,
        "acme",
        &feed(
            "acme",
            &[("1.0", 1, &packages), ("1.1", 2, &second_packages)],
        ),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(version_of(&versions(&center), "vendor-acme"), Some(next));
    let metrics = String::from_utf8(get(&center, "/metrics")).unwrap();
    assert!(
        metrics.contains("herd_tuf_signatures_total{role=\"vendor-acme\"} 1\n"),
        "the center signed acme's role once, before the key: {metrics}"
    );
}

#[test]
fn a_center_requiring_vendor_signatures_never_signs_a_vendor_role() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herd.toml");
    std::fs::write(&config, "require_vendor_signatures = true\n").unwrap();
    let center = TestCenter::start_with(&["--config", config.to_str().unwrap()]);
    let work = tempfile::tempdir().unwrap();
    let acme = vendor_client(&center, "acme");
    let (package, packages) = build_package(work.path(), "1.0", 1);
    acme.upload_package(&package).unwrap();
    let document = serde_json::to_vec(&feed("acme", &[("1.0", 1, &packages)])).unwrap();
    let (status, message) = refused(acme.publish_feed("acme", &document));
    assert_eq!(status, 403, "{message}");
    assert!(message.contains("require_vendor_signatures"), "{message}");

    let key = herd_tuf::SigningKey::generate().unwrap();
    acme.register_signing_key("acme", &signing_key_request(&key))
        .unwrap();
    acme.publish_feed("acme", &document).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let status = center.operator().trust_status().unwrap();
    let delegation = status
        .delegations
        .iter()
        .find(|d| d.role == "vendor-acme")
        .unwrap();
    assert_eq!(delegation.signed_by, "vendor");
    assert_eq!(version_of(&versions(&center), "vendor-acme"), None);
    let metrics = String::from_utf8(get(&center, "/metrics")).unwrap();
    assert!(!metrics.contains("role=\"vendor-acme\"} "), "{metrics}");
    // What no signed role lists is not served either.
    let sha256 = hex::encode(Sha256::digest(std::fs::read(&package).unwrap()));
    assert_eq!(fetch(&center, &acme_paths("1.0", &sha256).1).0, 404);
}

// --- what terminals refuse ------------------------------------------------------------------

#[test]
fn trust_refusals_terminals_report_are_counted_by_kind_once() {
    let center = TestCenter::start();
    let token = enrolment_token(&center, 1);
    let identity = support::enrol(&center, &token, "t1", "alice", "linux");
    let terminal = center.terminal_client(&identity);
    let event = |seq: u64, data: Value| herd_proto::api::EventDoc {
        seq,
        at: "2026-01-01T00:00:00Z".into(),
        kind: herd_proto::api::events::TRUST_REFUSED.into(),
        data,
    };
    let batch = herd_proto::api::EventBatch {
        events: vec![
            event(
                1,
                json!({"kind": "rollback", "detail": "timestamp 3 after 4"}),
            ),
            event(2, json!({"kind": "from-the-future", "detail": "?"})),
            event(3, json!("not a refusal")),
        ],
    };
    terminal.send_events(&batch).unwrap();
    // Sent again (an acknowledgement lost): stored once, counted once.
    terminal.send_events(&batch).unwrap();
    let metrics = String::from_utf8(get(&center, "/metrics")).unwrap();
    assert!(
        metrics.contains("herd_trust_refusals_total{kind=\"rollback\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("herd_trust_refusals_total{kind=\"invalid\"} 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("herd_trust_refusals_total{kind=\"expired\"} 0\n"),
        "{metrics}"
    );
}

/// A check-in naming the timestamp version it holds gets the served `timestamp.json` byte for
/// byte when it holds another, nothing when it holds that one, and nothing when it names none
/// (older agents, whose answers stay as they were).
#[test]
fn a_checkin_carries_the_signed_timestamp_only_to_a_terminal_that_holds_another() {
    let center = TestCenter::start();
    let token = enrolment_token(&center, 1);
    let identity = support::enrol(&center, &token, "t1", "alice", "linux");
    let terminal = center.terminal_client(&identity);
    let served = get(&center, "/tuf/metadata/timestamp.json");
    let version = signed(&served)["version"].as_u64().expect("a version");
    let check_in = |held: Option<u64>| {
        terminal
            .checkin(&herd_proto::api::CheckinRequest {
                tuf_timestamp_version: held,
                ..Default::default()
            })
            .unwrap()
    };
    let behind = check_in(Some(version - 1));
    assert_eq!(
        behind.tuf_timestamp.as_deref().map(str::as_bytes),
        Some(&served[..])
    );
    // What it carries verifies as the fetched document does.
    let root = get(&center, "/tuf/metadata/root.json");
    let mut set =
        TrustedSet::new(&root, Timestamp::from_unix_seconds(herd_center::unix_now())).unwrap();
    set.update_timestamp(behind.tuf_timestamp.unwrap().as_bytes(), None)
        .unwrap();
    assert_eq!(check_in(Some(version)).tuf_timestamp, None);
    assert_eq!(check_in(None).tuf_timestamp, None);
}

/// A check-in naming the metadata versions it holds (`tuf_held`) gets the documents served in
/// other versions, byte for byte under the names `/tuf/metadata/` serves them by; nothing for
/// what is current or unknown; and a `tuf_held` naming too many roles is refused.
#[test]
fn a_checkin_carries_the_newer_metadata_the_terminal_names() {
    let center = TestCenter::start();
    let token = enrolment_token(&center, 1);
    let identity = support::enrol(&center, &token, "t1", "alice", "linux");
    let terminal = center.terminal_client(&identity);
    let timestamp = get(&center, "/tuf/metadata/timestamp.json");
    let snapshot_version = signed(&timestamp)["meta"]["snapshot.json"]["version"]
        .as_u64()
        .expect("the timestamp names the snapshot");
    let snapshot_name = format!("{snapshot_version}.snapshot.json");
    let snapshot = get(&center, &format!("/tuf/metadata/{snapshot_name}"));
    let targets_version = signed(&snapshot)["meta"]["targets.json"]["version"]
        .as_u64()
        .expect("the snapshot names targets");
    let targets_name = format!("{targets_version}.targets.json");
    let targets = get(&center, &format!("/tuf/metadata/{targets_name}"));
    let check_in = |held: Option<BTreeMap<String, u64>>| {
        terminal.checkin(&herd_proto::api::CheckinRequest {
            tuf_held: held,
            ..Default::default()
        })
    };
    let held = |snapshot: u64, targets: u64| {
        BTreeMap::from([
            ("snapshot".to_owned(), snapshot),
            ("targets".to_owned(), targets),
            ("no-such-role".to_owned(), 1),
            ("timestamp".to_owned(), 0),
        ])
    };
    let behind = check_in(Some(held(snapshot_version - 1, targets_version + 7)))
        .unwrap()
        .tuf_metadata
        .expect("the newer documents");
    assert_eq!(
        behind.keys().collect::<Vec<_>>(),
        [&snapshot_name, &targets_name]
    );
    assert_eq!(behind[&snapshot_name].as_bytes(), &snapshot[..]);
    assert_eq!(behind[&targets_name].as_bytes(), &targets[..]);
    // What it carries verifies as the fetched documents do.
    let root = get(&center, "/tuf/metadata/root.json");
    let mut set =
        TrustedSet::new(&root, Timestamp::from_unix_seconds(herd_center::unix_now())).unwrap();
    set.update_timestamp(&timestamp, None).unwrap();
    set.update_snapshot(behind[&snapshot_name].as_bytes(), None)
        .unwrap();
    set.update_targets(behind[&targets_name].as_bytes())
        .unwrap();
    // Only what differs; nothing when everything is current or nothing is named.
    let one = check_in(Some(held(snapshot_version, targets_version - 1)))
        .unwrap()
        .tuf_metadata
        .expect("the newer targets");
    assert_eq!(one.keys().collect::<Vec<_>>(), [&targets_name]);
    let current = check_in(Some(held(snapshot_version, targets_version))).unwrap();
    assert_eq!(current.tuf_metadata, None);
    assert_eq!(check_in(None).unwrap().tuf_metadata, None);
    // At most 64 roles.
    let many = (0..65).map(|i| (format!("role-{i}"), 1)).collect();
    let err = check_in(Some(many)).unwrap_err();
    assert!(
        err.to_string().contains("$.tuf_held names 65 roles"),
        "{err}"
    );
}

#[test]
fn herd_trust_status_prints_the_repository() {
    let center = TestCenter::start();
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(support::HERD)
            .args(["trust", "status", "--server", &center.url, "--ca"])
            .arg(center.data_dir.join("ca.pem"))
            .args(["--token", &center.operator_token()])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let table = run(&[]);
    assert!(table.contains("root version 1"), "{table}");
    assert!(table.contains("the center holds 1 online"), "{table}");
    for role in ["timestamp", "snapshot", "targets", "herd"] {
        assert!(
            table.lines().any(|l| l.starts_with(role)),
            "{role}: {table}"
        );
    }
    let json: herd_proto::api::TrustStatus = serde_json::from_str(&run(&["--json"])).unwrap();
    assert_eq!(json.root.version, 1);
}

// --- several center processes ----------------------------------------------------------------

/// Two center processes started together on one database initialise one repository, and
/// serve the same signed documents: what one signs, the other serves within seconds.
#[test]
fn two_centers_on_one_database_serve_one_repository() {
    let Some(url) = support::postgres_schema("herd_tuf") else {
        eprintln!("skipped: HERD_TEST_POSTGRES_URL is not set");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("shared-blobs").display().to_string();
    let start = |name: &str| {
        let data = dir.path().join(name);
        let (url, blobs) = (url.clone(), blobs.clone());
        std::thread::spawn(move || {
            TestCenter::try_spawn(
                &data,
                &["--database", &url, "--blob-dir", &blobs],
                &[("HERD_CA_KEK", "the fleet's key-encryption key")],
            )
            .unwrap()
        })
    };
    let (one, two) = (start("one"), start("two"));
    let (one, two) = (one.join().unwrap(), two.join().unwrap());
    let root = get(&one, "/tuf/metadata/root.json");
    assert_eq!(
        root,
        get(&two, "/tuf/metadata/root.json"),
        "one root for both"
    );
    let holders = [&one, &two]
        .iter()
        .filter(|c| {
            c.data_dir
                .join("tuf-root-keys")
                .read_dir()
                .is_ok_and(|mut d| d.next().is_some())
        })
        .count();
    assert_eq!(
        holders, 1,
        "only the process that initialised keeps a root key"
    );

    let work = tempfile::tempdir().unwrap();
    // The operator token is written by the process that bootstrapped it; it works on both.
    let bootstrapped = [&one, &two]
        .into_iter()
        .find(|c| c.data_dir.join("operator.token").exists())
        .unwrap();
    let acme = one
        .anonymous()
        .with_token(&support::vendor_token(bootstrapped, "acme"));
    let (package, packages) = build_package(work.path(), "1.0", 1);
    acme.upload_package(&package).unwrap();
    publish(&acme, "acme", &feed("acme", &[("1.0", 1, &packages)]));
    wait_for(&two, "acme's role through the other process", |v| {
        version_of(v, "vendor-acme").is_some()
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&one, "/tuf/metadata/timestamp.json") != get(&two, "/tuf/metadata/timestamp.json") {
        assert!(
            Instant::now() < deadline,
            "the two processes serve different timestamps"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(versions(&one), versions(&two));
    let bytes = std::fs::read(&package).unwrap();
    let (path, url) = acme_paths("1.0", &hex::encode(Sha256::digest(&bytes)));
    let file = refresh_and_find(|p| get(&two, p), &root, &path);
    verify_target(&path, &file, &get(&two, &url)).unwrap();
}
