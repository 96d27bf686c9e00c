//! `herd-agent run`: the agent proper (SPEC §2 "Agent", §3.1, §3.5, §3.6). It enrols once,
//! then checks in at start-up and at the interval the center gives, reporting what it runs;
//! it carries out the plans it receives (through the transactional executor), waiting for
//! the user's consent or a maintenance window where policy says so, and reports every outcome
//! through the outbox, which keeps events while the center is unreachable.
//!
//! Between check-ins it sleeps in one `poll` (see [`wake`]): no timer ticks, no CPU. It is
//! blocking and single-threaded on purpose — an async runtime would cost memory for nothing.
//!
//! `--once` runs one cycle (recover, enrol if needed, check in, act, flush) and exits:
//! 0 when all went well (including a plan that waits for consent or a window), 1 when a plan
//! was rolled back, 2 on errors (the center unreachable, enrolment refused, …).
//!
//! Also here: `herd-agent status` ([`status`]), `herd-agent consent` ([`consent`]) and
//! `herd-agent messages|message` ([`messages`]).

mod agent;
pub(crate) mod clock;
mod consent;
pub(crate) mod durable;
mod enrol;
mod fetcher;
mod identity;
mod interfaces;
mod messages;
mod protect;
mod push;
mod scanner;
pub(crate) mod state;
mod status;
mod upstreams;
mod volumes;
mod wake;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Result, anyhow};

pub use consent::{ConsentCommand, run as run_consent};
pub use messages::{MessageArgs, MessagesArgs, run_message, run_messages};
pub use status::{StatusArgs, run as run_status};

use crate::scan::parse_size;
use agent::{Agent, CycleError};
use clock::Backoff;
use wake::{Wake, Waker};

/// The outbox directory of the agent whose state directory is `state_root`.
pub(crate) fn outbox_dir(state_root: &std::path::Path) -> PathBuf {
    state::StatePaths::new(state_root).outbox()
}

pub(crate) use state::save_json;

