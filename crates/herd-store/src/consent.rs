//! Consent by e-mail (SPEC §3.1.6; migration 0020): the address a terminal's user is written to
//! (`terminal_contacts`) and the consent requests the center mailed (`consent_requests`), each
//! decided at most once, whoever answers first — the signed link or the device.

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use crate::StoreError;
use crate::common::{from_db_int, to_db_int};
use crate::sql::{Dialect, SqlStore};

/// A consent request to record ([`crate::Store::consent_request_open`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewConsentRequest {
    pub terminal: String,
    pub plan_id: String,
    /// What the plan changes, in words.
    pub change: String,
    /// Where the notice goes.
    pub email: String,
    pub requested_at: i64,
    pub expires_at: i64,
}

/// A recorded consent request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentRequestRow {
    pub id: u64,
    pub request: NewConsentRequest,
    /// `accepted` or `declined`, once answered.
    pub decision: Option<String>,
    pub decided_at: Option<i64>,
    /// `email` or `device`.
    pub decided_by: Option<String>,
}

const COLUMNS: &str = "id, terminal, plan_id, change, email, requested_at, expires_at, decision, \
     decided_at, decided_by";

fn request_from_row<R: Row>(row: &R) -> Result<ConsentRequestRow, StoreError>
where
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    &'static str: ColumnIndex<R>,
{
    Ok(ConsentRequestRow {
        id: from_db_int(row.try_get("id")?, "consent request id")?,
        request: NewConsentRequest {
            terminal: row.try_get("terminal")?,
            plan_id: row.try_get("plan_id")?,
            change: row.try_get("change")?,
            email: row.try_get("email")?,
            requested_at: row.try_get("requested_at")?,
            expires_at: row.try_get("expires_at")?,
        },
        decision: row.try_get("decision")?,
        decided_at: row.try_get("decided_at")?,
        decided_by: row.try_get("decided_by")?,
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
    pub(crate) async fn terminal_email_set_impl(
        &self,
        terminal: &str,
        email: Option<&str>,
        at: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let exists = sqlx::query("SELECT 1 FROM terminals WHERE id = $1")
            .bind(terminal)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !exists {
            return Ok(false);
        }
        match email {
            Some(email) => sqlx::query(
                "INSERT INTO terminal_contacts (terminal, email, set_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (terminal) DO UPDATE SET email = excluded.email, \
                 set_at = excluded.set_at",
            )
            .bind(terminal)
            .bind(email)
            .bind(at),
            None => sqlx::query("DELETE FROM terminal_contacts WHERE terminal = $1").bind(terminal),
        }
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(crate) async fn terminal_email_impl(
        &self,
        terminal: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query("SELECT email FROM terminal_contacts WHERE terminal = $1")
                .bind(terminal)
                .fetch_optional(&self.reader)
                .await?
                .map(|row| row.try_get("email"))
                .transpose()?,
        )
    }

    pub(crate) async fn consent_request_open_impl(
        &self,
        request: &NewConsentRequest,
    ) -> Result<Option<ConsentRequestRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO consent_requests \
             (terminal, plan_id, change, email, requested_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (terminal, plan_id) DO NOTHING \
             RETURNING {COLUMNS}"
        )))
        .bind(request.terminal.as_str())
        .bind(request.plan_id.as_str())
        .bind(request.change.as_str())
        .bind(request.email.as_str())
        .bind(request.requested_at)
        .bind(request.expires_at)
        .fetch_optional(&self.writer)
        .await?;
        row.as_ref().map(request_from_row).transpose()
    }

    pub(crate) async fn consent_request_impl(
        &self,
        id: u64,
    ) -> Result<Option<ConsentRequestRow>, StoreError> {
        let id = to_db_int(id, "consent request id")?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM consent_requests WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.writer)
        .await?
        .as_ref()
        .map(request_from_row)
        .transpose()
    }

    pub(crate) async fn consent_request_of_impl(
        &self,
        terminal: &str,
        plan_id: &str,
    ) -> Result<Option<ConsentRequestRow>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM consent_requests WHERE terminal = $1 AND plan_id = $2"
        )))
        .bind(terminal)
        .bind(plan_id)
        .fetch_optional(&self.reader)
        .await?
        .as_ref()
        .map(request_from_row)
        .transpose()
    }

    pub(crate) async fn consent_requests_of_impl(
        &self,
        terminal: &str,
    ) -> Result<Vec<ConsentRequestRow>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM consent_requests WHERE terminal = $1 ORDER BY id DESC \
             LIMIT 100"
        )))
        .bind(terminal)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(request_from_row)
        .collect()
    }

    pub(crate) async fn consent_decide_impl(
        &self,
        id: u64,
        decision: &str,
        at: i64,
        by: &str,
    ) -> Result<bool, StoreError> {
        let id = to_db_int(id, "consent request id")?;
        let done = sqlx::query(
            "UPDATE consent_requests SET decision = $2, decided_at = $3, decided_by = $4 \
             WHERE id = $1 AND decision IS NULL",
        )
        .bind(id)
        .bind(decision)
        .bind(at)
        .bind(by)
        .execute(&self.writer)
        .await?;
        Ok(DB::rows_affected(&done) > 0)
    }
}
