//! Reading a TUF repository (`/tuf/metadata/…`, `/tuf/targets/…`) from the center or from any
//! HTTP(S) mirror, every read bounded in bytes and in time: a repository is untrusted until
//! its signatures are checked, so it must not be able to make a client read forever (endless
//! data) or wait forever (slow retrieval). Verification is the caller's (herd-tuf); this only
//! moves bounded bytes and says, by variant, why a read stopped.
//!
//! Over the center's own connection ([`Client::repository`]) the pinned CA and the client
//! certificate are reused; a mirror ([`Repository::mirror`]) may be plain `http://` (what it
//! serves is verified anyway) or `https://` with the public web roots.

use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ureq::http::{self, StatusCode, header};

use crate::Client;

/// How long one metadata read may take, connection to last byte, unless told otherwise.
pub const METADATA_DEADLINE: Duration = Duration::from_secs(30);
/// The slowest a target download may be once [`RATE_GRACE`] has passed, in bytes per second.
pub const MIN_TARGET_RATE: u64 = 1024;
/// How long a target download may take before its rate counts.
pub const RATE_GRACE: Duration = Duration::from_secs(10);
/// How long a read may wait for the next bytes.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The bounds of one read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimits {
    /// Refuse answers longer than this (endless data).
    pub max_bytes: u64,
    /// The whole request, from connecting to the last byte (slow retrieval).
    pub deadline: Duration,
    /// Target downloads: the slowest acceptable average rate after `grace`.
    pub min_rate: Option<(u64, Duration)>,
    /// The longest wait for the next bytes.
    pub stall: Duration,
}

impl ReadLimits {
    /// A metadata document of at most `max_bytes`, within [`METADATA_DEADLINE`].
    pub fn metadata(max_bytes: u64) -> ReadLimits {
        ReadLimits {
            max_bytes,
            deadline: METADATA_DEADLINE,
            min_rate: None,
            stall: STALL_TIMEOUT,
        }
    }

    /// A target of `length` bytes: no overall deadline beyond what the minimum rate allows
    /// (a large package over a slow link takes its time), but at least [`MIN_TARGET_RATE`].
    pub fn target(length: u64) -> ReadLimits {
        let at_min_rate = Duration::from_secs(length / MIN_TARGET_RATE + 1);
        ReadLimits {
            max_bytes: length,
            deadline: RATE_GRACE + at_min_rate,
            min_rate: Some((MIN_TARGET_RATE, RATE_GRACE)),
            stall: STALL_TIMEOUT,
        }
    }
}

/// Why a repository read stopped; the caller decides on the variant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RepositoryError {
    /// HTTP 404: the repository has no such file (the end of a root chain walk).
    #[error("{url}: not found (404)")]
    NotFound { url: String },
    /// More bytes than allowed (announced or sent): endless data.
    #[error("{url}: more than the {limit} bytes allowed (endless data)")]
    TooLarge { url: String, limit: u64 },
    /// The deadline passed, the bytes stalled, or they came slower than the minimum rate.
    #[error("{url}: {detail} (slow retrieval)")]
    Slow { url: String, detail: String },
    /// No answer, another status, a connection that broke.
    #[error("{url}: {detail}")]
    Unavailable { url: String, detail: String },
    /// Writing the download failed.
    #[error("cannot write the download of {url}: {detail}")]
    Local {
        url: String,
        kind: io::ErrorKind,
        detail: String,
    },
    /// The base URL cannot be used.
    #[error("{0}")]
    Invalid(String),
}

/// A repository at a base URL; counts the body bytes it receives.
#[derive(Clone)]
pub struct Repository {
    agent: ureq::Agent,
    base: String,
    received: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// The center's repository, over this client's connection (its CA and certificate).
    pub fn repository(&self) -> Repository {
        Repository {
            agent: self.agent.clone(),
            base: self.server.clone(),
            received: Arc::default(),
            requests: Arc::default(),
        }
    }
}

