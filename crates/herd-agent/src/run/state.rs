//! The agent's state directory: where everything `herd-agent run` keeps between runs lives,
//! and the small JSON documents it writes there.
//!
//! ```text
//! <state>/
//!   identity/          0700: key.pem, cert.pem (0600), ca.pem — the terminal's identity;
//!                      renewed.pem, while a renewal is being switched to: key and certificate
//!                      in one file, which wins over key.pem and cert.pem (see `identity`)
//!   agent.json         who this terminal is: server, terminal id, group, user, hardware, prefix
//!   status.json        what happened last: check-in, plan, reports (for `herd-agent status`)
//!   consent.json       a plan waiting for the user's consent, and the answer
//!   outbox/            events waiting for the center (see `crate::outbox`)
//!   trust/             the signed metadata the agent trusts (see `crate::trust`)
//!   journal.json, reports.json, execute.lock, downloads/   the plan executor's
//!   agent.lock         flock'ed by the running `herd-agent run` (herd-fs `LockFile`, which
//!                      records its pid); agent.pid names it too, for scripts
//!   prefix/            the product prefix, unless --prefix says otherwise
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use herd_fs::{LockError, LockFile};
use herd_proto::api::{PlanReport, ReportOutcome};
use herd_proto::terminal::HardwareDoc;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::durable::{self, PRIVATE_DIR, PRIVATE_FILE};

/// The format tag of `agent.json`.
pub(crate) const AGENT_FORMAT: &str = "herd.agent/v1";

/// Paths inside a state directory.
#[derive(Debug, Clone)]
pub(crate) struct StatePaths {
    pub root: PathBuf,
}

impl StatePaths {
    pub fn new(root: &Path) -> StatePaths {
        StatePaths {
            root: root.to_owned(),
        }
    }

    pub fn identity_dir(&self) -> PathBuf {
        self.root.join("identity")
    }
    pub fn key(&self) -> PathBuf {
        self.identity_dir().join("key.pem")
    }
    pub fn cert(&self) -> PathBuf {
        self.identity_dir().join("cert.pem")
    }
    pub fn ca(&self) -> PathBuf {
        self.identity_dir().join("ca.pem")
    }
    /// A new key and certificate, written as one file before they replace key.pem and cert.pem.
    pub fn identity_pending(&self) -> PathBuf {
        self.identity_dir().join("renewed.pem")
    }
    pub fn agent(&self) -> PathBuf {
        self.root.join("agent.json")
    }
    pub fn status(&self) -> PathBuf {
        self.root.join("status.json")
    }
    pub fn consent(&self) -> PathBuf {
        self.root.join(CONSENT_FILE)
    }
    pub fn consent_lock(&self) -> PathBuf {
        self.root.join("consent.lock")
    }
    pub fn outbox(&self) -> PathBuf {
        self.root.join("outbox")
    }
    pub fn lock(&self) -> PathBuf {
        self.root.join("agent.lock")
    }
    pub fn pid(&self) -> PathBuf {
        self.root.join("agent.pid")
    }
    pub fn default_prefix(&self) -> PathBuf {
        self.root.join("prefix")
    }
}

/// The file name the consent command writes and the running agent watches for.
pub(crate) const CONSENT_FILE: &str = "consent.json";

/// The state directory of the one `herd-agent run` that may use it, locked for as long as this
/// lives.
#[derive(Debug)]
pub(crate) struct StateDir {
    pub paths: StatePaths,
    _lock: LockFile,
}

