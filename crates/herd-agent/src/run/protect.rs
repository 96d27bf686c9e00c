//! Self-protection after activation (issue 14, SPEC §3.3.5): when the product the agent has
//! just activated keeps failing, the agent puts back the one it had before without waiting for
//! the center, keeps it, and says why.
//!
//! - Before a plan that changes the active product, the active product's directory is kept
//!   under `<prefix>/.herd-kept/` (hard links: no bytes copied on the same volume; the
//!   executor removes the original once the new product is active).
//! - Once the plan succeeded, the new product is on probation for `--self-protect-window`
//!   seconds: every fault report about it (`fault.report` events queued by `herd-agent
//!   supervise` or `herd-agent fault report` whose program is the product) is counted at the
//!   start of each cycle, before the outbox sends it. A product that passes its window is
//!   trusted and the kept copy removed.
//! - At `--self-protect-after` faults the agent takes the executor's lock, puts the kept
//!   directory back, points `current` at it, removes the failing version, and queues a
//!   `rollout.self_protected` event ([`SelfProtection`]) that the center stores and counts as
//!   a failed install of the release's rollout. The release is then refused: a plan that
//!   installs it again is declined (and reported so, once per plan) until the upstream offers
//!   another release.
//!
//! State: `<state>/self-protect.json`. No package hook runs during a restore (neither the
//! failing version's pre-uninstall hook nor the restored one's post-install hook): a restore
//! must work when the product cannot run at all.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use herd_fs::{LockError, LockFile};
use herd_proto::api::{EventDoc, SelfProtection};
use herd_proto::fault::FaultReport;
use herd_proto::layout;
use herd_proto::plan::ReleaseRef;
use serde::{Deserialize, Serialize};

use super::state::{load_json, save_json};

/// The state file, in the state directory.
pub(crate) const PROTECT_FILE: &str = "self-protect.json";
/// Where the previous product is kept during a probation, in the prefix.
pub(crate) const KEPT_DIR: &str = ".herd-kept";
/// Fault lines kept for the reason of a restore.
const KEPT_FAULT_LINES: usize = 5;

/// When a just-activated product is undone: after `faults` fault reports within `window_secs`
/// of its activation (`faults` 0: never).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    pub faults: u32,
    pub window_secs: u64,
}

impl Limits {
    pub(crate) fn enabled(&self) -> bool {
        self.faults > 0
    }
}

/// `self-protect.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Protection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probation: Option<Probation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refused>,
}

/// A product activated recently, watched for faults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Probation {
    pub product: String,
    pub version: String,
    /// The product's vendor (from its installed manifest; absent in a state written before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// `current`'s link text for it.
    pub target: String,
    /// `current`'s link text before it; that directory is kept under [`KEPT_DIR`].
    pub previous: String,
    pub activated_at: i64,
    /// Fault reports queued up to this outbox seq came before the activation.
    pub outbox_after: u64,
    /// The seqs of the fault reports counted.
    #[serde(default)]
    pub faults: Vec<u64>,
    /// The first few faults in words, for the reason given.
    #[serde(default)]
    pub seen: Vec<String>,
}

/// A release the agent undid and will not install again until another is offered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Refused {
    pub product: String,
    pub version: String,
    pub at: String,
    pub reason: String,
    /// The last plan offering it that was declined (each plan is reported once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declined_plan: Option<String>,
}

impl Refused {
    /// Whether `to` is this release.
    pub(crate) fn is(&self, to: Option<&ReleaseRef>) -> bool {
        to.is_some_and(|to| to.product == self.product && to.version == self.version)
    }
}

/// What a look at the probation found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Look {
    /// Nothing on probation, or not enough faults yet.
    Nothing,
    /// The window passed without enough faults: the product is trusted now.
    Trusted { product: String, version: String },
    /// Enough faults: restore.
    Failing,
}

impl Protection {
    pub(crate) fn path(state_root: &Path) -> PathBuf {
        state_root.join(PROTECT_FILE)
    }

    /// The saved state; an unreadable file is reported and read as empty (nothing on
    /// probation: the agent then only misses a restore, it never restores wrongly).
    pub(crate) fn load(state_root: &Path) -> Protection {
        match load_json(&Self::path(state_root)) {
            Ok(found) => found.unwrap_or_default(),
            Err(e) => {
                eprintln!("herd-agent: warning: {e:#}; self-protection starts afresh");
                Protection::default()
            }
        }
    }

    pub(crate) fn save(&self, state_root: &Path) -> Result<()> {
        save_json(&Self::path(state_root), self)
    }

