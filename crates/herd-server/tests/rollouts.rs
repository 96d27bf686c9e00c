//! Rollout rings against a real `herd serve` (SPEC §3.4, §3.3.5): a new release reaches only
//! its canary ring, failed installs there halt it, every terminal that took it is planned back
//! to the last good release (and woken to fetch that plan), it is never offered outside its
//! ring, and an operator resumes, pauses, promotes and reverts it through `/v1/rollouts`.

mod support;

use std::time::{Duration, Instant};

use herd_client::Client;
use herd_planner::rings::ring_bucket;
use herd_proto::api::{
    CheckinRequest, EventBatch, EventDoc, PlanReport, ReportOutcome, RolloutSummary, events,
};
use herd_proto::plan::Action;
use herd_proto::terminal::InstalledDoc;
use support::{
    TestCenter, build_package, code, enrol, enrolment_token, feed, find, tuf_fetch, vendor_client,
};

const TERMINALS: usize = 40;
const RELEASE: &str = "acme/acme-av/1.1";
/// The canary ring's reach in basis points (20 %).
const CANARY: u32 = 2000;

fn center() -> TestCenter {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("center.toml");
    // The canary ring never promotes by itself here (1000 successes): only an operator moves it.
    std::fs::write(
        &config,
        "rollout_rings = \"canary=20%/1s/1000, broad=100%/0s/0\"\n\
         rollout_max_bad = 3\nrollout_check_secs = 1\n",
    )
    .unwrap();
    TestCenter::start_with(&["--config", config.to_str().unwrap()])
}

fn installed(version: &str, seq: u64) -> InstalledDoc {
    InstalledDoc {
        product: "acme-av".into(),
        version: version.into(),
        seq,
        pattern: format!("acme-{seq}"),
        format: "archive".into(),
    }
}

fn check_in(terminal: &Client, on: &InstalledDoc) -> herd_proto::api::CheckinResponse {
    terminal
        .checkin(&CheckinRequest {
            terminal: None,
            installed: Some(on.clone()),
            hardware: None,
            tz: None,
            agent_version: None,
            interfaces: None,
            tuf_timestamp_version: None,
            consent_waiting: None,
            messages_after: None,
            tuf_held: None,
        })
        .expect("check-in")
}

fn report(terminal: &Client, seq: u64, plan_id: &str, outcome: ReportOutcome, now: &InstalledDoc) {
    let report = PlanReport {
        plan_id: plan_id.to_owned(),
        outcome,
        steps: Vec::new(),
        installed: Some(now.clone()),
        message: None,
    };
    terminal
        .send_events(&EventBatch {
            events: vec![EventDoc {
                seq,
                at: herd_center::rfc3339(herd_center::unix_now()),
                kind: events::PLAN_REPORT.to_owned(),
                data: serde_json::to_value(&report).unwrap(),
            }],
        })
        .expect("events");
}

fn rollout(operator: &Client, release: &str) -> RolloutSummary {
    operator.rollout(release).expect("rollout")
}

