//! Vendor feeds the center fetches itself, from a real HTTP server on loopback that honours
//! `If-None-Match`: an unchanged feed costs a 304 and applies nothing, a changed one is applied
//! like a pushed one (and alerts its new threat), an invalid one is refused with nothing
//! applied, a poke polls at once; bad registrations are refused naming the field; internal
//! addresses are refused unless `feed_allowed_hosts` lists them, at registration and when a
//! name resolves to one at fetch time (nothing is sent to it).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herd_center::config::{CenterConfig, ConfigFile};
use herd_center::{Caller, Center, ErrorKind};
use herd_proto::feed_sources::FeedSourceDoc;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the feed server serves (body, ETag) and what it saw (each request's If-None-Match).
#[derive(Default)]
struct Served {
    body: String,
    etag: String,
    seen: Vec<Option<String>>,
}

async fn feed_server(served: Arc<Mutex<Served>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let served = served.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let served = served.clone();
                    async move {
                        let mut served = served.lock().unwrap();
                        let asked = request
                            .headers()
                            .get("if-none-match")
                            .map(|v| v.to_str().unwrap().to_owned());
                        served.seen.push(asked.clone());
                        let response = if asked.as_deref() == Some(served.etag.as_str()) {
                            Response::builder().status(304).body(String::new())
                        } else {
                            Response::builder()
                                .header("etag", served.etag.clone())
                                .header("content-type", "application/json")
                                .body(served.body.clone())
                        };
                        Ok::<_, Infallible>(response.unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    format!("http://{addr}/herd/feed.json")
}

fn feed(threats: &[&str]) -> String {
    let threats: Vec<serde_json::Value> = threats
        .iter()
        .map(|id| serde_json::json!({"id": id, "name": id, "danger": "high", "discovered": "2026-12-01"}))
        .collect();
    serde_json::json!({
        "format": "herd.catalog/v1",
        "vendors": [{"id": "maker-a", "name": "Maker A"}],
        "products": [{"id": "vaccine-a", "vendor": "maker-a", "name": "Vaccine A", "platforms": ["pc"]}],
        "releases": [],
        "threats": threats,
        "coverage": [],
    })
    .to_string()
}

/// A center whose feeds may come from this machine's loopback (the test's feed server).
async fn center(dir: &std::path::Path) -> Arc<Center> {
    center_allowing(dir, "[\"127.0.0.1\"]").await
}

async fn center_allowing(dir: &std::path::Path, allowed: &str) -> Arc<Center> {
    herd_tls::install_crypto_provider();
    let text = format!(
        "data_dir = {:?}\nfeed_allowed_hosts = {allowed}\n",
        dir.join("data").display().to_string()
    );
    let config = CenterConfig::from_file(ConfigFile::parse("test", &text).unwrap()).unwrap();
    Center::open(config).await.unwrap()
}

fn has_threat(center: &Center, id: &str) -> bool {
    center.catalog().catalog.threats.iter().any(|t| t.id == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polled_feed_is_applied_when_it_changed_and_only_then() {
    let dir = tempfile::tempdir().unwrap();
    let center = center(dir.path()).await;
    let served = Arc::new(Mutex::new(Served {
        body: feed(&["virus-a"]),
        etag: "\"v1\"".into(),
        seen: Vec::new(),
    }));
    let url = feed_server(served.clone()).await;
    let maker_a = Caller::Vendor("maker-a".into());
    let source = center
        .put_feed_source(
            &maker_a,
            "maker-a",
            FeedSourceDoc {
                url: url.clone(),
                interval_secs: Some(600),
            },
        )
        .await
        .unwrap();
    assert_eq!(source.interval_secs, 600);

    let first = center.poll_feed(&maker_a, "maker-a").await.unwrap();
    assert!(first.applied, "{first:?}");
    assert!(has_threat(&center, "virus-a"));
    let revision = center.catalog().revision;
    assert_eq!(first.revision, Some(revision));

    // Unchanged: the validator is sent, the answer is 304, nothing is applied.
    let second = center
        .poll_feed(&Caller::Operator, "maker-a")
        .await
        .unwrap();
    assert_eq!(second.status, "not modified");
    assert!(!second.applied);
    assert_eq!(center.catalog().revision, revision);
    assert_eq!(
        served.lock().unwrap().seen,
        vec![None, Some("\"v1\"".to_owned())]
    );

    // Changed: applied like a pushed feed.
    {
        let mut served = served.lock().unwrap();
        served.body = feed(&["virus-a", "virus-b"]);
        served.etag = "\"v2\"".into();
    }
    let third = center.poll_feed(&maker_a, "maker-a").await.unwrap();
    assert!(third.applied, "{third:?}");
    assert!(has_threat(&center, "virus-b"));
    let revision = center.catalog().revision;

    // Invalid: refused with the validation's words, nothing applied, and not remembered as
    // seen (the next poll fetches it again and says why again).
    {
        let mut served = served.lock().unwrap();
        served.body = feed(&["virus-a", "virus-b"]).replace("\"high\"", "\"apocalyptic\"");
        served.etag = "\"v3\"".into();
    }
    let refused = center.poll_feed(&maker_a, "maker-a").await.unwrap();
    assert!(!refused.applied);
    assert!(
        refused.status.starts_with("refused:") && refused.status.contains("apocalyptic"),
        "{refused:?}"
    );
    assert_eq!(center.catalog().revision, revision);
    let again = center.poll_feed(&maker_a, "maker-a").await.unwrap();
    assert!(again.status.starts_with("refused:"), "{again:?}");
    assert_eq!(
        served.lock().unwrap().seen.last().unwrap().as_deref(),
        Some("\"v2\"")
    );
    let listed = center.feed_sources().await.unwrap();
    assert_eq!(listed.sources.len(), 1);
    assert!(
        listed.sources[0]
            .last_status
            .as_deref()
            .unwrap()
            .starts_with("refused:")
    );
    assert_eq!(listed.sources[0].etag.as_deref(), Some("\"v2\""));

    // A poke polls at once (a detection naming a threat the catalog does not know).
    let (_stop, stopped) = watch::channel(false);
    tokio::spawn(center.clone().poll_feeds(stopped));
    {
        let mut served = served.lock().unwrap();
        served.body = feed(&["virus-a", "virus-b", "virus-c"]);
        served.etag = "\"v4\"".into();
    }
    let poked = Instant::now();
    center.poke_feeds();
    while !has_threat(&center, "virus-c") {
        assert!(
            poked.elapsed() < Duration::from_secs(4),
            "the poke did not poll"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_feed_sources_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let center = center(dir.path()).await;
    let maker_a = Caller::Vendor("maker-a".into());
    for (url, interval, expected) in [
        ("ftp://feeds.example/feed.json", None, "$.url"),
        ("not a url", None, "$.url"),
        ("http://feeds.example/feed.json", None, "plain http"),
        (
            "https://feeds.example/feed.json",
            Some(5),
            "$.interval_secs: 5",
        ),
        (
            "https://feeds.example/feed.json",
            Some(10_000_000),
            "$.interval_secs",
        ),
    ] {
        let doc = FeedSourceDoc {
            url: url.into(),
            interval_secs: interval,
        };
        let err = center
            .put_feed_source(&maker_a, "maker-a", doc)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(expected), "{url}: {err}");
    }
    // Another vendor's source.
    let doc = FeedSourceDoc {
        url: "https://feeds.example/feed.json".into(),
        interval_secs: None,
    };
    let err = center
        .put_feed_source(&Caller::Vendor("maker-b".into()), "maker-a", doc)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::ForbiddenVendor, "{err}");
    let err = center.poll_feed(&maker_a, "maker-a").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    let err = center
        .delete_feed_source(&maker_a, "maker-a")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert!(center.feed_sources().await.unwrap().sources.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_addresses_are_refused_unless_listed() {
    let dir = tempfile::tempdir().unwrap();
    let center = center_allowing(dir.path(), "[\"feeds.internal.example\", \"10.0.0.5\"]").await;
    let maker_a = Caller::Vendor("maker-a".into());
    for (url, why) in [
        ("http://127.0.0.1:8080/feed.json", "a loopback address"),
        ("https://localhost/feed.json", "a loopback address"),
        ("https://[::1]/feed.json", "a loopback address"),
        ("https://10.1.2.3/feed.json", "a private address"),
        ("https://192.168.1.1/feed.json", "a private address"),
        (
            "https://169.254.169.254/latest/meta-data/",
            "a link-local address",
        ),
        ("https://[fe80::1]/feed.json", "a link-local address"),
        ("https://[fd00::1]/feed.json", "unique local"),
        ("https://[::ffff:127.0.0.1]/feed.json", "a loopback address"),
        ("https://100.64.0.1/feed.json", "carrier-grade NAT"),
        ("https://0.0.0.0/feed.json", "unspecified"),
        ("https://user@10.1.2.3/feed.json", "a private address"),
    ] {
        let doc = FeedSourceDoc {
            url: url.into(),
            interval_secs: None,
        };
        let err = center
            .put_feed_source(&maker_a, "maker-a", doc)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::DocumentInvalid, "{url}: {err}");
        let text = err.to_string();
        assert!(
            text.contains(why) && text.contains("feed_allowed_hosts"),
            "{url}: {text}"
        );
    }
    // Listed by name or by address: accepted; a public address needs no listing.
    for url in [
        "https://feeds.internal.example/feed.json",
        "https://10.0.0.5/feed.json",
        "https://203.0.113.7/feed.json",
    ] {
        let doc = FeedSourceDoc {
            url: url.into(),
            interval_secs: None,
        };
        center
            .put_feed_source(&maker_a, "maker-a", doc)
            .await
            .unwrap_or_else(|err| panic!("{url}: {err}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_resolving_to_an_internal_address_is_not_fetched() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listed: the feed server on loopback may not be reached.
    let center = center_allowing(dir.path(), "[]").await;
    let served = Arc::new(Mutex::new(Served {
        body: feed(&["virus-a"]),
        etag: "\"v1\"".into(),
        seen: Vec::new(),
    }));
    let url = feed_server(served.clone()).await;
    // Registered before the allow-list existed (or a name re-pointed since): stored as it is.
    let port = url.split(':').nth(2).unwrap().split('/').next().unwrap();
    let by_name = format!("http://localhost:{port}/herd/feed.json");
    center
        .store
        .feed_source_put(&herd_store::FeedSourceRow {
            vendor: "maker-a".into(),
            url: by_name.clone(),
            interval_secs: 600,
            registered_at: 0,
            etag: None,
            last_modified: None,
            last_polled_at: None,
            last_status: None,
        })
        .await
        .unwrap();
    let polled = center
        .poll_feed(&Caller::Operator, "maker-a")
        .await
        .unwrap();
    assert!(!polled.applied, "{polled:?}");
    assert!(
        polled.status.starts_with("failed:")
            && polled.status.contains("may not connect to")
            && polled.status.contains("127.0.0.1"),
        "{polled:?}"
    );
    assert!(
        served.lock().unwrap().seen.is_empty(),
        "nothing reached the server"
    );
    assert!(!has_threat(&center, "virus-a"));
}

#[test]
fn a_bad_allowed_host_is_refused_naming_the_key() {
    let text = "data_dir = \"/tmp/unused\"\nfeed_allowed_hosts = [\"feeds example\"]\n";
    let err = CenterConfig::from_file(ConfigFile::parse("test", text).unwrap()).unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("feed_allowed_hosts") && text.contains("\"feeds example\""),
        "{text}"
    );
}
