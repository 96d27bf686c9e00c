//! Recovery at agent start from what `journal.json` says an interrupted transaction had
//! done: roll back while the new product was not verified yet, roll forward (activate,
//! remove the old product) once it was; a download interrupted is deferred, so the next
//! attempt resumes it.

use std::fs;

use herd_proto::api::{PlanReport, StepStatus};

use super::journal::{self, Journal, Phase};
use super::shape::{self, Shape};
use super::{ExecError, Executor};

impl Executor {
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
