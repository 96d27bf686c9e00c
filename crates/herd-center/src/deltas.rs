//! Definition deltas on the center (SPEC §3.4, issue 11): for every archive package whose
//! product has earlier releases with an archive package for the same platform, a delta
//! (`herd_delta`) from each of the previous [`MAX_DELTA_BASES`] releases' content (the tar
//! inside the gzip) to this one's, listed in the `herd` role at
//! `herd_proto::distribution::delta_target`.
//!
//! Computed in the sign round that first lists the release (so a terminal can take the delta
//! as soon as it can take the release; at most [`MAX_DELTAS_MADE_PER_ROUND`] per round, the
//! newest releases' first, the rest in the next rounds), off the request threads, once per (base content,
//! result content) pair: the delta is a blob of the blob store (content-addressed, so every
//! center process on the store serves it), and the pair is remembered in this process and
//! recovered by any process from the `herd` role the store holds (its blob's header names the
//! pair), so a restart or another process does not compute it again. A delta not smaller than
//! half its full package is not worth a second download and is not listed.
//!
//! The blob collection keeps every blob the stored `herd` role lists (`packages.rs`), and a
//! fresh delta not signed yet is younger than the grace period.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use herd_core::{Catalog, PackageFormat};
use herd_proto::distribution::{
    ContentDigest, DeltaCustom, HERD_ROLE, HERD_SET_FILES, HerdSetCustom, custom_value,
    delta_target, package_target, read_custom,
};
use herd_store::TufState;
use herd_tuf::metadata::Envelope;
use herd_tuf::{TargetFile, Targets};
use tokio::io::AsyncReadExt;

use crate::Center;

/// How many earlier releases a release gets a delta from: a terminal more releases behind
/// downloads the full package.
pub const MAX_DELTA_BASES: usize = 3;
/// The most deltas one sign round makes (the newest releases' first): a release's own deltas
/// are in the round that lists it, while a center starting on a long history spreads the
/// work over its rounds (a minute apart at most) instead of holding a publish for minutes.
pub const MAX_DELTAS_MADE_PER_ROUND: usize = 2 * MAX_DELTA_BASES;
/// The largest content a delta is computed for: diffing holds the base, the result and the
/// delta in memory at once.
pub const MAX_DELTA_CONTENT_BYTES: u64 = 512 << 20;

/// One delta the catalog calls for: from `base` content to the content of `result_target`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantedDelta {
    /// The delta's target path.
    pub path: String,
    /// The package target whose content it rebuilds.
    pub result_target: String,
    /// The result package's (blob's) SHA-256 and length.
    pub result_package: String,
    pub result_package_length: u64,
    /// The result release's `seq`: the newest releases' deltas are made first.
    pub result_seq: u64,
    pub result: ContentDigest,
    /// The base package's (blob's) SHA-256.
    pub base_package: String,
    pub base: ContentDigest,
}

impl WantedDelta {
    fn pair(&self) -> (String, String) {
        (self.base.sha256.clone(), self.result.sha256.clone())
    }

    /// The delta as a target of the `herd` role.
    fn target(&self, made: &MadeDelta) -> TargetFile {
        TargetFile {
            length: made.length,
            hashes: BTreeMap::from([("sha256".to_owned(), made.sha256.clone())]),
            custom: Some(custom_value(&DeltaCustom {
                result: self.result_target.clone(),
                base_sha256: self.base.sha256.clone(),
            })),
        }
    }
}

/// A delta stored in the blob store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MadeDelta {
    pub sha256: String,
    pub length: u64,
}

/// What this process knows of a (base content, result content) pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DeltaOutcome {
    Made(MadeDelta),
    /// Not listed: not worth it, or it could not be made (the log said why once).
    Skipped,
}

