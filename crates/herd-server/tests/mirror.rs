//! The site's mirror of the center's signed repository (issue 12, "Mirroring") against a real
//! `herd serve`: the mirror (`herd_center::site::mirror`) served on loopback over plain HTTP
//! by its own router, read the way a terminal reads it (herd-tuf's client) and with curl.
//! A terminal's refresh through the mirror verifies; twenty concurrent requests for one
//! package cost one upstream fetch, and a second round none; a new release is prefetched at
//! the sync that sees it; eviction under a small limit removes what is no longer listed first,
//! then the least recently used; a damaged cached blob is refused by the terminal, noticed by
//! the mirror (size) or repaired at open (SHA-256); what the signed metadata does not list is
//! a 404 without any upstream request; metadata that does not verify is refused and the
//! previous set stays served; a restart keeps the cache and the metadata.

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use herd_center::site::mirror::{Mirror, MirrorError, MirrorStats};
use herd_client::{Client, ReadLimits, Repository};
use herd_core::Timestamp;
use herd_proto::distribution::{consistent_target_name, package_target};
use herd_tuf::{TargetFile, TargetSearch, TrustedSet, verify_target};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{TestCenter, vendor_client};

/// Signature lines: deterministic and incompressible-looking, so a package has some weight.
fn signatures(count: usize, salt: &str) -> String {
    (0..count)
        .map(|i| {
            let hex = hex::encode(Sha256::digest(format!("{salt}-{i}")));
            format!("Acme.Sig{i}:0:*:{}\n", &hex[..48])
        })
        .collect()
}

