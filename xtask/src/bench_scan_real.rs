//! `cargo xtask bench scan --real [DIR…]`: herd-agent scan against clamscan on real files (the
//! system's libraries, binaries and documentation by default), with signatures shaped by them.
//!
//! The corpus is a deterministic sample (by `--seed`) of the regular files under the
//! directories, walked without following symlinks, unreadable files skipped, bounded by
//! `--limit-mb` (default 1000 MB; clamscan takes about 20 s a GB here, per run). The signatures
//! are generated under `--dir`:
//! - `--hdb` (default 100,000) `.hdb` lines whose sizes are drawn from the sampled files' own
//!   sizes, so nearly every file must be hashed as with a real database, 20 of them the real
//!   MD5 of real files (hits);
//! - `--ndb` (default 10,000) `.ndb` lines, random like the generated benchmark's, 20 of them
//!   cut from the real files' bytes (hits; the rarest of 200 candidates, so each singles out
//!   a few files as real signatures do), half with a `??` in the middle.
//!
//! With `--clamav-size` the set has ClamAV's real size and composition instead (about what
//! `main.cvd` and `daily.cvd` hold): 3,200,000 `.hdb` MD5 and 400,000 each `.hsb` SHA-1 and
//! SHA-256 hashes, all with sizes drawn from the files' (so nearly every file is hashed three
//! ways), 100,000 `.ndb` (the 20 cuts among them) and 20,000 `.ldb` signatures; the engine's
//! in-memory rates are then left out (they would hold the whole set as parsed text).
//!
//! Then, with the page cache warm and one thread: both tools on the same file list (`-f`),
//! medians over `--runs`; detections compared file by file (every file clamscan detects must be
//! detected by herd; each file only herd detects is listed and checked against its raw bytes);
//! `herd-agent scan --cache` twice over the files found clean (the first run fills the cache,
//! the second reads nothing unchanged; detections are never cached, so they are left out); and the engine alone in memory on the same files, to show where time goes
//! (MD5 one file at a time and many at a time (`md5x`), SHA-256, the body matcher; the engine's
//! rates there hash one file at a time, as `match_bytes` does without known digests).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use herd_lab::world::Rng;
use herd_scan::walk::{self, Event};
use herd_scan::{Database, Engine, MatchOptions, Scratch};
use md5::{Digest, Md5};

use crate::bench_scan::{body_signatures, build_agent, hex, timed_cpu, warm};
use crate::bench_scan_load::{ldb_line, sig_name, write_lines};
use crate::median;

/// What `--real` needs from the scan benchmark's options.
pub(crate) struct RealOptions {
    pub(crate) dirs: Vec<PathBuf>,
    pub(crate) dir: PathBuf,
    pub(crate) limit_mb: u64,
    pub(crate) hdb: usize,
    pub(crate) ndb: usize,
    pub(crate) runs: usize,
    pub(crate) anchor_min: usize,
    pub(crate) no_clamscan: bool,
    pub(crate) seed: u64,
    pub(crate) clamav_size: bool,
}

/// ClamAV's composition (`--clamav-size`): hashes by kind, body and logical signatures.
const CLAMAV_MD5: usize = 3_200_000;
const CLAMAV_SHA1: usize = 400_000;
const CLAMAV_SHA256: usize = 400_000;
const CLAMAV_NDB: usize = 100_000;
const CLAMAV_LDB: usize = 20_000;

/// The directories scanned when `--real` names none: libraries, binaries, documentation.
pub(crate) const DEFAULT_DIRS: &[&str] = &["/usr/lib", "/usr/bin", "/usr/share/doc"];

/// Files larger than this are left out: both tools skip them by default (`--max-filesize`).
const MAX_FILE: u64 = 100 << 20;

/// Signatures that hit, of each kind.
const PLANTED: usize = 20;

/// A body signature cut from a real file: the `.ndb` line and how to check it on raw bytes.
struct Cut {
    name: String,
    /// The bytes, `None` where the signature has `??`.
    pattern: Vec<Option<u8>>,
}

