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

use crate::catalog::CatalogDoc;

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

/// The delegation patterns of [`HERD_ROLE`]: deltas (`herd/deltas/<vendor>/<product>/<version>/<file>`)
/// and Herd's own signature set (`herd/signatures/<file>`, see [`HERD_SET_TARGET`]).
pub fn herd_paths() -> Vec<String> {
    vec![
        format!("{HERD_CONTENT_DIR}/deltas/*/*/*/*"),
        format!("{HERD_CONTENT_DIR}/signatures/*"),
    ]
}

/// Herd's own signature set (issue 13, SPEC §3.2): one ClamAV `.hsb` file (SHA-256 hash
/// signatures, `sha256:size:name`, sorted by SHA-256) of every malicious verdict, listed by
/// [`HERD_ROLE`] and loaded by every agent that scans, beside its vendor product's definitions.
pub const HERD_SET_TARGET: &str = "herd/signatures/herd-set.hsb";
/// The prefix of every signature name in Herd's own set.
pub const HERD_SIGNATURE_PREFIX: &str = "Herd.Immunity.";
/// Analysts' body signatures in Herd's own set (issue 13), one file per format beside
/// [`HERD_SET_TARGET`], listed by [`HERD_ROLE`] once the first one is added.
pub const HERD_NDB_TARGET: &str = "herd/signatures/herd.ndb";
pub const HERD_LDB_TARGET: &str = "herd/signatures/herd.ldb";
pub const HERD_YARA_TARGET: &str = "herd/signatures/herd.yar";
/// Every file of Herd's own set, in the order the center lists and the agent loads them.
pub const HERD_SET_FILES: [&str; 4] = [
    HERD_SET_TARGET,
    HERD_NDB_TARGET,
    HERD_LDB_TARGET,
    HERD_YARA_TARGET,
];

/// The target path of the delta that turns the file of Herd's set whose SHA-256 is
/// `base_sha256` into the file listed at `set_target` now: `<set_target>.from-<base sha256>`
/// (under `herd/signatures/`, so [`herd_paths`] delegates it to [`HERD_ROLE`]). Its `custom`
/// is a [`DeltaCustom`] whose `result` is `set_target`; the result is checked against
/// `set_target`'s own signed length and SHA-256.
pub fn herd_set_delta_target(set_target: &str, base_sha256: &str) -> String {
    format!("{set_target}.from-{base_sha256}")
}

/// What the signed metadata says of a file of Herd's set (`custom.herd`): the SHA-256s of its
/// previous versions, newest first, from each of which a delta is listed
/// ([`herd_set_delta_target`]) when it is worth it. The center reads it back from the signed
/// role it stored to know what came before, so no other state says it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HerdSetCustom {
    pub previous: Vec<String>,
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

/// One package of a feed as a TUF target: where it is, its length and SHA-256 (the package
/// file's), and what the signed metadata says of it. `custom.content` is `None`: only whoever
/// holds the package file can compute it (the vendor's `herd publish --key`, the center from its
/// blob), and they fill it in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageTarget {
    pub path: String,
    pub length: u64,
    /// Lowercase hex, as the feed gives it.
    pub sha256: String,
    pub custom: PackageCustom,
}

/// Every package of `feed` as a target, in the feed's order (releases, then their packages).
///
/// The center and `herd publish --key` both list a vendor's packages through this one function,
/// so a role the vendor signs names exactly what the center would. It takes the feed as
/// published, which validation has accepted: a release of a product the feed does not describe
/// has no vendor to file it under and is left out (validation refuses such a feed anyway).
pub fn package_targets(feed: &CatalogDoc) -> Vec<PackageTarget> {
    let vendor_of: std::collections::HashMap<&str, &str> = feed
        .products
        .iter()
        .map(|p| (p.id.as_str(), p.vendor.as_str()))
        .collect();
    let mut targets = Vec::new();
    for release in &feed.releases {
        let Some(vendor) = vendor_of.get(release.product.as_str()) else {
            continue;
        };
        for package in &release.packages {
            targets.push(PackageTarget {
                path: package_target(
                    vendor,
                    &release.product,
                    &release.version,
                    &package.platform,
                    &package.format,
                ),
                length: package.size,
                sha256: package.sha256.to_ascii_lowercase(),
                custom: PackageCustom {
                    vendor: (*vendor).to_owned(),
                    product: release.product.clone(),
                    version: release.version.clone(),
                    seq: release.seq,
                    pattern: release.pattern.clone(),
                    platform: package.platform.clone(),
                    format: package.format.clone(),
                    name: package.name.clone(),
                    product_code: package.product_code.clone(),
                    post_install: package.post_install.clone(),
                    pre_uninstall: package.pre_uninstall.clone(),
                    content: None,
                },
            });
        }
    }
    targets
}

