//! The site server's mirror of the center's signed repository (SPEC §3.4, issue 12): the TUF
//! metadata, verified and kept on disk, and a content-addressed cache of the targets it lists,
//! so that each package crosses the center→site link once per site whatever the number of
//! terminals behind it.
//!
//! **Metadata.** [`Mirror::sync_metadata`] reads the upstream `timestamp.json` and probes the
//! next root; when either is new, it walks the root chain (`N.root.json` until 404), reads the snapshot and every targets
//! role it lists that is not on disk yet (versioned files never change), and verifies the
//! whole set with `herd_tuf::client` from the root the site trusts (the one it got at
//! enrolment). Only a set that verifies is written (through herd-fs, `timestamp.json` last) and
//! then served; a set that does not is refused (logged, counted in
//! `herd_site_metadata_refusals_total`) and the previous one stays served. The site is still an
//! untrusted mirror to its terminals, which verify everything again; this only keeps it from
//! serving garbage. The last [`VERSIONS_KEPT`] versions of each role stay servable (as the
//! center keeps them, so a terminal that read an older timestamp still finds what it names),
//! and every root. On open, the stored set is verified again as of the instant it was first
//! verified (`verified-at`): signatures and consistency are checked, freshness is the
//! terminals' to judge.
//!
//! **Targets.** Served by consistent-snapshot name or by SHA-256 (`/v1/packages/`), but only
//! what the verified metadata lists: a terminal cannot make the site fetch anything else. A
//! miss fetches the target from the center once — concurrent requests for one blob wait on
//! the same fetch, which runs in a task of its own so a requester going away cancels nothing —
//! checks the signed length and SHA-256, and stores it under `blobs/` through herd-fs.
//! A blob larger than the whole cache limit is refused (`TooLargeForCache`) rather than
//! streamed through: a site whose limit is below its largest package is misconfigured, and
//! serving such a blob would cross the link once per terminal, which the site exists to avoid.
//!
//! **Prefetch.** Targets a sync finds new since the previous snapshot (a new release, its
//! deltas) are fetched at once, [`PREFETCH_CONCURRENCY`] at a time: two keep the link busy
//! while leaving room for the on-demand fetches of terminals (which coalesce with a prefetch
//! of the same blob anyway), and keep ten sites that see a release at the same moment from
//! opening dozens of downloads each on the center. A fresh site (no previous snapshot)
//! prefetches nothing: it would otherwise copy every release the center still lists.
//!
//! **Eviction.** When the cache passes its limit, blobs the current metadata no longer lists go
//! first, then the least recently used; a blob being served (a [`CachedBlob`] is alive) or
//! fetched is never removed. Recency is kept in memory; after a restart it starts from the
//! files' modification times (when they were fetched).
//!
//! **Damage.** A cached blob whose size is not the one it was stored with is noticed when it is
//! served and fetched again; on open every cached blob is hashed again (the whole cache is read
//! once at start) and one that does not match is removed. A same-size
//! change made while the site runs is served as it is and refused by the terminal's own
//! verification of the signed SHA-256 (then repaired at the next open).
//!
//! Blocking work (the upstream client is ureq, file hashing) runs in `spawn_blocking`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, Read, Seek as _, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use herd_client::{ReadLimits, Repository, RepositoryError};
use herd_core::Timestamp;
use herd_proto::distribution::{
    METADATA_PATH, TARGETS_PATH, consistent_target_name, parse_consistent_target_name,
};
use herd_tuf::client::{
    MAX_METADATA_BYTES, MAX_ROOT_BYTES, MAX_ROOT_ROTATIONS, MAX_TIMESTAMP_BYTES,
};
use herd_tuf::metadata::Envelope;
use herd_tuf::{Root, Snapshot, TargetSearch, TimestampRole, TrustedSet};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, Semaphore, watch};

use crate::{CenterError, ErrorKind};

/// Versions of each role (but root) kept servable, as the center keeps them.
pub const VERSIONS_KEPT: usize = 4;
/// Prefetches running at once (see the module documentation for why two).
pub const PREFETCH_CONCURRENCY: usize = 2;

const FILE_MODE: u32 = 0o600;
const VERIFIED_AT: &str = "verified-at";

/// Why the mirror could not do something; [`CenterError`] maps each to an API error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MirrorError {
    /// Not listed by the mirrored signed metadata (or no metadata mirrored yet).
    #[error("{0}")]
    NotFound(String),
    /// A malformed name or digest in a request.
    #[error("{0}")]
    BadRequest(String),
    /// The target is larger than the whole cache.
    #[error(
        "the target {sha256} is {size} bytes, larger than this site's whole cache ({limit} bytes): raise the site's cache limit"
    )]
    TooLargeForCache {
        sha256: String,
        size: u64,
        limit: u64,
    },
    /// The center could not be read (down, slow, refused, or it sent the wrong bytes).
    #[error("the center: {0}")]
    Upstream(String),
    /// What the center serves does not verify from the trusted root.
    #[error("the center's metadata does not verify: {0}")]
    Untrusted(String),
    /// The site's own disk.
    #[error("{0}")]
    Local(String),
}

impl From<MirrorError> for CenterError {
    fn from(err: MirrorError) -> CenterError {
        let kind = match &err {
            MirrorError::NotFound(_) => ErrorKind::NotFound,
            MirrorError::BadRequest(_) => ErrorKind::BadRequest,
            MirrorError::TooLargeForCache { .. }
            | MirrorError::Upstream(_)
            | MirrorError::Untrusted(_) => ErrorKind::Unavailable,
            MirrorError::Local(_) => ErrorKind::Internal,
        };
        CenterError::new(kind, err.to_string())
    }
}

fn local(path: &Path, err: impl std::fmt::Display) -> MirrorError {
    MirrorError::Local(format!("{}: {err}", path.display()))
}

fn upstream(err: RepositoryError) -> MirrorError {
    MirrorError::Upstream(err.to_string())
}

/// The mirror's counters, for `/metrics` ([`MirrorStats::render`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MirrorStats {
    /// Target downloads from the center (each a blob crossing the link).
    pub upstream_requests: u64,
    /// Target bytes received from the center.
    pub upstream_bytes: u64,
    /// Metadata requests to the center (a 404 of the next root's probe counts), and the bytes.
    pub metadata_requests: u64,
    pub metadata_bytes: u64,
    /// Target requests answered from the cache as they arrived.
    pub hits: u64,
    /// Target requests that waited for a fetch (their own or another's).
    pub misses: u64,
    /// Blobs removed to stay under the limit, or found damaged.
    pub evictions: u64,
    pub damaged: u64,
    /// Bytes in the cache, and its limit.
    pub cache_bytes: u64,
    pub cache_limit: u64,
    /// Syncs that switched to a new set, and syncs refused because it did not verify.
    pub metadata_updates: u64,
    pub metadata_refusals: u64,
    /// The timestamp version served (0: none yet).
    pub timestamp_version: u64,
}

