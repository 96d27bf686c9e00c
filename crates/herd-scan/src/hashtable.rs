//! Hash signatures stored compactly, in one byte format that is both the in-memory form and
//! the index file an agent maps from disk (`mapped.rs` is the edge that maps it).
//!
//! Why: 4,000,000 `.hdb` lines held as `HashSig`s (an `Arc<str>` name and a `Vec` digest each,
//! in a hash map) took 1.6 GB; here a signature is its digest and a 4-byte size in a sorted
//! array (20 bytes for MD5), a 4-byte name offset in a parallel array, and its name once in a
//! names blob. Lookups are a binary search (within a 2-byte-prefix bucket for large tables),
//! which touches a few pages, so a mapped table costs memory only where files are looked up.
//!
//! This is not a general database: the builder sees everything before `finish`, the reader
//! never changes a table. The stored texts and notes let a cached index stand for a whole
//! signature set (body signature files are small and compiled at load; only hashes, the
//! millions, need mapping).
//!
//! File layout (little-endian), `FORMAT_VERSION` 1:
//! - header, `HEADER_LEN` (64) bytes: magic `HERDHSIG`, format version u32, section count u32,
//!   the caller's 32-byte key (what the index was built from), payload length u64, CRC-32 of
//!   the payload u32, CRC-32 of the header's first 60 bytes u32;
//! - payload: a directory of `SECTIONS` (offset u64, length u64) pairs relative to the payload,
//!   then the sections, each 8-byte aligned: per digest kind (MD5, SHA-1, SHA-256) `records`
//!   (digest, size u32; sorted), `names` (u32 offsets, parallel to records), `buckets` (65,537
//!   u32 start indices by the digest's first two bytes, or empty for small tables), `wide`
//!   (digest, size u64 with `u64::MAX` for `*`, name offset u32: sizes that do not fit u32),
//!   `sizes` (the distinct exact sizes, sorted u32); then the names blob (u16 length + UTF-8
//!   each), stored texts (u32 name length, name, u64 length, bytes, each), notes (UTF-8 lines),
//!   and meta (the hash signature count, u64).

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use crate::db::{HashKind, parse_hash_fields};
use crate::error::{ParseError, ParseErrorKind};

pub const MAGIC: [u8; 8] = *b"HERDHSIG";
/// Bump on any change of the layout; an index of another version is rebuilt, never read.
pub const FORMAT_VERSION: u32 = 1;
pub const HEADER_LEN: usize = 64;

const KINDS: [HashKind; 3] = [HashKind::Md5, HashKind::Sha1, HashKind::Sha256];
const PER_KIND: usize = 5;
const NAMES_BLOB: usize = KINDS.len() * PER_KIND;
const TEXTS: usize = NAMES_BLOB + 1;
const NOTES: usize = NAMES_BLOB + 2;
const META: usize = NAMES_BLOB + 3;
/// Sections in the payload's directory.
pub const SECTIONS: usize = META + 1;
const BUCKETS: usize = 1 << 16;
/// Below this many records a plain binary search is as quick, and the bucket table (256 KB)
/// would be most of a small table.
const BUCKETS_FROM: usize = 1 << 16;
const ANY_SIZE: u64 = u64::MAX;

fn kind_index(kind: HashKind) -> usize {
    match kind {
        HashKind::Md5 => 0,
        HashKind::Sha1 => 1,
        HashKind::Sha256 => 2,
    }
}

/// Why bytes are not a usable table. Any of these makes a cached index be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("not a Herd hash signature index (bad magic)")]
    Magic,
    #[error("index format version {found}, this engine reads {FORMAT_VERSION}")]
    Version { found: u32 },
    #[error("the index header's checksum does not match (corrupt header)")]
    HeaderChecksum,
    #[error("the index is {found} bytes, its header says {expected} (truncated or extended)")]
    Length { expected: u64, found: u64 },
    #[error("the index payload's checksum does not match (corrupt content)")]
    PayloadChecksum,
    #[error("index section {section}: {what}")]
    Section { section: usize, what: &'static str },
}