/// Every delta `catalog` calls for, given the content digests of its archive packages:
/// each archive package with a known content gets one from each of the previous
/// [`MAX_DELTA_BASES`] releases of its product with an archive package for the same platform
/// and a known, different content. Pure.
pub fn wanted_deltas(
    catalog: &Catalog,
    contents: &HashMap<String, ContentDigest>,
) -> Vec<WantedDelta> {
    // (product, platform) → the archive packages, in release order (releases are sorted by
    // product, then seq): (version, package SHA-256, length, content).
    type Line<'a> = Vec<(&'a str, u64, String, u64, &'a ContentDigest)>;
    let mut lines: BTreeMap<(usize, usize), Line<'_>> = BTreeMap::new();
    for release in &catalog.releases {
        for package in &release.packages {
            if package.format != PackageFormat::Archive {
                continue;
            }
            let sha256 = package.sha256.to_string();
            let Some(content) = contents.get(&sha256) else {
                continue;
            };
            lines
                .entry((release.product.get(), package.platform.get()))
                .or_default()
                .push((&release.version, release.seq, sha256, package.size, content));
        }
    }
    let mut wanted = Vec::new();
    for ((product, platform), line) in &lines {
        let product = &catalog.products[*product];
        let vendor = &catalog.vendors[product.vendor.get()].id;
        let platform = &catalog.platforms[*platform];
        for (index, (version, seq, package, length, result)) in line.iter().enumerate() {
            let result_target = package_target(
                vendor,
                &product.id,
                version,
                platform,
                PackageFormat::Archive.as_str(),
            );
            let bases = line[..index].iter().rev().take(MAX_DELTA_BASES);
            for (_, _, base_package, _, base) in bases {
                if base.sha256 == result.sha256 {
                    continue;
                }
                let Some(path) = delta_target(&result_target, &base.sha256) else {
                    continue;
                };
                wanted.push(WantedDelta {
                    path,
                    result_target: result_target.clone(),
                    result_package: package.clone(),
                    result_package_length: *length,
                    result_seq: *seq,
                    result: (*result).clone(),
                    base_package: base_package.clone(),
                    base: (*base).clone(),
                });
            }
        }
    }
    wanted
}

/// The delta from `base` to `result` (each a package's bytes, gzip or plain tar) if it is
/// smaller than half of `result_package_length`; `Ok(None)` when it is not. The contents are
/// checked against the digests the catalog's targets carry. Pure.
pub fn make_delta(
    base: impl Read,
    result: impl Read,
    wanted: &WantedDelta,
) -> Result<Option<Vec<u8>>, String> {
    let base = checked_content("base", base, &wanted.base)?;
    let result = checked_content("result", result, &wanted.result)?;
    let delta = herd_delta::diff(&base, &result);
    Ok(((delta.len() as u64).saturating_mul(2) < wanted.result_package_length).then_some(delta))
}

/// The content of package `which`, checked against the digest its target carries.
fn checked_content(
    which: &str,
    package: impl Read,
    digest: &ContentDigest,
) -> Result<Vec<u8>, String> {
    let content = gzip_content(package, MAX_DELTA_CONTENT_BYTES)
        .map_err(|why| format!("the {which} package's content: {why}"))?;
    let found = herd_delta::Content::of(&content);
    if hex::encode(found.sha256) != digest.sha256 || found.len != digest.length {
        return Err(format!(
            "the {which} package's content is {found}, not the {} bytes with SHA-256 {} its \
             target says",
            digest.length, digest.sha256
        ));
    }
    Ok(content)
}

/// The tar inside a gzip stream, at most `max` bytes of it.
fn gzip_content(gzip: impl Read, max: u64) -> Result<Vec<u8>, String> {
    let mut content = Vec::new();
    flate2::read::GzDecoder::new(std::io::BufReader::new(gzip))
        .take(max.saturating_add(1))
        .read_to_end(&mut content)
        .map_err(|err| format!("not a gzip stream: {err}"))?;
    if content.len() as u64 > max {
        return Err(format!("it inflates past {max} bytes"));
    }
    Ok(content)
}

/// The targets the stored `herd` role lists, by path.
pub(crate) fn stored_herd_targets(state: &TufState) -> BTreeMap<String, TargetFile> {
    state
        .latest
        .iter()
        .find(|doc| doc.role == HERD_ROLE)
        .and_then(|doc| Envelope::<Targets>::parse(HERD_ROLE, doc.doc.as_bytes()).ok())
        .map(|envelope| envelope.signed.targets)
        .unwrap_or_default()
}

