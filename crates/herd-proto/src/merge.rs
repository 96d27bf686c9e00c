//! Merging vendors' feeds into one catalog document: a pure function of the documents, shared
//! by the center (which plans with the merged catalog) and the tools that model it (the demo,
//! the load generator).

use std::collections::{HashMap, HashSet};

use crate::catalog::{CATALOG_FORMAT, CatalogDoc, ThreatDoc};

/// Merges vendors' feeds into one catalog document, unscoped: vendors, products, releases
/// and coverage are each vendor's own and are concatenated; a threat several feeds list keeps
/// the first feed's description (see [`merge_scoped`] for the center's rules).
pub fn merge<'a>(docs: impl Iterator<Item = &'a CatalogDoc>) -> CatalogDoc {
    merge_owned(docs.cloned())
}

/// [`merge`], taking the documents: nothing is copied, so merging a large catalog needs no
/// more memory than its feeds already take (the center merges feeds of hundreds of MB).
pub fn merge_owned(docs: impl IntoIterator<Item = CatalogDoc>) -> CatalogDoc {
    let unscoped = Scope::default();
    merge_scoped(
        docs.into_iter().map(|doc| {
            let vendor = doc
                .vendors
                .first()
                .map(|v| v.id.clone())
                .unwrap_or_default();
            (vendor, doc)
        }),
        &unscoped,
    )
}

/// What the center lets each feed assert (its registry of threat owners and approvals).
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// Threat id → the vendor that owns it: only the owner's feed names and rates it.
    pub owners: HashMap<String, String>,
    /// Threats not planned against (pending or rejected by an operator): dropped with every
    /// coverage statement about them.
    pub withheld_threats: HashSet<String>,
    /// Vendors whose feeds do not count (pending or rejected): dropped whole.
    pub withheld_vendors: HashSet<String>,
}

/// Merges `(vendor, feed)` pairs under `scope`. A threat several feeds describe takes its
/// name, danger and discovery date from its owner's feed; from the first feed listing it when
/// the owner's does not (or it has no owner). Nobody's description is raised or lowered by
/// another's: a vendor cannot make a competitor's threat look more dangerous than its owner
/// says, so it cannot steer `latest-any-vendor` terminals to itself that way.
/// Linear in the feeds' size: one hash lookup per threat and per coverage statement.
pub fn merge_scoped(
    feeds: impl IntoIterator<Item = (String, CatalogDoc)>,
    scope: &Scope,
) -> CatalogDoc {
    let mut merged = CatalogDoc {
        format: CATALOG_FORMAT.to_owned(),
        ..CatalogDoc::default()
    };
    // Where each threat sits in `merged.threats`, and whether that is its owner's description.
    let mut threat_at: HashMap<String, (usize, bool)> = HashMap::new();
    for (vendor, doc) in feeds {
        if scope.withheld_vendors.contains(&vendor) {
            continue;
        }
        merged.vendors.extend(doc.vendors);
        merged.products.extend(doc.products);
        merged.releases.extend(doc.releases);
        merged.coverage.extend(
            doc.coverage
                .into_iter()
                .filter(|c| !scope.withheld_threats.contains(&c.threat)),
        );
        for threat in doc.threats {
            if scope.withheld_threats.contains(&threat.id) {
                continue;
            }
            let by_owner = scope
                .owners
                .get(&threat.id)
                .is_some_and(|owner| *owner == vendor);
            match threat_at.get_mut(&threat.id) {
                None => {
                    threat_at.insert(threat.id.clone(), (merged.threats.len(), by_owner));
                    merged.threats.push(threat);
                }
                Some((at, kept_by_owner)) if by_owner && !*kept_by_owner => {
                    merged.threats[*at] = threat;
                    *kept_by_owner = true;
                }
                Some(_) => {}
            }
        }
    }
    merged
}

/// The `feeds` key under which the center stores Herd's own threats (from verdicts, SPEC
/// §3.2.5) beside the vendors' feeds, so they are revisioned, replicated to sites and merged
/// with them. A `:` is in no vendor id, so no vendor can publish under it.
pub const HERD_FEED_VENDOR: &str = "herd:immunity";

/// Folds Herd's own threats (each with `herd_since`, and its files as `sha256:` aliases) into
/// a merged catalog: a Herd threat that a merged threat names — the same id, or that threat's
/// aliases list the Herd threat's id or one of its aliases — is that threat, which takes
/// Herd's coverage (the earliest `herd_since`), the earlier discovery date and Herd's aliases;
/// it keeps its owner's name and danger. Any other Herd threat is added as it is.
/// Linear in the threats and aliases.
pub fn merge_herd(merged: &mut CatalogDoc, herd: Vec<ThreatDoc>) {
    let mut known: HashMap<String, usize> = HashMap::new();
    for (i, threat) in merged.threats.iter().enumerate() {
        known.insert(threat.id.clone(), i);
    }
    for (i, threat) in merged.threats.iter().enumerate() {
        for alias in &threat.aliases {
            known.entry(alias.clone()).or_insert(i);
        }
    }
    for threat in herd {
        let same = std::iter::once(&threat.id)
            .chain(&threat.aliases)
            .find_map(|name| known.get(name).copied());
        match same {
            Some(at) => {
                let into = &mut merged.threats[at];
                // Both are RFC 3339 in UTC and `YYYY-MM-DD`: their text orders as their time.
                into.herd_since = match (into.herd_since.take(), threat.herd_since) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                if threat.discovered < into.discovered {
                    into.discovered = threat.discovered;
                }
                for alias in threat.aliases {
                    if alias != into.id && !into.aliases.contains(&alias) {
                        known.entry(alias.clone()).or_insert(at);
                        into.aliases.push(alias);
                    }
                }
            }
            None => {
                let at = merged.threats.len();
                known.insert(threat.id.clone(), at);
                for alias in &threat.aliases {
                    known.entry(alias.clone()).or_insert(at);
                }
                merged.threats.push(threat);
            }
        }
    }
}

