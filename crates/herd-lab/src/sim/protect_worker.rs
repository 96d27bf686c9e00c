//! `herd sim protect-worker`: one process of `herd sim protect`'s simulated fleet. It enrols
//! its share of the terminals with their site (real keys and certificates), has each check
//! in, refresh its signed metadata and hold its push connection (`GET /v1/wait`), and when a
//! terminal is woken does what an agent does for a new definitions release: check in, get the
//! `update` plan, refresh the metadata (timestamp, then snapshot, targets and its vendor's
//! role when they changed), find the plan's target in the verified metadata, download the
//! package from its site, check its length and SHA-256, and report the plan (`plan.report`).
//! The time its report is acknowledged is what `herd sim protect` measures.
//!
//! Cost on 2 cores: one rustls `ClientConfig` serves every terminal of the process, the
//! client certificate picked per connection from the task that opens it (a task-local), and
//! TLS session resumption is off (a shared session cache would let one terminal resume
//! another's session, hence its identity). Signed metadata is verified once per distinct
//! chain of documents (timestamp, snapshot, targets, delegated roles) in the process, with
//! `herd_tuf`'s `TrustedSet` as the agent does; every terminal still downloads each document
//! it needs and checks the package it downloaded against the verified target itself.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead as _, Write as _};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context as _, bail};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, StatusCode};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, SignatureScheme};
use sha2::{Digest as _, Sha256};
use tokio::sync::{Semaphore, mpsc};

use super::client::{Endpoint, Https};
use super::protect_wire::{self as wire, Goal, Wake, WorkerCommand, WorkerNews, WorkerOrders};
use herd_proto::api::{
    CheckinRequest, CheckinResponse, EnrolRequest, EnrolResponse, EventAck, EventBatch, EventDoc,
    HerdSetUpdated, PlanReport, ReportOutcome, StepResult, StepStatus, events,
};
use herd_proto::distribution::{
    HERD_ROLE, HERD_SET_TARGET, METADATA_PATH, TARGETS_PATH, consistent_target_name,
};
use herd_proto::plan::{Action, Step};
use herd_proto::site::{WAIT, WaitResponse};
use herd_proto::terminal::{HardwareDoc, InstalledDoc};
use herd_tuf::metadata::{Envelope, Snapshot, TargetFile, Targets, TimestampRole};
use herd_tuf::{TargetSearch, TrustedSet};

/// How long one request may take (a held wait: its own timeout plus this).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts of a check-in cycle that failed on the network before going back to waiting.
const CYCLE_ATTEMPTS: u32 = 5;
/// Pause between attempts (with jitter up to as much again).
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// The largest metadata document and package a simulated terminal reads.
const MAX_METADATA_BYTES: usize = 8 << 20;

tokio::task_local! {
    /// The client certificate of the terminal whose task opens a connection.
    static IDENTITY: Arc<CertifiedKey>;
}

/// Presents the certificate of the terminal whose task is connecting (none outside one, as
/// for enrolment).
#[derive(Debug)]
struct TaskIdentity;

impl ResolvesClientCert for TaskIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        IDENTITY.try_with(Arc::clone).ok()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The worker's entry point: orders on stdin, news on stdout.
pub fn run() -> anyhow::Result<()> {
    let mut stdin = std::io::stdin().lock();
    let mut line = String::new();
    stdin
        .read_line(&mut line)
        .context("cannot read the worker's orders from stdin")?;
    let orders: WorkerOrders =
        serde_json::from_str(&line).context("the worker's orders are not valid JSON")?;
    drop(stdin);
    herd_tls::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(work(orders))
}

fn say(news: &WorkerNews) {
    let mut line = serde_json::to_string(news).expect("news serialises");
    line.push('\n');
    let mut out = std::io::stdout().lock();
    // The parent reads every line; if it is gone, so is the point of going on.
    if out
        .write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        std::process::exit(1);
    }
}

/// What every terminal task of the process shares.
struct Sim {
    upstreams: Vec<Endpoint>,
    source: Option<IpAddr>,
    tls: Arc<ClientConfig>,
    platform: String,
    wake: Wake,
    /// The TUF root every terminal got at enrolment.
    root: OnceLock<Vec<u8>>,
    /// Connections being opened at once.
    connect_gate: Semaphore,
    docs: Mutex<HashMap<[u8; 32], Arc<Doc>>>,
    verdicts: Mutex<HashMap<Vec<u8>, Verdict>>,
    verifications: AtomicU64,
    /// The run under way and who is protected in it.
    run: Mutex<Option<RunState>>,
    errors: Mutex<BTreeMap<String, u64>>,
    metadata_bytes: AtomicU64,
    package_bytes: AtomicU64,
    requests: AtomicU64,
    enrolled: AtomicUsize,
    holding: AtomicUsize,
    polling: AtomicUsize,
    /// Terminals in the middle of a cycle (woken, checking in, fetching, reporting).
    busy: AtomicUsize,
    protected_now: tokio::sync::Notify,
}

struct RunState {
    run: u32,
    goal: Goal,
    protected: Vec<(u32, u64)>,
    /// The signed length of the goal's target, once a terminal found it.
    target_bytes: u64,
}

impl Sim {
    fn error(&self, kind: &str) {
        *self
            .errors
            .lock()
            .expect("errors lock")
            .entry(kind.to_owned())
            .or_default() += 1;
    }

