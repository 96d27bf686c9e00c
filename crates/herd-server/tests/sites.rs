//! Site servers end to end (SPEC §2, §3.5): a real center and real `herd serve --role site`
//! processes; terminals (herd-client with their own certificates, speaking the agent's
//! protocol) enrol, check in and download through their site; the center stopped while the
//! site keeps serving and queuing; everything queued arriving once and in order; a site that
//! tries to act as the center or as another site; bad input on the site endpoints; kill -9 of
//! the site and of the center during a stream of reports; a site planning under the center's
//! rollout rings.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use herd_client::{Client, ClientError};
use herd_proto::api::{CheckinRequest, EnrolRequest, EventBatch, EventDoc};
use herd_proto::plan::{Action, Step};
use herd_proto::site::{
    RelayBatch, RelayBody, RelayItem, SiteChanges, SiteEnrolRequest, SiteRenewRequest, SiteStatus,
};
use herd_proto::terminal::HardwareDoc;
use herd_tls::KeyPairPem;
use support::{TestCenter, build_package, code, enrolment_token, feed, free_port, vendor_client};

/// A running site server.
struct TestSite {
    process: TestCenter,
    metrics_port: u16,
    data_dir: PathBuf,
    extra: Vec<String>,
}

impl TestSite {
    /// Enrols and starts site `id` of `center` in `dir`.
    fn start(center: &TestCenter, dir: &Path, id: &str) -> TestSite {
        let token = center.operator().new_site_token(id).unwrap().token;
        let ca = dir.join(format!("{id}-center-ca.pem"));
        std::fs::write(&ca, center.ca_pem()).unwrap();
        let metrics_port = free_port();
        let extra = vec![
            "--role".to_owned(),
            "site".to_owned(),
            "--upstream".to_owned(),
            center.url.clone(),
            "--upstream-ca".to_owned(),
            ca.display().to_string(),
            "--site-id".to_owned(),
            id.to_owned(),
            "--site-token".to_owned(),
            token,
            "--plaintext-listen".to_owned(),
            format!("127.0.0.1:{metrics_port}"),
            "--config".to_owned(),
            site_config(dir, id).display().to_string(),
        ];
        let data_dir = dir.join(id);
        let process = TestCenter::spawn(
            &data_dir,
            &extra.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        TestSite {
            process,
            metrics_port,
            data_dir,
            extra,
        }
    }

    /// Starts the site again on its data (after a stop or a kill).
    fn restart(&mut self) {
        let listen = format!("127.0.0.1:{}", self.process.port);
        let mut extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        extra.extend(["--listen", &listen]);
        self.process = TestCenter::spawn(&self.data_dir, &extra);
    }

    fn url(&self) -> &str {
        &self.process.url
    }

    /// A metric of the site (plaintext loopback listener), 0 when absent.
    fn metric(&self, name: &str) -> u64 {
        metric(self.metrics_port, name)
    }
}

/// A short pull, so tests need not wait for a held request to end.
fn site_config(dir: &Path, id: &str) -> PathBuf {
    let path = dir.join(format!("{id}.toml"));
    std::fs::write(
        &path,
        "site_poll_secs = 5\nmax_events_per_terminal = 1000000\n",
    )
    .unwrap();
    path
}

fn metric(port: u16, name: &str) -> u64 {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    );
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

fn wait_until(what: &str, seconds: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Enrols terminal `id` (platform linux) through `server` (a site or the center).
fn enrol_at(server: &str, ca_pem: &str, token: &str, id: &str) -> (KeyPairPem, Vec<String>) {
    let (key_pem, csr_pem) = herd_tls::new_key_and_csr(id).unwrap();
    let enrolled = Client::new(server, ca_pem, None)
        .unwrap()
        .enrol(&EnrolRequest {
            token: token.to_owned(),
            csr_pem,
            id: Some(id.to_owned()),
            user: None,
            hardware: HardwareDoc {
                kind: "pc".into(),
                platform: "linux".into(),
                model: None,
            },
            tz: None,
        })
        .unwrap();
    (
        KeyPairPem {
            cert_pem: enrolled.certificate_pem,
            key_pem,
        },
        enrolled.upstreams,
    )
}

fn checkin() -> CheckinRequest {
    CheckinRequest {
        terminal: None,
        installed: None,
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

fn events(from: u64, count: u64) -> EventBatch {
    EventBatch {
        events: (from..from + count)
            .map(|seq| EventDoc {
                seq,
                at: "2026-12-06T00:00:00Z".into(),
                kind: "test.report".into(),
                data: serde_json::json!({ "n": seq }),
            })
            .collect(),
    }
}

/// The seqs of `terminal`'s events in the center's SQLite database, in the order the center
/// stored them (its rowid), with the center stopped.
fn stored_seqs(center_data: &Path, terminal: &str) -> Vec<u64> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let url = format!("sqlite://{}", center_data.join("herd.db").display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let seqs: Vec<i64> =
            sqlx::query_scalar("SELECT seq FROM events WHERE terminal = $1 ORDER BY rowid")
                .bind(terminal)
                .fetch_all(&pool)
                .await
                .unwrap();
        pool.close().await;
        seqs.into_iter().map(|s| s as u64).collect()
    })
}

/// One request over the site's plaintext loopback listener: (status, headers, body).
fn plain_request(port: u16, request: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// A site serves its own console: its operators sign in with the site's token and see its
/// terminals and its link and queue to the center; it edits nothing the center owns.
#[test]
fn a_site_serves_its_own_console() {
    let dir = tempfile::tempdir().unwrap();
    let center = TestCenter::spawn(&dir.path().join("center"), &[]);
    let ca = center.ca_pem();
    let site = TestSite::start(&center, dir.path(), "office-1");
    let token = enrolment_token(&center, 1);
    let (t1, _) = enrol_at(site.url(), &ca, &token, "t1");
    Client::new(site.url(), &ca, Some(&t1))
        .unwrap()
        .checkin(&checkin())
        .unwrap();
    let site_token = std::fs::read_to_string(site.data_dir.join("operator.token")).unwrap();
    let port = site.metrics_port;
    let form = format!("token={}", site_token.trim());
    let (status, head, _body) = plain_request(
        port,
        &format!(
            "POST /console/login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{form}",
            form.len()
        ),
    );
    assert_eq!(status, 303, "{head}\n{_body}");
    let cookie = head
        .lines()
        .find_map(|line| line.strip_prefix("set-cookie: herd_console="))
        .and_then(|rest| rest.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let get = |path: &str| {
        plain_request(
            port,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: herd_console={cookie}\r\n\
                 Connection: close\r\n\r\n"
            ),
        )
    };
    let (status, _, overview) = get("/console/");
    assert_eq!(status, 200);
    assert!(overview.contains("Herd site"), "{overview}");
    let (_, _, terminals) = get("/console/terminals");
    assert!(terminals.contains(">t1<"), "the site lists its terminal");
    let (_, _, this_site) = get("/console/sites");
    assert!(this_site.contains("office-1"), "{this_site}");
    assert!(this_site.contains("Queue to the center"), "{this_site}");
    let (_, _, groups) = get("/console/groups");
    assert!(groups.contains("Rules are edited on the center."));
    assert!(!groups.contains("Save rules"));
    let (status, head, page) = get("/console/nothing-here");
    assert_eq!(status, 404, "{head}");
    assert!(
        page.contains("no such page"),
        "the console's own page, not the API's error"
    );
}

#[test]
fn terminals_are_served_by_their_site_while_the_center_is_down_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let center_data = dir.path().join("center");
    let mut center = TestCenter::spawn(&center_data, &[]);
    let ca = center.ca_pem();
    let acme = vendor_client(&center, "acme");
    let (package, packages) = build_package(dir.path(), "1.0", 1);
    acme.upload_package(&package).unwrap();
    acme.publish_feed(
        "acme",
        &serde_json::to_vec(&feed("acme", &[("1.0", 1, &packages)])).unwrap(),
    )
    .unwrap();
    let site1 = TestSite::start(&center, dir.path(), "office-1");
    let site2 = TestSite::start(&center, dir.path(), "office-2");
    let token = enrolment_token(&center, 10);

    // Enrolment through a site: the center issues the certificate, the site keeps the
    // terminal and names itself first, the center second.
    let (t1, upstreams) = enrol_at(site1.url(), &ca, &token, "t1");
    assert_eq!(upstreams.len(), 2, "{upstreams:?}");
    assert!(upstreams[0].ends_with(&format!(":{}", site1.process.port)));
    assert_eq!(upstreams[1], center.url);
    let (t2, _) = enrol_at(site1.url(), &ca, &token, "t2");
    let (t3, _) = enrol_at(site2.url(), &ca, &token, "t3");

    // The site plans with the replicated catalog.
    let at_site = |identity: &KeyPairPem, site: &TestSite| {
        Client::new(site.url(), &ca, Some(identity)).unwrap()
    };
    let answer = at_site(&t1, &site1).checkin(&checkin()).unwrap();
    assert_eq!(answer.plan.action, Action::Switch, "{:?}", answer.plan);
    let (sha256, size) = answer
        .plan
        .steps
        .iter()
        .find_map(|step| match step {
            Step::Fetch { sha256, size, .. } => Some((sha256.clone(), *size)),
            _ => None,
        })
        .expect("a fetch step");

    // Each package crosses the center→site link once per site, whoever asks and how often.
    let bytes = std::fs::read(&package).unwrap();
    for (identity, site, name) in [(&t1, &site1, "a"), (&t2, &site1, "b"), (&t3, &site2, "c")] {
        let dest = dir.path().join(format!("download-{name}"));
        at_site(identity, site)
            .download_package(&sha256, size, &dest)
            .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    }
    wait_until("site 1 counted its upstream bytes", 10, || {
        site1.metric("herd_site_upstream_bytes_total") > 0
    });
    assert_eq!(site1.metric("herd_site_upstream_bytes_total"), size);
    assert_eq!(site2.metric("herd_site_upstream_bytes_total"), size);
    // Packages only for terminals: without a certificate the site refuses.
    let anonymous = Client::new(site1.url(), &ca, None).unwrap();
    assert!(
        anonymous
            .download_package(&sha256, size, &dir.path().join("nope"))
            .is_err()
    );

    // The center sees what the site's terminals reported.
    wait_until("t1's check-in relayed to the center", 20, || {
        center
            .operator()
            .terminal("t1")
            .is_ok_and(|detail| detail.summary.last_checkin.is_some())
    });

    // The center goes down: the site keeps planning, serving and queuing.
    center.stop();
    let mut sent = 0;
    for batch in 0..20 {
        let ack = at_site(&t1, &site1)
            .send_events(&events(1 + batch * 50, 50))
            .unwrap();
        sent += 50;
        assert_eq!(ack.acked_through, sent);
    }
    let again = at_site(&t1, &site1).checkin(&checkin()).unwrap();
    assert_eq!(again.plan.action, Action::Switch);
    let dest = dir.path().join("download-offline");
    at_site(&t2, &site1)
        .download_package(&sha256, size, &dest)
        .unwrap();
    wait_until("the site reports its queue", 10, || {
        site1.metric("herd_site_queue_depth") >= 21
    });
    assert_eq!(site1.metric("herd_site_upstream_up"), 0);

    // The center comes back: everything queued arrives, once, in order.
    let center_port = center.port;
    let mut center = TestCenter::spawn(
        &center_data,
        &["--listen", &format!("127.0.0.1:{center_port}")],
    );
    wait_until("the site's queue drained", 60, || {
        site1.metric("herd_site_queue_depth") == 0 && site1.metric("herd_site_upstream_up") == 1
    });
    let sites = center.operator().sites().unwrap();
    let office1 = sites.iter().find(|s| s.id == "office-1").unwrap();
    assert_eq!(office1.terminals, 2);
    assert!(office1.relay_applied > 0);
    center.stop();
    let seqs = stored_seqs(&center_data, "t1");
    assert_eq!(
        seqs,
        (1..=sent).collect::<Vec<_>>(),
        "every event once, in order"
    );
    drop(site2);
}

#[test]
fn a_site_acts_only_as_itself_and_for_its_own_terminals() {
    let dir = tempfile::tempdir().unwrap();
    let center = TestCenter::spawn(&dir.path().join("center"), &[]);
    let ca = center.ca_pem();
    let site1 = TestSite::start(&center, dir.path(), "office-1");
    let site2 = TestSite::start(&center, dir.path(), "office-2");
    let token = enrolment_token(&center, 10);
    let (t1, _) = enrol_at(site1.url(), &ca, &token, "t1");
    let (t2, _) = enrol_at(site2.url(), &ca, &token, "t2");
    let site_identity = |site: &TestSite| KeyPairPem {
        cert_pem: std::fs::read_to_string(site.data_dir.join("site/cert.pem")).unwrap(),
        key_pem: std::fs::read_to_string(site.data_dir.join("site/key.pem")).unwrap(),
    };
    let as_site1 = Client::new(&center.url, &ca, Some(&site_identity(&site1))).unwrap();

    // Not a terminal, not an operator.
    let (status, error) = code(as_site1.checkin(&checkin()).unwrap_err());
    assert_eq!(
        (status, error.as_str()),
        (403, "client_certificate_required"),
        "{error}"
    );
    assert_eq!(
        code(as_site1.terminals(None, None, None, 10).unwrap_err()).0,
        401
    );
    // Not another site's relay: t2 enrolled through office-2.
    let relay = |terminal: &str, seq: u64| RelayBatch {
        items: vec![RelayItem {
            seq,
            terminal: terminal.to_owned(),
            body: RelayBody::Events {
                batch: events(1, 1),
            },
        }],
    };
    let (status, error) = code(as_site1.relay(&relay("t2", 1_000_000)).unwrap_err());
    assert_eq!((status, error.as_str()), (403, "forbidden"));
    // Nor can it claim t2, which never presented itself there: the center hands a terminal
    // over only to a site naming the certificate the terminal presented to it.
    let (status, error) = code(as_site1.site_terminal("t2", &"0".repeat(64)).unwrap_err());
    assert_eq!((status, error.as_str()), (404, "not_found"));
    let office2 = |center: &TestCenter| {
        let sites = center.operator().sites().unwrap();
        sites.iter().find(|s| s.id == "office-2").unwrap().terminals
    };
    assert_eq!(office2(&center), 1, "t2 is still office-2's");
    // A terminal is not a site.
    let as_t1 = Client::new(&center.url, &ca, Some(&t1)).unwrap();
    let (status, _) = code(as_t1.relay(&relay("t1", 1_000_001)).unwrap_err());
    assert_eq!(status, 403);
    // Only the center notifies a site: not a site, at the center or at another site.
    let (status, error) = code(as_site1.site_notify(&SiteChanges::default()).unwrap_err());
    assert_eq!((status, error.as_str()), (403, "forbidden"));
    let at_site2 = Client::new(site2.url(), &ca, Some(&site_identity(&site1))).unwrap();
    assert_eq!(
        code(at_site2.site_notify(&SiteChanges::default()).unwrap_err()).0,
        403
    );
    // A site does not do what only the center does.
    let site_operator = Client::new(site1.url(), &ca, None)
        .unwrap()
        .with_token(&std::fs::read_to_string(site1.data_dir.join("operator.token")).unwrap());
    let (status, error) = code(site_operator.new_site_token("x").unwrap_err());
    assert_eq!((status, error.as_str()), (421, "wrong_role"));
    assert_eq!(
        code(site_operator.publish_feed("acme", b"{}").unwrap_err()).1,
        "wrong_role"
    );
    // A used site token does not enrol another site.
    let (_, csr_pem) = herd_tls::new_key_and_csr("office-3").unwrap();
    let used = center.operator().new_site_token("once").unwrap().token;
    let enrol = |token: &str, id: &str, url: &str, names: Vec<String>, csr: &str| {
        center.anonymous().enrol_site(&SiteEnrolRequest {
            token: token.to_owned(),
            csr_pem: csr.to_owned(),
            id: id.to_owned(),
            url: url.to_owned(),
            server_names: names,
        })
    };
    enrol(
        &used,
        "office-3",
        "https://127.0.0.1:1",
        vec!["127.0.0.1".into()],
        &csr_pem,
    )
    .unwrap();
    let (status, error) =
        code(enrol(&used, "office-3", "https://127.0.0.1:1", vec![], &csr_pem).unwrap_err());
    assert_eq!((status, error.as_str()), (403, "enrolment_token_invalid"));
    // A terminal token does not enrol a site, nor a site token a terminal.
    let (status, _) =
        code(enrol(&token, "office-4", "https://x.example", vec![], &csr_pem).unwrap_err());
    assert_eq!(status, 403);
    let site_token = center.operator().new_site_token("site").unwrap().token;
    let (_, csr) = herd_tls::new_key_and_csr("t9").unwrap();
    let refused = center.anonymous().enrol(&EnrolRequest {
        token: site_token.clone(),
        csr_pem: csr,
        id: Some("t9".into()),
        user: None,
        hardware: HardwareDoc {
            kind: "pc".into(),
            platform: "linux".into(),
            model: None,
        },
        tz: None,
    });
    assert_eq!(code(refused.unwrap_err()).1, "enrolment_token_invalid");
    // Bad input on the site endpoints, each named.
    for (id, url, names, csr, expected) in [
        (
            "bad id",
            "https://x.example",
            vec![],
            csr_pem.as_str(),
            "$.id",
        ),
        ("ok", "http://x.example", vec![], csr_pem.as_str(), "$.url"),
        (
            "ok",
            "https://x.example",
            vec!["a/b".to_owned()],
            csr_pem.as_str(),
            "$.server_names[0]",
        ),
        (
            "ok",
            "https://x.example",
            vec![],
            "not a csr",
            "certificate request",
        ),
    ] {
        let err = enrol(&site_token, id, url, names, csr).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(expected), "{expected}: {message}");
    }
    let out_of_order = RelayBatch {
        items: vec![
            RelayItem {
                seq: 5,
                terminal: "t1".into(),
                body: RelayBody::Events {
                    batch: events(1, 1),
                },
            },
            RelayItem {
                seq: 5,
                terminal: "t1".into(),
                body: RelayBody::Events {
                    batch: events(2, 1),
                },
            },
        ],
    };
    let as_site1 = Client::new(&center.url, &ca, Some(&site_identity(&site1))).unwrap();
    let err = as_site1.relay(&out_of_order).unwrap_err().to_string();
    assert!(err.contains("$.items[1].seq"), "{err}");
    let too_many = RelayBatch {
        items: (1..=501)
            .map(|seq| RelayItem {
                seq,
                terminal: "t1".into(),
                body: RelayBody::Events {
                    batch: events(seq, 1),
                },
            })
            .collect(),
    };
    assert_eq!(code(as_site1.relay(&too_many).unwrap_err()).0, 413);
    let _ = (t2, ClientError::Invalid(String::new()));
}

/// SPEC §8's durability bar across the site tier: a terminal streams 100,000 reports to its
/// site, sending again whatever was not acknowledged (as the agent's outbox does), while the
/// site and the center are each killed with SIGKILL at random moments and started again.
/// Every report reaches the center, once, in order.
#[test]
fn kill_9_of_the_site_and_the_center_during_100000_reports_loses_nothing_and_applies_nothing_twice()
{
    use rand::{Rng, SeedableRng};
    const REPORTS: u64 = 100_000;
    const BATCH: u64 = 500;
    let dir = tempfile::tempdir().unwrap();
    let center_data = dir.path().join("center");
    let center_config = dir.path().join("center.toml");
    std::fs::write(&center_config, "max_events_per_terminal = 1000000\n").unwrap();
    let center_args = ["--config", center_config.to_str().unwrap()];
    let mut center = TestCenter::spawn(&center_data, &center_args);
    let center_listen = format!("127.0.0.1:{}", center.port);
    let ca = center.ca_pem();
    let mut site = TestSite::start(&center, dir.path(), "office-1");
    let token = enrolment_token(&center, 1);
    let (t1, _) = enrol_at(site.url(), &ca, &token, "t1");

    // A killer thread sends SIGKILL at random moments — to the site 4 times, to the center 3
    // times — whatever either is doing (storing a batch, forwarding the queue, applying it);
    // the sender restarts whichever it finds dead.
    let seed = rand::random::<u64>();
    eprintln!("seed {seed}");
    let pids = std::sync::Arc::new(std::sync::Mutex::new((site.process.pid(), center.pid())));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = {
        let pids = pids.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut kills = vec![true, true, true, true, false, false, false];
            let mut made = 0;
            while !kills.is_empty() && !done.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(rng.random_range(300..1500)));
                let site_next = kills.swap_remove(rng.random_range(0..kills.len()));
                let (site_pid, center_pid) = *pids.lock().unwrap();
                let pid = if site_next { site_pid } else { center_pid };
                if let Some(pid) = pid {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    made += 1;
                }
            }
            made
        })
    };
    let mut next = 1;
    let mut refused_sends = 0;
    let mut restarts = 0;
    while next <= REPORTS {
        if !site.process.running() {
            site.restart();
            restarts += 1;
            pids.lock().unwrap().0 = site.process.pid();
        }
        if !center.running() {
            center = TestCenter::spawn(
                &center_data,
                &[center_args[0], center_args[1], "--listen", &center_listen],
            );
            restarts += 1;
            pids.lock().unwrap().1 = center.pid();
        }
        let count = BATCH.min(REPORTS - next + 1);
        let client = Client::new(site.url(), &ca, Some(&t1)).unwrap();
        match client.send_events(&events(next, count)) {
            Ok(ack) => {
                assert!(ack.acked_through >= next - 1, "acknowledged backwards");
                next = ack.acked_through + 1;
            }
            Err(_) => {
                refused_sends += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let kills = killer.join().unwrap();
    // The killer's last SIGKILL may land after the loop, and a process it just killed can
    // still look alive for a moment: keep restarting whichever is found dead until the queue
    // has drained.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if !site.process.running() {
            site.restart();
        }
        if !center.running() {
            center = TestCenter::spawn(
                &center_data,
                &[center_args[0], center_args[1], "--listen", &center_listen],
            );
        }
        if site.metric("herd_site_queue_depth") == 0 && site.metric("herd_site_upstream_up") == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: the site's queue did not drain"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    center.stop();
    let seqs = stored_seqs(&center_data, "t1");
    assert_eq!(
        seqs.len() as u64,
        REPORTS,
        "seed {seed}: every report stored once"
    );
    assert!(
        seqs.iter().copied().eq(1..=REPORTS),
        "seed {seed}: every report in order"
    );
    eprintln!(
        "seed {seed}: {REPORTS} reports, {kills} kills, {restarts} restarts, {refused_sends} sends failed and repeated"
    );
}

/// An agent whose site is unreachable checks in with the next upstream it was given: the
/// center, or another site, which asks the center for the terminal and serves it from then on;
/// its reports still reach the center.
#[test]
fn a_terminal_fails_over_to_the_center_and_to_another_site() {
    let dir = tempfile::tempdir().unwrap();
    let center = TestCenter::spawn(&dir.path().join("center"), &[]);
    let ca = center.ca_pem();
    let mut site1 = TestSite::start(&center, dir.path(), "office-1");
    let site2 = TestSite::start(&center, dir.path(), "office-2");
    let token = enrolment_token(&center, 1);
    let (t1, upstreams) = enrol_at(site1.url(), &ca, &token, "t1");
    site1.process.kill();
    // The next upstream in its list: the center knows the terminal.
    let at_center = Client::new(&upstreams[1], &ca, Some(&t1)).unwrap();
    at_center.checkin(&checkin()).unwrap();
    at_center.send_events(&events(1, 10)).unwrap();
    // Another site learns the terminal from the center and relays for it from then on.
    let at_site2 = Client::new(site2.url(), &ca, Some(&t1)).unwrap();
    at_site2.checkin(&checkin()).unwrap();
    let ack = at_site2.send_events(&events(11, 10)).unwrap();
    assert_eq!(ack.acked_through, 20);
    wait_until("site 2's queue drained", 30, || {
        site2.metric("herd_site_queue_depth") == 0
            && site2.metric("herd_site_forwarded_items_total") >= 2
    });
    let sites = center.operator().sites().unwrap();
    let office2 = sites.iter().find(|s| s.id == "office-2").unwrap();
    assert_eq!(office2.terminals, 1, "t1 is office-2's now");
    // Its old site, back, still serves it (it kept the terminal).
    site1.restart();
    Client::new(site1.url(), &ca, Some(&t1))
        .unwrap()
        .checkin(&checkin())
        .unwrap();
}

/// Pull first, push behind it (seed 001 S109–S111): a publish reaches a site holding its pull
/// at once; a site that cannot pull (it is down) is pushed to after `site_push_after_secs`, the
/// push fails and is counted, and the site catches up by pulling when it returns.
#[test]
fn a_change_reaches_a_pulling_site_at_once_and_a_site_that_missed_it_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("center.toml");
    std::fs::write(&config, "site_push_after_secs = 1\n").unwrap();
    let metrics_port = free_port();
    let metrics_listen = format!("127.0.0.1:{metrics_port}");
    let center = TestCenter::spawn(
        &dir.path().join("center"),
        &[
            "--config",
            config.to_str().unwrap(),
            "--plaintext-listen",
            &metrics_listen,
        ],
    );
    let ca = center.ca_pem();
    let mut site = TestSite::start(&center, dir.path(), "office-1");
    let site_catalog = |site: &TestSite| {
        let token = std::fs::read_to_string(site.data_dir.join("operator.token")).unwrap();
        Client::new(site.url(), &ca, None)
            .unwrap()
            .with_token(&token)
            .catalog()
            .ok()
            .and_then(|doc| doc["releases"].as_array().map(Vec::len))
            .unwrap_or(0)
    };
    let acme = vendor_client(&center, "acme");
    let (package, packages) = build_package(dir.path(), "1.0", 1);
    acme.upload_package(&package).unwrap();
    let published = Instant::now();
    acme.publish_feed(
        "acme",
        &serde_json::to_vec(&feed("acme", &[("1.0", 1, &packages)])).unwrap(),
    )
    .unwrap();
    wait_until("the site has the new release", 5, || {
        site_catalog(&site) == 1
    });
    let took = published.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");

    // Down, the site misses the next release; the center pushes, fails, counts it.
    site.process.kill();
    let (second, packages2) = build_package(dir.path(), "2.0", 2);
    acme.upload_package(&second).unwrap();
    acme.publish_feed(
        "acme",
        &serde_json::to_vec(&feed(
            "acme",
            &[("1.0", 1, &packages), ("2.0", 2, &packages2)],
        ))
        .unwrap(),
    )
    .unwrap();
    wait_until("the center tried to push to the silent site", 30, || {
        metric(metrics_port, "herd_site_pushes_failed_total") >= 1
    });
    // Back, it pulls what it missed.
    site.restart();
    wait_until("the site caught up", 10, || site_catalog(&site) == 2);
    let sites = center.operator().sites().unwrap();
    assert_eq!(sites[0].state, "ok");
}

