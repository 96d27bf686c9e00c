//! The plan (SPEC §4): what `herd plan` prints and a check-in returns.
//!
//! Field order here is the order in the JSON output, which is part of the contract:
//! the same plan always serialises to the same bytes.
//!
//! Agents in the field run older versions than the center, so reading a plan ignores fields it
//! does not know (a newer center may add some); a step of an unknown kind is still an error.
//! Fields added later carry `#[serde(default)]`, so a plan from an older center still reads.
//!
//! A plan bounds its threat lists (SPEC §4): a terminal far behind may lack thousands of
//! threats, and every check-in answer would carry all of them. It lists at most
//! [`LISTED_THREATS`] ids, the most dangerous and newest first, with counts by danger and how
//! many more there are; the full gap is available from the API.

use serde::{Deserialize, Serialize};

/// How many threat ids a plan lists per gap (`uncovered_now`, `uncovered_after`); the rest are
/// counted in `uncovered_*_more`. Twenty fills a notice or a console row and keeps a plan
/// under a few kilobytes whatever the gap.
pub const LISTED_THREATS: usize = 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanDoc {
    pub terminal: String,
    pub action: Action,
    /// Required threats the installed product does not cover: at most [`LISTED_THREATS`] ids,
    /// most dangerous first, then newest discovered first, then by id.
    pub uncovered_now: Vec<String>,
    /// The whole gap of `uncovered_now` by danger.
    #[serde(default)]
    pub uncovered_now_counts: SeverityCounts,
    /// How many uncovered threats `uncovered_now` does not list.
    #[serde(default)]
    pub uncovered_now_more: u64,
    /// Required threats still uncovered once the plan is carried out, listed as `uncovered_now`.
    pub uncovered_after: Vec<String>,
    /// The whole gap of `uncovered_after` by danger.
    #[serde(default)]
    pub uncovered_after_counts: SeverityCounts,
    /// How many threats still uncovered afterwards `uncovered_after` does not list.
    #[serde(default)]
    pub uncovered_after_more: u64,
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

/// What a plan does. Its name (`as_str`, serde, `FromStr`) is the wire text of `action` in a
/// plan, a check-in answer, the API's `?action=` filter and the metrics' labels: every program
/// takes it from here, so the spellings cannot drift apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    None,
    Update,
    Switch,
    Exposed,
}

impl Action {
    /// Every action, in the order people read them (and the metrics list them).
    pub const ALL: [Action; 4] = [
        Action::None,
        Action::Update,
        Action::Switch,
        Action::Exposed,
    ];

    /// The wire name, as serde writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::None => "none",
            Action::Update => "update",
            Action::Switch => "switch",
            Action::Exposed => "exposed",
        }
    }

    /// Every wire name, in the order of [`Action::ALL`] (for command-line value lists).
    pub const NAMES: [&'static str; 4] = [
        Action::ALL[0].as_str(),
        Action::ALL[1].as_str(),
        Action::ALL[2].as_str(),
        Action::ALL[3].as_str(),
    ];

    /// This action's position in [`Action::ALL`], for tables indexed by action.
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of [`Action::ALL`]'s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownAction(pub String);

impl std::fmt::Display for UnknownAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown action {:?} (expected one of {})",
            self.0,
            Action::NAMES.join(", ")
        )
    }
}

impl std::error::Error for UnknownAction {}

impl std::str::FromStr for Action {
    type Err = UnknownAction;

    fn from_str(name: &str) -> Result<Action, UnknownAction> {
        Action::ALL
            .into_iter()
            .find(|action| action.as_str() == name)
            .ok_or_else(|| UnknownAction(name.to_owned()))
    }
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
        /// The package's target in the signed TUF metadata (`herd_proto::distribution`); the
        /// agent refuses a package the verified metadata does not list with this size and digest.
        /// Absent from plans of centers older than signed distribution.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
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
        /// The target whose signed metadata the uninstall script was generated from (the
        /// installed release's package, or the product's newest of that format and platform).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
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

impl SeverityCounts {
    /// Every threat counted, whatever its danger.
    pub fn total(&self) -> u64 {
        u64::from(self.critical)
            + u64::from(self.high)
            + u64::from(self.medium)
            + u64::from(self.low)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan from a center older than the bounded lists still reads: the counts default to
    /// zero and `more` to none.
    #[test]
    fn a_plan_without_counts_still_reads() {
        let plan: PlanDoc = serde_json::from_str(
            r#"{"terminal": "45a", "action": "exposed", "uncovered_now": ["virus-a"],
                "uncovered_after": ["virus-a"], "from": null, "to": null, "consent_required": false,
                "not_before": null, "steps": [], "alternatives": [], "reason": "r"}"#,
        )
        .expect("an older plan reads");
        assert_eq!(plan.uncovered_now_counts, SeverityCounts::default());
        assert_eq!(plan.uncovered_now_more, 0);
    }

    #[test]
    fn counts_serialise_in_contract_order_after_their_list() {
        let plan = PlanDoc {
            terminal: "t".into(),
            action: Action::None,
            uncovered_now: vec!["virus-a".into()],
            uncovered_now_counts: SeverityCounts {
                critical: 0,
                high: 1,
                medium: 0,
                low: 2,
            },
            uncovered_now_more: 2,
            uncovered_after: vec![],
            uncovered_after_counts: SeverityCounts::default(),
            uncovered_after_more: 0,
            from: None,
            to: None,
            consent_required: false,
            not_before: None,
            steps: vec![],
            alternatives: vec![],
            reason: String::new(),
        };
        let json = serde_json::to_string(&plan).expect("serialises");
        assert!(
            json.contains(
                r#""uncovered_now":["virus-a"],"uncovered_now_counts":{"critical":0,"high":1,"medium":0,"low":2},"uncovered_now_more":2,"uncovered_after":[],"uncovered_after_counts":{"critical":0,"high":0,"medium":0,"low":0},"uncovered_after_more":0,"from":null"#
            ),
            "{json}"
        );
        assert_eq!(plan.uncovered_now_counts.total(), 3);
    }

    /// `as_str` is what serde writes, and `FromStr` reads it back: one spelling of each name.
    #[test]
    fn action_names_are_the_serde_names() {
        for (i, action) in Action::ALL.into_iter().enumerate() {
            let json = serde_json::to_string(&action).unwrap();
            assert_eq!(json, format!("\"{}\"", action.as_str()));
            assert_eq!(action.as_str().parse::<Action>(), Ok(action));
            assert_eq!(Action::NAMES[i], action.as_str());
            assert_eq!(action.index(), i);
        }
        assert!("Update".parse::<Action>().is_err());
    }
}
