//! A small S3 client, just what the center's blob store needs of an S3-compatible object store
//! (AWS S3, MinIO, Ceph, Garage): SigV4-signed, path-style requests (`HEAD` of the bucket and of
//! an object, ranged `GET` streamed chunk by chunk, `PUT` of a local file whose SHA-256 is
//! known, `DELETE`, `ListObjectsV2`) over the workspace's hyper and rustls with ring.
//!
//! Why our own and not a general client: see ARCHITECTURE.md, "Decisions" (build cost). A `PUT`
//! sends the blob's own SHA-256 as `x-amz-content-sha256`, which the store checks against the
//! bytes it receives, and an S3 `PUT` becomes visible whole or not at all: nothing half-written
//! ever appears under a key. Nothing here buffers an object: bodies stream both ways; only
//! listings and error documents are read whole, each under a bound.
//!
//! One connection per request: the center makes a handful of requests per download or upload,
//! and a pool would be more code than the handshakes it saves on a loopback or LAN endpoint.

mod sign;
mod xml;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, ReadBuf};

pub use sign::Credentials;

/// How long a TCP connection (and TLS handshake) to the endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the endpoint may take to start answering a request (once the body is sent).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a body read whole (a listing, an error) may pause between two chunks.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest error document read (the rest is not needed to say what went wrong).
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Largest listing page read: 1,000 keys are about 300 KB.
const MAX_LIST_BODY: usize = 8 << 20;
/// Bytes read from a local file per request body frame.
const FILE_CHUNK: usize = 256 * 1024;
/// SHA-256 of nothing: the payload hash of requests without a body.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Where the bucket is and who we are to it.
#[derive(Debug, Clone)]
pub struct BucketConfig {
    /// `http://host:port` or `https://host[:port]`, optionally with a path the S3 API lives
    /// under; the bucket is addressed in the path (path-style).
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub credentials: Credentials,
    /// PEM certificates trusted for an `https` endpoint besides the public web roots (a
    /// private CA of a MinIO or Ceph deployment).
    pub extra_roots_pem: Option<Vec<u8>>,
}

/// Why a request failed; every variant names the request (`what`) and the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("s3 endpoint {endpoint:?}: {why}")]
    BadConfig { endpoint: String, why: String },
    #[error("{what}: cannot reach {endpoint}: {source}")]
    Unreachable {
        what: String,
        endpoint: String,
        #[source]
        source: io::Error,
    },
    #[error("{what}: {endpoint} did not answer within {} s", .after.as_secs())]
    Timeout {
        what: String,
        endpoint: String,
        after: Duration,
    },
    #[error("{what}: the exchange with {endpoint} failed: {source}")]
    Http {
        what: String,
        endpoint: String,
        #[source]
        source: hyper::Error,
    },
    #[error("{what}: {endpoint} answered {status}{}", describe(code, message))]
    Status {
        what: String,
        endpoint: String,
        status: u16,
        /// The S3 error code (`NoSuchBucket`, `AccessDenied`, `SignatureDoesNotMatch`…), if
        /// the answer carried one.
        code: String,
        message: String,
    },
    #[error("{what}: {why}")]
    Protocol { what: String, why: String },
    #[error("{what}: {source}")]
    LocalIo {
        what: String,
        #[source]
        source: io::Error,
    },
}

fn describe(code: &str, message: &str) -> String {
    match (code.is_empty(), message.is_empty()) {
        (true, true) => String::new(),
        (false, true) => format!(" ({code})"),
        (true, false) => format!(": {message}"),
        (false, false) => format!(" ({code}): {message}"),
    }
}

impl S3Error {
    /// The HTTP status the endpoint answered, when it answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            S3Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    /// Unix seconds.
    pub last_modified: i64,
}

/// One page of `ListObjectsV2`: pass `next` back for the following page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ListedObject>,
    pub next: Option<String>,
}

/// A bucket on an S3-compatible endpoint. Cloning is cheap.
#[derive(Clone)]
pub struct Bucket {
    inner: Arc<Inner>,
}

