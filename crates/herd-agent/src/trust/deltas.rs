//! Definition deltas on the terminal (SPEC §3.4, issue 11): before a plan's packages are
//! downloaded, each `archive` package whose signed target carries its `content` digest is
//! looked up for a delta from the content this terminal keeps (`<state>/content/<sha256>.tar`,
//! the active release's) in the verified metadata (`herd` role, at
//! `herd_proto::distribution::delta_target`). [`DeltaFetcher`] then rebuilds the content:
//! the delta downloaded (bounded by its signed length, checked against its signed hash), the
//! kept content hashed again, `herd_delta::apply`, and the result checked against the
//! package target's own signed content digest — never against what the delta or the `herd`
//! role says. Any failure (not listed, download, corrupt delta, base or result mismatch) is a
//! reason the executor reports while it downloads the full package instead.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use herd_client::{ReadLimits, Repository};
use herd_proto::distribution::{
    ContentDigest, DeltaCustom, HERD_ROLE, PackageCustom, TARGETS_PATH, delta_target, read_custom,
};
use herd_tuf::{TargetFile, verify_target};
use sha2::{Digest, Sha256};

use super::{TrustClient, VerifiedPlan};
use crate::execute::{FetchError, Fetcher, MAX_KEPT_CONTENT, Rebuilt};
use herd_proto::distribution::consistent_target_name;

/// A delta the verified metadata lists for one package of the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaOffer {
    /// The delta's target path and signed description.
    pub path: String,
    pub delta: TargetFile,
    /// The kept content it applies to.
    pub base_sha256: String,
    /// The package target's signed content: what the result must be.
    pub content: ContentDigest,
}

/// What the metadata offers for a plan's packages, by package SHA-256: a delta, or why none.
pub type Offers = BTreeMap<String, Result<DeltaOffer, String>>;

/// The SHA-256s of the content files kept in `content_dir` (`<sha256>.tar`).
pub fn kept_contents(content_dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(content_dir) else {
        return Vec::new();
    };
    let mut kept: Vec<String> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let sha = name.strip_suffix(".tar")?;
            (sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit())).then(|| sha.to_owned())
        })
        .collect();
    kept.sort();
    kept
}

/// Looks up, for every archive package `verified` fetches, a delta from the content kept in
/// `content_dir` in the refreshed metadata of `client`. A package with no signed content, or a
/// terminal keeping no content (a first install), gets no entry: nothing was to be tried.
pub fn find_offers(
    client: &mut TrustClient,
    verified: &VerifiedPlan,
    content_dir: &Path,
) -> Offers {
    let kept = kept_contents(content_dir);
    let mut offers = Offers::new();
    if kept.is_empty() {
        return offers;
    }
    for (sha256, target) in &verified.targets {
        let content = match client.find_target(target) {
            Ok(Some((_, file))) => read_custom::<PackageCustom>(target, file.custom.as_ref())
                .ok()
                .and_then(|custom| custom.content),
            _ => None,
        };
        let Some(content) = content else { continue };
        offers.insert(sha256.clone(), find_offer(client, target, &content, &kept));
    }
    offers
}

fn find_offer(
    client: &mut TrustClient,
    target: &str,
    content: &ContentDigest,
    kept: &[String],
) -> Result<DeltaOffer, String> {
    let mut why = Vec::new();
    for base in kept {
        if *base == content.sha256 {
            why.push("the terminal already keeps this content".to_owned());
            continue;
        }
        let Some(path) = delta_target(target, base) else {
            return Err(format!("{target} is not a package target"));
        };
        match client.find_target(&path) {
            Ok(Some((role, delta))) if role == HERD_ROLE => {
                let custom: DeltaCustom = read_custom(&path, delta.custom.as_ref())?;
                if custom.result != target || custom.base_sha256 != *base {
                    why.push(format!("{path}: its signed custom names another delta"));
                    continue;
                }
                return Ok(DeltaOffer {
                    path,
                    delta,
                    base_sha256: base.clone(),
                    content: content.clone(),
                });
            }
            Ok(Some((role, _))) => why.push(format!("{path} is listed by {role}, not {HERD_ROLE}")),
            Ok(None) => why.push(format!(
                "no delta is listed from the content this terminal keeps ({base})"
            )),
            Err(refusal) => why.push(format!("looking up {path}: {}", refusal.detail)),
        }
    }
    Err(why.join("; "))
}

