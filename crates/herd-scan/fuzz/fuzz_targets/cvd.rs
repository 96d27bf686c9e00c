//! Fuzz target: ClamAV container reading — the 512-byte header parser, the signature decoder,
//! and whole containers (tar, `.info`) under the test key, so that mutations get past the
//! signature checks only where the fuzzer finds its way. Refusals are fine, panics are not.
#![no_main]

use herd_scan::cvd::{self, build::PrivateKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cvd::parse_header(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = cvd::parse_header_text(text);
        let key = PrivateKey::test_key();
        let _ = cvd::verify_md5_signature("00112233445566778899aabbccddeeff", text, &key.public);
        let _ = cvd::verify_pss_signature(&[0; 32], text, &key.public);
    }
    let keys = PrivateKey::test_key().keys();
    for name in ["fuzz.cvd", "fuzz.cld"] {
        let _ = cvd::read_container(name, data, &keys, &mut |_, _| {});
    }
});
