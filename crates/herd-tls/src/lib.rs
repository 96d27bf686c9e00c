//! The center's PKI: a certificate authority, server certificates, terminal client certificates
//! signed from CSRs, and the rustls configurations every tier uses (ring provider only).
//!
//! Trust model (SPEC §3.6): the center owns one CA. Site servers and the center serve TLS with
//! certificates from it; terminals enrol with a token and a PKCS#10 request and get back a
//! client certificate whose identity the center chose (`CN = <id>` and the SAN URI
//! `urn:herd:terminal:<id>`), never the one the request asked for. Servers ask for client
//! certificates but do not require them, so enrolment (which has no certificate yet) and
//! authenticated calls share one listener; the HTTP layer decides per route, through
//! [`terminal_id_of`] on the verified peer certificate.
//!
//! Every certificate here is ECDSA P-256 with a random serial. Issued certificates start one
//! hour in the past so a terminal whose clock is a little behind the center's still accepts
//! them. Nothing here reads a file or opens a socket: PEM text in, PEM text and configs out.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
    SubjectPublicKeyInfo,
};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

/// The prefix of the SAN URI that carries a terminal's identity in its client certificate.
pub const TERMINAL_URI_PREFIX: &str = "urn:herd:terminal:";
/// The SAN URI prefix of a site server's certificate.
pub const SITE_URI_PREFIX: &str = "urn:herd:site:";
/// The SAN URI of the center's own client certificate (it calls its sites with it).
pub const CENTER_URI: &str = "urn:herd:center";

/// The only ALPN protocol Herd speaks over TLS.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Longest terminal id accepted into a certificate; ids are also path components elsewhere.
pub const MAX_TERMINAL_ID_LEN: usize = 128;

/// Longest validity [`CertificateAuthority::sign_terminal_csr`] grants (ten years).
pub const MAX_TERMINAL_VALIDITY_DAYS: u32 = 3653;

const CA_VALIDITY: Duration = Duration::from_secs(3653 * 86_400);
const SERVER_VALIDITY: Duration = Duration::from_secs(365 * 86_400);
/// Issued certificates are valid from this long before "now", to tolerate clock skew.
const BACKDATE: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// Something wrong with keys, certificates or TLS configuration; the message says what.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} is not a PEM certificate")]
    NotPemCertificate { what: &'static str },
    #[error("{what} is not a PEM private key (PKCS#8 \"PRIVATE KEY\" expected)")]
    NotPemKey { what: &'static str },
    #[error("{what} could not be parsed: {reason}")]
    BadCertificate { what: &'static str, reason: String },
    #[error("{what} could not be loaded: {source}")]
    BadKey {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("the CA certificate is not a CA certificate (no basic constraints with CA:true)")]
    NotACa,
    #[error("the CA key does not match the CA certificate")]
    CaKeyMismatch,
    #[error("the CA certificate does not chain to the trust anchors: {reason}")]
    NotChainedToTrust { reason: String },
    #[error("a server certificate needs at least one DNS name or IP address")]
    NoServerNames,
    #[error("server name {name:?} is neither a DNS name nor an IP address")]
    BadServerName { name: String },
    #[error("terminal id {id:?} is not 1 to {MAX_TERMINAL_ID_LEN} characters of [A-Za-z0-9._-]")]
    BadTerminalId { id: String },
    #[error("generating {what} failed: {source}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("the TLS configuration was refused: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("the client-certificate verifier could not be built: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Why a terminal's certificate request was not signed.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    #[error("not a PEM certificate request (\"CERTIFICATE REQUEST\" expected)")]
    NotPem,
    #[error("the certificate request is malformed: {0}")]
    Malformed(String),
    #[error("the CSR's signature does not verify")]
    BadSignature,
    #[error("the CSR's public key is not supported (ECDSA P-256 or P-384, or Ed25519)")]
    UnsupportedKey,
    #[error("terminal id {id:?} is not 1 to {MAX_TERMINAL_ID_LEN} characters of [A-Za-z0-9._-]")]
    BadTerminalId { id: String },
    #[error("certificate validity must be 1 to {MAX_TERMINAL_VALIDITY_DAYS} days, not {days}")]
    BadValidityDays { days: u32 },
    #[error("certificate validity must end after it starts")]
    EmptyValidity,
    #[error("{name:?} is neither a DNS name nor an IP address")]
    BadServerName { name: String },
    #[error("signing the terminal certificate failed: {0}")]
    Sign(rcgen::Error),
}

/// A certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPairPem {
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for KeyPairPem {
    /// Never prints the private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPairPem")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[elided]")
            .finish()
    }
}

/// A certificate the CA just issued to a terminal: the leaf, then the intermediate when the
/// CA has an offline root (present both as the client certificate chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    pub cert_pem: String,
    /// SHA-256 of the DER certificate, lowercase hex: what the center stores to accept only
    /// the terminal's current certificate.
    pub cert_sha256: String,
}

