//! Messages between operators and device users (migration 0011): to all terminals, a group or
//! one terminal, and terminals' answers to the center; each remembers the site of the terminal
//! it is to or from (the per-site thread).

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use crate::StoreError;
use crate::common::{from_db_int, limit_or_all, to_db_int};
use crate::sql::{Dialect, SqlStore};

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

const COLUMNS: &str = "id, at, sender, audience, target, site, body, reply_to";

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
             $5, NULLIF($6, 0)) RETURNING {COLUMNS}"
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
            "SELECT {COLUMNS} FROM messages WHERE id > $1 \
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
