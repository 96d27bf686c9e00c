//! The push connection (seed 001's push with pull behind it): one thread that holds one
//! `GET /v1/wait` to the agent's current upstream and, when the upstream answers `changed`,
//! wakes the main loop (a byte on a socket pair that [`Waker`](super::wake::Waker) polls) to
//! check in at once. Between answers it is blocked in a socket read: no CPU, and its stack is
//! small. A blocking read cannot be interrupted, so when the agent moves to another upstream a
//! new thread holds the new connection, and the old one ends (without waking anyone) when its
//! wait returns, at most one wait's time later.
//!
//! Pull stays underneath: the main loop's check-in interval runs whatever happens here. On an
//! error the thread backs off with jitter; when the upstream holds as many waits as it may
//! (503) or does not know `/v1/wait` (an older center, 404) it leaves the terminal to pull for
//! a while before it tries again. The main loop hands it a new client whenever it changes
//! upstream (failover) or identity (renewal); the token of one upstream means nothing to
//! another, so it starts afresh then.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use herd_client::{Client, ClientError};
use herd_proto::api::codes;

use super::clock;

/// How long each wait asks the upstream to hold (the upstream clamps it to its own maximum).
pub(crate) const WAIT_SECS: u64 = 240;
/// The first retry delay after an error, doubled up to [`MAX_RETRY`], with jitter.
const MIN_RETRY: Duration = Duration::from_secs(5);
const MAX_RETRY: Duration = Duration::from_secs(300);
/// How long to pull before trying again when the upstream refuses to hold another wait.
const REFUSED_PULL: Duration = Duration::from_secs(300);
/// … and when it does not serve `/v1/wait` at all.
const UNSUPPORTED_PULL: Duration = Duration::from_secs(3600);
/// The push thread's stack: it runs a blocking HTTPS request and little else.
const STACK_BYTES: usize = 256 * 1024;

/// The main loop's end of the push connection.
#[derive(Debug)]
pub(crate) struct Push {
    shared: Arc<Shared>,
    /// Readable when the upstream said something changed; polled by the waker.
    wake: UnixStream,
    /// The other end, cloned for each thread.
    notify: UnixStream,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<PushState>,
    /// Signalled when the client changes, so a back-off ends at once.
    followed: Condvar,
}

#[derive(Debug, Default)]
struct PushState {
    client: Option<Client>,
    /// Moves with every new upstream: a thread holds the push connection only while its
    /// generation is the current one.
    generation: u64,
    /// What the thread is doing, for `herd-agent status`.
    status: String,
    /// When it last woke the main loop.
    last_push: Option<SystemTime>,
}

impl Push {
    /// Sets the push connection up; its thread starts with the first client
    /// ([`Push::follow`]).
    pub(crate) fn start() -> Result<Push> {
        let (wake, notify) =
            UnixStream::pair().context("cannot make the push connection's wake-up socket")?;
        wake.set_nonblocking(true)
            .context("cannot make the push connection's wake-up socket non-blocking")?;
        let shared = Arc::new(Shared {
            state: Mutex::new(PushState {
                status: "starting".to_owned(),
                ..PushState::default()
            }),
            followed: Condvar::new(),
        });
        Ok(Push {
            shared,
            wake,
            notify,
        })
    }

    /// Holds the push connection through `client` from now on (a new upstream or identity).
    pub(crate) fn follow(&self, client: &Client) {
        let mut state = lock(&self.shared.state);
        if state
            .client
            .as_ref()
            .is_some_and(|held| held.server() == client.server())
        {
            // Same upstream: only the identity may have changed; the thread keeps its token
            // and takes the new client at its next wait.
            state.client = Some(client.clone());
            return;
        }
        state.client = Some(client.clone());
        state.generation += 1;
        let generation = state.generation;
        drop(state);
        // A thread backing off for an older upstream ends now.
        self.shared.followed.notify_all();
        let spawned = self.notify.try_clone().and_then(|notify| {
            let shared = self.shared.clone();
            std::thread::Builder::new()
                .name("push".to_owned())
                .stack_size(STACK_BYTES)
                .spawn(move || {
                    block_stop_signals();
                    hold(&shared, notify, generation)
                })
        });
        if let Err(e) = spawned {
            lock(&self.shared.state).status = format!(
                "no push connection (cannot start its thread: {e}); checking in at the interval"
            );
        }
    }

    /// The descriptor the waker polls.
    pub(crate) fn wake_socket(&self) -> &UnixStream {
        &self.wake
    }

    /// Reads the pending wake-ups, returning whether there were any.
    pub(crate) fn take_wakes(&self) -> bool {
        let mut buf = [0u8; 64];
        let mut woken = false;
        while let Ok(n) = (&self.wake).read(&mut buf) {
            if n == 0 {
                break;
            }
            woken = true;
        }
        woken
    }

