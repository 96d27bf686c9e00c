//! Definition deltas (SPEC §3.4): a patch that turns the content of one release's package (its
//! uncompressed tar, which the agent keeps) into the next one's, so a terminal downloads what
//! changed instead of the whole definitions set. Pure: bytes in, bytes out; no I/O, no clock.
//!
//! A delta is a format of its own around the patch, so that what it applies to and what it
//! must produce are checked, not assumed:
//!
//! ```text
//! "herd-delta/1\n"                      magic and version (13 bytes)
//! base SHA-256 (32 bytes), base length (u64, little-endian)
//! result SHA-256 (32 bytes), result length (u64, little-endian)
//! patch                                 one zstd frame, the base as its referenced prefix
//! ```
//!
//! The patch is zstd's `--patch-from`: the new content compressed with the old one as a
//! prefix it may copy from (long-distance matching on, a window covering both). ARCHITECTURE.md
//! says why zstd rather than bsdiff, with the figures of both.
//!
//! [`apply`] never trusts the bytes: it refuses a delta for another base, declares its result
//! size before anything is allocated (refused over the caller's `max_output`), decodes in one
//! shot into a buffer of exactly that size plus one byte (zstd's one-shot decoder allocates
//! no window whatever a frame header claims, and cannot write past the buffer), and checks
//! the result's length and SHA-256 before handing it out.

use sha2::{Digest, Sha256};
use zstd_safe::{CCtx, CParameter, DCtx};

/// What every delta starts with: the format's name and its version.
pub const MAGIC: &[u8] = b"herd-delta/";
/// The one version this crate writes and reads, with the line end that closes it.
pub const VERSION: &[u8] = b"1\n";
/// Bytes before the patch: magic, version, then base and result as (SHA-256, length).
pub const HEADER_LEN: usize = MAGIC.len() + VERSION.len() + 2 * (32 + 8);

/// The zstd level of the patch. Measured on a 6.6 MB definitions tar with 1 % of its
/// signatures changed (ARCHITECTURE.md): level 12 makes a 0.72 % delta in 0.12 s, level 19 a
/// 0.63 % one in 5 s, and level 19 takes minutes on a 67 MB set; 12 keeps the center's work
/// per release pair well under a second per 10 MB.
const LEVEL: i32 = 12;
/// zstd's smallest and largest window logs on 64-bit targets (`ZSTD_WINDOWLOG_MIN`,
/// `ZSTD_WINDOWLOG_MAX_64`).
const WINDOW_LOG_MIN: u32 = 10;
const WINDOW_LOG_MAX: u32 = 31;

/// The content a delta applies to or produces, as its header names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Content {
    pub sha256: [u8; 32],
    pub len: u64,
}

impl Content {
    /// The SHA-256 and length of `bytes`.
    pub fn of(bytes: &[u8]) -> Content {
        Content {
            sha256: Sha256::digest(bytes).into(),
            len: bytes.len() as u64,
        }
    }
}

impl std::fmt::Display for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes with SHA-256 {}", self.len, hex(&self.sha256))
    }
}

/// A delta's header: what it applies to and what it produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub base: Content,
    pub result: Content,
}

/// Why a delta was refused. Each names what is wrong; none leaves a partial result behind.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeltaError {
    #[error("not a herd delta: it does not start with \"herd-delta/\"")]
    NotADelta,
    #[error("a herd delta of version {version:?}; this program reads version 1")]
    UnsupportedVersion { version: String },
    #[error("the delta is {len} bytes, shorter than its {HEADER_LEN}-byte header")]
    TruncatedHeader { len: usize },
    #[error(
        "this delta is against another release: it applies to {expected}, not to the {actual} given"
    )]
    WrongBase { expected: Content, actual: Content },
    #[error(
        "the delta declares a result of {declared} bytes, over the limit of {max_output} bytes"
    )]
    ResultTooLarge { declared: u64, max_output: u64 },
    #[error("the patch (at byte {HEADER_LEN} of the delta) is corrupt or truncated: {why}")]
    CorruptPatch { why: &'static str },
    #[error("cannot allocate the {bytes} bytes of the declared result")]
    OutOfMemory { bytes: usize },
    #[error("the patch produced {produced} bytes, not the {declared} the delta declares")]
    ResultLength { declared: u64, produced: u64 },
    #[error("the patch produced content with SHA-256 {produced}, not the declared {declared}")]
    ResultHash { declared: String, produced: String },
}

