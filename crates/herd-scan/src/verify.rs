//! Exact verification of a body signature's elements against bytes, after the prefilter has
//! found a candidate (an anchor occurrence or an allowed start offset).
//!
//! The verifier tracks the *set* of positions where the pattern so far can end, as sorted
//! disjoint intervals, and advances it element by element. That is exact for every construct
//! (gaps of any width, alternatives of different lengths) and never backtracks, so a crafted
//! file cannot make it exponential; a step budget bounds the remaining polynomial worst case.
//! Parts of a signature before its anchor are run backwards from the anchor: the prefix and
//! the suffix are independent once the anchor's position is fixed.

use crate::error::ScanError;
use crate::hex::Elem;

/// The verification work allowed for one scanned buffer, in element-position steps.
#[derive(Debug)]
pub struct Budget {
    pub remaining: u64,
    pub limit: u64,
}

impl Budget {
    pub fn new(limit: u64) -> Budget {
        Budget {
            remaining: limit,
            limit,
        }
    }
    pub fn spend(&mut self, steps: u64) -> Result<(), ScanError> {
        match self.remaining.checked_sub(steps) {
            Some(r) => {
                self.remaining = r;
                Ok(())
            }
            None => Err(ScanError::VerificationBudget(self.limit)),
        }
    }
}

/// Sorted, disjoint, non-adjacent inclusive intervals of positions.
type Set = Vec<(usize, usize)>;

/// Bytes seen from the start (`forward`) or from the end towards the start. In the backward
/// view position `v` is the boundary `len - v` of the real bytes, and the byte "at" `v` is
/// `text[len - 1 - v]`; elements are reversed to match (see `reverse`).
#[derive(Clone, Copy)]
struct View<'a> {
    text: &'a [u8],
    backward: bool,
}

impl View<'_> {
    fn len(self) -> usize {
        self.text.len()
    }
    fn at(self, v: usize) -> u8 {
        if self.backward {
            self.text[self.text.len() - 1 - v]
        } else {
            self.text[v]
        }
    }
    fn has_prefix(self, v: usize, s: &[u8]) -> bool {
        v + s.len() <= self.len() && s.iter().enumerate().all(|(j, &b)| self.at(v + j) == b)
    }
    /// The first `v` in `lo..=hi` (with `hi < len`) where the byte is `b`.
    fn find(self, b: u8, lo: usize, hi: usize) -> Option<usize> {
        if self.backward {
            let n = self.text.len();
            memchr::memrchr(b, &self.text[n - 1 - hi..n - lo]).map(|r| n - 1 - (n - 1 - hi + r))
        } else {
            memchr::memchr(b, &self.text[lo..=hi]).map(|r| lo + r)
        }
    }
}

/// The elements before an anchor, turned around so the backward view can run them forwards.
pub fn reverse(elems: &[Elem]) -> Vec<Elem> {
    elems
        .iter()
        .rev()
        .map(|e| match e {
            Elem::Alt(choices) => Elem::Alt(
                choices
                    .iter()
                    .map(|c| c.iter().rev().copied().collect())
                    .collect(),
            ),
            other => other.clone(),
        })
        .collect()
}

fn push(set: &mut Set, lo: usize, hi: usize) {
    if let Some(last) = set.last_mut()
        && lo <= last.1 + 1
    {
        last.1 = last.1.max(hi);
        return;
    }
    set.push((lo, hi));
}

fn normalise(mut set: Set) -> Set {
    set.sort_unstable();
    let mut out = Set::with_capacity(set.len());
    for (lo, hi) in set {
        push(&mut out, lo, hi);
    }
    out
}

