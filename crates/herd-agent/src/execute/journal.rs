//! The transaction journal (`<state>/journal.json`) and the record of finished plans
//! (`<state>/reports.json`), both written through `herd_fs::write_atomic` (a temporary file,
//! fsync, rename over the old one, fsync of the directory). A crash at any instant leaves
//! either the old or the new document, never a torn one, and never loses a transition once
//! it returned; the temporary it may leave is ignored and removed at `recover`.
//!
//! The journal persists its own transitions: [`Journal::begin`] writes it, [`Journal::advance`]
//! moves it to the next phase and writes it before returning, [`Journal::finish`] removes it.
//! Step results ([`Journal::record`]) are kept in memory until the next transition, or
//! [`Journal::persist`] where one must survive a crash on its own (a finished download).

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use herd_fs::WriteError;
use herd_proto::api::{PlanReport, StepResult, StepStatus};
use herd_proto::plan::PlanDoc;
use serde::{Deserialize, Serialize};

pub(super) const JOURNAL_FORMAT: &str = "herd.journal/v1";

/// How many finished plans' reports are remembered (to make re-execution a no-op).
const REPORTS_KEPT: usize = 32;

/// How far a transaction got. Before `Verified` a restart rolls back; from `Verified` on it
/// rolls forward (the new product works; finish activating it and remove the old one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Phase {
    /// Downloading packages; nothing installed.
    Fetching,
    /// The install script may be running: the new version directory and `current` may be
    /// half-changed.
    Installing,
    /// The install script succeeded (it switched `current`); not verified yet.
    Installed,
    /// The new product loaded its definitions and detected its test pattern.
    Verified,
    /// `current` points at the new product, durably.
    Activated,
    /// Removing the old product.
    Uninstalling,
    /// Restoring the previous product.
    RollingBack,
}

impl Phase {
    pub(super) fn rolls_forward(self) -> bool {
        matches!(
            self,
            Phase::Verified | Phase::Activated | Phase::Uninstalling
        )
    }

    pub(super) fn describe(self) -> &'static str {
        match self {
            Phase::Fetching => "downloading packages",
            Phase::Installing => "installing",
            Phase::Installed => "installing (before verification)",
            Phase::Verified => "verification",
            Phase::Activated => "activation",
            Phase::Uninstalling => "removing the old product",
            Phase::RollingBack => "rolling back",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Journal {
    /// Where the journal lives (not part of the document).
    #[serde(skip)]
    path: PathBuf,
    pub format: String,
    pub plan_id: String,
    pub plan: PlanDoc,
    /// Where this plan's packages are downloaded.
    pub download_dir: PathBuf,
    /// The text of the `current` link before the install (`None`: no product was active).
    pub previous_current: Option<PathBuf>,
    pub phase: Phase,
    /// Step results so far, in the order they happened.
    pub results: Vec<StepResult>,
}

impl Journal {
    /// Starts the journal of a transaction at [`Phase::Fetching`] and writes it durably: from
    /// here on a crash is recovered at the next start.
    pub(super) fn begin(
        path: PathBuf,
        plan_id: &str,
        plan: &PlanDoc,
        download_dir: PathBuf,
        previous_current: Option<PathBuf>,
    ) -> Result<Journal, WriteError> {
        let journal = Journal {
            path,
            format: JOURNAL_FORMAT.to_owned(),
            plan_id: plan_id.to_owned(),
            plan: plan.clone(),
            download_dir,
            previous_current,
            phase: Phase::Fetching,
            results: Vec::new(),
        };
        write_json(&journal.path, &journal)?;
        Ok(journal)
    }

    /// Moves to `phase` and writes the journal (with every result recorded so far) before
    /// returning, so the next step starts only once a crash would find this one.
    pub(super) fn advance(&mut self, phase: Phase) -> Result<(), String> {
        self.phase = phase;
        self.persist()
    }

    /// Writes the journal as it is now (results recorded since the last transition included).
    pub(super) fn persist(&self) -> Result<(), String> {
        write_json(&self.path, self).map_err(|e| format!("cannot write the journal {e}"))
    }

    /// The transaction is over: the journal goes, durably.
    pub(super) fn finish(&self) -> io::Result<()> {
        remove_durably(&self.path)
    }

    /// Records the result of a step, replacing an earlier one for the same step and kind.
    pub(super) fn record(
        &mut self,
        step: usize,
        kind: &str,
        status: StepStatus,
        detail: Option<String>,
    ) {
        let result = StepResult {
            step,
            kind: kind.to_owned(),
            status,
            detail,
        };
        match self
            .results
            .iter_mut()
            .find(|r| r.step == step && r.kind == kind)
        {
            Some(existing) => *existing = result,
            None => self.results.push(result),
        }
    }

    pub(super) fn result(&self, step: usize, kind: &str) -> Option<&StepResult> {
        self.results
            .iter()
            .find(|r| r.step == step && r.kind == kind)
    }

    pub(super) fn result_mut(&mut self, step: usize, kind: &str) -> Option<&mut StepResult> {
        self.results
            .iter_mut()
            .find(|r| r.step == step && r.kind == kind)
    }
}

/// Loads the journal, `Ok(None)` when there is none.
pub(super) fn load(path: &Path) -> Result<Option<Journal>, String> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut journal: Journal = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "{} is not a journal this agent understands: {e}",
            path.display()
        )
    })?;
    if journal.format != JOURNAL_FORMAT {
        return Err(format!(
            "{} has format {:?}; expected {JOURNAL_FORMAT:?}",
            path.display(),
            journal.format
        ));
    }
    journal.path = path.to_owned();
    Ok(Some(journal))
}

