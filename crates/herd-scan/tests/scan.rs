//! Engine-level tests: signatures loaded from text, buffers scanned through `Scanner`, archives
//! and their limits, and the prefilters cross-checked against direct verification.

use herd_scan::archive::build::{gzip, tar, zip};
use herd_scan::scan::BOMB_NAME;
use herd_scan::{
    Database, EICAR, Engine, EngineOptions, Limits, MatchOptions, Report, Scanner, Scratch, Verdict,
};
use proptest::prelude::*;
use std::io::Read as _;

#[path = "scan/evasion.rs"]
mod evasion;

const EICAR_HEX: &str = "58354f2150254041505b345c505a58353428505e2937434329377d2445494341522d5354414e444152442d414e544956495255532d544553542d46494c452124482b482a";

fn engine(files: &[(&str, &str)]) -> Engine {
    let mut db = Database::new();
    for (name, text) in files {
        let errors = db.load(name, text.as_bytes());
        assert!(errors.is_empty(), "{errors:?}");
    }
    Engine::new(&db)
}

fn scan_with(engine: &Engine, limits: Limits, all_matches: bool, data: &[u8]) -> Report {
    let scanner = Scanner {
        engine,
        limits,
        options: MatchOptions {
            all_matches,
            ..MatchOptions::default()
        },
    };
    scanner.scan(data, &mut Scratch::default())
}

/// The detections as `name@member//member` strings.
fn found(engine: &Engine, data: &[u8]) -> Vec<String> {
    let report = scan_with(engine, Limits::default(), true, data);
    assert_eq!(report.error, None);
    report
        .detections
        .iter()
        .map(|d| format!("{}@{}", d.name, d.path))
        .collect()
}

#[test]
fn eicar_by_every_signature_kind() {
    let md5 = "44d88612fea8a8f36de82e1278abb02f";
    let sha = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";
    let e = engine(&[
        ("e.hdb", &format!("{md5}:68:Eicar.Hdb\n")),
        ("e.hsb", &format!("{sha}:*:Eicar.Hsb:73\n")),
        ("e.ndb", &format!("Eicar.Ndb:0:0:{EICAR_HEX}\n")),
        (
            "e.ldb",
            "Eicar.Ldb;Engine:51-255,Target:0;0&1;45494341522d5354414e44415244;EOF-10:46494c452124482b482a\n",
        ),
    ]);
    assert_eq!(
        found(&e, EICAR),
        ["Eicar.Hdb@", "Eicar.Hsb@", "Eicar.Ndb@", "Eicar.Ldb@"]
    );
    // The first match only, hash signatures first, as clamscan without --allmatch.
    let first = scan_with(&e, Limits::default(), false, EICAR);
    assert_eq!(first.detections.len(), 1);
    assert_eq!(&*first.detections[0].name, "Eicar.Hdb");
    // One byte more: hashes and the offset-0 signature still see the start, EOF-10 does not.
    let mut longer = EICAR.to_vec();
    longer.push(b'\n');
    assert_eq!(found(&e, &longer), ["Eicar.Ndb@"]);
    assert_eq!(found(&e, b"clean"), Vec::<String>::new());
}

#[test]
fn hashes_of_streams_too_large_to_hold() {
    let md5 = "44d88612fea8a8f36de82e1278abb02f";
    let e = engine(&[("e.hdb", &format!("{md5}:68:Eicar.Hdb\n"))]);
    let found = e.match_hashes_stream(68, &mut &EICAR[..]).unwrap();
    assert_eq!(
        found.iter().map(|n| &**n).collect::<Vec<_>>(),
        ["Eicar.Hdb"]
    );
    // A size no signature has is not even read.
    let mut never = std::io::repeat(0).take(1 << 40);
    assert!(
        e.match_hashes_stream(1 << 40, &mut never)
            .unwrap()
            .is_empty()
    );
    // A stream shorter than announced is judged by what was read.
    assert!(
        e.match_hashes_stream(68, &mut &EICAR[..60])
            .unwrap()
            .is_empty()
    );
}

#[test]
fn logical_expressions_and_file_size() {
    let e = engine(&[(
        "l.ldb",
        "L.And;Target:0;0&1;6f6e652d6f6e65;74776f2d74776f\n\
         L.Or;Target:0;(0|1);7468726565213321;666f75722d666f7572\n\
         L.Size;Target:0,FileSize:0-20;0;73697a652d73697a65\n",
    )]);
    assert_eq!(found(&e, b"one-one two-two"), ["L.And@"]);
    assert_eq!(found(&e, b"one-one"), Vec::<String>::new());
    assert_eq!(found(&e, b"four-four"), ["L.Or@"]);
    assert_eq!(found(&e, b"size-size"), ["L.Size@"]);
    assert_eq!(
        found(&e, b"size-size and more than twenty bytes"),
        Vec::<String>::new()
    );
}

