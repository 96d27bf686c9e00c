//! The merged catalog every center process plans with: each vendor publishes its own feed, the
//! center merges the feeds into one `herd.catalog/v1` document, validates it, and keeps the
//! result as an immutable snapshot tagged with the store's catalog revision.
//!
//! Planning with it is `planners`: one planner per worker thread.

use std::collections::HashMap;
use std::sync::Arc;

use herd_core::Catalog;
use herd_proto::ValidationError;
use herd_proto::api::{CoverageCell, CoverageMatrix, CoverageProduct, CoverageRow};
use herd_proto::catalog::CatalogDoc;
use herd_proto::merge::{HERD_FEED_VENDOR, Scope, merge_herd, merge_scoped};
use herd_store::{Approval, Registry, StoredFeed};

/// One consistent catalog: its validated model and the store's revision it was built from.
///
/// Only the compact model is kept (about a quarter of the documents' size for SPEC §8's
/// catalog): the merged document, which an operator asks for rarely, is made from it on
/// demand ([`CatalogSnapshot::doc`]).
#[derive(Debug)]
pub struct CatalogSnapshot {
    pub revision: u64,
    pub catalog: Arc<Catalog>,
    /// The planner tables built for this catalog, which every worker thread's planner shares
    /// (see `planners`), for the span of time they hold.
    pub(crate) planner_tables: std::sync::Mutex<Option<herd_planner::Planner<Arc<Catalog>>>>,
    /// The releases of this catalog under rollout, as the planners take them (`rollouts`).
    gates: std::sync::RwLock<Arc<herd_planner::rings::RingGates>>,
}

impl CatalogSnapshot {
    /// Merges and validates stored feeds under the registry's scope (each was validated when
    /// it was published; the merge can still fail if the database was edited by hand). Each
    /// feed's text is dropped as soon as it is parsed, and the documents are merged without
    /// copies, so building a snapshot of a catalog of hundreds of MB does not hold it several
    /// times over.
    pub fn from_feeds(
        revision: u64,
        feeds: Vec<StoredFeed>,
        registry: &Registry,
    ) -> Result<CatalogSnapshot, String> {
        let mut docs = Vec::with_capacity(feeds.len());
        for feed in feeds {
            let doc: CatalogDoc = serde_json::from_str(&feed.doc).map_err(|err| {
                format!(
                    "the stored feed of vendor {} is not a catalog: {err}",
                    feed.vendor
                )
            })?;
            docs.push((feed.vendor, doc));
        }
        CatalogSnapshot::from_docs(revision, docs, &scope_of(registry))
            .map_err(|err| err.to_string())
    }

    /// Merges and validates vendors' documents, `(vendor, feed)`, under `scope`. The document
    /// stored as [`HERD_FEED_VENDOR`] is Herd's own threats (`herd_set`), folded in last with
    /// [`merge_herd`] so a vendor's threat of the same id or alias is one threat with them.
    pub fn from_docs(
        revision: u64,
        docs: Vec<(String, CatalogDoc)>,
        scope: &Scope,
    ) -> Result<CatalogSnapshot, ValidationError> {
        let (herd, vendors): (Vec<_>, Vec<_>) = docs
            .into_iter()
            .partition(|(vendor, _)| vendor == HERD_FEED_VENDOR);
        let mut merged = merge_scoped(vendors, scope);
        for (_, doc) in herd {
            merge_herd(&mut merged, doc.threats);
        }
        let catalog = merged.validate("merged catalog")?;
        drop(merged);
        // The documents were many small allocations; give their pages back to the system.
        crate::memory::release_freed();
        Ok(CatalogSnapshot::new(revision, Arc::new(catalog)))
    }

    pub fn new(revision: u64, catalog: Arc<Catalog>) -> CatalogSnapshot {
        CatalogSnapshot {
            revision,
            catalog,
            planner_tables: std::sync::Mutex::new(None),
            gates: Default::default(),
        }
    }

