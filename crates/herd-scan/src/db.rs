//! Signature databases in ClamAV's text formats, parsed line by line into a `Database`.
//!
//! Supported files and fields:
//! - `.hdb`: `MD5:Size:Name[:MinFL[:MaxFL]]` — the MD5 of the whole file; `Size` may be `*`.
//! - `.hsb`: `HASH:Size:Name[:MinFL[:MaxFL]]` — the SHA-1 (40 hex digits) or SHA-256 (64) of
//!   the whole file; `*` allowed. (`.mdb`/`.msb`, PE section hashes, are not supported.)
//! - `.fp` and `.sfp`: allow-lists in the `.hdb` and `.hsb` formats (MD5, SHA-256): a file or
//!   archive member with that hash is clean, and so is everything inside it.
//! - `.cdb`: container metadata, `Name:ContainerType:ContainerSize:NameRegex:SizeInContainer:
//!   RealSize:IsEncrypted:FilePos:Res1:Res2[:MinFL[:MaxFL]]` — for zip and tar containers
//!   (`CL_TYPE_ZIP`, `CL_TYPE_POSIX_TAR`, `CL_TYPE_OLD_TAR` or `*`), sizes and positions as `n`,
//!   `a-b` or `*`, the name an extended regular expression searched in the member name,
//!   `Res1`/`Res2` ignored as ClamAV ignores them; other container types are unsupported.
//! - `.ign2`: one signature name a line; signatures of that name are not loaded. The
//!   `Name:MD5` form (ignore only the signature line with that MD5) is unsupported.
//! - `.ndb`: `Name:Target:Offset:HexSig[:MinFL[:MaxFL]]`, targets as in `filetype::Target`
//!   (0 any, 1 PE, 3 HTML, 4 mail, 5 graphics, 6 ELF, 7 ASCII text, 9 Mach-O, 10 PDF,
//!   11 Flash, 12 Java; 2 OLE2 and the internal targets are unsupported); offsets `*`, `n`,
//!   `n,maxshift`, `EOF-n`, `EOF-n,maxshift` (the start of the match), and for target 1 the
//!   executable-relative `EP+n`, `EP-n`, `Sx+n`, `SL+n`, `SEx` (each with `,maxshift`);
//!   `VI` and macros (`$n$`) are unsupported; hex syntax in `hex`.
//! - `.ldb`: `Name;TDB;Expr;Sub0[;Sub1…]` where the target description block `TDB` takes
//!   `Target:n` (as `.ndb`), `Engine:a-b`, `FileSize:a-b`, `EntryPoint:a-b` and
//!   `NumberOfSections:a-b` (PE only), and `Container:CL_TYPE_ZIP|CL_TYPE_GZ|CL_TYPE_POSIX_TAR|
//!   CL_TYPE_OLD_TAR|CL_TYPE_ANY` (the type of the archive the file was found in);
//!   `Expr` uses subsignature indices, `&`, `|`, parentheses and match counts (`0=5`, `0>2`,
//!   `0<3`, `(0|1)>2,1`: more than 2 matches in all from at least 1 distinct subsignature),
//!   evaluated as ClamAV's `cli_ac_chklsig` does (`a&b|c` is `a&(b|c)`); each subsignature is
//!   `[Offset:]HexSig` or a PCRE subsignature `[Offset:]Trigger/Regex/[Flags]` (see
//!   `parse_pcre` for the flags; what the `regex` crate cannot run is refused). Other TDB keys,
//!   subsignature modifiers (`::i`, `::w`, …), byte comparisons of text values (`h`, `d`,
//!   `a`; binary `i` ones are supported, see `parse_bytecmp`) and macros are reported as
//!   unsupported.
//!
//! Functionality levels (`MinFL`, `MaxFL`) are checked for syntax and otherwise ignored: this
//! engine behaves as a current ClamAV. Blank lines and lines starting with `#` are skipped.
//! Every other line either loads or yields one `ParseError` naming file, line and reason.

use std::sync::Arc;

use crate::error::{ParseError, ParseErrorKind};
use crate::filetype::Target;
use crate::hex::{self, HexPattern};
use crate::pe::ExeLayout;

/// Where a body signature may start in the scanned bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    /// Anywhere (`*`).
    Any,
    /// At `n` bytes from the start (or from the end when `from_eof`, `EOF-n`), or up to
    /// `shift` bytes after that (`n,maxshift`).
    At { from_eof: bool, n: u64, shift: u64 },
    /// `EP+n` / `EP-n` (`delta` negative): relative to the entry point's file offset.
    EntryPoint { delta: i64, shift: u64 },
    /// `Sx+n`: relative to the start of section `index` (from 0).
    Section { index: u32, n: u64, shift: u64 },
    /// `SL+n`: relative to the start of the last section.
    LastSection { n: u64, shift: u64 },
    /// `SEx`: anywhere in section `index` (and `shift` bytes past its end, as ClamAV does).
    WholeSection { index: u32, shift: u64 },
}

impl Offset {
    /// The inclusive range of allowed start positions in a buffer of `len` bytes, if any;
    /// executable-relative offsets have none without a layout (see `range_in`).
    pub fn range(self, len: usize) -> Option<(usize, usize)> {
        self.range_in(len, None)
    }

    /// Whether the offset is relative to an executable's entry point or sections.
    pub fn is_executable(self) -> bool {
        !matches!(self, Offset::Any | Offset::At { .. })
    }

    /// The inclusive range of allowed start positions in a buffer of `len` bytes laid out as
    /// `exe` (for executable-relative offsets), if any.
    pub fn range_in(self, len: usize, exe: Option<&ExeLayout>) -> Option<(usize, usize)> {
        let len = len as u64;
        let (lo, hi) = match self {
            Offset::Any => return Some((0, len as usize)),
            Offset::At { from_eof, n, shift } => {
                let lo = if from_eof { len.checked_sub(n)? } else { n };
                (lo, lo.saturating_add(shift))
            }
            Offset::EntryPoint { delta, shift } => {
                let lo = exe?.entry_point.checked_add_signed(delta)?;
                (lo, lo.saturating_add(shift))
            }
            Offset::Section { index, n, shift } => {
                let lo = exe?.sections.get(index as usize)?.raw.checked_add(n)?;
                (lo, lo.saturating_add(shift))
            }
            Offset::LastSection { n, shift } => {
                let lo = exe?.sections.last()?.raw.checked_add(n)?;
                (lo, lo.saturating_add(shift))
            }
            Offset::WholeSection { index, shift } => {
                let s = exe?.sections.get(index as usize)?;
                (
                    s.raw,
                    s.raw.saturating_add(s.raw_size).saturating_add(shift),
                )
            }
        };
        if lo > len {
            return None;
        }
        Some((lo as usize, hi.min(len) as usize))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashKind {
    Md5,
    Sha1,
    Sha256,
}

impl HashKind {
    /// The digest's length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            HashKind::Md5 => 16,
            HashKind::Sha1 => 20,
            HashKind::Sha256 => 32,
        }
    }
}

/// A whole-file hash signature (`.hdb`, `.hsb`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashSig {
    pub name: Arc<str>,
    pub kind: HashKind,
    /// 16 bytes for MD5, 20 for SHA-1, 32 for SHA-256.
    pub digest: Vec<u8>,
    /// `None` for `*`: the file must be hashed whatever its size.
    pub size: Option<u64>,
}

/// A body signature (`.ndb`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodySig {
    pub name: Arc<str>,
    pub target: Target,
    pub offset: Offset,
    pub pattern: HexPattern,
}

/// How a match count compares (`=`, `>`, `<`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountOp {
    Eq,
    Gt,
    Lt,
}

impl CountOp {
    fn holds(self, value: u32, n: u32) -> bool {
        match self {
            CountOp::Eq => value == n,
            CountOp::Gt => value > n,
            CountOp::Lt => value < n,
        }
    }
}

/// The boolean expression of a logical signature over its subsignatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Sub(usize),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    /// `inner` followed by `=n`, `>n` or `<n`, and for a parenthesised `inner` optionally
    /// `,distinct`: the matches counted in `inner` compare with `n`, coming from at least
    /// `distinct` different subsignatures (ClamAV ignores `,distinct` on a single index).
    Count {
        inner: Box<Expr>,
        op: CountOp,
        n: u32,
        distinct: u32,
    },
}

/// What an expression evaluated to, as `cli_ac_chklsig` computes it: whether it holds, the
/// matches counted in the parts that hold, and which subsignatures they came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Eval {
    pub holds: bool,
    pub count: u32,
    pub ids: u64,
}