struct Inner {
    /// The endpoint as configured, for messages.
    endpoint: String,
    /// The `Host` header: the endpoint's authority as written.
    authority: String,
    connect_host: String,
    port: u16,
    /// The endpoint's path without a trailing `/` (often empty).
    base_path: String,
    bucket: String,
    region: String,
    credentials: Credentials,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls_pki_types::ServerName<'static>,
    )>,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket")
            .field("endpoint", &self.inner.endpoint)
            .field("bucket", &self.inner.bucket)
            .field("region", &self.inner.region)
            .finish_non_exhaustive()
    }
}

impl Bucket {
    /// Checks the configuration (no request is made: see [`Bucket::check`]).
    pub fn new(config: BucketConfig) -> Result<Bucket, S3Error> {
        let bad = |why: &str| S3Error::BadConfig {
            endpoint: config.endpoint.clone(),
            why: why.to_owned(),
        };
        let (scheme, rest) = config
            .endpoint
            .split_once("://")
            .ok_or_else(|| bad("not a URL like https://s3.example or http://127.0.0.1:9000"))?;
        let https = match scheme {
            "https" => true,
            "http" => false,
            _ => return Err(bad("the scheme is neither http nor https")),
        };
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(bad("the URL names no host (or carries credentials)"));
        }
        if path.contains(['?', '#']) {
            return Err(bad("the URL has a query or fragment"));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| bad("bad port"))?;
        let port = port.unwrap_or(if https { 443 } else { 80 });
        if config.bucket.is_empty() || config.bucket.contains('/') {
            return Err(bad("the bucket name is empty or contains '/'"));
        }
        if config.region.is_empty() {
            return Err(bad("the region is empty"));
        }
        let tls = match https {
            false => None,
            true => {
                let mut roots = rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                if let Some(pem) = &config.extra_roots_pem {
                    use rustls_pki_types::pem::PemObject;
                    let mut added = 0;
                    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
                        let cert = cert.map_err(|err| bad(&format!("the CA file: {err}")))?;
                        roots
                            .add(cert)
                            .map_err(|err| bad(&format!("the CA file: {err}")))?;
                        added += 1;
                    }
                    if added == 0 {
                        return Err(bad("the CA file holds no certificate"));
                    }
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let mut tls = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|err| bad(&err.to_string()))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                tls.alpn_protocols = vec![b"http/1.1".to_vec()];
                let name = rustls_pki_types::ServerName::try_from(host.to_owned())
                    .map_err(|_| bad("the host is not a valid TLS server name"))?;
                Some((tokio_rustls::TlsConnector::from(Arc::new(tls)), name))
            }
        };
        Ok(Bucket {
            inner: Arc::new(Inner {
                endpoint: config.endpoint.trim_end_matches('/').to_owned(),
                authority: authority.to_owned(),
                connect_host: host.to_owned(),
                port,
                base_path: path.trim_end_matches('/').to_owned(),
                bucket: config.bucket,
                region: config.region,
                credentials: config.credentials,
                tls,
            }),
        })
    }

    /// The bucket's name.
    pub fn name(&self) -> &str {
        &self.inner.bucket
    }

    /// `HEAD` of the bucket: it exists and the credentials may use it.
    pub async fn check(&self) -> Result<(), S3Error> {
        let what = format!("HEAD of bucket {:?}", self.inner.bucket);
        let response = self
            .send(&what, Method::HEAD, None, &[], &[], EMPTY_SHA256, empty())
            .await?;
        self.expect_success(&what, response).await.map(drop)
    }

    /// The size of object `key`, or `None` when there is none.
    pub async fn head(&self, key: &str) -> Result<Option<u64>, S3Error> {
        let what = self.what("HEAD", key);
        let response = self
            .send(
                &what,
                Method::HEAD,
                Some(key),
                &[],
                &[],
                EMPTY_SHA256,
                empty(),
            )
            .await?;
        if response.status() == 404 {
            return Ok(None);
        }
        let response = self.expect_success(&what, response).await?;
        content_length(&what, &response).map(Some)
    }

    /// Object `key`, whole or bytes `first..=last`, streamed; `None` when there is none.
    pub async fn get(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
    ) -> Result<Option<ObjectStream>, S3Error> {
        let what = self.what("GET", key);
        let headers: Vec<(&str, String)> = match range {
            Some((first, last)) => vec![("range", format!("bytes={first}-{last}"))],
            None => Vec::new(),
        };
        let response = self
            .send(
                &what,
                Method::GET,
                Some(key),
                &[],
                &headers,
                EMPTY_SHA256,
                empty(),
            )
            .await?;
        if response.status() == 404 {
            return Ok(None);
        }
        let response = self.expect_success(&what, response).await?;
        let len = content_length(&what, &response)?;
        if let Some((first, last)) = range {
            let wanted = last - first + 1;
            if response.status() != 206 || len != wanted {
                return Err(S3Error::Protocol {
                    what,
                    why: format!(
                        "asked for {wanted} bytes from {first}, got status {} with {len} bytes",
                        response.status().as_u16()
                    ),
                });
            }
        }
        Ok(Some(ObjectStream {
            body: response.into_body(),
            len,
            received: 0,
        }))
    }

    /// Stores `len` bytes of `file` (from its current position) as `key`; `sha256` is their
    /// hex SHA-256, which the store checks against what it receives. The object appears only
    /// once wholly received.
    pub async fn put_file(
        &self,
        key: &str,
        file: tokio::fs::File,
        len: u64,
        sha256: &str,
    ) -> Result<(), S3Error> {
        let what = self.what("PUT", key);
        let body = UnsyncBoxBody::new(FileBody::new(file, len));
        let headers = [("content-length", len.to_string())];
        let response = self
            .send(&what, Method::PUT, Some(key), &[], &headers, sha256, body)
            .await?;
        self.expect_success(&what, response).await.map(drop)
    }

    /// Deletes object `key` (none there is not an error).
    pub async fn delete(&self, key: &str) -> Result<(), S3Error> {
        let what = self.what("DELETE", key);
        let response = self
            .send(
                &what,
                Method::DELETE,
                Some(key),
                &[],
                &[],
                EMPTY_SHA256,
                empty(),
            )
            .await?;
        if response.status() == 404 {
            return Ok(());
        }
        self.expect_success(&what, response).await.map(drop)
    }

    /// One page (at most 1,000 objects) of the objects whose keys start with `prefix`, after
    /// the page `after` named.
    pub async fn list(&self, prefix: &str, after: Option<&str>) -> Result<ListPage, S3Error> {
        let what = format!(
            "listing s3://{}/{prefix}* at {}",
            self.inner.bucket, self.inner.endpoint
        );
        let mut query = vec![("list-type", "2"), ("prefix", prefix)];
        if let Some(token) = after {
            query.push(("continuation-token", token));
        }
        let response = self
            .send(&what, Method::GET, None, &query, &[], EMPTY_SHA256, empty())
            .await?;
        let response = self.expect_success(&what, response).await?;
        let body = read_bounded(&what, response.into_body(), MAX_LIST_BODY).await?;
        let text = String::from_utf8_lossy(&body);
        let page = xml::parse_list(&text).map_err(|why| S3Error::Protocol {
            what: what.clone(),
            why: format!("the listing does not parse: {why}"),
        })?;
        Ok(page)
    }

    fn what(&self, method: &str, key: &str) -> String {
        format!("{method} s3://{}/{key}", self.inner.bucket)
    }

    /// The response if its status is 2xx, else the error it describes.
    async fn expect_success(
        &self,
        what: &str,
        response: Response<Incoming>,
    ) -> Result<Response<Incoming>, S3Error> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        // An error document says which; a HEAD's answer has none.
        let body = read_bounded(what, response.into_body(), MAX_ERROR_BODY)
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        let field = |tag| {
            xml::first(&text, tag)
                .map(xml::unescape)
                .unwrap_or_default()
        };
        Err(S3Error::Status {
            what: what.to_owned(),
            endpoint: self.inner.endpoint.clone(),
            status: status.as_u16(),
            code: field("Code"),
            message: field("Message"),
        })
    }

    /// Signs and sends one request on a new connection; the answer's body streams from it.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        what: &str,
        method: Method,
        key: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
        payload_sha256: &str,
        body: UnsyncBoxBody<Bytes, io::Error>,
    ) -> Result<Response<Incoming>, S3Error> {
        let inner = &*self.inner;
        let mut path = format!(
            "{}/{}",
            inner.base_path,
            sign::uri_encode(&inner.bucket, false)
        );
        if let Some(key) = key {
            path.push('/');
            path.push_str(&sign::uri_encode(key, true));
        }
        let canonical_query = sign::canonical_query(query);
        let amz_date = sign::amz_date(unix_now());
        let mut signed: Vec<(String, String)> = vec![
            ("host".to_owned(), inner.authority.clone()),
            ("x-amz-content-sha256".to_owned(), payload_sha256.to_owned()),
            ("x-amz-date".to_owned(), amz_date.clone()),
        ];
        if let Some(token) = &inner.credentials.session_token {
            signed.push(("x-amz-security-token".to_owned(), token.clone()));
        }
        for (name, value) in headers {
            if *name == "range" {
                signed.push(((*name).to_owned(), value.clone()));
            }
        }
        signed.sort();
        let authorization = sign::authorization(
            &inner.credentials,
            &inner.region,
            &amz_date,
            method.as_str(),
            &path,
            &canonical_query,
            &signed,
            payload_sha256,
        );
        let uri = match canonical_query.is_empty() {
            true => path,
            false => format!("{path}?{canonical_query}"),
        };
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in &signed {
            request = request.header(name.as_str(), value.as_str());
        }
        for (name, value) in headers {
            if *name != "range" {
                request = request.header(*name, value.as_str());
            }
        }
        let request = request
            .header("authorization", authorization)
            .body(body)
            .map_err(|err| S3Error::Protocol {
                what: what.to_owned(),
                why: format!("cannot build the request: {err}"),
            })?;

        let unreachable = |source| S3Error::Unreachable {
            what: what.to_owned(),
            endpoint: inner.endpoint.clone(),
            source,
        };
        let timeout = |after| S3Error::Timeout {
            what: what.to_owned(),
            endpoint: inner.endpoint.clone(),
            after,
        };
        let http = |source| S3Error::Http {
            what: what.to_owned(),
            endpoint: inner.endpoint.clone(),
            source,
        };
        let connect = async {
            let tcp = tokio::net::TcpStream::connect((inner.connect_host.as_str(), inner.port))
                .await
                .map_err(unreachable)?;
            let _ = tcp.set_nodelay(true);
            let sender = match &inner.tls {
                None => {
                    let (sender, connection) =
                        hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                            .await
                            .map_err(http)?;
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    sender
                }
                Some((connector, name)) => {
                    let stream = connector
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(unreachable)?;
                    let (sender, connection) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream))
                            .await
                            .map_err(http)?;
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    sender
                }
            };
            Ok::<_, S3Error>(sender)
        };
        let mut sender = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| timeout(CONNECT_TIMEOUT))??;
        tokio::time::timeout(RESPONSE_TIMEOUT, sender.send_request(request))
            .await
            .map_err(|_| timeout(RESPONSE_TIMEOUT))?
            .map_err(http)
    }
}

