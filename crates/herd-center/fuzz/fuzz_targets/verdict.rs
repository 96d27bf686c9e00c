//! Fuzz target: a verdict document (`POST /v1/verdicts`) as an analyst or operator sends it,
//! checked by `check_verdict` before anything is written: refused or accepted without
//! panicking, and an accepted malicious verdict always has a size and a valid SHA-256.
#![no_main]

use herd_center::herd_set::{MALICIOUS, check_sha256, check_verdict};
use herd_proto::api::VerdictDoc;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<VerdictDoc>(data) else {
        return;
    };
    if check_verdict(&doc).is_ok() {
        assert!(check_sha256(&doc.sha256, "fuzz").is_ok());
        if doc.verdict == MALICIOUS {
            assert!(doc.size.is_some_and(|size| size > 0));
        }
    }
});
