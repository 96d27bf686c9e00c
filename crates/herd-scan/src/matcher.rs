//! The body and logical signatures of one target (ClamAV's per-target matcher "root"),
//! compiled: a multi-pattern prefilter over each signature's longest fixed anchor, then exact
//! verification. `Engine` holds one per target and runs target 0's and the file type's over
//! each view of a file (raw bytes, normalised text, normalised HTML).
//!
//! Two prefilters share the anchors (see the notes in `lib.rs`):
//! - anchors of at least 16 bytes go to a sampled 8-byte-gram filter that reads one gram
//!   every 9 bytes, so its cost barely depends on the signature count, and anchors of 8 to 15
//!   bytes to the same kind of filter with 4-byte grams every 5 bytes (`gram`);
//! - shorter anchors go to an Aho-Corasick automaton (the `aho-corasick` crate), which is
//!   exact but slows down with thousands of patterns (57 MB/s with 10,000 was measured here).
//!
//! Signatures with a fixed start offset (`n`, `EOF-n`, `n,maxshift`, and the PE-relative
//! ones) skip the prefilter and are verified directly at their offsets.
//!
//! Match counts: a subsignature of a logical signature whose expression counts matches
//! (`0>2`) is verified at every anchor occurrence, each verified occurrence counting once
//! (ClamAV counts distinct start offsets; they differ only for a subsignature whose start is
//! not fixed relative to its anchor, such as one starting with a gap). Logical signatures
//! whose expression holds with no match at all (`0<3`) are evaluated on every buffer, as
//! ClamAV evaluates every logical signature at the end of a scan.

use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::db::{BodySig, ByteCmp, ContainerType, Expr, LogicalSig, Offset, PcreSub, Subsig};
use crate::engine::{EngineOptions, MatchOptions};
use crate::error::ScanError;
use crate::gram;
use crate::hex::{self, Elem, HexPattern};
use crate::pe::ExeLayout;
use crate::verify::{self, Budget};

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
    /// Every occurrence counts (the logical expression has match counts).
    counted: bool,
    /// A byte comparison needs where the last match started.
    track_start: bool,
    /// Bytes from the match's start to its anchor, when fixed.
    prefix_width: Option<usize>,
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
    entry_point: Option<(u64, u64)>,
    sections: Option<(u64, u64)>,
    container: Option<ContainerType>,
    expr: Expr,
    first_pattern: u32,
}

/// One view of a file as the matcher sees it.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [u8],
    /// The size `FileSize:` compares (ClamAV's for normalised text is the original file's).
    pub file_size: u64,
    /// The PE layout, for executable-relative offsets and `EntryPoint:`/`NumberOfSections:`.
    pub exe: Option<&'a ExeLayout>,
    /// The archive the file was extracted from, for `Container:`.
    pub container: Option<ContainerType>,
}

/// One target's compiled body and logical signatures.
#[derive(Debug)]
pub struct Matcher {
    body_names: Vec<Arc<str>>,
    logicals: Vec<LogicalInfo>,
    /// Logical signatures that hold with no match, evaluated on every buffer.
    always: Vec<u32>,
    patterns: Vec<Pattern>,
    anchors: Vec<Anchor>,
    /// Indices into `anchors` searched by `ac` (pattern i of the automaton is `ac_anchors[i]`).
    ac_anchors: Vec<u32>,
    ac: Option<AhoCorasick>,
    long_grams: Option<gram::Long>,
    mid_grams: Option<gram::Mid>,
    /// Patterns with a constrained start offset, verified directly.
    fixed: Vec<u32>,
    /// PCRE subsignatures in signature order: (logical signature, slot in `patterns`).
    pcres: Vec<(u32, u32, PcreSub)>,
    /// Byte comparisons: (slot, slot of the referenced subsignature, comparison).
    bytecmps: Vec<(u32, u32, ByteCmp)>,
}

