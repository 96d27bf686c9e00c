//! The content normalisation ClamAV applies before matching text and HTML: pure functions
//! from bytes to the normalised bytes its signatures (targets 7 and 3, and target 0 too) are
//! written against.
//!
//! - `text`: `libclamav/textnorm.c` — ASCII letters lower-cased, every run of whitespace
//!   (TAB, LF, VT, FF, CR, space) one space, other control bytes and every byte above 0x7f
//!   dropped. Applied to text files that are not HTML (`cli_scanscript`).
//! - `html`: `libclamav/htmlnorm.c`'s state machine, producing the two views ClamAV scans:
//!   `nocomment` (tags kept and lower-cased, `<!…>` comments removed outside scripts,
//!   whitespace runs one space, and none inside scripts and styles, `'` as `"` inside scripts
//!   and attribute values, character references decoded) and `notags` (the text outside tags,
//!   scripts and styles, with `<a href>` and `<img src>` values, whitespace and references as
//!   one space).
//!
//! Simplified, on purpose (documented in ARCHITECTURE.md): ClamAV's JavaScript normaliser
//! (`js-norm.c`, the `javascript` view that renames identifiers and folds strings), the
//! decoding of `JScript.Encode`/`VBScript.Encode` scripts, `data:` URIs (RFC 2397) and the
//! named entities beyond the common ones are not implemented; the input is normalised as one
//! chunk (ClamAV cuts it into 8 KiB chunks at whitespace and skips the whitespace that starts
//! each, which only differs inside quoted attribute values).

/// ClamAV's size limits: a text file larger than this is not normalised
/// (`MaxScriptNormalize`), an HTML file not normalised or not turned into `notags`
/// (`MaxHTMLNormalize`, `MaxHTMLNoTags`).
pub const MAX_SCRIPT_NORMALIZE: usize = 20 << 20;
pub const MAX_HTML_NORMALIZE: usize = 40 << 20;
pub const MAX_HTML_NOTAGS: usize = 8 << 20;

/// What `textnorm.c` does with each byte: 0 drops it, `b' '` is whitespace, anything else is
/// the byte written (upper-case ASCII lower-cased).
const TEXT_ACTION: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0x21;
    while c <= 0x7f {
        t[c] = (c as u8).to_ascii_lowercase();
        c += 1;
    }
    t[b'\t' as usize] = b' ';
    t[b'\n' as usize] = b' ';
    t[0x0b] = b' ';
    t[0x0c] = b' ';
    t[b'\r' as usize] = b' ';
    t[b' ' as usize] = b' ';
    t
};

/// `textnorm.c`: lower-case, whitespace runs to one space, other control and 8-bit bytes
/// dropped.
pub fn text(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    text_into(data, &mut out);
    out
}

/// `text`, into a buffer reused across calls (cleared first). Branch-free per byte: every
/// byte is written and the length advanced only when it is kept, which ran several times
/// faster here than pushing conditionally (normalisation is on the path of every text file).
pub fn text_into(data: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.resize(data.len(), 0);
    let mut n = 0;
    let mut space_written = false;
    for &c in data {
        let a = TEXT_ACTION[usize::from(c)];
        let is_space = a == b' ';
        let keep = a != 0 && !(is_space && space_written);
        // `n` never passes the bytes read so far, so the write is in bounds.
        out[n] = a;
        n += usize::from(keep);
        space_written = if a == 0 { space_written } else { is_space };
    }
    out.truncate(n);
}

/// Whether `b` can appear in `text`'s output: a space, or a byte from 0x21 to 0x7f other
/// than an upper-case letter.
pub fn in_text_alphabet(b: u8) -> bool {
    b != 0 && TEXT_ACTION[usize::from(b)] == b
}

/// Whether a body pattern could match normalised text at all: not if it requires a byte
/// `text` never writes. Lets the engine leave binary signatures out of the normalised pass
/// (and skip normalising when none is left) without changing what matches.
pub fn can_match_text(p: &crate::hex::HexPattern) -> bool {
    use crate::hex::Elem;
    p.elems.iter().all(|e| match e {
        Elem::Byte { value, mask: 0xff } => in_text_alphabet(*value),
        Elem::Alt(alts) => alts.iter().any(|a| a.iter().all(|&b| in_text_alphabet(b))),
        Elem::Set(set) => (0..=255).any(|b| set.contains(b) && in_text_alphabet(b)),
        _ => true,
    })
}

