//! `herd package build|inspect`: builds vaccine packages in the `archive` format (a
//! deterministic tar.gz with a `herd-package.json` manifest) and prints the catalog
//! `packages[]` entries that describe them; inspects a package file the way an agent does
//! before installing it.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use herd_package::{
    BuildError, BuiltPackage, Detection, InspectError, Manifest, MemberKind, PackageSpec,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::Outcome;

/// What a manifest looks like and how to build from one; shown by `herd package --help` and
/// `herd package build --help`, where a vendor first needs it.
const MANIFEST_HELP: &str = r#"A package directory holds herd-package.json and the files it names:

  vaccine-b/
    herd-package.json
    defs/b-1112.ndb          ClamAV-format definitions (.hdb .hsb .ndb .ldb)
    test/b-test.txt          a file those definitions detect
    bin/post-install         optional hook, executable

  (the repository ships one as examples/packages/vaccine-b)

  herd-package.json:
  {
    "format": "herd.package/v1",
    "product": "vaccine-b",
    "vendor": "maker-b",
    "version": "7.0",
    "seq": 1112,
    "pattern": "b-1112",
    "engine": "herd-scan/1",
    "definitions": ["defs/b-1112.ndb"],
    "test_pattern": "test/b-test.txt",
    "post_install": "bin/post-install",
    "pre_uninstall": null
  }

Paths are relative, '/'-separated, at most 100 bytes, without '.' or '..' parts. Every regular
file under the directory goes into the package; symbolic links and special files are refused.

Hooks run from the installed version directory as an unprivileged user (the agent's
--hook-user, nobody by default), which can read the product but not change it. A package whose
hooks need root says so with "hooks_run_as": "root"; an agent runs them as root only if it was
started with --allow-root-hooks, and refuses to install the package otherwise. Before anything
is written, the definitions are loaded and must detect the test pattern, as every agent checks
after installing.

A program (fault recovery's middleware, say) is a package of "kind": "program". It carries no
engine, definitions or test pattern; its health check, run by the agent's verify step from the
installed directory (as the hooks are), proves it works, or the install is rolled back:

  {
    "format": "herd.package/v1",
    "kind": "program",
    "product": "middleware-b",
    "vendor": "maker-b",
    "version": "2.0",
    "seq": 20,
    "pattern": "middleware-b 2.0",
    "health_check": {"command": ["bin/middleware", "--health"], "timeout_ms": 5000,
                     "exit_status": 0, "output_contains": "ready"},
    "post_install": null,
    "pre_uninstall": null
  }

The command's program is an executable file of the package (no shell); the check must say the
exit status (0-255), a text its output contains, or both; it is killed after timeout_ms
(1-600000).

Examples:
  herd package build --from-dir vaccine-b --platform phone,pc --out vaccine-b-7.0.tar.gz
  herd package build --product vaccine-b --vendor maker-b --version 7.0 --seq 1112 \
      --pattern b-1112 --defs b-1112.ndb --test-pattern b-test.txt --platform pc --out b.tar.gz
  herd package inspect vaccine-b-7.0.tar.gz

build prints the release's "packages" entries as JSON (one per platform, with the SHA-256 and
size); paste them into the release in your herd.catalog/v1 feed, then `herd publish` the feed
and upload the package.

Exit status: 0 built or accepted, 1 the input was refused (every reason printed), 2 usage or
I/O error."#;

/// Build or inspect vaccine packages (`archive` format).
///
/// A package is a deterministic tar.gz with a herd-package.json manifest: the same inputs
/// always give the same bytes, so the same SHA-256 in the catalog.
#[derive(Debug, clap::Subcommand)]
#[command(after_long_help = MANIFEST_HELP)]
pub enum PackageCommand {
    // `--version` is the package's version here, not the program's.
    #[command(disable_version_flag = true, after_long_help = MANIFEST_HELP)]
    Build(Box<BuildArgs>),
    Inspect(InspectArgs),
}

