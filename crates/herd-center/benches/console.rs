//! Benchmark of the web console's pages with a large fleet (issue: "the fleet page with
//! 100,000 terminals answers in well under a second"): a center on SQLite with TERMINALS
//! enrolled terminals in four groups, each checked in with a plan (70 % protected, 15 %
//! update, 10 % switch, 5 % exposed), then each page requested through the center's real
//! router (in process: what is measured is the page, not TLS) RUNS times; prints the median
//! and the slowest.
//!
//! `cargo bench -p herd-center --bench console [-- TERMINALS RUNS]` (default 100000 and 9).

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use herd_center::Center;
use herd_center::config::{CenterConfig, ConfigFile};
use herd_proto::api::{GroupDoc, NewApiToken};
use herd_proto::terminal::PolicyDoc;
use herd_store::{CheckinWrite, EnrolTokenRow, NewTerminal, PlanWrite};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

const GROUPS: [&str; 4] = ["unknown", "offices", "shops", "phones"];

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let terminals: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(9);
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "data_dir = {:?}\n",
        dir.path().join("data").display().to_string()
    );
    let config = CenterConfig::from_file(ConfigFile::parse("bench", &text).unwrap()).unwrap();
    let center = Center::open(config).await.unwrap();
    for group in &GROUPS[1..] {
        center
            .put_group(
                group,
                GroupDoc {
                    id: (*group).into(),
                    description: String::new(),
                    policy: PolicyDoc {
                        apply: "latest-any-vendor".into(),
                        min_danger: None,
                        consent: None,
                        window: None,
                        tz: None,
                        vendors: None,
                    },
                    terminals: 0,
                },
            )
            .await
            .unwrap();
    }
    let started = Instant::now();
    fleet(&center, terminals).await;
    eprintln!(
        "{terminals} terminals enrolled and checked in, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let token = center
        .new_api_token(NewApiToken {
            role: "viewer".into(),
            vendor: None,
            label: "bench".into(),
            ttl_secs: None,
        })
        .await
        .unwrap()
        .token;
    let session = center.console_sign_in(&token).await.unwrap().secret;
    let (router, _) = herd_center::api::router(center.clone());
    println!("page (with {terminals} terminals)            median     slowest   bytes");
    for path in [
        "/console/",
        "/console/terminals",
        "/console/terminals?action=exposed",
        "/console/terminals?group=shops&after=terminal-0050000",
        "/console/terminals?q=user99999",
        "/console/terminals?q=nobody-matches-this",
        "/console/exposed",
        "/console/terminals/terminal-0000042",
        "/console/coverage",
        "/console/rollouts",
        "/console/samples?show=all",
        "/console/faults",
        "/console/alerts",
    ] {
        let mut times = Vec::with_capacity(runs);
        let mut bytes = 0;
        for _ in 0..runs {
            let request = Request::get(path)
                .header(header::COOKIE, format!("herd_console={session}"))
                .body(Body::empty())
                .unwrap();
            let begun = Instant::now();
            let response = router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            times.push(begun.elapsed());
            assert_eq!(
                status,
                StatusCode::OK,
                "{path}: {}",
                String::from_utf8_lossy(&body)
            );
            bytes = body.len();
        }
        times.sort();
        println!(
            "{path:<52} {:>7.1} ms {:>7.1} ms {bytes:>7}",
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1])
        );
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Enrols `terminals` straight into the store and checks each in with a plan.
async fn fleet(center: &Center, terminals: u64) {
    let store = &center.store;
    store
        .enrol_token_insert(EnrolTokenRow {
            hash: "bench".into(),
            label: "bench".into(),
            uses_left: terminals,
            created_at: 0,
            expires_at: i64::MAX,
            reenrol_terminal: None,
        })
        .await
        .unwrap();
    let now = herd_center::unix_now();
    let mut batch = Vec::new();
    for i in 0..terminals {
        let id = format!("terminal-{i:07}");
        store
            .enrol(
                "bench",
                1_700_000_000,
                NewTerminal {
                    id: id.clone(),
                    user: Some(format!("user{i}")),
                    hardware: r#"{"kind":"pc","platform":"pc"}"#.into(),
                    tz: None,
                    group: GROUPS[(i % 4) as usize].into(),
                    cert_sha256: format!("{i:064x}"),
                    enrolled_at: 1_700_000_000,
                    address: "10.0.0.1".into(),
                    site: None,
                },
            )
            .await
            .unwrap();
        let action = match i % 20 {
            0 => "exposed",
            1 | 2 => "switch",
            3..=5 => "update",
            _ => "none",
        };
        batch.push(CheckinWrite {
            terminal: id,
            at: now - (i as i64 % 86_400) * 7,
            address: "10.0.0.1".into(),
            installed: Some(
                r#"{"product":"vaccine-a","version":"5.1","seq":1101,"pattern":"a-1101","format":"archive"}"#
                    .into(),
            ),
            hardware: None,
            tz: None,
            agent_version: Some("bench".into()),
            plan: PlanWrite {
                id: format!("plan-{action}"),
                action: action.into(),
                uncovered: u64::from(action == "exposed"),
                doc: format!(
                    r#"{{"terminal":"t","action":"{action}","uncovered_now":[],"uncovered_after":[],"from":null,"to":null,"consent_required":false,"not_before":null,"steps":[],"alternatives":[],"reason":"bench"}}"#
                ),
            },
            relay: None,
        });
        if batch.len() == 1000 {
            store.record_checkins(&batch).await.unwrap();
            batch.clear();
        }
    }
    store.record_checkins(&batch).await.unwrap();
}
