//! `herd sim checkins` end to end: it starts its own `herd serve`, enrols terminals, checks in
//! over mutual TLS and reports in JSON. Proves the simulator works; asserts no timings.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use herd_proto::plan::Action;

/// A generated catalog small enough for a debug build: the default is SPEC §8's full size.
const SMALL_WORLD: [&str; 6] = ["--threats", "500", "--products", "6", "--releases", "20"];

#[test]
fn a_short_simulation_checks_in_without_errors_and_gets_plans_of_every_kind() {
    let out = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(["sim", "checkins"])
        .args(SMALL_WORLD)
        .args([
            "--terminals",
            "50",
            "--connections",
            "8",
            "--duration",
            "2",
            "--warmup",
            "0.5",
            "--json",
        ])
        .output()
        .expect("herd runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "herd sim failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|err| panic!("the report is not JSON ({err}): {stderr}"));

    assert_eq!(report["center"]["kind"], "spawned", "{report:#}");
    assert_eq!(report["enrolment"]["count"], 50, "{report:#}");
    assert_eq!(
        report["enrolment"]["errors"],
        serde_json::json!({}),
        "{report:#}"
    );
    assert_eq!(report["roll_call"]["count"], 50, "{report:#}");
    assert_eq!(
        report["roll_call"]["errors"],
        serde_json::json!({}),
        "{report:#}"
    );

    let checkins = report["checkins"].as_u64().expect("a check-in count");
    assert!(checkins > 0, "{report:#}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report:#}");
    let plans = &report["plans"];
    let total: u64 = Action::ALL
        .iter()
        .map(|action| plans[action.as_str()].as_u64().expect("a count per action"))
        .sum();
    assert_eq!(total, checkins, "{report:#}");
    // A generated world leaves every product a few threats it never covers: `none` is rare.
    for action in [Action::Update, Action::Switch, Action::Exposed] {
        assert!(
            plans[action.as_str()].as_u64() > Some(0),
            "no {action} plan: {report:#}"
        );
    }
    assert!(report["store"]["batches"].as_u64() > Some(0), "{report:#}");
    assert!(
        report["latency_ms"]["median"].as_f64() > Some(0.0),
        "{report:#}"
    );
    assert!(report["cpu"]["center_secs"].is_number(), "{report:#}");
}

#[test]
fn rotating_terminals_reconnect_with_resumed_tls_sessions() {
    let out = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(["sim", "checkins", "--rotate"])
        .args(SMALL_WORLD)
        .args(["--terminals", "40", "--connections", "4"])
        .args(["--duration", "2", "--warmup", "0.5", "--json"])
        .output()
        .expect("herd runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "herd sim failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|err| panic!("the report is not JSON ({err}): {stderr}"));
    assert_eq!(report["errors"], serde_json::json!({}), "{report:#}");
    let handshakes = report["handshakes"].as_u64().expect("a handshake count");
    assert!(handshakes > 0, "{report:#}");
    // Every terminal had a session from the roll call: each reconnection resumes it.
    assert_eq!(report["resumed"].as_u64(), Some(handshakes), "{report:#}");
    assert_eq!(report["reconnect_every"], 1, "{report:#}");
}

#[test]
fn an_interrupted_simulation_stops_its_center() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let sim = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(["sim", "checkins", "--terminals", "8", "--connections", "2"])
        .args(SMALL_WORLD)
        .args(["--duration", "60", "--data-dir"])
        .arg(data.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("herd runs");
    let log = data.path().join("center.log");
    let started = Instant::now();
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("herd center listening")) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the center did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let center = children_of(sim.id());
    assert_eq!(center.len(), 1, "one center process: {center:?}");

    let killed = Command::new("kill")
        .args(["-TERM", &sim.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let out = sim.wait_with_output().expect("herd sim ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("interrupted by SIGTERM"), "{stderr}");
    assert!(
        !Path::new(&format!("/proc/{}", center[0])).exists(),
        "the center {} outlived the simulation",
        center[0]
    );
}

/// Processes whose parent is `pid`, from /proc.
fn children_of(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc")
        .expect("/proc is readable")
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the parenthesised command name: state, ppid, …
        let Some(after_name) = stat.rfind(')').map(|at| &stat[at + 1..]) else {
            continue;
        };
        let parent = after_name.split_ascii_whitespace().nth(1);
        if parent == Some(pid.to_string().as_str())
            && let Ok(child) = entry.file_name().to_string_lossy().parse()
        {
            children.push(child);
        }
    }
    children
}

#[test]
fn nonsense_counts_are_refused_before_anything_starts() {
    let out = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(["sim", "checkins", "--terminals", "0"])
        .output()
        .expect("herd runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--terminals must be at least 1"),
        "{stderr}"
    );
}
