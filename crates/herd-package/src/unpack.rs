//! Unpacking a package into a staging directory from the same single pass over its tar stream
//! that checks it (`archive::read_package`), so nothing is written that was not checked first,
//! and nothing is read by a second parser.
//!
//! The staging directory is created fresh with mode 0700 and reached only through directory
//! handles (`herd_fs::Dir`): every directory is made with `mkdirat` and opened with
//! `O_NOFOLLOW`, every file created with `O_CREAT | O_EXCL | O_NOFOLLOW` relative to its
//! parent's handle, written, given to the agent's own user (the process's effective uid and
//! gid, set explicitly so no owner from the archive ever applies), given mode 0644 or 0755
//! (never group- or world-writable, never setuid, setgid or sticky), and synced. Only once the
//! whole package checked out is the staging directory opened up to 0755 and synced; on any
//! refusal it is removed.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::path::Path;

use herd_fs::{Dir, DirError};
use nix::unistd::{Gid, Uid, fchown, getegid, geteuid};

use crate::archive::{self, InspectError, Inspection, MemberKind};
use crate::installed::read_decompressed;

/// Mode of unpacked directories and executables.
const EXECUTABLE_MODE: u32 = 0o755;
/// Mode of other unpacked files.
const FILE_MODE: u32 = 0o644;

/// Why a package could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The package itself was refused (a member, its manifest, the tar format).
    #[error(transparent)]
    Refused(#[from] InspectError),
    /// The staging directory could not be prepared or finished.
    #[error("the staging directory: {0}")]
    Staging(#[from] DirError),
}

/// Unpacks the package file at `package` (gzip, zstd or plain tar) into a new directory
/// `staging_name` under `parent`, replacing a staging directory a crash left there. Returns the
/// package's inspection; on any error the staging directory is gone.
pub fn unpack_file(
    package: &Path,
    parent: &Dir,
    staging_name: &str,
) -> Result<Inspection, UnpackError> {
    let document = package.display().to_string();
    let name = OsStr::new(staging_name);
    parent.remove_tree(name)?;
    let staging = parent.create_dir(name, 0o700)?;
    let result = read_decompressed(package, &mut |reader| {
        archive::read_package(&document, reader, &mut |path, kind, data| {
            write_member(&staging, path, kind, data).map_err(|e| format!("cannot unpack it: {e}"))
        })
    })
    .map_err(UnpackError::from)
    .and_then(|inspection| {
        finish(&staging, &inspection)?;
        Ok(inspection)
    });
    match result {
        Ok(inspection) => {
            parent.sync()?;
            Ok(inspection)
        }
        Err(e) => {
            drop(staging);
            // The refusal is what matters; a staging directory left behind is removed again
            // before the next unpack.
            let _ = parent.remove_tree(name);
            Err(e)
        }
    }
}

/// Unpacks an uncompressed tar stream into `staging` (an empty directory the caller made):
/// the core of [`unpack_file`], for callers that already hold the stream.
pub fn unpack_tar(
    document: &str,
    reader: impl Read,
    staging: &Dir,
) -> Result<Inspection, UnpackError> {
    let inspection = archive::read_package(document, reader, &mut |path, kind, data| {
        write_member(staging, path, kind, data).map_err(|e| format!("cannot unpack it: {e}"))
    })?;
    finish(staging, &inspection)?;
    Ok(inspection)
}

/// Syncs every unpacked directory and opens the staging directory to 0755, so hooks running
/// as an unprivileged user can read the product (but not change it).
fn finish(staging: &Dir, inspection: &Inspection) -> Result<(), DirError> {
    // Every directory: those the package lists, and those made as the parents of members.
    let mut dirs = std::collections::BTreeSet::new();
    for (path, kind) in &inspection.members {
        if *kind == MemberKind::Dir {
            dirs.insert(path.as_str());
        }
        let mut end = 0;
        while let Some(slash) = path[end..].find('/') {
            dirs.insert(&path[..end + slash]);
            end += slash + 1;
        }
    }
    for path in dirs.iter().rev() {
        open_path(staging, path, false)?.sync()?;
    }
    give_to_agent(staging).map_err(|source| DirError::Io {
        path: staging.path().to_owned(),
        action: "setting the owner",
        source,
    })?;
    staging.set_mode(EXECUTABLE_MODE)?;
    staging.sync()
}

/// Writes one checked member below `staging`.
fn write_member(
    staging: &Dir,
    path: &str,
    kind: &MemberKind,
    data: &mut dyn Read,
) -> Result<(), DirError> {
    let (parent_path, name) = match path.rsplit_once('/') {
        Some((parent, name)) => (Some(parent), name),
        None => (None, path),
    };
    let opened;
    let parent = match parent_path {
        Some(p) => {
            opened = open_path(staging, p, true)?;
            &opened
        }
        None => staging,
    };
    let name = OsStr::new(name);
    let io_error = |action, source: io::Error| DirError::Io {
        path: parent.path().join(name),
        action,
        source,
    };
    match kind {
        MemberKind::Dir => {
            let dir = match parent.create_dir(name, EXECUTABLE_MODE) {
                // Made already as the parent of an earlier member.
                Err(DirError::Exists { .. }) => parent.open_dir(name)?,
                other => other?,
            };
            give_to_agent(&dir).map_err(|e| io_error("setting the owner", e))
        }
        MemberKind::File { size, executable } => {
            let mut file = parent.create_file(name, 0o600)?;
            let written = io::copy(data, &mut file).map_err(|e| io_error("writing", e))?;
            if written != *size {
                return Err(io_error(
                    "writing",
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{written} of {size} bytes"),
                    ),
                ));
            }
            // The owner before the mode, so the file is never readable by anyone else with
            // its final content while it still belongs to someone else.
            give_to_agent(&file).map_err(|e| io_error("setting the owner", e))?;
            let mode = if *executable {
                EXECUTABLE_MODE
            } else {
                FILE_MODE
            };
            nix::sys::stat::fchmod(&file, nix::sys::stat::Mode::from_bits_truncate(mode))
                .map_err(|e| io_error("setting the mode", e.into()))?;
            file.sync_all().map_err(|e| io_error("syncing", e))
        }
    }
}

/// Sets the owner of an unpacked file to the agent's own (effective) user and group: whatever
/// the archive said, and whatever group a set-group-ID parent would have given.
fn give_to_agent(fd: &impl std::os::fd::AsFd) -> io::Result<()> {
    let (uid, gid): (Uid, Gid) = (geteuid(), getegid());
    fchown(fd, Some(uid), Some(gid)).map_err(io::Error::from)
}

/// Opens `path` (relative, checked) below `root` through handles, creating missing
/// directories (mode 0755, the agent's) when `create` is set.
fn open_path(root: &Dir, path: &str, create: bool) -> Result<Dir, DirError> {
    let mut current: Option<Dir> = None;
    for part in path.split('/') {
        let base = current.as_ref().unwrap_or(root);
        let part = OsStr::new(part);
        let next = match base.open_dir(part) {
            Err(DirError::Io { source, .. })
                if create && source.kind() == io::ErrorKind::NotFound =>
            {
                let dir = base.create_dir(part, EXECUTABLE_MODE)?;
                give_to_agent(&dir).map_err(|source| DirError::Io {
                    path: dir.path().to_owned(),
                    action: "setting the owner",
                    source,
                })?;
                dir
            }
            other => other?,
        };
        current = Some(next);
    }
    current.ok_or_else(|| DirError::BadName {
        path: root.path().join(path),
    })
}
