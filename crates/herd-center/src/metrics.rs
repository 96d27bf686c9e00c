//! Prometheus metrics for `/metrics`: plain atomics on the hot paths (a check-in bumps a few
//! counters and one histogram without taking a lock) and the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use herd_proto::api::trust_refusals;
use herd_proto::plan::Action;

/// A cumulative histogram with fixed bucket bounds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| value <= b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.sum_micros.fetch_add((value * 1e6) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    pub fn observe_duration(&self, elapsed: Duration) {
        self.observe(elapsed.as_secs_f64());
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            cumulative += bucket.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

const LATENCY_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
const BATCH_BOUNDS: &[f64] = &[1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0];

/// Every metric the center exports.
#[derive(Debug)]
pub struct Metrics {
    /// The site tier's counters (the center's side and a site's own).
    pub sites: SiteMetrics,
    /// HTTP responses by status class (index 1 = 1xx … 5 = 5xx).
    pub responses: [AtomicU64; 6],
    pub checkins: AtomicU64,
    /// Plans handed out by action, indexed by `Action::index` (the order of `Action::ALL`).
    pub plans: [AtomicU64; 4],
    pub checkin_seconds: Histogram,
    pub checkin_batch_size: Histogram,
    pub enrolments: AtomicU64,
    pub enrolments_refused: AtomicU64,
    pub events_accepted: AtomicU64,
    pub events_duplicate: AtomicU64,
    pub feeds_published: AtomicU64,
    pub feeds_refused: AtomicU64,
    pub packages_uploaded: AtomicU64,
    pub package_bytes_uploaded: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    pub connections_open: AtomicU64,
    pub catalog_revision: AtomicU64,
    /// Connections closed at accept because the listener had `max_connections` open.
    pub connections_refused: AtomicU64,
    /// Connections closed because a handshake, headers or the next request took too long.
    pub connections_timed_out: AtomicU64,
    /// Request bodies that arrived too slowly.
    pub bodies_timed_out: AtomicU64,
    /// Event batches refused because the terminal had `max_events_per_terminal` stored.
    pub events_over_quota: AtomicU64,
    /// Samples that arrived with their bytes, and how many bytes they were (decoded; the
    /// wire carries them hex-encoded, twice as many).
    pub samples_uploaded: AtomicU64,
    pub sample_bytes_uploaded: AtomicU64,
    /// Samples reported without their bytes because the center said it had them.
    pub samples_held_already: AtomicU64,
    /// Push connections (`/v1/wait`) held now; `wait::Waits` counts its cap on it.
    pub waits_held: AtomicU64,
    /// Waits refused because `max_waits` were held.
    pub waits_refused: AtomicU64,
    /// When the server certificate this process serves expires (Unix seconds).
    pub server_cert_expiry: AtomicU64,
    pub server_cert_reissues: AtomicU64,
    pub certificate_renewals: AtomicU64,
    pub certificate_renewals_refused: AtomicU64,
    /// Package uploads refused because the vendor's stored packages reached its quota.
    pub packages_over_quota: AtomicU64,
    /// Bytes of blobs stored, as of the last collection.
    pub blob_bytes_stored: AtomicU64,
    /// Unreferenced blobs and abandoned uploads the collection deleted.
    pub blobs_collected: AtomicU64,
    pub blob_bytes_collected: AtomicU64,
    /// Bytes of Herd's set served whole, and as deltas from a version a terminal has
    /// (`/tuf/targets/herd/signatures/…`, as announced by each answer's length).
    pub herd_set_bytes_served_whole: AtomicU64,
    pub herd_set_bytes_served_delta: AtomicU64,
    /// The signed repository's revision this process last read.
    pub tuf_revision: AtomicU64,
    /// Documents this process signed, by role (roles are per vendor, so not a fixed set).
    tuf_signatures: Mutex<BTreeMap<String, u64>>,
    /// When each role's newest document expires (Unix seconds), as last read.
    tuf_expiries: Mutex<BTreeMap<String, i64>>,
    /// `trust.refused` events stored, by kind (the order of `trust_refusals::ALL`).
    pub trust_refusals: [AtomicU64; trust_refusals::ALL.len()],
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            responses: Default::default(),
            sites: SiteMetrics::default(),
            checkins: AtomicU64::new(0),
            plans: Default::default(),
            checkin_seconds: Histogram::new(LATENCY_BOUNDS),
            checkin_batch_size: Histogram::new(BATCH_BOUNDS),
            enrolments: AtomicU64::new(0),
            enrolments_refused: AtomicU64::new(0),
            events_accepted: AtomicU64::new(0),
            events_duplicate: AtomicU64::new(0),
            feeds_published: AtomicU64::new(0),
            feeds_refused: AtomicU64::new(0),
            packages_uploaded: AtomicU64::new(0),
            package_bytes_uploaded: AtomicU64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            catalog_revision: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            connections_timed_out: AtomicU64::new(0),
            bodies_timed_out: AtomicU64::new(0),
            events_over_quota: AtomicU64::new(0),
            samples_uploaded: AtomicU64::new(0),
            sample_bytes_uploaded: AtomicU64::new(0),
            samples_held_already: AtomicU64::new(0),
            waits_held: AtomicU64::new(0),
            waits_refused: AtomicU64::new(0),
            server_cert_expiry: AtomicU64::new(0),
            server_cert_reissues: AtomicU64::new(0),
            certificate_renewals: AtomicU64::new(0),
            certificate_renewals_refused: AtomicU64::new(0),
            packages_over_quota: AtomicU64::new(0),
            blob_bytes_stored: AtomicU64::new(0),
            blobs_collected: AtomicU64::new(0),
            blob_bytes_collected: AtomicU64::new(0),
            herd_set_bytes_served_whole: AtomicU64::new(0),
            herd_set_bytes_served_delta: AtomicU64::new(0),
            tuf_revision: AtomicU64::new(0),
            tuf_signatures: Mutex::new(BTreeMap::new()),
            tuf_expiries: Mutex::new(BTreeMap::new()),
            trust_refusals: Default::default(),
        }
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: &AtomicU64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
        value.load(Relaxed)
    );
}

