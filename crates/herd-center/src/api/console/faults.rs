//! The console's fault pages (SPEC §3.3): fault buckets with what the center decided for each
//! (a known cause and its remedy, a replacement, an alternative already present, or escalation),
//! a bucket's latest faults, and the fault database's rules and the replacement table.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use herd_proto::fault::{Alternative, Decision, FaultKind, FaultRule};
use maud::{Markup, html};

use super::view::{Section, ago, page};
use super::{PageResult, tier};
use crate::sessions::SignedIn;
use crate::{Center, unix_now};
use herd_client::percent_encode;

pub async fn faults(State(center): State<Arc<Center>>, user: SignedIn) -> PageResult {
    let buckets = center.fault_buckets().await?.buckets;
    let rules = center.fault_rules().await?.rules;
    let replacements = center.replacements().await?.entries;
    let now = unix_now();
    let escalated = buckets
        .iter()
        .filter(|b| b.decision == Decision::Escalated)
        .count();
    let body = html! {
        h1 { "Faults" }
        div.cards {
            div.card { div.big { (buckets.len()) } "fault buckets" }
            div.card { div.big { (escalated) } "escalated to operators" }
            div.card { div.big { (rules.len()) } "fault rules" }
            div.card { div.big { (replacements.len()) } "replacement entries" }
        }
        p.muted { "Faults of supervised programs are grouped by signature (program, version, kind, exit status or signal, top frames). A rule of the fault database names a known cause and its remedy; an unknown cause replaces the program with an approved alternative; with none, the bucket is escalated." }
        h2 { "Fault buckets" }
        @if buckets.is_empty() { p.ok-note { "No program has faulted." } } @else {
            table.faults { thead { tr {
                th scope="col" { "Bucket" } th scope="col" { "Program" } th scope="col" { "Kind" }
                th scope="col" { "Faults" } th scope="col" { "Terminals" } th scope="col" { "Decision" }
                th scope="col" { "Last seen" }
            } }
            tbody { @for b in &buckets { tr {
                th scope="row" { a href={"/console/faults/" (percent_encode(&b.id))} { code { (b.id) } } }
                td { (b.program) " " (b.version) }
                td { (kind_words(b.kind)) }
                td.num { (b.faults) } td.num { (b.terminals) }
                td { (decision_badge(b.decision)) }
                td { (ago(Some(&b.last_seen), now)) }
            } } } }
        }
        h2 { "Fault rules" }
        @if rules.is_empty() { p.muted { "The fault database is empty: " code { "herd fault-rules put" } " adds a rule." } } @else {
            table { thead { tr {
                th scope="col" { "Rule" } th scope="col" { "Program and versions" } th scope="col" { "Matches" }
                th scope="col" { "Cause" } th scope="col" { "Remedy" }
            } }
            tbody { @for r in &rules { tr {
                th scope="row" { (r.id) }
                td { (r.program) " " span.muted { (versions(r)) } }
                td { (conditions(r)) }
                td { (r.cause) } td { (r.remedy) }
            } } } }
        }
        h2 { "Replacement table" }
        @if replacements.is_empty() { p.muted { "No approved alternatives: " code { "herd replacements put" } " adds them." } } @else {
            table { thead { tr { th scope="col" { "Program" } th scope="col" { "Platform" } th scope="col" { "Alternatives, in order of preference" } } }
            tbody { @for e in &replacements { tr {
                th scope="row" { (e.program) } td { (e.platform) }
                td { ol.compact { @for a in &e.alternatives { li { (alternative(a)) } } } }
            } } } }
        }
    };
    Ok(page(
        "Faults",
        tier(&center),
        Some(&user),
        Some(Section::Faults),
        body,
    )
    .into_response())
}

