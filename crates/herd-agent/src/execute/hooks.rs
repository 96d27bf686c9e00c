//! Who a package's hooks run as: least privilege by default. An agent running as root runs
//! hooks as its `--hook-user` (`nobody` unless told otherwise), with no supplementary groups
//! and no way to gain privileges; a package whose manifest says `"hooks_run_as": "root"` has
//! its hooks run as root only when the agent's policy allows it (`--allow-root-hooks`), and is
//! refused otherwise (the plan rolls back, saying why). An agent that is not root runs hooks as
//! itself: it has nothing to give away.

use std::path::{Path, PathBuf};
use std::time::Duration;

use herd_package::{HooksRunAs, Manifest};
use nix::unistd::{User, geteuid};

use super::script::{self, RunAs};

/// The user hooks run as by default when the agent is root.
pub const DEFAULT_HOOK_USER: &str = "nobody";

/// The uid and gid of `nobody` by convention (Linux's overflow ids), for systems without one.
const NOBODY_ID: u32 = 65534;

/// The hook flags `herd-agent run` and `herd-agent apply` share.
#[derive(Clone, Debug, clap::Args)]
pub struct HookArgs {
    /// The unprivileged user package hooks run as when the agent runs as root (a name or a
    /// numeric uid; never root). Ignored when the agent is not root: hooks then run as the
    /// agent's own user.
    #[arg(long, value_name = "USER", default_value = DEFAULT_HOOK_USER)]
    pub hook_user: String,
    /// Run the hooks of packages whose manifest declares `"hooks_run_as": "root"` as root.
    /// Without it such a package is refused and the plan rolls back.
    #[arg(long)]
    pub allow_root_hooks: bool,
}

impl HookArgs {
    pub fn policy(&self) -> Result<HookPolicy, String> {
        HookPolicy::resolve(&self.hook_user, self.allow_root_hooks)
    }
}

/// The agent's decision rule for hooks, resolved once at start (the user must exist).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookPolicy {
    /// `None` when the agent is not root: hooks run as the agent.
    unprivileged: Option<(String, u32, u32)>,
    allow_root: bool,
}

impl HookPolicy {
    /// Looks `hook_user` up (by name, or as a numeric uid with the user's primary group).
    /// Refuses a user that does not exist, and root.
    pub fn resolve(hook_user: &str, allow_root: bool) -> Result<HookPolicy, String> {
        if !geteuid().is_root() {
            return Ok(HookPolicy {
                unprivileged: None,
                allow_root,
            });
        }
        let found = match hook_user.parse::<u32>() {
            Ok(uid) => User::from_uid(uid.into()),
            Err(_) => User::from_name(hook_user),
        }
        .map_err(|e| format!("--hook-user {hook_user:?}: cannot look the user up: {e}"))?;
        let user = match found {
            Some(user) => user,
            // Systems without a `nobody` entry still have its conventional ids free.
            None if hook_user == DEFAULT_HOOK_USER => {
                return Ok(HookPolicy {
                    unprivileged: Some((hook_user.to_owned(), NOBODY_ID, NOBODY_ID)),
                    allow_root,
                });
            }
            None => {
                return Err(format!(
                    "--hook-user {hook_user:?}: no such user on this system"
                ));
            }
        };
        if user.uid.is_root() {
            return Err(format!(
                "--hook-user {hook_user:?} is root; hooks run unprivileged, and a package that \
                 needs root says so in its manifest (allowed by --allow-root-hooks)"
            ));
        }
        Ok(HookPolicy {
            unprivileged: Some((hook_user.to_owned(), user.uid.as_raw(), user.gid.as_raw())),
            allow_root,
        })
    }