impl StateDir {
    /// Creates the directory (owner-only) if needed, checks it is writable, and takes the
    /// agent lock; fails naming the other process if one already runs on it.
    pub fn open(root: &Path) -> Result<StateDir> {
        let paths = StatePaths::new(root);
        durable::create_dir(root, PRIVATE_DIR)
            .with_context(|| format!("cannot create the state directory {}", root.display()))?;
        let lock = match LockFile::acquire_within(&paths.lock(), PROBE_GRACE) {
            Ok(lock) => lock,
            Err(LockError::Locked { pid, .. }) => {
                let pid = pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default();
                bail!(
                    "another herd-agent run{pid} is using the state directory {}; stop it first \
                     or use `herd-agent status`",
                    root.display()
                );
            }
            Err(LockError::Io { path, source }) => return Err(not_writable(root, &path, source)),
        };
        // A crash may have left temporaries here (state files, consent, journal): those whose
        // writer is gone are removed; a consent command writing right now keeps its own
        // (herd-fs checks the writer's pid).
        herd_fs::remove_stale_temporaries(root)
            .map_err(|e| not_writable(root, &e.path, e.source))?;
        let pid_path = paths.pid();
        herd_fs::write_atomic(
            &pid_path,
            format!("{}\n", std::process::id()).as_bytes(),
            0o644,
        )
        .map_err(|e| not_writable(root, &pid_path, e.source))?;
        Ok(StateDir { paths, _lock: lock })
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.paths.pid());
    }
}

/// How long the agent waits for its lock: `status` and `consent` probe it with a shared lock
/// for an instant, which must not make an agent starting at that moment give up.
const PROBE_GRACE: Duration = Duration::from_secs(1);

fn not_writable(root: &Path, path: &Path, error: io::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "the state directory {} is not writable ({}: {error}); run the agent as a user who may \
         write there or choose another --state-dir",
        root.display(),
        path.display()
    )
}

/// The pid of the `herd-agent run` holding the state directory's lock, if one runs.
pub(crate) fn running_pid(paths: &StatePaths) -> Option<u32> {
    LockFile::holder(&paths.lock()).ok()??.pid
}

/// Who this terminal is (`agent.json`), written at enrolment and when flags change it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AgentFile {
    pub format: String,
    /// The center (or site server) this terminal talks to.
    pub server: String,
    pub terminal: String,
    /// The group the center placed the terminal in at enrolment.
    pub group: String,
    #[serde(default)]
    pub user: Option<String>,
    pub hardware: HardwareDoc,
    #[serde(default)]
    pub tz: Option<String>,
    /// The product prefix the agent manages.
    pub prefix: PathBuf,
    pub enrolled_at: String,
    /// Where to check in, in order of preference, as the enrolment answered (its site, then
    /// the center); empty means `server` alone. `herd-agent run --upstream` overrides it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<String>,
}

/// What happened last (`status.json`): for `herd-agent status`, and so that a plan's
/// notifications and deferral reports are sent once, not at every check-in.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Progress {
    #[serde(default)]
    pub last_checkin: Option<String>,
    /// The last failed attempt to reach the center, and why; cleared by a check-in.
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub last_error_at: Option<String>,
    #[serde(default)]
    pub next_checkin: Option<String>,
    #[serde(default)]
    pub plan: Option<PlanState>,
    #[serde(default)]
    pub last_report: Option<ReportSummary>,
    /// The pid of the agent that wrote this, so `status` can tell a stale file.
    #[serde(default)]
    pub pid: Option<u32>,
    /// When the terminal's certificate was last renewed.
    #[serde(default)]
    pub certificate_renewed_at: Option<String>,
    /// Signed distribution: the last metadata refresh and the last refusal.
    #[serde(default)]
    pub trust: TrustProgress,
    /// The upstream the agent talks to now, and every one it knows, preferred first.
    #[serde(default)]
    pub upstream: Option<String>,
    #[serde(default)]
    pub upstreams: Vec<String>,
    /// What the push connection is doing (absent with `--no-push`).
    #[serde(default)]
    pub push: Option<String>,
    /// The digest of the network interfaces last reported to the current upstream (they are
    /// sent again only when they change).
    #[serde(default)]
    pub interfaces_reported: Option<String>,
    /// The candidate download directories and their free space, the most first.
    #[serde(default)]
    pub downloads: Option<String>,
}

