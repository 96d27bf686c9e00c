//! Downloading a plan's packages into the chosen directory through a [`Fetcher`]: resumable
//! `<sha256>.part` files, size and SHA-256 checked before the rename to `<sha256>`, a full disk
//! or an interruption deferred (the plan is retried), anything else refused; and the removal
//! of downloads no plan will finish.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::fetch::{self, FetchError, Fetcher};
use super::shape::{FetchItem, Shape};
use super::space::{self, human};
use super::{Executor, hex, journal};

/// A download that did not complete: try again later, or give up on the plan.
pub(super) struct FetchFailure {
    pub retry: bool,
    pub why: String,
}

impl Executor {
    pub(super) fn fetch_one(
        &self,
        dir: &Path,
        item: &FetchItem,
        fetcher: &dyn Fetcher,
    ) -> Result<String, FetchFailure> {
        let refuse = |why: String| FetchFailure { retry: false, why };
        let final_path = dir.join(&item.sha256);
        let part = dir.join(format!("{}.part", item.sha256));
        if fetch::len_or_zero(&final_path).unwrap_or(0) == item.size
            && sha256_file(&final_path).is_ok_and(|d| d == item.sha256)
        {
            return Ok(format!(
                "{} already downloaded in {}",
                human(item.size),
                final_path.display()
            ));
        }
        let _ = fs::remove_file(&final_path);
        let mut resume_from = fetch::len_or_zero(&part).unwrap_or(0);
        if resume_from > item.size {
            let _ = fs::remove_file(&part);
            resume_from = 0;
        }
        if resume_from < item.size {
            match fetcher.fetch(&item.sha256, item.size, &part, resume_from) {
                Ok(()) => {}
                Err(FetchError::Interrupted(why)) => {
                    let kept = fetch::len_or_zero(&part).unwrap_or(0);
                    return Err(FetchFailure {
                        retry: true,
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
        let got = fetch::len_or_zero(&part).unwrap_or(0);
        if got != item.size {
            let _ = fs::remove_file(&part);
            return Err(refuse(format!(
                "received {got} bytes, but the plan says the package has {}; the download was deleted",
                item.size
            )));
        }
        let digest = sha256_file(&part).map_err(|e| refuse(format!("{}: {e}", part.display())))?;
        if digest != item.sha256 {
            let _ = fs::remove_file(&part);
            return Err(refuse(format!(
                "the download has SHA-256 {digest}, but the plan says {}; the download was deleted",
                item.sha256
            )));
        }
        File::open(&part)
            .and_then(|f| f.sync_all())
            .and_then(|()| fs::rename(&part, &final_path))
            .and_then(|()| journal::sync_dir(dir))
            .map_err(|e| refuse(format!("{}: {e}", final_path.display())))?;
        let mut detail = format!(
            "{} verified (size and SHA-256) in {}",
            human(item.size),
            final_path.display()
        );
        if resume_from > 0 {
            detail.push_str(&format!("; resumed at byte {resume_from}"));
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
                let digest = name.strip_suffix(".part").unwrap_or(name);
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
}

fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}
