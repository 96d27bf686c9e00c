//! The `herd.catalog/v1` feed (SPEC §4): what vendors publish and `herd plan` reads.

use std::collections::{BTreeSet, HashMap, HashSet};

use herd_core::{
    Catalog, Coverage, Danger, Date, Hooks, Package, PackageFormat, PlatformIdx, Product,
    ProductIdx, ProductKind, Release, Sha256, Threat, ThreatIdx, Timestamp, Vendor, VendorIdx,
    check_identifier, check_version,
};
use serde::{Deserialize, Serialize};

use crate::error::{Problems, ValidationError, parse_json};

/// The only catalog format this version understands.
pub const CATALOG_FORMAT: &str = "herd.catalog/v1";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogDoc {
    pub format: String,
    #[serde(default)]
    pub vendors: Vec<VendorDoc>,
    #[serde(default)]
    pub products: Vec<ProductDoc>,
    #[serde(default)]
    pub releases: Vec<ReleaseDoc>,
    #[serde(default)]
    pub threats: Vec<ThreatDoc>,
    #[serde(default)]
    pub coverage: Vec<CoverageDoc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorDoc {
    pub id: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductDoc {
    pub id: String,
    pub vendor: String,
    pub name: String,
    pub platforms: Vec<String>,
    /// `"vaccine"` (absent: the default, as in every catalog written before programs existed)
    /// or `"program"`: any other program a terminal runs, which fault recovery installs and
    /// replaces but the planner never chooses to protect a terminal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseDoc {
    pub product: String,
    pub version: String,
    pub pattern: String,
    pub seq: u64,
    /// RFC 3339.
    pub published: String,
    #[serde(default)]
    pub packages: Vec<PackageDoc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageDoc {
    pub platform: String,
    pub format: String,
    pub sha256: String,
    pub size: u64,
    /// Package-manager name, required for `deb`, `rpm` and `apk`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// MSI ProductCode, required for `msi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_code: Option<String>,
    /// `archive` only: paths, relative to the unpacked version directory, of hooks to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_install: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_uninstall: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThreatDoc {
    pub id: String,
    pub name: String,
    pub danger: String,
    /// `YYYY-MM-DD`.
    pub discovered: String,
    /// Other names of the same threat: other threat ids, or `sha256:<64 hex digits>` of files
    /// that are it. A threat of Herd's own set (from a verdict) whose id or file a vendor's
    /// threat lists here is that threat, not a second one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// RFC 3339: since when Herd's own signature set covers the threat. Only the center sets
    /// it (from verdicts); a vendor's feed may not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub herd_since: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoverageDoc {
    pub product: String,
    pub threat: String,
    #[serde(default)]
    pub since_seq: Option<u64>,
    #[serde(default)]
    pub covered_on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
}

/// Checks a threat alias: another threat id, or `sha256:` and 64 lower-case hex digits.
pub fn check_alias(alias: &str) -> Result<(), String> {
    match alias.strip_prefix("sha256:") {
        Some(hex) => {
            if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                Ok(())
            } else {
                Err(format!(
                    "alias {alias:?}: a file alias is \"sha256:\" and 64 lower-case hex digits"
                ))
            }
        }
        None => check_identifier(alias).map_err(|err| format!("alias {alias:?}: {err}")),
    }
}

/// Only the `format` field, read before anything else so that a document of another format
/// is refused for its format and not for fields this version does not know.
#[derive(Deserialize)]
struct FormatProbe {
    format: Option<serde_json::Value>,
}

/// Parses and validates a catalog document. `document` names it in errors (usually its path).
pub fn parse_catalog(document: &str, text: &str) -> Result<Catalog, ValidationError> {
    let probe: FormatProbe = parse_json(document, text)?;
    let mut problems = Problems::default();
    match probe.format {
        Some(serde_json::Value::String(format)) if format == CATALOG_FORMAT => {}
        Some(other) => problems.add(
            "$.format",
            format!("unknown format {other}; expected \"{CATALOG_FORMAT}\""),
        ),
        None => problems.add(
            "$",
            format!("missing field `format` (expected \"{CATALOG_FORMAT}\")"),
        ),
    }
    problems.finish(document, || ())?;
    parse_json::<CatalogDoc>(document, text)?.validate(document)
}

impl CatalogDoc {
    /// The document of a validated catalog: what it was built from, in the catalog's order
    /// (releases by product and seq, platforms as the catalog numbers them) and with times in
    /// UTC. Validating it again gives the same
    /// catalog, so a process may keep only the compact model and make the document on demand.
    pub fn from_model(catalog: &Catalog) -> CatalogDoc {
        let product_id = |idx: ProductIdx| catalog.product(idx).id.clone();
        CatalogDoc {
            format: CATALOG_FORMAT.to_owned(),
            vendors: catalog
                .vendors
                .iter()
                .map(|v| VendorDoc {
                    id: v.id.clone(),
                    name: v.name.clone(),
                })
                .collect(),
            products: catalog
                .products
                .iter()
                .map(|p| ProductDoc {
                    id: p.id.clone(),
                    vendor: catalog.vendors[p.vendor.get()].id.clone(),
                    name: p.name.clone(),
                    platforms: p
                        .platforms
                        .iter()
                        .map(|&q| catalog.platforms[q.get()].clone())
                        .collect(),
                    kind: (p.kind != ProductKind::Vaccine).then(|| p.kind.to_string()),
                })
                .collect(),
            releases: catalog
                .releases
                .iter()
                .map(|r| ReleaseDoc {
                    product: product_id(r.product),
                    version: r.version.clone(),
                    pattern: r.pattern.clone(),
                    seq: r.seq,
                    published: r.published.to_string(),
                    packages: r
                        .packages
                        .iter()
                        .map(|k| PackageDoc {
                            platform: catalog.platforms[k.platform.get()].clone(),
                            format: k.format.to_string(),
                            sha256: k.sha256.to_string(),
                            size: k.size,
                            name: k.name.clone(),
                            product_code: k.product_code.clone(),
                            post_install: k.hooks.post_install.clone(),
                            pre_uninstall: k.hooks.pre_uninstall.clone(),
                        })
                        .collect(),
                })
                .collect(),
            threats: catalog
                .threats
                .iter()
                .map(|t| ThreatDoc {
                    id: t.id.clone(),
                    name: t.name.clone(),
                    danger: t.danger.to_string(),
                    discovered: t.discovered.to_string(),
                    aliases: t.aliases.clone(),
                    herd_since: t.herd_since.map(|at| at.to_string()),
                })
                .collect(),
            coverage: catalog
                .coverage
                .iter()
                .map(|c| CoverageDoc {
                    product: product_id(c.product),
                    threat: catalog.threat(c.threat).id.clone(),
                    since_seq: c.since_seq,
                    covered_on: c.covered_on.map(|d| d.to_string()),
                    expected: c.expected.map(|d| d.to_string()),
                })
                .collect(),
        }
    }

    /// Checks every rule of the format and builds the indexed catalog, or reports every problem.
    pub fn validate(&self, document: &str) -> Result<Catalog, ValidationError> {
        let mut p = Problems::default();
        if self.format != CATALOG_FORMAT {
            p.add(
                "$.format",
                format!(
                    "unknown format {:?}; expected \"{CATALOG_FORMAT}\"",
                    self.format
                ),
            );
        }

        // Vendors.
        let mut vendor_by_id = HashMap::new();
        for (i, v) in self.vendors.iter().enumerate() {
            let at = || format!("$.vendors[{i}].id");
            if p.check(at, check_identifier(&v.id)).is_some()
                && vendor_by_id
                    .insert(v.id.as_str(), VendorIdx(i as u32))
                    .is_some()
            {
                p.add(at(), format!("duplicate vendor id {:?}", v.id));
            }
        }

        // Platforms are interned from the products' declarations.
        let platforms: Vec<String> = self
            .products
            .iter()
            .flat_map(|pr| pr.platforms.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let platform_idx = |name: &str| {
            platforms
                .binary_search_by(|p| p.as_str().cmp(name))
                .ok()
                .map(|i| PlatformIdx(i as u32))
        };

        // Products.
        let mut product_by_id = HashMap::new();
        let mut products = Vec::with_capacity(self.products.len());
        for (i, pr) in self.products.iter().enumerate() {
            let at = |field: &str| format!("$.products[{i}].{field}");
            if p.check(|| at("id"), check_identifier(&pr.id)).is_some()
                && product_by_id
                    .insert(pr.id.as_str(), ProductIdx(i as u32))
                    .is_some()
            {
                p.add(at("id"), format!("duplicate product id {:?}", pr.id));
            }
            let vendor = vendor_by_id.get(pr.vendor.as_str()).copied();
            if vendor.is_none() {
                p.add(
                    at("vendor"),
                    format!("unknown vendor {:?} (not in $.vendors)", pr.vendor),
                );
            }
            if pr.platforms.is_empty() {
                p.add(
                    at("platforms"),
                    "a product must support at least one platform",
                );
            }
            let mut seen = HashSet::new();
            for (k, platform) in pr.platforms.iter().enumerate() {
                p.check(
                    || format!("$.products[{i}].platforms[{k}]"),
                    check_identifier(platform),
                );
                if !seen.insert(platform) {
                    p.add(
                        format!("$.products[{i}].platforms[{k}]"),
                        format!("duplicate platform {platform:?}"),
                    );
                }
            }
            let mut product_platforms: Vec<PlatformIdx> = pr
                .platforms
                .iter()
                .filter_map(|name| platform_idx(name))
                .collect();
            product_platforms.sort();
            product_platforms.dedup();
            let kind = match &pr.kind {
                Some(kind) => p
                    .check(|| at("kind"), ProductKind::parse(kind))
                    .unwrap_or_default(),
                None => ProductKind::Vaccine,
            };
            products.push(Product {
                id: pr.id.clone(),
                vendor: vendor.unwrap_or(VendorIdx(0)),
                name: pr.name.clone(),
                platforms: product_platforms,
                kind,
            });
        }

        // Releases and their packages. Each release of a product needs its own version: an
        // `archive` release is unpacked into a directory named after it.
        let mut releases = Vec::with_capacity(self.releases.len());
        let mut versions = HashMap::new();
        for (i, r) in self.releases.iter().enumerate() {
            let at = |field: &str| format!("$.releases[{i}].{field}");
            let product = product_by_id.get(r.product.as_str()).copied();
            if product.is_none() {
                p.add(
                    at("product"),
                    format!("unknown product {:?} (not in $.products)", r.product),
                );
            }
            if p.check(|| at("version"), check_version(&r.version))
                .is_some()
                && let Some(first) = versions.insert((r.product.as_str(), r.version.as_str()), i)
            {
                p.add(at("version"), format!(
                    "product {:?} has version {:?} twice (also $.releases[{first}]); each release needs its own version",
                    r.product, r.version
                ));
            }
            if r.pattern.is_empty() {
                p.add(at("pattern"), "the pattern name must not be empty");
            }
            let published = p.check(|| at("published"), Timestamp::parse(&r.published));
            let mut packages = Vec::with_capacity(r.packages.len());
            let mut seen = HashSet::new();
            for (k, pkg) in r.packages.iter().enumerate() {
                let pat = |field: &str| format!("$.releases[{i}].packages[{k}].{field}");
                let platform = platform_idx(&pkg.platform).filter(|idx| {
                    product.is_some_and(|pr| products[pr.get()].platforms.contains(idx))
                });
                if platform.is_none() && product.is_some() {
                    p.add(
                        pat("platform"),
                        format!(
                            "platform {:?} is not one of product {:?}'s platforms",
                            pkg.platform, r.product
                        ),
                    );
                }
                let format = p.check(|| pat("format"), PackageFormat::parse(&pkg.format));
                let sha256 = p.check(|| pat("sha256"), Sha256::parse_hex(&pkg.sha256));
                if pkg.size == 0 {
                    p.add(pat("size"), "a package size must be at least 1 byte");
                }
                if let Some(format) = format {
                    check_package_identity(&mut p, &pat, format, pkg);
                    if !seen.insert((pkg.platform.as_str(), format)) {
                        p.add(
                            pat("format"),
                            format!(
                                "a second {format} package for platform {:?} in this release",
                                pkg.platform
                            ),
                        );
                    }
                }
                if let (Some(platform), Some(format), Some(sha256)) = (platform, format, sha256) {
                    packages.push(Package {
                        platform,
                        format,
                        sha256,
                        size: pkg.size,
                        name: pkg.name.clone(),
                        product_code: pkg.product_code.clone(),
                        hooks: Hooks {
                            post_install: pkg.post_install.clone(),
                            pre_uninstall: pkg.pre_uninstall.clone(),
                        },
                    });
                }
            }
            if let (Some(product), Some(published)) = (product, published) {
                releases.push((
                    i,
                    Release {
                        product,
                        version: r.version.clone(),
                        pattern: r.pattern.clone(),
                        seq: r.seq,
                        published,
                        packages,
                    },
                ));
            }
        }
        check_release_order(&mut p, &mut releases, &self.products);

        // Threats.
        let mut threat_by_id = HashMap::new();
        let mut threats = Vec::with_capacity(self.threats.len());
        for (i, t) in self.threats.iter().enumerate() {
            let at = |field: &str| format!("$.threats[{i}].{field}");
            if p.check(|| at("id"), check_identifier(&t.id)).is_some()
                && threat_by_id
                    .insert(t.id.as_str(), ThreatIdx(i as u32))
                    .is_some()
            {
                p.add(at("id"), format!("duplicate threat id {:?}", t.id));
            }
            let danger = p.check(|| at("danger"), Danger::parse(&t.danger));
            let discovered = p.check(|| at("discovered"), Date::parse(&t.discovered));
            for (k, alias) in t.aliases.iter().enumerate() {
                p.check(
                    || format!("$.threats[{i}].aliases[{k}]"),
                    check_alias(alias),
                );
            }
            let herd_since = t
                .herd_since
                .as_deref()
                .and_then(|at_text| p.check(|| at("herd_since"), Timestamp::parse(at_text)));
            threats.push(Threat {
                id: t.id.clone(),
                name: t.name.clone(),
                danger: danger.unwrap_or(Danger::Low),
                discovered: discovered.unwrap_or(Date::from_days_since_epoch(0)),
                aliases: t.aliases.clone(),
                herd_since,
            });
        }

        // Coverage statements.
        let mut coverage = Vec::with_capacity(self.coverage.len());
        let mut seen = HashMap::new();
        for (i, c) in self.coverage.iter().enumerate() {
            let at = |field: &str| format!("$.coverage[{i}].{field}");
            let product = product_by_id.get(c.product.as_str()).copied();
            if product.is_none() {
                p.add(
                    at("product"),
                    format!("unknown product {:?} (not in $.products)", c.product),
                );
            }
            if let Some(product) = product
                && products[product.get()].kind == ProductKind::Program
            {
                p.add(
                    at("product"),
                    format!(
                        "{:?} is a program, not a vaccine product: only vaccine products state \
                         coverage",
                        c.product
                    ),
                );
            }
            let threat = threat_by_id.get(c.threat.as_str()).copied();
            if threat.is_none() {
                p.add(
                    at("threat"),
                    format!("unknown threat {:?} (not in $.threats)", c.threat),
                );
            }
            let covered_on = c
                .covered_on
                .as_deref()
                .and_then(|d| p.check(|| at("covered_on"), Date::parse(d)));
            let expected = c
                .expected
                .as_deref()
                .and_then(|d| p.check(|| at("expected"), Date::parse(d)));
            if c.since_seq.is_none() && c.covered_on.is_some() {
                p.add(at("covered_on"), "covered_on is set but since_seq is null; a covered threat needs the seq it is covered from");
            }
            if let (Some(product), Some(threat)) = (product, threat) {
                if let Some(first) = seen.insert((product, threat), i) {
                    p.add(at("threat"), format!(
                        "a second coverage statement for product {:?} and threat {:?} (the first is $.coverage[{first}])",
                        c.product, c.threat
                    ));
                }
                coverage.push(Coverage {
                    product,
                    threat,
                    since_seq: c.since_seq,
                    covered_on,
                    expected,
                });
            }
        }

        p.finish(document, || {
            Catalog::from_parts(
                self.vendors
                    .iter()
                    .map(|v| Vendor {
                        id: v.id.clone(),
                        name: v.name.clone(),
                    })
                    .collect(),
                products,
                platforms,
                releases.into_iter().map(|(_, r)| r).collect(),
                threats,
                coverage,
            )
        })
    }
}

/// The per-format fields a package needs for its scripts (SPEC §6), checked so that nothing
/// a vendor sends can break out of a generated script's quoting or its directory.
fn check_package_identity(
    p: &mut Problems,
    at: &dyn Fn(&str) -> String,
    format: PackageFormat,
    pkg: &PackageDoc,
) {
    let needs_name = matches!(
        format,
        PackageFormat::Deb | PackageFormat::Rpm | PackageFormat::Apk
    );
    match (&pkg.name, needs_name) {
        (None, true) => p.add(
            at("name"),
            format!("a {format} package needs the `name` its package manager knows it by"),
        ),
        (Some(name), true) => {
            p.check(|| at("name"), check_package_name(format, name));
        }
        (Some(_), false) => p.add(
            at("name"),
            format!("`name` is only for deb, rpm and apk packages, not {format}"),
        ),
        (None, false) => {}
    }
    match (&pkg.product_code, format == PackageFormat::Msi) {
        (None, true) => p.add(
            at("product_code"),
            "an msi package needs its `product_code` ({XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX})",
        ),
        (Some(code), true) => {
            p.check(|| at("product_code"), check_product_code(code));
        }
        (Some(_), false) => p.add(
            at("product_code"),
            format!("`product_code` is only for msi packages, not {format}"),
        ),
        (None, false) => {}
    }
    for (field, hook) in [
        ("post_install", &pkg.post_install),
        ("pre_uninstall", &pkg.pre_uninstall),
    ] {
        match (hook, format == PackageFormat::Archive) {
            (Some(path), true) => {
                p.check(|| at(field), check_hook_path(path));
            }
            (Some(_), false) => p.add(
                at(field),
                format!("hooks are only for archive packages, not {format}"),
            ),
            (None, _) => {}
        }
    }
}

fn check_package_name(format: PackageFormat, name: &str) -> Result<(), String> {
    let ok = match format {
        // Debian policy: lowercase letters, digits, + - . ; at least two characters, starting alphanumeric.
        PackageFormat::Deb => {
            name.len() >= 2
                && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && name.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.')
                })
        }
        PackageFormat::Rpm => {
            name.starts_with(|c: char| c.is_ascii_alphanumeric())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '_'))
        }
        // Android: dot-separated Java identifiers, at least two segments.
        PackageFormat::Apk => {
            let segments: Vec<&str> = name.split('.').collect();
            segments.len() >= 2
                && segments.iter().all(|s| {
                    s.starts_with(|c: char| c.is_ascii_alphabetic())
                        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                })
        }
        PackageFormat::Archive | PackageFormat::Msi => true,
    };
    if ok && name.len() <= 128 {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid {format} package name"))
    }
}

