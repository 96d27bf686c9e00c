//! Vaccine and program packages in the `archive` format (SPEC §3.1, §6): a tar stream, gzip-
//! or zstd-compressed, with a manifest `herd-package.json` at its root naming the product, its
//! kind, vendor, version, definitions `seq` and pattern name, the engine and definition files it
//! carries, the test pattern those definitions must detect, a program's health check, and
//! optional hooks.
//!
//! - [`manifest`]: the manifest format and its validation (pure).
//! - [`archive`]: deterministic encoding and checked reading of the tar stream (pure).
//! - [`content_of`]: a package's uncompressed tar, what definition deltas (`herd-delta`) are
//!   made between and applied to; [`unpack_tar`] unpacks it.
//! - [`unpack_file`]: unpacking a package into a staging directory from the same pass that
//!   checks it, through directory handles, with the agent's owner and safe modes.
//! - [`build`] / [`build_dir`]: writing a package file and its catalog entries.
//! - [`inspect_file`], [`verify_installed`], [`installed_product`]: what the agent does with a
//!   downloaded package and an unpacked product under its prefix.
//!
//! Why the agent verifies with `herd-scan`: a vaccine product here is Herd's own scan engine
//! loading the ClamAV-format definitions the vendor ships, so "the product works" means exactly
//! "these definitions load and detect the vendor's own test pattern".

pub mod archive;
pub mod manifest;

mod build;
mod installed;
mod unpack;
#[cfg(test)]
mod unpack_attacks;
mod ustar;

pub use archive::{Codec, ContentError, InspectError, Inspection, MemberKind, content_of};
pub use build::{BuildError, BuiltPackage, Detection, PackageSpec, build, build_dir, build_with};
pub use installed::{
    Expected, InstalledError, VerifyError, VerifyOutcome, active_dir, current_target, inspect_file,
    installed_manifest, installed_product, read_manifest, verify_installed,
};
pub use manifest::{ENGINE, HealthCheck, HooksRunAs, MANIFEST_FILE, Manifest, PACKAGE_FORMAT};
pub use unpack::{UnpackError, unpack_file, unpack_tar};

#[cfg(test)]
mod tests;
