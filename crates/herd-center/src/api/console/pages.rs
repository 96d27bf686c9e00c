//! The console's pages: each reads what the API's handlers read (the same `Center` services),
//! and renders it for people. Reads need a session; actions need an operator's session and
//! the session's CSRF token (see `mod.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use herd_proto::api::{PlacementRule, PlacementRules, TerminalSummary};
use herd_proto::plan::Action;
use herd_store::{FleetCountRow, Recency};
use maud::{Markup, html};
use serde::Deserialize;

use super::view::{self, Bar, Section, Tier, action_badge, ago, csrf_field, may_act, page};
use super::{Form, PageError, PageResult, tier};
use crate::fleet::FleetQuery;
use crate::sessions::{ConsoleRole, NoSession, SignedIn};
use crate::{Center, rfc3339, unix_now};
use herd_client::percent_encode;

/// Rows of the coverage matrix one page shows (filter to see others).
const COVERAGE_PAGE: usize = 200;
/// Terminals one page of a listing shows.
const TERMINALS_PAGE: u32 = 100;

// ---------------------------------------------------------------------------------------------
// Sign-in

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    why: Option<String>,
}

pub async fn login_form(
    State(center): State<Arc<Center>>,
    Query(query): Query<LoginQuery>,
) -> Markup {
    let why = query.why.as_deref().and_then(NoSession::parse);
    login_page(tier(&center), why.map(NoSession::explain), None)
}

/// The sign-in page, with a notice (why the user is here) or an error (why sign-in failed).
pub fn login_page(tier: Tier, notice: Option<&str>, error: Option<&str>) -> Markup {
    page(
        "Sign in",
        tier,
        None,
        None,
        html! {
            h1 { "Sign in" }
            (view::outcome(notice, error))
            form.signin method="post" action="/console/login" {
                label for="token" { "API token (operator, analyst or viewer)" }
                input #token type="password" name="token" autocomplete="off" required autofocus;
                button type="submit" { "Sign in" }
            }
            p.muted {
                "No token at hand? On the center, " code { "herd console link" }
                " prints a one-time sign-in link."
            }
        },
    )
}

