//! Atomic, durable replacement of one file: a temporary file with a unique name in the same
//! directory, written, fsync'ed, renamed over the target, then the directory fsync'ed.
//! Also the directory sync on its own and the clean-up of temporaries a crash left behind.
//! Not for content that grows in place (resumable downloads keep their own `.part` files).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// What every temporary's name ends with: `.<target>.<pid>.<n>.herd-tmp`.
const SUFFIX: &[u8] = b".herd-tmp";

/// Bytes of the target's name kept in a temporary's name: names are limited to 255 bytes, and
/// the dot, pid, counter and suffix need at most 1 + 11 + 21 + 9 of them.
const TARGET_KEPT: usize = 200;

/// How many names to try when a temporary's name is taken. Only a leftover from a dead process
/// whose pid this process reuses can take one, so a second try practically always succeeds.
const NAME_TRIES: u32 = 64;

/// Makes temporaries of one process unique; with the pid, unique on the machine.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Which part of a durable write failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    CreateTemporary,
    Write,
    SyncFile,
    Rename,
    SyncDir,
    ListDir,
    RemoveStale,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::CreateTemporary => "creating the temporary file",
            Step::Write => "writing the temporary file",
            Step::SyncFile => "syncing the temporary file",
            Step::Rename => "renaming the temporary file into place",
            Step::SyncDir => "syncing the directory",
            Step::ListDir => "listing the directory",
            Step::RemoveStale => "removing a stale temporary file",
        })
    }
}

/// A durable write that failed: the file (or directory) and the step. Whatever the step, the
/// target still holds its previous content (or still does not exist), except after
/// [`Step::SyncDir`], where the new content is in place but not yet known to be durable.
#[derive(Debug, thiserror::Error)]
#[error("{}: {step} failed: {source}", path.display())]
pub struct WriteError {
    pub path: PathBuf,
    pub step: Step,
    #[source]
    pub source: io::Error,
}

impl WriteError {
    fn at(path: &Path, step: Step) -> impl FnOnce(io::Error) -> WriteError + '_ {
        move |source| WriteError {
            path: path.to_owned(),
            step,
            source,
        }
    }
}

impl WriteError {
    /// The path, and an `io::Error` of the same kind saying the step and the cause: for error
    /// types that put the path in front themselves (`"{path}: {source}"`).
    pub fn into_path_and_io_error(self) -> (PathBuf, io::Error) {
        let io = io::Error::new(
            self.source.kind(),
            format!("{} failed: {}", self.step, self.source),
        );
        (self.path, io)
    }
}

/// For callers that speak `io::Result`: keeps the kind, and the message names path and step.
impl From<WriteError> for io::Error {
    fn from(e: WriteError) -> io::Error {
        io::Error::new(e.source.kind(), e)
    }
}

/// Replaces `path` with `bytes` atomically and durably. A file this creates gets `mode` (less
/// the umask, as with open(2)) before any byte is written, so a secret is never readable by
/// others, not even briefly. On error the temporary is removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), WriteError> {
    write_atomic_with(path, mode, |file| file.write_all(bytes))
}

/// [`write_atomic`] for streamed content: `write` fills the temporary file (it need not sync
/// it). An error from `write` (or a panic in it) removes the temporary and leaves `path`
/// untouched.
pub fn write_atomic_with<F>(path: &Path, mode: u32, write: F) -> Result<(), WriteError>
where
    F: FnOnce(&mut File) -> io::Result<()>,
{
    replace(path, mode, write)?;
    sync_dir(parent(path)).map_err(|e| WriteError {
        path: path.to_owned(),
        ..e
    })
}

/// Everything [`write_atomic`] does except the final directory sync, for writing several
/// files of one directory with a single [`sync_dir`] at the end. Until that sync returns, a
/// power loss may forget the new file (the old content, or none, comes back; never a torn
/// file).
pub fn replace_without_dir_sync(path: &Path, bytes: &[u8], mode: u32) -> Result<(), WriteError> {
    replace(path, mode, |file| file.write_all(bytes))
}

/// Makes the entries of `dir` (files created, renamed or removed in it) durable.
pub fn sync_dir(dir: &Path) -> Result<(), WriteError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(WriteError::at(dir, Step::SyncDir))
}

