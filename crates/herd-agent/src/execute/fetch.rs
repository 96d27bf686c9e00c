//! Where packages come from: the [`Fetcher`] trait the executor downloads through, and
//! [`DirFetcher`], which serves them from a local directory of `<sha256>` files (offline
//! `herd-agent apply`, tests). The network side implements `Fetcher` with HTTP `Range`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Downloads one package, resuming a partial download.
///
/// The executor owns verification: it checks size and SHA-256 after `fetch` returns and
/// deletes what does not match, so an implementation only moves bytes.
pub trait Fetcher {
    /// Appends bytes `resume_from..size` of the package with this SHA-256 (lowercase hex) to
    /// `dest`, which already holds the first `resume_from` bytes (0: `dest` may not exist yet).
    /// Must not write more than `size - resume_from` bytes.
    fn fetch(
        &self,
        sha256: &str,
        size: u64,
        dest: &Path,
        resume_from: u64,
    ) -> Result<(), FetchError>;

    /// The content (the uncompressed tar) of the `archive` package with this SHA-256, rebuilt
    /// without downloading the package — from a definitions delta against the content this
    /// terminal keeps — and written to `dest` only once it matched the package's signed
    /// content digest. `None`: nothing to try, download the package; `Some(Err(why))`: tried
    /// or not possible, for the reason given, and the package is downloaded in full.
    fn rebuild_content(&self, sha256: &str, dest: &Path) -> Option<Result<Rebuilt, String>> {
        let _ = (sha256, dest);
        None
    }
}

/// A package's content rebuilt from a delta.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rebuilt {
    /// Bytes downloaded to rebuild it (the delta).
    pub downloaded: u64,
    /// What it was rebuilt from, for the report.
    pub from: String,
}

/// The name of a package's rebuilt content in the download directory: `<sha256>.tar`.
pub fn content_file_name(sha256: &str) -> String {
    format!("{sha256}.tar")
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The source does not have this package (HTTP 404): retrying will not help soon.
    #[error("the package source has no package {sha256}")]
    NotFound { sha256: String },
    /// The transfer stopped (connection lost, timeout, source unavailable); what arrived is
    /// kept in the part file and the next attempt resumes from it.
    #[error("the download was interrupted: {0}")]
    Interrupted(String),
    /// The source served bytes that are not the package (its own digest check failed, or
    /// it refused the range): the part file is deleted and the plan rolled back.
    #[error("the package source served a corrupt package: {0}")]
    Corrupt(String),
    /// Writing the part file failed; `StorageFull` / `QuotaExceeded` mean the disk is full.
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Serves packages from a directory holding one file per package, named by its SHA-256.
#[derive(Debug, Clone)]
pub struct DirFetcher {
    dir: PathBuf,
    /// Throttle to this many bytes per second (tests: time to kill the agent mid-download).
    pub bytes_per_second: Option<u64>,
    /// Stop with `Interrupted` after delivering this many bytes in one call (tests: resume).
    pub interrupt_after: Option<u64>,
}

impl DirFetcher {
    pub fn new(dir: impl Into<PathBuf>) -> DirFetcher {
        DirFetcher {
            dir: dir.into(),
            bytes_per_second: None,
            interrupt_after: None,
        }
    }
}

impl Fetcher for DirFetcher {
    fn fetch(
        &self,
        sha256: &str,
        size: u64,
        dest: &Path,
        resume_from: u64,
    ) -> Result<(), FetchError> {
        let source_path = self.dir.join(sha256);
        let mut source = match File::open(&source_path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(FetchError::NotFound {
                    sha256: sha256.to_owned(),
                });
            }
            Err(e) => {
                return Err(FetchError::Interrupted(format!(
                    "cannot open {}: {e}",
                    source_path.display()
                )));
            }
        };
        source
            .seek(SeekFrom::Start(resume_from))
            .map_err(|e| FetchError::Interrupted(format!("{}: {e}", source_path.display())))?;
        let write_error = |source| FetchError::Write {
            path: dest.to_owned(),
            source,
        };
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            // The executor made the part file; a symlink in its place is not written through.
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(dest)
            .map_err(write_error)?;
        let mut remaining = size.saturating_sub(resume_from);
        let mut delivered: u64 = 0;
        let started = Instant::now();
        let mut buf = vec![0u8; 16 << 10];
        while remaining > 0 {
            let want = buf.len().min(remaining as usize);
            let want = match self.interrupt_after {
                Some(limit) if delivered >= limit => {
                    out.sync_all().map_err(write_error)?;
                    return Err(FetchError::Interrupted(format!(
                        "the source stopped after {delivered} bytes"
                    )));
                }
                Some(limit) => want.min((limit - delivered) as usize),
                None => want,
            };
            let n = source
                .read(&mut buf[..want])
                .map_err(|e| FetchError::Interrupted(format!("{}: {e}", source_path.display())))?;
            if n == 0 {
                break; // A short source: the executor's size check reports it.
            }
            out.write_all(&buf[..n]).map_err(write_error)?;
            delivered += n as u64;
            remaining -= n as u64;
            if let Some(rate) = self.bytes_per_second.filter(|r| *r > 0) {
                let due = Duration::from_secs_f64(delivered as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        out.sync_all().map_err(write_error)?;
        Ok(())
    }
}

/// The length of a file, or 0 when it does not exist.
pub(super) fn len_or_zero(path: &Path) -> io::Result<u64> {
    match fs::metadata(path) {
        Ok(meta) => Ok(meta.len()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resumes_and_stops_where_told() {
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(dir.path().join("abc"), &content).unwrap();
        let dest = dir.path().join("abc.part");
        let mut fetcher = DirFetcher::new(dir.path());
        fetcher.interrupt_after = Some(30_000);
        let err = fetcher.fetch("abc", 100_000, &dest, 0).unwrap_err();
        assert!(matches!(err, FetchError::Interrupted(_)), "{err}");
        assert_eq!(len_or_zero(&dest).unwrap(), 30_000);
        fetcher.interrupt_after = None;
        fetcher.fetch("abc", 100_000, &dest, 30_000).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), content);
        let err = fetcher
            .fetch("missing", 1, &dir.path().join("m.part"), 0)
            .unwrap_err();
        assert!(matches!(err, FetchError::NotFound { .. }), "{err}");
    }

    #[test]
    fn never_writes_more_than_the_declared_size() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("big"), vec![7u8; 5000]).unwrap();
        let dest = dir.path().join("big.part");
        DirFetcher::new(dir.path())
            .fetch("big", 1000, &dest, 0)
            .unwrap();
        assert_eq!(len_or_zero(&dest).unwrap(), 1000);
    }
}
