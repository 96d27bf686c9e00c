//! `herd-agent watch`: on-access and scheduled scanning on Linux.
//!
//! Two modes, chosen by `--mode` (default `auto`: fanotify when permitted, else inotify):
//! - fanotify (root): every directory under the roots gets a `FAN_OPEN_PERM` mark, so each open
//!   of a file in them waits for a verdict; an infected file's open is denied. Marks are per
//!   directory rather than per mount, so other programs on the same file system are never held
//!   up; new directories are marked as inotify reports them. Opens made by this process (the
//!   scheduled scan) are allowed at once. Events are answered by a small pool of threads
//!   (`--workers`), so one slow scan holds up only opens of that file, not the machine's.
//!   Verdicts are cached only where no writer could have changed the bytes since (see
//!   `VerdictCache`).
//! - inotify (anyone): files are scanned after they are written or moved in; detections are
//!   reported (and quarantined if asked) but nothing is blocked.
//!
//! Undecidable files (the scan ran out of its verification budget, the file could not be read,
//! it is larger than `--max-filesize`, or an archive limit left members unscanned) are never
//! taken for clean: each is reported with its reason, and `--undecidable` (default `deny`)
//! decides whether a fanotify open is refused.
//!
//! Exclusions (`--exclude`) are path prefixes; the quarantine and sample directories are always
//! excluded so storing a file never waits on its own open. Suspicious-only hits (see
//! `--sample-prefix`) are reported and sampled but never denied or quarantined. `--daily-scan HH:MM` (UTC) also runs a full scan
//! of the roots once a day. Detections are printed one per line (JSON with `--json`), ready
//! to become agent events once the agent's outbox exists.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use herd_fs::FileId;
use herd_scan::walk::{self, Event, ReadOutcome};
use herd_scan::{Limits, MatchOptions, Scanner, Scratch, Verdict};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::fanotify::{
    EventFFlags, Fanotify, FanotifyEvent, FanotifyResponse, InitFlags, MarkFlags, MaskFlags,
    Response,
};
use nix::sys::inotify::{AddWatchFlags, InitFlags as InotifyFlags, Inotify, WatchDescriptor};
use serde_json::json;

use crate::quarantine::{StoreResult, Stores};
use crate::scan::{IndexArgs, load_signatures, parse_size};
use crate::scan_cache::{FileStamp, ScanCache, SetKey, ignore_lease_breaks, nobody_writes};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Auto,
    Fanotify,
    Inotify,
}

