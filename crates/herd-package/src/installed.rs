//! The file-system side: inspecting a package file (zstd through the `zstd` program, as the
//! install script does), verifying an installed product, and reading which product is active.
//!
//! Layout under the agent's product prefix (SPEC §6, ARCHITECTURE "archive install order"):
//! `<prefix>/products/<product>/<version>/` holds an unpacked package, and `<prefix>/current`
//! is a relative symbolic link to the active one.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use herd_proto::ValidationError;
use herd_proto::layout::CURRENT;
use herd_proto::terminal::InstalledDoc;
use herd_scan::walk::{self, ReadOutcome};
use herd_scan::{Database, Engine, Limits, MatchOptions, Scanner, Scratch};

use crate::archive::{self, Codec, InspectError, Inspection};
use crate::manifest::{MANIFEST_FILE, Manifest};

/// A definitions file larger than this is refused unread.
const MAX_DEFINITIONS_FILE: u64 = 1 << 30;

/// A test pattern larger than this is refused unread.
const MAX_TEST_PATTERN: u64 = 64 << 20;

/// Reads and checks a package file, whatever its compression.
pub fn inspect_file(path: &Path) -> Result<Inspection, InspectError> {
    let document = path.display().to_string();
    read_decompressed(path, &mut |reader| archive::inspect_tar(&document, reader))
}

