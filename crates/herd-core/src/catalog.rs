//! The validated catalog: vendors, products, releases with their packages, threats, and coverage.
//!
//! Everything refers to everything else by dense index (`ProductIdx`, `ThreatIdx`, …) so that
//! the planner can precompute tables instead of hashing strings. Built by
//! `herd_proto::catalog::CatalogDoc::validate`, which guarantees the invariants below.

use std::ops::Range;

use rustc_hash::FxHashMap;

use crate::{Danger, Date, PackageFormat, Sha256, Timestamp};

macro_rules! index_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u32);

        impl $name {
            pub fn get(self) -> usize {
                self.0 as usize
            }
        }
    };
}

index_type!(
    /// Index into [`Catalog::vendors`].
    VendorIdx
);
index_type!(
    /// Index into [`Catalog::products`].
    ProductIdx
);
index_type!(
    /// Index into [`Catalog::releases`].
    ReleaseIdx
);
index_type!(
    /// Index into [`Catalog::threats`].
    ThreatIdx
);
index_type!(
    /// Index into [`Catalog::platforms`].
    PlatformIdx
);

#[derive(Clone, Debug)]
pub struct Vendor {
    pub id: String,
    pub name: String,
}

#[derive(Clone, Debug)]
pub struct Product {
    pub id: String,
    pub vendor: VendorIdx,
    pub name: String,
    /// Sorted, without duplicates.
    pub platforms: Vec<PlatformIdx>,
    /// A vaccine product (what the planner switches terminals between) or another program.
    pub kind: ProductKind,
}

/// What a catalog product (and its packages' manifests) describes (SPEC §2 "Programs").
///
/// Fault recovery applies to any program a terminal runs, so the catalog describes programs as
/// well as vaccine products. Only vaccine products cover threats and are candidates of the
/// planner's coverage rules; a program is installed, health-checked and replaced by the same
/// transaction, but never chosen to protect a terminal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ProductKind {
    /// An antivirus product: a scan engine and its definitions (the default, and what every
    /// catalog and package written before programs existed describes).
    #[default]
    Vaccine,
    /// Any other program (the seed's example: company A's middleware).
    Program,
}

impl ProductKind {
    pub const ALL: [ProductKind; 2] = [ProductKind::Vaccine, ProductKind::Program];

    pub fn parse(text: &str) -> Result<ProductKind, String> {
        match text {
            "vaccine" => Ok(ProductKind::Vaccine),
            "program" => Ok(ProductKind::Program),
            _ => Err(format!(
                "unknown product kind {text:?}; expected \"vaccine\" or \"program\""
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProductKind::Vaccine => "vaccine",
            ProductKind::Program => "program",
        }
    }
}

impl std::fmt::Display for ProductKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug)]
pub struct Release {
    pub product: ProductIdx,
    pub version: String,
    pub pattern: String,
    pub seq: u64,
    pub published: Timestamp,
    /// At most one package per (platform, format); every platform is one of the product's.
    pub packages: Vec<Package>,
}

/// Hooks declared by an `archive` package, as paths relative to its unpacked directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hooks {
    pub post_install: Option<String>,
    pub pre_uninstall: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Package {
    pub platform: PlatformIdx,
    pub format: PackageFormat,
    pub sha256: Sha256,
    pub size: u64,
    /// The package name the platform's package manager knows (`deb`, `rpm`, `apk`; required for those).
    pub name: Option<String>,
    /// The MSI ProductCode, `{XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX}` (required for `msi`).
    pub product_code: Option<String>,
    pub hooks: Hooks,
}

#[derive(Clone, Debug)]
pub struct Threat {
    pub id: String,
    pub name: String,
    pub danger: Danger,
    pub discovered: Date,
    /// Other names of the same threat: other threat ids, or `sha256:<hex>` of files that are it
    /// (how a vendor's threat and one Herd's own set covers are recognised as one).
    pub aliases: Vec<String>,
    /// Since when Herd's own signature set covers it (SPEC §3.2.5). Herd's set is loaded on
    /// every terminal beside its vendor product, so from then on the threat is in no
    /// product's gap.
    pub herd_since: Option<Timestamp>,
}

impl Threat {
    /// Whether Herd's own set covers the threat at `now`.
    pub fn herd_covers(&self, now: Timestamp) -> bool {
        self.herd_since.is_some_and(|since| since <= now)
    }
}

