//! Golden tests of the generated scripts (SPEC §6), and real runs of the `archive` scripts
//! under `sh` with hostile names and paths.

use std::path::{Path, PathBuf};
use std::process::Command;

use herd_core::{PackageFormat, Sha256};
use herd_planner::script::{
    InstallSpec, UninstallSpec, install_script, sh_quote, uninstall_script,
};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn spec(format: PackageFormat) -> InstallSpec<'static> {
    InstallSpec {
        product: "vaccine-b",
        version: "7.0",
        pattern: "b-1112",
        format,
        sha256: Sha256([0xab; 32]),
        size: 2345,
        name: match format {
            PackageFormat::Deb | PackageFormat::Rpm => Some("vaccine-b"),
            PackageFormat::Apk => Some("com.maker_b.vaccine"),
            _ => None,
        },
        product_code: (format == PackageFormat::Msi)
            .then_some("{12345678-9ABC-DEF0-1234-56789ABCDEF0}"),
        post_install: (format == PackageFormat::Archive).then_some("bin/post-install"),
    }
}

fn uninstall_spec(format: PackageFormat) -> UninstallSpec<'static> {
    let install = spec(format);
    UninstallSpec {
        product: "vaccine-a",
        version: "5.1",
        format,
        name: install.name.map(|_| {
            if format == PackageFormat::Apk {
                "com.maker_a.vaccine"
            } else {
                "vaccine-a"
            }
        }),
        product_code: install.product_code,
        pre_uninstall: (format == PackageFormat::Archive).then_some("bin/pre-uninstall"),
    }
}

#[test]
fn scripts_match_their_golden_files() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut failures = Vec::new();
    for format in PackageFormat::ALL {
        let ext = if format == PackageFormat::Msi {
            "ps1"
        } else {
            "sh"
        };
        for (kind, text) in [
            ("install", install_script(&spec(format))),
            ("uninstall", uninstall_script(&uninstall_spec(format))),
        ] {
            let path = golden_dir().join(format!("{format}-{kind}.{ext}"));
            if update {
                std::fs::write(&path, &text).unwrap();
            } else if std::fs::read_to_string(&path).unwrap_or_default() != text {
                failures.push(format!("{} differs:\n{text}", path.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_sh_script_parses() {
    for format in PackageFormat::ALL
        .into_iter()
        .filter(|&f| f != PackageFormat::Msi)
    {
        for text in [
            install_script(&spec(format)),
            uninstall_script(&uninstall_spec(format)),
        ] {
            let status = Command::new("sh")
                .arg("-n")
                .arg("-c")
                .arg(&text)
                .status()
                .expect("sh runs");
            assert!(status.success(), "{format}: sh -n refused:\n{text}");
        }
    }
}

const HOSTILE: [&str; 6] = [
    "it's",
    "$(touch pwned)",
    "`touch pwned`",
    "a\"b",
    "semi;colon && rm -rf x",
    "new\nline",
];

#[test]
fn quoted_values_come_back_unchanged_through_sh() {
    for value in HOSTILE {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", sh_quote(value)))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), value);
    }
}

fn sha256_of(path: &Path) -> Sha256 {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum runs");
    let text = String::from_utf8(out.stdout).unwrap();
    Sha256::parse_hex(text.split_whitespace().next().unwrap()).unwrap()
}

fn run(script: &str, package: &Path, prefix: &Path, cwd: &Path) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("HERD_PACKAGE", package)
        .env("HERD_PREFIX", prefix)
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// Installs and uninstalls real archives with hostile product names and a hostile prefix
/// path: nothing is executed that should not be, and every file lands where it should.
#[test]
fn archive_scripts_install_and_uninstall_for_real() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let prefix = work.join("prefix with 'quotes' and $(touch pwned) spaces");
    std::fs::create_dir_all(&prefix).unwrap();
    let src = work.join("src");
    std::fs::create_dir_all(src.join("bin")).unwrap();
    std::fs::write(src.join("definitions.db"), "patterns").unwrap();
    std::fs::write(
        src.join("bin/post-install"),
        "#!/bin/sh\necho installed > post-install-ran\n",
    )
    .unwrap();
    std::fs::write(
        src.join("bin/pre-uninstall"),
        "#!/bin/sh\necho bye > \"$HERD_PREFIX/pre-uninstall-ran\"\n",
    )
    .unwrap();
    Command::new("chmod")
        .args(["+x", "bin/post-install", "bin/pre-uninstall"])
        .current_dir(&src)
        .status()
        .unwrap();
    let package = work.join("package.tar.gz");
    assert!(
        Command::new("tar")
            .arg("-czf")
            .arg(&package)
            .arg("-C")
            .arg(&src)
            .arg(".")
            .status()
            .unwrap()
            .success()
    );
    let (sha256, size) = (
        sha256_of(&package),
        std::fs::metadata(&package).unwrap().len(),
    );

    for (i, product) in ["vaccine-a", "it's $(touch pwned) `touch pwned`"]
        .into_iter()
        .enumerate()
    {
        let version = format!("{}.0", i + 1);
        let install = InstallSpec {
            product,
            version: &version,
            pattern: "p",
            format: PackageFormat::Archive,
            sha256,
            size,
            name: None,
            product_code: None,
            post_install: Some("bin/post-install"),
        };
        let out = run(&install_script(&install), &package, &prefix, work);
        assert!(
            out.status.success(),
            "install {product}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = prefix.join("products").join(product).join(&version);
        assert_eq!(
            std::fs::read_to_string(dir.join("definitions.db")).unwrap(),
            "patterns"
        );
        assert!(
            dir.join("post-install-ran").exists(),
            "the post-install hook ran inside the version directory"
        );
        assert_eq!(
            std::fs::read_link(prefix.join("current")).unwrap(),
            Path::new("products").join(product).join(&version)
        );
    }
    assert!(
        !work.join("pwned").exists() && !prefix.join("pwned").exists(),
        "nothing in a name was executed"
    );

    // The active product cannot be removed; the inactive one can, and its hook runs first.
    let hostile = "it's $(touch pwned) `touch pwned`";
    let active = UninstallSpec {
        product: hostile,
        version: "2.0",
        format: PackageFormat::Archive,
        name: None,
        product_code: None,
        pre_uninstall: Some("bin/pre-uninstall"),
    };
    let out = run(&uninstall_script(&active), &package, &prefix, work);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("active product")
    );
    let old = UninstallSpec {
        product: "vaccine-a",
        version: "1.0",
        ..active
    };
    let out = run(&uninstall_script(&old), &package, &prefix, work);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!prefix.join("products/vaccine-a").exists());
    assert!(prefix.join("pre-uninstall-ran").exists());
    assert!(!work.join("pwned").exists() && !prefix.join("pwned").exists());
}

#[test]
fn archive_install_refuses_a_wrong_digest_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let package = tmp.path().join("p.tar.gz");
    std::fs::write(&package, b"not what the catalog said").unwrap();
    let prefix = tmp.path().join("prefix");
    let mut install = spec(PackageFormat::Archive);
    install.size = std::fs::metadata(&package).unwrap().len();
    let out = run(&install_script(&install), &package, &prefix, tmp.path());
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has SHA-256"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!prefix.exists(), "nothing was unpacked");
    install.size += 1;
    let out = run(&install_script(&install), &package, &prefix, tmp.path());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bytes, expected"));
}
