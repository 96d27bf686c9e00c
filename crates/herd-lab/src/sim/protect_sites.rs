//! The site servers of `herd sim protect`: real `herd serve --role site` processes, each on a
//! loopback address of its own (127.0.1.N), enrolled with the simulation's center through a
//! site enrolment token (`POST /v1/site-tokens`). Starting them is this one function, so that
//! the simulation follows the site server's command line wherever it changes.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context as _, bail};
use herd_client::Client;
use herd_proto::site::SITE_TOKENS;

use super::center::SpawnedCenter;
use crate::harness::{CenterProcess, CenterSpec, free_port, read_text};

/// A running site server; dropping it kills the process.
#[derive(Debug)]
pub struct Site {
    pub id: String,
    /// Where its terminals reach it.
    pub addr: SocketAddr,
    process: CenterProcess,
}

impl Site {
    /// The process id of the site's `herd serve` while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.process.kill();
    }
}

/// The loopback address site `index` listens on: 127.0.1.(index + 1), apart from the center
/// (127.0.0.1) and the workers' source addresses (127.0.0.2, …).
pub fn site_ip(index: usize) -> String {
    format!("127.0.1.{}", index + 1)
}

/// Starts `count` sites in front of `center`, each with its data under `work/site-<n>`, and
/// waits until each answers.
pub fn start_sites(
    center: &SpawnedCenter,
    count: usize,
    terminals_per_site: usize,
    work: &Path,
) -> anyhow::Result<Vec<Site>> {
    if count > 250 {
        bail!("--sites {count}: at most 250 (one loopback address each)");
    }
    let exe = std::env::current_exe().context("cannot find this program to start the sites")?;
    let center_url = format!("https://{}", center.addr()?);
    let mut sites = Vec::with_capacity(count);
    for index in 0..count {
        let id = format!("sim-site-{index}");
        let token = site_token(center, &id).with_context(|| {
            format!("creating the enrolment token of {id} (POST {SITE_TOKENS})")
        })?;
        let ip = site_ip(index);
        let listen = format!("{ip}:{}", free_port()?);
        let data_dir = work.join(format!("site-{index}"));
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        // A site holds a connection per terminal, beyond the default limit of 10,000.
        let config = data_dir.join("site.toml");
        std::fs::write(
            &config,
            format!("max_connections = {}\n", terminals_per_site + 1000),
        )
        .with_context(|| format!("cannot write {}", config.display()))?;
        let center_ca = center.data_dir().join("ca.pem");
        let spec = CenterSpec::new(&exe, &data_dir)
            .listen(&listen)
            .arg("-c")
            .arg(config.clone())
            .arg("--upstream-ca")
            .arg(center_ca)
            .args([
                "--role",
                "site",
                "--upstream",
                center_url.as_str(),
                "--site-id",
                id.as_str(),
                "--site-token",
                token.as_str(),
                "--server-name",
                ip.as_str(),
                "--log-format",
                "json",
                "--log",
                "warn",
            ])
            .env("RUST_LOG", None);
        let process = CenterProcess::start(&spec).with_context(|| format!("starting {id}"))?;
        let addr = listen
            .parse()
            .with_context(|| format!("{id} listens on {listen}"))?;
        eprintln!("site {id} listening on {listen}");
        sites.push(Site { id, addr, process });
    }
    Ok(sites)
}

/// A new site enrolment token from the center, asked with the operator's token.
fn site_token(center: &SpawnedCenter, label: &str) -> anyhow::Result<String> {
    let ca_pem = read_text(&center.data_dir().join("ca.pem"), "the center's CA")?;
    let token = read_text(
        &center.data_dir().join("operator.token"),
        "the operator token",
    )?;
    let operator =
        Client::new(&format!("https://{}", center.addr()?), &ca_pem, None)?.with_token(&token);
    Ok(operator.new_site_token(label)?.token)
}
