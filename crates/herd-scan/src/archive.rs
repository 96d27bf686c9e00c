//! Container formats scanned inside: zip (stored and deflate members), tar (ustar and GNU) and
//! gzip. Parsing works on an in-memory slice and never trusts a declared size; inflating
//! stops at a caller-given output limit and reports a compression ratio beyond the allowed
//! one as a bomb instead of following it.
//!
//! Not supported, reported per member: zip64, encryption, compression methods other than
//! stored and deflate. Zip members are found through the central directory only.

use std::io::Read;

/// The container types recognised by their leading bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Zip,
    Tar,
    Gzip,
}

pub fn detect(data: &[u8]) -> Option<Kind> {
    if data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06") {
        Some(Kind::Zip)
    } else if data.starts_with(&[0x1f, 0x8b, 0x08]) {
        Some(Kind::Gzip)
    } else if data.len() >= 512 && &data[257..262] == b"ustar" && tar_checksum_ok(&data[..512]) {
        Some(Kind::Tar)
    } else {
        None
    }
}

/// A member's bytes as found in the container.
#[derive(Debug, Clone, Copy)]
pub enum Content<'a> {
    Stored(&'a [u8]),
    Deflate(&'a [u8]),
    Gzip(&'a [u8]),
}

impl Content<'_> {
    /// The member's size inside the container, the base of the compression ratio.
    pub fn compressed_len(&self) -> usize {
        match self {
            Content::Stored(d) | Content::Deflate(d) | Content::Gzip(d) => d.len(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Member<'a> {
    pub name: String,
    pub content: Content<'a>,
}

/// Why a member (or the whole container) could not be extracted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Encrypted,
    Method(u16),
    Zip64,
    Corrupt(&'static str),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Encrypted => f.write_str("encrypted member not scanned"),
            Problem::Method(m) => write!(f, "compression method {m} not supported"),
            Problem::Zip64 => f.write_str("zip64 archives are not supported"),
            Problem::Corrupt(why) => write!(f, "corrupt archive: {why}"),
        }
    }
}

/// One entry of a container listing: a member to scan or a problem with one.
pub type Entry<'a> = Result<Member<'a>, (String, Problem)>;

pub fn members(kind: Kind, data: &[u8]) -> Vec<Entry<'_>> {
    match kind {
        Kind::Zip => zip_members(data),
        Kind::Tar => tar_members(data),
        Kind::Gzip => vec![Ok(Member {
            name: "(gzip)".to_owned(),
            content: Content::Gzip(data),
        })],
    }
}

fn u16_at(d: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(i..i + 2)?.try_into().ok()?))
}
fn u32_at(d: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(i..i + 4)?.try_into().ok()?))
}

fn zip_members(data: &[u8]) -> Vec<Entry<'_>> {
    let whole = |p| vec![Err((String::new(), p))];
    // The end-of-central-directory record is in the last 22 + 65,535 (comment) bytes.
    let earliest = data.len().saturating_sub(22 + 65_535);
    let Some(eocd) = (earliest..=data.len().saturating_sub(22))
        .rev()
        .find(|&i| data[i..].starts_with(b"PK\x05\x06"))
    else {
        return whole(Problem::Corrupt("no end of central directory"));
    };
    let (Some(count), Some(cd_offset)) = (u16_at(data, eocd + 10), u32_at(data, eocd + 16)) else {
        return whole(Problem::Corrupt("truncated end of central directory"));
    };
    if count == 0xffff || cd_offset == 0xffff_ffff {
        return whole(Problem::Zip64);
    }
    let mut out = Vec::new();
    let mut at = cd_offset as usize;
    for _ in 0..count {
        if data.get(at..at + 4) != Some(b"PK\x01\x02") {
            out.push(Err((
                String::new(),
                Problem::Corrupt("bad central directory entry"),
            )));
            break;
        }
        let field = |off| u16_at(data, at + off).map(usize::from);
        let (
            Some(flags),
            Some(method),
            Some(csize),
            Some(usize_),
            Some(name_len),
            Some(extra_len),
            Some(comment_len),
            Some(local),
        ) = (
            field(8),
            u16_at(data, at + 10),
            u32_at(data, at + 20),
            u32_at(data, at + 24),
            field(28),
            field(30),
            field(32),
            u32_at(data, at + 42),
        )
        else {
            out.push(Err((
                String::new(),
                Problem::Corrupt("truncated central directory"),
            )));
            break;
        };
        let name = data
            .get(at + 46..at + 46 + name_len)
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        at += 46 + name_len + extra_len + comment_len;
        if name.ends_with('/') && usize_ == 0 {
            continue; // a directory
        }
        if csize == 0xffff_ffff || usize_ == 0xffff_ffff || local == 0xffff_ffff {
            out.push(Err((name, Problem::Zip64)));
            continue;
        }
        if flags & 1 != 0 {
            out.push(Err((name, Problem::Encrypted)));
            continue;
        }
        let local = local as usize;
        let (Some(b"PK\x03\x04"), Some(lname), Some(lextra)) = (
            data.get(local..local + 4),
            u16_at(data, local + 26),
            u16_at(data, local + 28),
        ) else {
            out.push(Err((name, Problem::Corrupt("bad local header"))));
            continue;
        };
        let start = local + 30 + usize::from(lname) + usize::from(lextra);
        let Some(body) = data.get(start..start + csize as usize) else {
            out.push(Err((
                name,
                Problem::Corrupt("member data beyond the end of the archive"),
            )));
            continue;
        };
        let content = match method {
            0 => Content::Stored(body),
            8 => Content::Deflate(body),
            m => {
                out.push(Err((name, Problem::Method(m))));
                continue;
            }
        };
        out.push(Ok(Member { name, content }));
    }
    out
}

