//! The package blob store: content-addressed by SHA-256, uploads written to disk while hashed,
//! blobs opened for reading. The HTTP side (streaming request bodies in, `Range` and ETags
//! out) is `api/blobs.rs`; this module knows only files, chunks and digests.
//!
//! Layout under the root: `sha256/<first two hex digits>/<64 hex digits>` holds verified blobs;
//! `tmp/` holds uploads in progress. An upload is written to a fresh temporary file, hashed and
//! counted on the way, fsync'ed, and only then linked into place (and the directory fsync'ed),
//! so a blob under `sha256/` is always complete and matches its name, even after a crash.
//! A refused, failed or abandoned upload (the [`Upload`] dropped) removes its temporary file;
//! temporary files left by a crashed process are swept when the store is opened.
//!
//! Nothing here holds a whole blob in memory: packages can be far larger than RAM allows.
//! Digests are checked to be exactly 64 lowercase hexadecimal digits before they are ever
//! joined to a path, which is what makes path traversal impossible.
//!
//! With `blob_store = "s3"` the blobs live in an S3-compatible bucket instead (`s3.rs`), under
//! `<s3_prefix><sha256>`, so several center processes share them without a shared disk; the
//! root directory then only spools: an upload is written and verified there exactly as above,
//! then sent with one `PUT` (which the object store checks against the same SHA-256 and makes
//! visible whole or not at all), and reads that need a file (hashing a package's content,
//! making a delta) download into an unnamed spool file. Downloads to clients stream from a
//! ranged `GET` ([`BlobStore::open_for_serving`]).

mod s3;

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncSeekExt, AsyncWriteExt, ReadBuf};

use s3::Remote;

/// Upload bytes buffered before a write to the temporary file.
const WRITE_BUFFER: usize = 256 * 1024;
/// Bytes read from a blob file per chunk served.
const READ_CHUNK: usize = 64 * 1024;
/// Temporary files untouched for this long belong to no live upload (every write touches them).
pub(crate) const STALE_UPLOAD: Duration = Duration::from_secs(3600);

/// Why a blob could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("{digest:?} is not a SHA-256 digest (64 lowercase hexadecimal digits)")]
    BadDigest { digest: String },
    #[error("the upload's SHA-256 is {actual}, not {expected}")]
    DigestMismatch { expected: String, actual: String },
    /// `actual` is what was received before reading stopped: a body longer than announced is
    /// cut off at the chunk that crosses `expected`.
    #[error("the upload was announced as {expected} bytes but {actual} were received")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("the upload exceeds the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// The uploader's stored blobs and this upload would exceed its storage quota.
    #[error("the upload would exceed the storage quota of {quota} bytes ({room} bytes are left)")]
    QuotaExceeded { quota: u64, room: u64 },
    #[error("no such blob")]
    NotFound,
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Whatever delivers the upload's bytes (a request body) failed before its end.
    #[error("reading the upload failed: {0}")]
    Source(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The object store failed or refused a request (the error names the request and the
    /// endpoint).
    #[error("the object store: {0}")]
    Remote(#[from] herd_s3::S3Error),
}

/// What a committed [`Upload`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOutcome {
    pub size: u64,
    /// False when the blob was already stored (the upload was still verified, then discarded).
    pub created: bool,
}

/// The blob store. Cloning is cheap and clones share the directory.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dirs: Arc<Dirs>,
    /// The bucket blobs live in, when not in `dirs.blobs`.
    remote: Option<Remote>,
}

#[derive(Debug)]
struct Dirs {
    blobs: PathBuf,
    tmp: PathBuf,
    /// Digests with an upload in progress in this process, and how many: never collected.
    live: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

/// What [`BlobStore::collect`] removed and kept.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Collected {
    /// Blobs removed, with their sizes.
    pub blobs: Vec<(String, u64)>,
    /// Temporary files of abandoned uploads removed, and their bytes.
    pub partial_uploads: u64,
    pub partial_bytes: u64,
    /// Bytes of the blobs still stored.
    pub bytes_kept: u64,
}

