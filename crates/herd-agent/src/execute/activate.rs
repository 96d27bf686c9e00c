//! Making a product the active one and putting the previous one back: the `current` link
//! swapped atomically (a new link renamed over it, the directory synced), and the file-system
//! side of a rollback (the previous link restored, the new version directory, its staging
//! directory and a half-made link removed). Names come from `herd_proto::layout`, which the
//! install scripts use too.

use std::ffi::OsStr;
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
                let removed = self
                    .product_dir(&shape.product, false)
                    .and_then(|products| match products {
                        Some(products) => products.remove_tree(OsStr::new(&shape.version)),
                        None => Ok(()),
                    });
                match removed {
                    Ok(()) => done.push(format!("{} removed", new_target.display())),
                    Err(e) => problems.push(format!("cannot remove {}: {e}", new_dir.display())),
                }
            }
        }
        if let Ok(Some(products)) = self.product_dir(&shape.product, false) {
            let staging = format!("{}{}", shape.version, layout::STAGING_SUFFIX);
            let _ = products.remove_tree(OsStr::new(&staging));
            if !previous_is_new && problems.is_empty() {
                // Removes the product directory only if empty: other versions stay.
                let _ = self.remove_version(&products, &shape.version);
            }
        }
        let _ = fs::remove_file(prefix.join(layout::CURRENT_NEW));
        let _ = journal::sync_dir(prefix);
        (done, problems)
    }
}

/// Points `<prefix>/current` at `target` durably (a restart after a crash may find it done).
pub(super) fn activate(prefix: &Path, target: &str) -> io::Result<String> {
    let current = herd_package::current_target(prefix)?;
    if current.as_deref() == Some(Path::new(target)) {
        journal::sync_dir(prefix)?;
        return Ok(format!("current → {target}"));
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