fn step(elem: &Elem, set: &Set, view: View<'_>, budget: &mut Budget) -> Result<Set, ScanError> {
    let len = view.len();
    let mut out = Set::new();
    match elem {
        Elem::Gap { min, max } => {
            let (min, max) = (*min as usize, max.map(|m| m as usize));
            for &(lo, hi) in set {
                let lo = lo + min;
                let hi = max.map_or(len, |m| hi.saturating_add(m).min(len));
                if lo <= len {
                    push(&mut out, lo, hi);
                }
            }
            budget.spend(set.len() as u64)?;
        }
        Elem::Byte { mask: 0, .. } => {
            for &(lo, hi) in set {
                if lo < len {
                    push(&mut out, lo + 1, hi.min(len - 1) + 1);
                }
            }
            budget.spend(set.len() as u64)?;
        }
        Elem::Byte { value, mask: 0xff } => {
            for &(lo, hi) in set {
                let mut v = lo;
                let hi = hi.min(len.saturating_sub(1));
                while v <= hi && v < len {
                    let Some(found) = view.find(*value, v, hi) else {
                        break;
                    };
                    push(&mut out, found + 1, found + 1);
                    v = found + 1;
                    budget.spend(1)?;
                }
            }
        }
        Elem::Byte { value, mask } => {
            for &(lo, hi) in set {
                for v in lo..=hi.min(len.saturating_sub(1)) {
                    if v < len && view.at(v) & mask == *value {
                        push(&mut out, v + 1, v + 1);
                    }
                }
                budget.spend((hi - lo + 1) as u64)?;
            }
        }
        Elem::Set(bytes) => {
            for &(lo, hi) in set {
                for v in lo..=hi.min(len.saturating_sub(1)) {
                    if v < len && bytes.contains(view.at(v)) {
                        push(&mut out, v + 1, v + 1);
                    }
                }
                budget.spend((hi - lo + 1) as u64)?;
            }
        }
        Elem::Alt(choices) => {
            let mut ends = Set::new();
            for &(lo, hi) in set {
                for v in lo..=hi.min(len) {
                    for c in choices {
                        if view.has_prefix(v, c) {
                            ends.push((v + c.len(), v + c.len()));
                        }
                    }
                }
                budget.spend((hi - lo + 1) as u64 * choices.len() as u64)?;
            }
            out = normalise(ends);
        }
    }
    Ok(out)
}

fn run(elems: &[Elem], start: Set, view: View<'_>, budget: &mut Budget) -> Result<bool, ScanError> {
    let mut set = start;
    for elem in elems {
        if set.is_empty() {
            return Ok(false);
        }
        set = step(elem, &set, view, budget)?;
    }
    Ok(!set.is_empty())
}

/// Whether `elems` match `text` starting anywhere in `lo..=hi`.
pub fn matches_from(
    elems: &[Elem],
    text: &[u8],
    lo: usize,
    hi: usize,
    budget: &mut Budget,
) -> Result<bool, ScanError> {
    if lo > text.len() {
        return Ok(false);
    }
    run(
        elems,
        vec![(lo, hi.min(text.len()))],
        View {
            text,
            backward: false,
        },
        budget,
    )
}

