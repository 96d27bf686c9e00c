//! `herd ca`: the center's CA. Offline (no center needed): `new-kek` makes a key-encryption key,
//! `root` an offline root CA, `intermediate` an online intermediate signed by it; over the API:
//! `install` puts an intermediate in the center's place, `show` prints what the center uses.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use herd_proto::api::CaInstall;
use herd_tls::CertificateAuthority;
use herd_tls::seal::{KeyEncryptionKey, is_sealed};

use super::connect::{ServerArgs, Session};
use super::output::{print_json, print_out};
use crate::Outcome;

const ROOT_CERT: &str = "root.pem";
const ROOT_KEY: &str = "root-key.pem";

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    NewKek(NewKekArgs),
    Root(RootArgs),
    Intermediate(IntermediateArgs),
    Install(InstallArgs),
    Show(ShowArgs),
}

/// Write a new key-encryption key (32 random bytes as hex) to a file readable only by you.
///
/// The center seals its CA key under it (`ca_kek_file` in its configuration, or
/// HERD_CA_KEK_FILE, or the systemd credential `herd-ca-kek`). Keep it apart from the data
/// directory and its backups: whoever holds both holds the CA.
#[derive(Debug, Args)]
#[command(after_long_help = "Example:
  herd ca new-kek --out /etc/herd/ca.kek && chown herd: /etc/herd/ca.kek")]
pub struct NewKekArgs {
    /// The file to create (refused if it exists).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Create an offline root CA: `root.pem` and `root-key.pem` in a new directory.
///
/// Run it on a machine that stays offline (or keep the directory on removable media): the
/// root's key signs only intermediates (`herd ca intermediate`), the center never holds it,
/// and terminals trust the root, so an intermediate can be replaced without touching them.
#[derive(Debug, Args)]
#[command(after_long_help = "Example:
  herd ca root --out-dir /media/offline/herd-root --kek-file /media/offline/root.kek")]
pub struct RootArgs {
    /// The directory to create for the root's certificate and key (refused if it holds them).
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
    /// The root's name (its certificate's CN).
    #[arg(long, value_name = "NAME", default_value = "Herd root CA")]
    name: String,
    /// Seal the root's key under this key-encryption key instead of writing it in the clear.
    #[arg(long, value_name = "FILE")]
    kek_file: Option<PathBuf>,
}

/// Sign a new online intermediate CA with the offline root, for `herd ca install`.
///
/// Writes one JSON file (mode 0600) with the intermediate's certificate and key and the
/// root's certificate: carry it to an operator's machine, install it, then delete it.
#[derive(Debug, Args)]
#[command(after_long_help = "Example:
  herd ca intermediate --root-dir /media/offline/herd-root --kek-file /media/offline/root.kek \\
      --out intermediate-2027.json")]
pub struct IntermediateArgs {
    /// The directory `herd ca root` created.
    #[arg(long, value_name = "DIR")]
    root_dir: PathBuf,
    /// The key-encryption key the root's key is sealed under, if it is.
    #[arg(long, value_name = "FILE")]
    kek_file: Option<PathBuf>,
    /// The intermediate's name (its certificate's CN).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "Herd center intermediate CA"
    )]
    name: String,
    /// Days the intermediate is valid (never beyond the root).
    #[arg(long, value_name = "DAYS", default_value_t = 730,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    days: u32,
    /// The file to write (refused if it exists).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Install an intermediate CA (from `herd ca intermediate`) in the center.
///
/// Its key is sealed before it is stored, and every center process issues with it within a
/// second. Under the root terminals already trust, nothing else changes. The first root
/// replaces the CA the center made itself: while terminals trust only that one, it is refused
/// unless --force (those terminals must then re-enrol).
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The JSON file `herd ca intermediate` wrote.
    file: PathBuf,
    /// Install a new root even though enrolled terminals trust only the current CA.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    server: ServerArgs,
}

/// Show the center's CA: its trust anchors' fingerprints, the issuing CA and its expiry.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Print the API's JSON (with the PEM certificates) instead.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn run(command: CaCommand) -> anyhow::Result<Outcome> {
    match command {
        CaCommand::NewKek(args) => {
            write_new(&args.out, KeyEncryptionKey::generate_secret()?.as_bytes())?;
            eprintln!(
                "herd: wrote a new key-encryption key to {}",
                args.out.display()
            );
            Ok(Outcome::Success)
        }
        CaCommand::Root(args) => root(args),
        CaCommand::Intermediate(args) => intermediate(args),
        CaCommand::Install(args) => install(args),
        CaCommand::Show(args) => show(args),
    }
}

