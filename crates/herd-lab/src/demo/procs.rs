//! The real programs `herd demo` runs: one `herd serve` (this very executable) in the demo
//! directory, and `herd-agent` from the same target directory for every terminal command.
//! Every child's output goes to a log file in the demo directory, so what a program said can
//! be shown when it did something unexpected, and read afterwards with `--keep`.

use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use herd_client::Client;

use super::signals::Interrupt;

/// How long `herd serve` may take to create its CA and answer.
const CENTER_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the center may take to stop after SIGTERM before it is killed.
pub const CENTER_STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one agent command may run (enrol, check in, download, install, verify).
const AGENT_TIMEOUT: Duration = Duration::from_secs(120);
/// How often a waiting loop looks at its child and at Ctrl-C.
const POLL: Duration = Duration::from_millis(20);

/// How many lines of a log are quoted when a program failed.
const LOG_TAIL_LINES: usize = 15;

/// A running `herd serve`, stopped when dropped (killed if [`CenterProcess::stop`] was not
/// called).
#[derive(Debug)]
pub struct CenterProcess {
    child: Option<Child>,
    pub url: String,
    pub listen: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl CenterProcess {
    /// Starts `herd serve` with embedded SQLite in `data_dir` on a free loopback port and
    /// waits until it answers. A port taken by someone else between choosing and binding is
    /// retried with another.
    pub fn start(
        herd: &Path,
        data_dir: &Path,
        log: &Path,
        interrupt: &Interrupt,
    ) -> anyhow::Result<CenterProcess> {
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            let port = free_port()?;
            let listen = format!("127.0.0.1:{port}");
            let log_file = append(log)?;
            let child = Command::new(herd)
                .arg("serve")
                .arg("--data-dir")
                .arg(data_dir)
                .arg("--listen")
                .arg(&listen)
                .stdin(Stdio::null())
                .stdout(
                    log_file
                        .try_clone()
                        .context("cannot share the center's log")?,
                )
                .stderr(log_file)
                .spawn()
                .with_context(|| format!("cannot run {} serve", herd.display()))?;
            let mut center = CenterProcess {
                child: Some(child),
                url: format!("https://{listen}"),
                listen,
                data_dir: data_dir.to_owned(),
                log: log.to_owned(),
            };
            match center.wait_ready(interrupt)? {
                Ready::Yes => return Ok(center),
                Ready::Exited(status) => {
                    let tail = log_tail(log);
                    if attempt < ATTEMPTS && tail.contains("in use") {
                        continue;
                    }
                    bail!(
                        "herd serve exited with {status} before it answered; its log ({}) ends with:\n{tail}",
                        log.display()
                    );
                }
            }
        }
        unreachable!("the last attempt returns or fails")
    }

    fn wait_ready(&mut self, interrupt: &Interrupt) -> anyhow::Result<Ready> {
        let deadline = Instant::now() + CENTER_START_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("started");
            if let Some(status) = child.try_wait().context("cannot watch herd serve")? {
                self.child = None;
                return Ok(Ready::Exited(status));
            }
            if self.data_dir.join("ca.pem").exists()
                && self.data_dir.join("operator.token").exists()
            {
                let answered = self
                    .client(None)
                    .ok()
                    .is_some_and(|client| client.health().is_ok());
                if answered {
                    return Ok(Ready::Yes);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "herd serve did not answer at {} within {} s; its log ({}) ends with:\n{}",
                    self.url,
                    CENTER_START_TIMEOUT.as_secs(),
                    self.log.display(),
                    log_tail(&self.log)
                );
            }
            if interrupt.sleep(POLL) {
                bail!("interrupted while the center was starting");
            }
        }
    }

    /// The center's CA certificate, which clients and agents trust it through.
    pub fn ca_path(&self) -> PathBuf {
        self.data_dir.join("ca.pem")
    }

    /// The operator API token `herd serve` created at its first start.
    pub fn operator_token_path(&self) -> PathBuf {
        self.data_dir.join("operator.token")
    }

    /// An API client for this center, with `token` when given.
    pub fn client(&self, token: Option<&str>) -> anyhow::Result<Client> {
        let ca_path = self.ca_path();
        let ca = fs::read_to_string(&ca_path)
            .with_context(|| format!("cannot read the center's CA {}", ca_path.display()))?;
        let client = Client::new(&self.url, &ca, None)
            .with_context(|| format!("cannot set up a client for {}", self.url))?;
        Ok(match token {
            Some(token) => client.with_token(token),
            None => client,
        })
    }

    /// A client with the operator's token.
    pub fn operator(&self) -> anyhow::Result<Client> {
        let path = self.operator_token_path();
        let token = fs::read_to_string(&path)
            .with_context(|| format!("cannot read the operator token {}", path.display()))?;
        self.client(Some(token.trim()))
    }

    /// Whether the center process is still running.
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Stops the center the way an init system would (SIGTERM, so it finishes what is in
    /// flight and closes its database), and kills it if it has not exited in time. Returns
    /// its exit status, and whether it had to be killed.
    pub fn stop(&mut self) -> anyhow::Result<(ExitStatus, bool)> {
        let Some(mut child) = self.child.take() else {
            bail!("the center is not running");
        };
        if let Some(status) = child.try_wait().context("cannot watch herd serve")? {
            return Ok((status, false));
        }
        // std can only send SIGKILL; `kill` is everywhere `herd serve` runs.
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if sent {
            let deadline = Instant::now() + CENTER_STOP_TIMEOUT;
            while Instant::now() < deadline {
                if let Some(status) = child.try_wait().context("cannot watch herd serve")? {
                    return Ok((status, false));
                }
                std::thread::sleep(POLL);
            }
        }
        let _ = child.kill();
        let status = child.wait().context("cannot wait for herd serve")?;
        Ok((status, true))
    }
}

