//! [`PostgresStore`]: the [`Store`](crate::Store) on PostgreSQL, shared by several center
//! processes: how it is opened, PostgreSQL's [`Dialect`], and its check-in path. The
//! transactions it shares with SQLite are written once in `sql.rs`.
//!
//! Transactions run at READ COMMITTED; where processes could interleave, the order is imposed
//! explicitly: publishes take a transaction-scoped advisory lock, group and rule changes update
//! the one `revisions` row first (so they queue on its row lock), enrolments and terminal
//! deletions lock the terminal change log (so its ids commit in order), enrolment consumes a
//! token use with one conditional `UPDATE`, and check-in batches lock their terminals in id
//! order before changing them, so two batches never deadlock.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{
    PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, PgQueryResult,
};
use sqlx::{Connection, Postgres};
use tokio::sync::{broadcast, watch};

use crate::common::{CheckinBatch, address_from_row, terminal_columns, to_json};
use crate::sql::{Dialect, SqlStore};
use crate::{
    AddressRow, Backend, CheckinWrite, LIVE_CHANNEL, NewTerminal, QueueItem, REVISIONS_CHANNEL,
    RevisionChanges, StoreError,
};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections per center process.
const MAX_CONNECTIONS: u32 = 16;
/// How long `open` (and any later call) waits for a connection before giving up.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The store on PostgreSQL.
pub type PostgresStore = SqlStore<Postgres>;

impl SqlStore<Postgres> {
    /// Connects to the database `url` names (`postgres://USER[:PASSWORD]@HOST[:PORT]/DB`,
    /// with libpq-style parameters such as `?options=-csearch_path%3Dherd`) and brings its
    /// schema up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let open_error = |source: sqlx::Error| StoreError::Open {
            url: redact_password(url),
            source,
        };
        let options = PgConnectOptions::from_str(url).map_err(open_error)?;
        // One plain connection first: the pool would retry a refused connection until its
        // timeout and then report only that it timed out, not why.
        let probe = tokio::time::timeout(ACQUIRE_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| {
                open_error(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {} s", ACQUIRE_TIMEOUT.as_secs()),
                )))
            })?
            .map_err(open_error)?;
        // Only a probe: failing to say goodbye politely changes nothing.
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(open_error)?;
        MIGRATOR.run(&pool).await?;
        Ok(Self {
            writer: pool.clone(),
            reader: pool,
            revision_changes: Default::default(),
            live_messages: Default::default(),
        })
    }
}

/// How long the listener waits before listening again after its connection failed.
const RELISTEN_AFTER: Duration = Duration::from_millis(500);

/// Listens on [`REVISIONS_CHANNEL`] on a connection of its own, waking `wake`'s receivers at
/// each notification and at each (re)connection, until no receiver is left.
async fn listen_for_revisions(pool: PgPool, wake: watch::Sender<u64>) {
    let mut wakes: u64 = 0;
    let mut bump = |wake: &watch::Sender<u64>| {
        wakes += 1;
        wake.send_replace(wakes);
    };
    'connect: loop {
        let listening = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(REVISIONS_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            _ = wake.closed() => return,
            listening = listening => match listening {
                Ok(listener) => listener,
                Err(err) => {
                    tracing::warn!(%err, "cannot listen for revision changes; polling until it can");
                    tokio::select! {
                        _ = wake.closed() => return,
                        _ = tokio::time::sleep(RELISTEN_AFTER) => continue 'connect,
                    }
                }
            },
        };
        // Whatever was notified while nobody listened is lost: look once now.
        bump(&wake);
        loop {
            let received = tokio::select! {
                _ = wake.closed() => return,
                received = listener.try_recv() => received,
            };
            match received {
                Ok(Some(_)) => bump(&wake),
                // The connection dropped; the next `try_recv` reconnects and listens again.
                Ok(None) => {
                    tracing::warn!("the revision listener's connection dropped; reconnecting");
                    bump(&wake);
                }
                Err(err) => {
                    tracing::warn!(%err, "the revision listener failed; listening again");
                    bump(&wake);
                    tokio::select! {
                        _ = wake.closed() => return,
                        _ = tokio::time::sleep(RELISTEN_AFTER) => continue 'connect,
                    }
                }
            }
        }
    }
}

/// How many live messages a slow receiver may fall behind before it skips ahead.
const LIVE_BACKLOG: usize = 256;

/// [`LIVE_CHANNEL`] and the schema the store's tables are in: notifications reach every
/// session of a database, and fleets in other schemas of the same database must not see
/// each other's.
async fn live_channel(pool: &PgPool) -> Result<String, sqlx::Error> {
    let schema: String = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(pool)
        .await?;
    Ok(format!("{LIVE_CHANNEL}.{schema}"))
}

