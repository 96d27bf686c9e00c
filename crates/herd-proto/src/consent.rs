//! API v1's consent by e-mail (SPEC §3.1.6, seed 002 ¶0080): where a terminal's user is
//! written to (`PUT /v1/terminals/{id}/email`), the consent requests the center mailed, and
//! the answer a check-in carries back to the agent (`CheckinResponse::consent`).

use serde::{Deserialize, Serialize};

/// How the user answered a plan that waits for consent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ConsentDecision {
    Accepted,
    Declined,
}

impl ConsentDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentDecision::Accepted => "accepted",
            ConsentDecision::Declined => "declined",
        }
    }

    pub fn parse(text: &str) -> Option<ConsentDecision> {
        match text {
            "accepted" => Some(ConsentDecision::Accepted),
            "declined" => Some(ConsentDecision::Declined),
            _ => None,
        }
    }
}

/// Where the answer was given.
pub mod answered_by {
    /// Through the signed link of the center's e-mail.
    pub const EMAIL: &str = "email";
    /// On the terminal (`herd-agent consent accept|decline`).
    pub const DEVICE: &str = "device";
}

/// The user's answer given away from the terminal, carried in the check-in answer of a
/// terminal that said it waits for consent to this plan (`CheckinRequest::consent_waiting`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsentAnswer {
    pub plan_id: String,
    pub decision: ConsentDecision,
    /// RFC 3339.
    pub decided_at: String,
    /// `email` (or `device`).
    pub by: String,
}

/// `PUT /v1/terminals/{id}/email`: the address consent notices for this terminal's user go
/// to; `null` stops them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TerminalEmail {
    #[cfg_attr(feature = "openapi", schema(max_length = 254))]
    pub email: Option<String>,
}

/// One consent request the center mailed (`GET /v1/terminals/{id}/consents`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsentRequestDoc {
    pub id: u64,
    pub terminal: String,
    pub plan_id: String,
    /// What the plan changes, in words.
    pub change: String,
    /// Where the notice went.
    pub email: String,
    /// RFC 3339.
    pub requested_at: String,
    /// RFC 3339: the links are refused after it.
    pub expires_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<ConsentDecision>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    /// `email` or `device`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// A terminal's consent requests, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsentRequestList {
    pub requests: Vec<ConsentRequestDoc>,
}

/// `GET /v1/sites/terminals/{id}/consent?plan_id=`: a site asks the center for the e-mailed
/// answer of a terminal it serves that waits for consent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SiteConsent {
    pub consent: Option<ConsentAnswer>,
}