fn gauge(out: &mut String, name: &str, help: &str, value: &AtomicU64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
        value.load(Relaxed)
    );
}

impl Metrics {
    pub fn count_status(&self, status: u16) {
        let class = usize::from(status / 100).min(5);
        self.responses[class].fetch_add(1, Relaxed);
    }

    /// Counts a document signed for `role`.
    pub fn count_signature(&self, role: &str) {
        *self
            .tuf_signatures
            .lock()
            .expect("metrics lock")
            .entry(role.to_owned())
            .or_default() += 1;
    }

    /// Replaces the expiries of the repository's newest documents, by role.
    pub fn set_tuf_expiries(&self, expiries: BTreeMap<String, i64>) {
        *self.tuf_expiries.lock().expect("metrics lock") = expiries;
    }

    /// Counts a `trust.refused` event of `kind`; a kind this center does not know counts as
    /// `invalid` (an agent newer than the center, or a malformed event).
    pub fn count_trust_refusal(&self, kind: &str) {
        let index = trust_refusals::ALL
            .iter()
            .position(|known| *known == kind)
            .or_else(|| {
                trust_refusals::ALL
                    .iter()
                    .position(|known| *known == trust_refusals::INVALID)
            })
            .expect("invalid is a kind");
        self.trust_refusals[index].fetch_add(1, Relaxed);
    }

