//! The agent's own install and removal of `archive` products, instead of the plan's shell
//! scripts: the package is unpacked by `herd_package::unpack_file` (or its content rebuilt from
//! a delta by `unpack_tar`: the same pass that checks it, files owned by the agent with safe modes) into `<version>.herd-staging`, moved into
//! place, and its post-install hook run with the hook policy; a version is removed, after its
//! pre-uninstall hook, through directory handles (`unlinkat`, never following a symlink).
//! The `current` link is switched later, by `activate.rs`, once the product is verified.
//! Other formats (`deb`, `rpm`, `apk`) stay the package manager's business, through the
//! plan's scripts (`install.rs`).

use std::ffi::OsStr;
use std::path::Path;

use herd_fs::{Dir, DirError};
use herd_package::Manifest;
use herd_proto::layout;

use super::Executor;
use super::content::Source;
use super::script::RunAs;

impl Executor {
    /// Opens `<prefix>/products/<product>`, creating it (and `products`) when `create` is set;
    /// `None` if absent. Below the prefix (which the operator chose) nothing is followed.
    pub(super) fn product_dir(&self, product: &str, create: bool) -> Result<Option<Dir>, DirError> {
        let prefix = Dir::open_followed(&self.config.prefix)?;
        let mut dir = prefix;
        for name in [layout::PRODUCTS_DIR, product] {
            let name = OsStr::new(name);
            dir = match dir.open_dir(name) {
                Ok(d) => d,
                Err(DirError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    if !create {
                        return Ok(None);
                    }
                    match dir.create_dir(name, 0o755) {
                        Err(DirError::Exists { .. }) => dir.open_dir(name)?,
                        other => other?,
                    }
                }
                Err(e) => return Err(e),
            };
        }
        Ok(Some(dir))
    }

    /// Unpacks `package` as `<prefix>/products/<product>/<version>` and runs its post-install
    /// hook; the step's detail, or why it failed (what was unpacked is then left for the
    /// rollback to remove).
    pub(super) fn install_archive(
        &self,
        product: &str,
        version: &str,
        package: &Source,
        inspection: &herd_package::Inspection,
    ) -> Result<String, String> {
        let new_dir = self
            .config
            .prefix
            .join(layout::link_target(product, version));
        let active = herd_package::current_target(&self.config.prefix)
            .map_err(|e| format!("cannot read {}/current: {e}", self.config.prefix.display()))?;
        if active.as_deref() == Some(Path::new(&layout::link_target(product, version))) {
            return Err(format!(
                "{product} {version} is the active product; refusing to replace it in place"
            ));
        }
        let products = self
            .product_dir(product, true)
            .map_err(|e| e.to_string())?
            .ok_or("the product directory could not be created")?;
        let staging = format!("{version}{}", layout::STAGING_SUFFIX);
        // Who the hook will run as is decided before anything is written: a package whose
        // hooks the policy refuses is not unpacked at all.
        let run_as = self.hook_run_as(&inspection.manifest)?;
        let unpacked = package
            .unpack(&products, &staging)
            .map_err(|e| format!("the package is refused: {e}"))?;
        if unpacked != *inspection {
            let _ = products.remove_tree(OsStr::new(&staging));
            return Err("the package changed between its inspection and its unpacking".into());
        }
        let manifest = &unpacked.manifest;
        if manifest.product != product || manifest.version != version {
            let _ = products.remove_tree(OsStr::new(&staging));
            return Err(format!(
                "the package holds {} {}, but the plan installs {product} {version}",
                manifest.product, manifest.version
            ));
        }
        let move_into_place = || -> Result<(), DirError> {
            products.remove_tree(OsStr::new(version))?;
            products.rename(OsStr::new(&staging), &products, OsStr::new(version))?;
            products.sync()
        };
        move_into_place().map_err(|e| format!("moving the unpacked product into place: {e}"))?;
        let mut detail = format!(
            "unpacked into {} ({} files, owned by the agent)",
            new_dir.display(),
            unpacked
                .members
                .values()
                .filter(|m| matches!(m, herd_package::MemberKind::File { .. }))
                .count()
        );
        if let Some(hook) = &manifest.post_install {
            let run = self.run_package_hook(&new_dir, hook, run_as)?;
            detail.push_str(&format!("; post-install hook {hook} ran {run}"));
        }
        Ok(detail)
    }

    /// Removes an installed `archive` version after its pre-uninstall hook; refuses to remove
    /// the active product. Absent is success (nothing to remove).
    pub(super) fn uninstall_archive(&self, product: &str, version: &str) -> Result<String, String> {
        let target = layout::link_target(product, version);
        let dir = self.config.prefix.join(&target);
        let active = herd_package::current_target(&self.config.prefix)
            .map_err(|e| format!("cannot read {}/current: {e}", self.config.prefix.display()))?;
        if active.as_deref() == Some(Path::new(&target)) {
            return Err(format!(
                "refusing to remove {product} {version}: it is the active product"
            ));
        }
        let Some(products) = self
            .product_dir(product, false)
            .map_err(|e| e.to_string())?
        else {
            return Ok(format!(
                "{product} {version} is not installed under {}; nothing to remove",
                self.config.prefix.display()
            ));
        };
        if products
            .stat_at(OsStr::new(version))
            .map_err(|e| e.to_string())?
            .is_none()
        {
            return Ok(format!(
                "{product} {version} is not installed under {}; nothing to remove",
                self.config.prefix.display()
            ));
        }
        let mut detail = format!("removed {product} {version} (archive package)");
        if let Ok(manifest) = herd_package::installed_manifest(&dir)
            && let Some(hook) = &manifest.pre_uninstall
        {
            let run_as = self.hook_run_as(&manifest)?;
            let ran = self.run_package_hook(&dir, hook, run_as)?;
            detail.push_str(&format!("; its pre-uninstall hook {hook} ran {ran}"));
        }
        self.remove_version(&products, version)
            .map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
        Ok(detail)
    }

    /// Removes `<version>` from an open product directory through handles, then the product
    /// directory itself if that left it empty (other versions stay).
    pub(super) fn remove_version(&self, products: &Dir, version: &str) -> Result<(), DirError> {
        products.remove_tree(OsStr::new(version))?;
        products.sync()?;
        if products.entries()?.is_empty()
            && let Some(parent) = self.product_dir_parent()
            && let Some(name) = products.path().file_name()
        {
            // Only if still empty: a concurrent install would make it non-empty, and then the
            // removal fails harmlessly.
            let _ = parent.remove_entry(name);
            let _ = parent.sync();
        }
        Ok(())
    }

    fn product_dir_parent(&self) -> Option<Dir> {
        Dir::open_followed(&self.config.prefix)
            .ok()?
            .open_dir(OsStr::new(layout::PRODUCTS_DIR))
            .ok()
    }

    /// How this executor runs package hooks.
    pub(super) fn hooks(&self) -> super::HookRunner<'_> {
        super::HookRunner {
            policy: &self.config.hooks,
            timeout: self.config.script_timeout,
            prefix: &self.config.prefix,
        }
    }

    /// Who the hooks of `manifest` run as under this agent's policy, or why they may not run.
    pub(super) fn hook_run_as(&self, manifest: &Manifest) -> Result<RunAs, String> {
        self.hooks().run_as(manifest)
    }

    /// Runs `hook` (a path inside `dir`, checked by the manifest's validation) from `dir`;
    /// `Ok` with who it ran as, or the failure.
    pub(super) fn run_package_hook(
        &self,
        dir: &Path,
        hook: &str,
        run_as: RunAs,
    ) -> Result<String, String> {
        self.hooks().run(dir, hook, run_as)
    }
}
