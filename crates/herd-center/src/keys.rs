//! The CA's private key at rest: where the operator's key-encryption key (KEK) comes from, the
//! CA opened from the store (sealed under the KEK, never stored in the clear), and an online
//! intermediate under an offline root installed in its place.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use anyhow::Context;
use herd_proto::api::{CaInfo, CaInstall};
use herd_store::{CaMaterial, Store, StoreError};
use herd_tls::CertificateAuthority;
use herd_tls::seal::{KeyEncryptionKey, is_sealed};

use crate::config::CenterConfig;
use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::{Center, rfc3339};

/// The environment variable holding the KEK itself.
pub const KEK_ENV: &str = "HERD_CA_KEK";
/// The environment variable naming a file that holds the KEK.
pub const KEK_FILE_ENV: &str = "HERD_CA_KEK_FILE";
/// The name of the KEK among systemd's credentials (`LoadCredential=herd-ca-kek:/etc/herd/ca.kek`).
pub const KEK_CREDENTIAL: &str = "herd-ca-kek";
/// The KEK a center generates in its data directory when none is configured.
pub const GENERATED_KEK_FILE: &str = "ca.kek";

/// Where the KEK was found, for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KekSource {
    Environment,
    File(PathBuf),
    /// Generated at this start, or at an earlier one, beside the database.
    Generated(PathBuf),
}

/// The KEK, looked for in this order: `HERD_CA_KEK`, the configuration's `ca_kek_file`,
/// `HERD_CA_KEK_FILE`, the systemd credential `herd-ca-kek`; without any, `<data_dir>/ca.kek`
/// (created at first start). A file must be readable by its owner only.
pub fn load_kek(config: &CenterConfig) -> anyhow::Result<(KeyEncryptionKey, KekSource)> {
    if let Some(secret) = std::env::var_os(KEK_ENV) {
        let kek = KeyEncryptionKey::from_secret(secret.as_encoded_bytes())
            .with_context(|| format!("{KEK_ENV}"))?;
        return Ok((kek, KekSource::Environment));
    }
    let credential = std::env::var_os("CREDENTIALS_DIRECTORY")
        .map(|dir| PathBuf::from(dir).join(KEK_CREDENTIAL))
        .filter(|path| path.exists());
    let named = config
        .ca_kek_file
        .clone()
        .map(|path| (path, "ca_kek_file"))
        .or_else(|| std::env::var_os(KEK_FILE_ENV).map(|p| (PathBuf::from(p), KEK_FILE_ENV)))
        .or_else(|| credential.map(|path| (path, "the systemd credential herd-ca-kek")));
    if let Some((path, what)) = named {
        let kek = read_kek_file(&path).with_context(|| format!("{what}: {}", path.display()))?;
        return Ok((kek, KekSource::File(path)));
    }
    let path = config.data_dir.join(GENERATED_KEK_FILE);
    if !path.exists() {
        let secret = KeyEncryptionKey::generate_secret()?;
        herd_fs::write_atomic(&path, secret.as_bytes(), 0o600)
            .with_context(|| format!("cannot write a new KEK to {}", path.display()))?;
    }
    let kek = read_kek_file(&path).with_context(|| path.display().to_string())?;
    Ok((kek, KekSource::Generated(path)))
}

fn read_kek_file(path: &Path) -> anyhow::Result<KeyEncryptionKey> {
    let metadata = std::fs::metadata(path).context("cannot read the key-encryption key")?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "the key-encryption key is readable by other users (mode {mode:04o}); \
             make it readable by its owner only (chmod 600)"
        );
    }
    let secret = std::fs::read(path).context("cannot read the key-encryption key")?;
    Ok(KeyEncryptionKey::from_secret(&secret)?)
}

