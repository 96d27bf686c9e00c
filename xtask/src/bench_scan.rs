//! `cargo xtask bench scan`: herd against clamscan on the same signatures and corpus (SPEC §8).
//!
//! Generates, deterministically from a seed and under `--dir` (default `$TMPDIR/herd-bench-scan`,
//! never in the repository), 100,000 `.hdb` and 10,000 `.ndb` signatures and a corpus of at
//! least 1 GB of mixed files: random binary, text, executable-like runs of zeros and code,
//! and some zip and gzip archives, a few of them planted with signature hits. Then, with the
//! page cache warm, it times on one thread:
//! - `herd-agent scan` (the release binary) and `clamscan` on the whole set, several runs,
//!   reporting medians with and without database load time, peak memory and detections;
//! - the engine alone over the corpus held in memory with only the 10,000 body signatures
//!   (the "1 GB/s on cached data" bar), and the same with Aho-Corasick only, on a sample.
//!
//! With `--real [DIR…]` it benchmarks real files instead (see `bench_scan_real`).

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;
use herd_scan::archive::build::{gzip, zip};
use herd_scan::{Database, Engine, EngineOptions, MatchOptions, Scratch};
use md5::{Digest, Md5};

use crate::median;
use herd_lab::world::Rng;

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask bench scan",
    about = "herd-agent scan against clamscan (SPEC §8)"
)]
struct Options {
    /// Where signatures and corpus are generated (reused when already there).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Corpus size in MB (10^6 bytes).
    #[arg(long, default_value_t = 1100)]
    corpus_mb: u64,
    /// `.hdb` signatures.
    #[arg(long, default_value_t = 100_000)]
    hdb: usize,
    /// `.ndb` signatures.
    #[arg(long, default_value_t = 10_000)]
    ndb: usize,
    /// Timed runs per tool; medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Shortest fixed head (the anchor) of the generated body signatures, in bytes; heads are
    /// this to twice this long. 16 and more use the 8-byte gram filter, 8 to 15 the 4-byte one.
    #[arg(long, default_value_t = 16)]
    anchor_min: usize,
    /// Skip clamscan (it takes about 90 s per GB here).
    #[arg(long)]
    no_clamscan: bool,
    #[arg(long, default_value_t = 5)]
    seed: u64,
    /// Benchmark on real files instead of a generated corpus: these directories, or with none
    /// the system's library, binary and documentation directories (/usr/lib /usr/bin
    /// /usr/share/doc). Signatures are generated from the files (see `bench_scan_real`).
    #[arg(long, num_args = 0.., value_name = "DIR")]
    real: Option<Vec<PathBuf>>,
    /// With --real: at most this many MB (10^6 bytes) of files, sampled by --seed.
    #[arg(long, default_value_t = 1000)]
    limit_mb: u64,
    /// With --real: a signature set of ClamAV's real size and composition instead of --hdb and
    /// --ndb: 3,200,000 MD5 (.hdb) and 400,000 each SHA-1 and SHA-256 (.hsb) hashes with sizes
    /// drawn from the files', 100,000 .ndb and 20,000 .ldb signatures.
    #[arg(long)]
    clamav_size: bool,
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A generated body signature and a byte string that matches it.
pub(crate) struct BodySig {
    pub(crate) line: String,
    pub(crate) instance: Vec<u8>,
}

/// Signatures shaped like ClamAV's: a fixed head (the anchor, 16–32 bytes by default), then one of the
/// wildcard constructs, then a fixed tail.
pub(crate) fn body_sig(i: usize, anchor_min: usize, rng: &mut Rng) -> BodySig {
    let head_len = anchor_min + rng.below(anchor_min as u64 + 1) as usize;
    let head = rng.bytes(head_len);
    let tail_len = 4 + rng.below(12) as usize;
    let tail = rng.bytes(tail_len);
    let (mid_sig, mid_bytes) = match rng.below(7) {
        0 => (String::new(), Vec::new()),
        1 => ("??".to_owned(), vec![0x5a]),
        2 => ("{2-6}".to_owned(), vec![1, 2, 3]),
        3 => ("*".to_owned(), b"anything in between".to_vec()),
        4 => (format!("({:02x}|{:02x})", head[0], head[1]), vec![head[1]]),
        5 => ("{4}".to_owned(), vec![9, 9, 9, 9]),
        _ => ("9?".to_owned(), vec![0x97]),
    };
    let line = format!(
        "Herd.Bench.Body-{i}:0:*:{}{mid_sig}{}",
        hex(&head),
        hex(&tail)
    );
    BodySig {
        line,
        instance: [head, mid_bytes, tail].concat(),
    }
}

/// `count` generated body signatures (see `body_sig`).
pub(crate) fn body_signatures(count: usize, anchor_min: usize, rng: &mut Rng) -> Vec<BodySig> {
    (0..count).map(|i| body_sig(i, anchor_min, rng)).collect()
}

/// The `.ndb` file of some body signatures.
pub(crate) fn ndb_text(bodies: &[BodySig]) -> String {
    bodies.iter().map(|b| format!("{}\n", b.line)).collect()
}

/// An `.hdb` file of `count` MD5 signatures: the `planted` (hex MD5, size) pairs first, then
/// random digests with sizes from 1 B to 5 MB, so some files of a corpus share a size with a
/// signature and are hashed, as with a real database.
pub(crate) fn hdb_text(count: usize, planted: &[(String, usize)], rng: &mut Rng) -> String {
    let mut hdb = String::new();
    for i in 0..count {
        if let Some((digest, size)) = planted.get(i) {
            hdb.push_str(&format!("{digest}:{size}:Herd.Bench.Hash-{i}\n"));
        } else {
            hdb.push_str(&hdb_line(i, rng));
        }
    }
    hdb
}

/// One random `.hdb` line (digest, a size from 1 B to 5 MB, name), newline included.
pub(crate) fn hdb_line(i: usize, rng: &mut Rng) -> String {
    let size = 1 + rng.below(5_000_000);
    format!("{}:{size}:Herd.Bench.Hash-{i}\n", hex(&rng.bytes(16)))
}

const WORDS: &[&str] = &[
    "the",
    "herd",
    "scan",
    "signature",
    "definitions",
    "terminal",
    "update",
    "release",
    "coverage",
    "threat",
    "vendor",
    "product",
    "window",
    "policy",
    "agent",
    "server",
    "center",
    "sample",
    "quarantine",
    "report",
    "function",
    "return",
    "value",
    "struct",
    "impl",
    "const",
    "static",
    "let",
    "match",
    "while",
];

fn text(rng: &mut Rng, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 16);
    while out.len() < size {
        out.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
        out.push(if rng.below(12) == 0 { b'\n' } else { b' ' });
    }
    out.truncate(size);
    out
}

