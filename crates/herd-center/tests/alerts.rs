//! Alerts against real sinks on loopback: an HTTP webhook receiver (a small hyper server in
//! the test), an SMTP server with STARTTLS (Python's aiosmtpd, when HERD_TEST_SMTP_PYTHON names
//! a python that has it; CI installs it), and an SMS gateway (the same HTTP receiver). An
//! outbreak of 10,000 alerts gives a bounded number of messages; a sink that is down receives
//! its alert once it is back, exactly once.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herd_center::Center;
use herd_center::alerts::{AlertEvent, AlertKind};
use herd_center::config::{CenterConfig, ConfigFile};
use tokio::net::TcpListener;
use tokio::sync::watch;

mod support;

use support::receiver;

async fn center(dir: &Path, alerts: &str) -> Arc<Center> {
    herd_tls::install_crypto_provider();
    let text = format!(
        "data_dir = {:?}\n{alerts}",
        dir.join("data").display().to_string()
    );
    let config = CenterConfig::from_file(ConfigFile::parse("test", &text).unwrap()).unwrap();
    Center::open(config).await.unwrap()
}

/// Starts the delivery worker; stops it when the sender is dropped.
fn deliver(center: &Arc<Center>) -> watch::Sender<bool> {
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(center.clone().deliver_alerts(stopped));
    stop
}

async fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn detection(terminal: &str) -> AlertEvent {
    AlertEvent::new(
        AlertKind::Detection,
        terminal,
        "Eicar-Test-Signature in /home/user/eicar.com, quarantined",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbreak_of_ten_thousand_detections_gives_a_few_alerts_a_summary_and_a_digest() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = receiver(listener).await;
    let center = center(
        dir.path(),
        &format!(
            r#"
[alerts]
window_secs = 3
burst = 3
[[alerts.channels]]
name = "ops"
type = "webhook"
url = "http://{addr}/hooks/T000/B000/XXXX"
[[alerts.rules]]
name = "outbreak"
kinds = ["detection"]
channels = ["ops"]
"#
        ),
    )
    .await;
    let _worker = deliver(&center);
    // A kind no rule takes costs nothing and sends nothing.
    center.alerts.raise(AlertEvent::new(
        AlertKind::RolloutHalted,
        "ring-1",
        "halted",
    ));
    let started = Instant::now();
    for i in 0..10_000 {
        center.alerts.raise(detection(&format!("pc-{}", i % 700)));
    }
    let raising = started.elapsed();
    eprintln!("raising 10,000 alerts took {raising:?}");
    assert!(raising < Duration::from_secs(1), "raising took {raising:?}");
    // Three alerts one by one, one summary, then (when the window ends) one digest.
    wait_for("the digest", Duration::from_secs(20), || {
        received.lock().unwrap().len() >= 5
    })
    .await;
    // Another window passes with nothing new: nothing more is sent.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 5, "{received:#?}");
    let bodies: Vec<serde_json::Value> = received
        .iter()
        .map(|(target, body)| {
            assert_eq!(target, "/hooks/T000/B000/XXXX");
            serde_json::from_str(body).unwrap()
        })
        .collect();
    let kinds: Vec<&str> = bodies
        .iter()
        .map(|b| b["herd"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["detection", "detection", "detection", "summary", "digest"]
    );
    // Slack's shape: the text a person reads.
    assert!(
        bodies[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("[detection] pc-0: Eicar-Test-Signature"),
        "{}",
        bodies[0]
    );
    assert!(
        bodies[3]["text"].as_str().unwrap().starts_with("Outbreak"),
        "{}",
        bodies[3]
    );
    assert_eq!(bodies[4]["herd"]["count"], 9_997);
    let digest = bodies[4]["text"].as_str().unwrap();
    assert!(digest.contains("9997 more alerts"), "{digest}");
    // The record: every delivery delivered, once.
    let list = center.alert_deliveries(None, Some(100)).await.unwrap();
    assert_eq!(list.deliveries.len(), 5);
    assert!(
        list.deliveries
            .iter()
            .all(|d| d.state == "delivered" && d.attempts == 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_was_down_receives_its_alert_once_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on yet.
    let addr: SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let center = center(
        dir.path(),
        &format!(
            r#"
[alerts]
retry_base_secs = 1
retry_max_secs = 1
[[alerts.channels]]
name = "ops"
type = "webhook"
url = "http://{addr}/hook"
[[alerts.rules]]
name = "sites"
kinds = ["site_unreachable"]
channels = ["ops"]
"#
        ),
    )
    .await;
    let worker = deliver(&center);
    center.alerts.raise(AlertEvent::new(
        AlertKind::SiteUnreachable,
        "osaka",
        "site osaka did not answer",
    ));
    // Refused twice at least, each recorded with the error and the next attempt.
    let mut pending = None;
    let start = Instant::now();
    while pending.is_none() {
        assert!(start.elapsed() < Duration::from_secs(20), "no retry seen");
        let list = center.alert_deliveries(None, Some(10)).await.unwrap();
        pending = list
            .deliveries
            .into_iter()
            .find(|d| d.attempts >= 2 && d.state == "pending");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pending = pending.unwrap();
    assert!(pending.last_error.is_some(), "{pending:?}");
    assert!(pending.next_attempt_at.is_some());
    // The worker stops (a center restart) and the sink comes up: the queued alert is still
    // there and goes out once, from a new worker.
    drop(worker);
    let received = receiver(TcpListener::bind(addr).await.unwrap()).await;
    let _worker = deliver(&center);
    wait_for("the retried alert", Duration::from_secs(20), || {
        !received.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "{received:#?}");
    assert!(received[0].1.contains("site osaka did not answer"));
    let list = center.alert_deliveries(None, Some(10)).await.unwrap();
    assert_eq!(list.deliveries.len(), 1);
    assert_eq!(list.deliveries[0].state, "delivered");
    assert!(list.deliveries[0].attempts >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_gateway_gets_its_template_filled_and_a_test_alert_says_what_failed() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = receiver(listener).await;
    let down: SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let center = center(
        dir.path(),
        &format!(
            r#"
[alerts]
[[alerts.channels]]
name = "sms"
type = "sms"
url = "http://{addr}/send?to=%2B819000&kind={{kind}}"
content_type = "application/json"
body = '{{"message": "{{text}}"}}'
headers = {{ "x-api-key" = "k1" }}
[[alerts.channels]]
name = "down"
type = "webhook"
url = "http://{down}/hook"
[[alerts.rules]]
name = "threats"
kinds = ["new_threat"]
channels = ["sms"]
"#
        ),
    )
    .await;
    let _worker = deliver(&center);
    center.alerts.raise(AlertEvent::new(
        AlertKind::NewThreat,
        "virus-\"q\"",
        "a \"quoted\" threat",
    ));
    wait_for("the SMS", Duration::from_secs(20), || {
        !received.lock().unwrap().is_empty()
    })
    .await;
    let (target, body) = received.lock().unwrap()[0].clone();
    assert_eq!(target, "/send?to=%2B819000&kind=new_threat");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["message"],
        "[new_threat] virus-\"q\": a \"quoted\" threat"
    );
    // The test alert goes past rules and queue, and says what the sink did.
    let ok = center.test_alert_channel("sms").await.unwrap();
    assert!(ok.delivered && ok.error.is_none(), "{ok:?}");
    let failed = center.test_alert_channel("down").await.unwrap();
    assert!(!failed.delivered);
    assert!(
        failed.error.as_deref().unwrap().contains(&down.to_string()),
        "{failed:?}"
    );
    let unknown = center.test_alert_channel("pager").await.unwrap_err();
    assert!(unknown.to_string().contains("sms, down"), "{unknown}");
}

/// aiosmtpd with STARTTLS required: each message is appended to `out`.
const SMTP_SERVER: &str = r#"
import ssl, sys
from aiosmtpd.controller import Controller
cert, key, out, port = sys.argv[1:5]
context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)
class Handler:
    async def handle_DATA(self, server, session, envelope):
        with open(out, "ab") as f:
            f.write(b"MAIL FROM " + envelope.mail_from.encode() + b"\n")
            f.write(b"RCPT TO " + ",".join(envelope.rcpt_tos).encode() + b"\n")
            f.write(envelope.content + b"\n.\n")
        return "250 OK"
controller = Controller(Handler(), hostname="127.0.0.1", port=int(port),
                        tls_context=context, require_starttls=True)
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_mail_goes_through_a_real_smtp_server_over_starttls() {
    let Ok(python) = std::env::var("HERD_TEST_SMTP_PYTHON") else {
        eprintln!("skipped: HERD_TEST_SMTP_PYTHON does not name a python with aiosmtpd");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A CA of the test's own and the SMTP server's certificate for 127.0.0.1.
    let (ca_cert, ca_key) = herd_tls::CertificateAuthority::generate("smtp test CA").unwrap();
    let ca = herd_tls::CertificateAuthority::from_pem(&ca_cert, &ca_key).unwrap();
    let server = ca.issue_server(&["127.0.0.1".to_owned()]).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let cert = write("smtp.pem", &server.cert_pem);
    let key = write("smtp.key", &server.key_pem);
    let ca_file = write("ca.pem", &ca_cert);
    let script = write("smtp.py", SMTP_SERVER);
    let out = dir.path().join("mail.txt");
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut smtp = std::process::Command::new(python)
        .arg(&script)
        .args([&cert, &key, &out])
        .arg(port.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(smtp.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "aiosmtpd did not start");
    }
    let center = center(
        dir.path(),
        &format!(
            r#"
[alerts]
[[alerts.channels]]
name = "mail"
type = "email"
smtp_host = "127.0.0.1"
smtp_port = {port}
from = "herd@example.org"
to = ["oncall@example.org", "soc@example.org"]
ca_file = {:?}
[[alerts.channels]]
name = "untrusted"
type = "email"
smtp_host = "127.0.0.1"
smtp_port = {port}
from = "herd@example.org"
to = ["oncall@example.org"]
[[alerts.rules]]
name = "detections"
kinds = ["detection"]
channels = ["mail"]
"#,
            ca_file.display().to_string()
        ),
    )
    .await;
    let _worker = deliver(&center);
    center.alerts.raise(detection("pc-7"));
    let mail = || std::fs::read_to_string(&out).unwrap_or_default();
    wait_for("the e-mail", Duration::from_secs(30), || {
        mail().contains("\n.\n")
    })
    .await;
    let text = mail();
    assert!(text.contains("MAIL FROM herd@example.org"), "{text}");
    assert!(
        text.contains("RCPT TO oncall@example.org,soc@example.org"),
        "{text}"
    );
    assert!(text.contains("Subject: [herd] detection: pc-7"), "{text}");
    assert!(text.contains("Eicar-Test-Signature"), "{text}");
    // A server whose certificate is not trusted gets nothing.
    let refused = center.test_alert_channel("untrusted").await.unwrap();
    assert!(!refused.delivered, "{refused:?}");
    assert_eq!(mail().matches("\n.\n").count(), 1);
    let tested = center.test_alert_channel("mail").await.unwrap();
    assert!(tested.delivered, "{tested:?}");
    assert!(mail().contains("Subject: [herd] test: mail"));
    drop(smtp.stdin.take());
    let _ = smtp.kill();
    let _ = smtp.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_exposed_terminals_than_the_threshold_alert_once() {
    use herd_store::{CheckinWrite, EnrolTokenRow, NewTerminal, PlanWrite};
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = receiver(listener).await;
    let center = center(
        dir.path(),
        &format!(
            r#"
[alerts]
exposed_threshold = 2
[[alerts.channels]]
name = "ops"
type = "webhook"
url = "http://{addr}/hook"
[[alerts.rules]]
name = "exposure"
kinds = ["exposed"]
channels = ["ops"]
"#
        ),
    )
    .await;
    // Terminals as the store keeps them after check-ins whose plans were `exposed`.
    let expose = |ids: &'static [&'static str]| {
        let store = center.store.clone();
        async move {
            for id in ids {
                store
                    .enrol_token_insert(EnrolTokenRow {
                        hash: format!("token-{id}"),
                        label: String::new(),
                        uses_left: 1,
                        created_at: 1,
                        expires_at: i64::MAX,
                        reenrol_terminal: None,
                    })
                    .await
                    .unwrap();
                store
                    .enrol(
                        &format!("token-{id}"),
                        2,
                        NewTerminal {
                            id: id.to_string(),
                            user: None,
                            hardware: r#"{"kind":"pc","platform":"pc"}"#.into(),
                            tz: None,
                            group: "unknown".into(),
                            cert_sha256: format!("cert-{id}"),
                            enrolled_at: 2,
                            address: "192.0.2.1".into(),
                            site: None,
                        },
                    )
                    .await
                    .unwrap();
            }
            let writes: Vec<CheckinWrite> = ids
                .iter()
                .map(|id| CheckinWrite {
                    terminal: id.to_string(),
                    at: 3,
                    address: "192.0.2.1".into(),
                    installed: None,
                    hardware: None,
                    tz: None,
                    agent_version: None,
                    plan: PlanWrite {
                        id: format!("plan-{id}"),
                        action: "exposed".into(),
                        uncovered: 1,
                        doc: "{}".into(),
                    },
                    relay: None,
                })
                .collect();
            store.record_checkins(&writes).await.unwrap();
        }
    };
    expose(&["pc-1", "pc-2"]).await;
    center.check_exposed().await;
    // At the threshold: nothing.
    assert!(
        center
            .alert_deliveries(None, None)
            .await
            .unwrap()
            .deliveries
            .is_empty()
    );
    expose(&["pc-3"]).await;
    center.check_exposed().await;
    center.check_exposed().await;
    let _worker = deliver(&center);
    wait_for("the exposed alert", Duration::from_secs(20), || {
        !received.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "once per onset: {received:#?}");
    assert!(
        received[0].1.contains("more than 2 terminals are exposed")
            && received[0].1.contains("pc-1, pc-2, pc-3"),
        "{}",
        received[0].1
    );
}
