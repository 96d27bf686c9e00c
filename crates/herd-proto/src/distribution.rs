//! Signed distribution's names and documents (SPEC §3.4): where a package is in the TUF
//! repository, what its signed `custom` metadata says of it, how roles are named, and where a
//! delta between two releases is — the contract between the center (which signs), vendors
//! (who may sign their own packages), mirrors (which serve), and agents (which verify).
//!
//! Target paths have a fixed depth so that TUF's delegation patterns (shell-style per path
//! component, as python-tuf matches them) can delegate one vendor's packages:
//! `packages/<vendor>/*/*/*` matches exactly that vendor's
//! `packages/<vendor>/<product>/<version>/<platform>.<format>`.
//!
//! Every value that becomes a path component is an identifier or a version, which validation
//! restricts to `[A-Za-z0-9._-]` (`+~` too for versions): nothing here can add a `/`.

use serde::{Deserialize, Serialize};

/// Where the repository's metadata and targets are, under the center's (or a mirror's) base
/// URL: `/tuf/metadata/root.json`, `/tuf/metadata/N.snapshot.json`, `/tuf/targets/…`.
pub const METADATA_PATH: &str = "/tuf/metadata/";
pub const TARGETS_PATH: &str = "/tuf/targets/";

/// The delegated targets role of Herd's own content (deltas, later emergency signature sets),
/// signed with the center's online targets key, for paths under [`HERD_CONTENT_DIR`].
pub const HERD_ROLE: &str = "herd";
/// Herd's own targets are under this directory.
pub const HERD_CONTENT_DIR: &str = "herd";
/// Vendors' packages are under this directory.
pub const PACKAGES_DIR: &str = "packages";

/// The delegated role of one vendor's packages: `vendor-<vendor>`.
pub fn vendor_role(vendor: &str) -> String {
    format!("vendor-{vendor}")
}

/// The delegation pattern of one vendor's role: its packages and nothing else.
pub fn vendor_paths(vendor: &str) -> Vec<String> {
    vec![format!("{PACKAGES_DIR}/{vendor}/*/*/*")]
}

/// The delegation patterns of [`HERD_ROLE`]: deltas (`herd/deltas/<vendor>/<product>/<version>/<file>`).
pub fn herd_paths() -> Vec<String> {
    vec![format!("{HERD_CONTENT_DIR}/deltas/*/*/*/*")]
}

/// The target path of a package: `packages/<vendor>/<product>/<version>/<platform>.<format>`.
pub fn package_target(
    vendor: &str,
    product: &str,
    version: &str,
    platform: &str,
    format: &str,
) -> String {
    format!("{PACKAGES_DIR}/{vendor}/{product}/{version}/{platform}.{format}")
}

/// The target path of the delta that turns the content whose SHA-256 is `base_content_sha256`
/// into the content of the package at `result_target`:
/// `herd/deltas/<vendor>/<product>/<version>/<platform>.<format>.from-<base sha256>`.
/// `None` when `result_target` is not a package target.
pub fn delta_target(result_target: &str, base_content_sha256: &str) -> Option<String> {
    let rest = result_target
        .strip_prefix(PACKAGES_DIR)?
        .strip_prefix('/')?;
    if rest.split('/').count() != 4 {
        return None;
    }
    Some(format!(
        "{HERD_CONTENT_DIR}/deltas/{rest}.from-{base_content_sha256}"
    ))
}

/// The key under which Herd's metadata sits in a target's `custom` object: `{"herd": …}`.
pub const CUSTOM_KEY: &str = "herd";

/// What the signed metadata says of a package target (`custom.herd`): everything the agent
/// needs to check a plan against it and to generate the install and uninstall scripts itself.
/// The target's own `length` and `hashes.sha256` are the package file's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageCustom {
    pub vendor: String,
    pub product: String,
    pub version: String,
    pub seq: u64,
    /// The release's test pattern.
    pub pattern: String,
    pub platform: String,
    pub format: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_install: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_uninstall: Option<String>,
    /// `archive` packages: the uncompressed tar inside the gzip, which deltas rebuild.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<ContentDigest>,
}

/// The SHA-256 (lowercase hex) and length of a package's uncompressed content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentDigest {
    pub sha256: String,
    pub length: u64,
}

/// What the signed metadata says of a delta target (`custom.herd`): which package's content it
/// rebuilds, and from which base content. The result is checked against the package target's
/// own signed `content`, never against this.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaCustom {
    /// The package target whose content the delta rebuilds.
    pub result: String,
    /// The SHA-256 of the content it applies to.
    pub base_sha256: String,
}

/// A target's `custom` value as Herd writes it: `{"herd": value}`.
pub fn custom_value<T: Serialize>(value: &T) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    map.insert(
        CUSTOM_KEY.to_owned(),
        serde_json::to_value(value).expect("plain structs serialise"),
    );
    serde_json::Value::Object(map)
}

/// Reads Herd's part of a target's `custom` value; the error says what is wrong.
pub fn read_custom<T: for<'de> Deserialize<'de>>(
    target: &str,
    custom: Option<&serde_json::Value>,
) -> Result<T, String> {
    let herd = custom.and_then(|c| c.get(CUSTOM_KEY)).ok_or_else(|| {
        format!("target {target}: its signed metadata has no `custom.{CUSTOM_KEY}`")
    })?;
    T::deserialize(herd).map_err(|e| format!("target {target}: `custom.{CUSTOM_KEY}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_target_matches_only_its_vendors_pattern() {
        let path = package_target("acme", "acme-av", "2.0+1", "linux-x86_64", "archive");
        assert_eq!(path, "packages/acme/acme-av/2.0+1/linux-x86_64.archive");
        assert_eq!(
            path.split('/').count(),
            vendor_paths("acme")[0].split('/').count()
        );
    }

    #[test]
    fn a_delta_is_named_after_its_result_and_base() {
        let path = package_target("acme", "acme-av", "2", "linux", "archive");
        assert_eq!(
            delta_target(&path, "ab12").as_deref(),
            Some("herd/deltas/acme/acme-av/2/linux.archive.from-ab12")
        );
        assert_eq!(
            delta_target("herd/x", "ab").as_deref(),
            None,
            "only packages have deltas"
        );
        assert_eq!(delta_target("packages/a/b", "ab").as_deref(), None);
    }

    #[test]
    fn custom_metadata_round_trips_and_names_what_is_wrong() {
        let custom = PackageCustom {
            vendor: "acme".into(),
            product: "acme-av".into(),
            version: "2".into(),
            seq: 2,
            pattern: "p2".into(),
            platform: "linux".into(),
            format: "archive".into(),
            name: None,
            product_code: None,
            post_install: None,
            pre_uninstall: None,
            content: Some(ContentDigest {
                sha256: "00".into(),
                length: 1,
            }),
        };
        let value = custom_value(&custom);
        assert_eq!(read_custom::<PackageCustom>("t", Some(&value)), Ok(custom));
        let err = read_custom::<PackageCustom>("t", None).unwrap_err();
        assert!(err.contains("no `custom.herd`"), "{err}");
        let wrong = serde_json::json!({"herd": {"vendor": 1}});
        let err = read_custom::<PackageCustom>("t", Some(&wrong)).unwrap_err();
        assert!(err.starts_with("target t: `custom.herd`:"), "{err}");
    }
}
