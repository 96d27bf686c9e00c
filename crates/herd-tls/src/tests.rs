//! Unit tests of the CA: what goes into the certificates it issues, and what it refuses.

use super::*;

fn ca() -> CertificateAuthority {
    let (cert, key) = CertificateAuthority::generate("Herd test CA").expect("CA generates");
    CertificateAuthority::from_pem(&cert, &key).expect("CA loads")
}

fn parse(pem: &str) -> Vec<u8> {
    cert_der_from_pem(pem).expect("PEM certificate")
}

#[test]
fn generated_ca_is_a_ca_with_the_given_name_and_ten_years() {
    let (cert_pem, _) = CertificateAuthority::generate("Herd center CA").unwrap();
    let der = parse(&cert_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(
        cert.subject().to_string(),
        "CN=Herd center CA",
        "subject of the CA"
    );
    assert_eq!(cert.subject(), cert.issuer(), "self-signed");
    let bc = cert
        .basic_constraints()
        .unwrap()
        .expect("basic constraints");
    assert!(bc.value.ca);
    let ku = cert.key_usage().unwrap().expect("key usage").value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    assert!(!ku.digital_signature());
    let years = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp())
        as f64
        / (365.25 * 86_400.0);
    assert!((9.9..10.1).contains(&years), "validity of {years} years");
}

#[test]
fn from_pem_refuses_a_key_of_another_ca() {
    let (cert_a, _) = CertificateAuthority::generate("A").unwrap();
    let (_, key_b) = CertificateAuthority::generate("B").unwrap();
    let err = CertificateAuthority::from_pem(&cert_a, &key_b).unwrap_err();
    assert!(matches!(err, TlsError::CaKeyMismatch), "{err}");
    assert_eq!(
        err.to_string(),
        "the CA key does not match the CA certificate"
    );
}

#[test]
fn from_pem_refuses_swapped_inputs_and_non_ca_certificates() {
    let (cert, key) = CertificateAuthority::generate("A").unwrap();
    let err = CertificateAuthority::from_pem(&key, &cert).unwrap_err();
    assert!(matches!(err, TlsError::NotPemCertificate { .. }), "{err}");
    let err = CertificateAuthority::from_pem(&cert, &cert).unwrap_err();
    assert!(matches!(err, TlsError::NotPemKey { .. }), "{err}");

    let server = ca().issue_server(&["center.example".into()]).unwrap();
    let err = CertificateAuthority::from_pem(&server.cert_pem, &server.key_pem).unwrap_err();
    assert!(matches!(err, TlsError::NotACa), "{err}");
}

#[test]
fn a_loaded_ca_issues_certificates_chained_to_its_own() {
    let (cert_pem, key_pem) = CertificateAuthority::generate("Herd test CA").unwrap();
    let ca = CertificateAuthority::from_pem(&cert_pem, &key_pem).unwrap();
    assert_eq!(ca.trust_pem(), cert_pem);
    let server = ca.issue_server(&["localhost".into()]).unwrap();
    let ca_der = parse(&cert_pem);
    let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    let leaf_der = parse(&server.cert_pem);
    let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).unwrap();
    assert_eq!(leaf.issuer(), ca_cert.subject());
    leaf.verify_signature(Some(ca_cert.public_key()))
        .expect("signed by the CA key");
}

#[test]
fn server_certificates_name_dns_and_ip_and_serve_only() {
    let pair = ca()
        .issue_server(&["center.example".into(), "127.0.0.1".into(), "::1".into()])
        .unwrap();
    let der = parse(&pair.cert_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(cert.subject().to_string(), "CN=center.example");
    let san = cert.subject_alternative_name().unwrap().unwrap().value;
    let names: Vec<String> = san
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => format!("dns:{d}"),
            GeneralName::IPAddress(ip) => format!("ip:{}", ip.len()),
            other => format!("other:{other:?}"),
        })
        .collect();
    assert_eq!(names, ["dns:center.example", "ip:4", "ip:16"]);
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);
    assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
    let days =
        (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()) / 86_400;
    assert_eq!(days, 365, "one year plus the backdating hour");
    // The key in the pair belongs to the certificate.
    let key = KeyPair::from_pem(&pair.key_pem).unwrap();
    assert_eq!(
        key.public_key_raw(),
        cert.public_key().subject_public_key.data.as_ref()
    );
}

