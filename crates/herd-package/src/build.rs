//! Building packages from files (`herd package build`, the demo and the tests): collect the
//! inputs, write the manifest, check what an agent will check (and, when asked, that the
//! definitions detect the test pattern), encode deterministically, write the file atomically,
//! and hand back the digest, size and the catalog `packages[]` entries that describe it.
//!
//! Every refusal happens before the output path is touched, and the file appears there only
//! by a rename, so a refused or interrupted build never leaves half a package behind.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use herd_core::check_identifier;
use herd_proto::ValidationError;
use herd_proto::catalog::PackageDoc;
use sha2::{Digest, Sha256};

use crate::archive::{self, FileEntry, MAX_MANIFEST_SIZE, MemberKind};
use crate::installed::{self, VerifyError};
use crate::manifest::{ENGINE, MANIFEST_FILE, Manifest, PACKAGE_FORMAT};

/// Whether a build proves, before writing anything, that the definitions load and detect the
/// test pattern — what every agent checks after installing, and so what makes a package usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detection {
    /// Load the definitions with `herd-scan` and scan the test pattern; refuse the package if
    /// they do not load or do not detect it. What `herd package build` does.
    Required,
    /// Build without that check: for tests that need the broken packages an agent must refuse
    /// or roll back.
    NotChecked,
}

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
    #[error("{0}")]
    Detection(#[from] VerifyError),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Builds a package from explicit inputs into `out`, without checking that the definitions
/// detect the test pattern (see [`build_with`]).
pub fn build(spec: &PackageSpec, out: &Path) -> Result<BuiltPackage, BuildError> {
    build_with(spec, out, Detection::NotChecked)
}

/// Builds a package from explicit inputs into `out`.
pub fn build_with(
    spec: &PackageSpec,
    out: &Path,
    detection: Detection,
) -> Result<BuiltPackage, BuildError> {
    let mut files = BTreeMap::new();
    let mut sources = BTreeMap::new();
    let mut place = |dir: &str, source: &Path, executable: bool| -> Result<String, BuildError> {
        let name = source.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            BuildError::Input(format!(
                "{}: the file name must be UTF-8 text",
                source.display()
            ))
        })?;
        let path = format!("{dir}/{name}");
        let data = read_regular(source)?;
        sources.insert(path.clone(), source.to_owned());
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
        kind: None,
        engine: Some(ENGINE.to_owned()),
        definitions,
        test_pattern: Some(test_pattern),
        health_check: None,
        post_install,
        pre_uninstall,
        // A spec builds packages whose hooks run unprivileged; a vendor whose hooks need root
        // says so in a spec directory's own manifest (`build_dir`).
        hooks_run_as: None,
        run: None,
    };
    let document = "the package being built";
    manifest.validate(document)?;
    if detection == Detection::Required {
        check_detection(document, &manifest, &files, &sources)?;
    }
    write_package(document, &manifest, &files, &spec.platforms, out)
}

/// Builds a package from a directory holding `herd-package.json` and the files it names; every
/// regular file under the directory goes into the package (executable if any x bit is set).
/// Symbolic links and special files are refused rather than followed or skipped, and `out` may
/// not lie inside `dir` (the next build would pack the previous package).
pub fn build_dir(
    dir: &Path,
    platforms: &[String],
    out: &Path,
    detection: Detection,
) -> Result<BuiltPackage, BuildError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let document = manifest_path.display().to_string();
    let manifest_text = read_manifest_file(&manifest_path)?;
    let manifest = Manifest::parse(&document, &manifest_text)?;
    refuse_output_inside(dir, out)?;
    let mut files = BTreeMap::new();
    collect_dir(dir, "", &mut files)?;
    files.remove(MANIFEST_FILE);
    if detection == Detection::Required {
        let sources = files.keys().map(|p| (p.clone(), dir.join(p))).collect();
        // Missing files are reported by `check_members` below in the manifest's words, but
        // detection needs them first.
        archive::check_members(&document, &manifest, &members_of(&files))?;
        check_detection(&document, &manifest, &files, &sources)?;
    }
    write_package(&document, &manifest, &files, platforms, out)
}

/// The manifest's bytes: a regular file (not a link to one elsewhere), at most
/// [`MAX_MANIFEST_SIZE`] bytes, the same limit an agent applies.
fn read_manifest_file(path: &Path) -> Result<Vec<u8>, BuildError> {
    let meta = fs::symlink_metadata(path).map_err(io_error(path))?;
    if !meta.is_file() {
        return Err(BuildError::Input(format!(
            "{}: the manifest must be a regular file, not a symbolic link or directory",
            path.display()
        )));
    }
    if meta.len() > MAX_MANIFEST_SIZE {
        return Err(BuildError::Input(format!(
            "{}: the manifest is {} bytes; an agent reads at most {MAX_MANIFEST_SIZE}",
            path.display(),
            meta.len()
        )));
    }
    let mut text = Vec::new();
    fs::File::open(path)
        .and_then(|f| f.take(MAX_MANIFEST_SIZE + 1).read_to_end(&mut text))
        .map_err(io_error(path))?;
    Ok(text)
}

/// Refuses an output path inside the source directory, which would put this package into the
/// next one built from the same directory.
fn refuse_output_inside(dir: &Path, out: &Path) -> Result<(), BuildError> {
    let dir = fs::canonicalize(dir).map_err(io_error(dir))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // A parent that does not exist is reported when the package is written.
    if let Ok(parent) = fs::canonicalize(parent)
        && parent.starts_with(&dir)
    {
        return Err(BuildError::Input(format!(
            "{}: the output lies inside the package directory {}; write it elsewhere",
            out.display(),
            dir.display()
        )));
    }
    Ok(())
}

fn members_of(files: &BTreeMap<String, FileEntry>) -> BTreeMap<String, MemberKind> {
    files
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
        .collect()
}

/// Runs the agent's proof (definitions load, test pattern detected) on the files about to be
/// packed; errors name each file by its source path.
fn check_detection(
    document: &str,
    manifest: &Manifest,
    files: &BTreeMap<String, FileEntry>,
    sources: &BTreeMap<String, PathBuf>,
) -> Result<(), BuildError> {
    let source = |path: &str| {
        sources
            .get(path)
            .cloned()
            .unwrap_or_else(|| PathBuf::from(path))
    };
    let file = |path: &str| {
        files.get(path).map(|f| f.data.as_slice()).ok_or_else(|| {
            BuildError::Input(format!(
                "{document}: {MANIFEST_FILE} names {path:?}, which is not in the package"
            ))
        })
    };
    // A program without definitions has nothing to detect: its health check runs on the
    // terminal, from the installed files.
    let Some(test_pattern) = &manifest.test_pattern else {
        return Ok(());
    };
    let definition_paths: Vec<PathBuf> = manifest.definitions.iter().map(|d| source(d)).collect();
    let mut definitions = Vec::with_capacity(definition_paths.len());
    for (path, relative) in definition_paths.iter().zip(&manifest.definitions) {
        definitions.push((path.as_path(), file(relative)?));
    }
    let test_bytes = file(test_pattern)?;
    let test_pattern = source(test_pattern);
    installed::detect(
        Path::new(document),
        &definitions,
        (&test_pattern, test_bytes),
    )?;
    Ok(())
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
    document: &str,
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
    archive::check_members(document, manifest, &members_of(files))?;
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
