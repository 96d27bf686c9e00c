//! Fuzz target: `md5x::md5_many` (MD5 one buffer per SIMD lane) against the md-5 crate, on
//! buffers cut from the input at lengths the input chooses, so lane refills, the scalar
//! finish and the padding boundaries (55, 56, 63, 64 bytes) are all reached.
#![no_main]

use herd_scan::md5x::{md5, md5_many};
use libfuzzer_sys::fuzz_target;
use md5::Digest as _;

fuzz_target!(|data: &[u8]| {
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let mut inputs = Vec::new();
    let mut at = 0usize;
    for i in 0..usize::from(count % 48) {
        let len = rest.get(i).map_or(0, |&b| usize::from(b) * 3) % (rest.len() + 1);
        inputs.push(&rest[at.min(rest.len() - len.min(rest.len()))..][..len]);
        at += 7;
    }
    let expected: Vec<[u8; 16]> = inputs.iter().map(|d| md5::Md5::digest(d).into()).collect();
    assert_eq!(md5_many(&inputs), expected);
    for (d, e) in inputs.iter().zip(&expected) {
        assert_eq!(&md5(d), e);
    }
});
