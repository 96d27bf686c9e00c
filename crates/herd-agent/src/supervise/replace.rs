//! Replacing a failing program with an approved alternative, as a transaction (SPEC §3.3.4,
//! seed 002 S16–S20, the transaction rules of §3.1): fetch (an alternative the terminal
//! already has, claim 17, or the signed package `herd-agent run` verified and downloaded,
//! claim 16), install beside (unpacked with the executor's own checks into
//! `faults/programs/<program>/<version>/`), health-check (the package manifest's), switch (stop
//! the old program, start the new one with the manifest's `run` command, which must stay up
//! for a grace period), uninstall the old one when a replacement installed it. Any failure
//! restores the old program running and removes what was installed.
//!
//! The package is trusted only as the signed target `herd-agent run` verified it as
//! (`verdicts::Fetched`): its bytes are checked again against the signed SHA-256 here, never
//! against the verdict's word. Its hooks run as an install's do, through the executor's
//! `HookRunner` under the agent's hook policy: the post-install hook once it is in place (a
//! failure fails the install step), the pre-uninstall hook before a replacement-installed
//! program is removed — the old one after a switch, or the new one when a later step fails.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use herd_proto::fault::Alternative;
use serde::Serialize;

use super::collect::sha256_file;
use super::config::{HealthCheck, ProgramConfig, RestartPolicy};
use super::verdicts::{FaultDirs, Fetched};
use super::watch::Watched;
use crate::execute::HookRunner;

/// How long a new program must stay up after the switch.
const SWITCH_GRACE: Duration = Duration::from_millis(1500);

/// The most output a health check may print (the rest is ignored).
const MAX_HEALTH_OUTPUT: u64 = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Fetch,
    Install,
    HealthCheck,
    Switch,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Fetch => "fetch",
            Step::Install => "install",
            Step::HealthCheck => "health check",
            Step::Switch => "switch",
        }
    }
}

#[derive(Debug)]
pub struct Outcome {
    pub replaced: bool,
    pub failed_step: Option<Step>,
    pub message: String,
}