/// The SHA-256 of every target a stored `herd` role document lists, and of the previous
/// versions of Herd's set it names (the bases of the set's next deltas): blobs to keep.
pub(crate) fn herd_role_blobs(doc: &str) -> Vec<String> {
    Envelope::<Targets>::parse(HERD_ROLE, doc.as_bytes())
        .map(|envelope| {
            let targets = &envelope.signed.targets;
            let listed = targets
                .values()
                .filter_map(|t| t.hashes.get("sha256").cloned());
            let previous = HERD_SET_FILES.iter().flat_map(|file| {
                targets
                    .get(*file)
                    .and_then(|t| read_custom::<HerdSetCustom>(file, t.custom.as_ref()).ok())
                    .map(|custom| custom.previous)
                    .unwrap_or_default()
            });
            listed.chain(previous).collect()
        })
        .unwrap_or_default()
}

impl Center {
    /// What the `herd` role should list for `catalog`: every wanted delta that is made (now,
    /// if not yet) and worth it.
    pub(crate) async fn delta_targets(
        &self,
        catalog: &Catalog,
        contents: &HashMap<String, ContentDigest>,
        state: &TufState,
    ) -> BTreeMap<String, TargetFile> {
        let wanted = wanted_deltas(catalog, contents);
        let mut listed = BTreeMap::new();
        if wanted.is_empty() {
            return listed;
        }
        let stored = stored_herd_targets(state);
        let mut budget = MAX_DELTAS_MADE_PER_ROUND;
        let mut order: Vec<&WantedDelta> = wanted.iter().collect();
        order.sort_by_key(|delta| std::cmp::Reverse(delta.result_seq));
        for delta in order {
            let known = self.trust.delta_outcome(&delta.pair());
            let outcome = match known {
                Some(DeltaOutcome::Made(made))
                    if self.blobs.contains(&made.sha256).await == Some(made.length) =>
                {
                    DeltaOutcome::Made(made)
                }
                Some(DeltaOutcome::Skipped) => DeltaOutcome::Skipped,
                _ => match self.recover_delta(delta, stored.get(&delta.path)).await {
                    Some(made) => DeltaOutcome::Made(made),
                    // Past the budget: a later round makes it (terminals download the full
                    // package meanwhile).
                    None if budget == 0 => continue,
                    None => {
                        budget -= 1;
                        self.compute_delta(delta).await
                    }
                },
            };
            self.trust.remember_delta(delta.pair(), outcome.clone());
            if let DeltaOutcome::Made(made) = outcome {
                listed.insert(delta.path.clone(), delta.target(&made));
            }
        }
        listed
    }

    /// The delta the stored `herd` role lists for `delta`, if its blob is there and its header
    /// names the same base and result contents.
    async fn recover_delta(
        &self,
        delta: &WantedDelta,
        stored: Option<&TargetFile>,
    ) -> Option<MadeDelta> {
        let target = stored?;
        let sha256 = target.hashes.get("sha256")?;
        let blob = self.blobs.read(sha256).await.ok()?;
        if blob.size != target.length {
            return None;
        }
        let mut head = vec![0u8; herd_delta::HEADER_LEN];
        let mut file = blob.file;
        file.read_exact(&mut head).await.ok()?;
        let header = herd_delta::header(&head).ok()?;
        let same = |content: herd_delta::Content, digest: &ContentDigest| {
            hex::encode(content.sha256) == digest.sha256 && content.len == digest.length
        };
        (same(header.base, &delta.base) && same(header.result, &delta.result)).then(|| MadeDelta {
            sha256: sha256.clone(),
            length: target.length,
        })
    }

    /// Computes `delta` (off the request threads) and stores it in the blob store.
    async fn compute_delta(&self, delta: &WantedDelta) -> DeltaOutcome {
        match self.try_compute_delta(delta).await {
            Ok(Some(made)) => {
                tracing::info!(
                    delta = %delta.path,
                    bytes = made.length,
                    full = delta.result_package_length,
                    "made a definitions delta"
                );
                DeltaOutcome::Made(made)
            }
            Ok(None) => {
                tracing::info!(
                    delta = %delta.path,
                    full = delta.result_package_length,
                    "a delta would not be smaller than half the full package; not listed"
                );
                DeltaOutcome::Skipped
            }
            Err(why) => {
                tracing::warn!(delta = %delta.path, %why, "cannot make a delta; not listed");
                DeltaOutcome::Skipped
            }
        }
    }

