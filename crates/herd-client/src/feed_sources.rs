//! Vendor feed sources the center polls (`herd_proto::feed_sources`): register, list, poll now,
//! forget.

use herd_proto::feed_sources::{FeedPollResult, FeedSource, FeedSourceDoc, FeedSourceList};
use ureq::http::Method;

use crate::{Client, ClientError, MAX_JSON_ANSWER, Payload, segment};

impl Client {
    /// Registers `vendor`'s feed URL (`PUT /v1/vendors/{vendor}/feed-source`).
    pub fn put_feed_source(
        &self,
        vendor: &str,
        doc: &FeedSourceDoc,
    ) -> Result<FeedSource, ClientError> {
        let path = format!("/v1/vendors/{}/feed-source", segment(vendor));
        self.send_json(Method::PUT, &path, doc)
    }

    /// Forgets `vendor`'s feed URL (`DELETE /v1/vendors/{vendor}/feed-source`).
    pub fn delete_feed_source(&self, vendor: &str) -> Result<(), ClientError> {
        let path = format!("/v1/vendors/{}/feed-source", segment(vendor));
        let response = self.call(Method::DELETE, &path, &[], Payload::None, false)?;
        self.drain(response, &format!("DELETE {path}"))
    }

    /// Polls `vendor`'s feed URL now (`POST /v1/vendors/{vendor}/feed-source/poll`).
    pub fn poll_feed_source(&self, vendor: &str) -> Result<FeedPollResult, ClientError> {
        let path = format!("/v1/vendors/{}/feed-source/poll", segment(vendor));
        let response = self.call(Method::POST, &path, &[], Payload::None, false)?;
        self.json(response, &format!("POST {path}"), MAX_JSON_ANSWER)
    }

    /// Every feed source and its last poll (`GET /v1/feed-sources`).
    pub fn feed_sources(&self) -> Result<FeedSourceList, ClientError> {
        self.get_json("/v1/feed-sources", &[], MAX_JSON_ANSWER)
    }
}
