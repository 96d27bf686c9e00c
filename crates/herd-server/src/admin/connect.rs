//! How a command finds its center and its credentials (`--server`, `--ca`, `--token`,
//! `--token-file`, the `HERD_*` variables, the defaults `herd serve` writes to `herd-data/`),
//! and what a failed call prints: the hints name these same settings, so they live here.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use clap::Args;
use herd_client::{Client, ClientError};

use crate::Outcome;

const DEFAULT_SERVER: &str = "https://127.0.0.1:8443";
const DEFAULT_CA: &str = "herd-data/ca.pem";
const DEFAULT_TOKEN_FILE: &str = "herd-data/operator.token";

/// Where the center is and how to authenticate to it; every flag has an environment variable.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The center's URL [env: HERD_SERVER] [default: https://127.0.0.1:8443].
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// The center's CA certificate: the only one its server certificate is trusted from
    /// [env: HERD_CA] [default: herd-data/ca.pem, which `herd serve` writes].
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// API token. Prefer HERD_TOKEN or --token-file: other users can see command lines
    /// [env: HERD_TOKEN].
    #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
    token: Option<String>,
    /// File holding the API token [env: HERD_TOKEN_FILE] [default: herd-data/operator.token,
    /// the operator token `herd serve` creates at its first start].
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

/// A client ready to call the center, and what to tell the user when a call fails.
pub(super) struct Session {
    pub(super) client: Client,
    ca: PathBuf,
    /// Where the token came from, for error hints.
    token_source: String,
}

impl Session {
    pub(super) fn open(args: &ServerArgs) -> anyhow::Result<Session> {
        let server = args
            .server
            .clone()
            .or_else(|| env_nonempty("HERD_SERVER"))
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
        let ca = args
            .ca
            .clone()
            .or_else(|| env_nonempty("HERD_CA").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CA));
        let ca_pem = std::fs::read_to_string(&ca).with_context(|| {
            format!(
                "cannot read the center's CA certificate {} (`herd serve` writes it to <data-dir>/ca.pem; pass --ca FILE or set HERD_CA)",
                ca.display()
            )
        })?;
        let (token, token_source) = resolve_token(args)?;
        let client = Client::new(&server, &ca_pem, None)
            .map_err(|err| anyhow!("{err} (the CA certificate was read from {})", ca.display()))?
            .with_token(&token);
        Ok(Session {
            client,
            ca,
            token_source,
        })
    }

    /// Turns a failed call into the outcome: refusals are printed and exit 1, anything else
    /// is returned as an error (exit 2) with a hint at the likely cause.
    pub(super) fn failed(&self, what: &str, err: ClientError) -> anyhow::Result<Outcome> {
        if err.is_refusal() {
            eprintln!("herd: {what}: {err}");
            if matches!(err.code(), Some("unauthenticated" | "token_expired")) {
                eprintln!("herd: the API token came from {}", self.token_source);
            }
            return Ok(Outcome::InvalidInput);
        }
        let hint = match &err {
            ClientError::Certificate { .. } => {
                format!(
                    "\n  is {} the CA of the center at {}? pass --ca FILE or set HERD_CA",
                    self.ca.display(),
                    self.client.server()
                )
            }
            ClientError::Unreachable { .. } => {
                "\n  is `herd serve` running there? pass --server URL or set HERD_SERVER".to_owned()
            }
            _ => String::new(),
        };
        Err(anyhow!("{what}: {err}{hint}"))
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The token and a description of where it came from: `--token`, then `--token-file`, then
/// HERD_TOKEN, then HERD_TOKEN_FILE, then the operator token file of a local center.
fn resolve_token(args: &ServerArgs) -> anyhow::Result<(String, String)> {
    if let Some(token) = &args.token {
        return Ok((token.trim().to_owned(), "--token".to_owned()));
    }
    let file = match &args.token_file {
        Some(file) => file.clone(),
        None => {
            if let Some(token) = env_nonempty("HERD_TOKEN") {
                return Ok((token.trim().to_owned(), "HERD_TOKEN".to_owned()));
            }
            env_nonempty("HERD_TOKEN_FILE")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_TOKEN_FILE))
        }
    };
    let text = std::fs::read_to_string(&file).with_context(|| {
        format!(
            "no API token: cannot read {} (pass --token-file FILE, or set HERD_TOKEN or HERD_TOKEN_FILE; `herd serve` writes an operator token to <data-dir>/operator.token)",
            file.display()
        )
    })?;
    let token = text.trim();
    if token.is_empty() {
        anyhow::bail!("no API token: {} is empty", file.display());
    }
    Ok((token.to_owned(), format!("the file {}", file.display())))
}
