//! One supervised program: started and restarted by the agent (`command`), or watched (a
//! process it did not start, found through its pid file, its process name or its systemd
//! service unit); what `poll` detects (crash, abnormal exit, restart loop, hang) and the fault
//! report it makes of it.
//!
//! A watched process is not the agent's child, so its exit status is not the agent's to read:
//! its end is an `exit` fault without a status (a crash report in its `crash_dir` still gives
//! frames). It is followed by pid and start time (`/proc/<pid>/stat`), so a pid reused by
//! another process, or a zombie its parent has not reaped yet, is not taken for it, and an end
//! is reported even when its manager started a new one before the next look.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use herd_proto::fault::{FaultKind, FaultReport};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::collect;
use super::config::ProgramConfig;

/// How long a stopped program gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// What went wrong with a program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub pid: u32,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// Failures within the restart window, this one included.
    pub failures: u32,
}

impl Fault {
    pub fn describe(&self) -> String {
        let how = match (self.exit_code, self.signal) {
            (_, Some(signal)) => format!("signal {signal}"),
            (Some(code), None) => format!("exit status {code}"),
            (None, None) => "status unknown".to_owned(),
        };
        format!(
            "{} (pid {}, {how}, failure {} in the window)",
            self.kind.as_str(),
            self.pid,
            self.failures
        )
    }
}

#[derive(Debug)]
pub struct Watched {
    /// The program as configured, with its alternatives.
    pub original: ProgramConfig,
    /// What runs now: the original, or the alternative it was replaced with.
    pub active: ProgramConfig,
    child: Option<Child>,
    started_at: SystemTime,
    /// A watched process: the pid seen alive (with its start time, against pid reuse), and the
    /// last pid reported gone.
    watched_pid: Option<u32>,
    watched_start: Option<u64>,
    reported_pid: Option<u32>,
    failures: VecDeque<Instant>,
    /// When to start the program again; `None` after a restart loop, which leaves it stopped.
    restart_at: Option<Instant>,
}

impl Watched {
    pub fn new(original: ProgramConfig, active: Option<ProgramConfig>) -> Watched {
        Watched {
            active: active.unwrap_or_else(|| original.clone()),
            original,
            child: None,
            started_at: SystemTime::now(),
            watched_pid: None,
            watched_start: None,
            reported_pid: None,
            failures: VecDeque::new(),
            restart_at: None,
        }
    }

    pub fn active_name(&self) -> &str {
        &self.active.name
    }

    /// Starts the active program, if the agent starts it (a watched one is only looked at).
    pub fn start(&mut self) -> Result<()> {
        self.started_at = SystemTime::now();
        self.failures.clear();
        self.spawn()
    }

    fn spawn(&mut self) -> Result<()> {
        let Some(command) = &self.active.command else {
            return Ok(());
        };
        let mut child = Command::new(&command[0]);
        child.args(&command[1..]).stdin(Stdio::null());
        if let Some(dir) = &self.active.working_dir {
            child.current_dir(dir);
        }
        let child = child
            .spawn()
            .with_context(|| format!("cannot start {} ({})", self.active.name, command[0]))?;
        self.started_at = SystemTime::now();
        self.child = Some(child);
        Ok(())
    }

    /// Looks at the program once; a fault if one was detected (the program is restarted
    /// after the policy's delay, unless it is in a restart loop).
    pub fn poll(&mut self) -> Option<Fault> {
        if let Some(at) = self.restart_at
            && Instant::now() >= at
        {
            self.restart_at = None;
            if let Err(err) = self.spawn() {
                eprintln!("herd-agent: {err:#}");
                return Some(self.failed(FaultKind::Exit, 0, None, None));
            }
        }
        if self.active.command.is_some() {
            self.poll_child()
        } else {
            self.poll_watched()
        }
    }

