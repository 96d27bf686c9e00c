//! The blob store over HTTP: request bodies streamed into an [`Upload`] chunk by chunk, and
//! blobs served with `Range` (single ranges; downloads resume), `If-Range`, `ETag` and
//! `If-None-Match`, their bodies read from disk or the object store as the client takes them.
//! The store itself (files, objects, digests, commits) is `crate::blobs`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};

#[cfg(test)]
use crate::blobs::PutOutcome;
use crate::blobs::{BlobError, BlobReader, BlobStore, ServedBlob, Upload};

/// Blobs never change under their name, so caches (site servers, proxies) may keep them.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// A `Range` header that cannot be honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Well-formed, but no requested range overlaps the blob: answered with 416.
    #[error("the requested range is outside the blob")]
    Unsatisfiable,
    /// Not a valid `bytes=` range set: ignored, the whole blob is served (RFC 9110 §14.2).
    #[error("the Range header is malformed")]
    Malformed,
}

/// Streams `body` into `upload` to its end, or to the first chunk the upload refuses (so an
/// upload over its limit is not read further).
pub async fn receive(mut body: Body, upload: &mut Upload) -> Result<(), BlobError> {
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| BlobError::Source(Box::new(err)))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry no content
        };
        upload.write(&data).await?;
    }
    Ok(())
}

/// Stores `body` as blob `sha256`: the whole upload path, for the tests.
#[cfg(test)]
async fn put(
    store: &BlobStore,
    sha256: &str,
    expected_size: Option<u64>,
    max_size: u64,
    body: Body,
) -> Result<PutOutcome, BlobError> {
    let mut upload = store.begin(sha256, expected_size, max_size).await?;
    receive(body, &mut upload).await?;
    upload.commit().await
}

/// The HTTP response serving blob `sha256` for a request with these headers:
///
/// - 200 with the whole blob, or 206 with `Content-Range` for a single `Range: bytes=a-b`,
///   `bytes=a-` or `bytes=-n` (a multi-range or malformed request gets the whole blob, as
///   RFC 9110 allows; so does a range under an `If-Range` that does not match the ETag);
/// - 416 with `Content-Range: bytes */<size>` when no requested range overlaps the blob;
/// - 304 when `If-None-Match` names the blob's ETag.
///
/// Every answer carries `Accept-Ranges: bytes` and `ETag: "<sha256>"`; the body is read
/// chunk by chunk as the client takes it (from disk, or from a ranged `GET` of the object).
pub async fn serve(
    store: &BlobStore,
    sha256: &str,
    headers: &HeaderMap,
) -> Result<Response, BlobError> {
    serve_blob(store.open_for_serving(sha256).await?, sha256, headers).await
}

/// [`serve`] for a file opened elsewhere (the site's mirror cache): `file` holds the blob
/// `sha256` of `size` bytes, read from its current position, which must be the start.
pub async fn serve_file(
    file: tokio::fs::File,
    size: u64,
    sha256: &str,
    headers: &HeaderMap,
) -> io::Result<Response> {
    serve_blob(ServedBlob::from_file(file, size), sha256, headers)
        .await
        .map_err(|err| match err {
            BlobError::Io { source, .. } => source,
            other => io::Error::other(other),
        })
}

async fn serve_blob(
    blob: ServedBlob,
    sha256: &str,
    headers: &HeaderMap,
) -> Result<Response, BlobError> {
    let size = blob.size;
    let etag = format!("\"{sha256}\"");
    let response = Response::builder()
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, &etag)
        .header(header::CACHE_CONTROL, IMMUTABLE);

    if if_none_match(headers, &etag) {
        return Ok(finish(
            response.status(StatusCode::NOT_MODIFIED),
            Body::empty(),
        ));
    }
    let range = match requested_range(headers, &etag) {
        None => Ok(None),
        Some(value) => match parse_range(value, size) {
            Err(RangeError::Malformed) => Ok(None),
            other => other,
        },
    };
    let (status, start, len, response) = match range {
        Ok(None) => (StatusCode::OK, 0, size, response),
        Ok(Some((first, last))) => (
            StatusCode::PARTIAL_CONTENT,
            first,
            last - first + 1,
            response.header(
                header::CONTENT_RANGE,
                format!("bytes {first}-{last}/{size}"),
            ),
        ),
        Err(_) => {
            let response = response
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{size}"));
            return Ok(finish(response, Body::empty()));
        }
    };
    let reader = blob.range(start, len).await?;
    let response = response
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len);
    Ok(finish(response, Body::new(BlobBody(reader))))
}