/// What an on-access scan that cannot decide does to the open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Undecidable {
    /// Refuse the open, as for an infected file.
    Deny,
    /// Let the file open, and report it.
    AllowAndReport,
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// A signature database file or directory, as for `scan`; repeatable.
    #[arg(short = 'd', long = "database", value_name = "PATH", required = true)]
    databases: Vec<PathBuf>,
    /// Directories to protect (recursively).
    #[arg(required = true, value_name = "DIR")]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    index: IndexArgs,
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    mode: Mode,
    /// Paths (prefixes) never scanned; repeatable.
    #[arg(long = "exclude", value_name = "PATH")]
    excludes: Vec<PathBuf>,
    /// Move detected files into this quarantine directory.
    #[arg(long, value_name = "DIR")]
    quarantine: Option<PathBuf>,
    /// Copy suspicious hits and files that could not be quarantined into this sample queue.
    #[arg(long, value_name = "DIR")]
    samples: Option<PathBuf>,
    /// Signature name prefixes that only make a file suspicious: sampled, neither denied nor
    /// quarantined. Repeatable.
    #[arg(long, value_name = "PREFIX", default_values_t = ["Suspicious.".to_owned(), "Heuristics.".to_owned()])]
    sample_prefix: Vec<String>,
    /// One JSON object per detection.
    #[arg(long)]
    json: bool,
    /// Files larger than this are not scanned, and so are undecidable (suffixes K, M, G).
    #[arg(long, value_name = "SIZE", default_value = "100M", value_parser = parse_size)]
    max_filesize: u64,
    /// What a fanotify open of an undecidable file gets: `deny` refuses it like an infected
    /// file, `allow-and-report` lets it open. Undecidable means the scan ran out of its
    /// verification budget, the file could not be read, it is larger than --max-filesize, or
    /// an archive limit left members unscanned. Either way each such file is reported with its
    /// reason (inotify mode blocks nothing, so there it is only reported).
    #[arg(long, value_enum, default_value_t = Undecidable::Deny)]
    undecidable: Undecidable,
    /// Signature verification steps allowed per file; a file needing more is undecidable.
    #[arg(long, value_name = "STEPS", default_value_t = MatchOptions::default().verify_budget)]
    verify_budget: u64,
    /// Threads answering fanotify permission events, so one slow scan holds up only the opens
    /// of that file.
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u8).range(1..=64))]
    workers: u8,
    /// Also scan all roots every day at this UTC time.
    #[arg(long, value_name = "HH:MM", value_parser = parse_time_of_day)]
    daily_scan: Option<u32>,
    /// Remember files found clean in this cache file across runs (see `herd-agent scan --cache`):
    /// scheduled scans and opens of unchanged files then skip reading them. Saved after each
    /// scheduled scan, every five minutes when it changed, and at exit.
    #[arg(long, value_name = "FILE")]
    cache: Option<PathBuf>,
    /// At most this many files are remembered in --cache.
    #[arg(long, value_name = "N", default_value_t = crate::scan_cache::DEFAULT_MAX_ENTRIES)]
    cache_max_entries: usize,
    /// Stop after this many seconds (for trials and tests); by default run until killed.
    #[arg(long, value_name = "SECONDS")]
    stop_after: Option<u64>,
    /// Set when `herd-agent run` hosts the watcher (see [`Hosted`]).
    #[arg(skip)]
    pub(crate) hosted: Option<Arc<Hosted>>,
}

/// What `herd-agent run` hooks into a watcher it hosts (`run/scanner.rs`): a stop request
/// (honoured within the watcher's 200 ms poll), and where each detection goes besides stdout.
pub(crate) struct Hosted {
    pub stop: std::sync::atomic::AtomicBool,
    pub on_detection: Box<dyn Fn(&HostedDetection<'_>) + Send + Sync>,
    /// Called once every root is watched (with the number of directories).
    pub on_watching: Box<dyn Fn(usize) + Send + Sync>,
}

impl std::fmt::Debug for Hosted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hosted").field("stop", &self.stop).finish()
    }
}

/// One detection, as the watcher handled it.
pub(crate) struct HostedDetection<'a> {
    /// `fanotify`, `inotify` or `scheduled`.
    pub mode: &'a str,
    pub path: &'a Path,
    pub content: &'a [u8],
    pub names: &'a [Arc<str>],
    /// What happened to the access (`access denied`, `reported`).
    pub action: &'a str,
    pub quarantined: &'a StoreResult,
}

