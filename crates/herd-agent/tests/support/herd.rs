//! The `herd` binary for the agent's integration tests that start a center: one helper, shared
//! through `#[path = "support/herd.rs"]` by the test files that need it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The `herd` binary: `$HERD_BIN` if set, else the one beside `herd-agent` in the target directory, built
/// here if it is missing (binaries of other packages are not built for this package's tests;
/// `cargo test --workspace` builds it, so does `cargo build -p herd-server`).
pub fn herd_binary() -> &'static Path {
    static HERD: OnceLock<PathBuf> = OnceLock::new();
    HERD.get_or_init(|| {
        if let Some(path) = std::env::var_os("HERD_BIN") {
            return PathBuf::from(path);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        // Beside this package's own binary, so a CARGO_TARGET_DIR outside the checkout works.
        let path = Path::new(env!("CARGO_BIN_EXE_herd-agent"))
            .parent()
            .expect("the agent binary has a directory")
            .join("herd");
        if !path.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let status = Command::new(cargo)
                .args(["build", "--quiet", "-p", "herd-server", "--bin", "herd"])
                .current_dir(&root)
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building the herd binary failed");
            assert!(path.exists(), "{} was not built", path.display());
        }
        path
    })
}
