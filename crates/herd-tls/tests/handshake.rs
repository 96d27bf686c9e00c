//! Real TLS handshakes over loopback TCP with rustls' blocking streams: which client and server
//! certificates the configs from herd-tls accept, and what the server learns about the peer.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime};

use herd_tls::{
    CertificateAuthority, KeyPairPem, cert_der_from_pem, cert_sha256_hex, client_config,
    install_crypto_provider, new_key_and_csr, terminal_id_of,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::{CertificateError, ClientConfig, ClientConnection, ServerConfig, ServerConnection};

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server side of a completed handshake saw.
#[derive(Debug)]
struct ServerSaw {
    peer_cert: Option<Vec<u8>>,
    alpn: Option<Vec<u8>>,
    version: Option<rustls::ProtocolVersion>,
}

/// Runs one connection: the server completes the handshake, reads `ping`, answers `pong`;
/// the client sends `ping` and reads the answer. Returns both sides' outcomes.
fn exchange(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    server_name: &str,
) -> (Result<ServerSaw, io::Error>, Result<(), io::Error>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let server_side = thread::spawn(move || -> Result<ServerSaw, io::Error> {
        let (sock, _) = listener.accept()?;
        sock.set_read_timeout(Some(IO_TIMEOUT))?;
        sock.set_write_timeout(Some(IO_TIMEOUT))?;
        let conn = ServerConnection::new(server).map_err(io::Error::other)?;
        let mut tls = rustls::StreamOwned::new(conn, sock);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        let saw = ServerSaw {
            peer_cert: tls
                .conn
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|cert| cert.to_vec()),
            alpn: tls.conn.alpn_protocol().map(<[u8]>::to_vec),
            version: tls.conn.protocol_version(),
        };
        let mut ping = [0u8; 5];
        tls.read_exact(&mut ping)?;
        assert_eq!(&ping, b"ping\n");
        tls.write_all(b"pong\n")?;
        tls.flush()?;
        tls.conn.send_close_notify();
        let _ = tls.conn.complete_io(&mut tls.sock);
        Ok(saw)
    });

    let client_side = (|| -> Result<(), io::Error> {
        let name = ServerName::try_from(server_name.to_owned()).map_err(io::Error::other)?;
        let sock = TcpStream::connect(addr)?;
        sock.set_read_timeout(Some(IO_TIMEOUT))?;
        sock.set_write_timeout(Some(IO_TIMEOUT))?;
        let conn = ClientConnection::new(client, name).map_err(io::Error::other)?;
        let mut tls = rustls::StreamOwned::new(conn, sock);
        tls.write_all(b"ping\n")?;
        tls.flush()?;
        let mut pong = [0u8; 5];
        tls.read_exact(&mut pong)?;
        assert_eq!(&pong, b"pong\n");
        Ok(())
    })();
    let server_result = server_side.join().expect("server thread does not panic");
    (server_result, client_side)
}

/// The rustls error inside an I/O error from a TLS stream.
fn tls_error(err: &io::Error) -> &rustls::Error {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .unwrap_or_else(|| panic!("not a TLS error: {err:?}"))
}

fn certificate_error(err: &io::Error) -> &CertificateError {
    match tls_error(err) {
        rustls::Error::InvalidCertificate(e) => e,
        other => panic!("not a certificate error: {other:?}"),
    }
}

struct Pki {
    ca: CertificateAuthority,
    server: KeyPairPem,
}

fn pki(name: &str) -> Pki {
    install_crypto_provider();
    let (cert, key) = CertificateAuthority::generate(name).expect("CA generates");
    let ca = CertificateAuthority::from_pem(&cert, &key).expect("CA loads");
    let server = ca
        .issue_server(&["localhost".into(), "127.0.0.1".into()])
        .expect("server certificate");
    Pki { ca, server }
}

/// A terminal identity from `ca`: key and CSR made "on the terminal", signed "by the center".
fn terminal(ca: &CertificateAuthority, id: &str) -> KeyPairPem {
    let (key_pem, csr_pem) = new_key_and_csr(id).expect("key and CSR");
    let issued = ca.sign_terminal_csr(&csr_pem, id, 30).expect("CSR signed");
    KeyPairPem {
        cert_pem: issued.cert_pem,
        key_pem,
    }
}

