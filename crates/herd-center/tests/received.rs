//! A deterministic stand-in for the fuzz targets of `crates/herd-center/fuzz` that runs in every
//! test run: thousands of mutations of what terminals and analysts send the center — an event
//! batch with a detection, a sample upload, a fault report and a plan report; a verdict; body
//! signatures — must each be refused or accepted, never panic, and what is accepted keeps the
//! checks' promises (one row per event, samples whose restored bytes have their SHA-256, a
//! malicious verdict with a size, body signatures named `Herd.Immunity.…` that load again).

use herd_center::body_signatures::{check, file_text};
use herd_center::events::received_batch;
use herd_center::herd_set::{MALICIOUS, check_sha256, check_verdict};
use herd_center::samples::neutralise;
use herd_proto::api::{BodySignaturesDoc, EventBatch, VerdictDoc};
use herd_proto::distribution::HERD_SIGNATURE_PREFIX;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A batch the center accepts: one event of each kind whose data it checks.
fn good_batch() -> Value {
    let content = b"MZ a program that must not run where it is stored";
    let sha256 = hex(&Sha256::digest(content));
    let mut neutralised = content.to_vec();
    neutralise(&sha256, &mut neutralised);
    json!({"events": [
        {"seq": 1, "at": "2026-12-06T00:00:00Z", "kind": "scan.detection", "data": {
            "path": "/home/u/invoice.pdf.exe", "sha256": sha256, "size": content.len(),
            "signatures": ["Vendor.Worm.X"], "product": "acme-av/1.0", "mode": "on-access",
            "action": "quarantined"}},
        {"seq": 2, "at": "2026-12-06T00:00:01Z", "kind": "sample.upload", "data": {
            "sha256": sha256, "size": content.len(), "path": "/home/u/x.exe",
            "reason": "submitted", "neutralised": hex(&neutralised)}},
        {"seq": 3, "at": "2026-12-06T00:00:02Z", "kind": "fault.report", "data": {
            "program": "mw", "vendor": "acme", "version": "1.2", "platform": "linux",
            "kind": "crash", "signal": 11, "frames": ["main+0x10", "run+0x20"]}},
        {"seq": 4, "at": "2026-12-06T00:00:03Z", "kind": "agent.started", "data": {}}
    ]})
}

fn good_verdict() -> Value {
    json!({"sha256": "a".repeat(64), "verdict": "malicious", "size": 10,
           "threat": "worm-x", "danger": "high", "name": "Worm X"})
}

fn good_body_signatures() -> Value {
    json!({"format": "ndb", "text": format!(
        "# a comment\nHerd.Immunity.A:0:*:{}\nHerd.Immunity.B:1:EP+0:{}\n",
        hex(b"WORM-X-LOADER"), hex(b"WORM-X-TAIL"))})
}

/// A small deterministic generator (the same LCG the herd-proto stand-in uses).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as usize
    }
}

/// Values a mutation puts somewhere: edge cases of each JSON type, and texts the checks look at.
fn replacement(rng: &mut Rng) -> Value {
    let pool = [
        Value::Null,
        json!(0),
        json!(-1),
        json!(u64::MAX),
        json!(1.5),
        json!(""),
        json!(" "),
        json!("A".repeat(64)),
        json!("a".repeat(64)),
        json!("a".repeat(63)),
        json!("\u{0}"),
        json!("2026-13-40T25:61:61Z"),
        json!("benign"),
        json!("malicious"),
        json!("sample.upload"),
        json!("scan.detection"),
        json!("ldb"),
        json!("yar"),
        json!("Herd.Immunity.X:0:*:zz"),
        json!("Herd.Immunity.X;Target:0;0&1;616263"),
        json!("x".repeat(300)),
        json!([]),
        json!({}),
        json!(["Herd.Immunity.only"]),
        json!(true),
    ];
    pool[rng.next() % pool.len()].clone()
}

