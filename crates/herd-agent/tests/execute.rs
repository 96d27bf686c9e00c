//! Plan execution end to end, with real processes and real files: packages built with
//! herd-package, plans made by the real planner from a catalog holding those packages'
//! digests, and `herd-agent apply` carrying them out — including failures injected at every
//! step (bad digest, failing hook, failing verification, the agent aborted or killed between
//! steps, a full disk). After each, the prefix must hold a verified active product, no
//! staging or part files, and the report must say what happened at each step.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use herd_core::Timestamp;
use herd_package::{BuiltPackage, Expected, PackageSpec};
use herd_planner::Planner;
use herd_proto::api::{PlanReport, ReportOutcome, StepStatus};
use herd_proto::layout;
use herd_proto::plan::{Action, PlanDoc};
use serde_json::json;

const AGENT: &str = env!("CARGO_BIN_EXE_herd-agent");

/// The body of "virus a" (SPEC §5's worked example): vaccine-b detects it, vaccine-a does not.
const VIRUS_A: &str = "VIRUS-A-BODY-0xDEADBEEF";

fn ndb(name: &str, text: &str) -> String {
    let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{name}:0:*:{hex}\n")
}

/// Deterministic bytes that do not compress (a package bigger than a small disk).
fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// How a vaccine-b package is broken (or not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum B {
    Good,
    /// Its post-install hook exits 3.
    FailingHook,
    /// Its definitions do not detect its own test pattern.
    Undetected,
    /// A 1.5 MiB test pattern: too big for a 1 MiB disk, slow to download when throttled.
    Big,
}

struct World {
    dir: tempfile::TempDir,
    a: BuiltPackage,
}

/// A source file for a package, in `<root>/src`.
fn src(root: &Path, name: &str, content: &[u8], executable: bool) -> PathBuf {
    let path = root.join("src").join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, content).unwrap();
    let mode = if executable { 0o755 } else { 0o644 };
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// Builds a package and puts it where `--packages` serves it from (`<root>/packages`).
fn build_and_publish(root: &Path, spec: &PackageSpec, name: &str) -> BuiltPackage {
    let out = root.join("src").join(name);
    let built = herd_package::build(spec, &out).unwrap();
    fs::copy(&out, root.join("packages").join(&built.sha256)).unwrap();
    built
}