/// `HH:MM` as minutes after midnight.
fn parse_time_of_day(s: &str) -> Result<u32, String> {
    let bad = || format!("{s:?} is not a time like 02:30");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// The next time, strictly after `now` (Unix seconds), that is `minute_of_day` minutes past
/// a UTC midnight.
pub fn next_daily(now: u64, minute_of_day: u32) -> u64 {
    let today = now - now % 86_400 + u64::from(minute_of_day) * 60;
    if today > now { today } else { today + 86_400 }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What the watcher shares between its threads.
struct Ctx<'e> {
    scanner: Scanner<'e>,
    args: &'e WatchArgs,
    excludes: Vec<PathBuf>,
    stores: Stores,
    /// The persistent cache of clean files (`--cache`), shared by every scanning thread.
    cache: Option<Mutex<ScanCache>>,
}

impl Ctx<'_> {
    fn excluded(&self, path: &Path) -> bool {
        self.excludes.iter().any(|e| path.starts_with(e))
    }

    /// Whether the persistent cache knows this file, as stamped, to be clean.
    fn cached_clean(&self, stamp: &FileStamp) -> bool {
        let cache = self.cache.as_ref().and_then(|c| c.lock().ok());
        cache.is_some_and(|mut c| c.is_clean(stamp))
    }

    /// Records a scan's outcome in the persistent cache: a clean file is remembered only when
    /// nobody writes it, its ctime is settled (older than the read by `SETTLE`) and its stamps
    /// did not move during the scan (`after`); anything else is forgotten.
    fn remember(
        &self,
        fd: BorrowedFd<'_>,
        before: FileStamp,
        after: FileStamp,
        read_started: SystemTime,
        clean: bool,
    ) {
        let Some(Ok(mut cache)) = self.cache.as_ref().map(|c| c.lock()) else {
            return;
        };
        if clean
            && before == after
            && before.settled_before(read_started, crate::scan_cache::SETTLE)
            && nobody_writes(fd)
        {
            cache.record_clean(&before);
        } else {
            cache.forget(before.dev, before.ino);
        }
    }

    fn save_cache(&self) {
        if let Some(Ok(mut cache)) = self.cache.as_ref().map(|c| c.lock())
            && let Err(e) = cache.save()
        {
            eprintln!("WARNING: scan cache not saved: {e}");
        }
    }

    /// Prints a detection and quarantines or samples the file as configured. `action` says
    /// what already happened to the access ("access denied", "reported").
    /// `scanned` is the file `content` was read from (quarantine acts on it only).
    fn detected(
        &self,
        mode: &str,
        path: &Path,
        scanned: FileId,
        content: &[u8],
        names: &[Arc<str>],
        action: &str,
    ) {
        let (quarantined, sample) = self.stores.handle(path, scanned, content, names);
        if let Some(hosted) = &self.args.hosted {
            (hosted.on_detection)(&HostedDetection {
                mode,
                path,
                content,
                names,
                action,
                quarantined: &quarantined,
            });
        }
        let to_json = |r: &StoreResult| match r {
            Some(Ok(id)) => json!({ "id": id }),
            Some(Err(e)) => json!({ "error": e }),
            None => json!(null),
        };
        let line = if self.args.json {
            let sigs: Vec<&str> = names.iter().map(|n| &**n).collect();
            json!({
                "event": "detection",
                "mode": mode,
                "path": path.display().to_string(),
                "signatures": sigs,
                "action": action,
                "quarantine": to_json(&quarantined),
                "sample": to_json(&sample),
            })
            .to_string()
        } else {
            let p = path.display();
            let mut lines: Vec<String> = names.iter().map(|n| format!("{p}: {n} FOUND")).collect();
            lines.push(format!("{p}: {action} ({mode})"));
            let stores = [
                ("moved to quarantine as", "quarantine", &quarantined),
                ("captured as sample", "sample capture", &sample),
            ];
            for (done, what, r) in stores {
                match r {
                    Some(Ok(id)) => lines.push(format!("{p}: {done} {id}")),
                    Some(Err(e)) => lines.push(format!("{p}: {what} failed: {e} ERROR")),
                    None => {}
                }
            }
            lines.join("\n")
        };
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }

    /// Reports a file that could not be decided, with the reason and what happened to the
    /// access. Every one is reported: an attacker who can make files undecidable at will must
    /// at least be seen doing it.
    fn undecided(&self, mode: &str, path: &Path, reason: &str, action: &str) {
        let line = if self.args.json {
            json!({
                "event": "undecidable",
                "mode": mode,
                "path": path.display().to_string(),
                "reason": reason,
                "action": action,
            })
            .to_string()
        } else {
            let p = path.display();
            format!("{p}: {reason} UNDECIDABLE\n{p}: {action} ({mode})")
        };
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }

    fn too_large(&self) -> String {
        format!(
            "larger than --max-filesize {} bytes, not scanned",
            self.args.max_filesize
        )
    }

    /// Scans a path after the fact (inotify events, scheduled scans).
    /// `walked`: the identity a directory walk saw the file with; a file that is no longer it
    /// (a parent swapped for a symlink since) is passed over, not read in its stead.
    fn scan_path(
        &self,
        mode: &str,
        path: &Path,
        walked: Option<FileId>,
        scratch: &mut Scratch,
        buf: &mut Vec<u8>,
    ) {
        if self.excluded(path) {
            return;
        }
        let mut scanned = None;
        buf.clear();
        let verdict = match walk::open_regular(path) {
            Ok(None) => return,
            Err(e) => Verdict::Undecidable(format!("cannot be read: {e}")),
            Ok(Some((file, meta))) => {
                let id = FileId::of_metadata(&meta);
                if walked.is_some_and(|w| w != id) || meta.len() == 0 {
                    return;
                }
                scanned = Some(id);
                let before = FileStamp::of(&meta);
                if self.cached_clean(&before) {
                    return;
                }
                let read_started = SystemTime::now();
                let verdict = match walk::read_opened(&file, &meta, self.args.max_filesize, buf) {
                    Ok(ReadOutcome::Read) if !buf.is_empty() => {
                        self.scanner.scan(buf, scratch).verdict()
                    }
                    Ok(ReadOutcome::TooLarge) => Verdict::Undecidable(self.too_large()),
                    Ok(_) => return,
                    Err(e) => Verdict::Undecidable(format!("cannot be read: {e}")),
                };
                let after = file.metadata().map_or(before, |m| FileStamp::of(&m));
                let clean = verdict == Verdict::Clean;
                self.remember(file.as_fd(), before, after, read_started, clean);
                verdict
            }
        };
        match (verdict, scanned) {
            (Verdict::Clean, _) => {}
            (Verdict::Infected(names), Some(scanned)) => {
                self.detected(mode, path, scanned, buf, &names, "reported")
            }
            // Unreachable: an infected verdict comes from a read, which knows its file.
            (Verdict::Infected(names), None) => {
                let why = format!("detected as {} but its file is unknown", names.join(", "));
                self.undecided(mode, path, &why, "reported")
            }
            (Verdict::Undecidable(why), _) => self.undecided(mode, path, &why, "reported"),
        }
    }

    /// A full scan of every root, as the daily schedule asks.
    fn full_scan(&self) {
        let (mut scratch, mut buf) = (Scratch::default(), Vec::new());
        for root in &self.args.paths {
            walk::walk(root, true, &mut |event| {
                if let Event::File { path, id, .. } = event {
                    let walked = Some(FileId {
                        dev: id.0,
                        ino: id.1,
                    });
                    self.scan_path("scheduled", &path, walked, &mut scratch, &mut buf);
                }
            });
        }
        self.save_cache();
    }
}