    /// The one copy of a document with these bytes.
    fn intern(&self, bytes: Bytes) -> Arc<Doc> {
        let sha: [u8; 32] = Sha256::digest(&bytes).into();
        self.docs
            .lock()
            .expect("docs lock")
            .entry(sha)
            .or_insert_with(|| {
                Arc::new(Doc {
                    sha,
                    bytes,
                    nav: OnceLock::new(),
                })
            })
            .clone()
    }

    /// Terminal `index` reached what `reached` says of the run's goal (its report
    /// acknowledged), through a target of `target_bytes`.
    fn protected(&self, index: u32, reached: impl Fn(&Goal) -> bool, target_bytes: u64) {
        let mut run = self.run.lock().expect("run lock");
        if let Some(state) = run.as_mut()
            && reached(&state.goal)
        {
            state.protected.push((index, unix_micros()));
            state.target_bytes = target_bytes;
            self.protected_now.notify_one();
        }
    }

    /// The verdict on `target` of the signed metadata `chain`, computed once per distinct
    /// chain.
    fn verify(&self, chain: &Chain, target: &str) -> Verdict {
        let mut key = Vec::with_capacity(32 * (2 + chain.roles.len()) + target.len());
        for doc in [&chain.timestamp, &chain.snapshot].into_iter().flatten() {
            key.extend_from_slice(&doc.sha);
        }
        for (role, doc) in &chain.roles {
            key.extend_from_slice(role.as_bytes());
            key.extend_from_slice(&doc.sha);
        }
        key.extend_from_slice(target.as_bytes());
        if let Some(verdict) = self.verdicts.lock().expect("verdicts lock").get(&key) {
            return verdict.clone();
        }
        let root = self.root.get().map(Vec::as_slice).unwrap_or_default();
        let verdict = verify_chain(root, chain, target);
        self.verifications.fetch_add(1, Relaxed);
        self.verdicts
            .lock()
            .expect("verdicts lock")
            .insert(key, verdict.clone());
        verdict
    }
}

/// A metadata document as downloaded, and what a client reads of it to know what to fetch
/// next (parsed once per process).
struct Doc {
    sha: [u8; 32],
    bytes: Bytes,
    nav: OnceLock<Option<Nav>>,
}

#[derive(Debug)]
struct Nav {
    version: u64,
    /// The versions a timestamp or snapshot lists (`snapshot.json`, `targets.json`, …).
    meta: BTreeMap<String, u64>,
}

impl Doc {
    fn nav(&self, role: &str) -> Option<&Nav> {
        self.nav
            .get_or_init(|| {
                let meta = |m: &BTreeMap<String, herd_tuf::metadata::MetaFile>| {
                    m.iter().map(|(k, v)| (k.clone(), v.version)).collect()
                };
                match role {
                    "timestamp" => Envelope::<TimestampRole>::parse(role, &self.bytes)
                        .ok()
                        .map(|e| Nav {
                            version: e.signed.version,
                            meta: meta(&e.signed.meta),
                        }),
                    "snapshot" => Envelope::<Snapshot>::parse(role, &self.bytes)
                        .ok()
                        .map(|e| Nav {
                            version: e.signed.version,
                            meta: meta(&e.signed.meta),
                        }),
                    _ => Envelope::<Targets>::parse(role, &self.bytes)
                        .ok()
                        .map(|e| Nav {
                            version: e.signed.version,
                            meta: BTreeMap::new(),
                        }),
                }
            })
            .as_ref()
    }
}

/// The signed metadata a terminal holds.
#[derive(Default)]
struct Chain {
    timestamp: Option<Arc<Doc>>,
    snapshot: Option<Arc<Doc>>,
    /// `targets` and the delegated roles loaded, by name.
    roles: BTreeMap<String, Arc<Doc>>,
}

#[derive(Clone, Debug)]
enum Verdict {
    /// Listed by this role.
    Found(String, TargetFile),
    NeedRole(String),
    NotFound,
    Refused(String),
}

/// TUF's client workflow over documents already downloaded, from the root of enrolment.
fn verify_chain(root: &[u8], chain: &Chain, target: &str) -> Verdict {
    let refused =
        |what: &str, err: herd_tuf::TrustError| Verdict::Refused(format!("{what}: {err}"));
    let now = herd_core::Timestamp::from_unix_seconds(unix_seconds());
    let mut set = match TrustedSet::new(root, now) {
        Ok(set) => set,
        Err(err) => return refused("root", err),
    };
    let (Some(timestamp), Some(snapshot), Some(targets)) = (
        &chain.timestamp,
        &chain.snapshot,
        chain.roles.get("targets"),
    ) else {
        return Verdict::Refused("metadata missing".to_owned());
    };
    if let Err(err) = set.update_timestamp(&timestamp.bytes, None) {
        return refused("timestamp", err);
    }
    if let Err(err) = set.update_snapshot(&snapshot.bytes, None) {
        return refused("snapshot", err);
    }
    if let Err(err) = set.update_targets(&targets.bytes) {
        return refused("targets", err);
    }
    for _ in 0..=herd_tuf::client::MAX_DELEGATIONS {
        match set.find_target(target) {
            TargetSearch::Found { role, file } => return Verdict::Found(role, file),
            TargetSearch::NotFound => return Verdict::NotFound,
            TargetSearch::NeedRole { role, delegator } => match chain.roles.get(&role) {
                Some(doc) => {
                    if let Err(err) = set.update_delegated(&role, &delegator, &doc.bytes) {
                        return refused(&role, err);
                    }
                }
                None => return Verdict::NeedRole(role),
            },
        }
    }
    Verdict::NotFound
}

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn unix_seconds() -> i64 {
    (unix_micros() / 1_000_000) as i64
}

