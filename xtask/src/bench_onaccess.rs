//! `cargo xtask bench onaccess`: what on-access scanning (`herd-agent watch`, fanotify) adds to
//! opening a file. Not a test of detection: every timed file is clean.
//!
//! Copies a corpus of real files (by default 3,000, a third each from `/usr/bin`, `/usr/lib` and
//! `/usr/share/doc`, picked evenly from each sorted tree, at most 16 MB each) under
//! `--dir`/`herd-bench-onaccess` (default `$TMPDIR`, removed at the end), and generates the
//! signatures `bench scan` generates (100,000 `.hdb` with random sizes up to 5 MB, 10,000 `.ndb`
//! body signatures; `--hsb` writes the hashes as SHA-256 `.hsb`, the format of Herd's own set)
//! plus the hash of one planted file, whose denied open shows that the watcher is answering.
//! Then, in each of several runs, it times from this process, on one thread, open + read of
//! the whole file + close of every corpus file:
//! - with no watcher (the baseline);
//! - with a fresh release `herd-agent watch --mode fanotify` on the corpus: the first access
//!   (each file scanned before its open returns) and the second (the verdict cached);
//! - for a sample of files held open for writing by another process, whose verdicts are never
//!   cached, so each open is scanned.
//!
//! The page cache is warm throughout: every file is read once before the runs, and caches are
//! not dropped, because this machine is shared and dropping them slows every other process on
//! it; so the figures are the scanning cost, not disk latency.
//! Reported: per state, the median over the runs of each run's median and 99th percentile,
//! their ratio to the same run's baseline, medians by file size, and the watcher's resident
//! memory: idle (signatures loaded, before the timed opens) and peak. Needs root, as fanotify
//! permission events do; refuses otherwise.

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use herd_lab::world::Rng;
use herd_scan::walk::{self, Event};
use md5::{Digest, Md5};
use sha2::Sha256;

use crate::bench_scan::{body_signatures, build_agent, hdb_text, hex, ndb_text, warm};
use crate::{median, process_peak_rss_bytes};

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Parent of the working directory `herd-bench-onaccess` (corpus, signatures, watcher
    /// logs), which is emptied at the start and removed at the end [default: $TMPDIR].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Files copied into the corpus, a third from each of /usr/bin, /usr/lib, /usr/share/doc.
    #[arg(long, default_value_t = 3000)]
    files: usize,
    /// Larger files are not copied (the watcher's --max-filesize is 100 MB).
    #[arg(long, value_name = "MB", default_value_t = 16)]
    max_file_mb: u64,
    /// Corpus files (an even sample) also opened while another process holds them open for
    /// writing, so no verdict is cached.
    #[arg(long, default_value_t = 200)]
    held: usize,
    /// Timed runs, each with a fresh watcher; medians are reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// The watcher's `--workers`.
    #[arg(long, default_value_t = 4)]
    workers: u8,
    /// Hash signatures (`.hdb` MD5, or `.hsb` SHA-256 with `--hsb`).
    #[arg(long, default_value_t = 100_000)]
    hdb: usize,
    /// Write the hash signatures as SHA-256 (`.hsb`, the format of Herd's own set, which every
    /// scanning agent loads) instead of MD5 (`.hdb`).
    #[arg(long)]
    hsb: bool,
    /// `.ndb` signatures.
    #[arg(long, default_value_t = 10_000)]
    ndb: usize,
    /// Seed of the generated signatures.
    #[arg(long, default_value_t = 5)]
    seed: u64,
    /// Use this herd-agent binary instead of building the release one.
    #[arg(long, value_name = "PATH")]
    agent: Option<PathBuf>,
}

/// Where the corpus comes from, and the directory each source's copies go to.
const SOURCES: [(&str, &str); 3] = [
    ("/usr/bin", "bin"),
    ("/usr/lib", "lib"),
    ("/usr/share/doc", "doc"),
];

