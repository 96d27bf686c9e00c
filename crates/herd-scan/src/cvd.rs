//! ClamAV's database containers, `.cvd` and `.cld`: the 512-byte header, the digital
//! signature (ClamAV's own RSA scheme from libclamav `dsig.c`), the tar inside and its `.info`
//! manifest. Pure: container bytes in, verified database files out (`read_container`).
//!
//! What is checked, as clamscan 1.4 checks it:
//! - the header `ClamAV-VDB:build time:version:signatures:functionality level:MD5:dsig:builder[:stime]`,
//!   padded with spaces to 512 bytes (`parse_header`; every field but stime must be present);
//! - `.cvd` only: the MD5 of everything after the header equals the header's (lowercase hex),
//!   and the header's dsig decodes, under the CVD key, to that MD5 (`verify_md5_signature`).
//!   A `.cld` (a `.cvd` freshclam has patched with incremental updates) is not checked
//!   against its header's MD5 and dsig, which describe the `.cvd` it started from; clamscan
//!   does not check them either;
//! - for both: the tar's `.info` member (`name:size:sha256` per file, a copy of the header, and
//!   a `DSIG:` line signed with the `.info` key in ClamAV's PSS-like scheme over SHA-256,
//!   `verify_pss_signature`), whose header must agree with the container's (version,
//!   signatures, functionality level, stime), and every database member's size and SHA-256
//!   against it; a member the `.info` does not list is refused. So a `.cld` is verified
//!   through its `.info` signature, as clamscan does.
//!
//! A failed check refuses the whole container, as clamscan does; nothing of it is loaded.
//! The keys are a parameter (`Keys`): `Keys::default()` is ClamAV's published pair; tests
//! sign containers with their own (`build`).
//!
//! The tar is read the way libclamav's `cli_tgzload` reads it (names without `/`, regular
//! files only, octal sizes), not with `archive`'s walker, which reads every variant of tar
//! leniently to find what an unpacker might extract; a signature container should be refused
//! at the first oddity instead. The body is a gzip stream in a `.cvd` and a plain tar in a
//! `.cld` (either is accepted in both, by its magic, as libclamav does).

use std::io::Read;

use md5::{Digest as _, Md5};
use num_bigint::BigUint;
use sha2::Sha256;

/// The header's length; the body starts after it.
pub const HEADER_LEN: usize = 512;
/// The most a container may unpack to (the gzip'd tar; ClamAV's main.cvd is a few hundred
/// MB). Beyond it the container is refused rather than followed (a gzip bomb).
pub const MAX_UNPACKED: u64 = 4 << 30;
/// The longest dsig accepted (real ones are 171 characters for 1024 bits, 342 for 2048).
const MAX_DSIG: usize = 1024;

/// ClamAV's CVD signing key (libclamav `dsig.c`, `CLI_NSTR` and `CLI_ESTR`).
const CLAMAV_CVD_N: &str = concat!(
    "1186409955516453426030700016584531897515277744120277437465994057432431426074641447673610606",
    "4065584474976078889002228342492276248891756555100246777110966959818941043469903453223222862",
    "1591089508178591428456220796841621637175567590476666928698770143328137383952820383197532047",
    "771780196576957695822641224262693037"
);
const CLAMAV_CVD_E: &str = "100001027";
/// ClamAV's `.info` signing key (libclamav `readdb.c`, `INFO_NSTR` and `INFO_ESTR`).
const CLAMAV_INFO_N: &str = concat!(
    "1108889498304854547365955610662719492392894179179504762059165869741358104332271591217249680",
    "6525381055880964520618400224333320534660299233983755341740679502866829909679955734391392668",
    "3783612215242053966310901051516412708572770803107343209516537005089417174191687239425078907",
    "0290470270758745162169105075430785038339986534648720379846417853739221140278648135982446119",
    "7231102895415093770394216666324484593935762408468516826633192140826667923494822045805347809",
    "9328484548458869717064243605586678627758760720594377033653802091016977385775154769350854694",
    "55279994113145977994084618328482151013142393373316337519977244732747977"
);
const CLAMAV_INFO_E: &str = "100002049";

/// An RSA public key as ClamAV uses one: a modulus and an exponent, no padding scheme of its
/// own (the schemes are `verify_md5_signature` and `verify_pss_signature`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    n: BigUint,
    e: BigUint,
}

impl PublicKey {
    /// A key from decimal strings, as libclamav writes its keys; `None` for anything that is
    /// not two decimal numbers with a modulus above 1.
    pub fn from_decimal(n: &str, e: &str) -> Option<PublicKey> {
        let parse = |s: &str| {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| BigUint::parse_bytes(s.as_bytes(), 10))
                .flatten()
        };
        let (n, e) = (parse(n)?, parse(e)?);
        (n > BigUint::from(1u8)).then_some(PublicKey { n, e })
    }

    /// The modulus's length in bits.
    pub fn bits(&self) -> u64 {
        self.n.bits()
    }
}

/// The keys a container is verified with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// Signs a `.cvd` header's MD5 (`verify_md5_signature`).
    pub cvd: PublicKey,
    /// Signs the `.info` member's SHA-256 (`verify_pss_signature`).
    pub info: PublicKey,
}

