//! The persistent scan cache: files found clean, remembered by identity and metadata, so scheduled
//! scans and on-access checks do not read them again while nothing about them or the signatures
//! has changed. A detection is never remembered. A file whose scan found nothing but could not
//! see everything (an archive limit, an encrypted or corrupt member, the verification budget:
//! `herd_scan::Verdict::Undecidable`) is remembered with its reasons when the cache is keyed
//! by the scan's limits as well (`SetKey::of_scan`): that outcome is as much a function of the
//! bytes, the signatures and the limits as "clean" is, and reading such a file again at every
//! scheduled scan would only find the same limit again.
//!
//! A file is taken as unchanged when its device, inode, size, modification and change times
//! (nanoseconds) are all as recorded. ctime is what makes this sound: every write, truncate,
//! chmod, rename and link count change updates it, and user space cannot set it back.
//! The cache as a whole is keyed by the signature set: a different set (or engine semantics)
//! discards every entry, so a new signature set rescans everything.
//!
//! Racy clean (git's "racily clean" index entries): timestamps are coarse (a clock tick, or
//! seconds on some file systems), so a write landing in the same tick as the read can leave all
//! stamps equal. An entry is therefore recorded only when the file's ctime is older than the
//! read's start minus `SETTLE`, and the stamps taken after the scan equal those taken before.
//!
//! File format (little-endian): magic `HERDSCC2`, the 32-byte signature-set key, the save
//! generation (u32), the record count (u64), records (device, inode, size, mtime ns, ctime ns,
//! generation last used: 44 bytes; then a kind byte, 0 for clean, 1 for undecidable followed
//! by its reasons: a u32 count and that many u32-length-prefixed UTF-8 strings, the notes
//! and then the error if any, flagged by one byte), then a SHA-256 of everything before it.
//! A file of the older format (`HERDSCC1`) is dropped as one of another engine. It is
//! replaced atomically (temporary file, fsync, rename, directory fsync); a torn, truncated or
//! corrupt file fails the checksum and is discarded, which loses nothing but the cache.
//! Bounded: at most `max_entries` records, the least recently used dropped first.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// How much older than a read a file's ctime must be for a clean result to be remembered.
/// Two seconds covers the coarsest common timestamp granularity (FAT's two seconds).
pub const SETTLE: Duration = Duration::from_secs(2);

/// The default bound: 44 bytes a record, so about 22 MB of file and somewhat more in memory.
pub const DEFAULT_MAX_ENTRIES: usize = 500_000;

const MAGIC: &[u8; 8] = b"HERDSCC2";
/// The previous format, which remembered clean files only.
const MAGIC_V1: &[u8; 8] = b"HERDSCC1";
const HEADER: usize = 8 + 32 + 4 + 8;
/// The fixed part of a record, before its kind byte.
const RECORD: usize = 44;
const TRAILER: usize = 32;

/// What the engine's verdict depends on besides the signatures: a cache written by another
/// engine (a different release, or one with or without YARA) is not trusted.
const ENGINE_SEMANTICS: &str = concat!(
    "herd-scan ",
    env!("CARGO_PKG_VERSION"),
    " scan-cache 2",
    " yara=",
);

