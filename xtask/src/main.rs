//! `cargo xtask`: Herd's project automation — the shipped benchmarks, tidy checks and the
//! Debian packages.
//!
//! Benchmarks run in release mode (the `xtask` alias builds with `--release`) and report
//! medians over several runs plus peak memory, never a single timing.

mod bench_delta;
mod bench_feed;
mod bench_onaccess;
mod bench_planner;
mod bench_scan;
mod bench_scan_load;
mod bench_scan_real;
mod bench_unpack;
mod deb;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Herd's project automation: benchmarks, checks and packages"
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
    /// Build the Debian packages `herd` and `herd-agent` (release binaries, systemd units,
    /// maintainer scripts, man pages, completions) with dpkg-deb.
    Deb(deb::Options),
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Plans for a generated fleet against a generated catalog (SPEC §8: 1,000,000 terminals,
    /// 100,000 threats × 20 products, under 1 s on one core).
    Planner(bench_planner::Options),
    /// Definition deltas between two releases' packages: size against the full package and
    /// time to make and apply (SPEC §8: under 2 % of the full set for a 1 % change).
    Delta(bench_delta::Options),
    /// Unpacking a package with the agent's checked reader against `tar -xzf` of the same file.
    Unpack(bench_unpack::Options),
    /// Publishing a large vendor feed to a real center, merged with another vendor's (the
    /// checks must stay near-linear in the feed's size).
    Feed(bench_feed::Options),
    /// The scan engine against clamscan on the same signatures and corpus (SPEC §8).
    Scan {
        /// Options passed to the scan benchmark; see `cargo xtask bench scan -- --help`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Loading databases of ClamAV's real size (4,000,000 hash signatures, and a mixed set):
    /// herd-agent's mapped index against clamscan, load time and peak memory.
    ScanLoad(bench_scan_load::Options),
    /// The latency on-access scanning adds to opening a file (`herd-agent watch`, fanotify;
    /// needs root): no watcher, first access, cached verdict, a file open for writing.
    Onaccess(bench_onaccess::Options),
}

fn main() -> Result<()> {
    match Args::parse().command {
        Command::Bench(Bench::Onaccess(options)) => bench_onaccess::run(options),
        Command::Bench(Bench::Delta(options)) => bench_delta::run(options),
        Command::Bench(Bench::Planner(options)) => bench_planner::run(options),
        Command::Bench(Bench::Feed(options)) => bench_feed::run(options),
        Command::Bench(Bench::Scan { args }) => bench_scan::run(args),
        Command::Bench(Bench::Unpack(options)) => bench_unpack::run(options),
        Command::Bench(Bench::ScanLoad(options)) => bench_scan_load::run(options),
        Command::Deb(options) => deb::run_deb(options),
    }
}

/// Peak resident memory of this process so far, in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_bytes("self", "VmHWM:")
}

/// Peak resident memory of another running process so far, in bytes (its `VmHWM`), if known.
pub fn process_peak_rss_bytes(pid: u32) -> Option<u64> {
    proc_status_bytes(&pid.to_string(), "VmHWM:")
}

/// Resident memory of this process now, in bytes (Linux `VmRSS`), if known.
pub fn rss_bytes() -> Option<u64> {
    proc_status_bytes("self", "VmRSS:")
}

fn proc_status_bytes(process: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{process}/status")).ok()?;
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