/// The agent's version, reported at check-in.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The center (or site server) to talk to, like https://center.example:8443. Needed to
    /// enrol; remembered afterwards.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// The center's CA certificate (PEM, the center's <data-dir>/ca.pem), trusted to enrol.
    /// Afterwards the agent keeps the CA certificate the center sent with its identity.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Check in with these upstreams, in order of preference (repeatable): when one does not
    /// answer for --failover-after the agent moves to the next, and it goes back to the first
    /// as soon as that answers again [default: what enrolment answered (the site, then the
    /// center), else the server enrolled with].
    #[arg(long = "upstream", value_name = "URL")]
    upstreams: Vec<String>,
    /// Seconds an upstream may stay silent (no answer at all; a refusal is an answer) before
    /// the agent checks in with the next one.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    failover_after: u64,
    /// While on another upstream, how often (seconds) to see whether the preferred one answers.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    probe_preferred_every: u64,
    /// Tests: read the network interfaces reported for the network map from this JSON file
    /// (a list of {name, mac, addresses}) instead of asking the system.
    #[arg(long, hide = true, value_name = "FILE")]
    interfaces_file: Option<PathBuf>,
    /// Do not hold a push connection to the upstream: learn of changes at the check-in
    /// interval only.
    #[arg(long)]
    no_push: bool,
    /// Read the signed TUF repository (metadata and packages) from this mirror, like
    /// http://mirror.example/herd, instead of the center: plain HTTP is fine, since everything
    /// is verified against the root of trust the center gave at enrolment.
    #[arg(long, value_name = "URL")]
    mirror: Option<String>,
    /// Where the agent keeps its identity, state, outbox and (by default) products.
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    /// Enrolment token from the operator; needed once, for the first run.
    #[arg(long, value_name = "TOKEN", conflicts_with = "enrol_token_file")]
    enrol_token: Option<String>,
    /// A file holding the enrolment token (keeps it out of the process list).
    #[arg(long, value_name = "FILE")]
    enrol_token_file: Option<PathBuf>,
    /// The product prefix: products/<product>/<version> and the `current` link
    /// [default: <state-dir>/prefix; remembered after enrolment].
    #[arg(long, value_name = "DIR")]
    prefix: Option<PathBuf>,
    /// The terminal id to ask for at enrolment (the center assigns one when absent).
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// The terminal's user, for placement rules (given at enrolment).
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// Hardware kind, like phone, pda, pc, stb [default: pc, or as enrolled].
    #[arg(long, value_name = "KIND")]
    kind: Option<String>,
    /// Platform packages are chosen for [default: pc, or as enrolled].
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<String>,
    /// Hardware model [default: detected, or as enrolled].
    #[arg(long, value_name = "MODEL")]
    model: Option<String>,
    /// The terminal's UTC offset for maintenance windows, like +09:00 [default: the system's].
    #[arg(long, value_name = "±HH:MM", allow_hyphen_values = true)]
    tz: Option<String>,
    /// Another candidate download directory besides <state-dir>/downloads (repeatable); each
    /// plan downloads into the one on the volume with the most free space.
    #[arg(long = "download-dir", value_name = "DIR")]
    download_dirs: Vec<PathBuf>,
    /// A volume (a mount point, like /media/usb) on which the agent may keep its download
    /// directory, `.herd-agent-downloads`, while it is mounted (repeatable). Volumes are watched:
    /// when one appears or disappears the agent looks again for the one with the most room.
    #[arg(long = "download-volume", value_name = "DIR")]
    download_volumes: Vec<PathBuf>,
    /// Free space to keep beyond a plan's packages and unpacked product (suffixes K, M, G).
    #[arg(long, value_name = "SIZE", default_value = "8M", value_parser = parse_size)]
    space_margin: u64,
    /// Seconds an install or uninstall script may run before it is killed.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    script_timeout: u64,
    #[command(flatten)]
    hooks: crate::execute::HookArgs,
    /// One cycle, then exit: recover, enrol if needed, check in, act on the plan, send the
    /// outbox. Exit code 0 ok, 1 a plan was rolled back, 2 error.
    #[arg(long)]
    once: bool,
    /// Tests and demos: queue N `test.event` events in the outbox at start-up.
    #[arg(long, hide = true, value_name = "N")]
    emit_test_events: Option<u64>,
    /// Events per request when sending the outbox (at most 500).
    #[arg(long, hide = true, value_name = "N", default_value_t = crate::outbox::MAX_BATCH)]
    flush_batch: usize,
    /// First retry delay, in seconds, while the center is unreachable (doubles up to
    /// --retry-max, with jitter).
    #[arg(long, hide = true, value_name = "SECONDS", default_value_t = 5)]
    retry_min: u64,
    #[arg(long, hide = true, value_name = "SECONDS", default_value_t = 900)]
    retry_max: u64,
    /// Tests: renew the certificate whenever less than this many seconds of it remain (besides
    /// the usual third of its lifetime or 30 days).
    #[arg(long, hide = true, value_name = "SECONDS")]
    renew_when_left: Option<u64>,
    /// Scan files in this directory (recursively) as they are opened or written (repeatable;
    /// fanotify as root, which denies opening an infected file, else inotify), with the active
    /// product's definitions plus Herd's own signature set. Detections are quarantined into
    /// <state-dir>/quarantine and reported to the center. Off unless given.
    #[arg(long = "scan", value_name = "DIR")]
    scan_dirs: Vec<PathBuf>,
    /// Also scan every --scan directory in full every day at this time, in the terminal's
    /// time zone (--tz).
    #[arg(long, value_name = "HH:MM", requires = "scan_dirs")]
    daily_scan: Option<String>,
    /// A path (prefix) the scanner never looks at (repeatable); the state directory, the
    /// product prefix and the download directories are always excluded.
    #[arg(long = "scan-exclude", value_name = "PATH", requires = "scan_dirs")]
    scan_excludes: Vec<PathBuf>,
    /// Put the previous product back by itself when the one just activated fails this many
    /// times (fault reports about it, from `herd-agent supervise` or `herd-agent fault
    /// report`, whose program is the product's id) within --self-protect-window, and refuse
    /// that release until another is offered; 0 turns self-protection off.
    #[arg(long, value_name = "N", default_value_t = 3)]
    self_protect_after: u32,
    /// Seconds after an activation during which the product's faults are counted; a product
    /// that passes them is trusted and the previous one's kept copy removed.
    #[arg(long, value_name = "SECONDS", default_value_t = 1800)]
    self_protect_window: u64,
}

/// Enrol this terminal again, keeping its id and history, with a re-enrolment token from the
/// operator (`herd enrol-token create --reenrol ID`): after its certificate expired, or when
/// the center refuses it as replaced. Stop the running agent first.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = "Examples:
  herd-agent enrol --state-dir /var/lib/herd-agent --token-file reenrol.token")]
pub struct EnrolArgs {
    /// The state directory of the enrolled terminal.
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    /// The re-enrolment token.
    #[arg(
        long,
        value_name = "TOKEN",
        conflicts_with = "token_file",
        required_unless_present = "token_file"
    )]
    token: Option<String>,
    /// A file holding the re-enrolment token (keeps it out of the process list).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