impl Default for Keys {
    /// ClamAV's published keys (Cisco Talos signs the official databases with them).
    fn default() -> Keys {
        Keys {
            cvd: PublicKey::from_decimal(CLAMAV_CVD_N, CLAMAV_CVD_E).expect("ClamAV's CVD key"),
            info: PublicKey::from_decimal(CLAMAV_INFO_N, CLAMAV_INFO_E)
                .expect("ClamAV's .info key"),
        }
    }
}

/// Which container a file is, by its extension (as libclamav decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    Cvd,
    Cld,
}

impl ContainerKind {
    pub fn of(file_name: &str) -> Option<ContainerKind> {
        let lower = file_name.to_ascii_lowercase();
        if lower.ends_with(".cvd") {
            Some(ContainerKind::Cvd)
        } else if lower.ends_with(".cld") {
            Some(ContainerKind::Cld)
        } else {
            None
        }
    }
}

/// A parsed container header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CvdHeader {
    /// As written, like `16 Apr 2020 07-58 -0400`.
    pub build_time: String,
    pub version: u32,
    /// The signature count clamscan adds to "Known viruses" for the container.
    pub signatures: u64,
    pub functionality_level: u32,
    /// The MD5 of the body, 32 hex digits as written.
    pub md5: String,
    pub dsig: String,
    pub builder: String,
    /// The build time in seconds since the epoch; absent in old containers.
    pub stime: Option<u64>,
}

/// What is wrong with a container; `CvdError` adds which file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CvdErrorKind {
    #[error("{0} bytes is shorter than the 512-byte header")]
    TooShort(usize),
    #[error("the header does not start with \"ClamAV-VDB:\" (not a ClamAV database container)")]
    NotContainer,
    #[error("the header has no {0} field")]
    MissingField(&'static str),
    #[error("the header's {field} {value:?} is not a decimal number")]
    BadNumber { field: &'static str, value: String },
    #[error("the header's MD5 {header:?} does not match the content's {content}")]
    Md5Mismatch { header: String, content: String },
    #[error(
        "the digital signature does not verify with the CVD key (a container not signed by that key, or tampered with)"
    )]
    BadSignature,
    #[error("the container is not a gzip'd or plain tar: {0}")]
    Body(String),
    #[error("the content unpacks to more than {MAX_UNPACKED} bytes")]
    TooLarge,
    #[error("tar member at byte {offset}: {what}")]
    Tar { offset: u64, what: String },
    #[error("the container has no .info member")]
    NoInfo,
    #[error("{member}:{line}: {what}")]
    Info {
        member: String,
        line: usize,
        what: String,
    },
    #[error("{0}: the digital signature does not verify with the .info key")]
    InfoSignature(String),
    #[error("{0}: no DSIG line (the .info is not signed)")]
    InfoUnsigned(String),
    #[error("the .info's copy of the header does not match the container's header ({0} differs)")]
    InfoHeader(&'static str),
    #[error("{0}: not listed in the .info")]
    NotInInfo(String),
    #[error("{name}: {found} bytes, the .info says {expected}")]
    MemberSize {
        name: String,
        expected: u64,
        found: u64,
    },
    #[error("{0}: its SHA-256 does not match the .info's")]
    MemberDigest(String),
}

/// A container refused, naming the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {kind}")]
pub struct CvdError {
    pub file: String,
    pub kind: CvdErrorKind,
}

/// Parses the first 512 bytes of a container.
pub fn parse_header(bytes: &[u8]) -> Result<CvdHeader, CvdErrorKind> {
    let head = bytes
        .get(..HEADER_LEN)
        .ok_or(CvdErrorKind::TooShort(bytes.len()))?;
    // As libclamav: the header is a C string padded with spaces (and newlines).
    let end = head.iter().position(|&b| b == 0).unwrap_or(HEADER_LEN);
    let text = String::from_utf8_lossy(&head[..end]);
    parse_header_text(text.trim_end_matches([' ', '\n']))
}

/// Parses a header line (the container's, or the `.info`'s copy).
pub fn parse_header_text(text: &str) -> Result<CvdHeader, CvdErrorKind> {
    let rest = text
        .strip_prefix("ClamAV-VDB:")
        .ok_or(CvdErrorKind::NotContainer)?;
    let fields: Vec<&str> = rest.split(':').collect();
    let names = [
        "build time",
        "version",
        "signature count",
        "functionality level",
        "MD5",
        "digital signature",
        "builder",
    ];
    // libclamav's `cli_strtok` takes an empty field as a missing one.
    let field = |i: usize| match fields.get(i) {
        Some(f) if !f.is_empty() => Ok(*f),
        _ => Err(CvdErrorKind::MissingField(names[i])),
    };
    let number = |i: usize| -> Result<u64, CvdErrorKind> {
        let f = field(i)?;
        f.parse::<u64>()
            .ok()
            .filter(|_| f.bytes().all(|b| b.is_ascii_digit()))
            .ok_or(CvdErrorKind::BadNumber {
                field: names[i],
                value: f.to_owned(),
            })
    };
    let narrow = |i: usize| -> Result<u32, CvdErrorKind> {
        u32::try_from(number(i)?).map_err(|_| CvdErrorKind::BadNumber {
            field: names[i],
            value: fields[i].to_owned(),
        })
    };
    let stime = match fields.get(7) {
        None | Some(&"") => None,
        Some(s) => Some(
            s.parse::<u64>()
                .ok()
                .filter(|_| s.bytes().all(|b| b.is_ascii_digit()))
                .ok_or(CvdErrorKind::BadNumber {
                    field: "build time in seconds",
                    value: (*s).to_owned(),
                })?,
        ),
    };
    Ok(CvdHeader {
        build_time: field(0)?.to_owned(),
        version: narrow(1)?,
        signatures: number(2)?,
        functionality_level: narrow(3)?,
        md5: field(4)?.to_owned(),
        dsig: field(5)?.to_owned(),
        builder: field(6)?.to_owned(),
        stime,
    })
}

