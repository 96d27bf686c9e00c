//! Architecture invariants checked by machine (see ARCHITECTURE.md): the pure crates never
//! depend on an async runtime, a web framework, a database driver or an HTTP client; the
//! planner reads no clock; the center's domain services know nothing of HTTP.

use std::process::Command;

/// Crates that never touch the network or an async runtime. (herd-package reads and writes
/// package files, but as a library for the agent and the CLI it must stay free of these too.)
const PURE: [&str; 7] = [
    "herd-core",
    "herd-planner",
    "herd-proto",
    "herd-scan",
    "herd-package",
    "herd-tuf",
    "herd-delta",
];
const FORBIDDEN: [&str; 8] = [
    "tokio",
    "axum",
    "hyper",
    "sqlx",
    "rusqlite",
    "reqwest",
    "rustls",
    "async-std",
];

#[test]
fn pure_crates_do_no_io_through_their_dependencies() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for krate in PURE {
        let out = Command::new(&cargo)
            .args([
                "tree",
                "--offline",
                "--edges",
                "normal",
                "--prefix",
                "none",
                "--format",
                "{p}",
                "-p",
                krate,
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cargo tree runs");
        assert!(
            out.status.success(),
            "cargo tree -p {krate}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tree = String::from_utf8(out.stdout).unwrap();
        for line in tree.lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            assert!(
                !FORBIDDEN.contains(&name),
                "{krate} depends on {name}, which the pure core must not:\n{tree}"
            );
        }
    }
}

#[test]
fn the_planner_reads_no_clock_and_touches_no_files() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../herd-planner/src");
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for banned in [
            "SystemTime",
            "Instant::now",
            "std::fs",
            "std::net",
            "std::process",
            "std::env",
            "rand::",
        ] {
            assert!(
                !text.contains(banned),
                "{} uses {banned}; the planner is pure",
                path.display()
            );
        }
    }
}

/// herd-scan's edges: `walk` reads scanned files, `mapped` maps an index file; the rest of the
/// engine takes bytes.
const SCAN_EDGES: [&str; 2] = ["walk.rs", "mapped.rs"];

#[test]
fn the_scan_engine_touches_files_only_at_its_edges() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../herd-scan/src");
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if SCAN_EDGES.contains(&name.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for banned in [
            "std::fs",
            "File::open",
            "libc::open",
            "libc::mmap",
            "std::net",
        ] {
            assert!(
                !text.contains(banned),
                "{} uses {banned}; only {SCAN_EDGES:?} touch files in herd-scan",
                path.display()
            );
        }
    }
}

/// The center's HTTP layer: the only part of herd-center that may speak HTTP.
const CENTER_HTTP_LAYER: &str = "api";

#[test]
fn the_centers_domain_services_know_nothing_of_http() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../herd-center/src");
    let mut checked = 0;
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path != src.join(CENTER_HTTP_LAYER) {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            checked += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            for banned in [
                "axum",
                "hyper",
                "http::",
                "http_body",
                "StatusCode",
                "IntoResponse",
                // The HTTP layer's own types are HTTP too: domain code never reaches into it.
                "crate::api",
                "super::api",
            ] {
                assert!(
                    !text.contains(banned),
                    "{} mentions {banned}; domain modules of the center know nothing of HTTP (that is src/{CENTER_HTTP_LAYER}/)",
                    path.display()
                );
            }
        }
    }
    assert!(
        checked >= 10,
        "found only {checked} domain files under {}",
        src.display()
    );
}
