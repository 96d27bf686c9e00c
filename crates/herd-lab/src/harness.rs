//! The one process harness for a real `herd serve`: start it on a free loopback port with its
//! output in a log file, wait until it answers, give clients for it, stop it the way an init
//! system would (SIGTERM, then SIGKILL after a grace time), and kill it when dropped.
//!
//! `herd demo`, `herd sim` and the end-to-end tests all start their centers through it, so a
//! change to how a center starts or signals readiness is made once.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use herd_client::Client;

/// How long `herd serve` may take to create its CA and database and answer.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the center may take to stop after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a waiting loop looks at the child.
const POLL: Duration = Duration::from_millis(20);
/// How many lines of a log are quoted when the center failed.
const LOG_TAIL_LINES: usize = 20;

/// How to start a center.
#[derive(Clone, Debug)]
pub struct CenterSpec {
    /// The `herd` program.
    pub herd: PathBuf,
    pub data_dir: PathBuf,
    /// Where its stdout and stderr go (appended).
    pub log: PathBuf,
    /// More arguments after `serve --data-dir D --listen A`.
    pub args: Vec<OsString>,
    /// Environment variables to set (`Some`) or remove (`None`).
    pub env: Vec<(String, Option<String>)>,
    /// The address to listen on; a free loopback port when `None`. A center restarted on its
    /// data directory keeps its address when it is given here.
    pub listen: Option<String>,
}

impl CenterSpec {
    /// `herd serve` of `herd` with its data in `data_dir` and its log in `data_dir/center.log`.
    pub fn new(herd: &Path, data_dir: &Path) -> CenterSpec {
        CenterSpec {
            herd: herd.to_owned(),
            data_dir: data_dir.to_owned(),
            log: data_dir.join("center.log"),
            args: Vec::new(),
            env: Vec::new(),
            listen: None,
        }
    }

    pub fn listen(mut self, addr: &str) -> CenterSpec {
        self.listen = Some(addr.to_owned());
        self
    }

