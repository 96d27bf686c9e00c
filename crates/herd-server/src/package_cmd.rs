//! `herd package build|inspect`: builds vaccine packages in the `archive` format (a
//! deterministic tar.gz with a `herd-package.json` manifest) and prints the catalog
//! `packages[]` entries that describe them; inspects a package file the way an agent does
//! before installing it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use herd_package::{BuildError, BuiltPackage, InspectError, MemberKind, PackageSpec};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::Outcome;

/// Build or inspect vaccine packages (`archive` format).
#[derive(Debug, clap::Subcommand)]
pub enum PackageCommand {
    // `--version` is the package's version here, not the program's.
    #[command(disable_version_flag = true)]
    Build(Box<BuildArgs>),
    Inspect(InspectArgs),
}

/// Build a package and print the catalog `packages[]` entries (one per platform) as JSON.
///
/// Either name every input (`--product … --defs … --test-pattern …`): definitions go under
/// `defs/`, the test pattern under `test/`, hooks under `bin/` (made executable); or give
/// `--from-dir DIR` holding a `herd-package.json` and the files it names. The same inputs
/// always give the same bytes, so the same SHA-256.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
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
    /// Build from a directory holding herd-package.json and the files it names.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with_all = ["product", "vendor", "version", "seq", "pattern", "defs", "test_pattern", "post_install", "pre_uninstall"]
    )]
    from_dir: Option<PathBuf>,
    /// Platforms the package is for (repeatable or comma-separated): one catalog entry each.
    #[arg(long, value_name = "PLATFORM", required = true, value_delimiter = ',')]
    platform: Vec<String>,
    /// Where to write the package.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Check a package as an agent would and print its manifest, members and digest as JSON.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The package file (tar, gzip- or zstd-compressed).
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

pub fn run(command: PackageCommand) -> Result<Outcome> {
    match command {
        PackageCommand::Build(args) => build(&args),
        PackageCommand::Inspect(args) => inspect(&args),
    }
}

fn build(args: &BuildArgs) -> Result<Outcome> {
    let built = match &args.from_dir {
        Some(dir) => herd_package::build_dir(dir, &args.platform, &args.out),
        None => {
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
            herd_package::build(&spec, &args.out)
        }
    };
    let built = match built {
        Ok(built) => built,
        Err(BuildError::Io { path, source }) => {
            return Err(source).with_context(|| format!("{}", path.display()));
        }
        Err(refused) => {
            eprintln!("{refused}");
            eprintln!("herd: the package was not built");
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
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let sha256: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let compression = match herd_package::archive::detect_compression(&bytes) {
        herd_package::Codec::Gzip => "gzip",
        herd_package::Codec::Zstd => "zstd",
        herd_package::Codec::PlainTar => "none",
    };
    let members = inspection
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
    print_json(&Inspected {
        file: args.file.display().to_string(),
        sha256,
        size: bytes.len() as u64,
        compression,
        unpacked_size: inspection.unpacked_size,
        manifest: &inspection.manifest,
        members,
    })?;
    Ok(Outcome::Success)
}

/// What `herd package inspect` prints, in this order.
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// As `herd`'s own: the program's `--version` propagated to every subcommand.
    #[derive(Debug, Parser)]
    #[command(version, propagate_version = true)]
    struct Cli {
        #[command(subcommand)]
        command: PackageCommand,
    }

    fn parse(args: &[&str]) -> PackageCommand {
        Cli::try_parse_from(std::iter::once("package").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    #[test]
    fn builds_from_flags_and_from_a_directory_to_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, content: &str| {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, content).unwrap();
            path.display().to_string()
        };
        let defs = file("in/b.ndb", "B.Test:0:*:48455244\n");
        let test = file("in/b.txt", "HERD");
        let out = dir.path().join("b.tar.gz").display().to_string();
        let command = parse(&[
            "build",
            "--product",
            "vaccine-b",
            "--vendor",
            "maker-b",
            "--version",
            "7.0",
            "--seq",
            "1112",
            "--pattern",
            "b-1112",
            "--defs",
            &defs,
            "--test-pattern",
            &test,
            "--platform",
            "pc,phone",
            "--out",
            &out,
        ]);
        assert!(matches!(run(command).unwrap(), Outcome::Success));
        let first = std::fs::read(&out).unwrap();
        let manifest = herd_package::read_manifest(Path::new(&out)).unwrap();
        assert_eq!(manifest.definitions, ["defs/b.ndb"]);

        file(
            "spec/herd-package.json",
            &String::from_utf8(manifest.to_json()).unwrap(),
        );
        file("spec/defs/b.ndb", "B.Test:0:*:48455244\n");
        file("spec/test/b.txt", "HERD");
        let spec = dir.path().join("spec").display().to_string();
        let out2 = dir.path().join("c.tar.gz").display().to_string();
        let command = parse(&[
            "build",
            "--from-dir",
            &spec,
            "--platform",
            "pc",
            "--platform",
            "phone",
            "--out",
            &out2,
        ]);
        assert!(matches!(run(command).unwrap(), Outcome::Success));
        assert_eq!(std::fs::read(&out2).unwrap(), first);

        let command = parse(&["inspect", &out]);
        assert!(matches!(run(command).unwrap(), Outcome::Success));
    }

    #[test]
    fn refused_inputs_are_invalid_input_not_errors() {
        let dir = tempfile::tempdir().unwrap();
        let defs = dir.path().join("b.cvd");
        std::fs::write(&defs, "x").unwrap();
        let out = dir.path().join("b.tar.gz");
        let command = parse(&[
            "build",
            "--product",
            "b",
            "--vendor",
            "m",
            "--version",
            "1",
            "--seq",
            "1",
            "--pattern",
            "p",
            "--defs",
            defs.to_str().unwrap(),
            "--test-pattern",
            defs.to_str().unwrap(),
            "--platform",
            "pc",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(matches!(run(command).unwrap(), Outcome::InvalidInput));
        assert!(!out.exists());

        let not_a_package = dir.path().join("x.tar");
        std::fs::write(&not_a_package, vec![0u8; 1024]).unwrap();
        let command = parse(&["inspect", not_a_package.to_str().unwrap()]);
        assert!(matches!(run(command).unwrap(), Outcome::InvalidInput));
        let command = parse(&["inspect", dir.path().join("missing").to_str().unwrap()]);
        assert!(run(command).is_err());
    }
}
