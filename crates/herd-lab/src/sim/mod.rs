//! `herd sim`: a fleet of simulated terminals speaking the real protocol to a real center
//! (SPEC §7), for load measurements (SPEC §8: check-ins per second end to end, and time to
//! protection with `herd sim protect`, see `protect`).
//!
//! `herd sim checkins` starts a `herd serve` child (or targets an existing center), publishes a
//! generated catalog, enrols terminals with their own keys and certificates, has each check in
//! once, then drives check-ins over keep-alive mutual-TLS connections and reports throughput,
//! latency percentiles, errors by kind, the plan mix, the center's group-commit batch size and
//! the CPU time both sides used.

mod center;
mod client;
mod fleet;
mod protect;
mod protect_report;
mod protect_sites;
mod protect_wire;
mod protect_worker;
mod report;
mod rollout;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, StatusCode, Uri};
use rustls::ClientConfig;
use tokio::task::JoinSet;

use crate::world;
use client::{Endpoint, Https};
use fleet::{Action, find_action};
use herd_tuf::metadata::{Envelope, TimestampRole};
use report::{CenterCounters, PhaseReport, Report, Tally};

/// Simulate a fleet of terminals against a real center, over the real protocol.
#[derive(Debug, Args)]
pub struct SimArgs {
    #[command(subcommand)]
    command: SimCommand,
}

#[derive(Debug, Subcommand)]
enum SimCommand {
    Checkins(CheckinArgs),
    Protect(protect::ProtectArgs),
    Rollout(rollout::RolloutArgs),
    /// One worker process of `herd sim protect` (started by it; orders on stdin).
    #[command(hide = true)]
    ProtectWorker,
}

/// Measure check-ins per second, end to end.
///
/// Starts `herd serve` (this program) on embedded SQLite in a temporary directory and a free
/// loopback port, publishes a generated catalog (by default SPEC §8's 100,000 threats × 20
/// products, each vendor its own feed), makes a group per policy of the fleet with placement
/// rules, enrols the terminals concurrently (each with its own key, CSR and certificate, and
/// its own platform and installed product, so plans differ between terminals), and has every
/// terminal check in once over a new connection (the roll call). Then CONNECTIONS keep-alive
/// mutual-TLS connections check in back to back for the warm-up and the measured DURATION.
/// Every answer's action is checked against the plan this program computes with the same
/// planner.
///
/// A connection carries one terminal's identity (the identity is the client certificate).
/// Connection i checks in as terminals i, i+C, i+2C, … in turn: by default it stays with its
/// first terminal for the whole run, so the measurement is of check-ins and not of TLS
/// handshakes (terminals keep their connection between check-ins, and the roll call has
/// already had every terminal check in over its own handshake); with `--reconnect-every K` a
/// connection is closed after K check-ins and the next terminal of its share connects, which
/// cycles all terminals and measures handshakes too. `--rotate` is the fleet as it really
/// is: every check-in comes from the next terminal of the whole enrolled fleet over a new
/// connection, resuming the TLS session that terminal had before, as an agent does.
///
/// With `--refresh-metadata` each check-in is followed, on the same connection, by the idle
/// metadata refresh an agent makes before a plan: one GET of `/tuf/metadata/timestamp.json`,
/// checked to be a TUF timestamp at least as new as the center's current one. With
/// `--publish-during` the first vendor publishes a new release a tenth into the measured
/// window, so the center signs under load (the window is extended, if need be, until the
/// publish is answered and a refresh saw the new timestamp); plans are then checked against
/// the new catalog, and the report says when refreshes first saw the new timestamp.
///
/// The center is killed when the simulation ends, also on Ctrl-C or an error. With `--server`,
/// `--ca` and `--token-file` an existing center is used instead (its ids all start with
/// `sim-`, so nothing of a real fleet is touched, but the terminals stay enrolled).
#[derive(Debug, Args)]
struct CheckinArgs {
    /// Terminals to enrol.
    #[arg(long, default_value_t = 2000, value_name = "N")]
    terminals: usize,
    /// Keep-alive connections checking in concurrently (at most one per terminal).
    #[arg(long, default_value_t = 256, value_name = "C")]
    connections: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    duration: f64,
    /// Seconds of load before the measurement starts (not counted).
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    warmup: f64,
    /// Replace each connection with the next terminal's after this many check-ins (0: never).
    #[arg(long, default_value_t = 0, value_name = "K", conflicts_with = "rotate")]
    reconnect_every: u64,
    /// Every check-in from a different terminal of the whole fleet, each over a new
    /// connection with its own identity, resuming its TLS session (like `--reconnect-every 1`).
    #[arg(long)]
    rotate: bool,
    /// Threats in the generated catalog.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    threats: usize,
    /// Products in the generated catalog (two per vendor, each vendor its own feed).
    #[arg(long, default_value_t = 20, value_name = "N")]
    products: usize,
    /// Weekly definitions releases per product in the generated catalog.
    #[arg(long, default_value_t = 160, value_name = "N")]
    releases: usize,
    /// Seed of the generated catalog and fleet (the same seed, the same world).
    #[arg(long, default_value_t = 2000_11_10, value_name = "N")]
    seed: u64,
    /// After each check-in, refresh signed metadata as an idle agent does: GET the timestamp
    /// on the same connection.
    #[arg(long)]
    refresh_metadata: bool,
    /// A tenth into the measured window, publish a new release of one vendor (its feed
    /// changed), so that the center signs new metadata under load; the window lasts until
    /// the publish is answered.
    #[arg(long)]
    publish_during: bool,
    /// Print the report as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Threads of this load generator (1: a single-threaded runtime, which leaves the other
    /// core to the center).
    #[arg(long, default_value_t = 1, value_name = "N")]
    threads: usize,
    /// Tokio worker threads of the spawned center [default: one per core].
    #[arg(long, value_name = "N", conflicts_with = "server")]
    center_threads: Option<usize>,
    /// Keep the spawned center's data (database, log) in this directory instead of a
    /// temporary one that is removed at the end.
    #[arg(long, value_name = "DIR", conflicts_with = "server")]
    data_dir: Option<PathBuf>,
    /// Use the existing center at this URL (https://host:port) instead of starting one.
    #[arg(long, value_name = "URL", requires_all = ["ca", "token_file"])]
    server: Option<String>,
    /// The existing center's CA certificate (PEM), e.g. <data-dir>/ca.pem.
    #[arg(long, value_name = "FILE", requires = "server")]
    ca: Option<PathBuf>,
    /// A file holding an operator API token of the existing center, e.g.
    /// <data-dir>/operator.token.
    #[arg(long, value_name = "FILE", requires = "server")]
    token_file: Option<PathBuf>,
}

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Enrolments in flight at once.
const ENROL_WORKERS: usize = 16;
/// How long requests still in flight at the end of the measured window may take to finish.
const GRACE: Duration = Duration::from_secs(5);
/// How long the measured window may be extended for `--publish-during`'s sign round.
const PUBLISH_OVERTIME: Duration = Duration::from_secs(60);
/// Pause before reconnecting after a failed connection, so a dead center is not hammered.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