/// Build a package and print its catalog `packages[]` entries (one per platform) as JSON.
///
/// Either give `--from-dir DIR` holding a herd-package.json and the files it names, or name
/// every input (`--product … --defs … --test-pattern …`): definitions then go under `defs/`,
/// the test pattern under `test/`, hooks under `bin/` (made executable). Nothing is written at
/// `--out` unless the package is accepted; it appears there whole, by a rename.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Build from a directory holding herd-package.json and the files it names.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with_all = ["product", "vendor", "version", "seq", "pattern", "defs", "test_pattern", "post_install", "pre_uninstall"]
    )]
    from_dir: Option<PathBuf>,
    /// The product id, as in the catalog.
    #[arg(long, value_name = "ID", required_unless_present = "from_dir")]
    product: Option<String>,
    /// The vendor id, as in the catalog.
    #[arg(long, value_name = "ID", required_unless_present = "from_dir")]
    vendor: Option<String>,
    /// The release's version (the directory it is unpacked into).
    #[arg(long, value_name = "VERSION", required_unless_present = "from_dir")]
    version: Option<String>,
    /// The definitions release this package carries.
    #[arg(long, value_name = "N", required_unless_present = "from_dir")]
    seq: Option<u64>,
    /// The definitions release's display name (the "pattern file name").
    #[arg(long, value_name = "NAME", required_unless_present = "from_dir")]
    pattern: Option<String>,
    /// Definition files (.hdb, .hsb, .ndb, .ldb), loaded in this order.
    #[arg(long, value_name = "FILE", num_args = 1.., required_unless_present = "from_dir")]
    defs: Vec<PathBuf>,
    /// A file the definitions must detect: how an agent checks the installed product works.
    #[arg(long, value_name = "FILE", required_unless_present = "from_dir")]
    test_pattern: Option<PathBuf>,
    /// Run after unpacking, before the product becomes active.
    #[arg(long, value_name = "FILE")]
    post_install: Option<PathBuf>,
    /// Run before the product is removed.
    #[arg(long, value_name = "FILE")]
    pre_uninstall: Option<PathBuf>,
    /// Platforms the package is for (repeatable or comma-separated): one catalog entry each.
    #[arg(long, value_name = "PLATFORM", required = true, value_delimiter = ',')]
    platform: Vec<String>,
    /// Where to write the package (replaced atomically if it exists).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Check a package as an agent would before installing it, and describe it.
///
/// Refuses what an agent refuses: links, devices, absolute or `..` paths, members given twice,
/// setuid bits, a missing or invalid manifest, files the manifest names that are not there.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The package file (tar, gzip- or zstd-compressed).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Print the digest, manifest and members as one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(command: PackageCommand) -> Result<Outcome> {
    match command {
        PackageCommand::Build(args) => build(&args),
        PackageCommand::Inspect(args) => inspect(&args),
    }
}

fn build(args: &BuildArgs) -> Result<Outcome> {
    let built = match &args.from_dir {
        Some(dir) => herd_package::build_dir(dir, &args.platform, &args.out, Detection::Required),
        None => {
            // clap's `required_unless_present` guarantees these; a message beats a panic if
            // the attributes ever drift.
            let missing = || anyhow::anyhow!("every input is needed without --from-dir");
            let spec = PackageSpec {
                product: args.product.clone().ok_or_else(missing)?,
                vendor: args.vendor.clone().ok_or_else(missing)?,
                version: args.version.clone().ok_or_else(missing)?,
                seq: args.seq.ok_or_else(missing)?,
                pattern: args.pattern.clone().ok_or_else(missing)?,
                definitions: args.defs.clone(),
                test_pattern: args.test_pattern.clone().ok_or_else(missing)?,
                post_install: args.post_install.clone(),
                pre_uninstall: args.pre_uninstall.clone(),
                platforms: args.platform.clone(),
            };
            herd_package::build_with(&spec, &args.out, Detection::Required)
        }
    };
    let built = match built {
        Ok(built) => built,
        Err(BuildError::Io { path, source }) => {
            return Err(source).with_context(|| format!("{}", path.display()));
        }
        Err(refused) => {
            eprintln!("{refused}");
            eprintln!(
                "herd: the package was not built; nothing was written to {}",
                args.out.display()
            );
            return Ok(Outcome::InvalidInput);
        }
    };
    print_json(&built.catalog_packages)?;
    eprintln!("{}", summary(&args.out, &built));
    Ok(Outcome::Success)
}

fn summary(out: &Path, built: &BuiltPackage) -> String {
    let m = &built.manifest;
    format!(
        "herd: built {} ({} bytes, sha256 {}): {} {} by {}, definitions {} ({}), {} definition file(s)",
        out.display(),
        built.size,
        built.sha256,
        m.product,
        m.version,
        m.vendor,
        m.seq,
        m.pattern,
        m.definitions.len()
    )
}

