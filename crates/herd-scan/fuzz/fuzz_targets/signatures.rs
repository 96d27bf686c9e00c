//! Fuzz target: any bytes as each signature database type; whatever loads is compiled and run
//! over the same bytes. Must never panic, whatever the input.
#![no_main]

use herd_scan::{Database, Engine, MatchOptions, Scratch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for name in ["f.hdb", "f.hsb", "f.ndb", "f.ldb"] {
        let mut db = Database::new();
        let errors = db.load(name, data);
        for e in &errors {
            let _ = e.to_string();
        }
        if !db.is_empty() {
            let engine = Engine::new(&db);
            let options = MatchOptions {
                all_matches: true,
                verify_budget: 1 << 20,
            };
            let _ = engine.match_bytes(data, &mut Scratch::default(), options);
        }
    }
});
