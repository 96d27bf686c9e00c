//! Fuzz target: an event batch as a terminal (or a site relaying it) sends it to
//! `POST /v1/events` — detections, sample uploads, fault reports, plan reports, users' answers —
//! parsed as the API parses it and checked by `received_batch`, which must refuse or accept
//! without panicking; what it accepts is what the center would store: one row per event with
//! the terminal's id, and each sample's restored bytes with the SHA-256 it declared.
#![no_main]

use herd_center::events::received_batch;
use herd_center::samples::neutralise;
use herd_proto::api::EventBatch;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = serde_json::from_slice::<EventBatch>(data) else {
        return;
    };
    let events = batch.events.len();
    let Ok((samples, rows)) = received_batch("t-1", batch, 4096, 1_800_000_000) else {
        return;
    };
    assert_eq!(rows.len(), events);
    assert!(rows.iter().all(|row| row.terminal == "t-1"));
    for sample in samples {
        assert!(sample.upload.size <= 4096);
        assert!(sample.upload.neutralised.is_none(), "the bytes left the event");
        let mut restored = sample.neutralised.clone();
        neutralise(&sample.upload.sha256, &mut restored);
        let digest: String = Sha256::digest(&restored)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(digest, sample.upload.sha256);
    }
});
