//! Publishing vendors' catalog feeds: each feed is validated alone, checked to describe only
//! its own vendor, validated again merged with every other vendor's current feed inside the
//! store's transaction, stored, and the catalog reloaded.
//!
//! A feed's threats are scoped: the first vendor to declare a threat owns it (the store
//! records it), and another vendor's feed may state coverage for it but not rename or rate
//! it; under `threat_approval`/`vendor_approval = "operator"` what a vendor introduces waits
//! for an operator. Neither refuses the feed (honest feeds list competitors' threats they
//! cover, often with their own wording): the publish answer says what does not count.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;

use herd_proto::api::{ApiProblem, PublishResponse};
use herd_proto::catalog::{CatalogDoc, ThreatDoc};
use herd_proto::merge::Scope;
use herd_store::{Approval, FeedClaims, Registry, StoredFeed, ThreatOwnerRow};
use sha2::{Digest as _, Sha256};

use crate::auth::Caller;
use crate::catalog::{CatalogSnapshot, check_vendor_scope, scope_of};
use crate::config::ApprovalMode;
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
    /// counted. What the feed says about threats other vendors own, and what awaits an
    /// operator's approval, is answered as warnings: the feed is stored, those parts do not
    /// count.
    pub async fn publish_feed(
        &self,
        caller: &Caller,
        vendor: &str,
        bytes: &[u8],
    ) -> CenterResult<PublishResponse> {
        let _no_collection = self.blob_collection.lock().await;
        let result = self.publish_feed_counted(caller, vendor, bytes).await;
        if result.is_err() {
            self.feed_refused();
        }
        result
    }

    async fn publish_feed_counted(
        &self,
        caller: &Caller,
        vendor: &str,
        bytes: &[u8],
    ) -> CenterResult<PublishResponse> {
        let center = self;
        self.check_vendor_signs(vendor).await?;
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
        // An operator publishing for a vendor is the authority approvals wait for.
        let needs_operator = |mode: ApprovalMode| match (mode, caller) {
            (ApprovalMode::Operator, Caller::Vendor(_)) => Approval::Pending,
            _ => Approval::Approved,
        };
        let claims = FeedClaims {
            threats: doc.threats.iter().map(|t| t.id.clone()).collect(),
            new_threat_status: needs_operator(center.config.threat_approval),
            new_vendor_status: needs_operator(center.config.vendor_approval),
        };
        // Inside the store's transaction: the merge with every other vendor's current feed must
        // validate too (no product id taken by two vendors, no conflicting data). The catalog
        // it builds is the one this process plans with once the publish is committed.
        let built: std::sync::Mutex<Option<(CatalogSnapshot, Vec<ApiProblem>)>> =
            std::sync::Mutex::new(None);
        let check = |others: &[StoredFeed], registry: &Registry| -> Result<(), String> {
            let mut docs = Vec::with_capacity(others.len() + 1);
            for other in others {
                let other_doc: CatalogDoc = serde_json::from_str(&other.doc).map_err(|err| {
                    format!(
                        "the stored feed of vendor {} is corrupt: {err}",
                        other.vendor
                    )
                })?;
                docs.push((other.vendor.clone(), other_doc));
            }
            let warnings = scope_warnings(vendor, &doc, &docs, registry);
            docs.push((vendor.to_owned(), doc.clone()));
            let scope = scope_of(registry);
            let merge_error =
                |err| format!("the catalog merged with the other vendors' feeds: {err}");
            // What waits for an operator must merge too, or approving it later could leave a
            // catalog that does not validate.
            if !scope.withheld_vendors.is_empty() || !scope.withheld_threats.is_empty() {
                let everything = Scope {
                    owners: scope.owners.clone(),
                    ..Scope::default()
                };
                CatalogSnapshot::from_docs(0, docs.clone(), &everything).map_err(merge_error)?;
            }
            let snapshot = CatalogSnapshot::from_docs(0, docs, &scope).map_err(merge_error)?;
            *built.lock().expect("built catalog") = Some((snapshot, warnings));
            Ok(())
        };
        let outcome = center
            .store
            .publish_feed(feed, &claims, &check)
            .await?
            .map_err(|message| CenterError::new(ErrorKind::FeedInvalid, message))?;
        let mut warnings = Vec::new();
        if outcome.changed {
            center.metrics.feeds_published.fetch_add(1, Relaxed);
            let before = center.catalog();
            match built.into_inner().expect("built catalog") {
                Some((mut snapshot, scope_warnings)) => {
                    snapshot.revision = outcome.revision;
                    center.install_catalog(snapshot);
                    warnings = scope_warnings;
                }
                None => center.refresh_catalog().await.map_err(|err| {
                    CenterError::internal(format!(
                        "the feed is stored but the catalog did not reload: {err:#}"
                    ))
                })?,
            }
            tracing::info!(%vendor, revision = outcome.revision, "feed published");
            let after = center.catalog();
            for alert in crate::alerts::new_threats(&before.catalog, &after.catalog.threats, vendor)
            {
                center.alerts.raise(alert);
            }
            // The publish answers once signed metadata lists what the new catalog plans, so
            // a terminal planned from it finds its targets (a sign round that fails is logged
            // and retried by the follower within a second).
            center.sign_if_due().await;
        }
        // One lookup per distinct package (a feed may list one package in many places), all in
        // one blocking task.
        let listed = doc.releases.iter().flat_map(|r| &r.packages);
        let missing_packages = center
            .blobs
            .missing(listed.map(|p| p.sha256.clone()).collect())
            .await;
        Ok(PublishResponse {
            vendor: vendor.to_owned(),
            revision: outcome.revision,
            changed: outcome.changed,
            sha256,
            missing_packages,
            warnings,
        })
    }
}

