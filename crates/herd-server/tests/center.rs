//! End-to-end tests of `herd serve` (the center) through its real HTTPS API: the worked
//! example of SPEC §5, bad input of every kind with its stable error code, the OpenAPI
//! document, packages with resumable downloads, start-up errors, and two center processes
//! sharing one PostgreSQL database.

mod support;

use std::process::Command;

use herd_client::ClientError;
use herd_proto::api::{
    CheckinRequest, EnrolRequest, EventBatch, EventDoc, GroupDoc, NewApiToken, NewEnrolmentToken,
    PlacementRule, PlacementRules,
};
use herd_proto::plan::Action;
use herd_proto::terminal::{HardwareDoc, InstalledDoc, PolicyDoc};
use support::{
    HERD, TestCenter, code, enrol, enrolment_token, seed_catalog, vendor_client, vendor_feed,
};

fn publish_seed(center: &TestCenter) {
    let catalog = seed_catalog();
    for vendor in ["maker-a", "maker-b"] {
        let feed = serde_json::to_vec(&vendor_feed(&catalog, vendor)).unwrap();
        let published = vendor_client(center, vendor)
            .publish_feed(vendor, &feed)
            .expect("publish");
        assert!(published.changed);
    }
}

fn vaccine_a() -> InstalledDoc {
    InstalledDoc {
        product: "vaccine-a".into(),
        version: "5.1".into(),
        seq: 1101,
        pattern: "a-1101".into(),
        format: "archive".into(),
    }
}

