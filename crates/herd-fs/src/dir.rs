//! Directory handles: acting on paths a local user can change without ever following a
//! symbolic link, for the agent's work as root in user-writable places (quarantine, restore,
//! downloads) and under its product prefix (unpacking packages, removing versions).
//!
//! A [`Dir`] is an open directory descriptor. [`Dir::open`] walks a path from `/` one
//! component at a time with `openat(O_DIRECTORY | O_NOFOLLOW)`, so a component swapped for a
//! symlink is refused instead of followed; every later operation is relative to the handle
//! (`openat`, `mkdirat`, `unlinkat`, `renameat`), so swapping a directory for a symlink after it
//! was opened changes nothing the handle refers to. Files are created exclusively
//! (`O_CREAT | O_EXCL | O_NOFOLLOW`), and a file is removed only while its name still refers to
//! the (device, inode) the caller checked ([`Dir::remove_file_if_same`]).
//!
//! Not a general file-system toolkit: only what the agent needs to act safely as root.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, fsync, unlinkat};

/// A file's identity on this machine: what a scan saw, checked again before acting on a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub fn of_stat(stat: &FileStat) -> FileId {
        FileId {
            dev: stat.st_dev,
            ino: stat.st_ino,
        }
    }

    pub fn of_metadata(meta: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    /// The identity of an open file (or directory) descriptor.
    pub fn of_fd(fd: impl AsFd) -> io::Result<FileId> {
        Ok(FileId::of_stat(
            &fstat(fd.as_fd()).map_err(io::Error::from)?,
        ))
    }
}

/// Why a directory-handle operation was refused or failed; each names the path it was about.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error(
        "{path}: {component:?} is a symbolic link or not a directory; refusing to go through it"
    )]
    NotADirectory { path: PathBuf, component: OsString },
    #[error("{path}: is a symbolic link or not a regular file; refusing to open it")]
    NotARegularFile { path: PathBuf },
    #[error("{path}: a '..' part or an empty name is not allowed here")]
    BadName { path: PathBuf },
    #[error("{path}: already exists; refusing to replace it")]
    Exists { path: PathBuf },
    #[error(
        "{path}: is no longer the file that was checked (it was replaced or moved); left alone"
    )]
    Replaced { path: PathBuf },
    #[error("{path}: {why}; refusing to keep files there")]
    NotPrivate { path: PathBuf, why: String },
    #[error("{path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
}

impl DirError {
    fn io(path: &Path, action: &'static str, errno: Errno) -> DirError {
        DirError::Io {
            path: path.to_owned(),
            action,
            source: io::Error::from(errno),
        }
    }

    /// The underlying I/O error kind, for callers that decide on it (`NotFound`, a full disk).
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            DirError::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

/// An open directory, remembered with the path it was opened as (for messages only: no
/// operation goes through the path again).
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

impl Dir {
    /// Opens `path` component by component without following a symlink at any of them.
    /// A relative path starts at the working directory; `..` is refused.
    pub fn open(path: &Path) -> Result<Dir, DirError> {
        let start = if path.is_absolute() { "/" } else { "." };
        let mut dir = Dir::open_followed(Path::new(start))?;
        for component in path.components() {
            match component {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(name) => {
                    let next = dir.open_dir(name)?;
                    dir = Dir {
                        fd: next.fd,
                        path: dir.path.join(name),
                    };
                }
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(DirError::BadName {
                        path: path.to_owned(),
                    });
                }
            }
        }
        dir.path = path.to_owned();
        Ok(dir)
    }

    /// Opens the parent of `path` as [`Dir::open`] does, and returns it with the final name.
    pub fn open_parent(path: &Path) -> Result<(Dir, OsString), DirError> {
        let bad = || DirError::BadName {
            path: path.to_owned(),
        };
        let name = match path.components().next_back() {
            Some(Component::Normal(name)) => name.to_owned(),
            _ => return Err(bad()),
        };
        let parent = match path.parent() {
            Some(p) if p.as_os_str().is_empty() => Path::new("."),
            Some(p) => p,
            None => return Err(bad()),
        };
        Ok((Dir::open(parent)?, name))
    }

