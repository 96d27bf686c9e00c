//! Plan execution as a transaction (SPEC §3.1 step 5, §3.5): download every package first,
//! install the new product beside the old one, verify it, make it the active product, and
//! only then remove the old one. Any failure — a bad digest, a failing hook, a product that
//! does not detect its own test pattern, the agent killed between two steps — leaves or puts
//! back the previous product, and the result of every step goes into a `PlanReport`.
//!
//! Durability: each transition is written to `<state>/journal.json` (atomically, synced)
//! before the next step starts; [`Executor::recover`], called at agent start, rolls an
//! interrupted plan back if its new product was not verified yet, and forward otherwise.
//! Finished plans' reports are kept in `<state>/reports.json`, so executing a plan that
//! already succeeded does nothing. One process at a time: `<state>/execute.lock` (a `herd_fs::LockFile`).
//!
//! The `archive` install script (herd-planner's `script.rs`) switches `<prefix>/current`
//! itself once its hook succeeded; the executor records the previous link text before the
//! install and restores it (symlink + rename) on any later failure, removing the new version
//! directory. Consent and maintenance windows are the caller's business: `execute` acts now.

mod cli;
mod fetch;
mod journal;
mod script;
mod shape;
mod space;
#[cfg(test)]
mod tests;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use herd_fs::{LockError, LockFile};
use herd_package::{Expected, verify_installed};
use herd_proto::api::{PlanReport, ReportOutcome, StepResult, StepStatus};
use herd_proto::layout;
use herd_proto::plan::{PlanDoc, Step};
use herd_proto::terminal::InstalledDoc;
use sha2::{Digest, Sha256};

pub use cli::{ApplyArgs, run as run_apply};
pub use fetch::{DirFetcher, FetchError, Fetcher};

use journal::{Journal, Phase, ReportLog};
use shape::{FetchItem, Shape};
use space::human;

/// Free space kept beyond what a plan's packages (and their unpacked files) need.
pub const DEFAULT_SPACE_MARGIN: u64 = 8 << 20;

/// How long one install or uninstall script (or hook) may run before it is killed.
pub const DEFAULT_SCRIPT_TIMEOUT: Duration = Duration::from_secs(600);

/// The environment variable of the test-only fault hook: `abort-after:<step>`.
pub const FAULT_ENV: &str = "HERD_AGENT_FAULT";

/// Where the executor keeps products, its journal and its downloads.
#[derive(Clone, Debug)]
pub struct ExecutorConfig {
    /// The product prefix: `<prefix>/products/<product>/<version>` and `<prefix>/current`.
    pub prefix: PathBuf,
    /// The journal, the report log, the lock and (by default) the downloads.
    pub state_dir: PathBuf,
    /// Candidate download directories; each plan downloads into the one on the volume with
    /// the most free space (SPEC §3.5).
    pub download_dirs: Vec<PathBuf>,
    pub space_margin: u64,
    pub script_timeout: Duration,
}

impl ExecutorConfig {
    /// Defaults: downloads into `<state_dir>/downloads` only, an 8 MiB margin, 10 minutes
    /// per script.
    pub fn new(prefix: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> ExecutorConfig {
        let state_dir = state_dir.into();
        ExecutorConfig {
            prefix: prefix.into(),
            download_dirs: vec![state_dir.join("downloads")],
            state_dir,
            space_margin: DEFAULT_SPACE_MARGIN,
            script_timeout: DEFAULT_SCRIPT_TIMEOUT,
        }
    }
}

/// Why the executor could not even start (no report to send: nothing was done).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("another herd-agent process is carrying out a plan (it holds the lock {path})")]
    Busy { path: PathBuf },
    #[error("plan {plan_id} was interrupted and must be recovered first (Executor::recover)")]
    RecoveryPending { plan_id: String },
    #[error("{0}")]
    Journal(String),
    #[error("{FAULT_ENV}={value:?}: expected abort-after:fetch|install|verify|activate")]
    Fault { value: String },
}

/// Test-only: where `HERD_AGENT_FAULT=abort-after:<step>` aborts the process, right after the
/// journal records that step (as a kill -9 there would).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FaultPoint {
    Fetch,
    Install,
    Verify,
    Activate,
}

