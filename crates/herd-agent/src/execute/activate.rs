//! Making a product the active one and putting the previous one back: the `current` link
//! swapped atomically (a new link renamed over it, the directory synced), and the file-system
//! side of a rollback (the previous link restored, the new version directory, its staging
//! directory and a half-made link removed). Names come from `herd_proto::layout`, which the
//! install scripts use too.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use herd_proto::api::StepStatus;
use herd_proto::layout;

use super::Executor;
use super::journal::{self, Journal};
use super::shape::Shape;

impl Executor {
    /// Restores the link the journal recorded before the install and removes what the install
    /// added (after the package's pre-uninstall hook, if its install completed). Idempotent.
    /// Returns what was done and what could not be, for the rollback's detail.
    pub(super) fn undo_install(
        &self,
        journal: &Journal,
        shape: &Shape,
    ) -> (Vec<String>, Vec<String>) {
        let prefix = &self.config.prefix;
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
        (done, problems)
    }
}

/// Points `<prefix>/current` at `target` durably (it usually already does: the install
/// script switched it).
pub(super) fn activate(prefix: &Path, target: &str) -> io::Result<String> {
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
pub(super) fn swap_link(prefix: &Path, target: &Path) -> io::Result<()> {
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
