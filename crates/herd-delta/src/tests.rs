//! Tests of the delta format: round trips, each refusal with its message, hostile patches that
//! claim huge sizes, and random corruptions of valid deltas.

use proptest::prelude::*;

use super::*;

/// A small deterministic generator (xorshift64*), so the definitions below are the same on
/// every run without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// `.hdb` lines shaped like ClamAV's: MD5, size, name.
fn hdb_line(rng: &mut Rng, i: usize) -> String {
    format!(
        "{:016x}{:016x}:{}:Herd.Test.Hash-{i}\n",
        rng.next(),
        rng.next(),
        rng.next() % 5_000_000
    )
}

/// A definitions file of `count` lines, and the same with `changed` lines removed and as many
/// added, half of them in the middle and half at the end (what a real update does).
fn definitions(count: usize, changed: usize) -> (Vec<u8>, Vec<u8>) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let old: Vec<String> = (0..count).map(|i| hdb_line(&mut rng, i)).collect();
    let mut new = old.clone();
    for k in 0..changed {
        let at = (rng.next() as usize) % new.len();
        new.remove(at);
        let line = hdb_line(&mut rng, count + k);
        if k % 2 == 0 {
            let at = (rng.next() as usize) % new.len();
            new.insert(at, line);
        } else {
            new.push(line);
        }
    }
    (old.concat().into_bytes(), new.concat().into_bytes())
}

fn with_header_field(delta: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut changed = delta.to_vec();
    changed[at..at + bytes.len()].copy_from_slice(bytes);
    changed
}

/// Where the header's fields start.
const BASE_SHA256: usize = MAGIC.len() + VERSION.len();
const RESULT_SHA256: usize = BASE_SHA256 + 40;
const RESULT_LEN: usize = RESULT_SHA256 + 32;

#[test]
fn a_delta_turns_the_old_content_into_the_new_and_is_small_for_a_small_change() {
    let (old, new) = definitions(20_000, 100);
    let delta = diff(&old, &new);
    assert_eq!(apply(&old, &delta, new.len() as u64).unwrap(), new);
    // 0.5 % of the lines changed: the delta must be far below the new content (the 2 % bar is
    // measured against the package by `cargo xtask bench delta`).
    assert!(
        delta.len() * 50 < new.len(),
        "delta of {} bytes for {} bytes of content",
        delta.len(),
        new.len()
    );
    let header = header(&delta).unwrap();
    assert_eq!(header.base, Content::of(&old));
    assert_eq!(header.result, Content::of(&new));
}

#[test]
fn empty_and_identical_contents_round_trip() {
    let (old, _) = definitions(500, 0);
    for (a, b) in [
        (&b""[..], &old[..]),
        (&old[..], &b""[..]),
        (&b""[..], &b""[..]),
        (&old[..], &old[..]),
    ] {
        let delta = diff(a, b);
        assert_eq!(apply(a, &delta, b.len() as u64).unwrap(), b);
    }
    // An unchanged release costs a header and a few bytes, whether the same buffer is passed
    // twice or a copy; overlapping slices cost the bytes one has and the other lacks.
    let copy = old.clone();
    for (a, b, extra) in [
        (&old[..], &old[..], 0),
        (&old[..], &copy[..], 0),
        (&old[100..], &old[..old.len() - 100], 100),
    ] {
        let delta = diff(a, b);
        assert!(
            delta.len() < HEADER_LEN + 64 + extra,
            "{} bytes",
            delta.len()
        );
        assert_eq!(apply(a, &delta, b.len() as u64).unwrap(), b);
    }
}

#[test]
fn a_delta_without_the_magic_is_not_a_delta() {
    let (old, new) = definitions(100, 1);
    let delta = diff(&old, &new);
    for bad in [&b""[..], b"herd-delt", b"HERD-DELTA/1\n", &new[..]] {
        assert_eq!(apply(&old, bad, u64::MAX), Err(DeltaError::NotADelta));
    }
    let mut gzip_instead = delta.clone();
    gzip_instead[..2].copy_from_slice(&[0x1f, 0x8b]);
    let err = apply(&old, &gzip_instead, u64::MAX).unwrap_err();
    assert_eq!(
        err.to_string(),
        "not a herd delta: it does not start with \"herd-delta/\""
    );
}