impl FaultPoint {
    fn from_env() -> Result<Option<FaultPoint>, ExecError> {
        let Some(value) = std::env::var_os(FAULT_ENV) else {
            return Ok(None);
        };
        let value = value.to_string_lossy().into_owned();
        let point = match value.strip_prefix("abort-after:") {
            Some("fetch") => FaultPoint::Fetch,
            Some("install") => FaultPoint::Install,
            Some("verify") => FaultPoint::Verify,
            Some("activate") => FaultPoint::Activate,
            _ => return Err(ExecError::Fault { value }),
        };
        Ok(Some(point))
    }
}

/// The identifier of a plan in reports: the SHA-256 of its JSON (as the center computes it).
pub fn plan_id(plan: &PlanDoc) -> String {
    let json = serde_json::to_vec(plan).expect("a plan always serialises to JSON");
    hex(&Sha256::digest(json))
}

/// Carries out plans on this terminal. Cheap to construct; holds no open files between calls.
#[derive(Debug)]
pub struct Executor {
    config: ExecutorConfig,
    fault: Option<FaultPoint>,
}

/// A download that did not complete: try again later, or give up on the plan.
struct FetchFailure {
    retry: bool,
    why: String,
}

impl Executor {
    /// Creates the state and prefix directories if needed and reads the fault hook.
    pub fn new(config: ExecutorConfig) -> Result<Executor, ExecError> {
        for dir in [&config.state_dir, &config.prefix] {
            fs::create_dir_all(dir).map_err(|source| ExecError::Io {
                path: dir.clone(),
                source,
            })?;
        }
        Ok(Executor {
            fault: FaultPoint::from_env()?,
            config,
        })
    }

    /// What runs now, as the agent reports it (`None`: no product, or a broken one).
    pub fn installed(&self) -> Option<InstalledDoc> {
        herd_package::installed_product(&self.config.prefix)
            .ok()
            .flatten()
    }

    /// Call once at agent start, before any `execute`: finishes a plan the agent was carrying
    /// out when it stopped. Rolls back when its new product was not verified yet, else rolls
    /// forward (activation, removal of the old product). Returns the report to send, or
    /// `None` when nothing was interrupted. A journal that cannot be read is moved aside to
    /// `journal.json.corrupt` and reported as an error; the next call finds none.
    pub fn recover(&self) -> Result<Option<PlanReport>, ExecError> {
        let _lock = self.lock()?;
        // What a crash left mid-write (the journal's, the report log's) is never read back.
        herd_fs::remove_stale_temporaries(&self.config.state_dir).map_err(|e| {
            let (path, source) = e.into_path_and_io_error();
            ExecError::Io { path, source }
        })?;
        let path = self.journal_path();
        let mut journal = match journal::load(&path) {
            Ok(Some(journal)) => journal,
            Ok(None) => return Ok(None),
            Err(why) => {
                let aside = path.with_extension("json.corrupt");
                let moved = fs::rename(&path, &aside);
                return Err(ExecError::Journal(match moved {
                    Ok(()) => format!("{why}; moved aside to {}", aside.display()),
                    Err(e) => format!("{why}; moving it aside failed too: {e}"),
                }));
            }
        };
        let shape = match shape::check(&journal.plan) {
            Ok(Some(shape)) => shape,
            Ok(None) | Err(_) => {
                let _ = journal.finish();
                return Err(ExecError::Journal(format!(
                    "{} holds plan {} that cannot be carried out; removed it",
                    path.display(),
                    journal.plan_id
                )));
            }
        };
        let phase = journal.phase;
        if phase.rolls_forward() {
            return Ok(Some(self.recover_forward(&mut journal, &shape)));
        }
        if phase == Phase::Fetching {
            // Nothing was installed; what was downloaded stays, so the next attempt resumes.
            let why = "the agent stopped while downloading packages".to_owned();
            return Ok(Some(self.defer(&mut journal, why)));
        }
        let at = interrupted_step(&journal, &shape);
        if phase == Phase::Installing {
            journal.record(
                shape.install_step,
                "install",
                StepStatus::Failed,
                Some("interrupted: the agent stopped while the install script ran".to_owned()),
            );
        }
        let reason = format!("the agent stopped during {}", phase.describe());
        Ok(Some(self.roll_back(&mut journal, &shape, at, reason)))
    }

