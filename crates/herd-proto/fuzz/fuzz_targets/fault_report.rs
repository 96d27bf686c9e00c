//! Fuzz target: fault reports as the center receives them (a `fault.report` event's data):
//! parsed, validated, redacted, signed into a bucket and matched against a rule; and the
//! redaction of arbitrary text, which must never keep a `password = …` value or grow an
//! excerpt past its bound.
#![no_main]

use herd_proto::fault::{FaultReport, FaultRule, MAX_EXCERPT, excerpt_of, redact};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (excerpt, _) = excerpt_of(text);
    assert!(excerpt.len() <= MAX_EXCERPT);
    for line in redact(text).lines() {
        if let Some(value) = line.strip_prefix("password =") {
            assert!(value.trim().is_empty() || value.trim() == "[redacted]", "{line:?}");
        }
    }
    let Ok(report) = serde_json::from_str::<FaultReport>(text) else { return };
    if report.validate("fuzz").is_err() {
        return;
    }
    let report = report.redacted();
    let _ = report.signature();
    let rule = FaultRule {
        id: "r".into(),
        program: report.program.clone(),
        version_from: Some("1.0".into()),
        version_below: Some("2.0".into()),
        kinds: vec![],
        exit_codes: vec![],
        signals: vec![],
        frame_pattern: Some("main".into()),
        definition_pattern: None,
        cause: "c".into(),
        remedy: "r".into(),
    };
    let _ = rule.matches(&report);
});
