//! `herd keys`: the offline root keys of signed distribution and the ceremony that moves the
//! center's TUF root offline, rotates it and renews it; and `herd vendors key` (alias `herd
//! vendor key`): a vendor's own signing key.
//!
//! The pure parts are in herd-tuf: key files (`keyfile`), the next root and the proposal that
//! gathers signatures (`ceremony`). This file reads and writes key directories, talks to the
//! center, and prints what the operator must know before signing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use herd_core::Timestamp;
use herd_proto::distribution::vendor_role;
use herd_tls::seal::KeyEncryptionKey;
use herd_tuf::ceremony::{
    CeremonyError, OnlineRole, RootChanges, RootProposal, check_next, next_root, short,
};
use herd_tuf::keyfile::{self, KeyFile};
use herd_tuf::metadata::{Envelope, parse_expiry};
use herd_tuf::{PublicKey, Root, SigningKey, TrustedSet};
use serde::{Deserialize, Serialize};

use super::connect::{ServerArgs, Session};
use super::output::print_out;
use crate::Outcome;

/// The public half of the keys `herd keys init` made, for the online machine.
const PUBLIC_KEYS_FILE: &str = "root-keys.pub.json";
const PUBLIC_KEYS_FORMAT: &str = "herd.root-keys/v1";
/// Root keys are written as `root-<id>.key`.
const ROOT_KEY_PREFIX: &str = "root";
/// A root closer to its expiry than this is flagged by `herd keys show`.
const RENEW_WITHIN_DAYS: i64 = 60;

/// `herd keys` (its help, which teaches the ceremony, is on `AdminCommand::Keys`).
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    Init(InitArgs),
    ProposeRoot(ProposeArgs),
    SignRoot(SignArgs),
    InstallRoot(InstallArgs),
    RotateRoot(RotateArgs),
    Show(ShowArgs),
}

/// Make new root keys in a new directory (offline), and with --install make them the center's.
///
/// Writes one file per key, `root-<key id>.key` (mode 0600; sealed under --kek-file if given),
/// and `root-keys.pub.json`, the public keys and threshold for `herd keys propose-root` on the
/// online machine. With --install (keys on this machine, center reachable), builds the next
/// root naming these keys and the center's online keys, signs it with them, installs it and
/// writes `N.root.json` to DIR.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  herd keys init --out /media/offline/herd-root --kek-file /media/offline/root.kek
  herd keys init --out ./herd-root --keys 1 --threshold 1 --install")]
pub struct InitArgs {
    /// The directory to create (refused unless new or empty).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// How many root keys to make.
    #[arg(long = "keys", value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    count: u32,
    /// How many of them must sign a new root.
    #[arg(long, value_name = "M", default_value_t = 2)]
    threshold: u32,
    /// Seal each key under this key-encryption key (`herd ca new-kek`) instead of writing it in
    /// the clear.
    #[arg(long, value_name = "FILE")]
    kek_file: Option<PathBuf>,
    /// Install a root naming the new keys in the center now.
    #[arg(long)]
    install: bool,
    /// Days until the installed root expires (renew it before: `herd keys rotate-root`).
    #[arg(long, value_name = "DAYS", default_value_t = 365,
          value_parser = clap::value_parser!(u32).range(1..=1826))]
    expires_days: u32,
    #[command(flatten)]
    server: ServerArgs,
}

/// What the next root changes (all optional; none at all renews the root as it is).
#[derive(Debug, Args)]
pub struct RootChangeArgs {
    /// The new root keys' threshold [default: the one `herd keys init` was given, else the
    /// current root's].
    #[arg(long, value_name = "M")]
    threshold: Option<u32>,
    /// Replace an online key (timestamp, snapshot or targets): the center makes a pending key,
    /// active once this root is installed. Repeat for several roles.
    #[arg(long, value_name = "ROLE")]
    rotate_online: Vec<String>,
    /// Pin a vendor's role to the signing key it registered (read from the center's signed
    /// metadata): from then on not even the center can sign for that vendor. `VENDOR=KEYID`
    /// also checks that the key is the one the vendor told you out of band.
    #[arg(long, value_name = "VENDOR[=KEYID]")]
    pin_vendor: Vec<String>,
    /// Remove a vendor's pin (before the vendor moves to a new key).
    #[arg(long, value_name = "VENDOR")]
    unpin_vendor: Vec<String>,
    /// Days until the next root expires.
    #[arg(long, value_name = "DAYS", default_value_t = 365,
          value_parser = clap::value_parser!(u32).range(1..=1826))]
    expires_days: u32,
}

/// Write the next root, unsigned, to a file (online): for `herd keys sign-root` offline.
///
/// Reads the center's current root, makes the changes asked for (none: a renewal), and writes
/// a proposal holding the current root and the next one.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  herd keys propose-root --new-keys root-keys.pub.json --out next-root.json
  herd keys propose-root --rotate-online targets --pin-vendor maker-a --out next-root.json
  herd keys propose-root --out renewal.json")]
pub struct ProposeArgs {
    /// New root keys: `root-keys.pub.json` from `herd keys init`, or its directory (only the
    /// public keys are read).
    #[arg(long, value_name = "PATH")]
    new_keys: Option<PathBuf>,
    #[command(flatten)]
    changes: RootChangeArgs,
    /// The proposal file to write (refused if it exists).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[command(flatten)]
    server: ServerArgs,
}

