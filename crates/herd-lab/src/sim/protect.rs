//! `herd sim protect`: time to protection (SPEC §8). A real center (`herd serve`), real site
//! processes in front of it, and simulated terminals in worker processes (`herd sim
//! protect-worker`, see `protect_worker`) speaking the real protocol; a vendor publishes a
//! new definitions release at the center and every terminal, woken through its push
//! connection, checks in, verifies, downloads and reports it. The time from the start of the
//! publication to each terminal's acknowledged report is its time to protection.
//!
//! This process only orchestrates: it starts the center and the sites, publishes as the
//! vendor, starts the workers (each with at most `MAX_TERMINALS_PER_WORKER` terminals and a
//! loopback source address of its own, since one process may hold 20,000 open files and one
//! source address has about 28,000 ports towards one destination), tells them when a run
//! starts, and gathers their times.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use herd_client::Client;
use herd_proto::api::{NewApiToken, NewEnrolmentToken, VerdictDoc};
use herd_proto::terminal::InstalledDoc;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::center::SpawnedCenter;
use super::protect_report::{self as report, CpuUse, ProtectReport, RunReport};
use super::protect_sites::{self, Site};
use super::protect_wire::{Goal, Wake, WorkerCommand, WorkerNews, WorkerOrders};

/// Measure time to protection: from a vendor publishing a new definitions release at the
/// center until each terminal has fetched, verified and reported it.
///
/// Starts `herd serve` (this program) on embedded SQLite in a temporary directory, SITES site
/// servers (`herd serve --role site`) in front of it, each on a loopback address of its own,
/// and TERMINALS simulated terminals spread over worker processes. Each terminal enrols
/// through its site (terminal i with site i mod SITES; with `--sites 0` at the center) with
/// its own key and certificate, runs the previous release of a vendor's definitions product,
/// checks in, refreshes its signed metadata and holds its push connection (`GET /v1/wait`).
/// Each run, the vendor uploads the next release's package and publishes its feed; the time
/// each terminal's `plan.report` is acknowledged, counted from the start of the upload, is its
/// time to protection. The report gives p50/p99/max, the share protected within 1, 5 and 10 s,
/// the terminals never protected within `--run-timeout`, and the bytes that crossed the
/// center→site link against one copy of the package per site; the summary is the median over
/// the runs.
///
/// With `--verdict` each run measures Herd immunity's path instead (issue 13): an analyst
/// judges a new file malicious (`POST /v1/verdicts`), which publishes its exact-hash signature
/// in Herd's own signature set; a terminal is protected once it has fetched that set, checked
/// it against the signed `herd` role, found the file's hash in it, and its `herd_set.updated`
/// event is acknowledged. Times count from the start of the verdict's request.
///
/// Everything started is killed when the simulation ends, also on an error.
#[derive(Debug, Args)]
pub struct ProtectArgs {
    /// Terminals to simulate.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    terminals: usize,
    /// Site servers between the center and the terminals (0: terminals at the center).
    #[arg(long, default_value_t = 10, value_name = "N")]
    sites: usize,
    /// Releases published, one measurement each (the summary is their median).
    #[arg(long, default_value_t = 3, value_name = "N")]
    runs: u32,
    /// Worker processes holding the terminals [default: one per 14,000 terminals].
    #[arg(long, value_name = "P")]
    processes: Option<usize>,
    /// Size of each release's definitions file, in KiB (random signatures: the package is
    /// about this size, as gzip cannot shrink them).
    #[arg(long, default_value_t = 16, value_name = "KIB")]
    definitions_kib: usize,
    /// Measure from an analyst's verdict to Herd's signature set on every terminal, instead of
    /// from a vendor's release.
    #[arg(long)]
    verdict: bool,
    /// How terminals learn of a release: `push` (holding `GET /v1/wait`) or `poll`.
    #[arg(long, value_enum, default_value_t = WakeMode::Push)]
    wake: WakeMode,
    /// Seconds a wait is held before it is asked again (push).
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    wait_secs: u64,
    /// Milliseconds between check-ins (poll, and terminals whose upstream refuses push).
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    poll_ms: u64,
    /// Seconds after the publication after which a terminal not protected counts as never.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    run_timeout: u64,
    /// Connections each worker opens at once while enrolling and connecting.
    #[arg(long, default_value_t = 64, value_name = "N")]
    connect_concurrency: usize,
    /// Keep the center's and sites' data (databases, logs) in this directory instead of a
    /// temporary one that is removed at the end.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print the report as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum WakeMode {
    Push,
    Poll,
}

