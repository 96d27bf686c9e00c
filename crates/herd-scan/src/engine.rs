//! The compiled engine: hash signatures by lookup, then body and logical signatures by one
//! `Matcher` per signature target, run over the views of each file ClamAV matches — its raw
//! bytes (target 0 and the file type's target), normalised text (targets 0 and 7) for text
//! files, normalised HTML (targets 0 and 3) for HTML files (`filetype`, `normalise`).
//!
//! Allow-lists: a buffer whose hash is in `.fp`/`.sfp` is not matched at all (the caller,
//! `Scanner`, skips it and everything inside it, as ClamAV trusts the layer and the layers it
//! contains); `.ign2` names are left out when the engine is compiled.

use std::sync::Arc;

use md5::{Digest as _, Md5};
use rustc_hash::{FxHashMap, FxHashSet};
use sha1::Sha1;
use sha2::Sha256;

use crate::archive::MemberMeta;
use crate::db::{ContainerSig, ContainerType, Database, HashKind};
use crate::error::ScanError;
use crate::filetype::{self, FileType, Target};
use crate::hashtable::{HashTable, HashTableBuilder};
use crate::matcher::{MatchScratch, Matcher, View};
use crate::normalise;
use crate::pe;
use crate::verify::Budget;

/// How the engine is built; the defaults are what the agent uses.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Route long anchors to the sampled gram filter (true) or everything through
    /// Aho-Corasick (false; kept to measure and cross-check the filter).
    pub gram_filter: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { gram_filter: true }
    }
}

/// The hash signatures of one digest kind (`N` bytes): the tables that hold any, searched in
/// turn — the one compiled from the `Database`, and any added with `Engine::add_hash_table`
/// (a mapped index). Stored compactly (`hashtable`), so millions of signatures fit a terminal.
#[derive(Debug, Default)]
struct HashIndex<const N: usize> {
    tables: Vec<Arc<HashTable>>,
}

impl<const N: usize> HashIndex<N> {
    const KIND: HashKind = match N {
        16 => HashKind::Md5,
        20 => HashKind::Sha1,
        _ => HashKind::Sha256,
    };
    fn attach(&mut self, table: &Arc<HashTable>) {
        if table.has_kind(Self::KIND) {
            self.tables.push(table.clone());
        }
    }
    fn wanted(&self, size: u64) -> bool {
        self.tables.iter().any(|t| t.wants(Self::KIND, size))
    }
    fn lookup(&self, digest: [u8; N], size: u64, out: &mut Vec<Arc<str>>) {
        for t in &self.tables {
            t.lookup(Self::KIND, &digest, size, out);
        }
    }
}

/// A compiled signature set; cheap to share between threads (`&Engine` is all a scan needs).
#[derive(Debug)]
pub struct Engine {
    md5: HashIndex<16>,
    sha1: HashIndex<20>,
    sha256: HashIndex<32>,
    /// One matcher per target that has signatures, in target order. Target 7's holds only
    /// signatures that can match normalised text (`normalise::can_match_text`): it never
    /// meets anything else.
    roots: Vec<(Target, Matcher)>,
    /// Target 0's signatures that can match normalised text, for that view; `None` when
    /// there are none (and no target 7 either, then text is not normalised at all).
    text_any: Option<Matcher>,
    /// `.fp` and `.sfp`: hashes of files known clean.
    allowed_md5: HashIndex<16>,
    allowed_sha1: HashIndex<20>,
    allowed_sha256: HashIndex<32>,
    /// `.cdb`: container metadata signatures.
    containers: Vec<ContainerSig>,
    signature_count: usize,
    #[cfg(feature = "yara")]
    yara: Vec<yara_x::Rules>,
}

/// Digests of a buffer that the caller already computed, so the engine does not compute them
/// again: the agent hashes many files at once (`md5x::md5_many`), which is several times
/// faster than one file after another.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KnownDigests {
    pub md5: Option<[u8; 16]>,
}