/// The executor's fetcher with deltas: packages from `inner`, content rebuilt from the deltas
/// `offers` names, downloaded from `upstream`'s `/tuf/targets/`.
pub struct DeltaFetcher<'a> {
    pub inner: &'a dyn Fetcher,
    pub upstream: &'a Repository,
    pub offers: &'a Offers,
    pub content_dir: &'a Path,
}

impl std::fmt::Debug for DeltaFetcher<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeltaFetcher")
            .field("offers", &self.offers)
            .field("content_dir", &self.content_dir)
            .finish_non_exhaustive()
    }
}

impl Fetcher for DeltaFetcher<'_> {
    fn fetch(
        &self,
        sha256: &str,
        size: u64,
        dest: &Path,
        resume_from: u64,
    ) -> Result<(), FetchError> {
        self.inner.fetch(sha256, size, dest, resume_from)
    }

    fn rebuild_content(&self, sha256: &str, dest: &Path) -> Option<Result<Rebuilt, String>> {
        let offer = match self.offers.get(sha256)? {
            Ok(offer) => offer,
            Err(why) => return Some(Err(why.clone())),
        };
        Some(rebuild(self.upstream, offer, self.content_dir, dest))
    }
}

/// The content `offer` rebuilds, checked and written to `dest` (0600).
pub fn rebuild(
    upstream: &Repository,
    offer: &DeltaOffer,
    content_dir: &Path,
    dest: &Path,
) -> Result<Rebuilt, String> {
    let delta_sha = offer
        .delta
        .hashes
        .get("sha256")
        .ok_or_else(|| format!("{}: its signed metadata has no SHA-256", offer.path))?;
    let url = format!(
        "{TARGETS_PATH}{}",
        consistent_target_name(&offer.path, delta_sha)
    );
    let delta = upstream
        .get(&url, ReadLimits::target(offer.delta.length))
        .map_err(|e| format!("downloading the delta {}: {e}", offer.path))?;
    verify_target(&offer.path, &offer.delta, &delta)
        .map_err(|e| format!("the delta is not the signed one: {e}"))?;
    let base_path = content_dir.join(format!("{}.tar", offer.base_sha256));
    let len = fs::symlink_metadata(&base_path)
        .map_err(|e| format!("{}: {e}", base_path.display()))?
        .len();
    if len > MAX_KEPT_CONTENT {
        return Err(format!("{}: {len} bytes, too large", base_path.display()));
    }
    let base = fs::read(&base_path).map_err(|e| format!("{}: {e}", base_path.display()))?;
    let base_sha = format!("{:x}", Sha256::digest(&base));
    if base_sha != offer.base_sha256 {
        return Err(format!(
            "the kept content {} changed (its SHA-256 is now {base_sha})",
            base_path.display()
        ));
    }
    let result = herd_delta::apply(&base, &delta, offer.content.length)
        .map_err(|e| format!("the delta does not apply: {e}"))?;
    let result_sha = format!("{:x}", Sha256::digest(&result));
    if result_sha != offer.content.sha256 || result.len() as u64 != offer.content.length {
        return Err(format!(
            "the rebuilt content ({} bytes, SHA-256 {result_sha}) is not the signed content \
             ({} bytes, SHA-256 {})",
            result.len(),
            offer.content.length,
            offer.content.sha256
        ));
    }
    herd_fs::write_atomic(dest, &result, 0o600).map_err(|e| format!("{}: {e}", dest.display()))?;
    Ok(Rebuilt {
        downloaded: delta.len() as u64,
        from: format!(
            "a delta against the kept content of the active release ({})",
            offer.path
        ),
    })
}

#[cfg(test)]
#[path = "deltas_tests.rs"]
mod tests;
