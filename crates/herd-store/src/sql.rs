//! [`SqlStore`]: the [`Store`] written once over `sqlx::Database`, for both backends. A backend
//! is a [`Dialect`]: how its transactions begin and lock, the few statements whose SQL differs
//! (its schema splits a terminal in two on SQLite), and its own check-in path, which is where
//! the two backends genuinely differ. Everything else (publishing, enrolment, groups, rules,
//! events…) is one transaction here, in SQL both databases accept: `$N` placeholders (sqlx
//! binds them by number on SQLite too), `ON CONFLICT … DO UPDATE`, `RETURNING`, and `CAST`
//! wherever PostgreSQL's types are narrower or JSON yields text.
//!
//! It is not where rows are decoded or batches encoded: that is `common.rs`.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use async_trait::async_trait;
use sqlx::{
    AssertSqlSafe, ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row,
    Transaction, Type,
};

use crate::common::{
    ENROL_TOKEN_COLUMNS, PLAN_REPORT, api_token_from_row, ca_material, conflict_on_unique,
    enrol_token_from_row, event_from_row, events_of_one_terminal, feed_from_row, from_db_int,
    group_from_row, group_with_count_from_row, ids_json, limit_or_all, online_key_from_row,
    package_content_from_row, package_from_row, rule_from_row, rules_json, terminal_from_row,
    threat_owner_from_row, to_db_int, to_json, tuf_document_from_row, vendor_approval_from_row,
    vendor_key_from_row, vendor_role_from_row,
};
use crate::{
    AddressRow, AlertAttempt, AlertDeliveryRow, AlertWindowRow, ApiTokenRow, AppendOutcome,
    Approval, Backend, CaMaterial, CheckinWrite, ConsoleLinkRow, ConsoleSessionRow, EnrolError,
    EnrolTokenRow, EventRow, EventsWrite, FaultBucketKey, FaultBucketRow, FaultRow, FaultRuleRow,
    FaultWrite, FeedClaims, FeedPolled, FeedSourceRow, FileVerdictRow, FleetCountRow, GroupRow,
    HerdBodySignatureRow, HerdFeedBuild, HerdSignatureRow, HerdThreatRow, InterfaceRow,
    InterfaceSeen, LinkTaken, MessageQuery, MessageRow, NewAlertDelivery, NewMessage, NewTerminal,
    OnlineKeyRow, OnlineKeyState, PackageContent, PackageRow, PublishOutcome, QueueItem,
    QueueStats, QueuedItem, Registry, RenewError, ReplacementRow, Revisions, RevokedToken, Role,
    RolloutCounts, RolloutRow, RuleRow, SampleRow, SiteRow, Store, StoreError, StoredFeed,
    TUF_VERSIONS_KEPT, TerminalQuery, TerminalRow, TufDocument, TufSigned, TufState, UNKNOWN_GROUP,
    VendorKeyRow,
};

/// What sets one database apart; implemented by `sqlx::Sqlite` (`sqlite.rs`) and
/// `sqlx::Postgres` (`postgres.rs`).
pub trait Dialect: Database {
    const BACKEND: Backend;
    /// Begins every write transaction.
    const BEGIN_WRITE: &'static str;
    /// Begins a read-only transaction whose statements all see one snapshot.
    const BEGIN_SNAPSHOT: &'static str;
    /// Run first in a publish, where `BEGIN_WRITE` alone does not serialise publishes.
    const LOCK_PUBLISHES: Option<&'static str>;
    /// Run first in every transaction that appends to `terminal_changes`, where `BEGIN_WRITE`
    /// alone does not make those transactions commit in the order of the ids they take.
    const LOCK_TERMINAL_CHANGES: Option<&'static str>;
    /// `SELECT id FROM groups WHERE id = $1`, locking the row where a concurrent enrolment could
    /// otherwise add a terminal to the group while it is being deleted.
    const SELECT_GROUP_TO_DELETE: &'static str;
    /// `SELECT` of the columns `terminal_from_row` reads `FROM terminals AS t` (and whatever
    /// else holds them); callers append conditions on `t.id`, `t.group_id`, `t.plan_action`.
    const SELECT_TERMINALS: &'static str;
    /// The user-name column in [`Dialect::SELECT_TERMINALS`]'s tables.
    const TERMINAL_USER_NAME: &'static str;
    /// Sets the `last_report` of the terminals `$1` names (a JSON array of `[id]` arrays) to the
    /// data of each one's plan report with the highest seq.
    const UPDATE_LAST_REPORT: &'static str;
    /// Sets terminal `$1`'s current certificate to `$2` where it is `$3`, changing one row or
    /// none (the schemas keep `cert_sha256` in different tables).
    const UPDATE_CERT_FROM: &'static str;

    /// Wake-ups when another process moves a revision, where the backend has them.
    fn revision_changes(_store: &SqlStore<Self>) -> Option<crate::RevisionChanges> {
        None
    }

    /// The live messages of other processes, where the backend carries them.
    fn live_messages(
        _store: &SqlStore<Self>,
    ) -> Option<tokio::sync::broadcast::Receiver<std::sync::Arc<str>>> {
        None
    }

    /// A table expression over the elements of the JSON array in parameter `param`, named `r`
    /// with one column `value` (so `r.value ->> 0` is the first field of an element).
    fn json_rows(param: &str) -> String;

    /// How many rows a statement changed (sqlx offers it per database, not generically).
    fn rows_affected(result: &Self::QueryResult) -> u64;

    /// Inserts a new terminal's own rows (not its network map). A unique violation means the
    /// id is taken and a foreign-key violation that its group is gone; callers map both.
    fn insert_terminal(
        connection: &mut Self::Connection,
        terminal: &NewTerminal,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// [`Store::record_checkins`], the hot path, which each backend stores its own way.
    fn record_checkins(
        store: &SqlStore<Self>,
        batch: &[CheckinWrite],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// [`Store::addresses`], which reads what `record_checkins` wrote.
    fn addresses(
        store: &SqlStore<Self>,
        terminal: &str,
    ) -> impl Future<Output = Result<Vec<AddressRow>, StoreError>> + Send;
}

/// The store on one database. Use it as `SqliteStore` or `PostgresStore`.
#[derive(Debug)]
pub struct SqlStore<DB: Database> {
    /// Where write transactions run (on SQLite exactly one connection).
    pub(crate) writer: Pool<DB>,
    /// Where reads run (on PostgreSQL the same pool as `writer`).
    pub(crate) reader: Pool<DB>,
    /// The revision wake-ups, once asked for (PostgreSQL's listener task feeds them).
    pub(crate) revision_changes: std::sync::OnceLock<crate::RevisionChanges>,
    /// The live messages' broadcast, once asked for (PostgreSQL's live listener feeds it).
    pub(crate) live_messages:
        std::sync::OnceLock<tokio::sync::broadcast::Sender<std::sync::Arc<str>>>,
}

impl<DB: Dialect> SqlStore<DB> {
    /// A write transaction, begun the dialect's way.
    pub(crate) async fn write(&self) -> Result<Transaction<'static, DB>, StoreError> {
        Ok(self.writer.begin_with(DB::BEGIN_WRITE).await?)
    }
}

fn revision(value: i64, which: &str) -> Result<u64, StoreError> {
    from_db_int(value, &format!("{which} revision"))
}

/// A statement assembled from the dialect's fragments: dynamic only in which constant pieces
/// it joins, never in values, which are always bound.
fn assembled(sql: String) -> AssertSqlSafe<String> {
    AssertSqlSafe(sql)
}

fn is_foreign_key_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|db| db.is_foreign_key_violation())
}

/// The most rows one multi-row statement of the site's queue writes.
const QUEUE_CHUNK: usize = 64;

/// Sizes that add up to `n`: as many [`QUEUE_CHUNK`]s as fit, then powers of two, so the
/// statements of every size stay few enough for each connection's statement cache.
fn chunk_sizes(n: usize) -> impl Iterator<Item = usize> {
    let full = std::iter::repeat_n(QUEUE_CHUNK, n / QUEUE_CHUNK);
    let rest = n % QUEUE_CHUNK;
    full.chain(
        (0..usize::BITS)
            .rev()
            .map(|bit| 1usize << bit)
            .filter(move |size| rest & size != 0),
    )
}

/// `$first, $first+1, …`: `count` numbered placeholders.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The outcome of every batch, each decided by [`SqlStore::append_events_many_in`].
fn decided(
    outcomes: Vec<Option<Result<AppendOutcome, StoreError>>>,
) -> Vec<Result<AppendOutcome, StoreError>> {
    outcomes
        .into_iter()
        .map(|outcome| {
            outcome.unwrap_or_else(|| {
                Err(StoreError::Conflict(
                    "a batch of events was left undecided".to_owned(),
                ))
            })
        })
        .collect()
}

