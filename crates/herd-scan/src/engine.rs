//! The compiled matcher: hash signatures by lookup, body and logical signatures by a
//! multi-pattern prefilter over each signature's longest fixed anchor, then exact verification.
//!
//! Two prefilters share the anchors (see ARCHITECTURE notes in `lib.rs`):
//! - anchors of at least 16 bytes go to a sampled 8-byte-gram filter that reads one gram
//!   every 9 bytes, so its cost barely depends on the signature count, and anchors of 8 to 15
//!   bytes to the same kind of filter with 4-byte grams every 5 bytes (`gram`);
//! - shorter anchors go to an Aho-Corasick automaton (the `aho-corasick` crate), which is
//!   exact but slows down with thousands of patterns (57 MB/s with 10,000 was measured here).
//!
//! Signatures with a fixed start offset (`n`, `EOF-n`, `n,maxshift`) skip the prefilter and
//! are verified directly at their offsets.

use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use md5::{Digest as _, Md5};
use rustc_hash::{FxHashMap, FxHashSet};
use sha2::Sha256;

use crate::db::{Database, Expr, HashKind, Offset};
use crate::error::ScanError;
use crate::gram;
use crate::hex::{Elem, HexPattern};
use crate::verify::{self, Budget};

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

/// Which signature a body pattern belongs to.
#[derive(Debug, Clone, Copy)]
enum Owner {
    Body(u32),
    Logical { sig: u32 },
}

#[derive(Debug)]
struct Pattern {
    owner: Owner,
    offset: Offset,
    elems: Vec<Elem>,
    /// The elements before the anchor, reversed (for `Offset::Any` patterns).
    before: Vec<Elem>,
    /// Index in `elems` just after the anchor.
    after: usize,
}

#[derive(Debug)]
struct Anchor {
    bytes: Vec<u8>,
    patterns: Vec<u32>,
}

#[derive(Debug)]
struct LogicalInfo {
    name: Arc<str>,
    file_size: Option<(u64, u64)>,
    expr: Expr,
    first_pattern: u32,
}

/// The signatures sharing one digest: their sizes (`None` for `*`) and names.
type SameDigest = Vec<(Option<u64>, Arc<str>)>;

#[derive(Debug, Default)]
struct HashIndex<const N: usize> {
    sigs: FxHashMap<[u8; N], SameDigest>,
    sizes: FxHashSet<u64>,
    any_size: bool,
}

impl<const N: usize> HashIndex<N> {
    fn insert(&mut self, digest: &[u8], size: Option<u64>, name: Arc<str>) {
        let Ok(key) = <[u8; N]>::try_from(digest) else {
            return;
        };
        match size {
            Some(s) => {
                self.sizes.insert(s);
            }
            None => self.any_size = true,
        }
        self.sigs.entry(key).or_default().push((size, name));
    }
    fn wanted(&self, size: u64) -> bool {
        self.any_size || self.sizes.contains(&size)
    }
    fn lookup(&self, digest: [u8; N], size: u64, out: &mut Vec<Arc<str>>) {
        if let Some(sigs) = self.sigs.get(&digest) {
            out.extend(
                sigs.iter()
                    .filter(|(s, _)| s.is_none_or(|s| s == size))
                    .map(|(_, n)| n.clone()),
            );
        }
    }
}

/// A compiled signature set; cheap to share between threads (`&Engine` is all a scan needs).
#[derive(Debug)]
pub struct Engine {
    md5: HashIndex<16>,
    sha256: HashIndex<32>,
    body_names: Vec<Arc<str>>,
    logicals: Vec<LogicalInfo>,
    patterns: Vec<Pattern>,
    anchors: Vec<Anchor>,
    /// Indices into `anchors` searched by `ac` (pattern i of the automaton is `ac_anchors[i]`).
    ac_anchors: Vec<u32>,
    ac: Option<AhoCorasick>,
    long_grams: Option<gram::Long>,
    mid_grams: Option<gram::Mid>,
    /// Patterns with a constrained start offset, verified directly.
    fixed: Vec<u32>,
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
    /// `stamp[p] == generation` when pattern `p` matched in the current buffer.
    stamp: Vec<u32>,
    generation: u32,
    matched: Vec<u32>,
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
        let mut md5 = HashIndex::default();
        let mut sha256 = HashIndex::default();
        for h in &db.hashes {
            match h.kind {
                HashKind::Md5 => md5.insert(&h.digest, h.size, h.name.clone()),
                HashKind::Sha256 => sha256.insert(&h.digest, h.size, h.name.clone()),
            }
        }
        let mut patterns = Vec::new();
        let mut add = |owner, offset, p: &HexPattern| {
            patterns.push(Pattern {
                owner,
                offset,
                elems: p.elems.clone(),
                before: verify::reverse(&p.elems[..p.anchor.0]),
                after: p.anchor.1,
            });
            p.anchor_bytes()
        };
        let mut anchor_bytes = Vec::new();
        for (i, sig) in db.bodies.iter().enumerate() {
            anchor_bytes.push(add(Owner::Body(i as u32), sig.offset, &sig.pattern));
        }
        let mut logicals = Vec::new();
        for (i, sig) in db.logicals.iter().enumerate() {
            let first_pattern = anchor_bytes.len() as u32;
            for (offset, p) in &sig.subsigs {
                let owner = Owner::Logical { sig: i as u32 };
                anchor_bytes.push(add(owner, *offset, p));
            }
            logicals.push(LogicalInfo {
                name: sig.name.clone(),
                file_size: sig.file_size,
                expr: sig.expr.clone(),
                first_pattern,
            });
        }

