//! Program packages for fault recovery's replacement (SPEC §3.3.4), shared by `herd demo` and
//! the end-to-end tests: a real `archive` package of kind `program` (a shell program with its
//! configuration, a `run` command and a health check in its manifest), and the vendor feed
//! that publishes it as a catalog program release, which the center then signs as a TUF
//! target like any package.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context;
use herd_package::{BuiltPackage, Detection, HealthCheck, MANIFEST_FILE, Manifest};
use serde_json::{Value, json};

/// What the program does when started (its health check passes regardless).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Writes its pid to the pid file and runs until stopped.
    Serves,
    /// Exits at once with status 4 (the switch step fails).
    DiesAtStart,
    /// Serves, but its health check exits 1 (the health check step fails).
    Unhealthy,
    /// Serves, and its package has a post-install and a pre-uninstall hook (both succeed).
    Hooked,
    /// Serves, but its package's post-install hook exits 3 (the install step fails).
    HookFails,
}

/// A program package: `program` `version` of `vendor` for `platform`, written to `out`
/// (`<out dir>/<program>-<version>-src/` holds its files). Once started it writes its pid to
/// `pid_file`. Its health check reads the program's own configuration from the installed
/// directory (so it must run there) and prints "ready".
pub fn program_package(
    out: &Path,
    program: &str,
    vendor: &str,
    version: &str,
    platform: &str,
    pid_file: &Path,
    behaviour: Behaviour,
) -> anyhow::Result<BuiltPackage> {
    let parent = out.parent().unwrap_or(Path::new("."));
    let src = parent.join(format!("{program}-{version}-src"));
    fs::create_dir_all(src.join("bin")).with_context(|| format!("{}", src.display()))?;
    fs::create_dir_all(src.join("etc"))?;
    let health = match behaviour {
        Behaviour::Unhealthy => "echo \"$NAME is not well\"; exit 1".to_owned(),
        _ => "echo \"$NAME $VERSION ready\"".to_owned(),
    };
    let start = match behaviour {
        Behaviour::DiesAtStart => "exit 4".to_owned(),
        _ => format!("echo $$ > '{}'\nexec sleep 3600", pid_file.display()),
    };
    let bin = src.join("bin").join(program);
    fs::write(
        &bin,
        format!(
            "#!/bin/sh\n# {program} {version} of {vendor}\n. ./etc/{program}.conf\n\
             if [ \"$1\" = --health ]; then\n{health}\nexit\nfi\n{start}\n"
        ),
    )?;
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755))?;
    let hooks = match behaviour {
        Behaviour::Hooked => vec![("post-install", "exit 0"), ("pre-uninstall", "exit 0")],
        Behaviour::HookFails => vec![("post-install", "echo cannot set up >&2; exit 3")],
        _ => Vec::new(),
    };
    for (name, body) in hooks {
        let hook = src.join("bin").join(name);
        fs::write(
            &hook,
            format!(
                "#!/bin/sh
{body}
"
            ),
        )?;
        fs::set_permissions(&hook, fs::Permissions::from_mode(0o755))?;
    }
    let conf = src.join("etc").join(format!("{program}.conf"));
    fs::write(&conf, format!("NAME={program}\nVERSION={version}\n"))?;
    fs::set_permissions(&conf, fs::Permissions::from_mode(0o644))?;
    let manifest = Manifest {
        format: herd_package::PACKAGE_FORMAT.into(),
        product: program.into(),
        vendor: vendor.into(),
        version: version.into(),
        seq: 1,
        pattern: format!("{program} {version}"),
        kind: Some("program".into()),
        engine: None,
        definitions: vec![],
        test_pattern: None,
        health_check: Some(HealthCheck {
            command: vec![format!("bin/{program}"), "--health".into()],
            timeout_ms: 5000,
            exit_status: Some(0),
            output_contains: Some("ready".into()),
        }),
        post_install: matches!(behaviour, Behaviour::Hooked | Behaviour::HookFails)
            .then(|| "bin/post-install".to_owned()),
        pre_uninstall: (behaviour == Behaviour::Hooked).then(|| "bin/pre-uninstall".to_owned()),
        hooks_run_as: None,
        run: Some(vec![format!("bin/{program}")]),
    };
    fs::write(src.join(MANIFEST_FILE), manifest.to_json())?;
    herd_package::build_dir(&src, &[platform.to_owned()], out, Detection::NotChecked)
        .with_context(|| format!("cannot build {}", out.display()))
}

/// The feed of `vendor` publishing `package` as the one release of a program product.
pub fn program_feed(vendor: &str, package: &BuiltPackage) -> Value {
    let m = &package.manifest;
    json!({
        "format": "herd.catalog/v1",
        "vendors": [{"id": vendor, "name": vendor}],
        "products": [{"id": m.product, "vendor": vendor, "name": m.product, "kind": "program",
                      "platforms": package.catalog_packages.iter().map(|p| &p.platform).collect::<Vec<_>>()}],
        "releases": [{"product": m.product, "version": m.version, "pattern": m.pattern,
                      "seq": m.seq, "published": "2026-01-01T00:00:00Z",
                      "packages": package.catalog_packages}],
        "threats": [], "coverage": []
    })
}