pub async fn bucket(
    State(center): State<Arc<Center>>,
    user: SignedIn,
    Path(id): Path<String>,
) -> PageResult {
    let detail = center.fault_bucket(&id).await?;
    let b = &detail.bucket;
    let now = unix_now();
    let body = html! {
        p { a href="/console/faults" { "← Faults" } }
        h1 { "Fault bucket " code { (b.id) } }
        dl.facts {
            dt { "Program" } dd { (b.program) " " (b.version) }
            dt { "Kind" } dd { (kind_words(b.kind)) }
            dt { "Faults" } dd { (b.faults) " on " (b.terminals) " terminal(s)" }
            dt { "Seen" } dd { "first " (ago(Some(&b.first_seen), now)) ", last " (ago(Some(&b.last_seen), now)) }
            dt { "Decision" } dd { (decision_badge(b.decision))
                @if let Some(at) = &b.escalated_at { " — escalated " (ago(Some(at), now)) } }
            dt { "Signature" } dd { pre { (b.signature) } }
        }
        h2 { "Latest faults" }
        table { thead { tr {
            th scope="col" { "Terminal" } th scope="col" { "When" } th scope="col" { "Status" }
            th scope="col" { "Top frames" } th scope="col" { "Verdict" }
        } }
        tbody { @for f in &detail.faults { tr {
            th scope="row" { a href={"/console/terminals/" (percent_encode(&f.terminal))} { (f.terminal) } }
            td { (ago(Some(&f.verdict.at), now)) }
            td {
                @if let Some(code) = f.report.exit_code { "exit " (code) }
                @if let Some(signal) = f.report.signal { "signal " (signal) }
                @if f.report.restarts > 0 { div.muted { (f.report.restarts) " restart(s)" } }
                @if let Some(message) = &f.report.message { div { (message) } }
            }
            td { @if f.report.frames.is_empty() { span.muted { "none" } } @else {
                ol.compact { @for frame in f.report.frames.iter().take(5) { li { code { (frame) } } } } } }
            td { (decision_badge(f.verdict.decision))
                @if let Some(cause) = &f.verdict.cause { div { "Cause: " (cause) } }
                @if let Some(remedy) = &f.verdict.remedy { div { "Remedy: " (remedy) } }
                @if let Some(a) = &f.verdict.alternative { div { "Alternative: " (alternative(a)) } }
                @if let Some(o) = &f.outcome {
                    div { @if o.replaced { "Replaced: " } @else { "Not replaced, the old program restored: " } (o.message) }
                } }
        } } } }
    };
    Ok(page(
        &format!("Fault bucket {}", b.id),
        tier(&center),
        Some(&user),
        Some(Section::Faults),
        body,
    )
    .into_response())
}

fn kind_words(kind: FaultKind) -> &'static str {
    match kind {
        FaultKind::Crash => "crash (signal)",
        FaultKind::Exit => "abnormal exit",
        FaultKind::RestartLoop => "restart loop",
        FaultKind::Hang => "hang",
        FaultKind::Reported => "reported by the program",
    }
}

fn decision_badge(decision: Decision) -> Markup {
    let (words, class) = match decision {
        Decision::Known => ("known cause", "badge ok"),
        Decision::Replace => ("replace", "badge update"),
        Decision::UseAlternative => ("use the alternative present", "badge update"),
        Decision::Escalated => ("escalated", "badge bad"),
        Decision::Held => ("held: replacement rolling out", "badge"),
    };
    html! { span class=(class) { (words) } }
}

fn versions(rule: &FaultRule) -> String {
    match (&rule.version_from, &rule.version_below) {
        (None, None) => "every version".to_owned(),
        (Some(from), None) => format!("from {from}"),
        (None, Some(below)) => format!("below {below}"),
        (Some(from), Some(below)) => format!("from {from}, below {below}"),
    }
}

fn conditions(rule: &FaultRule) -> Markup {
    let kinds: Vec<&str> = rule.kinds.iter().map(|k| k.as_str()).collect();
    let numbers = |list: &[i32]| {
        list.iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    html! {
        @if !kinds.is_empty() { div { "kind " (kinds.join(", ")) } }
        @if !rule.exit_codes.is_empty() { div { "exit " (numbers(&rule.exit_codes)) } }
        @if !rule.signals.is_empty() { div { "signal " (numbers(&rule.signals)) } }
        @if let Some(p) = &rule.frame_pattern { div { "a frame contains " code { (p) } } }
        @if let Some(p) = &rule.definition_pattern { div { "a definition file contains " code { (p) } } }
        @if kinds.is_empty() && rule.exit_codes.is_empty() && rule.signals.is_empty()
            && rule.frame_pattern.is_none() && rule.definition_pattern.is_none() {
            span.muted { "any fault" }
        }
    }
}

fn alternative(a: &Alternative) -> Markup {
    html! {
        (a.program) " " (a.version) " " span.muted { "(" (a.vendor) ", "
            @if a.target.is_some() { "distributed as a signed target" } @else { "only where already installed" } ")" }
    }
}
