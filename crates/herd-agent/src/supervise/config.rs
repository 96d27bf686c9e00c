//! The supervision configuration (`herd.supervise/v1`, a JSON file): the programs the agent
//! watches, how (started by the agent from a command, or watched: by pid file, process name or
//! systemd service unit), their
//! definition (configuration) files, where their crash reports appear, their heartbeat, how
//! often they may restart, their health check, and the approved alternatives installed beside
//! them (which the center may tell the agent to switch to without distributing anything).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

pub const SUPERVISE_FORMAT: &str = "herd.supervise/v1";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuperviseConfig {
    pub format: String,
    /// The platform reported with faults [default: `<os>-<arch>`, like `linux-x86_64`].
    #[serde(default)]
    pub platform: Option<String>,
    pub programs: Vec<ProgramConfig>,
}

/// One program: what identifies it in fault reports, and how it is run and watched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramConfig {
    pub name: String,
    pub vendor: String,
    pub version: String,
    /// Started (and restarted) by the agent: the program and its arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// The directory the command and the health check run in [default: the supervisor's]; a
    /// program a replacement installed runs in its installed directory, as its package says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<PathBuf>,
    /// Watched only (another service manager starts it): the file holding its pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_file: Option<PathBuf>,
    /// Watched only: the name of its process (`/proc/<pid>/comm`, or the file name of the
    /// program it runs); the oldest process of that name is the one watched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_name: Option<String>,
    /// Watched only: the systemd service unit that runs it (`name.service`), whose main pid
    /// `systemctl show` gives. Needs systemd running on the terminal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_unit: Option<String>,
    /// Its definition (configuration) files, digested and excerpted (secrets redacted) into
    /// fault reports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub definitions: Vec<PathBuf>,
    /// Where it (or its crash handler) writes crash reports, `<pid>.crash` (see `collect`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_dir: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<Heartbeat>,
    #[serde(default)]
    pub restart: RestartPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Approved alternatives already installed here (claim 17), by the name the replacement
    /// table gives them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alternatives: Vec<ProgramConfig>,
}

/// The program touches `file` while it makes progress; no touch within `limit_secs` is a hang.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub file: PathBuf,
    pub limit_secs: u64,
}

/// More than `max` failures within `window_secs` is a restart loop: reported, and the program
/// is not restarted again until the agent's supervision restarts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartPolicy {
    pub max: u32,
    pub window_secs: u64,
    /// The pause before a restart.
    pub delay_ms: u64,
}

impl Default for RestartPolicy {
    fn default() -> RestartPolicy {
        RestartPolicy {
            max: 3,
            window_secs: 60,
            delay_ms: 500,
        }
    }
}

/// A command that must exit with `expect_exit` (and print `expect_output`, when given) within
/// `timeout_secs` for the program to count as working: the replacement's verify step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    pub command: Vec<String>,
    #[serde(default = "default_health_timeout")]
    pub timeout_secs: u64,
    /// The exit status it must end with [default: 0]; `null`: any, when `expect_output` is
    /// what proves it (a package's health check may say only that).
    #[serde(default = "default_expect_exit")]
    pub expect_exit: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_output: Option<String>,
}

fn default_health_timeout() -> u64 {
    10
}

fn default_expect_exit() -> Option<i32> {
    Some(0)
}

