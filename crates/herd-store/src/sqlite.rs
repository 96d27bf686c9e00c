//! [`SqliteStore`]: the [`Store`] on one embedded SQLite file in WAL mode, the center's default.
//!
//! SQLite allows one writer at a time, so every write goes through a pool of exactly one
//! connection (writers queue in the pool instead of spinning on `SQLITE_BUSY`) and starts with
//! `BEGIN IMMEDIATE`, taking the write lock before reading: a read-then-write transaction
//! (publish, enrol) cannot interleave with another process's. Reads use a separate pool of a few
//! `query_only` connections, which WAL lets run beside the writer; they see every committed write.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use crate::common::{
    CheckinBatch, PLAN_REPORT, address_from_row, api_token_from_row, conflict_on_unique,
    event_from_row, events_json, feed_from_row, from_db_int, group_with_count_from_row,
    limit_or_all, package_from_row, rule_from_row, rules_json, terminal_columns, terminal_from_row,
    to_db_int,
};
use crate::{
    AddressRow, ApiTokenRow, AppendOutcome, Backend, CaMaterial, CheckinWrite, EnrolError,
    EnrolTokenRow, EventRow, GroupRow, NewTerminal, PackageRow, PublishOutcome, Revisions, RuleRow,
    Store, StoreError, StoredFeed, TerminalQuery, TerminalRow, UNKNOWN_GROUP,
};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Concurrent readers; more would only contend for the 2 cores the center is sized for.
const READERS: u32 = 4;
/// Page cache of the writer connection, in KiB: check-ins touch terminals all over the table.
const WRITER_CACHE_KIB: i64 = 64 * 1024;

#[derive(Debug)]
pub struct SqliteStore {
    /// Exactly one connection: every write transaction.
    writer: SqlitePool,
    /// `query_only` connections for everything that does not write.
    reader: SqlitePool,
}

impl SqliteStore {
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
            .synchronous(SqliteSynchronous::Normal)
            .pragma("cache_size", (-WRITER_CACHE_KIB).to_string());
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
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
        Ok(Self { writer, reader })
    }

    /// A write transaction holding SQLite's write lock from its first statement.
    async fn write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