/// The stored CA, created (self-signed) at the first start of the first center process; a key
/// stored in the clear by an older center is sealed in place. Returns it with its generation.
pub(crate) async fn open_ca(
    store: &dyn Store,
    kek: &KeyEncryptionKey,
) -> anyhow::Result<(CertificateAuthority, u64)> {
    let material = match store.ca_get().await? {
        Some(material) => material,
        None => {
            let (cert_pem, key_pem) = CertificateAuthority::generate("Herd center CA")?;
            let key_pem = kek.seal_for_certificate(&key_pem, &cert_pem)?;
            let candidate = CaMaterial {
                cert_pem,
                key_pem,
                trust_pem: None,
                generation: 1,
            };
            store.ca_get_or_insert(candidate).await?
        }
    };
    if is_sealed(&material.key_pem) {
        return Ok((ca_from_material(&material, kek)?, material.generation));
    }
    let ca = CertificateAuthority::from_parts(
        &material.cert_pem,
        &material.key_pem,
        material.trust_pem.as_deref(),
    )
    .context("the CA stored in the database is unusable")?;
    let sealed = CaMaterial {
        key_pem: kek.seal_for_certificate(&material.key_pem, &material.cert_pem)?,
        ..material.clone()
    };
    match store.ca_replace(material.generation, sealed).await {
        Ok(stored) => {
            tracing::warn!(
                "the CA key was stored in the clear (by an older center): it is now sealed under \
                 the key-encryption key; database backups made before hold it in the clear"
            );
            Ok((ca, stored.generation))
        }
        // Another process sealed (or replaced) it first: use what it stored.
        Err(StoreError::Conflict(_)) => {
            let stored = store
                .ca_get()
                .await?
                .context("the CA disappeared from the database")?;
            Ok((ca_from_material(&stored, kek)?, stored.generation))
        }
        Err(err) => Err(err.into()),
    }
}

fn ca_from_material(
    material: &CaMaterial,
    kek: &KeyEncryptionKey,
) -> anyhow::Result<CertificateAuthority> {
    let key_pem = kek
        .open_for_certificate(&material.key_pem, &material.cert_pem)
        .context(
            "cannot open the CA key stored in the database: the center needs the key-encryption \
             key it was sealed with (ca_kek_file, HERD_CA_KEK_FILE or HERD_CA_KEK)",
        )?;
    CertificateAuthority::from_parts(&material.cert_pem, &key_pem, material.trust_pem.as_deref())
        .context("the CA stored in the database is unusable")
}

impl Center {
    /// The CA this process issues with (replaced when an operator installs an intermediate).
    ///
    /// Only a center holds a CA: a site server relays whatever needs it (enrolment, renewal)
    /// and refuses the rest (`refuse_at_site`) before reaching here.
    pub fn ca(&self) -> Arc<CertificateAuthority> {
        self.ca
            .read()
            .expect("CA lock")
            .clone()
            .expect("only a center holds a CA; a site server never asks for it")
    }

    /// The trust anchors clients pin (PEM): the CA's on a center, the center's on a site.
    pub fn trust_pem(&self) -> String {
        match self.site() {
            Some(site) => site.identity.ca_pem.clone(),
            None => self.ca().trust_pem().to_owned(),
        }
    }

    /// The center's own client certificate (for pushing to sites), issued once per process.
    pub(crate) fn center_client_identity(&self) -> anyhow::Result<herd_tls::KeyPairPem> {
        let mut held = self.center_client.lock().expect("center client lock");
        if let Some(identity) = held.as_ref() {
            return Ok(identity.clone());
        }
        let identity = self.ca().issue_center_client()?;
        *held = Some(identity.clone());
        Ok(identity)
    }

    /// What clients may know of the CA.
    pub fn ca_info(&self) -> CenterResult<CaInfo> {
        let ca = self.ca();
        let not_after = herd_tls::cert_not_after(ca.issuer_cert_pem())
            .map_err(|e| CenterError::internal(format!("the CA certificate: {e}")))?;
        let not_after = not_after
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Ok(CaInfo {
            trust_pem: ca.trust_pem().to_owned(),
            issuer_pem: ca.issuer_cert_pem().to_owned(),
            issuer_not_after: rfc3339(not_after),
            offline_root: ca.has_offline_root(),
            generation: self.ca_generation.load(Relaxed),
        })
    }