fn wait_for_phase(operator: &Client, release: &str, phase: &str) -> (RolloutSummary, Duration) {
    let started = Instant::now();
    loop {
        if let Ok(r) = operator.rollout(release)
            && r.phase == phase
        {
            return (r, started.elapsed());
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{release} never became {phase}: {:?}",
            operator.rollout(release)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (at most 20 s) until no signed role lists `path`.
fn wait_unlisted(center: &TestCenter, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while find(center, path).is_some() {
        assert!(Instant::now() < deadline, "{path} is still listed");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits (at most 20 s) until a signed role lists `path`.
fn wait_listed(center: &TestCenter, path: &str) -> herd_tuf::TargetFile {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(file) = find(center, path) {
            return file;
        }
        assert!(Instant::now() < deadline, "{path} is never listed");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_failing_release_stays_in_its_canary_ring_and_is_reverted_there() {
    let center = center();
    let operator = center.operator();
    let work = tempfile::tempdir().unwrap();
    let acme = vendor_client(&center, "acme");
    let (first, first_packages) = build_package(work.path(), "1.0", 1);
    acme.upload_package(&first).unwrap();
    acme.publish_feed(
        "acme",
        &serde_json::to_vec(&feed("acme", &[("1.0", 1, &first_packages)])).unwrap(),
    )
    .unwrap();
    // A product's first release is not gated: it is recorded as complete.
    let (first_rollout, _) = wait_for_phase(&operator, "acme/acme-av/1.0", "complete");
    assert_eq!(first_rollout.reach_bp, 10_000);

    let token = enrolment_token(&center, TERMINALS as u64);
    let terminals: Vec<(String, Client)> = (0..TERMINALS)
        .map(|i| {
            let id = format!("box-{i:02}");
            let identity = enrol(&center, &token, &id, "user", "linux");
            (id, center.terminal_client(&identity))
        })
        .collect();
    let old = installed("1.0", 1);
    for (_, terminal) in &terminals {
        assert_eq!(check_in(terminal, &old).plan.action, Action::None);
    }

    let (second, second_packages) = build_package(work.path(), "1.1", 2);
    acme.upload_package(&second).unwrap();
    acme.publish_feed(
        "acme",
        &serde_json::to_vec(&feed(
            "acme",
            &[("1.0", 1, &first_packages), ("1.1", 2, &second_packages)],
        ))
        .unwrap(),
    )
    .unwrap();
    // At once, before the rollout task has even seen it: only the canary ring is offered 1.1.
    let canary: Vec<&(String, Client)> = terminals
        .iter()
        .filter(|(id, _)| ring_bucket(RELEASE, id) < CANARY)
        .collect();
    assert!(
        (3..=16).contains(&canary.len()),
        "{} of {TERMINALS} in a 20 % ring",
        canary.len()
    );
    let mut plans = Vec::new();
    for (id, terminal) in &terminals {
        let answer = check_in(terminal, &old);
        let in_canary = ring_bucket(RELEASE, id) < CANARY;
        let offered = answer
            .plan
            .to
            .as_ref()
            .is_some_and(|to| to.version == "1.1");
        assert_eq!(offered, in_canary, "{id}: {}", answer.plan.reason);
        plans.push((id.clone(), answer.plan_id));
    }
    let (rolling, _) = wait_for_phase(&operator, RELEASE, "rolling");
    let target =
        herd_proto::distribution::package_target("acme", "acme-av", "1.1", "linux", "archive");
    let listed = wait_listed(&center, &target);
    assert_eq!(
        (rolling.ring.as_str(), rolling.reach_bp),
        ("canary", CANARY)
    );

    // A terminal holds a push wait: the halt must wake it.
    let waiter = terminals[0].1.clone();
    let token_now = waiter.wait(None, Duration::from_secs(5)).unwrap().token;
    let woken = std::thread::spawn(move || {
        let answer = waiter.wait(Some(&token_now), Duration::from_secs(60));
        (answer, Instant::now())
    });

    // Two canary terminals install 1.1; the others' installs fail and roll back.
    let plan_of = |id: &str| plans.iter().find(|(t, _)| t == id).unwrap().1.clone();
    let new = installed("1.1", 2);
    let (took, failed) = canary.split_at(2);
    for (id, terminal) in took {
        report(terminal, 1, &plan_of(id), ReportOutcome::Succeeded, &new);
        check_in(terminal, &new);
    }
    let mut last_failure = Instant::now();
    for (id, terminal) in failed.iter().take(3) {
        report(terminal, 1, &plan_of(id), ReportOutcome::RolledBack, &old);
        last_failure = Instant::now();
    }
    let (halted, _) = wait_for_phase(&operator, RELEASE, "reverted");
    let halt_after = last_failure.elapsed();
    assert_eq!((halted.succeeded, halted.failed), (2, 3), "{halted:?}");
    assert!(
        halted.reason.as_deref().unwrap_or("").contains("threshold"),
        "{halted:?}"
    );
    assert!(
        halt_after < Duration::from_secs(5),
        "halted {halt_after:?} after the third failure"
    );
    let (answer, woken_at) = woken.join().unwrap();
    assert!(answer.unwrap().changed, "the halt moved the change token");
    assert!(woken_at.elapsed() < Duration::from_secs(20));

    // The halt withdraws 1.1 from the signed metadata: no role lists it and the center does
    // not serve it, so no terminal and no site mirror can fetch it; 1.0 stays.
    wait_unlisted(&center, &target);
    assert!(
        find(
            &center,
            &herd_proto::distribution::package_target("acme", "acme-av", "1.0", "linux", "archive")
        )
        .is_some()
    );
    let (status, _) = tuf_fetch(
        &center,
        &format!(
            "/tuf/targets/{}",
            herd_proto::distribution::consistent_target_name(&target, &listed.hashes["sha256"])
        ),
    );
    assert_eq!(status, 404, "the withdrawn package is not served");

    // Every terminal that took it is planned back to 1.0; nobody is offered 1.1 any more.
    for (id, terminal) in took {
        let back = check_in(terminal, &new);
        assert_eq!(
            back.plan.action,
            Action::Update,
            "{id}: {}",
            back.plan.reason
        );
        let to = back.plan.to.as_ref().unwrap();
        assert_eq!((to.version.as_str(), to.seq), ("1.0", 1));
        assert!(
            back.plan.reason.contains("withdrawn"),
            "{}",
            back.plan.reason
        );
    }
    for (id, terminal) in &terminals {
        let plan = check_in(terminal, &old).plan;
        assert_eq!(plan.action, Action::None, "{id}: {}", plan.reason);
    }

    // The operator's hand: a bad action and an unknown release are refused by name.
    let (status, code_) = code(operator.rollout_act(RELEASE, "launch").unwrap_err());
    assert_eq!((status, code_.as_str()), (400, "bad_request"));
    let (status, _) = code(operator.rollout("acme/acme-av/9.9").unwrap_err());
    assert_eq!(status, 404);
    let (status, _) = code(operator.rollout_act(RELEASE, "pause").unwrap_err());
    assert_eq!(status, 409, "a reverted rollout does not pause");

    // Resume counts afresh in the canary ring; pause holds it; promote reaches everyone.
    let resumed = operator.rollout_act(RELEASE, "resume").unwrap();
    assert_eq!((resumed.phase.as_str(), resumed.failed), ("rolling", 0));
    let offered_now = |terminal: &Client| {
        check_in(terminal, &old)
            .plan
            .to
            .is_some_and(|to| to.version == "1.1")
    };
    for (id, terminal) in &terminals {
        assert_eq!(
            offered_now(terminal),
            ring_bucket(RELEASE, id) < CANARY,
            "{id}"
        );
    }
    assert_eq!(
        operator.rollout_act(RELEASE, "pause").unwrap().phase,
        "paused"
    );
    let promoted = operator.rollout_act(RELEASE, "promote").unwrap();
    assert_eq!(
        (promoted.ring.as_str(), promoted.reach_bp),
        ("broad", 10_000)
    );
    for (id, terminal) in &terminals {
        assert!(offered_now(terminal), "{id} after the promotion to broad");
    }
    assert!(
        wait_listed(&center, &target).hashes == listed.hashes,
        "resumed, 1.1 is listed again"
    );
    let reverted = operator.rollout_act(RELEASE, "revert").unwrap();
    assert_eq!(reverted.phase, "reverted");
    wait_unlisted(&center, &target);
    for (id, terminal) in &terminals {
        assert!(!offered_now(terminal), "{id} after the revert");
    }
    let listed = operator.rollouts().unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|r| (r.release.as_str(), r.phase.as_str()))
            .collect::<Vec<_>>(),
        [("acme/acme-av/1.0", "complete"), (RELEASE, "reverted")]
    );
    let _ = rollout(&operator, RELEASE);
}

#[test]
fn without_rings_a_center_offers_every_release_at_once_and_says_so() {
    let center = TestCenter::start();
    let (status, code_) = code(center.operator().rollouts().unwrap_err());
    assert_eq!((status, code_.as_str()), (409, "conflict"));
}

/// A canary ring by group (`canary=group:it-staff`): a new release reaches exactly the
/// terminals the placement rules put in `it-staff`, whatever their bucket, and everyone once
/// promoted to the broad ring.
#[test]
fn a_group_canary_ring_reaches_its_group_and_nobody_else() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("center.toml");
    std::fs::write(
        &config,
        "rollout_rings = \"canary=group:it-staff/1s/1000, broad=100%/0s/0\"\n\
         rollout_check_secs = 1\n",
    )
    .unwrap();
    let center = TestCenter::start_with(&["--config", config.to_str().unwrap()]);
    let operator = center.operator();
    operator
        .put_group(&herd_proto::api::GroupDoc {
            id: "it-staff".into(),
            description: "the first to get every release".into(),
            policy: herd_proto::terminal::PolicyDoc {
                apply: "latest-same-vendor".into(),
                min_danger: None,
                consent: None,
                window: None,
                tz: None,
                vendors: None,
            },
            terminals: 0,
        })
        .unwrap();
    operator
        .put_rules(&herd_proto::api::PlacementRules {
            rules: vec![herd_proto::api::PlacementRule {
                group: "it-staff".into(),
                kind: None,
                platform: None,
                address: None,
                user: Some("admin".into()),
            }],
        })
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let acme = vendor_client(&center, "acme");
    let (first, first_packages) = build_package(work.path(), "1.0", 1);
    acme.upload_package(&first).unwrap();
    acme.publish_feed(
        "acme",
        &serde_json::to_vec(&feed("acme", &[("1.0", 1, &first_packages)])).unwrap(),
    )
    .unwrap();
    wait_for_phase(&operator, "acme/acme-av/1.0", "complete");
    let token = enrolment_token(&center, 20);
    let terminals: Vec<(bool, Client)> = (0..20)
        .map(|i| {
            let staff = i % 5 == 0;
            let user = if staff { "admin" } else { "user" };
            let identity = enrol(&center, &token, &format!("desk-{i:02}"), user, "linux");
            (staff, center.terminal_client(&identity))
        })
        .collect();
    let (second, second_packages) = build_package(work.path(), "1.1", 2);
    acme.upload_package(&second).unwrap();
    acme.publish_feed(
        "acme",
        &serde_json::to_vec(&feed(
            "acme",
            &[("1.0", 1, &first_packages), ("1.1", 2, &second_packages)],
        ))
        .unwrap(),
    )
    .unwrap();
    let old = installed("1.0", 1);
    let offered = |terminal: &Client| {
        check_in(terminal, &old)
            .plan
            .to
            .is_some_and(|to| to.version == "1.1")
    };
    // At once (before the rollout task saw it) and once it rolls: the group only.
    for round in 0..2 {
        for (i, (staff, terminal)) in terminals.iter().enumerate() {
            assert_eq!(offered(terminal), *staff, "round {round}, terminal {i}");
        }
        wait_for_phase(&operator, RELEASE, "rolling");
    }
    // The API and `herd rollouts list|show` say which groups the ring reaches.
    let rolling = rollout(&operator, RELEASE);
    assert_eq!(
        (rolling.reach_bp, rolling.groups.as_slice()),
        (0, ["it-staff".to_owned()].as_slice())
    );
    for command in [&["rollouts", "list"][..], &["rollouts", "show", RELEASE]] {
        let output = support::herd_as_operator(&center, command);
        let out = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{output:?}");
        assert!(out.contains("group it-staff"), "{out}");
    }
    let promoted = operator.rollout_act(RELEASE, "promote").unwrap();
    assert_eq!(promoted.ring, "broad");
    for (i, (_, terminal)) in terminals.iter().enumerate() {
        assert!(offered(terminal), "terminal {i} after the promotion");
    }
}