fn inspect(args: &InspectArgs) -> Result<Outcome> {
    let inspection = match herd_package::inspect_file(&args.file) {
        Ok(inspection) => inspection,
        Err(InspectError::Read { document, source }) => {
            return Err(source).with_context(|| document);
        }
        Err(refused) => {
            eprintln!("{refused}");
            eprintln!(
                "herd: {} is not a package an agent accepts",
                args.file.display()
            );
            return Ok(Outcome::InvalidInput);
        }
    };
    let (sha256, size, magic) = digest(&args.file)?;
    let compression = match herd_package::archive::detect_compression(&magic) {
        herd_package::Codec::Gzip => "gzip",
        herd_package::Codec::Zstd => "zstd",
        herd_package::Codec::PlainTar => "none",
    };
    let members: Vec<Member> = inspection
        .members
        .iter()
        .map(|(path, kind)| match kind {
            MemberKind::Dir => Member {
                path,
                kind: "directory",
                size: None,
                executable: None,
            },
            MemberKind::File { size, executable } => Member {
                path,
                kind: "file",
                size: Some(*size),
                executable: Some(*executable),
            },
        })
        .collect();
    let inspected = Inspected {
        file: args.file.display().to_string(),
        sha256,
        size,
        compression,
        unpacked_size: inspection.unpacked_size,
        manifest: &inspection.manifest,
        members,
    };
    if args.json {
        print_json(&inspected)?;
    } else {
        print_text(&describe(&inspected))?;
    }
    Ok(Outcome::Success)
}

/// The file's SHA-256, size and first bytes, streamed: a package can be large.
fn digest(path: &Path) -> Result<(String, u64, Vec<u8>)> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    let mut magic = Vec::new();
    loop {
        let n = std::io::Read::read(&mut file, &mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        if magic.len() < 4 {
            magic.extend_from_slice(&buf[..n.min(4 - magic.len())]);
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let sha256 = hasher.finalize().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });
    Ok((sha256, size, magic))
}

/// The text form: what the package is first, then what it unpacks, each file with its role.
fn describe(i: &Inspected<'_>) -> String {
    let m: &Manifest = i.manifest;
    let mut text = String::new();
    let _ = writeln!(text, "{}: a package an agent accepts", i.file);
    let _ = writeln!(
        text,
        "  product      {} {} by {}",
        m.product, m.version, m.vendor
    );
    let _ = writeln!(text, "  kind         {}", m.kind());
    match &m.engine {
        Some(engine) => {
            let _ = writeln!(
                text,
                "  definitions  seq {} ({}), engine {engine}",
                m.seq, m.pattern
            );
        }
        None => {
            let _ = writeln!(text, "  release      seq {} ({})", m.seq, m.pattern);
        }
    }
    if let Some(check) = &m.health_check {
        let mut gives = Vec::new();
        if let Some(status) = check.exit_status {
            gives.push(format!("exit status {status}"));
        }
        if let Some(output) = &check.output_contains {
            gives.push(format!("output containing {output:?}"));
        }
        let _ = writeln!(
            text,
            "  health check `{}` within {} ms: {}",
            check.command.join(" "),
            check.timeout_ms,
            gives.join(" and ")
        );
    }
    let _ = writeln!(text, "  sha256       {}", i.sha256);
    let _ = writeln!(
        text,
        "  size         {} bytes ({}), {} bytes unpacked",
        i.size, i.compression, i.unpacked_size
    );
    let _ = writeln!(text, "  members");
    let width = i
        .members
        .iter()
        .map(|m| m.path.len() + 1)
        .max()
        .unwrap_or(0);
    for member in &i.members {
        let role = role(m, member.path);
        match member.size {
            None => {
                let _ = writeln!(text, "    {}/", member.path);
            }
            Some(size) => {
                let exec = if member.executable == Some(true) {
                    " executable"
                } else {
                    ""
                };
                let line = format!(
                    "    {:width$} {size:>10}{exec}{}",
                    member.path,
                    role.map(|r| format!("  ({r})")).unwrap_or_default()
                );
                let _ = writeln!(text, "{}", line.trim_end());
            }
        }
    }
    text
}

fn role(m: &Manifest, path: &str) -> Option<&'static str> {
    if path == herd_package::MANIFEST_FILE {
        Some("manifest")
    } else if m.definitions.iter().any(|d| d == path) {
        Some("definitions")
    } else if m.test_pattern.as_deref() == Some(path) {
        Some("test pattern")
    } else if m.health_check.as_ref().and_then(|c| c.program()) == Some(path) {
        Some("health check")
    } else if m.post_install.as_deref() == Some(path) {
        Some("post-install hook")
    } else if m.pre_uninstall.as_deref() == Some(path) {
        Some("pre-uninstall hook")
    } else {
        None
    }
}

/// What `herd package inspect --json` prints, in this order.
#[derive(Serialize)]
struct Inspected<'a> {
    file: String,
    sha256: String,
    size: u64,
    compression: &'static str,
    unpacked_size: u64,
    manifest: &'a herd_package::Manifest,
    members: Vec<Member<'a>>,
}

#[derive(Serialize)]
struct Member<'a> {
    path: &'a str,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    executable: Option<bool>,
}

fn print_text(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        // A closed stdout (`| head`) ends the output; it is not a failure of the command.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn print_json(value: &impl Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let written = serde_json::to_writer_pretty(&mut out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    match written {
        // A closed stdout (`| head`) ends the output; it is not a failure of the command.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
