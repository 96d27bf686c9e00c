//! The center as a TUF repository, through a real `herd serve`: a vendor's uploaded archive
//! package is listed in signed metadata that verifies from the served root with Herd's own
//! client (`herd_tuf::TrustedSet`) and with python-tuf's `ngclient`, a republish signs only
//! what changed, signatures are renewed before they expire, and what is not in the
//! repository is a 404 with the API's JSON error.

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use herd_client::Client;
use herd_core::Timestamp;
use herd_proto::distribution::{PackageCustom, package_target, read_custom};
use herd_tuf::{TargetFile, TargetSearch, TrustedSet, verify_target};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{TestCenter, enrolment_token, vendor_client};

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

/// A real archive package of `acme-av` `version` built in `dir`: (path, feed packages).
fn build_package(dir: &Path, version: &str, seq: u64) -> (PathBuf, Value) {
    let sources = dir.join(format!("src-{version}"));
    std::fs::create_dir_all(&sources).unwrap();
    let test_pattern = format!("ACME-TEST-PATTERN-{version}");
    let definitions = sources.join("acme.ndb");
    std::fs::write(
        &definitions,
        format!("Acme.TestPattern:0:*:{}\n", hex::encode(&test_pattern)),
    )
    .unwrap();
    let pattern_file = sources.join("test-pattern.txt");
    std::fs::write(&pattern_file, format!("{test_pattern}\n")).unwrap();
    let out = dir.join(format!("acme-av-{version}.tar.gz"));
    let built = herd_package::build(
        &herd_package::PackageSpec {
            product: "acme-av".into(),
            vendor: "acme".into(),
            version: version.into(),
            seq,
            pattern: format!("acme-{seq}"),
            definitions: vec![definitions],
            test_pattern: pattern_file,
            post_install: None,
            pre_uninstall: None,
            platforms: vec!["linux".into()],
        },
        &out,
    )
    .unwrap();
    (out, serde_json::to_value(&built.catalog_packages).unwrap())
}

/// Acme's feed with one release per `(version, seq, packages)`.
fn feed(vendor: &str, releases: &[(&str, u64, &Value)]) -> Value {
    json!({
        "format": "herd.catalog/v1",
        "vendors": [{"id": vendor, "name": vendor}],
        "products": [{"id": format!("{vendor}-av"), "vendor": vendor, "name": "AV",
                      "platforms": ["linux"]}],
        "releases": releases.iter().map(|(version, seq, packages)| json!({
            "product": format!("{vendor}-av"), "version": version, "pattern": format!("{vendor}-{seq}"),
            "seq": seq, "published": format!("2000-01-{seq:02}T00:00:00Z"), "packages": packages,
        })).collect::<Vec<_>>(),
        "threats": [],
        "coverage": [],
    })
}

fn publish(client: &Client, vendor: &str, feed: &Value) {
    client
        .publish_feed(vendor, &serde_json::to_vec(feed).unwrap())
        .expect("publish");
}

/// A full refresh as an agent does it, from `root`, up to the role that lists `path`; returns
/// what the metadata says of it.
fn refresh_and_find(center: &TestCenter, root: &[u8], path: &str) -> TargetFile {
    let now = Timestamp::from_unix_seconds(herd_center::unix_now());
    let mut set = TrustedSet::new(root, now).unwrap();
    set.root_update_finished().unwrap();
    set.update_timestamp(&get(center, "/tuf/metadata/timestamp.json"), None)
        .unwrap();
    let snapshot = set.snapshot_meta().unwrap().version;
    set.update_snapshot(
        &get(center, &format!("/tuf/metadata/{snapshot}.snapshot.json")),
        None,
    )
    .unwrap();
    let targets = set.targets_meta("targets").unwrap().version;
    set.update_targets(&get(
        center,
        &format!("/tuf/metadata/{targets}.targets.json"),
    ))
    .unwrap();
    loop {
        match set.find_target(path) {
            TargetSearch::Found { file, .. } => return file,
            TargetSearch::NeedRole { role, delegator } => {
                let version = set.targets_meta(&role).unwrap().version;
                let bytes = get(center, &format!("/tuf/metadata/{version}.{role}.json"));
                set.update_delegated(&role, &delegator, &bytes).unwrap();
            }
            other => panic!("{path}: {other:?}"),
        }
    }
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
    let (dirs, basename) = path.rsplit_once('/').unwrap();
    (
        path.clone(),
        format!("/tuf/targets/{dirs}/{sha256}.{basename}"),
    )
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
    let file = refresh_and_find(&center, &root, &path);
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

    // Acme adds a release: its role, the snapshot and the timestamp move; the delegations
    // (top-level targets) and Herd's role do not.
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
    assert_eq!(at(&after, "herd"), at(&before, "herd"));

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