async fn work(orders: WorkerOrders) -> anyhow::Result<()> {
    let mut upstreams = Vec::new();
    for upstream in &orders.upstreams {
        let addr = upstream
            .parse()
            .with_context(|| format!("upstream {upstream:?} is not an address"))?;
        upstreams.push(Endpoint::loopback(addr));
    }
    if upstreams.is_empty() {
        bail!("the worker's orders name no upstream");
    }
    let source = match &orders.source {
        Some(source) => Some(
            source
                .parse::<IpAddr>()
                .with_context(|| format!("source {source:?} is not an address"))?,
        ),
        None => None,
    };
    let mut tls = (*herd_tls::client_config(&orders.ca_pem, None)?).clone();
    tls.client_auth_cert_resolver = Arc::new(TaskIdentity);
    tls.resumption = rustls::client::Resumption::disabled();
    let sim = Arc::new(Sim {
        upstreams,
        source,
        tls: Arc::new(tls),
        platform: orders.platform.clone(),
        wake: orders.wake,
        root: OnceLock::new(),
        connect_gate: Semaphore::new(orders.connect_concurrency.max(1)),
        docs: Mutex::default(),
        verdicts: Mutex::default(),
        verifications: AtomicU64::new(0),
        run: Mutex::new(None),
        errors: Mutex::default(),
        metadata_bytes: AtomicU64::new(0),
        package_bytes: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        enrolled: AtomicUsize::new(0),
        holding: AtomicUsize::new(0),
        polling: AtomicUsize::new(0),
        busy: AtomicUsize::new(0),
        protected_now: tokio::sync::Notify::new(),
    });

    // Commands from the parent, read on a thread of their own.
    let (commands_tx, mut commands) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<WorkerCommand>(&line) {
                Ok(command) => {
                    if commands_tx.send(command).is_err() {
                        break;
                    }
                }
                Err(err) => eprintln!("herd sim protect-worker: ignored command {line:?}: {err}"),
            }
        }
        // The parent closed our stdin: it is gone or done with us.
        std::process::exit(0);
    });

    let terminals = enrol_all(&sim, &orders).await;
    let enrolled = terminals.len();
    for terminal in terminals {
        tokio::spawn(terminal.live(sim.clone()));
    }
    // Every terminal checks in, refreshes and then holds its wait (or polls).
    loop {
        let holding = sim.holding.load(Relaxed);
        if holding >= enrolled {
            break;
        }
        say(&WorkerNews::Progress { enrolled, holding });
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let errors = std::mem::take(&mut *sim.errors.lock().expect("errors lock"));
    say(&WorkerNews::Ready {
        enrolled,
        errors,
        polling: sim.polling.load(Relaxed),
    });

    let mut finishing = None;
    // Asked whether the fleet is quiet: looked at every 100 ms until no terminal is busy.
    let mut quiet_asked = false;
    let mut quiet_tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = quiet_tick.tick(), if quiet_asked => {
                if sim.busy.load(Relaxed) == 0 {
                    quiet_asked = false;
                    say(&WorkerNews::Quiet);
                }
            }
            command = commands.recv() => match command {
                None => return Ok(()),
                Some(WorkerCommand::Run { run, goal }) => {
                    std::mem::take(&mut *sim.errors.lock().expect("errors lock"));
                    sim.metadata_bytes.store(0, Relaxed);
                    sim.package_bytes.store(0, Relaxed);
                    sim.requests.store(0, Relaxed);
                    sim.verifications.store(0, Relaxed);
                    *sim.run.lock().expect("run lock") = Some(RunState {
                        run,
                        goal,
                        protected: Vec::with_capacity(enrolled),
                        target_bytes: 0,
                    });
                }
                Some(WorkerCommand::Finish { run }) => finishing = Some(run),
                Some(WorkerCommand::Quiet) => quiet_asked = true,
            },
            () = sim.protected_now.notified() => {}
        }
        let done = {
            let run = sim.run.lock().expect("run lock");
            run.as_ref().is_some_and(|state| {
                state.protected.len() >= enrolled || finishing == Some(state.run)
            })
        };
        if done {
            let state = sim.run.lock().expect("run lock").take().expect("a run");
            finishing = None;
            say(&WorkerNews::Done {
                run: state.run,
                protected: state.protected,
                errors: std::mem::take(&mut *sim.errors.lock().expect("errors lock")),
                bytes: wire::Bytes {
                    metadata: sim.metadata_bytes.load(Relaxed),
                    packages: sim.package_bytes.load(Relaxed),
                    requests: sim.requests.load(Relaxed),
                },
                verifications: sim.verifications.load(Relaxed),
                target_bytes: state.target_bytes,
            });
        }
    }
}

