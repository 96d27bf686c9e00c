//! ClamAV body-signature hex syntax (`.ndb` signatures and `.ldb` subsignatures) parsed into
//! a list of pattern elements. Matching those elements lives in `verify`.
//!
//! Supported: hex bytes (`4d5a`), nibble wildcards (`4?`, `?d`), any byte (`??`), any number of
//! bytes (`*`), bounded gaps (`{n}`, `{-n}`, `{n-}`, `{n-m}`), alternatives of fixed byte
//! strings (`(aa|bbcc)`) and negated single-byte alternatives (`!(aa|bb)`).
//! Not supported, reported per line: word and line markers (`(B)`, `(L)`), anchored byte
//! ranges (`[n-m]`), wildcards inside alternatives and negated multi-byte alternatives.

use crate::error::ParseErrorKind;

/// The largest gap accepted in `{n}` and friends. Large enough for every real signature, small
/// enough that positions never overflow on 32-bit targets.
pub const MAX_GAP: u32 = 1 << 28;

/// One element of a body signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Elem {
    /// One byte `b` such that `b & mask == value`; mask `0xff` is an exact byte, `0xf0` and
    /// `0x0f` are nibble matches and `0x00` is `??`.
    Byte { value: u8, mask: u8 },
    /// One byte in a set: single-byte alternatives `(aa|bb)` and negated ones `!(aa|bb)`.
    Set(Box<ByteSet>),
    /// One of several fixed byte strings, possibly of different lengths: `(aabb|cc)`.
    Alt(Vec<Vec<u8>>),
    /// Between `min` and `max` arbitrary bytes; `max: None` is unbounded (`*`, `{n-}`).
    Gap { min: u32, max: Option<u32> },
}

/// A set of byte values as a 256-bit bitmap.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ByteSet([u64; 4]);

impl ByteSet {
    pub fn insert(&mut self, b: u8) {
        self.0[usize::from(b >> 6)] |= 1 << (b & 63);
    }
    pub fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] & (1 << (b & 63)) != 0
    }
    fn complement(&self) -> ByteSet {
        ByteSet(self.0.map(|w| !w))
    }
}

impl Elem {
    /// Whether this element is one exact byte (the only kind anchors are made of).
    pub fn exact_byte(&self) -> Option<u8> {
        match *self {
            Elem::Byte { value, mask: 0xff } => Some(value),
            _ => None,
        }
    }
}

/// A parsed body signature: its elements and the longest run of exact bytes in it, which the
/// matcher searches for before verifying the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HexPattern {
    pub elems: Vec<Elem>,
    /// `elems[anchor.0..anchor.1]` are all exact bytes, at least two of them.
    pub anchor: (usize, usize),
}

/// The number of bytes before the anchor when that is fixed (no `*`, no ranged gap, no
/// alternatives of different lengths), so a match's start follows from its anchor's.
pub fn prefix_width(p: &HexPattern) -> Option<usize> {
    p.elems[..p.anchor.0].iter().try_fold(0usize, |w, e| {
        let n = match e {
            Elem::Byte { .. } | Elem::Set(_) => 1,
            Elem::Alt(alts) => {
                let n = alts.first().map_or(0, Vec::len);
                if alts.iter().any(|a| a.len() != n) {
                    return None;
                }
                n
            }
            Elem::Gap { min, max } if Some(*min) == *max => *min as usize,
            Elem::Gap { .. } => return None,
        };
        w.checked_add(n)
    })
}

impl HexPattern {
    pub fn anchor_bytes(&self) -> Vec<u8> {
        self.elems[self.anchor.0..self.anchor.1]
            .iter()
            .filter_map(Elem::exact_byte)
            .collect()
    }
}

fn bad(column: usize, reason: impl Into<String>) -> ParseErrorKind {
    ParseErrorKind::BadHex {
        column,
        reason: reason.into(),
    }
}