    /// Counts the fault reports among `pending` (the outbox's `fault.report` events after the
    /// activation) that concern the product on probation, and says what that calls for.
    pub(crate) fn look(&mut self, pending: &[EventDoc], limits: Limits, now: i64) -> Look {
        let Some(probation) = self.probation.as_mut() else {
            return Look::Nothing;
        };
        for event in pending {
            if event.seq <= probation.outbox_after || probation.faults.contains(&event.seq) {
                continue;
            }
            let Ok(report) = serde_json::from_value::<FaultReport>(event.data.clone()) else {
                continue;
            };
            if !probation.attributes(&report) {
                continue;
            }
            probation.faults.push(event.seq);
            if probation.seen.len() < KEPT_FAULT_LINES {
                probation.seen.push(describe(&report));
            }
        }
        if probation.faults.len() >= limits.faults as usize {
            return Look::Failing;
        }
        if now
            >= probation
                .activated_at
                .saturating_add(limits.window_secs as i64)
        {
            let ended = self.probation.take().expect("on probation");
            return Look::Trusted {
                product: ended.product,
                version: ended.version,
            };
        }
        Look::Nothing
    }
}

impl Probation {
    /// Whether a fault report is about the release on probation: it names the product as
    /// its program (by id, or as `vendor/product`), or it comes from a program of the
    /// product's vendor at the release's version (an engine or helper process the product
    /// runs under another name).
    fn attributes(&self, report: &FaultReport) -> bool {
        let Some(vendor) = &self.vendor else {
            return report.program == self.product;
        };
        report.program == self.product
            || report.program == format!("{vendor}/{}", self.product)
            || (report.vendor == *vendor && report.version == self.version)
    }
}

/// A fault in a few words: `crash (signal 11)`.
fn describe(report: &FaultReport) -> String {
    let kind = serde_json::to_value(report.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "fault".to_owned());
    match (report.signal, report.exit_code) {
        (Some(signal), _) => format!("{kind} (signal {signal})"),
        (None, Some(code)) => format!("{kind} (exit {code})"),
        (None, None) => kind,
    }
}

/// The link text of `current` as a relative path of plain names (what the executor writes);
/// anything else is not something the agent put there and is not followed.
fn plain(target: &Path) -> Result<String> {
    if target.as_os_str().is_empty()
        || !target
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(anyhow!(
            "current → {}: not a product directory of the prefix",
            target.display()
        ));
    }
    target
        .to_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("current → {}: not UTF-8", target.display()))
}

/// Keeps the active product's directory under [`KEPT_DIR`] before a plan replaces it;
/// returns `current`'s link text (`None`: no product is active).
pub(crate) fn keep_previous(prefix: &Path) -> Result<Option<String>> {
    discard_kept(prefix)?;
    let Some(target) = herd_package::current_target(prefix)
        .with_context(|| format!("cannot read {}/current", prefix.display()))?
    else {
        return Ok(None);
    };
    let text = plain(&target)?;
    let from = prefix.join(&target);
    if !from.is_dir() {
        return Ok(None);
    }
    let to = prefix.join(KEPT_DIR).join(&target);
    let parent = to.parent().expect("a kept path has a parent");
    fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    link_tree(&from, &to)
        .with_context(|| format!("cannot keep {} in {}", from.display(), to.display()))?;
    Ok(Some(text))
}

/// Removes the kept copy, if any.
pub(crate) fn discard_kept(prefix: &Path) -> Result<()> {
    let kept = prefix.join(KEPT_DIR);
    match fs::remove_dir_all(&kept) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow!("cannot remove {}: {e}", kept.display())),
    }
}

/// A copy of the tree `from` at `to` made of hard links (copies where a link is refused);
/// modes kept, symbolic links copied as links.
fn link_tree(from: &Path, to: &Path) -> io::Result<()> {
    let mode = fs::symlink_metadata(from)?.permissions();
    fs::create_dir(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if kind.is_dir() {
            link_tree(&source, &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&source)?, &target)?;
        } else if kind.is_file() && fs::hard_link(&source, &target).is_err() {
            fs::copy(&source, &target)?;
        }
    }
    // Last: a read-only directory takes no entries.
    fs::set_permissions(to, mode)
}

/// What a restore did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Restore {
    /// The previous product is active again and the failing one removed.
    Done,
    /// A plan is being carried out (or waits to be recovered): try again next cycle.
    Busy,
    /// Things changed since the activation (another product is active, or the kept copy is
    /// gone): nothing was done, and the probation ends.
    Stale(String),
}

