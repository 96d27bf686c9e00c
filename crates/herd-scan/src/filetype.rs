//! File-type detection as ClamAV does it, and the signature targets that follow from a type.
//!
//! ClamAV decides a file's type from magic numbers at offset 0 (its built-in `filetypes`
//! table, mirrored by `daily.ftm`); a file no magic claims is text (ASCII, including
//! ISO-8859 and extended bytes; UTF-8; UTF-16) or binary data by the bytes of its first 1028
//! bytes (`textdet.c`). Text or binary data with an HTML marker in those bytes is HTML, and
//! ASCII text is HTML when the marker appears anywhere (ClamAV finds it during the raw scan).
//!
//! What the type decides (`libclamav/scanners.c`, `matcher.c`): the raw bytes are matched
//! against target 0 and the type's own target (text: target 0 only); text that is not HTML is
//! matched again after text normalisation (targets 0 and 7); HTML after HTML normalisation
//! (targets 0 and 3). `normalise` does the normalising.
//!
//! Simplified, on purpose: only the magic numbers of the types a supported target needs, plus
//! the containers and media formats that must not be taken for text; ClamAV's body-pattern
//! mail heuristics (`\nFrom: ` … `\nContent-Type: ` within 1 KiB) and HTML in UTF-16 files are
//! not detected.

/// The bytes ClamAV reads to decide a type (`MAGIC_BUFFER_SIZE`).
pub const MAGIC_BUFFER: usize = 1028;

/// The types that matter for matching: each supported target's, text and HTML (normalised
/// before matching), and `Other` for every other format the magic table claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    /// `MZ`: DOS and PE executables (`CL_TYPE_MSEXE`).
    MsExe,
    Ole2,
    /// Text or binary data with an HTML marker; only its normalised views meet target 3
    /// (clamscan does not match target 3 on the raw bytes, measured in `tests/semantics.rs`).
    Html,
    Mail,
    /// GIF, PNG, JPEG, TIFF, BMP, JPEG 2000.
    Graphics,
    Elf,
    /// Mach-O, including universal binaries.
    MachO,
    Pdf,
    /// Flash, uncompressed or compressed.
    Swf,
    /// Java class files.
    Java,
    TextAscii,
    TextUtf8,
    TextUtf16Le,
    TextUtf16Be,
    /// Containers and media the magic table names (zip, gzip, rar, tar, mp3, …).
    Other,
    /// Nothing claims it and it is not text.
    BinaryData,
}

/// ClamAV's signature targets (the `Target` of `.ndb` lines and `.ldb` descriptions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Any = 0,
    Pe = 1,
    Ole2 = 2,
    Html = 3,
    Mail = 4,
    Graphics = 5,
    Elf = 6,
    Ascii = 7,
    MachO = 9,
    Pdf = 10,
    Flash = 11,
    Java = 12,
}

impl Target {
    /// The targets this engine matches; 2 (OLE2: ClamAV matches it against the streams and
    /// macros it extracts from OLE2 documents, which Herd does not extract), 8 (unused),
    /// 13 (internal) and 14 (other) are refused when a signature is loaded.
    pub fn from_number(n: &str) -> Option<Target> {
        Some(match n {
            "0" => Target::Any,
            "1" => Target::Pe,
            "3" => Target::Html,
            "4" => Target::Mail,
            "5" => Target::Graphics,
            "6" => Target::Elf,
            "7" => Target::Ascii,
            "9" => Target::MachO,
            "10" => Target::Pdf,
            "11" => Target::Flash,
            "12" => Target::Java,
            _ => return None,
        })
    }

    /// Whether executable-relative offsets (`EP+n`, `Sx+n`, `SL+n`, `SEx`) make sense: ClamAV
    /// accepts them for PE, ELF and Mach-O; this engine computes them for PE only.
    pub fn has_executable_layout(self) -> bool {
        self == Target::Pe
    }
}

impl FileType {
    /// The target whose signatures are matched against this type's raw bytes besides target
    /// 0 (`cli_mtargets`); text has none (ClamAV scans text raw as `CL_TYPE_ANY`).
    pub fn raw_target(self) -> Option<Target> {
        Some(match self {
            FileType::MsExe => Target::Pe,
            FileType::Ole2 => Target::Ole2,
            FileType::Mail => Target::Mail,
            FileType::Graphics => Target::Graphics,
            FileType::Elf => Target::Elf,
            FileType::MachO => Target::MachO,
            FileType::Pdf => Target::Pdf,
            FileType::Swf => Target::Flash,
            FileType::Java => Target::Java,
            _ => return None,
        })
    }