/// vaccine-a 5.1: detects its own test pattern, not "virus a".
fn build_a(root: &Path) -> BuiltPackage {
    let hook = b"#!/bin/sh\necho \"vaccine-a pre-uninstall\" >> \"$HERD_PREFIX/hooks.log\"\n";
    let spec = PackageSpec {
        product: "vaccine-a".into(),
        vendor: "maker-a".into(),
        version: "5.1".into(),
        seq: 1101,
        pattern: "a-1101".into(),
        definitions: vec![src(
            root,
            "a/a-1101.ndb",
            ndb("MakerA.Test.Pattern", "HERD-TEST-PATTERN-A").as_bytes(),
            false,
        )],
        test_pattern: src(root, "a/test-a.txt", b"== HERD-TEST-PATTERN-A ==\n", false),
        post_install: None,
        pre_uninstall: Some(src(root, "a/pre-uninstall", hook, true)),
        platforms: vec!["pc".into()],
    };
    build_and_publish(root, &spec, "vaccine-a-5.1.tar.gz")
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["packages", "prefix", "state", "src"] {
            fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        // Hooks run as `nobody` (the agent runs as root here): they must be able to reach the
        // prefix, and to append to the log the tests read, which nobody else may create there.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let log = dir.path().join("prefix/hooks.log");
        fs::write(&log, "").unwrap();
        fs::set_permissions(&log, fs::Permissions::from_mode(0o666)).unwrap();
        let a = build_a(dir.path());
        World { dir, a }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn prefix(&self) -> PathBuf {
        self.path("prefix")
    }

    fn build_b(&self, kind: B) -> BuiltPackage {
        let root = self.dir.path();
        let tag = format!("{kind:?}").to_lowercase();
        let defs = match kind {
            B::Undetected => ndb("MakerB.VirusA", VIRUS_A),
            _ => ndb("MakerB.Test.Pattern", "HERD-TEST-PATTERN-B") + &ndb("MakerB.VirusA", VIRUS_A),
        };
        let mut test = b"== HERD-TEST-PATTERN-B ==\n".to_vec();
        if kind == B::Big {
            test.extend(noise(1536 << 10));
        }
        let post_install: &[u8] = match kind {
            B::FailingHook => {
                b"#!/bin/sh\necho 'vaccine-b: cannot register the service' >&2\nexit 3\n"
            }
            _ => b"#!/bin/sh\necho \"vaccine-b post-install\" >> \"$HERD_PREFIX/hooks.log\"\n",
        };
        let pre_uninstall =
            b"#!/bin/sh\necho \"vaccine-b pre-uninstall\" >> \"$HERD_PREFIX/hooks.log\"\n";
        let spec = PackageSpec {
            product: "vaccine-b".into(),
            vendor: "maker-b".into(),
            version: "7.0".into(),
            seq: 1112,
            pattern: "b-1112".into(),
            definitions: vec![src(
                root,
                &format!("b-{tag}/b-1112.ndb"),
                defs.as_bytes(),
                false,
            )],
            test_pattern: src(root, &format!("b-{tag}/test-b.bin"), &test, false),
            post_install: Some(src(
                root,
                &format!("b-{tag}/post-install"),
                post_install,
                true,
            )),
            pre_uninstall: Some(src(
                root,
                &format!("b-{tag}/pre-uninstall"),
                pre_uninstall,
                true,
            )),
            platforms: vec!["pc".into()],
        };
        build_and_publish(root, &spec, &format!("vaccine-b-7.0-{tag}.tar.gz"))
    }

    /// The catalog of SPEC §4 with these packages (and an older threat vaccine-a covers, so a
    /// terminal with nothing installed is planned onto vaccine-a before vaccine-b exists),
    /// planned by the real planner.
    fn plan(&self, b: &BuiltPackage, installed_a: bool, now: &str) -> PlanDoc {
        let catalog = json!({
            "format": "herd.catalog/v1",
            "vendors": [{"id": "maker-a", "name": "Vaccine Maker A"},
                        {"id": "maker-b", "name": "Vaccine Maker B"}],
            "products": [{"id": "vaccine-a", "vendor": "maker-a", "name": "Vaccine a", "platforms": ["pc"]},
                         {"id": "vaccine-b", "vendor": "maker-b", "name": "Vaccine b", "platforms": ["pc"]}],
            "releases": [{"product": "vaccine-a", "version": "5.1", "pattern": "a-1101", "seq": 1101,
                          "published": "2000-11-01T00:00:00Z", "packages": self.a.catalog_packages},
                         {"product": "vaccine-b", "version": "7.0", "pattern": "b-1112", "seq": 1112,
                          "published": "2000-11-12T00:00:00Z", "packages": b.catalog_packages}],
            "threats": [{"id": "virus-old", "name": "an old virus", "danger": "low", "discovered": "2000-10-01"},
                        {"id": "virus-a", "name": "virus a", "danger": "high", "discovered": "2000-11-10"}],
            "coverage": [{"product": "vaccine-a", "threat": "virus-old", "since_seq": 1101, "covered_on": "2000-11-01"},
                         {"product": "vaccine-b", "threat": "virus-old", "since_seq": 1112, "covered_on": "2000-11-12"},
                         {"product": "vaccine-a", "threat": "virus-a", "since_seq": null, "covered_on": null},
                         {"product": "vaccine-b", "threat": "virus-a", "since_seq": 1112, "covered_on": "2000-11-12"}]
        });
        let catalog = herd_proto::catalog::parse_catalog("catalog", &catalog.to_string()).unwrap();
        let installed = installed_a.then(|| {
            json!({"product": "vaccine-a", "version": "5.1", "seq": 1101, "pattern": "a-1101", "format": "archive"})
        });
        let terminal = json!({
            "id": "45a", "user": "user-a",
            "hardware": {"kind": "pc", "platform": "pc"},
            "installed": installed,
            "policy": {"apply": "latest-any-vendor", "min_danger": "low", "consent": "auto", "window": null}
        });
        let terminal =
            herd_proto::terminal::parse_terminals("terminal", &terminal.to_string(), &catalog)
                .unwrap()
                .remove(0)
                .unwrap();
        let mut planner = Planner::new(&catalog, Timestamp::parse(now).unwrap());
        planner.plan_doc(&terminal)
    }

    fn write_plan(&self, plan: &PlanDoc) -> PathBuf {
        let path = self.path("plan.json");
        fs::write(&path, serde_json::to_vec_pretty(plan).unwrap()).unwrap();
        path
    }

    fn apply_command(&self, plan: &PlanDoc, extra: &[&str]) -> Command {
        let plan_path = self.write_plan(plan);
        let mut command = Command::new(AGENT);
        command
            .arg("apply")
            .arg(&plan_path)
            .arg("--packages")
            .arg(self.path("packages"))
            .arg("--prefix")
            .arg(self.prefix())
            .arg("--state-dir")
            .arg(self.path("state"))
            .args(extra)
            .env_remove("HERD_AGENT_FAULT");
        command
    }

    fn apply(&self, plan: &PlanDoc, extra: &[&str]) -> (Output, Vec<PlanReport>) {
        let output = self.apply_command(plan, extra).output().unwrap();
        let reports = reports(&output);
        (output, reports)
    }

    fn recover(&self) -> Vec<PlanReport> {
        let output = Command::new(AGENT)
            .args(["apply", "--recover-only", "--prefix"])
            .arg(self.prefix())
            .arg("--state-dir")
            .arg(self.path("state"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        reports(&output)
    }

    /// Installs vaccine-a from nothing, as the planner plans it before vaccine-b exists.
    fn install_a(&self) {
        let b = self.build_b(B::Good);
        let plan = self.plan(&b, false, "2000-11-05T00:00:00Z");
        assert_eq!(plan.action, Action::Switch);
        assert_eq!(plan.to.as_ref().unwrap().product, "vaccine-a");
        let (output, reports) = self.apply(&plan, &[]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report = reports.last().unwrap();
        assert_eq!(report.outcome, ReportOutcome::Succeeded);
        assert_eq!(
            statuses(report),
            [
                ("fetch", StepStatus::Ok),
                ("install", StepStatus::Ok),
                ("verify", StepStatus::Ok),
                ("activate", StepStatus::Ok)
            ]
        );
        self.assert_active("vaccine-a", "5.1");
        fs::write(self.prefix().join("hooks.log"), "").unwrap();
    }

    /// `current` points at a product that verifies, and it is the one expected; nothing
    /// half-done is left behind.
    fn assert_active(&self, product: &str, version: &str) {
        let prefix = self.prefix();
        let target = fs::read_link(prefix.join("current")).unwrap();
        assert_eq!(
            target,
            PathBuf::from(format!("products/{product}/{version}"))
        );
        let (seq, pattern) = if product == "vaccine-a" {
            (1101, "a-1101")
        } else {
            (1112, "b-1112")
        };
        herd_package::verify_installed(
            &prefix.join(&target),
            &Expected {
                product,
                version,
                seq,
                pattern,
            },
        )
        .unwrap();
        let installed = herd_package::installed_product(&prefix).unwrap().unwrap();
        assert_eq!(
            (installed.product.as_str(), installed.version.as_str()),
            (product, version)
        );
        let other = if product == "vaccine-a" {
            "vaccine-b"
        } else {
            "vaccine-a"
        };
        assert!(
            !prefix.join(layout::PRODUCTS_DIR).join(other).exists(),
            "{other} left behind"
        );
        self.assert_no_leftovers(true);
    }

    fn assert_no_leftovers(&self, downloads_empty: bool) {
        let mut leftovers = Vec::new();
        for root in [self.prefix(), self.path("state")] {
            walk(&root, &mut |path| {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if name.ends_with(layout::STAGING_SUFFIX)
                    || name.ends_with(".part")
                    || name.ends_with(layout::CURRENT_NEW)
                    || name.ends_with(".tmp")
                    || herd_fs::is_temporary(path.file_name().unwrap())
                    || name == "journal.json"
                    || (downloads_empty && path.parent().unwrap().ends_with("downloads"))
                {
                    leftovers.push(path.display().to_string());
                }
            });
        }
        assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    }

    fn hooks_log(&self) -> String {
        fs::read_to_string(self.prefix().join("hooks.log")).unwrap_or_default()
    }
}

fn walk(dir: &Path, visit: &mut dyn FnMut(&Path)) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        visit(&path);
        if entry.file_type().unwrap().is_dir() {
            walk(&path, visit);
        }
    }
}

fn reports(output: &Output) -> Vec<PlanReport> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn statuses(report: &PlanReport) -> Vec<(&str, StepStatus)> {
    report
        .steps
        .iter()
        .map(|s| (s.kind.as_str(), s.status))
        .collect()
}

fn detail<'r>(report: &'r PlanReport, kind: &str) -> &'r str {
    report
        .steps
        .iter()
        .find(|s| s.kind == kind)
        .and_then(|s| s.detail.as_deref())
        .unwrap_or("")
}

