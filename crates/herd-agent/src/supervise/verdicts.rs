//! Where fault recovery keeps its state in the agent's state directory (`faults/`), and how
//! verdicts travel from the center to the supervisor:
//! - `../faults-awaited.json` (in the state directory itself, where a sleeping `herd-agent run`
//!   notices it and checks in at once): seqs of fault reports queued whose verdict has not
//!   been read yet, added by whoever queues a report (the supervisor, `herd-agent fault
//!   report`);
//! - `verdicts.json`: the center's latest verdicts for this terminal, written by
//!   `herd-agent run` after it sent the outbox, while verdicts are awaited ([`read`],
//!   [`save`]), once the packages of the replacements they name are downloaded; read by the
//!   supervisor and `herd-agent status`;
//! - `fetched.json`: for each `replace` verdict (by seq), the signed target its package was
//!   verified as and downloaded from to `incoming/<sha256>` (the signed SHA-256, never the
//!   verdict's word), or why it was refused; written before `verdicts.json`, so the supervisor
//!   woken by the verdicts finds it;
//! - `acted.json`: the verdicts the supervisor acted on (so a restart acts on none twice); a
//!   `held` verdict is shown, not acted on, so the verdict that later replaces it under the
//!   same seq (`replace`, `escalated`) is acted on once;
//! - `outcomes.json`: what each replacement it carried out gave (by the verdict's seq), for
//!   `herd-agent status`;
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
use herd_proto::fault::{Alternative, Decision, FaultVerdicts};
use serde::{Deserialize, Serialize};

use super::config::ProgramConfig;
use super::watch::Watched;
use crate::run::durable::{self, PRIVATE_DIR};
use crate::run::state::{load_json, save_json};
use crate::trust::SignedProgram;

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
    fn fetched(&self) -> PathBuf {
        self.root().join("fetched.json")
    }
    fn acted(&self) -> PathBuf {
        self.root().join("acted.json")
    }
    fn outcomes(&self) -> PathBuf {
        self.root().join("outcomes.json")
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

/// A `replace` verdict's package as `herd-agent run` found it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fetched {
    /// Verified against the signed metadata and downloaded to `incoming/<sha256>`.
    Signed(SignedProgram),
    /// Not installed: the signed metadata does not vouch for it (or it could not be had).
    Refused(String),
}

/// Called by `herd-agent run` after it sent the outbox: if verdicts are awaited, reads them
/// (`None` when none was awaited).
pub fn read(client: &Client, dirs: &FaultDirs) -> Result<Option<FaultVerdicts>> {
    let awaited: Vec<u64> = load_json(&dirs.awaited())?.unwrap_or_default();
    if awaited.is_empty() {
        return Ok(None);
    }
    let verdicts = client
        .fault_verdicts()
        .map_err(|err| anyhow::anyhow!("cannot read the fault verdicts: {err}"))?;
    Ok(Some(verdicts))
}

/// The packages of the `replace` verdicts not fetched yet, each through `fetch_program`
/// (which verifies the named target against the signed metadata and downloads it into the
/// directory it is given); a refusal is kept too, so the supervisor says why.
pub fn fetch_programs(
    dirs: &FaultDirs,
    verdicts: &FaultVerdicts,
    fetch_program: &mut dyn FnMut(&Alternative, &Path) -> Result<SignedProgram, String>,
) -> Result<BTreeMap<u64, Fetched>> {
    let mut fetched = load_fetched(dirs)?;
    for verdict in &verdicts.verdicts {
        if verdict.decision != Decision::Replace {
            continue;
        }
        let Some(alternative) = &verdict.alternative else {
            continue;
        };
        if let Some(Fetched::Signed(signed)) = fetched.get(&verdict.seq)
            && dirs.incoming().join(&signed.sha256).exists()
        {
            continue;
        }
        let outcome = match fetch_program(alternative, &dirs.incoming()) {
            Ok(signed) => Fetched::Signed(signed),
            Err(why) => Fetched::Refused(why),
        };
        fetched.insert(verdict.seq, outcome);
    }
    // Only the seqs of the verdicts listed now matter.
    fetched.retain(|seq, _| verdicts.verdicts.iter().any(|v| v.seq == *seq));
    Ok(fetched)
}

/// Saves what [`read`] and [`fetch_programs`] found (the fetched packages first: the
/// supervisor acts when the verdicts change), and forgets the awaited seqs they answer.
/// Returns how many verdicts were saved.
pub fn save(
    dirs: &FaultDirs,
    verdicts: &FaultVerdicts,
    fetched: &BTreeMap<u64, Fetched>,
) -> Result<usize> {
    save_json(&dirs.fetched(), fetched)?;
    save_json(&dirs.verdicts(), verdicts)?;
    let _lock = LockFile::acquire(&dirs.lock()).context("cannot lock the fault state")?;
    let mut awaited: Vec<u64> = load_json(&dirs.awaited())?.unwrap_or_default();
    // The center decides a report when it stores it, and reports are sent in order: one at
    // or below the newest answered seq that has no verdict never will (the center refused
    // it), so it is awaited no longer.
    let answered = verdicts.verdicts.iter().map(|v| v.seq).max().unwrap_or(0);
    // A `held` verdict is not the last word: the center decides it again when the
    // replacement's rollout reaches this terminal (or is halted), so it stays awaited and the
    // verdicts are read again at each check-in until it changes.
    let held: Vec<u64> = verdicts
        .verdicts
        .iter()
        .filter(|v| v.decision == Decision::Held)
        .map(|v| v.seq)
        .collect();
    awaited.retain(|seq| *seq > answered || held.contains(seq));
    for seq in held {
        if !awaited.contains(&seq) {
            awaited.push(seq);
        }
    }
    save_json(&dirs.awaited(), &awaited)?;
    Ok(verdicts.verdicts.len())
}

/// What was fetched for each `replace` verdict, by seq.
pub fn load_fetched(dirs: &FaultDirs) -> Result<BTreeMap<u64, Fetched>> {
    Ok(load_json(&dirs.fetched())?.unwrap_or_default())
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

/// What a replacement gave, kept for `herd-agent status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplacementOutcome {
    pub replaced: bool,
    pub message: String,
}

/// The outcomes of the replacements carried out, by the verdict's seq.
pub fn load_outcomes(dirs: &FaultDirs) -> Result<BTreeMap<u64, ReplacementOutcome>> {
    Ok(load_json(&dirs.outcomes())?.unwrap_or_default())
}

/// Records the outcome of the replacement of verdict `seq` (the newest 50 are kept).
pub fn record_outcome(dirs: &FaultDirs, seq: u64, outcome: ReplacementOutcome) -> Result<()> {
    let mut outcomes = load_outcomes(dirs)?;
    outcomes.insert(seq, outcome);
    while outcomes.len() > 50 {
        outcomes.pop_first();
    }
    save_json(&dirs.outcomes(), &outcomes)
}
