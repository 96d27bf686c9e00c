//! Turning decisions into words and documents: the `reason` sentence of a plan, and the
//! plan's wire document (SPEC §4).
//!
//! What depends only on a decision (the bounded threat lists, the reason) is written once per
//! decision ([`DecisionText`]); rendering a plan then copies it beside the terminal's own fields.

use std::ops::Deref;

use herd_core::{Apply, Catalog, ProductIdx, ThreatIdx};
use herd_proto::plan::{self as wire, LISTED_THREATS, PlanDoc, ReleaseRef, SeverityCounts, Step};

use crate::{Action, Decision, Gap, Plan, Planner, Ranked, Severity};

/// How many threats a reason names before it says "and N more".
const NAMED_THREATS: usize = 3;

/// A gap as a plan lists it (SPEC §4): the first [`LISTED_THREATS`] ids, counts by danger,
/// and how many are not listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListedGap {
    pub ids: Vec<String>,
    pub counts: SeverityCounts,
    pub more: u64,
}

/// The words of one decision, shared by every plan with it, as values and as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecisionText {
    pub uncovered_now: ListedGap,
    pub uncovered_after: ListedGap,
    pub reason: String,
    pub json: DecisionJson,
}

/// Only the first ids are read: the listing order puts them at the front of the gap, and the
/// counts come from the prefix counts already known, so a gap of thousands costs as little
/// as a gap of twenty.
fn listed_gap(planner: &Planner<impl Deref<Target = Catalog>>, gap: &Gap) -> ListedGap {
    let ids: Vec<String> = gap_ids(planner, gap)
        .take(LISTED_THREATS)
        .map(|t| planner.catalog.threat(t).id.clone())
        .collect();
    let total = u64::from(gap.severity.total());
    ListedGap {
        more: total - ids.len() as u64,
        counts: counts(gap.severity),
        ids,
    }
}

pub(crate) fn decision_text(
    planner: &Planner<impl Deref<Target = Catalog>>,
    decision: &Decision,
) -> DecisionText {
    let uncovered_now = listed_gap(planner, &decision.uncovered_now);
    let uncovered_after = listed_gap(planner, &decision.uncovered_after);
    let reason = planner.write_reason(decision);
    DecisionText {
        json: decision_json(planner, decision, &uncovered_now, &uncovered_after, &reason),
        uncovered_now,
        uncovered_after,
        reason,
    }
}

/// `4,998`: counts in a sentence may run to thousands, and grouped digits read at a glance.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Everything a reason sentence is made from.
pub(crate) struct ReasonFacts<'a> {
    pub apply: Apply,
    pub has_platform: bool,
    pub restricted: bool,
    pub installed: Option<(ProductIdx, u64)>,
    pub action: Action,
    pub current: &'a Gap,
    pub update: Option<&'a Ranked>,
    pub chosen: Option<&'a Ranked>,
    pub after: &'a Gap,
    pub alternatives: &'a [Ranked],
    /// The installed release was halted and reverted (rollout rings): the plan goes back.
    pub reverting: bool,
}

/// `vaccine-a 5.1 (a-1101)`, or `vaccine-a at definitions seq 1105` for a seq the catalog does not list.
fn describe(
    planner: &Planner<impl Deref<Target = Catalog>>,
    product: ProductIdx,
    seq: u64,
) -> String {
    let catalog = &*planner.catalog;
    let id = &catalog.product(product).id;
    match catalog.release_by_seq(product, seq) {
        Some(r) => {
            let release = catalog.release(r);
            format!("{id} {} ({})", release.version, release.pattern)
        }
        None => format!("{id} at definitions seq {seq}"),
    }
}

fn gap_ids(
    planner: &Planner<impl Deref<Target = Catalog>>,
    gap: &Gap,
) -> impl Iterator<Item = ThreatIdx> {
    planner.index.gap(gap.product, gap.seq, gap.min_danger)
}

/// `virus-a (high)`, `virus-a (high) and virus-b (low)`, `… and 7 more`.
fn list_gap(planner: &Planner<impl Deref<Target = Catalog>>, gap: &Gap) -> String {
    let total = gap.severity.total() as usize;
    let named: Vec<String> = gap_ids(planner, gap)
        .take(NAMED_THREATS)
        .map(|t| {
            let threat = planner.catalog.threat(t);
            format!("{} ({})", threat.id, threat.danger)
        })
        .collect();
    match (named.as_slice(), total.saturating_sub(named.len())) {
        ([one], 0) => one.clone(),
        ([init @ .., last], 0) => format!("{} and {last}", init.join(", ")),
        (names, more) => format!("{} and {} more", names.join(", "), grouped(more as u64)),
    }
}

