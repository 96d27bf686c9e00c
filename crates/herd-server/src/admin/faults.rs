//! Fault recovery's commands: `herd faults list|show` (buckets of faults with the same
//! signature, their decision, the terminals and reports), `herd fault-rules list|put|delete`
//! (the fault database) and `herd replacements list|put|delete` (the approved alternatives of
//! a program on a platform). Rules and entries are put from JSON files, the documents the API
//! takes (`herd_proto::fault::FaultRule`, `ReplacementEntry`).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use herd_proto::fault::{FaultRule, ReplacementEntry};
use serde::de::DeserializeOwned;

use super::connect::{ServerArgs, Session};
use super::output::{print_json, print_out};
use super::table::Table;
use crate::Outcome;

/// Fault buckets: faults of supervised programs with the same signature.
#[derive(Debug, Subcommand)]
pub enum FaultsCommand {
    /// Every bucket, most recently seen first: program, kind, faults, terminals, decision.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// One bucket (its id or a prefix) with its signature and latest faults and verdicts.
    Show {
        bucket: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// The fault database: rules that name a fault's cause and remedy.
#[derive(Debug, Subcommand)]
pub enum FaultRulesCommand {
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Add or replace a rule from a JSON file (`{"id", "program", "version_from",
    /// "version_below", "kinds", "exit_codes", "signals", "frame_pattern",
    /// "definition_pattern", "cause", "remedy"}`).
    Put {
        file: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    Delete {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// The replacement table: approved alternatives of a program on a platform.
#[derive(Debug, Subcommand)]
pub enum ReplacementsCommand {
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Add or replace an entry from a JSON file (`{"program", "platform", "alternatives":
    /// [{"program", "vendor", "version"}]}`, in order of preference). An alternative the
    /// catalog has as a program release for the platform is distributed as its signed target;
    /// any other is used only where a terminal already has it.
    Put {
        file: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    Delete {
        program: String,
        platform: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub(super) fn faults(command: FaultsCommand) -> anyhow::Result<Outcome> {
    match command {
        FaultsCommand::List { json, server } => {
            let session = Session::open(&server)?;
            let list = match session.client.fault_buckets() {
                Ok(list) => list,
                Err(err) => return session.failed("listing the fault buckets", err),
            };
            if json {
                print_json(&list)?;
                return Ok(Outcome::Success);
            }
            if list.buckets.is_empty() {
                print_out("no faults reported\n")?;
                return Ok(Outcome::Success);
            }
            let mut table = Table::new([
                "BUCKET",
                "PROGRAM",
                "VERSION",
                "KIND",
                "FAULTS",
                "TERMINALS",
                "LAST SEEN",
                "DECISION",
            ]);
            for b in &list.buckets {
                table.row([
                    b.id.clone(),
                    b.program.clone(),
                    b.version.clone(),
                    b.kind.as_str().to_owned(),
                    b.faults.to_string(),
                    b.terminals.to_string(),
                    b.last_seen.clone(),
                    b.decision.as_str().to_owned(),
                ]);
            }
            print_out(&table.render())?;
            Ok(Outcome::Success)
        }
        FaultsCommand::Show {
            bucket,
            json,
            server,
        } => {
            let session = Session::open(&server)?;
            let detail = match session.client.fault_bucket(&bucket) {
                Ok(detail) => detail,
                Err(err) => return session.failed(&format!("showing bucket {bucket}"), err),
            };
            if json {
                print_json(&detail)?;
                return Ok(Outcome::Success);
            }
            let b = &detail.bucket;
            let mut text = format!(
                "bucket {}: {} {} {}, {} fault(s) on {} terminal(s), {} to {}\ndecision: {}{}\nsignature:\n",
                b.id,
                b.program,
                b.version,
                b.kind.as_str(),
                b.faults,
                b.terminals,
                b.first_seen,
                b.last_seen,
                b.decision.as_str(),
                b.escalated_at
                    .as_deref()
                    .map(|at| format!(" (escalated at {at})"))
                    .unwrap_or_default()
            );
            for line in b.signature.lines() {
                text.push_str(&format!("  {line}\n"));
            }
            for entry in &detail.faults {
                let v = &entry.verdict;
                text.push_str(&format!(
                    "{} {} event {}: {}",
                    v.at,
                    entry.terminal,
                    v.seq,
                    v.decision.as_str()
                ));
                if let (Some(cause), Some(remedy)) = (&v.cause, &v.remedy) {
                    text.push_str(&format!(" — {cause} Remedy: {remedy}"));
                }
                if let Some(alternative) = &v.alternative {
                    text.push_str(&format!(
                        " → {} {} ({})",
                        alternative.program, alternative.version, alternative.vendor
                    ));
                    if let Some(target) = &alternative.target {
                        text.push_str(&format!(" as signed target {target}"));
                    }
                }
                text.push('\n');
                if let Some(outcome) = &entry.outcome {
                    text.push_str(&format!(
                        "  {}: {}\n",
                        if outcome.replaced {
                            "replaced"
                        } else {
                            "not replaced, old program restored"
                        },
                        outcome.message
                    ));
                }
            }
            print_out(&text)?;
            Ok(Outcome::Success)
        }
    }
}

pub(super) fn fault_rules(command: FaultRulesCommand) -> anyhow::Result<Outcome> {
    match command {
        FaultRulesCommand::List { json, server } => {
            let session = Session::open(&server)?;
            let list = match session.client.fault_rules() {
                Ok(list) => list,
                Err(err) => return session.failed("listing the fault rules", err),
            };
            if json {
                print_json(&list)?;
                return Ok(Outcome::Success);
            }
            let mut table = Table::new(["RULE", "PROGRAM", "VERSIONS", "CAUSE", "REMEDY"]);
            for rule in &list.rules {
                table.row([
                    rule.id.clone(),
                    rule.program.clone(),
                    format!(
                        "{}..{}",
                        rule.version_from.as_deref().unwrap_or(""),
                        rule.version_below.as_deref().unwrap_or("")
                    ),
                    rule.cause.clone(),
                    rule.remedy.clone(),
                ]);
            }
            print_out(&table.render())?;
            Ok(Outcome::Success)
        }
        FaultRulesCommand::Put { file, server } => {
            let rule: FaultRule = match read_document(&file)? {
                Ok(rule) => rule,
                Err(outcome) => return Ok(outcome),
            };
            let session = Session::open(&server)?;
            match session.client.put_fault_rule(&rule) {
                Ok(saved) => {
                    print_out(&format!("fault rule {} saved\n", saved.id))?;
                    Ok(Outcome::Success)
                }
                Err(err) => session.failed(&format!("saving fault rule {}", rule.id), err),
            }
        }
        FaultRulesCommand::Delete { id, server } => {
            let session = Session::open(&server)?;
            match session.client.delete_fault_rule(&id) {
                Ok(()) => {
                    print_out(&format!("fault rule {id} deleted\n"))?;
                    Ok(Outcome::Success)
                }
                Err(err) => session.failed(&format!("deleting fault rule {id}"), err),
            }
        }
    }
}

pub(super) fn replacements(command: ReplacementsCommand) -> anyhow::Result<Outcome> {
    match command {
        ReplacementsCommand::List { json, server } => {
            let session = Session::open(&server)?;
            let list = match session.client.replacements() {
                Ok(list) => list,
                Err(err) => return session.failed("listing the replacement table", err),
            };
            if json {
                print_json(&list)?;
                return Ok(Outcome::Success);
            }
            let mut table = Table::new(["PROGRAM", "PLATFORM", "ALTERNATIVES"]);
            for entry in &list.entries {
                let alternatives: Vec<String> = entry
                    .alternatives
                    .iter()
                    .map(|a| match &a.target {
                        Some(target) => format!(
                            "{} {} ({}, distributed as {target})",
                            a.program, a.version, a.vendor
                        ),
                        None => {
                            format!("{} {} ({}, where present)", a.program, a.version, a.vendor)
                        }
                    })
                    .collect();
                table.row([
                    entry.program.clone(),
                    entry.platform.clone(),
                    alternatives.join(" > "),
                ]);
            }
            print_out(&table.render())?;
            Ok(Outcome::Success)
        }
        ReplacementsCommand::Put { file, server } => {
            let entry: ReplacementEntry = match read_document(&file)? {
                Ok(entry) => entry,
                Err(outcome) => return Ok(outcome),
            };
            let session = Session::open(&server)?;
            match session.client.put_replacement(&entry) {
                Ok(saved) => {
                    print_out(&format!(
                        "replacements of {} on {} saved ({} alternative(s))\n",
                        saved.program,
                        saved.platform,
                        saved.alternatives.len()
                    ))?;
                    Ok(Outcome::Success)
                }
                Err(err) => session.failed(
                    &format!("saving the replacements of {}", entry.program),
                    err,
                ),
            }
        }
        ReplacementsCommand::Delete {
            program,
            platform,
            server,
        } => {
            let session = Session::open(&server)?;
            match session.client.delete_replacement(&program, &platform) {
                Ok(()) => {
                    print_out(&format!(
                        "replacements of {program} on {platform} deleted\n"
                    ))?;
                    Ok(Outcome::Success)
                }
                Err(err) => session.failed(
                    &format!("deleting the replacements of {program} on {platform}"),
                    err,
                ),
            }
        }
    }
}

/// A JSON document from a local file; one that is not the document is refused (printed,
/// exit code 1), a file that cannot be read is an error (exit code 2).
fn read_document<T: DeserializeOwned>(path: &Path) -> anyhow::Result<Result<T, Outcome>> {
    let bytes = std::fs::read(path)
        .map_err(|err| anyhow::anyhow!("cannot read {}: {err}", path.display()))?;
    match serde_json::from_slice(&bytes) {
        Ok(document) => Ok(Ok(document)),
        Err(err) => {
            eprintln!("herd: {}: {err}", path.display());
            Ok(Err(Outcome::InvalidInput))
        }
    }
}
