//! Downloading a plan's packages into the chosen directory through a [`Fetcher`]: a directory
//! only the agent can change (checked: not a symlink, the agent's, not group- or
//! world-writable), resumable `<sha256>.part` files created exclusively and never followed if
//! something else was planted under their name, size and SHA-256 checked before the rename to `<sha256>`, a full disk
//! or an interruption deferred (the plan is retried), anything else refused; and the removal
//! of downloads no plan will finish. An `archive` package's content rebuilt from a delta
//! (`Fetcher::rebuild_content`, `<sha256>.tar`) stands for the package when the fetcher offers
//! one; any failure of it falls back to the full download.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::path::Path;

use herd_fs::Dir;
use nix::sys::stat::SFlag;

use sha2::{Digest, Sha256};

use super::fetch::{self, FetchError, Fetcher};
use super::shape::{FetchItem, Shape};
use super::space::{self, human};
use super::{Executor, hex};

/// A download that did not complete: try again later, or give up on the plan.
pub(super) struct FetchFailure {
    pub retry: bool,
    pub why: String,
    /// The bytes received are not the package's (size or SHA-256): tampered on the way.
    pub tampered: bool,
}

impl Executor {
    pub(super) fn fetch_one(
        &self,
        dir: &Path,
        item: &FetchItem,
        fetcher: &dyn Fetcher,
    ) -> Result<String, FetchFailure> {
        let refuse = |why: String| FetchFailure {
            retry: false,
            why,
            tampered: false,
        };
        let tampered = |why: String| FetchFailure {
            retry: false,
            why,
            tampered: true,
        };
        // The agent writes here as root and later unpacks what it finds: only a directory
        // nobody else can change will do (not a symlink, ours, not group- or world-writable).
        let handle = Dir::open_private(dir).map_err(|e| refuse(e.to_string()))?;
        let final_name = OsString::from(&item.sha256);
        let part_name = OsString::from(format!("{}.part", item.sha256));
        let final_path = dir.join(&final_name);
        let part = dir.join(&part_name);
        if regular_len(&handle, &final_name) == item.size
            && sha256_file(&handle, &final_name).is_ok_and(|d| d == item.sha256)
        {
            return Ok(format!(
                "{} already downloaded in {}",
                human(item.size),
                final_path.display()
            ));
        }
        let _ = handle.remove_entry(&final_name);
        // Rebuilt content is never reused across attempts: it is rebuilt (and checked) again.
        let content_name = OsString::from(fetch::content_file_name(&item.sha256));
        let _ = handle.remove_entry(&content_name);
        let no_delta = match fetcher.rebuild_content(&item.sha256, &dir.join(&content_name)) {
            None => None,
            Some(Ok(rebuilt)) => {
                return Ok(format!(
                    "rebuilt the package's content from {}: {} downloaded instead of {} ({} \
                     saved), checked against its signed content digest, in {}",
                    rebuilt.from,
                    human(rebuilt.downloaded),
                    human(item.size),
                    human(item.size.saturating_sub(rebuilt.downloaded)),
                    dir.join(&content_name).display()
                ));
            }
            Some(Err(why)) => {
                let _ = handle.remove_entry(&content_name);
                Some(why)
            }
        };
        // A part file is resumed only if it is a regular file; anything else there (a symlink
        // planted to make the agent append to another file) is removed, never followed.
        let mut resume_from = match handle.stat_at(&part_name) {
            Ok(Some(stat))
                if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG =>
            {
                stat.st_size as u64
            }
            Ok(None) => 0,
            _ => {
                handle
                    .remove_entry(&part_name)
                    .map_err(|e| refuse(e.to_string()))?;
                0
            }
        };
        if resume_from > item.size {
            let _ = handle.remove_entry(&part_name);
            resume_from = 0;
        }
        if resume_from == 0 {
            let _ = handle.remove_entry(&part_name);
            handle
                .create_file(&part_name, 0o600)
                .map_err(|e| refuse(format!("cannot start the download: {e}")))?;
        }
        if resume_from < item.size {
            match fetcher.fetch(&item.sha256, item.size, &part, resume_from) {
                Ok(()) => {}
                Err(FetchError::Interrupted(why)) => {
                    let kept = fetch::len_or_zero(&part).unwrap_or(0);
                    return Err(FetchFailure {
                        retry: true,
                        tampered: false,
                        why: format!(
                            "the download was interrupted ({why}); {kept} of {} bytes are kept in {} and the next attempt resumes from there",
                            item.size,
                            part.display()
                        ),
                    });
                }
                Err(FetchError::Write { path, source })
                    if matches!(
                        source.kind(),
                        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
                    ) =>
                {
                    // Refuse rather than truncate (SPEC §3.5): the partial file goes, so the
                    // disk is left as it was.
                    let _ = fs::remove_file(&part);
                    let free = space::free_bytes(dir).map(human).unwrap_or_default();
                    return Err(FetchFailure {
                        retry: true,
                        tampered: false,
                        why: format!(
                            "the disk filled up while downloading into {} ({source}; {free} free); the partial download was deleted",
                            path.display()
                        ),
                    });
                }
                Err(e) => {
                    let _ = fs::remove_file(&part);
                    return Err(refuse(e.to_string()));
                }
            }
        }
        let got = regular_len(&handle, &part_name);
        if got != item.size {
            let _ = fs::remove_file(&part);
            return Err(tampered(format!(
                "received {got} bytes, but the plan says the package has {}; the download was deleted",
                item.size
            )));
        }
        let digest = sha256_file(&handle, &part_name)
            .map_err(|e| refuse(format!("{}: {e}", part.display())))?;
        if digest != item.sha256 {
            let _ = fs::remove_file(&part);
            return Err(tampered(format!(
                "the download has SHA-256 {digest}, but the plan says {}; the download was deleted",
                item.sha256
            )));
        }
        handle
            .open_file(&part_name)
            .and_then(|f| {
                f.sync_all().map_err(|source| herd_fs::DirError::Io {
                    path: part.clone(),
                    action: "syncing",
                    source,
                })
            })
            .and_then(|()| handle.rename(&part_name, &handle, &final_name))
            .and_then(|()| handle.sync())
            .map_err(|e| refuse(format!("{}: {e}", final_path.display())))?;
        let mut detail = format!(
            "{} verified (size and SHA-256) in {}",
            human(item.size),
            final_path.display()
        );
        if resume_from > 0 {
            detail.push_str(&format!("; resumed at byte {resume_from}"));
        }
        if let Some(why) = no_delta {
            detail.push_str(&format!("; the full package, not a delta: {why}"));
        }
        Ok(detail)
    }