/// A site plans under the center's ring gates (issue 14): a new release reaches the site's
/// terminals in its canary ring only, a halt at the center withdraws it there too (the
/// terminal that took it planned back), and a site restarted without the center keeps the
/// gates it replicated.
#[test]
fn a_site_offers_a_release_only_in_its_ring_and_withdraws_it_with_the_center() {
    const RELEASE: &str = "acme/acme-av/1.1";
    const CANARY: u32 = 3000;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("center.toml");
    std::fs::write(
        &config,
        "rollout_rings = \"canary=30%/1s/1000, broad=100%/0s/0\"\n\
         rollout_max_bad = 100\nrollout_check_secs = 1\n",
    )
    .unwrap();
    let center = TestCenter::spawn(
        &dir.path().join("center"),
        &["--config", config.to_str().unwrap()],
    );
    let ca = center.ca_pem();
    let acme = vendor_client(&center, "acme");
    let (first, first_packages) = build_package(dir.path(), "1.0", 1);
    acme.upload_package(&first).unwrap();
    acme.publish_feed(
        "acme",
        &serde_json::to_vec(&feed("acme", &[("1.0", 1, &first_packages)])).unwrap(),
    )
    .unwrap();
    let operator = center.operator();
    // Recorded as complete (a product's first release): rollouts are on from now.
    wait_until("1.0 is recorded", 10, || {
        operator
            .rollout("acme/acme-av/1.0")
            .is_ok_and(|r| r.phase == "complete")
    });
    let mut site = TestSite::start(&center, dir.path(), "office-1");
    let token = enrolment_token(&center, 20);
    let ids: Vec<String> = (0..12).map(|i| format!("pc-{i:02}")).collect();
    let inside = ids
        .iter()
        .filter(|id| herd_planner::rings::ring_bucket(RELEASE, id) < CANARY)
        .count();
    assert!((1..12).contains(&inside), "{inside} of 12 in a 30 % ring");
    let identities: Vec<KeyPairPem> = ids
        .iter()
        .map(|id| enrol_at(site.url(), &ca, &token, id).0)
        .collect();
    let on = |version: &str, seq: u64| CheckinRequest {
        installed: Some(herd_proto::terminal::InstalledDoc {
            product: "acme-av".into(),
            version: version.into(),
            seq,
            pattern: format!("acme-{seq}"),
            format: "archive".into(),
        }),
        ..checkin()
    };
    let plan_at_site = |site: &TestSite, identity: &KeyPairPem, version: &str, seq: u64| {
        Client::new(site.url(), &ca, Some(identity))
            .unwrap()
            .checkin(&on(version, seq))
            .unwrap()
            .plan
    };
    let (second, second_packages) = build_package(dir.path(), "1.1", 2);
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
    let site_has_release = |site: &TestSite| {
        let token = std::fs::read_to_string(site.data_dir.join("operator.token")).unwrap();
        Client::new(site.url(), &ca, None)
            .unwrap()
            .with_token(&token)
            .catalog()
            .ok()
            .and_then(|doc| doc["releases"].as_array().map(Vec::len))
            == Some(2)
    };
    wait_until("the site has 1.1", 10, || site_has_release(&site));
    let offered = |site: &TestSite, identity: &KeyPairPem| {
        plan_at_site(site, identity, "1.0", 1)
            .to
            .is_some_and(|to| to.version == "1.1")
    };
    for (id, identity) in ids.iter().zip(&identities) {
        let in_ring = herd_planner::rings::ring_bucket(RELEASE, id) < CANARY;
        assert_eq!(
            offered(&site, identity),
            in_ring,
            "{id} at the site: {}",
            std::fs::read_to_string(site.data_dir.with_extension("log")).unwrap_or_default()
        );
    }

    // The center halts it: the site withdraws it at once and plans the terminal back.
    wait_until("1.1 rolls", 10, || {
        operator
            .rollout(RELEASE)
            .is_ok_and(|r| r.phase == "rolling")
    });
    operator.rollout_act(RELEASE, "revert").unwrap();
    let (canary_id, canary) = ids
        .iter()
        .zip(&identities)
        .find(|(id, _)| herd_planner::rings::ring_bucket(RELEASE, id) < CANARY)
        .unwrap();
    wait_until("the site withdraws 1.1", 10, || {
        let back = plan_at_site(&site, canary, "1.1", 2);
        back.to.is_some_and(|to| to.version == "1.0") && back.reason.contains("withdrawn")
    });
    for (id, identity) in ids.iter().zip(&identities) {
        assert!(
            !offered(&site, identity),
            "{id} after the halt ({canary_id} reverted)"
        );
    }

    // Restarted while the center is away, the site plans under what it replicated.
    site.process.kill();
    drop(center);
    site.restart();
    for (id, identity) in ids.iter().zip(&identities) {
        assert!(!offered(&site, identity), "{id} at the restarted site");
    }
}