/// Per-thread working memory for scans, reused across buffers to avoid allocation.
#[derive(Debug, Default)]
pub struct Scratch {
    matcher: MatchScratch,
    /// Normalised text, reused across buffers.
    text: Vec<u8>,
}

/// Options for one buffer scan.
#[derive(Debug, Clone, Copy)]
pub struct MatchOptions {
    /// Report every matching signature (clamscan `--allmatch`) or stop at the first.
    pub all_matches: bool,
    /// Verification steps allowed per buffer before giving up with an error.
    pub verify_budget: u64,
}

impl Default for MatchOptions {
    fn default() -> Self {
        MatchOptions {
            all_matches: false,
            verify_budget: 1 << 28,
        }
    }
}

impl Engine {
    pub fn new(db: &Database) -> Engine {
        Engine::with_options(db, &EngineOptions::default())
    }

    pub fn with_options(db: &Database, options: &EngineOptions) -> Engine {
        let ignored: FxHashSet<&str> = db.ignored.iter().map(|n| &**n).collect();
        let kept = |name: &str| !ignored.contains(name);
        let (mut md5, mut sha1, mut sha256) = Default::default();
        if !db.hashes.is_empty() {
            let mut table = HashTableBuilder::new();
            for h in db.hashes.iter().filter(|h| kept(&h.name)) {
                // A `HashSig` was checked when parsed; a name too long for the table is the
                // only refusal left, and the parser's limit is the same.
                let _ = table.add(h.kind, &h.digest, h.size, &h.name);
            }
            let table = Arc::new(table.build());
            HashIndex::<16>::attach(&mut md5, &table);
            HashIndex::<20>::attach(&mut sha1, &table);
            HashIndex::<32>::attach(&mut sha256, &table);
        }
        let (mut allowed_md5, mut allowed_sha1, mut allowed_sha256) = Default::default();
        if !db.allowed.is_empty() {
            let mut table = HashTableBuilder::new();
            for h in &db.allowed {
                let _ = table.add(h.kind, &h.digest, h.size, &h.name);
            }
            let table = Arc::new(table.build());
            HashIndex::<16>::attach(&mut allowed_md5, &table);
            HashIndex::<20>::attach(&mut allowed_sha1, &table);
            HashIndex::<32>::attach(&mut allowed_sha256, &table);
        }
        let mut by_target: FxHashMap<Target, (Vec<_>, Vec<_>)> = FxHashMap::default();
        for b in db.bodies.iter().filter(|b| kept(&b.name)) {
            if b.target == Target::Ascii && !normalise::can_match_text(&b.pattern) {
                continue;
            }
            by_target.entry(b.target).or_default().0.push(b);
        }
        let text_any = {
            let bodies: Vec<_> = db
                .bodies
                .iter()
                .filter(|b| b.target == Target::Any && kept(&b.name))
                .filter(|b| normalise::can_match_text(&b.pattern))
                .collect();
            // Logical signatures stay whole: one may hold with only some subsignatures.
            let logicals: Vec<_> = db
                .logicals
                .iter()
                .filter(|l| l.target == Target::Any && kept(&l.name))
                .collect();
            (!bodies.is_empty() || !logicals.is_empty())
                .then(|| Matcher::new(&bodies, &logicals, options))
        };
        for l in db.logicals.iter().filter(|l| kept(&l.name)) {
            by_target.entry(l.target).or_default().1.push(l);
        }
        let mut roots: Vec<(Target, Matcher)> = by_target
            .into_iter()
            .map(|(t, (bodies, logicals))| (t, Matcher::new(&bodies, &logicals, options)))
            .collect();
        roots.sort_by_key(|(t, _)| *t);
        let signature_count = db.len()
            - db.hashes.iter().filter(|h| !kept(&h.name)).count()
            - db.bodies.iter().filter(|b| !kept(&b.name)).count()
            - db.logicals.iter().filter(|l| !kept(&l.name)).count()
            - db.containers.iter().filter(|c| !kept(&c.name)).count();
        Engine {
            md5,
            sha1,
            sha256,
            roots,
            text_any,
            allowed_md5,
            allowed_sha1,
            allowed_sha256,
            containers: db
                .containers
                .iter()
                .filter(|c| kept(&c.name))
                .cloned()
                .collect(),
            signature_count,
            #[cfg(feature = "yara")]
            yara: db
                .yara
                .iter()
                .filter_map(|y| crate::yara::compile(&y.source).ok())
                .collect(),
        }
    }