/// Puts the product on probation back to the one before it: see the module documentation.
pub(crate) fn restore(prefix: &Path, state_root: &Path, probation: &Probation) -> Result<Restore> {
    let _lock = match LockFile::try_acquire(&state_root.join("execute.lock")) {
        Ok(lock) => lock,
        Err(LockError::Locked { .. }) => return Ok(Restore::Busy),
        Err(LockError::Io { path, source }) => {
            return Err(anyhow!("cannot lock {}: {source}", path.display()));
        }
    };
    if state_root.join("journal.json").exists() {
        return Ok(Restore::Busy);
    }
    let current = herd_package::current_target(prefix)
        .with_context(|| format!("cannot read {}/current", prefix.display()))?;
    if current.as_deref() != Some(Path::new(&probation.target)) {
        return Ok(Restore::Stale(format!(
            "current points to {} now, not {}",
            current.map_or("nothing".into(), |c| c.display().to_string()),
            probation.target
        )));
    }
    let previous = Path::new(&probation.previous);
    plain(previous)?;
    let previous_dir = prefix.join(previous);
    if !previous_dir.is_dir() {
        let kept = prefix.join(KEPT_DIR).join(previous);
        if !kept.is_dir() {
            return Ok(Restore::Stale(format!(
                "{} was not kept",
                previous_dir.display()
            )));
        }
        let parent = previous_dir.parent().expect("a product path has a parent");
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        fs::rename(&kept, &previous_dir).with_context(|| {
            format!(
                "cannot move {} back to {}",
                kept.display(),
                previous_dir.display()
            )
        })?;
        herd_fs::sync_dir(parent)?;
    }
    // `current` swapped atomically: a new link renamed over it, the prefix synced.
    let temp = prefix.join(layout::CURRENT_NEW);
    match fs::remove_file(&temp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow!("cannot remove {}: {e}", temp.display())),
    }
    std::os::unix::fs::symlink(previous, &temp)
        .and_then(|()| fs::rename(&temp, prefix.join(layout::CURRENT)))
        .with_context(|| format!("cannot point {}/current back", prefix.display()))?;
    herd_fs::sync_dir(prefix)?;
    // The failing version goes; its product directory too when nothing else is left in it.
    let failing = prefix.join(&probation.target);
    if let Err(e) = fs::remove_dir_all(&failing)
        && e.kind() != io::ErrorKind::NotFound
    {
        eprintln!(
            "herd-agent: warning: cannot remove {}: {e}",
            failing.display()
        );
    }
    if let Some(parent) = failing.parent() {
        let _ = fs::remove_dir(parent);
    }
    discard_kept(prefix)?;
    Ok(Restore::Done)
}

