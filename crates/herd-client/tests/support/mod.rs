//! A scripted HTTPS server on loopback for the client's tests: the center's TLS setup (a CA
//! from herd-tls, client certificates optional but verified), HTTP/1.1 keep-alive, and a
//! handler that decides each answer, including answers that break off mid-body.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use herd_tls::{CertificateAuthority, KeyPairPem};
use rustls::{ServerConnection, StreamOwned};

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
    /// `Head` when the client sent `Expect: 100-continue` and the body is not read yet.
    pub phase: Phase,
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
    /// Only valid in `Phase::Head`: send `100 Continue` and read the body.
    Continue,
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
                        serve_connection(StreamOwned::new(conn, stream), &*handler, &seen);
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
        let mut request = Seen {
            method,
            target,
            headers,
            body: Vec::new(),
            terminal,
            phase: Phase::Full,
        };
        assert!(
            request.header("transfer-encoding").is_none(),
            "the test server only reads bodies with Content-Length"
        );
        if request.header("expect") == Some("100-continue") {
            request.phase = Phase::Head;
            match handler(&request) {
                Reply::Continue => {
                    let stream = reader.get_mut();
                    stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
                    stream.flush().unwrap();
                    request.phase = Phase::Full;
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
        Reply::Continue => panic!("Reply::Continue answers only an Expect: 100-continue head"),
    };
    let mut head = format!("HTTP/1.1 {status} Test\r\ncontent-length: {declared}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;
    stream.flush()?;
    if !keep {
        // Drop the TCP connection without a TLS close_notify, like a network failure.
        stream.sock.shutdown(std::net::Shutdown::Both)?;
    }
    Ok(keep)
}