/// Distinguishes temporary files of concurrent uploads within one process.
static UPLOAD_SEQ: AtomicU64 = AtomicU64::new(0);

impl BlobStore {
    /// Opens (creating if needed) the store under `root`, and removes temporary files that
    /// crashed uploads left behind.
    pub fn open(root: &Path) -> Result<BlobStore, BlobError> {
        let dirs = Dirs {
            blobs: root.join("sha256"),
            tmp: root.join("tmp"),
            live: Default::default(),
        };
        for dir in [&dirs.blobs, &dirs.tmp] {
            std::fs::create_dir_all(dir).map_err(|source| BlobError::Io {
                path: dir.clone(),
                source,
            })?;
        }
        sweep_stale_uploads(&dirs.tmp)?;
        Ok(BlobStore {
            dirs: Arc::new(dirs),
            remote: None,
        })
    }

    /// Opens a store whose blobs live in `bucket` under `prefix`, spooling under `spool`, and
    /// checks that the bucket answers (a start that cannot reach it fails, naming it).
    pub async fn open_s3(
        spool: &Path,
        bucket: herd_s3::Bucket,
        prefix: &str,
    ) -> Result<BlobStore, BlobError> {
        let tmp = spool.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|source| BlobError::Io {
            path: tmp.clone(),
            source,
        })?;
        sweep_stale_uploads(&tmp)?;
        let remote = Remote::new(bucket, prefix);
        remote.check().await?;
        Ok(BlobStore {
            dirs: Arc::new(Dirs {
                blobs: spool.join("sha256"),
                tmp,
                live: Default::default(),
            }),
            remote: Some(remote),
        })
    }

    /// Where blobs are, for messages: a directory or `s3://bucket/prefix`.
    pub fn location(&self) -> String {
        match &self.remote {
            None => self.dirs.blobs.display().to_string(),
            Some(remote) => remote.location(),
        }
    }

    /// Begins storing blob `sha256`: write its bytes with [`Upload::write`], then
    /// [`Upload::commit`].
    ///
    /// Refused, with nothing stored and the temporary file removed: a blob whose digest is not
    /// `sha256`, whose length is not `expected_size` (when given), or that is longer than
    /// `max_size` (writing stops at the first chunk past it). An already stored blob is
    /// verified the same way but not written again.
    pub async fn begin(
        &self,
        sha256: &str,
        expected_size: Option<u64>,
        max_size: u64,
    ) -> Result<Upload, BlobError> {
        check_digest(sha256)?;
        if expected_size.is_some_and(|expected| expected > max_size) {
            return Err(BlobError::TooLarge { limit: max_size });
        }
        let (destination, stored) = match &self.remote {
            None => {
                let path = self.path_of(sha256);
                let stored = is_file(&path).await;
                (Destination::File(path), stored)
            }
            Some(remote) => {
                let stored = remote.size_of(sha256).await?.is_some();
                (Destination::Object(remote.clone()), stored)
            }
        };
        // A blob already present is only hashed: no temporary file, no disk writes.
        let sink = match stored {
            true => None,
            false => Some(self.start_sink(sha256).await?),
        };
        Ok(Upload {
            sha256: sha256.to_owned(),
            destination,
            expected_size,
            max_size,
            quota: None,
            size: 0,
            hasher: Sha256::new(),
            sink,
            _live: LiveUpload::register(&self.dirs, sha256),
        })
    }

    /// Removes the blobs `keep` refuses and the temporary files of abandoned uploads, each
    /// only once it is older than `grace` at `now` (Unix seconds): a blob's age counts from
    /// `uploaded_at(digest)` when known, else from its file's modification time (an object's
    /// `LastModified`). Blobs and temporary files of uploads in progress in this process are
    /// never removed.
    pub async fn collect(
        &self,
        now: i64,
        grace: Duration,
        keep: impl Fn(&str) -> bool + Send + 'static,
        uploaded_at: impl Fn(&str) -> Option<i64> + Send + 'static,
    ) -> Result<Collected, BlobError> {
        let grace = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
        let old_enough = move |since: i64| now.saturating_sub(since) >= grace;
        let live = self.dirs.live.lock().expect("live uploads").clone();
        let mut collected = Collected::default();
        match &self.remote {
            None => {
                let dirs = self.dirs.clone();
                let live = live.clone();
                collected = tokio::task::spawn_blocking(move || {
                    collect_blob_files(&dirs, &live, &keep, &uploaded_at, old_enough)
                })
                .await
                .map_err(|err| BlobError::Source(Box::new(err)))??;
            }
            Some(remote) => {
                for object in remote.stored().await? {
                    let since = uploaded_at(&object.sha256).unwrap_or(object.last_modified);
                    if keep(&object.sha256)
                        || live.contains_key(&object.sha256)
                        || !old_enough(since)
                    {
                        collected.bytes_kept += object.size;
                        continue;
                    }
                    remote.delete(&object.sha256).await?;
                    collected.blobs.push((object.sha256, object.size));
                }
            }
        }
        let dirs = self.dirs.clone();
        let (count, bytes) = tokio::task::spawn_blocking(move || {
            collect_partial_uploads(&dirs.tmp, &live, old_enough)
        })
        .await
        .map_err(|err| BlobError::Source(Box::new(err)))??;
        collected.partial_uploads = count;
        collected.partial_bytes = bytes;
        Ok(collected)
    }

    /// The size of the stored blob `sha256`, if there is one (and `sha256` is a digest).
    /// An object store that cannot be asked counts as not having it.
    pub async fn contains(&self, sha256: &str) -> Option<u64> {
        check_digest(sha256).ok()?;
        if let Some(remote) = &self.remote {
            return remote.size_of(sha256).await.ok().flatten();
        }
        let meta = tokio::fs::metadata(self.path_of(sha256)).await.ok()?;
        meta.is_file().then_some(meta.len())
    }

    /// The digests of `wanted` that are not stored (in their first order, each once), looked
    /// up in one blocking task (a feed lists thousands of packages, and a task per lookup
    /// costs more than the lookup), or in one listing of the bucket (pages of 1,000 objects
    /// rather than a request per package). When the bucket cannot be listed, every digest is
    /// reported missing: the answer is advice to the publisher, and the error is logged.
    pub async fn missing(&self, wanted: Vec<String>) -> Vec<String> {
        let mut seen = HashSet::new();
        let wanted: Vec<String> = wanted
            .into_iter()
            .filter(|digest| seen.insert(digest.clone()))
            .collect();
        if let Some(remote) = &self.remote {
            let stored: HashSet<String> = match remote.stored().await {
                Ok(objects) => objects.into_iter().map(|object| object.sha256).collect(),
                Err(err) => {
                    tracing::warn!(%err, "cannot list the blobs stored in the object store");
                    HashSet::new()
                }
            };
            return wanted
                .into_iter()
                .filter(|digest| !stored.contains(digest))
                .collect();
        }
        let dirs = self.dirs.clone();
        let lookup = move || {
            wanted
                .into_iter()
                .filter(|digest| {
                    check_digest(digest).is_err()
                        || !std::fs::metadata(dirs.blobs.join(&digest[..2]).join(digest))
                            .is_ok_and(|meta| meta.is_file())
                })
                .collect()
        };
        tokio::task::spawn_blocking(lookup)
            .await
            .expect("the lookup does not panic")
    }

    /// Opens blob `sha256` for reading as a file (from an object store: downloaded into an
    /// unnamed spool file first, which disappears with the handle).
    pub async fn read(&self, sha256: &str) -> Result<BlobFile, BlobError> {
        check_digest(sha256)?;
        if let Some(remote) = &self.remote {
            return remote.download(sha256, &self.dirs.tmp).await;
        }
        let path = self.path_of(sha256);
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(BlobError::NotFound),
            Err(source) => return Err(BlobError::Io { path, source }),
        };
        let size = file
            .metadata()
            .await
            .map_err(|source| BlobError::Io {
                path: path.clone(),
                source,
            })?
            .len();
        Ok(BlobFile { file, size, path })
    }

    /// Blob `sha256` about to be served: its size is known, its bytes not read yet (a
    /// `HEAD` of the object on S3; the file opened on disk).
    pub async fn open_for_serving(&self, sha256: &str) -> Result<ServedBlob, BlobError> {
        check_digest(sha256)?;
        match &self.remote {
            None => {
                let blob = self.read(sha256).await?;
                Ok(ServedBlob {
                    size: blob.size,
                    source: ServedSource::File(blob),
                })
            }
            Some(remote) => {
                let size = remote.size_of(sha256).await?.ok_or(BlobError::NotFound)?;
                Ok(ServedBlob {
                    size,
                    source: ServedSource::Object(remote.clone(), sha256.to_owned()),
                })
            }
        }
    }

    fn path_of(&self, sha256: &str) -> PathBuf {
        self.dirs.blobs.join(&sha256[..2]).join(sha256)
    }

    async fn start_sink(&self, sha256: &str) -> Result<Sink, BlobError> {
        let name = format!(
            "{sha256}.{}.{}.part",
            std::process::id(),
            UPLOAD_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let path = self.dirs.tmp.join(name);
        // Created synchronously, with its guard at once: an upload abandoned while an
        // asynchronous open was still running on a blocking thread would leave the file behind
        // (the guard would not exist yet when the request's future was dropped).
        // Readable too: an upload to an object store is sent from this file once verified.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| BlobError::Io {
                path: path.clone(),
                source,
            })?;
        let temp = TempFile { path: Some(path) };
        Ok(Sink {
            file: tokio::io::BufWriter::with_capacity(
                WRITE_BUFFER,
                tokio::fs::File::from_std(file),
            ),
            temp,
        })
    }
}