fn tar_checksum_ok(header: &[u8]) -> bool {
    let Some(stored) = parse_octal(&header[148..156]) else {
        return false;
    };
    let sum: u64 = header
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    sum == stored
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        // GNU base-256 for large sizes.
        let mut n: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            n = n.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(n);
    }
    let s = std::str::from_utf8(field)
        .ok()?
        .trim_matches(|c: char| c == '\0' || c == ' ');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

fn c_string(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

fn tar_members(data: &[u8]) -> Vec<Entry<'_>> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut long_name: Option<String> = None;
    while let Some(header) = data.get(at..at + 512) {
        if header.iter().all(|&b| b == 0) {
            break;
        }
        if !tar_checksum_ok(header) {
            out.push(Err((
                String::new(),
                Problem::Corrupt("bad tar header checksum"),
            )));
            break;
        }
        let Some(size) = parse_octal(&header[124..136]) else {
            out.push(Err((String::new(), Problem::Corrupt("bad tar size field"))));
            break;
        };
        let body_start = at + 512;
        let Some(body) = usize::try_from(size)
            .ok()
            .and_then(|s| data.get(body_start..body_start.checked_add(s)?))
        else {
            out.push(Err((
                c_string(&header[..100]),
                Problem::Corrupt("member data beyond the end of the archive"),
            )));
            break;
        };
        let mut name = c_string(&header[..100]);
        let prefix = c_string(&header[345..500]);
        if &header[257..263] == b"ustar\0" && !prefix.is_empty() {
            name = format!("{prefix}/{name}");
        }
        match header[156] {
            b'0' | b'\0' | b'7' => {
                let name = long_name.take().unwrap_or(name);
                out.push(Ok(Member {
                    name,
                    content: Content::Stored(body),
                }));
            }
            b'L' => long_name = Some(c_string(body)),
            _ => {} // directories, links, devices, pax headers: nothing to scan
        }
        at = body_start + body.len().div_ceil(512) * 512;
    }
    out
}

/// Why inflating a member stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InflateError {
    /// More than `limit` bytes of output.
    TooLarge,
    /// The output grew beyond the allowed ratio to the compressed size.
    Bomb {
        compressed: u64,
        produced: u64,
    },
    Corrupt(String),
}

/// Decompresses `content` into `out`, stopping at `limit` bytes or when the output exceeds
/// `max_ratio` × compressed size while also above `ratio_floor` (small files of zeros
/// compress extremely well and are not bombs).
pub fn inflate(
    content: Content<'_>,
    limit: u64,
    max_ratio: u64,
    ratio_floor: u64,
    out: &mut Vec<u8>,
) -> Result<(), InflateError> {
    out.clear();
    let compressed = content.compressed_len() as u64;
    let mut reader: Box<dyn Read + '_> = match content {
        Content::Stored(d) => {
            if d.len() as u64 > limit {
                return Err(InflateError::TooLarge);
            }
            out.extend_from_slice(d);
            return Ok(());
        }
        Content::Deflate(d) => Box::new(flate2::read::DeflateDecoder::new(d)),
        Content::Gzip(d) => Box::new(flate2::read::MultiGzDecoder::new(d)),
    };
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) => return Err(InflateError::Corrupt(e.to_string())),
        };
        out.extend_from_slice(&chunk[..n]);
        let produced = out.len() as u64;
        if produced > ratio_floor && produced > compressed.saturating_mul(max_ratio) {
            return Err(InflateError::Bomb {
                compressed,
                produced,
            });
        }
        if produced > limit {
            return Err(InflateError::TooLarge);
        }
    }
}

/// Builders of small containers, for tests, fuzzing seeds and the benchmark corpus.
pub mod build {
    use std::io::Write;

