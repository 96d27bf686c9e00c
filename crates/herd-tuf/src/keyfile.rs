//! Signing key files, as `herd keys init` writes the offline root keys, `herd vendor key
//! generate` a vendor's key, and the center its auto-initialised root key: one key per file.
//!
//! In the clear, a file is the key's PKCS#8 DER in base64 between armor lines:
//!
//! ```text
//! -----BEGIN HERD TUF KEY-----
//! MFECAQEwBQYDK2VwBCIEI…
//! -----END HERD TUF KEY-----
//! ```
//!
//! Sealed under a key-encryption key (herd-tls `seal.rs`, which is not a dependency of this
//! pure crate: the caller seals and opens), a file is the public key it holds, then the sealed
//! line, whose plaintext is the armored text above, bound to the raw public key's 32 bytes (so a
//! sealed line moved under another public key line does not open):
//!
//! ```text
//! herd-tuf-public-key ed25519 <64 hex digits>
//! herd-sealed-key/v1 pbkdf2-sha256 …
//! ```
//!
//! The public line lets a sealed file be listed (`herd keys show`) and matched to the root
//! that names it without the KEK. Public keys are exported as TUF's key JSON.
//! Every malformed input is refused with the file's name and the line.

use thiserror::Error;

use crate::keys::{ED25519_NAME, KeyError, PublicKey, SigningKey};

/// The first line of a key in the clear.
pub const ARMOR_BEGIN: &str = "-----BEGIN HERD TUF KEY-----";
/// The last line of a key in the clear.
pub const ARMOR_END: &str = "-----END HERD TUF KEY-----";
/// The first word of a sealed file's first line.
pub const PUBLIC_LINE_TAG: &str = "herd-tuf-public-key";
/// The first word of a sealed key (herd-tls `SEALED_KEY_TAG`, spelled here because herd-tls is
/// not a dependency; a test in herd-server holds the two equal).
pub const SEALED_TAG: &str = "herd-sealed-key/v1";

/// Why a key file could not be read; each names the file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyFileError {
    #[error(
        "{file}: the file is empty; a key file starts with `{ARMOR_BEGIN}` or `{PUBLIC_LINE_TAG}`"
    )]
    Empty { file: String },
    #[error("{file}: line {line}: {what}")]
    Malformed {
        file: String,
        line: usize,
        what: String,
    },
    #[error("{file}: not an ed25519 private key (PKCS#8, as `herd keys init` writes)")]
    NotEd25519 { file: String },
    #[error(
        "{file}: the sealed key opens to the key {found}, not the key {declared} its first line \
         declares"
    )]
    SealedMismatch {
        file: String,
        declared: String,
        found: String,
    },
    #[error("{file}: not a TUF ed25519 public key: {why}")]
    Public { file: String, why: String },
}

/// What a key file holds.
#[derive(Debug)]
pub enum KeyFile {
    /// The key, ready to sign.
    Clear(SigningKey),
    /// A sealed key: its public key, and the sealed line to open with the KEK (bound to
    /// [`seal_binding`] of the public key), then to read with [`open_sealed`].
    Sealed { public: PublicKey, sealed: String },
}

impl KeyFile {
    pub fn public(&self) -> PublicKey {
        match self {
            KeyFile::Clear(key) => key.public(),
            KeyFile::Sealed { public, .. } => public.clone(),
        }
    }

    pub fn key_id(&self) -> String {
        self.public().key_id()
    }

    pub fn is_sealed(&self) -> bool {
        matches!(self, KeyFile::Sealed { .. })
    }
}

/// The text of a key file in the clear.
pub fn encode(key: &SigningKey) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(key.pkcs8());
    let mut text = format!("{ARMOR_BEGIN}\n");
    for chunk in body.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        text.push('\n');
    }
    text.push_str(ARMOR_END);
    text.push('\n');
    text
}

/// The text of a sealed key file: `sealed` is the caller's seal of [`encode`]`(key)` bound to
/// [`seal_binding`]`(public)`.
pub fn encode_sealed(public: &PublicKey, sealed: &str) -> String {
    format!(
        "{PUBLIC_LINE_TAG} {ED25519_NAME} {}\n{}\n",
        public.keyval.public,
        sealed.trim()
    )
}