/// Removes the temporaries in `dir` whose writer is gone (a crash left them; a write still in
/// progress, in this process or another, keeps its temporary); returns how many it removed.
/// Call it when a directory is opened. Writers are told apart by pid, so processes writing
/// one directory must share a pid namespace.
pub fn remove_stale_temporaries(dir: &Path) -> Result<usize, WriteError> {
    let mut removed = 0;
    for entry in fs::read_dir(dir).map_err(WriteError::at(dir, Step::ListDir))? {
        let entry = entry.map_err(WriteError::at(dir, Step::ListDir))?;
        let Some(pid) = writer_pid(&entry.file_name()) else {
            continue;
        };
        if process_exists(pid) {
            continue;
        }
        let path = entry.path();
        match fs::remove_file(&path) {
            Ok(()) => removed += 1,
            // Another process cleaned it up first.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(WriteError::at(&path, Step::RemoveStale)(e)),
        }
    }
    // No directory sync: a removal a power loss undoes is only done again next time.
    Ok(removed)
}

/// Whether `name` is one of this crate's temporaries (which callers listing a directory skip).
pub fn is_temporary(name: &OsStr) -> bool {
    writer_pid(name).is_some()
}

/// Writes a temporary beside `path` and renames it over `path`; the directory is not synced.
fn replace<F>(path: &Path, mode: u32, write: F) -> Result<(), WriteError>
where
    F: FnOnce(&mut File) -> io::Result<()>,
{
    let Some(target) = path.file_name() else {
        return Err(WriteError {
            path: path.to_owned(),
            step: Step::CreateTemporary,
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a file name"),
        });
    };
    let (temp, mut file) = create_temporary(parent(path), target, mode)
        .map_err(WriteError::at(path, Step::CreateTemporary))?;
    // Removes the temporary on every early return and on a panic in `write`.
    let guard = RemoveOnDrop(Some(temp));
    write(&mut file).map_err(WriteError::at(path, Step::Write))?;
    file.sync_all()
        .map_err(WriteError::at(path, Step::SyncFile))?;
    drop(file);
    let temp = guard.path();
    fs::rename(temp, path).map_err(WriteError::at(path, Step::Rename))?;
    guard.disarm();
    Ok(())
}