const SIGNATURE_DIGITS: &[u8; 64] =
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/";

/// libclamav's `cli_decodesig`: the signature's characters are base-64 digits, least
/// significant first; the number raised to `e` modulo `n` is the plain text, `len` bytes
/// big-endian. `None` for a character outside the alphabet or a result longer than `len`.
pub fn decode_signature(dsig: &str, key: &PublicKey, len: usize) -> Option<Vec<u8>> {
    if dsig.len() > MAX_DSIG {
        return None;
    }
    let mut c = BigUint::default();
    for ch in dsig.bytes().rev() {
        let digit = SIGNATURE_DIGITS.iter().position(|&d| d == ch)?;
        c = (c << 6u32) + BigUint::from(digit as u32);
    }
    let plain = c.modpow(&key.e, &key.n);
    let bytes = if plain.bits() == 0 {
        Vec::new()
    } else {
        plain.to_bytes_be()
    };
    if bytes.len() > len {
        return None;
    }
    let mut out = vec![0u8; len - bytes.len()];
    out.extend_from_slice(&bytes);
    Some(out)
}

/// libclamav's `cli_versig`: `dsig` decodes to the MD5 given as 32 hex digits (lowercase, as
/// libclamav compares the strings).
pub fn verify_md5_signature(md5_hex: &str, dsig: &str, key: &PublicKey) -> bool {
    if md5_hex.len() != 32 || !md5_hex.as_bytes()[0].is_ascii_alphanumeric() {
        return false;
    }
    decode_signature(dsig, key, 16).is_some_and(|plain| hex_lower(&plain) == md5_hex)
}

const PSS_LEN: usize = 2048 / 8;
const PSS_BLOCK: usize = PSS_LEN - 32 - 1;
const PSS_SALT: usize = 32;

/// libclamav's `cli_versig2`: an EMSA-PSS-like encoding over SHA-256 with a 32-byte salt in a
/// 256-byte block ending in 0xbc.
pub fn verify_pss_signature(sha256: &[u8; 32], dsig: &str, key: &PublicKey) -> bool {
    let Some(decoded) = decode_signature(dsig, key, PSS_LEN) else {
        return false;
    };
    if decoded[PSS_LEN - 1] != 0xbc {
        return false;
    }
    let (masked, digest2) = (&decoded[..PSS_BLOCK], &decoded[PSS_BLOCK..PSS_LEN - 1]);
    let mut data = pss_mask(digest2);
    for (d, m) in data.iter_mut().zip(masked) {
        *d ^= m;
    }
    data[0] &= 0x7f;
    let Some(one) = data.iter().position(|&b| b == 1) else {
        return false;
    };
    let salt = &data[one + 1..];
    if salt.len() != PSS_SALT {
        return false;
    }
    let mut h = Sha256::new();
    h.update([0u8; 8]);
    h.update(sha256);
    h.update(salt);
    h.finalize().as_slice() == digest2
}

/// The mask: SHA-256 of the digest and a big-endian counter (`c[2..4]`), concatenated.
fn pss_mask(digest: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PSS_BLOCK + 32);
    let mut i: u32 = 0;
    while out.len() < PSS_BLOCK {
        let mut h = Sha256::new();
        h.update(digest);
        h.update([0, 0, (i / 256) as u8, i as u8]);
        out.extend_from_slice(&h.finalize());
        i += 1;
    }
    out.truncate(PSS_BLOCK);
    out
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The database file types libclamav loads from a container or directory (`CLI_DBEXT`, with
/// YARA); other members (`COPYING`, the `.info`) are not databases and are passed over, as
/// libclamav passes them over.
pub const DATABASE_EXTENSIONS: &[&str] = &[
    "db", "hdb", "hdu", "fp", "mdb", "mdu", "hsb", "hsu", "sfp", "msb", "msu", "ndb", "ndu", "ldb",
    "ldu", "sdb", "zmd", "rmd", "pdb", "gdb", "wdb", "cbc", "ftm", "cfg", "cvd", "cld", "cud",
    "cdb", "cat", "crb", "idb", "ioc", "yar", "yara", "pwdb", "ign", "ign2", "imp",
];

/// Whether libclamav takes `name` for a database file (by its extension, case-insensitive).
pub fn is_database_name(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(_, ext)| {
        DATABASE_EXTENSIONS
            .iter()
            .any(|d| d.eq_ignore_ascii_case(ext))
    })
}

/// One `.info` line: a member's name, size and SHA-256.
#[derive(Debug, Clone)]
struct InfoEntry {
    name: String,
    size: u64,
    sha256: [u8; 32],
}