    /// Opens a directory the operator configured (a prefix, a state directory), following
    /// symlinks in `path` itself: the operator chose it. Everything below is then reached
    /// through handles.
    pub fn open_followed(path: &Path) -> Result<Dir, DirError> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::open(path, flags, Mode::empty())
            .map_err(|e| DirError::io(path, "opening the directory", e))?;
        Ok(Dir {
            fd,
            path: path.to_owned(),
        })
    }

    /// Opens (creating it with mode 0700 if missing, its parents as `create_dir_all` would)
    /// a directory only this process's user may change: the last component must not be a
    /// symlink, it must belong to the effective uid and not be group- or world-writable.
    /// For directories where the agent keeps files it later trusts (downloads, quarantine).
    pub fn open_private(path: &Path) -> Result<Dir, DirError> {
        let (parent, name) = match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) => {
                let parent = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
                std::fs::create_dir_all(parent).map_err(|source| DirError::Io {
                    path: parent.to_owned(),
                    action: "creating the directory",
                    source,
                })?;
                (Dir::open_followed(parent)?, name)
            }
            _ => {
                return Err(DirError::BadName {
                    path: path.to_owned(),
                });
            }
        };
        let dir = match parent.create_dir(name, 0o700) {
            Err(DirError::Exists { .. }) => parent.open_dir(name),
            other => other,
        }
        .map_err(|e| match e {
            DirError::NotADirectory { path, .. } => DirError::NotPrivate {
                path,
                why: "is a symbolic link or not a directory".into(),
            },
            other => other,
        })?;
        let stat = dir.stat()?;
        let euid = nix::unistd::geteuid().as_raw();
        if stat.st_uid != euid {
            return Err(DirError::NotPrivate {
                path: path.to_owned(),
                why: format!(
                    "belongs to uid {}, not to this process (uid {euid})",
                    stat.st_uid
                ),
            });
        }
        if stat.st_mode & 0o022 != 0 {
            return Err(DirError::NotPrivate {
                path: path.to_owned(),
                why: format!(
                    "mode {:o} lets other users change what is in it",
                    stat.st_mode & 0o7777
                ),
            });
        }
        Ok(Dir {
            fd: dir.fd,
            path: path.to_owned(),
        })
    }

    /// The path this handle was opened as (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn child(&self, name: &OsStr) -> Result<PathBuf, DirError> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') {
            return Err(DirError::BadName {
                path: self.path.join(name),
            });
        }
        Ok(self.path.join(name))
    }

    /// The directory's own status.
    pub fn stat(&self) -> Result<FileStat, DirError> {
        fstat(self.fd.as_fd()).map_err(|e| DirError::io(&self.path, "stat", e))
    }

    /// The status of `name` in this directory, not following a symlink; `None` if absent.
    pub fn stat_at(&self, name: &OsStr) -> Result<Option<FileStat>, DirError> {
        let path = self.child(name)?;
        match fstatat(self.fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(stat)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(DirError::io(&path, "stat", e)),
        }
    }

    /// Opens the subdirectory `name`, refusing a symlink.
    pub fn open_dir(&self, name: &OsStr) -> Result<Dir, DirError> {
        let path = self.child(name)?;
        match openat(self.fd.as_fd(), name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => Ok(Dir { fd, path }),
            Err(Errno::ELOOP | Errno::ENOTDIR) => Err(DirError::NotADirectory {
                path,
                component: name.to_owned(),
            }),
            Err(e) => Err(DirError::io(&path, "opening the directory", e)),
        }
    }

    /// Creates the subdirectory `name` with exactly `mode` (whatever the umask) and opens it.
    /// Refuses an existing entry of that name.
    pub fn create_dir(&self, name: &OsStr, mode: u32) -> Result<Dir, DirError> {
        let path = self.child(name)?;
        match mkdirat(self.fd.as_fd(), name, Mode::from_bits_truncate(mode)) {
            Ok(()) => {}
            Err(Errno::EEXIST) => return Err(DirError::Exists { path }),
            Err(e) => return Err(DirError::io(&path, "creating the directory", e)),
        }
        let dir = self.open_dir(name)?;
        fchmod(dir.fd.as_fd(), Mode::from_bits_truncate(mode))
            .map_err(|e| DirError::io(&path, "setting the mode", e))?;
        Ok(dir)
    }

    /// Creates the regular file `name` exclusively (`O_CREAT | O_EXCL | O_NOFOLLOW`), with
    /// `mode` (before the umask; callers set the final mode with `fchmod` once its owner is
    /// right). Refuses anything already there, a symlink included.
    pub fn create_file(&self, name: &OsStr, mode: u32) -> Result<File, DirError> {
        let path = self.child(name)?;
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match openat(self.fd.as_fd(), name, flags, Mode::from_bits_truncate(mode)) {
            Ok(fd) => Ok(File::from(fd)),
            Err(Errno::EEXIST) => Err(DirError::Exists { path }),
            Err(e) => Err(DirError::io(&path, "creating the file", e)),
        }
    }

    /// Opens the regular file `name` for reading, refusing a symlink, and anything that is not
    /// a regular file (opened non-blocking, so a FIFO planted there cannot hang the open).
    pub fn open_file(&self, name: &OsStr) -> Result<File, DirError> {
        self.open_file_with(name, OFlag::O_RDONLY)
    }

    /// Like [`Dir::open_file`] with other access flags (`O_RDWR`, `O_APPEND`, `O_CREAT`…);
    /// `O_NOFOLLOW` and `O_CLOEXEC` are always added, and a new file gets mode 0600.
    pub fn open_file_with(&self, name: &OsStr, flags: OFlag) -> Result<File, DirError> {
        let path = self.child(name)?;
        let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        let fd = match openat(
            self.fd.as_fd(),
            name,
            flags,
            Mode::from_bits_truncate(0o600),
        ) {
            Ok(fd) => fd,
            Err(Errno::ELOOP) => return Err(DirError::NotARegularFile { path }),
            Err(e) => return Err(DirError::io(&path, "opening the file", e)),
        };
        let stat = fstat(fd.as_fd()).map_err(|e| DirError::io(&path, "stat", e))?;
        if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Err(DirError::NotARegularFile { path });
        }
        // Reads of a regular file never block; the flag only protected the open.
        let file = File::from(fd);
        nix::fcntl::fcntl(
            file.as_fd(),
            nix::fcntl::FcntlArg::F_SETFL(flags.difference(OFlag::O_NONBLOCK)),
        )
        .map_err(|e| DirError::io(&path, "clearing O_NONBLOCK", e))?;
        Ok(file)
    }

    /// Removes the file `name` only if it still is the file `expected` (same device and
    /// inode), never following a symlink: the name is checked and removed relative to this
    /// handle, so a parent swapped for a symlink cannot point the removal elsewhere.
    pub fn remove_file_if_same(&self, name: &OsStr, expected: FileId) -> Result<(), DirError> {
        let path = self.child(name)?;
        match self.stat_at(name)? {
            Some(stat) if FileId::of_stat(&stat) == expected => {}
            _ => return Err(DirError::Replaced { path }),
        }
        unlinkat(self.fd.as_fd(), name, UnlinkatFlags::NoRemoveDir)
            .map_err(|e| DirError::io(&path, "removing the file", e))
    }

    /// Removes the entry `name` whatever it is (a file, a symlink — not followed — or an empty
    /// directory); absent is fine.
    pub fn remove_entry(&self, name: &OsStr) -> Result<(), DirError> {
        let path = self.child(name)?;
        let is_dir = match self.stat_at(name)? {
            None => return Ok(()),
            Some(stat) => SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR,
        };
        let flag = if is_dir {
            UnlinkatFlags::RemoveDir
        } else {
            UnlinkatFlags::NoRemoveDir
        };
        match unlinkat(self.fd.as_fd(), name, flag) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(DirError::io(&path, "removing", e)),
        }
    }

    /// Removes `name` and everything under it through directory handles (`openat` with
    /// `O_NOFOLLOW`, `unlinkat`): a symlink inside is removed, never followed. Absent is fine.
    pub fn remove_tree(&self, name: &OsStr) -> Result<(), DirError> {
        let Some(stat) = self.stat_at(name)? else {
            return Ok(());
        };
        if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
            let child = self.open_dir(name)?;
            for entry in child.entries()? {
                child.remove_tree(&entry)?;
            }
        }
        self.remove_entry(name)
    }

    /// The names in this directory (without `.` and `..`), sorted.
    pub fn entries(&self) -> Result<Vec<OsString>, DirError> {
        let fd = self.fd.try_clone().map_err(|source| DirError::Io {
            path: self.path.clone(),
            action: "duplicating the handle",
            source,
        })?;
        let mut dir = nix::dir::Dir::from_fd(fd)
            .map_err(|e| DirError::io(&self.path, "listing the directory", e))?;
        let mut names = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(|e| DirError::io(&self.path, "listing the directory", e))?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name != "." && name != ".." {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Renames `from` in this directory to `to` in `target` (both through handles); replaces a
    /// file or empty directory at `to`, as rename(2) does.
    pub fn rename(&self, from: &OsStr, target: &Dir, to: &OsStr) -> Result<(), DirError> {
        let path = self.child(from)?;
        target.child(to)?;
        renameat(self.fd.as_fd(), from, target.fd.as_fd(), to)
            .map_err(|e| DirError::io(&path, "renaming", e))
    }

    /// Sets this directory's mode exactly.
    pub fn set_mode(&self, mode: u32) -> Result<(), DirError> {
        fchmod(self.fd.as_fd(), Mode::from_bits_truncate(mode))
            .map_err(|e| DirError::io(&self.path, "setting the mode", e))
    }

    /// Syncs the directory, so the entries created, renamed or removed in it survive a power
    /// loss.
    pub fn sync(&self) -> Result<(), DirError> {
        fsync(self.fd.as_fd()).map_err(|e| DirError::io(&self.path, "syncing the directory", e))
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::{Read, Write};
    use std::os::unix::fs::symlink;

    #[test]
    fn a_symlinked_component_is_refused_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        fs::create_dir(&real).unwrap();
        fs::write(real.join("f"), b"x").unwrap();
        symlink(&real, tmp.path().join("link")).unwrap();
        assert!(Dir::open(&real).is_ok());
        let err = Dir::open(&tmp.path().join("link")).unwrap_err();
        assert!(matches!(err, DirError::NotADirectory { .. }), "{err}");
        let err = Dir::open_parent(&tmp.path().join("link/f")).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(matches!(
            Dir::open(&tmp.path().join("real/../real")),
            Err(DirError::BadName { .. })
        ));
    }

    #[test]
    fn a_file_swapped_for_a_symlink_is_not_opened_and_not_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let secret = tmp.path().join("secret");
        fs::write(&secret, b"keep").unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        fs::write(tmp.path().join("f"), b"scanned").unwrap();
        let mut file = dir.open_file(OsStr::new("f")).unwrap();
        let id = FileId::of_fd(&file).unwrap();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        assert_eq!(text, "scanned");
        fs::remove_file(tmp.path().join("f")).unwrap();
        symlink(&secret, tmp.path().join("f")).unwrap();
        assert!(matches!(
            dir.open_file(OsStr::new("f")),
            Err(DirError::NotARegularFile { .. })
        ));
        assert!(matches!(
            dir.remove_file_if_same(OsStr::new("f"), id),
            Err(DirError::Replaced { .. })
        ));
        assert_eq!(fs::read(&secret).unwrap(), b"keep");
        assert!(matches!(
            dir.create_file(OsStr::new("f"), 0o600),
            Err(DirError::Exists { .. })
        ));
        assert_eq!(fs::read(&secret).unwrap(), b"keep");
    }

    #[test]
    fn a_private_directory_must_be_ours_and_closed_to_others() {
        let tmp = tempfile::tempdir().unwrap();
        let made = tmp.path().join("a/downloads");
        Dir::open_private(&made).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&made).unwrap().permissions().mode() & 0o7777,
            0o700
        );
        let open = tmp.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let err = Dir::open_private(&open).unwrap_err();
        assert!(err.to_string().contains("lets other users change"), "{err}");
        symlink(&made, tmp.path().join("link")).unwrap();
        let err = Dir::open_private(&tmp.path().join("link")).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let theirs = tmp.path().join("theirs");
        fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        fs::set_permissions(&theirs, fs::Permissions::from_mode(0o700)).unwrap();
        if nix::unistd::geteuid().as_raw() != 65534 {
            let err = Dir::open_private(&theirs).unwrap_err();
            assert!(err.to_string().contains("belongs to uid 65534"), "{err}");
        }
    }

    #[test]
    fn remove_tree_removes_links_without_following_them() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), b"x").unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        let tree = dir.create_dir(OsStr::new("tree"), 0o700).unwrap();
        let sub = tree.create_dir(OsStr::new("sub"), 0o755).unwrap();
        sub.create_file(OsStr::new("f"), 0o644)
            .unwrap()
            .write_all(b"x")
            .unwrap();
        symlink(&outside, tmp.path().join("tree/sub/escape")).unwrap();
        dir.remove_tree(OsStr::new("tree")).unwrap();
        assert!(!tmp.path().join("tree").exists());
        assert!(outside.join("keep").exists());
        dir.remove_tree(OsStr::new("tree")).unwrap();
    }
}
