//! `herd messages`: send a message to every terminal's user, a group's or one terminal's, and
//! read the messages — all, one terminal's thread (with its user's answers), or one site's.

use clap::{ArgGroup, Args, Subcommand};
use herd_proto::messages::MessageToSend;

use super::connect::{ServerArgs, Session};
use super::output::{print_json, print_out};
use super::table::Table;
use crate::Outcome;

/// Messages between operators and device users.
#[derive(Debug, Subcommand)]
pub enum MessagesCommand {
    Send(SendArgs),
    /// Messages oldest first: all, one terminal's thread, or one site's.
    #[command(after_long_help = "Examples:
  herd messages list
  herd messages list --terminal pc-7
  herd messages list --site osaka --json")]
    List(ListArgs),
}

/// Send a message; agents show it at their next check-in.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("audience").required(true).args(["all", "group", "terminal"])))]
#[command(after_long_help = "Examples:
  herd messages send --all 'Maintenance tonight at 22:00: leave your PCs on'
  herd messages send --group sales 'Please restart to finish the update'
  herd messages send --terminal pc-7 'Your PC has an infected file: call the help desk'")]
pub struct SendArgs {
    /// To every terminal's user.
    #[arg(long)]
    all: bool,
    /// To the users of one group's terminals.
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// To one terminal's user.
    #[arg(long, value_name = "TERMINAL")]
    terminal: Option<String>,
    /// The message.
    text: String,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only messages after this id.
    #[arg(long, default_value_t = 0)]
    pub(super) after: u64,
    /// At most this many (1 to 500).
    #[arg(long, default_value_t = 100)]
    pub(super) limit: u32,
    /// Only the thread with this terminal.
    #[arg(long)]
    pub(super) terminal: Option<String>,
    /// Only this site's thread.
    #[arg(long)]
    pub(super) site: Option<String>,
    #[arg(long)]
    pub(super) json: bool,
    #[command(flatten)]
    pub(super) server: ServerArgs,
}

pub(super) fn run(command: MessagesCommand) -> anyhow::Result<Outcome> {
    match command {
        MessagesCommand::Send(args) => send(args),
        MessagesCommand::List(args) => list(args),
    }
}

fn send(args: SendArgs) -> anyhow::Result<Outcome> {
    let to = match (args.all, args.group, args.terminal) {
        (true, _, _) => "all".to_owned(),
        (_, Some(group), _) => format!("group:{group}"),
        (_, _, terminal) => format!("terminal:{}", terminal.unwrap_or_default()),
    };
    let session = Session::open(&args.server)?;
    let request = MessageToSend {
        to,
        text: args.text,
    };
    match session.client.send_message(&request) {
        Ok(message) => {
            print_out(&format!("message {} sent\n", message.id))?;
            Ok(Outcome::Success)
        }
        Err(err) => session.failed("sending the message", err),
    }
}

pub(super) fn list(args: ListArgs) -> anyhow::Result<Outcome> {
    let session = Session::open(&args.server)?;
    let list = match session.client.messages(
        args.after,
        args.limit,
        args.terminal.as_deref(),
        args.site.as_deref(),
    ) {
        Ok(list) => list,
        Err(err) => return session.failed("listing the messages", err),
    };
    if args.json {
        print_json(&list)?;
        return Ok(Outcome::Success);
    }
    if list.messages.is_empty() {
        print_out("no messages\n")?;
        return Ok(Outcome::Success);
    }
    let mut table = Table::new(["ID", "AT", "FROM", "TO", "SITE", "TEXT"]);
    for message in &list.messages {
        let to = match &message.target {
            Some(target) if message.audience != "center" => {
                format!("{} {target}", message.audience)
            }
            _ => message.audience.clone(),
        };
        table.row([
            message.id.to_string(),
            message.at.clone(),
            message.from.clone(),
            to,
            message.site.clone().unwrap_or_default(),
            message.text.clone(),
        ]);
    }
    print_out(&table.render())?;
    Ok(Outcome::Success)
}
