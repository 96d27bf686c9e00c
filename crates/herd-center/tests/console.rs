//! The web console through the center's real router (in process, no socket): sign-in with a
//! token and with a one-time link, every page, and the refusals — no session, a forged, an
//! expired or a signed-out session, a revoked token, a viewer acting, a missing or wrong CSRF
//! token, another site's origin — and untrusted names (a terminal's user, a threat's name)
//! never rendered as markup.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use herd_center::Center;
use herd_center::config::{CenterConfig, ConfigFile};
use herd_proto::api::{NewApiToken, PlacementRule};
use herd_store::{ConsoleSessionRow, EnrolTokenRow, NewTerminal, UNKNOWN_GROUP};
use http_body_util::BodyExt as _;
use sha2::{Digest as _, Sha256};
use tower::ServiceExt as _;

mod support;

use support::postgres_schema;

const EVIL_USER: &str = "<script>alert('user')</script>";
const EVIL_THREAT: &str = "<img src=x onerror=alert('threat')>";

struct Console {
    center: Arc<Center>,
    router: Router,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    location: Option<String>,
    cookie: Option<String>,
    csp: Option<String>,
    body: String,
}

impl Console {
    async fn start() -> Console {
        Console::start_with("").await
    }

    /// A center with `extra` configuration lines.
    async fn start_with(extra: &str) -> Console {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "data_dir = {:?}\n{extra}",
            dir.path().join("data").display().to_string()
        );
        let config = CenterConfig::from_file(ConfigFile::parse("test", &text).unwrap()).unwrap();
        let center = Center::open(config).await.unwrap();
        let (router, _) = herd_center::api::router(center.clone());
        Console {
            center,
            router,
            _dir: dir,
        }
    }

    async fn token(&self, role: &str) -> String {
        self.center
            .new_api_token(NewApiToken {
                role: role.into(),
                vendor: (role == "vendor").then(|| "maker-a".to_owned()),
                label: format!("a {role}"),
                ttl_secs: None,
            })
            .await
            .unwrap()
            .token
    }

    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let header_text = |name| {
            response
                .headers()
                .get(name)
                .map(|v: &header::HeaderValue| v.to_str().unwrap().to_owned())
        };
        let status = response.status();
        let location = header_text(header::LOCATION);
        let cookie = header_text(header::SET_COOKIE);
        let csp = header_text(header::CONTENT_SECURITY_POLICY);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            location,
            cookie,
            csp,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn get(&self, path: &str, session: Option<&str>) -> Answer {
        let mut request = Request::get(path);
        if let Some(secret) = session {
            request = request.header(header::COOKIE, format!("herd_console={secret}"));
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }

    async fn post(&self, path: &str, session: Option<&str>, form: &[(&str, &str)]) -> Answer {
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    herd_client::percent_encode(k),
                    herd_client::percent_encode(v)
                )
            })
            .collect();
        let mut request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::HOST, "center.test:8443")
            .header(header::ORIGIN, "https://center.test:8443");
        if let Some(secret) = session {
            request = request.header(header::COOKIE, format!("herd_console={secret}"));
        }
        self.send(request.body(Body::from(body.join("&"))).unwrap())
            .await
    }

    /// Signs in with `token`; returns the session cookie's secret.
    async fn sign_in(&self, token: &str) -> String {
        let answer = self.post("/console/login", None, &[("token", token)]).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        assert_eq!(answer.location.as_deref(), Some("/console/"));
        session_of(&answer)
    }

    /// The CSRF token the pages of `session` carry.
    async fn csrf(&self, session: &str) -> String {
        let page = self.get("/console/groups", Some(session)).await;
        let marker = "name=\"csrf\" value=\"";
        let start = page.body.find(marker).expect("a form with a CSRF token") + marker.len();
        page.body[start..start + page.body[start..].find('"').unwrap()].to_owned()
    }
}