/// A fixed-size header, read before anything else is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub key: [u8; 32],
    pub payload_len: u64,
    pub payload_crc: u32,
}

impl Header {
    /// Parses and checks a header (magic, version, section count, its own checksum).
    pub fn parse(bytes: &[u8]) -> Result<Header, TableError> {
        let bytes = bytes.get(..HEADER_LEN).ok_or(TableError::Length {
            expected: HEADER_LEN as u64,
            found: bytes.len() as u64,
        })?;
        if bytes[..8] != MAGIC {
            return Err(TableError::Magic);
        }
        if crc32fast::hash(&bytes[..60]) != u32_at(bytes, 60) {
            return Err(TableError::HeaderChecksum);
        }
        let version = u32_at(bytes, 8);
        if version != FORMAT_VERSION {
            return Err(TableError::Version { found: version });
        }
        if u32_at(bytes, 12) as usize != SECTIONS {
            return Err(TableError::Section {
                section: SECTIONS,
                what: "unexpected section count",
            });
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes[16..48]);
        Ok(Header {
            key,
            payload_len: u64_at(bytes, 48),
            payload_crc: u32_at(bytes, 56),
        })
    }

    fn write(&self, out: &mut [u8]) {
        out[..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&(SECTIONS as u32).to_le_bytes());
        out[16..48].copy_from_slice(&self.key);
        out[48..56].copy_from_slice(&self.payload_len.to_le_bytes());
        out[56..60].copy_from_slice(&self.payload_crc.to_le_bytes());
        let crc = crc32fast::hash(&out[..60]);
        out[60..64].copy_from_slice(&crc.to_le_bytes());
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

/// Where a table's bytes live: owned (built in this process) or a mapped index file.
pub enum Storage {
    Owned(Vec<u8>),
    Mapped(crate::mapped::Mapping),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Owned(v) => v,
            Storage::Mapped(m) => m,
        }
    }
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Storage::Owned(v) => write!(f, "Owned({} bytes)", v.len()),
            Storage::Mapped(m) => write!(f, "Mapped({} bytes)", m.len()),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct KindView {
    width: usize,
    count: usize,
    records: Range<usize>,
    names: Range<usize>,
    buckets: Option<Range<usize>>,
    wide: Range<usize>,
    sizes: Range<usize>,
    any_size: bool,
    /// The sizes of `wide` records other than `*` (few: files of 4 GiB and more).
    wide_sizes: Vec<u64>,
}

/// A read-only table of hash signatures over owned or mapped bytes.
#[derive(Debug)]
pub struct HashTable {
    storage: Storage,
    header: Header,
    kinds: [KindView; 3],
    names: Range<usize>,
    texts: Range<usize>,
    notes: Range<usize>,
    signature_count: u64,
}

/// Whether `HashTable::from_storage` computes the payload checksum itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadCheck {
    /// Compute it over the bytes (owned tables, tests, the fuzz target).
    Verify,
    /// The caller already checked it over the same file (the mapped loader reads the file with
    /// `read`, not through the mapping, so checking leaves no pages resident in the process).
    AlreadyVerified,
}