/// Sign a root proposal with the root keys in a directory (offline).
///
/// Prints what the proposal changes first; signs with every key that the current or the next
/// root names as a root key; writes the signatures into the file. Run it once per key holder.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  herd keys sign-root next-root.json --keys /media/offline/herd-root --kek-file /media/offline/root.kek")]
pub struct SignArgs {
    /// The proposal from `herd keys propose-root`.
    file: PathBuf,
    /// A directory of root keys (`herd keys init`). Repeat for several.
    #[arg(long = "keys", value_name = "DIR", required = true)]
    dirs: Vec<PathBuf>,
    /// The key-encryption key the keys are sealed under, if they are.
    #[arg(long, value_name = "FILE")]
    kek_file: Option<PathBuf>,
}

/// Install a signed root proposal in the center (online).
///
/// Checks that the center still serves the root the proposal follows and that the next root is
/// signed by a threshold of its own keys, sends it (the center adds its own signature while it
/// holds the current root key), then checks the chain the center serves and writes `N.root.json`
/// beside FILE.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  herd keys install-root next-root.json")]
pub struct InstallArgs {
    /// The signed proposal.
    file: PathBuf,
    #[command(flatten)]
    server: ServerArgs,
}

/// Build, sign and install the next root in one go, with the root keys on this machine.
///
/// With no change asked for, renews the root (a root must be renewed before it expires, a year
/// by default). --new-keys moves to the keys of another directory (signed by a threshold of
/// both). Writes `N.root.json` into the key directories.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  herd keys rotate-root --keys ./herd-root
  herd keys rotate-root --keys ./herd-root --new-keys ./herd-root-2027 --threshold 2
  herd keys rotate-root --keys ./herd-root --rotate-online timestamp --pin-vendor maker-a")]
pub struct RotateArgs {
    /// The current root keys.
    #[arg(long = "keys", value_name = "DIR")]
    dir: PathBuf,
    /// New root keys (`herd keys init` without --install).
    #[arg(long, value_name = "DIR")]
    new_keys: Option<PathBuf>,
    /// The key-encryption key the keys are sealed under, if they are.
    #[arg(long, value_name = "FILE")]
    kek_file: Option<PathBuf>,
    #[command(flatten)]
    changes: RootChangeArgs,
    #[command(flatten)]
    server: ServerArgs,
}

/// List a key directory: each key's id and whether it is sealed, and the roots in it.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  herd keys show /media/offline/herd-root")]
pub struct ShowArgs {
    dir: PathBuf,
}

