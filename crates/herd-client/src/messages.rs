//! Messages (`herd_proto::messages`): operators send and list them; a terminal reads its inbox.

use herd_proto::messages::{Message, MessageList, MessageToSend};
use ureq::http::Method;

use crate::{Client, ClientError, MAX_JSON_ANSWER};

impl Client {
    /// Sends an operator's message (`POST /v1/messages`).
    pub fn send_message(&self, message: &MessageToSend) -> Result<Message, ClientError> {
        self.send_json(Method::POST, "/v1/messages", message)
    }

    /// Messages after `after` (`GET /v1/messages`), of one terminal's or site's thread.
    pub fn messages(
        &self,
        after: u64,
        limit: u32,
        terminal: Option<&str>,
        site: Option<&str>,
    ) -> Result<MessageList, ClientError> {
        let (after, limit) = (after.to_string(), limit.to_string());
        let mut query = vec![("after", after.as_str()), ("limit", limit.as_str())];
        if let Some(terminal) = terminal {
            query.push(("terminal", terminal));
        }
        if let Some(site) = site {
            query.push(("site", site));
        }
        self.get_json("/v1/messages", &query, MAX_JSON_ANSWER)
    }

    /// The terminal's inbox after `after` (`GET /v1/terminal/messages`, with its certificate).
    pub fn terminal_messages(&self, after: u64) -> Result<MessageList, ClientError> {
        let after = after.to_string();
        self.get_json(
            "/v1/terminal/messages",
            &[("after", after.as_str())],
            MAX_JSON_ANSWER,
        )
    }
}
