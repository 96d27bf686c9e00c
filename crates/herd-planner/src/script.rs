//! The script generator of SPEC §6: install and uninstall scripts per package format.
//!
//! Scripts are text, shown to operators before use and run by the agent with two variables set:
//! `HERD_PACKAGE`, the downloaded package file, and `HERD_PREFIX`, the agent's product prefix.
//! Every value from the catalog or a terminal is quoted for the script's language, even
//! values validation already restricts, so a hostile name or path can never become code.
//! Paths supplied at run time are only ever used inside double quotes.

use std::fmt::Write;

use herd_core::{PackageFormat, Sha256};
use herd_proto::layout::{CURRENT, CURRENT_NEW, PRODUCTS_DIR, STAGING_SUFFIX};

/// What an install script needs to know about the package it installs.
#[derive(Clone, Copy, Debug)]
pub struct InstallSpec<'a> {
    pub product: &'a str,
    pub version: &'a str,
    pub pattern: &'a str,
    pub format: PackageFormat,
    pub sha256: Sha256,
    pub size: u64,
    /// The package-manager name (`deb`, `rpm`, `apk`).
    pub name: Option<&'a str>,
    /// The MSI ProductCode.
    pub product_code: Option<&'a str>,
    /// `archive`: hook to run, relative to the unpacked directory, before it becomes active.
    pub post_install: Option<&'a str>,
}

/// What an uninstall script needs to know about the product it removes.
#[derive(Clone, Copy, Debug)]
pub struct UninstallSpec<'a> {
    pub product: &'a str,
    pub version: &'a str,
    pub format: PackageFormat,
    pub name: Option<&'a str>,
    pub product_code: Option<&'a str>,
    /// `archive`: hook to run, relative to the version directory, before it is removed.
    pub pre_uninstall: Option<&'a str>,
}

/// Quotes a value for POSIX `sh`: single quotes, with each `'` written as `'\''`.
pub fn sh_quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        if c == '\'' {
            quoted.push_str("'\\''");
        } else {
            quoted.push(c);
        }
    }
    quoted.push('\'');
    quoted
}

/// Quotes a value for PowerShell: single quotes, with every quote character PowerShell
/// accepts as one (including the typographic ones) doubled.
pub fn ps_quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}') {
            quoted.push(c);
        }
        quoted.push(c);
    }
    quoted.push('\'');
    quoted
}

/// Text safe inside a one-line comment: control characters (a newline would end the comment) become `?`.
fn comment_text(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

const SH_PRELUDE: &str = "set -eu\n";

/// The `sh` lines that check `$package` against `$sha256` and `$size` (set before).
const SH_VERIFY: &str = r#"package="${HERD_PACKAGE:?HERD_PACKAGE must name the downloaded package}"
actual_size=$(wc -c < "$package" | tr -d ' ')
if [ "$actual_size" != "$size" ]; then
    echo "herd: $package is $actual_size bytes, expected $size" >&2
    exit 1
fi
actual_sha256=$(sha256sum < "$package" | cut -d ' ' -f 1)
if [ "$actual_sha256" != "$sha256" ]; then
    echo "herd: $package has SHA-256 $actual_sha256, expected $sha256" >&2
    exit 1
fi
"#;

/// Generates the install script for one package.
pub fn install_script(spec: &InstallSpec<'_>) -> String {
    let mut s = String::with_capacity(2048);
    let header = comment_text(&format!(
        "Herd install script: {} package of {} {} ({}).",
        spec.format, spec.product, spec.version, spec.pattern
    ));
    if spec.format == PackageFormat::Msi {
        return msi_install(spec, &header);
    }
    let _ = writeln!(
        s,
        "#!/bin/sh\n# {header}\n# Run by herd-agent with HERD_PACKAGE set to the downloaded file."
    );
    if spec.format == PackageFormat::Archive {
        s.push_str("# HERD_PREFIX is the agent's product prefix.\n");
    }
    s.push_str(SH_PRELUDE);
    let _ = writeln!(s, "sha256={}", sh_quote(&spec.sha256.to_string()));
    let _ = writeln!(s, "size={}", spec.size);
    match spec.format {
        PackageFormat::Archive => {
            let _ = writeln!(s, "product={}", sh_quote(spec.product));
            let _ = writeln!(s, "version={}", sh_quote(spec.version));
            let _ = writeln!(
                s,
                "post_install={}",
                sh_quote(spec.post_install.unwrap_or(""))
            );
            s.push_str(SH_VERIFY);
            push_archive_install(&mut s);
        }
        PackageFormat::Deb => {
            s.push_str(SH_VERIFY);
            s.push_str("dpkg --install \"$package\"\n");
        }
        PackageFormat::Rpm => {
            s.push_str(SH_VERIFY);
            s.push_str("rpm --upgrade \"$package\"\n");
        }
        PackageFormat::Apk => {
            s.push_str(SH_VERIFY);
            s.push_str("pm install -r \"$package\"\n");
        }
        PackageFormat::Msi => unreachable!("handled above"),
    }
    s
}

/// Unpacks into a staging directory, moves it into place, runs the hook, and only then
/// switches the `current` link, with a rename, so that a failure at any point leaves the
/// previously active product active. The prefix's names come from `herd_proto::layout`,
/// which the agent's rollback uses too.
fn push_archive_install(s: &mut String) {
    let _ = write!(
        s,
        r#"prefix="${{HERD_PREFIX:?HERD_PREFIX must name the product prefix}}"
dir="$prefix/{PRODUCTS_DIR}/$product/$version"
staging="$dir{STAGING_SUFFIX}"
rm -rf -- "$staging"
mkdir -p -- "$staging"
case $(od -An -tx1 -N4 < "$package" | tr -d ' \n') in
    1f8b*) gzip -dc < "$package" | tar -xf - -C "$staging" ;;
    28b52ffd) zstd -dcq < "$package" | tar -xf - -C "$staging" ;;
    *) tar -xf - -C "$staging" < "$package" ;;