    /// HTML, which `cli_scanhtml` normalises.
    pub fn is_html(self) -> bool {
        self == FileType::Html
    }

    /// Text that `cli_scanscript` normalises (every text encoding; not HTML).
    pub fn is_text(self) -> bool {
        matches!(
            self,
            FileType::TextAscii
                | FileType::TextUtf8
                | FileType::TextUtf16Le
                | FileType::TextUtf16Be
        )
    }
}

/// Magic numbers at offset 0, first match wins; within ClamAV's table no two of these
/// overlap, so the order does not matter.
const MAGIC: &[(&[u8], FileType)] = &[
    (b"MZ", FileType::MsExe),
    (b"\x7fELF", FileType::Elf),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", FileType::Ole2),
    (b"\xce\xfa\xed\xfe", FileType::MachO),
    (b"\xcf\xfa\xed\xfe", FileType::MachO),
    (b"\xfe\xed\xfa\xce", FileType::MachO),
    (b"\xfe\xed\xfa\xcf", FileType::MachO),
    (b"%PDF-", FileType::Pdf),
    (b"FWS", FileType::Swf),
    (b"CWS", FileType::Swf),
    (b"ZWS", FileType::Swf),
    (b"\x89PNG", FileType::Graphics),
    (b"GIF", FileType::Graphics),
    (b"\xff\xd8\xff", FileType::Graphics),
    (b"II*\x00", FileType::Graphics),
    (b"MM", FileType::Graphics),
    (b"BM", FileType::Graphics),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", FileType::Graphics),
    // Mail headers ClamAV recognises at the start of a file.
    (b">From ", FileType::Mail),
    (b"Date: ", FileType::Mail),
    (b"Delivered-To: ", FileType::Mail),
    (b"Delivery-date: ", FileType::Mail),
    (b"Envelope-to: ", FileType::Mail),
    (b"For: ", FileType::Mail),
    (b"From ", FileType::Mail),
    (b"From: ", FileType::Mail),
    (b"Hi. This is the qmail-send", FileType::Mail),
    (b"Message-ID: ", FileType::Mail),
    (b"Message-Id: ", FileType::Mail),
    (b"Received: ", FileType::Mail),
    (b"Received-SPF: ", FileType::Mail),
    (b"Return-Path: ", FileType::Mail),
    (b"Return-path: ", FileType::Mail),
    (b"Subject: ", FileType::Mail),
    (b"To: ", FileType::Mail),
    (b"X-Apparently-To: ", FileType::Mail),
    (b"X-EVS", FileType::Mail),
    (b"X-Envelope-From: ", FileType::Mail),
    (b"X-Original-To: ", FileType::Mail),
    (b"X-Real-To: ", FileType::Mail),
    (b"X-Sieve: ", FileType::Mail),
    (b"X-Symantec-", FileType::Mail),
    (b"X-UIDL: ", FileType::Mail),
    (b"v:\nReceived: ", FileType::Mail),
    (b"v:\r\nReceived: ", FileType::Mail),
    // Containers and media: never text, whatever their bytes look like.
    (b"\x1f\x8b", FileType::Other),
    (b"BZh", FileType::Other),
    (b"PK\x03\x04", FileType::Other),
    (b"PK00PK\x03\x04", FileType::Other),
    (b"Rar!", FileType::Other),
    (b"7z\xbc\xaf\x27\x1c", FileType::Other),
    (b"\xfd7zXZ\x00", FileType::Other),
    (b"\x28\xb5\x2f\xfd", FileType::Other),
    (b"MSCF\x00\x00\x00\x00", FileType::Other),
    (b"ITSF", FileType::Other),
    (b"ID3", FileType::Other),
    (b"OggS", FileType::Other),
    (b"RIFF", FileType::Other),
    (b"RIFX", FileType::Other),
    (b"{\\rt", FileType::Other),
    (b"070701", FileType::Other),
    (b"070702", FileType::Other),
    (b"070707", FileType::Other),
    (b"SQLite format 3\x00", FileType::Other),
    (b"\xfb\x90", FileType::Other),
];

/// ClamAV's `text_chars` classes: `false` for bytes that never appear in text.
const fn text_byte(b: u8) -> bool {
    matches!(b, 7..=10 | 12 | 13 | 27 | 0x20..=0x7e | 0x80..=0xff)
}