/// Orders danger names for display and merging (unknown names rank lowest).
pub fn danger_rank(danger: &str) -> u8 {
    match danger {
        "critical" => 4,
        "high" => 3,
        "medium" => 2,
        "low" => 1,
        _ => 0,
    }
}

/// Splits a catalog into the feeds its vendors would publish — the inverse of [`merge`]: each
/// vendor gets itself, its products with their releases and coverage, and the threats its
/// coverage speaks about; threats no coverage mentions go to the first vendor, so merging the
/// feeds gives back every threat. Ordered as the catalog lists its vendors.
pub fn split_by_vendor(doc: &CatalogDoc) -> Vec<(String, CatalogDoc)> {
    let mut vendor_of_product: HashMap<&str, usize> = HashMap::new();
    for product in &doc.products {
        if let Some(v) = doc.vendors.iter().position(|v| v.id == product.vendor) {
            vendor_of_product.insert(&product.id, v);
        }
    }
    let mut feeds: Vec<CatalogDoc> = doc
        .vendors
        .iter()
        .map(|vendor| CatalogDoc {
            format: CATALOG_FORMAT.to_owned(),
            vendors: vec![vendor.clone()],
            ..CatalogDoc::default()
        })
        .collect();
    for product in &doc.products {
        if let Some(&v) = vendor_of_product.get(product.id.as_str()) {
            feeds[v].products.push(product.clone());
        }
    }
    for release in &doc.releases {
        if let Some(&v) = vendor_of_product.get(release.product.as_str()) {
            feeds[v].releases.push(release.clone());
        }
    }
    // Which feeds speak about each threat, in catalog order.
    let mut speakers: HashMap<&str, Vec<usize>> = HashMap::new();
    for statement in &doc.coverage {
        if let Some(&v) = vendor_of_product.get(statement.product.as_str()) {
            feeds[v].coverage.push(statement.clone());
            let list = speakers.entry(statement.threat.as_str()).or_default();
            // Feeds are few: a scan of this short list is cheaper than a set.
            if list.last() != Some(&v) && !list.contains(&v) {
                list.push(v);
            }
        }
    }
    for threat in &doc.threats {
        match speakers.get(threat.id.as_str()) {
            Some(list) => {
                for &v in list {
                    feeds[v].threats.push(threat.clone());
                }
            }
            None => {
                if let Some(first) = feeds.first_mut() {
                    first.threats.push(threat.clone());
                }
            }
        }
    }
    doc.vendors
        .iter()
        .map(|v| v.id.clone())
        .zip(feeds)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn threat(id: &str, discovered: &str, aliases: &[&str], herd_since: Option<&str>) -> ThreatDoc {
        ThreatDoc {
            id: id.to_owned(),
            name: id.to_owned(),
            danger: "high".to_owned(),
            discovered: discovered.to_owned(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            herd_since: herd_since.map(str::to_owned),
        }
    }

    fn merged(threats: Vec<ThreatDoc>) -> CatalogDoc {
        CatalogDoc {
            format: CATALOG_FORMAT.to_owned(),
            threats,
            ..CatalogDoc::default()
        }
    }

    const FILE: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn a_herd_threat_no_vendor_knows_is_added() {
        let mut doc = merged(vec![threat("virus-a", "2026-11-10", &[], None)]);
        let herd = threat(
            "herd-aaaa",
            "2026-12-06",
            &[FILE],
            Some("2026-12-06T10:00:00Z"),
        );
        merge_herd(&mut doc, vec![herd.clone()]);
        assert_eq!(doc.threats.len(), 2);
        assert_eq!(doc.threats[1], herd);
    }

    #[test]
    fn a_vendor_threat_of_the_same_id_or_file_is_one_threat() {
        for vendor in [
            threat("virus-x", "2026-12-07", &[], None),
            threat("virus-y", "2026-12-07", &[FILE], None),
            threat("virus-z", "2026-12-07", &["virus-x"], None),
        ] {
            let mut doc = merged(vec![vendor.clone()]);
            let herd = threat(
                "virus-x",
                "2026-12-06",
                &[FILE],
                Some("2026-12-06T10:00:00Z"),
            );
            merge_herd(&mut doc, vec![herd]);
            assert_eq!(doc.threats.len(), 1, "{vendor:?}");
            let one = &doc.threats[0];
            assert_eq!(one.id, vendor.id);
            assert_eq!(one.herd_since.as_deref(), Some("2026-12-06T10:00:00Z"));
            assert_eq!(one.discovered, "2026-12-06", "Herd saw it first");
            assert!(one.aliases.iter().any(|a| a == FILE), "{one:?}");
        }
    }

    #[test]
    fn two_herd_threats_of_one_vendor_threat_keep_the_earliest_coverage() {
        let other = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
        let mut doc = merged(vec![threat("virus-y", "2026-12-01", &[FILE, other], None)]);
        merge_herd(
            &mut doc,
            vec![
                threat(
                    "herd-bbbb",
                    "2026-12-06",
                    &[other],
                    Some("2026-12-06T11:00:00Z"),
                ),
                threat(
                    "herd-aaaa",
                    "2026-12-05",
                    &[FILE],
                    Some("2026-12-05T09:00:00Z"),
                ),
            ],
        );
        assert_eq!(doc.threats.len(), 1);
        assert_eq!(
            doc.threats[0].herd_since.as_deref(),
            Some("2026-12-05T09:00:00Z")
        );
        assert_eq!(doc.threats[0].discovered, "2026-12-01");
    }
}
