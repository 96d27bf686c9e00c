//! The console's samples page (SPEC §3.2): files terminals sent for judgement, those awaiting a
//! verdict first, with the verdict action for analysts and operators — malicious publishes the
//! file's signature in Herd's own set at once, benign removes it — and Herd's set at a glance.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use herd_proto::api::{SampleDoc, VerdictDoc};
use maud::{Markup, html};
use serde::Deserialize;

use super::view::{Section, ago, csrf_field, may_judge, outcome, page};
use super::{Form, PageError, PageResult, authorise_action, form_field, tier};
use crate::sessions::{ConsoleRole, SignedIn};
use crate::{Center, unix_now};

/// Samples one page lists.
const SAMPLES_PAGE: usize = 200;

#[derive(Debug, Default, Deserialize)]
pub struct SamplesQuery {
    /// `all` lists judged samples too.
    show: Option<String>,
}

pub async fn samples(
    State(center): State<Arc<Center>>,
    user: SignedIn,
    Query(query): Query<SamplesQuery>,
) -> PageResult {
    let all = query.show.as_deref() == Some("all");
    samples_page(&center, &user, all, None, None).await
}

/// Where a sample stands.
fn status(sample: &SampleDoc) -> (&'static str, &'static str) {
    match (sample.in_herd_set, sample.verdict.as_deref()) {
        (true, _) => ("malicious — in Herd's set", "badge bad"),
        (false, Some("benign")) => ("benign", "badge ok"),
        // Judged malicious once, since retracted by a rule or another process: look again.
        _ => ("awaiting a verdict", "badge update"),
    }
}

/// A SHA-256's first 16 digits, as the tables show it (the whole one is its title).
fn short_hash(sha256: &str) -> &str {
    sha256.get(..16).unwrap_or(sha256)
}

fn awaiting(sample: &SampleDoc) -> bool {
    !sample.in_herd_set && sample.verdict.as_deref() != Some("benign")
}

async fn samples_page(
    center: &Center,
    user: &SignedIn,
    all: bool,
    notice: Option<&str>,
    error: Option<&str>,
) -> PageResult {
    let samples = center.samples().await?;
    let set = center.herd_signatures().await?;
    let waiting = samples.iter().filter(|s| awaiting(s)).count();
    let shown: Vec<&SampleDoc> = samples
        .iter()
        .filter(|s| all || awaiting(s))
        .take(SAMPLES_PAGE)
        .collect();
    let now = unix_now();
    let body = html! {
        h1 { "Samples" }
        (outcome(notice, error))
        div.cards {
            div.card { div.big { (waiting) } "awaiting a verdict" }
            div.card { div.big { (samples.len()) } "in the sample store" }
            div.card { div.big { (set.len()) } a href="/console/signatures" { "signatures in Herd's set" } }
        }
        p.muted {
            "Files terminals could not handle, or their users sent. A malicious verdict publishes the file's signature in Herd's own set, which every terminal loads beside its vendor's product within seconds; benign removes it. The stored bytes are neutralised."
        }
        nav.filters aria-label="Which samples" {
            @if all { a href="/console/samples" { "Awaiting a verdict" } " · " strong { "All samples" } }
            @else { strong { "Awaiting a verdict" } " · " a href="/console/samples?show=all" { "All samples" } }
        }
        @if shown.is_empty() {
            p.ok-note { @if all { "The sample store is empty." } @else { "No sample awaits a verdict." } }
        } @else {
            table.samples { thead { tr {
                th scope="col" { "File" } th scope="col" { "SHA-256" } th scope="col" { "Size" }
                th scope="col" { "Why it was sent" } th scope="col" { "From" } th scope="col" { "Received" }
                th scope="col" { "Status" }
                @if may_judge(user) { th scope="col" { "Verdict" } }
            } }
            tbody { @for s in &shown { (sample_row(user, s, now)) } } }
            @if shown.len() == SAMPLES_PAGE { p.muted { "The first " (SAMPLES_PAGE) " are shown, newest first; " code { "herd samples list" } " lists them all." } }
        }
    };
    Ok(page(
        "Samples",
        tier(center),
        Some(user),
        Some(Section::Samples),
        body,
    )
    .into_response())
}

fn sample_row(user: &SignedIn, s: &SampleDoc, now: i64) -> Markup {
    let (words, class) = status(s);
    html! {
        tr data-sha256=(s.sha256) {
            th scope="row" { code { (s.path) } }
            td { code title=(s.sha256) { (short_hash(&s.sha256)) "…" } }
            td.num { (s.size) }
            td { (s.reason) }
            td { a href={"/console/terminals/" (herd_client::percent_encode(&s.first_terminal))} { (s.first_terminal) } }
            td { (ago(Some(&s.received_at), now)) }
            td { span class=(class) { (words) }
                @if let Some(by) = &s.judged_by { div.muted { "judged by an " (by) } } }
            @if may_judge(user) { td {
                form.inline method="post" action="/console/samples" {
                    (csrf_field(user))
                    input type="hidden" name="sha256" value=(s.sha256);
                    input type="hidden" name="size" value=(s.size);
                    label { span.muted { "Threat " }
                        input name="threat" size="14" pattern="[A-Za-z0-9_\\-]{1,64}" placeholder="optional id"
                            aria-label={"Threat id for " (s.path)}; }
                    " "
                    label { span.muted { "Danger " }
                        select name="danger" aria-label={"Danger of " (s.path)} {
                            @for d in ["low", "medium", "high", "critical"] { option value=(d) selected[d == "high"] { (d) } }
                        } }
                    " "
                    button.danger type="submit" name="verdict" value="malicious" aria-label={"Malicious: " (s.path)} { "Malicious" }
                    " "
                    button type="submit" name="verdict" value="benign" aria-label={"Benign: " (s.path)} { "Benign" }
                }
            } }
        }
    }
}

/// `POST /console/samples`: an analyst's or operator's verdict on a sample.
pub async fn judge(
    State(center): State<Arc<Center>>,
    headers: HeaderMap,
    user: SignedIn,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    authorise_action(&user, &headers, &form, ConsoleRole::Analyst)?;
    let sha256 = form_field(&form, "sha256").unwrap_or("").to_owned();
    let verdict = form_field(&form, "verdict").unwrap_or("").to_owned();
    let size = match form_field(&form, "size").filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => Some(text.parse::<u64>().map_err(|_| {
            PageError::bad_request(format!("the form: size {text:?} is not a whole number"))
        })?),
    };
    let threat = form_field(&form, "threat")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    let danger = form_field(&form, "danger")
        .filter(|d| !d.is_empty())
        .map(str::to_owned);
    let doc = VerdictDoc {
        sha256,
        size,
        verdict,
        threat,
        danger,
        name: None,
    };
    let by = user.role.as_str();
    match center.verdict(doc.clone(), by).await {
        Ok(outcome) => {
            let notice = format!(
                "{} judged {}{}. Herd's set holds {} signature(s).",
                short_hash(&doc.sha256),
                doc.verdict,
                if outcome.changed {
                    "; the set was signed and pushed to every terminal"
                } else {
                    " (the set already said so)"
                },
                outcome.signatures
            );
            samples_page(&center, &user, false, Some(&notice), None).await
        }
        Err(err) => samples_page(&center, &user, false, None, Some(&err.message)).await,
    }
}
