//! `cargo xtask bench feed`: what publishing a large vendor feed costs a real `herd serve`,
//! end to end through its API: parse and validate the feed alone, check its scope, merge and
//! validate it with the other vendors' feeds inside the store's transaction, store it, and
//! list the packages the center lacks. The work must stay near-linear in the feed's size
//! (threats, coverage statements, packages), so doubling the feed about doubles the time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use herd_lab::harness::{CenterProcess, CenterSpec};
use herd_lab::world::{Shape, catalog};

#[derive(Debug, Args)]
pub struct Options {
    /// Threats, each listed by both vendors' feeds.
    #[arg(long, default_value_t = 50_000)]
    threats: usize,
    /// Products, two per vendor; each covers (nearly) every threat.
    #[arg(long, default_value_t = 4)]
    products: usize,
    /// Releases per product, each with a package per platform.
    #[arg(long, default_value_t = 1_000)]
    releases: usize,
    /// Publishes measured (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    #[arg(long, default_value_t = 2000_11_10)]
    seed: u64,
}

pub fn run(o: Options) -> Result<()> {
    let shape = Shape {
        threats: o.threats,
        products: o.products,
        releases: o.releases,
        seed: o.seed,
    };
    let world = catalog(&shape, "");
    let feeds = herd_proto::merge::split_by_vendor(&world);
    let packages: usize = world.releases.iter().map(|r| r.packages.len()).sum();
    println!(
        "feeds: {} vendors; {} threats, {} coverage statements, {} releases with {} packages in all",
        feeds.len(),
        world.threats.len(),
        world.coverage.len(),
        world.releases.len(),
        packages
    );
    let herd = build_herd()?;
    let dir = std::env::temp_dir().join("herd-bench-feed");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("herd.toml");
    std::fs::write(&config, "max_feed_bytes = 4294967296\n")?;
    let spec = CenterSpec::new(&herd, &dir.join("data"))
        .log(&dir.join("herd.log"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", Some("warn"));
    let mut center = CenterProcess::start(&spec)?;
    let operator = center.operator()?;
    let (first_vendor, first) = &feeds[0];
    let (last_vendor, last) = &feeds[feeds.len() - 1];
    let first_bytes = serde_json::to_vec(first)?;
    let started = Instant::now();
    operator
        .publish_feed(first_vendor, &first_bytes)
        .with_context(|| format!("publishing {first_vendor}'s feed"))?;
    println!(
        "first feed ({:.1} MB, alone): {:.3} s",
        first_bytes.len() as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    let mut times = Vec::new();
    for run in 0..o.runs {
        // A different feed each run (one threat renamed), so every publish does the work.
        let mut feed = last.clone();
        feed.threats[0].name = format!("renamed for run {run}");
        let bytes = serde_json::to_vec(&feed)?;
        let started = Instant::now();
        let answer = operator
            .publish_feed(last_vendor, &bytes)
            .with_context(|| format!("publishing {last_vendor}'s feed"))?;
        let seconds = started.elapsed().as_secs_f64();
        if !answer.changed {
            bail!("run {run}: the feed did not change");
        }
        println!(
            "run {}: {last_vendor}'s feed ({:.1} MB) merged with {first_vendor}'s: {seconds:.3} s ({} packages missing)",
            run + 1,
            bytes.len() as f64 / 1e6,
            answer.missing_packages.len()
        );
        times.push(seconds);
    }
    center.stop()?;
    times.sort_by(f64::total_cmp);
    println!(
        "publish a feed of {} threats: median {:.3} s over {} runs (min {:.3}, max {:.3})",
        o.threats,
        times[times.len() / 2],
        times.len(),
        times[0],
        times[times.len() - 1]
    );
    Ok(())
}

fn build_herd() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "herd-server",
            "--bin",
            "herd",
        ])
        .status()?;
    if !status.success() {
        bail!("building herd failed");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is in the workspace");
    Ok(std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("release/herd"))
}
