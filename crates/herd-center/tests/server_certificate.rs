//! The center's server certificate is reissued before it expires, while it serves: the test
//! moves the clock the reissue check sees (the center reads no clock of its own there) and
//! connects over real TLS before and after, through the server configuration `herd serve`
//! serves with.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use herd_center::Center;
use herd_center::config::{CenterConfig, ConfigFile};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// SHA-256 of the certificate a TLS server at `addr` presents to a client trusting `ca_pem`.
async fn served_certificate(addr: std::net::SocketAddr, ca_pem: &str) -> String {
    let config = herd_tls::client_config(ca_pem, None).unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    tls.write_all(b"x").await.unwrap();
    let _ = tls.read(&mut [0u8; 1]).await;
    herd_tls::cert_sha256_hex(leaf.as_ref())
}

#[tokio::test]
async fn the_server_certificate_is_reissued_before_it_expires() {
    herd_tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let file = ConfigFile::parse(
        "test",
        &format!("data_dir = {:?}\n", dir.path().to_str().unwrap()),
    )
    .unwrap();
    let center: Arc<Center> = Center::open(CenterConfig::from_file(file).unwrap())
        .await
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(center.server_config().unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = tls.read(&mut [0u8; 1]).await;
                    let _ = tls.write_all(b"y").await;
                }
            });
        }
    });
    let ca_pem = center.ca().trust_pem().to_owned();
    let first = served_certificate(addr, &ca_pem).await;
    let expiry = center.server_certificate_expiry();
    let metrics = center.metrics.render();
    let expiry_unix = expiry
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        metrics.contains(&format!(
            "herd_server_certificate_expiry_timestamp_seconds {expiry_unix}"
        )),
        "{metrics}"
    );

    // Half a year in, two thirds of a year's validity remain: nothing to do.
    let half_a_year = SystemTime::now() + Duration::from_secs(182 * 86_400);
    assert!(
        !center
            .reissue_server_certificate_if_due(half_a_year)
            .unwrap()
    );
    assert_eq!(served_certificate(addr, &ca_pem).await, first);

    // A month before expiry: reissued, and new connections get the new certificate.
    let a_month_before = expiry - Duration::from_secs(30 * 86_400);
    assert!(
        center
            .reissue_server_certificate_if_due(a_month_before)
            .unwrap()
    );
    let second = served_certificate(addr, &ca_pem).await;
    assert_ne!(second, first);
    assert!(center.server_certificate_expiry() >= expiry);
    assert!(
        center
            .metrics
            .render()
            .contains("herd_server_certificate_reissues_total 1")
    );
    center.close().await;
}