/// The delta that turns `old` into `new`.
pub fn diff(old: &[u8], new: &[u8]) -> Vec<u8> {
    let header = Header {
        base: Content::of(old),
        result: Content::of(new),
    };
    let mut delta = Vec::with_capacity(HEADER_LEN + zstd_safe::compress_bound(new.len()));
    write_header(&header, &mut delta);
    let mut patch = Vec::with_capacity(zstd_safe::compress_bound(new.len()));
    // zstd takes a prefix sharing memory with the input for the input's own history and finds
    // almost no match (a 30 KB content against itself gave 12 KB instead of 20 bytes), so a
    // caller passing the same buffer twice gets a copy.
    let (old_range, new_range) = (old.as_ptr_range(), new.as_ptr_range());
    if !new.is_empty() && old_range.start < new_range.end && new_range.start < old_range.end {
        let separate = new.to_vec();
        compress(old, &separate, &mut patch);
    } else {
        compress(old, new, &mut patch);
    }
    delta.extend_from_slice(&patch);
    delta
}

/// zstd `--patch-from`: `new` compressed with `old` as a prefix its matches may reach into.
fn compress(old: &[u8], new: &[u8], patch: &mut Vec<u8>) {
    // The window must span the prefix and the whole result for a match at the end of `new` to
    // reach back to the start of `old`; past zstd's largest window the delta is only bigger.
    let span = (old.len() as u64).saturating_add(new.len() as u64).max(1);
    let window_log = (u64::BITS - (span - 1).leading_zeros()).clamp(WINDOW_LOG_MIN, WINDOW_LOG_MAX);
    let mut cctx = CCtx::create();
    // Every call below fails only for a parameter out of zstd's range or an allocation
    // failure; the parameters are constants or clamped into range above.
    let set = |cctx: &mut CCtx<'_>, parameter| {
        cctx.set_parameter(parameter)
            .map_err(zstd_safe::get_error_name)
            .expect("zstd accepts these parameters");
    };
    set(&mut cctx, CParameter::CompressionLevel(LEVEL));
    set(&mut cctx, CParameter::WindowLog(window_log));
    set(&mut cctx, CParameter::EnableLongDistanceMatching(true));
    set(&mut cctx, CParameter::ContentSizeFlag(true));
    // The delta's own header carries the result's SHA-256; zstd's checksum would only repeat it.
    set(&mut cctx, CParameter::ChecksumFlag(false));
    cctx.ref_prefix(old)
        .map_err(zstd_safe::get_error_name)
        .expect("zstd takes any prefix");
    // `patch` has `compress_bound(new.len())` bytes of room, which zstd guarantees is enough.
    cctx.compress2(patch, new)
        .map_err(zstd_safe::get_error_name)
        .expect("zstd compresses into a buffer of its compress bound");
}

