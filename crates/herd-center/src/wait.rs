//! The agents' push connection (`GET /v1/wait`, seed 001's push with pull behind it): a
//! terminal holds one request that is answered as soon as the change token
//! ([`Center::change_token`]) differs from the one it last saw, or when its timeout passes, or
//! when the process shuts down. A site serves it with the same code.
//!
//! What held requests may cost is bounded: at most `max_waits` are held per process (each one
//! is a parked future and its connection, a few KiB); beyond it a wait is refused at once with
//! [`WaitOutcome::Full`] (503 with `Retry-After`), and the agent falls back to its periodic
//! check-in for a while, which SPEC's "terminals that cannot be pushed to get it at their next
//! pull" allows.

use std::sync::Arc;
use std::sync::atomic::Ordering::{AcqRel, Relaxed};
use std::time::Duration;

use herd_proto::site::{MAX_WAIT_SECS, WaitResponse};
use tokio::sync::watch;

use crate::Center;
use crate::metrics::Metrics;

/// The timeout of a wait that names none, in seconds: under common NAT and proxy idle timeouts
/// (often 300 s or more), so the connection is not cut in the middle of a wait.
pub const DEFAULT_WAIT_SECS: u64 = 240;

/// How long a refused agent is asked to keep to pull before it tries to wait again, in
/// seconds (`Retry-After`).
pub const WAIT_RETRY_AFTER_SECS: u64 = 300;

/// The waits a process holds: their count against the cap, and the shutdown that answers them.
#[derive(Debug)]
pub struct Waits {
    /// Counts the held waits in `waits_held`, which `/metrics` shows as it is.
    metrics: Arc<Metrics>,
    max: u64,
    stopping: watch::Sender<bool>,
}

/// How a wait ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitOutcome {
    /// Answered: the token moved (`changed`) or the wait timed out (or the process is stopping).
    Answered(WaitResponse),
    /// `max_waits` are already held: pull instead, and try again after `retry_after_secs`.
    Full { retry_after_secs: u64 },
}

impl Waits {
    pub fn new(max: u64, metrics: Arc<Metrics>) -> Waits {
        Waits {
            metrics,
            max,
            stopping: watch::Sender::new(false),
        }
    }

    /// Waits held now.
    pub fn held(&self) -> u64 {
        self.metrics.waits_held.load(Relaxed)
    }

    /// Answers every held wait (as timed out) and every later one at once: the process is
    /// shutting down, and the listener drains the requests in flight before it stops.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Takes a slot, or none when `max` are held.
    fn enter(&self) -> Option<HeldSlot<'_>> {
        self.metrics
            .waits_held
            .fetch_update(AcqRel, Relaxed, |held| {
                (held < self.max).then_some(held + 1)
            })
            .ok()
            .map(|_| HeldSlot(self))
    }
}

/// One held wait: the slot is given back however the wait ends, a client that hangs up
/// included (its future is dropped).
struct HeldSlot<'a>(&'a Waits);

impl Drop for HeldSlot<'_> {
    fn drop(&mut self) {
        self.0.metrics.waits_held.fetch_sub(1, Relaxed);
    }
}

/// The timeout a request asked for, clamped to `1..=MAX_WAIT_SECS`.
pub fn wait_timeout(asked_secs: Option<u64>) -> Duration {
    Duration::from_secs(
        asked_secs
            .unwrap_or(DEFAULT_WAIT_SECS)
            .clamp(1, MAX_WAIT_SECS),
    )
}

impl Center {
    /// Holds until the change token differs from `after` (answered at once when it already
    /// does, or when `after` is absent), the timeout passes, or the process stops.
    pub async fn wait_for_change(&self, after: Option<&str>, timeout: Duration) -> WaitOutcome {
        let mut changes = self.subscribe_changes();
        let current = changes.borrow_and_update().clone();
        // The watch starts empty until the first announcement; the token is computed anyway.
        let current = if current.is_empty() {
            self.change_token()
        } else {
            current
        };
        match after {
            Some(after) if after == current => {}
            _ => {
                return WaitOutcome::Answered(WaitResponse {
                    token: current,
                    changed: true,
                });
            }
        }
        let Some(_slot) = self.waits.enter() else {
            self.metrics.waits_refused.fetch_add(1, Relaxed);
            return WaitOutcome::Full {
                retry_after_secs: WAIT_RETRY_AFTER_SECS,
            };
        };
        let mut stopping = self.waits.stopping.subscribe();
        if *stopping.borrow_and_update() {
            return unchanged(current);
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                moved = changes.changed() => {
                    if moved.is_err() {
                        return unchanged(current);
                    }
                    let token = changes.borrow_and_update().clone();
                    if token != current {
                        return WaitOutcome::Answered(WaitResponse { token, changed: true });
                    }
                }
                _ = &mut deadline => return unchanged(current),
                _ = stopping.changed() => return unchanged(current),
            }
        }
    }
}

fn unchanged(token: String) -> WaitOutcome {
    WaitOutcome::Answered(WaitResponse {
        token,
        changed: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_clamped_to_what_a_wait_may_hold() {
        assert_eq!(wait_timeout(None), Duration::from_secs(DEFAULT_WAIT_SECS));
        assert_eq!(wait_timeout(Some(0)), Duration::from_secs(1));
        assert_eq!(wait_timeout(Some(5)), Duration::from_secs(5));
        assert_eq!(
            wait_timeout(Some(u64::MAX)),
            Duration::from_secs(MAX_WAIT_SECS)
        );
    }

    #[test]
    fn slots_stop_at_the_cap_and_come_back_when_a_wait_ends() {
        let waits = Waits::new(2, Arc::new(Metrics::default()));
        let first = waits.enter().expect("first slot");
        let second = waits.enter().expect("second slot");
        assert!(waits.enter().is_none(), "a third wait is refused");
        assert_eq!(waits.held(), 2);
        drop(first);
        assert_eq!(waits.held(), 1);
        let third = waits.enter().expect("a slot came back");
        drop((second, third));
        assert_eq!(waits.held(), 0);
    }
}