/// The normalised views of one HTML file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Html {
    pub nocomment: Vec<u8>,
    pub notags: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    SkipWs,
    TrimWs,
    Norm,
    EightBit,
    Tag,
    TagArg,
    TagArgEqual,
    TagArgVal,
    Comment,
    ProcessTag,
    CharRef,
    EntityRefDecode,
    CharRefDecode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InTag {
    DontExtract,
    Script,
    Style,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoted {
    Not,
    Single,
    Double,
}

/// C's `isspace` in the "C" locale.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// `HTML_STR_LENGTH`: tag names, attribute names and values, and entity names are cut here.
const STR_LENGTH: usize = 1024;

/// The named character references decoded (the common ones; ClamAV's table has all of
/// HTML 4's). An unknown name is kept as `&name;`, lower-cased, as ClamAV keeps one.
fn entity(name: &[u8]) -> Option<u16> {
    Some(match name {
        b"lt" | b"LT" => 0x3c,
        b"gt" | b"GT" => 0x3e,
        b"amp" | b"AMP" => 0x26,
        b"quot" | b"QUOT" => 0x22,
        b"apos" => 0x27,
        b"nbsp" => 0xa0,
        b"copy" => 0xa9,
        b"reg" => 0xae,
        b"shy" => 0xad,
        b"laquo" => 0xab,
        b"raquo" => 0xbb,
        b"middot" => 0xb7,
        b"ndash" => 0x2013,
        b"mdash" => 0x2014,
        b"lsquo" => 0x2018,
        b"rsquo" => 0x2019,
        b"ldquo" => 0x201c,
        b"rdquo" => 0x201d,
        b"hellip" => 0x2026,
        b"euro" => 0x20ac,
        _ => return None,
    })
}

/// `u16_normalize`: a code point below 0xff as that byte, the ideographic full stops as `.`,
/// anything else as `&#xNNNN;`, and 0 as nothing.
fn push_u16(out: &mut Vec<u8>, u: u16) {
    match u {
        0 => {}
        1..=0xfe => out.push(u as u8),
        0x3002 | 0xff0e | 0xfe52 => out.push(b'.'),
        _ => out.extend_from_slice(format!("&#x{u:04x};").as_bytes()),
    }
}

struct Html5<'a> {
    out: &'a mut Html,
    /// Attributes of the tag being read: (name, value as read, quotes stripped).
    args: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Html5<'_> {
    fn value(&self, name: &[u8]) -> Option<&[u8]> {
        self.args
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }
    fn add_arg(&mut self, name: &[u8], value: Option<&[u8]>) {
        let value = value.map(|v| match v.strip_prefix(b"\"") {
            // ClamAV drops the first character after an opening quote's value: the closing
            // quote, or the last character when there is none.
            Some(inner) => inner[..inner.len().saturating_sub(1)].to_vec(),
            None => v.to_vec(),
        });
        self.args.push((name.to_vec(), value));
    }
}

