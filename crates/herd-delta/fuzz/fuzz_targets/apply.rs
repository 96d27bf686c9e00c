//! Fuzz target: `herd_delta::apply` against a fixed base, in three shapes chosen by the first
//! byte, since a fuzzer cannot forge the SHA-256 a delta names its base by:
//! - 0: the rest is a whole delta (magic, version and header parsing);
//! - 1: the rest is the patch, after a valid header naming the base and the expected result
//!   (zstd's decoder with the base as its prefix, and the length and hash checks);
//! - otherwise: the rest is a list of mutations (offset: 2 bytes, XOR: 1 byte) of a valid delta,
//!   and a last odd byte truncates it.
//!
//! Whatever the input, `apply` must return, without panicking, either an error or exactly the
//! result the header names (the new content, for a header it did not corrupt).
#![no_main]

use std::sync::OnceLock;

use herd_delta::{HEADER_LEN, apply, diff};
use libfuzzer_sys::fuzz_target;

/// The output limit: a little above the new content, so a patch producing more is refused.
const MAX_OUTPUT: u64 = 1 << 16;

struct Fixture {
    old: Vec<u8>,
    new: Vec<u8>,
    delta: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let line = |i: u64| {
            format!(
                "{:032x}:{}:Herd.Fuzz.Hash-{i}\n",
                i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                i * 7
            )
        };
        let old: String = (0..400).map(line).collect();
        let new: String = (0..400)
            .filter(|i| i % 50 != 3)
            .chain(400..404)
            .map(line)
            .collect();
        let (old, new) = (old.into_bytes(), new.into_bytes());
        let delta = diff(&old, &new);
        Fixture { old, new, delta }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let fixture = fixture();
    let delta = match mode {
        0 => rest.to_vec(),
        1 => [&fixture.delta[..HEADER_LEN], rest].concat(),
        _ => {
            let mut delta = fixture.delta.clone();
            let mut mutations = rest.chunks_exact(3);
            for m in &mut mutations {
                let at = usize::from(u16::from_le_bytes([m[0], m[1]])) % delta.len();
                delta[at] ^= m[2];
            }
            if let [cut, ..] = mutations.remainder() {
                delta.truncate(usize::from(*cut) * delta.len() / 256);
            }
            delta
        }
    };
    if let Ok(result) = apply(&fixture.old, &delta, MAX_OUTPUT) {
        // Mode 0 can only succeed with a delta whose header names the base, so its result is
        // checked against what that header declares; the others against the new content.
        let declared = herd_delta::header(&delta)
            .expect("an applied delta has a header")
            .result;
        assert_eq!(herd_delta::Content::of(&result), declared);
        if mode != 0 {
            assert!(result == fixture.new || declared != herd_delta::Content::of(&fixture.new));
        }
    }
});