    /// Builds a zip in memory (stored or deflated members) for tests.
    pub fn zip(members: &[(&str, &[u8], bool)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, data, deflate) in members {
            let body = if *deflate {
                let mut e =
                    flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(data).expect("writing to a Vec cannot fail");
                e.finish().expect("writing to a Vec cannot fail")
            } else {
                data.to_vec()
            };
            let method: u16 = if *deflate { 8 } else { 0 };
            let local = out.len() as u32;
            out.extend_from_slice(b"PK\x03\x04");
            out.extend_from_slice(&[20, 0, 0, 0]);
            out.extend_from_slice(&method.to_le_bytes());
            out.extend_from_slice(&[0; 8]); // time, date, crc (not checked)
            out.extend_from_slice(&(body.len() as u32).to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&body);
            central.extend_from_slice(b"PK\x01\x02");
            central.extend_from_slice(&[20, 0, 20, 0, 0, 0]);
            central.extend_from_slice(&method.to_le_bytes());
            central.extend_from_slice(&[0; 8]);
            central.extend_from_slice(&(body.len() as u32).to_le_bytes());
            central.extend_from_slice(&(data.len() as u32).to_le_bytes());
            central.extend_from_slice(&(name.len() as u16).to_le_bytes());
            central.extend_from_slice(&[0; 12]);
            central.extend_from_slice(&local.to_le_bytes());
            central.extend_from_slice(name.as_bytes());
        }
        let cd_offset = out.len() as u32;
        out.extend_from_slice(&central);
        out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
        out.extend_from_slice(&(members.len() as u16).to_le_bytes());
        out.extend_from_slice(&(members.len() as u16).to_le_bytes());
        out.extend_from_slice(&(central.len() as u32).to_le_bytes());
        out.extend_from_slice(&cd_offset.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out
    }

    pub fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).expect("writing to a Vec cannot fail");
        e.finish().expect("writing to a Vec cannot fail")
    }

    /// A one-member ustar archive.
    pub fn tar(name: &str, data: &[u8]) -> Vec<u8> {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let mut out = h.to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    fn names(entries: &[Entry<'_>]) -> Vec<String> {
        entries
            .iter()
            .map(|e| match e {
                Ok(m) => m.name.clone(),
                Err((n, p)) => format!("{n}: {p}"),
            })
            .collect()
    }

    #[test]
    fn zip_stored_and_deflated() {
        let z = zip(&[
            ("a.txt", b"hello", false),
            ("dir/b.bin", &[7u8; 1000], true),
        ]);
        assert_eq!(detect(&z), Some(Kind::Zip));
        let entries = members(Kind::Zip, &z);
        assert_eq!(names(&entries), ["a.txt", "dir/b.bin"]);
        let mut out = Vec::new();
        let Ok(m) = &entries[1] else { panic!() };
        inflate(m.content, 1 << 20, 100, 1 << 20, &mut out).unwrap();
        assert_eq!(out, vec![7u8; 1000]);
    }

    #[test]
    fn zip_problems() {
        let mut z = zip(&[("enc", b"x", false)]);
        let cd = z.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
        z[cd + 8] = 1; // encrypted flag
        assert_eq!(
            names(&members(Kind::Zip, &z)),
            ["enc: encrypted member not scanned"]
        );
        z[cd + 8] = 0;
        z[cd + 10] = 14; // LZMA
        assert_eq!(
            names(&members(Kind::Zip, &z)),
            ["enc: compression method 14 not supported"]
        );
        assert_eq!(
            names(&members(Kind::Zip, b"PK\x03\x04garbage")),
            [": corrupt archive: no end of central directory"]
        );
        let z = zip(&[("a", b"abc", false)]);
        assert_eq!(
            names(&members(Kind::Zip, &z[10..])),
            [": corrupt archive: bad central directory entry"]
        );
    }

    #[test]
    fn tar_and_gzip() {
        let t = tar("dir/file.txt", b"content");
        assert_eq!(detect(&t), Some(Kind::Tar));
        let entries = members(Kind::Tar, &t);
        assert_eq!(names(&entries), ["dir/file.txt"]);
        let g = gzip(b"inner");
        assert_eq!(detect(&g), Some(Kind::Gzip));
        let mut out = Vec::new();
        inflate(Content::Gzip(&g), 100, 100, 0, &mut out).unwrap();
        assert_eq!(out, b"inner");
        let mut bad = t.clone();
        bad[0] ^= 1;
        assert_eq!(detect(&bad), None);
    }

    #[test]
    fn inflate_limits() {
        let zeros = gzip(&vec![0u8; 10 << 20]);
        let mut out = Vec::new();
        assert!(matches!(
            inflate(Content::Gzip(&zeros), 1 << 30, 100, 1 << 20, &mut out),
            Err(InflateError::Bomb { .. })
        ));
        assert!(
            out.len() < 2 << 20,
            "stopped early, not after inflating everything"
        );
        assert_eq!(
            inflate(Content::Gzip(&zeros), 1000, 100_000, 1 << 30, &mut out),
            Err(InflateError::TooLarge)
        );
        assert_eq!(
            inflate(Content::Stored(b"12345"), 4, 1, 0, &mut out),
            Err(InflateError::TooLarge)
        );
        assert!(matches!(
            inflate(Content::Gzip(b"\x1f\x8b\x08garbage"), 100, 100, 0, &mut out),
            Err(InflateError::Corrupt(_))
        ));
    }
}