impl Cut {
    fn line(&self) -> String {
        let body: String = self
            .pattern
            .iter()
            .map(|b| b.map_or_else(|| "??".to_owned(), |b| format!("{b:02x}")))
            .collect();
        format!("{}:0:*:{body}\n", self.name)
    }
    fn occurs_in(&self, data: &[u8]) -> bool {
        data.windows(self.pattern.len()).any(|w| {
            w.iter()
                .zip(&self.pattern)
                .all(|(b, p)| p.is_none_or(|p| p == *b))
        })
    }
}

/// The sampled corpus: paths (sorted) and sizes.
fn sample_corpus(o: &RealOptions) -> Result<Vec<(PathBuf, u64)>> {
    let mut all = Vec::new();
    for root in &o.dirs {
        walk::walk(root, true, &mut |event| {
            if let Event::File { path, size, .. } = event
                && (1..=MAX_FILE).contains(&size)
                && std::fs::File::open(&path).is_ok()
                && path.to_str().is_some_and(|p| !p.contains('\n'))
            {
                all.push((path, size));
            }
        });
    }
    if all.is_empty() {
        bail!("no readable files under {:?}", o.dirs);
    }
    // Fisher–Yates with the benchmark's seed: the same sample for the same directories.
    let mut rng = Rng(o.seed);
    for i in (1..all.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        all.swap(i, j);
    }
    let limit = o.limit_mb * 1_000_000;
    let mut total = 0;
    let mut picked: Vec<(PathBuf, u64)> = all
        .into_iter()
        .take_while(|(_, size)| {
            total += size;
            total <= limit
        })
        .collect();
    picked.sort();
    Ok(picked)
}

/// A run of at least 24 bytes from `data` that is not mostly one value (so it does not
/// match everywhere), with `??` in the middle for every other signature.
fn cut_from(data: &[u8], i: usize, rng: &mut Rng) -> Option<Cut> {
    let len = 24 + rng.below(17) as usize;
    if data.len() < len {
        return None;
    }
    for _ in 0..50 {
        let at = rng.below((data.len() - len + 1) as u64) as usize;
        let bytes = &data[at..at + len];
        let distinct: BTreeSet<u8> = bytes.iter().copied().collect();
        if distinct.len() >= 12 {
            let mut pattern: Vec<Option<u8>> = bytes.iter().copied().map(Some).collect();
            if i % 2 == 1 {
                pattern[len / 2] = None;
            }
            return Some(Cut {
                name: format!("Herd.Real.Cut-{i}"),
                pattern,
            });
        }
    }
    None
}

struct Signatures {
    dir: PathBuf,
    /// Hash hits: name → (MD5, size).
    hashes: BTreeMap<String, ([u8; 16], u64)>,
    cuts: Vec<Cut>,
}

