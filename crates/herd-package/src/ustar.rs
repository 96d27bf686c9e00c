//! The one tar reader for packages: inspection and unpacking both read a package through it,
//! so what was checked is exactly what is written (no second parser that could read the same
//! bytes differently).
//!
//! It reads only the plain subset Herd's deterministic builder writes and refuses, naming the
//! member, everything where tar readers are known to disagree: a header whose checksum does
//! not match, a magic other than POSIX ustar (`ustar\0` `00`) or GNU (`ustar ` ` \0`), numbers
//! in GNU's base-256 form, PAX extended headers carrying anything but timestamps and comments
//! (`path`, `linkpath`, `size`, `uid`, `gid`, `uname`, `gname`, `GNU.sparse.*`, … would make
//! another reader see another member), GNU long-name and long-link entries (`L`, `K`), a link
//! name on a member that is not a link, a regular file whose name ends in `/` (old readers
//! make it a directory), a directory with content, and anything but zeros after the
//! end-of-archive block. It is not a general tar reader: what it does not understand, it
//! refuses.

use std::io::{self, Read};

/// A tar header block's size; members' data is padded to it.
pub(crate) const BLOCK: usize = 512;

/// A PAX extended header larger than this is refused unread (real ones hold a few timestamps).
const MAX_PAX_SIZE: u64 = 64 << 10;

/// Zero bytes accepted after the end-of-archive block (GNU tar pads to 10 KiB records; a
/// gzip member may be followed by a little padding).
const MAX_TRAILING_ZEROS: u64 = 1 << 20;

/// PAX keys that change nothing Herd writes (it sets its own times and modes).
const HARMLESS_PAX_KEYS: [&str; 4] = ["mtime", "atime", "ctime", "comment"];

/// One member's header, with the tar-level checks done.
#[derive(Debug)]
pub(crate) struct RawHeader {
    /// The member's name as stored (POSIX ustar: prefix and name joined).
    pub path: String,
    /// The type flag byte (`b'0'`, `b'5'`, …; `0` is an old-style regular file).
    pub kind: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub link_name: String,
    pub user_name: String,
    pub group_name: String,
}

/// Why the tar stream itself was refused: the member's name (if the header got that far),
/// and why.
#[derive(Debug)]
pub(crate) enum TarError {
    Read(io::Error),
    Member { member: String, why: String },
    Archive(String),
}

impl From<io::Error> for TarError {
    fn from(e: io::Error) -> TarError {
        TarError::Read(e)
    }
}

/// Reads `reader` member by member, calling `on_member` with each regular file or directory
/// header and a reader of exactly its data (what it leaves unread is skipped). PAX headers
/// are checked and consumed here.
pub(crate) fn read_members<R: Read>(
    mut reader: R,
    on_member: &mut dyn FnMut(&RawHeader, &mut dyn Read) -> Result<(), TarError>,
) -> Result<(), TarError> {
    let mut block = [0u8; BLOCK];
    loop {
        if !read_block(&mut reader, &mut block)? {
            return Err(TarError::Archive(
                "the archive ends without its end-of-archive block (truncated?)".into(),
            ));
        }
        if block.iter().all(|&b| b == 0) {
            return check_trailing(&mut reader);
        }
        let header = parse_header(&block)?;
        let member = |why: String| TarError::Member {
            member: header.path.clone(),
            why,
        };
        let mut data = (&mut reader).take(header.size);
        match header.kind {
            b'x' | b'g' => {
                if header.size > MAX_PAX_SIZE {
                    return Err(member(format!(
                        "a PAX extended header of {} bytes (more than {MAX_PAX_SIZE})",
                        header.size
                    )));
                }
                let mut records = Vec::with_capacity(header.size as usize);
                data.read_to_end(&mut records)?;
                check_pax(&records).map_err(member)?;
            }
            _ => on_member(&header, &mut data)?,
        }
        io::copy(&mut data, &mut io::sink())?;
        if data.limit() > 0 {
            return Err(member("the archive ends inside this member's data".into()));
        }
        let padding = (BLOCK - (header.size % BLOCK as u64) as usize) % BLOCK;
        let mut pad = [0u8; BLOCK];
        reader
            .read_exact(&mut pad[..padding])
            .map_err(|_| member("the archive ends inside this member's padding".into()))?;
    }
}

/// Fills `block`; `false` at a clean end of stream, an error for a partial block.
fn read_block(reader: &mut impl Read, block: &mut [u8; BLOCK]) -> Result<bool, TarError> {
    let mut filled = 0;
    while filled < BLOCK {
        match reader.read(&mut block[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => {
                return Err(TarError::Archive(
                    "the archive ends inside a header block".into(),
                ));
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(TarError::Read(e)),
        }
    }
    Ok(true)
}

/// After the end-of-archive block only zeros may follow: a header hidden there would be read
/// by a tar that ignores the end block (`tar -i`) and by no one else.
fn check_trailing(reader: &mut impl Read) -> Result<(), TarError> {
    let mut buf = [0u8; 8192];
    let mut total: u64 = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(TarError::Read(e)),
        };
        if let Some(at) = buf[..n].iter().position(|&b| b != 0) {
            return Err(TarError::Archive(format!(
                "data after the end-of-archive block (a non-zero byte {} bytes after it); a \
                 member hidden there would be unpacked by some tar readers and not others",
                total + at as u64
            )));
        }
        total += n as u64;
        if total > MAX_TRAILING_ZEROS {
            return Err(TarError::Archive(format!(
                "more than {MAX_TRAILING_ZEROS} bytes after the end-of-archive block"
            )));
        }
    }
}