fn check_product_code(code: &str) -> Result<(), String> {
    let inner = code.strip_prefix('{').and_then(|c| c.strip_suffix('}'));
    let ok = inner.is_some_and(|g| {
        let groups: Vec<&str> = g.split('-').collect();
        groups.iter().map(|s| s.len()).eq([8, 4, 4, 4, 12])
            && groups
                .iter()
                .all(|s| s.chars().all(|c| c.is_ascii_hexdigit()))
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{code:?} is not an MSI ProductCode like {{12345678-9ABC-DEF0-1234-56789ABCDEF0}}"
        ))
    }
}

/// A hook is a relative path inside the package's own directory: no absolute paths, no `..`.
fn check_hook_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.starts_with('/') {
        return Err(format!(
            "a hook is a relative path inside the package, found {path:?}"
        ));
    }
    for part in path.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(format!(
                "a hook path may not contain empty, '.' or '..' parts: {path:?}"
            ));
        }
        if part.chars().any(|c| c.is_control()) {
            return Err(format!(
                "a hook path may not contain control characters: {path:?}"
            ));
        }
    }
    Ok(())
}

/// Within a product, seqs are unique and strictly ordered by `published`.
fn check_release_order(p: &mut Problems, releases: &mut [(usize, Release)], docs: &[ProductDoc]) {
    releases.sort_by_key(|(i, r)| (r.product, r.seq, *i));
    for pair in releases.windows(2) {
        let ((ia, a), (ib, b)) = (&pair[0], &pair[1]);
        if a.product != b.product {
            continue;
        }
        let product = &docs[a.product.get()].id;
        if a.seq == b.seq {
            p.add(
                format!("$.releases[{ib}].seq"),
                format!(
                    "product {product:?} has seq {} twice (also $.releases[{ia}])",
                    b.seq
                ),
            );
        } else if a.published >= b.published {
            p.add(
                format!("$.releases[{ib}].published"),
                format!(
                    "product {product:?}'s seq values are not strictly ordered by published: seq {} ($.releases[{ia}]) is published {}, \
                     not before seq {} published {}",
                    a.seq, a.published, b.seq, b.published
                ),
            );
        }
    }
}