/// Enrols every terminal of the orders, `connect_concurrency` at a time; those that could not
/// enrol are counted in the errors and left out.
async fn enrol_all(sim: &Arc<Sim>, orders: &WorkerOrders) -> Vec<Terminal> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let workers = orders.connect_concurrency.clamp(1, 64).min(orders.count);
    for _ in 0..workers {
        let (sim, next, orders) = (sim.clone(), next.clone(), orders.clone());
        tasks.spawn(async move {
            let mut enrolled = Vec::new();
            let mut connections: HashMap<usize, Https> = HashMap::new();
            loop {
                let offset = next.fetch_add(1, Relaxed);
                if offset >= orders.count {
                    return enrolled;
                }
                let index = orders.first + offset;
                let upstream = index % sim.upstreams.len();
                match enrol_one(&sim, &orders, index, upstream, &mut connections).await {
                    Ok(terminal) => {
                        sim.enrolled.fetch_add(1, Relaxed);
                        enrolled.push(terminal);
                    }
                    Err(kind) => sim.error(&format!("enrol: {kind}")),
                }
            }
        });
    }
    let mut terminals = Vec::with_capacity(orders.count);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(Ok(enrolled)) => terminals.extend(enrolled),
                Some(Err(err)) => sim.error(&format!("enrol task: {err}")),
                None => break,
            },
            _ = tick.tick() => say(&WorkerNews::Progress {
                enrolled: sim.enrolled.load(Relaxed),
                holding: 0,
            }),
        }
    }
    terminals
}

async fn enrol_one(
    sim: &Sim,
    orders: &WorkerOrders,
    index: usize,
    upstream: usize,
    connections: &mut HashMap<usize, Https>,
) -> Result<Terminal, String> {
    let id = format!("{}-{index}", orders.id_prefix);
    let (key_pem, csr_pem) =
        herd_tls::new_key_and_csr(&id).map_err(|err| format!("key generation: {err}"))?;
    let request = EnrolRequest {
        token: orders.enrol_token.clone(),
        csr_pem,
        id: Some(id.clone()),
        user: None,
        hardware: HardwareDoc {
            kind: sim.platform.clone(),
            platform: sim.platform.clone(),
            model: None,
        },
        tz: None,
    };
    let body = serde_json::to_vec(&request).map_err(|err| format!("serialising: {err}"))?;
    if connections.get(&upstream).is_none_or(Https::is_closed) {
        let connection = Https::connect_from(&sim.upstreams[upstream], sim.tls.clone(), sim.source)
            .await
            .map_err(|err| err.kind().to_owned())?;
        connections.insert(upstream, connection);
    }
    let connection = connections.get_mut(&upstream).expect("just connected");
    let (status, answer) = match connection
        .call(Method::POST, "/v1/enrol", None, Some(body))
        .await
    {
        Ok(answer) => answer,
        Err(err) => {
            connections.remove(&upstream);
            return Err(format!("{}", err.root_cause()));
        }
    };
    if status != StatusCode::CREATED {
        return Err(refusal_kind(status, &answer));
    }
    let enrolled: EnrolResponse =
        serde_json::from_slice(&answer).map_err(|_| "unreadable enrolment answer".to_owned())?;
    if let Some(root) = enrolled.tuf_root {
        let _ = sim.root.set(root.into_bytes());
    } else {
        return Err("the enrolment answer has no TUF root".to_owned());
    }
    let certs = CertificateDer::pem_slice_iter(enrolled.certificate_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "the certificate is not PEM".to_owned())?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|_| "the key is not PEM".to_owned())?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|err| format!("the key cannot sign: {err}"))?;
    Ok(Terminal {
        index: index as u32,
        upstream,
        identity: Arc::new(CertifiedKey::new(certs, signing)),
        installed: orders.installed.clone(),
        token: String::new(),
        seq: 0,
        herd_set: None,
        connection: None,
        chain: Chain::default(),
        offered: HashMap::new(),
        polling: false,
        counted: false,
    })
}

/// One simulated terminal, owned by its task.
struct Terminal {
    index: u32,
    upstream: usize,
    identity: Arc<CertifiedKey>,
    installed: InstalledDoc,
    /// The last change token its wait saw.
    token: String,
    /// The last event seq it used.
    seq: u64,
    /// The SHA-256 of the Herd signature set it holds.
    herd_set: Option<String>,
    connection: Option<Https>,
    chain: Chain,
    /// The documents the last check-in's answer carried, by name (for its cycle only).
    offered: HashMap<String, Arc<Doc>>,
    /// `/v1/wait` was refused: it polls instead.
    polling: bool,
    /// Counted in `holding` once settled.
    counted: bool,
}

/// A plan carried out, to report.
struct CarriedOut {
    report: PlanReport,
    /// The signed length of the package fetched.
    package_bytes: u64,
}

/// A Herd signature set downloaded and checked.
struct FetchedSet {
    updated: HerdSetUpdated,
    text: String,
    length: u64,
}

impl FetchedSet {
    /// Whether the set has the exact-hash signature of the file with this SHA-256 (`.hsb`
    /// lines: `sha256:size:name`).
    fn lists(&self, sha256: &str) -> bool {
        self.text.lines().any(|line| {
            line.split(':')
                .next()
                .is_some_and(|hash| hash.eq_ignore_ascii_case(sha256))
        })
    }
}

/// Why a cycle stopped early.
enum Stop {
    /// No answer, or an answer that is not what the protocol says: retried.
    Failed(String),
    /// The plan's release is not signed yet: wait for the next wake.
    NotSigned,
}

impl From<String> for Stop {
    fn from(kind: String) -> Stop {
        Stop::Failed(kind)
    }
}

