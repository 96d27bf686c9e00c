//! [`SqliteStore`]: the [`Store`](crate::Store) on one embedded SQLite file in WAL mode, the
//! center's default: how it is opened, SQLite's [`Dialect`], and its check-in path. The
//! transactions it shares with PostgreSQL are written once in `sql.rs`.
//!
//! SQLite allows one writer at a time, so every write goes through a pool of exactly one
//! connection (writers queue in the pool instead of spinning on `SQLITE_BUSY`) and starts with
//! `BEGIN IMMEDIATE`, taking the write lock before reading: a read-then-write transaction
//! (publish, enrol) cannot interleave with another process's. Reads use a separate pool of a few
//! `query_only` connections, which WAL lets run beside the writer; they see every committed write.
//!
//! Check-ins are the hot path, and what they cost is mostly the pages they dirty: every page a
//! transaction changes is written to the WAL and later copied into the database. So a terminal
//! is two rows: a narrow `terminals` row with what every check-in changes, and a
//! `terminal_docs` row with the documents (hardware, inventory, plan, last report), rewritten
//! only when a digest on the narrow row says the document changed. The network map counts the
//! check-ins from the current address on the narrow row too, and moves them into
//! `terminal_addresses` when the address changes. A batch is a handful of statements whatever
//! its size; see `record_checkins`.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions,
    SqliteQueryResult, SqliteSynchronous,
};
use sqlx::{Row, Sqlite};

use crate::common::{CheckinBatch, address_from_row, to_db_int, to_json};
use crate::sql::{Dialect, SqlStore};
use crate::{AddressRow, Backend, CheckinWrite, NewTerminal, QueueItem, StoreError};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// The columns `terminal_from_row` reads, from `terminals AS t JOIN terminal_docs AS d`.
macro_rules! sqlite_terminal_columns {
    () => {
        "t.id AS id, t.group_id AS group_id, t.last_checkin AS last_checkin, \
         t.last_address AS last_address, t.agent_version AS agent_version, \
         t.plan_id AS plan_id, t.plan_action AS plan_action, \
         t.plan_uncovered AS plan_uncovered, t.planned_at AS planned_at, \
         d.enrolled_at AS enrolled_at, d.cert_sha256 AS cert_sha256, d.user_name AS user_name, \
         t.tz AS tz, d.hardware AS hardware, d.installed AS installed, d.plan AS plan, \
         d.last_report AS last_report"
    };
}

/// Which terminals of a check-in batch change more than their check-in columns.
#[derive(Debug, Default)]
struct Changes {
    plan: HashSet<String>,
    installed: HashSet<String>,
    hardware: HashSet<String>,
    /// Checked in from another address than the one counted on their `terminals` row.
    moved: HashSet<String>,
}

