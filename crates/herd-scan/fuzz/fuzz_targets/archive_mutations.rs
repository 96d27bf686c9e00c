//! Fuzz target: a member hidden by editing one container header byte. A zip, tar or gzip holds
//! a marker deflated (so it is not visible in the container's own bytes) after fuzz-chosen
//! bytes; one byte of its headers is set to a fuzz-chosen value; the scan must then find the
//! marker, flag the headers, or say it cannot decide — never call the container clean. The
//! headers' magic bytes are left alone: without them no unpacker opens the file either.
#![no_main]

use herd_scan::archive::build::{gzip, tar, zip};
use herd_scan::{Database, Engine, Limits, MatchOptions, Scanner, Scratch, Verdict};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const MARKER: &[u8] = b"herdfuzz";

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut db = Database::new();
        let errors = db.load("f.ndb", b"Fuzz.Marker:0:*:6865726466757a7a\n");
        assert!(errors.is_empty());
        Engine::new(&db)
    })
}

fuzz_target!(|input: &[u8]| {
    let [kind, at_low, at_high, value, prefix @ ..] = input else {
        return;
    };
    // Padding after the marker so deflate really compresses it away.
    let payload = [prefix, MARKER, &[b' '; 512][..]].concat();
    let (mut data, ranges) = match kind % 3 {
        0 => {
            let z = zip(&[("m", &payload, true)]);
            let cd = z.windows(4).position(|w| w == b"PK\x01\x02").unwrap_or(z.len());
            let ranges = vec![4..31, cd + 4..z.len()];
            (z, ranges)
        }
        1 => (tar("m", &gzip(&payload)), vec![0..257, 263..512]),
        _ => {
            let g = gzip(&payload);
            let len = g.len();
            (g, vec![3..10, len - 8..len])
        }
    };
    let positions: Vec<usize> = ranges.into_iter().flatten().collect();
    let at = positions[usize::from(u16::from_le_bytes([*at_low, *at_high])) % positions.len()];
    data[at] = *value;
    let scanner = Scanner {
        engine: engine(),
        limits: Limits::default(),
        options: MatchOptions::default(),
    };
    let verdict = scanner.scan(&data, &mut Scratch::default()).verdict();
    assert_ne!(verdict, Verdict::Clean, "byte {at} set to {value:#04x} hides the member");
});