/// Directories under `root` (itself included), not following symlinks, minus exclusions.
fn directories(root: &Path, ctx: &Ctx<'_>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    walk::walk(root, true, &mut |event| {
        if let Event::Dir(d) = event
            && !ctx.excluded(&d)
        {
            dirs.push(d);
        }
    });
    dirs
}

pub fn run(args: &WatchArgs) -> Result<u8> {
    let loaded = load_signatures(&args.databases, &args.index, None)?;
    let set_key = SetKey::of_loaded(&loaded.set_key);
    for e in &loaded.errors {
        eprintln!("ERROR: {e}");
    }
    if !loaded.errors.is_empty() {
        bail!(
            "{} bad or unsupported signature line(s)",
            loaded.errors.len()
        );
    }
    let engine = loaded.engine;
    let stores = Stores::open(
        args.quarantine.as_deref(),
        args.samples.as_deref(),
        &args.sample_prefix,
    )?;
    let mut excludes: Vec<PathBuf> = args
        .excludes
        .iter()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
        .collect();
    for dir in [&args.quarantine, &args.samples].into_iter().flatten() {
        excludes.push(std::fs::canonicalize(dir)?);
    }
    let cache = args.cache.as_ref().map(|path| {
        let (cache, discarded) = ScanCache::open(path, set_key, args.cache_max_entries);
        if let Some(why) = discarded {
            eprintln!(
                "herd-agent watch: scan cache {}: {why}; starting it over",
                path.display()
            );
        }
        Mutex::new(cache)
    });
    if cache.is_some() {
        ignore_lease_breaks();
    }
    let ctx = Ctx {
        scanner: Scanner {
            engine: &engine,
            limits: Limits {
                max_member: args.max_filesize,
                ..Limits::default()
            },
            options: MatchOptions {
                verify_budget: args.verify_budget,
                ..MatchOptions::default()
            },
        },
        args,
        excludes,
        stores,
        cache,
    };
    let deadline = args
        .stop_after
        .map(|s| Instant::now() + Duration::from_secs(s));
    let fanotify = match args.mode {
        Mode::Inotify => None,
        Mode::Fanotify => Some(init_fanotify().context("fanotify (needs root / CAP_SYS_ADMIN)")?),
        Mode::Auto => init_fanotify().ok(),
    };
    let mut last_save = Instant::now();
    let watched = std::thread::scope(|s| -> Result<()> {
        let mut next_scan = args.daily_scan.map(|m| next_daily(unix_now(), m));
        let mut scheduled: Option<std::thread::ScopedJoinHandle<'_, ()>> = None;
        let mut tick = || -> bool {
            if let Some(at) = next_scan
                && unix_now() >= at
                && scheduled.as_ref().is_none_or(|h| h.is_finished())
            {
                let ctx = &ctx;
                scheduled = Some(s.spawn(move || ctx.full_scan()));
                next_scan = args.daily_scan.map(|m| next_daily(unix_now(), m));
            }
            if last_save.elapsed() >= Duration::from_secs(300) {
                ctx.save_cache();
                last_save = Instant::now();
            }
            let stopped = args
                .hosted
                .as_ref()
                .is_some_and(|h| h.stop.load(std::sync::atomic::Ordering::Relaxed));
            !stopped && deadline.is_none_or(|d| Instant::now() < d)
        };
        match &fanotify {
            Some(group) => watch_fanotify(group, &ctx, &mut tick),
            None => watch_inotify(&ctx, &mut tick),
        }
    });
    ctx.save_cache();
    watched?;
    Ok(0)
}