/// The metadata a cached clean result is tied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl FileStamp {
    pub fn of(meta: &Metadata) -> FileStamp {
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: nanos(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: nanos(meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Whether a clean scan of this file, read from `read_started` on, may be remembered: its
    /// last change is at least `settle` older than the read, so any later write gets a ctime
    /// different from the recorded one.
    pub fn settled_before(&self, read_started: SystemTime, settle: Duration) -> bool {
        let Some(limit) = read_started.checked_sub(settle) else {
            return false;
        };
        let limit = match limit.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            Err(_) => return false,
        };
        self.ctime_ns < limit
    }

    /// The same from a `stat` result (for descriptors handed over by fanotify).
    pub fn of_stat(st: &nix::sys::stat::FileStat) -> FileStamp {
        FileStamp {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime_ns: nanos(st.st_mtime, st.st_mtime_nsec),
            ctime_ns: nanos(st.st_ctime, st.st_ctime_nsec),
        }
    }
}

fn nanos(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// The key of a signature set: a digest of every database file's name and content, in load
/// order, and of the engine semantics.
#[derive(Debug, Clone)]
pub struct SetKey(Sha256);

impl Default for SetKey {
    fn default() -> Self {
        let mut h = Sha256::new();
        h.update(ENGINE_SEMANTICS.as_bytes());
        h.update([u8::from(cfg!(feature = "yara"))]);
        SetKey(h)
    }
}

impl SetKey {
    /// Adds one database file. The name matters (its extension decides how it is parsed) and
    /// lengths are included so that no two different sequences hash the same.
    pub fn add(&mut self, name: &str, content: &[u8]) {
        self.0.update((name.len() as u64).to_le_bytes());
        self.0.update(name.as_bytes());
        self.0.update((content.len() as u64).to_le_bytes());
        self.0.update(content);
    }
    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }

    /// The key of a loaded signature set (`signatures::Loaded::set_key`, which names every
    /// database file by path, device, inode, size and times — the same standard this cache
    /// holds files to, and cheap where reading 200 MB of databases at each start would not be).
    pub fn of_loaded(loaded: &[u8; 32]) -> [u8; 32] {
        let mut key = SetKey::default();
        key.add("signature set", loaded);
        key.finish()
    }

    /// The key of a loaded signature set scanned with these limits and options: what a cache
    /// that also remembers undecidable files must be keyed by, since a limit decides whether
    /// a member is seen. A change of any of them rescans everything.
    pub fn of_scan(
        loaded: &[u8; 32],
        limits: &herd_scan::Limits,
        options: &herd_scan::MatchOptions,
    ) -> [u8; 32] {
        // Destructured, so that a new limit or option cannot be left out of the key.
        let herd_scan::Limits {
            max_depth,
            max_files,
            max_total,
            max_member,
            max_ratio,
            ratio_floor,
        } = *limits;
        let herd_scan::MatchOptions {
            all_matches,
            verify_budget,
        } = *options;
        let mut scan = Vec::new();
        for v in [
            u64::from(max_depth),
            u64::from(max_files),
            max_total,
            max_member,
            max_ratio,
            ratio_floor,
            u64::from(all_matches),
            verify_budget,
        ] {
            scan.extend_from_slice(&v.to_le_bytes());
        }
        let mut key = SetKey::default();
        key.add("signature set", loaded);
        key.add("limits and options", &scan);
        key.finish()
    }
}

/// Why a file's scan found nothing yet could not call it clean, as the scan reported it: the
/// notes (`herd_scan::Note`, as `path: reason`) and the error (the verification budget).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecided {
    pub notes: Vec<String>,
    pub error: Option<String>,
}

/// What the cache remembers of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remembered {
    Clean,
    /// Nothing found, but not everything seen; only in a cache keyed by `SetKey::of_scan`.
    Undecidable(Arc<Undecided>),
}

#[derive(Debug, Clone)]
struct Entry {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    used: u32,
    /// `None`: clean.
    undecided: Option<Arc<Undecided>>,
}

/// Clean files by (device, inode), for one signature set.
#[derive(Debug)]
pub struct ScanCache {
    path: PathBuf,
    key: [u8; 32],
    entries: HashMap<(u64, u64), Entry>,
    /// Incremented at every load: entries used in this run carry it, so eviction drops the
    /// ones unused for the most runs.
    generation: u32,
    max_entries: usize,
    dirty: bool,
}

/// Why a cache file was not used (it is then rebuilt from nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discarded {
    /// Written for another signature set or engine: every file is scanned again.
    OtherSignatureSet,
    /// Truncated, torn or altered: the checksum or structure does not hold.
    Corrupt(String),
    /// It could not be read at all.
    Unreadable(String),
}

impl std::fmt::Display for Discarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Discarded::OtherSignatureSet => f.write_str("written for another signature set"),
            Discarded::Corrupt(why) => write!(f, "corrupt ({why})"),
            Discarded::Unreadable(why) => write!(f, "unreadable ({why})"),
        }
    }
}

impl ScanCache {
    /// Opens the cache at `path` for the signature set `key`. A missing file is an empty cache;
    /// an unusable one is an empty cache too, with the reason (worth a warning, never fatal).
    pub fn open(path: &Path, key: [u8; 32], max_entries: usize) -> (ScanCache, Option<Discarded>) {
        let mut cache = ScanCache {
            path: path.to_owned(),
            key,
            entries: HashMap::new(),
            generation: 1,
            max_entries,
            dirty: false,
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (cache, None),
            Err(e) => return (cache, Some(Discarded::Unreadable(e.to_string()))),
        };
        match decode(&bytes, &key) {
            Ok((generation, entries)) => {
                cache.generation = generation.wrapping_add(1).max(1);
                cache.entries = entries;
                (cache, None)
            }
            Err(why) => {
                // Whatever was there is replaced at the next save.
                cache.dirty = true;
                (cache, Some(why))
            }
        }
    }

