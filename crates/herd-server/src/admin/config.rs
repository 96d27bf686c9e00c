//! The fleet's configuration: `herd groups list|put|delete` (groups and their policies) and
//! `herd rules show|set` (the placement rules that put enrolling terminals into groups).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use herd_proto::api::{GroupDoc, PlacementRules};
use herd_proto::terminal::PolicyDoc;

use super::connect::{ServerArgs, Session};
use super::output::{print_json, print_out};
use super::table::Table;
use crate::Outcome;

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// List groups with their policies and how many terminals each holds.
    List {
        /// Print the groups as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    Put(GroupPutArgs),
    /// Delete a group no terminal and no placement rule uses.
    Delete {
        /// The group id.
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Create a group or replace its policy; its terminals plan with it from their next check-in.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  herd groups put shop-floor --policy-apply latest-any-vendor --min-danger medium
  herd groups put kiosks --policy-apply latest-same-vendor --consent ask --window 01:00-05:00
  herd groups put contract-x --policy-apply latest-any-vendor --vendors maker-a,maker-c")]
pub struct GroupPutArgs {
    /// The group id.
    id: String,
    /// Which product changes the planner may make.
    #[arg(long, value_name = "APPLY", value_parser = ["latest-any-vendor", "latest-same-vendor", "pinned"])]
    policy_apply: String,
    /// Ignore threats below this danger [default: low].
    #[arg(long, value_name = "DANGER", value_parser = ["low", "medium", "high", "critical"])]
    min_danger: Option<String>,
    /// Ask the user before changing software, or act at once [default: auto].
    #[arg(long, value_parser = ["auto", "ask"])]
    consent: Option<String>,
    /// Maintenance window `HH:MM-HH:MM` in each terminal's time zone [default: any time].
    #[arg(long, value_name = "HH:MM-HH:MM")]
    window: Option<String>,
    /// Vendors whose products terminals may switch to, comma-separated [default: any vendor].
    /// Updates of what a terminal runs are never restricted.
    #[arg(long, value_name = "VENDOR,...", value_delimiter = ',')]
    vendors: Option<Vec<String>>,
    /// What the group is for.
    #[arg(long, value_name = "TEXT", default_value = "")]
    description: String,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Print the placement rules as JSON (the format `herd rules set` reads).
    Show {
        #[command(flatten)]
        server: ServerArgs,
    },
    Set(RulesSetArgs),
}

/// Replace every placement rule at once with the rules in a file.
///
/// Rules are tried in order; the first whose conditions all hold places an enrolling terminal
/// in its group (terminals no rule places land in `unknown`). Conditions: `kind`, `platform`,
/// `user`, and `address` (a CIDR range matched against the address it enrols from).
#[derive(Debug, Args)]
#[command(after_long_help = r#"Example FILE.json:
  {"rules": [
    {"group": "phones-tokyo", "kind": "phone", "address": "10.1.0.0/16"},
    {"group": "pcs", "platform": "pc"}
  ]}

Examples:
  herd rules show > rules.json
  herd rules set rules.json"#)]
pub struct RulesSetArgs {
    /// The rules file.
    #[arg(value_name = "FILE.json")]
    file: PathBuf,
    #[command(flatten)]
    server: ServerArgs,
}

pub(super) fn groups_list(server: &ServerArgs, json: bool) -> anyhow::Result<Outcome> {
    let session = Session::open(server)?;
    let groups = match session.client.groups() {
        Ok(list) => list.groups,
        Err(err) => return session.failed("listing groups", err),
    };
    if json {
        print_json(&groups)?;
        return Ok(Outcome::Success);
    }
    let mut table = Table::new([
        "ID",
        "TERMINALS",
        "APPLY",
        "MIN DANGER",
        "CONSENT",
        "WINDOW",
        "VENDORS",
        "DESCRIPTION",
    ]);
    for g in &groups {
        table.row([
            g.id.clone(),
            g.terminals.to_string(),
            g.policy.apply.clone(),
            g.policy
                .min_danger
                .clone()
                .unwrap_or_else(|| "low".to_owned()),
            g.policy
                .consent
                .clone()
                .unwrap_or_else(|| "auto".to_owned()),
            g.policy
                .window
                .clone()
                .unwrap_or_else(|| "any time".to_owned()),
            vendors_text(g.policy.vendors.as_deref()),
            g.description.clone(),
        ]);
    }
    print_out(&table.render())?;
    Ok(Outcome::Success)
}

/// A group's vendor allow-list as the listing shows it.
fn vendors_text(vendors: Option<&[String]>) -> String {
    match vendors {
        None => "any".to_owned(),
        Some([]) => "none".to_owned(),
        Some(list) => list.join(","),
    }
}

pub(super) fn group_put(args: GroupPutArgs) -> anyhow::Result<Outcome> {
    let session = Session::open(&args.server)?;
    let group = GroupDoc {
        id: args.id.clone(),
        description: args.description,
        policy: PolicyDoc {
            apply: args.policy_apply,
            min_danger: args.min_danger,
            consent: args.consent,
            window: args.window,
            tz: None,
            vendors: args.vendors,
        },
        terminals: 0,
    };
    match session.client.put_group(&group) {
        Ok(saved) => {
            let p = &saved.policy;
            print_out(&format!(
                "group {} saved: {}, min danger {}, consent {}, window {}, vendors {}\n",
                saved.id,
                p.apply,
                p.min_danger.as_deref().unwrap_or("low"),
                p.consent.as_deref().unwrap_or("auto"),
                p.window.as_deref().unwrap_or("any time"),
                vendors_text(p.vendors.as_deref()),
            ))?;
            Ok(Outcome::Success)
        }
        Err(err) => session.failed(&format!("saving group {}", args.id), err),
    }
}

pub(super) fn group_delete(server: &ServerArgs, id: &str) -> anyhow::Result<Outcome> {
    let session = Session::open(server)?;
    match session.client.delete_group(id) {
        Ok(()) => {
            print_out(&format!("group {id} deleted\n"))?;
            Ok(Outcome::Success)
        }
        Err(err) => session.failed(&format!("deleting group {id}"), err),
    }
}

pub(super) fn rules_show(server: &ServerArgs) -> anyhow::Result<Outcome> {
    let session = Session::open(server)?;
    match session.client.rules() {
        Ok(rules) => {
            print_json(&rules)?;
            Ok(Outcome::Success)
        }
        Err(err) => session.failed("reading the placement rules", err),
    }
}

pub(super) fn rules_set(args: RulesSetArgs) -> anyhow::Result<Outcome> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let mut deserializer = serde_json::Deserializer::from_str(&text);
    let rules: PlacementRules = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(rules) => rules,
        Err(err) => {
            let path = err.path().to_string();
            let path = if path == "." {
                "$".to_owned()
            } else {
                format!("$.{path}")
            };
            eprintln!(
                "herd: {}: {path}: {} (see `herd rules set --help` for the format)",
                args.file.display(),
                err.inner()
            );
            return Ok(Outcome::InvalidInput);
        }
    };
    let session = Session::open(&args.server)?;
    match session.client.put_rules(&rules) {
        Ok(saved) => {
            let n = saved.rules.len();
            print_out(&format!(
                "{n} placement rule{} set; they apply to terminals enrolling from now on\n",
                if n == 1 { "" } else { "s" }
            ))?;
            Ok(Outcome::Success)
        }
        Err(err) => session.failed(
            &format!("setting the rules of {}", args.file.display()),
            err,
        ),
    }
}
