//! The real programs `herd demo` runs: one `herd serve` (this very executable) in the demo
//! directory, started through the lab's process harness, and `herd-agent` from the same
//! target directory for every terminal command.
//! Every child's output goes to a log file in the demo directory, so what a program said can
//! be shown when it did something unexpected, and read afterwards with `--keep`.

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};

use super::signals::Interrupt;
pub use crate::harness::{
    CenterProcess, CenterSpec, STOP_TIMEOUT as CENTER_STOP_TIMEOUT, append, log_tail, tail_lines,
};

/// How long one agent command may run (enrol, check in, download, install, verify).
const AGENT_TIMEOUT: Duration = Duration::from_secs(120);
/// How often a waiting loop looks at its child and at Ctrl-C.
const POLL: Duration = Duration::from_millis(20);

/// How many lines of a log are quoted when a program failed.
const LOG_TAIL_LINES: usize = 15;

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
