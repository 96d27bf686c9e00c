//! [`PostgresStore`]: the [`Store`] on PostgreSQL, shared by several center processes.
//!
//! Transactions run at READ COMMITTED; where processes could interleave, the order is imposed
//! explicitly: publishes take a transaction-scoped advisory lock, configuration changes update
//! the one `revisions` row first (so they queue on its row lock), enrolment consumes a token use
//! with one conditional `UPDATE`, and check-in batches lock their terminals in id order before
//! changing them, so two batches never deadlock.

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Postgres, Row, Transaction};

use crate::common::{
    CheckinBatch, PLAN_REPORT, address_from_row, api_token_from_row, conflict_on_unique,
    event_from_row, events_json, feed_from_row, from_db_int, group_with_count_from_row,
    limit_or_all, package_from_row, rule_from_row, rules_json, terminal_columns, terminal_from_row,
    to_db_int, to_json,
};
use crate::{
    AddressRow, ApiTokenRow, AppendOutcome, Backend, CaMaterial, CheckinWrite, EnrolError,
    EnrolTokenRow, EventRow, GroupRow, NewTerminal, PackageRow, PublishOutcome, Revisions, RuleRow,
    Store, StoreError, StoredFeed, TerminalQuery, TerminalRow, UNKNOWN_GROUP,
};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections per center process.
const MAX_CONNECTIONS: u32 = 16;
/// How long `open` (and any later call) waits for a connection before giving up.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// The advisory lock key serialising feed publishes across processes ("herdfeed" in ASCII).
const PUBLISH_LOCK: i64 = 0x6865_7264_6665_6564;

#[derive(Debug)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
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
        Ok(Self { pool })
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

