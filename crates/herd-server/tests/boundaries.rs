//! Architecture invariants checked by machine (see ARCHITECTURE.md): the pure crates never
//! depend on an async runtime, a web framework, a database driver or an HTTP client.

use std::process::Command;

const PURE: [&str; 4] = ["herd-core", "herd-planner", "herd-proto", "herd-scan"];
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