/// A one-time link asks before it is used, so a link preview or prefetch cannot spend it.
pub async fn link_confirm(State(center): State<Arc<Center>>, Path(secret): Path<String>) -> Markup {
    page(
        "Sign in",
        tier(&center),
        None,
        None,
        html! {
            h1 { "Sign in with a one-time link" }
            form method="post" action={"/console/link/" (secret)} {
                button type="submit" autofocus { "Sign in" }
            }
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Overview

pub async fn overview(State(center): State<Arc<Center>>, user: SignedIn) -> PageResult {
    let now = unix_now();
    let counts = center.store.fleet_counts(now).await?;
    let total: u64 = counts.iter().map(|row| row.count).sum();
    let by_action = sum_by(&counts, |row| row.action.clone());
    let by_recency = sum_by(&counts, |row| row.recency);
    let by_group = table_by(&counts, |row| row.group.clone());
    let by_site = table_by(&counts, |row| {
        row.site.clone().unwrap_or_else(|| "(center)".to_owned())
    });
    let reports = center.store.plan_reports_by_hour(now - 24 * 3600).await?;
    let snapshot = center.catalog();
    let threats = snapshot.coverage_matrix().threats.len();
    let actions = action_columns();
    let tier = tier(&center);
    let body = html! {
        h1 { "Fleet overview" }
        section.cards aria-label="Terminals by plan" {
            div.card { span.big { (total) } " terminals" }
            @for action in &actions {
                @let n = by_action.get(action).copied().unwrap_or(0);
                a.card href=(action_href(action.as_deref())) {
                    span.big { (n) } " " (action_badge(action.as_deref()))
                }
            }
        }
        p.muted {
            "Catalog revision " (snapshot.revision) ", " (threats) " threats. "
            "A terminal is " strong { "protected" } " when its plan has nothing to do; "
            strong { "exposed" } " when no product it may run covers every threat its policy requires."
        }
        (reports_chart(&reports, now))
        section {
            h2 { "Last check-in" }
            (view::bar_chart(
                "Terminals by when they last checked in",
                &Recency::ALL.iter().map(|recency| Bar {
                    label: recency_short(*recency).to_owned(),
                    parts: vec![("ok", by_recency.get(recency).copied().unwrap_or(0))],
                    title: format!("{}: {}", recency.label(), by_recency.get(recency).copied().unwrap_or(0)),
                }).collect::<Vec<_>>(),
                &[("ok", "terminals")],
                48,
            ))
        }
        section {
            h2 { "By group" }
            (count_table("Group", &by_group, &actions, |group| format!("/console/terminals?group={}", percent_encode(group))))
        }
        @if tier == Tier::Center {
            section {
                h2 { "By site" }
                (count_table("Site", &by_site, &actions, |_| "/console/sites".to_owned()))
            }
        }
        section {
            h2 { "Live" }
            p { "What terminals report appears here as it arrives; " a href="/console/live" { "see everything live" } "." }
            table.live data-live="8" {
                thead { tr { th { "When" } th { "Terminal" } th { "What" } th { "Detail" } } }
                tbody #live-rows {}
            }
        }
    };
    Ok(page("Overview", tier, Some(&user), Some(Section::Overview), body).into_response())
}

fn action_columns() -> Vec<Option<String>> {
    Action::ALL
        .iter()
        .map(|action| Some(action.as_str().to_owned()))
        .chain([None])
        .collect()
}

fn action_href(action: Option<&str>) -> String {
    match action {
        Some(action) => format!("/console/terminals?action={action}"),
        None => "/console/terminals".to_owned(),
    }
}

fn recency_short(recency: Recency) -> &'static str {
    match recency {
        Recency::WithinHour => "<1h",
        Recency::WithinDay => "<1d",
        Recency::WithinWeek => "<7d",
        Recency::Older => "older",
        Recency::Never => "never",
    }
}

fn sum_by<K: Ord>(rows: &[FleetCountRow], key: impl Fn(&FleetCountRow) -> K) -> BTreeMap<K, u64> {
    let mut sums = BTreeMap::new();
    for row in rows {
        *sums.entry(key(row)).or_default() += row.count;
    }
    sums
}

type CountTable = BTreeMap<String, BTreeMap<Option<String>, u64>>;

fn table_by(rows: &[FleetCountRow], key: impl Fn(&FleetCountRow) -> String) -> CountTable {
    let mut table = CountTable::new();
    for row in rows {
        *table
            .entry(key(row))
            .or_default()
            .entry(row.action.clone())
            .or_default() += row.count;
    }
    table
}

fn count_table(
    what: &str,
    table: &CountTable,
    actions: &[Option<String>],
    link: impl Fn(&str) -> String,
) -> Markup {
    html! {
        @if table.is_empty() {
            p.muted { "No terminals yet." }
        } @else {
            table {
                thead { tr {
                    th scope="col" { (what) }
                    @for action in actions { th scope="col" { (action_badge(action.as_deref())) } }
                    th scope="col" { "Total" }
                } }
                tbody {
                    @for (name, counts) in table {
                        tr {
                            th scope="row" { a href=(link(name)) { (name) } }
                            @for action in actions {
                                td.num { (counts.get(action).copied().unwrap_or(0)) }
                            }
                            td.num { (counts.values().sum::<u64>()) }
                        }
                    }
                }
            }
        }
    }
}

/// Plan reports per hour over the last day: the wave of terminals protected after each release.
fn reports_chart(reports: &[(i64, String, u64)], now: i64) -> Markup {
    let first_hour = (now - 23 * 3600) / 3600 * 3600;
    let bars: Vec<Bar> = (0..24)
        .map(|i| {
            let hour = first_hour + i * 3600;
            let count = |outcome: &str| {
                reports
                    .iter()
                    .filter(|(h, o, _)| *h == hour && o == outcome)
                    .map(|(_, _, n)| n)
                    .sum::<u64>()
            };
            let succeeded = count("succeeded");
            let rolled_back = count("rolled_back");
            let other = count("declined") + count("other");
            let label = rfc3339(hour);
            Bar {
                label: label.get(11..13).unwrap_or("").to_owned(),
                parts: vec![("ok", succeeded), ("bad", rolled_back), ("muted", other)],
                title: format!(
                    "{label}: {succeeded} succeeded, {rolled_back} rolled back, {other} declined or other"
                ),
            }
        })
        .collect();
    html! {
        section {
            h2 { "Protection over time" }
            (view::bar_chart(
                "Plans carried out per hour over the last 24 hours (UTC): after each release, the wave of terminals it protected",
                &bars,
                &[("ok", "succeeded"), ("bad", "rolled back"), ("muted", "declined or other")],
                22,
            ))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Terminals

#[derive(Debug, Default, Deserialize)]
pub struct TerminalsQuery {
    q: Option<String>,
    group: Option<String>,
    action: Option<String>,
    after: Option<String>,
}

pub async fn terminals(
    State(center): State<Arc<Center>>,
    user: SignedIn,
    Query(query): Query<TerminalsQuery>,
) -> PageResult {
    let nonempty = |value: &Option<String>| value.clone().filter(|v| !v.is_empty());
    let list = center
        .terminals(FleetQuery {
            group: nonempty(&query.group),
            action: nonempty(&query.action),
            after: nonempty(&query.after),
            limit: Some(TERMINALS_PAGE),
            search: nonempty(&query.q).map(|q| q.trim().to_owned()),
        })
        .await?;
    let groups = center.groups().await?;
    let now = unix_now();
    let next = list.next.as_ref().map(|after| {
        format!(
            "/console/terminals?q={}&group={}&action={}&after={}",
            percent_encode(query.q.as_deref().unwrap_or("")),
            percent_encode(query.group.as_deref().unwrap_or("")),
            percent_encode(query.action.as_deref().unwrap_or("")),
            percent_encode(after)
        )
    });
    let body = html! {
        h1 { "Terminals" }
        form.filters method="get" action="/console/terminals" role="search" {
            label { "Search id or user " input type="search" name="q" value=(query.q.as_deref().unwrap_or("")); }
            label { "Group "
                select name="group" {
                    option value="" { "any" }
                    @for group in &groups.groups {
                        option value=(group.id) selected[query.group.as_deref() == Some(group.id.as_str())] { (group.id) }
                    }
                }
            }
            label { "Plan "
                select name="action" {
                    option value="" { "any" }
                    @for action in Action::ALL {
                        option value=(action.as_str()) selected[query.action.as_deref() == Some(action.as_str())] { (action.as_str()) }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
        @if query.after.is_some() {
            p.muted { "Continuing after " code { (query.after.as_deref().unwrap_or("")) } ". " a href="/console/terminals" { "Back to the start" } }
        }
        (terminal_table(&list.terminals, now))
        @if let Some(next) = next {
            p { a rel="next" href=(next) { "Next page →" } }
        }
    };
    Ok(page(
        "Terminals",
        tier(&center),
        Some(&user),
        Some(Section::Terminals),
        body,
    )
    .into_response())
}

fn terminal_table(terminals: &[TerminalSummary], now: i64) -> Markup {
    html! {
        @if terminals.is_empty() {
            p.muted { "No terminal matches." }
        } @else {
            table.terminals {
                thead { tr {
                    th scope="col" { "Terminal" } th scope="col" { "User" } th scope="col" { "Group" }
                    th scope="col" { "Device" } th scope="col" { "Product" } th scope="col" { "Plan" }
                    th scope="col" { "Uncovered" } th scope="col" { "Last check-in" } th scope="col" { "Address" }
                } }
                tbody {
                    @for t in terminals {
                        tr {
                            td { a href={"/console/terminals/" (percent_encode(&t.id))} { (t.id) } }
                            td { (t.user.as_deref().unwrap_or("")) }
                            td { (t.group) }
                            td { (t.hardware.kind) " · " (t.hardware.platform) }
                            td { @if let Some(i) = &t.installed { (i.product) " " (i.version) } @else { span.muted { "none" } } }
                            td { (action_badge(t.action.as_deref())) }
                            td.num { (t.uncovered) }
                            td { (ago(t.last_checkin.as_deref(), now)) }
                            td { (t.last_address.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    }
}

pub async fn terminal(
    State(center): State<Arc<Center>>,
    user: SignedIn,
    Path(id): Path<String>,
) -> PageResult {
    let detail = center.terminal_detail(&id).await?;
    let gap = match &detail.plan {
        Some(plan) if plan.action != Action::None => center.terminal_gap(&id).await.ok(),
        _ => None,
    };
    let stored = center.store.events_count(&id).await?;
    let events = center
        .store
        .events(Some(&id), stored.saturating_sub(50), 50)
        .await?;
    let now = unix_now();
    let t = &detail.summary;
    let body = html! {
        h1 { "Terminal " (t.id) }
        dl.facts {
            dt { "User" } dd { (t.user.as_deref().unwrap_or("—")) }
            dt { "Group" } dd { a href={"/console/terminals?group=" (percent_encode(&t.group))} { (t.group) } }
            dt { "Device" } dd { (t.hardware.kind) " · " (t.hardware.platform) @if let Some(m) = &t.hardware.model { " · " (m) } }
            dt { "Installed" } dd { @if let Some(i) = &t.installed { (i.product) " " (i.version) " (definitions " (i.seq) ", " (i.pattern) ")" } @else { "nothing" } }
            dt { "Time zone" } dd { (t.tz.as_deref().unwrap_or("—")) }
            dt { "Enrolled" } dd { (ago(Some(&t.enrolled_at), now)) }
            dt { "Last check-in" } dd { (ago(t.last_checkin.as_deref(), now)) }
        }
        h2 { "Plan " (action_badge(t.action.as_deref())) }
        @match &detail.plan {
            None => p.muted { "It has not checked in yet." },
            Some(plan) => {
                p.reason { (plan.reason) }
                @if let (Some(from), Some(to)) = (&plan.from, &plan.to) {
                    p { "From " (from.product) " " (from.version) " (" (from.seq) ") to " (to.product) " " (to.version) " (" (to.seq) ")" }
                } @else if let Some(to) = &plan.to {
                    p { "Install " (to.product) " " (to.version) " (" (to.seq) ")" }
                }
                @if plan.consent_required { p.notice { "The user's consent is required." } }
                @if let Some(at) = &plan.not_before { p { "Not before " (at) " (its maintenance window)." } }
                @if !plan.steps.is_empty() {
                    h3 { "Steps" }
                    ol.steps { @for step in &plan.steps { li { (step_words(step)) } } }
                }
                @if let Some(gap) = &gap {
                    h3 { "Why: threats not covered now" }
                    (gap_table(&gap.uncovered_now))
                    @if !gap.uncovered_after.is_empty() {
                        h3 { "Still uncovered after the plan" }
                        (gap_table(&gap.uncovered_after))
                    }
                }
                @if !plan.alternatives.is_empty() {
                    h3 { "What would cover it under another policy" }
                    table { thead { tr { th { "Product" } th { "Vendor" } th { "Version" } th { "Still uncovered" } } }
                        tbody { @for alt in &plan.alternatives { tr {
                            td { (alt.product) } td { (alt.vendor) } td { (alt.version) " (" (alt.seq) ")" }
                            td { (severity_words(&alt.uncovered)) }
                        } } } }
                }
            }
        }
        h2 { "Last plan carried out" }
        @match &detail.last_report {
            None => p.muted { "No plan report yet." },
            Some(report) => {
                p { "Plan " code { (report.plan_id.get(..12).unwrap_or(&report.plan_id)) } ": " strong { (format!("{:?}", report.outcome).to_lowercase()) }
                    @if let Some(message) = &report.message { " — " (message) } }
                ol.steps { @for step in &report.steps { li {
                    (step.kind) " — " (format!("{:?}", step.status).to_lowercase())
                    @if let Some(detail) = &step.detail { ": " (detail) }
                } } }
            }
        }
        h2 { "Network map" }
        table { thead { tr { th { "Address" } th { "First seen" } th { "Last seen" } th { "Check-ins" } } }
            tbody { @for a in &detail.addresses { tr {
                td { (a.address) } td { (ago(Some(&a.first_seen), now)) } td { (ago(Some(&a.last_seen), now)) } td.num { (a.checkins) }
            } } } }
        @if !detail.interfaces.is_empty() {
            table { thead { tr { th { "Interface" } th { "MAC" } th { "Address" } th { "Last seen" } th { "Current" } } }
                tbody { @for i in &detail.interfaces { tr {
                    td { (i.name) } td { (i.mac.as_deref().unwrap_or("")) } td { (i.address.as_deref().unwrap_or("")) }
                    td { (ago(Some(&i.last_seen), now)) } td { @if i.current { "yes" } @else { "no" } }
                } } } }
        }
        h2 { "Events" }
        @if events.is_empty() { p.muted { "None stored." } } @else {
            table { thead { tr { th { "#" } th { "When" } th { "Kind" } th { "Detail" } } }
                tbody { @for e in events.iter().rev() { tr {
                    td.num { (e.seq) } td { (ago(Some(&rfc3339(e.at)), now)) } td { (e.kind) }
                    td { (crate::live::summarise_event(&e.kind, &e.data)) }
                } } } }
        }
    };
    let title = format!("Terminal {}", t.id);
    Ok(page(
        &title,
        tier(&center),
        Some(&user),
        Some(Section::Terminals),
        body,
    )
    .into_response())
}

fn step_words(step: &herd_proto::plan::Step) -> String {
    let value = serde_json::to_value(step).unwrap_or_default();
    let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("step");
    let detail: Vec<String> = value
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, _)| !matches!(key.as_str(), "kind" | "sha256" | "size" | "target"))
        .map(|(key, value)| match value.as_str() {
            Some(text) => format!("{key} {text}"),
            None => format!("{key} {value}"),
        })
        .collect();
    format!("{kind}: {}", detail.join(", "))
}

fn severity_words(counts: &herd_proto::plan::SeverityCounts) -> String {
    serde_json::to_value(counts)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .map(|map| {
            let parts: Vec<String> = map
                .iter()
                .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
                .map(|(danger, n)| format!("{n} {danger}"))
                .collect();
            if parts.is_empty() {
                "nothing".to_owned()
            } else {
                parts.join(", ")
            }
        })
        .unwrap_or_default()
}

fn gap_table(threats: &[herd_proto::api::GapThreat]) -> Markup {
    html! {
        table { thead { tr { th { "Threat" } th { "Name" } th { "Danger" } th { "Discovered" } } }
            tbody { @for t in threats { tr {
                td { code { (t.id) } } td { (t.name) } td { span class={"danger " (t.danger)} { (t.danger) } } td { (t.discovered) }
            } } } }
    }
}

// ---------------------------------------------------------------------------------------------
// Exposed

#[derive(Debug, Default, Deserialize)]
pub struct ExposedQuery {
    group: Option<String>,
    after: Option<String>,
}

pub async fn exposed(
    State(center): State<Arc<Center>>,
    user: SignedIn,
    Query(query): Query<ExposedQuery>,
) -> PageResult {
    let list = center
        .exposed(FleetQuery {
            group: query.group.clone().filter(|g| !g.is_empty()),
            after: query.after.clone().filter(|a| !a.is_empty()),
            limit: Some(TERMINALS_PAGE),
            ..FleetQuery::default()
        })
        .await?;
    // What would cover each: the plan's alternatives, best first.
    let mut rows = Vec::with_capacity(list.terminals.len());
    for t in &list.terminals {
        let detail = center.terminal_detail(&t.id).await?;
        rows.push((t.clone(), detail.plan));
    }
    let now = unix_now();
    let body = html! {
        h1 { "Exposed terminals" }
        p.muted { "No product these terminals may run covers every threat their policy requires. Open one to read why." }
        @if rows.is_empty() { p.ok-note { "No terminal is exposed." } } @else {
            table.terminals { thead { tr {
                th scope="col" { "Terminal" } th scope="col" { "Group" } th scope="col" { "Installed" }
                th scope="col" { "Uncovered" } th scope="col" { "Why" } th scope="col" { "Would cover it" } th scope="col" { "Last check-in" }
            } }
            tbody { @for (t, plan) in &rows { tr {
                td { a href={"/console/terminals/" (percent_encode(&t.id))} { (t.id) } }
                td { (t.group) }
                td { @if let Some(i) = &t.installed { (i.product) " " (i.version) } @else { "none" } }
                td.num { (t.uncovered) }
                td { @if let Some(plan) = plan { (plan.reason) } }
                td { @if let Some(plan) = plan {
                    @if plan.alternatives.is_empty() { span.muted { "nothing in the catalog" } }
                    @for alt in plan.alternatives.iter().take(3) { div { (alt.product) " " (alt.version) " (" (alt.vendor) "; leaves " (severity_words(&alt.uncovered)) ")" } }
                } }
                td { (ago(t.last_checkin.as_deref(), now)) }
            } } } }
        }
        @if let Some(next) = &list.next {
            p { a rel="next" href={"/console/exposed?group=" (percent_encode(query.group.as_deref().unwrap_or(""))) "&after=" (percent_encode(next))} { "Next page →" } }
        }
    };
    Ok(page(
        "Exposed",
        tier(&center),
        Some(&user),
        Some(Section::Exposed),
        body,
    )
    .into_response())
}

// ---------------------------------------------------------------------------------------------
// Coverage

#[derive(Debug, Default, Deserialize)]
pub struct CoverageQuery {
    q: Option<String>,
    danger: Option<String>,
    sort: Option<String>,
    /// Show only threats some product does not cover.
    gaps: Option<String>,
    page: Option<usize>,
}

pub async fn coverage(
    State(center): State<Arc<Center>>,
    user: SignedIn,
    Query(query): Query<CoverageQuery>,
) -> PageResult {
    let matrix = center.catalog().coverage_matrix();
    let needle = query.q.as_deref().unwrap_or("").trim().to_lowercase();
    let danger = query.danger.as_deref().unwrap_or("");
    let gaps_only = query.gaps.as_deref() == Some("on");
    let mut rows: Vec<_> = matrix
        .threats
        .iter()
        .filter(|row| {
            needle.is_empty()
                || row.threat.to_lowercase().contains(&needle)
                || row.name.to_lowercase().contains(&needle)
        })
        .filter(|row| danger.is_empty() || row.danger == danger)
        .filter(|row| !gaps_only || row.cells.iter().any(|cell| !cell.covered))
        .collect();
    let sort = query.sort.as_deref().unwrap_or("danger");
    match sort {
        "name" => rows.sort_by(|a, b| a.name.cmp(&b.name)),
        "discovered" => rows.sort_by(|a, b| b.discovered.cmp(&a.discovered)),
        "covered" => rows.sort_by_key(|row| row.cells.iter().filter(|c| c.covered).count()),
        _ => rows.sort_by(|a, b| {
            danger_rank(&b.danger)
                .cmp(&danger_rank(&a.danger))
                .then(b.discovered.cmp(&a.discovered))
        }),
    }
    let dangers: std::collections::BTreeSet<&str> = matrix
        .threats
        .iter()
        .map(|row| row.danger.as_str())
        .collect();
    let page_index = query.page.unwrap_or(0);
    let pages = rows.len().div_ceil(COVERAGE_PAGE).max(1);
    let shown: Vec<_> = rows
        .iter()
        .skip(page_index * COVERAGE_PAGE)
        .take(COVERAGE_PAGE)
        .collect();
    let link = |sort: &str, page: usize| {
        format!(
            "/console/coverage?q={}&danger={}&sort={}&gaps={}&page={page}",
            percent_encode(query.q.as_deref().unwrap_or("")),
            percent_encode(danger),
            percent_encode(sort),
            if gaps_only { "on" } else { "" }
        )
    };
    let body = html! {
        h1 { "Coverage" }
        p.muted { (matrix.threats.len()) " threats × " (matrix.products.len()) " products, catalog revision " (matrix.revision) ". A cell says since which definitions a product covers the threat, or when its vendor expects to." }
        form.filters method="get" action="/console/coverage" role="search" {
            label { "Threat id or name " input type="search" name="q" value=(query.q.as_deref().unwrap_or("")); }
            label { "Danger "
                select name="danger" {
                    option value="" { "any" }
                    @for d in &dangers { option value=(d) selected[danger == *d] { (d) } }
                }
            }
            label { input type="checkbox" name="gaps" value="on" checked[gaps_only]; " only threats some product misses" }
            input type="hidden" name="sort" value=(sort);
            button type="submit" { "Filter" }
        }
        p { (rows.len()) " threats match" @if pages > 1 { "; page " (page_index + 1) " of " (pages) } "." }
        div.scroll {
            table.matrix {
                thead { tr {
                    th scope="col" { a href=(link("name", 0)) { "Threat" } }
                    th scope="col" { a href=(link("danger", 0)) { "Danger" } }
                    th scope="col" { a href=(link("discovered", 0)) { "Discovered" } }
                    @for p in &matrix.products { th scope="col" title=(p.vendor) { (p.name) } }
                    th scope="col" { a href=(link("covered", 0)) { "Covered by" } }
                } }
                tbody { @for row in &shown { tr {
                    th scope="row" { (row.name) br; code.muted { (row.threat) } }
                    td { span class={"danger " (row.danger)} { (row.danger) } }
                    td { (row.discovered) }
                    @for cell in &row.cells {
                        @if cell.covered {
                            td.cov title={"covered since definitions " (cell.since_seq.unwrap_or(0))} {
                                "✓ " (cell.since_seq.map(|s| s.to_string()).unwrap_or_default())
                                @if let Some(on) = &cell.covered_on { br; span.muted { (on) } }
                            }
                        } @else {
                            td.gap { "✗" @if let Some(expected) = &cell.expected { br; span.muted { "expected " (expected) } } }
                        }
                    }
                    td.num { (row.cells.iter().filter(|c| c.covered).count()) "/" (row.cells.len()) }
                } } }
            }
        }
        @if pages > 1 {
            nav.pages aria-label="Pages" {
                @if page_index > 0 { a rel="prev" href=(link(sort, page_index - 1)) { "← Previous" } " " }
                @if page_index + 1 < pages { a rel="next" href=(link(sort, page_index + 1)) { "Next →" } }
            }
        }
    };
    Ok(page(
        "Coverage",
        tier(&center),
        Some(&user),
        Some(Section::Coverage),
        body,
    )
    .into_response())
}

fn danger_rank(danger: &str) -> u8 {
    match danger {
        "critical" => 4,
        "high" => 3,
        "medium" => 2,
        "low" => 1,
        _ => 0,
    }
}

// ---------------------------------------------------------------------------------------------
// Groups and placement rules

pub async fn groups(State(center): State<Arc<Center>>, user: SignedIn) -> PageResult {
    groups_page(&center, &user, None, None).await
}

async fn groups_page(
    center: &Center,
    user: &SignedIn,
    notice: Option<&str>,
    error: Option<&str>,
) -> PageResult {
    let groups = center.groups().await?;
    let rules = center.rules().await?;
    let editable = may_act(user) && tier(center) == Tier::Center;
    let counts = center.store.groups().await?;
    let members: BTreeMap<String, u64> =
        counts.into_iter().map(|(group, n)| (group.id, n)).collect();
    let body = html! {
        h1 { "Groups and placement rules" }
        (view::outcome(notice, error))
        h2 { "Groups" }
        table { thead { tr { th { "Group" } th { "Description" } th { "Terminals" } th { "Policy" } } }
            tbody { @for g in &groups.groups { tr {
                th scope="row" { a href={"/console/terminals?group=" (percent_encode(&g.id))} { (g.id) } }
                td { (g.description) }
                td.num { (members.get(&g.id).copied().unwrap_or(0)) }
                td { code { (serde_json::to_string(&g.policy).unwrap_or_default()) } }
            } } } }
        h2 { "Placement rules" }
        p.muted { "An enrolling terminal goes into the group of the first rule it matches (every field given must match; an empty field matches anything); terminals no rule places land in " code { "unknown" } "." }
        @if editable {
            form.rules method="post" action="/console/rules" {
                (csrf_field(user))
                table { thead { tr { th { "#" } th { "Group" } th { "Kind" } th { "Platform" } th { "Address (CIDR)" } th { "User" } th { "Remove" } } }
                    tbody {
                        @for (i, rule) in rules.rules.iter().enumerate() { (rule_row(i, Some(rule), &groups.groups)) }
                        (rule_row(rules.rules.len(), None, &groups.groups))
                    }
                }
                p.muted { "The last row adds a rule when its group is chosen." }
                button type="submit" { "Save rules" }
            }
        } @else {
            table { thead { tr { th { "#" } th { "Group" } th { "Kind" } th { "Platform" } th { "Address" } th { "User" } } }
                tbody { @for (i, r) in rules.rules.iter().enumerate() { tr {
                    td.num { (i + 1) } td { (r.group) } td { (r.kind.as_deref().unwrap_or("")) } td { (r.platform.as_deref().unwrap_or("")) }
                    td { (r.address.as_deref().unwrap_or("")) } td { (r.user.as_deref().unwrap_or("")) }
                } } } }
            @if tier(center) == Tier::Site { p.muted { "Rules are edited on the center." } }
        }
    };
    Ok(page(
        "Groups",
        tier(center),
        Some(user),
        Some(Section::Groups),
        body,
    )
    .into_response())
}

fn rule_row(
    i: usize,
    rule: Option<&PlacementRule>,
    groups: &[herd_proto::api::GroupDoc],
) -> Markup {
    let field = |name: &str| format!("rule{i}_{name}");
    let value = |get: fn(&PlacementRule) -> Option<&String>| {
        rule.and_then(get).cloned().unwrap_or_default()
    };
    html! {
        tr {
            td.num { @if rule.is_some() { (i + 1) } @else { "new" } }
            td { select name=(field("group")) aria-label={"Group of rule " (i + 1)} {
                @if rule.is_none() { option value="" { "—" } }
                @for g in groups { option value=(g.id) selected[rule.map(|r| r.group.as_str()) == Some(g.id.as_str())] { (g.id) } }
            } }
            td { input name=(field("kind")) value=(value(|r| r.kind.as_ref())) aria-label={"Kind of rule " (i + 1)} size="8"; }
            td { input name=(field("platform")) value=(value(|r| r.platform.as_ref())) aria-label={"Platform of rule " (i + 1)} size="10"; }
            td { input name=(field("address")) value=(value(|r| r.address.as_ref())) aria-label={"Address of rule " (i + 1)} size="16"; }
            td { input name=(field("user")) value=(value(|r| r.user.as_ref())) aria-label={"User of rule " (i + 1)} size="10"; }
            td { @if rule.is_some() { input type="checkbox" name=(field("remove")) value="on" aria-label={"Remove rule " (i + 1)}; } }
        }
    }
}

/// `POST /console/rules`: the form's rows, in order, replace the placement rules.
pub async fn save_rules(
    State(center): State<Arc<Center>>,
    headers: HeaderMap,
    user: SignedIn,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    super::authorise_action(&user, &headers, &form, ConsoleRole::Operator)?;
    if tier(&center) == Tier::Site {
        return Err(PageError::forbidden(
            "placement rules are edited on the center",
        ));
    }
    let rules = rules_from_form(&form)?;
    match center.put_rules(PlacementRules { rules }).await {
        Ok(saved) => {
            let notice = format!("Saved {} rule(s).", saved.rules.len());
            groups_page(&center, &user, Some(&notice), None).await
        }
        Err(err) => groups_page(&center, &user, None, Some(&err.message)).await,
    }
}

/// The rules of the form `rule{i}_{field}`, in `i` order; rows without a group, or marked to be
/// removed, are left out.
fn rules_from_form(form: &[(String, String)]) -> Result<Vec<PlacementRule>, PageError> {
    let mut rows: BTreeMap<usize, BTreeMap<String, String>> = BTreeMap::new();
    for (name, value) in form {
        if name == "csrf" {
            continue;
        }
        let parsed = name
            .strip_prefix("rule")
            .and_then(|rest| rest.split_once('_'))
            .and_then(|(i, field)| Some((i.parse::<usize>().ok()?, field)));
        let Some((i, field)) = parsed else {
            return Err(PageError::bad_request(format!(
                "unexpected form field {name:?}"
            )));
        };
        if i > 10_000 {
            return Err(PageError::bad_request("at most 10,000 rules"));
        }
        rows.entry(i)
            .or_default()
            .insert(field.to_owned(), value.trim().to_owned());
    }
    let mut rules = Vec::new();
    for fields in rows.values() {
        let group = fields.get("group").cloned().unwrap_or_default();
        if group.is_empty() || fields.get("remove").is_some_and(|v| v == "on") {
            continue;
        }
        let optional = |name: &str| fields.get(name).filter(|v| !v.is_empty()).cloned();
        rules.push(PlacementRule {
            group,
            kind: optional("kind"),
            platform: optional("platform"),
            address: optional("address"),
            user: optional("user"),
        });
    }
    Ok(rules)
}

// ---------------------------------------------------------------------------------------------
// Sites

pub async fn sites(State(center): State<Arc<Center>>, user: SignedIn) -> PageResult {
    let now = unix_now();
    let body = if let Some(site) = center.site() {
        let queue = center.store.queue_stats().await?;
        let site_metrics = &center.metrics.sites;
        let up = site_metrics
            .upstream_up
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1;
        let forwarded = site_metrics
            .forwarded
            .load(std::sync::atomic::Ordering::Relaxed);
        let syncs = site_metrics
            .syncs
            .load(std::sync::atomic::Ordering::Relaxed);
        html! {
            h1 { "This site" }
            dl.facts {
                dt { "Site" } dd { (site.identity.id) }
                dt { "Center" } dd { (site.identity.upstream) }
                dt { "Link to the center" } dd {
                    @if up { span.badge.ok { "up" } } @else { span.badge.bad { "down" } }
                    " — " (syncs) " sync(s), " (forwarded) " item(s) forwarded since this site started"
                }
                dt { "Queue to the center" } dd { (queue.depth) " item(s)"
                    @if let Some(oldest) = queue.oldest_at { ", oldest " (ago(Some(&rfc3339(oldest)), now)) } }
            }
            p.muted { "What terminals report here is queued and sent to the center oldest first; while the center is unreachable the site keeps planning and serving from its copy of the catalog." }
        }
    } else {
        let sites = center.store.sites().await?;
        html! {
            h1 { "Sites" }
            @if sites.is_empty() { p.muted { "No site server is enrolled. " code { "herd sites token create" } " makes a token for one." } } @else {
                table { thead { tr { th { "Site" } th { "URL" } th { "Terminals" } th { "Last contact" } th { "Relayed through" } th { "Status" } } }
                    tbody { @for s in &sites { tr {
                        th scope="row" { (s.id) } td { (s.url) } td.num { (s.terminals.unwrap_or_default()) }
                        td { (ago(s.last_contact.map(rfc3339).as_deref(), now)) }
                        td.num { (s.relay_applied) }
                        td { code { (s.status.as_deref().unwrap_or("")) } }
                    } } } }
            }
        }
    };
    Ok(page(
        "Sites",
        tier(&center),
        Some(&user),
        Some(Section::Sites),
        body,
    )
    .into_response())
}

// ---------------------------------------------------------------------------------------------
// Live

pub async fn live(State(center): State<Arc<Center>>, user: SignedIn) -> PageResult {
    let body = html! {
        h1 { "Live" }
        p.muted { "Check-ins, plan reports and events appear here as they are stored (on PostgreSQL, by any of the center's processes). " span #live-state role="status" { "Connecting…" } }
        table.live data-live="200" {
            thead { tr { th { "When" } th { "Terminal" } th { "What" } th { "Detail" } } }
            tbody #live-rows {}
        }
    };
    Ok(page(
        "Live",
        tier(&center),
        Some(&user),
        Some(Section::Live),
        body,
    )
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn rule_rows_become_rules_in_order_without_removed_or_empty_ones() {
        let rules = rules_from_form(&form(&[
            ("csrf", "x"),
            ("rule1_group", "lab"),
            ("rule1_kind", " pc "),
            ("rule0_group", "phones"),
            ("rule0_platform", "android"),
            ("rule0_user", ""),
            ("rule2_group", "gone"),
            ("rule2_remove", "on"),
            ("rule3_group", ""),
            ("rule3_kind", "pc"),
        ]))
        .unwrap();
        assert_eq!(
            rules,
            [
                PlacementRule {
                    group: "phones".into(),
                    kind: None,
                    platform: Some("android".into()),
                    address: None,
                    user: None,
                },
                PlacementRule {
                    group: "lab".into(),
                    kind: Some("pc".into()),
                    platform: None,
                    address: None,
                    user: None,
                },
            ]
        );
    }

    #[test]
    fn unexpected_form_fields_are_named() {
        let err = rules_from_form(&form(&[("evil", "1")])).unwrap_err();
        assert!(err.message.contains("\"evil\""), "{}", err.message);
        assert!(rules_from_form(&form(&[("rule99999_group", "x")])).is_err());
    }

    #[test]
    fn components_are_percent_encoded() {
        assert_eq!(percent_encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(percent_encode("pc-1_x.y~"), "pc-1_x.y~");
    }
}