fn generate(o: &RealOptions, corpus: &[(PathBuf, u64)]) -> Result<Signatures> {
    let dir = o.dir.join("real-sigs");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut rng = Rng(o.seed ^ 0x5eed);
    let pick = |rng: &mut Rng| &corpus[rng.below(corpus.len() as u64) as usize];

    let (hdb_count, ndb_count) = match o.clamav_size {
        true => (CLAMAV_MD5, CLAMAV_NDB),
        false => (o.hdb, o.ndb),
    };
    let mut planted = Vec::new();
    for i in 0..PLANTED.min(hdb_count) {
        let (path, size) = pick(&mut rng);
        let digest: [u8; 16] = Md5::digest(std::fs::read(path)?).into();
        planted.push((format!("Herd.Real.Hash-{i}"), digest, *size));
    }
    // Streamed: ClamAV's size is 230 MB of text.
    write_lines(
        &dir.join("real.hdb"),
        |i, line| match planted.get(i) {
            Some((name, digest, size)) => {
                line.push_str(&format!("{}:{size}:{name}\n", hex(digest)));
            }
            None => {
                // A size a real file has, a digest none has.
                let (_, size) = pick(&mut rng);
                let digest = hex(&rng.bytes(16));
                line.push_str(&format!("{digest}:{size}:{}\n", sig_name("Real", i)));
            }
        },
        hdb_count,
    )?;
    let hashes = planted
        .into_iter()
        .map(|(name, digest, size)| (name, (digest, size)))
        .collect();
    if o.clamav_size {
        write_lines(
            &dir.join("real.hsb"),
            |i, line| {
                let (_, size) = pick(&mut rng);
                let digest = hex(&rng.bytes(if i < CLAMAV_SHA1 { 20 } else { 32 }));
                line.push_str(&format!("{digest}:{size}:{}\n", sig_name("Downloader", i)));
            },
            CLAMAV_SHA1 + CLAMAV_SHA256,
        )?;
        write_lines(
            &dir.join("real.ldb"),
            |i, line| line.push_str(&ldb_line(i, &mut rng)),
            CLAMAV_LDB,
        )?;
    }

    let cuts = rare_cuts(corpus, PLANTED.min(ndb_count), &mut rng)?;
    let mut ndb: String = cuts.iter().map(Cut::line).collect();
    let random = body_signatures(ndb_count - cuts.len(), o.anchor_min, &mut rng);
    for b in &random {
        ndb.push_str(&b.line);
        ndb.push('\n');
    }
    std::fs::write(dir.join("real.ndb"), ndb)?;
    Ok(Signatures { dir, hashes, cuts })
}

/// `count` body signatures cut from the corpus that each match as few of its files as
/// possible: real signatures single out a few files, and a cut that is common (a compiler's
/// boilerplate, a bytecode header) would detect thousands, which neither tells much about
/// agreement nor leaves the scan cache anything to skip. Ten candidates per wanted cut are
/// counted in one pass over the corpus with the engine itself.
fn rare_cuts(corpus: &[(PathBuf, u64)], count: usize, rng: &mut Rng) -> Result<Vec<Cut>> {
    let mut candidates = Vec::new();
    let mut tries = 0;
    while candidates.len() < count * 10 && tries < count * 100 {
        tries += 1;
        let (path, _) = &corpus[rng.below(corpus.len() as u64) as usize];
        if let Some(cut) = cut_from(&std::fs::read(path)?, candidates.len(), rng) {
            candidates.push(cut);
        }
    }
    let mut db = Database::new();
    let lines: String = candidates.iter().map(Cut::line).collect();
    if let Some(e) = db.load("candidates.ndb", lines.as_bytes()).first() {
        bail!("a cut signature failed to load: {e}");
    }
    let engine = Engine::new(&db);
    let mut hits: BTreeMap<String, usize> = BTreeMap::new();
    let mut scratch = Scratch::default();
    let options = MatchOptions {
        all_matches: true,
        ..MatchOptions::default()
    };
    for (path, _) in corpus {
        let data = std::fs::read(path)?;
        let names = engine
            .match_bytes(&data, &mut scratch, options)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for name in names {
            *hits.entry(name.to_string()).or_default() += 1;
        }
    }
    let files = |c: &Cut| hits.get(&c.name).copied().unwrap_or(usize::MAX);
    candidates.sort_by_key(|c| files(c));
    candidates.truncate(count);
    for (i, cut) in candidates.iter_mut().enumerate() {
        cut.name = format!("Herd.Real.Cut-{i}");
    }
    Ok(candidates)
}

/// `path: NAME FOUND` lines of clamscan (its `.UNOFFICIAL` suffix removed), by file.
fn clamscan_found(output: &str) -> BTreeMap<String, String> {
    output
        .lines()
        .filter_map(|l| l.strip_suffix(" FOUND"))
        .filter_map(|l| l.rsplit_once(": "))
        .map(|(p, n)| (p.to_owned(), n.trim_end_matches(".UNOFFICIAL").to_owned()))
        .collect()
}

