//! `herd rollouts`: releases rolling out in rings (SPEC §3.4) — each one's phase, ring, reach
//! and counts — and an operator's `pause`, `resume`, `promote` or `revert` of one.

use clap::Subcommand;
use herd_proto::api::{RolloutSummary, rollout_actions};

use super::connect::{ServerArgs, Session};
use super::output::{print_json, print_out};
use super::table::Table;
use crate::Outcome;

/// Releases rolling out in rings: list, show, and move them.
#[derive(Debug, Subcommand)]
pub enum RolloutsCommand {
    /// Every rollout, oldest first: phase, ring, reach and what it counted.
    #[command(after_long_help = "Examples:
  herd rollouts list
  herd rollouts list --json | jq '.[] | select(.phase == \"reverted\")'")]
    List {
        /// Print the rollouts as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// One release's rollout.
    Show {
        /// The release, as vendor/product/version.
        release: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Hold a rolling release at its current ring (still offered within it).
    Pause {
        release: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Let a paused or reverted release go on from its ring, counting afresh.
    Resume {
        release: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Move a release to its next ring now.
    Promote {
        release: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Halt a release, withdraw it and plan the terminals that took it back to the last good
    /// release.
    Revert {
        release: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub(super) fn run(command: RolloutsCommand) -> anyhow::Result<Outcome> {
    match command {
        RolloutsCommand::List { json, server } => list(&server, json),
        RolloutsCommand::Show {
            release,
            json,
            server,
        } => show(&server, &release, json),
        RolloutsCommand::Pause { release, server } => {
            act(&server, &release, rollout_actions::PAUSE)
        }
        RolloutsCommand::Resume { release, server } => {
            act(&server, &release, rollout_actions::RESUME)
        }
        RolloutsCommand::Promote { release, server } => {
            act(&server, &release, rollout_actions::PROMOTE)
        }
        RolloutsCommand::Revert { release, server } => {
            act(&server, &release, rollout_actions::REVERT)
        }
    }
}

fn list(server: &ServerArgs, json: bool) -> anyhow::Result<Outcome> {
    let session = Session::open(server)?;
    let rollouts = match session.client.rollouts() {
        Ok(rollouts) => rollouts,
        Err(err) => return session.failed("listing the rollouts", err),
    };
    if json {
        print_json(&rollouts)?;
        return Ok(Outcome::Success);
    }
    if rollouts.is_empty() {
        print_out("no rollouts yet: the next release a vendor publishes starts one\n")?;
        return Ok(Outcome::Success);
    }
    print_out(&table(&rollouts))?;
    Ok(Outcome::Success)
}

fn table(rollouts: &[RolloutSummary]) -> String {
    let mut table = Table::new([
        "RELEASE", "PHASE", "RING", "REACH", "OK", "FAILED", "FAULTS", "SINCE", "REASON",
    ]);
    for r in rollouts {
        table.row([
            // A program release rolls out as a replacement, to faulting terminals.
            if r.replacement {
                format!("{} (replacement)", r.release)
            } else {
                r.release.clone()
            },
            r.phase.clone(),
            r.ring.clone(),
            reach(r),
            r.succeeded.to_string(),
            r.failed.to_string(),
            r.faults.to_string(),
            r.ring_started_at.clone(),
            r.reason.clone().unwrap_or_default(),
        ]);
    }
    table.render()
}

/// A ring's reach: its share of the fleet, and the groups it reaches whatever their buckets.
fn reach(r: &RolloutSummary) -> String {
    let share = format!("{}.{:02} %", r.reach_bp / 100, r.reach_bp % 100);
    match (r.reach_bp, r.groups.as_slice()) {
        (_, []) => share,
        (0, groups) => format!("group {}", groups.join(", ")),
        (_, groups) => format!("{share} + group {}", groups.join(", ")),
    }
}

fn show(server: &ServerArgs, release: &str, json: bool) -> anyhow::Result<Outcome> {
    let session = Session::open(server)?;
    match session.client.rollout(release) {
        Ok(rollout) if json => {
            print_json(&rollout)?;
            Ok(Outcome::Success)
        }
        Ok(rollout) => {
            print_out(&table(std::slice::from_ref(&rollout)))?;
            Ok(Outcome::Success)
        }
        Err(err) => session.failed(&format!("reading the rollout of {release}"), err),
    }
}

fn act(server: &ServerArgs, release: &str, action: &str) -> anyhow::Result<Outcome> {
    let session = Session::open(server)?;
    match session.client.rollout_act(release, action) {
        Ok(rollout) => {
            print_out(&table(std::slice::from_ref(&rollout)))?;
            Ok(Outcome::Success)
        }
        Err(err) => session.failed(&format!("{action} of the rollout of {release}"), err),
    }
}
