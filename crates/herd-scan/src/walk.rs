//! The edge of the engine that touches the file system: walking scan roots and reading files.
//!
//! Symlink policy (clamscan's default): a root given by the caller is followed if it is a
//! symlink, but symlinks met while walking are reported and never followed, so a walk cannot
//! leave its roots or loop through links. Directories are also remembered by device and inode,
//! so bind-mount loops end too. Entries are visited in name order, for stable output.

use std::collections::HashSet;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What the walk found.
#[derive(Debug)]
pub enum Event {
    /// A regular file to scan, with its size and (device, inode) at the time of the walk. A
    /// reader can compare the identity with what it opens: a parent directory swapped for a
    /// symlink since the walk makes the path name another file.
    File {
        path: PathBuf,
        size: u64,
        id: (u64, u64),
    },
    /// A directory entered.
    Dir(PathBuf),
    /// A symlink inside a root, not followed.
    Symlink(PathBuf),
    /// A directory not entered because it was already visited (a loop) or because the walk is
    /// not recursive.
    SkippedDir(PathBuf),
    /// A FIFO, socket or device: never opened, as reading one can block or never end.
    Special(PathBuf),
    Error {
        path: PathBuf,
        error: io::Error,
    },
}

/// Walks `root`, calling `visit` for everything found.
pub fn walk(root: &Path, recursive: bool, visit: &mut dyn FnMut(Event)) {
    let meta = match std::fs::metadata(root) {
        Ok(m) => m,
        Err(error) => {
            return visit(Event::Error {
                path: root.to_owned(),
                error,
            });
        }
    };
    let mut seen = HashSet::new();
    if meta.is_dir() {
        walk_dir(root, &meta, recursive, true, &mut seen, visit);
    } else {
        visit_entry(root.to_owned(), &meta, recursive, &mut seen, visit);
    }
}

fn visit_entry(
    path: PathBuf,
    meta: &Metadata,
    recursive: bool,
    seen: &mut HashSet<(u64, u64)>,
    visit: &mut dyn FnMut(Event),
) {
    let ft = meta.file_type();
    if ft.is_symlink() {
        visit(Event::Symlink(path));
    } else if ft.is_dir() {
        walk_dir(&path, meta, recursive, false, seen, visit);
    } else if ft.is_file() {
        visit(Event::File {
            path,
            size: meta.len(),
            id: (meta.dev(), meta.ino()),
        });
    } else {
        visit(Event::Special(path));
    }
}

fn walk_dir(
    dir: &Path,
    meta: &Metadata,
    recursive: bool,
    is_root: bool,
    seen: &mut HashSet<(u64, u64)>,
    visit: &mut dyn FnMut(Event),
) {
    if (!recursive && !is_root) || !seen.insert((meta.dev(), meta.ino())) {
        return visit(Event::SkippedDir(dir.to_owned()));
    }
    visit(Event::Dir(dir.to_owned()));
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(error) => {
            return visit(Event::Error {
                path: dir.to_owned(),
                error,
            });
        }
    };
    let mut paths = Vec::new();
    for entry in entries {
        match entry {
            Ok(e) => paths.push(e.path()),
            Err(error) => visit(Event::Error {
                path: dir.to_owned(),
                error,
            }),
        }
    }
    paths.sort();
    for path in paths {
        match std::fs::symlink_metadata(&path) {
            Ok(m) => visit_entry(path, &m, recursive, seen, visit),
            Err(error) => visit(Event::Error { path, error }),
        }
    }
}

/// What `read_file` did.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// The whole file is in the buffer.
    Read,
    /// The file is larger than the limit; the buffer holds nothing useful.
    TooLarge,
    /// The path is no longer a regular file (replaced since the walk).
    NotRegular,
}

/// Opens a path for reading only if it is a regular file at open time (`None` otherwise).
pub fn open_regular(path: &Path) -> io::Result<Option<(File, Metadata)>> {
    // O_NOFOLLOW: the path was a regular file when walked; if it has been swapped for a
    // symlink since, do not follow it out of the roots. O_NONBLOCK: if it has been swapped
    // for a FIFO, do not hang in open().
    let file = match File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    Ok(meta.is_file().then_some((file, meta)))
}

/// Reads a regular file into `buf` (cleared first), refusing symlinks and anything that is
/// not a regular file at open time, and files over `max` bytes.
pub fn read_file(path: &Path, max: u64, buf: &mut Vec<u8>) -> io::Result<ReadOutcome> {
    read_file_identified(path, max, buf).map(|(outcome, _)| outcome)
}

/// [`read_file`], also returning the (device, inode) of the file it opened and read, so a
/// caller acting on the file later (quarantine) can check it still has the file it scanned.
pub fn read_file_identified(
    path: &Path,
    max: u64,
    buf: &mut Vec<u8>,
) -> io::Result<(ReadOutcome, Option<(u64, u64)>)> {
    buf.clear();
    let Some((file, meta)) = open_regular(path)? else {
        return Ok((ReadOutcome::NotRegular, None));
    };
    let id = Some((meta.dev(), meta.ino()));
    Ok((read_opened(&file, &meta, max, buf)?, id))
}