/// A stored blob opened for reading.
#[derive(Debug)]
pub struct BlobFile {
    pub file: tokio::fs::File,
    pub size: u64,
    path: PathBuf,
}

/// A stored blob about to be served (see [`BlobStore::open_for_serving`]).
#[derive(Debug)]
pub struct ServedBlob {
    pub size: u64,
    source: ServedSource,
}

#[derive(Debug)]
enum ServedSource {
    File(BlobFile),
    /// The bucket and the digest: nothing is read before [`ServedBlob::range`].
    Object(Remote, String),
}

impl ServedBlob {
    /// A blob file opened elsewhere (the site's mirror cache) of `size` bytes, positioned at
    /// its start.
    pub fn from_file(file: tokio::fs::File, size: u64) -> ServedBlob {
        ServedBlob {
            size,
            source: ServedSource::File(BlobFile {
                file,
                size,
                path: PathBuf::from("(a cached blob)"),
            }),
        }
    }

    /// A reader of `len` bytes from `start` (within the blob: the caller checked the range).
    pub async fn range(self, start: u64, len: u64) -> Result<BlobReader, BlobError> {
        let source = match self.source {
            _ if len == 0 => ReaderSource::Done,
            ServedSource::File(mut blob) => {
                if start > 0 {
                    blob.seek(start).await?;
                }
                ReaderSource::File(blob.file)
            }
            ServedSource::Object(remote, sha256) => {
                let range = (start > 0 || len < self.size).then(|| (start, start + len - 1));
                ReaderSource::Object(remote.get(&sha256, range).await?)
            }
        };
        let chunk = usize::try_from(len).unwrap_or(READ_CHUNK).min(READ_CHUNK);
        Ok(BlobReader {
            source,
            remaining: len,
            buf: Vec::new(),
            chunk,
        })
    }
}

