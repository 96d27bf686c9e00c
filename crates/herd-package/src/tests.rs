//! Building real packages into temporary directories, unpacking them with the system `tar`
//! as the install script does, and verifying what was unpacked.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

/// A signature for "HERD-TEST-PATTERN-<x>" as an .ndb line.
fn ndb_line(name: &str, text: &str) -> String {
    let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{name}:0:*:{hex}\n")
}

struct Inputs {
    dir: tempfile::TempDir,
}

impl Inputs {
    fn new() -> Inputs {
        Inputs {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn file(&self, name: &str, content: &[u8], executable: bool) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        let mode = if executable { 0o755 } else { 0o644 };
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn spec(&self, detects_own_pattern: bool) -> PackageSpec {
        let defs = if detects_own_pattern {
            ndb_line("Herd.Test.VaccineB", "HERD-TEST-PATTERN-B")
        } else {
            ndb_line("Herd.Test.Other", "SOMETHING-ELSE-ENTIRELY")
        };
        PackageSpec {
            product: "vaccine-b".into(),
            vendor: "maker-b".into(),
            version: "7.0".into(),
            seq: 1112,
            pattern: "b-1112".into(),
            definitions: vec![self.file("src/b.ndb", defs.as_bytes(), false)],
            test_pattern: self.file("src/b-test.txt", b"xx HERD-TEST-PATTERN-B xx", false),
            post_install: Some(self.file(
                "src/post-install",
                b"#!/bin/sh\ntouch installed-ok\n",
                false,
            )),
            pre_uninstall: None,
            platforms: vec!["pc".into(), "phone".into()],
        }
    }
}

fn expected() -> Expected<'static> {
    Expected {
        product: "vaccine-b",
        version: "7.0",
        seq: 1112,
        pattern: "b-1112",
    }
}

fn unpack(package: &Path, dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(package)
        .arg("-C")
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_built_package_is_deterministic_unpacks_and_verifies() {
    let inputs = Inputs::new();
    let out = inputs.dir.path().join("b.tar.gz");
    let built = build(&inputs.spec(true), &out).unwrap();
    let again = build(&inputs.spec(true), &inputs.dir.path().join("b2.tar.gz")).unwrap();
    assert_eq!(built, again, "same inputs, same package");
    assert_eq!(fs::read(&out).unwrap().len() as u64, built.size);

    assert_eq!(
        built.manifest.definitions,
        ["defs/b.ndb"],
        "definitions go under defs/"
    );
    assert_eq!(
        built.manifest.post_install.as_deref(),
        Some("bin/post-install")
    );
    let entries: Vec<(&str, &str)> = built
        .catalog_packages
        .iter()
        .map(|p| (p.platform.as_str(), p.format.as_str()))
        .collect();
    assert_eq!(entries, [("pc", "archive"), ("phone", "archive")]);
    assert_eq!(built.catalog_packages[0].sha256, built.sha256);
    assert_eq!(
        built.catalog_packages[0].post_install.as_deref(),
        Some("bin/post-install")
    );

    let inspected = inspect_file(&out).unwrap();
    assert_eq!(inspected.manifest, built.manifest);

    let dir = inputs.dir.path().join("prefix/products/vaccine-b/7.0");
    unpack(&out, &dir);
    let hook = fs::metadata(dir.join("bin/post-install")).unwrap();
    assert_eq!(
        hook.permissions().mode() & 0o777,
        0o755,
        "hooks stay executable"
    );
    let outcome = verify_installed(&dir, &expected()).unwrap();
    assert_eq!(outcome.detected_as.as_deref(), Some("Herd.Test.VaccineB"));
    assert_eq!(outcome.signatures, 1);
}

#[test]
fn verification_fails_when_the_test_pattern_is_not_detected() {
    let inputs = Inputs::new();
    let out = inputs.dir.path().join("b.tar.gz");
    build(&inputs.spec(false), &out).unwrap();
    let dir = inputs.dir.path().join("unpacked");
    unpack(&out, &dir);
    let err = verify_installed(&dir, &expected()).unwrap_err();
    assert!(
        matches!(err, VerifyError::NotDetected { signatures: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("test/b-test.txt"), "{err}");
}

#[test]
fn verification_fails_on_another_release_or_broken_definitions() {
    let inputs = Inputs::new();
    let out = inputs.dir.path().join("b.tar.gz");
    build(&inputs.spec(true), &out).unwrap();
    let dir = inputs.dir.path().join("unpacked");
    unpack(&out, &dir);
    let err = verify_installed(
        &dir,
        &Expected {
            seq: 1113,
            ..expected()
        },
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: the installed package has seq \"1112\"; the plan expects \"1113\"",
            dir.display()
        )
    );
    fs::write(dir.join("defs/b.ndb"), "Broken:0:*:zz\n").unwrap();
    let err = verify_installed(&dir, &expected()).unwrap_err();
    assert!(
        err.to_string().starts_with("the definitions do not load:")
            && err.to_string().contains("b.ndb:1"),
        "{err}"
    );
    fs::remove_file(dir.join("herd-package.json")).unwrap();
    let err = verify_installed(&dir, &expected()).unwrap_err();
    assert!(
        matches!(err, VerifyError::ManifestUnreadable { .. }),
        "{err}"
    );
}

#[test]
fn installed_product_follows_the_current_link() {
    let inputs = Inputs::new();
    let out = inputs.dir.path().join("b.tar.gz");
    build(&inputs.spec(true), &out).unwrap();
    let prefix = inputs.dir.path().join("prefix");
    fs::create_dir_all(&prefix).unwrap();
    assert_eq!(installed_product(&prefix).unwrap(), None);
    unpack(&out, &prefix.join("products/vaccine-b/7.0"));
    std::os::unix::fs::symlink("products/vaccine-b/7.0", prefix.join("current")).unwrap();
    let installed = installed_product(&prefix).unwrap().unwrap();
    assert_eq!(
        (
            installed.product.as_str(),
            installed.version.as_str(),
            installed.seq
        ),
        ("vaccine-b", "7.0", 1112)
    );
    assert_eq!(installed.pattern, "b-1112");
    assert_eq!(installed.format, "archive");
    fs::remove_dir_all(prefix.join("products")).unwrap();
    assert!(
        installed_product(&prefix).is_err(),
        "a dangling link is an error"
    );
}

#[test]
fn zstd_packages_are_inspected_through_the_zstd_program() {
    let inputs = Inputs::new();
    let out = inputs.dir.path().join("b.tar.gz");
    build(&inputs.spec(true), &out).unwrap();
    let tar = inputs.dir.path().join("b.tar");
    let gunzip = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gzip -dc < '{}' > '{}' && zstd -q '{}'",
            out.display(),
            tar.display(),
            tar.display()
        ))
        .status()
        .unwrap();
    assert!(gunzip.success());
    let zst = inputs.dir.path().join("b.tar.zst");
    assert_eq!(read_manifest(&zst).unwrap().product, "vaccine-b");
    assert_eq!(read_manifest(&tar).unwrap().product, "vaccine-b");
    fs::write(&zst, b"\x28\xb5\x2f\xfdgarbage").unwrap();
    let err = read_manifest(&zst).unwrap_err();
    assert!(matches!(err, InspectError::Zstd { .. }), "{err}");
}

#[test]
fn build_refuses_bad_inputs_with_clear_errors() {
    let inputs = Inputs::new();
    let mut spec = inputs.spec(true);
    spec.version = "7.0/../../x".into();
    let err = build(&spec, &inputs.dir.path().join("x.tar.gz")).unwrap_err();
    assert!(err.to_string().contains("$.version"), "{err}");

    let mut spec = inputs.spec(true);
    spec.definitions
        .push(inputs.file("other/b.ndb", b"", false));
    let err = build(&spec, &inputs.dir.path().join("x.tar.gz")).unwrap_err();
    assert!(err.to_string().contains("\"defs/b.ndb\""), "{err}");

    let mut spec = inputs.spec(true);
    spec.definitions = vec![inputs.file("src/b.cvd", b"", false)];
    let err = build(&spec, &inputs.dir.path().join("x.tar.gz")).unwrap_err();
    assert!(
        err.to_string()
            .contains(".hdb, .hsb, .ndb, .ldb, .cdb, .fp, .sfp or .ign2"),
        "{err}"
    );

    let mut spec = inputs.spec(true);
    spec.platforms.clear();
    let err = build(&spec, &inputs.dir.path().join("x.tar.gz")).unwrap_err();
    assert!(err.to_string().contains("platform"), "{err}");
    assert!(!inputs.dir.path().join("x.tar.gz").exists());
}

#[test]
fn a_spec_directory_builds_with_its_own_manifest() {
    let inputs = Inputs::new();
    let spec_dir = inputs.dir.path().join("spec");
    let built = build(&inputs.spec(true), &inputs.dir.path().join("b.tar.gz")).unwrap();
    let manifest = &built.manifest;
    inputs.file("spec/herd-package.json", &manifest.to_json(), false);
    inputs.file(
        "spec/defs/b.ndb",
        ndb_line("Herd.Test.VaccineB", "HERD-TEST-PATTERN-B").as_bytes(),
        false,
    );
    inputs.file("spec/test/b-test.txt", b"xx HERD-TEST-PATTERN-B xx", false);
    inputs.file(
        "spec/bin/post-install",
        b"#!/bin/sh\ntouch installed-ok\n",
        true,
    );
    let from_dir = build_dir(
        &spec_dir,
        &["pc".into(), "phone".into()],
        &inputs.dir.path().join("c.tar.gz"),
        Detection::Required,
    )
    .unwrap();
    assert_eq!(from_dir.sha256, built.sha256, "the same package either way");

    std::os::unix::fs::symlink("/etc/passwd", spec_dir.join("passwd")).unwrap();
    let err = build_dir(
        &spec_dir,
        &["pc".into()],
        &inputs.dir.path().join("d.tar.gz"),
        Detection::Required,
    )
    .unwrap_err();
    assert!(err.to_string().contains("only regular files"), "{err}");
}

#[test]
fn a_required_detection_refuses_a_package_that_would_not_verify_and_writes_nothing() {
    let inputs = Inputs::new();
    let out = inputs.dir.path().join("b.tar.gz");
    let err = build_with(&inputs.spec(false), &out, Detection::Required).unwrap_err();
    assert!(matches!(err, BuildError::Detection(_)), "{err}");
    assert!(
        err.to_string()
            .contains("src/b-test.txt: the test pattern is not detected"),
        "the error names the source file: {err}"
    );
    assert_eq!(
        fs::read_dir(inputs.dir.path()).unwrap().count(),
        1,
        "only src/"
    );

    let mut spec = inputs.spec(true);
    spec.definitions = vec![inputs.file("src/broken.ndb", b"Broken:0:*:zz\n", false)];
    let err = build_with(&spec, &out, Detection::Required).unwrap_err();
    assert!(err.to_string().contains("src/broken.ndb:1"), "{err}");
    assert!(!out.exists());

    build_with(&inputs.spec(true), &out, Detection::Required).unwrap();
    let names: Vec<_> = fs::read_dir(inputs.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "no temporary file is left beside the package: {names:?}"
    );
}

#[test]
fn a_spec_directory_refuses_a_huge_or_linked_manifest_and_an_output_inside_itself() {
    let inputs = Inputs::new();
    let spec_dir = inputs.dir.path().join("spec");
    let manifest = inputs.file("spec/herd-package.json", &vec![b' '; (1 << 20) + 1], false);
    let out = inputs.dir.path().join("x.tar.gz");
    let err = build_dir(&spec_dir, &["pc".into()], &out, Detection::Required).unwrap_err();
    assert!(
        err.to_string()
            .contains("herd-package.json: the manifest is 1048577 bytes"),
        "{err}"
    );

    fs::remove_file(&manifest).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &manifest).unwrap();
    let err = build_dir(&spec_dir, &["pc".into()], &out, Detection::Required).unwrap_err();
    assert!(err.to_string().contains("must be a regular file"), "{err}");
    assert!(!out.exists());

