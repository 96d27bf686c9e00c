//! The page a consent e-mail's link opens (`/consent/{token}`, on the center only): in any
//! browser, without a client certificate or a session — the signed token is the credential.
//! Opening it shows what the operator wants to change and one button; only the button's POST
//! answers (`Center::consent_follow_link`), so a mail scanner that fetches links answers
//! nothing. Every refusal is a page that says why and that nothing was recorded.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herd_proto::consent::{ConsentDecision, answered_by};
use maud::{DOCTYPE, Markup, html};

use crate::consent::{LinkRefusal, LinkState};
use crate::{Center, rfc3339, unix_now};

/// `GET /consent/{token}`: what the link would answer, and the button that answers.
pub async fn open(State(center): State<Arc<Center>>, Path(token): Path<String>) -> Response {
    match center.consent_link(&token, unix_now()).await {
        Ok(state) => page_for(&token, state),
        Err(err) => failed(&err.to_string()),
    }
}

/// `POST /consent/{token}`: answers, once.
pub async fn answer(State(center): State<Arc<Center>>, Path(token): Path<String>) -> Response {
    match center.consent_follow_link(&token, unix_now()).await {
        Ok(state) => page_for(&token, state),
        Err(err) => failed(&err.to_string()),
    }
}

fn verb(decision: ConsentDecision) -> &'static str {
    match decision {
        ConsentDecision::Accepted => "Accept",
        ConsentDecision::Declined => "Decline",
    }
}

fn page_for(token: &str, state: LinkState) -> Response {
    match state {
        LinkState::Open { link, request } => page(
            StatusCode::OK,
            "Your consent is asked",
            html! {
                h1 { "Your consent is asked" }
                p {
                    "Your operator wants to " strong { (request.request.change) }
                    " on terminal " code { (request.request.terminal) } "."
                }
                form method="post" action={ "/consent/" (token) } {
                    button type="submit" autofocus {
                        (verb(link.decision)) " this change"
                    }
                }
                p.muted {
                    "This link works once, until " (rfc3339(link.expires_at)) ". "
                    @match link.decision {
                        ConsentDecision::Accepted => "To refuse instead, use the other link of the e-mail.",
                        ConsentDecision::Declined => "To allow it instead, use the other link of the e-mail.",
                    }
                }
            },
        ),
        LinkState::Answered {
            request,
            by_this_link: true,
        } => {
            let accepted = request.decision.as_deref() == Some("accepted");
            page(
                StatusCode::OK,
                if accepted { "Accepted" } else { "Declined" },
                html! {
                    h1 { @if accepted { "Accepted" } @else { "Declined" } }
                    p.notice role="status" {
                        @if accepted {
                            "Thank you. Terminal " code { (request.request.terminal) }
                            " will " (request.request.change) " at its next check-in."
                        } @else {
                            "Thank you. Terminal " code { (request.request.terminal) }
                            " will not " (request.request.change) "; your operator is told."
                        }
                    }
                },
            )
        }
        LinkState::Answered { request, .. } => {
            let how = match request.decided_by.as_deref() {
                Some(answered_by::DEVICE) => "on the terminal",
                _ => "with a link of the e-mail",
            };
            refusal(
                StatusCode::CONFLICT,
                "Already answered",
                format!(
                    "This question was already answered: {} {how} at {}. A link works once, and \
                     the first answer counts; nothing was changed now.",
                    request.decision.as_deref().unwrap_or("answered"),
                    request.decided_at.map(rfc3339).unwrap_or_default()
                ),
            )
        }
        LinkState::Refused(LinkRefusal::Expired { at }) => refusal(
            StatusCode::GONE,
            "This link has expired",
            format!(
                "This link expired at {}; nothing was recorded. Answer on the terminal \
                 (`herd-agent consent accept` or `decline`), or ask your operator.",
                rfc3339(at)
            ),
        ),
        LinkState::Refused(LinkRefusal::Forged) => refusal(
            StatusCode::FORBIDDEN,
            "This link is not valid",
            "This link was not made by this center, or it was changed; nothing was recorded. \
             Open the link exactly as the e-mail gives it."
                .to_owned(),
        ),
        LinkState::Gone => refusal(
            StatusCode::NOT_FOUND,
            "No such question",
            "This question no longer exists (its terminal was removed); nothing was recorded."
                .to_owned(),
        ),
    }
}

fn failed(message: &str) -> Response {
    tracing::error!(%message, "a consent link could not be answered");
    refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again later",
        "The center could not look this link up just now; nothing was recorded. Try again in a \
         few minutes."
            .to_owned(),
    )
}

fn refusal(status: StatusCode, title: &str, message: String) -> Response {
    page(
        status,
        title,
        html! {
            h1 { (title) }
            p.error role="alert" { (message) }
        },
    )
}

/// A page of its own (no console navigation: the reader is a terminal's user, not an
/// operator), with the console's stylesheet and security headers.
fn page(status: StatusCode, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — Herd" }
                link rel="stylesheet" href="/console/static/console.css";
            }
            body {
                main { (body) }
            }
        }
    };
    (status, markup).into_response()
}
