//! Ed25519 keys as TUF names them: a public key is the object
//! `{"keytype":"ed25519","scheme":"ed25519","keyval":{"public":"<hex>"}}`, its key id the
//! SHA-256 of that object's canonical JSON; signatures are hex over the canonical `signed`.

use std::fmt;

use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::canonical;

/// The only key type and scheme Herd signs with (and accepts).
pub const ED25519_NAME: &str = "ed25519";

/// A public key in TUF's JSON form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey {
    pub keytype: String,
    pub scheme: String,
    pub keyval: KeyValue,
}

/// The key material of a [`PublicKey`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// Hex-encoded raw public key (32 bytes for ed25519).
    pub public: String,
}

impl PublicKey {
    /// An ed25519 public key from its 32 raw bytes.
    pub fn ed25519(raw: &[u8]) -> PublicKey {
        PublicKey {
            keytype: ED25519_NAME.to_owned(),
            scheme: ED25519_NAME.to_owned(),
            keyval: KeyValue {
                public: hex::encode(raw),
            },
        }
    }

    /// The key id: SHA-256 (hex) of the key's canonical JSON.
    pub fn key_id(&self) -> String {
        let value = serde_json::to_value(self).expect("a key serialises");
        let bytes = canonical::encode(&value).expect("a key has no floats");
        hex::encode(Sha256::digest(bytes))
    }

    /// Whether `signature` (hex) is this key's signature of `message`. A key of another type
    /// or scheme, or malformed hex, never verifies.
    pub fn verifies(&self, message: &[u8], signature_hex: &str) -> bool {
        if self.keytype != ED25519_NAME || self.scheme != ED25519_NAME {
            return false;
        }
        let (Ok(public), Ok(signature)) =
            (hex::decode(&self.keyval.public), hex::decode(signature_hex))
        else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, public)
            .verify(message, &signature)
            .is_ok()
    }
}

/// Why a signing key could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the system's random number generator failed")]
    Random,
    #[error("not an ed25519 private key (PKCS#8 v2 as written by Herd or RFC 8410)")]
    NotEd25519,
}

/// A private ed25519 key that signs metadata.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    pkcs8: Vec<u8>,
}

impl fmt::Debug for SigningKey {
    /// Never prints the private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.public().key_id())
    }
}

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Result<SigningKey, KeyError> {
        let document =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyError::Random)?;
        SigningKey::from_pkcs8(document.as_ref())
    }

    /// A key from its PKCS#8 DER.
    pub fn from_pkcs8(der: &[u8]) -> Result<SigningKey, KeyError> {
        let pair =
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|_| KeyError::NotEd25519)?;
        Ok(SigningKey {
            pair,
            pkcs8: der.to_vec(),
        })
    }

    /// The key's PKCS#8 DER, to store it (sealed, or offline).
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    pub fn public(&self) -> PublicKey {
        PublicKey::ed25519(self.pair.public_key().as_ref())
    }

    pub fn key_id(&self) -> String {
        self.public().key_id()
    }

    /// The hex signature of `message`.
    pub fn sign(&self, message: &[u8]) -> String {
        hex::encode(self.pair.sign(message).as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_under_its_key_only() {
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let signature = key.sign(b"message");
        assert!(key.public().verifies(b"message", &signature));
        assert!(!key.public().verifies(b"messagf", &signature));
        assert!(!other.public().verifies(b"message", &signature));
        assert!(!key.public().verifies(b"message", "zz"));
        let mut rsa = key.public();
        rsa.keytype = "rsa".into();
        assert!(!rsa.verifies(b"message", &signature), "the key type counts");
    }

    #[test]
    fn a_key_reloads_from_pkcs8_with_the_same_id() {
        let key = SigningKey::generate().unwrap();
        let again = SigningKey::from_pkcs8(key.pkcs8()).unwrap();
        assert_eq!(key.key_id(), again.key_id());
        assert_eq!(key.key_id().len(), 64);
        assert!(SigningKey::from_pkcs8(b"not a key").is_err());
        assert!(!format!("{key:?}").contains(&hex::encode(key.pkcs8())));
    }
}