    let built = build(&inputs.spec(true), &inputs.dir.path().join("b.tar.gz")).unwrap();
    fs::remove_file(&manifest).unwrap();
    inputs.file("spec/herd-package.json", &built.manifest.to_json(), false);
    let err = build_dir(
        &spec_dir,
        &["pc".into()],
        &spec_dir.join("b.tar.gz"),
        Detection::Required,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("inside the package directory"),
        "{err}"
    );
}

/// Every file under `dir`, by relative path, with its content and mode.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>, u32)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(at) = pending.pop() {
        for entry in fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let content = if meta.is_dir() {
                pending.push(path.clone());
                Vec::new()
            } else {
                fs::read(&path).unwrap()
            };
            let relative = path.strip_prefix(dir).unwrap().to_owned();
            out.push((relative, content, meta.permissions().mode() & 0o7777));
        }
    }
    out.sort();
    out
}

#[test]
fn the_content_of_a_package_is_its_tar_and_unpacks_as_the_package_does() {
    let inputs = Inputs::new();
    let package = inputs.dir.path().join("b.tar.gz");
    build(&inputs.spec(true), &package).unwrap();
    let content = content_of(fs::File::open(&package).unwrap(), 1 << 20).unwrap();
    let gunzipped = Command::new("gzip")
        .arg("-dc")
        .arg(&package)
        .output()
        .unwrap();
    assert!(gunzipped.status.success());
    assert_eq!(
        content, gunzipped.stdout,
        "the content is the gzip stream's tar"
    );
    // A plain tar is its own content.
    assert_eq!(content_of(&content[..], 1 << 20).unwrap(), content);

    let products = inputs.dir.path().join("products");
    fs::create_dir(&products).unwrap();
    let parent = herd_fs::Dir::open(&products).unwrap();
    let from_package = unpack_file(&package, &parent, "from-package").unwrap();
    let staging = parent
        .create_dir(std::ffi::OsStr::new("from-content"), 0o700)
        .unwrap();
    let from_content = unpack_tar("the content", &content[..], &staging).unwrap();
    assert_eq!(from_content, from_package);
    assert_eq!(from_content, inspect_file(&package).unwrap());
    let (a, b) = (
        tree(&products.join("from-package")),
        tree(&products.join("from-content")),
    );
    assert!(a.len() >= 5, "{a:?}");
    assert_eq!(a, b, "the same files, contents and modes");
}

