//! Attacks on unpacking, each attempted for real against `unpack_file` / `unpack_tar` in a
//! temporary directory and shown refused with nothing left behind: hostile owners and modes,
//! tar constructs two readers read differently, forged headers, data hidden after the end of
//! the archive; and a fuzz of byte mutations that must never panic nor write outside the
//! staging directory.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use herd_fs::Dir;
use proptest::prelude::*;

use crate::archive::FIXED_MTIME;
use crate::archive::tests::manifest;
use crate::manifest::MANIFEST_FILE;
use crate::{UnpackError, unpack_file, unpack_tar};

/// One raw tar member with every header field chosen by the test (GNU header, as the builder
/// writes), bypassing every check a builder would make.
struct Member<'a> {
    path: &'a [u8],
    kind: u8,
    mode: u32,
    uid: u64,
    data: &'a [u8],
}

impl Member<'_> {
    fn file<'a>(path: &'a str, mode: u32, data: &'a [u8]) -> Member<'a> {
        Member {
            path: path.as_bytes(),
            kind: b'0',
            mode,
            uid: 0,
            data,
        }
    }

    fn header(&self) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_size(self.data.len() as u64);
        header.set_mode(self.mode);
        header.set_mtime(FIXED_MTIME);
        header.set_uid(self.uid);
        header.set_gid(0);
        header.as_old_mut().name[..self.path.len()].copy_from_slice(self.path);
        header.as_mut_bytes()[156] = self.kind;
        header.set_cksum();
        header
    }

    fn bytes_with(&self, header: tar::Header) -> Vec<u8> {
        let mut out = header.as_bytes().to_vec();
        out.extend_from_slice(self.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    fn bytes(&self) -> Vec<u8> {
        self.bytes_with(self.header())
    }
}

const HOOK: &[u8] = b"#!/bin/sh\nexit 0\n";

/// The members of a good package, with `replace` standing in for the member of the same path.
fn package_with(extra_before_hook: &[Vec<u8>], hook: Option<Member<'_>>) -> Vec<u8> {
    let manifest = manifest().to_json();
    let mut tar = Vec::new();
    tar.extend(Member::file(MANIFEST_FILE, 0o644, &manifest).bytes());
    tar.extend(Member::file("defs/a.ndb", 0o644, b"A:0:*:41414141\n").bytes());
    tar.extend(Member::file("test/a.txt", 0o644, b"AAAA").bytes());
    for raw in extra_before_hook {
        tar.extend_from_slice(raw);
    }
    tar.extend(
        hook.unwrap_or(Member::file("bin/post-install", 0o755, HOOK))
            .bytes(),
    );
    tar.extend([0u8; 1024]);
    tar
}

/// Unpacks `tar` into `<tmp>/staging`; the error text, and whether anything is left.
fn try_unpack(tar: &[u8]) -> (Result<(), String>, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let package = tmp.path().join("package.tar");
    fs::write(&package, tar).unwrap();
    let products = tmp.path().join("products");
    fs::create_dir(&products).unwrap();
    let parent = Dir::open(&products).unwrap();
    let result = unpack_file(&package, &parent, "staging")
        .map(|_| ())
        .map_err(|e| e.to_string());
    (result, tmp)
}

fn assert_refused(tar: &[u8], why: &str) {
    let (result, tmp) = try_unpack(tar);
    let err = result.expect_err("the package must be refused");
    assert!(err.contains(why), "expected {why:?} in: {err}");
    assert!(
        !tmp.path().join("products/staging").exists(),
        "a refused package leaves nothing behind"
    );
}

#[test]
fn a_good_raw_package_unpacks() {
    let (result, tmp) = try_unpack(&package_with(&[], None));
    result.unwrap();
    let hook = tmp.path().join("products/staging/bin/post-install");
    assert_eq!(fs::read(&hook).unwrap(), HOOK);
}

#[test]
fn a_package_member_with_a_foreign_owner_is_refused() {
    let hook = Member {
        uid: 1000,
        ..Member::file("bin/post-install", 0o755, HOOK)
    };
    assert_refused(&package_with(&[], Some(hook)), "foreign owner (uid 1000");
}

#[test]
fn a_package_member_with_a_foreign_owner_name_is_refused() {
    let member = Member::file("bin/post-install", 0o755, HOOK);
    let mut header = member.header();
    header.set_username("mallory").unwrap();
    header.set_cksum();
    let raw = member.bytes_with(header);
    let mut tar = package_with(&[], None);
    let cut = tar.len() - 1024 - raw.len();
    tar.splice(cut..cut + raw.len(), raw);
    assert_refused(&tar, "foreign owner name \"mallory\"");
}

#[test]
fn a_group_writable_hook_is_refused() {
    let hook = Member::file("bin/post-install", 0o775, HOOK);
    assert_refused(&package_with(&[], Some(hook)), "group- or world-writable");
    let hook = Member::file("bin/post-install", 0o757, HOOK);
    assert_refused(&package_with(&[], Some(hook)), "group- or world-writable");
}

#[test]
fn a_world_writable_product_directory_is_refused() {
    let dir = Member {
        path: b"defs/extra/",
        kind: b'5',
        mode: 0o777,
        uid: 0,
        data: b"",
    };
    assert_refused(
        &package_with(&[dir.bytes()], None),
        "group- or world-writable",
    );
}

#[test]
fn a_pax_header_that_renames_a_member_is_refused() {
    // For GNU tar and the `tar` crate this renames the hook to `bin/evil`; a reader that
    // ignores PAX headers would see `bin/post-install`. Either way, refused.
    let record = b"22 path=bin/evil-hook\n";
    assert_eq!(record.len(), 22);
    let pax = Member {
        path: b"././@PaxHeader",
        kind: b'x',
        mode: 0o644,
        uid: 0,
        data: record,
    };
    assert_refused(
        &package_with(&[pax.bytes()], None),
        "PAX extended header sets \"path\"",
    );
    for record in [
        &b"14 size=99999\n"[..],
        b"12 uid=1000\n",
        b"28 GNU.sparse.name=bin/evil\n",
    ] {
        let pax = Member {
            path: b"././@PaxHeader",
            kind: b'x',
            mode: 0o644,
            uid: 0,
            data: record,
        };
        assert_refused(
            &package_with(&[pax.bytes()], None),
            "PAX extended header sets",
        );
    }
    // A global header too.
    let global = Member {
        path: b"pax_global_header",
        kind: b'g',
        mode: 0o644,
        uid: 0,
        data: b"13 path=evil\n",
    };
    assert_refused(&package_with(&[global.bytes()], None), "sets \"path\"");
}

#[test]
fn a_gnu_long_name_that_renames_a_member_is_refused() {
    for kind in [b'L', b'K'] {
        let long = Member {
            path: b"././@LongLink",
            kind,
            mode: 0o644,
            uid: 0,
            data: b"bin/evil-hook\0",
        };
        assert_refused(&package_with(&[long.bytes()], None), "GNU long-name");
    }
}

#[test]
fn a_forged_header_checksum_is_refused() {
    let member = Member::file("bin/post-install", 0o755, HOOK);
    let mut header = member.header();
    // Made world-writable after the checksum was computed.
    header.as_mut_bytes()[100..108].copy_from_slice(b"0000777\0");
    let mut tar = package_with(&[], None);
    let raw = member.bytes_with(header);
    let cut = tar.len() - 1024 - raw.len();
    tar.splice(cut..cut + raw.len(), raw);
    assert_refused(&tar, "header checksum mismatch");
}

#[test]
fn an_unknown_tar_magic_is_refused() {
    let member = Member::file("bin/post-install", 0o755, HOOK);
    let mut header = member.header();
    header.as_mut_bytes()[257..265].copy_from_slice(b"\0\0\0\0\0\0\0\0");
    header.set_cksum();
    let mut tar = package_with(&[], None);
    let raw = member.bytes_with(header);
    let cut = tar.len() - 1024 - raw.len();
    tar.splice(cut..cut + raw.len(), raw);
    assert_refused(&tar, "unknown tar header magic");
}

#[test]
fn a_member_hidden_after_the_end_of_archive_is_refused() {
    let mut tar = package_with(&[], None);
    tar.extend(Member::file("bin/hidden", 0o755, b"#!/bin/sh\nid\n").bytes());
    tar.extend([0u8; 1024]);
    assert_refused(&tar, "data after the end-of-archive block");
}

#[test]
fn a_regular_file_named_like_a_directory_is_refused() {
    let odd = Member::file("defs/odd/", 0o644, b"");
    assert_refused(&package_with(&[odd.bytes()], None), "ends in '/'");
}

#[test]
fn links_devices_and_escapes_stay_refused() {
    let cases: [(&[u8], u8, &str); 4] = [
        (b"bin/link", b'2', "symbolic link"),
        (b"bin/hard", b'1', "hard link"),
        (b"bin/fifo", b'6', "FIFO"),
        (b"../evil", b'0', "'..' parts"),
    ];
    for (path, kind, why) in cases {
        let member = Member {
            path,
            kind,
            mode: 0o644,
            uid: 0,
            data: b"",
        };
        assert_refused(&package_with(&[member.bytes()], None), why);
    }
    let setuid = Member::file("bin/post-install", 0o4755, HOOK);
    assert_refused(&package_with(&[], Some(setuid)), "setuid");
}

#[test]
fn unpacked_files_belong_to_the_agent_not_the_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let products = tmp.path().join("products");
    fs::create_dir(&products).unwrap();
    // A set-group-ID parent owned by another group would hand that group every new file;
    // the archive asks for modes 0500 and 0400. Neither applies.
    let other_gid = 65534;
    std::os::unix::fs::chown(&products, None, Some(other_gid)).unwrap();
    fs::set_permissions(&products, fs::Permissions::from_mode(0o2775)).unwrap();
    let hook = Member::file("bin/post-install", 0o500, HOOK);
    let mut tar = package_with(&[], Some(hook));
    // The definitions member, read-only in the archive.
    let defs = Member::file("defs/a.ndb", 0o400, b"A:0:*:41414141\n").bytes();
    let at = (0..tar.len())
        .step_by(512)
        .find(|&at| tar[at..].starts_with(b"defs/a.ndb\0"))
        .unwrap();
    tar.splice(at..at + defs.len(), defs);
    let package = tmp.path().join("package.tar");
    fs::write(&package, &tar).unwrap();
    let parent = Dir::open(&products).unwrap();
    unpack_file(&package, &parent, "staging").unwrap();
    let (uid, gid) = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    assert_ne!(gid, other_gid, "the test needs a group the agent is not in");
    let staging = products.join("staging");
    for (path, mode) in [
        ("", 0o755),
        ("bin", 0o755),
        ("bin/post-install", 0o755),
        ("defs/a.ndb", 0o644),
        (MANIFEST_FILE, 0o644),
    ] {
        let meta = fs::symlink_metadata(staging.join(path)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (uid, gid), "{path}");
        assert_eq!(meta.mode() & 0o7777, mode, "{path}");
    }
}

