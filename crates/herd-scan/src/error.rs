//! The errors of the scan engine: one for a bad signature line, one for a failed scan.
//!
//! A bad line is data, not a failure of the whole load: `Database::load` keeps every good
//! line and returns one `ParseError` per bad line, so the caller decides whether to go on.

use std::fmt;

/// One signature line that could not be loaded, with the file and 1-based line it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {kind}")]
pub struct ParseError {
    /// The database file name as given to `Database::load` (not necessarily a path).
    pub file: String,
    /// 1-based line number; 0 when the error is about the whole file.
    pub line: usize,
    pub kind: ParseErrorKind,
}

/// What was wrong with a line. `Unsupported*` variants are valid ClamAV the engine does not
/// implement; the others are malformed input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    #[error(
        "unsupported database type {0:?} (supported: .hdb, .hsb, .ndb, .ldb, .fp, .sfp, .ign2, .yar, .yara)"
    )]
    UnsupportedDatabaseType(String),
    #[error("expected {expected} fields separated by '{separator}', found {found}")]
    FieldCount {
        expected: &'static str,
        separator: char,
        found: usize,
    },
    #[error("empty signature name")]
    EmptyName,
    #[error("signature name of {0} bytes is too long (at most 65535)")]
    NameTooLong(usize),
    #[error("bad hash {hash:?}: {reason}")]
    BadHash { hash: String, reason: &'static str },
    #[error("bad file size {0:?}: expected a decimal number or '*'")]
    BadSize(String),
    #[error("bad functionality level {0:?}: expected a decimal number")]
    BadFlevel(String),
    #[error("bad offset {offset:?}: {reason}")]
    BadOffset {
        offset: String,
        reason: &'static str,
    },
    #[error(
        "unsupported offset {0:?} (supported: *, n, EOF-n, and EP+n, EP-n, Sx+n, SL+n, SEx for target 1, each with an optional ,maxshift)"
    )]
    UnsupportedOffset(String),
    #[error(
        "unsupported target type {0} (supported: 0 any, 1 PE, 3 HTML, 4 mail, 5 graphics, 6 ELF, 7 ASCII text, 9 Mach-O, 10 PDF, 11 Flash, 12 Java)"
    )]
    UnsupportedTarget(String),
    #[error("bad target type {0:?}: expected a decimal number")]
    BadTarget(String),
    #[error("bad hex signature at column {column}: {reason}")]
    BadHex { column: usize, reason: String },
    #[error("unsupported construct in hex signature at column {column}: {construct}")]
    UnsupportedHex {
        column: usize,
        construct: &'static str,
    },
    #[error("no fixed run of at least 2 bytes to anchor the signature on")]
    NoAnchor,
    #[error("bad logical signature: {0}")]
    BadLogical(String),
    #[error("unsupported in logical signature: {0}")]
    UnsupportedLogical(String),
    #[error("bad container signature: {0}")]
    BadContainerSig(String),
    #[error("unsupported in container signature: {0}")]
    UnsupportedContainerSig(String),
    #[error("the file is not valid UTF-8 text")]
    NotText,
    #[error("YARA rules need herd-scan's `yara` cargo feature, which this build does not have")]
    YaraDisabled,
    #[error("bad YARA rules: {0}")]
    BadYara(String),
}

/// A scan of one buffer that could not finish. Limits that stop archive extraction are not
/// errors (they are `Note`s in the report); this is for work the engine refused to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// Verifying candidate matches took more steps than allowed; the file may be crafted to
    /// make verification slow, so it is reported rather than passed as clean.
    #[error("signature verification exceeded its work budget ({0} steps)")]
    VerificationBudget(u64),
    /// yara-x refused or failed the scan (for example its timeout).
    #[error("YARA scan failed: {0}")]
    Yara(String),
}

/// Where in a nested archive something was found: the member names from outside in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchivePath(pub Vec<String>);

impl fmt::Display for ArchivePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, part) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("//")?;
            }
            f.write_str(part)?;
        }
        Ok(())
    }
}
