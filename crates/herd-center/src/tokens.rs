//! Tokens operators create: enrolment tokens (for terminals to enrol with, a number of uses)
//! and API tokens (operator, or vendor bound to one vendor id). Each is shown once; the store
//! keeps only its SHA-256.

use herd_core::check_identifier;
use herd_proto::api::{NewApiToken, NewEnrolmentToken, TokenCreated};
use herd_store::{ApiTokenRow, EnrolTokenRow, Role};

use crate::auth::{new_secret, secret_hash};
use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::{Center, rfc3339, unix_now};

/// No token lives longer than ten years, whatever was asked for.
const MAX_TTL_SECS: u64 = 10 * 365 * 86_400;
/// The most enrolments one token allows (the store keeps counts as signed 64-bit integers;
/// the API promises less, a number that is still far beyond any fleet).
const MAX_USES: u64 = 1_000_000_000;

impl Center {
    /// A new enrolment token.
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
        let now = unix_now();
        let expires_at = now + request.ttl_secs.unwrap_or(7 * 86_400).min(MAX_TTL_SECS) as i64;
        let token = new_secret();
        self.store
            .enrol_token_insert(EnrolTokenRow {
                hash: secret_hash(&token),
                label: request.label,
                uses_left: uses,
                created_at: now,
                expires_at,
            })
            .await?;
        Ok(TokenCreated {
            token,
            expires_at: rfc3339(expires_at),
        })
    }

    /// A new API token for an operator or a vendor.
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
            (other, _) => {
                return Err(CenterError::bad_request(format!(
                    "the token request: $.role: {other:?} is neither \"operator\" nor \"vendor\""
                )));
            }
        };
        let now = unix_now();
        let expires_at = now + request.ttl_secs.unwrap_or(365 * 86_400).min(MAX_TTL_SECS) as i64;
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
}
