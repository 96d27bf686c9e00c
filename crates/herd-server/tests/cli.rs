//! The `herd` program as a user runs it, without a center: `herd plan` on the shipped example
//! (byte-identical output, exit codes, clear errors for bad input), `herd package` (in
//! `cli/package.rs`), completions and man pages (`cli/completions.rs`), and the example vendor
//! feeds the README publishes (`cli/feeds.rs`), and the offline side of `herd keys` and `herd
//! vendor key` (`cli/keys.rs`).

// A test crate's root looks for modules beside it, where cargo would take them for test crates
// of their own; under `cli/` they stay part of this one binary.
#[path = "cli/completions.rs"]
mod completions;
#[path = "cli/feeds.rs"]
mod feeds;
#[path = "cli/keys.rs"]
mod keys;
#[path = "cli/package.rs"]
mod package;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `herd` from the repository root, so the README's relative paths work as written.
fn herd(args: &[&str]) -> Output {
    herd_in(&repo(), args)
}

fn herd_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("herd runs")
}

/// `herd plan --catalog CATALOG --terminal TERMINAL --now NOW`.
fn plan(catalog: &str, terminal: &str, now: &str) -> Output {
    herd(&[
        "plan",
        "--catalog",
        catalog,
        "--terminal",
        terminal,
        "--now",
        now,
    ])
}

const NOW: &str = "2000-11-13T08:00:00+09:00";

#[test]
fn the_worked_example_switches_user_a_and_offers_user_b_vaccine_b() {
    let out = plan("examples/seed/catalog.json", "examples/seed/terminals", NOW);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plans: Vec<serde_json::Value> = String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(plans.len(), 4);
    assert_eq!(plans[0]["terminal"], "45a");
    assert_eq!(plans[0]["action"], "switch");
    assert_eq!(plans[0]["to"]["product"], "vaccine-b");
    assert_eq!(
        plans[0]["reason"],
        "vaccine-a 5.1 (a-1101) does not cover virus-a (high); vaccine-b 7.0 (b-1112) covers it since 2000-11-12; policy latest-any-vendor"
    );
    let kinds: Vec<&str> = plans[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["fetch", "install", "verify", "uninstall"]);
    assert_eq!(plans[1]["action"], "exposed");
    assert_eq!(plans[1]["alternatives"][0]["product"], "vaccine-b");

    let again = plan("examples/seed/catalog.json", "examples/seed/terminals", NOW);
    assert_eq!(
        out.stdout, again.stdout,
        "the same inputs print the same bytes"
    );
}

#[test]
fn one_terminal_prints_one_indented_plan_with_keys_in_contract_order() {
    let out = plan(
        "examples/seed/catalog.json",
        "examples/seed/terminals/45a-user-a-phone.json",
        NOW,
    );
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(
            "{\n  \"terminal\": \"45a\",\n  \"action\": \"switch\",\n  \"uncovered_now\""
        ),
        "{text}"
    );
    let keys = [
        "terminal",
        "action",
        "uncovered_now",
        "uncovered_now_counts",
        "uncovered_now_more",
        "uncovered_after",
        "uncovered_after_counts",
        "uncovered_after_more",
        "from",
        "to",
        "consent_required",
        "not_before",
        "steps",
        "alternatives",
        "reason",
    ];
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| {
            text.find(&format!("\n  \"{k}\""))
                .unwrap_or_else(|| panic!("{k} missing"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "keys out of order"
    );
}

/// A terminal far behind: 30 more threats no product covers. The plan lists 20 of them, most
/// dangerous and newest first, and counts the rest; `--full-gap` lists them all.
#[test]
fn a_large_gap_is_listed_up_to_twenty_and_counted_unless_full_gap_is_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let mut catalog: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("examples/seed/catalog.json")).unwrap(),
    )
    .unwrap();
    let threats = catalog["threats"].as_array_mut().unwrap();
    for k in 0..30 {
        let danger = ["low", "medium", "critical"][k % 3];
        threats.push(serde_json::json!({
            "id": format!("worm-{k:02}"), "name": format!("worm {k}"),
            "danger": danger,
            "discovered": format!("2000-10-{:02}", 1 + k),
        }));
    }
    let path = tmp.path().join("catalog.json");
    std::fs::write(&path, catalog.to_string()).unwrap();
    let terminal = "examples/seed/terminals/45a-user-a-phone.json";
    let run = |extra: &[&str]| {
        let mut args = vec![
            "plan",
            "--catalog",
            path.to_str().unwrap(),
            "--terminal",
            terminal,
            "--now",
            NOW,
        ];
        args.extend_from_slice(extra);
        let out = herd(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let bounded = run(&[]);
    let listed: Vec<&str> = bounded["uncovered_now"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 20);
    // Ten critical worms, newest first, then virus-a (high), then the medium ones.
    assert_eq!(listed[..3], ["worm-29", "worm-26", "worm-23"]);
    assert_eq!(listed[9..12], ["worm-02", "virus-a", "worm-28"]);
    assert_eq!(
        bounded["uncovered_now_counts"],
        serde_json::json!({"critical": 10, "high": 1, "medium": 10, "low": 10})
    );
    assert_eq!(bounded["uncovered_now_more"], 11);
    assert_eq!(bounded["uncovered_after"].as_array().unwrap().len(), 20);
    assert_eq!(bounded["uncovered_after_more"], 10);
    let reason = bounded["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(
            "vaccine-a 5.1 (a-1101) does not cover worm-29 (critical), worm-26 (critical), worm-23 (critical) and 28 more;"
        ),
        "{reason}"
    );

    let full = run(&["--full-gap"]);
    let all = full["uncovered_now"].as_array().unwrap();
    assert_eq!(all.len(), 31);
    assert_eq!(full["uncovered_now_more"], 0);
    assert_eq!(
        full["uncovered_now_counts"],
        bounded["uncovered_now_counts"]
    );
    assert_eq!(all[..20], bounded["uncovered_now"].as_array().unwrap()[..]);
    assert_eq!(full["uncovered_after"].as_array().unwrap().len(), 30);
}

#[test]
fn a_bad_catalog_changes_nothing_and_says_where() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("examples/seed/catalog.json"))
        .unwrap()
        .replace("\"high\"", "\"severe\"");
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, text).unwrap();
    let out = plan(bad.to_str().unwrap(), "examples/seed/terminals", NOW);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "nothing is planned from a refused catalog"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("bad.json: $.threats[0].danger: unknown danger \"severe\""),
        "{stderr}"
    );
}

#[test]
fn a_bad_terminal_is_reported_and_the_others_are_planned() {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo().join("examples/seed/terminals")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
    }
    std::fs::write(tmp.path().join("zz-broken.json"), "{\"id\": \"x\", \"hardware\": {\"kind\": \"pc\", \"platform\": \"pc\"}, \"policy\": {\"apply\": \"often\"}}").unwrap();
    let out = plan(
        "examples/seed/catalog.json",
        tmp.path().to_str().unwrap(),
        NOW,
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 4);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("zz-broken.json: $.policy.apply: unknown policy \"often\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 terminal record(s) refused; 4 planned"),
        "{stderr}"
    );
}

#[test]
fn usage_errors_are_clear() {
    let out = plan("no/such/file.json", "examples/seed/terminals", NOW);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read no/such/file.json"));
    let out = plan(
        "examples/seed/catalog.json",
        "examples/seed/terminals",
        "yesterday",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an RFC 3339 time"));
    let help = herd(&["plan", "--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("JSON lines"));
}