impl MirrorStats {
    /// Prometheus text exposition of the counters (`herd_site_…`), to append to `/metrics`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        };
        metric(
            "herd_site_cache_bytes",
            "gauge",
            "Bytes of targets in the site's cache.",
            self.cache_bytes,
        );
        metric(
            "herd_site_cache_limit_bytes",
            "gauge",
            "The site cache's size limit.",
            self.cache_limit,
        );
        metric(
            "herd_site_upstream_requests_total",
            "counter",
            "Targets fetched from the center.",
            self.upstream_requests,
        );
        metric(
            "herd_site_upstream_bytes_total",
            "counter",
            "Target bytes received from the center.",
            self.upstream_bytes,
        );
        metric(
            "herd_site_metadata_upstream_requests_total",
            "counter",
            "Metadata files read from the center.",
            self.metadata_requests,
        );
        metric(
            "herd_site_metadata_upstream_bytes_total",
            "counter",
            "Metadata bytes read from the center.",
            self.metadata_bytes,
        );
        metric(
            "herd_site_cache_hits_total",
            "counter",
            "Target requests served from the cache.",
            self.hits,
        );
        metric(
            "herd_site_cache_misses_total",
            "counter",
            "Target requests that waited for a fetch from the center.",
            self.misses,
        );
        metric(
            "herd_site_cache_evictions_total",
            "counter",
            "Cached targets removed to stay under the limit.",
            self.evictions,
        );
        metric(
            "herd_site_cache_damaged_total",
            "counter",
            "Cached targets found damaged (size or SHA-256) and removed.",
            self.damaged,
        );
        metric(
            "herd_site_metadata_updates_total",
            "counter",
            "Verified metadata sets the site switched to.",
            self.metadata_updates,
        );
        metric(
            "herd_site_metadata_refusals_total",
            "counter",
            "Metadata sets from the center refused because they did not verify.",
            self.metadata_refusals,
        );
        metric(
            "herd_site_timestamp_version",
            "gauge",
            "The version of timestamp.json the site serves.",
            self.timestamp_version,
        );
        out
    }
}

#[derive(Default)]
struct Counters {
    upstream_requests: AtomicU64,
    upstream_bytes: AtomicU64,
    metadata_requests: AtomicU64,
    metadata_bytes: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    damaged: AtomicU64,
    metadata_updates: AtomicU64,
    metadata_refusals: AtomicU64,
}

/// What a target is, as the verified metadata lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Listed {
    /// A target path listing it (to fetch it by consistent name).
    path: String,
    length: u64,
}

/// The verified set being served. Replaced whole by a sync.
#[derive(Default)]
struct Served {
    /// The newest verified root, and its version.
    root: Option<Arc<[u8]>>,
    root_version: u64,
    timestamp: Option<Arc<[u8]>>,
    timestamp_signed: Option<TimestampRole>,
    snapshot_signed: Option<Snapshot>,
    /// `N.role.json` names on disk that may be served.
    files: BTreeSet<String>,
    /// Target path → SHA-256 and length.
    targets: HashMap<String, (String, u64)>,
    /// SHA-256 → how to fetch it.
    blobs: HashMap<String, Listed>,
}

struct Entry {
    size: u64,
    last_used: u64,
    /// Live [`CachedBlob`]s: never evicted while non-zero.
    readers: u32,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<String, Entry>,
    bytes: u64,
    tick: u64,
}

type FetchResult = Option<Result<(), MirrorError>>;

/// The site's mirror. Shared as `Arc<Mirror>` between the router and the sync loop.
/// How many versioned metadata files are kept in memory (the current snapshot and targets
/// roles, and some older ones); past it the memory starts again empty.
const RECENT_METADATA_FILES: usize = 64;

pub struct Mirror {
    metadata_dir: PathBuf,
    blobs_dir: PathBuf,
    limit: u64,
    /// The center's repository, read with the site's certificate (replaced when it renews).
    upstream: RwLock<Repository>,
    /// The root the site was given (enrolment); the chain is walked from it on open.
    trusted_root: Vec<u8>,
    served: RwLock<Arc<Served>>,
    sync_lock: tokio::sync::Mutex<()>,
    cache: Mutex<Cache>,
    /// Versioned metadata files read from disk, kept in memory: they never change, and a
    /// release wakes every terminal to read the same snapshot and targets.
    recent_metadata: Mutex<HashMap<String, Arc<[u8]>>>,
    inflight: Mutex<HashMap<String, watch::Receiver<FetchResult>>>,
    prefetch_permits: Arc<Semaphore>,
    prefetch_pending: AtomicUsize,
    prefetch_idle: Notify,
    counters: Counters,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("metadata_dir", &self.metadata_dir)
            .field("limit", &self.limit)
            .field("upstream", &self.upstream().base())
            .finish_non_exhaustive()
    }
}

/// A metadata file to serve.
#[derive(Clone, Debug)]
pub struct MetadataFile {
    pub bytes: Vec<u8>,
    /// `root.json` and `timestamp.json` change under their name; versioned files never do.
    pub mutable: bool,
}

/// What a sync did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncOutcome {
    /// Whether a new set is served.
    pub changed: bool,
    pub timestamp_version: u64,
    /// Blobs newly listed since the previous set, being prefetched.
    pub prefetching: usize,
}

/// A cached blob opened for serving: it stays in the cache while this lives.
pub struct CachedBlob {
    pub file: tokio::fs::File,
    pub size: u64,
    pub sha256: String,
    /// Whether it was in the cache when asked for.
    pub hit: bool,
    guard: ReaderGuard,
}

impl std::fmt::Debug for CachedBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedBlob")
            .field("sha256", &self.sha256)
            .field("size", &self.size)
            .field("hit", &self.hit)
            .finish_non_exhaustive()
    }
}

impl CachedBlob {
    /// Keeps the blob from eviction until the returned guard drops (hand it to the response
    /// body, which outlives the handler).
    pub fn into_parts(self) -> (tokio::fs::File, u64, String, ReaderGuard) {
        (self.file, self.size, self.sha256, self.guard)
    }
}

/// Holds a cached blob in the cache (see [`CachedBlob::into_parts`]).
#[derive(Debug)]
pub struct ReaderGuard {
    mirror: Arc<Mirror>,
    sha256: String,
}

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        let mut cache = self.mirror.cache.lock().expect("cache lock");
        if let Some(entry) = cache.entries.get_mut(&self.sha256) {
            entry.readers = entry.readers.saturating_sub(1);
        }
    }
}

fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `N.role.json` → (N, role), for names this mirror stores.
fn parse_versioned(name: &str) -> Option<(u64, &str)> {
    let stem = name.strip_suffix(".json")?;
    let (version, role) = stem.split_once('.')?;
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    usable_role(role).then_some((version.parse().ok()?, role))
}

/// A role name that is safe as part of a file name.
fn usable_role(role: &str) -> bool {
    !role.is_empty()
        && !role.starts_with('.')
        && role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn unix_now() -> i64 {
    crate::unix_now()
}

impl Mirror {
    /// Opens (creating) the mirror in `dir`: removes partial downloads, verifies the stored
    /// metadata again and every cached blob's SHA-256 (removing what does not match), and
    /// rebuilds the cache's index. `upstream` reads the center's repository (`Client::repository`
    /// with the site's certificate, or any mirror); `trusted_root` is the root the site trusts
    /// (from enrolment). Blocking: call it before serving or in `spawn_blocking`.
    pub fn open(
        dir: &Path,
        limit_bytes: u64,
        upstream: Repository,
        trusted_root: &[u8],
    ) -> Result<Arc<Mirror>, MirrorError> {
        TrustedSet::new(trusted_root, Timestamp::from_unix_seconds(unix_now()))
            .map_err(|err| MirrorError::Untrusted(format!("the site's trusted root: {err}")))?;
        let metadata_dir = dir.join("metadata");
        let blobs_dir = dir.join("blobs");
        for path in [dir, &metadata_dir, &blobs_dir] {
            std::fs::create_dir_all(path).map_err(|err| local(path, err))?;
            herd_fs::remove_stale_temporaries(path).map_err(|err| local(path, err))?;
        }
        let mirror = Mirror {
            metadata_dir,
            blobs_dir,
            limit: limit_bytes,
            upstream: RwLock::new(upstream),
            trusted_root: trusted_root.to_vec(),
            served: RwLock::default(),
            sync_lock: tokio::sync::Mutex::new(()),
            cache: Mutex::default(),
            recent_metadata: Mutex::default(),
            inflight: Mutex::default(),
            prefetch_permits: Arc::new(Semaphore::new(PREFETCH_CONCURRENCY)),
            prefetch_pending: AtomicUsize::new(0),
            prefetch_idle: Notify::new(),
            counters: Counters::default(),
        };
        mirror.load_metadata()?;
        mirror.load_cache()?;
        Ok(Arc::new(mirror))
    }

    /// The center's repository as the mirror reads it now.
    fn upstream(&self) -> Repository {
        self.upstream
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Reads the center's repository through `upstream` from now on (the site renewed its
    /// certificate); downloads in progress finish with the one they started with.
    pub fn replace_upstream(&self, upstream: Repository) {
        *self
            .upstream
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = upstream;
    }

    /// The stored set, verified again as of when it was first verified.
    fn load_metadata(&self) -> Result<(), MirrorError> {
        let timestamp_path = self.metadata_dir.join("timestamp.json");
        if !timestamp_path.exists() {
            return Ok(());
        }
        let verified_at = std::fs::read_to_string(self.metadata_dir.join(VERIFIED_AT))
            .ok()
            .and_then(|text| text.trim().parse::<i64>().ok())
            .unwrap_or_else(unix_now);
        let source = DiskSource { mirror: self };
        match verify(
            &self.trusted_root,
            Timestamp::from_unix_seconds(verified_at),
            None,
            &source,
        ) {
            Ok(verified) => {
                let files = self.versioned_on_disk()?;
                let served = served_from(verified, files);
                *self.served.write().expect("served lock") = Arc::new(served);
                Ok(())
            }
            Err(err) => {
                tracing::warn!(
                    "the site's stored TUF metadata does not verify ({err}); nothing is served until the next sync"
                );
                Ok(())
            }
        }
    }

    fn versioned_on_disk(&self) -> Result<BTreeSet<String>, MirrorError> {
        let mut files = BTreeSet::new();
        let entries =
            std::fs::read_dir(&self.metadata_dir).map_err(|e| local(&self.metadata_dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| local(&self.metadata_dir, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if parse_versioned(&name).is_some() {
                files.insert(name);
            }
        }
        Ok(files)
    }

    /// The cache's index from `blobs/`: every blob hashed again, damaged ones removed.
    fn load_cache(&self) -> Result<(), MirrorError> {
        let mut found = Vec::new();
        let entries = std::fs::read_dir(&self.blobs_dir).map_err(|e| local(&self.blobs_dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| local(&self.blobs_dir, e))?;
            let name = entry.file_name();
            if herd_fs::is_temporary(&name) {
                continue;
            }
            let path = entry.path();
            let Some(sha256) = name.to_str().filter(|n| is_sha256(n)).map(str::to_owned) else {
                tracing::warn!("{}: not a cached blob, left alone", path.display());
                continue;
            };
            let meta = entry.metadata().map_err(|e| local(&path, e))?;
            let actual = sha256_of_file(&path).map_err(|e| local(&path, e))?;
            if actual != sha256 {
                tracing::warn!(
                    "{}: its SHA-256 is {actual}: damaged, removed from the site's cache",
                    path.display()
                );
                self.counters.damaged.fetch_add(1, Relaxed);
                std::fs::remove_file(&path).map_err(|e| local(&path, e))?;
                continue;
            }
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            found.push((modified, sha256, meta.len()));
        }
        found.sort();
        let mut cache = self.cache.lock().expect("cache lock");
        for (_, sha256, size) in found {
            cache.tick += 1;
            let last_used = cache.tick;
            cache.bytes += size;
            cache.entries.insert(
                sha256,
                Entry {
                    size,
                    last_used,
                    readers: 0,
                },
            );
        }
        Ok(())
    }

    /// The counters now.
    pub fn stats(&self) -> MirrorStats {
        let c = &self.counters;
        let cache_bytes = self.cache.lock().expect("cache lock").bytes;
        MirrorStats {
            upstream_requests: c.upstream_requests.load(Relaxed),
            upstream_bytes: c.upstream_bytes.load(Relaxed),
            metadata_requests: c.metadata_requests.load(Relaxed),
            metadata_bytes: c.metadata_bytes.load(Relaxed),
            hits: c.hits.load(Relaxed),
            misses: c.misses.load(Relaxed),
            evictions: c.evictions.load(Relaxed),
            damaged: c.damaged.load(Relaxed),
            cache_bytes,
            cache_limit: self.limit,
            metadata_updates: c.metadata_updates.load(Relaxed),
            metadata_refusals: c.metadata_refusals.load(Relaxed),
            timestamp_version: self
                .served()
                .timestamp_signed
                .as_ref()
                .map_or(0, |t| t.version),
        }
    }

    /// The verified `timestamp.json` served now and its version.
    pub fn timestamp(&self) -> Option<(u64, Arc<[u8]>)> {
        let served = self.served();
        Some((
            served.timestamp_signed.as_ref()?.version,
            served.timestamp.clone()?,
        ))
    }

    /// The version of `snapshot` and of each targets role that the verified metadata served
    /// now names (what a check-in's answer compares with what a terminal holds); empty before
    /// the first sync.
    pub fn current_versions(&self) -> BTreeMap<String, u64> {
        let served = self.served();
        let Some(snapshot) = served.snapshot_signed.as_ref() else {
            return BTreeMap::new();
        };
        let mut versions: BTreeMap<String, u64> = snapshot
            .meta
            .iter()
            .filter_map(|(name, meta)| Some((name.strip_suffix(".json")?.to_owned(), meta.version)))
            .collect();
        versions.insert("snapshot".to_owned(), snapshot.version);
        versions
    }

    /// Whether blob `sha256` is in the cache.
    pub fn is_cached(&self, sha256: &str) -> bool {
        self.cache
            .lock()
            .expect("cache lock")
            .entries
            .contains_key(sha256)
    }

    /// Whether the verified metadata served now lists a target with this SHA-256.
    pub fn is_listed(&self, sha256: &str) -> bool {
        self.served().blobs.contains_key(sha256)
    }

    /// Every target path the verified metadata served now lists, sorted.
    pub fn listed_targets(&self) -> Vec<String> {
        let mut paths: Vec<String> = self.served().targets.keys().cloned().collect();
        paths.sort();
        paths
    }

    /// The SHA-256 of every cached blob.
    pub fn cached(&self) -> BTreeSet<String> {
        let cache = self.cache.lock().expect("cache lock");
        cache.entries.keys().cloned().collect()
    }

    /// Returns once no prefetch is pending (for tests and an orderly stop).
    pub async fn prefetch_finished(&self) {
        loop {
            let idle = self.prefetch_idle.notified();
            if self.prefetch_pending.load(Relaxed) == 0 {
                return;
            }
            idle.await;
        }
    }

    fn served(&self) -> Arc<Served> {
        self.served.read().expect("served lock").clone()
    }

    /// A metadata file as `/tuf/metadata/{name}` serves it.
    pub async fn metadata(&self, name: &str) -> Result<MetadataFile, MirrorError> {
        let served = self.served();
        let missing = || MirrorError::NotFound(format!("no metadata {name:?} on this site"));
        let mutable = |bytes: &Option<Arc<[u8]>>| {
            bytes
                .as_ref()
                .map(|b| MetadataFile {
                    bytes: b.to_vec(),
                    mutable: true,
                })
                .ok_or_else(missing)
        };
        match name {
            "root.json" => mutable(&served.root),
            "timestamp.json" => mutable(&served.timestamp),
            _ if served.files.contains(name) => {
                let recent = self
                    .recent_metadata
                    .lock()
                    .expect("metadata")
                    .get(name)
                    .cloned();
                if let Some(bytes) = recent {
                    return Ok(MetadataFile {
                        bytes: bytes.to_vec(),
                        mutable: false,
                    });
                }
                let path = self.metadata_dir.join(name);
                match tokio::fs::read(&path).await {
                    Ok(bytes) => {
                        let mut recent = self.recent_metadata.lock().expect("metadata");
                        if recent.len() >= RECENT_METADATA_FILES {
                            recent.clear();
                        }
                        recent.insert(name.to_owned(), Arc::from(bytes.as_slice()));
                        Ok(MetadataFile {
                            bytes,
                            mutable: false,
                        })
                    }
                    Err(err) if err.kind() == io::ErrorKind::NotFound => Err(missing()),
                    Err(err) => Err(local(&path, err)),
                }
            }
            _ => Err(missing()),
        }
    }

    /// The target at `/tuf/targets/{name}` (a consistent-snapshot name), from the cache or
    /// fetched once from the center. Only what the verified metadata lists.
    pub async fn target(self: &Arc<Self>, name: &str) -> Result<CachedBlob, MirrorError> {
        let missing =
            || MirrorError::NotFound(format!("no target {name:?} in this site's signed metadata"));
        let (path, sha256) = parse_consistent_target_name(name).ok_or_else(missing)?;
        let listed = {
            let served = self.served();
            match served.targets.get(&path) {
                Some((listed, length)) if listed == sha256 => Listed {
                    path,
                    length: *length,
                },
                _ => return Err(missing()),
            }
        };
        self.serve_blob(sha256, listed).await
    }

    /// The package `/v1/packages/{sha256}`: any target the verified metadata lists with that
    /// SHA-256.
    pub async fn package(self: &Arc<Self>, sha256: &str) -> Result<CachedBlob, MirrorError> {
        if !is_sha256(sha256) {
            return Err(MirrorError::BadRequest(format!(
                "{sha256:?} is not a SHA-256 digest (64 lowercase hexadecimal digits)"
            )));
        }
        let listed = self.served().blobs.get(sha256).cloned().ok_or_else(|| {
            MirrorError::NotFound(format!(
                "no package {sha256} in this site's signed metadata"
            ))
        })?;
        self.serve_blob(sha256, listed).await
    }

    async fn serve_blob(
        self: &Arc<Self>,
        sha256: &str,
        listed: Listed,
    ) -> Result<CachedBlob, MirrorError> {
        let mut hit = true;
        // A blob removed between its fetch and its opening (evicted, found damaged) is fetched
        // again; twice is plenty unless the disk is failing.
        for _ in 0..3 {
            if let Some(blob) = self.open_cached(sha256, hit)? {
                let counter = match blob.hit {
                    true => &self.counters.hits,
                    false => &self.counters.misses,
                };
                counter.fetch_add(1, Relaxed);
                return Ok(blob);
            }
            hit = false;
            self.fetch_coalesced(sha256, &listed).await?;
        }
        Err(MirrorError::Local(format!(
            "the blob {sha256} keeps disappearing from the site's cache"
        )))
    }

    /// Opens a cached blob and holds it in the cache; `None` when it is not cached (or was
    /// damaged, and is now removed).
    fn open_cached(
        self: &Arc<Self>,
        sha256: &str,
        hit: bool,
    ) -> Result<Option<CachedBlob>, MirrorError> {
        let mut cache = self.cache.lock().expect("cache lock");
        cache.tick += 1;
        let tick = cache.tick;
        let Some(entry) = cache.entries.get_mut(sha256) else {
            return Ok(None);
        };
        let path = self.blobs_dir.join(sha256);
        let file = File::open(&path);
        let actual = file
            .as_ref()
            .ok()
            .and_then(|f| f.metadata().ok())
            .map(|m| m.len());
        if actual != Some(entry.size) {
            tracing::warn!(
                "{}: {} bytes on disk, stored with {}: damaged, fetched again",
                path.display(),
                actual.map_or("no".to_owned(), |n| n.to_string()),
                entry.size
            );
            let size = entry.size;
            cache.entries.remove(sha256);
            cache.bytes -= size;
            self.counters.damaged.fetch_add(1, Relaxed);
            if let Err(err) = std::fs::remove_file(&path)
                && err.kind() != io::ErrorKind::NotFound
            {
                return Err(local(&path, err));
            }
            return Ok(None);
        }
        entry.last_used = tick;
        entry.readers += 1;
        let size = entry.size;
        drop(cache);
        let guard = ReaderGuard {
            mirror: self.clone(),
            sha256: sha256.to_owned(),
        };
        let file = file.map_err(|e| local(&path, e))?;
        Ok(Some(CachedBlob {
            file: tokio::fs::File::from_std(file),
            size,
            sha256: sha256.to_owned(),
            hit,
            guard,
        }))
    }

    /// Waits for the one fetch of `sha256`, starting it unless one runs. The fetch is a task
    /// of its own: a waiter that goes away does not cancel it for the others.
    async fn fetch_coalesced(
        self: &Arc<Self>,
        sha256: &str,
        listed: &Listed,
    ) -> Result<(), MirrorError> {
        if listed.length > self.limit {
            return Err(MirrorError::TooLargeForCache {
                sha256: sha256.to_owned(),
                size: listed.length,
                limit: self.limit,
            });
        }
        let mut receiver = {
            let mut inflight = self.inflight.lock().expect("inflight lock");
            match inflight.get(sha256) {
                Some(receiver) => receiver.clone(),
                None => {
                    if self.is_cached(sha256) {
                        return Ok(());
                    }
                    let (sender, receiver) = watch::channel(None);
                    inflight.insert(sha256.to_owned(), receiver.clone());
                    let mirror = self.clone();
                    let (sha256, listed) = (sha256.to_owned(), listed.clone());
                    tokio::spawn(async move {
                        let worker = mirror.clone();
                        let key = sha256.clone();
                        let result =
                            tokio::task::spawn_blocking(move || worker.fetch(&sha256, &listed))
                                .await
                                .unwrap_or_else(|err| {
                                    Err(MirrorError::Local(format!("the fetch failed: {err}")))
                                });
                        // Cached (on success) before it stops being in flight: a request
                        // arriving in between finds one or the other.
                        mirror.inflight.lock().expect("inflight lock").remove(&key);
                        sender.send_replace(Some(result));
                    });
                    receiver
                }
            }
        };
        let result = receiver
            .wait_for(Option::is_some)
            .await
            .map_err(|_| MirrorError::Local("the fetch stopped without an answer".into()))?
            .clone();
        result.expect("waited for Some")
    }

    /// Downloads blob `sha256` from the center into the cache, checking the signed length and
    /// SHA-256 before it is kept. Blocking.
    fn fetch(&self, sha256: &str, listed: &Listed) -> Result<(), MirrorError> {
        let url_path = format!(
            "{TARGETS_PATH}{}",
            consistent_target_name(&listed.path, sha256)
        );
        let final_path = self.blobs_dir.join(sha256);
        let mut outcome: Result<(), MirrorError> = Ok(());
        self.counters.upstream_requests.fetch_add(1, Relaxed);
        let written = herd_fs::write_atomic_with(&final_path, FILE_MODE, |file| {
            let result =
                self.upstream()
                    .download(&url_path, ReadLimits::target(listed.length), 0, file);
            let received = file.stream_position().unwrap_or(0);
            self.counters.upstream_bytes.fetch_add(received, Relaxed);
            if let Err(err) = result {
                outcome = Err(upstream(err));
                return Err(io::Error::other("download failed"));
            }
            if received != listed.length {
                outcome = Err(MirrorError::Upstream(format!(
                    "{url_path}: {received} bytes, the signed metadata lists {}",
                    listed.length
                )));
                return Err(io::Error::other("wrong length"));
            }
            file.flush()?;
            // The temporary is open for writing only: read it back through a second
            // descriptor of the same file.
            let actual = sha256_of_file(Path::new(&format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(file)
            )))?;
            if actual != sha256 {
                outcome = Err(MirrorError::Upstream(format!(
                    "{url_path}: its SHA-256 is {actual}, not the signed {sha256}"
                )));
                return Err(io::Error::other("wrong SHA-256"));
            }
            Ok(())
        });
        outcome?;
        written.map_err(|err| MirrorError::Local(err.to_string()))?;
        let mut cache = self.cache.lock().expect("cache lock");
        cache.tick += 1;
        let tick = cache.tick;
        if cache.entries.contains_key(sha256) {
            return Ok(()); // stored meanwhile (cannot happen while fetches coalesce)
        }
        cache.bytes += listed.length;
        cache.entries.insert(
            sha256.to_owned(),
            Entry {
                size: listed.length,
                last_used: tick,
                readers: 0,
            },
        );
        let listed_now = self.served();
        self.evict(&mut cache, &listed_now, sha256);
        Ok(())
    }

    /// Removes blobs until the cache is under its limit: those the current metadata no longer
    /// lists first, then the least recently used; never one being served, nor `keep` (just
    /// fetched for someone).
    fn evict(&self, cache: &mut Cache, served: &Served, keep: &str) {
        if cache.bytes <= self.limit {
            return;
        }
        let mut candidates: Vec<(bool, u64, String)> = cache
            .entries
            .iter()
            .filter(|(sha256, entry)| entry.readers == 0 && sha256.as_str() != keep)
            .map(|(sha256, entry)| {
                (
                    served.blobs.contains_key(sha256),
                    entry.last_used,
                    sha256.clone(),
                )
            })
            .collect();
        candidates.sort();
        for (listed, _, sha256) in candidates {
            if cache.bytes <= self.limit {
                break;
            }
            let path = self.blobs_dir.join(&sha256);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => {
                    tracing::warn!("cannot evict {}: {err}", path.display());
                    continue;
                }
            }
            let entry = cache
                .entries
                .remove(&sha256)
                .expect("a candidate is cached");
            cache.bytes -= entry.size;
            self.counters.evictions.fetch_add(1, Relaxed);
            tracing::debug!(
                "evicted {sha256} ({} bytes, {})",
                entry.size,
                if listed {
                    "least recently used"
                } else {
                    "no longer listed"
                }
            );
        }
    }

    /// Reads the center's timestamp (and probes the next root) and, when either moved, mirrors and verifies the set it names;
    /// starts prefetching what the new set lists that the previous one did not. A set that
    /// does not verify is refused (the previous one stays served) and returned as `Untrusted`.
    pub async fn sync_metadata(self: &Arc<Self>) -> Result<SyncOutcome, MirrorError> {
        self.sync_metadata_at(Timestamp::from_unix_seconds(unix_now()))
            .await
    }

    /// [`Mirror::sync_metadata`] as of `now`.
    pub async fn sync_metadata_at(
        self: &Arc<Self>,
        now: Timestamp,
    ) -> Result<SyncOutcome, MirrorError> {
        let _one_at_a_time = self.sync_lock.lock().await;
        let mirror = self.clone();
        let previous = self.served();
        let result = tokio::task::spawn_blocking(move || mirror.sync_blocking(now))
            .await
            .unwrap_or_else(|err| Err(MirrorError::Local(format!("the sync failed: {err}"))));
        let Some(served) = result? else {
            return Ok(SyncOutcome {
                changed: false,
                timestamp_version: previous.timestamp_signed.as_ref().map_or(0, |t| t.version),
                prefetching: 0,
            });
        };
        let timestamp_version = served.timestamp_signed.as_ref().map_or(0, |t| t.version);
        let mut new: Vec<(String, Listed)> = match previous.snapshot_signed {
            None => Vec::new(), // a fresh site: fetched on demand (module documentation)
            Some(_) => served
                .blobs
                .iter()
                .filter(|(sha256, _)| !previous.blobs.contains_key(*sha256))
                .map(|(sha256, listed)| (sha256.clone(), listed.clone()))
                .collect(),
        };
        new.sort_by(|a, b| a.0.cmp(&b.0));
        let prefetching = new.len();
        for (sha256, listed) in new {
            self.prefetch(sha256, listed);
        }
        Ok(SyncOutcome {
            changed: true,
            timestamp_version,
            prefetching,
        })
    }

    /// Syncs now and then every `interval` until `stop` turns true, logging what fails (the
    /// center away is expected: the site keeps serving what it has).
    pub async fn sync_every(self: Arc<Self>, interval: Duration, mut stop: watch::Receiver<bool>) {
        loop {
            match self.sync_metadata().await {
                Ok(outcome) if outcome.changed => tracing::info!(
                    timestamp = outcome.timestamp_version,
                    prefetching = outcome.prefetching,
                    "mirrored the center's metadata"
                ),
                Ok(_) => {}
                Err(MirrorError::Untrusted(_)) => {} // logged and counted by the sync
                Err(err) => tracing::warn!("mirroring the center's metadata: {err}"),
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
            }
        }
    }

    fn prefetch(self: &Arc<Self>, sha256: String, listed: Listed) {
        if self.is_cached(&sha256) || listed.length > self.limit {
            return;
        }
        self.prefetch_pending.fetch_add(1, Relaxed);
        let mirror = self.clone();
        tokio::spawn(async move {
            let permit = mirror.prefetch_permits.clone().acquire_owned().await;
            if permit.is_ok()
                && let Err(err) = mirror.fetch_coalesced(&sha256, &listed).await
            {
                tracing::warn!("prefetching {} ({sha256}): {err}", listed.path);
            }
            drop(permit);
            if mirror.prefetch_pending.fetch_sub(1, Relaxed) == 1 {
                mirror.prefetch_idle.notify_waiters();
            }
        });
    }

    /// The sync's blocking part: `None` when the timestamp did not change.
    fn sync_blocking(&self, now: Timestamp) -> Result<Option<Arc<Served>>, MirrorError> {
        let previous = self.served();
        let source = UpstreamSource { mirror: self };
        let timestamp = source.timestamp()?;
        // A new root need not come with a new timestamp (the online keys may stay): the next
        // root is probed at every sync, as TUF clients do, one small request (a 404 mostly).
        if previous
            .timestamp
            .as_ref()
            .is_some_and(|served| **served == *timestamp)
            && source
                .with_timestamp(Vec::new())
                .root(previous.root_version + 1)?
                .is_none()
        {
            return Ok(None);
        }
        let start_root = match &previous.root {
            Some(root) if previous.root_version >= root_version(&self.trusted_root) => {
                root.to_vec()
            }
            _ => self.trusted_root.clone(),
        };
        let source = UpstreamSource { mirror: self };
        let prior = previous
            .timestamp_signed
            .as_ref()
            .zip(previous.snapshot_signed.as_ref())
            .map(|(t, s)| (t, s, previous.root_version));
        let verified = match verify(&start_root, now, prior, &source.with_timestamp(timestamp)) {
            Ok(verified) => verified,
            Err(err) => {
                if matches!(err, MirrorError::Untrusted(_)) {
                    self.counters.metadata_refusals.fetch_add(1, Relaxed);
                    tracing::warn!(
                        "refused the center's metadata, still serving the previous set: {err}"
                    );
                }
                return Err(err);
            }
        };
        // Durable before served, in the order a reader needs: versioned files, roots, then
        // root.json, and timestamp.json last.
        let write = |name: &str, bytes: &[u8]| {
            let path = self.metadata_dir.join(name);
            herd_fs::write_atomic(&path, bytes, FILE_MODE)
                .map_err(|err| MirrorError::Local(err.to_string()))
        };
        for (name, bytes) in &verified.documents {
            if !self.metadata_dir.join(name).exists() {
                write(name, bytes)?;
            }
        }
        for (version, bytes) in &verified.roots {
            let name = format!("{version}.root.json");
            if !self.metadata_dir.join(&name).exists() {
                write(&name, bytes)?;
            }
        }
        write("root.json", &verified.newest_root)?;
        write("timestamp.json", &verified.timestamp)?;
        write(VERIFIED_AT, now.unix_seconds().to_string().as_bytes())?;

        let mut files = self.versioned_on_disk()?;
        let named: BTreeSet<String> = verified.documents.keys().cloned().collect();
        let pruned = prune(&files, &named);
        for name in &pruned {
            files.remove(name);
        }
        let served = Arc::new(served_from(verified, files));
        *self.served.write().expect("served lock") = served.clone();
        self.counters.metadata_updates.fetch_add(1, Relaxed);
        for name in pruned {
            let path = self.metadata_dir.join(&name);
            if let Err(err) = std::fs::remove_file(&path) {
                tracing::warn!("cannot remove {}: {err}", path.display());
            }
        }
        Ok(Some(served))
    }
}

fn root_version(bytes: &[u8]) -> u64 {
    Envelope::<Root>::parse("root", bytes).map_or(0, |e| e.signed.version)
}

/// The versioned files to remove: of each role but root, all but the newest [`VERSIONS_KEPT`],
/// never one the served set names.
fn prune(files: &BTreeSet<String>, named: &BTreeSet<String>) -> Vec<String> {
    let mut by_role: BTreeMap<&str, Vec<(u64, &String)>> = BTreeMap::new();
    for name in files {
        if let Some((version, role)) = parse_versioned(name)
            && role != "root"
        {
            by_role.entry(role).or_default().push((version, name));
        }
    }
    let mut pruned = Vec::new();
    for (_, mut versions) in by_role {
        versions.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
        for (_, name) in versions.into_iter().skip(VERSIONS_KEPT) {
            if !named.contains(name) {
                pruned.push(name.clone());
            }
        }
    }
    pruned
}

fn served_from(verified: Verified, mut files: BTreeSet<String>) -> Served {
    for version in verified.roots.keys() {
        files.insert(format!("{version}.root.json"));
    }
    let mut blobs = HashMap::new();
    for (path, (sha256, length)) in &verified.targets {
        blobs.entry(sha256.clone()).or_insert_with(|| Listed {
            path: path.clone(),
            length: *length,
        });
    }
    Served {
        root_version: root_version(&verified.newest_root),
        root: Some(verified.newest_root.into()),
        timestamp: Some(verified.timestamp.into()),
        timestamp_signed: Some(verified.timestamp_signed),
        snapshot_signed: Some(verified.snapshot_signed),
        files,
        targets: verified.targets,
        blobs,
    }
}

/// A set that verified.
struct Verified {
    /// Every root of the chain the site has (oldest to newest).
    roots: BTreeMap<u64, Vec<u8>>,
    newest_root: Vec<u8>,
    timestamp: Vec<u8>,
    timestamp_signed: TimestampRole,
    snapshot_signed: Snapshot,
    /// `N.snapshot.json`, `N.targets.json`, `N.<delegated>.json`.
    documents: BTreeMap<String, Vec<u8>>,
    /// Every target a client would find, by path: SHA-256 and length.
    targets: HashMap<String, (String, u64)>,
}

/// Where [`verify`] reads the documents it checks.
trait Source {
    /// `N.root.json`, or `None` when there is none.
    fn root(&self, version: u64) -> Result<Option<Vec<u8>>, MirrorError>;
    fn timestamp(&self) -> Result<Vec<u8>, MirrorError>;
    /// `N.role.json` of at most `max` bytes.
    fn document(&self, name: &str, max: u64) -> Result<Vec<u8>, MirrorError>;
}

/// The stored set (on open).
struct DiskSource<'a> {
    mirror: &'a Mirror,
}

impl DiskSource<'_> {
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, MirrorError> {
        let path = self.mirror.metadata_dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(local(&path, err)),
        }
    }
}

