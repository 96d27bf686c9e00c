//! Two real `herd serve` processes on one PostgreSQL database of their own: a publish through one reaches the other
//! through LISTEN/NOTIFY well within the old one-second poll (the latency is measured and
//! printed), and when notifications are lost — the listening connection killed with
//! `pg_terminate_backend`, or the notifying trigger disabled — the other process still catches
//! up, by listening again and by its fallback poll.

mod support;

use std::time::{Duration, Instant};

use herd_client::Client;
use serde_json::{Value, json};
use support::TestCenter;

/// Acme's feed with releases `1..=n` (no packages: only the catalog revision matters here).
fn feed(n: u64) -> Value {
    json!({
        "format": "herd.catalog/v1",
        "vendors": [{"id": "acme", "name": "Acme"}],
        "products": [{"id": "acme-av", "vendor": "acme", "name": "AV", "platforms": ["linux"]}],
        "releases": (1..=n).map(|seq| json!({
            "product": "acme-av", "version": format!("1.{seq}"), "pattern": format!("acme-{seq}"),
            "seq": seq, "published": format!("2000-01-{seq:02}T00:00:00Z"), "packages": [],
        })).collect::<Vec<_>>(),
        "threats": [],
        "coverage": [],
    })
}

/// Whether `operator`'s center plans with release `1.n`.
fn has_release(operator: &Client, n: u64) -> bool {
    let catalog = operator.catalog().expect("catalog");
    catalog["releases"]
        .as_array()
        .is_some_and(|releases| releases.iter().any(|r| r["version"] == format!("1.{n}")))
}

/// Polls `operator` (every 2 ms) until it has release `1.n`; the instant it was seen.
fn wait_for_release(operator: &Client, n: u64, within: Duration) -> Instant {
    let deadline = Instant::now() + within;
    loop {
        if has_release(operator, n) {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "release 1.{n} not seen within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Runs `sql` on the test database.
fn sql(url: &str, statement: &str) -> u64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap()
            .rows_affected()
    })
}

/// A fresh database of its own on the server `HERD_TEST_POSTGRES_URL` names (notifications
/// are per database: other tests' schemas on the shared one would wake these centers too and
/// hide a lost notification), as a URL; `None` skips the test.
fn fresh_database(name: &str) -> Option<String> {
    let base = std::env::var("HERD_TEST_POSTGRES_URL").ok()?;
    let database = format!("{name}_{}", std::process::id());
    sql(
        &base,
        &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
    );
    sql(&base, &format!("CREATE DATABASE {database}"));
    let (url, query) = match base.split_once('?') {
        Some((url, query)) => (url, format!("?{query}")),
        None => (base.as_str(), String::new()),
    };
    let (server, _) = url
        .rsplit_once('/')
        .expect("a database URL ends with /DATABASE");
    Some(format!("{server}/{database}{query}"))
}

/// Drops the database `url` names once the centers using it are gone.
struct DropDatabase(String);

impl Drop for DropDatabase {
    fn drop(&mut self) {
        if let (Ok(base), Some((_, database))) = (
            std::env::var("HERD_TEST_POSTGRES_URL"),
            self.0
                .split('?')
                .next()
                .and_then(|url| url.rsplit_once('/')),
        ) {
            sql(
                &base,
                &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
            );
        }
    }
}

struct Pair {
    /// Held so the processes run as long as the test.
    _one: TestCenter,
    _two: TestCenter,
    /// The database URL (in the test's schema).
    url: String,
    acme: Client,
    operator_two: Client,
    _dir: tempfile::TempDir,
    // Dropped after the centers (fields drop in order).
    _database: DropDatabase,
}

/// Two centers on one fresh schema; the second's connections carry `application_name`
/// `two_name`, so a test can find its listening connection.
fn two_centers(database: &str, two_name: &str) -> Option<Pair> {
    let url = fresh_database(database)?;
    let separator = if url.contains('?') { '&' } else { '?' };
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs").display().to_string();
    let start = |name: &str, url: &str| {
        TestCenter::try_spawn(
            &dir.path().join(name),
            &["--database", url, "--blob-dir", &blobs],
            &[("HERD_CA_KEK", "the fleet's key-encryption key")],
        )
        .unwrap()
    };
    let one = start("one", &url);
    let two = start(
        "two",
        &format!("{url}{separator}application_name={two_name}"),
    );
    let bootstrapped = [&one, &two]
        .into_iter()
        .find(|c| c.data_dir.join("operator.token").exists())
        .unwrap();
    let token = support::vendor_token(bootstrapped, "acme");
    let acme = one.anonymous().with_token(&token);
    let operator_two = two.anonymous().with_token(&bootstrapped.operator_token());
    Some(Pair {
        _one: one,
        _two: two,
        url: url.clone(),
        acme,
        operator_two,
        _dir: dir,
        _database: DropDatabase(url),
    })
}

