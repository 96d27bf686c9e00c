//! A site renews its own certificate (issue 12) with the center, over mutual TLS with the
//! certificate it has: when less than a third of its validity remains (looked at when the site
//! starts and every hour, the rule the center's own server certificate follows) or when an
//! operator asked for it (`herd sites renew SITE`, seen in the answer to the site's next pull).
//! A new key is made for each renewal. The new pair is stored before it is used (`link.rs`),
//! then served to the site's terminals, presented to the center and used by the mirror from the
//! next connection on. A renewal that fails changes nothing and is tried again at the next
//! look; one whose answer was lost is asked again with the same certificate, which the center
//! still accepts for that (and nothing else).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use herd_proto::site::SiteRenewRequest;
use herd_tls::KeyPairPem;
use tokio::sync::watch;

use super::{Credentials, link};
use crate::Center;

/// How often a site looks whether its certificate is due.
const LOOK_EVERY: Duration = Duration::from_secs(3600);

impl Center {
    /// Renews the site's certificate whenever it is due, until `shutdown`.
    pub(super) async fn renew_when_due(self: Arc<Center>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if let Some(site) = self.site() {
                let due = herd_tls::cert_validity(&site.key_pair().cert_pem)
                    .map(|validity| crate::identity::due(validity, SystemTime::now()))
                    .unwrap_or(true);
                if due {
                    if let Err(err) = self.renew_site_certificate("it is due").await {
                        tracing::warn!(err = %format!("{err:#}"), "cannot renew the site's certificate; trying again within the hour");
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(LOOK_EVERY) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Renews the site's certificate now (`why` is logged): a new key, the center's
    /// certificate for it, stored, then used everywhere the site presents or serves it.
    pub async fn renew_site_certificate(&self, why: &str) -> anyhow::Result<()> {
        let site = self
            .site()
            .context("only a site server renews a site certificate")?;
        let _one = site.renewing.lock().await;
        let (key_pem, csr_pem) = herd_tls::new_key_and_csr(&site.identity.id)?;
        let request = SiteRenewRequest {
            csr_pem,
            server_names: self.config.server_names.clone(),
        };
        let client = site.client();
        let renewed = tokio::task::spawn_blocking(move || client.renew_site(&request))
            .await
            .context("the renewal task failed")?
            .with_context(|| {
                format!(
                    "the center {} refused or did not answer",
                    site.identity.upstream
                )
            })?;
        let pair = KeyPairPem {
            cert_pem: renewed.certificate_pem,
            key_pem,
        };
        // Checked before it is stored: a pair that cannot serve must not replace one that can.
        let client =
            herd_client::Client::new(&site.identity.upstream, &site.identity.ca_pem, Some(&pair))
                .context("the renewed certificate cannot be used")?;
        link::store_renewed(&self.config.data_dir, &pair)?;
        site.mirror.replace_upstream(client.repository());
        self.server_cert.replace(&pair)?;
        *site
            .credentials
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Credentials {
            key_pair: pair,
            client,
        };
        tracing::info!(site = %site.identity.id, expires_at = %renewed.expires_at, why, "site certificate renewed");
        Ok(())
    }
}