impl Source for DiskSource<'_> {
    fn root(&self, version: u64) -> Result<Option<Vec<u8>>, MirrorError> {
        self.read(&format!("{version}.root.json"))
    }

    fn timestamp(&self) -> Result<Vec<u8>, MirrorError> {
        self.read("timestamp.json")?
            .ok_or_else(|| MirrorError::NotFound("no stored timestamp.json".into()))
    }

    fn document(&self, name: &str, _max: u64) -> Result<Vec<u8>, MirrorError> {
        self.read(name)?
            .ok_or_else(|| MirrorError::Untrusted(format!("{name} is not stored")))
    }
}

/// The center, with what is on disk first (versioned files never change).
struct UpstreamSource<'a> {
    mirror: &'a Mirror,
}

impl<'a> UpstreamSource<'a> {
    fn with_timestamp(self, timestamp: Vec<u8>) -> ReadTimestamp<'a> {
        ReadTimestamp {
            inner: self,
            timestamp,
        }
    }

    fn get(&self, name: &str, max: u64) -> Result<Vec<u8>, RepositoryError> {
        let counters = &self.mirror.counters;
        counters.metadata_requests.fetch_add(1, Relaxed);
        let bytes = self
            .mirror
            .upstream()
            .get(&format!("{METADATA_PATH}{name}"), ReadLimits::metadata(max))?;
        counters
            .metadata_bytes
            .fetch_add(bytes.len() as u64, Relaxed);
        Ok(bytes)
    }

    fn timestamp(&self) -> Result<Vec<u8>, MirrorError> {
        self.get("timestamp.json", MAX_TIMESTAMP_BYTES)
            .map_err(upstream)
    }

    fn on_disk(&self, name: &str) -> Result<Option<Vec<u8>>, MirrorError> {
        DiskSource {
            mirror: self.mirror,
        }
        .read(name)
    }
}