/// Replaces, removes or adds one value somewhere in `doc`.
fn mutate_value(doc: &mut Value, rng: &mut Rng) {
    match doc {
        Value::Object(map) if !map.is_empty() && rng.next() % 4 != 0 => {
            let key = map.keys().nth(rng.next() % map.len()).unwrap().clone();
            match rng.next() % 5 {
                0 => {
                    map.remove(&key);
                }
                1 => {
                    map.insert(key, replacement(rng));
                }
                _ => mutate_value(map.get_mut(&key).unwrap(), rng),
            }
        }
        Value::Array(items) if !items.is_empty() && rng.next() % 4 != 0 => {
            let at = rng.next() % items.len();
            match rng.next() % 5 {
                0 => {
                    items.remove(at);
                }
                1 => {
                    let copy = items[at].clone();
                    items.insert(at, copy);
                }
                _ => mutate_value(&mut items[at], rng),
            }
        }
        Value::String(text) if !text.is_empty() && rng.next() % 2 == 0 => {
            // Edit the text itself: a signature line, a digest, a hex body.
            let mut bytes = text.clone().into_bytes();
            let at = rng.next() % bytes.len();
            const BYTES: &[u8] = b":;*?{}()|!0aAzZ\n\r #-.";
            match rng.next() % 3 {
                0 => bytes[at] = BYTES[rng.next() % BYTES.len()],
                1 => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, BYTES[rng.next() % BYTES.len()]),
            }
            *text = String::from_utf8_lossy(&bytes).into_owned();
        }
        other => *other = replacement(rng),
    }
}

/// `doc` mutated a few times, as JSON text, sometimes with a byte changed too.
fn mutated(doc: &Value, rng: &mut Rng) -> Vec<u8> {
    let mut doc = doc.clone();
    for _ in 0..1 + rng.next() % 3 {
        mutate_value(&mut doc, rng);
    }
    let mut text = serde_json::to_vec(&doc).unwrap();
    if rng.next() % 8 == 0 {
        let at = rng.next() % text.len();
        text[at] = b"{}[]\",:0-\\"[rng.next() % 10];
    }
    text
}

fn check_batch(data: &[u8]) -> bool {
    let Ok(batch) = serde_json::from_slice::<EventBatch>(data) else {
        return false;
    };
    let events = batch.events.len();
    let Ok((samples, rows)) = received_batch("t-1", batch, 4096, 1_800_000_000) else {
        return false;
    };
    assert_eq!(rows.len(), events);
    assert!(rows.iter().all(|row| row.terminal == "t-1"));
    for sample in samples {
        assert!(sample.upload.size <= 4096);
        assert!(sample.upload.neutralised.is_none());
        let mut restored = sample.neutralised.clone();
        neutralise(&sample.upload.sha256, &mut restored);
        assert_eq!(hex(&Sha256::digest(&restored)), sample.upload.sha256);
    }
    true
}

fn check_verdict_doc(data: &[u8]) -> bool {
    let Ok(doc) = serde_json::from_slice::<VerdictDoc>(data) else {
        return false;
    };
    if check_verdict(&doc).is_err() {
        return false;
    }
    assert!(check_sha256(&doc.sha256, "mutated").is_ok());
    if doc.verdict == MALICIOUS {
        assert!(doc.size.is_some_and(|size| size > 0));
    }
    true
}

fn check_body_signatures(data: &[u8]) -> bool {
    let Ok(doc) = serde_json::from_slice::<BodySignaturesDoc>(data) else {
        return false;
    };
    let Ok(rows) = check(&doc, &[], "analyst", 0) else {
        return false;
    };
    if doc.format != "yar" {
        assert!(
            rows.iter()
                .all(|r| r.name.starts_with(HERD_SIGNATURE_PREFIX))
        );
        let text = file_text(&rows, &doc.format);
        let mut db = herd_scan::Database::new();
        let errors = db.load(&format!("herd.{}", doc.format), text.as_bytes());
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(db.bodies.len() + db.logicals.len(), rows.len());
    }
    true
}

#[test]
fn the_unmutated_documents_are_accepted() {
    assert!(check_batch(&serde_json::to_vec(&good_batch()).unwrap()));
    assert!(check_verdict_doc(
        &serde_json::to_vec(&good_verdict()).unwrap()
    ));
    assert!(check_body_signatures(
        &serde_json::to_vec(&good_body_signatures()).unwrap()
    ));
}

#[test]
fn mutated_documents_are_refused_or_accepted_never_panic() {
    let mut rng = Rng(0x5167_0013);
    let documents: [(&str, Value, fn(&[u8]) -> bool); 3] = [
        ("event batch", good_batch(), check_batch),
        ("verdict", good_verdict(), check_verdict_doc),
        (
            "body signatures",
            good_body_signatures(),
            check_body_signatures,
        ),
    ];
    for (what, good, checker) in documents {
        let mut accepted = 0;
        let mut refused = 0;
        for _ in 0..3000 {
            let data = mutated(&good, &mut rng);
            if checker(&data) {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
        // The mutations reach both sides of the checks, not only the JSON parser.
        assert!(
            accepted >= 10 && refused >= 10,
            "{what}: {accepted} accepted, {refused} refused"
        );
    }
}
