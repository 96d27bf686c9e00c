//! What the simulator measures and how it says it: a fixed-bucket latency histogram that
//! check-ins record into without allocating or locking, per-phase tallies (latency, plan mix,
//! errors by kind), CPU time of processes from `/proc`, and the center's own numbers from
//! `/metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

use super::fleet::Action;

/// Values below this many microseconds get a bucket each.
const EXACT_BELOW: u64 = 256;
/// Above that, each power of two is split into this many buckets (relative error < 1/128).
const SUB_BUCKETS: u64 = 128;
/// Enough buckets for latencies up to 2^40 µs (12 days).
const BUCKETS: usize = (EXACT_BELOW + (40 - 8) * SUB_BUCKETS) as usize;

/// A latency histogram in microseconds, log-linear like HDR histograms: exact below 256 µs,
/// then 128 buckets per power of two, so every reported percentile is within 0.8 % of the
/// true value. Recording is one relaxed atomic increment.
#[derive(Debug)]
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
        }
    }
}

fn bucket_of(micros: u64) -> usize {
    if micros < EXACT_BELOW {
        return micros as usize;
    }
    let top_bit = 63 - u64::from(micros.leading_zeros());
    let shift = top_bit - 7;
    // The 8 most significant bits, 128..=255.
    let mantissa = micros >> shift;
    let index = EXACT_BELOW + (shift - 1) * SUB_BUCKETS + (mantissa - SUB_BUCKETS);
    (index as usize).min(BUCKETS - 1)
}

/// The middle of a bucket's range, in microseconds.
fn bucket_value(index: usize) -> u64 {
    let index = index as u64;
    if index < EXACT_BELOW {
        return index;
    }
    let shift = (index - EXACT_BELOW) / SUB_BUCKETS + 1;
    let mantissa = (index - EXACT_BELOW) % SUB_BUCKETS + SUB_BUCKETS;
    (mantissa << shift) + (1 << shift) / 2
}

impl Histogram {
    pub fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(micros)].fetch_add(1, Relaxed);
        self.max.fetch_max(micros, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }

    /// The latency below which `quantile` (0..=1) of the recorded ones are.
    pub fn quantile(&self, quantile: f64) -> Option<Duration> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = ((quantile * count as f64).ceil() as u64).clamp(1, count);
        let mut seen = 0;
        for (index, bucket) in self.buckets.iter().enumerate() {
            seen += bucket.load(Relaxed);
            if seen >= rank {
                let micros = bucket_value(index).min(self.max.load(Relaxed));
                return Some(Duration::from_micros(micros));
            }
        }
        None
    }

    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max.load(Relaxed))
    }
}

/// Everything counted during one phase of the run.
#[derive(Debug, Default)]
pub struct Tally {
    pub latency: Histogram,
    /// Answers by plan action ([`Action::index`]).
    pub plans: [AtomicU64; 4],
    /// Errors by kind (a transport failure, or an HTTP status with the API's error code).
    errors: Mutex<BTreeMap<String, u64>>,
    /// Metadata refreshes answered with a current timestamp: their latency, and how many had
    /// each size (body bytes; HTTP/1.1 bytes both ways).
    pub refresh_latency: Histogram,
    refresh_sizes: Mutex<Sizes>,
}

#[derive(Debug, Default)]
struct Sizes {
    body: BTreeMap<u64, u64>,
    wire: BTreeMap<u64, u64>,
}

/// The median of values counted by value.
fn median(counts: &BTreeMap<u64, u64>) -> u64 {
    let total: u64 = counts.values().sum();
    let mut seen = 0;
    for (&value, &count) in counts {
        seen += count;
        if seen * 2 >= total {
            return value;
        }
    }
    0
}

impl Tally {
    pub fn answered(&self, latency: Duration, action: Action) {
        self.latency.record(latency);
        self.plans[action.index()].fetch_add(1, Relaxed);
    }

    pub fn error(&self, kind: &str) {
        let mut errors = self.errors.lock().expect("error tally");
        match errors.get_mut(kind) {
            Some(count) => *count += 1,
            None => {
                errors.insert(kind.to_owned(), 1);
            }
        }
    }

    pub fn refreshed(&self, latency: Duration, body_bytes: usize, wire_bytes: usize) {
        self.refresh_latency.record(latency);
        let mut sizes = self.refresh_sizes.lock().expect("refresh sizes");
        *sizes.body.entry(body_bytes as u64).or_default() += 1;
        *sizes.wire.entry(wire_bytes as u64).or_default() += 1;
    }