/// Zeros, small integers and random "code", like the sections of an executable.
fn exe_like(rng: &mut Rng, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    while out.len() < size {
        let run = 64 + rng.below(4096) as usize;
        match rng.below(3) {
            0 => out.resize(out.len() + run, 0),
            1 => out.extend((0..run).map(|_| (rng.below(16)) as u8)),
            _ => out.extend_from_slice(&rng.bytes(run)),
        }
    }
    out.truncate(size);
    out
}

fn file_size(rng: &mut Rng) -> usize {
    if rng.below(100) == 0 {
        return (4 << 20) + rng.below(12 << 20) as usize;
    }
    // Log-uniform between 512 B and 1 MiB.
    let exp = 9.0 + (rng.below(1 << 20) as f64 / f64::from(1 << 20)) * 11.0;
    2f64.powf(exp) as usize
}

struct Generated {
    sigs: PathBuf,
    corpus: PathBuf,
    files: usize,
    bytes: u64,
}

fn generate(o: &Options, dir: &Path) -> Result<Generated> {
    let sigs = dir.join("sigs");
    let corpus = dir.join("corpus");
    let stamp = dir.join("generated.txt");
    let want = format!(
        "seed={} corpus_mb={} hdb={} ndb={} anchor_min={}\n",
        o.seed, o.corpus_mb, o.hdb, o.ndb, o.anchor_min
    );
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(&want) {
        let (files, bytes) = corpus_size(&corpus)?;
        return Ok(Generated {
            sigs,
            corpus,
            files,
            bytes,
        });
    }
    eprintln!(
        "generating signatures and a {} MB corpus under {} …",
        o.corpus_mb,
        dir.display()
    );
    let _ = std::fs::remove_dir_all(&sigs);
    let _ = std::fs::remove_dir_all(&corpus);
    std::fs::create_dir_all(&sigs)?;
    std::fs::create_dir_all(&corpus)?;
    let mut rng = Rng(o.seed);
    let bodies = body_signatures(o.ndb, o.anchor_min, &mut rng);
    std::fs::write(sigs.join("bench.ndb"), ndb_text(&bodies))?;

    let mut planted_hashes = Vec::new();
    let (mut files, mut bytes) = (0usize, 0u64);
    while bytes < o.corpus_mb * 1_000_000 {
        let size = file_size(&mut rng);
        let kind = rng.below(100);
        let mut data = match kind {
            0..40 => rng.bytes(size),
            40..70 => text(&mut rng, size),
            70..95 => exe_like(&mut rng, size),
            95..98 => {
                let members: Vec<(String, Vec<u8>)> = (0..3)
                    .map(|m| (format!("member-{m}.txt"), text(&mut rng, size / 3)))
                    .collect();
                let refs: Vec<(&str, &[u8], bool)> = members
                    .iter()
                    .map(|(n, d)| (n.as_str(), &d[..], true))
                    .collect();
                zip(&refs)
            }
            _ => gzip(&text(&mut rng, size)),
        };
        if files % 200 == 7 && kind < 95 {
            let sig = &bodies[rng.below(bodies.len() as u64) as usize];
            let at = rng.below(data.len().saturating_sub(sig.instance.len()) as u64 + 1) as usize;
            data.splice(
                at..(at + sig.instance.len()).min(data.len()),
                sig.instance.iter().copied(),
            );
        }
        if files % 300 == 11 {
            planted_hashes.push((hex(&Md5::digest(&data)), data.len()));
        }
        let sub = corpus.join(format!("{:03}", files % 100));
        std::fs::create_dir_all(&sub)?;
        std::fs::write(sub.join(format!("f{files:06}")), &data)?;
        files += 1;
        bytes += data.len() as u64;
    }

    std::fs::write(
        sigs.join("bench.hdb"),
        hdb_text(o.hdb, &planted_hashes, &mut rng),
    )?;
    std::fs::write(&stamp, want)?;
    Ok(Generated {
        sigs,
        corpus,
        files,
        bytes,
    })
}