impl Terminal {
    async fn live(mut self, sim: Arc<Sim>) {
        let (poll_interval, push) = match sim.wake {
            Wake::Poll { interval_ms } => (Duration::from_millis(interval_ms.max(1)), false),
            Wake::Push {
                fallback_poll_ms, ..
            } => (Duration::from_millis(fallback_poll_ms.max(1)), true),
        };
        self.polling = !push;
        // The first cycle: the check-in at start-up and the metadata it will compare with.
        self.cycle_with_retries(&sim).await;
        loop {
            if !self.counted {
                self.counted = true;
                sim.holding.fetch_add(1, Relaxed);
            }
            if self.polling {
                // Uniformly within [interval / 2, interval], as an agent's jittered interval.
                let jitter = rand::random::<u64>() % (poll_interval.as_millis() as u64 + 1);
                tokio::time::sleep(poll_interval / 2 + Duration::from_millis(jitter / 2)).await;
                self.cycle_with_retries(&sim).await;
                continue;
            }
            let Wake::Push { wait_secs, .. } = sim.wake else {
                unreachable!("push")
            };
            match self.wait(&sim, wait_secs).await {
                Ok(true) => self.cycle_with_retries(&sim).await,
                Ok(false) => {}
                Err(kind) => {
                    sim.error(&format!("wait: {kind}"));
                    pause().await;
                }
            }
        }
    }

    async fn cycle_with_retries(&mut self, sim: &Sim) {
        sim.busy.fetch_add(1, Relaxed);
        for _ in 0..CYCLE_ATTEMPTS {
            match self.cycle(sim).await {
                Ok(()) | Err(Stop::NotSigned) => break,
                Err(Stop::Failed(kind)) => {
                    sim.error(&kind);
                    pause().await;
                }
            }
        }
        sim.busy.fetch_sub(1, Relaxed);
    }

    /// Holds `GET /v1/wait` until the change token moves (true) or the wait times out.
    async fn wait(&mut self, sim: &Sim, wait_secs: u64) -> Result<bool, String> {
        // Without `after` the upstream answers at once with its current token.
        let path = if self.token.is_empty() {
            format!("{WAIT}?timeout_secs={wait_secs}")
        } else {
            format!(
                "{WAIT}?after={}&timeout_secs={wait_secs}",
                herd_client::percent_encode(&self.token)
            )
        };
        let timeout = Duration::from_secs(wait_secs) + REQUEST_TIMEOUT;
        let (status, body) = self.send(sim, Method::GET, &path, None, timeout).await?;
        // An upstream without the endpoint (404, 405) or a site that sends it elsewhere (421).
        if matches!(
            status,
            StatusCode::NOT_FOUND
                | StatusCode::METHOD_NOT_ALLOWED
                | StatusCode::MISDIRECTED_REQUEST
        ) {
            // No push here: poll as an agent that cannot hold a connection does.
            if !self.polling {
                self.polling = true;
                sim.polling.fetch_add(1, Relaxed);
            }
            return Ok(false);
        }
        if status != StatusCode::OK {
            return Err(refusal_kind(status, &body));
        }
        let answer: WaitResponse =
            serde_json::from_slice(&body).map_err(|_| "unreadable wait answer".to_owned())?;
        let changed = answer.changed || answer.token != self.token;
        self.token = answer.token;
        Ok(changed)
    }

    /// What an agent does when woken: check in, refresh the metadata, fetch Herd's signature
    /// set when the signed `herd` role lists another one (as a scanning agent does), carry out
    /// the plan, and report both in one batch of events.
    async fn cycle(&mut self, sim: &Sim) -> Result<(), Stop> {
        let request = CheckinRequest {
            terminal: None,
            installed: Some(self.installed.clone()),
            hardware: None,
            tz: None,
            agent_version: Some(concat!("herd-sim/", env!("CARGO_PKG_VERSION")).to_owned()),
            interfaces: None,
            tuf_timestamp_version: self
                .chain
                .timestamp
                .as_ref()
                .and_then(|doc| doc.nav("timestamp"))
                .map(|nav| nav.version),
            consent_waiting: None,
            messages_after: None,
            tuf_held: self.held(),
        };
        let body = serde_json::to_vec(&request).expect("a check-in serialises");
        let (status, answer) = self
            .send(
                sim,
                Method::POST,
                "/v1/checkin",
                Some(body),
                REQUEST_TIMEOUT,
            )
            .await
            .map_err(|kind| format!("checkin: {kind}"))?;
        if status != StatusCode::OK {
            return Err(format!("checkin: {}", refusal_kind(status, &answer)).into());
        }
        let mut answer: CheckinResponse =
            serde_json::from_slice(&answer).map_err(|_| "checkin: unreadable answer".to_owned())?;
        // As the agent: the answer's timestamp (or, with none, the one held, which the
        // upstream says is current) stands for the refresh's first request.
        let offered = match answer.tuf_timestamp.take() {
            Some(document) => {
                sim.metadata_bytes.fetch_add(document.len() as u64, Relaxed);
                Some(sim.intern(Bytes::from(document)))
            }
            None if request.tuf_timestamp_version.is_some() => self.chain.timestamp.clone(),
            None => None,
        };
        // … and the newer documents it carried stand for the requests that would fetch them.
        self.offered = answer
            .tuf_metadata
            .take()
            .unwrap_or_default()
            .into_iter()
            .map(|(name, text)| {
                sim.metadata_bytes.fetch_add(text.len() as u64, Relaxed);
                (name, sim.intern(Bytes::from(text)))
            })
            .collect();
        let herd_set = match self.refresh(sim, offered).await {
            Ok(()) => self.fetch_herd_set(sim).await,
            Err(stop) => Err(stop),
        }
        .inspect_err(|_| self.offered.clear())?;
        let plan = if matches!(answer.plan.action, Action::Update | Action::Switch) {
            Some(self.carry_out(sim, &answer).await)
        } else {
            None
        };
        // The set's event goes even when the plan stopped: the agent queues it before acting.
        let mut batch = Vec::new();
        if let Some(set) = &herd_set {
            batch.push((events::HERD_SET_UPDATED, serde_json::to_value(&set.updated)));
        }
        let (carried_out, stopped) = match plan {
            Some(Ok(done)) => {
                batch.push((events::PLAN_REPORT, serde_json::to_value(&done.report)));
                (Some(done), None)
            }
            Some(Err(stop)) => (None, Some(stop)),
            None => (None, None),
        };
        self.offered.clear();
        if !batch.is_empty() {
            self.report(sim, batch).await?;
        }
        if let Some(set) = herd_set {
            sim.protected(
                self.index,
                |goal| matches!(goal, Goal::HerdSignature { sha256 } if set.lists(sha256)),
                set.length,
            );
            self.herd_set = Some(set.updated.sha256);
        }
        if let Some(done) = carried_out {
            let installed = done
                .report
                .installed
                .expect("a report of an update says it");
            sim.protected(
                self.index,
                |goal| matches!(goal, Goal::Release { version } if *version == installed.version),
                done.package_bytes,
            );
            self.installed = installed;
        }
        match stopped {
            Some(stop) => Err(stop),
            None => Ok(()),
        }
    }

