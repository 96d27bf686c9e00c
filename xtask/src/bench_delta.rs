//! `cargo xtask bench delta`: the size and speed of a definitions delta (SPEC §3.4, §8: under
//! 2 % of the full set for a 1 % change).
//!
//! Generates a definitions set with `bench scan`'s generator (`--hdb` MD5 lines and `--ndb`
//! body signatures, 100,000 in all by default), builds a real package of it with
//! `herd_package::build_with` as `herd package build` does (definitions checked to detect the
//! test pattern), changes `--change` percent of the signatures as an update does (half of that
//! removed, as many added: half of the new ones in the middle of each file, half at its end),
//! builds the next release's package, and measures `herd_delta::diff` between the two
//! packages' contents (their uncompressed tars, `herd_package::content_of`) and
//! `herd_delta::apply` of it: the delta's size against the full `.tar.gz` and the tar, and the
//! median time over `--runs` runs of each, with the peak RSS while they ran.
//!
//! Everything is generated under a fresh directory in `$TMPDIR`, removed at the end.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use herd_lab::world::Rng;
use herd_package::{Detection, PackageSpec, build_with, content_of};

use crate::bench_scan::{body_sig, hdb_line};
use crate::{median, peak_rss_bytes, rss_bytes};

#[derive(Debug, clap::Args)]
pub struct Options {
    /// `.hdb` (MD5) signatures in the set.
    #[arg(long, default_value_t = 90_000)]
    hdb: usize,
    /// `.ndb` (body) signatures in the set.
    #[arg(long, default_value_t = 10_000)]
    ndb: usize,
    /// Percent of the signatures the update changes: half of it removed, as many added.
    #[arg(long, default_value_t = 1.0)]
    change: f64,
    /// Timed runs of diff and of apply (medians are reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    #[arg(long, default_value_t = 11)]
    seed: u64,
}

/// The bar of SPEC §8: a delta under 2 % of the full package for a 1 % change.
const BAR_PERCENT: f64 = 2.0;

/// Content larger than this is not read (the agent's own bound would be of this order).
const MAX_CONTENT: u64 = 4 << 30;

