//! Fuzz target: body signatures an analyst adds to Herd's set
//! (`POST /v1/herd-set/body-signatures`), checked line by line with the scan engine's parser
//! by `body_signatures::check`: refused or accepted without panicking; what is accepted is one
//! row per signature line, each named `Herd.Immunity.…`, loading again without an error from
//! the file the center would write.
#![no_main]

use herd_center::body_signatures::{check, file_text};
use herd_proto::api::BodySignaturesDoc;
use herd_proto::distribution::HERD_SIGNATURE_PREFIX;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<BodySignaturesDoc>(data) else {
        return;
    };
    let Ok(rows) = check(&doc, &[], "analyst", 0) else {
        return;
    };
    if doc.format == "yar" {
        return;
    }
    assert!(rows.iter().all(|r| r.name.starts_with(HERD_SIGNATURE_PREFIX)));
    let text = file_text(&rows, &doc.format);
    let mut db = herd_scan::Database::new();
    let errors = db.load(&format!("herd.{}", doc.format), text.as_bytes());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(db.bodies.len() + db.logicals.len(), rows.len());
});
