//! The center's sample store (issue 13, seed 001 S104–S106): files terminals send for the
//! analysts — submitted by the user (`herd-agent submit`), hit only by a suspicious
//! signature, or not quarantinable — arrive as `sample.upload` events through the outbox (and
//! so through a site's relay), neutralised (see [`SampleUpload`]). Each is checked whole before
//! anything of the batch is stored: its declared size within `max_sample_bytes`, its hex, and
//! the SHA-256 of the restored bytes; a bad one refuses the batch. The bytes then leave the
//! event (the events table keeps what was sent, without them) and are kept once per SHA-256,
//! still neutralised, as `<data-dir>/samples/<sha256>.bin` (mode 0600: neither runnable nor
//! matched by a scanner of the center's disk), indexed by the `samples` table.
//!
//! Deduplicated three times: on the terminal (a file it sent is not queued again), before the
//! upload (the agent asks `GET /v1/terminal/samples/{sha256}` — at its site, which asks here —
//! and sends an event marked `held`, without the bytes, when the center has it), and at the
//! center (a sample it has is not stored again).

use std::path::PathBuf;

use herd_proto::api::{EventBatch, SampleDoc, SamplePresence, SampleUpload, events};
use herd_store::SampleRow;
use sha2::{Digest, Sha256};

use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::herd_set::check_sha256;
use crate::{Center, rfc3339, unix_now};

/// The sample store's directory under the data directory.
pub const SAMPLES_DIR: &str = "samples";

/// XORs `data` with the keystream of `key` (SHA-256 of `key` ‖ block number, 32-byte blocks):
/// the agent's quarantine scheme (`herd-agent`'s `quarantine::neutralise`), which both sides
/// must apply alike; applying it twice restores the data.
pub fn neutralise(key: &str, data: &mut [u8]) {
    for (block, chunk) in data.chunks_mut(32).enumerate() {
        let stream = Sha256::new()
            .chain_update(key.as_bytes())
            .chain_update((block as u64).to_le_bytes())
            .finalize();
        for (b, k) in chunk.iter_mut().zip(stream) {
            *b ^= k;
        }
    }
}

/// A sample taken out of a batch: what the event said, and the neutralised bytes.
#[derive(Debug)]
pub struct Received {
    pub upload: SampleUpload,
    pub neutralised: Vec<u8>,
}

/// Checks every `sample.upload` event of `batch` and takes its bytes out of it (the event
/// keeps the rest). The first bad one refuses the batch, naming the event and the field.
pub fn take_samples(batch: &mut EventBatch, max_bytes: u64) -> CenterResult<Vec<Received>> {
    let mut received = Vec::new();
    for (i, event) in batch.events.iter_mut().enumerate() {
        if event.kind != events::SAMPLE_UPLOAD {
            continue;
        }
        let at = |field: &str| format!("the event batch: $.events[{i}].data{field}");
        let mut upload: SampleUpload =
            serde_json::from_value(event.data.clone()).map_err(|err| {
                CenterError::bad_request(format!("{}: not a sample upload: {err}", at("")))
            })?;
        check_sha256(&upload.sha256, &at(".sha256")).map_err(CenterError::bad_request)?;
        if upload.held {
            // The terminal was told the center has it: a report, without bytes.
            if upload.neutralised.is_some() {
                return Err(CenterError::bad_request(format!(
                    "{}: a sample marked held carries no bytes",
                    at(".neutralised")
                )));
            }
            continue;
        }
        if upload.size == 0 || upload.size > max_bytes {
            return Err(CenterError::new(
                ErrorKind::TooLarge,
                format!(
                    "{}: a sample of {} bytes is refused: samples are 1 to {max_bytes} bytes \
                     (max_sample_bytes)",
                    at(".size"),
                    upload.size
                ),
            ));
        }
        let text = upload.neutralised.take().ok_or_else(|| {
            CenterError::bad_request(format!(
                "{}: the sample's bytes are missing",
                at(".neutralised")
            ))
        })?;
        let neutralised = hex::decode(&text).map_err(|err| {
            CenterError::bad_request(format!("{}: not hex: {err}", at(".neutralised")))
        })?;
        if neutralised.len() as u64 != upload.size {
            return Err(CenterError::bad_request(format!(
                "{}: {} bytes, but $.size says {}",
                at(".neutralised"),
                neutralised.len(),
                upload.size
            )));
        }
        let mut restored = neutralised.clone();
        neutralise(&upload.sha256, &mut restored);
        let actual = hex::encode(Sha256::digest(&restored));
        if actual != upload.sha256 {
            return Err(CenterError::bad_request(format!(
                "{}: the restored bytes have SHA-256 {actual}, not {} (not neutralised with \
                 the sample's SHA-256, or damaged)",
                at(".neutralised"),
                upload.sha256
            )));
        }
        event.data = serde_json::to_value(&upload).expect("a sample upload serialises");
        received.push(Received {
            upload,
            neutralised,
        });
    }
    Ok(received)
}