    /// Refreshes answered, with the median body and wire bytes.
    pub fn refreshes(&self) -> (u64, u64, u64) {
        let sizes = self.refresh_sizes.lock().expect("refresh sizes");
        (
            sizes.body.values().sum(),
            median(&sizes.body),
            median(&sizes.wire),
        )
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors.lock().expect("error tally").clone()
    }

    pub fn checkins(&self) -> u64 {
        self.plans.iter().map(|p| p.load(Relaxed)).sum()
    }

    pub fn plan_mix(&self) -> PlanMix {
        let count = |action: Action| self.plans[action.index()].load(Relaxed);
        PlanMix {
            none: count(Action::None),
            update: count(Action::Update),
            switch: count(Action::Switch),
            exposed: count(Action::Exposed),
        }
    }
}

/// Answers by plan action.
#[derive(Debug, Serialize)]
pub struct PlanMix {
    pub none: u64,
    pub update: u64,
    pub switch: u64,
    pub exposed: u64,
}

impl PlanMix {
    pub fn count(&self, action: Action) -> u64 {
        match action {
            Action::None => self.none,
            Action::Update => self.update,
            Action::Switch => self.switch,
            Action::Exposed => self.exposed,
        }
    }
}

/// CPU time (user + system) a process has used so far, from `/proc/<pid>/stat`; `None` off
/// Linux or once the process is gone.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: count fields
    // after its closing parenthesis. utime and stime are fields 14 and 15.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_ascii_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    // /proc reports clock ticks of USER_HZ, which is 100 on every Linux architecture's ABI.
    Some(Duration::from_millis((user + system) * 10))
}

/// A process's resident memory now and at its peak, in bytes (`VmRSS` and `VmHWM` of
/// `/proc/<pid>/status`); `None` off Linux or once the process is gone.
pub fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU time the whole machine has spent busy (every core, every process, kernel included), from
/// the first line of `/proc/stat`: user, nice, system, irq, softirq and steal.
pub fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line
        .split_ascii_whitespace()
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| ticks.get(i).copied().unwrap_or(0))
        .sum::<u64>();
    Some(Duration::from_millis(busy * 10))
}

/// The center's own counters, read from its Prometheus text at `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CenterCounters {
    /// Check-ins stored, over all transactions.
    pub stored: f64,
    /// Store transactions (batches) that stored them.
    pub batches: f64,
    /// Seconds the center spent answering check-ins, summed, and how many.
    pub checkin_seconds: f64,
    pub checkins: f64,
}

impl CenterCounters {
    pub fn parse(metrics: &str) -> CenterCounters {
        let mut counters = CenterCounters::default();
        for line in metrics.lines() {
            let Some((name, value)) = line.split_once(' ') else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            match name {
                "herd_checkin_batch_size_sum" => counters.stored = value,
                "herd_checkin_batch_size_count" => counters.batches = value,
                "herd_checkin_seconds_sum" => counters.checkin_seconds = value,
                "herd_checkin_seconds_count" => counters.checkins = value,
                _ => {}
            }
        }
        counters
    }

    pub fn since(self, earlier: CenterCounters) -> CenterCounters {
        CenterCounters {
            stored: self.stored - earlier.stored,
            batches: self.batches - earlier.batches,
            checkin_seconds: self.checkin_seconds - earlier.checkin_seconds,
            checkins: self.checkins - earlier.checkins,
        }
    }
}

/// The whole result, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct Report {
    pub terminals: usize,
    pub connections: usize,
    /// Check-ins per connection before it is replaced by the next terminal's (0: never).
    pub reconnect_every: u64,
    pub warmup_secs: f64,
    /// The measured window.
    pub duration_secs: f64,
    pub center: CenterReport,
    pub catalog: CatalogReport,
    pub enrolment: PhaseReport,
    /// Every terminal's first check-in, each over a new connection (TLS handshake included).
    pub roll_call: PhaseReport,
    pub checkins: u64,
    pub checkins_per_sec: f64,
    pub latency_ms: LatencyReport,
    pub errors: BTreeMap<String, u64>,
    /// Errors during the warm-up (not in `errors`).
    pub warmup_errors: BTreeMap<String, u64>,
    pub plans: PlanMix,
    /// Requests still unanswered when the measured window closed and the grace time ran out.
    pub unfinished: u64,
    pub store: StoreReport,
    pub cpu: CpuReport,
    /// New connections opened during the measured window, and how many resumed a TLS session.
    pub handshakes: u64,
    pub resumed: u64,
    /// The spawned center's resident memory at the end of the measured window, and its peak
    /// (MB); None against an existing center.
    pub center_rss_mb: Option<f64>,
    pub center_peak_rss_mb: Option<f64>,
    /// With `--refresh-metadata`: the metadata refreshes of the measured window.
    pub refresh: Option<RefreshReport>,
    /// With `--publish-during`: the release published during the measured window.
    pub publish: Option<PublishReport>,
}