/// What the target does about the current gap: `covers it since 2000-11-12`, `covers all of them`,
/// or `leaves virus-c (low) uncovered`.
fn coverage_phrase(
    planner: &Planner<impl Deref<Target = Catalog>>,
    current: &Gap,
    target: &Ranked,
    after: &Gap,
) -> String {
    if !after.severity.is_empty() {
        return format!("leaves {} uncovered", list_gap(planner, after));
    }
    if current.severity.total() != 1 {
        return "covers all of them".to_string();
    }
    let threat = gap_ids(planner, current)
        .next()
        .expect("a gap of one has a threat");
    match planner.index.covered_since(target.product, threat) {
        Some((_, Some(date))) => format!("covers it since {date}"),
        Some((seq, None)) => format!("covers it from {}", describe(planner, target.product, seq)),
        None => "covers it".to_string(),
    }
}

fn describe_ranked(planner: &Planner<impl Deref<Target = Catalog>>, r: &Ranked) -> String {
    describe(planner, r.product, planner.catalog.release(r.release).seq)
}

/// What the best alternative would do, for an exposed terminal.
fn alternatives_phrase(
    planner: &Planner<impl Deref<Target = Catalog>>,
    current: &Gap,
    alternatives: &[Ranked],
) -> String {
    let Some(best) = alternatives.first() else {
        return String::new();
    };
    let what = if best.severity.is_empty() {
        if current.severity.total() == 1 {
            "would cover it".to_string()
        } else {
            "would cover all of them".to_string()
        }
    } else {
        format!(
            "would leave {} uncovered",
            grouped(best.severity.total().into())
        )
    };
    let more = match alternatives.len() - 1 {
        0 => String::new(),
        1 => " (1 more alternative listed)".to_string(),
        n => format!(" ({n} more alternatives listed)"),
    };
    format!("; {} {what}{more}", describe_ranked(planner, best))
}

pub(crate) fn reason(
    planner: &Planner<impl Deref<Target = Catalog>>,
    f: &ReasonFacts<'_>,
) -> String {
    let policy = format!("policy {}", f.apply.as_str());
    let from = f.installed.map(|(p, seq)| describe(planner, p, seq));
    let uncovered = || list_gap(planner, f.current);
    let min = f.current.min_danger;
    let today = planner.index.today;
    // Threats Herd's own set covers are in no gap; say so where the reason counts threats.
    let herd = match planner.index.herd_covered(min) {
        0 => String::new(),
        1 => " but the one Herd's own set covers".to_owned(),
        n => format!(" but the {} Herd's own set covers", grouped(n.into())),
    };
    let herd_more = match planner.index.herd_covered(min) {
        0 => String::new(),
        n => format!(" (Herd's own set covers {} more)", grouped(n.into())),
    };
    match (f.action, &from) {
        (Action::None, Some(from)) if f.current.severity.is_empty() => {
            let required = planner.index.severity(None, 0, min).total();
            if required == 0 {
                format!(
                    "{from} is installed and no threat with danger {min} or above has been discovered by {today}{herd}; {policy}"
                )
            } else {
                format!(
                    "{from} covers {} with danger {min} or above discovered by {today}{herd_more}; {policy}",
                    if required == 1 {
                        "the one threat".to_string()
                    } else {
                        format!("all {} threats", grouped(required.into()))
                    }
                )
            }
        }
        (Action::None, _) => format!(
            "no vaccine product is installed and no threat with danger {min} or above has been discovered by {today}{herd}; {policy}"
        ),
        (Action::Update | Action::Switch, _) => {
            let target = f.chosen.expect("update and switch have a target");
            let to = describe_ranked(planner, target);
            if let (true, Some(from)) = (f.reverting, &from) {
                return format!(
                    "{from} was withdrawn: its rollout was halted after failures on the terminals \
                     that received it; going back to {to}, which {}; {policy}",
                    if f.after.severity.is_empty() {
                        "covers every required threat".to_owned()
                    } else {
                        format!("leaves {} uncovered", list_gap(planner, f.after))
                    }
                );
            }
            let lead = match &from {
                Some(from) if f.current.severity.is_empty() => {
                    return format!("{to} is newer than {from}; {policy}");
                }
                Some(from) => format!("{from} does not cover {}", uncovered()),
                None => format!(
                    "no vaccine product is installed, leaving {} uncovered",
                    uncovered()
                ),
            };
            let update_note = match (f.action, f.update) {
                (Action::Switch, Some(u)) => format!(
                    "; its newest release {} would leave {} uncovered",
                    describe_ranked(planner, u),
                    grouped(u.severity.total().into())
                ),
                _ => String::new(),
            };
            format!(
                "{lead}{update_note}; {to} {}; {policy}",
                coverage_phrase(planner, f.current, target, f.after)
            )
        }
        (Action::Exposed, _) => {
            let lead = match &from {
                Some(from) => format!("{from} does not cover {}", uncovered()),
                None => format!(
                    "no vaccine product is installed, leaving {} uncovered",
                    uncovered()
                ),
            };
            let why = if !f.has_platform {
                "no product in the catalog supports this terminal's platform".to_string()
            } else {
                match f.apply {
                    Apply::Pinned => "policy pinned changes nothing".to_string(),
                    Apply::LatestSameVendor if from.is_some() => {
                        "no newer release of it is published for this platform, and policy latest-same-vendor keeps it".to_string()
                    }
                    Apply::LatestSameVendor => "policy latest-same-vendor installs no other product".to_string(),
                    Apply::LatestAnyVendor if f.restricted => {
                        "no product of the vendors this terminal's group allows would leave a less severe gap; policy latest-any-vendor".to_string()
                    }
                    Apply::LatestAnyVendor => {
                        "no product for this platform would leave a less severe gap; policy latest-any-vendor".to_string()
                    }
                }
            };
            format!(
                "{lead}; {why}{}",
                alternatives_phrase(planner, f.current, f.alternatives)
            )
        }
    }
}