impl Center {
    /// Whether the center has the sample `sha256` (a terminal asks before uploading). On a
    /// site, the center is asked; a center that does not answer counts as not having it, so
    /// the terminal uploads (and the center still keeps it once).
    pub async fn sample_held(&self, sha256: &str) -> CenterResult<SamplePresence> {
        check_sha256(sha256, "the sample").map_err(CenterError::bad_request)?;
        let held = match self.site() {
            Some(site) => site.sample_held(sha256).await,
            None => tokio::fs::try_exists(self.sample_path(sha256))
                .await
                .unwrap_or(false),
        };
        Ok(SamplePresence {
            sha256: sha256.to_owned(),
            held,
        })
    }

    fn sample_path(&self, sha256: &str) -> PathBuf {
        self.config
            .data_dir
            .join(SAMPLES_DIR)
            .join(format!("{sha256}.bin"))
    }

    /// Keeps samples received from `terminal` (the center only; a site relays them): the file
    /// first, then its row, so a listed sample always has its bytes.
    pub(crate) async fn keep_samples(&self, terminal: &str, received: Vec<Received>) {
        for sample in received {
            let path = self.sample_path(&sample.upload.sha256);
            if !path.exists() {
                let write = {
                    let (path, bytes) = (path.clone(), sample.neutralised);
                    tokio::task::spawn_blocking(move || {
                        if let Some(dir) = path.parent() {
                            std::fs::create_dir_all(dir)?;
                        }
                        herd_fs::write_atomic(&path, &bytes, 0o600).map_err(std::io::Error::other)
                    })
                    .await
                };
                if let Err(err) | Ok(Err(err)) = write.map_err(std::io::Error::other) {
                    tracing::error!(path = %path.display(), %err, "cannot keep a sample");
                    continue;
                }
            }
            let row = SampleRow {
                sha256: sample.upload.sha256.clone(),
                size: sample.upload.size,
                reason: sample.upload.reason.clone(),
                path: sample.upload.path.clone(),
                first_terminal: terminal.to_owned(),
                received_at: unix_now(),
            };
            match self.store.sample_add(&row).await {
                Ok(true) => {
                    tracing::info!(sha256 = %row.sha256, terminal, reason = %row.reason, "a sample waits for an analyst");
                    self.alerts.raise(crate::alerts::AlertEvent::new(
                        crate::alerts::AlertKind::SampleWaiting,
                        row.sha256.clone(),
                        format!(
                            "{} ({} bytes, {}) from terminal {terminal} waits for a verdict",
                            row.path, row.size, row.reason
                        ),
                    ));
                }
                Ok(false) => {}
                Err(err) => tracing::error!(%err, "cannot record a sample"),
            }
        }
    }

    /// Every sample, newest first, with whether Herd's set holds it.
    pub async fn samples(&self) -> CenterResult<Vec<SampleDoc>> {
        let judged: std::collections::HashSet<String> = self
            .store
            .herd_signatures()
            .await?
            .into_iter()
            .map(|s| s.sha256)
            .collect();
        let mut verdicts: std::collections::HashMap<String, herd_store::FileVerdictRow> = self
            .store
            .file_verdicts()
            .await?
            .into_iter()
            .map(|v| (v.sha256.clone(), v))
            .collect();
        Ok(self
            .store
            .samples()
            .await?
            .into_iter()
            .map(|row| {
                let verdict = verdicts.remove(&row.sha256);
                SampleDoc {
                    in_herd_set: judged.contains(&row.sha256),
                    verdict: verdict.as_ref().map(|v| v.verdict.clone()),
                    judged_by: verdict.map(|v| v.judged_by),
                    sha256: row.sha256,
                    size: row.size,
                    reason: row.reason,
                    path: row.path,
                    first_terminal: row.first_terminal,
                    received_at: rfc3339(row.received_at),
                }
            })
            .collect())
    }

