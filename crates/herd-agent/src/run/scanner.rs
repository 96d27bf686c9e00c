//! The scanner `herd-agent run` hosts (issue 13, SPEC §3.2): on-access scanning of the
//! directories given with `--scan` and, with `--daily-scan HH:MM`, a full scan of them every
//! day at that time in the terminal's time zone — with the definitions of the active vendor
//! product plus Herd's own signature set (`<state>/herd-set/`: the `herd-set.hsb` of exact
//! hashes and the analysts' `herd.ndb`, `herd.ldb`, `herd.yar`, fetched through TUF by the
//! agent, each as a delta from the version held when one is listed). Both are looked at after
//! every cycle; when either changed, the watcher is stopped and started again with the new
//! definitions.
//!
//! The watcher is `herd-agent watch`'s (`onaccess.rs`), run on a thread of this process.
//! Excluded always: the state directory (outbox, downloads, quarantine, Herd's set), the
//! product prefix and the extra download directories. Each detection is quarantined into
//! `<state>/quarantine` (suspicious-only hits are reported, not quarantined), queued in the
//! outbox as a `scan.detection` event (file, SHA-256, size, signatures, product, action), told
//! to the user on stdout and in `<state>/detections.json` (the last [`KEPT_DETECTIONS`]), whose
//! write wakes the sleeping agent to send the event at once.
//!
//! No definition format the agent loads says a file can be repaired, so nothing is ever
//! reported as cured: a file is `quarantined`, `not-quarantined` (with the reason), or
//! `reported` (suspicious only).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, Result, anyhow};
use herd_proto::api::{Detection, events};
use sha2::{Digest, Sha256};

use crate::onaccess::{Hosted, HostedDetection, WatchArgs};
use crate::outbox::Outbox;

/// Where the agent keeps Herd's own signature set, under the state directory: a file per
/// target of the set, by the target's file name (`herd-set.hsb`, `herd.ndb`, `herd.ldb`,
/// `herd.yar`: the suffix tells the loader its format).
pub(crate) const HERD_SET_DIR: &str = "herd-set";
/// Where the hosted scanner quarantines, under the state directory.
pub(crate) const QUARANTINE_DIR: &str = "quarantine";
/// The file the latest detections are told to the user in (its write wakes the agent).
pub(crate) const DETECTIONS_FILE: &str = "detections.json";
/// Detections kept in [`DETECTIONS_FILE`].
pub(crate) const KEPT_DETECTIONS: usize = 20;

/// What the hosted scanner watches and where it puts things.
#[derive(Debug, Clone)]
pub(crate) struct ScanConfig {
    pub roots: Vec<PathBuf>,
    pub excludes: Vec<PathBuf>,
    /// Minutes after UTC midnight of the daily full scan (already moved from local time).
    pub daily_utc_minute: Option<u32>,
    pub state_root: PathBuf,
    pub prefix: PathBuf,
    pub outbox: PathBuf,
}

/// The definitions a watcher runs with: the active product's directory and the digests of
/// the set's files held.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Definitions {
    product_dir: Option<PathBuf>,
    herd_set: Vec<(PathBuf, Option<String>)>,
}

/// The hosted watcher and what it was started with.
#[derive(Debug)]
pub(crate) struct ScanHost {
    config: ScanConfig,
    running: Option<(Definitions, Arc<Hosted>, JoinHandle<()>)>,
    /// Detections queued since start (across restarts of the watcher).
    detections: Arc<AtomicU64>,
}

/// `HH:MM` in a zone `offset_minutes` east of UTC, as minutes after UTC midnight.
pub(crate) fn local_to_utc_minute(local: &str, offset_minutes: i32) -> Result<u32, String> {
    let bad = || format!("{local:?} is not a time like 02:30");
    let (h, m) = local.split_once(':').ok_or_else(bad)?;
    let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if !(0..24).contains(&h) || !(0..60).contains(&m) {
        return Err(bad());
    }
    Ok((h * 60 + m - i64::from(offset_minutes)).rem_euclid(1440) as u32)
}

/// The directory of Herd's set under `state_root`.
pub(crate) fn herd_set_dir(state_root: &Path) -> PathBuf {
    state_root.join(HERD_SET_DIR)
}

