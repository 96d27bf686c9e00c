//! Removing products (an `archive` version by the agent's own code in `archive.rs`, other
//! formats by the plan's uninstall script, run by `script.rs` in its own process group under
//! the time limit), verifying the new product, and a package's pre-uninstall hook when a
//! rollback removes it. What these steps mean for the transaction (journal, rollback) is
//! `mod.rs`'s.

use std::path::Path;

use herd_core::PackageFormat;
use herd_package::{Expected, verify_installed};
use herd_proto::api::StepStatus;

use super::shape::{Shape, UninstallItem};
use super::{Executor, script};

impl Executor {
    /// Removes an old product: an `archive` version by the agent's own code (`archive.rs`),
    /// other formats by the plan's uninstall script with `HERD_PREFIX`; the step's status and
    /// detail.
    pub(super) fn run_uninstall(&self, uninstall: &UninstallItem) -> (StepStatus, String) {
        if uninstall.format == PackageFormat::Archive.as_str() {
            return match self.uninstall_archive(&uninstall.product, &uninstall.version) {
                Ok(detail) => (StepStatus::Ok, detail),
                Err(why) => (StepStatus::Failed, why),
            };
        }
        let prefix = &self.config.prefix;
        let env = [("HERD_PREFIX", prefix.as_os_str())];
        let run = script::run(
            "herd-uninstall",
            &uninstall.script,
            &env,
            prefix,
            self.config.script_timeout,
        );
        match run {
            Ok(run) if run.success => (
                StepStatus::Ok,
                format!(
                    "removed {} {} ({} package)",
                    uninstall.product, uninstall.version, uninstall.format
                ),
            ),
            Ok(run) => (StepStatus::Failed, run.describe()),
            Err(e) => (StepStatus::Failed, format!("cannot run sh: {e}")),
        }
    }

    pub(super) fn verify(&self, shape: &Shape) -> Result<String, String> {
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

    /// A rollback's chance for the package to undo its post-install hook, under the same hook
    /// policy; what happened, for the rollback's detail.
    pub(super) fn run_pre_uninstall_hook(&self, dir: &Path) -> Option<String> {
        let manifest = herd_package::installed_manifest(dir).ok()?;
        let hook = manifest.pre_uninstall.clone()?;
        let note = match self
            .hook_run_as(&manifest)
            .and_then(|run_as| self.run_package_hook(dir, &hook, run_as))
        {
            Ok(who) => format!("its pre-uninstall hook {hook} ran {who}"),
            Err(why) => format!("its pre-uninstall hook did not run cleanly: {why}"),
        };
        Some(note)
    }
}
