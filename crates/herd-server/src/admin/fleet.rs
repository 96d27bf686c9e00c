//! The fleet: `herd terminals` (the list) and `herd terminal ID` (one terminal in words, its
//! plan as the terminal received it, its whole gap, or as JSON).

use clap::Args;
use herd_proto::api::{TerminalDetail, TerminalSummary};
use herd_proto::plan::Action;
use herd_proto::terminal::InstalledDoc;

use super::connect::{ServerArgs, Session};
use super::output::{print_json, print_out};
use super::plan::{describe_gap, describe_plan, describe_report};
use super::table::Table;
use crate::Outcome;

/// List the fleet: every terminal with what it runs and what its current plan does.
///
/// Columns: id, user, hardware kind/platform, group, installed product, the action of the
/// current plan (none, update, switch, exposed), how many required threats the installed
/// product leaves uncovered, and the last check-in. All pages are fetched.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  herd terminals
  herd terminals --exposed
  herd terminals --group shop-floor --action switch --json | jq -r '.[].id'
  herd terminals set-email 45a user-a@example.org
  herd terminals consents 45a")]
#[command(args_conflicts_with_subcommands = true)]
pub struct TerminalsArgs {
    #[command(subcommand)]
    command: Option<super::consent::ConsentCommand>,
    /// Only terminals of this group.
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// Only terminals whose current plan has this action.
    #[arg(long, value_name = "ACTION", value_parser = Action::NAMES)]
    action: Option<String>,
    /// Only exposed terminals (no product they may run covers every required threat).
    #[arg(long, conflicts_with = "action")]
    exposed: bool,
    /// Print the terminal summaries as a JSON array instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

/// Show one terminal: inventory, group, addresses, last report, and its current plan.
///
/// A plan lists at most 20 of the threats the terminal lacks now and after the plan, with
/// how many more there are and the whole gap by danger; --gap lists every one of them.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  herd terminal 45a
  herd terminal 45a --plan > 45a-plan.json
  herd terminal 45a --json | jq .addresses
  herd terminal 45a --gap
  herd terminal 45a --gap --json | jq -r '.uncovered_now[] | select(.danger == \"critical\") | .id'")]
pub struct TerminalArgs {
    /// The terminal id.
    id: String,
    /// Print only the current plan, exactly as the terminal received it (JSON).
    #[arg(long, conflicts_with = "json")]
    plan: bool,
    /// Print the whole gap: every threat uncovered now and after the plan, not just 20.
    ///
    /// Every required threat the installed product leaves uncovered now, and every one still
    /// uncovered once the plan is carried out, each with its danger and discovery date, most
    /// dangerous first; computed with the center's current catalog.
    #[arg(long, conflicts_with = "plan")]
    gap: bool,
    /// Print everything as JSON (with --gap, the gap).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

pub(super) fn terminals(args: TerminalsArgs) -> anyhow::Result<Outcome> {
    if let Some(command) = args.command {
        return super::consent::run(command);
    }
    let session = Session::open(&args.server)?;
    let action = if args.exposed {
        Some(Action::Exposed.as_str())
    } else {
        args.action.as_deref()
    };
    let list = match session.client.all_terminals(args.group.as_deref(), action) {
        Ok(list) => list,
        Err(err) => return session.failed("listing terminals", err),
    };
    if args.json {
        print_json(&list)?;
        return Ok(Outcome::Success);
    }
    if list.is_empty() {
        print_out("no terminals match\n")?;
        return Ok(Outcome::Success);
    }
    let mut table = Table::new([
        "ID",
        "USER",
        "KIND/PLATFORM",
        "GROUP",
        "INSTALLED",
        "ACTION",
        "UNCOVERED",
        "LAST CHECK-IN",
    ]);
    for t in &list {
        table.row([
            t.id.clone(),
            t.user.clone().unwrap_or_else(|| "-".to_owned()),
            format!("{}/{}", t.hardware.kind, t.hardware.platform),
            t.group.clone(),
            installed_short(t.installed.as_ref()),
            t.action.clone().unwrap_or_else(|| "-".to_owned()),
            t.uncovered.to_string(),
            t.last_checkin.clone().unwrap_or_else(|| "never".to_owned()),
        ]);
    }
    let count = list.len();
    print_out(&format!(
        "{}{count} terminal{}\n",
        table.render(),
        if count == 1 { "" } else { "s" }
    ))?;
    Ok(Outcome::Success)
}

pub(super) fn terminal(args: TerminalArgs) -> anyhow::Result<Outcome> {
    let session = Session::open(&args.server)?;
    if args.plan {
        return match session.client.terminal_plan(&args.id) {
            Ok(plan) => {
                print_out(&plan)?;
                if !plan.ends_with('\n') {
                    print_out("\n")?;
                }
                Ok(Outcome::Success)
            }
            Err(err) => session.failed(&format!("terminal {}", args.id), err),
        };
    }
    if args.gap {
        let gap = match session.client.terminal_gap(&args.id) {
            Ok(gap) => gap,
            Err(err) => return session.failed(&format!("the gap of terminal {}", args.id), err),
        };
        if args.json {
            print_json(&gap)?;
        } else {
            print_out(&describe_gap(&gap))?;
        }
        return Ok(Outcome::Success);
    }
    let detail = match session.client.terminal(&args.id) {
        Ok(detail) => detail,
        Err(err) => return session.failed(&format!("terminal {}", args.id), err),
    };
    if args.json {
        print_json(&detail)?;
    } else {
        print_out(&describe_terminal(&detail))?;
    }
    Ok(Outcome::Success)
}

pub(super) fn installed_short(installed: Option<&InstalledDoc>) -> String {
    match installed {
        Some(i) => format!("{} {} ({})", i.product, i.version, i.pattern),
        None => "-".to_owned(),
    }
}

/// The readable form of `herd terminal ID`.
fn describe_terminal(detail: &TerminalDetail) -> String {
    let t: &TerminalSummary = &detail.summary;
    let dash = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_owned());
    let mut out = format!("terminal {}\n", t.id);
    let hardware = match &t.hardware.model {
        Some(model) => format!("{} / {} ({model})", t.hardware.kind, t.hardware.platform),
        None => format!("{} / {}", t.hardware.kind, t.hardware.platform),
    };
    let installed = match &t.installed {
        Some(i) => format!(
            "{} {} (definitions {}, seq {}, {})",
            i.product, i.version, i.pattern, i.seq, i.format
        ),
        None => "nothing".to_owned(),
    };
    let last_checkin = match (&t.last_checkin, &t.last_address) {
        (Some(at), Some(address)) => format!("{at} from {address}"),
        (Some(at), None) => at.clone(),
        (None, _) => "never".to_owned(),
    };
    let mut fields = Table::bare();
    fields.row(["  user:".to_owned(), dash(&t.user)]);
    fields.row(["  hardware:".to_owned(), hardware]);
    fields.row([
        "  time zone:".to_owned(),
        t.tz.clone().unwrap_or_else(|| "UTC".to_owned()),
    ]);
    fields.row(["  group:".to_owned(), t.group.clone()]);
    fields.row(["  installed:".to_owned(), installed]);
    fields.row(["  enrolled:".to_owned(), t.enrolled_at.clone()]);
    fields.row(["  last check-in:".to_owned(), last_checkin]);
    fields.row(["  uncovered:".to_owned(), t.uncovered.to_string()]);
    out.push_str(&fields.render());