fn root(args: RootArgs) -> anyhow::Result<Outcome> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let (cert_pem, key_pem) = CertificateAuthority::generate_root(&args.name)?;
    let key_text = match &args.kek_file {
        Some(path) => read_kek(path)?.seal_for_certificate(&key_pem, &cert_pem)?,
        None => key_pem,
    };
    write_new(&args.out_dir.join(ROOT_KEY), key_text.as_bytes())?;
    write_new(&args.out_dir.join(ROOT_CERT), cert_pem.as_bytes())?;
    eprintln!(
        "herd: created the root CA {:?} in {} (fingerprint SHA-256 {}); keep its key offline",
        args.name,
        args.out_dir.display(),
        fingerprint(&cert_pem)?
    );
    Ok(Outcome::Success)
}

fn intermediate(args: IntermediateArgs) -> anyhow::Result<Outcome> {
    let cert_path = args.root_dir.join(ROOT_CERT);
    let key_path = args.root_dir.join(ROOT_KEY);
    let root_pem = std::fs::read_to_string(&cert_path)
        .with_context(|| format!("cannot read the root certificate {}", cert_path.display()))?;
    let key_text = std::fs::read_to_string(&key_path)
        .with_context(|| format!("cannot read the root key {}", key_path.display()))?;
    let key_pem = match (is_sealed(&key_text), &args.kek_file) {
        (true, Some(kek)) => read_kek(kek)?
            .open_for_certificate(&key_text, &root_pem)
            .with_context(|| format!("cannot open the root key {}", key_path.display()))?,
        (true, None) => bail!(
            "the root key {} is sealed: pass --kek-file with the key-encryption key it was \
             sealed under",
            key_path.display()
        ),
        (false, _) => key_text,
    };
    let root = CertificateAuthority::from_pem(&root_pem, &key_pem)
        .with_context(|| format!("the root CA in {}", args.root_dir.display()))?;
    let issued = root.issue_intermediate(&args.name, args.days)?;
    let bundle = CaInstall {
        certificate_pem: issued.cert_pem,
        key_pem: issued.key_pem,
        trust_pem: root_pem,
        force: false,
    };
    let mut json = serde_json::to_string_pretty(&bundle)?;
    json.push('\n');
    write_new(&args.out, json.as_bytes())?;
    eprintln!(
        "herd: wrote the intermediate CA {:?} to {}: install it with `herd ca install {}`, \
         then delete the file",
        args.name,
        args.out.display(),
        args.out.display()
    );
    Ok(Outcome::Success)
}

fn install(args: InstallArgs) -> anyhow::Result<Outcome> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let mut request: CaInstall = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not what `herd ca intermediate` writes",
            args.file.display()
        )
    })?;
    request.force = args.force;
    let session = Session::open(&args.server)?;
    match session.client.install_ca(&request) {
        Ok(info) => {
            eprintln!(
                "herd: the center now issues with the intermediate CA (generation {}, valid \
                 until {}); delete {}",
                info.generation,
                info.issuer_not_after,
                args.file.display()
            );
            Ok(Outcome::Success)
        }
        Err(err) => session.failed("installing the CA", err),
    }
}

fn show(args: ShowArgs) -> anyhow::Result<Outcome> {
    let session = Session::open(&args.server)?;
    let info = match session.client.ca() {
        Ok(info) => info,
        Err(err) => return session.failed("reading the CA", err),
    };
    if args.json {
        print_json(&info)?;
        return Ok(Outcome::Success);
    }
    let mut text = String::new();
    for anchor in herd_tls::cert_ders_from_pem(&info.trust_pem)? {
        text.push_str(&format!(
            "trust anchor     SHA-256 {}\n",
            herd_tls::cert_sha256_hex(&anchor)
        ));
    }
    text.push_str(&format!(
        "issuing CA       SHA-256 {}\n  valid until    {}\n  offline root   {}\n  generation     {}\n",
        fingerprint(&info.issuer_pem)?,
        info.issuer_not_after,
        if info.offline_root { "yes" } else { "no (the center's own CA)" },
        info.generation
    ));
    print_out(&text)?;
    Ok(Outcome::Success)
}

fn read_kek(path: &Path) -> anyhow::Result<KeyEncryptionKey> {
    let secret = std::fs::read(path)
        .with_context(|| format!("cannot read the key-encryption key {}", path.display()))?;
    KeyEncryptionKey::from_secret(&secret)
        .with_context(|| format!("the key-encryption key {}", path.display()))
}

fn fingerprint(cert_pem: &str) -> anyhow::Result<String> {
    Ok(herd_tls::cert_sha256_hex(&herd_tls::cert_der_from_pem(
        cert_pem,
    )?))
}

/// Writes a new file readable only by its owner; an existing one is never replaced (it may be
/// the only copy of a key).
fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if path.symlink_metadata().is_ok() {
        bail!(
            "{} exists: remove it or choose another name (a key is never overwritten)",
            path.display()
        );
    }
    herd_fs::write_atomic(path, bytes, 0o600)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
