//! `cargo xtask`: Herd's project automation — the shipped benchmarks and tidy checks.
//!
//! Benchmarks run in release mode (the `xtask` alias builds with `--release`) and report
//! medians over several runs plus peak memory, never a single timing.

mod bench_feed;
mod bench_planner;
mod bench_scan;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Herd's project automation: benchmarks and checks"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one of the shipped benchmarks.
    #[command(subcommand)]
    Bench(Bench),
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Plans for a generated fleet against a generated catalog (SPEC §8: 1,000,000 terminals,
    /// 100,000 threats × 20 products, under 1 s on one core).
    Planner(bench_planner::Options),
    /// Publishing a large vendor feed to a real center, merged with another vendor's (the
    /// checks must stay near-linear in the feed's size).
    Feed(bench_feed::Options),
    /// The scan engine against clamscan on the same signatures and corpus (SPEC §8).
    Scan {
        /// Options passed to the scan benchmark; see `cargo xtask bench scan -- --help`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    match Args::parse().command {
        Command::Bench(Bench::Planner(options)) => bench_planner::run(options),
        Command::Bench(Bench::Feed(options)) => bench_feed::run(options),
        Command::Bench(Bench::Scan { args }) => bench_scan::run(args),
    }
}

/// Peak resident memory of this process so far, in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_bytes("VmHWM:")
}

/// Resident memory of this process now, in bytes (Linux `VmRSS`), if known.
pub fn rss_bytes() -> Option<u64> {
    proc_status_bytes("VmRSS:")
}

fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The median of some durations in seconds (the mean of the middle two for an even count).
pub fn median(mut samples: Vec<f64>) -> f64 {
    assert!(!samples.is_empty(), "median of no samples");
    samples.sort_by(f64::total_cmp);
    let mid = samples.len() / 2;
    if samples.len() % 2 == 1 {
        samples[mid]
    } else {
        (samples[mid - 1] + samples[mid]) / 2.0
    }
}