#[test]
fn a_staging_directory_planted_as_a_symlink_is_replaced_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let products = tmp.path().join("products");
    let elsewhere = tmp.path().join("elsewhere");
    fs::create_dir(&products).unwrap();
    fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, products.join("staging")).unwrap();
    let package = tmp.path().join("package.tar");
    fs::write(&package, package_with(&[], None)).unwrap();
    unpack_file(&package, &Dir::open(&products).unwrap(), "staging").unwrap();
    assert!(fs::read_dir(&elsewhere).unwrap().next().is_none());
    assert!(
        fs::symlink_metadata(products.join("staging"))
            .unwrap()
            .is_dir()
    );
}

/// Everything under `root`: no symlinks, nothing writable by others, no privilege bits.
fn assert_tame(root: &Path) {
    for entry in fs::read_dir(root).unwrap() {
        let entry = entry.unwrap();
        let meta = fs::symlink_metadata(entry.path()).unwrap();
        assert!(meta.is_file() || meta.is_dir(), "{:?}", entry.path());
        assert_eq!(meta.mode() & 0o7022, 0, "{:?}", entry.path());
        if meta.is_dir() {
            assert_tame(&entry.path());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Arbitrary byte mutations of a valid package never panic the reader and never write
    /// outside the staging directory; whatever is unpacked is tame.
    #[test]
    fn mutated_packages_never_panic_nor_write_outside_the_staging_directory(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let mut tar = package_with(&[], None);
        for (at, byte) in &edits {
            let i = at.index(tar.len());
            tar[i] = *byte;
            // Keep a good share of headers valid, so mutations reach past the checksum.
            let block = i / 512 * 512;
            if byte % 2 == 0 && tar[block + 257..block + 262] == *b"ustar" {
                let mut header = [0u8; 512];
                header.copy_from_slice(&tar[block..block + 512]);
                let mut h = tar::Header::from_byte_slice(&header).clone();
                h.set_cksum();
                tar[block..block + 512].copy_from_slice(h.as_bytes());
            }
        }
        if let Some(cut) = cut {
            tar.truncate(cut.index(tar.len()));
        }
        let tmp = tempfile::tempdir().unwrap();
        let products = tmp.path().join("products");
        fs::create_dir(&products).unwrap();
        let parent = Dir::open(&products).unwrap();
        let staging = parent.create_dir(OsStr::new("staging"), 0o700).unwrap();
        let result = unpack_tar("fuzzed", &tar[..], &staging);
        if let Err(UnpackError::Staging(e)) = &result {
            prop_assert!(false, "the staging directory itself failed: {e}");
        }
        let outside: Vec<_> = fs::read_dir(&products).unwrap().map(|e| e.unwrap().file_name()).collect();
        prop_assert_eq!(outside, vec![std::ffi::OsString::from("staging")]);
        let top: Vec<_> = fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        prop_assert_eq!(top, vec![std::ffi::OsString::from("products")]);
        assert_tame(&products);
    }
}