/// The most terminals one worker process holds: each is a connection, and a process may open
/// 20,000 files.
pub const MAX_TERMINALS_PER_WORKER: usize = 16_000;
/// With no sites the center holds every connection itself, in one process.
const MAX_TERMINALS_AT_CENTER: usize = 18_000;
/// The vendor, product and platform of the simulated definitions.
const VENDOR: &str = "sim-vendor";
const PRODUCT: &str = "sim-defs";
const PLATFORM: &str = "pc";
/// How long the fleet must take to enrol and settle before the simulation gives up.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(1800);
/// A quiet moment between runs, once no terminal is busy with the last one.
const BETWEEN_RUNS: Duration = Duration::from_secs(3);
/// How long the fleet and the sites may take to finish a run's work before the next starts
/// anyway (said on stderr).
const QUIET_TIMEOUT: Duration = Duration::from_secs(900);

pub fn run(args: ProtectArgs) -> anyhow::Result<()> {
    if args.terminals == 0 {
        bail!("--terminals must be at least 1");
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if args.definitions_kib == 0 {
        bail!("--definitions-kib must be at least 1");
    }
    if args.sites == 0 && args.terminals > MAX_TERMINALS_AT_CENTER {
        bail!(
            "--sites 0 puts every terminal's connection on the center, one process that may open \
             at most 20,000 files: use at most {MAX_TERMINALS_AT_CENTER} terminals, or sites"
        );
    }
    let processes = args
        .processes
        .unwrap_or_else(|| args.terminals.div_ceil(14_000))
        .max(1);
    if processes == 0 || args.terminals.div_ceil(processes) > MAX_TERMINALS_PER_WORKER {
        bail!(
            "--processes {processes}: at most {MAX_TERMINALS_PER_WORKER} terminals per process \
             (each holds a connection, and a process may open at most 20,000 files)"
        );
    }
    if processes > 250 {
        bail!("--processes {processes}: at most 250 (one loopback source address each)");
    }
    let limit = raise_open_files_limit()?;
    eprintln!("open files: soft limit raised to the hard limit, {limit}");
    let report = simulate(&args, processes)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("cannot serialise the report")?
        );
    } else {
        print!("{}", report.text());
    }
    if report.runs.iter().all(|run| run.protected == 0) {
        bail!("no terminal was protected in any run");
    }
    Ok(())
}

/// Raises this process's soft limit of open files to its hard limit (children inherit it).
fn raise_open_files_limit() -> anyhow::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("cannot read RLIMIT_NOFILE")?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
        .with_context(|| format!("cannot raise RLIMIT_NOFILE to {hard}"))?;
    Ok(hard)
}