impl Expr {
    /// Whether the expression holds when subsignature `i` matched `count(i)` times.
    pub fn holds(&self, count: &dyn Fn(usize) -> u32) -> bool {
        self.eval(count).holds
    }

    /// ClamAV's evaluation: both sides of `&` and `|` are evaluated and their counts summed.
    pub fn eval(&self, count: &dyn Fn(usize) -> u32) -> Eval {
        let no = Eval::default();
        match self {
            Expr::Sub(i) => {
                let c = count(*i);
                if c == 0 {
                    return no;
                }
                Eval {
                    holds: true,
                    count: c,
                    ids: 1u64 << (*i as u32 & 63),
                }
            }
            Expr::And(a, b) | Expr::Or(a, b) => {
                let (l, r) = (a.eval(count), b.eval(count));
                let holds = if matches!(self, Expr::And(..)) {
                    l.holds && r.holds
                } else {
                    l.holds || r.holds
                };
                if !holds {
                    return no;
                }
                Eval {
                    holds,
                    count: l.count.saturating_add(r.count),
                    ids: l.ids | r.ids,
                }
            }
            Expr::Count {
                inner,
                op,
                n,
                distinct,
            } => {
                if let Expr::Sub(i) = **inner {
                    // A single index compares its own count, zero included (`0<3` holds when
                    // subsignature 0 never matched).
                    let c = count(i);
                    return if op.holds(c, *n) {
                        Eval {
                            holds: true,
                            count: c,
                            ids: 1u64 << (i as u32 & 63),
                        }
                    } else {
                        no
                    };
                }
                let e = inner.eval(count);
                let total = if e.holds { e.count } else { 0 };
                let ids = if e.holds { e.ids } else { 0 };
                if !op.holds(total, *n) || ids.count_ones() < *distinct {
                    return no;
                }
                Eval {
                    holds: true,
                    count: total,
                    ids,
                }
            }
        }
    }

    /// Whether the expression needs every match counted, not only the first of each
    /// subsignature.
    pub fn counts_matches(&self) -> bool {
        match self {
            Expr::Sub(_) => false,
            Expr::And(a, b) | Expr::Or(a, b) => a.counts_matches() || b.counts_matches(),
            Expr::Count { .. } => true,
        }
    }
}

/// The container types a `Container:` key may name (ClamAV's `CL_TYPE_…` of the archive a
/// file was extracted from), for the containers this engine opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerType {
    Zip,
    Gzip,
    /// A tar with the `ustar` magic (`CL_TYPE_POSIX_TAR`).
    PosixTar,
    /// A tar without it (`CL_TYPE_OLD_TAR`).
    OldTar,
}

/// One subsignature of a logical signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subsig {
    /// `[Offset:]HexSig`.
    Hex(Offset, HexPattern),
    /// `[Offset:]Trigger/Regex/[Flags]`.
    Pcre(Box<PcreSub>),
    /// `Ref(Offset#Options#Comparisons)`, binary values only.
    ByteCmp(ByteCmp),
}

/// A byte comparison subsignature in binary mode (`i`): the `width`-byte integer `offset`
/// bytes after where subsignature `reference` last started to match, compared with every one
/// of `comparisons` (ClamAV's `cli_bcomp_compare_check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByteCmp {
    pub reference: usize,
    pub offset: i64,
    pub big_endian: bool,
    /// 1, 2, 4 or 8.
    pub width: u8,
    pub comparisons: Vec<(CountOp, i64)>,
}

impl ByteCmp {
    /// Whether the comparison holds on `data` for a reference match starting at `start`. As
    /// in ClamAV, the value may not start at offset 0 and must lie wholly inside `data`.
    pub fn holds(&self, data: &[u8], start: usize) -> bool {
        let Some(at) = (start as i64).checked_add(self.offset) else {
            return false;
        };
        let width = usize::from(self.width);
        if at <= 0 || at as u64 + width as u64 > data.len() as u64 {
            return false;
        }
        let bytes = &data[at as usize..at as usize + width];
        let mut buf = [0u8; 8];
        let value = if self.big_endian {
            buf[8 - width..].copy_from_slice(bytes);
            u64::from_be_bytes(buf)
        } else {
            buf[..width].copy_from_slice(bytes);
            u64::from_le_bytes(buf)
        } as i64;
        self.comparisons.iter().all(|&(op, n)| match op {
            CountOp::Eq => value == n,
            CountOp::Gt => value > n,
            CountOp::Lt => value < n,
        })
    }
}

/// A PCRE subsignature: when `trigger` (an expression over the earlier subsignatures) holds,
/// `regex` is searched from `offset`, as ClamAV's `cli_pcre_scanbuf` does.
#[derive(Debug, Clone)]
pub struct PcreSub {
    pub offset: Offset,
    pub trigger: Expr,
    /// The expression and flags as written (what equality compares).
    pub source: String,
    /// Compiled as a byte regex without Unicode, as ClamAV runs PCRE without UTF mode.
    pub regex: regex::bytes::Regex,
    /// `g`: every match counts, searching on from the end of the last.
    pub global: bool,
    /// `r`: search from the offset onwards even when it is exact (otherwise anchored there).
    pub rolling: bool,
    /// `e`: the match must lie within offset and offset + maxshift.
    pub encompass: bool,
    /// `A`: the match must start at the offset.
    pub anchored: bool,
}

impl PartialEq for PcreSub {
    fn eq(&self, other: &Self) -> bool {
        self.offset == other.offset && self.trigger == other.trigger && self.source == other.source
    }
}

impl Eq for PcreSub {}

/// A logical signature (`.ldb`, the subset described above).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalSig {
    pub name: Arc<str>,
    pub target: Target,
    /// Inclusive file size range from `FileSize:a-b`.
    pub file_size: Option<(u64, u64)>,
    /// Inclusive range of the entry point's file offset (`EntryPoint:a-b`).
    pub entry_point: Option<(u64, u64)>,
    /// Inclusive range of the section count (`NumberOfSections:a-b`).
    pub sections: Option<(u64, u64)>,
    /// `Container:`: the file must have been extracted from this kind of archive
    /// (`None`: anywhere, `CL_TYPE_ANY` included).
    pub container: Option<ContainerType>,
    pub expr: Expr,
    pub subsigs: Vec<Subsig>,
}

/// One file of YARA rules, already checked to compile (see `yara`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YaraSource {
    pub file: String,
    pub source: String,
    pub rules: usize,
}

/// Every loaded signature, before compilation into an `Engine`.
#[derive(Debug, Clone, Default)]
pub struct Database {
    pub hashes: Vec<HashSig>,
    pub bodies: Vec<BodySig>,
    pub logicals: Vec<LogicalSig>,
    pub yara: Vec<YaraSource>,
    /// Hashes of files known clean (`.fp` MD5, `.sfp` SHA-256); the name says why.
    pub allowed: Vec<HashSig>,
    /// Signature names not to load (`.ign2`), applied when the engine is compiled.
    pub ignored: Vec<Arc<str>>,
    /// Container metadata signatures (`.cdb`).
    pub containers: Vec<ContainerSig>,
}

/// A container metadata signature (`.cdb`): matches a member as its container lists it.
#[derive(Debug, Clone)]
pub struct ContainerSig {
    pub name: Arc<str>,
    /// `None`: any container (`*`).
    pub container: Option<ContainerType>,
    /// Inclusive ranges; `None` is `*`.
    pub container_size: Option<(u64, u64)>,
    pub compressed: Option<(u64, u64)>,
    pub size: Option<(u64, u64)>,
    pub position: Option<(u64, u64)>,
    pub encrypted: Option<bool>,
    /// Searched anywhere in the member name (POSIX extended syntax, as ClamAV compiles it).
    pub member_name: Option<regex::bytes::Regex>,
}

impl Database {
    pub fn new() -> Database {
        Database::default()
    }