#[test]
fn the_content_of_a_package_is_bounded_and_refuses_what_it_cannot_read() {
    let inputs = Inputs::new();
    let package = inputs.dir.path().join("b.tar.gz");
    build(&inputs.spec(true), &package).unwrap();
    let gz = fs::read(&package).unwrap();
    let len = content_of(&gz[..], u64::MAX).unwrap().len() as u64;
    assert_eq!(content_of(&gz[..], len).unwrap().len() as u64, len);
    let err = content_of(&gz[..], len - 1).unwrap_err();
    assert!(matches!(err, ContentError::TooLarge { max } if max == len - 1));
    assert_eq!(
        err.to_string(),
        format!(
            "the package's content (its uncompressed tar) is over the limit of {} bytes",
            len - 1
        )
    );
    // A gzip stream cut short, and one whose data is damaged.
    let err = content_of(&gz[..gz.len() / 2], u64::MAX).unwrap_err();
    assert!(matches!(err, ContentError::Read(_)), "{err}");
    assert!(
        err.to_string()
            .starts_with("cannot decompress the package: ")
    );
    let mut damaged = gz.clone();
    damaged[gz.len() / 2] ^= 0xff;
    assert!(matches!(
        content_of(&damaged[..], u64::MAX),
        Err(ContentError::Read(_))
    ));
    let zstd = [0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0];
    assert!(matches!(
        content_of(&zstd[..], u64::MAX),
        Err(ContentError::Zstd)
    ));
}

