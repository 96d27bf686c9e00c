//! The fault hook of rollout rings, in process (SPEC §3.3.5): `Center::on_fault`, which fault
//! intake calls, attributes a fault to the release the terminal runs while that release rolls
//! out, and enough of them halt it and plan the terminals that took it back. A real center
//! library over a real SQLite store; terminals are enrolled straight into the store.

use herd_center::config::{CenterConfig, ConfigFile};
use herd_center::{Caller, Center, ErrorKind};
use herd_proto::api::{CheckinRequest, CheckinResponse};
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
            "data_dir = {:?}\nrollout_rings = \"all=100%/0s/1000\"\nrollout_max_bad = 2\n{extra_config}",
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
    let (_dir, center, now) = started("", "t", 4).await;
    assert_eq!(
        center.rollout_summary(RELEASE).await.unwrap().phase,
        "rolling"
    );
    for i in 0..3 {
        check_in(&center, &format!("t-{i}"), on("2.0", 2)).await;
    }
    check_in(&center, "t-3", on("1.0", 1)).await;

    // A fault counts against the rolling release the terminal runs, and only that.
    assert_eq!(
        center.on_fault("t-0", now).await.unwrap().as_deref(),
        Some(RELEASE)
    );
    assert_eq!(
        center.on_fault("t-3", now).await.unwrap(),
        None,
        "1.0 is complete: its faults are fault recovery's, not a rollout's"
    );
    let unknown = center.on_fault("nobody", now).await.unwrap_err();
    assert_eq!(unknown.kind, ErrorKind::NotFound, "{unknown}");
    center.rollout_tick(now).await.unwrap();
    let one = center.rollout_summary(RELEASE).await.unwrap();
    assert_eq!((one.phase.as_str(), one.faults), ("rolling", 1));

    // The second reaches the threshold: halted, withdrawn, and planned back.
    center.on_fault("t-1", now).await.unwrap();
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
    assert_eq!(center.on_fault("t-2", now).await.unwrap(), None);
}

#[tokio::test]
async fn terminals_that_go_silent_after_receiving_a_release_halt_it() {
    let (_dir, center, now) = started("checkin_interval_secs = 60\n", "s", 3).await;
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