/// Reads a container, checks it, and hands each database member (name, content) to
/// `on_database`, in tar order, only once everything is verified. The header is returned.
pub fn read_container(
    file_name: &str,
    bytes: &[u8],
    keys: &Keys,
    on_database: &mut dyn FnMut(&str, &[u8]),
) -> Result<CvdHeader, CvdError> {
    let fail = |kind| CvdError {
        file: file_name.to_owned(),
        kind,
    };
    let kind = ContainerKind::of(file_name).unwrap_or(ContainerKind::Cvd);
    let header = parse_header(bytes).map_err(fail)?;
    let body = &bytes[HEADER_LEN..];
    if kind == ContainerKind::Cvd {
        let md5 = hex_lower(&Md5::digest(body));
        if md5 != header.md5 {
            return Err(fail(CvdErrorKind::Md5Mismatch {
                header: header.md5.clone(),
                content: md5,
            }));
        }
        if !verify_md5_signature(&md5, &header.dsig, &keys.cvd) {
            return Err(fail(CvdErrorKind::BadSignature));
        }
    }
    // Pass 1: the `.info` (usually the first member, so this stops early).
    let mut info = None;
    for_each_member(body, &mut |name, data| {
        if info.is_none() && name.to_ascii_lowercase().ends_with(".info") {
            info = Some(parse_info(name, data, &header, &keys.info)?);
            return Ok(false);
        }
        Ok(true)
    })
    .map_err(fail)?;
    let info = info.ok_or_else(|| fail(CvdErrorKind::NoInfo))?;
    // Pass 2: every database member against the `.info`, before anything is handed out, so a
    // bad member refuses the whole container. Pass 3 hands them out. (Unpacking again costs
    // time only when an index is built; holding every member would cost the whole tar.)
    for_each_member(body, &mut |name, data| {
        if is_database_name(name) {
            check_member(name, data, &info)?;
        }
        Ok(true)
    })
    .map_err(fail)?;
    for_each_member(body, &mut |name, data| {
        if is_database_name(name) {
            on_database(name, data);
        }
        Ok(true)
    })
    .map_err(fail)?;
    Ok(header)
}

fn check_member(name: &str, data: &[u8], info: &[InfoEntry]) -> Result<(), CvdErrorKind> {
    let entry = info
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| CvdErrorKind::NotInInfo(name.to_owned()))?;
    if entry.size != data.len() as u64 {
        return Err(CvdErrorKind::MemberSize {
            name: name.to_owned(),
            expected: entry.size,
            found: data.len() as u64,
        });
    }
    if Sha256::digest(data).as_slice() != entry.sha256 {
        return Err(CvdErrorKind::MemberDigest(name.to_owned()));
    }
    Ok(())
}

fn parse_info(
    member: &str,
    data: &[u8],
    header: &CvdHeader,
    key: &PublicKey,
) -> Result<Vec<InfoEntry>, CvdErrorKind> {
    let bad = |line: usize, what: &str| CvdErrorKind::Info {
        member: member.to_owned(),
        line,
        what: what.to_owned(),
    };
    let mut hasher = Sha256::new();
    let mut copy = None;
    let mut entries = Vec::new();
    // Every line ends with a newline; what follows the last one is no line.
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    for (index, raw) in data.split(|&b| b == b'\n').enumerate() {
        let line_no = index + 1;
        let line = std::str::from_utf8(raw).map_err(|_| bad(line_no, "not UTF-8 text"))?;
        let line = line.trim_end_matches('\r');
        if let Some(dsig) = line.strip_prefix("DSIG:") {
            let digest: [u8; 32] = hasher.finalize().into();
            if !verify_pss_signature(&digest, dsig, key) {
                return Err(CvdErrorKind::InfoSignature(member.to_owned()));
            }
            let copy: CvdHeader = copy.ok_or_else(|| bad(1, "no ClamAV-VDB header line"))?;
            for (what, same) in [
                ("version", copy.version == header.version),
                ("signature count", copy.signatures == header.signatures),
                (
                    "functionality level",
                    copy.functionality_level == header.functionality_level,
                ),
                ("stime", copy.stime == header.stime),
            ] {
                if !same {
                    return Err(CvdErrorKind::InfoHeader(what));
                }
            }
            return Ok(entries);
        }
        // libclamav hashes each line as read, with its newline.
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
        if line.starts_with("ClamAV-VDB:") {
            if copy.is_some() {
                return Err(bad(line_no, "a second ClamAV-VDB header line"));
            }
            copy = Some(parse_header_text(line).map_err(|e| bad(line_no, &e.to_string()))?);
            continue;
        }
        if copy.is_none() {
            return Err(bad(line_no, "expected the ClamAV-VDB header line first"));
        }
        let fields: Vec<&str> = line.split(':').collect();
        let [name, size, sha] = fields[..] else {
            return Err(bad(line_no, "expected name:size:sha256"));
        };
        let size = size
            .parse::<u64>()
            .ok()
            .filter(|_| !size.is_empty() && size.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| bad(line_no, "the size is not a decimal number"))?;
        let mut sha256 = [0u8; 32];
        if sha.len() != 64
            || !sha.bytes().all(|b| b.is_ascii_hexdigit())
            || (0..32).any(|i| {
                u8::from_str_radix(&sha[2 * i..2 * i + 2], 16)
                    .map(|b| sha256[i] = b)
                    .is_err()
            })
        {
            return Err(bad(line_no, "malformed SHA-256"));
        }
        entries.push(InfoEntry {
            name: name.to_owned(),
            size,
            sha256,
        });
    }
    Err(CvdErrorKind::InfoUnsigned(member.to_owned()))
}