/// Installs ring as the process-wide rustls `CryptoProvider`. Idempotent: a provider already
/// installed (by an earlier call or by anyone else) is kept. Call it at start-up and in tests;
/// the configs built here name ring explicitly and do not depend on it.
pub fn install_crypto_provider() {
    if CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: some provider is then installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn ring_provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    // AES-128-GCM with SHA-256 first: every handshake, and every resumption (a terminal's
    // check-in), runs the TLS 1.3 key schedule over the suite's hash, and SHA-384 costs about
    // twice SHA-256 there (it was an eighth of the center's CPU on resumed connections). Both
    // are TLS 1.3 suites every client supports; the others stay, in ring's order, after it.
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(provider)
}

/// The center's certificate authority: the issuing CA's certificate and signing key, and the
/// trust anchors clients verify against.
///
/// Two shapes: a single self-signed CA (what a center creates at first start; it is its own
/// anchor), or an online intermediate signed by an offline root ([`generate_root`] and
/// [`issue_intermediate`] run on the offline machine). With an intermediate, every certificate
/// issued carries the intermediate after the leaf, and clients trust only the root: a new
/// intermediate can replace the old one without touching a terminal, and certificates the old
/// one issued stay valid.
///
/// [`generate_root`]: CertificateAuthority::generate_root
/// [`issue_intermediate`]: CertificateAuthority::issue_intermediate
pub struct CertificateAuthority {
    issuer_pem: String,
    /// When the issuer's certificate expires: nothing it issues outlives it.
    issuer_not_after: SystemTime,
    /// Appended to every issued certificate: the issuer's certificate when it is not itself a
    /// trust anchor, else empty.
    chain_pem: String,
    trust_pem: String,
    trust_der: Vec<CertificateDer<'static>>,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for CertificateAuthority {
    /// Never prints the signing key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A new self-signed CA (ECDSA P-256): `CN = name`, valid 10 years, key usage
    /// certSign + crlSign, basic constraints CA with path length 0 (it signs leaves only).
    /// Returns `(cert_pem, key_pem)`; load them with [`CertificateAuthority::from_pem`].
    pub fn generate(name: &str) -> Result<(String, String), TlsError> {
        Self::generate_self_signed(name, 0)
    }

    /// A new offline root CA (ECDSA P-256, ten years): like [`generate`](Self::generate) but
    /// with path length 1, so it can sign intermediates and they can sign leaves. Its key is
    /// meant to stay on an offline machine.
    pub fn generate_root(name: &str) -> Result<(String, String), TlsError> {
        Self::generate_self_signed(name, 1)
    }

    fn generate_self_signed(name: &str, path_len: u8) -> Result<(String, String), TlsError> {
        let key = new_key("the CA key")?;
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(random_serial());
        let now = SystemTime::now();
        set_validity(&mut params, now - BACKDATE, now + CA_VALIDITY);
        let cert = params
            .self_signed(&key)
            .map_err(|source| TlsError::Generate {
                what: "the CA certificate",
                source,
            })?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// An intermediate CA for the online center, signed by this (root) CA, valid `days` days
    /// but never beyond the root: path length 0, key usage certSign + crlSign.
    pub fn issue_intermediate(&self, name: &str, days: u32) -> Result<KeyPairPem, TlsError> {
        let key = new_key("the intermediate CA key")?;
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        let now = SystemTime::now();
        let root_ends = cert_not_after(&self.issuer_pem)?;
        let not_after = (now + DAY * days).min(root_ends);
        set_validity(&mut params, now - BACKDATE, not_after);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| TlsError::Generate {
                what: "the intermediate CA certificate",
                source,
            })?;
        Ok(KeyPairPem {
            cert_pem: format!("{}{}", cert.pem(), self.chain_pem),
            key_pem: key.serialize_pem(),
        })
    }

