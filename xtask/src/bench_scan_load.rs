//! `cargo xtask bench scan-load`: loading databases of ClamAV's real size — `herd-agent scan`
//! compiling its hash signature index once, then mapping it, against `clamscan` loading the
//! same files, in the same run (issue 15: 4,000,000 hash signatures in under 1 s and 150 MB).
//!
//! Generates, deterministically from a seed under `--dir` (default
//! `$TMPDIR/herd-bench-scan-load`), two signature sets:
//! - `hdb/`: `--hdb` (4,000,000) `.hdb` signatures with sizes spread like files' (1 KB to
//!   20 MB, log-uniform) and names as long as ClamAV's;
//! - `mixed/`: ClamAV's composition, roughly — its hashes split into `.hdb` MD5 (80 %),
//!   `.hsb` SHA-1 and SHA-256 (10 % each), 100,000 `.ndb` and 20,000 `.ldb` body signatures
//!   (`--mixed-ndb`, `--mixed-ldb`); `--no-mixed` skips it.
//!
//! For each set and tool it scans a small directory holding one file that a hash signature
//! and one that a body signature detects (both tools must find them: the load is real), and
//! reports wall time, the database load time and peak resident memory (`wait4`), medians over
//! `--runs`. Herd's runs: the first load with an empty index directory (compiling and writing
//! the index), mapped loads of the unchanged index, and a load without an index
//! (`--no-index`, compiled in memory). Then the agent's idle memory with the set loaded:
//! `herd-agent watch` (inotify) on the same directory, its resident memory after it settled.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use herd_lab::world::Rng;
use md5::{Digest, Md5};

use crate::bench_scan::{body_sig, build_agent, hex, timed};
use crate::median;

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask bench scan-load",
    about = "Loading 4,000,000 hash signatures: herd-agent's mapped index against clamscan"
)]
pub struct Options {
    /// Where the signature sets are generated (reused when already there).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Hash signatures in each set.
    #[arg(long, default_value_t = 4_000_000)]
    hdb: usize,
    /// `.ndb` signatures in the mixed set.
    #[arg(long, default_value_t = 100_000)]
    mixed_ndb: usize,
    /// `.ldb` signatures in the mixed set.
    #[arg(long, default_value_t = 20_000)]
    mixed_ldb: usize,
    /// Skip the mixed set.
    #[arg(long)]
    no_mixed: bool,
    /// Timed runs per measurement; medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Skip clamscan.
    #[arg(long)]
    no_clamscan: bool,
    #[arg(long, default_value_t = 11)]
    seed: u64,
}

struct Set {
    name: &'static str,
    sigs: PathBuf,
    target: PathBuf,
    signatures: usize,
}

/// A hash signature name about as long as ClamAV's (`Win.Trojan.Agent-1234567-0`).
pub(crate) fn sig_name(family: &str, i: usize) -> String {
    format!("Win.Trojan.{family}-{}-0", 1_000_000 + i)
}

fn log_uniform_size(rng: &mut Rng) -> u64 {
    // 2^10 .. 2^24.3 bytes (1 KB .. 20 MB).
    let exp = 10.0 + (rng.below(14_300) as f64) / 1000.0;
    2f64.powf(exp) as u64
}