    /// The number of signatures loaded, counted as clamscan's "Known viruses" does.
    pub fn len(&self) -> usize {
        self.hashes.len()
            + self.bodies.len()
            + self.logicals.len()
            + self.containers.len()
            + self.yara.iter().map(|y| y.rules).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Loads one database file; its type comes from the extension of `file_name`. Every good
    /// line is kept; the returned list has one error per bad line (empty when all loaded).
    pub fn load(&mut self, file_name: &str, content: &[u8]) -> Vec<ParseError> {
        let ext = file_name
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        let whole_file = |kind| {
            vec![ParseError {
                file: file_name.to_owned(),
                line: 0,
                kind,
            }]
        };
        if matches!(ext.as_str(), "yar" | "yara") {
            return self.load_yara(file_name, content);
        }
        if !matches!(
            ext.as_str(),
            "hdb" | "hsb" | "ndb" | "ldb" | "fp" | "sfp" | "ign2" | "cdb"
        ) {
            return whole_file(ParseErrorKind::UnsupportedDatabaseType(
                file_name.to_owned(),
            ));
        }
        let Ok(text) = std::str::from_utf8(content) else {
            return whole_file(ParseErrorKind::NotText);
        };
        let mut errors = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let loaded = match ext.as_str() {
                "hdb" => parse_hash_line(line, HashKind::Md5).map(|s| self.hashes.push(s)),
                // `.hsb` holds SHA-1 and SHA-256 lines; the hash's length says which.
                "hsb" => parse_hash_line(line, HashKind::Sha256).map(|s| self.hashes.push(s)),
                "fp" => parse_hash_line(line, HashKind::Md5).map(|s| self.allowed.push(s)),
                "sfp" => parse_hash_line(line, HashKind::Sha256).map(|s| self.allowed.push(s)),
                "ign2" => parse_ign2_line(line).map(|s| self.ignored.push(s)),
                "cdb" => parse_cdb_line(line).map(|s| self.containers.push(s)),
                "ndb" => parse_ndb_line(line).map(|s| self.bodies.push(s)),
                _ => parse_ldb_line(line).map(|s| self.logicals.push(s)),
            };
            if let Err(kind) = loaded {
                errors.push(ParseError {
                    file: file_name.to_owned(),
                    line: index + 1,
                    kind,
                });
            }
        }
        errors
    }

    fn load_yara(&mut self, file_name: &str, content: &[u8]) -> Vec<ParseError> {
        let error = |kind| {
            vec![ParseError {
                file: file_name.to_owned(),
                line: 0,
                kind,
            }]
        };
        let Ok(source) = std::str::from_utf8(content) else {
            return error(ParseErrorKind::NotText);
        };
        #[cfg(feature = "yara")]
        match crate::yara::compile(source) {
            Ok(rules) => {
                let rules = crate::yara::count(&rules);
                self.yara.push(YaraSource {
                    file: file_name.to_owned(),
                    source: source.to_owned(),
                    rules,
                });
                Vec::new()
            }
            Err(kind) => error(kind),
        }
        #[cfg(not(feature = "yara"))]
        {
            let _ = source;
            error(ParseErrorKind::YaraDisabled)
        }
    }
}

fn name(field: &str) -> Result<Arc<str>, ParseErrorKind> {
    if field.is_empty() {
        Err(ParseErrorKind::EmptyName)
    } else {
        Ok(Arc::from(field))
    }
}

fn flevels(fields: &[&str]) -> Result<(), ParseErrorKind> {
    for f in fields {
        if !f.is_empty() && !f.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseErrorKind::BadFlevel((*f).to_owned()));
        }
    }
    Ok(())
}

/// One hash signature line's fields, borrowed from the line (no allocation, so millions of
/// lines can go straight into a compact `hashtable::HashTableBuilder`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashFields<'a> {
    pub kind: HashKind,
    /// The digest in its first `kind.digest_len()` bytes.
    pub digest: [u8; 32],
    pub size: Option<u64>,
    pub name: &'a str,
}

impl HashFields<'_> {
    pub fn digest(&self) -> &[u8] {
        &self.digest[..self.kind.digest_len()]
    }
}

/// `HASH:SIZE:NAME[:MINFL[:MAXFL]]` for `.hdb` (`file_kind` MD5) and `.hsb` (`file_kind`
/// SHA-256, where a 40-digit hash is SHA-1 as in ClamAV).
pub fn parse_hash_line(line: &str, file_kind: HashKind) -> Result<HashSig, ParseErrorKind> {
    let fields = parse_hash_fields(line, file_kind)?;
    Ok(HashSig {
        name: name(fields.name)?,
        kind: fields.kind,
        digest: fields.digest().to_vec(),
        size: fields.size,
    })
}

/// The fields of a hash signature line, checked as `parse_hash_line` checks them.
pub fn parse_hash_fields(
    line: &str,
    file_kind: HashKind,
) -> Result<HashFields<'_>, ParseErrorKind> {
    let mut fields = [""; 5];
    let mut count = 0;
    for field in line.split(':') {
        if count < fields.len() {
            fields[count] = field;
        }
        count += 1;
    }
    if !(3..=5).contains(&count) {
        return Err(ParseErrorKind::FieldCount {
            expected: "3 to 5",
            separator: ':',
            found: count,
        });
    }
    let hash = fields[0];
    let kind = match (file_kind, hash.len()) {
        (HashKind::Md5, 32) => HashKind::Md5,
        (HashKind::Md5, _) => {
            return Err(ParseErrorKind::BadHash {
                hash: hash.to_owned(),
                reason: "an MD5 hash has 32 hex digits",
            });
        }
        (_, 40) => HashKind::Sha1,
        (_, 64) => HashKind::Sha256,
        _ => {
            return Err(ParseErrorKind::BadHash {
                hash: hash.to_owned(),
                reason: "a SHA-1 hash has 40 hex digits, a SHA-256 hash 64",
            });
        }
    };
    let mut digest = [0u8; 32];
    if !decode_hex_into(hash, &mut digest[..kind.digest_len()]) {
        return Err(ParseErrorKind::BadHash {
            hash: hash.to_owned(),
            reason: "not hexadecimal",
        });
    }
    let size = match fields[1] {
        "*" => None,
        s if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => Some(
            s.parse()
                .map_err(|_| ParseErrorKind::BadSize(s.to_owned()))?,
        ),
        s => return Err(ParseErrorKind::BadSize(s.to_owned())),
    };
    if fields[2].is_empty() {
        return Err(ParseErrorKind::EmptyName);
    }
    if fields[2].len() > crate::hashtable::MAX_NAME {
        return Err(ParseErrorKind::NameTooLong(fields[2].len()));
    }
    flevels(&fields[3..count])?;
    Ok(HashFields {
        kind,
        digest,
        size,
        name: fields[2],
    })
}

fn decode_hex_into(s: &str, out: &mut [u8]) -> bool {
    let s = s.as_bytes();
    if s.len() != out.len() * 2 {
        return false;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    for (i, byte) in out.iter_mut().enumerate() {
        match (nibble(s[2 * i]), nibble(s[2 * i + 1])) {
            (Some(h), Some(l)) => *byte = h << 4 | l,
            _ => return false,
        }
    }
    true
}

fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        None
    } else {
        s.parse().ok()
    }
}

/// `*`, `n`, `n,maxshift`, `EOF-n`, `EOF-n,maxshift`.
pub fn parse_offset(s: &str) -> Result<Offset, ParseErrorKind> {
    let bad = |reason| ParseErrorKind::BadOffset {
        offset: s.to_owned(),
        reason,
    };
    if s == "*" {
        return Ok(Offset::Any);
    }
    let (base, shift) = match s.split_once(',') {
        Some((base, shift)) => (
            base,
            parse_u64(shift).ok_or_else(|| bad("maxshift must be a decimal number"))?,
        ),
        None => (s, 0),
    };
    if let Some(n) = base.strip_prefix("EOF-") {
        let n = parse_u64(n).ok_or_else(|| bad("EOF-n needs a decimal n"))?;
        return Ok(Offset::At {
            from_eof: true,
            n,
            shift,
        });
    }
    if let Some(n) = parse_u64(base) {
        return Ok(Offset::At {
            from_eof: false,
            n,
            shift,
        });
    }
    let number = |n: &str, what| parse_u64(n).ok_or_else(|| bad(what));
    if let Some(n) = base.strip_prefix("EP+") {
        let n = number(n, "EP+n needs a decimal n")?;
        let delta = i64::try_from(n).map_err(|_| bad("EP+n is too large"))?;
        return Ok(Offset::EntryPoint { delta, shift });
    }
    if let Some(n) = base.strip_prefix("EP-") {
        let n = number(n, "EP-n needs a decimal n")?;
        let delta = i64::try_from(n).map_err(|_| bad("EP-n is too large"))?;
        return Ok(Offset::EntryPoint {
            delta: -delta,
            shift,
        });
    }
    if let Some(n) = base.strip_prefix("SL+") {
        let n = number(n, "SL+n needs a decimal n")?;
        return Ok(Offset::LastSection { n, shift });
    }
    if let Some(x) = base.strip_prefix("SE") {
        let index = number(x, "SEx needs a decimal section number x")?;
        let index = u32::try_from(index).map_err(|_| bad("section number too large"))?;
        return Ok(Offset::WholeSection { index, shift });
    }
    if let Some(rest) = base.strip_prefix('S') {
        let (x, n) = rest
            .split_once('+')
            .ok_or_else(|| bad("expected Sx+n, SL+n or SEx"))?;
        let index = number(x, "Sx+n needs a decimal section number x")?;
        let index = u32::try_from(index).map_err(|_| bad("section number too large"))?;
        let n = number(n, "Sx+n needs a decimal n")?;
        return Ok(Offset::Section { index, n, shift });
    }
    if base.starts_with("VI") || base.starts_with('$') {
        return Err(ParseErrorKind::UnsupportedOffset(s.to_owned()));
    }
    Err(bad(
        "expected *, n, EOF-n, EP+n, EP-n, Sx+n, SL+n or SEx, optionally with ,maxshift",
    ))
}

