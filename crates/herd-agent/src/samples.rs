//! Samples for the center's analysts (issue 13): `herd-agent submit FILE`, and the hosted
//! scanner's suspicious-only hits and files it could not quarantine, go into the outbox as
//! `sample.upload` events — neutralised with the quarantine's keystream keyed by the file's
//! SHA-256, hex-encoded, at most `--max-size` bytes — so they reach the center (through a site's
//! relay too) like every other event, and survive the center being away. A file already sent
//! from this terminal (a marker per SHA-256 in `<state>/samples-sent/`) is not queued again;
//! when the batch is sent, the agent first asks its upstream whether the center has the
//! sample ([`without_held_bytes`]) and sends only a report, without the bytes, if it does; the
//! center keeps each SHA-256 once whoever sends it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use herd_proto::api::{SampleUpload, events};
use sha2::{Digest, Sha256};

use crate::outbox::Outbox;
use crate::quarantine::{hex, neutralise};

/// The center's default `max_sample_bytes`.
pub const DEFAULT_MAX_SAMPLE: u64 = 1 << 20;
/// Markers of samples this terminal sent, under the state directory.
pub const SENT_DIR: &str = "samples-sent";
/// Written after each submission: what was queued (its write wakes a sleeping agent, which
/// sends the outbox at once).
pub const SUBMITTED_FILE: &str = "submitted.json";

/// Send a file to the center's analysts as a sample: neutralised, queued in the outbox, sent
/// by the running agent at once (or at its next check-in).
#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:
  herd-agent submit --state-dir /var/lib/herd-agent ~/Downloads/invoice.pdf.exe")]
pub struct SubmitArgs {
    /// The agent's state directory.
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    /// Files larger than this are refused (the center's max_sample_bytes; suffixes K, M).
    #[arg(long, value_name = "SIZE", default_value = "1M", value_parser = crate::scan::parse_size)]
    max_size: u64,
    /// The file to send.
    file: PathBuf,
}

/// What queuing did.
#[derive(Debug, PartialEq, Eq)]
pub enum Queued {
    /// Queued with this outbox seq.
    Queued(u64),
    /// This terminal sent it before.
    AlreadySent,
}

/// Queues `content` (the bytes of `path`) as a sample. `max` is checked by the caller.
pub fn queue(
    state_root: &Path,
    outbox: &Outbox,
    path: &Path,
    content: &[u8],
    reason: &str,
) -> Result<(String, Queued)> {
    let sha256 = hex(&Sha256::digest(content));
    let sent = state_root.join(SENT_DIR);
    let marker = sent.join(&sha256);
    if marker.exists() {
        return Ok((sha256, Queued::AlreadySent));
    }
    let mut neutralised = content.to_vec();
    neutralise(&sha256, &mut neutralised);
    let upload = SampleUpload {
        sha256: sha256.clone(),
        size: content.len() as u64,
        path: path.display().to_string(),
        reason: reason.to_owned(),
        neutralised: Some(hex(&neutralised)),
        held: false,
    };
    let seq = outbox.push(
        events::SAMPLE_UPLOAD,
        serde_json::to_value(&upload).expect("a sample serialises"),
    )?;
    std::fs::create_dir_all(&sent).with_context(|| format!("cannot create {}", sent.display()))?;
    herd_fs::write_atomic(&marker, format!("{seq}\n").as_bytes(), 0o600)?;
    Ok((sha256, Queued::Queued(seq)))
}

pub fn run_submit(args: &SubmitArgs) -> Result<u8> {
    let meta = std::fs::metadata(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", args.file.display());
    }
    if meta.len() > args.max_size {
        bail!(
            "{} is {} bytes; samples are at most {} bytes (--max-size): nothing was queued",
            args.file.display(),
            meta.len(),
            args.max_size
        );
    }
    if meta.len() == 0 {
        bail!("{} is empty: nothing was queued", args.file.display());
    }
    let content = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let path = std::path::absolute(&args.file).unwrap_or_else(|_| args.file.clone());
    let outbox = Outbox::open(&crate::run::outbox_dir(&args.state_dir))?;
    let (sha256, queued) = queue(&args.state_dir, &outbox, &path, &content, "submitted")?;
    match queued {
        Queued::AlreadySent => {
            println!(
                "herd-agent: {} (SHA-256 {sha256}) was sent before; not queued again",
                path.display()
            );
        }
        Queued::Queued(seq) => {
            let note = serde_json::json!({ "sha256": sha256, "path": path.display().to_string(), "seq": seq });
            crate::run::save_json(&args.state_dir.join(SUBMITTED_FILE), &note)?;
            println!(
                "herd-agent: queued {} (SHA-256 {sha256}) as a sample; the running agent sends it now",
                path.display()
            );
        }
    }
    Ok(0)
}

/// `batch` with the bytes left out of every sample the center says it has (asked through
/// `GET /v1/terminal/samples/{sha256}`, at the terminal's site too), marked `held`; `None`
/// when nothing changes. A question that fails leaves the sample as it is: it is uploaded, and
/// the center keeps it once anyway.
pub fn without_held_bytes(
    batch: &herd_proto::api::EventBatch,
    held: &mut dyn FnMut(&str) -> bool,
) -> Option<herd_proto::api::EventBatch> {
    let mut changed = None::<herd_proto::api::EventBatch>;
    for (i, event) in batch.events.iter().enumerate() {
        if event.kind != events::SAMPLE_UPLOAD {
            continue;
        }
        let Ok(mut upload) = serde_json::from_value::<SampleUpload>(event.data.clone()) else {
            continue;
        };
        if upload.held || upload.neutralised.is_none() || !held(&upload.sha256) {
            continue;
        }
        upload.neutralised = None;
        upload.held = true;
        let copy = changed.get_or_insert_with(|| batch.clone());
        copy.events[i].data = serde_json::to_value(&upload).expect("a sample serialises");
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_proto::api::{EventBatch, EventDoc};

    fn event(seq: u64, kind: &str, data: serde_json::Value) -> EventDoc {
        EventDoc {
            seq,
            at: "2026-12-06T00:00:00Z".into(),
            kind: kind.into(),
            data,
        }
    }

    #[test]
    fn samples_the_center_has_are_sent_without_their_bytes() {
        let sample = |sha: &str| {
            serde_json::json!({"sha256": sha, "size": 3, "path": "/x", "reason": "submitted",
                               "neutralised": "aabbcc"})
        };
        let batch = EventBatch {
            events: vec![
                event(1, events::SAMPLE_UPLOAD, sample("known")),
                event(2, "test.event", serde_json::json!({})),
                event(3, events::SAMPLE_UPLOAD, sample("new")),
            ],
        };
        let mut asked = Vec::new();
        let sent = without_held_bytes(&batch, &mut |sha| {
            asked.push(sha.to_owned());
            sha == "known"
        })
        .expect("one sample changed");
        assert_eq!(asked, ["known", "new"]);
        assert_eq!(sent.events[0].data["held"], true);
        assert!(sent.events[0].data.get("neutralised").is_none());
        assert_eq!(sent.events[1], batch.events[1]);
        assert_eq!(sent.events[2], batch.events[2]);
        // Nothing held: the batch goes as it is.
        assert!(without_held_bytes(&batch, &mut |_| false).is_none());
    }
}