esac
if [ "$(readlink "$prefix/{CURRENT}" 2>/dev/null || true)" = "{PRODUCTS_DIR}/$product/$version" ]; then
    echo "herd: $product $version is the active product; refusing to replace it in place" >&2
    rm -rf -- "$staging"
    exit 1
fi
rm -rf -- "$dir"
mv -- "$staging" "$dir"
if [ -n "$post_install" ]; then
    (cd "$dir" && "./$post_install")
fi
rm -f -- "$prefix/{CURRENT_NEW}"
ln -s "{PRODUCTS_DIR}/$product/$version" "$prefix/{CURRENT_NEW}"
mv -f -T -- "$prefix/{CURRENT_NEW}" "$prefix/{CURRENT}"
"#
    );
}

fn msi_install(spec: &InstallSpec<'_>, header: &str) -> String {
    let mut s = String::with_capacity(1024);
    let _ = writeln!(
        s,
        "# {header}\n# PowerShell; run by herd-agent with HERD_PACKAGE set to the downloaded file."
    );
    s.push_str("$ErrorActionPreference = 'Stop'\n");
    let _ = writeln!(s, "$sha256 = {}", ps_quote(&spec.sha256.to_string()));
    let _ = writeln!(s, "$size = {}", spec.size);
    s.push_str(
        r#"$package = $env:HERD_PACKAGE
if (-not $package) { throw 'herd: HERD_PACKAGE must name the downloaded package' }
$actualSize = (Get-Item -LiteralPath $package).Length
if ($actualSize -ne $size) { throw "herd: $package is $actualSize bytes, expected $size" }
$actualSha256 = (Get-FileHash -Algorithm SHA256 -LiteralPath $package).Hash.ToLowerInvariant()
if ($actualSha256 -ne $sha256) { throw "herd: $package has SHA-256 $actualSha256, expected $sha256" }
$process = Start-Process -FilePath 'msiexec.exe' -ArgumentList @('/i', ('"{0}"' -f $package), '/qn', '/norestart') -Wait -PassThru
if ($process.ExitCode -notin 0, 3010) { throw "herd: msiexec /i failed with exit code $($process.ExitCode)" }
"#,
    );
    s
}