fn simulate(args: &ProtectArgs, processes: usize) -> anyhow::Result<ProtectReport> {
    let work = Workdir::create(args.data_dir.as_deref())?;
    // The center holds every terminal's connection when there are no sites.
    let config = work.path.join("center.toml");
    std::fs::write(
        &config,
        format!(
            "max_connections = {}\nidle_timeout_secs = {}\n",
            args.terminals + 1000,
            args.wait_secs + 120
        ),
    )
    .with_context(|| format!("cannot write {}", config.display()))?;
    let center = SpawnedCenter::start_with(
        Some(&work.path.join("center")),
        None,
        &["-c".to_owned(), config.display().to_string()],
    )?;
    let center_url = format!("https://{}", center.addr()?);
    let data_dir = center.data_dir().to_owned();
    let ca_pem = super::center::read_text(&data_dir.join("ca.pem"), "the center's CA")?;
    let operator_token =
        super::center::read_text(&data_dir.join("operator.token"), "the operator token")?;
    let operator = Client::new(&center_url, &ca_pem, None)?.with_token(&operator_token);
    let vendor_token = operator
        .new_api_token(&NewApiToken {
            role: "vendor".to_owned(),
            vendor: Some(VENDOR.to_owned()),
            label: "herd sim protect".to_owned(),
            ttl_secs: Some(86_400),
        })
        .context("POST /v1/tokens (the vendor's token)")?;
    let vendor = Client::new(&center_url, &ca_pem, None)?.with_token(&vendor_token.token);
    let analyst = if args.verdict {
        let token = operator
            .new_api_token(&NewApiToken {
                role: "analyst".to_owned(),
                vendor: None,
                label: "herd sim protect --verdict".to_owned(),
                ttl_secs: Some(86_400),
            })
            .context("POST /v1/tokens (the analyst's token)")?;
        Some(Client::new(&center_url, &ca_pem, None)?.with_token(&token.token))
    } else {
        None
    };

    // Release 1 is what every terminal runs at the start.
    let mut publisher = Publisher::new(&work.path.join("packages"), args.definitions_kib)?;
    let first = publisher.publish(&vendor)?;
    eprintln!(
        "release 1 published ({} bytes package, {:.2} s)",
        first.package_bytes, first.secs
    );

    let sites = protect_sites::start_sites(
        &center,
        args.sites,
        args.terminals.div_ceil(args.sites.max(1)),
        &work.path,
    )?;
    let upstreams: Vec<String> = if sites.is_empty() {
        vec![center.addr()?.to_string()]
    } else {
        sites.iter().map(|site| site.addr.to_string()).collect()
    };
    let enrol_token = operator
        .new_enrolment_token(&NewEnrolmentToken {
            label: "herd sim protect".to_owned(),
            uses: Some(args.terminals as u64),
            ttl_secs: Some(86_400),
            reenrol_terminal: None,
        })
        .context("POST /v1/enrolment-tokens")?;

    let started = Instant::now();
    let mut fleet = Fleet::start(args, processes, &upstreams, &ca_pem, &enrol_token.token)?;
    let settled = fleet.settle()?;
    let settle_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "fleet: {} of {} terminals enrolled and holding their connections in {:.1} s ({} polling){}",
        settled.enrolled,
        args.terminals,
        settle_secs,
        settled.polling,
        if settled.errors.is_empty() {
            String::new()
        } else {
            format!(", errors {:?}", settled.errors)
        }
    );
    if settled.enrolled == 0 {
        bail!("no terminal could enrol: {:?}", settled.errors);
    }

    let mut runs = Vec::new();
    // The processes of each tier (center, sites, simulated terminals), for CPU accounting.
    let tier_pids: [Vec<u32>; 3] = [
        vec![center.pid()],
        sites.iter().filter_map(Site::pid).collect(),
        fleet.pids(),
    ];
    for run in 1..=args.runs {
        // Each run starts from an idle fleet, as a publication finds one: the previous run's
        // stragglers (past `--run-timeout`) and the sites' relaying of its reports are done —
        // and before the first, the relaying of the fleet's enrolment and first check-ins
        // (100,000 of them still on their way to the center made the first run's publication
        // take 8.8 s and protect a quarter fewer terminals than the next two).
        let started = Instant::now();
        fleet.quiet(&sites, &ca_pem, QUIET_TIMEOUT)?;
        let secs = started.elapsed().as_secs_f64();
        eprintln!("fleet and sites quiet after {secs:.1} s");
        let quiet_secs = Some(secs);
        std::thread::sleep(BETWEEN_RUNS);
        let upstream_before = upstream_bytes(&sites, &ca_pem)?;
        let (goal, version) = match &analyst {
            Some(_) => {
                let file = judged_file(run);
                let sha256 = hex::encode(Sha256::digest(&file));
                (
                    Goal::HerdSignature {
                        sha256: sha256.clone(),
                    },
                    sha256,
                )
            }
            None => {
                let version = publisher.next_version();
                (
                    Goal::Release {
                        version: version.clone(),
                    },
                    version,
                )
            }
        };
        fleet.command(&WorkerCommand::Run { run, goal })?;
        let cpu_now = || -> Option<[f64; 3]> {
            Some([
                CpuUse::seconds_of(&tier_pids[0])?,
                CpuUse::seconds_of(&tier_pids[1])?,
                CpuUse::seconds_of(&tier_pids[2])?,
            ])
        };
        let cpu_before = cpu_now();
        let started = Instant::now();
        let t0 = unix_micros();
        let mut published = match &analyst {
            Some(analyst) => {
                let published = judge(analyst, run)?;
                eprintln!(
                    "run {run}: file {version} judged malicious in {:.2} s",
                    published.secs
                );
                published
            }
            None => {
                let published = publisher.publish(&vendor)?;
                eprintln!(
                    "run {run}: release {version} published ({} bytes package) in {:.2} s",
                    published.package_bytes, published.secs
                );
                published
            }
        };
        let gathered = fleet.gather(run, t0, Duration::from_secs(args.run_timeout))?;
        let cpu = cpu_before.zip(cpu_now()).map(|(before, after)| CpuUse {
            wall_secs: started.elapsed().as_secs_f64(),
            center_secs: after[0] - before[0],
            sites_secs: after[1] - before[1],
            terminals_secs: after[2] - before[2],
        });
        if analyst.is_some() {
            // The set's size is known once terminals found it in the signed metadata.
            published.package_bytes = gathered.target_bytes;
        }
        // Sites count what they fetched from the center once the fetch is done: by the time
        // terminals are protected it is.
        let upstream_after = upstream_bytes(&sites, &ca_pem)?;
        let upstream = upstream_before
            .zip(upstream_after)
            .map(|(before, after)| after.saturating_sub(before));
        let mut run_report = RunReport::new(
            run,
            version,
            settled.enrolled,
            t0,
            published,
            gathered,
            upstream,
            args.sites,
        );
        run_report.quiet_before_secs = quiet_secs;
        run_report.cpu = cpu;
        eprintln!("{}", run_report.line());
        if let Some(cpu) = &run_report.cpu {
            eprintln!("run {run}: {}", cpu.line(run_report.protected));
        }
        runs.push(run_report);
    }
    fleet.stop();
    drop(sites);
    drop(center);
    Ok(ProtectReport::new(
        report::Input {
            terminals: args.terminals,
            enrolled: settled.enrolled,
            enrol_errors: settled.errors,
            polling: settled.polling,
            sites: args.sites,
            processes,
            wake: match args.wake {
                WakeMode::Push => "push",
                WakeMode::Poll => "poll",
            },
            path: if args.verdict { "verdict" } else { "release" },
            definitions_kib: args.definitions_kib,
            settle_secs,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
        },
        runs,
    ))
}

