//! API errors: the one place where a failure becomes an HTTP status, a stable machine code
//! (`herd_proto::api::codes`) and a message a person can act on.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herd_proto::api::{ApiError, ApiProblem, ErrorBody, codes};
use herd_store::{EnrolError, StoreError};

/// An error answer of API v1. Handlers return `Result<_, ApiErr>`.
#[derive(Debug)]
pub struct ApiErr {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub problems: Vec<ApiProblem>,
}

pub type ApiResult<T> = Result<T, ApiErr>;

impl ApiErr {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiErr {
        ApiErr {
            status,
            code,
            message: message.into(),
            problems: Vec::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiErr {
        ApiErr::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiErr {
        ApiErr::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiErr {
        ApiErr::new(StatusCode::FORBIDDEN, codes::FORBIDDEN, message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> ApiErr {
        ApiErr::new(StatusCode::UNAUTHORIZED, codes::UNAUTHENTICATED, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiErr {
        ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL, message)
    }

    /// A refused document, with every problem found.
    pub fn invalid(
        code: &'static str,
        message: impl Into<String>,
        error: &herd_proto::ValidationError,
    ) -> ApiErr {
        ApiErr {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code,
            message: message.into(),
            problems: error.problems.iter().map(ApiProblem::from).collect(),
        }
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        let body = ErrorBody {
            error: ApiError {
                code: self.code.to_owned(),
                message: self.message,
                problems: self.problems,
            },
        };
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<StoreError> for ApiErr {
    fn from(err: StoreError) -> ApiErr {
        match err {
            StoreError::Conflict(message) => {
                ApiErr::new(StatusCode::CONFLICT, codes::CONFLICT, message)
            }
            StoreError::NotFound(message) => ApiErr::not_found(message),
            StoreError::Open { .. } | StoreError::Db(_) => ApiErr::new(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::UNAVAILABLE,
                format!("the center's database is failing: {err}"),
            ),
            other => ApiErr::internal(other.to_string()),
        }
    }
}

impl From<EnrolError> for ApiErr {
    fn from(err: EnrolError) -> ApiErr {
        match err {
            EnrolError::TokenUnknown | EnrolError::TokenExpired | EnrolError::TokenUsedUp => {
                ApiErr::new(
                    StatusCode::FORBIDDEN,
                    codes::ENROL_TOKEN_INVALID,
                    err.to_string(),
                )
            }
            EnrolError::TerminalExists(_) => ApiErr::new(
                StatusCode::CONFLICT,
                codes::TERMINAL_EXISTS,
                err.to_string(),
            ),
            EnrolError::Store(err) => err.into(),
        }
    }
}
