//! `herd-agent run` end to end, with real processes on loopback: a real `herd serve` center,
//! real vaccine packages built with herd-package and uploaded to it, feeds published per
//! vendor, and agents that enrol, check in, carry out plans and report through their outbox.
//!
//! - the worked example: install, update (vaccine-a 5.1 → 5.2), switch (→ vaccine-b), exposed
//!   (latest-same-vendor through a placement rule by user), with `scan --prefix` showing the
//!   sample undetected before the switch and detected after;
//! - consent (deferred, declined, then accepted) and a maintenance window, and a running agent
//!   woken by `herd-agent consent accept`, then idle: no CPU, resident memory printed;
//! - the outbox: 1,000 events produced while the center is stopped, the agent aborted after an
//!   acknowledgement and killed -9 mid-flush; every event arrives, in order, once;
//! - clear errors: unreachable center, wrong CA, refused token, unusable state directory;
//! - signed distribution: a plan verified against a repository signed with herd-tuf (as the
//!   center will sign) and served by a mirror is carried out with the package from the mirror;
//!   a mirror withholding the metadata, or serving a role signed by another key, gets nothing
//!   installed, and the refusal reaches the center (`trust.refused`, the plan's report) and
//!   `status`. (Until the center serves `/tuf/`, the tests above without `--mirror` have their
//!   plans refused as `unavailable`.)

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use herd_client::Client;
use herd_lab::harness::{CenterProcess, CenterSpec, free_port};
use herd_package::{BuiltPackage, PackageSpec};
use herd_proto::api::{
    GroupDoc, NewEnrolmentToken, PlacementRule, PlacementRules, ReportOutcome, TerminalDetail,
};
use herd_proto::terminal::PolicyDoc;
use serde_json::{Value, json};

#[path = "support/herd.rs"]
mod herd;
#[path = "support/mirror.rs"]
mod mirror;

use herd::herd_binary;

/// The agent under test: this build's, or `$HERD_AGENT_BIN` (to measure a release build's
/// footprint with the same scenario).
fn agent() -> Command {
    match std::env::var_os("HERD_AGENT_BIN") {
        Some(path) => Command::new(path),
        None => Command::new(env!("CARGO_BIN_EXE_herd-agent")),
    }
}

/// The body of "virus a" (SPEC §5's worked example): vaccine-b detects it, vaccine-a does not.
const VIRUS_A: &str = "VIRUS-A-BODY-0xDEADBEEF";

// ---------------------------------------------------------------------------------------------
// The center.

/// A running `herd serve` (the lab's process harness), stopped when dropped; restartable on
/// the same data and ports.
struct Center {
    process: Option<CenterProcess>,
    spec: CenterSpec,
    data_dir: PathBuf,
    url: String,
    /// The plaintext loopback listener, for `/metrics` without TLS.
    plain_port: u16,
}

impl Center {
    fn start(data_dir: &Path, checkin_interval: u64) -> Center {
        Center::launch(data_dir, |spec| {
            spec.arg("--checkin-interval")
                .arg(checkin_interval.to_string())
        })
    }

    /// Starts a center whose ports are chosen free at start: the harness picks the listening
    /// port (and tries another if it is taken before the center binds it); the plaintext
    /// port is picked here, and the whole start is tried again if that one was taken. The
    /// address found is kept in the spec, so a restart comes back on the same ports.
    fn launch(data_dir: &Path, configure: impl Fn(CenterSpec) -> CenterSpec) -> Center {
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            let plain_port = free_port().expect("a free port");
            let spec = configure(
                CenterSpec::new(herd_binary(), data_dir)
                    .log(&data_dir.with_extension("log"))
                    // The plaintext loopback listener serves `/metrics` without TLS.
                    .arg("--plaintext-listen")
                    .arg(format!("127.0.0.1:{plain_port}"))
                    .env("RUST_LOG", Some("error")),
            );
            match CenterProcess::start(&spec) {
                Ok(process) => {
                    let spec = spec.listen(&process.listen);
                    return Center {
                        url: process.url.clone(),
                        process: Some(process),
                        spec,
                        data_dir: data_dir.to_owned(),
                        plain_port,
                    };
                }
                Err(err) if attempt < ATTEMPTS && format!("{err:#}").contains("in use") => {}
                Err(err) => panic!("herd serve starts: {err:#}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn spawn(&mut self) {
        self.process = Some(CenterProcess::start(&self.spec).expect("herd serve starts"));
    }

    /// Stops the center (SIGTERM) and waits for it.
    fn stop(&mut self) {
        let mut process = self.process.take().expect("the center runs");
        let (status, killed) = process.stop().expect("herd serve stops");
        assert!(!killed, "herd serve did not stop on SIGTERM ({status})");
    }

    fn ca(&self) -> PathBuf {
        self.data_dir.join("ca.pem")
    }

    fn operator(&self) -> Client {
        herd_tls::install_crypto_provider();
        let token = fs::read_to_string(self.data_dir.join("operator.token")).unwrap();
        Client::new(&self.url, &fs::read_to_string(self.ca()).unwrap(), None)
            .unwrap()
            .with_token(token.trim())
    }

    fn enrolment_token(&self) -> String {
        self.operator()
            .new_enrolment_token(&NewEnrolmentToken {
                label: "tests".into(),
                uses: Some(50),
                ttl_secs: None,
                reenrol_terminal: None,
            })
            .unwrap()
            .token
    }

    /// A re-enrolment token for enrolled terminal `id`.
    fn reenrolment_token(&self, id: &str) -> String {
        self.operator()
            .new_enrolment_token(&NewEnrolmentToken {
                label: String::new(),
                uses: None,
                ttl_secs: None,
                reenrol_terminal: Some(id.into()),
            })
            .unwrap()
            .token
    }

    fn detail(&self, terminal: &str) -> TerminalDetail {
        self.operator().terminal(terminal).unwrap()
    }

    fn group(&self, id: &str, policy: Value) {
        let policy: PolicyDoc = serde_json::from_value(policy).unwrap();
        self.operator()
            .put_group(&GroupDoc {
                id: id.into(),
                description: String::new(),
                policy,
                terminals: 0,
            })
            .unwrap();
    }

    fn rules(&self, by_user: &[(&str, &str)]) {
        let rules = by_user
            .iter()
            .map(|(user, group)| PlacementRule {
                group: (*group).into(),
                kind: None,
                platform: None,
                address: None,
                user: Some((*user).into()),
            })
            .collect();
        self.operator()
            .put_rules(&PlacementRules { rules })
            .unwrap();
    }

    /// Publishes a vendor's feed and uploads its packages.
    fn publish(&self, vendor: &str, feed: &Value, packages: &[&Package]) {
        let operator = self.operator();
        operator
            .publish_feed(vendor, feed.to_string().as_bytes())
            .unwrap();
        for package in packages {
            operator.upload_package(&package.path).unwrap();
        }
    }

    /// A counter from `/metrics` (over the plaintext loopback listener).
    fn metric(&self, name: &str) -> u64 {
        let mut stream = TcpStream::connect(("127.0.0.1", self.plain_port)).unwrap();
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
    }
}

// ---------------------------------------------------------------------------------------------
// Vendors: packages and feeds.

struct Package {
    path: PathBuf,
    built: BuiltPackage,
}

/// Builds `product` `version` for phones; `detects_virus_a` decides whether its definitions
/// detect "virus a".
fn package(root: &Path, product: &str, version: &str, seq: u64, detects_virus_a: bool) -> Package {
    let tag = format!("{product}-{version}");
    let src = root.join("src").join(&tag);
    fs::create_dir_all(&src).unwrap();
    let hex = |text: &str| -> String { text.bytes().map(|b| format!("{b:02x}")).collect() };
    let own = format!("HERD-TEST-PATTERN-{tag}");
    let mut defs = format!("{product}.Test.Pattern:0:*:{}\n", hex(&own));
    if detects_virus_a {
        defs += &format!("{product}.VirusA:0:*:{}\n", hex(VIRUS_A));
    }
    let definitions = src.join(format!("{tag}.ndb"));
    fs::write(&definitions, defs).unwrap();
    let test_pattern = src.join("test.txt");
    fs::write(&test_pattern, format!("== {own} ==\n")).unwrap();
    let hook = src.join("post-install");
    fs::write(&hook, "#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();
    let vendor = if product == "vaccine-a" {
        "maker-a"
    } else {
        "maker-b"
    };
    let spec = PackageSpec {
        product: product.into(),
        vendor: vendor.into(),
        version: version.into(),
        seq,
        pattern: format!("{}-{seq}", &product[product.len() - 1..]),
        definitions: vec![definitions],
        test_pattern,
        post_install: Some(hook),
        pre_uninstall: None,
        platforms: vec!["phone".into()],
    };
    let path = root.join(format!("{tag}.tar.gz"));
    let built = herd_package::build(&spec, &path).unwrap();
    Package { path, built }
}

const THREATS: &str = r#"[
    {"id": "virus-old", "name": "an old virus", "danger": "low", "discovered": "2000-10-01"},
    {"id": "virus-a", "name": "virus a", "danger": "high", "discovered": "2000-11-10"}]"#;

/// Maker A's feed with these vaccine-a releases. Maker A speaks only of the old virus it
/// covers: "virus a" enters the catalog with maker B's feed, and no statement means not
/// covered.
fn feed_a(releases: &[(&Package, &str)]) -> Value {
    let releases: Vec<Value> = releases
        .iter()
        .map(|(p, published)| {
            let m = &p.built.manifest;
            json!({"product": "vaccine-a", "version": m.version, "pattern": m.pattern, "seq": m.seq,
                   "published": published, "packages": p.built.catalog_packages})
        })
        .collect();
    json!({
        "format": "herd.catalog/v1",
        "vendors": [{"id": "maker-a", "name": "Vaccine Maker A"}],
        "products": [{"id": "vaccine-a", "vendor": "maker-a", "name": "Vaccine a", "platforms": ["phone"]}],
        "releases": releases,
        "threats": [serde_json::from_str::<Value>(THREATS).unwrap()[0].clone()],
        "coverage": [{"product": "vaccine-a", "threat": "virus-old", "since_seq": 1101, "covered_on": "2000-11-01"}]
    })
}

/// Maker B's feed: vaccine-b 7.0 covers virus-a since 2000-11-12.
fn feed_b(b: &Package) -> Value {
    json!({
        "format": "herd.catalog/v1",
        "vendors": [{"id": "maker-b", "name": "Vaccine Maker B"}],
        "products": [{"id": "vaccine-b", "vendor": "maker-b", "name": "Vaccine b", "platforms": ["phone"]}],
        "releases": [{"product": "vaccine-b", "version": "7.0", "pattern": "b-1112", "seq": 1112,
                      "published": "2000-11-12T00:00:00Z", "packages": b.built.catalog_packages}],
        "threats": serde_json::from_str::<Value>(THREATS).unwrap(),
        "coverage": [{"product": "vaccine-b", "threat": "virus-old", "since_seq": 1112, "covered_on": "2000-11-12"},
                     {"product": "vaccine-b", "threat": "virus-a", "since_seq": 1112, "covered_on": "2000-11-12"}]
    })
}

// ---------------------------------------------------------------------------------------------
// Agents.

/// One terminal: its state directory and how it enrols.
struct Terminal {
    id: &'static str,
    user: &'static str,
    state: PathBuf,
}

impl Terminal {
    fn new(root: &Path, id: &'static str, user: &'static str) -> Terminal {
        Terminal {
            id,
            user,
            state: root.join(id),
        }
    }

    fn prefix(&self) -> PathBuf {
        self.state.join("prefix")
    }

    fn run_command(&self, center: &Center, token: &str, extra: &[&str]) -> Command {
        let mut command = agent();
        command
            .arg("run")
            .arg("--server")
            .arg(&center.url)
            .arg("--ca")
            .arg(center.ca())
            .arg("--state-dir")
            .arg(&self.state)
            .args(["--enrol-token", token, "--id", self.id, "--user", self.user])
            .args(["--kind", "phone", "--platform", "phone", "--tz", "+00:00"])
            .args(extra)
            .env_remove("HERD_AGENT_FAULT")
            .env_remove("HERD_AGENT_OUTBOX_FAULT")
            .env_remove("HERD_AGENT_IDENTITY_FAULT");
        command
    }

    /// `herd-agent run --once`.
    fn once(&self, center: &Center, token: &str, extra: &[&str]) -> Output {
        let mut args = vec!["--once"];
        args.extend_from_slice(extra);
        self.run_command(center, token, &args).output().unwrap()
    }

    fn status(&self) -> Value {
        let output = agent()
            .args(["status", "--json", "--state-dir"])
            .arg(&self.state)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output));
        serde_json::from_slice(&output.stdout).unwrap()
    }

    fn consent(&self, answer: &str) -> Output {
        agent()
            .args(["consent", answer, "--state-dir"])
            .arg(&self.state)
            .output()
            .unwrap()
    }

    /// The product `current` points at, as `products/<product>/<version>`.
    fn active(&self) -> Option<String> {
        fs::read_link(self.prefix().join("current"))
            .ok()
            .map(|t| t.display().to_string())
    }

