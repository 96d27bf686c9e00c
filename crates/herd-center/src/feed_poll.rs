//! Vendor feeds the center fetches itself (seed 000 claim 3): a vendor (or an operator for it)
//! registers a feed URL; the center polls it every interval with a conditional request
//! (`If-None-Match` / `If-Modified-Since` from the last answer, so an unchanged feed costs a
//! 304), and at once when poked ([`Center::poke_feeds`]: a detection naming a threat the
//! catalog does not know). A fetched feed is applied exactly like a pushed one
//! ([`Center::publish_feed`] as that vendor: the same validation, scope, approvals and
//! signatures), and a refused one changes nothing.
//!
//! Against request forgery (a feed URL is a request the center makes on a vendor's word), the
//! center connects only to public addresses: loopback, private, link-local, shared, reserved,
//! multicast and unspecified addresses ([`internal_address`]) are refused unless the
//! configuration's `feed_allowed_hosts` lists the URL's host or the address. The check is made
//! at registration for a literal address or `localhost`, and at every fetch on each address
//! the host resolves to, connecting only to allowed ones (so a name re-pointed at an internal
//! address later, by DNS rebinding for instance, is not reached).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use std::net::IpAddr;

use herd_client::web::{AddressPolicy, WebClient, WebRequest};
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
        check_feed_url(&doc.url, &self.config.feed_allowed_hosts)?;
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
        let allowed = self.config.feed_allowed_hosts.clone();
        let policy: AddressPolicy =
            Arc::new(move |host: &str, ip: IpAddr| address_allowed(host, ip, &allowed));
        let fetched = tokio::task::spawn_blocking(move || {
            WebClient::with_policy(None, policy)?.send(&WebRequest {
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

/// Why `ip` is not on the public internet (`None`: it is): the addresses a forged request
/// would aim at — the center's own machine, its networks, cloud metadata services.
pub fn internal_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            if v4.is_loopback() {
                Some("a loopback address")
            } else if v4.is_private() {
                Some("a private address")
            } else if v4.is_link_local() {
                Some("a link-local address")
            } else if v4.is_unspecified() || a == 0 {
                Some("an unspecified address")
            } else if a == 100 && (64..128).contains(&b) {
                Some("a shared (carrier-grade NAT) address")
            } else if v4.is_multicast() || v4.is_broadcast() || a >= 240 {
                Some("a multicast, broadcast or reserved address")
            } else if (a == 192 && b == 0 && c == 0) || (a == 198 && (b & 0xfe) == 18) {
                Some("a reserved address")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            if let Some(v4) = v6.to_ipv4_mapped() {
                internal_address(IpAddr::V4(v4))
            } else if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                // NAT64: the IPv4 address it reaches is what counts.
                let [a, b] = segments[6].to_be_bytes();
                let [c, d] = segments[7].to_be_bytes();
                internal_address(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)))
            } else if v6.is_loopback() {
                Some("a loopback address")
            } else if v6.is_unspecified() {
                Some("an unspecified address")
            } else if (segments[0] & 0xfe00) == 0xfc00 {
                Some("a private (unique local) address")
            } else if (segments[0] & 0xffc0) == 0xfe80 || (segments[0] & 0xffc0) == 0xfec0 {
                Some("a link-local address")
            } else if v6.is_multicast() {
                Some("a multicast address")
            } else {
                None
            }
        }
    }
}

/// Whether the center may fetch a feed from `ip` for a URL naming `host`: a public address,
/// or one `allowed` lists by the host's name or the address itself (names compared ignoring
/// case).
pub fn address_allowed(host: &str, ip: IpAddr, allowed: &[String]) -> bool {
    internal_address(ip).is_none()
        || allowed.iter().any(|listed| {
            listed.eq_ignore_ascii_case(host)
                || listed
                    .trim_matches(['[', ']'])
                    .parse::<IpAddr>()
                    .is_ok_and(|listed| listed == ip)
        })
}

/// The host of a URL that `check_url` accepted, without brackets, user or port.
fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or("").to_owned(),
        None => authority.split(':').next().unwrap_or("").to_owned(),
    }
}

/// `https://` with a host; plain `http://` only to a loopback address (a feed is applied with
/// the vendor's authority: anyone on the path could otherwise write it); a literal internal
/// address, or `localhost`, only when `allowed` lists it.
fn check_feed_url(url: &str, allowed: &[String]) -> CenterResult<()> {
    herd_client::web::check_url(url)
        .map_err(|err| CenterError::bad_request(format!("the feed source: $.url: {err}")))?;
    let host = url_host(url);
    let named_local =
        host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost");
    let literal = match host.parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) if named_local => Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
        Err(_) => None,
    };
    if let Some(ip) = literal
        && !address_allowed(&host, ip, allowed)
    {
        return Err(CenterError::new(
            ErrorKind::DocumentInvalid,
            format!(
                "the feed source: $.url: {host:?} is {}; the center fetches feeds only from \
                 public addresses unless the configuration's feed_allowed_hosts lists the host",
                internal_address(ip).unwrap_or("not public")
            ),
        ));
    }
    if url.starts_with("http://") && !literal.is_some_and(|ip| ip.is_loopback()) {
        return Err(CenterError::new(
            ErrorKind::DocumentInvalid,
            format!(
                "the feed source: $.url: {url:?} is plain http to {host:?}; use https:// \
                 (plain http only on loopback)"
            ),
        ));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_named_and_public_ones_pass() {
        let why = |text: &str| internal_address(text.parse().unwrap());
        assert_eq!(why("127.0.0.2"), Some("a loopback address"));
        assert_eq!(why("172.16.0.1"), Some("a private address"));
        assert_eq!(
            why("64:ff9b::a00:1"),
            Some("a private address"),
            "NAT64 to 10.0.0.1"
        );
        assert_eq!(why("fec0::1"), Some("a link-local address"));
        assert_eq!(why("ff02::1"), Some("a multicast address"));
        assert_eq!(why("198.19.0.1"), Some("a reserved address"));
        assert_eq!(why("93.184.216.34"), None);
        assert_eq!(why("2606:4700::1111"), None);
        let listed = ["Feeds.Example".to_owned(), "[fd00::7]".to_owned()];
        let ip = |text: &str| text.parse().unwrap();
        assert!(address_allowed("feeds.example", ip("10.0.0.1"), &listed));
        assert!(address_allowed("other", ip("fd00::7"), &listed));
        assert!(!address_allowed("other", ip("fd00::8"), &listed));
        assert!(address_allowed("other", ip("8.8.8.8"), &[]));
        assert_eq!(url_host("https://user:pw@[fe80::1]:8443/x"), "fe80::1");
        assert_eq!(
            url_host("http://Feeds.Example:80/feed?x=1"),
            "Feeds.Example"
        );
        assert_eq!(url_host("https://10.0.0.1#frag"), "10.0.0.1");
    }
}
