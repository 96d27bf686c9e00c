//! A verdict enters the catalog (SPEC §3.2.5): a malicious verdict makes a threat covered by
//! Herd's own set, which the coverage matrix shows and the planner counts in no gap; a vendor
//! that later publishes the same threat (same id, or the file as an alias) makes one threat,
//! not two; a benign verdict withdraws Herd's coverage; a vendor may not claim Herd's.

use std::sync::Arc;

use herd_center::config::{CenterConfig, ConfigFile};
use herd_center::{Caller, Center, ErrorKind};
use herd_core::Timestamp;
use herd_proto::api::VerdictDoc;
use serde_json::json;

async fn center(dir: &std::path::Path) -> Arc<Center> {
    herd_tls::install_crypto_provider();
    let text = format!("data_dir = {:?}\n", dir.join("data").display().to_string());
    let config = CenterConfig::from_file(ConfigFile::parse("test", &text).unwrap()).unwrap();
    Center::open(config).await.unwrap()
}

const SHA: &str = "5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f";

/// Maker A's feed: vaccine-a on PCs, and `threats` (id, aliases), none of them covered.
fn feed(threats: &[(&str, &[&str])]) -> String {
    let threats: Vec<_> = threats
        .iter()
        .map(|(id, aliases)| {
            json!({"id": id, "name": id, "danger": "high", "discovered": "2026-12-01",
                   "aliases": aliases})
        })
        .collect();
    let coverage: Vec<_> = threats
        .iter()
        .map(|t| json!({"product": "vaccine-a", "threat": t["id"], "since_seq": null}))
        .collect();
    json!({
        "format": "herd.catalog/v1",
        "vendors": [{"id": "maker-a", "name": "Maker A"}],
        "products": [{"id": "vaccine-a", "vendor": "maker-a", "name": "Vaccine A", "platforms": ["pc"]}],
        "releases": [{"product": "vaccine-a", "version": "1.0", "pattern": "a-1", "seq": 1,
                      "published": "2026-11-01T00:00:00Z",
                      "packages": [{"platform": "pc", "format": "archive", "sha256": "a".repeat(64), "size": 100}]}],
        "threats": threats,
        "coverage": coverage,
    })
    .to_string()
}

fn verdict(verdict: &str, threat: Option<&str>) -> VerdictDoc {
    VerdictDoc {
        sha256: SHA.into(),
        size: (verdict == "malicious").then_some(4096),
        verdict: verdict.into(),
        threat: threat.map(str::to_owned),
        danger: None,
        name: None,
    }
}