#[test]
fn another_version_is_named_and_refused() {
    let (old, new) = definitions(100, 1);
    let delta = diff(&old, &new);
    let v2 = with_header_field(&delta, MAGIC.len(), b"2\n");
    let err = apply(&old, &v2, u64::MAX).unwrap_err();
    assert_eq!(
        err,
        DeltaError::UnsupportedVersion {
            version: "2".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "a herd delta of version \"2\"; this program reads version 1"
    );
    // A version line that never ends is cut short in the message.
    let endless = [MAGIC, &[b'9'; 100]].concat();
    assert_eq!(
        apply(&old, &endless, u64::MAX),
        Err(DeltaError::UnsupportedVersion {
            version: "9".repeat(16)
        })
    );
}

#[test]
fn a_truncated_header_is_refused_with_its_length() {
    let (old, new) = definitions(100, 1);
    let delta = diff(&old, &new);
    for len in [
        MAGIC.len(),
        MAGIC.len() + 1,
        MAGIC.len() + VERSION.len(),
        50,
        HEADER_LEN - 1,
    ] {
        let err = apply(&old, &delta[..len], u64::MAX).unwrap_err();
        assert_eq!(err, DeltaError::TruncatedHeader { len });
        assert!(err.to_string().contains(&format!("{len} bytes, shorter")));
    }
}

#[test]
fn a_delta_against_another_release_is_refused_before_decoding() {
    let (old, new) = definitions(1_000, 10);
    let delta = diff(&old, &new);
    // Another release entirely (another length) and the same length with one byte changed.
    let (other, _) = definitions(900, 0);
    let mut one_byte = old.clone();
    one_byte[500] ^= 1;
    for base in [&other[..], &one_byte[..], &new[..], &b""[..]] {
        let err = apply(base, &delta, u64::MAX).unwrap_err();
        assert_eq!(
            err,
            DeltaError::WrongBase {
                expected: Content::of(&old),
                actual: Content::of(base),
            }
        );
        let message = err.to_string();
        assert!(
            message.starts_with("this delta is against another release: it applies to ")
                && message.contains(&hex(&Content::of(&old).sha256))
                && message.contains(&hex(&Content::of(base).sha256)),
            "{message}"
        );
    }
}

#[test]
fn a_result_over_the_limit_is_refused_before_anything_is_allocated() {
    let (old, new) = definitions(1_000, 10);
    let delta = diff(&old, &new);
    let len = new.len() as u64;
    assert_eq!(apply(&old, &delta, len).unwrap(), new);
    assert_eq!(
        apply(&old, &delta, len - 1),
        Err(DeltaError::ResultTooLarge {
            declared: len,
            max_output: len - 1
        })
    );
    // Endless data: a declared size of 2^64 - 1 is refused by any real limit, and by the
    // allocator (an error, not an abort) when the caller sets none.
    let endless = with_header_field(&delta, RESULT_LEN, &u64::MAX.to_le_bytes());
    let err = apply(&old, &endless, 1 << 30).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the delta declares a result of {} bytes, over the limit of {} bytes",
            u64::MAX,
            1u64 << 30
        )
    );
    assert!(matches!(
        apply(&old, &endless, u64::MAX),
        Err(DeltaError::OutOfMemory { .. })
    ));
}

