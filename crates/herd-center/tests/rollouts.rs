//! The fault hook of rollout rings, in process (SPEC §3.3.5): `Center::on_fault`, which fault
//! intake calls, attributes a fault to the release the terminal runs while that release rolls
//! out, and enough of them halt it and plan the terminals that took it back. A real center
//! library over a real SQLite store; terminals are enrolled straight into the store.

use herd_center::config::{CenterConfig, ConfigFile};
use herd_center::{Caller, Center, ErrorKind};
use herd_planner::rings::ring_bucket;
use herd_proto::api::{CheckinRequest, CheckinResponse};
use herd_proto::fault::{Alternative, Decision, ReplacementEntry};
use herd_proto::plan::Action;
use herd_proto::terminal::InstalledDoc;
use herd_store::{EnrolTokenRow, NewTerminal, SqliteStore, Store, UNKNOWN_GROUP};
use serde_json::json;
use std::sync::Arc;

const RELEASE: &str = "acme/acme-av/2.0";

fn feed(versions: &[(&str, u64)]) -> Vec<u8> {
    let releases: Vec<_> = versions
        .iter()
        .map(|(version, seq)| {
            json!({"product": "acme-av", "version": version, "pattern": format!("acme-{seq}"),
                   "seq": seq, "published": format!("2000-01-0{seq}T00:00:00Z"),
                   "packages": [{"platform": "linux", "format": "archive",
                                 "sha256": format!("{seq:064x}"), "size": 1000}]})
        })
        .collect();
    json!({
        "format": "herd.catalog/v1",
        "vendors": [{"id": "acme", "name": "Acme"}],
        "products": [{"id": "acme-av", "vendor": "acme", "name": "AV", "platforms": ["linux"]}],
        "releases": releases, "threats": [], "coverage": []
    })
    .to_string()
    .into_bytes()
}

fn on(version: &str, seq: u64) -> InstalledDoc {
    InstalledDoc {
        product: "acme-av".into(),
        version: version.into(),
        seq,
        pattern: format!("acme-{seq}"),
        format: "archive".into(),
    }
}

async fn check_in(center: &Center, id: &str, installed: InstalledDoc) -> CheckinResponse {
    let known = center.known_terminal(id).await.unwrap();
    let request = CheckinRequest {
        terminal: None,
        installed: Some(installed),
        hardware: None,
        tz: None,
        agent_version: None,
        interfaces: None,
        tuf_timestamp_version: None,
        consent_waiting: None,
        messages_after: None,
        tuf_held: None,
    };
    let answer = center
        .check_in(&known, request, "127.0.0.1".to_owned())
        .await
        .unwrap();
    serde_json::from_str(&answer.into_json()).unwrap()
}

/// A center library over a fresh SQLite store with one ring reaching everyone that never
/// promotes by itself (`extra_config` added), acme-av 1.0 complete and 2.0 rolling, and
/// `terminals` terminals `<prefix>-<i>` enrolled straight into the store.
async fn started(
    extra_config: &str,
    prefix: &str,
    terminals: u64,
) -> (tempfile::TempDir, Arc<Center>, i64) {
    started_with_rings("all=100%/0s/1000", extra_config, prefix, terminals).await
}

