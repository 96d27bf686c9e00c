//! Blobs in an S3-compatible object store (`blob_store = "s3"`), through real `herd serve`
//! processes and a real S3 server: s3s-fs over a temporary directory, served on loopback with
//! hyper in this test process, checking every request's SigV4 signature. Uploads, whole and
//! ranged downloads, signed targets, collection; two centers on one PostgreSQL and one bucket
//! serving each other's uploads; and the settings or endpoints a center refuses to start with.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use herd_client::Client;
use herd_proto::distribution::{consistent_target_name, package_target};
use herd_tuf::verify_target;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{HERD, TestCenter, refresh_and_find};

const ACCESS_KEY: &str = "herd-test-access";
const SECRET_KEY: &str = "herd-test-secret-key-of-forty-characters";
const BUCKET: &str = "herd-blobs";
const PREFIX: &str = "packages/";

thread_local! {
    /// The operator token `fetch` sends to `/v1/` (each test runs on its own thread).
    static TOKEN: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

fn use_operator_token(token: String) {
    TOKEN.with(|t| *t.borrow_mut() = token);
}

/// An S3 server on 127.0.0.1 storing under a temporary directory (bucket = directory, object
/// = file), stopped with its runtime when dropped.
struct S3Server {
    endpoint: String,
    root: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

impl S3Server {
    fn start() -> S3Server {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let service = {
            let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
            let mut builder = s3s::service::S3ServiceBuilder::new(fs);
            builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
            builder.build()
        };
        runtime.spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let service = service.clone();
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        S3Server {
            endpoint,
            root,
            _runtime: runtime,
        }
    }

    /// Where s3s-fs keeps blob `sha256`'s object.
    fn object_path(&self, sha256: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(PREFIX).join(sha256)
    }
}

/// A configuration file for a center keeping its blobs in `s3`'s bucket (the secret in a
/// private file beside it), with `extra` lines.
fn s3_config(dir: &Path, endpoint: &str, extra: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let secret = dir.join("s3.secret");
    std::fs::write(&secret, format!("{SECRET_KEY}\n")).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.join("herd.toml");
    std::fs::write(
        &config,
        format!(
            "blob_store = \"s3\"\ns3_endpoint = \"{endpoint}\"\ns3_bucket = \"{BUCKET}\"\n\
             s3_prefix = \"{PREFIX}\"\ns3_access_key_id = \"{ACCESS_KEY}\"\n\
             s3_secret_access_key_file = \"{}\"\n{extra}",
            secret.display()
        ),
    )
    .unwrap();
    config
}

/// `GET path` with curl and `extra` arguments, trusting the center's CA, with the operator's
/// token `TOKEN` holds for `/v1/` (packages are not public there): (status, body).
fn fetch(center: &TestCenter, path: &str, extra: &[&str]) -> (u16, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    let mut curl = Command::new("curl");
    if path.starts_with("/v1/") {
        let token = TOKEN.with(|t| t.borrow().clone());
        curl.arg("-H").arg(format!("Authorization: Bearer {token}"));
    }
    let out = curl
        .args(["-s", "-g", "-w", "%{http_code}", "--cacert"])
        .arg(center.data_dir.join("ca.pem"))
        .args(extra)
        .arg("-o")
        .arg(&body)
        .arg(format!("{}{path}", center.url))
        .output()
        .expect("curl runs");
    let status = String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0);
    (status, std::fs::read(&body).unwrap_or_default())
}

fn get(center: &TestCenter, path: &str) -> Vec<u8> {
    let (status, body) = fetch(center, path, &[]);
    assert_eq!(
        status,
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&body)
    );
    body
}

