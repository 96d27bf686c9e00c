//! Who is calling: operators and vendors by API token (the HTTP layer takes it from
//! `Authorization: Bearer …`), terminals by the client certificate issued at enrolment. A
//! terminal is only ever the terminal its certificate names, and only while that certificate
//! is the one the store holds for it.

use std::sync::Arc;

use herd_proto::terminal::HardwareDoc;
use herd_store::{ApiTokenRow, Role};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::{Center, unix_now};

/// A new secret (API or enrolment token): 32 random bytes, hex, with a recognisable prefix.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("herd_{}", hex::encode(bytes))
}

/// Secrets are stored only as their SHA-256.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The verified client certificate a connection presented, as the TLS listener saw it.
#[derive(Debug)]
pub struct PeerIdentity {
    /// SHA-256 (hex) of the DER certificate: the center accepts only a terminal's current one.
    pub sha256: String,
    /// The terminal id the certificate was issued for.
    pub terminal: Option<String>,
    /// The site id, when it is a site server's certificate.
    pub site: Option<String>,
    /// Whether it is the center's own client certificate (a center pushing to a site).
    pub center: bool,
}

/// An authenticated operator or vendor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    Operator,
    Vendor(String),
}

impl Center {
    /// The caller holding API token `token`. Read from the store at every request (one
    /// indexed read, without the writer): a revoked token is refused at once by every center
    /// process, which a cache would delay.
    pub async fn caller(&self, token: &str) -> CenterResult<Caller> {
        caller_of(self.live_token(token).await?)
    }

    /// Who may judge files: an operator's or an analyst's token. Answers the role's name, which
    /// verdicts record as their author.
    pub async fn judge(&self, token: &str) -> CenterResult<&'static str> {
        let row = self.live_token(token).await?;
        if row.role == Role::Analyst {
            return Ok("analyst");
        }
        operator_only(caller_of(row)?).map(|()| "operator")
    }

    /// Succeeds for an operator's token only.
    pub async fn operator(&self, token: &str) -> CenterResult<()> {
        operator_only(self.caller(token).await?)
    }

    /// The stored row of API token `token`, refused when unknown or expired.
    async fn live_token(&self, token: &str) -> CenterResult<ApiTokenRow> {
        let row = self
            .store
            .api_token_find(&secret_hash(token))
            .await?
            .ok_or_else(|| CenterError::unauthenticated("unknown API token"))?;
        if row.expires_at <= unix_now() {
            return Err(CenterError::new(
                ErrorKind::TokenExpired,
                format!(
                    "the API token {:?} expired at {}",
                    row.label,
                    super::rfc3339(row.expires_at)
                ),
            ));
        }
        Ok(row)
    }

    /// The terminal behind a connection's client certificate (`None`: it presented none).
    pub async fn terminal(&self, peer: Option<&PeerIdentity>) -> CenterResult<Arc<KnownTerminal>> {
        let peer = peer.ok_or_else(|| {
            CenterError::new(
                ErrorKind::ClientCertRequired,
                "terminal endpoints need the client certificate issued at enrolment",
            )
        })?;
        let id = peer.terminal.as_deref().ok_or_else(|| {
            CenterError::new(
                ErrorKind::ClientCertNotTerminal,
                "the client certificate does not name a terminal",
            )
        })?;
        let presented = Some(peer.sha256.as_str());
        let mut known = self.known_terminal_presenting(id, presented).await?;
        if known.cert_sha256 != peer.sha256 {
            // This process's copy may predate a renewal or re-enrolment made through another
            // center process (the change log reaches it within a second): the certificate is
            // refused only once the store says so too. A mismatch is rare, so one more read.
            self.forget_terminal(id);
            known = self.known_terminal_presenting(id, presented).await?;
        }
        if known.cert_sha256 != peer.sha256 {
            return Err(CenterError::new(
                ErrorKind::CertRevoked,
                format!(
                    "this certificate is no longer terminal {id:?}'s (it was renewed, re-enrolled \
                     or deleted; `herd enrol-token create --reenrol {id}` lets the terminal \
                     enrol again, keeping its id)"
                ),
            ));
        }
        Ok(known)
    }
}

/// What the center needs to know about a terminal on every check-in.
#[derive(Debug)]
pub struct KnownTerminal {
    pub id: String,
    pub user: Option<String>,
    pub hardware: HardwareDoc,
    pub tz: Option<String>,
    /// The group it is in: its policy comes from the group cache at each check-in, so a
    /// group's change reaches its terminals without them being read again.
    pub group: String,
    pub cert_sha256: String,
    /// A digest of the network interfaces this process last stored for the terminal (0:
    /// none yet), so a set reported again is not written again (see `checkin`).
    pub interfaces_digest: std::sync::atomic::AtomicU64,
    /// At most how many events of the terminal are stored ([`u64::MAX`]: not known yet): the
    /// count read last plus what this process appended since (deletions only lower the true
    /// count), so a batch that fits under the quota needs no count (see `events`; SQLite only,
    /// where one process sees every append).
    pub events_at_most: std::sync::atomic::AtomicU64,
}

/// The API caller a live token stands for; viewers and analysts are told what their token is for.
fn caller_of(row: ApiTokenRow) -> CenterResult<Caller> {
    match row.role {
        Role::Operator => Ok(Caller::Operator),
        Role::Vendor => match row.vendor {
            Some(vendor) => Ok(Caller::Vendor(vendor)),
            None => Err(CenterError::internal(
                "a vendor token without a vendor id is stored",
            )),
        },
        Role::Viewer => Err(CenterError::forbidden(format!(
            "the token {:?} is a viewer's: it signs in to the console (/console/) and reads \
             there; the API needs an operator or vendor token",
            row.label
        ))),
        Role::Analyst => Err(CenterError::forbidden(format!(
            "the token {:?} is an analyst's: it judges samples (/v1/samples, /v1/verdicts, \
             /v1/herd-set) and reads the console; this endpoint needs an operator or vendor \
             token",
            row.label
        ))),
    }
}

/// Refuses a vendor where only operators may act.
fn operator_only(caller: Caller) -> CenterResult<()> {
    match caller {
        Caller::Operator => Ok(()),
        Caller::Vendor(vendor) => Err(CenterError::forbidden(format!(
            "this endpoint is for operators; the token is vendor {vendor:?}'s"
        ))),
    }
}
