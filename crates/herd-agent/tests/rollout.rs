//! The content-update crash scenario with real agents (SPEC §8 Safety, issue 14): a real
//! `herd serve` with rollout rings, real packages, and real `herd-agent run --once` processes.
//!
//! - a definitions release whose verify fails (its definitions do not load what its test
//!   pattern needs, as an engine that cannot load them) reaches the canary ring only, every
//!   canary agent rolls it back and reports it, the center halts and withdraws it, and the
//!   agents outside the ring never receive it;
//! - a release that installed on the canary ring and is then reverted (by an operator here;
//!   the fault hook is the automatic path) is planned back on every canary agent, which
//!   carries the plan out at its next check-in: the previous version active again and the
//!   withdrawn one removed;
//! - a release that installs and verifies but whose engine crashes on loading its definitions
//!   (a real `herd-agent supervise` running it) is undone by the agent itself: the previous
//!   version restored without the center, the release declined when offered again, the
//!   center told why (a failed install of its rollout), and the next release taken again.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use herd_client::Client;
use herd_lab::harness::{CenterProcess, CenterSpec};
use herd_package::{BuiltPackage, PackageSpec};
use herd_planner::rings::ring_bucket;
use herd_proto::api::{NewEnrolmentToken, RolloutSummary};
use serde_json::{Value, json};

/// The canary ring's reach (basis points) in the center's configuration below.
const CANARY: u32 = 3000;
const AGENTS_PER_SIDE: usize = 3;
/// The center's check-in interval: a reverted release must be gone from every canary agent
/// within one.
const CHECKIN_INTERVAL_SECS: u64 = 60;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_herd-agent"))
}

