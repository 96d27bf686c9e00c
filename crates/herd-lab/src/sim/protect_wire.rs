//! What `herd sim protect` and its worker processes (`herd sim protect-worker`) say to each
//! other: the worker's orders as one JSON line on its stdin, then commands as JSON lines;
//! the worker's news as JSON lines on its stdout. Both ends are this program, so the types
//! are shared and nothing here is a public contract.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The first line on a worker's stdin: which terminals it simulates and where they go.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerOrders {
    /// This worker's number (0-based), for its terminal ids and messages.
    pub worker: usize,
    /// Terminal ids are `<id_prefix>-<index>`, indexes `first..first + count`.
    pub id_prefix: String,
    pub first: usize,
    pub count: usize,
    /// Where terminal `index` enrols, checks in and downloads: `upstreams[index % len]`, each
    /// `host:port` of a site (or of the center with no sites).
    pub upstreams: Vec<String>,
    /// The local address this worker's connections come from (a loopback address of its own).
    pub source: Option<String>,
    /// The center's CA (PEM): sites' certificates are issued under it.
    pub ca_pem: String,
    /// The enrolment token every terminal uses.
    pub enrol_token: String,
    /// What each terminal runs at the start (the previous definitions release).
    pub installed: herd_proto::terminal::InstalledDoc,
    /// The terminals' hardware kind and platform.
    pub platform: String,
    /// How terminals learn of a new release.
    pub wake: Wake,
    /// Connections opened at once while enrolling and connecting the fleet.
    pub connect_concurrency: usize,
}

/// How a terminal learns that something changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Wake {
    /// Holding `GET /v1/wait`, falling back to polling every `fallback_poll_ms` where it is
    /// refused.
    Push {
        wait_secs: u64,
        fallback_poll_ms: u64,
    },
    /// Checking in every `interval_ms` (with jitter), as an agent without push does.
    Poll { interval_ms: u64 },
}

/// A command on a worker's stdin after its orders.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerCommand {
    /// Run `run` begins: a terminal that reached `goal` and reported it counts as protected
    /// for this run.
    Run { run: u32, goal: Goal },
    /// Send `done` for `run` now with what you have.
    Finish { run: u32 },
    /// Say `quiet` once no terminal is in the middle of a cycle.
    Quiet,
}

/// What protects a terminal in a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    /// A vendor's release: its plan took the terminal to `version`, which it reported
    /// (`plan.report`).
    Release { version: String },
    /// An analyst's verdict: the terminal holds Herd's signature set listing the file with
    /// this SHA-256, verified against the signed `herd` role, and reported it
    /// (`herd_set.updated`).
    HerdSignature { sha256: String },
}

/// A line on a worker's stdout.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerNews {
    /// Progress while enrolling and settling.
    Progress { enrolled: usize, holding: usize },
    /// Every terminal that could enrol is enrolled, has checked in, refreshed its metadata and
    /// holds its push connection (or polls).
    Ready {
        enrolled: usize,
        errors: BTreeMap<String, u64>,
        /// Terminals that fell back to polling because `/v1/wait` was refused.
        polling: usize,
    },
    /// The end of a run: for every terminal that reported the run's release, its index and
    /// the Unix time in microseconds its report was acknowledged.
    Done {
        run: u32,
        protected: Vec<(u32, u64)>,
        errors: BTreeMap<String, u64>,
        bytes: Bytes,
        /// Distinct signed-metadata chains this process verified during the run (each
        /// verified once, then reused by every terminal that fetched the same documents).
        verifications: u64,
        /// The signed length of the goal's target (the package, or Herd's set) as the
        /// terminals found it; 0 when none did.
        target_bytes: u64,
    },
    /// No terminal of the worker is in the middle of a cycle (after `quiet`).
    Quiet,
}

/// Bytes the terminals downloaded (bodies), by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bytes {
    pub metadata: u64,
    pub packages: u64,
    pub requests: u64,
}