/// Reads a delta's header (without the patch): what it applies to and what it produces.
pub fn header(delta: &[u8]) -> Result<Header, DeltaError> {
    if !delta.starts_with(MAGIC) {
        return Err(DeltaError::NotADelta);
    }
    let after_magic = &delta[MAGIC.len()..];
    if VERSION.starts_with(after_magic) && after_magic.len() < VERSION.len() {
        return Err(DeltaError::TruncatedHeader { len: delta.len() });
    }
    if !after_magic.starts_with(VERSION) {
        // Name the version as written, up to its line end (bounded, printable).
        let line = after_magic.split(|&b| b == b'\n').next().unwrap_or(&[]);
        let version = String::from_utf8_lossy(&line[..line.len().min(16)]).into_owned();
        return Err(DeltaError::UnsupportedVersion { version });
    }
    if delta.len() < HEADER_LEN {
        return Err(DeltaError::TruncatedHeader { len: delta.len() });
    }
    let fields = &delta[MAGIC.len() + VERSION.len()..HEADER_LEN];
    let content = |at: usize| Content {
        sha256: fields[at..at + 32].try_into().expect("32 bytes"),
        len: u64::from_le_bytes(fields[at + 32..at + 40].try_into().expect("8 bytes")),
    };
    Ok(Header {
        base: content(0),
        result: content(40),
    })
}

fn write_header(header: &Header, out: &mut Vec<u8>) {
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(VERSION);
    for content in [header.base, header.result] {
        out.extend_from_slice(&content.sha256);
        out.extend_from_slice(&content.len.to_le_bytes());
    }
}

/// Applies `delta` to `old` and returns the new content, checked against the delta's declared
/// SHA-256 and length. Refuses a delta for another base, one declaring a result over
/// `max_output` bytes, a corrupt or truncated patch and a result other than declared. Never
/// allocates more than `max_output` + 1 bytes for the result, plus zstd's decoding context (a
/// constant, about 120 KB, whatever the patch says).
pub fn apply(old: &[u8], delta: &[u8], max_output: u64) -> Result<Vec<u8>, DeltaError> {
    let header = header(delta)?;
    if header.result.len > max_output {
        return Err(DeltaError::ResultTooLarge {
            declared: header.result.len,
            max_output,
        });
    }
    // A declared length the address space cannot hold is over any limit that matters.
    let declared = usize::try_from(header.result.len).map_err(|_| DeltaError::ResultTooLarge {
        declared: header.result.len,
        max_output,
    })?;
    let actual = Content::of(old);
    if header.base != actual {
        return Err(DeltaError::WrongBase {
            expected: header.base,
            actual,
        });
    }
    let mut dctx = DCtx::create();
    let result = decompress(&mut dctx, old, &delta[HEADER_LEN..], declared)?;
    check_result(&header.result, &result)?;
    Ok(result)
}

/// Decodes `patch` against `old` in one shot into a buffer of `declared + 1` bytes: one byte
/// more than declared, so a patch producing too much is caught by its length rather than by
/// zstd's "buffer too small", and nothing more. The one-shot decoder uses the output buffer
/// as its window, so a frame header claiming a huge window or content size allocates nothing.
fn decompress<'a>(
    dctx: &mut DCtx<'a>,
    old: &'a [u8],
    patch: &[u8],
    declared: usize,
) -> Result<Vec<u8>, DeltaError> {
    let corrupt = |code| DeltaError::CorruptPatch {
        why: zstd_safe::get_error_name(code),
    };
    let capacity = declared.saturating_add(1);
    let mut out = Vec::new();
    // Within `max_output` the caller accepts the size; a failed allocation is still an error,
    // not an abort.
    out.try_reserve_exact(capacity)
        .map_err(|_| DeltaError::OutOfMemory { bytes: capacity })?;
    dctx.ref_prefix(old).map_err(corrupt)?;
    dctx.decompress(&mut out, patch).map_err(corrupt)?;
    Ok(out)
}

fn check_result(declared: &Content, result: &[u8]) -> Result<(), DeltaError> {
    if result.len() as u64 != declared.len {
        return Err(DeltaError::ResultLength {
            declared: declared.len,
            produced: result.len() as u64,
        });
    }
    let produced = Content::of(result);
    if produced.sha256 != declared.sha256 {
        return Err(DeltaError::ResultHash {
            declared: hex(&declared.sha256),
            produced: hex(&produced.sha256),
        });
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