/// A fault a terminal reports through its site is decided at the center, and the verdict
/// reaches the terminal at its site (issue 14), and at the site it fails over to.
#[test]
fn a_fault_verdict_reaches_a_terminal_behind_its_site() {
    let dir = tempfile::tempdir().unwrap();
    let center = TestCenter::spawn(&dir.path().join("center"), &[]);
    let ca = center.ca_pem();
    let site = TestSite::start(&center, dir.path(), "office-1");
    let token = enrolment_token(&center, 2);
    let (identity, _) = enrol_at(site.url(), &ca, &token, "pc-1");
    let at_site = Client::new(site.url(), &ca, Some(&identity)).unwrap();
    assert!(at_site.fault_verdicts().unwrap().verdicts.is_empty());
    let report = serde_json::json!({"program": "middleware", "vendor": "company-a",
        "version": "2.0", "platform": "linux-x86_64", "kind": "crash", "signal": 11});
    at_site
        .send_events(&EventBatch {
            events: vec![EventDoc {
                seq: 1,
                at: "2026-12-06T12:00:00Z".into(),
                kind: herd_proto::api::events::FAULT_REPORT.into(),
                data: report,
            }],
        })
        .unwrap();
    let mut verdicts = Vec::new();
    wait_until(
        "the center's verdict reaches the site's terminal",
        20,
        || {
            verdicts = at_site.fault_verdicts().unwrap().verdicts;
            !verdicts.is_empty()
        },
    );
    assert_eq!(verdicts[0].program, "middleware");
    assert_eq!(
        verdicts,
        center
            .terminal_client(&identity)
            .fault_verdicts()
            .unwrap()
            .verdicts,
        "the same verdicts as at the center"
    );

    // Failing over to another site (which adopts the terminal), it reads them there too.
    let other = TestSite::start(&center, dir.path(), "office-2");
    let there = Client::new(other.url(), &ca, Some(&identity)).unwrap();
    assert_eq!(there.fault_verdicts().unwrap().verdicts, verdicts);
}

