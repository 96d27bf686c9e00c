//! The names of an `archive` product prefix (SPEC §6, ARCHITECTURE "archive install order"):
//! a contract between the install and uninstall scripts herd-planner generates and the
//! agent that rolls them back, verifies and reports the active product. Both take the names
//! from here, so a change in one place changes the scripts and the agent together.
//!
//! ```text
//! <prefix>/products/<product>/<version>/          an unpacked package
//! <prefix>/products/<product>/<version>.herd-staging/   being unpacked
//! <prefix>/current -> products/<product>/<version>      the active product
//! <prefix>/current.herd-new                       the next link, renamed over `current`
//! <prefix>/signature-index/                       the agent's compiled hash signature indexes
//! ```
//!
//! Every name is plain `[A-Za-z0-9._-]`, so it is pasted into shell text unquoted.

/// The directory under the prefix holding every installed product's versions.
pub const PRODUCTS_DIR: &str = "products";

/// The link naming the active product, relative: `products/<product>/<version>`.
pub const CURRENT: &str = "current";

/// The link being made ready beside [`CURRENT`], renamed over it so the switch is atomic.
pub const CURRENT_NEW: &str = "current.herd-new";

/// Appended to a version directory while its package is unpacked into it.
pub const STAGING_SUFFIX: &str = ".herd-staging";

/// The agent's compiled indexes of the active product's hash signatures (a cache: scripts
/// never touch it, and the agent rebuilds whatever is missing or stale).
pub const SIGNATURE_INDEX_DIR: &str = "signature-index";

/// The text of the [`CURRENT`] link for a product version: `products/<product>/<version>`.
pub fn link_target(product: &str, version: &str) -> String {
    format!("{PRODUCTS_DIR}/{product}/{version}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scripts paste these names into shell text without quoting them.
    #[test]
    fn names_need_no_shell_quoting() {
        for name in [PRODUCTS_DIR, CURRENT, CURRENT_NEW, STAGING_SUFFIX] {
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
                "{name}"
            );
        }
        assert!(CURRENT_NEW.starts_with(CURRENT));
        assert_eq!(link_target("p", "1.0"), "products/p/1.0");
    }
}
