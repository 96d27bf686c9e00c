//! Vendor feeds the center fetches itself (seed 000 claim 3): a vendor (or an operator for it)
//! registers a feed URL; the center polls it every interval with a conditional request
//! (`If-None-Match` / `If-Modified-Since` from the last answer, so an unchanged feed costs a
//! 304), and at once when poked ([`Center::poke_feeds`]: a detection naming a threat the
//! catalog does not know). A fetched feed is applied exactly like a pushed one
//! ([`Center::publish_feed`] as that vendor: the same validation, scope, approvals and
//! signatures), and a refused one changes nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use herd_client::web::{WebClient, WebRequest};
use herd_proto::feed_sources::{FeedPollResult, FeedSource, FeedSourceDoc, FeedSourceList};
use herd_store::{FeedPolled, FeedSourceRow};
use tokio::sync::{Notify, watch};

use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::{Caller, Center, rfc3339, unix_now};

pub const DEFAULT_INTERVAL_SECS: u64 = 900;
pub const MIN_INTERVAL_SECS: u64 = 60;
pub const MAX_INTERVAL_SECS: u64 = 7 * 86_400;
/// How long one fetch may take, connection to last byte.
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the poller looks for sources that are due (when nothing pokes it).
const SCAN_EVERY: Duration = Duration::from_secs(5);
/// The most of a refusal's message kept as the source's status.
const STATUS_CHARS: usize = 500;

/// The poller's wake-up: a poke polls every source at once.
#[derive(Debug, Default)]
pub struct FeedPoller {
    poked: AtomicBool,
    wake: Notify,
}

impl Center {
    /// Polls every registered feed now, not at its interval: for a detection that names a
    /// threat the catalog does not know (a vendor may already describe it). Cheap; never
    /// blocks.
    pub fn poke_feeds(&self) {
        self.feed_poller.poked.store(true, Relaxed);
        self.feed_poller.wake.notify_one();
    }

    /// Registers (or replaces) `vendor`'s feed URL, as the vendor or an operator.
    pub async fn put_feed_source(
        &self,
        caller: &Caller,
        vendor: &str,
        doc: FeedSourceDoc,
    ) -> CenterResult<FeedSource> {
        self.may_publish(caller, vendor)?;
        check_feed_url(&doc.url)?;
        let interval_secs = doc.interval_secs.unwrap_or(DEFAULT_INTERVAL_SECS);
        if !(MIN_INTERVAL_SECS..=MAX_INTERVAL_SECS).contains(&interval_secs) {
            return Err(CenterError::bad_request(format!(
                "the feed source: $.interval_secs: {interval_secs} is outside \
                 {MIN_INTERVAL_SECS}..={MAX_INTERVAL_SECS}"
            )));
        }
        let row = FeedSourceRow {
            vendor: vendor.to_owned(),
            url: doc.url,
            interval_secs,
            registered_at: unix_now(),
            etag: None,
            last_modified: None,
            last_polled_at: None,
            last_status: None,
        };
        self.store.feed_source_put(&row).await?;
        // The first poll need not wait for the interval.
        self.poke_feeds();
        Ok(wire_source(row))
    }

    /// Forgets `vendor`'s feed URL (its published feed stays).
    pub async fn delete_feed_source(&self, caller: &Caller, vendor: &str) -> CenterResult<()> {
        self.may_publish(caller, vendor)?;
        match self.store.feed_source_delete(vendor).await? {
            true => Ok(()),
            false => Err(CenterError::not_found(format!(
                "vendor {vendor:?} has no feed source"
            ))),
        }
    }

    /// Every registered feed source and its last poll.
    pub async fn feed_sources(&self) -> CenterResult<FeedSourceList> {
        Ok(FeedSourceList {
            sources: self
                .store
                .feed_sources()
                .await?
                .into_iter()
                .map(wire_source)
                .collect(),
        })
    }

    /// Polls `vendor`'s feed source now and says what it did.
    pub async fn poll_feed(&self, caller: &Caller, vendor: &str) -> CenterResult<FeedPollResult> {
        self.may_publish(caller, vendor)?;
        let source = self
            .store
            .feed_sources()
            .await?
            .into_iter()
            .find(|s| s.vendor == vendor)
            .ok_or_else(|| {
                CenterError::not_found(format!("vendor {vendor:?} has no feed source"))
            })?;
        Ok(self.poll_source(source).await)
    }

