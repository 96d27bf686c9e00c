//! The client against a scripted HTTPS server on loopback: authentication (token, client
//! certificate, the pinned CA), each kind of failure as its own `ClientError` variant, paging,
//! package transfers — resumed, restarted, broken off, corrupt, refused before the body is
//! sent —, documents refused while they are being sent, and TLS session resumption.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use herd_client::{Client, ClientError};
use herd_proto::api::{EventBatch, EventDoc, codes};
use sha2::{Digest as _, Sha256};
use support::{Phase, Reply, Seen, TestServer};

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Deterministic package bytes that are not all alike, so a wrong offset changes the digest.
fn package(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 31 % 251) as u8).collect()
}

/// Answers package downloads like the center does: 206 for `Range: bytes=N-`, else 200.
fn serve_ranges(content: &[u8], seen: &Seen) -> Reply {
    let total = content.len();
    match seen.header("range") {
        Some(range) => {
            let start: usize = range
                .strip_prefix("bytes=")
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|n| n.parse().ok())
                .expect("the client asks for bytes=N-");
            if start >= total {
                return Reply::Full {
                    status: 416,
                    headers: vec![("content-range", format!("bytes */{total}"))],
                    body: Vec::new(),
                };
            }
            Reply::Full {
                status: 206,
                headers: vec![(
                    "content-range",
                    format!("bytes {start}-{}/{total}", total - 1),
                )],
                body: content[start..].to_vec(),
            }
        }
        None => Reply::Full {
            status: 200,
            headers: Vec::new(),
            body: content.to_vec(),
        },
    }
}

#[test]
fn api_errors_arrive_typed_with_every_problem_and_the_token_is_sent() {
    let server = TestServer::start(|_| {
        Reply::json(
            422,
            r#"{"error": {"code": "feed_invalid", "message": "the feed of maker-a is refused",
                "problems": [{"path": "$.releases[0].seq", "message": "must be at least 1"}]}}"#,
        )
    });
    let client = Client::new(&server.url, &server.ca_pem, None)
        .unwrap()
        .with_token("herd_vendor_token\n");
    let err = client
        .publish_feed("maker-a", br#"{"format": "x"}"#)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "feed_invalid: the feed of maker-a is refused\n  $.releases[0].seq: must be at least 1"
    );
    assert!(err.is_refusal());
    assert!(
        matches!(&err, ClientError::Refused { status: 422, code, problems, .. }
            if code == codes::FEED_INVALID && problems.len() == 1),
        "{err:?}"
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "PUT");
    assert_eq!(seen[0].target, "/v1/feeds/maker-a");
    assert_eq!(
        seen[0].header("authorization"),
        Some("Bearer herd_vendor_token")
    );
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    assert_eq!(seen[0].body, br#"{"format": "x"}"#);
}

#[test]
fn a_terminal_presents_its_client_certificate() {
    let server = TestServer::start(|seen| match seen.terminal.as_deref() {
        Some("45a") => Reply::json(
            200,
            r#"{"acked_through": 7, "accepted": 1, "duplicates": 0}"#,
        ),
        _ => Reply::json(
            401,
            r#"{"error": {"code": "client_certificate_required", "message": "no certificate"}}"#,
        ),
    });
    let batch = EventBatch {
        events: vec![EventDoc {
            seq: 7,
            at: "2000-11-12T00:00:00Z".to_owned(),
            kind: "agent.started".to_owned(),
            data: serde_json::json!({}),
        }],
    };
    let identity = server.terminal_identity("45a");
    let terminal = Client::new(&server.url, &server.ca_pem, Some(&identity)).unwrap();
    let ack = terminal.send_events(&batch).unwrap();
    assert_eq!(ack.acked_through, 7);
    let sent: EventBatch = serde_json::from_slice(&server.seen()[0].body).unwrap();
    assert_eq!(sent, batch);

    let anonymous = Client::new(&server.url, &server.ca_pem, None).unwrap();
    let err = anonymous.send_events(&batch).unwrap_err();
    assert_eq!(err.code(), Some("client_certificate_required"));
    assert_eq!(err.status(), Some(401));
}