    /// The Prometheus text exposition (version 0.0.4), with expiries counted from `now`
    /// (Unix seconds).
    pub fn render_at(&self, now: i64) -> String {
        let mut out = self.render_fixed();
        let _ = writeln!(
            out,
            "# HELP herd_tuf_signatures_total Signed metadata documents this process made, by role.\n# TYPE herd_tuf_signatures_total counter"
        );
        for (role, count) in self.tuf_signatures.lock().expect("metrics lock").iter() {
            let _ = writeln!(out, "herd_tuf_signatures_total{{role=\"{role}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "# HELP herd_tuf_expiry_seconds Seconds until each role's newest signed document expires (negative: expired).\n# TYPE herd_tuf_expiry_seconds gauge"
        );
        for (role, expires) in self.tuf_expiries.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "herd_tuf_expiry_seconds{{role=\"{role}\"}} {}",
                expires - now
            );
        }
        gauge(
            &mut out,
            "herd_tuf_revision",
            "The signed repository's revision this process last read.",
            &self.tuf_revision,
        );
        let _ = writeln!(
            out,
            "# HELP herd_trust_refusals_total Metadata or targets terminals refused (trust.refused events stored), by kind.\n# TYPE herd_trust_refusals_total counter"
        );
        for (kind, count) in trust_refusals::ALL.iter().zip(&self.trust_refusals) {
            let _ = writeln!(
                out,
                "herd_trust_refusals_total{{kind=\"{kind}\"}} {}",
                count.load(Relaxed)
            );
        }
        out
    }

    /// The Prometheus text exposition (version 0.0.4).
    pub fn render(&self) -> String {
        self.render_at(crate::unix_now())
    }

    /// The metrics whose names do not depend on what is served.
    fn render_fixed(&self) -> String {
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "# HELP herd_http_responses_total HTTP responses by status class.\n# TYPE herd_http_responses_total counter"
        );
        for class in 1..=5 {
            let _ = writeln!(
                out,
                "herd_http_responses_total{{class=\"{class}xx\"}} {}",
                self.responses[class].load(Relaxed)
            );
        }
        counter(
            &mut out,
            "herd_checkins_total",
            "Check-ins answered with a plan.",
            &self.checkins,
        );
        let _ = writeln!(
            out,
            "# HELP herd_plans_total Plans handed out at check-in, by action.\n# TYPE herd_plans_total counter"
        );
        for action in Action::ALL {
            let _ = writeln!(
                out,
                "herd_plans_total{{action=\"{action}\"}} {}",
                self.plans[action.index()].load(Relaxed)
            );
        }
        self.checkin_seconds.render(
            &mut out,
            "herd_checkin_seconds",
            "Time to answer a check-in, from request to stored plan.",
        );
        self.checkin_batch_size.render(
            &mut out,
            "herd_checkin_batch_size",
            "Check-ins written to the store per transaction (group commit).",
        );
        counter(
            &mut out,
            "herd_enrolments_total",
            "Terminals enrolled.",
            &self.enrolments,
        );
        counter(
            &mut out,
            "herd_enrolments_refused_total",
            "Enrolments refused.",
            &self.enrolments_refused,
        );
        counter(
            &mut out,
            "herd_events_accepted_total",
            "Terminal events stored.",
            &self.events_accepted,
        );
        counter(
            &mut out,
            "herd_events_duplicate_total",
            "Terminal events received again and dropped (idempotency).",
            &self.events_duplicate,
        );
        counter(
            &mut out,
            "herd_feeds_published_total",
            "Catalog feeds that changed the catalog.",
            &self.feeds_published,
        );
        counter(
            &mut out,
            "herd_feeds_refused_total",
            "Catalog feeds refused.",
            &self.feeds_refused,
        );
        counter(
            &mut out,
            "herd_packages_uploaded_total",
            "Packages stored.",
            &self.packages_uploaded,
        );
        counter(
            &mut out,
            "herd_package_bytes_uploaded_total",
            "Bytes of packages stored.",
            &self.package_bytes_uploaded,
        );
        counter(
            &mut out,
            "herd_tls_handshake_failures_total",
            "TLS handshakes that failed (bad or foreign client certificates, scanners).",
            &self.tls_handshake_failures,
        );
        gauge(
            &mut out,
            "herd_connections_open",
            "Open client connections.",
            &self.connections_open,
        );
        gauge(
            &mut out,
            "herd_catalog_revision",
            "The catalog revision this process plans with.",
            &self.catalog_revision,
        );
        counter(
            &mut out,
            "herd_connections_refused_total",
            "Connections closed as they were accepted: max_connections were open.",
            &self.connections_refused,
        );
        counter(
            &mut out,
            "herd_connections_timed_out_total",
            "Connections closed because the TLS handshake, a request's headers or the next request took too long.",
            &self.connections_timed_out,
        );
        counter(
            &mut out,
            "herd_request_bodies_timed_out_total",
            "Requests refused because their body arrived too slowly.",
            &self.bodies_timed_out,
        );
        counter(
            &mut out,
            "herd_events_over_quota_total",
            "Event batches refused because the terminal had max_events_per_terminal events stored.",
            &self.events_over_quota,
        );
        counter(
            &mut out,
            "herd_samples_uploaded_total",
            "Samples that arrived with their bytes (sample.upload events).",
            &self.samples_uploaded,
        );
        counter(
            &mut out,
            "herd_sample_bytes_uploaded_total",
            "Bytes of the samples that arrived with their bytes.",
            &self.sample_bytes_uploaded,
        );
        counter(
            &mut out,
            "herd_samples_held_already_total",
            "Samples a terminal reported without their bytes because this center said it had them.",
            &self.samples_held_already,
        );
        gauge(
            &mut out,
            "herd_waits_held",
            "Push connections (GET /v1/wait) held now.",
            &self.waits_held,
        );
        counter(
            &mut out,
            "herd_waits_refused_total",
            "Waits refused because max_waits were held (the agents pull instead).",
            &self.waits_refused,
        );
        gauge(
            &mut out,
            "herd_server_certificate_expiry_timestamp_seconds",
            "When the server certificate this process serves expires (Unix time); it is reissued with a third of its validity left.",
            &self.server_cert_expiry,
        );
        counter(
            &mut out,
            "herd_server_certificate_reissues_total",
            "Server certificates reissued while serving.",
            &self.server_cert_reissues,
        );
        counter(
            &mut out,
            "herd_certificate_renewals_total",
            "Terminal client certificates renewed.",
            &self.certificate_renewals,
        );
        counter(
            &mut out,
            "herd_certificate_renewals_refused_total",
            "Terminal certificate renewals refused.",
            &self.certificate_renewals_refused,
        );
        counter(
            &mut out,
            "herd_packages_over_quota_total",
            "Package uploads refused because the vendor's packages reached vendor_storage_quota_bytes.",
            &self.packages_over_quota,
        );
        gauge(
            &mut out,
            "herd_blob_bytes_stored",
            "Bytes of package blobs stored, as of the last collection.",
            &self.blob_bytes_stored,
        );
        counter(
            &mut out,
            "herd_blobs_collected_total",
            "Unreferenced blobs and abandoned uploads deleted after the grace period.",
            &self.blobs_collected,
        );
        counter(
            &mut out,
            "herd_set_bytes_served_whole_total",
            "Bytes of Herd's own signature set served as whole files.",
            &self.herd_set_bytes_served_whole,
        );
        counter(
            &mut out,
            "herd_set_bytes_served_delta_total",
            "Bytes of Herd's own signature set served as deltas from a version the terminal had.",
            &self.herd_set_bytes_served_delta,
        );
        counter(
            &mut out,
            "herd_blob_bytes_collected_total",
            "Bytes freed by collecting unreferenced blobs and abandoned uploads.",
            &self.blob_bytes_collected,
        );
        self.sites.render(&mut out);
        out
    }
}

