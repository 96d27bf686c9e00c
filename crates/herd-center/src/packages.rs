//! Packages: uploads by vendors (or operators) into the blob store, recorded in the store with
//! who uploaded them, and opened for download. The bytes arrive chunk by chunk through a
//! [`PackageUpload`], so nothing holds a whole package in memory.
//!
//! What a vendor can make the center store is bounded: its packages count against
//! `vendor_storage_quota_bytes`, and blobs no current feed lists (and abandoned uploads) are
//! collected after `blob_grace_secs`, periodically and on an operator's request.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herd_proto::api::{BlobCollection, PackageInfo};
use herd_store::PackageRow;

use crate::auth::Caller;
use crate::blobs::{BlobError, Upload};
use crate::error::{CenterError, CenterResult};
use crate::{Center, rfc3339, unix_now};

/// A package upload in progress: write its bytes to [`PackageUpload::blob`], then
/// [`Center::finish_package_upload`]. Dropped, it leaves nothing behind.
#[derive(Debug)]
pub struct PackageUpload {
    pub blob: Upload,
    sha256: String,
    vendor: Option<String>,
    /// The bytes this upload holds of its vendor's quota until it is stored or dropped.
    _reserved: Option<Reservation>,
}

/// Bytes announced by uploads in progress, per vendor: counted against the quota of the
/// vendor's other uploads, so concurrent uploads cannot each use the same room.
#[derive(Debug, Default)]
pub(crate) struct Reservations(Arc<Mutex<HashMap<String, u64>>>);

#[derive(Debug)]
struct Reservation {
    reservations: Arc<Mutex<HashMap<String, u64>>>,
    vendor: String,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut reserved = self.reservations.lock().expect("reservations");
        if let Some(held) = reserved.get_mut(&self.vendor) {
            *held = held.saturating_sub(self.bytes);
            if *held == 0 {
                reserved.remove(&self.vendor);
            }
        }
    }
}

impl Center {
    /// Begins uploading package `sha256` for `caller`, who announced `declared` bytes (if it
    /// did). Refused at once when the digest is malformed, the announced size is over the
    /// limit (`max_package_bytes`), or a vendor's new package would not fit in what is left of
    /// its quota (`vendor_storage_quota_bytes`: its stored packages and its other uploads in
    /// progress); an upload that did not announce its size is cut where the quota ends.
    pub async fn begin_package_upload(
        &self,
        caller: &Caller,
        sha256: &str,
        declared: Option<u64>,
    ) -> CenterResult<PackageUpload> {
        let mut blob = self
            .blobs
            .begin(sha256, declared, self.config.max_package_bytes)
            .await?;
        let vendor = match caller {
            Caller::Vendor(vendor) => Some(vendor.clone()),
            Caller::Operator => None,
        };
        let mut reserved = None;
        if let Some(vendor) = vendor.as_ref().filter(|_| blob.is_new()) {
            let quota = self.config.vendor_storage_quota_bytes;
            let stored = self.store.package_bytes_of(vendor).await?;
            let mut reservations = self.package_reservations.0.lock().expect("reservations");
            let in_progress = reservations.get(vendor).copied().unwrap_or(0);
            let room = quota.saturating_sub(stored.saturating_add(in_progress));
            if let Err(err) = blob.limit_to_quota(quota, room) {
                drop(reservations);
                self.metrics.packages_over_quota.fetch_add(1, Relaxed);
                tracing::warn!(%vendor, stored, quota, "package upload over the vendor's quota");
                return Err(err.into());
            }
            let bytes = declared.unwrap_or(0);
            *reservations.entry(vendor.clone()).or_default() += bytes;
            reserved = Some(Reservation {
                reservations: self.package_reservations.0.clone(),
                vendor: vendor.clone(),
                bytes,
            });
        }
        Ok(PackageUpload {
            blob,
            sha256: sha256.to_owned(),
            vendor,
            _reserved: reserved,
        })
    }

    /// Counts an upload cut while its bytes arrived because it outgrew its vendor's quota.
    pub fn package_upload_failed(&self, err: &BlobError) {
        if matches!(err, BlobError::QuotaExceeded { .. }) {
            self.metrics.packages_over_quota.fetch_add(1, Relaxed);
        }
    }

