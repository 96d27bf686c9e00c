//! Test support shared by the end-to-end tests: a real `herd serve` process in a temporary
//! directory on a free loopback port, stopped (SIGTERM, then waited for) when dropped.

#![allow(dead_code)] // Each test binary uses a different part.

use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use herd_client::Client;

pub const HERD: &str = env!("CARGO_BIN_EXE_herd");

/// A running center.
#[derive(Debug)]
pub struct TestCenter {
    pub child: Option<Child>,
    pub data_dir: PathBuf,
    pub port: u16,
    pub url: String,
    _tmp: Option<tempfile::TempDir>,
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
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

    /// Starts `herd serve` on `data_dir` (kept by the caller).
    pub fn spawn(data_dir: &Path, extra: &[&str]) -> TestCenter {
        let port = free_port();
        let child = Command::new(HERD)
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("herd serve starts");
        let mut center = TestCenter {
            child: Some(child),
            data_dir: data_dir.to_owned(),
            port,
            url: format!("https://127.0.0.1:{port}"),
            _tmp: None,
        };
        center.wait_ready();
        center
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let mut stderr = String::new();
                if let Some(mut err) = self.child.as_mut().and_then(|c| c.stderr.take()) {
                    let _ = err.read_to_string(&mut stderr);
                }
                panic!("herd serve exited with {status} before it was ready:\n{stderr}");
            }
            // The center writes ca.pem last, once its start-up is complete.
            let ready = self.data_dir.join("ca.pem").exists()
                && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok();
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "herd serve did not start within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("ca.pem")).expect("ca.pem")
    }

    pub fn operator_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("operator.token"))
            .expect("operator.token")
            .trim()
            .to_owned()
    }

    /// A client with the operator's token.
    pub fn operator(&self) -> Client {
        self.anonymous().with_token(&self.operator_token())
    }

    /// A client without credentials.
    pub fn anonymous(&self) -> Client {
        Client::new(&self.url, &self.ca_pem(), None).expect("client")
    }

    /// A client presenting a terminal's certificate.
    pub fn terminal_client(&self, identity: &herd_tls::KeyPairPem) -> Client {
        Client::new(&self.url, &self.ca_pem(), Some(identity)).expect("client")
    }

    /// Stops the center with SIGTERM and returns its exit status and stderr.
    pub fn stop(&mut self) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let mut stderr = String::new();
        if let Some(mut err) = child.stderr.take() {
            let _ = err.read_to_string(&mut stderr);
        }
        let status = child.wait().expect("wait");
        (status, stderr)
    }
}

impl Drop for TestCenter {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
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