/// The site tier's metrics: on the center, what sites relayed and the pushes to sites that
/// did not pull; on a site, its queue to the center and its link.
#[derive(Debug, Default)]
pub struct SiteMetrics {
    pub relayed_items: AtomicU64,
    pub relayed_duplicates: AtomicU64,
    pub pushes: AtomicU64,
    pub pushes_failed: AtomicU64,
    /// A site's: items waiting in its queue, the oldest one's age, and whether the center
    /// answered its last call (1) or not (0).
    pub queue_depth: AtomicU64,
    pub queue_oldest_seconds: AtomicU64,
    pub forwarded: AtomicU64,
    pub upstream_up: AtomicU64,
    pub syncs: AtomicU64,
    pub notified: AtomicU64,
}

impl SiteMetrics {
    fn render(&self, out: &mut String) {
        counter(
            out,
            "herd_site_relayed_items_total",
            "Items of sites' queues applied (center).",
            &self.relayed_items,
        );
        counter(
            out,
            "herd_site_relayed_duplicates_total",
            "Items of sites' queues received again and not applied twice (center).",
            &self.relayed_duplicates,
        );
        counter(
            out,
            "herd_site_pushes_total",
            "Pushes to sites that had not pulled after a change (center).",
            &self.pushes,
        );
        counter(
            out,
            "herd_site_pushes_failed_total",
            "Pushes to sites that did not answer: the site is unreachable (center).",
            &self.pushes_failed,
        );
        gauge(
            out,
            "herd_site_queue_depth",
            "Items waiting in this site's queue to the center (site).",
            &self.queue_depth,
        );
        gauge(
            out,
            "herd_site_queue_oldest_seconds",
            "Age of the oldest item waiting in this site's queue; it grows while the center is unreachable (site).",
            &self.queue_oldest_seconds,
        );
        counter(
            out,
            "herd_site_forwarded_items_total",
            "Queue items the center acknowledged (site).",
            &self.forwarded,
        );
        gauge(
            out,
            "herd_site_upstream_up",
            "1 when the center answered this site's last call, else 0 (site).",
            &self.upstream_up,
        );
        counter(
            out,
            "herd_site_syncs_total",
            "Catalog, groups or metadata changes this site replicated (site).",
            &self.syncs,
        );
        counter(
            out,
            "herd_site_notified_total",
            "Pushes from the center this site received (site).",
            &self.notified,
        );
    }
}