/// The helpers of the transactions below. (The bounds say what the shared SQL needs of a
/// database; they are repeated on the `Store` impl because Rust does not infer them from
/// `Dialect`.)
impl<DB> SqlStore<DB>
where
    DB: Dialect,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> Option<&'a str>: Encode<'a, DB> + Type<DB>,
    for<'a> i64: Encode<'a, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    &'static str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
{
    /// Bumps the groups revision. Called first in every change of groups or rules: on
    /// PostgreSQL the row lock it takes queues concurrent changes behind each other.
    async fn bump_groups(tx: &mut Transaction<'static, DB>) -> Result<(), StoreError> {
        sqlx::query("UPDATE revisions SET groups = groups + 1 WHERE id = 1")
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Why an enrolment token of `kind` (`terminal` or `site`) gave no use: unknown (or of the
    /// other kind), expired, or used up.
    async fn token_refusal(
        tx: &mut Transaction<'static, DB>,
        token_hash: &str,
        now: i64,
        kind: &str,
    ) -> EnrolError {
        let expires_at: Result<Option<i64>, sqlx::Error> =
            sqlx::query_scalar("SELECT expires_at FROM enrol_tokens WHERE hash = $1 AND kind = $2")
                .bind(token_hash)
                .bind(kind)
                .fetch_optional(&mut **tx)
                .await;
        match expires_at {
            Err(err) => StoreError::from(err).into(),
            Ok(None) => EnrolError::TokenUnknown,
            Ok(Some(expires_at)) if expires_at <= now => EnrolError::TokenExpired,
            Ok(Some(_)) => EnrolError::TokenUsedUp,
        }
    }

    /// Appends a site's queue items in `tx`, in order; a `checkin` replaces the terminal's
    /// waiting one. A few statements for the whole list, not two per item: on SQLite every
    /// statement is a round trip to the connection's thread, and a site queues one check-in
    /// and one batch of events per terminal it serves.
    pub(crate) async fn queue_items_in(
        tx: &mut Transaction<'static, DB>,
        items: &[QueueItem],
    ) -> Result<(), StoreError> {
        // Of several check-ins of one terminal only the last stays (each replaces the one
        // before), in its own place.
        let mut last_checkin: HashMap<&str, usize> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            if item.kind == "checkin" {
                last_checkin.insert(item.terminal.as_str(), i);
            }
        }
        let kept: Vec<(&QueueItem, Option<&str>)> = items
            .iter()
            .enumerate()
            .filter(|(i, item)| {
                item.kind != "checkin" || last_checkin[item.terminal.as_str()] == *i
            })
            .map(|(_, item)| {
                let checkin_of = (item.kind == "checkin").then_some(item.terminal.as_str());
                (item, checkin_of)
            })
            .collect();
        let replaced: Vec<&str> = kept.iter().filter_map(|(_, of)| *of).collect();
        let mut rest = replaced.as_slice();
        for size in chunk_sizes(replaced.len()) {
            let (chunk, after) = rest.split_at(size);
            rest = after;
            let mut statement = sqlx::query(assembled(format!(
                "DELETE FROM site_queue WHERE checkin_of IN ({})",
                placeholders(1, chunk.len())
            )));
            for terminal in chunk {
                statement = statement.bind(*terminal);
            }
            statement.execute(&mut **tx).await?;
        }
        // Rows are numbered in the order of the VALUES list.
        let mut rest = kept.as_slice();
        for size in chunk_sizes(kept.len()) {
            let (chunk, after) = rest.split_at(size);
            rest = after;
            let values = (0..chunk.len())
                .map(|row| format!("({})", placeholders(5 * row + 1, 5)))
                .collect::<Vec<_>>()
                .join(", ");
            let mut statement = sqlx::query(assembled(format!(
                "INSERT INTO site_queue (terminal, kind, body, created_at, checkin_of) VALUES {values}"
            )));
            for (item, checkin_of) in chunk {
                statement = statement
                    .bind(item.terminal.as_str())
                    .bind(item.kind.as_str())
                    .bind(item.body.as_str())
                    .bind(item.created_at)
                    .bind(*checkin_of);
            }
            statement.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Appends several terminals' batches of events in `tx` (see [`Store::events_append_many`])
    /// with a fixed number of statements, whatever the number of batches: on SQLite every
    /// statement is a round trip to the connection's thread. Each inner result is one batch's
    /// outcome or refusal (not enrolled, mixed terminals), which leaves `tx` usable; the outer
    /// one a failure of the transaction. A batch's relay item is queued only when it is
    /// stored.
    async fn append_events_many_in(
        tx: &mut Transaction<'static, DB>,
        batches: &[EventsWrite],
    ) -> Result<Vec<Result<AppendOutcome, StoreError>>, StoreError> {
        let not_enrolled = |terminal: &str| {
            StoreError::NotFound(format!(
                "cannot store events of terminal {terminal:?}: it is not enrolled"
            ))
        };
        // Each batch's terminal, or its refusal; empty batches change nothing.
        let mut outcomes: Vec<Option<Result<AppendOutcome, StoreError>>> = Vec::new();
        let mut terminals: Vec<&str> = Vec::new();
        for batch in batches {
            match batch.rows.first() {
                None => outcomes.push(Some(Ok(AppendOutcome::default()))),
                Some(first) => match events_of_one_terminal(&batch.rows) {
                    Ok(()) => {
                        terminals.push(first.terminal.as_str());
                        outcomes.push(None);
                    }
                    Err(err) => outcomes.push(Some(Err(err))),
                },
            }
        }
        terminals.sort_unstable();
        terminals.dedup();
        if terminals.is_empty() {
            return Ok(decided(outcomes));
        }
        let terminals_json = ids_json(&terminals)?;
        let known: HashSet<String> = sqlx::query_scalar(assembled(format!(
            "SELECT id FROM terminals WHERE id IN (SELECT r.value ->> 0 FROM {})",
            DB::json_rows("$1")
        )))
        .bind(terminals_json.as_str())
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .collect();
        // `[terminal, seq, at, kind, data, received_at]` of every batch stored.
        let mut rows = Vec::new();
        let mut reporting: Vec<&str> = Vec::new();
        for (batch, outcome) in batches.iter().zip(outcomes.iter_mut()) {
            if outcome.is_some() {
                continue;
            }
            let terminal = batch.rows[0].terminal.as_str();
            if !known.contains(terminal) {
                *outcome = Some(Err(not_enrolled(terminal)));
                continue;
            }
            for event in &batch.rows {
                rows.push((
                    terminal,
                    to_db_int(event.seq, "event seq")?,
                    event.at,
                    event.kind.as_str(),
                    event.data.as_str(),
                    event.received_at,
                ));
            }
            if batch.rows.iter().any(|event| event.kind == PLAN_REPORT) {
                reporting.push(terminal);
            }
        }
        let storing: Vec<&str> = terminals
            .iter()
            .copied()
            .filter(|terminal| known.contains(*terminal))
            .collect();
        if storing.is_empty() {
            return Ok(decided(outcomes));
        }
        // `WHERE true` tells SQLite's parser that `ON CONFLICT` is not a join constraint. The
        // rows returned are those stored: an event already stored (or twice in these batches)
        // counts as stored for the first batch that carries it, as if appended one by one.
        let inserted: HashSet<(String, i64)> = sqlx::query(assembled(format!(
            "INSERT INTO events (terminal, seq, at, kind, data, received_at) \
             SELECT r.value ->> 0, CAST(r.value ->> 1 AS BIGINT), CAST(r.value ->> 2 AS BIGINT), \
                    r.value ->> 3, r.value ->> 4, CAST(r.value ->> 5 AS BIGINT) \
             FROM {} WHERE true \
             ON CONFLICT (terminal, seq) DO NOTHING \
             RETURNING terminal, seq",
            DB::json_rows("$1")
        )))
        .bind(to_json(&rows)?.as_str())
        .fetch_all(&mut **tx)
        .await
        .map_err(|e| {
            // A terminal was deleted since the check above (PostgreSQL); the transaction is
            // aborted, so this fails it whole (and the caller stores each batch alone).
            if is_foreign_key_violation(&e) && storing.len() == 1 {
                not_enrolled(storing[0])
            } else {
                StoreError::Db(e)
            }
        })?
        .iter()
        .map(|row| Ok((row.try_get::<String, _>(0)?, row.try_get::<i64, _>(1)?)))
        .collect::<Result<_, sqlx::Error>>()?;
        if !reporting.is_empty() {
            reporting.sort_unstable();
            reporting.dedup();
            // The report with the highest seq wins, whatever order reports arrive in.
            let reporting_json = ids_json(&reporting)?;
            sqlx::query(DB::UPDATE_LAST_REPORT)
                .bind(reporting_json.as_str())
                .execute(&mut **tx)
                .await?;
        }
        let storing_json = ids_json(&storing)?;
        let last_seqs: HashMap<String, i64> = sqlx::query(assembled(format!(
            "SELECT terminal, max(seq) AS last_seq FROM events \
             WHERE terminal IN (SELECT r.value ->> 0 FROM {}) GROUP BY terminal",
            DB::json_rows("$1")
        )))
        .bind(storing_json.as_str())
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|row| Ok((row.try_get::<String, _>(0)?, row.try_get::<i64, _>(1)?)))
        .collect::<Result<_, sqlx::Error>>()?;
        let mut counted: HashSet<(&str, i64)> = HashSet::new();
        let mut relayed = Vec::new();
        for (batch, outcome) in batches.iter().zip(outcomes.iter_mut()) {
            if outcome.is_some() {
                continue;
            }
            let terminal = batch.rows[0].terminal.as_str();
            let mut accepted = 0;
            for event in &batch.rows {
                let seq = to_db_int(event.seq, "event seq")?;
                if inserted.contains(&(terminal.to_owned(), seq)) && counted.insert((terminal, seq))
                {
                    accepted += 1;
                }
            }
            let last_seq = last_seqs.get(terminal).copied().unwrap_or(0);
            *outcome = Some(Ok(AppendOutcome {
                accepted,
                duplicates: batch.rows.len() as u64 - accepted,
                last_seq: from_db_int(last_seq, "event seq")?,
            }));
            if let Some(item) = &batch.relay {
                relayed.push(item.clone());
            }
        }
        Self::queue_items_in(tx, &relayed).await?;
        Ok(decided(outcomes))
    }

    /// Makes `site` the site a terminal came through last, and one that may relay for it.
    async fn record_site_terminal(
        tx: &mut Transaction<'static, DB>,
        site: &str,
        terminal: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE terminals SET site = $2 WHERE id = $1")
            .bind(terminal)
            .bind(site)
            .execute(&mut **tx)
            .await?;
        sqlx::query(
            "INSERT INTO site_terminals (site, terminal) VALUES ($1, $2) \
             ON CONFLICT (site, terminal) DO NOTHING",
        )
        .bind(site)
        .bind(terminal)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Takes the lock that orders terminal changes; first in the transaction, before any row
    /// lock, so it cannot close a cycle with one (enrolments also lock their token's row).
    async fn lock_terminal_changes(tx: &mut Transaction<'static, DB>) -> Result<(), StoreError> {
        if let Some(lock) = DB::LOCK_TERMINAL_CHANGES {
            sqlx::query(lock).execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Appends a change of `terminal` to the log (after [`Self::lock_terminal_changes`]).
    async fn log_terminal_change(
        tx: &mut Transaction<'static, DB>,
        terminal: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO terminal_changes (terminal) VALUES ($1)")
            .bind(terminal)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// The rest of an enrolment with a re-enrolment token bound to `bound`, whose use `tx`
    /// has taken: replaces the terminal's certificate, forgets the previous one, and commits.
    async fn reenrol(
        mut tx: Transaction<'static, DB>,
        bound: String,
        terminal: NewTerminal,
    ) -> Result<TerminalRow, EnrolError> {
        if bound != terminal.id {
            return Err(EnrolError::TokenForAnotherTerminal {
                bound,
                asked: terminal.id,
            });
        }
        let select = assembled(format!("{} WHERE t.id = $1", DB::SELECT_TERMINALS));
        let Some(row) = sqlx::query(select)
            .bind(bound.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::from)?
        else {
            return Err(EnrolError::ReenrolTerminalGone(bound));
        };
        let old = terminal_from_row(&row)?;
        sqlx::query(DB::UPDATE_CERT_FROM)
            .bind(bound.as_str())
            .bind(terminal.cert_sha256.as_str())
            .bind(old.cert_sha256.as_str())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        sqlx::query("DELETE FROM terminal_previous_certs WHERE terminal = $1")
            .bind(bound.as_str())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        Self::log_terminal_change(&mut tx, &bound).await?;
        let row = sqlx::query(assembled(format!(
            "{} WHERE t.id = $1",
            DB::SELECT_TERMINALS
        )))
        .bind(bound.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        let reenrolled = terminal_from_row(&row)?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(reenrolled)
    }

    async fn catalog_revision(connection: &mut DB::Connection) -> Result<u64, StoreError> {
        let catalog: i64 = sqlx::query_scalar("SELECT catalog FROM revisions WHERE id = 1")
            .fetch_one(connection)
            .await?;
        revision(catalog, "catalog")
    }

    async fn registry_in(connection: &mut DB::Connection) -> Result<Registry, StoreError> {
        let threats = sqlx::query(
            "SELECT threat, vendor, status, declared_at FROM threat_owners ORDER BY threat",
        )
        .fetch_all(&mut *connection)
        .await?
        .iter()
        .map(threat_owner_from_row)
        .collect::<Result<_, _>>()?;
        let vendors = sqlx::query(
            "SELECT vendor, status, first_published_at FROM vendor_approvals ORDER BY vendor",
        )
        .fetch_all(&mut *connection)
        .await?
        .iter()
        .map(vendor_approval_from_row)
        .collect::<Result<_, _>>()?;
        Ok(Registry { threats, vendors })
    }

    async fn bump_catalog(connection: &mut DB::Connection) -> Result<u64, StoreError> {
        let catalog: i64 = sqlx::query_scalar(
            "UPDATE revisions SET catalog = catalog + 1 WHERE id = 1 RETURNING catalog",
        )
        .fetch_one(connection)
        .await?;
        revision(catalog, "catalog")
    }

    /// One statement changing one registry row, then a catalog revision bump: `NotFound`
    /// (and nothing changed) when the statement matched no row.
    async fn registry_update(
        &self,
        statement: &'static str,
        first: &str,
        second: &str,
        missing: impl FnOnce() -> String,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let changed = sqlx::query(statement)
            .bind(first)
            .bind(second)
            .execute(&mut *tx)
            .await?;
        if DB::rows_affected(&changed) == 0 {
            tx.rollback().await?;
            return Err(StoreError::NotFound(missing()));
        }
        Self::bump_catalog(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Bumps the TUF revision if it is still `expected` (first in the transaction: on
    /// PostgreSQL the row lock queues concurrent sign rounds, and the one that waited finds the
    /// revision moved); `Conflict` otherwise.
    async fn bump_tuf_from(
        tx: &mut Transaction<'static, DB>,
        expected: u64,
    ) -> Result<u64, StoreError> {
        let bumped: Option<i64> = sqlx::query_scalar(
            "UPDATE revisions SET tuf = tuf + 1 WHERE id = 1 AND tuf = $1 RETURNING tuf",
        )
        .bind(to_db_int(expected, "TUF revision")?)
        .fetch_optional(&mut **tx)
        .await?;
        match bumped {
            Some(tuf) => revision(tuf, "TUF"),
            None => Err(StoreError::Conflict(format!(
                "the signed repository is no longer at revision {expected}: another center \
                 process changed it; read it again"
            ))),
        }
    }

    async fn bump_tuf(tx: &mut Transaction<'static, DB>) -> Result<u64, StoreError> {
        let tuf: i64 =
            sqlx::query_scalar("UPDATE revisions SET tuf = tuf + 1 WHERE id = 1 RETURNING tuf")
                .fetch_one(&mut **tx)
                .await?;
        revision(tuf, "TUF")
    }

    async fn insert_tuf_document(
        tx: &mut Transaction<'static, DB>,
        document: &TufDocument,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tuf_metadata (role, version, expires_at, doc) VALUES ($1, $2, $3, $4)",
        )
        .bind(document.role.as_str())
        .bind(to_db_int(document.version, "TUF version")?)
        .bind(document.expires_at)
        .bind(document.doc.as_str())
        .execute(&mut **tx)
        .await
        .map_err(|err| {
            conflict_on_unique(err, || {
                format!(
                    "version {} of TUF role {} is already signed",
                    document.version, document.role
                )
            })
        })?;
        Ok(())
    }

    async fn insert_online_key(
        tx: &mut Transaction<'static, DB>,
        key: &OnlineKeyRow,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tuf_online_keys (keyid, role, public, sealed, state, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(key.keyid.as_str())
        .bind(key.role.as_str())
        .bind(key.public.as_str())
        .bind(key.sealed.as_str())
        .bind(key.state.as_str())
        .bind(key.created_at)
        .execute(&mut **tx)
        .await
        .map_err(|err| conflict_on_unique(err, || format!("online key {} exists", key.keyid)))?;
        Ok(())
    }

    async fn herd_signatures_in(
        connection: &mut DB::Connection,
    ) -> Result<Vec<HerdSignatureRow>, StoreError> {
        sqlx::query(
            "SELECT sha256, size, name, threat, source, first_terminal, first_signature, \
             created_at FROM herd_signatures ORDER BY sha256",
        )
        .fetch_all(connection)
        .await?
        .iter()
        .map(|row| {
            Ok(HerdSignatureRow {
                sha256: row.try_get("sha256")?,
                size: from_db_int(row.try_get("size")?, "signature size")?,
                name: row.try_get("name")?,
                threat: row.try_get("threat")?,
                source: row.try_get("source")?,
                first_terminal: row.try_get("first_terminal")?,
                first_signature: row.try_get("first_signature")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .collect()
    }

    async fn herd_threats_in(
        connection: &mut DB::Connection,
    ) -> Result<Vec<HerdThreatRow>, StoreError> {
        sqlx::query("SELECT id, name, danger, first_seen FROM herd_threats ORDER BY id")
            .fetch_all(connection)
            .await?
            .iter()
            .map(|row| {
                Ok(HerdThreatRow {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    danger: row.try_get("danger")?,
                    first_seen: row.try_get("first_seen")?,
                })
            })
            .collect()
    }

    async fn feeds_in(
        connection: &mut DB::Connection,
        except_vendor: &str,
    ) -> Result<Vec<StoredFeed>, StoreError> {
        sqlx::query(
            "SELECT vendor, doc, sha256, published_at FROM feeds WHERE vendor <> $1 \
             ORDER BY vendor",
        )
        .bind(except_vendor)
        .fetch_all(connection)
        .await?
        .iter()
        .map(feed_from_row)
        .collect()
    }
}

#[async_trait]
impl<DB> Store for SqlStore<DB>
where
    DB: Dialect,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> Option<&'a str>: Encode<'a, DB> + Type<DB>,
    for<'a> i64: Encode<'a, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    &'static str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
{
    fn backend(&self) -> Backend {
        DB::BACKEND
    }

    fn revision_changes(&self) -> Option<crate::RevisionChanges> {
        DB::revision_changes(self)
    }

    fn live_messages(&self) -> Option<tokio::sync::broadcast::Receiver<std::sync::Arc<str>>> {
        DB::live_messages(self)
    }

    async fn live_send(&self, payload: &str) -> Result<(), StoreError> {
        if DB::live_messages(self).is_none() {
            return Ok(());
        }
        // A longer payload is refused by PostgreSQL itself ("payload string too long").
        // The channel of this schema's fleet (see `postgres::live_channel`).
        sqlx::query("SELECT pg_notify($1 || '.' || current_schema(), $2)")
            .bind(crate::LIVE_CHANNEL)
            .bind(payload)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn ca_get_or_insert(&self, candidate: CaMaterial) -> Result<CaMaterial, StoreError> {
        // A racing insert either wins or waits for the winner's commit and does nothing; the
        // SELECT then sees the winner's row (on PostgreSQL each statement of a READ COMMITTED
        // transaction sees what committed before it began).
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO ca (id, cert_pem, key_pem, trust_pem, generation) \
             VALUES (1, $1, $2, $3, 1) ON CONFLICT (id) DO NOTHING",
        )
        .bind(candidate.cert_pem.as_str())
        .bind(candidate.key_pem.as_str())
        .bind(candidate.trust_pem.as_deref())
        .execute(&mut *tx)
        .await?;
        let row =
            sqlx::query("SELECT cert_pem, key_pem, trust_pem, generation FROM ca WHERE id = 1")
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        ca_material(&row)
    }

    async fn ca_get(&self) -> Result<Option<CaMaterial>, StoreError> {
        let row =
            sqlx::query("SELECT cert_pem, key_pem, trust_pem, generation FROM ca WHERE id = 1")
                .fetch_optional(&self.reader)
                .await?;
        row.as_ref().map(ca_material).transpose()
    }

    async fn ca_replace(
        &self,
        expected_generation: u64,
        replacement: CaMaterial,
    ) -> Result<CaMaterial, StoreError> {
        let mut tx = self.write().await?;
        let row = sqlx::query(
            "UPDATE ca SET cert_pem = $1, key_pem = $2, trust_pem = $3, generation = generation + 1 \
             WHERE id = 1 AND generation = $4 \
             RETURNING cert_pem, key_pem, trust_pem, generation",
        )
        .bind(replacement.cert_pem.as_str())
        .bind(replacement.key_pem.as_str())
        .bind(replacement.trust_pem.as_deref())
        .bind(to_db_int(expected_generation, "CA generation")?)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(StoreError::Conflict(format!(
                "the CA is no longer at generation {expected_generation}: another center \
                 process replaced it; try again"
            )));
        };
        let stored = ca_material(&row)?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn revisions(&self) -> Result<Revisions, StoreError> {
        // One statement, so one snapshot on either database.
        let row = sqlx::query(
            "SELECT catalog, groups, \
                 (SELECT coalesce(max(id), 0) FROM terminal_changes) AS terminals, \
                 (SELECT coalesce(max(generation), 0) FROM ca) AS ca, tuf \
             FROM revisions WHERE id = 1",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(Revisions {
            catalog: revision(row.try_get("catalog")?, "catalog")?,
            groups: revision(row.try_get("groups")?, "groups")?,
            terminals: revision(row.try_get("terminals")?, "terminals")?,
            ca: revision(row.try_get("ca")?, "CA")?,
            tuf: revision(row.try_get("tuf")?, "TUF")?,
        })
    }

    async fn feeds(&self) -> Result<(u64, Vec<StoredFeed>), StoreError> {
        // One snapshot for both statements: the revision belongs to exactly these feeds.
        let mut tx = self.reader.begin_with(DB::BEGIN_SNAPSHOT).await?;
        let catalog = Self::catalog_revision(&mut *tx).await?;
        // No vendor is the empty string: this is every feed.
        let feeds = Self::feeds_in(&mut *tx, "").await?;
        tx.commit().await?;
        Ok((catalog, feeds))
    }

    async fn catalog_inputs(&self) -> Result<(u64, Vec<StoredFeed>, Registry), StoreError> {
        let mut tx = self.reader.begin_with(DB::BEGIN_SNAPSHOT).await?;
        let catalog = Self::catalog_revision(&mut *tx).await?;
        let feeds = Self::feeds_in(&mut *tx, "").await?;
        let registry = Self::registry_in(&mut *tx).await?;
        tx.commit().await?;
        Ok((catalog, feeds, registry))
    }

    async fn threat_set_status(&self, threat: &str, status: Approval) -> Result<(), StoreError> {
        self.registry_update(
            "UPDATE threat_owners SET status = $2 WHERE threat = $1",
            threat,
            status.as_str(),
            || format!("no feed declared threat {threat:?}"),
        )
        .await
    }

    async fn threat_reassign(&self, threat: &str, vendor: &str) -> Result<(), StoreError> {
        self.registry_update(
            "UPDATE threat_owners SET vendor = $2 WHERE threat = $1",
            threat,
            vendor,
            || format!("no feed declared threat {threat:?}"),
        )
        .await
    }

    async fn vendor_set_status(&self, vendor: &str, status: Approval) -> Result<(), StoreError> {
        self.registry_update(
            "UPDATE vendor_approvals SET status = $2 WHERE vendor = $1",
            vendor,
            status.as_str(),
            || format!("vendor {vendor:?} never published a feed"),
        )
        .await
    }

    async fn publish_feed(
        &self,
        feed: StoredFeed,
        claims: &FeedClaims,
        check: &(
             dyn for<'a> Fn(&'a [StoredFeed], &'a Registry) -> Result<(), String> + Send + Sync
         ),
    ) -> Result<Result<PublishOutcome, String>, StoreError> {
        let mut tx = self.write().await?;
        // Held until commit or rollback: the feeds `check` sees stay the other vendors' current
        // ones until this publish is stored.
        if let Some(lock) = DB::LOCK_PUBLISHES {
            sqlx::query(lock).execute(&mut *tx).await?;
        }
        let stored_sha: Option<String> =
            sqlx::query_scalar("SELECT sha256 FROM feeds WHERE vendor = $1")
                .bind(feed.vendor.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if stored_sha.as_deref() == Some(feed.sha256.as_str()) {
            let catalog = Self::catalog_revision(&mut *tx).await?;
            tx.commit().await?;
            return Ok(Ok(PublishOutcome {
                revision: catalog,
                changed: false,
            }));
        }
        sqlx::query(
            "INSERT INTO vendor_approvals (vendor, status, first_published_at) \
             VALUES ($1, $2, $3) ON CONFLICT (vendor) DO NOTHING",
        )
        .bind(feed.vendor.as_str())
        .bind(claims.new_vendor_status.as_str())
        .bind(feed.published_at)
        .execute(&mut *tx)
        .await?;
        // One statement for every threat, however many: the ids travel as one JSON array.
        sqlx::query(assembled(format!(
            "INSERT INTO threat_owners (threat, vendor, status, declared_at) \
             SELECT r.value ->> 0, $2, $3, $4 FROM {} WHERE true \
             ON CONFLICT (threat) DO NOTHING",
            DB::json_rows("$1")
        )))
        .bind(to_json(&claims.threats.iter().map(|t| [t]).collect::<Vec<_>>())?.as_str())
        .bind(feed.vendor.as_str())
        .bind(claims.new_threat_status.as_str())
        .bind(feed.published_at)
        .execute(&mut *tx)
        .await?;
        let others = Self::feeds_in(&mut *tx, &feed.vendor).await?;
        let registry = Self::registry_in(&mut *tx).await?;
        if let Err(refusal) = check(&others, &registry) {
            tx.rollback().await?;
            return Ok(Err(refusal));
        }
        sqlx::query(
            "INSERT INTO feeds (vendor, doc, sha256, published_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (vendor) DO UPDATE SET doc = excluded.doc, sha256 = excluded.sha256, \
             published_at = excluded.published_at",
        )
        .bind(feed.vendor.as_str())
        .bind(feed.doc.as_str())
        .bind(feed.sha256.as_str())
        .bind(feed.published_at)
        .execute(&mut *tx)
        .await?;
        let catalog = Self::bump_catalog(&mut *tx).await?;
        tx.commit().await?;
        Ok(Ok(PublishOutcome {
            revision: catalog,
            changed: true,
        }))
    }

    async fn package_put(&self, package: PackageRow) -> Result<bool, StoreError> {
        let size = to_db_int(package.size, "package size")?;
        let inserted = sqlx::query(
            "INSERT INTO packages (sha256, size, vendor, uploaded_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(package.sha256.as_str())
        .bind(size)
        .bind(package.vendor.as_deref())
        .bind(package.uploaded_at)
        .execute(&self.writer)
        .await?;
        Ok(DB::rows_affected(&inserted) == 1)
    }

    async fn package_bytes_of(&self, vendor: &str) -> Result<u64, StoreError> {
        let bytes: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM packages WHERE vendor = $1",
        )
        .bind(vendor)
        .fetch_one(&self.reader)
        .await?;
        from_db_int(bytes, &format!("vendor {vendor:?}'s package bytes"))
    }

    async fn packages(&self) -> Result<Vec<PackageRow>, StoreError> {
        sqlx::query("SELECT sha256, size, vendor, uploaded_at FROM packages ORDER BY sha256")
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(package_from_row)
            .collect()
    }

    async fn package_delete(&self, sha256: &str) -> Result<bool, StoreError> {
        let deleted = sqlx::query("DELETE FROM packages WHERE sha256 = $1")
            .bind(sha256)
            .execute(&self.writer)
            .await?;
        Ok(DB::rows_affected(&deleted) == 1)
    }

    async fn package_content_set(&self, content: &PackageContent) -> Result<(), StoreError> {
        let changed = sqlx::query(
            "UPDATE packages SET content_sha256 = $2, content_length = $3 WHERE sha256 = $1",
        )
        .bind(content.sha256.as_str())
        .bind(content.content_sha256.as_str())
        .bind(to_db_int(content.content_length, "content length")?)
        .execute(&self.writer)
        .await?;
        if DB::rows_affected(&changed) == 0 {
            return Err(StoreError::NotFound(format!(
                "package {} is not stored",
                content.sha256
            )));
        }
        Ok(())
    }

    async fn package_contents(&self) -> Result<Vec<PackageContent>, StoreError> {
        sqlx::query(
            "SELECT sha256, content_sha256, content_length FROM packages \
             WHERE content_sha256 IS NOT NULL AND content_length IS NOT NULL ORDER BY sha256",
        )
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(package_content_from_row)
        .collect()
    }

    async fn tuf_state(&self) -> Result<TufState, StoreError> {
        let mut tx = self.reader.begin_with(DB::BEGIN_SNAPSHOT).await?;
        let tuf: i64 = sqlx::query_scalar("SELECT tuf FROM revisions WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let roots = sqlx::query(
            "SELECT role, version, expires_at, doc FROM tuf_metadata WHERE role = 'root' \
             ORDER BY version",
        )
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(tuf_document_from_row)
        .collect::<Result<_, _>>()?;
        let latest = sqlx::query(
            "SELECT m.role, m.version, m.expires_at, m.doc FROM tuf_metadata AS m \
             JOIN (SELECT role, max(version) AS version FROM tuf_metadata \
                   WHERE role <> 'root' GROUP BY role) AS newest \
             ON m.role = newest.role AND m.version = newest.version ORDER BY m.role",
        )
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(tuf_document_from_row)
        .collect::<Result<_, _>>()?;
        let online_keys = sqlx::query(
            "SELECT keyid, role, public, sealed, state, created_at FROM tuf_online_keys \
             ORDER BY role, keyid",
        )
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(online_key_from_row)
        .collect::<Result<_, _>>()?;
        let vendor_keys = sqlx::query(
            "SELECT vendor, keyid, public, registered_at FROM tuf_vendor_keys ORDER BY vendor",
        )
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(vendor_key_from_row)
        .collect::<Result<_, _>>()?;
        let vendor_roles = sqlx::query(
            "SELECT vendor, version, doc, uploaded_at FROM tuf_vendor_roles ORDER BY vendor",
        )
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(vendor_role_from_row)
        .collect::<Result<_, _>>()?;
        tx.commit().await?;
        Ok(TufState {
            revision: revision(tuf, "TUF")?,
            roots,
            latest,
            online_keys,
            vendor_keys,
            vendor_roles,
        })
    }

    async fn tuf_initialise(
        &self,
        root: &TufDocument,
        keys: &[OnlineKeyRow],
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        // The revision row first: on PostgreSQL its lock queues a racing first start behind
        // this one, which then finds the root and writes nothing.
        Self::bump_tuf(&mut tx).await?;
        let inserted = sqlx::query(
            "INSERT INTO tuf_metadata (role, version, expires_at, doc) \
             SELECT 'root', $1, $2, $3 WHERE NOT EXISTS \
             (SELECT 1 FROM tuf_metadata WHERE role = 'root') \
             ON CONFLICT (role, version) DO NOTHING",
        )
        .bind(to_db_int(root.version, "root version")?)
        .bind(root.expires_at)
        .bind(root.doc.as_str())
        .execute(&mut *tx)
        .await?;
        if DB::rows_affected(&inserted) == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        for key in keys {
            Self::insert_online_key(&mut tx, key).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn tuf_sign(
        &self,
        expected_revision: u64,
        signed: &TufSigned,
    ) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        let tuf = Self::bump_tuf_from(&mut tx, expected_revision).await?;
        for document in &signed.documents {
            Self::insert_tuf_document(&mut tx, document).await?;
            if document.role != "root" {
                sqlx::query("DELETE FROM tuf_metadata WHERE role = $1 AND version <= $2")
                    .bind(document.role.as_str())
                    .bind(to_db_int(
                        document.version.saturating_sub(TUF_VERSIONS_KEPT),
                        "TUF version",
                    )?)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        if let Some(upload) = &signed.upload {
            sqlx::query(
                "INSERT INTO tuf_vendor_roles (vendor, version, doc, uploaded_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (vendor) DO UPDATE SET \
                 version = excluded.version, doc = excluded.doc, uploaded_at = excluded.uploaded_at",
            )
            .bind(upload.vendor.as_str())
            .bind(to_db_int(upload.version, "role version")?)
            .bind(upload.doc.as_str())
            .bind(upload.uploaded_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(tuf)
    }

    async fn tuf_root_install(
        &self,
        expected_revision: u64,
        root: &TufDocument,
        active_keyids: &[String],
    ) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        let tuf = Self::bump_tuf_from(&mut tx, expected_revision).await?;
        Self::insert_tuf_document(&mut tx, root).await?;
        for keyid in active_keyids {
            let changed = sqlx::query("UPDATE tuf_online_keys SET state = $2 WHERE keyid = $1")
                .bind(keyid.as_str())
                .bind(OnlineKeyState::Active.as_str())
                .execute(&mut *tx)
                .await?;
            if DB::rows_affected(&changed) == 0 {
                tx.rollback().await?;
                return Err(StoreError::NotFound(format!(
                    "the center holds no online key {keyid}"
                )));
            }
        }
        sqlx::query(assembled(format!(
            "DELETE FROM tuf_online_keys WHERE state = $1 AND keyid NOT IN \
             (SELECT r.value ->> 0 FROM {} WHERE true)",
            DB::json_rows("$2")
        )))
        .bind(OnlineKeyState::Active.as_str())
        .bind(to_json(&active_keyids.iter().map(|k| [k]).collect::<Vec<_>>())?.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(tuf)
    }

    async fn tuf_online_key_add(&self, key: &OnlineKeyRow) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        let tuf = Self::bump_tuf(&mut tx).await?;
        Self::insert_online_key(&mut tx, key).await?;
        tx.commit().await?;
        Ok(tuf)
    }

    async fn tuf_vendor_key_put(&self, key: &VendorKeyRow) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        let tuf = Self::bump_tuf(&mut tx).await?;
        sqlx::query(
            "INSERT INTO tuf_vendor_keys (vendor, keyid, public, registered_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (vendor) DO UPDATE SET \
             keyid = excluded.keyid, public = excluded.public, \
             registered_at = excluded.registered_at",
        )
        .bind(key.vendor.as_str())
        .bind(key.keyid.as_str())
        .bind(key.public.as_str())
        .bind(key.registered_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(tuf)
    }

    async fn tuf_document(
        &self,
        role: &str,
        version: Option<u64>,
    ) -> Result<Option<TufDocument>, StoreError> {
        let row = match version {
            Some(version) => {
                sqlx::query(
                    "SELECT role, version, expires_at, doc FROM tuf_metadata \
                     WHERE role = $1 AND version = $2",
                )
                .bind(role)
                .bind(to_db_int(version, "TUF version")?)
                .fetch_optional(&self.reader)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT role, version, expires_at, doc FROM tuf_metadata \
                     WHERE role = $1 ORDER BY version DESC LIMIT 1",
                )
                .bind(role)
                .fetch_optional(&self.reader)
                .await?
            }
        };
        row.as_ref().map(tuf_document_from_row).transpose()
    }

    async fn package_get(&self, sha256: &str) -> Result<Option<PackageRow>, StoreError> {
        sqlx::query("SELECT sha256, size, vendor, uploaded_at FROM packages WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(package_from_row)
            .transpose()
    }

    async fn api_token_insert(&self, token: ApiTokenRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_tokens (hash, role, vendor, label, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token.hash.as_str())
        .bind(token.role.as_str())
        .bind(token.vendor.as_deref())
        .bind(token.label.as_str())
        .bind(token.created_at)
        .bind(token.expires_at)
        .execute(&self.writer)
        .await
        .map_err(|e| {
            conflict_on_unique(e, || {
                format!("an API token with hash {} already exists", token.hash)
            })
        })?;
        Ok(())
    }

    async fn api_token_find(&self, hash: &str) -> Result<Option<ApiTokenRow>, StoreError> {
        sqlx::query(
            "SELECT hash, role, vendor, label, created_at, expires_at FROM api_tokens \
             WHERE hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.reader)
        .await?
        .as_ref()
        .map(api_token_from_row)
        .transpose()
    }

    async fn api_tokens_count(&self) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM api_tokens")
            .fetch_one(&self.reader)
            .await?;
        from_db_int(count, "API token count")
    }

    async fn enrol_token_insert(&self, token: EnrolTokenRow) -> Result<(), StoreError> {
        let uses_left = to_db_int(token.uses_left, "enrolment token uses")?;
        sqlx::query(
            "INSERT INTO enrol_tokens (hash, label, uses_left, created_at, expires_at, \
             reenrol_terminal) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token.hash.as_str())
        .bind(token.label.as_str())
        .bind(uses_left)
        .bind(token.created_at)
        .bind(token.expires_at)
        .bind(token.reenrol_terminal.as_deref())
        .execute(&self.writer)
        .await
        .map_err(|e| {
            conflict_on_unique(e, || {
                format!("an enrolment token with hash {} already exists", token.hash)
            })
        })?;
        Ok(())
    }

    async fn enrol_token_find(&self, hash: &str) -> Result<Option<EnrolTokenRow>, StoreError> {
        sqlx::query(assembled(format!(
            "SELECT {ENROL_TOKEN_COLUMNS} FROM enrol_tokens WHERE hash = $1"
        )))
        .bind(hash)
        .fetch_optional(&self.reader)
        .await?
        .as_ref()
        .map(enrol_token_from_row)
        .transpose()
    }

    async fn api_tokens(&self) -> Result<Vec<ApiTokenRow>, StoreError> {
        sqlx::query(
            "SELECT hash, role, vendor, label, created_at, expires_at FROM api_tokens \
             ORDER BY created_at, hash",
        )
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(api_token_from_row)
        .collect()
    }

    async fn enrol_tokens(&self) -> Result<Vec<EnrolTokenRow>, StoreError> {
        sqlx::query(assembled(format!(
            "SELECT {ENROL_TOKEN_COLUMNS} FROM enrol_tokens ORDER BY created_at, hash"
        )))
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(enrol_token_from_row)
        .collect()
    }

    async fn token_revoke(
        &self,
        hash_prefix: &str,
        now: i64,
        allow_last_operator: bool,
    ) -> Result<RevokedToken, StoreError> {
        // A prefix is hex, so it holds no LIKE wildcard; short ones would match by accident.
        if hash_prefix.len() < 8 || !hash_prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::NotFound(format!(
                "no token has id {hash_prefix:?} (token ids are at least 8 hex digits)"
            )));
        }
        let pattern = format!("{}%", hash_prefix.to_ascii_lowercase());
        let mut tx = self.write().await?;
        let api: Vec<ApiTokenRow> = sqlx::query(
            "SELECT hash, role, vendor, label, created_at, expires_at FROM api_tokens \
             WHERE hash LIKE $1",
        )
        .bind(pattern.as_str())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(api_token_from_row)
        .collect::<Result<_, _>>()?;
        let enrolment: Vec<EnrolTokenRow> = sqlx::query(assembled(format!(
            "SELECT {ENROL_TOKEN_COLUMNS} FROM enrol_tokens WHERE hash LIKE $1"
        )))
        .bind(pattern.as_str())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(enrol_token_from_row)
        .collect::<Result<_, _>>()?;
        let revoked = match (api.as_slice(), enrolment.as_slice()) {
            ([], []) => {
                return Err(StoreError::NotFound(format!(
                    "no token has id {hash_prefix:?}"
                )));
            }
            ([token], []) => RevokedToken::Api(token.clone()),
            ([], [token]) => RevokedToken::Enrolment(token.clone()),
            _ => {
                return Err(StoreError::Conflict(format!(
                    "several tokens have ids starting with {hash_prefix:?}: give more digits"
                )));
            }
        };
        match &revoked {
            RevokedToken::Api(token) => {
                if token.role == Role::Operator && !allow_last_operator {
                    let others: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM api_tokens WHERE role = 'operator' \
                         AND expires_at > $1 AND hash <> $2",
                    )
                    .bind(now)
                    .bind(token.hash.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
                    if others == 0 {
                        return Err(StoreError::Conflict(format!(
                            "token {:?} is the last operator token still valid: without it \
                             nobody can administer the center (create another operator token \
                             first, or force the revocation)",
                            token.label
                        )));
                    }
                }
                sqlx::query("DELETE FROM api_tokens WHERE hash = $1")
                    .bind(token.hash.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            RevokedToken::Enrolment(token) => {
                sqlx::query("DELETE FROM enrol_tokens WHERE hash = $1")
                    .bind(token.hash.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(revoked)
    }

    async fn terminal_renew_cert(
        &self,
        id: &str,
        presented_sha256: &str,
        new_sha256: &str,
    ) -> Result<(), RenewError> {
        let mut tx = self.write().await?;
        Self::lock_terminal_changes(&mut tx).await?;
        let current = sqlx::query(assembled(format!(
            "{} WHERE t.id = $1",
            DB::SELECT_TERMINALS
        )))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::from)?
        .as_ref()
        .map(terminal_from_row)
        .transpose()?
        .ok_or_else(|| RenewError::TerminalGone(id.to_owned()))?
        .cert_sha256;
        let previous: Option<String> = sqlx::query_scalar(
            "SELECT cert_sha256 FROM terminal_previous_certs WHERE terminal = $1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        if current == presented_sha256 {
            // The certificate renewing becomes the previous one: if the answer is lost, the
            // terminal still holds it and renews again with it.
            sqlx::query(
                "INSERT INTO terminal_previous_certs (terminal, cert_sha256) VALUES ($1, $2) \
                 ON CONFLICT (terminal) DO UPDATE SET cert_sha256 = excluded.cert_sha256",
            )
            .bind(id)
            .bind(presented_sha256)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        } else if previous.as_deref() != Some(presented_sha256) {
            return Err(RenewError::NotCurrent(id.to_owned()));
        }
        // Presented the previous certificate, the terminal never received the current one:
        // it is replaced, and the previous one stays.
        let updated = sqlx::query(DB::UPDATE_CERT_FROM)
            .bind(id)
            .bind(new_sha256)
            .bind(current.as_str())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        if DB::rows_affected(&updated) != 1 {
            return Err(RenewError::NotCurrent(id.to_owned()));
        }
        Self::log_terminal_change(&mut tx, id).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    async fn terminal_previous_cert(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT cert_sha256 FROM terminal_previous_certs WHERE terminal = $1",
        )
        .bind(id)
        .fetch_optional(&self.reader)
        .await?)
    }

    async fn enrol(
        &self,
        token_hash: &str,
        now: i64,
        terminal: NewTerminal,
    ) -> Result<TerminalRow, EnrolError> {
        // Every refusal returns before the commit; dropping `tx` rolls back the use consumed.
        let mut tx = self.write().await?;
        // Enrolments are few (a fleet enrols once), so serialising them all is cheap.
        Self::lock_terminal_changes(&mut tx).await?;
        // One statement takes the use or finds none: on PostgreSQL concurrent enrolments queue
        // on the row lock and re-check `uses_left` after the one before them commits.
        let consumed: Option<Option<String>> = sqlx::query_scalar(
            "UPDATE enrol_tokens SET uses_left = uses_left - 1 \
             WHERE hash = $1 AND uses_left > 0 AND expires_at > $2 AND kind = 'terminal' \
             RETURNING reenrol_terminal",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        if consumed.is_none() {
            return Err(Self::token_refusal(&mut tx, token_hash, now, "terminal").await);
        }
        if let Some(Some(bound)) = consumed {
            return Self::reenrol(tx, bound, terminal).await;
        }
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM terminals WHERE id = $1")
            .bind(terminal.id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        if exists.is_some() {
            return Err(EnrolError::TerminalExists(terminal.id));
        }
        let no_group = || {
            StoreError::NotFound(format!(
                "cannot enrol terminal {:?} into group {:?}: no such group",
                terminal.id, terminal.group
            ))
        };
        let group: Option<String> = sqlx::query_scalar("SELECT id FROM groups WHERE id = $1")
            .bind(terminal.group.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        if group.is_none() {
            return Err(no_group().into());
        }
        if let Err(error) = DB::insert_terminal(&mut *tx, &terminal).await {
            // On PostgreSQL another process may have enrolled the same id, or deleted the
            // group, since the checks above.
            return Err(match error.as_database_error() {
                Some(db) if db.is_unique_violation() => EnrolError::TerminalExists(terminal.id),
                _ if is_foreign_key_violation(&error) => no_group().into(),
                _ => StoreError::Db(error).into(),
            });
        }
        if let Some(site) = &terminal.site {
            Self::record_site_terminal(&mut tx, site, &terminal.id)
                .await
                .map_err(StoreError::from)?;
        }
        sqlx::query(
            "INSERT INTO terminal_addresses (terminal, address, first_seen, last_seen, checkins) \
             VALUES ($1, $2, $3, $3, 0)",
        )
        .bind(terminal.id.as_str())
        .bind(terminal.address.as_str())
        .bind(terminal.enrolled_at)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        // A process may still cache a deleted terminal of the same id.
        Self::log_terminal_change(&mut tx, &terminal.id).await?;
        let row = sqlx::query(assembled(format!(
            "{} WHERE t.id = $1",
            DB::SELECT_TERMINALS
        )))
        .bind(terminal.id.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        let enrolled = terminal_from_row(&row)?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(enrolled)
    }

    async fn terminal(&self, id: &str) -> Result<Option<TerminalRow>, StoreError> {
        sqlx::query(assembled(format!(
            "{} WHERE t.id = $1",
            DB::SELECT_TERMINALS
        )))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?
        .as_ref()
        .map(terminal_from_row)
        .transpose()
    }

    async fn terminals(&self, query: &TerminalQuery) -> Result<Vec<TerminalRow>, StoreError> {
        let after = query.after.as_deref().unwrap_or("");
        let limit = limit_or_all(query.limit);
        // One statement per filter combination, each able to use its index; a search scans
        // in id order and stops at the page's end.
        let pattern = query.search.as_deref().map(like_contains);
        let mut condition = String::new();
        let mut next = 3;
        if query.group.is_some() {
            condition.push_str(&format!("t.group_id = ${next} AND "));
            next += 1;
        }
        if query.action.is_some() {
            condition.push_str(&format!("t.plan_action = ${next} AND "));
            next += 1;
        }
        if query.search.is_some() {
            condition.push_str(&format!(
                "(lower(t.id) LIKE ${next} ESCAPE '\\' \
                 OR lower(coalesce({user}, '')) LIKE ${next} ESCAPE '\\') AND ",
                user = DB::TERMINAL_USER_NAME
            ));
        }
        let statement = sqlx::query(assembled(format!(
            "{} WHERE {condition} t.id > $1 ORDER BY t.id LIMIT $2",
            DB::SELECT_TERMINALS
        )))
        .bind(after)
        .bind(limit);
        let statement = match &query.group {
            Some(group) => statement.bind(group.as_str()),
            None => statement,
        };
        let statement = match &query.action {
            Some(action) => statement.bind(action.as_str()),
            None => statement,
        };
        let statement = match &pattern {
            Some(pattern) => statement.bind(pattern.as_str()),
            None => statement,
        };
        statement
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(terminal_from_row)
            .collect()
    }

    async fn terminal_delete(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        Self::lock_terminal_changes(&mut tx).await?;
        // Its documents, addresses and events go with it (ON DELETE CASCADE).
        let deleted = sqlx::query("DELETE FROM terminals WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if DB::rows_affected(&deleted) == 0 {
            return Ok(false);
        }
        Self::log_terminal_change(&mut tx, id).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn terminal_changes(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        let after = to_db_int(after, "terminal change id")?;
        sqlx::query("SELECT id, terminal FROM terminal_changes WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after)
            .bind(limit_or_all(limit))
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(|row| {
                let id: i64 = row.try_get("id")?;
                Ok((
                    from_db_int(id, "terminal change id")?,
                    row.try_get("terminal")?,
                ))
            })
            .collect()
    }

    async fn record_checkins(&self, batch: &[CheckinWrite]) -> Result<(), StoreError> {
        DB::record_checkins(self, batch).await
    }

    async fn addresses(&self, terminal: &str) -> Result<Vec<AddressRow>, StoreError> {
        DB::addresses(self, terminal).await
    }

    async fn record_interfaces(
        &self,
        terminal: &str,
        at: i64,
        seen: &[InterfaceSeen],
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let known = sqlx::query("SELECT 1 FROM terminals WHERE id = $1")
            .bind(terminal)
            .fetch_optional(&mut *tx)
            .await?;
        if known.is_none() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE terminal_interfaces SET current = $2 WHERE terminal = $1 AND current = $3",
        )
        .bind(terminal)
        .bind(0_i64)
        .bind(1_i64)
        .execute(&mut *tx)
        .await?;
        for row in seen {
            sqlx::query(
                "INSERT INTO terminal_interfaces \
                     (terminal, interface, mac, address, first_seen, last_seen, current) \
                 VALUES ($1, $2, $3, $4, $5, $5, $6) \
                 ON CONFLICT (terminal, interface, mac, address) DO UPDATE SET \
                     last_seen = excluded.last_seen, current = excluded.current",
            )
            .bind(terminal)
            .bind(row.interface.as_str())
            .bind(row.mac.as_str())
            .bind(row.address.as_str())
            .bind(at)
            .bind(1_i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn interfaces(&self, terminal: &str) -> Result<Vec<InterfaceRow>, StoreError> {
        sqlx::query(
            "SELECT interface, mac, address, first_seen, last_seen, current \
             FROM terminal_interfaces WHERE terminal = $1 \
             ORDER BY current DESC, last_seen DESC, interface, mac, address",
        )
        .bind(terminal)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(|row| {
            Ok(InterfaceRow {
                interface: row.try_get("interface")?,
                mac: row.try_get("mac")?,
                address: row.try_get("address")?,
                first_seen: row.try_get("first_seen")?,
                last_seen: row.try_get("last_seen")?,
                current: row.try_get::<i64, _>("current")? != 0,
            })
        })
        .collect()
    }

    async fn groups(&self) -> Result<Vec<(GroupRow, u64)>, StoreError> {
        sqlx::query(
            "SELECT g.id, g.description, g.policy, \
                 (SELECT count(*) FROM terminals AS t WHERE t.group_id = g.id) AS terminals \
             FROM groups AS g ORDER BY g.id",
        )
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(group_with_count_from_row)
        .collect()
    }

    async fn group_policies(&self) -> Result<Vec<GroupRow>, StoreError> {
        sqlx::query("SELECT id, description, policy FROM groups ORDER BY id")
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(group_from_row)
            .collect()
    }

    async fn group_put(&self, group: GroupRow) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        Self::bump_groups(&mut tx).await?;
        sqlx::query(
            "INSERT INTO groups (id, description, policy) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET description = excluded.description, \
             policy = excluded.policy",
        )
        .bind(group.id.as_str())
        .bind(group.description.as_str())
        .bind(group.policy.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn group_delete(&self, id: &str) -> Result<(), StoreError> {
        if id == UNKNOWN_GROUP {
            return Err(StoreError::Conflict(format!(
                "group {id:?} cannot be deleted: terminals that no rule places land there"
            )));
        }
        let mut tx = self.write().await?;
        Self::bump_groups(&mut tx).await?;
        let exists: Option<String> = sqlx::query_scalar(DB::SELECT_GROUP_TO_DELETE)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound(format!("group {id:?} does not exist")));
        }
        let terminals: i64 =
            sqlx::query_scalar("SELECT count(*) FROM terminals WHERE group_id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
        if terminals > 0 {
            return Err(StoreError::Conflict(format!(
                "group {id:?} cannot be deleted: {terminals} terminal(s) are in it"
            )));
        }
        // `position` is a 32-bit INTEGER on PostgreSQL.
        let rule: Option<i64> = sqlx::query_scalar(
            "SELECT CAST(position AS BIGINT) FROM rules WHERE group_id = $1 \
             ORDER BY position LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(position) = rule {
            return Err(StoreError::Conflict(format!(
                "group {id:?} cannot be deleted: placement rule {} places terminals in it",
                position + 1
            )));
        }
        sqlx::query("DELETE FROM groups WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if is_foreign_key_violation(&e) {
                    StoreError::Conflict(format!(
                        "group {id:?} cannot be deleted: terminals or rules refer to it"
                    ))
                } else {
                    StoreError::Db(e)
                }
            })?;
        tx.commit().await?;
        Ok(())
    }

    async fn rules(&self) -> Result<Vec<RuleRow>, StoreError> {
        sqlx::query("SELECT group_id, rule FROM rules ORDER BY position")
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(rule_from_row)
            .collect()
    }

    async fn rules_replace(&self, rules: &[RuleRow]) -> Result<(), StoreError> {
        let rules_json = rules_json(rules)?;
        let mut tx = self.write().await?;
        Self::bump_groups(&mut tx).await?;
        let missing = sqlx::query(assembled(format!(
            "SELECT CAST(r.value ->> 0 AS BIGINT) AS position, r.value ->> 1 AS group_id \
             FROM {} \
             WHERE NOT EXISTS (SELECT 1 FROM groups WHERE groups.id = r.value ->> 1) \
             ORDER BY 1 LIMIT 1",
            DB::json_rows("$1")
        )))
        .bind(rules_json.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(missing) = missing {
            let position: i64 = missing.try_get("position")?;
            let group: String = missing.try_get("group_id")?;
            return Err(StoreError::Conflict(format!(
                "placement rule {} names group {group:?}, which does not exist",
                position + 1
            )));
        }
        sqlx::query("DELETE FROM rules").execute(&mut *tx).await?;
        sqlx::query(assembled(format!(
            "INSERT INTO rules (position, group_id, rule) \
             SELECT CAST(r.value ->> 0 AS INTEGER), r.value ->> 1, r.value ->> 2 FROM {}",
            DB::json_rows("$1")
        )))
        .bind(rules_json.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn events_append_many(
        &self,
        batches: &[EventsWrite],
    ) -> Result<Vec<Result<AppendOutcome, StoreError>>, StoreError> {
        if batches.iter().all(|batch| batch.rows.is_empty()) {
            return Ok(batches
                .iter()
                .map(|_| Ok(AppendOutcome::default()))
                .collect());
        }
        let mut tx = self.write().await?;
        let outcomes = Self::append_events_many_in(&mut tx, batches).await?;
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn events_count(&self, terminal: &str) -> Result<u64, StoreError> {
        // Counted on the (terminal, seq) primary key's index: no table rows are read.
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE terminal = $1")
            .bind(terminal)
            .fetch_one(&self.reader)
            .await?;
        from_db_int(count, "event count")
    }

    async fn events(
        &self,
        terminal: Option<&str>,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<EventRow>, StoreError> {
        let after_seq = to_db_int(after_seq, "event seq")?;
        let limit = limit_or_all(limit);
        let statement = match terminal {
            Some(terminal) => sqlx::query(
                "SELECT terminal, seq, at, kind, data, received_at FROM events \
                 WHERE terminal = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .bind(terminal)
            .bind(after_seq)
            .bind(limit),
            None => sqlx::query(
                "SELECT terminal, seq, at, kind, data, received_at FROM events \
                 WHERE seq > $1 ORDER BY terminal, seq LIMIT $2",
            )
            .bind(after_seq)
            .bind(limit),
        };
        statement
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(event_from_row)
            .collect()
    }

    async fn site_token_insert(&self, token: EnrolTokenRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO enrol_tokens (hash, label, uses_left, created_at, expires_at, kind) \
             VALUES ($1, $2, 1, $3, $4, 'site')",
        )
        .bind(token.hash.as_str())
        .bind(token.label.as_str())
        .bind(token.created_at)
        .bind(token.expires_at)
        .execute(&self.writer)
        .await
        .map_err(|e| {
            conflict_on_unique(e, || {
                format!("an enrolment token with hash {} already exists", token.hash)
            })
        })?;
        Ok(())
    }

    async fn site_enrol(
        &self,
        token_hash: &str,
        now: i64,
        id: &str,
        url: &str,
        cert_sha256: &str,
    ) -> Result<SiteRow, EnrolError> {
        let mut tx = self.write().await?;
        let consumed: Option<i64> = sqlx::query_scalar(
            "UPDATE enrol_tokens SET uses_left = uses_left - 1 \
             WHERE hash = $1 AND uses_left > 0 AND expires_at > $2 AND kind = 'site' \
             RETURNING expires_at",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        if consumed.is_none() {
            return Err(Self::token_refusal(&mut tx, token_hash, now, "site").await);
        }
        sqlx::query(
            "INSERT INTO sites (id, url, cert_sha256, enrolled_at, relay_applied) \
             VALUES ($1, $2, $3, $4, 0) \
             ON CONFLICT (id) DO UPDATE SET url = excluded.url, \
             cert_sha256 = excluded.cert_sha256, enrolled_at = excluded.enrolled_at, \
             relay_applied = 0, status = NULL, pushed_at = NULL, \
             previous_cert_sha256 = NULL, renew_requested_at = NULL",
        )
        .bind(id)
        .bind(url)
        .bind(cert_sha256)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        let row = sqlx::query(SITE_SELECT_ONE)
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        let site = site_from_row(&row)?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(site)
    }

    async fn site(&self, id: &str) -> Result<Option<SiteRow>, StoreError> {
        sqlx::query(SITE_SELECT_ONE_UNCOUNTED)
            .bind(id)
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(site_from_row)
            .transpose()
    }

    async fn sites(&self) -> Result<Vec<SiteRow>, StoreError> {
        sqlx::query(assembled(format!("{SITE_SELECT} ORDER BY s.id")))
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(site_from_row)
            .collect()
    }

    async fn site_contact(
        &self,
        id: &str,
        at: i64,
        status: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE sites SET last_contact = $2, status = coalesce($3, status) WHERE id = $1",
        )
        .bind(id)
        .bind(at)
        .bind(status)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn site_relay_advance(&self, id: &str, through: u64) -> Result<(), StoreError> {
        let through = to_db_int(through, "queue seq")?;
        sqlx::query("UPDATE sites SET relay_applied = $2 WHERE id = $1 AND relay_applied < $2")
            .bind(id)
            .bind(through)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn site_renew(
        &self,
        id: &str,
        presented_sha256: &str,
        new_sha256: &str,
    ) -> Result<bool, StoreError> {
        // Renewed from the current certificate: it becomes the previous one. Renewed again
        // from the previous one (the answer was lost): the certificate issued then, which the
        // site never received, is replaced and the previous one stays.
        let result = sqlx::query(
            "UPDATE sites SET \
                 previous_cert_sha256 = CASE WHEN cert_sha256 = $2 THEN cert_sha256 \
                                             ELSE previous_cert_sha256 END, \
                 cert_sha256 = $3, renew_requested_at = NULL \
             WHERE id = $1 AND (cert_sha256 = $2 OR previous_cert_sha256 = $2)",
        )
        .bind(id)
        .bind(presented_sha256)
        .bind(new_sha256)
        .execute(&self.writer)
        .await?;
        Ok(DB::rows_affected(&result) == 1)
    }

    async fn site_request_renewal(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE sites SET renew_requested_at = COALESCE(renew_requested_at, $2) WHERE id = $1",
        )
        .bind(id)
        .bind(at)
        .execute(&self.writer)
        .await?;
        Ok(DB::rows_affected(&result) == 1)
    }

    async fn site_pushed(&self, id: &str, at: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE sites SET pushed_at = $2 WHERE id = $1")
            .bind(id)
            .bind(at)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn site_serves_many(
        &self,
        site: &str,
        terminals: &[&str],
    ) -> Result<HashMap<String, bool>, StoreError> {
        if terminals.is_empty() {
            return Ok(HashMap::new());
        }
        let wanted = ids_json(terminals)?;
        sqlx::query(assembled(format!(
            "SELECT t.id AS id, (SELECT count(*) FROM site_terminals s \
                     WHERE s.site = $1 AND s.terminal = t.id) AS serves \
             FROM terminals t WHERE t.id IN (SELECT r.value ->> 0 FROM {})",
            DB::json_rows("$2")
        )))
        .bind(site)
        .bind(wanted.as_str())
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(|row| Ok((row.try_get("id")?, row.try_get::<i64, _>("serves")? > 0)))
        .collect()
    }

    async fn replicate_catalog(
        &self,
        revision: u64,
        feeds: &[StoredFeed],
        registry: &Registry,
    ) -> Result<(), StoreError> {
        let revision = to_db_int(revision, "catalog revision")?;
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM feeds").execute(&mut *tx).await?;
        sqlx::query("DELETE FROM threat_owners")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM vendor_approvals")
            .execute(&mut *tx)
            .await?;
        for feed in feeds {
            sqlx::query(
                "INSERT INTO feeds (vendor, doc, sha256, published_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(feed.vendor.as_str())
            .bind(feed.doc.as_str())
            .bind(feed.sha256.as_str())
            .bind(feed.published_at)
            .execute(&mut *tx)
            .await?;
        }
        for owner in &registry.threats {
            sqlx::query(
                "INSERT INTO threat_owners (threat, vendor, status, declared_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(owner.threat.as_str())
            .bind(owner.vendor.as_str())
            .bind(owner.status.as_str())
            .bind(owner.declared_at)
            .execute(&mut *tx)
            .await?;
        }
        for vendor in &registry.vendors {
            sqlx::query(
                "INSERT INTO vendor_approvals (vendor, status, first_published_at) \
                 VALUES ($1, $2, $3)",
            )
            .bind(vendor.vendor.as_str())
            .bind(vendor.status.as_str())
            .bind(vendor.first_published_at)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE revisions SET catalog = $1 WHERE id = 1")
            .bind(revision)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn replicate_groups(
        &self,
        revision: u64,
        groups: &[GroupRow],
        rules: &[RuleRow],
    ) -> Result<(), StoreError> {
        let revision = to_db_int(revision, "groups revision")?;
        let rules_json = rules_json(rules)?;
        let mut tx = self.write().await?;
        for group in groups {
            sqlx::query(
                "INSERT INTO groups (id, description, policy) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET description = excluded.description, \
                 policy = excluded.policy",
            )
            .bind(group.id.as_str())
            .bind(group.description.as_str())
            .bind(group.policy.as_str())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM rules").execute(&mut *tx).await?;
        let kept = to_json(&groups.iter().map(|g| [g.id.as_str()]).collect::<Vec<_>>())?;
        sqlx::query(assembled(format!(
            "DELETE FROM groups WHERE id NOT IN (SELECT r.value ->> 0 FROM {}) \
             AND id <> $2 AND NOT EXISTS (SELECT 1 FROM terminals t WHERE t.group_id = groups.id)",
            DB::json_rows("$1")
        )))
        .bind(kept.as_str())
        .bind(UNKNOWN_GROUP)
        .execute(&mut *tx)
        .await?;
        sqlx::query(assembled(format!(
            "INSERT INTO rules (position, group_id, rule) \
             SELECT CAST(r.value ->> 0 AS INTEGER), r.value ->> 1, r.value ->> 2 FROM {}",
            DB::json_rows("$1")
        )))
        .bind(rules_json.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE revisions SET groups = $1 WHERE id = 1")
            .bind(revision)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn terminal_adopt(&self, terminal: NewTerminal) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        Self::lock_terminal_changes(&mut tx).await?;
        let current = sqlx::query(assembled(format!(
            "{} WHERE t.id = $1",
            DB::SELECT_TERMINALS
        )))
        .bind(terminal.id.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .as_ref()
        .map(terminal_from_row)
        .transpose()?;
        match current {
            Some(current) => {
                if current.cert_sha256 != terminal.cert_sha256 {
                    sqlx::query(DB::UPDATE_CERT_FROM)
                        .bind(terminal.id.as_str())
                        .bind(terminal.cert_sha256.as_str())
                        .bind(current.cert_sha256.as_str())
                        .execute(&mut *tx)
                        .await?;
                }
                if current.group != terminal.group {
                    sqlx::query("UPDATE terminals SET group_id = $2 WHERE id = $1")
                        .bind(terminal.id.as_str())
                        .bind(terminal.group.as_str())
                        .execute(&mut *tx)
                        .await?;
                }
            }
            None => {
                DB::insert_terminal(&mut *tx, &terminal).await?;
                sqlx::query(
                    "INSERT INTO terminal_addresses \
                     (terminal, address, first_seen, last_seen, checkins) \
                     VALUES ($1, $2, $3, $3, 0)",
                )
                .bind(terminal.id.as_str())
                .bind(terminal.address.as_str())
                .bind(terminal.enrolled_at)
                .execute(&mut *tx)
                .await?;
            }
        }
        if let Some(site) = &terminal.site {
            Self::record_site_terminal(&mut tx, site, &terminal.id).await?;
        }
        Self::log_terminal_change(&mut tx, &terminal.id).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn queue_push(&self, items: &[QueueItem]) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let mut tx = self.write().await?;
        Self::queue_items_in(&mut tx, items).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn queue_peek(&self, limit: u32) -> Result<Vec<QueuedItem>, StoreError> {
        sqlx::query(
            "SELECT seq, terminal, kind, body, created_at FROM site_queue ORDER BY seq LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(|row| {
            Ok(QueuedItem {
                seq: from_db_int(row.try_get("seq")?, "queue seq")?,
                item: QueueItem {
                    terminal: row.try_get("terminal")?,
                    kind: row.try_get("kind")?,
                    body: row.try_get("body")?,
                    created_at: row.try_get("created_at")?,
                },
            })
        })
        .collect()
    }

    async fn queue_delete_through(&self, through: u64) -> Result<u64, StoreError> {
        let through = to_db_int(through, "queue seq")?;
        let done = sqlx::query("DELETE FROM site_queue WHERE seq <= $1")
            .bind(through)
            .execute(&self.writer)
            .await?;
        Ok(DB::rows_affected(&done))
    }

    async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        let row =
            sqlx::query("SELECT count(*) AS depth, min(created_at) AS oldest FROM site_queue")
                .fetch_one(&self.reader)
                .await?;
        Ok(QueueStats {
            depth: from_db_int(row.try_get("depth")?, "queue depth")?,
            oldest_at: row.try_get("oldest")?,
        })
    }

    async fn alert_enqueue(&self, deliveries: &[NewAlertDelivery]) -> Result<(), StoreError> {
        self.alert_enqueue_impl(deliveries).await
    }

    async fn alert_window(&self, rule: &str) -> Result<Option<AlertWindowRow>, StoreError> {
        self.alert_window_impl(rule).await
    }

    async fn alert_windows(&self) -> Result<Vec<AlertWindowRow>, StoreError> {
        self.alert_windows_impl().await
    }

    async fn alert_window_replace(
        &self,
        rule: &str,
        expected_version: u64,
        state: &str,
        deliveries: &[NewAlertDelivery],
    ) -> Result<bool, StoreError> {
        self.alert_window_replace_impl(rule, expected_version, state, deliveries)
            .await
    }

    async fn alert_claim(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<AlertDeliveryRow>, StoreError> {
        self.alert_claim_impl(now, lease_until, limit).await
    }

    async fn alert_attempted(
        &self,
        id: u64,
        at: i64,
        outcome: &AlertAttempt,
    ) -> Result<(), StoreError> {
        self.alert_attempted_impl(id, at, outcome).await
    }

    async fn alert_deliveries(
        &self,
        before_id: Option<u64>,
        limit: u32,
    ) -> Result<Vec<AlertDeliveryRow>, StoreError> {
        self.alert_deliveries_impl(before_id, limit).await
    }

    async fn feed_source_put(&self, source: &FeedSourceRow) -> Result<(), StoreError> {
        self.feed_source_put_impl(source).await
    }

    async fn feed_source_delete(&self, vendor: &str) -> Result<bool, StoreError> {
        self.feed_source_delete_impl(vendor).await
    }

    async fn feed_sources(&self) -> Result<Vec<FeedSourceRow>, StoreError> {
        self.feed_sources_impl().await
    }

    async fn feed_source_polled(
        &self,
        vendor: &str,
        url: &str,
        polled: &FeedPolled<'_>,
    ) -> Result<bool, StoreError> {
        self.feed_source_polled_impl(vendor, url, polled).await
    }

    async fn message_insert(&self, message: &NewMessage) -> Result<MessageRow, StoreError> {
        self.message_insert_impl(message).await
    }

    async fn messages(&self, query: &MessageQuery<'_>) -> Result<Vec<MessageRow>, StoreError> {
        self.messages_impl(query).await
    }

    async fn message_newest_id(&self) -> Result<u64, StoreError> {
        self.message_newest_id_impl().await
    }

    async fn messages_for_site(
        &self,
        site: &str,
        after_id: u64,
        limit: u32,
    ) -> Result<Vec<MessageRow>, StoreError> {
        self.messages_for_site_impl(site, after_id, limit).await
    }

    async fn messages_replicate(&self, rows: &[MessageRow]) -> Result<(), StoreError> {
        self.messages_replicate_impl(rows).await
    }

    async fn herd_signatures(&self) -> Result<Vec<HerdSignatureRow>, StoreError> {
        Self::herd_signatures_in(&mut *self.reader.acquire().await?).await
    }

    async fn herd_threat_put(&self, row: &HerdThreatRow, replace: bool) -> Result<(), StoreError> {
        let on_conflict = if replace {
            "ON CONFLICT (id) DO UPDATE SET name = excluded.name, danger = excluded.danger, \
             first_seen = CASE WHEN excluded.first_seen < herd_threats.first_seen \
             THEN excluded.first_seen ELSE herd_threats.first_seen END"
        } else {
            "ON CONFLICT (id) DO NOTHING"
        };
        let mut tx = self.write().await?;
        sqlx::query(assembled(format!(
            "INSERT INTO herd_threats (id, name, danger, first_seen) VALUES ($1, $2, $3, $4) \
             {on_conflict}"
        )))
        .bind(row.id.as_str())
        .bind(row.name.as_str())
        .bind(row.danger.as_str())
        .bind(row.first_seen)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn herd_threats(&self) -> Result<Vec<HerdThreatRow>, StoreError> {
        Self::herd_threats_in(&mut *self.reader.acquire().await?).await
    }

    async fn herd_feed_rebuild(
        &self,
        build: &HerdFeedBuild,
        at: i64,
    ) -> Result<Option<u64>, StoreError> {
        let mut tx = self.write().await?;
        // Serialised with vendors' publishes, whose check merges this feed too.
        if let Some(lock) = DB::LOCK_PUBLISHES {
            sqlx::query(lock).execute(&mut *tx).await?;
        }
        let signatures = Self::herd_signatures_in(&mut *tx).await?;
        let threats = Self::herd_threats_in(&mut *tx).await?;
        let (doc, sha256) = build(&signatures, &threats);
        let stored: Option<String> =
            sqlx::query_scalar("SELECT sha256 FROM feeds WHERE vendor = $1")
                .bind(herd_proto::merge::HERD_FEED_VENDOR)
                .fetch_optional(&mut *tx)
                .await?;
        if stored.as_deref() == Some(sha256.as_str()) {
            tx.rollback().await?;
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO feeds (vendor, doc, sha256, published_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (vendor) DO UPDATE SET doc = excluded.doc, sha256 = excluded.sha256, \
             published_at = excluded.published_at",
        )
        .bind(herd_proto::merge::HERD_FEED_VENDOR)
        .bind(doc.as_str())
        .bind(sha256.as_str())
        .bind(at)
        .execute(&mut *tx)
        .await?;
        let catalog = Self::bump_catalog(&mut *tx).await?;
        tx.commit().await?;
        Ok(Some(catalog))
    }

    async fn herd_signature_add(&self, row: &HerdSignatureRow) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let inserted = sqlx::query(
            "INSERT INTO herd_signatures (sha256, size, name, threat, source, first_terminal, \
             first_signature, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(row.sha256.as_str())
        .bind(to_db_int(row.size, "signature size")?)
        .bind(row.name.as_str())
        .bind(row.threat.as_str())
        .bind(row.source.as_str())
        .bind(row.first_terminal.as_str())
        .bind(row.first_signature.as_str())
        .bind(row.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(DB::rows_affected(&inserted) == 1)
    }

    async fn herd_body_signatures(&self) -> Result<Vec<HerdBodySignatureRow>, StoreError> {
        sqlx::query(
            "SELECT name, format, body, added_by, added_at FROM herd_body_signatures \
             ORDER BY format, name",
        )
        .fetch_all(&mut *self.reader.acquire().await?)
        .await?
        .iter()
        .map(|row| {
            Ok(HerdBodySignatureRow {
                name: row.try_get("name")?,
                format: row.try_get("format")?,
                body: row.try_get("body")?,
                added_by: row.try_get("added_by")?,
                added_at: row.try_get("added_at")?,
            })
        })
        .collect()
    }

    async fn herd_body_signatures_add(
        &self,
        rows: &[HerdBodySignatureRow],
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        for row in rows {
            sqlx::query(
                "INSERT INTO herd_body_signatures (name, format, body, added_by, added_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(row.name.as_str())
            .bind(row.format.as_str())
            .bind(row.body.as_str())
            .bind(row.added_by.as_str())
            .bind(row.added_at)
            .execute(&mut *tx)
            .await
            .map_err(|err| {
                conflict_on_unique(err, || {
                    format!(
                        "Herd's set already has a body signature named {:?}; remove it first \
                         or choose another name",
                        row.name
                    )
                })
            })?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn herd_body_signature_remove(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let deleted = sqlx::query("DELETE FROM herd_body_signatures WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(DB::rows_affected(&deleted) == 1)
    }

    async fn herd_signature_remove(&self, sha256: &str) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let deleted = sqlx::query("DELETE FROM herd_signatures WHERE sha256 = $1")
            .bind(sha256)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(DB::rows_affected(&deleted) == 1)
    }

    async fn herd_suspect_record(
        &self,
        sha256: &str,
        terminal: &str,
        size: u64,
        signature: &str,
        at: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO herd_suspects (sha256, terminal, size, signature, seen_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sha256, terminal) DO NOTHING",
        )
        .bind(sha256)
        .bind(terminal)
        .bind(to_db_int(size, "suspect size")?)
        .bind(signature)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("SELECT count(*) AS n FROM herd_suspects WHERE sha256 = $1")
            .bind(sha256)
            .fetch_one(&mut *tx)
            .await?;
        let count = from_db_int(row.try_get("n")?, "suspect count")?;
        tx.commit().await?;
        Ok(count)
    }

    async fn sample_add(&self, row: &SampleRow) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let inserted = sqlx::query(
            "INSERT INTO samples (sha256, size, reason, path, first_terminal, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(row.sha256.as_str())
        .bind(to_db_int(row.size, "sample size")?)
        .bind(row.reason.as_str())
        .bind(row.path.as_str())
        .bind(row.first_terminal.as_str())
        .bind(row.received_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(DB::rows_affected(&inserted) == 1)
    }

    async fn samples(&self) -> Result<Vec<SampleRow>, StoreError> {
        sqlx::query(
            "SELECT sha256, size, reason, path, first_terminal, received_at FROM samples \
             ORDER BY received_at DESC, sha256",
        )
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(|row| {
            Ok(SampleRow {
                sha256: row.try_get("sha256")?,
                size: from_db_int(row.try_get("size")?, "sample size")?,
                reason: row.try_get("reason")?,
                path: row.try_get("path")?,
                first_terminal: row.try_get("first_terminal")?,
                received_at: row.try_get("received_at")?,
            })
        })
        .collect()
    }

    async fn file_verdict_record(&self, row: &FileVerdictRow) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO file_verdicts (sha256, verdict, judged_by, judged_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (sha256) DO UPDATE SET \
             verdict = excluded.verdict, judged_by = excluded.judged_by, \
             judged_at = excluded.judged_at",
        )
        .bind(row.sha256.as_str())
        .bind(row.verdict.as_str())
        .bind(row.judged_by.as_str())
        .bind(row.judged_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn file_verdicts(&self) -> Result<Vec<FileVerdictRow>, StoreError> {
        sqlx::query(
            "SELECT sha256, verdict, judged_by, judged_at FROM file_verdicts ORDER BY sha256",
        )
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(|row| {
            Ok(FileVerdictRow {
                sha256: row.try_get("sha256")?,
                verdict: row.try_get("verdict")?,
                judged_by: row.try_get("judged_by")?,
                judged_at: row.try_get("judged_at")?,
            })
        })
        .collect()
    }

    async fn terminal_email_set(
        &self,
        terminal: &str,
        email: Option<&str>,
        at: i64,
    ) -> Result<bool, StoreError> {
        self.terminal_email_set_impl(terminal, email, at).await
    }

    async fn terminal_email(&self, terminal: &str) -> Result<Option<String>, StoreError> {
        self.terminal_email_impl(terminal).await
    }

    async fn consent_request_open(
        &self,
        request: &crate::NewConsentRequest,
    ) -> Result<Option<crate::ConsentRequestRow>, StoreError> {
        self.consent_request_open_impl(request).await
    }

    async fn consent_request(
        &self,
        id: u64,
    ) -> Result<Option<crate::ConsentRequestRow>, StoreError> {
        self.consent_request_impl(id).await
    }

    async fn consent_request_of(
        &self,
        terminal: &str,
        plan_id: &str,
    ) -> Result<Option<crate::ConsentRequestRow>, StoreError> {
        self.consent_request_of_impl(terminal, plan_id).await
    }

    async fn consent_requests_of(
        &self,
        terminal: &str,
    ) -> Result<Vec<crate::ConsentRequestRow>, StoreError> {
        self.consent_requests_of_impl(terminal).await
    }

    async fn consent_decide(
        &self,
        id: u64,
        decision: &str,
        at: i64,
        by: &str,
    ) -> Result<bool, StoreError> {
        self.consent_decide_impl(id, decision, at, by).await
    }

    async fn console_session_insert(&self, session: &ConsoleSessionRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO console_sessions (hash, token_hash, label, csrf, created_at, last_seen) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(session.hash.as_str())
        .bind(session.token_hash.as_str())
        .bind(session.label.as_str())
        .bind(session.csrf.as_str())
        .bind(session.created_at)
        .bind(session.last_seen)
        .execute(&self.writer)
        .await
        .map_err(|e| conflict_on_unique(e, || "a console session with this hash exists".into()))?;
        Ok(())
    }

    async fn console_session_find(
        &self,
        hash: &str,
    ) -> Result<Option<ConsoleSessionRow>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT hash, token_hash, label, csrf, created_at, last_seen FROM console_sessions \
             WHERE hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.reader)
        .await?
        else {
            return Ok(None);
        };
        Ok(Some(ConsoleSessionRow {
            hash: row.try_get("hash")?,
            token_hash: row.try_get("token_hash")?,
            label: row.try_get("label")?,
            csrf: row.try_get("csrf")?,
            created_at: row.try_get("created_at")?,
            last_seen: row.try_get("last_seen")?,
        }))
    }

    async fn console_session_touch(&self, hash: &str, at: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE console_sessions SET last_seen = $2 WHERE hash = $1 AND last_seen < $2",
        )
        .bind(hash)
        .bind(at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn console_session_delete(&self, hash: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM console_sessions WHERE hash = $1")
            .bind(hash)
            .execute(&self.writer)
            .await?;
        Ok(DB::rows_affected(&done) > 0)
    }

    async fn console_sessions_expire(&self, idle_before: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM console_sessions WHERE last_seen < $1")
            .bind(idle_before)
            .execute(&self.writer)
            .await?;
        Ok(DB::rows_affected(&done))
    }

    async fn console_link_insert(&self, link: &ConsoleLinkRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO console_links (hash, token_hash, label, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(link.hash.as_str())
        .bind(link.token_hash.as_str())
        .bind(link.label.as_str())
        .bind(link.created_at)
        .bind(link.expires_at)
        .execute(&self.writer)
        .await
        .map_err(|e| conflict_on_unique(e, || "a console link with this hash exists".into()))?;
        Ok(())
    }

    async fn console_link_take(&self, hash: &str, now: i64) -> Result<LinkTaken, StoreError> {
        let mut tx = self.write().await?;
        // The UPDATE is the claim: of two concurrent requests, one changes the row.
        let claimed = sqlx::query(
            "UPDATE console_links SET used_at = $2 \
             WHERE hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(
            "SELECT hash, token_hash, label, created_at, expires_at, used_at FROM console_links \
             WHERE hash = $1",
        )
        .bind(hash)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        let Some(row) = row else {
            return Ok(LinkTaken::Unknown);
        };
        let link = ConsoleLinkRow {
            hash: row.try_get("hash")?,
            token_hash: row.try_get("token_hash")?,
            label: row.try_get("label")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
        };
        let used_at: Option<i64> = row.try_get("used_at")?;
        Ok(if DB::rows_affected(&claimed) > 0 {
            LinkTaken::Taken(link)
        } else if let Some(used_at) = used_at {
            LinkTaken::Used(used_at)
        } else {
            LinkTaken::Expired(link.expires_at)
        })
    }

    async fn fleet_counts(&self, now: i64) -> Result<Vec<FleetCountRow>, StoreError> {
        // One scan of terminals, grouped; the recency is a code (see `Recency`).
        let rows = sqlx::query(
            "SELECT group_id, site, plan_action, \
             CAST(CASE WHEN last_checkin IS NULL THEN 0 \
                  WHEN last_checkin >= $1 - 3600 THEN 1 \
                  WHEN last_checkin >= $1 - 86400 THEN 2 \
                  WHEN last_checkin >= $1 - 604800 THEN 3 \
                  ELSE 4 END AS BIGINT) AS recency, \
             count(*) AS n \
             FROM terminals GROUP BY group_id, site, plan_action, recency",
        )
        .bind(now)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let recency: i64 = row.try_get("recency")?;
                Ok(FleetCountRow {
                    group: row.try_get("group_id")?,
                    site: row.try_get("site")?,
                    action: row.try_get("plan_action")?,
                    recency: FleetCountRow::recency_from_code(recency)?,
                    count: from_db_int(row.try_get("n")?, "terminal count")?,
                })
            })
            .collect()
    }

    async fn plan_reports_by_hour(
        &self,
        since: i64,
    ) -> Result<Vec<(i64, String, u64)>, StoreError> {
        // The report's JSON is the center's own serialisation (compact, keys sorted), so its
        // outcome reads with LIKE on both backends; the partial index keeps this to reports.
        let rows = sqlx::query(
            "SELECT CAST(received_at / 3600 AS BIGINT) * 3600 AS hour, \
             CASE WHEN data LIKE '%\"outcome\":\"succeeded\"%' THEN 'succeeded' \
                  WHEN data LIKE '%\"outcome\":\"rolled_back\"%' THEN 'rolled_back' \
                  WHEN data LIKE '%\"outcome\":\"declined\"%' THEN 'declined' \
                  ELSE 'other' END AS outcome, \
             count(*) AS n \
             FROM events WHERE kind = 'plan.report' AND received_at >= $1 \
             GROUP BY hour, outcome ORDER BY hour, outcome",
        )
        .bind(since)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("hour")?,
                    row.try_get("outcome")?,
                    from_db_int(row.try_get("n")?, "report count")?,
                ))
            })
            .collect()
    }
    async fn rollouts(&self) -> Result<Vec<RolloutRow>, StoreError> {
        sqlx::query(
            "SELECT release, product, version, seq, phase, ring, ring_started, started_at, \
             updated_at, reason, succeeded, failed, faults, silent, row_version \
             FROM rollouts ORDER BY started_at, release",
        )
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(rollout_from_row)
        .collect()
    }

    async fn rollout_insert(&self, row: &RolloutRow) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO rollouts (release, product, version, seq, phase, ring, ring_started, \
             started_at, updated_at, reason, succeeded, failed, faults, silent, row_version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 1) \
             ON CONFLICT (release) DO NOTHING",
        )
        .bind(row.release.as_str())
        .bind(row.product.as_str())
        .bind(row.version.as_str())
        .bind(to_db_int(row.seq, "rollout seq")?)
        .bind(row.phase.as_str())
        .bind(i64::from(row.ring))
        .bind(row.ring_started)
        .bind(row.started_at)
        .bind(row.updated_at)
        .bind(row.reason.as_deref())
        .bind(to_db_int(row.counts.succeeded, "rollout count")?)
        .bind(to_db_int(row.counts.failed, "rollout count")?)
        .bind(to_db_int(row.counts.faults, "rollout count")?)
        .bind(to_db_int(row.counts.silent, "rollout count")?)
        .execute(&self.writer)
        .await?;
        Ok(DB::rows_affected(&result) == 1)
    }

    async fn rollout_transition(
        &self,
        row: &RolloutRow,
        reset_counts: bool,
    ) -> Result<bool, StoreError> {
        let reset = if reset_counts {
            ", succeeded = 0, failed = 0, faults = 0, silent = 0"
        } else {
            ""
        };
        let result = sqlx::query(assembled(format!(
            "UPDATE rollouts SET phase = $2, ring = $3, ring_started = $4, updated_at = $5, \
             reason = $6, row_version = row_version + 1{reset} \
             WHERE release = $1 AND row_version = $7"
        )))
        .bind(row.release.as_str())
        .bind(row.phase.as_str())
        .bind(i64::from(row.ring))
        .bind(row.ring_started)
        .bind(row.updated_at)
        .bind(row.reason.as_deref())
        .bind(to_db_int(row.row_version, "rollout version")?)
        .execute(&self.writer)
        .await?;
        Ok(DB::rows_affected(&result) == 1)
    }

    async fn rollout_count(&self, release: &str, add: RolloutCounts) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE rollouts SET succeeded = succeeded + $2, failed = failed + $3, \
             faults = faults + $4, silent = silent + $5 \
             WHERE release = $1 AND phase IN ('rolling', 'paused')",
        )
        .bind(release)
        .bind(to_db_int(add.succeeded, "rollout count")?)
        .bind(to_db_int(add.failed, "rollout count")?)
        .bind(to_db_int(add.faults, "rollout count")?)
        .bind(to_db_int(add.silent, "rollout count")?)
        .execute(&self.writer)
        .await?;
        Ok(DB::rows_affected(&result) == 1)
    }

    // --- fault recovery (migration 0012) -------------------------------------------------

    async fn fault_record(&self, fault: &FaultWrite) -> Result<bool, StoreError> {
        let seq = to_db_int(fault.seq, "fault seq")?;
        let mut tx = self.write().await?;
        let known = sqlx::query("SELECT 1 FROM terminals WHERE id = $1")
            .bind(fault.terminal.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if known.is_none() {
            return Ok(false);
        }
        let key = &fault.bucket;
        sqlx::query(
            "INSERT INTO fault_buckets \
                 (id, program, version, kind, signature, faults, first_seen, last_seen, decision) \
             VALUES ($1, $2, $3, $4, $5, 0, $6, $6, $7) ON CONFLICT (id) DO NOTHING",
        )
        .bind(key.id.as_str())
        .bind(key.program.as_str())
        .bind(key.version.as_str())
        .bind(key.kind.as_str())
        .bind(key.signature.as_str())
        .bind(fault.at)
        .bind(fault.decision.as_str())
        .execute(&mut *tx)
        .await?;
        let inserted = sqlx::query(
            "INSERT INTO faults (terminal, seq, at, bucket, decision, report, verdict) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (terminal, seq) DO NOTHING",
        )
        .bind(fault.terminal.as_str())
        .bind(seq)
        .bind(fault.at)
        .bind(key.id.as_str())
        .bind(fault.decision.as_str())
        .bind(fault.report.as_str())
        .bind(fault.verdict.as_str())
        .execute(&mut *tx)
        .await?;
        if DB::rows_affected(&inserted) == 0 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE fault_buckets SET faults = faults + 1, \
                 first_seen = CASE WHEN first_seen > $2 THEN $2 ELSE first_seen END, \
                 last_seen = CASE WHEN last_seen < $2 THEN $2 ELSE last_seen END, \
                 decision = $3, \
                 escalated_at = COALESCE(escalated_at, CASE WHEN $3 = $4 THEN $2 END) \
             WHERE id = $1",
        )
        .bind(key.id.as_str())
        .bind(fault.at)
        .bind(fault.decision.as_str())
        .bind(crate::FAULT_ESCALATED)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn fault_buckets(&self) -> Result<Vec<FaultBucketRow>, StoreError> {
        sqlx::query(
            "SELECT b.id, b.program, b.version, b.kind, b.signature, b.faults, b.first_seen, \
                 b.last_seen, b.decision, b.escalated_at, \
                 (SELECT count(DISTINCT f.terminal) FROM faults f WHERE f.bucket = b.id) \
                     AS terminals \
             FROM fault_buckets b ORDER BY b.last_seen DESC, b.id",
        )
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(fault_bucket_from_row)
        .collect()
    }

    async fn faults(
        &self,
        terminal: Option<&str>,
        bucket: Option<&str>,
        limit: u32,
    ) -> Result<Vec<FaultRow>, StoreError> {
        // Absent filters match everything: '' is no terminal id and no bucket id.
        sqlx::query(
            "SELECT terminal, seq, at, bucket, decision, report, verdict, outcome FROM faults \
             WHERE ($1 = '' OR terminal = $1) AND ($2 = '' OR bucket = $2) \
             ORDER BY at DESC, seq DESC LIMIT $3",
        )
        .bind(terminal.unwrap_or(""))
        .bind(bucket.unwrap_or(""))
        .bind(limit_or_all(limit))
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(fault_from_row)
        .collect()
    }

    async fn fault_outcome(
        &self,
        terminal: &str,
        seq: u64,
        outcome: &str,
    ) -> Result<bool, StoreError> {
        let seq = to_db_int(seq, "fault seq")?;
        let result = sqlx::query("UPDATE faults SET outcome = $3 WHERE terminal = $1 AND seq = $2")
            .bind(terminal)
            .bind(seq)
            .bind(outcome)
            .execute(&self.writer)
            .await?;
        Ok(DB::rows_affected(&result) > 0)
    }

    async fn faults_held(&self, limit: u32) -> Result<Vec<FaultRow>, StoreError> {
        // The literal matches migration 0024's partial index (`FAULT_HELD`).
        sqlx::query(
            "SELECT terminal, seq, at, bucket, decision, report, verdict, outcome FROM faults \
             WHERE decision = 'held' ORDER BY at, terminal, seq LIMIT $1",
        )
        .bind(limit_or_all(limit))
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(fault_from_row)
        .collect()
    }

    async fn fault_redecide(
        &self,
        terminal: &str,
        seq: u64,
        decision: &str,
        verdict: &str,
    ) -> Result<bool, StoreError> {
        let seq = to_db_int(seq, "fault seq")?;
        let mut tx = self.write().await?;
        let Some(row) = sqlx::query(
            "UPDATE faults SET decision = $3, verdict = $4 \
             WHERE terminal = $1 AND seq = $2 AND decision = 'held' RETURNING bucket, at",
        )
        .bind(terminal)
        .bind(seq)
        .bind(decision)
        .bind(verdict)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(false);
        };
        let bucket: String = row.try_get("bucket")?;
        let at: i64 = row.try_get("at")?;
        sqlx::query(
            "UPDATE fault_buckets SET decision = $2, \
                 escalated_at = COALESCE(escalated_at, CASE WHEN $2 = $3 THEN $4 END) \
             WHERE id = $1",
        )
        .bind(bucket.as_str())
        .bind(decision)
        .bind(crate::FAULT_ESCALATED)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn fault_rules(&self) -> Result<Vec<FaultRuleRow>, StoreError> {
        sqlx::query("SELECT id, doc FROM fault_rules ORDER BY id")
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(|row| {
                Ok(FaultRuleRow {
                    id: row.try_get("id")?,
                    doc: row.try_get("doc")?,
                })
            })
            .collect()
    }

    async fn fault_rule_put(&self, rule: &FaultRuleRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO fault_rules (id, doc) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET doc = excluded.doc",
        )
        .bind(rule.id.as_str())
        .bind(rule.doc.as_str())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn fault_rule_delete(&self, id: &str) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM fault_rules WHERE id = $1")
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(DB::rows_affected(&result) > 0)
    }

    async fn replacements(&self) -> Result<Vec<ReplacementRow>, StoreError> {
        sqlx::query("SELECT program, platform, doc FROM replacements ORDER BY program, platform")
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(|row| {
                Ok(ReplacementRow {
                    program: row.try_get("program")?,
                    platform: row.try_get("platform")?,
                    doc: row.try_get("doc")?,
                })
            })
            .collect()
    }

    async fn replacement_put(&self, entry: &ReplacementRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO replacements (program, platform, doc) VALUES ($1, $2, $3) \
             ON CONFLICT (program, platform) DO UPDATE SET doc = excluded.doc",
        )
        .bind(entry.program.as_str())
        .bind(entry.platform.as_str())
        .bind(entry.doc.as_str())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn replacement_delete(&self, program: &str, platform: &str) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM replacements WHERE program = $1 AND platform = $2")
            .bind(program)
            .bind(platform)
            .execute(&self.writer)
            .await?;
        Ok(DB::rows_affected(&result) > 0)
    }
}

/// A LIKE pattern matching `text` anywhere, lower-cased, its wildcards escaped with `\`.
fn like_contains(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

fn rollout_from_row<R: Row>(row: &R) -> Result<RolloutRow, StoreError>
where
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    &'static str: ColumnIndex<R>,
{
    let count = |column: &'static str| -> Result<u64, StoreError> {
        from_db_int(row.try_get(column)?, "rollout count")
    };
    Ok(RolloutRow {
        release: row.try_get("release")?,
        product: row.try_get("product")?,
        version: row.try_get("version")?,
        seq: from_db_int(row.try_get("seq")?, "rollout seq")?,
        phase: row.try_get("phase")?,
        ring: u32::try_from(row.try_get::<i64, _>("ring")?)
            .map_err(|_| StoreError::Corrupt("a rollout's ring is out of range".to_owned()))?,
        ring_started: row.try_get("ring_started")?,
        started_at: row.try_get("started_at")?,
        updated_at: row.try_get("updated_at")?,
        reason: row.try_get("reason")?,
        counts: RolloutCounts {
            succeeded: count("succeeded")?,
            failed: count("failed")?,
            faults: count("faults")?,
            silent: count("silent")?,
        },
        row_version: from_db_int(row.try_get("row_version")?, "rollout version")?,
    })
}

const SITE_SELECT: &str = "SELECT s.id, s.url, s.cert_sha256, s.previous_cert_sha256, \
     s.renew_requested_at, \
     s.enrolled_at, s.last_contact, s.relay_applied, s.status, s.pushed_at, \
     (SELECT count(*) FROM terminals t WHERE t.site = s.id) AS terminals FROM sites s";
const SITE_SELECT_ONE: &str = "SELECT s.id, s.url, s.cert_sha256, s.previous_cert_sha256, \
     s.renew_requested_at, \
     s.enrolled_at, s.last_contact, s.relay_applied, s.status, s.pushed_at, \
     (SELECT count(*) FROM terminals t WHERE t.site = s.id) AS terminals FROM sites s \
     WHERE s.id = $1";

/// [`SITE_SELECT_ONE`] without the count of the site's terminals, which reads an index entry
/// per terminal: what the center reads at every request of a site.
const SITE_SELECT_ONE_UNCOUNTED: &str = "SELECT s.id, s.url, s.cert_sha256, \
     s.previous_cert_sha256, s.renew_requested_at, \
     s.enrolled_at, s.last_contact, s.relay_applied, s.status, s.pushed_at, \
     CAST(NULL AS BIGINT) AS terminals FROM sites s WHERE s.id = $1";

fn site_from_row<R: Row>(row: &R) -> Result<SiteRow, StoreError>
where
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    &'static str: ColumnIndex<R>,
{
    Ok(SiteRow {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        cert_sha256: row.try_get("cert_sha256")?,
        previous_cert_sha256: row.try_get("previous_cert_sha256")?,
        renew_requested_at: row.try_get("renew_requested_at")?,
        enrolled_at: row.try_get("enrolled_at")?,
        last_contact: row.try_get("last_contact")?,
        relay_applied: from_db_int(row.try_get("relay_applied")?, "queue seq")?,
        status: row.try_get("status")?,
        pushed_at: row.try_get("pushed_at")?,
        terminals: row
            .try_get::<Option<i64>, _>("terminals")?
            .map(|n| from_db_int(n, "terminal count"))
            .transpose()?,
    })
}

fn fault_from_row<R: Row>(row: &R) -> Result<FaultRow, StoreError>
where
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    &'static str: ColumnIndex<R>,
{
    Ok(FaultRow {
        terminal: row.try_get("terminal")?,
        seq: from_db_int(row.try_get("seq")?, "fault seq")?,
        at: row.try_get("at")?,
        bucket: row.try_get("bucket")?,
        decision: row.try_get("decision")?,
        report: row.try_get("report")?,
        verdict: row.try_get("verdict")?,
        outcome: row.try_get("outcome")?,
    })
}

fn fault_bucket_from_row<R: Row>(row: &R) -> Result<FaultBucketRow, StoreError>
where
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    &'static str: ColumnIndex<R>,
{
    Ok(FaultBucketRow {
        key: FaultBucketKey {
            id: row.try_get("id")?,
            program: row.try_get("program")?,
            version: row.try_get("version")?,
            kind: row.try_get("kind")?,
            signature: row.try_get("signature")?,
        },
        faults: from_db_int(row.try_get("faults")?, "bucket fault count")?,
        terminals: from_db_int(row.try_get("terminals")?, "bucket terminal count")?,
        first_seen: row.try_get("first_seen")?,
        last_seen: row.try_get("last_seen")?,
        decision: row.try_get("decision")?,
        escalated_at: row.try_get("escalated_at")?,
    })
}
