//! How a transaction ends: the `PlanReport` (every plan step in order, `activate` and
//! `rollback` where they happened), recorded in `reports.json` before the journal goes (so a
//! plan that succeeded is not carried out again), and the downloads it no longer needs removed.

use herd_proto::api::{PlanReport, ReportOutcome, StepResult, StepStatus};
use herd_proto::plan::{PlanDoc, Step};

use super::Executor;
use super::download::remove_download;
use super::journal::{Journal, ReportLog};
use super::shape::Shape;

impl Executor {
    /// A plan that cannot go on now but may later (download interrupted, disk full): the
    /// journal goes, finished downloads and part files stay for the next attempt.
    pub(super) fn defer(&self, journal: &mut Journal, why: String) -> PlanReport {
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
    pub(super) fn conclude(
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
    pub(super) fn conclude_unstarted(
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
    pub(super) fn compose(
        &self,
        journal: &Journal,
        outcome: ReportOutcome,
        message: String,
    ) -> PlanReport {
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

    pub(super) fn remember(&self, report: &PlanReport) {
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
    pub(super) fn report_log(&self) -> ReportLog {
        ReportLog::load(&self.reports_path()).unwrap_or_else(|why| {
            eprintln!("herd-agent: {why}; starting a new report log");
            ReportLog::default()
        })
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