fn init_fanotify() -> nix::Result<Fanotify> {
    Fanotify::init(
        InitFlags::FAN_CLASS_CONTENT | InitFlags::FAN_CLOEXEC | InitFlags::FAN_NONBLOCK,
        EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE | EventFFlags::O_CLOEXEC,
    )
}

/// Inotify watches for new directories (fanotify mode) or for written files (inotify mode).
struct DirWatches {
    inotify: Inotify,
    dirs: HashMap<WatchDescriptor, PathBuf>,
    flags: AddWatchFlags,
}

impl DirWatches {
    fn new(flags: AddWatchFlags) -> Result<DirWatches> {
        let inotify = Inotify::init(InotifyFlags::IN_NONBLOCK | InotifyFlags::IN_CLOEXEC)?;
        Ok(DirWatches {
            inotify,
            dirs: HashMap::new(),
            flags,
        })
    }
    fn add(&mut self, dir: &Path) {
        match self.inotify.add_watch(dir, self.flags) {
            Ok(wd) => {
                self.dirs.insert(wd, dir.to_owned());
            }
            Err(e) => eprintln!("WARNING: {}: cannot watch: {e}", dir.display()),
        }
    }
    /// Drains pending events: new directories, and files that are complete (closed after
    /// writing or moved in; a file's `IN_CREATE` comes before its content and is ignored).
    fn events(&mut self) -> Vec<(PathBuf, bool)> {
        let Ok(events) = self.inotify.read_events() else {
            return Vec::new();
        };
        let complete = AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_MOVED_TO;
        let mut out = Vec::new();
        for e in events {
            if e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                eprintln!("WARNING: inotify queue overflowed; some changes were not scanned");
                continue;
            }
            let (Some(dir), Some(name)) = (self.dirs.get(&e.wd), e.name) else {
                continue;
            };
            let is_dir = e.mask.contains(AddWatchFlags::IN_ISDIR);
            if is_dir || e.mask.intersects(complete) {
                out.push((dir.join(name), is_dir));
            }
        }
        out
    }
}