#[test]
fn issue_server_refuses_no_names_and_bad_names() {
    let ca = ca();
    assert!(matches!(
        ca.issue_server(&[]).unwrap_err(),
        TlsError::NoServerNames
    ));
    for bad in ["", "has space.example", "under_score..example", "a/b"] {
        let err = ca.issue_server(&[bad.to_owned()]).unwrap_err();
        assert!(
            matches!(&err, TlsError::BadServerName { name } if name == bad),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn terminal_certificates_carry_only_the_id_the_center_chose() {
    let ca = ca();
    let (_, csr) = new_key_and_csr("45a").unwrap();
    let issued = ca.sign_terminal_csr(&csr, "45a", 30).unwrap();
    let der = parse(&issued.cert_pem);
    assert_eq!(issued.cert_sha256, cert_sha256_hex(&der));
    assert_eq!(issued.cert_sha256.len(), 64);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(cert.subject().to_string(), "CN=45a");
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth && !eku.any);
    assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
    let san = cert.subject_alternative_name().unwrap().unwrap().value;
    assert_eq!(
        san.general_names,
        [GeneralName::URI("urn:herd:terminal:45a")]
    );
    let days =
        (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()) / 86_400;
    assert_eq!(days, 30);
    assert_eq!(terminal_id_of(&der).as_deref(), Some("45a"));
}

#[test]
fn a_csr_asking_for_other_names_and_powers_gets_none_of_them() {
    // A hostile request: another terminal's name, a server DNS name, CA basic constraints and
    // serverAuth. Only its key may survive.
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(vec!["center.example".to_owned()]).unwrap();
    params.distinguished_name = common_name("other-terminal");
    params.subject_alt_names.push(SanType::URI(
        "urn:herd:terminal:other-terminal".try_into().unwrap(),
    ));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();

    let issued = ca().sign_terminal_csr(&csr, "t-7", 1).unwrap();
    let der = parse(&issued.cert_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(cert.subject().to_string(), "CN=t-7");
    assert_eq!(terminal_id_of(&der).as_deref(), Some("t-7"));
    let rendered = format!("{:?}", cert.extensions());
    assert!(!rendered.contains("other-terminal"), "{rendered}");
    assert!(!rendered.contains("center.example"), "{rendered}");
    assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    // But the key is the requester's.
    assert_eq!(
        key.public_key_raw(),
        cert.public_key().subject_public_key.data.as_ref()
    );
}

#[test]
fn a_tampered_csr_is_refused_for_its_signature() {
    let (_, csr_pem) = new_key_and_csr("45a").unwrap();
    let mut der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec();
    // Change one character of the subject's CN ("45a" -> "45b"): still well-formed, but the
    // signature no longer covers what is there.
    let at = der
        .windows(3)
        .position(|w| w == b"45a")
        .expect("CN in the DER");
    der[at + 2] = b'b';
    let tampered = pem_encode("CERTIFICATE REQUEST", &der);
    let err = ca().sign_terminal_csr(&tampered, "45a", 1).unwrap_err();
    assert!(matches!(err, CsrError::BadSignature), "{err}");
    assert_eq!(err.to_string(), "the CSR's signature does not verify");
}

#[test]
fn csr_input_errors_say_what_was_wrong() {
    let ca = ca();
    let (_, csr) = new_key_and_csr("45a").unwrap();

    let err = ca.sign_terminal_csr("hello", "45a", 1).unwrap_err();
    assert!(matches!(err, CsrError::NotPem), "{err}");
    assert_eq!(
        err.to_string(),
        "not a PEM certificate request (\"CERTIFICATE REQUEST\" expected)"
    );
    // A certificate is not a request.
    let err = ca.sign_terminal_csr(ca.trust_pem(), "45a", 1).unwrap_err();
    assert!(matches!(err, CsrError::NotPem), "{err}");
    // Garbage inside a request's PEM armour.
    let garbage = pem_encode("CERTIFICATE REQUEST", b"\x30\x03\x02\x01\x00");
    let err = ca.sign_terminal_csr(&garbage, "45a", 1).unwrap_err();
    assert!(matches!(err, CsrError::Malformed(_)), "{err}");

    for bad in [
        "",
        "a b",
        "../x",
        "t/1",
        "é",
        &"x".repeat(MAX_TERMINAL_ID_LEN + 1),
    ] {
        let err = ca.sign_terminal_csr(&csr, bad, 1).unwrap_err();
        assert!(
            matches!(&err, CsrError::BadTerminalId { id } if id == bad),
            "{bad:?}: {err}"
        );
    }
    for days in [0, MAX_TERMINAL_VALIDITY_DAYS + 1, u32::MAX] {
        let err = ca.sign_terminal_csr(&csr, "45a", days).unwrap_err();
        assert!(matches!(err, CsrError::BadValidityDays { .. }), "{err}");
    }
    let now = SystemTime::now();
    let err = ca
        .sign_terminal_csr_between(&csr, "45a", now, now)
        .unwrap_err();
    assert!(matches!(err, CsrError::EmptyValidity), "{err}");
}

#[test]
fn csrs_with_p384_and_ed25519_keys_are_signed_too() {
    let ca = ca();
    for alg in [&rcgen::PKCS_ED25519, &rcgen::PKCS_ECDSA_P384_SHA384] {
        let key = KeyPair::generate_for(alg).unwrap();
        let csr = CertificateParams::default()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        ca.sign_terminal_csr(&csr, "45a", 1)
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
    }
}

#[test]
fn serials_differ_between_certificates_for_the_same_key() {
    let ca = ca();
    let (_, csr) = new_key_and_csr("45a").unwrap();
    let serial = |pem: &str| {
        let der = parse(pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        cert.raw_serial().to_vec()
    };
    let a = ca.sign_terminal_csr(&csr, "45a", 1).unwrap();
    let b = ca.sign_terminal_csr(&csr, "45a", 1).unwrap();
    assert_ne!(serial(&a.cert_pem), serial(&b.cert_pem));
    assert_ne!(a.cert_sha256, b.cert_sha256);
}

#[test]
fn terminal_id_of_needs_exactly_one_herd_uri() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let with_sans = |sans: Vec<SanType>| {
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        let cert = params.self_signed(&key).unwrap();
        terminal_id_of(cert.der())
    };
    let uri = |s: &str| SanType::URI(s.try_into().unwrap());
    assert_eq!(with_sans(vec![]), None);
    assert_eq!(with_sans(vec![uri("urn:other:terminal:x")]), None);
    assert_eq!(with_sans(vec![uri("urn:herd:terminal:")]), None);
    assert_eq!(with_sans(vec![uri("urn:herd:terminal:a/b")]), None);
    assert_eq!(
        with_sans(vec![uri("urn:herd:terminal:a"), uri("urn:herd:terminal:b")]),
        None
    );
    assert_eq!(
        with_sans(vec![
            SanType::DnsName("x.example".try_into().unwrap()),
            uri("urn:herd:terminal:a"),
        ])
        .as_deref(),
        Some("a")
    );
    assert_eq!(terminal_id_of(b"not a certificate"), None);
}

#[test]
fn cert_not_after_reads_the_validity_end() {
    let ca = ca();
    let (_, csr) = new_key_and_csr("45a").unwrap();
    let not_before = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let not_after = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let issued = ca
        .sign_terminal_csr_between(&csr, "45a", not_before, not_after)
        .unwrap();
    assert_eq!(cert_not_after(&issued.cert_pem).unwrap(), not_after);
    assert!(matches!(
        cert_not_after("nope").unwrap_err(),
        TlsError::NotPemCertificate { .. }
    ));
}

#[test]
fn key_pair_debug_hides_the_key() {
    let pair = ca().issue_server(&["localhost".into()]).unwrap();
    let shown = format!("{pair:?}");
    assert!(shown.contains("[elided]"));
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    let shown = format!("{:?}", ca());
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
}

#[test]
fn install_crypto_provider_is_idempotent() {
    install_crypto_provider();
    install_crypto_provider();
    assert!(CryptoProvider::get_default().is_some());
}

#[test]
fn an_intermediate_under_an_offline_root_issues_chains_the_root_verifies() {
    let (root_cert, root_key) = CertificateAuthority::generate_root("Herd root").unwrap();
    let root = CertificateAuthority::from_pem(&root_cert, &root_key).unwrap();
    let intermediate = root.issue_intermediate("Herd intermediate 1", 730).unwrap();
    let ca = CertificateAuthority::from_parts(
        &intermediate.cert_pem,
        &intermediate.key_pem,
        Some(&root_cert),
    )
    .unwrap();
    assert!(ca.has_offline_root());
    assert_eq!(ca.trust_pem(), root_cert, "clients trust the root only");
    let (_, csr) = new_key_and_csr("t1").unwrap();
    let issued = ca.sign_terminal_csr(&csr, "t1", 30).unwrap();
    let chain: Vec<_> = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(chain.len(), 2, "leaf and intermediate");
    assert_eq!(
        issued.cert_sha256,
        cert_sha256_hex(&chain[0]),
        "the leaf's digest"
    );
    assert_eq!(terminal_id_of(&chain[0]).as_deref(), Some("t1"));

    // A second intermediate of the same root: what the first issued stays trusted.
    let next = root.issue_intermediate("Herd intermediate 2", 730).unwrap();
    let rotated =
        CertificateAuthority::from_parts(&next.cert_pem, &next.key_pem, Some(&root_cert)).unwrap();
    assert_eq!(rotated.trust_pem(), ca.trust_pem());
}

#[test]
fn an_intermediate_of_another_root_is_refused() {
    let (root_cert, _) = CertificateAuthority::generate_root("Herd root").unwrap();
    let (other_cert, other_key) = CertificateAuthority::generate_root("Impostor").unwrap();
    let other = CertificateAuthority::from_pem(&other_cert, &other_key).unwrap();
    let foreign = other
        .issue_intermediate("Impostor intermediate", 30)
        .unwrap();
    let err =
        CertificateAuthority::from_parts(&foreign.cert_pem, &foreign.key_pem, Some(&root_cert))
            .unwrap_err();
    assert!(matches!(err, TlsError::NotChainedToTrust { .. }), "{err}");
}

#[test]
fn a_certificate_never_outlives_its_issuer() {
    let (root_cert, root_key) = CertificateAuthority::generate_root("root").unwrap();
    let root = CertificateAuthority::from_pem(&root_cert, &root_key).unwrap();
    let intermediate = root.issue_intermediate("short-lived", 10).unwrap();
    let ca = CertificateAuthority::from_parts(
        &intermediate.cert_pem,
        &intermediate.key_pem,
        Some(&root_cert),
    )
    .unwrap();
    let ends = cert_not_after(ca.issuer_cert_pem()).unwrap();
    let (_, csr) = new_key_and_csr("t1").unwrap();
    let issued = ca.sign_terminal_csr(&csr, "t1", 365).unwrap();
    assert_eq!(
        cert_not_after(&issued.cert_pem).unwrap(),
        ends,
        "cut to the issuer"
    );
    let server = ca.issue_server(&["localhost".into()]).unwrap();
    assert_eq!(cert_not_after(&server.cert_pem).unwrap(), ends);
}

#[test]
fn site_certificates_name_the_site_and_its_addresses_and_serve_and_call() {
    let ca = ca();
    let (_, csr) = new_key_and_csr("office-1").unwrap();
    let issued = ca
        .sign_site_csr(
            &csr,
            "office-1",
            &["site.example".into(), "127.0.0.2".into()],
            365,
        )
        .unwrap();
    let der = parse(&issued.cert_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && eku.server_auth && !eku.any);
    assert_eq!(site_id_of(&der).as_deref(), Some("office-1"));
    // A site is never a terminal, nor the center.
    assert_eq!(terminal_id_of(&der), None);
    assert!(!is_center_cert(&der));
    // A terminal is never a site.
    let (_, csr) = new_key_and_csr("45a").unwrap();
    let terminal = parse(&ca.sign_terminal_csr(&csr, "45a", 30).unwrap().cert_pem);
    assert_eq!(site_id_of(&terminal), None);
    assert!(!is_center_cert(&terminal));
    let center = parse(&ca.issue_center_client().unwrap().cert_pem);
    assert!(is_center_cert(&center));
    assert_eq!(site_id_of(&center), None);
    assert_eq!(terminal_id_of(&center), None);
    let (_, csr) = new_key_and_csr("x").unwrap();
    assert!(matches!(
        ca.sign_site_csr(&csr, "bad id", &[], 365).unwrap_err(),
        CsrError::BadTerminalId { .. }
    ));
    assert!(matches!(
        ca.sign_site_csr(&csr, "ok", &["a/b".into()], 365)
            .unwrap_err(),
        CsrError::BadServerName { .. }
    ));
}
