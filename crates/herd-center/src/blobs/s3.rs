//! The blob store's S3 backend: blob `<sha256>` is object `<prefix><sha256>` of one bucket,
//! reached through `herd-s3`. Every request's failure becomes [`BlobError::Remote`], naming
//! the request and the endpoint.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::{BlobError, BlobFile, UPLOAD_SEQ, check_digest};

/// A bucket and the prefix of the blobs' keys in it.
#[derive(Debug, Clone)]
pub(super) struct Remote {
    bucket: herd_s3::Bucket,
    prefix: String,
}

/// A blob found by listing the bucket.
#[derive(Debug)]
pub(super) struct StoredObject {
    pub sha256: String,
    pub size: u64,
    /// Unix seconds.
    pub last_modified: i64,
}

impl Remote {
    pub fn new(bucket: herd_s3::Bucket, prefix: &str) -> Remote {
        Remote {
            bucket,
            prefix: prefix.to_owned(),
        }
    }

    /// `s3://bucket/prefix`, for messages.
    pub fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket.name(), self.prefix)
    }

    fn key(&self, sha256: &str) -> String {
        format!("{}{sha256}", self.prefix)
    }

    /// The bucket exists and the credentials may use it.
    pub async fn check(&self) -> Result<(), BlobError> {
        Ok(self.bucket.check().await?)
    }

    pub async fn size_of(&self, sha256: &str) -> Result<Option<u64>, BlobError> {
        Ok(self.bucket.head(&self.key(sha256)).await?)
    }

    /// `sha256`'s bytes, or those of `range` (inclusive), streamed.
    pub async fn get(
        &self,
        sha256: &str,
        range: Option<(u64, u64)>,
    ) -> Result<herd_s3::ObjectStream, BlobError> {
        self.bucket
            .get(&self.key(sha256), range)
            .await?
            .ok_or(BlobError::NotFound)
    }

    /// Stores the verified upload `file` (`size` bytes of `sha256`).
    pub async fn put(
        &self,
        sha256: &str,
        file: tokio::fs::File,
        size: u64,
    ) -> Result<(), BlobError> {
        Ok(self
            .bucket
            .put_file(&self.key(sha256), file, size, sha256)
            .await?)
    }

    pub async fn delete(&self, sha256: &str) -> Result<(), BlobError> {
        Ok(self.bucket.delete(&self.key(sha256)).await?)
    }

    /// Every blob under the prefix (keys whose rest is not a digest are someone else's).
    pub async fn stored(&self) -> Result<Vec<StoredObject>, BlobError> {
        let mut stored = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.bucket.list(&self.prefix, after.as_deref()).await?;
            for object in page.objects {
                let Some(digest) = object.key.strip_prefix(&self.prefix) else {
                    continue;
                };
                if check_digest(digest).is_ok() {
                    stored.push(StoredObject {
                        sha256: digest.to_owned(),
                        size: object.size,
                        last_modified: object.last_modified,
                    });
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(stored),
            }
        }
    }

    /// Downloads `sha256` into a spool file under `spool` that has no name by the time it is
    /// returned (so nothing is left behind, whatever happens to the handle).
    pub async fn download(&self, sha256: &str, spool: &Path) -> Result<BlobFile, BlobError> {
        let url = PathBuf::from(format!("{}{sha256}", self.location()));
        let mut object = self.get(sha256, None).await?;
        let path = spool.join(format!(
            "{sha256}.{}.{}.get",
            std::process::id(),
            UPLOAD_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let io_error = |source| BlobError::Io {
            path: path.clone(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_error)?;
        std::fs::remove_file(&path).map_err(io_error)?;
        let mut file = tokio::io::BufWriter::new(tokio::fs::File::from_std(file));
        while let Some(chunk) = object.chunk().await {
            let chunk = chunk.map_err(|source| BlobError::Io {
                path: url.clone(),
                source,
            })?;
            file.write_all(&chunk).await.map_err(io_error)?;
        }
        file.flush().await.map_err(io_error)?;
        let mut file = file.into_inner();
        file.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(io_error)?;
        Ok(BlobFile {
            file,
            size: object.len,
            path: url,
        })
    }
}