/// What a vendor says about one product and one threat.
#[derive(Clone, Debug)]
pub struct Coverage {
    pub product: ProductIdx,
    pub threat: ThreatIdx,
    /// Covered from this definitions `seq` on; `None` means not covered (yet).
    pub since_seq: Option<u64>,
    /// The date coverage shipped; only set together with `since_seq`.
    pub covered_on: Option<Date>,
    /// When coverage is expected, for a threat not covered yet.
    pub expected: Option<Date>,
}

/// The validated catalog.
///
/// **Invariants** (guaranteed by validation):
/// ids are unique within vendors, products and threats; every index is in range;
/// `releases` is sorted by (product, seq) with unique seqs per product, and within a product
/// a larger seq always means a later `published`; there is at most one coverage statement per
/// (product, threat).
#[derive(Clone, Debug)]
pub struct Catalog {
    pub vendors: Vec<Vendor>,
    pub products: Vec<Product>,
    /// Platform names, sorted; every product platform and package platform is one of these.
    pub platforms: Vec<String>,
    pub releases: Vec<Release>,
    pub threats: Vec<Threat>,
    pub coverage: Vec<Coverage>,
    product_by_id: FxHashMap<String, ProductIdx>,
    releases_by_product: Vec<Range<usize>>,
}

impl Catalog {
    /// Assembles a catalog from parts that already satisfy the invariants above, except that
    /// releases may come in any order (they are sorted here).
    pub fn from_parts(
        vendors: Vec<Vendor>,
        products: Vec<Product>,
        platforms: Vec<String>,
        mut releases: Vec<Release>,
        threats: Vec<Threat>,
        coverage: Vec<Coverage>,
    ) -> Catalog {
        releases.sort_by_key(|r| (r.product, r.seq));
        debug_assert!(
            platforms.windows(2).all(|w| w[0] < w[1]),
            "platforms are sorted and unique"
        );
        let product_by_id = products
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.clone(), ProductIdx(i as u32)))
            .collect();
        let mut releases_by_product = vec![0..0; products.len()];
        let mut start = 0;
        while start < releases.len() {
            let product = releases[start].product;
            let end = start
                + releases[start..]
                    .iter()
                    .take_while(|r| r.product == product)
                    .count();
            releases_by_product[product.get()] = start..end;
            start = end;
        }
        Catalog {
            vendors,
            products,
            platforms,
            releases,
            threats,
            coverage,
            product_by_id,
            releases_by_product,
        }
    }

    pub fn product_by_id(&self, id: &str) -> Option<ProductIdx> {
        self.product_by_id.get(id).copied()
    }

    /// The vendor with this id (a catalog has few vendors: a scan costs less than a map).
    pub fn vendor_by_id(&self, id: &str) -> Option<VendorIdx> {
        self.vendors
            .iter()
            .position(|v| v.id == id)
            .map(|i| VendorIdx(i as u32))
    }

    pub fn platform_by_name(&self, name: &str) -> Option<PlatformIdx> {
        self.platforms
            .binary_search_by(|p| p.as_str().cmp(name))
            .ok()
            .map(|i| PlatformIdx(i as u32))
    }

    pub fn product(&self, idx: ProductIdx) -> &Product {
        &self.products[idx.get()]
    }

    pub fn release(&self, idx: ReleaseIdx) -> &Release {
        &self.releases[idx.get()]
    }

    pub fn threat(&self, idx: ThreatIdx) -> &Threat {
        &self.threats[idx.get()]
    }

    /// The indices of a product's releases, in ascending `seq` (and so `published`) order.
    pub fn releases_of(
        &self,
        product: ProductIdx,
    ) -> impl DoubleEndedIterator<Item = ReleaseIdx> + ExactSizeIterator {
        self.releases_by_product[product.get()]
            .clone()
            .map(|i| ReleaseIdx(i as u32))
    }

    /// A product's releases, in ascending `seq` order.
    pub fn product_releases(&self, product: ProductIdx) -> &[Release] {
        &self.releases[self.releases_by_product[product.get()].clone()]
    }

    /// The product's release with exactly this `seq`, if the catalog has it.
    pub fn release_by_seq(&self, product: ProductIdx, seq: u64) -> Option<ReleaseIdx> {
        let range = self.releases_by_product[product.get()].clone();
        let offset = range.start;
        self.releases[range]
            .binary_search_by_key(&seq, |r| r.seq)
            .ok()
            .map(|i| ReleaseIdx((offset + i) as u32))
    }
}
