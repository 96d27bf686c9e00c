//! `herd plan`: plans terminals from files against a catalog file and prints the plans.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use herd_core::{Terminal, Timestamp};
use herd_planner::Planner;
use herd_proto::ValidationError;

use crate::Outcome;

/// Print the plan for each terminal (SPEC §4, §5).
///
/// One terminal record prints one plan as indented JSON. A JSON array of records, or a
/// directory of `.json` files (read in name order), prints one plan per line (JSON lines),
/// in input order. A record that fails validation is reported on stderr and skipped; the
/// exit code is then 1. A catalog that fails validation prints every problem and exits 1.
/// Output is byte-identical for identical inputs and `--now`.
///
/// A plan lists at most 20 threat ids per gap, the most dangerous and newest first, with
/// counts by danger and how many more there are, as a check-in answer does (SPEC §4);
/// `--full-gap` lists every one.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The catalog feed (`herd.catalog/v1` JSON).
    #[arg(long, value_name = "FILE")]
    catalog: PathBuf,
    /// A terminal record, a JSON array of records, or a directory of such files.
    #[arg(long, value_name = "PATH")]
    terminal: PathBuf,
    /// The instant to plan at (RFC 3339, e.g. 2000-11-13T08:00:00Z); defaults to the current time.
    #[arg(long, value_name = "RFC3339", value_parser = parse_now)]
    now: Option<Timestamp>,
    /// Print one plan per line even for a single terminal record.
    #[arg(long)]
    lines: bool,
    /// List every uncovered threat in `uncovered_now` and `uncovered_after` (`*_more` is then
    /// 0), not only the first 20 a check-in answer carries.
    #[arg(long)]
    full_gap: bool,
}

fn parse_now(text: &str) -> Result<Timestamp, String> {
    Timestamp::parse(text)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

pub fn run(args: PlanArgs) -> Result<Outcome> {
    let now = match args.now {
        Some(now) => now,
        None => {
            let since_epoch = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .context("the system clock is before 1970")?;
            Timestamp::from_unix_seconds(since_epoch.as_secs() as i64)
        }
    };
    let catalog_name = args.catalog.display().to_string();
    let catalog = match herd_proto::catalog::parse_catalog(&catalog_name, &read(&args.catalog)?) {
        Ok(catalog) => catalog,
        Err(err) => {
            eprintln!("{err}");
            eprintln!(
                "herd: the catalog was refused ({} problems); nothing was planned",
                err.problems.len()
            );
            return Ok(Outcome::InvalidInput);
        }
    };

    let (files, single_file) = terminal_files(&args.terminal)?;
    let mut terminals: Vec<Terminal> = Vec::new();
    let mut refused: Vec<ValidationError> = Vec::new();
    let mut single_record = false;
    for file in &files {
        let name = file.display().to_string();
        let text = read(file)?;
        single_record = single_file && text.trim_start().starts_with('{');
        match herd_proto::terminal::parse_terminals(&name, &text, &catalog) {
            Ok(results) => {
                for result in results {
                    match result {
                        Ok(terminal) => terminals.push(terminal),
                        Err(err) => refused.push(err),
                    }
                }
            }
            Err(err) => refused.push(err),
        }
    }

    let mut planner = Planner::new(&catalog, now);
    let stdout = std::io::stdout().lock();
    let mut out = BufWriter::new(stdout);
    for terminal in &terminals {
        let mut doc = planner.plan_doc(terminal);
        if args.full_gap {
            let full = planner.full_gap(terminal);
            doc.uncovered_now = full.now.map(|t| t.id.clone()).collect();
            doc.uncovered_now_more = 0;
            doc.uncovered_after = full.after.map(|t| t.id.clone()).collect();
            doc.uncovered_after_more = 0;
        }
        if single_record && !args.lines {
            serde_json::to_writer_pretty(&mut out, &doc)?;
        } else {
            serde_json::to_writer(&mut out, &doc)?;
        }
        out.write_all(b"\n")?;
    }
    out.flush()?;

    if refused.is_empty() {
        return Ok(Outcome::Success);
    }
    for err in &refused {
        eprintln!("{err}");
    }
    eprintln!(
        "herd: {} terminal record(s) refused; {} planned",
        refused.len(),
        terminals.len()
    );
    Ok(Outcome::InvalidInput)
}

/// The files to read: the path itself, or the `.json` files of a directory in name order.
fn terminal_files(path: &Path) -> Result<(Vec<PathBuf>, bool)> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_dir() {
        return Ok((vec![path.to_path_buf()], true));
    }
    let mut files = Vec::new();
    for entry in
        std::fs::read_dir(path).with_context(|| format!("cannot list {}", path.display()))?
    {
        let entry = entry.with_context(|| format!("cannot list {}", path.display()))?;
        let file = entry.path();
        if file.extension().is_some_and(|e| e == "json") && entry.file_type()?.is_file() {
            files.push(file);
        }
    }
    files.sort();
    Ok((files, false))
}
