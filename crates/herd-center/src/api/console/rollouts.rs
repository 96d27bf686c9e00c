//! The console's rollouts page (SPEC §3.4): every release rolling out in rings, where it stands
//! in them, what its terminals reported, and the operator's pause, resume, promote and revert.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use herd_planner::rings::RingSpec;
use herd_proto::api::{RolloutSummary, rollout_actions};
use maud::{Markup, html};

use super::view::{Section, ago, csrf_field, may_act, outcome, page};
use super::{Form, PageError, PageResult, authorise_action, form_field, tier};
use crate::Center;
use crate::sessions::{ConsoleRole, SignedIn};
use crate::unix_now;

pub async fn rollouts(State(center): State<Arc<Center>>, user: SignedIn) -> PageResult {
    rollouts_page(&center, &user, None, None).await
}

async fn rollouts_page(
    center: &Center,
    user: &SignedIn,
    notice: Option<&str>,
    error: Option<&str>,
) -> PageResult {
    let body = match center.config.rollouts.as_ref() {
        None => html! {
            h1 { "Rollouts" }
            (outcome(notice, error))
            p.notice { "This center offers every release to every terminal at once. Set "
                code { "rollout_rings" } " in its configuration (for example "
                code { "canary=1%/600s/5, early=10%/1800s/50, broad=100%/0s/0" }
                ") to roll releases out in rings, halted by itself when a ring's terminals fail or fault." }
        },
        Some(settings) => {
            let list = center.rollout_summaries().await?;
            let rings = &settings.policy.rings;
            let t = settings.policy.thresholds;
            let now = unix_now();
            html! {
                h1 { "Rollouts" }
                (outcome(notice, error))
                p.muted {
                    "Rings: " @for (i, ring) in rings.iter().enumerate() {
                        @if i > 0 { " → " } (ring.name) " " (reach(ring))
                    }
                    ". A rollout halts by itself after " (t.max_bad) " bad reports, or when more than "
                    (t.max_bad_percent) " % of at least " (t.min_reports) " reports are bad (failed installs, faults after it, terminals gone silent)."
                    " A replacement (a program release fault recovery sends) rolls out the same way to the terminals whose program faults: its successes and failures are the replacements' outcomes, its faults those of the new program."
                }
                @if list.is_empty() { p.muted { "No release has been rolled out yet." } } @else {
                    table.rollouts { thead { tr {
                        th scope="col" { "Release" } th scope="col" { "Phase" } th scope="col" { "Rings" }
                        th scope="col" { "Succeeded" } th scope="col" { "Failed" } th scope="col" { "Faults" } th scope="col" { "Silent" }
                        th scope="col" { "Why" } th scope="col" { "Changed" }
                        @if may_act(user) { th scope="col" { "Action" } }
                    } }
                    tbody { @for r in &list { tr data-release=(r.release) {
                        th scope="row" {
                            (r.product) " " (r.version) div.muted { (r.release) }
                            @if r.replacement {
                                div { span.badge title="A program release: sent as a replacement to the faulting terminals its rings reach; the others are held until their ring opens" { "replacement" } }
                            }
                        }
                        td { (phase_badge(&r.phase)) }
                        td { (ring_progress(rings, r)) }
                        td.num { (r.succeeded) } td.num { (r.failed) } td.num { (r.faults) } td.num { (r.silent) }
                        td { (r.reason.as_deref().unwrap_or("")) }
                        td { (ago(Some(&r.updated_at), now)) }
                        @if may_act(user) { td { (actions(user, r)) } }
                    } } } }
                }
            }
        }
    };
    Ok(page(
        "Rollouts",
        tier(center),
        Some(user),
        Some(Section::Rollouts),
        body,
    )
    .into_response())
}

/// Whom a ring reaches: its groups, its share of the fleet, or both (`group it-staff + 10 %`).
fn reach(ring: &RingSpec) -> String {
    match (ring.groups.is_empty(), ring.reach) {
        (true, share) => percent(share),
        (false, 0) => format!("group {}", ring.groups.join(", ")),
        (false, share) => format!("group {} + {}", ring.groups.join(", "), percent(share)),
    }
}

