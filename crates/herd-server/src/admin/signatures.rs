//! `herd signatures` (issue 13): analysts' body signatures in Herd's own set — add an `.ndb`,
//! `.ldb` or YARA file (every line checked by the center with the scan engine's parser, every
//! bad line named, nothing added on any error), list them, remove one by name. Each change is
//! signed and reaches every scanning terminal at once, like a verdict.

use std::path::PathBuf;

use clap::Subcommand;
use herd_proto::api::BodySignaturesDoc;

use super::connect::{ServerArgs, Session};
use super::output::{print_json, print_out};
use super::table::Table;
use crate::Outcome;

/// The largest signature file read (the center's request limit is about as large).
const MAX_FILE_BYTES: u64 = 8 << 20;

#[derive(Debug, Subcommand)]
pub enum SignaturesCommand {
    /// Add the body signatures of a file to Herd's own set: an `.ndb` or `.ldb` file (one
    /// signature per line, each named `Herd.Immunity.…`) or a YARA file (`.yar`, `.yara`; listed
    /// and removed under the file's name without its extension). Every line is checked with
    /// the scan engine's parser; any bad line refuses the file, naming each bad line.
    #[command(after_long_help = "Examples:
  herd signatures add worm-x.ndb
  herd signatures add worm-x.ldb droppers.yar")]
    Add {
        /// The signature files (the extension says the format).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List the body signatures of Herd's own set.
    #[command(after_long_help = "Examples:
  herd signatures list
  herd signatures list --json | jq -r '.[].name'")]
    List {
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Remove a body signature (or a YARA file's rules) from Herd's own set by name.
    #[command(after_long_help = "Examples:
  herd signatures remove Herd.Immunity.WormX.Loader")]
    Remove {
        /// The signature's name, or the YARA file's.
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// The document of one signature file: its format from the extension, a YARA file's name from
/// its stem.
fn document(file: &std::path::Path) -> anyhow::Result<BodySignaturesDoc> {
    let extension = file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let format = match extension.as_str() {
        "ndb" => "ndb",
        "ldb" => "ldb",
        "yar" | "yara" => "yar",
        _ => anyhow::bail!(
            "{}: not a body signature file (.ndb, .ldb, .yar or .yara)",
            file.display()
        ),
    };
    let size = std::fs::metadata(file)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
        .len();
    if size > MAX_FILE_BYTES {
        anyhow::bail!(
            "{}: {size} bytes; add at most {MAX_FILE_BYTES} bytes of signatures at a time",
            file.display()
        );
    }
    let text =
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let name = (format == "yar").then(|| {
        file.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    Ok(BodySignaturesDoc {
        format: format.to_owned(),
        text,
        name,
    })
}

pub(super) fn run(command: SignaturesCommand) -> anyhow::Result<Outcome> {
    match command {
        SignaturesCommand::Add { files, server } => {
            // Every file is read and typed before anything is sent.
            let documents = files
                .iter()
                .map(|file| document(file))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let session = Session::open(&server)?;
            for (file, doc) in files.iter().zip(&documents) {
                let outcome = match session.client.add_body_signatures(doc) {
                    Ok(outcome) => outcome,
                    Err(err) => {
                        return session.failed(&format!("adding {}", file.display()), err);
                    }
                };
                print_out(&format!(
                    "{}: added {} to Herd's set ({}); the set has {} body signature(s)\n",
                    file.display(),
                    outcome.added.len(),
                    outcome.added.join(", "),
                    outcome.body_signatures
                ))?;
            }
            Ok(Outcome::Success)
        }
        SignaturesCommand::List { json, server } => {
            let session = Session::open(&server)?;
            let list = match session.client.body_signatures() {
                Ok(list) => list,
                Err(err) => return session.failed("listing body signatures", err),
            };
            if json {
                print_json(&list)?;
                return Ok(Outcome::Success);
            }
            let mut table = Table::new(["NAME", "FORMAT", "ADDED BY", "ADDED", "SIGNATURE"]);
            for s in &list {
                let text = s.text.lines().next().unwrap_or_default();
                table.row([
                    s.name.clone(),
                    s.format.clone(),
                    s.added_by.clone(),
                    s.added_at.clone(),
                    text.chars().take(80).collect(),
                ]);
            }
            print_out(&table.render())?;
            Ok(Outcome::Success)
        }
        SignaturesCommand::Remove { name, server } => {
            let session = Session::open(&server)?;
            if let Err(err) = session.client.remove_body_signature(&name) {
                return session.failed(&format!("removing {name}"), err);
            }
            print_out(&format!("{name}: removed from Herd's set\n"))?;
            Ok(Outcome::Success)
        }
    }
}