/// [`started`] under these rings.
async fn started_with_rings(
    rings: &str,
    extra_config: &str,
    prefix: &str,
    terminals: u64,
) -> (tempfile::TempDir, Arc<Center>, i64) {
    herd_tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("herd.db"))
            .await
            .unwrap(),
    );
    let file = ConfigFile::parse(
        "test",
        &format!(
            "data_dir = {:?}\nrollout_rings = \"{rings}\"\n{extra_config}",
            dir.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    let center = Center::open_with_store(CenterConfig::from_file(file).unwrap(), store.clone())
        .await
        .unwrap();
    let now = herd_center::unix_now();
    center
        .publish_feed(&Caller::Operator, "acme", &feed(&[("1.0", 1)]))
        .await
        .unwrap();
    center.rollout_tick(now).await.unwrap();
    center
        .publish_feed(&Caller::Operator, "acme", &feed(&[("1.0", 1), ("2.0", 2)]))
        .await
        .unwrap();
    center.rollout_tick(now).await.unwrap();
    let hash = "h".repeat(64);
    store
        .enrol_token_insert(EnrolTokenRow {
            hash: hash.clone(),
            label: "rollouts".to_owned(),
            uses_left: terminals,
            created_at: 0,
            expires_at: i64::MAX,
            reenrol_terminal: None,
        })
        .await
        .unwrap();
    for i in 0..terminals {
        let terminal = NewTerminal {
            id: format!("{prefix}-{i}"),
            user: None,
            hardware: r#"{"kind":"linux","platform":"linux"}"#.to_owned(),
            tz: None,
            group: UNKNOWN_GROUP.to_owned(),
            cert_sha256: format!("{i:064x}"),
            enrolled_at: 1,
            address: "127.0.0.1".to_owned(),
            site: None,
        };
        store.enrol(&hash, 1, terminal).await.unwrap();
    }
    center.follow_terminal_changes().await.unwrap();
    (dir, center, now)
}

#[tokio::test]
async fn faults_attributed_to_a_rolling_release_halt_it_and_plan_it_back() {
    // One ring reaching everyone that never promotes by itself: only faults move it here.
    let (_dir, center, now) = started("rollout_max_bad = 2\n", "t", 4).await;
    assert_eq!(
        center.rollout_summary(RELEASE).await.unwrap().phase,
        "rolling"
    );
    for i in 0..3 {
        check_in(&center, &format!("t-{i}"), on("2.0", 2)).await;
    }
    check_in(&center, "t-3", on("1.0", 1)).await;

    // A fault counts against the rolling release the terminal runs, and only that.
    assert_eq!(center.on_fault("t-0", None, now).await.unwrap(), [RELEASE]);
    assert_eq!(
        center.on_fault("t-3", None, now).await.unwrap(),
        Vec::<String>::new(),
        "1.0 is complete: its faults are fault recovery's, not a rollout's"
    );
    let unknown = center.on_fault("nobody", None, now).await.unwrap_err();
    assert_eq!(unknown.kind, ErrorKind::NotFound, "{unknown}");
    center.rollout_tick(now).await.unwrap();
    let one = center.rollout_summary(RELEASE).await.unwrap();
    assert_eq!((one.phase.as_str(), one.faults), ("rolling", 1));

    // The second reaches the threshold: halted, withdrawn, and planned back.
    center.on_fault("t-1", None, now).await.unwrap();
    center.rollout_tick(now).await.unwrap();
    let halted = center.rollout_summary(RELEASE).await.unwrap();
    assert_eq!((halted.phase.as_str(), halted.faults), ("reverted", 2));
    assert!(halted.reason.unwrap().contains("2 faults"));
    let back = check_in(&center, "t-2", on("2.0", 2)).await;
    assert_eq!(back.plan.action, Action::Update, "{}", back.plan.reason);
    assert_eq!(back.plan.to.unwrap().version, "1.0");
    let stays = check_in(&center, "t-3", on("1.0", 1)).await;
    assert_eq!(stays.plan.action, Action::None, "{}", stays.plan.reason);
    // A halted rollout counts nothing more.
    assert!(center.on_fault("t-2", None, now).await.unwrap().is_empty());
}

#[tokio::test]
async fn terminals_that_go_silent_after_receiving_a_release_halt_it() {
    let (_dir, center, now) =
        started("rollout_max_bad = 2\ncheckin_interval_secs = 60\n", "s", 3).await;
    // Three terminals are planned 2.0; s-2 comes back on it, the other two are never heard of.
    for i in 0..3 {
        let plan = check_in(&center, &format!("s-{i}"), on("1.0", 1))
            .await
            .plan;
        assert_eq!(plan.to.unwrap().version, "2.0");
    }
    check_in(&center, "s-2", on("2.0", 2)).await;
    // Within three intervals nobody is silent yet.
    center.rollout_tick(now + 120).await.unwrap();
    let quiet = center.rollout_summary(RELEASE).await.unwrap();
    assert_eq!((quiet.phase.as_str(), quiet.silent), ("rolling", 0));
    // Three intervals after the check-ins, with a margin for a slow machine: `now` was read
    // before them, and a check-in records the clock at the moment it is stored.
    center.rollout_tick(now + 240).await.unwrap();
    let halted = center.rollout_summary(RELEASE).await.unwrap();
    assert_eq!((halted.phase.as_str(), halted.silent), ("reverted", 2));
    assert!(halted.reason.unwrap().contains("2 silent"));
}

/// Company B's programs mw-b and mw-h 2.0: program releases fault recovery distributes as
/// replacements (never planned).
fn programs_feed() -> Vec<u8> {
    let release = |product: &str, seq: u64| {
        json!({"product": product, "version": "2.0", "pattern": format!("{product} 2.0"),
               "seq": seq, "published": "2000-01-01T00:00:00Z",
               "packages": [{"platform": "linux", "format": "archive",
                             "sha256": format!("{:064x}", seq + 100), "size": 1000}]})
    };
    let product = |id: &str| {
        json!({"id": id, "vendor": "company-b", "name": id, "kind": "program",
               "platforms": ["linux"]})
    };
    json!({
        "format": "herd.catalog/v1",
        "vendors": [{"id": "company-b", "name": "Company B"}],
        "products": [product("mw-b"), product("mw-h")],
        "releases": [release("mw-b", 1), release("mw-h", 2)],
        "threats": [], "coverage": []
    })
    .to_string()
    .into_bytes()
}

async fn send(center: &Center, terminal: &str, seq: u64, kind: &str, data: serde_json::Value) {
    let known = center.known_terminal(terminal).await.unwrap();
    let batch = herd_proto::api::EventBatch {
        events: vec![herd_proto::api::EventDoc {
            seq,
            at: herd_center::rfc3339(herd_center::unix_now()),
            kind: kind.to_owned(),
            data,
        }],
    };
    center.append_events(&known, batch).await.unwrap();
}

/// `terminal` reports a fault of `program` (company A's 1.0 unless it is company B's).
async fn fault(center: &Center, terminal: &str, seq: u64, program: &str) {
    let (vendor, version) = if program.starts_with("mw-b") || program.starts_with("mw-h") {
        ("company-b", "2.0")
    } else {
        ("company-a", "1.0")
    };
    let report = json!({"program": program, "vendor": vendor, "version": version,
                        "platform": "linux", "kind": "exit", "exit_code": 1});
    send(
        center,
        terminal,
        seq,
        herd_proto::api::events::FAULT_REPORT,
        report,
    )
    .await;
}

/// The decision of `terminal`'s verdict on its report `seq`, with the alternative it names.
async fn verdict(center: &Center, terminal: &str, seq: u64) -> (Decision, Option<String>) {
    let verdicts = center
        .fault_verdicts(terminal, true)
        .await
        .unwrap()
        .verdicts;
    let v = verdicts
        .iter()
        .find(|v| v.seq == seq)
        .unwrap_or_else(|| panic!("no verdict on {terminal}'s report {seq}: {verdicts:?}"));
    (
        v.decision,
        v.alternative.as_ref().and_then(|a| a.target.clone()),
    )
}

const MW_B: &str = "company-b/mw-b/2.0";
const MW_H: &str = "company-b/mw-h/2.0";
const MW_B_TARGET: &str = "packages/company-b/mw-b/2.0/linux.archive";
const MW_H_TARGET: &str = "packages/company-b/mw-h/2.0/linux.archive";

/// Replacements roll out in rings (issue 14): the program release a fault verdict distributes
/// reaches the faulting terminals of its open rings, the others are told `held`; promoted, the
/// held faults are decided again as `replace` (same seq); the replacements' outcomes count for
/// its rollout, a failed one on the canary halts it, and then the held faults are escalated
/// and nobody else is sent it; faults of the new program count against it too.
#[tokio::test]
async fn replacements_roll_out_in_rings_and_held_faults_are_decided_again() {
    let (_dir, center, now) = started_with_rings(
        // Neither ring moves by itself (a complete rollout counts nothing more): only the
        // operator and the threshold move them here.
        "canary=50%/3600s/1000, broad=100%/3600s/1000",
        "rollout_max_bad = 1\n",
        "r",
        16,
    )
    .await;
    center
        .publish_feed(&Caller::Operator, "company-b", &programs_feed())
        .await
        .unwrap();
    center.rollout_tick(now).await.unwrap();
    // A program's first release rolls out too: its fallback is the program it replaces.
    for key in [MW_B, MW_H] {
        let rollout = center.rollout_summary(key).await.unwrap();
        assert_eq!(
            (
                rollout.phase.as_str(),
                rollout.ring.as_str(),
                rollout.replacement
            ),
            ("rolling", "canary", true),
            "{key}"
        );
    }
    assert!(!center.rollout_summary(RELEASE).await.unwrap().replacement);
    for (program, alternative) in [("mw-a", "mw-b"), ("mw-x", "mw-h")] {
        center
            .put_replacement(
                program,
                "linux",
                ReplacementEntry {
                    program: program.into(),
                    platform: "linux".into(),
                    alternatives: vec![Alternative {
                        program: alternative.into(),
                        vendor: "company-b".into(),
                        version: "2.0".into(),
                        package_sha256: None,
                        package_size: None,
                        target: None,
                    }],
                },
            )
            .await
            .unwrap();
    }
    let ids: Vec<String> = (0..16).map(|i| format!("r-{i}")).collect();
    let in_canary = |key: &str, id: &str| ring_bucket(key, id) < 5000;
    assert!(ids.iter().any(|id| in_canary(MW_B, id)) && ids.iter().any(|id| !in_canary(MW_B, id)));

    // Every terminal's mw-a faults: the canary of mw-b's rollout is sent it, the rest held.
    for id in &ids {
        fault(&center, id, 1, "mw-a").await;
    }
    for id in &ids {
        let expected = if in_canary(MW_B, id) {
            Decision::Replace
        } else {
            Decision::Held
        };
        // A held verdict names what it waits for.
        assert_eq!(
            verdict(&center, id, 1).await,
            (expected, Some(MW_B_TARGET.to_owned())),
            "{id}"
        );
    }
    // An agent that does not ask for held verdicts (older than them: it would refuse the
    // whole answer for a decision it does not know) is not sent them.
    let outside = ids.iter().find(|id| !in_canary(MW_B, id)).unwrap();
    assert!(
        center
            .fault_verdicts(outside, false)
            .await
            .unwrap()
            .verdicts
            .is_empty()
    );
    // The canary's replacements took: successes of the rollout.
    let canary: Vec<&String> = ids.iter().filter(|id| in_canary(MW_B, id)).collect();
    for id in &canary {
        let outcome = json!({"program": "mw-a", "alternative": "mw-b", "seq": 1,
                             "replaced": true, "message": "replaced by mw-b 2.0"});
        send(
            &center,
            id,
            2,
            herd_proto::api::events::FAULT_REPLACED,
            outcome,
        )
        .await;
    }
    let rollout = center.rollout_summary(MW_B).await.unwrap();
    assert_eq!(
        (rollout.succeeded, rollout.failed),
        (canary.len() as u64, 0)
    );

    // Promoted: every held fault is decided again, under its own seq, as `replace`.
    let promoted = center.rollout_act(MW_B, "promote").await.unwrap();
    assert_eq!(promoted.ring, "broad");
    for id in &ids {
        assert_eq!(
            verdict(&center, id, 1).await,
            (Decision::Replace, Some(MW_B_TARGET.to_owned())),
            "{id} after the promotion"
        );
    }

    // mw-x faults everywhere: mw-h's canary is sent it, the rest held.
    for id in &ids {
        fault(&center, id, 3, "mw-x").await;
    }
    let h_canary: Vec<&String> = ids.iter().filter(|id| in_canary(MW_H, id)).collect();
    let first = h_canary[0];
    assert_eq!(verdict(&center, first, 3).await.0, Decision::Replace);
    // The replacement fails on a canary terminal (its health check): a failed install,
    // which crosses the threshold; the rollout is halted and withdrawn.
    let failed = json!({"program": "mw-x", "alternative": "mw-h", "seq": 3, "replaced": false,
                        "failed_step": "health_check",
                        "message": "the health check failed; the old program was restored"});
    send(
        &center,
        first,
        4,
        herd_proto::api::events::FAULT_REPLACED,
        failed,
    )
    .await;
    assert_eq!(center.rollout_summary(MW_H).await.unwrap().failed, 1);
    center.rollout_tick(now).await.unwrap();
    let halted = center.rollout_summary(MW_H).await.unwrap();
    assert_eq!(halted.phase, "reverted");
    assert!(halted.reason.unwrap().contains("1 failed install"));
    // The held faults are escalated (the replacement is known bad: nothing will come), and
    // the canary's verdicts already given stay what they were.
    for id in &ids {
        let expected = if in_canary(MW_H, id) {
            (Decision::Replace, Some(MW_H_TARGET.to_owned()))
        } else {
            (Decision::Escalated, None)
        };
        assert_eq!(
            verdict(&center, id, 3).await,
            expected,
            "{id} after the halt"
        );
    }
    // A fault after the halt is not sent it, whatever the terminal's ring.
    for id in [first, ids.iter().find(|id| !in_canary(MW_H, id)).unwrap()] {
        fault(&center, id, 5, "mw-x").await;
        assert_eq!(
            verdict(&center, id, 5).await,
            (Decision::Escalated, None),
            "{id}"
        );
    }
    let bucket = center
        .fault_buckets()
        .await
        .unwrap()
        .buckets
        .into_iter()
        .find(|b| b.program == "mw-x")
        .unwrap();
    assert_eq!(bucket.decision, Decision::Escalated);
    assert!(bucket.escalated_at.is_some());

    // A fault of the new program itself counts against its rollout (still rolling in its
    // last ring): it halts mw-b too.
    assert_eq!(
        center
            .on_fault(
                first,
                Some(
                    &serde_json::from_value(json!({
                "program": "mw-b", "vendor": "company-b", "version": "2.0",
                "platform": "linux", "kind": "crash", "signal": 11}))
                    .unwrap()
                ),
                now
            )
            .await
            .unwrap(),
        [MW_B]
    );
    center.rollout_tick(now).await.unwrap();
    assert_eq!(
        center.rollout_summary(MW_B).await.unwrap().phase,
        "reverted"
    );
}

/// Faults held while rings were configured are not left waiting for a rollout nobody drives
/// once an operator turns rings off: the next start decides them again, as `replace`.
#[tokio::test]
async fn held_faults_are_sent_their_replacement_when_rings_are_turned_off() {
    let (dir, center, now) =
        started_with_rings("canary=1%/3600s/1000, broad=100%/3600s/1000", "", "o", 4).await;
    center
        .publish_feed(&Caller::Operator, "company-b", &programs_feed())
        .await
        .unwrap();
    center.rollout_tick(now).await.unwrap();
    center
        .put_replacement(
            "mw-a",
            "linux",
            ReplacementEntry {
                program: "mw-a".into(),
                platform: "linux".into(),
                alternatives: vec![Alternative {
                    program: "mw-b".into(),
                    vendor: "company-b".into(),
                    version: "2.0".into(),
                    package_sha256: None,
                    package_size: None,
                    target: None,
                }],
            },
        )
        .await
        .unwrap();
    let held: Vec<String> = (0..4)
        .map(|i| format!("o-{i}"))
        .filter(|id| ring_bucket(MW_B, id) >= 100)
        .collect();
    assert!(!held.is_empty());
    for id in &held {
        fault(&center, id, 1, "mw-a").await;
        assert_eq!(verdict(&center, id, 1).await.0, Decision::Held, "{id}");
    }
    // The same database, opened by a center without rings.
    let store = center.store.clone();
    drop(center);
    let file = ConfigFile::parse(
        "test",
        &format!(
            "data_dir = {:?}\n",
            dir.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    let center = Center::open_with_store(CenterConfig::from_file(file).unwrap(), store)
        .await
        .unwrap();
    for id in &held {
        assert_eq!(
            verdict(&center, id, 1).await,
            (Decision::Replace, Some(MW_B_TARGET.to_owned())),
            "{id}"
        );
    }
}