fn session_of(answer: &Answer) -> String {
    let cookie = answer.cookie.as_deref().expect("a session cookie");
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    cookie
        .strip_prefix("herd_console=")
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_owned()
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A terminal whose user name is markup, and a threat whose name is.
async fn hostile_names(console: &Console) {
    let store = &console.center.store;
    store
        .enrol_token_insert(EnrolTokenRow {
            hash: "e".repeat(64),
            label: "test".into(),
            uses_left: 1,
            created_at: 0,
            expires_at: i64::MAX,
            reenrol_terminal: None,
        })
        .await
        .unwrap();
    store
        .enrol(
            &"e".repeat(64),
            1,
            NewTerminal {
                id: "pc-evil".into(),
                user: Some(EVIL_USER.into()),
                hardware: r#"{"kind":"pc","platform":"pc"}"#.into(),
                tz: None,
                group: UNKNOWN_GROUP.into(),
                cert_sha256: "c".repeat(64),
                enrolled_at: 1,
                address: "127.0.0.1".into(),
                site: None,
            },
        )
        .await
        .unwrap();
    let feed = serde_json::json!({
        "format": "herd.catalog/v1",
        "vendors": [{"id": "maker-a", "name": "Maker A"}],
        "products": [{"id": "vaccine-a", "vendor": "maker-a", "name": "Vaccine A", "platforms": ["pc"]}],
        "releases": [],
        "threats": [{"id": "virus-x", "name": EVIL_THREAT, "danger": "high", "discovered": "2026-01-01"}],
        "coverage": [{"product": "vaccine-a", "threat": "virus-x", "since_seq": null, "covered_on": null, "expected": "2026-02-01"}],
    });
    console
        .center
        .publish_feed(
            &herd_center::Caller::Vendor("maker-a".into()),
            "maker-a",
            feed.to_string().as_bytes(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn sign_in_pages_and_sign_out() {
    let console = Console::start().await;
    hostile_names(&console).await;

    // Without a session every page sends the reader to sign in, saying why.
    let page = console.get("/console/", None).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location.as_deref(), Some("/console/login?why=absent"));
    let login = console.get("/console/login?why=absent", None).await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(login.body.contains("Sign in to see the fleet."));
    assert!(login.csp.unwrap().contains("script-src 'self'"));

    // Wrong, vendor and empty tokens are refused with the reason, and no cookie.
    for (token, says) in [
        ("herd_nope", "not known here"),
        (&console.token("vendor").await, "vendor tokens"),
        ("", "paste an API token"),
    ] {
        let answer = console
            .post("/console/login", None, &[("token", token)])
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{token}");
        assert!(answer.body.contains(says), "{token}: {}", answer.body);
        assert!(answer.cookie.is_none());
    }

    let session = console.sign_in(&console.token("operator").await).await;
    for (path, shows) in [
        ("/console/", "Fleet overview"),
        ("/console/terminals", "pc-evil"),
        ("/console/terminals?q=EVIL", "pc-evil"),
        ("/console/terminals/pc-evil", "Terminal pc-evil"),
        ("/console/exposed", "Exposed terminals"),
        ("/console/coverage", "virus-x"),
        ("/console/coverage?danger=high&gaps=on&sort=name", "virus-x"),
        ("/console/groups", "Placement rules"),
        ("/console/sites", "No site server is enrolled"),
        ("/console/live", "Live"),
    ] {
        let page = console.get(path, Some(&session)).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        assert!(page.body.contains(shows), "{path} does not show {shows:?}");
        // Untrusted names are text, never markup.
        for raw in [EVIL_USER, EVIL_THREAT, "<script>alert", "<img src=x"] {
            assert!(!page.body.contains(raw), "{path} renders {raw:?} unescaped");
        }
    }
    let terminals = console.get("/console/terminals", Some(&session)).await;
    assert!(
        terminals
            .body
            .contains("&lt;script&gt;alert('user')&lt;/script&gt;")
    );
    let coverage = console.get("/console/coverage", Some(&session)).await;
    assert!(
        coverage
            .body
            .contains("&lt;img src=x onerror=alert('threat')&gt;")
    );
    let missing = console
        .get("/console/terminals/nobody", Some(&session))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // Sign-out ends the session everywhere and clears the cookie.
    let csrf = console.csrf(&session).await;
    let out = console
        .post("/console/logout", Some(&session), &[("csrf", &csrf)])
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.cookie.unwrap().contains("Max-Age=0"));
    let after = console.get("/console/", Some(&session)).await;
    assert_eq!(
        after.location.as_deref(),
        Some("/console/login?why=unknown")
    );
}

#[tokio::test]
async fn actions_need_an_operators_session_and_its_csrf_token() {
    let console = Console::start().await;
    let operator = console.sign_in(&console.token("operator").await).await;
    let csrf = console.csrf(&operator).await;
    let rule = [
        ("csrf", csrf.as_str()),
        ("rule0_group", UNKNOWN_GROUP),
        ("rule0_kind", "pc"),
    ];
    let rules_now = || async { console.center.rules().await.unwrap().rules };

    // No session, a forged one: refused, nothing changed.
    let none = console.post("/console/rules", None, &rule).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    let forged = console
        .post("/console/rules", Some("herd_forged"), &rule)
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    // The operator's session without the token, with a wrong one, or from another site.
    let without = console
        .post("/console/rules", Some(&operator), &rule[1..])
        .await;
    assert_eq!(without.status, StatusCode::FORBIDDEN);
    assert!(without.body.contains("CSRF"));
    let wrong = console
        .post(
            "/console/rules",
            Some(&operator),
            &[("csrf", "herd_wrong"), ("rule0_group", UNKNOWN_GROUP)],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let cross_site = console
        .send(
            Request::post("/console/logout")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::HOST, "center.test:8443")
                .header(header::ORIGIN, "https://evil.example")
                .header(header::COOKIE, format!("herd_console={operator}"))
                .body(Body::from(format!("csrf={csrf}")))
                .unwrap(),
        )
        .await;
    assert_eq!(cross_site.status, StatusCode::FORBIDDEN);
    // A viewer reads, with the right token for its own session, but may not act.
    let viewer = console.sign_in(&console.token("viewer").await).await;
    let viewer_csrf = console.csrf(&viewer).await;
    let groups = console.get("/console/groups", Some(&viewer)).await;
    assert!(
        !groups.body.contains("Save rules"),
        "a viewer sees no edit form"
    );
    let refused = console
        .post(
            "/console/rules",
            Some(&viewer),
            &[("csrf", &viewer_csrf), ("rule0_group", UNKNOWN_GROUP)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("viewer"));
    // One session's token does not work for another session.
    let swapped = console
        .post(
            "/console/rules",
            Some(&operator),
            &[("csrf", &viewer_csrf), ("rule0_group", UNKNOWN_GROUP)],
        )
        .await;
    assert_eq!(swapped.status, StatusCode::FORBIDDEN);
    assert!(
        rules_now().await.is_empty(),
        "nothing refused changed the rules"
    );

    // The operator with its token: saved; a rule naming no group is named in the page.
    let saved = console.post("/console/rules", Some(&operator), &rule).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    assert!(saved.body.contains("Saved 1 rule(s)."));
    assert_eq!(
        rules_now().await,
        [PlacementRule {
            group: UNKNOWN_GROUP.into(),
            kind: Some("pc".into()),
            platform: None,
            address: None,
            user: None,
        }]
    );
    let bad = console
        .post(
            "/console/rules",
            Some(&operator),
            &[("csrf", &csrf), ("rule0_group", "no-such-group")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::OK);
    assert!(bad.body.contains("role=\"alert\""), "{}", bad.body);
    let junk = console
        .post(
            "/console/rules",
            Some(&operator),
            &[("csrf", &csrf), ("evil", "1")],
        )
        .await;
    assert_eq!(junk.status, StatusCode::BAD_REQUEST);
    assert_eq!(rules_now().await.len(), 1);
}

#[tokio::test]
async fn sessions_end_when_idle_too_long_or_when_their_token_is_revoked() {
    let console = Console::start().await;
    let token = console.token("operator").await;
    // A session last used two hours ago (the default idle limit is 30 minutes).
    let now = herd_center::unix_now();
    console
        .center
        .store
        .console_session_insert(&ConsoleSessionRow {
            hash: hash("herd_idle"),
            token_hash: hash(&token),
            label: "idle".into(),
            csrf: "c".into(),
            created_at: now - 7200,
            last_seen: now - 7200,
        })
        .await
        .unwrap();
    let idle = console.get("/console/", Some("herd_idle")).await;
    assert_eq!(idle.location.as_deref(), Some("/console/login?why=expired"));
    let idle_action = console
        .post("/console/rules", Some("herd_idle"), &[("csrf", "c")])
        .await;
    assert_eq!(idle_action.status, StatusCode::UNAUTHORIZED);

    let session = console.sign_in(&token).await;
    assert_eq!(
        console.get("/console/", Some(&session)).await.status,
        StatusCode::OK
    );
    let revoked = console
        .center
        .revoke_token(&hash(&token)[..12], true)
        .await
        .unwrap();
    assert_eq!(revoked.token.kind, "operator");
    let ended = console.get("/console/", Some(&session)).await;
    assert_eq!(ended.location.as_deref(), Some("/console/login?why=token"));
}

#[tokio::test]
async fn a_one_time_link_signs_in_once() {
    let console = Console::start().await;
    let token = console.token("operator").await;
    let made = console
        .send(
            Request::post("/v1/console/links")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"label":"alice's laptop"}"#))
                .unwrap(),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let link: serde_json::Value = serde_json::from_str(&made.body).unwrap();
    let path = link["path"].as_str().unwrap().to_owned();
    assert!(path.starts_with("/console/link/herd_"));

    // Opening it only asks (a preview cannot spend it); posting signs in, once.
    let ask = console.get(&path, None).await;
    assert_eq!(ask.status, StatusCode::OK);
    assert!(ask.cookie.is_none());
    let first = console.post(&path, None, &[]).await;
    let session = session_of(&first);
    let overview = console.get("/console/", Some(&session)).await;
    assert!(
        overview.body.contains("alice&#39;s laptop") || overview.body.contains("alice's laptop")
    );
    let again = console.post(&path, None, &[]).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    assert!(again.body.contains("was used at"), "{}", again.body);
    let forged = console.post("/console/link/herd_forged", None, &[]).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);

    // Links are an operator's to make, within bounds.
    let viewer = console.token("viewer").await;
    for (token, body, status) in [
        (viewer.as_str(), "{}", StatusCode::FORBIDDEN),
        (
            token.as_str(),
            r#"{"ttl_secs": 5}"#,
            StatusCode::BAD_REQUEST,
        ),
        (token.as_str(), r#"{"nope": 1}"#, StatusCode::BAD_REQUEST),
    ] {
        let refused = console
            .send(
                Request::post("/v1/console/links")
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await;
        assert_eq!(refused.status, status, "{body}: {}", refused.body);
    }
}

#[tokio::test]
async fn the_live_stream_needs_a_session_and_carries_what_happens() {
    let console = Console::start().await;
    let refused = console.get("/console/live/stream", None).await;
    assert_ne!(refused.status, StatusCode::OK);
    let session = console.sign_in(&console.token("viewer").await).await;
    let response = console
        .router
        .clone()
        .oneshot(
            Request::get("/console/live/stream")
                .header(header::COOKIE, format!("herd_console={session}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert!(console.center.live.watched());
    console.center.live.publish(herd_center::live::Happening {
        kind: "checkin".into(),
        terminal: "pc-1".into(),
        at: "2026-12-06T10:00:00Z".into(),
        summary: "plan: none".into(),
    });
    let mut body = response.into_body();
    let frame = tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
        .await
        .expect("an event within 10 s")
        .unwrap()
        .unwrap();
    let text = String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap();
    assert!(text.contains("event: happening"), "{text}");
    assert!(text.contains("\"terminal\":\"pc-1\""), "{text}");
}

/// Two center processes on one PostgreSQL database (two `Center`s with pools and listeners of
/// their own, as two `herd serve` would have): a console signed in to one sees, live, the
/// events a terminal stores through the other; a third center on another schema of the same
/// database (another fleet) sees none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_view_spans_the_center_processes_of_one_database() {
    let (Some(url), Some(other_url)) = (
        postgres_schema("herd_live_fleet").await,
        postgres_schema("herd_live_other").await,
    ) else {
        eprintln!("skipped: HERD_TEST_POSTGRES_URL is not set");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let open = |name: &str, url: &str| {
        let text = format!(
            "data_dir = {:?}\ndatabase = {url:?}\nblob_dir = {:?}\nca_kek_file = {:?}\n",
            dir.path().join(name).display().to_string(),
            dir.path().join("blobs").display().to_string(),
            dir.path().join("ca.kek").display().to_string(),
        );
        CenterConfig::from_file(ConfigFile::parse("test", &text).unwrap()).unwrap()
    };
    std::fs::write(dir.path().join("ca.kek"), "the fleet's key-encryption key").unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        let owner_only = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(dir.path().join("ca.kek"), owner_only).unwrap();
    }
    let one = Center::open(open("one", &url)).await.unwrap();
    let two = Center::open(open("two", &url)).await.unwrap();
    let other = Center::open(open("other", &other_url)).await.unwrap();
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    for center in [&one, &two, &other] {
        let (center, stop_rx) = (center.clone(), stop_rx.clone());
        tokio::spawn(async move {
            center
                .live
                .share(&*center.store, &center.waits, stop_rx)
                .await
        });
    }
    for center in [&one, &other] {
        let hash = "f".repeat(64);
        center
            .store
            .enrol_token_insert(EnrolTokenRow {
                hash: hash.clone(),
                label: "live".into(),
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
                    id: "pc-live".into(),
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
    let mut watching_two = two.live.subscribe();
    let mut watching_other = other.live.subscribe();
    // Each watcher's process announces itself at once; `one` stores only once it heard.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !one.live.watched() {
        assert!(
            std::time::Instant::now() < deadline,
            "center one never heard of the watcher on center two"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let known = one.known_terminal("pc-live").await.unwrap();
    let sent = std::time::Instant::now();
    one.append_events(
        &known,
        serde_json::from_value(serde_json::json!({"events": [
            {"seq": 1, "at": "2026-12-06T10:00:00Z", "kind": "agent.started",
             "data": {"message": "started on one"}}
        ]}))
        .unwrap(),
    )
    .await
    .unwrap();
    let seen = tokio::time::timeout(std::time::Duration::from_secs(10), watching_two.recv())
        .await
        .expect("the happening reaches center two within 10 s")
        .unwrap();
    eprintln!(
        "stored on one → live on two in {:.1} ms",
        sent.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(seen.terminal, "pc-live");
    assert_eq!(seen.kind, "agent.started");
    assert_eq!(seen.summary, "started on one");
    // Another fleet's watcher hears nothing of it (nor of its own process's echo).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        watching_other.try_recv().is_err(),
        "another schema's center saw this fleet's happening"
    );
}

/// Acme's feed with `versions` of its product (each a release with one package).
fn acme_feed(versions: &[(&str, u64)]) -> Vec<u8> {
    let releases: Vec<_> = versions
        .iter()
        .map(|(version, seq)| {
            serde_json::json!({"product": "acme-av", "version": version, "pattern": format!("acme-{seq}"),
                   "seq": seq, "published": format!("2000-01-0{seq}T00:00:00Z"),
                   "packages": [{"platform": "linux", "format": "archive",
                                 "sha256": format!("{seq:064x}"), "size": 1000}]})
        })
        .collect();
    serde_json::json!({
        "format": "herd.catalog/v1",
        "vendors": [{"id": "acme", "name": "Acme"}],
        "products": [{"id": "acme-av", "vendor": "acme", "name": "AV", "platforms": ["linux"]}],
        "releases": releases, "threats": [], "coverage": []
    })
    .to_string()
    .into_bytes()
}

/// A program release rolls out as a replacement (to faulting terminals, by fault verdicts):
/// the rollouts page lists it among the releases, marked as such.
#[tokio::test]
async fn the_rollouts_page_marks_a_replacements_rollout() {
    let console =
        Console::start_with("rollout_rings = \"canary=10%/3600s/1000, broad=100%/0s/0\"\n").await;
    let center = &console.center;
    let now = herd_center::unix_now();
    let operator = herd_center::Caller::Operator;
    center
        .publish_feed(&operator, "acme", &acme_feed(&[("1.0", 1)]))
        .await
        .unwrap();
    center.rollout_tick(now).await.unwrap();
    let program = serde_json::json!({
        "format": "herd.catalog/v1",
        "vendors": [{"id": "company-b", "name": "Company B"}],
        "products": [{"id": "mw-b", "vendor": "company-b", "name": "Middleware B",
                      "kind": "program", "platforms": ["linux"]}],
        "releases": [{"product": "mw-b", "version": "2.0", "pattern": "mw-b 2.0", "seq": 1,
                      "published": "2000-01-01T00:00:00Z",
                      "packages": [{"platform": "linux", "format": "archive",
                                    "sha256": "b".repeat(64), "size": 1000}]}],
        "threats": [], "coverage": []
    });
    center
        .publish_feed(&operator, "company-b", program.to_string().as_bytes())
        .await
        .unwrap();
    center.rollout_tick(now).await.unwrap();
    let session = console.sign_in(&console.token("operator").await).await;
    let page = console.get("/console/rollouts", Some(&session)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let row = |release: &str| {
        let start = page
            .body
            .find(&format!("data-release=\"{release}\""))
            .unwrap_or_else(|| panic!("no row of {release}: {}", page.body));
        let end = page.body[start..].find("</tr>").unwrap() + start;
        page.body[start..end].to_owned()
    };
    let replacement = row("company-b/mw-b/2.0");
    assert!(
        replacement.contains("rolling") && replacement.contains(">replacement<"),
        "{replacement}"
    );
    assert!(!row("acme/acme-av/1.0").contains(">replacement<"));
}

#[tokio::test]
async fn an_operator_pauses_resumes_promotes_and_reverts_a_rollout() {
    let console =
        Console::start_with("rollout_rings = \"canary=10%/3600s/1000, broad=100%/0s/0\"\n").await;
    let center = &console.center;
    let now = herd_center::unix_now();
    let operator = herd_center::Caller::Operator;
    center
        .publish_feed(&operator, "acme", &acme_feed(&[("1.0", 1)]))
        .await
        .unwrap();
    center.rollout_tick(now).await.unwrap();
    center
        .publish_feed(&operator, "acme", &acme_feed(&[("1.0", 1), ("2.0", 2)]))
        .await
        .unwrap();
    center.rollout_tick(now).await.unwrap();
    let release = "acme/acme-av/2.0";
    let phase = || async { center.rollout_summary(release).await.unwrap().phase };

    let session = console.sign_in(&console.token("operator").await).await;
    let page = console.get("/console/rollouts", Some(&session)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for shows in [
        "acme-av 2.0",
        "rolling",
        "canary",
        "10 %",
        "Pause",
        "Revert",
    ] {
        assert!(
            page.body.contains(shows),
            "the rollouts page lacks {shows:?}"
        );
    }
    let csrf = console.csrf(&session).await;
    let act = |action: &'static str| {
        let csrf = csrf.clone();
        let session = session.clone();
        let console = &console;
        async move {
            console
                .post(
                    "/console/rollouts",
                    Some(&session),
                    &[("csrf", &csrf), ("release", release), ("action", action)],
                )
                .await
        }
    };
    let paused = act("pause").await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.body);
    assert!(paused.body.contains("the rollout is now paused"));
    assert_eq!(phase().await, "paused");
    // Pausing twice is refused with the reason, on the page.
    let again = act("pause").await;
    assert!(
        again.body.contains("only a rolling rollout pauses"),
        "{}",
        again.body
    );
    assert_eq!(act("resume").await.status, StatusCode::OK);
    assert_eq!(phase().await, "rolling");
    let promoted = act("promote").await;
    assert!(promoted.body.contains("in ring broad"), "{}", promoted.body);
    let unknown = act("explode").await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);

    // Viewers and analysts see the page without buttons, and their posts are refused.
    for role in ["viewer", "analyst"] {
        let other = console.sign_in(&console.token(role).await).await;
        let page = console.get("/console/rollouts", Some(&other)).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(
            !page.body.contains(">Revert<"),
            "{role} is offered an action"
        );
        let other_csrf = console.csrf(&other).await;
        let refused = console
            .post(
                "/console/rollouts",
                Some(&other),
                &[
                    ("csrf", &other_csrf),
                    ("release", release),
                    ("action", "revert"),
                ],
            )
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{role}");
    }
    // Without the CSRF token, or a session, nothing happens either.
    let no_csrf = console
        .post(
            "/console/rollouts",
            Some(&session),
            &[("release", release), ("action", "revert")],
        )
        .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    let no_session = console
        .post(
            "/console/rollouts",
            None,
            &[("csrf", &csrf), ("release", release), ("action", "revert")],
        )
        .await;
    assert_eq!(no_session.status, StatusCode::UNAUTHORIZED);
    assert_ne!(phase().await, "reverted");
    let reverted = act("revert").await;
    assert_eq!(reverted.status, StatusCode::OK);
    assert_eq!(phase().await, "reverted");
}

#[tokio::test]
async fn rollouts_say_how_to_turn_rings_on_when_they_are_off() {
    let console = Console::start().await;
    let session = console.sign_in(&console.token("operator").await).await;
    let page = console.get("/console/rollouts", Some(&session)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("rollout_rings"));
}

#[tokio::test]
async fn analysts_judge_samples_and_viewers_cannot() {
    let console = Console::start().await;
    let store = &console.center.store;
    let evil_path = "/home/u/<script>alert('sample')</script>.exe";
    let sha = "ab".repeat(32);
    store
        .sample_add(&herd_store::SampleRow {
            sha256: sha.clone(),
            size: 4096,
            reason: "submitted by the user".into(),
            path: evil_path.into(),
            first_terminal: "pc-1".into(),
            received_at: 1,
        })
        .await
        .unwrap();
    let analyst = console.sign_in(&console.token("analyst").await).await;
    let page = console.get("/console/samples", Some(&analyst)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("awaiting a verdict"));
    assert!(
        page.body
            .contains("&lt;script&gt;alert('sample')&lt;/script&gt;")
    );
    assert!(!page.body.contains("<script>alert('sample')"));
    assert!(page.body.contains(">Malicious<"));

    // A viewer sees it but may not judge.
    let viewer = console.sign_in(&console.token("viewer").await).await;
    let seen = console.get("/console/samples", Some(&viewer)).await;
    assert!(seen.body.contains(&sha[..16]) && !seen.body.contains(">Malicious<"));
    let viewer_csrf = console.csrf(&viewer).await;
    let refused = console
        .post(
            "/console/samples",
            Some(&viewer),
            &[
                ("csrf", &viewer_csrf),
                ("sha256", &sha),
                ("size", "4096"),
                ("verdict", "malicious"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(store.herd_signatures().await.unwrap().is_empty());

    // The analyst's malicious verdict publishes the signature at once.
    let csrf = console.csrf(&analyst).await;
    let judged = console
        .post(
            "/console/samples",
            Some(&analyst),
            &[
                ("csrf", &csrf),
                ("sha256", &sha),
                ("size", "4096"),
                ("threat", "dropper-x"),
                ("verdict", "malicious"),
            ],
        )
        .await;
    assert_eq!(judged.status, StatusCode::OK, "{}", judged.body);
    assert!(judged.body.contains("judged malicious"), "{}", judged.body);
    assert!(judged.body.contains("No sample awaits a verdict."));
    let set = store.herd_signatures().await.unwrap();
    assert_eq!((set.len(), set[0].threat.as_str()), (1, "dropper-x"));
    let all = console
        .get("/console/samples?show=all", Some(&analyst))
        .await;
    assert!(all.body.contains("malicious — in Herd's set"));

    // A bad threat id is refused with the reason on the page, and nothing changes.
    let bad = console
        .post(
            "/console/samples",
            Some(&analyst),
            &[
                ("csrf", &csrf),
                ("sha256", &sha),
                ("threat", "no spaces"),
                ("verdict", "malicious"),
                ("size", "1"),
            ],
        )
        .await;
    assert!(bad.body.contains("role=\"alert\""), "{}", bad.body);

    // Benign removes it, and the sample stays judged (not awaiting again).
    let benign = console
        .post(
            "/console/samples",
            Some(&analyst),
            &[("csrf", &csrf), ("sha256", &sha), ("verdict", "benign")],
        )
        .await;
    assert!(benign.body.contains("judged benign"), "{}", benign.body);
    assert!(store.herd_signatures().await.unwrap().is_empty());
    assert!(benign.body.contains("No sample awaits a verdict."));
    let docs = console.center.samples().await.unwrap();
    assert_eq!(
        (docs[0].verdict.as_deref(), docs[0].judged_by.as_deref()),
        (Some("benign"), Some("analyst"))
    );
    // The analyst may not change the fleet's configuration.
    let rules = console
        .post(
            "/console/rules",
            Some(&analyst),
            &[("csrf", &csrf), ("rule0_group", UNKNOWN_GROUP)],
        )
        .await;
    assert_eq!(rules.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn herds_set_shows_the_analysts_body_signatures_and_the_published_hashes() {
    let console = Console::start().await;
    let viewer = console.sign_in(&console.token("viewer").await).await;
    let empty = console.get("/console/signatures", Some(&viewer)).await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.body);
    assert!(
        empty
            .body
            .contains("No analyst has added a body signature.")
    );
    assert!(
        empty
            .body
            .contains("No verdict has published a signature yet.")
    );
    assert!(
        empty
            .body
            .contains(r#"<a href="/console/signatures" aria-current="page">Herd's set</a>"#),
        "{}",
        empty.body
    );

    // An analyst adds a body signature (through the API) and judges a file malicious.
    let ndb = "Herd.Immunity.WormX.Loader:0:*:3c7363726970743e616c65727428";
    console
        .center
        .add_body_signatures(
            herd_proto::api::BodySignaturesDoc {
                format: "ndb".into(),
                text: format!("{ndb}\n"),
                name: None,
            },
            "analyst",
        )
        .await
        .unwrap();
    let sha = "cd".repeat(32);
    console
        .center
        .verdict(
            herd_proto::api::VerdictDoc {
                sha256: sha.clone(),
                size: Some(4096),
                verdict: "malicious".into(),
                threat: Some("worm-x".into()),
                danger: None,
                name: None,
            },
            "analyst",
        )
        .await
        .unwrap();
    let page = console.get("/console/signatures", Some(&viewer)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains(ndb),
        "the signature's text: {}",
        page.body
    );
    assert!(
        page.body
            .contains(r#"data-name="Herd.Immunity.WormX.Loader""#)
    );
    assert!(page.body.contains(&format!(r#"data-sha256="{sha}""#)));
    assert!(page.body.contains("Herd.Immunity.worm-x."), "{}", page.body);
    assert!(!page.body.contains("No analyst has added"));
    // The samples page links here.
    let samples = console.get("/console/samples", Some(&viewer)).await;
    assert!(samples.body.contains(r#"<a href="/console/signatures">"#));
    // Without a session: to sign-in, like every page.
    let anonymous = console.get("/console/signatures", None).await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn faults_rules_replacements_alerts_and_messages() {
    let console = Console::start().await;
    hostile_names(&console).await;
    let center = &console.center;
    center
        .put_fault_rule(
            "mw-null-config",
            serde_json::from_value(serde_json::json!({
                "id": "mw-null-config", "program": "middleware-a", "version_below": "2.5",
                "kinds": ["crash"], "signals": [11], "frame_pattern": "parse_config",
                "cause": "a null entry in mw.conf", "remedy": "remove the empty entry"
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    // A crash of middleware-a on pc-evil, with a frame that is markup.
    let known = center.known_terminal("pc-evil").await.unwrap();
    let report = serde_json::json!({
        "program": "middleware-a", "vendor": "company-a", "version": "2.4.1",
        "platform": "linux-x86_64", "kind": "crash", "signal": 11,
        "frames": ["parse_config+0x1c", "<script>alert('frame')</script>"]
    });
    center
        .append_events(
            &known,
            serde_json::from_value(serde_json::json!({"events": [
                {"seq": 1, "at": "2026-12-06T10:00:00Z", "kind": "fault.report", "data": report}
            ]}))
            .unwrap(),
        )
        .await
        .unwrap();
    let session = console.sign_in(&console.token("operator").await).await;
    let faults = console.get("/console/faults", Some(&session)).await;
    assert_eq!(faults.status, StatusCode::OK, "{}", faults.body);
    for shows in [
        "middleware-a 2.4.1",
        "known cause",
        "mw-null-config",
        "a null entry in mw.conf",
        "below 2.5",
    ] {
        assert!(
            faults.body.contains(shows),
            "the faults page lacks {shows:?}"
        );
    }
    let bucket = center.fault_buckets().await.unwrap().buckets[0].id.clone();
    let detail = console
        .get(&format!("/console/faults/{bucket}"), Some(&session))
        .await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.body);
    assert!(detail.body.contains("pc-evil") && detail.body.contains("remove the empty entry"));
    assert!(!detail.body.contains("<script>alert('frame')"));
    let missing = console.get("/console/faults/0000", Some(&session)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // Messages: sent from the form to a terminal, shown in the thread, escaped.
    let csrf = console.csrf(&session).await;
    let sent = console
        .post(
            "/console/messages",
            Some(&session),
            &[
                ("csrf", &csrf),
                ("to", "all"),
                ("terminal", "pc-evil"),
                ("text", "<b>Reboot</b> tonight"),
            ],
        )
        .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    assert!(
        sent.body.contains("sent to terminal pc-evil"),
        "{}",
        sent.body
    );
    assert!(sent.body.contains("&lt;b&gt;Reboot&lt;/b&gt; tonight"));
    let nobody = console
        .post(
            "/console/messages",
            Some(&session),
            &[("csrf", &csrf), ("terminal", "nobody"), ("text", "hello")],
        )
        .await;
    assert!(
        nobody.body.contains("there is no terminal"),
        "{}",
        nobody.body
    );
    let empty = console
        .post(
            "/console/messages",
            Some(&session),
            &[("csrf", &csrf), ("to", "all"), ("text", "  ")],
        )
        .await;
    assert!(empty.body.contains("role=\"alert\""), "{}", empty.body);
    let viewer = console.sign_in(&console.token("viewer").await).await;
    let viewer_csrf = console.csrf(&viewer).await;
    let refused = console
        .post(
            "/console/messages",
            Some(&viewer),
            &[("csrf", &viewer_csrf), ("to", "all"), ("text", "hi")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let messages = center
        .messages(None, None, None, None)
        .await
        .unwrap()
        .messages;
    assert_eq!(messages.len(), 1);

    let alerts = console.get("/console/alerts", Some(&viewer)).await;
    assert_eq!(alerts.status, StatusCode::OK);
    assert!(alerts.body.contains("Channels and rules") && !alerts.body.contains("Send message"));
}

#[tokio::test]
async fn an_analyst_token_judges_through_the_api_and_nothing_else() {
    let console = Console::start().await;
    let analyst = console.token("analyst").await;
    let api = |method: &str, path: &str, body: Option<serde_json::Value>| {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {analyst}"));
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        request
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap()
    };
    let sha = "cd".repeat(32);
    let judged = console
        .send(api(
            "POST",
            "/v1/verdicts",
            Some(serde_json::json!({"sha256": sha, "size": 10, "verdict": "malicious"})),
        ))
        .await;
    assert_eq!(judged.status, StatusCode::OK, "{}", judged.body);
    let set = console.center.store.herd_signatures().await.unwrap();
    assert_eq!((set.len(), set[0].source.as_str()), (1, "analyst"));
    for path in ["/v1/samples", "/v1/herd-set"] {
        let answer = console.send(api("GET", path, None)).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
    }
    // Everything else refuses it, saying what it is for.
    let refused = console.send(api("GET", "/v1/groups", None)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("an analyst's"), "{}", refused.body);
    // A viewer may not judge.
    let viewer = console.token("viewer").await;
    let request = Request::post("/v1/verdicts")
        .header(header::AUTHORIZATION, format!("Bearer {viewer}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            serde_json::json!({"sha256": sha, "verdict": "benign"}).to_string(),
        ))
        .unwrap();
    assert_eq!(console.send(request).await.status, StatusCode::FORBIDDEN);
}
