//! The listeners: HTTPS with optional client certificates (terminals present theirs; vendors
//! and operators use tokens), and an optional plaintext listener on loopback. Each connection
//! learns once who is on the other end ([`ConnInfo`]) and hands it to every request on it.
//! Shutdown stops accepting, lets requests in flight finish, then closes keep-alive
//! connections. Site servers reuse it as it is: it knows the router it serves, not the center.
//!
//! It also bounds what one client can make it spend ([`Limits`]): connections beyond the cap
//! are closed as they are accepted, and a connection is closed when its TLS handshake, the
//! headers of a request, or the wait for the next request take too long; a request body that
//! stops arriving fails the request (`request_timeout`) and closes the connection.

use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt as _;

use crate::PeerIdentity;
use crate::metrics::Metrics;

/// Who is on the other end of a connection, attached to each of its requests.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    /// The verified client certificate, if the client presented one.
    pub peer: Option<Arc<PeerIdentity>>,
}

pub use crate::config::Limits;

/// Bytes per second a body must average once `body_timeout` has passed: each byte received
/// moves the deadline on, so a large upload on a working link is never cut, and a body trickled
/// a byte at a time (slowloris) is cut soon after `body_timeout`. 1 KiB/s is slower than any
/// link a terminal or vendor is expected to use.
pub const MIN_BODY_RATE: u64 = 1024;