/// A blob's bytes as a client takes them: read from disk a chunk at a time, or passed on from
/// the object store as they arrive.
#[derive(Debug)]
pub struct BlobReader {
    source: ReaderSource,
    remaining: u64,
    /// Reused for reads from a file (allocated at the first one).
    buf: Vec<u8>,
    chunk: usize,
}

#[derive(Debug)]
enum ReaderSource {
    File(tokio::fs::File),
    Object(herd_s3::ObjectStream),
    Done,
}

impl BlobReader {
    /// Bytes still to come.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// The next chunk, `None` once every byte came; a blob that ends early is an error.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let chunk = match &mut self.source {
            ReaderSource::Done => return Poll::Ready(None),
            ReaderSource::Object(stream) => match stream.poll_chunk(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the object is shorter than announced",
                    ))));
                }
                Poll::Ready(Some(chunk)) => chunk,
            },
            ReaderSource::File(file) => {
                if self.buf.is_empty() {
                    self.buf = vec![0; self.chunk];
                }
                let want = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(self.buf.len());
                let mut read_buf = ReadBuf::new(&mut self.buf[..want]);
                match Pin::new(file).poll_read(cx, &mut read_buf) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => Err(e),
                    // Blobs never shrink; a short file means someone damaged the store.
                    Poll::Ready(Ok(())) if read_buf.filled().is_empty() => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the blob file is shorter than when it was opened",
                    )),
                    Poll::Ready(Ok(())) => Ok(Bytes::copy_from_slice(read_buf.filled())),
                }
            }
        };
        if let Ok(data) = &chunk {
            self.remaining = self.remaining.saturating_sub(data.len() as u64);
        }
        Poll::Ready(Some(chunk))
    }
}