    /// `herd-agent scan --prefix` over a file holding "virus a": its exit code (0 clean,
    /// 1 found).
    fn scan_sample(&self, sample: &Path) -> i32 {
        let output = agent()
            .arg("scan")
            .arg("--prefix")
            .arg(self.prefix())
            .arg("--no-summary")
            .arg(sample)
            .output()
            .unwrap();
        output.status.code().unwrap_or(-1)
    }
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[track_caller]
fn assert_exit(output: &Output, code: i32) {
    assert_eq!(output.status.code(), Some(code), "{}", text(output));
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn last_outcome(detail: &TerminalDetail) -> Option<ReportOutcome> {
    detail.last_report.as_ref().map(|r| r.outcome)
}

// ---------------------------------------------------------------------------------------------

/// SPEC §5's worked example through the center: install, update within a product, switch to
/// another vendor, and an exposed terminal under latest-same-vendor.
#[test]
fn install_update_switch_and_exposed_through_the_center() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let center = Center::start(&root.join("center"), 3600);
    let token = center.enrolment_token();
    let a51 = package(root, "vaccine-a", "5.1", 1101, false);
    let a52 = package(root, "vaccine-a", "5.2", 1105, false);
    let b70 = package(root, "vaccine-b", "7.0", 1112, true);
    let sample = root.join("sample.bin");
    fs::write(&sample, format!("junk {VIRUS_A} junk")).unwrap();

    // User b's terminals stay with their vendor later; for now they follow any vendor.
    center.group("stay", json!({"apply": "latest-any-vendor"}));
    center.rules(&[("user-b", "stay")]);
    center.publish(
        "maker-a",
        &feed_a(&[(&a51, "2000-11-01T00:00:00Z")]),
        &[&a51],
    );

    let phone_a = Terminal::new(root, "45a", "user-a");
    let phone_b = Terminal::new(root, "45b", "user-b");
    for phone in [&phone_a, &phone_b] {
        let output = phone.once(&center, &token, &[]);
        assert_exit(&output, 0);
        let out = stdout(&output);
        assert!(
            out.contains(&format!("enrolled as terminal {}", phone.id)),
            "{out}"
        );
        assert!(out.contains("install vaccine-a 5.1"), "{out}");
        assert!(
            out.contains("succeeded: vaccine-a 5.1 (a-1101) is active"),
            "{out}"
        );
        assert_eq!(phone.active().as_deref(), Some("products/vaccine-a/5.1"));
        // The identity is the terminal's alone.
        let mode = |p: PathBuf| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(phone.state.join("identity")), 0o700);
        assert_eq!(mode(phone.state.join("identity/key.pem")), 0o600);
        assert_eq!(mode(phone.state.join("identity/cert.pem")), 0o600);
        let detail = center.detail(phone.id);
        assert_eq!(last_outcome(&detail), Some(ReportOutcome::Succeeded));
        assert_eq!(detail.summary.action.as_deref(), Some("none"));
        assert_eq!(
            detail
                .summary
                .installed
                .as_ref()
                .map(|i| i.version.as_str()),
            Some("5.1")
        );
    }
    assert_eq!(center.detail("45b").summary.group, "stay");
    assert_eq!(
        phone_a.scan_sample(&sample),
        0,
        "vaccine-a does not detect virus a"
    );

    // An update within the product: vaccine-a 5.1 → 5.2, the old version removed.
    center.publish(
        "maker-a",
        &feed_a(&[
            (&a51, "2000-11-01T00:00:00Z"),
            (&a52, "2000-11-05T00:00:00Z"),
        ]),
        &[&a52],
    );
    let output = phone_b.once(&center, &token, &[]);
    assert_exit(&output, 0);
    let out = stdout(&output);
    assert!(out.contains("update vaccine-a 5.1 to 5.2"), "{out}");
    assert_eq!(phone_b.active().as_deref(), Some("products/vaccine-a/5.2"));
    assert!(!phone_b.prefix().join("products/vaccine-a/5.1").exists());
    let detail = center.detail("45b");
    assert_eq!(last_outcome(&detail), Some(ReportOutcome::Succeeded));
    assert_eq!(detail.summary.action.as_deref(), Some("none"));

    // Maker B covers virus a; user b's group now stays with its vendor.
    center.group("stay", json!({"apply": "latest-same-vendor"}));
    center.publish("maker-b", &feed_b(&b70), &[&b70]);

    // Phone a switches vendors (the plan of the worked example).
    let output = phone_a.once(&center, &token, &[]);
    assert_exit(&output, 0);
    let out = stdout(&output);
    assert!(
        out.contains("switch from vaccine-a 5.1 to vaccine-b 7.0"),
        "{out}"
    );
    assert!(
        out.contains("succeeded: vaccine-b 7.0 (b-1112) is active"),
        "{out}"
    );
    assert_eq!(phone_a.active().as_deref(), Some("products/vaccine-b/7.0"));
    assert!(!phone_a.prefix().join("products/vaccine-a").exists());
    let detail = center.detail("45a");
    let report = detail.last_report.as_ref().unwrap();
    assert_eq!(report.outcome, ReportOutcome::Succeeded);
    assert_eq!(report.installed.as_ref().unwrap().product, "vaccine-b");
    // The agent checked in again after the switch: the center plans from the new inventory.
    assert_eq!(detail.summary.action.as_deref(), Some("none"));
    assert_eq!(detail.summary.uncovered, 0);
    assert_eq!(phone_a.scan_sample(&sample), 1, "vaccine-b detects virus a");

    // Phone b is exposed: told so, nothing changed.
    let output = phone_b.once(&center, &token, &[]);
    assert_exit(&output, 0);
    let out = stdout(&output);
    assert!(
        out.contains(
            "NOTICE: this terminal is exposed: vaccine-a 5.2 does not cover virus-a; \
             vaccine-b 7.0 (maker-b) would cover virus-a; ask your operator"
        ),
        "{out}"
    );
    assert_eq!(phone_b.active().as_deref(), Some("products/vaccine-a/5.2"));
    let detail = center.detail("45b");
    assert_eq!(detail.summary.action.as_deref(), Some("exposed"));
    assert_eq!(
        detail
            .last_report
            .as_ref()
            .unwrap()
            .installed
            .as_ref()
            .unwrap()
            .version,
        "5.2"
    );

    let status = phone_b.status();
    assert_eq!(status["agent"]["terminal"], "45b");
    assert_eq!(status["progress"]["plan"]["action"], "exposed");
    assert_eq!(status["installed"]["version"], "5.2");
    assert_eq!(status["outbox"]["pending"], 0);
    assert_eq!(status["running"], false);
}

/// Consent: deferred until the user answers, declined, then accepted; a running agent is
/// woken by the answer, carries the plan out, and then idles without using the CPU. A plan
/// outside its maintenance window waits for it.
#[test]
fn consent_windows_and_an_idle_running_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let center = Center::start(&root.join("center"), 3600);
    let token = center.enrolment_token();
    let a51 = package(root, "vaccine-a", "5.1", 1101, false);
    let b70 = package(root, "vaccine-b", "7.0", 1112, true);
    center.group(
        "ask",
        json!({"apply": "latest-any-vendor", "consent": "ask"}),
    );
    // A window that opens two hours from now (UTC): the plan must wait for it.
    let now = SystemNow::minutes_of_day();
    let window = format!(
        "{}-{}",
        SystemNow::hh_mm(now + 120),
        SystemNow::hh_mm(now + 180)
    );
    center.group(
        "night",
        json!({"apply": "latest-any-vendor", "window": window}),
    );
    center.rules(&[("user-c", "ask"), ("user-d", "ask"), ("user-w", "night")]);
    center.publish(
        "maker-a",
        &feed_a(&[(&a51, "2000-11-01T00:00:00Z")]),
        &[&a51],
    );
    center.publish("maker-b", &feed_b(&b70), &[&b70]);

    // Asked, not carried out: a notice, a `deferred` report.
    let phone = Terminal::new(root, "46c", "user-c");
    let output = phone.once(&center, &token, &[]);
    assert_exit(&output, 0);
    let out = stdout(&output);
    assert!(
        out.contains("NOTICE: your operator wants to install vaccine-b 7.0 on this terminal"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "herd-agent consent accept --state-dir {}",
            phone.state.display()
        )),
        "{out}"
    );
    assert_eq!(phone.active(), None);
    let detail = center.detail("46c");
    assert_eq!(last_outcome(&detail), Some(ReportOutcome::Deferred));
    let deferred_at = phone.status()["progress"]["last_report"]["at"].clone();
    // Asked again at the next run: the notice again, no second report.
    let output = phone.once(&center, &token, &[]);
    assert_exit(&output, 0);
    assert!(stdout(&output).contains("NOTICE: your operator wants to"));
    assert_eq!(phone.status()["progress"]["last_report"]["at"], deferred_at);
    assert_eq!(phone.status()["consent"]["decision"], Value::Null);

    // Declined: the center is told; nothing installed.
    assert_exit(&phone.consent("decline"), 0);
    let output = phone.once(&center, &token, &[]);
    assert_exit(&output, 0);
    assert!(stdout(&output).contains("declined: the user declined to install vaccine-b 7.0"));
    assert_eq!(
        last_outcome(&center.detail("46c")),
        Some(ReportOutcome::Declined)
    );
    assert_eq!(phone.active(), None);

    // The user changes their mind.
    let answer = phone.consent("accept");
    assert_exit(&answer, 0);
    assert!(stdout(&answer).contains("accepted (changed from declined): install vaccine-b 7.0"));
    let output = phone.once(&center, &token, &[]);
    assert_exit(&output, 0);
    assert_eq!(phone.active().as_deref(), Some("products/vaccine-b/7.0"));
    let detail = center.detail("46c");
    assert_eq!(last_outcome(&detail), Some(ReportOutcome::Succeeded));
    assert_eq!(detail.summary.action.as_deref(), Some("none"));
    // The question is gone with the plan.
    assert_exit(&phone.consent("accept"), 1);

    // A maintenance window: deferred until it opens.
    let night = Terminal::new(root, "46w", "user-w");
    let output = night.once(&center, &token, &[]);
    assert_exit(&output, 0);
    let out = stdout(&output);
    assert!(
        out.contains("waiting for the maintenance window, which opens at"),
        "{out}"
    );
    assert_eq!(night.active(), None);
    let detail = center.detail("46w");
    assert_eq!(last_outcome(&detail), Some(ReportOutcome::Deferred));
    assert!(detail.plan.as_ref().unwrap().not_before.is_some());
    assert_eq!(night.status()["progress"]["plan"]["waiting"], "window");

    // A running agent: asks, is woken by the answer, carries the plan out, then idles.
    let daemon_phone = Terminal::new(root, "46d", "user-d");
    let mut daemon = daemon_phone
        .run_command(&center, &token, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(daemon.stdout.take().unwrap());
    wait_for_line(
        &lines,
        "NOTICE: your operator wants to install vaccine-b 7.0",
    );
    let status = daemon_phone.status();
    assert_eq!(status["running"], true);
    assert_eq!(status["pid"], daemon.id());
    wait_until("the agent to wait for consent", || {
        let status = daemon_phone.status();
        status["progress"]["plan"]["waiting"] == "consent"
            && status["progress"]["next_checkin"].is_string()
    });
    let asleep_until = daemon_phone.status()["progress"]["next_checkin"].clone();
    let answer = daemon_phone.consent("accept");
    assert_exit(&answer, 0);
    assert!(
        stdout(&answer).contains(&format!(
            "the running agent (pid {}) carries it out now",
            daemon.id()
        )),
        "{}",
        text(&answer)
    );
    wait_for_line(&lines, "succeeded: vaccine-b 7.0 (b-1112) is active");
    assert_eq!(
        daemon_phone.active().as_deref(),
        Some("products/vaccine-b/7.0")
    );
    // The report is queued, then sent.
    wait_until("the center to get the report", || {
        last_outcome(&center.detail("46d")) == Some(ReportOutcome::Succeeded)
    });

    // Idle until its next check-in (an hour away): no CPU at all. It goes back to sleep once
    // it has checked in again with its new inventory and scheduled the next check-in.
    wait_until("the agent to go back to sleep", || {
        let next = daemon_phone.status()["progress"]["next_checkin"].clone();
        next.is_string() && next != asleep_until
    });
    assert_eq!(center.detail("46d").summary.action.as_deref(), Some("none"));
    std::thread::sleep(Duration::from_secs(1));
    let pid = daemon.id();
    let (ticks_before, _) = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(10));
    let (ticks_after, state) = cpu_ticks(pid);
    let [rss, hwm, anon, file] = memory_kib(pid);
    eprintln!(
        "herd-agent run idle: {} CPU ticks in 10 s (state {state}); VmRSS {rss} KiB (anonymous \
         {anon}, file {file}), VmHWM {hwm} KiB",
        ticks_after - ticks_before
    );
    assert_eq!(ticks_after, ticks_before, "the idle agent used the CPU");

    // SIGTERM while idle: a clean stop.
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = daemon.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    wait_for_line(&lines, "stopping (SIGTERM)");
    assert!(!daemon_phone.state.join("agent.pid").exists());
}

