//! Herd's wire formats — the compatibility contract with vendors, agents and scripts —
//! and their validation into `herd-core`'s model.
//!
//! Each format is a plain serde struct mirroring SPEC §4 field for field (unknown fields are
//! refused, so a typo is an error rather than a silently ignored setting). Validation turns a
//! document into the indexed model, or into a [`ValidationError`] that names the document,
//! the JSON path and what is wrong, and lists every problem found, not just the first.

pub mod alerts;
pub mod api;
pub mod catalog;
pub mod consent;
pub mod distribution;
pub mod fault;
pub mod feed_sources;
pub mod layout;
pub mod merge;
pub mod messages;
pub mod plan;
pub mod site;
pub mod terminal;

mod error;

pub use error::{Problem, ValidationError};