/// Replaces what `watched` runs with `alternative`; on failure the old program runs again.
/// `fetched` is what `herd-agent run` found of the verdict's signed package, if any.
pub fn replace(
    watched: &mut Watched,
    alternative: &Alternative,
    fetched: Option<&Fetched>,
    dirs: &FaultDirs,
    hooks: &HookRunner<'_>,
) -> Outcome {
    let old = watched.active.clone();
    let old_install = watched.installed_in(&dirs.programs()).map(Path::to_owned);
    let mut installed = None;
    // What the installed package's hooks did, for the outcome's message.
    let mut notes: Vec<String> = Vec::new();
    let result = (|| -> Result<(), (Step, String)> {
        let new = match watched
            .original
            .alternatives
            .iter()
            .chain(std::iter::once(&watched.original))
            .find(|program| program.name == alternative.program)
        {
            Some(present) => present.clone(),
            None => {
                let (program, dir, ran) = install(alternative, fetched, dirs, hooks)?;
                installed = Some(dir);
                notes.extend(ran);
                program
            }
        };
        if let Some(check) = &new.health_check {
            health_check(check, new.working_dir.as_deref())
                .map_err(|why| (Step::HealthCheck, why))?;
        }
        watched.stop();
        watched.active = new;
        watched
            .start()
            .map_err(|err| (Step::Switch, format!("{err:#}")))?;
        let deadline = Instant::now() + SWITCH_GRACE;
        while Instant::now() < deadline {
            if watched.active.command.is_some() && !watched.running() {
                return Err((
                    Step::Switch,
                    format!(
                        "{} stopped within {} ms of its start",
                        alternative.program,
                        SWITCH_GRACE.as_millis()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    })();
    match result {
        Ok(()) => {
            // The old program is uninstalled only if a replacement installed it; a program
            // the terminal had before is no longer run, and left in place.
            if let Some(dir) = old_install
                && Some(&dir) != installed.as_ref()
            {
                match pre_uninstall(hooks, &dir) {
                    Some(Err(why)) => notes.push(format!(
                        "the old program is left in {}: its pre-uninstall hook failed: {why}",
                        dir.display()
                    )),
                    ran => {
                        notes.extend(ran.and_then(Result::ok));
                        let _ = std::fs::remove_dir_all(&dir);
                    }
                }
            }
            let how = match fetched {
                Some(Fetched::Signed(signed)) if installed.is_some() => {
                    format!(", installed from the signed target {}", signed.target)
                }
                _ => ", already here".to_owned(),
            };
            let notes: String = notes.iter().map(|note| format!("; {note}")).collect();
            Outcome {
                replaced: true,
                failed_step: None,
                message: format!(
                    "replaced by {} {} (vendor {}{how}){notes}",
                    alternative.program, alternative.version, alternative.vendor
                ),
            }
        }
        Err((step, why)) => {
            watched.stop();
            watched.active = old;
            let restarted = watched.start();
            let mut undone = String::new();
            if let Some(dir) = installed {
                // The package's chance to undo its post-install hook, as a rollback gives it.
                match pre_uninstall(hooks, &dir) {
                    Some(Ok(note)) => undone = format!("; {note}"),
                    Some(Err(why)) => undone = format!("; {why}"),
                    None => {}
                }
                let _ = std::fs::remove_dir_all(&dir);
            }
            let restored = match restarted {
                Ok(()) => "the old program was restored".to_owned(),
                Err(err) => format!("restoring the old program failed too: {err:#}"),
            };
            Outcome {
                replaced: false,
                failed_step: Some(step),
                message: format!(
                    "replacing it by {} failed at {}: {why}; {restored}{undone}",
                    alternative.program,
                    step.as_str()
                ),
            }
        }
    }
}

/// Installs a distributed alternative beside the old program from its signed package: the
/// bytes checked again against the signed SHA-256, unpacked by `herd_package` (the checks the
/// executor makes: paths, member kinds, modes, owners) into `<version>.herd-staging`, its
/// manifest matched against the alternative, then moved into place.
/// Runs the pre-uninstall hook of the program installed in `dir`, if its manifest declares
/// one: what it did (`Ok`: who it ran as), or why it failed; `None` without a hook.
fn pre_uninstall(hooks: &HookRunner<'_>, dir: &Path) -> Option<Result<String, String>> {
    let manifest = herd_package::installed_manifest(dir).ok()?;
    let hook = manifest.pre_uninstall.clone()?;
    Some(
        hooks
            .run_of(&manifest, dir, &hook)
            .map(|who| format!("its pre-uninstall hook {hook} ran {who}"))
            .map_err(|why| format!("its pre-uninstall hook: {why}")),
    )
}

/// Installs a distributed alternative, then runs its post-install hook (what it did is
/// returned for the outcome's message).
fn install(
    alternative: &Alternative,
    fetched: Option<&Fetched>,
    dirs: &FaultDirs,
    hooks: &HookRunner<'_>,
) -> Result<(ProgramConfig, PathBuf, Option<String>), (Step, String)> {
    let fetch_failed = |why: String| (Step::Fetch, why);
    let signed = match fetched {
        Some(Fetched::Signed(signed)) => signed,
        Some(Fetched::Refused(why)) => return Err(fetch_failed(why.clone())),
        None => {
            return Err(fetch_failed(format!(
                "{} is not installed here and no signed package of it was fetched",
                alternative.program
            )));
        }
    };
    let blob = dirs.incoming().join(&signed.sha256);
    match sha256_file(&blob) {
        Ok(digest) if digest == signed.sha256 => {}
        Ok(digest) => {
            let _ = std::fs::remove_file(&blob);
            return Err(fetch_failed(format!(
                "the package has SHA-256 {digest}, not the signed {} of {}",
                signed.sha256, signed.target
            )));
        }
        Err(err) => {
            return Err(fetch_failed(format!(
                "the package {} is not here: {err}",
                blob.display()
            )));
        }
    }
    let parent = dirs.programs().join(&alternative.program);
    let dir = parent.join(&alternative.version);
    let install_failed = |why: String| (Step::Install, why);
    std::fs::create_dir_all(&parent)
        .map_err(|err| install_failed(format!("cannot create {}: {err}", parent.display())))?;
    let handle = herd_fs::Dir::open_followed(&parent)
        .map_err(|err| install_failed(format!("cannot open {}: {err}", parent.display())))?;
    let staging = format!("{}.herd-staging", alternative.version);
    let inspection = herd_package::unpack_file(&blob, &handle, &staging)
        .map_err(|err| install_failed(format!("the package of {}: {err}", signed.target)))?;
    let staged = parent.join(&staging);
    let program = (|| {
        let manifest = &inspection.manifest;
        if (&manifest.product, &manifest.vendor, &manifest.version)
            != (
                &alternative.program,
                &alternative.vendor,
                &alternative.version,
            )
        {
            return Err(format!(
                "the package's manifest is {} {} of {}, not the {} {} of {} the signed target \
                 names",
                manifest.product,
                manifest.version,
                manifest.vendor,
                alternative.program,
                alternative.version,
                alternative.vendor
            ));
        }
        if manifest.kind() != herd_core::ProductKind::Program {
            return Err(format!("{} is not a program", manifest.product));
        }
        // Refused before anything runs, as an install is: hooks the policy does not allow.
        if manifest.hooks().next().is_some() {
            hooks
                .allowed(manifest)
                .map_err(|why| format!("its hooks may not run: {why}"))?;
        }
        let run = manifest.run.as_ref().ok_or_else(|| {
            format!(
                "{}'s manifest says nothing to run ($.run): it cannot stand in for a program",
                manifest.product
            )
        })?;
        let in_dir = |command: &[String]| -> Vec<String> {
            let mut command = command.to_vec();
            command[0] = dir.join(&command[0]).display().to_string();
            command
        };
        Ok(ProgramConfig {
            name: alternative.program.clone(),
            vendor: alternative.vendor.clone(),
            version: alternative.version.clone(),
            command: Some(in_dir(run)),
            working_dir: Some(dir.clone()),
            pid_file: None,
            process_name: None,
            service_unit: None,
            definitions: Vec::new(),
            crash_dir: None,
            heartbeat: None,
            restart: RestartPolicy::default(),
            health_check: manifest.health_check.as_ref().map(|check| HealthCheck {
                command: in_dir(&check.command),
                timeout_secs: check.timeout_ms.div_ceil(1000),
                expect_exit: check.exit_status,
                expect_output: check.output_contains.clone(),
            }),
            alternatives: Vec::new(),
        })
    })();
    let program = match program {
        Ok(program) => program,
        Err(why) => {
            let _ = std::fs::remove_dir_all(&staged);
            return Err(install_failed(why));
        }
    };
    // A version directory a failed earlier attempt left is replaced.
    let _ = std::fs::remove_dir_all(&dir);
    let moved = std::fs::rename(&staged, &dir)
        .map_err(|err| err.to_string())
        .and_then(|()| herd_fs::sync_dir(&parent).map_err(|err| err.to_string()));
    if let Err(err) = moved {
        let _ = std::fs::remove_dir_all(&staged);
        let _ = std::fs::remove_dir_all(&dir);
        return Err(install_failed(format!(
            "cannot move it into {}: {err}",
            dir.display()
        )));
    }
    let mut ran = None;
    if let Some(hook) = &inspection.manifest.post_install {
        match hooks.run_of(&inspection.manifest, &dir, hook) {
            Ok(who) => ran = Some(format!("post-install hook {hook} ran {who}")),
            Err(why) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(install_failed(format!("its post-install hook: {why}")));
            }
        }
    }
    Ok((program, dir, ran))
}

/// Runs a health check: it must exit with the expected status (and print the expected
/// output) within its timeout.
pub fn health_check(check: &HealthCheck, dir: Option<&Path>) -> Result<(), String> {
    let mut command = Command::new(&check.command[0]);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let mut child = command
        .args(&check.command[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| {
            format!(
                "the health check {:?} cannot start: {err}",
                check.command[0]
            )
        })?;
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(stdout) = stdout {
            let _ = stdout.take(MAX_HEALTH_OUTPUT).read_to_string(&mut text);
        }
        text
    });
    let deadline = Instant::now() + Duration::from_secs(check.timeout_secs);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the health check did not finish within {} s",
                    check.timeout_secs
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(err) => return Err(format!("cannot wait for the health check: {err}")),
        }
    };
    let output = reader.join().unwrap_or_default();
    if let Some(expected) = check.expect_exit
        && status.code() != Some(expected)
    {
        return Err(format!(
            "the health check ended with {status}, not exit status {expected}"
        ));
    }
    if let Some(expected) = &check.expect_output
        && !output.contains(expected.as_str())
    {
        return Err(format!(
            "the health check's output does not contain {expected:?}"
        ));
    }
    Ok(())
}