/// What `for_each_member` calls with each member's name and content; `Ok(false)` stops.
type Visit<'a> = dyn FnMut(&str, &[u8]) -> Result<bool, CvdErrorKind> + 'a;

/// Walks the tar in `body` (gzip'd or plain) as libclamav's `cli_tgzload` does, calling `visit`
/// with each member until it returns `Ok(false)`.
fn for_each_member(body: &[u8], visit: &mut Visit<'_>) -> Result<(), CvdErrorKind> {
    let reader: Box<dyn Read + '_> = if body.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(body))
    } else {
        Box::new(body)
    };
    let mut reader = reader.take(MAX_UNPACKED + 1);
    let mut offset = 0u64;
    let body_err = |e: std::io::Error| CvdErrorKind::Body(e.to_string());
    loop {
        let mut block = [0u8; 512];
        let got = read_full(&mut reader, &mut block).map_err(body_err)?;
        if got == 0 {
            return Ok(());
        }
        let tar = |what: &str| CvdErrorKind::Tar {
            offset,
            what: what.to_owned(),
        };
        if got < 512 {
            return Err(tar("truncated header block"));
        }
        if block[0] == 0 {
            return Ok(());
        }
        let name_end = block[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let name = std::str::from_utf8(&block[..name_end]).map_err(|_| tar("name is not UTF-8"))?;
        if name.contains('/') {
            return Err(tar("slash separators are not allowed in a container"));
        }
        match block[156] {
            b'0' | 0 => {}
            b'5' => return Err(tar("directories are not allowed in a container")),
            t => return Err(tar(&format!("unknown type flag {:?}", t as char))),
        }
        let size = parse_octal(&block[124..136]).ok_or_else(|| tar("invalid size"))?;
        if size > MAX_UNPACKED {
            return Err(CvdErrorKind::TooLarge);
        }
        let mut data = Vec::new();
        (&mut reader)
            .take(size)
            .read_to_end(&mut data)
            .map_err(body_err)?;
        if reader.limit() == 0 {
            return Err(CvdErrorKind::TooLarge);
        }
        if (data.len() as u64) < size {
            return Err(tar(&format!(
                "{name}: truncated ({} of {size} bytes)",
                data.len()
            )));
        }
        let pad = (512 - size % 512) % 512;
        let mut padding = [0u8; 512];
        let got = read_full(&mut reader, &mut padding[..pad as usize]).map_err(body_err)?;
        if got < pad as usize {
            return Err(tar(&format!("{name}: truncated padding")));
        }
        if !visit(name, &data)? {
            return Ok(());
        }
        offset += 512 + size + pad;
    }
}

fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// `sscanf("%o")`: leading spaces, then octal digits up to the first other byte.
fn parse_octal(field: &[u8]) -> Option<u64> {
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(b))
        .collect();
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(8)?.checked_add(u64::from(d - b'0'))
    })
}

/// Signed containers made with a key of one's own: for tests, fuzzing seeds and benchmarks
/// (never a substitute for ClamAV's key, which only Cisco Talos holds).
pub mod build {
    use md5::{Digest as _, Md5};
    use num_bigint::BigUint;
    use sha2::Sha256;

    use super::{ContainerKind, HEADER_LEN, PSS_BLOCK, PublicKey, SIGNATURE_DIGITS, pss_mask};

    const TEST_N: &str = concat!(
        "278232379435936288545208121482920850981325974053680748288186389974114476080072203963920202",
        "758700946717013066232049635809153743996494455755386242574105697178259709021258196714601349",
        "993145946792940002367159654641276000791971425319244971049084682567931629683675311915482457",
        "105576589958600510674583858344858918829007724955794618171998887782695569573972436605061944",
        "526429763167444909081816659575092238179362285883545759017841544996887994634777451299221938",
        "217218494832385739864604828751794217977395222145622841155088787802725030280975213828568712",
        "16862710538425371066048455780818978758562621968585888752289204208638313018551",
    );
    const TEST_D: &str = concat!(
        "393409328487166477031131817508949125800736585373774855039218641951893964988022403130902219",
        "951675456547851505828818320210693912502481848421489008425781791535347458219071052416493356",
        "414923748968457109002397546374692810779498889882814806657031100772006617392016401485695729",
        "513355265008015533045121140830730627653259566077704835479710119227385184824584962691363640",
        "789025271310535521889280408327769569219405818250875641390183097099165688205604886565727840",
        "198967562450238733530726431633731882763622109475735455542033300936302795788929225763164138",
        "65548706645950699306835708987424040672709439337803331481929936597030783473",
    );

    /// An RSA key pair.
    #[derive(Debug, Clone)]
    pub struct PrivateKey {
        pub public: PublicKey,
        d: BigUint,
    }

    impl PrivateKey {
        /// A fixed 2048-bit test key (generated once with `openssl genrsa 2048`, e = 65537).
        pub fn test_key() -> PrivateKey {
            PrivateKey {
                public: PublicKey::from_decimal(TEST_N, "65537").expect("test key"),
                d: BigUint::parse_bytes(TEST_D.as_bytes(), 10).expect("test key"),
            }
        }

        /// The test key as `Keys` (for both the CVD and the `.info` signature).
        pub fn keys(&self) -> super::Keys {
            super::Keys {
                cvd: self.public.clone(),
                info: self.public.clone(),
            }
        }
    }

