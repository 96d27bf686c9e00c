//! The console's page of Herd's own signature set (SPEC §3.2): the analysts' body signatures
//! (`.ndb` and `.ldb` lines, YARA files; `crate::body_signatures`) with their text, who added
//! them and when, and the exact-hash signatures verdicts published (`crate::herd_set`), newest
//! first. What `herd signatures list` and `herd immunity list` print; adding and removing stay
//! with the API and the CLI, where a whole file of signatures is checked at once.

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use herd_proto::api::{BodySignatureDoc, HerdSignatureDoc};
use maud::{Markup, html};

use super::view::{Section, ago, page};
use super::{PageResult, tier};
use crate::sessions::SignedIn;
use crate::{Center, unix_now};

/// Exact-hash signatures the page lists (the newest).
const HASHES_PAGE: usize = 200;

/// `GET /console/signatures`.
pub async fn signatures(State(center): State<Arc<Center>>, user: SignedIn) -> PageResult {
    let bodies = center.body_signatures().await?;
    let mut hashes = center.herd_signatures().await?;
    // RFC 3339 in UTC sorts as text; ties by digest, so the page is stable.
    hashes.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then(a.sha256.cmp(&b.sha256))
    });
    let now = unix_now();
    let count = |format: &str| bodies.iter().filter(|b| b.format == format).count();
    let body = html! {
        h1 { "Herd's set" }
        div.cards {
            div.card { div.big { (hashes.len()) } "exact-hash signatures" }
            div.card { div.big { (count(crate::body_signatures::NDB)) } "body signatures (.ndb)" }
            div.card { div.big { (count(crate::body_signatures::LDB)) } "logical signatures (.ldb)" }
            div.card { div.big { (count(crate::body_signatures::YARA)) } "YARA files" }
        }
        p.muted {
            "Herd's own signature set is loaded by every terminal beside its vendor's product. Verdicts on "
            a href="/console/samples" { "samples" }
            " and the automatic rules publish exact hashes; analysts add body signatures with "
            code { "herd signatures add FILE" } " and remove them with "
            code { "herd signatures remove NAME" } "."
        }
        h2 #body { "Body signatures" }
        @if bodies.is_empty() {
            p.ok-note { "No analyst has added a body signature." }
        } @else {
            table.signatures { thead { tr {
                th scope="col" { "Name" } th scope="col" { "Format" } th scope="col" { "Signature" }
                th scope="col" { "Added by" } th scope="col" { "Added" }
            } }
            tbody { @for b in &bodies { (body_row(b, now)) } } }
        }
        h2 #hashes { "Exact-hash signatures" }
        @if hashes.is_empty() {
            p.ok-note { "No verdict has published a signature yet." }
        } @else {
            table.signatures { thead { tr {
                th scope="col" { "Name" } th scope="col" { "SHA-256" } th scope="col" { "Size" }
                th scope="col" { "Threat" } th scope="col" { "Source" } th scope="col" { "First seen on" }
                th scope="col" { "Published" }
            } }
            tbody { @for h in hashes.iter().take(HASHES_PAGE) { (hash_row(h, now)) } } }
            @if hashes.len() > HASHES_PAGE { p.muted { "The newest " (HASHES_PAGE) " are shown; " code { "herd immunity list" } " lists them all." } }
        }
    };
    Ok(page(
        "Herd's set",
        tier(&center),
        Some(&user),
        Some(Section::Signatures),
        body,
    )
    .into_response())
}

fn body_row(b: &BodySignatureDoc, now: i64) -> Markup {
    html! {
        tr data-name=(b.name) {
            th scope="row" { code { (b.name) } }
            td { (b.format) }
            td {
                // A YARA file is many lines: folded, so the table stays readable.
                @if b.format == crate::body_signatures::YARA {
                    details { summary { (b.text.lines().count()) " lines" } pre { code { (b.text) } } }
                } @else {
                    code.wrap { (b.text) }
                }
            }
            td { (b.added_by) }
            td { (ago(Some(&b.added_at), now)) }
        }
    }
}

fn hash_row(h: &HerdSignatureDoc, now: i64) -> Markup {
    html! {
        tr data-sha256=(h.sha256) {
            th scope="row" { code { (h.name) } }
            td { code title=(h.sha256) { (h.sha256.get(..16).unwrap_or(&h.sha256)) "…" } }
            td.num { (h.size) }
            td { (h.threat) }
            td { (h.source) }
            td {
                @if h.first_terminal.is_empty() { span.muted { "—" } }
                @else { a href={"/console/terminals/" (herd_client::percent_encode(&h.first_terminal))} { (h.first_terminal) } }
            }
            td { (ago(Some(&h.created_at), now)) }
        }
    }
}
