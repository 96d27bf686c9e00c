//! Archive evasion: each test builds an archive the way a malware author would to hide a member
//! from the walker, checks with a real unpacker on this machine (python's zipfile, unzip, GNU
//! tar, gzip) that the member really is extracted, and then that the scan finds it — or, where
//! nothing can be read, that the verdict is undecidable and never clean.
//!
//! The hidden payload is EICAR compressed (gzip or deflate), so it cannot be seen in the
//! container's own bytes: only a walker that finds the member finds it.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::Command;

use herd_scan::archive::build::{gzip, tar, zip};
use herd_scan::archive::{HEADER_MISMATCH_NAME, OVERLAPPING_FILES_NAME};
use herd_scan::{EICAR, Limits, Verdict};

use super::{eicar_engine, eicar_padded, scan_with};

/// The verdict of a scan with default limits, stopping at the first detection as on-access
/// scanning does.
fn verdict(data: &[u8]) -> Verdict {
    scan_with(&eicar_engine(), Limits::default(), false, data).verdict()
}

/// The detection names with their paths, every match.
fn detections(data: &[u8]) -> Vec<String> {
    scan_with(&eicar_engine(), Limits::default(), true, data)
        .detections
        .iter()
        .map(|d| format!("{}@{}", d.name, d.path))
        .collect()
}

fn is_infected(verdict: &Verdict) -> bool {
    matches!(verdict, Verdict::Infected(_))
}

/// Whether bytes carry EICAR as they are or once gunzipped.
fn carries_eicar(bytes: &[u8]) -> bool {
    let contains = |b: &[u8]| b.windows(EICAR.len()).any(|w| w == EICAR);
    if contains(bytes) {
        return true;
    }
    let mut out = Vec::new();
    let _ = flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut out);
    contains(&out)
}