const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` turns true. With `tls` absent the listener is
/// plaintext (the caller has checked it is loopback).
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    metrics: Arc<Metrics>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(
        limits.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        // Refused before any TLS work: past the cap, a connection costs one accept and a close.
        // No error body is sent, since over TLS that would take the handshake the cap saves.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.connections_refused.fetch_add(1, Relaxed);
            tracing::debug!(%remote, "connection refused: max_connections reached");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let metrics = metrics.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            metrics.connections_open.fetch_add(1, Relaxed);
            let clock = Arc::new(Clock::new());
            let tcp = Tracked {
                inner: tcp,
                clock: clock.clone(),
            };
            let conn = Conn {
                app,
                watcher,
                clock,
                limits,
                metrics: metrics.clone(),
            };
            match tls {
                None => {
                    let info = ConnInfo { remote, peer: None };
                    conn.serve(TokioIo::new(tcp), info).await;
                }
                Some(acceptor) => {
                    match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await
                    {
                        Ok(Ok(stream)) => {
                            // The handshake's own reads are not a request's headers: the
                            // connection now waits for its first request.
                            conn.clock.reset();
                            let peer = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .map(|cert| {
                                    Arc::new(PeerIdentity {
                                        sha256: herd_tls::cert_sha256_hex(cert.as_ref()),
                                        terminal: herd_tls::terminal_id_of(cert.as_ref()),
                                        site: herd_tls::site_id_of(cert.as_ref()),
                                        center: herd_tls::is_center_cert(cert.as_ref()),
                                    })
                                });
                            let info = ConnInfo { remote, peer };
                            conn.serve(TokioIo::new(stream), info).await;
                        }
                        Ok(Err(err)) => {
                            metrics.tls_handshake_failures.fetch_add(1, Relaxed);
                            tracing::debug!(%remote, %err, "TLS handshake failed");
                        }
                        Err(_) => {
                            metrics.tls_handshake_failures.fetch_add(1, Relaxed);
                            metrics.connections_timed_out.fetch_add(1, Relaxed);
                            tracing::debug!(%remote, "TLS handshake timed out");
                        }
                    }
                }
            }
            metrics.connections_open.fetch_sub(1, Relaxed);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within {DRAIN_TIMEOUT:?}; closing them");
    }
}

/// What serving one connection needs.
struct Conn {
    app: Router,
    watcher: Watcher,
    clock: Arc<Clock>,
    limits: Limits,
    metrics: Arc<Metrics>,
}

impl Conn {
    /// Serves HTTP/1.1 on `io` until the client closes, shutdown, or a deadline of the
    /// connection's [`Clock`] passes (then the connection is dropped, closing the socket).
    async fn serve<I>(self, io: I, info: ConnInfo)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let Conn {
            app,
            watcher,
            clock,
            limits,
            metrics,
        } = self;
        let service_clock = clock.clone();
        let service_metrics = metrics.clone();
        let service = tower::service_fn(move |request: hyper::Request<Incoming>| {
            let (mut parts, body) = request.into_parts();
            parts.extensions.insert(info.clone());
            let body = TimedBody::new(body, limits.body_timeout, service_metrics.clone());
            let request = hyper::Request::from_parts(parts, axum::body::Body::new(body));
            let guard = service_clock.request_started();
            let response = app.clone().oneshot(request);
            async move {
                let response = response.await;
                drop(guard);
                response
            }
        });
        // hyper's own header timer also runs while a keep-alive connection waits, so it is set
        // to the longer of the two bounds as a backstop; the clock enforces each one.
        let connection = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(limits.idle_timeout.max(limits.header_timeout))
            .serve_connection(io, TowerToHyperService::new(service));
        let mut watched = pin!(watcher.watch(connection));
        loop {
            let deadline = clock.deadline(&limits);
            tokio::select! {
                result = &mut watched => {
                    if let Err(err) = result {
                        tracing::debug!(%err, "connection ended with an error");
                    }
                    return;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if clock.deadline(&limits) <= Instant::now() {
                        metrics.connections_timed_out.fetch_add(1, Relaxed);
                        tracing::debug!("connection closed: headers or the next request took too long");
                        return;
                    }
                }
                _ = clock.changed.notified() => {}
            }
        }
    }
}

/// When a connection last did something, and whether a request is being read or served: from
/// which the time it may be closed follows.
struct Clock {
    state: Mutex<ClockState>,
    /// Woken when the deadline moves earlier (a request's first byte arrives).
    changed: Notify,
}

struct ClockState {
    /// Requests handed to the router and not yet answered.
    in_flight: u32,
    /// The last read or write: a streamed response keeps its connection alive.
    last_activity: Instant,
    /// The first byte read while no request was in flight: a request's headers have begun.
    head_started: Option<Instant>,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            state: Mutex::new(ClockState {
                in_flight: 0,
                last_activity: Instant::now(),
                head_started: None,
            }),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ClockState> {
        // The state is a few plain values, valid after any panic.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn read(&self) {
        let now = Instant::now();
        let mut state = self.state();
        state.last_activity = now;
        if state.in_flight == 0 && state.head_started.is_none() {
            state.head_started = Some(now);
            drop(state);
            self.changed.notify_one();
        }
    }

    fn reset(&self) {
        let mut state = self.state();
        state.last_activity = Instant::now();
        state.head_started = None;
    }

    fn wrote(&self) {
        self.state().last_activity = Instant::now();
    }

    /// Marks a request as in flight until the guard is dropped (when it is answered).
    fn request_started(self: &Arc<Clock>) -> InFlight {
        let mut state = self.state();
        state.in_flight += 1;
        state.head_started = None;
        InFlight(self.clone())
    }

    /// When the connection may be closed. While a request is in flight its own bounds (the
    /// body's) apply, so the connection's deadline is only re-checked after `idle_timeout`.
    fn deadline(&self, limits: &Limits) -> Instant {
        let state = self.state();
        if state.in_flight > 0 {
            return Instant::now() + limits.idle_timeout;
        }
        match state.head_started {
            Some(started) => started + limits.header_timeout,
            None => state.last_activity + limits.idle_timeout,
        }
    }
}

struct InFlight(Arc<Clock>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.in_flight -= 1;
        state.last_activity = Instant::now();
    }
}

/// A socket that tells its [`Clock`] about reads and writes.
struct Tracked<T> {
    inner: T,
    clock: Arc<Clock>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.clock.read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The error a request body gives when it arrives too slowly; `extract::read_body` answers it
/// with `request_timeout`.
#[derive(Debug, thiserror::Error)]
#[error(
    "the request body arrived too slowly (body_timeout_secs, then at least {MIN_BODY_RATE} bytes per second)"
)]
pub struct BodyTimedOut;

/// A request body with a deadline that each byte received moves on by `1 / MIN_BODY_RATE`
/// seconds.
struct TimedBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    metrics: Arc<Metrics>,
    timed_out: bool,
}

impl TimedBody {
    fn new(inner: Incoming, timeout: Duration, metrics: Arc<Metrics>) -> TimedBody {
        TimedBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            metrics,
            timed_out: false,
        }
    }
}

impl hyper::body::Body for TimedBody {
    type Data = hyper::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        if self.timed_out {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let more = Duration::from_secs_f64(data.len() as f64 / MIN_BODY_RATE as f64);
                    let next = self.deadline.deadline() + more;
                    self.deadline.as_mut().reset(next);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if self.deadline.as_mut().poll(cx).is_ready() {
                    self.timed_out = true;
                    self.metrics.bodies_timed_out.fetch_add(1, Relaxed);
                    return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;

    /// A plaintext listener with `limits` serving a greeting and a body reader; its address,
    /// its metrics, and the sender that stops it.
    async fn start(limits: Limits) -> (SocketAddr, Arc<Metrics>, watch::Sender<bool>) {
        start_with(limits, None).await
    }

    async fn start_with(
        limits: Limits,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> (SocketAddr, Arc<Metrics>, watch::Sender<bool>) {
        let app = Router::new()
            .route("/hello", get(|| async { "hello" }))
            .route(
                "/body",
                post(|body: axum::body::Body| async move {
                    super::super::extract::read_body(body, 1 << 20, "the body")
                        .await
                        .map(|bytes| bytes.len().to_string())
                }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::default());
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(serve(listener, tls, app, metrics.clone(), limits, stopped));
        (addr, metrics, stop)
    }

    /// Sends a keep-alive GET on `stream` and returns the start of the answer.
    async fn hello(stream: &mut TcpStream) -> String {
        stream
            .write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Reads until the server closes the connection; how long that took, and what was read.
    async fn until_closed(stream: &mut TcpStream, within: Duration) -> (Duration, String) {
        let started = std::time::Instant::now();
        let mut read = Vec::new();
        let outcome = tokio::time::timeout(within, async {
            let mut buf = [0u8; 4096];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => read.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        assert!(outcome.is_ok(), "still open after {within:?}");
        (
            started.elapsed(),
            String::from_utf8_lossy(&read).into_owned(),
        )
    }

    /// Bounds short enough for a test, each of which overrides the one it shows.
    fn short() -> Limits {
        Limits {
            max_connections: 100,
            handshake_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_are_refused_while_the_others_still_work() {
        let limits = Limits {
            max_connections: 2,
            ..short()
        };
        let (addr, metrics, _stop) = start(limits).await;
        let mut first = TcpStream::connect(addr).await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        assert!(hello(&mut first).await.starts_with("HTTP/1.1 200"));
        assert!(hello(&mut second).await.starts_with("HTTP/1.1 200"));

        let mut third = TcpStream::connect(addr).await.unwrap();
        let _ = third
            .write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n")
            .await;
        let (_, answer) = until_closed(&mut third, Duration::from_secs(5)).await;
        assert_eq!(
            answer, "",
            "the connection over the cap is closed unanswered"
        );
        assert_eq!(metrics.connections_refused.load(Relaxed), 1);
        assert!(
            metrics
                .render()
                .contains("herd_connections_refused_total 1")
        );

        assert!(hello(&mut first).await.starts_with("HTTP/1.1 200"));
        assert!(hello(&mut second).await.starts_with("HTTP/1.1 200"));
        // A slot freed is a slot taken again.
        drop(first);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut fourth = TcpStream::connect(addr).await.unwrap();
        assert!(hello(&mut fourth).await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn a_client_that_sends_nothing_is_disconnected_after_the_idle_bound() {
        let limits = Limits {
            idle_timeout: Duration::from_millis(300),
            ..short()
        };
        let (addr, metrics, _stop) = start(limits).await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let (took, _) = until_closed(&mut silent, Duration::from_secs(3)).await;
        assert!(took >= Duration::from_millis(250), "{took:?}");

        // The same bound closes a keep-alive connection idle after its answer.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        assert!(hello(&mut idle).await.starts_with("HTTP/1.1 200"));
        until_closed(&mut idle, Duration::from_secs(3)).await;
        assert_eq!(metrics.connections_timed_out.load(Relaxed), 2);
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_tls_handshake_is_disconnected() {
        herd_tls::install_crypto_provider();
        let (cert, key) = herd_tls::CertificateAuthority::generate("test").unwrap();
        let ca = herd_tls::CertificateAuthority::from_pem(&cert, &key).unwrap();
        let server = ca.issue_server(&["127.0.0.1".to_owned()]).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(&server).unwrap());
        let limits = Limits {
            handshake_timeout: Duration::from_millis(300),
            ..short()
        };
        let (addr, metrics, _stop) = start_with(limits, Some(acceptor)).await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let (took, _) = until_closed(&mut silent, Duration::from_secs(3)).await;
        assert!(took >= Duration::from_millis(250), "{took:?}");
        assert_eq!(metrics.connections_timed_out.load(Relaxed), 1);
        assert_eq!(metrics.tls_handshake_failures.load(Relaxed), 1);
    }

    #[tokio::test]
    async fn a_client_that_trickles_its_headers_is_cut() {
        let limits = Limits {
            header_timeout: Duration::from_millis(400),
            ..short()
        };
        let (addr, metrics, _stop) = start(limits).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /hello HTTP/1.1\r\n").await.unwrap();
        let trickle = async {
            // A byte every 100 ms: each keeps the connection busy, none finishes the headers.
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if slow.write_all(b"x").await.is_err() {
                    break;
                }
            }
        };
        let closed = tokio::time::timeout(Duration::from_secs(4), trickle).await;
        assert!(closed.is_ok(), "the connection was never cut");
        assert_eq!(metrics.connections_timed_out.load(Relaxed), 1);
    }

    #[tokio::test]
    async fn a_client_that_trickles_its_body_is_answered_request_timeout_and_cut() {
        let limits = Limits {
            body_timeout: Duration::from_millis(300),
            ..short()
        };
        let (addr, metrics, _stop) = start(limits).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(
            b"POST /body HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 10000\r\n\r\n{",
        )
        .await
        .unwrap();
        let (reader, mut writer) = slow.split();
        let trickle = async {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if writer.write_all(b" ").await.is_err() {
                    break;
                }
            }
        };
        let mut reader = reader;
        let answer = async {
            let mut read = Vec::new();
            let _ = reader.read_to_end(&mut read).await;
            String::from_utf8_lossy(&read).into_owned()
        };
        let answer = tokio::time::timeout(Duration::from_secs(4), async {
            tokio::select! {
                answer = answer => answer,
                _ = trickle => String::new(),
            }
        })
        .await
        .expect("the slow body is cut");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
        assert_eq!(metrics.bodies_timed_out.load(Relaxed), 1);
    }
}
