//! Events from terminals' outboxes: a batch is validated whole (ordered sequence numbers,
//! timestamps, event kinds, plan reports) before anything is stored, then appended; the store
//! deduplicates by (terminal, seq), so a batch sent twice is acknowledged twice and stored once.
//! A terminal keeps at most `max_events_per_terminal` events stored: beyond it its batches are
//! refused (`quota_exceeded`) rather than older events pruned, so nothing a terminal reported is
//! lost; the agent keeps them in its outbox and sends them again later.

use std::sync::atomic::Ordering::Relaxed;

use herd_core::Timestamp;
use herd_proto::api::{EventAck, EventBatch, PlanReport, TrustRefusal, events};
use herd_store::EventRow;

use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::{Center, KnownTerminal, unix_now};

/// The most events one batch may carry.
pub const MAX_EVENTS_PER_BATCH: usize = 1000;

impl Center {
    /// Validates and stores a terminal's batch of events.
    pub async fn append_events(
        &self,
        terminal: &KnownTerminal,
        batch: EventBatch,
    ) -> CenterResult<EventAck> {
        // A site sends what it acknowledges to the center too (queued before it answers).
        let relayed = self.site().is_some().then(|| batch.clone());
        let rows = event_rows(&terminal.id, batch, unix_now())?;
        // Checked on the reader before the writer is taken. Concurrent batches of one terminal
        // may pass together, so the quota can be passed by at most a batch per connection.
        let limit = self.config.max_events_per_terminal;
        let stored = self.store.events_count(&terminal.id).await?;
        if stored.saturating_add(rows.len() as u64) > limit {
            self.metrics.events_over_quota.fetch_add(1, Relaxed);
            return Err(CenterError::new(
                ErrorKind::QuotaExceeded,
                format!(
                    "terminal {:?} has {stored} events stored and may keep at most {limit} \
                     (max_events_per_terminal); keep this batch of {} and send it again later",
                    terminal.id,
                    rows.len()
                ),
            ));
        }
        let outcome = self.store.events_append(&rows).await?;
        // An outbox sends its events oldest first and again until acknowledged, so the
        // duplicates of a batch are its oldest events: the refusals counted are those among
        // the newest `accepted`.
        let stored = rows.len().saturating_sub(outcome.accepted as usize);
        for row in &rows[stored..] {
            if row.kind == events::TRUST_REFUSED {
                let kind = serde_json::from_str::<TrustRefusal>(&row.data)
                    .map(|refusal| refusal.kind)
                    .unwrap_or_default();
                self.metrics.count_trust_refusal(&kind);
            }
        }
        self.metrics
            .events_accepted
            .fetch_add(outcome.accepted, Relaxed);
        self.metrics
            .events_duplicate
            .fetch_add(outcome.duplicates, Relaxed);
        if let Some(batch) = relayed {
            self.queue_events(&terminal.id, batch).await?;
        }
        Ok(EventAck {
            acked_through: outcome.last_seq,
            accepted: outcome.accepted,
            duplicates: outcome.duplicates,
        })
    }
}

/// The rows a batch stores, or the first problem, named with its JSON path.
fn event_rows(terminal: &str, batch: EventBatch, received_at: i64) -> CenterResult<Vec<EventRow>> {
    if batch.events.len() > MAX_EVENTS_PER_BATCH {
        return Err(CenterError::new(
            ErrorKind::TooLarge,
            format!(
                "the batch has {} events; send at most {MAX_EVENTS_PER_BATCH} at a time",
                batch.events.len()
            ),
        ));
    }
    let mut rows = Vec::with_capacity(batch.events.len());
    let mut previous = 0u64;
    for (i, event) in batch.events.into_iter().enumerate() {
        let at_path = |field: &str| format!("the event batch: $.events[{i}].{field}");
        if event.seq == 0 {
            return Err(CenterError::bad_request(format!(
                "{}: seq must be at least 1",
                at_path("seq")
            )));
        }
        // Order and dates are content the schema cannot express: refused as such (422).
        if event.seq <= previous {
            return Err(invalid(format!(
                "{}: seq {} must be greater than the previous event's ({previous})",
                at_path("seq"),
                event.seq
            )));
        }
        previous = event.seq;
        let at = Timestamp::parse(&event.at)
            .map_err(|message| invalid(format!("{}: {message}", at_path("at"))))?;
        if event.kind.is_empty()
            || event.kind.len() > 64
            || !event
                .kind
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(CenterError::bad_request(format!(
                "{}: {:?} is not an event kind (1-64 of a-z, 0-9, '.', '_', '-')",
                at_path("kind"),
                event.kind
            )));
        }
        if event.kind == events::PLAN_REPORT {
            let report: Result<PlanReport, _> = serde_json::from_value(event.data.clone());
            if let Err(err) = report {
                return Err(invalid(format!(
                    "{}: not a plan report: {err}",
                    at_path("data")
                )));
            }
        }
        rows.push(EventRow {
            terminal: terminal.to_owned(),
            seq: event.seq,
            at: at.unix_seconds(),
            kind: event.kind,
            data: event.data.to_string(),
            received_at,
        });
    }
    if rows.is_empty() {
        return Err(CenterError::bad_request(
            "the event batch: $.events: send at least one event",
        ));
    }
    Ok(rows)
}

fn invalid(message: String) -> CenterError {
    CenterError::new(ErrorKind::DocumentInvalid, message)
}