/// 64-bit FNV-1a of a document, stored to tell whether it changed without reading it back. A
/// collision would only skip rewriting a changed document: about one chance in 2^64 per change.
fn digest(document: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in document.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Stored as SQLite's signed 64-bit integer: the same bits.
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Concurrent readers; more would only contend for the 2 cores the center is sized for.
const READERS: u32 = 4;
/// Page cache of the writer connection, in KiB: check-ins touch terminals all over the table.
const WRITER_CACHE_KIB: i64 = 64 * 1024;
/// WAL pages (of 4 KiB) after which a commit checkpoints them into the database.
const WAL_CHECKPOINT_PAGES: i64 = 16 * 1024;

/// The store on one embedded SQLite file.
pub type SqliteStore = SqlStore<Sqlite>;

impl SqlStore<Sqlite> {
    /// Opens (creating if missing) the database file at `path` and brings its schema up to
    /// date. The directory must exist.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let url = format!("sqlite://{}", path.display());
        let open_error = |source: sqlx::Error| StoreError::Open {
            url: url.clone(),
            source,
        };
        let directory = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        if !directory.is_dir() {
            return Err(open_error(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("the directory {} does not exist", directory.display()),
            ))));
        }

        let common = SqliteConnectOptions::new()
            .filename(path)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let writer_options = common
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk (the WAL fsynced) before the center answers. With
            // NORMAL a power cut could lose transactions already acknowledged — event batches
            // the agent then deleted from its outbox, enrolments whose certificates terminals
            // hold. The group commit spreads one fsync over every check-in of a batch.
            .synchronous(SqliteSynchronous::Full)
            .pragma("cache_size", (-WRITER_CACHE_KIB).to_string())
            // Temporary tables and statement journals stay in memory.
            .pragma("temp_store", "MEMORY")
            // Checkpoint every 64 MiB of WAL instead of every 4 MiB: a terminal row changed
            // by several batches in between is copied into the database once, and a batch of
            // 1,000 check-ins no longer waits for a checkpoint (and its fsync) every time.
            .pragma("wal_autocheckpoint", WAL_CHECKPOINT_PAGES.to_string())
            .pragma(
                "journal_size_limit",
                (WAL_CHECKPOINT_PAGES * 4096).to_string(),
            );
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .after_connect(|connection, _| {
                Box::pin(async move {
                    // Where `record_checkins` stages a batch; temporary tables are per connection.
                    sqlx::query(
                        "CREATE TEMP TABLE checkin_batch (terminal TEXT NOT NULL, \
                             at INTEGER, address TEXT, tz TEXT, agent_version TEXT, \
                             plan_id TEXT, installed_digest INTEGER, hardware_digest INTEGER, \
                             address_first INTEGER, address_last INTEGER, \
                             address_checkins INTEGER)",
                    )
                    .execute(connection)
                    .await?;
                    Ok(())
                })
            })
            .connect_with(writer_options)
            .await
            .map_err(open_error)?;
        MIGRATOR.run(&writer).await?;

        // The journal mode is a property of the file, set by the writer above.
        let reader_options = common.pragma("query_only", "ON");
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(reader_options)
            .await
            .map_err(open_error)?;
        Ok(Self {
            writer,
            reader,
            revision_changes: Default::default(),
            live_messages: Default::default(),
        })
    }
}