    /// Packages and part files of earlier plans that will never finish (the center sent
    /// another plan since) are removed, in every candidate directory; only names the executor
    /// itself creates (`<sha256>`, `<sha256>.part`) are touched.
    pub(super) fn remove_stale_downloads(&self, shape: &Shape) {
        for dir in &self.config.download_dirs {
            let Ok(entries) = fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let digest = name
                    .strip_suffix(".part")
                    .or_else(|| name.strip_suffix(".tar"))
                    .unwrap_or(name);
                let ours = digest.len() == 64
                    && digest
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                if ours && !shape.fetches.iter().any(|f| f.sha256 == digest) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }
}

pub(super) fn remove_download(dir: &Path, sha256: &str) {
    let _ = fs::remove_file(dir.join(sha256));
    let _ = fs::remove_file(dir.join(format!("{sha256}.part")));
    let _ = fs::remove_file(dir.join(fetch::content_file_name(sha256)));
}

/// The SHA-256 of the regular file `name` in `dir`, opened without following a symlink.
fn sha256_file(dir: &Dir, name: &OsStr) -> Result<String, herd_fs::DirError> {
    let mut file = dir.open_file(name)?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(|source| herd_fs::DirError::Io {
        path: dir.path().join(name),
        action: "reading",
        source,
    })?;
    Ok(hex(&hasher.finalize()))
}

/// The length of the regular file `name` in `dir`; 0 when absent or anything else.
fn regular_len(dir: &Dir, name: &OsStr) -> u64 {
    match dir.stat_at(name) {
        Ok(Some(stat))
            if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG =>
        {
            stat.st_size as u64
        }
        _ => 0,
    }
}
