//! Tokens operators create, list and revoke: enrolment tokens (for terminals to enrol with, a
//! number of uses; a re-enrolment token is bound to one enrolled terminal and has one use) and
//! API tokens (operator, or vendor bound to one vendor id). Each is shown once; the store keeps
//! only its SHA-256, and listings name a token by the first digits of that hash. Lifetimes are
//! capped by `max_api_token_days` and `max_enrol_token_days`: a longer request is refused,
//! never silently shortened.

use herd_core::check_identifier;
use herd_proto::api::{
    NewApiToken, NewEnrolmentToken, TokenCreated, TokenInfo, TokenList, TokenRevoked,
};
use herd_store::{ApiTokenRow, EnrolTokenRow, RevokedToken, Role};

use crate::auth::{new_secret, secret_hash};
use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::{Center, rfc3339, unix_now};

/// The most enrolments one token allows (the store keeps counts as signed 64-bit integers;
/// the API promises less, a number that is still far beyond any fleet).
const MAX_USES: u64 = 1_000_000_000;
/// How many hex digits of a token's hash name it in listings.
const TOKEN_ID_DIGITS: usize = 12;
const DAY_SECS: u64 = 86_400;

/// The lifetime, in seconds, of a token requested for `ttl_secs` (default `default_days`,
/// shortened to the cap), refused beyond `cap_days` with the setting named.
fn lifetime(
    ttl_secs: Option<u64>,
    default_days: u64,
    cap_days: u32,
    cap_key: &str,
) -> CenterResult<i64> {
    let cap_secs = u64::from(cap_days) * DAY_SECS;
    let ttl = ttl_secs.unwrap_or((default_days * DAY_SECS).min(cap_secs));
    if ttl > cap_secs {
        // A value the schema allows, refused by this center's configuration: 422.
        return Err(CenterError::new(
            ErrorKind::DocumentInvalid,
            format!(
                "the token request: $.ttl_secs: {ttl} s is longer than this center allows for such \
             tokens: {cap_days} days ({cap_key})"
            ),
        ));
    }
    Ok(ttl as i64)
}

fn token_id(hash: &str) -> String {
    hash.chars().take(TOKEN_ID_DIGITS).collect()
}

fn api_token_info(row: &ApiTokenRow, now: i64) -> TokenInfo {
    TokenInfo {
        id: token_id(&row.hash),
        kind: row.role.as_str().to_owned(),
        vendor: row.vendor.clone(),
        reenrol_terminal: None,
        label: row.label.clone(),
        created_at: rfc3339(row.created_at),
        expires_at: rfc3339(row.expires_at),
        expired: row.expires_at <= now,
        uses_left: None,
    }
}

fn enrol_token_info(row: &EnrolTokenRow, now: i64) -> TokenInfo {
    TokenInfo {
        id: token_id(&row.hash),
        kind: "enrolment".to_owned(),
        vendor: None,
        reenrol_terminal: row.reenrol_terminal.clone(),
        label: row.label.clone(),
        created_at: rfc3339(row.created_at),
        expires_at: rfc3339(row.expires_at),
        expired: row.expires_at <= now,
        uses_left: Some(row.uses_left),
    }
}

impl Center {
    /// A new enrolment token, or a re-enrolment token for one enrolled terminal.
    pub async fn new_enrolment_token(
        &self,
        request: NewEnrolmentToken,
    ) -> CenterResult<TokenCreated> {
        let uses = request.uses.unwrap_or(1);
        if uses > MAX_USES {
            return Err(CenterError::bad_request(format!(
                "the token request: $.uses: {uses} is more than {MAX_USES}"
            )));
        }
        let ttl = lifetime(
            request.ttl_secs,
            7,
            self.config.max_enrol_token_days,
            "max_enrol_token_days",
        )?;
        let mut label = request.label;
        if let Some(terminal) = &request.reenrol_terminal {
            if uses != 1 {
                // Contradicting fields, which the schema cannot express: 422.
                return Err(CenterError::new(
                    ErrorKind::DocumentInvalid,
                    format!(
                        "the token request: $.uses: a re-enrolment token re-enrols its terminal once, \
                     not {uses} times"
                    ),
                ));
            }
            if self.store.terminal(terminal).await?.is_none() {
                return Err(CenterError::not_found(format!(
                    "no terminal {terminal:?} is enrolled: a re-enrolment token is for an \
                     enrolled terminal (a new one enrols with an ordinary token)"
                )));
            }
            if label.is_empty() {
                label = format!("re-enrolment of {terminal}");
            }
        }
        let now = unix_now();
        let expires_at = now + ttl;
        let token = new_secret();
        self.store
            .enrol_token_insert(EnrolTokenRow {
                hash: secret_hash(&token),
                label,
                uses_left: uses,
                created_at: now,
                expires_at,
                reenrol_terminal: request.reenrol_terminal,
            })
            .await?;
        Ok(TokenCreated {
            token,
            expires_at: rfc3339(expires_at),
        })
    }