/// Does `herd-agent scan` with the active product's definitions find "virus a"?
fn active_product_detects_virus_a(world: &World) -> bool {
    let sample = world.path("sample-virus-a.bin");
    fs::write(&sample, format!("MZ....{VIRUS_A}....")).unwrap();
    let status = Command::new(AGENT)
        .args(["scan", "--no-summary", "-d"])
        .arg(world.prefix().join("current/defs"))
        .arg(&sample)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    match status.code() {
        Some(0) => false,
        Some(1) => true,
        other => panic!("scan failed: {other:?}"),
    }
}

#[test]
fn the_worked_example_switch_succeeds() {
    let world = World::new();
    world.install_a();
    assert!(!active_product_detects_virus_a(&world));

    let b = world.build_b(B::Good);
    let plan = world.plan(&b, true, "2000-11-13T08:00:00Z");
    assert_eq!(plan.action, Action::Switch);
    let (output, reports) = world.apply(&plan, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(reports.len(), 1);
    let report = &reports[0];
    assert_eq!(report.outcome, ReportOutcome::Succeeded, "{report:?}");
    assert_eq!(
        statuses(report),
        [
            ("fetch", StepStatus::Ok),
            ("install", StepStatus::Ok),
            ("verify", StepStatus::Ok),
            ("activate", StepStatus::Ok),
            ("uninstall", StepStatus::Ok)
        ]
    );
    assert!(
        detail(report, "verify").contains("detected as MakerB.Test.Pattern"),
        "{report:?}"
    );
    let installed = report.installed.as_ref().unwrap();
    assert_eq!(
        (installed.product.as_str(), installed.seq),
        ("vaccine-b", 1112)
    );
    assert_eq!(
        report.message.as_deref(),
        Some("vaccine-b 7.0 (b-1112) is active; vaccine-a 5.1 removed")
    );
    world.assert_active("vaccine-b", "7.0");
    assert_eq!(
        world.hooks_log(),
        "vaccine-b post-install\nvaccine-a pre-uninstall\n"
    );
    assert!(active_product_detects_virus_a(&world));

    // The same plan again does nothing and says the same.
    let (output, again) = world.apply(&plan, &[]);
    assert!(output.status.success());
    assert_eq!(&again[0], report);
    assert_eq!(
        world.hooks_log(),
        "vaccine-b post-install\nvaccine-a pre-uninstall\n"
    );
}

#[test]
fn a_bad_digest_touches_nothing() {
    let world = World::new();
    world.install_a();
    let b = world.build_b(B::Good);
    let plan = world.plan(&b, true, "2000-11-13T08:00:00Z");
    // The source serves other bytes of the same size under the package's digest.
    let served = world.path("packages").join(&b.sha256);
    let mut bytes = fs::read(&served).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&served, bytes).unwrap();

    let (output, reports) = world.apply(&plan, &[]);
    assert_eq!(output.status.code(), Some(1));
    let report = &reports[0];
    assert_eq!(report.outcome, ReportOutcome::RolledBack);
    assert_eq!(
        statuses(report),
        [
            ("fetch", StepStatus::Failed),
            ("install", StepStatus::Skipped),
            ("verify", StepStatus::Skipped),
            ("uninstall", StepStatus::Skipped),
            ("rollback", StepStatus::Ok)
        ]
    );
    let fetch = detail(report, "fetch");
    assert!(
        fetch.contains("SHA-256") && fetch.contains(&b.sha256),
        "{fetch}"
    );
    assert!(
        detail(report, "rollback").contains("nothing had been installed"),
        "{report:?}"
    );
    assert_eq!(report.installed.as_ref().unwrap().product, "vaccine-a");
    world.assert_active("vaccine-a", "5.1");
    assert_eq!(world.hooks_log(), "");
}

