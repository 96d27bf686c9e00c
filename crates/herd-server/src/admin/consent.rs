//! `herd terminals set-email|consents`: consent by e-mail, the operator's side — the address a
//! terminal's user is asked at, and the questions mailed with their answers.

use clap::{ArgGroup, Args, Subcommand};

use super::connect::{ServerArgs, Session};
use super::output::{print_json, print_out};
use super::table::Table;
use crate::Outcome;

#[derive(Debug, Subcommand)]
pub enum ConsentCommand {
    SetEmail(SetEmailArgs),
    Consents(ConsentsArgs),
}

/// Set the address a terminal's user is asked for consent at.
///
/// A plan that needs the user's consent (policy `consent: ask`) is then also mailed to this
/// address, with an accept and a decline link (through the `[alerts] consent_channel`); the
/// first answer, by e-mail or on the terminal, counts.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("address").required(true).args(["email", "clear"])))]
#[command(after_long_help = "Examples:
  herd terminals set-email 45a user-a@example.org
  herd terminals set-email 45a --clear")]
pub struct SetEmailArgs {
    /// The terminal id.
    terminal: String,
    /// The user's e-mail address.
    email: Option<String>,
    /// Mail this terminal's user no more consent notices.
    #[arg(long)]
    clear: bool,
    #[command(flatten)]
    server: ServerArgs,
}

/// The consent questions mailed for a terminal, newest first, with their answers.
#[derive(Debug, Args)]
pub struct ConsentsArgs {
    /// The terminal id.
    terminal: String,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

pub(super) fn run(command: ConsentCommand) -> anyhow::Result<Outcome> {
    match command {
        ConsentCommand::SetEmail(args) => {
            let session = Session::open(&args.server)?;
            let email = if args.clear {
                None
            } else {
                args.email.as_deref()
            };
            match session.client.set_terminal_email(&args.terminal, email) {
                Ok(()) => {
                    print_out(&match email {
                        Some(email) => format!(
                            "terminal {}: consent notices go to {email}\n",
                            args.terminal
                        ),
                        None => format!(
                            "terminal {}: no more consent notices by e-mail\n",
                            args.terminal
                        ),
                    })?;
                    Ok(Outcome::Success)
                }
                Err(err) => session.failed(
                    &format!("setting the e-mail address of terminal {}", args.terminal),
                    err,
                ),
            }
        }
        ConsentCommand::Consents(args) => {
            let session = Session::open(&args.server)?;
            let list = match session.client.terminal_consents(&args.terminal) {
                Ok(list) => list,
                Err(err) => {
                    return session.failed(
                        &format!("listing the consent requests of terminal {}", args.terminal),
                        err,
                    );
                }
            };
            if args.json {
                print_json(&list)?;
                return Ok(Outcome::Success);
            }
            if list.requests.is_empty() {
                print_out("no consent requests were mailed for this terminal\n")?;
                return Ok(Outcome::Success);
            }
            let mut table = Table::new(["ID", "CHANGE", "TO", "REQUESTED", "ANSWER", "BY"]);
            for r in &list.requests {
                table.row([
                    r.id.to_string(),
                    r.change.clone(),
                    r.email.clone(),
                    r.requested_at.clone(),
                    match (&r.decision, &r.decided_at) {
                        (Some(d), Some(at)) => format!("{} at {at}", d.as_str()),
                        _ => format!("none (links until {})", r.expires_at),
                    },
                    r.by.clone().unwrap_or_default(),
                ]);
            }
            print_out(&table.render())?;
            Ok(Outcome::Success)
        }
    }
}