/// Per-thread working memory for one matcher at a time, reused across buffers.
#[derive(Debug, Default)]
pub struct MatchScratch {
    /// `stamp[p] == generation` when pattern `p` matched in the current buffer…
    stamp: Vec<u32>,
    /// …and then `count[p]` times, the last (furthest) starting at `last_start[p]`.
    count: Vec<u32>,
    last_start: Vec<usize>,
    generation: u32,
    matched: Vec<u32>,
}

impl Matcher {
    pub fn new(bodies: &[&BodySig], logicals: &[&LogicalSig], options: &EngineOptions) -> Matcher {
        let mut patterns = Vec::new();
        let mut add = |owner, offset, p: &HexPattern, counted, track_start| {
            patterns.push(Pattern {
                owner,
                offset,
                elems: p.elems.clone(),
                before: verify::reverse(&p.elems[..p.anchor.0]),
                after: p.anchor.1,
                counted: counted || track_start,
                track_start,
                prefix_width: hex::prefix_width(p),
            });
            p.anchor_bytes()
        };
        let mut anchor_bytes = Vec::new();
        for (i, sig) in bodies.iter().enumerate() {
            anchor_bytes.push(add(
                Owner::Body(i as u32),
                sig.offset,
                &sig.pattern,
                false,
                false,
            ));
        }
        let mut infos = Vec::new();
        let mut always = Vec::new();
        let mut pcres = Vec::new();
        let mut bytecmps = Vec::new();
        // PCRE subsignatures take a slot (for their counts) without a pattern to search.
        let mut slots_only = FxHashSet::default();
        for (i, sig) in logicals.iter().enumerate() {
            let first_pattern = anchor_bytes.len() as u32;
            let counted = sig.expr.counts_matches();
            let owner = Owner::Logical { sig: i as u32 };
            let mut evaluated_always = false;
            let referenced = |sub: usize| {
                sig.subsigs
                    .iter()
                    .any(|s| matches!(s, Subsig::ByteCmp(b) if b.reference == sub))
            };
            let empty = HexPattern {
                elems: Vec::new(),
                anchor: (0, 0),
            };
            for (j, sub) in sig.subsigs.iter().enumerate() {
                let slot = anchor_bytes.len() as u32;
                match sub {
                    Subsig::Hex(offset, p) => {
                        anchor_bytes.push(add(owner, *offset, p, counted, referenced(j)));
                    }
                    Subsig::Pcre(pcre) => {
                        anchor_bytes.push(add(owner, Offset::Any, &empty, counted, false));
                        slots_only.insert(slot);
                        pcres.push((i as u32, slot, (**pcre).clone()));
                        evaluated_always = true;
                    }
                    Subsig::ByteCmp(b) => {
                        anchor_bytes.push(add(owner, Offset::Any, &empty, counted, false));
                        slots_only.insert(slot);
                        bytecmps.push((slot, first_pattern + b.reference as u32, b.clone()));
                        evaluated_always = true;
                    }
                }
            }
            if evaluated_always || sig.expr.holds(&|_| 0) {
                always.push(i as u32);
            }
            infos.push(LogicalInfo {
                name: sig.name.clone(),
                file_size: sig.file_size,
                entry_point: sig.entry_point,
                sections: sig.sections,
                container: sig.container,
                expr: sig.expr.clone(),
                first_pattern,
            });
        }

        let mut fixed = Vec::new();
        let mut anchors: Vec<Anchor> = Vec::new();
        let mut by_bytes: FxHashMap<Vec<u8>, u32> = FxHashMap::default();
        for (i, bytes) in anchor_bytes.into_iter().enumerate() {
            if slots_only.contains(&(i as u32)) {
                continue;
            }
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
        Matcher {
            body_names: bodies.iter().map(|b| b.name.clone()).collect(),
            logicals: infos,
            always,
            patterns,
            anchors,
            ac_anchors: short,
            ac,
            long_grams,
            mid_grams,
            fixed,
            pcres,
            bytecmps,
        }
    }

    /// Matches `view`, appending the names found to `found`; with `all_matches` false it stops
    /// at the first.
    pub fn scan(
        &self,
        view: &View<'_>,
        scratch: &mut MatchScratch,
        options: MatchOptions,
        budget: &mut Budget,
        found: &mut Vec<Arc<str>>,
    ) -> Result<(), ScanError> {
        let data = view.data;
        scratch.stamp.resize(self.patterns.len(), 0);
        scratch.count.resize(self.patterns.len(), 0);
        scratch.last_start.resize(self.patterns.len(), 0);
        scratch.generation = scratch.generation.wrapping_add(1);
        if scratch.generation == 0 {
            scratch.stamp.fill(0);
            scratch.generation = 1;
        }
        scratch.matched.clear();
        let mut state = MatchState {
            matcher: self,
            data,
            scratch,
            budget,
            stop: false,
            options,
        };

        for &p in &self.fixed {
            let pat = &self.patterns[p as usize];
            if let Some((lo, hi)) = pat.offset.range_in(data.len(), view.exe)
                && verify::matches_from(&pat.elems, data, lo, hi, state.budget)?
            {
                let mut start = lo;
                if pat.track_start && lo < hi {
                    // Where in the window it starts: only byte comparisons need it.
                    while start < hi
                        && !verify::matches_from(&pat.elems, data, start, start, state.budget)?
                    {
                        start += 1;
                    }
                }
                state.record(p, start);
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

        for (slot, reference, cmp) in &self.bytecmps {
            let s = &*state.scratch;
            let r = *reference as usize;
            if s.stamp[r] == s.generation && cmp.holds(data, s.last_start[r]) {
                state.record(*slot, 0);
            }
        }
        if !self.pcres.is_empty() {
            state.run_pcres(view)?;
        }
        let scratch = state.scratch;
        let mut logical_done = FxHashSet::default();
        let candidates = scratch
            .matched
            .iter()
            .map(|&p| self.patterns[p as usize].owner)
            .chain(self.always.iter().map(|&sig| Owner::Logical { sig }));
        for owner in candidates {
            match owner {
                Owner::Body(i) => found.push(self.body_names[i as usize].clone()),
                Owner::Logical { sig } => {
                    if !logical_done.insert(sig) {
                        continue;
                    }
                    let info = &self.logicals[sig as usize];
                    let (stamp, count) = (&scratch.stamp, &scratch.count);
                    let generation = scratch.generation;
                    let counted = |sub: usize| {
                        let p = info.first_pattern as usize + sub;
                        if stamp[p] == generation { count[p] } else { 0 }
                    };
                    if info.applies(view) && info.expr.holds(&counted) {
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

impl LogicalInfo {
    /// The target description's conditions other than the target itself.
    fn applies(&self, view: &View<'_>) -> bool {
        let within = |range: Option<(u64, u64)>, value: Option<u64>| match range {
            None => true,
            Some((lo, hi)) => value.is_some_and(|v| (lo..=hi).contains(&v)),
        };
        within(self.file_size, Some(view.file_size))
            && within(self.entry_point, view.exe.map(|e| e.entry_point))
            && within(self.sections, view.exe.map(|e| e.sections.len() as u64))
            && self.container.is_none_or(|c| view.container == Some(c))
    }
}

/// The state of one buffer's body match, shared by the prefilters' callbacks.
struct MatchState<'a> {
    matcher: &'a Matcher,
    data: &'a [u8],
    scratch: &'a mut MatchScratch,
    budget: &'a mut Budget,
    stop: bool,
    options: MatchOptions,
}

impl MatchState<'_> {
    /// Pattern `p` matched, starting at `start` (used only for patterns byte comparisons
    /// refer to, which always know it).
    fn record(&mut self, p: u32, start: usize) {
        let s = &mut *self.scratch;
        if s.stamp[p as usize] == s.generation {
            s.count[p as usize] = s.count[p as usize].saturating_add(1);
            s.last_start[p as usize] = s.last_start[p as usize].max(start);
            return;
        }
        s.stamp[p as usize] = s.generation;
        s.count[p as usize] = 1;
        s.last_start[p as usize] = start;
        s.matched.push(p);
        // A plain body signature is a detection on its own; a logical one needs the rest of
        // its expression, so the scan goes on.
        if !self.options.all_matches
            && matches!(self.matcher.patterns[p as usize].owner, Owner::Body(_))
        {
            self.stop = true;
        }
    }

    /// The PCRE subsignatures, in order, each when its trigger holds on the counts so far.
    fn run_pcres(&mut self, view: &View<'_>) -> Result<(), ScanError> {
        let matcher = self.matcher;
        for (sig, slot, pcre) in &matcher.pcres {
            let first = matcher.logicals[*sig as usize].first_pattern as usize;
            let s = &*self.scratch;
            let counted = |sub: usize| {
                let p = first + sub;
                if s.stamp[p] == s.generation {
                    s.count[p]
                } else {
                    0
                }
            };
            if !pcre.trigger.holds(&counted) {
                continue;
            }
            let matches = pcre_matches(pcre, view, self.budget)?;
            for _ in 0..matches {
                self.record(*slot, 0);
            }
        }
        Ok(())
    }

    /// An occurrence of anchor `a` starting at `start` (already compared byte for byte).
    fn on_anchor(&mut self, a: u32, start: usize) -> Result<bool, ScanError> {
        let anchor = &self.matcher.anchors[a as usize];
        let end = start + anchor.bytes.len();
        for &p in &anchor.patterns {
            let pat = &self.matcher.patterns[p as usize];
            if !pat.counted && self.scratch.stamp[p as usize] == self.scratch.generation {
                continue;
            }
            if verify::matches_around(
                &pat.before,
                &pat.elems[pat.after..],
                self.data,
                start,
                end,
                self.budget,
            )? {
                self.record(p, start.saturating_sub(pat.prefix_width.unwrap_or(0)));
                if self.stop {
                    break;
                }
            }
        }
        Ok(!self.stop)
    }
}

/// How many times `pcre` matches `view` as `cli_pcre_scanbuf` searches: from the offset
/// (anchored there when it is exact and not rolling), a match starting past the maxshift
/// ignored, or with `e` the search confined to offset..offset+maxshift; with `g` on from the
/// end of each match.
fn pcre_matches(pcre: &PcreSub, view: &View<'_>, budget: &mut Budget) -> Result<u32, ScanError> {
    let data = view.data;
    let Some((lo, hi)) = pcre.offset.range_in(data.len(), view.exe) else {
        return Ok(0);
    };
    if lo >= data.len() {
        return Ok(0);
    }
    let any = pcre.offset == Offset::Any;
    let shift = if any { 0 } else { hi - lo };
    let anchored = pcre.anchored || (!pcre.rolling && shift == 0 && !any);
    let end = if pcre.encompass && shift != 0 {
        (lo + shift).min(data.len())
    } else {
        data.len()
    };
    let haystack = &data[lo..end];
    // The regex crate is linear in the haystack; charge it like verification work.
    budget.spend(haystack.len() as u64 / 64 + 1)?;
    let mut count = 0;
    let mut at = 0;
    while let Some(m) = pcre.regex.find_at(haystack, at) {
        if anchored && m.start() != at {
            break;
        }
        if !pcre.encompass && shift != 0 && m.start() > shift {
            break;
        }
        count += 1;
        if !pcre.global {
            break;
        }
        at = if m.end() > m.start() {
            m.end()
        } else {
            m.end() + 1
        };
        if at >= haystack.len() {
            break;
        }
        budget.spend(1)?;
    }
    Ok(count)
}
