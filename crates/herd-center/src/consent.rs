//! Consent by e-mail (SPEC §3.1.6, seed 002 ¶0080). When a terminal's agent asks its user
//! for consent (a `consent.requested` event, reaching the center directly or through a site's
//! relay) and an operator gave the terminal's user an address (`herd terminals set-email`),
//! the center records a consent request and mails the user a notice with an accept and a
//! decline link, through the alerts' queue and e-mail channel (`[alerts] consent_channel`): one
//! mailer, retried like every alert.
//!
//! A link is `<public_url>/consent/<token>`, the token the request id, the answer and the
//! expiry under an HMAC-SHA256 whose key is derived from the CA's key-encryption key (so every
//! center process sharing the KEK checks the same links, and no database holds the key). A
//! forged or altered token fails the MAC; an expired one is refused by its signed expiry; the
//! request row is decided once (`consent_decide` only while undecided), so a link works once and
//! the first answer — by e-mail or on the device, whose `consent.accepted`/`consent.declined`
//! events close the request too — wins. Opening a link shows a page with one button; only its
//! POST decides, so a mail scanner that fetches links cannot answer for the user.
//!
//! The answer reaches the agent in the check-in answer (`CheckinResponse::consent`) when the
//! agent says which plan it waits on (`CheckinRequest::consent_waiting`), and at once when the
//! terminal holds its push connection (`/v1/wait`) on this center process. A site asks the
//! center for it (`GET /v1/sites/terminals/{id}/consent`); its terminals learn at their next
//! check-in.

use herd_proto::api::events;
use herd_proto::consent::{
    ConsentAnswer, ConsentDecision, ConsentRequestDoc, ConsentRequestList, TerminalEmail,
    answered_by,
};
use herd_store::{ConsentRequestRow, NewConsentRequest};
use herd_tls::seal::LinkKey;

use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::{Center, rfc3339, unix_now};

/// The link key's purpose (see [`herd_tls::seal::KeyEncryptionKey::link_key`]).
const LINK_PURPOSE: &str = "herd consent links v1";
/// The longest address accepted (RFC 5321's path limit).
const MAX_ADDRESS_CHARS: usize = 254;

/// What a link says: answer `decision` to request `id`, until `expires_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsentLink {
    pub id: u64,
    pub decision: ConsentDecision,
    pub expires_at: i64,
}

fn decision_letter(decision: ConsentDecision) -> &'static str {
    match decision {
        ConsentDecision::Accepted => "a",
        ConsentDecision::Declined => "d",
    }
}

fn signed_text(id: u64, letter: &str, expires_at: i64) -> String {
    format!("herd-consent/1\n{id}\n{letter}\n{expires_at}")
}

/// The token of `link`: `<id>-<a|d>-<expires>-<MAC hex>`, safe in a URL path as it is.
pub fn link_token(key: &LinkKey, link: &ConsentLink) -> String {
    let letter = decision_letter(link.decision);
    let mac = key.sign(signed_text(link.id, letter, link.expires_at).as_bytes());
    format!(
        "{}-{letter}-{}-{}",
        link.id,
        link.expires_at,
        hex::encode(mac)
    )
}

/// Why a link is refused before the store is asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkRefusal {
    /// Not made by this center, or changed since (a bad MAC or a malformed token).
    Forged,
    /// Made by this center, past its expiry.
    Expired { at: i64 },
}

