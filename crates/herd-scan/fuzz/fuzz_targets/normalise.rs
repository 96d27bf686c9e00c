//! Fuzz target: text and HTML normalisation never panic, and their outputs keep the
//! invariants matching relies on (text: lower-case, no control bytes, no double spaces).
#![no_main]

use herd_scan::normalise;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = normalise::text(data);
    assert!(text.len() <= data.len());
    assert!(!text.iter().any(|b| b.is_ascii_uppercase() || *b >= 0x80 || (*b < 0x20)));
    assert!(!text.windows(2).any(|w| w == b"  "));
    let html = normalise::html(data);
    assert!(!html.nocomment.iter().any(u8::is_ascii_uppercase) || data.iter().any(|&b| b == b'&'));
});