/// The files of Herd's set held under `state_root`, in [`HERD_SET_FILES`]' order.
pub(crate) fn herd_set_files(state_root: &Path) -> Vec<PathBuf> {
    let dir = herd_set_dir(state_root);
    HERD_SET_FILES
        .iter()
        .map(|target| herd_set_file(&dir, target))
        .filter(|path| path.is_file())
        .collect()
}

/// The SHA-256 of a file, `None` when it cannot be read.
pub(crate) fn file_sha256(path: &Path) -> Option<String> {
    std::fs::read(path)
        .ok()
        .map(|bytes| crate::quarantine::hex(&Sha256::digest(&bytes)))
}

/// What [`fetch_herd_set`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SetUpdate {
    /// Signatures in the set's files now: `.hsb`, `.ndb` and `.ldb` lines, and YARA rules.
    pub signatures: usize,
    /// Files replaced or removed.
    pub files: usize,
    /// Bytes downloaded, and how many of them were deltas.
    pub downloaded: u64,
    pub delta_bytes: u64,
    /// Why a delta that was listed could not be used (the whole file was downloaded instead).
    pub delta_failures: Vec<String>,
    /// The signed SHA-256 of the exact-hash file (`HERD_SET_TARGET`) the terminal holds now,
    /// when the `herd` role lists one: what `herd_set.updated` names.
    pub hash_set_sha256: Option<String>,
}

impl SetUpdate {
    /// How the update was told to the user.
    pub(crate) fn said(&self) -> String {
        let how = if self.delta_bytes > 0 && self.delta_bytes == self.downloaded {
            format!("{} bytes downloaded, as deltas", self.downloaded)
        } else if self.delta_bytes > 0 {
            format!(
                "{} bytes downloaded, {} of them as deltas",
                self.downloaded, self.delta_bytes
            )
        } else {
            format!("{} bytes downloaded", self.downloaded)
        };
        format!(
            "Herd's own signature set updated ({} signature(s)), {how}",
            self.signatures
        )
    }
}

/// The signatures in one file of the set (a line each, a YARA rule each).
fn signatures_in(path: &Path) -> usize {
    let Ok(text) = std::fs::read_to_string(path) else {
        return 0;
    };
    if path.extension().is_some_and(|e| e == "yar") {
        // A rule is declared by `rule NAME`, after its modifiers, at the start of a line.
        return text
            .lines()
            .filter(|line| {
                line.split_whitespace()
                    .find(|word| !matches!(*word, "private" | "global"))
                    == Some("rule")
            })
            .count();
    }
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .count()
}

/// The local path of the set's file at `target` in `dir`.
pub(crate) fn herd_set_file(dir: &Path, target: &str) -> PathBuf {
    dir.join(
        target
            .rsplit('/')
            .next()
            .expect("a target path has a file name"),
    )
}

/// Fetches Herd's set into `dir` (one file per target of [`HERD_SET_FILES`]) where the
/// signed `herd` role lists other files than `dir` holds: the metadata refreshed (TUF's
/// workflow), each target found in the `herd` role only and checked against its signed length
/// and SHA-256 before it replaces the local file (atomically); a file the role no longer
/// lists is removed. A file is rebuilt from a delta when the role lists one from the version
/// held ([`herd_set_delta_target`]): downloaded under the delta's signed length, checked
/// against its signed SHA-256, applied bounded by the file's signed length, and the result
/// checked against the file's own signed length and SHA-256; anything wrong with it downloads
/// the whole file. `Ok(None)` when nothing changed.
pub(crate) fn fetch_herd_set(
    trust: &mut crate::trust::TrustClient,
    now: herd_core::Timestamp,
    dir: &Path,
) -> Result<Option<SetUpdate>, String> {
    trust.refresh(now).map_err(|r| r.to_string())?;
    let mut update = SetUpdate::default();
    for target in HERD_SET_FILES {
        let local = herd_set_file(dir, target);
        let Some(file) = herd_role_target(trust, target)? else {
            if local.exists() {
                std::fs::remove_file(&local).map_err(|e| format!("{}: {e}", local.display()))?;
                update.files += 1;
            }
            continue;
        };
        let sha256 = file
            .hashes
            .get("sha256")
            .ok_or_else(|| format!("{target} is listed without a SHA-256"))?;
        if target == HERD_SET_TARGET {
            update.hash_set_sha256 = Some(sha256.clone());
        }
        let held = std::fs::read(&local).ok();
        let held_sha256 = held
            .as_ref()
            .map(|bytes| crate::quarantine::hex(&Sha256::digest(bytes)));
        if held_sha256.as_ref() == Some(sha256) {
            continue;
        }
        let from_delta = match (&held, &held_sha256) {
            (Some(held), Some(held_sha256)) => {
                match rebuild_from_delta(trust, target, &file, held, held_sha256) {
                    Ok(Some((bytes, delta_length))) => {
                        update.downloaded += delta_length;
                        update.delta_bytes += delta_length;
                        Some(bytes)
                    }
                    Ok(None) => None,
                    Err(why) => {
                        update.delta_failures.push(why);
                        None
                    }
                }
            }
            _ => None,
        };
        let bytes = match from_delta {
            Some(bytes) => bytes,
            None => {
                let bytes = download(trust, target, &file)?;
                update.downloaded += bytes.len() as u64;
                bytes
            }
        };
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        herd_fs::write_atomic(&local, &bytes, 0o600).map_err(|e| e.to_string())?;
        update.files += 1;
    }
    if update.files == 0 {
        return Ok(None);
    }
    update.signatures = HERD_SET_FILES
        .iter()
        .map(|target| signatures_in(&herd_set_file(dir, target)))
        .sum();
    Ok(Some(update))
}

