//! A plan, a plan report and a terminal's whole gap in words, as `herd terminal ID` and
//! `herd terminal ID --gap` print them.

use herd_proto::api::{GapThreat, PlanReport, TerminalGap};
use herd_proto::plan::{PlanDoc, SeverityCounts, Step};

use super::fleet::installed_short;
use super::table::Table;

pub(super) fn describe_plan(
    plan: &PlanDoc,
    plan_id: Option<&str>,
    planned_at: Option<&str>,
) -> String {
    let release = |r: &Option<herd_proto::plan::ReleaseRef>| match r {
        Some(r) => format!("{} {} (seq {})", r.product, r.version, r.seq),
        None => "nothing".to_owned(),
    };
    let mut out = format!(
        "plan {} (planned {}):\n",
        plan_id.unwrap_or("-"),
        planned_at.unwrap_or("-")
    );
    let action = serde_json::to_value(plan.action)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{:?}", plan.action));
    let mut fields = Table::bare();
    fields.row(["  action:".to_owned(), action]);
    fields.row(["  reason:".to_owned(), plan.reason.clone()]);
    fields.row(["  from:".to_owned(), release(&plan.from)]);
    fields.row(["  to:".to_owned(), release(&plan.to)]);
    fields.row([
        "  uncovered now:".to_owned(),
        gap_line(
            &plan.uncovered_now,
            plan.uncovered_now_more,
            &plan.uncovered_now_counts,
        ),
    ]);
    fields.row([
        "  uncovered after:".to_owned(),
        gap_line(
            &plan.uncovered_after,
            plan.uncovered_after_more,
            &plan.uncovered_after_counts,
        ),
    ]);
    fields.row([
        "  consent:".to_owned(),
        if plan.consent_required {
            "the user is asked first".to_owned()
        } else {
            "not needed".to_owned()
        },
    ]);
    fields.row([
        "  not before:".to_owned(),
        plan.not_before.clone().unwrap_or_else(|| "-".to_owned()),
    ]);
    out.push_str(&fields.render());
    if !plan.steps.is_empty() {
        out.push_str("  steps:\n");
        for (i, step) in plan.steps.iter().enumerate() {
            let text = match step {
                Step::Fetch {
                    product,
                    version,
                    format,
                    sha256,
                    size,
                    target,
                } => match target {
                    Some(target) => format!(
                        "fetch {product} {version} ({format}, {size} bytes, sha256 {sha256}, signed target {target})"
                    ),
                    None => format!(
                        "fetch {product} {version} ({format}, {size} bytes, sha256 {sha256})"
                    ),
                },
                Step::Install {
                    product,
                    version,
                    format,
                    ..
                } => format!("install {product} {version} ({format})"),
                Step::Verify {
                    product,
                    version,
                    pattern,
                } => format!("verify {product} {version} detects its test pattern ({pattern})"),
                Step::Uninstall {
                    product,
                    version,
                    format,
                    ..
                } => format!("uninstall {product} {version} ({format})"),
            };
            out.push_str(&format!("    {}. {text}\n", i + 1));
        }
    }
    if !plan.alternatives.is_empty() {
        out.push_str("  alternatives under another policy:\n");
        for alt in &plan.alternatives {
            out.push_str(&format!(
                "    {} {} ({}) by {}: leaves {}\n",
                alt.product,
                alt.version,
                alt.pattern,
                alt.vendor,
                severity(&alt.uncovered)
            ));
        }
    }
    out
}

/// One gap of a plan in a line: the threats it lists, how many more there are, and the whole
/// gap by danger, e.g. `virus-a, virus-b … and 4,998 more (critical 3, high 120, medium 4,877)`.
/// A plan lists at most 20 threats of a gap (SPEC §4), so the count says how large it is;
/// `--gap` lists it all. A plan from a center older than the counts has none: no parentheses.
fn gap_line(listed: &[String], more: u64, counts: &SeverityCounts) -> String {
    let mut parts = Vec::new();
    if !listed.is_empty() {
        parts.push(listed.join(", "));
    }
    if more > 0 {
        parts.push(format!("… and {} more", thousands(more)));
    }
    if counts.total() > 0 {
        parts.push(format!("({})", by_danger(counts)));
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(" ")
    }
}

/// The nonzero counts, most dangerous first: `critical 3, high 120`.
fn by_danger(counts: &SeverityCounts) -> String {
    [
        ("critical", counts.critical),
        ("high", counts.high),
        ("medium", counts.medium),
        ("low", counts.low),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(danger, n)| format!("{danger} {}", thousands(u64::from(*n))))
    .collect::<Vec<_>>()
    .join(", ")
}