/// ClamAV accepts executable-relative offsets for PE, ELF and Mach-O targets only; this
/// engine computes them for PE.
fn check_offset_target(offset: Offset, target: Target, text: &str) -> Result<(), ParseErrorKind> {
    if !offset.is_executable() || target.has_executable_layout() {
        return Ok(());
    }
    if matches!(target, Target::Elf | Target::MachO) {
        return Err(ParseErrorKind::UnsupportedOffset(text.to_owned()));
    }
    Err(ParseErrorKind::BadOffset {
        offset: text.to_owned(),
        reason: "entry point and section offsets need target 1 (PE), 6 (ELF) or 9 (Mach-O)",
    })
}

fn parse_target(t: &str) -> Result<Target, ParseErrorKind> {
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseErrorKind::BadTarget(t.to_owned()));
    }
    Target::from_number(t).ok_or_else(|| ParseErrorKind::UnsupportedTarget(t.to_owned()))
}

/// `.cdb`: `Name:ContainerType:ContainerSize:NameRegex:SizeInContainer:RealSize:IsEncrypted:
/// FilePos:Res1:Res2[:MinFL[:MaxFL]]`.
pub fn parse_cdb_line(line: &str) -> Result<ContainerSig, ParseErrorKind> {
    let fields: Vec<&str> = line.split(':').collect();
    if !(10..=12).contains(&fields.len()) {
        return Err(ParseErrorKind::FieldCount {
            expected: "10 to 12",
            separator: ':',
            found: fields.len(),
        });
    }
    let bad = ParseErrorKind::BadContainerSig;
    let range = |field: &str, what: &str| -> Result<Option<(u64, u64)>, ParseErrorKind> {
        if field == "*" {
            return Ok(None);
        }
        let (a, b) = field.split_once('-').unwrap_or((field, field));
        match (parse_u64(a), parse_u64(b)) {
            (Some(a), Some(b)) if a <= b => Ok(Some((a, b))),
            _ => Err(bad(format!("{what} {field:?} is not *, n or a-b"))),
        }
    };
    let container = match fields[1] {
        "*" => None,
        "CL_TYPE_ZIP" => Some(ContainerType::Zip),
        "CL_TYPE_POSIX_TAR" => Some(ContainerType::PosixTar),
        "CL_TYPE_OLD_TAR" => Some(ContainerType::OldTar),
        t if t.starts_with("CL_TYPE_") => {
            return Err(ParseErrorKind::UnsupportedContainerSig(format!(
                "container type {t} (zip and tar are listed)"
            )));
        }
        t => {
            return Err(bad(format!(
                "container type {t:?} is not * or a CL_TYPE_ name"
            )));
        }
    };
    let member_name = match fields[3] {
        "*" => None,
        re => Some(
            regex::bytes::RegexBuilder::new(&format!("(?-u){re}"))
                .size_limit(1 << 20)
                .build()
                .map_err(|e| {
                    let why = e.to_string().lines().last().unwrap_or_default().to_owned();
                    bad(format!("name regex {re:?}: {why}"))
                })?,
        ),
    };
    let encrypted = match fields[6] {
        "*" => None,
        "0" => Some(false),
        "1" => Some(true),
        e => return Err(bad(format!("IsEncrypted {e:?} is not 0, 1 or *"))),
    };
    flevels(&fields[10..])?;
    Ok(ContainerSig {
        name: name(fields[0])?,
        container,
        container_size: range(fields[2], "ContainerSize")?,
        member_name,
        compressed: range(fields[4], "SizeInContainer")?,
        size: range(fields[5], "RealSize")?,
        encrypted,
        position: range(fields[7], "FilePos")?,
    })
}

/// `.ign2`: a signature name; `Name:MD5` (only the line with that MD5) is not supported.
pub fn parse_ign2_line(line: &str) -> Result<Arc<str>, ParseErrorKind> {
    match line.split(':').count() {
        1 => name(line),
        2 => Err(ParseErrorKind::UnsupportedLogical(
            "an .ign2 entry with the MD5 of one signature line (Name:MD5)".to_owned(),
        )),
        found => Err(ParseErrorKind::FieldCount {
            expected: "1",
            separator: ':',
            found,
        }),
    }
}

/// `NAME:TARGET:OFFSET:HEXSIG[:MINFL[:MAXFL]]`.
pub fn parse_ndb_line(line: &str) -> Result<BodySig, ParseErrorKind> {
    let fields: Vec<&str> = line.split(':').collect();
    if !(4..=6).contains(&fields.len()) {
        return Err(ParseErrorKind::FieldCount {
            expected: "4 to 6",
            separator: ':',
            found: fields.len(),
        });
    }
    let name = name(fields[0])?;
    let target = parse_target(fields[1])?;
    let offset = parse_offset(fields[2])?;
    check_offset_target(offset, target, fields[2])?;
    let pattern = hex::parse(fields[3])?;
    flevels(&fields[4..])?;
    Ok(BodySig {
        name,
        target,
        offset,
        pattern,
    })
}

/// `NAME;TDB;EXPR;SUB0[;SUB1…]` (the subset in the module docs).
pub fn parse_ldb_line(line: &str) -> Result<LogicalSig, ParseErrorKind> {
    let fields: Vec<&str> = line.split(';').collect();
    if fields.len() < 4 {
        return Err(ParseErrorKind::FieldCount {
            expected: "at least 4",
            separator: ';',
            found: fields.len(),
        });
    }
    let name = name(fields[0])?;
    let tdb = parse_tdb(fields[1])?;
    let subsigs = fields[3..]
        .iter()
        .enumerate()
        .map(|(i, s)| parse_subsig(i, s, tdb.target))
        .collect::<Result<Vec<_>, _>>()?;
    if subsigs.len() > 64 {
        return Err(ParseErrorKind::BadLogical(
            "more than 64 subsignatures".to_owned(),
        ));
    }
    for (i, sub) in subsigs.iter().enumerate() {
        if let Subsig::ByteCmp(b) = sub {
            match subsigs.get(b.reference) {
                Some(Subsig::Hex(_, p)) if hex::prefix_width(p).is_some() => {}
                Some(Subsig::Hex(..)) => {
                    return Err(ParseErrorKind::UnsupportedLogical(format!(
                        "subsignature {i}: byte comparison on subsignature {}, whose start is not a fixed distance before its anchor",
                        b.reference
                    )));
                }
                _ => {
                    return Err(ParseErrorKind::BadLogical(format!(
                        "subsignature {i}: byte comparison refers to subsignature {}, which is not a hex subsignature",
                        b.reference
                    )));
                }
            }
        }
    }
    let expr = parse_expr(fields[2], subsigs.len())?;
    Ok(LogicalSig {
        name,
        target: tdb.target,
        file_size: tdb.file_size,
        entry_point: tdb.entry_point,
        sections: tdb.sections,
        container: tdb.container,
        expr,
        subsigs,
    })
}

struct Tdb {
    target: Target,
    file_size: Option<(u64, u64)>,
    entry_point: Option<(u64, u64)>,
    sections: Option<(u64, u64)>,
    container: Option<ContainerType>,
}