#[test]
fn a_failing_post_install_hook_keeps_the_old_product() {
    let world = World::new();
    world.install_a();
    let b = world.build_b(B::FailingHook);
    let plan = world.plan(&b, true, "2000-11-13T08:00:00Z");
    let (output, reports) = world.apply(&plan, &[]);
    assert_eq!(output.status.code(), Some(1));
    let report = &reports[0];
    assert_eq!(report.outcome, ReportOutcome::RolledBack);
    assert_eq!(
        statuses(report),
        [
            ("fetch", StepStatus::Ok),
            ("install", StepStatus::Failed),
            ("verify", StepStatus::Skipped),
            ("uninstall", StepStatus::Skipped),
            ("rollback", StepStatus::Ok)
        ]
    );
    let install = detail(report, "install");
    assert!(
        install.contains("exit status: 3") && install.contains("cannot register the service"),
        "{install}"
    );
    assert!(
        report
            .message
            .as_deref()
            .unwrap()
            .contains("vaccine-a 5.1 (a-1101) is active"),
        "{report:?}"
    );
    world.assert_active("vaccine-a", "5.1");
}

#[test]
fn a_product_failing_verification_is_removed_and_the_old_one_restored() {
    let world = World::new();
    world.install_a();
    let b = world.build_b(B::Undetected);
    let plan = world.plan(&b, true, "2000-11-13T08:00:00Z");
    let (output, reports) = world.apply(&plan, &[]);
    assert_eq!(output.status.code(), Some(1));
    let report = &reports[0];
    assert_eq!(report.outcome, ReportOutcome::RolledBack);
    assert_eq!(
        statuses(report),
        [
            ("fetch", StepStatus::Ok),
            ("install", StepStatus::Undone),
            ("verify", StepStatus::Failed),
            ("uninstall", StepStatus::Skipped),
            ("rollback", StepStatus::Ok)
        ]
    );
    assert!(
        detail(report, "verify").contains("is not detected"),
        "{report:?}"
    );
    let rollback = detail(report, "rollback");
    // `current` is switched only after verification, so it never left vaccine-a.
    assert!(
        !rollback.contains("restored") && rollback.contains("products/vaccine-b/7.0 removed"),
        "{rollback}"
    );
    world.assert_active("vaccine-a", "5.1");
    // The new product's hooks both ran: installed, then undone.
    assert_eq!(
        world.hooks_log(),
        "vaccine-b post-install\nvaccine-b pre-uninstall\n"
    );
}