    /// Carries out an `update` or `switch` plan: each fetch step checked against the verified
    /// target, downloaded and checked; the rest simulated.
    async fn carry_out(&mut self, sim: &Sim, answer: &CheckinResponse) -> Result<CarriedOut, Stop> {
        let mut results = Vec::new();
        let mut format = None;
        let mut pattern = None;
        let mut package_bytes = 0;
        for (step, planned) in answer.plan.steps.iter().enumerate() {
            let (kind, detail) = match planned {
                Step::Fetch {
                    sha256,
                    size,
                    target,
                    format: fetched_format,
                    ..
                } => {
                    let target = target
                        .as_deref()
                        .ok_or_else(|| "plan: a fetch step without a target".to_owned())?;
                    let (_, file) = self
                        .find_target(sim, target)
                        .await?
                        .ok_or(Stop::NotSigned)?;
                    if file.length != *size
                        || file.hashes.get("sha256").map(String::as_str) != Some(sha256.as_str())
                    {
                        return Err("plan: the fetch step differs from the signed target"
                            .to_owned()
                            .into());
                    }
                    let package = self.download(sim, target, &file).await?;
                    sim.package_bytes.fetch_add(package.len() as u64, Relaxed);
                    package_bytes = file.length;
                    format = Some(fetched_format.clone());
                    ("fetch", format!("{} bytes, sha256 checked", package.len()))
                }
                Step::Install { .. } => ("install", "simulated".to_owned()),
                Step::Verify {
                    pattern: verified, ..
                } => {
                    pattern = Some(verified.clone());
                    ("verify", "simulated".to_owned())
                }
                Step::Uninstall { .. } => ("uninstall", "simulated".to_owned()),
            };
            results.push(StepResult {
                step,
                kind: kind.to_owned(),
                status: StepStatus::Ok,
                detail: Some(detail),
            });
        }
        let to = answer
            .plan
            .to
            .as_ref()
            .ok_or_else(|| "plan: an update without `to`".to_owned())?;
        let installed = InstalledDoc {
            product: to.product.clone(),
            version: to.version.clone(),
            seq: to.seq,
            pattern: pattern.unwrap_or_else(|| self.installed.pattern.clone()),
            format: format.unwrap_or_else(|| self.installed.format.clone()),
        };
        Ok(CarriedOut {
            report: PlanReport {
                plan_id: answer.plan_id.clone(),
                outcome: ReportOutcome::Succeeded,
                steps: results,
                installed: Some(installed),
                message: None,
            },
            package_bytes,
        })
    }

    /// Herd's signature set when the signed `herd` role lists another one than the terminal
    /// holds: downloaded, checked against the signed length and SHA-256 (as the agent's
    /// `fetch_herd_set`); `None` when there is nothing new.
    async fn fetch_herd_set(&mut self, sim: &Sim) -> Result<Option<FetchedSet>, Stop> {
        let Some((role, file)) = self.find_target(sim, HERD_SET_TARGET).await? else {
            return Ok(None);
        };
        if role != HERD_ROLE {
            return Err(format!("herd set: listed by {role}, not {HERD_ROLE}").into());
        }
        let sha256 = file
            .hashes
            .get("sha256")
            .ok_or_else(|| "herd set: listed without a SHA-256".to_owned())?
            .to_ascii_lowercase();
        if self.herd_set.as_ref() == Some(&sha256) {
            return Ok(None);
        }
        let bytes = self.download(sim, HERD_SET_TARGET, &file).await?;
        sim.package_bytes.fetch_add(bytes.len() as u64, Relaxed);
        let text =
            String::from_utf8(bytes.to_vec()).map_err(|_| "herd set: not UTF-8 text".to_owned())?;
        Ok(Some(FetchedSet {
            updated: HerdSetUpdated {
                sha256,
                signatures: text.lines().count() as u64,
            },
            text,
            length: file.length,
        }))
    }