    /// Installs an online intermediate CA signed by an offline root, in place of the current
    /// CA: its key sealed under the KEK, every center process switching to it within a second.
    /// Under the same root this is a rotation no terminal notices. A new root is refused while
    /// terminals trust only the current anchors, unless `force` (they must then re-enrol).
    pub async fn install_ca(&self, request: CaInstall) -> CenterResult<CaInfo> {
        let invalid = |what: String| CenterError::new(ErrorKind::DocumentInvalid, what);
        let candidate = CertificateAuthority::from_parts(
            &request.certificate_pem,
            &request.key_pem,
            Some(&request.trust_pem),
        )
        .map_err(|e| invalid(format!("the CA: {e}")))?;
        if !candidate.has_offline_root() {
            return Err(invalid(
                "the CA: $.certificate_pem is one of the trust anchors; give an intermediate \
                 signed by the offline root in $.trust_pem (`herd ca intermediate`)"
                    .into(),
            ));
        }
        let current = self.ca();
        let current_anchors = current.trust_der();
        let new_anchors = candidate.trust_der();
        let mut trust_pem = request.trust_pem.clone();
        if !new_anchors.iter().any(|a| current_anchors.contains(a)) {
            // A root terminals do not know yet: the center's certificate will chain to it,
            // which terminals that trust only the current anchors cannot verify.
            let any = herd_store::TerminalQuery {
                limit: 1,
                ..Default::default()
            };
            let enrolled = !self.store.terminals(&any).await?.is_empty();
            if enrolled && !request.force {
                return Err(CenterError::new(
                    ErrorKind::Conflict,
                    "the CA: enrolled terminals trust only the current CA, not this root: they \
                     could no longer verify the center and would have to re-enrol; install it \
                     anyway with force (`herd ca install --force`)",
                ));
            }
        }
        // Keep accepting client certificates the current anchors issued until they are renewed.
        for anchor in current_anchors {
            if !new_anchors.contains(anchor) {
                trust_pem.push_str(&herd_tls::cert_pem_from_der(anchor));
            }
        }
        let ca = CertificateAuthority::from_parts(
            &request.certificate_pem,
            &request.key_pem,
            Some(&trust_pem),
        )
        .map_err(|e| invalid(format!("the CA: {e}")))?;
        let key_pem = self
            .kek
            .seal_for_certificate(&request.key_pem, &request.certificate_pem)
            .map_err(|e| CenterError::internal(format!("sealing the CA key: {e:#}")))?;
        let stored = self
            .store
            .ca_replace(
                self.ca_generation.load(Relaxed),
                CaMaterial {
                    cert_pem: ca.issuer_cert_pem().to_owned(),
                    key_pem,
                    trust_pem: Some(trust_pem),
                    generation: 0,
                },
            )
            .await?;
        self.use_ca(ca, stored.generation);
        tracing::info!(
            generation = stored.generation,
            "installed a new intermediate CA"
        );
        self.ca_info()
    }

    /// Re-reads the CA after another process replaced it.
    pub(crate) async fn reload_ca(&self) -> anyhow::Result<()> {
        let material = self
            .store
            .ca_get()
            .await?
            .context("the CA disappeared from the database")?;
        if material.generation == self.ca_generation.load(Relaxed) {
            return Ok(());
        }
        let ca = ca_from_material(&material, &self.kek)?;
        self.use_ca(ca, material.generation);
        tracing::info!(
            generation = material.generation,
            "the CA changed; reloaded it"
        );
        Ok(())
    }

    fn use_ca(&self, ca: CertificateAuthority, generation: u64) {
        *self.ca.write().expect("CA lock") = Some(Arc::new(ca));
        self.ca_generation.store(generation, Relaxed);
        // New connections verify client certificates against the new anchors and get a server
        // certificate from the new CA; connections already open keep theirs.
        if let Err(err) = self.server_cert.trust.replace(&self.ca()) {
            tracing::error!(%err, "cannot verify client certificates against the new CA");
        }
        if let Err(err) = self.reissue_server_certificate() {
            tracing::error!(err = %format!("{err:#}"), "cannot reissue the server certificate from the new CA");
        }
        // Clients read the trust anchors from here; written like at start-up.
        if let Err(err) = herd_fs::write_atomic(
            &self.config.data_dir.join("ca.pem"),
            self.ca().trust_pem().as_bytes(),
            0o644,
        ) {
            tracing::error!(%err, "cannot update ca.pem in the data directory");
        }
    }
}