/// What the agent last verified, and the last thing it refused (`herd-agent status`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TrustProgress {
    #[serde(default)]
    pub last_refresh: Option<RefreshSummary>,
    #[serde(default)]
    pub last_refusal: Option<RefusalSummary>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RefreshSummary {
    pub at: String,
    /// Where the metadata came from (the center or a mirror).
    pub upstream: String,
    /// Body bytes and requests of that refresh (an idle one reads only the timestamp).
    pub bytes: u64,
    pub requests: u64,
    pub root_version: u64,
    pub timestamp_version: u64,
    pub snapshot_version: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RefusalSummary {
    pub at: String,
    pub kind: String,
    #[serde(default)]
    pub subject: Option<String>,
    pub detail: String,
    #[serde(default)]
    pub plan_id: Option<String>,
}

impl RefusalSummary {
    /// `refusal` as `status` shows it, refused now (of `plan_id`, when a plan's).
    pub(crate) fn now(refusal: &crate::trust::Refusal, plan_id: Option<&str>) -> RefusalSummary {
        RefusalSummary {
            at: super::clock::now_rfc3339(),
            kind: refusal.kind.to_owned(),
            subject: refusal.subject.clone(),
            detail: refusal.detail.clone(),
            plan_id: plan_id.map(str::to_owned),
        }
    }
}

/// The current plan and what the agent did about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct PlanState {
    pub plan_id: String,
    pub action: String,
    pub reason: String,
    #[serde(default)]
    pub not_before: Option<String>,
    pub received_at: String,
    /// What the agent is waiting for before it carries the plan out.
    #[serde(default)]
    pub waiting: Option<Waiting>,
    /// A `deferred` report was sent for the current wait.
    #[serde(default)]
    pub deferral_reported: bool,
    /// The `declined` report was sent.
    #[serde(default)]
    pub decline_reported: bool,
    /// The `consent.accepted` event was queued.
    #[serde(default)]
    pub accept_reported: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Waiting {
    Consent,
    Window,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReportSummary {
    pub plan_id: String,
    pub outcome: ReportOutcome,
    #[serde(default)]
    pub message: Option<String>,
    pub at: String,
}

impl ReportSummary {
    pub fn of(report: &PlanReport, at: String) -> ReportSummary {
        ReportSummary {
            plan_id: report.plan_id.clone(),
            outcome: report.outcome,
            message: report.message.clone(),
            at,
        }
    }
}

/// Reads a JSON state file; `None` when it does not exist.
pub(crate) fn load_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let Some(bytes) =
        durable::read_optional(path).with_context(|| format!("cannot read {}", path.display()))?
    else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).with_context(|| {
        format!(
            "{} is damaged (not the JSON the agent writes)",
            path.display()
        )
    })
}

/// Writes a JSON state file atomically and durably, owner-only.
pub(crate) fn save_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).context("cannot encode agent state")?;
    bytes.push(b'\n');
    herd_fs::write_atomic(path, &bytes, PRIVATE_FILE).context("cannot save the agent's state")
}

/// An outcome as people read it: the wire name (`ReportOutcome::as_str`) with its underscores
/// as spaces (`rolled back`), so a new outcome needs no second spelling here.
pub(crate) fn outcome_name(outcome: ReportOutcome) -> String {
    outcome.as_str().replace('_', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_agent_per_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        let first = StateDir::open(&root).unwrap();
        assert_eq!(running_pid(&first.paths), Some(std::process::id()));
        let err = StateDir::open(&root).unwrap_err().to_string();
        assert!(err.contains("another herd-agent run"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        assert_eq!(running_pid(&StatePaths::new(&root)), None);
        assert!(!root.join("agent.pid").exists());
        StateDir::open(&root).unwrap();
    }

    #[test]
    fn a_state_directory_that_cannot_be_created_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let err = format!("{:#}", StateDir::open(&file.join("state")).unwrap_err());
        assert!(err.contains("cannot create the state directory"), "{err}");
    }

    #[test]
    fn state_files_round_trip_and_damage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        assert_eq!(load_json::<Progress>(&path).unwrap(), None);
        let progress = Progress {
            last_checkin: Some("2000-11-12T00:00:00Z".into()),
            ..Progress::default()
        };
        save_json(&path, &progress).unwrap();
        assert_eq!(load_json::<Progress>(&path).unwrap(), Some(progress));
        std::fs::write(&path, b"{").unwrap();
        let err = format!("{:#}", load_json::<Progress>(&path).unwrap_err());
        assert!(err.contains("status.json is damaged"), "{err}");
    }
}