/// Checks a token's MAC and expiry at `now`. Pure: the store decides the rest.
pub fn check_link(key: &LinkKey, token: &str, now: i64) -> Result<ConsentLink, LinkRefusal> {
    let parts: Vec<&str> = token.split('-').collect();
    let [id, letter, expires, mac] = parts[..] else {
        return Err(LinkRefusal::Forged);
    };
    let decision = match letter {
        "a" => ConsentDecision::Accepted,
        "d" => ConsentDecision::Declined,
        _ => return Err(LinkRefusal::Forged),
    };
    // Canonical numbers only: the signed text is rebuilt from the parsed values.
    let (Ok(id_value), Ok(expires_at)) = (id.parse::<u64>(), expires.parse::<i64>()) else {
        return Err(LinkRefusal::Forged);
    };
    if id_value.to_string() != id || expires_at.to_string() != expires {
        return Err(LinkRefusal::Forged);
    }
    let id = id_value;
    let Ok(mac) = hex::decode(mac) else {
        return Err(LinkRefusal::Forged);
    };
    if !key.verify(signed_text(id, letter, expires_at).as_bytes(), &mac) {
        return Err(LinkRefusal::Forged);
    }
    if now >= expires_at {
        return Err(LinkRefusal::Expired { at: expires_at });
    }
    Ok(ConsentLink {
        id,
        decision,
        expires_at,
    })
}

/// What opening or answering a link finds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// The question is open: the link may answer it.
    Open {
        link: ConsentLink,
        request: ConsentRequestRow,
    },
    /// Answered (this link's POST when `by_this_link`, or earlier).
    Answered {
        request: ConsentRequestRow,
        by_this_link: bool,
    },
    Refused(LinkRefusal),
    /// A genuine link whose request is gone (its terminal was deleted).
    Gone,
}

impl Center {
    fn consent_key(&self) -> LinkKey {
        self.kek.link_key(LINK_PURPOSE)
    }