/// A vendor's own signing key, for the role `vendor-<vendor>` that `herd publish --key` signs.
#[derive(Debug, Subcommand)]
pub enum VendorKeyCommand {
    /// Make a new signing key file (mode 0600), and print its key id.
    #[command(after_long_help = "Examples:
  herd vendor key generate --out maker-a.key")]
    Generate {
        /// The key file to create (refused if it exists).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Seal the key under this key-encryption key (`herd ca new-kek`).
        #[arg(long, value_name = "FILE")]
        kek_file: Option<PathBuf>,
    },
    /// Register the key's public half with the center: from then on the center serves only
    /// what this key signs for the vendor (`herd publish --key`).
    #[command(after_long_help = "Examples:
  herd vendor key register --key maker-a.key --vendor maker-a --token-file maker-a.token")]
    Register {
        /// The key file (only its public key is read; a sealed file needs no KEK).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The vendor.
        #[arg(long, value_name = "VENDOR")]
        vendor: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub fn run(command: KeysCommand) -> anyhow::Result<Outcome> {
    match command {
        KeysCommand::Init(args) => init(args),
        KeysCommand::ProposeRoot(args) => propose(args),
        KeysCommand::SignRoot(args) => sign(args),
        KeysCommand::InstallRoot(args) => install_file(args),
        KeysCommand::RotateRoot(args) => rotate(args),
        KeysCommand::Show(args) => show(args),
    }
}

pub fn vendor_key(command: VendorKeyCommand) -> anyhow::Result<Outcome> {
    match command {
        VendorKeyCommand::Generate { out, kek_file } => {
            let kek = kek_file.as_deref().map(read_kek).transpose()?;
            let key = SigningKey::generate()?;
            write_new(&out, key_file_text(&key, kek.as_ref())?.as_bytes(), 0o600)?;
            print_out(&format!("{}  {}\n", key.key_id(), out.display()))?;
            eprintln!(
                "herd: wrote a new signing key to {}: register it with `herd vendor key register \
                 --key {} --vendor VENDOR`, keep it off the center",
                out.display(),
                out.display()
            );
            Ok(Outcome::Success)
        }
        VendorKeyCommand::Register {
            key,
            vendor,
            server,
        } => {
            let public = read_key_file(&key)?.public();
            let session = Session::open(&server)?;
            let request = herd_proto::api::VendorSigningKey {
                public: serde_json::to_value(&public)?,
            };
            match session.client.register_signing_key(&vendor, &request) {
                Ok(_) => {
                    eprintln!(
                        "herd: registered key {} for {vendor}: the center serves role {} only as \
                         this key signs it (`herd publish --key {}`)",
                        public.key_id(),
                        vendor_role(&vendor),
                        key.display()
                    );
                    Ok(Outcome::Success)
                }
                Err(err) => session.failed(&format!("registering the key of {vendor}"), err),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Commands.

fn init(args: InitArgs) -> anyhow::Result<Outcome> {
    check_threshold(args.threshold, args.count)?;
    let kek = args.kek_file.as_deref().map(read_kek).transpose()?;
    create_empty_dir(&args.out)?;
    let mut keys = Vec::new();
    for _ in 0..args.count {
        let key = SigningKey::generate()?;
        let path = args
            .out
            .join(keyfile::file_name(ROOT_KEY_PREFIX, &key.key_id()));
        write_new(&path, key_file_text(&key, kek.as_ref())?.as_bytes(), 0o600)?;
        keys.push(key);
    }
    let public = PublicKeys {
        format: PUBLIC_KEYS_FORMAT.into(),
        threshold: args.threshold,
        keys: keys.iter().map(SigningKey::public).collect(),
    };
    let mut text = serde_json::to_string_pretty(&public)?;
    text.push('\n');
    write_new(&args.out.join(PUBLIC_KEYS_FILE), text.as_bytes(), 0o644)?;
    let mut listing = String::new();
    for key in &keys {
        listing.push_str(&format!("{}\n", key.key_id()));
    }
    print_out(&listing)?;
    eprintln!(
        "herd: wrote {} root keys ({} needed to sign a root){} to {}",
        args.count,
        args.threshold,
        if kek.is_some() { ", sealed," } else { "" },
        args.out.display()
    );
    if !args.install {
        eprintln!(
            "herd: next, on a machine that reaches the center: `herd keys propose-root \
             --new-keys {}/{PUBLIC_KEYS_FILE} --out next-root.json`",
            args.out.display()
        );
        return Ok(Outcome::Success);
    }
    let session = Session::open(&args.server)?;
    let now = now();
    let previous = current_root(&session)?;
    let changes = RootChanges {
        root_keys: Some(public.keys.clone()),
        threshold: Some(args.threshold),
        ..RootChanges::renewal(now.plus_seconds(i64::from(args.expires_days) * 86_400))
    };
    let (previous_bytes, previous_root) = previous;
    let next = next_root(&previous_root, &changes, now)?;
    let mut proposal = RootProposal::new(&previous_bytes, next)?;
    proposal.sign(&keys.iter().collect::<Vec<_>>());
    install(&session, &proposal, now, &[&args.out])
}

fn propose(args: ProposeArgs) -> anyhow::Result<Outcome> {
    if args.out.symlink_metadata().is_ok() {
        bail!("{} exists: choose another name", args.out.display());
    }
    let new_keys = args.new_keys.as_deref().map(read_public_keys).transpose()?;
    let session = Session::open(&args.server)?;
    let now = now();
    let (previous_bytes, previous_root) = current_root(&session)?;
    let changes = root_changes(
        &args.changes,
        &session,
        (&previous_bytes, &previous_root),
        new_keys,
        now,
    )?;
    let next = next_root(&previous_root, &changes, now)?;
    let proposal = RootProposal::new(&previous_bytes, next)?;
    write_new(&args.out, proposal.to_text().as_bytes(), 0o644)?;
    let mut text = String::new();
    for line in proposal.describe() {
        text.push_str(&format!("  {line}\n"));
    }
    print_out(&text)?;
    let status = proposal.status();
    eprintln!(
        "herd: wrote the proposal of root version {} to {}: sign it offline with `herd keys \
         sign-root {} --keys DIR` ({} of the current root keys and {} of the new ones), then \
         `herd keys install-root {}`",
        proposal.root().version,
        args.out.display(),
        args.out.display(),
        status.previous.threshold,
        status.own.threshold,
        args.out.display()
    );
    Ok(Outcome::Success)
}

fn sign(args: SignArgs) -> anyhow::Result<Outcome> {
    let name = args.file.display().to_string();
    let text =
        std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {name}"))?;
    let mut proposal = RootProposal::parse(&name, &text)?;
    let kek = args.kek_file.as_deref().map(read_kek).transpose()?;
    let mut keys = Vec::new();
    for dir in &args.dirs {
        let key_dir = KeyDir::read(dir)?;
        key_dir.check_root(proposal.previous().version, proposal.previous_bytes())?;
        keys.extend(key_dir.open(kek.as_ref())?);
    }
    let mut summary = format!("{name}:\n");
    for line in proposal.describe() {
        summary.push_str(&format!("  {line}\n"));
    }
    print_out(&summary)?;
    let signed = proposal.sign(&keys.iter().collect::<Vec<_>>());
    if signed.added.is_empty() && signed.already.is_empty() {
        bail!(
            "none of the keys in {} is a root key of root version {} or of the proposed version \
             {} (keys there: {}; root keys named: {}): is it the right key directory?",
            display_dirs(&args.dirs),
            proposal.previous().version,
            proposal.root().version,
            short_ids(signed.not_root_keys.iter()),
            short_ids(
                root_keyids(proposal.previous())
                    .iter()
                    .chain(root_keyids(proposal.root()).iter())
            )
        );
    }
    herd_fs::write_atomic(&args.file, proposal.to_text().as_bytes(), 0o644)
        .with_context(|| format!("cannot write {name}"))?;
    let status = proposal.status();
    eprintln!(
        "herd: signed with {} key(s) ({} had signed already); signatures: {} of {} needed from \
         the current root keys, {} of {} from the new ones",
        signed.added.len(),
        signed.already.len(),
        status.previous.valid,
        status.previous.threshold,
        status.own.valid,
        status.own.threshold
    );
    if status.own.met() {
        eprintln!("herd: next, online: `herd keys install-root {name}`");
    }
    Ok(Outcome::Success)
}

fn install_file(args: InstallArgs) -> anyhow::Result<Outcome> {
    let name = args.file.display().to_string();
    let text =
        std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {name}"))?;
    let proposal = RootProposal::parse(&name, &text)?;
    let session = Session::open(&args.server)?;
    let (current, current_root) = current_root(&session)?;
    if current != proposal.previous_bytes() {
        bail!(
            "the center serves root version {}, not the root version {} the proposal {name} \
             follows: propose again (`herd keys propose-root`)",
            current_root.version,
            proposal.previous().version
        );
    }
    let dir = args
        .file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    install(&session, &proposal, now(), &[dir])
}

fn rotate(args: RotateArgs) -> anyhow::Result<Outcome> {
    let kek = args.kek_file.as_deref().map(read_kek).transpose()?;
    let old_dir = KeyDir::read(&args.dir)?;
    let new_dir = args.new_keys.as_deref().map(KeyDir::read).transpose()?;
    let session = Session::open(&args.server)?;
    let now = now();
    let (previous_bytes, previous_root) = current_root(&session)?;
    old_dir.check_root(previous_root.version, &previous_bytes)?;
    let root_keys = root_keyids(&previous_root);
    if !old_dir
        .keys
        .iter()
        .any(|k| root_keys.contains(&k.key.key_id()))
    {
        bail!(
            "none of the keys in {} ({}) is a root key of the center's root version {} (its root \
             keys: {}): is it the right key directory?",
            args.dir.display(),
            short_ids(
                old_dir
                    .keys
                    .iter()
                    .map(|k| k.key.key_id())
                    .collect::<Vec<_>>()
                    .iter()
            ),
            previous_root.version,
            short_ids(root_keys.iter())
        );
    }
    let new_public = new_dir.as_ref().map(KeyDir::public_keys).transpose()?;
    let changes = root_changes(
        &args.changes,
        &session,
        (&previous_bytes, &previous_root),
        new_public,
        now,
    )?;
    let next = next_root(&previous_root, &changes, now)?;
    let mut proposal = RootProposal::new(&previous_bytes, next)?;
    let mut keys = old_dir.open(kek.as_ref())?;
    if let Some(dir) = &new_dir {
        keys.extend(dir.open(kek.as_ref())?);
    }
    proposal.sign(&keys.iter().collect::<Vec<_>>());
    let mut text = String::new();
    for line in proposal.describe() {
        text.push_str(&format!("  {line}\n"));
    }
    print_out(&text)?;
    // Both thresholds must be met here: the keys of the current root are in DIR.
    proposal.check(now).map_err(|err| match err {
        CeremonyError::Unsigned { .. } => anyhow!(
            "{err}: with the keys held apart, gather the signatures with `herd keys \
             propose-root`, `herd keys sign-root` on each machine, and `herd keys install-root`"
        ),
        other => other.into(),
    })?;
    let mut dirs: Vec<&Path> = vec![&args.dir];
    if let Some(dir) = &args.new_keys {
        dirs.push(dir);
    }
    install(&session, &proposal, now, &dirs)
}

fn show(args: ShowArgs) -> anyhow::Result<Outcome> {
    let dir = KeyDir::read(&args.dir)?;
    let mut text = String::new();
    for key in &dir.keys {
        text.push_str(&format!(
            "key   {}  {}  {}\n",
            key.key.key_id(),
            if key.key.is_sealed() {
                "sealed"
            } else {
                "clear "
            },
            key.path.display()
        ));
    }
    let now = now();
    for (version, path) in &dir.roots {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let envelope = Envelope::<Root>::parse(&path.display().to_string(), &bytes)?;
        let root = &envelope.signed;
        let named: Vec<String> = dir
            .keys
            .iter()
            .map(|k| k.key.key_id())
            .filter(|id| root_keyids(root).contains(id))
            .collect();
        let role = root.roles.get("root");
        text.push_str(&format!(
            "root  version {version}  expires {}  root keys {} of {} ({} here)\n",
            root.expires,
            role.map_or(0, |r| r.threshold),
            role.map_or(0, |r| r.keyids.len()),
            named.len()
        ));
        for (pinned, ids) in &root.pinned_roles {
            text.push_str(&format!(
                "      pins {pinned} to {}\n",
                short_ids(ids.iter())
            ));
        }
    }
    print_out(&text)?;
    if let Some((version, path)) = dir.roots.iter().next_back() {
        let bytes = std::fs::read(path)?;
        let envelope = Envelope::<Root>::parse("root", &bytes)?;
        let expires = parse_expiry("root", &envelope.signed.expires)?;
        if expires < now.plus_seconds(RENEW_WITHIN_DAYS * 86_400) {
            eprintln!(
                "herd: root version {version} expires {}: renew it with `herd keys rotate-root \
                 --keys {}`",
                envelope.signed.expires,
                args.dir.display()
            );
        }
    }
    Ok(Outcome::Success)
}

// ---------------------------------------------------------------------------------------------
// The ceremony's steps.

/// Sends the proposal, then checks that what the center serves as `N.root.json` chains from
/// the root the proposal follows, and writes it to `dirs`.
fn install(
    session: &Session,
    proposal: &RootProposal,
    now: Timestamp,
    dirs: &[&Path],
) -> anyhow::Result<Outcome> {
    proposal.check_own(now)?;
    let version = proposal.root().version;
    let status = proposal.status();
    if !status.previous.met() {
        eprintln!(
            "herd: root version {version} has {} of the {} signatures of the current root's keys \
             it needs: the center adds its own if it holds the current root key, else it refuses",
            status.previous.valid, status.previous.threshold
        );
    }
    if let Err(err) = session.client.install_root(&proposal.bytes()) {
        return session.failed(&format!("installing root version {version}"), err);
    }
    let file = format!("{version}.root.json");
    let served = session
        .client
        .tuf_metadata(&file)
        .map_err(|err| anyhow!("reading back {file}: {err}"))?
        .ok_or_else(|| {
            anyhow!("the center accepted root version {version} but serves no {file}")
        })?;
    let root = check_next(proposal.previous_bytes(), &served).with_context(|| {
        format!(
            "the center accepted root version {version}, but the {file} it serves does not chain"
        )
    })?;
    for dir in dirs {
        write_root(dir, &file, &served)?;
    }
    eprintln!(
        "herd: the center serves root version {version} (expires {}); terminals move to it at \
         their next refresh; saved as {file} in {}",
        root.expires,
        display_dirs(dirs)
    );
    Ok(Outcome::Success)
}

/// The center's current root: its bytes as served and the root, which must be signed by a
/// threshold of its own root keys.
fn current_root(session: &Session) -> anyhow::Result<(Vec<u8>, Root)> {
    let bytes = match session.client.tuf_metadata("root.json") {
        Ok(Some(bytes)) => bytes,
        Ok(None) => bail!(
            "the center at {} serves no TUF root (/tuf/metadata/root.json): is it older than \
             signed distribution?",
            session.client.server()
        ),
        Err(err) => return Err(anyhow!("reading the center's root: {err}")),
    };
    let envelope = Envelope::<Root>::parse("the center's root.json", &bytes)?;
    let role = envelope
        .signed
        .roles
        .get("root")
        .ok_or_else(|| anyhow!("the center's root.json names no root keys"))?;
    envelope.check_threshold("the center's root.json", role, &envelope.signed.keys)?;
    Ok((bytes, envelope.signed))
}

fn root_changes(
    args: &RootChangeArgs,
    session: &Session,
    (previous_bytes, previous): (&[u8], &Root),
    new_keys: Option<PublicKeys>,
    now: Timestamp,
) -> anyhow::Result<RootChanges> {
    let mut changes = RootChanges::renewal(now.plus_seconds(i64::from(args.expires_days) * 86_400));
    if let Some(keys) = new_keys {
        changes.threshold = Some(keys.threshold);
        changes.root_keys = Some(keys.keys);
    }
    if let Some(threshold) = args.threshold {
        changes.threshold = Some(threshold);
    }
    for name in &args.rotate_online {
        let role = OnlineRole::parse(name).map_err(|e| anyhow!("--rotate-online: {e}"))?;
        let pending = match session.client.new_online_key(role.as_str()) {
            Ok(pending) => pending,
            Err(err) => {
                return Err(anyhow!("asking the center for a new {role} key: {err}"));
            }
        };
        let public: PublicKey = serde_json::from_value(pending.public.clone())
            .map_err(|e| anyhow!("the center's new {role} key is not a TUF key: {e}"))?;
        keyfile::check_public(&public).map_err(|e| anyhow!("the center's new {role} key: {e}"))?;
        if public.key_id() != pending.keyid {
            bail!(
                "the center's new {role} key says its id is {}, but its public key's id is {}",
                pending.keyid,
                public.key_id()
            );
        }
        changes.online.push((role, public));
    }
    if !args.pin_vendor.is_empty() {
        let delegations = delegated_keys(session, previous_bytes, now)?;
        for spec in &args.pin_vendor {
            let (vendor, expected) = match spec.split_once('=') {
                Some((vendor, keyid)) => (vendor, Some(keyid)),
                None => (spec.as_str(), None),
            };
            let keyids = vendor_pin(&delegations, previous, vendor, expected)?;
            changes.pin.push((vendor_role(vendor), keyids));
        }
    }
    for vendor in &args.unpin_vendor {
        changes.unpin.push(vendor_role(vendor));
    }
    Ok(changes)
}

/// The key ids each delegated role has in the center's top-level targets, read through the
/// TUF client workflow from the current root (so they are what terminals will see).
fn delegated_keys(
    session: &Session,
    root_bytes: &[u8],
    now: Timestamp,
) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let fetch = |file: &str| -> anyhow::Result<Vec<u8>> {
        session
            .client
            .tuf_metadata(file)
            .map_err(|err| anyhow!("reading {file}: {err}"))?
            .ok_or_else(|| anyhow!("the center serves no {file}"))
    };
    let mut trusted = TrustedSet::new(root_bytes, now)?;
    trusted.update_timestamp(&fetch("timestamp.json")?, None)?;
    let snapshot = trusted.snapshot_meta()?.version;
    trusted.update_snapshot(&fetch(&format!("{snapshot}.snapshot.json"))?, None)?;
    let targets = trusted.targets_meta("targets")?.version;
    trusted.update_targets(&fetch(&format!("{targets}.targets.json"))?)?;
    Ok(trusted
        .targets("targets")
        .and_then(|t| t.delegations.as_ref())
        .map(|d| {
            d.roles
                .iter()
                .map(|r| (r.name.clone(), r.keyids.clone()))
                .collect()
        })
        .unwrap_or_default())
}

/// The key ids to pin `vendor`'s role to: its delegation's, which must not be the center's
/// online targets key (the vendor registered none yet) and, when given, must be `expected`.
fn vendor_pin(
    delegations: &BTreeMap<String, Vec<String>>,
    root: &Root,
    vendor: &str,
    expected: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let role = vendor_role(vendor);
    let keyids = delegations.get(&role).ok_or_else(|| {
        anyhow!("the center delegates no role {role}: has vendor {vendor} published a feed?")
    })?;
    let online = root
        .roles
        .get("targets")
        .map(|r| r.keyids.clone())
        .unwrap_or_default();
    if keyids.iter().any(|id| online.contains(id)) {
        bail!(
            "vendor {vendor} has no signing key registered: the center signs {role} with its \
             online targets key; the vendor registers one first (`herd vendor key register`)"
        );
    }
    if let Some(expected) = expected
        && keyids.as_slice() != [expected]
    {
        bail!(
            "the center delegates {role} to key(s) {}, not {expected}: do not pin it until this \
             is explained",
            keyids.join(", ")
        );
    }
    Ok(keyids.clone())
}

// ---------------------------------------------------------------------------------------------
// Key directories and files.

/// `root-keys.pub.json`: the public keys `herd keys init` made, and their threshold.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicKeys {
    format: String,
    threshold: u32,
    keys: Vec<PublicKey>,
}

fn read_public_keys(path: &Path) -> anyhow::Result<PublicKeys> {
    let file = if path.is_dir() {
        path.join(PUBLIC_KEYS_FILE)
    } else {
        path.to_path_buf()
    };
    let name = file.display().to_string();
    let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {name}"))?;
    parse_public_keys(&name, &text)
}

fn parse_public_keys(name: &str, text: &str) -> anyhow::Result<PublicKeys> {
    let keys: PublicKeys = serde_json::from_str(text)
        .map_err(|e| anyhow!("{name}: not the {PUBLIC_KEYS_FILE} `herd keys init` writes: {e}"))?;
    if keys.format != PUBLIC_KEYS_FORMAT {
        bail!(
            "{name}: its format is {:?}, not {PUBLIC_KEYS_FORMAT:?}",
            keys.format
        );
    }
    for (i, key) in keys.keys.iter().enumerate() {
        keyfile::check_public(key).map_err(|e| anyhow!("{name}: keys[{i}]: {e}"))?;
    }
    check_threshold(keys.threshold, keys.keys.len() as u32).with_context(|| name.to_owned())?;
    Ok(keys)
}

fn check_threshold(threshold: u32, count: u32) -> anyhow::Result<()> {
    if threshold == 0 || threshold > count {
        bail!("a threshold of {threshold} with {count} key(s): it must be 1 to {count}");
    }
    Ok(())
}

struct LoadedKey {
    path: PathBuf,
    key: KeyFile,
}

/// A directory of root keys (`root-*.key`) and the roots signed with them (`N.root.json`).
struct KeyDir {
    path: PathBuf,
    keys: Vec<LoadedKey>,
    roots: BTreeMap<u64, PathBuf>,
}

impl KeyDir {
    fn read(path: &Path) -> anyhow::Result<KeyDir> {
        let entries = std::fs::read_dir(path)
            .with_context(|| format!("cannot read the key directory {}", path.display()))?;
        let mut keys = Vec::new();
        let mut roots = BTreeMap::new();
        let mut names: Vec<(String, PathBuf)> = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot read {}", path.display()))?;
            names.push((
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            ));
        }
        names.sort();
        for (name, file) in names {
            if let Some(stem) = name.strip_suffix(".key") {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                let key = keyfile::decode(&file.display().to_string(), &text)?;
                // A renamed or swapped file is caught before anything is signed with it.
                if let Some(prefix) = stem.strip_prefix(&format!("{ROOT_KEY_PREFIX}-"))
                    && !key.key_id().starts_with(prefix)
                {
                    bail!(
                        "{}: the file name says key {prefix}… but it holds key {}",
                        file.display(),
                        key.key_id()
                    );
                }
                keys.push(LoadedKey { path: file, key });
            } else if let Some(version) = name
                .strip_suffix(".root.json")
                .and_then(|v| v.parse::<u64>().ok())
            {
                roots.insert(version, file);
            }
        }
        if keys.is_empty() {
            bail!(
                "no key files (*.key) in {}: is it the directory `herd keys init` wrote?",
                path.display()
            );
        }
        Ok(KeyDir {
            path: path.to_path_buf(),
            keys,
            roots,
        })
    }

    /// Opens every key, with `kek` for sealed ones.
    fn open(&self, kek: Option<&KeyEncryptionKey>) -> anyhow::Result<Vec<SigningKey>> {
        let mut opened = Vec::new();
        for loaded in &self.keys {
            let name = loaded.path.display().to_string();
            match &loaded.key {
                KeyFile::Clear(key) => opened.push(SigningKey::from_pkcs8(key.pkcs8())?),
                KeyFile::Sealed { public, sealed } => {
                    let Some(kek) = kek else {
                        bail!(
                            "{name} is sealed: pass --kek-file with the key-encryption key it \
                             was sealed under"
                        );
                    };
                    let text = kek
                        .open(sealed, &keyfile::seal_binding(public))
                        .with_context(|| format!("cannot open {name}"))?;
                    opened.push(keyfile::open_sealed(&name, public, &text)?);
                }
            }
        }
        Ok(opened)
    }

    /// The public keys of the directory, with the threshold its `root-keys.pub.json` gives (else
    /// a majority).
    fn public_keys(&self) -> anyhow::Result<PublicKeys> {
        let keys: Vec<PublicKey> = self.keys.iter().map(|k| k.key.public()).collect();
        let listed = self.path.join(PUBLIC_KEYS_FILE);
        let threshold = if listed.exists() {
            read_public_keys(&listed)?.threshold
        } else {
            keys.len() as u32 / 2 + 1
        };
        Ok(PublicKeys {
            format: PUBLIC_KEYS_FORMAT.into(),
            threshold,
            keys,
        })
    }

    /// When this directory holds the root version `version`, it must be `bytes`: a center (or
    /// a proposal) whose root differs from the one these keys signed is not trusted; nor one
    /// older than a root the keys signed.
    fn check_root(&self, version: u64, bytes: &[u8]) -> anyhow::Result<()> {
        if let Some(path) = self.roots.get(&version) {
            let ours =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            if ours != bytes {
                bail!(
                    "the root version {version} the center serves is not {}: another \
                     deployment's root, or a forged one",
                    path.display()
                );
            }
        }
        if let Some((newest, path)) = self.roots.iter().next_back()
            && *newest > version
        {
            bail!(
                "{} holds root version {newest}, newer than the center's version {version}: was \
                 the center restored from an old backup?",
                path.display()
            );
        }
        Ok(())
    }
}

/// Writes a served root into a key directory; the same file already there is fine, a
/// different one is refused (it would hide which root the keys signed).
fn write_root(dir: &Path, file: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let path = dir.join(file);
    match std::fs::read(&path) {
        Ok(existing) if existing == bytes => return Ok(()),
        Ok(_) => bail!(
            "{} exists with other content: keep it, and compare it with the center's {file}",
            path.display()
        ),
        Err(_) => {}
    }
    herd_fs::write_atomic(&path, bytes, 0o644)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn read_key_file(path: &Path) -> anyhow::Result<KeyFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the key file {}", path.display()))?;
    Ok(keyfile::decode(&path.display().to_string(), &text)?)
}

/// Opens a key file (a vendor's), with `kek` if it is sealed.
pub(super) fn open_key_file(path: &Path, kek_file: Option<&Path>) -> anyhow::Result<SigningKey> {
    let name = path.display().to_string();
    match read_key_file(path)? {
        KeyFile::Clear(key) => Ok(key),
        KeyFile::Sealed { public, sealed } => {
            let Some(kek_file) = kek_file else {
                bail!(
                    "{name} is sealed: pass --kek-file with the key-encryption key it was sealed \
                     under"
                );
            };
            let text = read_kek(kek_file)?
                .open(&sealed, &keyfile::seal_binding(&public))
                .with_context(|| format!("cannot open {name}"))?;
            Ok(keyfile::open_sealed(&name, &public, &text)?)
        }
    }
}

fn key_file_text(key: &SigningKey, kek: Option<&KeyEncryptionKey>) -> anyhow::Result<String> {
    Ok(match kek {
        Some(kek) => {
            let sealed = kek.seal(&keyfile::encode(key), &keyfile::seal_binding(&key.public()))?;
            keyfile::encode_sealed(&key.public(), &sealed)
        }
        None => keyfile::encode(key),
    })
}

fn read_kek(path: &Path) -> anyhow::Result<KeyEncryptionKey> {
    let secret = std::fs::read(path)
        .with_context(|| format!("cannot read the key-encryption key {}", path.display()))?;
    KeyEncryptionKey::from_secret(&secret)
        .with_context(|| format!("the key-encryption key {}", path.display()))
}

/// Creates `dir` (mode 0700), or takes an existing empty one; anything in it is refused: keys
/// are never mixed with another directory's.
fn create_empty_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if let Ok(mut entries) = std::fs::read_dir(dir) {
        if entries.next().is_some() {
            bail!(
                "{} is not empty: `herd keys init` writes into a new directory",
                dir.display()
            );
        }
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Writes a new file; an existing one is never replaced (it may be the only copy of a key).
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    if path.symlink_metadata().is_ok() {
        bail!(
            "{} exists: remove it or choose another name (a key is never overwritten)",
            path.display()
        );
    }
    herd_fs::write_atomic(path, bytes, mode)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn root_keyids(root: &Root) -> Vec<String> {
    root.roles
        .get("root")
        .map(|r| r.keyids.clone())
        .unwrap_or_default()
}

fn short_ids<'a>(ids: impl Iterator<Item = &'a String>) -> String {
    let ids: Vec<&str> = ids.map(|id| short(id)).collect();
    if ids.is_empty() {
        "none".into()
    } else {
        ids.join(", ")
    }
}

fn display_dirs<P: AsRef<Path>>(dirs: &[P]) -> String {
    dirs.iter()
        .map(|d| d.as_ref().display().to_string())
        .collect::<Vec<_>>()
        .join(" and ")
}

fn now() -> Timestamp {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    Timestamp::from_unix_seconds(seconds)
}

#[cfg(test)]
mod tests {
    use herd_tuf::repository::root_document;

    use super::*;

    fn root_with_delegation() -> (Root, BTreeMap<String, Vec<String>>, SigningKey) {
        let online: Vec<PublicKey> = (0..3)
            .map(|_| SigningKey::generate().unwrap().public())
            .collect();
        let root_key = SigningKey::generate().unwrap();
        let root = root_document(
            None,
            &[root_key.public()],
            1,
            [&online[0], &online[1], &online[2]],
            Timestamp::parse("2030-01-01T00:00:00Z").unwrap(),
        );
        let vendor = SigningKey::generate().unwrap();
        let delegations = BTreeMap::from([
            ("vendor-acme".to_owned(), vec![vendor.key_id()]),
            ("vendor-other".to_owned(), vec![online[2].key_id()]),
        ]);
        (root, delegations, vendor)
    }

    #[test]
    fn a_vendor_is_pinned_only_to_a_key_it_registered() {
        let (root, delegations, vendor) = root_with_delegation();
        assert_eq!(
            vendor_pin(&delegations, &root, "acme", None).unwrap(),
            [vendor.key_id()]
        );
        assert_eq!(
            vendor_pin(&delegations, &root, "acme", Some(&vendor.key_id())).unwrap(),
            [vendor.key_id()]
        );
        let err = vendor_pin(&delegations, &root, "acme", Some("beef"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not beef: do not pin it"), "{err}");
        let err = vendor_pin(&delegations, &root, "other", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("vendor other has no signing key registered"),
            "{err}"
        );
        let err = vendor_pin(&delegations, &root, "nobody", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("delegates no role vendor-nobody"), "{err}");
    }

    #[test]
    fn key_directories_refuse_what_they_cannot_vouch_for() {
        let dir = tempfile::tempdir().unwrap();
        let err = KeyDir::read(dir.path()).err().unwrap().to_string();
        assert!(err.contains("no key files (*.key)"), "{err}");
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        // A key file under another key's name.
        let swapped = dir
            .path()
            .join(keyfile::file_name(ROOT_KEY_PREFIX, &other.key_id()));
        std::fs::write(&swapped, keyfile::encode(&key)).unwrap();
        let err = KeyDir::read(dir.path()).err().unwrap().to_string();
        assert!(err.contains("the file name says key"), "{err}");
        std::fs::remove_file(&swapped).unwrap();

        // A sealed key without a KEK, then with the wrong one, then the right one.
        let kek = KeyEncryptionKey::from_secret(b"0123456789abcdef0123").unwrap();
        let path = dir
            .path()
            .join(keyfile::file_name(ROOT_KEY_PREFIX, &key.key_id()));
        std::fs::write(&path, key_file_text(&key, Some(&kek)).unwrap()).unwrap();
        let keys = KeyDir::read(dir.path()).unwrap();
        assert!(keys.keys[0].key.is_sealed());
        let err = keys.open(None).err().unwrap().to_string();
        assert!(err.contains("is sealed: pass --kek-file"), "{err}");
        let wrong = KeyEncryptionKey::from_secret(b"another secret of 20").unwrap();
        let err = format!("{:#}", keys.open(Some(&wrong)).err().unwrap());
        assert!(
            err.contains("cannot open") && err.contains("does not open"),
            "{err}"
        );
        assert_eq!(keys.open(Some(&kek)).unwrap()[0].key_id(), key.key_id());

        // Roots: the one the keys signed must be the center's; none newer may exist.
        std::fs::write(dir.path().join("2.root.json"), b"ours").unwrap();
        let keys = KeyDir::read(dir.path()).unwrap();
        keys.check_root(2, b"ours").unwrap();
        keys.check_root(3, b"anything").unwrap();
        let err = keys.check_root(2, b"theirs").unwrap_err().to_string();
        assert!(
            err.contains("another deployment's root, or a forged one"),
            "{err}"
        );
        let err = keys.check_root(1, b"old").unwrap_err().to_string();
        assert!(err.contains("newer than the center's version 1"), "{err}");
    }

    #[test]
    fn the_public_key_listing_is_checked() {
        let key = SigningKey::generate().unwrap();
        let good = serde_json::json!({
            "format": PUBLIC_KEYS_FORMAT, "threshold": 1, "keys": [key.public()]
        });
        parse_public_keys("k.json", &good.to_string()).unwrap();
        let mut too_high = good.clone();
        too_high["threshold"] = 2.into();
        let err = format!(
            "{:#}",
            parse_public_keys("k.json", &too_high.to_string()).unwrap_err()
        );
        assert!(err.contains("a threshold of 2 with 1 key(s)"), "{err}");
        let mut bad_key = good.clone();
        bad_key["keys"][0]["keyval"]["public"] = "00".into();
        let err = parse_public_keys("k.json", &bad_key.to_string())
            .unwrap_err()
            .to_string();
        assert!(err.contains("k.json: keys[0]: keyval.public"), "{err}");
        let err = parse_public_keys("k.json", "[]").unwrap_err().to_string();
        assert!(err.contains("not the root-keys.pub.json"), "{err}");
    }

    #[test]
    fn thresholds_must_fit_the_keys() {
        check_threshold(2, 3).unwrap();
        check_threshold(1, 1).unwrap();
        for (m, n) in [(0, 3), (4, 3), (1, 0)] {
            let err = check_threshold(m, n).unwrap_err().to_string();
            assert!(
                err.contains(&format!("a threshold of {m} with {n} key(s)")),
                "{err}"
            );
        }
    }

    #[test]
    fn the_sealed_tag_is_herd_tls_one() {
        assert_eq!(keyfile::SEALED_TAG, herd_tls::seal::SEALED_KEY_TAG);
    }

    #[test]
    fn an_init_directory_must_be_new_or_empty() {
        let dir = tempfile::tempdir().unwrap();
        create_empty_dir(dir.path()).unwrap();
        create_empty_dir(&dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("x"), b"").unwrap();
        let err = create_empty_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is not empty"), "{err}");
    }
}
