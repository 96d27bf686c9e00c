//! The sampled-gram prefilter for long anchors: a multi-pattern search whose cost per byte
//! hardly grows with the number of patterns.
//!
//! Every anchor handled by a `GramFilter<W, Q>` is at least `W` bytes long; one `W`-byte
//! slice of it is chosen (the one with the most varied bytes, as runs of zeros are common in
//! files). Any occurrence of that slice contains a `Q`-byte gram starting at a multiple of
//! `W - Q + 1`. So the scan reads only one gram every `W - Q + 1` bytes, tests it in a bitmap,
//! and only on a hit looks it up exactly and compares the whole anchor. Every gram of every
//! window position is indexed, so no occurrence is missed (tested against a naive search).
//! Two shapes are used: `Long` (16-byte windows, 8-byte grams, a sample every 9 bytes) and
//! `Mid` (8-byte windows, 4-byte grams, every 5 bytes) for anchors of 8 to 15 bytes.

use rustc_hash::FxHashMap;

use crate::error::ScanError;

const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

/// The filter for anchors of 16 bytes or more.
pub type Long = GramFilter<16, 8>;
/// The filter for anchors of 8 to 15 bytes.
pub type Mid = GramFilter<8, 4>;

/// A sampled-gram filter over anchors of at least `W` bytes, with `Q`-byte grams (`Q <= 8`).
#[derive(Debug)]
pub struct GramFilter<const W: usize, const Q: usize> {
    bits: Vec<u64>,
    shift: u32,
    /// Gram value -> range in `entries`.
    table: FxHashMap<u64, (u32, u32)>,
    /// (anchor id, offset of the gram within the anchor), grouped by gram.
    entries: Vec<(u32, u32)>,
    /// Anchor bytes by anchor id (ids not in this filter have empty slices).
    anchors: Vec<Box<[u8]>>,
}

fn gram_at<const Q: usize>(data: &[u8], i: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes[..Q].copy_from_slice(&data[i..i + Q]);
    u64::from_le_bytes(bytes)
}

/// A window's score: distinct byte values, less for bytes common in files.
fn score(window: &[u8]) -> i32 {
    let mut seen = [false; 256];
    let mut s = 0;
    for &b in window {
        if !seen[usize::from(b)] {
            seen[usize::from(b)] = true;
            s += 4;
        }
        if matches!(b, 0x00 | 0xff | 0x20) {
            s -= 3;
        }
    }
    s
}

impl<const W: usize, const Q: usize> GramFilter<W, Q> {
    /// The anchor slice length the filter indexes: anchors must be at least this long.
    pub const WINDOW: usize = W;
    /// Distance between sampled positions.
    const STEP: usize = W - Q + 1;

