//! The center's domain error: what kind of failure it is (from which the stable machine code of
//! `herd_proto::api::codes` follows), a message a person can act on, and, for refused
//! documents, every problem found. It knows nothing of HTTP: `api/error.rs` is the one place
//! where a kind becomes a status.

use herd_proto::api::{ApiProblem, codes};
use herd_store::{EnrolError, StoreError};

use crate::blobs::BlobError;

/// Why a request to the center failed. Every domain service returns it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CenterError {
    pub kind: ErrorKind,
    pub message: String,
    /// Every problem of a refused document, each with its JSON path; empty otherwise.
    pub problems: Vec<ApiProblem>,
}

/// The kinds of failure, fine enough that the stable code and the HTTP status are each a
/// function of the kind alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed: unreadable body, bad JSON, a field out of its range.
    BadRequest,
    /// The request's media type is not the one the endpoint reads.
    UnsupportedMediaType,
    /// The certificate signing request of an enrolment cannot be used (a well-formed request
    /// whose content is refused, like the other `…Invalid` kinds).
    CsrInvalid,
    /// No API token, an unreadable one, or an unknown one.
    Unauthenticated,
    /// The API token has expired.
    TokenExpired,
    /// A terminal endpoint was called without a client certificate.
    ClientCertRequired,
    /// The client certificate does not name a terminal.
    ClientCertNotTerminal,
    /// The client certificate is no longer the terminal's (re-enrolled or deleted).
    CertRevoked,
    /// A terminal claimed to be another terminal.
    IdentityMismatch,
    /// Valid credentials that may not do this (a vendor on an operator endpoint).
    Forbidden,
    /// A vendor acting for another vendor.
    ForbiddenVendor,
    /// The enrolment token is unknown, expired or used up.
    EnrolTokenInvalid,
    NotFound,
    /// The request conflicts with the current state (a group still in use).
    Conflict,
    /// A terminal with the requested id is already enrolled.
    TerminalExists,
    /// A body or an upload over its limit.
    TooLarge,
    /// A quota used up (a terminal's stored events): the request may succeed later.
    QuotaExceeded,
    /// A request body that arrived too slowly.
    RequestTimeout,
    /// A catalog feed that does not validate, alone or merged with the others.
    FeedInvalid,
    /// A check-in's inventory that does not fit the catalog.
    InventoryInvalid,
    /// A request that matches its schema but whose content is refused where the schema cannot
    /// say so (a group policy against the catalog, placement rules, fields that contradict
    /// each other or the path). The code stays `bad_request`, as API v1 has always answered.
    DocumentInvalid,
    /// An upload whose bytes do not have the announced SHA-256 or size.
    DigestMismatch,
    /// The store is failing or the center is shutting down.
    Unavailable,
    /// A fault inside the center.
    Internal,
    /// What the other role does: a center-only action asked of a site server.
    WrongRole,
}

impl ErrorKind {
    /// The stable machine code of API v1.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::BadRequest | ErrorKind::DocumentInvalid => codes::BAD_REQUEST,
            ErrorKind::UnsupportedMediaType => codes::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::CsrInvalid => codes::CSR_INVALID,
            ErrorKind::Unauthenticated => codes::UNAUTHENTICATED,
            ErrorKind::TokenExpired => codes::TOKEN_EXPIRED,
            ErrorKind::ClientCertRequired | ErrorKind::ClientCertNotTerminal => {
                codes::CLIENT_CERT_REQUIRED
            }
            ErrorKind::CertRevoked => codes::CERT_REVOKED,
            ErrorKind::IdentityMismatch => codes::IDENTITY_MISMATCH,
            ErrorKind::Forbidden => codes::FORBIDDEN,
            ErrorKind::ForbiddenVendor => codes::FORBIDDEN_VENDOR,
            ErrorKind::EnrolTokenInvalid => codes::ENROL_TOKEN_INVALID,
            ErrorKind::NotFound => codes::NOT_FOUND,
            ErrorKind::Conflict => codes::CONFLICT,
            ErrorKind::TerminalExists => codes::TERMINAL_EXISTS,
            ErrorKind::TooLarge => codes::TOO_LARGE,
            ErrorKind::QuotaExceeded => codes::QUOTA_EXCEEDED,
            ErrorKind::RequestTimeout => codes::REQUEST_TIMEOUT,
            ErrorKind::FeedInvalid => codes::FEED_INVALID,
            ErrorKind::InventoryInvalid => codes::INVENTORY_INVALID,
            ErrorKind::DigestMismatch => codes::DIGEST_MISMATCH,
            ErrorKind::Unavailable => codes::UNAVAILABLE,
            ErrorKind::Internal => codes::INTERNAL,
            ErrorKind::WrongRole => codes::WRONG_ROLE,
        }
    }
}

