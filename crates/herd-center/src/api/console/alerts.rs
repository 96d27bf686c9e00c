//! The console's alerts and messages page (SPEC §3.6): the alerts raised and where each was
//! delivered (or why not yet), the configured channels and rules, and the message thread with
//! terminals' users — with the operator's form to send a message to all, a group or a terminal.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use herd_proto::messages::MessageToSend;
use maud::html;
use serde::Deserialize;

use super::view::{Section, ago, csrf_field, may_act, outcome, page};
use super::{Form, PageResult, authorise_action, form_field, tier};
use crate::sessions::{ConsoleRole, SignedIn};
use crate::{Center, unix_now};

/// Alerts and messages one page lists.
const PAGE: u32 = 100;

#[derive(Debug, Default, Deserialize)]
pub struct AlertsQuery {
    /// Alerts older than this id (paging back).
    before: Option<u64>,
    /// Messages after this id (paging on).
    after: Option<u64>,
}

pub async fn alerts(
    State(center): State<Arc<Center>>,
    user: SignedIn,
    Query(query): Query<AlertsQuery>,
) -> PageResult {
    alerts_page(&center, &user, &query, None, None).await
}

async fn alerts_page(
    center: &Center,
    user: &SignedIn,
    query: &AlertsQuery,
    notice: Option<&str>,
    error: Option<&str>,
) -> PageResult {
    let deliveries = center.alert_deliveries(query.before, Some(PAGE)).await?;
    let setup = center.alert_setup();
    let messages = center
        .messages(query.after, Some(PAGE), None, None)
        .await?
        .messages;
    let groups = center.groups().await?.groups;
    let now = unix_now();
    let body = html! {
        h1 { "Alerts and messages" }
        (outcome(notice, error))
        h2 #messages { "Messages" }
        p.muted { "Operators write to all users, a group or one terminal; agents show the message and users may answer (" code { "herd-agent message" } ")." }
        @if may_act(user) {
            form.message method="post" action="/console/messages" {
                (csrf_field(user))
                label { "To " select name="to" {
                    option value="all" { "every terminal" }
                    @for g in &groups { option value={"group:" (g.id)} { "group " (g.id) } }
                } }
                " " label { "or terminal " input name="terminal" size="20" placeholder="terminal id (optional)"; }
                div { label { "Message" br; textarea name="text" rows="3" cols="70" maxlength="4096" required {} } }
                button type="submit" { "Send message" }
            }
        }
        @if messages.is_empty() { p.muted { "No messages." } } @else {
            table.messages { thead { tr {
                th scope="col" { "#" } th scope="col" { "When" } th scope="col" { "From" } th scope="col" { "To" } th scope="col" { "Message" }
            } }
            tbody { @for m in &messages { tr {
                td.num { (m.id) }
                td { (ago(Some(&m.at), now)) }
                td { (m.from) @if let Some(site) = &m.site { div.muted { "via " (site) } } }
                td { (m.audience) @if let Some(target) = &m.target { " " (target) }
                    @if let Some(reply) = m.reply_to { div.muted { "answering #" (reply) } } }
                td { (m.text) }
            } } } }
            @if messages.len() == PAGE as usize {
                @if let Some(last) = messages.last() {
                    p { a rel="next" href={"/console/alerts?after=" (last.id) "#messages"} { "Later messages →" } }
                }
            }
        }
        h2 { "Alerts" }
        @if deliveries.deliveries.is_empty() { p.muted { "No alert has been raised." } } @else {
            table.alerts { thead { tr {
                th scope="col" { "When" } th scope="col" { "Kind" } th scope="col" { "Subject" } th scope="col" { "Channel" }
                th scope="col" { "Delivery" }
            } }
            tbody { @for d in &deliveries.deliveries { tr {
                td { (ago(Some(&d.created_at), now)) }
                td { (d.kind) }
                td { strong { (d.subject) } div.muted { (d.text) } }
                td { (d.channel) }
                td {
                    @match d.state.as_str() {
                        "delivered" => { span.badge.ok { "delivered" } }
                        "failed" => { span.badge.bad { "failed" } }
                        other => { span.badge.update { (other) } }
                    }
                    @if d.attempts > 1 { div.muted { (d.attempts) " attempts" } }
                    @if let Some(err) = &d.last_error { div.muted { (err) } }
                }
            } } } }
            @if let Some(before) = deliveries.next_before {
                p { a rel="next" href={"/console/alerts?before=" (before)} { "Older alerts →" } }
            }
        }
        h2 { "Channels and rules" }
        p.muted { "Within " (setup.window_secs) " s a rule sends " (setup.burst) " alerts one by one, then one summary, then a digest: an outbreak does not flood a channel." }
        @if setup.channels.is_empty() { p.muted { "No channel is configured (" code { "[alerts]" } " in the center's configuration)." } } @else {
            table { thead { tr { th scope="col" { "Channel" } th scope="col" { "Kind" } th scope="col" { "Delivers to" } } }
                tbody { @for c in &setup.channels { tr { th scope="row" { (c.name) } td { (c.kind) } td { code { (c.target) } } } } } }
            table { thead { tr { th scope="col" { "Rule" } th scope="col" { "On" } th scope="col" { "Channels" } } }
                tbody { @for r in &setup.rules { tr {
                    th scope="row" { (r.name) }
                    td { (r.kinds.join(", ")) @if !r.events.is_empty() { div.muted { "events " (r.events.join(", ")) } } }
                    td { (r.channels.join(", ")) }
                } } } }
        }
    };
    Ok(page(
        "Alerts and messages",
        tier(center),
        Some(user),
        Some(Section::Alerts),
        body,
    )
    .into_response())
}

/// `POST /console/messages`: an operator's message to all, a group, or one terminal.
pub async fn send(
    State(center): State<Arc<Center>>,
    headers: HeaderMap,
    user: SignedIn,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    authorise_action(&user, &headers, &form, ConsoleRole::Operator)?;
    let terminal = form_field(&form, "terminal").map(str::trim).unwrap_or("");
    let to = if terminal.is_empty() {
        form_field(&form, "to").unwrap_or("all").to_owned()
    } else {
        format!("terminal:{terminal}")
    };
    let text = form_field(&form, "text").unwrap_or("").to_owned();
    let query = AlertsQuery::default();
    match center.send_message(MessageToSend { to, text }).await {
        Ok(sent) => {
            let notice = format!(
                "Message #{} sent to {}{}.",
                sent.id,
                sent.audience,
                sent.target
                    .as_deref()
                    .map(|t| format!(" {t}"))
                    .unwrap_or_default()
            );
            alerts_page(&center, &user, &query, Some(&notice), None).await
        }
        Err(err) => alerts_page(&center, &user, &query, None, Some(&err.message)).await,
    }
}
