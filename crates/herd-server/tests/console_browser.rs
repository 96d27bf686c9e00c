//! The web console in a real browser: this test runs `herd serve`, sets up SPEC §5's worked
//! example (phone 45a can switch, phone 45b is exposed), and runs `tests/browser/
//! console.spec.mjs` (playwright-core driving Debian's Chromium): sign in, find the exposed
//! terminal and read why, search, edit a placement rule, filter the coverage matrix, see a
//! live event arrive (sent from here when the script is ready), pause and resume a rollout,
//! give a sample a verdict (its signature then in Herd's set), sign out, and sign in again
//! with a one-time link `herd console link` printed, which works once. Screenshots of the
//! main pages go to `target/console-screenshots/` for a person to look at.
//!
//! Needs `node`, Chromium (`/usr/bin/chromium` or `CHROMIUM`) and `npm ci` in
//! `tests/browser/`; `.ci/run` installs all three and sets `HERD_TEST_BROWSER=1`, which turns
//! a missing piece into a failure instead of a skip.

mod support;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use herd_proto::api::{
    CheckinRequest, EventBatch, EventDoc, GroupDoc, PlacementRule, PlacementRules,
};
use herd_proto::terminal::{InstalledDoc, PolicyDoc};
use support::{TestCenter, enrol, enrolment_token, seed_catalog, vendor_client, vendor_feed};

/// What the browser run needs, or why it cannot run here.
fn browser_tools() -> Result<(PathBuf, PathBuf), String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.exists() {
        return Err(format!("no Chromium at {}", chromium.display()));
    }
    if !dir.join("node_modules/playwright-core").exists() {
        return Err(format!(
            "playwright-core is not installed (npm ci in {})",
            dir.display()
        ));
    }
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => Ok((dir, chromium)),
        _ => Err("node is not on PATH".to_owned()),
    }
}

fn checkin(installed: InstalledDoc) -> CheckinRequest {
    CheckinRequest {
        terminal: None,
        installed: Some(installed),
        hardware: None,
        tz: None,
        agent_version: Some("test".into()),
        interfaces: None,
        tuf_timestamp_version: None,
        consent_waiting: None,
        messages_after: None,
        tuf_held: None,
    }
}

