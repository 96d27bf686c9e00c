//! Signature databases in ClamAV's text formats, parsed line by line into a `Database`.
//!
//! Supported files and fields:
//! - `.hdb`: `MD5:Size:Name[:MinFL[:MaxFL]]` — the MD5 of the whole file; `Size` may be `*`.
//! - `.hsb`: `HASH:Size:Name[:MinFL[:MaxFL]]` — the SHA-1 (40 hex digits) or SHA-256 (64) of
//!   the whole file; `*` allowed. (`.mdb`/`.msb`, PE section hashes, are not supported.)
//! - `.ndb`: `Name:Target:Offset:HexSig[:MinFL[:MaxFL]]`, target 0 (any file) only; offsets
//!   `*`, `n`, `n,maxshift`, `EOF-n`, `EOF-n,maxshift` (the start of the match); hex syntax in
//!   `hex`. Executable-relative offsets (`EP+n`, `Sx+n`, `SL+n`, `SEx`, `VI`) are unsupported.
//! - `.ldb`, a subset: `Name;Target:0[,Engine:a-b][,FileSize:a-b];Expr;Sub0[;Sub1…]` where
//!   `Expr` uses subsignature indices, `&`, `|` and parentheses, and each subsignature is
//!   `[Offset:]HexSig`. Match counts (`=n`, `>n`, `<n`, `,`), other target-description keys,
//!   subsignature modifiers (`::i`, `::w`, …), PCRE, byte comparisons and macros are
//!   reported as unsupported.
//!
//! Functionality levels (`MinFL`, `MaxFL`) are checked for syntax and otherwise ignored: this
//! engine behaves as a current ClamAV. Blank lines and lines starting with `#` are skipped.
//! Every other line either loads or yields one `ParseError` naming file, line and reason.

use std::sync::Arc;

use crate::error::{ParseError, ParseErrorKind};
use crate::hex::{self, HexPattern};

/// Where a body signature may start in the scanned bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    /// Anywhere (`*`).
    Any,
    /// At `n` bytes from the start (or from the end when `from_eof`, `EOF-n`), or up to
    /// `shift` bytes after that (`n,maxshift`).
    At { from_eof: bool, n: u64, shift: u64 },
}

