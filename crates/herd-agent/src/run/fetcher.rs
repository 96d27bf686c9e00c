//! Packages from the center: the executor's [`Fetcher`] over `Client::download_package`
//! (HTTP `Range` resumption and SHA-256 verification are the client's; the executor checks
//! size and digest again before installing anything).

use std::io;
use std::path::Path;

use herd_client::{Client, ClientError};

use crate::execute::{FetchError, Fetcher};

#[derive(Debug)]
pub(crate) struct CenterFetcher<'a> {
    pub client: &'a Client,
}

impl Fetcher for CenterFetcher<'_> {
    fn fetch(
        &self,
        sha256: &str,
        size: u64,
        dest: &Path,
        _resume_from: u64,
    ) -> Result<(), FetchError> {
        // The client resumes from whatever `dest` holds, which is `resume_from` bytes.
        match self.client.download_package(sha256, size, dest) {
            Ok(()) => Ok(()),
            Err(err) => Err(classify(err, sha256, || disk_full(dest, size))),
        }
    }
}

/// What a failed download means for the executor, decided on the kind of failure alone:
/// retry later and resume (`Interrupted`), roll the plan back (`Corrupt`, `NotFound`), or a
/// local write failure (`Write`; the executor defers on a full disk rather than truncating).
/// `disk_full` asks the file system, for write errors whose kind does not say so.
fn classify(err: ClientError, sha256: &str, disk_full: impl FnOnce() -> bool) -> FetchError {
    match err {
        ClientError::Refused { status: 404, .. } => FetchError::NotFound {
            sha256: sha256.to_owned(),
        },
        ClientError::LocalIo {
            path, kind, detail, ..
        } => {
            let kind = if disk_full() {
                io::ErrorKind::StorageFull
            } else {
                kind
            };
            FetchError::Write {
                path,
                source: io::Error::new(kind, detail),
            }
        }
        // Bytes that are not the package (wrong digest, length or range; the client deleted
        // them) or a digest that cannot be one: the plan is rolled back rather than retried
        // against the same source.
        ClientError::Corrupt { .. } | ClientError::Invalid(_) => {
            FetchError::Corrupt(err.to_string())
        }
        // No answer, an answer cut short (what arrived is kept and the next attempt resumes),
        // a certificate the center must fix, a 5xx or any other refusal of the center's: the
        // package is still what the plan needs, so try again later.
        ClientError::Unreachable { .. }
        | ClientError::Certificate { .. }
        | ClientError::Interrupted { .. }
        | ClientError::Refused { .. }
        | ClientError::RejectedWhileSending { .. } => FetchError::Interrupted(err.to_string()),
    }
}

/// Whether the volume of `dest` lacks room for the rest of the package.
fn disk_full(dest: &Path, size: u64) -> bool {
    let have = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
    let dir = dest.parent().unwrap_or(Path::new("."));
    match nix::sys::statvfs::statvfs(dir) {
        Ok(stats) => {
            let free = stats
                .blocks_available()
                .saturating_mul(stats.fragment_size());
            free < size.saturating_sub(have)
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_sorted_by_their_kind() {
        let dest = Path::new("/state/downloads/abc.part");
        let kind = |e: FetchError| match e {
            FetchError::NotFound { .. } => "not found",
            FetchError::Interrupted(_) => "interrupted",
            FetchError::Corrupt(_) => "corrupt",
            FetchError::Write { source, .. } if source.kind() == io::ErrorKind::StorageFull => {
                "disk full"
            }
            FetchError::Write { .. } => "write",
        };
        let decide = |err: ClientError| kind(classify(err, "abc", || false));
        let refused = |status: u16, code: &str| ClientError::Refused {
            status,
            code: code.to_owned(),
            message: String::new(),
            problems: vec![],
        };
        let server = || "https://127.0.0.1:1".to_owned();
        let what = || "GET /v1/packages/abc".to_owned();
        // Words that once decided the outcome no longer matter: only the variant does.
        let misleading = "cannot write: the center's answer ended after 5 of 10 bytes".to_owned();

        assert_eq!(decide(refused(404, "not_found")), "not found");
        assert_eq!(decide(refused(503, "unavailable")), "interrupted");
        assert_eq!(decide(refused(401, "unauthenticated")), "interrupted");
        let unreachable = ClientError::Unreachable {
            server: server(),
            detail: misleading.clone(),
        };
        assert_eq!(decide(unreachable), "interrupted");
        let certificate = ClientError::Certificate {
            server: server(),
            detail: misleading.clone(),
        };
        assert_eq!(decide(certificate), "interrupted");
        let interrupted = ClientError::Interrupted {
            server: server(),
            what: what(),
            detail: "the package has SHA-256 def; the download was deleted".to_owned(),
        };
        assert_eq!(decide(interrupted), "interrupted");
        let corrupt = ClientError::Corrupt {
            server: server(),
            what: what(),
            detail: misleading.clone(),
        };
        assert_eq!(decide(corrupt), "corrupt");
        assert_eq!(decide(ClientError::Invalid(misleading.clone())), "corrupt");

        let local = |kind: io::ErrorKind| ClientError::LocalIo {
            path: dest.to_owned(),
            doing: "write",
            kind,
            detail: "the answer ended after".to_owned(),
        };
        assert_eq!(decide(local(io::ErrorKind::StorageFull)), "disk full");
        assert_eq!(decide(local(io::ErrorKind::PermissionDenied)), "write");
        // A full disk the error kind does not name is recognised by asking the file system.
        let full = classify(local(io::ErrorKind::Other), "abc", || true);
        assert_eq!(kind(full), "disk full");
        match classify(local(io::ErrorKind::PermissionDenied), "abc", || false) {
            FetchError::Write { path, .. } => assert_eq!(path, dest),
            other => panic!("expected Write, got {other:?}"),
        }
    }
}