fn parse_header(block: &[u8; BLOCK]) -> Result<RawHeader, TarError> {
    let name = text(&block[0..100]);
    let magic = &block[257..263];
    let version = &block[263..265];
    let posix = magic == b"ustar\0" && version == b"00";
    let gnu = magic == b"ustar " && version == b" \0";
    let path_bytes = if posix && block[345] != 0 {
        let mut joined = text(&block[345..500]).to_vec();
        joined.push(b'/');
        joined.extend_from_slice(name);
        joined
    } else {
        name.to_vec()
    };
    let shown = String::from_utf8_lossy(&path_bytes).into_owned();
    let member = |why: String| TarError::Member {
        member: shown.clone(),
        why,
    };
    let stored =
        number(&block[148..156]).map_err(|why| member(format!("checksum field: {why}")))?;
    let computed: u64 = block
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
    if stored != computed {
        return Err(member(format!(
            "header checksum mismatch (stored {stored}, computed {computed}): a damaged or \
             forged header"
        )));
    }
    if !posix && !gnu {
        return Err(member(format!(
            "unknown tar header magic {:?}; only POSIX ustar and GNU headers are read",
            String::from_utf8_lossy(&block[257..265])
        )));
    }
    let path =
        String::from_utf8(path_bytes).map_err(|_| member("the name is not valid UTF-8".into()))?;
    let field = |range: std::ops::Range<usize>, what: &str| {
        number(&block[range]).map_err(|why| member(format!("{what} field: {why}")))
    };
    let mode = field(100..108, "mode")?;
    let uid = field(108..116, "uid")?;
    let gid = field(116..124, "gid")?;
    let size = field(124..136, "size")?;
    let kind = block[156];
    match kind {
        b'L' | b'K' => {
            return Err(member(
                "a GNU long-name or long-link entry: it renames the next member for GNU tar \
                 and not for others"
                    .into(),
            ));
        }
        b'S' => {
            return Err(member(
                "a GNU sparse file: its data is not what other readers see".into(),
            ));
        }
        _ => {}
    }
    let link_name = String::from_utf8_lossy(text(&block[157..257])).into_owned();
    let user_name = String::from_utf8_lossy(text(&block[265..297])).into_owned();
    let group_name = String::from_utf8_lossy(text(&block[297..329])).into_owned();
    Ok(RawHeader {
        path,
        kind,
        mode: u32::try_from(mode).map_err(|_| member(format!("mode {mode:o} is too large")))?,
        uid,
        gid,
        size,
        link_name,
        user_name,
        group_name,
    })
}

/// The bytes of a NUL-terminated text field.
fn text(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// An octal number field: optional leading spaces, octal digits, then only NULs or spaces.
/// GNU's base-256 form (high bit set) is refused: not every reader decodes it.
fn number(field: &[u8]) -> Result<u64, String> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        return Err("a base-256 (binary) number, which not every tar reader decodes".into());
    }
    let start = field.iter().position(|&b| b != b' ').unwrap_or(field.len());
    let digits_end = field[start..]
        .iter()
        .position(|b| !(b'0'..=b'7').contains(b))
        .map_or(field.len(), |p| start + p);
    if digits_end == start {
        return Err(format!(
            "no octal digits in {:?}",
            String::from_utf8_lossy(field)
        ));
    }
    if field[digits_end..].iter().any(|&b| b != 0 && b != b' ') {
        return Err(format!(
            "{:?} is not an octal number",
            String::from_utf8_lossy(field)
        ));
    }
    field[start..digits_end].iter().try_fold(0u64, |n, d| {
        n.checked_mul(8)
            .map(|n| n + u64::from(d - b'0'))
            .ok_or_else(|| "the number overflows".to_owned())
    })
}

/// PAX records are `<length> <key>=<value>\n`; only [`HARMLESS_PAX_KEYS`] are accepted.
fn check_pax(mut records: &[u8]) -> Result<(), String> {
    while !records.is_empty() {
        let space = records
            .iter()
            .position(|&b| b == b' ')
            .ok_or("a malformed PAX record (no length)")?;
        let length: usize = std::str::from_utf8(&records[..space])
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .ok_or("a malformed PAX record length")?;
        if length <= space + 1 || length > records.len() || records[length - 1] != b'\n' {
            return Err("a malformed PAX record (its length does not match)".into());
        }
        let record = &records[space + 1..length - 1];
        let key_end = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or("a malformed PAX record (no '=')")?;
        let key = String::from_utf8_lossy(&record[..key_end]);
        if !HARMLESS_PAX_KEYS.contains(&key.as_ref()) {
            return Err(format!(
                "a PAX extended header sets {key:?}, which tar readers apply differently \
                 (only {} are accepted)",
                HARMLESS_PAX_KEYS.join(", ")
            ));
        }
        records = &records[length..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_octal_and_strict() {
        assert_eq!(number(b"0000644\0"), Ok(0o644));
        assert_eq!(number(b"   644 \0"), Ok(0o644));
        assert!(number(b"\x80\0\0\0\0\0\0\x01").is_err());
        assert!(number(b"64x4\0\0\0\0").is_err());
        assert!(number(b"\0\0\0\0").is_err());
    }

    #[test]
    fn only_harmless_pax_keys_pass() {
        assert_eq!(check_pax(b"20 mtime=1700000000\n"), Ok(()));
        for records in [
            &b"13 path=evil\n"[..],
            b"15 size=999999\n",
            b"10 uid=42\n",
            b"26 GNU.sparse.size=999999\n",
            b"99 mtime=1\n",
            b"mtime=1\n",
        ] {
            assert!(
                check_pax(records).is_err(),
                "{}",
                String::from_utf8_lossy(records)
            );
        }
    }
}