fn percent(reach_bp: u32) -> String {
    let whole = reach_bp / 100;
    match reach_bp % 100 {
        0 => format!("{whole} %"),
        part => format!("{whole}.{part:02} %"),
    }
}

fn phase_badge(phase: &str) -> Markup {
    let class = match phase {
        "complete" => "badge ok",
        "reverted" => "badge bad",
        "paused" => "badge switch",
        _ => "badge update",
    };
    html! { span class=(class) { (phase) } }
}

/// The rings as steps: those passed, the current one (with its reach), those to come.
fn ring_progress(rings: &[RingSpec], rollout: &RolloutSummary) -> Markup {
    let current = rollout.ring_index as usize;
    html! {
        ol.rings aria-label={"Rings of " (rollout.release)} {
            @for (i, ring) in rings.iter().enumerate() {
                @let state = if rollout.phase == "complete" || i < current { "done" } else if i == current { "current" } else { "next" };
                li class=(state) aria-current=[(state == "current").then_some("step")] {
                    (ring.name) " " span.muted { (reach(ring)) }
                }
            }
        }
    }
}

/// The buttons an operator may press for a rollout in its phase.
fn actions(user: &SignedIn, rollout: &RolloutSummary) -> Markup {
    let allowed: &[(&str, &str)] = match rollout.phase.as_str() {
        "rolling" => &[
            (rollout_actions::PAUSE, "Pause"),
            (rollout_actions::PROMOTE, "Promote"),
            (rollout_actions::REVERT, "Revert"),
        ],
        "paused" => &[
            (rollout_actions::RESUME, "Resume"),
            (rollout_actions::PROMOTE, "Promote"),
            (rollout_actions::REVERT, "Revert"),
        ],
        "reverted" => &[(rollout_actions::RESUME, "Resume")],
        _ => &[],
    };
    html! {
        @for (action, label) in allowed {
            form.inline method="post" action="/console/rollouts" {
                (csrf_field(user))
                input type="hidden" name="release" value=(rollout.release);
                input type="hidden" name="action" value=(action);
                button type="submit" class=[(*action == rollout_actions::REVERT).then_some("danger")]
                    aria-label={(label) " " (rollout.release)} { (label) }
            }
        }
    }
}

/// `POST /console/rollouts`: an operator's action on one release's rollout.
pub async fn act(
    State(center): State<Arc<Center>>,
    headers: HeaderMap,
    user: SignedIn,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    authorise_action(&user, &headers, &form, ConsoleRole::Operator)?;
    let release = form_field(&form, "release").unwrap_or("");
    let action = form_field(&form, "action").unwrap_or("");
    if !rollout_actions::ALL.contains(&action) {
        return Err(PageError::bad_request(format!(
            "the form: action {action:?} is not one of {}",
            rollout_actions::ALL.join(", ")
        )));
    }
    match center.rollout_act(release, action).await {
        Ok(done) => {
            let notice = format!(
                "{}: {action} done; the rollout is now {} in ring {}.",
                done.release, done.phase, done.ring
            );
            rollouts_page(&center, &user, Some(&notice), None).await
        }
        Err(err) => rollouts_page(&center, &user, None, Some(&err.message)).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rings_reach_names_its_groups() {
        let ring = |reach, groups: &[&str]| RingSpec {
            name: "canary".into(),
            reach,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            soak_secs: 0,
            min_successes: 0,
        };
        assert_eq!(reach(&ring(100, &[])), "1 %");
        assert_eq!(reach(&ring(0, &["it-staff"])), "group it-staff");
        assert_eq!(
            reach(&ring(1_000, &["it-staff", "lab"])),
            "group it-staff, lab + 10 %"
        );
    }

    #[test]
    fn reach_reads_as_a_percentage() {
        assert_eq!(percent(100), "1 %");
        assert_eq!(percent(10_000), "100 %");
        assert_eq!(percent(5), "0.05 %");
        assert_eq!(percent(1_250), "12.50 %");
    }
}
