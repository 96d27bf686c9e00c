//! The site's durable queue to the center (SPEC §3.5, seed claims 8–9): what its terminals
//! report — each check-in it answered and each batch of events it acknowledged — is written to
//! the site's store before the terminal gets its answer, sent oldest first once the center
//! answers, and deleted only up to what the center acknowledged. The center applies each seq
//! once, so a batch sent again after a lost answer or a crash is harmless.
//!
//! A terminal has at most one check-in waiting (a newer one replaces it: a check-in is state),
//! so an outage of hours queues at most one check-in per terminal plus their events.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use herd_proto::api::{CheckinRequest, EventBatch};
use herd_proto::site::{MAX_RELAY_ITEMS, RelayBatch, RelayBody, RelayItem};
use herd_store::QueueItem;
use tokio::sync::watch;

use crate::{Center, unix_now};

/// The longest pause between two attempts while the center does not answer.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often the queue is looked at when nothing wakes the forwarder (and its gauges updated).
const IDLE_CHECK: Duration = Duration::from_secs(5);
/// How often the queue's gauges are updated while batches flow.
const NOTE_EVERY: Duration = Duration::from_secs(1);
/// A queue this deep, or this old, is warned about in the log (and shows in the metrics).
const WARN_DEPTH: u64 = 100_000;
const WARN_AGE_SECS: u64 = 3600;
/// The most queue bytes one relay batch carries (the center reads at most 20 MiB).
const MAX_BATCH_BYTES: usize = 8 << 20;

fn relay_item(terminal: &str, kind: &str, body: &RelayBody) -> QueueItem {
    QueueItem {
        terminal: terminal.to_owned(),
        kind: kind.to_owned(),
        body: serde_json::to_string(body).expect("a relay body serialises"),
        created_at: unix_now(),
    }
}

impl Center {
    /// The queue item of a check-in this site answered (`None` on a center), stored by the
    /// check-in's own transaction.
    pub(crate) fn checkin_relay(
        &self,
        terminal: &str,
        request: &CheckinRequest,
        address: &str,
        at: i64,
    ) -> Option<QueueItem> {
        self.site()?;
        let body = RelayBody::Checkin {
            at,
            address: address.to_owned(),
            request: Box::new(request.clone()),
        };
        Some(relay_item(terminal, "checkin", &body))
    }

    /// The queue item of a batch of events this site acknowledged (`None` on a center),
    /// stored by the batch's own transaction.
    pub(crate) fn events_relay(&self, terminal: &str, batch: &EventBatch) -> Option<QueueItem> {
        self.site()?;
        let body = RelayBody::Events {
            batch: batch.clone(),
        };
        Some(relay_item(terminal, "events", &body))
    }

    /// Wakes the forwarder (on a site): something was queued.
    pub(crate) fn relay_queued(&self) {
        if let Some(site) = self.site() {
            site.forward_wake.notify_one();
        }
    }

    /// Sends the queue to the center, oldest first, for as long as the site runs.
    pub(super) async fn forward_loop(self: Arc<Center>, mut shutdown: watch::Receiver<bool>) {
        let site = self.site().expect("a site's task");
        let mut backoff = Duration::from_secs(1);
        let mut warned = false;
        let mut noted = std::time::Instant::now();
        loop {
            let sent = match self.forward_once().await {
                Ok(sent) => {
                    backoff = Duration::from_secs(1);
                    sent
                }
                Err(err) => {
                    self.metrics.sites.upstream_up.store(0, Relaxed);
                    tracing::warn!(%err, retry_in = ?backoff, "cannot send the queue to the center; keeping it");
                    self.note_queue_size(&mut warned).await;
                    // A pull that reaches the center again wakes the sender at once.
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = site.forward_wake.notified() => {}
                        _ = shutdown.changed() => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    0
                }
            };
            // Counting the queue reads all of it: while batches flow, once a second is enough.
            if sent == 0 || noted.elapsed() >= NOTE_EVERY {
                self.note_queue_size(&mut warned).await;
                noted = std::time::Instant::now();
            }
            if sent == 0 {
                tokio::select! {
                    _ = site.forward_wake.notified() => {}
                    _ = tokio::time::sleep(IDLE_CHECK) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }

    /// Updates the queue's gauges, and warns once when it has grown past its thresholds.
    async fn note_queue_size(&self, warned: &mut bool) {
        match self.store.queue_stats().await {
            Ok(stats) => {
                let age = stats
                    .oldest_at
                    .map_or(0, |at| unix_now().saturating_sub(at).max(0) as u64);
                self.metrics.sites.queue_depth.store(stats.depth, Relaxed);
                self.metrics.sites.queue_oldest_seconds.store(age, Relaxed);
                let grown = stats.depth >= WARN_DEPTH || age >= WARN_AGE_SECS;
                if grown && !*warned {
                    tracing::warn!(
                        depth = stats.depth,
                        oldest_secs = age,
                        "the queue to the center is growing: the center has not acknowledged for a while"
                    );
                }
                *warned = grown;
            }
            Err(err) => tracing::warn!(%err, "cannot read the queue's size"),
        }
    }

    /// Sends one batch of the queue; returns how many items the center acknowledged.
    async fn forward_once(&self) -> anyhow::Result<u64> {
        let site = self.site().expect("a site's task");
        let queued = self.store.queue_peek(MAX_RELAY_ITEMS as u32).await?;
        if queued.is_empty() {
            return Ok(0);
        }
        let mut items = Vec::with_capacity(queued.len());
        let mut bytes = 0usize;
        for queued in queued {
            // At most about 8 MiB a batch (always at least one item).
            bytes += queued.item.body.len();
            if !items.is_empty() && bytes > MAX_BATCH_BYTES {
                break;
            }
            let body: RelayBody = match serde_json::from_str(&queued.item.body) {
                Ok(body) => body,
                Err(err) => {
                    // Written by this program: a row that does not read back is dropped (and
                    // said), never allowed to stop the queue.
                    tracing::error!(seq = queued.seq, %err, "a queued item is unreadable; dropped");
                    continue;
                }
            };
            items.push(RelayItem {
                seq: queued.seq,
                terminal: queued.item.terminal,
                body,
            });
        }
        let Some(last) = items.last().map(|item| item.seq) else {
            return Ok(0);
        };
        let batch = RelayBatch { items };
        let client = site.client();
        let ack = tokio::task::spawn_blocking(move || client.relay(&batch)).await??;
        self.metrics.sites.upstream_up.store(1, Relaxed);
        // Never beyond what was sent: an acknowledgement cannot delete what the center has not
        // seen (a seq above `last` was queued while the batch was on its way).
        let through = ack.acked_through.min(last);
        let deleted = self.store.queue_delete_through(through).await?;
        self.metrics.sites.forwarded.fetch_add(deleted, Relaxed);
        Ok(deleted)
    }
}
