//! Building packages from files (`herd package build`, the demo and the tests): collect the
//! inputs, write the manifest, encode deterministically, write the file atomically, and hand
//! back the digest, size and the catalog `packages[]` entries that describe it.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use herd_core::check_identifier;
use herd_proto::ValidationError;
use herd_proto::catalog::PackageDoc;
use sha2::{Digest, Sha256};

use crate::archive::{self, FileEntry, MemberKind};
use crate::manifest::{ENGINE, MANIFEST_FILE, Manifest, PACKAGE_FORMAT};

/// The inputs of a package given one by one. Files are placed by kind: definitions under
/// `defs/`, the test pattern under `test/`, hooks under `bin/`, each under its own file name.
#[derive(Clone, Debug)]
pub struct PackageSpec {
    pub product: String,
    pub vendor: String,
    pub version: String,
    pub seq: u64,
    pub pattern: String,
    pub definitions: Vec<PathBuf>,
    pub test_pattern: PathBuf,
    pub post_install: Option<PathBuf>,
    pub pre_uninstall: Option<PathBuf>,
    /// Platforms the package is for: one catalog `packages[]` entry each.
    pub platforms: Vec<String>,
}

/// A package written to disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltPackage {
    /// Lowercase hex SHA-256 of the package file.
    pub sha256: String,
    pub size: u64,
    pub manifest: Manifest,
    /// One catalog `packages[]` entry per platform (format `archive`, digest, size, hooks).
    pub catalog_packages: Vec<PackageDoc>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Manifest(#[from] ValidationError),
    #[error(transparent)]
    Package(#[from] archive::InspectError),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Builds a package from explicit inputs into `out`.
pub fn build(spec: &PackageSpec, out: &Path) -> Result<BuiltPackage, BuildError> {
    let mut files = BTreeMap::new();
    let mut place = |dir: &str, source: &Path, executable: bool| -> Result<String, BuildError> {
        let name = source.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            BuildError::Input(format!(
                "{}: the file name must be UTF-8 text",
                source.display()
            ))
        })?;
        let path = format!("{dir}/{name}");
        let data = read_regular(source)?;
        if files
            .insert(path.clone(), FileEntry { data, executable })
            .is_some()
        {
            return Err(BuildError::Input(format!(
                "two inputs would both be {path:?} in the package; rename one of them"
            )));
        }
        Ok(path)
    };
    let definitions = spec
        .definitions
        .iter()
        .map(|d| place("defs", d, false))
        .collect::<Result<Vec<_>, _>>()?;
    let test_pattern = place("test", &spec.test_pattern, false)?;
    let post_install = spec
        .post_install
        .as_deref()
        .map(|h| place("bin", h, true))
        .transpose()?;
    let pre_uninstall = spec
        .pre_uninstall
        .as_deref()
        .map(|h| place("bin", h, true))
        .transpose()?;
    let manifest = Manifest {
        format: PACKAGE_FORMAT.to_owned(),
        product: spec.product.clone(),
        vendor: spec.vendor.clone(),
        version: spec.version.clone(),
        seq: spec.seq,
        pattern: spec.pattern.clone(),
        engine: ENGINE.to_owned(),
        definitions,
        test_pattern,
        post_install,
        pre_uninstall,
    };
    manifest.validate("the package being built")?;
    write_package(&manifest, &files, &spec.platforms, out)
}

/// Builds a package from a directory holding `herd-package.json` and the files it names; every
/// regular file under the directory goes into the package (executable if any x bit is set).
/// Symbolic links and special files are refused rather than followed or skipped.
pub fn build_dir(dir: &Path, platforms: &[String], out: &Path) -> Result<BuiltPackage, BuildError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest_text = fs::read(&manifest_path).map_err(io_error(&manifest_path))?;
    let manifest = Manifest::parse(&manifest_path.display().to_string(), &manifest_text)?;
    let mut files = BTreeMap::new();
    collect_dir(dir, "", &mut files)?;
    files.remove(MANIFEST_FILE);
    write_package(&manifest, &files, platforms, out)
}

fn collect_dir(
    dir: &Path,
    prefix: &str,
    files: &mut BTreeMap<String, FileEntry>,
) -> Result<(), BuildError> {
    let mut entries = fs::read_dir(dir)
        .map_err(io_error(dir))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_error(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().into_string().map_err(|_| {
            BuildError::Input(format!(
                "{}: the file name must be UTF-8 text",
                path.display()
            ))
        })?;
        let package_path = format!("{prefix}{name}");
        let meta = fs::symlink_metadata(&path).map_err(io_error(&path))?;
        if meta.is_dir() {
            collect_dir(&path, &format!("{package_path}/"), files)?;
        } else if meta.is_file() {
            let data = read_regular(&path)?;
            let executable = meta.permissions().mode() & 0o111 != 0;
            files.insert(package_path, FileEntry { data, executable });
        } else {
            return Err(BuildError::Input(format!(
                "{}: only regular files and directories can go into a package",
                path.display()
            )));
        }
    }
    Ok(())
}

fn read_regular(path: &Path) -> Result<Vec<u8>, BuildError> {
    let meta = fs::metadata(path).map_err(io_error(path))?;
    if !meta.is_file() {
        return Err(BuildError::Input(format!(
            "{}: not a regular file",
            path.display()
        )));
    }
    fs::read(path).map_err(io_error(path))
}

fn write_package(
    manifest: &Manifest,
    files: &BTreeMap<String, FileEntry>,
    platforms: &[String],
    out: &Path,
) -> Result<BuiltPackage, BuildError> {
    if platforms.is_empty() {
        return Err(BuildError::Input(
            "name at least one platform the package is for".to_owned(),
        ));
    }
    for platform in platforms {
        check_identifier(platform)
            .map_err(|why| BuildError::Input(format!("platform {platform:?}: {why}")))?;
    }
    let members: BTreeMap<String, MemberKind> = files
        .iter()
        .map(|(path, f)| {
            (
                path.clone(),
                MemberKind::File {
                    size: f.data.len() as u64,
                    executable: f.executable,
                },
            )
        })
        .collect();
    archive::check_members("the package being built", manifest, &members)?;
    let bytes = archive::encode(manifest, files).map_err(io_error(out))?;
    // The same checks an agent makes: what is built here is what an agent accepts.
    let inspected = archive::inspect(&out.display().to_string(), &bytes[..])?;
    debug_assert_eq!(&inspected.manifest, manifest);
    write_atomically(out, &bytes)?;
    let sha256 = hex(&Sha256::digest(&bytes));
    let size = bytes.len() as u64;
    let catalog_packages = platforms
        .iter()
        .map(|platform| PackageDoc {
            platform: platform.clone(),
            format: "archive".to_owned(),
            sha256: sha256.clone(),
            size,
            name: None,
            product_code: None,
            post_install: manifest.post_install.clone(),
            pre_uninstall: manifest.pre_uninstall.clone(),
        })
        .collect();
    Ok(BuiltPackage {
        sha256,
        size,
        manifest: manifest.clone(),
        catalog_packages,
    })
}

/// Writes `bytes` to `out` atomically (herd-fs), so a reader never sees half a package.
/// Packages are published, hence readable by all (less the umask).
fn write_atomically(out: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    if out.file_name().is_none() {
        return Err(BuildError::Input(format!(
            "{}: not a file path",
            out.display()
        )));
    }
    herd_fs::write_atomic(out, bytes, 0o644).map_err(|e| {
        let (path, source) = e.into_path_and_io_error();
        BuildError::Io { path, source }
    })
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
