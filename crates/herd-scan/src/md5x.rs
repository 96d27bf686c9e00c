//! MD5 of many buffers at once, one SIMD lane per buffer (16 lanes with AVX-512).
//!
//! Why: one MD5 is a chain of dependent 32-bit operations, so a single stream runs at about
//! 0.55 GB/s here whatever the implementation (md-5's assembly was measured no faster than its
//! portable code), and with realistic hash databases nearly every scanned file must be hashed.
//! Files are independent, so sixteen of them can go through the same chain side by side in
//! the lanes of 512-bit registers. Lanes are refilled as their buffers end (longest buffers
//! first, to keep lanes busy); when only a few lanes are left busy the rest finish on the scalar
//! path, which is faster for a single lane. Without AVX-512 everything takes the scalar path.
//!
//! Checked against the md-5 crate on random lengths (tests here and a fuzz target).

/// Per-step left rotations, by round.
const SHIFTS: [[u32; 4]; 4] = [
    [7, 12, 17, 22],
    [5, 9, 14, 20],
    [4, 11, 16, 23],
    [6, 10, 15, 21],
];

/// floor(abs(sin(i + 1)) × 2^32).
const K: [u32; 64] = [
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
];

const INIT: [u32; 4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];

/// The message word used at step `i`.
const fn word(i: usize) -> usize {
    match i / 16 {
        0 => i,
        1 => (5 * i + 1) % 16,
        2 => (3 * i + 5) % 16,
        _ => (7 * i) % 16,
    }
}

/// One block on the scalar path: the 64 steps written out (`step!`), so that every rotation,
/// constant and message word is fixed at compile time. A loop over the steps indexing
/// `SHIFTS`, `K` and the word order is not unrolled by the compiler and ran at a third of
/// this speed (it finished each batch's longest file, a quarter of a real-file scan).
#[inline(always)]
fn compress(state: &mut [u32; 4], block: &[u8; 64]) {
    let mut m = [0u32; 16];
    for (w, c) in m.iter_mut().zip(block.chunks_exact(4)) {
        *w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    let [mut a, mut b, mut c, mut d] = *state;
    // a = b + ((a + f(b, c, d) + m[word(i)] + K[i]) <<< s), the names rotating each step.
    macro_rules! step {
        ($f:ident, $a:ident, $b:ident, $c:ident, $d:ident, $i:expr) => {
            $a = $b.wrapping_add(
                $a.wrapping_add($f($b, $c, $d))
                    .wrapping_add(m[word($i)])
                    .wrapping_add(K[$i])
                    .rotate_left(SHIFTS[$i / 16][$i % 4]),
            );
        };
    }
    #[inline(always)]
    fn f(b: u32, c: u32, d: u32) -> u32 {
        (b & c) | (!b & d)
    }
    #[inline(always)]
    fn g(b: u32, c: u32, d: u32) -> u32 {
        (d & b) | (!d & c)
    }
    #[inline(always)]
    fn h(b: u32, c: u32, d: u32) -> u32 {
        b ^ c ^ d
    }
    #[inline(always)]
    fn i(b: u32, c: u32, d: u32) -> u32 {
        c ^ (b | !d)
    }
    step!(f, a, b, c, d, 0);
    step!(f, d, a, b, c, 1);
    step!(f, c, d, a, b, 2);
    step!(f, b, c, d, a, 3);
    step!(f, a, b, c, d, 4);
    step!(f, d, a, b, c, 5);
    step!(f, c, d, a, b, 6);
    step!(f, b, c, d, a, 7);
    step!(f, a, b, c, d, 8);
    step!(f, d, a, b, c, 9);
    step!(f, c, d, a, b, 10);
    step!(f, b, c, d, a, 11);
    step!(f, a, b, c, d, 12);
    step!(f, d, a, b, c, 13);
    step!(f, c, d, a, b, 14);
    step!(f, b, c, d, a, 15);
    step!(g, a, b, c, d, 16);
    step!(g, d, a, b, c, 17);
    step!(g, c, d, a, b, 18);
    step!(g, b, c, d, a, 19);
    step!(g, a, b, c, d, 20);
    step!(g, d, a, b, c, 21);
    step!(g, c, d, a, b, 22);
    step!(g, b, c, d, a, 23);
    step!(g, a, b, c, d, 24);
    step!(g, d, a, b, c, 25);
    step!(g, c, d, a, b, 26);
    step!(g, b, c, d, a, 27);
    step!(g, a, b, c, d, 28);
    step!(g, d, a, b, c, 29);
    step!(g, c, d, a, b, 30);
    step!(g, b, c, d, a, 31);
    step!(h, a, b, c, d, 32);
    step!(h, d, a, b, c, 33);
    step!(h, c, d, a, b, 34);
    step!(h, b, c, d, a, 35);
    step!(h, a, b, c, d, 36);
    step!(h, d, a, b, c, 37);
    step!(h, c, d, a, b, 38);
    step!(h, b, c, d, a, 39);
    step!(h, a, b, c, d, 40);
    step!(h, d, a, b, c, 41);
    step!(h, c, d, a, b, 42);
    step!(h, b, c, d, a, 43);
    step!(h, a, b, c, d, 44);
    step!(h, d, a, b, c, 45);
    step!(h, c, d, a, b, 46);
    step!(h, b, c, d, a, 47);
    step!(i, a, b, c, d, 48);
    step!(i, d, a, b, c, 49);
    step!(i, c, d, a, b, 50);
    step!(i, b, c, d, a, 51);
    step!(i, a, b, c, d, 52);
    step!(i, d, a, b, c, 53);
    step!(i, c, d, a, b, 54);
    step!(i, b, c, d, a, 55);
    step!(i, a, b, c, d, 56);
    step!(i, d, a, b, c, 57);
    step!(i, c, d, a, b, 58);
    step!(i, b, c, d, a, 59);
    step!(i, a, b, c, d, 60);
    step!(i, d, a, b, c, 61);
    step!(i, c, d, a, b, 62);
    step!(i, b, c, d, a, 63);
    for (s, v) in state.iter_mut().zip([a, b, c, d]) {
        *s = s.wrapping_add(v);
    }
}

/// One buffer's progress: full blocks come from the buffer, the last one or two from `tail`
/// (the remaining bytes, 0x80, zeros, the bit length).
struct Job<'a> {
    data: &'a [u8],
    /// Blocks done so far (of `blocks()`).
    done: usize,
    tail: [u8; 128],
    tail_blocks: usize,
    state: [u32; 4],
}