fn corpus_files(corpus: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for sub in std::fs::read_dir(corpus)? {
        for f in std::fs::read_dir(sub?.path())? {
            out.push(f?.path());
        }
    }
    out.sort();
    Ok(out)
}

fn corpus_size(corpus: &Path) -> Result<(usize, u64)> {
    let files = corpus_files(corpus)?;
    let bytes = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    Ok((files.len(), bytes))
}

/// Runs a command to completion and returns its stdout, wall time and peak resident memory.
pub(crate) fn timed(cmd: &mut Command) -> Result<(String, f64, u64)> {
    timed_cpu(cmd).map(|(out, secs, rss, _)| (out, secs, rss))
}

/// [`timed`], also returning the CPU seconds (user + system) the command used: on a machine
/// shared with other work, wall time measures the neighbours as much as the command.
pub(crate) fn timed_cpu(cmd: &mut Command) -> Result<(String, f64, u64, f64)> {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("{cmd:?}"))?;
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut out)?;
    let (status, maxrss_kib, cpu) = wait_with_rusage(child.id())?;
    let secs = started.elapsed().as_secs_f64();
    if !matches!(status, 0 | 1) {
        bail!("{cmd:?} exited with {status}");
    }
    Ok((out, secs, maxrss_kib * 1024, cpu))
}