/// The sum of the sites' `herd_site_upstream_bytes_total` now; `None` without sites or when
/// a site does not export it.
fn upstream_bytes(sites: &[Site], ca_pem: &str) -> anyhow::Result<Option<u64>> {
    site_metric_sum(sites, ca_pem, "herd_site_upstream_bytes_total")
}

/// What the sites still queue for the center (`herd_site_queue_depth`, summed; 0 without
/// sites).
fn queue_depth(sites: &[Site], ca_pem: &str) -> anyhow::Result<u64> {
    Ok(site_metric_sum(sites, ca_pem, "herd_site_queue_depth")?.unwrap_or(0))
}

/// The sum over the sites of metric `name`; `None` without sites or when a site does not
/// export it.
fn site_metric_sum(sites: &[Site], ca_pem: &str, name: &str) -> anyhow::Result<Option<u64>> {
    if sites.is_empty() {
        return Ok(None);
    }
    let mut total = 0;
    for site in sites {
        let client = Client::new(&format!("https://{}", site.addr), ca_pem, None)?;
        let metrics = client
            .repository()
            .get("/metrics", herd_client::ReadLimits::metadata(16 << 20))
            .with_context(|| format!("GET https://{}/metrics ({})", site.addr, site.id))?;
        match report::metric_sum(&String::from_utf8_lossy(&metrics), name) {
            Some(value) => total += value as u64,
            None => return Ok(None),
        }
    }
    Ok(Some(total))
}

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The simulation's directory: the given one (kept), or a temporary one removed at the end.
struct Workdir {
    path: PathBuf,
    remove: bool,
}