/// An object's bytes as they arrive: exactly `len` of them, or an error.
#[derive(Debug)]
pub struct ObjectStream {
    body: Incoming,
    /// The bytes the answer announced (the whole object or the range asked for).
    pub len: u64,
    received: u64,
}

impl ObjectStream {
    /// The next chunk; `None` once all `len` bytes came. A connection that ends early, or an
    /// answer longer than announced, is an error.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(err))) => {
                    return Poll::Ready(Some(Err(io::Error::other(err))));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if data.is_empty() {
                        continue;
                    }
                    self.received += data.len() as u64;
                    if self.received > self.len {
                        return Poll::Ready(Some(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "the object store sent more than the {} bytes announced",
                                self.len
                            ),
                        ))));
                    }
                    return Poll::Ready(Some(Ok(data)));
                }
                Poll::Ready(None) if self.received < self.len => {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "the object store sent {} of the {} bytes announced",
                            self.received, self.len
                        ),
                    ))));
                }
                Poll::Ready(None) => return Poll::Ready(None),
            }
        }
    }

    /// [`ObjectStream::poll_chunk`] as a future, each chunk due within a minute.
    pub async fn chunk(&mut self) -> Option<io::Result<Bytes>> {
        let next = std::future::poll_fn(|cx| self.poll_chunk(cx));
        match tokio::time::timeout(STALL_TIMEOUT, next).await {
            Ok(chunk) => chunk,
            Err(_) => Some(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the object store stalled for a minute",
            ))),
        }
    }
}

