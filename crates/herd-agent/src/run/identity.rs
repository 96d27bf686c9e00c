//! The terminal's identity over its lifetime: its key and certificate kept as a pair, renewed
//! over mutual TLS well before the certificate expires, and what to do once it has expired or
//! the center no longer accepts it.
//!
//! Key and certificate live in `identity/key.pem` and `identity/cert.pem`. A new pair (from a
//! renewal or a re-enrolment) is first written whole to `identity/renewed.pem`, in one atomic
//! write, and only then copied over the two files; whoever loads the identity and finds
//! `renewed.pem` finishes that copy first. So a crash at any instant leaves either the old
//! pair or the new one — never a key that does not match its certificate.

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use herd_tls::KeyPairPem;

use super::clock;
use super::durable::PRIVATE_FILE;
use super::state::StatePaths;

/// Test-only: `HERD_AGENT_IDENTITY_FAULT=abort-after:key` aborts the process once a new key has
/// replaced key.pem and before its certificate replaces cert.pem, as a power cut there would.
const IDENTITY_FAULT_ENV: &str = "HERD_AGENT_IDENTITY_FAULT";

/// Renew when less than this remains, even of a long-lived certificate.
const RENEW_WITHIN: Duration = Duration::from_secs(30 * 86_400);

/// Whether a certificate valid over `validity` should be renewed at `now`: when less than a
/// third of its lifetime, or 30 days, whichever is less, remains.
pub(crate) fn renewal_due(validity: (SystemTime, SystemTime), now: SystemTime) -> bool {
    let (not_before, not_after) = validity;
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    let remaining = not_after.duration_since(now).unwrap_or_default();
    remaining < (lifetime / 3).min(RENEW_WITHIN)
}

/// Writes `pair` (and the CA certificates that came with it) as the terminal's identity, so
/// that after a crash at any point the identity is the old pair or this one.
pub(crate) fn save_pair(paths: &StatePaths, pair: &KeyPairPem, ca_pem: &str) -> Result<()> {
    herd_tls::cert_der_from_pem(&pair.cert_pem).context("the new certificate")?;
    let mut both = pair.key_pem.clone();
    if !both.ends_with('\n') {
        both.push('\n');
    }
    both.push_str(&pair.cert_pem);
    herd_fs::write_atomic(&paths.identity_pending(), both.as_bytes(), PRIVATE_FILE)
        .context("cannot save the terminal's new identity")?;
    herd_fs::write_atomic(&paths.ca(), ca_pem.as_bytes(), PRIVATE_FILE)
        .context("cannot save the center's CA certificate")?;
    finish_switch(paths)
}

/// Splits `renewed.pem` into the key and the certificate (with any chain) that follows it.
fn split_pair(text: &str, path: &Path) -> Result<KeyPairPem> {
    let at = text.find("-----BEGIN CERTIFICATE-----").ok_or_else(|| {
        anyhow!(
            "{} holds no certificate after its key; delete it to keep the previous identity",
            path.display()
        )
    })?;
    Ok(KeyPairPem {
        key_pem: text[..at].to_owned(),
        cert_pem: text[at..].to_owned(),
    })
}

/// Copies a pending new pair over key.pem and cert.pem, then removes it. Idempotent: each
/// step may be repeated after a crash.
fn finish_switch(paths: &StatePaths) -> Result<()> {
    let pending = paths.identity_pending();
    let text = match std::fs::read_to_string(&pending) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", pending.display())),
    };
    let pair = split_pair(&text, &pending)?;
    herd_fs::write_atomic(&paths.key(), pair.key_pem.as_bytes(), PRIVATE_FILE)
        .context("cannot save the terminal's private key")?;
    if std::env::var_os(IDENTITY_FAULT_ENV).is_some_and(|v| v == "abort-after:key") {
        eprintln!("herd-agent: {IDENTITY_FAULT_ENV}: aborting between the key and the certificate");
        std::process::abort();
    }
    herd_fs::write_atomic(&paths.cert(), pair.cert_pem.as_bytes(), PRIVATE_FILE)
        .context("cannot save the terminal's certificate")?;
    std::fs::remove_file(&pending)
        .with_context(|| format!("cannot remove {}", pending.display()))?;
    herd_fs::sync_dir(&paths.identity_dir()).context("cannot sync the identity directory")?;
    Ok(())
}

