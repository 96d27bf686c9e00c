//! The plan (SPEC §4): what `herd plan` prints and a check-in returns.
//!
//! Field order here is the order in the JSON output, which is part of the contract:
//! the same plan always serialises to the same bytes.
//!
//! Agents in the field run older versions than the center, so reading a plan ignores fields it
//! does not know (a newer center may add some); a step of an unknown kind is still an error.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanDoc {
    pub terminal: String,
    pub action: Action,
    /// Required threats the installed product does not cover, most dangerous first.
    pub uncovered_now: Vec<String>,
    /// Required threats still uncovered once the plan is carried out.
    pub uncovered_after: Vec<String>,
    pub from: Option<ReleaseRef>,
    pub to: Option<ReleaseRef>,
    pub consent_required: bool,
    /// RFC 3339 in the terminal's offset: the plan must not start before this (its maintenance window).
    pub not_before: Option<String>,
    pub steps: Vec<Step>,
    /// For an `exposed` terminal: products that would close more of the gap under another policy, best first.
    pub alternatives: Vec<Alternative>,
    pub reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    None,
    Update,
    Switch,
    Exposed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRef {
    pub product: String,
    pub version: String,
    pub seq: u64,
}

/// One step of a plan, executed in order as one transaction by the agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Step {
    /// Download a package by digest and check its size and digest before anything is installed.
    Fetch {
        product: String,
        version: String,
        format: String,
        sha256: String,
        size: u64,
    },
    /// Install the new product beside the old one.
    Install {
        product: String,
        version: String,
        format: String,
        script: String,
    },
    /// Check that the new product loads its definitions and detects its own test pattern.
    Verify {
        product: String,
        version: String,
        pattern: String,
    },
    /// Remove the old product (or old version) once the new one is verified.
    Uninstall {
        product: String,
        version: String,
        format: String,
        script: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alternative {
    pub product: String,
    pub vendor: String,
    pub version: String,
    pub seq: u64,
    pub pattern: String,
    /// How many required threats would stay uncovered with it, by danger.
    pub uncovered: SeverityCounts,
}

/// Counts of uncovered threats by danger; compared critical first (SPEC §5 rule 2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeverityCounts {
    pub critical: u32,
    pub high: u32,
    pub medium: u32,
    pub low: u32,
}