    /// The inverse of `decode_signature`: base-64 digits, least significant first.
    pub fn encode_signature(value: &BigUint) -> String {
        let mut digits = Vec::new();
        let mut v = value.clone();
        let zero = BigUint::default();
        while v != zero {
            let d = (&v % 64u32).iter_u32_digits().next().unwrap_or(0) as usize;
            digits.push(SIGNATURE_DIGITS[d]);
            v >>= 6u32;
        }
        String::from_utf8(digits).expect("ASCII digits")
    }

    fn raw_sign(plain: &[u8], key: &PrivateKey) -> String {
        let m = BigUint::from_bytes_be(plain);
        encode_signature(&m.modpow(&key.d, &key.public.n))
    }

    /// A dsig as ClamAV's signing service makes one for a `.cvd` header's MD5.
    pub fn sign_md5(md5: &[u8; 16], key: &PrivateKey) -> String {
        raw_sign(md5, key)
    }

    /// A `.info` DSIG over `sha256`, with a salt derived from it (deterministic).
    pub fn sign_pss(sha256: &[u8; 32], key: &PrivateKey) -> String {
        let salt: [u8; 32] = Sha256::digest([&b"herd-test-salt"[..], sha256].concat()).into();
        let mut h = Sha256::new();
        h.update([0u8; 8]);
        h.update(sha256);
        h.update(salt);
        let digest: [u8; 32] = h.finalize().into();
        let mut db = vec![0u8; PSS_BLOCK];
        db[PSS_BLOCK - 33] = 1;
        db[PSS_BLOCK - 32..].copy_from_slice(&salt);
        let mask = pss_mask(&digest);
        let mut em: Vec<u8> = db.iter().zip(&mask).map(|(a, b)| a ^ b).collect();
        em[0] &= 0x7f;
        em.extend_from_slice(&digest);
        em.push(0xbc);
        raw_sign(&em, key)
    }

    /// A tar as libclamav reads it: ustar headers, regular files, end blocks.
    pub fn tar(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data) in members {
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
            out.extend_from_slice(&h);
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    /// What goes into a container's header.
    #[derive(Debug, Clone)]
    pub struct Spec {
        pub build_time: String,
        pub version: u32,
        pub signatures: u64,
        pub functionality_level: u32,
        pub builder: String,
        pub stime: u64,
    }

    impl Spec {
        pub fn new(version: u32, signatures: u64) -> Spec {
            Spec {
                build_time: "06 Dec 2026 06-00 +0000".to_owned(),
                version,
                signatures,
                functionality_level: 90,
                builder: "herd-test".to_owned(),
                stime: 1_796_536_800,
            }
        }

        fn line(&self, md5: &str, dsig: &str) -> String {
            format!(
                "ClamAV-VDB:{}:{}:{}:{}:{md5}:{dsig}:{}:{}",
                self.build_time,
                self.version,
                self.signatures,
                self.functionality_level,
                self.builder,
                self.stime
            )
        }
    }

    /// The `.info` member for `members`, signed with `key`.
    pub fn info(spec: &Spec, members: &[(&str, &[u8])], key: &PrivateKey) -> Vec<u8> {
        let mut text = spec.line("X", "X");
        text.push('\n');
        for (name, data) in members {
            let sha: String = Sha256::digest(data)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            text.push_str(&format!("{name}:{}:{sha}\n", data.len()));
        }
        let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        text.push_str(&format!("DSIG:{}\n", sign_pss(&digest, key)));
        text.into_bytes()
    }

    /// A whole container: `<stem>.info` (signed) and `members` in a tar, gzip'd for a `.cvd`,
    /// behind a header signed with `key` (a `.cld` keeps a header of the same form).
    pub fn container(
        kind: ContainerKind,
        stem: &str,
        members: &[(&str, &[u8])],
        spec: &Spec,
        key: &PrivateKey,
    ) -> Vec<u8> {
        let info = info(spec, members, key);
        let info_name = format!("{stem}.info");
        // The .info first, as sigtool writes it; COPYING is passed over by readers.
        let mut all: Vec<(&str, &[u8])> = vec![(&info_name, &info), ("COPYING", b"test\n")];
        all.extend_from_slice(members);
        let tar = tar(&all);
        let body = match kind {
            ContainerKind::Cvd => crate::archive::build::gzip(&tar),
            ContainerKind::Cld => tar,
        };
        let md5: [u8; 16] = Md5::digest(&body).into();
        let md5_hex: String = md5.iter().map(|b| format!("{b:02x}")).collect();
        let mut head = spec.line(&md5_hex, &sign_md5(&md5, key)).into_bytes();
        assert!(head.len() <= HEADER_LEN, "header too long");
        head.resize(HEADER_LEN, b' ');
        head.extend_from_slice(&body);
        head
    }
}

#[cfg(test)]
mod tests {
    use super::build::{PrivateKey, Spec, container};
    use super::*;

    /// The header of ClamAV's daily.cvd version 25784 (16 April 2020), byte for byte as
    /// published (quoted in a public test suite), padded as in the file.
    const REAL_DAILY_HEADER: &str = "ClamAV-VDB:16 Apr 2020 07-58 -0400:25784:2267600:63:92baacd59fd26e6bcf03077add78d209:4Jp9JtGJY6nUk8JHDQQpQeBwlfXqskvhXL+vesDNqAeWCmjbudU+Hy/Nj4/BH2vl70c/R5B/VYY+eqqCQo6o7VGLqLJr/E+19gejqMp/iRcuHrtnLw6V/x3UjO3/qYVSlcJvAjtMI7FK32wjB+Sp8kaS/ZbfaFQp6trRQhisjqf:raynman:1587038339";

