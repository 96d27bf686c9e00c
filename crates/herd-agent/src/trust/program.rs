//! A replacement program (fault recovery's `replace` verdict, SPEC §3.3.4) checked against
//! signed metadata before anything is downloaded, and downloaded bounded by what was signed:
//! the verdict names a target, and the agent installs it only if the verified metadata lists
//! it, its signed `custom.herd` describes exactly the program, vendor and version the verdict
//! names, for this terminal's platform, as an `archive` package, and the bytes have the signed
//! length and SHA-256. The center's word (the verdict) only says which target to look for.

use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use herd_client::Repository;
use herd_proto::api::trust_refusals as kinds;
use herd_proto::distribution::{PackageCustom, package_target, read_custom};
use herd_proto::fault::Alternative;
use serde::{Deserialize, Serialize};

use super::{MirrorFetcher, Refusal, TrustClient};
use crate::execute::Fetcher;
use crate::supervise::collect::sha256_file;

/// A program package the signed metadata vouches for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedProgram {
    pub target: String,
    /// Lowercase hex, from the signed target.
    pub sha256: String,
    pub length: u64,
}

/// Looks the alternative's target up in the refreshed metadata of `client` and checks its
/// signed description against the alternative and `platform`.
pub fn verify_program(
    client: &mut TrustClient,
    alternative: &Alternative,
    platform: &str,
) -> Result<SignedProgram, Refusal> {
    let target = alternative.target.as_deref().ok_or_else(|| {
        Refusal::new(
            kinds::UNLISTED,
            None,
            format!(
                "the verdict to install {} names no signed target",
                alternative.program
            ),
        )
    })?;
    let (_, file) = client.find_target(target)?.ok_or_else(|| {
        Refusal::new(
            kinds::UNLISTED,
            Some(target),
            format!(
                "no role delegated for {target} lists it in the verified metadata (an unsigned \
                 program is never installed)"
            ),
        )
    })?;
    let custom: PackageCustom = read_custom(target, file.custom.as_ref())
        .map_err(|why| Refusal::new(kinds::INVALID, Some(target), why))?;
    let named = package_target(
        &custom.vendor,
        &custom.product,
        &custom.version,
        &custom.platform,
        &custom.format,
    );
    let wrong = |detail: String| Refusal::new(kinds::UNLISTED, Some(target), detail);
    if named != target {
        return Err(wrong(format!(
            "the target's signed metadata describes {named}, not {target}"
        )));
    }
    if (&custom.product, &custom.vendor, &custom.version)
        != (
            &alternative.program,
            &alternative.vendor,
            &alternative.version,
        )
    {
        return Err(wrong(format!(
            "the verdict names {} {} of {}, but the signed target is {} {} of {} (wrong software)",
            alternative.program,
            alternative.version,
            alternative.vendor,
            custom.product,
            custom.version,
            custom.vendor
        )));
    }
    if custom.platform != platform {
        return Err(wrong(format!(
            "{target} is built for {}, this terminal is {platform} (wrong software)",
            custom.platform
        )));
    }
    if custom.format != herd_core::PackageFormat::Archive.as_str() {
        return Err(wrong(format!(
            "{target} is a {} package; a replacement program is installed from an archive",
            custom.format
        )));
    }
    let sha256 = file
        .hashes
        .get("sha256")
        .map(|h| h.to_ascii_lowercase())
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| Refusal::new(kinds::INVALID, Some(target), "the target has no SHA-256"))?;
    Ok(SignedProgram {
        target: target.to_owned(),
        sha256,
        length: file.length,
    })
}

/// Downloads the signed program into `dest` (through `<dest>.part`, never followed), bounded
/// by its signed length, and keeps it only if its length and SHA-256 are the signed ones.
pub fn download_program(
    upstream: &Repository,
    signed: &SignedProgram,
    dest: &Path,
) -> Result<(), Refusal> {
    let part = dest.with_extension("part");
    let _ = std::fs::remove_file(&part);
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&part);
    let unavailable =
        |detail: String| Refusal::new(kinds::UNAVAILABLE, Some(&signed.target), detail);
    created.map_err(|e| unavailable(format!("cannot create {}: {e}", part.display())))?;
    let targets = BTreeMap::from([(signed.sha256.clone(), signed.target.clone())]);
    let fetcher = MirrorFetcher {
        upstream,
        targets: &targets,
    };
    if let Err(e) = fetcher.fetch(&signed.sha256, signed.length, &part, 0) {
        let _ = std::fs::remove_file(&part);
        return Err(unavailable(format!("cannot download it: {e}")));
    }
    let (length, sha256) = std::fs::metadata(&part)
        .and_then(|meta| Ok((meta.len(), sha256_file(&part)?)))
        .map_err(|e| unavailable(format!("cannot read {}: {e}", part.display())))?;
    if (length, sha256.as_str()) != (signed.length, signed.sha256.as_str()) {
        let _ = std::fs::remove_file(&part);
        return Err(Refusal::new(
            kinds::MISMATCH,
            Some(&signed.target),
            format!(
                "the bytes received ({length} bytes, SHA-256 {sha256}) are not the signed target \
                 ({} bytes, SHA-256 {})",
                signed.length, signed.sha256
            ),
        ));
    }
    std::fs::rename(&part, dest)
        .map_err(|e| unavailable(format!("cannot keep {}: {e}", dest.display())))?;
    herd_fs::sync_dir(dest.parent().unwrap_or(Path::new(".")))
        .map_err(|e| unavailable(format!("cannot keep {}: {e}", dest.display())))
}
