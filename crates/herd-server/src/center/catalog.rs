//! The merged catalog every center process plans with: each vendor publishes its own feed, the
//! center merges the feeds into one `herd.catalog/v1` document, validates it, and keeps the
//! result as an immutable snapshot tagged with the store's catalog revision.
//!
//! Planners are kept one per worker thread (building one precomputes tables over the whole
//! catalog) and rebuilt when the snapshot or the second of `now` changes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use herd_core::{Catalog, Timestamp};
use herd_planner::Planner;
use herd_proto::ValidationError;
use herd_proto::catalog::{CATALOG_FORMAT, CatalogDoc, ThreatDoc};
use herd_store::StoredFeed;

/// One consistent catalog: the merged document, its validated model, and the revision.
#[derive(Debug)]
pub struct CatalogSnapshot {
    pub revision: u64,
    pub doc: CatalogDoc,
    pub catalog: Arc<Catalog>,
}

impl CatalogSnapshot {
    /// Merges and validates stored feeds (each was validated when it was published; the
    /// merge can still fail if the database was edited by hand).
    pub fn from_feeds(revision: u64, feeds: &[StoredFeed]) -> Result<CatalogSnapshot, String> {
        let mut docs = Vec::with_capacity(feeds.len());
        for feed in feeds {
            let doc: CatalogDoc = serde_json::from_str(&feed.doc).map_err(|err| {
                format!(
                    "the stored feed of vendor {} is not a catalog: {err}",
                    feed.vendor
                )
            })?;
            docs.push(doc);
        }
        let doc = merge(docs.iter());
        let catalog = doc
            .validate("merged catalog")
            .map_err(|err| err.to_string())?;
        Ok(CatalogSnapshot {
            revision,
            doc,
            catalog: Arc::new(catalog),
        })
    }
}

/// Merges vendors' feeds into one catalog document. Vendors, products, releases and coverage
/// are each vendor's own and are concatenated. Threats are shared: vendors describe the same
/// threat independently, so a threat listed by several feeds keeps the first name, the
/// highest danger and the earliest discovery date any of them gives — the conservative
/// reading, which makes Herd act sooner rather than later.
pub fn merge<'a>(docs: impl Iterator<Item = &'a CatalogDoc>) -> CatalogDoc {
    let mut merged = CatalogDoc {
        format: CATALOG_FORMAT.to_owned(),
        ..CatalogDoc::default()
    };
    let mut threat_at: HashMap<String, usize> = HashMap::new();
    for doc in docs {
        merged.vendors.extend(doc.vendors.iter().cloned());
        merged.products.extend(doc.products.iter().cloned());
        merged.releases.extend(doc.releases.iter().cloned());
        merged.coverage.extend(doc.coverage.iter().cloned());
        for threat in &doc.threats {
            match threat_at.get(&threat.id) {
                None => {
                    threat_at.insert(threat.id.clone(), merged.threats.len());
                    merged.threats.push(threat.clone());
                }
                Some(&at) => merge_threat(&mut merged.threats[at], threat),
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

fn danger_rank(danger: &str) -> u8 {
    match danger {
        "critical" => 4,
        "high" => 3,
        "medium" => 2,
        "low" => 1,
        _ => 0,
    }
}

/// Checks what a vendor may publish: only itself as vendor, only its own products (releases
/// and coverage can then only be about its products, since references must resolve inside the
/// feed). Returns every problem, like the format validation does.
pub fn check_vendor_scope(
    document: &str,
    doc: &CatalogDoc,
    vendor: &str,
) -> Result<(), ValidationError> {
    let mut problems = Vec::new();
    for (i, v) in doc.vendors.iter().enumerate() {
        if v.id != vendor {
            problems.push(herd_proto::Problem {
                path: format!("$.vendors[{i}].id"),
                message: format!("vendor {:?} may not publish for vendor {:?}", vendor, v.id),
            });
        }
    }
    if !doc.vendors.iter().any(|v| v.id == vendor) {
        problems.push(herd_proto::Problem {
            path: "$.vendors".to_owned(),
            message: format!("the feed must describe its own vendor {vendor:?}"),
        });
    }
    for (i, p) in doc.products.iter().enumerate() {
        if p.vendor != vendor {
            problems.push(herd_proto::Problem {
                path: format!("$.products[{i}].vendor"),
                message: format!(
                    "product {:?} belongs to vendor {:?}; vendor {:?} may only publish its own products",
                    p.id, p.vendor, vendor
                ),
            });
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ValidationError {
            document: document.to_owned(),
            problems,
        })
    }
}

thread_local! {
    static PLANNER: RefCell<Option<(u64, Planner<Arc<Catalog>>)>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's planner for `snapshot` at `now`, building it if needed.
pub fn with_planner<R>(
    snapshot: &CatalogSnapshot,
    now: Timestamp,
    f: impl FnOnce(&mut Planner<Arc<Catalog>>) -> R,
) -> R {
    PLANNER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let fresh = matches!(&*slot, Some((revision, planner))
            if *revision == snapshot.revision
                && std::ptr::eq(planner.catalog(), &*snapshot.catalog)
                && planner.now() == now);
        if !fresh {
            *slot = Some((
                snapshot.revision,
                Planner::new(snapshot.catalog.clone(), now),
            ));
        }
        let (_, planner) = slot.as_mut().expect("just filled");
        f(planner)
    })
}
