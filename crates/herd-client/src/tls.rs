//! The TLS layer under ureq: a connector that wraps every connection of one [`Client`] in the
//! same rustls `ClientConfig`, and a transport that still reads the center's answer when the
//! center closes the connection while a request body is being sent.
//!
//! Why not ureq's own rustls connector: it builds its `ClientConfig` lazily and caches it only
//! for requests without request-level settings; a package transfer (which replaces the overall
//! deadline by a stall timeout) made before any other request got a fresh config, and with it
//! an empty session cache. Here the config is built once per client (per identity), so every
//! connection after the first resumes the TLS session from the config's in-memory cache — an
//! agent reconnecting at each check-in skips the full handshake and certificate checks.
//! And ureq gives up on a request whose body cannot be written, never reading the 413 the
//! center sent before closing; this transport records the failed write and lets ureq go on to
//! read the answer (see [`SendBroken`]).
//!
//! Built on ureq's `unversioned` transport API, which is outside its semver promise: a ureq
//! upgrade may need this file adjusted (Cargo.lock pins the version).
//!
//! [`Client`]: crate::Client

use std::cell::Cell;
use std::fmt;
use std::io::{self, Read as _, Write as _};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, Transport,
    TransportAdapter,
};

/// Wraps TCP connections to `https://` URLs in TLS with one shared config.
pub(crate) struct TlsConnector {
    pub(crate) config: Arc<ClientConfig>,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector").finish_non_exhaustive()
    }
}

impl<In: Transport> Connector<In> for TlsConnector {
    type Out = Either<In, TlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Ok(None);
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let host = details
            .uri
            .authority()
            .map(|authority| authority.host())
            .unwrap_or_default();
        // An IPv6 literal comes bracketed in a URL, never in a server name.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| ureq::Error::Tls("the server's host name cannot be used for TLS"))?;
        let mut conn = ClientConnection::new(self.config.clone(), name)?;
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        sock.set_timeout(details.timeout);
        while conn.is_handshaking() {
            conn.complete_io(&mut sock).map_err(handshake_error)?;
        }
        let buffers = LazyBuffers::new(
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        Ok(Some(Either::B(TlsTransport {
            buffers,
            conn,
            sock,
            send_broken: None,
        })))
    }
}

/// rustls reports a failed handshake as an I/O error wrapping its own; unwrapped, the caller
/// can tell a certificate problem from a network one by type.
fn handshake_error(err: io::Error) -> ureq::Error {
    match err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(tls) => ureq::Error::Rustls(tls.clone()),
        None => err.into(),
    }
}

pub(crate) struct TlsTransport {
    buffers: LazyBuffers,
    conn: ClientConnection,
    sock: TransportAdapter,
    /// Set when writing the request failed because the peer closed or reset the connection;
    /// from then on output is dropped and only the answer is read.
    send_broken: Option<io::Error>,
}

impl fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTransport")
            .field("send_broken", &self.send_broken)
            .finish_non_exhaustive()
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        if self.send_broken.is_some() {
            // The center stopped listening; what it answered before closing is what counts.
            return Ok(());
        }
        self.sock.set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        match rustls::Stream::new(&mut self.conn, &mut self.sock).write_all(output) {
            Ok(()) => Ok(()),
            Err(err) if is_closed_by_peer(&err) => {
                SEND_BROKEN_HERE.set(true);
                self.send_broken = Some(err);
                Ok(())
            }
            Err(err) => Err(err.into()),
        }
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.sock.set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let read = match &self.send_broken {
            None => rustls::Stream::new(&mut self.conn, &mut self.sock).read(input),
            Some(_) => read_without_writing(&mut self.conn, &mut self.sock, input),
        };
        match (read, self.send_broken.take()) {
            (Ok(n), broken) if n > 0 => {
                self.send_broken = broken;
                self.buffers.input_appended(n);
                Ok(true)
            }
            (Ok(_), None) => Ok(false),
            (Err(err), None) => Err(err.into()),
            // No (further) answer after a failed write: report the write, not the read.
            (Ok(_), Some(write)) => Err(SendBroken::error(write, None)),
            (Err(read), Some(write)) => Err(SendBroken::error(write, Some(read))),
        }
    }

    fn is_open(&mut self) -> bool {
        self.send_broken.is_none() && self.sock.get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

/// Reads application data without ever writing: after a failed write rustls still holds the
/// unsent records, and a normal read would try to flush them first and fail again.
fn read_without_writing(
    conn: &mut ClientConnection,
    sock: &mut TransportAdapter,
    buf: &mut [u8],
) -> io::Result<usize> {
    loop {
        match conn.reader().read(buf) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            done => return done,
        }
        conn.read_tls(sock)?;
        conn.process_new_packets()
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
    }
}

fn is_closed_by_peer(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

thread_local! {
    /// Set when a transport on this thread failed to write because the peer closed the
    /// connection. ureq runs a request on the caller's thread, so the client, which clears it
    /// before each request, learns from it when to stop counting the body as sent (ureq goes on
    /// reading the body, dropped unsent, after the transport hid the failure).
    static SEND_BROKEN_HERE: Cell<bool> = const { Cell::new(false) };
}

/// Forgets an earlier request's failed write (see [`SEND_BROKEN_HERE`]).
pub(crate) fn clear_send_broken() {
    SEND_BROKEN_HERE.set(false);
}

/// Whether a write of the current request failed because the peer closed the connection.
pub(crate) fn send_broken() -> bool {
    SEND_BROKEN_HERE.get()
}

/// The peer closed the connection while the request was being written, and no answer could
/// be read afterwards. Travels through ureq inside an [`io::Error`] and is recognised by type.
#[derive(Debug)]
pub(crate) struct SendBroken {
    pub(crate) write: io::Error,
    pub(crate) read: Option<io::Error>,
}

impl SendBroken {
    fn error(write: io::Error, read: Option<io::Error>) -> ureq::Error {
        let kind = write.kind();
        ureq::Error::Io(io::Error::new(kind, SendBroken { write, read }))
    }
}

impl fmt::Display for SendBroken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "writing failed: {}", self.write)?;
        match &self.read {
            Some(read) => write!(f, "; no answer could be read: {read}"),
            None => write!(f, "; the connection ended without an answer"),
        }
    }
}

impl std::error::Error for SendBroken {}