#[test]
fn a_site_renews_its_certificate_when_an_operator_asks_and_only_the_new_one_acts_as_it() {
    let dir = tempfile::tempdir().unwrap();
    let center = TestCenter::spawn(&dir.path().join("center"), &[]);
    let ca = center.ca_pem();
    let mut site = TestSite::start(&center, dir.path(), "office-1");
    let token = enrolment_token(&center, 10);
    let (t1, _) = enrol_at(site.url(), &ca, &token, "t1");
    let identity = |site: &TestSite| KeyPairPem {
        cert_pem: std::fs::read_to_string(site.data_dir.join("site/cert.pem")).unwrap(),
        key_pem: std::fs::read_to_string(site.data_dir.join("site/key.pem")).unwrap(),
    };
    let old = identity(&site);

    // Unknown sites are named; the operator's command asks the real one.
    let (status, error) = code(
        center
            .operator()
            .request_site_renewal("nowhere")
            .unwrap_err(),
    );
    assert_eq!((status, error.as_str()), (404, "not_found"));
    let asked = support::herd_as_operator(&center, &["sites", "renew", "office-1"]);
    assert!(
        asked.status.success(),
        "{}",
        String::from_utf8_lossy(&asked.stderr)
    );
    // At its next pull (site_poll_secs = 5) the site renews: a new key, a new certificate.
    wait_until("the site's renewed certificate on disk", 30, || {
        identity(&site).cert_pem != old.cert_pem
    });
    let new = identity(&site);
    assert_ne!(new.key_pem, old.key_pem, "a renewal makes a new key");
    assert!(!site.data_dir.join("site/renewed.json").exists());
    let status = |pair: &KeyPairPem| {
        Client::new(&center.url, &ca, Some(pair))
            .unwrap()
            .site_changes(None, Duration::ZERO, &SiteStatus::default())
    };
    status(&new).expect("the new certificate acts as the site");
    let (code_old, error) = code(status(&old).unwrap_err());
    assert_eq!(
        (code_old, error.as_str()),
        (401, "certificate_revoked"),
        "{error}"
    );

    // The site serves on with it: a terminal enrols through it (relayed to the center with the
    // new certificate) and t1's check-in is answered there.
    let (_t2, _) = enrol_at(site.url(), &ca, &token, "t2");
    Client::new(site.url(), &ca, Some(&t1))
        .unwrap()
        .checkin(&checkin())
        .expect("a check-in at the renewed site");
    wait_until("t2 at the center", 30, || {
        center.operator().terminal("t2").is_ok()
    });

    // The old certificate may renew once more (its answer could have been lost), for the
    // same site only; after that renewal the lost one (`new`) is refused too.
    let (key_pem, csr_pem) = herd_tls::new_key_and_csr("office-1").unwrap();
    let again = Client::new(&center.url, &ca, Some(&old))
        .unwrap()
        .renew_site(&SiteRenewRequest {
            csr_pem,
            server_names: vec!["127.0.0.1".into()],
        })
        .expect("the previous certificate renews again");
    let renewed = KeyPairPem {
        cert_pem: again.certificate_pem,
        key_pem,
    };
    status(&renewed).expect("the certificate of the repeated renewal acts as the site");
    assert_eq!(code(status(&new).unwrap_err()).0, 401);
    // A terminal's certificate renews no site.
    let (_, csr_pem) = herd_tls::new_key_and_csr("office-1").unwrap();
    let (code_t1, error) = code(
        Client::new(&center.url, &ca, Some(&t1))
            .unwrap()
            .renew_site(&SiteRenewRequest {
                csr_pem,
                server_names: vec![],
            })
            .unwrap_err(),
    );
    assert_eq!((code_t1, error.as_str()), (403, "forbidden"), "{error}");

    // The site itself still holds `new`, refused now: it gets the pair this test renewed
    // (as an operator restoring a site would), is restarted, comes back with the pair on
    // disk, and asked again, renews again.
    site.process.stop();
    std::fs::write(site.data_dir.join("site/cert.pem"), &renewed.cert_pem).unwrap();
    std::fs::write(site.data_dir.join("site/key.pem"), &renewed.key_pem).unwrap();
    site.restart();
    center.operator().request_site_renewal("office-1").unwrap();
    wait_until("the restarted site renews", 30, || {
        identity(&site).cert_pem != renewed.cert_pem
    });
    Client::new(site.url(), &ca, Some(&t1))
        .unwrap()
        .checkin(&checkin())
        .expect("a check-in at the site after its second renewal");
}

