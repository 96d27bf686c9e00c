//! Package transfers: uploads streamed from a file whose SHA-256 is computed first, and
//! downloads streamed into a file, resumed with `Range` after an interruption and verified
//! against the expected size and digest before they count as done.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use herd_proto::api::PackageInfo;
use sha2::{Digest as _, Sha256};
use ureq::http::{Method, StatusCode, header};

use crate::{Client, ClientError, MAX_JSON_ANSWER, Payload};

/// Size of the buffer packages are copied through (memory stays flat whatever the package).
const CHUNK: usize = 64 * 1024;

impl Client {
    /// Uploads a package file (`PUT /v1/packages/{sha256}`). The file is read twice: once to
    /// compute its SHA-256 and size, then streamed to the center, which checks both.
    pub fn upload_package(&self, path: &Path) -> Result<PackageInfo, ClientError> {
        let local = |err: io::Error| ClientError::local_io(path, "read", &err);
        let mut file = File::open(path).map_err(local)?;
        let (digest, size) = hash_stream(&mut file, &mut Sha256::new()).map_err(local)?;
        let sha256 = hex::encode(digest);
        file.seek(SeekFrom::Start(0)).map_err(local)?;
        let url_path = format!("/v1/packages/{sha256}");
        let reader = ExactReader {
            inner: file.take(size),
            left: size,
            path: path.display().to_string(),
        };
        let response = self.call(
            Method::PUT,
            &url_path,
            &[],
            Payload::Stream {
                reader: Box::new(reader),
                length: size,
            },
            true,
        )?;
        self.json(response, &format!("PUT {url_path}"), MAX_JSON_ANSWER)
    }

    /// Downloads package `sha256` of `size` bytes into `dest` (`GET /v1/packages/{sha256}`).
    ///
    /// What `dest` already holds is taken as an interrupted download: the rest is asked for
    /// with `Range: bytes=N-` (206), and the file is restarted when the server sends the whole
    /// package (200) or cannot serve the range (416). Never more than `size` bytes are read;
    /// the body is streamed to the file, never held in memory. Succeeds only when `dest` holds
    /// exactly `size` bytes with this SHA-256, synced to disk. A resumed download whose result
    /// does not verify is restarted once from scratch; a fresh one that does not verify is
    /// deleted. On a broken connection the partial file is kept for the next attempt.
    pub fn download_package(
        &self,
        sha256: &str,
        size: u64,
        dest: &Path,
    ) -> Result<(), ClientError> {
        if sha256.len() != 64
            || !sha256
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(ClientError::Invalid(format!(
                "{sha256:?} is not a package digest (64 lowercase hexadecimal digits)"
            )));
        }
        match self.download_attempt(sha256, size, dest, false)? {
            Attempt::Done => Ok(()),
            Attempt::Restart => match self.download_attempt(sha256, size, dest, true)? {
                Attempt::Done => Ok(()),
                Attempt::Restart => Err(ClientError::Corrupt {
                    server: self.server.clone(),
                    what: format!("GET /v1/packages/{sha256}"),
                    detail: "a fresh download after a restart still did not verify".to_owned(),
                }),
            },
        }
    }

    fn download_attempt(
        &self,
        sha256: &str,
        size: u64,
        dest: &Path,
        fresh: bool,
    ) -> Result<Attempt, ClientError> {
        let local = |doing: &'static str, err: io::Error| ClientError::local_io(dest, doing, &err);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            // A part file swapped for a symlink is refused, not written through.
            .custom_flags(libc::O_NOFOLLOW)
            .open(dest)
            .map_err(|e| local("open", e))?;
        let mut have = file.metadata().map_err(|e| local("read", e))?.len();
        if fresh || have > size {
            file.set_len(0).map_err(|e| local("truncate", e))?;
            have = 0;
        }
        let resumed_from = have;
        let mut hasher = Sha256::new();
        if have > 0 {
            let (_, read) = hash_stream(&mut (&mut file).take(have), &mut hasher)
                .map_err(|e| local("read", e))?;
            if read != have {
                return Err(local(
                    "read",
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file shrank while it was read",
                    ),
                ));
            }
        }
        if have == size {
            return self.finish_download(sha256, size, dest, file, hasher, resumed_from);
        }

        let url_path = format!("/v1/packages/{sha256}");
        let what = format!("GET {url_path}");
        let corrupt = |detail: String| ClientError::Corrupt {
            server: self.server.clone(),
            what: what.clone(),
            detail,
        };
        let range = (have > 0).then(|| (header::RANGE, format!("bytes={have}-")));
        let response = match self.call_with(
            Method::GET,
            &url_path,
            &[],
            range.as_slice(),
            Payload::None,
            true,
        ) {
            Ok(response) => response,
            // The server's copy is shorter than what we hold: ours is not a prefix of it.
            Err(err) if have > 0 && err.status() == Some(416) => return Ok(Attempt::Restart),
            Err(err) => return Err(err),
        };
        match response.status() {
            StatusCode::PARTIAL_CONTENT => {
                let content_range = response
                    .headers()
                    .get(header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if parse_content_range(content_range) != Some((have, size - 1, size)) {
                    return Err(corrupt(format!(
                        "asked for bytes {have}- of {size} and got the range {content_range:?}"
                    )));
                }
            }
            StatusCode::OK => {
                if let Some(length) = content_length(&response)
                    && length != size
                {
                    return Err(corrupt(format!(
                        "the center holds {length} bytes for this package, {size} were expected"
                    )));
                }
                if have > 0 {
                    file.set_len(0).map_err(|e| local("truncate", e))?;
                    file.seek(SeekFrom::Start(0))
                        .map_err(|e| local("write", e))?;
                    hasher = Sha256::new();
                    have = 0;
                }
            }
            other => {
                return Err(corrupt(format!(
                    "unexpected answer {other} to a package download"
                )));
            }
        }

        let wanted = size - have;
        let mut body = response
            .into_body()
            .into_with_config()
            .reader()
            .take(wanted);
        let mut buffer = vec![0u8; CHUNK];
        let mut received = 0u64;
        loop {
            let n = match body.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    // Keep what arrived for the next attempt to resume from.
                    let _ = file.sync_data();
                    return Err(ClientError::Interrupted {
                        server: self.server.clone(),
                        what,
                        detail: format!(
                            "the download broke off after {} of {size} bytes ({err}); what \
                             arrived is kept for the next attempt to resume from",
                            have + received
                        ),
                    });
                }
            };
            file.write_all(&buffer[..n])
                .map_err(|e| local("write", e))?;
            hasher.update(&buffer[..n]);
            received += n as u64;
        }
        if received < wanted {
            let _ = file.sync_data();
            return Err(ClientError::Interrupted {
                server: self.server.clone(),
                what,
                detail: format!(
                    "the answer ended after {} of {size} bytes; what arrived is kept for the \
                     next attempt to resume from",
                    have + received
                ),
            });
        }
        self.finish_download(sha256, size, dest, file, hasher, resumed_from)
    }

    /// Checks the digest of a complete download and syncs it.
    fn finish_download(
        &self,
        sha256: &str,
        size: u64,
        dest: &Path,
        file: File,
        hasher: Sha256,
        resumed_from: u64,
    ) -> Result<Attempt, ClientError> {
        let got = hex::encode(hasher.finalize());
        if got != sha256 {
            if resumed_from > 0 {
                // The part kept from an earlier attempt may be what is wrong.
                return Ok(Attempt::Restart);
            }
            drop(file);
            let _ = std::fs::remove_file(dest);
            return Err(ClientError::Corrupt {
                server: self.server.clone(),
                what: format!("GET /v1/packages/{sha256}"),
                detail: format!(
                    "the {size} bytes received have SHA-256 {got}; the download was deleted"
                ),
            });
        }
        file.sync_all()
            .map_err(|err| ClientError::local_io(dest, "write", &err))?;
        Ok(Attempt::Done)
    }
}

