//! Several center processes on one PostgreSQL database (two `Center`s with pools and listeners
//! of their own, as two `herd serve` would have), where what one process does must hold for
//! the fleet, not for that process alone: an outbreak raised half through each gives one
//! summary and one digest per window at a real webhook sink; a consent answered through one
//! process's e-mailed link wakes the terminal waiting on the other; a verdict signed through
//! one process makes Herd's set downloadable from the other as soon as it serves the new
//! metadata. Skipped unless HERD_TEST_POSTGRES_URL names a server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use herd_center::Center;
use herd_center::alerts::{AlertEvent, AlertKind};
use herd_center::config::{CenterConfig, ConfigFile};
use herd_center::consent::LinkState;
use herd_center::wait::WaitOutcome;
use herd_proto::api::VerdictDoc;
use herd_proto::consent::TerminalEmail;
use herd_proto::distribution::{HERD_SET_TARGET, consistent_target_name};
use herd_store::{EnrolTokenRow, NewTerminal, UNKNOWN_GROUP};
use tokio::net::TcpListener;
use tokio::sync::watch;

mod support;

use support::{postgres_schema, receiver};

/// Two centers on one fresh schema, sharing blobs and the key-encryption key, each configured
/// with `extra`; `None` skips the test.
async fn two_centers(
    prefix: &str,
    dir: &std::path::Path,
    extra: &str,
) -> Option<(Arc<Center>, Arc<Center>)> {
    herd_tls::install_crypto_provider();
    let url = postgres_schema(prefix).await?;
    std::fs::write(dir.join("ca.kek"), "the fleet's key-encryption key").unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        let owner_only = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(dir.join("ca.kek"), owner_only).unwrap();
    }
    let open = |name: &str| {
        let text = format!(
            "data_dir = {:?}\ndatabase = {url:?}\nblob_dir = {:?}\nca_kek_file = {:?}\n{extra}",
            dir.join(name).display().to_string(),
            dir.join("blobs").display().to_string(),
            dir.join("ca.kek").display().to_string(),
        );
        CenterConfig::from_file(ConfigFile::parse("test", &text).unwrap()).unwrap()
    };
    let one = Center::open(open("one")).await.unwrap();
    let two = Center::open(open("two")).await.unwrap();
    Some((one, two))
}