    fn padded(line: &str) -> Vec<u8> {
        let mut b = line.as_bytes().to_vec();
        b.resize(HEADER_LEN, b' ');
        b
    }

    #[test]
    fn real_daily_header_parses_and_its_signature_verifies_with_clamav_key() {
        let header = parse_header(&padded(REAL_DAILY_HEADER)).unwrap();
        assert_eq!(header.build_time, "16 Apr 2020 07-58 -0400");
        assert_eq!(header.version, 25784);
        assert_eq!(header.signatures, 2_267_600);
        assert_eq!(header.functionality_level, 63);
        assert_eq!(header.builder, "raynman");
        assert_eq!(header.stime, Some(1_587_038_339));
        let keys = Keys::default();
        assert_eq!(keys.cvd.bits(), 1024);
        // Talos signed this MD5 with the key in libclamav: the scheme is implemented right.
        assert!(verify_md5_signature(&header.md5, &header.dsig, &keys.cvd));
        // One digit off in the MD5, or in the signature, and it no longer verifies.
        assert!(!verify_md5_signature(
            "92baacd59fd26e6bcf03077add78d208",
            &header.dsig,
            &keys.cvd
        ));
        let tampered = header.dsig.replacen('4', "5", 1);
        assert!(!verify_md5_signature(&header.md5, &tampered, &keys.cvd));
        assert!(!verify_md5_signature(&header.md5, "not base64!", &keys.cvd));
        // The test key does not verify Talos's signature either.
        let test = PrivateKey::test_key();
        assert!(!verify_md5_signature(
            &header.md5,
            &header.dsig,
            &test.public
        ));
    }