/// Removes a file durably (the directory entry is synced).
pub(super) fn remove_durably(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(parent(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReportLog {
    /// Oldest first.
    pub reports: Vec<PlanReport>,
}

impl ReportLog {
    pub(super) fn load(path: &Path) -> Result<ReportLog, String> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} is not a report log: {e}", path.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(ReportLog::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// The last report for this plan id.
    pub(super) fn find(&self, plan_id: &str) -> Option<&PlanReport> {
        self.reports.iter().rev().find(|r| r.plan_id == plan_id)
    }

    pub(super) fn push(&mut self, report: PlanReport) {
        self.reports.retain(|r| r.plan_id != report.plan_id);
        self.reports.push(report);
        let excess = self.reports.len().saturating_sub(REPORTS_KEPT);
        self.reports.drain(..excess);
    }

    pub(super) fn save(&self, path: &Path) -> Result<(), WriteError> {
        write_json(path, self)
    }
}

/// The journal's documents keep the mode the executor always gave them (readable, in an
/// owner-only state directory).
const MODE: u32 = 0o644;

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), WriteError> {
    herd_fs::write_atomic_with(path, MODE, |file| {
        let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
        file.write_all(&bytes)
    })
}

/// Makes the entries of `dir` durable (for the executor's renames of links and downloads).
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    Ok(herd_fs::sync_dir(dir)?)
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_proto::api::ReportOutcome;
    use herd_proto::plan::Action;

    fn plan() -> PlanDoc {
        PlanDoc {
            terminal: "t".into(),
            action: Action::None,
            uncovered_now: vec![],
            uncovered_now_counts: Default::default(),
            uncovered_now_more: 0,
            uncovered_after: vec![],
            uncovered_after_counts: Default::default(),
            uncovered_after_more: 0,
            from: None,
            to: None,
            consent_required: false,
            not_before: None,
            steps: vec![],
            alternatives: vec![],
            reason: "r".into(),
        }
    }

    #[test]
    fn journal_round_trips_and_replaces_results() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.json");
        assert_eq!(load(&path).unwrap(), None);
        let mut journal =
            Journal::begin(path.clone(), "p1", &plan(), dir.path().into(), None).unwrap();
        assert_eq!(
            load(&path).unwrap().unwrap(),
            journal,
            "begin writes the journal"
        );
        journal.record(0, "fetch", StepStatus::Failed, Some("x".into()));
        journal.record(0, "fetch", StepStatus::Ok, None);
        journal.record(1, "install", StepStatus::Ok, None);
        assert_eq!(
            load(&path).unwrap().unwrap().results,
            [],
            "results wait for a transition"
        );
        journal.advance(Phase::Installed).unwrap();
        let loaded = load(&path).unwrap().unwrap();
        assert_eq!(loaded, journal);
        assert_eq!(loaded.phase, Phase::Installed);
        assert_eq!(loaded.results.len(), 2);
        assert_eq!(loaded.results[0].status, StepStatus::Ok);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["journal.json"], "no temporary is left behind");
        journal.finish().unwrap();
        assert_eq!(load(&path).unwrap(), None);
        fs::write(&path, b"{\"format\": 1}").unwrap();
        assert!(load(&path).unwrap_err().contains("journal.json"));
    }

    #[test]
    fn report_log_keeps_the_latest_per_plan_and_a_bounded_number() {
        let report = |id: &str, outcome| PlanReport {
            plan_id: id.into(),
            outcome,
            steps: vec![],
            installed: None,
            message: None,
        };
        let mut log = ReportLog::default();
        log.push(report("a", ReportOutcome::RolledBack));
        log.push(report("a", ReportOutcome::Succeeded));
        assert_eq!(log.reports.len(), 1);
        assert_eq!(log.find("a").unwrap().outcome, ReportOutcome::Succeeded);
        for i in 0..40 {
            log.push(report(&i.to_string(), ReportOutcome::Succeeded));
        }
        assert_eq!(log.reports.len(), REPORTS_KEPT);
        assert!(log.find("a").is_none());
        assert!(log.find("39").is_some());
    }
}