/// Corpus files per directory: fanotify marks are per directory, so the corpus has many.
const FILES_PER_DIR: usize = 50;

/// The watcher caches a verdict only for a file whose ctime is more than 2 s old, compared in
/// whole seconds; a corpus this much older than the first watched access is cacheable.
const SETTLE: Duration = Duration::from_millis(3500);

/// How long the watcher is left alone after it answered, before its idle memory is read.
const IDLE_SETTLE: Duration = Duration::from_secs(1);

/// How long a watcher may take to load its signatures and mark the corpus.
const WATCHER_START_LIMIT: Duration = Duration::from_secs(120);

/// File size classes of the breakdown: upper bounds (exclusive) and labels.
const SIZE_CLASSES: [(u64, &str); 4] = [
    (16 << 10, "< 16 KiB"),
    (256 << 10, "16-256 KiB"),
    (4 << 20, "0.25-4 MiB"),
    (u64::MAX, ">= 4 MiB"),
];

struct Corpus {
    /// The timed files and their sizes, in the order they are opened.
    files: Vec<(PathBuf, u64)>,
    bytes: u64,
    directories: usize,
    /// Files copied from each source.
    per_source: Vec<(&'static str, usize)>,
    /// A file whose hash is a signature: its open is denied once the watcher answers.
    planted: PathBuf,
}

/// Copies real files from `SOURCES` into `root/corpus` and plants one file to be detected.
fn copy_corpus(o: &Options, root: &Path, rng: &mut Rng) -> Result<Corpus> {
    let corpus = root.join("corpus");
    let max = o.max_file_mb * 1_000_000;
    let (mut files, mut directories, mut per_source) = (Vec::new(), 0, Vec::new());
    for (s, (source, tag)) in SOURCES.into_iter().enumerate() {
        let quota = o.files / SOURCES.len() + usize::from(s < o.files % SOURCES.len());
        let mut found = Vec::new();
        walk::walk(Path::new(source), true, &mut |event| {
            if let Event::File { path, size, .. } = event
                && (1..=max).contains(&size)
            {
                found.push(path);
            }
        });
        found.sort();
        let picked: Vec<&PathBuf> = if found.len() <= quota {
            found.iter().collect()
        } else {
            (0..quota)
                .map(|k| &found[k * found.len() / quota])
                .collect()
        };
        let mut copied = 0;
        for (j, source_file) in picked.into_iter().enumerate() {
            // Unreadable files (a rare mode even root cannot read through) are left out.
            let Ok(data) = std::fs::read(source_file) else {
                continue;
            };
            let dir = corpus.join(tag).join(format!("{:03}", j / FILES_PER_DIR));
            if j % FILES_PER_DIR == 0 {
                std::fs::create_dir_all(&dir)?;
                directories += 1;
            }
            let name = source_file
                .file_name()
                .unwrap_or_default()
                .to_string_lossy();
            // Written, not `fs::copy`-ed, so no setuid bit is copied along.
            let dest = dir.join(format!("{j:04}-{name}"));
            std::fs::write(&dest, &data).with_context(|| format!("{}", dest.display()))?;
            files.push((dest, data.len() as u64));
            copied += 1;
        }
        per_source.push((source, copied));
    }
    if files.len() < 2 {
        bail!("found only {} files to copy from {SOURCES:?}", files.len());
    }
    let planted_dir = corpus.join("planted");
    std::fs::create_dir_all(&planted_dir)?;
    directories += 1;
    let planted = planted_dir.join("detected-by-hash");
    std::fs::write(&planted, rng.bytes(64 << 10))?;
    let bytes = files.iter().map(|(_, size)| size).sum();
    Ok(Corpus {
        files,
        bytes,
        directories,
        per_source,
        planted,
    })
}

/// Writes the signatures `bench scan` generates, plus the planted file's hash, into `dir`.
fn write_signatures(o: &Options, dir: &Path, planted: &Path, rng: &mut Rng) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let bodies = body_signatures(o.ndb, 16, rng);
    std::fs::write(dir.join("bench.ndb"), ndb_text(&bodies))?;
    let data = std::fs::read(planted)?;
    if o.hsb {
        let planted_hash = (hex(&Sha256::digest(&data)), data.len());
        let hsb = hsb_text(o.hdb.max(1), &planted_hash, rng);
        std::fs::write(dir.join("bench.hsb"), hsb)?;
    } else {
        let planted_hash = (hex(&Md5::digest(&data)), data.len());
        let hdb = hdb_text(o.hdb.max(1), &[planted_hash], rng);
        std::fs::write(dir.join("bench.hdb"), hdb)?;
    }
    Ok(())
}