/// Messages through a site (seed 001 ¶0044, ¶0022): an operator's message to a terminal behind
/// a site reaches it in its check-in answer at the site (the site relays the center's messages,
/// under the center's ids), a held wait at the site is answered when one arrives, the user's
/// answer travels back through the site's queue, and `herd sites messages SITE` is the site's
/// thread. A terminal at the center gets them in its check-in answer the same way.
#[test]
fn messages_reach_terminals_behind_their_site_in_the_check_in_answer_and_answers_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let center = TestCenter::spawn(&dir.path().join("center"), &[]);
    let ca = center.ca_pem();
    let site = TestSite::start(&center, dir.path(), "office-1");
    let token = enrolment_token(&center, 3);
    let (identity, _) = enrol_at(site.url(), &ca, &token, "pc-1");
    let at_site = Client::new(site.url(), &ca, Some(&identity)).unwrap();
    let direct = center.terminal_client(&support::enrol(&center, &token, "pc-2", "user-b", "pc"));
    let with_cursor = |after: u64| CheckinRequest {
        messages_after: Some(after),
        ..checkin()
    };
    let first = at_site.checkin(&with_cursor(0)).unwrap();
    assert!(first.messages.is_empty());
    let cursor = first
        .messages_through
        .expect("a site answers with a cursor");
    // A wait held at the site is answered when the message arrives there.
    let held = at_site.wait(None, Duration::from_secs(5)).unwrap();
    let waiter = {
        let client = at_site.clone();
        let token = held.token.clone();
        std::thread::spawn(move || client.wait(Some(&token), Duration::from_secs(60)))
    };
    let operator = center.operator();
    let to_pc1 = operator
        .send_message(&herd_proto::messages::MessageToSend {
            to: "terminal:pc-1".into(),
            text: "Your PC has an infected file".into(),
        })
        .unwrap();
    operator
        .send_message(&herd_proto::messages::MessageToSend {
            to: "all".into(),
            text: "Maintenance at 22:00".into(),
        })
        .unwrap();
    let woken = waiter.join().unwrap().unwrap();
    assert!(woken.changed, "{woken:?}");
    let mut answer = at_site.checkin(&with_cursor(cursor)).unwrap();
    wait_until("the site to relay both messages", 20, || {
        answer = at_site.checkin(&with_cursor(cursor)).unwrap();
        answer.messages.len() == 2
    });
    let texts: Vec<&str> = answer.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(
        texts,
        ["Your PC has an infected file", "Maintenance at 22:00"]
    );
    assert_eq!(answer.messages[0].id, to_pc1.id, "the center's ids");
    let through = answer.messages_through.unwrap();
    assert!(through >= answer.messages[1].id);
    // Nothing new after the cursor the answer gave.
    assert!(
        at_site
            .checkin(&with_cursor(through))
            .unwrap()
            .messages
            .is_empty()
    );
    // The terminal at the center: only the message to all, in its own check-in answer.
    let answer = direct.checkin(&with_cursor(0)).unwrap();
    let texts: Vec<&str> = answer.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["Maintenance at 22:00"]);
    // An agent that does not send a cursor gets no messages in the answer (it reads them apart).
    let plain = direct.checkin(&checkin()).unwrap();
    assert!(plain.messages.is_empty() && plain.messages_through.is_none());

    // The user's answer goes through the site's queue to the center: the site's thread.
    at_site
        .send_events(&EventBatch {
            events: vec![EventDoc {
                seq: 1,
                at: "2026-12-06T12:00:00Z".into(),
                kind: herd_proto::api::events::MESSAGE_SENT.into(),
                data: serde_json::json!({"text": "Removed it, thanks", "reply_to": to_pc1.id}),
            }],
        })
        .unwrap();
    let mut thread = Vec::new();
    wait_until("the answer to reach the center's thread", 20, || {
        thread = operator
            .messages(0, 100, None, Some("office-1"))
            .unwrap()
            .messages;
        thread.iter().any(|m| m.from == "terminal:pc-1")
    });
    let texts: Vec<&str> = thread.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(
        texts,
        ["Your PC has an infected file", "Removed it, thanks"]
    );
    assert_eq!(thread[1].reply_to, Some(to_pc1.id));
    let out = support::herd_as_operator(&center, &["sites", "messages", "office-1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.contains("Your PC has an infected file") && out.contains("Removed it, thanks"),
        "{out}"
    );
    assert!(!out.contains("Maintenance"), "{out}");
    // The site keeps no copy of its own of the answer (the center's thread is the record).
    assert!(
        at_site
            .terminal_messages(0)
            .unwrap()
            .messages
            .iter()
            .all(|m| m.from == "operator")
    );
}