        let mut fixed = Vec::new();
        let mut anchors: Vec<Anchor> = Vec::new();
        let mut by_bytes: FxHashMap<Vec<u8>, u32> = FxHashMap::default();
        for (i, bytes) in anchor_bytes.into_iter().enumerate() {
            if patterns[i].offset != Offset::Any {
                fixed.push(i as u32);
                continue;
            }
            let id = *by_bytes.entry(bytes.clone()).or_insert_with(|| {
                anchors.push(Anchor {
                    bytes,
                    patterns: Vec::new(),
                });
                anchors.len() as u32 - 1
            });
            anchors[id as usize].patterns.push(i as u32);
        }
        let tier = |a: &u32| {
            let len = anchors[*a as usize].bytes.len();
            match options.gram_filter {
                true if len >= gram::Long::WINDOW => 2,
                true if len >= gram::Mid::WINDOW => 1,
                _ => 0,
            }
        };
        let all: Vec<u32> = (0..anchors.len() as u32).collect();
        let pick = |t| {
            all.iter()
                .copied()
                .filter(|a| tier(a) == t)
                .collect::<Vec<u32>>()
        };
        let (short, mid, long) = (pick(0), pick(1), pick(2));
        let bytes_of = |ids: &[u32]| {
            ids.iter()
                .map(|&a| (a, &anchors[a as usize].bytes[..]))
                .collect::<Vec<_>>()
        };
        let long_grams = (!long.is_empty()).then(|| gram::Long::new(bytes_of(&long).into_iter()));
        let mid_grams = (!mid.is_empty()).then(|| gram::Mid::new(bytes_of(&mid).into_iter()));
        let ac = (!short.is_empty()).then(|| {
            AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(short.iter().map(|&a| &anchors[a as usize].bytes))
                .expect("anchors are non-empty byte strings, which always build")
        });
        Engine {
            md5,
            sha256,
            body_names: db.bodies.iter().map(|b| b.name.clone()).collect(),
            logicals,
            patterns,
            anchors,
            ac_anchors: short,
            ac,
            long_grams,
            mid_grams,
            fixed,
            signature_count: db.len(),
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

    /// Whether a file of `size` bytes needs hashing at all (cheap; lets callers skip reading
    /// for hash-only databases).
    pub fn wants_hash(&self, size: u64) -> bool {
        self.md5.wanted(size) || self.sha256.wanted(size)
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
        if !want_md5 && !want_sha {
            return Ok(found);
        }
        let (mut md5, mut sha) = (Md5::new(), Sha256::new());
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
        }
        // A file that changed size while being read is judged by what was read.
        if want_md5 && self.md5.wanted(total) {
            self.md5.lookup(md5.finalize().into(), total, &mut found);
        }
        if want_sha && self.sha256.wanted(total) {
            self.sha256.lookup(sha.finalize().into(), total, &mut found);
        }
        Ok(found)
    }

    /// Whether there are body or logical signatures (otherwise only hashes are checked).
    pub fn has_body_signatures(&self) -> bool {
        !self.patterns.is_empty()
    }

    /// The names of the signatures matching `data`, hash signatures first (as ClamAV checks
    /// them first); with `all_matches` false, at most the first one found.
    pub fn match_bytes(
        &self,
        data: &[u8],
        scratch: &mut Scratch,
        options: MatchOptions,
    ) -> Result<Vec<Arc<str>>, ScanError> {
        self.match_bytes_known(data, KnownDigests::default(), scratch, options)
    }

