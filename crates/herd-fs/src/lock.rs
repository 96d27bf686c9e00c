//! Lock files: "one process at a time" over a directory or an operation, with flock(2), so the
//! kernel releases a lock when its holder exits or dies and no stale lock ever needs breaking.
//! The holder's pid is written into the file as a hint for error messages; the lock itself is
//! the flock, never the content.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Mode of a lock file this creates: it holds only a pid, but it lives among private files.
const LOCK_MODE: u32 = 0o600;

/// How often [`LockFile::acquire_within`] tries again.
const RETRY_EVERY: Duration = Duration::from_millis(50);

/// Why a lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process (or another `LockFile` in this one) holds it.
    #[error("{} is locked{}", path.display(), by(*pid))]
    Locked { path: PathBuf, pid: Option<u32> },
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn by(pid: Option<u32>) -> String {
    pid.map(|pid| format!(" by process {pid}"))
        .unwrap_or_default()
}

/// Who holds a lock, as far as the file says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockHolder {
    /// The holder's pid, when it was recorded and that process still exists.
    pub pid: Option<u32>,
}

/// An exclusive lock on a file, held until this is dropped (or the process ends).
#[derive(Debug)]
pub struct LockFile {
    path: PathBuf,
    lock: Flock<File>,
}

impl LockFile {
    /// Takes the lock on `path` (creating the file, 0600), waiting as long as another holds it.
    pub fn acquire(path: &Path) -> Result<LockFile, LockError> {
        let mut file = open(path)?;
        loop {
            match Flock::lock(file, FlockArg::LockExclusive) {
                Ok(lock) => return Ok(LockFile::record(path, lock)),
                // A signal (the agent's shutdown, say) interrupted the wait; the caller decides
                // on signals elsewhere, so wait again.
                Err((back, Errno::EINTR)) => file = back,
                Err((_, errno)) => return Err(io_error(path, errno)),
            }
        }
    }

    /// Takes the lock on `path` if nobody holds it; [`LockError::Locked`] otherwise.
    pub fn try_acquire(path: &Path) -> Result<LockFile, LockError> {
        LockFile::acquire_within(path, Duration::ZERO)
    }

    /// Takes the lock on `path`, trying again for up to `wait` while another holds it; for
    /// locks that others only probe for an instant (see [`LockFile::holder`]).
    pub fn acquire_within(path: &Path, wait: Duration) -> Result<LockFile, LockError> {
        let deadline = Instant::now() + wait;
        let mut file = open(path)?;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(LockFile::record(path, lock)),
                Err((back, Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                    file = back;
                    std::thread::sleep(RETRY_EVERY.min(deadline - Instant::now()));
                }
                Err((mut back, Errno::EWOULDBLOCK)) => {
                    return Err(LockError::Locked {
                        path: path.to_owned(),
                        pid: recorded_pid(&mut back),
                    });
                }
                Err((back, Errno::EINTR)) => file = back,
                Err((_, errno)) => return Err(io_error(path, errno)),
            }
        }
    }

    /// Who holds the lock on `path`, without taking it: `None` when nobody does (or the file
    /// does not exist). Needs only read access. Holds a shared lock for an instant, so a
    /// process taking the lock at that moment should use [`LockFile::acquire_within`].
    pub fn holder(path: &Path) -> Result<Option<LockHolder>, LockError> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(LockError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        match Flock::lock(file, FlockArg::LockSharedNonblock) {
            // Nobody holds it; the shared lock is released on drop.
            Ok(_) => Ok(None),
            Err((mut file, Errno::EWOULDBLOCK)) => Ok(Some(LockHolder {
                pid: recorded_pid(&mut file),
            })),
            Err((_, errno)) => Err(io_error(path, errno)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes this process's pid into the lock file. Failing to is harmless (the pid is only
    /// a hint for messages), so errors are ignored.
    fn record(path: &Path, lock: Flock<File>) -> LockFile {
        let pid = format!("{}\n", std::process::id());
        let _ = lock
            .set_len(0)
            .and_then(|()| lock.write_all_at(pid.as_bytes(), 0));
        LockFile {
            path: path.to_owned(),
            lock,
        }
    }
}

impl Drop for LockFile {
    /// Forgets the pid before the lock is released (the field drops after this), so the next
    /// holder's probers never read a pid that no longer holds it.
    fn drop(&mut self) {
        let _ = self.lock.set_len(0);
    }
}

fn open(path: &Path) -> Result<File, LockError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(LOCK_MODE)
        .open(path)
        .map_err(|source| LockError::Io {
            path: path.to_owned(),
            source,
        })
}

fn io_error(path: &Path, errno: Errno) -> LockError {
    LockError::Io {
        path: path.to_owned(),
        source: io::Error::from(errno),
    }
}

/// The pid recorded in a lock file, if it names a process that exists (a holder killed before
/// its successor wrote its own pid leaves a dead one).
fn recorded_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    let raw = i32::try_from(pid).ok().filter(|raw| *raw > 0)?;
    let exists = !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None),
        Err(Errno::ESRCH)
    );
    exists.then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("execute.lock");
        assert_eq!(LockFile::holder(&path).unwrap(), None);
        let held = LockFile::acquire(&path).unwrap();
        assert_eq!(held.path(), path);
        // flock locks belong to the open file, so a second open in this process conflicts
        // like another process would.
        match LockFile::try_acquire(&path) {
            Err(LockError::Locked { path: p, pid }) => {
                assert_eq!(p, path);
                assert_eq!(pid, Some(std::process::id()));
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        let err = LockFile::acquire_within(&path, Duration::from_millis(120)).unwrap_err();
        let message = err.to_string();
        assert_eq!(
            message,
            format!(
                "{} is locked by process {}",
                path.display(),
                std::process::id()
            )
        );
        assert_eq!(
            LockFile::holder(&path).unwrap(),
            Some(LockHolder {
                pid: Some(std::process::id())
            })
        );
        drop(held);
        assert_eq!(LockFile::holder(&path).unwrap(), None);
        assert_eq!(std::fs::read(&path).unwrap(), b"", "the pid is forgotten");
        let again = LockFile::try_acquire(&path).unwrap();
        drop(again);
    }

    #[test]
    fn a_lock_in_a_missing_directory_is_an_io_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent/agent.lock");
        let err = LockFile::try_acquire(&path).unwrap_err();
        assert!(matches!(err, LockError::Io { .. }), "{err}");
        assert!(err.to_string().contains("absent/agent.lock"), "{err}");
    }
}
