//! Private keys sealed at rest under a key-encryption key (KEK) the operator supplies: the
//! CA's signing key never reaches the database, a backup or a disk in the clear.
//!
//! A sealed key is one line of text:
//! `herd-sealed-key/v1 pbkdf2-sha256 <iterations> <salt hex> <nonce hex> <ciphertext hex>`.
//! The AES-256-GCM key is derived from the operator's secret with PBKDF2-HMAC-SHA256 over a
//! fresh salt, so the secret may be a passphrase as well as a generated key, and the additional
//! data binds the ciphertext to what it belongs to (the SHA-256 of the CA certificate): a
//! sealed key copied under another certificate does not open. Opening with the wrong KEK, or a
//! tampered text, fails authentication and says so; nothing is guessed.

use std::fmt;
use std::num::NonZeroU32;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};

/// The first word of every sealed key.
pub const SEALED_KEY_TAG: &str = "herd-sealed-key/v1";

/// PBKDF2 rounds for new seals (the count is recorded in each seal, so it can grow later).
const ITERATIONS: u32 = 100_000;
/// Fewer rounds than this in a stored seal is refused: nobody should be able to write a
/// cheap-to-attack seal into the database and have it accepted.
const MIN_ITERATIONS: u32 = 10_000;
/// Most rounds accepted from a stored seal, so a hostile row cannot stall start-up.
const MAX_ITERATIONS: u32 = 10_000_000;
/// A secret shorter than this is too easy to guess to protect a CA.
pub const MIN_SECRET_LEN: usize = 16;
const SALT_LEN: usize = 16;

/// Why a key could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "the key-encryption key is {len} bytes; at least {MIN_SECRET_LEN} are needed \
         (create one with `herd ca new-kek --out FILE`)"
    )]
    SecretTooShort { len: usize },
    #[error("the sealed key is malformed: {0}")]
    Malformed(String),
    #[error(
        "the sealed key does not open with this key-encryption key (a different KEK, or the \
         sealed text or its certificate was changed)"
    )]
    WrongKeyOrTampered,
    #[error("the system's random number generator failed")]
    Random,
    #[error("the key's certificate: {0}")]
    Certificate(#[from] crate::TlsError),
}

/// The operator's key-encryption key: a secret (a generated key or a long passphrase).
pub struct KeyEncryptionKey {
    secret: Vec<u8>,
}

impl fmt::Debug for KeyEncryptionKey {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyEncryptionKey([elided])")
    }
}

impl KeyEncryptionKey {
    /// The KEK from a secret as read from its file or variable; surrounding whitespace (a
    /// trailing newline) is not part of it.
    pub fn from_secret(secret: &[u8]) -> Result<Self, SealError> {
        let secret = secret.trim_ascii();
        if secret.len() < MIN_SECRET_LEN {
            return Err(SealError::SecretTooShort { len: secret.len() });
        }
        Ok(Self {
            secret: secret.to_vec(),
        })
    }