fn checkin(installed: Option<InstalledDoc>) -> CheckinRequest {
    CheckinRequest {
        terminal: None,
        installed,
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

/// SPEC §5's worked example, through the API: vendors A and B publish, user A's phone is
/// told to switch to vaccine b, user B's phone (latest-same-vendor) is exposed with vaccine b
/// offered.
#[test]
fn worked_example_through_the_api() {
    let center = TestCenter::start();
    let operator = center.operator();
    publish_seed(&center);

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

    let a = phone_a.checkin(&checkin(Some(vaccine_a()))).unwrap();
    assert_eq!(a.plan.action, Action::Switch, "{}", a.plan.reason);
    assert_eq!(a.plan.to.as_ref().unwrap().product, "vaccine-b");
    assert_eq!(a.plan.uncovered_now, vec!["virus-a".to_owned()]);
    assert!(
        a.plan
            .reason
            .contains("vaccine-b 7.0 (b-1112) covers it since 2000-11-12"),
        "{}",
        a.plan.reason
    );
    let kinds: Vec<String> = a
        .plan
        .steps
        .iter()
        .map(|s| {
            serde_json::to_value(s).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(kinds, ["fetch", "install", "verify", "uninstall"]);
    assert!(a.next_checkin_secs > 0);
    assert_eq!(a.plan_id.len(), 64);

    let b = phone_b.checkin(&checkin(Some(vaccine_a()))).unwrap();
    assert_eq!(b.plan.action, Action::Exposed, "{}", b.plan.reason);
    assert_eq!(b.plan.alternatives[0].product, "vaccine-b");

    // The same inventory gives the same plan, with the same id.
    let again = phone_a.checkin(&checkin(Some(vaccine_a()))).unwrap();
    assert_eq!(again.plan_id, a.plan_id);

    // Operators see it all.
    let exposed = operator
        .terminals(None, Some("exposed"), None, 100)
        .unwrap();
    assert_eq!(
        exposed
            .terminals
            .iter()
            .map(|t| t.id.as_str())
            .collect::<Vec<_>>(),
        ["45b"]
    );
    let detail = operator.terminal("45b").unwrap();
    assert_eq!(detail.summary.group, "same-vendor");
    assert_eq!(detail.summary.action.as_deref(), Some("exposed"));
    assert_eq!(detail.addresses[0].address, "127.0.0.1");
    assert!(detail.addresses[0].checkins >= 1);
    assert_eq!(operator.terminal("45a").unwrap().summary.group, "unknown");
    // The whole gap, which a plan only begins to list: 45a's vaccine-a misses virus-a, and
    // the switch to vaccine-b closes it.
    let gap = operator.terminal_gap("45a").unwrap();
    assert_eq!(gap.terminal, "45a");
    let ids: Vec<&str> = gap.uncovered_now.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["virus-a"]);
    assert_eq!(gap.uncovered_now[0].danger, "high");
    assert!(gap.uncovered_after.is_empty());
    let err = operator
        .terminal_gap("nobody")
        .expect_err("no such terminal");
    assert!(err.to_string().contains("nobody"), "{err}");
    let plan: serde_json::Value =
        serde_json::from_str(&operator.terminal_plan("45a").unwrap()).unwrap();
    assert_eq!(plan["action"], "switch");
    let coverage = operator.coverage().unwrap();
    let b_column = coverage
        .products
        .iter()
        .position(|p| p.id == "vaccine-b")
        .unwrap();
    let cell = &coverage.threats[0].cells[b_column];
    assert!(cell.covered);
    assert_eq!(cell.since_seq, Some(1112));
    let a_column = coverage
        .products
        .iter()
        .position(|p| p.id == "vaccine-a")
        .unwrap();
    assert_eq!(
        coverage.threats[0].cells[a_column].expected.as_deref(),
        Some("2000-11-15")
    );
}

#[test]
fn refused_input_has_stable_codes_and_changes_nothing() {
    let center = TestCenter::start_with(&["--checkin-interval", "60"]);
    let operator = center.operator();
    publish_seed(&center);
    let catalog = seed_catalog();
    let maker_a = vendor_client(&center, "maker-a");

    // A vendor publishing another vendor's feed, or another vendor's product in its own.
    let feed_b = serde_json::to_vec(&vendor_feed(&catalog, "maker-b")).unwrap();
    assert_eq!(
        code(maker_a.publish_feed("maker-b", &feed_b).unwrap_err()),
        (403, "forbidden_vendor".into())
    );
    assert_eq!(
        code(maker_a.publish_feed("maker-a", &feed_b).unwrap_err()),
        (403, "forbidden_vendor".into())
    );

    // Malformed and invalid feeds: every problem with its path; the catalog is unchanged.
    let before = operator.catalog().unwrap();
    assert_eq!(
        code(maker_a.publish_feed("maker-a", b"{not json").unwrap_err()).1,
        "feed_invalid"
    );
    let mut bad = vendor_feed(&catalog, "maker-a");
    bad["coverage"][0]["threat"] = "virus-zz".into();
    bad["releases"][0]["packages"][0]["sha256"] = "xyz".into();
    bad["surprise"] = true.into();
    let err = maker_a
        .publish_feed("maker-a", &serde_json::to_vec(&bad).unwrap())
        .unwrap_err();
    match &err {
        ClientError::Refused {
            status: 422,
            code,
            problems,
            ..
        } => {
            assert_eq!(code, "feed_invalid");
            assert!(!problems.is_empty(), "{err}");
        }
        other => panic!("unexpected {other}"),
    }
    let mut bad = vendor_feed(&catalog, "maker-a");
    bad["coverage"][0]["threat"] = "virus-zz".into();
    bad["releases"][0]["packages"][0]["sha256"] = "xyz".into();
    let err = maker_a
        .publish_feed("maker-a", &serde_json::to_vec(&bad).unwrap())
        .unwrap_err();
    match &err {
        ClientError::Refused { problems, .. } => {
            let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
            assert!(paths.contains(&"$.coverage[0].threat"), "{paths:?}");
            assert!(
                paths.contains(&"$.releases[0].packages[0].sha256"),
                "{paths:?}"
            );
        }
        other => panic!("unexpected {other}"),
    }
    // A product id another vendor owns: valid alone, refused merged.
    let mut stolen = vendor_feed(&catalog, "maker-a");
    stolen["products"][0]["id"] = "vaccine-b".into();
    stolen["releases"][0]["product"] = "vaccine-b".into();
    stolen["releases"][0]["seq"] = 1.into();
    stolen["coverage"][0]["product"] = "vaccine-b".into();
    let err = maker_a
        .publish_feed("maker-a", &serde_json::to_vec(&stolen).unwrap())
        .unwrap_err();
    assert_eq!(code(err), (422, "feed_invalid".into()));
    assert_eq!(
        operator.catalog().unwrap(),
        before,
        "refused feeds changed the catalog"
    );
    // Republishing is idempotent.
    let feed_a = serde_json::to_vec(&vendor_feed(&catalog, "maker-a")).unwrap();
    assert!(!maker_a.publish_feed("maker-a", &feed_a).unwrap().changed);

    // Tokens: garbage, expired, vendor on operator endpoints.
    assert_eq!(
        code(
            center
                .anonymous()
                .with_token("herd_nonsense")
                .terminals(None, None, None, 10)
                .unwrap_err()
        )
        .1,
        "unauthenticated"
    );
    assert_eq!(
        code(
            center
                .anonymous()
                .terminals(None, None, None, 10)
                .unwrap_err()
        )
        .1,
        "unauthenticated"
    );
    let expired = operator
        .new_api_token(&NewApiToken {
            role: "operator".into(),
            vendor: None,
            label: "short".into(),
            ttl_secs: Some(0),
        })
        .unwrap();
    assert_eq!(
        code(
            center
                .anonymous()
                .with_token(&expired.token)
                .terminals(None, None, None, 10)
                .unwrap_err()
        ),
        (401, "token_expired".into())
    );
    assert_eq!(
        code(maker_a.terminals(None, None, None, 10).unwrap_err()),
        (403, "forbidden".into())
    );

    // Enrolment: unknown token, used-up token, duplicate id, bad CSR.
    let token = enrolment_token(&center, 1);
    let identity = enrol(&center, &token, "45a", "user-a", "phone");
    let (_, csr_pem) = herd_tls::new_key_and_csr("x").unwrap();
    let request = |token: &str, id: &str, csr: &str| EnrolRequest {
        token: token.into(),
        csr_pem: csr.into(),
        id: Some(id.into()),
        user: None,
        hardware: HardwareDoc {
            kind: "phone".into(),
            platform: "phone".into(),
            model: None,
        },
        tz: None,
    };
    assert_eq!(
        code(
            center
                .anonymous()
                .enrol(&request(&token, "45z", &csr_pem))
                .unwrap_err()
        ),
        (403, "enrolment_token_invalid".into())
    );
    assert_eq!(
        code(
            center
                .anonymous()
                .enrol(&request("herd_unknown", "45z", &csr_pem))
                .unwrap_err()
        )
        .1,
        "enrolment_token_invalid"
    );
    let token2 = enrolment_token(&center, 5);
    assert_eq!(
        code(
            center
                .anonymous()
                .enrol(&request(&token2, "45a", &csr_pem))
                .unwrap_err()
        ),
        (409, "terminal_exists".into())
    );
    assert_eq!(
        code(
            center
                .anonymous()
                .enrol(&request(
                    &token2,
                    "45y",
                    "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
                ))
                .unwrap_err()
        ),
        (422, "csr_invalid".into())
    );
    assert_eq!(
        code(
            center
                .anonymous()
                .enrol(&request(&token2, "../etc", &csr_pem))
                .unwrap_err()
        )
        .1,
        "bad_request"
    );

    // A terminal acting as another, or without its certificate.
    let phone = center.terminal_client(&identity);
    let mut as_other = checkin(Some(vaccine_a()));
    as_other.terminal = Some("45b".into());
    assert_eq!(
        code(phone.checkin(&as_other).unwrap_err()),
        (403, "identity_mismatch".into())
    );
    assert_eq!(
        code(center.anonymous().checkin(&checkin(None)).unwrap_err()),
        (401, "client_certificate_required".into())
    );
    // Inventory the catalog does not know.
    let mut unknown = vaccine_a();
    unknown.product = "vaccine-zz".into();
    assert_eq!(
        code(phone.checkin(&checkin(Some(unknown))).unwrap_err()),
        (422, "inventory_invalid".into())
    );

    // Events: seq must increase; a batch sent twice is stored once.
    let event = |seq: u64| EventDoc {
        seq,
        at: "2026-11-21T10:00:00Z".into(),
        kind: "agent.started".into(),
        data: serde_json::json!({}),
    };
    assert_eq!(
        code(
            phone
                .send_events(&EventBatch {
                    events: vec![event(2), event(2)]
                })
                .unwrap_err()
        )
        .1,
        "bad_request"
    );
    let batch = EventBatch {
        events: vec![event(1), event(2), event(3)],
    };
    let first = phone.send_events(&batch).unwrap();
    assert_eq!(
        (first.acked_through, first.accepted, first.duplicates),
        (3, 3, 0)
    );
    let second = phone.send_events(&batch).unwrap();
    assert_eq!(
        (second.acked_through, second.accepted, second.duplicates),
        (3, 0, 3)
    );
    let bad_report = EventBatch {
        events: vec![EventDoc {
            seq: 4,
            at: "2026-11-21T10:00:00Z".into(),
            kind: "plan.report".into(),
            data: serde_json::json!({"plan": 1}),
        }],
    };
    assert_eq!(
        code(phone.send_events(&bad_report).unwrap_err()).1,
        "bad_request"
    );

    // Deleting the terminal revokes its certificate at once.
    operator.delete_terminal("45a").unwrap();
    assert_eq!(
        code(phone.checkin(&checkin(Some(vaccine_a()))).unwrap_err()).0,
        401
    );

    // Groups: the unknown group and groups in use cannot be deleted; bad policies are refused.
    assert_eq!(
        code(operator.delete_group("unknown").unwrap_err()).1,
        "conflict"
    );
    let mut group = GroupDoc {
        id: "g1".into(),
        description: String::new(),
        policy: PolicyDoc {
            apply: "sometimes".into(),
            min_danger: None,
            consent: None,
            window: None,
            tz: None,
            vendors: None,
        },
        terminals: 0,
    };
    assert_eq!(code(operator.put_group(&group).unwrap_err()).0, 422);
    group.policy.apply = "pinned".into();
    operator.put_group(&group).unwrap();
    let rule = PlacementRule {
        group: "missing".into(),
        kind: Some("pc".into()),
        platform: None,
        address: None,
        user: None,
    };
    assert_eq!(
        code(
            operator
                .put_rules(&PlacementRules { rules: vec![rule] })
                .unwrap_err()
        )
        .1,
        "conflict"
    );
    let rule = PlacementRule {
        group: "g1".into(),
        kind: None,
        platform: None,
        address: Some("10.0.0.0/99".into()),
        user: None,
    };
    assert_eq!(
        code(
            operator
                .put_rules(&PlacementRules { rules: vec![rule] })
                .unwrap_err()
        )
        .0,
        422
    );
}

#[test]
fn packages_upload_verified_and_download_resumes() {
    let center = TestCenter::start_with(&[]);
    let maker_a = vendor_client(&center, "maker-a");
    let dir = tempfile::tempdir().unwrap();
    let package = dir.path().join("vaccine.tar.gz");
    let bytes: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(&package, &bytes).unwrap();
    let info = maker_a.upload_package(&package).unwrap();
    assert_eq!(info.size, bytes.len() as u64);
    assert_eq!(info.vendor.as_deref(), Some("maker-a"));
    assert!(info.created);
    assert!(
        !maker_a.upload_package(&package).unwrap().created,
        "uploading again is idempotent"
    );

    // A partial download resumes from where it stopped.
    let dest = dir.path().join("download");
    std::fs::write(&dest, &bytes[..123_457]).unwrap();
    maker_a
        .download_package(&info.sha256, info.size, &dest)
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);

    // Wrong digests are refused and nothing is stored.
    let wrong = "0".repeat(64);
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(center.data_dir.join("ca.pem"))
        .args(["-X", "PUT", "--data-binary"])
        .arg(format!("@{}", package.display()))
        .args([
            "-H",
            &format!("Authorization: Bearer {}", center.operator_token()),
        ])
        .arg(format!("{}/v1/packages/{wrong}", center.url))
        .output();
    if let Ok(out) = out {
        if out.status.success() {
            assert_eq!(String::from_utf8_lossy(&out.stdout), "422");
        }
    }
    assert_eq!(
        code(
            maker_a
                .download_package(&wrong, 10, &dir.path().join("x"))
                .unwrap_err()
        )
        .1,
        "not_found"
    );
}

#[test]
fn openapi_document_matches_the_code_and_every_documented_route_exists() {
    let center = TestCenter::start();
    let out = Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(center.data_dir.join("ca.pem"))
        .arg(format!("{}/v1/openapi.json", center.url))
        .output()
        .expect("curl runs");
    let served = String::from_utf8(out.stdout).unwrap();
    let committed_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&committed_path, format!("{served}\n")).unwrap();
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert_eq!(
        committed.trim_end(),
        served.trim_end(),
        "docs/openapi.json is out of date: run `UPDATE_EXPECT=1 cargo test -p herd-server --test center openapi` and commit it"
    );
    let doc: serde_json::Value = serde_json::from_str(&served).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let url = format!("{}{}", center.url, path.replace('{', "x").replace('}', ""));
            let out = Command::new("curl")
                .args(["-s", "-X", &method.to_uppercase(), "--cacert"])
                .arg(center.data_dir.join("ca.pem"))
                .arg(&url)
                .output()
                .unwrap();
            let body = String::from_utf8_lossy(&out.stdout);
            assert!(
                !body.contains("no such endpoint"),
                "{method} {path} is documented but not routed"
            );
        }
    }
}