fn wait_readable(fds: &[BorrowedFd<'_>]) {
    let mut polls: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    let _ = poll(&mut polls, PollTimeout::from(200u16));
}

fn watch_fanotify(group: &Fanotify, ctx: &Ctx<'_>, tick: &mut dyn FnMut() -> bool) -> Result<()> {
    let mut watches = DirWatches::new(
        AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_ONLYDIR,
    )?;
    // FAN_CLOSE_WRITE only tells the cache to forget the file; the permission events are
    // what is answered.
    let mask =
        MaskFlags::FAN_OPEN_PERM | MaskFlags::FAN_CLOSE_WRITE | MaskFlags::FAN_EVENT_ON_CHILD;
    let mark = |dir: &Path, watches: &mut DirWatches| -> usize {
        let mut n = 0;
        for d in directories(dir, ctx) {
            match group.mark(
                MarkFlags::FAN_MARK_ADD,
                mask,
                nix::fcntl::AT_FDCWD,
                Some(&d),
            ) {
                Ok(()) => n += 1,
                Err(e) => eprintln!("WARNING: {}: cannot mark: {e}", d.display()),
            }
            watches.add(&d);
        }
        n
    };
    let mut marked = 0;
    for root in &ctx.args.paths {
        marked += mark(root, &mut watches);
    }
    ignore_lease_breaks();
    eprintln!(
        "herd-agent watch: watching {marked} directories (fanotify, opens of infected files are denied)"
    );
    if let Some(hosted) = &ctx.args.hosted {
        (hosted.on_watching)(marked);
    }
    let own_pid = std::process::id() as i32;
    let cache = VerdictCache::default();
    // Bounded: when every worker is busy and the queue is full, the reader waits rather than
    // holding an unbounded number of open descriptors.
    let workers = usize::from(ctx.args.workers);
    let (tx, rx) = mpsc::sync_channel::<FanotifyEvent>(workers * 4);
    let rx = Mutex::new(rx);
    std::thread::scope(|s| -> Result<()> {
        for _ in 0..workers {
            let (rx, cache) = (&rx, &cache);
            s.spawn(move || {
                let (mut scratch, mut buf) = (Scratch::default(), Vec::new());
                loop {
                    // The lock is held only while waiting for the next event, not while scanning.
                    let next = rx.lock().map(|r| r.recv());
                    let Ok(Ok(event)) = next else { return };
                    let Some(fd) = event.fd() else { continue };
                    let response = decide(fd, ctx, cache, &mut scratch, &mut buf);
                    if let Err(e) = group.write_response(FanotifyResponse::new(fd, response)) {
                        eprintln!("WARNING: answering fanotify: {e}");
                    }
                }
            });
        }
        let result = (|| -> Result<()> {
            while tick() {
                wait_readable(&[group.as_fd(), watches.inotify.as_fd()]);
                for (path, is_dir) in watches.events() {
                    if is_dir && !ctx.excluded(&path) {
                        mark(&path, &mut watches);
                    }
                }
                let events = match group.read_events() {
                    Ok(e) => e,
                    Err(nix::errno::Errno::EAGAIN) => continue,
                    Err(e) => return Err(e).context("reading fanotify events"),
                };
                for event in events {
                    let Some(fd) = event.fd() else { continue }; // queue overflow
                    if !event.mask().contains(MaskFlags::FAN_OPEN_PERM) {
                        if let Ok(st) = nix::sys::stat::fstat(fd) {
                            cache.forget((st.st_dev, st.st_ino));
                        }
                        continue;
                    }
                    if event.pid() == own_pid {
                        group
                            .write_response(FanotifyResponse::new(fd, Response::FAN_ALLOW))
                            .context("answering fanotify")?;
                        continue;
                    }
                    tx.send(event).context("on-access workers stopped")?;
                }
            }
            Ok(())
        })();
        // Closing the queue lets the workers answer what is left and end.
        drop(tx);
        result
    })
}

/// The file's identity and the stamps a write changes, compared before a cached verdict is
/// used. Kernels do not expose the inode's change counter (i_version) to user space, so
/// ctime (which every write, truncate, chmod and rename updates, and user space cannot set)
/// stands in for it, with mtime and size as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(st: &nix::sys::stat::FileStat) -> Stamp {
        Stamp {
            size: st.st_size,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }
}