#[test]
fn a_truncated_or_corrupt_patch_is_refused() {
    let (old, new) = definitions(1_000, 10);
    let delta = diff(&old, &new);
    let max = new.len() as u64;
    // No patch at all produces nothing.
    assert_eq!(
        apply(&old, &delta[..HEADER_LEN], max),
        Err(DeltaError::ResultLength {
            declared: max,
            produced: 0
        })
    );
    for cut in [HEADER_LEN + 3, delta.len() / 2, delta.len() - 1] {
        let err = apply(&old, &delta[..cut], max).unwrap_err();
        assert!(
            matches!(err, DeltaError::CorruptPatch { .. }),
            "cut at {cut}: {err}"
        );
        assert!(err.to_string().starts_with(&format!(
            "the patch (at byte {HEADER_LEN} of the delta) is corrupt or truncated: "
        )));
    }
    let mut not_zstd = delta.clone();
    not_zstd[HEADER_LEN] ^= 0xff;
    assert!(matches!(
        apply(&old, &not_zstd, max),
        Err(DeltaError::CorruptPatch { .. })
    ));
    // Data after the patch is not ignored.
    let trailing = [&delta[..], b"more"].concat();
    assert!(matches!(
        apply(&old, &trailing, max),
        Err(DeltaError::CorruptPatch { .. })
    ));
}

#[test]
fn a_result_of_another_length_or_hash_than_declared_is_refused() {
    let (old, new) = definitions(1_000, 10);
    let delta = diff(&old, &new);
    let len = new.len() as u64;
    // Declared shorter: the buffer of declared + 1 bytes shows the patch makes more.
    let shorter = with_header_field(&delta, RESULT_LEN, &(len - 1).to_le_bytes());
    assert_eq!(
        apply(&old, &shorter, u64::MAX),
        Err(DeltaError::ResultLength {
            declared: len - 1,
            produced: len
        })
    );
    // Declared much shorter: zstd stops at the end of the buffer.
    let much_shorter = with_header_field(&delta, RESULT_LEN, &(len / 2).to_le_bytes());
    assert!(matches!(
        apply(&old, &much_shorter, u64::MAX),
        Err(DeltaError::CorruptPatch { .. })
    ));
    // Declared longer: the patch ends early.
    let longer = with_header_field(&delta, RESULT_LEN, &(len + 7).to_le_bytes());
    let err = apply(&old, &longer, u64::MAX).unwrap_err();
    assert_eq!(
        err,
        DeltaError::ResultLength {
            declared: len + 7,
            produced: len
        }
    );
    assert_eq!(
        err.to_string(),
        format!(
            "the patch produced {len} bytes, not the {} the delta declares",
            len + 7
        )
    );
    let other_hash = with_header_field(&delta, RESULT_SHA256, &[0xab; 32]);
    let err = apply(&old, &other_hash, u64::MAX).unwrap_err();
    assert_eq!(
        err,
        DeltaError::ResultHash {
            declared: "ab".repeat(32),
            produced: hex(&Content::of(&new).sha256),
        }
    );
    assert!(
        err.to_string()
            .starts_with("the patch produced content with SHA-256 ")
    );
}

/// A zstd frame by hand: a window descriptor claiming zstd's largest window (2 GiB), a content
/// size of `content_size`, then one raw block of `block`.
fn hostile_frame(content_size: u64, block: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd];
    // Frame header descriptor: an 8-byte content size, a window descriptor, no checksum, no
    // dictionary id.
    frame.push(0b1100_0000);
    // Window log 10 + 21 = 31.
    frame.push(21 << 3);
    frame.extend_from_slice(&content_size.to_le_bytes());
    // Block header: last block, raw, its size.
    let block_header = ((block.len() as u32) << 3) | 1;
    frame.extend_from_slice(&block_header.to_le_bytes()[..3]);
    frame.extend_from_slice(block);
    frame
}

fn delta_with_patch(old: &[u8], result: &[u8], patch: &[u8]) -> Vec<u8> {
    let mut delta = Vec::new();
    write_header(
        &Header {
            base: Content::of(old),
            result: Content::of(result),
        },
        &mut delta,
    );
    delta.extend_from_slice(patch);
    delta
}

#[test]
fn a_hand_made_frame_decodes_so_the_hostile_ones_below_test_the_bounds_not_the_syntax() {
    let old = b"the old release";
    let result = b"abcd";
    let delta = delta_with_patch(old, result, &hostile_frame(4, result));
    assert_eq!(apply(old, &delta, 4).unwrap(), result);
}

