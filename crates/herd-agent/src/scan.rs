//! `herd-agent scan`: loads ClamAV-format databases, walks the given paths and prints results
//! the way `clamscan` does, so scripts written for clamscan keep working.
//!
//! Output, matching clamscan 1.4 without `--infected`: `PATH: NAME FOUND` per detection (the
//! first one, or all with `--allmatch`), `PATH: OK` for clean files, `PATH: Empty file`,
//! `PATH: Symbolic link` for links met inside directories (never followed), then the
//! `SCAN SUMMARY` block. With `-i` only detections are printed. Differences, on purpose: names
//! carry no `.UNOFFICIAL` suffix; an unreadable file prints `PATH: REASON ERROR` (clamd's
//! form) on stdout; files over `--max-filesize` are checked against hash signatures of their
//! size (streaming) and otherwise print `PATH: Skipped (larger than …)` instead of
//! clamscan's silent `OK`; archive limits print `WARNING:` lines on stderr.
//! Exit code: 1 if anything was found, else 2 if any error occurred, else 0 (as clamscan).

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use herd_fs::FileId;
use herd_scan::cvd::Keys;
use herd_scan::walk::{self, Event, ReadOutcome};
use herd_scan::{Detection, KnownDigests, Limits, MatchOptions, Scanner, Scratch};
use serde_json::json;

use crate::quarantine::Stores;
use crate::scan_cache::{
    FileStamp, Remembered, SETTLE, ScanCache, SetKey, Undecided, ignore_lease_breaks, nobody_writes,
};
use crate::signatures;

#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// A signature database file (.hdb, .hsb, .ndb, .ldb; .yar/.yara in builds with the `yara`
    /// feature; ClamAV's signed .cvd and .cld containers of them) or a directory of them, read
    /// as `clamscan -d` reads one; repeatable.
    #[arg(short = 'd', long = "database", value_name = "PATH")]
    databases: Vec<PathBuf>,
    /// Without -d: scan with the definitions of the product active in this prefix (the
    /// `current` link, as `herd-agent run --prefix` manages it).
    #[arg(long, value_name = "DIR")]
    prefix: Option<PathBuf>,
    /// Files and directories to scan.
    #[arg(required_unless_present = "file_list", value_name = "PATH")]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    index: IndexArgs,
    /// Also scan the paths listed in this file, one per line (clamscan's --file-list).
    #[arg(short = 'f', long, value_name = "FILE")]
    file_list: Option<PathBuf>,
    /// Remember files found clean (or undecidable, with their reasons) in this cache file, and
    /// do not read them again while their device, inode, size, modification and change times,
    /// the signature set and the scan's limits are unchanged (see ARCHITECTURE.md, "The
    /// persistent scan cache"). Off unless given.
    #[arg(long, value_name = "FILE")]
    cache: Option<PathBuf>,
    /// At most this many files are remembered in --cache (44 bytes each on disk).
    #[arg(long, value_name = "N", default_value_t = crate::scan_cache::DEFAULT_MAX_ENTRIES)]
    cache_max_entries: usize,
    /// Print one JSON object per file and a summary object instead of clamscan's text.
    #[arg(long)]
    json: bool,
    /// Scan directories recursively (the default; accepted for clamscan compatibility).
    #[arg(short = 'r', long, overrides_with = "no_recursive")]
    recursive: bool,
    /// Scan only the files directly inside the given directories.
    #[arg(long)]
    no_recursive: bool,
    /// Print only infected files.
    #[arg(short = 'i', long)]
    infected: bool,
    /// Report every matching signature, not just the first.
    #[arg(short = 'z', long)]
    allmatch: bool,
    /// Do not print the summary block.
    #[arg(long)]
    no_summary: bool,
    /// Files larger than this are skipped (suffixes K, M, G).
    #[arg(long, value_name = "SIZE", default_value = "100M", value_parser = parse_size)]
    max_filesize: u64,
    /// Load the good lines of databases with bad lines instead of refusing to scan.
    #[arg(long)]
    allow_bad_signatures: bool,
    /// Scanning threads (one walker feeds them). With more than one, output follows completion.
    #[arg(short = 'j', long, default_value_t = 1, value_name = "N")]
    threads: usize,
    /// Copy suspicious hits and files that could not be quarantined, neutralised, into this
    /// sample queue for upload to the center.
    #[arg(long, value_name = "DIR")]
    samples: Option<PathBuf>,
    /// Signature name prefixes that mark a hit as suspicious: such files are captured as
    /// samples and left in place rather than quarantined. Repeatable.
    #[arg(long, value_name = "PREFIX", default_values_t = ["Suspicious.".to_owned(), "Heuristics.".to_owned()])]
    sample_prefix: Vec<String>,
    /// Move infected files into this quarantine directory, neutralised.
    #[arg(long, value_name = "DIR")]
    quarantine: Option<PathBuf>,
}

