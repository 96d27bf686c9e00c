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
//!
//! Wakes are paced: when something new arrives, held waits are answered at most
//! `wake_concurrency` at a time, in the order they waited; a woken terminal holds its slot until
//! its check-in is answered ([`Waits::checked_in`]) or [`WAKE_LEASE`] passes, and the next wait
//! is answered as a slot comes back (or when its own timeout comes, whichever is first: an
//! agent whose request times out asks again on a new connection). Woken all at once, 10,000 terminals behind one site made
//! every check-in slow enough to time out and be sent again (`herd sim protect` at 100,000
//! terminals: 73,000 check-ins timed out, 6 % protected within a minute); paced, each
//! check-in stays fast and the woken ones are done soonest.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{AcqRel, Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herd_proto::site::{MAX_WAIT_SECS, WaitResponse};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};

use crate::Center;
use crate::metrics::Metrics;

/// The timeout of a wait that names none, in seconds: under common NAT and proxy idle timeouts
/// (often 300 s or more), so the connection is not cut in the middle of a wait.
pub const DEFAULT_WAIT_SECS: u64 = 240;

/// How long a refused agent is asked to keep to pull before it tries to wait again, in
/// seconds (`Retry-After`).
pub const WAIT_RETRY_AFTER_SECS: u64 = 300;

/// Nudges kept for terminals not waiting when they came, before they are dropped.
const MAX_PENDING_NUDGES: usize = 10_000;

/// The longest a woken terminal holds its wake slot without checking in.
pub const WAKE_LEASE: Duration = Duration::from_secs(5);

/// The waits a process holds: their count against the cap, the pacing of wakes, and the
/// shutdown that answers them.
#[derive(Debug)]
pub struct Waits {
    /// Counts the held waits in `waits_held`, which `/metrics` shows as it is.
    metrics: Arc<Metrics>,
    max: u64,
    stopping: watch::Sender<bool>,
    wakes: Arc<WakeSlots>,
    /// Terminal → (waits it holds here, what wakes them): one terminal's news (an answer by
    /// e-mail to its consent question) wakes it alone.
    nudges: Mutex<HashMap<String, (usize, Arc<Notify>)>>,
}

/// The wake slots: taken by a wait answered `changed`, given back by the terminal's check-in
/// or when its lease ends.
#[derive(Debug)]
struct WakeSlots {
    slots: Arc<Semaphore>,
    /// Terminal → (lease number, slot) for the woken terminals that have not checked in.
    woken: Mutex<HashMap<String, (u64, OwnedSemaphorePermit)>>,
    leases: AtomicU64,
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
    pub fn new(max: u64, wake_concurrency: usize, metrics: Arc<Metrics>) -> Waits {
        Waits {
            metrics,
            max,
            stopping: watch::Sender::new(false),
            wakes: Arc::new(WakeSlots {
                slots: Arc::new(Semaphore::new(wake_concurrency)),
                woken: Mutex::default(),
                leases: AtomicU64::new(0),
            }),
            nudges: Mutex::default(),
        }
    }

    /// Wakes `terminal`'s wait if this process holds one; if none is held right now (the
    /// agent is between two waits), its next wait here is answered at once. A terminal that
    /// waits elsewhere learns at its next check-in. Returns whether a wait was held.
    pub fn nudge(&self, terminal: &str) -> bool {
        let mut nudges = self.nudges.lock().expect("nudges");
        // Nudges nobody took (terminals that never waited again) are not kept for ever.
        if nudges.len() > MAX_PENDING_NUDGES {
            nudges.retain(|_, (held, _)| *held > 0);
        }
        let (held, notify) = nudges
            .entry(terminal.to_owned())
            .or_insert_with(|| (0, Arc::new(Notify::new())));
        // With no waiter, `notify_one` keeps a permit for the next one.
        notify.notify_one();
        *held > 0
    }

    /// Wakes `terminal`'s waits held by this process, and only those: another process's
    /// news ([`crate::live`]'s nudges), which the process the terminal waits on acts on. A
    /// pending nudge for every terminal in every process would answer its next wait anywhere
    /// at once for nothing. Returns whether a wait was held.
    pub fn nudge_held(&self, terminal: &str) -> bool {
        let nudges = self.nudges.lock().expect("nudges");
        match nudges.get(terminal) {
            Some((held, notify)) if *held > 0 => {
                // A permit if the wait is between two polls; dropped with its last guard.
                notify.notify_one();
                true
            }
            _ => false,
        }
    }

    /// Registers a wait of `terminal` for [`Waits::nudge`] until the guard is dropped.
    pub(crate) fn nudged(&self, terminal: &str) -> NudgeGuard<'_> {
        let mut nudges = self.nudges.lock().expect("nudges");
        let entry = nudges
            .entry(terminal.to_owned())
            .or_insert_with(|| (0, Arc::new(Notify::new())));
        entry.0 += 1;
        NudgeGuard {
            waits: self,
            terminal: terminal.to_owned(),
            notify: entry.1.clone(),
        }
    }

    /// Gives back the wake slot of `terminal`, which has checked in.
    pub fn checked_in(&self, terminal: &str) {
        self.wakes.woken.lock().expect("woken").remove(terminal);
    }

    /// Takes a wake slot for `terminal`, in turn; `false` if the process stopped first.
    async fn wake(&self, terminal: &str, stopping: &mut watch::Receiver<bool>) -> bool {
        let slot = tokio::select! {
            slot = self.wakes.slots.clone().acquire_owned() => slot.expect("never closed"),
            _ = stopping.changed() => return false,
        };
        let lease = self.wakes.leases.fetch_add(1, Relaxed);
        // A terminal woken twice (two waits of one terminal) holds the newer slot only.
        self.wakes
            .woken
            .lock()
            .expect("woken")
            .insert(terminal.to_owned(), (lease, slot));
        let wakes = self.wakes.clone();
        let terminal = terminal.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(WAKE_LEASE).await;
            let mut woken = wakes.woken.lock().expect("woken");
            if woken.get(&terminal).is_some_and(|(held, _)| *held == lease) {
                woken.remove(&terminal);
            }
        });
        true
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