fn create_temporary(dir: &Path, target: &OsStr, mode: u32) -> io::Result<(PathBuf, File)> {
    let pid = std::process::id();
    let mut tries = 0;
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(temporary_name(target, pid, n));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)
        {
            Ok(file) => {
                // Exactly `mode`, whatever the process's umask (a center running with umask
                // 077 still writes its public `ca.pem` readable by all).
                if let Err(err) = file.set_permissions(fs::Permissions::from_mode(mode)) {
                    let _ = fs::remove_file(&temp);
                    return Err(err);
                }
                return Ok((temp, file));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < NAME_TRIES => {
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// `.<target>.<pid>.<n>.herd-tmp`: hidden, beside its target, and naming its writer.
fn temporary_name(target: &OsStr, pid: u32, n: u64) -> OsString {
    let target = target.as_bytes();
    let mut name = Vec::with_capacity(TARGET_KEPT + 48);
    name.push(b'.');
    name.extend_from_slice(&target[..target.len().min(TARGET_KEPT)]);
    name.extend_from_slice(format!(".{pid}.{n}").as_bytes());
    name.extend_from_slice(SUFFIX);
    OsString::from_vec(name)
}

/// The pid in a temporary's name; `None` for any other name.
fn writer_pid(name: &OsStr) -> Option<u32> {
    let rest = name.as_bytes().strip_prefix(b".")?.strip_suffix(SUFFIX)?;
    let mut parts = rest.rsplitn(3, |b| *b == b'.');
    let n = parts.next()?;
    let pid = parts.next()?;
    let target = parts.next()?;
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    if target.is_empty() || !digits(n) || !digits(pid) {
        return None;
    }
    std::str::from_utf8(pid).ok()?.parse().ok()
}

/// Whether a process `pid` exists (kill with no signal: `EPERM` still means it exists).
fn process_exists(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        // Not a process id: kill would address a process group.
        return false;
    }
    !matches!(kill(Pid::from_raw(raw), None), Err(Errno::ESRCH))
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A temporary that is removed unless it was renamed into place.
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_the_file_with_its_mode_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write_atomic(&path, b"first", 0o600).unwrap();
        write_atomic(&path, b"second", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(names(dir.path()), ["key.pem"]);
    }

    #[test]
    fn streamed_content_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        write_atomic_with(&path, 0o644, |file| {
            for i in 0..1000u32 {
                file.write_all(&i.to_le_bytes())?;
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(fs::read(&path).unwrap().len(), 4000);
    }

    #[test]
    fn a_failing_writer_leaves_the_target_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.json");
        write_atomic(&path, b"old", 0o600).unwrap();
        let err = write_atomic_with(&path, 0o600, |file| {
            file.write_all(b"half")?;
            Err(io::Error::other("disk on fire"))
        })
        .unwrap_err();
        assert_eq!(err.step, Step::Write);
        assert_eq!(err.path, path);
        let message = err.to_string();
        assert!(
            message.contains("journal.json: writing the temporary file failed: disk on fire"),
            "{message}"
        );
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["journal.json"]);
        // The io::Error a caller gets keeps the message.
        let io: io::Error = err.into();
        assert!(
            io.to_string().contains("writing the temporary file"),
            "{io}"
        );
    }

    #[test]
    fn a_panicking_writer_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let result = std::panic::catch_unwind(|| {
            let _ = write_atomic_with(&path, 0o600, |_| panic!("bug in the caller"));
        });
        assert!(result.is_err());
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn errors_name_the_path_and_the_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir/file");
        let err = write_atomic(&path, b"x", 0o600).unwrap_err();
        assert_eq!(err.step, Step::CreateTemporary);
        assert_eq!(err.source.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("missing-dir/file"), "{err}");
        // A directory cannot be replaced by a file: the rename fails, nothing is left.
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        fs::write(sub.join("inside"), b"x").unwrap();
        let err = write_atomic(&sub, b"x", 0o600).unwrap_err();
        assert_eq!(err.step, Step::Rename);
        assert_eq!(names(dir.path()), ["sub"]);
        let err = sync_dir(&dir.path().join("absent")).unwrap_err();
        assert_eq!(err.step, Step::SyncDir);
    }

    #[test]
    fn a_taken_temporary_name_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox-entry");
        // Leftovers with this process's pid and the next counter values: what a dead process
        // whose pid this one reuses could have left.
        let next = COUNTER.load(Ordering::Relaxed);
        for n in next..next + 3 {
            let name = temporary_name(OsStr::new("outbox-entry"), std::process::id(), n);
            fs::write(dir.path().join(name), b"torn").unwrap();
        }
        write_atomic(&path, b"whole", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"whole");
    }

    #[test]
    fn temporary_names_are_recognised_and_nothing_else() {
        let name = temporary_name(OsStr::new("journal.json"), 4242, 7);
        assert_eq!(name, ".journal.json.4242.7.herd-tmp");
        assert_eq!(writer_pid(&name), Some(4242));
        let long = "x".repeat(255);
        let name = temporary_name(OsStr::new(&long), u32::MAX, u64::MAX);
        assert!(name.len() <= 255, "{}", name.len());
        assert_eq!(writer_pid(&name), Some(u32::MAX));
        for other in [
            "journal.json",
            ".journal.json.tmp",
            ".tmp-42",
            "..4242.7.herd-tmp",
            ".journal.json.x.7.herd-tmp",
            ".journal.json.4242.herd-tmp",
            "journal.json.4242.7.herd-tmp",
        ] {
            assert!(!is_temporary(OsStr::new(other)), "{other}");
        }
    }

    #[test]
    fn only_temporaries_of_dead_writers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = temporary_name(OsStr::new("a.json"), dead, 0);
        let ours = temporary_name(OsStr::new("b.json"), std::process::id(), u64::MAX);
        for name in [&stale, &ours] {
            fs::write(dir.path().join(name), b"x").unwrap();
        }
        fs::write(dir.path().join("a.json"), b"kept").unwrap();
        assert_eq!(remove_stale_temporaries(dir.path()).unwrap(), 1);
        let mut expected = vec!["a.json".to_owned(), ours.into_string().unwrap()];
        expected.sort();
        assert_eq!(names(dir.path()), expected);
    }
}
