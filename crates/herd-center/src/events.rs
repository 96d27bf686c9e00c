//! Events from terminals' outboxes: a batch is validated whole (ordered sequence numbers,
//! timestamps, event kinds, plan reports) before anything is stored, then appended; the store
//! deduplicates by (terminal, seq), so a batch sent twice is acknowledged twice and stored once.
//! A terminal keeps at most `max_events_per_terminal` events stored: beyond it its batches are
//! refused (`quota_exceeded`) rather than older events pruned, so nothing a terminal reported is
//! lost; the agent keeps them in its outbox and sends them again later.

use std::sync::atomic::Ordering::Relaxed;

use herd_core::Timestamp;
use herd_proto::api::{EventAck, EventBatch, PlanReport, SelfProtection, TrustRefusal, events};
use std::sync::Arc;

use herd_store::{AppendOutcome, EventRow, EventsWrite, Store, StoreError};

use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::group_commit::{Closed, GroupCommit};
use crate::{Center, KnownTerminal, unix_now};

/// The most events one batch may carry.
pub const MAX_EVENTS_PER_BATCH: usize = 1000;

/// The most terminals' batches one transaction stores.
const MAX_GROUP: usize = 256;

/// The group-commit writer of event batches: batches of several terminals that arrive together
/// are stored in one transaction.
#[derive(Debug)]
pub(crate) struct EventWriter(GroupCommit<EventsWrite, Result<AppendOutcome, StoreError>>);

impl EventWriter {
    pub(crate) fn start(store: Arc<dyn Store>) -> EventWriter {
        EventWriter(GroupCommit::start(
            MAX_GROUP,
            Box::new(move |writes: Vec<EventsWrite>| {
                let store = store.clone();
                Box::pin(async move { append_together(&*store, &writes).await })
            }),
        ))
    }

    /// Stores one terminal's batch (with whatever else is waiting) once it is committed.
    pub(crate) async fn write(&self, write: EventsWrite) -> CenterResult<AppendOutcome> {
        match self.0.write(write).await {
            Ok(outcome) => Ok(outcome?),
            Err(closed) => Err(CenterError::new(
                ErrorKind::Unavailable,
                match closed {
                    Closed::ShuttingDown => "the events were not stored: the process is stopping",
                    Closed::Stopped => "the events were not stored: the event writer stopped",
                },
            )),
        }
    }

    pub(crate) async fn close(&self) {
        self.0.close().await;
    }
}

/// Stores the batches in one transaction; if that fails, each alone, so one batch's failure
/// (a terminal deleted meanwhile on PostgreSQL aborts the transaction) is only its own.
async fn append_together(
    store: &dyn Store,
    writes: &[EventsWrite],
) -> Vec<Result<AppendOutcome, StoreError>> {
    match store.events_append_many(writes).await {
        Ok(outcomes) => outcomes,
        Err(err) if writes.len() == 1 => vec![Err(err)],
        Err(err) => {
            tracing::warn!(%err, batches = writes.len(), "storing event batches together failed; storing each alone");
            let mut outcomes = Vec::with_capacity(writes.len());
            for write in writes {
                outcomes.push(
                    match store.events_append_many(std::slice::from_ref(write)).await {
                        Ok(mut one) => one.pop().unwrap_or(Ok(AppendOutcome::default())),
                        Err(err) => Err(err),
                    },
                );
            }
            outcomes
        }
    }
}

