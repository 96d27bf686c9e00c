//! Supervision of designated programs (SPEC §3.3, seed 002 S11–S20): `herd-agent supervise`
//! starts the configured programs (or watches ones it did not start, found by pid file,
//! process name or systemd service unit), and detects a crash
//! (killed by a signal), an abnormal exit (a non-zero status, or a watched process that
//! vanished), a restart loop (more failures than the restart policy allows in its window: the
//! program is then left stopped) and a hang (no heartbeat within its limit: the program is
//! killed). Each becomes a fault report ([`collect`]: frames and dump digest from a crash
//! report, definition files digested and excerpted with secrets redacted) pushed through the
//! outbox, which `herd-agent run` sends and whose verdicts it fetches ([`verdicts`]). The
//! supervisor acts on them: a known cause is shown (and kept for `herd-agent status`); an
//! alternative is switched to as a transaction ([`replace`]), the old program restored on any
//! failure. `herd-agent fault report` is how a program reports its own fault.
//!
//! Blocking and single-threaded like the rest of the agent: one loop looks at every program
//! each tick (`waitpid` without blocking, a stat of the heartbeat file) and sleeps between
//! ticks; SIGTERM or SIGINT stops the programs it started and ends it.

pub mod collect;
pub mod config;
mod replace;
#[cfg(test)]
mod tests;
pub(crate) mod verdicts;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use herd_proto::api::events;
use herd_proto::fault::{Decision, FaultKind, FaultReport, FaultVerdict};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

use crate::outbox::Outbox;
use config::{SuperviseConfig, default_platform};
use verdicts::FaultDirs;
use watch::Watched;