/// What a sealed key is bound to: the raw public key (32 bytes).
pub fn seal_binding(public: &PublicKey) -> Vec<u8> {
    hex::decode(&public.keyval.public).unwrap_or_default()
}

/// The name of a key's file in a key directory: `<prefix>-<first 16 hex digits of its id>.key`
/// (`root-…` for root keys).
pub fn file_name(prefix: &str, key_id: &str) -> String {
    format!("{prefix}-{}.key", &key_id[..key_id.len().min(16)])
}

/// Reads a key file's text; `file` names it in errors.
pub fn decode(file: &str, text: &str) -> Result<KeyFile, KeyFileError> {
    let malformed = |line: usize, what: String| KeyFileError::Malformed {
        file: file.to_owned(),
        line,
        what,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end()))
        .filter(|(_, l)| !l.is_empty());
    let Some((first_no, first)) = lines.next() else {
        return Err(KeyFileError::Empty {
            file: file.to_owned(),
        });
    };
    if first == ARMOR_BEGIN {
        let mut body = String::new();
        let mut ended = false;
        for (no, line) in lines.by_ref() {
            if line == ARMOR_END {
                ended = true;
                break;
            }
            if !line
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
            {
                return Err(malformed(no, "not base64".into()));
            }
            body.push_str(line);
        }
        if !ended {
            return Err(malformed(
                text.lines().count() + 1,
                format!("no `{ARMOR_END}` line"),
            ));
        }
        if let Some((no, _)) = lines.next() {
            return Err(malformed(no, format!("text after `{ARMOR_END}`")));
        }
        return decode_der(file, &body).map(KeyFile::Clear);
    }
    if let Some(rest) = first.strip_prefix(PUBLIC_LINE_TAG) {
        let public = parse_public_line(rest)
            .map_err(|why| malformed(first_no, format!("`{PUBLIC_LINE_TAG}` line: {why}")))?;
        let Some((sealed_no, sealed)) = lines.next() else {
            return Err(malformed(
                first_no + 1,
                format!("no sealed key (`{SEALED_TAG} …`) after the public key line"),
            ));
        };
        if !sealed.starts_with(&format!("{SEALED_TAG} ")) {
            return Err(malformed(
                sealed_no,
                format!("expected the sealed key, a line starting with `{SEALED_TAG}`"),
            ));
        }
        if let Some((no, _)) = lines.next() {
            return Err(malformed(no, "text after the sealed key".into()));
        }
        return Ok(KeyFile::Sealed {
            public,
            sealed: sealed.to_owned(),
        });
    }
    if first.starts_with(SEALED_TAG) {
        return Err(malformed(
            first_no,
            format!("a sealed key without its `{PUBLIC_LINE_TAG}` line before it"),
        ));
    }
    // Never echo the line: it may be a key's base64 without its armor.
    Err(malformed(
        first_no,
        format!("not a Herd TUF key file: expected `{ARMOR_BEGIN}` or `{PUBLIC_LINE_TAG} …`"),
    ))
}

/// The key inside a sealed file, from the plaintext the KEK opened; it must be the key the
/// file's public line declares.
pub fn open_sealed(
    file: &str,
    declared: &PublicKey,
    opened: &str,
) -> Result<SigningKey, KeyFileError> {
    let key = match decode(file, opened)? {
        KeyFile::Clear(key) => key,
        KeyFile::Sealed { .. } => {
            return Err(KeyFileError::Malformed {
                file: file.to_owned(),
                line: 1,
                what: "the sealed key holds another sealed key".into(),
            });
        }
    };
    if key.public() != *declared {
        return Err(KeyFileError::SealedMismatch {
            file: file.to_owned(),
            declared: declared.key_id(),
            found: key.key_id(),
        });
    }
    Ok(key)
}

/// A public key as TUF's key JSON, pretty, with a final newline.
pub fn public_key_json(key: &PublicKey) -> String {
    let mut text = serde_json::to_string_pretty(key).expect("a key serialises");
    text.push('\n');
    text
}