pub fn run_enrol(args: &EnrolArgs) -> Result<u8> {
    herd_tls::install_crypto_provider();
    // Taking the state directory's lock: the running agent must be stopped first.
    let state = state::StateDir::open(&args.state_dir)?;
    let paths = state.paths.clone();
    let agent: state::AgentFile = state::load_json(&paths.agent())?.ok_or_else(|| {
        anyhow!(
            "{} holds no enrolled terminal; a new terminal enrols with `herd-agent run \
             --enrol-token TOKEN --server URL --ca FILE`",
            args.state_dir.display()
        )
    })?;
    let token = enrol::token(args.token.as_deref(), args.token_file.as_deref())?
        .ok_or_else(|| anyhow!("--token or --token-file is needed"))?;
    let ca_pem = std::fs::read_to_string(paths.ca()).map_err(|e| {
        anyhow!(
            "cannot read the center's CA certificate {}: {e}",
            paths.ca().display()
        )
    })?;
    let agent = enrol::reenrol(&paths, &agent, &ca_pem, &token)
        .map_err(|failure| failure.error.context("re-enrolment failed"))?;
    println!(
        "herd-agent: re-enrolled terminal {} (group {}) with {}; start the agent again",
        agent.terminal, agent.group, agent.server
    );
    Ok(0)
}

pub fn run(args: &RunArgs) -> Result<u8> {
    if let Some(tz) = &args.tz {
        herd_core::TzOffset::parse(tz).map_err(|e| anyhow!("--tz: {e}"))?;
    }
    herd_tls::install_crypto_provider();
    let mut agent = Agent::start(args)?;
    if args.once {
        return match agent.cycle() {
            Ok(_) => {
                agent.finish_once();
                Ok(if agent.plan_failed() { 1 } else { 0 })
            }
            Err(error) => {
                agent.note_failure(&error, None);
                Err(agent.with_outbox_note(error.into_error()))
            }
        };
    }
    let waker = Waker::new(agent.state_root())?;
    let mut scanner = agent.scan_host()?;
    let mut backoff = Backoff::new(
        Duration::from_secs(args.retry_min.max(1)),
        Duration::from_secs(args.retry_max.max(1)),
    );
    loop {
        let now = SystemTime::now();
        let detections = scanner.as_ref().map(|s| s.detections());
        let outcome = agent.cycle();
        let healthy = outcome.is_ok();
        let deadline = match outcome {
            Ok(next) => {
                if agent.return_to_preferred_if_back(SystemTime::now()) {
                    backoff.reset();
                    continue;
                }
                let mut at = clock::later(now, next.after);
                if let Some(until) = next.until {
                    at = at.min(until);
                }
                if next.soon {
                    at = at.min(clock::later(now, backoff.next_delay()));
                } else {
                    backoff.reset();
                }
                if let Some(probe) = agent.next_probe() {
                    at = at.min(probe);
                }
                at
            }
            Err(error @ CycleError::Fatal(_)) => {
                // Said in status.json too, for `herd-agent status`: the agent stops here.
                agent.note_failure(&error, None);
                return Err(error.into_error());
            }
            Err(error) => {
                if agent.fail_over_if_silent(&error, SystemTime::now()) {
                    eprintln!("herd-agent: {:#}", error.into_error());
                    backoff.reset();
                    continue;
                }
                let mut delay = backoff.next_delay();
                // Not later than the moment the silence is long enough to fail over.
                if let Some(failover) = agent.failover_at() {
                    let until = failover.duration_since(now).unwrap_or_default();
                    delay = delay.min(until.max(Duration::from_secs(1)));
                }
                agent.note_failure(&error, Some(clock::later(now, delay)));
                eprintln!(
                    "herd-agent: {:#}; trying again in {:.0} s",
                    agent.with_outbox_note(error.into_error()),
                    delay.as_secs_f64().max(1.0)
                );
                clock::later(now, delay)
            }
        };
        agent.set_next_checkin(deadline);
        if let Some(scanner) = scanner.as_mut()
            && let Err(e) = scanner.keep_current()
        {
            eprintln!("herd-agent: warning: the scanner: {e:#}");
        }
        waker.drain();
        // An answer written while the agent worked was drained with its own writes.
        if healthy && agent.consent_answer_waiting() {
            continue;
        }
        // Likewise a detection queued while the agent worked: sent now, not at the deadline.
        if healthy && scanner.as_ref().map(|s| s.detections()) != detections {
            continue;
        }
        loop {
            match waker.sleep_until(deadline, agent.push(), agent.mounts())? {
                Wake::Deadline | Wake::Consent => break,
                // The scanner queued a detection: send it now.
                Wake::Detection => break,
                Wake::Push => {
                    agent.say("the upstream announced a change; checking in now");
                    break;
                }
                // Where downloads go may have changed: a plan deferred for want of space is
                // tried again at once; otherwise the agent sleeps on until its deadline.
                Wake::Volumes => {
                    if agent.volumes_changed() {
                        break;
                    }
                }
                Wake::Stop(signal) => {
                    agent.say(&format!("stopping ({signal})"));
                    return Ok(0);
                }
            }
        }
    }
}