/// A real archive package of `product` `version` built in `dir` with `weight` signatures:
/// (path, feed packages).
fn build_package(dir: &Path, product: &str, version: &str, weight: usize) -> (PathBuf, Value) {
    let sources = dir.join(format!("src-{product}-{version}"));
    std::fs::create_dir_all(&sources).unwrap();
    let test_pattern = format!("ACME-TEST-PATTERN-{product}-{version}");
    let definitions = sources.join("acme.ndb");
    let mut text = format!("Acme.TestPattern:0:*:{}\n", hex::encode(&test_pattern));
    // Versions of one product share their first signatures, as real releases do.
    text.push_str(&signatures(weight, product));
    std::fs::write(&definitions, text).unwrap();
    let pattern_file = sources.join("test-pattern.txt");
    std::fs::write(&pattern_file, format!("{test_pattern}\n")).unwrap();
    let out = dir.join(format!("{product}-{version}.tar.gz"));
    let built = herd_package::build(
        &herd_package::PackageSpec {
            product: product.into(),
            vendor: "acme".into(),
            version: version.into(),
            seq: 1,
            pattern: format!("{product}-{version}"),
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

/// A built package: where its file is, what the feed says of it, its target path and digest.
struct Package {
    product: String,
    version: String,
    seq: u64,
    file: PathBuf,
    packages: Value,
    target: String,
    sha256: String,
    bytes: Vec<u8>,
}

impl Package {
    fn build(dir: &Path, product: &str, version: &str, seq: u64, weight: usize) -> Package {
        let (file, packages) = build_package(dir, product, version, weight);
        let bytes = std::fs::read(&file).unwrap();
        Package {
            product: product.into(),
            version: version.into(),
            seq,
            target: package_target("acme", product, version, "linux", "archive"),
            sha256: hex::encode(Sha256::digest(&bytes)),
            file,
            packages,
            bytes,
        }
    }

    /// Where a terminal downloads it by TUF's consistent name.
    fn url(&self) -> String {
        format!(
            "/tuf/targets/{}",
            consistent_target_name(&self.target, &self.sha256)
        )
    }
}

/// Acme's feed with these packages' releases (one product each, or releases of one product).
fn feed(packages: &[&Package]) -> Value {
    let mut products: Vec<&str> = packages.iter().map(|p| p.product.as_str()).collect();
    products.dedup();
    json!({
        "format": "herd.catalog/v1",
        "vendors": [{"id": "acme", "name": "acme"}],
        "products": products.iter().map(|id| json!({
            "id": id, "vendor": "acme", "name": id, "platforms": ["linux"],
        })).collect::<Vec<_>>(),
        "releases": packages.iter().map(|p| json!({
            "product": p.product, "version": p.version, "pattern": format!("{}-{}", p.product, p.version),
            "seq": p.seq, "published": format!("2000-01-{:02}T00:00:00Z", p.seq), "packages": p.packages,
        })).collect::<Vec<_>>(),
        "threats": [],
        "coverage": [],
    })
}

fn publish(acme: &Client, packages: &[&Package]) {
    for package in packages {
        acme.upload_package(&package.file).unwrap();
    }
    acme.publish_feed("acme", &serde_json::to_vec(&feed(packages)).unwrap())
        .expect("publish");
}

/// A mirror served on loopback by its router, in its own runtime.
struct Site {
    runtime: tokio::runtime::Runtime,
    mirror: Arc<Mirror>,
    url: String,
}

impl Site {
    fn open(center: &TestCenter, dir: &Path, limit: u64) -> Site {
        let upstream = center.anonymous().repository();
        Site::open_with(upstream, &trusted_root(center), dir, limit)
    }

    fn open_with(upstream: Repository, root: &[u8], dir: &Path, limit: u64) -> Site {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mirror = Mirror::open(dir, limit, upstream, root).expect("the mirror opens");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = herd_center::api::site_mirror::router(mirror.clone());
        runtime.spawn(async move { axum::serve(listener, app).await });
        Site {
            runtime,
            mirror,
            url,
        }
    }

    fn sync(&self) -> Result<herd_center::site::mirror::SyncOutcome, MirrorError> {
        self.runtime.block_on(self.mirror.sync_metadata())
    }

    /// Syncs until `done` holds (the center signs after a publish, in its own time).
    fn sync_until(&self, what: &str, done: impl Fn(&Mirror) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.sync().expect("sync");
            if done(&self.mirror) {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: never after a sync");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn prefetched(&self) {
        self.runtime.block_on(self.mirror.prefetch_finished());
    }

    fn stats(&self) -> MirrorStats {
        self.mirror.stats()
    }

    fn repository(&self) -> Repository {
        Repository::mirror(&self.url).unwrap()
    }

    /// `GET path` from the mirror: (status, headers, body).
    fn curl(&self, path: &str) -> (u16, String, Vec<u8>) {
        self.curl_with(path, &[])
    }

    /// [`Site::curl`] with more arguments (headers).
    fn curl_with(&self, path: &str, args: &[&str]) -> (u16, String, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let (body, headers) = (dir.path().join("body"), dir.path().join("headers"));
        let out = std::process::Command::new("curl")
            .args(args)
            .args(["-s", "-g", "--path-as-is", "-w", "%{http_code}", "-D"])
            .arg(&headers)
            .arg("-o")
            .arg(&body)
            .arg(format!("{}{path}", self.url))
            .output()
            .expect("curl runs");
        let status = String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0);
        (
            status,
            std::fs::read_to_string(&headers)
                .unwrap_or_default()
                .to_ascii_lowercase(),
            std::fs::read(&body).unwrap_or_default(),
        )
    }

    fn get(&self, path: &str) -> Vec<u8> {
        let (status, _, body) = self.curl(path);
        assert_eq!(
            status,
            200,
            "GET {path}: {}",
            String::from_utf8_lossy(&body)
        );
        body
    }
}

fn trusted_root(center: &TestCenter) -> Vec<u8> {
    center
        .anonymous()
        .repository()
        .get("/tuf/metadata/1.root.json", ReadLimits::metadata(1 << 20))
        .unwrap()
}

/// A terminal's full refresh through the mirror from `root` (the root chain walked to its
/// end), up to the role that lists `path`: what the signed metadata says of it.
fn refresh_and_find(site: &Site, root: &[u8], path: &str) -> Option<TargetFile> {
    let repository = site.repository();
    let get = |name: &str| {
        repository
            .get(
                &format!("/tuf/metadata/{name}"),
                ReadLimits::metadata(2_000_000),
            )
            .unwrap_or_else(|err| panic!("{name}: {err}"))
    };
    let now = Timestamp::from_unix_seconds(herd_center::unix_now());
    let mut set = TrustedSet::new(root, now).unwrap();
    loop {
        let next = set.root_version() + 1;
        match repository.get(
            &format!("/tuf/metadata/{next}.root.json"),
            ReadLimits::metadata(1 << 20),
        ) {
            Ok(bytes) => set.update_root(&bytes).unwrap(),
            Err(herd_client::RepositoryError::NotFound { .. }) => break,
            Err(err) => panic!("{err}"),
        }
    }
    set.root_update_finished().unwrap();
    set.update_timestamp(&get("timestamp.json"), None).unwrap();
    let snapshot = set.snapshot_meta().unwrap().version;
    set.update_snapshot(&get(&format!("{snapshot}.snapshot.json")), None)
        .unwrap();
    let targets = set.targets_meta("targets").unwrap().version;
    set.update_targets(&get(&format!("{targets}.targets.json")))
        .unwrap();
    loop {
        match set.find_target(path) {
            TargetSearch::Found { file, .. } => return Some(file),
            TargetSearch::NeedRole { role, delegator } => {
                let version = set.targets_meta(&role).unwrap().version;
                let bytes = get(&format!("{version}.{role}.json"));
                set.update_delegated(&role, &delegator, &bytes).unwrap();
            }
            TargetSearch::NotFound => return None,
        }
    }
}

#[test]
fn a_terminal_refresh_through_the_mirror_verifies_and_the_headers_are_the_centers() {
    let center = TestCenter::start();
    let work = tempfile::tempdir().unwrap();
    let acme = vendor_client(&center, "acme");
    let package = Package::build(work.path(), "acme-av", "1.0", 1, 10);
    publish(&acme, &[&package]);
    let site = Site::open(&center, &work.path().join("site"), 1 << 30);
    // Nothing mirrored yet: nothing served.
    assert_eq!(site.curl("/tuf/metadata/timestamp.json").0, 404);
    site.sync_until("the package is listed", |m| m.is_listed(&package.sha256));

    // An idle sync: the timestamp and the probe of the next root (a 404), nothing else.
    let before = site.stats();
    let outcome = site.sync().unwrap();
    let after = site.stats();
    if !outcome.changed {
        assert_eq!(
            after.metadata_requests - before.metadata_requests,
            2,
            "{after:?}"
        );
        eprintln!(
            "an idle sync: 2 requests (one a 404), {} bytes of timestamp",
            after.metadata_bytes - before.metadata_bytes
        );
    }

    let root = trusted_root(&center);
    let file = refresh_and_find(&site, &root, &package.target).expect("listed");
    assert_eq!(file.hashes["sha256"], package.sha256);
    let bytes = site.get(&package.url());
    verify_target(&package.target, &file, &bytes).unwrap();
    assert_eq!(bytes, package.bytes);

    // The center's cache headers: root.json and timestamp.json change in place.
    for name in ["root.json", "timestamp.json"] {
        let (status, headers, _) = site.curl(&format!("/tuf/metadata/{name}"));
        assert_eq!(status, 200);
        assert!(headers.contains("cache-control: no-cache"), "{headers}");
        assert!(headers.contains("content-type: application/json"));
    }
    let (status, headers, _) = site.curl("/tuf/metadata/1.root.json");
    assert_eq!(status, 200);
    assert!(headers.contains("immutable"), "{headers}");
    // What the mirror serves is byte for byte what the center serves.
    let center_repository = center.anonymous().repository();
    let timestamp = site.get("/tuf/metadata/timestamp.json");
    let at_center = center_repository
        .get(
            "/tuf/metadata/timestamp.json",
            ReadLimits::metadata(1 << 20),
        )
        .unwrap();
    if timestamp == at_center {
        assert_eq!(site.get("/tuf/metadata/root.json"), {
            center_repository
                .get("/tuf/metadata/root.json", ReadLimits::metadata(1 << 20))
                .unwrap()
        });
    }
    // Ranges, ETag and If-None-Match as on the center.
    let (status, headers, body) = site.curl_with(&package.url(), &["-H", "Range: bytes=10-19"]);
    assert_eq!(status, 206);
    assert!(headers.contains(&format!(
        "content-range: bytes 10-19/{}",
        package.bytes.len()
    )));
    assert!(headers.contains(&format!("etag: \"{}\"", package.sha256)));
    assert_eq!(body, package.bytes[10..20]);
    assert_eq!(site.stats().upstream_requests, 1);
}

#[test]
fn concurrent_requests_for_one_package_cost_one_upstream_fetch_and_survive_a_restart() {
    let center = TestCenter::start();
    let work = tempfile::tempdir().unwrap();
    let acme = vendor_client(&center, "acme");
    // Some weight, so that the fetch takes long enough for the requests to meet it.
    let package = Package::build(work.path(), "acme-av", "1.0", 1, 20_000);
    publish(&acme, &[&package]);
    let dir = work.path().join("site");
    let site = Site::open(&center, &dir, 1 << 30);
    site.sync_until("the package is listed", |m| m.is_listed(&package.sha256));
    assert_eq!(
        site.stats().upstream_requests,
        0,
        "a fresh site prefetches nothing"
    );

    let round = |site: &Site| {
        let barrier = Arc::new(Barrier::new(20));
        let threads: Vec<_> = (0..20)
            .map(|i| {
                let barrier = barrier.clone();
                let repository = site.repository();
                // Half by consistent name, half as an agent's center fetcher asks.
                let path = match i % 2 {
                    0 => package.url(),
                    _ => format!("/v1/packages/{}", package.sha256),
                };
                std::thread::spawn(move || {
                    barrier.wait();
                    repository
                        .get(&path, ReadLimits::target(10 << 20))
                        .unwrap_or_else(|err| panic!("{path}: {err}"))
                })
            })
            .collect();
        for thread in threads {
            assert!(thread.join().unwrap() == package.bytes, "the right bytes");
        }
    };
    round(&site);
    let first = site.stats();
    eprintln!(
        "first round: {} upstream request(s), {} bytes, {} hits, {} misses (package {} bytes)",
        first.upstream_requests,
        first.upstream_bytes,
        first.hits,
        first.misses,
        package.bytes.len()
    );
    assert_eq!(first.upstream_requests, 1, "{first:?}");
    assert_eq!(first.upstream_bytes, package.bytes.len() as u64);
    assert_eq!(first.hits + first.misses, 20);
    assert!(
        first.misses >= 2,
        "at least two requests met one fetch: {first:?}"
    );
    assert_eq!(first.cache_bytes, package.bytes.len() as u64);

    round(&site);
    let second = site.stats();
    assert_eq!(second.upstream_requests, 1, "{second:?}");
    assert_eq!(second.hits, first.hits + 20);
    let metrics = second.render();
    assert!(metrics.contains(&format!(
        "herd_site_upstream_bytes_total {}\n",
        package.bytes.len()
    )));
    assert!(metrics.contains("herd_site_upstream_requests_total 1\n"));

    // A restart keeps the cache and the metadata; a partial download left by a crash goes.
    let timestamp = site.get("/tuf/metadata/timestamp.json");
    drop(site);
    let partial = dir
        .join("blobs")
        .join(format!(".{}.4194000.7.herd-tmp", "ab".repeat(32)));
    std::fs::write(&partial, b"half a package").unwrap();
    let site = Site::open(&center, &dir, 1 << 30);
    assert!(!partial.exists(), "partial downloads are removed at open");
    assert_eq!(site.get("/tuf/metadata/timestamp.json"), timestamp);
    assert!(site.mirror.is_cached(&package.sha256));
    assert_eq!(site.get(&package.url()), package.bytes);
    let stats = site.stats();
    assert_eq!((stats.upstream_requests, stats.hits), (0, 1), "{stats:?}");
    assert_eq!(stats.cache_bytes, package.bytes.len() as u64);
}

#[test]
fn a_new_release_and_its_delta_are_prefetched_at_the_sync_that_sees_them() {
    let center = TestCenter::start();
    let work = tempfile::tempdir().unwrap();
    let acme = vendor_client(&center, "acme");
    let first = Package::build(work.path(), "acme-av", "1.0", 1, 3000);
    publish(&acme, &[&first]);
    let site = Site::open(&center, &work.path().join("site"), 1 << 30);
    site.sync_until("the first release is listed", |m| {
        m.is_listed(&first.sha256)
    });
    assert_eq!(site.stats().upstream_requests, 0);

    let second = Package::build(work.path(), "acme-av", "1.1", 2, 3010);
    publish(&acme, &[&first, &second]);
    site.sync_until("the second release and its delta are listed", |m| {
        m.is_listed(&second.sha256) && m.listed_targets().iter().any(|t| t.contains("/deltas/"))
    });
    site.prefetched();
    assert!(
        site.mirror.is_cached(&second.sha256),
        "the new release is prefetched"
    );
    assert!(!site.mirror.is_cached(&first.sha256), "the old one is not");
    let delta = site
        .mirror
        .listed_targets()
        .into_iter()
        .find(|t| t.contains("/deltas/"))
        .unwrap();
    let root = trusted_root(&center);
    let delta_file = refresh_and_find(&site, &root, &delta).expect("the delta is signed");
    assert!(
        site.mirror.is_cached(&delta_file.hashes["sha256"]),
        "its delta too"
    );
    let stats = site.stats();
    assert_eq!(stats.upstream_requests, 2, "{stats:?}");

    // A terminal then gets both from the cache.
    let bytes = site.get(&second.url());
    assert_eq!(bytes, second.bytes);
    let delta_bytes = site.get(&format!(
        "/tuf/targets/{}",
        consistent_target_name(&delta, &delta_file.hashes["sha256"])
    ));
    verify_target(&delta, &delta_file, &delta_bytes).unwrap();
    let stats = site.stats();
    assert_eq!((stats.upstream_requests, stats.hits), (2, 2), "{stats:?}");
}

#[test]
fn eviction_removes_what_is_no_longer_listed_first_then_the_least_recently_used() {
    let center = TestCenter::start();
    let work = tempfile::tempdir().unwrap();
    let acme = vendor_client(&center, "acme");
    // One product each, so no release has a delta from another.
    let [a, b, c, d] = ["acme-a", "acme-b", "acme-c", "acme-d"]
        .map(|product| Package::build(work.path(), product, "1.0", 1, 200));
    let sizes: Vec<u64> = [&a, &b, &c, &d]
        .iter()
        .map(|p| p.bytes.len() as u64)
        .collect();
    let limit = 2 * sizes.iter().max().unwrap();
    assert!(
        3 * sizes.iter().min().unwrap() > limit,
        "two fit, three do not"
    );
    publish(&acme, &[&a, &b, &c]);
    let site = Site::open(&center, &work.path().join("site"), limit);
    site.sync_until("a, b, c are listed", |m| {
        [&a, &b, &c].iter().all(|p| m.is_listed(&p.sha256))
    });
    let cached = |site: &Site| -> Vec<&str> {
        [&a, &b, &c, &d]
            .iter()
            .filter(|p| site.mirror.is_cached(&p.sha256))
            .map(|p| p.product.as_str())
            .collect()
    };
    assert_eq!(site.get(&a.url()), a.bytes);
    assert_eq!(site.get(&b.url()), b.bytes);
    assert_eq!(cached(&site), ["acme-a", "acme-b"]);

    // b is no longer listed: it goes before a, though a was used longer ago.
    publish(&acme, &[&a, &c]);
    site.sync_until("b is no longer listed", |m| !m.is_listed(&b.sha256));
    assert_eq!(site.get(&c.url()), c.bytes);
    assert_eq!(cached(&site), ["acme-a", "acme-c"]);
    assert_eq!(site.stats().evictions, 1);
    // Unlisted now, so not served (and not fetched) any more.
    assert_eq!(site.curl(&b.url()).0, 404);

    // Then the least recently used: a was just used, c was not; d comes prefetched.
    assert_eq!(site.get(&a.url()), a.bytes);
    publish(&acme, &[&a, &c, &d]);
    site.sync_until("d is listed", |m| m.is_listed(&d.sha256));
    site.prefetched();
    assert_eq!(cached(&site), ["acme-a", "acme-d"]);
    let stats = site.stats();
    assert_eq!(stats.evictions, 2, "{stats:?}");
    assert!(stats.cache_bytes <= limit, "{stats:?}");
    assert_eq!(stats.upstream_requests, 4, "{stats:?}");
}

#[test]
fn a_damaged_cached_blob_is_refused_by_the_terminal_and_repaired_by_the_mirror() {
    let center = TestCenter::start();
    let work = tempfile::tempdir().unwrap();
    let acme = vendor_client(&center, "acme");
    let package = Package::build(work.path(), "acme-av", "1.0", 1, 100);
    publish(&acme, &[&package]);
    let dir = work.path().join("site");
    let site = Site::open(&center, &dir, 1 << 30);
    site.sync_until("listed", |m| m.is_listed(&package.sha256));
    assert_eq!(site.get(&package.url()), package.bytes);
    let cached = dir.join("blobs").join(&package.sha256);
    let root = trusted_root(&center);
    let file = refresh_and_find(&site, &root, &package.target).unwrap();

    // The same size, other bytes: served as they are, refused by the terminal's check.
    let mut tampered = package.bytes.clone();
    tampered[40] ^= 0xff;
    std::fs::write(&cached, &tampered).unwrap();
    let served = site.get(&package.url());
    assert_eq!(served, tampered);
    let refusal = verify_target(&package.target, &file, &served).unwrap_err();
    assert!(refusal.to_string().contains(&package.target), "{refusal}");

    // Another size: the mirror notices on serving, drops it and fetches it again.
    std::fs::write(&cached, b"not a package").unwrap();
    assert_eq!(site.get(&package.url()), package.bytes);
    let stats = site.stats();
    assert_eq!(
        (stats.damaged, stats.upstream_requests),
        (1, 2),
        "{stats:?}"
    );

    // The same size again, then a restart: the mirror hashes its cache at open.
    std::fs::write(&cached, &tampered).unwrap();
    drop(site);
    let site = Site::open(&center, &dir, 1 << 30);
    assert!(!site.mirror.is_cached(&package.sha256));
    assert_eq!(site.stats().damaged, 1);
    assert_eq!(site.get(&package.url()), package.bytes);
    assert_eq!(site.stats().upstream_requests, 1);
}

#[test]
fn what_the_signed_metadata_does_not_list_is_refused_without_an_upstream_request() {
    let center = TestCenter::start();
    let work = tempfile::tempdir().unwrap();
    let acme = vendor_client(&center, "acme");
    let package = Package::build(work.path(), "acme-av", "1.0", 1, 10);
    // Uploaded to the center but listed by no feed: the center has the blob, the site must
    // still not fetch it.
    let unlisted = Package::build(work.path(), "acme-av", "9.9", 9, 11);
    acme.upload_package(&unlisted.file).unwrap();
    publish(&acme, &[&package]);
    let site = Site::open(&center, &work.path().join("site"), 1 << 30);
    site.sync_until("listed", |m| m.is_listed(&package.sha256));

    let other = "ab".repeat(32);
    for (path, status, says) in [
        (unlisted.url(), 404, "not_found"),
        (
            format!("/v1/packages/{}", unlisted.sha256),
            404,
            "not_found",
        ),
        (format!("/v1/packages/{other}"), 404, "not_found"),
        // The listed path under another digest.
        (
            format!(
                "/tuf/targets/{}",
                consistent_target_name(&package.target, &other)
            ),
            404,
            "not_found",
        ),
        ("/tuf/targets/nonsense".into(), 404, "not_found"),
        ("/tuf/targets/packages/acme/x".into(), 404, "not_found"),
        ("/v1/packages/not-a-digest".into(), 400, "bad_request"),
        (
            format!("/v1/packages/{}", package.sha256.to_uppercase()),
            400,
            "bad_request",
        ),
        ("/tuf/metadata/99.snapshot.json".into(), 404, "not_found"),
        ("/tuf/metadata/1.timestamp.json".into(), 404, "not_found"),
        (
            "/tuf/metadata/..%2F..%2Fetc%2Fpasswd".into(),
            404,
            "not_found",
        ),
        ("/tuf/metadata/verified-at".into(), 404, "not_found"),
    ] {
        let (got, _, body) = site.curl(&path);
        assert_eq!(got, status, "{path}: {}", String::from_utf8_lossy(&body));
        let body: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| panic!("{path}: {}", String::from_utf8_lossy(&body)));
        assert_eq!(body["error"]["code"], says, "{path}: {body}");
        assert!(
            !body["error"]["message"].as_str().unwrap().is_empty(),
            "{path}: {body}"
        );
    }
    let (_, _, body) = site.curl(&unlisted.url());
    let message = String::from_utf8_lossy(&body).to_string();
    assert!(message.contains("signed metadata"), "{message}");
    assert_eq!(site.stats().upstream_requests, 0);

    // A target larger than the whole cache is refused, clearly, and not fetched.
    let small = Site::open(&center, &work.path().join("small-site"), 100);
    small.sync_until("listed", |m| m.is_listed(&package.sha256));
    let (status, _, body) = small.curl(&package.url());
    let message = String::from_utf8_lossy(&body).to_string();
    assert_eq!(status, 503, "{message}");
    assert!(
        message.contains("larger than this site's whole cache"),
        "{message}"
    );
    assert_eq!(small.stats().upstream_requests, 0);
}

#[test]
fn metadata_that_does_not_verify_is_refused_and_the_previous_set_stays_served() {
    let center = TestCenter::start();
    let work = tempfile::tempdir().unwrap();
    let acme = vendor_client(&center, "acme");
    let package = Package::build(work.path(), "acme-av", "1.0", 1, 10);
    publish(&acme, &[&package]);
    // The site reads the center through a proxy that can turn malicious.
    let proxy = herd_lab::mirror::Mirror::start().unwrap();
    proxy.proxy(center.anonymous().repository());
    let upstream = Repository::mirror(&proxy.url()).unwrap();
    let site = Site::open_with(
        upstream,
        &trusted_root(&center),
        &work.path().join("site"),
        1 << 30,
    );
    site.sync_until("listed", |m| m.is_listed(&package.sha256));
    let served = site.get("/tuf/metadata/timestamp.json");

    // A timestamp with a newer version that its key did not sign.
    let mut forged: Value = serde_json::from_slice(&served).unwrap();
    let version = forged["signed"]["version"].as_u64().unwrap();
    forged["signed"]["version"] = json!(version + 100);
    proxy.set(
        "/tuf/metadata/timestamp.json",
        herd_lab::mirror::Behaviour::Replace(serde_json::to_vec(&forged).unwrap()),
    );
    let err = site.sync().unwrap_err();
    assert!(matches!(err, MirrorError::Untrusted(_)), "{err}");
    assert!(err.to_string().contains("timestamp"), "{err}");
    assert_eq!(site.get("/tuf/metadata/timestamp.json"), served);
    assert_eq!(site.stats().metadata_refusals, 1);
    assert!(
        site.stats()
            .render()
            .contains("herd_site_metadata_refusals_total 1\n")
    );
    assert_eq!(site.get(&package.url()), package.bytes);

    // The center away: the sync fails, the site keeps serving.
    proxy.set(
        "/tuf/metadata/timestamp.json",
        herd_lab::mirror::Behaviour::Fail,
    );
    assert!(matches!(site.sync(), Err(MirrorError::Upstream(_))));
    assert_eq!(site.get("/tuf/metadata/timestamp.json"), served);
    assert_eq!(site.stats().metadata_refusals, 1);

    proxy.honest_all();
    site.sync().unwrap();
}

#[test]
fn the_root_chain_is_mirrored_both_ways_for_terminals_that_trust_an_older_root() {
    let center = TestCenter::start();
    let work = tempfile::tempdir().unwrap();
    let acme = vendor_client(&center, "acme");
    let package = Package::build(work.path(), "acme-av", "1.0", 1, 10);
    publish(&acme, &[&package]);
    let root1 = trusted_root(&center);
    let site = Site::open(&center, &work.path().join("site"), 1 << 30);
    site.sync_until("listed", |m| m.is_listed(&package.sha256));
    assert_eq!(site.curl("/tuf/metadata/2.root.json").0, 404);

    // The operator moves the root offline: root 2, two new root keys, the same online keys.
    let root1_typed: herd_tuf::Root =
        serde_json::from_value(serde_json::from_slice::<Value>(&root1).unwrap()["signed"].clone())
            .unwrap();
    let offline = [
        herd_tuf::SigningKey::generate().unwrap(),
        herd_tuf::SigningKey::generate().unwrap(),
    ];
    let online = |role: &str| root1_typed.keys[&root1_typed.roles[role].keyids[0]].clone();
    let root2 = herd_tuf::repository::root_document(
        Some(&root1_typed),
        &[offline[0].public(), offline[1].public()],
        2,
        [
            &online("timestamp"),
            &online("snapshot"),
            &online("targets"),
        ],
        Timestamp::from_unix_seconds(herd_center::unix_now() + 365 * 86_400),
    );
    let root2 = herd_tuf::sign(&root2, &[&offline[0], &offline[1]]);
    let installed = center.operator().install_root(&root2).unwrap();
    assert_eq!(installed.root.version, 2);

    // The site walks forwards to root 2 at the sync that sees the new timestamp.
    site.sync_until("root 2 is mirrored", |m| {
        m.stats().timestamp_version > 0
            && Repository::mirror(&site.url)
                .unwrap()
                .get("/tuf/metadata/2.root.json", ReadLimits::metadata(1 << 20))
                .is_ok()
    });
    let served_root2 = site.get("/tuf/metadata/2.root.json");
    assert_eq!(site.get("/tuf/metadata/root.json"), served_root2);
    let file = refresh_and_find(&site, &root1, &package.target).expect("from root 1");
    verify_target(&package.target, &file, &site.get(&package.url())).unwrap();

    // A site given root 2 (enrolled later) verifies root 1 backwards and serves it, so a
    // terminal still trusting root 1 walks the chain through it.
    let later = Site::open_with(
        center.anonymous().repository(),
        &served_root2,
        &work.path().join("later-site"),
        1 << 30,
    );
    later.sync_until("listed", |m| m.is_listed(&package.sha256));
    assert_eq!(later.get("/tuf/metadata/1.root.json"), root1);
    let file = refresh_and_find(&later, &root1, &package.target).expect("from root 1");
    assert_eq!(file.hashes["sha256"], package.sha256);
}

#[test]
fn a_requester_that_goes_away_does_not_cancel_the_fetch_for_the_others() {
    let center = TestCenter::start();
    let work = tempfile::tempdir().unwrap();
    let acme = vendor_client(&center, "acme");
    let package = Package::build(work.path(), "acme-av", "1.0", 1, 20_000);
    publish(&acme, &[&package]);
    let site = Site::open(&center, &work.path().join("site"), 1 << 30);
    site.sync_until("listed", |m| m.is_listed(&package.sha256));

    let request = |mirror: &Arc<Mirror>| {
        let (mirror, sha256) = (mirror.clone(), package.sha256.clone());
        site.runtime.spawn(async move {
            let blob = mirror.package(&sha256).await?;
            Ok::<u64, MirrorError>(blob.size)
        })
    };
    let leaving = request(&site.mirror);
    // Once the fetch has started, the first requester goes away and another one comes.
    let deadline = Instant::now() + Duration::from_secs(10);
    while site.stats().upstream_requests == 0 {
        assert!(Instant::now() < deadline, "the fetch never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    let staying = request(&site.mirror);
    leaving.abort();
    let size = site.runtime.block_on(staying).unwrap().unwrap();
    assert_eq!(size, package.bytes.len() as u64);
    assert!(site.runtime.block_on(leaving).unwrap_err().is_cancelled());
    assert!(site.mirror.is_cached(&package.sha256));
    assert_eq!(site.get(&package.url()), package.bytes);
    let stats = site.stats();
    assert_eq!(stats.upstream_requests, 1, "{stats:?}");
}
