//! Signed distribution's API (`/v1/trust`, vendors' signing keys and roles): the repository's
//! status, the next root, online keys for it, a vendor's key and its own signed role.

use herd_proto::api::{
    OnlineKey, RoleAccepted, TrustStatus, VendorSigningKey, VendorSigningKeyInfo,
};
use ureq::http::Method;

use crate::{Client, ClientError, MAX_JSON_ANSWER, Payload, segment};

impl Client {
    /// The signed repository's status (`GET /v1/trust`, operator).
    pub fn trust_status(&self) -> Result<TrustStatus, ClientError> {
        self.get_json("/v1/trust", &[], MAX_JSON_ANSWER)
    }

    /// Installs the next root, `bytes` as signed (`PUT /v1/trust/root`, operator).
    pub fn install_root(&self, bytes: &[u8]) -> Result<TrustStatus, ClientError> {
        self.send_raw_json(Method::PUT, "/v1/trust/root", bytes)
    }

    /// A new pending online key for `role` (`POST /v1/trust/online-keys/{role}`, operator).
    pub fn new_online_key(&self, role: &str) -> Result<OnlineKey, ClientError> {
        let path = format!("/v1/trust/online-keys/{}", segment(role));
        let response = self.call(Method::POST, &path, &[], Payload::None, false)?;
        self.json(response, &format!("POST {path}"), MAX_JSON_ANSWER)
    }

    /// Registers `vendor`'s signing key (`PUT /v1/vendors/{vendor}/signing-key`).
    pub fn register_signing_key(
        &self,
        vendor: &str,
        key: &VendorSigningKey,
    ) -> Result<VendorSigningKeyInfo, ClientError> {
        let path = format!("/v1/vendors/{}/signing-key", segment(vendor));
        self.send_json(Method::PUT, &path, key)
    }

    /// Uploads a vendor's own signed role document (`PUT /v1/tuf/roles/{role}`).
    pub fn put_role(&self, role: &str, bytes: &[u8]) -> Result<RoleAccepted, ClientError> {
        let path = format!("/v1/tuf/roles/{}", segment(role));
        self.send_raw_json(Method::PUT, &path, bytes)
    }

    fn send_raw_json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        bytes: &[u8],
    ) -> Result<T, ClientError> {
        let what = format!("{method} {path}");
        let response = self.call(method, path, &[], Payload::Json(bytes.to_vec()), false)?;
        self.json(response, &what, MAX_JSON_ANSWER)
    }
}
