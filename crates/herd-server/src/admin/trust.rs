//! `herd trust status`: the center's signed repository (SPEC §3.4) as an operator checks it
//! before and after a key ceremony — the root (version, expiry, who signs it and whether the
//! center still holds a root key online), every role's version and expiry, what each vendor's
//! role is signed by, and the online keys.

use clap::Subcommand;

use super::connect::{ServerArgs, Session};
use super::output::{print_json, print_out};
use super::table::Table;
use crate::Outcome;

/// The center's signed repository (TUF).
#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// The root, every role's version and expiry, delegations and online keys.
    #[command(after_long_help = "Examples:
  herd trust status
  herd trust status --json | jq '.delegations[] | select(.signed_by == \"center\")'")]
    Status {
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub(super) fn run(command: TrustCommand) -> anyhow::Result<Outcome> {
    let TrustCommand::Status { json, server } = command;
    let session = Session::open(&server)?;
    let status = match session.client.trust_status() {
        Ok(status) => status,
        Err(err) => return session.failed("reading the signed repository's status", err),
    };
    if json {
        print_json(&status)?;
        return Ok(Outcome::Success);
    }
    let short = |id: &str| id.chars().take(16).collect::<String>();
    let mut out = format!(
        "root version {}, expires {}\n",
        status.root.version, status.root.expires
    );
    if status.center_root_keyids.is_empty() {
        out.push_str("root keys: offline (the center holds none)\n");
    } else {
        out.push_str(&format!(
            "root keys: the center holds {} online ({}); move them offline with `herd keys init --install`\n",
            status.center_root_keyids.len(),
            status.center_root_keyids.iter().map(|id| short(id)).collect::<Vec<_>>().join(", ")
        ));
    }
    out.push('\n');
    let mut roles = Table::new([
        "ROLE",
        "VERSION",
        "EXPIRES",
        "KEYS",
        "THRESHOLD",
        "SIGNED BY",
    ]);
    for keys in &status.root.roles {
        let served = status.roles.iter().find(|r| r.role == keys.role);
        roles.row([
            keys.role.clone(),
            served.map_or_else(
                || status.root.version.to_string(),
                |r| r.version.to_string(),
            ),
            served.map_or_else(|| status.root.expires.clone(), |r| r.expires.clone()),
            keys.keyids
                .iter()
                .map(|id| short(id))
                .collect::<Vec<_>>()
                .join(" "),
            keys.threshold.to_string(),
            if keys.role == "root" {
                "root keys"
            } else {
                "center (online)"
            }
            .to_owned(),
        ]);
    }
    for delegation in &status.delegations {
        let served = status.roles.iter().find(|r| r.role == delegation.role);
        roles.row([
            delegation.role.clone(),
            served.map_or_else(|| "-".to_owned(), |r| r.version.to_string()),
            served.map_or_else(|| "-".to_owned(), |r| r.expires.clone()),
            delegation
                .keyids
                .iter()
                .map(|id| short(id))
                .collect::<Vec<_>>()
                .join(" "),
            delegation.threshold.to_string(),
            delegation.signed_by.clone(),
        ]);
    }
    out.push_str(&roles.render());
    out.push('\n');
    let mut keys = Table::new(["ONLINE KEY", "ROLE", "STATE"]);
    for key in &status.online_keys {
        keys.row([
            short(&key.keyid),
            key.role.clone(),
            key.state.clone().unwrap_or_default(),
        ]);
    }
    out.push_str(&keys.render());
    print_out(&out)?;
    Ok(Outcome::Success)
}