impl BlobFile {
    /// Where the blob is stored (for error messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the read position to `offset` (where a resumed download starts).
    pub async fn seek(&mut self, offset: u64) -> Result<(), BlobError> {
        self.file
            .seek(io::SeekFrom::Start(offset))
            .await
            .map(|_| ())
            .map_err(|source| BlobError::Io {
                path: self.path.clone(),
                source,
            })
    }
}

/// A blob being received: hashed and counted chunk by chunk, written to its temporary file
/// unless the blob is already stored. Dropping it abandons the upload and removes the file.
#[derive(Debug)]
pub struct Upload {
    sha256: String,
    destination: Destination,
    expected_size: Option<u64>,
    max_size: u64,
    /// The uploader's storage quota and the bytes of it left when the upload began.
    quota: Option<(u64, u64)>,
    size: u64,
    hasher: Sha256,
    sink: Option<Sink>,
    /// Keeps the blob from being collected while the upload is in progress.
    _live: LiveUpload,
}

/// Registers a digest as being uploaded for as long as it lives.
#[derive(Debug)]
struct LiveUpload {
    dirs: Arc<Dirs>,
    sha256: String,
}

impl LiveUpload {
    fn register(dirs: &Arc<Dirs>, sha256: &str) -> LiveUpload {
        *dirs
            .live
            .lock()
            .expect("live uploads")
            .entry(sha256.to_owned())
            .or_default() += 1;
        LiveUpload {
            dirs: dirs.clone(),
            sha256: sha256.to_owned(),
        }
    }
}

impl Drop for LiveUpload {
    fn drop(&mut self) {
        let mut live = self.dirs.live.lock().expect("live uploads");
        if let Some(count) = live.get_mut(&self.sha256) {
            *count -= 1;
            if *count == 0 {
                live.remove(&self.sha256);
            }
        }
    }
}

impl Upload {
    /// Whether the blob is new here (an upload of a stored blob is only verified and adds
    /// no bytes, so no quota applies to it).
    pub fn is_new(&self) -> bool {
        self.sink.is_some()
    }

