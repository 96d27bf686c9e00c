//! One keep-alive HTTPS connection of the simulator: hyper 1's HTTP/1.1 client connection over
//! tokio-rustls, driven inside the task that sends the requests (no connection task, no channel
//! hop between tasks), so a check-in costs one wake-up of one task on the generator's side.
//!
//! The identity is the TLS client config: a terminal's connection presents its certificate,
//! an operator's presents none and sends a bearer token.

use std::future::{Future, poll_fn};
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use anyhow::Context as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Body as _;
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How long connecting (TCP and TLS) may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an administrative call (publish, enrol) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the center is.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// The name the server certificate must carry (a DNS name or an IP address).
    pub server_name: ServerName<'static>,
    /// The `Host` header: HTTP/1.1 requires it and hyper's connection API leaves it to us.
    pub host: HeaderValue,
}

impl Endpoint {
    /// Parses `https://HOST[:PORT][/]` and resolves HOST.
    pub async fn from_url(url: &str) -> anyhow::Result<Endpoint> {
        let rest = url
            .strip_prefix("https://")
            .with_context(|| format!("--server {url:?}: the center is reached over https://"))?;
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            anyhow::bail!("--server {url:?}: no host after https://");
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => {
                let port: u16 = port
                    .parse()
                    .with_context(|| format!("--server {url:?}: {port:?} is not a port number"))?;
                (host, port)
            }
            _ => (authority, 443),
        };
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        let addr = tokio::net::lookup_host((bare_host, port))
            .await
            .with_context(|| format!("--server {url:?}: cannot resolve {bare_host:?}"))?
            .next()
            .with_context(|| format!("--server {url:?}: {bare_host:?} has no address"))?;
        let server_name = ServerName::try_from(bare_host.to_owned())
            .with_context(|| format!("--server {url:?}: {bare_host:?} is not a server name"))?;
        let host = HeaderValue::from_str(authority)
            .with_context(|| format!("--server {url:?}: {authority:?} is not a valid host"))?;
        Ok(Endpoint {
            addr,
            server_name,
            host,
        })
    }

    /// A center on this machine at `addr`, whose certificate names the IP address.
    pub fn loopback(addr: SocketAddr) -> Endpoint {
        Endpoint {
            addr,
            server_name: ServerName::IpAddress(addr.ip().into()),
            host: HeaderValue::from_str(&addr.to_string()).expect("an address is a valid host"),
        }
    }
}

/// Why a request got no HTTP answer. The names are the error kinds the report counts.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("tls handshake: {0}")]
    Tls(std::io::Error),
    #[error("connect: timed out after {CONNECT_TIMEOUT:?}")]
    ConnectTimeout,
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    #[error("connection closed by the center")]
    Closed,
}

impl ConnError {
    /// A short, stable name for counting errors by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            ConnError::Connect(_) | ConnError::ConnectTimeout => "connect",
            ConnError::Tls(_) => "tls handshake",
            ConnError::Http(_) => "http",
            ConnError::Closed => "connection closed",
        }
    }
}

type Io = TokioIo<TlsStream<TcpStream>>;

/// An open HTTP/1.1 connection over TLS.
pub struct Https {
    sender: SendRequest<Full<Bytes>>,
    connection: Connection<Io, Full<Bytes>>,
    host: HeaderValue,
    /// The connection future finished: nothing more can be sent.
    closed: bool,
    /// The TLS handshake resumed an earlier session (no certificate exchange).
    resumed: bool,
}

impl std::fmt::Debug for Https {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Https")
            .field("host", &self.host)
            .field("closed", &self.closed)
            .finish()
    }
}

impl Https {
    pub async fn connect(endpoint: &Endpoint, tls: Arc<ClientConfig>) -> Result<Https, ConnError> {
        Https::connect_from(endpoint, tls, None).await
    }

    /// Connects from the local address `source` (any port) when given: one loopback source
    /// address has only so many ephemeral ports towards one destination, so `herd sim
    /// protect`'s workers each use their own (127.0.0.2, 127.0.0.3, …).
    pub async fn connect_from(
        endpoint: &Endpoint,
        tls: Arc<ClientConfig>,
        source: Option<IpAddr>,
    ) -> Result<Https, ConnError> {
        let connecting = async {
            let tcp = match source {
                None => TcpStream::connect(endpoint.addr).await,
                Some(source) => {
                    let socket = if source.is_ipv4() {
                        TcpSocket::new_v4()
                    } else {
                        TcpSocket::new_v6()
                    }
                    .map_err(ConnError::Connect)?;
                    socket
                        .bind(SocketAddr::new(source, 0))
                        .map_err(ConnError::Connect)?;
                    socket.connect(endpoint.addr).await
                }
            }
            .map_err(ConnError::Connect)?;
            // Requests are small and answered before the next one: never wait for more bytes.
            tcp.set_nodelay(true).map_err(ConnError::Connect)?;
            let stream = TlsConnector::from(tls)
                .connect(endpoint.server_name.clone(), tcp)
                .await
                .map_err(ConnError::Tls)?;
            let resumed =
                stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
            let (sender, connection) = hyper::client::conn::http1::Builder::new()
                .handshake(TokioIo::new(stream))
                .await?;
            Ok(Https {
                sender,
                connection,
                host: endpoint.host.clone(),
                closed: false,
                resumed,
            })
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .unwrap_or(Err(ConnError::ConnectTimeout))
    }

    /// The `Host` header value for requests on this connection.
    pub fn host(&self) -> &HeaderValue {
        &self.host
    }

    /// Whether the TLS handshake resumed an earlier session.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    pub fn is_closed(&self) -> bool {
        self.closed || self.sender.is_closed()
    }