    /// Downloads `target` by its consistent-snapshot name and checks it against its verified
    /// description (length and SHA-256), as the agent does with everything it fetches.
    async fn download(
        &mut self,
        sim: &Sim,
        target: &str,
        file: &TargetFile,
    ) -> Result<Bytes, Stop> {
        let sha256 = file
            .hashes
            .get("sha256")
            .ok_or_else(|| format!("download: {target} is listed without a SHA-256"))?;
        let path = format!(
            "{TARGETS_PATH}{}",
            consistent_target_name(target, &sha256.to_ascii_lowercase())
        );
        let (status, bytes) = self
            .send(sim, Method::GET, &path, None, REQUEST_TIMEOUT)
            .await
            .map_err(|kind| format!("download: {kind}"))?;
        if status != StatusCode::OK {
            return Err(format!("download: {}", refusal_kind(status, &bytes)).into());
        }
        herd_tuf::verify_target(target, file, &bytes)
            .map_err(|err| format!("download: refused: {err}"))?;
        Ok(bytes)
    }

    /// Sends events (kind, data) as one batch and waits for their acknowledgement; a batch
    /// that was not acknowledged is sent again, as the agent's outbox does, up to
    /// `CYCLE_ATTEMPTS` times (the plan is carried out: only its report is missing).
    async fn report(
        &mut self,
        sim: &Sim,
        batch: Vec<(&str, serde_json::Result<serde_json::Value>)>,
    ) -> Result<(), Stop> {
        let at = herd_core::Timestamp::from_unix_seconds(unix_seconds()).to_string();
        let mut events = Vec::with_capacity(batch.len());
        for (kind, data) in batch {
            self.seq += 1;
            events.push(EventDoc {
                seq: self.seq,
                at: at.clone(),
                kind: kind.to_owned(),
                data: data.expect("an event serialises"),
            });
        }
        let body = serde_json::to_vec(&EventBatch { events }).expect("a batch serialises");
        let mut attempt = 1;
        loop {
            match self.send_report(sim, body.clone()).await {
                Ok(()) => return Ok(()),
                Err(kind) if attempt >= CYCLE_ATTEMPTS => return Err(kind.into()),
                Err(kind) => {
                    sim.error(&kind);
                    attempt += 1;
                    pause().await;
                }
            }
        }
    }

    async fn send_report(&mut self, sim: &Sim, body: Vec<u8>) -> Result<(), String> {
        let (status, answer) = self
            .send(sim, Method::POST, "/v1/events", Some(body), REQUEST_TIMEOUT)
            .await
            .map_err(|kind| format!("report: {kind}"))?;
        if status != StatusCode::OK {
            return Err(format!("report: {}", refusal_kind(status, &answer)));
        }
        let ack: EventAck =
            serde_json::from_slice(&answer).map_err(|_| "report: unreadable ack".to_owned())?;
        if ack.acked_through < self.seq {
            return Err("report: not acknowledged".to_owned());
        }
        Ok(())
    }

    /// TUF's refresh as the agent makes it: the timestamp (`offered` by the check-in's answer,
    /// else fetched), the snapshot when the timestamp names another, each loaded targets role
    /// when the snapshot names another version of it (roles it no longer lists are dropped).
    async fn refresh(&mut self, sim: &Sim, offered: Option<Arc<Doc>>) -> Result<(), Stop> {
        let timestamp = match offered {
            Some(timestamp) => timestamp,
            None => self.metadata(sim, "timestamp.json").await?,
        };
        let snapshot_version = timestamp
            .nav("timestamp")
            .and_then(|nav| nav.meta.get("snapshot.json").copied())
            .ok_or_else(|| "refresh: unreadable timestamp".to_owned())?;
        self.chain.timestamp = Some(timestamp);
        let have = self
            .chain
            .snapshot
            .as_ref()
            .and_then(|doc| doc.nav("snapshot"))
            .map(|nav| nav.version);
        if have != Some(snapshot_version) {
            let snapshot = self
                .metadata(sim, &format!("{snapshot_version}.snapshot.json"))
                .await?;
            if snapshot.nav("snapshot").is_none() {
                return Err("refresh: unreadable snapshot".to_owned().into());
            }
            self.chain.snapshot = Some(snapshot);
        }
        let listed = self
            .chain
            .snapshot
            .as_ref()
            .and_then(|doc| doc.nav("snapshot"))
            .map(|nav| nav.meta.clone())
            .unwrap_or_default();
        let mut roles: Vec<String> = self.chain.roles.keys().cloned().collect();
        if !roles.iter().any(|role| role == "targets") {
            roles.push("targets".to_owned());
        }
        for role in roles {
            let Some(&version) = listed.get(&format!("{role}.json")) else {
                self.chain.roles.remove(&role);
                continue;
            };
            let current = self
                .chain
                .roles
                .get(&role)
                .and_then(|doc| doc.nav(&role))
                .map(|nav| nav.version);
            if current != Some(version) {
                let doc = self
                    .metadata(sim, &format!("{version}.{role}.json"))
                    .await?;
                self.chain.roles.insert(role, doc);
            }
        }
        Ok(())
    }

    /// The verified description of `target` and the role listing it (`None` when no role
    /// does), loading the delegated roles the search needs.
    async fn find_target(
        &mut self,
        sim: &Sim,
        target: &str,
    ) -> Result<Option<(String, TargetFile)>, Stop> {
        for _ in 0..=herd_tuf::client::MAX_DELEGATIONS {
            match sim.verify(&self.chain, target) {
                Verdict::Found(role, file) => return Ok(Some((role, file))),
                Verdict::NotFound => return Ok(None),
                Verdict::Refused(why) => return Err(format!("refresh: refused: {why}").into()),
                Verdict::NeedRole(role) => {
                    let version = self
                        .chain
                        .snapshot
                        .as_ref()
                        .and_then(|doc| doc.nav("snapshot"))
                        .and_then(|nav| nav.meta.get(&format!("{role}.json")).copied())
                        .ok_or_else(|| format!("refresh: the snapshot does not list {role}"))?;
                    let doc = self
                        .metadata(sim, &format!("{version}.{role}.json"))
                        .await?;
                    self.chain.roles.insert(role, doc);
                }
            }
        }
        Err("refresh: too many delegations".to_owned().into())
    }