fn unsupported(column: usize, construct: &'static str) -> ParseErrorKind {
    ParseErrorKind::UnsupportedHex { column, construct }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Parses a ClamAV hex signature. Columns in errors are 1-based positions in `text`.
pub fn parse(text: &str) -> Result<HexPattern, ParseErrorKind> {
    let s = text.as_bytes();
    if s.is_empty() {
        return Err(bad(1, "empty signature"));
    }
    // Everything below indexes by byte; a multi-byte character would split (found by fuzzing).
    if let Some(i) = s.iter().position(|b| !b.is_ascii()) {
        return Err(bad(i + 1, "non-ASCII character"));
    }
    let mut elems: Vec<Elem> = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let column = i + 1;
        match s[i] {
            b'*' => {
                push_gap(&mut elems, 0, None);
                i += 1;
            }
            b'{' => {
                let close = s[i..]
                    .iter()
                    .position(|&c| c == b'}')
                    .ok_or_else(|| bad(column, "'{' without '}'"))?;
                let inner = &text[i + 1..i + close];
                let (min, max) = parse_range(inner).map_err(|r| bad(column, r))?;
                push_gap(&mut elems, min, max);
                i += close + 1;
            }
            b'[' => return Err(unsupported(column, "anchored byte range [n-m]")),
            b'!' => {
                if s.get(i + 1) != Some(&b'(') {
                    return Err(bad(column, "'!' must be followed by '('"));
                }
                let (choices, len) = parse_alternatives(text, i + 1)?;
                if choices.iter().any(|c| c.len() != 1) {
                    return Err(unsupported(column, "negated multi-byte alternatives"));
                }
                let mut set = ByteSet::default();
                for c in &choices {
                    set.insert(c[0]);
                }
                elems.push(Elem::Set(Box::new(set.complement())));
                i += 1 + len;
            }
            b'(' => {
                if s[i..].starts_with(b"(B)") || s[i..].starts_with(b"(L)") {
                    return Err(unsupported(column, "word or line boundary marker (B)/(L)"));
                }
                let (choices, len) = parse_alternatives(text, i)?;
                if choices.iter().all(|c| c.len() == 1) {
                    let mut set = ByteSet::default();
                    for c in &choices {
                        set.insert(c[0]);
                    }
                    elems.push(Elem::Set(Box::new(set)));
                } else {
                    elems.push(Elem::Alt(choices));
                }
                i += len;
            }
            hi => {
                let Some(&lo) = s.get(i + 1) else {
                    return Err(bad(column, "odd number of hex digits"));
                };
                elems.push(parse_byte(hi, lo).ok_or_else(|| {
                    bad(column, format!("{:?} is not a hex byte", &text[i..i + 2]))
                })?);
                i += 2;
            }
        }
    }
    if matches!(elems.first(), Some(Elem::Gap { .. })) {
        return Err(bad(1, "a signature cannot start with a gap"));
    }
    if matches!(elems.last(), Some(Elem::Gap { .. })) {
        return Err(bad(s.len(), "a signature cannot end with a gap"));
    }
    let anchor = longest_exact_run(&elems).ok_or(ParseErrorKind::NoAnchor)?;
    Ok(HexPattern { elems, anchor })
}

/// Adjacent gaps are merged so the verifier never sees two in a row.
fn push_gap(elems: &mut Vec<Elem>, min: u32, max: Option<u32>) {
    if let Some(Elem::Gap { min: m, max: x }) = elems.last_mut() {
        *m = m.saturating_add(min);
        *x = match (*x, max) {
            (Some(a), Some(b)) => Some(a.saturating_add(b)),
            _ => None,
        };
    } else {
        elems.push(Elem::Gap { min, max });
    }
}

fn parse_byte(hi: u8, lo: u8) -> Option<Elem> {
    let nibble = |c: u8| {
        if c == b'?' {
            Some(None)
        } else {
            hex_value(c).map(Some)
        }
    };
    let (h, l) = (nibble(hi)?, nibble(lo)?);
    let value = (h.unwrap_or(0) << 4) | l.unwrap_or(0);
    let mask = (if h.is_some() { 0xf0 } else { 0 }) | (if l.is_some() { 0x0f } else { 0 });
    Some(Elem::Byte { value, mask })
}

fn parse_number(s: &str) -> Result<u32, &'static str> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("gap bounds must be decimal numbers");
    }
    match s.parse::<u32>() {
        Ok(n) if n <= MAX_GAP => Ok(n),
        _ => Err("gap too large"),
    }
}

