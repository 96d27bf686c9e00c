//! Fuzz target: the archive walker (zip, tar, gzip detection, parsing, inflating and
//! recursion) under small limits, with one body signature so matching runs too. The input is
//! also scanned behind an executable's first bytes and behind a gzip stream, the two places a
//! zip is looked for other than offset 0 (its end record searched from the end, and what
//! follows a gzip's last member).
#![no_main]

use herd_scan::archive::build::gzip;
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
    let mut scratch = Scratch::default();
    let report = scanner.scan(data, &mut scratch);
    for note in &report.notes {
        let _ = format!("{}: {}", note.path, note.kind);
    }
    let _ = report.verdict();
    let behind_an_executable = [&b"\x7fELF\x02\x01\x01\0"[..], data].concat();
    let _ = scanner.scan(&behind_an_executable, &mut scratch).verdict();
    let behind_a_gzip = [&gzip(b"first member")[..], data].concat();
    let _ = scanner.scan(&behind_a_gzip, &mut scratch).verdict();
});
