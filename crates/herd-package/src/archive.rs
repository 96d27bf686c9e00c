//! The archive itself: writing a package as a deterministic tar.gz, and reading one back with
//! every member checked before anything is unpacked.
//!
//! Writing is pure (members in, bytes out): entries sorted with the manifest first, fixed
//! mtime, uid and gid 0, no user or group names, modes 0644 for files, 0755 for directories
//! and executables, and a gzip header without a time or name, so the same inputs always give
//! the same bytes (and so the same SHA-256 in the catalog).
//!
//! Reading ([`read_package`], over `ustar.rs`, the one tar reader) is the single pass both
//! inspection and unpacking (`unpack.rs`) make, and refuses what could make an unpack write
//! outside the version directory, plant privileges or leave something a local user can change:
//! anything but regular files and directories (links, devices, FIFOs), absolute paths and
//! `..`, a path given twice (a later member would silently replace what was checked), owners
//! other than uid and gid 0, setuid, setgid and sticky bits, group- or world-writable modes,
//! and every tar construct two readers could read differently (see `ustar.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};

use flate2::Compression;
use herd_proto::ValidationError;

use crate::manifest::{MANIFEST_FILE, Manifest, check_package_path};
use crate::ustar::{self, RawHeader, TarError};

/// The mtime of every member: 2000-01-01T00:00:00Z (GNU tar warns about 0 as implausible).
pub const FIXED_MTIME: u64 = 946_684_800;

/// More members than this is not a vaccine package.
pub const MAX_MEMBERS: usize = 100_000;

/// A manifest larger than this is refused unread.
pub const MAX_MANIFEST_SIZE: u64 = 1 << 20;

/// How a package's tar stream is compressed, from its first bytes (as the install script
/// decides it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Gzip,
    Zstd,
    PlainTar,
}

/// Recognises gzip (`1f 8b`) and zstd (`28 b5 2f fd`) by their magic numbers.
pub fn detect_compression(first_bytes: &[u8]) -> Codec {
    if first_bytes.starts_with(&[0x1f, 0x8b]) {
        Codec::Gzip
    } else if first_bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Codec::Zstd
    } else {
        Codec::PlainTar
    }
}

/// One file to put in a package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    pub data: Vec<u8>,
    /// Written with mode 0755 instead of 0644.
    pub executable: bool,
}

/// Writes the manifest and `files` (keyed by package path) as a deterministic tar.gz.
/// Parent directories get their own entries so `tar -x` creates them with mode 0755.
pub fn encode(manifest: &Manifest, files: &BTreeMap<String, FileEntry>) -> io::Result<Vec<u8>> {
    let mut dirs = BTreeSet::new();
    for path in files.keys() {
        let mut end = 0;
        while let Some(slash) = path[end..].find('/') {
            end += slash + 1;
            dirs.insert(&path[..end]);
        }
    }
    let gzip = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::best());
    let mut tar = tar::Builder::new(gzip);
    let manifest_json = manifest.to_json();
    append(&mut tar, MANIFEST_FILE, &manifest_json, 0o644)?;
    // Directories and files interleaved in path order, so each directory precedes its files.
    let mut members: Vec<(&str, Option<&FileEntry>)> = dirs.iter().map(|d| (*d, None)).collect();
    members.extend(
        files
            .iter()
            .map(|(path, entry)| (path.as_str(), Some(entry))),
    );
    members.sort_by(|a, b| a.0.cmp(b.0));
    for (path, entry) in members {
        match entry {
            None => {
                let mut header = header(tar::EntryType::Directory, 0, 0o755);
                tar.append_data(&mut header, path, io::empty())?;
            }
            Some(entry) => {
                let mode = if entry.executable { 0o755 } else { 0o644 };
                append(&mut tar, path, &entry.data, mode)?;
            }
        }
    }
    tar.into_inner()?.finish()
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(FIXED_MTIME);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    data: &[u8],
    mode: u32,
) -> io::Result<()> {
    let mut header = header(tar::EntryType::Regular, data.len() as u64, mode);
    tar.append_data(&mut header, path, data)
}

/// What a member of a package is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberKind {
    File { size: u64, executable: bool },
    Dir,
}

