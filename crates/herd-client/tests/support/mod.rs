//! A scripted HTTPS server on loopback for the client's tests: the center's TLS setup (a CA
//! from herd-tls, client certificates optional but verified, sessions resumable), HTTP/1.1
//! keep-alive, and a handler that decides each answer, including answers that break off
//! mid-body, answers that close the connection, and answers given before the body is read.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use herd_tls::{CertificateAuthority, KeyPairPem};
use rustls::{HandshakeKind, ServerConnection, StreamOwned};

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Header names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The terminal id in the client certificate, if one was presented.
    pub terminal: Option<String>,
    /// `Head` when the body is not read yet: the client sent `Expect: 100-continue`, or the
    /// server was started with [`TestServer::start_answering_early`].
    pub phase: Phase,
    /// The TLS session of the connection carrying this request was resumed (no full handshake).
    pub resumed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Head,
    Full,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the server answers.
pub enum Reply {
    /// A complete answer.
    Full {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    /// Announces `declared` bytes, sends `body` (fewer), and closes the connection.
    BrokenOff {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        declared: u64,
    },
    /// Only valid in `Phase::Head`: read the body (after `100 Continue` if it was asked for).
    Continue,
    /// A complete answer, then the connection is closed (TLS close_notify, TCP shutdown).
    Close { status: u16, body: Vec<u8> },
    /// Drop the TCP connection at once without answering: a reset when the client is sending.
    Abort,
}

impl Reply {
    pub fn json(status: u16, body: &str) -> Reply {
        Reply::Full {
            status,
            headers: vec![("content-type", "application/json".to_owned())],
            body: body.as_bytes().to_vec(),
        }
    }
}

type Handler = dyn Fn(&Seen) -> Reply + Send + Sync;

pub struct TestServer {
    pub url: String,
    pub ca_pem: String,
    ca: CertificateAuthority,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl TestServer {
    /// Starts serving on an ephemeral loopback port; the server lives until the test ends.
    pub fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> TestServer {
        TestServer::serve(false, handler)
    }

    /// Like [`start`](Self::start), but the handler also sees every request with a body in
    /// `Phase::Head`, after its headers and before its body, and may answer there (the body is
    /// then never read) or return `Reply::Continue` to have the body read.
    pub fn start_answering_early(
        handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> TestServer {
        TestServer::serve(true, handler)
    }

    fn serve(early: bool, handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> TestServer {
        herd_tls::install_crypto_provider();
        let (ca_cert, ca_key) = CertificateAuthority::generate("test center CA").unwrap();
        let ca = CertificateAuthority::from_pem(&ca_cert, &ca_key).unwrap();
        let server_cert = ca.issue_server(&["127.0.0.1".to_owned()]).unwrap();
        let config = ca.server_config(&server_cert).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        {
            let seen = seen.clone();
            thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let config = config.clone();
                    let seen = seen.clone();
                    let handler = handler.clone();
                    thread::spawn(move || {
                        let conn = ServerConnection::new(config).unwrap();
                        serve_connection(StreamOwned::new(conn, stream), &*handler, &seen, early);
                    });
                }
            });
        }
        TestServer {
            url: format!("https://{addr}"),
            ca_pem: ca_cert,
            ca,
            seen,
        }
    }

    /// Every request seen so far (each `Expect: 100-continue` request once, complete).
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// A terminal identity issued by this server's CA.
    pub fn terminal_identity(&self, id: &str) -> KeyPairPem {
        let (key_pem, csr_pem) = herd_tls::new_key_and_csr(id).unwrap();
        let issued = self.ca.sign_terminal_csr(&csr_pem, id, 1).unwrap();
        KeyPairPem {
            cert_pem: issued.cert_pem,
            key_pem,
        }
    }
}

fn serve_connection(
    stream: StreamOwned<ServerConnection, TcpStream>,
    handler: &Handler,
    seen: &Mutex<Vec<Seen>>,
    early: bool,
) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').expect("a header line");
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        let terminal = reader
            .get_ref()
            .conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|cert| herd_tls::terminal_id_of(cert));
        let resumed = reader.get_ref().conn.handshake_kind() == Some(HandshakeKind::Resumed);
        let mut request = Seen {
            method,
            target,
            headers,
            body: Vec::new(),
            terminal,
            phase: Phase::Full,
            resumed,
        };
        assert!(
            request.header("transfer-encoding").is_none(),
            "the test server only reads bodies with Content-Length"
        );
        let expects_continue = request.header("expect") == Some("100-continue");
        let has_body = request.header("content-length").is_some_and(|v| v != "0");
        if expects_continue || (early && has_body) {
            request.phase = Phase::Head;
            match handler(&request) {
                Reply::Continue => {
                    if expects_continue {
                        let stream = reader.get_mut();
                        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
                        stream.flush().unwrap();
                    }
                    request.phase = Phase::Full;
                }
                Reply::Abort => {
                    seen.lock().unwrap().push(request);
                    abort(reader.into_inner());
                    return;
                }
                early => {
                    seen.lock().unwrap().push(request);
                    // The body was not read, so the connection cannot carry another request:
                    // answer and close it cleanly, as hyper does (TLS close_notify first).
                    let stream = reader.get_mut();
                    let _ = write_reply(stream, early);
                    stream.conn.send_close_notify();
                    let _ = stream.flush();
                    return;
                }
            }
        }
        let length: usize = request
            .header("content-length")
            .map(|v| v.parse().expect("a numeric Content-Length"))
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        request.body = body;
        let reply = handler(&request);
        seen.lock().unwrap().push(request);
        if let Reply::Abort = reply {
            abort(reader.into_inner());
            return;
        }
        match write_reply(reader.get_mut(), reply) {
            Ok(true) => {}
            Ok(false) | Err(_) => return,
        }
    }
}

/// Writes a reply; `Ok(false)` when the connection must close afterwards.
fn write_reply(
    stream: &mut StreamOwned<ServerConnection, TcpStream>,
    reply: Reply,
) -> std::io::Result<bool> {
    let closing = matches!(reply, Reply::Close { .. });
    let (status, headers, body, declared, keep) = match reply {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let len = body.len() as u64;
            (status, headers, body, len, true)
        }
        Reply::BrokenOff {
            status,
            headers,
            body,
            declared,
        } => (status, headers, body, declared, false),
        Reply::Close { status, body } => {
            let len = body.len() as u64;
            (
                status,
                vec![("connection", "close".to_owned())],
                body,
                len,
                false,
            )
        }
        Reply::Continue => panic!("Reply::Continue answers only a request in Phase::Head"),
        Reply::Abort => unreachable!("handled by the caller"),
    };
    let mut head = format!("HTTP/1.1 {status} Test\r\ncontent-length: {declared}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;
    stream.flush()?;
    if closing {
        stream.conn.send_close_notify();
        stream.flush()?;
        stream.sock.shutdown(std::net::Shutdown::Both)?;
        return Ok(false);
    }
    if !keep {
        // Drop the TCP connection without a TLS close_notify, like a network failure.
        stream.sock.shutdown(std::net::Shutdown::Both)?;
    }
    Ok(keep)
}

/// Closes the connection without TLS close_notify or answer. The client is still sending, so
/// unread bytes remain and the kernel answers with a reset, as when a server gives up on a body.
fn abort(stream: StreamOwned<ServerConnection, TcpStream>) {
    drop(stream);
}
