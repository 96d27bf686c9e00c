//! Certificate renewal across center processes: two centers on one store, as several
//! `herd serve` processes on one database are. A terminal that renewed through one is accepted
//! by the other at once (it may reach either at its next connection), and the certificate it
//! renewed from is refused by both.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use herd_center::config::{CenterConfig, ConfigFile};
use herd_center::{Center, ErrorKind, PeerIdentity};
use herd_proto::api::{CertificateRenewal, EnrolRequest, NewEnrolmentToken};
use herd_proto::terminal::HardwareDoc;

async fn center_on(store_url: &str, data_dir: &std::path::Path) -> Arc<Center> {
    let file = ConfigFile::parse(
        "test",
        // Processes of one database share the key-encryption key of its CA.
        &format!(
            "data_dir = {:?}\ndatabase = {store_url:?}\nca_kek_file = {:?}\n",
            data_dir.to_str().unwrap(),
            data_dir.parent().unwrap().join("ca.kek").to_str().unwrap()
        ),
    )
    .unwrap();
    Center::open(CenterConfig::from_file(file).unwrap())
        .await
        .unwrap()
}

fn peer(cert_pem: &str) -> PeerIdentity {
    let der = herd_tls::cert_der_from_pem(cert_pem).unwrap();
    PeerIdentity {
        sha256: herd_tls::cert_sha256_hex(&der),
        terminal: herd_tls::terminal_id_of(&der),
        site: None,
        center: false,
    }
}

#[tokio::test]
async fn a_renewed_certificate_works_at_once_on_every_center_process() {
    herd_tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("herd.db").display());
    let kek = dir.path().join("ca.kek");
    std::fs::write(&kek, "the key-encryption key both processes share").unwrap();
    std::fs::set_permissions(&kek, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let one = center_on(&url, &dir.path().join("one")).await;
    let two = center_on(&url, &dir.path().join("two")).await;

    let token = one
        .new_enrolment_token(NewEnrolmentToken {
            label: String::new(),
            uses: None,
            ttl_secs: None,
            reenrol_terminal: None,
        })
        .await
        .unwrap()
        .token;
    let (_, csr_pem) = herd_tls::new_key_and_csr("t1").unwrap();
    let enrolled = one
        .enrol(
            EnrolRequest {
                token,
                csr_pem,
                id: Some("t1".into()),
                user: None,
                hardware: HardwareDoc {
                    kind: "pc".into(),
                    platform: "pc".into(),
                    model: None,
                },
                tz: None,
            },
            IpAddr::V4(Ipv4Addr::LOCALHOST),
        )
        .await
        .unwrap();
    let first = peer(&enrolled.certificate_pem);
    // The second process has the terminal cached with its first certificate.
    two.terminal(Some(&first)).await.unwrap();

    let (_, csr_pem) = herd_tls::new_key_and_csr("t1").unwrap();
    let renewed = one
        .renew_certificate(Some(&first), CertificateRenewal { csr_pem })
        .await
        .unwrap();
    let second = peer(&renewed.certificate_pem);
    // Without waiting for the second process to follow the change log.
    assert_eq!(two.terminal(Some(&second)).await.unwrap().id, "t1");
    for center in [&one, &two] {
        let refused = center.terminal(Some(&first)).await.unwrap_err();
        assert_eq!(refused.kind, ErrorKind::CertRevoked, "{}", refused.message);
    }
    one.close().await;
    two.close().await;
}
