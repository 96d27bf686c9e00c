//! Publishing vendors' catalog feeds: each feed is validated alone, checked to describe only
//! its own vendor, validated again merged with every other vendor's current feed inside the
//! store's transaction, stored, and the catalog reloaded.

use axum::http::StatusCode;
use herd_proto::api::{PublishResponse, codes};
use herd_proto::catalog::CatalogDoc;
use herd_store::StoredFeed;
use sha2::{Digest as _, Sha256};
use std::sync::atomic::Ordering::Relaxed;

use herd_proto::merge::merge;

use super::catalog::check_vendor_scope;
use super::error::{ApiErr, ApiResult};
use super::{Center, unix_now};

impl Center {
    /// Validates a vendor's feed alone and merged with every other vendor's, stores it in one
    /// transaction (idempotent when republished), and reloads the catalog.
    pub async fn publish_feed(&self, vendor: &str, bytes: &[u8]) -> ApiResult<PublishResponse> {
        let center = self;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| ApiErr::bad_request("the feed is not UTF-8 text"))?;
        let document = format!("feed of {vendor}");
        herd_proto::catalog::parse_catalog(&document, text)
            .map_err(|err| ApiErr::invalid(codes::FEED_INVALID, err.to_string(), &err))?;
        let doc: CatalogDoc = serde_json::from_str(text).map_err(|err| {
            ApiErr::internal(format!("a validated feed failed to parse again: {err}"))
        })?;
        check_vendor_scope(&document, &doc, vendor).map_err(|err| ApiErr {
            status: StatusCode::FORBIDDEN,
            code: codes::FORBIDDEN_VENDOR,
            message: err.to_string(),
            problems: err.problems.iter().map(Into::into).collect(),
        })?;
        let sha256 = hex::encode(Sha256::digest(bytes));
        let feed = StoredFeed {
            vendor: vendor.to_owned(),
            doc: text.to_owned(),
            sha256: sha256.clone(),
            published_at: unix_now(),
        };
        // Inside the store's transaction: the merge with every other vendor's current feed must
        // validate too (no product id taken by two vendors, no conflicting data).
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
            merge(docs.iter())
                .validate("the catalog merged with the other vendors' feeds")
                .map(|_| ())
                .map_err(|err| err.to_string())
        };
        let outcome = center
            .store
            .publish_feed(feed, &check)
            .await?
            .map_err(|message| {
                ApiErr::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    codes::FEED_INVALID,
                    message,
                )
            })?;
        if outcome.changed {
            center.metrics.feeds_published.fetch_add(1, Relaxed);
            center.refresh_catalog().await.map_err(|err| {
                ApiErr::internal(format!(
                    "the feed is stored but the catalog did not reload: {err:#}"
                ))
            })?;
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
