//! `herd feed-sources`: vendor feed URLs the center fetches itself — register one (as the
//! vendor or an operator), list them with their last poll, poll one now, forget one.

use clap::Subcommand;
use herd_proto::feed_sources::FeedSourceDoc;

use super::connect::{ServerArgs, Session};
use super::output::{print_json, print_out};
use super::table::Table;
use crate::Outcome;

/// Vendor feed URLs the center polls (conditional requests; a changed feed is applied like a
/// pushed one).
#[derive(Debug, Subcommand)]
pub enum FeedSourcesCommand {
    /// Every feed source and what its last poll did.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Register (or replace) a vendor's feed URL; the center polls it at once.
    ///
    /// The center fetches feeds only from public addresses: a loopback, private or link-local
    /// host is refused unless the center's `feed_allowed_hosts` lists it.
    #[command(after_long_help = "Examples:
  herd feed-sources set maker-a https://updates.maker-a.example/herd/feed.json
  herd feed-sources set maker-b https://maker-b.example/feed.json --interval-secs 300")]
    Set {
        vendor: String,
        url: String,
        /// Seconds between polls (60 to 604800) [default 900].
        #[arg(long)]
        interval_secs: Option<u64>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Poll a vendor's feed URL now; exit code 1 unless it was applied or not modified.
    Poll {
        vendor: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Forget a vendor's feed URL (its published feed stays).
    Delete {
        vendor: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub(super) fn run(command: FeedSourcesCommand) -> anyhow::Result<Outcome> {
    match command {
        FeedSourcesCommand::List { json, server } => {
            let session = Session::open(&server)?;
            let list = match session.client.feed_sources() {
                Ok(list) => list,
                Err(err) => return session.failed("listing the feed sources", err),
            };
            if json {
                print_json(&list)?;
                return Ok(Outcome::Success);
            }
            let mut table = Table::new(["VENDOR", "EVERY", "LAST POLL", "STATUS", "URL"]);
            for source in &list.sources {
                table.row([
                    source.vendor.clone(),
                    format!("{} s", source.interval_secs),
                    source
                        .last_polled_at
                        .clone()
                        .unwrap_or_else(|| "never".into()),
                    source.last_status.clone().unwrap_or_default(),
                    source.url.clone(),
                ]);
            }
            print_out(&table.render())?;
            Ok(Outcome::Success)
        }
        FeedSourcesCommand::Set {
            vendor,
            url,
            interval_secs,
            server,
        } => {
            let session = Session::open(&server)?;
            match session
                .client
                .put_feed_source(&vendor, &FeedSourceDoc { url, interval_secs })
            {
                Ok(source) => {
                    print_out(&format!(
                        "{} polls {} every {} s\n",
                        source.vendor, source.url, source.interval_secs
                    ))?;
                    Ok(Outcome::Success)
                }
                Err(err) => session.failed("registering the feed source", err),
            }
        }
        FeedSourcesCommand::Poll { vendor, server } => {
            let session = Session::open(&server)?;
            match session.client.poll_feed_source(&vendor) {
                Ok(result) => {
                    print_out(&format!("{}: {}\n", result.vendor, result.status))?;
                    if result.applied || result.status == "not modified" {
                        Ok(Outcome::Success)
                    } else {
                        Ok(Outcome::InvalidInput)
                    }
                }
                Err(err) => session.failed("polling the feed source", err),
            }
        }
        FeedSourcesCommand::Delete { vendor, server } => {
            let session = Session::open(&server)?;
            match session.client.delete_feed_source(&vendor) {
                Ok(()) => Ok(Outcome::Success),
                Err(err) => session.failed("forgetting the feed source", err),
            }
        }
    }
}