impl HashTable {
    /// Checks bytes and returns the table; any inconsistency is an error, never a panic.
    pub fn from_storage(storage: Storage, check: PayloadCheck) -> Result<HashTable, TableError> {
        let bytes = storage.bytes();
        let header = Header::parse(bytes)?;
        let found = (bytes.len() - HEADER_LEN) as u64;
        if header.payload_len != found {
            return Err(TableError::Length {
                expected: header.payload_len + HEADER_LEN as u64,
                found: bytes.len() as u64,
            });
        }
        let payload = &bytes[HEADER_LEN..];
        if check == PayloadCheck::Verify && crc32fast::hash(payload) != header.payload_crc {
            return Err(TableError::PayloadChecksum);
        }
        let dir_len = SECTIONS * 16;
        if payload.len() < dir_len {
            return Err(TableError::Section {
                section: 0,
                what: "directory truncated",
            });
        }
        let mut ranges = Vec::with_capacity(SECTIONS);
        for i in 0..SECTIONS {
            let (off, len) = (u64_at(payload, i * 16), u64_at(payload, i * 16 + 8));
            let end = off.checked_add(len).filter(|&e| e <= payload.len() as u64);
            if end.is_none() || off < dir_len as u64 {
                return Err(TableError::Section {
                    section: i,
                    what: "outside the payload",
                });
            }
            let start = HEADER_LEN + off as usize;
            ranges.push(start..start + len as usize);
        }
        let bad = |section, what| TableError::Section { section, what };
        let mut kinds: [KindView; 3] = Default::default();
        for (k, kind) in KINDS.iter().enumerate() {
            let width = kind.digest_len();
            let base = k * PER_KIND;
            let records = ranges[base].clone();
            if records.len() % (width + 4) != 0 {
                return Err(bad(base, "records are not whole"));
            }
            let count = records.len() / (width + 4);
            let names = ranges[base + 1].clone();
            if names.len() != count * 4 {
                return Err(bad(base + 1, "name offsets do not match the records"));
            }
            let buckets = ranges[base + 2].clone();
            let buckets = match buckets.len() {
                0 => None,
                n if n == (BUCKETS + 1) * 4 => {
                    let mut last = 0;
                    for b in 0..=BUCKETS {
                        let start = u32_at(bytes, buckets.start + b * 4) as usize;
                        if start < last || start > count {
                            return Err(bad(base + 2, "bucket starts out of order"));
                        }
                        last = start;
                    }
                    if last != count {
                        return Err(bad(base + 2, "buckets do not cover the records"));
                    }
                    Some(buckets)
                }
                _ => return Err(bad(base + 2, "bucket table of the wrong length")),
            };
            let wide = ranges[base + 3].clone();
            if wide.len() % (width + 12) != 0 {
                return Err(bad(base + 3, "wide records are not whole"));
            }
            let sizes = ranges[base + 4].clone();
            if sizes.len() % 4 != 0 {
                return Err(bad(base + 4, "sizes are not whole"));
            }
            let mut any_size = false;
            let mut wide_sizes = Vec::new();
            for r in wide.clone().step_by(width + 12) {
                match u64_at(bytes, r + width) {
                    ANY_SIZE => any_size = true,
                    s => wide_sizes.push(s),
                }
            }
            kinds[k] = KindView {
                width,
                count,
                records,
                names,
                buckets,
                wide,
                sizes,
                any_size,
                wide_sizes,
            };
        }
        if ranges[META].len() != 8 {
            return Err(bad(META, "meta of the wrong length"));
        }
        let signature_count = u64_at(bytes, ranges[META].start);
        let (names, texts, notes) = (
            ranges[NAMES_BLOB].clone(),
            ranges[TEXTS].clone(),
            ranges[NOTES].clone(),
        );
        if std::str::from_utf8(&bytes[notes.clone()]).is_err() {
            return Err(bad(NOTES, "notes are not UTF-8"));
        }
        Ok(HashTable {
            storage,
            header,
            kinds,
            names,
            texts,
            notes,
            signature_count,
        })
    }

    /// The key the index was built with (what it stands for; see `HashTableBuilder::finish`).
    pub fn key(&self) -> [u8; 32] {
        self.header.key
    }

    /// Hash signatures in the table, counted as clamscan counts them.
    pub fn signature_count(&self) -> u64 {
        self.signature_count
    }

    pub fn is_mapped(&self) -> bool {
        matches!(self.storage, Storage::Mapped(_))
    }

    /// The table's size in bytes (mapped or owned).
    pub fn byte_len(&self) -> usize {
        self.storage.bytes().len()
    }

    fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }

    /// Whether signatures of `kind` exist at all.
    pub fn has_kind(&self, kind: HashKind) -> bool {
        let v = &self.kinds[kind_index(kind)];
        v.count > 0 || !v.wide.is_empty()
    }

    /// Whether a file of `size` bytes can match a signature of `kind` (so must be hashed).
    pub fn wants(&self, kind: HashKind, size: u64) -> bool {
        let v = &self.kinds[kind_index(kind)];
        if v.any_size || v.wide_sizes.contains(&size) {
            return true;
        }
        let Ok(size) = u32::try_from(size) else {
            return false;
        };
        let bytes = &self.bytes()[v.sizes.clone()];
        let n = bytes.len() / 4;
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let s = u32_at(bytes, mid * 4);
            match s.cmp(&size) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    }

    /// Appends the names of the signatures of `kind` with this digest and size to `out`.
    pub fn lookup(&self, kind: HashKind, digest: &[u8], size: u64, out: &mut Vec<Arc<str>>) {
        let v = &self.kinds[kind_index(kind)];
        if digest.len() != v.width {
            return;
        }
        let bytes = self.bytes();
        let rec = v.width + 4;
        if let Ok(size32) = u32::try_from(size) {
            let (mut lo, mut hi) = match &v.buckets {
                Some(b) => {
                    let i = u16::from_be_bytes([digest[0], digest[1]]) as usize;
                    (
                        u32_at(bytes, b.start + i * 4) as usize,
                        u32_at(bytes, b.start + (i + 1) * 4) as usize,
                    )
                }
                None => (0, v.count),
            };
            let at = |i: usize| v.records.start + i * rec;
            // The first record whose digest is not below `digest`.
            while lo < hi {
                let mid = (lo + hi) / 2;
                if &bytes[at(mid)..at(mid) + v.width] < digest {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            let mut i = lo;
            while i < v.count && &bytes[at(i)..at(i) + v.width] == digest {
                if u32_at(bytes, at(i) + v.width) == size32 {
                    let off = u32_at(bytes, v.names.start + i * 4);
                    out.push(self.name(off));
                }
                i += 1;
            }
        }
        for r in v.wide.clone().step_by(v.width + 12) {
            if &bytes[r..r + v.width] == digest {
                let s = u64_at(bytes, r + v.width);
                if s == ANY_SIZE || s == size {
                    out.push(self.name(u32_at(bytes, r + v.width + 8)));
                }
            }
        }
    }

    fn name(&self, offset: u32) -> Arc<str> {
        let blob = &self.bytes()[self.names.clone()];
        let at = offset as usize;
        // The checksum covers the names; an offset out of range can only come from a bug, and
        // still yields a name rather than a panic in a scan.
        let Some(len) = blob.get(at..at + 2).map(|_| u16_at(blob, at) as usize) else {
            return Arc::from("Herd.Index.BadName");
        };
        match blob.get(at + 2..at + 2 + len) {
            Some(name) => Arc::from(String::from_utf8_lossy(name).as_ref()),
            None => Arc::from("Herd.Index.BadName"),
        }
    }

    /// The non-hash database files stored with the table, as (name, content), in order.
    pub fn texts(&self) -> Result<Vec<(&str, &[u8])>, TableError> {
        let bytes = &self.bytes()[self.texts.clone()];
        let bad = |what| TableError::Section {
            section: TEXTS,
            what,
        };
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let name_len = bytes.get(at..at + 4).ok_or(bad("truncated"))?;
            let name_len = u32::from_le_bytes(name_len.try_into().expect("4")) as usize;
            let name = bytes
                .get(at + 4..at + 4 + name_len)
                .ok_or(bad("truncated name"))?;
            let name = std::str::from_utf8(name).map_err(|_| bad("name not UTF-8"))?;
            at += 4 + name_len;
            let len = bytes.get(at..at + 8).ok_or(bad("truncated"))?;
            let len = u64::from_le_bytes(len.try_into().expect("8"));
            let len = usize::try_from(len).map_err(|_| bad("length too large"))?;
            let content = at
                .checked_add(8)
                .and_then(|s| Some(s..s.checked_add(len)?))
                .and_then(|r| bytes.get(r))
                .ok_or(bad("truncated content"))?;
            out.push((name, content));
            at += 8 + len;
        }
        Ok(out)
    }

    /// The notes stored at build time (the hash files' parse errors, one per line).
    pub fn notes(&self) -> impl Iterator<Item = &str> {
        std::str::from_utf8(&self.bytes()[self.notes.clone()])
            .unwrap_or_default()
            .lines()
    }
}

