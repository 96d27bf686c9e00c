//! Fuzz target: the hash signature index reader. Any bytes either open as a table or are
//! refused; an opened table answers lookups, sizes and texts without panicking. Most inputs
//! fail the checksums, so the target also opens them with the checksum step skipped (the
//! structure checks alone must hold the reader to its bounds).
#![no_main]

use herd_scan::db::HashKind;
use herd_scan::hashtable::{HashTable, PayloadCheck, Storage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for check in [PayloadCheck::Verify, PayloadCheck::AlreadyVerified] {
        let Ok(table) = HashTable::from_storage(Storage::Owned(data.to_vec()), check) else {
            continue;
        };
        let mut out = Vec::new();
        for kind in [HashKind::Md5, HashKind::Sha1, HashKind::Sha256] {
            let digest = data.get(..kind.digest_len()).unwrap_or(&[0; 32][..kind.digest_len()]);
            let _ = table.wants(kind, data.len() as u64);
            table.lookup(kind, digest, 68, &mut out);
        }
        let _ = table.texts();
        let _ = table.notes().count();
    }
});
