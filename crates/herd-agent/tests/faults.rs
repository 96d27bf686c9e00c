//! Fault recovery end to end (SPEC §3.3), with real processes on loopback: a real `herd serve`
//! center with a fault rule and a replacement table, an enrolled agent, and `herd-agent
//! supervise` running four supervised programs (`sh` scripts) that fail — one exits with a
//! status a rule knows (cause and remedy delivered, shown in `herd-agent status`), one crashes
//! with SIGSEGV (unknown cause: replaced by company B's program, a program release the center
//! signs as a TUF target), one hangs (replaced by an alternative already installed), one exits
//! with no rule and no alternative (escalated, visible in `herd faults`), and one reports its
//! own fault and is to be replaced by a program whose package a mirror tampers with (refused;
//! the old program runs again, and `herd faults show` says so). A report naming another
//! terminal is refused by the center and set aside by the outbox.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use herd_client::Client;
use herd_lab::harness::{CenterProcess, CenterSpec};
use herd_lab::programs::{Behaviour, program_feed, program_package};
use herd_proto::api::NewEnrolmentToken;
use herd_proto::distribution::{TARGETS_PATH, consistent_target_name};
use herd_proto::fault::{Alternative, Decision, FaultKind, FaultRule, ReplacementEntry};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

#[path = "support/herd.rs"]
mod herd;

use herd::herd_binary;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_herd-agent"))
}

fn script(path: &Path, body: &str) -> PathBuf {
    fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    let mut permissions = fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    fs::set_permissions(path, permissions).unwrap();
    path.to_owned()
}

fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Waits until `check` holds, or panics naming `what` after 20 s.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// A pid file naming a live process.
fn running(pid_file: &Path) -> bool {
    fs::read_to_string(pid_file)
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .is_some_and(|pid| kill(Pid::from_raw(pid), None).is_ok())
}