/// `HERD_AGENT_FAULT=abort-after:<step>` aborts right after the journal records the step;
/// the next start rolls back (before verification) or forward (after).
#[test]
fn the_agent_aborted_after_each_step_recovers_at_restart() {
    for (step, outcome, active) in [
        ("fetch", ReportOutcome::Deferred, "vaccine-a"),
        ("install", ReportOutcome::RolledBack, "vaccine-a"),
        ("verify", ReportOutcome::Succeeded, "vaccine-b"),
        ("activate", ReportOutcome::Succeeded, "vaccine-b"),
    ] {
        let world = World::new();
        world.install_a();
        let b = world.build_b(B::Good);
        let plan = world.plan(&b, true, "2000-11-13T08:00:00Z");
        let output = world
            .apply_command(&plan, &[])
            .env("HERD_AGENT_FAULT", format!("abort-after:{step}"))
            .output()
            .unwrap();
        assert_eq!(
            output.status.signal(),
            Some(6),
            "{step}: expected SIGABRT: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.stdout.is_empty(),
            "{step}: no report before the abort"
        );
        assert!(world.path("state/journal.json").exists(), "{step}");

        let recovered = world.recover();
        assert_eq!(recovered.len(), 1, "{step}");
        let report = &recovered[0];
        assert_eq!(report.outcome, outcome, "{step}: {report:?}");
        let version = if active == "vaccine-a" { "5.1" } else { "7.0" };
        assert_eq!(report.installed.as_ref().unwrap().product, active, "{step}");
        match step {
            "fetch" => {
                assert!(
                    report.message.as_deref().unwrap().contains("downloading"),
                    "{report:?}"
                );
                assert_eq!(statuses(report)[0], ("fetch", StepStatus::Ok));
                // The finished download is kept for the next attempt.
                world.assert_no_leftovers(false);
                assert_eq!(
                    fs::read_link(world.prefix().join("current")).unwrap(),
                    PathBuf::from("products/vaccine-a/5.1")
                );
            }
            "install" => {
                assert_eq!(
                    statuses(report),
                    [
                        ("fetch", StepStatus::Ok),
                        ("install", StepStatus::Undone),
                        ("verify", StepStatus::Skipped),
                        ("uninstall", StepStatus::Skipped),
                        ("rollback", StepStatus::Ok)
                    ]
                );
                assert!(
                    detail(report, "rollback").contains("the agent stopped during"),
                    "{report:?}"
                );
                world.assert_active(active, version);
            }
            _ => {
                assert_eq!(
                    statuses(report),
                    [
                        ("fetch", StepStatus::Ok),
                        ("install", StepStatus::Ok),
                        ("verify", StepStatus::Ok),
                        ("activate", StepStatus::Ok),
                        ("uninstall", StepStatus::Ok)
                    ],
                    "{step}"
                );
                world.assert_active(active, version);
            }
        }

        // Carrying the plan out again finishes it (or finds it finished).
        let (output, reports) = world.apply(&plan, &[]);
        assert!(
            output.status.success(),
            "{step}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let last = reports.last().unwrap();
        assert_eq!(last.outcome, ReportOutcome::Succeeded, "{step}: {last:?}");
        if step == "fetch" {
            assert!(
                detail(last, "fetch").contains("already downloaded"),
                "{last:?}"
            );
        }
        world.assert_active("vaccine-b", "7.0");
    }
}

/// A real kill -9 in the middle of a (throttled) download: the restart reports the plan as
/// not carried out yet, and the next attempt resumes the download where it stopped.
#[test]
fn a_download_killed_midway_resumes() {
    let world = World::new();
    world.install_a();
    let b = world.build_b(B::Big);
    let plan = world.plan(&b, true, "2000-11-13T08:00:00Z");
    let mut child = world
        .apply_command(&plan, &["--fetch-rate", "400000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let part = world.path(&format!("state/downloads/{}.part", b.sha256));
    let deadline = Instant::now() + Duration::from_secs(30);
    while fs::metadata(&part).map_or(0, |m| m.len()) < 100_000 {
        assert!(Instant::now() < deadline, "the download never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let kept = fs::metadata(&part).unwrap().len();
    assert!(kept > 0 && kept < b.size, "{kept} of {}", b.size);

    let (output, reports) = world.apply(&plan, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(reports.len(), 2, "the recovery's report, then the plan's");
    assert_eq!(
        reports[0].outcome,
        ReportOutcome::Deferred,
        "{:?}",
        reports[0]
    );
    assert_eq!(
        reports[1].outcome,
        ReportOutcome::Succeeded,
        "{:?}",
        reports[1]
    );
    assert!(
        detail(&reports[1], "fetch").contains("resumed at byte"),
        "{:?}",
        reports[1]
    );
    world.assert_active("vaccine-b", "7.0");
}

#[test]
fn an_interrupted_download_is_deferred_and_resumed() {
    let world = World::new();
    world.install_a();
    let b = world.build_b(B::Big);
    let plan = world.plan(&b, true, "2000-11-13T08:00:00Z");
    let (output, reports) = world.apply(&plan, &["--fetch-interrupt-after", "500000"]);
    assert_eq!(output.status.code(), Some(1));
    let report = &reports[0];
    assert_eq!(report.outcome, ReportOutcome::Deferred);
    assert!(detail(report, "fetch").contains("500000 of"), "{report:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("warning"));
    world.assert_active_unchanged_a();

    let (output, reports) = world.apply(&plan, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        detail(&reports[0], "fetch").contains("resumed at byte 500000"),
        "{reports:?}"
    );
    world.assert_active("vaccine-b", "7.0");
}

impl World {
    fn assert_active_unchanged_a(&self) {
        assert_eq!(
            fs::read_link(self.prefix().join("current")).unwrap(),
            PathBuf::from("products/vaccine-a/5.1")
        );
        assert!(!self.prefix().join("products/vaccine-b").exists());
        assert!(!self.path("state/journal.json").exists());
    }
}

/// Unmounts the small disk when the test ends, whatever happened.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A package bigger than the disk the agent downloads to: refused with a clear warning before
/// a byte is written. A real 1 MiB tmpfs when this test may mount one (root), otherwise the
/// same refusal through a free-space margin larger than the disk.
#[test]
fn a_short_disk_refuses_the_plan_with_a_clear_warning() {
    let world = World::new();
    world.install_a();
    let b = world.build_b(B::Big);
    let plan = world.plan(&b, true, "2000-11-13T08:00:00Z");
    let small = world.path("small");
    fs::create_dir_all(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&small)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let _unmount = mounted.then(|| Mount(small.clone()));
    let small_state = small.join("state");
    let margin = if mounted { "0" } else { "1000G" };
    let output = Command::new(AGENT)
        .arg("apply")
        .arg(world.write_plan(&plan))
        .arg("--packages")
        .arg(world.path("packages"))
        .arg("--prefix")
        .arg(world.prefix())
        .arg("--state-dir")
        .arg(&small_state)
        .args(["--space-margin", margin])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = &reports(&output)[0];
    assert_eq!(report.outcome, ReportOutcome::Deferred);
    let message = report.message.as_deref().unwrap();
    assert!(
        message.contains("not enough free space")
            && message.contains(&small_state.join("downloads").display().to_string())
            && message.contains(&format!("({} bytes) of packages", b.size)),
        "{message}"
    );
    assert!(
        detail(report, "fetch").contains("not enough free space"),
        "{report:?}"
    );
    assert!(
        statuses(report)
            .iter()
            .all(|(_, s)| *s == StepStatus::Skipped),
        "{report:?}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("warning: not enough free space"),
        "{stderr}"
    );
    assert_eq!(
        fs::read_dir(small_state.join("downloads")).unwrap().count(),
        0,
        "nothing downloaded"
    );
    world.assert_active("vaccine-a", "5.1");
}