    if detail.addresses.is_empty() {
        out.push_str("addresses: none seen\n");
    } else {
        out.push_str("addresses (most recent first):\n");
        let mut table = Table::new(["  ADDRESS", "FIRST SEEN", "LAST SEEN", "CHECK-INS"]);
        for a in &detail.addresses {
            table.row([
                format!("  {}", a.address),
                a.first_seen.clone(),
                a.last_seen.clone(),
                a.checkins.to_string(),
            ]);
        }
        out.push_str(&table.render());
    }
    // Absent from centers older than the network map, and for agents that never reported.
    if !detail.interfaces.is_empty() {
        out.push_str("interfaces (held now first, then most recent first):\n");
        let mut table = Table::new([
            "  INTERFACE",
            "MAC",
            "ADDRESS",
            "FIRST SEEN",
            "LAST SEEN",
            "NOW",
        ]);
        for i in &detail.interfaces {
            table.row([
                format!("  {}", i.name),
                i.mac.clone().unwrap_or_else(|| "-".to_owned()),
                i.address.clone().unwrap_or_else(|| "-".to_owned()),
                i.first_seen.clone(),
                i.last_seen.clone(),
                if i.current { "yes" } else { "no" }.to_owned(),
            ]);
        }
        out.push_str(&table.render());
    }

    match &detail.plan {
        Some(plan) => out.push_str(&describe_plan(
            plan,
            detail.plan_id.as_deref(),
            detail.planned_at.as_deref(),
        )),
        None => out.push_str("plan: none yet (the terminal has not checked in)\n"),
    }
    match &detail.last_report {
        Some(report) => out.push_str(&describe_report(report)),
        None => out.push_str("last report: none\n"),
    }
    out
}