fn counts(s: Severity) -> SeverityCounts {
    use herd_core::Danger::*;
    SeverityCounts {
        critical: s.count(Critical),
        high: s.count(High),
        medium: s.count(Medium),
        low: s.count(Low),
    }
}

/// `to` and the steps every plan with this decision shares (fetch, install, verify); the
/// uninstall step depends on what the terminal runs, so it is added per plan.
fn target_parts(
    planner: &Planner<impl Deref<Target = Catalog>>,
    d: &Decision,
) -> (Option<ReleaseRef>, Vec<Step>) {
    let catalog = &*planner.catalog;
    let Some(target) = d.target else {
        return (None, Vec::new());
    };
    let release = catalog.release(target.release);
    let package = &release.packages[target.package];
    let product = catalog.product(release.product).id.clone();
    let to = ReleaseRef {
        product: product.clone(),
        version: release.version.clone(),
        seq: release.seq,
    };
    let steps = vec![
        Step::Fetch {
            product: product.clone(),
            version: release.version.clone(),
            format: package.format.to_string(),
            sha256: package.sha256.to_string(),
            size: package.size,
            target: Some(crate::package_target(catalog, release, package)),
        },
        Step::Install {
            product: product.clone(),
            version: release.version.clone(),
            format: package.format.to_string(),
            script: d
                .install_script
                .as_deref()
                .expect("a target has an install script")
                .to_string(),
        },
        Step::Verify {
            product,
            version: release.version.clone(),
            pattern: release.pattern.clone(),
        },
    ];
    (Some(to), steps)
}

fn alternatives(
    planner: &Planner<impl Deref<Target = Catalog>>,
    d: &Decision,
) -> Vec<wire::Alternative> {
    let catalog = &*planner.catalog;
    d.alternatives
        .iter()
        .map(|r| {
            let release = catalog.release(r.release);
            let product = catalog.product(r.product);
            wire::Alternative {
                product: product.id.clone(),
                vendor: catalog.vendors[product.vendor.get()].id.clone(),
                version: release.version.clone(),
                seq: release.seq,
                pattern: release.pattern.clone(),
                uncovered: counts(r.severity),
            }
        })
        .collect()
}

pub(crate) fn plan_doc(
    planner: &Planner<impl Deref<Target = Catalog>>,
    plan: &Plan<'_>,
) -> PlanDoc {
    let catalog = &*planner.catalog;
    let d = &plan.decision;
    let terminal = plan.terminal;
    let text = planner.decision_text(d);
    let from = terminal.installed.as_ref().map(|i| ReleaseRef {
        product: catalog.product(i.product).id.clone(),
        version: i.version.clone(),
        seq: i.seq,
    });
    let (to, mut steps) = target_parts(planner, d);
    if let (Some(uninstall), Some(installed)) = (&plan.uninstall, &terminal.installed) {
        steps.push(Step::Uninstall {
            product: catalog.product(installed.product).id.clone(),
            version: installed.version.clone(),
            format: installed.format.to_string(),
            script: uninstall.script.to_string(),
            target: uninstall.target.as_deref().map(str::to_owned),
        });
    }
    PlanDoc {
        terminal: terminal.id.clone(),
        action: d.action.into(),
        uncovered_now: text.uncovered_now.ids.clone(),
        uncovered_now_counts: text.uncovered_now.counts,
        uncovered_now_more: text.uncovered_now.more,
        uncovered_after: text.uncovered_after.ids.clone(),
        uncovered_after_counts: text.uncovered_after.counts,
        uncovered_after_more: text.uncovered_after.more,
        from,
        to,
        consent_required: plan.consent_required,
        not_before: plan
            .not_before
            .map(|t| t.display_in(terminal.policy.tz).to_string()),
        steps,
        alternatives: alternatives(planner, d),
        reason: text.reason.clone(),
    }
}

