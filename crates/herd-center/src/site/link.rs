//! A site's identity: enrolled once with a site enrolment token, then kept in
//! `<data>/site/` — `key.pem` (0600), `cert.pem` (the certificate the center issued: it serves
//! the site's terminals and calls the center), `ca.pem` (the center's anchors: terminals' and
//! the center's certificates are verified against them), `root.json` (the center's TUF root at
//! enrolment) and `site.json` (id, upstream, URL). Written key first and `site.json` last, so a
//! start that finds `site.json` finds the rest. A renewal (`renew.rs`) replaces the key and
//! the certificate as a pair: both go to `renewed.json` first, then to `key.pem` and
//! `cert.pem`, and `renewed.json` is removed last; a start that finds `renewed.json` finishes
//! the replacement, so the key and the certificate on disk always belong together.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use herd_proto::site::SiteEnrolRequest;
use herd_tls::KeyPairPem;
use serde::{Deserialize, Serialize};

use crate::config::SiteConfig;

/// The site's identity, as enrolled.
#[derive(Clone, Serialize, Deserialize)]
pub struct SiteIdentity {
    pub id: String,
    pub upstream: String,
    pub url: String,
    #[serde(skip)]
    pub cert_pem: String,
    #[serde(skip)]
    key_pem: String,
    #[serde(skip)]
    pub ca_pem: String,
    #[serde(skip)]
    pub tuf_root: String,
}

impl std::fmt::Debug for SiteIdentity {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteIdentity")
            .field("id", &self.id)
            .field("upstream", &self.upstream)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl SiteIdentity {
    pub fn key_pair(&self) -> KeyPairPem {
        KeyPairPem {
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
        }
    }
}

fn site_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("site")
}

/// The stored identity, or a new one enrolled with the center.
pub(super) async fn open_or_enrol(
    data_dir: &Path,
    config: &SiteConfig,
    server_names: &[String],
) -> anyhow::Result<SiteIdentity> {
    let dir = site_dir(data_dir);
    if dir.join("site.json").exists() {
        let identity = read(&dir)?;
        if identity.id != config.id {
            bail!(
                "site_id: this data directory belongs to site {:?}, not {:?} (use another \
                 --data-dir, or the id it was enrolled as)",
                identity.id,
                config.id
            );
        }
        if identity.upstream != config.upstream {
            tracing::warn!(
                enrolled = %identity.upstream,
                configured = %config.upstream,
                "the upstream differs from the center this site enrolled with; using the configured one"
            );
            return Ok(SiteIdentity {
                upstream: config.upstream.clone(),
                ..identity
            });
        }
        return Ok(identity);
    }
    let token = config.token.clone().context(
        "site_token: this site has not enrolled yet; give a site enrolment token (`herd sites \
         token create` at the center) with --site-token",
    )?;
    let ca_file = config.upstream_ca.clone().context(
        "upstream_ca: at its first start a site needs the center's CA certificate (the center's \
         <data-dir>/ca.pem) to trust it: --upstream-ca FILE",
    )?;
    let ca_pem = std::fs::read_to_string(&ca_file)
        .with_context(|| format!("upstream_ca: cannot read {}", ca_file.display()))?;
    let (key_pem, csr_pem) = herd_tls::new_key_and_csr(&config.id)?;
    let request = SiteEnrolRequest {
        token,
        csr_pem,
        id: config.id.clone(),
        url: config.url.clone(),
        server_names: server_names.to_vec(),
    };
    let upstream = config.upstream.clone();
    let ca_for_call = ca_pem.clone();
    let enrolled = tokio::task::spawn_blocking(move || {
        herd_client::Client::new(&upstream, &ca_for_call, None)?.enrol_site(&request)
    })
    .await
    .context("the enrolment task failed")?
    .with_context(|| {
        format!(
            "cannot enrol site {:?} with the center {}",
            config.id, config.upstream
        )
    })?;
    let identity = SiteIdentity {
        id: enrolled.site,
        upstream: config.upstream.clone(),
        url: config.url.clone(),
        cert_pem: enrolled.certificate_pem,
        key_pem,
        ca_pem: enrolled.ca_pem,
        tuf_root: enrolled.tuf_root,
    };
    write(&dir, &identity)?;
    tracing::info!(site = %identity.id, center = %identity.upstream, "site enrolled with its center");
    Ok(identity)
}

/// The journal of a renewal in progress: the new key and certificate, together.
const RENEWED: &str = "renewed.json";

/// Stores a renewed key and certificate in place of the site's (see the module's note).
pub(super) fn store_renewed(data_dir: &Path, pair: &KeyPairPem) -> anyhow::Result<()> {
    let dir = site_dir(data_dir);
    let journal = serde_json::to_vec(&serde_json::json!({
        "cert_pem": pair.cert_pem,
        "key_pem": pair.key_pem,
    }))
    .expect("a key pair serialises");
    herd_fs::write_atomic(&dir.join(RENEWED), &journal, 0o600)?;
    finish_renewal(&dir, pair)
}

