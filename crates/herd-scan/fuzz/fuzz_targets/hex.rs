//! Fuzz target: the hex signature parser and the verifier. The first line of the input is a
//! signature, the rest the bytes to match; parse errors are fine, panics are not.
#![no_main]

use herd_scan::hex;
use herd_scan::verify::{self, Budget};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let Ok(sig) = std::str::from_utf8(&data[..split]) else {
        return;
    };
    let text = data.get(split + 1..).unwrap_or_default();
    let Ok(p) = hex::parse(sig) else { return };
    let mut budget = Budget::new(1 << 20);
    let _ = verify::matches_from(&p.elems, text, 0, text.len(), &mut budget);
    let anchor = p.anchor_bytes();
    let before = verify::reverse(&p.elems[..p.anchor.0]);
    if let Some(i) = text.windows(anchor.len()).position(|w| w == anchor) {
        let _ = verify::matches_around(
            &before,
            &p.elems[p.anchor.1..],
            text,
            i,
            i + anchor.len(),
            &mut budget,
        );
    }
});
