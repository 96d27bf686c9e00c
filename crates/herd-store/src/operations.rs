//! What the center keeps for its operations (SPEC §3.6; migration 0011): the durable queue of
//! alert deliveries (what the alert worker must send to each channel, retried with back-off
//! until delivered or given up; also the record `herd alerts list` shows), the vendor feed URLs
//! the center polls (with the validators of their last answer), and the messages between
//! operators and device users (each keeping the site of the terminal it is to or from, the
//! per-site thread).

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use crate::StoreError;
use crate::common::{from_db_int, limit_or_all, to_db_int};
use crate::sql::{Dialect, SqlStore};

// --- alert deliveries ---------------------------------------------------------------------

/// One alert to send to one channel ([`crate::Store::alert_enqueue`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAlertDelivery {
    /// The configured channel's name.
    pub channel: String,
    /// What raised it (`detection`, `site_unreachable`, `summary`, `digest`…).
    pub kind: String,
    /// What it is about, in a few words (a terminal, a site, a threat).
    pub subject: String,
    /// The alert in words, as a person reads it.
    pub text: String,
    /// The JSON document a webhook receives.
    pub payload: String,
    pub created_at: i64,
    /// For an e-mail channel, the one address to send to instead of the channel's `to` (a
    /// consent notice to a terminal's user); `None` for alerts.
    pub recipient: Option<String>,
}

/// One alert rule's throttle window as stored ([`crate::Store::alert_window_replace`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertWindowRow {
    pub rule: String,
    /// Moved by every write: a process writes only over the version it read.
    pub version: u64,
    /// The throttle's window as the center wrote it (JSON); the store does not read it.
    pub state: String,
}

/// A queued or finished delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertDeliveryRow {
    pub id: u64,
    pub delivery: NewAlertDelivery,
    /// Attempts made (or begun: a claim counts one).
    pub attempts: u32,
    pub next_attempt_at: i64,
    pub delivered_at: Option<i64>,
    /// When the worker gave up on it.
    pub failed_at: Option<i64>,
    pub last_error: Option<String>,
}

/// How an attempt ended ([`crate::Store::alert_attempted`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlertAttempt {
    Delivered,
    /// Failed; try again at `next_attempt_at`.
    Retry {
        next_attempt_at: i64,
        error: String,
    },
    /// Failed for the last time.
    GaveUp {
        error: String,
    },
}

const DELIVERY_COLUMNS: &str = "id, channel, kind, subject, text, payload, created_at, attempts, \
     next_attempt_at, delivered_at, failed_at, last_error, recipient";

fn delivery_from_row<R: Row>(row: &R) -> Result<AlertDeliveryRow, StoreError>
where
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    &'static str: ColumnIndex<R>,
{
    let attempts = from_db_int(row.try_get("attempts")?, "alert attempts")?;
    Ok(AlertDeliveryRow {
        id: from_db_int(row.try_get("id")?, "alert delivery id")?,
        delivery: NewAlertDelivery {
            channel: row.try_get("channel")?,
            kind: row.try_get("kind")?,
            subject: row.try_get("subject")?,
            text: row.try_get("text")?,
            payload: row.try_get("payload")?,
            created_at: row.try_get("created_at")?,
            recipient: row.try_get("recipient")?,
        },
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        next_attempt_at: row.try_get("next_attempt_at")?,
        delivered_at: row.try_get("delivered_at")?,
        failed_at: row.try_get("failed_at")?,
        last_error: row.try_get("last_error")?,
    })
}

// --- vendor feed sources -------------------------------------------------------------------

/// A vendor's feed source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedSourceRow {
    pub vendor: String,
    pub url: String,
    pub interval_secs: u64,
    pub registered_at: i64,
    /// The last answer's `ETag` and `Last-Modified`, sent back as `If-None-Match` and
    /// `If-Modified-Since`.
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub last_polled_at: Option<i64>,
    /// What the last poll did, in words (`applied`, `not modified`, `refused: …`).
    pub last_status: Option<String>,
}

/// What a poll saw ([`crate::Store::feed_source_polled`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedPolled<'a> {
    pub at: i64,
    /// New validators, or `None` to keep the stored ones (a 304, a failed request).
    pub validators: Option<(Option<&'a str>, Option<&'a str>)>,
    pub status: &'a str,
}

const FEED_SOURCE_COLUMNS: &str =
    "vendor, url, interval_secs, registered_at, etag, last_modified, last_polled_at, last_status";