    /// Unprivileged hooks as `nobody` (or as the agent when it is not root), no root hooks:
    /// the default, for tests and library callers.
    pub fn least_privilege() -> HookPolicy {
        HookPolicy::resolve(DEFAULT_HOOK_USER, false).unwrap_or(HookPolicy {
            // Never root by accident: a lookup that failed falls back to nobody's usual ids.
            unprivileged: geteuid()
                .is_root()
                .then(|| (DEFAULT_HOOK_USER.to_owned(), NOBODY_ID, NOBODY_ID)),
            allow_root: false,
        })
    }

    /// Who the hooks of the package with `manifest` run as, or why they may not run.
    pub(super) fn run_as(&self, manifest: &Manifest) -> Result<RunAs, String> {
        match (manifest.hooks_run_as, &self.unprivileged) {
            (Some(HooksRunAs::Root), _) if self.allow_root => Ok(RunAs::Agent),
            (Some(HooksRunAs::Root), _) => Err(format!(
                "{} {} declares that its hooks run as root, and this agent's policy does not \
                 allow root hooks (start it with --allow-root-hooks to allow them)",
                manifest.product, manifest.version
            )),
            (None, Some((_, uid, gid))) => Ok(RunAs::User {
                uid: *uid,
                gid: *gid,
            }),
            (None, None) => Ok(RunAs::Agent),
        }
    }

    /// Who the report says a hook ran as.
    pub(super) fn describe(&self, run_as: RunAs) -> String {
        match (run_as, &self.unprivileged) {
            (RunAs::User { uid, .. }, Some((name, _, _))) => format!("as {name} (uid {uid})"),
            (RunAs::User { uid, .. }, None) => format!("as uid {uid}"),
            (RunAs::Agent, _) if geteuid().is_root() => "as root".to_owned(),
            (RunAs::Agent, _) => format!("as the agent's user (uid {})", geteuid()),
        }
    }
}

/// How package hooks are run: under the agent's policy, bounded in time, told the prefix
/// they were installed under (`HERD_PREFIX`). The executor's installs and removals and fault
/// recovery's replacements (`supervise/replace.rs`) run hooks through it alike.
#[derive(Clone, Copy, Debug)]
pub struct HookRunner<'a> {
    pub policy: &'a HookPolicy,
    pub timeout: Duration,
    pub prefix: &'a Path,
}

impl HookRunner<'_> {
    /// Who the hooks of `manifest` run as under the policy, or why they may not run (a
    /// package declaring no hook needs no permission).
    pub(super) fn run_as(&self, manifest: &Manifest) -> Result<RunAs, String> {
        if manifest.hooks().next().is_none() {
            return Ok(RunAs::Agent);
        }
        self.policy.run_as(manifest)
    }

    /// Runs `hook` (a path inside `dir`, checked by the manifest's validation) from `dir`;
    /// `Ok` with who it ran as, or the failure.
    pub(super) fn run(&self, dir: &Path, hook: &str, run_as: RunAs) -> Result<String, String> {
        // Relative to the working directory, which is entered before privileges are dropped:
        // an unprivileged hook user needs no access to the directories above the product
        // (the default prefix lies inside the agent's private state directory).
        let path: PathBuf = Path::new(".").join(hook);
        let env = [("HERD_PREFIX", self.prefix.as_os_str())];
        let who = self.policy.describe(run_as);
        match script::run_hook(&path, dir, &env, self.timeout, run_as) {
            Ok(run) if run.success => Ok(who),
            Ok(run) => Err(format!(
                "the hook {hook} failed ({who}): {}",
                run.describe()
            )),
            Err(e) => Err(format!("the hook {hook} could not run ({who}): {e}")),
        }
    }

    /// Whether the policy lets the hooks of `manifest` run (why not, if it does not).
    pub fn allowed(&self, manifest: &Manifest) -> Result<(), String> {
        self.run_as(manifest).map(|_| ())
    }

    /// Runs `hook` of the package with `manifest`, installed in `dir`, as the policy says.
    pub fn run_of(&self, manifest: &Manifest, dir: &Path, hook: &str) -> Result<String, String> {
        let run_as = self.run_as(manifest)?;
        self.run(dir, hook, run_as)
    }
}