    /// Loads a self-signed CA from its certificate and PKCS#8 key: it is its own trust anchor.
    /// Refuses a certificate that is not a CA and a key that does not belong to it.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        Self::from_parts(cert_pem, key_pem, None)
    }

    /// Loads the issuing CA (`cert_pem`, the first certificate, with its key) and the trust
    /// anchors clients verify against (`trust_pem`, one or more certificates; `None` when the
    /// issuer is its own anchor). An issuer that is not an anchor must chain to one: a test
    /// certificate it issues is verified against the anchors as a client would, so a mismatched
    /// intermediate is refused here rather than by every terminal later.
    pub fn from_parts(
        cert_pem: &str,
        key_pem: &str,
        trust_pem: Option<&str>,
    ) -> Result<Self, TlsError> {
        let what = "the CA certificate";
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|_| TlsError::NotPemCertificate { what })?;
        let (rest, parsed) = x509_parser::parse_x509_certificate(&cert_der).map_err(|e| {
            TlsError::BadCertificate {
                what,
                reason: e.to_string(),
            }
        })?;
        if !rest.is_empty() {
            return Err(TlsError::BadCertificate {
                what,
                reason: "trailing bytes after the certificate".into(),
            });
        }
        let is_ca = parsed
            .basic_constraints()
            .map_err(|e| TlsError::BadCertificate {
                what,
                reason: e.to_string(),
            })?
            .is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(TlsError::NotACa);
        }
        let key = load_key(key_pem, "the CA key")?;
        if key.public_key_raw() != parsed.public_key().subject_public_key.data.as_ref() {
            return Err(TlsError::CaKeyMismatch);
        }
        let issuer =
            Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| TlsError::BadCertificate {
                what,
                reason: e.to_string(),
            })?;
        let issuer_pem = pem_encode("CERTIFICATE", &cert_der);
        let (trust_pem, trust_der) = match trust_pem {
            None => (issuer_pem.clone(), vec![cert_der.clone()]),
            Some(trust) => (
                trust.to_owned(),
                certs_from_pem(trust, "the trust anchors")?,
            ),
        };
        let chain_pem = if trust_der.contains(&cert_der) {
            String::new()
        } else {
            issuer_pem.clone()
        };
        let issuer_not_after = cert_not_after(&issuer_pem)?;
        let ca = Self {
            issuer_pem,
            issuer_not_after,
            chain_pem,
            trust_pem,
            trust_der,
            issuer,
        };
        if !ca.chain_pem.is_empty() {
            ca.check_chains_to_trust()?;
        }
        Ok(ca)
    }

    /// Issues a throwaway server certificate and verifies it against the trust anchors with
    /// rustls' own verifier: what every client will do with what this CA issues.
    fn check_chains_to_trust(&self) -> Result<(), TlsError> {
        let name = "chain-check.herd.invalid";
        let probe = self.issue_server(&[name.to_owned()])?;
        let mut chain = certs_from_pem(&probe.cert_pem, "the test certificate")?;
        let leaf = chain.remove(0);
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(root_store(self.trust_der.clone())?),
            ring_provider(),
        )
        .build()
        .map_err(|e| TlsError::NotChainedToTrust {
            reason: e.to_string(),
        })?;
        let server_name = rustls_pki_types::ServerName::try_from(name).expect("valid DNS name");
        let now = rustls_pki_types::UnixTime::now();
        use rustls::client::danger::ServerCertVerifier;
        verifier
            .verify_server_cert(&leaf, &chain, &server_name, &[], now)
            .map(|_| ())
            .map_err(|e| TlsError::NotChainedToTrust {
                reason: e.to_string(),
            })
    }

    /// The trust anchors, PEM: what clients trust (the `ca.pem` terminals and tools pin).
    pub fn trust_pem(&self) -> &str {
        &self.trust_pem
    }

    /// The issuing CA's certificate, PEM.
    pub fn issuer_cert_pem(&self) -> &str {
        &self.issuer_pem
    }

    /// Whether the issuer is an intermediate (it has an offline root above it).
    pub fn has_offline_root(&self) -> bool {
        !self.chain_pem.is_empty()
    }

    /// A server certificate and fresh key for these names (each a DNS name or an IP address
    /// literal; the first is also the CN): EKU serverAuth, valid one year.
    pub fn issue_server(&self, names: &[String]) -> Result<KeyPairPem, TlsError> {
        let first = names.first().ok_or(TlsError::NoServerNames)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(first);
        params.subject_alt_names = names
            .iter()
            .map(|name| server_san(name))
            .collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        let now = SystemTime::now();
        set_validity(
            &mut params,
            now - BACKDATE,
            (now + SERVER_VALIDITY).min(self.issuer_not_after),
        );
        let key = new_key("the server key")?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| TlsError::Generate {
                what: "the server certificate",
                source,
            })?;
        Ok(KeyPairPem {
            cert_pem: format!("{}{}", cert.pem(), self.chain_pem),
            key_pem: key.serialize_pem(),
        })
    }

    /// Signs a terminal's PKCS#10 request for `days` days (valid from one hour ago).
    ///
    /// Only the request's public key is used, once its self-signature verifies: the subject,
    /// SANs and extensions it asks for are ignored, and the certificate gets `CN = terminal_id`,
    /// the SAN URI `urn:herd:terminal:<terminal_id>`, and EKU clientAuth only.
    pub fn sign_terminal_csr(
        &self,
        csr_pem: &str,
        terminal_id: &str,
        days: u32,
    ) -> Result<IssuedCert, CsrError> {
        if days == 0 || days > MAX_TERMINAL_VALIDITY_DAYS {
            return Err(CsrError::BadValidityDays { days });
        }
        let now = SystemTime::now();
        // A certificate that outlived its issuer could not be verified to its end: cut it.
        let not_after = (now + DAY * days).min(self.issuer_not_after);
        self.sign_terminal_csr_between(csr_pem, terminal_id, now - BACKDATE, not_after)
    }

    /// [`sign_terminal_csr`](Self::sign_terminal_csr) with an explicit validity period, for
    /// tests (an expired certificate) and simulations with their own clock.
    pub fn sign_terminal_csr_between(
        &self,
        csr_pem: &str,
        terminal_id: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<IssuedCert, CsrError> {
        if !is_valid_terminal_id(terminal_id) {
            return Err(CsrError::BadTerminalId {
                id: terminal_id.to_owned(),
            });
        }
        if not_after <= not_before {
            return Err(CsrError::EmptyValidity);
        }
        let public_key = verified_csr_public_key(csr_pem)?;

        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(terminal_id);
        let uri = format!("{TERMINAL_URI_PREFIX}{terminal_id}");
        // The id was checked to be ASCII alphanumerics and `._-`, all valid IA5 characters.
        let uri = uri
            .try_into()
            .map_err(|e: rcgen::Error| CsrError::Sign(e))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        set_validity(&mut params, not_before, not_after);
        let cert = params
            .signed_by(&public_key, &self.issuer)
            .map_err(CsrError::Sign)?;
        Ok(IssuedCert {
            cert_pem: format!("{}{}", cert.pem(), self.chain_pem),
            cert_sha256: cert_sha256_hex(cert.der()),
        })
    }

    /// Signs a site server's PKCS#10 request for `days` days: the SAN URI
    /// `urn:herd:site:<site_id>` and the DNS names and IP addresses in `names` (what its
    /// terminals connect to), EKU serverAuth and clientAuth — it serves its terminals and calls
    /// the center with the same certificate. As for terminals, only the request's key is used.
    pub fn sign_site_csr(
        &self,
        csr_pem: &str,
        site_id: &str,
        names: &[String],
        days: u32,
    ) -> Result<IssuedCert, CsrError> {
        if !is_valid_terminal_id(site_id) {
            return Err(CsrError::BadTerminalId {
                id: site_id.to_owned(),
            });
        }
        if days == 0 || days > MAX_TERMINAL_VALIDITY_DAYS {
            return Err(CsrError::BadValidityDays { days });
        }
        let public_key = verified_csr_public_key(csr_pem)?;
        let now = SystemTime::now();
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(site_id);
        let uri = format!("{SITE_URI_PREFIX}{site_id}")
            .try_into()
            .map_err(|e: rcgen::Error| CsrError::Sign(e))?;
        let mut sans = vec![SanType::URI(uri)];
        for name in names {
            sans.push(
                server_san(name).map_err(|_| CsrError::BadServerName { name: name.clone() })?,
            );
        }
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        set_validity(
            &mut params,
            now - BACKDATE,
            (now + DAY * days).min(self.issuer_not_after),
        );
        let cert = params
            .signed_by(&public_key, &self.issuer)
            .map_err(CsrError::Sign)?;
        Ok(IssuedCert {
            cert_pem: format!("{}{}", cert.pem(), self.chain_pem),
            cert_sha256: cert_sha256_hex(cert.der()),
        })
    }

    /// The center's own client certificate and a fresh key (SAN URI `urn:herd:center`, EKU
    /// clientAuth, valid a year): what it presents when it pushes to a site.
    pub fn issue_center_client(&self) -> Result<KeyPairPem, TlsError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name("herd center");
        params.subject_alt_names = vec![SanType::URI(CENTER_URI.try_into().map_err(|source| {
            TlsError::Generate {
                what: "the center's client certificate",
                source,
            }
        })?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        let now = SystemTime::now();
        set_validity(
            &mut params,
            now - BACKDATE,
            (now + SERVER_VALIDITY).min(self.issuer_not_after),
        );
        let key = new_key("the center's client key")?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| TlsError::Generate {
                what: "the center's client certificate",
                source,
            })?;
        Ok(KeyPairPem {
            cert_pem: format!("{}{}", cert.pem(), self.chain_pem),
            key_pem: key.serialize_pem(),
        })
    }

    /// The rustls server config of the center: the given server certificate and key; client
    /// certificates optional but, when presented, verified against this CA.
    pub fn server_config(&self, server: &KeyPairPem) -> Result<Arc<ServerConfig>, TlsError> {
        server_config_for_roots(
            self.trust_der.clone(),
            Arc::new(ServerCertSlot::new(server)?),
        )
    }

    /// [`server_config`](Self::server_config) serving whatever certificate `slot` holds when
    /// a connection's handshake starts, and verifying client certificates against whatever
    /// anchors `trust` holds: [`ServerCertSlot::replace`] reissues the server's certificate and
    /// [`TrustSlot::replace`] follows a CA change, both without a restart and without
    /// invalidating session tickets.
    pub fn server_config_swappable(
        slot: Arc<ServerCertSlot>,
        trust: Arc<TrustSlot>,
    ) -> Result<Arc<ServerConfig>, TlsError> {
        server_config_with(trust, slot)
    }

    /// The trust anchors as DER certificates.
    pub fn trust_der(&self) -> &[CertificateDer<'static>] {
        &self.trust_der
    }
}