use herd_proto::distribution::{HERD_SET_FILES, HERD_SET_TARGET, herd_set_delta_target};

/// The signed description of `target`, which only the `herd` role may list.
fn herd_role_target(
    trust: &mut crate::trust::TrustClient,
    target: &str,
) -> Result<Option<herd_tuf::TargetFile>, String> {
    use herd_proto::distribution::HERD_ROLE;
    let Some((role, file)) = trust.find_target(target).map_err(|r| r.to_string())? else {
        return Ok(None);
    };
    if role != HERD_ROLE {
        return Err(format!("{target} is listed by {role}, not {HERD_ROLE}"));
    }
    Ok(Some(file))
}

/// `target`'s bytes from the upstream's consistent-snapshot name, read under the signed length
/// and checked against the signed length and SHA-256.
fn download(
    trust: &crate::trust::TrustClient,
    target: &str,
    file: &herd_tuf::TargetFile,
) -> Result<Vec<u8>, String> {
    use herd_proto::distribution::{TARGETS_PATH, consistent_target_name};
    let sha256 = file
        .hashes
        .get("sha256")
        .ok_or_else(|| format!("{target} is listed without a SHA-256"))?;
    let path = format!("{TARGETS_PATH}{}", consistent_target_name(target, sha256));
    let bytes = trust
        .upstream()
        .get(&path, herd_client::ReadLimits::target(file.length))
        .map_err(|e| format!("{path}: {e}"))?;
    let actual = crate::quarantine::hex(&Sha256::digest(&bytes));
    if bytes.len() as u64 != file.length || &actual != sha256 {
        return Err(format!(
            "{path}: {} bytes with SHA-256 {actual}, but the signed metadata says {} bytes \
             with SHA-256 {sha256}; not used",
            bytes.len(),
            file.length
        ));
    }
    Ok(bytes)
}

/// The file at `target` rebuilt from the version held and the delta the `herd` role lists
/// from it, with the delta's length; `Ok(None)` when none is listed.
fn rebuild_from_delta(
    trust: &mut crate::trust::TrustClient,
    target: &str,
    file: &herd_tuf::TargetFile,
    held: &[u8],
    held_sha256: &str,
) -> Result<Option<(Vec<u8>, u64)>, String> {
    let delta_target = herd_set_delta_target(target, held_sha256);
    let Some(delta_file) = herd_role_target(trust, &delta_target)? else {
        return Ok(None);
    };
    let delta = download(trust, &delta_target, &delta_file)?;
    let rebuilt =
        herd_delta::apply(held, &delta, file.length).map_err(|e| format!("{delta_target}: {e}"))?;
    let actual = crate::quarantine::hex(&Sha256::digest(&rebuilt));
    let signed = file.hashes.get("sha256").map_or("", String::as_str);
    if rebuilt.len() as u64 != file.length || actual != signed {
        return Err(format!(
            "{delta_target}: the rebuilt {target} has {} bytes with SHA-256 {actual}, but the \
             signed metadata says {} bytes with SHA-256 {signed}",
            rebuilt.len(),
            file.length
        ));
    }
    Ok(Some((rebuilt, delta.len() as u64)))
}