/// `wait4` gives the child's own peak RSS, which `std::process` does not expose.
#[allow(unsafe_code)]
fn wait_with_rusage(pid: u32) -> Result<(i32, u64, f64)> {
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own unwaited child; both pointers are valid for writes.
    let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    if r < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu = seconds(usage.ru_utime) + seconds(usage.ru_stime);
    Ok((libc::WEXITSTATUS(status), usage.ru_maxrss as u64, cpu))
}

/// Files reported infected in clamscan-style output.
fn infected(output: &str) -> BTreeSet<String> {
    output
        .lines()
        .filter(|l| l.ends_with(" FOUND"))
        .filter_map(|l| l.rsplit_once(": ").map(|(p, _)| p.to_owned()))
        .collect()
}

/// Reads every file once, so timed runs find them in the page cache.
pub(crate) fn warm(files: &[PathBuf]) -> Result<()> {
    let mut buf = Vec::new();
    for f in files {
        buf.clear();
        std::fs::File::open(f)?.read_to_end(&mut buf)?;
    }
    Ok(())
}

/// Builds the release `herd-agent` (in `CARGO_TARGET_DIR` when set) and returns its path.
pub(crate) fn build_agent() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--quiet", "-p", "herd-agent"])
        .status()?;
    if !status.success() {
        bail!("building herd-agent failed");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is in the workspace");
    Ok(std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("release/herd-agent"))
}