async fn wait_for(what: &str, within: Duration, mut done: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbreak_raised_through_two_processes_gives_one_summary_and_one_digest() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = receiver(listener).await;
    let alerts = format!(
        r#"
[alerts]
window_secs = 4
burst = 3
[[alerts.channels]]
name = "ops"
type = "webhook"
url = "http://{addr}/hooks/outbreak"
[[alerts.rules]]
name = "outbreak"
kinds = ["detection"]
channels = ["ops"]
"#
    );
    let Some((one, two)) = two_centers("herd_alerts_shared", dir.path(), &alerts).await else {
        eprintln!("skipped: HERD_TEST_POSTGRES_URL is not set");
        return;
    };
    let (_stop, stop_rx) = watch::channel(false);
    for center in [&one, &two] {
        tokio::spawn(center.clone().deliver_alerts(stop_rx.clone()));
    }
    // 1,200 detections, each process raising every other one, at the same time.
    let started = Instant::now();
    let raise = |center: Arc<Center>, parity: usize| {
        tokio::spawn(async move {
            for i in (parity..1200).step_by(2) {
                center.alerts.raise(AlertEvent::new(
                    AlertKind::Detection,
                    format!("pc-{}", i % 300),
                    "Eicar-Test-Signature in /home/user/eicar.com, quarantined",
                ));
                if i % 100 < 2 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let (a, b) = tokio::join!(raise(one.clone(), 0), raise(two.clone(), 1));
    a.unwrap();
    b.unwrap();
    eprintln!(
        "raising 1,200 alerts through two processes took {:?}",
        started.elapsed()
    );
    wait_for("the digest", Duration::from_secs(30), async || {
        received.lock().unwrap().len() >= 5
    })
    .await;
    // Another window passes with nothing new: nothing more is sent, by either process.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let bodies: Vec<serde_json::Value> = received
        .lock()
        .unwrap()
        .iter()
        .map(|(_, body)| serde_json::from_str(body).unwrap())
        .collect();
    let mut kinds: Vec<&str> = bodies
        .iter()
        .map(|b| b["herd"]["kind"].as_str().unwrap())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["detection", "detection", "detection", "digest", "summary"],
        "{bodies:#?}"
    );
    let digest = bodies
        .iter()
        .find(|b| b["herd"]["kind"] == "digest")
        .unwrap();
    assert_eq!(digest["herd"]["count"], 1200 - 3, "{digest}");
    assert!(
        digest["text"]
            .as_str()
            .unwrap()
            .contains("1197 more alerts"),
        "{digest}"
    );
    // Each delivery was sent once, whichever process sent it.
    let list = two.alert_deliveries(None, Some(100)).await.unwrap();
    assert_eq!(list.deliveries.len(), 5);
    assert!(
        list.deliveries
            .iter()
            .all(|d| d.state == "delivered" && d.attempts == 1),
        "{:#?}",
        list.deliveries
    );
}

/// Enrols `id` directly in the store both centers share.
async fn enrol(center: &Center, id: &str) {
    let hash = "e".repeat(64);
    center
        .store
        .enrol_token_insert(EnrolTokenRow {
            hash: hash.clone(),
            label: "processes".into(),
            uses_left: 1,
            created_at: 0,
            expires_at: i64::MAX,
            reenrol_terminal: None,
        })
        .await
        .unwrap();
    center
        .store
        .enrol(
            &hash,
            1,
            NewTerminal {
                id: id.into(),
                user: None,
                hardware: r#"{"kind":"pc","platform":"pc"}"#.into(),
                tz: None,
                group: UNKNOWN_GROUP.into(),
                cert_sha256: "d".repeat(64),
                enrolled_at: 1,
                address: "127.0.0.1".into(),
                site: None,
            },
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_answered_through_one_process_wakes_the_terminal_waiting_on_another() {
    let dir = tempfile::tempdir().unwrap();
    // The mail is queued, not sent: no delivery worker runs, the test reads the queue.
    let alerts = r#"
[alerts]
consent_channel = "mail"
[[alerts.channels]]
name = "mail"
type = "email"
smtp_host = "127.0.0.1"
smtp_port = 9
from = "herd@example.org"
to = ["unused@example.org"]
"#;
    let Some((one, two)) = two_centers("herd_consent_nudge", dir.path(), alerts).await else {
        eprintln!("skipped: HERD_TEST_POSTGRES_URL is not set");
        return;
    };
    let (_stop, stop_rx) = watch::channel(false);
    for center in [&one, &two] {
        let (center, stop_rx) = (center.clone(), stop_rx.clone());
        tokio::spawn(async move {
            center
                .live
                .share(&*center.store, &center.waits, stop_rx)
                .await
        });
    }
    enrol(&one, "pc-mail").await;
    one.set_terminal_email(
        "pc-mail",
        TerminalEmail {
            email: Some("user@example.org".into()),
        },
    )
    .await
    .unwrap();
    let known = one.known_terminal("pc-mail").await.unwrap();
    one.append_events(
        &known,
        serde_json::from_value(serde_json::json!({"events": [
            {"seq": 1, "at": "2026-12-06T10:00:00Z", "kind": "consent.requested",
             "data": {"plan_id": "plan-1", "change": "install vaccine-b 2.0",
                      "reason": "vaccine-a lacks 2 threats"}}
        ]}))
        .unwrap(),
    )
    .await
    .unwrap();
    let mut notice = String::new();
    wait_for("the consent notice", Duration::from_secs(10), async || {
        let queued = one.store.alert_deliveries(None, 0).await.unwrap();
        match queued
            .into_iter()
            .find(|row| row.delivery.recipient.is_some())
        {
            Some(row) => {
                notice = row.delivery.text;
                true
            }
            None => false,
        }
    })
    .await;
    let accept = notice
        .split_whitespace()
        .find_map(|word| {
            word.split_once("/consent/")
                .map(|(_, token)| token.to_owned())
        })
        .unwrap_or_else(|| panic!("no link in {notice}"));

    // The terminal holds its push connection on the second process, with nothing new there.
    let token = two.change_token();
    let waiting = tokio::spawn({
        let two = two.clone();
        async move {
            two.wait_for_change("pc-mail", Some(&token), Duration::from_secs(60))
                .await
        }
    });
    wait_for("the wait to be held", Duration::from_secs(10), async || {
        two.waits.held() == 1
    })
    .await;
    // The user follows the link, served by the first process.
    let answered = Instant::now();
    match one
        .consent_follow_link(&accept, herd_center::unix_now())
        .await
    {
        Ok(LinkState::Answered { by_this_link, .. }) => assert!(by_this_link),
        other => panic!("the link did not answer: {other:?}"),
    }
    let outcome = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the wait on the other process is answered within 10 s")
        .unwrap();
    eprintln!(
        "answered on one → wait on two answered in {:.1} ms",
        answered.elapsed().as_secs_f64() * 1000.0
    );
    match outcome {
        WaitOutcome::Answered(response) => assert!(response.changed, "{response:?}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verdict_through_one_process_is_downloadable_from_another_with_its_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let Some((one, two)) = two_centers("herd_set_served", dir.path(), "").await else {
        eprintln!("skipped: HERD_TEST_POSTGRES_URL is not set");
        return;
    };
    let (_stop, stop_rx) = watch::channel(false);
    tokio::spawn(two.clone().follow_revisions(stop_rx.clone()));
    let timestamp_version = |center: Arc<Center>| async move {
        let bytes = center.tuf_metadata("timestamp.json").await.unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        doc["signed"]["version"].as_u64().unwrap()
    };
    // Each version of the set the first process signs is served by the second the moment it
    // serves the timestamp that lists it: never the new metadata with a 404 for the set.
    for (i, sha256) in ["5e1f", "ba5e", "c0de"].iter().enumerate() {
        let sha256 = sha256.repeat(16);
        one.verdict(
            VerdictDoc {
                sha256: sha256.clone(),
                size: Some(4096),
                verdict: "malicious".into(),
                threat: None,
                danger: None,
                name: None,
            },
            "operator",
        )
        .await
        .unwrap();
        let signed = timestamp_version(one.clone()).await;
        let listed = one
            .tuf_metadata(&format!("{}.herd.json", herd_role_version(&one).await))
            .await
            .unwrap();
        let listed: serde_json::Value = serde_json::from_slice(&listed).unwrap();
        let set_sha256 = listed["signed"]["targets"][HERD_SET_TARGET]["hashes"]["sha256"]
            .as_str()
            .unwrap()
            .to_owned();
        let path = consistent_target_name(HERD_SET_TARGET, &set_sha256);
        wait_for(
            "the second process to serve the new timestamp",
            Duration::from_secs(10),
            {
                let two = two.clone();
                async move || timestamp_version(two.clone()).await >= signed
            },
        )
        .await;
        assert_eq!(
            two.tuf_target_blob(&path).unwrap(),
            set_sha256,
            "version {} of the set, served with the metadata that lists it",
            i + 1
        );
    }
}

/// The newest version of the `herd` role `center` serves.
async fn herd_role_version(center: &Center) -> u64 {
    let bytes = center.tuf_metadata("timestamp.json").await.unwrap();
    let timestamp: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let snapshot_version = timestamp["signed"]["meta"]["snapshot.json"]["version"]
        .as_u64()
        .unwrap();
    let bytes = center
        .tuf_metadata(&format!("{snapshot_version}.snapshot.json"))
        .await
        .unwrap();
    let snapshot: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    snapshot["signed"]["meta"]["herd.json"]["version"]
        .as_u64()
        .unwrap()
}
