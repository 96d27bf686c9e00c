//! The center's secrets at rest, attacked for real: a local user reading the data directory,
//! a stolen database, a wrong or exposed key-encryption key, a key an older center stored in
//! the clear; and the offline root with online intermediates that replace the center's own CA.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use herd_client::ClientError;
use herd_proto::api::{CaInstall, CheckinRequest};
use herd_tls::KeyPairPem;
use support::{HERD, TestCenter, enrol, enrolment_token};

/// A directory a local user could enter, like `/var/lib`: tests' temporary directories are
/// 0700, which would hide what the center itself does.
fn open_tempdir() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    tmp
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Runs `cat path` as `nobody` (uid/gid 65534, no groups): a real unprivileged local user.
fn nobody_can_read(path: &Path) -> bool {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("setpriv runs")
        .success()
}

fn write_kek(path: &Path, secret: &str) {
    std::fs::write(path, secret).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn kek_env(path: &Path) -> [(&'static str, String); 1] {
    [("HERD_CA_KEK_FILE", path.display().to_string())]
}

fn spawn(data_dir: &Path, env: &[(&str, String)]) -> anyhow::Result<TestCenter> {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestCenter::try_spawn(data_dir, &[], &env)
}

/// Runs `query` against the center's SQLite database `db` (the center stopped or idle), as
/// someone holding a copy of the file would.
fn with_database<T>(db: &Path, query: impl AsyncFnOnce(&sqlx::SqlitePool) -> T) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let url = format!("sqlite://{}", db.display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let result = query(&pool).await;
        pool.close().await;
        result
    })
}

fn ca_row(db: &Path) -> (String, Option<String>, i64) {
    with_database(db, async |pool| {
        use sqlx::Row;
        let row = sqlx::query("SELECT key_pem, trust_pem, generation FROM ca")
            .fetch_one(pool)
            .await
            .unwrap();
        (
            row.get("key_pem"),
            row.get("trust_pem"),
            row.get("generation"),
        )
    })
}

fn set_ca_row(db: &Path, cert_pem: &str, key_pem: &str) {
    with_database(db, async |pool| {
        sqlx::query("UPDATE ca SET cert_pem = $1, key_pem = $2")
            .bind(cert_pem)
            .bind(key_pem)
            .execute(pool)
            .await
            .unwrap();
    })
}

#[test]
fn a_local_user_cannot_read_the_database_tokens_or_keys() {
    let tmp = open_tempdir();
    let data = tmp.path().join("data");
    let mut center = spawn(&data, &[]).unwrap();
    // A check-in's worth of writes, so the WAL and shared-memory files exist.
    center.operator().groups().unwrap();
    assert_eq!(mode(&data), 0o700, "the data directory");
    for name in [
        "herd.db",
        "herd.db-wal",
        "herd.db-shm",
        "operator.token",
        "ca.kek",
    ] {
        let path = data.join(name);
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{name}");
        } else {
            assert!(
                name.ends_with("-wal") || name.ends_with("-shm"),
                "{name} exists"
            );
        }
    }
    assert_eq!(mode(&data.join("blobs")) & 0o077, 0, "the blob directory");
    assert_eq!(
        mode(&data.join("ca.pem")),
        0o644,
        "the public CA certificate"
    );
    center.stop();

    // Even a data directory an operator opened up stays closed to others at the next start.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(data.join("herd.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut center = spawn(&data, &[]).unwrap();
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("herd.db")), 0o600);
    for name in ["herd.db", "operator.token", "ca.kek"] {
        assert!(!nobody_can_read(&data.join(name)), "nobody read {name}");
    }
    // The control: what is open to others, nobody does read (so the refusals above are the
    // modes' doing, not setpriv's).
    let probe = tmp.path().join("readable-probe");
    std::fs::write(&probe, "public").unwrap();
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(
        nobody_can_read(&probe),
        "setpriv lets nobody read an open file"
    );
    center.stop();
}

#[test]
fn a_stolen_database_does_not_reveal_the_ca_key() {
    let tmp = open_tempdir();
    let data = tmp.path().join("data");
    let kek = tmp.path().join("ca.kek");
    write_kek(&kek, "a long secret only the operator knows\n");
    let mut center = spawn(&data, &kek_env(&kek)).unwrap();
    center.stop();
    let (key, _, _) = ca_row(&data.join("herd.db"));
    assert!(key.starts_with("herd-sealed-key/v1 "), "{key}");
    for file in std::fs::read_dir(&data).unwrap() {
        let path = file.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(11).any(|w| w == b"PRIVATE KEY"),
                "{} holds a private key in the clear",
                path.display()
            );
        }
    }
    assert!(
        !data.join("ca.kek").exists(),
        "with a KEK configured none is generated beside the database"
    );
}

