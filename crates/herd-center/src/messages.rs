//! Messages between operators and device users (seed 001 ¶0044, ¶0022): operators send to all
//! terminals, a group or one terminal; a terminal reads its inbox (`/v1/terminal/messages`)
//! and its user answers or sends a status through the outbox (a `message.sent` event, stored
//! here as a message to the center). Every message to or from one terminal keeps that
//! terminal's site, so a site's thread is the record between the center and the site.

use herd_proto::api::events;
use herd_proto::messages::{MAX_MESSAGE_CHARS, Message, MessageAnswer, MessageList, MessageToSend};
use herd_store::{MessageQuery, MessageRow, NewMessage};

use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::{Center, KnownTerminal, rfc3339, unix_now};

/// The most messages one listing returns.
pub const MAX_LISTED: u32 = 500;

/// Who sends an operator's message.
const OPERATOR: &str = "operator";

impl Center {
    /// Stores an operator's message to its audience; the group or terminal must exist.
    pub async fn send_message(&self, request: MessageToSend) -> CenterResult<Message> {
        check_text("the message: $.text", &request.text)?;
        no_nul("the message: $.to", &request.to)?;
        let (audience, target) = match request.to.split_once(':') {
            None if request.to == "all" => ("all", String::new()),
            Some(("group", group)) if !group.is_empty() => {
                let groups = self.store.group_policies().await?;
                if !groups.iter().any(|g| g.id == group) {
                    return Err(CenterError::not_found(format!(
                        "the message: $.to: there is no group {group:?}"
                    )));
                }
                ("group", group.to_owned())
            }
            Some(("terminal", terminal)) if !terminal.is_empty() => {
                if self.store.terminal(terminal).await?.is_none() {
                    return Err(CenterError::not_found(format!(
                        "the message: $.to: there is no terminal {terminal:?}"
                    )));
                }
                ("terminal", terminal.to_owned())
            }
            _ => {
                return Err(CenterError::bad_request(format!(
                    "the message: $.to: {:?} is none of \"all\", \"group:ID\", \"terminal:ID\"",
                    request.to
                )));
            }
        };
        let row = self
            .store
            .message_insert(&NewMessage {
                at: unix_now(),
                sender: OPERATOR.to_owned(),
                audience: audience.to_owned(),
                target,
                body: request.text,
                reply_to: None,
            })
            .await?;
        self.newest_message
            .id
            .fetch_max(row.id, std::sync::atomic::Ordering::Relaxed);
        // Held waits (terminals, sites) are answered: they fetch it now.
        self.announce_changes();
        Ok(wire_message(row))
    }

    /// Messages oldest first after `after`: all, one terminal's thread, or one site's.
    pub async fn messages(
        &self,
        after: Option<u64>,
        limit: Option<u32>,
        terminal: Option<&str>,
        site: Option<&str>,
    ) -> CenterResult<MessageList> {
        let limit = check_limit(limit)?;
        // No terminal or site id holds a NUL (the database would refuse the comparison).
        if [terminal, site]
            .into_iter()
            .flatten()
            .any(|v| v.contains('\0'))
        {
            return Ok(MessageList {
                messages: Vec::new(),
            });
        }
        let rows = self
            .store
            .messages(&MessageQuery {
                after_id: after_id(after)?,
                limit,
                inbox_of: None,
                terminal,
                site,
            })
            .await?;
        Ok(MessageList {
            messages: rows.into_iter().map(wire_message).collect(),
        })
    }

    /// A terminal's inbox after `after`: to all, to its group, to it.
    pub async fn terminal_messages(
        &self,
        terminal: &KnownTerminal,
        after: Option<u64>,
        limit: Option<u32>,
    ) -> CenterResult<MessageList> {
        let limit = check_limit(limit)?;
        let rows = self
            .store
            .messages(&MessageQuery {
                after_id: after_id(after)?,
                limit,
                inbox_of: Some((&terminal.id, &terminal.group)),
                terminal: None,
                site: None,
            })
            .await?;
        Ok(MessageList {
            messages: rows.into_iter().map(wire_message).collect(),
        })
    }