impl Center {
    /// Validates and stores a terminal's batch of events.
    pub async fn append_events(
        &self,
        terminal: &KnownTerminal,
        batch: EventBatch,
    ) -> CenterResult<EventAck> {
        // A site sends what it acknowledges to the center too: queued in the transaction that
        // stores the batch, before it is answered.
        let relay = self.events_relay(&terminal.id, &batch);
        let held_already = batch
            .events
            .iter()
            .filter(|e| e.kind == events::SAMPLE_UPLOAD && e.data["held"] == true)
            .count() as u64;
        let (samples, rows) = received_batch(
            &terminal.id,
            batch,
            self.config.max_sample_bytes,
            unix_now(),
        )?;
        // Checked on the reader before the writer is taken. Concurrent batches of one terminal
        // may pass together, so the quota can be passed by at most a batch per connection.
        // On SQLite the events are counted only when what this process knows of the terminal
        // does not show that the batch fits (`KnownTerminal::events_at_most`): one process
        // owns the database, so it has seen every append. Processes sharing PostgreSQL do not
        // see each other's appends, so there every batch is counted.
        let limit = self.config.max_events_per_terminal;
        let at_most = match self.store.backend() {
            herd_store::Backend::Sqlite => terminal.events_at_most.load(Relaxed),
            herd_store::Backend::Postgres => u64::MAX,
        };
        let fits = at_most != u64::MAX && at_most.saturating_add(rows.len() as u64) <= limit;
        let stored = match fits {
            true => at_most,
            false => {
                let stored = self.store.events_count(&terminal.id).await?;
                terminal.events_at_most.store(stored, Relaxed);
                stored
            }
        };
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
        // The trust refusals' kinds, read before the rows go to the writer.
        let refusals: Vec<(usize, String)> = rows
            .iter()
            .enumerate()
            .filter(|(_, row)| row.kind == events::TRUST_REFUSED)
            .map(|(i, row)| {
                let kind = serde_json::from_str::<TrustRefusal>(&row.data)
                    .map(|refusal| refusal.kind)
                    .unwrap_or_default();
                (i, kind)
            })
            .collect();
        // Consent questions and answers, for consent by e-mail (at the center).
        let consents: Vec<(usize, String, String)> = rows
            .iter()
            .enumerate()
            .filter(|(_, row)| {
                [
                    events::CONSENT_REQUESTED,
                    events::CONSENT_ACCEPTED,
                    events::CONSENT_DECLINED,
                ]
                .contains(&row.kind.as_str())
            })
            .map(|(i, row)| (i, row.kind.clone(), row.data.clone()))
            .collect();
        // Users' messages, stored as messages once the events are.
        let answers: Vec<(usize, i64, String)> = rows
            .iter()
            .enumerate()
            .filter(|(_, row)| row.kind == events::MESSAGE_SENT)
            .map(|(i, row)| (i, row.at, row.data.clone()))
            .collect();
        // The events some alert rule listens to, read likewise (none unless configured).
        let alerting: Vec<(usize, String, String)> = rows
            .iter()
            .enumerate()
            .filter(|(_, row)| self.alerts.wants_terminal_event(&row.kind))
            .map(|(i, row)| (i, row.kind.clone(), row.data.clone()))
            .collect();
        // Plan reports count for the rollouts of the releases they concern (`rollouts`).
        let reports: Vec<(usize, PlanReport)> = rows
            .iter()
            .enumerate()
            .filter(|(_, row)| row.kind == events::PLAN_REPORT)
            .filter_map(|(i, row)| Some((i, serde_json::from_str(&row.data).ok()?)))
            .collect();
        // Agents that undid a release by themselves count against its rollout too.
        let protections: Vec<(usize, SelfProtection)> = rows
            .iter()
            .enumerate()
            .filter(|(_, row)| row.kind == events::SELF_PROTECTED)
            .filter_map(|(i, row)| Some((i, serde_json::from_str(&row.data).ok()?)))
            .collect();
        // What terminals did with replacement verdicts, kept on the faults they answer.
        let replaced: Vec<(usize, EventRow)> = rows
            .iter()
            .enumerate()
            .filter(|(_, row)| row.kind == events::FAULT_REPLACED)
            .map(|(i, row)| (i, row.clone()))
            .collect();
        // Detections, for Herd immunity's automatic verdicts once they are stored.
        let detections: Vec<(usize, EventRow)> = rows
            .iter()
            .enumerate()
            .filter(|(_, row)| row.kind == events::SCAN_DETECTION)
            .map(|(i, row)| (i, row.clone()))
            .collect();
        let count = rows.len();
        // What the live view shows of the batch, taken before the rows go to the writer.
        let happenings: Vec<(String, String, i64)> = if self.live.watched() {
            rows.iter()
                .map(|row| {
                    (
                        row.kind.clone(),
                        crate::live::summarise_event(&row.kind, &row.data),
                        row.received_at,
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        // Fault reports are decided once stored; their rows, kept before the writer takes them.
        let faults: Vec<EventRow> = if self.site().is_none() {
            rows.iter()
                .filter(|row| row.kind == events::FAULT_REPORT)
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let outcome = self.events.write(EventsWrite { rows, relay }).await?;
        let _ = terminal.events_at_most.fetch_update(Relaxed, Relaxed, |n| {
            (n != u64::MAX).then(|| n.saturating_add(outcome.accepted))
        });
        // Duplicates are a batch's oldest events: the newest `accepted` are new.
        let fresh = happenings.len().saturating_sub(outcome.accepted as usize);
        for (kind, summary, at) in happenings.into_iter().skip(fresh) {
            self.live.publish(crate::live::Happening {
                kind,
                terminal: terminal.id.clone(),
                at: crate::rfc3339(at),
                summary,
            });
        }
        self.take_faults(&terminal.id, &faults).await?;
        self.relay_queued();
        // An outbox sends its events oldest first and again until acknowledged, so the
        // duplicates of a batch are its oldest events: the refusals counted are those among
        // the newest `accepted`.
        let stored = count.saturating_sub(outcome.accepted as usize);
        for (_, kind) in refusals.iter().filter(|(i, _)| *i >= stored) {
            self.metrics.count_trust_refusal(kind);
        }
        // At the center only: a site relays the events there, where messages and consent
        // requests are kept (a site's own copy would have ids of its own).
        if self.site().is_none() {
            for (_, at, data) in answers.into_iter().filter(|(i, _, _)| *i >= stored) {
                self.store_answer(&terminal.id, at, &data).await;
            }
            for (_, kind, data) in consents.into_iter().filter(|(i, _, _)| *i >= stored) {
                if kind == events::CONSENT_REQUESTED {
                    self.consent_requested(&terminal.id, &data).await;
                } else {
                    self.consent_answered_on_device(&terminal.id, &kind, &data)
                        .await;
                }
            }
        }
        for (_, kind, data) in alerting.into_iter().filter(|(i, _, _)| *i >= stored) {
            self.alerts
                .raise(crate::alerts::terminal_event(&terminal.id, &kind, &data));
        }
        // At the center only, where faults are recorded (a site relays the events there).
        if self.site().is_none() {
            for (_, row) in replaced.iter().filter(|(i, _)| *i >= stored) {
                self.take_replaced(&terminal.id, row).await;
            }
        }
        let new_reports: Vec<PlanReport> = reports
            .into_iter()
            .filter(|(i, _)| *i >= stored)
            .map(|(_, report)| report)
            .collect();
        self.count_plan_reports(&terminal.id, &new_reports).await;
        let protections: Vec<SelfProtection> = protections
            .into_iter()
            .filter(|(i, _)| *i >= stored)
            .map(|(_, protection)| protection)
            .collect();
        self.count_self_protections(&terminal.id, &protections)
            .await;
        let detections: Vec<EventRow> = detections
            .into_iter()
            .filter(|(i, _)| *i >= stored)
            .map(|(_, row)| row)
            .collect();
        if self.site().is_none() {
            // What arrived at the center, for the dedup's accounting (duplicates included:
            // they crossed the network too).
            self.metrics
                .samples_held_already
                .fetch_add(held_already, Relaxed);
            for sample in &samples {
                self.metrics.samples_uploaded.fetch_add(1, Relaxed);
                self.metrics
                    .sample_bytes_uploaded
                    .fetch_add(sample.neutralised.len() as u64, Relaxed);
            }
        }
        if !samples.is_empty() && self.site().is_none() {
            self.keep_samples(&terminal.id, samples).await;
        }
        // At the center only: a site relays the events there, where the set is signed.
        if !detections.is_empty() && self.site().is_none() {
            self.immunity_from_detections(&terminal.id, &detections)
                .await;
        }
        self.metrics
            .events_accepted
            .fetch_add(outcome.accepted, Relaxed);
        self.metrics
            .events_duplicate
            .fetch_add(outcome.duplicates, Relaxed);
        Ok(EventAck {
            acked_through: outcome.last_seq,
            accepted: outcome.accepted,
            duplicates: outcome.duplicates,
        })
    }
}

/// What the center makes of a terminal's event batch before it stores anything: the samples
/// checked and taken out of their events, then the rows to store; or the first problem, named
/// with its JSON path. Pure (`received_at` is the caller's clock): the fuzz target
/// `crates/herd-center/fuzz` and `tests/received.rs` drive it with what a terminal may send.
pub fn received_batch(
    terminal: &str,
    mut batch: EventBatch,
    max_sample_bytes: u64,
    received_at: i64,
) -> CenterResult<(Vec<crate::samples::Received>, Vec<EventRow>)> {
    // Samples are checked whole and their bytes taken out before anything is stored.
    let samples = crate::samples::take_samples(&mut batch, max_sample_bytes)?;
    let rows = event_rows(terminal, batch, received_at)?;
    Ok((samples, rows))
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
        if let Some(problem) = crate::messages::answer_problem(&event.kind, &event.data) {
            return Err(invalid(format!("{}: {problem}", at_path("data"))));
        }
        if event.kind == events::FAULT_REPORT {
            crate::faults::check_report(terminal, &event.data, &at_path)?;
        }
        if event.kind == events::SCAN_DETECTION {
            crate::herd_set::check_detection(&event.data)
                .map_err(|why| invalid(format!("{}: {why}", at_path("data"))))?;
        }
        if event.kind == events::FAULT_REPLACED {
            crate::faults::check_replaced(&event.data, &at_path)?;
        }
        if event.kind == events::SELF_PROTECTED {
            crate::rollouts::check_self_protection(&event.data)
                .map_err(|why| invalid(format!("{}: {why}", at_path("data"))))?;
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