/// Plain ASCII text in the strict sense (`T` in `text_chars`), which UTF-8 and UTF-16
/// detection require of their single-byte characters.
const fn plain_text_byte(b: u8) -> bool {
    matches!(b, 7..=10 | 12 | 13 | 27 | 0x20..=0x7e)
}

fn is_utf8(buf: &[u8]) -> bool {
    let mut i = 0;
    let mut got_one = false;
    while i < buf.len() {
        let b = buf[i];
        if b & 0x80 == 0 {
            if !plain_text_byte(b) {
                return false;
            }
        } else if b & 0x40 == 0 {
            return false;
        } else {
            let following = match b {
                _ if b & 0x20 == 0 => 1,
                _ if b & 0x10 == 0 => 2,
                _ if b & 0x08 == 0 => 3,
                _ if b & 0x04 == 0 => 4,
                _ if b & 0x02 == 0 => 5,
                _ => return false,
            };
            for _ in 0..following {
                i += 1;
                // A sequence cut by the end of the sample counts if an earlier one was whole.
                if i >= buf.len() {
                    return got_one;
                }
                if buf[i] & 0xc0 != 0x80 {
                    return false;
                }
            }
            got_one = true;
        }
        i += 1;
    }
    got_one
}

/// `Some(true)` for UTF-16 big-endian, `Some(false)` for little-endian (ClamAV's
/// `td_isutf16`: without a byte-order mark every character must be plain text).
fn utf16(buf: &[u8]) -> Option<bool> {
    if buf.len() < 2 {
        return None;
    }
    let (big_endian, bom) = match (buf[0], buf[1]) {
        (0xff, 0xfe) => (false, true),
        (0xfe, 0xff) => (true, true),
        _ => (true, false),
    };
    let mut bad = 0;
    let mut i = 2;
    while i + 1 < buf.len() {
        let c = if big_endian {
            u16::from_be_bytes([buf[i], buf[i + 1]])
        } else {
            u16::from_le_bytes([buf[i], buf[i + 1]])
        };
        if c == 0xfffe {
            return None;
        }
        if c < 128 && !plain_text_byte(c as u8) {
            if !bom {
                return None;
            }
            bad += 1;
        }
        i += 2;
    }
    if bom && bad >= buf.len() / 2 {
        return None;
    }
    Some(big_endian)
}

fn text_type(sample: &[u8]) -> FileType {
    if sample.iter().all(|&b| text_byte(b)) {
        FileType::TextAscii
    } else if is_utf8(sample) {
        FileType::TextUtf8
    } else {
        match utf16(sample) {
            Some(true) => FileType::TextUtf16Be,
            Some(false) => FileType::TextUtf16Le,
            None => FileType::BinaryData,
        }
    }
}

/// Whether `data` holds one of ClamAV's HTML markers (`<html>`, `<script…`, `<a …href`, …,
/// in the letter cases its table lists: all lower, all upper, or capitalised).
pub fn has_html_marker(data: &[u8]) -> bool {
    const WHOLE: &[&[u8]] = &[
        b"<HEAD>", b"<HTML>", b"<Head>", b"<Html>", b"<head>", b"<html>",
    ];
    const DELIMITED: &[&[u8]] = &[
        b"<IFRAME", b"<IMG", b"<Img", b"<OBJECT", b"<Object", b"<SCRIPT", b"<Script", b"<TABLE",
        b"<iframe", b"<img", b"<object", b"<script", b"<table",
    ];
    if data.starts_with(b"<%@ LANGUAGE =") {
        return true;
    }
    let mut from = 0;
    while let Some(p) = memchr::memchr(b'<', &data[from..]) {
        let at = &data[from + p..];
        if WHOLE.iter().any(|m| at.starts_with(m)) {
            return true;
        }
        for m in DELIMITED {
            if at.starts_with(m)
                && at.get(m.len()).is_some_and(|c| {
                    matches!(c, b'>' | b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b'/')
                })
            {
                return true;
            }
        }
        // `<a ` or `<A ` followed anywhere later by [hH][rR] and `EF` or `ef`.
        if (at.starts_with(b"<a ") || at.starts_with(b"<A ")) && has_href(&at[3..]) {
            return true;
        }
        from += p + 1;
    }
    false
}

fn has_href(rest: &[u8]) -> bool {
    rest.windows(4).any(|w| {
        matches!(w[0], b'h' | b'H')
            && matches!(w[1], b'r' | b'R')
            && (&w[2..] == b"EF" || &w[2..] == b"ef")
    })
}

