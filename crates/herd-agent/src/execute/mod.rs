//! Plan execution as a transaction (SPEC §3.1 step 5, §3.5): download every package first,
//! install the new product beside the old one, verify it, make it the active product, and
//! only then remove the old one. Any failure — a bad digest, a failing hook, a product that
//! does not detect its own test pattern, the agent killed between two steps — leaves or puts
//! back the previous product, and the result of every step goes into a `PlanReport`.
//!
//! This file is the transaction itself, its phases in order ([`Executor::execute`]); each
//! phase's work lives where its name says:
//!
//! - `download.rs`: packages into the download directory (resumable, size and SHA-256
//!   checked), through the `Fetcher` port of `fetch.rs`; `space.rs` picks the directory;
//! - `archive.rs`: the agent's own install of an `archive` package (unpacked by
//!   `herd_package::unpack_file` into `.herd-staging`, moved into place, post-install hook) and
//!   removal of a version (pre-uninstall hook, then `unlinkat` through directory handles);
//! - `hooks.rs`: who hooks run as (`--hook-user`, `nobody` by default; root only for packages
//!   that declare it and an agent started with `--allow-root-hooks`);
//! - `install.rs`: removal of other formats by the plan's uninstall scripts (run by
//!   `script.rs` with limits), and verifying the new product;
//! - `activate.rs`: the `current` link swap, and undoing an install on rollback;
//! - `recover.rs`: finishing, at agent start, a transaction the journal says was interrupted;
//! - `report.rs`: the `PlanReport` and the record of finished plans;
//! - `journal.rs`: `<state>/journal.json`, which persists each transition itself
//!   (`journal.advance(phase)` returns once the phase is durable), and `reports.json`;
//! - `shape.rs`: checks a plan has a shape the executor can carry out;
//! - `cli.rs`: `herd-agent apply`, the offline front end.
//!
//! Durability: each transition is written to `<state>/journal.json` (atomically, synced)
//! before the next step starts; [`Executor::recover`], called at agent start, rolls an
//! interrupted plan back if its new product was not verified yet, and forward otherwise.
//! Finished plans' reports are kept in `<state>/reports.json`, so executing a plan that
//! already succeeded does nothing. One process at a time: `<state>/execute.lock` (a `herd_fs::LockFile`).
//!
//! The plan's `archive` install script (herd-planner's `script.rs`) is not run: it would
//! unpack with `tar`, a second parser keeping the archive's owners and modes. The executor
//! unpacks the package itself (`archive.rs`), switches `<prefix>/current` only once the new
//! product is verified, records the previous link text before the install and restores it
//! (symlink + rename) on any later failure, removing the new version directory. Consent and
//! maintenance windows are the caller's business: `execute` acts now.

mod activate;
mod archive;
mod cli;
mod content;
mod download;
mod fetch;
mod hooks;
#[cfg(test)]
mod hostile;
mod install;
mod journal;
mod recover;
mod report;
mod script;
mod shape;
pub(crate) mod space;
#[cfg(test)]
mod tests;

use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use herd_fs::{LockError, LockFile};
use herd_proto::api::{PlanReport, ReportOutcome, StepStatus};
use herd_proto::layout;
use herd_proto::plan::PlanDoc;
use herd_proto::terminal::InstalledDoc;
use sha2::{Digest, Sha256};

pub use cli::{ApplyArgs, run as run_apply};
pub use content::MAX_KEPT_CONTENT;
pub use fetch::{DirFetcher, FetchError, Fetcher, Rebuilt, content_file_name};
pub use hooks::{HookArgs, HookPolicy, HookRunner};

use activate::activate;
use journal::{Journal, Phase};
use shape::Shape;
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
    /// Who package hooks run as.
    pub hooks: HookPolicy,
}

impl ExecutorConfig {
    /// Defaults: downloads into `<state_dir>/downloads` only, an 8 MiB margin, 10 minutes
    /// per script, hooks as `nobody` and never as root.
    pub fn new(prefix: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> ExecutorConfig {
        let state_dir = state_dir.into();
        ExecutorConfig {
            prefix: prefix.into(),
            download_dirs: vec![state_dir.join("downloads")],
            state_dir,
            space_margin: DEFAULT_SPACE_MARGIN,
            script_timeout: DEFAULT_SCRIPT_TIMEOUT,
            hooks: HookPolicy::least_privilege(),
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
    /// What the last `execute` downloaded that was not the package it should be (its size or
    /// SHA-256 differ from the signed ones): the caller reports it as a trust refusal.
    tampered: std::cell::RefCell<Option<String>>,
}

impl Executor {
    /// What the last `execute` downloaded that was not the signed package, once.
    pub fn take_tampered(&self) -> Option<String> {
        self.tampered.borrow_mut().take()
    }

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
            tampered: std::cell::RefCell::new(None),
            config,
        })
    }

    /// The candidate download directories from now on (volumes came or went: see
    /// `run::volumes`).
    pub fn set_download_dirs(&mut self, dirs: Vec<PathBuf>) {
        self.config.download_dirs = dirs;
    }

    /// The candidate download directories now.
    pub fn download_dirs(&self) -> &[PathBuf] {
        &self.config.download_dirs
    }

    /// What runs now, as the agent reports it (`None`: no product, or a broken one).
    pub fn installed(&self) -> Option<InstalledDoc> {
        herd_package::installed_product(&self.config.prefix)
            .ok()
            .flatten()
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
                    if failure.tampered {
                        *self.tampered.borrow_mut() = Some(format!(
                            "{} {}: {}",
                            fetch.product, fetch.version, failure.why
                        ));
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
        let package = self.package_source(journal, shape);
        // The package is checked before anything is written: members, manifest, that it is the
        // release the plan installs, and that it fits.
        let inspection = match package.inspect() {
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
                inspection
            }
            Err(e) => {
                let why = format!("the package is refused: {e}");
                journal.record(step, "install", StepStatus::Failed, Some(why));
                return self.roll_back(journal, shape, step, "the package was refused".into());
            }
        };

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
        let failure =
            match self.install_archive(&shape.product, &shape.version, &package, &inspection) {
                Ok(detail) => {
                    journal.record(step, "install", StepStatus::Ok, Some(detail));
                    None
                }
                Err(why) => Some(why),
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
            let (status, detail) = self.run_uninstall(uninstall);
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
        // The content deltas apply to next time: the active release's, and only it.
        let source = self.package_source(journal, shape);
        if source.path().exists()
            && let Err(why) = self.keep_content(&source)
        {
            self.forget_content(None);
            message.push_str(&format!(
                "; its content is not kept for definition deltas ({why}): the next update \
                 downloads the full package"
            ));
        }
        self.conclude(journal, shape, ReportOutcome::Succeeded, message)
    }

    /// The downloaded package of `shape`, or its content rebuilt from a delta.
    fn package_source(&self, journal: &Journal, shape: &Shape) -> content::Source {
        let package = journal.download_dir.join(shape.package_sha256());
        let rebuilt = journal
            .download_dir
            .join(content_file_name(shape.package_sha256()));
        if !package.exists() && rebuilt.exists() {
            content::Source::Content(rebuilt)
        } else {
            content::Source::Package(package)
        }
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
        let _ = journal.advance(Phase::RollingBack);
        let (done, problems) = self.undo_install(journal, shape);

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

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
