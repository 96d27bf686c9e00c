//! `herd-agent`, the program on each terminal: a thin dispatcher to one module per command —
//! `run` (enrolment, check-ins, plans, the outbox), `status`, `consent`, `scan`, `watch`,
//! `quarantine`, `apply`, `supervise`, `fault`, and `completions` and `man` (from herd-cli-docs). The exit code is
//! decided here, in one place, from what each command returns.

#[cfg(test)]
mod crash_child;
mod execute;
mod onaccess;
mod outbox;
mod quarantine;
mod run;
mod samples;
mod scan;
mod scan_cache;
mod signatures;
mod supervise;
mod trust;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// The Herd agent: keeps this terminal's antivirus product covering every dangerous threat.
#[derive(Debug, Parser)]
#[command(name = "herd-agent", version)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
}

// Parsed once at start-up: the size of the largest variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Enrol once, then check in at start-up and at the center's interval, carry out plans
    /// (with consent and maintenance windows where policy asks), and report through a durable
    /// outbox. `--once` does one cycle and exits.
    Run(run::RunArgs),
    /// Show what this terminal runs, its plan, what it waits for, and its outbox.
    Status(run::StatusArgs),
    /// Enrol this terminal again with a re-enrolment token, keeping its id and history (after
    /// its certificate expired or the center refused it).
    Enrol(run::EnrolArgs),
    /// Answer a plan that waits for your consent.
    #[command(subcommand)]
    Consent(run::ConsentCommand),
    /// Scan files and directories with ClamAV-format signatures (clamscan-compatible output).
    Scan(scan::ScanArgs),
    /// Scan on access (fanotify as root: infected opens are denied; else inotify after writes)
    /// and optionally on a daily schedule, until stopped.
    Watch(onaccess::WatchArgs),
    /// List, restore or delete files moved into quarantine by `scan --quarantine`.
    #[command(subcommand)]
    Quarantine(quarantine::QuarantineCommand),
    /// Carry out a plan file offline as a transaction, fetching packages from a directory of
    /// `<sha256>` files; prints the plan report as JSON.
    Apply(execute::ApplyArgs),
    Completions(herd_cli_docs::CompletionsArgs),
    Man(herd_cli_docs::ManArgs),
    /// Start and watch designated programs: crashes, abnormal exits, restart loops and hangs
    /// are reported through the outbox, and the center's verdicts acted on (a known cause
    /// shown, a failing program replaced by an approved alternative), until stopped.
    Supervise(supervise::SuperviseArgs),
    /// Report a program's fault (for programs that detect their own).
    #[command(subcommand)]
    Fault(supervise::FaultCommand),
    /// Send a file to the center's analysts as a sample (neutralised, through the outbox).
    Submit(samples::SubmitArgs),
    /// Show the messages the operators sent to this terminal's user.
    Messages(run::MessagesArgs),
    /// Send your answer or status to the operators (through the outbox: it leaves at the next
    /// check-in, or when the center is reachable again).
    Message(run::MessageArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        None => {
            eprintln!("herd-agent: nothing to do; see `herd-agent --help`");
            return ExitCode::from(2);
        }
        Some(Command::Run(args)) => run::run(&args),
        Some(Command::Status(args)) => run::run_status(&args),
        Some(Command::Enrol(args)) => run::run_enrol(&args),
        Some(Command::Consent(command)) => run::run_consent(&command),
        Some(Command::Scan(args)) => scan::run(&args),
        Some(Command::Watch(args)) => onaccess::run(&args),
        Some(Command::Quarantine(command)) => quarantine::run(&command).map(|()| 0),
        Some(Command::Apply(args)) => execute::run_apply(&args),
        Some(Command::Supervise(args)) => supervise::run(&args),
        Some(Command::Fault(command)) => supervise::run_fault(&command),
        Some(Command::Completions(args)) => herd_cli_docs::completions(Args::command(), &args)
            .map(|()| 0)
            .map_err(Into::into),
        Some(Command::Man(args)) => herd_cli_docs::man(Args::command(), &args)
            .map(|()| 0)
            .map_err(Into::into),
        Some(Command::Submit(args)) => samples::run_submit(&args),
        Some(Command::Messages(args)) => run::run_messages(&args),
        Some(Command::Message(args)) => run::run_message(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("herd-agent: {error:#}");
            ExitCode::from(2)
        }
    }
}
