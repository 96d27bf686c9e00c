//! Administrative commands over API v1 (`herd publish`, `upload`, `terminals`, `terminal`,
//! `coverage`, `token`, `enrol-token`, `groups`, `rules`): each one call or a few through
//! herd-client, printed as a readable table or as JSON for scripts.
//!
//! Exit codes follow `main`: 0 done, 1 the center refused the input or the credentials (its
//! error code and every problem are printed), 2 usage, local I/O, or the center unreachable.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};
use herd_client::{Client, ClientError};
use herd_proto::api::{
    CoverageMatrix, GroupDoc, NewApiToken, NewEnrolmentToken, PlacementRules, PlanReport,
    TerminalDetail, TerminalSummary,
};
use herd_proto::plan::{PlanDoc, SeverityCounts, Step};
use herd_proto::terminal::{InstalledDoc, PolicyDoc};

use crate::Outcome;

const DEFAULT_SERVER: &str = "https://127.0.0.1:8443";
const DEFAULT_CA: &str = "herd-data/ca.pem";
const DEFAULT_TOKEN_FILE: &str = "herd-data/operator.token";

/// Administrative commands; each talks to a running center over its API.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    Publish(PublishArgs),
    Upload(UploadArgs),
    Terminals(TerminalsArgs),
    Terminal(TerminalArgs),
    Coverage(CoverageArgs),
    /// Create API tokens for operators and vendors.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Create enrolment tokens for terminals.
    #[command(subcommand, name = "enrol-token")]
    EnrolToken(EnrolTokenCommand),
    /// List, create or change, and delete groups and their policies.
    #[command(subcommand)]
    Groups(GroupsCommand),
    /// Show or replace the placement rules that put enrolling terminals into groups.
    #[command(subcommand)]
    Rules(RulesCommand),
}

/// Where the center is and how to authenticate to it; every flag has an environment variable.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The center's URL [env: HERD_SERVER] [default: https://127.0.0.1:8443].
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// The center's CA certificate: the only one its server certificate is trusted from
    /// [env: HERD_CA] [default: herd-data/ca.pem, which `herd serve` writes].
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// API token. Prefer HERD_TOKEN or --token-file: other users can see command lines
    /// [env: HERD_TOKEN].
    #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
    token: Option<String>,
    /// File holding the API token [env: HERD_TOKEN_FILE] [default: herd-data/operator.token,
    /// the operator token `herd serve` creates at its first start].
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

/// Publish a vendor's catalog feed (`herd.catalog/v1`) to the center.
///
/// The feed replaces the vendor's previous one. It must describe only this vendor and its own
/// products; threats may be shared with other vendors' feeds. The center validates the feed
/// alone and merged with every other vendor's, and applies it completely or not at all.
/// Prints the catalog revision it produced, or that it was unchanged; a refused feed prints
/// every problem with its JSON path and exits 1.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  herd publish maker-a.json --vendor maker-a --token-file maker-a.token
  HERD_TOKEN=$(cat maker-b.token) herd publish maker-b.json")]