impl Workdir {
    fn create(given: Option<&Path>) -> anyhow::Result<Workdir> {
        match given {
            Some(path) => {
                std::fs::create_dir_all(path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                Ok(Workdir {
                    path: path.to_owned(),
                    remove: false,
                })
            }
            None => Ok(Workdir {
                path: super::center::temporary_directory()?,
                remove: true,
            }),
        }
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The vendor: builds each release's package (a real definitions package, `herd_package`),
/// uploads it and publishes its feed, which lists every release so far and one new threat
/// per release that only the new release covers.
struct Publisher {
    dir: PathBuf,
    definitions_kib: usize,
    /// Releases published so far, oldest first: (version, seq, published, catalog packages).
    releases: Vec<serde_json::Value>,
    threats: Vec<serde_json::Value>,
    coverage: Vec<serde_json::Value>,
}

/// One publication: how long it took, from the upload's start to the feed's answer.
#[derive(Clone, Copy, Debug)]
pub struct Published {
    pub secs: f64,
    pub package_bytes: u64,
}

impl Publisher {
    fn new(dir: &Path, definitions_kib: usize) -> anyhow::Result<Publisher> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Publisher {
            dir: dir.to_owned(),
            definitions_kib,
            releases: Vec::new(),
            threats: Vec::new(),
            coverage: Vec::new(),
        })
    }

    fn next_seq(&self) -> u64 {
        self.releases.len() as u64 + 1
    }

    fn next_version(&self) -> String {
        self.next_seq().to_string()
    }

    /// What terminals run after the first release.
    fn installed_first() -> InstalledDoc {
        InstalledDoc {
            product: PRODUCT.to_owned(),
            version: "1".to_owned(),
            seq: 1,
            pattern: "sim-1".to_owned(),
            format: "archive".to_owned(),
        }
    }

    /// Builds and publishes the next release.
    fn publish(&mut self, vendor: &Client) -> anyhow::Result<Published> {
        let seq = self.next_seq();
        let version = seq.to_string();
        let sources = self.dir.join(format!("{PRODUCT}-{version}"));
        std::fs::create_dir_all(&sources)
            .with_context(|| format!("cannot create {}", sources.display()))?;
        let test_text = format!("HERD-SIM-TEST-PATTERN-{seq}");
        let definitions = sources.join(format!("sim-{seq}.ndb"));
        std::fs::write(
            &definitions,
            definitions_text(seq, self.definitions_kib, &test_text),
        )
        .with_context(|| format!("cannot write {}", definitions.display()))?;
        let test_pattern = sources.join("test-pattern.txt");
        std::fs::write(&test_pattern, format!("{test_text}\n"))
            .with_context(|| format!("cannot write {}", test_pattern.display()))?;
        let spec = herd_package::PackageSpec {
            product: PRODUCT.to_owned(),
            vendor: VENDOR.to_owned(),
            version: version.clone(),
            seq,
            pattern: format!("sim-{seq}"),
            definitions: vec![definitions],
            test_pattern,
            post_install: None,
            pre_uninstall: None,
            platforms: vec![PLATFORM.to_owned()],
        };
        let out = self.dir.join(format!("{PRODUCT}-{version}.tar.gz"));
        let built = herd_package::build(&spec, &out)
            .with_context(|| format!("cannot build release {version}"))?;
        // Published a little in the past: the planner takes releases published by its `now`.
        let now = unix_micros() as i64 / 1_000_000;
        let published = herd_core::Timestamp::from_unix_seconds(now - 2).to_string();
        let threat = format!("sim-threat-{seq}");
        let mut releases = self.releases.clone();
        releases.push(
            json!({"product": PRODUCT, "version": version, "pattern": format!("sim-{seq}"),
                             "seq": seq, "published": published,
                             "packages": built.catalog_packages}),
        );
        let mut threats = self.threats.clone();
        threats.push(
            json!({"id": threat, "name": format!("simulated threat {seq}"),
                            "danger": "high", "discovered": &published[..10]}),
        );
        let mut coverage = self.coverage.clone();
        coverage.push(
            json!({"product": PRODUCT, "threat": threat, "since_seq": seq,
                             "covered_on": &published[..10]}),
        );
        let feed = json!({
            "format": "herd.catalog/v1",
            "vendors": [{"id": VENDOR, "name": "Simulated vendor"}],
            "products": [{"id": PRODUCT, "vendor": VENDOR, "name": "Simulated definitions",
                          "platforms": [PLATFORM]}],
            "releases": releases,
            "threats": threats,
            "coverage": coverage,
        });
        let feed_bytes = serde_json::to_vec(&feed).context("serialising the feed")?;

        let started = Instant::now();
        let stored = vendor
            .upload_package(&out)
            .with_context(|| format!("PUT /v1/packages/{}", built.sha256))?;
        if stored.sha256 != built.sha256 {
            bail!("the center stored {} for {}", stored.sha256, built.sha256);
        }
        let answer = vendor
            .publish_feed(VENDOR, &feed_bytes)
            .with_context(|| format!("PUT /v1/feeds/{VENDOR}"))?;
        let secs = started.elapsed().as_secs_f64();
        if !answer.changed || !answer.missing_packages.is_empty() {
            bail!(
                "publishing release {version}: changed {}, missing packages {:?}",
                answer.changed,
                answer.missing_packages
            );
        }
        self.releases = releases;
        self.threats = threats;
        self.coverage = coverage;
        Ok(Published {
            secs,
            package_bytes: built.size,
        })
    }
}

/// The file an analyst judges malicious in run `run` of `--verdict`: new in every run and
/// every simulation, so each verdict changes Herd's set.
fn judged_file(run: u32) -> Vec<u8> {
    static NONCE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let nonce = NONCE.get_or_init(rand::random::<u64>);
    format!("herd sim protect: a new malicious file, run {run} of simulation {nonce:016x}\n")
        .into_bytes()
}

/// The analyst's verdict of run `run`: the file judged malicious, which publishes its
/// signature in Herd's set (signed and pushed by the center at once).
fn judge(analyst: &Client, run: u32) -> anyhow::Result<Published> {
    let file = judged_file(run);
    let sha256 = hex::encode(Sha256::digest(&file));
    let started = Instant::now();
    let outcome = analyst
        .verdict(&VerdictDoc {
            sha256: sha256.clone(),
            size: Some(file.len() as u64),
            verdict: "malicious".to_owned(),
            threat: None,
            danger: None,
            name: Some(format!("herd sim protect run {run}")),
        })
        .with_context(|| format!("POST /v1/verdicts (run {run}, {sha256})"))?;
    let secs = started.elapsed().as_secs_f64();
    if !outcome.changed {
        bail!("the verdict on {sha256} changed nothing: {outcome:?}");
    }
    Ok(Published {
        secs,
        package_bytes: 0,
    })
}

/// `kib` KiB of ClamAV body signatures (`.ndb`), random but the same for the same release,
/// with the test pattern's own signature first.
fn definitions_text(seq: u64, kib: usize, test_text: &str) -> String {
    let mut text = format!("Sim.TestPattern.{seq}:0:*:{}\n", hex::encode(test_text));
    let mut state = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut line = 0u64;
    while text.len() < kib * 1024 {
        let mut bytes = [0u8; 24];
        for chunk in bytes.chunks_mut(8) {
            // xorshift64*: deterministic, and random enough that gzip cannot shrink it.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let value = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
            chunk.copy_from_slice(&value.to_le_bytes());
        }
        text.push_str(&format!(
            "Sim.Signature.{seq}.{line}:0:*:{}\n",
            hex::encode(bytes)
        ));
        line += 1;
    }
    text
}

/// The worker processes.
struct Fleet {
    workers: Vec<Worker>,
    news: mpsc::Receiver<(usize, anyhow::Result<WorkerNews>)>,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
}

/// What the fleet looked like once settled.
struct Settled {
    enrolled: usize,
    polling: usize,
    errors: BTreeMap<String, u64>,
}

/// What the workers sent for one run.
pub struct Gathered {
    /// Per protected terminal: microseconds from T0 to its acknowledged report.
    pub times_us: Vec<u64>,
    pub errors: BTreeMap<String, u64>,
    pub bytes: super::protect_wire::Bytes,
    pub verifications: u64,
    /// The signed length of the run's target (the largest any worker saw).
    pub target_bytes: u64,
    /// Workers that did not answer in time.
    pub silent_workers: usize,
}

impl Fleet {
    /// The worker processes' ids.
    fn pids(&self) -> Vec<u32> {
        self.workers
            .iter()
            .map(|worker| worker.child.id())
            .collect()
    }

