//! Definition deltas through a real `herd serve` (SPEC §3.4, issue 11): publishing a release
//! after earlier ones lists, in the signed `herd` role, a delta from each of the previous
//! releases' content (up to three) to the new one's; the center serves it content-addressed,
//! and `herd_delta::apply` on the base content gives exactly the content the release's own
//! target signs. A release that changes only the definitions, only the engine (another file
//! of the package: a hook script), or both gets a delta much smaller than the full package.

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use herd_client::Client;
use herd_proto::distribution::{
    DeltaCustom, PackageCustom, delta_target, package_target, read_custom,
};
use herd_tuf::{TargetFile, verify_target};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{TestCenter, find, get, tuf_fetch as fetch, vendor_client};

/// Signature lines of a definitions file: deterministic, incompressible-looking hex, so the
/// full package is large and only a delta is small.
fn signatures(from: usize, count: usize, salt: &str) -> String {
    (from..from + count)
        .map(|i| {
            let hex = hex::encode(Sha256::digest(format!("{salt}-{i}")));
            format!("Acme.Sig{i}:0:*:{}\n", &hex[..48])
        })
        .collect()
}

/// What a release changes.
struct Release<'a> {
    version: &'a str,
    seq: u64,
    /// Signatures 0..n of the base set, then `extra` new ones.
    extra: usize,
    /// The post-install hook's text (the "engine" part of the package).
    hook: &'a str,
}

/// A real archive package of `acme-av` built in `dir`: (path, feed packages).
fn build_package(dir: &Path, release: &Release<'_>) -> (PathBuf, Value) {
    let sources = dir.join(format!("src-{}", release.version));
    std::fs::create_dir_all(&sources).unwrap();
    let test_pattern = "ACME-TEST-PATTERN";
    let definitions = sources.join("acme.ndb");
    let mut text = format!("Acme.TestPattern:0:*:{}\n", hex::encode(test_pattern));
    text.push_str(&signatures(0, 6000, "base"));
    text.push_str(&signatures(6000, release.extra, "new"));
    std::fs::write(&definitions, text).unwrap();
    let pattern_file = sources.join("test-pattern.txt");
    std::fs::write(&pattern_file, format!("{test_pattern}\n")).unwrap();
    let hook = sources.join("post-install.sh");
    std::fs::write(&hook, release.hook).unwrap();
    let out = dir.join(format!("acme-av-{}.tar.gz", release.version));
    let built = herd_package::build(
        &herd_package::PackageSpec {
            product: "acme-av".into(),
            vendor: "acme".into(),
            version: release.version.into(),
            seq: release.seq,
            pattern: format!("acme-{}", release.seq),
            definitions: vec![definitions],
            test_pattern: pattern_file,
            post_install: Some(hook),
            pre_uninstall: None,
            platforms: vec!["linux".into()],
        },
        &out,
    )
    .unwrap();
    (out, serde_json::to_value(&built.catalog_packages).unwrap())
}