/// The outbox: events produced while the center is down are all delivered once it is back,
/// in order and exactly once, even when the agent dies mid-flush.
#[test]
fn the_outbox_survives_a_center_outage_and_a_killed_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut center = Center::start(&root.join("center"), 3600);
    let token = center.enrolment_token();
    let a51 = package(root, "vaccine-a", "5.1", 1101, false);
    center.publish(
        "maker-a",
        &feed_a(&[(&a51, "2000-11-01T00:00:00Z")]),
        &[&a51],
    );
    let phone = Terminal::new(root, "47e", "user-e");
    assert_exit(&phone.once(&center, &token, &[]), 0);
    let delivered_before = phone.status()["outbox"]["acked_through"].as_u64().unwrap();
    assert!(
        delivered_before >= 4,
        "agent.started, plan.received, plan.report…"
    );
    assert_eq!(
        center.metric("herd_events_accepted_total"),
        delivered_before
    );

    // The center stops; the agent keeps producing events and says where they wait.
    center.stop();
    let output = phone.once(&center, &token, &["--emit-test-events", "1000"]);
    assert_exit(&output, 2);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains(&format!("cannot reach the center at {}", center.url)),
        "{err}"
    );
    assert!(err.contains("1001 event(s) wait in the outbox"), "{err}");
    let outbox = phone.state.join("outbox");
    let files = || event_files(&outbox);
    assert_eq!(files(), 1001);

    center.spawn();
    // Dies right after the center acknowledged its second batch, before deleting anything
    // of it: that batch is sent again next time (and deduplicated by the center).
    let output = phone
        .run_command(&center, &token, &["--once", "--flush-batch", "100"])
        .env("HERD_AGENT_OUTBOX_FAULT", "abort-after-ack:2")
        .output()
        .unwrap();
    assert_eq!(output.status.signal(), Some(6), "{}", text(&output));
    let left = files();
    assert_eq!(
        left,
        1002 - 100,
        "one agent.started more, the first batch deleted"
    );

    // Killed -9 in the middle of a flush of small batches.
    let mut child = phone
        .run_command(&center, &token, &["--once", "--flush-batch", "10"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now_left = files();
        if now_left < left && now_left > 100 {
            child.kill().unwrap();
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the flush ended before the agent could be killed in the middle of it"
        );
        assert!(Instant::now() < deadline, "the flush did not start");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(child.wait().unwrap().signal(), Some(9));
    assert!(files() > 0);

    // Restarted: everything arrives.
    let output = phone.once(&center, &token, &[]);
    assert_exit(&output, 0);
    assert_eq!(files(), 0);
    let status = phone.status();
    let total = status["outbox"]["acked_through"].as_u64().unwrap();
    assert_eq!(status["outbox"]["pending"], 0);
    assert_eq!(status["outbox"]["next_seq"], total + 1);
    // Every event exactly once: the center accepted each seq once across both of its runs;
    // the resent ones were recognised as duplicates.
    let accepted = center.metric("herd_events_accepted_total");
    let duplicates = center.metric("herd_events_duplicate_total");
    assert_eq!(
        delivered_before + accepted,
        total,
        "{duplicates} duplicates"
    );
    assert!(
        duplicates >= 100,
        "the acknowledged but undeleted batch was sent again"
    );

    // In order: the center's store received the events in seq order, the test events in the
    // order they were produced (checked in the database when the sqlite3 tool is there).
    let db = center.data_dir.join("herd.db");
    match Command::new("sqlite3")
        .arg("-readonly")
        .arg(&db)
        .arg("SELECT seq, kind, data FROM events WHERE terminal = '47e' ORDER BY rowid")
        .output()
    {
        Ok(output) if output.status.success() => {
            let rows: Vec<(u64, String, String)> = String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(|line| {
                    let mut parts = line.splitn(3, '|');
                    let seq = parts.next().unwrap().parse().unwrap();
                    (
                        seq,
                        parts.next().unwrap().to_owned(),
                        parts.next().unwrap().to_owned(),
                    )
                })
                .collect();
            let seqs: Vec<u64> = rows.iter().map(|r| r.0).collect();
            assert_eq!(
                seqs,
                (1..=total).collect::<Vec<_>>(),
                "arrival order is seq order"
            );
            let ns: Vec<u64> = rows
                .iter()
                .filter(|r| r.1 == "test.event")
                .map(|r| {
                    serde_json::from_str::<Value>(&r.2).unwrap()["n"]
                        .as_u64()
                        .unwrap()
                })
                .collect();
            assert_eq!(ns, (0..1000).collect::<Vec<_>>());
        }
        _ => eprintln!("sqlite3 is not available: arrival order checked by counts only"),
    }
}

/// Mistakes a user can make get messages that say what is wrong and what to do.
#[test]
fn errors_are_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let center = Center::start(&root.join("center"), 3600);
    let token = center.enrolment_token();
    let run = |args: &[&str]| -> Output {
        agent()
            .arg("run")
            .arg("--once")
            .args(args)
            .output()
            .unwrap()
    };
    let state = |name: &str| root.join(name).display().to_string();
    let ca = center.ca().display().to_string();

    // Nobody listens there.
    let nowhere = format!("https://127.0.0.1:{}", free_port().expect("a free port"));
    let output = run(&[
        "--server",
        &nowhere,
        "--ca",
        &ca,
        "--state-dir",
        &state("s1"),
        "--enrol-token",
        &token,
    ]);
    assert_exit(&output, 2);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains(&format!("cannot reach the center at {nowhere}")),
        "{err}"
    );
    assert!(err.contains("is the center running"), "{err}");

    // Another CA than the center's.
    let (other_ca, _) = herd_tls::CertificateAuthority::generate("not the center").unwrap();
    let other = root.join("other-ca.pem");
    fs::write(&other, other_ca).unwrap();
    let output = run(&[
        "--server",
        &center.url,
        "--ca",
        &other.display().to_string(),
        "--state-dir",
        &state("s2"),
        "--enrol-token",
        &token,
    ]);
    assert_exit(&output, 2);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("is --ca the center's CA certificate"), "{err}");

    // A token the center does not know.
    let output = run(&[
        "--server",
        &center.url,
        "--ca",
        &ca,
        "--state-dir",
        &state("s3"),
        "--enrol-token",
        "herd_enrol_made_up",
    ]);
    assert_exit(&output, 2);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("refused to enrol this terminal (HTTP 403): enrolment_token_invalid"),
        "{err}"
    );
    assert!(
        err.contains("ask your operator for a new enrolment token"),
        "{err}"
    );

    // No token at all.
    let output = run(&[
        "--server",
        &center.url,
        "--ca",
        &ca,
        "--state-dir",
        &state("s4"),
    ]);
    assert_exit(&output, 2);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("this agent is not enrolled yet: pass --enrol-token"),
        "{err}"
    );

    // A state directory that cannot exist.
    let file = root.join("a-file");
    fs::write(&file, b"x").unwrap();
    let output = run(&[
        "--server",
        &center.url,
        "--ca",
        &ca,
        "--state-dir",
        &file.join("state").display().to_string(),
        "--enrol-token",
        &token,
    ]);
    assert_exit(&output, 2);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("cannot create the state directory"), "{err}");

    // Enrolled, then asked to be someone else.
    let output = run(&[
        "--server",
        &center.url,
        "--ca",
        &ca,
        "--state-dir",
        &state("s5"),
        "--enrol-token",
        &token,
        "--id",
        "48f",
        "--kind",
        "phone",
        "--platform",
        "phone",
    ]);
    assert_exit(&output, 0);
    let output = run(&["--state-dir", &state("s5"), "--id", "48g"]);
    assert_exit(&output, 2);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("belongs to terminal 48f, not 48g"), "{err}");
    // Once enrolled, the agent needs neither --server nor --ca nor a token.
    assert_exit(&run(&["--state-dir", &state("s5")]), 0);
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// The wall clock in minutes of the UTC day, and `HH:MM` for such minutes.
struct SystemNow;

impl SystemNow {
    fn minutes_of_day() -> u64 {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        secs % 86_400 / 60
    }

    fn hh_mm(minutes: u64) -> String {
        let m = minutes % 1440;
        format!("{:02}:{:02}", m / 60, m % 60)
    }
}

/// Event files waiting in an outbox directory.
fn event_files(outbox: &Path) -> usize {
    fs::read_dir(outbox)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    name.len() == 25 && name.ends_with(".json")
                })
                .count()
        })
        .unwrap_or(0)
}

fn lines_of(stdout: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[track_caller]
fn wait_for_line(lines: &mpsc::Receiver<String>, wanted: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(wanted) => return,
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!("no line with {wanted:?} in 30 s; saw:\n{}", seen.join("\n"));
}

#[track_caller]
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "waited 30 s for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// utime + stime of a process, in clock ticks, and its state letter (`/proc/<pid>/stat`).
fn cpu_ticks(pid: u32) -> (u64, String) {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields[11].parse().unwrap();
    let stime: u64 = fields[12].parse().unwrap();
    (utime + stime, fields[0].to_owned())
}

/// VmRSS, VmHWM, RssAnon and RssFile of a process, in KiB.
fn memory_kib(pid: u32) -> [u64; 4] {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    ["VmRSS:", "VmHWM:", "RssAnon:", "RssFile:"].map(|name| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    })
}

// ---------------------------------------------------------------------------------------------
// The identity's lifecycle: renewal, a lost renewal answer, re-enrolment, and the way back for
// a terminal whose certificate expired or was replaced.

/// The terminal's key and certificate as its state directory holds them.
fn identity_of(state: &Path) -> herd_tls::KeyPairPem {
    herd_tls::KeyPairPem {
        cert_pem: fs::read_to_string(state.join("identity/cert.pem")).unwrap(),
        key_pem: fs::read_to_string(state.join("identity/key.pem")).unwrap(),
    }
}

fn cert_sha256(identity: &herd_tls::KeyPairPem) -> String {
    herd_tls::cert_sha256_hex(&herd_tls::cert_der_from_pem(&identity.cert_pem).unwrap())
}

/// A client of `center` presenting `identity` (as a terminal holding those files would).
fn terminal_client(center: &Center, identity: &herd_tls::KeyPairPem) -> Client {
    herd_tls::install_crypto_provider();
    Client::new(
        &center.url,
        &fs::read_to_string(center.ca()).unwrap(),
        Some(identity),
    )
    .unwrap()
}

/// Renews `identity`'s certificate over mutual TLS, as the agent does.
fn renew(
    center: &Center,
    identity: &herd_tls::KeyPairPem,
    id: &str,
) -> Result<herd_tls::KeyPairPem, herd_client::ClientError> {
    let (key_pem, csr_pem) = herd_tls::new_key_and_csr(id).unwrap();
    let renewed = terminal_client(center, identity)
        .renew_certificate(&herd_proto::api::CertificateRenewal { csr_pem })?;
    Ok(herd_tls::KeyPairPem {
        cert_pem: renewed.certificate_pem,
        key_pem,
    })
}

fn checkin_as(
    center: &Center,
    identity: &herd_tls::KeyPairPem,
) -> Result<herd_proto::api::CheckinResponse, herd_client::ClientError> {
    terminal_client(center, identity).checkin(&herd_proto::api::CheckinRequest {
        terminal: None,
        installed: None,
        hardware: None,
        tz: None,
        agent_version: None,
        interfaces: None,
        tuf_timestamp_version: None,
        consent_waiting: None,
        messages_after: None,
        tuf_held: None,
    })
}

#[track_caller]
fn assert_refused(result: Result<impl std::fmt::Debug, herd_client::ClientError>, code: &str) {
    match result {
        Err(err) => assert_eq!(err.code(), Some(code), "{err}"),
        Ok(answer) => panic!("expected {code}, got {answer:?}"),
    }
}

/// Renewal with the real agent (a test flag makes its year-long certificate due now), a
/// renewal whose answer was lost, and certificates older than the previous one.
#[test]
fn a_terminal_renews_before_its_certificate_expires() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let center = Center::start(&root.join("center"), 3600);
    let token = center.enrolment_token();
    let terminal = Terminal::new(root, "renewer", "alice");
    assert_exit(&terminal.once(&center, &token, &[]), 0);
    let first = identity_of(&terminal.state);
    let status = terminal.status();
    assert!(
        status["certificate"]
            .as_str()
            .unwrap()
            .starts_with("expires at "),
        "{status}"
    );

    // Not due: nothing renewed.
    assert_exit(&terminal.once(&center, &token, &[]), 0);
    assert_eq!(identity_of(&terminal.state), first);

    // Due (less than 400 days left): a new key and certificate, used by this same cycle's
    // check-in, which succeeds.
    let output = terminal.once(&center, &token, &["--renew-when-left", "34560000"]);
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("renewed this terminal's certificate"),
        "{}",
        text(&output)
    );
    let second = identity_of(&terminal.state);
    assert_ne!(second.key_pem, first.key_pem);
    assert_ne!(cert_sha256(&second), cert_sha256(&first));
    assert!(!terminal.state.join("identity/renewed.pem").exists());
    assert!(
        terminal.status()["progress"]["certificate_renewed_at"].is_string(),
        "{}",
        terminal.status()
    );
    assert_eq!(center.metric("herd_certificate_renewals_total"), 1);
    // The certificate it renewed from checks in no more.
    assert_refused(checkin_as(&center, &first), "certificate_revoked");
    checkin_as(&center, &second).unwrap();
}

