//! The conformance suite of the `Store` trait: every check is written once, against a
//! [`Fixture`] (a fresh, empty store plus the URL to open more instances of it, as other center
//! processes would), and runs on SQLite in a temporary directory always, and on PostgreSQL in
//! a fresh schema when `HERD_TEST_POSTGRES_URL` names a server.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herd_store::{
    AddressRow, AlertAttempt, ApiTokenRow, Approval, Backend, CaMaterial, CheckinWrite,
    ConsoleLinkRow, ConsoleSessionRow, EnrolError, EnrolTokenRow, EventRow, EventsWrite,
    FeedClaims, FeedPolled, FeedSourceRow, FileVerdictRow, GroupRow, InterfaceSeen, LinkTaken,
    MessageQuery, NewAlertDelivery, NewMessage, NewTerminal, OnlineKeyRow, OnlineKeyState,
    PackageContent, PackageRow, PlanWrite, QueueItem, QueuedItem, Recency, Registry, RenewError,
    Revisions, RevokedToken, Role, RolloutCounts, RolloutRow, RuleRow, Store, StoreError,
    StoredFeed, TUF_VERSIONS_KEPT, TerminalQuery, TerminalRow, ThreatOwnerRow, TufDocument,
    TufSigned, UNKNOWN_GROUP, VendorApprovalRow, VendorKeyRow, VendorRoleRow,
};

// --- fixtures -----------------------------------------------------------------------------

/// A fresh store, and what it takes to open the same database again.
struct Fixture {
    store: Arc<dyn Store>,
    url: String,
}

impl Fixture {
    /// Another instance on the same database, as a second center process would open it.
    async fn another(&self) -> Box<dyn Store> {
        herd_store::open(&self.url)
            .await
            .expect("opening a second instance")
    }
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `test` on a fresh store of each backend available.
async fn on_each_backend<F, Fut>(test: F)
where
    F: Fn(Arc<Fixture>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("herd.db").display());
        let store: Arc<dyn Store> = Arc::from(herd_store::open(&url).await.expect("open SQLite"));
        assert_eq!(store.backend(), Backend::Sqlite);
        // A task of its own, so a panic comes back here as a JoinError and cleanup still runs.
        let outcome = tokio::spawn(test(Arc::new(Fixture { store, url }))).await;
        drop(dir);
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic.into_panic());
        }
    }
    if let Ok(base) = std::env::var("HERD_TEST_POSTGRES_URL") {
        let schema = format!("herd_t_{}", unique_suffix());
        let admin = sqlx::PgPool::connect(&base)
            .await
            .expect("connect to HERD_TEST_POSTGRES_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .expect("create the test schema");
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-csearch_path%3D{schema}");
        let (outcome, opened_error) = match herd_store::open(&url).await {
            Ok(store) => {
                assert_eq!(store.backend(), Backend::Postgres);
                let fixture = Arc::new(Fixture {
                    store: Arc::from(store),
                    url,
                });
                (Some(tokio::spawn(test(fixture)).await), None)
            }
            Err(error) => (None, Some(error)),
        };
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&admin)
            .await
            .expect("drop the test schema");
        match (outcome, opened_error) {
            (Some(Err(panic)), _) => std::panic::resume_unwind(panic.into_panic()),
            (None, Some(error)) => panic!("opening PostgreSQL in the test schema: {error}"),
            _ => {}
        }
    }
}

/// One `#[tokio::test]` per suite function, each on every backend.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod run {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::on_each_backend(|fixture| async move { super::$name(&fixture).await })
                        .await;
                }
            )*
        }
    };
}

conformance!(
    herd_signatures_are_added_once_listed_by_digest_and_removed,
    body_signatures_are_added_all_or_none_listed_by_format_and_removed,
    herd_threats_and_their_feed_follow_the_set,
    suspects_are_counted_once_per_terminal,
    a_sites_writes_queue_their_relay_items_in_the_same_transaction,
    the_repository_is_initialised_once_even_when_processes_race,
    a_sign_round_stores_only_from_the_revision_it_read_and_prunes_old_versions,
    a_root_installs_and_activates_exactly_the_keys_it_names,
    vendor_keys_uploads_and_package_contents,
    ca_is_created_once_even_when_processes_race,
    ca_is_replaced_only_from_the_generation_read,
    publish_feed_stores_checks_and_bumps_the_catalog_revision,
    concurrent_publishes_see_each_other,
    a_threat_belongs_to_the_first_vendor_that_claims_it,
    packages_keep_their_first_row,
    package_bytes_are_counted_per_vendor_and_rows_deleted,
    api_tokens,
    enrolment_refusals_write_nothing,
    enrolment_consumes_token_uses,
    one_use_token_enrols_exactly_one_of_concurrent_terminals,
    same_terminal_id_enrols_once_under_concurrency,
    checkins_update_terminals_plans_and_the_network_map,
    checkin_batches_take_the_later_write_and_skip_unknown_terminals,
    the_network_map_follows_a_terminal_that_moves,
    concurrent_checkin_batches_from_two_processes_all_count,
    terminals_are_listed_by_pages_and_filters,
    console_sessions_links_search_and_fleet_counts,
    file_verdicts_keep_the_latest_per_file,
    consent_requests_open_once_decide_once_and_go_with_their_terminal,
    groups_put_list_and_delete,
    rules_replace_is_atomic_and_checks_groups,
    events_are_idempotent_and_ordered,
    plan_reports_update_the_terminal,
    terminal_delete_takes_addresses_and_events,
    each_change_bumps_exactly_its_revision,
    terminal_changes_list_enrolments_and_deletions_in_order,
    a_follower_of_terminal_changes_misses_none_under_concurrency,
    group_policies_are_the_groups_without_counts,
    enrol_tokens_are_found_without_consuming_a_use,
    events_are_counted_per_terminal,
    tokens_are_listed_and_a_revoked_one_is_gone_for_every_process,
    the_last_operator_token_is_not_revoked_by_accident,
    a_renewal_keeps_the_previous_certificate_and_no_older_one,
    a_refused_renewal_changes_nothing,
    a_reenrolment_token_works_once_and_only_for_its_terminal,
    the_interface_map_keeps_every_address_a_terminal_held,
    another_process_is_woken_when_a_revision_moves,
    sites_enrol_with_site_tokens_and_relay_only_for_terminals_they_served,
    a_site_replicates_catalog_and_groups_at_the_centers_revisions,
    a_sites_queue_keeps_order_one_checkin_per_terminal_and_deletes_through_an_ack,
    alert_deliveries_are_claimed_once_retried_and_recorded,
    an_alert_window_is_written_only_over_the_version_read,
    feed_sources_keep_their_validators_until_replaced,
    messages_reach_their_audience_and_keep_the_sites_thread,
    rollouts_start_once_move_only_from_the_version_read_and_count_in_place,
    faults_are_recorded_once_and_counted_in_their_bucket,
    fault_rules_and_replacements_are_put_listed_and_deleted,
);

// --- helpers ------------------------------------------------------------------------------

const DEFAULT_POLICY: &str =
    r#"{"apply":"latest-any-vendor","min_danger":"low","consent":"auto","window":null}"#;
const HARDWARE: &str = r#"{"platform":"linux-x86_64"}"#;

fn enrol_token(hash: &str, uses: u64, expires_at: i64) -> EnrolTokenRow {
    EnrolTokenRow {
        hash: hash.to_owned(),
        label: format!("token {hash}"),
        uses_left: uses,
        created_at: 1_000,
        expires_at,
        reenrol_terminal: None,
    }
}

fn new_terminal(id: &str, group: &str) -> NewTerminal {
    NewTerminal {
        id: id.to_owned(),
        user: Some(format!("user of {id}")),
        hardware: HARDWARE.to_owned(),
        tz: Some("+01:00".to_owned()),
        group: group.to_owned(),
        cert_sha256: format!("cert-{id}"),
        enrolled_at: 50,
        address: "192.0.2.1".to_owned(),
        site: None,
    }
}

/// Enrols each id in `group` with a one-use token of its own.
async fn enrol_all(store: &dyn Store, group: &str, ids: &[&str]) {
    static TOKENS: AtomicU64 = AtomicU64::new(0);
    for id in ids {
        let hash = format!("tok-{id}-{}", TOKENS.fetch_add(1, Ordering::Relaxed));
        store
            .enrol_token_insert(enrol_token(&hash, 1, 10_000))
            .await
            .unwrap();
        store
            .enrol(&hash, 2_000, new_terminal(id, group))
            .await
            .unwrap();
    }
}

