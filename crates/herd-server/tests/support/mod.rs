//! Test support shared by the end-to-end tests: a real `herd serve` process started through
//! the lab's process harness, in a temporary directory on a free loopback port, stopped
//! (SIGTERM, then waited for) or killed when dropped.

#![allow(dead_code)] // Each test binary uses a different part.

use std::path::{Path, PathBuf};

use herd_client::{Client, ClientError};
use herd_lab::harness::{CenterProcess, CenterSpec};
use herd_proto::api::{EnrolRequest, NewApiToken, NewEnrolmentToken};
use herd_proto::terminal::HardwareDoc;
use herd_tls::KeyPairPem;

pub const HERD: &str = env!("CARGO_BIN_EXE_herd");

/// A running center.
#[derive(Debug)]
pub struct TestCenter {
    process: CenterProcess,
    pub data_dir: PathBuf,
    pub port: u16,
    pub url: String,
    _tmp: Option<tempfile::TempDir>,
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    herd_lab::harness::free_port().expect("a free loopback port")
}

impl TestCenter {
    /// Starts `herd serve` with embedded SQLite in a new temporary directory.
    pub fn start() -> TestCenter {
        TestCenter::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> TestCenter {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = tmp.path().join("data");
        let mut center = TestCenter::spawn(&data_dir, extra);
        center._tmp = Some(tmp);
        center
    }

    /// Starts `herd serve` on `data_dir` (kept by the caller); its log is `data_dir.log`.
    pub fn spawn(data_dir: &Path, extra: &[&str]) -> TestCenter {
        TestCenter::try_spawn(data_dir, extra, &[]).unwrap_or_else(|err| panic!("{err:#}"))
    }

    /// [`TestCenter::spawn`] with environment variables, returning why it did not start.
    pub fn try_spawn(
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<TestCenter> {
        herd_tls::install_crypto_provider();
        // `--listen ADDR` among `extra` is the harness's to pass (it picks a port otherwise).
        let mut args: Vec<&str> = Vec::new();
        let mut listen = None;
        let mut rest = extra.iter().copied();
        while let Some(arg) = rest.next() {
            if arg == "--listen" {
                listen = rest.next();
            } else {
                args.push(arg);
            }
        }
        let mut spec = CenterSpec::new(Path::new(HERD), data_dir)
            .log(&data_dir.with_extension("log"))
            .args(args)
            .env("RUST_LOG", Some("warn"));
        if let Some(listen) = listen {
            spec = spec.listen(listen);
        }
        for (name, value) in env {
            spec = spec.env(name, Some(value));
        }
        let process = CenterProcess::start(&spec)?;
        Ok(TestCenter {
            data_dir: data_dir.to_owned(),
            port: process.port,
            url: process.url.clone(),
            process,
            _tmp: None,
        })
    }

    pub fn ca_pem(&self) -> String {
        self.process.ca_pem().expect("ca.pem")
    }

    pub fn operator_token(&self) -> String {
        self.process.operator_token().expect("operator.token")
    }

    /// A client with the operator's token.
    pub fn operator(&self) -> Client {
        self.process.operator().expect("client")
    }

    /// A client without credentials.
    pub fn anonymous(&self) -> Client {
        self.process.client(None).expect("client")
    }

    /// A client presenting a terminal's certificate.
    pub fn terminal_client(&self, identity: &herd_tls::KeyPairPem) -> Client {
        self.process.terminal_client(identity).expect("client")
    }

    /// Whether the process still runs (a kill from elsewhere reaps here).
    pub fn running(&mut self) -> bool {
        self.process.running()
    }

    /// The process id, to signal it from another thread.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Kills the center with SIGKILL (a crash at whatever it was doing) and waits for it.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Stops the center with SIGTERM and returns its exit status and what it logged.
    pub fn stop(&mut self) -> (std::process::ExitStatus, String) {
        let (status, killed) = self.process.stop().expect("herd serve stops");
        assert!(!killed, "herd serve did not stop on SIGTERM");
        let log = std::fs::read_to_string(&self.process.log).unwrap_or_default();
        (status, log)
    }
}

/// A new API token of `vendor`, made by the operator.
pub fn vendor_token(center: &TestCenter, vendor: &str) -> String {
    center
        .operator()
        .new_api_token(&NewApiToken {
            role: "vendor".into(),
            vendor: Some(vendor.into()),
            label: format!("{vendor} publisher"),
            ttl_secs: None,
        })
        .expect("vendor token")
        .token
}

/// A client acting for `vendor` with a token of its own.
pub fn vendor_client(center: &TestCenter, vendor: &str) -> Client {
    center.anonymous().with_token(&vendor_token(center, vendor))
}

/// The HTTP status and stable code of a refusal.
pub fn code(err: ClientError) -> (u16, String) {
    match err {
        ClientError::Refused { status, code, .. } => (status, code),
        other => panic!("expected an API error, got {other}"),
    }
}

/// Enrols terminal `id` of `user` (hardware kind and platform `kind`) with `token`.
pub fn enrol(center: &TestCenter, token: &str, id: &str, user: &str, kind: &str) -> KeyPairPem {
    let (key_pem, csr_pem) = herd_tls::new_key_and_csr(id).unwrap();
    let enrolled = center
        .anonymous()
        .enrol(&EnrolRequest {
            token: token.to_owned(),
            csr_pem,
            id: Some(id.to_owned()),
            user: Some(user.to_owned()),
            hardware: HardwareDoc {
                kind: kind.to_owned(),
                platform: kind.to_owned(),
                model: None,
            },
            tz: Some("+09:00".to_owned()),
        })
        .expect("enrol");
    assert_eq!(enrolled.terminal, id);
    KeyPairPem {
        cert_pem: enrolled.certificate_pem,
        key_pem,
    }
}

/// An enrolment token good for `uses` terminals.
pub fn enrolment_token(center: &TestCenter, uses: u64) -> String {
    center
        .operator()
        .new_enrolment_token(&NewEnrolmentToken {
            label: "test".into(),
            uses: Some(uses),
            ttl_secs: None,
            reenrol_terminal: None,
        })
        .unwrap()
        .token
}

/// The part of a catalog document one vendor publishes: itself, its products, their
/// releases and coverage, and every threat (vendors describe the threats they speak about).
pub fn vendor_feed(catalog: &serde_json::Value, vendor: &str) -> serde_json::Value {
    let products: Vec<&str> = catalog["products"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["vendor"] == vendor)
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    let of_product = |key: &str| -> Vec<serde_json::Value> {
        catalog[key]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| products.contains(&r["product"].as_str().unwrap()))
            .cloned()
            .collect()
    };
    serde_json::json!({
        "format": "herd.catalog/v1",
        "vendors": catalog["vendors"].as_array().unwrap().iter().filter(|v| v["id"] == vendor).cloned().collect::<Vec<_>>(),
        "products": catalog["products"].as_array().unwrap().iter().filter(|p| p["vendor"] == vendor).cloned().collect::<Vec<_>>(),
        "releases": of_product("releases"),
        "threats": catalog["threats"].clone(),
        "coverage": of_product("coverage"),
    })
}

/// The shipped worked example's catalog.
pub fn seed_catalog() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed/catalog.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A fresh PostgreSQL schema named `<prefix>_<pid>` on the server `HERD_TEST_POSTGRES_URL`
/// names (CI sets it), as a database URL whose search path is that schema; `None` skips the test.
pub fn postgres_schema(prefix: &str) -> Option<String> {
    let base = std::env::var("HERD_TEST_POSTGRES_URL").ok()?;
    let schema = format!("{prefix}_{}", std::process::id());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&base)
            .await
            .expect("connect to HERD_TEST_POSTGRES_URL");
        for statement in [
            format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
            format!("CREATE SCHEMA {schema}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    });
    let separator = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{separator}options=-csearch_path%3D{schema}"))
}

/// A real archive package of `acme-av` `version` built in `dir`: (path, feed packages).
pub fn build_package(dir: &Path, version: &str, seq: u64) -> (PathBuf, serde_json::Value) {
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
pub fn feed(vendor: &str, releases: &[(&str, u64, &serde_json::Value)]) -> serde_json::Value {
    serde_json::json!({
        "format": "herd.catalog/v1",
        "vendors": [{"id": vendor, "name": vendor}],
        "products": [{"id": format!("{vendor}-av"), "vendor": vendor, "name": "AV",
                      "platforms": ["linux"]}],
        "releases": releases.iter().map(|(version, seq, packages)| serde_json::json!({
            "product": format!("{vendor}-av"), "version": version, "pattern": format!("{vendor}-{seq}"),
            "seq": seq, "published": format!("2000-01-{seq:02}T00:00:00Z"), "packages": packages,
        })).collect::<Vec<_>>(),
        "threats": [],
        "coverage": [],
    })
}

/// A refresh from `root` as an agent makes it — root chain done, then timestamp, snapshot,
/// targets and the delegated roles down to the one that lists `path` — reading each metadata
/// file with `get`; returns what the metadata says of `path`.
pub fn refresh_and_find(
    get: impl Fn(&str) -> Vec<u8>,
    root: &[u8],
    path: &str,
) -> herd_tuf::TargetFile {
    use herd_tuf::{TargetSearch, TrustedSet};
    let now = herd_core::Timestamp::from_unix_seconds(herd_center::unix_now());
    let mut set = TrustedSet::new(root, now).unwrap();
    set.root_update_finished().unwrap();
    set.update_timestamp(&get("/tuf/metadata/timestamp.json"), None)
        .unwrap();
    let snapshot = set.snapshot_meta().unwrap().version;
    set.update_snapshot(
        &get(&format!("/tuf/metadata/{snapshot}.snapshot.json")),
        None,
    )
    .unwrap();
    let targets = set.targets_meta("targets").unwrap().version;
    set.update_targets(&get(&format!("/tuf/metadata/{targets}.targets.json")))
        .unwrap();
    loop {
        match set.find_target(path) {
            TargetSearch::Found { file, .. } => return file,
            TargetSearch::NeedRole { role, delegator } => {
                let version = set.targets_meta(&role).unwrap().version;
                let bytes = get(&format!("/tuf/metadata/{version}.{role}.json"));
                set.update_delegated(&role, &delegator, &bytes).unwrap();
            }
            other => panic!("{path}: {other:?}"),
        }
    }
}

/// Runs `herd ARGS` against `center` as its operator (the token file of its data directory).
pub fn herd_as_operator(center: &TestCenter, args: &[&str]) -> std::process::Output {
    std::process::Command::new(HERD)
        .args(args)
        .env("HERD_SERVER", &center.url)
        .env("HERD_CA", center.data_dir.join("ca.pem"))
        .env("HERD_TOKEN_FILE", center.data_dir.join("operator.token"))
        .env_remove("HERD_TOKEN")
        .output()
        .expect("herd runs")
}

/// `GET path` with curl, trusting the center's CA: (status, body).
pub fn tuf_fetch(center: &TestCenter, path: &str) -> (u16, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    let out = std::process::Command::new("curl")
        .args(["-s", "-g", "--path-as-is", "-w", "%{http_code}", "--cacert"])
        .arg(center.data_dir.join("ca.pem"))
        .arg("-o")
        .arg(&body)
        .arg(format!("{}{path}", center.url))
        .output()
        .expect("curl runs");
    let status = String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0);
    (status, std::fs::read(&body).unwrap_or_default())
}

pub fn get(center: &TestCenter, path: &str) -> Vec<u8> {
    let (status, body) = tuf_fetch(center, path);
    assert_eq!(
        status,
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&body)
    );
    body
}

/// A full refresh from the served root, up to the role that lists `path`: what it says of it,
/// or `None` when no role lists it.
pub fn find(center: &TestCenter, path: &str) -> Option<herd_tuf::TargetFile> {
    let root = get(center, "/tuf/metadata/root.json");
    let now = herd_core::Timestamp::from_unix_seconds(herd_center::unix_now());
    let mut set = herd_tuf::TrustedSet::new(&root, now).unwrap();
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
            herd_tuf::TargetSearch::Found { file, .. } => return Some(file),
            herd_tuf::TargetSearch::NeedRole { role, delegator } => {
                let version = set.targets_meta(&role).unwrap().version;
                let bytes = get(center, &format!("/tuf/metadata/{version}.{role}.json"));
                set.update_delegated(&role, &delegator, &bytes).unwrap();
            }
            _ => return None,
        }
    }
}