    /// Stores a terminal's `message.sent` event as its message to the center.
    pub(crate) async fn store_answer(&self, terminal: &str, at: i64, data: &str) {
        let Ok(answer) = serde_json::from_str::<MessageAnswer>(data) else {
            // Checked before the event was stored (`answer_problem`).
            return;
        };
        let stored = self
            .store
            .message_insert(&NewMessage {
                at,
                sender: format!("terminal:{terminal}"),
                audience: "center".into(),
                target: terminal.to_owned(),
                body: answer.text,
                reply_to: answer.reply_to,
            })
            .await;
        if let Err(err) = stored {
            tracing::error!(%terminal, %err, "a terminal's message was not stored");
        }
    }
}

/// The newest message id as of `read_at` (Unix seconds; 0: never read).
#[derive(Debug, Default)]
pub(crate) struct NewestMessage {
    id: std::sync::atomic::AtomicU64,
    read_at: std::sync::atomic::AtomicI64,
}

impl Center {
    /// The newest message id this process knows of, part of the change token.
    pub(crate) fn newest_message_known(&self) -> u64 {
        self.newest_message
            .id
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The newest message id, from the store at most once a second per process. A message
    /// sent through this process counts at once ([`Center::send_message`] raises it).
    async fn newest_message_id(&self) -> CenterResult<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let now = unix_now();
        let cached = &self.newest_message;
        if cached.read_at.load(Relaxed) == now {
            return Ok(cached.id.load(Relaxed));
        }
        let newest = self.store.message_newest_id().await?;
        cached.id.fetch_max(newest, Relaxed);
        cached.read_at.store(now, Relaxed);
        Ok(cached.id.load(Relaxed))
    }

    /// The messages a check-in answer carries for a terminal that has those up to `after`,
    /// and the id it may keep from now on. Its inbox is read only when a message newer than
    /// `after` exists (for anyone): most check-ins cost one atomic read. A store that fails
    /// gives nothing this time (the check-in itself still counts).
    pub(crate) async fn checkin_messages(
        &self,
        terminal: &KnownTerminal,
        after: u64,
    ) -> (Vec<Message>, Option<u64>) {
        let newest = match self.newest_message_id().await {
            Ok(newest) => newest,
            Err(err) => {
                tracing::warn!(terminal = %terminal.id, %err, "cannot read the newest message id");
                return (Vec::new(), None);
            }
        };
        if after >= newest || after > i64::MAX as u64 {
            return (Vec::new(), Some(newest.max(after.min(i64::MAX as u64))));
        }
        let limit = herd_proto::api::MAX_CHECKIN_MESSAGES;
        let rows = self
            .store
            .messages(&MessageQuery {
                after_id: after,
                limit: limit as u32,
                inbox_of: Some((&terminal.id, &terminal.group)),
                terminal: None,
                site: None,
            })
            .await;
        match rows {
            Ok(rows) => {
                let last = rows.last().map(|r| r.id).unwrap_or(after);
                // A full page may have more after it: the terminal takes the rest next time.
                let through = if rows.len() == limit {
                    last
                } else {
                    last.max(newest)
                };
                (rows.into_iter().map(wire_message).collect(), Some(through))
            }
            Err(err) => {
                tracing::warn!(terminal = %terminal.id, %err, "cannot read a terminal's inbox");
                (Vec::new(), None)
            }
        }
    }
}

/// The most messages one site pull returns.
pub const SITE_BATCH: u32 = 500;

