//! Scanning one buffer: its own bytes, then the members of any container in it, recursively,
//! within limits. The result is data (`Report`): detections, notes about what was not
//! scanned and why, and an error if verification gave up. `Report::verdict` reduces it to
//! clean, infected or undecidable for callers that must allow or refuse (on-access scanning).

use std::sync::Arc;

use crate::archive::{self, Entry, InflateError};
use crate::db::ContainerType;
use crate::engine::{Engine, KnownDigests, MatchOptions, Scratch};
use crate::error::{ArchivePath, ScanError};

/// The name reported for a member whose compression ratio exceeds the limit. Zip bombs are
/// hostile by construction, so they are a detection, not a silent skip.
pub const BOMB_NAME: &str = "Herd.Heuristic.ArchiveBomb";

/// The member name of the bytes after a gzip stream's last member.
pub const TRAILING_NAME: &str = "(after gzip)";

/// Limits on what container scanning may do, per scanned top-level buffer. The defaults follow
/// clamscan's (`--max-recursion 17`, `--max-files 10000`, `--max-scansize 400M`,
/// `--max-filesize 100M`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Containers nested deeper than this are not opened (the top level is depth 0).
    pub max_depth: u32,
    /// Members extracted in total.
    pub max_files: u32,
    /// Bytes extracted in total.
    pub max_total: u64,
    /// Bytes of one extracted member.
    pub max_member: u64,
    /// Largest output/input ratio of a compressed member…
    pub max_ratio: u64,
    /// …once its output is above this many bytes.
    pub ratio_floor: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 16,
            max_files: 10_000,
            max_total: 400 << 20,
            max_member: 100 << 20,
            max_ratio: 100,
            ratio_floor: 1 << 20,
        }
    }
}

/// A signature found, and where inside containers (empty path: the buffer itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    pub name: Arc<str>,
    pub path: ArchivePath,
}

/// Something not scanned, and why. Not an error: the rest of the buffer was scanned. But every
/// note means "nothing found" is not "clean": a file crafted to hit a limit could carry its
/// payload past it, and a member that is encrypted, compressed with an unsupported method,
/// truncated or corrupt is one an unpacker may still extract (clamscan only notes these; Herd
/// makes the verdict undecidable, so on-access policy decides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub path: ArchivePath,
    pub kind: NoteKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoteKind {
    DepthLimit,
    FileCountLimit,
    TotalSizeLimit,
    MemberTooLarge,
    Archive(archive::Problem),
    CorruptMember(String),
}

impl std::fmt::Display for NoteKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoteKind::DepthLimit => {
                f.write_str("archive nesting limit reached; deeper members not scanned")
            }
            NoteKind::FileCountLimit => {
                f.write_str("archive member count limit reached; the rest not scanned")
            }
            NoteKind::TotalSizeLimit => {
                f.write_str("archive total size limit reached; the rest not scanned")
            }
            NoteKind::MemberTooLarge => {
                f.write_str("archive member larger than the limit; not scanned")
            }
            NoteKind::Archive(p) => p.fmt(f),
            NoteKind::CorruptMember(why) => write!(f, "corrupt member: {why}"),
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub detections: Vec<Detection>,
    pub notes: Vec<Note>,
    pub error: Option<ScanError>,
}

/// What a report means for a caller that must allow or refuse the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Everything was scanned and nothing was found.
    Clean,
    /// At least one signature matched (whatever else happened).
    Infected(Vec<Arc<str>>),
    /// Nothing was found, but not everything could be scanned; the reason says why. Never the
    /// same as clean: the caller's policy decides.
    Undecidable(String),
}

