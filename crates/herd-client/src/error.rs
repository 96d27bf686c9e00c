//! What can go wrong talking to the center, sorted by what the caller should do about it:
//! an answer from the server (fix the input, or wait on a 5xx), no answer at all (retry
//! later), or a local problem.

use std::fmt;

use herd_proto::api::{ApiProblem, ErrorBody, codes};

/// A failed call to the center.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// The server answered with an API error: status, stable code (see
    /// [`herd_proto::api::codes`]), message, and for refused documents every problem.
    Api {
        status: u16,
        code: String,
        message: String,
        problems: Vec<ApiProblem>,
    },
    /// Could not reach the server (connection refused, TLS failure, timeout, connection
    /// dropped mid-answer). The agent's outbox retries these.
    Unreachable { server: String, detail: String },
    /// Anything else: an answer that is not what API v1 promises, local I/O, bad local
    /// configuration (an unreadable CA certificate, a malformed server URL).
    Other(String),
}

impl ClientError {
    /// Whether trying the same call again later may succeed without changing anything:
    /// the server was unreachable, failed inside (5xx, including 503 `unavailable` when its
    /// database is down), or asked to slow down (429).
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } => true,
            ClientError::Api { status, .. } => *status >= 500 || *status == 429,
            ClientError::Other(_) => false,
        }
    }

    /// The stable API error code, when the server answered with an error.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, when the server answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True for a 4xx answer: the server refused what was sent (or who sent it).
    pub fn is_refusal(&self) -> bool {
        matches!(self, ClientError::Api { status, .. } if (400..500).contains(status))
    }

    /// Builds the error for a non-2xx answer from its status and body. A body that is not
    /// an API v1 error (a proxy's HTML page, an empty 416) still gives a usable error: a
    /// code derived from the status and the start of the body as the message.
    pub(crate) fn from_answer(status: u16, body: &[u8]) -> ClientError {
        if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
            return ClientError::Api {
                status,
                code: parsed.error.code,
                message: parsed.error.message,
                problems: parsed.error.problems,
            };
        }
        let code = match status {
            400 => codes::BAD_REQUEST,
            401 => codes::UNAUTHENTICATED,
            403 => codes::FORBIDDEN,
            404 => codes::NOT_FOUND,
            409 => codes::CONFLICT,
            413 => codes::TOO_LARGE,
            416 => codes::RANGE_NOT_SATISFIABLE,
            503 => codes::UNAVAILABLE,
            500..=599 => codes::INTERNAL,
            _ => "http_error",
        };
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let message = if text.is_empty() {
            format!("the server answered HTTP {status} without an explanation")
        } else {
            let excerpt: String = text.chars().take(200).collect();
            let ellipsis = if excerpt.len() < text.len() {
                "…"
            } else {
                ""
            };
            format!("the server answered HTTP {status}: {excerpt}{ellipsis}")
        };
        ClientError::Api {
            status,
            code: code.to_owned(),
            message,
            problems: Vec::new(),
        }
    }
}

impl fmt::Display for ClientError {
    /// `code: message`, then each problem on its own line as `  path: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Api {
                code,
                message,
                problems,
                ..
            } => {
                write!(f, "{code}: {message}")?;
                for problem in problems {
                    write!(f, "\n  {}: {}", problem.path, problem.message)?;
                }
                Ok(())
            }
            ClientError::Unreachable { server, detail } => {
                write!(f, "cannot reach the center at {server}: {detail}")
            }
            ClientError::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ClientError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_display_code_message_and_every_problem() {
        let body = br#"{"error": {"code": "feed_invalid", "message": "the feed of maker-a has 2 problems",
            "problems": [{"path": "$.releases[0].seq", "message": "must be positive"},
                         {"path": "$.threats[1].danger", "message": "\"huge\" is not a danger level"}]}}"#;
        let err = ClientError::from_answer(422, body);
        assert_eq!(err.code(), Some("feed_invalid"));
        assert_eq!(err.status(), Some(422));
        assert!(err.is_refusal());
        assert!(!err.is_retryable());
        assert_eq!(
            err.to_string(),
            "feed_invalid: the feed of maker-a has 2 problems\n  $.releases[0].seq: must be positive\n  $.threats[1].danger: \"huge\" is not a danger level"
        );
    }

    #[test]
    fn answers_that_are_not_api_errors_get_a_code_from_their_status() {
        let err = ClientError::from_answer(416, b"");
        assert_eq!(err.code(), Some(codes::RANGE_NOT_SATISFIABLE));
        assert_eq!(
            err.to_string(),
            "range_not_satisfiable: the server answered HTTP 416 without an explanation"
        );

        let page = format!("<html>{}</html>", "x".repeat(500));
        let err = ClientError::from_answer(502, page.as_bytes());
        assert_eq!(err.code(), Some(codes::INTERNAL));
        assert!(err.is_retryable());
        let shown = err.to_string();
        assert!(
            shown.starts_with("internal: the server answered HTTP 502: <html>xxx"),
            "{shown}"
        );
        assert!(shown.ends_with('…'), "{shown}");
        assert!(shown.len() < 300, "{shown}");
    }

    #[test]
    fn retryable_means_unreachable_or_a_server_side_failure() {
        let unreachable = ClientError::Unreachable {
            server: "https://127.0.0.1:8443".into(),
            detail: "connection refused".into(),
        };
        assert!(unreachable.is_retryable());
        assert_eq!(
            unreachable.to_string(),
            "cannot reach the center at https://127.0.0.1:8443: connection refused"
        );
        let unavailable = ClientError::from_answer(
            503,
            br#"{"error": {"code": "unavailable", "message": "the center's database is failing"}}"#,
        );
        assert!(unavailable.is_retryable());
        assert!(!unavailable.is_refusal());
        assert!(ClientError::from_answer(429, b"slow down").is_retryable());
        assert!(!ClientError::from_answer(401, b"").is_retryable());
        assert!(!ClientError::Other("bad JSON".into()).is_retryable());
    }
}
