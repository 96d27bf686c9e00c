//! API v1's messages between operators and device users (`/v1/messages`,
//! `/v1/terminal/messages`, and the `message.sent` event a terminal's answer travels in).

use serde::{Deserialize, Serialize};

/// The longest message text, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4096;

/// An operator's message (`POST /v1/messages`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessageToSend {
    /// `all`, `group:<group id>` or `terminal:<terminal id>`.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^(all|group:[^\u0000]+|terminal:[^\u0000]+)$")
    )]
    pub to: String,
    /// 1 to 4096 characters, not only spaces.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 4096,
            pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"
        )
    )]
    pub text: String,
}

/// A stored message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Message {
    pub id: u64,
    /// RFC 3339.
    pub at: String,
    /// `operator` or `terminal:<id>`.
    pub from: String,
    /// `all`, `group`, `terminal`, or `center` (a terminal's answer).
    pub audience: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The site of the terminal it is to or from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<u64>,
}

/// Messages oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessageList {
    pub messages: Vec<Message>,
}

/// The data of a terminal's `message.sent` event: the user's answer or status, sent through
/// the outbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessageAnswer {
    pub text: String,
    /// The message answered, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<u64>,
}
