//! Sleeping between check-ins without using the CPU: one `poll` on a few descriptors, an
//! inotify watch on the state directory (so `herd-agent consent accept` wakes the agent the
//! moment it writes its answer), a signalfd for SIGTERM, SIGINT and SIGHUP (so a stop
//! request while idle ends the agent cleanly), and the push connection's wake-up socket (so a
//! change the upstream announces is checked in for at once, see `push`). No timer ticks, no
//! polling loop.
//!
//! The stop signals are blocked only while sleeping: during work they keep their default
//! action (the agent's state is crash-safe, so dying mid-work loses nothing), and the scripts
//! a plan runs never inherit a blocked mask.
//!
//! Deadlines are wall-clock times. `poll` measures its timeout on the monotonic clock, which
//! stops while a device is suspended, so a long sleep is cut into naps of at most
//! [`MAX_NAP`] and the deadline re-checked after each: a phone that slept through its
//! check-in time checks in within minutes of waking.

use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::push::Push;
use super::state::CONSENT_FILE;
use super::volumes::MountWatch;

/// The longest single `poll`: bounds how late a check-in is after a suspend.
pub(crate) const MAX_NAP: Duration = Duration::from_secs(600);

/// Why a sleep ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// The deadline passed.
    Deadline,
    /// `consent.json` was written (an answer, probably).
    Consent,
    /// A stop signal arrived.
    Stop(Signal),
    /// The push connection says something changed upstream.
    Push,
    /// A volume was mounted or unmounted.
    Volumes,
    /// The hosted scanner told the user of a detection (`detections.json`), or `submit` queued
    /// a sample (`submitted.json`): an event waits in the outbox.
    Detection,
}

#[derive(Debug)]
pub(crate) struct Waker {
    inotify: Inotify,
    signals: SignalFd,
    mask: SigSet,
}

impl Waker {
    pub(crate) fn new(state_dir: &Path) -> Result<Waker> {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
            .context("cannot set up inotify to watch for consent answers")?;
        inotify
            .add_watch(
                state_dir,
                AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE,
            )
            .with_context(|| format!("cannot watch {} with inotify", state_dir.display()))?;
        let mut mask = SigSet::empty();
        for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
            mask.add(signal);
        }
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .context("cannot set up a signalfd for stop signals")?;
        Ok(Waker {
            inotify,
            signals,
            mask,
        })
    }

    /// Forgets file events seen so far (the agent's own writes while it worked).
    pub(crate) fn drain(&self) {
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
        }
    }

    /// Sleeps until `deadline`, an answer in `consent.json`, a stop signal, or a push.
    pub(crate) fn sleep_until(
        &self,
        deadline: SystemTime,
        push: Option<&Push>,
        mounts: Option<&MountWatch>,
    ) -> Result<Wake> {
        if push.is_some_and(Push::take_wakes) {
            return Ok(Wake::Push);
        }
        // The push thread blocks them for good (`push::block_stop_signals`), so a stop signal
        // is this thread's: its default action while it works, the signalfd while it sleeps.
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&self.mask), None)
            .context("cannot block stop signals")?;
        let result = self.wait(deadline, push, mounts);
        // A stop signal that arrives from here on takes its default action.
        let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&self.mask), None);
        result
    }

    fn wait(
        &self,
        deadline: SystemTime,
        push: Option<&Push>,
        mounts: Option<&MountWatch>,
    ) -> Result<Wake> {
        loop {
            let Ok(left) = deadline.duration_since(SystemTime::now()) else {
                return Ok(Wake::Deadline);
            };
            if left.is_zero() {
                return Ok(Wake::Deadline);
            }
            // Round up so the deadline has passed when the nap ends, not a millisecond before.
            let nap = left.min(MAX_NAP) + Duration::from_millis(1);
            let timeout = PollTimeout::try_from(nap).unwrap_or(PollTimeout::MAX);
            let mut fds = vec![
                PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN),
            ];
            if let Some(push) = push {
                fds.push(PollFd::new(push.wake_socket().as_fd(), PollFlags::POLLIN));
            }
            let mounts_at = fds.len();
            if let Some(mounts) = mounts {
                // The mount table says it changed with POLLPRI (and POLLERR).
                fds.push(PollFd::new(mounts.file().as_fd(), PollFlags::POLLPRI));
            }
            match poll(&mut fds, timeout) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e).context("poll failed while the agent slept"),
            }
            let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
            if ready(&fds[0])
                && let Ok(Some(info)) = self.signals.read_signal()
            {
                let signal = i32::try_from(info.ssi_signo)
                    .ok()
                    .and_then(|n| Signal::try_from(n).ok())
                    .unwrap_or(Signal::SIGTERM);
                return Ok(Wake::Stop(signal));
            }
            if ready(&fds[1]) {
                let events = self.inotify.read_events().unwrap_or_default();
                if events.iter().any(|e| {
                    // A consent answer, or a fault report whose verdict is awaited.
                    [CONSENT_FILE, crate::supervise::verdicts::AWAITED_FILE]
                        .iter()
                        .any(|name| e.name.as_deref() == Some(std::ffi::OsStr::new(name)))
                }) {
                    return Ok(Wake::Consent);
                }
                let queued = [
                    super::scanner::DETECTIONS_FILE,
                    crate::samples::SUBMITTED_FILE,
                ];
                if events.iter().any(|e| {
                    queued
                        .iter()
                        .any(|q| e.name.as_deref() == Some(std::ffi::OsStr::new(q)))
                }) {
                    return Ok(Wake::Detection);
                }
            }
            if push.is_some() && fds.get(2).is_some_and(ready) && push.is_some_and(Push::take_wakes)
            {
                return Ok(Wake::Push);
            }
            if mounts.is_some() && fds.get(mounts_at).is_some_and(ready) {
                return Ok(Wake::Volumes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn sleeps_until_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let waker = Waker::new(dir.path()).unwrap();
        let started = Instant::now();
        let wake = waker
            .sleep_until(SystemTime::now() + Duration::from_millis(200), None, None)
            .unwrap();
        assert_eq!(wake, Wake::Deadline);
        assert!(started.elapsed() >= Duration::from_millis(190));
        // A deadline in the past returns at once.
        let wake = waker
            .sleep_until(SystemTime::now() - Duration::from_secs(1), None, None)
            .unwrap();
        assert_eq!(wake, Wake::Deadline);
    }

    #[test]
    fn a_consent_answer_wakes_it_and_other_files_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let waker = Waker::new(dir.path()).unwrap();
        let path = dir.path().to_owned();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            std::fs::write(path.join("status.json"), b"{}").unwrap();
            std::thread::sleep(Duration::from_millis(100));
            herd_fs::write_atomic(&path.join(CONSENT_FILE), b"{}", 0o600).unwrap();
        });
        let started = Instant::now();
        let wake = waker
            .sleep_until(SystemTime::now() + Duration::from_secs(30), None, None)
            .unwrap();
        writer.join().unwrap();
        assert_eq!(wake, Wake::Consent);
        assert!(started.elapsed() >= Duration::from_millis(190));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