/// A package read back: its manifest and what it would unpack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    pub manifest: Manifest,
    /// Every member by normalised path (no leading `./`, no trailing `/`).
    pub members: BTreeMap<String, MemberKind>,
    /// Bytes the regular files take once unpacked.
    pub unpacked_size: u64,
}

/// Why a package was refused.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{document}: cannot read the package: {source}")]
    Read {
        document: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "{document}: the package is zstd-compressed; inspecting it needs the `zstd` program: {why}"
    )]
    Zstd { document: String, why: String },
    #[error("{document}: member {member:?}: {why}")]
    Member {
        document: String,
        member: String,
        why: String,
    },
    #[error("{document}: {why}")]
    Package { document: String, why: String },
    #[error(transparent)]
    Manifest(#[from] ValidationError),
}

/// Reads a package (gzip-compressed or plain tar; see `crate::inspect_file` for zstd) and
/// checks every member and the manifest. `document` names the package in errors.
pub fn inspect(document: &str, reader: impl Read) -> Result<Inspection, InspectError> {
    let mut reader = io::BufReader::new(reader);
    let first = io::BufRead::fill_buf(&mut reader).map_err(|source| InspectError::Read {
        document: document.to_owned(),
        source,
    })?;
    match detect_compression(first) {
        Codec::Gzip => inspect_tar(document, flate2::read::GzDecoder::new(reader)),
        Codec::PlainTar => inspect_tar(document, reader),
        Codec::Zstd => Err(InspectError::Zstd {
            document: document.to_owned(),
            why: "this reader takes gzip or plain tar only".to_owned(),
        }),
    }
}

/// Why a package's content (its uncompressed tar) could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("cannot decompress the package: {0}")]
    Read(#[source] io::Error),
    #[error("the package's content (its uncompressed tar) is over the limit of {max} bytes")]
    TooLarge { max: u64 },
    #[error(
        "the package is zstd-compressed; its content is read through the `zstd` program, not here"
    )]
    Zstd,
}

/// The content of a package (gzip-compressed or plain tar): its uncompressed tar stream, the
/// bytes definition deltas are made between and applied to (a gzip stream diverges after the
/// first change, its content does not). Refuses more than `max` bytes of it, so endless data
/// stops there; the buffer never grows past twice the bytes read. Checks nothing inside: that
/// is [`inspect_tar`]'s and `unpack_tar`'s work on the same bytes.
pub fn content_of(package: impl Read, max: u64) -> Result<Vec<u8>, ContentError> {
    let mut reader = io::BufReader::new(package);
    let first = io::BufRead::fill_buf(&mut reader).map_err(ContentError::Read)?;
    let mut content = Vec::new();
    // One byte over the limit tells "exactly max" from "more".
    let limit = max.saturating_add(1);
    let read = match detect_compression(first) {
        Codec::Gzip => flate2::read::GzDecoder::new(reader)
            .take(limit)
            .read_to_end(&mut content),
        Codec::PlainTar => reader.take(limit).read_to_end(&mut content),
        Codec::Zstd => return Err(ContentError::Zstd),
    };
    read.map_err(ContentError::Read)?;
    if content.len() as u64 > max {
        return Err(ContentError::TooLarge { max });
    }
    Ok(content)
}

/// Reads an uncompressed tar stream of a package.
pub fn inspect_tar(document: &str, reader: impl Read) -> Result<Inspection, InspectError> {
    read_package(document, reader, &mut |_, _, _| Ok(()))
}

/// What [`read_package`] hands each checked member to: its normalised path, its kind, and a
/// reader of its data (the manifest's bytes for the manifest). An `Err` names why the member
/// could not be written and stops the read.
pub type MemberSink<'a> = dyn FnMut(&str, &MemberKind, &mut dyn Read) -> Result<(), String> + 'a;

