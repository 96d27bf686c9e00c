//! `herd alerts`: the alert deliveries the center made or still tries (`list`), the channels
//! and rules of its configuration (`channels`), and a test alert to one channel (`test`), the
//! way to check a webhook, an SMTP server or an SMS gateway before an outbreak does.

use clap::{Args, Subcommand};

use super::connect::{ServerArgs, Session};
use super::output::{print_json, print_out};
use super::table::Table;
use crate::Outcome;

/// Alerts: deliveries, channels and rules, and a test alert.
#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Deliveries, newest first: pending (next attempt, last error), delivered, or failed.
    #[command(after_long_help = "Examples:
  herd alerts list
  herd alerts list --limit 20 --json | jq '.deliveries[] | select(.state == \"failed\")'")]
    List(ListArgs),
    /// The channels and rules of the center's configuration (`[alerts]`).
    Channels {
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Send a test alert to one channel now; exit code 1 if the channel did not take it.
    #[command(after_long_help = "Examples:
  herd alerts test ops-webhook
  herd alerts test oncall-mail")]
    Test {
        /// The channel's name (`herd alerts channels` lists them).
        channel: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// At most this many (1 to 500).
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Only deliveries older than this id (the previous page's last).
    #[arg(long, value_name = "ID")]
    before: Option<u64>,
    /// Print the page as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

pub(super) fn run(command: AlertsCommand) -> anyhow::Result<Outcome> {
    match command {
        AlertsCommand::List(args) => list(args),
        AlertsCommand::Channels { json, server } => channels(&server, json),
        AlertsCommand::Test { channel, server } => test(&server, &channel),
    }
}

fn list(args: ListArgs) -> anyhow::Result<Outcome> {
    let session = Session::open(&args.server)?;
    let page = match session.client.alerts(args.before, args.limit) {
        Ok(page) => page,
        Err(err) => return session.failed("listing the alerts", err),
    };
    if args.json {
        print_json(&page)?;
        return Ok(Outcome::Success);
    }
    if page.deliveries.is_empty() {
        print_out("no alerts yet\n")?;
        return Ok(Outcome::Success);
    }
    let mut table = Table::new(["ID", "CREATED", "CHANNEL", "KIND", "STATE", "TRIES", "TEXT"]);
    for delivery in &page.deliveries {
        let state = match (&delivery.state[..], &delivery.last_error) {
            ("pending", Some(error)) => format!("pending ({error})"),
            ("failed", Some(error)) => format!("failed ({error})"),
            (state, _) => state.to_owned(),
        };
        table.row([
            delivery.id.to_string(),
            delivery.created_at.clone(),
            delivery.channel.clone(),
            delivery.kind.clone(),
            state,
            delivery.attempts.to_string(),
            delivery.text.clone(),
        ]);
    }
    print_out(&table.render())?;
    if let Some(before) = page.next_before {
        eprintln!("herd: older deliveries: herd alerts list --before {before}");
    }
    Ok(Outcome::Success)
}

fn channels(server: &ServerArgs, json: bool) -> anyhow::Result<Outcome> {
    let session = Session::open(server)?;
    let setup = match session.client.alert_setup() {
        Ok(setup) => setup,
        Err(err) => return session.failed("reading the alert setup", err),
    };
    if json {
        print_json(&setup)?;
        return Ok(Outcome::Success);
    }
    if setup.channels.is_empty() {
        print_out(
            "no alert channels: add [[alerts.channels]] and [[alerts.rules]] to the center's \
             configuration file (`herd config default` shows them)\n",
        )?;
        return Ok(Outcome::Success);
    }
    let mut channels = Table::new(["CHANNEL", "TYPE", "TARGET"]);
    for channel in &setup.channels {
        channels.row([
            channel.name.clone(),
            channel.kind.clone(),
            channel.target.clone(),
        ]);
    }
    let mut rules = Table::new(["RULE", "KINDS", "CHANNELS", "EVENTS"]);
    for rule in &setup.rules {
        rules.row([
            rule.name.clone(),
            rule.kinds.join(","),
            rule.channels.join(","),
            rule.events.join(","),
        ]);
    }
    print_out(&format!(
        "{}\n{}\nthrottle: {} alerts per rule one by one, then a summary and a digest every {} s\n",
        channels.render(),
        rules.render(),
        setup.burst,
        setup.window_secs
    ))?;
    Ok(Outcome::Success)
}

fn test(server: &ServerArgs, channel: &str) -> anyhow::Result<Outcome> {
    let session = Session::open(server)?;
    let result = match session.client.test_alert_channel(channel) {
        Ok(result) => result,
        Err(err) => return session.failed("sending a test alert", err),
    };
    if result.delivered {
        print_out(&format!("test alert delivered to {}\n", result.channel))?;
        Ok(Outcome::Success)
    } else {
        eprintln!(
            "herd: the test alert was not delivered to {}: {}",
            result.channel,
            result.error.as_deref().unwrap_or("no reason given")
        );
        Ok(Outcome::InvalidInput)
    }
}
