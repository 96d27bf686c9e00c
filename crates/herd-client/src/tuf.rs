//! The center's TUF metadata as the key tools read it: a file under `/tuf/metadata/` as
//! served (public, no token needed), or `None` when there is none. The trust API's calls are
//! in `trust.rs`; the agent's bounded reads of a repository in `repository.rs`.

use ureq::http::Method;

use crate::{Client, ClientError, Payload, segment};

/// The largest metadata document read (a vendor role of a very large feed).
const MAX_METADATA_ANSWER: u64 = 256 << 20;

impl Client {
    /// `GET /tuf/metadata/{file}` (`root.json`, `timestamp.json`, `N.snapshot.json`, …) as
    /// served; `None` when the center has no such file (404).
    pub fn tuf_metadata(&self, file: &str) -> Result<Option<Vec<u8>>, ClientError> {
        let path = format!(
            "{}{}",
            herd_proto::distribution::METADATA_PATH,
            segment(file)
        );
        match self.call(Method::GET, &path, &[], Payload::None, false) {
            Ok(response) => self
                .read_body(response, MAX_METADATA_ANSWER, &format!("GET {path}"))
                .map(Some),
            Err(err) if err.status() == Some(404) => Ok(None),
            Err(err) => Err(err),
        }
    }
}