/// Verdicts by (device, inode), shared by the workers.
///
/// Why a cached verdict cannot be outrun. Writes through a shared writable mapping update
/// mtime and ctime only on the first write fault of a page, and send no FAN_MODIFY, so once a
/// page is mapped writable its content can change any number of times with the stamps frozen.
/// Stamps alone therefore cannot guard a cache. Instead:
/// - a verdict is cached, and a cached one used, only when nobody has the file open for
///   writing; a live shared writable mapping counts, since it keeps its writable file open
///   (`nobody_writes`). Any later write needs a new writer, whose open goes through a
///   permission event (which forgets the entry) or, through a link outside the marked
///   directories, changes ctime when it writes;
/// - the stamps are taken before the read and again after the scan, and must agree;
/// - a file whose ctime is less than `SETTLE` old is not cached, because timestamps are
///   coarse: a write in the same clock tick as the read could leave ctime unchanged;
/// - FAN_CLOSE_WRITE forgets the inode, so the common case does not even reach a comparison.
#[derive(Default)]
struct VerdictCache {
    entries: Mutex<HashMap<(u64, u64), (Stamp, Response)>>,
}

const SETTLE: Duration = Duration::from_secs(2);

impl VerdictCache {
    fn get(&self, id: (u64, u64), stamp: Stamp) -> Option<Response> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(&id)
            .and_then(|(s, r)| (*s == stamp).then_some(*r))
    }
    fn forget(&self, id: (u64, u64)) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&id);
        }
    }
    fn insert(&self, id: (u64, u64), stamp: Stamp, response: Response) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= 100_000 {
                entries.clear();
            }
            entries.insert(id, (stamp, response));
        }
    }
}