fn feed(releases: &[(&Release<'_>, &Value)]) -> Value {
    json!({
        "format": "herd.catalog/v1",
        "vendors": [{"id": "acme", "name": "acme"}],
        "products": [{"id": "acme-av", "vendor": "acme", "name": "AV", "platforms": ["linux"]}],
        "releases": releases.iter().map(|(release, packages)| json!({
            "product": "acme-av", "version": release.version,
            "pattern": format!("acme-{}", release.seq), "seq": release.seq,
            "published": format!("2000-01-{:02}T00:00:00Z", release.seq), "packages": packages,
        })).collect::<Vec<_>>(),
        "threats": [],
        "coverage": [],
    })
}

fn publish(client: &Client, feed: &Value) {
    client
        .publish_feed("acme", &serde_json::to_vec(feed).unwrap())
        .expect("publish");
}

/// Waits (at most 30 s) until the signed metadata lists `path`.
fn wait_listed(center: &TestCenter, path: &str) -> TargetFile {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(file) = find(center, path) {
            return file;
        }
        assert!(Instant::now() < deadline, "{path} is never listed");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Where the center serves target `path` with SHA-256 `sha256`.
fn target_url(path: &str, sha256: &str) -> String {
    format!(
        "/tuf/targets/{}",
        herd_proto::distribution::consistent_target_name(path, sha256)
    )
}

fn content(package: &[u8]) -> Vec<u8> {
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(package)
        .read_to_end(&mut tar)
        .unwrap();
    tar
}

/// The delta the center lists from `base`'s content to `result`'s, checked against the signed
/// metadata and applied: its size.
fn check_delta(center: &TestCenter, base: &Path, result: &Path, version: &str) -> u64 {
    let (base, result) = (std::fs::read(base).unwrap(), std::fs::read(result).unwrap());
    let (base_content, result_content) = (content(&base), content(&result));
    let package = package_target("acme", "acme-av", version, "linux", "archive");
    let signed = wait_listed(center, &package);
    let custom: PackageCustom = read_custom(&package, signed.custom.as_ref()).unwrap();
    let signed_content = custom.content.expect("signed content");
    let base_sha = hex::encode(Sha256::digest(&base_content));
    let path = delta_target(&package, &base_sha).unwrap();
    let file = wait_listed(center, &path);
    let delta_custom: DeltaCustom = read_custom(&path, file.custom.as_ref()).unwrap();
    assert_eq!(
        delta_custom,
        DeltaCustom {
            result: package.clone(),
            base_sha256: base_sha
        }
    );
    let delta = get(center, &target_url(&path, &file.hashes["sha256"]));
    verify_target(&path, &file, &delta).unwrap();
    let rebuilt = herd_delta::apply(&base_content, &delta, signed_content.length).unwrap();
    assert_eq!(
        rebuilt, result_content,
        "the delta rebuilds {version}'s content"
    );
    assert_eq!(hex::encode(Sha256::digest(&rebuilt)), signed_content.sha256);
    assert!(
        (delta.len() as u64) * 2 < result.len() as u64,
        "a delta of {} bytes for a package of {}",
        delta.len(),
        result.len()
    );
    eprintln!(
        "delta to {version}: {} bytes, full package {} bytes, content {} bytes",
        delta.len(),
        result.len(),
        result_content.len()
    );
    delta.len() as u64
}

#[test]
fn a_release_after_others_lists_deltas_from_their_content_that_rebuild_its_own() {
    let center = TestCenter::start();
    let work = tempfile::tempdir().unwrap();
    let acme = vendor_client(&center, "acme");
    let hook = "#!/bin/sh\necho engine 1\n";
    let releases = [
        Release {
            version: "1.0",
            seq: 1,
            extra: 0,
            hook,
        },
        // Only the definitions change.
        Release {
            version: "1.1",
            seq: 2,
            extra: 40,
            hook,
        },
        // Only the engine (the hook script) changes.
        Release {
            version: "1.2",
            seq: 3,
            extra: 40,
            hook: "#!/bin/sh\necho engine 2\n",
        },
        // Both.
        Release {
            version: "1.3",
            seq: 4,
            extra: 80,
            hook: "#!/bin/sh\necho engine 3\n",
        },
        Release {
            version: "1.4",
            seq: 5,
            extra: 90,
            hook: "#!/bin/sh\necho engine 3\n",
        },
    ];
    let built: Vec<(PathBuf, Value)> = releases
        .iter()
        .map(|release| build_package(work.path(), release))
        .collect();
    for (path, _) in &built {
        acme.upload_package(path).unwrap();
    }

    // Release 1 alone: nothing to delta from.
    publish(&acme, &feed(&[(&releases[0], &built[0].1)]));
    let first = package_target("acme", "acme-av", "1.0", "linux", "archive");
    wait_listed(&center, &first);

    let mut published = vec![(&releases[0], &built[0].1)];
    for (index, release) in releases.iter().enumerate().skip(1) {
        published.push((release, &built[index].1));
        publish(&acme, &feed(&published));
        let previous = &built[index - 1].0;
        check_delta(&center, previous, &built[index].0, release.version);
    }
    // Up to three releases back: 1.4 from 1.1, never from 1.0.
    check_delta(&center, &built[1].0, &built[4].0, "1.4");
    let package = package_target("acme", "acme-av", "1.4", "linux", "archive");
    let oldest = hex::encode(Sha256::digest(content(
        &std::fs::read(&built[0].0).unwrap(),
    )));
    assert!(find(&center, &delta_target(&package, &oldest).unwrap()).is_none());
}

#[test]
fn a_delta_is_not_served_under_another_path_or_hash() {
    let center = TestCenter::start();
    let (status, _) = fetch(
        &center,
        &target_url(
            &delta_target(
                &package_target("acme", "acme-av", "1.1", "linux", "archive"),
                &"ab".repeat(32),
            )
            .unwrap(),
            &"cd".repeat(32),
        ),
    );
    assert_eq!(status, 404);
}