fn finish(builder: axum::http::response::Builder, body: Body) -> Response {
    builder
        .body(body)
        .expect("static header names and values formatted from numbers and hex are valid")
}

fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim())
        .any(|tag| tag == "*" || tag == etag || tag.strip_prefix("W/") == Some(etag))
}

/// The `Range` header to honour: absent, unreadable, repeated, or under a non-matching
/// `If-Range` (only our strong ETag can match; a date never does) means the whole blob.
fn requested_range<'h>(headers: &'h HeaderMap, etag: &str) -> Option<&'h str> {
    let mut ranges = headers.get_all(header::RANGE).iter();
    let range = ranges.next()?;
    if ranges.next().is_some() {
        return None;
    }
    if let Some(if_range) = headers.get(header::IF_RANGE)
        && if_range.as_bytes() != etag.as_bytes()
    {
        return None;
    }
    range.to_str().ok()
}

/// Parses a `Range` header value against a blob of `size` bytes.
///
/// `Ok(Some((first, last)))` is one inclusive byte range, clamped to the blob; `Ok(None)` asks
/// for the whole blob: a unit other than `bytes`, or several ranges of which one at least is
/// satisfiable (answered with the whole blob instead of multipart/byteranges).
/// `Err(Unsatisfiable)` when no range overlaps the blob (every range of an empty blob);
/// `Err(Malformed)` when the value is not a valid range set.
pub fn parse_range(header: &str, size: u64) -> Result<Option<(u64, u64)>, RangeError> {
    let header = header.trim();
    let Some((unit, set)) = header.split_once('=') else {
        return Err(RangeError::Malformed);
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ok(None);
    }
    // RFC 9110 lists may contain empty elements, which count for nothing.
    let specs: Vec<&str> = set
        .split(',')
        .map(str::trim)
        .filter(|spec| !spec.is_empty())
        .collect();
    let mut satisfiable = Vec::with_capacity(1);
    for spec in &specs {
        if let Some(range) = parse_range_spec(spec, size)? {
            satisfiable.push(range);
        }
    }
    match (specs.len(), satisfiable.as_slice()) {
        (0, _) => Err(RangeError::Malformed),
        (_, []) => Err(RangeError::Unsatisfiable),
        (1, [range]) => Ok(Some(*range)),
        _ => Ok(None),
    }
}

/// One `first-last`, `first-` or `-suffix`: `Ok(None)` when well-formed but outside the blob.
fn parse_range_spec(spec: &str, size: u64) -> Result<Option<(u64, u64)>, RangeError> {
    let (first, last) = spec.split_once('-').ok_or(RangeError::Malformed)?;
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        let suffix = parse_position(last)?;
        if suffix == 0 || size == 0 {
            return Ok(None);
        }
        return Ok(Some((size - suffix.min(size), size - 1)));
    }
    let first = parse_position(first)?;
    let last = match last.is_empty() {
        true => u64::MAX,
        false => parse_position(last)?,
    };
    if last < first {
        return Err(RangeError::Malformed);
    }
    if first >= size {
        return Ok(None);
    }
    Ok(Some((first, last.min(size - 1))))
}

