//! `herd token create` (API tokens for operators and vendors) and `herd enrol-token create`
//! (enrolment tokens for terminals, and re-enrolment tokens for one terminal): each prints
//! only the secret, so scripts can capture it. `herd token list` and `herd token revoke` list
//! and revoke both kinds by id (never showing a secret).

use clap::{Args, Subcommand};
use herd_proto::api::{NewApiToken, NewEnrolmentToken};

use super::connect::{ServerArgs, Session};
use super::output::{print_json, print_out};
use super::table::Table;
use crate::Outcome;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    Create(TokenCreateArgs),
    /// List every API and enrolment token: id, kind, label, expiry, uses left (no secrets).
    #[command(after_long_help = "Examples:
  herd token list
  herd token list --json | jq -r '.tokens[] | select(.expired) | .id'")]
    List {
        /// Print the tokens as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    Revoke(TokenRevokeArgs),
}

/// Revoke an API or enrolment token by the id `herd token list` shows; every center process
/// refuses it from now on.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  herd token list
  herd token revoke 3f2a9c41d07e")]
pub struct TokenRevokeArgs {
    /// The token's id (its first hex digits, at least 8).
    id: String,
    /// Revoke it even if it is the last valid operator token (nobody can then administer the
    /// center until it is restarted, which writes a new token to its data directory).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    server: ServerArgs,
}

/// Create an API token for an operator or a vendor; prints only the token.
///
/// The token is shown once (the center keeps only its hash): capture it. A vendor token may
/// publish and upload only for its vendor.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  herd token create --role vendor --vendor maker-a --label 'maker-a CI' > maker-a.token
  herd token create --role operator --label alice --ttl-days 30
  herd token create --role viewer --label 'help desk'
  herd token create --role analyst --label 'malware lab'")]
pub struct TokenCreateArgs {
    /// Who the token is for: an analyst judges samples (verdicts) and reads the console; a
    /// viewer signs in to the web console and reads, changing nothing.
    #[arg(long, value_parser = ["operator", "vendor", "analyst", "viewer"])]
    role: String,
    /// The vendor id (required for --role vendor).
    #[arg(long, value_name = "VENDOR", required_if_eq("role", "vendor"))]
    vendor: Option<String>,
    /// A label shown in logs and errors about the token.
    #[arg(long, value_name = "LABEL", default_value = "")]
    label: String,
    /// Days until the token expires [default: 365].
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u64).range(1..=3650))]
    ttl_days: Option<u64>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum EnrolTokenCommand {
    Create(EnrolTokenCreateArgs),
}

/// Create an enrolment token for terminals; prints only the token.
///
/// Give it to the terminals that should enrol (`herd-agent` trades it for its own client
/// certificate). It is shown once: capture it.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  herd enrol-token create --uses 50 --label 'shop floor' --ttl-days 2 > enrol.token")]
pub struct EnrolTokenCreateArgs {
    /// How many terminals may enrol with it.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    uses: u64,
    /// A label to recognise the token by.
    #[arg(long, value_name = "LABEL", default_value = "")]
    label: String,
    /// Days until the token expires [default: 7].
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u64).range(1..=3650))]
    ttl_days: Option<u64>,
    /// A re-enrolment token for this enrolled terminal (its certificate expired or its
    /// identity was lost): one use, and only that terminal may enrol with it, keeping its id,
    /// group and history (`herd-agent enrol --token TOKEN` on the terminal).
    #[arg(long, value_name = "TERMINAL", conflicts_with = "uses")]
    reenrol: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

pub(super) fn token_list(server: &ServerArgs, json: bool) -> anyhow::Result<Outcome> {
    let session = Session::open(server)?;
    let list = match session.client.tokens() {
        Ok(list) => list,
        Err(err) => return session.failed("listing the tokens", err),
    };
    if json {
        print_json(&list)?;
        return Ok(Outcome::Success);
    }
    let mut table = Table::new([
        "ID",
        "KIND",
        "FOR",
        "LABEL",
        "CREATED",
        "EXPIRES",
        "USES LEFT",
    ]);
    for token in &list.tokens {
        let bound = token
            .vendor
            .as_deref()
            .map(|vendor| format!("vendor {vendor}"))
            .or_else(|| {
                token
                    .reenrol_terminal
                    .as_deref()
                    .map(|terminal| format!("re-enrol {terminal}"))
            })
            .unwrap_or_else(|| "-".to_owned());
        table.row([
            token.id.clone(),
            token.kind.clone(),
            bound,
            token.label.clone(),
            token.created_at.clone(),
            if token.expired {
                format!("{} (expired)", token.expires_at)
            } else {
                token.expires_at.clone()
            },
            token
                .uses_left
                .map(|uses| uses.to_string())
                .unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    print_out(&table.render())?;
    Ok(Outcome::Success)
}

pub(super) fn token_revoke(args: TokenRevokeArgs) -> anyhow::Result<Outcome> {
    let session = Session::open(&args.server)?;
    match session.client.revoke_token(&args.id, args.force) {
        Ok(revoked) => {
            eprintln!(
                "herd: revoked {} token {} ({:?})",
                revoked.token.kind, revoked.token.id, revoked.token.label
            );
            Ok(Outcome::Success)
        }
        Err(err) => session.failed("revoking the token", err),
    }
}

pub(super) fn token_create(args: TokenCreateArgs) -> anyhow::Result<Outcome> {
    let session = Session::open(&args.server)?;
    let request = NewApiToken {
        role: args.role,
        vendor: args.vendor,
        label: args.label,
        ttl_secs: args.ttl_days.map(|days| days * 86_400),
    };
    match session.client.new_api_token(&request) {
        Ok(created) => {
            print_out(&format!("{}\n", created.token))?;
            eprintln!(
                "herd: the token expires at {}; it is shown only now",
                created.expires_at
            );
            Ok(Outcome::Success)
        }
        Err(err) => session.failed("creating the API token", err),
    }
}

pub(super) fn enrol_token_create(args: EnrolTokenCreateArgs) -> anyhow::Result<Outcome> {
    let session = Session::open(&args.server)?;
    let request = NewEnrolmentToken {
        label: args.label,
        uses: Some(args.uses),
        ttl_secs: args.ttl_days.map(|days| days * 86_400),
        reenrol_terminal: args.reenrol.clone(),
    };
    match session.client.new_enrolment_token(&request) {
        Ok(created) => {
            print_out(&format!("{}\n", created.token))?;
            if let Some(terminal) = &args.reenrol {
                eprintln!(
                    "herd: the token re-enrols terminal {terminal} once, until {}; it is shown only \
                     now. On the terminal: herd-agent enrol --state-dir DIR --token TOKEN",
                    created.expires_at
                );
                return Ok(Outcome::Success);
            }
            eprintln!(
                "herd: the enrolment token is good for {} terminal{} until {}; it is shown only now",
                args.uses,
                if args.uses == 1 { "" } else { "s" },
                created.expires_at
            );
            Ok(Outcome::Success)
        }
        Err(err) => session.failed("creating the enrolment token", err),
    }
}