    /// [`Engine::match_bytes`] with digests of `data` the caller already has (they must be
    /// of `data`: they are trusted, not checked).
    pub fn match_bytes_known(
        &self,
        data: &[u8],
        known: KnownDigests,
        scratch: &mut Scratch,
        options: MatchOptions,
    ) -> Result<Vec<Arc<str>>, ScanError> {
        let mut found = Vec::new();
        let size = data.len() as u64;
        let (want_md5, want_sha) = (self.md5.wanted(size), self.sha256.wanted(size));
        if let (true, Some(digest)) = (want_md5, known.md5) {
            self.md5.lookup(digest, size, &mut found);
        }
        let want_md5 = want_md5 && known.md5.is_none();
        if want_md5 || want_sha {
            // One pass for both digests, a cache-sized block at a time, so a file wanted by
            // both kinds is read from memory once.
            let (mut md5, mut sha) = (Md5::new(), Sha256::new());
            for block in data.chunks(64 * 1024) {
                if want_md5 {
                    md5.update(block);
                }
                if want_sha {
                    sha.update(block);
                }
            }
            if want_md5 {
                self.md5.lookup(md5.finalize().into(), size, &mut found);
            }
            if want_sha {
                self.sha256.lookup(sha.finalize().into(), size, &mut found);
            }
        }
        if !found.is_empty() && !options.all_matches {
            found.truncate(1);
            return Ok(found);
        }
        if !self.patterns.is_empty() {
            self.match_body(data, scratch, options, &mut found)?;
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

    fn match_body(
        &self,
        data: &[u8],
        scratch: &mut Scratch,
        options: MatchOptions,
        found: &mut Vec<Arc<str>>,
    ) -> Result<(), ScanError> {
        scratch.stamp.resize(self.patterns.len(), 0);
        scratch.generation = scratch.generation.wrapping_add(1);
        if scratch.generation == 0 {
            scratch.stamp.fill(0);
            scratch.generation = 1;
        }
        scratch.matched.clear();
        let mut budget = Budget::new(options.verify_budget);
        let mut state = MatchState {
            engine: self,
            data,
            scratch,
            budget: &mut budget,
            stop: false,
            options,
        };

        for &p in &self.fixed {
            let pat = &self.patterns[p as usize];
            if let Some((lo, hi)) = pat.offset.range(data.len())
                && verify::matches_from(&pat.elems, data, lo, hi, state.budget)?
            {
                state.record(p);
                if state.stop {
                    break;
                }
            }
        }
        if !state.stop
            && let Some(grams) = &self.long_grams
        {
            grams.scan(data, |anchor, start| state.on_anchor(anchor, start))?;
        }
        if !state.stop
            && let Some(grams) = &self.mid_grams
        {
            grams.scan(data, |anchor, start| state.on_anchor(anchor, start))?;
        }
        if !state.stop
            && let Some(ac) = &self.ac
        {
            for m in ac.find_overlapping_iter(data) {
                state.on_anchor(self.ac_anchors[m.pattern().as_usize()], m.start())?;
                if state.stop {
                    break;
                }
            }
        }

        let scratch = state.scratch;
        let mut logical_done = FxHashSet::default();
        for &p in &scratch.matched {
            match self.patterns[p as usize].owner {
                Owner::Body(i) => found.push(self.body_names[i as usize].clone()),
                Owner::Logical { sig, .. } => {
                    if !logical_done.insert(sig) {
                        continue;
                    }
                    let info = &self.logicals[sig as usize];
                    let size = data.len() as u64;
                    let size_ok = info
                        .file_size
                        .is_none_or(|(lo, hi)| (lo..=hi).contains(&size));
                    let stamp = &scratch.stamp;
                    let generation = scratch.generation;
                    let matched =
                        |sub: usize| stamp[info.first_pattern as usize + sub] == generation;
                    if size_ok && info.expr.eval(&matched) {
                        found.push(info.name.clone());
                    }
                }
            }
            if !options.all_matches && !found.is_empty() {
                found.truncate(1);
                break;
            }
        }
        Ok(())
    }
}

/// The state of one buffer's body match, shared by the prefilters' callbacks.
struct MatchState<'a> {
    engine: &'a Engine,
    data: &'a [u8],
    scratch: &'a mut Scratch,
    budget: &'a mut Budget,
    stop: bool,
    options: MatchOptions,
}

impl MatchState<'_> {
    fn record(&mut self, p: u32) {
        self.scratch.stamp[p as usize] = self.scratch.generation;
        self.scratch.matched.push(p);
        // A plain body signature is a detection on its own; a logical one needs the rest of
        // its expression, so the scan goes on.
        if !self.options.all_matches
            && matches!(self.engine.patterns[p as usize].owner, Owner::Body(_))
        {
            self.stop = true;
        }
    }

    /// An occurrence of anchor `a` starting at `start` (already compared byte for byte).
    fn on_anchor(&mut self, a: u32, start: usize) -> Result<bool, ScanError> {
        let anchor = &self.engine.anchors[a as usize];
        let end = start + anchor.bytes.len();
        for &p in &anchor.patterns {
            if self.scratch.stamp[p as usize] == self.scratch.generation {
                continue;
            }
            let pat = &self.engine.patterns[p as usize];
            if verify::matches_around(
                &pat.before,
                &pat.elems[pat.after..],
                self.data,
                start,
                end,
                self.budget,
            )? {
                self.record(p);
                if self.stop {
                    break;
                }
            }
        }
        Ok(!self.stop)
    }
}
