//! What happens in the fleet as it happens: check-ins, plans and events the center stores,
//! broadcast to whoever watches (the console's live view, over server-sent events). Nothing is
//! built or sent while nobody watches, so the check-in path pays one atomic read.
//!
//! Across processes: several center processes on one PostgreSQL database each see only what
//! they store themselves, so a console would miss what another process stored. They share it
//! through the store's live channel ([`Store::live_messages`], `LISTEN/NOTIFY`), and only
//! while somebody watches: a process whose console has a watcher announces it every
//! [`ANNOUNCE_EVERY`] (and at once when the first arrives); a process that heard an
//! announcement within [`WATCHED_FOR`] counts as watched, gathers what it stores and sends
//! it every [`FLUSH_EVERY`] in messages small enough for a notification. What a process sends
//! comes back to it too; it recognises its own messages by its random `from` and skips them.
//! Best effort, as a live view is: at most [`FLUSH_MAX`] happenings a flush travel, and the
//! watchers are told how many were left out. On SQLite (one process per database file) the
//! store has no such channel and none of this runs.
//!
//! The same channel carries nudges ([`Live::send_nudge`]): news for one terminal alone (an
//! answer by e-mail to its consent question) that wakes its push connection
//! ([`crate::wait::Waits::nudge_held`]) in whichever process holds it.
//!
//! [`Store::live_messages`]: herd_store::Store::live_messages

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::time::Duration;

use herd_store::{LIVE_PAYLOAD_MAX, Store, StoreError};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast, watch};

use crate::wait::Waits;

/// How many happenings a slow watcher may fall behind before it skips ahead (and is told).
const BACKLOG: usize = 1024;
/// How often a process with a watcher says so to the others.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(10);
/// How long an announcement counts: three announcements may be lost before it lapses.
pub const WATCHED_FOR: Duration = Duration::from_secs(30);
/// How often happenings gathered for the other processes are sent.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// At most this many happenings travel per flush; the rest are counted as left out.
pub const FLUSH_MAX: usize = 500;

/// One thing that happened, as the console shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Happening {
    /// `checkin`, or the event's kind (`plan.report`, `detection`, …); `missed` when
    /// happenings of another process were left out (the summary says how many).
    pub kind: String,
    pub terminal: String,
    /// RFC 3339, when the center stored it.
    pub at: String,
    /// One line for a person: the plan's action, the report's outcome, an event's summary.
    pub summary: String,
}