    /// The poller: every source whose interval has passed, and every source when poked.
    pub async fn poll_feeds(self: Arc<Center>, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(SCAN_EVERY) => {}
                _ = self.feed_poller.wake.notified() => {}
                _ = shutdown.changed() => return,
            }
            let poked = self.feed_poller.poked.swap(false, Relaxed);
            let sources = match self.store.feed_sources().await {
                Ok(sources) => sources,
                Err(err) => {
                    tracing::warn!(%err, "cannot read the feed sources");
                    continue;
                }
            };
            let now = unix_now();
            for source in sources {
                let due = source
                    .last_polled_at
                    .is_none_or(|at| now - at >= source.interval_secs as i64);
                if poked || due {
                    let result = self.poll_source(source).await;
                    tracing::info!(vendor = %result.vendor, status = %result.status, "feed polled");
                }
            }
        }
    }

    /// One conditional fetch of `source`, applied if it changed; recorded with the source.
    async fn poll_source(&self, source: FeedSourceRow) -> FeedPollResult {
        let mut headers = Vec::new();
        if let Some(etag) = &source.etag {
            headers.push(("if-none-match".to_owned(), etag.clone()));
        }
        if let Some(modified) = &source.last_modified {
            headers.push(("if-modified-since".to_owned(), modified.clone()));
        }
        let url = source.url.clone();
        let max = self.config.max_feed_bytes;
        let fetched = tokio::task::spawn_blocking(move || {
            WebClient::new(None)?.send(&WebRequest {
                method: "GET",
                url: &url,
                headers,
                body: Vec::new(),
                max_answer_bytes: max,
                timeout: FETCH_TIMEOUT,
            })
        })
        .await;
        let vendor = source.vendor.clone();
        let mut result = FeedPollResult {
            vendor: vendor.clone(),
            applied: false,
            revision: None,
            status: String::new(),
        };
        let mut validators = None;
        match fetched {
            Err(err) => result.status = format!("failed: the fetch task failed: {err}"),
            Ok(Err(err)) => result.status = format!("failed: {err}"),
            Ok(Ok(answer)) if answer.status == 304 => result.status = "not modified".into(),
            Ok(Ok(answer)) if answer.status == 200 => {
                match self
                    .publish_feed(&Caller::Vendor(vendor.clone()), &vendor, &answer.body)
                    .await
                {
                    Ok(published) => {
                        result.applied = true;
                        result.revision = Some(published.revision);
                        result.status = format!(
                            "applied: catalog revision {}{}",
                            published.revision,
                            if published.changed {
                                ""
                            } else {
                                " (the same feed as published)"
                            }
                        );
                        validators = Some((answer.etag, answer.last_modified));
                    }
                    // Not remembered as seen: the same refused document is fetched and refused
                    // again at the next poll, so the status keeps saying why.
                    Err(err) => {
                        result.status = format!("refused: {err}")
                            .chars()
                            .take(STATUS_CHARS)
                            .collect()
                    }
                }
            }
            Ok(Ok(answer)) => {
                result.status = format!("failed: {} answered {}", source.url, answer.status)
            }
        }
        let polled = FeedPolled {
            at: unix_now(),
            validators: validators
                .as_ref()
                .map(|(etag, modified)| (etag.as_deref(), modified.as_deref())),
            status: &result.status,
        };
        if let Err(err) = self
            .store
            .feed_source_polled(&vendor, &source.url, &polled)
            .await
        {
            tracing::warn!(%vendor, %err, "cannot record a feed poll");
        }
        result
    }
}

/// `https://` with a host; plain `http://` only to a loopback address (a feed is applied with
/// the vendor's authority: anyone on the path could otherwise write it).
fn check_feed_url(url: &str) -> CenterResult<()> {
    herd_client::web::check_url(url)
        .map_err(|err| CenterError::bad_request(format!("the feed source: $.url: {err}")))?;
    if let Some(rest) = url.strip_prefix("http://") {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => authority,
        };
        let loopback = host == "localhost"
            || host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return Err(CenterError::new(
                ErrorKind::DocumentInvalid,
                format!(
                    "the feed source: $.url: {url:?} is plain http to {host:?}; use https:// \
                     (plain http only on loopback)"
                ),
            ));
        }
    }
    Ok(())
}

fn wire_source(row: FeedSourceRow) -> FeedSource {
    FeedSource {
        vendor: row.vendor,
        url: row.url,
        interval_secs: row.interval_secs,
        registered_at: rfc3339(row.registered_at),
        last_polled_at: row.last_polled_at.map(rfc3339),
        last_status: row.last_status,
        etag: row.etag,
    }
}
