//! Operators' alert calls (`herd_proto::alerts`): the delivery record, the channels and rules
//! in force, and a test alert to one channel.

use herd_proto::alerts::{AlertList, AlertSetup, AlertTestResult};
use ureq::http::Method;

use crate::{Client, ClientError, MAX_JSON_ANSWER, Payload, segment};

impl Client {
    /// Deliveries newest first (`GET /v1/alerts`), older than `before` when given.
    pub fn alerts(&self, before: Option<u64>, limit: u32) -> Result<AlertList, ClientError> {
        let before = before.map(|id| id.to_string());
        let limit = limit.to_string();
        let mut query = vec![("limit", limit.as_str())];
        if let Some(before) = &before {
            query.push(("before", before.as_str()));
        }
        self.get_json("/v1/alerts", &query, MAX_JSON_ANSWER)
    }

    /// The channels and rules of the center's configuration (`GET /v1/alerts/setup`).
    pub fn alert_setup(&self) -> Result<AlertSetup, ClientError> {
        self.get_json("/v1/alerts/setup", &[], MAX_JSON_ANSWER)
    }

    /// Sends a test alert to channel `name` (`POST /v1/alerts/channels/{name}/test`).
    pub fn test_alert_channel(&self, name: &str) -> Result<AlertTestResult, ClientError> {
        let path = format!("/v1/alerts/channels/{}/test", segment(name));
        let response = self.call(Method::POST, &path, &[], Payload::None, false)?;
        self.json(response, &format!("POST {path}"), MAX_JSON_ANSWER)
    }
}
