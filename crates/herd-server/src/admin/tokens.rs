//! `herd token create` (API tokens for operators and vendors) and `herd enrol-token create`
//! (enrolment tokens for terminals): each prints only the secret, so scripts can capture it.

use clap::{Args, Subcommand};
use herd_proto::api::{NewApiToken, NewEnrolmentToken};

use super::connect::{ServerArgs, Session};
use super::output::print_out;
use crate::Outcome;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    Create(TokenCreateArgs),
}

/// Create an API token for an operator or a vendor; prints only the token.
///
/// The token is shown once (the center keeps only its hash): capture it. A vendor token may
/// publish and upload only for its vendor.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  herd token create --role vendor --vendor maker-a --label 'maker-a CI' > maker-a.token
  herd token create --role operator --label alice --ttl-days 30")]
pub struct TokenCreateArgs {
    /// Who the token is for.
    #[arg(long, value_parser = ["operator", "vendor"])]
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
    #[command(flatten)]
    server: ServerArgs,
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
    };
    match session.client.new_enrolment_token(&request) {
        Ok(created) => {
            print_out(&format!("{}\n", created.token))?;
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