impl Report {
    /// Clean, infected, or undecidable (verification gave up, a limit left content unseen, or a
    /// member could not be read).
    pub fn verdict(&self) -> Verdict {
        if !self.detections.is_empty() {
            return Verdict::Infected(self.detections.iter().map(|d| d.name.clone()).collect());
        }
        if let Some(e) = &self.error {
            return Verdict::Undecidable(e.to_string());
        }
        match self.notes.first() {
            Some(n) if n.path.0.is_empty() => Verdict::Undecidable(n.kind.to_string()),
            Some(n) => Verdict::Undecidable(format!("{}: {}", n.path, n.kind)),
            None => Verdict::Clean,
        }
    }
}

/// An engine with the limits and options of one kind of scan.
#[derive(Debug, Clone, Copy)]
pub struct Scanner<'e> {
    pub engine: &'e Engine,
    pub limits: Limits,
    pub options: MatchOptions,
}

struct Walk<'s> {
    scratch: &'s mut Scratch,
    report: Report,
    files: u32,
    total: u64,
    /// Reusable output buffers, one per nesting level.
    buffers: Vec<Vec<u8>>,
    stop: bool,
}

impl Scanner<'_> {
    /// Scans `data` and the containers in it.
    pub fn scan(&self, data: &[u8], scratch: &mut Scratch) -> Report {
        self.scan_known(data, KnownDigests::default(), scratch)
    }

    /// [`Scanner::scan`] with digests of `data` (the top level only) the caller already has.
    pub fn scan_known(&self, data: &[u8], known: KnownDigests, scratch: &mut Scratch) -> Report {
        let mut walk = Walk {
            scratch,
            report: Report::default(),
            files: 0,
            total: 0,
            buffers: Vec::new(),
            stop: false,
        };
        let mut path = Vec::new();
        self.scan_level(data, None, known, 0, &mut path, &mut walk);
        walk.report
    }

    fn detect(&self, name: Arc<str>, path: &[String], walk: &mut Walk<'_>) {
        walk.report.detections.push(Detection {
            name,
            path: ArchivePath(path.to_vec()),
        });
        if !self.options.all_matches {
            walk.stop = true;
        }
    }

    /// A note about `name` inside the container at `path` (the container itself when empty).
    fn note_at(&self, kind: NoteKind, name: String, path: &[String], walk: &mut Walk<'_>) {
        let mut at = path.to_vec();
        if !name.is_empty() {
            at.push(name);
        }
        walk.report.notes.push(Note {
            path: ArchivePath(at),
            kind,
        });
    }

    fn note(&self, kind: NoteKind, path: &[String], walk: &mut Walk<'_>) {
        walk.report.notes.push(Note {
            path: ArchivePath(path.to_vec()),
            kind,
        });
    }

    /// Scans `data`, found in a container of type `container` (`None`: the file itself),
    /// with the digests of it the caller already has.
    fn scan_level(
        &self,
        data: &[u8],
        container: Option<ContainerType>,
        known: KnownDigests,
        depth: u32,
        path: &mut Vec<String>,
        walk: &mut Walk<'_>,
    ) {
        // Known clean (`.fp`, `.sfp`): ClamAV trusts the layer and every layer inside it.
        if self.engine.is_allowed(data) {
            return;
        }
        match self
            .engine
            .match_layer_known(data, container, known, walk.scratch, self.options)
        {
            Ok(names) => {
                for name in names {
                    self.detect(name, path, walk);
                }
            }
            Err(e) => {
                walk.report.error = Some(e);
                walk.stop = true;
            }
        }
        if walk.stop {
            return;
        }
        let mut kinds = archive::detect(data).peekable();
        if kinds.peek().is_some() && depth >= self.limits.max_depth {
            self.note(NoteKind::DepthLimit, path, walk);
            return;
        }
        for kind in kinds {
            self.scan_members(kind, data, depth, path, walk);
            if walk.stop {
                return;
            }
        }
    }

    /// Scans the members of one container reading of `data`.
    fn scan_members(
        &self,
        kind: archive::Kind,
        data: &[u8],
        depth: u32,
        path: &mut Vec<String>,
        walk: &mut Walk<'_>,
    ) {
        let container = match kind {
            archive::Kind::Zip => ContainerType::Zip,
            archive::Kind::Gzip => ContainerType::Gzip,
            archive::Kind::Tar if data.get(257..262) == Some(b"ustar") => ContainerType::PosixTar,
            archive::Kind::Tar => ContainerType::OldTar,
        };
        if self.engine.has_container_signatures() {
            // ClamAV matches what the container lists before extracting anything, and
            // reports it on the container.
            let mut found = Vec::new();
            for member in archive::listing(kind, data) {
                self.engine
                    .match_member_meta(container, data.len() as u64, &member, &mut found);
            }
            let mut seen = std::collections::HashSet::new();
            for name in found {
                if seen.insert(name.clone()) {
                    self.detect(name, path, walk);
                    if walk.stop {
                        return;
                    }
                }
            }
        }
        for entry in archive::members(kind, data) {
            let member = match entry {
                Entry::Member(m) => m,
                Entry::Unreadable { name, problem } => {
                    self.note_at(NoteKind::Archive(problem), name, path, walk);
                    continue;
                }
                Entry::Suspicious {
                    name, heuristic, ..
                } => {
                    let pushed = !name.is_empty();
                    if pushed {
                        path.push(name);
                    }
                    self.detect(Arc::from(heuristic.name()), path, walk);
                    if pushed {
                        path.pop();
                    }
                    if walk.stop {
                        return;
                    }
                    continue;
                }
            };
            if walk.files >= self.limits.max_files {
                self.note(NoteKind::FileCountLimit, path, walk);
                return;
            }
            walk.files += 1;
            path.push(member.name);
            let remaining = self.limits.max_total.saturating_sub(walk.total);
            let limit = remaining.min(self.limits.max_member);
            let mut buf = walk.buffers.pop().unwrap_or_default();
            match archive::inflate(
                member.content,
                limit,
                self.limits.max_ratio,
                self.limits.ratio_floor,
                &mut buf,
            ) {
                Ok(inflated) => {
                    walk.total += buf.len() as u64;
                    if let Some(expected) = member.crc {
                        let mut crc = flate2::Crc::new();
                        crc.update(&buf);
                        if crc.sum() != expected {
                            self.note(
                                NoteKind::CorruptMember(
                                    "CRC-32 differs from the archive's: not read as written"
                                        .to_owned(),
                                ),
                                path,
                                walk,
                            );
                        }
                    }
                    self.scan_level(
                        &buf,
                        Some(container),
                        KnownDigests::default(),
                        depth + 1,
                        path,
                        walk,
                    );
                    if let archive::Content::Gzip(stream) = member.content
                        && inflated.trailing > 0
                        && !walk.stop
                    {
                        // What follows the gzip stream: gzip ignores it, unzip may not.
                        let after = &stream[stream.len() - inflated.trailing..];
                        path.push(TRAILING_NAME.to_owned());
                        self.scan_level(
                            after,
                            Some(container),
                            KnownDigests::default(),
                            depth + 1,
                            path,
                            walk,
                        );
                        path.pop();
                    }
                }
                Err(InflateError::Bomb { .. }) => self.detect(Arc::from(BOMB_NAME), path, walk),
                Err(InflateError::TooLarge) if remaining <= self.limits.max_member => {
                    self.note(NoteKind::TotalSizeLimit, path, walk);
                    walk.stop = true;
                }
                Err(InflateError::TooLarge) => self.note(NoteKind::MemberTooLarge, path, walk),
                Err(InflateError::Corrupt(why)) => {
                    // What inflated before the damage is what an unpacker writes out before it
                    // stops: scanned, and the member still reported as not wholly read.
                    self.note(NoteKind::CorruptMember(why), path, walk);
                    walk.total += buf.len() as u64;
                    self.scan_level(
                        &buf,
                        Some(container),
                        KnownDigests::default(),
                        depth + 1,
                        path,
                        walk,
                    );
                }
            }
            walk.buffers.push(buf);
            path.pop();
            if walk.stop {
                return;
            }
        }
    }
}
