//! The push connection (`GET /v1/wait`) against a real `herd serve`: a publish wakes a held
//! wait at once, a wait times out with `changed: false`, a stale token is answered at once,
//! the cap on held waits answers 503 with `Retry-After`, the listener's idle and header
//! timeouts do not cut a held wait, and shutdown answers held waits promptly.

mod support;

use std::time::{Duration, Instant};

use support::{TestCenter, code, enrol, enrolment_token, seed_catalog, vendor_client, vendor_feed};

/// A center whose listener closes idle connections after 1 s and slow headers after 1 s, so a
/// wait held longer shows that a request in flight is not idle.
fn center_with(extra_config: &str) -> TestCenter {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("center.toml");
    std::fs::write(
        &config,
        format!("idle_timeout_secs = 1\nheader_timeout_secs = 1\n{extra_config}"),
    )
    .unwrap();
    // Read once at start: the file may go when the center runs.
    TestCenter::start_with(&["--config", config.to_str().unwrap()])
}

fn metric(center: &TestCenter, name: &str) -> u64 {
    let (status, _, text) = curl(center, None, "/metrics");
    assert_eq!(status, 200, "/metrics: {text}");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
}

#[test]
fn a_publish_wakes_a_held_wait_and_a_quiet_one_times_out() {
    let center = center_with("");
    let token = enrolment_token(&center, 1);
    let identity = enrol(&center, &token, "phone-1", "alice", "android");
    let terminal = center.terminal_client(&identity);

    // No token yet: answered at once with the current one.
    let first = terminal.wait(None, Duration::from_secs(30)).unwrap();
    assert!(first.changed);
    // A stale token: answered at once.
    let started = Instant::now();
    let stale = terminal
        .wait(Some("0.0.0"), Duration::from_secs(30))
        .unwrap();
    assert!(stale.changed);
    assert_eq!(stale.token, first.token);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // Nothing moves: held for its timeout (longer than the idle and header timeouts), then
    // answered unchanged with the same token.
    let started = Instant::now();
    let quiet = terminal
        .wait(Some(&first.token), Duration::from_secs(3))
        .unwrap();
    let held = started.elapsed();
    assert!(!quiet.changed, "{quiet:?}");
    assert_eq!(quiet.token, first.token);
    assert!(
        held >= Duration::from_millis(2900) && held < Duration::from_secs(10),
        "held {held:?}"
    );

    // A publish wakes a held wait within well under a second of its answer.
    let waiting = {
        let terminal = terminal.clone();
        let after = first.token.clone();
        std::thread::spawn(move || {
            let answer = terminal.wait(Some(&after), Duration::from_secs(60));
            (answer, Instant::now())
        })
    };
    // Let the wait reach the center before publishing.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&center, "herd_waits_held") == 0 {
        assert!(Instant::now() < deadline, "the wait was never held");
        std::thread::sleep(Duration::from_millis(20));
    }
    let catalog = seed_catalog();
    let feed = serde_json::to_vec(&vendor_feed(&catalog, "maker-a")).unwrap();
    let publisher = vendor_client(&center, "maker-a");
    let publishing = Instant::now();
    publisher.publish_feed("maker-a", &feed).expect("publish");
    let published = Instant::now();
    let (answer, woken) = waiting.join().unwrap();
    let answer = answer.expect("the wait answers");
    assert!(answer.changed, "{answer:?}");
    assert_ne!(answer.token, first.token);
    let latency = woken.saturating_duration_since(published);
    eprintln!(
        "publish sent → wait answered: {:?}; publish answered → wait answered: {latency:?}",
        woken.saturating_duration_since(publishing)
    );
    assert!(
        latency < Duration::from_millis(500),
        "woken after {latency:?}"
    );
    assert_eq!(metric(&center, "herd_waits_held"), 0);
}