impl Center {
    /// What site `site` relays, after id `after`: messages to all, to a group, and to the
    /// terminals it ever served (at most [`SITE_BATCH`]).
    pub async fn site_messages(&self, site: &str, after: Option<u64>) -> CenterResult<MessageList> {
        let rows = self
            .store
            .messages_for_site(site, after_id(after)?, SITE_BATCH)
            .await?;
        Ok(MessageList {
            messages: rows.into_iter().map(wire_message).collect(),
        })
    }

    /// On a site: copies the center's new messages, under the center's ids, so the site's
    /// check-ins carry them to its terminals as the center's do. Returns how many came.
    pub(crate) async fn replicate_messages(
        &self,
        client: &herd_client::Client,
    ) -> anyhow::Result<usize> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut copied = 0;
        loop {
            let after = self.store.message_newest_id().await?;
            let fetch = client.clone();
            let list = tokio::task::spawn_blocking(move || fetch.site_messages(after)).await??;
            let count = list.messages.len();
            let mut rows = Vec::with_capacity(count);
            for message in list.messages {
                let at = herd_core::Timestamp::parse(&message.at)
                    .map_err(|e| {
                        anyhow::anyhow!("the center sent message {}: at: {e}", message.id)
                    })?
                    .unix_seconds();
                rows.push(MessageRow {
                    id: message.id,
                    site: message.site,
                    message: NewMessage {
                        at,
                        sender: message.from,
                        audience: message.audience,
                        target: message.target.unwrap_or_default(),
                        body: message.text,
                        reply_to: message.reply_to,
                    },
                });
            }
            if let Some(newest) = rows.last().map(|r| r.id) {
                self.store.messages_replicate(&rows).await?;
                self.newest_message.id.fetch_max(newest, Relaxed);
            }
            copied += count;
            if count < SITE_BATCH as usize {
                return Ok(copied);
            }
        }
    }
}

/// What is wrong with a `message.sent` event's data, if anything.
pub(crate) fn answer_problem(kind: &str, data: &serde_json::Value) -> Option<String> {
    if kind != events::MESSAGE_SENT {
        return None;
    }
    match serde_json::from_value::<MessageAnswer>(data.clone()) {
        Err(err) => Some(format!("not a message answer: {err}")),
        Ok(answer) => check_text("text", &answer.text).err().map(|e| e.message),
    }
}

/// Ids are below 2^63, as the API's `int64` says.
fn after_id(after: Option<u64>) -> CenterResult<u64> {
    match after.unwrap_or(0) {
        id if id > i64::MAX as u64 => Err(CenterError::bad_request(format!(
            "after: {id} is beyond the largest id, {}",
            i64::MAX
        ))),
        id => Ok(id),
    }
}

/// A NUL byte is no text a database keeps (PostgreSQL refuses it).
fn no_nul(at: &str, value: &str) -> CenterResult<()> {
    if value.contains('\0') {
        return Err(CenterError::bad_request(format!(
            "{at}: a NUL character is not allowed"
        )));
    }
    Ok(())
}

fn check_text(at: &str, text: &str) -> CenterResult<()> {
    no_nul(at, text)?;
    let chars = text.chars().count();
    if text.trim().is_empty() || chars > MAX_MESSAGE_CHARS {
        return Err(CenterError::new(
            ErrorKind::DocumentInvalid,
            format!("{at}: a message has 1 to {MAX_MESSAGE_CHARS} characters, not {chars}"),
        ));
    }
    Ok(())
}

fn check_limit(limit: Option<u32>) -> CenterResult<u32> {
    let limit = limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LISTED {
        return Err(CenterError::bad_request(format!(
            "limit: {limit} is outside 1..={MAX_LISTED}"
        )));
    }
    Ok(limit)
}

fn wire_message(row: MessageRow) -> Message {
    let message = row.message;
    Message {
        id: row.id,
        at: rfc3339(message.at),
        from: message.sender,
        target: (!message.target.is_empty()).then_some(message.target),
        audience: message.audience,
        site: row.site,
        text: message.body,
        reply_to: message.reply_to,
    }
}