#[test]
fn a_terminal_certificate_identifies_the_terminal_to_the_server() {
    let pki = pki("Herd CA");
    let (key_pem, csr_pem) = new_key_and_csr("45a").unwrap();
    let issued = pki.ca.sign_terminal_csr(&csr_pem, "45a", 30).unwrap();
    let identity = KeyPairPem {
        cert_pem: issued.cert_pem.clone(),
        key_pem,
    };
    let (server, client) = exchange(
        pki.ca.server_config(&pki.server).unwrap(),
        client_config(pki.ca.trust_pem(), Some(&identity)).unwrap(),
        "localhost",
    );
    client.expect("client completes");
    let saw = server.expect("server completes");
    let peer = saw
        .peer_cert
        .expect("the server sees the client certificate");
    assert_eq!(terminal_id_of(&peer).as_deref(), Some("45a"));
    assert_eq!(cert_sha256_hex(&peer), issued.cert_sha256);
    assert_eq!(peer, cert_der_from_pem(&issued.cert_pem).unwrap());
    assert_eq!(saw.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(saw.version, Some(rustls::ProtocolVersion::TLSv1_3));
}

#[test]
fn a_client_without_a_certificate_connects_anonymously() {
    let pki = pki("Herd CA");
    let (server, client) = exchange(
        pki.ca.server_config(&pki.server).unwrap(),
        client_config(pki.ca.trust_pem(), None).unwrap(),
        "127.0.0.1",
    );
    client.expect("client completes");
    let saw = server.expect("server completes");
    assert!(saw.peer_cert.is_none(), "no peer certificate: {saw:?}");
}

#[test]
fn a_client_certificate_from_another_ca_is_refused() {
    let ours = pki("Herd CA");
    let theirs = pki("Someone else's CA");
    let stranger = terminal(&theirs.ca, "45a");
    let (server, client) = exchange(
        ours.ca.server_config(&ours.server).unwrap(),
        client_config(ours.ca.trust_pem(), Some(&stranger)).unwrap(),
        "localhost",
    );
    let server_err = server.expect_err("the server refuses the handshake");
    assert_eq!(
        certificate_error(&server_err),
        &CertificateError::UnknownIssuer
    );
    let client_err = client.expect_err("the client learns it was refused");
    assert!(
        matches!(tls_error(&client_err), rustls::Error::AlertReceived(_)),
        "{client_err:?}"
    );
}

#[test]
fn an_expired_terminal_certificate_is_refused() {
    let pki = pki("Herd CA");
    let (key_pem, csr_pem) = new_key_and_csr("45a").unwrap();
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    let issued = pki
        .ca
        .sign_terminal_csr_between(&csr_pem, "45a", now - day * 10, now - day)
        .unwrap();
    let expired = KeyPairPem {
        cert_pem: issued.cert_pem,
        key_pem,
    };
    let (server, client) = exchange(
        pki.ca.server_config(&pki.server).unwrap(),
        client_config(pki.ca.trust_pem(), Some(&expired)).unwrap(),
        "localhost",
    );
    let server_err = server.expect_err("the server refuses an expired certificate");
    assert!(
        matches!(
            certificate_error(&server_err),
            CertificateError::Expired | CertificateError::ExpiredContext { .. }
        ),
        "{server_err:?}"
    );
    assert!(client.is_err());
}

#[test]
fn a_server_certificate_cannot_serve_as_a_client_certificate() {
    let pki = pki("Herd CA");
    let (server, client) = exchange(
        pki.ca.server_config(&pki.server).unwrap(),
        client_config(pki.ca.trust_pem(), Some(&pki.server)).unwrap(),
        "localhost",
    );
    let server_err = server.expect_err("serverAuth-only certificate refused as a client's");
    assert!(
        matches!(
            certificate_error(&server_err),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. }
        ),
        "{server_err:?}"
    );
    assert!(client.is_err());
}

