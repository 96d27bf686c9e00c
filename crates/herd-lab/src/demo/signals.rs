//! Ctrl-C and SIGTERM for `herd demo`: caught from the start, so an interrupted demo still
//! stops its center and removes its temporary directory instead of leaving them behind.
//! The scenario polls [`Interrupt::raised`] between (and while waiting inside) steps.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context as _;

/// Set once SIGINT or SIGTERM arrived.
#[derive(Debug)]
pub struct Interrupt {
    raised: Arc<AtomicBool>,
    wake: mpsc::Receiver<()>,
}

impl Interrupt {
    /// Installs the handlers (on a small thread of their own) and returns once they are in
    /// place.
    pub fn install() -> anyhow::Result<Interrupt> {
        let raised = Arc::new(AtomicBool::new(false));
        let (wake_tx, wake) = mpsc::channel();
        let (ready_tx, ready) = mpsc::channel::<Result<(), String>>();
        let flag = raised.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .context("cannot start the signal watcher")?;
        std::thread::Builder::new()
            .name("herd-demo-signals".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    use tokio::signal::unix::{SignalKind, signal};
                    let handlers = signal(SignalKind::interrupt())
                        .and_then(|int| Ok((int, signal(SignalKind::terminate())?)));
                    let (mut int, mut term) = match handlers {
                        Ok(handlers) => {
                            let _ = ready_tx.send(Ok(()));
                            handlers
                        }
                        Err(err) => {
                            let _ = ready_tx.send(Err(err.to_string()));
                            return;
                        }
                    };
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                    flag.store(true, Ordering::SeqCst);
                    let _ = wake_tx.send(());
                });
            })
            .context("cannot start the signal watcher thread")?;
        match ready.recv() {
            Ok(Ok(())) => Ok(Interrupt { raised, wake }),
            Ok(Err(err)) => Err(anyhow::anyhow!("cannot catch Ctrl-C and SIGTERM: {err}")),
            Err(_) => Err(anyhow::anyhow!(
                "the signal watcher stopped before it was ready"
            )),
        }
    }

    /// Whether Ctrl-C (or SIGTERM) arrived.
    pub fn raised(&self) -> bool {
        self.raised.load(Ordering::SeqCst)
    }

    /// Sleeps up to `timeout`, waking early on Ctrl-C; returns whether it arrived.
    pub fn sleep(&self, timeout: Duration) -> bool {
        if self.raised() {
            return true;
        }
        match self.wake.recv_timeout(timeout) {
            Ok(()) => true,
            Err(mpsc::RecvTimeoutError::Timeout) => self.raised(),
            // The watcher is gone (it only ends after a signal, or if it never started).
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(timeout);
                self.raised()
            }
        }
    }
}