/// What one center process sends the others on the live channel.
#[derive(Debug, Default, Serialize, Deserialize)]
struct LiveMessage {
    /// The sending process ([`Live::process`]).
    from: String,
    /// The sender has a watcher: send it what you store.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    watching: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    happenings: Vec<Happening>,
    /// Happenings the sender stored but left out (over [`FLUSH_MAX`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    left_out: u64,
    /// Terminals whose held waits are to be woken, wherever they wait.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    nudge: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Happenings gathered for the other processes, and how many did not fit.
#[derive(Debug, Default)]
struct Outgoing {
    happenings: Vec<Happening>,
    left_out: u64,
}

/// The broadcast of [`Happening`]s, and what this process shares with the others.
#[derive(Debug)]
pub struct Live {
    sender: broadcast::Sender<Happening>,
    /// This process on the live channel: random, so its own messages are recognised.
    process: String,
    /// Until when (Unix milliseconds) another process has a watcher; 0: none heard of.
    others_watch_until: AtomicI64,
    outgoing: std::sync::Mutex<Outgoing>,
    /// Woken when this process gets its first watcher, to announce it at once.
    first_watcher: Notify,
}

impl Default for Live {
    fn default() -> Live {
        Live {
            sender: broadcast::Sender::new(BACKLOG),
            process: format!("{:016x}", rand::random::<u64>()),
            others_watch_until: AtomicI64::new(0),
            outgoing: Default::default(),
            first_watcher: Notify::new(),
        }
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Live {
    /// Whether anyone watches, here or in another process: callers build a happening only
    /// then.
    pub fn watched(&self) -> bool {
        self.sender.receiver_count() > 0 || self.others_watch()
    }

    fn others_watch(&self) -> bool {
        now_millis() < self.others_watch_until.load(Relaxed)
    }

    pub fn publish(&self, happening: Happening) {
        if self.others_watch() {
            let mut outgoing = self.outgoing.lock().unwrap_or_else(|e| e.into_inner());
            if outgoing.happenings.len() < FLUSH_MAX {
                outgoing.happenings.push(happening.clone());
            } else {
                outgoing.left_out += 1;
            }
        }
        // No watcher here, or none left between `watched` and here: nothing to do.
        let _ = self.sender.send(happening);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Happening> {
        let first = self.sender.receiver_count() == 0;
        let receiver = self.sender.subscribe();
        if first {
            self.first_watcher.notify_one();
        }
        receiver
    }

    /// Takes what was gathered for the other processes, as messages that each fit a
    /// notification.
    fn take_outgoing(&self) -> Vec<String> {
        let taken = std::mem::take(&mut *self.outgoing.lock().unwrap_or_else(|e| e.into_inner()));
        let mut left_out = taken.left_out;
        let mut messages = Vec::new();
        let mut current = LiveMessage {
            from: self.process.clone(),
            ..LiveMessage::default()
        };
        // The message without happenings, plus room for the `left_out` count and brackets.
        let overhead = serde_json::to_string(&current).map_or(64, |t| t.len()) + 64;
        let mut size = overhead;
        for happening in taken.happenings {
            let length = serde_json::to_string(&happening).map_or(usize::MAX, |t| t.len()) + 1;
            if overhead + length > LIVE_PAYLOAD_MAX {
                left_out += 1;
                continue;
            }
            if size + length > LIVE_PAYLOAD_MAX {
                messages.push(std::mem::take(&mut current.happenings));
                size = overhead;
            }
            size += length;
            current.happenings.push(happening);
        }
        if !current.happenings.is_empty() {
            messages.push(current.happenings);
        }
        let count = messages.len();
        let mut texts: Vec<String> = messages
            .into_iter()
            .enumerate()
            .map(|(i, happenings)| LiveMessage {
                from: self.process.clone(),
                happenings,
                left_out: if i + 1 == count { left_out } else { 0 },
                ..LiveMessage::default()
            })
            .filter_map(|m| serde_json::to_string(&m).ok())
            .collect();
        if count == 0 && left_out > 0 {
            texts.extend(
                serde_json::to_string(&LiveMessage {
                    from: self.process.clone(),
                    left_out,
                    ..LiveMessage::default()
                })
                .ok(),
            );
        }
        texts
    }

    /// Asks every other process on `store` to wake `terminal`'s held waits (see the module
    /// documentation); nothing where the store has no live channel (one process).
    pub async fn send_nudge(&self, store: &dyn Store, terminal: &str) -> Result<(), StoreError> {
        if store.live_messages().is_none() {
            return Ok(());
        }
        let text = serde_json::to_string(&LiveMessage {
            from: self.process.clone(),
            nudge: vec![terminal.to_owned()],
            ..LiveMessage::default()
        })
        .expect("a message serialises");
        if text.len() > LIVE_PAYLOAD_MAX {
            // Terminal ids are far shorter; one that is not cannot be woken from afar.
            return Ok(());
        }
        store.live_send(&text).await
    }

    /// Applies a message from the live channel: another process's announcement, happenings
    /// or nudges (this process's own are skipped).
    fn receive(&self, text: &str, waits: &Waits) {
        let Ok(message) = serde_json::from_str::<LiveMessage>(text) else {
            tracing::debug!("an unreadable message on the live channel, skipped");
            return;
        };
        if message.from == self.process {
            return;
        }
        for terminal in &message.nudge {
            if waits.nudge_held(terminal) {
                tracing::debug!(%terminal, "woken on another center process's word");
            }
        }
        if message.watching {
            let until = now_millis() + WATCHED_FOR.as_millis() as i64;
            self.others_watch_until.fetch_max(until, Relaxed);
        }
        if self.sender.receiver_count() == 0 {
            return;
        }
        for happening in message.happenings {
            let _ = self.sender.send(happening);
        }
        if message.left_out > 0 {
            let _ = self.sender.send(Happening {
                kind: "missed".into(),
                terminal: String::new(),
                at: crate::rfc3339(crate::unix_now()),
                summary: format!(
                    "{} happenings on another center process were left out (too many at once)",
                    message.left_out
                ),
            });
        }
    }

    fn announcement(&self) -> String {
        serde_json::to_string(&LiveMessage {
            from: self.process.clone(),
            watching: true,
            ..LiveMessage::default()
        })
        .expect("a message serialises")
    }

    /// Shares the live view with the other processes on `store` until `shutdown`, and wakes
    /// the `waits` they nudge; returns at once where the store has no live channel.
    pub async fn share(
        &self,
        store: &dyn Store,
        waits: &Waits,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let Some(mut incoming) = store.live_messages() else {
            return;
        };
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        let mut announce = tokio::time::interval(ANNOUNCE_EVERY);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        announce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut send = Vec::new();
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = flush.tick() => send = self.take_outgoing(),
                _ = announce.tick() => {
                    if self.sender.receiver_count() > 0 {
                        send.push(self.announcement());
                    }
                }
                _ = self.first_watcher.notified() => send.push(self.announcement()),
                received = incoming.recv() => match received {
                    Ok(text) => self.receive(&text, waits),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "the live channel ran ahead of this process");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
            for text in send {
                if let Err(err) = store.live_send(&text).await {
                    tracing::warn!(%err, "cannot share the live view with other center processes");
                }
            }
        }
    }
}

/// One line for an event's data: the fields people look for first, else the JSON cut short.
pub fn summarise_event(kind: &str, data: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
    let field = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    if kind == herd_proto::api::events::PLAN_REPORT {
        let outcome = field("outcome").unwrap_or_else(|| "?".into());
        return match field("message") {
            Some(message) => format!("plan {outcome}: {message}"),
            None => format!("plan {outcome}"),
        };
    }
    for name in ["summary", "message", "signature", "file", "reason"] {
        if let Some(text) = field(name) {
            return text;
        }
    }
    let mut text = data.to_owned();
    if text.len() > 160 {
        let mut cut = 157;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_summarised_by_the_fields_people_read() {
        assert_eq!(
            summarise_event("plan.report", r#"{"outcome":"succeeded","plan_id":"x"}"#),
            "plan succeeded"
        );
        assert_eq!(
            summarise_event(
                "plan.report",
                r#"{"outcome":"rolled_back","message":"disk full"}"#
            ),
            "plan rolled_back: disk full"
        );
        assert_eq!(
            summarise_event("detection", r#"{"file":"/tmp/x","signature":"Eicar"}"#),
            "Eicar"
        );
        let long = format!(r#"{{"blob":"{}"}}"#, "é".repeat(200));
        let summary = summarise_event("other", &long);
        assert!(summary.ends_with('…') && summary.len() <= 160, "{summary}");
    }

    fn waits() -> Waits {
        Waits::new(
            10,
            1,
            std::sync::Arc::new(crate::metrics::Metrics::default()),
        )
    }

    #[tokio::test]
    async fn a_nudge_from_another_process_wakes_only_a_wait_held_here() {
        let waits = waits();
        let (here, elsewhere) = (Live::default(), Live::default());
        let message = |terminal: &str| {
            serde_json::to_string(&LiveMessage {
                from: elsewhere.process.clone(),
                nudge: vec![terminal.to_owned()],
                ..LiveMessage::default()
            })
            .unwrap()
        };
        let held = waits.nudged("pc-1");
        here.receive(&message("pc-1"), &waits);
        tokio::time::timeout(std::time::Duration::from_secs(5), held.notify.notified())
            .await
            .expect("the wait held here was woken");
        // Its own echo is skipped, and a terminal waiting nowhere here leaves nothing behind.
        elsewhere.receive(&message("pc-1"), &waits);
        here.receive(&message("pc-2"), &waits);
        assert!(
            tokio::time::timeout(
                std::time::Duration::from_millis(100),
                held.notify.notified()
            )
            .await
            .is_err()
        );
    }

    fn happening(n: usize) -> Happening {
        Happening {
            kind: "checkin".into(),
            terminal: format!("pc-{n}"),
            at: "2026-12-06T10:00:00Z".into(),
            summary: "é".repeat(n % 80),
        }
    }

    #[test]
    fn what_goes_to_other_processes_fits_notifications_and_counts_what_is_left_out() {
        let waits = waits();
        let live = Live::default();
        // Nobody elsewhere watches: nothing is gathered.
        live.publish(happening(0));
        assert!(live.take_outgoing().is_empty());
        let other = Live::default();
        live.receive(&other.announcement(), &waits);
        assert!(live.watched(), "another process's watcher counts");
        for n in 0..FLUSH_MAX + 7 {
            live.publish(happening(n));
        }
        let texts = live.take_outgoing();
        assert!(
            texts.len() > 1,
            "{} happenings in one notification",
            FLUSH_MAX
        );
        let mut received = 0;
        let mut left_out = 0;
        for text in &texts {
            assert!(text.len() <= LIVE_PAYLOAD_MAX, "{} bytes", text.len());
            let message: LiveMessage = serde_json::from_str(text).unwrap();
            assert_eq!(message.from, live.process);
            received += message.happenings.len();
            left_out += message.left_out;
        }
        assert_eq!((received, left_out), (FLUSH_MAX, 7));
        assert!(live.take_outgoing().is_empty(), "taken once");

        // The other process shows them, and says how many were left out; its own echo it skips.
        let mut watcher = other.subscribe();
        for text in &texts {
            other.receive(text, &waits);
        }
        let mut shown = 0;
        let mut missed = None;
        while let Ok(h) = watcher.try_recv() {
            match h.kind.as_str() {
                "missed" => missed = Some(h.summary),
                _ => shown += 1,
            }
        }
        assert_eq!(shown, FLUSH_MAX);
        assert!(missed.is_some_and(|m| m.starts_with("7 happenings")));
        other.receive(&other.announcement(), &waits);
        live.receive(&texts[0].replace(&live.process, &other.process), &waits);
        other.receive(&texts[0].replace(&live.process, &other.process), &waits);
        assert!(
            watcher.try_recv().is_err(),
            "a process skips its own messages"
        );
        other.receive("not json", &waits);
        assert!(watcher.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_watcher_gets_what_is_published_after_it_subscribed() {
        let live = Live::default();
        assert!(!live.watched());
        live.publish(Happening {
            kind: "checkin".into(),
            terminal: "before".into(),
            at: String::new(),
            summary: String::new(),
        });
        let mut watcher = live.subscribe();
        assert!(live.watched());
        let happening = Happening {
            kind: "checkin".into(),
            terminal: "pc-1".into(),
            at: "2026-12-06T10:00:00Z".into(),
            summary: "none".into(),
        };
        live.publish(happening.clone());
        assert_eq!(watcher.recv().await.unwrap(), happening);
    }
}
