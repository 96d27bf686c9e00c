//! The center under load: by default a `herd serve` child process (this very binary) on
//! embedded SQLite in a temporary directory and a free loopback port, killed and cleaned up
//! when the simulation ends however it ends (drop guard); or an existing center given by URL,
//! CA file and operator token file.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// How long the child may take to start listening (it creates its CA and database first).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A `herd serve` child process. Dropping it kills the process and, unless the data
/// directory was given by the user, removes the directory.
#[derive(Debug)]
pub struct SpawnedCenter {
    child: Child,
    data_dir: PathBuf,
    remove_data_dir: bool,
    log: PathBuf,
}

impl SpawnedCenter {
    /// Starts `herd serve` on `127.0.0.1:0` with its data in `data_dir` (a new temporary
    /// directory when `None`) and `worker_threads` tokio workers (its default when `None`).
    pub fn start(data_dir: Option<&Path>, worker_threads: Option<usize>) -> anyhow::Result<Self> {
        let (data_dir, remove_data_dir) = match data_dir {
            Some(dir) => (dir.to_owned(), false),
            None => (temporary_directory()?, true),
        };
        let log = data_dir.join("center.log");
        let log_file = File::create(&log)
            .with_context(|| format!("cannot create the center's log {}", log.display()))?;
        let exe =
            std::env::current_exe().context("cannot find this program to start the center")?;
        let mut command = Command::new(&exe);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(["--log", "warn,herd_center=info"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        match worker_threads {
            Some(n) => command.env("TOKIO_WORKER_THREADS", n.to_string()),
            None => command.env_remove("TOKIO_WORKER_THREADS"),
        };
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {} serve", exe.display()))?;
        Ok(SpawnedCenter {
            child,
            data_dir,
            remove_data_dir,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Waits until the center logs the address it listens on, and returns it.
    pub async fn wait_listening(&mut self) -> anyhow::Result<SocketAddr> {
        let started = Instant::now();
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(addr) = listening_address(&log) {
                return Ok(addr);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the center exited ({status}) before listening; its log ({}):\n{}",
                    self.log.display(),
                    tail(&log)
                );
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "the center did not listen within {START_TIMEOUT:?}; its log ({}):\n{}",
                    self.log.display(),
                    tail(&log)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The end of the center's log, for error messages.
    pub fn log_tail(&self) -> String {
        tail(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }
}

impl Drop for SpawnedCenter {
    fn drop(&mut self) {
        // The center's data is the simulation's own: no need for a graceful shutdown.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.remove_data_dir {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// A new, empty directory under the system's temporary directory.
fn temporary_directory() -> anyhow::Result<PathBuf> {
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

/// The address in the center's JSON log line "herd center listening".
fn listening_address(log: &str) -> Option<SocketAddr> {
    log.lines().find_map(|line| {
        let entry: serde_json::Value = serde_json::from_str(line).ok()?;
        let fields = entry.get("fields")?;
        if fields.get("message")?.as_str()? != "herd center listening" {
            return None;
        }
        fields.get("addr")?.as_str()?.parse().ok()
    })
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Reads a file the center wrote (CA certificate, token), naming it on failure.
pub fn read_text(path: &Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    Ok(text.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_address_is_found_in_the_json_log() {
        let log = concat!(
            "{\"level\":\"INFO\",\"fields\":{\"message\":\"created the first operator token\"}}\n",
            "not json\n",
            "{\"level\":\"INFO\",\"fields\":{\"message\":\"herd center listening\",\"addr\":\"127.0.0.1:40123\"}}\n",
        );
        assert_eq!(
            listening_address(log),
            Some("127.0.0.1:40123".parse().expect("an address"))
        );
        assert_eq!(listening_address("{\"fields\":{}}\n"), None);
    }
}