/// Generates the uninstall script for an installed product.
pub fn uninstall_script(spec: &UninstallSpec<'_>) -> String {
    let mut s = String::with_capacity(1024);
    let header = comment_text(&format!(
        "Herd uninstall script: {} package of {} {}.",
        spec.format, spec.product, spec.version
    ));
    let missing_name = |s: &mut String, what: &str| {
        let _ = writeln!(
            s,
            "echo {} >&2\nexit 1",
            sh_quote(&format!(
                "herd: cannot uninstall {} {}: the catalog names no {what} for its {} package",
                spec.product, spec.version, spec.format
            ))
        );
    };
    if spec.format == PackageFormat::Msi {
        let _ = writeln!(s, "# {header}\n# PowerShell; run by herd-agent.");
        s.push_str("$ErrorActionPreference = 'Stop'\n");
        match spec.product_code {
            Some(code) => {
                let _ = writeln!(s, "$productCode = {}", ps_quote(code));
                s.push_str(
                    r#"$process = Start-Process -FilePath 'msiexec.exe' -ArgumentList @('/x', $productCode, '/qn', '/norestart') -Wait -PassThru
if ($process.ExitCode -notin 0, 3010) { throw "herd: msiexec /x failed with exit code $($process.ExitCode)" }
"#,
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "throw {}",
                    ps_quote(&format!(
                        "herd: cannot uninstall {} {}: the catalog names no product_code for its msi package",
                        spec.product, spec.version
                    ))
                );
            }
        }
        return s;
    }
    let _ = writeln!(s, "#!/bin/sh\n# {header}\n# Run by herd-agent.");
    if spec.format == PackageFormat::Archive {
        s.push_str("# HERD_PREFIX is the agent's product prefix.\n");
    }
    s.push_str(SH_PRELUDE);
    match (spec.format, spec.name) {
        (PackageFormat::Archive, _) => {
            let _ = writeln!(s, "product={}", sh_quote(spec.product));
            let _ = writeln!(s, "version={}", sh_quote(spec.version));
            let _ = writeln!(
                s,
                "pre_uninstall={}",
                sh_quote(spec.pre_uninstall.unwrap_or(""))
            );
            push_archive_uninstall(&mut s);
        }
        (PackageFormat::Deb, Some(name)) => {
            let _ = writeln!(s, "dpkg --remove {}", sh_quote(name));
        }
        (PackageFormat::Rpm, Some(name)) => {
            let _ = writeln!(s, "rpm --erase {}", sh_quote(name));
        }
        (PackageFormat::Apk, Some(name)) => {
            let _ = writeln!(s, "pm uninstall {}", sh_quote(name));
        }
        (PackageFormat::Deb | PackageFormat::Rpm | PackageFormat::Apk, None) => {
            missing_name(&mut s, "package name")
        }
        (PackageFormat::Msi, _) => unreachable!("handled above"),
    }
    s
}

/// Refuses to remove the active product, runs the hook, removes the version directory.
fn push_archive_uninstall(s: &mut String) {
    let _ = write!(
        s,
        r#"prefix="${{HERD_PREFIX:?HERD_PREFIX must name the product prefix}}"
dir="$prefix/{PRODUCTS_DIR}/$product/$version"
if [ ! -d "$dir" ]; then
    echo "herd: $product $version is not installed under $prefix; nothing to remove" >&2
    exit 0
fi
if [ "$(readlink "$prefix/{CURRENT}" 2>/dev/null || true)" = "{PRODUCTS_DIR}/$product/$version" ]; then
    echo "herd: refusing to remove $product $version: it is the active product" >&2
    exit 1
fi
if [ -n "$pre_uninstall" ] && [ -e "$dir/$pre_uninstall" ]; then
    (cd "$dir" && "./$pre_uninstall")
fi
rm -rf -- "$dir"
rmdir -- "$prefix/{PRODUCTS_DIR}/$product" 2>/dev/null || true
"#
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sh_quote_wraps_and_escapes() {
        assert_eq!(sh_quote("plain"), "'plain'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
    }

    #[test]
    fn ps_quote_doubles_every_quote_kind() {
        assert_eq!(ps_quote("it's"), "'it''s'");
        assert_eq!(ps_quote("a\u{2019}b"), "'a\u{2019}\u{2019}b'");
    }

    #[test]
    fn comments_cannot_be_broken_out_of() {
        assert_eq!(comment_text("a\nrm -rf /\r"), "a?rm -rf /?");
    }
}