/// A byte position: ASCII digits only; values beyond u64 saturate (they are past any blob).
fn parse_position(digits: &str) -> Result<u64, RangeError> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RangeError::Malformed);
    }
    Ok(digits.bytes().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// A response body passing on a [`BlobReader`]'s chunks, only as fast as the connection
/// takes them.
struct BlobBody(BlobReader);

impl HttpBody for BlobBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.get_mut()
            .0
            .poll_chunk(cx)
            .map(|chunk| chunk.map(|data| data.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.0.remaining() == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.remaining())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use sha2::{Digest as _, Sha256};
    use std::collections::VecDeque;
    use std::path::Path;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A request body delivered in the given chunks, optionally failing after them, counting
    /// how many bytes the store pulled.
    struct ChunkedBody {
        chunks: VecDeque<Bytes>,
        fail_at_end: bool,
        pulled: Arc<AtomicUsize>,
    }

    impl HttpBody for ChunkedBody {
        type Data = Bytes;
        type Error = io::Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
            let this = self.get_mut();
            match this.chunks.pop_front() {
                Some(chunk) => {
                    this.pulled.fetch_add(chunk.len(), Ordering::SeqCst);
                    Poll::Ready(Some(Ok(Frame::data(chunk))))
                }
                None if this.fail_at_end => {
                    this.fail_at_end = false;
                    Poll::Ready(Some(Err(io::Error::other("connection reset"))))
                }
                None => Poll::Ready(None),
            }
        }
    }

    fn chunked(data: &[u8], chunk: usize) -> (Body, Arc<AtomicUsize>) {
        let pulled = Arc::new(AtomicUsize::new(0));
        let body = ChunkedBody {
            chunks: data.chunks(chunk).map(Bytes::copy_from_slice).collect(),
            fail_at_end: false,
            pulled: pulled.clone(),
        };
        (Body::new(body), pulled)
    }

    fn body(data: &[u8]) -> Body {
        chunked(data, 4096).0
    }

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    /// Deterministic, non-repeating test content.
    fn content(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        (dir, store)
    }

    /// Every file under the store's root, relative.
    fn files(root: &Path) -> Vec<String> {
        fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, root, out);
                } else {
                    out.push(path.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        walk(root, root, &mut out);
        out.sort();
        out
    }

    async fn read_body(response: Response) -> Vec<u8> {
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    fn range(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, HeaderValue::from_str(value).unwrap());
        headers
    }

    fn header_of(response: &Response, name: header::HeaderName) -> &str {
        response
            .headers()
            .get(&name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    #[tokio::test]
    async fn a_multi_megabyte_upload_in_many_chunks_round_trips() {
        let (dir, store) = store();
        let data = content(5 * 1024 * 1024 + 17);
        let digest = sha(&data);
        let (upload, _) = chunked(&data, 7_919);
        let outcome = put(&store, &digest, Some(data.len() as u64), 64 << 20, upload)
            .await
            .unwrap();
        assert_eq!(
            outcome,
            PutOutcome {
                size: data.len() as u64,
                created: true
            }
        );
        assert_eq!(
            files(dir.path()),
            [format!("sha256/{}/{digest}", &digest[..2])]
        );
        assert_eq!(store.contains(&digest).await, Some(data.len() as u64));

        let response = serve(&store, &digest, &HeaderMap::new()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header_of(&response, header::CONTENT_LENGTH),
            data.len().to_string()
        );
        assert_eq!(header_of(&response, header::ACCEPT_RANGES), "bytes");
        assert_eq!(header_of(&response, header::ETAG), format!("\"{digest}\""));
        assert_eq!(
            header_of(&response, header::CONTENT_TYPE),
            "application/octet-stream"
        );
        assert_eq!(response.body().size_hint().exact(), Some(data.len() as u64));
        assert!(read_body(response).await == data, "served bytes differ");
    }

    #[tokio::test]
    async fn putting_a_stored_blob_again_verifies_and_keeps_it() {
        let (dir, store) = store();
        let data = content(10_000);
        let digest = sha(&data);
        put(&store, &digest, None, 1 << 20, body(&data))
            .await
            .unwrap();
        let again = put(&store, &digest, None, 1 << 20, body(&data))
            .await
            .unwrap();
        assert_eq!(
            again,
            PutOutcome {
                size: 10_000,
                created: false
            }
        );
        // A wrong body for a stored digest is still refused.
        let err = put(&store, &digest, None, 1 << 20, body(b"something else"))
            .await
            .unwrap_err();
        assert!(matches!(err, BlobError::DigestMismatch { .. }), "{err}");
        assert_eq!(files(dir.path()).len(), 1);
        assert!(read_body(serve(&store, &digest, &HeaderMap::new()).await.unwrap()).await == data);
    }

    #[tokio::test]
    async fn a_digest_mismatch_stores_nothing_and_leaves_no_temporary_file() {
        let (dir, store) = store();
        let data = content(300_000);
        let claimed = sha(b"another blob");
        let err = put(&store, &claimed, Some(300_000), 1 << 20, body(&data))
            .await
            .unwrap_err();
        match err {
            BlobError::DigestMismatch { expected, actual } => {
                assert_eq!(expected, claimed);
                assert_eq!(actual, sha(&data));
            }
            other => panic!("{other}"),
        }
        assert_eq!(files(dir.path()), Vec::<String>::new());
        assert_eq!(store.contains(&claimed).await, None);
        assert!(matches!(
            serve(&store, &claimed, &HeaderMap::new()).await,
            Err(BlobError::NotFound)
        ));
    }

    #[tokio::test]
    async fn a_size_other_than_announced_is_refused() {
        let (dir, store) = store();
        let data = content(50_000);
        let digest = sha(&data);
        let err = put(&store, &digest, Some(50_001), 1 << 20, body(&data))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                BlobError::SizeMismatch {
                    expected: 50_001,
                    actual: 50_000
                }
            ),
            "{err}"
        );
        // Longer than announced: reading stops at the chunk that crosses the announced size.
        let (upload, pulled) = chunked(&data, 1000);
        let err = put(&store, &digest, Some(10_000), 1 << 20, upload)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                BlobError::SizeMismatch {
                    expected: 10_000,
                    actual: 11_000
                }
            ),
            "{err}"
        );
        assert_eq!(pulled.load(Ordering::SeqCst), 11_000);
        assert_eq!(files(dir.path()), Vec::<String>::new());
    }

    #[tokio::test]
    async fn an_upload_over_the_limit_stops_early() {
        let (dir, store) = store();
        let data = content(1 << 20);
        let digest = sha(&data);
        let (upload, pulled) = chunked(&data, 4096);
        let err = put(&store, &digest, None, 10_000, upload)
            .await
            .unwrap_err();
        assert!(
            matches!(err, BlobError::TooLarge { limit: 10_000 }),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "the upload exceeds the limit of 10000 bytes"
        );
        // Stopped at the first chunk past max + 1 bytes: 3 chunks of 4096, not 1 MiB.
        assert_eq!(pulled.load(Ordering::SeqCst), 3 * 4096);
        // An announced size over the limit is refused before reading anything.
        let (upload, pulled) = chunked(&data, 4096);
        let err = put(&store, &digest, Some(1 << 20), 10_000, upload)
            .await
            .unwrap_err();
        assert!(
            matches!(err, BlobError::TooLarge { limit: 10_000 }),
            "{err}"
        );
        assert_eq!(pulled.load(Ordering::SeqCst), 0);
        // Exactly at the limit is fine.
        let small = content(10_000);
        put(&store, &sha(&small), Some(10_000), 10_000, body(&small))
            .await
            .unwrap();
        assert_eq!(files(dir.path()).len(), 1);
    }

    #[tokio::test]
    async fn a_failing_or_abandoned_upload_leaves_nothing() {
        let (dir, store) = store();
        let data = content(100_000);
        let digest = sha(&data);
        let failing = ChunkedBody {
            chunks: data.chunks(1000).map(Bytes::copy_from_slice).collect(),
            fail_at_end: true,
            pulled: Arc::new(AtomicUsize::new(0)),
        };
        let err = put(&store, &digest, None, 1 << 20, Body::new(failing))
            .await
            .unwrap_err();
        assert!(matches!(err, BlobError::Source(_)), "{err}");
        assert_eq!(files(dir.path()), Vec::<String>::new());

        // A client that stops sending: the request future is dropped mid-upload.
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        tx.send(Bytes::from(data[..5000].to_vec())).await.unwrap();
        let put = {
            let store = store.clone();
            let digest = digest.clone();
            tokio::spawn(async move {
                put(&store, &digest, None, 1 << 20, Body::new(ChannelBody(rx))).await
            })
        };
        // Wait until the temporary file exists, then abandon the upload.
        for _ in 0..200 {
            if !files(dir.path()).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(files(dir.path()).len(), 1, "the upload is in tmp/");
        assert!(files(dir.path())[0].starts_with("tmp/"));
        put.abort();
        assert!(put.await.unwrap_err().is_cancelled());
        drop(tx);
        assert_eq!(files(dir.path()), Vec::<String>::new());
    }

    /// A body fed through a channel: pending until the test sends, ended when it hangs up.
    struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

    impl HttpBody for ChannelBody {
        type Data = Bytes;
        type Error = io::Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
            self.get_mut()
                .0
                .poll_recv(cx)
                .map(|chunk| chunk.map(|data| Ok(Frame::data(data))))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_puts_of_one_blob_store_it_once() {
        let (dir, store) = store();
        let data = content(2 << 20);
        let digest = sha(&data);
        let puts: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                let digest = digest.clone();
                let (upload, _) = chunked(&data, 16_384);
                tokio::spawn(
                    async move { put(&store, &digest, Some(2 << 20), 4 << 20, upload).await },
                )
            })
            .collect();
        let mut created = 0;
        for put in puts {
            let outcome = put.await.unwrap().unwrap();
            assert_eq!(outcome.size, 2 << 20);
            created += usize::from(outcome.created);
        }
        assert_eq!(created, 1, "exactly one upload created the blob");
        assert_eq!(
            files(dir.path()),
            [format!("sha256/{}/{digest}", &digest[..2])]
        );
        assert!(read_body(serve(&store, &digest, &HeaderMap::new()).await.unwrap()).await == data);
    }

    #[tokio::test]
    async fn bad_digests_are_refused_before_touching_the_disk() {
        let (dir, store) = store();
        let good = sha(b"x");
        for bad in [
            "../etc/passwd".to_owned(),
            format!("../../{}", &good[6..]),
            good.to_uppercase(),
            good[..63].to_owned(),
            format!("{good}0"),
            format!("{}/{}", &good[..2], &good[3..]),
            format!("{}g", &good[..63]),
            String::new(),
        ] {
            let err = put(&store, &bad, None, 10, body(b"x")).await.unwrap_err();
            assert!(
                matches!(&err, BlobError::BadDigest { digest } if *digest == bad),
                "{bad:?}: {err}"
            );
            assert!(matches!(
                serve(&store, &bad, &HeaderMap::new()).await,
                Err(BlobError::BadDigest { .. })
            ));
            assert_eq!(store.contains(&bad).await, None);
        }
        assert_eq!(files(dir.path()), Vec::<String>::new());
    }

    #[tokio::test]
    async fn single_ranges_are_served_with_206() {
        let (_dir, store) = store();
        let data = content(1000);
        let digest = sha(&data);
        put(&store, &digest, None, 1 << 20, body(&data))
            .await
            .unwrap();
        for (value, first, last) in [
            ("bytes=0-99", 0, 99),
            ("bytes=100-", 100, 999),
            ("bytes=-10", 990, 999),
            ("bytes=-5000", 0, 999),
            ("bytes=990-5000", 990, 999),
            ("bytes=999-999", 999, 999),
            ("Bytes = 5-6 ", 5, 6),
            ("bytes=, 3-4,", 3, 4),
        ] {
            let response = serve(&store, &digest, &range(value)).await.unwrap();
            assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{value}");
            assert_eq!(
                header_of(&response, header::CONTENT_RANGE),
                format!("bytes {first}-{last}/1000"),
                "{value}"
            );
            assert_eq!(
                header_of(&response, header::CONTENT_LENGTH),
                (last - first + 1).to_string()
            );
            assert_eq!(
                read_body(response).await,
                &data[first as usize..=last as usize],
                "{value}"
            );
        }
    }

    #[tokio::test]
    async fn unsatisfiable_ranges_get_416_and_the_size() {
        let (_dir, store) = store();
        let data = content(1000);
        let digest = sha(&data);
        put(&store, &digest, None, 1 << 20, body(&data))
            .await
            .unwrap();
        for value in [
            "bytes=1000-",
            "bytes=5000-6000",
            "bytes=-0",
            "bytes=1000-1000,2000-",
        ] {
            let response = serve(&store, &digest, &range(value)).await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::RANGE_NOT_SATISFIABLE,
                "{value}"
            );
            assert_eq!(header_of(&response, header::CONTENT_RANGE), "bytes */1000");
            assert!(read_body(response).await.is_empty());
        }
        // Any range of an empty blob is unsatisfiable.
        let empty = sha(b"");
        put(&store, &empty, Some(0), 10, body(b"")).await.unwrap();
        let response = serve(&store, &empty, &range("bytes=0-")).await.unwrap();
        assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(header_of(&response, header::CONTENT_RANGE), "bytes */0");
        let response = serve(&store, &empty, &HeaderMap::new()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header_of(&response, header::CONTENT_LENGTH), "0");
    }

    #[tokio::test]
    async fn multi_range_malformed_and_stale_if_range_requests_get_the_whole_blob() {
        let (_dir, store) = store();
        let data = content(1000);
        let digest = sha(&data);
        put(&store, &digest, None, 1 << 20, body(&data))
            .await
            .unwrap();
        let mut stale = range("bytes=0-9");
        stale.insert(header::IF_RANGE, HeaderValue::from_static("\"0000\""));
        let mut dated = range("bytes=0-9");
        dated.insert(
            header::IF_RANGE,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        for headers in [
            range("bytes=0-9,20-29"),
            range("bytes=0-9, 5000-"),
            range("bytes=9-0"),
            range("bytes=abc"),
            range("bytes=1-2-3"),
            range("bytes="),
            range("pages=1-2"),
            range("0-9"),
            stale,
            dated,
        ] {
            let response = serve(&store, &digest, &headers).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{headers:?}");
            assert!(response.headers().get(header::CONTENT_RANGE).is_none());
            assert!(read_body(response).await == data, "{headers:?}");
        }
        // A matching If-Range keeps the range.
        let mut current = range("bytes=0-9");
        current.insert(
            header::IF_RANGE,
            HeaderValue::from_str(&format!("\"{digest}\"")).unwrap(),
        );
        let response = serve(&store, &digest, &current).await.unwrap();
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    }

    #[tokio::test]
    async fn a_matching_if_none_match_gets_304() {
        let (_dir, store) = store();
        let data = content(100);
        let digest = sha(&data);
        put(&store, &digest, None, 1 << 20, body(&data))
            .await
            .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"abc\", \"{digest}\"")).unwrap(),
        );
        let response = serve(&store, &digest, &headers).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(header_of(&response, header::ETAG), format!("\"{digest}\""));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"abc\""));
        let response = serve(&store, &digest, &headers).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[test]
    fn parse_range_covers_every_form() {
        assert_eq!(parse_range("bytes=0-0", 10), Ok(Some((0, 0))));
        assert_eq!(parse_range("bytes=2-", 10), Ok(Some((2, 9))));
        assert_eq!(parse_range("bytes=-3", 10), Ok(Some((7, 9))));
        assert_eq!(parse_range("bytes=-30", 10), Ok(Some((0, 9))));
        assert_eq!(
            parse_range("bytes=5-99999999999999999999999", 10),
            Ok(Some((5, 9)))
        );
        assert_eq!(
            parse_range("bytes=-99999999999999999999999", 10),
            Ok(Some((0, 9)))
        );
        assert_eq!(parse_range("bytes=0-1,3-4", 10), Ok(None));
        assert_eq!(parse_range("items=0-1", 10), Ok(None));
        assert_eq!(parse_range("bytes=10-", 10), Err(RangeError::Unsatisfiable));
        assert_eq!(
            parse_range("bytes=99999999999999999999999-", 10),
            Err(RangeError::Unsatisfiable)
        );
        assert_eq!(parse_range("bytes=-0", 10), Err(RangeError::Unsatisfiable));
        assert_eq!(parse_range("bytes=0-", 0), Err(RangeError::Unsatisfiable));
        assert_eq!(parse_range("bytes=-1", 0), Err(RangeError::Unsatisfiable));
        for malformed in [
            "",
            "bytes",
            "bytes=",
            "bytes=,",
            "bytes=-",
            "bytes=3-2",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=1-2-3",
            "bytes=0x1-2",
            "bytes=1 2-3",
            "bytes=0-1,x",
        ] {
            assert_eq!(
                parse_range(malformed, 10),
                Err(RangeError::Malformed),
                "{malformed:?}"
            );
        }
    }
}