    /// Carries out `plan` now, as one transaction, and reports what happened at each step.
    /// A plan that already succeeded (same `plan_id`) is not carried out again: its report is
    /// returned as it was. Errors mean nothing was started (lock held, journal pending, state
    /// directory unwritable); every other outcome is in the report.
    pub fn execute(
        &self,
        plan_id: &str,
        plan: &PlanDoc,
        fetcher: &dyn Fetcher,
    ) -> Result<PlanReport, ExecError> {
        let _lock = self.lock()?;
        match journal::load(&self.journal_path()) {
            Ok(None) => {}
            Ok(Some(pending)) => {
                return Err(ExecError::RecoveryPending {
                    plan_id: pending.plan_id,
                });
            }
            Err(why) => return Err(ExecError::Journal(why)),
        }
        if let Some(done) = self.report_log().find(plan_id)
            && done.outcome == ReportOutcome::Succeeded
        {
            return Ok(done.clone());
        }
        let shape = match shape::check(plan) {
            Ok(Some(shape)) => shape,
            Ok(None) => {
                return Ok(self.conclude_unstarted(
                    plan_id,
                    plan,
                    ReportOutcome::Succeeded,
                    "the plan has no steps: nothing to do".to_owned(),
                    None,
                ));
            }
            Err(why) => {
                return Ok(self.conclude_unstarted(
                    plan_id,
                    plan,
                    ReportOutcome::RolledBack,
                    format!("the plan cannot be carried out: {why}; nothing was changed"),
                    None,
                ));
            }
        };
        let wanted = shape.wanted();
        let download_dir = match space::choose_download_dir(
            &self.config.download_dirs,
            &wanted,
            self.config.space_margin,
        ) {
            Ok(dir) => dir,
            Err(why) => {
                let first_fetch = shape.fetches[0].step;
                return Ok(self.conclude_unstarted(
                    plan_id,
                    plan,
                    ReportOutcome::Deferred,
                    format!("{why}; nothing was downloaded or installed"),
                    Some((first_fetch, why)),
                ));
            }
        };
        self.remove_stale_downloads(&shape);
        let previous =
            herd_package::current_target(&self.config.prefix).map_err(|source| ExecError::Io {
                path: self.config.prefix.join(layout::CURRENT),
                source,
            })?;
        let mut journal =
            Journal::begin(self.journal_path(), plan_id, plan, download_dir, previous).map_err(
                |e| {
                    let (path, source) = e.into_path_and_io_error();
                    ExecError::Io { path, source }
                },
            )?;

        for fetch in &shape.fetches {
            match self.fetch_one(&journal.download_dir, fetch, fetcher) {
                Ok(detail) => {
                    journal.record(fetch.step, "fetch", StepStatus::Ok, Some(detail));
                    if let Err(e) = journal.persist() {
                        return Ok(self.roll_back(&mut journal, &shape, fetch.step, e));
                    }
                }
                Err(failure) => {
                    journal.record(
                        fetch.step,
                        "fetch",
                        StepStatus::Failed,
                        Some(failure.why.clone()),
                    );
                    if failure.retry {
                        return Ok(self.defer(&mut journal, failure.why));
                    }
                    let reason = format!("downloading {} {} failed", fetch.product, fetch.version);
                    return Ok(self.roll_back(&mut journal, &shape, fetch.step, reason));
                }
            }
        }
        self.fault_point(FaultPoint::Fetch);
        Ok(self.install_and_verify(&mut journal, &shape))
    }