    /// Whether the file with these stamps was found clean with this signature set.
    pub fn is_clean(&mut self, stamp: &FileStamp) -> bool {
        self.lookup(stamp) == Some(Remembered::Clean)
    }

    /// What a scan with this signature set (and limits, for `SetKey::of_scan`) found of the
    /// file with these stamps, if it is remembered.
    pub fn lookup(&mut self, stamp: &FileStamp) -> Option<Remembered> {
        let generation = self.generation;
        match self.entries.get_mut(&(stamp.dev, stamp.ino)) {
            Some(e)
                if e.size == stamp.size
                    && e.mtime_ns == stamp.mtime_ns
                    && e.ctime_ns == stamp.ctime_ns =>
            {
                if e.used != generation {
                    e.used = generation;
                    self.dirty = true;
                }
                Some(match &e.undecided {
                    None => Remembered::Clean,
                    Some(u) => Remembered::Undecidable(u.clone()),
                })
            }
            _ => None,
        }
    }

    /// Remembers a file found clean. The caller has checked `FileStamp::settled_before` and
    /// that the stamps did not change during the scan.
    pub fn record_clean(&mut self, stamp: &FileStamp) {
        self.record(stamp, Remembered::Clean);
    }

    /// Remembers what a scan found of a file, under the same conditions as `record_clean`.
    /// `Remembered::Undecidable` belongs only in a cache keyed by `SetKey::of_scan`.
    pub fn record(&mut self, stamp: &FileStamp, what: Remembered) {
        let entry = Entry {
            size: stamp.size,
            mtime_ns: stamp.mtime_ns,
            ctime_ns: stamp.ctime_ns,
            used: self.generation,
            undecided: match what {
                Remembered::Clean => None,
                Remembered::Undecidable(u) => Some(u),
            },
        };
        self.entries.insert((stamp.dev, stamp.ino), entry);
        self.dirty = true;
    }

    /// Drops what is known about an inode (it was found infected or undecidable, or changed).
    pub fn forget(&mut self, dev: u64, ino: u64) {
        if self.entries.remove(&(dev, ino)).is_some() {
            self.dirty = true;
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Writes the cache if anything changed: atomically and durably, trimmed to its bound.
    pub fn save(&mut self) -> Result<(), herd_fs::WriteError> {
        if !self.dirty {
            return Ok(());
        }
        if self.entries.len() > self.max_entries {
            // Most recently used first; generations wrap only after four billion runs.
            let mut all: Vec<((u64, u64), Entry)> = self.entries.drain().collect();
            all.sort_unstable_by_key(|(_, e)| std::cmp::Reverse(e.used));
            all.truncate(self.max_entries);
            self.entries = all.into_iter().collect();
        }
        let bytes = encode(&self.key, self.generation, &self.entries);
        herd_fs::write_atomic(&self.path, &bytes, 0o600)?;
        self.dirty = false;
        Ok(())
    }
}

fn encode(key: &[u8; 32], generation: u32, entries: &HashMap<(u64, u64), Entry>) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + entries.len() * (RECORD + 1) + TRAILER);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(key);
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (&(dev, ino), e) in entries {
        out.extend_from_slice(&dev.to_le_bytes());
        out.extend_from_slice(&ino.to_le_bytes());
        out.extend_from_slice(&e.size.to_le_bytes());
        out.extend_from_slice(&e.mtime_ns.to_le_bytes());
        out.extend_from_slice(&e.ctime_ns.to_le_bytes());
        out.extend_from_slice(&e.used.to_le_bytes());
        match &e.undecided {
            None => out.push(0),
            Some(u) => {
                out.push(1);
                let strings = u.notes.iter().chain(&u.error);
                out.extend_from_slice(&(strings.clone().count() as u32).to_le_bytes());
                for s in strings {
                    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    out.extend_from_slice(s.as_bytes());
                }
                out.push(u8::from(u.error.is_some()));
            }
        }
    }
    let sum: [u8; 32] = Sha256::digest(&out).into();
    out.extend_from_slice(&sum);
    out
}

type Decoded = (u32, HashMap<(u64, u64), Entry>);

