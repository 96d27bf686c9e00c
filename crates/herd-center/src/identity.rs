//! The identities' lifecycle: terminals renew their client certificates over mutual TLS before
//! they expire, and the center keeps its own server certificate fresh, reissuing it while it
//! serves (new connections get the new one, no restart).
//!
//! A renewal is authenticated by the certificate it renews: the terminal's current one, or the
//! one it renewed from last (still valid), so that a terminal whose renewal answer was lost can
//! renew again. Any other certificate, and every refused renewal, changes nothing.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use herd_proto::api::{CertificateRenewal, CertificateRenewed};
use herd_store::RenewError;
use herd_tls::{CertificateAuthority, KeyPairPem, ServerCertSlot, TrustSlot};
use tokio::sync::watch;

use crate::auth::PeerIdentity;
use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::{Center, rfc3339};

/// The server certificate this process serves, replaceable while it serves.
#[derive(Debug)]
pub(crate) struct ServerCertificate {
    pub slot: Arc<ServerCertSlot>,
    /// The anchors client certificates are verified against, replaced when the CA changes.
    pub trust: Arc<TrustSlot>,
    /// The served certificate's validity (not before, not after).
    validity: Mutex<(SystemTime, SystemTime)>,
}

impl ServerCertificate {
    /// Issues a server certificate for `names` from `ca`.
    pub fn issue(ca: &herd_tls::CertificateAuthority, names: &[String]) -> anyhow::Result<Self> {
        let (issued, validity) = issue_server(ca, names)?;
        Ok(ServerCertificate {
            slot: Arc::new(ServerCertSlot::new(&issued)?),
            trust: Arc::new(TrustSlot::new(ca)?),
            validity: Mutex::new(validity),
        })
    }

    /// A site server's: the certificate the center issued it, verifying client certificates
    /// against the center's anchors.
    pub fn from_site(site: &crate::site::SiteLink) -> anyhow::Result<Self> {
        let pair = site.key_pair();
        let validity = herd_tls::cert_validity(&pair.cert_pem)?;
        Ok(ServerCertificate {
            slot: Arc::new(ServerCertSlot::new(&pair)?),
            trust: Arc::new(TrustSlot::from_pem(&site.identity.ca_pem)?),
            validity: Mutex::new(validity),
        })
    }

    /// Serves `pair` to every connection from now on (open connections keep theirs).
    pub fn replace(&self, pair: &KeyPairPem) -> anyhow::Result<()> {
        let validity = herd_tls::cert_validity(&pair.cert_pem)?;
        self.slot.replace(pair)?;
        *self.validity.lock().expect("server certificate validity") = validity;
        Ok(())
    }

    pub fn validity(&self) -> (SystemTime, SystemTime) {
        *self.validity.lock().expect("server certificate validity")
    }
}

fn issue_server(
    ca: &herd_tls::CertificateAuthority,
    names: &[String],
) -> anyhow::Result<(KeyPairPem, (SystemTime, SystemTime))> {
    let issued = ca
        .issue_server(names)
        .context("cannot issue the server certificate")?;
    let validity = herd_tls::cert_validity(&issued.cert_pem)?;
    Ok((issued, validity))
}

/// Whether a certificate valid over `validity` should be replaced at `now`: when less than a
/// third of its lifetime remains (four months of a year), so a reissue that fails is retried
/// for months before anything expires.
pub(crate) fn due(validity: (SystemTime, SystemTime), now: SystemTime) -> bool {
    let (not_before, not_after) = validity;
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    let remaining = not_after.duration_since(now).unwrap_or_default();
    remaining < lifetime / 3
}