impl Drop for CenterProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

enum Ready {
    Yes,
    Exited(ExitStatus),
}

/// A loopback port nobody listens on right now.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free loopback port")?;
    Ok(listener
        .local_addr()
        .context("cannot find a free loopback port")?
        .port())
}

fn append(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open the log {}", path.display()))
}

/// The last lines of a log, indented, for an error message.
pub fn log_tail(path: &Path) -> String {
    match fs::read_to_string(path) {
        Ok(text) => tail_lines(&text, LOG_TAIL_LINES),
        Err(err) => format!("    (cannot read {}: {err})", path.display()),
    }
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    let shown: Vec<String> = lines[start..].iter().map(|l| format!("    {l}")).collect();
    if shown.is_empty() {
        "    (nothing)".to_owned()
    } else {
        shown.join("\n")
    }
}

/// What one `herd-agent` command did.
#[derive(Debug)]
pub struct AgentRun {
    /// The command line, for the reader (paths relative to the demo directory).
    pub command: String,
    pub status: ExitStatus,
    /// Everything it printed (stdout and stderr, interleaved as written).
    pub output: String,
}

impl AgentRun {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The last lines it printed, for a failure message.
    pub fn tail(&self) -> String {
        tail_lines(&self.output, LOG_TAIL_LINES)
    }
}

/// The `herd-agent` program and where its commands' output is logged.
#[derive(Debug)]
pub struct AgentProgram {
    pub exe: PathBuf,
}

impl AgentProgram {
    /// `herd-agent` beside the running `herd` (the same cargo target directory), or `given`.
    /// Checks it is new enough to have `run`, so a stale build is reported before anything
    /// starts rather than as a failed step.
    pub fn locate(given: Option<PathBuf>) -> anyhow::Result<AgentProgram> {
        let exe = match given {
            Some(path) => path,
            None => {
                let herd = std::env::current_exe()
                    .context("cannot find where this herd program is, to find herd-agent")?;
                let dir = herd
                    .parent()
                    .ok_or_else(|| anyhow!("{} has no parent directory", herd.display()))?;
                dir.join("herd-agent")
            }
        };
        if !exe.is_file() {
            bail!(
                "herd demo runs real agents, but there is no {}.\n\
                 Build the agent beside herd first, with the same profile as herd:\n  \
                 cargo build --release --bin herd-agent   (or without --release for a debug herd)\n\
                 or name another herd-agent with --agent FILE.",
                exe.display()
            );
        }
        let help = Command::new(&exe)
            .args(["run", "--help"])
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", exe.display()))?;
        if !help.status.success() {
            bail!(
                "{} has no `run` command (an older build?); rebuild it:\n  \
                 cargo build --release --bin herd-agent   (or without --release for a debug herd)",
                exe.display()
            );
        }
        Ok(AgentProgram { exe })
    }

    /// Runs `herd-agent ARGS…` in `cwd`, appending what it prints to `log`, until it exits
    /// (killed after [`AGENT_TIMEOUT`] or on Ctrl-C). `shown` is the command line as the
    /// reader sees it.
    pub fn run(
        &self,
        args: &[String],
        shown: String,
        log: &Path,
        cwd: &Path,
        interrupt: &Interrupt,
    ) -> anyhow::Result<AgentRun> {
        let mut file = append(log)?;
        let start = file
            .seek(SeekFrom::End(0))
            .with_context(|| format!("cannot append to {}", log.display()))?;
        let mut child = Command::new(&self.exe)
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(file.try_clone().context("cannot share an agent log")?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot run {}", self.exe.display()))?;
        let deadline = Instant::now() + AGENT_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().context("cannot watch herd-agent")? {
                break status;
            }
            let late = Instant::now() > deadline;
            if late || interrupt.sleep(POLL) {
                let _ = child.kill();
                let _ = child.wait();
                if late {
                    bail!(
                        "`{shown}` did not finish within {} s; it was stopped. Its log ({}) ends with:\n{}",
                        AGENT_TIMEOUT.as_secs(),
                        log.display(),
                        log_tail(log)
                    );
                }
                bail!("interrupted while `{shown}` was running");
            }
        };
        let mut output = String::new();
        let mut reader =
            File::open(log).with_context(|| format!("cannot read {}", log.display()))?;
        reader
            .seek(SeekFrom::Start(start))
            .with_context(|| format!("cannot read {}", log.display()))?;
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {}", log.display()))?;
        output.push_str(&String::from_utf8_lossy(&bytes));
        Ok(AgentRun {
            command: shown,
            status,
            output,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tails_keep_the_last_lines_indented() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "    b\n    c");
        assert_eq!(tail_lines("", 3), "    (nothing)");
    }
}