#[test]
fn the_center_refuses_to_start_with_another_kek_and_says_why() {
    let tmp = open_tempdir();
    let data = tmp.path().join("data");
    let kek = tmp.path().join("ca.kek");
    write_kek(&kek, "the first key-encryption key\n");
    let mut center = spawn(&data, &kek_env(&kek)).unwrap();
    center.stop();

    let other = tmp.path().join("other.kek");
    write_kek(&other, "not the key it was sealed under\n");
    let err = format!("{:#}", spawn(&data, &kek_env(&other)).unwrap_err());
    assert!(err.contains("cannot open the CA key"), "{err}");
    assert!(
        err.contains("ca_kek_file"),
        "names how to give the KEK: {err}"
    );

    // The KEK itself given in the environment works as well as its file.
    let mut center = spawn(
        &data,
        &[("HERD_CA_KEK", "the first key-encryption key".to_owned())],
    )
    .unwrap();
    center.stop();
}

#[test]
fn a_kek_other_users_can_read_is_refused() {
    let tmp = open_tempdir();
    let data = tmp.path().join("data");
    let kek = tmp.path().join("ca.kek");
    write_kek(&kek, "a long secret only the operator knows\n");
    std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = format!("{:#}", spawn(&data, &kek_env(&kek)).unwrap_err());
    assert!(err.contains("readable by other users (mode 0644)"), "{err}");
    assert!(!data.join("herd.db").exists() || ca_exists_not(&data));

    write_kek(&kek, "short\n");
    let err = format!("{:#}", spawn(&data, &kek_env(&kek)).unwrap_err());
    assert!(err.contains("at least 16 are needed"), "{err}");
}

/// True when the database holds no CA (a refused start created none).
fn ca_exists_not(data: &Path) -> bool {
    with_database(&data.join("herd.db"), async |pool| {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM ca")
            .fetch_one(pool)
            .await
            .unwrap_or(0);
        count == 0
    })
}

#[test]
fn a_key_an_older_center_stored_in_the_clear_is_sealed_at_start() {
    let tmp = open_tempdir();
    let data = tmp.path().join("data");
    let mut center = spawn(&data, &[]).unwrap();
    center.stop();
    // What an older center stored: the CA with its key in the clear.
    let (cert_pem, key_pem) = herd_tls::CertificateAuthority::generate("Herd center CA").unwrap();
    set_ca_row(&data.join("herd.db"), &cert_pem, &key_pem);

    let mut center = spawn(&data, &[]).unwrap();
    let (key, _, generation) = ca_row(&data.join("herd.db"));
    assert!(key.starts_with("herd-sealed-key/v1 "), "{key}");
    assert_eq!(generation, 2, "sealing replaced the row once");
    assert_eq!(
        center.ca_pem().trim(),
        cert_pem.trim(),
        "the same CA, now sealed"
    );
    let (_, log) = center.stop();
    assert!(log.contains("stored in the clear"), "{log}");
}

// --- the offline root and its intermediates ---------------------------------------------