#[test]
fn a_lost_renewal_answer_does_not_lock_the_terminal_out() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let center = Center::start(&root.join("center"), 3600);
    let token = center.enrolment_token();
    let terminal = Terminal::new(root, "lossy", "alice");
    assert_exit(&terminal.once(&center, &token, &[]), 0);
    let held = identity_of(&terminal.state);

    // The center renews, and the answer never reaches the terminal.
    let lost = renew(&center, &held, "lossy").unwrap();
    assert_refused(checkin_as(&center, &held), "certificate_revoked");

    // The agent, still holding its old certificate, is refused at check-in; it renews with
    // that certificate, which the center still accepts for that, and carries on.
    let output = terminal.once(&center, &token, &[]);
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("renewed this terminal's certificate"),
        "{}",
        text(&output)
    );
    let now_held = identity_of(&terminal.state);
    assert_ne!(cert_sha256(&now_held), cert_sha256(&held));
    // The certificate whose answer was lost is no longer the terminal's.
    assert_refused(checkin_as(&center, &lost), "certificate_revoked");
    checkin_as(&center, &now_held).unwrap();

    // The same when the lost answer was to a renewal that is still due: renewed first.
    let held = now_held;
    renew(&center, &held, "lossy").unwrap();
    let output = terminal.once(&center, &token, &["--renew-when-left", "34560000"]);
    assert_exit(&output, 0);
    let now_held = identity_of(&terminal.state);
    assert_ne!(cert_sha256(&now_held), cert_sha256(&held));
    checkin_as(&center, &now_held).unwrap();
    assert_eq!(center.metric("herd_certificate_renewals_total"), 4);
}

/// The agent dies (SIGABRT, like a power cut) after the renewed key replaced key.pem and before
/// the certificate replaced cert.pem: the next start finishes the switch from the one file
/// holding both, so the key on disk is never used with a certificate that is not its own.
#[test]
fn a_crash_between_saving_the_key_and_the_certificate_keeps_a_matching_pair() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let center = Center::start(&root.join("center"), 3600);
    let token = center.enrolment_token();
    let terminal = Terminal::new(root, "crashy", "alice");
    assert_exit(&terminal.once(&center, &token, &[]), 0);
    let before = identity_of(&terminal.state);

    let output = terminal
        .run_command(
            &center,
            &token,
            &["--once", "--renew-when-left", "34560000"],
        )
        .env("HERD_AGENT_IDENTITY_FAULT", "abort-after:key")
        .output()
        .unwrap();
    assert_eq!(output.status.signal(), Some(6), "{}", text(&output));
    let torn = identity_of(&terminal.state);
    assert_ne!(torn.key_pem, before.key_pem);
    assert_eq!(
        torn.cert_pem, before.cert_pem,
        "the crash came before cert.pem"
    );
    assert!(
        herd_tls::client_config(&fs::read_to_string(center.ca()).unwrap(), Some(&torn)).is_err()
    );
    assert!(terminal.state.join("identity/renewed.pem").exists());

    // The next run finishes the switch first, and checks in with the renewed pair.
    assert_exit(&terminal.once(&center, &token, &[]), 0);
    let after = identity_of(&terminal.state);
    assert_eq!(after.key_pem, torn.key_pem);
    assert_ne!(after.cert_pem, before.cert_pem);
    assert!(!terminal.state.join("identity/renewed.pem").exists());
    checkin_as(&center, &after).unwrap();
    assert!(
        terminal.status()["certificate"]
            .as_str()
            .unwrap()
            .starts_with("expires at "),
    );
}

#[test]
fn a_renewed_terminal_cannot_use_a_certificate_older_than_the_previous() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let center = Center::start(&root.join("center"), 3600);
    let token = center.enrolment_token();
    let terminal = Terminal::new(root, "thrice", "alice");
    assert_exit(&terminal.once(&center, &token, &[]), 0);
    let first = identity_of(&terminal.state);
    let second = renew(&center, &first, "thrice").unwrap();
    let third = renew(&center, &second, "thrice").unwrap();
    let refused_before = center.metric("herd_certificate_renewals_refused_total");

    // The first certificate is older than the previous one (the second): it neither renews
    // nor checks in, and trying changes nothing.
    assert_refused(renew(&center, &first, "thrice"), "certificate_revoked");
    assert_refused(checkin_as(&center, &first), "certificate_revoked");
    assert_eq!(
        center.metric("herd_certificate_renewals_refused_total"),
        refused_before + 1
    );
    checkin_as(&center, &third).unwrap();
    // A renewal cannot take another terminal's identity either: the center certifies the id
    // of the certificate that renews, whatever the request asks.
    let other = renew(&center, &third, "someone-else").unwrap();
    assert_eq!(
        herd_tls::terminal_id_of(&herd_tls::cert_der_from_pem(&other.cert_pem).unwrap()).as_deref(),
        Some("thrice")
    );
}

#[test]
fn a_reenrolment_token_works_once_and_only_for_its_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let center = Center::start(&root.join("center"), 3600);
    let token = center.enrolment_token();
    let mine = Terminal::new(root, "mine", "alice");
    let other = Terminal::new(root, "other", "bob");
    assert_exit(&mine.once(&center, &token, &["--emit-test-events", "3"]), 0);
    assert_exit(&other.once(&center, &token, &[]), 0);
    let events_before = center.operator().terminal("mine").unwrap();
    let reenrol = |terminal: &Terminal, token: &str| -> Output {
        agent()
            .args(["enrol", "--token", token, "--state-dir"])
            .arg(&terminal.state)
            .output()
            .unwrap()
    };
    let token = center.reenrolment_token("mine");

    // Another terminal cannot use it: refused, its identity untouched, the use not taken.
    let others = identity_of(&other.state);
    let output = reenrol(&other, &token);
    assert_exit(&output, 2);
    assert!(
        text(&output).contains("re-enrols terminal \"mine\" only"),
        "{}",
        text(&output)
    );
    assert_eq!(identity_of(&other.state), others);

    // Its terminal: a new identity, the same id, group and history.
    let before = identity_of(&mine.state);
    let output = reenrol(&mine, &token);
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("re-enrolled terminal mine"),
        "{}",
        text(&output)
    );
    let after = identity_of(&mine.state);
    assert_ne!(cert_sha256(&after), cert_sha256(&before));
    assert_refused(checkin_as(&center, &before), "certificate_revoked");
    assert_exit(&mine.once(&center, &token, &[]), 0);
    let detail = center.operator().terminal("mine").unwrap();
    assert_eq!(detail.summary.group, events_before.summary.group);
    assert_eq!(
        detail.summary.enrolled_at,
        events_before.summary.enrolled_at
    );
    assert!(detail.addresses[0].checkins > events_before.addresses[0].checkins);

    // Once only.
    let output = reenrol(&mine, &token);
    assert_exit(&output, 2);
    assert!(
        text(&output).contains("enrolment_token_invalid"),
        "{}",
        text(&output)
    );
    assert_eq!(identity_of(&mine.state), after);
}

/// A terminal whose certificate the center replaced (re-enrolled from elsewhere) or that has
/// expired stops with the exact way back, in its log and in `herd-agent status`, and takes it.
#[test]
fn an_expired_terminal_is_told_how_to_recover() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let center = Center::start(&root.join("center"), 3600);
    let token = center.enrolment_token();
    let terminal = Terminal::new(root, "lost", "alice");
    assert_exit(&terminal.once(&center, &token, &[]), 0);
    let state = terminal.state.display().to_string();
    let recovery = [
        "herd enrol-token create --reenrol lost".to_owned(),
        format!("herd-agent enrol --state-dir {state} --token TOKEN"),
    ];

    // Replaced: the center refuses the certificate; the daemon stops instead of backing off
    // forever, saying what to do.
    let reenrolment = center.reenrolment_token("lost");
    let (_, csr_pem) = herd_tls::new_key_and_csr("lost").unwrap();
    Client::new(&center.url, &fs::read_to_string(center.ca()).unwrap(), None)
        .unwrap()
        .enrol(&herd_proto::api::EnrolRequest {
            token: reenrolment,
            csr_pem,
            id: None,
            user: None,
            hardware: herd_proto::terminal::HardwareDoc {
                kind: "phone".into(),
                platform: "phone".into(),
                model: None,
            },
            tz: None,
        })
        .unwrap();
    let output = terminal
        .run_command(&center, &token, &["--retry-min", "1"])
        .output()
        .unwrap();
    assert_exit(&output, 2);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("certificate_revoked"), "{err}");
    for step in &recovery {
        assert!(err.contains(step.as_str()), "{err}");
    }
    let status = terminal.status();
    let last_error = status["progress"]["last_error"].as_str().unwrap();
    assert!(last_error.contains(&recovery[0]), "{status}");

    // Expired: refused before anything is sent, with the same way back. (The certificate put
    // in place is signed by another CA: the agent refuses it on its date, before any TLS.)
    let (ca_cert, ca_key) = herd_tls::CertificateAuthority::generate("elsewhere").unwrap();
    let ca = herd_tls::CertificateAuthority::from_pem(&ca_cert, &ca_key).unwrap();
    let (key_pem, csr) = herd_tls::new_key_and_csr("lost").unwrap();
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(400 * 86_400);
    let expired = ca
        .sign_terminal_csr_between(
            &csr,
            "lost",
            long_ago,
            long_ago + Duration::from_secs(365 * 86_400),
        )
        .unwrap();
    fs::write(terminal.state.join("identity/key.pem"), key_pem).unwrap();
    fs::write(terminal.state.join("identity/cert.pem"), expired.cert_pem).unwrap();
    let output = terminal.once(&center, &token, &[]);
    assert_exit(&output, 2);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("this terminal's certificate expired at"),
        "{err}"
    );
    for step in &recovery {
        assert!(err.contains(step.as_str()), "{err}");
    }
    let human = agent()
        .args(["status", "--state-dir"])
        .arg(&terminal.state)
        .output()
        .unwrap();
    let human = stdout(&human);
    assert!(human.contains("certificate:   EXPIRED at"), "{human}");
    assert!(human.contains(&recovery[1]), "{human}");

    // The way back, taken: a re-enrolment token, `herd-agent enrol`, and check-ins again.
    let reenrolment = center.reenrolment_token("lost");
    let output = agent()
        .args(["enrol", "--token", &reenrolment, "--state-dir", &state])
        .output()
        .unwrap();
    assert_exit(&output, 0);
    assert_exit(&terminal.once(&center, &token, &[]), 0);
    assert!(
        terminal.status()["certificate"]
            .as_str()
            .unwrap()
            .starts_with("expires at "),
    );
}

/// A plan is carried out only once signed metadata vouches for it: an upstream that withholds
/// the metadata (here a mirror, `--mirror`) gets the plan deferred with nothing downloaded or
/// installed, a `trust.refused` event and the plan's report at the center, and the refusal in
/// `herd-agent status`.
#[test]
fn a_plan_the_signed_metadata_does_not_vouch_for_changes_nothing_and_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let center = Center::start(&root.join("center"), 3600);
    let token = center.enrolment_token();
    let a51 = package(root, "vaccine-a", "5.1", 1101, false);
    center.publish(
        "maker-a",
        &feed_a(&[(&a51, "2000-11-01T00:00:00Z")]),
        &[&a51],
    );
    let mirror = mirror::Mirror::start();
    mirror.set("/tuf/metadata/timestamp.json", mirror::Behaviour::Withhold);
    let phone = Terminal::new(root, "45t", "user-a");
    let output = phone.once(&center, &token, &["--mirror", &mirror.url()]);
    assert_exit(&output, 0);
    let err = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(err.contains("refused plan"), "{}", text(&output));
    assert!(err.contains("(unavailable)"), "{}", text(&output));
    assert_eq!(phone.active(), None, "nothing was installed");
    assert!(
        fs::read_dir(phone.state.join("downloads"))
            .map(|d| d.count() == 0)
            .unwrap_or(true),
        "nothing was downloaded"
    );

    let detail = center.detail(phone.id);
    let report = detail.last_report.as_ref().unwrap();
    assert_eq!(report.outcome, ReportOutcome::Deferred);
    let message = report.message.as_deref().unwrap_or_default();
    assert!(
        message.contains("the signed metadata does not vouch for this plan (unavailable)"),
        "{message}"
    );
    let status = phone.status();
    let refusal = &status["progress"]["trust"]["last_refusal"];
    assert_eq!(refusal["kind"], "unavailable", "{status:#}");
    assert_eq!(refusal["plan_id"], report.plan_id.as_str());
    assert_eq!(status["outbox"]["pending"], 0, "the refusal was sent");
    let shown = agent()
        .args(["status", "--state-dir"])
        .arg(&phone.state)
        .output()
        .unwrap();
    assert!(
        stdout(&shown).contains("last refusal:  unavailable at"),
        "{}",
        text(&shown)
    );
    // Tried again, refused again for the same reason: said once upstream (the second run
    // sends only its `agent.started`), still in status.
    let acked = status["outbox"]["acked_through"].as_u64().unwrap();
    let output = phone.once(&center, &token, &["--mirror", &mirror.url()]);
    assert_exit(&output, 0);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("refused plan"),
        "{}",
        text(&output)
    );
    let again = center.detail(phone.id);
    assert_eq!(again.last_report.as_ref().unwrap().plan_id, report.plan_id);
    let status = phone.status();
    assert_eq!(
        status["progress"]["trust"]["last_refusal"]["kind"],
        "unavailable"
    );
    assert_eq!(status["outbox"]["pending"], 0);
    assert_eq!(status["outbox"]["acked_through"], acked + 1);
    assert_eq!(phone.active(), None);
}

