//! Fuzz target: the archive walker (zip, tar, gzip detection, parsing, inflating and
//! recursion) under small limits, with one body signature so matching runs too.
#![no_main]

use herd_scan::{Database, Engine, Limits, MatchOptions, Scanner, Scratch};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut db = Database::new();
        let errors = db.load("f.ndb", b"Fuzz.Marker:0:*:6865726466757a7a\n");
        assert!(errors.is_empty());
        Engine::new(&db)
    })
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_depth: 8,
        max_files: 64,
        max_total: 8 << 20,
        max_member: 4 << 20,
        max_ratio: 100,
        ratio_floor: 1 << 16,
    };
    let scanner = Scanner {
        engine: engine(),
        limits,
        options: MatchOptions {
            all_matches: true,
            verify_budget: 1 << 20,
        },
    };
    let report = scanner.scan(data, &mut Scratch::default());
    for note in &report.notes {
        let _ = format!("{}: {}", note.path, note.kind);
    }
});