impl SuperviseConfig {
    pub fn load(path: &Path) -> Result<SuperviseConfig> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let config: SuperviseConfig = serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: not a supervision configuration", path.display()))?;
        config
            .check()
            .with_context(|| format!("{}: refused", path.display()))?;
        Ok(config)
    }

    fn check(&self) -> Result<()> {
        if self.format != SUPERVISE_FORMAT {
            bail!(
                "$.format: {:?}; this agent reads {SUPERVISE_FORMAT:?}",
                self.format
            );
        }
        if let Some(platform) = &self.platform {
            herd_core::check_identifier(platform)
                .map_err(|m| anyhow::anyhow!("$.platform: {m}"))?;
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, program) in self.programs.iter().enumerate() {
            program.check(&format!("$.programs[{i}]"))?;
            if !names.insert(&program.name) {
                bail!("$.programs[{i}].name: {:?} is listed twice", program.name);
            }
            for (j, alternative) in program.alternatives.iter().enumerate() {
                let at = format!("$.programs[{i}].alternatives[{j}]");
                alternative.check(&at)?;
                if alternative.command.is_none() {
                    bail!("{at}: an alternative is started by the agent: give its command");
                }
                if !alternative.alternatives.is_empty() {
                    bail!("{at}.alternatives: an alternative lists no alternatives of its own");
                }
            }
        }
        Ok(())
    }

    pub fn platform(&self) -> String {
        self.platform.clone().unwrap_or_else(default_platform)
    }
}

/// `<os>-<arch>`, as terminals report their platform by default.
pub fn default_platform() -> String {
    format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH)
}

impl ProgramConfig {
    fn check(&self, at: &str) -> Result<()> {
        herd_core::check_identifier(&self.name).map_err(|m| anyhow::anyhow!("{at}.name: {m}"))?;
        herd_core::check_identifier(&self.vendor)
            .map_err(|m| anyhow::anyhow!("{at}.vendor: {m}"))?;
        herd_core::check_version(&self.version)
            .map_err(|m| anyhow::anyhow!("{at}.version: {m}"))?;
        let ways = [
            self.command.is_some(),
            self.pid_file.is_some(),
            self.process_name.is_some(),
            self.service_unit.is_some(),
        ];
        if ways.iter().filter(|&&way| way).count() != 1 {
            bail!(
                "{at}: give one of command (started by the agent), pid_file, process_name or \
                 service_unit (watched)"
            );
        }
        if self.command.as_ref().is_some_and(Vec::is_empty) {
            bail!("{at}.command: name the program to start");
        }
        if let Some(name) = &self.process_name {
            check_process_name(name).map_err(|m| anyhow::anyhow!("{at}.process_name: {m}"))?;
        }
        if let Some(unit) = &self.service_unit {
            check_service_unit(unit).map_err(|m| anyhow::anyhow!("{at}.service_unit: {m}"))?;
        }
        if self.definitions.len() > herd_proto::fault::MAX_DEFINITIONS {
            bail!(
                "{at}.definitions: at most {}",
                herd_proto::fault::MAX_DEFINITIONS
            );
        }
        if let Some(heartbeat) = &self.heartbeat
            && heartbeat.limit_secs == 0
        {
            bail!("{at}.heartbeat.limit_secs: at least 1");
        }
        if let Some(check) = &self.health_check {
            if check.command.is_empty() {
                bail!("{at}.health_check.command: name the command");
            }
            if check.expect_exit.is_none() && check.expect_output.is_none() {
                bail!("{at}.health_check: expect an exit status, an output, or both");
            }
        }
        Ok(())
    }
}

/// A process name: what `/proc/<pid>/comm` or a program's file name can be (no `/`, no NUL,
/// not empty, at most 255 bytes).
fn check_process_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("name the process to watch".to_owned());
    }
    if name.len() > 255 || name.contains(['/', '\0', '\n']) {
        return Err(format!(
            "{name:?} is not a process name (at most 255 bytes, without '/', NUL or newline)"
        ));
    }
    Ok(())
}

/// A systemd service unit name: `name.service` (or `name@instance.service`) in the characters
/// systemd allows, so it is one argument to `systemctl` and never an option.
fn check_service_unit(unit: &str) -> Result<(), String> {
    let stem = unit.strip_suffix(".service").unwrap_or("");
    let allowed = |c: char| c.is_ascii_alphanumeric() || ":_.\\@-".contains(c);
    if stem.is_empty() || unit.len() > 256 || unit.starts_with('-') || !stem.chars().all(allowed) {
        return Err(format!(
            "{unit:?} is not a service unit name (like \"middleware.service\": letters, digits \
             and :_.\\@- before .service, at most 256 bytes)"
        ));
    }
    Ok(())
}
