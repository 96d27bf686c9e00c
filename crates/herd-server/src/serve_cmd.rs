//! `herd serve` and `herd config default`: command-line flags merged over the TOML file, logs
//! set up, and the center run on a multi-threaded tokio runtime.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::Outcome;
use herd_center::config::{CenterConfig, ConfigFile, DEFAULT_CONFIG, LogFormat};

/// Run the center: the maintenance server terminals check in with, vendors publish to and
/// operators watch.
///
/// At first start it creates its CA, a server certificate for `server_names`, and an operator
/// API token in `<data-dir>/operator.token` (mode 0600). Terminals enrol with an enrolment
/// token (`POST /v1/enrolment-tokens`) and use mutual TLS from then on; the API is described at
/// `/v1/openapi.json`, metrics at `/metrics`. Every flag overrides the same key of `--config`;
/// `herd config default` prints a commented file with every key.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file (see `herd config default`).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// HTTPS address to listen on [default: 127.0.0.1:8443].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Directory for the embedded database, package blobs and the CA certificate copy
    /// [default: herd-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// `postgres://…` to use PostgreSQL instead of embedded SQLite.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Where package blobs are kept [default: <data-dir>/blobs].
    #[arg(long, value_name = "DIR")]
    blob_dir: Option<PathBuf>,
    /// Also serve plaintext HTTP here (loopback only; no terminal endpoints).
    #[arg(long, value_name = "ADDR")]
    plaintext_listen: Option<String>,
    /// Serve Prometheus metrics only here (plaintext), not on the API listeners.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Seconds between terminal check-ins [default: 3600].
    #[arg(long, value_name = "SECS")]
    checkin_interval: Option<u64>,
    /// A name the server certificate is issued for (repeat for several) [default: localhost,
    /// 127.0.0.1, ::1].
    #[arg(long = "server-name", value_name = "NAME")]
    server_names: Vec<String>,
    /// Log format: text or json [default: text].
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
    /// Log filter, like `info` or `herd_center=debug,info` [default: info; env RUST_LOG wins].
    #[arg(long, value_name = "FILTER")]
    log: Option<String>,
    /// `center` (the default) or `site`: a site server, which enrols with the center at
    /// `--upstream`, serves its terminals with its own planner over the replicated catalog,
    /// mirrors the signed packages and relays what its terminals report, queuing it while the
    /// center is down.
    #[arg(long, value_name = "ROLE")]
    role: Option<String>,
    /// Site: the center's URL, like https://center.example:8443.
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    /// Site, first start: the center's CA certificate (its ca.pem).
    #[arg(long, value_name = "FILE")]
    upstream_ca: Option<PathBuf>,
    /// Site: this site's id (an identifier such as office-1).
    #[arg(long, value_name = "ID")]
    site_id: Option<String>,
    /// Site, first start: a site enrolment token (`herd sites token create` at the center).
    #[arg(long, value_name = "TOKEN")]
    site_token: Option<String>,
    /// Site: the URL its terminals and the center reach it at [default: https://<first
    /// server name>:<listen port>].
    #[arg(long, value_name = "URL")]
    site_url: Option<String>,
}

impl ServeArgs {
    fn into_config(self) -> anyhow::Result<CenterConfig> {
        let mut file = match &self.config {
            Some(path) => ConfigFile::read(path)?,
            None => ConfigFile::default(),
        };
        macro_rules! flag {
            ($field:ident) => {
                if self.$field.is_some() {
                    file.$field = self.$field;
                }
            };
        }
        flag!(listen);
        flag!(data_dir);
        flag!(database);
        flag!(blob_dir);
        flag!(plaintext_listen);
        flag!(metrics_listen);
        flag!(log_format);
        flag!(log);
        flag!(role);
        flag!(upstream);
        flag!(upstream_ca);
        flag!(site_id);
        flag!(site_token);
        flag!(site_url);
        if self.checkin_interval.is_some() {
            file.checkin_interval_secs = self.checkin_interval;
        }
        if !self.server_names.is_empty() {
            file.server_names = Some(self.server_names);
        }
        CenterConfig::from_file(file)
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<Outcome> {
    // Everything the center creates (database, WAL, blobs, tokens, keys) is its owner's alone,
    // from the first byte: permissions fixed after creation would leave a window.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let config = args.into_config()?;
    init_logs(config.log_format, &config.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("herd-center")
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(herd_center::run(config));
    // A site's held pull runs on a blocking thread until the center answers it: don't wait
    // for it (nothing it holds needs finishing; the queue is durable).
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result?;
    Ok(Outcome::Success)
}

/// Structured logs on stderr: human-readable text or one JSON object per line.
pub fn init_logs(format: LogFormat, filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Configuration helpers.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print a commented configuration file with every key and its default.
    Default,
    /// Check a configuration file and print the settings it results in.
    Check {
        /// The file to check.
        file: PathBuf,
    },
}

pub fn config(command: ConfigCommand) -> anyhow::Result<Outcome> {
    match command {
        ConfigCommand::Default => {
            print!("{DEFAULT_CONFIG}");
            Ok(Outcome::Success)
        }
        ConfigCommand::Check { file } => {
            let config = CenterConfig::from_file(ConfigFile::read(&file)?)
                .with_context(|| format!("{} is not a usable configuration", file.display()))?;
            println!("{config:#?}");
            Ok(Outcome::Success)
        }
    }
}
