//! Packages from a mirror: the executor's `Fetcher` over `/tuf/targets/{dir}/{sha256}.{name}`
//! (TUF's consistent-snapshot target names), resuming with `Range`, bounded by the target's
//! signed length and a minimum rate (slow retrieval). The executor checks the bytes against
//! the step's length and SHA-256, which verification made equal to the signed ones.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use herd_client::{ReadLimits, Repository, RepositoryError};
use herd_proto::distribution::{TARGETS_PATH, consistent_target_name};

use crate::execute::{FetchError, Fetcher};

#[derive(Debug)]
pub struct MirrorFetcher<'a> {
    pub upstream: &'a Repository,
    /// Target paths by SHA-256, from the verified plan.
    pub targets: &'a BTreeMap<String, String>,
}

impl Fetcher for MirrorFetcher<'_> {
    fn fetch(
        &self,
        sha256: &str,
        size: u64,
        dest: &Path,
        resume_from: u64,
    ) -> Result<(), FetchError> {
        let target = self
            .targets
            .get(sha256)
            .ok_or_else(|| FetchError::NotFound {
                sha256: sha256.to_owned(),
            })?;
        let path = format!("{TARGETS_PATH}{}", consistent_target_name(target, sha256));
        let write_error = |source| FetchError::Write {
            path: dest.to_owned(),
            source,
        };
        let open = |truncate: bool| {
            OpenOptions::new()
                .write(true)
                .append(!truncate)
                .truncate(truncate)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(dest)
        };
        let mut file = open(false).map_err(write_error)?;
        let limits = ReadLimits::target(size);
        let done = self
            .upstream
            .download(&path, limits, resume_from, &mut file)
            .map_err(|e| classify(e, dest))?;
        if !done {
            // The mirror cannot serve a range: start over with the whole target.
            let mut file = open(true).map_err(write_error)?;
            self.upstream
                .download(&path, limits, 0, &mut file)
                .map_err(|e| classify(e, dest))?;
            file.sync_all().map_err(write_error)?;
            return Ok(());
        }
        file.sync_all().map_err(write_error)
    }
}

fn classify(error: RepositoryError, dest: &Path) -> FetchError {
    match error {
        RepositoryError::NotFound { url } => FetchError::NotFound { sha256: url },
        RepositoryError::TooLarge { .. } => FetchError::Corrupt(error.to_string()),
        RepositoryError::Local { kind, detail, .. } => FetchError::Write {
            path: dest.to_owned(),
            source: std::io::Error::new(kind, detail),
        },
        RepositoryError::Slow { .. }
        | RepositoryError::Unavailable { .. }
        | RepositoryError::Invalid(_) => FetchError::Interrupted(error.to_string()),
    }
}
