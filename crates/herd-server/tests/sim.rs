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
fn metadata_refreshes_follow_check_ins_and_see_a_release_published_under_load() {
    let out = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(["sim", "checkins", "--refresh-metadata", "--publish-during"])
        .args(SMALL_WORLD)
        .args(["--terminals", "40", "--connections", "4"])
        .args(["--duration", "3", "--warmup", "0.5", "--json"])
        .output()
        .expect("herd runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "herd sim failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|err| panic!("the report is not JSON ({err}): {stderr}"));
    // Plans are checked against the catalog before and after the publish, every refresh
    // against the center's current timestamp: any mismatch would be an error here.
    assert_eq!(report["errors"], serde_json::json!({}), "{report:#}");
    let checkins = report["checkins"].as_u64().expect("a check-in count");
    let refresh = &report["refresh"];
    let refreshes = refresh["count"].as_u64().expect("a refresh count");
    // One refresh after each check-in; the last ones may fall after the window closed.
    assert!(
        refreshes > 0 && refreshes.abs_diff(checkins) <= 4,
        "{report:#}"
    );
    // An idle refresh is the timestamp alone: a few hundred bytes, not the whole metadata.
    let body = refresh["body_bytes_median"].as_u64().expect("body bytes");
    let wire = refresh["wire_bytes_median"].as_u64().expect("wire bytes");
    assert!((200..2000).contains(&body), "{report:#}");
    assert!(wire > body && wire < body + 1000, "{report:#}");
    let publish = &report["publish"];
    assert_eq!(publish["vendor"], "sim-maker-00", "{report:#}");
    let before = publish["timestamp_version_before"]
        .as_u64()
        .expect("a version");
    assert_eq!(
        refresh["timestamp_version"].as_u64(),
        Some(before),
        "{report:#}"
    );
    assert!(
        publish["timestamp_version_after"].as_u64() > Some(before),
        "the publish signed no new timestamp: {report:#}"
    );
    let at = publish["at_secs"].as_f64().expect("when");
    assert!((0.0..3.0).contains(&at), "{report:#}");
    let seen = publish["new_timestamp_secs"]
        .as_f64()
        .expect("a refresh saw it");
    assert!(seen > 0.0, "{report:#}");
}

#[test]
fn without_the_flags_there_is_no_refresh_nor_publish_in_the_report() {
    let out = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(["sim", "checkins"])
        .args(SMALL_WORLD)
        .args(["--terminals", "8", "--connections", "2"])
        .args(["--duration", "0.5", "--warmup", "0", "--json"])
        .output()
        .expect("herd runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "herd sim failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|err| panic!("the report is not JSON ({err}): {stderr}"));
    assert!(report["refresh"].is_null(), "{report:#}");
    assert!(report["publish"].is_null(), "{report:#}");
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