#[test]
fn a_server_whose_certificate_another_ca_signed_is_not_trusted() {
    let server = TestServer::start(|_| Reply::json(200, r#"{"status": "ok"}"#));
    let (other_ca, _key) = herd_tls::CertificateAuthority::generate("someone else").unwrap();
    let client = Client::new(&server.url, &other_ca, None).unwrap();
    let err = client.health().unwrap_err();
    match &err {
        ClientError::Certificate {
            server: url,
            detail,
        } => {
            assert_eq!(url, &server.url);
            assert!(detail.to_lowercase().contains("certificate"), "{detail}");
        }
        other => panic!("expected Certificate, got {other:?}"),
    }
    assert!(err.is_retryable());
    assert!(server.seen().is_empty());

    Client::new(&server.url, &server.ca_pem, None)
        .unwrap()
        .health()
        .unwrap();
}

#[test]
fn a_closed_port_is_unreachable_and_retryable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (ca_pem, _key) = herd_tls::CertificateAuthority::generate("ca").unwrap();
    let client = Client::new(&format!("https://127.0.0.1:{port}/"), &ca_pem, None).unwrap();
    let err = client.coverage().unwrap_err();
    assert!(
        matches!(&err, ClientError::Unreachable { server, .. } if server == &format!("https://127.0.0.1:{port}")),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with(&format!(
            "cannot reach the center at https://127.0.0.1:{port}: "
        )),
        "{err}"
    );
    assert!(err.is_retryable());
}

#[test]
fn answers_that_are_not_api_v1_are_reported_as_such() {
    let server = TestServer::start(|_| Reply::json(200, "<html>a login page</html>"));
    let client = Client::new(&server.url, &server.ca_pem, None).unwrap();
    let err = client.coverage().unwrap_err();
    assert!(matches!(err, ClientError::Corrupt { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert!(
        err.to_string().starts_with(&format!(
            "GET /v1/coverage: the answer from {} is not usable: the center's answer is not what API v1 describes",
            server.url
        )),
        "{err}"
    );
}

#[test]
fn all_terminals_follows_the_pages_and_encodes_filters() {
    let summary = |id: &str| {
        format!(
            r#"{{"id": "{id}", "user": null, "hardware": {{"kind": "phone", "platform": "phone"}},
                "tz": null, "group": "g 1", "installed": null, "enrolled_at": "2000-11-01T00:00:00Z",
                "last_checkin": null, "last_address": null, "action": "exposed", "uncovered": 1}}"#
        )
    };
    let (a, b, c) = (summary("a"), summary("b"), summary("c"));
    let server = TestServer::start(move |seen| {
        if seen.target.contains("after=b") {
            Reply::json(200, &format!(r#"{{"terminals": [{c}], "next": null}}"#))
        } else {
            Reply::json(200, &format!(r#"{{"terminals": [{a}, {b}], "next": "b"}}"#))
        }
    });
    let client = Client::new(&server.url, &server.ca_pem, None)
        .unwrap()
        .with_token("t");
    let all = client.all_terminals(Some("g 1"), Some("exposed")).unwrap();
    let ids: Vec<&str> = all.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    let targets: Vec<String> = server.seen().into_iter().map(|s| s.target).collect();
    assert_eq!(
        targets,
        [
            "/v1/terminals?limit=1000&group=g%201&action=exposed",
            "/v1/terminals?limit=1000&group=g%201&action=exposed&after=b",
        ]
    );
}

#[test]
fn a_server_repeating_its_cursor_does_not_loop_the_client_forever() {
    let server = TestServer::start(|_| Reply::json(200, r#"{"terminals": [], "next": "x"}"#));
    let client = Client::new(&server.url, &server.ca_pem, None).unwrap();
    let err = client.all_terminals(None, None).unwrap_err();
    assert!(err.to_string().contains("cursor \"x\" twice"), "{err}");
    assert_eq!(server.seen().len(), 2);
}

#[test]
fn the_plan_is_returned_byte_for_byte_and_ids_stay_in_their_segment() {
    let plan = "{\"terminal\":\"45a\",  \"action\":\"none\"}\n";
    let server = TestServer::start(move |_| Reply::json(200, plan));
    let client = Client::new(&server.url, &server.ca_pem, None).unwrap();
    assert_eq!(client.terminal_plan("45a").unwrap(), plan);
    client.terminal_plan("../groups").unwrap();
    let targets: Vec<String> = server.seen().into_iter().map(|s| s.target).collect();
    assert_eq!(
        targets,
        ["/v1/terminals/45a/plan", "/v1/terminals/..%2Fgroups/plan"]
    );
}

#[test]
fn a_download_starts_fresh_then_an_existing_complete_file_needs_no_request() {
    let content = Arc::new(package(300_000));
    let sha = sha256_hex(&content);
    let served = content.clone();
    let server = TestServer::start(move |seen| serve_ranges(&served, seen));
    let client = Client::new(&server.url, &server.ca_pem, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("pkg");

    client
        .download_package(&sha, content.len() as u64, &dest)
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), *content);
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, format!("/v1/packages/{sha}"));
    assert_eq!(seen[0].header("range"), None);

    client
        .download_package(&sha, content.len() as u64, &dest)
        .unwrap();
    assert_eq!(
        server.seen().len(),
        1,
        "a verified complete file is not fetched again"
    );
}

#[test]
fn a_download_broken_off_resumes_where_it_stopped() {
    let content = Arc::new(package(200_000));
    let sha = sha256_hex(&content);
    let served = content.clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let server = TestServer::start(move |seen| {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::BrokenOff {
                status: 200,
                headers: Vec::new(),
                body: served[..70_000].to_vec(),
                declared: served.len() as u64,
            }
        } else {
            serve_ranges(&served, seen)
        }
    });
    let client = Client::new(&server.url, &server.ca_pem, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("pkg");

    let err = client
        .download_package(&sha, content.len() as u64, &dest)
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Interrupted { what, .. } if what == &format!("GET /v1/packages/{sha}")),
        "{err:?}"
    );
    assert!(err.is_retryable(), "{err:?}");
    assert!(
        err.to_string()
            .contains("broke off after 70000 of 200000 bytes"),
        "{err}"
    );
    assert_eq!(std::fs::read(&dest).unwrap(), content[..70_000]);

    client
        .download_package(&sha, content.len() as u64, &dest)
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), *content);
    assert_eq!(server.seen()[1].header("range"), Some("bytes=70000-"));
}

#[test]
fn a_server_ignoring_the_range_restarts_the_file() {
    let content = Arc::new(package(50_000));
    let sha = sha256_hex(&content);
    let served = content.clone();
    let server = TestServer::start(move |_| Reply::Full {
        status: 200,
        headers: Vec::new(),
        body: served.to_vec(),
    });
    let client = Client::new(&server.url, &server.ca_pem, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("pkg");
    std::fs::write(&dest, &content[..10_000]).unwrap();

    client
        .download_package(&sha, content.len() as u64, &dest)
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), *content);
    assert_eq!(server.seen()[0].header("range"), Some("bytes=10000-"));
}

#[test]
fn a_corrupt_partial_file_is_detected_and_the_download_restarted() {
    let content = Arc::new(package(40_000));
    let sha = sha256_hex(&content);
    let served = content.clone();
    let server = TestServer::start(move |seen| serve_ranges(&served, seen));
    let client = Client::new(&server.url, &server.ca_pem, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("pkg");
    std::fs::write(&dest, vec![0u8; 1000]).unwrap();

    client
        .download_package(&sha, content.len() as u64, &dest)
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), *content);
    let ranges: Vec<Option<String>> = server
        .seen()
        .iter()
        .map(|s| s.header("range").map(str::to_owned))
        .collect();
    assert_eq!(ranges, [Some("bytes=1000-".to_owned()), None]);
}