/// `4998` as `4,998`: gaps run to thousands, and grouped digits are read at a glance.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// The readable form of `herd terminal ID --gap`: each gap whole, as a table of threats in
/// the plan's order (most dangerous, then newest, first).
pub(super) fn describe_gap(gap: &TerminalGap) -> String {
    let mut out = format!(
        "terminal {}
",
        gap.terminal
    );
    for (when, threats) in [("now", &gap.uncovered_now), ("after", &gap.uncovered_after)] {
        if threats.is_empty() {
            out.push_str(&format!(
                "uncovered {when}: nothing
"
            ));
            continue;
        }
        out.push_str(&format!(
            "uncovered {when}: {} threat{} ({})
",
            thousands(threats.len() as u64),
            if threats.len() == 1 { "" } else { "s" },
            by_danger(&count_by_danger(threats))
        ));
        let mut table = Table::new(["  THREAT", "DANGER", "DISCOVERED", "NAME"]);
        for t in threats {
            table.row([
                format!("  {}", t.id),
                t.danger.clone(),
                t.discovered.clone(),
                t.name.clone(),
            ]);
        }
        out.push_str(&table.render());
    }
    out
}

fn count_by_danger(threats: &[GapThreat]) -> SeverityCounts {
    let mut counts = SeverityCounts::default();
    for t in threats {
        match t.danger.as_str() {
            "critical" => counts.critical += 1,
            "high" => counts.high += 1,
            "medium" => counts.medium += 1,
            "low" => counts.low += 1,
            // The wire names exactly these four; a newer center's fifth is still listed.
            _ => {}
        }
    }
    counts
}

fn severity(counts: &SeverityCounts) -> String {
    let parts: Vec<String> = [
        ("critical", counts.critical),
        ("high", counts.high),
        ("medium", counts.medium),
        ("low", counts.low),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(danger, n)| format!("{n} {danger}"))
    .collect();
    if parts.is_empty() {
        "nothing uncovered".to_owned()
    } else {
        format!("{} uncovered", parts.join(", "))
    }
}

pub(super) fn describe_report(report: &PlanReport) -> String {
    let outcome = serde_json::to_value(report.outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{:?}", report.outcome));
    let mut out = format!("last report: plan {} {outcome}\n", report.plan_id);
    if let Some(message) = &report.message {
        out.push_str(&format!("  {message}\n"));
    }
    for step in &report.steps {
        let status = serde_json::to_value(step.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{:?}", step.status));
        match &step.detail {
            Some(detail) => out.push_str(&format!(
                "    step {} {}: {status} ({detail})\n",
                step.step + 1,
                step.kind
            )),
            None => out.push_str(&format!(
                "    step {} {}: {status}\n",
                step.step + 1,
                step.kind
            )),
        }
    }
    if let Some(installed) = &report.installed {
        out.push_str(&format!(
            "  runs afterwards: {}\n",
            installed_short(Some(installed))
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_counts_read_most_dangerous_first() {
        let counts = SeverityCounts {
            critical: 0,
            high: 2,
            medium: 0,
            low: 1,
        };
        assert_eq!(severity(&counts), "2 high, 1 low uncovered");
        assert_eq!(severity(&SeverityCounts::default()), "nothing uncovered");
    }

    #[test]
    fn a_bounded_gap_says_how_many_more_and_how_dangerous_the_whole_is() {
        let listed = ["virus-a".to_owned(), "virus-b".to_owned()];
        let counts = SeverityCounts {
            critical: 3,
            high: 120,
            medium: 4_877,
            low: 0,
        };
        assert_eq!(
            gap_line(&listed, 4_998, &counts),
            "virus-a, virus-b … and 4,998 more (critical 3, high 120, medium 4,877)"
        );
        let one = SeverityCounts {
            high: 1,
            ..SeverityCounts::default()
        };
        assert_eq!(gap_line(&listed[..1], 0, &one), "virus-a (high 1)");
        // A plan from a center older than the counts.
        assert_eq!(
            gap_line(&listed[..1], 0, &SeverityCounts::default()),
            "virus-a"
        );
        assert_eq!(gap_line(&[], 0, &SeverityCounts::default()), "-");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn the_whole_gap_is_a_table_per_gap() {
        let threat = |id: &str, danger: &str, discovered: &str| GapThreat {
            id: id.to_owned(),
            name: id.replace('-', " "),
            danger: danger.to_owned(),
            discovered: discovered.to_owned(),
        };
        let gap = TerminalGap {
            terminal: "45a".to_owned(),
            uncovered_now: vec![
                threat("virus-a", "high", "2000-11-10"),
                threat("worm-long-name", "low", "2000-11-11"),
            ],
            uncovered_after: vec![],
        };
        assert_eq!(
            describe_gap(&gap),
            "terminal 45a
uncovered now: 2 threats (high 1, low 1)
  THREAT          DANGER  DISCOVERED  NAME
  virus-a         high    2000-11-10  virus a
  worm-long-name  low     2000-11-11  worm long name
uncovered after: nothing
"
        );
    }
}