fn awaited(state: &Path) -> Vec<u64> {
    fs::read(state.join("faults-awaited.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

struct Supervisor(Child);

impl Drop for Supervisor {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGTERM);
        let status = self.0.wait().unwrap();
        if !std::thread::panicking() {
            assert!(status.success(), "the supervisor ended with {status}");
        }
    }
}

#[test]
fn faults_are_decided_at_the_center_and_acted_on_by_the_supervisor() {
    herd_tls::install_crypto_provider();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = root.join("center");
    let center = CenterProcess::start(
        &CenterSpec::new(herd_binary(), &data)
            .log(&root.join("center.log"))
            .env("RUST_LOG", Some("warn")),
    )
    .expect("herd serve starts");
    let ca = fs::read_to_string(data.join("ca.pem")).unwrap();
    let token = fs::read_to_string(data.join("operator.token")).unwrap();
    let operator = Client::new(&center.url, &ca, None)
        .unwrap()
        .with_token(token.trim());

    // The fault database knows mw-known's exit status 3.
    operator
        .put_fault_rule(&FaultRule {
            id: "mw-known-licence".into(),
            program: "mw-known".into(),
            version_from: Some("1.0".into()),
            version_below: Some("1.5".into()),
            kinds: vec![],
            exit_codes: vec![3],
            signals: vec![],
            frame_pattern: None,
            definition_pattern: Some("licence = trial".into()),
            cause: "The trial licence has expired.".into(),
            remedy: "Install the site licence in /etc/mw-known.conf.".into(),
        })
        .unwrap();
    // Company B's middleware mw-b, and mw-g: program releases of company B's feed, which the
    // center signs as TUF targets like any package.
    let platform = "linux-x86_64";
    let b_pid = root.join("mw-b.pid");
    let g_pid = root.join("mw-g.pid");
    let mut packages = Vec::new();
    for (program, pid) in [("mw-b", &b_pid), ("mw-g", &g_pid)] {
        let out = root.join(format!("{program}.tar.gz"));
        let built = program_package(
            &out,
            program,
            "company-b",
            "2.0",
            platform,
            pid,
            Behaviour::Serves,
        )
        .unwrap();
        packages.push((out, built));
    }
    let mut feed = program_feed("company-b", &packages[0].1);
    let g_feed = program_feed("company-b", &packages[1].1);
    for key in ["products", "releases"] {
        let more = g_feed[key].as_array().unwrap().clone();
        feed[key].as_array_mut().unwrap().extend(more);
    }
    operator
        .publish_feed("company-b", feed.to_string().as_bytes())
        .unwrap();
    for (out, _) in &packages {
        operator.upload_package(out).unwrap();
    }
    let alternative = |program: &str| Alternative {
        program: program.into(),
        vendor: "company-b".into(),
        version: "2.0".into(),
        package_sha256: None,
        package_size: None,
        target: None,
    };
    for (program, alternatives) in [
        ("mw-a", vec![alternative("mw-b")]),
        ("mw-c", vec![alternative("mw-d")]),
        ("mw-f", vec![alternative("mw-g")]),
    ] {
        operator
            .put_replacement(&ReplacementEntry {
                program: program.into(),
                platform: platform.into(),
                alternatives,
            })
            .unwrap();
    }
    // The table as listed says which alternatives are distributed, as which signed target.
    let listed = operator.replacements().unwrap();
    let targets: Vec<Option<&str>> = listed
        .entries
        .iter()
        .map(|e| e.alternatives[0].target.as_deref())
        .collect();
    assert_eq!(
        targets,
        [
            Some("packages/company-b/mw-b/2.0/linux-x86_64.archive"),
            None,
            Some("packages/company-b/mw-g/2.0/linux-x86_64.archive")
        ]
    );
    // An unsigned blob is no longer accepted as an alternative's package, naming the field.
    let err = operator
        .put_replacement(&ReplacementEntry {
            program: "mw-x".into(),
            platform: platform.into(),
            alternatives: vec![Alternative {
                package_sha256: Some(packages[0].1.sha256.clone()),
                ..alternative("mw-y")
            }],
        })
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("$.alternatives[0].package_sha256: an unsigned package is no longer"),
        "{err}"
    );

    // The terminal reads the signed metadata through a mirror that passes the center's
    // repository through, but serves other bytes for mw-g's package.
    let mirror = herd_lab::mirror::Mirror::start().unwrap();
    mirror.proxy(Client::new(&center.url, &ca, None).unwrap().repository());
    let g = &packages[1].1;
    let mut evil = fs::read(&packages[1].0).unwrap();
    evil[20] ^= 0xff;
    mirror.set(
        &format!(
            "{TARGETS_PATH}{}",
            consistent_target_name(
                "packages/company-b/mw-g/2.0/linux-x86_64.archive",
                &g.sha256
            )
        ),
        herd_lab::mirror::Behaviour::Replace(evil),
    );

    // Enrol the terminal.
    let enrol = operator
        .new_enrolment_token(&NewEnrolmentToken {
            label: "tests".into(),
            uses: Some(1),
            ttl_secs: None,
            reenrol_terminal: None,
        })
        .unwrap()
        .token;
    let state = root.join("agent");
    let once = || {
        agent()
            .arg("run")
            .arg("--once")
            .arg("--server")
            .arg(&center.url)
            .arg("--ca")
            .arg(data.join("ca.pem"))
            .arg("--state-dir")
            .arg(&state)
            .arg("--mirror")
            .arg(mirror.url())
            .args([
                "--enrol-token",
                &enrol,
                "--id",
                "t1",
                "--platform",
                platform,
            ])
            .output()
            .unwrap()
    };
    let output = once();
    assert!(
        text(&output).contains("enrolled as terminal t1"),
        "{}",
        text(&output)
    );

    // Four supervised programs, each failing its own way; restarts are slow, so each fails
    // once during the test.
    let crashes = root.join("crashes");
    fs::create_dir(&crashes).unwrap();
    let known_conf = root.join("mw-known.conf");
    fs::write(&known_conf, "licence = trial\nlicence_key = SECRET-123\n").unwrap();
    let restart = json!({"max": 5, "window_secs": 60, "delay_ms": 600000});
    let d_pid = root.join("mw-d.pid");
    let f_pid = root.join("mw-f.pid");
    let config = json!({
        "format": "herd.supervise/v1",
        "platform": platform,
        "programs": [
            {"name": "mw-known", "vendor": "company-a", "version": "1.2",
             "command": [script(&root.join("known.sh"), "exit 3")],
             "definitions": [known_conf], "restart": restart},
            {"name": "mw-a", "vendor": "company-a", "version": "3.1",
             "command": [script(&root.join("a.sh"), &format!(
                 "printf 'herd-crash/1\\nframe: mw_parse_request at 0x55d0\\nframe: main\\n' > {}/$$.crash\nkill -SEGV $$",
                 crashes.display()))],
             "crash_dir": crashes, "restart": restart},
            {"name": "mw-c", "vendor": "company-a", "version": "1.0",
             "command": [script(&root.join("c.sh"), "exec sleep 1000")],
             "heartbeat": {"file": root.join("c.beat"), "limit_secs": 1},
             "restart": restart,
             "alternatives": [
                 {"name": "mw-d", "vendor": "company-b", "version": "2.0",
                  "command": [script(&root.join("d.sh"), &format!("echo $$ > {}\nexec sleep 1000", d_pid.display()))],
                  "health_check": {"command": ["true"]}}
             ]},
            {"name": "mw-e", "vendor": "company-e", "version": "0.9",
             "command": [script(&root.join("e.sh"), "exit 1")], "restart": restart},
            // Reports its own fault and keeps running.
            {"name": "mw-f", "vendor": "company-a", "version": "1.0",
             "command": [script(&root.join("f.sh"), &format!(
                 "echo $$ > {}\n{} fault report --state-dir {} --program mw-f --vendor company-a \
                  --version 1.0 --platform {platform} --message 'queue stuck'\nexec sleep 1000",
                 f_pid.display(), env!("CARGO_BIN_EXE_herd-agent"), state.display()))],
             "restart": restart},
        ]
    });
    let config_file = root.join("supervise.json");
    fs::write(&config_file, config.to_string()).unwrap();
    let supervisor = Supervisor(
        agent()
            .arg("supervise")
            .arg("--state-dir")
            .arg(&state)
            .arg("--config")
            .arg(&config_file)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("five fault reports queued", || awaited(&state).len() >= 5);
    let f_before = fs::read_to_string(&f_pid).unwrap();

    // A report for another terminal, slipped into the outbox: refused, set aside.
    let output = agent()
        .args([
            "fault",
            "report",
            "--program",
            "mw-known",
            "--vendor",
            "company-a",
        ])
        .args(["--version", "1.2", "--exit-code", "3", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let outbox = state.join("outbox");
    let forged = fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .max()
        .unwrap();
    let mut event: Value = serde_json::from_slice(&fs::read(&forged).unwrap()).unwrap();
    event["data"]["terminal"] = json!("t2");
    fs::write(&forged, event.to_string()).unwrap();

    // The next check-in sends the reports and reads the verdicts (and the package of B).
    let output = once();
    let out = text(&output);
    assert!(
        out.contains("a terminal reports only its own faults"),
        "{out}"
    );
    assert!(fs::read_dir(outbox.join("refused")).unwrap().count() > 0);

    // The supervisor acts: B (a signed target) replaces A, D (already here) replaces C; G,
    // tampered with on the way, is refused and F runs again.
    wait_until("mw-b running", || running(&b_pid));
    wait_until("mw-d running", || running(&d_pid));
    assert!(state.join("faults/programs/mw-b/2.0/bin/mw-b").exists());
    wait_until("mw-f restarted", || {
        fs::read_to_string(&f_pid).is_ok_and(|pid| pid != f_before) && running(&f_pid)
    });
    assert!(!g_pid.exists(), "the tampered mw-g never ran");
    assert!(!state.join("faults/programs/mw-g").join("2.0").exists());
    assert!(
        out.contains("refused mw-g 2.0 as a replacement") && out.contains("mismatch"),
        "{out}"
    );
    // The next check-in tells the center how each replacement went (queued before the
    // status keeps them).
    wait_until("three replacements' outcomes", || {
        fs::read(state.join("faults/outcomes.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Map<String, Value>>(&bytes).ok())
            .is_some_and(|outcomes| outcomes.len() >= 3)
    });
    let output = once();
    assert!(output.status.success(), "{}", text(&output));

    // The center's buckets: one per failing program, each with its decision.
    let buckets = operator.fault_buckets().unwrap().buckets;
    let decision = |program: &str| {
        let bucket = buckets
            .iter()
            .find(|b| b.program == program)
            .unwrap_or_else(|| panic!("no bucket of {program} in {buckets:?}"));
        (bucket.kind, bucket.decision, bucket.escalated_at.is_some())
    };
    assert_eq!(
        decision("mw-known"),
        (FaultKind::Exit, Decision::Known, false)
    );
    assert_eq!(
        decision("mw-a"),
        (FaultKind::Crash, Decision::Replace, false)
    );
    assert_eq!(
        decision("mw-c"),
        (FaultKind::Hang, Decision::UseAlternative, false)
    );
    assert_eq!(
        decision("mw-e"),
        (FaultKind::Exit, Decision::Escalated, true)
    );
    assert_eq!(
        decision("mw-f"),
        (FaultKind::Reported, Decision::Replace, false)
    );
    let f = buckets.iter().find(|b| b.program == "mw-f").unwrap();
    let detail = operator.fault_bucket(&f.id).unwrap();
    // F, run again, reported again (newest first): the first report's fault has the outcome.
    let outcome = detail
        .faults
        .last()
        .and_then(|fault| fault.outcome.as_ref())
        .expect("mw-f's outcome");
    assert!(!outcome.replaced);
    assert_eq!(outcome.failed_step.as_deref(), Some("fetch"));
    assert!(
        outcome.message.contains("the old program was restored"),
        "{outcome:?}"
    );
    let a = buckets.iter().find(|b| b.program == "mw-a").unwrap();
    let detail = operator.fault_bucket(&a.id[..8]).unwrap();
    assert_eq!(detail.faults.len(), 1);
    assert_eq!(
        detail.faults[0]
            .verdict
            .alternative
            .as_ref()
            .unwrap()
            .target
            .as_deref(),
        Some("packages/company-b/mw-b/2.0/linux-x86_64.archive")
    );
    let outcome = detail.faults[0].outcome.as_ref().expect("mw-a's outcome");
    assert!(outcome.replaced, "{outcome:?}");
    assert!(outcome.message.contains("signed target"), "{outcome:?}");
    assert_eq!(detail.faults[0].terminal, "t1");
    assert_eq!(
        detail.faults[0].report.frames[0],
        "mw_parse_request at 0x55d0"
    );
    assert!(detail.bucket.signature.contains("mw_parse_request at ?"));
    // The secret in mw-known's configuration never left the terminal.
    let known = buckets.iter().find(|b| b.program == "mw-known").unwrap();
    let detail = operator.fault_bucket(&known.id).unwrap();
    let excerpt = &detail.faults[0].report.definitions[0].excerpt;
    assert_eq!(excerpt, "licence = trial\nlicence_key = [redacted]\n");

    // The terminal shows the known cause with its remedy, and the rest.
    let output = agent()
        .args(["status", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let out = text(&output);
    assert!(
        out.contains("mw-known")
            && out.contains("The trial licence has expired.")
            && out.contains("Install the site licence"),
        "{out}"
    );
    assert!(out.contains("escalated to the operators"), "{out}");
    assert!(out.contains("mw-b 2.0 (company-b)"), "{out}");
    assert!(
        out.contains("replaced by mw-b 2.0 (vendor company-b, installed from the signed target"),
        "{out}"
    );
    assert!(out.contains("last refusal"), "{out}");

    // Stopping the supervisor stops what it started.
    drop(supervisor);
    wait_until("mw-b stopped", || !running(&b_pid));
    wait_until("mw-d stopped", || !running(&d_pid));
    wait_until("mw-f stopped", || !running(&f_pid));
}

/// `herd-agent supervise` with `programs`: refused at once (it would run forever otherwise).
fn supervise_refused(programs: Value) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("supervise.json");
    let doc = json!({"format": "herd.supervise/v1", "programs": programs});
    fs::write(&config, doc.to_string()).unwrap();
    let output = agent()
        .arg("supervise")
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn watched_programs_are_named_one_way_and_checked() {
    let base = || json!({"name": "mw", "vendor": "company-a", "version": "1.0"});
    let with = |field: &str, value: Value| {
        let mut program = base();
        program[field] = value;
        json!([program])
    };
    for (programs, expected) in [
        (
            json!([base()]),
            "$.programs[0]: give one of command (started by the agent), pid_file, process_name or service_unit (watched)",
        ),
        (
            {
                let mut program = base();
                program["process_name"] = json!("mw");
                program["pid_file"] = json!("/run/mw.pid");
                json!([program])
            },
            "$.programs[0]: give one of command",
        ),
        (
            with("process_name", json!("")),
            "$.programs[0].process_name: name the process to watch",
        ),
        (
            with("process_name", json!("bin/mw")),
            "$.programs[0].process_name: \"bin/mw\" is not a process name",
        ),
        (
            with("service_unit", json!("mw")),
            "$.programs[0].service_unit: \"mw\" is not a service unit name",
        ),
        (
            with("service_unit", json!("--root=/.service")),
            "$.programs[0].service_unit: \"--root=/.service\" is not a service unit name",
        ),
        (
            with("service_unit", json!("mw;reboot.service")),
            "is not a service unit name",
        ),
    ] {
        let stderr = supervise_refused(programs);
        assert!(stderr.contains(expected), "{expected:?} not in:\n{stderr}");
    }
}

#[test]
fn a_service_unit_without_systemd_is_refused_saying_why() {
    if Path::new("/run/systemd/system").is_dir() {
        eprintln!("skipped: systemd runs here, so a service unit can be watched");
        return;
    }
    let mut program = json!({"name": "mw", "vendor": "company-a", "version": "1.0"});
    program["service_unit"] = json!("middleware.service");
    let stderr = supervise_refused(json!([program]));
    assert!(
        stderr.contains(
            "mw is watched through its service unit, but systemd is not running here (no \
             /run/systemd/system); watch it by pid_file or process_name instead"
        ),
        "{stderr}"
    );
}

/// Rings as the center runs them for replacements: the first ring by a stable hash of the
/// release key and the terminal id reaches half the fleet; neither promotes nor completes by
/// itself (a complete rollout counts no more outcomes).
const REPLACEMENT_RINGS: &str = "canary=50%/3600s/1000, broad=100%/3600s/1000";
const MW_B: &str = "company-b/mw-b/2.0";
const MW_H: &str = "company-b/mw-h/2.0";

/// A terminal id in (or out of) the canary ring of both replacements.
fn terminal_id(in_canary: bool) -> String {
    (0..)
        .map(|i| format!("ring-{i}"))
        .find(|id| {
            [MW_B, MW_H]
                .iter()
                .all(|key| (herd_planner::rings::ring_bucket(key, id) < 5000) == in_canary)
        })
        .unwrap()
}

/// What a terminal did with its replacement verdicts (`faults/outcomes.json`), by seq.
fn outcomes(state: &Path) -> serde_json::Map<String, Value> {
    fs::read(state.join("faults/outcomes.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Replacements roll out in rings, with real processes: two terminals whose middleware mw-a
/// and mw-x fail; the one in the canary ring of company B's mw-b is replaced at once, the
/// other is told `held` (shown, nothing done) until an operator promotes the rollout, and
/// then acts on the new verdict of the same fault exactly once. mw-h, which fails its health
/// check on the canary terminal, is halted by that one failure and withdrawn: the held
/// terminal's fault is escalated and mw-h never reaches it.
#[test]
fn replacements_roll_out_in_rings_and_held_terminals_act_once_their_ring_opens() {
    herd_tls::install_crypto_provider();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = root.join("center");
    let config = root.join("center.toml");
    fs::write(
        &config,
        format!(
            "rollout_rings = \"{REPLACEMENT_RINGS}\"\nrollout_max_bad = 1\n\
             rollout_check_secs = 1\n"
        ),
    )
    .unwrap();
    let center = CenterProcess::start(
        &CenterSpec::new(herd_binary(), &data)
            .log(&root.join("center.log"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", Some("warn")),
    )
    .expect("herd serve starts");
    let ca = fs::read_to_string(data.join("ca.pem")).unwrap();
    let token = fs::read_to_string(data.join("operator.token")).unwrap();
    let operator = Client::new(&center.url, &ca, None)
        .unwrap()
        .with_token(token.trim());
    let platform = "linux-x86_64";
    let build = |program: &str, behaviour: Behaviour| {
        let out = root.join(format!("{program}.tar.gz"));
        let pid = root.join(format!("{program}.pid"));
        let built =
            program_package(&out, program, "company-b", "2.0", platform, &pid, behaviour).unwrap();
        (out, built, pid)
    };
    // Rollouts are recorded from the first release on: what a center had before is complete.
    let (_, z, _) = build("mw-z", Behaviour::Serves);
    operator
        .publish_feed(
            "company-b",
            program_feed("company-b", &z).to_string().as_bytes(),
        )
        .unwrap();
    wait_until("the first rollout recorded", || {
        operator.rollouts().is_ok_and(|r| !r.is_empty())
    });
    let (b_out, b, b_pid) = build("mw-b", Behaviour::Serves);
    let (h_out, h, h_pid) = build("mw-h", Behaviour::Unhealthy);
    let mut feed = program_feed("company-b", &b);
    let h_feed = program_feed("company-b", &h);
    for key in ["products", "releases"] {
        let more = h_feed[key].as_array().unwrap().clone();
        feed[key].as_array_mut().unwrap().extend(more);
    }
    operator
        .publish_feed("company-b", feed.to_string().as_bytes())
        .unwrap();
    operator.upload_package(&b_out).unwrap();
    operator.upload_package(&h_out).unwrap();
    wait_until("both replacements rolling in their canary ring", || {
        [MW_B, MW_H].iter().all(|key| {
            operator
                .rollout(key)
                .is_ok_and(|r| r.phase == "rolling" && r.ring == "canary" && r.replacement)
        })
    });
    for (program, alternative) in [("mw-a", "mw-b"), ("mw-x", "mw-h")] {
        operator
            .put_replacement(&ReplacementEntry {
                program: program.into(),
                platform: platform.into(),
                alternatives: vec![Alternative {
                    program: alternative.into(),
                    vendor: "company-b".into(),
                    version: "2.0".into(),
                    package_sha256: None,
                    package_size: None,
                    target: None,
                }],
            })
            .unwrap();
    }

    // Two terminals, each supervising mw-a and mw-x, which fail once (restarts are slow).
    let enrol = operator
        .new_enrolment_token(&NewEnrolmentToken {
            label: "rings".into(),
            uses: Some(2),
            ttl_secs: None,
            reenrol_terminal: None,
        })
        .unwrap()
        .token;
    let once = |state: &Path, id: &str| {
        agent()
            .arg("run")
            .arg("--once")
            .arg("--server")
            .arg(&center.url)
            .arg("--ca")
            .arg(data.join("ca.pem"))
            .arg("--state-dir")
            .arg(state)
            .args(["--enrol-token", &enrol, "--id", id, "--platform", platform])
            .output()
            .unwrap()
    };
    let restart = json!({"max": 5, "window_secs": 60, "delay_ms": 600000});
    let mut terminals = Vec::new();
    for in_canary in [true, false] {
        let id = terminal_id(in_canary);
        let state = root.join(&id);
        let output = once(&state, &id);
        assert!(output.status.success(), "{}", text(&output));
        let config = json!({
            "format": "herd.supervise/v1",
            "platform": platform,
            "programs": [
                {"name": "mw-a", "vendor": "company-a", "version": "3.1",
                 "command": [script(&root.join(format!("{id}-a.sh")), "exit 1")],
                 "restart": restart},
                {"name": "mw-x", "vendor": "company-a", "version": "1.0",
                 "command": [script(&root.join(format!("{id}-x.sh")), "exit 2")],
                 "restart": restart},
            ]
        });
        let config_file = root.join(format!("{id}-supervise.json"));
        fs::write(&config_file, config.to_string()).unwrap();
        let supervisor = Supervisor(
            agent()
                .arg("supervise")
                .arg("--state-dir")
                .arg(&state)
                .arg("--config")
                .arg(&config_file)
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_until("two fault reports queued", || awaited(&state).len() >= 2);
        terminals.push((id, state, supervisor));
    }
    let (canary_id, canary, _canary_supervisor) = &terminals[0];
    let (held_id, held, _held_supervisor) = &terminals[1];

    // The canary terminal is sent both replacements: mw-b runs; mw-h fails its health check
    // and mw-x is restored.
    let output = once(canary, canary_id);
    assert!(output.status.success(), "{}", text(&output));
    wait_until("mw-b running on the canary terminal", || running(&b_pid));
    wait_until("both replacements' outcomes", || {
        outcomes(canary).len() >= 2
    });
    assert!(!h_pid.exists(), "the unhealthy mw-h never ran");

    // The other terminal is held for both: shown, nothing done, still awaited.
    let b_on_canary = fs::read_to_string(&b_pid).unwrap();
    let output = once(held, held_id);
    assert!(output.status.success(), "{}", text(&output));
    let status = agent()
        .args(["status", "--state-dir"])
        .arg(held)
        .output()
        .unwrap();
    let out = text(&status);
    assert!(
        out.contains("replacement by mw-b 2.0 (company-b) rolling out")
            && out.contains("this terminal's ring opens later"),
        "{out}"
    );
    assert_eq!(awaited(held).len(), 2, "held verdicts stay awaited");
    std::thread::sleep(Duration::from_millis(500));
    assert!(outcomes(held).is_empty(), "a held verdict is not acted on");
    assert!(!held.join("faults/programs/mw-b").exists());

    // The canary's outcomes reach the center: mw-b took (a success), mw-h failed (a failed
    // install), which halts mw-h's rollout and withdraws it.
    let output = once(canary, canary_id);
    assert!(output.status.success(), "{}", text(&output));
    wait_until("mw-h halted", || {
        operator
            .rollout(MW_H)
            .is_ok_and(|r| r.phase == "reverted" && r.failed >= 1)
    });
    let b_rollout = operator.rollout(MW_B).unwrap();
    assert_eq!((b_rollout.succeeded, b_rollout.failed), (1, 0));

    // The operator promotes mw-b: the held terminal's next check-in finds its fault decided
    // again (same seq) and the supervisor replaces mw-a, once; mw-x's held fault was
    // escalated with the halt, and mw-h never reaches this terminal.
    let promoted = operator.rollout_act(MW_B, "promote").unwrap();
    assert_eq!(promoted.ring, "broad");
    let output = once(held, held_id);
    assert!(output.status.success(), "{}", text(&output));
    wait_until("mw-b running on the held terminal", || {
        fs::read_to_string(&b_pid).is_ok_and(|pid| pid != b_on_canary) && running(&b_pid)
    });
    wait_until("the held terminal's outcome", || !outcomes(held).is_empty());
    assert!(awaited(held).is_empty(), "nothing is awaited any more");
    let status = agent()
        .args(["status", "--state-dir"])
        .arg(held)
        .output()
        .unwrap();
    let out = text(&status);
    assert!(out.contains("escalated to the operators"), "{out}");
    assert!(out.contains("replaced by mw-b 2.0"), "{out}");
    // Checking in again reads the same verdicts: nothing is done twice.
    let output = once(held, held_id);
    assert!(output.status.success(), "{}", text(&output));
    std::thread::sleep(Duration::from_millis(800));
    let done = outcomes(held);
    assert_eq!(done.len(), 1, "{done:?}");
    assert!(done.values().all(|o| o["replaced"] == true), "{done:?}");
    assert!(!held.join("faults/programs/mw-h").exists());
    let b_rollout = operator.rollout(MW_B).unwrap();
    assert_eq!((b_rollout.succeeded, b_rollout.failed), (2, 0));
    let buckets = operator.fault_buckets().unwrap().buckets;
    let x = buckets.iter().find(|b| b.program == "mw-x").unwrap();
    let detail = operator.fault_bucket(&x.id).unwrap();
    let of_held = detail
        .faults
        .iter()
        .find(|f| &f.terminal == held_id)
        .unwrap();
    assert_eq!(of_held.verdict.decision, Decision::Escalated);
}
