//! Replacing a failing program with an approved alternative, as a transaction (SPEC §3.3.4,
//! seed 002 S16–S20, the transaction rules of §3.1): fetch (an alternative the terminal
//! already has, claim 17, or the package `herd-agent run` downloaded, checked again by
//! SHA-256, claim 16), install beside (`faults/programs/<program>/<version>/<program>`),
//! health-check, switch (stop the old program, start the new one, which must stay up for a
//! grace period), uninstall the old one when a replacement installed it. Any failure restores
//! the old program running and removes what was installed.
//!
//! Simplification: a distributed alternative is one executable file (the package's bytes),
//! started without arguments, whose health check is running it with `--herd-health-check`
//! (exit 0 within 10 s); an archive with a manifest-declared health check (issue 14's
//! "programs, not only vaccines") is not done yet. The package is checked against the SHA-256
//! in the center's verdict, received over mutual TLS, not against signed TUF metadata.

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use herd_proto::fault::Alternative;
use serde::Serialize;

use super::collect::sha256_file;
use super::config::{HealthCheck, ProgramConfig, RestartPolicy};
use super::verdicts::FaultDirs;
use super::watch::Watched;

/// How long a new program must stay up after the switch.
const SWITCH_GRACE: Duration = Duration::from_millis(1500);

/// The argument a distributed alternative's health check runs it with.
pub const HEALTH_CHECK_ARG: &str = "--herd-health-check";

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

#[derive(Debug)]
pub struct Outcome {
    pub replaced: bool,
    pub failed_step: Option<Step>,
    pub message: String,
}

/// Replaces what `watched` runs with `alternative`; on failure the old program runs again.
pub fn replace(watched: &mut Watched, alternative: &Alternative, dirs: &FaultDirs) -> Outcome {
    let old = watched.active.clone();
    let old_install = watched.installed_in(&dirs.programs()).map(Path::to_owned);
    let mut installed = None;
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
                let (program, dir) = install(alternative, dirs)?;
                installed = Some(dir);
                program
            }
        };
        if let Some(check) = &new.health_check {
            health_check(check).map_err(|why| (Step::HealthCheck, why))?;
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
            if let Some(dir) = old_install {
                let _ = std::fs::remove_dir_all(&dir);
            }
            Outcome {
                replaced: true,
                failed_step: None,
                message: format!(
                    "replaced by {} {} (vendor {})",
                    alternative.program, alternative.version, alternative.vendor
                ),
            }
        }
        Err((step, why)) => {
            watched.stop();
            watched.active = old;
            let restarted = watched.start();
            if let Some(dir) = installed {
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
                    "replacing it by {} failed at {step:?}: {why}; {restored}",
                    alternative.program
                ),
            }
        }
    }
}

/// Installs a distributed alternative beside the old program from the downloaded package.
fn install(
    alternative: &Alternative,
    dirs: &FaultDirs,
) -> Result<(ProgramConfig, std::path::PathBuf), (Step, String)> {
    let Some(sha256) = &alternative.package_sha256 else {
        return Err((
            Step::Fetch,
            format!(
                "{} is not installed here and the center named no package for it",
                alternative.program
            ),
        ));
    };
    let blob = dirs.incoming().join(sha256);
    match sha256_file(&blob) {
        Ok(digest) if digest == *sha256 => {}
        Ok(digest) => {
            let _ = std::fs::remove_file(&blob);
            return Err((
                Step::Fetch,
                format!("the package has SHA-256 {digest}, not {sha256}"),
            ));
        }
        Err(err) => {
            return Err((
                Step::Fetch,
                format!("the package {} is not here: {err}", blob.display()),
            ));
        }
    }
    let dir = dirs
        .programs()
        .join(&alternative.program)
        .join(&alternative.version);
    let install_failed = |what: &str, err: &dyn std::fmt::Display| {
        (Step::Install, format!("{what} {}: {err}", dir.display()))
    };
    std::fs::create_dir_all(&dir).map_err(|err| install_failed("cannot create", &err))?;
    let bytes =
        std::fs::read(&blob).map_err(|err| install_failed("cannot read the package for", &err))?;
    let program = dir.join(&alternative.program);
    herd_fs::write_atomic(&program, &bytes, 0o755)
        .map_err(|err| install_failed("cannot install into", &err))?;
    let path = program.display().to_string();
    Ok((
        ProgramConfig {
            name: alternative.program.clone(),
            vendor: alternative.vendor.clone(),
            version: alternative.version.clone(),
            command: Some(vec![path.clone()]),
            pid_file: None,
            process_name: None,
            service_unit: None,
            definitions: Vec::new(),
            crash_dir: None,
            heartbeat: None,
            restart: RestartPolicy::default(),
            health_check: Some(HealthCheck {
                command: vec![path, HEALTH_CHECK_ARG.to_owned()],
                timeout_secs: 10,
                expect_exit: 0,
                expect_output: None,
            }),
            alternatives: Vec::new(),
        },
        dir,
    ))
}

/// Runs a health check: it must exit with the expected status (and print the expected
/// output) within its timeout.
pub fn health_check(check: &HealthCheck) -> Result<(), String> {
    let mut child = Command::new(&check.command[0])
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
    if status.code() != Some(check.expect_exit) {
        return Err(format!(
            "the health check ended with {status}, not exit status {}",
            check.expect_exit
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