/// The server certificate a server config presents, replaceable while it serves: each
/// handshake reads the current one (one uncontended read lock).
#[derive(Debug)]
pub struct ServerCertSlot {
    current: std::sync::RwLock<Arc<CertifiedKey>>,
}

impl ServerCertSlot {
    /// A slot holding `server` (a certificate, possibly followed by its chain, and its key).
    pub fn new(server: &KeyPairPem) -> Result<ServerCertSlot, TlsError> {
        Ok(ServerCertSlot {
            current: std::sync::RwLock::new(certified_key(server)?),
        })
    }

    /// Serves `server` to every handshake from now on; connections already open keep theirs.
    /// A certificate that does not parse or does not match its key leaves the slot unchanged.
    pub fn replace(&self, server: &KeyPairPem) -> Result<(), TlsError> {
        let next = certified_key(server)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }
}

impl ResolvesServerCert for ServerCertSlot {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// The client-certificate verifier a server config uses, replaceable while it serves: each
/// handshake that presents a certificate verifies it against the anchors current then (a CA
/// rotation that adds a root is followed without a restart).
pub struct TrustSlot {
    current: std::sync::RwLock<Arc<dyn ClientCertVerifier>>,
}

impl fmt::Debug for TrustSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustSlot").finish_non_exhaustive()
    }
}

