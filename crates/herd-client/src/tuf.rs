//! Signed distribution's calls as the key tools need them (contract of issue 11): the center's
//! TUF metadata as served under `/tuf/metadata/` (public, no token needed), root installation,
//! pending online keys, a vendor's signing key and the role documents a vendor signs itself.
//!
//! Answers are read as JSON values with only the fields the tools use typed here, so these calls
//! do not depend on the center's status types; where the center's typed calls exist (its
//! `trust.rs`), they say the same to the same routes.

use serde::{Deserialize, Serialize};
use ureq::http::Method;

use crate::{Client, ClientError, MAX_JSON_ANSWER, Payload, segment};

/// The largest metadata document read (a vendor role of a very large feed).
const MAX_METADATA_ANSWER: u64 = 256 << 20;

/// A pending online key the center generated (`POST /v1/trust/online-keys/{role}`): it becomes
/// active when a root naming it is installed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingOnlineKey {
    pub role: String,
    pub keyid: String,
    /// TUF's key JSON.
    pub public: serde_json::Value,
}

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

    /// Installs the next root (`PUT /v1/trust/root`, the signed root.json as its body); the
    /// answer is the trust status.
    pub fn install_tuf_root(&self, root_json: &[u8]) -> Result<serde_json::Value, ClientError> {
        self.send_raw(Method::PUT, "/v1/trust/root", root_json)
    }

    /// Asks the center for a pending online key for `role` (timestamp, snapshot or targets).
    pub fn new_pending_online_key(&self, role: &str) -> Result<PendingOnlineKey, ClientError> {
        let path = format!("/v1/trust/online-keys/{}", segment(role));
        let response = self.call(Method::POST, &path, &[], Payload::None, false)?;
        self.json(response, &format!("POST {path}"), MAX_JSON_ANSWER)
    }

    /// Registers a vendor's public signing key (`PUT /v1/vendors/{vendor}/signing-key`, body
    /// `{"public": <TUF key JSON>}`).
    pub fn register_vendor_signing_key(
        &self,
        vendor: &str,
        public: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        let path = format!("/v1/vendors/{}/signing-key", segment(vendor));
        let body = serde_json::to_vec(&serde_json::json!({ "public": public }))
            .expect("a JSON value serialises");
        self.send_raw(Method::PUT, &path, &body)
    }

    /// Uploads a role document the vendor signed (`PUT /v1/tuf/roles/{role}`), as signed.
    pub fn upload_vendor_role(
        &self,
        role: &str,
        signed: &[u8],
    ) -> Result<serde_json::Value, ClientError> {
        let path = format!("/v1/tuf/roles/{}", segment(role));
        self.send_raw(Method::PUT, &path, signed)
    }

    /// Sends a JSON body exactly as given (signed documents must keep their bytes); an empty
    /// answer is `null`.
    fn send_raw(
        &self,
        method: Method,
        path: &str,
        body: &[u8],
    ) -> Result<serde_json::Value, ClientError> {
        let what = format!("{method} {path}");
        let response = self.call(method, path, &[], Payload::Json(body.to_vec()), false)?;
        let bytes = self.read_body(response, MAX_JSON_ANSWER, &what)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|err| ClientError::Corrupt {
            server: self.server().to_owned(),
            what,
            detail: format!("the center's answer is not JSON: {err}"),
        })
    }
}
