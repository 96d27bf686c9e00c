//! The Update Framework (TUF specification 1.0) for Herd, as a pure library: canonical JSON
//! (`canonical`), ed25519 keys (`keys`), the metadata of the roles root, timestamp, snapshot,
//! targets and delegated targets with signing and threshold checks (`metadata`), and the
//! client's trusted set that refuses rollback, freeze, mix-and-match, tampered or
//! under-signed metadata and targets (`client`), the repository side that signs what
//! changed or is about to expire (`repository`), signing key files (`keyfile`), and the root
//! key ceremony: the next root, and a proposal gathering the root keys' signatures (`ceremony`).
//!
//! No I/O, no clock: documents are bytes, `now` is an argument. The center signs with it and
//! serves what it signs; the agent verifies with it whatever its upstream (center, site,
//! mirror) hands over. The formats are TUF's own, so an independent client (python-tuf's
//! `ngclient`) verifies the same metadata (`tests/python_tuf.rs`).

pub mod canonical;
pub mod ceremony;
pub mod client;
pub mod keyfile;
pub mod keys;
pub mod metadata;
pub mod repository;

pub use client::{TargetSearch, TrustError, TrustedSet, verify_target};
pub use keys::{PublicKey, SigningKey};
pub use metadata::{
    DelegatedRole, Delegations, MetaFile, RoleKeys, Root, Snapshot, TargetFile, Targets,
    TimestampRole, format_expiry, hashes_of, sign,
};