impl TrustSlot {
    /// A slot verifying client certificates against `ca`'s trust anchors.
    pub fn new(ca: &CertificateAuthority) -> Result<TrustSlot, TlsError> {
        Ok(TrustSlot {
            current: std::sync::RwLock::new(client_verifier(ca.trust_der.clone())?),
        })
    }

    /// A slot verifying client certificates against the PEM certificates of `ca_pem` (a site
    /// server, which verifies its terminals against the center's CA without holding it).
    pub fn from_pem(ca_pem: &str) -> Result<TrustSlot, TlsError> {
        Ok(TrustSlot {
            current: std::sync::RwLock::new(client_verifier(certs_from_pem(
                ca_pem,
                "the CA certificate",
            )?)?),
        })
    }

    /// Verifies against `ca`'s anchors from the next handshake on.
    pub fn replace(&self, ca: &CertificateAuthority) -> Result<(), TlsError> {
        let next = client_verifier(ca.trust_der.clone())?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }

    fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ClientCertVerifier for TrustSlot {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        // Enrolment comes without a certificate; the HTTP layer decides per route.
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        // Hints are optional: a terminal has one certificate and presents it anyway.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        self.verifier()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.verifier().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.verifier().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.verifier().supported_verify_schemes()
    }
}

fn certified_key(server: &KeyPairPem) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = certs_from_pem(&server.cert_pem, "the server certificate")?;
    let key = private_key_from_pem(&server.key_pem, "the server key")?;
    // Checks that the key is the certificate's, as `with_single_cert` would.
    Ok(Arc::new(CertifiedKey::from_der(
        chain,
        key,
        &ring_provider(),
    )?))
}