    /// Limits the upload to `room` more bytes of the uploader's `quota`: refused at once if
    /// the announced size does not fit, else at the first chunk past it.
    pub fn limit_to_quota(&mut self, quota: u64, room: u64) -> Result<(), BlobError> {
        if self.expected_size.is_some_and(|expected| expected > room) {
            return Err(BlobError::QuotaExceeded { quota, room });
        }
        self.quota = Some((quota, room));
        Ok(())
    }

    /// Takes the next chunk. Refuses it, and with it the whole upload, once the upload is
    /// longer than the limit or than announced: the caller stops reading at once.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), BlobError> {
        self.size = self.size.saturating_add(data.len() as u64);
        if self.size > self.max_size {
            return Err(BlobError::TooLarge {
                limit: self.max_size,
            });
        }
        if let Some((quota, room)) = self.quota
            && self.size > room
        {
            return Err(BlobError::QuotaExceeded { quota, room });
        }
        if let Some(expected) = self.expected_size
            && self.size > expected
        {
            return Err(BlobError::SizeMismatch {
                expected,
                actual: self.size,
            });
        }
        self.hasher.update(data);
        if let Some(sink) = self.sink.as_mut() {
            sink.write(data).await?;
        }
        Ok(())
    }

    /// Verifies the size and digest of everything written and, if the blob is new, makes it
    /// durable and links it in.
    pub async fn commit(self) -> Result<PutOutcome, BlobError> {
        let size = self.size;
        if let Some(expected) = self.expected_size
            && size != expected
        {
            return Err(BlobError::SizeMismatch {
                expected,
                actual: size,
            });
        }
        let actual = hex::encode(self.hasher.finalize());
        if actual != self.sha256 {
            return Err(BlobError::DigestMismatch {
                expected: self.sha256,
                actual,
            });
        }
        let Some(sink) = self.sink else {
            return Ok(PutOutcome {
                size,
                created: false,
            });
        };
        let created = match self.destination {
            Destination::File(path) => sink.commit(&path).await?,
            Destination::Object(remote) => {
                sink.send(&remote, &self.sha256, size).await?;
                true
            }
        };
        Ok(PutOutcome { size, created })
    }
}

/// Where a verified upload goes.
#[derive(Debug)]
enum Destination {
    File(PathBuf),
    Object(Remote),
}

/// The temporary file an upload of a new blob is written to.
#[derive(Debug)]
struct Sink {
    file: tokio::io::BufWriter<tokio::fs::File>,
    temp: TempFile,
}

impl Sink {
    async fn write(&mut self, data: &[u8]) -> Result<(), BlobError> {
        self.file
            .write_all(data)
            .await
            .map_err(|source| self.temp.io_error(source))
    }

    /// Sends the verified upload to the object store, which stores it under its digest once
    /// it has received all of it (and checked it against the digest); the spool file goes.
    async fn send(mut self, remote: &Remote, sha256: &str, size: u64) -> Result<(), BlobError> {
        self.file
            .flush()
            .await
            .map_err(|source| self.temp.io_error(source))?;
        let mut file = self.file.into_inner();
        file.seek(io::SeekFrom::Start(0))
            .await
            .map_err(|source| self.temp.io_error(source))?;
        remote.put(sha256, file, size).await
    }

    /// Makes the verified upload durable and links it in at `final_path`. Returns false when
    /// another upload of the same blob got there first (its file is kept: same content).
    async fn commit(mut self, final_path: &Path) -> Result<bool, BlobError> {
        self.file
            .flush()
            .await
            .map_err(|source| self.temp.io_error(source))?;
        self.file
            .get_ref()
            .sync_all()
            .await
            .map_err(|source| self.temp.io_error(source))?;
        drop(self.file);

        let dir = final_path
            .parent()
            .expect("blob paths have a fan-out directory");
        let io_error = |source| BlobError::Io {
            path: dir.to_path_buf(),
            source,
        };
        if !tokio::fs::try_exists(dir).await.map_err(io_error)? {
            tokio::fs::create_dir_all(dir).await.map_err(io_error)?;
            if let Some(blobs_dir) = dir.parent() {
                sync_dir(blobs_dir).await?;
            }
        }
        let temp_path = self.temp.path().to_path_buf();
        // A hard link refuses to replace an existing file, so exactly one of several concurrent
        // uploads of one blob reports `created`; the temporary name is removed afterwards.
        let created = match tokio::fs::hard_link(&temp_path, final_path).await {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            // File systems without hard links: an atomic rename, which replaces a concurrent
            // winner's file with identical content.
            Err(_) => {
                tokio::fs::rename(&temp_path, final_path)
                    .await
                    .map_err(|source| BlobError::Io {
                        path: final_path.to_path_buf(),
                        source,
                    })?;
                self.temp.disarm();
                true
            }
        };
        if created {
            sync_dir(dir).await?;
        }
        Ok(created)
    }
}