fn source_from_row<R: Row>(row: &R) -> Result<FeedSourceRow, StoreError>
where
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    &'static str: ColumnIndex<R>,
{
    Ok(FeedSourceRow {
        vendor: row.try_get("vendor")?,
        url: row.try_get("url")?,
        interval_secs: from_db_int(row.try_get("interval_secs")?, "feed poll interval")?,
        registered_at: row.try_get("registered_at")?,
        etag: row.try_get("etag")?,
        last_modified: row.try_get("last_modified")?,
        last_polled_at: row.try_get("last_polled_at")?,
        last_status: row.try_get("last_status")?,
    })
}

// --- messages ------------------------------------------------------------------------------

/// A message to store ([`crate::Store::message_insert`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    pub at: i64,
    /// `operator` or `terminal:<id>`.
    pub sender: String,
    /// `all`, `group`, `terminal` (operators to users) or `center` (a terminal's answer).
    pub audience: String,
    /// The group or terminal (for `center`: the terminal that sent it); empty for `all`.
    pub target: String,
    pub body: String,
    pub reply_to: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRow {
    pub id: u64,
    pub message: NewMessage,
    /// The site of the terminal it is to or from (`None`: direct, or not to one terminal).
    pub site: Option<String>,
}

/// Which messages ([`crate::Store::messages`]), oldest first after `after_id`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageQuery<'a> {
    pub after_id: u64,
    /// 0: all.
    pub limit: u32,
    /// A terminal's inbox: messages to all, to its group, or to it (terminal id, group).
    pub inbox_of: Option<(&'a str, &'a str)>,
    /// The thread with one terminal: messages to it and its answers.
    pub terminal: Option<&'a str>,
    /// One site's thread.
    pub site: Option<&'a str>,
}

const MESSAGE_COLUMNS: &str = "id, at, sender, audience, target, site, body, reply_to";