/// A program package directory: company A's middleware, whose health check is itself run with
/// `--health`.
fn program_dir(inputs: &Inputs, executable: bool) -> PathBuf {
    inputs.file(
        "middleware/bin/middleware",
        b"#!/bin/sh\necho ready\n",
        executable,
    );
    inputs.file(
        "middleware/herd-package.json",
        br#"{"format": "herd.package/v1", "kind": "program", "product": "middleware-a",
            "vendor": "maker-a", "version": "2.0", "seq": 20, "pattern": "middleware-a 2.0",
            "health_check": {"command": ["bin/middleware", "--health"], "timeout_ms": 2000,
                             "exit_status": 0, "output_contains": "ready"},
            "post_install": null, "pre_uninstall": null}"#,
        false,
    );
    inputs.dir.path().join("middleware")
}

#[test]
fn a_program_package_builds_unpacks_and_verifies_without_definitions() {
    let inputs = Inputs::new();
    let dir = program_dir(&inputs, true);
    let out = inputs.dir.path().join("middleware-a-2.0.tar.gz");
    let built = build_dir(&dir, &["pc".into()], &out, Detection::Required).unwrap();
    assert_eq!(built.manifest.kind(), herd_core::ProductKind::Program);
    let unpacked = inputs.dir.path().join("unpacked");
    fs::create_dir(&unpacked).unwrap();
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&out)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(status.success());
    let outcome = verify_installed(
        &unpacked,
        &Expected {
            product: "middleware-a",
            version: "2.0",
            seq: 20,
            pattern: "middleware-a 2.0",
        },
    )
    .unwrap();
    // The health check is the agent's to run; the package proves only what it is.
    assert_eq!(outcome.detected_as, None);
    assert_eq!(outcome.signatures, 0);
}

#[test]
fn a_health_check_program_that_is_not_executable_is_refused_at_build() {
    let inputs = Inputs::new();
    let dir = program_dir(&inputs, false);
    let out = inputs.dir.path().join("middleware-a-2.0.tar.gz");
    let err = build_dir(&dir, &["pc".into()], &out, Detection::Required).unwrap_err();
    assert!(
        err.to_string()
            .contains("the hook \"bin/middleware\" is not executable"),
        "{err}"
    );
    assert!(!out.exists());
}