impl Repository {
    /// A mirror at `url` (`http://host:port[/path]` or `https://…`, verified against the public
    /// web roots). Redirects are not followed: a mirror serves its files itself.
    pub fn mirror(url: &str) -> Result<Repository, RepositoryError> {
        let trimmed = url.trim().trim_end_matches('/');
        let bad = |why: &str| RepositoryError::Invalid(format!("the mirror {url:?} {why}"));
        let uri: http::Uri = trimmed
            .parse()
            .map_err(|e| bad(&format!("is not a URL: {e}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(bad("must start with http:// or https://"));
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("has no host name"));
        }
        if uri.query().is_some() {
            return Err(bad("must not have a query (`?…`)"));
        }
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Ok(Repository {
            agent: crate::web::agent_trusting(roots).map_err(|e| bad(&e))?,
            base: trimmed.to_owned(),
            received: Arc::default(),
            requests: Arc::default(),
        })
    }

    /// The base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Body bytes and requests since the last call (what one refresh cost), and resets them.
    pub fn take_counts(&self) -> (u64, u64) {
        (
            self.received.swap(0, Ordering::Relaxed),
            self.requests.swap(0, Ordering::Relaxed),
        )
    }

    /// `GET base + path` into memory, within `limits`.
    pub fn get(&self, path: &str, limits: ReadLimits) -> Result<Vec<u8>, RepositoryError> {
        let mut out = Vec::new();
        self.read_into(path, limits, 0, &mut out)?;
        Ok(out)
    }

    /// `GET base + path` appended to `dest`, which holds the first `resume_from` bytes of it
    /// (asked for with `Range`; a server answering 200 makes the caller start over, which it
    /// is told by `Ok(false)` after `dest` was left as it was). At most `limits.max_bytes` in all.
    pub fn download(
        &self,
        path: &str,
        limits: ReadLimits,
        resume_from: u64,
        dest: &mut File,
    ) -> Result<bool, RepositoryError> {
        struct ToFile<'a>(&'a mut File);
        impl Sink for ToFile<'_> {
            fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
                self.0.write_all(bytes)
            }
        }
        self.read_into(path, limits, resume_from, &mut ToFile(dest))
    }

    fn read_into(
        &self,
        path: &str,
        limits: ReadLimits,
        resume_from: u64,
        sink: &mut dyn Sink,
    ) -> Result<bool, RepositoryError> {
        let url = format!("{}{path}", self.base);
        let unavailable = |detail: String| RepositoryError::Unavailable {
            url: url.clone(),
            detail,
        };
        let slow = |detail: String| RepositoryError::Slow {
            url: url.clone(),
            detail,
        };
        let started = Instant::now();
        let mut builder = http::Request::builder().method("GET").uri(&url);
        if resume_from > 0 {
            builder = builder.header(header::RANGE, format!("bytes={resume_from}-"));
        }
        let request = builder
            .body(())
            .map_err(|e| RepositoryError::Invalid(format!("{url}: {e}")))?;
        let request = self
            .agent
            .configure_request(request)
            .timeout_global(Some(limits.deadline))
            .timeout_per_read(Some(limits.stall))
            .build();
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response = self.agent.run(request).map_err(|err| match err {
            ureq::Error::Timeout(which) => slow(format!("no answer in time ({which} timeout)")),
            other => unavailable(other.to_string()),
        })?;
        let status = response.status();
        let remaining = limits.max_bytes.saturating_sub(resume_from);
        match status {
            StatusCode::OK if resume_from > 0 => return Ok(false),
            StatusCode::OK => {}
            StatusCode::PARTIAL_CONTENT => {
                // Only the range asked for may be appended to what the file holds.
                let range = response
                    .headers()
                    .get(header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let starts_right = resume_from > 0
                    && range
                        .strip_prefix("bytes ")
                        .and_then(|r| r.split_once('-'))
                        .is_some_and(|(first, _)| first.trim() == resume_from.to_string());
                if !starts_right {
                    return Err(unavailable(format!(
                        "asked for bytes {resume_from}- and got the range {range:?}"
                    )));
                }
            }
            StatusCode::NOT_FOUND => return Err(RepositoryError::NotFound { url }),
            other => return Err(unavailable(format!("answered {other}"))),
        }
        let announced = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n > remaining) {
            return Err(RepositoryError::TooLarge {
                url,
                limit: limits.max_bytes,
            });
        }
        // One byte more than allowed is read, to tell "exactly the limit" from "more".
        let mut body = response
            .into_body()
            .into_with_config()
            .limit(u64::MAX)
            .reader()
            .take(remaining + 1);
        let mut buffer = vec![0u8; 16 << 10];
        let mut got = 0u64;
        loop {
            let n = match body.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(slow(format!("stalled after {got} bytes: {e}")));
                }
                Err(e) => {
                    let timed_out = e
                        .get_ref()
                        .and_then(|inner| inner.downcast_ref::<ureq::Error>())
                        .is_some_and(|inner| matches!(inner, ureq::Error::Timeout(_)));
                    if timed_out {
                        return Err(slow(format!("stalled after {got} bytes: {e}")));
                    }
                    return Err(unavailable(format!(
                        "the answer broke off after {got} bytes: {e}"
                    )));
                }
            };
            got += n as u64;
            self.received.fetch_add(n as u64, Ordering::Relaxed);
            if got > remaining {
                return Err(RepositoryError::TooLarge {
                    url,
                    limit: limits.max_bytes,
                });
            }
            sink.put(&buffer[..n]).map_err(|e| RepositoryError::Local {
                url: url.clone(),
                kind: e.kind(),
                detail: e.to_string(),
            })?;
            let elapsed = started.elapsed();
            if elapsed > limits.deadline {
                return Err(slow(format!(
                    "{got} bytes in {:.1} s, past the {:.0} s deadline",
                    elapsed.as_secs_f64(),
                    limits.deadline.as_secs_f64()
                )));
            }
            if let Some((rate, grace)) = limits.min_rate
                && elapsed > grace
                && (got as f64) < rate as f64 * elapsed.as_secs_f64()
            {
                return Err(slow(format!(
                    "{got} bytes in {:.1} s, below the minimum of {rate} bytes/s",
                    elapsed.as_secs_f64()
                )));
            }
        }
        Ok(true)
    }
}

trait Sink {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()>;
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}