/// The rustls server config of a tier that does not hold the CA key (a site server): serves
/// `server`, and verifies client certificates, when presented, against `ca_pem` (one or more
/// PEM certificates). Client certificates are optional; ALPN http/1.1; TLS 1.2 and 1.3.
pub fn server_config(ca_pem: &str, server: &KeyPairPem) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_for_roots(
        certs_from_pem(ca_pem, "the CA certificate")?,
        Arc::new(ServerCertSlot::new(server)?),
    )
}

fn server_config_for_roots(
    roots: Vec<CertificateDer<'static>>,
    server: Arc<dyn ResolvesServerCert>,
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with(client_verifier(roots)?, server)
}

/// Client certificates optional but, when presented, verified against `roots`.
fn client_verifier(
    roots: Vec<CertificateDer<'static>>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    Ok(
        WebPkiClientVerifier::builder_with_provider(Arc::new(root_store(roots)?), ring_provider())
            .allow_unauthenticated()
            .build()?,
    )
}

fn server_config_with(
    verifier: Arc<dyn ClientCertVerifier>,
    server: Arc<dyn ResolvesServerCert>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = ring_provider();
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(server);
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    // Terminals reconnect at every check-in: stateless session tickets let any number of them
    // resume (no certificate exchange, no signature), where the default stateful cache holds
    // 256 sessions for a fleet of a million. Resumed sessions carry the client certificate
    // chain, so a terminal's identity is the same on a resumed connection.
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    // One ticket per connection is enough for a client that reconnects once per check-in
    // (each resumption brings a fresh one); every ticket costs an encryption and a send.
    config.send_tls13_tickets = 1;
    Ok(Arc::new(config))
}