#[test]
fn a_terminal_certificate_cannot_serve_as_a_server_certificate() {
    let pki = pki("Herd CA");
    let impostor = terminal(&pki.ca, "45a");
    let (server, client) = exchange(
        pki.ca.server_config(&impostor).unwrap(),
        client_config(pki.ca.trust_pem(), None).unwrap(),
        "localhost",
    );
    let client_err = client.expect_err("the client refuses a clientAuth-only server certificate");
    // The chain is checked for the serverAuth purpose before the name is looked at.
    assert!(
        matches!(
            certificate_error(&client_err),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. }
        ),
        "{client_err:?}"
    );
    assert!(server.is_err());
}

#[test]
fn the_client_refuses_a_server_from_another_ca() {
    let ours = pki("Herd CA");
    let theirs = pki("Someone else's CA");
    let (server, client) = exchange(
        theirs.ca.server_config(&theirs.server).unwrap(),
        client_config(ours.ca.trust_pem(), None).unwrap(),
        "localhost",
    );
    let client_err = client.expect_err("unknown issuer");
    assert_eq!(
        certificate_error(&client_err),
        &CertificateError::UnknownIssuer
    );
    assert!(server.is_err());
}

#[test]
fn the_client_refuses_a_server_certificate_for_another_name() {
    let pki = pki("Herd CA");
    let (server, client) = exchange(
        pki.ca.server_config(&pki.server).unwrap(),
        client_config(pki.ca.trust_pem(), None).unwrap(),
        "center.example",
    );
    let client_err = client.expect_err("name mismatch");
    assert!(
        matches!(
            certificate_error(&client_err),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        ),
        "{client_err:?}"
    );
    assert!(server.is_err());
}

#[test]
fn a_site_server_without_the_ca_key_verifies_terminals_too() {
    let pki = pki("Herd CA");
    let site = pki.ca.issue_server(&["localhost".into()]).unwrap();
    let identity = terminal(&pki.ca, "pda-2");
    let (server, client) = exchange(
        herd_tls::server_config(pki.ca.trust_pem(), &site).unwrap(),
        client_config(pki.ca.trust_pem(), Some(&identity)).unwrap(),
        "localhost",
    );
    client.expect("client completes");
    let peer = server.expect("server completes").peer_cert.unwrap();
    assert_eq!(terminal_id_of(&peer).as_deref(), Some("pda-2"));
}

#[test]
fn tls_1_2_clients_with_certificates_are_served() {
    let pki = pki("Herd CA");
    let identity = terminal(&pki.ca, "stb-9");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(cert_der_from_pem(pki.ca.trust_pem()).unwrap().into())
        .unwrap();
    let tls12_only =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![cert_der_from_pem(&identity.cert_pem).unwrap().into()],
                PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).unwrap(),
            )
            .unwrap();
    let (server, client) = exchange(
        pki.ca.server_config(&pki.server).unwrap(),
        Arc::new(tls12_only),
        "localhost",
    );
    client.expect("client completes");
    let saw = server.expect("server completes");
    assert_eq!(saw.version, Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(
        terminal_id_of(&saw.peer_cert.unwrap()).as_deref(),
        Some("stb-9")
    );
}

#[test]
fn configs_refuse_mismatched_or_missing_material() {
    let pki = pki("Herd CA");
    let other = pki.ca.issue_server(&["localhost".into()]).unwrap();
    let mismatched = KeyPairPem {
        cert_pem: pki.server.cert_pem.clone(),
        key_pem: other.key_pem,
    };
    let err = pki.ca.server_config(&mismatched).unwrap_err();
    assert!(matches!(err, herd_tls::TlsError::Rustls(_)), "{err}");
    let err = client_config("not a certificate", None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the CA certificate is not a PEM certificate"
    );
    let err = client_config(
        pki.ca.trust_pem(),
        Some(&KeyPairPem {
            cert_pem: pki.server.cert_pem.clone(),
            key_pem: "nope".into(),
        }),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("the client key is not a PEM private key"),
        "{err}"
    );
}