fn parse_tdb(tdb: &str) -> Result<Tdb, ParseErrorKind> {
    let mut target = None;
    let mut out = Tdb {
        target: Target::Any,
        file_size: None,
        entry_point: None,
        sections: None,
        container: None,
    };
    for item in tdb.split(',') {
        let Some((key, value)) = item.split_once(':') else {
            return Err(ParseErrorKind::BadLogical(format!(
                "target description item {item:?} is not Key:Value"
            )));
        };
        let range = || -> Result<(u64, u64), ParseErrorKind> {
            let bad = || ParseErrorKind::BadLogical(format!("{key}:{value} is not a range a-b"));
            // A single number is the range of that number alone, as ClamAV reads it.
            let (a, b) = value.split_once('-').unwrap_or((value, value));
            let (a, b) = (parse_u64(a).ok_or_else(bad)?, parse_u64(b).ok_or_else(bad)?);
            if a > b { Err(bad()) } else { Ok((a, b)) }
        };
        match key {
            "Target" => target = Some(parse_target(value)?),
            "Engine" => {
                range()?;
            }
            "FileSize" => out.file_size = Some(range()?),
            "EntryPoint" => out.entry_point = Some(range()?),
            "NumberOfSections" => out.sections = Some(range()?),
            "Container" => {
                out.container = match value {
                    "CL_TYPE_ANY" => None,
                    "CL_TYPE_ZIP" => Some(ContainerType::Zip),
                    "CL_TYPE_GZ" => Some(ContainerType::Gzip),
                    "CL_TYPE_POSIX_TAR" => Some(ContainerType::PosixTar),
                    "CL_TYPE_OLD_TAR" => Some(ContainerType::OldTar),
                    v if v.starts_with("CL_TYPE_") => {
                        return Err(ParseErrorKind::UnsupportedLogical(format!(
                            "Container:{v} (this engine opens zip, gzip and tar only)"
                        )));
                    }
                    v => {
                        return Err(ParseErrorKind::BadLogical(format!(
                            "Container:{v} is not a CL_TYPE_ name"
                        )));
                    }
                }
            }
            _ => {
                return Err(ParseErrorKind::UnsupportedLogical(format!(
                    "target description key {key}"
                )));
            }
        }
    }
    out.target = target.ok_or_else(|| {
        ParseErrorKind::BadLogical("the target description has no Target".to_owned())
    })?;
    if (out.entry_point.is_some() || out.sections.is_some()) && !out.target.has_executable_layout()
    {
        return Err(if matches!(out.target, Target::Elf | Target::MachO) {
            ParseErrorKind::UnsupportedLogical(
                "EntryPoint and NumberOfSections for ELF and Mach-O".to_owned(),
            )
        } else {
            ParseErrorKind::BadLogical(
                "EntryPoint and NumberOfSections need Target:1 (PE), 6 or 9".to_owned(),
            )
        });
    }
    Ok(out)
}

fn parse_subsig(index: usize, s: &str, target: Target) -> Result<Subsig, ParseErrorKind> {
    let unsupported = |what: &str| {
        Err(ParseErrorKind::UnsupportedLogical(format!(
            "subsignature {index}: {what}"
        )))
    };
    if s.contains("::") {
        return unsupported("modifiers (::i, ::w, ::a, ::f)");
    }
    if s.contains('/') {
        return parse_pcre(index, s, target).map(|p| Subsig::Pcre(Box::new(p)));
    }
    if s.contains('#') {
        return parse_bytecmp(index, s).map(Subsig::ByteCmp);
    }
    if s.starts_with("${") {
        return unsupported("macro subsignatures");
    }
    let (offset, hex) = match s.rsplit_once(':') {
        Some((offset, hex)) => {
            let parsed = parse_offset(offset)?;
            check_offset_target(parsed, target, offset)?;
            (parsed, hex)
        }
        None => (Offset::Any, s),
    };
    let pattern = hex::parse(hex).map_err(|kind| match kind {
        ParseErrorKind::BadHex { column, reason } => {
            ParseErrorKind::BadLogical(format!("subsignature {index}, column {column}: {reason}"))
        }
        other => other,
    })?;
    Ok(Subsig::Hex(offset, pattern))
}

/// C's `strtol` with base 0, as ClamAV reads byte comparison numbers: `0x` hex, `0` octal,
/// otherwise decimal, with an optional sign.
fn parse_c_integer(s: &str) -> Option<i64> {
    let (negative, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let value = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i64::from_str_radix(hex, 16).ok()?
    } else if digits.len() > 1 && digits.starts_with('0') {
        i64::from_str_radix(&digits[1..], 8).ok()?
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()?
    } else {
        return None;
    };
    Some(if negative { -value } else { value })
}