    /// Sets or clears the address consent notices for a terminal go to.
    pub async fn set_terminal_email(
        &self,
        terminal: &str,
        body: TerminalEmail,
    ) -> CenterResult<()> {
        let email = match body.email.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(address) => {
                if address.chars().count() > MAX_ADDRESS_CHARS {
                    return Err(CenterError::new(
                        ErrorKind::DocumentInvalid,
                        format!("$.email: an address has at most {MAX_ADDRESS_CHARS} characters"),
                    ));
                }
                // Content the schema cannot express: refused as such (422), as API v1 does.
                crate::alerts::config::check_address(address).map_err(|e| {
                    CenterError::new(ErrorKind::DocumentInvalid, format!("$.email: {e:#}"))
                })?;
                Some(address)
            }
        };
        if !self
            .store
            .terminal_email_set(terminal, email, unix_now())
            .await?
        {
            return Err(CenterError::not_found(format!(
                "there is no terminal {terminal:?}"
            )));
        }
        Ok(())
    }

    /// A terminal's consent requests, newest first.
    pub async fn consent_requests(&self, terminal: &str) -> CenterResult<ConsentRequestList> {
        if self.store.terminal(terminal).await?.is_none() {
            return Err(CenterError::not_found(format!(
                "there is no terminal {terminal:?}"
            )));
        }
        let rows = self.store.consent_requests_of(terminal).await?;
        Ok(ConsentRequestList {
            requests: rows.into_iter().map(wire_request).collect(),
        })
    }

    /// A stored `consent.requested` event: records the request and mails the notice, when the
    /// terminal's user has an address and a consent channel is configured. At the center only.
    pub(crate) async fn consent_requested(&self, terminal: &str, data: &str) {
        let Some(channel) = self.alerts.config().consent_channel.clone() else {
            return;
        };
        let Ok(data) = serde_json::from_str::<serde_json::Value>(data) else {
            return;
        };
        let text = |field: &str| data[field].as_str().unwrap_or_default().to_owned();
        let (plan_id, change, reason) = (text("plan_id"), text("change"), text("reason"));
        if plan_id.is_empty() {
            return;
        }
        let email = match self.store.terminal_email(terminal).await {
            Ok(Some(email)) => email,
            Ok(None) => return,
            Err(err) => {
                tracing::error!(%terminal, %err, "cannot read the terminal's e-mail address");
                return;
            }
        };
        let now = unix_now();
        let expires_at = now.saturating_add(self.alerts.config().consent_link_secs as i64);
        let opened = self
            .store
            .consent_request_open(&NewConsentRequest {
                terminal: terminal.to_owned(),
                plan_id: plan_id.clone(),
                change: change.clone(),
                email: email.clone(),
                requested_at: now,
                expires_at,
            })
            .await;
        let request = match opened {
            Ok(Some(request)) => request,
            // Asked before (an agent asks again after a restart): mailed once.
            Ok(None) => return,
            Err(err) => {
                tracing::error!(%terminal, %err, "cannot record a consent request");
                return;
            }
        };
        let key = self.consent_key();
        let url = |decision| {
            format!(
                "{}/consent/{}",
                self.config.public_url.trim_end_matches('/'),
                link_token(
                    &key,
                    &ConsentLink {
                        id: request.id,
                        decision,
                        expires_at,
                    }
                )
            )
        };
        let reason = if reason.is_empty() {
            String::new()
        } else {
            format!(" ({reason})")
        };
        let notice = format!(
            "Your operator wants to {change} on terminal {terminal}{reason}.\n\n\
             To allow it, open this link:\n{}\n\n\
             To refuse it, open this link:\n{}\n\n\
             Each link asks you to confirm, and works once, until {}. You can also answer on the \
             terminal with `herd-agent consent accept` or `herd-agent consent decline`; the \
             first answer counts.\n",
            url(ConsentDecision::Accepted),
            url(ConsentDecision::Declined),
            rfc3339(expires_at),
        );
        self.alerts.send_to(
            &channel,
            &email,
            "consent",
            &format!("{change} on terminal {terminal}"),
            &notice,
        );
        tracing::info!(%terminal, plan = %plan_id, request = request.id, "consent notice queued");
    }

    /// A stored `consent.accepted` or `consent.declined` event: an answer given on the device
    /// closes the request, so its links say it was answered. At the center only.
    pub(crate) async fn consent_answered_on_device(&self, terminal: &str, kind: &str, data: &str) {
        let decision = match kind {
            events::CONSENT_ACCEPTED => ConsentDecision::Accepted,
            events::CONSENT_DECLINED => ConsentDecision::Declined,
            _ => return,
        };
        let Ok(data) = serde_json::from_str::<serde_json::Value>(data) else {
            return;
        };
        if data["by"].as_str() == Some(answered_by::EMAIL) {
            return;
        }
        let Some(plan_id) = data["plan_id"].as_str() else {
            return;
        };
        let request = match self.store.consent_request_of(terminal, plan_id).await {
            Ok(Some(request)) if request.decision.is_none() => request,
            Ok(_) => return,
            Err(err) => {
                tracing::warn!(%terminal, %err, "cannot read a consent request");
                return;
            }
        };
        if let Err(err) = self
            .store
            .consent_decide(
                request.id,
                decision.as_str(),
                unix_now(),
                answered_by::DEVICE,
            )
            .await
        {
            tracing::warn!(%terminal, %err, "cannot record the device's consent answer");
        }
    }

    /// The user's e-mailed answer to `plan_id`, for the check-in of a terminal waiting on it.
    pub async fn consent_answer(&self, terminal: &str, plan_id: &str) -> Option<ConsentAnswer> {
        if let Some(site) = self.site() {
            return site.consent_of(terminal, plan_id).await;
        }
        let request = match self.store.consent_request_of(terminal, plan_id).await {
            Ok(request) => request?,
            Err(err) => {
                tracing::warn!(%terminal, %err, "cannot read a consent request");
                return None;
            }
        };
        answer_of(&request)
    }

    /// What the link `token` finds at `now`, changing nothing.
    pub async fn consent_link(&self, token: &str, now: i64) -> CenterResult<LinkState> {
        let link = match check_link(&self.consent_key(), token, now) {
            Ok(link) => link,
            Err(refusal) => return Ok(LinkState::Refused(refusal)),
        };
        Ok(match self.store.consent_request(link.id).await? {
            None => LinkState::Gone,
            Some(request) if request.decision.is_some() => LinkState::Answered {
                request,
                by_this_link: false,
            },
            Some(request) => LinkState::Open { link, request },
        })
    }

    /// Answers with the link `token` at `now`, if it may; the terminal is woken wherever it
    /// holds its push connection: here, or in another center process on the same database
    /// (told through the store's live channel, [`crate::live::Live::send_nudge`]).
    pub async fn consent_follow_link(&self, token: &str, now: i64) -> CenterResult<LinkState> {
        let (link, request) = match self.consent_link(token, now).await? {
            LinkState::Open { link, request } => (link, request),
            other => return Ok(other),
        };
        let decided = self
            .store
            .consent_decide(link.id, link.decision.as_str(), now, answered_by::EMAIL)
            .await?;
        let by_this_link = decided;
        let request = self
            .store
            .consent_request(link.id)
            .await?
            .unwrap_or(request);
        if decided {
            tracing::info!(terminal = %request.request.terminal, request = request.id,
                decision = link.decision.as_str(), "consent answered by e-mail");
            if !self.waits.nudge(&request.request.terminal)
                && let Err(err) = self
                    .live
                    .send_nudge(&*self.store, &request.request.terminal)
                    .await
            {
                // The answer is stored: the terminal still gets it at its next check-in.
                tracing::warn!(%err, "cannot wake the terminal through the other center processes");
            }
        }
        Ok(LinkState::Answered {
            request,
            by_this_link,
        })
    }
}