pub fn run(args: SimArgs) -> anyhow::Result<()> {
    match args.command {
        SimCommand::Checkins(args) => checkins(args),
        SimCommand::Protect(args) => protect::run(args),
        SimCommand::Rollout(args) => rollout::run(args),
        SimCommand::ProtectWorker => protect_worker::run(),
    }
}

fn checkins(args: CheckinArgs) -> anyhow::Result<()> {
    if args.terminals == 0 {
        bail!("--terminals must be at least 1");
    }
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    if !(args.duration > 0.0 && args.duration.is_finite()) {
        bail!("--duration must be a positive number of seconds");
    }
    if !(args.warmup >= 0.0 && args.warmup.is_finite()) {
        bail!("--warmup must be zero or a positive number of seconds");
    }
    if args.threads == 0 || args.center_threads == Some(0) {
        bail!("--threads and --center-threads must be at least 1");
    }
    if args.threats == 0 || args.products == 0 || args.releases == 0 {
        bail!("--threats, --products and --releases must be at least 1");
    }
    herd_tls::install_crypto_provider();
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .thread_name("herd-sim")
            .enable_all()
            .build()
    }
    .context("cannot start the async runtime")?;
    // On a signal the simulation is dropped, and with it the spawned center (killed).
    let report = runtime.block_on(async {
        tokio::select! {
            report = simulate(&args) => report,
            signal = interrupted() => bail!("interrupted by {signal}"),
        }
    })?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("cannot serialise the report")?
        );
    } else {
        print!("{}", report.text());
    }
    if report.checkins == 0 {
        bail!("no check-in was answered during the measured window");
    }
    Ok(())
}

async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return "SIGINT";
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

/// Progress lines on stderr: rewritten in place on a terminal, one per update otherwise.
fn progress(line: &str) {
    if std::io::stderr().is_terminal() {
        eprint!("\r\x1b[2K{line}");
    } else {
        eprintln!("{line}");
    }
}

fn progress_done() {
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
}

/// A simulated terminal that enrolled.
#[derive(Debug)]
struct SimTerminal {
    id: String,
    tls: Arc<ClientConfig>,
    /// The check-in body, serialised once.
    body: Bytes,
    expected: Action,
    /// The plan once `--publish-during`'s release is published (else `expected`).
    expected_after: Action,
}

impl SimTerminal {
    /// Whether `action` is the plan this terminal must get for a check-in sent when the
    /// publish was at stage `sent` and answered at stage `answered`.
    fn plans(&self, action: Action, sent: u8, answered: u8) -> bool {
        if sent == PUBLISHED {
            action == self.expected_after
        } else if answered == BEFORE_PUBLISH {
            action == self.expected
        } else {
            action == self.expected || action == self.expected_after
        }
    }
}

/// Where `--publish-during`'s publish is when a check-in is sent: not started (or none), under
/// way (either catalog may plan), answered (the new catalog plans).
const BEFORE_PUBLISH: u8 = 0;
const PUBLISHING: u8 = 1;
const PUBLISHED: u8 = 2;

/// Where the signed metadata's timestamp is served, to anyone.
const TIMESTAMP_PATH: &str = "/tuf/metadata/timestamp.json";

