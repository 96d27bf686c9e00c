//! A plain HTTP(S) client for URLs an operator configures rather than the center's API: alert
//! webhooks and SMS gateways (a request sent, its status read) and vendor feed URLs the center
//! polls (a conditional `GET` with `If-None-Match` / `If-Modified-Since`). `https://` is
//! verified against the public web roots plus, when given, a private CA's certificates.
//! Every request is bounded in time and its answer in bytes; redirects are not followed.
//! [`WebClient::with_policy`] connects only to the addresses a policy allows (the center's
//! feed polling refuses private networks unless listed, against request forgery).

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use ureq::http::{self, header};
use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{Connector as _, TcpConnector};

use crate::{CONNECT_TIMEOUT, tls};

/// One request's answer: its status, the validators a later conditional request sends, and
/// the body (at most the limit asked for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebAnswer {
    pub status: u16,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub body: Vec<u8>,
}

/// Why a request got no usable answer, in words that name the URL.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The URL, a header or the CA file is not usable (nothing was sent).
    #[error("{0}")]
    Invalid(String),
    /// No answer: refused, unreachable, timed out, cut short.
    #[error("{url}: {detail}")]
    Unreachable { url: String, detail: String },
    /// The answer is longer than the caller accepts.
    #[error("{url}: the answer is longer than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
}

/// A request to send ([`WebClient::send`]).
#[derive(Clone, Debug, Default)]
pub struct WebRequest<'a> {
    /// `GET`, `POST`, `PUT`.
    pub method: &'a str,
    pub url: &'a str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The longest answer body read; a longer one is refused.
    pub max_answer_bytes: u64,
    /// The whole request, connection to last byte.
    pub timeout: Duration,
}

/// The client; cheap to clone, one per configured CA.
#[derive(Clone, Debug)]
pub struct WebClient {
    agent: ureq::Agent,
}

/// Which addresses a client may connect to, asked with the URL's host and each address it
/// resolves to; the client connects only to allowed ones, so a name that resolves to a
/// refused address (a private network, say, by DNS rebinding) is never reached.
pub type AddressPolicy = Arc<dyn Fn(&str, std::net::IpAddr) -> bool + Send + Sync>;

/// The system resolver, keeping only the addresses an [`AddressPolicy`] allows.
struct PolicyResolver {
    inner: DefaultResolver,
    policy: AddressPolicy,
}

impl std::fmt::Debug for PolicyResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyResolver").finish_non_exhaustive()
    }
}

impl ureq::unversioned::resolver::Resolver for PolicyResolver {
    fn resolve(
        &self,
        uri: &http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().unwrap_or("").trim_matches(['[', ']']);
        let resolved = self.inner.resolve(uri, config, timeout)?;
        let mut kept = self.empty();
        let mut refused = Vec::new();
        for address in resolved.iter() {
            if (self.policy)(host, address.ip()) {
                kept.push(*address);
            } else {
                refused.push(address.ip().to_string());
            }
        }
        if kept.is_empty() {
            return Err(ureq::Error::Io(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{host} resolves only to addresses this client may not connect to ({})",
                    refused.join(", ")
                ),
            )));
        }
        Ok(kept)
    }
}

impl WebClient {
    /// [`WebClient::new`], connecting only to the addresses `policy` allows.
    pub fn with_policy(
        extra_ca_pem: Option<&str>,
        policy: AddressPolicy,
    ) -> Result<WebClient, WebError> {
        let resolver = PolicyResolver {
            inner: DefaultResolver::default(),
            policy,
        };
        Ok(WebClient {
            agent: agent_resolving(roots_with(extra_ca_pem)?, resolver)
                .map_err(WebError::Invalid)?,
        })
    }

    /// A client trusting the public web roots and the certificates in `extra_ca_pem`.
    pub fn new(extra_ca_pem: Option<&str>) -> Result<WebClient, WebError> {
        Ok(WebClient {
            agent: agent_trusting(roots_with(extra_ca_pem)?).map_err(WebError::Invalid)?,
        })
    }

    /// Sends the request and reads the answer (whatever its status).
    pub fn send(&self, request: &WebRequest<'_>) -> Result<WebAnswer, WebError> {
        let url = request.url;
        check_url(url)?;
        let mut builder = http::Request::builder().method(request.method).uri(url);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let built = builder
            .body(request.body.clone())
            .map_err(|e| WebError::Invalid(format!("{url}: {e}")))?;
        let built = self
            .agent
            .configure_request(built)
            .timeout_global(Some(request.timeout))
            .build();
        let unreachable = |detail: String| WebError::Unreachable {
            url: url.to_owned(),
            detail,
        };
        let response = self
            .agent
            .run(built)
            .map_err(|err| unreachable(err.to_string()))?;
        let status = response.status().as_u16();
        let text_header = |name: header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let etag = text_header(header::ETAG);
        let last_modified = text_header(header::LAST_MODIFIED);
        let limit = request.max_answer_bytes;
        let announced = text_header(header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n > limit) {
            return Err(WebError::TooLarge {
                url: url.to_owned(),
                limit,
            });
        }
        let mut body = Vec::new();
        response
            .into_body()
            .into_with_config()
            .limit(u64::MAX)
            .reader()
            .take(limit + 1)
            .read_to_end(&mut body)
            .map_err(|e| unreachable(format!("the answer broke off: {e}")))?;
        if body.len() as u64 > limit {
            return Err(WebError::TooLarge {
                url: url.to_owned(),
                limit,
            });
        }
        Ok(WebAnswer {
            status,
            etag,
            last_modified,
            body,
        })
    }
}

/// The public web roots plus the certificates in `extra_ca_pem`.
fn roots_with(extra_ca_pem: Option<&str>) -> Result<rustls::RootCertStore, WebError> {
    let mut roots =
        rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_ca_pem {
        let certs = rustls_pemfile_certs(pem)?;
        if certs.is_empty() {
            return Err(WebError::Invalid(
                "the CA file holds no PEM certificate".into(),
            ));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| {
                WebError::Invalid(format!("a certificate of the CA file is unusable: {e}"))
            })?;
        }
    }
    Ok(roots)
}

/// A ureq agent for `http://` and `https://` URLs outside the API, trusting `roots`: no
/// redirects followed, every status answered (not turned into an error), a bounded connect.
pub(crate) fn agent_trusting(roots: rustls::RootCertStore) -> Result<ureq::Agent, String> {
    agent_resolving(roots, DefaultResolver::default())
}

/// [`agent_trusting`] with its own resolver.
fn agent_resolving(
    roots: rustls::RootCertStore,
    resolver: impl ureq::unversioned::resolver::Resolver,
) -> Result<ureq::Agent, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = ().chain(TcpConnector::default()).chain(tls::TlsConnector {
        config: Arc::new(config),
    });
    let config = ureq::Agent::config_builder()
        .https_only(false)
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .user_agent(concat!("herd-client/", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(ureq::Agent::with_parts(config, connector, resolver))
}

/// `http://` or `https://` with a host: what an operator may configure.
pub fn check_url(url: &str) -> Result<(), WebError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| WebError::Invalid(format!("{url:?} is not a URL: {e}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(WebError::Invalid(format!(
            "{url:?} must start with http:// or https://"
        )));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(WebError::Invalid(format!("{url:?} has no host name")));
    }
    Ok(())
}

/// The certificates of a PEM text (other blocks are skipped).
fn rustls_pemfile_certs(
    pem: &str,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, WebError> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| WebError::Invalid(format!("the CA file is not PEM: {e}")))
}