fn unix_seconds(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Center {
    /// Issues a new server certificate (the CA may have changed: call it after a rotation)
    /// and serves it to every connection from now on; open connections keep theirs.
    pub fn reissue_server_certificate(&self) -> anyhow::Result<()> {
        let (issued, validity) = issue_server(&self.ca(), &self.config.server_names)?;
        self.server_cert.slot.replace(&issued)?;
        *self
            .server_cert
            .validity
            .lock()
            .expect("server certificate validity") = validity;
        self.metrics.server_cert_reissues.fetch_add(1, Relaxed);
        self.note_server_cert_expiry();
        tracing::info!(
            expires_at = %rfc3339(unix_seconds(validity.1)),
            "server certificate reissued"
        );
        Ok(())
    }

    /// Reissues the server certificate if, at `now`, less than a third of its validity
    /// remains; says whether it did.
    pub fn reissue_server_certificate_if_due(&self, now: SystemTime) -> anyhow::Result<bool> {
        if !due(self.server_cert.validity(), now) {
            return Ok(false);
        }
        self.reissue_server_certificate()?;
        Ok(true)
    }

    /// The TLS server configuration of this center: client certificates verified against its
    /// CA, and the server certificate that [`Center::reissue_server_certificate`] replaces.
    pub fn server_config(&self) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        Ok(CertificateAuthority::server_config_swappable(
            self.server_cert.slot.clone(),
            self.server_cert.trust.clone(),
        )?)
    }

    /// When the served server certificate expires.
    pub fn server_certificate_expiry(&self) -> SystemTime {
        self.server_cert.validity().1
    }

    pub(crate) fn note_server_cert_expiry(&self) {
        let expiry = unix_seconds(self.server_certificate_expiry());
        self.metrics
            .server_cert_expiry
            .store(u64::try_from(expiry).unwrap_or(0), Relaxed);
    }

    /// Checks the server certificate every `server_cert_check` (and once at start) until
    /// `shutdown`, reissuing it when due. A failure is logged and retried at the next check:
    /// the certificate still has months to run.
    pub(crate) async fn keep_server_certificate_fresh(
        self: Arc<Center>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(self.config.server_cert_check);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if let Err(err) = self.reissue_server_certificate_if_due(SystemTime::now()) {
                tracing::error!(err = %format!("{err:#}"), "cannot reissue the server certificate");
            }
        }
    }

    /// Renews the client certificate of the terminal behind `peer`; refusals are counted.
    pub async fn renew_certificate(
        &self,
        peer: Option<&PeerIdentity>,
        request: CertificateRenewal,
    ) -> CenterResult<CertificateRenewed> {
        let result = if self.site().is_some() {
            self.site_relay_renew(peer, request).await
        } else {
            self.renew_terminal_certificate(peer, request).await
        };
        match &result {
            Ok(_) => self.metrics.certificate_renewals.fetch_add(1, Relaxed),
            Err(_) => self
                .metrics
                .certificate_renewals_refused
                .fetch_add(1, Relaxed),
        };
        result
    }

    async fn renew_terminal_certificate(
        &self,
        peer: Option<&PeerIdentity>,
        request: CertificateRenewal,
    ) -> CenterResult<CertificateRenewed> {
        // Authenticated before the CA signs anything.
        let (id, presented) = self.renewing_terminal(peer).await?;
        let issued = self
            .ca()
            .sign_terminal_csr(&request.csr_pem, &id, self.config.terminal_cert_days)
            .map_err(|err| CenterError::new(ErrorKind::CsrInvalid, err.to_string()))?;
        let expires_at = herd_tls::cert_not_after(&issued.cert_pem)
            .map_err(|err| CenterError::internal(format!("the certificate just issued: {err}")))?;
        self.store
            .terminal_renew_cert(&id, &presented, &issued.cert_sha256)
            .await
            .map_err(|err| match err {
                RenewError::TerminalGone(_) | RenewError::NotCurrent(_) => {
                    CenterError::new(ErrorKind::CertRevoked, err.to_string())
                }
                RenewError::Store(err) => err.into(),
            })?;
        // This process stops accepting the replaced certificate at once; the others follow
        // the terminal change log within a second.
        self.follow_terminal_changes().await?;
        tracing::info!(terminal = %id, expires_at = %rfc3339(unix_seconds(expires_at)), "terminal certificate renewed");
        Ok(CertificateRenewed {
            terminal: id,
            certificate_pem: issued.cert_pem,
            ca_pem: self.ca().trust_pem().to_owned(),
            expires_at: rfc3339(unix_seconds(expires_at)),
        })
    }

    /// The terminal a renewal is for, and the SHA-256 of the certificate it presented: its
    /// current certificate, or the one it renewed from last (the answer to that renewal may
    /// have been lost). TLS has already refused an expired certificate.
    async fn renewing_terminal(
        &self,
        peer: Option<&PeerIdentity>,
    ) -> CenterResult<(String, String)> {
        match self.terminal(peer).await {
            Ok(known) => Ok((known.id.clone(), known.cert_sha256.clone())),
            Err(refused) if refused.kind == ErrorKind::CertRevoked => {
                let peer = peer.expect("a revoked certificate was presented");
                let id = peer
                    .terminal
                    .as_deref()
                    .expect("a revoked certificate names a terminal");
                match self.store.terminal_previous_cert(id).await? {
                    Some(previous) if previous == peer.sha256 => {
                        Ok((id.to_owned(), peer.sha256.clone()))
                    }
                    _ => Err(refused),
                }
            }
            Err(refused) => Err(refused),
        }
    }
}

/// How long a certificate issued now for `days` days would outlive the CA certificate, if it
/// would: an enrolment then hands out a certificate no client can verify to its end.
pub(crate) fn outlives_ca(
    ca_cert_pem: &str,
    days: u32,
    now: SystemTime,
) -> anyhow::Result<Option<SystemTime>> {
    let (_, ca_not_after) = herd_tls::cert_validity(ca_cert_pem)?;
    let wanted = now + Duration::from_secs(u64::from(days) * 86_400);
    Ok((wanted > ca_not_after).then_some(ca_not_after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_is_due_when_less_than_a_third_remains() {
        let start = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let year = Duration::from_secs(365 * 86_400);
        let validity = (start, start + year);
        assert!(!due(validity, start));
        assert!(!due(validity, start + year / 2));
        assert!(due(
            validity,
            start + year * 2 / 3 + Duration::from_secs(86_400)
        ));
        assert!(due(validity, start + year * 2));
    }
}
