//! The validated terminal record: who it is, what it runs, and the policy it is planned under.

use std::sync::Arc;

use crate::{DailyWindow, Danger, PackageFormat, PlatformIdx, ProductIdx, TzOffset, VendorIdx};

/// Which changes the planner may propose (SPEC §4 `policy.apply`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Apply {
    /// The newest coverage from any maker: updates and vendor switches.
    LatestAnyVendor,
    /// Stay with the installed product: updates only.
    LatestSameVendor,
    /// Change nothing; only report exposure.
    Pinned,
}

impl Apply {
    pub fn parse(text: &str) -> Result<Apply, String> {
        match text {
            "latest-any-vendor" => Ok(Apply::LatestAnyVendor),
            "latest-same-vendor" => Ok(Apply::LatestSameVendor),
            "pinned" => Ok(Apply::Pinned),
            _ => Err(format!(
                "unknown policy {text:?}; expected one of latest-any-vendor, latest-same-vendor, pinned"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Apply::LatestAnyVendor => "latest-any-vendor",
            Apply::LatestSameVendor => "latest-same-vendor",
            Apply::Pinned => "pinned",
        }
    }
}

/// Whether the user must accept a change first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Consent {
    Auto,
    Ask,
}

impl Consent {
    pub fn parse(text: &str) -> Result<Consent, String> {
        match text {
            "auto" => Ok(Consent::Auto),
            "ask" => Ok(Consent::Ask),
            _ => Err(format!("unknown consent {text:?}; expected auto or ask")),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub apply: Apply,
    pub min_danger: Danger,
    pub consent: Consent,
    pub window: Option<DailyWindow>,
    /// The terminal's offset from UTC, used for `window` and to show `not_before`.
    pub tz: TzOffset,
    /// The vendors whose products the terminal may switch to (its group's allow-list), or
    /// `None` for any vendor. Updates of the installed product are never restricted.
    pub vendors: Option<AllowedVendors>,
}

/// A set of vendors by catalog index: sorted and without duplicates, shared (not copied) by
/// every terminal of a group, so comparing and hashing it costs what its few entries cost.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AllowedVendors(Arc<[VendorIdx]>);

impl AllowedVendors {
    pub fn new(mut vendors: Vec<VendorIdx>) -> AllowedVendors {
        vendors.sort_unstable();
        vendors.dedup();
        AllowedVendors(vendors.into())
    }

    pub fn contains(&self, vendor: VendorIdx) -> bool {
        self.0.binary_search(&vendor).is_ok()
    }

    pub fn as_slice(&self) -> &[VendorIdx] {
        &self.0
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hardware {
    pub kind: String,
    pub platform: String,
    /// The catalog's index of `platform`; `None` when no product in the catalog names it.
    pub platform_idx: Option<PlatformIdx>,
    pub model: Option<String>,
}

/// The vaccine product a terminal runs, as it reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    pub product: ProductIdx,
    pub version: String,
    pub seq: u64,
    pub pattern: String,
    pub format: PackageFormat,
}

/// A terminal record validated against one catalog (its indices refer to that catalog).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terminal {
    pub id: String,
    pub user: Option<String>,
    pub hardware: Hardware,
    /// `None` for a terminal that runs no vaccine product yet.
    pub installed: Option<Installed>,
    pub policy: Policy,
    /// The center's group the terminal is in, when known: rollout rings may reach it by group
    /// (not part of the terminal record; the center sets it after validation).
    pub group: Option<String>,
}
