//! `herd sim protect` end to end, small: a real center (and two real sites), simulated
//! terminals in two worker processes enrolled with real certificates, two releases published;
//! every terminal must be protected in every run (checked in, verified the signed metadata,
//! downloaded and checked the package, reported) and the report's numbers must agree with each
//! other; and the same from an analyst's verdict (`--verdict`) to Herd's signature set on every
//! terminal. Asserts no timings beyond the run's own limit.

use std::process::Command;

fn protect(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args([
            "sim",
            "protect",
            "--json",
            "--runs",
            "2",
            "--run-timeout",
            "30",
        ])
        .args(args)
        .output()
        .expect("herd runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "herd sim protect failed: {stderr}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|err| panic!("the report is not JSON ({err}): {stderr}"))
}

/// What every report must say of a fleet that was fully protected in each run.
fn check_fully_protected(report: &serde_json::Value, terminals: u64) {
    assert_eq!(report["input"]["enrolled"], terminals, "{report:#}");
    assert_eq!(
        report["input"]["enrol_errors"],
        serde_json::json!({}),
        "{report:#}"
    );
    let runs = report["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2, "{report:#}");
    for (i, run) in runs.iter().enumerate() {
        // Run n publishes release n + 1 (release 1 is what terminals start with).
        assert_eq!(run["version"], (i + 2).to_string(), "{report:#}");
        assert_eq!(run["protected"], terminals, "{report:#}");
        assert_eq!(run["never"], 0, "{report:#}");
        let p50 = run["p50_secs"].as_f64().expect("a p50");
        let p99 = run["p99_secs"].as_f64().expect("a p99");
        let max = run["max_secs"].as_f64().expect("a max");
        assert!(
            0.0 < p50 && p50 <= p99 && p99 <= max && max <= 30.0,
            "{run:#}"
        );
        let shares = [&run["within_1s"], &run["within_5s"], &run["within_10s"]]
            .map(|share| share.as_f64().expect("a share"));
        assert!(
            shares[0] <= shares[1] && shares[1] <= shares[2] && shares[2] <= 1.0,
            "{run:#}"
        );
        if max <= 10.0 {
            assert_eq!(shares[2], 1.0, "{run:#}");
        }
        // Every terminal downloaded the package once: exactly the package's bytes each.
        let package = run["package_bytes"].as_u64().expect("a package size");
        assert!(package > 4096, "{run:#}");
        assert_eq!(
            run["downloaded"]["packages"].as_u64(),
            Some(package * terminals),
            "{run:#}"
        );
        assert!(run["downloaded"]["metadata"].as_u64() > Some(0), "{run:#}");
        // Terminals share their verification: a few chains, not one per terminal.
        let verifications = run["verifications"].as_u64().expect("verifications");
        assert!(
            (1..=terminals / 4).contains(&verifications),
            "{verifications} verifications: {run:#}"
        );
    }
    let median = &report["median"];
    assert_eq!(median["never"], 0.0, "{report:#}");
    assert!(median["p99_secs"].as_f64().is_some(), "{report:#}");
}

#[test]
fn every_terminal_at_the_center_is_protected_in_every_run() {
    let report = protect(&[
        "--terminals",
        "200",
        "--sites",
        "0",
        "--processes",
        "2",
        "--definitions-kib",
        "8",
    ]);
    check_fully_protected(&report, 200);
    assert_eq!(report["input"]["sites"], 0, "{report:#}");
    // No sites: nothing to count on the center→site link.
    for run in report["runs"].as_array().expect("runs") {
        assert!(run["upstream_bytes"].is_null(), "{run:#}");
        assert_eq!(run["one_copy_per_site_bytes"], 0, "{run:#}");
    }
}

#[test]
fn every_terminal_behind_two_sites_is_protected_and_each_package_crosses_once_per_site() {
    let report = protect(&[
        "--terminals",
        "200",
        "--sites",
        "2",
        "--processes",
        "2",
        "--definitions-kib",
        "8",
    ]);
    check_fully_protected(&report, 200);
    for run in report["runs"].as_array().expect("runs") {
        let package = run["package_bytes"].as_u64().expect("a package size");
        assert_eq!(run["one_copy_per_site_bytes"], package * 2, "{run:#}");
        // The sites fetched the package from the center once each, not once per terminal.
        let upstream = run["upstream_bytes"]
            .as_u64()
            .expect("the sites' upstream bytes");
        assert!(
            (package * 2..package * 4).contains(&upstream),
            "{upstream} bytes for a {package}-byte package: {run:#}"
        );
    }
}

#[test]
fn every_terminal_behind_two_sites_gets_each_verdict_in_herds_set_once_per_site() {
    let report = protect(&[
        "--verdict",
        "--terminals",
        "200",
        "--sites",
        "2",
        "--processes",
        "2",
        "--definitions-kib",
        "8",
    ]);
    assert_eq!(report["input"]["path"], "verdict", "{report:#}");
    assert_eq!(report["input"]["enrolled"], 200, "{report:#}");
    let runs = report["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2, "{report:#}");
    let mut set_sizes = Vec::new();
    for run in runs {
        // Each run judges another file: the run's goal is its SHA-256.
        let sha256 = run["version"].as_str().expect("the judged file's SHA-256");
        assert!(
            sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()),
            "{run:#}"
        );
        assert_eq!(run["protected"], 200, "{run:#}");
        assert_eq!(run["never"], 0, "{run:#}");
        let max = run["max_secs"].as_f64().expect("a max");
        assert!(0.0 < max && max <= 30.0, "{run:#}");
        // Every terminal downloaded the new set once: its signed length each, and the set
        // crossed the center→site link once per site.
        let set = run["package_bytes"].as_u64().expect("the set's size");
        assert!(set > 64, "{run:#}");
        assert_eq!(
            run["downloaded"]["packages"].as_u64(),
            Some(set * 200),
            "{run:#}"
        );
        assert_eq!(run["one_copy_per_site_bytes"], set * 2, "{run:#}");
        let upstream = run["upstream_bytes"].as_u64().expect("upstream bytes");
        assert!(
            (set * 2..set * 4).contains(&upstream),
            "{upstream}: {run:#}"
        );
        set_sizes.push(set);
    }
    assert_ne!(runs[0]["version"], runs[1]["version"], "{report:#}");
    // The second verdict adds a signature: the set grew.
    assert!(set_sizes[1] > set_sizes[0], "{set_sizes:?}");
}

#[test]
fn bad_arguments_are_refused_with_the_reason() {
    let refused = |args: &[&str], why: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_herd"))
            .args(["sim", "protect"])
            .args(args)
            .output()
            .expect("herd runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(why), "{args:?}: {stderr}");
    };
    refused(&["--terminals", "0"], "--terminals must be at least 1");
    refused(&["--runs", "0"], "--runs must be at least 1");
    refused(
        &["--terminals", "20000", "--sites", "0"],
        "use at most 18000 terminals",
    );
    refused(
        &["--terminals", "40000", "--processes", "2"],
        "at most 16000 terminals per process",
    );
}