fn tool_present(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Unpacks `archive` with a real tool (`{}` in `args` is the archive's path), in an empty
/// directory, and says whether any extracted file carries EICAR. `None` when the tool is not
/// installed here: the scan assertions still run, only the cross-check is skipped.
fn unpacker_extracts_eicar(tool: &str, args: &[&str], archive: &[u8]) -> Option<bool> {
    if !tool_present(tool) {
        eprintln!("{tool} not installed: cross-check skipped");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("archive.bin");
    std::fs::write(&path, archive).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("{}", path.to_str().unwrap()))
        .collect();
    // Unpackers exit non-zero on the warnings these archives provoke; what counts is what
    // they wrote.
    let status = Command::new(tool)
        .args(&args)
        .current_dir(&out)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    eprintln!("{tool}: {}", String::from_utf8_lossy(&status.stderr));
    if std::env::var_os("HERD_KEEP_EVASION").is_some() {
        std::fs::copy(&path, format!("/tmp/evasion-{tool}.bin")).unwrap();
    }
    Some(any_file_carries_eicar(&out))
}

fn any_file_carries_eicar(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().any(|e| {
        let path = e.unwrap().path();
        if path.is_dir() {
            any_file_carries_eicar(&path)
        } else {
            carries_eicar(&std::fs::read(&path).unwrap_or_default())
        }
    })
}

fn python_zipfile_extracts_eicar(archive: &[u8]) -> Option<bool> {
    unpacker_extracts_eicar("python3", &["-m", "zipfile", "-e", "{}", "."], archive)
}

fn assert_extracted(cross_check: Option<bool>) {
    assert_ne!(
        cross_check,
        Some(false),
        "the unpacker did not extract the member: the evasion this test claims is not real"
    );
}

/// EICAR gzipped: invisible in a container's bytes.
fn hidden_payload() -> Vec<u8> {
    gzip(&eicar_padded())
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}

fn set_u16(data: &mut [u8], at: usize, v: u16) {
    data[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn a_zip_appended_to_an_executable_is_scanned() {
    // A self-extractor: a program, then a zip whose offsets count from the zip's own start.
    let mut sfx = b"\x7fELF\x02\x01\x01".to_vec();
    sfx.resize(5000, 0x90);
    sfx.extend_from_slice(&zip(&[("evil.com", &eicar_padded(), true)]));
    assert_extracted(unpacker_extracts_eicar("unzip", &["-o", "{}"], &sfx));
    assert_extracted(python_zipfile_extracts_eicar(&sfx));
    assert_eq!(detections(&sfx), ["Eicar-Test-Signature@evil.com"]);
}

#[test]
fn a_zip_appended_to_a_gzip_is_scanned() {
    // gzip -d ignores the trailing zip; unzip opens it.
    let mut data = gzip(b"an innocent text");
    data.extend_from_slice(&zip(&[("evil.com", &eicar_padded(), true)]));
    assert_extracted(unpacker_extracts_eicar("unzip", &["-o", "{}"], &data));
    assert_eq!(
        detections(&data),
        ["Eicar-Test-Signature@(gzip)//(after gzip)//evil.com"]
    );
}

#[test]
fn a_second_gzip_member_is_scanned() {
    let mut data = gzip(b"an innocent first member");
    data.extend_from_slice(&gzip(&eicar_padded()));
    assert_extracted(unpacker_extracts_eicar(
        "sh",
        &["-c", "gzip -dc < {} > out"],
        &data,
    ));
    assert_eq!(detections(&data), ["Eicar-Test-Signature@(gzip)"]);
}

#[test]
fn a_member_hidden_by_a_central_directory_that_disagrees_is_found() {
    // The end record counts one entry; the directory holds two. unzip trusts the count,
    // python's zipfile reads the directory to its size and extracts both.
    let mut z = zip(&[
        ("readme.txt", b"nothing here", false),
        ("evil.com", &eicar_padded(), true),
    ]);
    let eocd = z.len() - 22;
    set_u16(&mut z, eocd + 8, 1);
    set_u16(&mut z, eocd + 10, 1);
    assert_extracted(python_zipfile_extracts_eicar(&z));
    let found = detections(&z);
    assert!(
        found.contains(&"Eicar-Test-Signature@evil.com".to_owned()),
        "{found:?}"
    );
    assert!(
        found.contains(&format!("{HEADER_MISMATCH_NAME}@")),
        "{found:?}"
    );
}

#[test]
fn a_local_header_that_disagrees_with_the_central_directory_is_flagged() {
    // The directory says "stored", so a reader trusting it sees deflate noise; the local
    // header says "deflate", and unzip inflates EICAR from it.
    let mut z = zip(&[("evil.com", &eicar_padded(), true)]);
    let cd = find(&z, b"PK\x01\x02");
    set_u16(&mut z, cd + 10, 0);
    // Sizes made equal, so the directory's reading is a consistent stored member.
    let csize = u32::from_le_bytes(z[cd + 20..cd + 24].try_into().unwrap());
    z[cd + 24..cd + 28].copy_from_slice(&csize.to_le_bytes());
    assert_extracted(unpacker_extracts_eicar("unzip", &["-o", "{}"], &z));
    assert_eq!(detections(&z), [format!("{HEADER_MISMATCH_NAME}@evil.com")]);
}

#[test]
fn a_member_left_out_of_the_central_directory_is_scanned() {
    // Streaming readers (Java's ZipInputStream, bsdtar, many web upload filters) extract every
    // local header in sequence; the directory lists only the harmless member.
    let visible = zip(&[("readme.txt", b"nothing here", false)]);
    let hidden = zip(&[("evil.com", &eicar_padded(), true)]);
    let hidden_locals = &hidden[..find(&hidden, b"PK\x01\x02")];
    let cd = find(&visible, b"PK\x01\x02");
    let mut data = visible[..cd].to_vec();
    data.extend_from_slice(hidden_locals);
    let new_cd = data.len() as u32;
    data.extend_from_slice(&visible[cd..]);
    let eocd = data.len() - 22;
    data[eocd + 16..eocd + 20].copy_from_slice(&new_cd.to_le_bytes());
    assert_eq!(
        detections(&data),
        ["Eicar-Test-Signature@evil.com"],
        "no unpacker here reads local headers in sequence; the layout is the one they read"
    );
}

#[test]
fn members_sharing_their_data_are_flagged_as_overlapping() {
    let mut z = zip(&[("a", &[b'x'; 3000][..], true), ("b", b"y", false)]);
    // Point the second directory entry at the first member's local header.
    let first_cd = find(&z, b"PK\x01\x02");
    let second_cd = first_cd + 46 + 1;
    z.copy_within(first_cd + 42..first_cd + 46, second_cd + 42);
    z.copy_within(first_cd + 10..first_cd + 28, second_cd + 10);
    z[second_cd + 46] = b'a';
    assert!(detections(&z).contains(&format!("{OVERLAPPING_FILES_NAME}@")));
}

#[test]
fn an_encrypted_member_is_not_reported_clean() {
    if !tool_present("zip") {
        eprintln!("zip not installed; building an encrypted zip needs it");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("evil.com"), eicar_padded()).unwrap();
    let status = Command::new("zip")
        .args(["-q", "-P", "secret", "e.zip", "evil.com"])
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let z = std::fs::read(dir.path().join("e.zip")).unwrap();
    assert_extracted(unpacker_extracts_eicar(
        "unzip",
        &["-o", "-P", "secret", "{}"],
        &z,
    ));
    assert_eq!(
        verdict(&z),
        Verdict::Undecidable("evil.com: encrypted member not scanned".into())
    );
}

#[test]
fn an_unsupported_compression_method_is_not_reported_clean() {
    let mut z = zip(&[("evil.bz2", &eicar_padded(), true)]);
    let cd = find(&z, b"PK\x01\x02");
    set_u16(&mut z, 8, 12); // bzip2, in both headers
    set_u16(&mut z, cd + 10, 12);
    assert_eq!(
        verdict(&z),
        Verdict::Undecidable("evil.bz2: compression method 12 not supported".into())
    );
}

#[test]
fn a_truncated_member_is_scanned_as_far_as_it_goes() {
    // The tar member claims more bytes than the file has. A streaming reader writes what it
    // read before the end (GNU tar, which writes in 10 KiB records, writes nothing of a member
    // this short, so there is no unpacker to cross-check with here); the scan reads what is
    // there, and says that it could not read the rest.
    let mut t = tar("evil.gz", &hidden_payload());
    let declared = hidden_payload().len() + 4096;
    t[124..136].copy_from_slice(format!("{declared:011o}\0").as_bytes());
    t[148..156].copy_from_slice(b"        ");
    let sum: u32 = t[..512].iter().map(|&b| u32::from(b)).sum();
    t[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    t.truncate(512 + hidden_payload().len());
    assert!(is_infected(&verdict(&t)));
    // Without a payload the verdict is undecidable, not clean.
    let mut clean = tar("notes.txt", &[b'n'; 100]);
    clean[124..136].copy_from_slice(format!("{:011o}\0", 5000).as_bytes());
    clean[148..156].copy_from_slice(b"        ");
    let sum: u32 = clean[..512].iter().map(|&b| u32::from(b)).sum();
    clean[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    clean.truncate(1024);
    assert!(matches!(verdict(&clean), Verdict::Undecidable(_)));
}

/// A tar header with the given fields and a correct (unsigned) checksum.
fn tar_header(name: &[u8], size: usize, typeflag: u8, ustar: bool) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[..name.len()].copy_from_slice(name);
    h[100..108].copy_from_slice(b"0000644\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[156] = typeflag;
    if ustar {
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
    }
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

fn padded(data: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    d.resize(d.len().div_ceil(512) * 512, 0);
    d
}

fn tar_end() -> Vec<u8> {
    vec![0; 1024]
}

#[test]
fn a_member_behind_a_bad_tar_checksum_is_scanned() {
    let mut bad = tar_header(b"junk.txt", 5, b'0', true);
    bad[148] = b'7'; // a checksum that does not add up
    let t = [
        bad,
        padded(b"junk!"),
        tar_header(b"evil.gz", hidden_payload().len(), b'0', true),
        padded(&hidden_payload()),
        tar_end(),
    ]
    .concat();
    assert_extracted(unpacker_extracts_eicar("tar", &["-xf", "{}"], &t));
    assert!(is_infected(&verdict(&t)));
}

#[test]
fn a_pax_size_that_overrides_the_header_is_honoured() {
    // The ustar size says 0; the pax record says the real size, which GNU tar uses. A walker
    // reading the ustar size takes the payload for the next header.
    let payload = hidden_payload();
    let record = format!("size={}\n", payload.len());
    let record = format!("{} {record}", record.len() + 3);
    assert_eq!(
        record.split(' ').next().unwrap().parse::<usize>().unwrap(),
        record.len()
    );
    let t = [
        tar_header(b"PaxHeaders/evil.gz", record.len(), b'x', true),
        padded(record.as_bytes()),
        tar_header(b"evil.gz", 0, b'0', true),
        padded(&payload),
        tar_end(),
    ]
    .concat();
    assert_extracted(unpacker_extracts_eicar("tar", &["-xf", "{}"], &t));
    assert_eq!(detections(&t), ["Eicar-Test-Signature@evil.gz//(gzip)"]);
}

#[test]
fn a_v7_tar_without_the_ustar_magic_is_scanned() {
    let t = [
        tar_header(b"evil.gz", hidden_payload().len(), b'0', false),
        padded(&hidden_payload()),
        tar_end(),
    ]
    .concat();
    assert_extracted(unpacker_extracts_eicar("tar", &["-xf", "{}"], &t));
    assert_eq!(detections(&t), ["Eicar-Test-Signature@evil.gz//(gzip)"]);
}

#[test]
fn a_tar_member_of_an_unknown_type_is_scanned_as_a_file() {
    let t = [
        tar_header(b"evil.gz", hidden_payload().len(), b'Z', true),
        padded(&hidden_payload()),
        tar_end(),
    ]
    .concat();
    assert_extracted(unpacker_extracts_eicar("tar", &["-xf", "{}"], &t));
    assert_eq!(detections(&t), ["Eicar-Test-Signature@evil.gz//(gzip)"]);
}

#[test]
fn a_tar_member_after_the_end_marker_is_scanned() {
    let t = [
        tar_header(b"readme.txt", 5, b'0', true),
        padded(b"hello"),
        tar_end(),
        tar_header(b"evil.gz", hidden_payload().len(), b'0', true),
        padded(&hidden_payload()),
        tar_end(),
    ]
    .concat();
    assert_extracted(unpacker_extracts_eicar("tar", &["-xif", "{}"], &t));
    assert_eq!(detections(&t), ["Eicar-Test-Signature@evil.gz//(gzip)"]);
}

#[test]
fn a_directory_header_declaring_content_cannot_hide_the_next_header() {
    // GNU tar reads the block after a directory header as the next header, whatever the
    // directory's size says; a walker honouring the size would skip the hidden member.
    let t = [
        tar_header(b"dir/", 512, b'5', true),
        tar_header(b"evil.gz", hidden_payload().len(), b'0', true),
        padded(&hidden_payload()),
        tar_end(),
    ]
    .concat();
    assert_extracted(unpacker_extracts_eicar("tar", &["-xf", "{}"], &t));
    let found = detections(&t);
    assert!(
        found.contains(&"Eicar-Test-Signature@evil.gz//(gzip)".to_owned()),
        "{found:?}"
    );
    assert!(
        found.contains(&format!("{HEADER_MISMATCH_NAME}@dir/")),
        "{found:?}"
    );
}

#[test]
fn a_tar_whose_first_name_looks_like_a_zip_is_read_as_a_tar() {
    // A polyglot: the first member's name starts with the zip signature, so a walker that
    // picks one container type by the first bytes never reads the tar.
    let t = [
        tar_header(b"PK\x03\x04decoy", 0, b'0', true),
        tar_header(b"evil.gz", hidden_payload().len(), b'0', true),
        padded(&hidden_payload()),
        tar_end(),
    ]
    .concat();
    assert_extracted(unpacker_extracts_eicar("tar", &["-xf", "{}"], &t));
    assert!(is_infected(&verdict(&t)));
}

#[test]
fn a_tar_with_a_signed_checksum_is_read() {
    // Historic tars summed the header as signed bytes; GNU tar accepts either sum.
    let mut h = tar_header("évil.gz".as_bytes(), hidden_payload().len(), b'0', true);
    h[148..156].copy_from_slice(b"        ");
    let sum: i64 = h.iter().map(|&b| i64::from(b as i8)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let t = [h, padded(&hidden_payload()), tar_end()].concat();
    assert_extracted(unpacker_extracts_eicar("tar", &["-xf", "{}"], &t));
    assert!(is_infected(&verdict(&t)));
}

/// A one-member zip64 archive, as written for members or archives past 4 GiB: sizes and
/// offsets in zip64 extra fields, and a zip64 end record.
fn zip64(name: &str, data: &[u8]) -> Vec<u8> {
    let body = deflate(data);
    let mut crc = flate2::Crc::new();
    crc.update(data);
    let crc = crc.sum().to_le_bytes();
    let extra = |fields: &[u64]| {
        let mut e = Vec::new();
        e.extend_from_slice(&1u16.to_le_bytes());
        e.extend_from_slice(&((fields.len() * 8) as u16).to_le_bytes());
        for f in fields {
            e.extend_from_slice(&f.to_le_bytes());
        }
        e
    };
    let mut out = Vec::new();
    let local_extra = extra(&[data.len() as u64, body.len() as u64]);
    out.extend_from_slice(b"PK\x03\x04\x2d\0\0\0\x08\0\0\0\0\0");
    out.extend_from_slice(&crc);
    out.extend_from_slice(&[0xff; 8]);
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&(local_extra.len() as u16).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&local_extra);
    out.extend_from_slice(&body);
    let cd_offset = out.len() as u64;
    let central_extra = extra(&[data.len() as u64, body.len() as u64, 0]);
    out.extend_from_slice(b"PK\x01\x02\x2d\0\x2d\0\0\0\x08\0\0\0\0\0");
    out.extend_from_slice(&crc);
    out.extend_from_slice(&[0xff; 8]);
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central_extra.len() as u16).to_le_bytes());
    out.extend_from_slice(&[0; 10]); // comment length, disk, attributes
    out.extend_from_slice(&[0xff; 4]);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&central_extra);
    let cd_size = out.len() as u64 - cd_offset;
    let record = out.len() as u64;
    out.extend_from_slice(b"PK\x06\x06");
    out.extend_from_slice(&44u64.to_le_bytes());
    out.extend_from_slice(&[0x2d, 0, 0x2d, 0]);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&1u64.to_le_bytes());
    out.extend_from_slice(&1u64.to_le_bytes());
    out.extend_from_slice(&cd_size.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(b"PK\x06\x07\0\0\0\0");
    out.extend_from_slice(&record.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(b"PK\x05\x06\0\0\0\0\xff\xff\xff\xff");
    out.extend_from_slice(&[0xff; 8]);
    out.extend_from_slice(&[0, 0]);
    out
}

#[test]
fn a_zip64_archive_is_scanned() {
    let z = zip64("evil.com", &eicar_padded());
    assert_extracted(python_zipfile_extracts_eicar(&z));
    assert_eq!(detections(&z), ["Eicar-Test-Signature@evil.com"]);
}

#[test]
fn a_multi_disk_archive_is_not_reported_clean() {
    let mut z = zip(&[("part.txt", b"first part", false)]);
    let eocd = z.len() - 22;
    set_u16(&mut z, eocd + 4, 1); // this is disk 1
    assert_eq!(
        verdict(&z),
        Verdict::Undecidable("archive spans several disks; not scanned".into())
    );
}

#[test]
fn a_deflate_stream_cut_short_is_scanned_up_to_the_cut() {
    // unzip writes what it inflated before the damage; so the scan reads it too.
    let mut data = eicar_padded();
    data.extend((0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    let z = zip(&[("evil.com", &data, true)]);
    let cd = find(&z, b"PK\x01\x02");
    let mut cut = z[..cd - 2000].to_vec();
    cut.extend_from_slice(&z[cd..]);
    // Directory offset and the members' sizes stay as they were: the data is short.
    let eocd = cut.len() - 22;
    let new_cd = (cd - 2000) as u32;
    cut[eocd + 16..eocd + 20].copy_from_slice(&new_cd.to_le_bytes());
    assert!(is_infected(&verdict(&cut)), "{:?}", detections(&cut));
}

/// Containers each holding the compressed payload once, with the byte ranges of their headers
/// (what an author of an evasion edits): zip local header, central directory and end record;
/// the tar header; the gzip header and trailer.
pub fn containers_with_header_ranges() -> Vec<(&'static str, Vec<u8>, Vec<std::ops::Range<usize>>)>
{
    let z = zip(&[("evil.com", &eicar_padded(), true)]);
    let cd = find(&z, b"PK\x01\x02");
    let zip_ranges = vec![0..30 + "evil.com".len(), cd..z.len()];
    let t = tar("evil.gz", &hidden_payload());
    let g = gzip(&eicar_padded());
    // Not the magic: without it gzip refuses the file too.
    let gzip_ranges = vec![3..10, g.len() - 8..g.len()];
    vec![
        ("zip", z, zip_ranges),
        // Not the magic: a header with neither a valid checksum nor the magic is no header to
        // GNU tar either, which then extracts nothing from this one-member archive.
        ("tar", t, vec![0..257, 263..512]),
        ("gzip", g, gzip_ranges),
    ]
}

#[test]
fn no_single_header_byte_change_lets_a_hidden_member_pass_as_clean() {
    // Every byte of every header, set to each of a few values: the member is then found, or
    // the headers are flagged, or the verdict is undecidable — never clean.
    let engine = eicar_engine();
    for (kind, data, ranges) in containers_with_header_ranges() {
        for at in ranges.into_iter().flatten() {
            for value in [0x00, 0xff, data[at] ^ 0x01, data[at] ^ 0x80, b'5'] {
                let mut mutated = data.clone();
                mutated[at] = value;
                let verdict = scan_with(&engine, Limits::default(), false, &mutated).verdict();
                assert_ne!(
                    verdict,
                    Verdict::Clean,
                    "{kind}: byte {at} set to {value:#04x} hides the member"
                );
            }
        }
    }
}

#[test]
fn a_member_read_from_the_wrong_offset_is_not_reported_clean() {
    // Found by fuzzing (archive_mutations): a local header whose extra-field length is raised
    // shifts where the member's data seems to start; the shifted bytes may inflate without
    // error into something harmless. Its CRC-32 then differs from the archive's.
    let mut z = zip(&[("evil.com", &eicar_padded(), true)]);
    z[28] = 0x3f;
    assert!(
        matches!(verdict(&z), Verdict::Undecidable(_) | Verdict::Infected(_)),
        "{:?}",
        verdict(&z)
    );
}

#[test]
fn a_gzip_with_every_optional_header_field_is_scanned() {
    // FEXTRA, FNAME, FCOMMENT and FHCRC shift where the deflate data starts; a walker that
    // assumed the 10-byte minimal header would inflate noise.
    let mut encoder = flate2::GzBuilder::new()
        .filename("evil.com")
        .comment("nothing to see")
        .extra(vec![b'A', b'B', 4, 0, 1, 2, 3, 4])
        .operating_system(3)
        .write(Vec::new(), flate2::Compression::default());
    encoder.write_all(&eicar_padded()).unwrap();
    let mut data = encoder.finish().unwrap();
    // FHCRC: the flag, then the header's own CRC-16 after the fields, which gzip checks.
    let header_end = find(&data, b"nothing to see\0") + b"nothing to see\0".len();
    data[3] |= 0x02;
    let mut crc = flate2::Crc::new();
    crc.update(&data[..header_end]);
    let crc16_with_flag = (crc.sum() & 0xffff) as u16;
    data.splice(header_end..header_end, crc16_with_flag.to_le_bytes());
    assert_extracted(unpacker_extracts_eicar(
        "sh",
        &["-c", "gzip -dc < {} > out"],
        &data,
    ));
    assert_eq!(detections(&data), ["Eicar-Test-Signature@(gzip)"]);
}

#[test]
fn many_members_without_sizes_cost_linear_time() {
    // Local headers with a data descriptor and no sizes, none listed in a directory: each one's
    // end is found by looking for the next signature, which must not rescan the rest.
    let mut data = Vec::new();
    for _ in 0..40_000 {
        data.extend_from_slice(
            b"PK\x03\x04\x14\0\x08\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\0\0\0x",
        );
    }
    let started = std::time::Instant::now();
    let report = scan_with(&eicar_engine(), Limits::default(), true, &data);
    assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
    assert!(matches!(report.verdict(), Verdict::Undecidable(_)));
}

#[test]
fn a_member_left_out_of_a_self_extractors_directory_is_scanned() {
    // As above, behind an executable stub: the walk of local headers starts where the archive
    // starts, not at the first member the directory lists.
    let hidden = zip(&[("evil.com", &eicar_padded(), true)]);
    let hidden_locals = &hidden[..find(&hidden, b"PK\x01\x02")];
    let visible = zip(&[("readme.txt", b"nothing here", false)]);
    let cd = find(&visible, b"PK\x01\x02");
    let mut archive = hidden_locals.to_vec();
    archive.extend_from_slice(&visible[..cd]);
    let new_cd = archive.len() as u32;
    archive.extend_from_slice(&visible[cd..]);
    let eocd = archive.len() - 22;
    archive[eocd + 16..eocd + 20].copy_from_slice(&new_cd.to_le_bytes());
    // The directory's local offset counts from the archive's start.
    let listed_at = hidden_locals.len() as u32;
    archive[new_cd as usize + 42..new_cd as usize + 46].copy_from_slice(&listed_at.to_le_bytes());
    let mut sfx = b"\x7fELF\x02\x01\x01".to_vec();
    sfx.resize(3000, 0x90);
    sfx.extend_from_slice(&archive);
    // No unpacker on this machine reads local headers in sequence (see above).
    assert_eq!(detections(&sfx), ["Eicar-Test-Signature@evil.com"]);
}