    #[test]
    fn bad_headers_are_refused_naming_the_field() {
        let e = |line: &str| parse_header(&padded(line)).unwrap_err().to_string();
        assert_eq!(
            parse_header(b"ClamAV-VDB:x").unwrap_err(),
            CvdErrorKind::TooShort(12)
        );
        expect_test::expect![[r#"
            the header does not start with "ClamAV-VDB:" (not a ClamAV database container)
            the header has no MD5 field
            the header's version "x1" is not a decimal number
            the header has no builder field
            the header's build time in seconds "12a" is not a decimal number
            the header has no functionality level field"#]]
        .assert_eq(
            &[
                e("ClamAV-VDX:1:2:3:4:5:6:7:8"),
                e("ClamAV-VDB:t:1:2:90"),
                e("ClamAV-VDB:t:x1:2:90:m:d:b:1"),
                e("ClamAV-VDB:t:1:2:90:m:d::1"),
                e("ClamAV-VDB:t:1:2:90:m:d:b:12a"),
                e("ClamAV-VDB:t:1:2::m:d:b"),
            ]
            .join("\n"),
        );
        // Old containers have no stime; NUL ends the header as it ends a C string.
        let mut old = padded("ClamAV-VDB:t:1:2:90:m:d:b");
        old[30] = 0;
        assert_eq!(parse_header(&old).unwrap().stime, None);
    }

    fn hdb() -> &'static [u8] {
        b"44d88612fea8a8f36de82e1278abb02f:68:Eicar.Test.Hdb\n"
    }

    fn load(kind: ContainerKind, bytes: &[u8], keys: &Keys) -> Result<Vec<String>, String> {
        let name = match kind {
            ContainerKind::Cvd => "test.cvd",
            ContainerKind::Cld => "test.cld",
        };
        let mut got = Vec::new();
        read_container(name, bytes, keys, &mut |n, d| {
            got.push(format!("{n}:{}", d.len()))
        })
        .map(|_| got)
        .map_err(|e| e.to_string())
    }

    #[test]
    fn container_signed_with_a_test_key_loads_and_tampering_is_refused() {
        let key = PrivateKey::test_key();
        let keys = key.keys();
        let members: [(&str, &[u8]); 2] = [("test.hdb", hdb()), ("test.ndb", b"A:0:*:41424344\n")];
        for kind in [ContainerKind::Cvd, ContainerKind::Cld] {
            let good = container(kind, "test", &members, &Spec::new(7, 2), &key);
            assert_eq!(
                load(kind, &good, &keys).unwrap(),
                ["test.hdb:51", "test.ndb:15"]
            );
            // ClamAV's own keys refuse a container signed by anyone else: the .cvd at its
            // header, the .cld at its .info.
            let refused = load(kind, &good, &Keys::default()).unwrap_err();
            match kind {
                ContainerKind::Cvd => assert!(
                    refused.contains("does not verify with the CVD key"),
                    "{refused}"
                ),
                ContainerKind::Cld => assert!(
                    refused.contains("does not verify with the .info key"),
                    "{refused}"
                ),
            }
        }
        let good = container(ContainerKind::Cvd, "test", &members, &Spec::new(7, 2), &key);
        // Header: a changed version no longer matches the signed .info's copy.
        let mut header = good.clone();
        header[..HEADER_LEN].copy_from_slice(&padded(
            &String::from_utf8_lossy(&good[..HEADER_LEN])
                .trim_end()
                .replacen(":7:", ":8:", 1),
        ));
        expect_test::expect!["test.cvd: the .info's copy of the header does not match the container's header (version differs)"]
            .assert_eq(&load(ContainerKind::Cvd, &header, &keys).unwrap_err());
        // Header: another MD5 (and a signature over it by someone else).
        let mut md5 = good.clone();
        let at = good[..HEADER_LEN]
            .windows(2)
            .position(|w| w == b":2")
            .unwrap()
            + 6;
        md5[at] = if md5[at] == b'0' { b'1' } else { b'0' };
        assert!(
            load(ContainerKind::Cvd, &md5, &keys)
                .unwrap_err()
                .contains("does not match the content's")
        );
        // Body: one byte of the gzip'd tar.
        let mut body = good.clone();
        *body.last_mut().unwrap() ^= 1;
        assert!(
            load(ContainerKind::Cvd, &body, &keys)
                .unwrap_err()
                .contains("test.cvd: the header's MD5")
        );
        // Signature: a valid header MD5 with a signature for another MD5.
        let header_text = String::from_utf8_lossy(&good[..HEADER_LEN])
            .trim_end()
            .to_owned();
        let parsed = parse_header_text(&header_text).unwrap();
        let other = build::sign_md5(&[7; 16], &key);
        let mut forged = padded(&header_text.replace(&parsed.dsig, &other));
        forged.extend_from_slice(&good[HEADER_LEN..]);
        expect_test::expect!["test.cvd: the digital signature does not verify with the CVD key (a container not signed by that key, or tampered with)"]
            .assert_eq(&load(ContainerKind::Cvd, &forged, &keys).unwrap_err());
        assert!(load(ContainerKind::Cvd, &good[..HEADER_LEN - 1], &keys).is_err());
    }

    #[test]
    fn cld_members_are_checked_against_the_signed_info() {
        let key = PrivateKey::test_key();
        let keys = key.keys();
        let spec = Spec::new(3, 1);
        let info = build::info(&spec, &[("x.hdb", hdb())], &key);
        let cld = |members: &[(&str, &[u8])]| {
            let mut head = padded(&format!(
                "ClamAV-VDB:{}:3:1:90:00000000000000000000000000000000:unchecked:b:{}",
                spec.build_time, spec.stime
            ));
            head.extend(build::tar(members));
            head
        };
        // A .cld's header MD5 and dsig are not checked (they describe the .cvd it came from).
        assert_eq!(
            load(
                ContainerKind::Cld,
                &cld(&[("x.info", &info), ("x.hdb", hdb())]),
                &keys
            )
            .unwrap(),
            ["x.hdb:51"]
        );
        type Members<'a> = &'a [(&'a str, &'a [u8])];
        let cases: [(Members<'_>, &str); 6] = [
            (
                &[
                    ("x.info", &info),
                    (
                        "x.hdb",
                        b"44d88612fea8a8f36de82e1278abb02f:68:Eicar.Test.Hdx\n",
                    ),
                ],
                "test.cld: x.hdb: its SHA-256 does not match the .info's",
            ),
            (
                &[("x.info", &info), ("x.hdb", b"short\n")],
                "test.cld: x.hdb: 6 bytes, the .info says 51",
            ),
            (
                &[
                    ("x.info", &info),
                    ("x.hdb", hdb()),
                    ("y.ndb", b"A:0:*:4142\n"),
                ],
                "test.cld: y.ndb: not listed in the .info",
            ),
            (
                &[("x.hdb", hdb())],
                "test.cld: the container has no .info member",
            ),
            (
                &[
                    (
                        "x.info",
                        b"ClamAV-VDB:t:3:1:90:X:X:b:1796536800\nx.hdb:51:00\n",
                    ),
                    ("x.hdb", hdb()),
                ],
                "test.cld: x.info:2: malformed SHA-256",
            ),
            (
                &[
                    ("x.info", b"ClamAV-VDB:t:3:1:90:X:X:b:1796536800\n"),
                    ("x.hdb", hdb()),
                ],
                "test.cld: x.info: no DSIG line (the .info is not signed)",
            ),
        ];
        for (members, error) in cases {
            assert_eq!(
                load(ContainerKind::Cld, &cld(members), &keys).unwrap_err(),
                error
            );
        }
        let dir = cld(&[("x.info", &info), ("d/x.hdb", hdb())]);
        assert!(
            load(ContainerKind::Cld, &dir, &keys)
                .unwrap_err()
                .contains("slash separators")
        );
    }

    #[test]
    fn signatures_round_trip_through_the_encoding() {
        let key = PrivateKey::test_key();
        let md5 = [0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
        let sig = build::sign_md5(&md5, &key);
        assert!(verify_md5_signature(
            "000102030405060708090a0b0c0d0e0f",
            &sig,
            &key.public
        ));
        let sha = [0xab; 32];
        let sig = build::sign_pss(&sha, &key);
        assert!(verify_pss_signature(&sha, &sig, &key.public));
        assert!(!verify_pss_signature(&[0xac; 32], &sig, &key.public));
        assert!(!verify_pss_signature(&sha, &sig[1..], &key.public));
        assert_eq!(ContainerKind::of("MAIN.CVD"), Some(ContainerKind::Cvd));
        assert!(
            is_database_name("daily.IGN2")
                && !is_database_name("COPYING")
                && !is_database_name("main.info")
        );
    }
}
