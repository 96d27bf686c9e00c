//! Running a plan's install and uninstall scripts (and package hooks) with `sh`, in their own
//! process group, with a time limit, capturing the end of what they print on stderr for the
//! report. A script or hook comes from a package or a center the agent does not fully trust, so
//! neither its output nor its run time is allowed to be unbounded.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::prctl::set_no_new_privs;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Gid, Pid, Uid, setgid, setgroups, setuid};

/// How much of a script's stderr is kept for the report (the end, where errors are).
const STDERR_KEPT: usize = 2000;

/// How many bytes of stderr the agent holds in memory while a script runs: the last 64 KiB,
/// enough for [`STDERR_KEPT`] characters of any script, however it spells them. The rest is
/// read and dropped, so a script printing gigabytes neither fills the agent's memory nor
/// blocks on a full pipe.
const STDERR_HELD: usize = 64 << 10;

/// How much of a health check's standard output is kept to look for its expected text.
pub(super) const STDOUT_KEPT: usize = 64 << 10;

/// How a script ended.
#[derive(Debug)]
pub(super) struct ScriptRun {
    pub success: bool,
    /// `exit status 0`, `killed after 600 s`, ...
    pub status: String,
    /// The exit code, when it exited (not killed, not timed out).
    pub code: Option<i32>,
    pub timed_out: bool,
    /// The tail of what it wrote on stderr, trimmed.
    pub stderr: String,
    /// The first [`STDOUT_KEPT`] bytes of its standard output, when captured (health checks).
    pub stdout: Vec<u8>,
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

/// Who a hook runs as: the agent's own user (root only when the policy allowed it, or the
/// agent's user when the agent is not root), or an unprivileged user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RunAs {
    Agent,
    User { uid: u32, gid: u32 },
}

/// Runs an executable file (a package hook; a path relative to `cwd`, which the child enters
/// before it drops privileges) in `cwd`, as `run_as`, in its own process group,
/// unable to gain privileges (`PR_SET_NO_NEW_PRIVS`: a setuid program it starts stays
/// unprivileged).
pub(super) fn run_hook(
    hook: &Path,
    cwd: &Path,
    env: &[(&str, &OsStr)],
    timeout: Duration,
    run_as: RunAs,
) -> std::io::Result<ScriptRun> {
    run_program(hook, &[], cwd, env, timeout, run_as, false)
}

/// Runs an executable file of a package as [`run_hook`] does, with `args`, and captures the
/// start of its standard output when `capture_stdout` (a health check's expected text).
pub(super) fn run_program(
    hook: &Path,
    args: &[String],
    cwd: &Path,
    env: &[(&str, &OsStr)],
    timeout: Duration,
    run_as: RunAs,
    capture_stdout: bool,
) -> std::io::Result<ScriptRun> {
    let mut command = Command::new(hook);
    command
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(if capture_stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped())
        .process_group(0)
        .env_remove("HERD_AGENT_FAULT");
    for (key, value) in env {
        command.env(key, value);
    }
    let user = match run_as {
        RunAs::Agent => None,
        RunAs::User { uid, gid } => Some((Uid::from_raw(uid), Gid::from_raw(gid))),
    };
    let drop_privileges = move || -> std::io::Result<()> {
        if let Some((uid, gid)) = user {
            // Groups first, then the group, then the user: once the user is changed the
            // process can no longer change the others.
            setgroups(&[])?;
            setgid(gid)?;
            setuid(uid)?;
        }
        set_no_new_privs()?;
        Ok(())
    };
    // SAFETY: the closure runs in the child between fork and exec; it only makes system calls
    // (setgroups, setgid, setuid, prctl) through nix's thin wrappers, which neither allocate
    // nor take locks, so it is async-signal-safe.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(drop_privileges);
    }
    wait(command.spawn()?, timeout)
}