pub(crate) fn write_lines(
    path: &Path,
    mut line: impl FnMut(usize, &mut String),
    count: usize,
) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut s = String::new();
    for i in 0..count {
        s.clear();
        line(i, &mut s);
        out.write_all(s.as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

/// The planted files: one detected by a hash signature, one by a body signature.
fn target(dir: &Path, rng: &mut Rng) -> Result<(PathBuf, Vec<u8>, Vec<u8>)> {
    let target = dir.join("target");
    std::fs::create_dir_all(&target)?;
    let hashed = rng.bytes(4096);
    std::fs::write(target.join("hash-hit.bin"), &hashed)?;
    let mut body = rng.bytes(8192);
    let marker = b"HERD-BENCH-BODY-SIGNATURE-MARKER";
    body[1000..1000 + marker.len()].copy_from_slice(marker);
    std::fs::write(target.join("body-hit.bin"), &body)?;
    std::fs::write(target.join("clean.bin"), rng.bytes(10_000))?;
    Ok((target, hashed, marker.to_vec()))
}

fn generate(o: &Options, dir: &Path) -> Result<Vec<Set>> {
    let mut rng = Rng(o.seed);
    let (target, hashed, marker) = target(dir, &mut rng)?;
    let hashed_line = format!(
        "{}:{}:Herd.Bench.HashHit",
        hex(&Md5::digest(&hashed)),
        hashed.len()
    );
    let mut sets = Vec::new();

    let hdb_dir = dir.join(format!("hdb-{}", o.hdb));
    let done = hdb_dir.join(".complete");
    if !done.exists() {
        std::fs::create_dir_all(&hdb_dir)?;
        let mut r = Rng(o.seed ^ 0x4844);
        write_lines(
            &hdb_dir.join("generated.hdb"),
            |i, s| {
                if i == o.hdb / 2 {
                    s.push_str(&hashed_line);
                    s.push('\n');
                    return;
                }
                let digest = r.bytes(16);
                let size = log_uniform_size(&mut r);
                s.push_str(&format!(
                    "{}:{size}:{}\n",
                    hex(&digest),
                    sig_name("Agent", i)
                ));
            },
            o.hdb,
        )?;
        std::fs::write(
            hdb_dir.join("marker.ndb"),
            format!("Herd.Bench.BodyHit:0:*:{}\n", hex(&marker)),
        )?;
        std::fs::write(&done, "")?;
    }
    sets.push(Set {
        name: "hashes",
        sigs: hdb_dir,
        target: target.clone(),
        signatures: o.hdb + 1,
    });

    if !o.no_mixed {
        let mixed = dir.join(format!("mixed-{}-{}-{}", o.hdb, o.mixed_ndb, o.mixed_ldb));
        let done = mixed.join(".complete");
        if !done.exists() {
            std::fs::create_dir_all(&mixed)?;
            let mut r = Rng(o.seed ^ 0x4d58);
            let md5s = o.hdb * 8 / 10;
            let sha1s = (o.hdb - md5s) / 2;
            let sha256s = o.hdb - md5s - sha1s;
            write_lines(
                &mixed.join("generated.hdb"),
                |i, s| {
                    if i == md5s / 2 {
                        s.push_str(&hashed_line);
                        s.push('\n');
                        return;
                    }
                    let size = log_uniform_size(&mut r);
                    let digest = r.bytes(16);
                    s.push_str(&format!(
                        "{}:{size}:{}\n",
                        hex(&digest),
                        sig_name("Agent", i)
                    ));
                },
                md5s,
            )?;
            write_lines(
                &mixed.join("generated.hsb"),
                |i, s| {
                    let size = log_uniform_size(&mut r);
                    let digest = r.bytes(if i < sha1s { 20 } else { 32 });
                    s.push_str(&format!(
                        "{}:{size}:{}\n",
                        hex(&digest),
                        sig_name("Downloader", i)
                    ));
                },
                sha1s + sha256s,
            )?;
            write_lines(
                &mixed.join("generated.ndb"),
                |i, s| {
                    if i == 0 {
                        s.push_str(&format!("Herd.Bench.BodyHit:0:*:{}\n", hex(&marker)));
                        return;
                    }
                    let sig = body_sig(i, 16, &mut r);
                    s.push_str(&sig.line);
                    s.push('\n');
                },
                o.mixed_ndb,
            )?;
            write_lines(
                &mixed.join("generated.ldb"),
                |i, s| s.push_str(&ldb_line(i, &mut r)),
                o.mixed_ldb,
            )?;
            std::fs::write(&done, "")?;
        }
        sets.push(Set {
            name: "mixed",
            sigs: mixed,
            target,
            signatures: o.hdb + o.mixed_ndb + o.mixed_ldb,
        });
    }
    Ok(sets)
}

/// A generated `.ldb` signature: two random subsignatures, both needed.
pub(crate) fn ldb_line(i: usize, r: &mut Rng) -> String {
    let (a, b) = (r.bytes(12), r.bytes(10));
    format!(
        "Win.Trojan.Logical-{}-0;Engine:51-255,Target:0;0&1;{};{}\n",
        2_000_000 + i,
        hex(&a),
        hex(&b)
    )
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// One `herd-agent scan --json` run: (wall s, database load s, peak RSS, detections).
fn herd_scan(agent: &Path, set: &Set, index: &[&str]) -> Result<(f64, f64, u64, usize)> {
    let mut cmd = Command::new(agent);
    cmd.args(["scan", "--json", "-i", "--allow-bad-signatures"])
        .args(index)
        .arg("-d")
        .arg(&set.sigs)
        .arg(&set.target);
    let (out, secs, rss) = timed(&mut cmd)?;
    let mut load = None;
    let mut found = 0;
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).context("herd-agent --json")?;
        if let Some(s) = v.get("summary") {
            load = s["database_load_seconds"].as_f64();
        } else if v["status"] == "found" {
            found += 1;
        }
    }
    Ok((secs, load.context("no summary")?, rss, found))
}

/// One clamscan run: (wall s, load s from its summary, peak RSS, detections).
fn clamscan(set: &Set) -> Result<(f64, f64, u64, usize)> {
    let mut cmd = Command::new("clamscan");
    cmd.args(["-i", "-d"]).arg(&set.sigs).arg(&set.target);
    let (out, secs, rss) = timed(&mut cmd)?;
    let found = out.lines().filter(|l| l.ends_with(" FOUND")).count();
    // clamscan 1.x prints "Time: …" for the whole run and no separate load time; the scan of
    // three small files is milliseconds, so the whole run is its load.
    Ok((secs, secs, rss, found))
}

/// The agent's resident memory (total, anonymous, file-backed) once `watch` has loaded `set`.
fn idle_memory(agent: &Path, set: &Set, index_dir: &Path) -> Result<(u64, u64, u64)> {
    let mut child = Command::new(agent)
        .args([
            "watch",
            "--mode",
            "inotify",
            "--stop-after",
            "60",
            "--index-dir",
        ])
        .arg(index_dir)
        .arg("-d")
        .arg(&set.sigs)
        .arg(&set.target)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("herd-agent watch")?;
    let started = Instant::now();
    let status = format!("/proc/{}/status", child.id());
    let field = |text: &str, name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    // Loaded when its resident memory stops changing for a second (after its first scan).
    let mut last = 0;
    let mut stable = 0;
    let mut result = (0, 0, 0);
    while started.elapsed() < Duration::from_secs(50) {
        std::thread::sleep(Duration::from_millis(250));
        let Ok(text) = std::fs::read_to_string(&status) else {
            break;
        };
        let rss = field(&text, "VmRSS:");
        result = (rss, field(&text, "RssAnon:"), field(&text, "RssFile:"));
        stable = if rss == last { stable + 1 } else { 0 };
        last = rss;
        if stable >= 8 {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    if result.0 == 0 {
        bail!("herd-agent watch ended before it could be measured");
    }
    Ok(result)
}

pub fn run(o: Options) -> Result<()> {
    let dir = o
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("herd-bench-scan-load"));
    let sets = generate(&o, &dir)?;
    let agent = build_agent()?;
    if let Some(peak) = crate::peak_rss_bytes() {
        println!(
            "(this process's peak RSS, which bounds the children's from below: {:.0} MB)",
            mb(peak)
        );
    }
    let clam = !o.no_clamscan && Command::new("clamscan").arg("--version").output().is_ok();
    for set in &sets {
        let text_bytes: u64 = std::fs::read_dir(&set.sigs)?
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        println!(
            "\n== {} set: {} signatures, {:.0} MB of text, in {}",
            set.name,
            set.signatures,
            mb(text_bytes),
            set.sigs.display()
        );
        // Read once so every tool finds the text in the page cache, through a small buffer:
        // a child's peak RSS from `wait4` starts from this process's peak (`posix_spawn`
        // shares its memory until exec), so this process must stay small.
        for e in std::fs::read_dir(&set.sigs)? {
            let mut file = std::fs::File::open(e?.path())?;
            std::io::copy(&mut file, &mut std::io::sink())?;
        }
        let index = dir.join(format!("index-{}", set.name));
        let _ = std::fs::remove_dir_all(&index);
        let index_arg = index.to_str().context("index path is not UTF-8")?;

        let (secs, load, rss, found) = herd_scan(&agent, set, &["--index-dir", index_arg])?;
        let index_bytes: u64 = std::fs::read_dir(&index)?
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        println!(
            "herd-agent, first load (compiles the index, {:.0} MB): total {secs:.2} s, load {load:.2} s, peak RSS {:.0} MB, {found} detected",
            mb(index_bytes),
            mb(rss)
        );
        let (mut walls, mut loads, mut peak, mut found) = (Vec::new(), Vec::new(), 0, 0);
        for _ in 0..o.runs {
            let (secs, load, rss, f) = herd_scan(&agent, set, &["--index-dir", index_arg])?;
            walls.push(secs);
            loads.push(load);
            peak = peak.max(rss);
            found = f;
        }
        println!(
            "herd-agent, mapped index:   total {:.3} s, load {:.3} s, peak RSS {:.0} MB, {found} detected (medians of {}; RSS max)",
            median(walls),
            median(loads),
            mb(peak),
            o.runs
        );
        let (secs, load, rss, found) = herd_scan(&agent, set, &["--no-index"])?;
        println!(
            "herd-agent, --no-index:     total {secs:.2} s, load {load:.2} s, peak RSS {:.0} MB, {found} detected",
            mb(rss)
        );
        match idle_memory(&agent, set, &index) {
            Ok((rss, anon, file)) => println!(
                "herd-agent watch, idle with the set loaded: RSS {:.1} MB ({:.1} MB anonymous, {:.1} MB mapped file pages, shared page cache)",
                mb(rss),
                mb(anon),
                mb(file)
            ),
            Err(e) => println!("herd-agent watch: not measured ({e:#})"),
        }
        if clam {
            let (mut walls, mut peak, mut found) = (Vec::new(), 0, 0);
            for _ in 0..o.runs {
                let (secs, _, rss, f) = clamscan(set)?;
                walls.push(secs);
                peak = peak.max(rss);
                found = f;
            }
            println!(
                "clamscan:                   total {:.2} s (its load; the scan is 3 small files), peak RSS {:.0} MB, {found} detected (medians of {})",
                median(walls),
                mb(peak),
                o.runs
            );
        }
    }
    Ok(())
}