pub fn run(args: Vec<String>) -> Result<()> {
    let o = Options::try_parse_from(std::iter::once("bench-scan".to_owned()).chain(args)).map_err(
        |e| {
            let _ = e.print();
            anyhow::anyhow!("bad arguments")
        },
    )?;
    let dir = o
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("herd-bench-scan"));
    if let Some(dirs) = &o.real {
        let dirs = match dirs.is_empty() {
            true => crate::bench_scan_real::DEFAULT_DIRS
                .iter()
                .map(PathBuf::from)
                .filter(|d| d.is_dir())
                .collect(),
            false => dirs.clone(),
        };
        return crate::bench_scan_real::run(&crate::bench_scan_real::RealOptions {
            dirs,
            dir,
            limit_mb: o.limit_mb,
            hdb: o.hdb,
            ndb: o.ndb,
            runs: o.runs,
            anchor_min: o.anchor_min,
            no_clamscan: o.no_clamscan,
            seed: o.seed,
            clamav_size: o.clamav_size,
        });
    }
    let g = generate(&o, &dir)?;
    let gb = g.bytes as f64 / 1e9;
    println!(
        "corpus: {:.2} GB in {} files under {}; signatures: {} .hdb + {} .ndb",
        gb,
        g.files,
        g.corpus.display(),
        o.hdb,
        o.ndb
    );
    let files = corpus_files(&g.corpus)?;
    warm(&files)?;
    let agent = build_agent()?;
    let sigs = g.sigs.to_str().context("signature path is not UTF-8")?;
    let corpus = g.corpus.to_str().context("corpus path is not UTF-8")?;
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, b"x")?;
    let empty = empty.to_str().context("path is not UTF-8")?;

    // herd-agent: load time from its own JSON summary, scan time = total − load.
    let (mut herd_total, mut herd_load, mut herd_rss, mut herd_found) =
        (Vec::new(), Vec::new(), 0, BTreeSet::new());
    for _ in 0..o.runs {
        let (out, secs, rss) =
            timed(Command::new(&agent).args(["scan", "--json", "-i", "-d", sigs, corpus]))?;
        let summary = out.lines().last().context("no summary from herd-agent")?;
        let v: serde_json::Value = serde_json::from_str(summary)?;
        herd_load.push(
            v["summary"]["database_load_seconds"]
                .as_f64()
                .context("no load time")?,
        );
        herd_total.push(secs);
        herd_rss = herd_rss.max(rss);
        herd_found = out
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["status"] == "found")
            .filter_map(|v| v["path"].as_str().map(str::to_owned))
            .collect();
    }
    let herd_scan = median(
        herd_total
            .iter()
            .zip(&herd_load)
            .map(|(t, l)| t - l)
            .collect(),
    );
    println!(
        "herd-agent scan: total {:.2} s, database load {:.2} s, scan {:.2} s = {:.0} MB/s; peak RSS {:.0} MB; {} files detected",
        median(herd_total.clone()),
        median(herd_load.clone()),
        herd_scan,
        g.bytes as f64 / 1e6 / herd_scan,
        herd_rss as f64 / 1e6,
        herd_found.len()
    );

    if o.no_clamscan {
        println!("clamscan: skipped (--no-clamscan)");
    } else if Command::new("clamscan").arg("--version").output().is_err() {
        println!("clamscan: skipped, not on PATH (apt-get install clamav)");
    } else {
        let mut load = Vec::new();
        for _ in 0..o.runs {
            load.push(timed(Command::new("clamscan").args(["--no-summary", "-d", sigs, empty]))?.1);
        }
        let (mut total, mut rss, mut found) = (Vec::new(), 0, BTreeSet::new());
        for _ in 0..o.runs {
            let (out, secs, r) = timed(Command::new("clamscan").args([
                "--no-summary",
                "-i",
                "-r",
                "-d",
                sigs,
                corpus,
            ]))?;
            total.push(secs);
            rss = rss.max(r);
            found = infected(&out);
        }
        let clam_load = median(load);
        let clam_scan = median(total.clone()) - clam_load;
        println!(
            "clamscan:        total {:.2} s, database load {:.2} s, scan {:.2} s = {:.0} MB/s; peak RSS {:.0} MB; {} files detected",
            median(total.clone()),
            clam_load,
            clam_scan,
            g.bytes as f64 / 1e6 / clam_scan,
            rss as f64 / 1e6,
            found.len()
        );
        println!(
            "throughput ratio herd/clamscan: {:.1}× excluding database load, {:.1}× including it (target ≥ 3×)",
            clam_scan / herd_scan,
            median(total) / median(herd_total)
        );
        if found != herd_found {
            println!(
                "detections differ: only clamscan {:?}, only herd {:?}",
                found.difference(&herd_found).take(5).collect::<Vec<_>>(),
                herd_found.difference(&found).take(5).collect::<Vec<_>>()
            );
        } else {
            println!("both detected the same {} files", found.len());
        }
    }

    // The engine alone on cached data: the corpus in memory, 10,000 body signatures.
    let mut db = Database::new();
    let errors = db.load("bench.ndb", &std::fs::read(g.sigs.join("bench.ndb"))?);
    if !errors.is_empty() {
        bail!("generated signatures failed to load: {}", errors[0]);
    }
    let data: Vec<Vec<u8>> = files
        .iter()
        .map(std::fs::read)
        .collect::<std::io::Result<_>>()?;
    let options = MatchOptions {
        all_matches: true,
        ..MatchOptions::default()
    };
    for (label, engine_options, sample_bytes) in [
        (
            "gram filter + Aho-Corasick (default)",
            EngineOptions::default(),
            u64::MAX,
        ),
        (
            "Aho-Corasick only, 200 MB sample",
            EngineOptions { gram_filter: false },
            200_000_000,
        ),
    ] {
        let started = Instant::now();
        let engine = Engine::with_options(&db, &engine_options);
        let build = started.elapsed().as_secs_f64();
        let mut rates = Vec::new();
        for _ in 0..o.runs {
            let mut scratch = Scratch::default();
            let (mut bytes, started) = (0u64, Instant::now());
            for d in &data {
                if bytes >= sample_bytes {
                    break;
                }
                engine
                    .match_bytes(d, &mut scratch, options)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                bytes += d.len() as u64;
            }
            rates.push(bytes as f64 / 1e9 / started.elapsed().as_secs_f64());
        }
        println!(
            "engine in memory, {} body signatures, {label}: {:.2} GB/s (median of {}; compile {:.2} s){}",
            o.ndb,
            median(rates.clone()),
            o.runs,
            build,
            if sample_bytes == u64::MAX {
                " (target ≥ 1 GB/s)"
            } else {
                ""
            }
        );
    }
    Ok(())
}