/// A TUF repository listing maker A's packages as the center will sign it, for a mirror.
struct SignedRepository {
    repo: herd_tuf::repository::Repository,
    targets: Vec<(String, Vec<u8>, herd_proto::distribution::PackageCustom)>,
    /// Every file signed so far, by its path on a mirror.
    files: std::collections::BTreeMap<String, Vec<u8>>,
}

impl SignedRepository {
    fn new() -> SignedRepository {
        use herd_tuf::SigningKey;
        let now = herd_core::Timestamp::from_unix_seconds(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64,
        );
        let key = || SigningKey::generate().unwrap();
        let (root_key, timestamp, snapshot, targets) = (key(), key(), key(), key());
        let root = herd_tuf::repository::root_document(
            None,
            &[root_key.public()],
            1,
            [&timestamp.public(), &snapshot.public(), &targets.public()],
            now.plus_seconds(365 * 86_400),
        );
        let repo = herd_tuf::repository::Repository::new(
            vec![herd_tuf::sign(&root, &[&root_key])],
            herd_tuf::repository::OnlineKeys {
                timestamp,
                snapshot,
                targets,
            },
            herd_tuf::repository::Lifetimes::default(),
        )
        .unwrap();
        SignedRepository {
            repo,
            targets: Vec::new(),
            files: Default::default(),
        }
    }

    /// Lists a package built for phones, with the metadata its catalog entry has.
    fn list(&mut self, package: &Package) {
        let m = &package.built.manifest;
        let doc = &package.built.catalog_packages[0];
        let path = herd_proto::distribution::package_target(
            &m.vendor,
            &m.product,
            &m.version,
            &doc.platform,
            &doc.format,
        );
        let custom = herd_proto::distribution::PackageCustom {
            vendor: m.vendor.clone(),
            product: m.product.clone(),
            version: m.version.clone(),
            seq: m.seq,
            pattern: m.pattern.clone(),
            platform: doc.platform.clone(),
            format: doc.format.clone(),
            name: doc.name.clone(),
            product_code: doc.product_code.clone(),
            post_install: doc.post_install.clone(),
            pre_uninstall: doc.pre_uninstall.clone(),
            content: None,
        };
        self.targets
            .push((path, fs::read(&package.path).unwrap(), custom));
    }

    /// Signs what changed, and serves everything on `mirror`.
    fn serve(&mut self, mirror: &mirror::Mirror) {
        use herd_tuf::repository::{Desired, DesiredRole, RoleContent};
        let key = self.repo.root().roles["targets"].keyids[0].clone();
        let public = self.repo.root().keys[&key].clone();
        let listed = self
            .targets
            .iter()
            .map(|(path, bytes, custom)| {
                let file = herd_tuf::TargetFile {
                    length: bytes.len() as u64,
                    hashes: herd_tuf::hashes_of(bytes),
                    custom: Some(herd_proto::distribution::custom_value(custom)),
                };
                let sha = file.hashes["sha256"].clone();
                let (dir, name) = path.rsplit_once('/').unwrap();
                self.files
                    .insert(format!("/tuf/targets/{dir}/{sha}.{name}"), bytes.clone());
                (path.clone(), file)
            })
            .collect();
        let desired = Desired {
            roles: vec![DesiredRole {
                name: herd_proto::distribution::vendor_role("maker-a"),
                paths: herd_proto::distribution::vendor_paths("maker-a"),
                terminating: true,
                keys: vec![public],
                threshold: 1,
                content: RoleContent::Online(listed),
            }],
        };
        let now = herd_core::Timestamp::from_unix_seconds(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64,
        );
        for file in self.repo.update(&desired, now).unwrap() {
            self.files
                .insert(format!("/tuf/metadata/{}", file.name), file.bytes);
        }
        let root = self.repo.roots()[0].clone();
        self.files
            .insert("/tuf/metadata/1.root.json".into(), root.clone());
        self.files.insert("/tuf/metadata/root.json".into(), root);
        for (path, bytes) in &self.files {
            mirror.put(path, bytes.clone());
        }
    }

    /// Makes `state` trust this repository's root, as enrolment with a signing center does.
    fn trust_in(&self, state: &Path) {
        fs::create_dir_all(state.join("trust")).unwrap();
        fs::write(state.join("trust/root.json"), &self.repo.roots()[0]).unwrap();
    }
}

/// The whole path with signed metadata: the center plans, a mirror serves the signed
/// repository and the package, the agent verifies the plan against it, downloads the package
/// from the mirror by its consistent-snapshot name and installs it; another terminal, whose
/// mirror serves a vendor role signed by another key, installs nothing.
#[test]
fn a_plan_vouched_for_by_signed_metadata_is_carried_out_from_a_mirror() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let center = Center::start(&root.join("center"), 3600);
    let token = center.enrolment_token();
    let a51 = package(root, "vaccine-a", "5.1", 1101, false);
    center.publish(
        "maker-a",
        &feed_a(&[(&a51, "2000-11-01T00:00:00Z")]),
        &[&a51],
    );
    let mut signed = SignedRepository::new();
    signed.list(&a51);
    let mirror = mirror::Mirror::start();
    signed.serve(&mirror);

    let phone = Terminal::new(root, "45s", "user-a");
    signed.trust_in(&phone.state);
    let output = phone.once(&center, &token, &["--mirror", &mirror.url()]);
    assert_exit(&output, 0);
    let out = stdout(&output);
    assert!(
        out.contains("succeeded: vaccine-a 5.1 (a-1101) is active"),
        "{}",
        text(&output)
    );
    assert_eq!(phone.active().as_deref(), Some("products/vaccine-a/5.1"));
    let target = format!(
        "/tuf/targets/packages/maker-a/vaccine-a/5.1/{}.phone.archive",
        a51.built.sha256
    );
    assert!(mirror.take_requests().contains(&target));
    let status = phone.status();
    let refresh = &status["progress"]["trust"]["last_refresh"];
    assert_eq!(refresh["upstream"], mirror.url(), "{status:#}");
    assert_eq!(refresh["root_version"], 1);
    assert_eq!(status["progress"]["trust"]["last_refusal"], Value::Null);

    // Another terminal's mirror serves maker A's role re-signed by a key nobody delegated to.
    let evil = mirror::Mirror::start();
    signed.serve(&evil);
    let role = "/tuf/metadata/1.vendor-maker-a.json";
    let genuine: Value = serde_json::from_slice(&evil.get(role).unwrap()).unwrap();
    let forged: herd_tuf::Targets = serde_json::from_value(genuine["signed"].clone()).unwrap();
    let attacker = herd_tuf::SigningKey::generate().unwrap();
    evil.put(role, herd_tuf::sign(&forged, &[&attacker]));
    let other = Terminal::new(root, "45e", "user-a");
    signed.trust_in(&other.state);
    let output = other.once(&center, &token, &["--mirror", &evil.url()]);
    assert_exit(&output, 1);
    assert_eq!(other.active(), None);
    let detail = center.detail(other.id);
    let report = detail.last_report.as_ref().unwrap();
    assert_eq!(report.outcome, ReportOutcome::RolledBack);
    assert!(
        report
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("(signature)"),
        "{report:?}"
    );
    assert_eq!(
        other.status()["progress"]["trust"]["last_refusal"]["kind"],
        "signature"
    );
}

// ---------------------------------------------------------------------------------------------
// Definition deltas.

/// vaccine-a `version` with a large definitions set (6,000 signatures, of which the `changed`
/// first ones differ from release to release): a full package of ~200 KB whose update changes
/// a few lines, as definitions updates do.
fn large_package(root: &Path, version: &str, seq: u64, changed: usize) -> Package {
    let tag = format!("vaccine-a-{version}");
    let src = root.join("src").join(&tag);
    fs::create_dir_all(&src).unwrap();
    let hex = |bytes: &[u8]| -> String { bytes.iter().map(|b| format!("{b:02x}")).collect() };
    let own = "HERD-TEST-PATTERN-vaccine-a";
    let mut defs = format!("vaccine-a.Test.Pattern:0:*:{}\n", hex(own.as_bytes()));
    for i in 0..6000 {
        let salt = if i < changed { version } else { "base" };
        let body: [u8; 24] = std::array::from_fn(|k| {
            (i as u64 * 7919 + k as u64 * 104_729 + salt.len() as u64 * 31)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .rotate_left((k % 60) as u32)
                .to_le_bytes()[k % 8]
                ^ salt.bytes().fold(0u8, |a, b| a.wrapping_mul(31) ^ b)
        });
        defs += &format!("vaccine-a.Sig{i}:0:*:{}\n", hex(&body));
    }
    let definitions = src.join(format!("{tag}.ndb"));
    fs::write(&definitions, defs).unwrap();
    let test_pattern = src.join("test.txt");
    fs::write(&test_pattern, format!("== {own} ==\n")).unwrap();
    let spec = PackageSpec {
        product: "vaccine-a".into(),
        vendor: "maker-a".into(),
        version: version.into(),
        seq,
        pattern: format!("a-{seq}"),
        definitions: vec![definitions],
        test_pattern,
        post_install: None,
        pre_uninstall: None,
        platforms: vec!["phone".into()],
    };
    let path = root.join(format!("{tag}.tar.gz"));
    let built = herd_package::build(&spec, &path).unwrap();
    Package { path, built }
}