    /// One line for `herd-agent status`.
    pub(crate) fn status(&self) -> String {
        let state = lock(&self.shared.state);
        match state.last_push {
            Some(at) => format!("{}; last woken at {}", state.status, clock::rfc3339(at)),
            None => state.status.clone(),
        }
    }
}

/// Stop signals are the main thread's (see `wake`): were one delivered to this thread, its
/// default action would end the agent without the clean stop the main thread makes.
fn block_stop_signals() {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
    let mut mask = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(signal);
    }
    let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&mask), None);
}

fn lock(state: &Mutex<PushState>) -> MutexGuard<'_, PushState> {
    // Plain values, valid after any panic.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The thread of upstream `generation`: wait, wake the main loop on a change, back off on
/// errors, until the agent moves to another upstream (or the process ends).
fn hold(shared: &Shared, mut notify: UnixStream, generation: u64) {
    let mut after: Option<String> = None;
    let mut failures: u32 = 0;
    loop {
        let client = {
            let mut state = lock(&shared.state);
            if state.generation != generation {
                return;
            }
            state.status = format!("holding a push connection to {}", server_of(&state));
            match state.client.clone() {
                Some(client) => client,
                None => return,
            }
        };
        let result = client.wait(after.as_deref(), Duration::from_secs(WAIT_SECS));
        let mut state = lock(&shared.state);
        if state.generation != generation {
            // The agent moved on while this wait was held: its answer is another upstream's.
            return;
        }
        let (pause, why) = match result {
            Ok(answer) => {
                failures = 0;
                // The first answer of a connection only gives the token: the main loop has
                // just checked in with this upstream.
                if answer.changed && after.is_some() {
                    state.last_push = Some(SystemTime::now());
                    // A full socket means wake-ups are already pending: nothing is lost.
                    let _ = notify.write(&[1]);
                }
                after = Some(answer.token);
                continue;
            }
            Err(err) => {
                let (pause, why) = pause_after(&err, failures);
                failures = failures.saturating_add(1);
                (pause, format!("{why}: {err}"))
            }
        };
        let until = clock::later(SystemTime::now(), pause);
        state.status = format!(
            "not holding a push connection ({why}); checking in at the interval, trying again \
             at {}",
            clock::rfc3339(until)
        );
        // Until the pause is over, or the agent moves to another upstream.
        let _ = shared
            .followed
            .wait_timeout_while(state, pause, |state| state.generation == generation);
    }
}

fn server_of(state: &PushState) -> String {
    state
        .client
        .as_ref()
        .map(|c| c.server().to_owned())
        .unwrap_or_default()
}

/// How long to leave the push connection after `err` (the `failures`-th in a row), and why.
fn pause_after(err: &ClientError, failures: u32) -> (Duration, &'static str) {
    match err {
        ClientError::Refused {
            status: 503, code, ..
        } if code == codes::UNAVAILABLE => (
            jittered(REFUSED_PULL),
            "the upstream holds all the waits it may",
        ),
        ClientError::Refused { status: 404, .. } => {
            (UNSUPPORTED_PULL, "the upstream does not serve /v1/wait")
        }
        _ => {
            let exponent = failures.min(16);
            let delay = MIN_RETRY.saturating_mul(1 << exponent).min(MAX_RETRY);
            (jittered(delay), "the wait failed")
        }
    }
}

/// `delay` spread over `[delay / 2, delay]`, so terminals cut off together do not come back
/// together.
fn jittered(delay: Duration) -> Duration {
    delay.mul_f64(0.5 + clock::random_unit() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16, code: &str) -> ClientError {
        ClientError::Refused {
            status,
            code: code.to_owned(),
            message: String::new(),
            problems: Vec::new(),
        }
    }

    #[test]
    fn errors_back_off_and_refusals_leave_the_terminal_to_pull() {
        let unreachable = ClientError::Unreachable {
            server: "https://x".into(),
            detail: "refused".into(),
        };
        let (first, _) = pause_after(&unreachable, 0);
        assert!(first >= MIN_RETRY / 2 && first <= MIN_RETRY, "{first:?}");
        let (late, _) = pause_after(&unreachable, 40);
        assert!(late >= MAX_RETRY / 2 && late <= MAX_RETRY, "{late:?}");
        let (full, _) = pause_after(&refused(503, codes::UNAVAILABLE), 0);
        assert!(full >= REFUSED_PULL / 2 && full <= REFUSED_PULL, "{full:?}");
        assert_eq!(
            pause_after(&refused(404, codes::NOT_FOUND), 0).0,
            UNSUPPORTED_PULL
        );
    }
}