struct Entry<const N: usize> {
    digest: [u8; N],
    size: u64,
    name: u32,
}

/// Collects signatures, then lays out a table's bytes (`finish`).
#[derive(Default)]
pub struct HashTableBuilder {
    md5: Vec<Entry<16>>,
    sha1: Vec<Entry<20>>,
    sha256: Vec<Entry<32>>,
    names: Vec<u8>,
    texts: Vec<u8>,
    notes: String,
    count: u64,
}

impl fmt::Debug for HashTableBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashTableBuilder")
            .field("signatures", &self.count)
            .finish()
    }
}

/// Longest signature name a table stores (its length is a u16).
pub const MAX_NAME: usize = u16::MAX as usize;

impl HashTableBuilder {
    pub fn new() -> HashTableBuilder {
        HashTableBuilder::default()
    }

    /// Hash signatures added so far.
    pub fn signature_count(&self) -> u64 {
        self.count
    }

    /// Adds one signature; `size` `None` is `*`. Refuses a digest of the wrong length for
    /// `kind` and a name longer than `MAX_NAME` bytes.
    pub fn add(
        &mut self,
        kind: HashKind,
        digest: &[u8],
        size: Option<u64>,
        name: &str,
    ) -> Result<(), ParseErrorKind> {
        if name.len() > MAX_NAME {
            return Err(ParseErrorKind::NameTooLong(name.len()));
        }
        let name_at =
            u32::try_from(self.names.len()).map_err(|_| ParseErrorKind::NameTooLong(name.len()))?;
        let size = size.unwrap_or(ANY_SIZE);
        let pushed = match kind {
            HashKind::Md5 => push(&mut self.md5, digest, size, name_at),
            HashKind::Sha1 => push(&mut self.sha1, digest, size, name_at),
            HashKind::Sha256 => push(&mut self.sha256, digest, size, name_at),
        };
        if !pushed {
            return Err(ParseErrorKind::BadHash {
                hash: digest.iter().map(|b| format!("{b:02x}")).collect(),
                reason: "digest of the wrong length",
            });
        }
        self.names
            .extend_from_slice(&(name.len() as u16).to_le_bytes());
        self.names.extend_from_slice(name.as_bytes());
        self.count += 1;
        Ok(())
    }

    /// Parses a `.hdb` or `.hsb` file (by `file_name`'s extension) into the table, keeping every
    /// good line and returning one error per bad line, as `Database::load` does. `None` if the
    /// file is not a hash database (the caller loads it some other way).
    pub fn load_hash_file(&mut self, file_name: &str, content: &[u8]) -> Option<Vec<ParseError>> {
        self.load_hash_lines(file_name, 0, content)
    }

