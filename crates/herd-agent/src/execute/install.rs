//! Removing products (an `archive` version by the agent's own code in `archive.rs`, other
//! formats by the plan's uninstall script, run by `script.rs` in its own process group under
//! the time limit), verifying the new product (its definitions detecting its test pattern, its
//! health check giving what its manifest says), and a package's pre-uninstall hook when a
//! rollback removes it. What these steps mean for the transaction (journal, rollback) is
//! `mod.rs`'s.

use std::path::Path;
use std::time::Duration;

use herd_core::PackageFormat;
use herd_package::{Expected, HealthCheck, verify_installed};
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
        let mut detail = format!(
            "{} {} ({}, a {})",
            shape.product,
            shape.version,
            shape.pattern,
            outcome.manifest.kind()
        );
        if let (Some(test_pattern), Some(detected_as)) =
            (&outcome.manifest.test_pattern, &outcome.detected_as)
        {
            detail.push_str(&format!(
                ": {} signature(s) loaded; its test pattern {test_pattern} is detected as \
                 {detected_as}",
                outcome.signatures
            ));
        }
        if let Some(check) = &outcome.manifest.health_check {
            let passed = self.health_check(&dir, &outcome.manifest, check)?;
            detail.push_str(&format!("; {passed}"));
        }
        Ok(detail)
    }

    /// Runs the package's health check from its installed directory, under the hook policy,
    /// and compares what it gave with what the manifest says it must give; what passed, or why
    /// it failed (a status, a missing text, the time limit, a command that cannot run).
    fn health_check(
        &self,
        dir: &Path,
        manifest: &herd_package::Manifest,
        check: &HealthCheck,
    ) -> Result<String, String> {
        let Some((program, args)) = check.command.split_first() else {
            return Err("the health check names no command".to_owned());
        };
        let shown = check.command.join(" ");
        let run_as = self.hook_run_as(manifest)?;
        let who = self.config.hooks.describe(run_as);
        // Relative to the version directory, entered before privileges are dropped (as hooks).
        let path = Path::new(".").join(program);
        let env = [("HERD_PREFIX", self.config.prefix.as_os_str())];
        let timeout = Duration::from_millis(check.timeout_ms);
        let run = script::run_program(&path, args, dir, &env, timeout, run_as, true)
            .map_err(|e| format!("the health check `{shown}` could not run ({who}): {e}"))?;
        let failed = |why: String| {
            let mut message = format!("the health check `{shown}` failed ({who}): {why}");
            if !run.stderr.is_empty() {
                message.push_str(&format!("; stderr: {}", run.stderr));
            }
            Err(message)
        };
        if run.timed_out {
            return failed(format!(
                "it did not finish within its {} ms limit and was killed",
                check.timeout_ms
            ));
        }
        if let Some(want) = check.exit_status
            && run.code != Some(want)
        {
            return failed(format!(
                "it ended with {}, not exit status {want}",
                run.status
            ));
        }
        if let Some(text) = &check.output_contains
            && !contains(&run.stdout, text.as_bytes())
        {
            let printed = String::from_utf8_lossy(&run.stdout);
            let printed: String = printed.trim().chars().take(200).collect();
            return failed(format!(
                "its output does not contain {text:?} (it printed {printed:?}; {})",
                run.status
            ));
        }
        let mut gave = Vec::new();
        if let Some(status) = check.exit_status {
            gave.push(format!("exit status {status}"));
        }
        if let Some(text) = &check.output_contains {
            gave.push(format!("output containing {text:?}"));
        }
        Ok(format!(
            "its health check `{shown}` passed ({who}): {}",
            gave.join(" and ")
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

/// Whether `needle` occurs in `haystack` (bytes: a health check may print anything).
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
