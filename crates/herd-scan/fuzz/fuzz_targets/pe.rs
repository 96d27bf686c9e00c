//! Fuzz target: the PE header reader never panics, and every layout it returns is usable —
//! the entry point and the sections it reports lie where offsets can be computed from them.
#![no_main]

use herd_scan::pe;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Raw bytes, and the same bytes behind a valid header so the section table is reached.
    let mut framed = pe::build(0x1010, &[(0x200, 0x200, 0x1000)], 0x200);
    let table = 0x84 + 20 + 0xe0;
    let n = data.len().min(framed.len() - table);
    framed[table..table + n].copy_from_slice(&data[..n]);
    framed.extend_from_slice(data);
    for d in [data, &framed[..]] {
        if let Some(layout) = pe::parse(d) {
            assert!(layout.sections.len() <= pe::MAX_SECTIONS);
            for s in &layout.sections {
                assert!(s.raw_size == 0 || s.raw + s.raw_size <= d.len() as u64);
            }
        }
    }
});