/// "Have you got this sample" through a site: a terminal behind a site asks its site, which
/// asks the center; a digest that is none is refused.
#[test]
fn a_terminal_behind_a_site_asks_whether_the_center_has_a_sample() {
    let dir = tempfile::tempdir().unwrap();
    let center = TestCenter::spawn(&dir.path().join("center"), &[]);
    let ca = center.ca_pem();
    let site = TestSite::start(&center, dir.path(), "office-1");
    let token = enrolment_token(&center, 2);
    let (identity, _) = enrol_at(site.url(), &ca, &token, "pc-1");
    let at_site = Client::new(site.url(), &ca, Some(&identity)).unwrap();
    let direct = center.terminal_client(&support::enrol(&center, &token, "pc-2", "user-b", "pc"));
    // A sample the center keeps, sent by the terminal at the center.
    let content = b"MZ a strange program";
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(content))
    };
    assert!(!at_site.sample_held(&sha).unwrap().held);
    let mut neutralised = content.to_vec();
    herd_center::samples::neutralise(&sha, &mut neutralised);
    direct
        .send_events(&EventBatch {
            events: vec![EventDoc {
                seq: 1,
                at: "2026-12-06T12:00:00Z".into(),
                kind: herd_proto::api::events::SAMPLE_UPLOAD.into(),
                data: serde_json::json!({"sha256": sha, "size": content.len(), "path": "/x.exe",
                    "reason": "submitted", "neutralised": hex::encode(&neutralised)}),
            }],
        })
        .unwrap();
    assert!(direct.sample_held(&sha).unwrap().held);
    assert!(
        at_site.sample_held(&sha).unwrap().held,
        "asked of the center"
    );
    assert!(!at_site.sample_held(&"1".repeat(64)).unwrap().held);
    assert_eq!(at_site.sample_held("ABC").unwrap_err().status(), Some(400));
}

