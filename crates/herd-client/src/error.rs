//! What can go wrong talking to the center, one variant per kind of failure, so callers decide
//! on the kind and never on the wording: the center refused (fix the input, or wait on a 5xx),
//! no answer at all or an answer cut short (retry later; downloads resume), bytes that are not
//! what was asked for (do not retry against the same source), a refused upload, local trouble.

use std::fmt;
use std::io;
use std::path::PathBuf;

use herd_proto::api::{ApiProblem, ErrorBody, codes};

/// A failed call to the center.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// The center answered with an API error: status, stable code (see
    /// [`herd_proto::api::codes`]), message, and for refused documents every problem.
    Refused {
        status: u16,
        code: String,
        message: String,
        problems: Vec<ApiProblem>,
    },
    /// No answer: connection refused or reset before an answer, the host name does not
    /// resolve, the TLS handshake did not complete, a timeout. Worth retrying later.
    Unreachable { server: String, detail: String },
    /// The TLS handshake failed on a certificate: the server's is not signed by the pinned CA
    /// (or is expired, or names another host), or the server refused the client's.
    Certificate { server: String, detail: String },
    /// An answer stopped part-way (the connection dropped mid-body, a short read, a stall).
    /// For a package download what arrived is kept and the next attempt resumes from it.
    Interrupted {
        server: String,
        /// The request, like `GET /v1/packages/…`.
        what: String,
        detail: String,
    },
    /// The center's answer is not what was asked for: downloaded bytes that fail the size or
    /// SHA-256 check (already deleted), a range or length other than requested, a body that
    /// is not what API v1 documents. Retrying against the same center will not help.
    Corrupt {
        server: String,
        what: String,
        detail: String,
    },
    /// The center closed the connection while the request body was still being sent and its
    /// answer could not be read: most likely the document exceeds the center's request size
    /// limit (HTTP 413). `sent` counts the bytes of the document handed to the connection.
    RejectedWhileSending {
        server: String,
        what: String,
        sent: u64,
        total: u64,
        detail: String,
    },
    /// Reading or writing a local file failed (the package to upload, the download's file).
    /// `kind` is the operating system's (`StorageFull` for a full disk).
    LocalIo {
        path: PathBuf,
        /// The verb: `read`, `write`, `open`, `truncate`.
        doing: &'static str,
        kind: io::ErrorKind,
        detail: String,
    },
    /// The request cannot be made from what was given: a malformed server address, CA
    /// certificate, client key or package digest, a token that is not header text.
    Invalid(String),
}

impl ClientError {
    /// Whether trying the same call again later may succeed without changing anything:
    /// the server was unreachable, the answer broke off, the server failed inside (5xx,
    /// including 503 `unavailable` when its database is down) or asked to slow down (429).
    /// A certificate failure counts too: it is fixed on the center (a new certificate, a
    /// clock set right), and a terminal that gave up would need a person to restart it.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Unreachable { .. }
            | ClientError::Certificate { .. }
            | ClientError::Interrupted { .. } => true,
            ClientError::Refused { status, .. } => *status >= 500 || *status == 429,
            ClientError::Corrupt { .. }
            | ClientError::RejectedWhileSending { .. }
            | ClientError::LocalIo { .. }
            | ClientError::Invalid(_) => false,
        }
    }

    /// The stable API error code, when the server answered with an error.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, when the server answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True when the center refused what was sent (or who sent it): a 4xx answer, or a
    /// connection closed while a document was being sent.
    pub fn is_refusal(&self) -> bool {
        match self {
            ClientError::Refused { status, .. } => (400..500).contains(status),
            ClientError::RejectedWhileSending { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn local_io(path: &std::path::Path, doing: &'static str, err: &io::Error) -> Self {
        ClientError::LocalIo {
            path: path.to_owned(),
            doing,
            kind: err.kind(),
            detail: err.to_string(),
        }
    }

    /// Builds the error for a non-2xx answer from its status and body. A body that is not
    /// an API v1 error (a proxy's HTML page, an empty 416) still gives a usable error: a
    /// code derived from the status and the start of the body as the message.
    pub(crate) fn from_answer(status: u16, body: &[u8]) -> ClientError {
        if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
            return ClientError::Refused {
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
        ClientError::Refused {
            status,
            code: code.to_owned(),
            message,
            problems: Vec::new(),
        }
    }
}

impl fmt::Display for ClientError {
    /// For a refusal `code: message`, then each problem on its own line as `  path: message`;
    /// otherwise a sentence naming the request or file and what to look at.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Refused {
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
            ClientError::Certificate { server, detail } => write!(
                f,
                "the TLS handshake with the center at {server} failed on a certificate: {detail} \
                 (the client trusts only the center's CA certificate, and a terminal presents \
                 the certificate it got at enrolment)"
            ),
            ClientError::Interrupted {
                server,
                what,
                detail,
            } => write!(
                f,
                "{what}: the answer from {server} stopped part-way: {detail}"
            ),
            ClientError::Corrupt {
                server,
                what,
                detail,
            } => write!(
                f,
                "{what}: the answer from {server} is not usable: {detail}"
            ),
            ClientError::RejectedWhileSending {
                server,
                what,
                sent,
                total,
                detail,
            } => write!(
                f,
                "{what}: the center at {server} closed the connection while the {total}-byte \
                 document was being sent ({sent} bytes had gone; {detail}), most likely because \
                 the document exceeds the center's request size limit (HTTP 413)"
            ),
            ClientError::LocalIo {
                path,
                doing,
                detail,
                ..
            } => write!(f, "cannot {doing} {}: {detail}", path.display()),
            ClientError::Invalid(message) => f.write_str(message),
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
        assert!(!ClientError::Invalid("bad URL".into()).is_retryable());
        let corrupt = ClientError::Corrupt {
            server: "https://c".into(),
            what: "GET /v1/packages/ab".into(),
            detail: "wrong digest".into(),
        };
        assert!(!corrupt.is_retryable());
        let interrupted = ClientError::Interrupted {
            server: "https://c".into(),
            what: "GET /v1/packages/ab".into(),
            detail: "broke off after 5 of 10 bytes".into(),
        };
        assert!(interrupted.is_retryable());
    }
}
