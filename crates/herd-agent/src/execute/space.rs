//! Free space (SPEC §3.5): the download directory is the candidate on the volume with the
//! most free space, and a plan whose packages do not fit is refused before a byte is written.

use std::io;
use std::path::{Path, PathBuf};

use super::fetch::len_or_zero;

/// Bytes an unprivileged process may still write on the volume holding `path`.
pub(crate) fn free_bytes(path: &Path) -> io::Result<u64> {
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

/// A usable candidate download directory as measured now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub dir: PathBuf,
    /// Bytes the agent may still write on its volume.
    pub free: u64,
    /// Bytes of this plan's downloads it already holds.
    pub have: u64,
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
    let mut measured = Vec::new();
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
        measured.push(Candidate {
            dir: dir.clone(),
            free,
            have,
        });
    }
    if measured.is_empty() {
        return Err(format!(
            "no usable download directory: {}",
            unusable.join(", ")
        ));
    }
    // Sizes come from the center: a sum that overflows (a panic in a debug build, a small
    // wrapped number in a release one) must read as "far too much", not crash or fit.
    let total = wanted
        .iter()
        .fold(0u64, |sum, w| sum.saturating_add(w.size));
    pick(&measured, total, margin)
}

/// The choice itself, pure: see [`choose_download_dir`]. When nothing fits, the message says
/// how much to free on each volume (the least first) for the plan to fit there.
pub(crate) fn pick(candidates: &[Candidate], total: u64, margin: u64) -> Result<PathBuf, String> {
    let needed = |c: &Candidate| total.saturating_sub(c.have).saturating_add(margin);
    if let Some(resumable) = candidates
        .iter()
        .find(|c| c.have > 0 && c.free >= needed(c))
    {
        return Ok(resumable.dir.clone());
    }
    // The first of equals wins: the configured order breaks ties.
    let mut best: Option<&Candidate> = None;
    for candidate in candidates {
        if best.is_none_or(|b| candidate.free > b.free) {
            best = Some(candidate);
        }
    }
    match best {
        Some(best) if best.free >= needed(best) => Ok(best.dir.clone()),
        Some(_) => {
            let mut shortfalls: Vec<(u64, &Candidate)> = candidates
                .iter()
                .map(|c| (needed(c).saturating_sub(c.free), c))
                .collect();
            shortfalls.sort_by_key(|(short, _)| *short);
            let advice: Vec<String> = shortfalls
                .iter()
                .map(|(short, c)| {
                    format!(
                        "{} on the volume of {} (it has {} free)",
                        human(*short),
                        c.dir.display(),
                        human(c.free)
                    )
                })
                .collect();
            Err(format!(
                "not enough free space to download the plan's packages ({} of packages + {} \
                 margin): free at least {}, or give the agent another download directory or \
                 volume",
                human(total),
                human(margin),
                advice.join(", or ")
            ))
        }
        None => Err("no usable download directory".to_owned()),
    }
}

/// `1234567` → `1.2 MiB (1234567 bytes)`.
pub(crate) fn human(bytes: u64) -> String {
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
        assert!(err.contains("(1000 bytes of packages"), "{err}");
    }

    fn candidate(dir: &str, free: u64, have: u64) -> Candidate {
        Candidate {
            dir: PathBuf::from(dir),
            free,
            have,
        }
    }

    #[test]
    fn the_volume_with_the_most_free_space_is_chosen_as_volumes_come_and_go() {
        let state = candidate("/var/lib/herd-agent/downloads", 50 << 20, 0);
        let usb = candidate("/media/usb/.herd-agent-downloads", 900 << 20, 0);
        let sd = candidate("/media/sd/.herd-agent-downloads", 200 << 20, 0);
        let total = 100 << 20;
        // Only the state volume: it is too small.
        let err = pick(std::slice::from_ref(&state), total, 8 << 20).unwrap_err();
        assert!(
            err.contains("free at least 58.0 MiB (60817408 bytes) on the volume of /var/lib/herd-agent/downloads (it has 50.0 MiB (52428800 bytes) free)"),
            "{err}"
        );
        // A USB stick appears: it is chosen.
        assert_eq!(
            pick(&[state.clone(), usb.clone(), sd.clone()], total, 8 << 20).unwrap(),
            usb.dir
        );
        // It goes again: the SD card has room.
        assert_eq!(
            pick(&[state.clone(), sd.clone()], total, 8 << 20).unwrap(),
            sd.dir
        );
        // A part file resumes where it is, if the rest fits there.
        let partial = candidate("/var/lib/herd-agent/downloads", 50 << 20, 60 << 20);
        assert_eq!(
            pick(&[partial, usb.clone()], total, 8 << 20).unwrap(),
            PathBuf::from("/var/lib/herd-agent/downloads")
        );
        // Nothing has room: what to free where, the least first.
        let err = pick(&[state, sd], 300 << 20, 0).unwrap_err();
        let sd_at = err.find("/media/sd").unwrap();
        let state_at = err.find("/var/lib/herd-agent").unwrap();
        assert!(sd_at < state_at, "{err}");
        assert!(err.contains("free at least 100.0 MiB"), "{err}");
        // Sizes that overflow read as too much.
        assert!(pick(&[usb], u64::MAX, u64::MAX).is_err());
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
