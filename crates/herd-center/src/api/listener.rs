//! The listeners: HTTPS with optional client certificates (terminals present theirs; vendors
//! and operators use tokens), and an optional plaintext listener on loopback. Each connection
//! learns once who is on the other end ([`ConnInfo`]) and hands it to every request on it.
//! Shutdown stops accepting, lets requests in flight finish, then closes keep-alive
//! connections. Site servers reuse it as it is: it knows the router it serves, not the center.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
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

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` turns true. With `tls` absent the listener is
/// plaintext (the caller has checked it is loopback).
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
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
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let metrics = metrics.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            metrics.connections_open.fetch_add(1, Relaxed);
            match tls {
                None => {
                    let info = ConnInfo { remote, peer: None };
                    serve_connection(TokioIo::new(tcp), info, app, watcher).await;
                }
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let peer = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .map(|cert| {
                                    Arc::new(PeerIdentity {
                                        sha256: herd_tls::cert_sha256_hex(cert.as_ref()),
                                        terminal: herd_tls::terminal_id_of(cert.as_ref()),
                                    })
                                });
                            let info = ConnInfo { remote, peer };
                            serve_connection(TokioIo::new(stream), info, app, watcher).await;
                        }
                        Ok(Err(err)) => {
                            metrics.tls_handshake_failures.fetch_add(1, Relaxed);
                            tracing::debug!(%remote, %err, "TLS handshake failed");
                        }
                        Err(_) => {
                            metrics.tls_handshake_failures.fetch_add(1, Relaxed);
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

async fn serve_connection<I>(io: I, info: ConnInfo, app: Router, watcher: Watcher)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = tower::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(info.clone());
        app.clone().oneshot(request)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(io, TowerToHyperService::new(service));
    let watched = watcher.watch(connection);
    if let Err(err) = watched.await {
        tracing::debug!(%err, "connection ended with an error");
    }
}