fn plan(id: &str, action: &str) -> PlanWrite {
    PlanWrite {
        id: id.to_owned(),
        action: action.to_owned(),
        uncovered: 3,
        doc: format!(r#"{{"plan":"{id}","action":"{action}"}}"#),
    }
}

fn checkin(terminal: &str, at: i64, address: &str, plan: PlanWrite) -> CheckinWrite {
    CheckinWrite {
        terminal: terminal.to_owned(),
        at,
        address: address.to_owned(),
        installed: Some(format!(r#"{{"at":{at}}}"#)),
        hardware: None,
        tz: None,
        agent_version: Some("1.0.0".to_owned()),
        plan,
        relay: None,
    }
}

fn feed(vendor: &str, version: u32) -> StoredFeed {
    let doc = format!(r#"{{"vendor":"{vendor}","version":{version}}}"#);
    StoredFeed {
        vendor: vendor.to_owned(),
        sha256: format!("sha-{vendor}-{version}"),
        doc,
        published_at: 5_000 + i64::from(version),
    }
}

/// A publish claiming no threats, by a vendor approved at once.
fn no_claims() -> FeedClaims {
    FeedClaims {
        threats: vec![],
        new_threat_status: Approval::Approved,
        new_vendor_status: Approval::Approved,
    }
}

fn event(terminal: &str, seq: u64, kind: &str) -> EventRow {
    EventRow {
        terminal: terminal.to_owned(),
        seq,
        at: 3_000 + seq as i64,
        kind: kind.to_owned(),
        data: format!(r#"{{"seq":{seq}}}"#),
        received_at: 4_000,
    }
}

fn group(id: &str) -> GroupRow {
    GroupRow {
        id: id.to_owned(),
        description: format!("the {id} group"),
        policy: DEFAULT_POLICY.to_owned(),
    }
}

fn rule(group: &str, name: &str) -> RuleRow {
    RuleRow {
        group: group.to_owned(),
        rule: format!(r#"{{"name":"{name}","group":"{group}"}}"#),
    }
}

async fn all_terminal_ids(store: &dyn Store) -> Vec<String> {
    let rows = store.terminals(&TerminalQuery::default()).await.unwrap();
    rows.into_iter().map(|row| row.id).collect()
}

fn ids(rows: &[TerminalRow]) -> Vec<&str> {
    rows.iter().map(|row| row.id.as_str()).collect()
}

fn expect_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, mentions: &[&str]) {
    match result {
        Err(StoreError::Conflict(message)) => {
            for word in mentions {
                assert!(
                    message.contains(word),
                    "{message:?} should mention {word:?}"
                );
            }
        }
        other => panic!("expected a Conflict mentioning {mentions:?}, got {other:?}"),
    }
}

// --- the suite ----------------------------------------------------------------------------

async fn ca_is_created_once_even_when_processes_race(fixture: &Fixture) {
    let other = fixture.another().await;
    let first = CaMaterial {
        cert_pem: "cert one".into(),
        key_pem: "key one".into(),
        trust_pem: None,
        generation: 1,
    };
    let second = CaMaterial {
        cert_pem: "cert two".into(),
        key_pem: "key two".into(),
        trust_pem: None,
        generation: 1,
    };
    let (a, b) = tokio::join!(
        fixture.store.ca_get_or_insert(first.clone()),
        other.ca_get_or_insert(second.clone())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b, "both processes must use the same CA");
    assert!(a == first || a == second);
    let third = CaMaterial {
        cert_pem: "cert three".into(),
        key_pem: "key three".into(),
        trust_pem: None,
        generation: 1,
    };
    assert_eq!(fixture.store.ca_get_or_insert(third).await.unwrap(), a);
}

async fn ca_is_replaced_only_from_the_generation_read(fixture: &Fixture) {
    let store = &*fixture.store;
    assert_eq!(store.ca_get().await.unwrap(), None);
    let first = store
        .ca_get_or_insert(CaMaterial {
            cert_pem: "cert one".into(),
            key_pem: "key one".into(),
            trust_pem: None,
            generation: 1,
        })
        .await
        .unwrap();
    assert_eq!(first.generation, 1);
    assert_eq!(store.ca_get().await.unwrap().as_ref(), Some(&first));
    assert_eq!(store.revisions().await.unwrap().ca, 1);
    let intermediate = CaMaterial {
        cert_pem: "intermediate".into(),
        key_pem: "sealed".into(),
        trust_pem: Some("root".into()),
        generation: 0,
    };
    let stored = store.ca_replace(1, intermediate.clone()).await.unwrap();
    assert_eq!(
        stored,
        CaMaterial {
            generation: 2,
            ..intermediate.clone()
        }
    );
    assert_eq!(store.revisions().await.unwrap().ca, 2);
    // A second process that read generation 1 loses, and changes nothing.
    let other = fixture.another().await;
    expect_conflict(
        other.ca_replace(1, intermediate.clone()).await,
        &["generation 1"],
    );
    let again = other.ca_get_or_insert(first.clone()).await.unwrap();
    assert_eq!(again, stored, "the replacement stands");
}

async fn publish_feed_stores_checks_and_bumps_the_catalog_revision(fixture: &Fixture) {
    let store = &*fixture.store;
    assert_eq!(
        store.revisions().await.unwrap(),
        Revisions {
            catalog: 0,
            groups: 0,
            terminals: 0,
            ca: 0,
            tuf: 0
        }
    );
    assert_eq!(store.feeds().await.unwrap(), (0, vec![]));

    let seen: Mutex<Vec<Vec<String>>> = Mutex::new(Vec::new());
    let record = |others: &[StoredFeed], _: &Registry| -> Result<(), String> {
        seen.lock()
            .unwrap()
            .push(others.iter().map(|f| f.vendor.clone()).collect());
        Ok(())
    };

    let outcome = store
        .publish_feed(feed("acme", 1), &no_claims(), &record)
        .await
        .unwrap()
        .unwrap();
    assert!(outcome.changed);
    assert_eq!(outcome.revision, 1);
    assert_eq!(seen.lock().unwrap().pop(), Some(vec![]));

    // The same bytes again: nothing changes and the check is not run.
    let outcome = store
        .publish_feed(feed("acme", 1), &no_claims(), &record)
        .await
        .unwrap()
        .unwrap();
    assert!(!outcome.changed);
    assert_eq!(outcome.revision, 1);
    assert!(
        seen.lock().unwrap().is_empty(),
        "check must not run for an unchanged feed"
    );

    let outcome = store
        .publish_feed(feed("zeta", 1), &no_claims(), &record)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((outcome.changed, outcome.revision), (true, 2));
    assert_eq!(seen.lock().unwrap().pop(), Some(vec!["acme".to_owned()]));

    // A refused publish writes nothing and returns the check's message as is.
    let refused = store
        .publish_feed(
            feed("acme", 2),
            &no_claims(),
            &|others: &[StoredFeed], _: &Registry| {
                assert_eq!(
                    others,
                    [feed("zeta", 1)],
                    "check sees the other vendors' stored feeds"
                );
                Err("product p is also zeta's".to_owned())
            },
        )
        .await
        .unwrap();
    assert_eq!(refused, Err("product p is also zeta's".to_owned()));
    assert_eq!(
        store.feeds().await.unwrap(),
        (2, vec![feed("acme", 1), feed("zeta", 1)])
    );

    let outcome = store
        .publish_feed(feed("acme", 2), &no_claims(), &record)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((outcome.changed, outcome.revision), (true, 3));
    assert_eq!(seen.lock().unwrap().pop(), Some(vec!["zeta".to_owned()]));
    assert_eq!(
        store.feeds().await.unwrap(),
        (3, vec![feed("acme", 2), feed("zeta", 1)])
    );
    // Publishing touches no other revision.
    assert_eq!(
        store.revisions().await.unwrap(),
        Revisions {
            catalog: 3,
            groups: 0,
            terminals: 0,
            ca: 0,
            tuf: 0
        }
    );
}

async fn concurrent_publishes_see_each_other(fixture: &Fixture) {
    let other = fixture.another().await;
    // Each check lingers, so without serialisation both would see no other feed.
    fn slow_check(
        seen: &Mutex<Option<usize>>,
    ) -> impl Fn(&[StoredFeed], &Registry) -> Result<(), String> + Send + Sync + '_ {
        move |others, _| {
            std::thread::sleep(Duration::from_millis(150));
            *seen.lock().unwrap() = Some(others.len());
            Ok(())
        }
    }
    let (seen_a, seen_b) = (Mutex::new(None), Mutex::new(None));
    let (check_a, check_b) = (slow_check(&seen_a), slow_check(&seen_b));
    let claims = no_claims();
    let (a, b) = tokio::join!(
        fixture
            .store
            .publish_feed(feed("acme", 1), &claims, &check_a),
        other.publish_feed(feed("zeta", 1), &claims, &check_b)
    );
    let (a, b) = (a.unwrap().unwrap(), b.unwrap().unwrap());
    let mut revisions = [a.revision, b.revision];
    revisions.sort();
    assert_eq!(revisions, [1, 2]);
    let mut seen = [
        seen_a.lock().unwrap().unwrap(),
        seen_b.lock().unwrap().unwrap(),
    ];
    seen.sort();
    assert_eq!(
        seen,
        [0, 1],
        "the later publish must check against the earlier one"
    );
    assert_eq!(fixture.store.feeds().await.unwrap().1.len(), 2);
}

async fn a_threat_belongs_to_the_first_vendor_that_claims_it(fixture: &Fixture) {
    let store = &*fixture.store;
    let claims = |threats: &[&str], status: Approval| FeedClaims {
        threats: threats.iter().map(|&t| t.to_owned()).collect(),
        new_threat_status: status,
        new_vendor_status: status,
    };
    let seen: Mutex<Option<Registry>> = Mutex::new(None);
    let record = |_: &[StoredFeed], registry: &Registry| -> Result<(), String> {
        *seen.lock().unwrap() = Some(registry.clone());
        Ok(())
    };
    store
        .publish_feed(
            feed("acme", 1),
            &claims(&["t1", "t2"], Approval::Approved),
            &record,
        )
        .await
        .unwrap()
        .unwrap();
    // The check sees this publish's own claims.
    let registry = seen.lock().unwrap().take().unwrap();
    assert_eq!(
        registry
            .threats
            .iter()
            .map(|t| (t.threat.as_str(), t.vendor.as_str(), t.status))
            .collect::<Vec<_>>(),
        [
            ("t1", "acme", Approval::Approved),
            ("t2", "acme", Approval::Approved)
        ]
    );
    // A second vendor listing t2 does not take it; its new t3 waits for an operator.
    store
        .publish_feed(
            feed("zeta", 1),
            &claims(&["t2", "t3"], Approval::Pending),
            &record,
        )
        .await
        .unwrap()
        .unwrap();
    // A refused publish claims nothing.
    let refused = store
        .publish_feed(
            feed("zeta", 2),
            &claims(&["t4"], Approval::Approved),
            &|_: &[StoredFeed], _: &Registry| Err("no".to_owned()),
        )
        .await
        .unwrap();
    assert!(refused.is_err());
    let (revision, _, registry) = store.catalog_inputs().await.unwrap();
    assert_eq!(
        registry
            .threats
            .iter()
            .map(|t| (t.threat.as_str(), t.vendor.as_str(), t.status))
            .collect::<Vec<_>>(),
        [
            ("t1", "acme", Approval::Approved),
            ("t2", "acme", Approval::Approved),
            ("t3", "zeta", Approval::Pending)
        ]
    );
    assert_eq!(
        registry
            .vendors
            .iter()
            .map(|v| (v.vendor.as_str(), v.status))
            .collect::<Vec<_>>(),
        [("acme", Approval::Approved), ("zeta", Approval::Pending)]
    );
    // Every operator decision bumps the catalog revision; an unknown id changes nothing.
    store
        .threat_set_status("t3", Approval::Approved)
        .await
        .unwrap();
    store.threat_reassign("t2", "zeta").await.unwrap();
    store
        .vendor_set_status("zeta", Approval::Rejected)
        .await
        .unwrap();
    assert!(matches!(
        store.threat_set_status("t9", Approval::Approved).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.vendor_set_status("nobody", Approval::Approved).await,
        Err(StoreError::NotFound(_))
    ));
    let (after, _, registry) = store.catalog_inputs().await.unwrap();
    assert_eq!(after, revision + 3);
    assert_eq!(registry.threats[1].vendor, "zeta");
    assert_eq!(registry.threats[2].status, Approval::Approved);
    assert_eq!(registry.vendors[1].status, Approval::Rejected);
}

async fn package_bytes_are_counted_per_vendor_and_rows_deleted(fixture: &Fixture) {
    let store = &*fixture.store;
    assert_eq!(store.package_bytes_of("acme").await.unwrap(), 0);
    for (sha256, size, vendor) in [
        ("a1", 10, Some("acme")),
        ("a2", 5, Some("acme")),
        ("o1", 7, None),
        ("z1", 3, Some("zeta")),
    ] {
        store
            .package_put(PackageRow {
                sha256: sha256.into(),
                size,
                vendor: vendor.map(Into::into),
                uploaded_at: 1,
            })
            .await
            .unwrap();
    }
    assert_eq!(store.package_bytes_of("acme").await.unwrap(), 15);
    assert_eq!(store.package_bytes_of("zeta").await.unwrap(), 3);
    assert!(store.package_delete("a1").await.unwrap());
    assert!(!store.package_delete("a1").await.unwrap());
    assert_eq!(store.package_bytes_of("acme").await.unwrap(), 5);
    let left: Vec<String> = store
        .packages()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.sha256)
        .collect();
    assert_eq!(left, ["a2", "o1", "z1"]);
}

async fn packages_keep_their_first_row(fixture: &Fixture) {
    let store = &*fixture.store;
    assert_eq!(store.package_get("abc").await.unwrap(), None);
    let first = PackageRow {
        sha256: "abc".into(),
        size: 1 << 40,
        vendor: Some("acme".into()),
        uploaded_at: 7,
    };
    assert!(store.package_put(first.clone()).await.unwrap());
    let again = PackageRow {
        vendor: None,
        uploaded_at: 9,
        ..first.clone()
    };
    assert!(!store.package_put(again).await.unwrap());
    assert_eq!(store.package_get("abc").await.unwrap(), Some(first));
    let operator = PackageRow {
        sha256: "def".into(),
        size: 0,
        vendor: None,
        uploaded_at: 8,
    };
    assert!(store.package_put(operator.clone()).await.unwrap());
    assert_eq!(store.package_get("def").await.unwrap(), Some(operator));
}

async fn api_tokens(fixture: &Fixture) {
    let store = &*fixture.store;
    assert_eq!(store.api_tokens_count().await.unwrap(), 0);
    let operator = ApiTokenRow {
        hash: "h-op".into(),
        role: Role::Operator,
        vendor: None,
        label: "first operator".into(),
        created_at: 1,
        expires_at: 100,
    };
    let vendor = ApiTokenRow {
        hash: "h-vendor".into(),
        role: Role::Vendor,
        vendor: Some("acme".into()),
        label: "acme publishing".into(),
        created_at: 2,
        expires_at: 200,
    };
    store.api_token_insert(operator.clone()).await.unwrap();
    store.api_token_insert(vendor.clone()).await.unwrap();
    assert_eq!(store.api_tokens_count().await.unwrap(), 2);
    assert_eq!(
        store.api_token_find("h-op").await.unwrap(),
        Some(operator.clone())
    );
    assert_eq!(
        store.api_token_find("h-vendor").await.unwrap(),
        Some(vendor)
    );
    assert_eq!(store.api_token_find("h-none").await.unwrap(), None);
    let duplicate = ApiTokenRow {
        label: "other".into(),
        ..operator
    };
    expect_conflict(store.api_token_insert(duplicate).await, &["h-op"]);
    assert_eq!(store.api_tokens_count().await.unwrap(), 2);
}

async fn enrolment_refusals_write_nothing(fixture: &Fixture) {
    let store = &*fixture.store;
    store
        .enrol_token_insert(enrol_token("live", 1, 10_000))
        .await
        .unwrap();
    store
        .enrol_token_insert(enrol_token("old", 5, 2_000))
        .await
        .unwrap();
    store
        .enrol_token_insert(enrol_token("spent", 0, 10_000))
        .await
        .unwrap();
    expect_conflict(
        store.enrol_token_insert(enrol_token("live", 3, 1)).await,
        &["live"],
    );

    let outcome = store
        .enrol("nope", 2_000, new_terminal("t1", UNKNOWN_GROUP))
        .await;
    assert!(
        matches!(outcome, Err(EnrolError::TokenUnknown)),
        "{outcome:?}"
    );
    // Expiry is exclusive: at `expires_at` the token no longer works.
    let outcome = store
        .enrol("old", 2_000, new_terminal("t1", UNKNOWN_GROUP))
        .await;
    assert!(
        matches!(outcome, Err(EnrolError::TokenExpired)),
        "{outcome:?}"
    );
    let outcome = store
        .enrol("spent", 2_000, new_terminal("t1", UNKNOWN_GROUP))
        .await;
    assert!(
        matches!(outcome, Err(EnrolError::TokenUsedUp)),
        "{outcome:?}"
    );
    let outcome = store
        .enrol("live", 2_000, new_terminal("t1", "no-such-group"))
        .await;
    match outcome {
        Err(EnrolError::Store(StoreError::NotFound(message))) => {
            assert!(message.contains("no-such-group"), "{message}")
        }
        other => panic!("expected NotFound for the group, got {other:?}"),
    }
    assert!(all_terminal_ids(store).await.is_empty());
    assert!(store.addresses("t1").await.unwrap().is_empty());

    // None of the refusals used the live token's only use.
    let row = store
        .enrol("live", 1_999, new_terminal("t1", UNKNOWN_GROUP))
        .await
        .unwrap();
    let outcome = store
        .enrol("live", 2_000, new_terminal("t2", UNKNOWN_GROUP))
        .await;
    assert!(
        matches!(outcome, Err(EnrolError::TokenUsedUp)),
        "{outcome:?}"
    );

    let expected = TerminalRow {
        id: "t1".into(),
        user: Some("user of t1".into()),
        hardware: HARDWARE.into(),
        tz: Some("+01:00".into()),
        group: UNKNOWN_GROUP.into(),
        cert_sha256: "cert-t1".into(),
        enrolled_at: 50,
        last_checkin: None,
        last_address: Some("192.0.2.1".into()),
        installed: None,
        agent_version: None,
        plan_id: None,
        plan_action: None,
        plan_uncovered: 0,
        plan: None,
        planned_at: None,
        last_report: None,
    };
    assert_eq!(row, expected);
    assert_eq!(store.terminal("t1").await.unwrap(), Some(expected));
    assert_eq!(
        store.addresses("t1").await.unwrap(),
        [AddressRow {
            address: "192.0.2.1".into(),
            first_seen: 50,
            last_seen: 50,
            checkins: 0
        }]
    );
    // Enrolment is a terminal change, the one enrolment that succeeded only.
    assert_eq!(
        store.revisions().await.unwrap(),
        Revisions {
            catalog: 0,
            groups: 0,
            terminals: 1,
            ca: 0,
            tuf: 0
        }
    );
    assert_eq!(
        store.terminal_changes(0, 0).await.unwrap(),
        [(1, "t1".to_owned())]
    );
}

async fn enrolment_consumes_token_uses(fixture: &Fixture) {
    let store = &*fixture.store;
    store
        .enrol_token_insert(enrol_token("two", 2, 10_000))
        .await
        .unwrap();
    store
        .enrol("two", 2_000, new_terminal("t1", UNKNOWN_GROUP))
        .await
        .unwrap();
    // A terminal id that exists is refused without using the token.
    let outcome = store
        .enrol("two", 2_000, new_terminal("t1", UNKNOWN_GROUP))
        .await;
    assert!(
        matches!(&outcome, Err(EnrolError::TerminalExists(id)) if id == "t1"),
        "{outcome:?}"
    );
    store
        .enrol("two", 2_000, new_terminal("t2", UNKNOWN_GROUP))
        .await
        .unwrap();
    let outcome = store
        .enrol("two", 2_000, new_terminal("t3", UNKNOWN_GROUP))
        .await;
    assert!(
        matches!(outcome, Err(EnrolError::TokenUsedUp)),
        "{outcome:?}"
    );
    assert_eq!(all_terminal_ids(store).await, ["t1", "t2"]);
    assert_eq!(store.groups().await.unwrap()[0].1, 2);
}

async fn one_use_token_enrols_exactly_one_of_concurrent_terminals(fixture: &Fixture) {
    let other = fixture.another().await;
    fixture
        .store
        .enrol_token_insert(enrol_token("once", 1, 10_000))
        .await
        .unwrap();
    let attempts = (0..8).map(|i| {
        let store: &dyn Store = if i % 2 == 0 { &*fixture.store } else { &*other };
        store.enrol("once", 2_000, new_terminal(&format!("t{i}"), UNKNOWN_GROUP))
    });
    let outcomes = join_all(attempts).await;
    let enrolled = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
    assert_eq!(enrolled, 1, "{outcomes:?}");
    for outcome in &outcomes {
        assert!(
            matches!(outcome, Ok(_) | Err(EnrolError::TokenUsedUp)),
            "{outcome:?}"
        );
    }
    assert_eq!(all_terminal_ids(&*fixture.store).await.len(), 1);
}

async fn same_terminal_id_enrols_once_under_concurrency(fixture: &Fixture) {
    let other = fixture.another().await;
    fixture
        .store
        .enrol_token_insert(enrol_token("many", 100, 10_000))
        .await
        .unwrap();
    let attempts = (0..6).map(|i| {
        let store: &dyn Store = if i % 2 == 0 { &*fixture.store } else { &*other };
        store.enrol("many", 2_000, new_terminal("same", UNKNOWN_GROUP))
    });
    let outcomes = join_all(attempts).await;
    assert_eq!(
        outcomes.iter().filter(|outcome| outcome.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    for outcome in &outcomes {
        assert!(
            matches!(outcome, Ok(_) | Err(EnrolError::TerminalExists(_))),
            "{outcome:?}"
        );
    }
    // The refused attempts gave their use back: 99 uses remain.
    for i in 0..99 {
        fixture
            .store
            .enrol("many", 2_000, new_terminal(&format!("u{i}"), UNKNOWN_GROUP))
            .await
            .unwrap();
    }
    let outcome = fixture
        .store
        .enrol("many", 2_000, new_terminal("last", UNKNOWN_GROUP))
        .await;
    assert!(
        matches!(outcome, Err(EnrolError::TokenUsedUp)),
        "{outcome:?}"
    );
}

async fn checkins_update_terminals_plans_and_the_network_map(fixture: &Fixture) {
    let store = &*fixture.store;
    enrol_all(store, UNKNOWN_GROUP, &["t1", "t2"]).await;
    store.record_checkins(&[]).await.unwrap();

    store
        .record_checkins(&[checkin("t1", 100, "198.51.100.7", plan("p1", "update"))])
        .await
        .unwrap();
    let t1 = store.terminal("t1").await.unwrap().unwrap();
    assert_eq!(t1.last_checkin, Some(100));
    assert_eq!(t1.last_address.as_deref(), Some("198.51.100.7"));
    assert_eq!(t1.installed.as_deref(), Some(r#"{"at":100}"#));
    assert_eq!(t1.agent_version.as_deref(), Some("1.0.0"));
    assert_eq!(
        t1.hardware, HARDWARE,
        "hardware not reported: the stored one stays"
    );
    assert_eq!(
        t1.tz.as_deref(),
        Some("+01:00"),
        "tz not reported: the stored one stays"
    );
    assert_eq!(t1.plan_id.as_deref(), Some("p1"));
    assert_eq!(t1.plan_action.as_deref(), Some("update"));
    assert_eq!(t1.plan_uncovered, 3);
    assert_eq!(t1.plan.as_deref(), Some(plan("p1", "update").doc.as_str()));
    assert_eq!(t1.planned_at, Some(100));
    let t2 = store.terminal("t2").await.unwrap().unwrap();
    assert_eq!(
        (t2.last_checkin, t2.plan_id),
        (None, None),
        "t2 did not check in"
    );

    // Same plan id: the stored plan (and when it was made) stays, even if the doc differs.
    let mut same_id = checkin("t1", 200, "198.51.100.7", plan("p1", "exposed"));
    same_id.plan.doc = r#"{"different":"rendering"}"#.to_owned();
    same_id.hardware = Some(r#"{"platform":"linux-arm64"}"#.to_owned());
    same_id.tz = Some("+02:00".to_owned());
    same_id.installed = None;
    store.record_checkins(&[same_id]).await.unwrap();
    let t1 = store.terminal("t1").await.unwrap().unwrap();
    assert_eq!(t1.last_checkin, Some(200));
    assert_eq!(t1.plan_action.as_deref(), Some("update"));
    assert_eq!(t1.plan.as_deref(), Some(plan("p1", "update").doc.as_str()));
    assert_eq!(t1.planned_at, Some(100));
    assert_eq!(t1.hardware, r#"{"platform":"linux-arm64"}"#);
    assert_eq!(t1.tz.as_deref(), Some("+02:00"));
    assert_eq!(t1.installed, None, "nothing installed is stored as such");

    // A new plan id replaces the plan.
    store
        .record_checkins(&[checkin("t1", 300, "203.0.113.9", plan("p2", "switch"))])
        .await
        .unwrap();
    let t1 = store.terminal("t1").await.unwrap().unwrap();
    assert_eq!(t1.plan_id.as_deref(), Some("p2"));
    assert_eq!(t1.plan_action.as_deref(), Some("switch"));
    assert_eq!(t1.planned_at, Some(300));

    assert_eq!(
        store.addresses("t1").await.unwrap(),
        [
            AddressRow {
                address: "203.0.113.9".into(),
                first_seen: 300,
                last_seen: 300,
                checkins: 1
            },
            AddressRow {
                address: "198.51.100.7".into(),
                first_seen: 100,
                last_seen: 200,
                checkins: 2
            },
            AddressRow {
                address: "192.0.2.1".into(),
                first_seen: 50,
                last_seen: 50,
                checkins: 0
            },
        ]
    );
    // Check-ins change no revision; the two enrolments are the only terminal changes.
    assert_eq!(
        store.revisions().await.unwrap(),
        Revisions {
            catalog: 0,
            groups: 0,
            terminals: 2,
            ca: 0,
            tuf: 0
        }
    );
}

async fn checkin_batches_take_the_later_write_and_skip_unknown_terminals(fixture: &Fixture) {
    let store = &*fixture.store;
    enrol_all(store, UNKNOWN_GROUP, &["t1", "t2"]).await;
    let batch = [
        checkin("t1", 300, "198.51.100.1", plan("p1", "update")),
        checkin("ghost", 300, "198.51.100.1", plan("g1", "update")),
        checkin("t2", 305, "198.51.100.2", plan("q1", "none")),
        checkin("t1", 310, "198.51.100.3", plan("p2", "exposed")),
        checkin("t1", 320, "198.51.100.1", plan("p3", "switch")),
    ];
    store.record_checkins(&batch).await.unwrap();
    let t1 = store.terminal("t1").await.unwrap().unwrap();
    assert_eq!(t1.last_checkin, Some(320));
    assert_eq!(t1.last_address.as_deref(), Some("198.51.100.1"));
    assert_eq!(t1.plan_id.as_deref(), Some("p3"));
    assert_eq!(t1.plan_action.as_deref(), Some("switch"));
    assert_eq!(t1.installed.as_deref(), Some(r#"{"at":320}"#));
    let t2 = store.terminal("t2").await.unwrap().unwrap();
    assert_eq!(
        (t2.last_checkin, t2.plan_id.as_deref()),
        (Some(305), Some("q1"))
    );
    assert_eq!(store.terminal("ghost").await.unwrap(), None);
    assert!(store.addresses("ghost").await.unwrap().is_empty());
    // Every check-in of the batch counts in the network map.
    assert_eq!(
        store.addresses("t1").await.unwrap(),
        [
            AddressRow {
                address: "198.51.100.1".into(),
                first_seen: 300,
                last_seen: 320,
                checkins: 2
            },
            AddressRow {
                address: "198.51.100.3".into(),
                first_seen: 310,
                last_seen: 310,
                checkins: 1
            },
            AddressRow {
                address: "192.0.2.1".into(),
                first_seen: 50,
                last_seen: 50,
                checkins: 0
            },
        ]
    );
    // A batch made only of unknown terminals is no error either.
    store
        .record_checkins(&[checkin("ghost", 400, "x", plan("g", "none"))])
        .await
        .unwrap();

    // A late batch with an older time does not move first/last seen the wrong way.
    store
        .record_checkins(&[checkin("t1", 250, "198.51.100.1", plan("p3", "switch"))])
        .await
        .unwrap();
    let map = store.addresses("t1").await.unwrap();
    assert_eq!(
        map[0],
        AddressRow {
            address: "198.51.100.1".into(),
            first_seen: 250,
            last_seen: 320,
            checkins: 3
        }
    );
}

async fn the_network_map_follows_a_terminal_that_moves(fixture: &Fixture) {
    let store = &*fixture.store;
    enrol_all(store, UNKNOWN_GROUP, &["t1", "t2"]).await;
    let at = |at: i64, address: &str| checkin("t1", at, address, plan("p", "none"));
    let (a, b) = ("198.51.100.1", "198.51.100.2");
    store.record_checkins(&[at(100, a)]).await.unwrap();
    store.record_checkins(&[at(110, a)]).await.unwrap();
    let map = store.addresses("t1").await.unwrap();
    assert_eq!(
        map[0],
        AddressRow {
            address: a.into(),
            first_seen: 100,
            last_seen: 110,
            checkins: 2
        }
    );
    store.record_checkins(&[at(120, b)]).await.unwrap();
    // Back and forth inside one batch, ending where it was.
    store
        .record_checkins(&[at(130, a), at(140, b)])
        .await
        .unwrap();
    store.record_checkins(&[at(150, a)]).await.unwrap();
    // Another terminal at the same address is counted apart.
    store
        .record_checkins(&[checkin("t2", 160, a, plan("q", "none"))])
        .await
        .unwrap();
    assert_eq!(
        store.addresses("t1").await.unwrap(),
        [
            AddressRow {
                address: a.into(),
                first_seen: 100,
                last_seen: 150,
                checkins: 4
            },
            AddressRow {
                address: b.into(),
                first_seen: 120,
                last_seen: 140,
                checkins: 2
            },
            AddressRow {
                address: "192.0.2.1".into(),
                first_seen: 50,
                last_seen: 50,
                checkins: 0
            },
        ]
    );
    assert_eq!(
        store
            .terminal("t1")
            .await
            .unwrap()
            .unwrap()
            .last_address
            .as_deref(),
        Some(a)
    );
    // Checking in again from the enrolment address counts there.
    store
        .record_checkins(&[at(170, "192.0.2.1"), at(180, "192.0.2.1")])
        .await
        .unwrap();
    store.record_checkins(&[at(190, b)]).await.unwrap();
    assert_eq!(
        store.addresses("t1").await.unwrap(),
        [
            AddressRow {
                address: b.into(),
                first_seen: 120,
                last_seen: 190,
                checkins: 3
            },
            AddressRow {
                address: "192.0.2.1".into(),
                first_seen: 50,
                last_seen: 180,
                checkins: 2
            },
            AddressRow {
                address: a.into(),
                first_seen: 100,
                last_seen: 150,
                checkins: 4
            },
        ]
    );
}

async fn concurrent_checkin_batches_from_two_processes_all_count(fixture: &Fixture) {
    let other = fixture.another().await;
    let ids: Vec<String> = (0..40).map(|i| format!("t{i:02}")).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    enrol_all(&*fixture.store, UNKNOWN_GROUP, &id_refs).await;
    let batch = |round: i64, reversed: bool| -> Vec<CheckinWrite> {
        let mut writes: Vec<CheckinWrite> = ids
            .iter()
            .map(|id| {
                checkin(
                    id,
                    100 + round,
                    "198.51.100.9",
                    plan(&format!("p{round}"), "none"),
                )
            })
            .collect();
        if reversed {
            writes.reverse();
        }
        writes
    };
    // Same terminals, opposite orders, at the same time: neither may fail (no deadlock).
    let forward = async {
        for round in 0..8 {
            fixture
                .store
                .record_checkins(&batch(round, false))
                .await
                .unwrap();
        }
    };
    let backward = async {
        for round in 0..8 {
            other.record_checkins(&batch(round, true)).await.unwrap();
        }
    };
    tokio::join!(forward, backward);
    for id in &ids {
        let map = fixture.store.addresses(id).await.unwrap();
        assert_eq!(
            map[0],
            AddressRow {
                address: "198.51.100.9".into(),
                first_seen: 100,
                last_seen: 107,
                checkins: 16
            },
            "{id}"
        );
        let row = fixture.store.terminal(id).await.unwrap().unwrap();
        assert_eq!(row.last_checkin, Some(107), "{id}");
        assert_eq!(row.plan_id.as_deref(), Some("p7"), "{id}");
    }
}

async fn terminals_are_listed_by_pages_and_filters(fixture: &Fixture) {
    let store = &*fixture.store;
    store.group_put(group("lab")).await.unwrap();
    let all: Vec<String> = (0..25).map(|i| format!("term-{i:02}")).collect();
    for (i, id) in all.iter().enumerate() {
        let group = if i % 3 == 0 { "lab" } else { UNKNOWN_GROUP };
        enrol_all(store, group, &[id]).await;
    }
    let checkins: Vec<CheckinWrite> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 5 != 4)
        .map(|(i, id)| {
            let action = if i % 2 == 0 { "exposed" } else { "none" };
            checkin(id, 100, "192.0.2.9", plan(&format!("p-{id}"), action))
        })
        .collect();
    store.record_checkins(&checkins).await.unwrap();

    // Keyset paging: 10, 10, 5, then nothing; ascending, no overlap.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .terminals(&TerminalQuery {
                after: after.clone(),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10);
        after = page.last().map(|row| row.id.clone());
        paged.extend(page.into_iter().map(|row| row.id));
    }
    assert_eq!(paged, all);
    assert_eq!(
        all_terminal_ids(store).await,
        all,
        "limit 0 lists everything"
    );

    let lab = store
        .terminals(&TerminalQuery {
            group: Some("lab".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let expected: Vec<&str> = all.iter().step_by(3).map(String::as_str).collect();
    assert_eq!(ids(&lab), expected);
    assert!(lab.iter().all(|row| row.group == "lab"));

    let exposed = store
        .terminals(&TerminalQuery {
            action: Some("exposed".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let expected: Vec<&str> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 5 != 4 && i % 2 == 0)
        .map(|(_, id)| id.as_str())
        .collect();
    assert_eq!(ids(&exposed), expected);

    let lab_exposed_page = store
        .terminals(&TerminalQuery {
            group: Some("lab".into()),
            action: Some("exposed".into()),
            after: Some("term-00".into()),
            limit: 2,
            search: None,
        })
        .await
        .unwrap();
    // lab: 0, 3, 6, 9, 12, …; exposed among them: 0, 6, 12, 18, 24 (none of them i % 5 == 4 but 24).
    assert_eq!(ids(&lab_exposed_page), ["term-06", "term-12"]);
    let none = store
        .terminals(&TerminalQuery {
            action: Some("switch".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
    let past_the_end = store
        .terminals(&TerminalQuery {
            after: Some("term-99".into()),
            limit: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(past_the_end.is_empty());
}

async fn groups_put_list_and_delete(fixture: &Fixture) {
    let store = &*fixture.store;
    let groups = store.groups().await.unwrap();
    assert_eq!(
        groups,
        [(
            GroupRow {
                id: UNKNOWN_GROUP.into(),
                description: groups[0].0.description.clone(),
                policy: DEFAULT_POLICY.into()
            },
            0
        )]
    );
    expect_conflict(store.group_delete(UNKNOWN_GROUP).await, &[UNKNOWN_GROUP]);

    store.group_put(group("lab")).await.unwrap();
    assert_eq!(store.revisions().await.unwrap().groups, 1);
    let replaced = GroupRow {
        description: "the laboratory".into(),
        ..group("lab")
    };
    store.group_put(replaced.clone()).await.unwrap();
    assert_eq!(store.revisions().await.unwrap().groups, 2);
    store.group_put(group("field")).await.unwrap();
    let listed = store.groups().await.unwrap();
    let listed_ids: Vec<&str> = listed.iter().map(|(g, _)| g.id.as_str()).collect();
    assert_eq!(listed_ids, ["field", "lab", UNKNOWN_GROUP]);
    assert_eq!(listed[1], (replaced, 0));
    let revision = store.revisions().await.unwrap().groups;

    match store.group_delete("nowhere").await {
        Err(StoreError::NotFound(message)) => assert!(message.contains("nowhere"), "{message}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    enrol_all(store, "lab", &["t1", "t2"]).await;
    assert_eq!(store.groups().await.unwrap()[1].1, 2);
    expect_conflict(store.group_delete("lab").await, &["lab", "terminal"]);
    store.rules_replace(&[rule("field", "r1")]).await.unwrap();
    let revision = revision + 1;
    expect_conflict(store.group_delete("field").await, &["field", "rule"]);
    // Refusals change nothing, the revision included.
    assert_eq!(store.revisions().await.unwrap().groups, revision);
    assert_eq!(store.groups().await.unwrap().len(), 3);

    store.rules_replace(&[]).await.unwrap();
    store.group_delete("field").await.unwrap();
    assert_eq!(store.revisions().await.unwrap().groups, revision + 2);
    let listed_ids: Vec<String> = store
        .groups()
        .await
        .unwrap()
        .into_iter()
        .map(|(g, _)| g.id)
        .collect();
    assert_eq!(listed_ids, ["lab", UNKNOWN_GROUP]);
}

async fn rules_replace_is_atomic_and_checks_groups(fixture: &Fixture) {
    let store = &*fixture.store;
    assert!(store.rules().await.unwrap().is_empty());
    store.group_put(group("lab")).await.unwrap();
    store.group_put(group("field")).await.unwrap();
    let rules = [
        rule("lab", "a"),
        rule("field", "b"),
        rule(UNKNOWN_GROUP, "c"),
        rule("lab", "d"),
    ];
    store.rules_replace(&rules).await.unwrap();
    assert_eq!(store.rules().await.unwrap(), rules, "the order is kept");
    assert_eq!(store.revisions().await.unwrap().groups, 3);

    let refused = store
        .rules_replace(&[rule("lab", "e"), rule("ghost-group", "f")])
        .await;
    expect_conflict(refused, &["ghost-group"]);
    assert_eq!(
        store.rules().await.unwrap(),
        rules,
        "a refused replacement changes nothing"
    );
    assert_eq!(store.revisions().await.unwrap().groups, 3);

    store.rules_replace(&[rule("field", "g")]).await.unwrap();
    assert_eq!(store.rules().await.unwrap(), [rule("field", "g")]);
    assert_eq!(store.revisions().await.unwrap().groups, 4);
}

async fn events_are_idempotent_and_ordered(fixture: &Fixture) {
    let store = &*fixture.store;
    enrol_all(store, UNKNOWN_GROUP, &["t1", "t2"]).await;
    let outcome = store.events_append(&[]).await.unwrap();
    assert_eq!(
        (outcome.accepted, outcome.duplicates, outcome.last_seq),
        (0, 0, 0)
    );

    let outcome = store
        .events_append(&[
            event("t1", 1, "scan.hit"),
            event("t1", 2, "x"),
            event("t1", 3, "x"),
        ])
        .await
        .unwrap();
    assert_eq!(
        (outcome.accepted, outcome.duplicates, outcome.last_seq),
        (3, 0, 3)
    );
    // A resend overlapping what is stored, with a duplicate inside the call as well.
    let outcome = store
        .events_append(&[
            event("t1", 2, "x"),
            event("t1", 3, "x"),
            event("t1", 4, "y"),
            event("t1", 4, "y"),
        ])
        .await
        .unwrap();
    assert_eq!(
        (outcome.accepted, outcome.duplicates, outcome.last_seq),
        (1, 3, 4)
    );
    // Out of order: the highest seq stored is reported.
    let outcome = store.events_append(&[event("t1", 10, "z")]).await.unwrap();
    assert_eq!(outcome.last_seq, 10);
    let outcome = store.events_append(&[event("t1", 7, "z")]).await.unwrap();
    assert_eq!((outcome.accepted, outcome.last_seq), (1, 10));
    store
        .events_append(&[event("t2", 1, "a"), event("t2", 5, "b")])
        .await
        .unwrap();

    let seqs = |rows: Vec<EventRow>| -> Vec<(String, u64)> {
        rows.into_iter().map(|e| (e.terminal, e.seq)).collect()
    };
    let t1 = store.events(Some("t1"), 0, 0).await.unwrap();
    assert_eq!(t1[0], event("t1", 1, "scan.hit"), "stored as sent");
    let t1: Vec<u64> = t1.into_iter().map(|e| e.seq).collect();
    assert_eq!(t1, [1, 2, 3, 4, 7, 10]);
    let page = store.events(Some("t1"), 3, 2).await.unwrap();
    assert_eq!(seqs(page), [("t1".into(), 4), ("t1".into(), 7)]);
    let all = store.events(None, 0, 0).await.unwrap();
    assert_eq!(all.len(), 8);
    let all = seqs(all);
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "ordered by (terminal, seq)");
    let after_4 = store.events(None, 4, 0).await.unwrap();
    assert_eq!(
        seqs(after_4),
        [("t1".into(), 7), ("t1".into(), 10), ("t2".into(), 5)]
    );
    assert!(store.events(Some("nobody"), 0, 0).await.unwrap().is_empty());

    // Mixed terminals in one call: refused, nothing stored.
    let mixed = store
        .events_append(&[event("t2", 9, "a"), event("t1", 11, "a")])
        .await;
    expect_conflict(mixed, &["t1", "t2"]);
    assert_eq!(store.events(Some("t2"), 5, 0).await.unwrap(), []);
    match store.events_append(&[event("ghost", 1, "a")]).await {
        Err(StoreError::NotFound(message)) => assert!(message.contains("ghost"), "{message}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

async fn plan_reports_update_the_terminal(fixture: &Fixture) {
    let store = &*fixture.store;
    enrol_all(store, UNKNOWN_GROUP, &["t1"]).await;
    store
        .events_append(&[event("t1", 1, "scan.hit")])
        .await
        .unwrap();
    assert_eq!(
        store.terminal("t1").await.unwrap().unwrap().last_report,
        None
    );
    store
        .events_append(&[event("t1", 2, "plan.report"), event("t1", 3, "scan.hit")])
        .await
        .unwrap();
    assert_eq!(
        store
            .terminal("t1")
            .await
            .unwrap()
            .unwrap()
            .last_report
            .as_deref(),
        Some(r#"{"seq":2}"#)
    );
    store
        .events_append(&[event("t1", 5, "plan.report")])
        .await
        .unwrap();
    // An older report arriving late does not replace the newer one.
    store
        .events_append(&[event("t1", 4, "plan.report")])
        .await
        .unwrap();
    assert_eq!(
        store
            .terminal("t1")
            .await
            .unwrap()
            .unwrap()
            .last_report
            .as_deref(),
        Some(r#"{"seq":5}"#)
    );
}

async fn terminal_delete_takes_addresses_and_events(fixture: &Fixture) {
    let store = &*fixture.store;
    enrol_all(store, UNKNOWN_GROUP, &["t1", "t2"]).await;
    store
        .record_checkins(&[
            checkin("t1", 100, "198.51.100.1", plan("p", "none")),
            checkin("t2", 100, "198.51.100.2", plan("p", "none")),
        ])
        .await
        .unwrap();
    store
        .events_append(&[event("t1", 1, "a"), event("t1", 2, "plan.report")])
        .await
        .unwrap();
    store.events_append(&[event("t2", 1, "a")]).await.unwrap();
    let before = store.revisions().await.unwrap();

    assert!(store.terminal_delete("t1").await.unwrap());
    let after = Revisions {
        terminals: before.terminals + 1,
        ..before
    };
    assert_eq!(store.revisions().await.unwrap(), after);
    assert_eq!(
        store.terminal_changes(before.terminals, 0).await.unwrap(),
        [(after.terminals, "t1".to_owned())]
    );
    assert_eq!(store.terminal("t1").await.unwrap(), None);
    assert!(store.addresses("t1").await.unwrap().is_empty());
    assert!(store.events(Some("t1"), 0, 0).await.unwrap().is_empty());
    assert_eq!(
        store.events(None, 0, 0).await.unwrap().len(),
        1,
        "t2's event stays"
    );
    assert_eq!(store.addresses("t2").await.unwrap().len(), 2);

    assert!(!store.terminal_delete("t1").await.unwrap());
    assert_eq!(
        store.revisions().await.unwrap(),
        after,
        "nothing deleted, no change"
    );

    // The id can enrol again, with a fresh history.
    enrol_all(store, UNKNOWN_GROUP, &["t1"]).await;
    let outcome = store.events_append(&[event("t1", 1, "a")]).await.unwrap();
    assert_eq!((outcome.accepted, outcome.last_seq), (1, 1));
}

/// On PostgreSQL a second process's [`Store::revision_changes`] wakes when a transaction of
/// the first moves a revision, through `NOTIFY` on [`REVISIONS_CHANNEL`]; SQLite has none.
/// (Only wake-ups are checked, never their absence: notifications are database-wide, and
/// other tests' schemas share the database.)
async fn another_process_is_woken_when_a_revision_moves(fixture: &Fixture) {
    let store = &*fixture.store;
    let other = fixture.another().await;
    let Some(mut changes) = other.revision_changes() else {
        assert_eq!(other.backend(), Backend::Sqlite);
        return;
    };
    let woken = |changes: &mut herd_store::RevisionChanges| {
        let mut changes = changes.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(5), changes.changed())
                .await
                .expect("woken within 5 s")
        }
    };
    // Woken once when the listener first listens.
    assert!(woken(&mut changes).await);
    let mut raw = sqlx::postgres::PgListener::connect(&fixture.url)
        .await
        .unwrap();
    raw.listen(herd_store::REVISIONS_CHANNEL).await.unwrap();

    let accept = |_: &[StoredFeed], _: &Registry| Ok(());
    let mut waiting = tokio::spawn({
        let mut changes = changes.clone();
        async move { changes.changed().await }
    });
    store
        .publish_feed(feed("acme", 1), &no_claims(), &accept)
        .await
        .unwrap()
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(5), &mut waiting)
            .await
            .expect("a publish wakes the other process")
            .unwrap()
    );
    let notification = tokio::time::timeout(Duration::from_secs(5), raw.recv())
        .await
        .expect("notified on the channel")
        .unwrap();
    assert_eq!(notification.channel(), herd_store::REVISIONS_CHANNEL);
    // Groups, terminal changes and the CA notify as well.
    for change in ["group", "enrolment", "ca"] {
        let waiting = tokio::spawn({
            let mut changes = changes.clone();
            async move { changes.changed().await }
        });
        // Let the waiter see the current value before the change.
        tokio::time::sleep(Duration::from_millis(50)).await;
        match change {
            "group" => store.group_put(group("lab")).await.unwrap(),
            "enrolment" => enrol_all(store, "lab", &["t1"]).await,
            _ => {
                store
                    .ca_get_or_insert(CaMaterial {
                        cert_pem: "cert".into(),
                        key_pem: "key".into(),
                        trust_pem: None,
                        generation: 1,
                    })
                    .await
                    .unwrap();
            }
        }
        assert!(
            tokio::time::timeout(Duration::from_secs(5), waiting)
                .await
                .unwrap_or_else(|_| panic!("a {change} wakes the other process"))
                .unwrap()
        );
    }
}

async fn each_change_bumps_exactly_its_revision(fixture: &Fixture) {
    let store = &*fixture.store;
    let mut expected = Revisions::default();
    assert_eq!(store.revisions().await.unwrap(), expected);
    let accept = |_: &[StoredFeed], _: &Registry| Ok(());

    store
        .publish_feed(feed("acme", 1), &no_claims(), &accept)
        .await
        .unwrap()
        .unwrap();
    expected.catalog += 1;
    assert_eq!(store.revisions().await.unwrap(), expected, "publish");
    store.group_put(group("lab")).await.unwrap();
    expected.groups += 1;
    assert_eq!(store.revisions().await.unwrap(), expected, "group_put");
    store.rules_replace(&[rule("lab", "r")]).await.unwrap();
    expected.groups += 1;
    assert_eq!(store.revisions().await.unwrap(), expected, "rules_replace");
    enrol_all(store, "lab", &["t1"]).await;
    expected.terminals += 1;
    assert_eq!(store.revisions().await.unwrap(), expected, "enrol");

    // Changes no cache depends on bump nothing.
    store
        .record_checkins(&[checkin("t1", 100, "198.51.100.1", plan("p", "none"))])
        .await
        .unwrap();
    store
        .events_append(&[event("t1", 1, "plan.report")])
        .await
        .unwrap();
    store
        .package_put(PackageRow {
            sha256: "sha".into(),
            size: 1,
            vendor: None,
            uploaded_at: 1,
        })
        .await
        .unwrap();
    store
        .api_token_insert(ApiTokenRow {
            hash: "h".into(),
            role: Role::Operator,
            vendor: None,
            label: "l".into(),
            created_at: 1,
            expires_at: 2,
        })
        .await
        .unwrap();
    store
        .publish_feed(feed("acme", 1), &no_claims(), &accept)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.revisions().await.unwrap(),
        expected,
        "unrelated changes"
    );

    // Refusals bump nothing either.
    assert!(store.group_delete("nowhere").await.is_err());
    assert!(store.group_delete("lab").await.is_err());
    assert!(store.rules_replace(&[rule("ghost", "r")]).await.is_err());
    assert!(!store.terminal_delete("ghost").await.unwrap());
    assert!(
        store
            .enrol("unknown-token", 2_000, new_terminal("t2", "lab"))
            .await
            .is_err()
    );
    assert_eq!(store.revisions().await.unwrap(), expected, "refusals");

    store.rules_replace(&[]).await.unwrap();
    expected.groups += 1;
    assert!(store.terminal_delete("t1").await.unwrap());
    expected.terminals += 1;
    assert_eq!(
        store.revisions().await.unwrap(),
        expected,
        "terminal_delete"
    );
    store.group_delete("lab").await.unwrap();
    expected.groups += 1;
    assert_eq!(store.revisions().await.unwrap(), expected, "group_delete");
}

async fn terminal_changes_list_enrolments_and_deletions_in_order(fixture: &Fixture) {
    let store = &*fixture.store;
    assert!(store.terminal_changes(0, 0).await.unwrap().is_empty());
    enrol_all(store, UNKNOWN_GROUP, &["a", "b"]).await;
    assert!(store.terminal_delete("a").await.unwrap());
    // Enrolled again: a process caching the deleted "a" must evict it once more.
    enrol_all(store, UNKNOWN_GROUP, &["a"]).await;
    assert!(store.terminal_delete("b").await.unwrap());

    let changes = store.terminal_changes(0, 0).await.unwrap();
    let names: Vec<&str> = changes.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(names, ["a", "b", "a", "a", "b"]);
    assert!(
        changes.windows(2).all(|pair| pair[0].0 < pair[1].0),
        "ids grow: {changes:?}"
    );
    let last = changes[4].0;
    assert_eq!(store.revisions().await.unwrap().terminals, last);

    // `after` is exclusive, `limit` caps, 0 means no limit.
    let after = changes[1].0;
    assert_eq!(
        store.terminal_changes(after, 0).await.unwrap(),
        changes[2..]
    );
    assert_eq!(
        store.terminal_changes(after, 2).await.unwrap(),
        changes[2..4]
    );
    assert_eq!(store.terminal_changes(0, 1).await.unwrap(), changes[..1]);
    assert!(store.terminal_changes(last, 0).await.unwrap().is_empty());
    // Another process reads the same log.
    let other = fixture.another().await;
    assert_eq!(other.terminal_changes(0, 0).await.unwrap(), changes);
}

async fn a_follower_of_terminal_changes_misses_none_under_concurrency(fixture: &Fixture) {
    // Enrolments and deletions from two processes race while a third reader follows the log
    // the way a center process does, continuing after the last id it saw. Were ids to commit
    // out of order, it would step over one committed late and never see it.
    let other: Arc<dyn Store> = Arc::from(fixture.another().await);
    fixture
        .store
        .enrol_token_insert(enrol_token("many", 1_000, 10_000))
        .await
        .unwrap();
    let writers: Vec<_> = (0..24)
        .map(|i| {
            let store = if i % 2 == 0 {
                Arc::clone(&fixture.store)
            } else {
                Arc::clone(&other)
            };
            tokio::spawn(async move {
                let id = format!("t{i:02}");
                store
                    .enrol("many", 2_000, new_terminal(&id, UNKNOWN_GROUP))
                    .await
                    .unwrap();
                if i % 3 == 0 {
                    assert!(store.terminal_delete(&id).await.unwrap());
                }
            })
        })
        .collect();
    let follower = fixture.another().await;
    let mut seen: Vec<(u64, String)> = Vec::new();
    let mut after = 0;
    loop {
        let done = writers.iter().all(|writer| writer.is_finished());
        for change in follower.terminal_changes(after, 0).await.unwrap() {
            after = change.0;
            seen.push(change);
        }
        if done {
            break;
        }
        tokio::task::yield_now().await;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let all = fixture.store.terminal_changes(0, 0).await.unwrap();
    assert_eq!(all.len(), 24 + 8);
    assert_eq!(seen, all);
}

async fn group_policies_are_the_groups_without_counts(fixture: &Fixture) {
    let store = &*fixture.store;
    store.group_put(group("lab")).await.unwrap();
    store.group_put(group("field")).await.unwrap();
    enrol_all(store, "lab", &["t1", "t2"]).await;
    let policies = store.group_policies().await.unwrap();
    let listed = store.groups().await.unwrap();
    assert_eq!(listed[1].1, 2, "groups() still counts");
    let without_counts: Vec<GroupRow> = listed.into_iter().map(|(g, _)| g).collect();
    assert_eq!(policies, without_counts);
    let ids: Vec<&str> = policies.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids, ["field", "lab", UNKNOWN_GROUP]);
}

/// Polls all futures concurrently (in one task), returning their outputs in order.
async fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|output| output.expect("every future completed"))
        .collect()
}

// --- backend-specific ---------------------------------------------------------------------

#[tokio::test]
async fn sqlite_reopened_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("herd.db").display());
    let ca = CaMaterial {
        cert_pem: "cert".into(),
        key_pem: "key".into(),
        trust_pem: None,
        generation: 1,
    };
    {
        let store = herd_store::open(&url).await.unwrap();
        store.ca_get_or_insert(ca.clone()).await.unwrap();
        store
            .publish_feed(
                feed("acme", 1),
                &no_claims(),
                &|_: &[StoredFeed], _: &Registry| Ok(()),
            )
            .await
            .unwrap()
            .unwrap();
        store.group_put(group("lab")).await.unwrap();
        store.rules_replace(&[rule("lab", "r")]).await.unwrap();
        store
            .enrol_token_insert(enrol_token("one-use", 1, 10_000))
            .await
            .unwrap();
        store
            .enrol("one-use", 2_000, new_terminal("t1", "lab"))
            .await
            .unwrap();
        store
            .record_checkins(&[checkin("t1", 100, "198.51.100.1", plan("p", "none"))])
            .await
            .unwrap();
        store
            .events_append(&[event("t1", 1, "plan.report")])
            .await
            .unwrap();
    }
    // Give the dropped pools' connections time to close, as a stopped process's would be.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..2 {
        let store = herd_store::open(&url)
            .await
            .expect("reopen: migrations are idempotent");
        let other = CaMaterial {
            cert_pem: "new".into(),
            key_pem: "new".into(),
            trust_pem: None,
            generation: 1,
        };
        assert_eq!(store.ca_get_or_insert(other).await.unwrap(), ca);
        assert_eq!(
            store.revisions().await.unwrap(),
            Revisions {
                catalog: 1,
                groups: 2,
                terminals: 1,
                ca: 1,
                tuf: 0
            }
        );
        assert_eq!(store.feeds().await.unwrap(), (1, vec![feed("acme", 1)]));
        assert_eq!(store.rules().await.unwrap(), [rule("lab", "r")]);
        let t1 = store.terminal("t1").await.unwrap().unwrap();
        assert_eq!((t1.group.as_str(), t1.last_checkin), ("lab", Some(100)));
        assert_eq!(t1.last_report.as_deref(), Some(r#"{"seq":1}"#));
        assert_eq!(store.addresses("t1").await.unwrap().len(), 2);
        assert_eq!(store.events(Some("t1"), 0, 0).await.unwrap().len(), 1);
        let outcome = store
            .enrol("one-use", 2_000, new_terminal("t9", "lab"))
            .await;
        assert!(
            matches!(outcome, Err(EnrolError::TokenUsedUp)),
            "{outcome:?}"
        );
    }
}

#[tokio::test]
async fn sqlite_open_names_the_path_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("herd.db");
    let url = format!("sqlite://{}", missing.display());
    match herd_store::open(&url).await {
        Err(error @ StoreError::Open { .. }) => {
            let message = error.to_string();
            assert!(
                message.contains(&missing.display().to_string()),
                "{message}"
            );
            assert!(message.contains("no-such-dir"), "{message}");
        }
        other => panic!("expected an Open error, got {other:?}"),
    }
    // A directory where the file should be.
    let url = format!("sqlite://{}", dir.path().display());
    match herd_store::open(&url).await {
        Err(error @ StoreError::Open { .. }) => {
            assert!(
                error
                    .to_string()
                    .contains(&dir.path().display().to_string()),
                "{error}"
            );
        }
        other => panic!("expected an Open error, got {other:?}"),
    }
    match herd_store::open("mysql://localhost/herd").await {
        Err(StoreError::BadUrl(url)) => assert_eq!(url, "mysql://localhost/herd"),
        other => panic!("expected BadUrl, got {other:?}"),
    }
}

#[tokio::test]
async fn postgres_unreachable_is_an_open_error_without_the_password() {
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    let url = "postgres://herd:hunter2@127.0.0.1:1/herd";
    match herd_store::open(url).await {
        Err(error @ StoreError::Open { .. }) => {
            let message = error.to_string();
            assert!(message.contains("127.0.0.1:1"), "{message}");
            assert!(message.to_lowercase().contains("refused"), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
        other => panic!("expected an Open error, got {other:?}"),
    }
}

async fn enrol_tokens_are_found_without_consuming_a_use(fixture: &Fixture) {
    let store = &*fixture.store;
    assert_eq!(store.enrol_token_find("nope").await.unwrap(), None);
    store
        .enrol_token_insert(enrol_token("two", 2, 10_000))
        .await
        .unwrap();
    let revisions = store.revisions().await.unwrap();
    assert_eq!(
        store.enrol_token_find("two").await.unwrap(),
        Some(enrol_token("two", 2, 10_000))
    );
    assert_eq!(
        store
            .enrol_token_find("two")
            .await
            .unwrap()
            .unwrap()
            .uses_left,
        2,
        "finding a token takes no use"
    );
    assert_eq!(store.revisions().await.unwrap(), revisions);
    store
        .enrol("two", 2_000, new_terminal("t1", UNKNOWN_GROUP))
        .await
        .unwrap();
    assert_eq!(
        store
            .enrol_token_find("two")
            .await
            .unwrap()
            .unwrap()
            .uses_left,
        1,
        "the use taken by `enrol` is seen"
    );
}

async fn events_are_counted_per_terminal(fixture: &Fixture) {
    let store = &*fixture.store;
    enrol_all(store, UNKNOWN_GROUP, &["t1", "t2"]).await;
    assert_eq!(store.events_count("t1").await.unwrap(), 0);
    assert_eq!(store.events_count("ghost").await.unwrap(), 0);
    store
        .events_append(&[event("t1", 1, "x"), event("t1", 2, "x")])
        .await
        .unwrap();
    // A duplicate is not stored, so not counted.
    store
        .events_append(&[event("t1", 2, "x"), event("t1", 9, "x")])
        .await
        .unwrap();
    store.events_append(&[event("t2", 1, "x")]).await.unwrap();
    assert_eq!(store.events_count("t1").await.unwrap(), 3);
    assert_eq!(store.events_count("t2").await.unwrap(), 1);
}

// --- identity lifecycle -------------------------------------------------------------------

fn api_token(hash: &str, role: Role, expires_at: i64) -> ApiTokenRow {
    ApiTokenRow {
        hash: hash.to_owned(),
        role,
        vendor: (role == Role::Vendor).then(|| "acme".to_owned()),
        label: format!("token {hash}"),
        created_at: 10,
        expires_at,
    }
}

async fn tokens_are_listed_and_a_revoked_one_is_gone_for_every_process(fixture: &Fixture) {
    let store = &*fixture.store;
    let other_process = fixture.another().await;
    store
        .api_token_insert(api_token("aaaa0000op1", Role::Operator, 1_000))
        .await
        .unwrap();
    store
        .api_token_insert(api_token("bbbb0000vendor", Role::Vendor, 1_000))
        .await
        .unwrap();
    store
        .enrol_token_insert(enrol_token("cccc0000enrol", 3, 1_000))
        .await
        .unwrap();
    let listed: Vec<String> = store
        .api_tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.hash)
        .collect();
    assert_eq!(listed, ["aaaa0000op1", "bbbb0000vendor"]);
    assert_eq!(
        store.enrol_tokens().await.unwrap(),
        [enrol_token("cccc0000enrol", 3, 1_000)]
    );

    let revoked = store.token_revoke("bbbb0000", 500, false).await.unwrap();
    assert!(matches!(revoked, RevokedToken::Api(ref t) if t.hash == "bbbb0000vendor"));
    assert_eq!(
        other_process
            .api_token_find("bbbb0000vendor")
            .await
            .unwrap(),
        None
    );
    let revoked = store.token_revoke("CCCC0000", 500, false).await.unwrap();
    assert!(matches!(revoked, RevokedToken::Enrolment(ref t) if t.hash == "cccc0000enrol"));
    assert_eq!(
        other_process
            .enrol_token_find("cccc0000enrol")
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        store.token_revoke("cccc0000", 500, false).await,
        Err(StoreError::NotFound(_))
    ));
    // Too short to name a token, or not hex (a LIKE wildcard): nothing matches.
    for bogus in ["aaaa", "%%%%%%%%", "aaaa000_"] {
        assert!(
            matches!(
                store.token_revoke(bogus, 500, true).await,
                Err(StoreError::NotFound(_))
            ),
            "{bogus}"
        );
    }
    assert_eq!(store.api_tokens_count().await.unwrap(), 1);
}

async fn the_last_operator_token_is_not_revoked_by_accident(fixture: &Fixture) {
    let store = &*fixture.store;
    store
        .api_token_insert(api_token("dddd0000live", Role::Operator, 1_000))
        .await
        .unwrap();
    // An expired operator token does not count as a way back in.
    store
        .api_token_insert(api_token("eeee0000expired", Role::Operator, 100))
        .await
        .unwrap();
    store
        .api_token_insert(api_token("ffff00001111", Role::Operator, 1_000))
        .await
        .unwrap();
    store
        .api_token_insert(api_token("ffff00002222", Role::Operator, 1_000))
        .await
        .unwrap();
    expect_conflict(
        store.token_revoke("ffff0000", 500, false).await,
        &["several"],
    );
    store
        .token_revoke("ffff00001111", 500, false)
        .await
        .unwrap();
    store
        .token_revoke("ffff00002222", 500, false)
        .await
        .unwrap();
    expect_conflict(
        store.token_revoke("dddd0000", 500, false).await,
        &["last operator token"],
    );
    assert!(
        store
            .api_token_find("dddd0000live")
            .await
            .unwrap()
            .is_some()
    );
    store.token_revoke("dddd0000", 500, true).await.unwrap();
    assert!(
        store
            .api_token_find("dddd0000live")
            .await
            .unwrap()
            .is_none()
    );
}

async fn a_renewal_keeps_the_previous_certificate_and_no_older_one(fixture: &Fixture) {
    let store = &*fixture.store;
    enrol_all(store, UNKNOWN_GROUP, &["t1"]).await;
    let changes = store.revisions().await.unwrap().terminals;
    store
        .terminal_renew_cert("t1", "cert-t1", "cert-2")
        .await
        .unwrap();
    assert!(store.revisions().await.unwrap().terminals > changes);
    let row = store.terminal("t1").await.unwrap().unwrap();
    assert_eq!(row.cert_sha256, "cert-2");
    assert_eq!(
        store.terminal_previous_cert("t1").await.unwrap().as_deref(),
        Some("cert-t1")
    );
    // The answer was lost: the terminal renews again with its old certificate, and the one it
    // never received is replaced.
    store
        .terminal_renew_cert("t1", "cert-t1", "cert-3")
        .await
        .unwrap();
    assert_eq!(
        store.terminal("t1").await.unwrap().unwrap().cert_sha256,
        "cert-3"
    );
    assert_eq!(
        store.terminal_previous_cert("t1").await.unwrap().as_deref(),
        Some("cert-t1")
    );
    // Renewed from the current one, the first certificate is forgotten.
    store
        .terminal_renew_cert("t1", "cert-3", "cert-4")
        .await
        .unwrap();
    assert_eq!(
        store.terminal_previous_cert("t1").await.unwrap().as_deref(),
        Some("cert-3")
    );
    assert!(matches!(
        store.terminal_renew_cert("t1", "cert-t1", "cert-5").await,
        Err(RenewError::NotCurrent(_))
    ));
    assert!(matches!(
        store.terminal_renew_cert("t1", "cert-2", "cert-5").await,
        Err(RenewError::NotCurrent(_))
    ));
    assert_eq!(
        store.terminal("t1").await.unwrap().unwrap().cert_sha256,
        "cert-4"
    );
    // Deleting the terminal forgets its certificates.
    assert!(store.terminal_delete("t1").await.unwrap());
    assert_eq!(store.terminal_previous_cert("t1").await.unwrap(), None);
}

async fn a_refused_renewal_changes_nothing(fixture: &Fixture) {
    let store = &*fixture.store;
    enrol_all(store, UNKNOWN_GROUP, &["t1"]).await;
    let revisions = store.revisions().await.unwrap();
    assert!(matches!(
        store.terminal_renew_cert("t1", "forged", "cert-x").await,
        Err(RenewError::NotCurrent(_))
    ));
    assert!(matches!(
        store
            .terminal_renew_cert("nobody", "cert-t1", "cert-x")
            .await,
        Err(RenewError::TerminalGone(_))
    ));
    assert_eq!(store.revisions().await.unwrap(), revisions);
    assert_eq!(
        store.terminal("t1").await.unwrap().unwrap().cert_sha256,
        "cert-t1"
    );
    assert_eq!(store.terminal_previous_cert("t1").await.unwrap(), None);
}

async fn a_reenrolment_token_works_once_and_only_for_its_terminal(fixture: &Fixture) {
    let store = &*fixture.store;
    enrol_all(store, UNKNOWN_GROUP, &["t1", "t2"]).await;
    store
        .events_append(&[event("t1", 1, "test.event")])
        .await
        .unwrap();
    store
        .terminal_renew_cert("t1", "cert-t1", "cert-renewed")
        .await
        .unwrap();
    store
        .enrol_token_insert(EnrolTokenRow {
            reenrol_terminal: Some("t1".into()),
            ..enrol_token("re-t1", 1, 10_000)
        })
        .await
        .unwrap();
    let before = store.terminal("t2").await.unwrap().unwrap();
    let outcome = store
        .enrol(
            "re-t1",
            2_000,
            NewTerminal {
                cert_sha256: "cert-stolen".into(),
                ..new_terminal("t2", UNKNOWN_GROUP)
            },
        )
        .await;
    assert!(
        matches!(&outcome, Err(EnrolError::TokenForAnotherTerminal { bound, asked }) if bound == "t1" && asked == "t2"),
        "{outcome:?}"
    );
    assert_eq!(store.terminal("t2").await.unwrap().unwrap(), before);
    assert_eq!(
        store
            .enrol_token_find("re-t1")
            .await
            .unwrap()
            .unwrap()
            .uses_left,
        1
    );

    let reenrolled = store
        .enrol(
            "re-t1",
            2_000,
            NewTerminal {
                cert_sha256: "cert-fresh".into(),
                group: "ignored".into(),
                ..new_terminal("t1", UNKNOWN_GROUP)
            },
        )
        .await
        .unwrap();
    assert_eq!(reenrolled.cert_sha256, "cert-fresh");
    assert_eq!(reenrolled.group, UNKNOWN_GROUP);
    assert_eq!(store.events(Some("t1"), 0, 0).await.unwrap().len(), 1);
    assert_eq!(store.terminal_previous_cert("t1").await.unwrap(), None);
    let again = store
        .enrol(
            "re-t1",
            2_000,
            NewTerminal {
                cert_sha256: "cert-again".into(),
                ..new_terminal("t1", UNKNOWN_GROUP)
            },
        )
        .await;
    assert!(matches!(again, Err(EnrolError::TokenUsedUp)), "{again:?}");
    assert_eq!(
        store.terminal("t1").await.unwrap().unwrap().cert_sha256,
        "cert-fresh"
    );
}

// --- the signed repository (TUF) ----------------------------------------------------------

fn tuf_doc(role: &str, version: u64) -> TufDocument {
    TufDocument {
        role: role.into(),
        version,
        expires_at: 1_000 + version as i64,
        doc: format!("{{\"role\":\"{role}\",\"version\":{version}}}"),
    }
}

fn online_key(keyid: &str, role: &str, state: OnlineKeyState) -> OnlineKeyRow {
    OnlineKeyRow {
        keyid: keyid.into(),
        role: role.into(),
        public: format!("{{\"public\":\"{keyid}\"}}"),
        sealed: format!("sealed {keyid}"),
        state,
        created_at: 5,
    }
}

async fn the_repository_is_initialised_once_even_when_processes_race(fixture: &Fixture) {
    let store = &*fixture.store;
    let empty = store.tuf_state().await.unwrap();
    assert!(empty.roots.is_empty() && empty.online_keys.is_empty());
    let others: Vec<Box<dyn Store>> = join_all((0..3).map(|_| fixture.another())).await;
    let firsts = join_all(others.iter().enumerate().map(|(i, other)| {
        let key = online_key(&format!("k{i}"), "timestamp", OnlineKeyState::Active);
        async move {
            let mut root = tuf_doc("root", 1);
            root.doc = format!("root of process {i}");
            other.tuf_initialise(&root, &[key]).await.unwrap()
        }
    }))
    .await;
    assert_eq!(
        firsts.iter().filter(|first| **first).count(),
        1,
        "{firsts:?}"
    );
    let winner = firsts.iter().position(|first| *first).unwrap();
    let state = store.tuf_state().await.unwrap();
    assert_eq!(state.roots.len(), 1);
    assert_eq!(state.roots[0].doc, format!("root of process {winner}"));
    assert_eq!(
        state.online_keys,
        vec![online_key(
            &format!("k{winner}"),
            "timestamp",
            OnlineKeyState::Active
        )],
        "only the winner's keys"
    );
    assert!(state.revision > 0);
    assert_eq!(store.revisions().await.unwrap().tuf, state.revision);
}

async fn a_sign_round_stores_only_from_the_revision_it_read_and_prunes_old_versions(
    fixture: &Fixture,
) {
    let store = &*fixture.store;
    assert!(
        store
            .tuf_initialise(&tuf_doc("root", 1), &[])
            .await
            .unwrap()
    );
    let mut revision = store.tuf_state().await.unwrap().revision;
    let rounds = TUF_VERSIONS_KEPT + 3;
    for version in 1..=rounds {
        let signed = TufSigned {
            documents: vec![
                tuf_doc("targets", version),
                tuf_doc("snapshot", version),
                tuf_doc("timestamp", version),
            ],
            upload: None,
        };
        let next = store.tuf_sign(revision, &signed).await.unwrap();
        assert_eq!(next, revision + 1);
        // Signing again from the revision read before: another process signed first.
        expect_conflict(store.tuf_sign(revision, &signed).await, &["revision"]);
        revision = next;
    }
    let state = store.tuf_state().await.unwrap();
    assert_eq!(state.revision, revision);
    assert_eq!(
        state.latest,
        vec![
            tuf_doc("snapshot", rounds),
            tuf_doc("targets", rounds),
            tuf_doc("timestamp", rounds)
        ]
    );
    assert_eq!(
        state.roots,
        vec![tuf_doc("root", 1)],
        "roots are never pruned"
    );
    for version in 1..=rounds {
        let kept = version > rounds - TUF_VERSIONS_KEPT;
        assert_eq!(
            store.tuf_document("snapshot", Some(version)).await.unwrap(),
            kept.then(|| tuf_doc("snapshot", version)),
            "snapshot version {version}"
        );
    }
    assert_eq!(
        store.tuf_document("timestamp", None).await.unwrap(),
        Some(tuf_doc("timestamp", rounds))
    );
    assert_eq!(
        store.tuf_document("root", None).await.unwrap(),
        Some(tuf_doc("root", 1))
    );
    assert_eq!(
        store.tuf_document("vendor-ghost", None).await.unwrap(),
        None
    );
    // A version already signed is refused whole: nothing of the round is stored.
    let taken = TufSigned {
        documents: vec![tuf_doc("vendor-acme", 1), tuf_doc("targets", rounds)],
        upload: None,
    };
    expect_conflict(
        store.tuf_sign(revision, &taken).await,
        &["targets", "already signed"],
    );
    assert_eq!(store.tuf_document("vendor-acme", None).await.unwrap(), None);
    assert_eq!(store.tuf_state().await.unwrap().revision, revision);
}

async fn a_root_installs_and_activates_exactly_the_keys_it_names(fixture: &Fixture) {
    let store = &*fixture.store;
    let first = [
        online_key("t1", "timestamp", OnlineKeyState::Active),
        online_key("s1", "snapshot", OnlineKeyState::Active),
    ];
    assert!(
        store
            .tuf_initialise(&tuf_doc("root", 1), &first)
            .await
            .unwrap()
    );
    store
        .tuf_online_key_add(&online_key("t2", "timestamp", OnlineKeyState::Pending))
        .await
        .unwrap();
    store
        .tuf_online_key_add(&online_key("s2", "snapshot", OnlineKeyState::Pending))
        .await
        .unwrap();
    expect_conflict(
        store
            .tuf_online_key_add(&online_key("t2", "timestamp", OnlineKeyState::Pending))
            .await,
        &["t2"],
    );
    let revision = store.tuf_state().await.unwrap().revision;
    let unknown = store
        .tuf_root_install(revision, &tuf_doc("root", 2), &["t2".into(), "nope".into()])
        .await;
    assert!(
        matches!(&unknown, Err(StoreError::NotFound(m)) if m.contains("nope")),
        "{unknown:?}"
    );
    assert_eq!(
        store.tuf_state().await.unwrap().roots.len(),
        1,
        "nothing installed"
    );
    expect_conflict(
        store
            .tuf_root_install(revision, &tuf_doc("root", 1), &["t2".into()])
            .await,
        &["root", "already signed"],
    );
    expect_conflict(
        store
            .tuf_root_install(revision + 7, &tuf_doc("root", 2), &["t2".into()])
            .await,
        &["revision"],
    );
    store
        .tuf_root_install(revision, &tuf_doc("root", 2), &["t2".into(), "s1".into()])
        .await
        .unwrap();
    let state = store.tuf_state().await.unwrap();
    assert_eq!(state.roots, vec![tuf_doc("root", 1), tuf_doc("root", 2)]);
    assert_eq!(
        state.online_keys,
        vec![
            online_key("s1", "snapshot", OnlineKeyState::Active),
            online_key("s2", "snapshot", OnlineKeyState::Pending),
            online_key("t2", "timestamp", OnlineKeyState::Active),
        ],
        "t1 is forgotten, s2 still waits"
    );
}

async fn vendor_keys_uploads_and_package_contents(fixture: &Fixture) {
    let store = &*fixture.store;
    let before = store.revisions().await.unwrap().tuf;
    let key = VendorKeyRow {
        vendor: "acme".into(),
        keyid: "k1".into(),
        public: "{}".into(),
        registered_at: 3,
    };
    store.tuf_vendor_key_put(&key).await.unwrap();
    let replaced = VendorKeyRow {
        keyid: "k2".into(),
        ..key
    };
    store.tuf_vendor_key_put(&replaced).await.unwrap();
    let state = store.tuf_state().await.unwrap();
    assert_eq!(state.vendor_keys, vec![replaced]);
    assert_eq!(state.revision, before + 2);
    let upload = VendorRoleRow {
        vendor: "acme".into(),
        version: 4,
        doc: "signed by acme".into(),
        uploaded_at: 9,
    };
    store
        .tuf_sign(
            state.revision,
            &TufSigned {
                documents: vec![TufDocument {
                    doc: upload.doc.clone(),
                    ..tuf_doc("vendor-acme", 4)
                }],
                upload: Some(upload.clone()),
            },
        )
        .await
        .unwrap();
    let state = store.tuf_state().await.unwrap();
    assert_eq!(state.vendor_roles, vec![upload]);
    assert_eq!(state.latest[0].doc, "signed by acme");

    let content = PackageContent {
        sha256: "aa".into(),
        content_sha256: "bb".into(),
        content_length: 77,
    };
    let missing = store.package_content_set(&content).await;
    assert!(
        matches!(&missing, Err(StoreError::NotFound(m)) if m.contains("aa")),
        "{missing:?}"
    );
    for sha256 in ["aa", "cc"] {
        store
            .package_put(PackageRow {
                sha256: sha256.into(),
                size: 10,
                vendor: None,
                uploaded_at: 1,
            })
            .await
            .unwrap();
    }
    store.package_content_set(&content).await.unwrap();
    assert_eq!(store.package_contents().await.unwrap(), vec![content]);
    assert_eq!(
        store.revisions().await.unwrap().tuf,
        state.revision,
        "packages bump no TUF revision"
    );
}

fn seen(interface: &str, mac: &str, address: &str) -> InterfaceSeen {
    InterfaceSeen {
        interface: interface.into(),
        mac: mac.into(),
        address: address.into(),
    }
}

/// The network map of interfaces (migration 0008): a DHCP change adds a row beside the old
/// one, which stays as history; a set reported again moves last_seen only; an unknown terminal
/// writes nothing; deleting the terminal takes its rows.
async fn the_interface_map_keeps_every_address_a_terminal_held(fixture: &Fixture) {
    let store = &*fixture.store;
    enrol_all(store, UNKNOWN_GROUP, &["t1", "t2"]).await;
    assert!(store.interfaces("t1").await.unwrap().is_empty());
    let mac = "52:54:00:12:34:56";
    store
        .record_interfaces(
            "t1",
            100,
            &[
                seen("eth0", mac, "192.0.2.10"),
                seen("eth0", mac, "2001:db8::10"),
                seen("wlan0", "", ""),
            ],
        )
        .await
        .unwrap();
    store
        .record_interfaces("t2", 100, &[seen("ppp0", "", "198.51.100.7")])
        .await
        .unwrap();
    let rows = store.interfaces("t1").await.unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(
        rows.iter()
            .all(|r| r.current && r.first_seen == 100 && r.last_seen == 100)
    );

    // DHCP gives eth0 another IPv4 address: a new row, the old one kept as history.
    store
        .record_interfaces(
            "t1",
            200,
            &[
                seen("eth0", mac, "192.0.2.99"),
                seen("eth0", mac, "2001:db8::10"),
                seen("wlan0", "", ""),
            ],
        )
        .await
        .unwrap();
    let rows = store.interfaces("t1").await.unwrap();
    let summary: Vec<(&str, &str, i64, i64, bool)> = rows
        .iter()
        .map(|r| {
            (
                r.interface.as_str(),
                r.address.as_str(),
                r.first_seen,
                r.last_seen,
                r.current,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("eth0", "192.0.2.99", 200, 200, true),
            ("eth0", "2001:db8::10", 100, 200, true),
            ("wlan0", "", 100, 200, true),
            ("eth0", "192.0.2.10", 100, 100, false),
        ]
    );
    assert!(rows.iter().all(|r| r.interface != "eth0" || r.mac == mac));
    // The old address comes back: the same row again, current, first seen unchanged.
    store
        .record_interfaces("t1", 300, &[seen("eth0", mac, "192.0.2.10")])
        .await
        .unwrap();
    let rows = store.interfaces("t1").await.unwrap();
    assert_eq!(rows.len(), 4);
    let current: Vec<_> = rows.iter().filter(|r| r.current).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(
        (
            current[0].address.as_str(),
            current[0].first_seen,
            current[0].last_seen
        ),
        ("192.0.2.10", 100, 300)
    );
    // Other terminals are untouched; an unknown one writes nothing.
    assert_eq!(store.interfaces("t2").await.unwrap().len(), 1);
    store
        .record_interfaces("nobody", 300, &[seen("eth0", "", "192.0.2.1")])
        .await
        .unwrap();
    assert!(store.interfaces("nobody").await.unwrap().is_empty());
    assert!(store.terminal_delete("t1").await.unwrap());
    assert!(store.interfaces("t1").await.unwrap().is_empty());
    assert_eq!(store.interfaces("t2").await.unwrap().len(), 1);
}

// --- site servers -------------------------------------------------------------------------

async fn sites_enrol_with_site_tokens_and_relay_only_for_terminals_they_served(fixture: &Fixture) {
    let store = &fixture.store;
    store
        .site_token_insert(enrol_token("site-tok", 5, 10_000))
        .await
        .unwrap();
    store
        .enrol_token_insert(enrol_token("term-tok", 5, 10_000))
        .await
        .unwrap();
    // A terminal token enrols no site, and a site token no terminal.
    assert!(matches!(
        store
            .site_enrol("term-tok", 100, "s1", "https://s1", "c1")
            .await,
        Err(EnrolError::TokenUnknown)
    ));
    assert!(matches!(
        store
            .enrol("site-tok", 100, new_terminal("t0", UNKNOWN_GROUP))
            .await,
        Err(EnrolError::TokenUnknown)
    ));
    let site = store
        .site_enrol("site-tok", 100, "s1", "https://s1", "c1")
        .await
        .unwrap();
    assert_eq!(
        (site.id.as_str(), site.relay_applied, site.terminals),
        ("s1", 0, Some(0))
    );
    // One site per token.
    assert!(matches!(
        store
            .site_enrol("site-tok", 100, "s2", "https://s2", "c2")
            .await,
        Err(EnrolError::TokenUsedUp)
    ));
    let mut through_s1 = new_terminal("t1", UNKNOWN_GROUP);
    through_s1.site = Some("s1".into());
    store.enrol("term-tok", 100, through_s1).await.unwrap();
    store
        .enrol("term-tok", 100, new_terminal("t2", UNKNOWN_GROUP))
        .await
        .unwrap();
    assert_eq!(store.site_serves("s1", "t1").await.unwrap(), Some(true));
    assert_eq!(store.site_serves("s1", "t2").await.unwrap(), Some(false));
    assert_eq!(store.site_serves("s1", "nobody").await.unwrap(), None);
    // The same for a relay batch's terminals at once: unknown ones are left out.
    assert_eq!(
        store
            .site_serves_many("s1", &["t1", "t2", "nobody"])
            .await
            .unwrap(),
        std::collections::HashMap::from([("t1".to_owned(), true), ("t2".to_owned(), false)])
    );
    assert!(store.site_serves_many("s1", &[]).await.unwrap().is_empty());
    // Applied seqs only rise.
    store.site_relay_advance("s1", 10).await.unwrap();
    store.site_relay_advance("s1", 7).await.unwrap();
    store
        .site_contact("s1", 200, Some(r#"{"queue_depth":3}"#))
        .await
        .unwrap();
    store.site_contact("s1", 201, None).await.unwrap();
    let site = store.site("s1").await.unwrap().unwrap();
    assert_eq!(site.relay_applied, 10);
    assert_eq!(site.last_contact, Some(201));
    assert_eq!(site.status.as_deref(), Some(r#"{"queue_depth":3}"#));
    // Counted where sites are listed, not where one is read (at each of its requests).
    assert_eq!(site.terminals, None);
    assert_eq!(store.sites().await.unwrap()[0].terminals, Some(1));
    // A terminal adopted by another site (it failed over there) may be relayed by both.
    store
        .site_token_insert(enrol_token("site-tok-2", 1, 10_000))
        .await
        .unwrap();
    store
        .site_enrol("site-tok-2", 100, "s2", "https://s2", "c2")
        .await
        .unwrap();
    let mut moved = new_terminal("t1", UNKNOWN_GROUP);
    moved.site = Some("s2".into());
    store.terminal_adopt(moved).await.unwrap();
    assert_eq!(store.site_serves("s2", "t1").await.unwrap(), Some(true));
    assert_eq!(store.site_serves("s1", "t1").await.unwrap(), Some(true));
    let sites = store.sites().await.unwrap();
    assert_eq!(
        sites
            .iter()
            .map(|s| (s.id.as_str(), s.terminals))
            .collect::<Vec<_>>(),
        [("s1", Some(0)), ("s2", Some(1))]
    );
    // Enrolling again (a site that lost its data) restarts its queue's seqs.
    store
        .site_token_insert(enrol_token("site-tok-3", 1, 10_000))
        .await
        .unwrap();
    let again = store
        .site_enrol("site-tok-3", 300, "s1", "https://s1b", "c3")
        .await
        .unwrap();
    assert_eq!((again.relay_applied, again.cert_sha256.as_str()), (0, "c3"));

    // Renewal: from the current certificate, which becomes the previous one; once more from
    // the previous one (a lost answer), which stays; from nothing else.
    assert!(
        !store.site_renew("s1", "c1", "c4").await.unwrap(),
        "c1 was s1's before it enrolled again"
    );
    assert!(!store.site_renew("nowhere", "c3", "c4").await.unwrap());
    assert!(!store.site_request_renewal("nowhere", 500).await.unwrap());
    assert!(store.site_request_renewal("s1", 500).await.unwrap());
    assert!(store.site_request_renewal("s1", 600).await.unwrap());
    let asked = store.site("s1").await.unwrap().unwrap();
    assert_eq!(
        asked.renew_requested_at,
        Some(500),
        "the first request's time is kept"
    );
    assert!(store.site_renew("s1", "c3", "c4").await.unwrap());
    assert_eq!(
        store.site("s1").await.unwrap().unwrap().renew_requested_at,
        None,
        "a renewal answers the request"
    );
    let renewed = store.site("s1").await.unwrap().unwrap();
    assert_eq!(
        (
            renewed.cert_sha256.as_str(),
            renewed.previous_cert_sha256.as_deref()
        ),
        ("c4", Some("c3"))
    );
    assert!(
        store.site_renew("s1", "c3", "c5").await.unwrap(),
        "again from the previous one"
    );
    let renewed = store.site("s1").await.unwrap().unwrap();
    assert_eq!(
        (
            renewed.cert_sha256.as_str(),
            renewed.previous_cert_sha256.as_deref()
        ),
        ("c5", Some("c3"))
    );
    assert!(
        !store.site_renew("s1", "c4", "c6").await.unwrap(),
        "c4 never reached the site"
    );
    assert!(store.site_renew("s1", "c5", "c6").await.unwrap());
    assert!(
        !store.site_renew("s1", "c3", "c7").await.unwrap(),
        "two renewals ago"
    );
    // Enrolling again forgets the previous certificate.
    store
        .site_token_insert(enrol_token("site-tok-4", 1, 10_000))
        .await
        .unwrap();
    store
        .site_enrol("site-tok-4", 400, "s1", "https://s1b", "c8")
        .await
        .unwrap();
    assert_eq!(
        store
            .site("s1")
            .await
            .unwrap()
            .unwrap()
            .previous_cert_sha256,
        None
    );
    assert!(!store.site_renew("s1", "c6", "c9").await.unwrap());
}

async fn a_site_replicates_catalog_and_groups_at_the_centers_revisions(fixture: &Fixture) {
    let store = &fixture.store;
    let registry = Registry {
        threats: vec![ThreatOwnerRow {
            threat: "virus-a".into(),
            vendor: "acme".into(),
            status: Approval::Approved,
            declared_at: 7,
        }],
        vendors: vec![VendorApprovalRow {
            vendor: "acme".into(),
            status: Approval::Pending,
            first_published_at: 6,
        }],
    };
    store
        .replicate_catalog(42, &[feed("acme", 1)], &registry)
        .await
        .unwrap();
    let (revision, feeds, stored) = store.catalog_inputs().await.unwrap();
    assert_eq!(
        (revision, feeds, stored),
        (42, vec![feed("acme", 1)], registry)
    );
    // Replaced whole.
    store
        .replicate_catalog(43, &[feed("beta", 2)], &Registry::default())
        .await
        .unwrap();
    let (revision, feeds, stored) = store.catalog_inputs().await.unwrap();
    assert_eq!(
        (revision, feeds, stored),
        (43, vec![feed("beta", 2)], Registry::default())
    );
    // Groups and rules; a group still holding terminals is kept until they move.
    store
        .replicate_groups(9, &[group("kiosk"), group("office")], &[rule("kiosk", "k")])
        .await
        .unwrap();
    store
        .enrol_token_insert(enrol_token("tok", 5, 10_000))
        .await
        .unwrap();
    store
        .enrol("tok", 100, new_terminal("t1", "office"))
        .await
        .unwrap();
    store
        .replicate_groups(10, &[group("kiosk")], &[])
        .await
        .unwrap();
    let ids: Vec<String> = store
        .groups()
        .await
        .unwrap()
        .into_iter()
        .map(|(g, _)| g.id)
        .collect();
    assert_eq!(ids, ["kiosk", "office", UNKNOWN_GROUP]);
    assert!(store.rules().await.unwrap().is_empty());
    assert_eq!(store.revisions().await.unwrap().groups, 10);
}

async fn a_sites_queue_keeps_order_one_checkin_per_terminal_and_deletes_through_an_ack(
    fixture: &Fixture,
) {
    let store = &fixture.store;
    let item = |terminal: &str, kind: &str, body: &str| QueueItem {
        terminal: terminal.into(),
        kind: kind.into(),
        body: body.into(),
        created_at: 50,
    };
    store
        .queue_push(&[item("t1", "checkin", "c1"), item("t1", "events", "e1")])
        .await
        .unwrap();
    store
        .queue_push(&[item("t2", "checkin", "d1")])
        .await
        .unwrap();
    // A newer check-in of t1 replaces its waiting one, at the end of the queue.
    store
        .queue_push(&[item("t1", "checkin", "c2"), item("t1", "events", "e2")])
        .await
        .unwrap();
    let queued = store.queue_peek(10).await.unwrap();
    let bodies: Vec<&str> = queued.iter().map(|q| q.item.body.as_str()).collect();
    assert_eq!(bodies, ["e1", "d1", "c2", "e2"]);
    assert!(queued.windows(2).all(|w| w[0].seq < w[1].seq));
    let stats = store.queue_stats().await.unwrap();
    assert_eq!((stats.depth, stats.oldest_at), (4, Some(50)));
    assert_eq!(store.queue_delete_through(queued[1].seq).await.unwrap(), 2);
    let rest: Vec<String> = store
        .queue_peek(10)
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.item.body)
        .collect();
    assert_eq!(rest, ["c2", "e2"]);
    store.queue_delete_through(u64::MAX >> 1).await.unwrap();
    assert_eq!(store.queue_stats().await.unwrap().depth, 0);

    // Many items in one push (written several rows a statement): still in order, and a
    // terminal's later check-in replaces its earlier one of the same push.
    let many: Vec<QueueItem> = (0..150)
        .map(|i| match i % 3 {
            0 => item(&format!("m{}", i % 7), "checkin", &format!("c{i}")),
            _ => item("m", "events", &format!("e{i}")),
        })
        .collect();
    store.queue_push(&many).await.unwrap();
    let expected: Vec<&str> = many
        .iter()
        .enumerate()
        .filter(|(i, it)| {
            it.kind != "checkin"
                || !many[i + 1..]
                    .iter()
                    .any(|later| later.kind == "checkin" && later.terminal == it.terminal)
        })
        .map(|(_, it)| it.body.as_str())
        .collect();
    let queued = store.queue_peek(500).await.unwrap();
    let bodies: Vec<&str> = queued.iter().map(|q| q.item.body.as_str()).collect();
    assert_eq!(bodies, expected);
    assert_eq!(bodies.len(), 100 + 7);
    store.queue_delete_through(u64::MAX >> 1).await.unwrap();
}

async fn a_sites_writes_queue_their_relay_items_in_the_same_transaction(fixture: &Fixture) {
    let store = &*fixture.store;
    enrol_all(store, UNKNOWN_GROUP, &["t1", "t2"]).await;
    let item = |terminal: &str, kind: &str, body: &str| QueueItem {
        terminal: terminal.into(),
        kind: kind.into(),
        body: body.into(),
        created_at: 60,
    };
    // Check-ins: each write's relay item is queued with the batch, in the batch's order, a
    // later check-in of a terminal replacing its waiting one.
    let mut first = checkin("t1", 100, "10.0.0.1", plan("p1", "none"));
    first.relay = Some(item("t1", "checkin", "c1"));
    let mut second = checkin("t2", 100, "10.0.0.2", plan("p2", "none"));
    second.relay = Some(item("t2", "checkin", "d1"));
    let mut third = checkin("t1", 101, "10.0.0.1", plan("p1", "none"));
    third.relay = Some(item("t1", "checkin", "c2"));
    store
        .record_checkins(&[first, second, third])
        .await
        .unwrap();
    let bodies = |queued: Vec<QueuedItem>| -> Vec<String> {
        queued.into_iter().map(|q| q.item.body).collect()
    };
    assert_eq!(bodies(store.queue_peek(10).await.unwrap()), ["d1", "c2"]);

    // Event batches of several terminals in one call: each batch stored and its item queued;
    // an unknown terminal's batch fails alone and queues nothing.
    let outcomes = store
        .events_append_many(&[
            EventsWrite {
                rows: vec![event("t1", 1, "x"), event("t1", 2, "x")],
                relay: Some(item("t1", "events", "e1")),
            },
            EventsWrite {
                rows: vec![event("ghost", 1, "x")],
                relay: Some(item("ghost", "events", "g1")),
            },
            EventsWrite {
                rows: vec![event("t2", 1, "x")],
                relay: Some(item("t2", "events", "f1")),
            },
            EventsWrite {
                rows: vec![event("t1", 2, "x"), event("t2", 3, "x")],
                relay: None,
            },
        ])
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 4);
    let first = outcomes[0].as_ref().unwrap();
    assert_eq!(
        (first.accepted, first.duplicates, first.last_seq),
        (2, 0, 2)
    );
    assert!(
        matches!(outcomes[1], Err(StoreError::NotFound(_))),
        "{:?}",
        outcomes[1]
    );
    let third = outcomes[2].as_ref().unwrap();
    assert_eq!((third.accepted, third.last_seq), (1, 1));
    assert!(
        matches!(outcomes[3], Err(StoreError::Conflict(_))),
        "{:?}",
        outcomes[3]
    );
    assert_eq!(
        bodies(store.queue_peek(10).await.unwrap()),
        ["d1", "c2", "e1", "f1"]
    );
    assert_eq!(store.events_count("t1").await.unwrap(), 2);
    assert_eq!(store.events_count("t2").await.unwrap(), 1);

    // Two batches of one terminal in one call: an event both carry counts as stored for the
    // first, as if they were appended one after the other; both see the same last seq.
    let outcomes = store
        .events_append_many(&[
            EventsWrite {
                rows: vec![event("t2", 2, "x"), event("t2", 3, "x")],
                relay: None,
            },
            EventsWrite {
                rows: vec![event("t2", 3, "x"), event("t2", 4, "x")],
                relay: None,
            },
        ])
        .await
        .unwrap();
    let counts: Vec<(u64, u64, u64)> = outcomes
        .iter()
        .map(|o| {
            let o = o.as_ref().unwrap();
            (o.accepted, o.duplicates, o.last_seq)
        })
        .collect();
    assert_eq!(counts, [(2, 0, 4), (1, 1, 4)]);
    assert_eq!(store.events_count("t2").await.unwrap(), 4);
}

// --- alerts (migration 0011) ---------------------------------------------------------------

fn alert(channel: &str, subject: &str, at: i64) -> NewAlertDelivery {
    NewAlertDelivery {
        channel: channel.to_owned(),
        kind: "detection".to_owned(),
        subject: subject.to_owned(),
        text: format!("detection on {subject}"),
        payload: format!(r#"{{"text":"detection on {subject}"}}"#),
        created_at: at,
        recipient: None,
    }
}

async fn an_alert_window_is_written_only_over_the_version_read(fixture: &Fixture) {
    let store = &*fixture.store;
    let other = fixture.another().await;
    assert_eq!(store.alert_window("outbreak").await.unwrap(), None);
    // Two processes create the window at once: one wins, with its deliveries; the other
    // writes nothing, its summary included.
    let (summary_a, summary_b) = (
        [alert("hook", "summary a", 10)],
        [alert("hook", "summary b", 10)],
    );
    let (a, b) = tokio::join!(
        store.alert_window_replace("outbreak", 0, "a", &summary_a),
        other.alert_window_replace("outbreak", 0, "b", &summary_b),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a != b, "exactly one creates the window ({a}, {b})");
    let window = other.alert_window("outbreak").await.unwrap().unwrap();
    assert_eq!(window.version, 1);
    assert_eq!(window.state, if a { "a" } else { "b" });
    let queued = store.alert_deliveries(None, 0).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(
        queued[0].delivery.subject,
        if a { "summary a" } else { "summary b" }
    );
    // A write over the version read moves it; one over an older version is refused.
    assert!(
        store
            .alert_window_replace("outbreak", 1, "digest sent", &[alert("hook", "digest", 20)])
            .await
            .unwrap()
    );
    assert!(
        !other
            .alert_window_replace("outbreak", 1, "digest again", &[alert("hook", "again", 20)])
            .await
            .unwrap()
    );
    store
        .alert_window_replace("calm", 0, "{}", &[])
        .await
        .unwrap();
    let windows = other.alert_windows().await.unwrap();
    let listed: Vec<(&str, u64, &str)> = windows
        .iter()
        .map(|w| (w.rule.as_str(), w.version, w.state.as_str()))
        .collect();
    assert_eq!(listed, [("calm", 1, "{}"), ("outbreak", 2, "digest sent")]);
    let subjects: Vec<String> = store
        .alert_deliveries(None, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.delivery.subject)
        .collect();
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert_eq!(subjects[0], "digest");
}

async fn alert_deliveries_are_claimed_once_retried_and_recorded(fixture: &Fixture) {
    let store = &*fixture.store;
    let other = fixture.another().await;
    store
        .alert_enqueue(&[alert("hook", "t1", 100), alert("mail", "t1", 100)])
        .await
        .unwrap();
    store
        .alert_enqueue(&[alert("hook", "t2", 200)])
        .await
        .unwrap();
    // Not due yet before its time.
    assert!(store.alert_claim(99, 160, 10).await.unwrap().is_empty());
    // Two processes claiming at once take each due row once between them.
    let (a, b) = tokio::join!(
        store.alert_claim(150, 160, 10),
        other.alert_claim(150, 160, 10)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut claimed: Vec<u64> = a.iter().chain(&b).map(|row| row.id).collect();
    claimed.sort();
    assert_eq!(claimed.len(), 2, "{a:?} {b:?}");
    claimed.dedup();
    assert_eq!(claimed.len(), 2);
    let first = a
        .iter()
        .chain(&b)
        .find(|row| row.delivery.channel == "hook")
        .unwrap();
    assert_eq!(first.attempts, 1);
    assert_eq!(first.next_attempt_at, 160);
    assert_eq!(first.delivery.subject, "t1");
    // Leased: not claimed again until the lease ends.
    assert!(store.alert_claim(155, 170, 10).await.unwrap().is_empty());
    store
        .alert_attempted(
            first.id,
            151,
            &AlertAttempt::Retry {
                next_attempt_at: 180,
                error: "connection refused".into(),
            },
        )
        .await
        .unwrap();
    let mail = a
        .iter()
        .chain(&b)
        .find(|row| row.delivery.channel == "mail")
        .unwrap();
    store
        .alert_attempted(mail.id, 152, &AlertAttempt::Delivered)
        .await
        .unwrap();
    // At 200 the retried one and the third are due; the delivered one never again.
    let again = store.alert_claim(200, 230, 10).await.unwrap();
    let ids: Vec<u64> = again.iter().map(|row| row.id).collect();
    assert_eq!(ids.len(), 2, "{again:?}");
    assert!(ids.contains(&first.id) && !ids.contains(&mail.id));
    let retried = again.iter().find(|row| row.id == first.id).unwrap();
    assert_eq!(retried.attempts, 2);
    assert_eq!(retried.last_error.as_deref(), Some("connection refused"));
    store
        .alert_attempted(
            first.id,
            201,
            &AlertAttempt::GaveUp {
                error: "still refused".into(),
            },
        )
        .await
        .unwrap();
    assert!(store.alert_claim(10_000, 10_001, 10).await.unwrap().len() == 1);
    // The record, newest first, paged.
    let all = store.alert_deliveries(None, 0).await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    let gave_up = all.iter().find(|row| row.id == first.id).unwrap();
    assert_eq!(gave_up.failed_at, Some(201));
    assert_eq!(gave_up.last_error.as_deref(), Some("still refused"));
    assert_eq!(
        all.iter()
            .find(|row| row.id == mail.id)
            .unwrap()
            .delivered_at,
        Some(152)
    );
    let page = store.alert_deliveries(Some(all[0].id), 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].id, all[1].id);
    // An unknown delivery is named.
    let err = store
        .alert_attempted(9_999_999, 1, &AlertAttempt::Delivered)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("9999999"), "{err}");
}

async fn feed_sources_keep_their_validators_until_replaced(fixture: &Fixture) {
    let store = &*fixture.store;
    let source = |url: &str| FeedSourceRow {
        vendor: "maker-a".into(),
        url: url.into(),
        interval_secs: 300,
        registered_at: 10,
        etag: None,
        last_modified: None,
        last_polled_at: None,
        last_status: None,
    };
    store
        .feed_source_put(&source("https://a.example/feed.json"))
        .await
        .unwrap();
    let polled = FeedPolled {
        at: 20,
        validators: Some((Some("\"v1\""), Some("Sun, 06 Dec 2026 09:00:00 GMT"))),
        status: "applied",
    };
    assert!(
        store
            .feed_source_polled("maker-a", "https://a.example/feed.json", &polled)
            .await
            .unwrap()
    );
    // A 304 keeps the validators.
    let unchanged = FeedPolled {
        at: 30,
        validators: None,
        status: "not modified",
    };
    assert!(
        store
            .feed_source_polled("maker-a", "https://a.example/feed.json", &unchanged)
            .await
            .unwrap()
    );
    let rows = store.feed_sources().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].etag.as_deref(), Some("\"v1\""));
    assert_eq!(rows[0].last_polled_at, Some(30));
    assert_eq!(rows[0].last_status.as_deref(), Some("not modified"));
    // A poll of a URL replaced meanwhile records nothing; the new URL starts over.
    store
        .feed_source_put(&source("https://b.example/feed.json"))
        .await
        .unwrap();
    assert!(
        !store
            .feed_source_polled("maker-a", "https://a.example/feed.json", &polled)
            .await
            .unwrap()
    );
    let rows = fixture.another().await.feed_sources().await.unwrap();
    assert_eq!(rows[0].url, "https://b.example/feed.json");
    assert_eq!(
        (rows[0].etag.as_ref(), rows[0].last_polled_at),
        (None, None)
    );
    assert!(store.feed_source_delete("maker-a").await.unwrap());
    assert!(!store.feed_source_delete("maker-a").await.unwrap());
    assert!(store.feed_sources().await.unwrap().is_empty());
}

async fn messages_reach_their_audience_and_keep_the_sites_thread(fixture: &Fixture) {
    let store = &*fixture.store;
    store.group_put(group("office")).await.unwrap();
    enrol_all(store, "office", &["m1"]).await;
    enrol_all(store, UNKNOWN_GROUP, &["m2"]).await;
    let message = |audience: &str, target: &str, body: &str| NewMessage {
        at: 100,
        sender: "operator".into(),
        audience: audience.into(),
        target: target.into(),
        body: body.into(),
        reply_to: None,
    };
    let all = store
        .message_insert(&message("all", "", "to all"))
        .await
        .unwrap();
    store
        .message_insert(&message("group", "office", "to office"))
        .await
        .unwrap();
    let to_m2 = store
        .message_insert(&message("terminal", "m2", "to m2"))
        .await
        .unwrap();
    assert!(to_m2.id > all.id);
    let mut answer = message("center", "m2", "done");
    answer.sender = "terminal:m2".into();
    answer.reply_to = Some(to_m2.id);
    let answer = store.message_insert(&answer).await.unwrap();
    assert_eq!(answer.message.reply_to, Some(to_m2.id));
    let bodies = |rows: Vec<herd_store::MessageRow>| -> Vec<String> {
        rows.into_iter().map(|r| r.message.body).collect()
    };
    let inbox = |terminal, group, after| MessageQuery {
        after_id: after,
        inbox_of: Some((terminal, group)),
        ..MessageQuery::default()
    };
    assert_eq!(
        bodies(store.messages(&inbox("m1", "office", 0)).await.unwrap()),
        ["to all", "to office"]
    );
    assert_eq!(
        bodies(
            store
                .messages(&inbox("m2", UNKNOWN_GROUP, 0))
                .await
                .unwrap()
        ),
        ["to all", "to m2"]
    );
    assert_eq!(
        bodies(
            store
                .messages(&inbox("m2", UNKNOWN_GROUP, all.id))
                .await
                .unwrap()
        ),
        ["to m2"]
    );
    let thread = MessageQuery {
        terminal: Some("m2"),
        ..MessageQuery::default()
    };
    assert_eq!(
        bodies(fixture.another().await.messages(&thread).await.unwrap()),
        ["to m2", "done"]
    );
    let everything = store.messages(&MessageQuery::default()).await.unwrap();
    assert_eq!(everything.len(), 4);
    // Terminals enrolled directly have no site: no site's thread holds them.
    let site = MessageQuery {
        site: Some("osaka"),
        ..MessageQuery::default()
    };
    assert!(store.messages(&site).await.unwrap().is_empty());
    let page = MessageQuery {
        limit: 1,
        ..MessageQuery::default()
    };
    assert_eq!(bodies(store.messages(&page).await.unwrap()), ["to all"]);
}

// --- Herd's own signature set (migration 0010) ----------------------------------------------

fn herd_signature(sha: char, size: u64, source: &str) -> herd_store::HerdSignatureRow {
    herd_store::HerdSignatureRow {
        sha256: std::iter::repeat_n(sha, 64).collect(),
        size,
        name: format!("Herd.Immunity.{sha}"),
        threat: String::new(),
        source: source.into(),
        first_terminal: "t1".into(),
        first_signature: "Vendor.Sig".into(),
        created_at: 1_000 + size as i64,
    }
}

async fn herd_signatures_are_added_once_listed_by_digest_and_removed(fixture: &Fixture) {
    let store = &fixture.store;
    assert!(store.herd_signatures().await.unwrap().is_empty());
    let b = herd_signature('b', 20, "rule:cross-vendor");
    let a = herd_signature('a', 10, "operator");
    assert!(store.herd_signature_add(&b).await.unwrap());
    assert!(store.herd_signature_add(&a).await.unwrap());
    // The first verdict stays: a second add of the same digest changes nothing.
    let again = herd_signature('a', 99, "rule:suspect-terminals");
    assert!(!store.herd_signature_add(&again).await.unwrap());
    let other = fixture.another().await;
    assert_eq!(
        other.herd_signatures().await.unwrap(),
        vec![a.clone(), b.clone()]
    );
    assert!(store.herd_signature_remove(&a.sha256).await.unwrap());
    assert!(!store.herd_signature_remove(&a.sha256).await.unwrap());
    assert_eq!(store.herd_signatures().await.unwrap(), vec![b]);
}

// --- Analysts' body signatures in Herd's set (migration 0022) -------------------------------

fn body_signature(name: &str, format: &str) -> herd_store::HerdBodySignatureRow {
    herd_store::HerdBodySignatureRow {
        name: name.into(),
        format: format.into(),
        body: format!("{name}:0:*:6162636465666768"),
        added_by: "analyst".into(),
        added_at: 1_000,
    }
}

async fn body_signatures_are_added_all_or_none_listed_by_format_and_removed(fixture: &Fixture) {
    let store = &fixture.store;
    assert!(store.herd_body_signatures().await.unwrap().is_empty());
    let b = body_signature("Herd.Immunity.B", "ndb");
    let a = body_signature("Herd.Immunity.A", "ndb");
    let l = body_signature("Herd.Immunity.0", "ldb");
    store
        .herd_body_signatures_add(&[b.clone(), a.clone(), l.clone()])
        .await
        .unwrap();
    // One name already stored refuses the whole batch: the new one before it is not kept.
    let c = body_signature("Herd.Immunity.C", "ndb");
    let taken = body_signature("Herd.Immunity.A", "ldb");
    expect_conflict(
        store.herd_body_signatures_add(&[c.clone(), taken]).await,
        &["Herd.Immunity.A"],
    );
    // So does a name given twice in one batch.
    expect_conflict(
        store
            .herd_body_signatures_add(&[c.clone(), c.clone()])
            .await,
        &["Herd.Immunity.C"],
    );
    let other = fixture.another().await;
    assert_eq!(
        other.herd_body_signatures().await.unwrap(),
        vec![l.clone(), a.clone(), b.clone()]
    );
    assert!(store.herd_body_signature_remove(&a.name).await.unwrap());
    assert!(!store.herd_body_signature_remove(&a.name).await.unwrap());
    assert_eq!(store.herd_body_signatures().await.unwrap(), vec![l, b]);
}

// --- Herd's own threats (migration 0015) ----------------------------------------------------

/// A stand-in for the center's document builder: one line per signature and threat.
fn herd_feed_of(
    signatures: &[herd_store::HerdSignatureRow],
    threats: &[herd_store::HerdThreatRow],
) -> (String, String) {
    let mut text = String::new();
    for s in signatures {
        text.push_str(&format!("{} {}\n", s.sha256, s.threat));
    }
    for t in threats {
        text.push_str(&format!(
            "{} {} {} {}\n",
            t.id, t.name, t.danger, t.first_seen
        ));
    }
    let sha = format!(
        "{:064x}",
        text.len() as u128 * 7919 + text.bytes().map(u128::from).sum::<u128>()
    );
    (text, sha)
}

async fn herd_threats_and_their_feed_follow_the_set(fixture: &Fixture) {
    let store = &fixture.store;
    assert!(store.herd_threats().await.unwrap().is_empty());
    let threat = |name: &str, danger: &str, first_seen: i64| herd_store::HerdThreatRow {
        id: "worm-x".into(),
        name: name.into(),
        danger: danger.into(),
        first_seen,
    };
    store
        .herd_threat_put(&threat("Worm X", "high", 100), false)
        .await
        .unwrap();
    // Without `replace` a known threat stays as it is; with it, the name and danger change
    // and the earlier first sighting stays.
    store
        .herd_threat_put(&threat("Other", "low", 50), false)
        .await
        .unwrap();
    assert_eq!(
        store.herd_threats().await.unwrap(),
        vec![threat("Worm X", "high", 100)]
    );
    store
        .herd_threat_put(&threat("Worm X2", "critical", 200), true)
        .await
        .unwrap();
    assert_eq!(
        store.herd_threats().await.unwrap(),
        vec![threat("Worm X2", "critical", 100)]
    );
    store
        .herd_threat_put(&threat("Worm X2", "critical", 40), true)
        .await
        .unwrap();
    assert_eq!(store.herd_threats().await.unwrap()[0].first_seen, 40);

    let mut signature = herd_signature('d', 30, "operator");
    signature.threat = "worm-x".into();
    assert!(store.herd_signature_add(&signature).await.unwrap());
    let (before, _, _) = store.catalog_inputs().await.unwrap();
    let revision = store.herd_feed_rebuild(&herd_feed_of, 500).await.unwrap();
    assert_eq!(
        revision,
        Some(before + 1),
        "a new document bumps the catalog revision"
    );
    // The same rows give the same document: nothing is written.
    assert_eq!(
        store.herd_feed_rebuild(&herd_feed_of, 600).await.unwrap(),
        None
    );
    let other = fixture.another().await;
    let (after, feeds, _) = other.catalog_inputs().await.unwrap();
    assert_eq!(after, before + 1);
    let feed = feeds
        .iter()
        .find(|f| f.vendor == herd_proto::merge::HERD_FEED_VENDOR)
        .expect("Herd's threats are stored among the feeds");
    let (text, sha) = herd_feed_of(&[signature.clone()], &store.herd_threats().await.unwrap());
    assert_eq!(
        (feed.doc.as_str(), feed.sha256.as_str(), feed.published_at),
        (text.as_str(), sha.as_str(), 500)
    );
    // A removed file changes the document again.
    assert!(
        store
            .herd_signature_remove(&signature.sha256)
            .await
            .unwrap()
    );
    assert_eq!(
        store.herd_feed_rebuild(&herd_feed_of, 700).await.unwrap(),
        Some(before + 2)
    );
}

async fn suspects_are_counted_once_per_terminal(fixture: &Fixture) {
    let store = &fixture.store;
    let sha: String = "c".repeat(64);
    assert_eq!(
        store
            .herd_suspect_record(&sha, "t1", 5, "Suspicious.X", 1)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .herd_suspect_record(&sha, "t1", 5, "Suspicious.X", 2)
            .await
            .unwrap(),
        1,
        "the same terminal again"
    );
    assert_eq!(
        store
            .herd_suspect_record(&sha, "t2", 5, "Suspicious.X", 3)
            .await
            .unwrap(),
        2
    );
    let other: String = "d".repeat(64);
    assert_eq!(
        store
            .herd_suspect_record(&other, "t2", 5, "Suspicious.X", 3)
            .await
            .unwrap(),
        1
    );
}

async fn file_verdicts_keep_the_latest_per_file(fixture: &Fixture) {
    let store = &*fixture.store;
    let verdict = |sha: char, verdict: &str, by: &str, at| FileVerdictRow {
        sha256: sha.to_string().repeat(64),
        verdict: verdict.into(),
        judged_by: by.into(),
        judged_at: at,
    };
    assert!(store.file_verdicts().await.unwrap().is_empty());
    store
        .file_verdict_record(&verdict('b', "malicious", "analyst", 10))
        .await
        .unwrap();
    store
        .file_verdict_record(&verdict('a', "malicious", "operator", 11))
        .await
        .unwrap();
    // A later verdict on the same file replaces the earlier one.
    store
        .file_verdict_record(&verdict('b', "benign", "operator", 12))
        .await
        .unwrap();
    assert_eq!(
        store.file_verdicts().await.unwrap(),
        vec![
            verdict('a', "malicious", "operator", 11),
            verdict('b', "benign", "operator", 12)
        ]
    );
    // Only the two verdicts are stored (the table's CHECK).
    assert!(
        store
            .file_verdict_record(&verdict('c', "maybe", "operator", 13))
            .await
            .is_err()
    );
}

async fn console_sessions_links_search_and_fleet_counts(fixture: &Fixture) {
    let store = &*fixture.store;
    // A viewer token is stored and read back with its role (the migration widened the CHECK).
    store
        .api_token_insert(ApiTokenRow {
            hash: "viewer-hash".into(),
            role: Role::Viewer,
            vendor: None,
            label: "auditor".into(),
            created_at: 1,
            expires_at: 10_000,
        })
        .await
        .unwrap();
    assert_eq!(
        store
            .api_token_find("viewer-hash")
            .await
            .unwrap()
            .unwrap()
            .role,
        Role::Viewer
    );

    // Sessions: inserted, found, touched forward only, expired by idleness, deleted.
    let session = |hash: &str, last_seen| ConsoleSessionRow {
        hash: hash.into(),
        token_hash: "viewer-hash".into(),
        label: "auditor".into(),
        csrf: format!("csrf-{hash}"),
        created_at: 100,
        last_seen,
    };
    store
        .console_session_insert(&session("s1", 100))
        .await
        .unwrap();
    store
        .console_session_insert(&session("s2", 100))
        .await
        .unwrap();
    assert!(
        store
            .console_session_insert(&session("s1", 100))
            .await
            .is_err()
    );
    assert_eq!(
        store.console_session_find("s1").await.unwrap(),
        Some(session("s1", 100))
    );
    store.console_session_touch("s1", 500).await.unwrap();
    store.console_session_touch("s1", 400).await.unwrap();
    assert_eq!(
        store
            .console_session_find("s1")
            .await
            .unwrap()
            .unwrap()
            .last_seen,
        500
    );
    assert_eq!(store.console_sessions_expire(300).await.unwrap(), 1);
    assert_eq!(store.console_session_find("s2").await.unwrap(), None);
    assert!(store.console_session_delete("s1").await.unwrap());
    assert!(!store.console_session_delete("s1").await.unwrap());
    assert_eq!(store.console_session_find("s1").await.unwrap(), None);

    // Links: taken once, however many ask at once; expired ones and unknown ones are named.
    let link = ConsoleLinkRow {
        hash: "l1".into(),
        token_hash: "viewer-hash".into(),
        label: "auditor".into(),
        created_at: 100,
        expires_at: 700,
    };
    store.console_link_insert(&link).await.unwrap();
    store
        .console_link_insert(&ConsoleLinkRow {
            hash: "l2".into(),
            expires_at: 150,
            ..link.clone()
        })
        .await
        .unwrap();
    let takes = join_all((0..8).map(|_| store.console_link_take("l1", 200))).await;
    let taken = takes
        .iter()
        .filter(|take| matches!(take, Ok(LinkTaken::Taken(_))))
        .count();
    assert_eq!(taken, 1, "{takes:?}");
    assert!(
        takes
            .iter()
            .all(|take| matches!(take, Ok(LinkTaken::Taken(_)) | Ok(LinkTaken::Used(200))))
    );
    assert_eq!(
        store.console_link_take("l2", 200).await.unwrap(),
        LinkTaken::Expired(150)
    );
    assert_eq!(
        store.console_link_take("nope", 200).await.unwrap(),
        LinkTaken::Unknown
    );

    // Search by id or user, wildcards taken literally; and the fleet counted.
    enrol_all(
        store,
        UNKNOWN_GROUP,
        &["pc-Alpha", "pc-beta", "phone_1", "phone-2"],
    )
    .await;
    let found = |text: &str| {
        let text = text.to_owned();
        async move {
            store
                .terminals(&TerminalQuery {
                    search: Some(text),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_iter()
                .map(|row| row.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(found("ALPHA").await, ["pc-Alpha"]);
    assert_eq!(found("pc-").await, ["pc-Alpha", "pc-beta"]);
    assert_eq!(found("phone_").await, ["phone_1"], "_ is not a wildcard");
    assert_eq!(
        found("%").await,
        Vec::<String>::new(),
        "% is not a wildcard"
    );
    store
        .record_checkins(&[
            checkin("pc-Alpha", 10_000, "192.0.2.1", plan("p1", "exposed")),
            checkin("pc-beta", 10_000 - 7200, "192.0.2.2", plan("p2", "none")),
        ])
        .await
        .unwrap();
    let mut counts = store.fleet_counts(10_000).await.unwrap();
    counts.sort_by_key(|row| (row.recency, row.action.clone()));
    let summary: Vec<(Option<&str>, Recency, u64)> = counts
        .iter()
        .map(|row| (row.action.as_deref(), row.recency, row.count))
        .collect();
    assert_eq!(
        summary,
        [
            (None, Recency::Never, 2),
            (Some("exposed"), Recency::WithinHour, 1),
            (Some("none"), Recency::WithinDay, 1),
        ]
    );
    assert!(
        counts
            .iter()
            .all(|row| row.group == UNKNOWN_GROUP && row.site.is_none())
    );

    // Plan reports by the hour they arrived, by outcome; other events are not counted.
    let report = |seq, outcome: &str, received_at| EventRow {
        terminal: "pc-beta".into(),
        seq,
        at: received_at,
        kind: "plan.report".into(),
        data: format!(r#"{{"outcome":"{outcome}","plan_id":"p2","steps":[]}}"#),
        received_at,
    };
    store
        .events_append(&[
            report(1, "succeeded", 7200 + 5),
            report(2, "succeeded", 7200 + 3000),
            report(3, "rolled_back", 7200 + 3599),
            report(4, "succeeded", 10_800),
            report(5, "succeeded", 100),
            EventRow {
                kind: "detection".into(),
                data: r#"{"outcome":"succeeded"}"#.into(),
                ..report(6, "succeeded", 7300)
            },
        ])
        .await
        .unwrap();
    assert_eq!(
        store.plan_reports_by_hour(3600).await.unwrap(),
        [
            (7200, "rolled_back".to_owned(), 1),
            (7200, "succeeded".to_owned(), 2),
            (10_800, "succeeded".to_owned(), 1),
        ]
    );
}
// --- rollout rings (migration 0013) ---------------------------------------------------------

fn rollout(release: &str, seq: u64, started_at: i64) -> RolloutRow {
    RolloutRow {
        release: release.to_owned(),
        product: "vaccine-a".to_owned(),
        version: release.rsplit('/').next().unwrap_or_default().to_owned(),
        seq,
        phase: "rolling".to_owned(),
        ring: 0,
        ring_started: started_at,
        started_at,
        updated_at: started_at,
        reason: None,
        counts: RolloutCounts::default(),
        row_version: 1,
    }
}

async fn rollouts_start_once_move_only_from_the_version_read_and_count_in_place(fixture: &Fixture) {
    let store = &*fixture.store;
    let other = fixture.another().await;
    assert!(store.rollouts().await.expect("rollouts").is_empty());
    let first = rollout("maker-a/vaccine-a/5.2", 1102, 100);
    assert!(store.rollout_insert(&first).await.expect("insert"));
    // A second process starting the same rollout changes nothing.
    let mut again = rollout("maker-a/vaccine-a/5.2", 1102, 200);
    again.phase = "complete".to_owned();
    assert!(!other.rollout_insert(&again).await.expect("insert again"));
    assert!(
        store
            .rollout_insert(&rollout("maker-a/vaccine-a/5.3", 1103, 150))
            .await
            .expect("insert")
    );
    let rows = other.rollouts().await.expect("rollouts");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0], first, "ordered by start, read back as written");

    // Counters move in place, from any process, and leave the version alone.
    let add = RolloutCounts {
        succeeded: 3,
        failed: 1,
        faults: 2,
        silent: 0,
    };
    assert!(
        store
            .rollout_count(&first.release, add)
            .await
            .expect("count")
    );
    assert!(
        other
            .rollout_count(&first.release, add)
            .await
            .expect("count")
    );
    assert!(
        !store
            .rollout_count("maker-a/vaccine-a/9.9", add)
            .await
            .expect("count of an unknown release")
    );
    let counted = &store.rollouts().await.expect("rollouts")[0];
    assert_eq!(
        counted.counts,
        RolloutCounts {
            succeeded: 6,
            failed: 2,
            faults: 4,
            silent: 0
        }
    );
    assert_eq!(counted.row_version, 1);

    // Two processes halt from the same version: exactly one transition is stored.
    let mut halt = counted.clone();
    halt.phase = "reverted".to_owned();
    halt.reason = Some("6 bad reports".to_owned());
    halt.updated_at = 300;
    let mut promote = counted.clone();
    promote.ring = 1;
    promote.ring_started = 300;
    let (a, b) = tokio::join!(
        store.rollout_transition(&halt, false),
        other.rollout_transition(&promote, false)
    );
    assert!(
        a.expect("halt") ^ b.expect("promote"),
        "one of two racing transitions"
    );
    let moved = &store.rollouts().await.expect("rollouts")[0];
    assert_eq!(moved.row_version, 2);
    assert_eq!(
        moved.counts, counted.counts,
        "a transition keeps the counts"
    );
    // A stale version is refused; resuming from the current one may reset the counts.
    assert!(!store.rollout_transition(&halt, true).await.expect("stale"));
    let mut resume = moved.clone();
    resume.phase = "rolling".to_owned();
    resume.reason = Some("resumed by an operator".to_owned());
    assert!(
        store
            .rollout_transition(&resume, true)
            .await
            .expect("resume")
    );
    let resumed = &store.rollouts().await.expect("rollouts")[0];
    assert_eq!(
        (resumed.phase.as_str(), resumed.row_version, resumed.counts),
        ("rolling", 3, RolloutCounts::default())
    );
    assert_eq!(resumed.reason.as_deref(), Some("resumed by an operator"));
    // Only a rolling or paused rollout counts: a complete or reverted one has decided.
    let mut done = resumed.clone();
    done.phase = "complete".to_owned();
    assert!(
        store
            .rollout_transition(&done, false)
            .await
            .expect("complete")
    );
    assert!(
        !store
            .rollout_count(&first.release, add)
            .await
            .expect("count")
    );
    assert_eq!(
        store.rollouts().await.expect("rollouts")[0].counts,
        RolloutCounts::default()
    );
}
// --- fault recovery (migration 0012) --------------------------------------------------------

fn fault(
    terminal: &str,
    seq: u64,
    at: i64,
    bucket: &str,
    decision: &str,
) -> herd_store::FaultWrite {
    herd_store::FaultWrite {
        terminal: terminal.into(),
        seq,
        at,
        bucket: herd_store::FaultBucketKey {
            id: bucket.into(),
            program: "middleware-a".into(),
            version: "1.0".into(),
            kind: "crash".into(),
            signature: format!("signature of {bucket}"),
        },
        decision: decision.into(),
        report: format!(r#"{{"seq":{seq}}}"#),
        verdict: format!(r#"{{"decision":"{decision}"}}"#),
    }
}

async fn faults_are_recorded_once_and_counted_in_their_bucket(fixture: &Fixture) {
    let store = &*fixture.store;
    enrol_all(store, UNKNOWN_GROUP, &["t1", "t2"]).await;
    assert!(
        store
            .fault_record(&fault("t1", 1, 100, "b1", "replace"))
            .await
            .unwrap()
    );
    // The same report again (an outbox resending): recorded once.
    assert!(
        !store
            .fault_record(&fault("t1", 1, 100, "b1", "replace"))
            .await
            .unwrap()
    );
    assert!(
        store
            .fault_record(&fault("t2", 7, 90, "b1", "escalated"))
            .await
            .unwrap()
    );
    assert!(
        store
            .fault_record(&fault("t2", 8, 120, "b1", "known"))
            .await
            .unwrap()
    );
    assert!(
        store
            .fault_record(&fault("t1", 2, 110, "b2", "known"))
            .await
            .unwrap()
    );
    // An unknown terminal records nothing.
    assert!(
        !store
            .fault_record(&fault("nobody", 1, 100, "b3", "known"))
            .await
            .unwrap()
    );
    let buckets = store.fault_buckets().await.unwrap();
    assert_eq!(buckets.len(), 2, "{buckets:?}");
    let b1 = &buckets[0];
    assert_eq!(b1.key.id, "b1");
    assert_eq!((b1.faults, b1.terminals), (3, 2));
    assert_eq!((b1.first_seen, b1.last_seen), (90, 120));
    assert_eq!(b1.decision, "known");
    assert_eq!(b1.escalated_at, Some(90));
    assert_eq!(buckets[1].escalated_at, None);
    let all = store.faults(None, None, 0).await.unwrap();
    let keys: Vec<(&str, u64)> = all.iter().map(|f| (f.terminal.as_str(), f.seq)).collect();
    assert_eq!(keys, [("t2", 8), ("t1", 2), ("t1", 1), ("t2", 7)]);
    let of_t1_in_b1 = store.faults(Some("t1"), Some("b1"), 0).await.unwrap();
    assert_eq!(of_t1_in_b1.len(), 1);
    assert_eq!(of_t1_in_b1[0].verdict, r#"{"decision":"replace"}"#);
    assert_eq!(store.faults(None, Some("b1"), 2).await.unwrap().len(), 2);
    // What the terminal did with the verdict is kept on its fault, the latest word counting.
    assert_eq!(of_t1_in_b1[0].outcome, None);
    assert!(
        store
            .fault_outcome("t1", 1, r#"{"replaced":false}"#)
            .await
            .unwrap()
    );
    assert!(
        store
            .fault_outcome("t1", 1, r#"{"replaced":true}"#)
            .await
            .unwrap()
    );
    assert!(!store.fault_outcome("t1", 99, "{}").await.unwrap());
    assert!(!store.fault_outcome("t2", 1, "{}").await.unwrap());
    let answered = store.faults(Some("t1"), Some("b1"), 0).await.unwrap();
    assert_eq!(answered[0].outcome.as_deref(), Some(r#"{"replaced":true}"#));
    // A held fault (its replacement's ring has not reached the terminal) is listed as held
    // and decided again once, only while it is still held; its bucket follows.
    assert!(
        store
            .fault_record(&fault("t1", 3, 130, "b2", "held"))
            .await
            .unwrap()
    );
    let held = store.faults_held(0).await.unwrap();
    assert_eq!(
        held.iter()
            .map(|f| (f.terminal.as_str(), f.seq))
            .collect::<Vec<_>>(),
        [("t1", 3)]
    );
    assert!(
        store
            .fault_redecide("t1", 3, "escalated", r#"{"decision":"escalated"}"#)
            .await
            .unwrap()
    );
    assert!(
        !store
            .fault_redecide("t1", 3, "replace", r#"{"decision":"replace"}"#)
            .await
            .unwrap()
    );
    assert!(
        !store
            .fault_redecide("t1", 1, "replace", "{}")
            .await
            .unwrap()
    );
    assert!(store.faults_held(0).await.unwrap().is_empty());
    let redecided = store.faults(Some("t1"), Some("b2"), 1).await.unwrap();
    assert_eq!(
        (
            redecided[0].decision.as_str(),
            redecided[0].verdict.as_str()
        ),
        ("escalated", r#"{"decision":"escalated"}"#)
    );
    let b2 = store
        .fault_buckets()
        .await
        .unwrap()
        .into_iter()
        .find(|b| b.key.id == "b2")
        .unwrap();
    assert_eq!(
        (b2.decision.as_str(), b2.escalated_at),
        ("escalated", Some(130))
    );
    // Faults go with their terminal.
    assert!(store.terminal_delete("t2").await.unwrap());
    assert_eq!(store.faults(None, Some("b1"), 0).await.unwrap().len(), 1);
}

async fn fault_rules_and_replacements_are_put_listed_and_deleted(fixture: &Fixture) {
    let store = &*fixture.store;
    let rule = |id: &str, doc: &str| herd_store::FaultRuleRow {
        id: id.into(),
        doc: doc.into(),
    };
    store.fault_rule_put(&rule("r2", "two")).await.unwrap();
    store.fault_rule_put(&rule("r1", "one")).await.unwrap();
    store
        .fault_rule_put(&rule("r2", "two again"))
        .await
        .unwrap();
    assert_eq!(
        store.fault_rules().await.unwrap(),
        [rule("r1", "one"), rule("r2", "two again")]
    );
    assert!(store.fault_rule_delete("r1").await.unwrap());
    assert!(!store.fault_rule_delete("r1").await.unwrap());
    let entry = |program: &str, platform: &str, doc: &str| herd_store::ReplacementRow {
        program: program.into(),
        platform: platform.into(),
        doc: doc.into(),
    };
    store
        .replacement_put(&entry("a", "linux", "1"))
        .await
        .unwrap();
    store
        .replacement_put(&entry("a", "darwin", "2"))
        .await
        .unwrap();
    store
        .replacement_put(&entry("a", "linux", "3"))
        .await
        .unwrap();
    assert_eq!(
        store.replacements().await.unwrap(),
        [entry("a", "darwin", "2"), entry("a", "linux", "3")]
    );
    assert!(store.replacement_delete("a", "linux").await.unwrap());
    assert!(!store.replacement_delete("a", "linux").await.unwrap());
    assert_eq!(store.replacements().await.unwrap().len(), 1);
}

// --- consent by e-mail (migration 0020) ----------------------------------------------------

async fn consent_requests_open_once_decide_once_and_go_with_their_terminal(fixture: &Fixture) {
    use herd_store::NewConsentRequest;
    let store = &*fixture.store;
    enrol_all(store, UNKNOWN_GROUP, &["c1", "c2"]).await;
    // Addresses: set, replaced, removed; none for a terminal that does not exist.
    assert_eq!(store.terminal_email("c1").await.unwrap(), None);
    assert!(
        store
            .terminal_email_set("c1", Some("a@example.org"), 10)
            .await
            .unwrap()
    );
    assert!(
        store
            .terminal_email_set("c1", Some("b@example.org"), 11)
            .await
            .unwrap()
    );
    assert_eq!(
        store.terminal_email("c1").await.unwrap().as_deref(),
        Some("b@example.org")
    );
    assert!(
        !store
            .terminal_email_set("nobody", Some("x@example.org"), 12)
            .await
            .unwrap()
    );
    assert!(
        store
            .terminal_email_set("c2", Some("c@example.org"), 12)
            .await
            .unwrap()
    );
    assert!(store.terminal_email_set("c2", None, 13).await.unwrap());
    assert_eq!(store.terminal_email("c2").await.unwrap(), None);

    let request = |terminal: &str, plan: &str| NewConsentRequest {
        terminal: terminal.to_owned(),
        plan_id: plan.to_owned(),
        change: "switch from vaccine-a 5.1 to vaccine-b 7.0".to_owned(),
        email: "b@example.org".to_owned(),
        requested_at: 100,
        expires_at: 200,
    };
    let opened = store
        .consent_request_open(&request("c1", "p1"))
        .await
        .unwrap()
        .expect("a new request");
    assert_eq!(opened.request, request("c1", "p1"));
    assert_eq!(opened.decision, None);
    // The same plan's question is recorded once.
    assert_eq!(
        store
            .consent_request_open(&request("c1", "p1"))
            .await
            .unwrap(),
        None
    );
    let other = store
        .consent_request_open(&request("c1", "p2"))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(other.id, opened.id);
    assert_eq!(
        store
            .consent_request_of("c1", "p1")
            .await
            .unwrap()
            .map(|r| r.id),
        Some(opened.id)
    );
    assert_eq!(store.consent_request_of("c2", "p1").await.unwrap(), None);
    let listed: Vec<u64> = store
        .consent_requests_of("c1")
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, vec![other.id, opened.id]);

    // The first answer counts, from whichever process; later ones change nothing.
    let another = fixture.another().await;
    let (first, second) = tokio::join!(
        store.consent_decide(opened.id, "accepted", 150, "email"),
        another.consent_decide(opened.id, "declined", 150, "device"),
    );
    assert!(first.unwrap() ^ second.unwrap(), "exactly one answer wins");
    let decided = store.consent_request(opened.id).await.unwrap().unwrap();
    assert!(decided.decision.is_some() && decided.decided_at == Some(150));
    assert!(
        !store
            .consent_decide(opened.id, "accepted", 160, "email")
            .await
            .unwrap()
    );
    assert_eq!(
        store.consent_request(opened.id).await.unwrap().unwrap(),
        decided
    );
    assert!(
        !store
            .consent_decide(999_999, "accepted", 160, "email")
            .await
            .unwrap()
    );
    // Neither a decision outside the two nor an unknown id is stored.
    assert!(
        store
            .consent_decide(other.id, "maybe", 160, "email")
            .await
            .is_err()
    );
    assert_eq!(
        store
            .consent_request(other.id)
            .await
            .unwrap()
            .unwrap()
            .decision,
        None
    );

    // Deleting the terminal takes its address and requests.
    store.terminal_delete("c1").await.unwrap();
    assert_eq!(store.terminal_email("c1").await.unwrap(), None);
    assert_eq!(store.consent_request(opened.id).await.unwrap(), None);
}
