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
            Err(err) => Err(classify(err, sha256, dest, disk_full(dest, size))),
        }
    }
}

/// What a failed download means for the executor. The client reports local trouble and
/// answers that are not the package as `Other` with words; a full disk is recognised by asking
/// the file system (the executor refuses rather than truncates), local I/O by the client's
/// `cannot <verb> <path>` form.
fn classify(err: ClientError, sha256: &str, dest: &Path, disk_full: bool) -> FetchError {
    match err {
        err if err.status() == Some(404) => FetchError::NotFound {
            sha256: sha256.to_owned(),
        },
        ClientError::Other(message) if disk_full => FetchError::Write {
            path: dest.to_owned(),
            source: io::Error::new(io::ErrorKind::StorageFull, message),
        },
        ClientError::Other(message) if message.starts_with("cannot ") => FetchError::Write {
            path: dest.to_owned(),
            source: io::Error::other(message),
        },
        // A body cut short: what arrived is kept and the next attempt resumes.
        ClientError::Other(message) if message.contains("ended after") => {
            FetchError::Interrupted(message)
        }
        // Bytes that are not the package (wrong digest, wrong length or range): the client
        // deleted them; the plan is rolled back rather than retried against the same source.
        ClientError::Other(message) => FetchError::Corrupt(message),
        // Unreachable, 5xx, a refused certificate: try again later.
        err => FetchError::Interrupted(err.to_string()),
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
    fn failures_are_sorted_by_what_the_executor_should_do() {
        let dest = Path::new("/state/downloads/abc.part");
        let other = |m: &str| ClientError::Other(m.to_owned());
        let kind = |e: FetchError| match e {
            FetchError::NotFound { .. } => "not found",
            FetchError::Interrupted(_) => "interrupted",
            FetchError::Corrupt(_) => "corrupt",
            FetchError::Write { source, .. } if source.kind() == io::ErrorKind::StorageFull => {
                "disk full"
            }
            FetchError::Write { .. } => "write",
        };
        let api = |status: u16, code: &str| ClientError::Api {
            status,
            code: code.to_owned(),
            message: String::new(),
            problems: vec![],
        };
        assert_eq!(
            kind(classify(api(404, "not_found"), "abc", dest, false)),
            "not found"
        );
        assert_eq!(
            kind(classify(api(503, "unavailable"), "abc", dest, false)),
            "interrupted"
        );
        let unreachable = ClientError::Unreachable {
            server: "https://127.0.0.1:1".into(),
            detail: "the download of package abc broke off".into(),
        };
        assert_eq!(
            kind(classify(unreachable, "abc", dest, false)),
            "interrupted"
        );
        let mismatch = "package abc from https://c: the 10 bytes received have SHA-256 def; the \
                        download was deleted";
        assert_eq!(
            kind(classify(other(mismatch), "abc", dest, false)),
            "corrupt"
        );
        let short = "GET /v1/packages/abc: the center's answer ended after 5 of 10 bytes";
        assert_eq!(
            kind(classify(other(short), "abc", dest, false)),
            "interrupted"
        );
        let local = "cannot write /state/downloads/abc.part: No space left on device (os error 28)";
        assert_eq!(kind(classify(other(local), "abc", dest, true)), "disk full");
        let local = "cannot open /state/downloads/abc.part: Permission denied (os error 13)";
        assert_eq!(kind(classify(other(local), "abc", dest, false)), "write");
    }
}
