//! What happens in the fleet as it happens: check-ins, plans and events this process stores,
//! broadcast to whoever watches (the console's live view, over server-sent events). Nothing is
//! built or sent while nobody watches, so the check-in path pays one atomic read.
//!
//! Per process: with several center processes behind a load balancer, a console sees what the
//! process serving it stored (what arrives through sites reaches the process applying the
//! relay). A shared feed through PostgreSQL `LISTEN/NOTIFY` is the way to widen it.

use serde::Serialize;
use tokio::sync::broadcast;

/// How many happenings a slow watcher may fall behind before it skips ahead (and is told).
const BACKLOG: usize = 1024;

/// One thing that happened, as the console shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Happening {
    /// `checkin`, or the event's kind (`plan.report`, `detection`, …).
    pub kind: String,
    pub terminal: String,
    /// RFC 3339, when the center stored it.
    pub at: String,
    /// One line for a person: the plan's action, the report's outcome, an event's summary.
    pub summary: String,
}

/// The broadcast of [`Happening`]s.
#[derive(Debug)]
pub struct Live {
    sender: broadcast::Sender<Happening>,
}

impl Default for Live {
    fn default() -> Live {
        Live {
            sender: broadcast::Sender::new(BACKLOG),
        }
    }
}

impl Live {
    /// Whether anyone watches: callers build a happening only then.
    pub fn watched(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    pub fn publish(&self, happening: Happening) {
        // No watcher left between `watched` and here: nothing to do.
        let _ = self.sender.send(happening);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Happening> {
        self.sender.subscribe()
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
