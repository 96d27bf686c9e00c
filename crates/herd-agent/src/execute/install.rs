//! Installing and removing products: the plan's install and uninstall scripts (run by
//! `script.rs` in their own process group, under the time limit), syncing what an install
//! wrote, verifying the new product, and a package's pre-uninstall hook when a rollback
//! removes it. What these steps mean for the transaction (journal, rollback) is `mod.rs`'s.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use herd_package::{Expected, verify_installed};
use herd_proto::api::StepStatus;

use super::shape::{Shape, UninstallItem};
use super::{Executor, journal, script};

impl Executor {
    /// Runs the install script with `HERD_PACKAGE` and `HERD_PREFIX`, then syncs the new
    /// version directory; the step's detail, or why it failed.
    pub(super) fn run_install_script(
        &self,
        shape: &Shape,
        package: &Path,
    ) -> Result<String, String> {
        let prefix = &self.config.prefix;
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
        match installed {
            Err(e) => Err(format!("cannot run sh: {e}")),
            Ok(run) if !run.success => Err(run.describe()),
            Ok(run) => match sync_tree(&new_dir) {
                Err(e) => Err(format!(
                    "the install script succeeded but {} cannot be synced to disk: {e}",
                    new_dir.display()
                )),
                Ok(()) => {
                    let mut detail = format!("unpacked into {}", new_dir.display());
                    if !run.stderr.is_empty() {
                        detail.push_str(&format!("; stderr: {}", run.stderr));
                    }
                    Ok(detail)
                }
            },
        }
    }

    /// Runs one uninstall script with `HERD_PREFIX`; the step's status and detail.
    pub(super) fn run_uninstall_script(&self, uninstall: &UninstallItem) -> (StepStatus, String) {
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

    pub(super) fn run_pre_uninstall_hook(&self, dir: &Path) -> Option<String> {
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
