//! The scanner `herd-agent run` hosts (issue 13, SPEC §3.2): on-access scanning of the
//! directories given with `--scan` and, with `--daily-scan HH:MM`, a full scan of them every
//! day at that time in the terminal's time zone — with the definitions of the active vendor
//! product plus Herd's own signature set (`<state>/herd-set/herd-set.hsb`, fetched through
//! TUF by the agent). Both are looked at after every cycle; when either changed, the watcher
//! is stopped and started again with the new definitions.
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

/// Where the agent keeps Herd's own signature set, under the state directory.
pub(crate) const HERD_SET_DIR: &str = "herd-set";
/// The set's file name in [`HERD_SET_DIR`] (the `.hsb` suffix tells the loader its format).
pub(crate) const HERD_SET_FILE: &str = "herd-set.hsb";
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

/// The definitions a watcher runs with: the active product's directory and the set's digest.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Definitions {
    product_dir: Option<PathBuf>,
    herd_set_sha256: Option<String>,
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

/// The path of Herd's set under `state_root`.
pub(crate) fn herd_set_path(state_root: &Path) -> PathBuf {
    state_root.join(HERD_SET_DIR).join(HERD_SET_FILE)
}

/// The SHA-256 of a file, `None` when it cannot be read.
pub(crate) fn file_sha256(path: &Path) -> Option<String> {
    std::fs::read(path)
        .ok()
        .map(|bytes| crate::quarantine::hex(&Sha256::digest(&bytes)))
}

/// Fetches Herd's set into `dest` when the signed `herd` role lists one other than `dest`
/// holds: the metadata refreshed (TUF's workflow), the target found in the `herd` role only,
/// its bytes read from the upstream's consistent-snapshot name, bounded by the signed length,
/// and checked against the signed length and SHA-256 before they replace `dest` (atomically).
/// `Ok(Some(updated))` when it changed (its SHA-256 and signatures), `Ok(None)` when there is
/// nothing new.
pub(crate) fn fetch_herd_set(
    trust: &mut crate::trust::TrustClient,
    now: herd_core::Timestamp,
    dest: &Path,
) -> Result<Option<herd_proto::api::HerdSetUpdated>, String> {
    use herd_proto::distribution::{
        HERD_ROLE, HERD_SET_TARGET, TARGETS_PATH, consistent_target_name,
    };
    trust.refresh(now).map_err(|r| r.to_string())?;
    let Some((role, file)) = trust
        .find_target(HERD_SET_TARGET)
        .map_err(|r| r.to_string())?
    else {
        return Ok(None);
    };
    if role != HERD_ROLE {
        return Err(format!(
            "{HERD_SET_TARGET} is listed by {role}, not {HERD_ROLE}"
        ));
    }
    let sha256 = file
        .hashes
        .get("sha256")
        .ok_or_else(|| format!("{HERD_SET_TARGET} is listed without a SHA-256"))?;
    if file_sha256(dest).as_ref() == Some(sha256) {
        return Ok(None);
    }
    let path = format!(
        "{TARGETS_PATH}{}",
        consistent_target_name(HERD_SET_TARGET, sha256)
    );
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
    let dir = dest.parent().expect("the set's path has a directory");
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    herd_fs::write_atomic(dest, &bytes, 0o600).map_err(|e| e.to_string())?;
    Ok(Some(herd_proto::api::HerdSetUpdated {
        sha256: actual,
        signatures: bytes.iter().filter(|b| **b == b'\n').count() as u64,
    }))
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
            herd_set_sha256: file_sha256(&herd_set_path(&self.config.state_root)),
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
        if wanted.herd_set_sha256.is_some() {
            databases.push(herd_set_path(&self.config.state_root));
        }
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
            if wanted.herd_set_sha256.is_some() {
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