/// A rustls client config trusting only `ca_pem` (the center's CA; one or more PEM
/// certificates), presenting `identity` as client certificate when given; ALPN http/1.1.
pub fn client_config(
    ca_pem: &str,
    identity: Option<&KeyPairPem>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = root_store(certs_from_pem(ca_pem, "the CA certificate")?)?;
    let builder = ClientConfig::builder_with_provider(ring_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(identity) => builder.with_client_auth_cert(
            certs_from_pem(&identity.cert_pem, "the client certificate")?,
            private_key_from_pem(&identity.key_pem, "the client key")?,
        )?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// A fresh ECDSA P-256 key and a CSR for it whose subject names `terminal_id`. Returns
/// `(key_pem, csr_pem)`. The center decides the identity it certifies; the subject is a hint
/// for operators reading the request.
pub fn new_key_and_csr(terminal_id: &str) -> Result<(String, String), TlsError> {
    if !is_valid_terminal_id(terminal_id) {
        return Err(TlsError::BadTerminalId {
            id: terminal_id.to_owned(),
        });
    }
    let key = new_key("the terminal key")?;
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(terminal_id);
    let csr = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|source| TlsError::Generate {
            what: "the certificate request",
            source,
        })?;
    Ok((key.serialize_pem(), csr))
}

/// The terminal id in a client certificate, from its `urn:herd:terminal:<id>` SAN URI. `None`
/// when the certificate does not parse, has no such URI, has two different ones, or the id is
/// not a valid terminal id. Only meaningful on a certificate the TLS layer has verified.
pub fn terminal_id_of(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut found: Option<&str> = None;
    for name in &san.value.general_names {
        if let GeneralName::URI(uri) = name
            && let Some(id) = uri.strip_prefix(TERMINAL_URI_PREFIX)
        {
            match found {
                Some(previous) if previous != id => return None,
                _ => found = Some(id),
            }
        }
    }
    found
        .filter(|id| is_valid_terminal_id(id))
        .map(str::to_owned)
}

/// The SAN URIs of a certificate that start with `prefix`, with the prefix removed; `None`
/// when the certificate does not parse or has no SAN extension.
fn uris_with_prefix(cert_der: &[u8], prefix: &str) -> Option<Vec<String>> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    Some(
        san.value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::URI(uri) => uri.strip_prefix(prefix).map(str::to_owned),
                _ => None,
            })
            .collect(),
    )
}

/// The site id in a site server's certificate (`urn:herd:site:<id>`); `None` as for
/// [`terminal_id_of`]. Only meaningful on a certificate the TLS layer has verified.
pub fn site_id_of(cert_der: &[u8]) -> Option<String> {
    let ids = uris_with_prefix(cert_der, SITE_URI_PREFIX)?;
    let first = ids.first()?;
    (ids.iter().all(|id| id == first) && is_valid_terminal_id(first)).then(|| first.clone())
}

/// Whether a certificate is the center's own client certificate (`urn:herd:center`).
pub fn is_center_cert(cert_der: &[u8]) -> bool {
    uris_with_prefix(cert_der, CENTER_URI).is_some_and(|rest| rest.iter().any(String::is_empty))
}

/// SHA-256 of a DER certificate, lowercase hex.
pub fn cert_sha256_hex(cert_der: &[u8]) -> String {
    hex::encode(Sha256::digest(cert_der))
}

/// The DER form of the first certificate in `cert_pem`, e.g. to compute
/// [`cert_sha256_hex`] of a certificate kept as PEM.
pub fn cert_der_from_pem(cert_pem: &str) -> Result<Vec<u8>, TlsError> {
    CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map(|der| der.to_vec())
        .map_err(|_| TlsError::NotPemCertificate {
            what: "the certificate",
        })
}

/// Every certificate of a PEM bundle (a trust bundle, a chain), as DER.
pub fn cert_ders_from_pem(bundle: &str) -> Result<Vec<Vec<u8>>, TlsError> {
    Ok(certs_from_pem(bundle, "the certificates")?
        .into_iter()
        .map(|der| der.to_vec())
        .collect())
}

/// One DER certificate as PEM text.
pub fn cert_pem_from_der(der: &[u8]) -> String {
    pem_encode("CERTIFICATE", der)
}

/// When the first certificate in `cert_pem` stops being valid: an agent renews before this.
pub fn cert_not_after(cert_pem: &str) -> Result<SystemTime, TlsError> {
    Ok(cert_validity(cert_pem)?.1)
}

