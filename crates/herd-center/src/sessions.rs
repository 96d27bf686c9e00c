//! Console sign-in: an API token (pasted once, or a one-time link `herd console link` printed)
//! is exchanged for a session whose secret lives only in an HttpOnly, Secure, SameSite=Strict
//! cookie. The store keeps the secret's SHA-256, the API token the session acts as, and the
//! session's CSRF token; the session's role is the token's, read at every request, so revoking
//! or expiring the token ends every session opened with it.

use herd_store::{ConsoleLinkRow, ConsoleSessionRow, LinkTaken, Role};

use crate::auth::{new_secret, secret_hash};
use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::{Center, rfc3339, unix_now};

/// The cookie that carries the session's secret.
pub const COOKIE: &str = "herd_console";
/// No session outlives this, however busy.
pub const SESSION_MAX_SECS: i64 = 12 * 3600;
/// A session's last use is written at most this often (a page view is not a write).
const TOUCH_EVERY_SECS: i64 = 30;
/// A one-time link's lifetime when none is asked for, and the longest allowed.
pub const LINK_DEFAULT_SECS: i64 = 10 * 60;
pub const LINK_MAX_SECS: i64 = 24 * 3600;

/// What a signed-in user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConsoleRole {
    /// Reads every page; changes nothing.
    Viewer,
    /// Reads, and judges samples (verdicts); changes nothing of the fleet's configuration.
    Analyst,
    /// Reads, judges samples, and changes the fleet's configuration (groups, rules, rollouts,
    /// messages).
    Operator,
}

impl ConsoleRole {
    fn of(role: Role) -> Option<ConsoleRole> {
        match role {
            Role::Operator => Some(ConsoleRole::Operator),
            Role::Viewer => Some(ConsoleRole::Viewer),
            Role::Analyst => Some(ConsoleRole::Analyst),
            Role::Vendor => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ConsoleRole::Viewer => "viewer",
            ConsoleRole::Analyst => "analyst",
            ConsoleRole::Operator => "operator",
        }
    }
}

/// A signed-in request's session.
#[derive(Clone, Debug)]
pub struct SignedIn {
    /// The SHA-256 of the cookie's secret (the session's key in the store).
    pub hash: String,
    pub label: String,
    pub role: ConsoleRole,
    /// Every form of this session carries it; an action without it is refused.
    pub csrf: String,
}

/// Why a request has no session; each is told to the user on the sign-in page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoSession {
    /// No cookie.
    Absent,
    /// A cookie the store does not know: forged, or from a session that was signed out.
    Unknown,
    /// Idle longer than `console_idle_secs`, or older than [`SESSION_MAX_SECS`].
    Expired,
    /// The API token it was opened with was revoked or expired.
    TokenEnded,
}

impl NoSession {
    pub fn as_str(self) -> &'static str {
        match self {
            NoSession::Absent => "absent",
            NoSession::Unknown => "unknown",
            NoSession::Expired => "expired",
            NoSession::TokenEnded => "token",
        }
    }

    pub fn parse(text: &str) -> Option<NoSession> {
        [
            NoSession::Absent,
            NoSession::Unknown,
            NoSession::Expired,
            NoSession::TokenEnded,
        ]
        .into_iter()
        .find(|why| why.as_str() == text)
    }

    /// What the sign-in page says.
    pub fn explain(self) -> &'static str {
        match self {
            NoSession::Absent => "Sign in to see the fleet.",
            NoSession::Unknown => {
                "That session is not known here (signed out, or not issued by this center). Sign in again."
            }
            NoSession::Expired => "Your session expired. Sign in again.",
            NoSession::TokenEnded => {
                "The token this session was opened with was revoked or expired. Sign in with a current one."
            }
        }
    }
}

/// A session just opened: the cookie's secret (shown to nobody but the browser).
#[derive(Debug)]
pub struct Opened {
    pub secret: String,
}

impl Center {
    /// Opens a session for an API token of an operator or a viewer.
    pub async fn console_sign_in(&self, token: &str) -> CenterResult<Opened> {
        let token = token.trim();
        if token.is_empty() {
            return Err(CenterError::unauthenticated(
                "paste an API token to sign in",
            ));
        }
        let hash = secret_hash(token);
        let row = self
            .store
            .api_token_find(&hash)
            .await?
            .ok_or_else(|| CenterError::unauthenticated("that token is not known here"))?;
        let now = unix_now();
        if row.expires_at <= now {
            return Err(CenterError::new(
                ErrorKind::TokenExpired,
                format!("that token expired at {}", rfc3339(row.expires_at)),
            ));
        }
        if ConsoleRole::of(row.role).is_none() {
            return Err(CenterError::forbidden(
                "vendor tokens publish feeds and packages; the console is for operator, \
                 analyst and viewer tokens",
            ));
        }
        self.open_session(&hash, &row.label, now).await
    }