    fn poll_child(&mut self) -> Option<Fault> {
        let hung = self.hung();
        let child = self.child.as_mut()?;
        let pid = child.id();
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                self.exited(pid, status)
            }
            Ok(None) if hung => {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                Some(self.failed(FaultKind::Hang, pid, None, None))
            }
            Ok(None) => None,
            Err(err) => {
                eprintln!("herd-agent: cannot wait for {}: {err}", self.active.name);
                None
            }
        }
    }

    fn exited(&mut self, pid: u32, status: ExitStatus) -> Option<Fault> {
        match (status.code(), status.signal()) {
            (_, Some(signal)) => Some(self.failed(FaultKind::Crash, pid, None, Some(signal))),
            (Some(0), None) => {
                // A clean exit is not a fault; the program is started again.
                self.restart_at =
                    Some(Instant::now() + Duration::from_millis(self.active.restart.delay_ms));
                None
            }
            (code, None) => Some(self.failed(FaultKind::Exit, pid, code, None)),
        }
    }

    fn poll_watched(&mut self) -> Option<Fault> {
        // The process seen before ended (or its pid is another process's now): that is the
        // fault, even if its manager already started a new one.
        if let Some(old) = self.watched_pid
            && process_start(old) != self.watched_start
        {
            self.watched_pid = None;
            self.watched_start = None;
            return self.gone(old);
        }
        match self.locate() {
            Located::Running(pid) => {
                if self.watched_pid != Some(pid) {
                    self.watched_pid = Some(pid);
                    self.watched_start = process_start(pid);
                    self.started_at = SystemTime::now();
                }
                if self.hung() {
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                    self.watched_pid = None;
                    self.watched_start = None;
                    self.reported_pid = Some(pid);
                    return Some(self.failed(FaultKind::Hang, pid, None, None));
                }
                None
            }
            // A pid file naming a process that is gone (it ended before the agent looked).
            Located::Ended(pid) => self.gone(pid),
            Located::Nothing => None,
        }
    }

    /// A watched process ended: reported once per pid (its manager may restart it under a
    /// new one).
    fn gone(&mut self, pid: u32) -> Option<Fault> {
        if self.reported_pid == Some(pid) {
            return None;
        }
        self.reported_pid = Some(pid);
        Some(self.failed(FaultKind::Exit, pid, None, None))
    }

    /// Where the watched process is now, by the way the configuration names it.
    fn locate(&mut self) -> Located {
        let program = &self.active;
        let pid = if let Some(pid_file) = &program.pid_file {
            let Some(pid) = std::fs::read_to_string(pid_file)
                .ok()
                .and_then(|text| text.trim().parse::<u32>().ok())
            else {
                return Located::Nothing;
            };
            pid
        } else if let Some(name) = &program.process_name {
            // The one already watched while it runs, else the oldest of that name.
            if let Some(pid) = self.watched_pid {
                return Located::Running(pid);
            }
            match find_by_name(name) {
                Some(pid) => pid,
                None => return Located::Nothing,
            }
        } else if let Some(unit) = &program.service_unit {
            match unit_main_pid(unit) {
                Ok(Some(pid)) => pid,
                Ok(None) => return Located::Nothing,
                Err(why) => {
                    eprintln!("herd-agent: {}: {why}", program.name);
                    return Located::Nothing;
                }
            }
        } else {
            return Located::Nothing;
        };
        if process_start(pid).is_some() {
            Located::Running(pid)
        } else {
            Located::Ended(pid)
        }
    }

    /// No heartbeat within the limit (counted from the start when there was none yet).
    fn hung(&self) -> bool {
        let Some(heartbeat) = &self.active.heartbeat else {
            return false;
        };
        let last = std::fs::metadata(&heartbeat.file)
            .and_then(|m| m.modified())
            .map(|at| at.max(self.started_at))
            .unwrap_or(self.started_at);
        SystemTime::now()
            .duration_since(last)
            .is_ok_and(|since| since > Duration::from_secs(heartbeat.limit_secs))
    }

    /// Counts a failure and schedules the restart, or gives up after too many.
    fn failed(
        &mut self,
        kind: FaultKind,
        pid: u32,
        exit_code: Option<i32>,
        signal: Option<i32>,
    ) -> Fault {
        let now = Instant::now();
        let policy = &self.active.restart;
        let window = Duration::from_secs(policy.window_secs);
        self.failures.push_back(now);
        while self
            .failures
            .front()
            .is_some_and(|at| now.duration_since(*at) > window)
        {
            self.failures.pop_front();
        }
        let failures = self.failures.len() as u32;
        let in_loop = failures > policy.max;
        if in_loop {
            self.restart_at = None;
        } else if self.active.command.is_some() {
            self.restart_at = Some(now + Duration::from_millis(policy.delay_ms));
        }
        Fault {
            kind: if in_loop {
                FaultKind::RestartLoop
            } else {
                kind
            },
            pid,
            exit_code,
            signal,
            failures,
        }
    }

    /// The report of `fault`, with what the crash report and definition files give.
    pub fn report(&self, fault: &Fault, platform: &str) -> FaultReport {
        let program = &self.active;
        let crash = program
            .crash_dir
            .as_deref()
            .and_then(|dir| collect::crash_report(dir, fault.pid))
            .unwrap_or_default();
        FaultReport {
            terminal: None,
            program: program.name.clone(),
            vendor: program.vendor.clone(),
            version: program.version.clone(),
            platform: platform.to_owned(),
            kind: fault.kind,
            exit_code: fault.exit_code,
            signal: fault.signal,
            frames: crash.frames,
            dump_sha256: crash.dump_sha256,
            definitions: program
                .definitions
                .iter()
                .map(|path| collect::definition(path))
                .collect(),
            restarts: fault.failures.saturating_sub(1),
            message: None,
            alternatives_present: self
                .original
                .alternatives
                .iter()
                .chain(std::iter::once(&self.original))
                .map(|a| a.name.clone())
                .filter(|name| *name != program.name)
                .collect(),
        }
    }

    /// Stops the program the agent started: SIGTERM, then SIGKILL after a grace period.
    pub fn stop(&mut self) {
        self.restart_at = None;
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Whether the started program is running now (reaping it if it exited).
    pub fn running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// The directory the active program was installed in by a replacement, if it was.
    pub fn installed_in<'a>(&'a self, programs: &Path) -> Option<&'a Path> {
        // A package installed by a replacement runs in its version directory.
        if let Some(dir) = &self.active.working_dir
            && super::is_inside(dir, programs)
        {
            return Some(dir);
        }
        let command = self.active.command.as_ref()?;
        let path = Path::new(&command[0]);
        super::is_inside(path, programs)
            .then(|| path.parent())
            .flatten()
    }
}