/// The one pass over a package's tar stream that both inspection and unpacking make: every
/// member is checked (by `ustar.rs` for the tar format, here for what a package may hold)
/// before `sink` sees it, and the manifest and the member list are checked at the end. An
/// unpacker must discard what it wrote if this returns an error.
pub fn read_package(
    document: &str,
    reader: impl Read,
    sink: &mut MemberSink<'_>,
) -> Result<Inspection, InspectError> {
    let member_error = |member: &str, why: String| InspectError::Member {
        document: document.to_owned(),
        member: member.to_owned(),
        why,
    };
    let mut members = BTreeMap::new();
    let mut manifest_bytes = None;
    let mut unpacked_size: u64 = 0;
    let mut on_member = |header: &RawHeader, data: &mut dyn Read| -> Result<(), TarError> {
        let raw = &header.path;
        let refuse = |why: String| TarError::Member {
            member: raw.clone(),
            why,
        };
        let path = normalise(raw);
        if path.is_empty() {
            // `./` itself: the version directory.
            if header.kind == b'5' && header.size == 0 {
                return Ok(());
            }
            return Err(refuse("a file cannot be the package root".into()));
        }
        check_package_path(path).map_err(refuse)?;
        if members.len() >= MAX_MEMBERS {
            return Err(TarError::Archive(format!(
                "more than {MAX_MEMBERS} members"
            )));
        }
        let mode = header.mode;
        let kind = match header.kind {
            b'0' | 0 | b'7' if raw.ends_with('/') => {
                return Err(refuse(
                    "a regular file whose name ends in '/' (older tar readers make it a \
                     directory)"
                        .into(),
                ));
            }
            b'0' | 0 | b'7' => MemberKind::File {
                size: header.size,
                executable: mode & 0o111 != 0,
            },
            b'5' if header.size != 0 => {
                return Err(refuse(format!(
                    "a directory with {} bytes of data",
                    header.size
                )));
            }
            b'5' => MemberKind::Dir,
            other => {
                return Err(refuse(format!(
                    "{} members are not allowed in a package (only regular files and directories)",
                    type_name(other)
                )));
            }
        };
        if header.uid != 0 || header.gid != 0 {
            return Err(refuse(format!(
                "foreign owner (uid {}, gid {}): the package builder writes 0, and an unpacked \
                 file belongs to the agent, never to a user the archive names",
                header.uid, header.gid
            )));
        }
        for name in [&header.user_name, &header.group_name] {
            if !name.is_empty() && name != "root" {
                return Err(refuse(format!(
                    "foreign owner name {name:?}: the package builder writes none"
                )));
            }
        }
        if mode & 0o7000 != 0 {
            return Err(refuse(format!(
                "mode {mode:o} has setuid, setgid or sticky bits"
            )));
        }
        if mode & 0o022 != 0 {
            return Err(refuse(format!(
                "mode {mode:o} is group- or world-writable: a local user could change what \
                 the agent later runs or loads"
            )));
        }
        if !header.link_name.is_empty() {
            return Err(refuse(format!(
                "a link name ({:?}) on a member that is not a link",
                header.link_name
            )));
        }
        if members.contains_key(path) {
            return Err(refuse(
                "appears twice; a later member would replace the first".into(),
            ));
        }
        if let MemberKind::File { size, .. } = kind {
            unpacked_size = unpacked_size.saturating_add(size);
        }
        if path == MANIFEST_FILE && matches!(kind, MemberKind::File { .. }) {
            if header.size > MAX_MANIFEST_SIZE {
                return Err(refuse(format!(
                    "the manifest is larger than {MAX_MANIFEST_SIZE} bytes"
                )));
            }
            let mut bytes = Vec::with_capacity(header.size as usize);
            data.read_to_end(&mut bytes)?;
            sink(path, &kind, &mut &bytes[..]).map_err(refuse)?;
            manifest_bytes = Some(bytes);
        } else {
            sink(path, &kind, data).map_err(refuse)?;
        }
        members.insert(path.to_owned(), kind);
        Ok(())
    };
    ustar::read_members(reader, &mut on_member).map_err(|e| match e {
        TarError::Read(source) => InspectError::Read {
            document: document.to_owned(),
            source,
        },
        TarError::Member { member, why } => member_error(&member, why),
        TarError::Archive(why) => InspectError::Package {
            document: document.to_owned(),
            why,
        },
    })?;
    let Some(manifest_bytes) = manifest_bytes else {
        return Err(InspectError::Package {
            document: document.to_owned(),
            why: format!("no {MANIFEST_FILE} at the archive root; this is not a Herd package"),
        });
    };
    let manifest = Manifest::parse(&format!("{document}:{MANIFEST_FILE}"), &manifest_bytes)?;
    check_members(document, &manifest, &members)?;
    // A file under a path another member makes a file would fail to unpack.
    for path in members.keys() {
        let mut end = 0;
        while let Some(slash) = path[end..].find('/') {
            let parent = &path[..end + slash];
            if let Some(MemberKind::File { .. }) = members.get(parent) {
                return Err(member_error(
                    path,
                    format!("its parent {parent:?} is a file in the package"),
                ));
            }
            end += slash + 1;
        }
    }
    Ok(Inspection {
        manifest,
        members,
        unpacked_size,
    })
}