pub struct PublishArgs {
    /// The feed file.
    #[arg(value_name = "FEED.json")]
    feed: PathBuf,
    /// The vendor id the feed is for [default: the feed's only vendor].
    #[arg(long, value_name = "VENDOR")]
    vendor: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

/// Upload package files to the center, which stores them by SHA-256.
///
/// Each file is hashed, then streamed; the center checks the digest and size before storing
/// it. Prints each package's SHA-256 and size, as the feed's `packages` entries need them.
/// Uploading a package the center already holds is harmless.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  herd upload dist/vaccine-b-7.0-phone.tar.gz dist/vaccine-b-7.0-pc.tar.gz
  herd upload --token-file maker-b.token dist/*.tar.gz")]
pub struct UploadArgs {
    /// The package files.
    #[arg(value_name = "PACKAGE", required = true)]
    packages: Vec<PathBuf>,
    #[command(flatten)]
    server: ServerArgs,
}

/// List the fleet: every terminal with what it runs and what its current plan does.
///
/// Columns: id, user, hardware kind/platform, group, installed product, the action of the
/// current plan (none, update, switch, exposed), how many required threats the installed
/// product leaves uncovered, and the last check-in. All pages are fetched.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  herd terminals
  herd terminals --exposed
  herd terminals --group shop-floor --action switch --json | jq -r '.[].id'")]
pub struct TerminalsArgs {
    /// Only terminals of this group.
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// Only terminals whose current plan has this action.
    #[arg(long, value_name = "ACTION", value_parser = herd_proto::plan::Action::NAMES)]
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
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  herd terminal 45a
  herd terminal 45a --plan > 45a-plan.json
  herd terminal 45a --json | jq .addresses")]
pub struct TerminalArgs {
    /// The terminal id.
    id: String,
    /// Print only the current plan, exactly as the terminal received it (JSON).
    #[arg(long, conflicts_with = "json")]
    plan: bool,
    /// Print everything as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

/// Show the coverage matrix: which product covers which threat, since when.
///
/// Rows are threats (most dangerous first), columns are products. A cell reads `since SEQ`
/// when the product's definitions release SEQ covers the threat, `exp. DATE` when the vendor
/// expects to cover it by then, and `-` when it does not cover it.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  herd coverage
  herd coverage --json | jq '.threats[] | select(all(.cells[]; .covered | not)) | .threat'")]
pub struct CoverageArgs {
    /// Print the matrix as JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

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

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// List groups with their policies and how many terminals each holds.
    List {
        /// Print the groups as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    Put(GroupPutArgs),
    /// Delete a group no terminal and no placement rule uses.
    Delete {
        /// The group id.
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Create a group or replace its policy; its terminals plan with it from their next check-in.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  herd groups put shop-floor --policy-apply latest-any-vendor --min-danger medium
  herd groups put kiosks --policy-apply latest-same-vendor --consent ask --window 01:00-05:00")]
pub struct GroupPutArgs {
    /// The group id.
    id: String,
    /// Which product changes the planner may make.
    #[arg(long, value_name = "APPLY", value_parser = ["latest-any-vendor", "latest-same-vendor", "pinned"])]
    policy_apply: String,
    /// Ignore threats below this danger [default: low].
    #[arg(long, value_name = "DANGER", value_parser = ["low", "medium", "high", "critical"])]
    min_danger: Option<String>,
    /// Ask the user before changing software, or act at once [default: auto].
    #[arg(long, value_parser = ["auto", "ask"])]
    consent: Option<String>,
    /// Maintenance window `HH:MM-HH:MM` in each terminal's time zone [default: any time].
    #[arg(long, value_name = "HH:MM-HH:MM")]
    window: Option<String>,
    /// What the group is for.
    #[arg(long, value_name = "TEXT", default_value = "")]
    description: String,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Print the placement rules as JSON (the format `herd rules set` reads).
    Show {
        #[command(flatten)]
        server: ServerArgs,
    },
    Set(RulesSetArgs),
}

/// Replace every placement rule at once with the rules in a file.
///
/// Rules are tried in order; the first whose conditions all hold places an enrolling terminal
/// in its group (terminals no rule places land in `unknown`). Conditions: `kind`, `platform`,
/// `user`, and `address` (a CIDR range matched against the address it enrols from).
#[derive(Debug, Args)]
#[command(after_long_help = r#"Example FILE.json:
  {"rules": [
    {"group": "phones-tokyo", "kind": "phone", "address": "10.1.0.0/16"},
    {"group": "pcs", "platform": "pc"}
  ]}

Examples:
  herd rules show > rules.json
  herd rules set rules.json"#)]
pub struct RulesSetArgs {
    /// The rules file.
    #[arg(value_name = "FILE.json")]
    file: PathBuf,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn run(command: AdminCommand) -> anyhow::Result<Outcome> {
    match command {
        AdminCommand::Publish(args) => publish(args),
        AdminCommand::Upload(args) => upload(args),
        AdminCommand::Terminals(args) => terminals(args),
        AdminCommand::Terminal(args) => terminal(args),
        AdminCommand::Coverage(args) => coverage(args),
        AdminCommand::Token(TokenCommand::Create(args)) => token_create(args),
        AdminCommand::EnrolToken(EnrolTokenCommand::Create(args)) => enrol_token_create(args),
        AdminCommand::Groups(GroupsCommand::List { json, server }) => groups_list(&server, json),
        AdminCommand::Groups(GroupsCommand::Put(args)) => group_put(args),
        AdminCommand::Groups(GroupsCommand::Delete { id, server }) => group_delete(&server, &id),
        AdminCommand::Rules(RulesCommand::Show { server }) => rules_show(&server),
        AdminCommand::Rules(RulesCommand::Set(args)) => rules_set(args),
    }
}

// ---------------------------------------------------------------------------------------------
// Connecting.

/// A client ready to call the center, and what to tell the user when a call fails.
struct Session {
    client: Client,
    ca: PathBuf,
    /// Where the token came from, for error hints.
    token_source: String,
}

impl Session {
    fn open(args: &ServerArgs) -> anyhow::Result<Session> {
        let server = args
            .server
            .clone()
            .or_else(|| env_nonempty("HERD_SERVER"))
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
        let ca = args
            .ca
            .clone()
            .or_else(|| env_nonempty("HERD_CA").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CA));
        let ca_pem = std::fs::read_to_string(&ca).with_context(|| {
            format!(
                "cannot read the center's CA certificate {} (`herd serve` writes it to <data-dir>/ca.pem; pass --ca FILE or set HERD_CA)",
                ca.display()
            )
        })?;
        let (token, token_source) = resolve_token(args)?;
        let client = Client::new(&server, &ca_pem, None)
            .map_err(|err| anyhow!("{err} (the CA certificate was read from {})", ca.display()))?
            .with_token(&token);
        Ok(Session {
            client,
            ca,
            token_source,
        })
    }

    /// Turns a failed call into the outcome: refusals are printed and exit 1, anything else
    /// is returned as an error (exit 2) with a hint at the likely cause.
    fn failed(&self, what: &str, err: ClientError) -> anyhow::Result<Outcome> {
        if err.is_refusal() {
            eprintln!("herd: {what}: {err}");
            if matches!(err.code(), Some("unauthenticated" | "token_expired")) {
                eprintln!("herd: the API token came from {}", self.token_source);
            }
            return Ok(Outcome::InvalidInput);
        }
        let hint = match &err {
            ClientError::Certificate { .. } => {
                format!(
                    "\n  is {} the CA of the center at {}? pass --ca FILE or set HERD_CA",
                    self.ca.display(),
                    self.client.server()
                )
            }
            ClientError::Unreachable { .. } => {
                "\n  is `herd serve` running there? pass --server URL or set HERD_SERVER".to_owned()
            }
            _ => String::new(),
        };
        Err(anyhow!("{what}: {err}{hint}"))
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The token and a description of where it came from: `--token`, then `--token-file`, then
/// HERD_TOKEN, then HERD_TOKEN_FILE, then the operator token file of a local center.
fn resolve_token(args: &ServerArgs) -> anyhow::Result<(String, String)> {
    if let Some(token) = &args.token {
        return Ok((token.trim().to_owned(), "--token".to_owned()));
    }
    let file = match &args.token_file {
        Some(file) => file.clone(),
        None => {
            if let Some(token) = env_nonempty("HERD_TOKEN") {
                return Ok((token.trim().to_owned(), "HERD_TOKEN".to_owned()));
            }
            env_nonempty("HERD_TOKEN_FILE")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_TOKEN_FILE))
        }
    };
    let text = std::fs::read_to_string(&file).with_context(|| {
        format!(
            "no API token: cannot read {} (pass --token-file FILE, or set HERD_TOKEN or HERD_TOKEN_FILE; `herd serve` writes an operator token to <data-dir>/operator.token)",
            file.display()
        )
    })?;
    let token = text.trim();
    if token.is_empty() {
        anyhow::bail!("no API token: {} is empty", file.display());
    }
    Ok((token.to_owned(), format!("the file {}", file.display())))
}

// ---------------------------------------------------------------------------------------------
// Vendors.

fn publish(args: PublishArgs) -> anyhow::Result<Outcome> {
    let feed = std::fs::read(&args.feed)
        .with_context(|| format!("cannot read the feed {}", args.feed.display()))?;
    let vendor = match args.vendor {
        Some(vendor) => vendor,
        None => match feed_vendor(&feed) {
            Ok(vendor) => vendor,
            Err(why) => {
                eprintln!(
                    "herd: {}: {why}; name the vendor with --vendor",
                    args.feed.display()
                );
                return Ok(Outcome::InvalidInput);
            }
        },
    };
    let session = Session::open(&args.server)?;
    let published = match session.client.publish_feed(&vendor, &feed) {
        Ok(published) => published,
        Err(err) => {
            return session.failed(&format!("publishing {}", args.feed.display()), err);
        }
    };
    let mut text = if published.changed {
        format!(
            "published the feed of {}: catalog revision {} (feed sha256 {})\n",
            published.vendor, published.revision, published.sha256
        )
    } else {
        format!(
            "the feed of {} is unchanged: catalog revision {}\n",
            published.vendor, published.revision
        )
    };
    if !published.missing_packages.is_empty() {
        text.push_str(&format!(
            "the center does not hold {} of the packages the feed lists yet; upload them with `herd upload`:\n",
            published.missing_packages.len()
        ));
        for sha256 in &published.missing_packages {
            text.push_str(&format!("  {sha256}\n"));
        }
    }
    print_out(&text)?;
    Ok(Outcome::Success)
}

/// The vendor a feed describes, when it describes exactly one.
fn feed_vendor(feed: &[u8]) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_slice(feed).map_err(|err| format!("not JSON: {err}"))?;
    let ids: Vec<&str> = value
        .get("vendors")
        .and_then(|v| v.as_array())
        .map(|vendors| {
            vendors
                .iter()
                .filter_map(|v| v.get("id").and_then(|id| id.as_str()))
                .collect()
        })
        .unwrap_or_default();
    match ids.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => Err("the feed lists no vendor".to_owned()),
        many => Err(format!(
            "the feed lists {} vendors ({})",
            many.len(),
            many.join(", ")
        )),
    }
}

fn upload(args: UploadArgs) -> anyhow::Result<Outcome> {
    let session = Session::open(&args.server)?;
    let mut outcome = Outcome::Success;
    let mut unreadable = 0;
    for path in &args.packages {
        match session.client.upload_package(path) {
            Ok(info) => {
                let note = if info.created {
                    ""
                } else {
                    "  (already stored)"
                };
                print_out(&format!(
                    "{}  {:>12}  {}{note}\n",
                    info.sha256,
                    info.size,
                    path.display()
                ))?;
            }
            // A file that cannot be read does not stop the others from being uploaded.
            Err(err @ ClientError::LocalIo { .. }) => {
                eprintln!("herd: {err}");
                unreadable += 1;
            }
            Err(err) if err.is_refusal() => {
                session.failed(&format!("uploading {}", path.display()), err)?;
                outcome = Outcome::InvalidInput;
            }
            // Unreachable or failing: the next files would fail the same way.
            Err(err) => return session.failed(&format!("uploading {}", path.display()), err),
        }
    }
    if unreadable > 0 {
        anyhow::bail!(
            "{unreadable} of {} package files could not be uploaded",
            args.packages.len()
        );
    }
    Ok(outcome)
}

// ---------------------------------------------------------------------------------------------
// The fleet.

fn terminals(args: TerminalsArgs) -> anyhow::Result<Outcome> {
    let session = Session::open(&args.server)?;
    let action = if args.exposed {
        Some(herd_proto::plan::Action::Exposed.as_str())
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

fn terminal(args: TerminalArgs) -> anyhow::Result<Outcome> {
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

fn installed_short(installed: Option<&InstalledDoc>) -> String {
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

fn describe_plan(plan: &PlanDoc, plan_id: Option<&str>, planned_at: Option<&str>) -> String {
    let release = |r: &Option<herd_proto::plan::ReleaseRef>| match r {
        Some(r) => format!("{} {} (seq {})", r.product, r.version, r.seq),
        None => "nothing".to_owned(),
    };
    let list = |items: &[String]| {
        if items.is_empty() {
            "-".to_owned()
        } else {
            items.join(", ")
        }
    };
    let mut out = format!(
        "plan {} (planned {}):\n",
        plan_id.unwrap_or("-"),
        planned_at.unwrap_or("-")
    );
    let action = serde_json::to_value(plan.action)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{:?}", plan.action));
    let mut fields = Table::bare();
    fields.row(["  action:".to_owned(), action]);
    fields.row(["  reason:".to_owned(), plan.reason.clone()]);
    fields.row(["  from:".to_owned(), release(&plan.from)]);
    fields.row(["  to:".to_owned(), release(&plan.to)]);
    fields.row(["  uncovered now:".to_owned(), list(&plan.uncovered_now)]);
    fields.row(["  uncovered after:".to_owned(), list(&plan.uncovered_after)]);
    fields.row([
        "  consent:".to_owned(),
        if plan.consent_required {
            "the user is asked first".to_owned()
        } else {
            "not needed".to_owned()
        },
    ]);
    fields.row([
        "  not before:".to_owned(),
        plan.not_before.clone().unwrap_or_else(|| "-".to_owned()),
    ]);
    out.push_str(&fields.render());
    if !plan.steps.is_empty() {
        out.push_str("  steps:\n");
        for (i, step) in plan.steps.iter().enumerate() {
            let text = match step {
                Step::Fetch {
                    product,
                    version,
                    format,
                    sha256,
                    size,
                } => format!("fetch {product} {version} ({format}, {size} bytes, sha256 {sha256})"),
                Step::Install {
                    product,
                    version,
                    format,
                    ..
                } => format!("install {product} {version} ({format})"),
                Step::Verify {
                    product,
                    version,
                    pattern,
                } => format!("verify {product} {version} detects its test pattern ({pattern})"),
                Step::Uninstall {
                    product,
                    version,
                    format,
                    ..
                } => format!("uninstall {product} {version} ({format})"),
            };
            out.push_str(&format!("    {}. {text}\n", i + 1));
        }
    }
    if !plan.alternatives.is_empty() {
        out.push_str("  alternatives under another policy:\n");
        for alt in &plan.alternatives {
            out.push_str(&format!(
                "    {} {} ({}) by {}: leaves {}\n",
                alt.product,
                alt.version,
                alt.pattern,
                alt.vendor,
                severity(&alt.uncovered)
            ));
        }
    }
    out
}

fn severity(counts: &SeverityCounts) -> String {
    let parts: Vec<String> = [
        ("critical", counts.critical),
        ("high", counts.high),
        ("medium", counts.medium),
        ("low", counts.low),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(danger, n)| format!("{n} {danger}"))
    .collect();
    if parts.is_empty() {
        "nothing uncovered".to_owned()
    } else {
        format!("{} uncovered", parts.join(", "))
    }
}

fn describe_report(report: &PlanReport) -> String {
    let outcome = serde_json::to_value(report.outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{:?}", report.outcome));
    let mut out = format!("last report: plan {} {outcome}\n", report.plan_id);
    if let Some(message) = &report.message {
        out.push_str(&format!("  {message}\n"));
    }
    for step in &report.steps {
        let status = serde_json::to_value(step.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{:?}", step.status));
        match &step.detail {
            Some(detail) => out.push_str(&format!(
                "    step {} {}: {status} ({detail})\n",
                step.step + 1,
                step.kind
            )),
            None => out.push_str(&format!(
                "    step {} {}: {status}\n",
                step.step + 1,
                step.kind
            )),
        }
    }
    if let Some(installed) = &report.installed {
        out.push_str(&format!(
            "  runs afterwards: {}\n",
            installed_short(Some(installed))
        ));
    }
    out
}

fn coverage(args: CoverageArgs) -> anyhow::Result<Outcome> {
    let session = Session::open(&args.server)?;
    let matrix = match session.client.coverage() {
        Ok(matrix) => matrix,
        Err(err) => return session.failed("coverage", err),
    };
    if args.json {
        print_json(&matrix)?;
    } else {
        print_out(&coverage_table(&matrix))?;
    }
    Ok(Outcome::Success)
}

fn coverage_table(matrix: &CoverageMatrix) -> String {
    let mut out = format!(
        "catalog revision {}: {} threat{} × {} product{}\n",
        matrix.revision,
        matrix.threats.len(),
        if matrix.threats.len() == 1 { "" } else { "s" },
        matrix.products.len(),
        if matrix.products.len() == 1 { "" } else { "s" },
    );
    if matrix.threats.is_empty() {
        out.push_str("no threats are known yet (vendors publish them with `herd publish`)\n");
        return out;
    }
    let mut header = vec![
        "THREAT".to_owned(),
        "DANGER".to_owned(),
        "DISCOVERED".to_owned(),
    ];
    header.extend(matrix.products.iter().map(|p| p.id.clone()));
    let mut table = Table::new(header);
    for row in &matrix.threats {
        let mut cells = vec![
            row.threat.clone(),
            row.danger.clone(),
            row.discovered.clone(),
        ];
        for cell in &row.cells {
            cells.push(match (cell.since_seq, cell.covered, &cell.expected) {
                (Some(seq), true, _) => format!("since {seq}"),
                // Announced for a definitions release that is not published yet.
                (Some(seq), false, _) => format!("from {seq} (unreleased)"),
                (None, _, Some(date)) => format!("exp. {date}"),
                (None, _, None) => "-".to_owned(),
            });
        }
        table.row(cells);
    }
    out.push_str(&table.render());
    out.push_str("products:\n");
    for p in &matrix.products {
        let latest = match (&p.latest_version, p.latest_seq) {
            (Some(version), Some(seq)) => format!("latest {version} (seq {seq})"),
            _ => "no release yet".to_owned(),
        };
        out.push_str(&format!(
            "  {}: {} by {}, {latest}\n",
            p.id, p.name, p.vendor
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Tokens.

fn token_create(args: TokenCreateArgs) -> anyhow::Result<Outcome> {
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

fn enrol_token_create(args: EnrolTokenCreateArgs) -> anyhow::Result<Outcome> {
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

// ---------------------------------------------------------------------------------------------
// Groups and rules.

fn groups_list(server: &ServerArgs, json: bool) -> anyhow::Result<Outcome> {
    let session = Session::open(server)?;
    let groups = match session.client.groups() {
        Ok(list) => list.groups,
        Err(err) => return session.failed("listing groups", err),
    };
    if json {
        print_json(&groups)?;
        return Ok(Outcome::Success);
    }
    let mut table = Table::new([
        "ID",
        "TERMINALS",
        "APPLY",
        "MIN DANGER",
        "CONSENT",
        "WINDOW",
        "DESCRIPTION",
    ]);
    for g in &groups {
        table.row([
            g.id.clone(),
            g.terminals.to_string(),
            g.policy.apply.clone(),
            g.policy
                .min_danger
                .clone()
                .unwrap_or_else(|| "low".to_owned()),
            g.policy
                .consent
                .clone()
                .unwrap_or_else(|| "auto".to_owned()),
            g.policy
                .window
                .clone()
                .unwrap_or_else(|| "any time".to_owned()),
            g.description.clone(),
        ]);
    }
    print_out(&table.render())?;
    Ok(Outcome::Success)
}

fn group_put(args: GroupPutArgs) -> anyhow::Result<Outcome> {
    let session = Session::open(&args.server)?;
    let group = GroupDoc {
        id: args.id.clone(),
        description: args.description,
        policy: PolicyDoc {
            apply: args.policy_apply,
            min_danger: args.min_danger,
            consent: args.consent,
            window: args.window,
            tz: None,
        },
        terminals: 0,
    };
    match session.client.put_group(&group) {
        Ok(saved) => {
            let p = &saved.policy;
            print_out(&format!(
                "group {} saved: {}, min danger {}, consent {}, window {}\n",
                saved.id,
                p.apply,
                p.min_danger.as_deref().unwrap_or("low"),
                p.consent.as_deref().unwrap_or("auto"),
                p.window.as_deref().unwrap_or("any time"),
            ))?;
            Ok(Outcome::Success)
        }
        Err(err) => session.failed(&format!("saving group {}", args.id), err),
    }
}

fn group_delete(server: &ServerArgs, id: &str) -> anyhow::Result<Outcome> {
    let session = Session::open(server)?;
    match session.client.delete_group(id) {
        Ok(()) => {
            print_out(&format!("group {id} deleted\n"))?;
            Ok(Outcome::Success)
        }
        Err(err) => session.failed(&format!("deleting group {id}"), err),
    }
}

fn rules_show(server: &ServerArgs) -> anyhow::Result<Outcome> {
    let session = Session::open(server)?;
    match session.client.rules() {
        Ok(rules) => {
            print_json(&rules)?;
            Ok(Outcome::Success)
        }
        Err(err) => session.failed("reading the placement rules", err),
    }
}

fn rules_set(args: RulesSetArgs) -> anyhow::Result<Outcome> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let mut deserializer = serde_json::Deserializer::from_str(&text);
    let rules: PlacementRules = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(rules) => rules,
        Err(err) => {
            let path = err.path().to_string();
            let path = if path == "." {
                "$".to_owned()
            } else {
                format!("$.{path}")
            };
            eprintln!(
                "herd: {}: {path}: {} (see `herd rules set --help` for the format)",
                args.file.display(),
                err.inner()
            );
            return Ok(Outcome::InvalidInput);
        }
    };
    let session = Session::open(&args.server)?;
    match session.client.put_rules(&rules) {
        Ok(saved) => {
            let n = saved.rules.len();
            print_out(&format!(
                "{n} placement rule{} set; they apply to terminals enrolling from now on\n",
                if n == 1 { "" } else { "s" }
            ))?;
            Ok(Outcome::Success)
        }
        Err(err) => session.failed(
            &format!("setting the rules of {}", args.file.display()),
            err,
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Output.

/// Writes to stdout; a reader that went away (`| head`) ends the output quietly.
fn print_out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow!("cannot write the output: {err}"))
        }
        _ => Ok(()),
    }
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value).context("cannot encode the output")?;
    text.push('\n');
    print_out(&text)
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Table {
        Table {
            rows: vec![header.into_iter().map(Into::into).collect()],
        }
    }

    /// A table without a header row (aligned `key: value` lines).
    fn bare() -> Table {
        Table { rows: Vec::new() }
    }

    fn row(&mut self, cells: impl IntoIterator<Item = String>) {
        self.rows.push(cells.into_iter().collect());
    }

    fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0usize; columns];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    let pad = widths[i] - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_proto::api::{CoverageCell, CoverageProduct, CoverageRow};

    #[test]
    fn tables_align_columns_and_do_not_pad_the_last() {
        let mut table = Table::new(["ID", "USER", "ACTION"]);
        table.row(["45a".to_owned(), "user-a".to_owned(), "switch".to_owned()]);
        table.row(["46c-long".to_owned(), "-".to_owned(), "none".to_owned()]);
        assert_eq!(
            table.render(),
            "ID        USER    ACTION\n45a       user-a  switch\n46c-long  -       none\n"
        );
    }

    #[test]
    fn the_coverage_table_reads_like_the_specification() {
        let cell = |covered, since_seq, expected: Option<&str>| CoverageCell {
            covered,
            since_seq,
            covered_on: None,
            expected: expected.map(str::to_owned),
        };
        let matrix = CoverageMatrix {
            revision: 2,
            products: ["vaccine-a", "vaccine-b"]
                .iter()
                .map(|id| CoverageProduct {
                    id: (*id).to_owned(),
                    vendor: id.replace("vaccine", "maker"),
                    name: id.replace('-', " "),
                    latest_version: Some("1.0".to_owned()),
                    latest_seq: Some(1112),
                })
                .collect(),
            threats: vec![
                CoverageRow {
                    threat: "virus-a".to_owned(),
                    name: "virus a".to_owned(),
                    danger: "high".to_owned(),
                    discovered: "2000-11-10".to_owned(),
                    cells: vec![
                        cell(false, None, Some("2000-11-15")),
                        cell(true, Some(1112), None),
                    ],
                },
                CoverageRow {
                    threat: "worm-z".to_owned(),
                    name: "worm z".to_owned(),
                    danger: "low".to_owned(),
                    discovered: "2000-11-11".to_owned(),
                    cells: vec![cell(false, None, None), cell(false, Some(1200), None)],
                },
            ],
        };
        assert_eq!(
            coverage_table(&matrix),
            "catalog revision 2: 2 threats × 2 products
THREAT   DANGER  DISCOVERED  vaccine-a        vaccine-b
virus-a  high    2000-11-10  exp. 2000-11-15  since 1112
worm-z   low     2000-11-11  -                from 1200 (unreleased)
products:
  vaccine-a: vaccine a by maker-a, latest 1.0 (seq 1112)
  vaccine-b: vaccine b by maker-b, latest 1.0 (seq 1112)
"
        );
    }

    #[test]
    fn the_vendor_of_a_feed_is_inferred_only_when_it_is_unambiguous() {
        assert_eq!(
            feed_vendor(br#"{"vendors": [{"id": "maker-a", "name": "A"}]}"#),
            Ok("maker-a".to_owned())
        );
        assert_eq!(
            feed_vendor(br#"{"vendors": [{"id": "a"}, {"id": "b"}]}"#),
            Err("the feed lists 2 vendors (a, b)".to_owned())
        );
        assert_eq!(
            feed_vendor(br#"{"vendors": []}"#),
            Err("the feed lists no vendor".to_owned())
        );
        assert!(feed_vendor(b"{").unwrap_err().starts_with("not JSON: "));
    }

    #[test]
    fn severity_counts_read_most_dangerous_first() {
        let counts = SeverityCounts {
            critical: 0,
            high: 2,
            medium: 0,
            low: 1,
        };
        assert_eq!(severity(&counts), "2 high, 1 low uncovered");
        assert_eq!(severity(&SeverityCounts::default()), "nothing uncovered");
    }
}