    /// Signatures compiled in, counted like clamscan's "Known viruses".
    pub fn signature_count(&self) -> usize {
        self.signature_count
    }

    /// Adds a table of hash signatures (typically a mapped index, `mapped::open_index`) to
    /// those compiled from the `Database`.
    pub fn add_hash_table(&mut self, table: Arc<HashTable>) {
        self.md5.attach(&table);
        self.sha1.attach(&table);
        self.sha256.attach(&table);
        self.signature_count += table.signature_count() as usize;
    }

    /// Whether a file of `size` bytes needs hashing at all (cheap; lets callers skip reading
    /// for hash-only databases).
    pub fn wants_hash(&self, size: u64) -> bool {
        self.md5.wanted(size) || self.sha1.wanted(size) || self.sha256.wanted(size)
    }

    /// Whether a buffer of `size` bytes needs its MD5 (so a caller can compute it in bulk).
    pub fn wants_md5(&self, size: u64) -> bool {
        self.md5.wanted(size)
    }

    /// The hash signatures matching a stream of `size` bytes, digests computed in one pass.
    /// For files too large to hold in memory: body signatures are not checked on them.
    pub fn match_hashes_stream(
        &self,
        size: u64,
        reader: &mut dyn std::io::Read,
    ) -> std::io::Result<Vec<Arc<str>>> {
        let mut found = Vec::new();
        let (want_md5, want_sha) = (self.md5.wanted(size), self.sha256.wanted(size));
        let want_sha1 = self.sha1.wanted(size);
        if !want_md5 && !want_sha && !want_sha1 {
            return Ok(found);
        }
        let (mut md5, mut sha) = (Md5::new(), Sha256::new());
        let mut sha1 = Sha1::new();
        let mut block = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = match reader.read(&mut block) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            total += n as u64;
            if want_md5 {
                md5.update(&block[..n]);
            }
            if want_sha {
                sha.update(&block[..n]);
            }
            if want_sha1 {
                sha1.update(&block[..n]);
            }
        }
        // A file that changed size while being read is judged by what was read.
        if want_md5 && self.md5.wanted(total) {
            self.md5.lookup(md5.finalize().into(), total, &mut found);
        }
        if want_sha1 && self.sha1.wanted(total) {
            self.sha1.lookup(sha1.finalize().into(), total, &mut found);
        }
        if want_sha && self.sha256.wanted(total) {
            self.sha256.lookup(sha.finalize().into(), total, &mut found);
        }
        Ok(found)
    }

    /// Whether there are body or logical signatures (otherwise only hashes are checked).
    pub fn has_body_signatures(&self) -> bool {
        !self.roots.is_empty()
    }

    /// Whether there are container metadata signatures (`.cdb`).
    pub fn has_container_signatures(&self) -> bool {
        !self.containers.is_empty()
    }

    /// The container metadata signatures matching `member` as a container of type `kind` and
    /// `container_size` bytes lists it (ClamAV's `cli_matchmeta`).
    pub fn match_member_meta(
        &self,
        kind: ContainerType,
        container_size: u64,
        member: &MemberMeta,
        found: &mut Vec<Arc<str>>,
    ) {
        let within = |r: Option<(u64, u64)>, v: u64| r.is_none_or(|(a, b)| (a..=b).contains(&v));
        for c in &self.containers {
            if c.container.is_some_and(|t| t != kind)
                || c.encrypted.is_some_and(|e| e != member.encrypted)
                || !within(c.container_size, container_size)
                || !within(c.compressed, member.compressed)
                || !within(c.size, member.size)
                || !within(c.position, u64::from(member.index))
                || c.member_name
                    .as_ref()
                    .is_some_and(|re| !re.is_match(member.name.as_bytes()))
            {
                continue;
            }
            found.push(c.name.clone());
        }
    }

    /// Whether `data` is on an allow-list (`.fp`, `.sfp`): then neither it nor anything
    /// inside it is reported. Hashes only when the size appears in the allow-list.
    pub fn is_allowed(&self, data: &[u8]) -> bool {
        let size = data.len() as u64;
        let mut names = Vec::new();
        if self.allowed_md5.wanted(size) {
            self.allowed_md5
                .lookup(Md5::digest(data).into(), size, &mut names);
        }
        if names.is_empty() && self.allowed_sha1.wanted(size) {
            self.allowed_sha1
                .lookup(Sha1::digest(data).into(), size, &mut names);
        }
        if names.is_empty() && self.allowed_sha256.wanted(size) {
            self.allowed_sha256
                .lookup(Sha256::digest(data).into(), size, &mut names);
        }
        !names.is_empty()
    }

    /// The names of the signatures matching `data`, hash signatures first (as ClamAV checks
    /// them first); with `all_matches` false, at most the first one found. `data` is taken as
    /// a file of its own, not extracted from an archive (see `match_layer_known`).
    pub fn match_bytes(
        &self,
        data: &[u8],
        scratch: &mut Scratch,
        options: MatchOptions,
    ) -> Result<Vec<Arc<str>>, ScanError> {
        self.match_layer_known(data, None, KnownDigests::default(), scratch, options)
    }

    /// As `match_bytes`, for `data` extracted from an archive of type `container` (what
    /// logical signatures' `Container:` compares; `None` for a file of its own), with the
    /// digests of `data` the caller already has (trusted, not checked).
    pub fn match_layer_known(
        &self,
        data: &[u8],
        container: Option<ContainerType>,
        known: KnownDigests,
        scratch: &mut Scratch,
        options: MatchOptions,
    ) -> Result<Vec<Arc<str>>, ScanError> {
        let mut found = Vec::new();
        let size = data.len() as u64;
        let (want_md5, want_sha) = (self.md5.wanted(size), self.sha256.wanted(size));
        let want_sha1 = self.sha1.wanted(size);
        if let (true, Some(digest)) = (want_md5, known.md5) {
            self.md5.lookup(digest, size, &mut found);
        }
        let want_md5 = want_md5 && known.md5.is_none();
        if want_md5 || want_sha || want_sha1 {
            // One pass for every digest, a cache-sized block at a time, so a file wanted by
            // several kinds is read from memory once.
            let (mut md5, mut sha) = (Md5::new(), Sha256::new());
            let mut sha1 = Sha1::new();
            for block in data.chunks(64 * 1024) {
                if want_md5 {
                    md5.update(block);
                }
                if want_sha {
                    sha.update(block);
                }
                if want_sha1 {
                    sha1.update(block);
                }
            }
            if want_md5 {
                self.md5.lookup(md5.finalize().into(), size, &mut found);
            }
            if want_sha1 {
                self.sha1.lookup(sha1.finalize().into(), size, &mut found);
            }
            if want_sha {
                self.sha256.lookup(sha.finalize().into(), size, &mut found);
            }
        }
        if !found.is_empty() && !options.all_matches {
            found.truncate(1);
            return Ok(found);
        }
        if !self.roots.is_empty() {
            self.match_views(data, container, scratch, options, &mut found)?;
        }
        #[cfg(feature = "yara")]
        for rules in &self.yara {
            if !found.is_empty() && !options.all_matches {
                break;
            }
            crate::yara::scan(rules, data, &mut found)?;
        }
        if !options.all_matches {
            found.truncate(1);
        }
        Ok(found)
    }

    fn root(&self, target: Target) -> Option<&Matcher> {
        self.roots
            .binary_search_by_key(&target, |(t, _)| *t)
            .ok()
            .map(|i| &self.roots[i].1)
    }

    /// Runs target 0's matcher and `target`'s over `view`; false once the scan should stop.
    fn run(
        &self,
        target: Option<Target>,
        view: &View<'_>,
        scratch: &mut Scratch,
        options: MatchOptions,
        budget: &mut Budget,
        found: &mut Vec<Arc<str>>,
    ) -> Result<bool, ScanError> {
        let matchers = [self.root(Target::Any), target.and_then(|t| self.root(t))];
        self.run_matchers(matchers, view, scratch, options, budget, found)
    }

    fn run_matchers(
        &self,
        matchers: [Option<&Matcher>; 2],
        view: &View<'_>,
        scratch: &mut Scratch,
        options: MatchOptions,
        budget: &mut Budget,
        found: &mut Vec<Arc<str>>,
    ) -> Result<bool, ScanError> {
        for m in matchers.into_iter().flatten() {
            m.scan(view, &mut scratch.matcher, options, budget, found)?;
            if !options.all_matches && !found.is_empty() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The views ClamAV matches for a file of `data`'s type (module docs).
    fn match_views(
        &self,
        data: &[u8],
        container: Option<ContainerType>,
        scratch: &mut Scratch,
        options: MatchOptions,
        found: &mut Vec<Arc<str>>,
    ) -> Result<(), ScanError> {
        let mut budget = Budget::new(options.verify_budget);
        let file_type = filetype::detect(data);
        let exe = if file_type == FileType::MsExe && self.root(Target::Pe).is_some() {
            pe::parse(data)
        } else {
            None
        };
        let raw = View {
            data,
            file_size: data.len() as u64,
            exe: exe.as_ref(),
            container,
        };
        if !self.run(
            file_type.raw_target(),
            &raw,
            scratch,
            options,
            &mut budget,
            found,
        )? {
            return Ok(());
        }
        // The normalised views are layers of their own to ClamAV, not inside the archive.
        let text_matchers = [self.text_any.as_ref(), self.root(Target::Ascii)];
        if file_type.is_text()
            && data.len() <= normalise::MAX_SCRIPT_NORMALIZE
            && text_matchers.iter().any(Option::is_some)
        {
            let mut text = std::mem::take(&mut scratch.text);
            normalise::text_into(data, &mut text);
            let view = View {
                data: &text,
                file_size: data.len() as u64,
                exe: None,
                container: None,
            };
            // Only the signatures that can match normalised text: target 0's others were
            // matched against the raw bytes already and cannot match here.
            let ran = self.run_matchers(text_matchers, &view, scratch, options, &mut budget, found);
            scratch.text = text;
            ran?;
        } else if file_type.is_html() && data.len() <= normalise::MAX_HTML_NORMALIZE {
            let html = normalise::html(data);
            let mut views = vec![&html.nocomment];
            if data.len() <= normalise::MAX_HTML_NOTAGS {
                views.push(&html.notags);
            }
            for bytes in views {
                let view = View {
                    data: bytes,
                    file_size: bytes.len() as u64,
                    exe: None,
                    container: None,
                };
                if !self.run(
                    Some(Target::Html),
                    &view,
                    scratch,
                    options,
                    &mut budget,
                    found,
                )? {
                    break;
                }
            }
        }
        // A signature found in several views is one detection.
        let mut seen = FxHashSet::default();
        found.retain(|n| seen.insert(n.clone()));
        Ok(())
    }
}