    /// What the terminal holds besides the timestamp, as a check-in's `tuf_held` names it:
    /// the snapshot's version and each loaded targets role's.
    fn held(&self) -> Option<BTreeMap<String, u64>> {
        let snapshot = self.chain.snapshot.as_ref()?.nav("snapshot")?.version;
        let mut held = BTreeMap::from([("snapshot".to_owned(), snapshot)]);
        for (role, doc) in &self.chain.roles {
            if let Some(nav) = doc.nav(role) {
                held.insert(role.clone(), nav.version);
            }
        }
        Some(held)
    }

    /// One metadata document: the one the check-in's answer carried under this name, else
    /// downloaded from the terminal's upstream.
    async fn metadata(&mut self, sim: &Sim, name: &str) -> Result<Arc<Doc>, String> {
        if let Some(doc) = self.offered.get(name) {
            return Ok(doc.clone());
        }
        let path = format!("{METADATA_PATH}{name}");
        let (status, body) = self
            .send(sim, Method::GET, &path, None, REQUEST_TIMEOUT)
            .await
            .map_err(|kind| format!("refresh: {kind}"))?;
        if status != StatusCode::OK {
            return Err(format!("refresh {name}: {}", refusal_kind(status, &body)));
        }
        if body.len() > MAX_METADATA_BYTES {
            return Err(format!(
                "refresh {name}: larger than {MAX_METADATA_BYTES} bytes"
            ));
        }
        sim.metadata_bytes.fetch_add(body.len() as u64, Relaxed);
        Ok(sim.intern(body))
    }

    /// Sends a request on the terminal's connection, (re)connecting as its identity first
    /// when needed; a kept-alive connection the upstream closed meanwhile is retried once on
    /// a new one.
    async fn send(
        &mut self,
        sim: &Sim,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), String> {
        for attempt in 0..2 {
            let reused = self.connection.as_ref().is_some_and(|c| !c.is_closed());
            if !reused {
                self.connection = None;
                let _permit = sim.connect_gate.acquire().await.expect("never closed");
                let connecting =
                    Https::connect_from(&sim.upstreams[self.upstream], sim.tls.clone(), sim.source);
                let connection = IDENTITY
                    .scope(self.identity.clone(), connecting)
                    .await
                    .map_err(|err| err.kind().to_owned())?;
                self.connection = Some(connection);
            }
            let connection = self.connection.as_mut().expect("connected");
            let mut request =
                hyper::Request::new(Full::new(Bytes::from(body.clone().unwrap_or_default())));
            *request.method_mut() = method.clone();
            *request.uri_mut() = path.parse().map_err(|_| format!("bad path {path:?}"))?;
            request
                .headers_mut()
                .insert(hyper::header::HOST, connection.host().clone());
            if body.is_some() {
                request
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            sim.requests.fetch_add(1, Relaxed);
            match tokio::time::timeout(timeout, connection.send(request)).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(err)) => {
                    self.connection = None;
                    if !(reused && attempt == 0) {
                        return Err(err.kind().to_owned());
                    }
                }
                Err(_) => {
                    self.connection = None;
                    return Err("timed out".to_owned());
                }
            }
        }
        unreachable!("the second attempt returns")
    }
}

async fn pause() {
    let jitter = rand::random::<u64>() % (RETRY_PAUSE.as_millis() as u64 + 1);
    tokio::time::sleep(RETRY_PAUSE + Duration::from_millis(jitter)).await;
}

/// The error kind of a refused request: its status and the API's stable error code.
fn refusal_kind(status: StatusCode, body: &[u8]) -> String {
    let code = serde_json::from_slice::<herd_proto::api::ErrorBody>(body)
        .map(|body| body.error.code)
        .unwrap_or_else(|_| "no error body".to_owned());
    format!("{} {code}", status.as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_percent_encoded_in_the_wait_query() {
        assert_eq!(herd_client::percent_encode("12.3.45"), "12.3.45");
        assert_eq!(herd_client::percent_encode(""), "");
        assert_eq!(
            herd_client::percent_encode("a b&c=d/é"),
            "a%20b%26c%3Dd%2F%C3%A9"
        );
    }

    #[test]
    fn a_set_lists_a_file_by_its_whole_hash_in_any_case() {
        let one = "ab".repeat(32);
        let set = FetchedSet {
            updated: HerdSetUpdated {
                sha256: "0".repeat(64),
                signatures: 1,
            },
            text: format!("{one}:42:Herd.Immunity.x\n"),
            length: 0,
        };
        assert!(set.lists(&one));
        assert!(set.lists(&one.to_ascii_uppercase()));
        // A prefix of a listed hash, or another hash, is not listed.
        assert!(!set.lists(&one[..63]));
        assert!(!set.lists(&"cd".repeat(32)));
    }

    #[test]
    fn a_chain_without_metadata_is_refused_not_found() {
        let verdict = verify_chain(b"{}", &Chain::default(), "packages/v/p/1/pc.archive");
        assert!(matches!(verdict, Verdict::Refused(_)), "{verdict:?}");
    }
}