/// [`UpstreamSource`] with the timestamp already read (the one compared with the served one).
struct ReadTimestamp<'a> {
    inner: UpstreamSource<'a>,
    timestamp: Vec<u8>,
}

impl Source for ReadTimestamp<'_> {
    fn root(&self, version: u64) -> Result<Option<Vec<u8>>, MirrorError> {
        let name = format!("{version}.root.json");
        if let Some(bytes) = self.inner.on_disk(&name)? {
            return Ok(Some(bytes));
        }
        match self.inner.get(&name, MAX_ROOT_BYTES) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(RepositoryError::NotFound { .. }) => Ok(None),
            Err(err) => Err(upstream(err)),
        }
    }

    fn timestamp(&self) -> Result<Vec<u8>, MirrorError> {
        Ok(self.timestamp.clone())
    }

    fn document(&self, name: &str, max: u64) -> Result<Vec<u8>, MirrorError> {
        if let Some(bytes) = self.inner.on_disk(name)? {
            return Ok(bytes);
        }
        self.inner.get(name, max).map_err(upstream)
    }
}

fn untrusted(err: impl std::fmt::Display) -> MirrorError {
    MirrorError::Untrusted(err.to_string())
}

/// Verifies a whole set from `start_root` as a client would (TUF 1.0 §5): the root chain
/// forwards (and the roots before `start_root` backwards, for terminals that trust an older
/// one), the timestamp (not older than `prior`'s when the root did not change), the snapshot,
/// `targets`, and every role delegated from it that the snapshot lists.
fn verify(
    start_root: &[u8],
    now: Timestamp,
    prior: Option<(&TimestampRole, &Snapshot, u64)>,
    source: &dyn Source,
) -> Result<Verified, MirrorError> {
    let mut set = TrustedSet::new(start_root, now).map_err(untrusted)?;
    let mut roots = BTreeMap::new();
    let start_version = set.root_version();
    roots.insert(start_version, start_root.to_vec());
    let mut newest_root = start_root.to_vec();
    while set.root_version() < start_version + MAX_ROOT_ROTATIONS {
        let next = set.root_version() + 1;
        let Some(bytes) = source.root(next)? else {
            break;
        };
        set.update_root(&bytes).map_err(untrusted)?;
        roots.insert(next, bytes.clone());
        newest_root = bytes;
    }
    set.root_update_finished().map_err(untrusted)?;
    verify_older_roots(start_root, start_version, source, &mut roots)?;

    let (prior_timestamp, prior_snapshot) = match prior {
        Some((timestamp, snapshot, root_version)) if root_version == set.root_version() => {
            (Some(timestamp), Some(snapshot))
        }
        _ => (None, None),
    };
    let timestamp = source.timestamp()?;
    set.update_timestamp(&timestamp, prior_timestamp)
        .map_err(untrusted)?;
    let mut documents = BTreeMap::new();
    let meta = set.snapshot_meta().map_err(untrusted)?.clone();
    let name = format!("{}.snapshot.json", meta.version);
    let bytes = source.document(&name, meta.length.unwrap_or(MAX_METADATA_BYTES))?;
    set.update_snapshot(&bytes, prior_snapshot)
        .map_err(untrusted)?;
    documents.insert(name, bytes);

    let mut load = |set: &mut TrustedSet, role: &str, delegator: Option<&str>| {
        if !usable_role(role) {
            return Err(MirrorError::Untrusted(format!(
                "the role name {role:?} cannot be stored"
            )));
        }
        let meta = set.targets_meta(role).map_err(untrusted)?.clone();
        let name = format!("{}.{role}.json", meta.version);
        let bytes = source.document(&name, meta.length.unwrap_or(MAX_METADATA_BYTES))?;
        match delegator {
            None => set.update_targets(&bytes),
            Some(delegator) => set.update_delegated(role, delegator, &bytes),
        }
        .map_err(untrusted)?;
        documents.insert(name, bytes);
        Ok::<(), MirrorError>(())
    };
    load(&mut set, "targets", None)?;
    let snapshot = set.snapshot().expect("verified above").clone();
    let mut loaded = vec!["targets".to_owned()];
    let mut next = 0;
    while next < loaded.len() {
        let delegator = loaded[next].clone();
        next += 1;
        let delegated: Vec<String> = set
            .targets(&delegator)
            .and_then(|t| t.delegations.as_ref())
            .map(|d| d.roles.iter().map(|r| r.name.clone()).collect())
            .unwrap_or_default();
        for role in delegated {
            if loaded.contains(&role) || !snapshot.meta.contains_key(&format!("{role}.json")) {
                continue;
            }
            load(&mut set, &role, Some(&delegator))?;
            loaded.push(role);
        }
    }

    // What a client would find: each role's targets, where the search for its path leads
    // to that very role (a delegated role listing paths outside its delegation does not count).
    let mut targets = HashMap::new();
    for role in &loaded {
        let Some(listed) = set.targets(role) else {
            continue;
        };
        for (path, file) in &listed.targets {
            let Some(sha256) = file.hashes.get("sha256").filter(|s| is_sha256(s)) else {
                continue;
            };
            if let TargetSearch::Found { role: found, .. } = set.find_target(path)
                && found == *role
            {
                targets.insert(path.clone(), (sha256.clone(), file.length));
            }
        }
    }
    let timestamp_signed = set.timestamp().expect("verified above").clone();
    Ok(Verified {
        roots,
        newest_root,
        timestamp,
        timestamp_signed,
        snapshot_signed: snapshot,
        documents,
        targets,
    })
}