    fn install_and_verify(&self, journal: &mut Journal, shape: &Shape) -> PlanReport {
        let prefix = &self.config.prefix;
        let step = shape.install_step;
        let package = journal.download_dir.join(shape.package_sha256());
        // The package is checked before `tar` sees it: members, manifest, and that it is the
        // release the plan installs.
        match herd_package::inspect_file(&package) {
            Ok(inspection) => {
                let m = &inspection.manifest;
                if m.product != shape.product || m.version != shape.version {
                    let why = format!(
                        "the package holds {} {}, but the plan installs {} {}",
                        m.product, m.version, shape.product, shape.version
                    );
                    journal.record(step, "install", StepStatus::Failed, Some(why));
                    return self.roll_back(journal, shape, step, "the package was refused".into());
                }
                let needed = inspection
                    .unpacked_size
                    .saturating_add(self.config.space_margin);
                match space::free_bytes(prefix) {
                    Ok(free) if free < needed => {
                        let why = format!(
                            "not enough free space to install {} {}: {} needed ({} unpacked + {} \
                             margin), {} has {} free",
                            shape.product,
                            shape.version,
                            human(needed),
                            human(inspection.unpacked_size),
                            human(self.config.space_margin),
                            prefix.display(),
                            human(free)
                        );
                        journal.record(step, "install", StepStatus::Skipped, Some(why.clone()));
                        return self.defer(journal, why);
                    }
                    _ => {}
                }
            }
            Err(e) => {
                let why = format!("the package is refused: {e}");
                journal.record(step, "install", StepStatus::Failed, Some(why));
                return self.roll_back(journal, shape, step, "the package was refused".into());
            }
        }

        match herd_package::current_target(prefix) {
            Ok(previous) => journal.previous_current = previous,
            Err(e) => {
                let why = format!("cannot read {}/current: {e}", prefix.display());
                journal.record(step, "install", StepStatus::Failed, Some(why));
                return self.roll_back(journal, shape, step, "the install could not start".into());
            }
        }
        if let Err(e) = journal.advance(Phase::Installing) {
            return self.roll_back(journal, shape, step, e);
        }
        let env = [
            ("HERD_PACKAGE", package.as_os_str()),
            ("HERD_PREFIX", prefix.as_os_str()),
        ];
        let new_dir = prefix.join(shape.link_target());
        let installed = script::run(
            "herd-install",
            &shape.install_script,
            &env,
            prefix,
            self.config.script_timeout,
        );
        let failure = match installed {
            Err(e) => Some(format!("cannot run sh: {e}")),
            Ok(run) if !run.success => Some(run.describe()),
            Ok(run) => match sync_tree(&new_dir) {
                Err(e) => Some(format!(
                    "the install script succeeded but {} cannot be synced to disk: {e}",
                    new_dir.display()
                )),
                Ok(()) => {
                    let mut detail = format!("unpacked into {}", new_dir.display());
                    if !run.stderr.is_empty() {
                        detail.push_str(&format!("; stderr: {}", run.stderr));
                    }
                    journal.record(step, "install", StepStatus::Ok, Some(detail));
                    None
                }
            },
        };
        if let Some(why) = failure {
            journal.record(step, "install", StepStatus::Failed, Some(why));
            let reason = format!("installing {} {} failed", shape.product, shape.version);
            return self.roll_back(journal, shape, step, reason);
        }
        if let Err(e) = journal.advance(Phase::Installed) {
            return self.roll_back(journal, shape, step, e);
        }
        self.fault_point(FaultPoint::Install);

        let step = shape.verify_step;
        match self.verify(shape) {
            Ok(detail) => journal.record(step, "verify", StepStatus::Ok, Some(detail)),
            Err(why) => {
                journal.record(step, "verify", StepStatus::Failed, Some(why));
                let reason = format!("{} {} failed verification", shape.product, shape.version);
                return self.roll_back(journal, shape, step, reason);
            }
        }
        if let Err(e) = journal.advance(Phase::Verified) {
            return self.roll_back(journal, shape, step, e);
        }
        self.fault_point(FaultPoint::Verify);
        self.finish_forward(journal, shape)
    }

    fn verify(&self, shape: &Shape) -> Result<String, String> {
        let dir = self.config.prefix.join(shape.link_target());
        let expected = Expected {
            product: &shape.product,
            version: &shape.version,
            seq: shape.seq,
            pattern: &shape.pattern,
        };
        let outcome = verify_installed(&dir, &expected).map_err(|e| e.to_string())?;
        Ok(format!(
            "{} {} ({}): {} signature(s) loaded; its test pattern {} is detected as {}",
            shape.product,
            shape.version,
            shape.pattern,
            outcome.signatures,
            outcome.manifest.test_pattern,
            outcome.detected_as
        ))
    }

    /// A restart found the new product verified: check it again (a power loss may have
    /// undone unsynced writes), then finish.
    fn recover_forward(&self, journal: &mut Journal, shape: &Shape) -> PlanReport {
        if journal.phase != Phase::Uninstalling
            && let Err(why) = self.verify(shape)
        {
            journal.record(
                shape.verify_step,
                "verify",
                StepStatus::Failed,
                Some(format!(
                    "verified before the agent stopped, but not at restart: {why}"
                )),
            );
            let reason = format!(
                "{} {} no longer verifies after the restart",
                shape.product, shape.version
            );
            return self.roll_back(journal, shape, shape.verify_step, reason);
        }
        self.finish_forward(journal, shape)
    }