impl<'a> Job<'a> {
    fn new(data: &'a [u8]) -> Job<'a> {
        let full = data.len() / 64;
        let rest = &data[full * 64..];
        let mut tail = [0u8; 128];
        tail[..rest.len()].copy_from_slice(rest);
        tail[rest.len()] = 0x80;
        let tail_blocks = if rest.len() < 56 { 1 } else { 2 };
        let bits = (data.len() as u64).wrapping_mul(8);
        tail[tail_blocks * 64 - 8..tail_blocks * 64].copy_from_slice(&bits.to_le_bytes());
        Job {
            data,
            done: 0,
            tail,
            tail_blocks,
            state: INIT,
        }
    }
    fn blocks(&self) -> usize {
        self.data.len() / 64 + self.tail_blocks
    }
    fn left(&self) -> usize {
        self.blocks() - self.done
    }
    fn block(&self, i: usize) -> &[u8; 64] {
        let full = self.data.len() / 64;
        let bytes = if i < full {
            &self.data[i * 64..i * 64 + 64]
        } else {
            &self.tail[(i - full) * 64..(i - full) * 64 + 64]
        };
        bytes.try_into().expect("64 bytes")
    }
    fn finish_scalar(&mut self) {
        while self.done < self.blocks() {
            let mut state = self.state;
            compress(&mut state, self.block(self.done));
            self.state = state;
            self.done += 1;
        }
    }
    fn digest(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (o, s) in out.chunks_exact_mut(4).zip(self.state) {
            o.copy_from_slice(&s.to_le_bytes());
        }
        out
    }
}

/// The MD5 digest of one buffer, on the scalar path.
pub fn md5(data: &[u8]) -> [u8; 16] {
    let mut job = Job::new(data);
    job.finish_scalar();
    job.digest()
}

/// The MD5 digests of `inputs`, in order, sixteen at a time where the CPU allows.
pub fn md5_many(inputs: &[&[u8]]) -> Vec<[u8; 16]> {
    let mut jobs: Vec<Job<'_>> = inputs.iter().map(|d| Job::new(d)).collect();
    #[cfg(target_arch = "x86_64")]
    if jobs.len() > 1 && std::arch::is_x86_feature_detected!("avx512f") {
        avx512::run(&mut jobs);
    } else if jobs.len() > 1 && std::arch::is_x86_feature_detected!("avx2") {
        avx2::run(&mut jobs);
    }
    for job in &mut jobs {
        job.finish_scalar();
    }
    jobs.iter().map(Job::digest).collect()
}

/// Runs `jobs` through `compress`, `L` lanes at a time: lanes are refilled as their buffers
/// end, longest buffers first so that the lanes finish close together; below `min_busy` busy
/// lanes it returns, and what is left finishes on the scalar path.
#[cfg(target_arch = "x86_64")]
fn run_lanes<const L: usize>(
    jobs: &mut [Job<'_>],
    min_busy: usize,
    compress: impl Fn(&mut [[u32; L]; 4], &[Option<&Job<'_>>; L], usize),
) {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&j| std::cmp::Reverse(jobs[j].blocks()));
    let mut queue = order.into_iter();
    let mut lanes: [Option<usize>; L] = [None; L];
    loop {
        for lane in lanes.iter_mut().filter(|l| l.is_none()) {
            *lane = queue.next();
        }
        let busy = lanes.iter().flatten().count();
        if busy < min_busy {
            // What is left (in the lanes; the queue is empty) finishes on the scalar path.
            return;
        }
        // Run every busy lane for as many blocks as the shortest of them has left.
        let steps = lanes
            .iter()
            .flatten()
            .map(|&j| jobs[j].left())
            .min()
            .unwrap_or(0);
        let mut states = [[0u32; L]; 4];
        for (l, lane) in lanes.iter().enumerate() {
            if let Some(j) = *lane {
                for (s, v) in states.iter_mut().zip(jobs[j].state) {
                    s[l] = v;
                }
            }
        }
        let blocks: [Option<&Job<'_>>; L] = lanes.map(|l| l.map(|j| &jobs[j]));
        compress(&mut states, &blocks, steps);
        for (l, lane) in lanes.iter_mut().enumerate() {
            if let Some(j) = *lane {
                let job = &mut jobs[j];
                job.state = [states[0][l], states[1][l], states[2][l], states[3][l]];
                job.done += steps;
                if job.left() == 0 {
                    *lane = None;
                }
            }
        }
    }
}

/// The message words of `steps` blocks of each lane's job, transposed: `words[w][l]` is word
/// `w` of lane `l`'s block (idle lanes hash zeros that nobody reads).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn gather<const L: usize>(jobs: &[Option<&Job<'_>>; L], step: usize, words: &mut [[u32; L]; 16]) {
    let zero = [0u8; 64];
    for (l, job) in jobs.iter().enumerate() {
        let block = match job {
            Some(job) => job.block(job.done + step),
            None => &zero,
        };
        for (w, chunk) in words.iter_mut().zip(block.chunks_exact(4)) {
            w[l] = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Job, K, SHIFTS, word};

    const LANES: usize = 16;
    /// Below this many busy lanes the scalar path finishes the rest: one lane's chain is no
    /// faster than the scalar one and gathering the words costs extra, but two lanes already
    /// win (measured on real files: finishing at fewer than four busy lanes was 15–25 % slower
    /// overall, at fewer than one slower still).
    const MIN_BUSY: usize = 2;

    pub(super) fn run(jobs: &mut [Job<'_>]) {
        super::run_lanes::<LANES>(jobs, MIN_BUSY, |states, blocks, steps| {
            #[allow(unsafe_code)]
            // SAFETY: `run` is only called after `is_x86_feature_detected!("avx512f")`.
            unsafe {
                compress_lanes(states, blocks, steps)
            }
        });
    }

    #[target_feature(enable = "avx512f")]
    fn load(v: &[u32; LANES]) -> __m512i {
        #[allow(unsafe_code)]
        // SAFETY: `v` is 16 readable, initialised u32s (an unaligned load).
        unsafe {
            _mm512_loadu_epi32(v.as_ptr().cast())
        }
    }

    #[target_feature(enable = "avx512f")]
    fn store(v: __m512i, out: &mut [u32; LANES]) {
        #[allow(unsafe_code)]
        // SAFETY: `out` has room for 16 u32s (an unaligned store).
        unsafe {
            _mm512_storeu_epi32(out.as_mut_ptr().cast(), v)
        }
    }

    /// `steps` blocks of each busy lane's job (idle lanes hash zeros that nobody reads).
    #[target_feature(enable = "avx512f")]
    fn compress_lanes(
        states: &mut [[u32; LANES]; 4],
        jobs: &[Option<&Job<'_>>; LANES],
        steps: usize,
    ) {
        let (mut a, mut b, mut c, mut d) = (
            load(&states[0]),
            load(&states[1]),
            load(&states[2]),
            load(&states[3]),
        );
        let mut words = [[0u32; LANES]; 16];
        let mut m = [_mm512_setzero_si512(); 16];
        for step in 0..steps {
            super::gather(jobs, step, &mut words);
            for (v, w) in m.iter_mut().zip(&words) {
                *v = load(w);
            }
            let (a0, b0, c0, d0) = (a, b, c, d);
            macro_rules! round {
                ($round:expr, $imm:expr) => {
                    for i in $round * 16..$round * 16 + 16 {
                        // F, G, H and I as one ternary-logic instruction each.
                        let f = _mm512_ternarylogic_epi32::<$imm>(b, c, d);
                        let km = _mm512_add_epi32(_mm512_set1_epi32(K[i] as i32), m[word(i)]);
                        let t = _mm512_add_epi32(_mm512_add_epi32(a, km), f);
                        let shift = _mm512_set1_epi32(SHIFTS[$round][i % 4] as i32);
                        let t = _mm512_rolv_epi32(t, shift);
                        (a, d, c) = (d, c, b);
                        b = _mm512_add_epi32(b, t);
                    }
                };
            }
            // Truth tables over (b, c, d) as bits 7..0 of the immediate: F = (b & c) | (!b & d),
            // G = (d & b) | (!d & c), H = b ^ c ^ d, I = c ^ (b | !d).
            round!(0, 0xca);
            round!(1, 0xe4);
            round!(2, 0x96);
            round!(3, 0x39);
            a = _mm512_add_epi32(a, a0);
            b = _mm512_add_epi32(b, b0);
            c = _mm512_add_epi32(c, c0);
            d = _mm512_add_epi32(d, d0);
        }
        let [sa, sb, sc, sd] = states;
        store(a, sa);
        store(b, sb);
        store(c, sc);
        store(d, sd);
    }
}

/// Eight lanes of 256-bit registers, for CPUs without AVX-512 (most AMD before Zen 4, many
/// terminals): no ternary logic and no rotate instruction, so F, G, H and I take two or three
/// instructions and a rotation three, yet eight chains side by side still beat one.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Job, K, SHIFTS, word};

    const LANES: usize = 8;
    /// As for AVX-512: one busy lane is faster on the scalar path.
    const MIN_BUSY: usize = 2;

    pub(super) fn run(jobs: &mut [Job<'_>]) {
        super::run_lanes::<LANES>(jobs, MIN_BUSY, |states, blocks, steps| {
            #[allow(unsafe_code)]
            // SAFETY: `run` is only called after `is_x86_feature_detected!("avx2")`.
            unsafe {
                compress_lanes(states, blocks, steps)
            }
        });
    }

    #[target_feature(enable = "avx2")]
    fn load(v: &[u32; LANES]) -> __m256i {
        #[allow(unsafe_code)]
        // SAFETY: `v` is 8 readable, initialised u32s (an unaligned load).
        unsafe {
            _mm256_loadu_si256(v.as_ptr().cast())
        }
    }

    #[target_feature(enable = "avx2")]
    fn store(v: __m256i, out: &mut [u32; LANES]) {
        #[allow(unsafe_code)]
        // SAFETY: `out` has room for 8 u32s (an unaligned store).
        unsafe {
            _mm256_storeu_si256(out.as_mut_ptr().cast(), v)
        }
    }

    // MD5's round functions: F = (b & c) | (!b & d), G = (d & b) | (!d & c), H = b ^ c ^ d,
    // I = c ^ (b | !d).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn f(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
        _mm256_or_si256(_mm256_and_si256(b, c), _mm256_andnot_si256(b, d))
    }
    #[target_feature(enable = "avx2")]
    #[inline]
    fn g(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
        _mm256_or_si256(_mm256_and_si256(d, b), _mm256_andnot_si256(d, c))
    }
    #[target_feature(enable = "avx2")]
    #[inline]
    fn h(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
        _mm256_xor_si256(_mm256_xor_si256(b, c), d)
    }
    #[target_feature(enable = "avx2")]
    #[inline]
    fn i(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
        _mm256_xor_si256(
            c,
            _mm256_or_si256(b, _mm256_xor_si256(d, _mm256_set1_epi32(-1))),
        )
    }

    /// `steps` blocks of each busy lane's job (idle lanes hash zeros that nobody reads).
    #[target_feature(enable = "avx2")]
    fn compress_lanes(
        states: &mut [[u32; LANES]; 4],
        jobs: &[Option<&Job<'_>>; LANES],
        steps: usize,
    ) {
        let (mut a, mut b, mut c, mut d) = (
            load(&states[0]),
            load(&states[1]),
            load(&states[2]),
            load(&states[3]),
        );
        let mut words = [[0u32; LANES]; 16];
        let mut m = [_mm256_setzero_si256(); 16];
        for step in 0..steps {
            super::gather(jobs, step, &mut words);
            for (v, w) in m.iter_mut().zip(&words) {
                *v = load(w);
            }
            let (a0, b0, c0, d0) = (a, b, c, d);
            macro_rules! round {
                ($round:expr, $f:ident) => {
                    for n in $round * 16..$round * 16 + 16 {
                        let f = $f(b, c, d);
                        let km = _mm256_add_epi32(_mm256_set1_epi32(K[n] as i32), m[word(n)]);
                        let t = _mm256_add_epi32(_mm256_add_epi32(a, km), f);
                        let s = SHIFTS[$round][n % 4] as i32;
                        let t = _mm256_or_si256(
                            _mm256_sllv_epi32(t, _mm256_set1_epi32(s)),
                            _mm256_srlv_epi32(t, _mm256_set1_epi32(32 - s)),
                        );
                        (a, d, c) = (d, c, b);
                        b = _mm256_add_epi32(b, t);
                    }
                };
            }
            round!(0, f);
            round!(1, g);
            round!(2, h);
            round!(3, i);
            a = _mm256_add_epi32(a, a0);
            b = _mm256_add_epi32(b, b0);
            c = _mm256_add_epi32(c, c0);
            d = _mm256_add_epi32(d, d0);
        }
        let [sa, sb, sc, sd] = states;
        store(a, sa);
        store(b, sb);
        store(c, sc);
        store(d, sd);
    }
}

#[cfg(test)]
mod tests {
    use md5::Digest as _;
    use proptest::prelude::*;

    use super::*;

    fn reference(data: &[u8]) -> [u8; 16] {
        md5::Md5::digest(data).into()
    }

    #[test]
    fn known_answers() {
        assert_eq!(md5(b""), reference(b""));
        assert_eq!(md5(b"abc"), reference(b"abc"));
        // Lengths around the padding boundaries (55, 56, 63, 64 bytes) and many lanes at once.
        let data: Vec<u8> = (0..6000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let lengths = [
            0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 4999,
        ];
        let inputs: Vec<&[u8]> = (0..40)
            .map(|i| &data[..lengths[i % lengths.len()] + i])
            .collect();
        let expected: Vec<[u8; 16]> = inputs.iter().map(|d| reference(d)).collect();
        assert_eq!(md5_many(&inputs), expected);
    }

    proptest! {
        #[test]
        fn many_equals_one_by_one(lens in proptest::collection::vec(0usize..3000, 0..40), seed: u8) {
            let data: Vec<u8> = (0..3000u32).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
            let inputs: Vec<&[u8]> = lens.iter().map(|&n| &data[..n]).collect();
            let expected: Vec<[u8; 16]> = inputs.iter().map(|d| reference(d)).collect();
            prop_assert_eq!(md5_many(&inputs), expected);
        }
    }
}