    /// A one-time sign-in link for the operator holding `token` (`herd console link`): the
    /// secret to put in the link, and when it expires.
    pub async fn console_link_create(
        &self,
        token: &str,
        label: &str,
        ttl_secs: Option<i64>,
    ) -> CenterResult<(String, i64)> {
        let ttl = ttl_secs.unwrap_or(LINK_DEFAULT_SECS);
        if !(60..=LINK_MAX_SECS).contains(&ttl) {
            return Err(CenterError::bad_request(format!(
                "the link request: $.ttl_secs: {ttl} is outside 60..={LINK_MAX_SECS}"
            )));
        }
        let token_hash = secret_hash(token);
        let row = self
            .store
            .api_token_find(&token_hash)
            .await?
            .ok_or_else(|| CenterError::unauthenticated("unknown API token"))?;
        let now = unix_now();
        let secret = new_secret();
        let expires_at = now + ttl;
        let label = if label.is_empty() {
            row.label
        } else {
            label.to_owned()
        };
        self.store
            .console_link_insert(&ConsoleLinkRow {
                hash: secret_hash(&secret),
                token_hash,
                label,
                created_at: now,
                expires_at,
            })
            .await?;
        Ok((secret, expires_at))
    }

    /// Trades a one-time link's secret for a session: once, before it expires.
    pub async fn console_link_take(&self, secret: &str) -> CenterResult<Opened> {
        let now = unix_now();
        match self
            .store
            .console_link_take(&secret_hash(secret), now)
            .await?
        {
            LinkTaken::Taken(link) => self.open_session(&link.token_hash, &link.label, now).await,
            LinkTaken::Used(at) => Err(CenterError::unauthenticated(format!(
                "this sign-in link was used at {}; ask for a new one (`herd console link`)",
                rfc3339(at)
            ))),
            LinkTaken::Expired(at) => Err(CenterError::new(
                ErrorKind::TokenExpired,
                format!(
                    "this sign-in link expired at {}; ask for a new one (`herd console link`)",
                    rfc3339(at)
                ),
            )),
            LinkTaken::Unknown => Err(CenterError::unauthenticated(
                "this sign-in link is not known here",
            )),
        }
    }

    async fn open_session(&self, token_hash: &str, label: &str, now: i64) -> CenterResult<Opened> {
        // Sessions idle past their time are removed as new ones open: the table stays small.
        let idle = self.config.console_idle_secs as i64;
        self.store.console_sessions_expire(now - idle).await?;
        let secret = new_secret();
        self.store
            .console_session_insert(&ConsoleSessionRow {
                hash: secret_hash(&secret),
                token_hash: token_hash.to_owned(),
                label: label.to_owned(),
                csrf: new_secret(),
                created_at: now,
                last_seen: now,
            })
            .await?;
        Ok(Opened { secret })
    }

    /// The session a cookie's secret names, if it is current; notes its use.
    pub async fn console_session(&self, secret: &str) -> CenterResult<Result<SignedIn, NoSession>> {
        let hash = secret_hash(secret);
        let Some(session) = self.store.console_session_find(&hash).await? else {
            return Ok(Err(NoSession::Unknown));
        };
        let now = unix_now();
        let idle = self.config.console_idle_secs as i64;
        if now - session.last_seen > idle || now - session.created_at > SESSION_MAX_SECS {
            self.store.console_session_delete(&hash).await?;
            return Ok(Err(NoSession::Expired));
        }
        let role = match self.store.api_token_find(&session.token_hash).await? {
            Some(token) if token.expires_at > now => ConsoleRole::of(token.role),
            _ => None,
        };
        let Some(role) = role else {
            self.store.console_session_delete(&hash).await?;
            return Ok(Err(NoSession::TokenEnded));
        };
        if now - session.last_seen >= TOUCH_EVERY_SECS {
            self.store.console_session_touch(&hash, now).await?;
        }
        Ok(Ok(SignedIn {
            hash,
            label: session.label,
            role,
            csrf: session.csrf,
        }))
    }

    /// Ends a session (sign-out).
    pub async fn console_sign_out(&self, session: &SignedIn) -> CenterResult<()> {
        self.store.console_session_delete(&session.hash).await?;
        Ok(())
    }
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_equal_only_when_equal() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
        assert!(!same_secret("", "a"));
    }

    #[test]
    fn reasons_round_trip() {
        for why in [
            NoSession::Absent,
            NoSession::Unknown,
            NoSession::Expired,
            NoSession::TokenEnded,
        ] {
            assert_eq!(NoSession::parse(why.as_str()), Some(why));
        }
        assert_eq!(NoSession::parse("<script>"), None);
    }
}