#[test]
fn waits_need_a_terminal_certificate_and_a_well_formed_query() {
    let center = center_with("");
    let (status, code_) = code(
        center
            .anonymous()
            .wait(None, Duration::from_secs(5))
            .unwrap_err(),
    );
    assert_eq!(
        (status, code_.as_str()),
        (401, "client_certificate_required")
    );
    let (status, code_) = code(
        center
            .operator()
            .wait(None, Duration::from_secs(5))
            .unwrap_err(),
    );
    assert_eq!(
        (status, code_.as_str()),
        (401, "client_certificate_required")
    );

    let token = enrolment_token(&center, 1);
    let identity = enrol(&center, &token, "phone-1", "alice", "android");
    // An unknown parameter or a timeout that is not a number.
    for query in ["/v1/wait?timeout_secs=soon", "/v1/wait?after=x&later=1"] {
        let (status, _, body) = curl(&center, Some(&identity), query);
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains("bad_request"), "{query}: {body}");
    }
}

#[test]
fn beyond_max_waits_a_wait_is_refused_with_retry_after() {
    let center = center_with("max_waits = 1\n");
    let token = enrolment_token(&center, 2);
    let one = center.terminal_client(&enrol(&center, &token, "phone-1", "alice", "android"));
    let second = enrol(&center, &token, "phone-2", "bob", "android");
    let two = center.terminal_client(&second);
    let current = one.wait(None, Duration::from_secs(5)).unwrap().token;
    let holder = {
        let current = current.clone();
        std::thread::spawn(move || one.wait(Some(&current), Duration::from_secs(4)))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&center, "herd_waits_held") == 0 {
        assert!(Instant::now() < deadline, "the wait was never held");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The second is refused at once, with the header that tells it when to try again.
    let (status, headers, _) = curl(
        &center,
        Some(&second),
        &format!("/v1/wait?after={current}&timeout_secs=4"),
    );
    assert_eq!(status, 503, "{headers}");
    assert!(
        headers.to_ascii_lowercase().contains("retry-after: 300"),
        "{headers}"
    );
    let (status, code_) = code(
        two.wait(Some(&current), Duration::from_secs(4))
            .unwrap_err(),
    );
    assert_eq!((status, code_.as_str()), (503, "unavailable"));
    assert_eq!(metric(&center, "herd_waits_refused_total"), 2);
    // A stale token is still answered: it costs no slot.
    assert!(
        two.wait(Some("0.0.0"), Duration::from_secs(4))
            .unwrap()
            .changed
    );
    assert!(!holder.join().unwrap().unwrap().changed);
    assert_eq!(metric(&center, "herd_waits_held"), 0);
}

#[test]
fn shutdown_answers_held_waits_promptly() {
    let mut center = center_with("");
    let token = enrolment_token(&center, 1);
    let terminal = center.terminal_client(&enrol(&center, &token, "phone-1", "alice", "android"));
    let current = terminal.wait(None, Duration::from_secs(5)).unwrap().token;
    let waiting = {
        let current = current.clone();
        std::thread::spawn(move || terminal.wait(Some(&current), Duration::from_secs(120)))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&center, "herd_waits_held") == 0 {
        assert!(Instant::now() < deadline, "the wait was never held");
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let (status, log) = center.stop();
    let stopped = started.elapsed();
    assert!(status.success(), "exit {status}: {log}");
    let answer = waiting.join().unwrap().expect("the held wait is answered");
    assert!(!answer.changed);
    assert!(
        stopped < Duration::from_secs(5),
        "stopping took {stopped:?}"
    );
}

/// `GET path` through curl, with the terminal's certificate when given (else the operator's
/// token): the status, the response headers and the body.
fn curl(
    center: &TestCenter,
    identity: Option<&herd_tls::KeyPairPem>,
    path: &str,
) -> (u16, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new("curl");
    command
        .args(["-s", "-D", "-", "--cacert"])
        .arg(center.data_dir.join("ca.pem"));
    match identity {
        Some(identity) => {
            let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            std::fs::write(&cert, &identity.cert_pem).unwrap();
            std::fs::write(&key, &identity.key_pem).unwrap();
            command.arg("--cert").arg(&cert).arg("--key").arg(&key);
        }
        None => {
            command.args([
                "-H",
                &format!("Authorization: Bearer {}", center.operator_token()),
            ]);
        }
    }
    let out = command
        .arg(format!("{}{path}", center.url))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, headers.to_owned(), body.to_owned())
}