pub type CenterResult<T> = Result<T, CenterError>;

impl CenterError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> CenterError {
        CenterError {
            kind,
            message: message.into(),
            problems: Vec::new(),
        }
    }

    /// The stable machine code (`herd_proto::api::codes`).
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    pub fn bad_request(message: impl Into<String>) -> CenterError {
        CenterError::new(ErrorKind::BadRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> CenterError {
        CenterError::new(ErrorKind::NotFound, message)
    }

    pub fn forbidden(message: impl Into<String>) -> CenterError {
        CenterError::new(ErrorKind::Forbidden, message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> CenterError {
        CenterError::new(ErrorKind::Unauthenticated, message)
    }

    pub fn internal(message: impl Into<String>) -> CenterError {
        CenterError::new(ErrorKind::Internal, message)
    }

    /// A refused document, with every problem found.
    pub fn invalid(
        kind: ErrorKind,
        message: impl Into<String>,
        error: &herd_proto::ValidationError,
    ) -> CenterError {
        CenterError {
            kind,
            message: message.into(),
            problems: error.problems.iter().map(ApiProblem::from).collect(),
        }
    }
}

impl From<StoreError> for CenterError {
    fn from(err: StoreError) -> CenterError {
        match err {
            StoreError::Conflict(message) => CenterError::new(ErrorKind::Conflict, message),
            StoreError::NotFound(message) => CenterError::not_found(message),
            StoreError::Open { .. } | StoreError::Db(_) => CenterError::new(
                ErrorKind::Unavailable,
                format!("the center's database is failing: {err}"),
            ),
            other => CenterError::internal(other.to_string()),
        }
    }
}

impl From<EnrolError> for CenterError {
    fn from(err: EnrolError) -> CenterError {
        match err {
            EnrolError::TokenUnknown | EnrolError::TokenExpired | EnrolError::TokenUsedUp => {
                CenterError::new(ErrorKind::EnrolTokenInvalid, err.to_string())
            }
            EnrolError::TerminalExists(_) => {
                CenterError::new(ErrorKind::TerminalExists, err.to_string())
            }
            EnrolError::TokenForAnotherTerminal { .. } => {
                CenterError::new(ErrorKind::EnrolTokenInvalid, err.to_string())
            }
            EnrolError::ReenrolTerminalGone(_) => CenterError::not_found(err.to_string()),
            EnrolError::Store(err) => err.into(),
        }
    }
}

impl From<BlobError> for CenterError {
    fn from(err: BlobError) -> CenterError {
        let kind = match err {
            BlobError::BadDigest { .. } | BlobError::Source(_) => ErrorKind::BadRequest,
            BlobError::DigestMismatch { .. } | BlobError::SizeMismatch { .. } => {
                ErrorKind::DigestMismatch
            }
            BlobError::TooLarge { .. } => ErrorKind::TooLarge,
            BlobError::QuotaExceeded { .. } => ErrorKind::QuotaExceeded,
            BlobError::NotFound => ErrorKind::NotFound,
            BlobError::Io { .. } => ErrorKind::Internal,
            // The object store is down or refuses: a later try may succeed.
            BlobError::Remote(_) => ErrorKind::Unavailable,
        };
        let message = match err {
            BlobError::TooLarge { limit } => {
                format!("the package is larger than the limit of {limit} bytes (max_package_bytes)")
            }
            BlobError::QuotaExceeded { quota, room } => format!(
                "the package would exceed this vendor's storage quota of {quota} bytes ({room} bytes left; vendor_storage_quota_bytes): packages no current feed lists are deleted after blob_grace_secs"
            ),
            other => other.to_string(),
        };
        CenterError::new(kind, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_from_kinds_without_http() {
        let err = CenterError::from(EnrolError::TokenExpired);
        assert_eq!(err.code(), codes::ENROL_TOKEN_INVALID);
        let err = CenterError::from(BlobError::TooLarge { limit: 10 });
        assert_eq!(
            (err.kind, err.code()),
            (ErrorKind::TooLarge, codes::TOO_LARGE)
        );
        assert_eq!(
            err.message,
            "the package is larger than the limit of 10 bytes (max_package_bytes)"
        );
        assert_eq!(ErrorKind::DocumentInvalid.code(), codes::BAD_REQUEST);
    }
}