#[test]
fn a_partial_file_longer_than_the_servers_copy_is_restarted_after_416() {
    let content = Arc::new(package(5_000));
    let sha = sha256_hex(&content);
    let served = content.clone();
    let server = TestServer::start(move |seen| serve_ranges(&served[..3_000], seen));
    let client = Client::new(&server.url, &server.ca_pem, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("pkg");
    std::fs::write(&dest, &content[..4_000]).unwrap();

    // The server's copy is short: 416 for the resume, then a fresh download whose length is
    // wrong is refused before its body is read.
    let err = client
        .download_package(&sha, content.len() as u64, &dest)
        .unwrap_err();
    assert!(matches!(err, ClientError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("holds 3000 bytes for this package, 5000 were expected"),
        "{err}"
    );
    let ranges: Vec<Option<String>> = server
        .seen()
        .iter()
        .map(|s| s.header("range").map(str::to_owned))
        .collect();
    assert_eq!(ranges, [Some("bytes=4000-".to_owned()), None]);
}

#[test]
fn a_fresh_download_with_the_wrong_digest_is_deleted() {
    let content = package(10_000);
    let wrong_sha = sha256_hex(b"something else");
    let server = TestServer::start(move |seen| serve_ranges(&content, seen));
    let client = Client::new(&server.url, &server.ca_pem, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("pkg");

    let err = client
        .download_package(&wrong_sha, 10_000, &dest)
        .unwrap_err();
    assert!(matches!(err, ClientError::Corrupt { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert!(
        err.to_string().contains("the download was deleted"),
        "{err}"
    );
    assert!(!dest.exists());
}

#[test]
fn a_bad_digest_is_refused_before_anything_is_sent() {
    let server = TestServer::start(|_| Reply::json(500, ""));
    let client = Client::new(&server.url, &server.ca_pem, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = client
        .download_package("../../etc/passwd", 10, &dir.path().join("p"))
        .unwrap_err();
    assert!(matches!(err, ClientError::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("is not a package digest"), "{err}");
    assert!(server.seen().is_empty());
}

#[test]
fn an_upload_streams_the_file_under_its_digest() {
    let server = TestServer::start(|seen| {
        if seen.phase == Phase::Head {
            return Reply::Continue;
        }
        let sha = sha256_hex(&seen.body);
        assert_eq!(seen.target, format!("/v1/packages/{sha}"));
        assert_eq!(
            seen.header("content-length"),
            Some(seen.body.len().to_string().as_str())
        );
        assert_eq!(
            seen.header("content-type"),
            Some("application/octet-stream")
        );
        Reply::json(
            201,
            &format!(
                r#"{{"sha256": "{sha}", "size": {}, "vendor": "maker-a",
                    "uploaded_at": "2000-11-12T00:00:00Z", "created": true}}"#,
                seen.body.len()
            ),
        )
    });
    let client = Client::new(&server.url, &server.ca_pem, None)
        .unwrap()
        .with_token("v");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vaccine-b.tar.gz");
    let content = package(1_000_000);
    std::fs::write(&path, &content).unwrap();

    let info = client.upload_package(&path).unwrap();
    assert_eq!(info.sha256, sha256_hex(&content));
    assert_eq!(info.size, 1_000_000);
    assert!(info.created);
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, content);
}

#[test]
fn a_refused_upload_is_answered_before_the_body_is_sent() {
    let server = TestServer::start(|seen| {
        assert_eq!(seen.phase, Phase::Head, "the body must not be sent");
        Reply::json(
            401,
            r#"{"error": {"code": "token_expired", "message": "the API token \"ci\" expired"}}"#,
        )
    });
    let client = Client::new(&server.url, &server.ca_pem, None)
        .unwrap()
        .with_token("old");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.pkg");
    std::fs::write(&path, package(4_000_000)).unwrap();

    let err = client.upload_package(&path).unwrap_err();
    assert_eq!(err.code(), Some("token_expired"), "{err:?}");
    assert_eq!(server.seen().len(), 1);
    assert!(server.seen()[0].body.is_empty());
}

#[test]
fn uploading_a_missing_file_names_it() {
    let (ca_pem, _key) = herd_tls::CertificateAuthority::generate("ca").unwrap();
    let client = Client::new("https://127.0.0.1:1", &ca_pem, None).unwrap();
    let err = client
        .upload_package(std::path::Path::new("/nonexistent/pkg.tar.gz"))
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::LocalIo { path, doing: "read", kind: std::io::ErrorKind::NotFound, .. }
            if path == std::path::Path::new("/nonexistent/pkg.tar.gz")),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("cannot read /nonexistent/pkg.tar.gz: "),
        "{err}"
    );
}

/// A feed of `size` bytes that is valid JSON (the server never looks at it).
fn big_feed(size: usize) -> Vec<u8> {
    let mut feed = b"{\"padding\": \"".to_vec();
    feed.resize(size - 2, b'x');
    feed.extend_from_slice(b"\"}");
    feed
}

#[test]
fn a_document_refused_as_too_large_while_it_is_sent_reads_the_answer() {
    // Like a center whose body limit is exceeded: it answers 413 after the headers, without
    // reading the body, and closes while the client is still sending megabytes.
    let server = TestServer::start_answering_early(|seen| {
        assert_eq!(seen.phase, Phase::Head, "the body is never read");
        Reply::Close {
            status: 413,
            body: br#"{"error": {"code": "too_large", "message": "the request body exceeds the limit of 1048576 bytes"}}"#.to_vec(),
        }
    });
    let client = Client::new(&server.url, &server.ca_pem, None)
        .unwrap()
        .with_token("v");
    let feed = big_feed(8 << 20);

    let err = client.publish_feed("maker-a", &feed).unwrap_err();
    let shown = err.to_string();
    assert!(!shown.contains("cannot reach"), "{shown}");
    match &err {
        // The answer was read although sending failed.
        ClientError::Refused { status, code, .. } => {
            assert_eq!((*status, code.as_str()), (413, codes::TOO_LARGE));
            assert!(
                shown.contains(&format!(
                    "the center refused the document as too large ({} bytes; the center's limit is in its answer)",
                    feed.len()
                )),
                "{shown}"
            );
            assert!(shown.contains("limit of 1048576 bytes"), "{shown}");
        }
        // The kernel dropped the answer with the reset: still not "cannot reach".
        ClientError::RejectedWhileSending { total, .. } => {
            assert_eq!(*total, feed.len() as u64);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(err.is_refusal());
    assert!(!err.is_retryable());
}

#[test]
fn a_document_cut_off_without_an_answer_is_rejected_while_sending() {
    // The center resets the connection after the headers without a word.
    let server = TestServer::start_answering_early(|_| Reply::Abort);
    let client = Client::new(&server.url, &server.ca_pem, None)
        .unwrap()
        .with_token("v");
    let feed = big_feed(8 << 20);

    let err = client.publish_feed("maker-a", &feed).unwrap_err();
    match &err {
        ClientError::RejectedWhileSending {
            what, sent, total, ..
        } => {
            assert_eq!(what, "PUT /v1/feeds/maker-a");
            assert_eq!(*total, feed.len() as u64);
            assert!(*sent < *total, "{sent} of {total}");
        }
        other => panic!("expected RejectedWhileSending, got {other:?}"),
    }
    let shown = err.to_string();
    assert!(
        shown.contains(&format!(
            "closed the connection while the {}-byte document was being sent",
            feed.len()
        )),
        "{shown}"
    );
    assert!(shown.contains("request size limit (HTTP 413)"), "{shown}");
    assert!(!shown.contains("cannot reach"), "{shown}");
    assert!(err.is_refusal());
}

#[test]
fn a_second_connection_resumes_the_tls_session() {
    // Every answer closes its connection, as between two check-ins of an agent, so each
    // request needs a new TLS handshake. The first request is a package transfer (which ureq's
    // own connector served with a config of its own, losing the session).
    let content = Arc::new(package(20_000));
    let sha = sha256_hex(&content);
    let served = content.clone();
    let server = TestServer::start(move |seen| {
        if seen.target.starts_with("/v1/packages/") {
            Reply::Close {
                status: 200,
                body: served.to_vec(),
            }
        } else {
            Reply::Close {
                status: 200,
                body: br#"{"acked_through": 1, "accepted": 1, "duplicates": 0}"#.to_vec(),
            }
        }
    });
    let identity = server.terminal_identity("45a");
    let client = Client::new(&server.url, &server.ca_pem, Some(&identity)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    client
        .download_package(&sha, content.len() as u64, &dir.path().join("p"))
        .unwrap();
    let batch = EventBatch {
        events: vec![EventDoc {
            seq: 1,
            at: "2000-11-12T00:00:00Z".to_owned(),
            kind: "agent.started".to_owned(),
            data: serde_json::json!({}),
        }],
    };
    client.send_events(&batch).unwrap();
    // A clone shares the configuration, and so the sessions.
    client.clone().send_events(&batch).unwrap();

    let seen = server.seen();
    let resumed: Vec<bool> = seen.iter().map(|s| s.resumed).collect();
    assert_eq!(resumed, [false, true, true]);
    // The resumed sessions still carry the terminal's certificate.
    let terminals: Vec<Option<&str>> = seen.iter().map(|s| s.terminal.as_deref()).collect();
    assert_eq!(terminals, [Some("45a"); 3]);

    // Another client (another identity, another process) starts with a full handshake.
    let other = Client::new(&server.url, &server.ca_pem, None).unwrap();
    let _ = other.send_events(&batch);
    assert!(!server.seen()[3].resumed);
}