/// A wait's registration for nudges, removed with the last wait of its terminal.
pub(crate) struct NudgeGuard<'a> {
    waits: &'a Waits,
    terminal: String,
    pub(crate) notify: Arc<Notify>,
}

impl Drop for NudgeGuard<'_> {
    fn drop(&mut self) {
        let mut nudges = self.waits.nudges.lock().expect("nudges");
        if let Some(entry) = nudges.get_mut(&self.terminal) {
            entry.0 = entry.0.saturating_sub(1);
            if entry.0 == 0 {
                nudges.remove(&self.terminal);
            }
        }
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
    /// Holds `terminal`'s wait until the change token differs from `after` (answered at once
    /// when it already does, or when `after` is absent), the timeout passes, or the process
    /// stops. A change is answered in turn with the other waits it ends (see the module).
    pub async fn wait_for_change(
        &self,
        terminal: &str,
        after: Option<&str>,
        timeout: Duration,
    ) -> WaitOutcome {
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
        let nudge = self.waits.nudged(terminal);
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                // News for this terminal alone: it checks in at once, past the wake pacing.
                _ = nudge.notify.notified() => {
                    return WaitOutcome::Answered(WaitResponse { token: current, changed: true });
                }
                moved = changes.changed() => {
                    if moved.is_err() {
                        return unchanged(current);
                    }
                    let token = changes.borrow_and_update().clone();
                    if token != current {
                        tokio::select! {
                            woken = self.waits.wake(terminal, &mut stopping) => {
                                if !woken {
                                    return unchanged(current);
                                }
                            }
                            // In line past its own timeout: answered anyway, before the agent
                            // gives up on the request and asks again on a new connection.
                            // Those come due at the times their waits began, spread out.
                            _ = &mut deadline => {}
                        }
                        // The newest token: more may have changed while this wait was in line.
                        let token = changes.borrow_and_update().clone();
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
        let waits = Waits::new(2, 1, Arc::new(Metrics::default()));
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

    #[tokio::test]
    async fn a_nudge_wakes_its_terminal_or_waits_for_its_next_wait() {
        let waits = Waits::new(10, 1, Arc::new(Metrics::default()));
        // Held: woken.
        let held = waits.nudged("t1");
        assert!(waits.nudge("t1"));
        tokio::time::timeout(Duration::from_secs(5), held.notify.notified())
            .await
            .expect("the held wait was woken");
        drop(held);
        // Between two waits: the next wait is answered at once.
        assert!(!waits.nudge("t2"));
        let next = waits.nudged("t2");
        tokio::time::timeout(Duration::from_secs(5), next.notify.notified())
            .await
            .expect("the next wait was answered");
        drop(next);
        assert!(waits.nudges.lock().unwrap().is_empty());
        // From another process: a held wait is woken, and nothing is kept for a later one.
        let held = waits.nudged("t5");
        assert!(waits.nudge_held("t5"));
        tokio::time::timeout(Duration::from_secs(5), held.notify.notified())
            .await
            .expect("the held wait was woken from elsewhere");
        drop(held);
        assert!(!waits.nudge_held("t6"));
        assert!(waits.nudges.lock().unwrap().is_empty());
        // Another terminal's wait is not woken.
        let other = waits.nudged("t3");
        waits.nudge("t4");
        assert!(
            tokio::time::timeout(Duration::from_millis(100), other.notify.notified())
                .await
                .is_err()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn wakes_wait_for_a_slot_given_back_by_a_check_in_or_the_lease() {
        let waits = Waits::new(10, 1, Arc::new(Metrics::default()));
        let (_stop, mut stopping) = watch::channel(false);
        assert!(waits.wake("t1", &mut stopping).await);
        // The one slot is t1's: t2 waits until t1 checks in.
        let second =
            tokio::time::timeout(Duration::from_millis(100), waits.wake("t2", &mut stopping));
        assert!(second.await.is_err(), "t2 was woken while t1 held the slot");
        waits.checked_in("t1");
        assert!(waits.wake("t2", &mut stopping).await);
        // t2 never checks in: its lease gives the slot back.
        let started = tokio::time::Instant::now();
        assert!(waits.wake("t3", &mut stopping).await);
        assert!(started.elapsed() >= WAKE_LEASE, "{:?}", started.elapsed());
        // A check-in of a terminal that was not woken changes nothing.
        waits.checked_in("nobody");
        assert_eq!(waits.wakes.slots.available_permits(), 0);
        waits.checked_in("t3");
        assert_eq!(waits.wakes.slots.available_permits(), 1);
    }
}