/// Detections in herd-agent's JSON lines, by file: (signature, member path).
fn herd_found(output: &str) -> BTreeMap<String, (String, String)> {
    output
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["status"] == "found")
        .filter_map(|v| {
            let d = &v["detections"][0];
            Some((
                v["path"].as_str()?.to_owned(),
                (
                    d["signature"].as_str()?.to_owned(),
                    d["member"].as_str().unwrap_or("").to_owned(),
                ),
            ))
        })
        .collect()
}

fn herd_summary(output: &str) -> Result<serde_json::Value> {
    let last = output
        .lines()
        .last()
        .context("no summary from herd-agent")?;
    Ok(serde_json::from_str::<serde_json::Value>(last)?["summary"].clone())
}

pub(crate) fn run(o: &RealOptions) -> Result<()> {
    std::fs::create_dir_all(&o.dir)?;
    let corpus = sample_corpus(o)?;
    let bytes: u64 = corpus.iter().map(|(_, s)| s).sum();
    let list = o.dir.join("real-files.txt");
    let text: String = corpus
        .iter()
        .map(|(p, _)| format!("{}\n", p.display()))
        .collect();
    std::fs::write(&list, text)?;
    let sigs = generate(o, &corpus)?;
    let set = match o.clamav_size {
        true => format!(
            "ClamAV's size: {CLAMAV_MD5} .hdb MD5 ({PLANTED} real digests) + {CLAMAV_SHA1} SHA-1 and {CLAMAV_SHA256} SHA-256 .hsb (sizes drawn from the files') + {CLAMAV_NDB} .ndb ({} cut from the files) + {CLAMAV_LDB} .ldb",
            sigs.cuts.len()
        ),
        false => format!(
            "{} .hdb (sizes drawn from the files', {PLANTED} real digests) + {} .ndb ({} cut from the files)",
            o.hdb,
            o.ndb,
            sigs.cuts.len()
        ),
    };
    println!(
        "real corpus: {:.2} GB in {} files sampled from {:?} (--limit-mb {}); signatures: {set}",
        bytes as f64 / 1e9,
        corpus.len(),
        o.dirs,
        o.limit_mb,
    );
    let paths: Vec<PathBuf> = corpus.iter().map(|(p, _)| p.clone()).collect();
    warm(&paths)?;
    let agent = build_agent()?;
    let sig_dir = sigs.dir.to_str().context("signature path is not UTF-8")?;
    let list_arg = list.to_str().context("list path is not UTF-8")?;
    let cache = o.dir.join("real-scan.cache");
    let cache_arg = cache.to_str().context("cache path is not UTF-8")?;

    // herd-agent: scan time = total − load (from its JSON summary); then the cached pair.
    // Wall and CPU times both: the CPU time is what the command cost whatever else runs.
    let herd = |extra: &[&str], list: &str| -> Result<(String, Times)> {
        let mut cmd = Command::new(&agent);
        cmd.args(["scan", "--json", "-d", sig_dir, "-f", list])
            .args(extra);
        let (out, wall, _, cpu) = timed_cpu(&mut cmd)?;
        let load = herd_summary(&out)?["database_load_seconds"]
            .as_f64()
            .context("no load time")?;
        Ok((out, Times { wall, cpu, load }))
    };
    let empty = o.dir.join("empty.txt");
    std::fs::write(&empty, b"x")?;
    let empty = empty.to_str().context("path is not UTF-8")?;
    // The database load's CPU time, from a run over one tiny file (as for clamscan below).
    let mut herd_load_cpu = Vec::new();
    for _ in 0..o.runs {
        let mut cmd = Command::new(&agent);
        cmd.args(["scan", "--no-summary", "-d", sig_dir, empty]);
        herd_load_cpu.push(timed_cpu(&mut cmd)?.3);
    }
    let herd_load_cpu = median(herd_load_cpu);
    let (mut plain, mut first, mut second) = (
        Runs::new(herd_load_cpu),
        Runs::new(herd_load_cpu),
        Runs::new(herd_load_cpu),
    );
    let mut herd_out = String::new();
    for _ in 0..o.runs {
        let (out, t) = herd(&[], list_arg)?;
        plain.push(t);
        herd_out = out;
    }
    let found_herd = herd_found(&herd_out);
    // The cache remembers clean files only (a detection is read at every scan), so the cached
    // pair runs over the files found clean: what a scheduled scan of a healthy machine sees.
    let clean_list = o.dir.join("real-files-clean.txt");
    let clean: Vec<&PathBuf> = paths
        .iter()
        .filter(|p| p.to_str().is_some_and(|p| !found_herd.contains_key(p)))
        .collect();
    let text: String = clean.iter().map(|p| format!("{}\n", p.display())).collect();
    std::fs::write(&clean_list, text)?;
    let clean_arg = clean_list.to_str().context("list path is not UTF-8")?;
    let mut cached = Vec::new();
    for _ in 0..o.runs {
        let _ = std::fs::remove_file(&cache);
        first.push(herd(&["--cache", cache_arg], clean_arg)?.1);
        let (out, t) = herd(&["--cache", cache_arg], clean_arg)?;
        cached = out
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["cached"] == true)
            .filter_map(|v| v["path"].as_str().map(str::to_owned))
            .collect();
        second.push(t);
    }
    // Files found clean but undecidable (an archive limit left members unseen) are never
    // remembered either; the pair runs again without them to show the cache's own cost.
    let cacheable_list = o.dir.join("real-files-cacheable.txt");
    let text: String = cached.iter().map(|p| format!("{p}\n")).collect();
    std::fs::write(&cacheable_list, text)?;
    let cacheable_arg = cacheable_list.to_str().context("list path is not UTF-8")?;
    let (mut first_c, mut second_c) = (Runs::new(herd_load_cpu), Runs::new(herd_load_cpu));
    for _ in 0..o.runs {
        let _ = std::fs::remove_file(&cache);
        first_c.push(herd(&["--cache", cache_arg], cacheable_arg)?.1);
        second_c.push(herd(&["--cache", cache_arg], cacheable_arg)?.1);
    }
    let mb = bytes as f64 / 1e6;
    println!(
        "herd-agent scan: wall {:.2} s, CPU {:.2} s, database load {:.2} s wall, {herd_load_cpu:.2} s CPU; scan {:.0} MB/s by CPU time ({:.0} MB/s by wall time); {} files detected",
        plain.wall(),
        plain.cpu(),
        plain.load(),
        mb / plain.scan_cpu(),
        mb / plain.scan_wall(),
        found_herd.len()
    );
    println!(
        "herd-agent scan --cache over the {} files found clean: first run (fills the cache) CPU {:.2} s (wall {:.2} s), second run CPU {:.2} s (wall {:.2} s): {:.1}× faster by CPU time, {:.1}× without the database load both times (target ≥ 10×)",
        clean.len(),
        first.cpu(),
        first.wall(),
        second.cpu(),
        second.wall(),
        first.cpu() / second.cpu(),
        first.scan_cpu() / second.scan_cpu(),
    );
    println!(
        "herd-agent scan --cache over the {} of them it could remember ({} undecidable, read every time): first run CPU {:.2} s (wall {:.2} s), second run CPU {:.2} s (wall {:.2} s): {:.1}× faster by CPU time, {:.1}× without the database load both times",
        cached.len(),
        clean.len() - cached.len(),
        first_c.cpu(),
        first_c.wall(),
        second_c.cpu(),
        second_c.wall(),
        first_c.cpu() / second_c.cpu(),
        first_c.scan_cpu() / second_c.scan_cpu(),
    );

    if o.no_clamscan {
        println!("clamscan: skipped (--no-clamscan)");
    } else if Command::new("clamscan").arg("--version").output().is_err() {
        println!("clamscan: skipped, not on PATH (apt-get install clamav)");
    } else {
        let (mut load_wall, mut load_cpu) = (Vec::new(), Vec::new());
        for _ in 0..o.runs {
            let (_, wall, _, cpu) =
                timed_cpu(Command::new("clamscan").args(["--no-summary", "-d", sig_dir, empty]))?;
            load_wall.push(wall);
            load_cpu.push(cpu);
        }
        let (mut wall, mut cpu, mut clam_out) = (Vec::new(), Vec::new(), String::new());
        for _ in 0..o.runs {
            let (out, w, _, c) = timed_cpu(Command::new("clamscan").args([
                "--no-summary",
                "-i",
                "-d",
                sig_dir,
                "-f",
                list_arg,
            ]))?;
            wall.push(w);
            cpu.push(c);
            clam_out = out;
        }
        let (clam_wall, clam_cpu) = (median(wall), median(cpu));
        let clam_scan_cpu = clam_cpu - median(load_cpu);
        let clam_scan_wall = clam_wall - median(load_wall);
        let found_clam = clamscan_found(&clam_out);
        println!(
            "clamscan:        wall {clam_wall:.2} s, CPU {clam_cpu:.2} s; scan {:.0} MB/s by CPU time ({:.0} MB/s by wall time); {} files detected",
            mb / clam_scan_cpu,
            mb / clam_scan_wall,
            found_clam.len()
        );
        println!(
            "throughput ratio herd/clamscan on real files, by CPU time: {:.1}× excluding database load, {:.1}× including it (by wall time {:.1}× and {:.1}×; target ≥ 10×); the cached second scan {:.0}× clamscan",
            clam_scan_cpu / plain.scan_cpu(),
            clam_cpu / plain.cpu(),
            clam_scan_wall / plain.scan_wall(),
            clam_wall / plain.wall(),
            clam_cpu / second.cpu()
        );
        agreement(&found_clam, &found_herd, &sigs)?;
    }

    if o.clamav_size {
        println!("in memory: left out with --clamav-size");
        return Ok(());
    }
    in_memory(o, &paths, &sigs)
}

