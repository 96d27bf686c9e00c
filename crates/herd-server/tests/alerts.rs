//! `herd alerts` against a real `herd serve` configured with alert channels: the channels and
//! rules listed without secrets, a test alert delivered to a webhook receiver on loopback (or
//! the reason it was not), the delivery record, and bad input on every alert endpoint.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use support::{TestCenter, free_port};

/// A webhook receiver on loopback answering 200: the bodies it got.
fn receiver() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&body).into_owned());
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (port, bodies)
}

fn herd(center: &TestCenter, args: &[&str]) -> Output {
    support::herd_as_operator(center, args)
}

/// `METHOD path` with curl and the operator's token (unless `token` is None): (status, body).
fn curl(center: &TestCenter, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut command = Command::new("curl");
    command
        .args(["-s", "-g", "-X", method, "-w", "\n%{http_code}", "--cacert"])
        .arg(center.data_dir.join("ca.pem"));
    if let Some(token) = token {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let out = command
        .arg(format!("{}{path}", center.url))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn alerts_are_listed_tested_and_refused_bad_input() {
    let (port, bodies) = receiver();
    let down = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herd.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[alerts]
[[alerts.channels]]
name = "ops"
type = "webhook"
url = "http://127.0.0.1:{port}/services/T0/B0/secret"
[[alerts.channels]]
name = "down"
type = "webhook"
url = "http://127.0.0.1:{down}/hook"
[[alerts.rules]]
name = "outbreaks"
kinds = ["detection", "new_threat"]
channels = ["ops"]
"#
        ),
    )
    .unwrap();
    let center = TestCenter::start_with(&["--config", config.to_str().unwrap()]);

    let out = herd(&center, &["alerts", "channels"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("ops") && stdout.contains("webhook"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("http://127.0.0.1:{port}/…")),
        "{stdout}"
    );
    // The webhook's secret path is not shown.
    assert!(!stdout.contains("secret"), "{stdout}");
    assert!(stdout.contains("detection,new_threat"), "{stdout}");

    let out = herd(&center, &["alerts", "test", "ops"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("test alert delivered to ops"), "{stdout}");
    let got = bodies.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let body: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
    assert!(
        body["text"].as_str().unwrap().starts_with("[test] ops:"),
        "{body}"
    );

    let out = herd(&center, &["alerts", "test", "down"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("not delivered to down") && stderr.contains(&down.to_string()),
        "{stderr}"
    );

    let out = herd(&center, &["alerts", "test", "pager"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no alert channel \"pager\""), "{stderr}");

    // Tests go past the queue: the record is empty until an alert is raised.
    let out = herd(&center, &["alerts", "list"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("no alerts yet"), "{stdout}");

    let out = herd(&center, &["alerts", "list", "--limit", "0"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("limit: 0 is outside 1..=500"), "{stderr}");

    let token = center.operator_token();
    for (path, expected) in [
        ("/v1/alerts?limit=501", "limit: 501"),
        ("/v1/alerts?limit=many", "limit"),
        ("/v1/alerts?before=-1", "before"),
        ("/v1/alerts?colour=red", "colour"),
    ] {
        let (status, body) = curl(&center, "GET", path, Some(&token));
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body.contains("bad_request") && body.contains(expected),
            "{path}: {body}"
        );
    }
    for (method, path) in [
        ("GET", "/v1/alerts"),
        ("GET", "/v1/alerts/setup"),
        ("POST", "/v1/alerts/channels/ops/test"),
    ] {
        let (status, body) = curl(&center, method, path, None);
        assert_eq!(status, 401, "{method} {path}: {body}");
        let (status, body) = curl(&center, method, path, Some("not-a-token"));
        assert_eq!(status, 401, "{method} {path}: {body}");
    }
    let (status, body) = curl(&center, "GET", "/v1/alerts/channels/ops/test", Some(&token));
    assert_eq!(status, 405, "{body}");
    // Nothing above sent anything more to the receiver.
    assert_eq!(bodies.lock().unwrap().len(), 1);
}