impl Offset {
    /// The inclusive range of allowed start positions in a buffer of `len` bytes, if any.
    pub fn range(self, len: usize) -> Option<(usize, usize)> {
        let len = len as u64;
        match self {
            Offset::Any => Some((0, len as usize)),
            Offset::At { from_eof, n, shift } => {
                let lo = if from_eof { len.checked_sub(n)? } else { n };
                if lo > len {
                    return None;
                }
                let hi = lo.saturating_add(shift).min(len);
                Some((lo as usize, hi as usize))
            }
        }
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
    pub offset: Offset,
    pub pattern: HexPattern,
}

/// The boolean expression of a logical signature over its subsignatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Sub(usize),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

impl Expr {
    pub fn eval(&self, matched: &dyn Fn(usize) -> bool) -> bool {
        match self {
            Expr::Sub(i) => matched(*i),
            Expr::And(a, b) => a.eval(matched) && b.eval(matched),
            Expr::Or(a, b) => a.eval(matched) || b.eval(matched),
        }
    }
}

/// A logical signature (`.ldb`, the subset described above).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalSig {
    pub name: Arc<str>,
    /// Inclusive file size range from `FileSize:a-b`.
    pub file_size: Option<(u64, u64)>,
    pub expr: Expr,
    pub subsigs: Vec<(Offset, HexPattern)>,
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
        if !matches!(ext.as_str(), "hdb" | "hsb" | "ndb" | "ldb") {
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
    let executable = ["EP+", "EP-", "S", "SL+", "SE", "VI", "$"];
    if executable.iter().any(|p| base.starts_with(p)) {
        return Err(ParseErrorKind::UnsupportedOffset(s.to_owned()));
    }
    Err(bad("expected *, n, n,maxshift, EOF-n or EOF-n,maxshift"))
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
    if fields[1] != "0" {
        return Err(ParseErrorKind::UnsupportedTarget(fields[1].to_owned()));
    }
    let offset = parse_offset(fields[2])?;
    let pattern = hex::parse(fields[3])?;
    flevels(&fields[4..])?;
    Ok(BodySig {
        name,
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
    let file_size = parse_tdb(fields[1])?;
    let subsigs = fields[3..]
        .iter()
        .enumerate()
        .map(|(i, s)| parse_subsig(i, s))
        .collect::<Result<Vec<_>, _>>()?;
    if subsigs.len() > 64 {
        return Err(ParseErrorKind::BadLogical(
            "more than 64 subsignatures".to_owned(),
        ));
    }
    let expr = parse_expr(fields[2], subsigs.len())?;
    Ok(LogicalSig {
        name,
        file_size,
        expr,
        subsigs,
    })
}

fn parse_tdb(tdb: &str) -> Result<Option<(u64, u64)>, ParseErrorKind> {
    let mut target = None;
    let mut file_size = None;
    for item in tdb.split(',') {
        let Some((key, value)) = item.split_once(':') else {
            return Err(ParseErrorKind::BadLogical(format!(
                "target description item {item:?} is not Key:Value"
            )));
        };
        let range = || -> Result<(u64, u64), ParseErrorKind> {
            let bad = || ParseErrorKind::BadLogical(format!("{key}:{value} is not a range a-b"));
            let (a, b) = value.split_once('-').ok_or_else(bad)?;
            let (a, b) = (parse_u64(a).ok_or_else(bad)?, parse_u64(b).ok_or_else(bad)?);
            if a > b { Err(bad()) } else { Ok((a, b)) }
        };
        match key {
            "Target" => target = Some(value),
            "Engine" => {
                range()?;
            }
            "FileSize" => file_size = Some(range()?),
            _ => {
                return Err(ParseErrorKind::UnsupportedLogical(format!(
                    "target description key {key}"
                )));
            }
        }
    }
    match target {
        Some("0") => Ok(file_size),
        Some(t) => Err(ParseErrorKind::UnsupportedTarget(t.to_owned())),
        None => Err(ParseErrorKind::BadLogical(
            "the target description has no Target".to_owned(),
        )),
    }
}

fn parse_subsig(index: usize, s: &str) -> Result<(Offset, HexPattern), ParseErrorKind> {
    let unsupported = |what: &str| {
        Err(ParseErrorKind::UnsupportedLogical(format!(
            "subsignature {index}: {what}"
        )))
    };
    if s.contains("::") {
        return unsupported("modifiers (::i, ::w, ::a, ::f)");
    }
    if s.contains('/') {
        return unsupported("PCRE subsignatures");
    }
    if s.contains('#') {
        return unsupported("byte comparison subsignatures");
    }
    if s.starts_with("${") {
        return unsupported("macro subsignatures");
    }
    let (offset, hex) = match s.rsplit_once(':') {
        Some((offset, hex)) => (parse_offset(offset)?, hex),
        None => (Offset::Any, s),
    };
    let pattern = hex::parse(hex).map_err(|kind| match kind {
        ParseErrorKind::BadHex { column, reason } => {
            ParseErrorKind::BadLogical(format!("subsignature {index}, column {column}: {reason}"))
        }
        other => other,
    })?;
    Ok((offset, pattern))
}

/// Recursive descent over `a&b|(c&d)`; `&` and `|` have equal precedence in ClamAV, so mixing
/// them without parentheses is refused as ambiguous rather than guessed.
fn parse_expr(text: &str, subsig_count: usize) -> Result<Expr, ParseErrorKind> {
    let bad = |why: String| ParseErrorKind::BadLogical(format!("expression {text:?}: {why}"));
    if text.contains(['=', '>', '<', ',']) {
        return Err(ParseErrorKind::UnsupportedLogical(
            "match counts (=n, >n, <n) in the expression".to_owned(),
        ));
    }
    let s = text.as_bytes();
    let mut pos = 0;
    let expr = parse_or(s, &mut pos, subsig_count, 0).map_err(bad)?;
    if pos != s.len() {
        return Err(bad(format!(
            "unexpected {:?} at column {}",
            s[pos] as char,
            pos + 1
        )));
    }
    Ok(expr)
}

fn parse_or(s: &[u8], pos: &mut usize, n: usize, depth: usize) -> Result<Expr, String> {
    if depth > 64 {
        return Err("nested too deeply".to_owned());
    }
    let mut left = parse_atom(s, pos, n, depth)?;
    let mut op = None;
    while let Some(&c) = s.get(*pos) {
        if c != b'&' && c != b'|' {
            break;
        }
        if op.is_some_and(|o| o != c) {
            return Err(format!(
                "mixed & and | without parentheses at column {}",
                *pos + 1
            ));
        }
        op = Some(c);
        *pos += 1;
        let right = parse_atom(s, pos, n, depth)?;
        left = if c == b'&' {
            Expr::And(left.into(), right.into())
        } else {
            Expr::Or(left.into(), right.into())
        };
    }
    Ok(left)
}

fn parse_atom(s: &[u8], pos: &mut usize, n: usize, depth: usize) -> Result<Expr, String> {
    match s.get(*pos) {
        Some(b'(') => {
            *pos += 1;
            let e = parse_or(s, pos, n, depth + 1)?;
            if s.get(*pos) != Some(&b')') {
                return Err(format!("missing ')' at column {}", *pos + 1));
            }
            *pos += 1;
            Ok(e)
        }
        Some(c) if c.is_ascii_digit() => {
            let start = *pos;
            while s.get(*pos).is_some_and(u8::is_ascii_digit) {
                *pos += 1;
            }
            let digits = std::str::from_utf8(&s[start..*pos]).unwrap_or_default();
            let i: usize = digits.parse().map_err(|_| format!("bad index {digits}"))?;
            if i >= n {
                return Err(format!("subsignature {i} does not exist ({n} given)"));
            }
            Ok(Expr::Sub(i))
        }
        Some(&c) => Err(format!("unexpected {:?} at column {}", c as char, *pos + 1)),
        None => Err("unexpected end".to_owned()),
    }
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
                "x.mdb:0: unsupported database type \"x.mdb\" (supported: .hdb, .hsb, .ndb, .ldb, .yar, .yara)"
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
        let e = |s| parse_offset(s).unwrap_err().to_string();
        assert_eq!(
            e("EP+10"),
            "unsupported offset \"EP+10\" (supported: *, n, EOF-n, n,maxshift, EOF-n,maxshift)"
        );
        assert_eq!(
            e("S2+4"),
            "unsupported offset \"S2+4\" (supported: *, n, EOF-n, n,maxshift, EOF-n,maxshift)"
        );
        assert_eq!(
            e("SL+4"),
            "unsupported offset \"SL+4\" (supported: *, n, EOF-n, n,maxshift, EOF-n,maxshift)"
        );
        assert_eq!(e("EOF-x"), "bad offset \"EOF-x\": EOF-n needs a decimal n");
        assert_eq!(
            e("3,x"),
            "bad offset \"3,x\": maxshift must be a decimal number"
        );
        assert_eq!(
            e("-3"),
            "bad offset \"-3\": expected *, n, n,maxshift, EOF-n or EOF-n,maxshift"
        );
        assert_eq!(
            e(""),
            "bad offset \"\": expected *, n, n,maxshift, EOF-n or EOF-n,maxshift"
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
            "Test.A:0:*\nTest.B:1:*:4142\nTest.C:0:EP+0:4142\n:0:*:4142\nTest.E:0:*:41zz\nTest.F:0:*:4142:x\nTest.G:x:*:4142\n",
        );
        assert!(db.bodies.is_empty());
        expect_test::expect![[r#"
            bad.ndb:1: expected 4 to 6 fields separated by ':', found 3
            bad.ndb:2: unsupported target type 1 (only 0, any file, is supported)
            bad.ndb:3: unsupported offset "EP+0" (supported: *, n, EOF-n, n,maxshift, EOF-n,maxshift)
            bad.ndb:4: empty signature name
            bad.ndb:5: bad hex signature at column 3: "zz" is not a hex byte
            bad.ndb:6: bad functionality level "x": expected a decimal number
            bad.ndb:7: unsupported target type x (only 0, any file, is supported)"#]]
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
        assert_eq!(
            sig.subsigs[1].0,
            Offset::At {
                from_eof: true,
                n: 4,
                shift: 0
            }
        );
        assert!(sig.expr.eval(&|i| i == 2));
        assert!(sig.expr.eval(&|i| i < 2));
        assert!(!sig.expr.eval(&|i| i == 0));
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
             O;Target:0;0;EP+2:4142\n",
        );
        assert!(db.logicals.is_empty());
        expect_test::expect![[r#"
            bad.ldb:1: expected at least 4 fields separated by ';', found 3
            bad.ldb:2: unsupported target type 1 (only 0, any file, is supported)
            bad.ldb:3: bad logical signature: the target description has no Target
            bad.ldb:4: unsupported in logical signature: target description key EntryPoint
            bad.ldb:5: unsupported in logical signature: match counts (=n, >n, <n) in the expression
            bad.ldb:6: bad logical signature: expression "0&1|2": mixed & and | without parentheses at column 4
            bad.ldb:7: bad logical signature: expression "0&3": subsignature 3 does not exist (2 given)
            bad.ldb:8: bad logical signature: expression "(0&1": missing ')' at column 5
            bad.ldb:9: unsupported in logical signature: subsignature 0: modifiers (::i, ::w, ::a, ::f)
            bad.ldb:10: unsupported in logical signature: subsignature 0: PCRE subsignatures
            bad.ldb:11: unsupported in logical signature: subsignature 0: byte comparison subsignatures
            bad.ldb:12: bad logical signature: subsignature 0, column 3: "zz" is not a hex byte
            bad.ldb:13: bad logical signature: FileSize:9-2 is not a range a-b
            bad.ldb:14: bad logical signature: target description item "Target" is not Key:Value
            bad.ldb:15: unsupported offset "EP+2" (supported: *, n, EOF-n, n,maxshift, EOF-n,maxshift)"#]]
        .assert_eq(&errors.join("\n"));
    }
}