fn decode(bytes: &[u8], key: &[u8; 32]) -> Result<Decoded, Discarded> {
    let corrupt = |why: &str| Discarded::Corrupt(why.to_owned());
    if bytes.len() < HEADER + TRAILER {
        return Err(corrupt("shorter than its header"));
    }
    let (body, sum) = bytes.split_at(bytes.len() - TRAILER);
    if Sha256::digest(body).as_slice() != sum {
        return Err(corrupt("checksum mismatch: torn or altered"));
    }
    if &body[..8] == MAGIC_V1 {
        // Written by an older agent: its entries are for another engine in any case.
        return Err(Discarded::OtherSignatureSet);
    }
    if &body[..8] != MAGIC {
        return Err(corrupt("not a herd scan cache (bad magic)"));
    }
    if &body[8..40] != key {
        return Err(Discarded::OtherSignatureSet);
    }
    let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
    let generation = u32::from_le_bytes(body[40..44].try_into().expect("4 bytes"));
    let count = u64_at(44);
    let mut records = Reader(&body[HEADER..]);
    let too_short = || corrupt("record count does not match the length");
    // Every record takes at least RECORD + 1 bytes: a count larger than that allows is a
    // corrupt file, not a reason to reserve memory for it.
    if count > (records.0.len() / (RECORD + 1)) as u64 {
        return Err(too_short());
    }
    let mut entries = HashMap::with_capacity(count as usize);
    for _ in 0..count {
        let r = records.take(RECORD).ok_or_else(too_short)?;
        let field = |i: usize| u64::from_le_bytes(r[i * 8..i * 8 + 8].try_into().expect("8"));
        let undecided = match records.take(1).ok_or_else(too_short)?[0] {
            0 => None,
            1 => Some(Arc::new(records.undecided().ok_or_else(|| {
                corrupt("an undecidable record's reasons are cut short or not UTF-8")
            })?)),
            _ => return Err(corrupt("unknown record kind")),
        };
        let entry = Entry {
            size: field(2),
            mtime_ns: field(3) as i64,
            ctime_ns: field(4) as i64,
            used: u32::from_le_bytes(r[40..44].try_into().expect("4 bytes")),
            undecided,
        };
        entries.insert((field(0), field(1)), entry);
    }
    if !records.0.is_empty() {
        return Err(corrupt("bytes after the last record"));
    }
    Ok((generation, entries))
}

/// The records of a cache file, read front to back.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn undecided(&mut self) -> Option<Undecided> {
        let count = self.u32()?;
        let mut strings = Vec::new();
        for _ in 0..count {
            let len = self.u32()? as usize;
            strings.push(std::str::from_utf8(self.take(len)?).ok()?.to_owned());
        }
        let error = match self.take(1)?[0] {
            0 => None,
            1 => Some(strings.pop()?),
            _ => return None,
        };
        Some(Undecided {
            notes: strings,
            error,
        })
    }
}

/// True when no one has the file open for writing (a shared writable mapping included), as
/// far as the kernel says; false when someone has or when it cannot tell.
///
/// A read lease can be taken only when the inode has no writers (`i_writecount` is zero), so
/// taking one and dropping it at once is a two-syscall probe. Root may take a lease on any
/// regular file; file systems without lease support answer an error, and then nothing of
/// theirs is cached.
pub(crate) fn nobody_writes(fd: BorrowedFd<'_>) -> bool {
    #[allow(unsafe_code)]
    // SAFETY: `fd` is a valid open descriptor for the duration of the borrow, and F_SETLEASE
    // takes an integer argument; no memory is passed to the kernel.
    unsafe {
        let raw = fd.as_raw_fd();
        if nix::libc::fcntl(raw, nix::libc::F_SETLEASE, nix::libc::F_RDLCK) != 0 {
            return false;
        }
        nix::libc::fcntl(raw, nix::libc::F_SETLEASE, nix::libc::F_UNLCK) == 0
    }
}