    /// A request to this connection's host.
    pub fn request(&self, method: Method, path: &str) -> hyper::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.host.clone())
    }

    /// Sends a request and reads the whole answer.
    pub async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), ConnError> {
        let exchange = self.exchange(request, false).await?;
        Ok((exchange.status, exchange.body))
    }

    /// Sends a request, reads the whole answer and counts the HTTP/1.1 bytes both ways (what
    /// a metadata refresh costs the network, TLS records aside).
    pub async fn send_counted(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<Exchange, ConnError> {
        self.exchange(request, true).await
    }

    async fn exchange(
        &mut self,
        request: Request<Full<Bytes>>,
        count: bool,
    ) -> Result<Exchange, ConnError> {
        if self.closed {
            return Err(ConnError::Closed);
        }
        let request_bytes = if count {
            request_head_len(&request) + request.body().size_hint().exact().unwrap_or(0) as usize
        } else {
            0
        };
        let answer = self.sender.send_request(request);
        let response: hyper::Response<Incoming> =
            drive(&mut self.connection, &mut self.closed, answer).await??;
        let status = response.status();
        let head_bytes = if count {
            response_head_len(&response)
        } else {
            0
        };
        let body = drive(
            &mut self.connection,
            &mut self.closed,
            response.into_body().collect(),
        )
        .await??
        .to_bytes();
        Ok(Exchange {
            status,
            wire_bytes: request_bytes + head_bytes + body.len(),
            body,
        })
    }

    /// An administrative call with a JSON body (or none) and an optional bearer token, with a
    /// time limit.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let mut builder = self.request(method.clone(), path);
        if let Some(token) = token {
            builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .with_context(|| format!("cannot build the request {method} {path}"))?;
        tokio::time::timeout(CALL_TIMEOUT, self.send(request))
            .await
            .with_context(|| format!("{method} {path}: no answer within {CALL_TIMEOUT:?}"))?
            .with_context(|| format!("{method} {path}"))
    }
}

/// An answer, and the HTTP/1.1 bytes of the request and the answer (0 when not counted).
#[derive(Debug)]
pub struct Exchange {
    pub status: StatusCode,
    pub body: Bytes,
    pub wire_bytes: usize,
}

/// Bytes of a request's head as HTTP/1.1 writes it: `METHOD URI HTTP/1.1\r\n`, each header
/// `name: value\r\n`, then `\r\n`.
fn request_head_len<B>(request: &Request<B>) -> usize {
    let line = request.method().as_str().len() + 1 + request.uri().to_string().len() + 11;
    line + headers_len(request.headers()) + 2
}

/// Bytes of an answer's head: `HTTP/1.1 200 OK\r\n`, the headers, `\r\n`.
fn response_head_len<B>(response: &hyper::Response<B>) -> usize {
    let reason = response.status().canonical_reason().unwrap_or("").len();
    let line = 8 + 1 + 3 + 1 + reason + 2;
    line + headers_len(response.headers()) + 2
}

fn headers_len(headers: &hyper::HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum()
}

/// Polls `future` while also driving the connection that feeds it, in the calling task.
/// The connection goes first so that an answer it has just read completes `future` in the
/// same poll.
async fn drive<F: Future>(
    connection: &mut Connection<Io, Full<Bytes>>,
    closed: &mut bool,
    future: F,
) -> Result<F::Output, ConnError> {
    let mut future = pin!(future);
    poll_fn(|cx| {
        let ended = if *closed {
            Some(Ok(()))
        } else {
            match Pin::new(&mut *connection).poll(cx) {
                Poll::Ready(result) => {
                    *closed = true;
                    Some(result)
                }
                Poll::Pending => None,
            }
        };
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        match ended {
            Some(Ok(())) => Poll::Ready(Err(ConnError::Closed)),
            Some(Err(err)) => Poll::Ready(Err(ConnError::Http(err))),
            None => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_counted_as_http_1_1_writes_them() {
        let request = Request::get("/tuf/metadata/timestamp.json")
            .header(HOST, "127.0.0.1:8443")
            .body(())
            .expect("a request");
        let written = "GET /tuf/metadata/timestamp.json HTTP/1.1\r\nhost: 127.0.0.1:8443\r\n\r\n";
        assert_eq!(request_head_len(&request), written.len());
        let response = hyper::Response::builder()
            .status(StatusCode::OK)
            .header(CONTENT_TYPE, "application/json")
            .header("content-length", "612")
            .body(())
            .expect("a response");
        let written =
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 612\r\n\r\n";
        assert_eq!(response_head_len(&response), written.len());
    }
}