/// Reads a public key given as TUF's key JSON (`{"keytype": "ed25519", "scheme": "ed25519",
/// "keyval": {"public": "<64 hex digits>"}}`); only ed25519 keys are accepted.
pub fn decode_public(file: &str, text: &str) -> Result<PublicKey, KeyFileError> {
    let public = |why: String| KeyFileError::Public {
        file: file.to_owned(),
        why,
    };
    let key: PublicKey = serde_json::from_str(text).map_err(|e| public(e.to_string()))?;
    check_public(&key).map_err(public)?;
    Ok(key)
}

/// Whether `key` is an ed25519 key Herd can verify with; the error says what is wrong.
pub fn check_public(key: &PublicKey) -> Result<(), String> {
    if key.keytype != ED25519_NAME || key.scheme != ED25519_NAME {
        return Err(format!(
            "keytype {:?} and scheme {:?}; only ed25519 is accepted",
            key.keytype, key.scheme
        ));
    }
    let raw = &key.keyval.public;
    if raw.len() != 64 || !raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "keyval.public is {} characters; 64 hex digits (32 bytes) expected",
            raw.len()
        ));
    }
    if raw.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("keyval.public must be lowercase hex (its key id depends on it)".into());
    }
    Ok(())
}

fn parse_public_line(rest: &str) -> Result<PublicKey, String> {
    let words: Vec<&str> = rest.split_whitespace().collect();
    let [keytype, hex_key] = words[..] else {
        return Err(format!(
            "expected `{PUBLIC_LINE_TAG} ed25519 <64 hex digits>`"
        ));
    };
    if keytype != ED25519_NAME {
        return Err(format!("key type {keytype:?}; only ed25519 is accepted"));
    }
    let key = PublicKey {
        keytype: ED25519_NAME.to_owned(),
        scheme: ED25519_NAME.to_owned(),
        keyval: crate::keys::KeyValue {
            public: hex_key.to_owned(),
        },
    };
    check_public(&key)?;
    Ok(key)
}