impl ScanHost {
    pub(crate) fn new(config: ScanConfig) -> ScanHost {
        ScanHost {
            config,
            running: None,
            detections: Arc::default(),
        }
    }

    /// How many detections were queued so far: the daemon compares it around its work, since
    /// the write that wakes it is drained with its own when it lands during a cycle.
    pub(crate) fn detections(&self) -> u64 {
        self.detections.load(Ordering::Relaxed)
    }

    fn definitions(&self) -> Definitions {
        Definitions {
            product_dir: herd_package::active_dir(&self.config.prefix).ok().flatten(),
            herd_set: herd_set_files(&self.config.state_root)
                .into_iter()
                .map(|path| {
                    let sha256 = file_sha256(&path);
                    (path, sha256)
                })
                .collect(),
        }
    }

    /// Starts the watcher, or restarts it when the definitions changed since it started (or
    /// it stopped). Without any definitions (no product active, no Herd set yet) nothing runs.
    pub(crate) fn keep_current(&mut self) -> Result<()> {
        let wanted = self.definitions();
        if let Some((running, _, handle)) = &self.running
            && *running == wanted
            && !handle.is_finished()
        {
            return Ok(());
        }
        self.stop();
        let mut databases = match &wanted.product_dir {
            Some(_) => crate::scan::active_definitions(&self.config.prefix)?,
            None => Vec::new(),
        };
        databases.extend(wanted.herd_set.iter().map(|(path, _)| path.clone()));
        if databases.is_empty() {
            return Ok(());
        }
        let product = wanted
            .product_dir
            .as_deref()
            .and_then(|dir| dir.strip_prefix(&self.config.prefix).ok())
            .and_then(|rel| rel.strip_prefix("products").ok())
            .map(|rel| rel.display().to_string())
            .unwrap_or_default();
        let said = format!(
            "herd-agent: scanning {} with {} definition file(s){}",
            self.config
                .roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            databases.len(),
            if !wanted.herd_set.is_empty() {
                " (Herd's own set included)"
            } else {
                ""
            }
        );
        let hosted = Arc::new(Hosted {
            stop: Default::default(),
            on_detection: Box::new(detection_sink(
                &self.config,
                product,
                self.detections.clone(),
            )?),
            // Said once the directories are watched, not before: a file written earlier
            // than that is found by the daily scan only.
            on_watching: Box::new(move |_| println!("{said}")),
        });
        let mut args = self.watch_args(&databases)?;
        args.hosted = Some(hosted.clone());
        let handle = std::thread::Builder::new()
            .name("scanner".into())
            .spawn(move || {
                if let Err(e) = crate::onaccess::run(&args) {
                    eprintln!("herd-agent: the scanner stopped: {e:#}");
                }
            })
            .context("cannot start the scanner thread")?;
        self.running = Some((wanted, hosted, handle));
        Ok(())
    }

    /// Stops the watcher and waits for it.
    pub(crate) fn stop(&mut self) {
        if let Some((_, hosted, handle)) = self.running.take() {
            hosted.stop.store(true, Ordering::Relaxed);
            let _ = handle.join();
        }
    }

    /// The watcher's arguments, through `herd-agent watch`'s own parser so its defaults and
    /// checks are the same.
    fn watch_args(&self, databases: &[PathBuf]) -> Result<WatchArgs> {
        #[derive(clap::Parser)]
        struct Watch {
            #[command(flatten)]
            args: WatchArgs,
        }
        let config = &self.config;
        let mut argv: Vec<String> = vec!["watch".into(), "--json".into()];
        for db in databases {
            argv.extend(["--database".into(), db.display().to_string()]);
        }
        argv.extend([
            "--index-dir".into(),
            config
                .state_root
                .join("signature-index")
                .display()
                .to_string(),
            "--quarantine".into(),
            config.state_root.join(QUARANTINE_DIR).display().to_string(),
        ]);
        for exclude in &config.excludes {
            argv.extend(["--exclude".into(), exclude.display().to_string()]);
        }
        if let Some(minute) = config.daily_utc_minute {
            argv.extend([
                "--daily-scan".into(),
                format!("{:02}:{:02}", minute / 60, minute % 60),
            ]);
        }
        argv.push("--".into());
        argv.extend(config.roots.iter().map(|r| r.display().to_string()));
        let parsed = <Watch as clap::Parser>::try_parse_from(argv)
            .map_err(|e| anyhow!("the scanner's settings: {e}"))?;
        Ok(parsed.args)
    }
}