/// The JSON of what every plan with one decision shares, serialised once by serde_json, each
/// part with its keys: `lists` from `"uncovered_now"` to `"uncovered_after_more"`, `to`,
/// `steps` (fetch, install, verify, comma-separated without brackets), and `tail` from
/// `"alternatives"` to the end of `"reason"`.
///
/// Escaping the scripts and copying every string into a `PlanDoc` cost most of a rendered
/// plan, and they are the same for every terminal with the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecisionJson {
    lists: String,
    to: String,
    steps: String,
    tail: String,
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("plan parts serialise")
}

fn decision_json(
    planner: &Planner<impl Deref<Target = Catalog>>,
    d: &Decision,
    now: &ListedGap,
    after: &ListedGap,
    reason: &str,
) -> DecisionJson {
    let (to, steps) = target_parts(planner, d);
    let steps: Vec<String> = steps.iter().map(json).collect();
    DecisionJson {
        lists: format!(
            "\"uncovered_now\":{},\"uncovered_now_counts\":{},\"uncovered_now_more\":{},\
             \"uncovered_after\":{},\"uncovered_after_counts\":{},\"uncovered_after_more\":{}",
            json(&now.ids),
            json(&now.counts),
            now.more,
            json(&after.ids),
            json(&after.counts),
            after.more
        ),
        to: format!("\"to\":{}", json(&to)),
        steps: steps.join(","),
        tail: format!(
            "\"alternatives\":{},\"reason\":{}",
            json(&alternatives(planner, d)),
            json(reason)
        ),
    }
}

/// Appends `text` as a JSON string, escaped exactly as serde_json escapes it.
fn push_str(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(&mut *out, text).expect("writing to a Vec cannot fail");
}

/// Writes the plan's JSON: the bytes `serde_json::to_writer(out, &plan_doc(planner, plan))`
/// writes, with the parts the decision shares copied from [`DecisionJson`] and only the
/// terminal's own fields (id, `from`, consent, `not_before`, the uninstall step) written here.
pub(crate) fn plan_json(
    planner: &Planner<impl Deref<Target = Catalog>>,
    plan: &Plan<'_>,
    out: &mut Vec<u8>,
) {
    use std::io::Write;
    let catalog = &*planner.catalog;
    let d = &plan.decision;
    let terminal = plan.terminal;
    let shared = &planner.decision_text(d).json;
    out.extend_from_slice(b"{\"terminal\":");
    push_str(out, &terminal.id);
    out.extend_from_slice(b",\"action\":\"");
    out.extend_from_slice(herd_proto::plan::Action::from(d.action).as_str().as_bytes());
    out.extend_from_slice(b"\",");
    out.extend_from_slice(shared.lists.as_bytes());
    out.extend_from_slice(b",\"from\":");
    match &terminal.installed {
        Some(installed) => {
            out.extend_from_slice(b"{\"product\":");
            push_str(out, &catalog.product(installed.product).id);
            out.extend_from_slice(b",\"version\":");
            push_str(out, &installed.version);
            let _ = write!(out, ",\"seq\":{}}}", installed.seq);
        }
        None => out.extend_from_slice(b"null"),
    }
    out.push(b',');
    out.extend_from_slice(shared.to.as_bytes());
    out.extend_from_slice(if plan.consent_required {
        b",\"consent_required\":true,\"not_before\":"
    } else {
        b",\"consent_required\":false,\"not_before\":"
    });
    match plan.not_before {
        // An RFC 3339 instant has nothing to escape.
        Some(t) => {
            let _ = write!(out, "\"{}\"", t.display_in(terminal.policy.tz));
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"steps\":[");
    out.extend_from_slice(shared.steps.as_bytes());
    if let (Some(uninstall), Some(installed)) = (&plan.uninstall, &terminal.installed) {
        if !shared.steps.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"kind\":\"uninstall\",\"product\":");
        push_str(out, &catalog.product(installed.product).id);
        out.extend_from_slice(b",\"version\":");
        push_str(out, &installed.version);
        let _ = write!(out, ",\"format\":\"{}\",\"script\":", installed.format);
        push_str(out, &uninstall.script);
        if let Some(target) = &uninstall.target {
            out.extend_from_slice(b",\"target\":");
            push_str(out, target);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"],");
    out.extend_from_slice(shared.tail.as_bytes());
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::grouped;

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(4998), "4,998");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }
}