fn finish_renewal(dir: &Path, pair: &KeyPairPem) -> anyhow::Result<()> {
    herd_fs::write_atomic(&dir.join("key.pem"), pair.key_pem.as_bytes(), 0o600)?;
    herd_fs::write_atomic(&dir.join("cert.pem"), pair.cert_pem.as_bytes(), 0o600)?;
    let journal = dir.join(RENEWED);
    std::fs::remove_file(&journal)
        .with_context(|| format!("cannot remove {}", journal.display()))?;
    herd_fs::sync_dir(dir)?;
    Ok(())
}

/// Finishes a renewal a stop interrupted, if any.
fn recover_renewal(dir: &Path) -> anyhow::Result<()> {
    let journal = dir.join(RENEWED);
    let text = match std::fs::read_to_string(&journal) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", journal.display())),
    };
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a renewed key pair", journal.display()))?;
    let field = |name: &str| {
        value[name]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("{}: no {name}", journal.display()))
    };
    let pair = KeyPairPem {
        cert_pem: field("cert_pem")?,
        key_pem: field("key_pem")?,
    };
    tracing::info!("finishing the site certificate's renewal a stop interrupted");
    finish_renewal(dir, &pair)
}

fn read(dir: &Path) -> anyhow::Result<SiteIdentity> {
    recover_renewal(dir)?;
    let text = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the site identity {}", path.display()))
    };
    let mut identity: SiteIdentity = serde_json::from_str(&text("site.json")?)
        .with_context(|| format!("{}: not a site identity", dir.join("site.json").display()))?;
    identity.key_pem = text("key.pem")?;
    identity.cert_pem = text("cert.pem")?;
    identity.ca_pem = text("ca.pem")?;
    identity.tuf_root = text("root.json")?;
    Ok(identity)
}

fn write(dir: &Path, identity: &SiteIdentity) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    herd_fs::write_atomic(&dir.join("key.pem"), identity.key_pem.as_bytes(), 0o600)?;
    herd_fs::write_atomic(&dir.join("cert.pem"), identity.cert_pem.as_bytes(), 0o600)?;
    herd_fs::write_atomic(&dir.join("ca.pem"), identity.ca_pem.as_bytes(), 0o600)?;
    herd_fs::write_atomic(&dir.join("root.json"), identity.tuf_root.as_bytes(), 0o600)?;
    let json = serde_json::to_vec_pretty(identity).expect("the identity serialises");
    herd_fs::write_atomic(&dir.join("site.json"), &json, 0o600)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewal_a_stop_interrupted_is_finished_at_the_next_start() {
        let data = tempfile::tempdir().unwrap();
        let dir = site_dir(data.path());
        let identity = SiteIdentity {
            id: "office-1".into(),
            upstream: "https://center.test:8443".into(),
            url: "https://office-1.test:8443".into(),
            cert_pem: "old cert".into(),
            key_pem: "old key".into(),
            ca_pem: "ca".into(),
            tuf_root: "{}".into(),
        };
        write(&dir, &identity).unwrap();
        // Stopped after the journal and the key were written, before the certificate.
        let journal = serde_json::json!({"cert_pem": "new cert", "key_pem": "new key"});
        herd_fs::write_atomic(&dir.join(RENEWED), journal.to_string().as_bytes(), 0o600).unwrap();
        herd_fs::write_atomic(&dir.join("key.pem"), b"new key", 0o600).unwrap();
        let read_back = read(&dir).unwrap();
        assert_eq!(
            (read_back.cert_pem.as_str(), read_back.key_pem.as_str()),
            ("new cert", "new key"),
            "the key and the certificate on disk belong together"
        );
        assert!(!dir.join(RENEWED).exists());
        // A journal that is not one is an error naming the file, not a silent mismatch.
        herd_fs::write_atomic(&dir.join(RENEWED), b"{\"cert_pem\": 1}", 0o600).unwrap();
        let err = format!("{:#}", read(&dir).unwrap_err());
        assert!(err.contains("renewed.json"), "{err}");
        // A completed renewal through `store_renewed` leaves no journal.
        std::fs::remove_file(dir.join(RENEWED)).unwrap();
        let pair = KeyPairPem {
            cert_pem: "third cert".into(),
            key_pem: "third key".into(),
        };
        store_renewed(data.path(), &pair).unwrap();
        let read_back = read(&dir).unwrap();
        assert_eq!(read_back.key_pair(), pair);
        assert!(!dir.join(RENEWED).exists());
    }
}