fn empty() -> UnsyncBoxBody<Bytes, io::Error> {
    UnsyncBoxBody::new(http_body_util::Empty::new().map_err(|never| match never {}))
}

fn content_length(what: &str, response: &Response<Incoming>) -> Result<u64, S3Error> {
    response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| S3Error::Protocol {
            what: what.to_owned(),
            why: "the answer has no Content-Length".to_owned(),
        })
}

/// A whole body, refused past `limit` bytes or when it stalls.
async fn read_bounded(what: &str, mut body: Incoming, limit: usize) -> Result<Vec<u8>, S3Error> {
    let mut out = Vec::new();
    loop {
        let frame = tokio::time::timeout(STALL_TIMEOUT, body.frame())
            .await
            .map_err(|_| S3Error::Protocol {
                what: what.to_owned(),
                why: "the answer stalled".to_owned(),
            })?;
        let Some(frame) = frame else {
            return Ok(out);
        };
        let frame = frame.map_err(|err| S3Error::Protocol {
            what: what.to_owned(),
            why: format!("reading the answer: {err}"),
        })?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(S3Error::Protocol {
                    what: what.to_owned(),
                    why: format!("the answer is longer than {limit} bytes"),
                });
            }
            out.extend_from_slice(&data);
        }
    }
}

/// `host[:port]` or `[v6][:port]`: the host to connect to and the port, if written.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(port) => Some((host, Some(port.parse().ok()?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((authority, None)),
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A request body reading `remaining` bytes of a file, a chunk per frame.
struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    buf: Vec<u8>,
}