/// The event a restore queues, and the sentence the agent says.
pub(crate) fn event(
    probation: &Probation,
    restored: (&str, &str),
    limits: Limits,
) -> SelfProtection {
    let reason = format!(
        "{} {} failed {} time(s) within {} s of its activation ({}); the agent restored {} {} \
         and does not install {} again until another release is offered",
        probation.product,
        probation.version,
        probation.faults.len(),
        limits.window_secs,
        probation.seen.join(", "),
        restored.0,
        restored.1,
        probation.version
    );
    SelfProtection {
        product: probation.product.clone(),
        version: probation.version.clone(),
        restored_product: restored.0.to_owned(),
        restored_version: restored.1.to_owned(),
        faults: probation.faults.len().min(u32::MAX as usize) as u32,
        window_secs: limits.window_secs,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_proto::api::events;
    use serde_json::json;

    const LIMITS: Limits = Limits {
        faults: 3,
        window_secs: 600,
    };

    fn fault(seq: u64, program: &str) -> EventDoc {
        EventDoc {
            seq,
            at: "2026-12-06T12:00:00Z".into(),
            kind: events::FAULT_REPORT.into(),
            data: json!({"program": program, "vendor": "v", "version": "1.0",
                         "platform": "linux-x86_64", "kind": "crash", "signal": 11}),
        }
    }

    fn on_probation() -> Protection {
        Protection {
            probation: Some(Probation {
                product: "engine".into(),
                version: "2".into(),
                vendor: None,
                target: "products/engine/2".into(),
                previous: "products/engine/1".into(),
                activated_at: 1000,
                outbox_after: 10,
                faults: Vec::new(),
                seen: Vec::new(),
            }),
            refused: None,
        }
    }

    #[test]
    fn only_the_products_faults_after_its_activation_count_each_once() {
        let mut p = on_probation();
        let early = [fault(9, "engine"), fault(11, "other"), fault(12, "engine")];
        assert_eq!(p.look(&early, LIMITS, 1001), Look::Nothing);
        // The same pending event seen again (not flushed yet) is not counted twice.
        assert_eq!(p.look(&early, LIMITS, 1002), Look::Nothing);
        assert_eq!(p.probation.as_ref().unwrap().faults, vec![12]);
        let more = [fault(13, "engine"), fault(14, "engine")];
        assert_eq!(p.look(&more, LIMITS, 1003), Look::Failing);
        let probation = p.probation.as_ref().unwrap();
        assert_eq!(probation.seen[0], "crash (signal 11)");
        let event = event(probation, ("engine", "1"), LIMITS);
        assert_eq!(event.faults, 3);
        assert!(
            event.reason.contains("restored engine 1"),
            "{}",
            event.reason
        );
    }

    #[test]
    fn faults_attributed_to_the_release_by_vendor_count_too() {
        let mut p = on_probation();
        p.probation.as_mut().unwrap().vendor = Some("v".into());
        let report = |seq: u64, program: &str, vendor: &str, version: &str| EventDoc {
            data: json!({"program": program, "vendor": vendor, "version": version,
                         "platform": "linux-x86_64", "kind": "exit", "exit_code": 2}),
            ..fault(seq, program)
        };
        let pending = [
            // Named by vendor/product id.
            report(11, "v/engine", "v", "9"),
            // The vendor's helper process at the release's version.
            report(12, "engine-scanner", "v", "2"),
            // Another vendor's program of the same version, and the vendor's other release.
            report(13, "engine-scanner", "w", "2"),
            report(14, "engine-scanner", "v", "1"),
        ];
        assert_eq!(p.look(&pending, LIMITS, 1001), Look::Nothing);
        assert_eq!(p.probation.as_ref().unwrap().faults, vec![11, 12]);
        assert_eq!(p.look(&[fault(15, "engine")], LIMITS, 1002), Look::Failing);
    }

    #[test]
    fn a_product_that_passes_its_window_is_trusted() {
        let mut p = on_probation();
        assert_eq!(p.look(&[fault(11, "engine")], LIMITS, 1599), Look::Nothing);
        assert_eq!(
            p.look(&[], LIMITS, 1600),
            Look::Trusted {
                product: "engine".into(),
                version: "2".into()
            }
        );
        assert_eq!(p.probation, None);
    }

    fn product(prefix: &Path, version: &str) {
        let dir = prefix.join("products/engine").join(version);
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("defs.ndb"), version).unwrap();
        fs::write(dir.join("sub/more"), "x").unwrap();
        std::os::unix::fs::symlink("defs.ndb", dir.join("link")).unwrap();
    }

    fn point(prefix: &Path, target: &str) {
        let _ = fs::remove_file(prefix.join("current"));
        std::os::unix::fs::symlink(target, prefix.join("current")).unwrap();
    }

    #[test]
    fn the_kept_product_comes_back_and_the_failing_one_goes() {
        let tmp = tempfile::tempdir().unwrap();
        let (prefix, state) = (tmp.path().join("prefix"), tmp.path().join("state"));
        fs::create_dir_all(&state).unwrap();
        product(&prefix, "1");
        point(&prefix, "products/engine/1");
        assert_eq!(
            keep_previous(&prefix).unwrap().as_deref(),
            Some("products/engine/1")
        );
        // The executor installs 2 and removes 1.
        product(&prefix, "2");
        point(&prefix, "products/engine/2");
        fs::remove_dir_all(prefix.join("products/engine/1")).unwrap();
        let probation = on_probation().probation.unwrap();

        // A plan under way: not now.
        fs::write(state.join("journal.json"), "{}").unwrap();
        assert_eq!(restore(&prefix, &state, &probation).unwrap(), Restore::Busy);
        fs::remove_file(state.join("journal.json")).unwrap();

        assert_eq!(restore(&prefix, &state, &probation).unwrap(), Restore::Done);
        let dir = prefix.join("products/engine/1");
        assert_eq!(fs::read_to_string(dir.join("defs.ndb")).unwrap(), "1");
        assert_eq!(fs::read_to_string(dir.join("sub/more")).unwrap(), "x");
        assert_eq!(
            fs::read_link(dir.join("link")).unwrap(),
            Path::new("defs.ndb")
        );
        assert_eq!(
            fs::read_link(prefix.join("current")).unwrap(),
            Path::new("products/engine/1")
        );
        assert!(!prefix.join("products/engine/2").exists());
        assert!(!prefix.join(KEPT_DIR).exists());
        // Done once: a second restore finds another product active and does nothing.
        assert!(matches!(
            restore(&prefix, &state, &probation).unwrap(),
            Restore::Stale(_)
        ));
    }

    #[test]
    fn a_current_link_out_of_the_prefix_is_not_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let prefix = tmp.path().join("prefix");
        fs::create_dir_all(&prefix).unwrap();
        point(&prefix, "../elsewhere");
        let err = keep_previous(&prefix).unwrap_err().to_string();
        assert!(err.contains("not a product directory"), "{err}");
        point(&prefix, "/etc");
        assert!(keep_previous(&prefix).is_err());
    }
}
