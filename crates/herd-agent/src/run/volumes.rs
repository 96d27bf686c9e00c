//! Downloads and disks (seed 001 ¶0041): the agent keeps its download directory on the volume
//! with the most free space, and looks again whenever a volume appears or disappears — the
//! kernel marks `/proc/self/mountinfo` (`POLLPRI | POLLERR`) at every mount and unmount, and
//! the waker polls it with the rest, so watching costs nothing while nothing changes.
//!
//! The candidates are `<state-dir>/downloads`, every `--download-dir`, and on each
//! `--download-volume` that is mounted now its own `.herd-agent-downloads` (created 0700 when
//! missing, so a download directory comes back on a volume that was replaced or wiped). Which
//! one a plan uses is decided per plan by `execute::space` (a partial download resumes where it
//! is, otherwise the most free space); when none has room, the plan is deferred with a message
//! saying how much to free on which volume, shown by `herd-agent status`.

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::execute::space;

/// The download directory's name on a `--download-volume`.
pub(crate) const VOLUME_DOWNLOAD_DIR: &str = ".herd-agent-downloads";

/// `/proc/self/mountinfo`, read to its end after each change so the next one is signalled.
#[derive(Debug)]
pub(crate) struct MountWatch {
    file: File,
}

impl MountWatch {
    pub(crate) fn open() -> Result<MountWatch> {
        let mut watch = MountWatch {
            file: File::open("/proc/self/mountinfo")
                .context("cannot open /proc/self/mountinfo to watch for volumes")?,
        };
        watch.rearm();
        Ok(watch)
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Reads the table again from the start: until then the kernel keeps saying it changed.
    pub(crate) fn rearm(&mut self) {
        let mut sink = Vec::with_capacity(8192);
        let _ = self.file.seek(SeekFrom::Start(0));
        let _ = (&self.file).read_to_end(&mut sink);
    }
}

/// Whether `dir` is the root of a mounted volume (its device differs from its parent's), so
/// nothing is created on the volume below an empty mount point.
pub(crate) fn is_mounted(dir: &Path) -> bool {
    let (Ok(own), Some(parent)) = (std::fs::metadata(dir), dir.parent()) else {
        return false;
    };
    std::fs::metadata(parent).is_ok_and(|parent| parent.dev() != own.dev())
}

/// The candidate download directories now: `fixed` as given, then the download directory of
/// each mounted volume of `volumes`, created when missing. Problems (a volume whose directory
/// cannot be made) are returned as sentences for the log.
pub(crate) fn candidates(fixed: &[PathBuf], volumes: &[PathBuf]) -> (Vec<PathBuf>, Vec<String>) {
    let mut dirs = fixed.to_vec();
    let mut problems = Vec::new();
    for volume in volumes {
        if !is_mounted(volume) {
            continue;
        }
        let dir = volume.join(VOLUME_DOWNLOAD_DIR);
        match super::durable::create_private_dir(&dir) {
            Ok(()) => dirs.push(dir),
            Err(e) => problems.push(format!(
                "cannot make the download directory {} on the volume {}: {e}",
                dir.display(),
                volume.display()
            )),
        }
    }
    (dirs, problems)
}

/// One line for `herd-agent status`: each candidate and its free space, the most first.
pub(crate) fn describe(dirs: &[PathBuf]) -> String {
    let mut measured: Vec<(u64, &PathBuf)> = dirs
        .iter()
        .filter_map(|dir| space::free_bytes(dir).ok().map(|free| (free, dir)))
        .collect();
    measured.sort_by_key(|(free, _)| std::cmp::Reverse(*free));
    if measured.is_empty() {
        return "no usable download directory".to_owned();
    }
    measured
        .iter()
        .map(|(free, dir)| format!("{} ({} free)", dir.display(), space::human(*free)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd as _;
    use std::os::unix::fs::PermissionsExt as _;
    use std::process::Command;

    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

    use super::*;
    use crate::execute::space::{Candidate, pick};

    /// A tmpfs of `mib` MiB mounted at `dir` until dropped; `None` where this process may not
    /// mount (not root, or a container without the capability).
    struct Tmpfs(PathBuf);

    impl Tmpfs {
        fn mount(dir: &Path, mib: u64) -> Option<Tmpfs> {
            std::fs::create_dir_all(dir).unwrap();
            let status = Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={mib}m,mode=0755"),
                    "tmpfs",
                ])
                .arg(dir)
                .stderr(std::process::Stdio::null())
                .status()
                .ok()?;
            status.success().then(|| Tmpfs(dir.to_owned()))
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }

    fn changed(watch: &MountWatch, within_ms: u16) -> bool {
        let mut fds = [PollFd::new(watch.file().as_fd(), PollFlags::POLLPRI)];
        poll(&mut fds, PollTimeout::from(within_ms)).unwrap_or(0) > 0
    }

    fn measured(dirs: &[PathBuf]) -> Vec<Candidate> {
        dirs.iter()
            .map(|dir| Candidate {
                dir: dir.clone(),
                free: space::free_bytes(dir).unwrap(),
                have: 0,
            })
            .collect()
    }

    /// Real volumes (tmpfs, so it needs root): the watch sees them come and go, the download
    /// directory is made on each mounted one and not below an empty mount point, the plan goes
    /// to the roomiest, and when none has room the message says what to free where.
    #[test]
    fn volumes_coming_and_going_move_the_download_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let (small, large, absent) = (
            tmp.path().join("small"),
            tmp.path().join("large"),
            tmp.path().join("absent"),
        );
        std::fs::create_dir_all(&absent).unwrap();
        let mut watch = MountWatch::open().unwrap();
        let Some(small_fs) = Tmpfs::mount(&small, 4) else {
            eprintln!("skipped: this process cannot mount a tmpfs");
            return;
        };
        assert!(changed(&watch, 2000), "a mount is seen");
        watch.rearm();
        assert!(!changed(&watch, 0), "re-armed");
        let large_fs = Tmpfs::mount(&large, 16).expect("a second tmpfs mounts");
        assert!(changed(&watch, 2000));
        watch.rearm();

        let volumes = [small.clone(), large.clone(), absent.clone()];
        let (dirs, problems) = candidates(&[], &volumes);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            dirs,
            vec![
                small.join(VOLUME_DOWNLOAD_DIR),
                large.join(VOLUME_DOWNLOAD_DIR)
            ]
        );
        assert!(
            !absent.join(VOLUME_DOWNLOAD_DIR).exists(),
            "not below a mount point"
        );
        let mode = std::fs::metadata(&dirs[1]).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let ten_mib = 10 << 20;
        assert_eq!(pick(&measured(&dirs), ten_mib, 0).unwrap(), dirs[1]);
        assert!(
            describe(&dirs).starts_with(&large.join(VOLUME_DOWNLOAD_DIR).display().to_string())
        );

        // The large one goes: seen, and the plan no longer fits anywhere.
        drop(large_fs);
        assert!(changed(&watch, 2000), "an unmount is seen");
        watch.rearm();
        let (dirs, _) = candidates(&[], &volumes);
        assert_eq!(dirs, vec![small.join(VOLUME_DOWNLOAD_DIR)]);
        let err = pick(&measured(&dirs), ten_mib, 0).unwrap_err();
        assert!(err.contains("free at least 6.0 MiB"), "{err}");
        assert!(err.contains(&small.display().to_string()), "{err}");

        // It comes back wiped: the download directory is made again.
        let _large_again = Tmpfs::mount(&large, 16).unwrap();
        assert!(changed(&watch, 2000));
        let (dirs, _) = candidates(&[], &volumes);
        assert_eq!(dirs.len(), 2);
        assert!(large.join(VOLUME_DOWNLOAD_DIR).is_dir());
        drop(small_fs);
    }
}