    /// Activation (durably), then removal of the old product, then the report.
    fn finish_forward(&self, journal: &mut Journal, shape: &Shape) -> PlanReport {
        let prefix = &self.config.prefix;
        let target = shape.link_target();
        let activated = journal
            .result(shape.verify_step, "activate")
            .is_some_and(|r| r.status == StepStatus::Ok);
        if !activated {
            match activate(prefix, &target) {
                Ok(detail) => {
                    journal.record(shape.verify_step, "activate", StepStatus::Ok, Some(detail))
                }
                Err(e) => {
                    let why = format!("cannot point {}/current at {target}: {e}", prefix.display());
                    journal.record(shape.verify_step, "activate", StepStatus::Failed, Some(why));
                    let reason = "activating the new product failed".to_owned();
                    return self.roll_back(journal, shape, shape.verify_step, reason);
                }
            }
            if let Err(e) = journal.advance(Phase::Activated) {
                return self.roll_back(journal, shape, shape.verify_step, e);
            }
            self.fault_point(FaultPoint::Activate);
        }

        let mut removal_problems = Vec::new();
        for uninstall in &shape.uninstalls {
            let done = journal
                .result(uninstall.step, "uninstall")
                .is_some_and(|r| r.status == StepStatus::Ok);
            if done {
                continue;
            }
            if let Err(e) = journal.advance(Phase::Uninstalling) {
                // Without a journal entry a crash would not know the old product is half
                // removed: leave it in place.
                journal.record(
                    uninstall.step,
                    "uninstall",
                    StepStatus::Skipped,
                    Some(e.clone()),
                );
                removal_problems.push(e);
                break;
            }
            let env = [("HERD_PREFIX", prefix.as_os_str())];
            let run = script::run(
                "herd-uninstall",
                &uninstall.script,
                &env,
                prefix,
                self.config.script_timeout,
            );
            let (status, detail) = match run {
                Ok(run) if run.success => (
                    StepStatus::Ok,
                    format!(
                        "removed {} {} ({} package)",
                        uninstall.product, uninstall.version, uninstall.format
                    ),
                ),
                Ok(run) => (StepStatus::Failed, run.describe()),
                Err(e) => (StepStatus::Failed, format!("cannot run sh: {e}")),
            };
            if status == StepStatus::Failed {
                removal_problems.push(format!(
                    "{} {} could not be removed: {detail}",
                    uninstall.product, uninstall.version
                ));
            }
            journal.record(uninstall.step, "uninstall", status, Some(detail));
            let _ = journal.persist();
        }

        let mut message = format!(
            "{} {} ({}) is active",
            shape.product, shape.version, shape.pattern
        );
        let removed: Vec<String> = shape
            .uninstalls
            .iter()
            .filter(|u| {
                journal
                    .result(u.step, "uninstall")
                    .is_some_and(|r| r.status == StepStatus::Ok)
            })
            .map(|u| format!("{} {}", u.product, u.version))
            .collect();
        if !removed.is_empty() {
            message.push_str(&format!("; {} removed", removed.join(", ")));
        }
        if !removal_problems.is_empty() {
            message.push_str(&format!(
                "; the new product stays active, but {}",
                removal_problems.join("; ")
            ));
        }
        self.conclude(journal, shape, ReportOutcome::Succeeded, message)
    }