    async fn try_compute_delta(&self, delta: &WantedDelta) -> Result<Option<MadeDelta>, String> {
        let open = |sha256: String| async move {
            self.blobs
                .read(&sha256)
                .await
                .map(|blob| blob.file)
                .map_err(|err| format!("package {sha256}: {err}"))
        };
        let base = open(delta.base_package.clone()).await?.into_std().await;
        let result = open(delta.result_package.clone()).await?.into_std().await;
        let wanted = delta.clone();
        let made = tokio::task::spawn_blocking(move || make_delta(base, result, &wanted))
            .await
            .map_err(|err| format!("computing the delta failed: {err}"))??;
        let Some(bytes) = made else {
            return Ok(None);
        };
        let sha256 = hex::encode(herd_delta::Content::of(&bytes).sha256);
        let length = bytes.len() as u64;
        let mut upload = self
            .blobs
            .begin(&sha256, Some(length), length)
            .await
            .map_err(|err| format!("storing the delta: {err}"))?;
        upload
            .write(&bytes)
            .await
            .map_err(|err| format!("storing the delta: {err}"))?;
        upload
            .commit()
            .await
            .map_err(|err| format!("storing the delta: {err}"))?;
        Ok(Some(MadeDelta { sha256, length }))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn sha(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    fn digest(n: u8) -> ContentDigest {
        ContentDigest {
            sha256: sha(n + 100),
            length: u64::from(n) * 1000,
        }
    }

    /// Releases 1..=6 of acme-av with a linux archive package each (SHA-256 `sha(seq)`), a
    /// windows archive in 2 and 5 only, and a linux deb in 3.
    fn catalog() -> Catalog {
        let release = |seq: u8| {
            let mut packages = vec![serde_json::json!({"platform": "linux", "format": "archive",
                "sha256": sha(seq), "size": 100_000})];
            if seq == 2 || seq == 5 {
                packages.push(
                    serde_json::json!({"platform": "windows", "format": "archive",
                    "sha256": sha(seq + 50), "size": 100_000}),
                );
            }
            if seq == 3 {
                packages.push(serde_json::json!({"platform": "linux", "format": "deb",
                    "sha256": sha(seq + 70), "size": 100_000, "name": "acme-av"}));
            }
            serde_json::json!({"product": "acme-av", "version": format!("{seq}.0"),
                "pattern": format!("p{seq}"), "seq": seq,
                "published": format!("2026-01-{seq:02}T00:00:00Z"), "packages": packages})
        };
        let feed = serde_json::json!({
            "format": "herd.catalog/v1",
            "vendors": [{"id": "acme", "name": "Acme"}],
            "products": [{"id": "acme-av", "vendor": "acme", "name": "Acme AV",
                          "platforms": ["linux", "windows"]}],
            // Out of order on purpose: deltas follow `seq`, not the feed's order.
            "releases": [release(6), release(1), release(2), release(3), release(4), release(5)],
            "threats": [], "coverage": []
        });
        herd_proto::catalog::parse_catalog("feed", &feed.to_string()).unwrap()
    }

    #[test]
    fn each_archive_gets_deltas_from_its_three_previous_releases_of_its_platform() {
        let mut contents: HashMap<String, ContentDigest> =
            (1..=6).map(|seq| (sha(seq), digest(seq))).collect();
        contents.insert(sha(52), digest(52));
        contents.insert(sha(55), digest(55));
        contents.insert(sha(73), digest(73));
        // Release 4's linux content is unknown (not uploaded yet): no delta to or from it.
        contents.remove(&sha(4));
        let wanted = wanted_deltas(&catalog(), &contents);
        let pairs: Vec<(&str, &str)> = wanted
            .iter()
            .map(|w| (w.result_target.as_str(), w.base_package.as_str()))
            .collect();
        let linux = |v: u8| format!("packages/acme/acme-av/{v}.0/linux.archive");
        let windows = |v: u8| format!("packages/acme/acme-av/{v}.0/windows.archive");
        let (l2, l3, l5, l6, w5) = (linux(2), linux(3), linux(5), linux(6), windows(5));
        let (s1, s2, s3, s5, s52) = (sha(1), sha(2), sha(3), sha(5), sha(52));
        assert_eq!(
            pairs,
            [
                (l2.as_str(), s1.as_str()),
                (l3.as_str(), s2.as_str()),
                (l3.as_str(), s1.as_str()),
                (l5.as_str(), s3.as_str()),
                (l5.as_str(), s2.as_str()),
                (l5.as_str(), s1.as_str()),
                (l6.as_str(), s5.as_str()),
                (l6.as_str(), s3.as_str()),
                (l6.as_str(), s2.as_str()),
                (w5.as_str(), s52.as_str()),
            ],
            "newest base first, three at most, per platform, archives only"
        );
        let first = &wanted[0];
        assert_eq!(first.path, delta_target(&l2, &digest(1).sha256).unwrap());
        assert_eq!(
            (first.base.clone(), first.result.clone()),
            (digest(1), digest(2))
        );
        assert_eq!(first.result_package_length, 100_000);
    }

    #[test]
    fn a_release_with_the_same_content_as_its_base_gets_no_delta_from_it() {
        let mut contents: HashMap<String, ContentDigest> =
            (1..=6).map(|seq| (sha(seq), digest(seq))).collect();
        contents.insert(sha(2), digest(1));
        let wanted = wanted_deltas(&catalog(), &contents);
        assert!(
            !wanted
                .iter()
                .any(|w| w.result_target.contains("/2.0/linux") && w.base.sha256 == sha(101)),
            "{wanted:#?}"
        );
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(bytes).unwrap();
        gzip.finish().unwrap()
    }

    fn wanted_between(base: &[u8], result: &[u8], result_package_length: u64) -> WantedDelta {
        let of = |bytes: &[u8]| ContentDigest {
            sha256: hex::encode(herd_delta::Content::of(bytes).sha256),
            length: bytes.len() as u64,
        };
        WantedDelta {
            path: "herd/deltas/a/b/2/linux.archive.from-x".into(),
            result_target: "packages/a/b/2/linux.archive".into(),
            result_package: sha(2),
            result_package_length,
            result_seq: 2,
            result: of(result),
            base_package: sha(1),
            base: of(base),
        }
    }

    #[test]
    fn a_delta_rebuilds_the_result_and_is_refused_when_not_worth_it_or_not_the_content() {
        let base: Vec<u8> = (0..200_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let mut result = base.clone();
        result[1000..1010].copy_from_slice(b"0123456789");
        let (base_gz, result_gz) = (gzip(&base), gzip(&result));
        let wanted = wanted_between(&base, &result, result_gz.len() as u64);
        let delta = make_delta(&base_gz[..], &result_gz[..], &wanted)
            .unwrap()
            .expect("a small change makes a small delta");
        assert_eq!(
            herd_delta::apply(&base, &delta, result.len() as u64).unwrap(),
            result
        );

        // Not smaller than half the full package: not listed.
        let tiny = wanted_between(&base, &result, 10);
        assert_eq!(
            make_delta(&base_gz[..], &result_gz[..], &tiny).unwrap(),
            None
        );

        // A blob whose content is not what the target says is refused, by name.
        let err = make_delta(&result_gz[..], &result_gz[..], &wanted).unwrap_err();
        assert!(err.contains("the base package's content is"), "{err}");
        let err = make_delta(&base_gz[..], &b"not gzip"[..], &wanted).unwrap_err();
        assert!(
            err.contains("the result package's content: not a gzip"),
            "{err}"
        );
    }

    #[test]
    fn the_blobs_a_herd_role_lists_are_read_from_its_document() {
        let key = herd_tuf::SigningKey::generate().unwrap();
        let targets = Targets {
            type_: "targets".into(),
            spec_version: "1.0.31".into(),
            version: 3,
            expires: "2030-01-01T00:00:00Z".into(),
            targets: BTreeMap::from([(
                "herd/deltas/a/b/2/linux.archive.from-x".to_owned(),
                TargetFile {
                    length: 5,
                    hashes: BTreeMap::from([("sha256".to_owned(), sha(9))]),
                    custom: None,
                },
            )]),
            delegations: None,
        };
        let doc = herd_tuf::sign(&targets, &[&key]);
        assert_eq!(
            herd_role_blobs(std::str::from_utf8(&doc).unwrap()),
            [sha(9)]
        );
        assert!(herd_role_blobs("not json").is_empty());
    }
}