/// Idle metadata refreshes: after each check-in, one GET of `/tuf/metadata/timestamp.json` on
/// the check-in's connection. Failed ones are in the report's errors, as `refresh: …`.
#[derive(Debug, Serialize)]
pub struct RefreshReport {
    /// Refreshes answered with a timestamp at least as new as the center's current one.
    pub count: u64,
    pub per_sec: f64,
    /// Median bytes of the timestamp document itself.
    pub body_bytes_median: u64,
    /// Median HTTP/1.1 bytes of the whole exchange, request and answer heads included (TLS
    /// records add about 22 bytes each way).
    pub wire_bytes_median: u64,
    pub latency_ms: LatencyReport,
    /// The timestamp's version the center served when the load started.
    pub timestamp_version: u64,
}

/// A vendor's new release, published once during the measured window so that the center
/// signs under load.
#[derive(Debug, Serialize)]
pub struct PublishReport {
    pub vendor: String,
    /// When the publish started, in seconds into the measured window.
    pub at_secs: f64,
    /// How long the publish took to be answered (the center answers once the new catalog is
    /// installed and its metadata signed).
    pub answered_secs: f64,
    /// The timestamp's version before the publish and once it was answered.
    pub timestamp_version_before: u64,
    pub timestamp_version_after: u64,
    /// From the publish's start to the first refresh that saw a newer timestamp (None without
    /// `--refresh-metadata`, or when no refresh saw one).
    pub new_timestamp_secs: Option<f64>,
}

/// The generated catalog the center planned with.
#[derive(Debug, Serialize)]
pub struct CatalogReport {
    pub threats: usize,
    pub products: usize,
    pub releases_per_product: usize,
    pub seed: u64,
    pub feeds: usize,
    /// All feeds together, and the largest one.
    pub feed_bytes: u64,
    pub largest_feed_bytes: u64,
    /// Publishing every feed, one after another.
    pub publish_secs: f64,
}