/// Listens on [`live_channel`] on a connection of its own and hands each payload to `out`'s
/// receivers, for as long as the process runs (listening again after a failure).
async fn listen_for_live(pool: PgPool, out: broadcast::Sender<Arc<str>>) {
    loop {
        let listening = async {
            let channel = live_channel(&pool).await?;
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(&channel).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match listening.await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(%err, "cannot listen for the live view of other processes");
                tokio::time::sleep(RELISTEN_AFTER).await;
                continue;
            }
        };
        loop {
            match listener.try_recv().await {
                // Nobody receiving right now is fine: the live view is for whoever watches.
                Ok(Some(notification)) => drop(out.send(Arc::from(notification.payload()))),
                // The connection dropped; the next `try_recv` reconnects and listens again.
                Ok(None) => tracing::warn!("the live listener's connection dropped; reconnecting"),
                Err(err) => {
                    tracing::warn!(%err, "the live listener failed; listening again");
                    tokio::time::sleep(RELISTEN_AFTER).await;
                    break;
                }
            }
        }
    }
}

/// `url` with its password (in the authority or as a `password=` parameter) replaced by `***`,
/// fit for error messages and logs.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some(("password", _)) => "password=***".to_owned(),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

impl Dialect for Postgres {
    const BACKEND: Backend = Backend::Postgres;

    /// Started at the first call: one listening connection per store, whoever asks.
    fn revision_changes(store: &SqlStore<Postgres>) -> Option<RevisionChanges> {
        let changes = store.revision_changes.get_or_init(|| {
            let (wake, receiver) = watch::channel(0);
            tokio::spawn(listen_for_revisions(store.reader.clone(), wake));
            RevisionChanges::new(receiver)
        });
        Some(changes.clone())
    }

    /// Started at the first call: one listening connection per store, whoever asks.
    fn live_messages(store: &SqlStore<Postgres>) -> Option<broadcast::Receiver<Arc<str>>> {
        let sender = store.live_messages.get_or_init(|| {
            let sender = broadcast::Sender::new(LIVE_BACKLOG);
            tokio::spawn(listen_for_live(store.reader.clone(), sender.clone()));
            sender
        });
        Some(sender.subscribe())
    }

    // READ COMMITTED: where processes could interleave, the statements below impose the order.
    const BEGIN_WRITE: &'static str = "BEGIN";
    const BEGIN_SNAPSHOT: &'static str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";
    // The advisory lock key is "herdfeed" in ASCII (0x6865_7264_6665_6564); the lock is held
    // until commit or rollback.
    const LOCK_PUBLISHES: Option<&'static str> =
        Some("SELECT pg_advisory_xact_lock(7522544528132498788)");
    // Ids come from a sequence, which hands them out in the order transactions ask but lets
    // them commit in any order: a reader that saw change 7 committed while change 6 was not
    // yet would continue after 7 and never see 6. Holding this lock from before the id is
    // taken until commit makes ids commit in order. It serialises enrolments and terminal
    // deletions, which are rare next to check-ins (which never take it); readers are not
    // blocked (EXCLUSIVE still admits ACCESS SHARE).
    const LOCK_TERMINAL_CHANGES: Option<&'static str> =
        Some("LOCK TABLE terminal_changes IN EXCLUSIVE MODE");
    // Locking the group row waits for enrolments into it that are still in flight (they hold
    // a key-share lock on it), so the terminal count that follows includes them.
    const SELECT_GROUP_TO_DELETE: &'static str = "SELECT id FROM groups WHERE id = $1 FOR UPDATE";
    const TERMINAL_USER_NAME: &'static str = "t.user_name";
    const SELECT_TERMINALS: &'static str =
        concat!("SELECT ", terminal_columns!(), " FROM terminals AS t");
    const UPDATE_CERT_FROM: &'static str =
        "UPDATE terminals SET cert_sha256 = $2 WHERE id = $1 AND cert_sha256 = $3";
    const UPDATE_LAST_REPORT: &'static str = "UPDATE terminals SET last_report = \
         (SELECT data FROM events WHERE terminal = terminals.id AND kind = 'plan.report' \
          ORDER BY seq DESC LIMIT 1) \
         WHERE id IN (SELECT r.value ->> 0 FROM jsonb_array_elements($1::jsonb) AS r(value))";

    fn json_rows(param: &str) -> String {
        format!("jsonb_array_elements({param}::jsonb) AS r(value)")
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    async fn insert_terminal(
        connection: &mut PgConnection,
        terminal: &NewTerminal,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO terminals (id, group_id, last_address, enrolled_at, cert_sha256, \
             user_name, tz, hardware) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&terminal.id)
        .bind(&terminal.group)
        .bind(&terminal.address)
        .bind(terminal.enrolled_at)
        .bind(&terminal.cert_sha256)
        .bind(&terminal.user)
        .bind(&terminal.tz)
        .bind(&terminal.hardware)
        .execute(connection)
        .await?;
        Ok(())
    }