/// The `herd` binary beside this package's agent (`cargo test --workspace` or
/// `cargo build -p herd-server --bin herd` builds it), or `$HERD_BIN`.
fn herd_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("HERD_BIN") {
        return PathBuf::from(path);
    }
    let path = Path::new(env!("CARGO_BIN_EXE_herd-agent"))
        .parent()
        .expect("a directory")
        .join("herd");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p herd-server --bin herd`",
        path.display()
    );
    path
}

struct Package {
    path: PathBuf,
    built: BuiltPackage,
}

/// vaccine-r `version` for phones; a `broken` one's definitions do not detect its own test
/// pattern, so the agent's verify step fails after installing it beside the old one.
fn package(root: &Path, version: &str, seq: u64, broken: bool) -> Package {
    package_with(root, version, seq, broken, false)
}

/// The signature name the engine of [`ENGINE`] crashes on when it loads it.
const CRASHES_ENGINE: &str = "vaccine-r.Engine.CrashOnLoad";

/// As [`package`]; with `crashing`, the definitions also carry [`CRASHES_ENGINE`]: they
/// detect their test pattern (the install verifies), but the engine crashes on loading them.
fn package_with(root: &Path, version: &str, seq: u64, broken: bool, crashing: bool) -> Package {
    let src = root.join("src").join(version);
    fs::create_dir_all(&src).unwrap();
    let hex = |text: &str| -> String { text.bytes().map(|b| format!("{b:02x}")).collect() };
    let own = format!("HERD-TEST-PATTERN-vaccine-r-{version}");
    let detected = if broken {
        "SOMETHING-ELSE"
    } else {
        own.as_str()
    };
    let definitions = src.join(format!("r-{version}.ndb"));
    let mut lines = format!("vaccine-r.Test.Pattern:0:*:{}\n", hex(detected));
    if crashing {
        lines.push_str(&format!(
            "{CRASHES_ENGINE}:0:*:{}\n",
            hex("NEVER-IN-ANY-FILE")
        ));
    }
    fs::write(&definitions, lines).unwrap();
    let test_pattern = src.join("test.txt");
    fs::write(&test_pattern, format!("== {own} ==\n")).unwrap();
    let spec = PackageSpec {
        product: "vaccine-r".into(),
        vendor: "maker-r".into(),
        version: version.into(),
        seq,
        pattern: format!("r-{seq}"),
        definitions: vec![definitions],
        test_pattern,
        post_install: None,
        pre_uninstall: None,
        platforms: vec!["phone".into()],
    };
    let path = root.join(format!("vaccine-r-{version}.tar.gz"));
    let built = herd_package::build(&spec, &path).unwrap();
    Package { path, built }
}

fn feed(releases: &[&Package]) -> Value {
    let releases: Vec<Value> = releases
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let m = &p.built.manifest;
            json!({"product": "vaccine-r", "version": m.version, "pattern": m.pattern,
                   "seq": m.seq, "published": format!("2000-11-0{}T00:00:00Z", i + 1),
                   "packages": p.built.catalog_packages})
        })
        .collect();
    json!({
        "format": "herd.catalog/v1",
        "vendors": [{"id": "maker-r", "name": "Maker R"}],
        "products": [{"id": "vaccine-r", "vendor": "maker-r", "name": "Vaccine r", "platforms": ["phone"]}],
        "releases": releases, "threats": [], "coverage": []
    })
}

struct Center {
    _process: CenterProcess,
    url: String,
    data_dir: PathBuf,
}

impl Center {
    fn start(root: &Path) -> Center {
        Center::start_with(root, 2)
    }

    /// With `max_bad` failures or faults halting a rollout.
    fn start_with(root: &Path, max_bad: u64) -> Center {
        let data_dir = root.join("center");
        let config = root.join("center.toml");
        fs::write(
            &config,
            format!(
                "rollout_rings = \"canary=30%/1s/1000, broad=100%/0s/0\"\n\
                 rollout_max_bad = {max_bad}\nrollout_check_secs = 1\n"
            ),
        )
        .unwrap();
        let spec = CenterSpec::new(&herd_binary(), &data_dir)
            .log(&root.join("center.log"))
            .arg("--config")
            .arg(config.to_str().unwrap())
            .arg("--checkin-interval")
            .arg(CHECKIN_INTERVAL_SECS.to_string())
            .env("RUST_LOG", Some("warn"));
        let process = CenterProcess::start(&spec).expect("herd serve starts");
        Center {
            url: process.url.clone(),
            _process: process,
            data_dir,
        }
    }

    fn operator(&self) -> Client {
        herd_tls::install_crypto_provider();
        let token = fs::read_to_string(self.data_dir.join("operator.token")).unwrap();
        let ca = fs::read_to_string(self.data_dir.join("ca.pem")).unwrap();
        Client::new(&self.url, &ca, None)
            .unwrap()
            .with_token(token.trim())
    }

    fn publish(&self, releases: &[&Package], new: &Package) {
        let operator = self.operator();
        operator
            .publish_feed("maker-r", feed(releases).to_string().as_bytes())
            .unwrap();
        operator.upload_package(&new.path).unwrap();
    }

    fn wait_for_phase(&self, release: &str, phase: &str) -> RolloutSummary {
        let started = Instant::now();
        loop {
            if let Ok(rollout) = self.operator().rollout(release)
                && rollout.phase == phase
            {
                return rollout;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{release} is not {phase}: {:?}",
                self.operator().rollout(release)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

struct Terminal {
    id: String,
    state: PathBuf,
}

impl Terminal {
    /// `herd-agent run --once`: enrol if needed, check in, carry out the plan, report.
    fn once(&self, center: &Center, token: &str) -> Output {
        let output = agent()
            .arg("run")
            .arg("--once")
            .arg("--server")
            .arg(&center.url)
            .arg("--ca")
            .arg(center.data_dir.join("ca.pem"))
            .arg("--state-dir")
            .arg(&self.state)
            .args(["--enrol-token", token, "--id", &self.id, "--user", "u"])
            .args(["--kind", "phone", "--platform", "phone", "--tz", "+00:00"])
            .env_remove("HERD_AGENT_FAULT")
            .output()
            .unwrap();
        assert!(
            output.status.code() == Some(0) || output.status.code() == Some(1),
            "{}: {}{}",
            self.id,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    fn active(&self) -> Option<String> {
        fs::read_link(self.state.join("prefix").join("current"))
            .ok()
            .map(|t| t.display().to_string())
    }

    fn has_version(&self, version: &str) -> bool {
        self.state
            .join("prefix/products/vaccine-r")
            .join(version)
            .exists()
    }
}

/// The agent runs `version` of vaccine-r (`out`: what its last run said, for the message).
fn assert_active(t: &Terminal, version: &str, out: &str) {
    assert_eq!(
        t.active(),
        Some(format!("products/vaccine-r/{version}")),
        "{}: {out}",
        t.id
    );
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `AGENTS_PER_SIDE` ids inside both releases' canary rings and as many outside both.
fn fleet(root: &Path, releases: &[&str]) -> (Vec<Terminal>, Vec<Terminal>) {
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    for i in 0.. {
        let id = format!("phone-{i}");
        let buckets: Vec<u32> = releases.iter().map(|r| ring_bucket(r, &id)).collect();
        let terminal = || Terminal {
            state: root.join(&id),
            id: id.clone(),
        };
        if buckets.iter().all(|&b| b < CANARY) && inside.len() < AGENTS_PER_SIDE {
            inside.push(terminal());
        } else if buckets.iter().all(|&b| b >= CANARY) && outside.len() < AGENTS_PER_SIDE {
            outside.push(terminal());
        }
        if inside.len() == AGENTS_PER_SIDE && outside.len() == AGENTS_PER_SIDE {
            break;
        }
    }
    (inside, outside)
}

#[test]
fn a_crashing_definitions_release_stops_in_its_canary_ring_and_is_undone_there() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let center = Center::start(root);
    let token = center
        .operator()
        .new_enrolment_token(&NewEnrolmentToken {
            label: "rollout".into(),
            uses: Some(20),
            ttl_secs: None,
            reenrol_terminal: None,
        })
        .unwrap()
        .token;
    let good = package(root, "1.0", 1, false);
    let next = package(root, "1.1", 2, false);
    let broken = package(root, "1.2", 3, true);
    let (canary, others) = fleet(root, &["maker-r/vaccine-r/1.1", "maker-r/vaccine-r/1.2"]);

    // 1.0, the product's first release, reaches everyone.
    center.publish(&[&good], &good);
    center.wait_for_phase("maker-r/vaccine-r/1.0", "complete");
    for t in canary.iter().chain(&others) {
        let out = stdout(&t.once(&center, &token));
        assert_active(t, "1.0", &out);
    }

    // 1.2 cannot load its definitions: the canary ring installs it, verify fails, every canary
    // agent rolls back and reports; two failures halt the rollout.
    center.publish(&[&good, &next, &broken], &broken);
    center.operator().upload_package(&next.path).unwrap();
    // 1.1 is held back while 1.2 rolls: an operator reverts it at once, so only 1.2 is offered.
    center.wait_for_phase("maker-r/vaccine-r/1.1", "rolling");
    center
        .operator()
        .rollout_act("maker-r/vaccine-r/1.1", "revert")
        .unwrap();
    let started = Instant::now();
    for t in &canary {
        let out = stdout(&t.once(&center, &token));
        assert!(out.contains("1.2"), "{}: offered 1.2: {out}", t.id);
        assert_active(t, "1.0", &out);
        assert!(
            !t.has_version("1.2"),
            "{}: the failed install is cleaned up",
            t.id
        );
    }
    let halted = center.wait_for_phase("maker-r/vaccine-r/1.2", "reverted");
    assert!(halted.failed >= 2, "{halted:?}");
    eprintln!(
        "1.2 halted {:.1} s after the first canary agent started: {halted:?}",
        started.elapsed().as_secs_f64()
    );
    for t in &others {
        let out = stdout(&t.once(&center, &token));
        assert!(
            !out.contains("1.2"),
            "{} outside the ring saw 1.2: {out}",
            t.id
        );
        assert_active(t, "1.0", "");
    }

    // 1.1 installs fine on the canary ring once resumed; reverted, each canary agent goes back
    // to 1.0 at its next check-in (one interval), the withdrawn version removed.
    center
        .operator()
        .rollout_act("maker-r/vaccine-r/1.1", "resume")
        .unwrap();
    for t in &canary {
        let out = stdout(&t.once(&center, &token));
        assert_active(t, "1.1", &out);
    }
    for t in &others {
        t.once(&center, &token);
        assert_active(t, "1.0", "");
    }
    center
        .operator()
        .rollout_act("maker-r/vaccine-r/1.1", "revert")
        .unwrap();
    let reverting = Instant::now();
    for t in &canary {
        let out = stdout(&t.once(&center, &token));
        assert!(out.contains("withdrawn"), "{}: {out}", t.id);
        assert_active(t, "1.0", &out);
        assert!(!t.has_version("1.1"), "{}: 1.1 removed", t.id);
    }
    assert!(
        reverting.elapsed() < Duration::from_secs(CHECKIN_INTERVAL_SECS),
        "every canary agent back within its check-in interval: {:?}",
        reverting.elapsed()
    );
}

/// The product's engine, supervised: it loads the active definitions and crashes (SIGSEGV)
/// on the ones that carry [`CRASHES_ENGINE`]; otherwise it runs.
const ENGINE: &str = "for f in \"$1\"/current/defs/*; do \
    if grep -q CrashOnLoad \"$f\"; then kill -SEGV $$; fi; done; exec sleep 600";

/// The `fault.report` events waiting in an agent's outbox: committed event files only
/// (`<seq>.json`), not the hidden temporaries of a write in progress — the supervisor is killed
/// at any moment, and a temporary it leaves behind is never an event.
/// `herd-agent status`'s text.
fn agent_status(state: &Path) -> String {
    let output = agent()
        .args(["status", "--state-dir"])
        .arg(state)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn queued_faults(state: &Path) -> usize {
    fs::read_dir(state.join("outbox"))
        .map(|dir| {
            dir.flatten()
                .filter(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    !name.starts_with('.') && name.ends_with(".json")
                })
                .filter(|e| {
                    fs::read_to_string(e.path()).is_ok_and(|t| t.contains("\"fault.report\""))
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn an_agent_undoes_a_release_whose_engine_keeps_crashing_and_refuses_it_until_another_comes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let center = Center::start_with(root, 100);
    let token = center
        .operator()
        .new_enrolment_token(&NewEnrolmentToken {
            label: "protect".into(),
            uses: Some(5),
            ttl_secs: None,
            reenrol_terminal: None,
        })
        .unwrap()
        .token;
    let good = package(root, "1.0", 1, false);
    let crashing = package_with(root, "1.1", 2, false, true);
    let next = package(root, "1.2", 3, false);
    let (canary, _) = fleet(root, &["maker-r/vaccine-r/1.1", "maker-r/vaccine-r/1.2"]);
    let t = &canary[0];

    center.publish(&[&good], &good);
    center.wait_for_phase("maker-r/vaccine-r/1.0", "complete");
    let out = stdout(&t.once(&center, &token));
    assert_active(t, "1.0", &out);

    // 1.1 verifies (its definitions detect their test pattern) and becomes active.
    center.publish(&[&good, &crashing], &crashing);
    center.wait_for_phase("maker-r/vaccine-r/1.1", "rolling");
    let out = stdout(&t.once(&center, &token));
    assert_active(t, "1.1", &out);
    assert!(!t.has_version("1.0"), "the executor removed 1.0: {out}");
    let status = agent_status(&t.state);
    assert!(
        status.contains("probation:") && status.contains("vaccine-r 1.1 since"),
        "{status}"
    );

    // Its engine, supervised, crashes on loading the definitions, again and again.
    let config = root.join("supervise.json");
    let prefix = t.state.join("prefix");
    fs::write(
        &config,
        json!({"format": "herd.supervise/v1", "programs": [{
            "name": "vaccine-r", "vendor": "maker-r", "version": "1.1",
            "command": ["/bin/sh", "-c", ENGINE, "engine", prefix.to_str().unwrap()],
            "restart": {"max": 5, "window_secs": 60, "delay_ms": 50}}]})
        .to_string(),
    )
    .unwrap();
    let mut supervisor = agent()
        .arg("supervise")
        .arg("--state-dir")
        .arg(&t.state)
        .arg("--config")
        .arg(&config)
        .args(["--tick-ms", "20"])
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(root.join("supervise.log")).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while queued_faults(&t.state) < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the engine's crashes are reported: {} queued; {}",
            queued_faults(&t.state),
            fs::read_to_string(root.join("supervise.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    supervisor.kill().unwrap();
    supervisor.wait().unwrap();

    // The next cycle undoes 1.1 before anything else, then declines it when offered again.
    let output = t.once(&center, &token);
    let out = stdout(&output);
    assert!(
        out.contains("restored vaccine-r 1.0"),
        "{out}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        out.contains("signal 11"),
        "the reason names the crashes: {out}"
    );
    assert!(out.contains("not installing vaccine-r 1.1 again"), "{out}");
    assert_active(t, "1.0", &out);
    assert!(!t.has_version("1.1"), "the failing version is removed");
    assert!(!prefix.join(".herd-kept").exists());
    // `herd-agent status` says which release it refuses and why.
    let status = agent_status(&t.state);
    assert!(!status.contains("probation:"), "{status}");
    let refused = status
        .lines()
        .find(|l| l.starts_with("refused:"))
        .unwrap_or_else(|| panic!("no refused line: {status}"));
    assert!(
        refused.contains("vaccine-r 1.1") && refused.contains("signal 11"),
        "{refused}"
    );

    // The center counts it against the release (besides the crashes themselves) and shows why.
    let rollout = center.operator().rollout("maker-r/vaccine-r/1.1").unwrap();
    assert!(rollout.failed >= 1, "{rollout:?}");
    assert!(rollout.faults >= 3, "{rollout:?}");
    let detail = center.operator().terminal(&t.id).unwrap();
    let report = detail.last_report.expect("the decline is reported");
    assert_eq!(report.outcome, herd_proto::api::ReportOutcome::Declined);
    assert!(
        report
            .message
            .as_deref()
            .unwrap_or("")
            .contains("restored vaccine-r 1.0"),
        "{report:?}"
    );

    // Offered again, still refused, and said only once per plan.
    let out = stdout(&t.once(&center, &token));
    assert!(!out.contains("not installing"), "{out}");
    assert_active(t, "1.0", &out);

    // Another release ends the refusal.
    center.publish(&[&good, &crashing, &next], &next);
    center.wait_for_phase("maker-r/vaccine-r/1.2", "rolling");
    let out = stdout(&t.once(&center, &token));
    assert_active(t, "1.2", &out);
}
