//! `herd threats` and `herd vendors` (what vendors may assert: owners and approvals) and
//! `herd blobs gc` (collect the package store now).

use clap::{Args, Subcommand};

use super::connect::{ServerArgs, Session};
use super::output::{print_json, print_out};
use super::table::Table;
use crate::Outcome;

/// The threats vendors declared: who owns each (only the owner's feed names and rates it)
/// and whether terminals are planned against it.
#[derive(Debug, Subcommand)]
pub enum ThreatsCommand {
    /// List every threat with its owner and status.
    #[command(after_long_help = "Examples:
  herd threats list
  herd threats list --json | jq '.threats[] | select(.vendor == \"maker-a\")'")]
    List(ListArgs),
    /// List the threats awaiting an operator (threat_approval = "operator").
    #[command(after_long_help = "Examples:
  herd threats pending
  herd threats pending --json")]
    Pending(ListArgs),
    /// Approve a threat: terminals are planned against it from now on.
    #[command(after_long_help = "Examples:
  herd threats approve worm-x")]
    Approve(IdArgs),
    /// Reject a threat: no terminal is planned against it, whatever feeds say.
    #[command(after_long_help = "Examples:
  herd threats reject worm-x")]
    Reject(IdArgs),
    /// Give a threat to another vendor, whose feed then names and rates it.
    #[command(after_long_help = "Examples:
  herd threats reassign virus-a maker-b")]
    Reassign {
        /// The threat id.
        id: String,
        /// The vendor that owns it from now on.
        vendor: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// The vendors that have published, and whether their feeds count.
#[derive(Debug, Subcommand)]
pub enum VendorsCommand {
    /// List every vendor with its status.
    #[command(after_long_help = "Examples:
  herd vendors list")]
    List(ListArgs),
    /// List the vendors awaiting an operator (vendor_approval = "operator").
    #[command(after_long_help = "Examples:
  herd vendors pending")]
    Pending(ListArgs),
    /// Approve a vendor: its feed counts from now on.
    #[command(after_long_help = "Examples:
  herd vendors approve maker-c")]
    Approve(IdArgs),
    /// Reject a vendor: its feed is kept but does not count.
    #[command(after_long_help = "Examples:
  herd vendors reject maker-c")]
    Reject(IdArgs),
    /// A vendor's own signing key: generate it, register it with the center.
    #[command(subcommand)]
    Key(super::keys::VendorKeyCommand),
}

/// The package store.
#[derive(Debug, Subcommand)]
pub enum BlobsCommand {
    /// Delete now the packages no current feed lists and abandoned uploads, once older than
    /// the center's blob_grace_secs (the center also does this every hour or so).
    #[command(after_long_help = "Examples:
  herd blobs gc
  herd blobs gc --json")]
    Gc {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print the list as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    id: String,
    #[command(flatten)]
    server: ServerArgs,
}

pub(super) fn threats(command: ThreatsCommand) -> anyhow::Result<Outcome> {
    let (args, status) = match command {
        ThreatsCommand::List(args) => (args, None),
        ThreatsCommand::Pending(args) => (args, Some("pending")),
        ThreatsCommand::Approve(args) => return decide(args, "threat", true),
        ThreatsCommand::Reject(args) => return decide(args, "threat", false),
        ThreatsCommand::Reassign { id, vendor, server } => {
            let session = Session::open(&server)?;
            return match session.client.reassign_threat(&id, &vendor) {
                Ok(()) => {
                    print_out(&format!("threat {id} now belongs to vendor {vendor}\n"))?;
                    Ok(Outcome::Success)
                }
                Err(err) => session.failed(&format!("reassigning threat {id}"), err),
            };
        }
    };
    let session = Session::open(&args.server)?;
    let list = match session.client.threats(status) {
        Ok(list) => list,
        Err(err) => return session.failed("listing threats", err),
    };
    if args.json {
        print_json(&list)?;
        return Ok(Outcome::Success);
    }
    let mut table = Table::new(["ID", "OWNER", "STATUS", "DANGER", "DISCOVERED", "NAME"]);
    for t in &list.threats {
        let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
        table.row([
            t.id.clone(),
            t.vendor.clone(),
            t.status.clone(),
            or_dash(&t.danger),
            or_dash(&t.discovered),
            or_dash(&t.name),
        ]);
    }
    print_out(&table.render())?;
    Ok(Outcome::Success)
}

pub(super) fn vendors(command: VendorsCommand) -> anyhow::Result<Outcome> {
    let (args, status) = match command {
        VendorsCommand::List(args) => (args, None),
        VendorsCommand::Pending(args) => (args, Some("pending")),
        VendorsCommand::Approve(args) => return decide(args, "vendor", true),
        VendorsCommand::Reject(args) => return decide(args, "vendor", false),
        VendorsCommand::Key(command) => return super::keys::vendor_key(command),
    };
    let session = Session::open(&args.server)?;
    let list = match session.client.vendors(status) {
        Ok(list) => list,
        Err(err) => return session.failed("listing vendors", err),
    };
    if args.json {
        print_json(&list)?;
        return Ok(Outcome::Success);
    }
    let mut table = Table::new(["ID", "STATUS", "FIRST PUBLISHED"]);
    for v in &list.vendors {
        table.row([v.id.clone(), v.status.clone(), v.first_published_at.clone()]);
    }
    print_out(&table.render())?;
    Ok(Outcome::Success)
}

/// Approves or rejects a threat or a vendor.
fn decide(args: IdArgs, kind: &str, approve: bool) -> anyhow::Result<Outcome> {
    let session = Session::open(&args.server)?;
    let id = &args.id;
    let result = match kind {
        "threat" => session.client.decide_threat(id, approve),
        _ => session.client.decide_vendor(id, approve),
    };
    let verb = if approve { "approved" } else { "rejected" };
    match result {
        Ok(()) => {
            print_out(&format!("{kind} {id} {verb}\n"))?;
            Ok(Outcome::Success)
        }
        Err(err) => session.failed(&format!("deciding on {kind} {id}"), err),
    }
}

pub(super) fn blobs(command: BlobsCommand) -> anyhow::Result<Outcome> {
    let BlobsCommand::Gc { json, server } = command;
    let session = Session::open(&server)?;
    let collected = match session.client.collect_blobs() {
        Ok(collected) => collected,
        Err(err) => return session.failed("collecting the package store", err),
    };
    if json {
        print_json(&collected)?;
    } else {
        print_out(&format!(
            "collected {} packages and {} abandoned uploads ({} bytes); {} bytes stored\n",
            collected.blobs_collected,
            collected.partial_uploads_removed,
            collected.bytes_collected,
            collected.bytes_stored
        ))?;
    }
    Ok(Outcome::Success)
}