    pub fn log(mut self, log: &Path) -> CenterSpec {
        self.log = log.to_owned();
        self
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> CenterSpec {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> CenterSpec {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, name: &str, value: Option<&str>) -> CenterSpec {
        self.env.push((name.to_owned(), value.map(str::to_owned)));
        self
    }
}

/// A running `herd serve`, killed when dropped unless [`CenterProcess::stop`] was called.
#[derive(Debug)]
pub struct CenterProcess {
    child: Option<Child>,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// `127.0.0.1:PORT`.
    pub listen: String,
    pub port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl CenterProcess {
    /// Starts the center and waits until it answers its health check.
    pub fn start(spec: &CenterSpec) -> anyhow::Result<CenterProcess> {
        CenterProcess::start_interruptible(spec, &mut |pause| {
            std::thread::sleep(pause);
            false
        })
    }

    /// Like [`CenterProcess::start`], waiting through `sleep`, which returns true when the
    /// wait should end (the user pressed Ctrl-C).
    ///
    /// The port is chosen free just before the center binds it; if someone else takes it in
    /// between, the center says so and another port is tried.
    pub fn start_interruptible(
        spec: &CenterSpec,
        sleep: &mut dyn FnMut(Duration) -> bool,
    ) -> anyhow::Result<CenterProcess> {
        const ATTEMPTS: usize = 3;
        fs::create_dir_all(&spec.data_dir).with_context(|| {
            format!(
                "cannot create the center's directory {}",
                spec.data_dir.display()
            )
        })?;
        for attempt in 1..=ATTEMPTS {
            let listen = match &spec.listen {
                Some(addr) => addr.clone(),
                None => format!("127.0.0.1:{}", free_port()?),
            };
            let port = listen
                .rsplit_once(':')
                .and_then(|(_, port)| port.parse().ok())
                .with_context(|| format!("{listen} is not a host:port address"))?;
            let log_file = append(&spec.log)?;
            let mut command = Command::new(&spec.herd);
            command
                .arg("serve")
                .arg("--data-dir")
                .arg(&spec.data_dir)
                .arg("--listen")
                .arg(&listen)
                .args(&spec.args)
                .stdin(Stdio::null())
                .stdout(
                    log_file
                        .try_clone()
                        .context("cannot share the center's log")?,
                )
                .stderr(log_file);
            for (name, value) in &spec.env {
                match value {
                    Some(value) => command.env(name, value),
                    None => command.env_remove(name),
                };
            }
            let child = command
                .spawn()
                .with_context(|| format!("cannot run {} serve", spec.herd.display()))?;
            let mut center = CenterProcess {
                child: Some(child),
                url: format!("https://{listen}"),
                listen,
                port,
                data_dir: spec.data_dir.clone(),
                log: spec.log.clone(),
            };
            match center.wait_ready(sleep)? {
                None => return Ok(center),
                Some(status) => {
                    let tail = log_tail(&spec.log);
                    if attempt < ATTEMPTS && spec.listen.is_none() && tail.contains("in use") {
                        continue;
                    }
                    bail!(
                        "herd serve exited with {status} before it answered; its log ({}) ends with:\n{tail}",
                        spec.log.display()
                    );
                }
            }
        }
        unreachable!("the last attempt returns or fails")
    }

    /// Waits until the center answers; `Some(status)` if it exited first.
    fn wait_ready(
        &mut self,
        sleep: &mut dyn FnMut(Duration) -> bool,
    ) -> anyhow::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("started");
            if let Some(status) = child.try_wait().context("cannot watch herd serve")? {
                self.child = None;
                return Ok(Some(status));
            }
            // The center writes ca.pem last, once its start-up is complete. (The operator token
            // is written only by the first center process of a database.)
            if self.ca_path().exists() {
                let answered = self
                    .client(None)
                    .ok()
                    .is_some_and(|client| client.health().is_ok());
                if answered {
                    return Ok(None);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "herd serve did not answer at {} within {} s; its log ({}) ends with:\n{}",
                    self.url,
                    START_TIMEOUT.as_secs(),
                    self.log.display(),
                    log_tail(&self.log)
                );
            }
            if sleep(POLL) {
                bail!("interrupted while the center was starting");
            }
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The center's CA certificate, which clients and agents trust it through.
    pub fn ca_path(&self) -> PathBuf {
        self.data_dir.join("ca.pem")
    }

    pub fn ca_pem(&self) -> anyhow::Result<String> {
        read_text(&self.ca_path(), "the center's CA certificate")
    }

    /// The operator API token `herd serve` created at its first start.
    pub fn operator_token_path(&self) -> PathBuf {
        self.data_dir.join("operator.token")
    }

    pub fn operator_token(&self) -> anyhow::Result<String> {
        read_text(&self.operator_token_path(), "the operator token")
    }

    /// An API client for this center, with `token` when given.
    pub fn client(&self, token: Option<&str>) -> anyhow::Result<Client> {
        let client = Client::new(&self.url, &self.ca_pem()?, None)
            .with_context(|| format!("cannot set up a client for {}", self.url))?;
        Ok(match token {
            Some(token) => client.with_token(token),
            None => client,
        })
    }

    /// A client with the operator's token.
    pub fn operator(&self) -> anyhow::Result<Client> {
        self.client(Some(&self.operator_token()?))
    }

    /// A client presenting a terminal's certificate.
    pub fn terminal_client(&self, identity: &herd_tls::KeyPairPem) -> anyhow::Result<Client> {
        Client::new(&self.url, &self.ca_pem()?, Some(identity))
            .with_context(|| format!("cannot set up a client for {}", self.url))
    }

    /// Whether the center process is still running.
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The end of the center's log, indented, for error messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// Stops the center the way an init system would (SIGTERM, so it finishes what is in
    /// flight and closes its database), and kills it if it has not exited in time. Returns
    /// its exit status, and whether it had to be killed.
    pub fn stop(&mut self) -> anyhow::Result<(ExitStatus, bool)> {
        let Some(mut child) = self.child.take() else {
            bail!("the center is not running");
        };
        if let Some(status) = child.try_wait().context("cannot watch herd serve")? {
            return Ok((status, false));
        }
        // std can only send SIGKILL; `kill` is everywhere `herd serve` runs.
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if sent {
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                if let Some(status) = child.try_wait().context("cannot watch herd serve")? {
                    return Ok((status, false));
                }
                std::thread::sleep(POLL);
            }
        }
        let _ = child.kill();
        let status = child.wait().context("cannot wait for herd serve")?;
        Ok((status, true))
    }

    /// Kills the center at once (SIGKILL), as a crash or a power cut would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for CenterProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free loopback port")?;
    Ok(listener
        .local_addr()
        .context("cannot find a free loopback port")?
        .port())
}

/// Opens a log file for appending, creating it and its directory.
pub fn append(path: &Path) -> anyhow::Result<File> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the log's directory {}", dir.display()))?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open the log {}", path.display()))
}

/// Reads a file the center wrote (CA certificate, token), trimmed, naming it on failure.
pub fn read_text(path: &Path, what: &str) -> anyhow::Result<String> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    Ok(text.trim().to_owned())
}

/// The last lines of a log, indented, for an error message.
pub fn log_tail(path: &Path) -> String {
    match fs::read_to_string(path) {
        Ok(text) => tail_lines(&text, LOG_TAIL_LINES),
        Err(err) => format!("    (cannot read {}: {err})", path.display()),
    }
}

/// The last `n` lines of `text`, indented.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    let shown: Vec<String> = lines[start..].iter().map(|l| format!("    {l}")).collect();
    if shown.is_empty() {
        "    (nothing)".to_owned()
    } else {
        shown.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tails_keep_the_last_lines_indented() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "    b\n    c");
        assert_eq!(tail_lines("", 3), "    (nothing)");
    }

    #[test]
    fn a_program_that_is_not_a_center_is_reported_with_its_log() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let spec = CenterSpec::new(Path::new("/bin/sh"), &dir.path().join("data"));
        let err = CenterProcess::start(&spec).expect_err("sh is no center");
        let message = format!("{err:#}");
        assert!(message.contains("exited with"), "{message}");
        assert!(message.contains("center.log"), "{message}");
    }
}
