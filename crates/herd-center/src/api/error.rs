//! The one place where a failure becomes an HTTP status: [`status`] maps every [`ErrorKind`],
//! and a [`CenterError`] (which handlers return as it is) answers as `{"error": {"code", "message", "problems"}}` with the
//! kind's stable code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herd_proto::api::{ApiError, ErrorBody};

use crate::error::{CenterError, ErrorKind};

/// The HTTP status of each kind of failure.
pub fn status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated
        | ErrorKind::TokenExpired
        | ErrorKind::ClientCertRequired
        | ErrorKind::CertRevoked => StatusCode::UNAUTHORIZED,
        ErrorKind::ClientCertNotTerminal
        | ErrorKind::IdentityMismatch
        | ErrorKind::Forbidden
        | ErrorKind::ForbiddenVendor
        | ErrorKind::EnrolTokenInvalid => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict | ErrorKind::TerminalExists => StatusCode::CONFLICT,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        // Well-formed by the schema, refused on content the schema cannot express.
        ErrorKind::CsrInvalid
        | ErrorKind::FeedInvalid
        | ErrorKind::InventoryInvalid
        | ErrorKind::DocumentInvalid
        | ErrorKind::DigestMismatch => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::WrongRole => StatusCode::MISDIRECTED_REQUEST,
    }
}

impl IntoResponse for CenterError {
    fn into_response(self) -> Response {
        let CenterError {
            kind,
            message,
            problems,
        } = self;
        let status = status(kind);
        if status.is_server_error() {
            tracing::error!(code = kind.code(), %message, "request failed");
        }
        let body = ErrorBody {
            error: ApiError {
                code: kind.code().to_owned(),
                message,
                problems,
            },
        };
        (status, axum::Json(body)).into_response()
    }
}