/// Where a target is served under [`TARGETS_PATH`] (TUF's consistent-snapshot name):
/// `{dir}/{sha256}.{basename}` of the target path `{dir}/{basename}`.
pub fn consistent_target_name(target: &str, sha256: &str) -> String {
    match target.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/{sha256}.{name}"),
        None => format!("{sha256}.{target}"),
    }
}

/// The target path and SHA-256 a consistent-snapshot name stands for (the inverse of
/// [`consistent_target_name`]); `None` when it has no `{sha256}.` before its basename.
pub fn parse_consistent_target_name(name: &str) -> Option<(String, &str)> {
    let (dir, file) = match name.rsplit_once('/') {
        Some((dir, file)) => (Some(dir), file),
        None => (None, name),
    };
    let (sha256, basename) = file.split_once('.')?;
    let target = match dir {
        Some(dir) => format!("{dir}/{basename}"),
        None => basename.to_owned(),
    };
    Some((target, sha256))
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

    fn feed() -> CatalogDoc {
        serde_json::from_value(serde_json::json!({
            "format": "herd.catalog/v1",
            "vendors": [{"id": "acme", "name": "Acme"}],
            "products": [{"id": "acme-av", "vendor": "acme", "name": "Acme AV",
                          "platforms": ["linux", "windows"]}],
            "releases": [
                {"product": "acme-av", "version": "1.0", "pattern": "p1", "seq": 1,
                 "published": "2026-01-01T00:00:00Z", "packages": [
                    {"platform": "linux", "format": "archive", "sha256": "AB".repeat(32),
                     "size": 10, "post_install": "hooks/post"},
                    {"platform": "windows", "format": "msi", "sha256": "cd".repeat(32),
                     "size": 20, "product_code": "{00000000-0000-0000-0000-000000000000}"}]},
                {"product": "acme-av", "version": "2.0", "pattern": "p2", "seq": 2,
                 "published": "2026-02-01T00:00:00Z", "packages": [
                    {"platform": "linux", "format": "deb", "sha256": "ef".repeat(32),
                     "size": 30, "name": "acme-av"}]},
                {"product": "ghost", "version": "1", "pattern": "p", "seq": 1,
                 "published": "2026-01-01T00:00:00Z", "packages": [
                    {"platform": "linux", "format": "archive", "sha256": "00".repeat(32),
                     "size": 1}]}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn a_feeds_packages_become_targets_with_their_signed_metadata() {
        let targets = package_targets(&feed());
        let listed: Vec<(&str, u64, &str)> = targets
            .iter()
            .map(|t| (t.path.as_str(), t.length, &t.sha256[..4]))
            .collect();
        assert_eq!(
            listed,
            [
                ("packages/acme/acme-av/1.0/linux.archive", 10, "abab"),
                ("packages/acme/acme-av/1.0/windows.msi", 20, "cdcd"),
                ("packages/acme/acme-av/2.0/linux.deb", 30, "efef"),
            ],
            "in feed order, sha256 lowercase; a release of an undescribed product is left out"
        );
        let first = &targets[0].custom;
        assert_eq!(
            (first.vendor.as_str(), first.seq, first.pattern.as_str()),
            ("acme", 1, "p1")
        );
        assert_eq!(first.post_install.as_deref(), Some("hooks/post"));
        assert_eq!(first.content, None, "callers fill the content in");
        assert!(targets[1].custom.product_code.is_some());
        assert_eq!(targets[2].custom.name.as_deref(), Some("acme-av"));
        for target in &targets {
            assert!(
                vendor_paths("acme")
                    .iter()
                    .all(|p| p.split('/').count() == target.path.split('/').count())
            );
        }
    }

    #[test]
    fn an_empty_feed_has_no_targets() {
        assert_eq!(package_targets(&CatalogDoc::default()), []);
    }

    #[test]
    fn a_target_is_served_under_its_consistent_snapshot_name_and_read_back() {
        let target = "packages/acme/av/2/linux.archive";
        let name = consistent_target_name(target, "ab12");
        assert_eq!(name, "packages/acme/av/2/ab12.linux.archive");
        assert_eq!(
            parse_consistent_target_name(&name),
            Some((target.to_owned(), "ab12"))
        );
        assert_eq!(consistent_target_name("top", "ab"), "ab.top");
        assert_eq!(
            parse_consistent_target_name("ab.top"),
            Some(("top".into(), "ab"))
        );
        assert_eq!(parse_consistent_target_name("packages/no-digest"), None);
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