/// Every file the manifest names is a regular file of the package; hooks are executable.
pub fn check_members(
    document: &str,
    manifest: &Manifest,
    members: &BTreeMap<String, MemberKind>,
) -> Result<(), InspectError> {
    for (field, path) in manifest.files() {
        match members.get(path) {
            Some(MemberKind::File { .. }) => {}
            Some(MemberKind::Dir) => {
                return Err(InspectError::Package {
                    document: document.to_owned(),
                    why: format!("{MANIFEST_FILE} {field} names {path:?}, a directory"),
                });
            }
            None => {
                return Err(InspectError::Package {
                    document: document.to_owned(),
                    why: format!(
                        "{MANIFEST_FILE} {field} names {path:?}, which is not in the package"
                    ),
                });
            }
        }
    }
    for hook in manifest.hooks() {
        if let Some(MemberKind::File {
            executable: false, ..
        }) = members.get(hook)
        {
            return Err(InspectError::Package {
                document: document.to_owned(),
                why: format!(
                    "the hook {hook:?} is not executable (mode without x bits); hooks and the \
                     health check's program are run by the agent"
                ),
            });
        }
    }
    if let Some(program) = manifest.run_program()
        && let Some(MemberKind::File {
            executable: false, ..
        }) = members.get(program)
    {
        return Err(InspectError::Package {
            document: document.to_owned(),
            why: format!(
                "the program {program:?} that $.run starts is not executable (mode without x bits)"
            ),
        });
    }
    Ok(())
}

/// `./a/b/` → `a/b`; `./` → ``.
fn normalise(raw: &str) -> &str {
    let mut path = raw;
    while let Some(rest) = path.strip_prefix("./") {
        path = rest;
    }
    if path == "." {
        return "";
    }
    path.strip_suffix('/').unwrap_or(path)
}