/// The roots before `start`, walked backwards while the source has them: each must be signed
/// by a threshold of its own root keys, have signed the next one with a threshold of them, and
/// carry its version. A terminal enrolled with an older root walks them forwards.
fn verify_older_roots(
    start: &[u8],
    start_version: u64,
    source: &dyn Source,
    roots: &mut BTreeMap<u64, Vec<u8>>,
) -> Result<(), MirrorError> {
    let mut later = Envelope::<Root>::parse("root", start).map_err(untrusted)?;
    for version in (1..start_version).rev() {
        let Some(bytes) = source.root(version)? else {
            break;
        };
        let earlier = Envelope::<Root>::parse("root", &bytes).map_err(untrusted)?;
        let root_keys = earlier.signed.roles.get("root").ok_or_else(|| {
            MirrorError::Untrusted(format!("{version}.root.json names no root keys"))
        })?;
        if earlier.signed.version != version {
            return Err(MirrorError::Untrusted(format!(
                "{version}.root.json has version {}",
                earlier.signed.version
            )));
        }
        earlier
            .check_threshold("root", root_keys, &earlier.signed.keys)
            .map_err(untrusted)?;
        later
            .check_threshold("root", root_keys, &earlier.signed.keys)
            .map_err(untrusted)?;
        roots.insert(version, bytes);
        later = earlier;
    }
    Ok(())
}

