//! `herd immunity` (issue 13): Herd's own signature set — list it, and judge a file by its
//! SHA-256 (`verdict malicious` publishes its signature to every scanning terminal at once,
//! `verdict benign` removes it); `herd samples`: the sample store terminals send files to.

use clap::{Args, Subcommand, ValueEnum};
use herd_proto::api::VerdictDoc;

use super::connect::{ServerArgs, Session};
use super::output::{print_json, print_out};
use super::table::Table;
use crate::Outcome;

#[derive(Debug, Subcommand)]
pub enum ImmunityCommand {
    /// List Herd's own signature set: every file judged malicious, by whom or by which rule.
    #[command(after_long_help = "Examples:
  herd immunity list
  herd immunity list --json | jq '.[] | select(.source == \"rule:cross-vendor\")'")]
    List {
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Judge a file by its SHA-256: malicious publishes its signature in Herd's set at once
    /// (every scanning terminal, whatever its vendor, detects it within seconds) and makes it
    /// a threat of the catalog covered by Herd's set (`herd coverage` shows it); benign (a
    /// false positive) removes both the same way.
    #[command(after_long_help = "Examples:
  herd immunity verdict malicious 9f86d0…0a08 --size 4096 --threat worm-x
  herd immunity verdict malicious 9f86d0…0a08 --size 4096 --threat worm-x --danger critical --name 'Worm X'
  herd immunity verdict benign 9f86d0…0a08")]
    Verdict(VerdictArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Judgement {
    Malicious,
    Benign,
}

#[derive(Debug, Args)]
pub struct VerdictArgs {
    verdict: Judgement,
    /// The file's SHA-256 (64 lower-case hex digits).
    sha256: String,
    /// The file's size in bytes (needed for malicious).
    #[arg(long)]
    size: Option<u64>,
    /// The catalog threat the file is, if known (named in the signature).
    #[arg(long)]
    threat: Option<String>,
    /// The danger of the catalog threat a malicious verdict makes: low, medium, high
    /// (the default) or critical. A vendor's threat of the same id or file keeps its own.
    #[arg(long)]
    danger: Option<String>,
    /// The threat's name in the catalog (its id unless given).
    #[arg(long)]
    name: Option<String>,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

pub(super) fn run(command: ImmunityCommand) -> anyhow::Result<Outcome> {
    match command {
        ImmunityCommand::List { json, server } => {
            let session = Session::open(&server)?;
            let set = match session.client.herd_set() {
                Ok(set) => set,
                Err(err) => return session.failed("listing Herd's signature set", err),
            };
            if json {
                print_json(&set)?;
                return Ok(Outcome::Success);
            }
            let mut table = Table::new([
                "SHA256",
                "SIZE",
                "NAME",
                "SOURCE",
                "FIRST SEEN ON",
                "CREATED",
            ]);
            for s in &set {
                table.row([
                    s.sha256.clone(),
                    s.size.to_string(),
                    s.name.clone(),
                    s.source.clone(),
                    if s.first_terminal.is_empty() {
                        "-".to_owned()
                    } else {
                        format!("{} ({})", s.first_terminal, s.first_signature)
                    },
                    s.created_at.clone(),
                ]);
            }
            print_out(&table.render())?;
            Ok(Outcome::Success)
        }
        ImmunityCommand::Verdict(args) => {
            let session = Session::open(&args.server)?;
            let verdict = match args.verdict {
                Judgement::Malicious => "malicious",
                Judgement::Benign => "benign",
            };
            let doc = VerdictDoc {
                sha256: args.sha256.clone(),
                size: args.size,
                verdict: verdict.to_owned(),
                threat: args.threat,
                danger: args.danger,
                name: args.name,
            };
            let outcome = match session.client.verdict(&doc) {
                Ok(outcome) => outcome,
                Err(err) => return session.failed(&format!("judging {}", args.sha256), err),
            };
            if args.json {
                print_json(&outcome)?;
            } else {
                let what = match (args.verdict, outcome.changed) {
                    (Judgement::Malicious, true) => "published in Herd's set",
                    (Judgement::Malicious, false) => "already in Herd's set",
                    (Judgement::Benign, true) => "removed from Herd's set",
                    (Judgement::Benign, false) => "was not in Herd's set",
                };
                print_out(&format!(
                    "{}: {what}; the set has {} signature(s)\n",
                    args.sha256, outcome.signatures
                ))?;
            }
            Ok(Outcome::Success)
        }
    }
}

/// The sample store: files terminals sent (submitted by users, suspicious hits, files that
/// could not be quarantined), kept neutralised.
#[derive(Debug, Subcommand)]
pub enum SamplesCommand {
    /// List the samples, newest first, and whether Herd's set holds each.
    #[command(after_long_help = "Examples:
  herd samples list
  herd samples list --json")]
    List {
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Save a sample's bytes, still neutralised (XOR-ed with the keystream of its SHA-256:
    /// they cannot run or match a signature until restored by an analysis tool).
    #[command(after_long_help = "Examples:
  herd samples download 9f86d0…0a08 --out sample.neutralised")]
    Download {
        /// The sample's SHA-256.
        sha256: String,
        /// Where to write the neutralised bytes.
        #[arg(long, value_name = "FILE")]
        out: std::path::PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// The largest sample downloaded (the center's max_sample_bytes is at most 3 MiB).
const MAX_SAMPLE_DOWNLOAD: u64 = 3 << 20;

pub(super) fn samples(command: SamplesCommand) -> anyhow::Result<Outcome> {
    match command {
        SamplesCommand::List { json, server } => {
            let session = Session::open(&server)?;
            let list = match session.client.samples() {
                Ok(list) => list,
                Err(err) => return session.failed("listing samples", err),
            };
            if json {
                print_json(&list)?;
                return Ok(Outcome::Success);
            }
            let mut table = Table::new([
                "SHA256",
                "SIZE",
                "REASON",
                "FROM",
                "RECEIVED",
                "IN HERD SET",
                "PATH",
            ]);
            for s in &list {
                table.row([
                    s.sha256.clone(),
                    s.size.to_string(),
                    s.reason.clone(),
                    s.first_terminal.clone(),
                    s.received_at.clone(),
                    if s.in_herd_set { "yes" } else { "no" }.to_owned(),
                    s.path.clone(),
                ]);
            }
            print_out(&table.render())?;
            Ok(Outcome::Success)
        }
        SamplesCommand::Download {
            sha256,
            out,
            server,
        } => {
            let session = Session::open(&server)?;
            let bytes = match session.client.sample(&sha256, MAX_SAMPLE_DOWNLOAD) {
                Ok(bytes) => bytes,
                Err(err) => return session.failed(&format!("downloading sample {sha256}"), err),
            };
            herd_fs::write_atomic(&out, &bytes, 0o600)?;
            print_out(&format!(
                "wrote sample {sha256} ({} bytes, neutralised) to {}\n",
                bytes.len(),
                out.display()
            ))?;
            Ok(Outcome::Success)
        }
    }
}