/// When the first certificate in `cert_pem` (the leaf of a chain) starts and stops being
/// valid: what deciding when to renew it needs.
pub fn cert_validity(cert_pem: &str) -> Result<(SystemTime, SystemTime), TlsError> {
    let what = "the certificate";
    let der = cert_der_from_pem(cert_pem)?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| TlsError::BadCertificate {
            what,
            reason: e.to_string(),
        })?;
    let instant = |seconds: i64| match u64::try_from(seconds) {
        Ok(after_epoch) => UNIX_EPOCH + Duration::from_secs(after_epoch),
        Err(_) => UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs()),
    };
    let validity = cert.validity();
    Ok((
        instant(validity.not_before.timestamp()),
        instant(validity.not_after.timestamp()),
    ))
}

/// Whether a server certificate can be issued for `name`: a DNS name or an IP address, as
/// [`CertificateAuthority::issue_server`] and rustls accept them.
pub fn is_valid_server_name(name: &str) -> bool {
    server_san(name).is_ok()
}

/// Terminal ids become certificate names, URIs and path components: `[A-Za-z0-9._-]`, not
/// empty, at most [`MAX_TERMINAL_ID_LEN`] characters (the same alphabet herd-core uses for ids).
pub fn is_valid_terminal_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_TERMINAL_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Parses a PEM CSR, verifies its self-signature and returns its public key.
fn verified_csr_public_key(csr_pem: &str) -> Result<SubjectPublicKeyInfo, CsrError> {
    let der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|_| CsrError::NotPem)?;
    let (rest, csr) = X509CertificationRequest::from_der(der.as_ref())
        .map_err(|e| CsrError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CsrError::Malformed(
            "trailing bytes after the request".into(),
        ));
    }
    csr.verify_signature().map_err(|_| CsrError::BadSignature)?;
    SubjectPublicKeyInfo::from_der(csr.certification_request_info.subject_pki.raw)
        .map_err(|_| CsrError::UnsupportedKey)
}

fn new_key(what: &'static str) -> Result<KeyPair, TlsError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|source| TlsError::Generate { what, source })
}

fn load_key(key_pem: &str, what: &'static str) -> Result<KeyPair, TlsError> {
    // Check the PEM label first so a certificate pasted in the key's place gets a clear message.
    PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| TlsError::NotPemKey { what })?;
    KeyPair::from_pem(key_pem).map_err(|source| TlsError::BadKey { what, source })
}

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

fn server_san(name: &str) -> Result<SanType, TlsError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    // rustls' own parser decides what a valid DNS name is, so what we issue is what it accepts.
    let bad = || TlsError::BadServerName {
        name: name.to_owned(),
    };
    rustls_pki_types::DnsName::try_from(name).map_err(|_| bad())?;
    Ok(SanType::DnsName(
        name.to_owned().try_into().map_err(|_| bad())?,
    ))
}

/// 16 random bytes, top bit clear so the DER INTEGER stays positive without padding.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    // ring's system RNG reads the OS; if that fails nothing cryptographic can work anyway, but
    // a serial only needs uniqueness, so fall back to the clock rather than fail issuance.
    if rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .is_err()
    {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes = nanos.to_be_bytes();
    }
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01; // never a leading zero byte either
    SerialNumber::from_slice(&bytes)
}

/// Sets rcgen's validity from `SystemTime`s (rcgen takes `time::OffsetDateTime`, which is
/// built here from the Unix epoch so this crate needs no date library of its own).
fn set_validity(params: &mut CertificateParams, not_before: SystemTime, not_after: SystemTime) {
    let since_epoch = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default();
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(not_before);
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(not_after);
}

fn certs_from_pem(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsError::NotPemCertificate { what })?;
    if certs.is_empty() {
        return Err(TlsError::NotPemCertificate { what });
    }
    Ok(certs)
}

fn private_key_from_pem(pem: &str, what: &'static str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| TlsError::NotPemKey { what })
}

fn root_store(roots: Vec<CertificateDer<'static>>) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root)?;
    }
    Ok(store)
}

/// PEM armour around DER, 64 base64 characters a line (RFC 7468).
fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

pub mod seal;

#[cfg(test)]
mod tests;
