//! `herd-agent apply`: carries out a plan file offline, fetching packages from a directory of
//! `<sha256>` files, and prints the `PlanReport` JSON (one line per report: first the report
//! of an interrupted plan it recovered, if any, then the plan's own). Exit code 0 when the
//! last report says `succeeded`, 1 when the plan was rolled back or deferred, 2 on errors.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use herd_proto::api::{PlanReport, ReportOutcome};
use herd_proto::plan::PlanDoc;

use super::{DirFetcher, Executor, ExecutorConfig, plan_id};
use crate::scan::parse_size;

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The plan to carry out, as `herd plan` prints it (one plan, JSON).
    #[arg(value_name = "PLAN.json", required_unless_present = "recover_only")]
    plan: Option<PathBuf>,
    /// Directory holding the packages, each in a file named by its SHA-256 (lowercase hex).
    #[arg(long, value_name = "DIR", required_unless_present = "recover_only")]
    packages: Option<PathBuf>,
    /// The product prefix: products/<product>/<version> and the `current` link live here.
    #[arg(long, value_name = "DIR")]
    prefix: PathBuf,
    /// The agent's state: the transaction journal, the report log, downloads.
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    /// Another candidate download directory besides <state-dir>/downloads (repeatable); the
    /// one on the volume with the most free space is used.
    #[arg(long = "download-dir", value_name = "DIR")]
    download_dirs: Vec<PathBuf>,
    /// Free space to keep beyond the packages and the unpacked product (suffixes K, M, G).
    #[arg(long, value_name = "SIZE", default_value = "8M", value_parser = parse_size)]
    space_margin: u64,
    /// Seconds an install or uninstall script may run before it is killed.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    script_timeout: u64,
    #[command(flatten)]
    hooks: crate::execute::HookArgs,
    /// The plan's id in the report (default: the SHA-256 of the plan's JSON, as the center's).
    #[arg(long, value_name = "ID")]
    plan_id: Option<String>,
    /// Only finish or roll back an interrupted plan, then stop.
    #[arg(long)]
    recover_only: bool,
    /// Tests: throttle the package source to this many bytes per second.
    #[arg(long, hide = true, value_name = "BYTES")]
    fetch_rate: Option<u64>,
    /// Tests: the package source stops after this many bytes per download.
    #[arg(long, hide = true, value_name = "BYTES")]
    fetch_interrupt_after: Option<u64>,
}

pub fn run(args: &ApplyArgs) -> Result<u8> {
    let mut config = ExecutorConfig::new(&args.prefix, &args.state_dir);
    config
        .download_dirs
        .extend(args.download_dirs.iter().cloned());
    config.space_margin = args.space_margin;
    config.script_timeout = Duration::from_secs(args.script_timeout);
    config.hooks = args.hooks.policy().map_err(anyhow::Error::msg)?;
    let executor = Executor::new(config)?;

    let recovered = executor.recover()?;
    if let Some(report) = &recovered {
        print(report)?;
    }
    if args.recover_only {
        return Ok(0);
    }
    let (Some(plan_path), Some(packages)) = (&args.plan, &args.packages) else {
        anyhow::bail!("a plan file and --packages are needed unless --recover-only is given");
    };
    let text =
        std::fs::read(plan_path).with_context(|| format!("cannot read {}", plan_path.display()))?;
    let plan: PlanDoc = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a plan", plan_path.display()))?;
    let id = args.plan_id.clone().unwrap_or_else(|| plan_id(&plan));
    if let Some(report) = &recovered
        && report.plan_id == id
        && report.outcome == ReportOutcome::Succeeded
    {
        // The recovery finished this very plan.
        return Ok(0);
    }
    let mut fetcher = DirFetcher::new(packages);
    fetcher.bytes_per_second = args.fetch_rate;
    fetcher.interrupt_after = args.fetch_interrupt_after;
    let report = executor.execute(&id, &plan, &fetcher)?;
    print(&report)?;
    if report.outcome == ReportOutcome::Deferred
        && let Some(message) = &report.message
    {
        eprintln!("herd-agent: warning: {message}");
    }
    Ok(match report.outcome {
        ReportOutcome::Succeeded => 0,
        _ => 1,
    })
}

fn print(report: &PlanReport) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, report)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}
