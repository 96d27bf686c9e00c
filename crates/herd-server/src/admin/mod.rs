//! Administrative commands over API v1 (`herd publish`, `upload`, `terminals`, `terminal`,
//! `coverage`, `token`, `enrol-token`, `groups`, `rules`, `threats`, `vendors`, `blobs`): each one call or a few through
//! herd-client, printed as a readable table or as JSON for scripts.
//!
//! Exit codes follow `main`: 0 done, 1 the center refused the input or the credentials (its
//! error code and every problem are printed), 2 usage, local I/O, or the center unreachable.
//!
//! This file is the command list and its dispatch; each command lives with its kind:
//! `vendor.rs` (publish, upload), `fleet.rs` (terminals, terminal) with `plan.rs` (a plan and
//! its report in words), `catalog.rs` (coverage), `tokens.rs`, `config.rs` (groups, rules),
//! `registry.rs` (threats, vendors, blobs), `sites.rs` (site servers), `console.rs` (console links), `trust.rs` (the signed repository's status),
//! `registry.rs` (threats, vendors, blobs), `sites.rs` (site servers), `faults.rs` (faults,
//! fault rules, replacements), `trust.rs` (the signed repository's status),
//! `registry.rs` (threats, vendors, blobs), `sites.rs` (site servers), `alerts.rs` (alerts), `feed_sources.rs` (feed URLs the center polls), `messages.rs` (messages to users), `trust.rs` (the signed repository's status),
//! `ca.rs` (the CA: offline root, intermediates, KEKs), `keys.rs` (signed distribution's root
//! keys, a vendor's signing key) with `vendor_role.rs` (the role a vendor signs itself on
//! `herd publish --key`).
//! What they share: `connect.rs` (finding the center and the credentials, and what a failed
//! call prints), `output.rs` (stdout and JSON) and `table.rs` (the one table renderer).

mod alerts;
mod ca;
mod catalog;
mod config;
mod connect;
mod consent;
mod console;
mod faults;
mod feed_sources;
mod fleet;
mod immunity;
mod keys;
mod messages;
mod output;
mod plan;
mod registry;
mod rollouts;
mod signatures;
mod sites;
mod table;
mod tokens;
mod trust;
mod vendor;
mod vendor_role;

use clap::Subcommand;

use crate::Outcome;
use alerts::AlertsCommand;
use ca::CaCommand;
use catalog::CoverageArgs;
use config::{GroupsCommand, RulesCommand};
use console::ConsoleCommand;
use feed_sources::FeedSourcesCommand;
use fleet::{TerminalArgs, TerminalsArgs};
use keys::KeysCommand;
use messages::MessagesCommand;
use registry::{BlobsCommand, ThreatsCommand, VendorsCommand};
use rollouts::RolloutsCommand;
use sites::SitesCommand;
use tokens::{EnrolTokenCommand, TokenCommand};
use trust::TrustCommand;
use vendor::{PublishArgs, UploadArgs};