/// Hands `read` the package file's tar stream, decompressed: gzip in process, zstd through the
/// `zstd` program (as the install scripts do), plain tar as it is. Only decompression happens
/// here; the tar stream is read by `read` alone.
pub(crate) fn read_decompressed<T>(
    path: &Path,
    read: &mut dyn FnMut(&mut dyn io::Read) -> Result<T, InspectError>,
) -> Result<T, InspectError> {
    let document = path.display().to_string();
    let read_error = |source| InspectError::Read {
        document: document.clone(),
        source,
    };
    let mut file = fs::File::open(path).map_err(read_error)?;
    let mut magic = [0u8; 4];
    let n = io::Read::read(&mut file, &mut magic).map_err(read_error)?;
    match archive::detect_compression(&magic[..n]) {
        Codec::Gzip => {
            let file = fs::File::open(path).map_err(read_error)?;
            let mut decoder = flate2::read::GzDecoder::new(io::BufReader::new(file));
            return read(&mut decoder);
        }
        Codec::PlainTar => {
            let file = fs::File::open(path).map_err(read_error)?;
            return read(&mut io::BufReader::new(file));
        }
        Codec::Zstd => {}
    }
    let zstd_error = |why: String| InspectError::Zstd {
        document: document.clone(),
        why,
    };
    let mut child = Command::new("zstd")
        .args(["-dcq", "--"])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| zstd_error(format!("cannot run zstd: {e}")))?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let result = read(&mut stdout);
    // Dropping the pipe makes a zstd still writing get EPIPE and end.
    drop(stdout);
    let output = child
        .wait_with_output()
        .map_err(|e| zstd_error(format!("waiting for zstd: {e}")))?;
    // zstd's own failure (corrupt input) explains a broken tar stream better than the tar
    // reader can; a zstd ended by the closed pipe has no exit code.
    let zstd_failed = output.status.code().is_some_and(|code| code != 0);
    match result {
        Ok(_) | Err(_) if zstd_failed => Err(zstd_error(format!(
            "zstd failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))),
        Ok(value) => Ok(value),
        Err(err) => Err(err),
    }
}

/// The manifest of a package file, after checking the whole package.
pub fn read_manifest(path: &Path) -> Result<Manifest, InspectError> {
    inspect_file(path).map(|inspection| inspection.manifest)
}

/// What a plan expects the installed product to be.
#[derive(Clone, Copy, Debug)]
pub struct Expected<'a> {
    pub product: &'a str,
    pub version: &'a str,
    pub seq: u64,
    pub pattern: &'a str,
}

/// A product that is the one expected and, when it carries definitions, loaded them and
/// detected its own test pattern. A program without a test pattern is proved by its health
/// check, which the agent runs ([`VerifyOutcome::detected_as`] is then `None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyOutcome {
    pub manifest: Manifest,
    /// Signatures loaded from the definition files (0 for a program without definitions).
    pub signatures: usize,
    /// The name the test pattern was detected as; `None` when the package has no test pattern.
    pub detected_as: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{path}: cannot read the manifest: {source}")]
    ManifestUnreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Manifest(#[from] ValidationError),
    #[error("{dir}: the installed package has {field} {found:?}; the plan expects {expected:?}")]
    Mismatch {
        dir: PathBuf,
        field: &'static str,
        expected: String,
        found: String,
    },
    #[error("{path}: cannot read the definitions: {source}")]
    DefinitionsUnreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the definitions do not load: {}", .errors.join("; "))]
    Definitions { errors: Vec<String> },
    #[error("{dir}: the definitions hold no signatures")]
    NoSignatures { dir: PathBuf },
    #[error("{path}: cannot read the test pattern: {why}")]
    TestPatternUnreadable { path: PathBuf, why: String },
    #[error("{path}: the test pattern is not detected by the product's {signatures} signature(s)")]
    NotDetected { path: PathBuf, signatures: usize },
    #[error("{path}: scanning the test pattern failed: {why}")]
    Scan { path: PathBuf, why: String },
}

/// Reads the manifest of an unpacked package.
pub fn installed_manifest(dir: &Path) -> Result<Manifest, VerifyError> {
    let path = dir.join(MANIFEST_FILE);
    let mut text = Vec::new();
    match walk::read_file(&path, archive::MAX_MANIFEST_SIZE, &mut text) {
        Ok(ReadOutcome::Read) => {}
        Ok(outcome) => {
            return Err(VerifyError::ManifestUnreadable {
                path,
                source: io::Error::other(match outcome {
                    ReadOutcome::TooLarge => "larger than the manifest limit",
                    _ => "not a regular file",
                }),
            });
        }
        Err(source) => return Err(VerifyError::ManifestUnreadable { path, source }),
    }
    Ok(Manifest::parse(&path.display().to_string(), &text)?)
}

/// Checks that the product unpacked in `dir` is the one expected, that its definitions load
/// with `herd-scan`'s loader, and that they detect its test pattern (when it has one: a
/// program without definitions is proved by its health check, which the agent runs).
pub fn verify_installed(dir: &Path, expected: &Expected<'_>) -> Result<VerifyOutcome, VerifyError> {
    let manifest = installed_manifest(dir)?;
    let seq = manifest.seq.to_string();
    for (field, want, found) in [
        ("product", expected.product, manifest.product.as_str()),
        ("version", expected.version, manifest.version.as_str()),
        ("seq", &expected.seq.to_string(), seq.as_str()),
        ("pattern", expected.pattern, manifest.pattern.as_str()),
    ] {
        if want != found {
            return Err(VerifyError::Mismatch {
                dir: dir.to_owned(),
                field,
                expected: want.to_owned(),
                found: found.to_owned(),
            });
        }
    }
    let Some(test_pattern) = manifest.test_pattern.clone() else {
        return Ok(VerifyOutcome {
            manifest,
            signatures: 0,
            detected_as: None,
        });
    };
    let mut definitions = Vec::with_capacity(manifest.definitions.len());
    for relative in &manifest.definitions {
        let path = dir.join(relative);
        let mut buf = Vec::new();
        match walk::read_file(&path, MAX_DEFINITIONS_FILE, &mut buf) {
            Ok(ReadOutcome::Read) => {}
            Ok(outcome) => {
                let why = match outcome {
                    ReadOutcome::TooLarge => "larger than 1 GiB",
                    _ => "not a regular file",
                };
                return Err(VerifyError::DefinitionsUnreadable {
                    path,
                    source: io::Error::other(why),
                });
            }
            Err(source) => return Err(VerifyError::DefinitionsUnreadable { path, source }),
        }
        definitions.push((path, buf));
    }
    let test_pattern = dir.join(test_pattern);
    let mut buf = Vec::new();
    match walk::read_file(&test_pattern, MAX_TEST_PATTERN, &mut buf) {
        Ok(ReadOutcome::Read) => {}
        Ok(ReadOutcome::TooLarge) => {
            return Err(VerifyError::TestPatternUnreadable {
                path: test_pattern,
                why: format!("larger than {MAX_TEST_PATTERN} bytes"),
            });
        }
        Ok(ReadOutcome::NotRegular) => {
            return Err(VerifyError::TestPatternUnreadable {
                path: test_pattern,
                why: "not a regular file".to_owned(),
            });
        }
        Err(e) => {
            return Err(VerifyError::TestPatternUnreadable {
                path: test_pattern,
                why: e.to_string(),
            });
        }
    }
    let definitions: Vec<(&Path, &[u8])> = definitions
        .iter()
        .map(|(path, bytes)| (path.as_path(), bytes.as_slice()))
        .collect();
    let (signatures, detected_as) = detect(dir, &definitions, (&test_pattern, &buf))?;
    Ok(VerifyOutcome {
        manifest,
        signatures,
        detected_as: Some(detected_as),
    })
}

/// Loads `definitions` (each named by the path shown in errors) with `herd-scan`'s loader and
/// scans `test_pattern` with them: the one proof that a product works, shared by the agent
/// (files unpacked under `dir`) and `herd package build` (files about to be packed, so a
/// vendor learns of a broken package before any terminal does). Returns the signature count
/// and the name the test pattern was detected as.
pub(crate) fn detect(
    dir: &Path,
    definitions: &[(&Path, &[u8])],
    test_pattern: (&Path, &[u8]),
) -> Result<(usize, String), VerifyError> {
    let mut db = Database::new();
    let mut errors = Vec::new();
    for (path, bytes) in definitions {
        errors.extend(
            db.load(&path.display().to_string(), bytes)
                .iter()
                .map(ToString::to_string),
        );
    }
    if !errors.is_empty() {
        const SHOWN: usize = 5;
        let more = errors.len().saturating_sub(SHOWN);
        errors.truncate(SHOWN);
        if more > 0 {
            errors.push(format!("and {more} more"));
        }
        return Err(VerifyError::Definitions { errors });
    }
    if db.is_empty() {
        return Err(VerifyError::NoSignatures {
            dir: dir.to_owned(),
        });
    }
    let signatures = db.len();
    let engine = Engine::new(&db);
    let (path, bytes) = test_pattern;
    let scanner = Scanner {
        engine: &engine,
        limits: Limits::default(),
        options: MatchOptions::default(),
    };
    let report = scanner.scan(bytes, &mut Scratch::default());
    if let Some(detection) = report.detections.first() {
        return Ok((signatures, detection.name.to_string()));
    }
    if let Some(error) = report.error {
        return Err(VerifyError::Scan {
            path: path.to_owned(),
            why: error.to_string(),
        });
    }
    Err(VerifyError::NotDetected {
        path: path.to_owned(),
        signatures,
    })
}

/// Where `<prefix>/current` points (the link text), or `None` when there is no such link.
pub fn current_target(prefix: &Path) -> io::Result<Option<PathBuf>> {
    match fs::read_link(prefix.join(CURRENT)) {
        Ok(target) => Ok(Some(target)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The directory of the active product, or `None` when no product is active.
pub fn active_dir(prefix: &Path) -> io::Result<Option<PathBuf>> {
    Ok(current_target(prefix)?.map(|target| prefix.join(target)))
}

#[derive(Debug, thiserror::Error)]
pub enum InstalledError {
    #[error("{prefix}/current: {source}")]
    Link {
        prefix: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the active product is broken: {0}")]
    Manifest(#[from] VerifyError),
}

/// What the agent reports as installed: the manifest of the product `<prefix>/current` points
/// at, or `None` when no product is active.
pub fn installed_product(prefix: &Path) -> Result<Option<InstalledDoc>, InstalledError> {
    let dir = active_dir(prefix).map_err(|source| InstalledError::Link {
        prefix: prefix.to_owned(),
        source,
    })?;
    let Some(dir) = dir else {
        return Ok(None);
    };
    let manifest = installed_manifest(&dir)?;
    Ok(Some(InstalledDoc {
        product: manifest.product,
        version: manifest.version,
        seq: manifest.seq,
        pattern: manifest.pattern,
        format: "archive".to_owned(),
    }))
}