/// Reads the identity kept in the state directory, finishing a switch a crash interrupted.
pub(crate) fn load(paths: &StatePaths) -> Result<KeyPairPem> {
    finish_switch(paths)?;
    let read = |path: std::path::PathBuf| {
        std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the terminal identity {}", path.display()))
    };
    Ok(KeyPairPem {
        cert_pem: read(paths.cert())?,
        key_pem: read(paths.key())?,
    })
}

/// The certificate's validity as stored (for `status`, which must not write): the pending new
/// pair's if a switch is unfinished.
pub(crate) fn stored_validity(paths: &StatePaths) -> Result<(SystemTime, SystemTime)> {
    let cert_pem = match std::fs::read_to_string(paths.identity_pending()) {
        Ok(text) => split_pair(&text, &paths.identity_pending())?.cert_pem,
        Err(_) => std::fs::read_to_string(paths.cert())
            .with_context(|| format!("cannot read {}", paths.cert().display()))?,
    };
    Ok(herd_tls::cert_validity(&cert_pem)?)
}

/// What to do when the center no longer accepts this terminal's certificate.
pub(crate) fn recovery(terminal: &str, state_dir: &Path) -> String {
    format!(
        "to recover, an operator runs `herd enrol-token create --reenrol {terminal}` and gives \
         you the token; then stop the agent and run `herd-agent enrol --state-dir {} --token \
         TOKEN` (the terminal keeps its id and history), and start the agent again (if the \
         terminal was deleted at the center, enrol it afresh: a new enrolment token and an empty \
         --state-dir)",
        state_dir.display()
    )
}

/// Refuses an identity whose certificate has expired at `now`, saying how to recover: the
/// center's TLS would refuse it anyway, without a word an operator could act on.
pub(crate) fn check_not_expired(paths: &StatePaths, terminal: &str, now: SystemTime) -> Result<()> {
    let (_, not_after) = stored_validity(paths)?;
    if not_after <= now {
        bail!(
            "this terminal's certificate expired at {}, so the center refuses it; {}",
            clock::rfc3339(not_after),
            recovery(terminal, &paths.root)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn renewal_is_due_with_a_third_or_thirty_days_left() {
        let start = SystemTime::UNIX_EPOCH + DAY * 1000;
        let year = (start, start + DAY * 365);
        assert!(!renewal_due(year, start + DAY * 300));
        assert!(renewal_due(year, start + DAY * 336));
        // A short certificate renews with a third of it left.
        let nine_days = (start, start + DAY * 9);
        assert!(!renewal_due(nine_days, start + DAY * 5));
        assert!(renewal_due(nine_days, start + DAY * 7));
        assert!(renewal_due(nine_days, start + DAY * 20));
    }

    #[test]
    fn a_crash_between_the_two_writes_never_pairs_a_key_with_another_certificate() {
        herd_tls::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let paths = StatePaths::new(dir.path());
        super::super::durable::create_private_dir(&paths.identity_dir()).unwrap();
        let (ca_cert, ca_key) = herd_tls::CertificateAuthority::generate("test").unwrap();
        let ca = herd_tls::CertificateAuthority::from_pem(&ca_cert, &ca_key).unwrap();
        let pair = |id: &str| {
            let (key_pem, csr) = herd_tls::new_key_and_csr(id).unwrap();
            let cert_pem = ca.sign_terminal_csr(&csr, id, 10).unwrap().cert_pem;
            KeyPairPem { cert_pem, key_pem }
        };
        let old = pair("t1");
        save_pair(&paths, &old, &ca_cert).unwrap();
        assert_eq!(load(&paths).unwrap(), old);

        // The new pair is on disk as one file and the key was copied, then the power failed.
        let new = pair("t1");
        let both = format!("{}{}", new.key_pem, new.cert_pem);
        herd_fs::write_atomic(&paths.identity_pending(), both.as_bytes(), PRIVATE_FILE).unwrap();
        herd_fs::write_atomic(&paths.key(), new.key_pem.as_bytes(), PRIVATE_FILE).unwrap();
        assert_ne!(std::fs::read_to_string(paths.cert()).unwrap(), new.cert_pem);
        let loaded = load(&paths).unwrap();
        assert_eq!(loaded, new);
        assert!(!paths.identity_pending().exists());
        // The pair really is a pair: a client configuration accepts key and certificate.
        herd_tls::client_config(&ca_cert, Some(&loaded)).unwrap();
    }
}