    /// Puts the previous product back: the `current` link as it was, the new version
    /// directory removed (after its pre-uninstall hook if its install completed), the
    /// downloads deleted. Idempotent, so a crash while rolling back is finished at restart.
    fn roll_back(
        &self,
        journal: &mut Journal,
        shape: &Shape,
        at_step: usize,
        reason: String,
    ) -> PlanReport {
        let prefix = &self.config.prefix;
        let _ = journal.advance(Phase::RollingBack);
        let new_target = PathBuf::from(shape.link_target());
        let new_dir = prefix.join(&new_target);
        let previous = journal.previous_current.clone();
        let previous_is_new = previous.as_deref() == Some(new_target.as_path());
        let mut done = Vec::new();
        let mut problems = Vec::new();

        let current = herd_package::current_target(prefix);
        match (&previous, current) {
            (_, Err(e)) => problems.push(format!("cannot read {}/current: {e}", prefix.display())),
            (Some(previous), Ok(current)) if current.as_deref() != Some(previous.as_path()) => {
                match swap_link(prefix, previous) {
                    Ok(()) => done.push(format!("current → {} restored", previous.display())),
                    Err(e) => problems.push(format!(
                        "cannot restore current → {}: {e}",
                        previous.display()
                    )),
                }
            }
            (None, Ok(Some(current))) if current == new_target => {
                match fs::remove_file(prefix.join(layout::CURRENT))
                    .and_then(|()| journal::sync_dir(prefix))
                {
                    Ok(()) => done.push("current removed (no product was active before)".into()),
                    Err(e) => {
                        problems.push(format!("cannot remove {}/current: {e}", prefix.display()))
                    }
                }
            }
            _ => {}
        }

        let install_completed = journal
            .result(shape.install_step, "install")
            .is_some_and(|r| matches!(r.status, StepStatus::Ok | StepStatus::Undone));
        if !previous_is_new && new_dir.exists() {
            if install_completed && problems.is_empty() {
                // The post-install hook ran; give the package its chance to undo it.
                if let Some(note) = self.run_pre_uninstall_hook(&new_dir) {
                    done.push(note);
                }
            }
            if problems.is_empty() {
                match fs::remove_dir_all(&new_dir) {
                    Ok(()) => done.push(format!("{} removed", new_target.display())),
                    Err(e) => problems.push(format!("cannot remove {}: {e}", new_dir.display())),
                }
            }
        }
        let mut staging = new_dir.as_os_str().to_owned();
        staging.push(layout::STAGING_SUFFIX);
        let _ = fs::remove_dir_all(PathBuf::from(staging));
        let _ = fs::remove_file(prefix.join(layout::CURRENT_NEW));
        if let Some(product_dir) = new_dir.parent() {
            // Only if empty: other versions of the product stay.
            let _ = fs::remove_dir(product_dir);
        }
        let _ = journal::sync_dir(prefix);

        if let Some(install) = journal.result_mut(shape.install_step, "install")
            && install.status == StepStatus::Ok
        {
            install.status = StepStatus::Undone;
        }
        let status = if problems.is_empty() {
            StepStatus::Ok
        } else {
            StepStatus::Failed
        };
        let mut detail = reason.clone();
        if done.is_empty() && problems.is_empty() {
            detail.push_str("; nothing had been installed");
        }
        for line in done.iter().chain(problems.iter()) {
            detail.push_str("; ");
            detail.push_str(line);
        }
        journal.record(at_step, "rollback", status, Some(detail));

        let now_active = match self.installed() {
            Some(p) => format!("{} {} ({}) is active", p.product, p.version, p.pattern),
            None => "no product is active".to_owned(),
        };
        if !problems.is_empty() {
            // Keep the journal: the next start tries the rollback again.
            let _ = journal.persist();
            let message = format!(
                "{reason}; the rollback is incomplete ({}); {now_active}; it is retried at the next start",
                problems.join("; ")
            );
            return self.compose(journal, ReportOutcome::RolledBack, message);
        }
        let message = format!("{reason}; {now_active}, as before the plan");
        self.conclude(journal, shape, ReportOutcome::RolledBack, message)
    }

    fn run_pre_uninstall_hook(&self, dir: &Path) -> Option<String> {
        let manifest = herd_package::installed_manifest(dir).ok()?;
        let hook = manifest.pre_uninstall?;
        let path = dir.join(&hook);
        let env = [("HERD_PREFIX", self.config.prefix.as_os_str())];
        let note = match script::run_hook(&path, dir, &env, self.config.script_timeout) {
            Ok(run) if run.success => format!("its pre-uninstall hook {hook} ran"),
            Ok(run) => format!("its pre-uninstall hook {hook} failed ({})", run.describe()),
            Err(e) => format!("its pre-uninstall hook {hook} could not run: {e}"),
        };
        Some(note)
    }

    /// A plan that cannot go on now but may later (download interrupted, disk full): the
    /// journal goes, finished downloads and part files stay for the next attempt.
    fn defer(&self, journal: &mut Journal, why: String) -> PlanReport {
        let report = self.compose(
            journal,
            ReportOutcome::Deferred,
            format!("{why}; nothing was installed; the plan is retried later"),
        );
        self.remember(&report);
        let _ = journal.finish();
        report
    }

    /// The end of a transaction: the report is recorded before the journal goes, so a crash
    /// in between only repeats (idempotent) work.
    fn conclude(
        &self,
        journal: &Journal,
        shape: &Shape,
        outcome: ReportOutcome,
        message: String,
    ) -> PlanReport {
        let report = self.compose(journal, outcome, message);
        self.remember(&report);
        let _ = journal.finish();
        for fetch in &shape.fetches {
            remove_download(&journal.download_dir, &fetch.sha256);
        }
        report
    }

