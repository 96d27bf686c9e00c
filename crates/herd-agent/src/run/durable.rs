//! Crash-safe file writes for the agent's state: a file is either its old content or its new
//! content after a crash, never a mix, and once a write returns it survives power loss.
//! (temporary file in the same directory, fsync, rename over the target, fsync of the directory).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of files holding secrets (the private key) or the terminal's data.
pub(crate) const PRIVATE_FILE: u32 = 0o600;
/// Mode of directories holding them.
pub(crate) const PRIVATE_DIR: u32 = 0o700;

/// Replaces `path` with `bytes` atomically and durably; the file gets `mode` (before any byte
/// is written, so a secret is never readable by others, not even briefly).
pub(crate) fn write_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = parent(path);
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(path.file_name().unwrap_or_default());
    temp_name.push(".tmp");
    let temp = dir.join(temp_name);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temp)?;
        // `mode` applies only when the file is created; a leftover temporary file keeps its
        // own, so set it explicitly.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    sync_dir(dir)
}

/// Makes the directory entries of `dir` (creations, renames, removals) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

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

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_atomically_with_the_requested_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write_file(&path, b"first", PRIVATE_FILE).unwrap();
        write_file(&path, b"second", PRIVATE_FILE).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["key.pem"], "no temporary file is left behind");
        assert_eq!(read_optional(&dir.path().join("absent")).unwrap(), None);
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