/// An `.hsb` file of `count` SHA-256 signatures, shaped as Herd's own set writes them
/// (`sha256:size:name`): the planted file's first, then random digests with sizes from 1 B to
/// 5 MB, as `hdb_text` draws them.
fn hsb_text(count: usize, planted: &(String, usize), rng: &mut Rng) -> String {
    let mut hsb = format!("{}:{}:Herd.Immunity.bench-planted\n", planted.0, planted.1);
    for i in 1..count {
        let size = 1 + rng.below(5_000_000);
        hsb.push_str(&format!(
            "{}:{size}:Herd.Immunity.bench-{i}\n",
            hex(&rng.bytes(32))
        ));
    }
    hsb
}

/// A child process killed and reaped when this value is dropped, and killed by the kernel if
/// this process dies first (`PR_SET_PDEATHSIG`), so none outlives the benchmark on any path:
/// an error, a panic, or the benchmark itself killed.
struct KilledOnDrop(Child);

impl KilledOnDrop {
    #[allow(unsafe_code)]
    fn spawn(cmd: &mut Command) -> Result<KilledOnDrop> {
        let parent = std::process::id();
        // SAFETY: the closure runs in the child between fork and exec and calls only
        // async-signal-safe functions (prctl, getppid, _exit); `last_os_error` only reads errno.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before the request took effect.
                if libc::getppid() as u32 != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
        Ok(KilledOnDrop(child))
    }

    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The working directory, removed when the benchmark ends (after the watchers it holds).
struct RemovedOnDrop(PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts `herd-agent watch` in fanotify mode on the corpus and returns once it answers: when
/// the planted file's open is denied, every corpus directory is marked (the watcher marks them
/// all before it reads its first event).
fn start_watcher(
    agent: &Path,
    sigs: &Path,
    corpus: &Corpus,
    workers: u8,
    logs: &Path,
) -> Result<KilledOnDrop> {
    let errors = logs.with_extension("stderr");
    let corpus_root = corpus.planted.parent().and_then(Path::parent);
    let mut watcher = KilledOnDrop::spawn(
        Command::new(agent)
            .args(["watch", "--json", "--mode", "fanotify", "--workers"])
            .arg(workers.to_string())
            .arg("-d")
            .arg(sigs)
            .arg(corpus_root.context("the corpus has a root")?)
            .stdin(Stdio::null())
            .stdout(File::create(logs.with_extension("stdout"))?)
            .stderr(File::create(&errors)?),
    )?;
    let started = Instant::now();
    loop {
        match File::open(&corpus.planted) {
            Err(e) if e.kind() == ErrorKind::PermissionDenied => return Ok(watcher),
            Err(e) => bail!("{}: {e}", corpus.planted.display()),
            Ok(_) => {}
        }
        if let Some(status) = watcher.0.try_wait()? {
            bail!(
                "herd-agent watch exited ({status}) before answering: {}",
                std::fs::read_to_string(&errors).unwrap_or_default().trim()
            );
        }
        if started.elapsed() > WATCHER_START_LIMIT {
            bail!(
                "herd-agent watch did not deny the planted file within {} s",
                WATCHER_START_LIMIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Has another process (bash) open `files` for writing (appending nothing) and keep them
/// open until dropped.
fn hold_open_for_writing(files: &[&Path]) -> Result<KilledOnDrop> {
    let mut holder = KilledOnDrop::spawn(
        Command::new("bash")
            .arg("-c")
            .arg(r#"for f in "$@"; do exec {fd}>>"$f" || exit 1; done; echo held; read -r _"#)
            .arg("bash")
            .args(files)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    )?;
    let mut line = String::new();
    BufReader::new(holder.0.stdout.take().context("piped stdout")?).read_line(&mut line)?;
    if line.trim() != "held" {
        bail!("bash could not hold the sample open for writing");
    }
    Ok(holder)
}

/// Per-open latencies in seconds of open + read of the whole file + close, in order, and how
/// many opens were denied (those are left out of the latencies).
fn time_opens(files: &[&Path]) -> Result<(Vec<f64>, usize)> {
    let (mut latencies, mut denied, mut buf) = (Vec::with_capacity(files.len()), 0, Vec::new());
    for path in files {
        buf.clear();
        let started = Instant::now();
        // The file is closed inside the closure, so the close is timed too.
        let read = File::open(path).and_then(|mut f| f.read_to_end(&mut buf));
        let elapsed = started.elapsed().as_secs_f64();
        match read {
            Ok(_) => latencies.push(elapsed),
            Err(e) if e.kind() == ErrorKind::PermissionDenied => denied += 1,
            Err(e) => return Err(e).with_context(|| format!("{}", path.display())),
        }
    }
    Ok((latencies, denied))
}

/// The value at quantile `q` (0..=1) of some samples, by nearest rank.
fn percentile(samples: &[f64], q: f64) -> f64 {
    assert!(!samples.is_empty(), "percentile of no samples");
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What one run measured in one state: latencies in corpus order (of the files opened).
struct Measured {
    latencies: Vec<f64>,
    /// The size of the file each latency belongs to.
    sizes: Vec<u64>,
}

impl Measured {
    fn of(files: &[(&Path, u64)], latencies: Vec<f64>, denied: usize) -> Measured {
        // With denied opens the latencies no longer line up with the files; the size
        // breakdown is then left empty rather than wrong.
        let sizes = if denied == 0 {
            files.iter().map(|(_, size)| *size).collect()
        } else {
            Vec::new()
        };
        Measured { latencies, sizes }
    }
    fn in_class(&self, low: u64, high: u64) -> Vec<f64> {
        self.latencies
            .iter()
            .zip(&self.sizes)
            .filter(|(_, size)| (low..high).contains(*size))
            .map(|(latency, _)| *latency)
            .collect()
    }
}

/// One run: each state's measurements, and what the watcher showed.
struct Run {
    baseline: Measured,
    held_baseline: Measured,
    cold: Measured,
    cached: Measured,
    held: Measured,
    denied: usize,
    undecidable: usize,
    watcher_peak_rss: Option<u64>,
    /// The watcher's resident memory once it has loaded its signatures and marked the corpus,
    /// before the timed opens: (VmRSS, RssAnon, RssFile) in bytes.
    watcher_idle: Option<(u64, u64, u64)>,
}

/// A process's (VmRSS, RssAnon, RssFile) in bytes, from `/proc/<pid>/status`.
fn resident(pid: u32) -> Option<(u64, u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
    };
    Some((field("VmRSS:")?, field("RssAnon:")?, field("RssFile:")?))
}

/// Picks one state's measurements out of a run.
type StateOf = fn(&Run) -> &Measured;

fn micros(seconds: f64) -> String {
    let us = seconds * 1e6;
    if us < 100.0 {
        format!("{us:.1} µs")
    } else {
        format!("{us:.0} µs")
    }
}

fn one_run(
    o: &Options,
    agent: &Path,
    sigs: &Path,
    corpus: &Corpus,
    held: &[(&Path, u64)],
    logs: &Path,
) -> Result<Run> {
    let all: Vec<(&Path, u64)> = corpus
        .files
        .iter()
        .map(|(p, s)| (p.as_path(), *s))
        .collect();
    let paths: Vec<&Path> = all.iter().map(|(p, _)| *p).collect();
    let held_paths: Vec<&Path> = held.iter().map(|(p, _)| *p).collect();
    let (baseline, no_watcher_denied) = time_opens(&paths)?;
    let (held_baseline, _) = time_opens(&held_paths)?;
    if no_watcher_denied > 0 {
        bail!("{no_watcher_denied} corpus files cannot be opened even without a watcher");
    }
    let watcher = start_watcher(agent, sigs, corpus, o.workers, logs)?;
    // Idle: signatures loaded, directories marked, one file (the planted one) scanned.
    std::thread::sleep(IDLE_SETTLE);
    let watcher_idle = resident(watcher.id());
    let (cold, cold_denied) = time_opens(&paths)?;
    let (cached, cached_denied) = time_opens(&paths)?;
    let holder = hold_open_for_writing(&held_paths)?;
    let (held_latencies, held_denied) = time_opens(&held_paths)?;
    drop(holder);
    let watcher_peak_rss = process_peak_rss_bytes(watcher.id());
    drop(watcher);
    let undecidable = std::fs::read_to_string(logs.with_extension("stdout"))?
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "undecidable")
        .count();
    Ok(Run {
        baseline: Measured::of(&all, baseline, 0),
        held_baseline: Measured::of(held, held_baseline, 0),
        cold: Measured::of(&all, cold, cold_denied),
        cached: Measured::of(&all, cached, cached_denied),
        held: Measured::of(held, held_latencies, held_denied),
        denied: cold_denied + cached_denied + held_denied,
        undecidable,
        watcher_peak_rss,
        watcher_idle,
    })
}

/// The refusal when not root: without fanotify permission events no open waits for a scan
/// (inotify mode scans after the fact), so there is no on-access latency to measure.
#[allow(unsafe_code)]
fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "bench onaccess needs root: it measures fanotify permission events (`herd-agent watch` \
             as root), which need CAP_SYS_ADMIN; without them the watcher only scans after writes \
             and no open waits for it. Run it as root, e.g. `sudo -E cargo xtask bench onaccess`."
        );
    }
    Ok(())
}

pub fn run(o: Options) -> Result<()> {
    require_root()?;
    let agent = match &o.agent {
        Some(path) => path.clone(),
        None => build_agent()?,
    };
    let root = o
        .dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join("herd-bench-onaccess");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir(&root).with_context(|| format!("{}", root.display()))?;
    let root = RemovedOnDrop(root);
    let mut rng = Rng(o.seed);
    eprintln!(
        "copying the corpus and generating signatures under {} …",
        root.0.display()
    );
    let corpus = copy_corpus(&o, &root.0, &mut rng)?;
    let copied = Instant::now();
    let sigs = root.0.join("sigs");
    write_signatures(&o, &sigs, &corpus.planted, &mut rng)?;
    let paths: Vec<PathBuf> = corpus.files.iter().map(|(p, _)| p.clone()).collect();
    warm(&paths)?;
    let stride = (corpus.files.len() / o.held.clamp(1, corpus.files.len())).max(1);
    let held: Vec<(&Path, u64)> = corpus
        .files
        .iter()
        .step_by(stride)
        .take(o.held)
        .map(|(p, s)| (p.as_path(), *s))
        .collect();
    std::thread::sleep(SETTLE.saturating_sub(copied.elapsed()));

    let sources: Vec<String> = corpus
        .per_source
        .iter()
        .map(|(source, n)| format!("{source} ({n})"))
        .collect();
    println!(
        "corpus: {} real files, {:.1} MB, copied from {} into {} directories under {}",
        corpus.files.len(),
        corpus.bytes as f64 / 1e6,
        sources.join(", "),
        corpus.directories,
        root.0.display()
    );
    println!(
        "signatures: {} {} (random sizes up to 5 MB, one planted) + {} .ndb, as `bench scan` generates them (seed {})",
        o.hdb.max(1),
        if o.hsb {
            ".hsb (SHA-256)"
        } else {
            ".hdb (MD5)"
        },
        o.ndb,
        o.seed
    );
    println!(
        "page cache: warm (every file read before the runs; caches are not dropped on this shared machine)"
    );
    println!(
        "watcher: {} watch --mode fanotify --workers {}, a fresh one in each of {} runs",
        agent.display(),
        o.workers,
        o.runs
    );

    let mut runs = Vec::with_capacity(o.runs);
    for n in 0..o.runs.max(1) {
        eprintln!("run {} of {} …", n + 1, o.runs.max(1));
        let logs = root.0.join(format!("watcher-{n}"));
        runs.push(one_run(&o, &agent, &sigs, &corpus, &held, &logs)?);
    }

    println!(
        "per open (open + read whole file + close, one thread), median over {} runs of each run's statistic; × is the ratio to the same run's baseline:",
        runs.len()
    );
    let states: [(&str, StateOf, StateOf); 4] = [
        ("no watcher (baseline)", |r| &r.baseline, |r| &r.baseline),
        (
            "watched, first access (scanned)",
            |r| &r.cold,
            |r| &r.baseline,
        ),
        (
            "watched, second access (cached)",
            |r| &r.cached,
            |r| &r.baseline,
        ),
        (
            "watched, held open for writing elsewhere",
            |r| &r.held,
            |r| &r.held_baseline,
        ),
    ];
    println!(
        "  {:<42} {:>10} {:>7} {:>10} {:>7} {:>11}   run medians (min-max)",
        "state", "median", "×", "p99", "×", "pass total"
    );
    for (label, state, baseline) in states {
        let per_run = |f: &dyn Fn(&[f64]) -> f64| -> Vec<f64> {
            runs.iter().map(|r| f(&state(r).latencies)).collect()
        };
        let ratio = |q: f64| -> f64 {
            median(
                runs.iter()
                    .map(|r| {
                        percentile(&state(r).latencies, q) / percentile(&baseline(r).latencies, q)
                    })
                    .collect(),
            )
        };
        // A shared machine makes runs differ; the spread of the medians shows by how much.
        let medians = per_run(&|l| percentile(l, 0.5));
        let (least, most) = medians
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), m| (lo.min(*m), hi.max(*m)));
        println!(
            "  {:<42} {:>10} {:>6.1}× {:>10} {:>6.1}× {:>9.3} s   {}-{}",
            label,
            micros(median(medians)),
            ratio(0.5),
            micros(median(per_run(&|l| percentile(l, 0.99)))),
            ratio(0.99),
            median(per_run(&|l| l.iter().sum())),
            micros(least),
            micros(most),
        );
    }
    println!(
        "  ({} files held open for writing by a bash process, each scanned at every open; their own baseline median {})",
        held.len(),
        micros(median(
            runs.iter()
                .map(|r| percentile(&r.held_baseline.latencies, 0.5))
                .collect()
        ))
    );

    let all_sizes: Vec<u64> = corpus.files.iter().map(|(_, s)| *s).collect();
    let mut header = format!("  {:<42}", "median by file size (files)");
    let mut low = 0;
    for (high, label) in SIZE_CLASSES {
        let count = all_sizes
            .iter()
            .filter(|s| (low..high).contains(*s))
            .count();
        header.push_str(&format!(" {:>17}", format!("{label} ({count})")));
        low = high;
    }
    println!("{header}");
    let classes: [(&str, StateOf); 3] = [
        ("no watcher (baseline)", |r| &r.baseline),
        ("watched, first access (scanned)", |r| &r.cold),
        ("watched, second access (cached)", |r| &r.cached),
    ];
    for (label, state) in classes {
        let mut line = format!("  {label:<42}");
        let mut low = 0;
        for (high, _) in SIZE_CLASSES {
            let medians: Vec<f64> = runs
                .iter()
                .map(|r| state(r).in_class(low, high))
                .filter(|l| !l.is_empty())
                .map(|l| percentile(&l, 0.5))
                .collect();
            let cell = if medians.is_empty() {
                "-".to_owned()
            } else {
                micros(median(medians))
            };
            line.push_str(&format!(" {cell:>17}"));
            low = high;
        }
        println!("{line}");
    }

    let peak = runs.iter().filter_map(|r| r.watcher_peak_rss).max();
    println!(
        "watcher peak RSS (VmHWM): {}",
        peak.map_or("unknown".to_owned(), |b| format!(
            "{:.0} MB, the largest of the runs",
            b as f64 / 1e6
        ))
    );
    let idle: Vec<(u64, u64, u64)> = runs.iter().filter_map(|r| r.watcher_idle).collect();
    if idle.is_empty() {
        println!("watcher idle RSS: unknown");
    } else {
        let mb = |f: fn(&(u64, u64, u64)) -> u64| {
            median(idle.iter().map(|r| f(r) as f64 / 1e6).collect())
        };
        println!(
            "watcher idle RSS (signatures loaded, corpus marked, before the timed opens; median of {} runs): {:.1} MB, of which {:.1} MB anonymous and {:.1} MB mapped files",
            idle.len(),
            mb(|r| r.0),
            mb(|r| r.1),
            mb(|r| r.2)
        );
    }
    let denied: usize = runs.iter().map(|r| r.denied).sum();
    let undecidable: usize = runs.iter().map(|r| r.undecidable).sum();
    println!(
        "opens denied: {denied} of the timed ones (expected 0: the corpus is clean), {undecidable} undecidable reports; the planted file was denied in every run"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&samples, 0.5), 100.0);
        assert_eq!(percentile(&samples, 0.99), 198.0);
        assert_eq!(percentile(&samples, 1.0), 200.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 0.0), 1.0);
    }

    /// Whether the kernel grants a read lease, which it refuses while anyone has the file open
    /// for writing: the same probe the watcher uses before it trusts a cached verdict.
    #[allow(unsafe_code)]
    fn read_lease_granted(path: &Path) -> bool {
        use std::os::fd::AsRawFd;
        let file = File::open(path).expect("open for reading");
        // SAFETY: a valid descriptor for the duration of the call; F_SETLEASE takes an integer.
        unsafe {
            let fd = file.as_raw_fd();
            libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) == 0
                && libc::fcntl(fd, libc::F_SETLEASE, libc::F_UNLCK) == 0
        }
    }

    #[test]
    fn held_files_have_a_writer_so_no_verdict_could_be_cached() {
        let dir = std::env::temp_dir().join(format!("herd-xtask-held-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let dir = RemovedOnDrop(dir);
        let files: Vec<PathBuf> = (0..3).map(|i| dir.0.join(format!("f{i}"))).collect();
        for f in &files {
            std::fs::write(f, b"content").expect("write");
        }
        let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        if !read_lease_granted(refs[0]) {
            eprintln!("skipped: this file system grants no leases, so nothing here is cached");
            return;
        }
        let holder = hold_open_for_writing(&refs).expect("bash holds the files");
        for f in &refs {
            assert!(!read_lease_granted(f), "{} has no writer", f.display());
        }
        drop(holder);
        for f in &refs {
            assert!(read_lease_granted(f), "{} still has a writer", f.display());
        }
        for f in &files {
            assert_eq!(
                std::fs::read(f).expect("read"),
                b"content",
                "a held file changed"
            );
        }
    }

    #[test]
    fn a_dropped_child_guard_leaves_no_process_behind() {
        let child = KilledOnDrop::spawn(Command::new("sleep").arg("600")).expect("sleep runs");
        let pid = child.id();
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        drop(child);
        // Killed and reaped: no process, not even a zombie, keeps the id.
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
}
