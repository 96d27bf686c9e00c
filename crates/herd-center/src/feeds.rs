//! Publishing vendors' catalog feeds: each feed is validated alone, checked to describe only
//! its own vendor, validated again merged with every other vendor's current feed inside the
//! store's transaction, stored, and the catalog reloaded.

use herd_proto::api::PublishResponse;
use herd_proto::catalog::CatalogDoc;
use herd_store::StoredFeed;
use sha2::{Digest as _, Sha256};
use std::sync::atomic::Ordering::Relaxed;

use crate::auth::Caller;
use crate::catalog::check_vendor_scope;
use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::{Center, unix_now};

impl Center {
    /// Refuses a vendor's token publishing for another vendor, before its feed is even read.
    pub fn may_publish(&self, caller: &Caller, vendor: &str) -> CenterResult<()> {
        if let Err(message) = herd_core::check_identifier(vendor) {
            self.metrics.feeds_refused.fetch_add(1, Relaxed);
            return Err(CenterError::bad_request(format!(
                "the vendor id: {message}"
            )));
        }
        match caller {
            Caller::Vendor(own) if own != vendor => {
                self.metrics.feeds_refused.fetch_add(1, Relaxed);
                Err(CenterError::new(
                    ErrorKind::ForbiddenVendor,
                    format!("this token publishes for vendor {own:?}, not {vendor:?}"),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Counts a feed refused before it reached [`Center::publish_feed`] (unreadable, too large).
    pub fn feed_refused(&self) {
        self.metrics.feeds_refused.fetch_add(1, Relaxed);
    }

    /// Validates a vendor's feed alone and merged with every other vendor's, stores it in one
    /// transaction (idempotent when republished), and reloads the catalog. Refusals are
    /// counted.
    pub async fn publish_feed(&self, vendor: &str, bytes: &[u8]) -> CenterResult<PublishResponse> {
        let result = self.publish_feed_counted(vendor, bytes).await;
        if result.is_err() {
            self.feed_refused();
        }
        result
    }

    async fn publish_feed_counted(
        &self,
        vendor: &str,
        bytes: &[u8],
    ) -> CenterResult<PublishResponse> {
        let center = self;
        let text = std::str::from_utf8(bytes)
            .map_err(|_| CenterError::bad_request("the feed is not UTF-8 text"))?;
        let document = format!("feed of {vendor}");
        herd_proto::catalog::parse_catalog(&document, text)
            .map_err(|err| CenterError::invalid(ErrorKind::FeedInvalid, err.to_string(), &err))?;
        let doc: CatalogDoc = serde_json::from_str(text).map_err(|err| {
            CenterError::internal(format!("a validated feed failed to parse again: {err}"))
        })?;
        check_vendor_scope(&document, &doc, vendor).map_err(|err| {
            CenterError::invalid(ErrorKind::ForbiddenVendor, err.to_string(), &err)
        })?;
        let sha256 = hex::encode(Sha256::digest(bytes));
        let feed = StoredFeed {
            vendor: vendor.to_owned(),
            doc: text.to_owned(),
            sha256: sha256.clone(),
            published_at: unix_now(),
        };
        // Inside the store's transaction: the merge with every other vendor's current feed must
        // validate too (no product id taken by two vendors, no conflicting data). The catalog
        // it builds is the one this process plans with once the publish is committed.
        let built: std::sync::Mutex<Option<crate::catalog::CatalogSnapshot>> =
            std::sync::Mutex::new(None);
        let check = |others: &[StoredFeed]| -> Result<(), String> {
            let mut docs = Vec::with_capacity(others.len() + 1);
            for other in others {
                let other_doc: CatalogDoc = serde_json::from_str(&other.doc).map_err(|err| {
                    format!(
                        "the stored feed of vendor {} is corrupt: {err}",
                        other.vendor
                    )
                })?;
                docs.push(other_doc);
            }
            docs.push(doc.clone());
            let snapshot = crate::catalog::CatalogSnapshot::from_docs(0, docs).map_err(|err| {
                format!("the catalog merged with the other vendors' feeds: {err}")
            })?;
            *built.lock().expect("built catalog") = Some(snapshot);
            Ok(())
        };
        let outcome = center
            .store
            .publish_feed(feed, &check)
            .await?
            .map_err(|message| CenterError::new(ErrorKind::FeedInvalid, message))?;
        if outcome.changed {
            center.metrics.feeds_published.fetch_add(1, Relaxed);
            match built.into_inner().expect("built catalog") {
                Some(mut snapshot) => {
                    snapshot.revision = outcome.revision;
                    center.install_catalog(snapshot);
                }
                None => center.refresh_catalog().await.map_err(|err| {
                    CenterError::internal(format!(
                        "the feed is stored but the catalog did not reload: {err:#}"
                    ))
                })?,
            }
            tracing::info!(%vendor, revision = outcome.revision, "feed published");
        }
        let mut missing_packages = Vec::new();
        for package in doc.releases.iter().flat_map(|r| &r.packages) {
            if center.blobs.contains(&package.sha256).await.is_none()
                && !missing_packages.contains(&package.sha256)
            {
                missing_packages.push(package.sha256.clone());
            }
        }
        Ok(PublishResponse {
            vendor: vendor.to_owned(),
            revision: outcome.revision,
            changed: outcome.changed,
            sha256,
            missing_packages,
        })
    }
}