#[derive(Debug, Clone, clap::Args)]
pub struct SuperviseArgs {
    /// The agent's state directory (its outbox carries the fault reports).
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    /// The supervision configuration (`herd.supervise/v1`, JSON).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// How often the programs are looked at, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 100)]
    tick_ms: u64,
    /// Who the hooks of a replacement's package run as (as for `herd-agent run`).
    #[command(flatten)]
    hooks: crate::execute::HookArgs,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum FaultCommand {
    /// Report a fault of a program (for programs that detect their own faults): queued in the
    /// outbox, sent at the next check-in; the center's verdict shows in `herd-agent status`.
    Report(ReportArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    #[arg(long)]
    program: String,
    #[arg(long)]
    vendor: String,
    #[arg(long)]
    version: String,
    /// [default: `<os>-<arch>`]
    #[arg(long)]
    platform: Option<String>,
    /// crash, exit, hang, restart_loop or reported.
    #[arg(long, default_value = "reported")]
    kind: String,
    #[arg(long, allow_hyphen_values = true)]
    exit_code: Option<i32>,
    #[arg(long)]
    signal: Option<i32>,
    /// A stack frame, top first (repeatable).
    #[arg(long = "frame", value_name = "TEXT")]
    frames: Vec<String>,
    /// A definition (configuration) file of the program (repeatable): its digest and a
    /// redacted excerpt are reported.
    #[arg(long = "definition", value_name = "FILE")]
    definitions: Vec<PathBuf>,
    /// A core dump or crash report: its SHA-256 is reported.
    #[arg(long, value_name = "FILE")]
    dump: Option<PathBuf>,
    #[arg(long)]
    message: Option<String>,
}

/// `herd-agent fault report`.
pub fn run_fault(command: &FaultCommand) -> Result<u8> {
    let FaultCommand::Report(args) = command;
    let kind: FaultKind = serde_json::from_value(serde_json::Value::String(args.kind.clone()))
        .map_err(|_| {
            anyhow::anyhow!(
                "--kind {:?}: expected crash, exit, hang, restart_loop or reported",
                args.kind
            )
        })?;
    let dump_sha256 = match &args.dump {
        Some(dump) => Some(
            collect::sha256_file(dump)
                .with_context(|| format!("--dump {}: cannot read it", dump.display()))?,
        ),
        None => None,
    };
    let report = FaultReport {
        terminal: None,
        program: args.program.clone(),
        vendor: args.vendor.clone(),
        version: args.version.clone(),
        platform: args.platform.clone().unwrap_or_else(default_platform),
        kind,
        exit_code: args.exit_code,
        signal: args.signal,
        frames: args.frames.iter().map(|f| collect::bounded(f)).collect(),
        dump_sha256,
        definitions: args
            .definitions
            .iter()
            .map(|path| collect::definition(path))
            .collect(),
        restarts: 0,
        message: args.message.as_deref().map(collect::bounded),
        alternatives_present: Vec::new(),
    };
    let dirs = FaultDirs::new(&args.state_dir);
    let outbox = Outbox::open(&dirs.outbox())?;
    let seq = push_report(&outbox, &dirs, &report)?;
    println!(
        "fault of {} queued as event {seq}; it is sent at the next check-in",
        report.program
    );
    Ok(0)
}

/// Validates and queues a fault report, and marks its verdict as awaited.
fn push_report(outbox: &Outbox, dirs: &FaultDirs, report: &FaultReport) -> Result<u64> {
    report
        .validate("the fault report")
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    let data = serde_json::to_value(report).context("cannot encode the fault report")?;
    let seq = outbox.push(events::FAULT_REPORT, data)?;
    verdicts::await_verdict(dirs, seq)?;
    Ok(seq)
}

/// `herd-agent supervise`: runs until SIGTERM or SIGINT.
pub fn run(args: &SuperviseArgs) -> Result<u8> {
    let config = SuperviseConfig::load(&args.config)?;
    if let Some(program) = config
        .programs
        .iter()
        .find(|program| program.service_unit.is_some())
        && !watch::systemd_running()
    {
        anyhow::bail!(
            "{}: {} is watched through its service unit, but systemd is not running here (no \
             /run/systemd/system); watch it by pid_file or process_name instead",
            args.config.display(),
            program.name
        );
    }
    let platform = config.platform();
    let policy = args.hooks.policy().map_err(|why| anyhow::anyhow!(why))?;
    let dirs = FaultDirs::new(&args.state_dir);
    dirs.create()?;
    let programs = dirs.programs();
    // A replacement's package hooks run as an install's do (the same runner and policy),
    // told the directory replacements are installed under.
    let hooks = crate::execute::HookRunner {
        policy: &policy,
        timeout: crate::execute::DEFAULT_SCRIPT_TIMEOUT,
        prefix: &programs,
    };
    let outbox = Outbox::open(&dirs.outbox())?;
    let selected = verdicts::Selected::load(&dirs)?;
    let mut watched: Vec<Watched> = config
        .programs
        .iter()
        .map(|program| Watched::new(program.clone(), selected.active(&program.name)))
        .collect();
    for program in &mut watched {
        program.start()?;
    }
    let stop = StopSignals::new()?;
    let mut acted = verdicts::Acted::load(&dirs)?;
    // Held verdicts already shown (by seq): shown once, never marked acted on.
    let mut held_shown: Vec<u64> = Vec::new();
    let mut seen_verdicts = None;
    let tick = Duration::from_millis(args.tick_ms.max(10));
    loop {
        for program in &mut watched {
            if let Some(fault) = program.poll() {
                let report = program.report(&fault, &platform);
                match push_report(&outbox, &dirs, &report) {
                    Ok(seq) => eprintln!(
                        "herd-agent: {} {}: fault reported (event {seq})",
                        report.program,
                        fault.describe()
                    ),
                    Err(err) => eprintln!(
                        "herd-agent: {}: the fault could not be queued: {err:#}",
                        report.program
                    ),
                }
            }
        }
        let stamp = verdicts::stamp(&dirs);
        if stamp != seen_verdicts {
            seen_verdicts = stamp;
            for verdict in verdicts::load(&dirs)?.verdicts {
                if acted.contains(verdict.seq) {
                    continue;
                }
                if verdict.decision == Decision::Held {
                    // Not the last word on this fault: the center decides it again when the
                    // replacement's rollout reaches this terminal, under the same seq.
                    if !held_shown.contains(&verdict.seq) {
                        held_shown.push(verdict.seq);
                        eprintln!("herd-agent: {}", describe_verdict(&verdict));
                    }
                    continue;
                }
                act(&verdict, &mut watched, &dirs, &outbox, &hooks);
                acted.add(&dirs, verdict.seq)?;
            }
        }
        if stop.wait(tick)? {
            for program in &mut watched {
                program.stop();
            }
            return Ok(0);
        }
    }
}

/// Acts on one new verdict about a program this supervisor runs.
fn act(
    verdict: &FaultVerdict,
    watched: &mut [Watched],
    dirs: &FaultDirs,
    outbox: &Outbox,
    hooks: &crate::execute::HookRunner<'_>,
) {
    let Some(program) = watched
        .iter_mut()
        .find(|w| w.active_name() == verdict.program)
    else {
        return;
    };
    match (verdict.decision, &verdict.alternative) {
        (Decision::Known, _) => eprintln!(
            "herd-agent: {}: known fault: {} Remedy: {}",
            verdict.program,
            verdict.cause.as_deref().unwrap_or("?"),
            verdict.remedy.as_deref().unwrap_or("?")
        ),
        // Never acted on (`run` skips it); here for completeness.
        (Decision::Held, _) => eprintln!("herd-agent: {}", describe_verdict(verdict)),
        (Decision::Escalated, _) => eprintln!(
            "herd-agent: {}: the cause of its fault is unknown and no alternative is approved; \
             escalated to the operators",
            verdict.program
        ),
        (Decision::Replace | Decision::UseAlternative, Some(alternative)) => {
            let fetched = match verdicts::load_fetched(dirs) {
                Ok(fetched) => fetched.get(&verdict.seq).cloned(),
                Err(err) => {
                    eprintln!("herd-agent: warning: {err:#}");
                    None
                }
            };
            let outcome = replace::replace(program, alternative, fetched.as_ref(), dirs, hooks);
            eprintln!("herd-agent: {}: {}", verdict.program, outcome.message);
            if outcome.replaced
                && let Err(err) = verdicts::Selected::record(dirs, &verdict.program, program)
            {
                eprintln!("herd-agent: warning: the replacement is not remembered: {err:#}");
            }
            let event = herd_proto::fault::FaultReplaced {
                program: verdict.program.clone(),
                alternative: alternative.program.clone(),
                seq: verdict.seq,
                replaced: outcome.replaced,
                failed_step: outcome
                    .failed_step
                    .map(|step| serde_json::to_value(step).expect("a step serialises"))
                    .and_then(|step| step.as_str().map(str::to_owned)),
                message: collect::bounded(&outcome.message),
            };
            let event = serde_json::to_value(event).expect("an outcome serialises");
            if let Err(err) = outbox.push(events::FAULT_REPLACED, event) {
                eprintln!("herd-agent: warning: the replacement is not reported: {err:#}");
            }
            // Kept for the status last: once it shows there, the center's copy is queued.
            let record = verdicts::ReplacementOutcome {
                replaced: outcome.replaced,
                message: outcome.message.clone(),
            };
            if let Err(err) = verdicts::record_outcome(dirs, verdict.seq, record) {
                eprintln!("herd-agent: warning: the outcome is not kept for the status: {err:#}");
            }
        }
        (Decision::Replace | Decision::UseAlternative, None) => eprintln!(
            "herd-agent: {}: the center said to replace it but named no alternative",
            verdict.program
        ),
    }
}

/// Set by SIGTERM and SIGINT: the loop stops the programs it started and ends at its next
/// turn, whatever it was doing when the signal came (a replacement finishes first).
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_: nix::libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// SIGTERM and SIGINT set [`STOP`] instead of ending the process (a handler, not a blocked
/// mask: the programs it starts must not inherit blocked signals, and `exec` resets handlers
/// to their defaults).
struct StopSignals;

impl std::fmt::Debug for StopSignals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StopSignals")
    }
}