#[test]
fn a_frame_claiming_a_huge_window_and_content_allocates_nothing_for_them() {
    let old = b"the old release";
    let result = b"abcd";
    // 1 TiB of content in a 2 GiB window, against a declared result of 4 bytes.
    let patch = hostile_frame(1 << 40, result);
    let delta = delta_with_patch(old, result, &patch);
    assert!(matches!(
        apply(old, &delta, 1 << 20),
        Err(DeltaError::CorruptPatch { .. })
    ));
    // The decoding context stays at its constant size (tables and a small workspace, about
    // 120 KB): the one-shot decoder allocated no window for the 2 GiB the frame claimed.
    let mut dctx = DCtx::create();
    let err = decompress(&mut dctx, old, &patch, 4).unwrap_err();
    assert!(matches!(err, DeltaError::CorruptPatch { .. }), "{err}");
    let size = dctx.sizeof();
    assert!(size < 256 << 10, "a decoding context of {size} bytes");
    // A raw block larger than the declared result (and than the frame's content size) stops
    // at the buffer of declared + 1 bytes.
    let big_block = vec![7u8; 100_000];
    let patch = hostile_frame(100_000, &big_block);
    let delta = delta_with_patch(old, result, &patch);
    assert!(matches!(
        apply(old, &delta, 1 << 20),
        Err(DeltaError::CorruptPatch { .. })
    ));
}

/// What a corruption does to a delta.
#[derive(Clone, Debug)]
enum Corruption {
    /// XOR a byte (never with 0).
    Flip {
        at: usize,
        with: u8,
    },
    Truncate {
        to: usize,
    },
    Insert {
        at: usize,
        byte: u8,
    },
    Remove {
        at: usize,
    },
}

fn corruption() -> impl Strategy<Value = Corruption> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, with)| Corruption::Flip { at, with }),
        any::<usize>().prop_map(|to| Corruption::Truncate { to }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Corruption::Insert { at, byte }),
        any::<usize>().prop_map(|at| Corruption::Remove { at }),
    ]
}

fn corrupt(delta: &mut Vec<u8>, corruption: &Corruption) {
    let len = delta.len();
    match *corruption {
        Corruption::Flip { at, with } => delta[at % len] ^= with,
        Corruption::Truncate { to } => delta.truncate(to % len),
        Corruption::Insert { at, byte } => delta.insert(at % (len + 1), byte),
        Corruption::Remove { at } => {
            delta.remove(at % len);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random corruptions of a valid delta never panic, and whatever `apply` returns is either
    /// an error or exactly the new content.
    #[test]
    fn corruptions_never_panic_nor_yield_a_wrong_result(
        corruptions in proptest::collection::vec(corruption(), 1..4),
        // Corruptions in the patch are the interesting ones; bias half the cases there.
        in_patch in any::<bool>(),
    ) {
        let (old, new) = definitions(300, 5);
        let mut delta = diff(&old, &new);
        for c in &corruptions {
            if delta.is_empty() {
                break;
            }
            let mut c = c.clone();
            if in_patch
                && delta.len() > HEADER_LEN
                && let Corruption::Flip { at, .. } = &mut c
            {
                *at = HEADER_LEN + *at % (delta.len() - HEADER_LEN);
            }
            corrupt(&mut delta, &c);
        }
        if let Ok(result) = apply(&old, &delta, 1 << 20) {
            prop_assert_eq!(result, new);
        }
    }

    /// Deltas between arbitrary contents round-trip.
    #[test]
    fn arbitrary_contents_round_trip(
        old in proptest::collection::vec(any::<u8>(), 0..2_000),
        new in proptest::collection::vec(any::<u8>(), 0..2_000),
    ) {
        let delta = diff(&old, &new);
        prop_assert_eq!(apply(&old, &delta, new.len() as u64).unwrap(), new);
    }
}