/// A writer opening the file during the instant a probe lease is held breaks it, and the
/// kernel then signals the lease holder with SIGIO, whose default action ends the process.
/// The lease is dropped right after, so the signal carries nothing to act on.
pub(crate) fn ignore_lease_breaks() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    #[allow(unsafe_code)]
    // SAFETY: SIG_IGN installs no handler code, so no async-signal-safety question arises.
    let _ = unsafe { signal(Signal::SIGIO, SigHandler::SigIgn) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(ino: u64, ctime_ns: i64) -> FileStamp {
        FileStamp {
            dev: 7,
            ino,
            size: 100,
            mtime_ns: ctime_ns,
            ctime_ns,
        }
    }

    #[test]
    fn entries_survive_a_save_and_every_stamp_invalidates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache");
        let (mut cache, why) = ScanCache::open(&path, [1; 32], 10);
        assert_eq!(why, None);
        cache.record_clean(&stamp(1, 5));
        cache.save().unwrap();
        let (mut cache, why) = ScanCache::open(&path, [1; 32], 10);
        assert_eq!(why, None);
        let s = stamp(1, 5);
        assert!(cache.is_clean(&s));
        for changed in [
            FileStamp { size: 101, ..s },
            FileStamp { mtime_ns: 6, ..s },
            FileStamp { ctime_ns: 6, ..s },
            FileStamp { ino: 2, ..s },
            FileStamp { dev: 8, ..s },
        ] {
            assert!(!cache.is_clean(&changed), "{changed:?}");
        }
    }

    #[test]
    fn another_signature_set_discards_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache");
        let (mut cache, _) = ScanCache::open(&path, [1; 32], 10);
        cache.record_clean(&stamp(1, 5));
        cache.save().unwrap();
        let (mut cache, why) = ScanCache::open(&path, [2; 32], 10);
        assert_eq!(why, Some(Discarded::OtherSignatureSet));
        assert!(!cache.is_clean(&stamp(1, 5)));
    }

    #[test]
    fn a_torn_or_altered_file_is_discarded_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache");
        let (mut cache, _) = ScanCache::open(&path, [1; 32], 10);
        for ino in 0..5 {
            cache.record_clean(&stamp(ino, 5));
        }
        cache.save().unwrap();
        let good = std::fs::read(&path).unwrap();
        let mut flipped = good.clone();
        flipped[HEADER + 3] ^= 1;
        let cases = [
            ("truncated mid-record", good[..good.len() - 50].to_vec()),
            ("one bit flipped", flipped),
            ("empty", Vec::new()),
            (
                "another format",
                b"not a cache at all, but long enough to have a header......".repeat(2),
            ),
        ];
        for (what, bytes) in cases {
            std::fs::write(&path, &bytes).unwrap();
            let (mut cache, why) = ScanCache::open(&path, [1; 32], 10);
            assert!(
                matches!(why, Some(Discarded::Corrupt(_))),
                "{what}: {why:?}"
            );
            assert_eq!(cache.len(), 0, "{what}");
            // The next save replaces the bad file even when nothing new was recorded.
            cache.save().unwrap();
            let (cache, why) = ScanCache::open(&path, [1; 32], 10);
            assert_eq!((why, cache.len()), (None, 0), "{what}");
        }
    }

    #[test]
    fn the_bound_drops_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache");
        let (mut cache, _) = ScanCache::open(&path, [1; 32], 3);
        for ino in 0..3 {
            cache.record_clean(&stamp(ino, 5));
        }
        cache.save().unwrap();
        // A later run uses inode 2 and adds 3 and 4: 0 and 1 are the least recently used.
        let (mut cache, _) = ScanCache::open(&path, [1; 32], 3);
        assert!(cache.is_clean(&stamp(2, 5)));
        cache.record_clean(&stamp(3, 5));
        cache.record_clean(&stamp(4, 5));
        cache.save().unwrap();
        let (mut cache, _) = ScanCache::open(&path, [1; 32], 3);
        assert_eq!(cache.len(), 3);
        assert!(!cache.is_clean(&stamp(0, 5)) && !cache.is_clean(&stamp(1, 5)));
        assert!([2, 3, 4].iter().all(|&i| cache.is_clean(&stamp(i, 5))));
    }

    fn undecided(notes: &[&str], error: Option<&str>) -> Remembered {
        Remembered::Undecidable(Arc::new(Undecided {
            notes: notes.iter().map(|n| (*n).to_owned()).collect(),
            error: error.map(str::to_owned),
        }))
    }

    #[test]
    fn undecidable_files_are_remembered_with_their_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache");
        let (mut cache, _) = ScanCache::open(&path, [1; 32], 10);
        let limit = undecided(&["a.zip/big: archive member larger than the limit"], None);
        let budget = undecided(&[], Some("verification budget spent"));
        let both = undecided(
            &["x: encrypted member not scanned", "y: ünïcode"],
            Some("e"),
        );
        cache.record(&stamp(1, 5), limit.clone());
        cache.record(&stamp(2, 5), budget.clone());
        cache.record(&stamp(3, 5), both.clone());
        cache.record_clean(&stamp(4, 5));
        cache.save().unwrap();
        let (mut cache, why) = ScanCache::open(&path, [1; 32], 10);
        assert_eq!(why, None);
        assert_eq!(cache.lookup(&stamp(1, 5)), Some(limit));
        assert_eq!(cache.lookup(&stamp(2, 5)), Some(budget));
        assert_eq!(cache.lookup(&stamp(3, 5)), Some(both));
        assert_eq!(cache.lookup(&stamp(4, 5)), Some(Remembered::Clean));
        // "Clean" is never answered for an undecidable file, and a change forgets it.
        assert!(!cache.is_clean(&stamp(1, 5)));
        assert_eq!(cache.lookup(&stamp(1, 6)), None);
        // A file found clean later replaces what was remembered of it.
        cache.record_clean(&stamp(1, 5));
        assert!(cache.is_clean(&stamp(1, 5)));
    }

    #[test]
    fn the_scan_key_holds_every_limit_and_option() {
        use herd_scan::{Limits, MatchOptions};
        let set = [9; 32];
        let (l, o) = (Limits::default(), MatchOptions::default());
        let base = SetKey::of_scan(&set, &l, &o);
        assert_eq!(base, SetKey::of_scan(&set, &l, &o), "deterministic");
        assert_ne!(base, SetKey::of_loaded(&set));
        assert_ne!(base, SetKey::of_scan(&[8; 32], &l, &o), "another set");
        let changed_limits = [
            Limits { max_depth: 3, ..l },
            Limits { max_files: 3, ..l },
            Limits { max_total: 3, ..l },
            Limits { max_member: 3, ..l },
            Limits { max_ratio: 3, ..l },
            Limits {
                ratio_floor: 3,
                ..l
            },
        ];
        for changed in changed_limits {
            assert_ne!(base, SetKey::of_scan(&set, &changed, &o), "{changed:?}");
        }
        for changed in [
            MatchOptions {
                all_matches: true,
                ..o
            },
            MatchOptions {
                verify_budget: 3,
                ..o
            },
        ] {
            assert_ne!(base, SetKey::of_scan(&set, &l, &changed), "{changed:?}");
        }
    }

    /// A file whose checksum holds but whose records do not parse (a bug, or a hand-made
    /// file) is discarded as corrupt, never half read.
    #[test]
    fn records_that_do_not_parse_are_corrupt_even_with_a_good_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache");
        let (mut cache, _) = ScanCache::open(&path, [1; 32], 10);
        cache.record(&stamp(1, 5), undecided(&["note"], None));
        cache.save().unwrap();
        let good = std::fs::read(&path).unwrap();
        let body = &good[..good.len() - TRAILER];
        let resum = |body: Vec<u8>| {
            let mut out = body.clone();
            out.extend_from_slice(&Sha256::digest(&body));
            out
        };
        let kind_at = HEADER + RECORD;
        let mut bad_kind = body.to_vec();
        bad_kind[kind_at] = 7;
        let mut long_string = body.to_vec();
        long_string[kind_at + 5..kind_at + 9].copy_from_slice(&1000u32.to_le_bytes());
        let mut bad_utf8 = body.to_vec();
        bad_utf8[kind_at + 9] = 0xff;
        let mut extra = body.to_vec();
        extra.push(0);
        let mut v1 = body.to_vec();
        v1[..8].copy_from_slice(MAGIC_V1);
        for (what, bytes) in [
            ("unknown kind", bad_kind),
            ("string past the end", long_string),
            ("not UTF-8", bad_utf8),
            ("trailing bytes", extra),
            ("cut before the reasons", body[..kind_at + 1].to_vec()),
        ] {
            std::fs::write(&path, resum(bytes)).unwrap();
            let (cache, why) = ScanCache::open(&path, [1; 32], 10);
            assert!(
                matches!(why, Some(Discarded::Corrupt(_))),
                "{what}: {why:?}"
            );
            assert_eq!(cache.len(), 0, "{what}");
        }
        // The previous format is dropped quietly, as a cache of another engine.
        std::fs::write(&path, resum(v1)).unwrap();
        let (_, why) = ScanCache::open(&path, [1; 32], 10);
        assert_eq!(why, Some(Discarded::OtherSignatureSet));
    }

    #[test]
    fn only_settled_files_may_be_remembered() {
        let read = UNIX_EPOCH + Duration::from_secs(100);
        let at = |secs: i64| stamp(1, secs * 1_000_000_000);
        assert!(at(97).settled_before(read, SETTLE));
        // Changed within the settle window (or "in the future", clock skew): not remembered.
        assert!(!at(98).settled_before(read, SETTLE));
        assert!(!at(100).settled_before(read, SETTLE));
        assert!(!at(200).settled_before(read, SETTLE));
    }
}