    fn start(
        args: &ProtectArgs,
        processes: usize,
        upstreams: &[String],
        ca_pem: &str,
        enrol_token: &str,
    ) -> anyhow::Result<Fleet> {
        let exe = std::env::current_exe().context("cannot find this program to start workers")?;
        let (news_tx, news) = mpsc::channel();
        let id_prefix = format!("psim-{:06x}", rand::random::<u32>() & 0xff_ffff);
        let per_worker = args.terminals.div_ceil(processes);
        let mut workers = Vec::new();
        for worker in 0..processes {
            let first = worker * per_worker;
            let count = per_worker.min(args.terminals.saturating_sub(first));
            if count == 0 {
                break;
            }
            let orders = WorkerOrders {
                worker,
                id_prefix: id_prefix.clone(),
                first,
                count,
                upstreams: upstreams.to_vec(),
                source: Some(format!("127.0.0.{}", worker + 2)),
                ca_pem: ca_pem.to_owned(),
                enrol_token: enrol_token.to_owned(),
                installed: Publisher::installed_first(),
                platform: PLATFORM.to_owned(),
                wake: match args.wake {
                    WakeMode::Push => Wake::Push {
                        wait_secs: args.wait_secs,
                        fallback_poll_ms: args.poll_ms,
                    },
                    WakeMode::Poll => Wake::Poll {
                        interval_ms: args.poll_ms,
                    },
                },
                connect_concurrency: args.connect_concurrency,
            };
            let mut child = Command::new(&exe)
                .args(["sim", "protect-worker"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .with_context(|| format!("cannot start worker {worker}"))?;
            let mut stdin = child.stdin.take().expect("piped");
            let stdout = child.stdout.take().expect("piped");
            let mut line = serde_json::to_string(&orders).context("serialising orders")?;
            line.push('\n');
            stdin
                .write_all(line.as_bytes())
                .with_context(|| format!("cannot give worker {worker} its orders"))?;
            let tx = news_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let news =
                        match line {
                            Ok(line) => serde_json::from_str::<WorkerNews>(&line)
                                .with_context(|| format!("worker {worker} said {line:?}")),
                            Err(err) => Err(anyhow::Error::new(err)
                                .context(format!("cannot read worker {worker}"))),
                        };
                    if tx.send((worker, news)).is_err() {
                        return;
                    }
                }
                let _ = tx.send((worker, Err(anyhow::anyhow!("worker {worker} exited"))));
            });
            workers.push(Worker { child, stdin });
        }
        Ok(Fleet { workers, news })
    }