/// One timed run of herd-agent: wall and CPU seconds, and its own database load time.
#[derive(Debug, Clone, Copy)]
struct Times {
    wall: f64,
    cpu: f64,
    load: f64,
}

/// Several runs, and the CPU time of loading the database; each figure is a median.
#[derive(Debug)]
struct Runs(Vec<Times>, f64);

impl Runs {
    fn new(load_cpu: f64) -> Runs {
        Runs(Vec::new(), load_cpu)
    }
    fn push(&mut self, t: Times) {
        self.0.push(t);
    }
    fn of(&self, f: impl Fn(&Times) -> f64) -> f64 {
        median(self.0.iter().map(f).collect())
    }
    fn wall(&self) -> f64 {
        self.of(|t| t.wall)
    }
    fn cpu(&self) -> f64 {
        self.of(|t| t.cpu)
    }
    fn load(&self) -> f64 {
        self.of(|t| t.load)
    }
    fn scan_cpu(&self) -> f64 {
        self.of(|t| (t.cpu - self.1).max(1e-3))
    }
    fn scan_wall(&self) -> f64 {
        self.of(|t| (t.wall - t.load).max(1e-3))
    }
}

/// Detections compared file by file; each file only herd detects is checked on its raw bytes.
fn agreement(
    clam: &BTreeMap<String, String>,
    herd: &BTreeMap<String, (String, String)>,
    sigs: &Signatures,
) -> Result<()> {
    let (mut missed, mut both) = (0, 0);
    for (path, name) in clam {
        match herd.get(path) {
            Some((h, _)) => {
                // The first few as a sample; every disagreement is listed below.
                both += 1;
                if both <= 10 {
                    println!("  both     {path}: clamscan {name}, herd {h}");
                }
            }
            None => {
                missed += 1;
                println!("  MISSED   {path}: clamscan {name}, herd nothing");
            }
        }
    }
    for (path, (name, member)) in herd.iter().filter(|(p, _)| !clam.contains_key(*p)) {
        let data = std::fs::read(path)?;
        let why = if let Some((digest, size)) = sigs.hashes.get(name) {
            let raw: [u8; 16] = Md5::digest(&data).into();
            if raw == *digest && data.len() as u64 == *size {
                "the file's raw MD5 and size are the signature's".to_owned()
            } else {
                "UNEXPLAINED: the raw MD5 differs".to_owned()
            }
        } else if let Some(cut) = sigs.cuts.iter().find(|c| &c.name == name) {
            if cut.occurs_in(&data) {
                "its raw bytes contain the signature".to_owned()
            } else if !member.is_empty() {
                format!("inside container member {member}, which clamscan did not open")
            } else {
                "UNEXPLAINED: not in the raw bytes".to_owned()
            }
        } else {
            format!("a random signature ({member}): UNEXPLAINED")
        };
        println!("  herd     {path}: herd {name}, clamscan nothing: {why}");
    }
    let only_herd = herd.keys().filter(|p| !clam.contains_key(*p)).count();
    println!(
        "agreement: clamscan {} files, herd {} files, both {both} (first 10 listed); missed by herd {missed}; only herd {only_herd} (explained above)",
        clam.len(),
        herd.len()
    );
    Ok(())
}