/// A temporary file removed when dropped, unless disarmed: covers refusals, errors and
/// requests abandoned mid-upload (their future is dropped).
#[derive(Debug)]
struct TempFile {
    path: Option<PathBuf>,
}

impl TempFile {
    fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    fn disarm(&mut self) {
        self.path = None;
    }

    fn io_error(&self, source: io::Error) -> BlobError {
        BlobError::Io {
            path: self.path().to_path_buf(),
            source,
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            // Synchronous on purpose: drop cannot await, and unlinking one file is quick.
            // Failure only leaves a file the next `open` sweeps.
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Whether `sha256` is exactly 64 lowercase hex digits: the only strings ever joined to a path.
fn check_digest(sha256: &str) -> Result<(), BlobError> {
    let ok = sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    match ok {
        true => Ok(()),
        false => Err(BlobError::BadDigest {
            digest: sha256.to_owned(),
        }),
    }
}

async fn is_file(path: &Path) -> bool {
    tokio::fs::metadata(path)
        .await
        .is_ok_and(|meta| meta.is_file())
}

/// fsync of a directory, so that a new entry in it survives a power loss.
async fn sync_dir(dir: &Path) -> Result<(), BlobError> {
    let io_error = |source| BlobError::Io {
        path: dir.to_path_buf(),
        source,
    };
    tokio::fs::File::open(dir)
        .await
        .map_err(io_error)?
        .sync_all()
        .await
        .map_err(io_error)
}

/// The file-system half of [`BlobStore::collect`]: blobs under `sha256/`.
fn collect_blob_files(
    dirs: &Dirs,
    live: &HashMap<String, usize>,
    keep: &dyn Fn(&str) -> bool,
    uploaded_at: &dyn Fn(&str) -> Option<i64>,
    old_enough: impl Fn(i64) -> bool,
) -> Result<Collected, BlobError> {
    let mut collected = Collected::default();
    for fan_out in read_dir(&dirs.blobs)? {
        if !fan_out.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        for entry in read_dir(&fan_out.path())? {
            let name = entry.file_name();
            let Some(digest) = name.to_str().filter(|d| check_digest(d).is_ok()) else {
                continue;
            };
            let Ok(meta) = entry.metadata() else { continue };
            let since = uploaded_at(digest).unwrap_or_else(|| modified_secs(&meta));
            if keep(digest) || live.contains_key(digest) || !old_enough(since) {
                collected.bytes_kept += meta.len();
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => collected.blobs.push((digest.to_owned(), meta.len())),
                // Another center process on the same directory got there first.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(BlobError::Io {
                        path: entry.path(),
                        source,
                    });
                }
            }
        }
    }
    if !collected.blobs.is_empty() {
        // The removals are not worth a sync each; one per collection keeps them durable.
        let _ = std::fs::File::open(&dirs.blobs).and_then(|d| d.sync_all());
    }
    Ok(collected)
}

