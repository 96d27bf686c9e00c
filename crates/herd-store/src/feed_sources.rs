//! Vendor feed URLs the center polls (migration 0011): where each vendor's feed is fetched
//! from, how often, and what the last poll saw (the validators a conditional request sends,
//! and its outcome in words).

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use crate::StoreError;
use crate::common::{from_db_int, to_db_int};
use crate::sql::{Dialect, SqlStore};

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

const COLUMNS: &str =
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
            "SELECT {COLUMNS} FROM feed_sources ORDER BY vendor"
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
}