/// Administrative commands; each talks to a running center over its API.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    Publish(PublishArgs),
    Upload(UploadArgs),
    Terminals(TerminalsArgs),
    Terminal(TerminalArgs),
    Coverage(CoverageArgs),
    /// Create, list and revoke API tokens for operators and vendors (and list and revoke
    /// enrolment tokens).
    #[command(subcommand, visible_alias = "tokens")]
    Token(TokenCommand),
    /// Create enrolment tokens for terminals, or a re-enrolment token for one terminal.
    #[command(subcommand, name = "enrol-token")]
    EnrolToken(EnrolTokenCommand),
    /// List, create or change, and delete groups and their policies.
    #[command(subcommand)]
    Groups(GroupsCommand),
    /// Show or replace the placement rules that put enrolling terminals into groups.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// The center's CA: key-encryption keys, an offline root, intermediates to install.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Threats vendors declared: owners, and approval when the center requires it.
    #[command(subcommand)]
    Threats(ThreatsCommand),
    /// Vendors that have published, and approval when the center requires it; a vendor's own
    /// signing key (`herd vendor key`).
    #[command(subcommand, visible_alias = "vendor")]
    Vendors(VendorsCommand),
    /// Signed distribution's root keys: move the center's root offline, rotate and renew it
    ///
    /// At its first start the center makes its own 1-of-1 root key (in <data-dir>/tuf-root-keys/,
    /// with a warning): terminals can verify from day one, but whoever holds the center holds the
    /// root. Moving the root offline:
    ///
    ///   1. offline: `herd keys init --out DIR` (3 keys, 2 needed, by default);
    ///      carry DIR/root-keys.pub.json (public keys only) to an operator's machine;
    ///   2. online:  `herd keys propose-root --new-keys root-keys.pub.json --out next.json`;
    ///   3. offline: `herd keys sign-root next.json --keys DIR` (each key holder in turn);
    ///   4. online:  `herd keys install-root next.json` (the center co-signs with its own
    ///      root key, so every terminal accepts the chain; then delete that key,
    ///      <data-dir>/tuf-root-keys/, which no longer signs anything).
    ///
    /// With the keys on the operator's machine, `herd keys init --out DIR --install` does 1-4
    /// at once. Later, `herd keys rotate-root --keys DIR` renews the root (it expires after a
    /// year), rotates root or online keys, and pins vendors' keys; with the keys on separate
    /// machines, the same changes go through propose-root, sign-root and install-root.
    #[command(subcommand, verbatim_doc_comment)]
    Keys(KeysCommand),
    /// The package store: collect what no current feed lists.
    #[command(subcommand)]
    Blobs(BlobsCommand),
    /// The signed repository terminals verify packages with (TUF): its status.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Site servers (`herd serve --role site`): their state, queues and caches, and tokens
    /// for new ones.
    #[command(subcommand, visible_alias = "site")]
    Sites(SitesCommand),
    /// The web console (/console/): a one-time sign-in link.
    #[command(subcommand)]
    Console(ConsoleCommand),
    /// Releases rolling out in rings: list, show, pause, resume, promote, revert.
    #[command(subcommand, visible_alias = "rollout")]
    Rollouts(RolloutsCommand),
    /// Faults of supervised programs, bucketed by signature, with the center's decisions.
    #[command(subcommand)]
    Faults(faults::FaultsCommand),
    /// The fault database: rules naming a fault's cause and remedy.
    #[command(subcommand, name = "fault-rules")]
    FaultRules(faults::FaultRulesCommand),
    /// The replacement table: approved alternatives of a failing program.
    #[command(subcommand)]
    Replacements(faults::ReplacementsCommand),
    /// Herd immunity: Herd's own signature set, and verdicts on files by SHA-256.
    #[command(subcommand)]
    Immunity(immunity::ImmunityCommand),
    /// The sample store: files terminals sent for the analysts, kept neutralised.
    #[command(subcommand)]
    Samples(immunity::SamplesCommand),
    /// Analysts' body signatures (.ndb, .ldb, YARA) in Herd's own set: add, list, remove.
    #[command(subcommand, visible_alias = "signature")]
    Signatures(signatures::SignaturesCommand),
    /// Alerts: what was sent to which channel (webhook, e-mail, SMS), the channels and rules
    /// configured, and a test alert.
    #[command(subcommand, visible_alias = "alert")]
    Alerts(AlertsCommand),
    /// Vendor feed URLs the center fetches itself: register, list, poll now, forget.
    #[command(subcommand, name = "feed-sources", visible_alias = "feed-source")]
    FeedSources(FeedSourcesCommand),
    /// Messages between operators and device users: send to all, a group or a terminal; list.
    #[command(subcommand, visible_alias = "message")]
    Messages(MessagesCommand),
}

pub fn run(command: AdminCommand) -> anyhow::Result<Outcome> {
    match command {
        AdminCommand::Publish(args) => vendor::publish(args),
        AdminCommand::Upload(args) => vendor::upload(args),
        AdminCommand::Terminals(args) => fleet::terminals(args),
        AdminCommand::Terminal(args) => fleet::terminal(args),
        AdminCommand::Coverage(args) => catalog::coverage(args),
        AdminCommand::Token(TokenCommand::Create(args)) => tokens::token_create(args),
        AdminCommand::Token(TokenCommand::List { json, server }) => {
            tokens::token_list(&server, json)
        }
        AdminCommand::Token(TokenCommand::Revoke(args)) => tokens::token_revoke(args),
        AdminCommand::EnrolToken(EnrolTokenCommand::Create(args)) => {
            tokens::enrol_token_create(args)
        }
        AdminCommand::Groups(GroupsCommand::List { json, server }) => {
            config::groups_list(&server, json)
        }
        AdminCommand::Groups(GroupsCommand::Put(args)) => config::group_put(args),
        AdminCommand::Groups(GroupsCommand::Delete { id, server }) => {
            config::group_delete(&server, &id)
        }
        AdminCommand::Rules(RulesCommand::Show { server }) => config::rules_show(&server),
        AdminCommand::Rules(RulesCommand::Set(args)) => config::rules_set(args),
        AdminCommand::Ca(command) => ca::run(command),
        AdminCommand::Threats(command) => registry::threats(command),
        AdminCommand::Vendors(command) => registry::vendors(command),
        AdminCommand::Blobs(command) => registry::blobs(command),
        AdminCommand::Trust(command) => trust::run(command),
        AdminCommand::Keys(command) => keys::run(command),
        AdminCommand::Console(command) => console::run(command),
        AdminCommand::Sites(command) => sites::run(command),
        AdminCommand::Rollouts(command) => rollouts::run(command),
        AdminCommand::Faults(command) => faults::faults(command),
        AdminCommand::FaultRules(command) => faults::fault_rules(command),
        AdminCommand::Replacements(command) => faults::replacements(command),
        AdminCommand::Immunity(command) => immunity::run(command),
        AdminCommand::Samples(command) => immunity::samples(command),
        AdminCommand::Signatures(command) => signatures::run(command),
        AdminCommand::Alerts(command) => alerts::run(command),
        AdminCommand::FeedSources(command) => feed_sources::run(command),
        AdminCommand::Messages(command) => messages::run(command),
    }
}
