//! Fuzz target: the catalog and terminal parsers, and the planner on whatever they accept.
//! The input is split at the first NUL byte: catalog text before it, terminal text after.
#![no_main]

use herd_core::Timestamp;
use herd_planner::Planner;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (catalog_bytes, terminal_bytes) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b""[..]),
    };
    let (Ok(catalog_text), Ok(terminal_text)) = (std::str::from_utf8(catalog_bytes), std::str::from_utf8(terminal_bytes)) else {
        return;
    };
    let Ok(catalog) = herd_proto::catalog::parse_catalog("fuzz", catalog_text) else { return };
    let Ok(terminals) = herd_proto::terminal::parse_terminals("fuzz", terminal_text, &catalog) else { return };
    let mut planner = Planner::new(&catalog, Timestamp::from_unix_seconds(973_987_200));
    for terminal in terminals.iter().flatten() {
        let _ = serde_json::to_string(&planner.plan_doc(terminal));
    }
});