#[derive(Debug, Serialize)]
pub struct CenterReport {
    /// `spawned` (a child `herd serve` on SQLite in a temporary directory) or `existing`.
    pub kind: &'static str,
    pub address: String,
    /// The spawned center's tokio worker threads (None: its default, one per core).
    pub worker_threads: Option<usize>,
    /// Where the spawned center's data was kept (`--data-dir`); None when it was a temporary
    /// directory, removed at the end, or the center is an existing one.
    pub data_dir: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct PhaseReport {
    pub count: u64,
    pub secs: f64,
    pub per_sec: f64,
    pub errors: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub struct LatencyReport {
    pub median: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl LatencyReport {
    pub fn of(histogram: &Histogram) -> LatencyReport {
        // Milliseconds to the microsecond the histogram resolves, without binary-float tails.
        let ms = |d: Option<Duration>| d.map_or(0.0, |d| d.as_micros() as f64 / 1e3);
        LatencyReport {
            median: ms(histogram.quantile(0.5)),
            p90: ms(histogram.quantile(0.9)),
            p99: ms(histogram.quantile(0.99)),
            max: ms(Some(histogram.max())),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct StoreReport {
    /// Store transactions during the measured window (group commits).
    pub batches: u64,
    /// Check-ins per transaction, on average.
    pub mean_batch_size: f64,
    /// The center's own mean time to answer a check-in (request read to plan stored), ms.
    pub center_mean_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct CpuReport {
    /// CPU seconds the center used during the measured window (None: not spawned here).
    pub center_secs: Option<f64>,
    /// CPU seconds this generator used during the measured window.
    pub generator_secs: Option<f64>,
    /// Cores on this machine.
    pub cores: usize,
    /// CPU time of center + generator per check-in, microseconds.
    pub micros_per_checkin: Option<f64>,
    /// CPU seconds every other process on the machine used meanwhile: when it is not near
    /// zero, the run competed for the cores and its throughput understates what they can do.
    pub others_secs: Option<f64>,
}

fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn errors_line(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "none".to_owned();
    }
    errors
        .iter()
        .map(|(kind, count)| format!("{} {kind}", thousands(*count)))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Report {
    /// The human-readable form.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let center = &self.center;
        let _ = writeln!(
            out,
            "center:      {} at {}{}{}",
            center.kind,
            center.address,
            center
                .worker_threads
                .map(|n| format!(", {n} worker threads"))
                .unwrap_or_default(),
            match (&center.data_dir, center.kind) {
                (Some(dir), _) => format!(", SQLite in {dir}"),
                (None, "spawned") => ", SQLite in a temporary directory".to_owned(),
                (None, _) => String::new(),
            },
        );
        let c = &self.catalog;
        let _ = writeln!(
            out,
            "catalog:     {} threats × {} products ({} releases each, seed {}): {} feeds, {:.1} MB (largest {:.1} MB), published in {:.2} s",
            thousands(c.threats as u64),
            c.products,
            c.releases_per_product,
            c.seed,
            c.feeds,
            c.feed_bytes as f64 / 1e6,
            c.largest_feed_bytes as f64 / 1e6,
            c.publish_secs
        );
        let _ = writeln!(
            out,
            "enrolment:   {} terminals in {:.2} s ({:.0}/s), errors: {}",
            thousands(self.enrolment.count),
            self.enrolment.secs,
            self.enrolment.per_sec,
            errors_line(&self.enrolment.errors)
        );
        let _ = writeln!(
            out,
            "roll call:   {} check-ins on new connections in {:.2} s ({:.0}/s), errors: {}",
            thousands(self.roll_call.count),
            self.roll_call.secs,
            self.roll_call.per_sec,
            errors_line(&self.roll_call.errors)
        );
        let _ = writeln!(
            out,
            "load:        {} connections{}, {} s warm-up, {:.2} s measured",
            self.connections,
            if self.reconnect_every > 0 {
                format!(", each replaced after {} check-ins", self.reconnect_every)
            } else {
                " kept alive".to_owned()
            },
            self.warmup_secs,
            self.duration_secs
        );
        let _ = writeln!(
            out,
            "check-ins:   {} = {}/s",
            thousands(self.checkins),
            thousands(self.checkins_per_sec.round() as u64)
        );
        let l = &self.latency_ms;
        let _ = writeln!(
            out,
            "latency:     median {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            l.median, l.p90, l.p99, l.max
        );
        let _ = writeln!(out, "errors:      {}", errors_line(&self.errors));
        if self.handshakes > 0 {
            let _ = writeln!(
                out,
                "handshakes:  {} new connections measured, {} resumed a TLS session ({:.0}%)",
                thousands(self.handshakes),
                thousands(self.resumed),
                100.0 * self.resumed as f64 / self.handshakes as f64
            );
        }
        if let (Some(now), Some(peak)) = (self.center_rss_mb, self.center_peak_rss_mb) {
            let _ = writeln!(
                out,
                "center RSS:  {now:.0} MB at the end, peak {peak:.0} MB"
            );
        }
        if let Some(r) = &self.refresh {
            let _ = writeln!(
                out,
                "refreshes:   {} = {}/s, timestamp v{}: median {} B body, {} B HTTP both ways; latency median {:.2} ms, p99 {:.2} ms",
                thousands(r.count),
                thousands(r.per_sec.round() as u64),
                r.timestamp_version,
                r.body_bytes_median,
                r.wire_bytes_median,
                r.latency_ms.median,
                r.latency_ms.p99
            );
        }
        if let Some(p) = &self.publish {
            let _ = writeln!(
                out,
                "publish:     new release of {} at {:.2} s, answered in {:.2} s; timestamp v{} → v{}, {}",
                p.vendor,
                p.at_secs,
                p.answered_secs,
                p.timestamp_version_before,
                p.timestamp_version_after,
                p.new_timestamp_secs
                    .map_or("no refresh saw the new one".to_owned(), |s| {
                        format!("first refreshed {s:.2} s after the publish started")
                    })
            );
        }
        if !self.warmup_errors.is_empty() {
            let _ = writeln!(out, "  warm-up:   {}", errors_line(&self.warmup_errors));
        }
        if self.unfinished > 0 {
            let _ = writeln!(out, "unfinished:  {} requests", self.unfinished);
        }
        let total = self.checkins.max(1) as f64;
        let plans = &self.plans;
        let mix: Vec<String> = Action::ALL
            .iter()
            .map(|&action| {
                let share = plans.count(action) as f64 * 100.0 / total;
                format!("{action} {share:.1} %")
            })
            .collect();
        let _ = writeln!(out, "plans:       {}", mix.join(", "));
        let _ = writeln!(
            out,
            "store:       {} transactions, {:.1} check-ins each on average; center's own mean {:.2} ms",
            thousands(self.store.batches),
            self.store.mean_batch_size,
            self.store.center_mean_ms
        );
        let secs = |s: Option<f64>| {
            s.map_or("unknown".to_owned(), |s| {
                format!(
                    "{s:.2} s ({:.0} % of one core)",
                    s * 100.0 / self.duration_secs
                )
            })
        };
        let _ = writeln!(
            out,
            "cpu:         center {}, generator {}{}",
            secs(self.cpu.center_secs),
            secs(self.cpu.generator_secs),
            self.cpu
                .micros_per_checkin
                .map(|m| format!("; {m:.0} µs per check-in"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            out,
            "machine:     {} cores; other processes used {}",
            self.cpu.cores,
            secs(self.cpu.others_secs)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_exact_below_256_us_and_within_one_percent_above() {
        for micros in [0, 1, 255] {
            assert_eq!(bucket_value(bucket_of(micros)), micros);
        }
        for micros in [256, 257, 1000, 12_345, 999_999, 60_000_000, 1 << 39] {
            let back = bucket_value(bucket_of(micros)) as f64;
            let error = (back - micros as f64).abs() / micros as f64;
            assert!(error < 0.01, "{micros} µs came back as {back}");
        }
        assert!(bucket_of(u64::MAX) < BUCKETS);
    }

    #[test]
    fn quantiles_come_from_the_recorded_values() {
        let histogram = Histogram::default();
        assert_eq!(histogram.quantile(0.5), None);
        for ms in 1..=100 {
            histogram.record(Duration::from_millis(ms));
        }
        let near = |d: Option<Duration>, ms: f64| {
            let got = d.expect("a value").as_secs_f64() * 1e3;
            assert!(
                (got - ms).abs() / ms < 0.01,
                "{got} ms, expected about {ms}"
            );
        };
        near(histogram.quantile(0.5), 50.0);
        near(histogram.quantile(0.99), 99.0);
        near(histogram.quantile(1.0), 100.0);
        assert_eq!(histogram.max(), Duration::from_millis(100));
        assert_eq!(histogram.count(), 100);
    }

    #[test]
    fn center_counters_are_read_from_prometheus_text() {
        let text = "# HELP herd_checkin_batch_size x\n# TYPE herd_checkin_batch_size histogram\n\
                    herd_checkin_batch_size_bucket{le=\"1\"} 3\n\
                    herd_checkin_batch_size_sum 120\nherd_checkin_batch_size_count 4\n\
                    herd_checkin_seconds_sum 0.5\nherd_checkin_seconds_count 120\n";
        let counters = CenterCounters::parse(text);
        assert_eq!(
            counters,
            CenterCounters {
                stored: 120.0,
                batches: 4.0,
                checkin_seconds: 0.5,
                checkins: 120.0
            }
        );
        assert_eq!(counters.since(counters), CenterCounters::default());
    }

    #[test]
    fn cpu_time_of_this_process_and_the_machine_is_readable() {
        let own = cpu_time(std::process::id()).expect("this process's CPU time");
        let machine = machine_busy().expect("the machine's CPU time");
        assert!(machine >= own, "{machine:?} < {own:?}");
    }

    #[test]
    fn refresh_sizes_have_a_median() {
        let tally = Tally::default();
        assert_eq!(tally.refreshes(), (0, 0, 0));
        for body in [600, 600, 610] {
            tally.refreshed(Duration::from_micros(300), body, body + 200);
        }
        assert_eq!(tally.refreshes(), (3, 600, 800));
    }

    #[test]
    fn large_numbers_get_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(21_234_567), "21,234,567");
    }
}