/// Where the time goes: the engine alone over the files held in memory.
fn in_memory(o: &RealOptions, paths: &[PathBuf], sigs: &Signatures) -> Result<()> {
    let mut data = Vec::with_capacity(paths.len());
    for p in paths {
        let mut buf = Vec::new();
        std::fs::File::open(p)?.read_to_end(&mut buf)?;
        data.push(buf);
    }
    let bytes: usize = data.iter().map(Vec::len).sum();
    let rate = |f: &mut dyn FnMut(&[u8])| {
        let mut rates = Vec::new();
        for _ in 0..o.runs {
            let started = Instant::now();
            for d in &data {
                f(d);
            }
            rates.push(bytes as f64 / 1e9 / started.elapsed().as_secs_f64());
        }
        median(rates)
    };
    let md5 = rate(&mut |d| {
        std::hint::black_box(Md5::digest(d));
    });
    // Many files at once (`md5x`), fed about as herd-agent scan feeds them: batches of 128 files.
    let md5_lanes = {
        let mut rates = Vec::new();
        for _ in 0..o.runs {
            let started = Instant::now();
            for batch in data.chunks(128) {
                let inputs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
                std::hint::black_box(herd_scan::md5x::md5_many(&inputs));
            }
            rates.push(bytes as f64 / 1e9 / started.elapsed().as_secs_f64());
        }
        median(rates)
    };
    let sha256 = rate(&mut |d| {
        use sha2::Sha256;
        std::hint::black_box(<Sha256 as sha2::Digest>::digest(d));
    });
    let mut engines = Vec::new();
    for (label, files) in [
        ("hash + body signatures", &["real.hdb", "real.ndb"][..]),
        ("body signatures only", &["real.ndb"][..]),
        ("hash signatures only", &["real.hdb"][..]),
    ] {
        let mut db = Database::new();
        for f in files {
            let errors = db.load(f, &std::fs::read(sigs.dir.join(f))?);
            if let Some(e) = errors.first() {
                bail!("generated signatures failed to load: {e}");
            }
        }
        engines.push((label, Engine::new(&db)));
    }
    println!(
        "in memory, one thread: MD5 one file at a time {md5:.2} GB/s, many at a time (md5x: 16 lanes with AVX-512, 8 with AVX2; batches of 128 files) {md5_lanes:.2} GB/s, SHA-256 {sha256:.2} GB/s (median of {})",
        o.runs
    );
    for (label, engine) in &engines {
        let mut scratch = Scratch::default();
        let r = rate(&mut |d| {
            let _ = engine.match_bytes(d, &mut scratch, MatchOptions::default());
        });
        println!("in memory, engine with {label}: {r:.2} GB/s");
    }
    Ok(())
}
