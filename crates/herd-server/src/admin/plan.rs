//! A plan and a plan report in words, as `herd terminal ID` prints them.

use herd_proto::api::PlanReport;
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
    let list = |items: &[String]| {
        if items.is_empty() {
            "-".to_owned()
        } else {
            items.join(", ")
        }
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
    fields.row(["  uncovered now:".to_owned(), list(&plan.uncovered_now)]);
    fields.row(["  uncovered after:".to_owned(), list(&plan.uncovered_after)]);
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
                } => format!("fetch {product} {version} ({format}, {size} bytes, sha256 {sha256})"),
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
}