/// The uncompressed tar of a package: its content.
fn content_of(package: &Package) -> Vec<u8> {
    let bytes = fs::read(&package.path).unwrap();
    herd_package::content_of(&bytes[..], 1 << 30).unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The kept content files of a terminal (`<state>/content/`).
fn kept_content(phone: &Terminal) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(phone.state.join("content"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The detail of the fetch step of a terminal's last report.
fn fetch_detail(center: &Center, terminal: &str) -> String {
    let detail = center.detail(terminal);
    let report = detail.last_report.expect("a report");
    assert_eq!(report.outcome, ReportOutcome::Succeeded, "{report:#?}");
    report
        .steps
        .iter()
        .find(|s| s.kind == "fetch")
        .and_then(|s| s.detail.clone())
        .expect("a fetch step with a detail")
}

/// SPEC §3.4's definitions update: an update of the installed release takes the delta the
/// center lists from the content the terminal keeps (fewer bytes, the package itself never
/// downloaded, the product correct); a corrupt delta, content the terminal no longer has
/// intact, or no kept content at all fall back to the full download, and the product is
/// correct all the same.
#[test]
fn an_update_takes_the_delta_and_falls_back_to_the_full_package_on_any_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let center = Center::start(&root.join("center"), 3600);
    let token = center.enrolment_token();
    let a51 = large_package(root, "5.1", 1101, 0);
    let a52 = large_package(root, "5.2", 1105, 40);
    // Uploaded before their feed: the sign round of the publish reads their content and
    // makes the delta (a package uploaded later gets them at the next periodic round).
    for package in [&a51, &a52] {
        center.operator().upload_package(&package.path).unwrap();
    }
    center.publish(
        "maker-a",
        &feed_a(&[(&a51, "2000-11-01T00:00:00Z")]),
        &[&a51],
    );
    // The mirror passes the center's repository through, and tells what was asked of it.
    let mirror = mirror::Mirror::start();
    mirror.proxy(
        Client::new(&center.url, &fs::read_to_string(center.ca()).unwrap(), None)
            .unwrap()
            .repository(),
    );
    let via_mirror = ["--mirror".to_owned(), mirror.url()];
    let via_mirror: Vec<&str> = via_mirror.iter().map(String::as_str).collect();
    let phones = [
        Terminal::new(root, "d1", "user-a"),
        Terminal::new(root, "d2", "user-a"),
        Terminal::new(root, "d3", "user-a"),
        Terminal::new(root, "d4", "user-a"),
    ];
    let content_51 = format!("{}.tar", sha256_hex(&content_of(&a51)));
    for phone in &phones {
        let output = phone.once(&center, &token, &via_mirror);
        assert_exit(&output, 0);
        assert_eq!(phone.active().as_deref(), Some("products/vaccine-a/5.1"));
        // A first install has nothing to delta from; the content is kept for the next one.
        assert_eq!(kept_content(phone), vec![content_51.clone()]);
        let mode = fs::metadata(phone.state.join("content").join(&content_51))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    center.publish(
        "maker-a",
        &feed_a(&[
            (&a51, "2000-11-01T00:00:00Z"),
            (&a52, "2000-11-05T00:00:00Z"),
        ]),
        &[&a52],
    );
    let package_target = format!(
        "/tuf/targets/packages/maker-a/vaccine-a/5.2/{}.phone.archive",
        a52.built.sha256
    );
    let content_52 = format!("{}.tar", sha256_hex(&content_of(&a52)));
    let delta_prefix = "/tuf/targets/herd/deltas/maker-a/vaccine-a/5.2/";
    let check_updated = |phone: &Terminal| {
        assert_eq!(phone.active().as_deref(), Some("products/vaccine-a/5.2"));
        assert!(!phone.prefix().join("products/vaccine-a/5.1").exists());
        assert_eq!(kept_content(phone), vec![content_52.clone()]);
    };

    // d1: the delta.
    mirror.take_requests();
    let output = phones[0].once(&center, &token, &via_mirror);
    assert_exit(&output, 0);
    check_updated(&phones[0]);
    let out = stdout(&output);
    assert!(
        out.contains("(fetch): rebuilt the package's content from a delta"),
        "the log says which way the package came: {out}"
    );
    let requests = mirror.take_requests();
    let delta_path = requests
        .iter()
        .find(|r| r.starts_with(delta_prefix))
        .unwrap_or_else(|| {
            panic!(
                "no delta downloaded: {requests:?}; {}",
                fetch_detail(&center, "d1")
            )
        })
        .clone();
    assert!(
        !requests.iter().any(|r| r.starts_with(&package_target)),
        "{requests:?}"
    );
    let detail = fetch_detail(&center, "d1");
    assert!(
        detail.contains("rebuilt the package's content from a delta"),
        "{detail}"
    );
    let delta = mirror_bytes(&mirror, &delta_path);
    assert!(
        (delta.len() as u64) * 10 < a52.built.size,
        "a delta of {} bytes for a package of {}",
        delta.len(),
        a52.built.size
    );
    eprintln!(
        "delta: {} bytes downloaded instead of {} ({detail})",
        delta.len(),
        a52.built.size
    );

    // d2: the mirror corrupts the delta.
    let mut corrupt = delta.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    mirror.set(&delta_path, mirror::Behaviour::Replace(corrupt));
    mirror.take_requests();
    let output = phones[1].once(&center, &token, &via_mirror);
    assert_exit(&output, 0);
    check_updated(&phones[1]);
    let requests = mirror.take_requests();
    assert!(requests.contains(&delta_path), "{requests:?}");
    assert!(
        requests.iter().any(|r| r.starts_with(&package_target)),
        "{requests:?}"
    );
    let detail = fetch_detail(&center, "d2");
    assert!(
        detail.contains("the full package, not a delta: the delta is not the signed one"),
        "{detail}"
    );
    mirror.honest(&delta_path);

    // d3: its kept content was changed behind the agent's back.
    let kept = phones[2].state.join("content").join(&content_51);
    let mut tampered = fs::read(&kept).unwrap();
    tampered[600] ^= 1;
    fs::write(&kept, tampered).unwrap();
    mirror.take_requests();
    let output = phones[2].once(&center, &token, &via_mirror);
    assert_exit(&output, 0);
    check_updated(&phones[2]);
    let requests = mirror.take_requests();
    assert!(
        requests.iter().any(|r| r.starts_with(&package_target)),
        "{requests:?}"
    );
    let detail = fetch_detail(&center, "d3");
    assert!(detail.contains("the kept content"), "{detail}");
    assert!(detail.contains("changed"), "{detail}");

    // d4: content of a release the center has no delta from (another release's).
    fs::remove_file(phones[3].state.join("content").join(&content_51)).unwrap();
    let other = format!("{}.tar", "ab".repeat(32));
    fs::write(phones[3].state.join("content").join(&other), b"other").unwrap();
    mirror.take_requests();
    let output = phones[3].once(&center, &token, &via_mirror);
    assert_exit(&output, 0);
    check_updated(&phones[3]);
    let requests = mirror.take_requests();
    assert!(
        !requests.iter().any(|r| r.starts_with(delta_prefix)),
        "{requests:?}"
    );
    let detail = fetch_detail(&center, "d4");
    assert!(detail.contains("no delta is listed"), "{detail}");
}

/// The bytes the mirror serves at `path` (from its upstream).
fn mirror_bytes(mirror: &mirror::Mirror, path: &str) -> Vec<u8> {
    herd_client::Repository::mirror(&mirror.url())
        .unwrap()
        .get(path, herd_client::ReadLimits::metadata(1 << 20))
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// The push connection and failover between upstreams.

/// Seconds the pushed agent is watched idle; `HERD_PUSH_IDLE_SECS=60` with a release
/// `HERD_AGENT_BIN` measures the footprint the brief asks for.
fn push_idle_secs() -> u64 {
    std::env::var("HERD_PUSH_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

/// A release published while a running agent sleeps an hour until its next check-in reaches it
/// within seconds through its push connection; holding that connection costs no CPU.
#[test]
fn a_publish_reaches_a_pushed_agent_without_waiting_for_its_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let center = Center::start(&root.join("center"), 3600);
    let token = center.enrolment_token();
    let a51 = package(root, "vaccine-a", "5.1", 1101, false);
    center.publish(
        "maker-a",
        &feed_a(&[(&a51, "2000-11-01T00:00:00Z")]),
        &[&a51],
    );

    let phone = Terminal::new(root, "47p", "user-p");
    let mut daemon = phone
        .run_command(&center, &token, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(daemon.stdout.take().unwrap());
    wait_for_line(&lines, "vaccine-a 5.1 (a-1101) is active");
    wait_until("the agent to sleep an hour", || {
        let status = phone.status();
        status["progress"]["next_checkin"].is_string()
            && status["progress"]["push"]
                .as_str()
                .is_some_and(|p| p.starts_with("holding a push connection"))
    });
    wait_until("the center to hold the agent's wait", || {
        center.metric("herd_waits_held") == 1
    });
    let pid = daemon.id();
    let idle = push_idle_secs();
    // A window in which the center announced something (a sign round after the first
    // publish) and the agent rightly checked in is not idle: measured again, up to 3 times.
    let mut windows = 0;
    loop {
        windows += 1;
        let before = phone.status()["progress"].clone();
        let (ticks_before, _) = cpu_ticks(pid);
        std::thread::sleep(Duration::from_secs(idle));
        let (ticks_after, state) = cpu_ticks(pid);
        let after = phone.status()["progress"].clone();
        let [rss, hwm, anon, file] = memory_kib(pid);
        let woken =
            before["last_checkin"] != after["last_checkin"] || before["push"] != after["push"];
        eprintln!(
            "herd-agent run holding its push connection: {} CPU ticks in {idle} s (state \
             {state}){}; VmRSS {rss} KiB (anonymous {anon}, file {file}), VmHWM {hwm} KiB",
            ticks_after - ticks_before,
            if woken {
                ", woken by a change meanwhile"
            } else {
                ""
            }
        );
        if woken && windows < 3 {
            continue;
        }
        assert!(!woken, "the center kept announcing changes");
        assert_eq!(ticks_after, ticks_before, "the idle agent used the CPU");
        break;
    }
    assert_eq!(center.metric("herd_waits_held"), 1);

    // A new release: packages first, then the feed naming them.
    let a52 = package(root, "vaccine-a", "5.2", 1102, false);
    let operator = center.operator();
    operator.upload_package(&a52.path).unwrap();
    let published = Instant::now();
    operator
        .publish_feed(
            "maker-a",
            feed_a(&[
                (&a51, "2000-11-01T00:00:00Z"),
                (&a52, "2000-11-02T00:00:00Z"),
            ])
            .to_string()
            .as_bytes(),
        )
        .unwrap();
    wait_for_line(&lines, "the upstream announced a change; checking in now");
    wait_for_line(&lines, "vaccine-a 5.2 (a-1102) is active");
    let took = published.elapsed();
    eprintln!("publish → pushed agent runs the new release: {took:?}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert_eq!(phone.active().as_deref(), Some("products/vaccine-a/5.2"));
    // Stopped once asleep again (a stop signal while it works takes its default action).
    wait_until("the center to see the new release installed", || {
        center.detail("47p").summary.action.as_deref() == Some("none")
    });
    std::thread::sleep(Duration::from_secs(2));

    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = daemon.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// An agent whose first upstream stops answering checks in with the next after
/// `--failover-after`, and goes back to the first once it answers again. The two upstreams are
/// one center on two ports in turn (a second `herd serve` on the same SQLite data is not
/// allowed): A, then B while A is down, then A again.
#[test]
fn an_agent_fails_over_to_the_next_upstream_and_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut center = Center::start(&root.join("center"), 3600);
    let token = center.enrolment_token();
    let phone = Terminal::new(root, "47f", "user-f");
    assert_exit(&phone.once(&center, &token, &["--no-push"]), 0);
    let a = center.url.clone();
    let b_port = free_port().unwrap();
    let b = format!("https://127.0.0.1:{b_port}");
    let a_listen = center.spec.listen.clone().unwrap();

    // A goes away; the same center answers at B.
    center.stop();
    center.spec.listen = Some(format!("127.0.0.1:{b_port}"));
    center.url = b.clone();
    center.spawn();
    let mut daemon = phone
        .run_command(
            &center,
            &token,
            &[
                "--upstream",
                &a,
                "--upstream",
                &b,
                "--failover-after",
                "3",
                "--probe-preferred-every",
                "2",
                "--retry-min",
                "1",
                "--retry-max",
                "2",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(fs::File::create(root.join("agent.stderr")).unwrap())
        .spawn()
        .unwrap();
    let lines = lines_of(daemon.stdout.take().unwrap());
    let started = Instant::now();
    wait_for_line(
        &lines,
        &format!("{a} has not answered for 3 s; checking in with {b}"),
    );
    let failed_over = started.elapsed();
    assert!(failed_over >= Duration::from_secs(3), "{failed_over:?}");
    wait_until("a check-in with B", || {
        let status = phone.status();
        status["progress"]["upstream"] == b.as_str()
            && status["progress"]["last_error"].is_null()
            && status["progress"]["next_checkin"].is_string()
    });
    assert_eq!(
        phone.status()["progress"]["upstreams"],
        json!([a.clone(), b.clone()])
    );
    let status_text = agent()
        .args(["status", "--state-dir"])
        .arg(&phone.state)
        .output()
        .unwrap();
    assert!(
        stdout(&status_text).contains(&format!(
            "upstream:      {b} (failed over; the preferred one is probed); also {a}"
        )),
        "{}",
        text(&status_text)
    );

    // A answers again (and B, the same center, no longer): the agent goes back to A — by its
    // probe of the preferred upstream when that comes first, else by failing over from B.
    // (The probe while B still answers is `upstreams.rs`'s unit tests' part.)
    center.stop();
    center.spec.listen = Some(a_listen);
    center.url = a.clone();
    center.spawn();
    let checked_in_before = phone.status()["progress"]["last_checkin"].clone();
    let probed_back = format!("{a} answers again; checking in with it instead of {b}");
    let failed_back = format!("{b} has not answered for 3 s; checking in with {a}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).unwrap_or_else(|_| {
            panic!(
                "the agent did not go back to {a}; its stderr:\n{}",
                fs::read_to_string(root.join("agent.stderr")).unwrap_or_default()
            )
        });
        if line.contains(&probed_back) || line.contains(&failed_back) {
            break;
        }
    }
    wait_until("a check-in with A", || {
        let status = phone.status();
        status["progress"]["upstream"] == a.as_str()
            && status["progress"]["last_checkin"] != checked_in_before
            && status["progress"]["last_error"].is_null()
    });
    // A stop signal ends it: cleanly while it sleeps, by the signal's default action while it
    // works (its state is crash-safe either way).
    let pid = daemon.id();
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = daemon.wait().unwrap();
    assert!(
        status.code() == Some(0) || status.signal() == Some(15),
        "{status:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The network map.

/// The agent reports its interfaces; when DHCP moves an address the center keeps both, the
/// old one as history; an unchanged set is not sent again; the terminal stays in Unknown.
#[test]
fn the_network_map_shows_where_a_terminal_has_been() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let center = Center::start(&root.join("center"), 3600);
    let token = center.enrolment_token();
    let interfaces = root.join("interfaces.json");
    let report = |addresses: &[&str]| {
        fs::write(
            &interfaces,
            json!([
                {"name": "eth0", "mac": "52:54:00:12:34:56", "addresses": addresses},
                {"name": "wlan0", "mac": null, "addresses": []},
            ])
            .to_string(),
        )
        .unwrap();
    };
    let phone = Terminal::new(root, "47n", "user-n");
    let file = interfaces.to_str().unwrap();
    report(&["192.0.2.10", "2001:db8::10"]);
    assert_exit(
        &phone.once(&center, &token, &["--interfaces-file", file]),
        0,
    );
    let detail = center.detail("47n");
    assert_eq!(detail.summary.group, "unknown");
    let rows = |detail: &TerminalDetail| -> Vec<(String, Option<String>, bool, String)> {
        detail
            .interfaces
            .iter()
            .map(|i| {
                (
                    i.name.clone(),
                    i.address.clone(),
                    i.current,
                    i.first_seen.clone(),
                )
            })
            .collect()
    };
    let first = rows(&detail);
    assert_eq!(first.len(), 3, "{first:?}");
    assert!(first.iter().all(|(_, _, current, _)| *current));
    assert_eq!(
        detail.interfaces[0].mac.as_deref(),
        Some("52:54:00:12:34:56")
    );
    let reported = phone.status()["progress"]["interfaces_reported"].clone();
    assert!(reported.is_string(), "{reported}");

    // Unchanged: not sent again (the stored rows keep their last_seen).
    std::thread::sleep(Duration::from_millis(1100));
    assert_exit(
        &phone.once(&center, &token, &["--interfaces-file", file]),
        0,
    );
    let again = center.detail("47n");
    assert_eq!(
        again
            .interfaces
            .iter()
            .map(|i| i.last_seen.clone())
            .collect::<Vec<_>>(),
        detail
            .interfaces
            .iter()
            .map(|i| i.last_seen.clone())
            .collect::<Vec<_>>()
    );

    // DHCP moves eth0's IPv4 address: both rows show, the old one no longer current.
    std::thread::sleep(Duration::from_millis(1100));
    report(&["192.0.2.99", "2001:db8::10"]);
    assert_exit(
        &phone.once(&center, &token, &["--interfaces-file", file]),
        0,
    );
    let moved = center.detail("47n");
    let now: Vec<_> = rows(&moved)
        .into_iter()
        .map(|(name, address, current, _)| (name, address, current))
        .collect();
    assert_eq!(
        now,
        vec![
            ("eth0".to_owned(), Some("192.0.2.99".to_owned()), true),
            ("eth0".to_owned(), Some("2001:db8::10".to_owned()), true),
            ("wlan0".to_owned(), None, true),
            ("eth0".to_owned(), Some("192.0.2.10".to_owned()), false),
        ]
    );
    assert_ne!(phone.status()["progress"]["interfaces_reported"], reported);
    assert_eq!(moved.summary.group, "unknown");
}

/// A fresh PostgreSQL schema for this test (through `psql`), as a database URL whose
/// connections use it; `None` without `HERD_TEST_POSTGRES_URL` or `psql`.
fn postgres_schema(prefix: &str) -> Option<String> {
    let base = std::env::var("HERD_TEST_POSTGRES_URL").ok()?;
    let schema = format!("{prefix}_{}", std::process::id());
    let status = Command::new("psql")
        .arg(&base)
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-c"])
        .arg(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .status()
        .ok()?;
    assert!(status.success(), "psql could not make schema {schema}");
    let separator = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{separator}options=-csearch_path%3D{schema}"))
}

impl Center {
    /// A center process on a shared PostgreSQL database (`url`), with the shared blob
    /// directory and key-encryption key several processes of one database need.
    fn start_on_postgres(data_dir: &Path, url: &str, blobs: &Path) -> Center {
        Center::launch(data_dir, |spec| {
            spec.args([
                "--checkin-interval",
                "3600",
                "--database",
                url,
                "--blob-dir",
            ])
            .arg(blobs)
            .env("HERD_CA_KEK", Some("the fleet's key-encryption key"))
        })
    }
}

/// Failover with the preferred upstream's return seen by the probe while the other still
/// answers: two center processes on one PostgreSQL database (so both accept the terminal),
/// A stopped (the agent moves to B), A started again (the agent's probe finds it and it goes
/// back, B still up).
#[test]
fn a_probe_brings_the_agent_back_to_its_preferred_upstream() {
    let Some(url) = postgres_schema("herd_agent_failover") else {
        eprintln!("skipped: HERD_TEST_POSTGRES_URL is not set (or psql is missing)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let blobs = root.join("blobs");
    let mut a = Center::start_on_postgres(&root.join("a"), &url, &blobs);
    let b = Center::start_on_postgres(&root.join("b"), &url, &blobs);
    let token = a.enrolment_token();
    let phone = Terminal::new(root, "47g", "user-g");
    assert_exit(&phone.once(&a, &token, &[]), 0);
    let (a_url, b_url) = (a.url.clone(), b.url.clone());
    a.stop();
    let mut daemon = phone
        .run_command(
            &b,
            &token,
            &[
                "--upstream",
                &a_url,
                "--upstream",
                &b_url,
                "--failover-after",
                "2",
                "--probe-preferred-every",
                "2",
                "--retry-min",
                "1",
                "--retry-max",
                "1",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = lines_of(daemon.stdout.take().unwrap());
    wait_for_line(
        &lines,
        &format!("{a_url} has not answered for 2 s; checking in with {b_url}"),
    );
    wait_until("a check-in with B and a push connection to it", || {
        let status = phone.status();
        status["progress"]["upstream"] == b_url.as_str()
            && status["progress"]["last_error"].is_null()
            && status["progress"]["push"]
                .as_str()
                .is_some_and(|p| p.contains(&format!("push connection to {b_url}")))
    });
    a.spawn();
    wait_for_line(
        &lines,
        &format!("{a_url} answers again; checking in with it instead of {b_url}"),
    );
    wait_until(
        "a check-in with A and the push connection following",
        || {
            let status = phone.status();
            status["progress"]["upstream"] == a_url.as_str()
                && status["progress"]["last_error"].is_null()
                && status["progress"]["push"]
                    .as_str()
                    .is_some_and(|p| p.contains(&format!("push connection to {a_url}")))
        },
    );
    let pid = daemon.id();
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = daemon.wait().unwrap();
    assert!(
        status.code() == Some(0) || status.signal() == Some(15),
        "{status:?}"
    );
    drop(b);
}

#[test]
fn an_agent_shows_its_operators_messages_and_sends_its_users_answer_through_the_outbox() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let center = Center::start(&root.join("center"), 3600);
    let token = center.enrolment_token();
    let phone = Terminal::new(root, "47m", "user-m");
    assert_exit(&phone.once(&center, &token, &[]), 0);
    let operator = center.operator();
    let send = |to: &str, text: &str| {
        operator
            .send_message(&herd_proto::messages::MessageToSend {
                to: to.into(),
                text: text.into(),
            })
            .unwrap()
    };
    send("all", "Maintenance at 22:00");
    let to_phone = send("terminal:47m", "Your phone has an infected file");
    // The next cycle shows them (a notice; notify-send where there is one) and keeps them.
    let run = phone.once(&center, &token, &[]);
    assert_exit(&run, 0);
    let notices = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(
        notices.contains("message 2 from the operators")
            && notices.contains("Your phone has an infected file"),
        "{notices}"
    );
    let shown = agent()
        .args(["messages", "--state-dir"])
        .arg(&phone.state)
        .output()
        .unwrap();
    assert_exit(&shown, 0);
    let shown = stdout(&shown);
    assert!(shown.contains("Maintenance at 22:00"), "{shown}");
    assert!(shown.contains("Your phone has an infected file"), "{shown}");
    let status = phone.status();
    assert_eq!(status["messages"].as_array().unwrap().len(), 2, "{status}");
    // Not shown again at the next cycle.
    let again = phone.once(&center, &token, &[]);
    assert!(!String::from_utf8_lossy(&again.stderr).contains("from the operators"));

    // The user's answer waits in the outbox, then reaches the terminal's thread.
    let answer = agent()
        .args(["message", "--state-dir"])
        .arg(&phone.state)
        .args(["--reply-to", &to_phone.id.to_string(), "Removed it, thanks"])
        .output()
        .unwrap();
    assert_exit(&answer, 0);
    assert!(stdout(&answer).contains("queued"), "{}", text(&answer));
    assert_exit(&phone.once(&center, &token, &[]), 0);
    let thread = operator.messages(0, 100, Some("47m"), None).unwrap();
    let last = thread.messages.last().unwrap();
    assert_eq!(last.from, "terminal:47m");
    assert_eq!(last.text, "Removed it, thanks");
    assert_eq!(last.reply_to, Some(to_phone.id));
    // An empty message is refused before it is queued.
    let empty = agent()
        .args(["message", "--state-dir"])
        .arg(&phone.state)
        .arg(" ")
        .output()
        .unwrap();
    assert_exit(&empty, 2);
    assert!(
        text(&empty).contains("1 to 4096 characters"),
        "{}",
        text(&empty)
    );
}

// ---------------------------------------------------------------------------------------------
// Consent by e-mail.

/// aiosmtpd with STARTTLS required: each message's recipients and decoded text body are
/// appended to `out`, then a line `.` (the e-mail's MIME encoding undone, so links are whole).
const SMTP_SERVER: &str = r#"
import email, email.policy, ssl, sys
from aiosmtpd.controller import Controller
cert, key, out, port = sys.argv[1:5]
context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)
class Handler:
    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with open(out, "a") as f:
            f.write("RCPT TO " + ",".join(envelope.rcpt_tos) + "\n")
            f.write("Subject: " + str(message["subject"]) + "\n")
            f.write(message.get_body().get_content() + "\n.\n")
        return "250 OK"
controller = Controller(Handler(), hostname="127.0.0.1", port=int(port),
                        tls_context=context, require_starttls=True)
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
"#;

/// A real SMTP server on loopback (stopped when dropped) and the file it writes mail to.
struct SmtpServer {
    process: std::process::Child,
    out: PathBuf,
    port: u16,
    ca_file: PathBuf,
}

impl SmtpServer {
    fn start(python: &str, dir: &Path) -> SmtpServer {
        fs::create_dir_all(dir).unwrap();
        let (ca_cert, ca_key) = herd_tls::CertificateAuthority::generate("smtp test CA").unwrap();
        let ca = herd_tls::CertificateAuthority::from_pem(&ca_cert, &ca_key).unwrap();
        let server = ca.issue_server(&["127.0.0.1".to_owned()]).unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            fs::write(&path, text).unwrap();
            path
        };
        let cert = write("smtp.pem", &server.cert_pem);
        let key = write("smtp.key", &server.key_pem);
        let ca_file = write("ca.pem", &ca_cert);
        let script = write("smtp.py", SMTP_SERVER);
        let out = dir.join("mail.txt");
        let port = free_port().unwrap();
        let mut process = Command::new(python)
            .arg(&script)
            .args([&cert, &key, &out])
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(process.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "aiosmtpd did not start");
        SmtpServer {
            process,
            out,
            port,
            ca_file,
        }
    }

    /// Every mail received so far: (recipients, subject line and body).
    fn mails(&self) -> Vec<(String, String)> {
        let text = fs::read_to_string(&self.out).unwrap_or_default();
        text.split("\n.\n")
            .filter(|m| m.starts_with("RCPT TO "))
            .map(|m| {
                let (to, rest) = m["RCPT TO ".len()..].split_once('\n').unwrap();
                (to.to_owned(), rest.to_owned())
            })
            .collect()
    }

    /// The latest mail to `to` that says `about`, once it arrived.
    fn mail_to(&self, to: &str, about: &str) -> String {
        let mut found = None;
        wait_until(&format!("a mail to {to} about {about}"), || {
            found = self
                .mails()
                .into_iter()
                .rev()
                .find(|(rcpt, mail)| rcpt == to && mail.contains(about));
            found.is_some()
        });
        found.unwrap().1
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        drop(self.process.stdin.take());
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A child process killed if the test ends early (a failed assertion), so no agent outlives it.
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The accept and decline links of a consent mail, pointed at the center's loopback address.
fn consent_links(mail: &str, center: &Center) -> (String, String) {
    let links: Vec<String> = mail
        .split_whitespace()
        .filter(|word| word.contains("/consent/"))
        .map(|url| {
            let path = &url[url.find("/consent/").unwrap()..];
            format!("{}{path}", center.url)
        })
        .collect();
    assert_eq!(links.len(), 2, "{mail}");
    (links[0].clone(), links[1].clone())
}

/// A browser's request: HTTPS trusting the center's CA, no client certificate.
fn browse(center: &Center, method: &'static str, url: &str) -> (u16, String) {
    let client =
        herd_client::web::WebClient::new(Some(&fs::read_to_string(center.ca()).unwrap())).unwrap();
    let answer = client
        .send(&herd_client::web::WebRequest {
            method,
            url,
            headers: vec![],
            body: vec![],
            max_answer_bytes: 1 << 20,
            timeout: Duration::from_secs(30),
        })
        .unwrap();
    (answer.status, String::from_utf8(answer.body).unwrap())
}

/// Consent by e-mail (SPEC §3.1.6, seed 002 ¶0080): a plan that asks for consent is mailed to
/// the terminal's user through a real SMTP server; following the accept link once (open, then
/// confirm) lets the agent carry the plan out at its next check-in, a running agent at once
/// (pushed); decline works the same way; a reused, forged or expired link is refused with a
/// page that says so; an answer on the device first wins over the e-mail's.
#[test]
fn consent_by_e_mail_answers_once_and_reaches_the_agent() {
    let Ok(python) = std::env::var("HERD_TEST_SMTP_PYTHON") else {
        eprintln!("skipped: HERD_TEST_SMTP_PYTHON does not name a python with aiosmtpd");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let smtp = SmtpServer::start(&python, &root.join("smtp"));
    let link_secs = 20;
    let config = root.join("center.toml");
    fs::write(
        &config,
        format!(
            r#"
[alerts]
consent_channel = "mail"
consent_link_secs = {link_secs}
[[alerts.channels]]
name = "mail"
type = "email"
smtp_host = "127.0.0.1"
smtp_port = {}
from = "herd@example.org"
to = ["unused@example.org"]
ca_file = {:?}
"#,
            smtp.port,
            smtp.ca_file.display().to_string()
        ),
    )
    .unwrap();
    let center = Center::launch(&root.join("center"), |spec| {
        spec.arg("--checkin-interval")
            .arg("3600")
            .arg("--config")
            .arg(&config)
    });
    let token = center.enrolment_token();
    let a51 = package(root, "vaccine-a", "5.1", 1101, false);
    let b70 = package(root, "vaccine-b", "7.0", 1112, true);
    center.group(
        "ask",
        json!({"apply": "latest-any-vendor", "consent": "ask"}),
    );
    let ids = ["48e", "48f", "48g", "48h", "48i"];
    let users: Vec<(String, String)> = ids
        .iter()
        .map(|id| (format!("user-{id}"), "ask".to_owned()))
        .collect();
    let rules: Vec<(&str, &str)> = users
        .iter()
        .map(|(u, g)| (u.as_str(), g.as_str()))
        .collect();
    center.rules(&rules);
    let terminals: Vec<Terminal> = ids
        .iter()
        .zip(["user-48e", "user-48f", "user-48g", "user-48h", "user-48i"])
        .map(|(id, user)| Terminal::new(root, id, user))
        .collect();
    let [accepts, declines, on_device, pushed, expires] = &terminals[..] else {
        unreachable!()
    };
    // Enrolled with nothing to do; then each user gets an address.
    let operator = center.operator();
    for terminal in &terminals {
        if terminal.id != "48h" {
            assert_exit(&terminal.once(&center, &token, &[]), 0);
        }
    }
    let mut daemon = KilledOnDrop(
        pushed
            .run_command(&center, &token, &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let lines = lines_of(daemon.0.stdout.take().unwrap());
    wait_until("the running agent to enrol", || {
        center
            .operator()
            .terminal("48h")
            .is_ok_and(|d| d.summary.last_checkin.is_some())
    });
    for terminal in &terminals {
        operator
            .set_terminal_email(terminal.id, Some(&format!("{}@example.org", terminal.user)))
            .unwrap();
    }
    // An address that is none is refused, naming the field; so is an unknown terminal.
    let err = operator
        .set_terminal_email("48e", Some("not an address"))
        .unwrap_err();
    assert!(err.to_string().contains("$.email"), "{err}");
    assert_eq!(
        operator
            .set_terminal_email("nobody", Some("a@example.org"))
            .unwrap_err()
            .status(),
        Some(404)
    );

    // A switch to vaccine-b needs consent: every terminal asks, every user gets a mail.
    center.publish(
        "maker-a",
        &feed_a(&[(&a51, "2000-11-01T00:00:00Z")]),
        &[&a51],
    );
    center.publish("maker-b", &feed_b(&b70), &[&b70]);
    for terminal in [accepts, declines, on_device, expires] {
        let output = terminal.once(&center, &token, &[]);
        assert_exit(&output, 0);
        assert!(
            stdout(&output).contains("NOTICE: your operator wants to install vaccine-b 7.0"),
            "{}",
            text(&output)
        );
    }
    wait_for_line(
        &lines,
        "NOTICE: your operator wants to install vaccine-b 7.0",
    );
    let mail = smtp.mail_to("user-48e@example.org", "vaccine-b");
    assert!(
        mail.contains("Subject: [herd] consent: install vaccine-b 7.0 on terminal 48e"),
        "{mail}"
    );
    assert!(
        mail.contains("Your operator wants to install vaccine-b 7.0 on terminal 48e"),
        "{mail}"
    );
    let (accept, decline) = consent_links(&mail, &center);
    assert!(
        accept.contains("-a-") && decline.contains("-d-"),
        "{accept} {decline}"
    );

    // Opening the link asks to confirm and answers nothing; confirming answers once.
    let (status, page) = browse(&center, "GET", &accept);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Accept this change"), "{page}");
    assert!(page.contains("install vaccine-b 7.0"), "{page}");
    assert_eq!(accepts.status()["consent"]["decision"], Value::Null);
    let (status, page) = browse(&center, "POST", &accept);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Accepted"), "{page}");
    // Reused, or the other link after it: refused, nothing changes.
    for link in [&accept, &decline] {
        for method in ["GET", "POST"] {
            let (status, page) = browse(&center, method, link);
            assert_eq!(status, 409, "{method} {link}: {page}");
            assert!(
                page.contains("already answered: accepted with a link of the e-mail"),
                "{page}"
            );
        }
    }
    // Forged: another request, another answer, a later expiry, a changed MAC.
    let tail = accept.rsplit('/').next().unwrap().to_owned();
    let parts: Vec<&str> = tail.split('-').collect();
    let expiry: i64 = parts[2].parse().unwrap();
    let mac = parts[3];
    let flipped = format!(
        "{}{}",
        &mac[..63],
        if mac.ends_with('0') { '1' } else { '0' }
    );
    for forged in [
        format!("{}-a-{expiry}-{mac}", parts[0].parse::<u64>().unwrap() + 1),
        format!("{}-d-{expiry}-{mac}", parts[0]),
        format!("{}-a-{}-{mac}", parts[0], expiry + 3600),
        format!("{}-a-{expiry}-{flipped}", parts[0]),
        "garbage".to_owned(),
    ] {
        let url = format!("{}/consent/{forged}", center.url);
        for method in ["GET", "POST"] {
            let (status, page) = browse(&center, method, &url);
            assert_eq!(status, 403, "{method} {forged}: {page}");
            assert!(page.contains("This link is not valid"), "{page}");
            assert!(page.contains("nothing was recorded"), "{page}");
        }
    }
    // The agent carries the plan out at its next check-in, and says the user answered by mail.
    let output = accepts.once(&center, &token, &[]);
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("the user accepted by email to install vaccine-b 7.0"),
        "{}",
        text(&output)
    );
    assert_eq!(accepts.active().as_deref(), Some("products/vaccine-b/7.0"));
    assert_eq!(
        last_outcome(&center.detail("48e")),
        Some(ReportOutcome::Succeeded)
    );
    let consents = operator.terminal_consents("48e").unwrap().requests;
    assert_eq!(consents.len(), 1, "{consents:?}");
    assert_eq!(
        consents[0].decision,
        Some(herd_proto::consent::ConsentDecision::Accepted)
    );
    assert_eq!(consents[0].by.as_deref(), Some("email"));
    assert_eq!(consents[0].email, "user-48e@example.org");

    // Declined by e-mail: the agent reports it and installs nothing.
    let (_, decline) = consent_links(&smtp.mail_to("user-48f@example.org", "vaccine-b"), &center);
    let (status, page) = browse(&center, "POST", &decline);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Declined"), "{page}");
    let output = declines.once(&center, &token, &[]);
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("declined: the user declined to install vaccine-b 7.0"),
        "{}",
        text(&output)
    );
    assert_eq!(declines.active(), None);
    assert_eq!(
        last_outcome(&center.detail("48f")),
        Some(ReportOutcome::Declined)
    );

    // Answered on the device first: that answer wins, and the e-mail's link says so.
    let (accept_g, _) = consent_links(&smtp.mail_to("user-48g@example.org", "vaccine-b"), &center);
    assert_exit(&on_device.consent("accept"), 0);
    assert_exit(&on_device.once(&center, &token, &[]), 0);
    assert_eq!(
        on_device.active().as_deref(),
        Some("products/vaccine-b/7.0")
    );
    let (status, page) = browse(&center, "POST", &accept_g);
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("accepted on the terminal"), "{page}");
    let consents = operator.terminal_consents("48g").unwrap().requests;
    assert_eq!(consents[0].by.as_deref(), Some("device"));

    // A running agent holding its push connection acts at once, not at its next check-in an
    // hour away.
    let (accept_h, _) = consent_links(
        &smtp.mail_to("user-48h@example.org", "install vaccine-b"),
        &center,
    );
    wait_until("the running agent to wait for consent", || {
        pushed.status()["progress"]["plan"]["waiting"] == "consent"
    });
    let answered = Instant::now();
    assert_eq!(browse(&center, "POST", &accept_h).0, 200);
    wait_for_line(&lines, "succeeded: vaccine-b 7.0 (b-1112) is active");
    eprintln!(
        "a running agent carried out a plan {:.1} s after its user accepted by e-mail",
        answered.elapsed().as_secs_f64()
    );
    assert!(answered.elapsed() < Duration::from_secs(60));
    assert_eq!(pushed.active().as_deref(), Some("products/vaccine-b/7.0"));
    Command::new("kill")
        .args(["-TERM", &daemon.0.id().to_string()])
        .status()
        .unwrap();
    daemon.0.wait().unwrap();

    // Expired: refused, nothing recorded; the device can still answer.
    let (accept_i, _) = consent_links(&smtp.mail_to("user-48i@example.org", "vaccine-b"), &center);
    let expiry: i64 = accept_i
        .rsplit('/')
        .next()
        .unwrap()
        .split('-')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    assert!(expiry - now() <= link_secs);
    while now() < expiry {
        std::thread::sleep(Duration::from_millis(250));
    }
    for method in ["GET", "POST"] {
        let (status, page) = browse(&center, method, &accept_i);
        assert_eq!(status, 410, "{page}");
        assert!(page.contains("This link has expired"), "{page}");
        assert!(page.contains("nothing was recorded"), "{page}");
    }
    assert_eq!(
        operator.terminal_consents("48i").unwrap().requests[0].decision,
        None
    );
    assert_exit(&expires.once(&center, &token, &[]), 0);
    assert_eq!(expires.active(), None);
    // One mail per plan, however often an agent asked: the terminals that ran once per step
    // got one each (the running agent also got one for the plan it had between the two
    // vendors' publications, which needs its own consent).
    for user in ["user-48e", "user-48f", "user-48g", "user-48i"] {
        let to = format!("{user}@example.org");
        let mails = smtp.mails();
        assert_eq!(
            mails.iter().filter(|(rcpt, _)| *rcpt == to).count(),
            1,
            "{mails:?}"
        );
    }
}

/// "Have you got this sample" (seed 001 S104–S106): the second terminal that submits a file
/// the center already has asks first and sends only a report, so the bytes cross the network
/// once (counted at the center).
#[test]
fn a_sample_the_center_has_is_not_uploaded_again_by_another_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let center = Center::start(&root.join("center"), 3600);
    let token = center.enrolment_token();
    let first = Terminal::new(root, "49a", "user-a");
    let second = Terminal::new(root, "49b", "user-b");
    let file = root.join("invoice.pdf.exe");
    let content = format!("MZ a strange program {}\n", "x".repeat(3000));
    fs::write(&file, &content).unwrap();
    let submit = |terminal: &Terminal| {
        let out = agent()
            .args(["submit", "--state-dir"])
            .arg(&terminal.state)
            .arg(&file)
            .output()
            .unwrap();
        assert_exit(&out, 0);
    };
    for terminal in [&first, &second] {
        assert_exit(&terminal.once(&center, &token, &[]), 0);
    }
    submit(&first);
    assert_exit(&first.once(&center, &token, &[]), 0);
    assert_eq!(center.metric("herd_samples_uploaded_total"), 1);
    assert_eq!(
        center.metric("herd_sample_bytes_uploaded_total"),
        content.len() as u64
    );
    submit(&second);
    assert_exit(&second.once(&center, &token, &[]), 0);
    assert_eq!(center.metric("herd_samples_uploaded_total"), 1, "not again");
    assert_eq!(
        center.metric("herd_sample_bytes_uploaded_total"),
        content.len() as u64
    );
    assert_eq!(center.metric("herd_samples_held_already_total"), 1);
    let samples = center.operator().samples().unwrap();
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].first_terminal, "49a");
    // Asking is a terminal's right only, with a well-formed digest.
    let identity = identity_of(&second.state);
    let client = terminal_client(&center, &identity);
    let sha = sha256_hex(content.as_bytes());
    assert!(client.sample_held(&sha).unwrap().held);
    assert!(!client.sample_held(&"0".repeat(64)).unwrap().held);
    assert_eq!(
        client.sample_held("not-a-digest").unwrap_err().status(),
        Some(400)
    );
}