    /// The rollout gates planners of this catalog plan under.
    pub fn gates(&self) -> Arc<herd_planner::rings::RingGates> {
        self.gates.read().expect("gates lock").clone()
    }

    /// Plans from now on under `gates` (which must name this catalog's releases).
    pub fn set_gates(&self, gates: Arc<herd_planner::rings::RingGates>) {
        *self.gates.write().expect("gates lock") = gates;
    }

    /// The merged `herd.catalog/v1` document this catalog was built from.
    pub fn doc(&self) -> CatalogDoc {
        CatalogDoc::from_model(&self.catalog)
    }
}

impl CatalogSnapshot {
    /// Threats (most dangerous first) × products: since when each product covers each threat.
    pub fn coverage_matrix(&self) -> CoverageMatrix {
        let catalog = &*self.catalog;
        let products: Vec<CoverageProduct> = catalog
            .products
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let latest = catalog
                    .product_releases(herd_core::ProductIdx(i as u32))
                    .iter()
                    .max_by_key(|r| r.seq);
                CoverageProduct {
                    id: p.id.clone(),
                    vendor: catalog.vendors[p.vendor.get()].id.clone(),
                    name: p.name.clone(),
                    latest_version: latest.map(|r| r.version.clone()),
                    latest_seq: latest.map(|r| r.seq),
                }
            })
            .collect();
        let mut threats: Vec<usize> = (0..catalog.threats.len()).collect();
        threats.sort_by(|&a, &b| {
            let (a, b) = (&catalog.threats[a], &catalog.threats[b]);
            b.danger.cmp(&a.danger).then(a.id.cmp(&b.id))
        });
        // One lookup per cell: a scan of the coverage list per cell would cost threats ×
        // products × statements (10^12 with SPEC §8's catalog).
        let statements: HashMap<(u32, u32), &herd_core::Coverage> = catalog
            .coverage
            .iter()
            .map(|c| ((c.product.0, c.threat.0), c))
            .collect();
        let rows = threats
            .into_iter()
            .map(|t| {
                let threat = &catalog.threats[t];
                CoverageRow {
                    threat: threat.id.clone(),
                    name: threat.name.clone(),
                    danger: threat.danger.to_string(),
                    discovered: threat.discovered.to_string(),
                    herd_since: threat.herd_since.map(|at| at.to_string()),
                    cells: products
                        .iter()
                        .enumerate()
                        .map(|(p, product)| {
                            let statement = statements.get(&(p as u32, t as u32));
                            let since = statement.and_then(|c| c.since_seq);
                            CoverageCell {
                                covered: matches!((since, product.latest_seq), (Some(s), Some(l)) if s <= l),
                                since_seq: since,
                                covered_on: statement.and_then(|c| c.covered_on.map(|d| d.to_string())),
                                expected: statement.and_then(|c| c.expected.map(|d| d.to_string())),
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        CoverageMatrix {
            revision: self.revision,
            products,
            threats: rows,
        }
    }
}

/// The merge's scope from the store's registry: who owns each threat, and which threats and
/// vendors an operator has not (or not yet) let count.
pub fn scope_of(registry: &Registry) -> Scope {
    let mut scope = Scope::default();
    for row in &registry.threats {
        scope.owners.insert(row.threat.clone(), row.vendor.clone());
        if row.status != Approval::Approved {
            scope.withheld_threats.insert(row.threat.clone());
        }
    }
    for row in &registry.vendors {
        if row.status != Approval::Approved {
            scope.withheld_vendors.insert(row.vendor.clone());
        }
    }
    scope
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
    for (i, t) in doc.threats.iter().enumerate() {
        if t.herd_since.is_some() {
            problems.push(herd_proto::Problem {
                path: format!("$.threats[{i}].herd_since"),
                message: format!(
                    "only the center says since when Herd's own set covers a threat; vendor {vendor:?} may not"
                ),
            });
        }
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