/// Removes the temporary files of abandoned uploads in `tmp`: how many, and their bytes.
fn collect_partial_uploads(
    tmp: &Path,
    live: &HashMap<String, usize>,
    old_enough: impl Fn(i64) -> bool,
) -> Result<(u64, u64), BlobError> {
    let (mut count, mut bytes) = (0, 0);
    for entry in read_dir(tmp)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(meta) = entry.metadata() else { continue };
        let in_progress = name
            .split('.')
            .next()
            .is_some_and(|digest| live.contains_key(digest));
        if meta.is_file()
            && !in_progress
            && old_enough(modified_secs(&meta))
            && std::fs::remove_file(entry.path()).is_ok()
        {
            count += 1;
            bytes += meta.len();
        }
    }
    Ok((count, bytes))
}

fn read_dir(dir: &Path) -> Result<impl Iterator<Item = std::fs::DirEntry>, BlobError> {
    let entries = std::fs::read_dir(dir).map_err(|source| BlobError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    // An entry that vanishes while listed is one fewer to look at, not an error.
    Ok(entries.filter_map(Result::ok))
}

/// A file's modification time in Unix seconds (0, "long ago", when unknown).
fn modified_secs(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn sweep_stale_uploads(tmp: &Path) -> Result<(), BlobError> {
    let io_error = |source| BlobError::Io {
        path: tmp.to_path_buf(),
        source,
    };
    let now = SystemTime::now();
    for entry in std::fs::read_dir(tmp).map_err(io_error)? {
        let entry = entry.map_err(io_error)?;
        let Ok(meta) = entry.metadata() else { continue };
        let idle = meta
            .modified()
            .ok()
            .and_then(|modified| now.duration_since(modified).ok());
        if meta.is_file() && idle.is_some_and(|idle| idle >= STALE_UPLOAD) {
            // Another process may sweep the same file at the same moment: not an error.
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    #[tokio::test]
    async fn chunks_written_and_committed_are_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let data = b"hello, blob".repeat(1000);
        let digest = sha(&data);
        let mut upload = store
            .begin(&digest, Some(data.len() as u64), 1 << 20)
            .await
            .unwrap();
        for chunk in data.chunks(777) {
            upload.write(chunk).await.unwrap();
        }
        let outcome = upload.commit().await.unwrap();
        assert_eq!(
            outcome,
            PutOutcome {
                size: data.len() as u64,
                created: true
            }
        );
        assert_eq!(store.contains(&digest).await, Some(data.len() as u64));
        let mut blob = store.read(&digest).await.unwrap();
        assert_eq!(blob.size, data.len() as u64);
        blob.seek(5).await.unwrap();
        let mut back = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut blob.file, &mut back)
            .await
            .unwrap();
        assert_eq!(back, &data[5..]);
        // Again: verified, not stored twice.
        let mut upload = store.begin(&digest, None, 1 << 20).await.unwrap();
        upload.write(&data).await.unwrap();
        assert!(!upload.commit().await.unwrap().created);
        assert!(matches!(
            store.read(&sha(b"x")).await,
            Err(BlobError::NotFound)
        ));
    }

    #[test]
    fn open_creates_the_layout_and_sweeps_only_stale_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a/b");
        BlobStore::open(&root).unwrap();
        assert!(root.join("sha256").is_dir() && root.join("tmp").is_dir());

        let stale = root.join("tmp/old.part");
        let fresh = root.join("tmp/new.part");
        std::fs::write(&stale, b"x").unwrap();
        std::fs::write(&fresh, b"x").unwrap();
        let long_ago = SystemTime::now() - STALE_UPLOAD - Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        BlobStore::open(&root).unwrap();
        assert!(!stale.exists(), "a crashed upload's file is swept");
        assert!(fresh.exists(), "a live upload's file is kept");
    }

    #[test]
    fn open_names_the_path_it_cannot_create() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let err = BlobStore::open(&file).unwrap_err();
        assert!(
            matches!(&err, BlobError::Io { path, .. } if path.starts_with(&file)),
            "{err}"
        );
        assert!(err.to_string().contains("not-a-dir/sha256"), "{err}");
    }
}