enum Attempt {
    Done,
    /// Start again from an empty file.
    Restart,
}

/// Hashes everything `reader` yields; returns the digest and the byte count.
fn hash_stream(reader: &mut impl Read, hasher: &mut Sha256) -> io::Result<([u8; 32], u64)> {
    let mut buffer = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        hasher.update(&buffer[..n]);
        total += n as u64;
    }
    Ok((hasher.clone().finalize().into(), total))
}

/// `bytes FIRST-LAST/TOTAL` → `(FIRST, LAST, TOTAL)`.
fn parse_content_range(value: &str) -> Option<(u64, u64, u64)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?, total.parse().ok()?))
}

fn content_length(response: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    response
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Yields exactly `left` bytes of a file, failing clearly if the file is shorter by then
/// (it changed after it was hashed) instead of sending less than `Content-Length` announced.
struct ExactReader<R> {
    inner: R,
    left: u64,
    path: String,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while it was being uploaded", self.path),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, 199, 200))
        );
        assert_eq!(parse_content_range("bytes */200"), None);
        assert_eq!(parse_content_range("items 1-2/3"), None);
        assert_eq!(parse_content_range(""), None);
    }

    #[test]
    fn the_upload_reader_refuses_a_file_that_shrank() {
        let mut reader = ExactReader {
            inner: &b"abc"[..],
            left: 5,
            path: "pkg.tar.gz".to_owned(),
        };
        let mut out = Vec::new();
        let err = reader.read_to_end(&mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(err.to_string().contains("pkg.tar.gz shrank"), "{err}");

        let mut reader = ExactReader {
            inner: (&b"abcdef"[..]).take(6),
            left: 6,
            path: "p".to_owned(),
        };
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abcdef");
    }
}
