//! Herd's vocabulary: danger levels, dates and times, digests, package formats, and the
//! validated catalog and terminal model that the planner works on.
//!
//! This crate does no I/O and reads no clock. Values of [`Catalog`] and [`Terminal`] are
//! produced by validation in `herd-proto` (from the wire formats of SPEC §4); their doc
//! comments state the invariants that validation guarantees and the planner relies on.

mod catalog;
mod terminal;
mod time;
mod vocab;

pub use catalog::{
    Catalog, Coverage, Hooks, Package, PlatformIdx, Product, ProductIdx, ProductKind, Release,
    ReleaseIdx, Threat, ThreatIdx, Vendor, VendorIdx,
};
pub use terminal::{AllowedVendors, Apply, Consent, Hardware, Installed, Policy, Terminal};
pub use time::{DailyWindow, Date, Timestamp, TzOffset};
pub use vocab::{Danger, PackageFormat, Sha256, check_identifier, check_version};