    /// Waits until every worker is ready.
    fn settle(&mut self) -> anyhow::Result<Settled> {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let mut ready = vec![None; self.workers.len()];
        let mut progress = vec![(0, 0); self.workers.len()];
        let mut last_print = Instant::now();
        while ready.iter().any(Option::is_none) {
            let left = deadline.saturating_duration_since(Instant::now());
            let (worker, news) = self
                .news
                .recv_timeout(left)
                .context("the fleet did not settle in time")?;
            match news? {
                WorkerNews::Progress { enrolled, holding } => {
                    progress[worker] = (enrolled, holding);
                }
                WorkerNews::Ready {
                    enrolled,
                    errors,
                    polling,
                } => {
                    progress[worker] = (enrolled, enrolled);
                    ready[worker] = Some((enrolled, errors, polling));
                }
                WorkerNews::Done { .. } => bail!("worker {worker} finished a run before any"),
                WorkerNews::Quiet => {}
            }
            if last_print.elapsed() > Duration::from_secs(5) {
                last_print = Instant::now();
                let (enrolled, holding) = progress
                    .iter()
                    .fold((0, 0), |(e, h), (we, wh)| (e + we, h + wh));
                eprintln!("fleet: {enrolled} enrolled, {holding} settled");
            }
        }
        let mut settled = Settled {
            enrolled: 0,
            polling: 0,
            errors: BTreeMap::new(),
        };
        for (enrolled, errors, polling) in ready.into_iter().flatten() {
            settled.enrolled += enrolled;
            settled.polling += polling;
            for (kind, count) in errors {
                *settled.errors.entry(kind).or_default() += count;
            }
        }
        Ok(settled)
    }