    /// Verifies and commits an upload whose bytes were all written, and records the package.
    /// `created` in the answer is false when the package was already stored.
    pub async fn finish_package_upload(&self, upload: PackageUpload) -> CenterResult<PackageInfo> {
        let PackageUpload {
            blob,
            sha256,
            vendor,
            _reserved,
        } = upload;
        let outcome = blob.commit().await?;
        let row = PackageRow {
            sha256: sha256.clone(),
            size: outcome.size,
            vendor,
            uploaded_at: unix_now(),
        };
        let created = self.store.package_put(row.clone()).await?;
        let stored = if created {
            row
        } else {
            self.store.package_get(&sha256).await?.unwrap_or(row)
        };
        if created {
            self.metrics.packages_uploaded.fetch_add(1, Relaxed);
            self.metrics
                .package_bytes_uploaded
                .fetch_add(outcome.size, Relaxed);
            tracing::info!(%sha256, size = outcome.size, "package stored");
        }
        Ok(PackageInfo {
            sha256,
            size: stored.size,
            vendor: stored.vendor,
            uploaded_at: rfc3339(stored.uploaded_at),
            created,
        })
    }
}

/// The packages a feed's releases list: all a collection needs of a feed, read without
/// building the whole document.
#[derive(serde::Deserialize)]
struct FeedPackages {
    #[serde(default)]
    releases: Vec<ReleasePackages>,
}

#[derive(serde::Deserialize)]
struct ReleasePackages {
    #[serde(default)]
    packages: Vec<PackageDigest>,
}

#[derive(serde::Deserialize)]
struct PackageDigest {
    sha256: String,
}

/// How often the center collects its blob store, at most (and at least four times within a
/// grace period, so nothing outlives it by more than a quarter).
const COLLECT_EVERY: Duration = Duration::from_secs(3600);

impl Center {
    /// Deletes the blobs no current feed (nor the signed `herd` role: deltas) lists (whatever the vendor's approval: a pending
    /// vendor's packages are kept for when it is approved) and abandoned uploads, once older
    /// than `blob_grace_secs` at `now` (Unix seconds), and forgets their packages, which frees
    /// their vendors' quota. A blob being uploaded in this process is never deleted, and a
    /// feed is not published while a collection runs, so a feed never lists a collected blob.
    pub async fn collect_blobs(&self, now: i64) -> CenterResult<BlobCollection> {
        let _no_publish = self.blob_collection.lock().await;
        let (_, feeds, _) = self.store.catalog_inputs().await?;
        let mut referenced = HashSet::new();
        for feed in &feeds {
            let packages: FeedPackages = serde_json::from_str(&feed.doc).map_err(|err| {
                CenterError::internal(format!(
                    "the stored feed of vendor {} is corrupt: {err}",
                    feed.vendor
                ))
            })?;
            for release in packages.releases {
                referenced.extend(release.packages.into_iter().map(|p| p.sha256));
            }
        }
        // The definition deltas the signed `herd` role lists are blobs no feed names; a
        // terminal may fetch them until the role changes (a delta made but not signed yet is
        // younger than the grace period).
        if let Some(herd) = self
            .store
            .tuf_document(herd_proto::distribution::HERD_ROLE, None)
            .await?
        {
            referenced.extend(crate::deltas::herd_role_blobs(&herd.doc));
        }
        let uploaded_at: HashMap<String, i64> = self
            .store
            .packages()
            .await?
            .into_iter()
            .map(|row| (row.sha256, row.uploaded_at))
            .collect();
        let collected = self
            .blobs
            .collect(
                now,
                self.config.blob_grace,
                move |digest| referenced.contains(digest),
                move |digest| uploaded_at.get(digest).copied(),
            )
            .await?;
        for (digest, _) in &collected.blobs {
            self.store.package_delete(digest).await?;
        }
        let bytes_collected: u64 =
            collected.blobs.iter().map(|(_, size)| size).sum::<u64>() + collected.partial_bytes;
        let count = collected.blobs.len() as u64 + collected.partial_uploads;
        self.metrics.blobs_collected.fetch_add(count, Relaxed);
        self.metrics
            .blob_bytes_collected
            .fetch_add(bytes_collected, Relaxed);
        self.metrics
            .blob_bytes_stored
            .store(collected.bytes_kept, Relaxed);
        if count > 0 {
            tracing::info!(
                blobs = collected.blobs.len(),
                partial_uploads = collected.partial_uploads,
                bytes = bytes_collected,
                "blob store collected"
            );
        }
        Ok(BlobCollection {
            blobs_collected: collected.blobs.len() as u64,
            bytes_collected,
            partial_uploads_removed: collected.partial_uploads,
            bytes_stored: collected.bytes_kept,
        })
    }

    /// Collects the blob store now and then until shutdown.
    pub(crate) async fn collect_blobs_periodically(
        self: Arc<Center>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let every = COLLECT_EVERY.min(self.config.blob_grace / 4);
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if let Err(err) = self.collect_blobs(unix_now()).await {
                tracing::error!(%err, "cannot collect the blob store");
            }
        }
    }
}