/// The plan's action for a PC running vaccine-a 1.0 with `latest-any-vendor`, now.
fn action(center: &Center) -> String {
    let snapshot = center.catalog();
    let terminal = json!({
        "id": "pc-1", "user": "user-a",
        "hardware": {"kind": "pc", "platform": "pc"},
        "installed": {"product": "vaccine-a", "version": "1.0", "seq": 1, "pattern": "a-1", "format": "archive"},
        "policy": {"apply": "latest-any-vendor", "min_danger": "low", "consent": "auto", "window": null}
    })
    .to_string();
    let mut terminals =
        herd_proto::terminal::parse_terminals("pc-1", &terminal, &snapshot.catalog).unwrap();
    let terminal = terminals.remove(0).unwrap();
    let now = Timestamp::from_unix_seconds(herd_center::unix_now());
    let plan = herd_planner::Planner::new(&*snapshot.catalog, now).plan_doc(&terminal);
    serde_json::to_value(plan.action)
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

/// The coverage matrix's rows as (threat, Herd covers it).
fn rows(center: &Center) -> Vec<(String, bool)> {
    center
        .catalog()
        .coverage_matrix()
        .threats
        .into_iter()
        .map(|row| (row.threat, row.herd_since.is_some()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verdict_is_a_threat_herds_set_covers_and_one_with_the_vendors() {
    let dir = tempfile::tempdir().unwrap();
    let center = center(dir.path()).await;
    let maker_a = Caller::Vendor("maker-a".into());
    center
        .publish_feed(&maker_a, "maker-a", feed(&[("virus-a", &[])]).as_bytes())
        .await
        .unwrap();
    assert_eq!(action(&center), "exposed", "vaccine-a covers nothing");

    // An automatic-style verdict without a threat id: the file's own threat, covered by Herd.
    let revision = center.catalog().revision;
    center
        .verdict(verdict("malicious", None), "operator")
        .await
        .unwrap();
    assert!(center.catalog().revision > revision, "the catalog moved");
    let herd_id = format!("herd-{}", &SHA[..16]);
    assert_eq!(
        rows(&center),
        vec![
            ("herd-5e1f5e1f5e1f5e1f".to_owned(), true),
            ("virus-a".to_owned(), false)
        ]
    );
    let threat = center
        .catalog()
        .catalog
        .threats
        .iter()
        .find(|t| t.id == herd_id)
        .cloned()
        .unwrap();
    assert_eq!(threat.aliases, vec![format!("sha256:{SHA}")]);
    assert_eq!(threat.danger.to_string(), "high");
    // Herd's threat makes no terminal exposed; virus-a still does.
    assert_eq!(action(&center), "exposed");

    // Maker A publishes virus-a with the file as an alias: one threat, virus-a, covered by
    // Herd's set; vaccine-a's terminal now needs nothing.
    center
        .publish_feed(
            &maker_a,
            "maker-a",
            feed(&[("virus-a", &[&format!("sha256:{SHA}")])]).as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(rows(&center), vec![("virus-a".to_owned(), true)]);
    assert_eq!(action(&center), "none");

    // A benign verdict withdraws Herd's coverage: virus-a is the vendor's again, exposed.
    let outcome = center
        .verdict(verdict("benign", None), "operator")
        .await
        .unwrap();
    assert!(outcome.changed);
    assert_eq!(rows(&center), vec![("virus-a".to_owned(), false)]);
    assert_eq!(action(&center), "exposed");

    // A verdict naming the vendor's threat id is that threat too; its danger stays the vendor's.
    center
        .verdict(
            VerdictDoc {
                danger: Some("low".into()),
                ..verdict("malicious", Some("virus-a"))
            },
            "operator",
        )
        .await
        .unwrap();
    assert_eq!(rows(&center), vec![("virus-a".to_owned(), true)]);
    let snapshot = center.catalog();
    assert_eq!(snapshot.catalog.threats[0].danger.to_string(), "high");
    assert_eq!(action(&center), "none");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_and_feeds_that_claim_herds_coverage_wrongly_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let center = center(dir.path()).await;
    let maker_a = Caller::Vendor("maker-a".into());
    let mut claiming: serde_json::Value = serde_json::from_str(&feed(&[("virus-a", &[])])).unwrap();
    claiming["threats"][0]["herd_since"] = json!("2026-12-01T00:00:00Z");
    let err = center
        .publish_feed(&maker_a, "maker-a", claiming.to_string().as_bytes())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("$.threats[0].herd_since")
            && err.to_string().contains("only the center"),
        "{err}"
    );

    let err = center
        .verdict(
            VerdictDoc {
                danger: Some("severe".into()),
                ..verdict("malicious", None)
            },
            "operator",
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::DocumentInvalid);
    assert!(err.to_string().contains("$.danger"), "{err}");
    let err = center
        .verdict(
            VerdictDoc {
                name: Some("  ".into()),
                ..verdict("malicious", None)
            },
            "operator",
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("$.name"), "{err}");
    // Nothing was stored by the refusals.
    assert!(center.herd_signatures().await.unwrap().is_empty());
    assert!(center.catalog().catalog.threats.is_empty());
}

/// Concurrent verdicts (an outbreak's event batches): each call returns only once its own
/// threat is in the catalog, and there is never more than one rebuild per verdict (they
/// share rebuilds when one takes longer than verdicts arrive, i.e. with a large catalog).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_verdicts_each_see_their_threat_in_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let center = center(dir.path()).await;
    let calls = (0..20u32).map(|i| {
        let center = center.clone();
        tokio::spawn(async move {
            let sha256 = format!("{i:02x}{}", "a".repeat(62));
            center
                .verdict(
                    VerdictDoc {
                        sha256: sha256.clone(),
                        ..verdict("malicious", None)
                    },
                    "operator",
                )
                .await
                .unwrap();
            let id = format!("herd-{}", &sha256[..16]);
            assert!(
                center.catalog().catalog.threats.iter().any(|t| t.id == id),
                "{id} is in the catalog when its verdict returns"
            );
        })
    });
    for call in calls.collect::<Vec<_>>() {
        call.await.unwrap();
    }
    assert_eq!(center.catalog().catalog.threats.len(), 20);
    let rebuilds = center.herd_feed_rebuilds();
    eprintln!("20 concurrent verdicts, {rebuilds} catalog rebuilds");
    assert!((1..=20).contains(&rebuilds), "{rebuilds}");
}