#[test]
fn the_console_in_chromium() {
    let (dir, chromium) = match browser_tools() {
        Ok(tools) => tools,
        Err(why) if std::env::var_os("HERD_TEST_BROWSER").is_some() => {
            panic!("HERD_TEST_BROWSER is set but the browser test cannot run: {why}")
        }
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    // Rings whose canary never promotes by itself, so that the rollouts page has a release
    // rolling to pause and resume (vaccine-a 5.2, published below).
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("center.toml");
    std::fs::write(
        &config,
        "rollout_rings = \"canary=1%/3600s/1000, broad=100%/0s/0\"\nrollout_check_secs = 1\n",
    )
    .unwrap();
    let center = TestCenter::start_with(&["--config", config.to_str().unwrap()]);
    let catalog = seed_catalog();
    for vendor in ["maker-a", "maker-b"] {
        let feed = serde_json::to_vec(&vendor_feed(&catalog, vendor)).unwrap();
        vendor_client(&center, vendor)
            .publish_feed(vendor, &feed)
            .unwrap();
    }
    let operator = center.operator();
    // The seed's releases are recorded as complete; a later one of vaccine-a rolls out.
    let wait_for = |what: &str, done: &dyn Fn(&[herd_proto::api::RolloutSummary]) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done(&operator.rollouts().unwrap()) {
            assert!(Instant::now() < deadline, "{what} within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for("the seed's releases recorded", &|r| r.len() == 2);
    let mut feed = vendor_feed(&catalog, "maker-a");
    let mut next = feed["releases"][0].clone();
    next["version"] = "5.2".into();
    next["seq"] = 1102.into();
    next["pattern"] = "a-1102".into();
    next["published"] = "2000-11-20T00:00:00Z".into();
    feed["releases"].as_array_mut().unwrap().push(next);
    vendor_client(&center, "maker-a")
        .publish_feed("maker-a", &serde_json::to_vec(&feed).unwrap())
        .unwrap();
    wait_for("vaccine-a 5.2 rolling", &|r| {
        r.iter().any(|r| r.version == "5.2" && r.phase == "rolling")
    });
    operator
        .put_group(&GroupDoc {
            id: "same-vendor".into(),
            description: "users who stay with their vendor".into(),
            policy: PolicyDoc {
                apply: "latest-same-vendor".into(),
                min_danger: Some("low".into()),
                consent: Some("ask".into()),
                window: None,
                tz: None,
                vendors: None,
            },
            terminals: 0,
        })
        .unwrap();
    operator
        .put_rules(&PlacementRules {
            rules: vec![PlacementRule {
                group: "same-vendor".into(),
                kind: None,
                platform: None,
                address: None,
                user: Some("user-b".into()),
            }],
        })
        .unwrap();
    let token = enrolment_token(&center, 2);
    let phone_a = center.terminal_client(&enrol(&center, &token, "45a", "user-a", "phone"));
    let phone_b = center.terminal_client(&enrol(&center, &token, "45b", "user-b", "phone"));
    let vaccine_a = InstalledDoc {
        product: "vaccine-a".into(),
        version: "5.1".into(),
        seq: 1101,
        pattern: "a-1101".into(),
        format: "archive".into(),
    };
    phone_a.checkin(&checkin(vaccine_a.clone())).unwrap();
    phone_b.checkin(&checkin(vaccine_a)).unwrap();

    // A sample the user of 45a sent (its file name is markup), awaiting an analyst's verdict.
    let sample = b"MZ not really a dropper, but a sample all the same".to_vec();
    let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&sample));
    let mut neutralised = sample.clone();
    herd_center::samples::neutralise(&sha256, &mut neutralised);
    phone_a
        .send_events(&EventBatch {
            events: vec![EventDoc {
                seq: 100,
                at: "2026-12-06T09:00:00Z".into(),
                kind: herd_proto::api::events::SAMPLE_UPLOAD.into(),
                data: serde_json::json!({
                    "sha256": sha256,
                    "size": sample.len(),
                    "path": "/home/user-a/<b>dropper</b>.exe",
                    "reason": "submitted",
                    "neutralised": hex::encode(&neutralised),
                }),
            }],
        })
        .unwrap();

    // A one-time sign-in link, as an operator makes one.
    let link = Command::new(support::HERD)
        .args([
            "console",
            "link",
            "--label",
            "browser test",
            "--server",
            &center.url,
        ])
        .arg("--ca")
        .arg(center.data_dir.join("ca.pem"))
        .env("HERD_TOKEN", center.operator_token())
        .output()
        .unwrap();
    assert!(
        link.status.success(),
        "{}",
        String::from_utf8_lossy(&link.stderr)
    );
    let link = String::from_utf8(link.stdout).unwrap().trim().to_owned();
    assert!(
        link.starts_with(&format!("{}/console/link/herd_", center.url)),
        "{link}"
    );

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots");
    let mut script = Command::new("node")
        .arg(dir.join("console.spec.mjs"))
        .current_dir(&dir)
        .env("HERD_URL", &center.url)
        .env("HERD_TOKEN", center.operator_token())
        .env("HERD_LINK", &link)
        .env("HERD_SCREENSHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let (lines, received) = mpsc::channel();
    let stdout = script.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut output = Vec::new();
    loop {
        match received.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                if line == "LIVE-READY" {
                    // A detection reported by 45a, as its agent's outbox would send it.
                    phone_a
                        .send_events(&EventBatch {
                            events: vec![EventDoc {
                                seq: 1,
                                at: "2026-12-06T10:00:00Z".into(),
                                kind: "detection".into(),
                                data: serde_json::json!({
                                    "signature": "Eicar-Test-Signature",
                                    "file": "/home/user-a/eicar.com",
                                }),
                            }],
                        })
                        .unwrap();
                }
                output.push(line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() > deadline => {
                let _ = script.kill();
                panic!(
                    "the browser run took over 3 minutes:\n{}",
                    output.join("\n")
                );
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    let status = script.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut script.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        status.success(),
        "the browser run failed ({status}):\n{}\n{stderr}",
        output.join("\n")
    );
    println!("{}", output.join("\n"));
    println!("screenshots: {}", shots.display());
    // The verdict given in the browser published the sample's signature in Herd's set.
    let set = operator.herd_set().unwrap();
    assert!(
        set.iter()
            .any(|s| s.sha256 == sha256 && s.threat == "dropper-x"),
        "{set:?}"
    );
}