impl Dialect for Sqlite {
    const BACKEND: Backend = Backend::Sqlite;
    // Takes the write lock before the first read, so a read-then-write transaction (publish,
    // enrol) cannot interleave with another process's. As it serialises every write, SQLite
    // needs none of PostgreSQL's explicit locks.
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    // A deferred transaction's snapshot starts at its first read and lasts until it ends.
    const BEGIN_SNAPSHOT: &'static str = "BEGIN";
    const LOCK_PUBLISHES: Option<&'static str> = None;
    // `BEGIN IMMEDIATE` already commits terminal changes one after the other, in id order.
    const LOCK_TERMINAL_CHANGES: Option<&'static str> = None;
    const SELECT_GROUP_TO_DELETE: &'static str = "SELECT id FROM groups WHERE id = $1";
    const TERMINAL_USER_NAME: &'static str = "d.user_name";
    const SELECT_TERMINALS: &'static str = concat!(
        "SELECT ",
        sqlite_terminal_columns!(),
        " FROM terminals AS t JOIN terminal_docs AS d ON d.id = t.id"
    );
    const UPDATE_CERT_FROM: &'static str =
        "UPDATE terminal_docs SET cert_sha256 = $2 WHERE id = $1 AND cert_sha256 = $3";
    const UPDATE_LAST_REPORT: &'static str = "UPDATE terminal_docs SET last_report = \
         (SELECT data FROM events WHERE terminal = terminal_docs.id AND kind = 'plan.report' \
          ORDER BY seq DESC LIMIT 1) \
         WHERE id IN (SELECT r.value ->> 0 FROM jsonb_each($1) AS r)";

    fn json_rows(param: &str) -> String {
        format!("jsonb_each({param}) AS r")
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    async fn insert_terminal(
        connection: &mut SqliteConnection,
        terminal: &NewTerminal,
    ) -> Result<(), sqlx::Error> {
        // The narrow row, with the digest of the hardware document check-ins compare theirs
        // against, and the row of documents.
        sqlx::query(
            "INSERT INTO terminals (id, group_id, last_address, tz, hardware_digest) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&terminal.id)
        .bind(&terminal.group)
        .bind(&terminal.address)
        .bind(&terminal.tz)
        .bind(digest(&terminal.hardware))
        .execute(&mut *connection)
        .await?;
        sqlx::query(
            "INSERT INTO terminal_docs (id, enrolled_at, cert_sha256, user_name, hardware) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&terminal.id)
        .bind(terminal.enrolled_at)
        .bind(&terminal.cert_sha256)
        .bind(&terminal.user)
        .bind(&terminal.hardware)
        .execute(&mut *connection)
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
        let final_address: HashMap<&str, &str> = batch
            .latest
            .iter()
            .map(|w| (w.terminal.as_str(), w.address.as_str()))
            .collect();
        // `[terminal, at, address, tz, agent_version, plan_id, installed digest, hardware
        // digest, address first seen, last seen, check-ins]` per terminal, for its final address.
        let checkins = to_json(
            &batch
                .latest
                .iter()
                .map(|w| {
                    let stats = batch.addresses[&(w.terminal.as_str(), w.address.as_str())];
                    (
                        w.terminal.as_str(),
                        w.at,
                        w.address.as_str(),
                        w.tz.as_deref(),
                        w.agent_version.as_deref(),
                        w.plan.id.as_str(),
                        w.installed.as_deref().map(digest),
                        w.hardware.as_deref().map(digest),
                        stats.first,
                        stats.last,
                        stats.checkins,
                    )
                })
                .collect::<Vec<_>>(),
        )?;

        let mut tx = store.write().await?;
        // The batch goes into the connection's temporary table first (memory only), so the
        // statements below read plain columns: a statement that writes several rows and calls
        // a function (JSON extraction included) makes SQLite keep a statement journal, a copy
        // of every page it changes.
        sqlx::query("DELETE FROM temp.checkin_batch")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO temp.checkin_batch \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, \
                    value ->> 5, value ->> 6, value ->> 7, value ->> 8, value ->> 9, \
                    value ->> 10 \
             FROM jsonb_each(?1)",
        )
        .bind(&checkins)
        .execute(&mut *tx)
        .await?;
        // What changes besides the check-in itself, found before anything is written. (Each
        // statement walks the batch and looks terminals up, never the other way round: CROSS
        // JOIN fixes the order, and the unary `+` keeps the UPDATE from preferring to scan
        // terminals and look the batch up.)
        let changes = sqlx::query(
            "SELECT t.id AS id, t.plan_id IS NOT b.plan_id AS plan, \
                 t.installed_digest IS NOT b.installed_digest AS installed, \
                 (b.hardware_digest IS NOT NULL AND t.hardware_digest IS NOT b.hardware_digest) \
                     AS hardware, \
                 (t.address_checkins > 0 AND t.last_address IS NOT b.address) AS moved \
             FROM temp.checkin_batch AS b CROSS JOIN terminals AS t ON t.id = b.terminal \
             WHERE t.plan_id IS NOT b.plan_id \
                 OR t.installed_digest IS NOT b.installed_digest \
                 OR (b.hardware_digest IS NOT NULL AND t.hardware_digest IS NOT b.hardware_digest) \
                 OR (t.address_checkins > 0 AND t.last_address IS NOT b.address)",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut changed = Changes::default();
        for row in &changes {
            let id: String = row.try_get("id")?;
            for (column, set) in [
                ("plan", &mut changed.plan),
                ("installed", &mut changed.installed),
                ("hardware", &mut changed.hardware),
                ("moved", &mut changed.moved),
            ] {
                if row.try_get::<bool, _>(column)? {
                    set.insert(id.clone());
                }
            }
        }

        // A terminal that moved: the check-ins counted on its terminals row for its previous
        // address join that address's network-map row before the count restarts below.
        if !changed.moved.is_empty() {
            sqlx::query(
                "INSERT INTO terminal_addresses \
                     (terminal, address, first_seen, last_seen, checkins) \
                 SELECT t.id, t.last_address, t.address_first, t.address_last, t.address_checkins \
                 FROM temp.checkin_batch AS b CROSS JOIN terminals AS t ON t.id = b.terminal \
                 WHERE t.address_checkins > 0 AND t.last_address IS NOT b.address \
                 ON CONFLICT (terminal, address) DO UPDATE SET \
                     first_seen = min(terminal_addresses.first_seen, excluded.first_seen), \
                     last_seen = max(terminal_addresses.last_seen, excluded.last_seen), \
                     checkins = terminal_addresses.checkins + excluded.checkins",
            )
            .execute(&mut *tx)
            .await?;
        }
        // Addresses a terminal checked in from earlier in the batch than its last check-in.
        let passing: Vec<(&str, &str, i64, i64, i64)> = batch
            .addresses
            .iter()
            .filter(|((terminal, address), _)| final_address.get(terminal) != Some(address))
            .map(|(&(terminal, address), s)| (terminal, address, s.first, s.last, s.checkins))
            .collect();
        if !passing.is_empty() {
            sqlx::query(
                "INSERT INTO terminal_addresses \
                     (terminal, address, first_seen, last_seen, checkins) \
                 SELECT a.value ->> 0, a.value ->> 1, a.value ->> 2, a.value ->> 3, \
                        a.value ->> 4 \
                 FROM jsonb_each(?1) AS a \
                 WHERE EXISTS (SELECT 1 FROM terminals WHERE terminals.id = a.value ->> 0) \
                 ON CONFLICT (terminal, address) DO UPDATE SET \
                     first_seen = min(terminal_addresses.first_seen, excluded.first_seen), \
                     last_seen = max(terminal_addresses.last_seen, excluded.last_seen), \
                     checkins = terminal_addresses.checkins + excluded.checkins",
            )
            .bind(to_json(&passing)?)
            .execute(&mut *tx)
            .await?;
        }
        // The check-in itself. `tz`, the agent version and the hardware are kept when a
        // check-in does not report them; the count for the current address continues while
        // the address stays. No function calls here (CASE instead of min and max, `coalesce`
        // is compiled inline), and `OR FAIL` instead of the default `OR ABORT`: together they
        // spare the statement journal. Stopping halfway on an error is harmless because any
        // error rolls the whole transaction back.
        sqlx::query(
            "UPDATE OR FAIL terminals SET last_checkin = b.at, last_address = b.address, \
                 address_first = CASE WHEN terminals.address_checkins > 0 \
                         AND terminals.last_address IS b.address \
                         AND terminals.address_first < b.address_first \
                     THEN terminals.address_first ELSE b.address_first END, \
                 address_last = CASE WHEN terminals.address_checkins > 0 \
                         AND terminals.last_address IS b.address \
                         AND terminals.address_last > b.address_last \
                     THEN terminals.address_last ELSE b.address_last END, \
                 address_checkins = CASE WHEN terminals.last_address IS b.address \
                     THEN terminals.address_checkins + b.address_checkins \
                     ELSE b.address_checkins END, \
                 tz = coalesce(b.tz, terminals.tz), \
                 agent_version = coalesce(b.agent_version, terminals.agent_version), \
                 installed_digest = b.installed_digest, \
                 hardware_digest = coalesce(b.hardware_digest, terminals.hardware_digest) \
             FROM temp.checkin_batch AS b \
             WHERE terminals.id = +b.terminal",
        )
        .execute(&mut *tx)
        .await?;

        if !changed.plan.is_empty() {
            // `[terminal, plan_id, action, uncovered, at]` per new plan.
            let plans = batch
                .latest
                .iter()
                .filter(|w| changed.plan.contains(&w.terminal))
                .map(|w| {
                    let uncovered = to_db_int(w.plan.uncovered, "plan uncovered count")?;
                    Ok((
                        w.terminal.as_str(),
                        w.plan.id.as_str(),
                        w.plan.action.as_str(),
                        uncovered,
                        w.at,
                    ))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            sqlx::query(
                "UPDATE terminals SET plan_id = b.plan_id, plan_action = b.action, \
                     plan_uncovered = b.uncovered, planned_at = b.at \
                 FROM (SELECT value ->> 0 AS terminal, value ->> 1 AS plan_id, \
                              value ->> 2 AS action, value ->> 3 AS uncovered, \
                              value ->> 4 AS at \
                       FROM jsonb_each(?1)) AS b \
                 WHERE terminals.id = b.terminal",
            )
            .bind(to_json(&plans)?)
            .execute(&mut *tx)
            .await?;
        }
        // `[terminal, installed changed, installed, hardware or null, plan or null]` per
        // terminal whose documents changed.
        let docs: Vec<_> = batch
            .latest
            .iter()
            .filter(|w| {
                changed.installed.contains(&w.terminal)
                    || changed.hardware.contains(&w.terminal)
                    || changed.plan.contains(&w.terminal)
            })
            .map(|w| {
                (
                    w.terminal.as_str(),
                    changed.installed.contains(&w.terminal),
                    w.installed.as_deref(),
                    w.hardware
                        .as_deref()
                        .filter(|_| changed.hardware.contains(&w.terminal)),
                    Some(w.plan.doc.as_str()).filter(|_| changed.plan.contains(&w.terminal)),
                )
            })
            .collect();
        if !docs.is_empty() {
            sqlx::query(
                "UPDATE terminal_docs SET \
                     installed = CASE WHEN b.installed_changed THEN b.installed \
                         ELSE terminal_docs.installed END, \
                     hardware = coalesce(b.hardware, terminal_docs.hardware), \
                     plan = coalesce(b.plan, terminal_docs.plan) \
                 FROM (SELECT value ->> 0 AS terminal, value ->> 1 AS installed_changed, \
                              value ->> 2 AS installed, value ->> 3 AS hardware, \
                              value ->> 4 AS plan \
                       FROM jsonb_each(?1)) AS b \
                 WHERE terminal_docs.id = b.terminal",
            )
            .bind(to_json(&docs)?)
            .execute(&mut *tx)
            .await?;
        }
        SqlStore::<Self>::queue_items_in(&mut tx, &relayed).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn addresses(
        store: &SqlStore<Self>,
        terminal: &str,
    ) -> Result<Vec<AddressRow>, StoreError> {
        // The network map's rows plus the check-ins counted on the terminal for its current
        // address (see `record_checkins`).
        sqlx::query(
            "SELECT address, min(first_seen) AS first_seen, max(last_seen) AS last_seen, \
                 sum(checkins) AS checkins \
             FROM (SELECT address, first_seen, last_seen, checkins FROM terminal_addresses \
                       WHERE terminal = ?1 \
                   UNION ALL \
                   SELECT last_address, address_first, address_last, address_checkins \
                       FROM terminals WHERE id = ?1 AND address_checkins > 0) \
             GROUP BY address ORDER BY max(last_seen) DESC, address",
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
    use super::*;

    /// A power cut must not lose what the center acknowledged: every commit of the writer is
    /// synced (`synchronous = FULL`, 2) before the transaction returns, on a WAL database.
    #[tokio::test]
    async fn a_power_cut_cannot_lose_an_acknowledged_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("herd.db"))
            .await
            .unwrap();
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&store.writer)
            .await
            .unwrap();
        assert_eq!(
            synchronous, 2,
            "the writer must run with synchronous = FULL"
        );
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.writer)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
    }
}