/// A real archive package of `acme-av` `version` built in `dir`: (its bytes, feed packages).
fn build_package(dir: &Path, version: &str, seq: u64) -> (Vec<u8>, PathBuf, Value) {
    let sources = dir.join(format!("src-{version}"));
    std::fs::create_dir_all(&sources).unwrap();
    let test_pattern = format!("ACME-TEST-PATTERN-{version}");
    let definitions = sources.join("acme.ndb");
    std::fs::write(
        &definitions,
        format!("Acme.TestPattern:0:*:{}\n", hex::encode(&test_pattern)),
    )
    .unwrap();
    // Enough signatures that ranges and chunks mean something.
    let mut body = String::new();
    for i in 0..20_000 {
        body.push_str(&format!(
            "Acme.Filler.{version}.{i}:0:*:{:016x}\n",
            i * 7919
        ));
    }
    std::fs::write(sources.join("filler.ndb"), body).unwrap();
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
            definitions: vec![definitions, sources.join("filler.ndb")],
            test_pattern: pattern_file,
            post_install: None,
            pre_uninstall: None,
            platforms: vec!["linux".into()],
        },
        &out,
    )
    .unwrap();
    let bytes = std::fs::read(&out).unwrap();
    (
        bytes,
        out,
        serde_json::to_value(&built.catalog_packages).unwrap(),
    )
}

fn feed(releases: &[(&str, u64, &Value)]) -> Value {
    json!({
        "format": "herd.catalog/v1",
        "vendors": [{"id": "acme", "name": "Acme"}],
        "products": [{"id": "acme-av", "vendor": "acme", "name": "AV", "platforms": ["linux"]}],
        "releases": releases.iter().map(|(version, seq, packages)| json!({
            "product": "acme-av", "version": version, "pattern": format!("acme-{seq}"),
            "seq": seq, "published": format!("2000-01-{seq:02}T00:00:00Z"), "packages": packages,
        })).collect::<Vec<_>>(),
        "threats": [],
        "coverage": [],
    })
}

fn publish(client: &Client, feed: &Value) -> Value {
    let answer = client
        .publish_feed("acme", &serde_json::to_vec(feed).unwrap())
        .expect("publish");
    serde_json::to_value(answer).unwrap()
}