fn decode_der(file: &str, body: &str) -> Result<SigningKey, KeyFileError> {
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| KeyFileError::Malformed {
            file: file.to_owned(),
            line: 2,
            what: format!("the key's base64 does not decode: {e}"),
        })?;
    SigningKey::from_pkcs8(&der).map_err(|_: KeyError| KeyFileError::NotEd25519 {
        file: file.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        decode("dir/root-x.key", text).unwrap_err().to_string()
    }

    #[test]
    fn a_clear_key_round_trips_with_its_id() {
        let key = SigningKey::generate().unwrap();
        let text = encode(&key);
        assert!(text.starts_with(ARMOR_BEGIN) && text.ends_with(&format!("{ARMOR_END}\n")));
        assert!(text.lines().all(|l| l.len() <= 64));
        let KeyFile::Clear(again) = decode("k", &text).unwrap() else {
            panic!("clear")
        };
        assert_eq!(again.key_id(), key.key_id());
        // Surrounding blank lines and CRLF line ends are still the same key.
        let crlf = format!("\n{}\n\n", text.replace('\n', "\r\n"));
        assert_eq!(decode("k", &crlf).unwrap().key_id(), key.key_id());
    }

    #[test]
    fn a_sealed_file_lists_its_key_and_opens_to_it_only() {
        let key = SigningKey::generate().unwrap();
        let text = encode_sealed(&key.public(), "herd-sealed-key/v1 pbkdf2-sha256 1 aa bb cc");
        let file = decode("k", &text).unwrap();
        assert!(file.is_sealed());
        assert_eq!(file.key_id(), key.key_id());
        let KeyFile::Sealed { public, sealed } = file else {
            panic!("sealed")
        };
        assert!(sealed.starts_with(SEALED_TAG));
        assert_eq!(seal_binding(&public).len(), 32);
        let opened = open_sealed("k", &public, &encode(&key)).unwrap();
        assert_eq!(opened.key_id(), key.key_id());
        let other = SigningKey::generate().unwrap();
        let err = open_sealed("k", &public, &encode(&other)).unwrap_err();
        assert!(
            matches!(err, KeyFileError::SealedMismatch { .. }),
            "a sealed line under another key's public line: {err}"
        );
    }

    #[test]
    fn every_malformed_file_is_refused_naming_the_file_and_line() {
        let key = SigningKey::generate().unwrap();
        let good = encode(&key);
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "dir/root-x.key: the file is empty"),
            ("  \n\n".into(), "the file is empty"),
            (
                "-----BEGIN PRIVATE KEY-----\nMC4=\n-----END PRIVATE KEY-----\n".into(),
                "line 1: not a Herd TUF key file",
            ),
            (
                good.replace(ARMOR_END, ""),
                "no `-----END HERD TUF KEY-----` line",
            ),
            (
                format!("{good}extra\n"),
                "text after `-----END HERD TUF KEY-----`",
            ),
            (good.replacen('\n', "\n*", 1), "line 2: not base64"),
            (
                format!("{ARMOR_BEGIN}\nAAAA\n{ARMOR_END}\n"),
                "not an ed25519 private key",
            ),
            (
                format!("{ARMOR_BEGIN}\nAAA\n{ARMOR_END}\n"),
                "the key's base64 does not decode",
            ),
            (
                "herd-sealed-key/v1 pbkdf2-sha256 1 a b c\n".into(),
                "line 1: a sealed key without its `herd-tuf-public-key` line",
            ),
            (
                "herd-tuf-public-key ed25519 abcd\nherd-sealed-key/v1 x\n".into(),
                "line 1: `herd-tuf-public-key` line: keyval.public is 4 characters",
            ),
            (
                format!("herd-tuf-public-key rsa {}\n", "ab".repeat(32)),
                "key type \"rsa\"",
            ),
            (
                format!("herd-tuf-public-key ed25519 {}\n", "ab".repeat(32)),
                "line 2: no sealed key",
            ),
            (
                format!(
                    "herd-tuf-public-key ed25519 {}\nsomething\n",
                    "ab".repeat(32)
                ),
                "line 2: expected the sealed key",
            ),
            (
                format!(
                    "herd-tuf-public-key ed25519 {}\nherd-sealed-key/v1 a\nmore\n",
                    "ab".repeat(32)
                ),
                "line 3: text after the sealed key",
            ),
        ];
        for (text, expected) in cases {
            let message = err(&text);
            assert!(
                message.starts_with("dir/root-x.key: ") && message.contains(expected),
                "{text:?}: {message}"
            );
        }
        // The refusal never echoes what may be a key's base64.
        let stripped: String = good.lines().nth(1).unwrap().to_owned();
        assert!(!err(&stripped).contains(&stripped[..20]));
    }

    #[test]
    fn public_keys_export_as_tuf_json_and_only_ed25519_reads_back() {
        let key = SigningKey::generate().unwrap();
        let json = public_key_json(&key.public());
        let back = decode_public("vendor.pub", &json).unwrap();
        assert_eq!(back.key_id(), key.key_id());
        for (text, expected) in [
            ("{", "vendor.pub: not a TUF ed25519 public key: "),
            (
                r#"{"keytype":"rsa","scheme":"rsassa-pss-sha256","keyval":{"public":"ab"}}"#,
                "only ed25519",
            ),
            (
                r#"{"keytype":"ed25519","scheme":"ed25519","keyval":{"public":"zz"}}"#,
                "64 hex digits",
            ),
        ] {
            let message = decode_public("vendor.pub", text).unwrap_err().to_string();
            assert!(message.contains(expected), "{text}: {message}");
        }
        let upper = json.replace(
            &key.public().keyval.public,
            &key.public().keyval.public.to_uppercase(),
        );
        assert!(
            decode_public("p", &upper)
                .unwrap_err()
                .to_string()
                .contains("lowercase")
        );
    }

    #[test]
    fn key_files_are_named_after_their_id() {
        assert_eq!(
            file_name("root", &"0123456789abcdef".repeat(4)),
            "root-0123456789abcdef.key"
        );
    }
}
