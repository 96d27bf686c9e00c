//! Merging vendors' feeds into one catalog document: a pure function of the documents, shared
//! by the center (which plans with the merged catalog) and the tools that model it (the demo,
//! the load generator).

use std::collections::HashMap;

use crate::catalog::{CATALOG_FORMAT, CatalogDoc, ThreatDoc};

/// Merges vendors' feeds into one catalog document. Vendors, products, releases and coverage
/// are each vendor's own and are concatenated. Threats are shared: vendors describe the same
/// threat independently, so a threat listed by several feeds keeps the first name, the
/// highest danger and the earliest discovery date any of them gives — the conservative
/// reading, which makes Herd act sooner rather than later.
pub fn merge<'a>(docs: impl Iterator<Item = &'a CatalogDoc>) -> CatalogDoc {
    merge_owned(docs.cloned())
}

/// [`merge`], taking the documents: nothing is copied, so merging a large catalog needs no
/// more memory than its feeds already take (the center merges feeds of hundreds of MB).
pub fn merge_owned(docs: impl IntoIterator<Item = CatalogDoc>) -> CatalogDoc {
    let mut merged = CatalogDoc {
        format: CATALOG_FORMAT.to_owned(),
        ..CatalogDoc::default()
    };
    let mut threat_at: HashMap<String, usize> = HashMap::new();
    for doc in docs {
        merged.vendors.extend(doc.vendors);
        merged.products.extend(doc.products);
        merged.releases.extend(doc.releases);
        merged.coverage.extend(doc.coverage);
        for threat in doc.threats {
            match threat_at.get(&threat.id) {
                None => {
                    threat_at.insert(threat.id.clone(), merged.threats.len());
                    merged.threats.push(threat);
                }
                Some(&at) => merge_threat(&mut merged.threats[at], &threat),
            }
        }
    }
    merged
}

fn merge_threat(kept: &mut ThreatDoc, other: &ThreatDoc) {
    if danger_rank(&other.danger) > danger_rank(&kept.danger) {
        kept.danger = other.danger.clone();
    }
    // Validated dates are YYYY-MM-DD, so text order is date order.
    if other.discovered < kept.discovered {
        kept.discovered = other.discovered.clone();
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