/// Where a watched process is.
enum Located {
    Running(u32),
    /// Its pid is known but no process runs under it.
    Ended(u32),
    /// Nothing names a process (no pid file yet, no process of that name, the unit stopped).
    Nothing,
}

/// The start time of process `pid` (clock ticks after boot, `/proc/<pid>/stat` field 22), or
/// `None` when no process runs under that pid (none at all, or a zombie: ended, not reaped).
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces and parentheses itself: the fields
    // that follow start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (the state), so field 22 (start time) is fields[19].
    if matches!(fields.first(), Some(&"Z") | Some(&"X") | None) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// The oldest running process (not this one) whose name is `name`: its `comm` (which the
/// kernel cuts at 15 bytes) or the file name of its `argv[0]`.
pub fn find_by_name(name: &str) -> Option<u32> {
    let own = std::process::id();
    let mut best: Option<(u64, u32)> = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own || !process_named(pid, name) {
            continue;
        }
        let Some(start) = process_start(pid) else {
            continue;
        };
        if best.is_none_or(|b| (start, pid) < b) {
            best = Some((start, pid));
        }
    }
    best.map(|(_, pid)| pid)
}

fn process_named(pid: u32, name: &str) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim_end_matches('\n') == name {
        return true;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    let file_name = argv0.rsplit(|&b| b == b'/').next().unwrap_or_default();
    file_name == name.as_bytes()
}

/// Whether systemd runs this system (what `sd_booted` checks).
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// The main pid of a systemd service unit (`None` while it is not running), from
/// `systemctl show --property MainPID --value`.
pub fn unit_main_pid(unit: &str) -> Result<Option<u32>, String> {
    let output = Command::new("systemctl")
        .args(["show", "--property", "MainPID", "--value", "--", unit])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run systemctl: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "systemctl show {unit} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    match text.trim().parse::<u32>() {
        Ok(0) => Ok(None),
        Ok(pid) => Ok(Some(pid)),
        Err(_) => Err(format!(
            "systemctl show {unit} gave {:?}, not a pid",
            text.trim()
        )),
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.stop();
    }
}