fn herd(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut command = Command::new(HERD);
    command.args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

fn checks_in(center: &TestCenter, identity: &KeyPairPem) -> bool {
    center
        .terminal_client(identity)
        .checkin(&CheckinRequest {
            terminal: None,
            installed: None,
            hardware: None,
            tz: None,
            agent_version: Some("test".into()),
            interfaces: None,
            tuf_timestamp_version: None,
            consent_waiting: None,
            messages_after: None,
            tuf_held: None,
        })
        .is_ok()
}

fn issuer_of(identity: &KeyPairPem) -> String {
    let pems: Vec<&str> = identity
        .cert_pem
        .split_inclusive("-----END CERTIFICATE-----\n")
        .collect();
    assert_eq!(
        pems.len(),
        2,
        "leaf and intermediate: {}",
        identity.cert_pem
    );
    let der = herd_tls::cert_der_from_pem(pems[1]).unwrap();
    herd_tls::cert_sha256_hex(&der)
}

#[test]
fn an_intermediate_of_the_offline_root_replaces_the_center_ca_and_rotates_unnoticed() {
    let tmp = open_tempdir();
    let offline = tmp.path().join("offline");
    std::fs::create_dir(&offline).unwrap();
    let root_kek = offline.join("root.kek");
    let root_dir = offline.join("root");
    let root_kek_text = root_kek.display().to_string();
    let root_dir_text = root_dir.display().to_string();
    let (ok, out) = herd(&["ca", "new-kek", "--out", &root_kek_text], &[]);
    assert!(ok, "{out}");
    assert_eq!(mode(&root_kek), 0o600);
    let (ok, out) = herd(
        &[
            "ca",
            "root",
            "--out-dir",
            &root_dir_text,
            "--kek-file",
            &root_kek_text,
        ],
        &[],
    );
    assert!(ok, "{out}");
    let root_key = std::fs::read_to_string(root_dir.join("root-key.pem")).unwrap();
    assert!(
        root_key.starts_with("herd-sealed-key/v1"),
        "sealed root key"
    );
    let root_pem = std::fs::read_to_string(root_dir.join("root.pem")).unwrap();
    let intermediate = |name: &str| {
        let out_file = offline.join(format!("{name}.json"));
        let (ok, out) = herd(
            &[
                "ca",
                "intermediate",
                "--root-dir",
                &root_dir_text,
                "--kek-file",
                &root_kek_text,
                "--name",
                name,
                "--out",
                &out_file.display().to_string(),
            ],
            &[],
        );
        assert!(ok, "{out}");
        assert_eq!(mode(&out_file), 0o600);
        out_file
    };
    let first = intermediate("Herd intermediate 1");
    let (ok, out) = herd(
        &[
            "ca",
            "intermediate",
            "--root-dir",
            &root_dir_text,
            "--out",
            "x.json",
        ],
        &[],
    );
    assert!(
        !ok && out.contains("--kek-file"),
        "a sealed root needs its KEK: {out}"
    );

    let data = tmp.path().join("data");
    let mut center = spawn(&data, &[]).unwrap();
    let token = enrolment_token(&center, 10);
    let early = enrol(&center, &token, "early", "user-e", "pc");
    let server_env = |center: &TestCenter| {
        vec![
            ("HERD_SERVER", center.url.clone()),
            ("HERD_CA", data.join("ca.pem").display().to_string()),
            ("HERD_TOKEN", center.operator_token()),
        ]
    };
    let env = server_env(&center);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let first_text = first.display().to_string();
    let (ok, out) = herd(&["ca", "install", &first_text], &env);
    assert!(
        !ok,
        "a new root while a terminal trusts only the old CA: {out}"
    );
    assert!(out.contains("--force"), "{out}");
    let (ok, out) = herd(&["ca", "install", &first_text, "--force"], &env);
    assert!(ok, "{out}");
    let (ok, shown) = herd(&["ca", "show"], &env);
    assert!(ok && shown.contains("offline root   yes"), "{shown}");

    // Without a restart, new connections get a server certificate of the intermediate and
    // have their client certificates verified against the root too; clients trust the root.
    let ca_pem = center.ca_pem();
    assert!(
        ca_pem.starts_with(&root_pem),
        "ca.pem leads with the root: {ca_pem}"
    );
    let token = enrolment_token(&center, 10);
    let one = enrol(&center, &token, "one", "user-1", "pc");
    let issuer_one = issuer_of(&one);
    assert!(checks_in(&center, &one));
    assert!(
        checks_in(&center, &early),
        "certificates of the old CA stay accepted until they are renewed"
    );

    // Rotation under the same root: no force, nothing for terminals to do.
    let second = intermediate("Herd intermediate 2");
    let env = server_env(&center);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (ok, out) = herd(&["ca", "install", &second.display().to_string()], &env);
    assert!(ok, "{out}");
    let two = enrol(&center, &token, "two", "user-2", "pc");
    assert_ne!(
        issuer_of(&two),
        issuer_one,
        "new certificates come from the new intermediate"
    );
    assert!(checks_in(&center, &two));
    assert!(
        checks_in(&center, &one),
        "the old intermediate's certificates still work"
    );
    assert_eq!(center.ca_pem(), ca_pem, "the trust anchors did not change");
    let (_, _, generation) = ca_row(&data.join("herd.db"));
    assert_eq!(generation, 3);
    center.stop();
}

#[test]
fn an_intermediate_that_does_not_chain_to_its_root_is_refused() {
    let center = TestCenter::start();
    let (root_pem, root_key) = herd_tls::CertificateAuthority::generate_root("root").unwrap();
    let (other_pem, other_key) = herd_tls::CertificateAuthority::generate_root("other").unwrap();
    let other = herd_tls::CertificateAuthority::from_pem(&other_pem, &other_key).unwrap();
    let foreign = other.issue_intermediate("foreign", 30).unwrap();
    let refused = |request: CaInstall| match center.operator().install_ca(&request) {
        Err(ClientError::Refused { status, code, .. }) => (status, code),
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(
        refused(CaInstall {
            certificate_pem: foreign.cert_pem.clone(),
            key_pem: foreign.key_pem.clone(),
            trust_pem: root_pem.clone(),
            force: true,
        }),
        (422, "bad_request".into())
    );
    // The root itself is not an online CA.
    assert_eq!(
        refused(CaInstall {
            certificate_pem: root_pem.clone(),
            key_pem: root_key,
            trust_pem: root_pem.clone(),
            force: true,
        }),
        (422, "bad_request".into())
    );
    // A key that is not the intermediate's.
    let root = herd_tls::CertificateAuthority::generate_root("r2").unwrap();
    let root = herd_tls::CertificateAuthority::from_pem(&root.0, &root.1).unwrap();
    let good = root.issue_intermediate("good", 30).unwrap();
    assert_eq!(
        refused(CaInstall {
            certificate_pem: good.cert_pem,
            key_pem: foreign.key_pem,
            trust_pem: root.trust_pem().to_owned(),
            force: true,
        }),
        (422, "bad_request".into())
    );
    assert_eq!(
        center.operator().ca().unwrap().generation,
        1,
        "nothing changed"
    );
}
