//! Where fault recovery keeps its state in the agent's state directory (`faults/`), and how
//! verdicts travel from the center to the supervisor:
//! - `../faults-awaited.json` (in the state directory itself, where a sleeping `herd-agent run`
//!   notices it and checks in at once): seqs of fault reports queued whose verdict has not
//!   been read yet, added by whoever queues a report (the supervisor, `herd-agent fault
//!   report`);
//! - `verdicts.json`: the center's latest verdicts for this terminal, written by
//!   `herd-agent run` after it sent the outbox, while verdicts are awaited ([`fetch`]), once
//!   the packages of the replacements they name are downloaded to `incoming/<sha256>`; read
//!   by the supervisor and `herd-agent status`;
//! - `acted.json`: the verdicts the supervisor acted on (so a restart acts on none twice);
//! - `selected.json`: which alternative now runs in place of a configured program;
//! - `programs/<program>/<version>/`: alternatives installed by a replacement.
//!
//! Files are written through `herd_fs` (atomic, durable); `faults.lock` serialises changes to
//! the awaited seqs between processes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};
use herd_client::Client;
use herd_fs::LockFile;
use herd_proto::fault::{Decision, FaultVerdicts};
use serde::{Deserialize, Serialize};

use super::config::ProgramConfig;
use super::watch::Watched;
use crate::run::durable::{self, PRIVATE_DIR};
use crate::run::state::{load_json, save_json};

/// The file of awaited verdicts, in the state directory: its change wakes `herd-agent run`.
pub const AWAITED_FILE: &str = "faults-awaited.json";

/// The paths of fault recovery inside a state directory.
#[derive(Clone, Debug)]
pub struct FaultDirs {
    pub state: PathBuf,
}

impl FaultDirs {
    pub fn new(state: &Path) -> FaultDirs {
        FaultDirs {
            state: state.to_owned(),
        }
    }
    pub fn root(&self) -> PathBuf {
        self.state.join("faults")
    }
    pub fn outbox(&self) -> PathBuf {
        self.state.join("outbox")
    }
    fn awaited(&self) -> PathBuf {
        self.state.join(AWAITED_FILE)
    }
    pub fn verdicts(&self) -> PathBuf {
        self.root().join("verdicts.json")
    }
    fn acted(&self) -> PathBuf {
        self.root().join("acted.json")
    }
    fn selected(&self) -> PathBuf {
        self.root().join("selected.json")
    }
    fn lock(&self) -> PathBuf {
        self.root().join("faults.lock")
    }
    pub fn incoming(&self) -> PathBuf {
        self.root().join("incoming")
    }
    pub fn programs(&self) -> PathBuf {
        self.root().join("programs")
    }

    /// Creates the directories, owner-only.
    pub fn create(&self) -> Result<()> {
        for dir in [
            self.state.clone(),
            self.root(),
            self.incoming(),
            self.programs(),
        ] {
            durable::create_dir(&dir, PRIVATE_DIR)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        Ok(())
    }
}

/// Records that the verdict on report `seq` is awaited.
pub fn await_verdict(dirs: &FaultDirs, seq: u64) -> Result<()> {
    dirs.create()?;
    let _lock = LockFile::acquire(&dirs.lock()).context("cannot lock the fault state")?;
    let mut awaited: Vec<u64> = load_json(&dirs.awaited())?.unwrap_or_default();
    awaited.push(seq);
    save_json(&dirs.awaited(), &awaited)
}

/// Called by `herd-agent run` after it sent the outbox: if verdicts are awaited, reads them,
/// downloads the packages of the replacements they name, saves them, and forgets the awaited
/// seqs they answer. Returns how many verdicts were saved (0 when none was awaited).
pub fn fetch(client: &Client, dirs: &FaultDirs) -> Result<usize> {
    let awaited: Vec<u64> = load_json(&dirs.awaited())?.unwrap_or_default();
    if awaited.is_empty() {
        return Ok(0);
    }
    let verdicts = client
        .fault_verdicts()
        .map_err(|err| anyhow::anyhow!("cannot read the fault verdicts: {err}"))?;
    for verdict in &verdicts.verdicts {
        if verdict.decision != Decision::Replace {
            continue;
        }
        let Some(alternative) = &verdict.alternative else {
            continue;
        };
        let (Some(sha256), Some(size)) = (&alternative.package_sha256, alternative.package_size)
        else {
            continue;
        };
        let dest = dirs.incoming().join(sha256);
        if dest.exists() {
            continue;
        }
        // Downloaded beside, renamed once the client verified size and SHA-256.
        let part = dirs.incoming().join(format!("{sha256}.part"));
        client
            .download_package(sha256, size, &part)
            .map_err(|err| anyhow::anyhow!("cannot download {}: {err}", alternative.program))?;
        std::fs::rename(&part, &dest)
            .with_context(|| format!("cannot rename {}", part.display()))?;
        herd_fs::sync_dir(&dirs.incoming())?;
    }
    save_json(&dirs.verdicts(), &verdicts)?;
    let _lock = LockFile::acquire(&dirs.lock()).context("cannot lock the fault state")?;
    let mut awaited: Vec<u64> = load_json(&dirs.awaited())?.unwrap_or_default();
    // The center decides a report when it stores it, and reports are sent in order: one at
    // or below the newest answered seq that has no verdict never will (the center refused
    // it), so it is awaited no longer.
    let answered = verdicts.verdicts.iter().map(|v| v.seq).max().unwrap_or(0);
    awaited.retain(|seq| *seq > answered);
    save_json(&dirs.awaited(), &awaited)?;
    Ok(verdicts.verdicts.len())
}

/// The saved verdicts (none yet: empty).
pub fn load(dirs: &FaultDirs) -> Result<FaultVerdicts> {
    Ok(load_json(&dirs.verdicts())?.unwrap_or_default())
}

/// When the verdicts file last changed: the supervisor reads it again only then.
pub fn stamp(dirs: &FaultDirs) -> Option<SystemTime> {
    std::fs::metadata(dirs.verdicts())
        .and_then(|m| m.modified())
        .ok()
}

/// The verdicts the supervisor acted on.
#[derive(Debug, Default)]
pub struct Acted(Vec<u64>);

impl Acted {
    pub fn load(dirs: &FaultDirs) -> Result<Acted> {
        Ok(Acted(load_json(&dirs.acted())?.unwrap_or_default()))
    }
    pub fn contains(&self, seq: u64) -> bool {
        self.0.contains(&seq)
    }
    pub fn add(&mut self, dirs: &FaultDirs, seq: u64) -> Result<()> {
        self.0.push(seq);
        // Verdicts are listed newest first and at most 20: older seqs no longer matter.
        if self.0.len() > 200 {
            self.0.drain(..100);
        }
        save_json(&dirs.acted(), &self.0)
    }
}

/// Which alternative runs in place of each configured program that was replaced.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Selected(BTreeMap<String, ProgramConfig>);

impl Selected {
    pub fn load(dirs: &FaultDirs) -> Result<Selected> {
        Ok(load_json(&dirs.selected())?.unwrap_or_default())
    }

    pub fn active(&self, configured: &str) -> Option<ProgramConfig> {
        self.0.get(configured).cloned()
    }

    /// Remembers what `watched` runs now in place of its configured program.
    pub fn record(dirs: &FaultDirs, _replaced: &str, watched: &Watched) -> Result<()> {
        let mut selected = Selected::load(dirs)?;
        selected
            .0
            .insert(watched.original.name.clone(), watched.active.clone());
        save_json(&dirs.selected(), &selected)
    }
}