pub fn run(options: Options) -> Result<()> {
    if !(0.0..=100.0).contains(&options.change) || options.runs == 0 {
        bail!("--change must be a percentage (0 to 100) and --runs at least 1");
    }
    let work = std::env::temp_dir().join(format!("herd-bench-delta-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = bench(&options, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// One definitions file as lines, and how to make a new line for it.
struct DefinitionsFile {
    name: &'static str,
    lines: Vec<String>,
    new_line: fn(usize, &mut Rng) -> String,
}

fn ndb_line(i: usize, rng: &mut Rng) -> String {
    format!("{}\n", body_sig(i, 16, rng).line)
}

/// Removes `count` lines at random and adds as many new ones, half at random places and half
/// at the end, as a real update does (new signatures are mostly appended, old ones retired
/// anywhere). New lines are numbered on from `next_id`.
fn update(
    lines: &mut Vec<String>,
    count: usize,
    next_id: usize,
    new_line: fn(usize, &mut Rng) -> String,
    rng: &mut Rng,
) {
    for _ in 0..count.min(lines.len()) {
        let at = rng.below(lines.len() as u64) as usize;
        lines.remove(at);
    }
    for k in 0..count {
        let line = new_line(next_id + k, rng);
        if k % 2 == 0 {
            let at = rng.below(lines.len() as u64 + 1) as usize;
            lines.insert(at, line);
        } else {
            lines.push(line);
        }
    }
}

/// Writes the files of one release under `dir` and builds its package there.
fn release(
    dir: &Path,
    files: &[DefinitionsFile],
    test_pattern: &[u8],
    version: &str,
    seq: u64,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let mut definitions = Vec::new();
    for file in files {
        let path = dir.join(file.name);
        std::fs::write(&path, file.lines.concat())?;
        definitions.push(path);
    }
    let test_pattern_path = dir.join("test-pattern.bin");
    std::fs::write(&test_pattern_path, test_pattern)?;
    let package = dir.join(format!("bench-vaccine-{version}.tar.gz"));
    let spec = PackageSpec {
        product: "bench-vaccine".into(),
        vendor: "bench".into(),
        version: version.into(),
        seq,
        pattern: format!("bench-{seq}"),
        definitions,
        test_pattern: test_pattern_path,
        post_install: None,
        pre_uninstall: None,
        platforms: vec!["pc".into()],
    };
    build_with(&spec, &package, Detection::Required)
        .with_context(|| format!("building release {version}"))?;
    Ok(package)
}

/// Resets this process's peak RSS to its current RSS (Linux: writing 5 to
/// `/proc/self/clear_refs`) and returns that, so the next `peak_rss_bytes` minus it is what ran
/// in between added at its peak.
fn reset_peak_rss() -> Option<u64> {
    // glibc keeps freed memory mapped and hands it out again without the RSS rising; returned
    // to the system first, what the measured code allocates shows in the peak.
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim only releases free heap memory; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    rss_bytes()
}

/// How far the peak RSS rose over `base` since `reset_peak_rss`, in words.
fn peak_increase(base: Option<u64>) -> String {
    match (base, peak_rss_bytes()) {
        (Some(base), Some(peak)) => format!(
            "peak RSS +{:.1} MB over the {:.1} MB held before",
            peak.saturating_sub(base) as f64 / 1e6,
            base as f64 / 1e6
        ),
        _ => "peak RSS unknown".to_owned(),
    }
}

fn bench(options: &Options, work: &Path) -> Result<()> {
    let mut rng = Rng(options.seed);
    let mut files = [
        DefinitionsFile {
            name: "bench.hdb",
            lines: Vec::new(),
            new_line: hdb_line,
        },
        DefinitionsFile {
            name: "bench.ndb",
            lines: Vec::new(),
            new_line: ndb_line,
        },
    ];
    let counts = [options.hdb, options.ndb];
    // The test pattern is an instance of the first body signature, so the built package
    // verifies as an agent would check it.
    let first_body = body_sig(0, 16, &mut rng);
    files[1].lines.push(format!("{}\n", first_body.line));
    for (file, &count) in files.iter_mut().zip(&counts) {
        while file.lines.len() < count {
            let i = file.lines.len();
            file.lines.push((file.new_line)(i, &mut rng));
        }
    }
    let total: usize = counts.iter().sum();
    eprintln!("building release 1.0 ({total} signatures) …");
    let old_package = release(&work.join("1.0"), &files, &first_body.instance, "1.0", 1)?;

    let mut changed_total = 0;
    for (file, &count) in files.iter_mut().zip(&counts) {
        // Half of the change removed, as many added; the first body signature stays (the
        // test pattern's).
        let changed = (count as f64 * options.change / 200.0).round() as usize;
        let mut kept = file.lines.split_off(usize::from(file.name == "bench.ndb"));
        update(&mut kept, changed, count, file.new_line, &mut rng);
        file.lines.append(&mut kept);
        changed_total += changed;
    }
    eprintln!("building release 1.1 …");
    let new_package = release(&work.join("1.1"), &files, &first_body.instance, "1.1", 2)?;

    let read = |path: &Path| -> Result<Vec<u8>> {
        let file = std::fs::File::open(path)?;
        Ok(content_of(file, MAX_CONTENT)?)
    };
    let (old, new) = (read(&old_package)?, read(&new_package)?);
    let package_size = std::fs::metadata(&new_package)?.len();
    // Only the two contents stay in memory while diff and apply are measured.
    drop(files);

    let mut delta = Vec::new();
    let mut diff_secs = Vec::new();
    let base = reset_peak_rss();
    for _ in 0..options.runs {
        let start = Instant::now();
        delta = herd_delta::diff(&old, &new);
        diff_secs.push(start.elapsed().as_secs_f64());
    }
    let diff_peak = peak_increase(base);

    let mut apply_secs = Vec::new();
    let base = reset_peak_rss();
    for _ in 0..options.runs {
        let start = Instant::now();
        let applied = herd_delta::apply(&old, &delta, MAX_CONTENT)?;
        apply_secs.push(start.elapsed().as_secs_f64());
        if applied != new {
            bail!("the applied delta is not the new content");
        }
    }
    let apply_peak = peak_increase(base);

    let percent = |part: usize, whole: u64| part as f64 * 100.0 / whole as f64;
    let delta_of_package = percent(delta.len(), package_size);
    println!(
        "definitions delta: {total} signatures ({} .hdb, {} .ndb), {} % changed ({changed_total} removed, {changed_total} added)",
        options.hdb, options.ndb, options.change
    );
    println!(
        "{:<34}{:>14}{:>14}{:>10}",
        "", "bytes", "of .tar.gz", "of tar"
    );
    println!("{:<34}{:>14}", "new release, full .tar.gz", package_size);
    println!("{:<34}{:>14}", "new release, content (tar)", new.len());
    println!(
        "{:<34}{:>14}{:>13.3} %{:>8.3} %",
        "delta",
        delta.len(),
        delta_of_package,
        percent(delta.len(), new.len() as u64)
    );
    println!(
        "{:<34}{:>13.3} s   {diff_peak}",
        format!("diff, median of {}", options.runs),
        median(diff_secs),
    );
    println!(
        "{:<34}{:>13.3} s   {apply_peak}",
        format!("apply, median of {}", options.runs),
        median(apply_secs),
    );
    let verdict = if options.change > 1.0 {
        "not judged (it is for a change of 1 % or less)"
    } else if delta_of_package < BAR_PERCENT {
        "met"
    } else {
        "NOT met"
    };
    println!(
        "bar (SPEC §8, for a 1 % change): delta under {BAR_PERCENT} % of the full .tar.gz: {verdict}"
    );
    Ok(())
}
