//! The agent's state directories and files: their modes, creating directories, and reading a
//! file that may not exist. Not the writes: every durable write goes through `herd_fs`
//! (`write_atomic`), which keeps a file whole across crashes.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Mode of files holding secrets (the private key) or the terminal's data.
pub(crate) const PRIVATE_FILE: u32 = 0o600;
/// Mode of directories holding them.
pub(crate) const PRIVATE_DIR: u32 = 0o700;

/// Creates `dir` (and its parents) if needed; a directory this creates gets `mode`. An existing
/// directory keeps its mode: the operator may have chosen it.
pub(crate) fn create_dir(dir: &Path, mode: u32) -> io::Result<()> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a directory",
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    DirBuilder::new().recursive(true).mode(mode).create(dir)
}

/// Creates `dir` if needed and makes sure only the owner can use it (for the identity).
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    create_dir(dir, PRIVATE_DIR)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(PRIVATE_DIR))
}

/// Reads a file, `None` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_file_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_optional(&dir.path().join("absent")).unwrap(), None);
        fs::write(dir.path().join("present"), b"x").unwrap();
        assert_eq!(
            read_optional(&dir.path().join("present")).unwrap(),
            Some(b"x".to_vec())
        );
    }

    #[test]
    fn private_directories_are_owner_only_and_files_are_not_directories() {
        let dir = tempfile::tempdir().unwrap();
        let identity = dir.path().join("state/identity");
        create_private_dir(&identity).unwrap();
        let mode = fs::metadata(&identity).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let file = dir.path().join("file");
        fs::write(&file, b"x").unwrap();
        let err = create_dir(&file, PRIVATE_DIR).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }
}
