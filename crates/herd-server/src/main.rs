//! `herd`, the server-side program: `herd serve` (the center), `herd plan`, configuration and
//! administration commands. Glue only: it reads files and flags, calls the libraries, prints,
//! and decides the exit code in one place.

mod admin;
mod package_cmd;
mod plan_cmd;
mod serve_cmd;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// mimalloc rather than glibc's malloc: under `herd sim protect` (a site answering thousands of
/// woken terminals, each request a few hundred small allocations across hyper, axum, serde and
/// sqlx) glibc's `_int_malloc`, `unlink_chunk`, `malloc_consolidate` and `free` were about a
/// fifth of every site's and the simulator's CPU. The agent keeps the system allocator: its
/// footprint is what it is measured on, and it allocates little.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Herd keeps a fleet of devices covered against every dangerous threat, whichever antivirus
/// vendor covers it first.
///
/// Start with `herd plan --catalog examples/seed/catalog.json --terminal examples/seed/terminals`
/// to see what Herd would do for the worked example of the specification.
#[derive(Debug, Parser)]
#[command(name = "herd", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Serve(serve_cmd::ServeArgs),
    Plan(plan_cmd::PlanArgs),
    Demo(herd_lab::demo::DemoArgs),
    Sim(herd_lab::sim::SimArgs),
    /// Build or inspect vaccine packages (`archive` format).
    #[command(subcommand)]
    Package(package_cmd::PackageCommand),
    /// Print or check the `herd serve` configuration file.
    #[command(subcommand)]
    Config(serve_cmd::ConfigCommand),
    #[command(flatten)]
    Admin(admin::AdminCommand),
    Completions(herd_cli_docs::CompletionsArgs),
    Man(herd_cli_docs::ManArgs),
}

/// How a command ended, mapped to the process exit code in `main` and nowhere else.
#[derive(Debug)]
pub enum Outcome {
    /// Everything worked.
    Success,
    /// Some input was refused (the errors were printed); exit code 1.
    InvalidInput,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve_cmd::run(args),
        Command::Plan(args) => plan_cmd::run(args),
        Command::Demo(args) => herd_lab::demo::run(args).map(|passed| {
            if passed {
                Outcome::Success
            } else {
                Outcome::InvalidInput
            }
        }),
        Command::Sim(args) => herd_lab::sim::run(args).map(|()| Outcome::Success),
        Command::Package(command) => package_cmd::run(command),
        Command::Config(command) => serve_cmd::config(command),
        Command::Admin(command) => admin::run(command),
        Command::Completions(args) => herd_cli_docs::completions(Cli::command(), &args)
            .map(|()| Outcome::Success)
            .map_err(Into::into),
        Command::Man(args) => herd_cli_docs::man(Cli::command(), &args)
            .map(|()| Outcome::Success)
            .map_err(Into::into),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::InvalidInput) => ExitCode::from(1),
        Err(err) => {
            eprintln!("herd: {err:#}");
            ExitCode::from(2)
        }
    }
}