    /// `load_hash_file` over a piece of a file made of whole lines, the first of which is line
    /// `lines_before + 1`: a large file can be read and parsed a block at a time.
    pub fn load_hash_lines(
        &mut self,
        file_name: &str,
        lines_before: usize,
        content: &[u8],
    ) -> Option<Vec<ParseError>> {
        let ext = file_name
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        let file_kind = match ext.as_str() {
            "hdb" => HashKind::Md5,
            "hsb" => HashKind::Sha256,
            _ => return None,
        };
        let error = |line, kind| ParseError {
            file: file_name.to_owned(),
            line,
            kind,
        };
        let Ok(text) = std::str::from_utf8(content) else {
            return Some(vec![error(0, ParseErrorKind::NotText)]);
        };
        let mut errors = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let added = parse_hash_fields(line, file_kind)
                .and_then(|f| self.add(f.kind, f.digest(), f.size, f.name));
            if let Err(kind) = added {
                errors.push(error(lines_before + index + 1, kind));
            }
        }
        Some(errors)
    }

    /// Stores a database file that is not hashes (compiled by the caller at each load).
    pub fn add_text(&mut self, name: &str, content: &[u8]) {
        self.texts
            .extend_from_slice(&(name.len() as u32).to_le_bytes());
        self.texts.extend_from_slice(name.as_bytes());
        self.texts
            .extend_from_slice(&(content.len() as u64).to_le_bytes());
        self.texts.extend_from_slice(content);
    }

    /// Stores a line of text to give back with the table (a parse error, typically).
    pub fn add_note(&mut self, line: &str) {
        self.notes.push_str(&line.replace('\n', " "));
        self.notes.push('\n');
    }

    /// Lays out the table. `key` says what it was built from, for whoever caches it.
    pub fn finish(self, key: [u8; 32]) -> Vec<u8> {
        // Each section is appended as soon as it is made and then dropped, so the table is
        // never held twice (4,000,000 MD5 signatures: about 200 MB).
        let mut layout = Layout {
            out: vec![0u8; HEADER_LEN + SECTIONS * 16],
            sections: 0,
        };
        let HashTableBuilder {
            md5,
            sha1,
            sha256,
            names,
            texts,
            notes,
            count,
        } = self;
        kind_sections(md5, &mut layout);
        kind_sections(sha1, &mut layout);
        kind_sections(sha256, &mut layout);
        layout.put(names);
        layout.put(texts);
        layout.put(notes.into_bytes());
        layout.put(count.to_le_bytes().to_vec());
        debug_assert_eq!(layout.sections, SECTIONS);
        let mut out = layout.out;
        let header = Header {
            key,
            payload_len: (out.len() - HEADER_LEN) as u64,
            payload_crc: crc32fast::hash(&out[HEADER_LEN..]),
        };
        header.write(&mut out[..HEADER_LEN]);
        out
    }

    /// Builds an owned table directly (no file).
    pub fn build(self) -> HashTable {
        HashTable::from_storage(Storage::Owned(self.finish([0; 32])), PayloadCheck::Verify)
            .expect("a table laid out by finish reads back")
    }
}

/// A table's bytes being laid out: header and directory first (filled in as sections come),
/// then each section 8-byte aligned.
struct Layout {
    out: Vec<u8>,
    sections: usize,
}

impl Layout {
    fn put(&mut self, section: Vec<u8>) {
        let offset = (self.out.len() - HEADER_LEN).div_ceil(8) * 8;
        let entry = HEADER_LEN + self.sections * 16;
        self.out[entry..entry + 8].copy_from_slice(&(offset as u64).to_le_bytes());
        self.out[entry + 8..entry + 16].copy_from_slice(&(section.len() as u64).to_le_bytes());
        self.out.resize(HEADER_LEN + offset, 0);
        self.out.reserve_exact(section.len());
        self.out.extend_from_slice(&section);
        self.sections += 1;
    }
}

fn push<const N: usize>(v: &mut Vec<Entry<N>>, digest: &[u8], size: u64, name: u32) -> bool {
    let Ok(digest) = <[u8; N]>::try_from(digest) else {
        return false;
    };
    v.push(Entry { digest, size, name });
    true
}