fn wait(mut child: Child, timeout: Duration) -> std::io::Result<ScriptRun> {
    let Some(stderr) = child.stderr.take() else {
        // Both callers pipe stderr; without it there is only nothing to capture.
        return Err(std::io::Error::other("the script's stderr was not piped"));
    };
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(tail(stderr, STDERR_HELD));
    });
    let stdout = child.stdout.take().map(|stdout| {
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = sender.send(head(stdout, STDOUT_KEPT));
        });
        receiver
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
    let text = String::from_utf8_lossy(&captured.kept);
    let text = text.trim();
    let tail_start = text
        .char_indices()
        .rev()
        .nth(STDERR_KEPT.saturating_sub(1))
        .map_or(0, |(i, _)| i);
    let shown = &text[tail_start..];
    let cut = captured.total.saturating_sub(shown.len() as u64);
    let stderr = if tail_start > 0 || captured.total > captured.kept.len() as u64 {
        format!("[{cut} earlier bytes cut] …{shown}")
    } else {
        text.to_owned()
    };
    let stdout = stdout
        .and_then(|receiver| receiver.recv_timeout(Duration::from_secs(2)).ok())
        .unwrap_or_default();
    let status_text = if timed_out {
        format!("killed after {} (time limit)", seconds(timeout))
    } else {
        status.to_string()
    };
    Ok(ScriptRun {
        success: status.success() && !timed_out,
        status: status_text,
        code: status.code().filter(|_| !timed_out),
        timed_out,
        stderr: stderr.replace('\n', " | "),
        stdout,
    })
}

/// `600 s`, or `0.3 s` for a limit under ten seconds (health checks have short ones).
fn seconds(duration: Duration) -> String {
    if duration < Duration::from_secs(10) {
        format!("{:.1} s", duration.as_secs_f64())
    } else {
        format!("{} s", duration.as_secs())
    }
}

/// Reads `reader` to its end (or its first error), handing each chunk to `each`: the writer
/// never blocks on a full pipe, whatever the caller keeps.
fn read_chunks(mut reader: impl Read, mut each: impl FnMut(&[u8])) {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => each(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
}

/// The first `held` bytes a reader yields; the rest is read and dropped.
fn head(reader: impl Read, held: usize) -> Vec<u8> {
    let mut out = Vec::new();
    read_chunks(reader, |chunk| {
        let room = held.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
    });
    out
}

/// The end of what a reader yields, and how much it yielded in all.
#[derive(Debug, Default)]
struct Tail {
    /// At most the last `held` bytes (they may start inside a UTF-8 character).
    kept: Vec<u8>,
    total: u64,
}

/// Reads `reader` to its end, keeping only its last `held` bytes: memory stays bounded however
/// much it writes.
fn tail(reader: impl Read, held: usize) -> Tail {
    let mut out = Tail::default();
    read_chunks(reader, |chunk| {
        out.total = out.total.saturating_add(chunk.len() as u64);
        out.kept.extend_from_slice(chunk);
        // Trimming only once twice the limit is held moves each byte at most once more.
        if out.kept.len() > 2 * held {
            let excess = out.kept.len() - held;
            out.kept.drain(..excess);
        }
    });
    if out.kept.len() > held {
        let excess = out.kept.len() - held;
        out.kept.drain(..excess);
    }
    out
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
    fn a_reader_yielding_gigabytes_is_held_to_its_tail() {
        // 3 GiB from a reader that never ends on its own: the memory held stays at the limit.
        let gigabytes = std::io::repeat(b'x')
            .take(3 << 30)
            .chain(&b"the real error"[..]);
        let tail = tail(gigabytes, STDERR_HELD);
        assert_eq!(tail.total, (3u64 << 30) + 14);
        assert_eq!(tail.kept.len(), STDERR_HELD);
        assert!(tail.kept.ends_with(b"xxthe real error"));
    }

    #[test]
    fn a_hook_printing_gigabytes_is_cut_not_buffered() {
        let dir = tempfile::tempdir().unwrap();
        let hook = dir.path().join("post-install");
        // A quarter of a gigabyte through the pipe (a real hook's worth of noise, kept quick),
        // multi-byte characters included, then the line that matters.
        std::fs::write(
            &hook,
            "#!/bin/sh\nhead -c 268435456 /dev/zero | tr '\\0' 'é' >&2\n\
             printf 'é%.0s' $(seq 3000) >&2\necho 'the real error' >&2\nexit 4\n",
        )
        .unwrap();
        std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let run = run_hook(
            &hook,
            dir.path(),
            &[],
            Duration::from_secs(60),
            RunAs::Agent,
        )
        .unwrap();
        assert!(!run.success);
        assert!(
            run.stderr.ends_with("the real error"),
            "{}",
            run.stderr.chars().take(80).collect::<String>()
        );
        assert!(
            run.stderr.starts_with('['),
            "{}",
            run.stderr.chars().take(80).collect::<String>()
        );
        assert!(
            run.stderr.contains("earlier bytes cut] …"),
            "{}",
            run.stderr.chars().take(80).collect::<String>()
        );
        assert!(run.stderr.chars().count() < STDERR_KEPT + 40);
        assert!(run.describe().contains("exit status: 4"));
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