/// At most this many warnings about single threats are listed; the rest are counted.
const LISTED_WARNINGS: usize = 50;

/// What in `vendor`'s feed does not count, and why: descriptions of threats other vendors own
/// that differ from the owner's, threats and the vendor itself awaiting an operator. Linear:
/// the owners' descriptions are indexed once.
fn scope_warnings(
    vendor: &str,
    doc: &CatalogDoc,
    others: &[(String, CatalogDoc)],
    registry: &Registry,
) -> Vec<ApiProblem> {
    let owners: HashMap<&str, &ThreatOwnerRow> = registry
        .threats
        .iter()
        .map(|row| (row.threat.as_str(), row))
        .collect();
    let mut described_by_owner: HashMap<&str, &ThreatDoc> = HashMap::new();
    for (other, other_doc) in others {
        for threat in &other_doc.threats {
            if owners
                .get(threat.id.as_str())
                .is_some_and(|row| row.vendor == *other)
            {
                described_by_owner.insert(threat.id.as_str(), threat);
            }
        }
    }
    let mut warnings = Vec::new();
    let mut unlisted = 0usize;
    let mut awaiting = Vec::new();
    let mut rejected = Vec::new();
    for (i, threat) in doc.threats.iter().enumerate() {
        let Some(row) = owners.get(threat.id.as_str()) else {
            continue;
        };
        match row.status {
            Approval::Approved => {}
            Approval::Pending => awaiting.push(threat.id.as_str()),
            Approval::Rejected => rejected.push(threat.id.as_str()),
        }
        if row.vendor == vendor {
            continue;
        }
        let differs = described_by_owner
            .get(threat.id.as_str())
            .is_some_and(|own| {
                (&own.name, &own.danger, &own.discovered)
                    != (&threat.name, &threat.danger, &threat.discovered)
            });
        if differs {
            if warnings.len() < LISTED_WARNINGS {
                warnings.push(ApiProblem {
                    path: format!("$.threats[{i}]"),
                    message: format!(
                        "threat {:?} belongs to vendor {:?}: its name, danger and discovery date come from that vendor's feed, not this one (coverage statements for it still count)",
                        threat.id, row.vendor
                    ),
                });
            } else {
                unlisted += 1;
            }
        }
    }
    if unlisted > 0 {
        warnings.push(ApiProblem {
            path: "$.threats".to_owned(),
            message: format!(
                "{unlisted} more threats belong to other vendors and are described differently here"
            ),
        });
    }
    for (ids, what) in [
        (
            &awaiting,
            "await an operator's approval: they are not planned against until approved",
        ),
        (
            &rejected,
            "were rejected by an operator: they are not planned against",
        ),
    ] {
        if !ids.is_empty() {
            let shown: Vec<&str> = ids.iter().take(10).copied().collect();
            warnings.push(ApiProblem {
                path: "$.threats".to_owned(),
                message: format!(
                    "{} threats {what} ({}{})",
                    ids.len(),
                    shown.join(", "),
                    if ids.len() > shown.len() { ", …" } else { "" }
                ),
            });
        }
    }
    if let Some(row) = registry.vendors.iter().find(|row| row.vendor == vendor) {
        let why = match row.status {
            Approval::Approved => None,
            Approval::Pending => Some("awaits an operator's approval"),
            Approval::Rejected => Some("was rejected by an operator"),
        };
        if let Some(why) = why {
            warnings.push(ApiProblem {
                path: "$.vendors".to_owned(),
                message: format!(
                    "vendor {vendor:?} {why}: its feed is stored but does not count in the catalog"
                ),
            });
        }
    }
    warnings
}
