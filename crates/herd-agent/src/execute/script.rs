//! Running a plan's install and uninstall scripts (and package hooks) with `sh`, in their own
//! process group, with a time limit, capturing what they print on stderr for the report.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// How much of a script's stderr is kept for the report (the end, where errors are).
const STDERR_KEPT: usize = 2000;

/// How a script ended.
#[derive(Debug)]
pub(super) struct ScriptRun {
    pub success: bool,
    /// `exit status 0`, `killed after 600 s`, ...
    pub status: String,
    /// The tail of what it wrote on stderr, trimmed.
    pub stderr: String,
}

impl ScriptRun {
    /// A one-line account for a step's detail.
    pub(super) fn describe(&self) -> String {
        if self.stderr.is_empty() {
            self.status.clone()
        } else {
            format!("{}; stderr: {}", self.status, self.stderr)
        }
    }
}

/// Runs `sh -c script name` in `cwd` with `env` added to the agent's environment.
pub(super) fn run(
    name: &str,
    script: &str,
    env: &[(&str, &OsStr)],
    cwd: &Path,
    timeout: Duration,
) -> std::io::Result<ScriptRun> {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(script)
        .arg(name)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group, so a time-out ends the hooks it started too.
        .process_group(0)
        .env_remove("HERD_AGENT_FAULT");
    for (key, value) in env {
        command.env(key, value);
    }
    let child = command.spawn()?;
    wait(child, timeout)
}

/// Runs an executable file (a package hook) in `cwd`.
pub(super) fn run_hook(
    hook: &Path,
    cwd: &Path,
    env: &[(&str, &OsStr)],
    timeout: Duration,
) -> std::io::Result<ScriptRun> {
    let mut command = Command::new(hook);
    command
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .env_remove("HERD_AGENT_FAULT");
    for (key, value) in env {
        command.env(key, value);
    }
    wait(command.spawn()?, timeout)
}

fn wait(mut child: Child, timeout: Duration) -> std::io::Result<ScriptRun> {
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut captured = Vec::new();
        let _ = stderr.read_to_end(&mut captured);
        let _ = sender.send(captured);
    });
    let started = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() >= timeout {
            timed_out = true;
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // A process that left the group may still hold stderr open: do not wait for it forever.
    let captured = receiver
        .recv_timeout(Duration::from_secs(2))
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&captured);
    let text = text.trim();
    let tail_start = text
        .char_indices()
        .rev()
        .nth(STDERR_KEPT.saturating_sub(1))
        .map_or(0, |(i, _)| i);
    let stderr = if tail_start > 0 {
        format!("…{}", &text[tail_start..])
    } else {
        text.to_owned()
    };
    let status_text = if timed_out {
        format!("killed after {} s (time limit)", timeout.as_secs())
    } else {
        status.to_string()
    };
    Ok(ScriptRun {
        success: status.success() && !timed_out,
        status: status_text,
        stderr: stderr.replace('\n', " | "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_stderr_and_the_exit_status() {
        let dir = tempfile::tempdir().unwrap();
        let run = run(
            "test",
            "echo to-stdout; echo \"oops $X\" >&2; exit 3",
            &[("X", OsStr::new("42"))],
            dir.path(),
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(!run.success);
        assert_eq!(run.stderr, "oops 42");
        assert_eq!(run.describe(), "exit status: 3; stderr: oops 42");
    }

    #[test]
    fn a_hanging_script_and_its_children_are_killed() {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let run = run(
            "test",
            "sleep 30 & sleep 30",
            &[],
            dir.path(),
            Duration::from_millis(200),
        )
        .unwrap();
        assert!(!run.success);
        assert!(run.status.contains("time limit"), "{}", run.status);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
