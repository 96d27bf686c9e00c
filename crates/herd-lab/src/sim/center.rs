//! The center under load: by default a `herd serve` child process (this very binary) started
//! through the lab's harness on embedded SQLite in a temporary directory, killed and cleaned
//! up when the simulation ends however it ends (drop guard); or an existing center given by
//! URL, CA file and operator token file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::harness::{CenterProcess, CenterSpec};

pub use crate::harness::read_text;

/// A `herd serve` child process. Dropping it kills the process and, unless the data
/// directory was given by the user, removes the directory.
#[derive(Debug)]
pub struct SpawnedCenter {
    process: CenterProcess,
    remove_data_dir: bool,
}

impl SpawnedCenter {
    /// Starts `herd serve` on a free loopback port with its data in `data_dir` (a new
    /// temporary directory when `None`) and `worker_threads` tokio workers (its default when
    /// `None`), and waits until it answers.
    pub fn start(data_dir: Option<&Path>, worker_threads: Option<usize>) -> anyhow::Result<Self> {
        SpawnedCenter::start_with(data_dir, worker_threads, &[])
    }

    /// Like [`SpawnedCenter::start`], with more arguments for `herd serve` (`-c FILE`).
    pub fn start_with(
        data_dir: Option<&Path>,
        worker_threads: Option<usize>,
        more_args: &[String],
    ) -> anyhow::Result<Self> {
        let (data_dir, remove_data_dir) = match data_dir {
            Some(dir) => (dir.to_owned(), false),
            None => (temporary_directory()?, true),
        };
        let exe =
            std::env::current_exe().context("cannot find this program to start the center")?;
        let threads = worker_threads.map(|n| n.to_string());
        let spec = CenterSpec::new(&exe, &data_dir)
            .args(["--log-format", "json", "--log", "warn,herd_center=info"])
            .args(more_args)
            .env("TOKIO_WORKER_THREADS", threads.as_deref())
            .env("RUST_LOG", None);
        let started = CenterProcess::start(&spec);
        let process = match started {
            Ok(process) => process,
            Err(err) => {
                if remove_data_dir {
                    let _ = std::fs::remove_dir_all(&data_dir);
                }
                return Err(err);
            }
        };
        Ok(SpawnedCenter {
            process,
            remove_data_dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.process.pid().unwrap_or(0)
    }

    pub fn data_dir(&self) -> &Path {
        &self.process.data_dir
    }

    pub fn addr(&self) -> anyhow::Result<SocketAddr> {
        self.process
            .listen
            .parse()
            .with_context(|| format!("the center listens on {}", self.process.listen))
    }

    /// The end of the center's log, for error messages.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}

impl Drop for SpawnedCenter {
    fn drop(&mut self) {
        // The center's data is the simulation's own: no need for a graceful shutdown.
        self.process.kill();
        if self.remove_data_dir {
            let _ = std::fs::remove_dir_all(&self.process.data_dir);
        }
    }
}

/// A new, empty directory under the system's temporary directory.
pub(super) fn temporary_directory() -> anyhow::Result<PathBuf> {
    let base = std::env::temp_dir();
    for _ in 0..16 {
        let dir = base.join(format!(
            "herd-sim-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(err) => {
                return Err(err).with_context(|| {
                    format!("cannot create a temporary directory in {}", base.display())
                });
            }
        }
    }
    bail!(
        "cannot create a temporary directory in {}: every name tried exists",
        base.display()
    )
}