    async fn record_checkins(
        store: &SqlStore<Self>,
        batch: &[CheckinWrite],
    ) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        // On a site, each answered check-in is queued for the center in the same commit.
        let relayed: Vec<QueueItem> = batch
            .iter()
            .filter_map(|write| write.relay.clone())
            .collect();
        let batch = CheckinBatch::new(batch);
        // `[terminal, at, address, installed, hardware, tz, agent_version, plan_id]` per terminal.
        let checkins = to_json(
            &batch
                .latest
                .iter()
                .map(|w| {
                    (
                        w.terminal.as_str(),
                        w.at,
                        w.address.as_str(),
                        w.installed.as_deref(),
                        w.hardware.as_deref(),
                        w.tz.as_deref(),
                        w.agent_version.as_deref(),
                        w.plan.id.as_str(),
                    )
                })
                .collect::<Vec<_>>(),
        )?;
        let mut tx = store.write().await?;
        // Lock the batch's terminals in id order first: two processes' batches sharing
        // terminals then wait for each other instead of deadlocking. The same statement finds
        // the terminals whose plan changes.
        let changed_plans: Vec<String> = sqlx::query_scalar(
            "SELECT locked.id FROM (SELECT terminals.id, terminals.plan_id FROM terminals \
                     WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb)) \
                     ORDER BY id FOR UPDATE) AS locked \
                 JOIN jsonb_array_elements($2::jsonb) AS b ON b ->> 0 = locked.id \
             WHERE locked.plan_id IS DISTINCT FROM b ->> 7",
        )
        .bind(batch.terminals_json()?)
        .bind(&checkins)
        .fetch_all(&mut *tx)
        .await?;
        // `hardware`, `tz` and the agent version are kept when a check-in does not report them.
        sqlx::query(
            "UPDATE terminals SET last_checkin = b.at, last_address = b.address, \
                 installed = b.installed, hardware = coalesce(b.hardware, terminals.hardware), \
                 tz = coalesce(b.tz, terminals.tz), \
                 agent_version = coalesce(b.agent_version, terminals.agent_version) \
             FROM (SELECT e ->> 0 AS terminal, (e ->> 1)::bigint AS at, e ->> 2 AS address, \
                          e ->> 3 AS installed, e ->> 4 AS hardware, e ->> 5 AS tz, \
                          e ->> 6 AS agent_version \
                   FROM jsonb_array_elements($1::jsonb) AS e) AS b \
             WHERE terminals.id = b.terminal",
        )
        .bind(&checkins)
        .execute(&mut *tx)
        .await?;
        let changed_plans: HashSet<&str> = changed_plans.iter().map(String::as_str).collect();
        if let Some(plans) = batch.plans_json(&changed_plans)? {
            sqlx::query(
                "UPDATE terminals SET plan_id = b.plan_id, plan_action = b.action, \
                     plan_uncovered = b.uncovered, plan = b.doc, planned_at = b.at \
                 FROM (SELECT e ->> 0 AS terminal, e ->> 1 AS plan_id, e ->> 2 AS action, \
                              (e ->> 3)::bigint AS uncovered, e ->> 4 AS doc, \
                              (e ->> 5)::bigint AS at \
                       FROM jsonb_array_elements($1::jsonb) AS e) AS b \
                 WHERE terminals.id = b.terminal",
            )
            .bind(plans)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO terminal_addresses (terminal, address, first_seen, last_seen, checkins) \
             SELECT a.terminal, a.address, a.first_seen, a.last_seen, a.checkins \
             FROM (SELECT e ->> 0 AS terminal, e ->> 1 AS address, \
                          (e ->> 2)::bigint AS first_seen, (e ->> 3)::bigint AS last_seen, \
                          (e ->> 4)::bigint AS checkins \
                   FROM jsonb_array_elements($1::jsonb) AS e) AS a \
             JOIN terminals ON terminals.id = a.terminal \
             ORDER BY a.terminal, a.address \
             ON CONFLICT (terminal, address) DO UPDATE SET \
                 first_seen = LEAST(terminal_addresses.first_seen, EXCLUDED.first_seen), \
                 last_seen = GREATEST(terminal_addresses.last_seen, EXCLUDED.last_seen), \
                 checkins = terminal_addresses.checkins + EXCLUDED.checkins",
        )
        .bind(batch.addresses_json()?)
        .execute(&mut *tx)
        .await?;
        SqlStore::<Self>::queue_items_in(&mut tx, &relayed).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn addresses(
        store: &SqlStore<Self>,
        terminal: &str,
    ) -> Result<Vec<AddressRow>, StoreError> {
        sqlx::query(
            "SELECT address, first_seen, last_seen, checkins FROM terminal_addresses \
             WHERE terminal = $1 ORDER BY last_seen DESC, address",
        )
        .bind(terminal)
        .fetch_all(&store.reader)
        .await?
        .iter()
        .map(address_from_row)
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::redact_password;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_password("postgres://herd:s3cr%40t@db.example:5432/herd?sslmode=require"),
            "postgres://herd:***@db.example:5432/herd?sslmode=require"
        );
        assert_eq!(
            redact_password("postgres://herd@db/herd?password=hunter2&application_name=x"),
            "postgres://herd@db/herd?password=***&application_name=x"
        );
        assert_eq!(redact_password("postgres://db/herd"), "postgres://db/herd");
    }
}