/// A terminal behind a site names the metadata versions it holds and gets the newer
/// documents in its check-in's answer, from the site's verified mirror, byte for byte what the
/// site serves under those names (a release's refresh then needs no request of its own).
#[test]
fn a_site_carries_the_newer_metadata_in_its_check_in_answers() {
    use herd_client::ReadLimits;
    use herd_proto::distribution::{METADATA_PATH, vendor_role};
    let dir = tempfile::tempdir().unwrap();
    let center = TestCenter::spawn(&dir.path().join("center"), &[]);
    let ca = center.ca_pem();
    let acme = vendor_client(&center, "acme");
    let (first, packages) = build_package(dir.path(), "1.0", 1);
    acme.upload_package(&first).unwrap();
    acme.publish_feed(
        "acme",
        &serde_json::to_vec(&feed("acme", &[("1.0", 1, &packages)])).unwrap(),
    )
    .unwrap();
    let site = TestSite::start(&center, dir.path(), "office-1");
    let token = enrolment_token(&center, 1);
    let (identity, _) = enrol_at(site.url(), &ca, &token, "pc-1");
    let terminal = Client::new(site.url(), &ca, Some(&identity)).unwrap();
    let repository = terminal.repository();
    let get = |name: &str| {
        repository.get(
            &format!("{METADATA_PATH}{name}"),
            ReadLimits::metadata(1 << 20),
        )
    };
    let signed = |bytes: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(bytes).unwrap()["signed"].clone()
    };
    let role = vendor_role("acme");
    let mut snapshot = Vec::new();
    wait_until("the site mirrors acme's role", 30, || {
        let Ok(timestamp) = get("timestamp.json") else {
            return false;
        };
        let version = signed(&timestamp)["meta"]["snapshot.json"]["version"].clone();
        snapshot = get(&format!("{version}.snapshot.json")).unwrap_or_default();
        !snapshot.is_empty() && signed(&snapshot)["meta"][format!("{role}.json")].is_object()
    });
    let listed = signed(&snapshot);
    let version_of = |name: &str| listed["meta"][name]["version"].as_u64().unwrap();
    let snapshot_version = listed["version"].as_u64().unwrap();
    let held = std::collections::BTreeMap::from([
        ("snapshot".to_owned(), snapshot_version - 1),
        ("targets".to_owned(), version_of("targets.json")),
        (role.clone(), version_of(&format!("{role}.json")) + 1),
    ]);
    let answer = terminal
        .checkin(&CheckinRequest {
            tuf_held: Some(held),
            ..checkin()
        })
        .unwrap();
    let carried = answer.tuf_metadata.expect("the newer documents");
    let expected = [
        format!("{snapshot_version}.snapshot.json"),
        format!("{}.{role}.json", version_of(&format!("{role}.json"))),
    ];
    assert_eq!(carried.keys().cloned().collect::<Vec<_>>(), {
        let mut sorted = expected.to_vec();
        sorted.sort();
        sorted
    });
    for name in &expected {
        assert_eq!(carried[name].as_bytes(), &get(name).unwrap()[..], "{name}");
    }
}
