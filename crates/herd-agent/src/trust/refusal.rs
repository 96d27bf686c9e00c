//! Why the agent refused what its upstream served, as the `trust.refused` event reports it:
//! a kind from `herd_proto::api::trust_refusals` (decided here, in one place, from the
//! error's variant), the role or target refused, and the agent's words.

use herd_client::RepositoryError;
use herd_proto::api::{TrustRefusal, trust_refusals as kinds};
use herd_tuf::TrustError;
use herd_tuf::metadata::MetadataError;

/// A refusal, before it names the plan it stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub kind: &'static str,
    pub subject: Option<String>,
    pub detail: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.detail, self.kind)
    }
}

impl Refusal {
    pub fn new(kind: &'static str, subject: Option<&str>, detail: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            subject: subject.map(str::to_owned),
            detail: detail.into(),
        }
    }

    /// The event's body.
    pub fn event(&self, plan: Option<&str>) -> TrustRefusal {
        TrustRefusal {
            kind: self.kind.to_owned(),
            subject: self.subject.clone(),
            detail: self.detail.clone(),
            plan: plan.map(str::to_owned),
        }
    }

    /// Whether waiting may help (the upstream away or slow) rather than the metadata being
    /// wrong: the plan is deferred, not failed.
    pub fn is_transient(&self) -> bool {
        matches!(self.kind, kinds::UNAVAILABLE | kinds::SLOW)
    }

    /// A metadata refusal, its kind decided by [`trust_error_kind`].
    pub fn of_trust(error: &TrustError) -> Refusal {
        Refusal {
            kind: trust_error_kind(error),
            subject: trust_error_subject(error),
            detail: error.to_string(),
        }
    }

    /// A read that did not bring the document; `what` names it.
    pub fn of_read(error: &RepositoryError, what: &str) -> Refusal {
        let kind = match error {
            RepositoryError::TooLarge { .. } => kinds::MISMATCH,
            RepositoryError::Slow { .. } => kinds::SLOW,
            RepositoryError::NotFound { .. }
            | RepositoryError::Unavailable { .. }
            | RepositoryError::Local { .. }
            | RepositoryError::Invalid(_) => kinds::UNAVAILABLE,
        };
        Refusal {
            kind,
            subject: Some(what.to_owned()),
            detail: format!("{what}: {error}"),
        }
    }
}

/// The kind of a herd-tuf refusal, one arm per variant (so a new variant must be classified).
pub fn trust_error_kind(error: &TrustError) -> &'static str {
    match error {
        TrustError::Metadata(MetadataError::Threshold { .. }) => kinds::SIGNATURE,
        TrustError::Metadata(
            MetadataError::Malformed { .. }
            | MetadataError::WrongType { .. }
            | MetadataError::BadExpiry { .. },
        ) => kinds::INVALID,
        TrustError::Rollback { .. }
        | TrustError::WrongVersion { .. }
        | TrustError::Dropped { .. } => kinds::ROLLBACK,
        TrustError::Expired { .. } => kinds::EXPIRED,
        TrustError::Mismatch { .. } | TrustError::Target { .. } => kinds::MISMATCH,
        // A delegation to a key root does not pin is a signature by the wrong key.
        TrustError::Unpinned { .. } => kinds::SIGNATURE,
        TrustError::OutOfOrder { .. } | TrustError::NotDelegated { .. } => kinds::INVALID,
    }
}

fn trust_error_subject(error: &TrustError) -> Option<String> {
    match error {
        TrustError::Metadata(
            MetadataError::Threshold { role, .. }
            | MetadataError::Malformed { role, .. }
            | MetadataError::WrongType { role, .. }
            | MetadataError::BadExpiry { role, .. },
        )
        | TrustError::Rollback { role, .. }
        | TrustError::WrongVersion { role, .. }
        | TrustError::Expired { role, .. }
        | TrustError::Mismatch { role, .. }
        | TrustError::OutOfOrder { role }
        | TrustError::NotDelegated { role, .. }
        | TrustError::Dropped { role }
        | TrustError::Unpinned { role, .. } => Some(role.clone()),
        TrustError::Target { path, .. } => Some(path.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_one_the_center_counts() {
        let errors = [
            TrustError::Rollback {
                role: "timestamp".into(),
                offered: 1,
                trusted: 2,
            },
            TrustError::Expired {
                role: "timestamp".into(),
                expires: "x".into(),
            },
            TrustError::Metadata(MetadataError::Threshold {
                role: "root".into(),
                valid: 1,
                threshold: 2,
            }),
            TrustError::Target {
                path: "p".into(),
                detail: "d".into(),
            },
        ];
        let kinds_seen: Vec<&str> = errors.iter().map(trust_error_kind).collect();
        assert_eq!(
            kinds_seen,
            [
                kinds::ROLLBACK,
                kinds::EXPIRED,
                kinds::SIGNATURE,
                kinds::MISMATCH
            ]
        );
        for kind in kinds_seen {
            assert!(kinds::ALL.contains(&kind));
        }
        let slow = RepositoryError::Slow {
            url: "u".into(),
            detail: "d".into(),
        };
        assert_eq!(Refusal::of_read(&slow, "timestamp.json").kind, kinds::SLOW);
        assert!(Refusal::of_read(&slow, "x").is_transient());
    }
}