    fn command(&mut self, command: &WorkerCommand) -> anyhow::Result<()> {
        let mut line = serde_json::to_string(command).context("serialising a command")?;
        line.push('\n');
        for (worker, w) in self.workers.iter_mut().enumerate() {
            w.stdin
                .write_all(line.as_bytes())
                .and_then(|()| w.stdin.flush())
                .with_context(|| format!("cannot command worker {worker}"))?;
        }
        Ok(())
    }

    /// Gathers run `run`'s results: each worker says `done` once all its terminals are
    /// protected, or when told to finish once `timeout` has passed since `t0`.
    fn gather(&mut self, run: u32, t0: u64, timeout: Duration) -> anyhow::Result<Gathered> {
        let mut done = vec![false; self.workers.len()];
        let mut gathered = Gathered {
            times_us: Vec::new(),
            errors: BTreeMap::new(),
            bytes: Default::default(),
            verifications: 0,
            target_bytes: 0,
            silent_workers: 0,
        };
        let t0_instant = Instant::now() - Duration::from_micros(unix_micros().saturating_sub(t0));
        let finish_at = t0_instant + timeout;
        let mut told_to_finish = false;
        let give_up = finish_at + Duration::from_secs(30);
        while done.iter().any(|d| !d) {
            let now = Instant::now();
            if !told_to_finish && now >= finish_at {
                self.command(&WorkerCommand::Finish { run })?;
                told_to_finish = true;
            }
            if now >= give_up {
                gathered.silent_workers = done.iter().filter(|d| !**d).count();
                break;
            }
            let wait = if told_to_finish { give_up } else { finish_at }
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            let (worker, news) = match self.news.recv_timeout(wait) {
                Ok(received) => received,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("every worker is gone"),
            };
            match news? {
                WorkerNews::Done {
                    run: finished,
                    protected,
                    errors,
                    bytes,
                    verifications,
                    target_bytes,
                } if finished == run => {
                    done[worker] = true;
                    gathered
                        .times_us
                        .extend(protected.iter().map(|(_, at)| at.saturating_sub(t0)));
                    for (kind, count) in errors {
                        *gathered.errors.entry(kind).or_default() += count;
                    }
                    gathered.bytes.metadata += bytes.metadata;
                    gathered.bytes.packages += bytes.packages;
                    gathered.bytes.requests += bytes.requests;
                    gathered.verifications += verifications;
                    gathered.target_bytes = gathered.target_bytes.max(target_bytes);
                }
                _ => {}
            }
        }
        Ok(gathered)
    }

    /// Waits until no terminal is in the middle of a cycle and every site has sent its queue
    /// to the center (`herd_site_queue_depth` 0), at most `limit`; past it, says so and
    /// returns.
    fn quiet(&mut self, sites: &[Site], ca_pem: &str, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        self.command(&WorkerCommand::Quiet)?;
        let mut quiet = vec![false; self.workers.len()];
        while quiet.iter().any(|q| !q) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.news.recv_timeout(left) {
                Ok((worker, news)) => {
                    if matches!(news?, WorkerNews::Quiet) {
                        quiet[worker] = true;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    eprintln!("warning: terminals still busy after {limit:?}; next run anyway");
                    return Ok(());
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("every worker is gone"),
            }
        }
        loop {
            let depth = queue_depth(sites, ca_pem)?;
            if depth == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "warning: the sites still queue {depth} items for the center; next run anyway"
                );
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn stop(&mut self) {
        for worker in &mut self.workers {
            let _ = worker.child.kill();
            let _ = worker.child.wait();
        }
        self.workers.clear();
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_are_the_size_asked_and_the_same_for_the_same_release() {
        let one = definitions_text(2, 4, "PATTERN");
        assert!(one.len() >= 4096 && one.len() < 4096 + 200, "{}", one.len());
        assert_eq!(one, definitions_text(2, 4, "PATTERN"));
        assert_ne!(one, definitions_text(3, 4, "PATTERN"));
        assert!(one.starts_with(&format!(
            "Sim.TestPattern.2:0:*:{}\n",
            hex::encode("PATTERN")
        )));
        for line in one.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            assert_eq!(fields.len(), 4, "{line}");
            assert!(hex::decode(fields[3]).is_ok(), "{line}");
        }
    }
}