async fn bump_config(tx: &mut Transaction<'static, Sqlite>) -> Result<(), StoreError> {
    sqlx::query("UPDATE revisions SET config = config + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn revision(value: i64, which: &str) -> Result<u64, StoreError> {
    from_db_int(value, &format!("{which} revision"))
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn ca_get_or_insert(&self, candidate: CaMaterial) -> Result<CaMaterial, StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO ca (id, cert_pem, key_pem) VALUES (1, ?1, ?2) ON CONFLICT (id) DO NOTHING",
        )
        .bind(candidate.cert_pem)
        .bind(candidate.key_pem)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("SELECT cert_pem, key_pem FROM ca WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(CaMaterial {
            cert_pem: row.try_get("cert_pem")?,
            key_pem: row.try_get("key_pem")?,
        })
    }

    async fn revisions(&self) -> Result<Revisions, StoreError> {
        let row = sqlx::query("SELECT catalog, config FROM revisions WHERE id = 1")
            .fetch_one(&self.reader)
            .await?;
        Ok(Revisions {
            catalog: revision(row.try_get("catalog")?, "catalog")?,
            config: revision(row.try_get("config")?, "config")?,
        })
    }

    async fn feeds(&self) -> Result<(u64, Vec<StoredFeed>), StoreError> {
        // One read transaction: the revision belongs to exactly these feeds.
        let mut tx = self.reader.begin().await?;
        let catalog: i64 = sqlx::query_scalar("SELECT catalog FROM revisions WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let feeds =
            sqlx::query("SELECT vendor, doc, sha256, published_at FROM feeds ORDER BY vendor")
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(feed_from_row)
                .collect::<Result<Vec<_>, _>>()?;
        tx.commit().await?;
        Ok((revision(catalog, "catalog")?, feeds))
    }

    async fn publish_feed(
        &self,
        feed: StoredFeed,
        check: &(dyn for<'a> Fn(&'a [StoredFeed]) -> Result<(), String> + Send + Sync),
    ) -> Result<Result<PublishOutcome, String>, StoreError> {
        let mut tx = self.write().await?;
        let stored_sha: Option<String> =
            sqlx::query_scalar("SELECT sha256 FROM feeds WHERE vendor = ?1")
                .bind(&feed.vendor)
                .fetch_optional(&mut *tx)
                .await?;
        if stored_sha.as_deref() == Some(feed.sha256.as_str()) {
            let catalog: i64 = sqlx::query_scalar("SELECT catalog FROM revisions WHERE id = 1")
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(Ok(PublishOutcome {
                revision: revision(catalog, "catalog")?,
                changed: false,
            }));
        }
        let others = sqlx::query(
            "SELECT vendor, doc, sha256, published_at FROM feeds WHERE vendor <> ?1 ORDER BY vendor",
        )
        .bind(&feed.vendor)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(feed_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        if let Err(refusal) = check(&others) {
            tx.rollback().await?;
            return Ok(Err(refusal));
        }
        sqlx::query(
            "INSERT INTO feeds (vendor, doc, sha256, published_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (vendor) DO UPDATE SET doc = excluded.doc, sha256 = excluded.sha256, \
             published_at = excluded.published_at",
        )
        .bind(&feed.vendor)
        .bind(&feed.doc)
        .bind(&feed.sha256)
        .bind(feed.published_at)
        .execute(&mut *tx)
        .await?;
        let catalog: i64 = sqlx::query_scalar(
            "UPDATE revisions SET catalog = catalog + 1 WHERE id = 1 RETURNING catalog",
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(PublishOutcome {
            revision: revision(catalog, "catalog")?,
            changed: true,
        }))
    }

    async fn package_put(&self, package: PackageRow) -> Result<bool, StoreError> {
        let size = to_db_int(package.size, "package size")?;
        let inserted = sqlx::query(
            "INSERT INTO packages (sha256, size, vendor, uploaded_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(package.sha256)
        .bind(size)
        .bind(package.vendor)
        .bind(package.uploaded_at)
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    async fn package_get(&self, sha256: &str) -> Result<Option<PackageRow>, StoreError> {
        sqlx::query("SELECT sha256, size, vendor, uploaded_at FROM packages WHERE sha256 = ?1")
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
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(&token.hash)
        .bind(token.role.as_str())
        .bind(&token.vendor)
        .bind(&token.label)
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
             WHERE hash = ?1",
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
            "INSERT INTO enrol_tokens (hash, label, uses_left, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(&token.hash)
        .bind(&token.label)
        .bind(uses_left)
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

    async fn enrol(
        &self,
        token_hash: &str,
        now: i64,
        terminal: NewTerminal,
    ) -> Result<TerminalRow, EnrolError> {
        // Every refusal returns before the first write; dropping `tx` rolls back.
        let mut tx = self.write().await?;
        let token = sqlx::query("SELECT uses_left, expires_at FROM enrol_tokens WHERE hash = ?1")
            .bind(token_hash)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::from)?
            .ok_or(EnrolError::TokenUnknown)?;
        let expires_at: i64 = token.try_get("expires_at").map_err(StoreError::from)?;
        let uses_left: i64 = token.try_get("uses_left").map_err(StoreError::from)?;
        if expires_at <= now {
            return Err(EnrolError::TokenExpired);
        }
        if uses_left <= 0 {
            return Err(EnrolError::TokenUsedUp);
        }
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM terminals WHERE id = ?1")
            .bind(&terminal.id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        if exists.is_some() {
            return Err(EnrolError::TerminalExists(terminal.id));
        }
        let group: Option<i64> = sqlx::query_scalar("SELECT 1 FROM groups WHERE id = ?1")
            .bind(&terminal.group)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        if group.is_none() {
            return Err(StoreError::NotFound(format!(
                "cannot enrol terminal {:?} into group {:?}: no such group",
                terminal.id, terminal.group
            ))
            .into());
        }

        sqlx::query("UPDATE enrol_tokens SET uses_left = uses_left - 1 WHERE hash = ?1")
            .bind(token_hash)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        let row = sqlx::query(concat!(
            "INSERT INTO terminals (id, group_id, last_address, enrolled_at, cert_sha256, \
             user_name, tz, hardware) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING ",
            terminal_columns!()
        ))
        .bind(&terminal.id)
        .bind(&terminal.group)
        .bind(&terminal.address)
        .bind(terminal.enrolled_at)
        .bind(&terminal.cert_sha256)
        .bind(&terminal.user)
        .bind(&terminal.tz)
        .bind(&terminal.hardware)
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        let enrolled = terminal_from_row(&row)?;
        sqlx::query(
            "INSERT INTO terminal_addresses (terminal, address, first_seen, last_seen, checkins) \
             VALUES (?1, ?2, ?3, ?3, 0)",
        )
        .bind(&terminal.id)
        .bind(&terminal.address)
        .bind(terminal.enrolled_at)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(enrolled)
    }

    async fn terminal(&self, id: &str) -> Result<Option<TerminalRow>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            terminal_columns!(),
            " FROM terminals WHERE id = ?1"
        ))
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
        // One statement per filter combination, each able to use its index.
        let statement = match (&query.group, &query.action) {
            (None, None) => sqlx::query(concat!(
                "SELECT ",
                terminal_columns!(),
                " FROM terminals WHERE id > ?1 ORDER BY id LIMIT ?2"
            ))
            .bind(after)
            .bind(limit),
            (Some(group), None) => sqlx::query(concat!(
                "SELECT ",
                terminal_columns!(),
                " FROM terminals WHERE group_id = ?3 AND id > ?1 ORDER BY id LIMIT ?2"
            ))
            .bind(after)
            .bind(limit)
            .bind(group),
            (None, Some(action)) => sqlx::query(concat!(
                "SELECT ",
                terminal_columns!(),
                " FROM terminals WHERE plan_action = ?3 AND id > ?1 ORDER BY id LIMIT ?2"
            ))
            .bind(after)
            .bind(limit)
            .bind(action),
            (Some(group), Some(action)) => sqlx::query(concat!(
                "SELECT ",
                terminal_columns!(),
                " FROM terminals WHERE group_id = ?3 AND plan_action = ?4 AND id > ?1 \
                 ORDER BY id LIMIT ?2"
            ))
            .bind(after)
            .bind(limit)
            .bind(group)
            .bind(action),
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
        // Addresses and events go with it (ON DELETE CASCADE).
        let deleted = sqlx::query("DELETE FROM terminals WHERE id = ?1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Ok(false);
        }
        bump_config(&mut tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn record_checkins(&self, batch: &[CheckinWrite]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let batch = CheckinBatch::new(batch)?;
        let mut tx = self.write().await?;
        // `hardware`, `tz` and the agent version are kept when a check-in does not report them.
        sqlx::query(
            "UPDATE terminals SET last_checkin = b.at, last_address = b.address, \
                 installed = b.installed, hardware = coalesce(b.hardware, terminals.hardware), \
                 tz = coalesce(b.tz, terminals.tz), \
                 agent_version = coalesce(b.agent_version, terminals.agent_version) \
             FROM (SELECT value ->> 0 AS terminal, value ->> 1 AS at, value ->> 2 AS address, \
                          value ->> 3 AS installed, value ->> 4 AS hardware, value ->> 5 AS tz, \
                          value ->> 6 AS agent_version \
                   FROM json_each(?1)) AS b \
             WHERE terminals.id = b.terminal",
        )
        .bind(&batch.checkins)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE terminals SET plan_id = b.plan_id, plan_action = b.action, \
                 plan_uncovered = b.uncovered, plan = b.doc, planned_at = b.at \
             FROM (SELECT value ->> 0 AS terminal, value ->> 1 AS plan_id, value ->> 2 AS action, \
                          value ->> 3 AS uncovered, value ->> 4 AS doc, value ->> 5 AS at \
                   FROM json_each(?1)) AS b \
             WHERE terminals.id = b.terminal AND terminals.plan_id IS NOT b.plan_id",
        )
        .bind(&batch.plans)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO terminal_addresses (terminal, address, first_seen, last_seen, checkins) \
             SELECT a.value ->> 0, a.value ->> 1, a.value ->> 2, a.value ->> 3, a.value ->> 4 \
             FROM json_each(?1) AS a \
             WHERE EXISTS (SELECT 1 FROM terminals WHERE terminals.id = a.value ->> 0) \
             ON CONFLICT (terminal, address) DO UPDATE SET \
                 first_seen = min(terminal_addresses.first_seen, excluded.first_seen), \
                 last_seen = max(terminal_addresses.last_seen, excluded.last_seen), \
                 checkins = terminal_addresses.checkins + excluded.checkins",
        )
        .bind(&batch.addresses)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn addresses(&self, terminal: &str) -> Result<Vec<AddressRow>, StoreError> {
        sqlx::query(
            "SELECT address, first_seen, last_seen, checkins FROM terminal_addresses \
             WHERE terminal = ?1 ORDER BY last_seen DESC, address",
        )
        .bind(terminal)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(address_from_row)
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

    async fn group_put(&self, group: GroupRow) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO groups (id, description, policy) VALUES (?1, ?2, ?3) \
             ON CONFLICT (id) DO UPDATE SET description = excluded.description, \
             policy = excluded.policy",
        )
        .bind(&group.id)
        .bind(&group.description)
        .bind(&group.policy)
        .execute(&mut *tx)
        .await?;
        bump_config(&mut tx).await?;
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
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM groups WHERE id = ?1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound(format!("group {id:?} does not exist")));
        }
        let terminals: i64 =
            sqlx::query_scalar("SELECT count(*) FROM terminals WHERE group_id = ?1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
        if terminals > 0 {
            return Err(StoreError::Conflict(format!(
                "group {id:?} cannot be deleted: {terminals} terminal(s) are in it"
            )));
        }
        let rule: Option<i64> = sqlx::query_scalar(
            "SELECT position FROM rules WHERE group_id = ?1 ORDER BY position LIMIT 1",
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
        sqlx::query("DELETE FROM groups WHERE id = ?1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        bump_config(&mut tx).await?;
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
        let missing = sqlx::query(
            "SELECT r.value ->> 0 AS position, r.value ->> 1 AS group_id FROM json_each(?1) AS r \
             WHERE NOT EXISTS (SELECT 1 FROM groups WHERE groups.id = r.value ->> 1) \
             ORDER BY r.key LIMIT 1",
        )
        .bind(&rules_json)
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
        sqlx::query(
            "INSERT INTO rules (position, group_id, rule) \
             SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?1)",
        )
        .bind(&rules_json)
        .execute(&mut *tx)
        .await?;
        bump_config(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn events_append(&self, events: &[EventRow]) -> Result<AppendOutcome, StoreError> {
        let (terminal, rows) = events_json(events)?;
        if events.is_empty() {
            return Ok(AppendOutcome::default());
        }
        let mut tx = self.write().await?;
        let known: Option<i64> = sqlx::query_scalar("SELECT 1 FROM terminals WHERE id = ?1")
            .bind(terminal)
            .fetch_optional(&mut *tx)
            .await?;
        if known.is_none() {
            return Err(StoreError::NotFound(format!(
                "cannot store events of terminal {terminal:?}: it is not enrolled"
            )));
        }
        let accepted = sqlx::query(
            "INSERT INTO events (terminal, seq, at, kind, data, received_at) \
             SELECT ?1, value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4 \
             FROM json_each(?2) WHERE true \
             ON CONFLICT (terminal, seq) DO NOTHING",
        )
        .bind(terminal)
        .bind(&rows)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if events.iter().any(|event| event.kind == PLAN_REPORT) {
            // The report with the highest seq wins, whatever order reports arrive in.
            sqlx::query(
                "UPDATE terminals SET last_report = (SELECT data FROM events \
                     WHERE terminal = ?1 AND kind = 'plan.report' ORDER BY seq DESC LIMIT 1) \
                 WHERE id = ?1",
            )
            .bind(terminal)
            .execute(&mut *tx)
            .await?;
        }
        let last_seq: Option<i64> =
            sqlx::query_scalar("SELECT max(seq) FROM events WHERE terminal = ?1")
                .bind(terminal)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(AppendOutcome {
            accepted,
            duplicates: events.len() as u64 - accepted,
            last_seq: from_db_int(last_seq.unwrap_or(0), "event seq")?,
        })
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
                 WHERE terminal = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )
            .bind(terminal)
            .bind(after_seq)
            .bind(limit),
            None => sqlx::query(
                "SELECT terminal, seq, at, kind, data, received_at FROM events \
                 WHERE seq > ?1 ORDER BY terminal, seq LIMIT ?2",
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
}