/// Fetches acme-av `version`'s package from `center` as a terminal would: the signed target
/// verified from `root`, then the bytes under their consistent name checked against it.
fn fetch_signed_package(center: &TestCenter, root: &[u8], version: &str, bytes: &[u8]) {
    let sha256 = hex::encode(Sha256::digest(bytes));
    let path = package_target("acme", "acme-av", version, "linux", "archive");
    let url = format!("/tuf/targets/{}", consistent_target_name(&path, &sha256));
    // The signed metadata follows the publish within a sign round.
    let deadline = Instant::now() + Duration::from_secs(20);
    let target = loop {
        let found = std::panic::catch_unwind(|| refresh_and_find(|p| get(center, p), root, &path));
        match found {
            Ok(target) => break target,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    };
    let served = get(center, &url);
    verify_target(&path, &target, &served).unwrap();
    assert!(served == bytes);
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_center_keeps_uploads_in_the_bucket_serves_ranges_and_signed_targets_and_collects() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let config = s3_config(
        &dir.path().join("etc"),
        &s3.endpoint,
        "blob_grace_secs = 600\n",
    );
    let data = dir.path().join("data");
    let center = TestCenter::spawn(&data, &["--config", config.to_str().unwrap()]);
    let acme = support::vendor_client(&center, "acme");
    use_operator_token(center.operator_token());
    let root = get(&center, "/tuf/metadata/1.root.json");

    let (bytes, package, packages) = build_package(dir.path(), "1.0", 1);
    let sha256 = hex::encode(Sha256::digest(&bytes));
    assert!(bytes.len() > 100_000, "{} bytes", bytes.len());
    acme.upload_package(&package).unwrap();
    // In the bucket under prefix + digest, byte for byte; nothing under the spool directory.
    assert!(std::fs::read(s3.object_path(&sha256)).unwrap() == bytes);
    let spooled = files_under(&data.join("blobs"));
    assert!(spooled.is_empty(), "left in the spool: {spooled:?}");
    let answer = publish(&acme, &feed(&[("1.0", 1, &packages)]));
    assert_eq!(answer["missing_packages"], json!([]), "{answer}");

    // Whole, ranged, resumed, unsatisfiable, conditional.
    let url = format!("/v1/packages/{sha256}");
    let (status, body) = fetch(&center, &url, &[]);
    assert_eq!(status, 200);
    assert!(body == bytes);
    let (status, body) = fetch(&center, &url, &["-r", "1000-1999"]);
    assert_eq!(status, 206);
    assert!(body == bytes[1000..2000]);
    let (status, body) = fetch(&center, &url, &["-H", "Range: bytes=-100"]);
    assert_eq!(status, 206);
    assert!(body == bytes[bytes.len() - 100..]);
    let resume_at = bytes.len() / 2;
    let if_range = format!("If-Range: \"{sha256}\"");
    let (status, body) = fetch(
        &center,
        &url,
        &["-H", &format!("Range: bytes={resume_at}-"), "-H", &if_range],
    );
    assert_eq!(status, 206);
    assert!(body == bytes[resume_at..]);
    let (status, _) = fetch(&center, &url, &["-r", &format!("{}-", bytes.len())]);
    assert_eq!(status, 416);
    let if_none = format!("If-None-Match: \"{sha256}\"");
    assert_eq!(fetch(&center, &url, &["-H", &if_none]).0, 304);
    let (status, _) = fetch(&center, &format!("/v1/packages/{}", "0".repeat(64)), &[]);
    assert_eq!(status, 404);

    // The signed target, and the definitions delta between two releases (a blob the center
    // makes and stores in the bucket itself).
    fetch_signed_package(&center, &root, "1.0", &bytes);
    let (bytes2, package2, packages2) = build_package(dir.path(), "1.1", 2);
    acme.upload_package(&package2).unwrap();
    publish(
        &acme,
        &feed(&[("1.0", 1, &packages), ("1.1", 2, &packages2)]),
    );
    fetch_signed_package(&center, &root, "1.1", &bytes2);
    let deadline = Instant::now() + Duration::from_secs(30);
    let objects = loop {
        let objects = files_under(&s3.root.path().join(BUCKET).join(PREFIX));
        if objects.len() == 3 || Instant::now() > deadline {
            break objects;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        objects.len(),
        3,
        "two packages and their delta: {objects:?}"
    );

    // Collection: a blob nobody references, older than the grace period (a stray object
    // another process left, dated by its LastModified), goes; referenced and young ones stay.
    let stray = hex::encode(Sha256::digest(b"stray"));
    std::fs::write(s3.object_path(&stray), b"stray").unwrap();
    std::fs::File::options()
        .write(true)
        .open(s3.object_path(&stray))
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    let young = hex::encode(Sha256::digest(b"young"));
    std::fs::write(s3.object_path(&young), b"young").unwrap();
    let collected = center.operator().collect_blobs().unwrap();
    let collected = serde_json::to_value(collected).unwrap();
    assert_eq!(collected["blobs_collected"], 1, "{collected}");
    assert!(!s3.object_path(&stray).exists());
    assert!(s3.object_path(&young).exists());
    assert!(s3.object_path(&sha256).exists());
    assert_eq!(fetch(&center, &format!("/v1/packages/{stray}"), &[]).0, 404);
    assert_eq!(fetch(&center, &url, &[]).0, 200);
}

#[test]
fn two_centers_on_one_database_and_one_bucket_serve_each_others_uploads() {
    let Some(url) = support::postgres_schema("herd_objstore") else {
        eprintln!("skipped: HERD_TEST_POSTGRES_URL is not set");
        return;
    };
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let config = s3_config(&dir.path().join("etc"), &s3.endpoint, "");
    let start = |name: &str| {
        TestCenter::try_spawn(
            &dir.path().join(name),
            &["--config", config.to_str().unwrap(), "--database", &url],
            &[("HERD_CA_KEK", "the fleet's key-encryption key")],
        )
        .unwrap()
    };
    let one = start("one");
    let two = start("two");
    let bootstrapped = [&one, &two]
        .into_iter()
        .find(|c| c.data_dir.join("operator.token").exists())
        .unwrap();
    let token = support::vendor_token(bootstrapped, "acme");
    use_operator_token(bootstrapped.operator_token());
    let root = get(&two, "/tuf/metadata/1.root.json");
    assert!(root == get(&one, "/tuf/metadata/1.root.json"));

    // Uploaded to and published on one; downloaded, whole and by range, and as a signed
    // target, from two.
    let (bytes, package, packages) = build_package(dir.path(), "1.0", 1);
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let acme_one = one.anonymous().with_token(&token);
    acme_one.upload_package(&package).unwrap();
    publish(&acme_one, &feed(&[("1.0", 1, &packages)]));
    assert!(get(&two, &format!("/v1/packages/{sha256}")) == bytes);
    let (status, body) = fetch(&two, &format!("/v1/packages/{sha256}"), &["-r", "10-19"]);
    assert_eq!(status, 206);
    assert!(body == bytes[10..20]);
    fetch_signed_package(&two, &root, "1.0", &bytes);

    // And the other way round: two's upload, named in a feed published on two, from one.
    let (bytes2, package2, packages2) = build_package(dir.path(), "1.1", 2);
    let acme_two = two.anonymous().with_token(&token);
    acme_two.upload_package(&package2).unwrap();
    let answer = publish(
        &acme_two,
        &feed(&[("1.0", 1, &packages), ("1.1", 2, &packages2)]),
    );
    assert_eq!(answer["missing_packages"], json!([]), "{answer}");
    fetch_signed_package(&one, &root, "1.1", &bytes2);
    // Neither process keeps a blob of its own.
    for center in [&one, &two] {
        let spooled = files_under(&center.data_dir.join("blobs"));
        assert!(spooled.is_empty(), "{spooled:?}");
    }
}

/// `herd serve` with `config`, expected to refuse to start: its exit code and what it said.
fn refused_start(dir: &Path, config: &Path) -> (Option<i32>, String) {
    let out = Command::new(HERD)
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", support::free_port()))
        .arg("--config")
        .arg(config)
        .env("HERD_CA_KEK", "a key-encryption key for the test")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unusable_object_store_settings_stop_the_start_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start();
    // No bucket named.
    let config = dir.path().join("no-bucket.toml");
    std::fs::write(
        &config,
        format!("blob_store = \"s3\"\ns3_endpoint = \"{}\"\n", s3.endpoint),
    )
    .unwrap();
    let (code, stderr) = refused_start(dir.path(), &config);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("s3_bucket: required"), "{stderr}");

    // Nobody listening at the endpoint.
    let nobody = format!("http://127.0.0.1:{}", support::free_port());
    let config = s3_config(&dir.path().join("unreachable"), &nobody, "");
    let (code, stderr) = refused_start(dir.path(), &config);
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains(&format!(
            "cannot open the blob store s3://{BUCKET}/{PREFIX}"
        )) && stderr.contains(&format!("cannot reach {nobody}")),
        "{stderr}"
    );

    // A bucket the server does not have, and credentials it does not know.
    let config = s3_config(
        &dir.path().join("missing"),
        &s3.endpoint,
        "", // the bucket is renamed below
    );
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(BUCKET, "no-such-bucket");
    std::fs::write(&config, text).unwrap();
    let (code, stderr) = refused_start(dir.path(), &config);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("answered 404"), "{stderr}");
    let config = s3_config(&dir.path().join("stranger"), &s3.endpoint, "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(ACCESS_KEY, "someone-else");
    std::fs::write(&config, text).unwrap();
    let (code, stderr) = refused_start(dir.path(), &config);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("answered 403"), "{stderr}");

    // Plain http to a host that is not loopback.
    let config = s3_config(&dir.path().join("remote"), "http://s3.example", "");
    let (code, stderr) = refused_start(dir.path(), &config);
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("s3_endpoint") && stderr.contains("use https"),
        "{stderr}"
    );
}