/// The verdict on one permission event: read through the event's own descriptor (no new open,
/// so no new event), scan, report. What cannot be decided is reported and answered by
/// `--undecidable`, never taken for clean.
fn decide(
    fd: BorrowedFd<'_>,
    ctx: &Ctx<'_>,
    cache: &VerdictCache,
    scratch: &mut Scratch,
    buf: &mut Vec<u8>,
) -> Response {
    let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default();
    if ctx.excluded(&path) {
        return Response::FAN_ALLOW;
    }
    let undecided = |why: &str| {
        let (response, action) = match ctx.args.undecidable {
            Undecidable::Deny => (Response::FAN_DENY, "access denied"),
            Undecidable::AllowAndReport => (Response::FAN_ALLOW, "allowed"),
        };
        ctx.undecided("fanotify", &path, why, action);
        response
    };
    let st = match nix::sys::stat::fstat(fd) {
        Ok(st) => st,
        Err(e) => return undecided(&format!("cannot be read: {e}")),
    };
    let regular = st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFREG;
    if !regular || st.st_size == 0 {
        return Response::FAN_ALLOW;
    }
    let id = (st.st_dev, st.st_ino);
    let before = Stamp::of(&st);
    if !nobody_writes(fd) {
        // A writer may change the bytes at any moment (through a mapping, without a trace).
        cache.forget(id);
    } else if let Some(response) = cache.get(id, before) {
        return response;
    } else if ctx.cached_clean(&FileStamp::of_stat(&st)) {
        return Response::FAN_ALLOW;
    }
    let read_started = SystemTime::now();
    let verdict = if st.st_size as u64 > ctx.args.max_filesize {
        Verdict::Undecidable(ctx.too_large())
    } else {
        buf.clear();
        let read = fd
            .try_clone_to_owned()
            .map(File::from)
            .and_then(|f| f.take(ctx.args.max_filesize + 1).read_to_end(buf));
        match read {
            Err(e) => Verdict::Undecidable(format!("cannot be read: {e}")),
            Ok(n) if n as u64 > ctx.args.max_filesize => Verdict::Undecidable(ctx.too_large()),
            Ok(_) => ctx.scanner.scan(buf, scratch).verdict(),
        }
    };
    let response = match &verdict {
        Verdict::Clean => Response::FAN_ALLOW,
        Verdict::Undecidable(why) => undecided(why),
        Verdict::Infected(names) => {
            // A suspicious-only verdict is reported and sampled but does not block the file.
            let (response, action) = if names.iter().all(|n| ctx.stores.suspicious(n)) {
                (Response::FAN_ALLOW, "reported")
            } else {
                (Response::FAN_DENY, "access denied")
            };
            ctx.detected("fanotify", &path, FileId::of_stat(&st), buf, names, action);
            response
        }
    };
    let settled = SystemTime::now()
        .checked_sub(SETTLE)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .is_some_and(|t| before.ctime.0 < t.as_secs() as i64);
    let after = nix::sys::stat::fstat(fd).ok();
    let unchanged = after.is_some_and(|st| Stamp::of(&st) == before);
    if settled && unchanged && nobody_writes(fd) {
        cache.insert(id, before, response);
    }
    let after = after.map_or(FileStamp::of_stat(&st), |a| FileStamp::of_stat(&a));
    let clean = verdict == Verdict::Clean && unchanged;
    ctx.remember(fd, FileStamp::of_stat(&st), after, read_started, clean);
    response
}

fn watch_inotify(ctx: &Ctx<'_>, tick: &mut dyn FnMut() -> bool) -> Result<()> {
    let flags =
        AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CREATE;
    let mut watches = DirWatches::new(flags)?;
    let mut count = 0;
    for root in &ctx.args.paths {
        for d in directories(root, ctx) {
            watches.add(&d);
            count += 1;
        }
    }
    eprintln!(
        "herd-agent watch: watching {count} directories (inotify, files are scanned after writing)"
    );
    if let Some(hosted) = &ctx.args.hosted {
        (hosted.on_watching)(count);
    }
    let (mut scratch, mut buf) = (Scratch::default(), Vec::new());
    while tick() {
        wait_readable(&[watches.inotify.as_fd()]);
        for (path, is_dir) in watches.events() {
            if ctx.excluded(&path) {
                continue;
            }
            if is_dir {
                // Files may have landed before the watch did: scan what is there.
                for d in directories(&path, ctx) {
                    watches.add(&d);
                }
                walk::walk(&path, true, &mut |event| {
                    if let Event::File { path, id, .. } = event {
                        let walked = Some(FileId {
                            dev: id.0,
                            ino: id.1,
                        });
                        ctx.scan_path("inotify", &path, walked, &mut scratch, &mut buf);
                    }
                });
            } else {
                ctx.scan_path("inotify", &path, None, &mut scratch, &mut buf);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daily_schedule() {
        let day = 86_400;
        let monday = 1_700_006_400; // a UTC midnight
        assert_eq!(next_daily(monday, 150), monday + 150 * 60);
        assert_eq!(next_daily(monday + 150 * 60, 150), monday + day + 150 * 60);
        assert_eq!(next_daily(monday + 23 * 3600, 0), monday + day);
        assert_eq!(parse_time_of_day("02:30"), Ok(150));
        assert!(parse_time_of_day("24:00").is_err());
        assert!(parse_time_of_day("2").is_err());
    }
}
