//! What operators decide about vendors' assertions: who owns each threat (only the owner's
//! feed names and rates it), and which threats and vendors count in the catalog when the
//! center requires an operator's approval (`threat_approval`, `vendor_approval`). Every
//! change bumps the catalog revision, so every center process replans with it.

use std::collections::{HashMap, HashSet};

use herd_core::check_identifier;
use herd_proto::api::{ThreatEntry, ThreatList, VendorEntry, VendorList};
use herd_proto::catalog::CatalogDoc;
use herd_store::Approval;

use crate::error::{CenterError, CenterResult};
use crate::{Center, rfc3339};

/// Parses a `status` filter of a listing.
fn status_filter(status: Option<&str>) -> CenterResult<Option<Approval>> {
    status
        .map(|text| {
            Approval::parse(text).ok_or_else(|| {
                CenterError::bad_request(format!(
                    "status: {text:?} is not one of approved, pending, rejected"
                ))
            })
        })
        .transpose()
}

impl Center {
    /// Threats by id with their owner and status (only those with `status` when given), each
    /// described as its owner's current feed describes it.
    pub async fn threats(&self, status: Option<&str>) -> CenterResult<ThreatList> {
        let status = status_filter(status)?;
        let (_, feeds, registry) = self.store.catalog_inputs().await?;
        let wanted: Vec<_> = registry
            .threats
            .into_iter()
            .filter(|row| status.is_none_or(|s| row.status == s))
            .collect();
        // Only the owners' feeds are read, and each once.
        let mut owners: HashMap<&str, HashSet<&str>> = HashMap::new();
        for row in &wanted {
            owners
                .entry(row.vendor.as_str())
                .or_default()
                .insert(row.threat.as_str());
        }
        let mut described = HashMap::new();
        for feed in &feeds {
            let Some(threats) = owners.get(feed.vendor.as_str()) else {
                continue;
            };
            let doc: CatalogDoc = serde_json::from_str(&feed.doc).map_err(|err| {
                CenterError::internal(format!(
                    "the stored feed of vendor {} is corrupt: {err}",
                    feed.vendor
                ))
            })?;
            for threat in doc.threats {
                if threats.contains(threat.id.as_str()) {
                    described.insert((feed.vendor.clone(), threat.id.clone()), threat);
                }
            }
        }
        let threats = wanted
            .into_iter()
            .map(|row| {
                let own = described.remove(&(row.vendor.clone(), row.threat.clone()));
                ThreatEntry {
                    name: own.as_ref().map(|t| t.name.clone()),
                    danger: own.as_ref().map(|t| t.danger.clone()),
                    discovered: own.map(|t| t.discovered),
                    status: row.status.as_str().to_owned(),
                    declared_at: rfc3339(row.declared_at),
                    vendor: row.vendor,
                    id: row.threat,
                }
            })
            .collect();
        Ok(ThreatList { threats })
    }

    /// Approves or rejects a threat; the catalog is rebuilt at once.
    pub async fn set_threat_status(&self, id: &str, status: Approval) -> CenterResult<()> {
        self.store.threat_set_status(id, status).await?;
        tracing::info!(threat = %id, status = status.as_str(), "threat status set");
        self.catalog_changed().await
    }

    /// Gives a threat to another vendor, whose feed then names and rates it.
    pub async fn reassign_threat(&self, id: &str, vendor: &str) -> CenterResult<()> {
        check_identifier(vendor).map_err(|m| CenterError::bad_request(format!("$.vendor: {m}")))?;
        self.store.threat_reassign(id, vendor).await?;
        tracing::info!(threat = %id, %vendor, "threat reassigned");
        self.catalog_changed().await
    }

    /// Vendors that have published, by id, with their status (only `status` when given).
    pub async fn vendors(&self, status: Option<&str>) -> CenterResult<VendorList> {
        let status = status_filter(status)?;
        let (_, _, registry) = self.store.catalog_inputs().await?;
        let vendors = registry
            .vendors
            .into_iter()
            .filter(|row| status.is_none_or(|s| row.status == s))
            .map(|row| VendorEntry {
                id: row.vendor,
                status: row.status.as_str().to_owned(),
                first_published_at: rfc3339(row.first_published_at),
            })
            .collect();
        Ok(VendorList { vendors })
    }

    /// Approves or rejects a vendor: its feed counts, or not, from now on.
    pub async fn set_vendor_status(&self, id: &str, status: Approval) -> CenterResult<()> {
        self.store.vendor_set_status(id, status).await?;
        tracing::info!(vendor = %id, status = status.as_str(), "vendor status set");
        self.catalog_changed().await
    }

    /// Rebuilds this process's catalog after a registry change (the others follow the
    /// revision within a second).
    async fn catalog_changed(&self) -> CenterResult<()> {
        self.refresh_catalog().await.map_err(|err| {
            CenterError::internal(format!(
                "the change is stored but the catalog did not reload: {err:#}"
            ))
        })?;
        // Signed metadata follows before the answer, as after a publish.
        self.sign_if_due().await;
        Ok(())
    }
}
