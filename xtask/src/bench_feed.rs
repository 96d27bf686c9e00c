//! `cargo xtask bench feed`: what publishing a large vendor feed costs a real `herd serve`,
//! end to end through its API: parse and validate the feed alone, check its scope, merge and
//! validate it with the other vendors' feeds inside the store's transaction, store it, and
//! list the packages the center lacks. The work must stay near-linear in the feed's size
//! (threats, coverage statements, packages), so doubling the feed about doubles the time.
//! It also measures how long after a publish the center serves signed metadata listing the
//! feed's packages (its TUF repository: the vendor's role, the snapshot and the timestamp are
//! signed in the background), and how large the vendor's role document is.

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
    let mut signed_after = Vec::new();
    let role = herd_proto::distribution::vendor_role(last_vendor);
    for run in 0..o.runs {
        let before = role_version(&center, &role)?;
        // A different feed each run (one threat renamed, one package's size changed), so every
        // publish does the work and the vendor's signed role changes.
        let mut feed = last.clone();
        feed.threats[0].name = format!("renamed for run {run}");
        if let Some(package) = feed
            .releases
            .iter_mut()
            .flat_map(|r| &mut r.packages)
            .next()
        {
            package.size += run as u64 + 1;
        }
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
        let signed = wait_for_role(&center, &role, before)?;
        println!("  signed metadata listing it served {signed:.3} s after the answer");
        signed_after.push(signed);
    }
    let role_bytes = role_version(&center, &role)?
        .map(|version| tuf_get(&center, &format!("{version}.{role}.json")))
        .transpose()?
        .map_or(0, |doc| doc.len());
    center.stop()?;
    signed_after.sort_by(f64::total_cmp);
    println!(
        "signed metadata served after a publish: median {:.3} s; {role}'s document {:.1} MB \
         (agents read at most {:.1} MB of one role)",
        signed_after[signed_after.len() / 2],
        role_bytes as f64 / 1e6,
        2_000_000f64 / 1e6
    );
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

/// A file of the center's TUF repository (`/tuf/metadata/NAME`), fetched with curl.
fn tuf_get(center: &CenterProcess, name: &str) -> Result<Vec<u8>> {
    let out = Command::new("curl")
        .args(["-sSf", "--cacert"])
        .arg(center.data_dir.join("ca.pem"))
        .arg(format!("{}/tuf/metadata/{name}", center.url))
        .output()
        .context("running curl")?;
    if !out.status.success() {
        bail!(
            "GET /tuf/metadata/{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

/// The version of `role` the served snapshot names, if any.
fn role_version(center: &CenterProcess, role: &str) -> Result<Option<u64>> {
    let signed = |bytes: Vec<u8>| -> Result<serde_json::Value> {
        Ok(serde_json::from_slice::<serde_json::Value>(&bytes)?["signed"].clone())
    };
    let timestamp = signed(tuf_get(center, "timestamp.json")?)?;
    let snapshot = timestamp["meta"]["snapshot.json"]["version"]
        .as_u64()
        .context("the timestamp names no snapshot")?;
    let snapshot = signed(tuf_get(center, &format!("{snapshot}.snapshot.json"))?)?;
    Ok(snapshot["meta"][format!("{role}.json")]["version"].as_u64())
}

/// Seconds until the snapshot names a version of `role` other than `before`.
fn wait_for_role(center: &CenterProcess, role: &str, before: Option<u64>) -> Result<f64> {
    let started = Instant::now();
    loop {
        if role_version(center, role)? != before {
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed().as_secs() > 600 {
            bail!("{role} was not signed again within 10 minutes of the publish");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
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