    /// A sample's bytes as stored: still neutralised.
    pub async fn sample_bytes(&self, sha256: &str) -> CenterResult<Vec<u8>> {
        check_sha256(sha256, "the sample").map_err(CenterError::bad_request)?;
        tokio::fs::read(self.sample_path(sha256))
            .await
            .map_err(|_| CenterError::not_found(format!("no sample {sha256}")))
    }
}

#[cfg(test)]
mod tests {
    use herd_proto::api::EventDoc;
    use serde_json::json;

    use super::*;

    fn batch(data: serde_json::Value) -> EventBatch {
        EventBatch {
            events: vec![EventDoc {
                seq: 1,
                at: "2026-12-06T00:00:00Z".into(),
                kind: events::SAMPLE_UPLOAD.into(),
                data,
            }],
        }
    }

    fn upload(content: &[u8]) -> serde_json::Value {
        let sha256 = hex::encode(Sha256::digest(content));
        let mut bytes = content.to_vec();
        neutralise(&sha256, &mut bytes);
        json!({"sha256": sha256, "size": content.len(), "path": "/home/u/x.exe",
               "reason": "submitted", "neutralised": hex::encode(&bytes)})
    }

    #[test]
    fn a_good_sample_leaves_its_bytes_out_of_the_event() {
        let content = b"MZ a program that must not run where it is stored";
        let mut batch = batch(upload(content));
        let received = take_samples(&mut batch, 1024).unwrap();
        assert_eq!(received.len(), 1);
        assert_ne!(received[0].neutralised, content, "kept neutralised");
        let mut restored = received[0].neutralised.clone();
        neutralise(&received[0].upload.sha256, &mut restored);
        assert_eq!(restored, content);
        assert!(batch.events[0].data.get("neutralised").is_none());
        assert_eq!(batch.events[0].data["size"], content.len());
    }

    #[test]
    fn a_sample_the_center_holds_is_a_report_without_bytes() {
        let content = b"MZ already here";
        let mut data = upload(content);
        data.as_object_mut().unwrap().remove("neutralised");
        data["held"] = json!(true);
        let mut held = batch(data.clone());
        assert!(take_samples(&mut held, 1024).unwrap().is_empty());
        assert_eq!(held.events[0].data, data, "stored as sent");
        // Held and with bytes is one or the other, not both.
        let mut both = upload(content);
        both["held"] = json!(true);
        let err = take_samples(&mut batch(both), 1024).unwrap_err();
        assert!(
            err.to_string().contains("marked held carries no bytes"),
            "{err}"
        );
    }

    #[test]
    fn bad_samples_refuse_the_batch_naming_the_field() {
        let content = b"0123456789";
        let mut too_large = upload(content);
        too_large["size"] = json!(10);
        let err = take_samples(&mut batch(too_large), 9).unwrap_err();
        assert!(err.to_string().contains("$.events[0].data.size"), "{err}");
        let cases = [
            ("sha256", json!("nope"), ".sha256"),
            ("neutralised", json!("zz"), ".neutralised: not hex"),
            (
                "neutralised",
                json!(hex::encode(content)),
                "the restored bytes",
            ),
            ("size", json!(11), "$.size says 11"),
            ("size", json!(0), ".size"),
        ];
        for (field, value, says) in cases {
            let mut data = upload(content);
            data[field] = value;
            let err = take_samples(&mut batch(data), 1024).unwrap_err();
            assert!(err.to_string().contains(says), "{field}: {err}");
        }
        let mut missing = upload(content);
        missing.as_object_mut().unwrap().remove("neutralised");
        let err = take_samples(&mut batch(missing), 1024).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