    /// A report for a plan refused before anything started.
    fn conclude_unstarted(
        &self,
        plan_id: &str,
        plan: &PlanDoc,
        outcome: ReportOutcome,
        message: String,
        detail: Option<(usize, String)>,
    ) -> PlanReport {
        let steps = plan
            .steps
            .iter()
            .enumerate()
            .map(|(i, step)| StepResult {
                step: i,
                kind: step_kind(step).to_owned(),
                status: StepStatus::Skipped,
                detail: detail
                    .as_ref()
                    .filter(|(at, _)| *at == i)
                    .map(|(_, d)| d.clone()),
            })
            .collect();
        let report = PlanReport {
            plan_id: plan_id.to_owned(),
            outcome,
            steps,
            installed: self.installed(),
            message: Some(message),
        };
        self.remember(&report);
        report
    }

    /// Every plan step in order (`skipped` when it did not run), `activate` after `verify`,
    /// `rollback` last.
    fn compose(&self, journal: &Journal, outcome: ReportOutcome, message: String) -> PlanReport {
        let mut steps = Vec::with_capacity(journal.plan.steps.len() + 2);
        for (i, step) in journal.plan.steps.iter().enumerate() {
            let kind = step_kind(step);
            steps.push(journal.result(i, kind).cloned().unwrap_or(StepResult {
                step: i,
                kind: kind.to_owned(),
                status: StepStatus::Skipped,
                detail: None,
            }));
            if let Some(activate) = journal.result(i, "activate") {
                steps.push(activate.clone());
            }
        }
        steps.extend(
            journal
                .results
                .iter()
                .filter(|r| r.kind == "rollback")
                .cloned(),
        );
        PlanReport {
            plan_id: journal.plan_id.clone(),
            outcome,
            steps,
            installed: self.installed(),
            message: Some(message),
        }
    }

    fn fetch_one(
        &self,
        dir: &Path,
        item: &FetchItem,
        fetcher: &dyn Fetcher,
    ) -> Result<String, FetchFailure> {
        let refuse = |why: String| FetchFailure { retry: false, why };
        let final_path = dir.join(&item.sha256);
        let part = dir.join(format!("{}.part", item.sha256));
        if fetch::len_or_zero(&final_path).unwrap_or(0) == item.size
            && sha256_file(&final_path).is_ok_and(|d| d == item.sha256)
        {
            return Ok(format!(
                "{} already downloaded in {}",
                human(item.size),
                final_path.display()
            ));
        }
        let _ = fs::remove_file(&final_path);
        let mut resume_from = fetch::len_or_zero(&part).unwrap_or(0);
        if resume_from > item.size {
            let _ = fs::remove_file(&part);
            resume_from = 0;
        }
        if resume_from < item.size {
            match fetcher.fetch(&item.sha256, item.size, &part, resume_from) {
                Ok(()) => {}
                Err(FetchError::Interrupted(why)) => {
                    let kept = fetch::len_or_zero(&part).unwrap_or(0);
                    return Err(FetchFailure {
                        retry: true,
                        why: format!(
                            "the download was interrupted ({why}); {kept} of {} bytes are kept in {} and the next attempt resumes from there",
                            item.size,
                            part.display()
                        ),
                    });
                }
                Err(FetchError::Write { path, source })
                    if matches!(
                        source.kind(),
                        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
                    ) =>
                {
                    // Refuse rather than truncate (SPEC §3.5): the partial file goes, so the
                    // disk is left as it was.
                    let _ = fs::remove_file(&part);
                    let free = space::free_bytes(dir).map(human).unwrap_or_default();
                    return Err(FetchFailure {
                        retry: true,
                        why: format!(
                            "the disk filled up while downloading into {} ({source}; {free} free); the partial download was deleted",
                            path.display()
                        ),
                    });
                }
                Err(e) => {
                    let _ = fs::remove_file(&part);
                    return Err(refuse(e.to_string()));
                }
            }
        }
        let got = fetch::len_or_zero(&part).unwrap_or(0);
        if got != item.size {
            let _ = fs::remove_file(&part);
            return Err(refuse(format!(
                "received {got} bytes, but the plan says the package has {}; the download was deleted",
                item.size
            )));
        }
        let digest = sha256_file(&part).map_err(|e| refuse(format!("{}: {e}", part.display())))?;
        if digest != item.sha256 {
            let _ = fs::remove_file(&part);
            return Err(refuse(format!(
                "the download has SHA-256 {digest}, but the plan says {}; the download was deleted",
                item.sha256
            )));
        }
        File::open(&part)
            .and_then(|f| f.sync_all())
            .and_then(|()| fs::rename(&part, &final_path))
            .and_then(|()| journal::sync_dir(dir))
            .map_err(|e| refuse(format!("{}: {e}", final_path.display())))?;
        let mut detail = format!(
            "{} verified (size and SHA-256) in {}",
            human(item.size),
            final_path.display()
        );
        if resume_from > 0 {
            detail.push_str(&format!("; resumed at byte {resume_from}"));
        }
        Ok(detail)
    }