/// The check-in's `consent` for a request answered by e-mail.
pub fn answer_of(request: &ConsentRequestRow) -> Option<ConsentAnswer> {
    if request.decided_by.as_deref() != Some(answered_by::EMAIL) {
        return None;
    }
    Some(ConsentAnswer {
        plan_id: request.request.plan_id.clone(),
        decision: ConsentDecision::parse(request.decision.as_deref()?)?,
        decided_at: rfc3339(request.decided_at?),
        by: answered_by::EMAIL.to_owned(),
    })
}

fn wire_request(row: ConsentRequestRow) -> ConsentRequestDoc {
    ConsentRequestDoc {
        id: row.id,
        terminal: row.request.terminal,
        plan_id: row.request.plan_id,
        change: row.request.change,
        email: row.request.email,
        requested_at: rfc3339(row.request.requested_at),
        expires_at: rfc3339(row.request.expires_at),
        decision: row.decision.as_deref().and_then(ConsentDecision::parse),
        decided_at: row.decided_at.map(rfc3339),
        by: row.decided_by,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> LinkKey {
        herd_tls::seal::KeyEncryptionKey::from_secret(b"a secret of the tests, 32 bytes")
            .unwrap()
            .link_key(LINK_PURPOSE)
    }

    #[test]
    fn a_link_checks_until_it_expires_and_not_once_changed() {
        let link = ConsentLink {
            id: 42,
            decision: ConsentDecision::Accepted,
            expires_at: 1_000,
        };
        let token = link_token(&key(), &link);
        assert!(token.starts_with("42-a-1000-"), "{token}");
        assert_eq!(check_link(&key(), &token, 999), Ok(link));
        assert_eq!(
            check_link(&key(), &token, 1_000),
            Err(LinkRefusal::Expired { at: 1_000 })
        );
        // An accept link cannot be turned into a decline, another request or a later expiry.
        for forged in [
            token.replacen("-a-", "-d-", 1),
            token.replacen("42-", "43-", 1),
            token.replacen("-1000-", "-9000-", 1),
            token.replacen("-1000-", "-01000-", 1),
            format!("{}0", &token[..token.len() - 1]),
            token[..token.len() - 2].to_owned(),
            "42-a-1000".to_owned(),
            "".to_owned(),
            format!("{token}-x"),
        ] {
            assert_eq!(
                check_link(&key(), &forged, 999),
                Err(LinkRefusal::Forged),
                "{forged}"
            );
        }
        // Another center's key (another KEK) does not make this center's links.
        let other = herd_tls::seal::KeyEncryptionKey::from_secret(b"another center's secret!!")
            .unwrap()
            .link_key(LINK_PURPOSE);
        assert_eq!(check_link(&other, &token, 999), Err(LinkRefusal::Forged));
    }
}