#[test]
fn a_config_that_would_fail_every_enrolment_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (config, says)) in [
        (
            "terminal_cert_days = 4000\n",
            "terminal_cert_days: 4000 is outside 1..=3653",
        ),
        (
            "server_names = [\"localhost\", \"not a name\"]\n",
            "server_names: \"not a name\" is neither a DNS name nor an IP address",
        ),
        ("max_enrol_token_days = 0\n", "max_enrol_token_days"),
    ]
    .into_iter()
    .enumerate()
    {
        let file = dir.path().join(format!("herd-{i}.toml"));
        std::fs::write(&file, config).unwrap();
        let out = Command::new(HERD)
            .arg("serve")
            .arg("--config")
            .arg(&file)
            .arg("--data-dir")
            .arg(dir.path().join(format!("data-{i}")))
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", support::free_port()))
            .env("RUST_LOG", "error")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{config}: {err}");
        assert!(err.contains(says), "{config}: {err}");
        assert!(!dir.path().join(format!("data-{i}/ca.pem")).exists());
    }
}

#[test]
fn startup_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(HERD)
            .arg("serve")
            .args(args)
            .env("RUST_LOG", "error")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let data = dir.path().join("d").display().to_string();
    let (status, err) = run(&["--listen", &addr, "--data-dir", &data]);
    assert_eq!(status, Some(2));
    assert!(
        err.contains(&format!("cannot listen on {addr}")) && err.contains("another program"),
        "{err}"
    );

    let config = dir.path().join("herd.toml");
    std::fs::write(&config, "listn = \"127.0.0.1:1\"\n").unwrap();
    let (status, err) = run(&["--config", config.to_str().unwrap()]);
    assert_eq!(status, Some(2));
    assert!(err.contains("listn"), "{err}");

    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let port = support::free_port().to_string();
    let (status, err) = run(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        file.to_str().unwrap(),
    ]);
    assert_eq!(status, Some(2));
    assert!(
        err.contains("data directory") && err.contains("a-file"),
        "{err}"
    );

    let port = support::free_port().to_string();
    let (status, err) = run(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        &data,
        "--database",
        "postgres://nobody@127.0.0.1:1/nothing",
    ]);
    assert_eq!(status, Some(2));
    assert!(
        err.contains("postgres://nobody@127.0.0.1:1/nothing"),
        "{err}"
    );
}