    /// Packages and part files of earlier plans that will never finish (the center sent
    /// another plan since) are removed, in every candidate directory; only names the executor
    /// itself creates (`<sha256>`, `<sha256>.part`) are touched.
    fn remove_stale_downloads(&self, shape: &Shape) {
        for dir in &self.config.download_dirs {
            let Ok(entries) = fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let digest = name.strip_suffix(".part").unwrap_or(name);
                let ours = digest.len() == 64
                    && digest
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                if ours && !shape.fetches.iter().any(|f| f.sha256 == digest) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }

    fn remember(&self, report: &PlanReport) {
        let mut log = self.report_log();
        log.push(report.clone());
        if let Err(e) = log.save(&self.reports_path()) {
            // `e` names the file and the step that failed.
            eprintln!(
                "herd-agent: cannot record the report of plan {}: {e}",
                report.plan_id
            );
        }
    }

    /// The report log; an unreadable one counts as empty (it only prevents repeated work).
    fn report_log(&self) -> ReportLog {
        ReportLog::load(&self.reports_path()).unwrap_or_else(|why| {
            eprintln!("herd-agent: {why}; starting a new report log");
            ReportLog::default()
        })
    }

    fn fault_point(&self, point: FaultPoint) {
        if self.fault == Some(point) {
            eprintln!("herd-agent: {FAULT_ENV}: aborting after {point:?} as asked");
            std::process::abort();
        }
    }

    fn lock(&self) -> Result<LockFile, ExecError> {
        LockFile::try_acquire(&self.config.state_dir.join("execute.lock")).map_err(|e| match e {
            LockError::Locked { path, .. } => ExecError::Busy { path },
            LockError::Io { path, source } => ExecError::Io { path, source },
        })
    }

    fn journal_path(&self) -> PathBuf {
        self.config.state_dir.join("journal.json")
    }

    fn reports_path(&self) -> PathBuf {
        self.config.state_dir.join("reports.json")
    }
}

/// The step a restart found in progress (where the rollback is reported): the install, or
/// for a rollback that was itself interrupted, the step that failed.
fn interrupted_step(journal: &Journal, shape: &Shape) -> usize {
    match journal.phase {
        Phase::Installing | Phase::Installed => shape.install_step,
        _ => journal
            .results
            .iter()
            .rev()
            .find(|r| r.status == StepStatus::Failed)
            .map_or(shape.install_step, |r| r.step),
    }
}

fn step_kind(step: &Step) -> &'static str {
    match step {
        Step::Fetch { .. } => "fetch",
        Step::Install { .. } => "install",
        Step::Verify { .. } => "verify",
        Step::Uninstall { .. } => "uninstall",
    }
}

/// Points `<prefix>/current` at `target` durably (it usually already does: the install
/// script switched it).
fn activate(prefix: &Path, target: &str) -> io::Result<String> {
    let current = herd_package::current_target(prefix)?;
    if current.as_deref() == Some(Path::new(target)) {
        journal::sync_dir(prefix)?;
        return Ok(format!(
            "current → {target} (switched by the install script)"
        ));
    }
    swap_link(prefix, Path::new(target))?;
    Ok(format!("current → {target}"))
}

/// Replaces `<prefix>/current` by a link to `target` atomically: a new link, renamed over.
fn swap_link(prefix: &Path, target: &Path) -> io::Result<()> {
    let temp = prefix.join(layout::CURRENT_NEW);
    match fs::remove_file(&temp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::os::unix::fs::symlink(target, &temp)?;
    fs::rename(&temp, prefix.join(layout::CURRENT))?;
    journal::sync_dir(prefix)
}

/// Syncs every file and directory under `dir`, so an installed product survives a power loss
/// once the journal says it was installed.
fn sync_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            sync_tree(&entry.path())?;
        } else if kind.is_file() {
            File::open(entry.path())?.sync_all()?;
        }
    }
    journal::sync_dir(dir)
}

fn remove_download(dir: &Path, sha256: &str) {
    let _ = fs::remove_file(dir.join(sha256));
    let _ = fs::remove_file(dir.join(format!("{sha256}.part")));
}

fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