    /// A new random secret: 32 bytes as 64 hex digits and a newline, for a KEK file.
    pub fn generate_secret() -> Result<String, SealError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| SealError::Random)?;
        Ok(format!("{}\n", hex::encode(bytes)))
    }

    fn aead_key(&self, salt: &[u8], iterations: NonZeroU32) -> LessSafeKey {
        let mut key = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            salt,
            &self.secret,
            &mut key,
        );
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("32 bytes is an AES-256 key"))
    }

    /// Seals `plaintext` (a PEM private key), bound to `bound_to`.
    pub fn seal(&self, plaintext: &str, bound_to: &[u8]) -> Result<String, SealError> {
        let rng = SystemRandom::new();
        let mut salt = [0u8; SALT_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut salt).map_err(|_| SealError::Random)?;
        rng.fill(&mut nonce).map_err(|_| SealError::Random)?;
        let iterations = NonZeroU32::new(ITERATIONS).expect("non-zero");
        let mut data = plaintext.as_bytes().to_vec();
        self.aead_key(&salt, iterations)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(bound_to),
                &mut data,
            )
            .map_err(|_| SealError::Random)?;
        Ok(format!(
            "{SEALED_KEY_TAG} pbkdf2-sha256 {ITERATIONS} {} {} {}",
            hex::encode(salt),
            hex::encode(nonce),
            hex::encode(data)
        ))
    }

    /// Opens a key [`seal`](Self::seal)ed under this KEK and bound to `bound_to`.
    pub fn open(&self, sealed: &str, bound_to: &[u8]) -> Result<String, SealError> {
        let parts: Vec<&str> = sealed.trim().split(' ').collect();
        let [tag, kdf, iterations, salt, nonce, data] = parts[..] else {
            return Err(SealError::Malformed(format!(
                "expected 6 space-separated fields, found {}",
                parts.len()
            )));
        };
        if tag != SEALED_KEY_TAG {
            return Err(SealError::Malformed(format!(
                "it starts with {tag:?}, not {SEALED_KEY_TAG:?}"
            )));
        }
        if kdf != "pbkdf2-sha256" {
            return Err(SealError::Malformed(format!(
                "unknown key derivation {kdf:?}"
            )));
        }
        let iterations: u32 = iterations
            .parse()
            .ok()
            .filter(|n| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(n))
            .ok_or_else(|| {
                SealError::Malformed(format!(
                    "iterations {iterations:?} is not {MIN_ITERATIONS} to {MAX_ITERATIONS}"
                ))
            })?;
        let hex_field = |name: &str, text: &str| {
            hex::decode(text).map_err(|_| SealError::Malformed(format!("the {name} is not hex")))
        };
        let salt = hex_field("salt", salt)?;
        let nonce: [u8; NONCE_LEN] = hex_field("nonce", nonce)?
            .try_into()
            .map_err(|_| SealError::Malformed(format!("the nonce is not {NONCE_LEN} bytes")))?;
        let mut data = hex_field("ciphertext", data)?;
        let iterations = NonZeroU32::new(iterations).expect("checked above");
        let plaintext = self
            .aead_key(&salt, iterations)
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(bound_to),
                &mut data,
            )
            .map_err(|_| SealError::WrongKeyOrTampered)?;
        String::from_utf8(plaintext.to_vec())
            .map_err(|_| SealError::Malformed("the opened key is not text".into()))
    }
}

impl KeyEncryptionKey {
    /// Seals the private key of `cert_pem`'s first certificate, bound to that certificate
    /// (the SHA-256 of its DER).
    pub fn seal_for_certificate(&self, key_pem: &str, cert_pem: &str) -> Result<String, SealError> {
        self.seal(key_pem, &certificate_binding(cert_pem)?)
    }

    /// Opens a key [`seal_for_certificate`](Self::seal_for_certificate) sealed for `cert_pem`.
    pub fn open_for_certificate(&self, sealed: &str, cert_pem: &str) -> Result<String, SealError> {
        self.open(sealed, &certificate_binding(cert_pem)?)
    }
}

/// A key for signing links (HMAC-SHA256), derived from the KEK for one purpose: every process
/// that shares the KEK signs and checks the same links, and the key is in no database.
pub struct LinkKey(ring::hmac::Key);

impl fmt::Debug for LinkKey {
    /// Never prints the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkKey([elided])")
    }
}

impl LinkKey {
    /// The MAC of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 32] {
        let tag = ring::hmac::sign(&self.0, message);
        tag.as_ref().try_into().expect("HMAC-SHA256 is 32 bytes")
    }

    /// Whether `tag` is `message`'s MAC (compared in constant time).
    pub fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        ring::hmac::verify(&self.0, message, tag).is_ok()
    }
}

impl KeyEncryptionKey {
    /// The link-signing key for `purpose` (HMAC-SHA256 of the purpose under the secret):
    /// different purposes give unrelated keys, and none reveals the secret.
    pub fn link_key(&self, purpose: &str) -> LinkKey {
        let master = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.secret);
        let derived = ring::hmac::sign(&master, format!("herd link key\0{purpose}").as_bytes());
        LinkKey(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            derived.as_ref(),
        ))
    }
}

fn certificate_binding(cert_pem: &str) -> Result<[u8; 32], SealError> {
    use sha2::{Digest, Sha256};
    Ok(Sha256::digest(crate::cert_der_from_pem(cert_pem)?).into())
}