/// `n`, `-n`, `n-`, `n-m` as found between braces.
fn parse_range(inner: &str) -> Result<(u32, Option<u32>), &'static str> {
    match inner.split_once('-') {
        None => {
            let n = parse_number(inner)?;
            Ok((n, Some(n)))
        }
        Some(("", max)) => Ok((0, Some(parse_number(max)?))),
        Some((min, "")) => Ok((parse_number(min)?, None)),
        Some((min, max)) => {
            let (min, max) = (parse_number(min)?, parse_number(max)?);
            if min > max {
                return Err("gap minimum is larger than its maximum");
            }
            Ok((min, Some(max)))
        }
    }
}

/// Parses `(aa|bbcc|…)` starting at `start` (the '('); returns the choices and the length
/// consumed including both parentheses.
fn parse_alternatives(text: &str, start: usize) -> Result<(Vec<Vec<u8>>, usize), ParseErrorKind> {
    let s = text.as_bytes();
    let column = start + 1;
    let close = s[start..]
        .iter()
        .position(|&c| c == b')')
        .ok_or_else(|| bad(column, "'(' without ')'"))?;
    let inner = &s[start + 1..start + close];
    if inner.contains(&b'(') {
        return Err(unsupported(column, "nested alternatives"));
    }
    let mut choices = Vec::new();
    for choice in inner.split(|&c| c == b'|') {
        if choice.is_empty() {
            return Err(bad(column, "empty alternative"));
        }
        if choice.len() % 2 != 0 {
            return Err(bad(column, "odd number of hex digits in an alternative"));
        }
        let mut bytes = Vec::with_capacity(choice.len() / 2);
        for pair in choice.chunks(2) {
            if pair.iter().any(|&c| matches!(c, b'?' | b'*' | b'{' | b'[')) {
                return Err(unsupported(column, "wildcards inside alternatives"));
            }
            match (hex_value(pair[0]), hex_value(pair[1])) {
                (Some(h), Some(l)) => bytes.push(h << 4 | l),
                _ => return Err(bad(column, "alternatives must be hex bytes")),
            }
        }
        choices.push(bytes);
    }
    if choices.len() < 2 {
        return Err(bad(column, "alternatives need at least two choices"));
    }
    Ok((choices, close + 1))
}