/// The five sections of one digest kind.
fn kind_sections<const N: usize>(mut entries: Vec<Entry<N>>, out: &mut Layout) {
    entries.sort_unstable_by_key(|e| (e.digest, e.size, e.name));
    let (exact, wide): (Vec<_>, Vec<_>) = entries
        .into_iter()
        .partition(|e| e.size < u64::from(u32::MAX));
    let mut records = Vec::with_capacity(exact.len() * (N + 4));
    let mut names = Vec::with_capacity(exact.len() * 4);
    let mut sizes: Vec<u32> = Vec::with_capacity(exact.len());
    for e in &exact {
        records.extend_from_slice(&e.digest);
        records.extend_from_slice(&(e.size as u32).to_le_bytes());
        names.extend_from_slice(&e.name.to_le_bytes());
        sizes.push(e.size as u32);
    }
    let mut buckets = Vec::new();
    if exact.len() >= BUCKETS_FROM {
        buckets.reserve((BUCKETS + 1) * 4);
        let mut i = 0;
        for b in 0..BUCKETS {
            while i < exact.len()
                && (u16::from_be_bytes([exact[i].digest[0], exact[i].digest[1]]) as usize) < b
            {
                i += 1;
            }
            buckets.extend_from_slice(&(i as u32).to_le_bytes());
        }
        buckets.extend_from_slice(&(exact.len() as u32).to_le_bytes());
    }
    let mut wide_bytes = Vec::with_capacity(wide.len() * (N + 12));
    for e in &wide {
        wide_bytes.extend_from_slice(&e.digest);
        wide_bytes.extend_from_slice(&e.size.to_le_bytes());
        wide_bytes.extend_from_slice(&e.name.to_le_bytes());
    }
    sizes.sort_unstable();
    sizes.dedup();
    let sizes_bytes = sizes.iter().flat_map(|s| s.to_le_bytes()).collect();
    drop((exact, wide));
    for section in [records, names, buckets, wide_bytes, sizes_bytes] {
        out.put(section);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(table: &HashTable, kind: HashKind, digest: &[u8], size: u64) -> Vec<String> {
        let mut out = Vec::new();
        table.lookup(kind, digest, size, &mut out);
        out.iter().map(|n| n.to_string()).collect()
    }

    fn md5_of(i: u32) -> [u8; 16] {
        use md5::Digest as _;
        md5::Md5::digest(i.to_le_bytes()).into()
    }

    #[test]
    fn round_trip_small_and_large() {
        for count in [3u32, 70_000] {
            let mut b = HashTableBuilder::new();
            for i in 0..count {
                b.add(
                    HashKind::Md5,
                    &md5_of(i),
                    Some(u64::from(i % 1000) + 1),
                    &format!("Sig.{i}"),
                )
                .unwrap();
            }
            b.add(HashKind::Md5, &md5_of(0), None, "Any.Size").unwrap();
            b.add(HashKind::Sha1, &[7; 20], Some(5_000_000_000), "Huge.Sha1")
                .unwrap();
            b.add(HashKind::Sha256, &[9; 32], Some(68), "Sha256.A")
                .unwrap();
            b.add(HashKind::Sha256, &[9; 32], Some(68), "Sha256.B")
                .unwrap();
            b.add_text("x.ndb", b"A:0:*:4142\n");
            b.add_note("x.hdb:3: bad");
            let bytes = b.finish([5; 32]);
            let t = HashTable::from_storage(Storage::Owned(bytes), PayloadCheck::Verify).unwrap();
            assert_eq!(t.key(), [5; 32]);
            assert_eq!(t.signature_count(), u64::from(count) + 4);
            for i in [0, 1, count / 2, count - 1] {
                let size = u64::from(i % 1000) + 1;
                assert!(t.wants(HashKind::Md5, size));
                let mut want = vec![format!("Sig.{i}")];
                if i == 0 {
                    want.push("Any.Size".to_owned());
                }
                assert_eq!(names(&t, HashKind::Md5, &md5_of(i), size), want);
                // Near misses: another size, another digest.
                assert_eq!(
                    names(&t, HashKind::Md5, &md5_of(i), size + 1000),
                    if i == 0 {
                        vec!["Any.Size".to_owned()]
                    } else {
                        vec![]
                    }
                );
            }
            assert!(names(&t, HashKind::Md5, &md5_of(count + 1), 1).is_empty());
            assert!(t.wants(HashKind::Md5, 123_456_789), "`*` wants every size");
            assert!(t.wants(HashKind::Sha1, 5_000_000_000));
            assert!(!t.wants(HashKind::Sha1, 68));
            assert_eq!(
                names(&t, HashKind::Sha1, &[7; 20], 5_000_000_000),
                ["Huge.Sha1"]
            );
            assert_eq!(
                names(&t, HashKind::Sha256, &[9; 32], 68),
                ["Sha256.A", "Sha256.B"]
            );
            assert!(!t.wants(HashKind::Sha256, 69));
            assert_eq!(t.texts().unwrap(), [("x.ndb", &b"A:0:*:4142\n"[..])]);
            assert_eq!(t.notes().collect::<Vec<_>>(), ["x.hdb:3: bad"]);
        }
    }

    #[test]
    fn hash_files_load_with_errors_per_line() {
        let mut b = HashTableBuilder::new();
        let errors = b
            .load_hash_file(
                "t.hsb",
                b"3395856ce81f2b7382dee72602f798b642f14140:68:Eicar.Sha1\nab:1:Short\n\
                  275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f:*:Eicar.Sha256\n",
            )
            .unwrap();
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            ["t.hsb:2: bad hash \"ab\": a SHA-1 hash has 40 hex digits, a SHA-256 hash 64"]
        );
        assert!(b.load_hash_file("t.ndb", b"").is_none());
        let t = b.build();
        assert!(t.wants(HashKind::Sha1, 68));
        let sha1 = [
            0x33, 0x95, 0x85, 0x6c, 0xe8, 0x1f, 0x2b, 0x73, 0x82, 0xde, 0xe7, 0x26, 0x02, 0xf7,
            0x98, 0xb6, 0x42, 0xf1, 0x41, 0x40,
        ];
        assert_eq!(names(&t, HashKind::Sha1, &sha1, 68), ["Eicar.Sha1"]);
    }

    #[test]
    fn the_engine_matches_sha1_and_added_tables() {
        use crate::{Database, Engine, MatchOptions, Scratch};
        let mut db = Database::new();
        let errors = db.load(
            "e.hsb",
            b"3395856ce81f2b7382dee72602f798b642f14140:68:Eicar.Sha1\n",
        );
        assert!(errors.is_empty());
        let mut engine = Engine::new(&db);
        let mut scratch = Scratch::default();
        let all = MatchOptions {
            all_matches: true,
            ..MatchOptions::default()
        };
        let found = |e: &Engine, data: &[u8], s: &mut Scratch| -> Vec<String> {
            let names = e.match_bytes(data, s, all).unwrap();
            names.iter().map(|n| n.to_string()).collect()
        };
        assert_eq!(found(&engine, crate::EICAR, &mut scratch), ["Eicar.Sha1"]);
        let mut near = *crate::EICAR;
        near[67] ^= 1;
        assert!(found(&engine, &near, &mut scratch).is_empty());
        let mut table = HashTableBuilder::new();
        table
            .add(
                HashKind::Md5,
                &[
                    0x44, 0xd8, 0x86, 0x12, 0xfe, 0xa8, 0xa8, 0xf3, 0x6d, 0xe8, 0x2e, 0x12, 0x78,
                    0xab, 0xb0, 0x2f,
                ],
                Some(68),
                "Eicar.Md5.Added",
            )
            .unwrap();
        engine.add_hash_table(Arc::new(table.build()));
        assert_eq!(engine.signature_count(), 2);
        assert_eq!(
            found(&engine, crate::EICAR, &mut scratch),
            ["Eicar.Md5.Added", "Eicar.Sha1"]
        );
        let mut stream = &crate::EICAR[..];
        let streamed = engine.match_hashes_stream(68, &mut stream).unwrap();
        assert_eq!(streamed.len(), 2);
    }

    #[test]
    fn corrupt_and_truncated_tables_are_refused() {
        let mut b = HashTableBuilder::new();
        for i in 0..100 {
            b.add(HashKind::Md5, &md5_of(i), Some(10), "N").unwrap();
        }
        let good = b.finish([1; 32]);
        let open = |bytes: Vec<u8>| {
            HashTable::from_storage(Storage::Owned(bytes), PayloadCheck::Verify).map(|_| ())
        };
        assert_eq!(open(good.clone()), Ok(()));
        assert_eq!(
            open(good[..good.len() - 1].to_vec()),
            Err(TableError::Length {
                expected: good.len() as u64,
                found: good.len() as u64 - 1,
            })
        );
        assert!(matches!(
            open(good[..30].to_vec()),
            Err(TableError::Length { .. })
        ));
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(open(flipped), Err(TableError::PayloadChecksum));
        let mut flipped = good.clone();
        flipped[20] ^= 1;
        assert_eq!(open(flipped), Err(TableError::HeaderChecksum));
        let mut other = good.clone();
        other[0] = b'X';
        assert_eq!(open(other), Err(TableError::Magic));
        let mut version = good.clone();
        version[8] = 99;
        let crc = crc32fast::hash(&version[..60]);
        version[60..64].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(open(version), Err(TableError::Version { found: 99 }));
    }
}