impl StopSignals {
    fn new() -> Result<StopSignals> {
        let action = SigAction::new(
            SigHandler::Handler(request_stop),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        for signal in [Signal::SIGTERM, Signal::SIGINT] {
            #[allow(unsafe_code)]
            // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
            unsafe { sigaction(signal, &action) }
                .with_context(|| format!("cannot handle {signal}"))?;
        }
        Ok(StopSignals)
    }

    /// Sleeps for `tick`; true once a stop signal arrived.
    fn wait(&self, tick: Duration) -> Result<bool> {
        if !STOP.load(Ordering::SeqCst) {
            std::thread::sleep(tick);
        }
        Ok(STOP.load(Ordering::SeqCst))
    }
}

/// Whether `path` lies inside `dir` (both as given, not resolved).
fn is_inside(path: &Path, dir: &Path) -> bool {
    path.starts_with(dir)
}

/// A verdict in a line, for `herd-agent status`.
pub fn describe_verdict(verdict: &FaultVerdict) -> String {
    let what = match verdict.decision {
        Decision::Known => format!(
            "known cause: {} Remedy: {}",
            verdict.cause.as_deref().unwrap_or("?"),
            verdict.remedy.as_deref().unwrap_or("?")
        ),
        Decision::Replace | Decision::UseAlternative => format!(
            "cause unknown; {} by {}",
            if verdict.decision == Decision::Replace {
                "to be replaced (distributed)"
            } else {
                "to be replaced (already here)"
            },
            verdict
                .alternative
                .as_ref()
                .map(|a| format!("{} {} ({})", a.program, a.version, a.vendor))
                .unwrap_or_else(|| "?".to_owned())
        ),
        Decision::Escalated => {
            "cause unknown and no approved alternative; escalated to the operators".to_owned()
        }
        Decision::Held => format!(
            "cause unknown; replacement by {} rolling out, this terminal's ring opens later \
             (held: nothing done yet)",
            verdict
                .alternative
                .as_ref()
                .map(|a| format!("{} {} ({})", a.program, a.version, a.vendor))
                .unwrap_or_else(|| "?".to_owned())
        ),
    };
    format!(
        "{} at {} (bucket {}): {what}",
        verdict.program, verdict.at, verdict.bucket
    )
}