impl Drop for ScanHost {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What happens to each detection: an outbox event, a line on stdout, and the user's notice
/// file. Runs on the watcher's threads; the outbox takes its own lock.
fn detection_sink(
    config: &ScanConfig,
    product: String,
    count: Arc<AtomicU64>,
) -> Result<impl Fn(&HostedDetection<'_>) + Send + Sync + 'static> {
    let outbox = Outbox::open(&config.outbox)?;
    let notice = config.state_root.join(DETECTIONS_FILE);
    let state_root = config.state_root.clone();
    let recent: Mutex<Vec<serde_json::Value>> = Mutex::new(
        crate::run::state::load_json(&notice)
            .ok()
            .flatten()
            .unwrap_or_default(),
    );
    Ok(move |hit: &HostedDetection<'_>| {
        let (action, quarantine_id, detail) = match hit.quarantined {
            Some(Ok(id)) => ("quarantined", Some(id.clone()), None),
            Some(Err(why)) => ("not-quarantined", None, Some(why.clone())),
            None if hit.action == "reported" => ("reported", None, None),
            None => (
                "not-quarantined",
                None,
                Some("no quarantine directory".to_owned()),
            ),
        };
        let detection = Detection {
            path: hit.path.display().to_string(),
            sha256: crate::quarantine::hex(&Sha256::digest(hit.content)),
            size: hit.content.len() as u64,
            signatures: hit.names.iter().map(|n| n.to_string()).collect(),
            product: product.clone(),
            mode: match hit.mode {
                "scheduled" => "scheduled",
                _ => "on-access",
            }
            .to_owned(),
            action: action.to_owned(),
            quarantine_id,
            detail,
        };
        let data = serde_json::to_value(&detection).expect("a detection serialises");
        if let Err(e) = outbox.push(events::SCAN_DETECTION, data.clone()) {
            eprintln!("herd-agent: warning: a detection was not queued for the center: {e}");
        }
        count.fetch_add(1, Ordering::Relaxed);
        // What the analysts should look at: a suspicious-only hit, a file left in place.
        let reason = match action {
            "reported" => Some("suspicious"),
            "not-quarantined" => Some("not-quarantinable"),
            _ => None,
        };
        if let Some(reason) = reason
            && (hit.content.len() as u64) <= crate::samples::DEFAULT_MAX_SAMPLE
            && let Err(e) =
                crate::samples::queue(&state_root, &outbox, hit.path, hit.content, reason)
        {
            eprintln!("herd-agent: warning: a sample was not queued for the center: {e:#}");
        }
        println!(
            "herd-agent: {} is infected ({}); {}",
            crate::run::agent::printable(&detection.path),
            detection.signatures.join(", "),
            match (&detection.quarantine_id, &detection.detail) {
                (Some(id), _) => format!("moved to quarantine as {id}"),
                (None, Some(why)) => format!("left in place: {why}"),
                (None, None) => "reported".to_owned(),
            }
        );
        if let Ok(mut recent) = recent.lock() {
            recent.push(data);
            let excess = recent.len().saturating_sub(KEPT_DETECTIONS);
            recent.drain(..excess);
            if let Err(e) = crate::run::state::save_json(&notice, &*recent) {
                eprintln!("herd-agent: warning: {e:#}");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daily_time_is_local_to_the_terminal() {
        assert_eq!(local_to_utc_minute("02:30", 0), Ok(150));
        // 02:30 at +09:00 is 17:30 UTC the day before.
        assert_eq!(local_to_utc_minute("02:30", 9 * 60), Ok(17 * 60 + 30));
        assert_eq!(local_to_utc_minute("23:00", -5 * 60), Ok(4 * 60));
        assert!(local_to_utc_minute("24:00", 0).is_err());
        assert!(local_to_utc_minute("2", 0).is_err());
    }
}