/// Whether a signature whose anchor occurs at `text[start..end]` matches around it: `after`
/// from `end` forwards and `before_reversed` (from `reverse`) from `start` backwards.
pub fn matches_around(
    before_reversed: &[Elem],
    after: &[Elem],
    text: &[u8],
    start: usize,
    end: usize,
    budget: &mut Budget,
) -> Result<bool, ScanError> {
    let back = View {
        text,
        backward: true,
    };
    let v = text.len() - start;
    Ok(run(
        after,
        vec![(end, end)],
        View {
            text,
            backward: false,
        },
        budget,
    )? && run(before_reversed, vec![(v, v)], back, budget)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex;

    /// Whether `sig` (hex syntax) occurs anywhere in `text`, by both entry points: from every
    /// start position, and around every occurrence of its anchor.
    fn found(sig: &str, text: &[u8]) -> bool {
        let p = hex::parse(sig).unwrap();
        let mut budget = Budget::new(1 << 30);
        let direct = matches_from(&p.elems, text, 0, text.len(), &mut budget).unwrap();
        let anchor = p.anchor_bytes();
        let before = reverse(&p.elems[..p.anchor.0]);
        let after = &p.elems[p.anchor.1..];
        let around = (0..text.len().saturating_sub(anchor.len() - 1))
            .filter(|&i| text[i..].starts_with(&anchor))
            .any(|i| {
                matches_around(&before, after, text, i, i + anchor.len(), &mut budget).unwrap()
            });
        assert_eq!(direct, around, "{sig} on {text:?}");
        direct
    }

    #[test]
    fn exact_bytes() {
        assert!(found("4142", b"xxABxx"));
        assert!(!found("4142", b"xxAxBx"));
        assert!(found("4142", b"AB"));
    }

    #[test]
    fn any_byte_and_nibbles() {
        assert!(found("41??4243", b"AzBC"));
        assert!(!found("41??4243", b"ABC"));
        assert!(found("41424?", b"ABO"));
        assert!(!found("41424?", b"ABP"));
        assert!(found("4142?f", b"AB/"));
        assert!(!found("4142?f", b"AB."));
    }

    #[test]
    fn star() {
        assert!(found("4142*4344", b"AB1234567CD"));
        assert!(found("4142*4344", b"ABCD"));
        assert!(!found("4142*4344", b"CDAB"));
        assert!(found("4142*4344*4546", b"CD EF AB CD EF"));
    }

    #[test]
    fn bounded_gaps() {
        assert!(found("4142{2}4344", b"AB..CD"));
        assert!(!found("4142{2}4344", b"AB...CD"));
        assert!(!found("4142{2}4344", b"AB.CD"));
        assert!(found("4142{-2}4344", b"ABCD"));
        assert!(found("4142{-2}4344", b"AB..CD"));
        assert!(!found("4142{-2}4344", b"AB...CD"));
        assert!(!found("4142{3-}4344", b"AB..CD"));
        assert!(found("4142{3-}4344", b"AB.........CD"));
        assert!(found("4142{1-3}4344", b"AB...CD"));
        assert!(!found("4142{1-3}4344", b"AB....CD"));
        assert!(!found("4142{1-3}4344", b"ABCD"));
    }

    #[test]
    fn gaps_before_the_anchor() {
        assert!(found("41{1-3}42434445", b"A..BCDE"));
        assert!(!found("41{1-3}42434445", b"A....BCDE"));
        assert!(found("41*42434445", b"A....BCDE"));
        assert!(!found("41*42434445", b"BCDE"));
    }

    #[test]
    fn alternatives() {
        assert!(found("4142(43|44)", b"ABD"));
        assert!(!found("4142(43|44)", b"ABE"));
        assert!(found("4142(4344|45)4647", b"ABEFG"));
        assert!(found("4142(4344|45)4647", b"ABCDFG"));
        assert!(!found("4142(4344|45)4647", b"ABCFG"));
        assert!(found("(4344|45)46474849", b"CDFGHI"));
        assert!(!found("(4344|45)46474849", b"CFGHI"));
        assert!(found("4142!(43|44)", b"ABE"));
        assert!(!found("4142!(43|44)", b"ABC"));
        assert!(!found("4142!(43|44)", b"AB"));
    }

    #[test]
    fn offsets_through_matches_from() {
        let p = hex::parse("4142").unwrap();
        let mut budget = Budget::new(1000);
        assert!(matches_from(&p.elems, b"xAB", 1, 1, &mut budget).unwrap());
        assert!(!matches_from(&p.elems, b"xAB", 0, 0, &mut budget).unwrap());
        assert!(matches_from(&p.elems, b"xxxAB", 0, 3, &mut budget).unwrap());
        assert!(!matches_from(&p.elems, b"xxxAB", 9, 9, &mut budget).unwrap());
    }

    #[test]
    fn budget_is_enforced() {
        let p = hex::parse("4141*4142").unwrap();
        let text = vec![b'A'; 10_000];
        let mut budget = Budget::new(100);
        assert_eq!(
            matches_from(&p.elems, &text, 0, text.len(), &mut budget),
            Err(ScanError::VerificationBudget(100))
        );
    }
}