/// The longest run of exact bytes (first one on ties), if at least two bytes long: ClamAV
/// likewise refuses signatures without a static part of two bytes.
fn longest_exact_run(elems: &[Elem]) -> Option<(usize, usize)> {
    let mut best: Option<(usize, usize)> = None;
    let mut i = 0;
    while i < elems.len() {
        if elems[i].exact_byte().is_none() {
            i += 1;
            continue;
        }
        let start = i;
        while i < elems.len() && elems[i].exact_byte().is_some() {
            i += 1;
        }
        if i - start >= 2 && best.is_none_or(|(s, e)| i - start > e - s) {
            best = Some((start, i));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(value: u8) -> Elem {
        Elem::Byte { value, mask: 0xff }
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn plain_bytes_any_case() {
        let p = parse("4d5A9000").unwrap();
        assert_eq!(p.elems, vec![b(0x4d), b(0x5a), b(0x90), b(0)]);
        assert_eq!(p.anchor, (0, 4));
        assert_eq!(p.anchor_bytes(), vec![0x4d, 0x5a, 0x90, 0]);
    }

    #[test]
    fn wildcards_and_nibbles() {
        let p = parse("aabb??4??dccdd").unwrap();
        assert_eq!(
            p.elems[2..5],
            [
                Elem::Byte { value: 0, mask: 0 },
                Elem::Byte {
                    value: 0x40,
                    mask: 0xf0
                },
                Elem::Byte {
                    value: 0x0d,
                    mask: 0x0f
                }
            ]
        );
        // Ties go to the first run.
        assert_eq!(p.anchor, (0, 2));
    }

    #[test]
    fn gaps() {
        let p = parse("aabb*ccdd{4}eeff{-3}0102{5-}0304{2-9}050607").unwrap();
        let gaps: Vec<_> = p
            .elems
            .iter()
            .filter(|e| matches!(e, Elem::Gap { .. }))
            .collect();
        assert_eq!(
            gaps,
            [
                &Elem::Gap { min: 0, max: None },
                &Elem::Gap {
                    min: 4,
                    max: Some(4)
                },
                &Elem::Gap {
                    min: 0,
                    max: Some(3)
                },
                &Elem::Gap { min: 5, max: None },
                &Elem::Gap {
                    min: 2,
                    max: Some(9)
                },
            ]
        );
        assert_eq!(p.anchor_bytes(), vec![5, 6, 7]);
    }

    #[test]
    fn adjacent_gaps_merge() {
        let p = parse("aabb{2}{3-4}ccdd").unwrap();
        assert_eq!(
            p.elems[2],
            Elem::Gap {
                min: 5,
                max: Some(6)
            }
        );
        let p = parse("aabb{2}*ccdd").unwrap();
        assert_eq!(p.elems[2], Elem::Gap { min: 2, max: None });
    }

    #[test]
    fn alternatives() {
        let p = parse("aabb(01|02)(0304|05)").unwrap();
        let Elem::Set(set) = &p.elems[2] else {
            panic!("{:?}", p.elems[2])
        };
        assert!(set.contains(1) && set.contains(2) && !set.contains(3));
        assert_eq!(p.elems[3], Elem::Alt(vec![vec![3, 4], vec![5]]));
        let p = parse("aabb!(01|02)").unwrap();
        let Elem::Set(set) = &p.elems[2] else {
            panic!()
        };
        assert!(!set.contains(1) && !set.contains(2) && set.contains(3) && set.contains(0xff));
    }

    #[test]
    fn malformed() {
        assert_eq!(err(""), "bad hex signature at column 1: empty signature");
        assert_eq!(
            err("aab"),
            "bad hex signature at column 3: odd number of hex digits"
        );
        assert_eq!(
            err("aazz"),
            "bad hex signature at column 3: \"zz\" is not a hex byte"
        );
        assert_eq!(
            err("aabb{3"),
            "bad hex signature at column 5: '{' without '}'"
        );
        assert_eq!(
            err("aabb{x}cc"),
            "bad hex signature at column 5: gap bounds must be decimal numbers"
        );
        assert_eq!(
            err("aabb{5-2}cc"),
            "bad hex signature at column 5: gap minimum is larger than its maximum"
        );
        assert_eq!(
            err("aabb{999999999999}cc"),
            "bad hex signature at column 5: gap too large"
        );
        assert_eq!(
            err("aabb(01|02"),
            "bad hex signature at column 5: '(' without ')'"
        );
        assert_eq!(
            err("aabb(01||02)"),
            "bad hex signature at column 5: empty alternative"
        );
        assert_eq!(
            err("aabb(01)"),
            "bad hex signature at column 5: alternatives need at least two choices"
        );
        assert_eq!(
            err("aabb(0|02)"),
            "bad hex signature at column 5: odd number of hex digits in an alternative"
        );
        assert_eq!(
            err("aabb(zz|02)"),
            "bad hex signature at column 5: alternatives must be hex bytes"
        );
        assert_eq!(
            err("aabb!01"),
            "bad hex signature at column 5: '!' must be followed by '('"
        );
        assert_eq!(
            err("*aabb"),
            "bad hex signature at column 1: a signature cannot start with a gap"
        );
        assert_eq!(
            err("aabb{2}"),
            "bad hex signature at column 7: a signature cannot end with a gap"
        );
        assert_eq!(
            err("4142\u{2b7}4"),
            "bad hex signature at column 5: non-ASCII character"
        );
        assert_eq!(
            err("aa??bb"),
            "no fixed run of at least 2 bytes to anchor the signature on"
        );
    }

    #[test]
    fn unsupported_constructs() {
        let u = |s| err(s).replace("unsupported construct in hex signature at ", "");
        assert_eq!(
            u("aabb(B)ccdd"),
            "column 5: word or line boundary marker (B)/(L)"
        );
        assert_eq!(
            u("aabb(L)ccdd"),
            "column 5: word or line boundary marker (B)/(L)"
        );
        assert_eq!(u("aabb[2-4]ccdd"), "column 5: anchored byte range [n-m]");
        assert_eq!(
            u("aabb(01??|02)"),
            "column 5: wildcards inside alternatives"
        );
        assert_eq!(
            u("aabb!(0102|03)"),
            "column 5: negated multi-byte alternatives"
        );
        assert_eq!(u("aabb((01|02)|03)"), "column 5: nested alternatives");
    }
}