fn type_name(kind: u8) -> &'static str {
    match kind {
        b'2' => "symbolic link",
        b'1' => "hard link",
        b'3' => "character device",
        b'4' => "block device",
        b'6' => "FIFO",
        _ => "special",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::manifest::{ENGINE, PACKAGE_FORMAT};

    /// Vaccine a's manifest, the package the tests build and attack.
    pub(crate) fn manifest() -> Manifest {
        Manifest {
            format: PACKAGE_FORMAT.to_owned(),
            product: "vaccine-a".to_owned(),
            vendor: "maker-a".to_owned(),
            version: "5.1".to_owned(),
            seq: 1101,
            pattern: "a-1101".to_owned(),
            kind: None,
            engine: Some(ENGINE.to_owned()),
            definitions: vec!["defs/a.ndb".to_owned()],
            test_pattern: Some("test/a.txt".to_owned()),
            health_check: None,
            post_install: Some("bin/post-install".to_owned()),
            pre_uninstall: None,
            hooks_run_as: None,
            run: None,
        }
    }

    fn files() -> BTreeMap<String, FileEntry> {
        let mut files = BTreeMap::new();
        let file = |data: &[u8], executable| FileEntry {
            data: data.to_vec(),
            executable,
        };
        files.insert("defs/a.ndb".to_owned(), file(b"A:0:*:41414141\n", false));
        files.insert("test/a.txt".to_owned(), file(b"AAAA", false));
        files.insert(
            "bin/post-install".to_owned(),
            file(b"#!/bin/sh\nexit 0\n", true),
        );
        files
    }

    /// A raw tar member, bypassing the builder's own path checks.
    fn raw_member(path: &[u8], kind: tar::EntryType, mode: u32, data: &[u8]) -> Vec<u8> {
        let mut header = header(kind, data.len() as u64, mode);
        header.as_old_mut().name[..path.len()].copy_from_slice(path);
        if kind == tar::EntryType::Symlink {
            header.set_link_name("/etc").unwrap();
        }
        header.set_cksum();
        let mut out = header.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    fn good_members() -> Vec<u8> {
        let mut tar = Vec::new();
        tar.extend(raw_member(
            MANIFEST_FILE.as_bytes(),
            tar::EntryType::Regular,
            0o644,
            &manifest().to_json(),
        ));
        for (path, entry) in files() {
            let mode = if entry.executable { 0o755 } else { 0o644 };
            tar.extend(raw_member(
                path.as_bytes(),
                tar::EntryType::Regular,
                mode,
                &entry.data,
            ));
        }
        tar
    }

    fn finish(mut tar: Vec<u8>) -> Vec<u8> {
        tar.extend([0u8; 1024]);
        tar
    }

    #[test]
    fn encoding_is_deterministic_and_reads_back() {
        let a = encode(&manifest(), &files()).unwrap();
        let b = encode(&manifest(), &files()).unwrap();
        assert_eq!(a, b);
        assert_eq!(detect_compression(&a), Codec::Gzip);
        let inspection = inspect("pkg", &a[..]).unwrap();
        assert_eq!(inspection.manifest, manifest());
        let names: Vec<&str> = inspection.members.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/post-install",
                "defs",
                "defs/a.ndb",
                "herd-package.json",
                "test",
                "test/a.txt"
            ]
        );
        assert_eq!(
            inspection.members["bin/post-install"],
            MemberKind::File {
                size: 17,
                executable: true
            }
        );
        assert_eq!(
            inspection.unpacked_size,
            manifest().to_json().len() as u64 + 15 + 4 + 17
        );
    }

    #[test]
    fn plain_tar_is_read_too() {
        let inspection = inspect("pkg", &finish(good_members())[..]).unwrap();
        assert_eq!(inspection.manifest.product, "vaccine-a");
    }

    #[test]
    fn hostile_members_are_refused() {
        let cases: [(&[u8], tar::EntryType, u32, &str); 5] = [
            (b"../evil", tar::EntryType::Regular, 0o644, "'..' parts"),
            (b"/etc/evil", tar::EntryType::Regular, 0o644, "relative"),
            (b"link", tar::EntryType::Symlink, 0o777, "symbolic link"),
            (b"suid", tar::EntryType::Regular, 0o4755, "setuid"),
            (b"fifo", tar::EntryType::Fifo, 0o644, "FIFO"),
        ];
        for (path, kind, mode, why) in cases {
            let mut tar = good_members();
            tar.extend(raw_member(path, kind, mode, b""));
            let err = inspect("pkg", &finish(tar)[..]).unwrap_err().to_string();
            assert!(
                err.contains(why),
                "{}: {err}",
                String::from_utf8_lossy(path)
            );
        }
    }

    #[test]
    fn a_member_given_twice_is_refused() {
        let mut tar = good_members();
        tar.extend(raw_member(
            b"./defs/a.ndb",
            tar::EntryType::Regular,
            0o644,
            b"x",
        ));
        let err = inspect("pkg", &finish(tar)[..]).unwrap_err().to_string();
        assert!(err.contains("appears twice"), "{err}");
    }

    #[test]
    fn missing_files_and_non_executable_hooks_are_refused() {
        let mut files = files();
        files.remove("test/a.txt");
        let err = inspect("pkg", &encode(&manifest(), &files).unwrap()[..])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("$.test_pattern names \"test/a.txt\", which is not in the package"),
            "{err}"
        );

        let mut files = self::files();
        files.get_mut("bin/post-install").unwrap().executable = false;
        let err = inspect("pkg", &encode(&manifest(), &files).unwrap()[..])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not executable"), "{err}");
    }

    #[test]
    fn no_manifest_is_not_a_package() {
        let tar = finish(raw_member(b"x", tar::EntryType::Regular, 0o644, b"x"));
        let err = inspect("pkg", &tar[..]).unwrap_err().to_string();
        assert!(err.contains("not a Herd package"), "{err}");
        let err = inspect("pkg", &b"not a tar at all"[..])
            .unwrap_err()
            .to_string();
        assert!(err.contains("pkg:"), "{err}");
    }
}