fn sha256_of(reader: &mut impl Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 << 10];
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buffer[..n]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

fn sha256_of_file(path: &Path) -> io::Result<String> {
    sha256_of(&mut File::open(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_names_are_parsed_strictly() {
        assert_eq!(parse_versioned("3.snapshot.json"), Some((3, "snapshot")));
        assert_eq!(
            parse_versioned("12.vendor-acme.json"),
            Some((12, "vendor-acme"))
        );
        for bad in [
            "root.json",
            "timestamp.json",
            "x.targets.json",
            ".targets.json",
            "3..json",
            "3.../x.json",
            "3./etc/passwd.json",
            "3.targets",
            "-1.targets.json",
        ] {
            assert_eq!(parse_versioned(bad), None, "{bad}");
        }
    }

    #[test]
    fn pruning_keeps_the_newest_versions_every_root_and_what_is_named() {
        let files: BTreeSet<String> = (1..=7)
            .flat_map(|v| [format!("{v}.snapshot.json"), format!("{v}.root.json")])
            .chain(["1.targets.json".to_owned()])
            .collect();
        let named: BTreeSet<String> = ["1.targets.json".to_owned(), "2.snapshot.json".to_owned()]
            .into_iter()
            .collect();
        let mut pruned = prune(&files, &named);
        pruned.sort();
        assert_eq!(pruned, ["1.snapshot.json", "3.snapshot.json"]);
    }

    #[test]
    fn metrics_are_prometheus_text() {
        let stats = MirrorStats {
            cache_bytes: 5,
            upstream_bytes: 7,
            ..MirrorStats::default()
        };
        let text = stats.render();
        assert!(text.contains("# TYPE herd_site_cache_bytes gauge\nherd_site_cache_bytes 5\n"));
        assert!(text.contains("herd_site_upstream_bytes_total 7\n"));
    }
}