/// EICAR followed by padding, so deflate really compresses it: a 68-byte member may be
/// stored verbatim inside a deflate stream and then match in the container's bytes too.
fn eicar_padded() -> Vec<u8> {
    let mut d = EICAR.to_vec();
    d.extend_from_slice(&[b' '; 2000]);
    d
}

fn eicar_engine() -> Engine {
    engine(&[("e.ndb", &format!("Eicar-Test-Signature:0:*:{EICAR_HEX}\n"))])
}

#[test]
fn inside_zip_tar_and_gzip() {
    let e = eicar_engine();
    let z = zip(&[
        ("clean.txt", b"nothing", false),
        ("sub/eicar.com", &eicar_padded(), true),
    ]);
    assert_eq!(found(&e, &z), ["Eicar-Test-Signature@sub/eicar.com"]);
    let stored = zip(&[("eicar.com", EICAR, false)]);
    // A stored member is also visible in the container's own bytes.
    assert_eq!(
        found(&e, &stored),
        ["Eicar-Test-Signature@", "Eicar-Test-Signature@eicar.com"]
    );
    let tgz = gzip(&tar("x/eicar.com", &eicar_padded()));
    // The tar is scanned as bytes too, like clamscan scans containers and their members.
    assert_eq!(
        found(&e, &tgz),
        [
            "Eicar-Test-Signature@(gzip)",
            "Eicar-Test-Signature@(gzip)//x/eicar.com"
        ]
    );
}

#[test]
fn archives_nested_100_deep_stop_at_the_depth_limit() {
    let e = eicar_engine();
    let mut data = gzip(&eicar_padded());
    for i in 0..100 {
        data = if i % 2 == 0 {
            zip(&[("z", &data, true)])
        } else {
            gzip(&data)
        };
    }
    let report = scan_with(&e, Limits::default(), true, &data);
    assert!(report.detections.is_empty());
    assert_eq!(report.notes.len(), 1);
    assert_eq!(report.notes[0].path.0.len(), 16);
    assert_eq!(
        report.notes[0].kind.to_string(),
        "archive nesting limit reached; deeper members not scanned"
    );
    // Within the limit the bottom is reached.
    let mut data = eicar_padded();
    for _ in 0..10 {
        data = zip(&[("z", &data, true)]);
    }
    assert_eq!(found(&e, &data).len(), 1);
}

#[test]
fn zip_bomb_is_reported_not_followed() {
    let e = eicar_engine();
    let zeros = vec![0u8; 64 << 20];
    let bomb = zip(&[("a", &zeros, true), ("b", &zeros, true)]);
    assert!(bomb.len() < 1 << 20);
    let started = std::time::Instant::now();
    assert_eq!(
        found(&e, &bomb),
        [format!("{BOMB_NAME}@a"), format!("{BOMB_NAME}@b")]
    );
    assert!(started.elapsed().as_secs() < 10);
    // A gzip bomb too, and a small file of zeros is not one.
    assert_eq!(found(&e, &gzip(&zeros)), [format!("{BOMB_NAME}@(gzip)")]);
    assert_eq!(found(&e, &gzip(&[0; 100_000])), Vec::<String>::new());
}

#[test]
fn count_and_size_limits_are_notes() {
    let e = eicar_engine();
    let members: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("m{i}"), vec![b'x'; 1000]))
        .collect();
    let refs: Vec<(&str, &[u8], bool)> = members
        .iter()
        .map(|(n, d)| (n.as_str(), &d[..], true))
        .collect();
    let z = zip(&refs);
    let limits = Limits {
        max_files: 5,
        ..Limits::default()
    };
    let report = scan_with(&e, limits, true, &z);
    assert_eq!(
        report
            .notes
            .iter()
            .map(|n| n.kind.to_string())
            .collect::<Vec<_>>(),
        ["archive member count limit reached; the rest not scanned"]
    );
    let limits = Limits {
        max_total: 2500,
        ..Limits::default()
    };
    let report = scan_with(&e, limits, true, &z);
    assert_eq!(
        report
            .notes
            .iter()
            .map(|n| format!("{}: {}", n.path, n.kind))
            .collect::<Vec<_>>(),
        ["m2: archive total size limit reached; the rest not scanned"]
    );
    let limits = Limits {
        max_member: 999,
        ..Limits::default()
    };
    let report = scan_with(&e, limits, true, &z);
    assert_eq!(report.notes.len(), 20);
    assert_eq!(
        report.notes[0].kind.to_string(),
        "archive member larger than the limit; not scanned"
    );
}