/// Where the compiled hash signature index lives (shared by `scan` and `watch`).
#[derive(Debug, Clone, clap::Args)]
pub struct IndexArgs {
    /// Keep the compiled hash signature index here, so that later loads map it instead of
    /// parsing [default: <prefix>/signature-index with --prefix, else
    /// $XDG_CACHE_HOME/herd-agent/signatures or ~/.cache/herd-agent/signatures, for sets of
    /// 100,000 hash signatures or more].
    #[arg(long, value_name = "DIR", conflicts_with = "no_index")]
    index_dir: Option<PathBuf>,
    /// Compile the signatures in memory at every load; write no index.
    #[arg(long)]
    no_index: bool,
}

impl IndexArgs {
    pub(crate) fn place(&self, prefix: Option<&Path>) -> signatures::IndexPlace {
        match (&self.index_dir, self.no_index) {
            (_, true) => signatures::IndexPlace::None,
            (Some(dir), false) => signatures::IndexPlace::Dir(dir.clone()),
            (None, false) => signatures::default_index_dir(prefix),
        }
    }
}

/// Loads the databases, reporting how the index was used when it was (re)built or refused.
pub(crate) fn load_signatures(
    databases: &[PathBuf],
    index: &IndexArgs,
    prefix: Option<&Path>,
) -> Result<signatures::Loaded> {
    let loaded = signatures::load(databases, &index.place(prefix), &Keys::default())?;
    match &loaded.index {
        signatures::IndexOutcome::Built { path, why } if why != "no index yet" => {
            eprintln!(
                "herd-agent: rebuilt the signature index {} ({why})",
                path.display()
            );
        }
        signatures::IndexOutcome::Unwritable { path, error } => {
            eprintln!(
                "WARNING: cannot write the signature index {} ({error}); compiled in memory",
                path.display()
            );
        }
        _ => {}
    }
    Ok(loaded)
}

pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c.to_ascii_uppercase()),
        _ => (s, ' '),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 100M"))?;
    let scale = match unit {
        ' ' => 1,
        'K' => 1 << 10,
        'M' => 1 << 20,
        'G' => 1 << 30,
        _ => return Err(format!("unknown size unit in {s:?} (K, M or G)")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[derive(Debug, Default)]
struct Totals {
    dirs: u64,
    files: u64,
    infected: u64,
    errors: u64,
    bytes: u64,
}

/// Everything the printer needs; text and JSON output are two views of it.
struct Printer {
    json: bool,
    infected_only: bool,
    progress: Option<Progress>,
}

struct Progress {
    last: Instant,
    shown: bool,
}

impl Printer {
    fn line(&mut self, path: &Path, status: &str, text: &str, extra: serde_json::Value) {
        if self.infected_only && status != "found" {
            return;
        }
        self.clear_progress();
        let mut out = std::io::stdout().lock();
        let result = if self.json {
            let mut obj = json!({ "path": path.display().to_string(), "status": status });
            if let (Some(o), serde_json::Value::Object(e)) = (obj.as_object_mut(), extra) {
                o.extend(e);
            }
            writeln!(out, "{obj}")
        } else {
            writeln!(out, "{}: {text}", path.display())
        };
        // A closed stdout (e.g. `| head`) ends the output, not the scan's exit code.
        drop(result);
    }

    fn warn(&mut self, text: &str) {
        self.clear_progress();
        eprintln!("WARNING: {text}");
    }

    fn clear_progress(&mut self) {
        if let Some(p) = &mut self.progress
            && p.shown
        {
            eprint!("\r\x1b[K");
            p.shown = false;
        }
    }

    fn tick(&mut self, totals: &Totals) {
        if let Some(p) = &mut self.progress
            && p.last.elapsed() >= Duration::from_millis(200)
        {
            eprint!(
                "\r\x1b[Kscanning: {} files, {:.1} MB",
                totals.files,
                totals.bytes as f64 / 1e6
            );
            p.last = Instant::now();
            p.shown = true;
        }
    }
}

/// What happened to one walked path. Workers produce these; only the printer prints, so
/// output lines never interleave and the totals are counted in one place.
enum Outcome {
    Scanned {
        detections: Vec<Detection>,
        error: Option<String>,
        quarantined: Option<Result<String, String>>,
        sample: Option<Result<String, String>>,
    },
    /// Scanned by an earlier scan with the same signatures and limits, and unchanged since:
    /// not read. Clean, or undecidable with its notes (in `FileResult::notes`) and error.
    Cached {
        error: Option<String>,
    },
    Empty,
    TooLarge(u64),
    Symlink,
    /// Replaced by something other than a regular file since the walk: nothing to say.
    Gone,
    Unsupported,
    Error(String),
}

struct FileResult {
    path: PathBuf,
    outcome: Outcome,
    notes: Vec<String>,
    bytes: u64,
}

enum Message {
    Dir,
    File(FileResult),
}

impl Printer {
    fn emit(&mut self, r: FileResult, totals: &mut Totals) {
        for note in &r.notes {
            self.warn(&format!("{}: {note}", r.path.display()));
        }
        let path = &r.path;
        match r.outcome {
            Outcome::Error(e) => {
                totals.errors += 1;
                self.line(path, "error", &format!("{e} ERROR"), json!({ "error": e }));
            }
            Outcome::Unsupported => {
                totals.errors += 1;
                self.warn(&format!("{}: Not supported file type", path.display()));
            }
            Outcome::Empty => self.line(path, "empty", "Empty file", json!({})),
            Outcome::Cached { error: None } => {
                totals.files += 1;
                self.line(path, "ok", "OK", json!({ "cached": true }));
            }
            Outcome::Cached { error: Some(e) } => {
                totals.files += 1;
                totals.errors += 1;
                let extra = json!({ "error": e, "cached": true });
                self.line(path, "error", &format!("{e} ERROR"), extra);
            }
            Outcome::Symlink => self.line(path, "symlink", "Symbolic link", json!({})),
            Outcome::Gone => {}
            Outcome::TooLarge(max) => {
                let text = format!("Skipped (larger than --max-filesize {max} bytes)");
                self.line(path, "skipped", &text, json!({ "reason": "max-filesize" }));
            }
            Outcome::Scanned {
                detections,
                error,
                quarantined,
                sample,
            } => {
                totals.files += 1;
                totals.bytes += r.bytes;
                if let Some(e) = &error {
                    totals.errors += 1;
                    self.line(path, "error", &format!("{e} ERROR"), json!({ "error": e }));
                }
                if detections.is_empty() {
                    if error.is_none() {
                        self.line(path, "ok", "OK", json!({}));
                    }
                    return;
                }
                totals.infected += 1;
                for (what, outcome) in [("quarantine", &quarantined), ("sample capture", &sample)] {
                    if let Some(Err(e)) = outcome {
                        totals.errors += 1;
                        let text = format!("{what} failed: {e} ERROR");
                        let e = format!("{what} failed: {e}");
                        self.line(path, "error", &text, json!({ "error": e }));
                    }
                }
                if self.json {
                    let list: Vec<_> = detections
                        .iter()
                        .map(|d| json!({ "signature": &*d.name, "member": d.path.to_string() }))
                        .collect();
                    let q = quarantined.and_then(Result::ok);
                    let sample = sample.and_then(Result::ok);
                    let extra = json!({ "detections": list, "quarantined": q, "sample": sample });
                    self.line(path, "found", "", extra);
                    return;
                }
                for d in &detections {
                    self.line(path, "found", &format!("{} FOUND", d.name), json!({}));
                }
                if let Some(Ok(id)) = quarantined {
                    self.line(
                        path,
                        "found",
                        &format!("moved to quarantine as {id}"),
                        json!({}),
                    );
                }
                if let Some(Ok(id)) = sample {
                    self.line(
                        path,
                        "found",
                        &format!("captured as sample {id}"),
                        json!({}),
                    );
                }
            }
        }
    }
}

/// Turns a walk event into a message, or hands a file to `scan` (inline or to a worker).
fn event_message(
    event: Event,
    root: &Path,
    scan: &mut dyn FnMut(PathBuf, Walked, u64) -> Option<Message>,
) -> Option<Message> {
    let file = |path, outcome| {
        Some(Message::File(FileResult {
            path,
            outcome,
            notes: Vec::new(),
            bytes: 0,
        }))
    };
    match event {
        Event::Dir(_) => Some(Message::Dir),
        Event::SkippedDir(_) => None,
        Event::Symlink(path) => file(path, Outcome::Symlink),
        // Like clamscan: a FIFO or device named on the command line is an error; one met
        // inside a directory is silently passed over.
        Event::Special(path) if path == root => file(path, Outcome::Unsupported),
        Event::Special(_) => None,
        Event::Error { path, error } => file(path, Outcome::Error(error.to_string())),
        Event::File { path, id, size } => scan(
            path,
            Some(FileId {
                dev: id.0,
                ino: id.1,
            }),
            size,
        ),
    }
}

/// The definition files of the product active in `prefix`, as its manifest lists them.
pub(crate) fn active_definitions(prefix: &Path) -> Result<Vec<PathBuf>> {
    let dir = herd_package::active_dir(prefix)
        .with_context(|| format!("cannot read {}/current", prefix.display()))?
        .with_context(|| {
            format!(
                "no vaccine product is active in {} (it has no `current` link); pass -d PATH",
                prefix.display()
            )
        })?;
    let manifest = herd_package::installed_manifest(&dir)
        .with_context(|| format!("the active product in {} is broken", prefix.display()))?;
    Ok(manifest.definitions.iter().map(|d| dir.join(d)).collect())
}

pub fn run(args: &ScanArgs) -> Result<u8> {
    let databases = match (&args.prefix, args.databases.is_empty()) {
        (Some(prefix), true) => active_definitions(prefix)?,
        (_, false) => args.databases.clone(),
        (None, true) => bail!(
            "no signature database given: pass -d/--database PATH (a .hdb, .hsb, .ndb or .ldb \
             file, or a directory of them), or --prefix DIR to use the active product's \
             definitions"
        ),
    };
    let started = Instant::now();
    let loaded = load_signatures(&databases, &args.index, args.prefix.as_deref())?;
    let errors = loaded.errors;
    for e in &errors {
        eprintln!("ERROR: {e}");
    }
    if !errors.is_empty() && !args.allow_bad_signatures {
        bail!(
            "{} bad or unsupported signature line(s); fix them or pass --allow-bad-signatures to load the rest",
            errors.len()
        );
    }
    let engine = loaded.engine;
    let load_time = started.elapsed();
    let stores = Stores::open(
        args.quarantine.as_deref(),
        args.samples.as_deref(),
        &args.sample_prefix,
    )?;

    let scanner = Scanner {
        engine: &engine,
        limits: Limits {
            max_member: args.max_filesize,
            ..Limits::default()
        },
        options: MatchOptions {
            all_matches: args.allmatch,
            ..MatchOptions::default()
        },
    };
    // Keyed by the limits too: the cache remembers undecidable files as well as clean ones.
    let set_key = SetKey::of_scan(&loaded.set_key, &scanner.limits, &scanner.options);
    let cache = args.cache.as_ref().map(|path| {
        let (cache, discarded) = ScanCache::open(path, set_key, args.cache_max_entries);
        match discarded {
            // Signatures change all the time; that the cache starts over is not news.
            None | Some(crate::scan_cache::Discarded::OtherSignatureSet) => {}
            Some(why) => eprintln!(
                "WARNING: scan cache {}: {why}; starting it over",
                path.display()
            ),
        }
        // The cache probes for writers with a lease (see `nobody_writes`).
        ignore_lease_breaks();
        Mutex::new(cache)
    });
    let cache = cache.as_ref();
    let mut roots = args.paths.clone();
    if let Some(list) = &args.file_list {
        let text = std::fs::read_to_string(list)
            .with_context(|| format!("file list {}", list.display()))?;
        roots.extend(text.lines().filter(|l| !l.is_empty()).map(PathBuf::from));
    }
    let roots = &roots;
    let mut printer = Printer {
        json: args.json,
        infected_only: args.infected,
        progress: (!args.json && std::io::stderr().is_terminal()).then(|| Progress {
            last: Instant::now(),
            shown: false,
        }),
    };
    let mut totals = Totals::default();
    let recursive = !args.no_recursive;
    let handle = |message: Message, printer: &mut Printer, totals: &mut Totals| {
        match message {
            Message::Dir => totals.dirs += 1,
            Message::File(r) => printer.emit(r, totals),
        }
        printer.tick(totals);
    };
    if args.threads <= 1 {
        let (mut scratch, mut buf) = (Scratch::default(), Vec::new());
        let mut batch = Batch::new();
        let mut emit = |m: Message| handle(m, &mut printer, &mut totals);
        for root in roots {
            walk::walk(root, recursive, &mut |event| {
                let mut file = None;
                let message = event_message(event, root, &mut |path, walked, size| {
                    file = Some((path, walked, size));
                    None
                });
                if let Some(m) = message {
                    match batch.pending.is_empty() {
                        true => emit(m),
                        false => batch.push(Pending::Message(m), 0),
                    }
                }
                let Some((path, walked, size)) = file else {
                    return;
                };
                if !batch.has_room(size) {
                    batch.flush(args, &scanner, &mut scratch, &stores, cache, &mut emit);
                }
                if batch.has_room(size) {
                    batch.push(Pending::File(path, walked), size);
                } else {
                    // Larger than a batch: read and hashed on its own.
                    let r = scan_file(
                        path,
                        walked,
                        args,
                        &scanner,
                        &mut scratch,
                        &mut buf,
                        &stores,
                        cache,
                    );
                    emit(Message::File(r));
                }
            });
        }
        batch.flush(args, &scanner, &mut scratch, &stores, cache, &mut emit);
    } else {
        // One walker, `threads` scanners, and this thread printing. Output order follows
        // completion, as with clamdscan --multiscan.
        let (path_tx, path_rx) = mpsc::sync_channel::<(PathBuf, Walked)>(1024);
        let path_rx = Mutex::new(path_rx);
        std::thread::scope(|s| {
            let (tx, rx) = mpsc::channel::<Message>();
            for _ in 0..args.threads {
                let (tx, path_rx, scanner, stores) = (tx.clone(), &path_rx, &scanner, &stores);
                s.spawn(move || {
                    let (mut scratch, mut buf) = (Scratch::default(), Vec::new());
                    loop {
                        let next = path_rx
                            .lock()
                            .map_err(|_| ())
                            .and_then(|rx| rx.recv().map_err(|_| ()));
                        let Ok((path, walked)) = next else { break };
                        let r = scan_file(
                            path,
                            walked,
                            args,
                            scanner,
                            &mut scratch,
                            &mut buf,
                            stores,
                            cache,
                        );
                        if tx.send(Message::File(r)).is_err() {
                            break;
                        }
                    }
                });
            }
            s.spawn(move || {
                for root in roots {
                    walk::walk(root, recursive, &mut |event| {
                        let mut scan = |path: PathBuf, walked: Walked, _size: u64| {
                            let _ = path_tx.send((path, walked));
                            None
                        };
                        if let Some(m) = event_message(event, root, &mut scan) {
                            let _ = tx.send(m);
                        }
                    });
                }
            });
            for message in rx {
                handle(message, &mut printer, &mut totals);
            }
        });
    }
    printer.clear_progress();
    if let Some(cache) = cache {
        let saved = cache.lock().map_err(|_| ()).map(|mut c| c.save());
        if let Ok(Err(e)) = saved {
            // The scan itself is complete; only the next one will be slower.
            eprintln!("WARNING: scan cache not saved: {e}");
        }
    }

    if !args.no_summary {
        // Written with errors ignored: a closed stdout (`| head`) must not turn into a panic.
        let mut out = String::new();
        let elapsed = started.elapsed();
        let mb = totals.bytes as f64 / (1024.0 * 1024.0);
        if args.json {
            let _ = writeln!(
                out,
                "{}",
                json!({ "summary": {
                    "known_signatures": engine.signature_count(),
                    "scanned_directories": totals.dirs,
                    "scanned_files": totals.files,
                    "infected_files": totals.infected,
                    "errors": totals.errors,
                    "data_scanned_bytes": totals.bytes,
                    "database_load_seconds": load_time.as_secs_f64(),
                    "seconds": elapsed.as_secs_f64(),
                }})
            );
        } else {
            let _ = writeln!(out, "\n----------- SCAN SUMMARY -----------");
            let _ = writeln!(out, "Known viruses: {}", engine.signature_count());
            let _ = writeln!(
                out,
                "Engine version: herd-scan {}",
                env!("CARGO_PKG_VERSION")
            );
            let _ = writeln!(out, "Scanned directories: {}", totals.dirs);
            let _ = writeln!(out, "Scanned files: {}", totals.files);
            let _ = writeln!(out, "Infected files: {}", totals.infected);
            if totals.errors > 0 {
                let _ = writeln!(out, "Total errors: {}", totals.errors);
            }
            let _ = writeln!(out, "Data scanned: {mb:.2} MB");
            let _ = writeln!(
                out,
                "Database load time: {:.3} sec",
                load_time.as_secs_f64()
            );
            let secs = elapsed.as_secs_f64();
            let _ = writeln!(
                out,
                "Time: {secs:.3} sec ({} m {} s)",
                elapsed.as_secs() / 60,
                elapsed.as_secs() % 60
            );
        }
        let _ = std::io::stdout().write_all(out.as_bytes());
    }
    Ok(if totals.infected > 0 {
        1
    } else if totals.errors > 0 {
        2
    } else {
        0
    })
}

/// A file over `--max-filesize`: not held in memory, so only hash signatures of its size are
/// checked, streaming. A hit is reported but not quarantined (the store works in memory).
fn large_file(
    path: PathBuf,
    args: &ScanArgs,
    scanner: &Scanner<'_>,
    stores: &Stores,
) -> FileResult {
    let result = |path, outcome, bytes| FileResult {
        path,
        outcome,
        notes: Vec::new(),
        bytes,
    };
    let names = match walk::open_regular(&path) {
        Ok(Some((mut file, meta))) if scanner.engine.wants_hash(meta.len()) => scanner
            .engine
            .match_hashes_stream(meta.len(), &mut file)
            .map(|n| (n, meta.len())),
        Ok(_) => Ok((Vec::new(), 0)),
        Err(e) => Err(e),
    };
    match names {
        Err(e) => result(path, Outcome::Error(e.to_string()), 0),
        Ok((names, _)) if names.is_empty() => result(path, Outcome::TooLarge(args.max_filesize), 0),
        Ok((names, size)) => {
            let not_stored = || Some(Err("larger than --max-filesize; left in place".to_owned()));
            let detections = names
                .into_iter()
                .map(|name| Detection {
                    name,
                    path: herd_scan::error::ArchivePath::default(),
                })
                .collect();
            let outcome = Outcome::Scanned {
                detections,
                error: None,
                quarantined: stores.quarantine.as_ref().and_then(|_| not_stored()),
                sample: None,
            };
            result(path, outcome, size)
        }
    }
}

/// The identity a directory walk saw a file with (`None` for a file named on the command
/// line, which is read as whatever it is when opened).
type Walked = Option<FileId>;

/// Reads and scans one file (and quarantines it if asked); prints nothing. A file that is no
/// longer the one the walk saw (a parent directory swapped for a symlink, the file replaced)
/// is reported gone, not scanned in its stead.
#[allow(clippy::too_many_arguments)]
fn scan_file(
    path: PathBuf,
    walked: Walked,
    args: &ScanArgs,
    scanner: &Scanner<'_>,
    scratch: &mut Scratch,
    buf: &mut Vec<u8>,
    stores: &Stores,
    cache: Option<&Mutex<ScanCache>>,
) -> FileResult {
    match read_for_scan(path, walked, args, scanner, buf, stores, cache) {
        Prepared::Done(result) => result,
        Prepared::Read(read) => {
            let known = KnownDigests::default();
            scan_read(read, known, scanner, scratch, buf, stores, cache)
        }
    }
}

/// A file read into its buffer, waiting to be scanned.
struct ReadFile {
    path: PathBuf,
    file: std::fs::File,
    /// The (device, inode) of the descriptor read: quarantine acts on that file only.
    scanned: FileId,
    before: FileStamp,
    read_started: std::time::SystemTime,
}

enum Prepared {
    /// Nothing to scan: the result is known (an error, gone, empty, cached, too large).
    Done(FileResult),
    Read(ReadFile),
}

/// The first half of `scan_file`: opens the file, consults the scan cache, reads it.
fn read_for_scan(
    path: PathBuf,
    walked: Walked,
    args: &ScanArgs,
    scanner: &Scanner<'_>,
    buf: &mut Vec<u8>,
    stores: &Stores,
    cache: Option<&Mutex<ScanCache>>,
) -> Prepared {
    let result = |path, outcome| {
        Prepared::Done(FileResult {
            path,
            outcome,
            notes: Vec::new(),
            bytes: 0,
        })
    };
    buf.clear();
    // A remembered file is answered from its stamps alone, without opening it: one lstat
    // instead of open, fstat and close. The stamps are those of whatever the path names now,
    // as they would be through a descriptor opened now (a symlink or another inode is not a
    // hit, and is opened below as any file is).
    if let Some(cache) = cache
        && let Ok(meta) = std::fs::symlink_metadata(&path)
        && meta.is_file()
        && meta.len() > 0
        && walked.is_none_or(|w| w == FileId::of_metadata(&meta))
        && let Some(what) = cache
            .lock()
            .ok()
            .and_then(|mut c| c.lookup(&FileStamp::of(&meta)))
    {
        return Prepared::Done(cached_result(path, what));
    }
    let (file, meta) = match walk::open_regular(&path) {
        Err(error) => return result(path, Outcome::Error(error.to_string())),
        Ok(None) => return result(path, Outcome::Gone),
        Ok(Some(opened)) => opened,
    };
    let scanned = FileId::of_metadata(&meta);
    if walked.is_some_and(|w| w != scanned) {
        return result(path, Outcome::Gone);
    }
    let before = FileStamp::of(&meta);
    let remembered = || cache.and_then(|c| c.lock().ok()?.lookup(&before));
    if let Some(what) = (meta.len() > 0).then(remembered).flatten() {
        return Prepared::Done(cached_result(path, what));
    }
    let read_started = std::time::SystemTime::now();
    match walk::read_opened(&file, &meta, args.max_filesize, buf) {
        Err(error) => return result(path, Outcome::Error(error.to_string())),
        Ok(ReadOutcome::NotRegular) => return result(path, Outcome::Gone),
        Ok(ReadOutcome::TooLarge) => {
            return Prepared::Done(large_file(path, args, scanner, stores));
        }
        Ok(ReadOutcome::Read) => {}
    }
    if buf.is_empty() {
        return result(path, Outcome::Empty);
    }
    Prepared::Read(ReadFile {
        path,
        file,
        scanned,
        before,
        read_started,
    })
}

/// What a scan printed of a file the cache remembers: OK, or the notes and error of an
/// undecidable one, as the scan that remembered it reported them.
fn cached_result(path: PathBuf, what: Remembered) -> FileResult {
    let (error, notes) = match what {
        Remembered::Clean => (None, Vec::new()),
        Remembered::Undecidable(u) => (u.error.clone(), u.notes.clone()),
    };
    FileResult {
        path,
        outcome: Outcome::Cached { error },
        notes,
        bytes: 0,
    }
}

/// The second half of `scan_file`: scans what `read_for_scan` read into `buf`, with digests
/// already computed (`known`), records the result in the scan cache, quarantines.
fn scan_read(
    read: ReadFile,
    known: KnownDigests,
    scanner: &Scanner<'_>,
    scratch: &mut Scratch,
    buf: &[u8],
    stores: &Stores,
    cache: Option<&Mutex<ScanCache>>,
) -> FileResult {
    let ReadFile {
        path,
        file,
        scanned,
        before,
        read_started,
    } = read;
    let report = scanner.scan_known(buf, known, scratch);
    let notes: Vec<String> = report
        .notes
        .iter()
        .map(|n| format!("{}: {}", n.path, n.kind))
        .collect();
    let names: Vec<Arc<str>> = report.detections.iter().map(|d| d.name.clone()).collect();
    if let Some(cache) = cache
        && let Ok(mut cache) = cache.lock()
    {
        // Remembered only when nothing was found (clean, or undecidable with its reasons),
        // settled long enough that a later write must change ctime, unchanged while it was
        // read and scanned, and with no writer that could change it through a mapping without
        // touching its stamps (see `nobody_writes`).
        let what = match report.verdict() {
            herd_scan::Verdict::Clean => Some(Remembered::Clean),
            herd_scan::Verdict::Undecidable(_) => {
                Some(Remembered::Undecidable(Arc::new(Undecided {
                    notes: notes.clone(),
                    error: report.error.as_ref().map(ToString::to_string),
                })))
            }
            herd_scan::Verdict::Infected(_) => None,
        };
        let unchanged = || file.metadata().is_ok_and(|m| FileStamp::of(&m) == before);
        if let Some(what) = what
            && unchanged()
            && before.settled_before(read_started, SETTLE)
            && nobody_writes(file.as_fd())
        {
            cache.record(&before, what);
        } else {
            cache.forget(before.dev, before.ino);
        }
    }
    let (quarantined, sample) = stores.handle(&path, scanned, buf, &names);
    FileResult {
        path,
        outcome: Outcome::Scanned {
            detections: report.detections,
            error: report.error.map(|e| e.to_string()),
            quarantined,
            sample,
        },
        notes,
        bytes: buf.len() as u64,
    }
}

/// Files read ahead and hashed together before they are scanned, on one thread: MD5 runs one
/// file per SIMD lane (`md5x`), several times faster than file after file. Output keeps the
/// walk's order, so messages wait in the batch with the files.
struct Batch {
    pending: Vec<Pending>,
    files: usize,
    bytes: u64,
    /// Read buffers, reused across batches.
    buffers: Vec<Vec<u8>>,
}

enum Pending {
    Message(Message),
    File(PathBuf, Walked),
}

impl Batch {
    /// At most this many files…
    const FILES: usize = 128;
    /// …and this many bytes (by the walk's sizes) are read ahead; a larger file is scanned
    /// on its own. Larger batches keep more lanes busy when files differ in size (on the real
    /// files of `bench scan --real`: 1.7× one-by-one MD5 with 32 MB, 2× with 64 MB, little
    /// more with 128 MB); 64 MB stays below the 100 MB one file may take (`--max-filesize`).
    const BYTES: u64 = 64 << 20;

    fn new() -> Batch {
        Batch {
            pending: Vec::new(),
            files: 0,
            bytes: 0,
            buffers: Vec::new(),
        }
    }

    /// Whether a file of `size` bytes should join the batch (false: flush first, and scan it
    /// alone if it is larger than a batch).
    fn has_room(&self, size: u64) -> bool {
        self.files < Self::FILES && self.bytes + size <= Self::BYTES
    }

    /// Reads every pending file, hashes those whose size the MD5 signatures have in one
    /// `md5_many` call, scans each, and hands every message on in order.
    #[allow(clippy::too_many_arguments)]
    fn flush(
        &mut self,
        args: &ScanArgs,
        scanner: &Scanner<'_>,
        scratch: &mut Scratch,
        stores: &Stores,
        cache: Option<&Mutex<ScanCache>>,
        emit: &mut dyn FnMut(Message),
    ) {
        enum Slot {
            Message(Message),
            File(Prepared, usize),
        }
        let pending = std::mem::take(&mut self.pending);
        self.buffers
            .resize_with(self.files.max(self.buffers.len()), Vec::new);
        let mut slots = Vec::with_capacity(pending.len());
        let mut used = 0;
        for p in pending {
            slots.push(match p {
                Pending::Message(m) => Slot::Message(m),
                Pending::File(path, walked) => {
                    let buf = &mut self.buffers[used];
                    used += 1;
                    let r = read_for_scan(path, walked, args, scanner, buf, stores, cache);
                    Slot::File(r, used - 1)
                }
            });
        }
        let wanted: Vec<usize> = slots
            .iter()
            .filter_map(|slot| match slot {
                Slot::File(Prepared::Read(_), b)
                    if scanner.engine.wants_md5(self.buffers[*b].len() as u64) =>
                {
                    Some(*b)
                }
                _ => None,
            })
            .collect();
        let inputs: Vec<&[u8]> = wanted.iter().map(|&b| &self.buffers[b][..]).collect();
        let mut md5_of = vec![None; used];
        for (&b, d) in wanted.iter().zip(herd_scan::md5x::md5_many(&inputs)) {
            md5_of[b] = Some(d);
        }
        for slot in slots {
            match slot {
                Slot::Message(m) => emit(m),
                Slot::File(Prepared::Done(r), _) => emit(Message::File(r)),
                Slot::File(Prepared::Read(read), b) => {
                    let known = KnownDigests { md5: md5_of[b] };
                    let buf = &self.buffers[b];
                    emit(Message::File(scan_read(
                        read, known, scanner, scratch, buf, stores, cache,
                    )));
                }
            }
        }
        // Large files of earlier batches must not pin their memory for the rest of the scan:
        // what the buffers keep stays within one batch's bytes.
        let kept: usize = self.buffers.iter().map(Vec::capacity).sum();
        if kept as u64 > Self::BYTES {
            for buf in self.buffers.iter_mut().filter(|b| b.capacity() > 256 << 10) {
                *buf = Vec::new();
            }
        }
        self.files = 0;
        self.bytes = 0;
    }
}

impl Batch {
    fn push(&mut self, pending: Pending, size: u64) {
        if let Pending::File(..) = pending {
            self.files += 1;
            self.bytes += size;
        }
        self.pending.push(pending);
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100M"), Ok(100 << 20));
        assert_eq!(parse_size("7"), Ok(7));
        assert_eq!(parse_size("2k"), Ok(2048));
        assert!(parse_size("1T").is_err());
        assert!(parse_size("M").is_err());
    }
}