    /// A new API token for an operator, a vendor or a viewer (who reads in the console).
    pub async fn new_api_token(&self, request: NewApiToken) -> CenterResult<TokenCreated> {
        let (role, vendor) = match (request.role.as_str(), request.vendor) {
            ("operator", None) => (Role::Operator, None),
            ("operator", Some(_)) => {
                return Err(CenterError::new(
                    ErrorKind::DocumentInvalid,
                    "the token request: $.vendor: operator tokens have no vendor",
                ));
            }
            ("vendor", Some(vendor)) => {
                check_identifier(&vendor).map_err(|m| {
                    CenterError::bad_request(format!("the token request: $.vendor: {m}"))
                })?;
                (Role::Vendor, Some(vendor))
            }
            ("vendor", None) => {
                return Err(CenterError::new(
                    ErrorKind::DocumentInvalid,
                    "the token request: $.vendor: a vendor token needs the vendor id",
                ));
            }
            ("viewer", None) => (Role::Viewer, None),
            ("analyst", None) => (Role::Analyst, None),
            ("analyst", Some(_)) => {
                return Err(CenterError::new(
                    ErrorKind::DocumentInvalid,
                    "the token request: $.vendor: analyst tokens have no vendor",
                ));
            }
            ("viewer", Some(_)) => {
                return Err(CenterError::new(
                    ErrorKind::DocumentInvalid,
                    "the token request: $.vendor: viewer tokens have no vendor",
                ));
            }
            (other, _) => {
                return Err(CenterError::bad_request(format!(
                    "the token request: $.role: {other:?} is not one of \"operator\", \
                     \"vendor\", \"analyst\", \"viewer\""
                )));
            }
        };
        let ttl = lifetime(
            request.ttl_secs,
            365,
            self.config.max_api_token_days,
            "max_api_token_days",
        )?;
        let now = unix_now();
        let expires_at = now + ttl;
        let token = new_secret();
        self.store
            .api_token_insert(ApiTokenRow {
                hash: secret_hash(&token),
                role,
                vendor,
                label: request.label,
                created_at: now,
                expires_at,
            })
            .await?;
        Ok(TokenCreated {
            token,
            expires_at: rfc3339(expires_at),
        })
    }

    /// Every API and enrolment token, by id, kind and label (never a secret).
    pub async fn tokens(&self) -> CenterResult<TokenList> {
        let now = unix_now();
        let mut tokens: Vec<TokenInfo> = self
            .store
            .api_tokens()
            .await?
            .iter()
            .map(|row| api_token_info(row, now))
            .collect();
        tokens.extend(
            self.store
                .enrol_tokens()
                .await?
                .iter()
                .map(|row| enrol_token_info(row, now)),
        );
        Ok(TokenList { tokens })
    }

    /// Revokes the token `id` names (a prefix of its hash, as listed), at once for every
    /// center process. The last valid operator token is kept unless `force`.
    pub async fn revoke_token(&self, id: &str, force: bool) -> CenterResult<TokenRevoked> {
        if id.len() < 8 || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            // No token can have such an id.
            return Err(CenterError::not_found(format!(
                "{id:?} is not a token id: 8 to 64 hex digits, as `herd token list` shows them"
            )));
        }
        let now = unix_now();
        let revoked = self.store.token_revoke(id, now, force).await?;
        let token = match &revoked {
            RevokedToken::Api(row) => api_token_info(row, now),
            RevokedToken::Enrolment(row) => enrol_token_info(row, now),
        };
        tracing::info!(id = %token.id, kind = %token.kind, label = %token.label, "token revoked");
        Ok(TokenRevoked { token })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_longer_than_the_cap_is_refused_not_shortened() {
        assert_eq!(lifetime(None, 7, 30, "k").unwrap(), 7 * 86_400);
        // A default over the cap is the cap.
        assert_eq!(lifetime(None, 365, 30, "k").unwrap(), 30 * 86_400);
        assert_eq!(
            lifetime(Some(30 * 86_400), 7, 30, "k").unwrap(),
            30 * 86_400
        );
        let err = lifetime(Some(30 * 86_400 + 1), 7, 30, "max_enrol_token_days").unwrap_err();
        assert!(
            err.message.contains("30 days (max_enrol_token_days)"),
            "{}",
            err.message
        );
    }
}
