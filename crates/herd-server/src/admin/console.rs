//! `herd console link`: a one-time link that signs a browser in to the web console
//! (`/console/`) as the caller's operator token, so nobody pastes a token into a browser.

use clap::{Args, Subcommand};
use herd_proto::api::NewConsoleLink;

use super::connect::{ServerArgs, Session};
use super::output::print_out;
use crate::Outcome;

/// The web console at `/console/` on the center (and on every site server).
#[derive(Debug, Subcommand)]
pub enum ConsoleCommand {
    Link(ConsoleLinkArgs),
}

/// Print a one-time link that signs a browser in to the web console; prints only the link.
///
/// Open it once, before it expires, on the machine whose browser should be signed in: the
/// session acts as the token this command was given (an operator's), and ends when that token
/// is revoked. Opening the link only asks; the sign-in happens when its button is pressed, so
/// a link preview cannot spend it.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  herd console link
  herd console link --label \"alice's laptop\" --ttl-mins 30")]
pub struct ConsoleLinkArgs {
    /// Shown in the console as who is signed in [default: the token's label].
    #[arg(long, value_name = "LABEL", default_value = "")]
    label: String,
    /// Minutes until the link expires (1 to 1440).
    #[arg(long, value_name = "MINUTES", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=1440))]
    ttl_mins: u64,
    #[command(flatten)]
    server: ServerArgs,
}

pub(super) fn run(command: ConsoleCommand) -> anyhow::Result<Outcome> {
    match command {
        ConsoleCommand::Link(args) => link(args),
    }
}

fn link(args: ConsoleLinkArgs) -> anyhow::Result<Outcome> {
    let session = Session::open(&args.server)?;
    let request = NewConsoleLink {
        label: args.label,
        ttl_secs: Some(args.ttl_mins * 60),
    };
    match session.client.new_console_link(&request) {
        Ok(link) => {
            print_out(&format!("{}{}\n", session.client.server(), link.path))?;
            eprintln!(
                "herd: open it once before {}; it signs a browser in as this token",
                link.expires_at
            );
            Ok(Outcome::Success)
        }
        Err(err) => session.failed("making the sign-in link", err),
    }
}