impl FileBody {
    fn new(file: tokio::fs::File, len: u64) -> FileBody {
        let chunk = usize::try_from(len).unwrap_or(FILE_CHUNK).min(FILE_CHUNK);
        FileBody {
            file,
            remaining: len,
            buf: vec![0; chunk],
        }
    }
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(this.remaining)
            .unwrap_or(usize::MAX)
            .min(this.buf.len());
        let mut read_buf = ReadBuf::new(&mut this.buf[..want]);
        match Pin::new(&mut this.file).poll_read(cx, &mut read_buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(err)) => Poll::Ready(Some(Err(err))),
            Poll::Ready(Ok(())) => {
                let read = read_buf.filled();
                if read.is_empty() {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file is shorter than the upload announced",
                    ))));
                }
                this.remaining -= read.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(read)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(endpoint: &str) -> BucketConfig {
        BucketConfig {
            endpoint: endpoint.to_owned(),
            bucket: "herd".to_owned(),
            region: "us-east-1".to_owned(),
            credentials: Credentials::new("AKID", "secret", None),
            extra_roots_pem: None,
        }
    }

    #[test]
    fn endpoints_parse_or_are_refused_with_the_reason() {
        let bucket = Bucket::new(config("http://127.0.0.1:9000/")).unwrap();
        assert_eq!(bucket.inner.authority, "127.0.0.1:9000");
        assert_eq!(bucket.inner.port, 9000);
        assert_eq!(bucket.inner.base_path, "");
        let bucket = Bucket::new(config("https://s3.example/api")).unwrap();
        assert_eq!(
            (bucket.inner.port, bucket.inner.base_path.as_str()),
            (443, "/api")
        );
        let bucket = Bucket::new(config("http://[::1]:9000")).unwrap();
        assert_eq!(bucket.inner.connect_host, "::1");
        for (bad, why) in [
            ("127.0.0.1:9000", "not a URL"),
            ("ftp://x", "neither http nor https"),
            ("http://", "names no host"),
            ("http://user:pw@host", "names no host"),
            ("http://host:port", "bad port"),
            ("http://host/?x", "query"),
        ] {
            let err = Bucket::new(config(bad)).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains(bad), "{bad}: {err}");
        }
        let mut no_bucket = config("http://127.0.0.1:1");
        no_bucket.bucket.clear();
        assert!(
            Bucket::new(no_bucket)
                .unwrap_err()
                .to_string()
                .contains("bucket name")
        );
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_named() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let bucket = Bucket::new(config(&format!("http://127.0.0.1:{port}"))).unwrap();
        let err = bucket.check().await.unwrap_err();
        assert!(matches!(err, S3Error::Unreachable { .. }), "{err}");
        assert!(
            err.to_string().starts_with(&format!(
                "HEAD of bucket \"herd\": cannot reach http://127.0.0.1:{port}"
            )),
            "{err}"
        );
    }
}