/// Bumps the configuration revision. Called first in every configuration change, so the
/// row lock it takes queues concurrent changes behind each other.
async fn bump_config(tx: &mut Transaction<'static, Postgres>) -> Result<(), StoreError> {
    sqlx::query("UPDATE revisions SET config = config + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn revision(value: i64, which: &str) -> Result<u64, StoreError> {
    from_db_int(value, &format!("{which} revision"))
}

fn is_foreign_key_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|db| db.is_foreign_key_violation())
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn ca_get_or_insert(&self, candidate: CaMaterial) -> Result<CaMaterial, StoreError> {
        // Two statements, each its own transaction: a racing insert either wins or waits for
        // the winner's commit and does nothing; the SELECT then sees the winner's row.
        sqlx::query(
            "INSERT INTO ca (id, cert_pem, key_pem) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING",
        )
        .bind(candidate.cert_pem)
        .bind(candidate.key_pem)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT cert_pem, key_pem FROM ca WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(CaMaterial {
            cert_pem: row.try_get("cert_pem")?,
            key_pem: row.try_get("key_pem")?,
        })
    }

    async fn revisions(&self) -> Result<Revisions, StoreError> {
        let row = sqlx::query("SELECT catalog, config FROM revisions WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(Revisions {
            catalog: revision(row.try_get("catalog")?, "catalog")?,
            config: revision(row.try_get("config")?, "config")?,
        })
    }

    async fn feeds(&self) -> Result<(u64, Vec<StoredFeed>), StoreError> {
        // One snapshot for both statements: the revision belongs to exactly these feeds.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await?;
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
        let mut tx = self.pool.begin().await?;
        // Held until commit or rollback: the feeds `check` sees stay the other vendors' current
        // ones until this publish is stored.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PUBLISH_LOCK)
            .execute(&mut *tx)
            .await?;
        let stored_sha: Option<String> =
            sqlx::query_scalar("SELECT sha256 FROM feeds WHERE vendor = $1")
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
            "SELECT vendor, doc, sha256, published_at FROM feeds WHERE vendor <> $1 ORDER BY vendor",
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
            "INSERT INTO feeds (vendor, doc, sha256, published_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (vendor) DO UPDATE SET doc = EXCLUDED.doc, sha256 = EXCLUDED.sha256, \
             published_at = EXCLUDED.published_at",
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
            "INSERT INTO packages (sha256, size, vendor, uploaded_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(package.sha256)
        .bind(size)
        .bind(package.vendor)
        .bind(package.uploaded_at)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    async fn package_get(&self, sha256: &str) -> Result<Option<PackageRow>, StoreError> {
        sqlx::query("SELECT sha256, size, vendor, uploaded_at FROM packages WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(&self.pool)
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
        .bind(&token.hash)
        .bind(token.role.as_str())
        .bind(&token.vendor)
        .bind(&token.label)
        .bind(token.created_at)
        .bind(token.expires_at)
        .execute(&self.pool)
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
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(api_token_from_row)
        .transpose()
    }

    async fn api_tokens_count(&self) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM api_tokens")
            .fetch_one(&self.pool)
            .await?;
        from_db_int(count, "API token count")
    }

    async fn enrol_token_insert(&self, token: EnrolTokenRow) -> Result<(), StoreError> {
        let uses_left = to_db_int(token.uses_left, "enrolment token uses")?;
        sqlx::query(
            "INSERT INTO enrol_tokens (hash, label, uses_left, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&token.hash)
        .bind(&token.label)
        .bind(uses_left)
        .bind(token.created_at)
        .bind(token.expires_at)
        .execute(&self.pool)
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
        // Dropping `tx` on a refusal rolls back the use consumed below.
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        // One statement takes the use or finds none: concurrent enrolments queue on the row
        // lock and re-check `uses_left` after the one before them commits.
        let consumed: Option<i64> = sqlx::query_scalar(
            "UPDATE enrol_tokens SET uses_left = uses_left - 1 \
             WHERE hash = $1 AND uses_left > 0 AND expires_at > $2 RETURNING uses_left",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        if consumed.is_none() {
            let token =
                sqlx::query("SELECT uses_left, expires_at FROM enrol_tokens WHERE hash = $1")
                    .bind(token_hash)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(StoreError::from)?
                    .ok_or(EnrolError::TokenUnknown)?;
            let expires_at: i64 = token.try_get("expires_at").map_err(StoreError::from)?;
            return Err(if expires_at <= now {
                EnrolError::TokenExpired
            } else {
                EnrolError::TokenUsedUp
            });
        }
        let group_exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM groups WHERE id = $1)")
                .bind(&terminal.group)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::from)?;
        let no_group = || {
            StoreError::NotFound(format!(
                "cannot enrol terminal {:?} into group {:?}: no such group",
                terminal.id, terminal.group
            ))
        };
        if !group_exists {
            return Err(no_group().into());
        }
        let row = sqlx::query(concat!(
            "INSERT INTO terminals (id, group_id, last_address, enrolled_at, cert_sha256, \
             user_name, tz, hardware) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (id) DO NOTHING RETURNING ",
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
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| {
            // The group was deleted since the check above.
            if is_foreign_key_violation(&e) {
                no_group()
            } else {
                StoreError::Db(e)
            }
        })?;
        let Some(row) = row else {
            return Err(EnrolError::TerminalExists(terminal.id));
        };
        let enrolled = terminal_from_row(&row)?;
        sqlx::query(
            "INSERT INTO terminal_addresses (terminal, address, first_seen, last_seen, checkins) \
             VALUES ($1, $2, $3, $3, 0)",
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
            " FROM terminals WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
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
                " FROM terminals WHERE id > $1 ORDER BY id LIMIT $2"
            ))
            .bind(after)
            .bind(limit),
            (Some(group), None) => sqlx::query(concat!(
                "SELECT ",
                terminal_columns!(),
                " FROM terminals WHERE group_id = $3 AND id > $1 ORDER BY id LIMIT $2"
            ))
            .bind(after)
            .bind(limit)
            .bind(group),
            (None, Some(action)) => sqlx::query(concat!(
                "SELECT ",
                terminal_columns!(),
                " FROM terminals WHERE plan_action = $3 AND id > $1 ORDER BY id LIMIT $2"
            ))
            .bind(after)
            .bind(limit)
            .bind(action),
            (Some(group), Some(action)) => sqlx::query(concat!(
                "SELECT ",
                terminal_columns!(),
                " FROM terminals WHERE group_id = $3 AND plan_action = $4 AND id > $1 \
                 ORDER BY id LIMIT $2"
            ))
            .bind(after)
            .bind(limit)
            .bind(group)
            .bind(action),
        };
        statement
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(terminal_from_row)
            .collect()
    }

    async fn terminal_delete(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Addresses and events go with it (ON DELETE CASCADE).
        let deleted = sqlx::query("DELETE FROM terminals WHERE id = $1")
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
        let mut tx = self.pool.begin().await?;
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
        tx.commit().await?;
        Ok(())
    }

    async fn addresses(&self, terminal: &str) -> Result<Vec<AddressRow>, StoreError> {
        sqlx::query(
            "SELECT address, first_seen, last_seen, checkins FROM terminal_addresses \
             WHERE terminal = $1 ORDER BY last_seen DESC, address",
        )
        .bind(terminal)
        .fetch_all(&self.pool)
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
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(group_with_count_from_row)
        .collect()
    }

    async fn group_put(&self, group: GroupRow) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        bump_config(&mut tx).await?;
        sqlx::query(
            "INSERT INTO groups (id, description, policy) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET description = EXCLUDED.description, \
             policy = EXCLUDED.policy",
        )
        .bind(&group.id)
        .bind(&group.description)
        .bind(&group.policy)
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
        let mut tx = self.pool.begin().await?;
        bump_config(&mut tx).await?;
        // Locking the group row waits for enrolments into it that are still in flight (they
        // hold a key-share lock on it), so the count below includes them.
        let exists: Option<String> =
            sqlx::query_scalar("SELECT id FROM groups WHERE id = $1 FOR UPDATE")
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
        let rule: Option<i32> = sqlx::query_scalar(
            "SELECT position FROM rules WHERE group_id = $1 ORDER BY position LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(position) = rule {
            return Err(StoreError::Conflict(format!(
                "group {id:?} cannot be deleted: placement rule {} places terminals in it",
                i64::from(position) + 1
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
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(rule_from_row)
            .collect()
    }

    async fn rules_replace(&self, rules: &[RuleRow]) -> Result<(), StoreError> {
        let rules_json = rules_json(rules)?;
        let mut tx = self.pool.begin().await?;
        bump_config(&mut tx).await?;
        let missing = sqlx::query(
            "SELECT (r ->> 0)::bigint AS position, r ->> 1 AS group_id \
             FROM jsonb_array_elements($1::jsonb) AS r \
             WHERE NOT EXISTS (SELECT 1 FROM groups WHERE groups.id = r ->> 1) \
             ORDER BY 1 LIMIT 1",
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
             SELECT (r ->> 0)::integer, r ->> 1, r ->> 2 FROM jsonb_array_elements($1::jsonb) AS r",
        )
        .bind(&rules_json)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn events_append(&self, events: &[EventRow]) -> Result<AppendOutcome, StoreError> {
        let (terminal, rows) = events_json(events)?;
        if events.is_empty() {
            return Ok(AppendOutcome::default());
        }
        let not_enrolled = || {
            StoreError::NotFound(format!(
                "cannot store events of terminal {terminal:?}: it is not enrolled"
            ))
        };
        let mut tx = self.pool.begin().await?;
        let known: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM terminals WHERE id = $1)")
                .bind(terminal)
                .fetch_one(&mut *tx)
                .await?;
        if !known {
            return Err(not_enrolled());
        }
        let accepted = sqlx::query(
            "INSERT INTO events (terminal, seq, at, kind, data, received_at) \
             SELECT $1, (e ->> 0)::bigint, (e ->> 1)::bigint, e ->> 2, e ->> 3, \
                    (e ->> 4)::bigint \
             FROM jsonb_array_elements($2::jsonb) AS e \
             ON CONFLICT (terminal, seq) DO NOTHING",
        )
        .bind(terminal)
        .bind(&rows)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_foreign_key_violation(&e) {
                not_enrolled()
            } else {
                StoreError::Db(e)
            }
        })?
        .rows_affected();
        if events.iter().any(|event| event.kind == PLAN_REPORT) {
            // The report with the highest seq wins, whatever order reports arrive in.
            sqlx::query(
                "UPDATE terminals SET last_report = (SELECT data FROM events \
                     WHERE terminal = $1 AND kind = 'plan.report' ORDER BY seq DESC LIMIT 1) \
                 WHERE id = $1",
            )
            .bind(terminal)
            .execute(&mut *tx)
            .await?;
        }
        let last_seq: Option<i64> =
            sqlx::query_scalar("SELECT max(seq) FROM events WHERE terminal = $1")
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
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(event_from_row)
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
