//! The store reaches PostgreSQL over TLS that verifies the server: a real PostgreSQL server of
//! its own (initdb in a temporary directory, run as the `postgres` user) serving a certificate
//! from a test CA, reached with `sslmode=verify-full`; a server presenting a certificate of
//! another CA — a man in the middle — is refused before anything is sent.
//!
//! Runs where PostgreSQL's server programs are installed and `HERD_TEST_POSTGRES_URL` says
//! PostgreSQL tests are wanted (CI); skipped elsewhere, saying so.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// PostgreSQL's server programs (Debian puts them under a versioned directory).
fn pg_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a PostgreSQL program as the `postgres` user (the server refuses to run as root).
fn as_postgres(program: &Path) -> Command {
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
        .arg(program);
    command
}

/// A PostgreSQL server on a free loopback port with TLS from `server` (cert and key PEM),
/// accepting TLS connections only; stopped when dropped.
struct TlsPostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    _tmp: tempfile::TempDir,
}

impl TlsPostgres {
    fn start(bin: PathBuf, server: &herd_tls::KeyPairPem) -> TlsPostgres {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = tmp.path().join("cluster");
        std::fs::create_dir(&dir).unwrap();
        chown_postgres(&dir);
        let init = as_postgres(&bin.join("initdb"))
            .args(["-D", dir.to_str().unwrap(), "-A", "trust", "-U", "postgres"])
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        for (name, text) in [
            ("server.crt", server.cert_pem.as_str()),
            ("server.key", server.key_pem.as_str()),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            chown_postgres(&path);
        }
        let port = free_port();
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nfsync = off\n",
            dir.display()
        );
        append(&dir.join("postgresql.conf"), &conf);
        // TLS or nothing: a client that does not encrypt is turned away.
        std::fs::write(
            dir.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
        )
        .unwrap();
        let started = as_postgres(&bin.join("pg_ctl"))
            .args(["-D", dir.to_str().unwrap(), "-w", "-t", "30", "-l"])
            .arg(dir.join("log"))
            .arg("start")
            .output()
            .unwrap();
        assert!(
            started.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&started.stderr),
            std::fs::read_to_string(dir.join("log")).unwrap_or_default()
        );
        TlsPostgres {
            bin,
            dir,
            port,
            _tmp: tmp,
        }
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .args(["-D", self.dir.to_str().unwrap(), "-m", "immediate", "stop"])
            .output();
    }
}

fn chown_postgres(path: &Path) {
    let status = Command::new("chown")
        .arg("postgres:postgres")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_reaches_postgres_only_over_tls_that_verifies_the_server() {
    if std::env::var_os("HERD_TEST_POSTGRES_URL").is_none() {
        eprintln!("skipped: HERD_TEST_POSTGRES_URL is not set");
        return;
    }
    let Some(bin) = pg_bin() else {
        eprintln!("skipped: PostgreSQL's server programs are not installed");
        return;
    };
    herd_tls::install_crypto_provider();
    let (ca_cert, ca_key) = herd_tls::CertificateAuthority::generate("database CA").unwrap();
    let ca = herd_tls::CertificateAuthority::from_pem(&ca_cert, &ca_key).unwrap();
    let server = ca
        .issue_server(&["localhost".into(), "127.0.0.1".into()])
        .unwrap();
    let postgres = TlsPostgres::start(bin, &server);

    let files = tempfile::tempdir().unwrap();
    let ca_file = files.path().join("db-ca.pem");
    std::fs::write(&ca_file, &ca_cert).unwrap();
    let (impostor_cert, _) = herd_tls::CertificateAuthority::generate("impostor").unwrap();
    let impostor_file = files.path().join("impostor.pem");
    std::fs::write(&impostor_file, &impostor_cert).unwrap();
    let url = |params: &str| {
        format!(
            "postgres://postgres@localhost:{}/postgres?{params}",
            postgres.port
        )
    };

    // Verified: the store opens, migrates and works.
    let verified = url(&format!(
        "sslmode=verify-full&sslrootcert={}",
        ca_file.display()
    ));
    let store = herd_store::open(&verified)
        .await
        .unwrap_or_else(|err| panic!("{verified}: {err}"));
    assert_eq!(store.ca_get().await.unwrap(), None);
    drop(store);

    // The same server, its certificate checked against another CA: what a man in the middle
    // with his own certificate looks like. Refused while connecting.
    let mitm = url(&format!(
        "sslmode=verify-full&sslrootcert={}",
        impostor_file.display()
    ));
    let err = herd_store::open(&mitm).await.unwrap_err().to_string();
    assert!(
        err.contains("cannot open the database") && err.to_lowercase().contains("certificate"),
        "{err}"
    );

    // Without TLS the server turns the store away (it accepts TLS only).
    let err = herd_store::open(&url("sslmode=disable"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no encryption"), "{err}");
}