    /// Builds the filter over `(anchor id, bytes)` pairs; every anchor is at least `W` bytes
    /// long.
    pub fn new<'a>(anchors: impl Iterator<Item = (u32, &'a [u8])>) -> Self {
        let mut by_gram: Vec<(u64, u32, u32)> = Vec::new();
        let mut stored: Vec<Box<[u8]>> = Vec::new();
        for (id, bytes) in anchors {
            assert!(bytes.len() >= W, "anchor shorter than the gram window");
            let best = (0..=bytes.len() - W)
                .max_by_key(|&w| (score(&bytes[w..w + W]), std::cmp::Reverse(w)));
            let w = best.unwrap_or(0);
            for k in 0..Self::STEP {
                by_gram.push((gram_at::<Q>(bytes, w + k), id, (w + k) as u32));
            }
            if stored.len() <= id as usize {
                stored.resize(id as usize + 1, Box::default());
            }
            stored[id as usize] = bytes.into();
        }
        by_gram.sort_unstable();
        by_gram.dedup();
        // About 32 bits per entry keeps false positives of the bitmap near 3 %.
        let bits_log2 = (by_gram.len().max(1) * 32)
            .next_power_of_two()
            .trailing_zeros()
            .clamp(12, 26);
        let mut bits = vec![0u64; 1 << (bits_log2 - 6)];
        let shift = 64 - bits_log2;
        let mut table = FxHashMap::default();
        let mut entries = Vec::with_capacity(by_gram.len());
        let mut i = 0;
        while i < by_gram.len() {
            let g = by_gram[i].0;
            let start = entries.len() as u32;
            while i < by_gram.len() && by_gram[i].0 == g {
                entries.push((by_gram[i].1, by_gram[i].2));
                i += 1;
            }
            table.insert(g, (start, entries.len() as u32));
            let h = (g.wrapping_mul(MULTIPLIER) >> shift) as usize;
            bits[h >> 6] |= 1 << (h & 63);
        }
        GramFilter {
            bits,
            shift,
            table,
            entries,
            anchors: stored,
        }
    }

    /// Calls `on_match(anchor id, start)` for every occurrence of an indexed anchor in `data`,
    /// in no particular order, until it returns `Ok(false)`.
    pub fn scan(
        &self,
        data: &[u8],
        mut on_match: impl FnMut(u32, usize) -> Result<bool, ScanError>,
    ) -> Result<(), ScanError> {
        if data.len() < W {
            return Ok(());
        }
        let last = data.len() - Q;
        let mut p = 0;
        while p <= last {
            let g = gram_at::<Q>(data, p);
            let h = (g.wrapping_mul(MULTIPLIER) >> self.shift) as usize;
            if self.bits[h >> 6] & (1 << (h & 63)) != 0
                && !self.candidates(data, p, g, &mut on_match)?
            {
                return Ok(());
            }
            p += Self::STEP;
        }
        Ok(())
    }

    #[cold]
    fn candidates(
        &self,
        data: &[u8],
        p: usize,
        g: u64,
        on_match: &mut impl FnMut(u32, usize) -> Result<bool, ScanError>,
    ) -> Result<bool, ScanError> {
        let Some(&(from, to)) = self.table.get(&g) else {
            return Ok(true);
        };
        for &(anchor, off) in &self.entries[from as usize..to as usize] {
            let Some(start) = p.checked_sub(off as usize) else {
                continue;
            };
            let bytes = &self.anchors[anchor as usize];
            if data.get(start..start + bytes.len()) == Some(&bytes[..]) && !on_match(anchor, start)?
            {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator so the test needs no dependency.
    fn lcg(seed: &mut u64) -> u8 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 59) as u8 // 32 symbols: collisions and repeats are common
    }

    #[test]
    fn finds_exactly_what_a_naive_search_finds() {
        check_against_naive::<16, 8>();
        check_against_naive::<8, 4>();
    }

    fn check_against_naive<const W: usize, const Q: usize>() {
        let mut seed = 7;
        let anchors: Vec<Vec<u8>> = (0..50)
            .map(|i| (0..W + i % 13).map(|_| lcg(&mut seed)).collect())
            .chain([vec![0u8; W + 4], vec![1u8; W]])
            .collect();
        let filter =
            GramFilter::<W, Q>::new(anchors.iter().enumerate().map(|(i, a)| (i as u32, &a[..])));
        for round in 0..20 {
            let mut data: Vec<u8> = (0..5000).map(|_| lcg(&mut seed)).collect();
            for (i, a) in anchors.iter().enumerate() {
                if (i + round) % 3 == 0 {
                    let at = (i * 97 + round * 31) % (data.len() - a.len());
                    data[at..at + a.len()].copy_from_slice(a);
                }
            }
            data.extend_from_slice(&[0; 25]);
            data.extend_from_slice(&anchors[round]);
            let mut got = Vec::new();
            filter
                .scan(&data, |a, s| {
                    got.push((a, s));
                    Ok(true)
                })
                .unwrap();
            got.sort();
            let mut want = Vec::new();
            for (i, a) in anchors.iter().enumerate() {
                for s in 0..=data.len() - a.len() {
                    if data[s..].starts_with(a) {
                        want.push((i as u32, s));
                    }
                }
            }
            assert_eq!(got, want, "round {round}");
        }
    }

    #[test]
    fn short_input_and_early_stop() {
        let a = [7u8; 16];
        let filter = Long::new([(0, &a[..])].into_iter());
        filter
            .scan(&[7; 15], |_, _| panic!("too short to match"))
            .unwrap();
        let mut calls = 0;
        filter
            .scan(&[7; 100], |_, _| {
                calls += 1;
                Ok(false)
            })
            .unwrap();
        assert_eq!(calls, 1);
    }
}
