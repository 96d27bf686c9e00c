//! `herd sites`: the site servers of a center — each one's state (`ok`, `late`: it has not
//! pulled for a while and the center pushes to it, `unreachable`), last contact, the queue it
//! reported (depth, oldest), its cache, its terminals and the last queue seq applied —,
//! `herd sites token create`, the one-site enrolment token a new site starts with, and
//! `herd sites renew`, a site's certificate rotated at once.

use clap::{Args, Subcommand};

use super::connect::{ServerArgs, Session};
use super::output::{print_json, print_out};
use super::table::Table;
use crate::Outcome;

/// Site servers: list them, or make a token for a new one.
#[derive(Debug, Subcommand)]
pub enum SitesCommand {
    /// Every site: state, last contact, queue, cache, terminals.
    #[command(after_long_help = "Examples:
  herd sites list
  herd sites list --json | jq '.[] | select(.state != \"ok\")'")]
    List {
        /// Print the sites as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Site enrolment tokens.
    #[command(subcommand)]
    Token(SiteTokenCommand),
    /// Ask a site to renew its certificate now (a new key) at its next pull.
    ///
    /// Sites renew by themselves when a third of their certificate's year is left; this
    /// rotates one at once, for instance after its host was exposed. The old certificate works
    /// until the site has renewed (within its poll interval, 30 s by default); then only the
    /// new one acts as the site.
    #[command(after_long_help = "Examples:
  herd sites renew osaka
  herd sites list   # the site renewed once its last contact moves")]
    Renew {
        /// The site's id.
        #[arg(value_name = "SITE")]
        site: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// One site's message thread, oldest first: the operators' messages to its terminals and
    /// their users' answers, relayed through the site (the center–site record).
    #[command(after_long_help = "Examples:
  herd sites messages osaka
  herd sites messages osaka --after 120 --json")]
    Messages {
        /// The site id.
        site: String,
        /// Only messages after this id.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many (1 to 500).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum SiteTokenCommand {
    Create(SiteTokenCreateArgs),
}

/// Create a site enrolment token (one site, 7 days); prints only the token.
///
/// Start the site with it: `herd serve --role site --upstream URL --upstream-ca ca.pem
/// --site-id ID --site-token TOKEN`. It is shown once: capture it.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  herd sites token create --label 'Osaka office' > osaka.token")]
pub struct SiteTokenCreateArgs {
    /// A label to recognise the token by.
    #[arg(long, value_name = "LABEL", default_value = "")]
    label: String,
    #[command(flatten)]
    server: ServerArgs,
}

pub(super) fn run(command: SitesCommand) -> anyhow::Result<Outcome> {
    match command {
        SitesCommand::List { json, server } => list(&server, json),
        SitesCommand::Token(SiteTokenCommand::Create(args)) => token_create(args),
        SitesCommand::Renew { site, server } => renew(&server, &site),
        SitesCommand::Messages {
            site,
            after,
            limit,
            json,
            server,
        } => super::messages::list(super::messages::ListArgs {
            after,
            limit,
            terminal: None,
            site: Some(site),
            json,
            server,
        }),
    }
}

fn renew(server: &ServerArgs, site: &str) -> anyhow::Result<Outcome> {
    let session = Session::open(server)?;
    match session.client.request_site_renewal(site) {
        Ok(()) => {
            print_out(&format!(
                "site {site} renews its certificate at its next pull\n"
            ))?;
            Ok(Outcome::Success)
        }
        Err(err) => session.failed(&format!("asking site {site} to renew"), err),
    }
}

fn list(server: &ServerArgs, json: bool) -> anyhow::Result<Outcome> {
    let session = Session::open(server)?;
    let sites = match session.client.sites() {
        Ok(sites) => sites,
        Err(err) => return session.failed("listing the sites", err),
    };
    if json {
        print_json(&sites)?;
        return Ok(Outcome::Success);
    }
    if sites.is_empty() {
        print_out(
            "no site servers yet; `herd sites token create` makes a token for the first one\n",
        )?;
        return Ok(Outcome::Success);
    }
    let mut table = Table::new([
        "SITE",
        "STATE",
        "LAST CONTACT",
        "TERMINALS",
        "QUEUE",
        "OLDEST",
        "CACHE",
        "APPLIED",
        "URL",
    ]);
    for site in &sites {
        let status = site.status.as_ref();
        table.row([
            site.id.clone(),
            site.state.clone(),
            site.last_contact.clone().unwrap_or_else(|| "never".into()),
            site.terminals.to_string(),
            status.map_or("-".into(), |s| s.queue_depth.to_string()),
            status.map_or("-".into(), |s| format!("{} s", s.queue_oldest_secs)),
            status.map_or("-".into(), |s| {
                format!(
                    "{} / {} MiB",
                    s.cache_bytes >> 20,
                    s.cache_limit_bytes >> 20
                )
            }),
            site.relay_applied.to_string(),
            site.url.clone(),
        ]);
    }
    print_out(&table.render())?;
    Ok(Outcome::Success)
}

fn token_create(args: SiteTokenCreateArgs) -> anyhow::Result<Outcome> {
    let session = Session::open(&args.server)?;
    match session.client.new_site_token(&args.label) {
        Ok(created) => {
            print_out(&format!("{}\n", created.token))?;
            eprintln!(
                "herd: the site enrolment token enrols one site until {}; it is shown only now. \
                 On the site: herd serve --role site --upstream URL --upstream-ca ca.pem \
                 --site-id ID --site-token TOKEN",
                created.expires_at
            );
            Ok(Outcome::Success)
        }
        Err(err) => session.failed("creating a site enrolment token", err),
    }
}