/// A plain HTTP/1.0 GET on loopback: the status code and the body.
fn plain_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

#[test]
fn metrics_are_not_served_to_api_clients_when_a_metrics_listener_is_set() {
    let (plain, scrape) = (support::free_port(), support::free_port());
    let center = TestCenter::start_with(&[
        "--plaintext-listen",
        &format!("127.0.0.1:{plain}"),
        "--metrics-listen",
        &format!("127.0.0.1:{scrape}"),
    ]);
    center.operator().health().unwrap();
    let (status, _) = plain_get(plain, "/metrics");
    assert_eq!(status, 404, "the API listener still serves /metrics");
    let (status, body) = plain_get(scrape, "/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("herd_checkins_total"), "{body}");
    let (status, _) = plain_get(scrape, "/v1/health");
    assert_eq!(status, 404, "the metrics listener serves only /metrics");
}

#[test]
fn sigterm_stops_the_center_gracefully() {
    let mut center = TestCenter::start();
    center.operator().health().unwrap();
    let (status, stderr) = center.stop();
    assert!(status.success(), "exit {status}: {stderr}");
}

/// Two center processes on one PostgreSQL database agree on everything: the CA, tokens,
/// terminals and the catalog (a feed published through one is planned with by the other).
#[test]
fn two_centers_share_one_postgres_database() {
    let Some(url) = support::postgres_schema("herd_center") else {
        eprintln!("skipped: HERD_TEST_POSTGRES_URL is not set");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("shared-blobs").display().to_string();
    let args = ["--database", url.as_str(), "--blob-dir", blobs.as_str()];
    // Processes of one database share the key-encryption key its CA key is sealed under.
    let kek = [("HERD_CA_KEK", "the fleet's key-encryption key")];
    let one = TestCenter::try_spawn(&dir.path().join("one"), &args, &kek).unwrap();
    let two = TestCenter::try_spawn(&dir.path().join("two"), &args, &kek).unwrap();
    let stranger = TestCenter::try_spawn(
        &dir.path().join("three"),
        &args,
        &[("HERD_CA_KEK", "someone else's key-encryption key")],
    );
    let err = format!("{:#}", stranger.unwrap_err());
    assert!(err.contains("cannot open the CA key"), "{err}");
    assert_eq!(
        one.ca_pem(),
        two.ca_pem(),
        "both centers serve with the CA stored in the database"
    );
    // Only the first start bootstraps an operator token; it works on both.
    let token = one.operator_token();
    let operator_two = two.anonymous().with_token(&token);

    let catalog = seed_catalog();
    let feed_a = serde_json::to_vec(&vendor_feed(&catalog, "maker-a")).unwrap();
    one.operator().publish_feed("maker-a", &feed_a).unwrap();
    let enrol_token = operator_two
        .new_enrolment_token(&NewEnrolmentToken {
            label: "pg".into(),
            uses: Some(1),
            ttl_secs: None,
            reenrol_terminal: None,
        })
        .unwrap()
        .token;
    // Enrolled through the second center, checking in through the first.
    let identity = enrol(&two, &enrol_token, "45a", "user-a", "phone");
    let phone_via_one = one.terminal_client(&identity);
    let before = phone_via_one.checkin(&checkin(Some(vaccine_a()))).unwrap();
    assert_eq!(
        before.plan.action,
        Action::Exposed,
        "only vaccine a is known: {}",
        before.plan.reason
    );

    // Maker B publishes through the second center; the first plans with it within seconds.
    let feed_b = serde_json::to_vec(&vendor_feed(&catalog, "maker-b")).unwrap();
    operator_two.publish_feed("maker-b", &feed_b).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let plan = phone_via_one
            .checkin(&checkin(Some(vaccine_a())))
            .unwrap()
            .plan;
        if plan.action == Action::Switch {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "center one never saw maker B's feed"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // Deleting the terminal through one center revokes it on the other.
    one.operator().delete_terminal("45a").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let phone_via_two = two.terminal_client(&identity);
    while phone_via_two.checkin(&checkin(Some(vaccine_a()))).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "center two still accepts a deleted terminal"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn oversized_feeds_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herd.toml");
    std::fs::write(&config, "max_feed_bytes = 200\n").unwrap();
    let center = TestCenter::start_with(&["--config", config.to_str().unwrap()]);
    let feed = serde_json::to_vec(&vendor_feed(&seed_catalog(), "maker-a")).unwrap();
    assert!(feed.len() > 200);
    assert_eq!(
        code(
            center
                .operator()
                .publish_feed("maker-a", &feed)
                .unwrap_err()
        ),
        (413, "too_large".into())
    );
    // A feed of many megabytes, still being sent when the center refuses it: the center reads
    // and drops the rest, so the client reads the refusal instead of a broken pipe.
    let mut big = vendor_feed(&seed_catalog(), "maker-a");
    let threats: Vec<serde_json::Value> = (0..60_000)
        .map(|i| {
            serde_json::json!({"id": format!("threat-{i:06}"), "name": format!("threat {i}"),
                "danger": "low", "discovered": "2000-11-01"})
        })
        .collect();
    big["threats"] = serde_json::Value::Array(threats);
    let big = serde_json::to_vec(&big).unwrap();
    assert!(big.len() > 4_000_000);
    let err = center.operator().publish_feed("maker-a", &big).unwrap_err();
    assert!(!err.to_string().contains("cannot reach"), "{err}");
    assert_eq!(code(err), (413, "too_large".into()));
}