async fn simulate(args: &CheckinArgs) -> anyhow::Result<Report> {
    // Declared first so that it is dropped (the child killed) last, after every connection.
    let mut spawned = None;
    let (endpoint, ca_pem, operator_token, center_report) = match &args.server {
        Some(url) => {
            let endpoint = Endpoint::from_url(url).await?;
            let ca = args.ca.as_ref().context("--server needs --ca")?;
            let token = args
                .token_file
                .as_ref()
                .context("--server needs --token-file")?;
            (
                endpoint,
                center::read_text(ca, "the CA certificate")?,
                center::read_text(token, "the operator token file")?,
                report::CenterReport {
                    kind: "existing",
                    address: url.clone(),
                    worker_threads: None,
                    data_dir: None,
                },
            )
        }
        None => {
            // Starting waits until the center answers: off the runtime's thread, so that a
            // SIGTERM meanwhile is handled (the simulation dropped, the center killed).
            let (data_dir, threads) = (args.data_dir.clone(), args.center_threads);
            let started = tokio::task::spawn_blocking(move || {
                center::SpawnedCenter::start(data_dir.as_deref(), threads)
            })
            .await
            .context("starting the center failed")??;
            let center = spawned.insert(started);
            let addr = center.addr()?;
            let data_dir = center.data_dir().to_owned();
            (
                Endpoint::loopback(addr),
                center::read_text(&data_dir.join("ca.pem"), "the center's CA certificate")?,
                center::read_text(&data_dir.join("operator.token"), "the operator token")?,
                report::CenterReport {
                    kind: "spawned",
                    address: format!("https://{addr}"),
                    worker_threads: args.center_threads,
                    data_dir: args
                        .data_dir
                        .as_ref()
                        .map(|_| data_dir.display().to_string()),
                },
            )
        }
    };
    let center_pid = spawned.as_ref().map(center::SpawnedCenter::pid);
    let result = drive(
        args,
        &endpoint,
        &ca_pem,
        &operator_token,
        center_pid,
        center_report,
    )
    .await;
    match result {
        Ok(report) => Ok(report),
        Err(err) => match &spawned {
            Some(center) => Err(err.context(format!(
                "the center's log ends with:\n{}",
                center.log_tail()
            ))),
            None => Err(err),
        },
    }
}

/// The phases of the load, in order; check-ins are counted in the phase they finish in.
const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// What the connections share.
#[derive(Debug)]
struct Load {
    endpoint: Endpoint,
    terminals: Vec<Option<SimTerminal>>,
    connections: usize,
    reconnect_every: u64,
    /// Whether the plans must be the ones the generated catalog gives (only on a center this
    /// simulation started: an existing center's groups may have other policies).
    check_plans: bool,
    phase: AtomicU8,
    /// Connections the load opened, and how many of them resumed a TLS session.
    handshakes: AtomicU64,
    resumed: AtomicU64,
    warmup: Tally,
    measured: Tally,
    checkin_uri: Uri,
    /// Refresh the metadata after each check-in.
    refresh: bool,
    refresh_uri: Uri,
    /// The timestamp version served when the load started, and the oldest a refresh sent now
    /// may see (raised once a publish is answered).
    timestamp_start: u64,
    timestamp_floor: AtomicU64,
    /// [`BEFORE_PUBLISH`], [`PUBLISHING`] or [`PUBLISHED`].
    publish_stage: AtomicU8,
    /// Microseconds from `epoch` to the publish's start and to the first refresh that saw a
    /// timestamp newer than `timestamp_start` after it (0: not yet).
    epoch: Instant,
    publish_started_us: AtomicU64,
    new_timestamp_seen_us: AtomicU64,
}

impl Load {
    fn tally(&self, phase: u8) -> Option<&Tally> {
        match phase {
            WARMUP => Some(&self.warmup),
            MEASURE => Some(&self.measured),
            _ => None,
        }
    }

