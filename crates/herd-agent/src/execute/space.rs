//! Free space (SPEC §3.5): the download directory is the candidate on the volume with the
//! most free space, and a plan whose packages do not fit is refused before a byte is written.

use std::io;
use std::path::{Path, PathBuf};

use super::fetch::len_or_zero;

/// Bytes an unprivileged process may still write on the volume holding `path`.
pub(super) fn free_bytes(path: &Path) -> io::Result<u64> {
    let stat = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
    Ok((stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64))
}

/// A package to download: its digest and size.
#[derive(Clone, Debug)]
pub(super) struct Wanted {
    pub sha256: String,
    pub size: u64,
}

/// Bytes of `wanted` already in `dir` (a complete file of the right size, or a part file).
fn present(dir: &Path, wanted: &Wanted) -> u64 {
    let complete = len_or_zero(&dir.join(&wanted.sha256)).unwrap_or(0);
    if complete == wanted.size {
        return complete;
    }
    let part = len_or_zero(&dir.join(format!("{}.part", wanted.sha256))).unwrap_or(0);
    if part <= wanted.size { part } else { 0 }
}

/// Picks the download directory: among the usable candidates, one already holding part of
/// these downloads if the rest fits there (so a download resumes), else the one with the most
/// free space. Refuses, with a message saying how much is needed and what is available
/// where, when nothing fits.
pub(super) fn choose_download_dir(
    candidates: &[PathBuf],
    wanted: &[Wanted],
    margin: u64,
) -> Result<PathBuf, String> {
    // Sizes come from the center: a sum that overflows (a panic in a debug build, a small
    // wrapped number in a release one) must read as "far too much", not crash or fit.
    let total = wanted
        .iter()
        .fold(0u64, |sum, w| sum.saturating_add(w.size));
    let mut best: Option<(PathBuf, u64, u64)> = None; // dir, free, needed there
    let mut unusable = Vec::new();
    for dir in candidates {
        // Only a directory nobody else can change: the agent writes there as root and later
        // unpacks what it finds.
        if let Err(e) = herd_fs::Dir::open_private(dir) {
            unusable.push(e.to_string());
            continue;
        }
        let free = match free_bytes(dir) {
            Ok(free) => free,
            Err(e) => {
                unusable.push(format!("{} ({e})", dir.display()));
                continue;
            }
        };
        let have = wanted
            .iter()
            .fold(0u64, |sum, w| sum.saturating_add(present(dir, w)));
        let needed = total.saturating_sub(have).saturating_add(margin);
        if have > 0 && free >= needed {
            return Ok(dir.clone());
        }
        if best
            .as_ref()
            .is_none_or(|(_, best_free, _)| free > *best_free)
        {
            best = Some((dir.clone(), free, needed));
        }
    }
    match best {
        Some((dir, free, needed)) if free >= needed => Ok(dir),
        Some((dir, free, needed)) => Err(format!(
            "not enough free space to download the plan's packages: {} needed ({} of packages \
             + {} margin), but the download directory with the most free space, {}, has only {} \
             free; free some space or give the agent another download directory",
            human(needed),
            human(total),
            human(margin),
            dir.display(),
            human(free)
        )),
        None => Err(format!(
            "no usable download directory: {}",
            unusable.join(", ")
        )),
    }
}

/// `1234567` → `1.2 MiB (1234567 bytes)`.
pub(super) fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {} ({bytes} bytes)", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human(12), "12 bytes");
        assert_eq!(human(1536), "1.5 KiB (1536 bytes)");
        assert_eq!(human(3 << 30), "3.0 GiB (3221225472 bytes)");
    }

    #[test]
    fn a_plan_that_does_not_fit_is_refused_with_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let downloads = dir.path().join("downloads");
        let wanted = [Wanted {
            sha256: "ab".repeat(32),
            size: 1000,
        }];
        assert_eq!(
            choose_download_dir(std::slice::from_ref(&downloads), &wanted, 0).unwrap(),
            downloads
        );
        let err = choose_download_dir(std::slice::from_ref(&downloads), &wanted, u64::MAX / 2)
            .unwrap_err();
        assert!(err.contains("not enough free space"), "{err}");
        assert!(err.contains(&downloads.display().to_string()), "{err}");
        assert!(err.contains("1000 bytes of packages"), "{err}");
    }

    #[test]
    fn a_directory_holding_a_partial_download_is_preferred() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::create_dir_all(&b).unwrap();
        let sha = "cd".repeat(32);
        fs::write(b.join(format!("{sha}.part")), b"12345").unwrap();
        let wanted = [Wanted {
            sha256: sha,
            size: 10,
        }];
        assert_eq!(choose_download_dir(&[a, b.clone()], &wanted, 0).unwrap(), b);
    }
}
