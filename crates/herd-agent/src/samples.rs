//! Samples for the center's analysts (issue 13): `herd-agent submit FILE`, and the hosted
//! scanner's suspicious-only hits and files it could not quarantine, go into the outbox as
//! `sample.upload` events — neutralised with the quarantine's keystream keyed by the file's
//! SHA-256, hex-encoded, at most `--max-size` bytes — so they reach the center (through a site's
//! relay too) like every other event, and survive the center being away. A file already sent
//! from this terminal (a marker per SHA-256 in `<state>/samples-sent/`) is not queued again;
//! the center keeps each SHA-256 once whoever sends it.

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