    fn micros_since_epoch(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

async fn drive(
    args: &CheckinArgs,
    endpoint: &Endpoint,
    ca_pem: &str,
    operator_token: &str,
    center_pid: Option<u32>,
    center_report: report::CenterReport,
) -> anyhow::Result<Report> {
    let operator_tls = herd_tls::client_config(ca_pem, None)?;
    let mut admin = Https::connect(endpoint, operator_tls.clone())
        .await
        .with_context(|| format!("cannot reach the center at {}", endpoint.addr))?;

    let started = Instant::now();
    let world = fleet::World::generate(world::Shape {
        threats: args.threats,
        products: args.products,
        releases: args.releases,
        seed: args.seed,
    })?;
    let feeds = world.feeds();
    // The release `--publish-during` publishes, and the world after it, made now so that the
    // expected plans after it are known before the load.
    let next_release = if args.publish_during {
        let (vendor, feed, next) = world.next_release()?;
        Some((vendor, feed, Arc::new(next)))
    } else {
        None
    };
    let feed_sizes: Vec<u64> = feeds.iter().map(|(_, feed)| feed.len() as u64).collect();
    let feed_bytes: u64 = feed_sizes.iter().sum();
    progress(&format!(
        "catalog: {} threats × {} products generated in {:.1} s; publishing {} feeds ({:.1} MB)",
        args.threats,
        args.products,
        started.elapsed().as_secs_f64(),
        feeds.len(),
        feed_bytes as f64 / 1e6
    ));
    progress_done();
    let started = Instant::now();
    for (vendor, feed) in feeds {
        let path = format!("/v1/feeds/{vendor}");
        let (status, body) = admin
            .call(
                Method::PUT,
                &path,
                Some(operator_token),
                Some(feed.into_bytes()),
            )
            .await?;
        expect_status(
            status,
            StatusCode::OK,
            &body,
            &format!("publishing the feed of {vendor}"),
        )?;
    }
    let catalog_report = report::CatalogReport {
        threats: args.threats,
        products: args.products,
        releases_per_product: args.releases,
        seed: args.seed,
        feeds: feed_sizes.len(),
        feed_bytes: feed_sizes.iter().sum(),
        largest_feed_bytes: feed_sizes.iter().copied().max().unwrap_or(0),
        publish_secs: started.elapsed().as_secs_f64(),
    };
    // Groups and rules change the center's configuration: only on a center of our own.
    let check_plans = center_pid.is_some();
    if check_plans {
        for group in world.groups() {
            let (status, body) = admin
                .call(
                    Method::PUT,
                    &format!("/v1/groups/{}", group.id),
                    Some(operator_token),
                    Some(serde_json::to_vec(&group)?),
                )
                .await?;
            if !status.is_success() {
                bail!(
                    "creating the group {}: the center answered {status}: {}",
                    group.id,
                    String::from_utf8_lossy(&body)
                );
            }
        }
        let (status, body) = admin
            .call(
                Method::PUT,
                "/v1/placement-rules",
                Some(operator_token),
                Some(serde_json::to_vec(&world.rules())?),
            )
            .await?;
        if !status.is_success() {
            bail!(
                "setting the placement rules: the center answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
    let request =
        serde_json::json!({"label": "herd sim", "uses": args.terminals, "ttl_secs": 86_400});
    let (status, body) = admin
        .call(
            Method::POST,
            "/v1/enrolment-tokens",
            Some(operator_token),
            Some(request.to_string().into_bytes()),
        )
        .await?;
    expect_status(
        status,
        StatusCode::CREATED,
        &body,
        "creating an enrolment token",
    )?;
    let enrol_token: herd_proto::api::TokenCreated =
        serde_json::from_slice(&body).context("the enrolment token answer is not a token")?;
    drop(admin);

    let started = Instant::now();
    let (terminals, enrol_errors) = enrol(
        endpoint,
        &operator_tls,
        ca_pem,
        &enrol_token.token,
        args.terminals,
        Arc::new(world),
        next_release.as_ref().map(|(_, _, next)| next.clone()),
    )
    .await?;
    let enrolled = terminals.iter().flatten().count() as u64;
    let enrolment = phase_report(enrolled, started.elapsed(), enrol_errors.errors());
    if enrolled == 0 {
        bail!(
            "no terminal could enrol: {}",
            serde_json::to_string(&enrolment.errors).unwrap_or_default()
        );
    }

    let timestamp_start = if args.refresh_metadata || args.publish_during {
        timestamp_version(endpoint, &operator_tls).await?
    } else {
        0
    };
    let load = Arc::new(Load {
        endpoint: endpoint.clone(),
        terminals,
        connections: args.connections.min(args.terminals),
        reconnect_every: if args.rotate { 1 } else { args.reconnect_every },
        check_plans,
        phase: AtomicU8::new(WARMUP),
        handshakes: AtomicU64::new(0),
        resumed: AtomicU64::new(0),
        warmup: Tally::default(),
        measured: Tally::default(),
        checkin_uri: Uri::from_static("/v1/checkin"),
        refresh: args.refresh_metadata,
        refresh_uri: Uri::from_static(TIMESTAMP_PATH),
        timestamp_start,
        timestamp_floor: AtomicU64::new(timestamp_start),
        publish_stage: AtomicU8::new(BEFORE_PUBLISH),
        epoch: Instant::now(),
        publish_started_us: AtomicU64::new(0),
        new_timestamp_seen_us: AtomicU64::new(0),
    });

    let started = Instant::now();
    let roll_call_tally = roll_call(&load).await;
    let roll_call = phase_report(
        roll_call_tally.checkins(),
        started.elapsed(),
        roll_call_tally.errors(),
    );
    progress(&format!(
        "roll call: {} check-ins on new connections in {:.2} s",
        roll_call.count, roll_call.secs
    ));
    progress_done();

    // The load: one task per connection.
    let mut tasks = JoinSet::new();
    for slot in 0..load.connections {
        tasks.spawn(connection_slot(load.clone(), slot));
    }
    progress(&format!(
        "load: {} connections, warming up for {} s",
        load.connections, args.warmup
    ));
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;

    let metrics_before = center_counters(endpoint, &operator_tls).await?;
    let center_cpu_before = center_pid.and_then(report::cpu_time);
    let own_cpu_before = report::cpu_time(std::process::id());
    let machine_before = report::machine_busy();
    let measure_start = Instant::now();
    load.phase.store(MEASURE, Relaxed);
    progress(&format!("load: measuring for {} s", args.duration));
    let publisher = next_release.map(|(vendor, feed, _)| {
        let at = Duration::from_secs_f64(args.duration / 10.0);
        let (load, tls, token) = (
            load.clone(),
            operator_tls.clone(),
            operator_token.to_owned(),
        );
        tokio::spawn(async move {
            tokio::time::sleep(at).await;
            publish_under_load(&load, &tls, &token, vendor, feed, measure_start).await
        })
    });
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    if publisher.is_some() {
        // The window covers the whole sign round: it lasts until the publish is answered
        // and, with refreshes, until one saw the new timestamp.
        let limit = Instant::now() + PUBLISH_OVERTIME;
        while (load.publish_stage.load(Relaxed) != PUBLISHED
            || (load.refresh && load.new_timestamp_seen_us.load(Relaxed) == 0))
            && Instant::now() < limit
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    load.phase.store(STOP, Relaxed);
    let measured = measure_start.elapsed();
    let center_memory = center_pid.and_then(report::memory);
    let center_cpu = center_pid
        .and_then(report::cpu_time)
        .zip(center_cpu_before)
        .map(|(after, before)| after.saturating_sub(before).as_secs_f64());
    let own_cpu = report::cpu_time(std::process::id())
        .zip(own_cpu_before)
        .map(|(after, before)| after.saturating_sub(before).as_secs_f64());
    let machine = report::machine_busy()
        .zip(machine_before)
        .map(|(after, before)| after.saturating_sub(before).as_secs_f64());
    let others = match (machine, center_cpu, own_cpu) {
        (Some(machine), Some(center), Some(own)) => Some((machine - center - own).max(0.0)),
        // Against an existing center, "others" would include it: not worth reporting.
        _ => None,
    };
    progress("load: done, waiting for the last answers");
    progress_done();

    let grace_end = tokio::time::Instant::now() + GRACE;
    while tokio::time::timeout_at(grace_end, tasks.join_next())
        .await
        .is_ok_and(|joined| joined.is_some())
    {}
    let unfinished = tasks.len() as u64;
    tasks.abort_all();
    let metrics = center_counters(endpoint, &operator_tls)
        .await?
        .since(metrics_before);
    let publish = match publisher {
        Some(task) => {
            let mut report = task.await.context("the publishing task failed")??;
            let (started, seen) = (
                load.publish_started_us.load(Relaxed),
                load.new_timestamp_seen_us.load(Relaxed),
            );
            if seen > 0 {
                report.new_timestamp_secs = Some(seen.saturating_sub(started) as f64 / 1e6);
            }
            Some(report)
        }
        None => None,
    };

    let tally = &load.measured;
    let checkins = tally.checkins();
    let duration_secs = measured.as_secs_f64();
    Ok(Report {
        terminals: args.terminals,
        connections: load.connections,
        reconnect_every: load.reconnect_every,
        warmup_secs: args.warmup,
        duration_secs,
        center: center_report,
        catalog: catalog_report,
        enrolment,
        roll_call,
        checkins,
        checkins_per_sec: checkins as f64 / duration_secs,
        latency_ms: report::LatencyReport::of(&tally.latency),
        errors: tally.errors(),
        warmup_errors: load.warmup.errors(),
        plans: tally.plan_mix(),
        unfinished,
        store: report::StoreReport {
            batches: metrics.batches as u64,
            mean_batch_size: if metrics.batches > 0.0 {
                metrics.stored / metrics.batches
            } else {
                0.0
            },
            center_mean_ms: if metrics.checkins > 0.0 {
                metrics.checkin_seconds * 1e3 / metrics.checkins
            } else {
                0.0
            },
        },
        cpu: report::CpuReport {
            center_secs: center_cpu,
            generator_secs: own_cpu,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            micros_per_checkin: match (center_cpu, own_cpu) {
                (Some(center), Some(own)) if checkins > 0 => {
                    Some((center + own) * 1e6 / checkins as f64)
                }
                _ => None,
            },
            others_secs: others,
        },
        handshakes: load.handshakes.load(Relaxed),
        resumed: load.resumed.load(Relaxed),
        center_rss_mb: center_memory.map(|(now, _)| now as f64 / 1e6),
        center_peak_rss_mb: center_memory.map(|(_, peak)| peak as f64 / 1e6),
        refresh: args.refresh_metadata.then(|| {
            let (count, body_bytes_median, wire_bytes_median) = tally.refreshes();
            report::RefreshReport {
                count,
                per_sec: count as f64 / duration_secs,
                body_bytes_median,
                wire_bytes_median,
                latency_ms: report::LatencyReport::of(&tally.refresh_latency),
                timestamp_version: load.timestamp_start,
            }
        }),
        publish,
    })
}

/// The version of the timestamp the center serves now, over a connection of its own.
async fn timestamp_version(endpoint: &Endpoint, tls: &Arc<ClientConfig>) -> anyhow::Result<u64> {
    let mut connection = Https::connect(endpoint, tls.clone())
        .await
        .context("cannot connect to read the center's timestamp")?;
    let (status, body) = connection
        .call(Method::GET, TIMESTAMP_PATH, None, None)
        .await?;
    expect_status(status, StatusCode::OK, &body, "reading the timestamp")?;
    let timestamp = Envelope::<TimestampRole>::parse("timestamp", &body)
        .with_context(|| format!("{TIMESTAMP_PATH} is not a TUF timestamp"))?;
    Ok(timestamp.signed.version)
}

/// Publishes `vendor`'s changed feed while the load runs, as at the start, and raises the
/// timestamp version refreshes must see to the one served once the publish is answered.
async fn publish_under_load(
    load: &Load,
    tls: &Arc<ClientConfig>,
    token: &str,
    vendor: String,
    feed: String,
    measure_start: Instant,
) -> anyhow::Result<report::PublishReport> {
    let mut admin = Https::connect(&load.endpoint, tls.clone())
        .await
        .context("cannot connect to publish during the load")?;
    progress(&format!("load: publishing a new release of {vendor}"));
    let started = Instant::now();
    load.publish_started_us
        .store(load.micros_since_epoch(), Relaxed);
    load.publish_stage.store(PUBLISHING, Relaxed);
    let (status, body) = admin
        .call(
            Method::PUT,
            &format!("/v1/feeds/{vendor}"),
            Some(token),
            Some(feed.into_bytes()),
        )
        .await?;
    let answered = started.elapsed();
    expect_status(
        status,
        StatusCode::OK,
        &body,
        &format!("publishing the new release of {vendor}"),
    )?;
    let published: herd_proto::api::PublishResponse =
        serde_json::from_slice(&body).context("the publish answer is not a publish response")?;
    if !published.changed {
        bail!("the new release of {vendor} did not change its feed");
    }
    let after = timestamp_version(&load.endpoint, tls).await?;
    load.timestamp_floor.fetch_max(after, Relaxed);
    load.publish_stage.store(PUBLISHED, Relaxed);
    Ok(report::PublishReport {
        vendor,
        at_secs: started.duration_since(measure_start).as_secs_f64(),
        answered_secs: answered.as_secs_f64(),
        timestamp_version_before: load.timestamp_start,
        timestamp_version_after: after,
        new_timestamp_secs: None,
    })
}

/// The idle metadata refresh an agent makes before a plan: one GET of the timestamp on the
/// check-in's connection, checked to be a TUF timestamp no older than the center's current
/// one. False when the connection failed.
async fn refresh_metadata(load: &Load, connection: &mut Https) -> bool {
    let floor = load.timestamp_floor.load(Relaxed);
    let mut request = hyper::Request::new(Full::new(Bytes::new()));
    *request.uri_mut() = load.refresh_uri.clone();
    request
        .headers_mut()
        .insert(hyper::header::HOST, connection.host().clone());
    let started = Instant::now();
    let result = connection.send_counted(request).await;
    let latency = started.elapsed();
    let tally = load.tally(load.phase.load(Relaxed));
    let answer = match result {
        Ok(answer) => answer,
        Err(err) => {
            if let Some(tally) = tally {
                tally.error(&format!("refresh: {}", err.kind()));
            }
            return false;
        }
    };
    let outcome = if answer.status != StatusCode::OK {
        Err(format!(
            "refresh: {}",
            refusal_kind(answer.status, &answer.body)
        ))
    } else {
        match Envelope::<TimestampRole>::parse("timestamp", &answer.body) {
            Err(_) => Err("refresh: not a TUF timestamp".to_owned()),
            Ok(timestamp) if timestamp.signed.version < floor => {
                Err("refresh: older timestamp than the center's current one".to_owned())
            }
            Ok(timestamp) => {
                if timestamp.signed.version > load.timestamp_start
                    && load.publish_stage.load(Relaxed) != BEFORE_PUBLISH
                {
                    let _ = load.new_timestamp_seen_us.compare_exchange(
                        0,
                        load.micros_since_epoch(),
                        Relaxed,
                        Relaxed,
                    );
                }
                Ok(())
            }
        }
    };
    if let Some(tally) = tally {
        match outcome {
            Ok(()) => tally.refreshed(latency, answer.body.len(), answer.wire_bytes),
            Err(kind) => tally.error(&kind),
        }
    }
    true
}

fn phase_report(
    count: u64,
    elapsed: Duration,
    errors: std::collections::BTreeMap<String, u64>,
) -> PhaseReport {
    let secs = elapsed.as_secs_f64();
    PhaseReport {
        count,
        secs,
        per_sec: if secs > 0.0 { count as f64 / secs } else { 0.0 },
        errors,
    }
}

fn expect_status(got: StatusCode, want: StatusCode, body: &[u8], what: &str) -> anyhow::Result<()> {
    if got == want {
        return Ok(());
    }
    bail!(
        "{what}: the center answered {got}: {}",
        String::from_utf8_lossy(body)
    )
}

/// The error kind of a refused request: its status and the API's stable error code.
fn refusal_kind(status: StatusCode, body: &[u8]) -> String {
    let code = serde_json::from_slice::<herd_proto::api::ErrorBody>(body)
        .map(|body| body.error.code)
        .unwrap_or_else(|_| "no error body".to_owned());
    format!("{} {code}", status.as_u16())
}

/// The center's counters from `/metrics`, over a connection of its own.
async fn center_counters(
    endpoint: &Endpoint,
    tls: &Arc<ClientConfig>,
) -> anyhow::Result<CenterCounters> {
    let mut connection = Https::connect(endpoint, tls.clone())
        .await
        .context("cannot connect to read the center's /metrics")?;
    let (status, body) = connection.call(Method::GET, "/metrics", None, None).await?;
    expect_status(status, StatusCode::OK, &body, "reading /metrics")?;
    Ok(CenterCounters::parse(&String::from_utf8_lossy(&body)))
}

/// Enrols `count` terminals, [`ENROL_WORKERS`] at a time, each with a fresh key and CSR.
/// Terminals that could not enrol are `None`; their errors are in the tally.
async fn enrol(
    endpoint: &Endpoint,
    operator_tls: &Arc<ClientConfig>,
    ca_pem: &str,
    token: &str,
    count: usize,
    world: Arc<fleet::World>,
    next: Option<Arc<fleet::World>>,
) -> anyhow::Result<(Vec<Option<SimTerminal>>, Tally)> {
    // Ids are unique per run, so runs against one existing center never collide.
    let run = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let after = next;
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Tally::default());
    let mut workers = JoinSet::new();
    for _ in 0..ENROL_WORKERS.min(count) {
        let (endpoint, tls, ca_pem, token, run) = (
            endpoint.clone(),
            operator_tls.clone(),
            ca_pem.to_owned(),
            token.to_owned(),
            run.clone(),
        );
        let (next, done, errors, world, after) = (
            next.clone(),
            done.clone(),
            errors.clone(),
            world.clone(),
            after.clone(),
        );
        workers.spawn(async move {
            let mut enrolled = Vec::new();
            let mut connection: Option<Https> = None;
            let now = herd_core::Timestamp::from_unix_seconds(unix_now());
            let mut planner = world.planner(now);
            let mut planner_after = after.as_ref().map(|after| after.planner(now));
            loop {
                let index = next.fetch_add(1, Relaxed);
                if index >= count {
                    return enrolled;
                }
                let id = format!("sim-{run}-{index}");
                let doc = world.terminal(index, &id);
                match enrol_one(&endpoint, &tls, &mut connection, &ca_pem, &token, &doc).await {
                    Ok(tls) => {
                        let expected = world.expected(&mut planner, &doc);
                        let expected_after = match (&after, &mut planner_after) {
                            (Some(after), Some(planner)) => after.expected(planner, &doc),
                            _ => expected,
                        };
                        enrolled.push((
                            index,
                            SimTerminal {
                                id,
                                tls,
                                body: Bytes::from(fleet::checkin_body(&doc)),
                                expected,
                                expected_after,
                            },
                        ))
                    }
                    Err(kind) => errors.error(&kind),
                }
                done.fetch_add(1, Relaxed);
            }
        });
    }
    let mut terminals: Vec<Option<SimTerminal>> = (0..count).map(|_| None).collect();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            joined = workers.join_next() => match joined {
                Some(Ok(enrolled)) => {
                    for (index, terminal) in enrolled {
                        terminals[index] = Some(terminal);
                    }
                }
                Some(Err(err)) => bail!("an enrolment worker failed: {err}"),
                None => break,
            },
            _ = tick.tick() => progress(&format!("enrolling: {}/{count}", done.load(Relaxed))),
        }
    }
    progress(&format!(
        "enrolled: {}/{count}",
        terminals.iter().flatten().count()
    ));
    progress_done();
    let errors = Arc::try_unwrap(errors).unwrap_or_default();
    Ok((terminals, errors))
}

/// Enrols one terminal over `connection` (opened or reopened as needed) and returns its TLS
/// identity; on failure, the error kind.
async fn enrol_one(
    endpoint: &Endpoint,
    tls: &Arc<ClientConfig>,
    connection: &mut Option<Https>,
    ca_pem: &str,
    token: &str,
    terminal: &herd_proto::terminal::TerminalDoc,
) -> Result<Arc<ClientConfig>, String> {
    let (key_pem, csr_pem) =
        herd_tls::new_key_and_csr(&terminal.id).map_err(|err| format!("key generation: {err}"))?;
    let request = herd_proto::api::EnrolRequest {
        token: token.to_owned(),
        csr_pem,
        id: Some(terminal.id.clone()),
        user: terminal.user.clone(),
        hardware: terminal.hardware.clone(),
        tz: terminal.policy.tz.clone(),
    };
    let body = serde_json::to_vec(&request).map_err(|err| format!("serialising: {err}"))?;
    if connection.as_ref().is_none_or(Https::is_closed) {
        *connection = Some(
            Https::connect(endpoint, tls.clone())
                .await
                .map_err(|err| err.kind().to_owned())?,
        );
    }
    let open = connection.as_mut().expect("just connected");
    let (status, answer) = match open.call(Method::POST, "/v1/enrol", None, Some(body)).await {
        Ok(answer) => answer,
        Err(err) => {
            *connection = None;
            return Err(format!("enrol: {}", err.root_cause()));
        }
    };
    if status != StatusCode::CREATED {
        return Err(refusal_kind(status, &answer));
    }
    let enrolled: herd_proto::api::EnrolResponse =
        serde_json::from_slice(&answer).map_err(|_| "unreadable enrolment answer".to_owned())?;
    let identity = herd_tls::KeyPairPem {
        cert_pem: enrolled.certificate_pem,
        key_pem,
    };
    herd_tls::client_config(ca_pem, Some(&identity)).map_err(|err| format!("client config: {err}"))
}

/// Every enrolled terminal checks in once over a new connection of its own, `connections`
/// at a time. Answers are parsed completely here (in the load, only the action is read).
async fn roll_call(load: &Arc<Load>) -> Tally {
    let tally = Arc::new(Tally::default());
    let mut tasks = JoinSet::new();
    for slot in 0..load.connections {
        let (load, tally) = (load.clone(), tally.clone());
        tasks.spawn(async move {
            for index in (slot..load.terminals.len()).step_by(load.connections) {
                let Some(terminal) = &load.terminals[index] else {
                    continue;
                };
                let started = Instant::now();
                let mut connection =
                    match Https::connect(&load.endpoint, terminal.tls.clone()).await {
                        Ok(connection) => connection,
                        Err(err) => {
                            tally.error(err.kind());
                            continue;
                        }
                    };
                let request = checkin_request(&load, &connection, terminal);
                match connection.send(request).await {
                    Ok((StatusCode::OK, body)) => {
                        match serde_json::from_slice::<herd_proto::api::CheckinResponse>(&body) {
                            Ok(answer) => {
                                let action = find_action(&body);
                                if answer.plan.terminal != terminal.id {
                                    tally.error("plan for another terminal");
                                } else if action.is_none() {
                                    tally.error("unreadable answer");
                                } else if load.check_plans && action != Some(terminal.expected) {
                                    tally.error("unexpected plan");
                                } else if let Some(action) = action {
                                    tally.answered(started.elapsed(), action);
                                }
                            }
                            Err(_) => tally.error("unreadable answer"),
                        }
                    }
                    Ok((status, body)) => tally.error(&refusal_kind(status, &body)),
                    Err(err) => tally.error(err.kind()),
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Arc::try_unwrap(tally).unwrap_or_default()
}

fn checkin_request(
    load: &Load,
    connection: &Https,
    terminal: &SimTerminal,
) -> hyper::Request<Full<Bytes>> {
    let mut request = hyper::Request::new(Full::new(terminal.body.clone()));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = load.checkin_uri.clone();
    let headers = request.headers_mut();
    headers.insert(hyper::header::HOST, connection.host().clone());
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    request
}

/// One connection of the load: checks in back to back as its terminal until the load stops,
/// moving on to the next terminal of its share after `reconnect_every` check-ins (if set) and
/// reconnecting after errors.
async fn connection_slot(load: Arc<Load>, slot: usize) {
    let share: Vec<&SimTerminal> = (slot..load.terminals.len())
        .step_by(load.connections)
        .filter_map(|index| load.terminals[index].as_ref())
        .collect();
    if share.is_empty() {
        return;
    }
    let mut turn = 0;
    while load.phase.load(Relaxed) != STOP {
        let terminal = share[turn % share.len()];
        turn += 1;
        let mut connection = match Https::connect(&load.endpoint, terminal.tls.clone()).await {
            Ok(connection) => connection,
            Err(err) => {
                if let Some(tally) = load.tally(load.phase.load(Relaxed)) {
                    tally.error(err.kind());
                }
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
        if load.phase.load(Relaxed) == MEASURE {
            load.handshakes.fetch_add(1, Relaxed);
            if connection.resumed() {
                load.resumed.fetch_add(1, Relaxed);
            }
        }
        let mut sent = 0;
        while load.phase.load(Relaxed) != STOP {
            let stage = load.publish_stage.load(Relaxed);
            let started = Instant::now();
            let result = connection
                .send(checkin_request(&load, &connection, terminal))
                .await;
            let latency = started.elapsed();
            let tally = load.tally(load.phase.load(Relaxed));
            match result {
                Ok((StatusCode::OK, body)) => {
                    match (find_action(&body), tally) {
                        (Some(action), Some(tally)) => {
                            let answered = load.publish_stage.load(Relaxed);
                            if load.check_plans && !terminal.plans(action, stage, answered) {
                                tally.error("unexpected plan");
                            } else {
                                tally.answered(latency, action);
                            }
                        }
                        (None, Some(tally)) => tally.error("unreadable answer"),
                        (_, None) => {}
                    }
                    if load.refresh && !refresh_metadata(&load, &mut connection).await {
                        break;
                    }
                }
                Ok((status, body)) => {
                    if let Some(tally) = tally {
                        tally.error(&refusal_kind(status, &body));
                    }
                }
                Err(err) => {
                    if let Some(tally) = tally {
                        tally.error(err.kind());
                    }
                    break;
                }
            }
            sent += 1;
            if connection.is_closed() || (load.reconnect_every > 0 && sent >= load.reconnect_every)
            {
                break;
            }
        }
    }
}
