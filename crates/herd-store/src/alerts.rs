//! The durable queue of alert deliveries (migration 0011): what the center's alert worker must
//! send to each channel, retried with back-off until delivered or given up. The rows are the
//! record `herd alerts list` shows, too.

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use crate::StoreError;
use crate::common::{from_db_int, limit_or_all, to_db_int};
use crate::sql::{Dialect, SqlStore};

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

const COLUMNS: &str = "id, channel, kind, subject, text, payload, created_at, attempts, \
     next_attempt_at, delivered_at, failed_at, last_error";

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
        },
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        next_attempt_at: row.try_get("next_attempt_at")?,
        delivered_at: row.try_get("delivered_at")?,
        failed_at: row.try_get("failed_at")?,
        last_error: row.try_get("last_error")?,
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
        for delivery in deliveries {
            sqlx::query(
                "INSERT INTO alert_deliveries \
                 (channel, kind, subject, text, payload, created_at, next_attempt_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6)",
            )
            .bind(delivery.channel.as_str())
            .bind(delivery.kind.as_str())
            .bind(delivery.subject.as_str())
            .bind(delivery.text.as_str())
            .bind(delivery.payload.as_str())
            .bind(delivery.created_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
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
                 AND delivered_at IS NULL AND failed_at IS NULL RETURNING {COLUMNS}"
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
            "SELECT {COLUMNS} FROM alert_deliveries WHERE id < $1 ORDER BY id DESC LIMIT $2"
        )))
        .bind(before)
        .bind(limit_or_all(limit))
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(delivery_from_row)
        .collect()
    }
}