/// Queues `deliveries` in `tx`, due at once (`created_at`).
async fn insert_deliveries<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    deliveries: &[NewAlertDelivery],
) -> Result<(), StoreError>
where
    DB: Dialect,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> Option<&'a str>: Encode<'a, DB> + Type<DB>,
    for<'a> i64: Encode<'a, DB> + Type<DB>,
{
    for delivery in deliveries {
        sqlx::query(
            "INSERT INTO alert_deliveries \
             (channel, kind, subject, text, payload, created_at, next_attempt_at, recipient) \
             VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
        )
        .bind(delivery.channel.as_str())
        .bind(delivery.kind.as_str())
        .bind(delivery.subject.as_str())
        .bind(delivery.text.as_str())
        .bind(delivery.payload.as_str())
        .bind(delivery.created_at)
        .bind(delivery.recipient.as_deref())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

fn alert_window_from_row<R: Row>(row: &R) -> Result<AlertWindowRow, StoreError>
where
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    &'static str: ColumnIndex<R>,
{
    Ok(AlertWindowRow {
        rule: row.try_get("rule")?,
        version: from_db_int(row.try_get("version")?, "alert window version")?,
        state: row.try_get("state")?,
    })
}

fn message_from_row<R: Row>(row: &R) -> Result<MessageRow, StoreError>
where
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    &'static str: ColumnIndex<R>,
{
    let reply_to: Option<i64> = row.try_get("reply_to")?;
    Ok(MessageRow {
        id: from_db_int(row.try_get("id")?, "message id")?,
        message: NewMessage {
            at: row.try_get("at")?,
            sender: row.try_get("sender")?,
            audience: row.try_get("audience")?,
            target: row.try_get("target")?,
            body: row.try_get("body")?,
            reply_to: reply_to
                .map(|id| from_db_int(id, "message reply_to"))
                .transpose()?,
        },
        site: row.try_get("site")?,
    })
}

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
    pub(crate) async fn alert_enqueue_impl(
        &self,
        deliveries: &[NewAlertDelivery],
    ) -> Result<(), StoreError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let mut tx = self.write().await?;
        insert_deliveries(&mut tx, deliveries).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn alert_window_impl(
        &self,
        rule: &str,
    ) -> Result<Option<AlertWindowRow>, StoreError> {
        let row = sqlx::query("SELECT rule, version, state FROM alert_windows WHERE rule = $1")
            .bind(rule)
            .fetch_optional(&self.writer)
            .await?;
        row.map(|row| alert_window_from_row(&row)).transpose()
    }

    pub(crate) async fn alert_windows_impl(&self) -> Result<Vec<AlertWindowRow>, StoreError> {
        let rows = sqlx::query("SELECT rule, version, state FROM alert_windows ORDER BY rule")
            .fetch_all(&self.writer)
            .await?;
        rows.iter().map(alert_window_from_row).collect()
    }

    pub(crate) async fn alert_window_replace_impl(
        &self,
        rule: &str,
        expected_version: u64,
        state: &str,
        deliveries: &[NewAlertDelivery],
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let done = if expected_version == 0 {
            sqlx::query(
                "INSERT INTO alert_windows (rule, version, state) VALUES ($1, 1, $2) \
                 ON CONFLICT (rule) DO NOTHING",
            )
            .bind(rule)
            .bind(state)
            .execute(&mut *tx)
            .await?
        } else {
            sqlx::query(
                "UPDATE alert_windows SET version = version + 1, state = $3 \
                 WHERE rule = $1 AND version = $2",
            )
            .bind(rule)
            .bind(to_db_int(expected_version, "alert window version")?)
            .bind(state)
            .execute(&mut *tx)
            .await?
        };
        if DB::rows_affected(&done) == 0 {
            // Another process wrote first; the transaction rolls back when dropped.
            return Ok(false);
        }
        insert_deliveries(&mut tx, deliveries).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(crate) async fn alert_claim_impl(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<AlertDeliveryRow>, StoreError> {
        let due = sqlx::query(
            "SELECT id, next_attempt_at FROM alert_deliveries \
             WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at, id LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        let mut claimed = Vec::with_capacity(due.len());
        for row in due {
            let id: i64 = row.try_get("id")?;
            let seen: i64 = row.try_get("next_attempt_at")?;
            // Compare-and-set on the time read: whichever process moves it first owns the
            // attempt; the others change no row and skip it.
            let taken = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE alert_deliveries SET attempts = attempts + 1, next_attempt_at = $1 \
                 WHERE id = $2 AND next_attempt_at = $3 \
                 AND delivered_at IS NULL AND failed_at IS NULL RETURNING {DELIVERY_COLUMNS}"
            )))
            .bind(lease_until)
            .bind(id)
            .bind(seen)
            .fetch_optional(&self.writer)
            .await?;
            if let Some(taken) = taken {
                claimed.push(delivery_from_row(&taken)?);
            }
        }
        Ok(claimed)
    }

    pub(crate) async fn alert_attempted_impl(
        &self,
        id: u64,
        at: i64,
        outcome: &AlertAttempt,
    ) -> Result<(), StoreError> {
        let id = to_db_int(id, "alert delivery id")?;
        let statement = match outcome {
            AlertAttempt::Delivered => sqlx::query(
                "UPDATE alert_deliveries SET delivered_at = $2, last_error = NULL WHERE id = $1",
            )
            .bind(id)
            .bind(at),
            AlertAttempt::Retry {
                next_attempt_at,
                error,
            } => sqlx::query(
                "UPDATE alert_deliveries SET next_attempt_at = $2, last_error = $3 WHERE id = $1",
            )
            .bind(id)
            .bind(*next_attempt_at)
            .bind(error.as_str()),
            AlertAttempt::GaveUp { error } => sqlx::query(
                "UPDATE alert_deliveries SET failed_at = $2, last_error = $3 WHERE id = $1",
            )
            .bind(id)
            .bind(at)
            .bind(error.as_str()),
        };
        let done = statement.execute(&self.writer).await?;
        if DB::rows_affected(&done) == 0 {
            return Err(StoreError::NotFound(format!(
                "alert delivery {id} does not exist"
            )));
        }
        Ok(())
    }

    pub(crate) async fn alert_deliveries_impl(
        &self,
        before_id: Option<u64>,
        limit: u32,
    ) -> Result<Vec<AlertDeliveryRow>, StoreError> {
        let before = match before_id {
            Some(id) => to_db_int(id, "alert delivery id")?,
            None => i64::MAX,
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM alert_deliveries WHERE id < $1 ORDER BY id DESC LIMIT $2"
        )))
        .bind(before)
        .bind(limit_or_all(limit))
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(delivery_from_row)
        .collect()
    }

    pub(crate) async fn feed_source_put_impl(
        &self,
        source: &FeedSourceRow,
    ) -> Result<(), StoreError> {
        // A new URL or interval starts over: no validators, no last poll.
        sqlx::query(
            "INSERT INTO feed_sources (vendor, url, interval_secs, registered_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (vendor) DO UPDATE SET url = excluded.url, \
             interval_secs = excluded.interval_secs, registered_at = excluded.registered_at, \
             etag = NULL, last_modified = NULL, last_polled_at = NULL, last_status = NULL",
        )
        .bind(source.vendor.as_str())
        .bind(source.url.as_str())
        .bind(to_db_int(source.interval_secs, "feed poll interval")?)
        .bind(source.registered_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub(crate) async fn feed_source_delete_impl(&self, vendor: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM feed_sources WHERE vendor = $1")
            .bind(vendor)
            .execute(&self.writer)
            .await?;
        Ok(DB::rows_affected(&done) > 0)
    }

    pub(crate) async fn feed_sources_impl(&self) -> Result<Vec<FeedSourceRow>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {FEED_SOURCE_COLUMNS} FROM feed_sources ORDER BY vendor"
        )))
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(source_from_row)
        .collect()
    }

    pub(crate) async fn feed_source_polled_impl(
        &self,
        vendor: &str,
        url: &str,
        polled: &FeedPolled<'_>,
    ) -> Result<bool, StoreError> {
        // Only while the source is still the one polled: a URL changed meanwhile keeps its
        // fresh start.
        let done = match polled.validators {
            Some((etag, last_modified)) => sqlx::query(
                "UPDATE feed_sources SET last_polled_at = $3, last_status = $4, etag = $5, \
                 last_modified = $6 WHERE vendor = $1 AND url = $2",
            )
            .bind(vendor)
            .bind(url)
            .bind(polled.at)
            .bind(polled.status)
            .bind(etag)
            .bind(last_modified),
            None => sqlx::query(
                "UPDATE feed_sources SET last_polled_at = $3, last_status = $4 \
                 WHERE vendor = $1 AND url = $2",
            )
            .bind(vendor)
            .bind(url)
            .bind(polled.at)
            .bind(polled.status),
        }
        .execute(&self.writer)
        .await?;
        Ok(DB::rows_affected(&done) > 0)
    }

    pub(crate) async fn message_insert_impl(
        &self,
        message: &NewMessage,
    ) -> Result<MessageRow, StoreError> {
        // 0 stands for none (ids start at 1): the generic bounds encode no `Option<i64>`.
        let reply_to = to_db_int(message.reply_to.unwrap_or(0), "message reply_to")?;
        // The site comes from the terminal's row, read in the same statement.
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO messages (at, sender, audience, target, site, body, reply_to) \
             VALUES ($1, $2, $3, $4, \
             (SELECT t.site FROM terminals t WHERE t.id = $4 AND $3 IN ('terminal', 'center')), \
             $5, NULLIF($6, 0)) RETURNING {MESSAGE_COLUMNS}"
        )))
        .bind(message.at)
        .bind(message.sender.as_str())
        .bind(message.audience.as_str())
        .bind(message.target.as_str())
        .bind(message.body.as_str())
        .bind(reply_to)
        .fetch_one(&self.writer)
        .await?;
        message_from_row(&row)
    }

    pub(crate) async fn messages_for_site_impl(
        &self,
        site: &str,
        after_id: u64,
        limit: u32,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let after = to_db_int(after_id, "message id")?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id > $1 \
             AND (audience IN ('all', 'group') \
                  OR (audience = 'terminal' AND target IN \
                      (SELECT st.terminal FROM site_terminals st WHERE st.site = $2))) \
             ORDER BY id LIMIT $3"
        )))
        .bind(after)
        .bind(site)
        .bind(limit_or_all(limit))
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(message_from_row)
        .collect()
    }

    pub(crate) async fn messages_replicate_impl(
        &self,
        rows: &[MessageRow],
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.write().await?;
        for row in rows {
            let message = &row.message;
            sqlx::query(
                "INSERT INTO messages (id, at, sender, audience, target, site, body, reply_to) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, NULLIF($8, 0)) ON CONFLICT (id) DO NOTHING",
            )
            .bind(to_db_int(row.id, "message id")?)
            .bind(message.at)
            .bind(message.sender.as_str())
            .bind(message.audience.as_str())
            .bind(message.target.as_str())
            .bind(row.site.as_deref())
            .bind(message.body.as_str())
            .bind(to_db_int(
                message.reply_to.unwrap_or(0),
                "message reply_to",
            )?)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn message_newest_id_impl(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(id), 0) AS newest FROM messages")
            .fetch_one(&self.reader)
            .await?;
        from_db_int(row.try_get("newest")?, "message id")
    }

    pub(crate) async fn messages_impl(
        &self,
        query: &MessageQuery<'_>,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let after = to_db_int(query.after_id, "message id")?;
        let (inbox_terminal, inbox_group) = match query.inbox_of {
            Some((terminal, group)) => (Some(terminal), Some(group)),
            None => (None, None),
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id > $1 \
             AND ($2 IS NULL OR audience = 'all' \
                  OR (audience = 'group' AND target = $3) \
                  OR (audience = 'terminal' AND target = $2)) \
             AND ($4 IS NULL OR (audience IN ('terminal', 'center') AND target = $4)) \
             AND ($5 IS NULL OR site = $5) \
             ORDER BY id LIMIT $6"
        )))
        .bind(after)
        .bind(inbox_terminal)
        .bind(inbox_group)
        .bind(query.terminal)
        .bind(query.site)
        .bind(limit_or_all(query.limit))
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(message_from_row)
        .collect()
    }
}