/// The type of `data` as ClamAV's `cli_determine_fmap_type` and raw scan decide it.
pub fn detect(data: &[u8]) -> FileType {
    let sample = &data[..data.len().min(MAGIC_BUFFER)];
    if let Some(&(_, t)) = MAGIC.iter().find(|(m, _)| sample.starts_with(m)) {
        return t;
    }
    // 0xcafebabe is both Java and a Mach-O universal binary; the next word tells them apart
    // (a universal binary's architecture count is small, a class file's version is not).
    if sample.starts_with(b"\xca\xfe\xba\xbe") && sample.len() >= 8 && sample[4..7] == [0, 0, 0] {
        match sample[7] >> 4 {
            0 | 1 => return FileType::MachO,
            2 | 3 => return FileType::Java,
            _ => {}
        }
    }
    if sample.len() > 262 && &sample[257..262] == b"ustar" {
        return FileType::Other;
    }
    let t = text_type(sample);
    if has_html_marker(sample) || (t == FileType::TextAscii && has_html_marker(data)) {
        return FileType::Html;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_numbers() {
        assert_eq!(detect(b"MZ\x90\x00"), FileType::MsExe);
        assert_eq!(detect(b"\x7fELF\x02\x01"), FileType::Elf);
        assert_eq!(detect(b"%PDF-1.7\n"), FileType::Pdf);
        assert_eq!(detect(b"GIF89a"), FileType::Graphics);
        assert_eq!(detect(b"\xca\xfe\xba\xbe\x00\x00\x00\x34"), FileType::Java);
        assert_eq!(detect(b"\xca\xfe\xba\xbe\x00\x00\x00\x02"), FileType::MachO);
        assert_eq!(
            detect(b"\xca\xfe\xba\xbe\x00\x01\x00\x02"),
            FileType::BinaryData
        );
        assert_eq!(detect(b"Received: from x\n"), FileType::Mail);
        assert_eq!(detect(b"PK\x03\x04rest"), FileType::Other);
        // Near misses: a magic number not at offset 0, or cut short.
        assert_eq!(detect(b" MZ"), FileType::TextAscii);
        assert_eq!(detect(b"%PDF"), FileType::TextAscii);
    }

    #[test]
    fn text_encodings() {
        assert_eq!(detect(b"plain text\r\n"), FileType::TextAscii);
        assert_eq!(detect(b"caf\xe9 latin-1"), FileType::TextAscii);
        // ClamAV's ASCII class takes every byte above 0x7f, so UTF-8 is ASCII text to it.
        assert_eq!(detect("caf\u{e9}".as_bytes()), FileType::TextAscii);
        assert_eq!(detect(b"\xff\xfeh\x00i\x00"), FileType::TextUtf16Le);
        assert_eq!(detect(b"\x00h\x00i"), FileType::TextUtf16Be);
        // Without a byte-order mark UTF-16 skips its first character, as ClamAV's check does.
        assert_eq!(detect(b"\x00\x01\x02\x03"), FileType::TextUtf16Be);
        assert_eq!(detect(b"\x00\x01\x00\x02\x00\x03"), FileType::BinaryData);
        assert_eq!(detect(b""), FileType::TextAscii);
    }

    #[test]
    fn html_markers() {
        assert_eq!(detect(b"hello <script>x</script>"), FileType::Html);
        assert_eq!(detect(b"<HTML><body>"), FileType::Html);
        assert_eq!(detect(b"x <a class=1 HREF=y>"), FileType::Html);
        assert_eq!(detect(b"<%@ LANGUAGE = VBScript %>"), FileType::Html);
        // Mixed case ClamAV's table does not list, and a tag name running on, are not HTML.
        assert_eq!(detect(b"<sCript>"), FileType::TextAscii);
        assert_eq!(detect(b"<scripts>"), FileType::TextAscii);
        assert_eq!(detect(b"<a hrEf=y>"), FileType::TextAscii);
        // Past the first 1028 bytes only ASCII text is still found to be HTML.
        let mut late = vec![b' '; 2000];
        late.extend_from_slice(b"<html>");
        assert_eq!(detect(&late), FileType::Html);
        let mut binary = vec![0u8; 2000];
        binary.extend_from_slice(b"<html>");
        assert_eq!(detect(&binary), FileType::BinaryData);
        binary[100..106].copy_from_slice(b"<html>");
        assert_eq!(detect(&binary), FileType::Html);
    }
}