/// `Ref(Offset#Options#Comparisons)`: `Offset` is `>>n`, `<<n` or `0`; `Options` a base
/// (`i` binary; `h` hex, `d` decimal and `a` auto text are unsupported), an optional endianness
/// (`l`, `b`), an optional `e` and the byte count (1, 2, 4 or 8 for binary); `Comparisons` one
/// or two of `<n`, `>n`, `=n` separated by a comma, all of which must hold.
fn parse_bytecmp(index: usize, s: &str) -> Result<ByteCmp, ParseErrorKind> {
    let bad = |why: String| {
        ParseErrorKind::BadLogical(format!(
            "subsignature {index}: byte comparison {s:?}: {why}"
        ))
    };
    let open = s
        .find('(')
        .ok_or_else(|| bad("expected Ref(Offset#Options#Comparisons)".into()))?;
    let inner = s[open + 1..]
        .strip_suffix(')')
        .ok_or_else(|| bad("missing ')' at the end".into()))?;
    let reference: usize = parse_u64(&s[..open])
        .ok_or_else(|| bad("the referenced subsignature is not a number".into()))?
        .try_into()
        .map_err(|_| bad("reference too large".into()))?;
    let parts: Vec<&str> = inner.split('#').collect();
    let [offset, options, comparisons] = parts[..] else {
        return Err(bad(format!(
            "expected 3 parts separated by '#', found {}",
            parts.len()
        )));
    };
    let offset = if let Some(n) = offset.strip_prefix(">>") {
        parse_c_integer(n).ok_or_else(|| bad(format!("bad offset {offset:?}")))?
    } else if let Some(n) = offset.strip_prefix("<<") {
        -parse_c_integer(n).ok_or_else(|| bad(format!("bad offset {offset:?}")))?
    } else if offset == "0" || offset.is_empty() {
        0
    } else {
        return Err(bad(format!("offset {offset:?} is not >>n, <<n or 0")));
    };
    let digits = options
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(options.len());
    let (flags, width) = options.split_at(digits);
    let (mut binary, mut big_endian) = (false, None);
    for f in flags.chars() {
        match f {
            'i' => binary = true,
            'h' | 'd' | 'a' => {
                return Err(ParseErrorKind::UnsupportedLogical(format!(
                    "subsignature {index}: byte comparison of text values ({f}); only binary (i) is supported"
                )));
            }
            'l' if big_endian.is_none() => big_endian = Some(false),
            'b' if big_endian.is_none() => big_endian = Some(true),
            'e' => {}
            other => return Err(bad(format!("unknown or repeated option {other:?}"))),
        }
    }
    if !binary {
        return Err(bad("options need a base (i, h, d or a)".into()));
    }
    let width = match parse_c_integer(width) {
        Some(w @ (1 | 2 | 4 | 8)) => w as u8,
        _ => {
            return Err(bad(format!(
                "binary byte count {width:?} is not 1, 2, 4 or 8"
            )));
        }
    };
    let comparisons = comparisons
        .split(',')
        .map(|c| {
            let op = match c.as_bytes().first() {
                Some(b'<') => CountOp::Lt,
                Some(b'>') => CountOp::Gt,
                Some(b'=') => CountOp::Eq,
                _ => return Err(bad(format!("comparison {c:?} is not <n, >n or =n"))),
            };
            let n = parse_c_integer(&c[1..]).ok_or_else(|| bad(format!("bad number in {c:?}")))?;
            Ok((op, n))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if comparisons.len() > 2 {
        return Err(bad("at most two comparisons".into()));
    }
    Ok(ByteCmp {
        reference,
        offset,
        big_endian: big_endian.unwrap_or(false),
        width,
        comparisons,
    })
}

/// `[Offset:]Trigger/Regex/[Flags]` with the flags ClamAV accepts: PCRE's `i` (caseless),
/// `s` (dot matches newline), `m` (multiline), `x` (extended), `U` (ungreedy), `A`
/// (anchored), `E` (`$` only at the very end, which is the only `$` the regex crate has), and
/// ClamAV's `g` (global), `r` (rolling), `e` (encompass). What the regex crate cannot run —
/// backreferences, lookaround, atomic groups, possessive quantifiers, recursion — is refused.
fn parse_pcre(index: usize, s: &str, target: Target) -> Result<PcreSub, ParseErrorKind> {
    let bad = |why: String| ParseErrorKind::BadLogical(format!("subsignature {index}: {why}"));
    let (first, last) = (s.find('/').unwrap_or(0), s.rfind('/').unwrap_or(0));
    if first == last {
        return Err(bad("a PCRE subsignature is Trigger/Regex/Flags".to_owned()));
    }
    let (prefix, pattern, flags) = (&s[..first], &s[first + 1..last], &s[last + 1..]);
    let (offset, trigger) = match prefix.rsplit_once(':') {
        Some((offset, trigger)) => {
            let parsed = parse_offset(offset)?;
            check_offset_target(parsed, target, offset)?;
            (parsed, trigger)
        }
        None => (Offset::Any, prefix),
    };
    if trigger.is_empty() || pattern.is_empty() {
        return Err(bad(
            "a PCRE subsignature needs a trigger and a regex".to_owned()
        ));
    }
    // The trigger may only refer to subsignatures before this one.
    let trigger = parse_expr(trigger, index).map_err(|e| match e {
        ParseErrorKind::BadLogical(why) => bad(format!("PCRE trigger: {why}")),
        other => other,
    })?;
    // Flags go before the `-`: everything after it is switched off.
    let mut inline = String::from("(?");
    let mut sub = PcreSub {
        offset,
        trigger,
        source: s.to_owned(),
        regex: regex::bytes::Regex::new("^$").expect("a valid regex"),
        global: false,
        rolling: false,
        encompass: false,
        anchored: false,
    };
    for f in flags.chars() {
        match f {
            'i' | 's' | 'm' | 'x' | 'U' => inline.push(f),
            'A' => sub.anchored = true,
            'E' => {}
            'g' => sub.global = true,
            'r' => sub.rolling = true,
            'e' => sub.encompass = true,
            other => return Err(bad(format!("unknown PCRE flag {other:?}"))),
        }
    }
    inline.push_str("-u)");
    sub.regex = regex::bytes::RegexBuilder::new(&format!("{inline}{pattern}"))
        .size_limit(1 << 22)
        .build()
        .map_err(|e| {
            let first_line = e.to_string().lines().last().unwrap_or_default().to_owned();
            ParseErrorKind::UnsupportedLogical(format!(
                "subsignature {index}: PCRE that the regex crate cannot compile ({first_line})"
            ))
        })?;
    Ok(sub)
}

/// The logical expression as ClamAV's `cli_ac_chklsig` reads it: an operand (an index or a
/// parenthesised expression, optionally followed by a count `=n`, `>n`, `<n`, `…,m`), then
/// optionally `&` or `|` and the rest of the expression — so `a&b|c` is `a&(b|c)`.
fn parse_expr(text: &str, subsig_count: usize) -> Result<Expr, ParseErrorKind> {
    let bad = |why: String| ParseErrorKind::BadLogical(format!("expression {text:?}: {why}"));
    let s = text.as_bytes();
    let mut pos = 0;
    let expr = parse_chain(s, &mut pos, subsig_count, 0).map_err(bad)?;
    if pos != s.len() {
        return Err(bad(format!(
            "unexpected {:?} at column {}",
            s[pos] as char,
            pos + 1
        )));
    }
    Ok(expr)
}

fn parse_chain(s: &[u8], pos: &mut usize, n: usize, depth: usize) -> Result<Expr, String> {
    if depth > 64 {
        return Err("nested too deeply".to_owned());
    }
    let left = parse_operand(s, pos, n, depth)?;
    match s.get(*pos) {
        Some(&c @ (b'&' | b'|')) => {
            *pos += 1;
            let right = parse_chain(s, pos, n, depth + 1)?;
            Ok(if c == b'&' {
                Expr::And(left.into(), right.into())
            } else {
                Expr::Or(left.into(), right.into())
            })
        }
        _ => Ok(left),
    }
}

fn parse_number(s: &[u8], pos: &mut usize) -> Option<u32> {
    let start = *pos;
    while s.get(*pos).is_some_and(u8::is_ascii_digit) {
        *pos += 1;
    }
    std::str::from_utf8(&s[start..*pos]).ok()?.parse().ok()
}

fn parse_operand(s: &[u8], pos: &mut usize, n: usize, depth: usize) -> Result<Expr, String> {
    let atom = match s.get(*pos) {
        Some(b'(') => {
            *pos += 1;
            let e = parse_chain(s, pos, n, depth + 1)?;
            if s.get(*pos) != Some(&b')') {
                return Err(format!("missing ')' at column {}", *pos + 1));
            }
            *pos += 1;
            e
        }
        Some(c) if c.is_ascii_digit() => {
            let column = *pos + 1;
            let i = parse_number(s, pos).ok_or_else(|| format!("bad index at column {column}"))?
                as usize;
            if i >= n {
                return Err(format!("subsignature {i} does not exist ({n} given)"));
            }
            Expr::Sub(i)
        }
        Some(&c) => return Err(format!("unexpected {:?} at column {}", c as char, *pos + 1)),
        None => return Err("unexpected end".to_owned()),
    };
    let op = match s.get(*pos) {
        Some(b'=') => CountOp::Eq,
        Some(b'>') => CountOp::Gt,
        Some(b'<') => CountOp::Lt,
        _ => return Ok(atom),
    };
    *pos += 1;
    let column = *pos + 1;
    let count = parse_number(s, pos).ok_or_else(|| format!("missing count at column {column}"))?;
    let mut distinct = 0;
    if s.get(*pos) == Some(&b',') {
        *pos += 1;
        let column = *pos + 1;
        distinct = parse_number(s, pos)
            .ok_or_else(|| format!("missing distinct count at column {column}"))?;
    }
    Ok(Expr::Count {
        inner: atom.into(),
        op,
        n: count,
        distinct,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(file: &str, text: &str) -> (Database, Vec<String>) {
        let mut db = Database::new();
        let errors = db.load(file, text.as_bytes());
        (db, errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn hdb_and_hsb() {
        let (db, errors) = load(
            "t.hdb",
            "# comment\n\n44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\r\n44D88612FEA8A8F36DE82E1278ABB02F:*:Any.Size:73\n",
        );
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(db.hashes.len(), 2);
        assert_eq!(db.hashes[0].size, Some(68));
        assert_eq!(&*db.hashes[0].name, "Eicar-Test-Signature");
        assert_eq!(db.hashes[1].size, None);
        assert_eq!(db.hashes[1].digest, db.hashes[0].digest);
        let sha = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";
        let (db, errors) = load(
            "t.hsb",
            &format!("{sha}:68:Eicar.Sha\n{sha}:*:Eicar.Any:73:255\n"),
        );
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(db.hashes[0].kind, HashKind::Sha256);
        assert_eq!(db.hashes[0].digest.len(), 32);
    }

    #[test]
    fn hash_errors() {
        let (db, errors) = load(
            "bad.hdb",
            "44d88612fea8a8f36de82e1278abb02f:68\n\
             44d88612:68:Short\n\
             44d88612fea8a8f36de82e1278abb0zz:68:NotHex\n\
             44d88612fea8a8f36de82e1278abb02f:-1:BadSize\n\
             44d88612fea8a8f36de82e1278abb02f::BadSize\n\
             44d88612fea8a8f36de82e1278abb02f:68:\n\
             44d88612fea8a8f36de82e1278abb02f:68:N:x\n\
             44d88612fea8a8f36de82e1278abb02f:68:Good\n",
        );
        assert_eq!(db.hashes.len(), 1);
        expect_test::expect![[r#"
            bad.hdb:1: expected 3 to 5 fields separated by ':', found 2
            bad.hdb:2: bad hash "44d88612": an MD5 hash has 32 hex digits
            bad.hdb:3: bad hash "44d88612fea8a8f36de82e1278abb0zz": not hexadecimal
            bad.hdb:4: bad file size "-1": expected a decimal number or '*'
            bad.hdb:5: bad file size "": expected a decimal number or '*'
            bad.hdb:6: empty signature name
            bad.hdb:7: bad functionality level "x": expected a decimal number"#]]
        .assert_eq(&errors.join("\n"));
        let (db, errors) = load(
            "x.hsb",
            "3395856ce81f2b7382dee72602f798b642f14140:68:Sha1\nab:1:Short\n",
        );
        assert_eq!(db.hashes[0].kind, HashKind::Sha1);
        assert_eq!(db.hashes[0].digest.len(), 20);
        expect_test::expect![[r#"
            x.hsb:2: bad hash "ab": a SHA-1 hash has 40 hex digits, a SHA-256 hash 64"#]]
        .assert_eq(&errors.join("\n"));
    }

    #[test]
    fn file_level_errors() {
        let (_, errors) = load("x.mdb", "whatever");
        assert_eq!(
            errors,
            [
                "x.mdb:0: unsupported database type \"x.mdb\" (supported: .hdb, .hsb, .ndb, .ldb, .fp, .sfp, .ign2, .yar, .yara)"
            ]
        );
        #[cfg(not(feature = "yara"))]
        assert_eq!(
            load("r.yar", "rule r { condition: true }").1,
            [
                "r.yar:0: YARA rules need herd-scan's `yara` cargo feature, which this build does not have"
            ]
        );
        let mut db = Database::new();
        let errors = db.load("x.ndb", b"\xff\xfe");
        assert_eq!(
            errors[0].to_string(),
            "x.ndb:0: the file is not valid UTF-8 text"
        );
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_offset("*"), Ok(Offset::Any));
        assert_eq!(
            parse_offset("12"),
            Ok(Offset::At {
                from_eof: false,
                n: 12,
                shift: 0
            })
        );
        assert_eq!(
            parse_offset("12,5"),
            Ok(Offset::At {
                from_eof: false,
                n: 12,
                shift: 5
            })
        );
        assert_eq!(
            parse_offset("EOF-7"),
            Ok(Offset::At {
                from_eof: true,
                n: 7,
                shift: 0
            })
        );
        assert_eq!(
            parse_offset("EOF-7,3"),
            Ok(Offset::At {
                from_eof: true,
                n: 7,
                shift: 3
            })
        );
        let ok = |s| parse_offset(s).unwrap();
        assert_eq!(
            ok("EP+10"),
            Offset::EntryPoint {
                delta: 10,
                shift: 0
            }
        );
        assert_eq!(
            ok("EP-3,7"),
            Offset::EntryPoint {
                delta: -3,
                shift: 7
            }
        );
        assert_eq!(
            ok("S2+4"),
            Offset::Section {
                index: 2,
                n: 4,
                shift: 0
            }
        );
        assert_eq!(ok("SL+4,2"), Offset::LastSection { n: 4, shift: 2 });
        assert_eq!(ok("SE1"), Offset::WholeSection { index: 1, shift: 0 });
        let e = |s| parse_offset(s).unwrap_err().to_string();
        expect_test::expect![[r#"
            unsupported offset "VI" (supported: *, n, EOF-n, and EP+n, EP-n, Sx+n, SL+n, SEx for target 1, each with an optional ,maxshift)
            unsupported offset "$1$" (supported: *, n, EOF-n, and EP+n, EP-n, Sx+n, SL+n, SEx for target 1, each with an optional ,maxshift)
            bad offset "EP+x": EP+n needs a decimal n
            bad offset "EP-": EP-n needs a decimal n
            bad offset "S2": expected Sx+n, SL+n or SEx
            bad offset "S+1": Sx+n needs a decimal section number x
            bad offset "Sx+1": Sx+n needs a decimal section number x
            bad offset "SE": SEx needs a decimal section number x
            bad offset "SL-3": expected Sx+n, SL+n or SEx
            bad offset "EP+99999999999999999999": EP+n needs a decimal n"#]].assert_eq(
            &["VI", "$1$", "EP+x", "EP-", "S2", "S+1", "Sx+1", "SE", "SL-3", "EP+99999999999999999999"]
                .map(e)
                .join("\n"),
        );
        assert_eq!(e("EOF-x"), "bad offset \"EOF-x\": EOF-n needs a decimal n");
        assert_eq!(
            e("3,x"),
            "bad offset \"3,x\": maxshift must be a decimal number"
        );
        assert_eq!(
            e("-3"),
            "bad offset \"-3\": expected *, n, EOF-n, EP+n, EP-n, Sx+n, SL+n or SEx, optionally with ,maxshift"
        );
        assert_eq!(
            e(""),
            "bad offset \"\": expected *, n, EOF-n, EP+n, EP-n, Sx+n, SL+n or SEx, optionally with ,maxshift"
        );
    }

    #[test]
    fn offset_ranges() {
        let at = |from_eof, n, shift| Offset::At { from_eof, n, shift };
        assert_eq!(Offset::Any.range(10), Some((0, 10)));
        assert_eq!(at(false, 3, 0).range(10), Some((3, 3)));
        assert_eq!(at(false, 3, 100).range(10), Some((3, 10)));
        assert_eq!(at(false, 11, 0).range(10), None);
        assert_eq!(at(true, 4, 2).range(10), Some((6, 8)));
        assert_eq!(at(true, 11, 0).range(10), None);
    }

    #[test]
    fn ndb_lines() {
        let (db, errors) = load(
            "t.ndb",
            "Test.A:0:*:414243\nTest.B:0:EOF-3,2:4142??43:51:255\n",
        );
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(db.bodies.len(), 2);
        assert_eq!(
            db.bodies[1].offset,
            Offset::At {
                from_eof: true,
                n: 3,
                shift: 2
            }
        );
        let (db, errors) = load(
            "bad.ndb",
            "Test.A:0:*\nTest.B:2:*:4142\nTest.C:0:EP+0:4142\n:0:*:4142\nTest.E:0:*:41zz\nTest.F:0:*:4142:x\nTest.G:x:*:4142\nTest.H:6:S1+0:4142\nTest.I:13:*:4142\nTest.J:1:EP+0,4:4142\n",
        );
        assert_eq!(db.bodies.len(), 1);
        assert_eq!(db.bodies[0].target, Target::Pe);
        expect_test::expect![[r#"
            bad.ndb:1: expected 4 to 6 fields separated by ':', found 3
            bad.ndb:2: unsupported target type 2 (supported: 0 any, 1 PE, 3 HTML, 4 mail, 5 graphics, 6 ELF, 7 ASCII text, 9 Mach-O, 10 PDF, 11 Flash, 12 Java)
            bad.ndb:3: bad offset "EP+0": entry point and section offsets need target 1 (PE), 6 (ELF) or 9 (Mach-O)
            bad.ndb:4: empty signature name
            bad.ndb:5: bad hex signature at column 3: "zz" is not a hex byte
            bad.ndb:6: bad functionality level "x": expected a decimal number
            bad.ndb:7: bad target type "x": expected a decimal number
            bad.ndb:8: unsupported offset "S1+0" (supported: *, n, EOF-n, and EP+n, EP-n, Sx+n, SL+n, SEx for target 1, each with an optional ,maxshift)
            bad.ndb:9: unsupported target type 13 (supported: 0 any, 1 PE, 3 HTML, 4 mail, 5 graphics, 6 ELF, 7 ASCII text, 9 Mach-O, 10 PDF, 11 Flash, 12 Java)"#]]
        .assert_eq(&errors.join("\n"));
    }

    #[test]
    fn ldb_lines() {
        let (db, errors) = load(
            "t.ldb",
            "Test.L;Engine:51-255,Target:0,FileSize:10-2000;(0&1)|2;41424344;EOF-4:45464748;0:4d5a\n",
        );
        assert_eq!(errors, Vec::<String>::new());
        let sig = &db.logicals[0];
        assert_eq!(sig.file_size, Some((10, 2000)));
        assert_eq!(sig.subsigs.len(), 3);
        let Subsig::Hex(offset, _) = &sig.subsigs[1] else {
            panic!("not hex")
        };
        assert_eq!(
            *offset,
            Offset::At {
                from_eof: true,
                n: 4,
                shift: 0
            }
        );
        let once = |set: &'static [usize]| move |i: usize| u32::from(set.contains(&i));
        assert!(sig.expr.holds(&once(&[2])));
        assert!(sig.expr.holds(&once(&[0, 1])));
        assert!(!sig.expr.holds(&once(&[0])));
    }

    #[test]
    fn cdb_lines() {
        let (db, errors) = load(
            "t.cdb",
            "A:CL_TYPE_ZIP:*:\\.exe$:10-20:*:1:3:*:*\n\
             B:*:100:*:*:*:*:*:x:y:81:255\n\
             C:CL_TYPE_RAR:*:*:*:*:*:*:*:*\n\
             D:zip:*:*:*:*:*:*:*:*\n\
             E:*:*:(:*:*:*:*:*:*\n\
             F:*:*:*:9-2:*:*:*:*:*\n\
             G:*:*:*:*:*:2:*:*:*\n\
             H:*:*:*\n\
             :*:*:*:*:*:*:*:*:*\n",
        );
        let a = &db.containers[0];
        assert_eq!(
            (a.compressed, a.position, a.encrypted),
            (Some((10, 20)), Some((3, 3)), Some(true))
        );
        assert!(a.member_name.as_ref().unwrap().is_match(b"x.exe"));
        assert_eq!(db.containers[1].container_size, Some((100, 100)));
        expect_test::expect![[r#"
            t.cdb:3: unsupported in container signature: container type CL_TYPE_RAR (zip and tar are listed)
            t.cdb:4: bad container signature: container type "zip" is not * or a CL_TYPE_ name
            t.cdb:5: bad container signature: name regex "(": error: unclosed group
            t.cdb:6: bad container signature: SizeInContainer "9-2" is not *, n or a-b
            t.cdb:7: bad container signature: IsEncrypted "2" is not 0, 1 or *
            t.cdb:8: expected 10 to 12 fields separated by ':', found 4
            t.cdb:9: empty signature name"#]].assert_eq(&errors.join("\n"));
    }

    #[test]
    fn ldb_errors() {
        let (db, errors) = load(
            "bad.ldb",
            "A;Target:0;0\n\
             B;Target:1;0;4142\n\
             C;Engine:51-255;0;4142\n\
             D;Target:0,EntryPoint:0-10;0;4142\n\
             E;Target:0;0=2;4142\n\
             F;Target:0;0&1|2;4142;4344;4546\n\
             G;Target:0;0&3;4142;4344\n\
             H;Target:0;(0&1;4142;4344\n\
             I;Target:0;0;4142::i\n\
             J;Target:0;0;0/abc/i\n\
             K;Target:0;0;0(>>26#ib2#=0)\n\
             L;Target:0;0;41zz\n\
             M;Target:0,FileSize:9-2;0;4142\n\
             N;Target;0;4142\n\
             O;Target:0;0;EP+2:4142\n\
             P;Target:2;0;4142\n\
             Q;Target:0,Container:CL_TYPE_RAR;0;4142\n\
             R;Target:0,Container:zip;0;4142\n\
             S;Target:0,IconGroup1:x;0;4142\n\
             T;Target:0;0>;4142\n\
             U;Target:0;(0|1)>2,;4142;4344\n\
             V;Target:7,NumberOfSections:1-2;0;4142\n\
             W;Target:1,NumberOfSections:1-2,EntryPoint:0-100,Container:CL_TYPE_ZIP;(0|1)>2,1&0<3;SE0:4142;EP-2,4:4344\n\
             X;Target:0;0&1;4142;0/(a)\\1/\n\
             Y;Target:0;0&1;4142;0/(?<=a)b/\n\
             Z;Target:0;0&1;4142;0/ab/q\n\
             AA;Target:0;0&1;4142;1/ab/\n\
             AB;Target:0;0&1;4142;/ab/\n\
             AC;Target:0;0&1;4142;EP+0:0/ab/\n\
             AD;Target:0;0&1&2;4142;0/a(b/;0/ab/gire\n\
             AE;Target:0;0&1;4142;0(>>2#hb2#=1)\n\
             AF;Target:0;0&1;4142;0(>>2#ib3#=1)\n\
             AG;Target:0;0&1;41{0-3}424344;0(>>2#ib2#=1)\n\
             AH;Target:0;0&1;4142;0(>>2#ib2#~1)\n\
             AI;Target:0;0&1;4142;0(>>2#ib2)\n\
             AJ;Target:0;0&1;4142;2(>>2#ib2#=1)\n\
             AK;Target:0;0&1;4142;0(>>2#ib2#=1)\n",
        );
        let loaded: Vec<&str> = db.logicals.iter().map(|l| &*l.name).collect();
        assert_eq!(loaded, ["B", "E", "F", "W", "AK"]);
        expect_test::expect![[r#"
            bad.ldb:1: expected at least 4 fields separated by ';', found 3
            bad.ldb:3: bad logical signature: the target description has no Target
            bad.ldb:4: bad logical signature: EntryPoint and NumberOfSections need Target:1 (PE), 6 or 9
            bad.ldb:7: bad logical signature: expression "0&3": subsignature 3 does not exist (2 given)
            bad.ldb:8: bad logical signature: expression "(0&1": missing ')' at column 5
            bad.ldb:9: unsupported in logical signature: subsignature 0: modifiers (::i, ::w, ::a, ::f)
            bad.ldb:10: bad logical signature: subsignature 0: PCRE trigger: expression "0": subsignature 0 does not exist (0 given)
            bad.ldb:11: bad logical signature: subsignature 0: byte comparison refers to subsignature 0, which is not a hex subsignature
            bad.ldb:12: bad logical signature: subsignature 0, column 3: "zz" is not a hex byte
            bad.ldb:13: bad logical signature: FileSize:9-2 is not a range a-b
            bad.ldb:14: bad logical signature: target description item "Target" is not Key:Value
            bad.ldb:15: bad offset "EP+2": entry point and section offsets need target 1 (PE), 6 (ELF) or 9 (Mach-O)
            bad.ldb:16: unsupported target type 2 (supported: 0 any, 1 PE, 3 HTML, 4 mail, 5 graphics, 6 ELF, 7 ASCII text, 9 Mach-O, 10 PDF, 11 Flash, 12 Java)
            bad.ldb:17: unsupported in logical signature: Container:CL_TYPE_RAR (this engine opens zip, gzip and tar only)
            bad.ldb:18: bad logical signature: Container:zip is not a CL_TYPE_ name
            bad.ldb:19: unsupported in logical signature: target description key IconGroup1
            bad.ldb:20: bad logical signature: expression "0>": missing count at column 3
            bad.ldb:21: bad logical signature: expression "(0|1)>2,": missing distinct count at column 9
            bad.ldb:22: bad logical signature: EntryPoint and NumberOfSections need Target:1 (PE), 6 or 9
            bad.ldb:24: unsupported in logical signature: subsignature 1: PCRE that the regex crate cannot compile (error: backreferences are not supported)
            bad.ldb:25: unsupported in logical signature: subsignature 1: PCRE that the regex crate cannot compile (error: look-around, including look-ahead and look-behind, is not supported)
            bad.ldb:26: bad logical signature: subsignature 1: unknown PCRE flag 'q'
            bad.ldb:27: bad logical signature: subsignature 1: PCRE trigger: expression "1": subsignature 1 does not exist (1 given)
            bad.ldb:28: bad logical signature: subsignature 1: a PCRE subsignature needs a trigger and a regex
            bad.ldb:29: bad offset "EP+0": entry point and section offsets need target 1 (PE), 6 (ELF) or 9 (Mach-O)
            bad.ldb:30: unsupported in logical signature: subsignature 1: PCRE that the regex crate cannot compile (error: unclosed group)
            bad.ldb:31: unsupported in logical signature: subsignature 1: byte comparison of text values (h); only binary (i) is supported
            bad.ldb:32: bad logical signature: subsignature 1: byte comparison "0(>>2#ib3#=1)": binary byte count "3" is not 1, 2, 4 or 8
            bad.ldb:33: unsupported in logical signature: subsignature 1: byte comparison on subsignature 0, whose start is not a fixed distance before its anchor
            bad.ldb:34: bad logical signature: subsignature 1: byte comparison "0(>>2#ib2#~1)": comparison "~1" is not <n, >n or =n
            bad.ldb:35: bad logical signature: subsignature 1: byte comparison "0(>>2#ib2)": expected 3 parts separated by '#', found 2
            bad.ldb:36: bad logical signature: subsignature 1: byte comparison refers to subsignature 2, which is not a hex subsignature"#]].assert_eq(&errors.join("\n"));
        let (pcre, errors) = load(
            "pcre.ldb",
            "P;Target:0;0&1;4142;0/a[0-9]+b/gire\nQ;Target:1;0&1;4142;EP+4,8:0/x/\n",
        );
        assert_eq!(errors, Vec::<String>::new());
        let Subsig::Pcre(p) = &pcre.logicals[1].subsigs[1] else {
            panic!("not PCRE")
        };
        assert_eq!(p.offset, Offset::EntryPoint { delta: 4, shift: 8 });
        assert!(p.regex.is_match(b"xx"));
    }
}
