//! The content (the uncompressed tar) of the active `archive` release, which definition
//! deltas apply to (SPEC §3.4): kept as `<state>/content/<sha256>.tar` (0600, only the active
//! release's) after a verified install, and a package's content rebuilt from a delta
//! (`<download dir>/<package sha256>.tar`) inspected and unpacked in place of the package.
//! Nothing here trusts the kept file: whoever applies a delta to it hashes it again first.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use herd_fs::Dir;
use herd_package::Inspection;
use sha2::{Digest, Sha256};

use super::{Executor, hex};

/// The directory of the kept content, under the state directory.
pub const CONTENT_DIR: &str = "content";
/// The largest content kept: past it, deltas are not worth the disk (nor the memory to apply).
pub const MAX_KEPT_CONTENT: u64 = 1 << 30;

/// Where a package's bytes are for its install: the package file, or its content rebuilt
/// from a delta.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Source {
    Package(PathBuf),
    Content(PathBuf),
}

impl Source {
    pub(super) fn path(&self) -> &Path {
        match self {
            Source::Package(path) | Source::Content(path) => path,
        }
    }

    /// Inspects the package (or its content) without writing anything.
    pub(super) fn inspect(&self) -> Result<Inspection, String> {
        match self {
            Source::Package(path) => herd_package::inspect_file(path).map_err(|e| e.to_string()),
            Source::Content(path) => {
                let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
                herd_package::archive::inspect_tar(
                    &path.display().to_string(),
                    BufReader::new(file),
                )
                .map_err(|e| e.to_string())
            }
        }
    }

    /// Unpacks it into a new directory `staging_name` under `parent` (replacing one a crash
    /// left); on any error the staging directory is gone.
    pub(super) fn unpack(&self, parent: &Dir, staging_name: &str) -> Result<Inspection, String> {
        let path = match self {
            Source::Package(path) => {
                return herd_package::unpack_file(path, parent, staging_name)
                    .map_err(|e| e.to_string());
            }
            Source::Content(path) => path,
        };
        let name = OsStr::new(staging_name);
        parent.remove_tree(name).map_err(|e| e.to_string())?;
        let staging = parent.create_dir(name, 0o700).map_err(|e| e.to_string())?;
        let result = File::open(path)
            .map_err(|e| format!("{}: {e}", path.display()))
            .and_then(|file| {
                herd_package::unpack_tar(
                    &path.display().to_string(),
                    BufReader::new(file),
                    &staging,
                )
                .map_err(|e| e.to_string())
            });
        drop(staging);
        match result {
            Ok(inspection) => {
                parent.sync().map_err(|e| e.to_string())?;
                Ok(inspection)
            }
            Err(why) => {
                let _ = parent.remove_tree(name);
                Err(why)
            }
        }
    }
}

impl Executor {
    /// Where the active release's content is kept: `<state>/content/`.
    pub fn content_dir(&self) -> PathBuf {
        self.config.state_dir.join(CONTENT_DIR)
    }

    /// Keeps the content of the release `source` installed as `<state>/content/<sha256>.tar`
    /// and removes any other kept content; the name of the file kept.
    pub(super) fn keep_content(&self, source: &Source) -> Result<String, String> {
        let content = match source {
            Source::Content(path) => read_bounded(path, MAX_KEPT_CONTENT)?,
            Source::Package(path) => {
                let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
                herd_package::content_of(file, MAX_KEPT_CONTENT)
                    .map_err(|e| format!("{}: {e}", path.display()))?
            }
        };
        let dir = self.content_dir();
        std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o700)
            .create(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = format!("{}.tar", hex(&Sha256::digest(&content)));
        herd_fs::write_atomic(&dir.join(&name), &content, 0o600)
            .map_err(|e| format!("{}: {e}", dir.join(&name).display()))?;
        self.forget_content(Some(&name));
        Ok(name)
    }

    /// Removes the kept content but `keep`.
    pub(super) fn forget_content(&self, keep: Option<&str>) {
        let Ok(entries) = fs::read_dir(self.content_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            if Some(entry.file_name().as_os_str()) != keep.map(OsStr::new) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// The bytes of the regular file at `path`, refused past `max`.
fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let fail = |e: io::Error| format!("{}: {e}", path.display());
    let len = fs::symlink_metadata(path).map_err(fail)?.len();
    if len > max {
        return Err(format!("{}: {len} bytes, more than {max}", path.display()));
    }
    fs::read(path).map_err(fail)
}
