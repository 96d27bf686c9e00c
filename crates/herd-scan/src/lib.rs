//! The scan engine (issue 5): ClamAV signature formats, the matcher, archive walking.
//!
//! Pure apart from `walk` and `mapped`: signature text and file bytes go in, detections come
//! out. `walk` is the edge that walks and reads scanned files (directory walking without
//! following symlinks, reading files into a reused buffer); `mapped` opens, checks and maps a
//! hash signature index file (`hashtable` is its format, pure). Everything else is testable on
//! slices, including `cvd` (ClamAV's signed `.cvd`/`.cld` containers).
//!
//! Pipeline: `Database::load` parses `.hdb`/`.hsb`/`.ndb`/`.ldb`/`.fp`/`.sfp`/`.ign2` text
//! (and `.yar` with the `yara` feature) (one `ParseError` per bad or unsupported line, the
//! good lines kept), `Engine::new` compiles it into one `Matcher` per signature target, and
//! `Scanner::scan` runs it over a buffer and the zip/tar/gzip members inside it — each typed
//! by `filetype` and matched raw and, for text and HTML, normalised (`normalise`), as ClamAV
//! matches them.
//!
//! Why two prefilters: the `aho-corasick` crate is exact and fast for a few patterns but ran at
//! 57 MB/s with 10,000 literals on this machine (DEPENDENCIES.md), far from the 1 GB/s target;
//! a sampled 8-byte-gram bitmap over anchors of at least 16 bytes reads one gram every 9
//! bytes whatever the signature count (4-byte grams every 5 bytes for anchors of 8 to 15
//! bytes). Anchors shorter than 8 bytes still go to Aho-Corasick. Hash signatures only cost a digest when a file's size appears in them.

pub mod archive;
pub mod cvd;
pub mod db;
pub mod engine;
pub mod error;
pub mod filetype;
pub mod gram;
pub mod hashtable;
pub mod hex;
pub mod mapped;
pub mod matcher;
pub mod md5x;
pub mod normalise;
pub mod pe;
pub mod scan;
pub mod verify;
pub mod walk;
#[cfg(feature = "yara")]
pub mod yara;

pub use db::Database;
pub use engine::{Engine, EngineOptions, KnownDigests, MatchOptions, Scratch};
pub use error::{ParseError, ParseErrorKind, ScanError};
pub use scan::{Detection, Limits, Note, NoteKind, Report, Scanner, Verdict};

/// The EICAR anti-virus test file (68 bytes), for tests and self-checks.
pub const EICAR: &[u8; 68] =
    b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