/// Reads a file already opened with [`open_regular`] (whose metadata is `meta`) into `buf`
/// (cleared first): for callers that look at the metadata before deciding to read, such as a
/// scan cache, and must read the very file they looked at.
pub fn read_opened(
    mut file: &File,
    meta: &Metadata,
    max: u64,
    buf: &mut Vec<u8>,
) -> io::Result<ReadOutcome> {
    buf.clear();
    if meta.len() > max {
        return Ok(ReadOutcome::TooLarge);
    }
    buf.reserve(meta.len() as usize);
    let n = (&mut file).take(max + 1).read_to_end(buf)?;
    if n as u64 > max {
        buf.clear();
        return Ok(ReadOutcome::TooLarge);
    }
    Ok(ReadOutcome::Read)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(root: &Path, recursive: bool) -> Vec<String> {
        let mut out = Vec::new();
        walk(root, recursive, &mut |e| {
            let rel = |p: &Path| p.strip_prefix(root).unwrap_or(p).display().to_string();
            out.push(match e {
                Event::File { path, size, .. } => format!("file {} {size}", rel(&path)),
                Event::Dir(p) => format!("dir {}", rel(&p)),
                Event::Symlink(p) => format!("symlink {}", rel(&p)),
                Event::SkippedDir(p) => format!("skipped {}", rel(&p)),
                Event::Special(p) => format!("special {}", rel(&p)),
                Event::Error { path, error } => format!("error {} {:?}", rel(&path), error.kind()),
            });
        });
        out
    }

    #[test]
    fn symlinks_are_not_followed_and_loops_end() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f"), b"12345").unwrap();
        std::os::unix::fs::symlink(root.join("a"), root.join("a/b/loop")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("a/out")).unwrap();
        std::os::unix::fs::symlink("self", root.join("self")).unwrap();
        assert_eq!(
            events(root, true),
            [
                "dir ",
                "dir a",
                "dir a/b",
                "file a/b/f 5",
                "symlink a/b/loop",
                "symlink a/out",
                "symlink self"
            ]
        );
        assert_eq!(events(root, false), ["dir ", "skipped a", "symlink self"]);
        // A root given as a symlink is followed, like clamscan does with command-line paths.
        assert_eq!(
            events(&root.join("a/b/loop"), true)[..3],
            ["dir ", "dir b", "file b/f 5"]
        );
        // A self-referencing root is an error, not a hang.
        assert_eq!(events(&root.join("self"), true), ["error  FilesystemLoop"]);
    }

    #[test]
    fn a_file_swapped_for_a_symlink_after_the_walk_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, b"not for the scanner").unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"walked").unwrap();
        let mut found = Vec::new();
        walk(dir.path(), true, &mut |e| {
            if let Event::File { path, .. } = e {
                found.push(path);
            }
        });
        assert!(found.contains(&f));
        // Between the walk and the read, the file becomes a link to another one.
        std::fs::remove_file(&f).unwrap();
        std::os::unix::fs::symlink(&secret, &f).unwrap();
        let mut buf = Vec::new();
        let (outcome, id) = read_file_identified(&f, 100, &mut buf).unwrap();
        assert_eq!(outcome, ReadOutcome::NotRegular);
        assert_eq!(id, None);
        assert!(buf.is_empty());
    }

    #[test]
    fn a_parent_swapped_for_a_symlink_after_the_walk_shows_in_the_identity() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/f"), b"walked").unwrap();
        std::fs::create_dir(dir.path().join("elsewhere")).unwrap();
        std::fs::write(dir.path().join("elsewhere/f"), b"not walked").unwrap();
        let mut walked = None;
        walk(dir.path(), true, &mut |e| {
            if let Event::File { path, id, .. } = e
                && path.ends_with("d/f")
            {
                walked = Some(id);
            }
        });
        std::fs::rename(dir.path().join("d"), dir.path().join("d.old")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), dir.path().join("d")).unwrap();
        let mut buf = Vec::new();
        let (outcome, id) = read_file_identified(&dir.path().join("d/f"), 100, &mut buf).unwrap();
        // The final component is a regular file, so the read succeeds; the identity tells the
        // caller it is not the file the walk saw.
        assert_eq!(outcome, ReadOutcome::Read);
        assert_ne!(id, walked);
    }

    #[test]
    fn read_file_limits_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"hello").unwrap();
        let mut buf = Vec::new();
        assert_eq!(read_file(&f, 5, &mut buf).unwrap(), ReadOutcome::Read);
        assert_eq!(buf, b"hello");
        assert_eq!(read_file(&f, 4, &mut buf).unwrap(), ReadOutcome::TooLarge);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert_eq!(
            read_file(&link, 5, &mut buf).unwrap(),
            ReadOutcome::NotRegular
        );
        assert_eq!(
            read_file(dir.path(), 5, &mut buf).unwrap(),
            ReadOutcome::NotRegular
        );
        assert!(read_file(&dir.path().join("missing"), 5, &mut buf).is_err());
    }
}