fn publish(acme: &Client, n: u64) -> Instant {
    acme.publish_feed("acme", &serde_json::to_vec(&feed(n)).unwrap())
        .expect("publish");
    Instant::now()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[test]
fn a_publish_on_one_center_is_planned_by_the_other_at_once() {
    let Some(pair) = two_centers("herd_notify_fast", "herd_notify_fast_two") else {
        eprintln!("skipped: HERD_TEST_POSTGRES_URL is not set");
        return;
    };
    // The first publish warms both up (first catalog, first signing).
    publish(&pair.acme, 1);
    wait_for_release(&pair.operator_two, 1, Duration::from_secs(15));

    let (mut after_answer, mut after_sent) = (Vec::new(), Vec::new());
    for n in 2..=8 {
        let sent = Instant::now();
        let answered = publish(&pair.acme, n);
        let seen = wait_for_release(&pair.operator_two, n, Duration::from_secs(15));
        // Seen before the answer came back counts as 0: the other process had it first.
        after_answer.push(seen.saturating_duration_since(answered).as_secs_f64() * 1000.0);
        after_sent.push(seen.duration_since(sent).as_secs_f64() * 1000.0);
        // Apart by a random part of a second, so no run lines up with a poll by chance.
        std::thread::sleep(Duration::from_millis(137 * n % 450));
    }
    let max = after_answer.iter().copied().fold(0.0, f64::max);
    let (answer_median, sent_median) = (median(&mut after_answer), median(&mut after_sent));
    eprintln!(
        "publish answered on one → planned by two: median {answer_median:.1} ms, max {max:.1} ms \
         ({after_answer:?}); from the publish sent: median {sent_median:.1} ms ({after_sent:?})"
    );
    // A poll every second would average 500 ms; notified, it is the time to rebuild a catalog.
    assert!(answer_median < 250.0, "median {answer_median} ms");
    assert!(max < 900.0, "max {max} ms");
}

#[test]
fn a_process_that_missed_notifications_still_catches_up() {
    let Some(pair) = two_centers("herd_notify_lost", "herd_notify_lost_two") else {
        eprintln!("skipped: HERD_TEST_POSTGRES_URL is not set");
        return;
    };
    publish(&pair.acme, 1);
    wait_for_release(&pair.operator_two, 1, Duration::from_secs(15));

    // The second process's listening connection for revisions killed (its console's live
    // view listens on a connection of its own, left alone): it listens again and looks once.
    let killed = sql(
        &pair.url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'herd_notify_lost_two' \
           AND query LIKE 'LISTEN %herd_revisions%'",
    );
    assert_eq!(killed, 1, "one revision listener of the second process");
    publish(&pair.acme, 2);
    wait_for_release(&pair.operator_two, 2, Duration::from_secs(12));
    // Listening again: notified at once.
    let answered = publish(&pair.acme, 3);
    let seen = wait_for_release(&pair.operator_two, 3, Duration::from_secs(12));
    let relistened = seen.saturating_duration_since(answered);
    eprintln!("after the listener was killed, a publish reached the other in {relistened:?}");
    assert!(relistened < Duration::from_millis(900), "{relistened:?}");

    // Notifications that never come (the trigger disabled): the fallback poll, every 10 s.
    sql(
        &pair.url,
        "ALTER TABLE revisions DISABLE TRIGGER herd_revisions_notify",
    );
    let answered = publish(&pair.acme, 4);
    let seen = wait_for_release(&pair.operator_two, 4, Duration::from_secs(15));
    let polled = seen.saturating_duration_since(answered);
    eprintln!("with notifications lost, the fallback poll caught up in {polled:?}");

    sql(
        &pair.url,
        "ALTER TABLE revisions ENABLE TRIGGER herd_revisions_notify",
    );
}