/// `htmlnorm.c`'s `nocomment.html` and `notags.html` for `data`.
pub fn html(data: &[u8]) -> Html {
    let mut result = Html::default();
    let mut h = Html5 {
        out: &mut result,
        args: Vec::new(),
    };
    // ClamAV's reader drops NUL bytes before the state machine sees the text.
    let input: Vec<u8> = data.iter().copied().filter(|&c| c != 0).collect();
    let mut i = input.iter().take_while(|&&c| is_space(c)).count();
    let mut state = State::Norm;
    let mut next_state = State::Norm;
    let mut in_tag = InTag::DontExtract;
    let mut text_space_written = false;
    let mut tag: Vec<u8> = Vec::new();
    let mut tag_arg: Vec<u8> = Vec::new();
    let mut tag_val: Vec<u8> = Vec::new();
    let mut quoted = Quoted::Not;
    let mut entity_name: Vec<u8> = Vec::new();
    let mut value: i64 = 0;
    let mut hex = false;
    let mut mbchar: u32 = 0;

    macro_rules! o2 {
        ($c:expr) => {
            h.out.nocomment.push($c)
        };
    }
    macro_rules! text {
        ($c:expr) => {
            h.out.notags.push($c)
        };
    }

    while i < input.len() {
        let mut c = input[i];
        if c == b'\n' {
            // ClamAV turns a newline into a space and processes that.
            c = b' ';
        } else if c == b'\r' {
            i += 1;
            continue;
        }
        match state {
            State::SkipWs => {
                if is_space(c) {
                    i += 1;
                } else {
                    state = next_state;
                }
            }
            State::TrimWs => {
                if is_space(c) {
                    i += 1;
                } else {
                    if in_tag == InTag::DontExtract {
                        o2!(b' ');
                    }
                    state = next_state;
                }
            }
            State::EightBit => {
                if c < 0x80 || mbchar >= 0x10000 {
                    let [_, c0, c1, c2] = mbchar.to_be_bytes();
                    if mbchar == 0xE38082
                        || mbchar == 0xEFBC8E
                        || mbchar == 0xEFB992
                        || (mbchar == 0xA1 && matches!(c, 0x43 | 0x44 | 0x4F))
                    {
                        o2!(b'.');
                        text!(b'.');
                        if mbchar == 0xA1 {
                            i += 1;
                            mbchar = 0;
                            state = next_state;
                            continue;
                        }
                    } else {
                        if c0 != 0 {
                            o2!(c0);
                            text!(c0);
                        }
                        if c0 != 0 || c1 != 0 {
                            o2!(c1);
                            text!(c1);
                        }
                        o2!(c2);
                        // ClamAV writes the middle byte here, not the last (kept: signatures
                        // are matched against what ClamAV writes).
                        text!(c1);
                    }
                    mbchar = 0;
                    state = next_state;
                } else {
                    mbchar = (mbchar << 8) | u32::from(c);
                    i += 1;
                }
            }
            State::Norm => {
                if c == b'<' {
                    o2!(b'<');
                    if in_tag == InTag::DontExtract && !text_space_written {
                        text!(b' ');
                        text_space_written = true;
                    }
                    i += 1;
                    state = State::SkipWs;
                    tag.clear();
                    next_state = State::Tag;
                } else if is_space(c) {
                    if !text_space_written && in_tag == InTag::DontExtract {
                        text!(b' ');
                        text_space_written = true;
                    }
                    state = State::TrimWs;
                    next_state = State::Norm;
                } else if c == b'&' {
                    if !text_space_written && in_tag == InTag::DontExtract {
                        text!(b' ');
                        text_space_written = true;
                    }
                    state = State::CharRef;
                    next_state = State::Norm;
                    i += 1;
                } else if c >= 0x80 {
                    state = State::EightBit;
                    next_state = State::Norm;
                    mbchar = u32::from(c);
                    i += 1;
                } else {
                    let mut l = c.to_ascii_lowercase();
                    if in_tag != InTag::DontExtract && l == b'\'' {
                        l = b'"';
                    }
                    o2!(l);
                    if in_tag == InTag::DontExtract {
                        if c < 0x20 {
                            if !text_space_written {
                                text!(b' ');
                                text_space_written = true;
                            }
                        } else {
                            text!(l);
                            text_space_written = false;
                        }
                    }
                    i += 1;
                }
            }
            State::Tag => {
                if tag.is_empty() && c == b'!' {
                    if in_tag != InTag::DontExtract {
                        o2!(b'!');
                    } else {
                        // The comment leaves no trace: take back the '<'.
                        h.out.nocomment.pop();
                    }
                    state = State::Comment;
                    i += 1;
                } else if c == b'>' {
                    o2!(b'>');
                    i += 1;
                    state = State::SkipWs;
                    next_state = State::ProcessTag;
                } else if !is_space(c) {
                    let l = c.to_ascii_lowercase();
                    o2!(l);
                    // Inside a script only `</…` is a tag.
                    if in_tag != InTag::DontExtract && tag.is_empty() && c != b'/' {
                        state = State::Norm;
                    }
                    if tag.len() < STR_LENGTH {
                        tag.push(l);
                    }
                    i += 1;
                } else {
                    state = State::SkipWs;
                    tag_arg.clear();
                    next_state = if in_tag == InTag::DontExtract {
                        State::TagArg
                    } else {
                        State::ProcessTag
                    };
                }
            }
            State::TagArg => {
                if c == b'=' {
                    o2!(b'=');
                    i += 1;
                    state = State::SkipWs;
                    quoted = Quoted::Not;
                    tag_val.clear();
                    next_state = State::TagArgVal;
                } else if is_space(c) {
                    i += 1;
                    state = State::SkipWs;
                    next_state = State::TagArgEqual;
                } else if c == b'>' {
                    o2!(b'>');
                    if !tag_arg.is_empty() {
                        let name = std::mem::take(&mut tag_arg);
                        h.add_arg(&name, None);
                    }
                    i += 1;
                    state = State::ProcessTag;
                } else {
                    if tag_arg.is_empty() {
                        o2!(b' ');
                    }
                    let l = c.to_ascii_lowercase();
                    o2!(l);
                    if tag_arg.len() < STR_LENGTH {
                        tag_arg.push(l);
                    }
                    i += 1;
                }
            }
            State::TagArgEqual => {
                if c == b'=' {
                    o2!(b'=');
                    i += 1;
                    state = State::SkipWs;
                    quoted = Quoted::Not;
                    tag_val.clear();
                    next_state = State::TagArgVal;
                } else {
                    if !tag_arg.is_empty() {
                        let name = std::mem::take(&mut tag_arg);
                        h.add_arg(&name, None);
                    }
                    tag_arg.clear();
                    state = State::TagArg;
                }
            }
            State::TagArgVal => {
                let quote = match c {
                    b'\'' => Some(Quoted::Single),
                    b'"' => Some(Quoted::Double),
                    _ => None,
                };
                if c == b'&' {
                    state = State::CharRef;
                    next_state = State::TagArgVal;
                    i += 1;
                } else if let Some(q) = quote {
                    o2!(b'"');
                    if tag_val.len() < STR_LENGTH {
                        tag_val.push(b'"');
                    }
                    i += 1;
                    if tag_val.len() == 1 {
                        quoted = q;
                    } else if quoted == q {
                        let (name, value) = (std::mem::take(&mut tag_arg), tag_val.clone());
                        h.add_arg(&name, Some(&value));
                        state = State::SkipWs;
                        next_state = State::TagArg;
                    }
                } else if is_space(c) || c == b'>' {
                    if quoted == Quoted::Not {
                        let (name, value) = (std::mem::take(&mut tag_arg), tag_val.clone());
                        h.add_arg(&name, Some(&value));
                        state = State::SkipWs;
                        next_state = State::TagArg;
                    } else {
                        o2!(c);
                        if tag_val.len() < STR_LENGTH {
                            tag_val.push(if is_space(c) { b' ' } else { b'>' });
                        }
                        // ClamAV stops treating the value as quoted here.
                        state = State::SkipWs;
                        quoted = Quoted::Not;
                        next_state = State::TagArgVal;
                        i += 1;
                    }
                } else {
                    o2!(c.to_ascii_lowercase());
                    if tag_val.len() < STR_LENGTH {
                        tag_val.push(c);
                    }
                    i += 1;
                }
            }
            State::Comment => {
                if in_tag != InTag::DontExtract && !is_space(c) {
                    let l = c.to_ascii_lowercase();
                    o2!(if l == b'\'' { b'"' } else { l });
                }
                if c == b'>' {
                    state = State::SkipWs;
                    next_state = State::Norm;
                }
                i += 1;
            }
            State::ProcessTag => {
                state = State::SkipWs;
                next_state = State::Norm;
                if tag == b"/script" || (tag == b"/style" && in_tag == InTag::Style) {
                    in_tag = InTag::DontExtract;
                } else if tag == b"script" {
                    in_tag = InTag::Script;
                } else if tag == b"style" {
                    in_tag = InTag::Style;
                } else if tag == b"a" || tag == b"img" {
                    let attr: &[u8] = if tag == b"a" { b"href" } else { b"src" };
                    if let Some(v) = h.value(attr).filter(|v| !v.is_empty()) {
                        let v = v.to_vec();
                        h.out.notags.extend_from_slice(&v);
                        text!(b' ');
                        text_space_written = true;
                    }
                }
                h.args.clear();
            }
            State::CharRef => {
                if c == b'#' {
                    value = 0;
                    hex = false;
                    state = State::CharRefDecode;
                    i += 1;
                } else {
                    entity_name.clear();
                    state = State::EntityRefDecode;
                }
            }
            State::EntityRefDecode => {
                let in_value = next_state == State::TagArgVal;
                if c == b';' {
                    let start = h.out.nocomment.len();
                    match entity(&entity_name) {
                        Some(u) => push_u16(&mut h.out.nocomment, u),
                        None => {
                            h.out.nocomment.push(b'&');
                            h.out
                                .nocomment
                                .extend(entity_name.iter().map(u8::to_ascii_lowercase));
                            h.out.nocomment.push(b';');
                        }
                    }
                    if in_value {
                        let written = h.out.nocomment[start..].to_vec();
                        tag_val.extend_from_slice(&written);
                        tag_val.truncate(STR_LENGTH);
                    }
                    state = next_state;
                    i += 1;
                } else if (c.is_ascii_alphanumeric() || matches!(c, b'_' | b':' | b'-'))
                    && entity_name.len() < STR_LENGTH
                {
                    entity_name.push(c);
                    i += 1;
                } else {
                    // Not a reference after all: written as read, and `c` read again.
                    let start = h.out.nocomment.len();
                    h.out.nocomment.push(b'&');
                    h.out
                        .nocomment
                        .extend(entity_name.iter().map(u8::to_ascii_lowercase));
                    if in_value {
                        let written = h.out.nocomment[start..].to_vec();
                        tag_val.extend_from_slice(&written);
                        tag_val.truncate(STR_LENGTH);
                    }
                    state = next_state;
                }
            }
            State::CharRefDecode => {
                let in_value = next_state == State::TagArgVal;
                if value == 0 && (c == b'x' || c == b'X') {
                    hex = true;
                    i += 1;
                } else if c == b';' {
                    if in_value && tag_val.len() < STR_LENGTH {
                        tag_val.push(value as u8);
                    }
                    if value < 0x80 {
                        o2!((value as u8).to_ascii_lowercase());
                    } else {
                        push_u16(&mut h.out.nocomment, value as u16);
                    }
                    state = next_state;
                    i += 1;
                } else if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
                    let digit = i64::from((c as char).to_digit(16).unwrap_or(0));
                    let radix = if hex { 16 } else { 10 };
                    match value.checked_mul(radix).and_then(|v| v.checked_add(digit)) {
                        Some(v) => value = v,
                        None => {
                            o2!(value as u8);
                            state = next_state;
                        }
                    }
                    i += 1;
                } else {
                    o2!(value as u8);
                    state = next_state;
                }
            }
        }
    }
    // A multi-byte character cut by the end is written as ClamAV's next flush would.
    if state == State::EightBit && mbchar != 0 {
        let [_, c0, c1, c2] = mbchar.to_be_bytes();
        for b in [c0, c1] {
            if b != 0 {
                h.out.nocomment.push(b);
            }
        }
        h.out.nocomment.push(c2);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    #[test]
    fn text_normalisation() {
        assert_eq!(text(b"Hello,\r\n\t  WORLD!\x01\xe9x"), b"hello, world!x");
        assert_eq!(text(b"  a  "), b" a ");
        assert_eq!(text(b""), b"");
        assert_eq!(text(b"\x00\x7f"), b"\x7f");
    }

    #[test]
    fn text_alphabet() {
        let p = |s| crate::hex::parse(s).unwrap();
        assert!(can_match_text(&p("6576616c28")));
        assert!(!can_match_text(&p("4556414c28")));
        assert!(!can_match_text(&p("6576616c00")));
        assert!(can_match_text(&p("65??(41|61)2020")));
        assert!(!can_match_text(&p("6576(41|0a)")));
        for b in 0..=255u8 {
            assert_eq!(in_text_alphabet(b), text(&[b, b'x']).first() == Some(&b));
        }
    }

    #[test]
    fn html_views() {
        let h =
            html(b"<HTML>\n<Body   BGCOLOR='Red'>Hello   <B>World</B>&amp;&#65;&#x42;&zz;</body>");
        assert_eq!(
            s(&h.nocomment),
            "<html><body bgcolor=\"red\">hello <b>world</b>&ab&zz;</body>"
        );
        assert_eq!(s(&h.notags), " hello world ");
    }

    #[test]
    fn comments_and_scripts() {
        let h = html(b"a<!-- hidden -->b<script>var X = 'Y';\n if (a<b) {}</script>c");
        assert_eq!(s(&h.nocomment), "ab<script>varx=\"y\";if(a<b){}</script>c");
        // The text view has a space for every tag or comment.
        assert_eq!(s(&h.notags), "a b c");
        // A comment ends at the first '>', as in ClamAV.
        let h = html(b"x<!-- a > b -->y");
        assert_eq!(s(&h.nocomment), "xb -->y");
    }

    #[test]
    fn links_reach_the_text_view() {
        let h = html(b"see <a href=\"HTTP://Evil.example/x\">here</a> <img src=pic.gif> end");
        assert_eq!(
            s(&h.nocomment),
            "see <a href=\"http://evil.example/x\">here</a><img src=pic.gif>end"
        );
        assert_eq!(s(&h.notags), "see HTTP://Evil.example/x here pic.gif end");
        // A tag that ends the file is never processed (ClamAV's loop stops first).
        assert_eq!(s(&html(b"x <img src=pic.gif>").notags), "x ");
    }

    #[test]
    fn hostile_input_ends() {
        for input in [
            &b"<"[..],
            b"&",
            b"&#",
            b"&#99999999999999999999999;",
            b"<a b='",
            b"\xe2\x80",
            b"<!",
            b"<script><",
        ] {
            let _ = html(input);
        }
        let h = html(b"\xc3\xa9<b>");
        assert_eq!(h.nocomment, b"\xc3\xa9<b>");
        assert_eq!(h.notags, b"\xc3\xc3 ");
    }
}