#[test]
fn pathological_verification_is_an_error_not_a_hang() {
    let e = engine(&[("p.ndb", "P:0:*:41414141*41414141{-20}42\n")]);
    let data = vec![b'A'; 1 << 20];
    let scanner = Scanner {
        engine: &e,
        limits: Limits::default(),
        options: MatchOptions {
            all_matches: true,
            verify_budget: 1 << 20,
        },
    };
    let report = scanner.scan(&data, &mut Scratch::default());
    assert!(report.error.is_some());
    assert_eq!(
        report.verdict(),
        Verdict::Undecidable(
            "signature verification exceeded its work budget (1048576 steps)".into()
        )
    );
}

/// On-access scanning allows or refuses on `Report::verdict`; a file that stops the scan at a
/// limit must not pass as clean, or an attacker pads the payload past the limit.
#[test]
fn limits_make_a_verdict_undecidable_never_clean() {
    let e = eicar_engine();
    let z = zip(&[
        ("a", &[b'x'; 1000][..], true),
        ("b", &[b'y'; 1000][..], true),
    ]);
    assert_eq!(
        scan_with(&e, Limits::default(), false, &z).verdict(),
        Verdict::Clean
    );
    let limits = Limits {
        max_files: 1,
        ..Limits::default()
    };
    assert_eq!(
        scan_with(&e, limits, false, &z).verdict(),
        Verdict::Undecidable("archive member count limit reached; the rest not scanned".into())
    );
    let limits = Limits {
        max_member: 999,
        ..Limits::default()
    };
    assert_eq!(
        scan_with(&e, limits, false, &z).verdict(),
        Verdict::Undecidable("a: archive member larger than the limit; not scanned".into())
    );
    // A detection decides, whatever was left unscanned.
    let z = zip(&[
        ("e", &eicar_padded()[..], true),
        ("b", &[b'y'; 4000][..], true),
    ]);
    let limits = Limits {
        max_member: 3000,
        ..Limits::default()
    };
    assert!(matches!(
        scan_with(&e, limits, true, &z).verdict(),
        Verdict::Infected(names) if names.len() == 1
    ));
}

/// Signatures built from a small alphabet so random texts hit them often.
fn sig_strategy() -> impl Strategy<Value = String> {
    let byte = prop::sample::select(vec!["41", "42", "43"]);
    let anchor_len = prop_oneof![2usize..4, 8usize..12, 16usize..20];
    let piece = prop_oneof![
        Just("??".to_owned()),
        Just("4?".to_owned()),
        Just("*".to_owned()),
        (0u32..3).prop_map(|n| format!("{{{n}}}")),
        (0u32..2, 1u32..3).prop_map(|(a, b)| format!("{{{a}-{}}}", a + b)),
        Just("(41|4242)".to_owned()),
        Just("!(41|42)".to_owned()),
        byte.clone().prop_map(str::to_owned),
    ];
    (
        anchor_len,
        prop::collection::vec(byte.clone(), 20),
        prop::collection::vec(piece, 0..4),
        any::<bool>(),
    )
        .prop_map(|(n, bytes, pieces, anchor_first)| {
            let anchor: String = bytes[..n].concat();
            let rest: String = pieces.concat();
            if anchor_first {
                format!("{anchor}{rest}4142")
            } else {
                format!("4142{rest}{anchor}")
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    /// The gram filter, Aho-Corasick and direct verification from every offset agree.
    #[test]
    fn prefilters_agree_with_direct_verification(sigs in prop::collection::vec(sig_strategy(), 1..6), text in prop::collection::vec(0x41u8..0x44, 0..300)) {
        let lines: String = sigs.iter().enumerate().map(|(i, s)| format!("S{i}:0:*:{s}\n")).collect();
        let mut db = Database::new();
        let errors = db.load("p.ndb", lines.as_bytes());
        prop_assert!(errors.is_empty(), "{:?}", errors);
        let options = MatchOptions { all_matches: true, ..MatchOptions::default() };
        let mut scratch = Scratch::default();
        let mut with_grams: Vec<String> = Engine::new(&db).match_bytes(&text, &mut scratch, options).unwrap().iter().map(|n| n.to_string()).collect();
        let mut with_ac: Vec<String> = Engine::with_options(&db, &EngineOptions { gram_filter: false }).match_bytes(&text, &mut scratch, options).unwrap().iter().map(|n| n.to_string()).collect();
        let mut direct = Vec::new();
        for (i, sig) in db.bodies.iter().enumerate() {
            let mut budget = herd_scan::verify::Budget::new(1 << 30);
            if herd_scan::verify::matches_from(&sig.pattern.elems, &text, 0, text.len(), &mut budget).unwrap() {
                direct.push(format!("S{i}"));
            }
        }
        with_grams.sort();
        with_ac.sort();
        prop_assert_eq!(&with_grams, &direct);
        prop_assert_eq!(&with_ac, &direct);
    }
}
