//! Packages: uploads by vendors (or operators) into the blob store, recorded in the store with
//! who uploaded them, and opened for download. The bytes arrive chunk by chunk through a
//! [`PackageUpload`], so nothing holds a whole package in memory.

use std::sync::atomic::Ordering::Relaxed;

use herd_proto::api::PackageInfo;
use herd_store::PackageRow;

use crate::auth::Caller;
use crate::blobs::Upload;
use crate::error::CenterResult;
use crate::{Center, rfc3339, unix_now};

/// A package upload in progress: write its bytes to [`PackageUpload::blob`], then
/// [`Center::finish_package_upload`]. Dropped, it leaves nothing behind.
#[derive(Debug)]
pub struct PackageUpload {
    pub blob: Upload,
    sha256: String,
    vendor: Option<String>,
}

impl Center {
    /// Begins uploading package `sha256` for `caller`, who announced `declared` bytes (if it
    /// did). Refused at once when the digest is malformed or the announced size is over the
    /// limit (`max_package_bytes`).
    pub async fn begin_package_upload(
        &self,
        caller: &Caller,
        sha256: &str,
        declared: Option<u64>,
    ) -> CenterResult<PackageUpload> {
        let blob = self
            .blobs
            .begin(sha256, declared, self.config.max_package_bytes)
            .await?;
        let vendor = match caller {
            Caller::Vendor(vendor) => Some(vendor.clone()),
            Caller::Operator => None,
        };
        Ok(PackageUpload {
            blob,
            sha256: sha256.to_owned(),
            vendor,
        })
    }

    /// Verifies and commits an upload whose bytes were all written, and records the package.
    /// `created` in the answer is false when the package was already stored.
    pub async fn finish_package_upload(&self, upload: PackageUpload) -> CenterResult<PackageInfo> {
        let PackageUpload {
            blob,
            sha256,
            vendor,
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