/// Whether stored key text is sealed (rather than a PEM key from before sealing existed).
pub fn is_sealed(text: &str) -> bool {
    text.trim_start().starts_with(SEALED_KEY_TAG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_keys_differ_by_purpose_and_kek_and_verify_their_own_tags() {
        let kek = KeyEncryptionKey::from_secret(b"0123456789abcdef0123").unwrap();
        let other = KeyEncryptionKey::from_secret(b"another secret of 20!").unwrap();
        let tag = kek.link_key("consent").sign(b"request 1");
        assert!(kek.link_key("consent").verify(b"request 1", &tag));
        assert!(!kek.link_key("consent").verify(b"request 2", &tag));
        assert!(!kek.link_key("other").verify(b"request 1", &tag));
        assert!(!other.link_key("consent").verify(b"request 1", &tag));
        assert!(!kek.link_key("consent").verify(b"request 1", &tag[..31]));
        assert_eq!(
            format!("{:?}", kek.link_key("consent")),
            "LinkKey([elided])"
        );
    }

    fn kek(secret: &str) -> KeyEncryptionKey {
        KeyEncryptionKey::from_secret(secret.as_bytes()).unwrap()
    }

    #[test]
    fn a_sealed_key_opens_with_its_kek_and_binding_only() {
        let key = kek("correct horse battery staple");
        let sealed = key
            .seal("-----BEGIN PRIVATE KEY-----\nabc\n", b"cert-a")
            .unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("PRIVATE KEY"), "{sealed}");
        assert_eq!(
            key.open(&sealed, b"cert-a").unwrap(),
            "-----BEGIN PRIVATE KEY-----\nabc\n"
        );
        let err = key.open(&sealed, b"cert-b").unwrap_err();
        assert!(matches!(err, SealError::WrongKeyOrTampered), "{err}");
        let err = kek("another secret entirely")
            .open(&sealed, b"cert-a")
            .unwrap_err();
        assert!(matches!(err, SealError::WrongKeyOrTampered), "{err}");
    }

    #[test]
    fn two_seals_of_one_key_differ() {
        let key = kek("0123456789abcdef");
        assert_ne!(key.seal("k", b"").unwrap(), key.seal("k", b"").unwrap());
    }

    #[test]
    fn a_tampered_seal_is_refused_not_misread() {
        let key = kek("0123456789abcdef");
        let sealed = key.seal("secret key", b"").unwrap();
        let mut flipped = sealed.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        let err = key
            .open(std::str::from_utf8(&flipped).unwrap(), b"")
            .unwrap_err();
        assert!(matches!(err, SealError::WrongKeyOrTampered), "{err}");
        for (bad, why) in [
            ("", "fields"),
            (
                "herd-sealed-key/v2 pbkdf2-sha256 100000 00 00 00",
                "starts with",
            ),
            ("herd-sealed-key/v1 scrypt 100000 00 00 00", "derivation"),
            ("herd-sealed-key/v1 pbkdf2-sha256 1 00 00 00", "iterations"),
            ("herd-sealed-key/v1 pbkdf2-sha256 100000 zz 00 00", "salt"),
            ("herd-sealed-key/v1 pbkdf2-sha256 100000 00 00 00", "nonce"),
        ] {
            let err = key.open(bad, b"").unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_short_secret_is_refused_and_generated_ones_suffice() {
        let err = KeyEncryptionKey::from_secret(b"short\n").unwrap_err();
        assert!(err.to_string().contains("5 bytes"), "{err}");
        let secret = KeyEncryptionKey::generate_secret().unwrap();
        assert_eq!(secret.len(), 65);
        KeyEncryptionKey::from_secret(secret.as_bytes()).unwrap();
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Stored text is hostile input: whatever a database row holds, opening it either
        /// fails with a reason or yields exactly what was sealed; it never panics.
        #[test]
        fn a_mangled_seal_never_panics_and_never_opens_to_something_else(
            position in 0usize..400,
            byte in proptest::prelude::any::<u8>(),
            junk in "\\PC{0,80}",
        ) {
            let key = kek("0123456789abcdef");
            let sealed = key.seal("the key", b"binding").unwrap();
            let mut bytes = sealed.clone().into_bytes();
            let at = position % bytes.len();
            bytes[at] = byte;
            let mangled = String::from_utf8_lossy(&bytes).into_owned();
            match key.open(&mangled, b"binding") {
                Ok(opened) => proptest::prop_assert_eq!(opened, "the key"),
                Err(_) => {}
            }
            let _ = key.open(&junk, b"binding");
            let _ = key.open(&format!("{SEALED_KEY_TAG} {junk}"), b"binding");
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        assert_eq!(
            format!("{:?}", kek("do not print this secret")),
            "KeyEncryptionKey([elided])"
        );
    }
}
