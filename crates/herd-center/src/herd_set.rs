//! Herd's own signature set (issue 13, SPEC §3.2): exact-hash signatures published by verdicts
//! — an operator's (`POST /v1/verdicts`) or an automatic rule's on the terminals' detections —
//! kept in the store (`herd_signatures`, migration 0010), written as one ClamAV `.hsb` file
//! (`sha256:size:name`, sorted by SHA-256, so the same set is the same bytes) and listed in
//! the signed `herd` role as [`HERD_SET_TARGET`]; beside it, the analysts' body signatures
//! (`crate::body_signatures`, migration 0022) as `herd.ndb`, `herd.ldb` and `herd.yar`
//! ([`HERD_SET_FILES`]). A verdict signs the repository at once, so the timestamp moves, every
//! held push connection is woken, and each scanning agent fetches the new set with its next
//! refresh. A benign verdict removes the signature the same way.
//!
//! Each file of the set is shipped as a delta from the version a terminal holds
//! ([`Center::herd_set_file`]): its target's `custom` names its previous versions (newest
//! first, at most three; read back from the stored role, so no other state says it), and the
//! role lists a delta (`herd_delta`, `<file>.from-<base sha256>`) from each whose blob is still
//! there and whose delta is under half the file; the agent rebuilds the file from the one it
//! holds, checks the result against the file's own signed length and SHA-256, and downloads
//! the whole file when no delta fits or anything is wrong with it. The previous versions'
//! blobs are kept by the blob collection while the role names them.
//!
//! The automatic rules ([`Center::immunity_from_detections`]), each a configuration key:
//! `immunity_cross_vendor` (a vendor's product detected a file on one terminal: its hash now
//! protects every terminal, whichever vendor it runs) and `immunity_suspect_terminals` (the
//! same suspicious-only hash reported by N distinct terminals).
//!
//! A malicious verdict also makes the file a threat of the catalog (SPEC §3.2.5): a row of
//! `herd_threats` (migration 0015) — the verdict's threat, a catalog threat the detection
//! named, or `herd-<first 16 hex digits>` — whose files are the signatures naming it; the
//! center writes these threats as one catalog document ([`herd_feed`], each with `herd_since`,
//! the first signature's time, and its files as `sha256:` aliases) under the feed key
//! `herd:immunity`, which every process and site merges after the vendors' feeds
//! (`herd_proto::merge::merge_herd`: a vendor's threat of the same id or alias is the same
//! threat). The planner then counts it in no gap, and the coverage matrix shows since when
//! Herd's set covers it. A benign verdict removes the file, and a threat left without files
//! leaves the catalog.
//!
//! Every center process on the database serves the new set with the metadata that lists it:
//! one that learns of another's sign round (the revision notification) reads the set's files
//! from the stored `herd` role ([`with_stored_set`]), so a terminal woken by a verdict through
//! one process downloads the set from any. A delta is made in the sign round that lists the
//! new version, so a verdict's answer (and the push) waits for up to three diffs of the changed file, not
//! measured here for the set: `herd-delta` measured 0.18 s for a 6.6 MB definitions tar, about
//! the size of 65,000 hash signatures.

use std::collections::{BTreeMap, HashMap};

use herd_core::{Danger, Timestamp};
use herd_proto::api::{
    Detection, HerdSignatureDoc, VerdictDoc, VerdictOutcome, events as event_kinds,
};
use herd_proto::catalog::{CATALOG_FORMAT, CatalogDoc, ThreatDoc};
use herd_proto::distribution::{
    DeltaCustom, HERD_CONTENT_DIR, HERD_SET_FILES, HERD_SET_TARGET, HERD_SIGNATURE_PREFIX,
    HerdSetCustom, custom_value, herd_set_delta_target, read_custom,
};
use herd_store::{EventRow, HerdSignatureRow, HerdThreatRow, TufState};
use herd_tuf::TargetFile;
use sha2::{Digest, Sha256};

use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::tuf::SignError;
use crate::{Center, rfc3339, unix_now};

/// The verdict that publishes a signature.
pub const MALICIOUS: &str = "malicious";
/// The verdict that removes one.
pub const BENIGN: &str = "benign";
/// `source` of the automatic rules' signatures.
pub const RULE_CROSS_VENDOR: &str = "rule:cross-vendor";
pub const RULE_SUSPECT_TERMINALS: &str = "rule:suspect-terminals";

/// The danger of a threat a verdict makes when nobody said.
pub const DEFAULT_DANGER: &str = "high";

/// The id of the threat a file is when no verdict or catalog threat named one.
pub fn file_threat_id(sha256: &str) -> String {
    format!("herd-{}", &sha256[..16.min(sha256.len())])
}

/// The catalog document of Herd's own threats: each threat with at least one file in the set,
/// covered since its first file's signature, discovered when first seen (or at that first
/// signature, when earlier), its files as `sha256:` aliases. A signature naming no threat row
/// (made before migration 0015) is a threat of its own, [`file_threat_id`]. Pure; the same
/// rows give the same bytes.
pub fn herd_feed(signatures: &[HerdSignatureRow], threats: &[HerdThreatRow]) -> CatalogDoc {
    let known: BTreeMap<&str, &HerdThreatRow> =
        threats.iter().map(|t| (t.id.as_str(), t)).collect();
    // Threat id -> (earliest signature, files).
    let mut files: BTreeMap<String, (i64, Vec<String>)> = BTreeMap::new();
    for signature in signatures {
        let id = if signature.threat.is_empty() {
            file_threat_id(&signature.sha256)
        } else {
            signature.threat.clone()
        };
        let entry = files
            .entry(id)
            .or_insert((signature.created_at, Vec::new()));
        entry.0 = entry.0.min(signature.created_at);
        entry.1.push(format!("sha256:{}", signature.sha256));
    }
    let threats = files
        .into_iter()
        .map(|(id, (since, mut aliases))| {
            aliases.sort();
            let row = known.get(id.as_str());
            let first_seen = row.map_or(since, |r| r.first_seen.min(since));
            ThreatDoc {
                name: row.map_or_else(|| id.clone(), |r| r.name.clone()),
                danger: row.map_or_else(|| DEFAULT_DANGER.to_owned(), |r| r.danger.clone()),
                discovered: Timestamp::from_unix_seconds(first_seen).date().to_string(),
                herd_since: Some(Timestamp::from_unix_seconds(since).to_string()),
                aliases,
                id,
            }
        })
        .collect();
    CatalogDoc {
        format: CATALOG_FORMAT.to_owned(),
        threats,
        ..CatalogDoc::default()
    }
}

/// [`herd_feed`] as the stored text and its SHA-256.
fn herd_feed_text(signatures: &[HerdSignatureRow], threats: &[HerdThreatRow]) -> (String, String) {
    let text = serde_json::to_string(&herd_feed(signatures, threats))
        .expect("a catalog document serialises");
    let sha256 = hex::encode(Sha256::digest(text.as_bytes()));
    (text, sha256)
}

/// Whether `path` is a file of Herd's set or a delta to one (`herd/signatures/…`), as opposed
/// to the definition deltas the `herd` role lists beside them.
fn is_set_target(path: &str) -> bool {
    path.strip_prefix(HERD_CONTENT_DIR)
        .is_some_and(|rest| rest.starts_with("/signatures/"))
}

/// The downloadable targets `index` (path → SHA-256) with Herd's set as the stored `herd`
/// role of `state` lists it: its files and deltas replace those of the index. A process that
/// learns of another's sign round serves the new set with the new metadata, at once, rather
/// than from its own next round; the rest of the index (vendors' packages, definition deltas)
/// still follows the catalog through this process's rounds. Pure.
pub fn with_stored_set(
    index: &HashMap<String, String>,
    state: &TufState,
) -> HashMap<String, String> {
    let mut merged: HashMap<String, String> = index
        .iter()
        .filter(|(path, _)| !is_set_target(path))
        .map(|(path, sha256)| (path.clone(), sha256.clone()))
        .collect();
    for (path, file) in crate::deltas::stored_herd_targets(state) {
        if is_set_target(&path)
            && let Some(sha256) = file.hashes.get("sha256")
        {
            merged.insert(path, sha256.clone());
        }
    }
    merged
}

/// Coalesced rebuilds of Herd's threats in the catalog ([`Center::rebuild_herd_feed`]).
#[derive(Debug, Default)]
pub(crate) struct HerdFeedRebuilds {
    /// A change was made that no rebuild has read yet.
    wanted: std::sync::atomic::AtomicBool,
    /// One rebuild at a time per process.
    turn: tokio::sync::Mutex<()>,
    /// Rebuilds made ([`Center::herd_feed_rebuilds`]).
    rebuilds: std::sync::atomic::AtomicU64,
}

/// The `.hsb` text of the set: one `sha256:size:name` line per signature, in the order given
/// (the store's, by SHA-256).
pub fn set_text(rows: &[HerdSignatureRow]) -> String {
    let mut text = String::with_capacity(rows.len() * 100);
    for row in rows {
        text.push_str(&format!("{}:{}:{}\n", row.sha256, row.size, row.name));
    }
    text
}

/// The name agents report for a file of Herd's set: `Herd.Immunity.<threat>.<first 16 hex
/// digits>`, or without the threat when none was named.
pub fn signature_name(threat: &str, sha256: &str) -> String {
    let short = &sha256[..16.min(sha256.len())];
    match threat {
        "" => format!("{HERD_SIGNATURE_PREFIX}{short}"),
        threat => format!("{HERD_SIGNATURE_PREFIX}{threat}.{short}"),
    }
}

/// Checks a SHA-256 as text: 64 lower-case hex digits. `what` names where it came from.
pub fn check_sha256(sha256: &str, what: &str) -> Result<(), String> {
    if sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(format!(
            "{what}: {sha256:?} is not a SHA-256 (64 lower-case hex digits)"
        ))
    }
}

/// Checks a `scan.detection` event's data: a [`Detection`] with a SHA-256 and a signature.
pub fn check_detection(data: &serde_json::Value) -> Result<(), String> {
    let detection: Detection =
        serde_json::from_value(data.clone()).map_err(|err| format!("not a detection: {err}"))?;
    check_sha256(&detection.sha256, "$.sha256")?;
    if detection.signatures.is_empty() {
        return Err("$.signatures: a detection names at least one signature".into());
    }
    Ok(())
}

/// A threat id usable inside a signature name: 1-64 of A-Z, a-z, 0-9, '-', '_'.
fn check_threat(threat: &str) -> Result<(), String> {
    let ok = !threat.is_empty()
        && threat.len() <= 64
        && threat
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the verdict: $.threat: {threat:?} is not a threat id (1-64 of A-Z, a-z, 0-9, '-', '_')"
        ))
    }
}

/// The previous versions a file of Herd's set names when its content is `now`: unchanged when
/// it was `before` already, else `before` first, then the versions `before` named, without
/// `now`, at most [`crate::deltas::MAX_DELTA_BASES`]. Pure.
pub fn next_previous(before: Option<&str>, before_previous: Vec<String>, now: &str) -> Vec<String> {
    match before {
        None => Vec::new(),
        Some(before) if before == now => before_previous,
        Some(before) => {
            let mut previous: Vec<String> = Vec::new();
            for sha256 in std::iter::once(before.to_owned()).chain(before_previous) {
                if sha256 != now && !previous.contains(&sha256) {
                    previous.push(sha256);
                }
            }
            previous.truncate(crate::deltas::MAX_DELTA_BASES);
            previous
        }
    }
}

/// Checks a verdict document (`POST /v1/verdicts`) before anything is written: the SHA-256,
/// the threat id, danger and name, the verdict, and a malicious verdict's size. Pure; the
/// fuzz target `crates/herd-center/fuzz` drives it.
pub fn check_verdict(doc: &VerdictDoc) -> CenterResult<()> {
    check_sha256(&doc.sha256, "the verdict: $.sha256")
        .map_err(|m| CenterError::new(ErrorKind::DocumentInvalid, m))?;
    if let Some(threat) = &doc.threat {
        check_threat(threat).map_err(|m| CenterError::new(ErrorKind::DocumentInvalid, m))?;
    }
    // Checked whatever the verdict (a benign one ignores them, but says nothing invalid).
    if let Some(danger) = &doc.danger {
        Danger::parse(danger).map_err(|m| {
            CenterError::new(
                ErrorKind::DocumentInvalid,
                format!("the verdict: $.danger: {m}"),
            )
        })?;
    }
    if let Some(name) = &doc.name
        && (name.trim().is_empty() || name.chars().count() > 200 || name.contains('\0'))
    {
        return Err(CenterError::new(
            ErrorKind::DocumentInvalid,
            "the verdict: $.name: a threat's name has 1 to 200 characters, not only spaces, \
             and no NUL",
        ));
    }
    // A size given is at least 1 byte whatever the verdict (the schema's `minimum`).
    if doc.size == Some(0) {
        return Err(CenterError::new(
            ErrorKind::DocumentInvalid,
            "the verdict: $.size: a file's size is at least 1 byte",
        ));
    }
    match doc.verdict.as_str() {
        MALICIOUS if doc.size.is_some_and(|size| size > 0) => Ok(()),
        MALICIOUS => Err(CenterError::new(
            ErrorKind::DocumentInvalid,
            "the verdict: $.size: a malicious verdict needs the file's size (at least 1 byte)",
        )),
        BENIGN => Ok(()),
        other => Err(CenterError::new(
            ErrorKind::DocumentInvalid,
            format!("the verdict: $.verdict: {other:?} is neither {MALICIOUS:?} nor {BENIGN:?}"),
        )),
    }
}

fn signature_doc(row: HerdSignatureRow) -> HerdSignatureDoc {
    HerdSignatureDoc {
        sha256: row.sha256,
        size: row.size,
        name: row.name,
        threat: row.threat,
        source: row.source,
        first_terminal: row.first_terminal,
        first_signature: row.first_signature,
        created_at: rfc3339(row.created_at),
    }
}

impl Center {
    /// What the `herd` role lists for Herd's set: each of its files ([`HERD_SET_FILES`]: the
    /// `.hsb` of exact hashes and the analysts' `.ndb`, `.ldb` and YARA files) built from the
    /// store and stored as a blob (by SHA-256, like packages) so `/tuf/targets/` serves it,
    /// with the deltas to it from its previous versions ([`Center::herd_set_file`]). A file is
    /// listed once it has content, and from then on even empty, so agents drop what was
    /// removed; nothing while the set was never published.
    pub(crate) async fn herd_set_targets(
        &self,
        state: &TufState,
    ) -> CenterResult<BTreeMap<String, TargetFile>> {
        let stored = crate::deltas::stored_herd_targets(state);
        let hashes = self.store.herd_signatures().await?;
        let bodies = self.store.herd_body_signatures().await?;
        let mut listed = BTreeMap::new();
        for target in HERD_SET_FILES {
            let text = match crate::body_signatures::format_of_target(target) {
                Some(format) => crate::body_signatures::file_text(&bodies, format),
                None => set_text(&hashes),
            };
            // Once listed, listed on (empty if need be), so agents drop what was removed.
            if text.is_empty() && !stored.contains_key(target) {
                continue;
            }
            listed.extend(
                self.herd_set_file(target, text.into_bytes(), &stored)
                    .await?,
            );
        }
        Ok(listed)
    }

    /// One file of Herd's set as targets: the file, whose `custom` names its previous versions
    /// (newest first, at most [`crate::deltas::MAX_DELTA_BASES`], read back from the stored
    /// role), and a delta from each previous version whose blob is still there, when the delta
    /// is smaller than half the file. A delta is computed once per (base, result) pair, in the
    /// round that lists the new version; later rounds take it from the stored role.
    async fn herd_set_file(
        &self,
        target: &str,
        bytes: Vec<u8>,
        stored: &BTreeMap<String, TargetFile>,
    ) -> CenterResult<BTreeMap<String, TargetFile>> {
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let length = bytes.len() as u64;
        let store_error = |err: crate::blobs::BlobError| {
            CenterError::internal(format!("storing Herd's set ({target}): {err}"))
        };
        let mut upload = self
            .blobs
            .begin(&sha256, Some(length), length)
            .await
            .map_err(store_error)?;
        upload.write(&bytes).await.map_err(store_error)?;
        upload.commit().await.map_err(store_error)?;

        let before = stored.get(target);
        let before_sha256 = before.and_then(|t| t.hashes.get("sha256")).cloned();
        let before_previous = before
            .and_then(|t| read_custom::<HerdSetCustom>(target, t.custom.as_ref()).ok())
            .map(|custom| custom.previous)
            .unwrap_or_default();
        let previous = next_previous(before_sha256.as_deref(), before_previous, &sha256);
        let custom = (!previous.is_empty()).then(|| {
            custom_value(&HerdSetCustom {
                previous: previous.clone(),
            })
        });
        let mut listed = BTreeMap::from([(
            target.to_owned(),
            TargetFile {
                length,
                hashes: BTreeMap::from([("sha256".to_owned(), sha256.clone())]),
                custom,
            },
        )]);
        let unchanged = before_sha256.as_deref() == Some(sha256.as_str());
        let bytes = std::sync::Arc::new(bytes);
        for base in previous {
            let path = herd_set_delta_target(target, &base);
            let made = match stored.get(&path) {
                Some(known)
                    if unchanged
                        && self
                            .blobs
                            .contains(known.hashes.get("sha256").map_or("", String::as_str))
                            .await
                            == Some(known.length) =>
                {
                    Some(known.clone())
                }
                _ => self
                    .herd_set_delta(&base, &sha256, bytes.clone())
                    .await
                    .map(|made| TargetFile {
                        length: made.length,
                        hashes: BTreeMap::from([("sha256".to_owned(), made.sha256)]),
                        custom: Some(custom_value(&DeltaCustom {
                            result: target.to_owned(),
                            base_sha256: base.clone(),
                        })),
                    }),
            };
            if let Some(made) = made {
                listed.insert(path, made);
            }
        }
        Ok(listed)
    }

    /// The delta from the set file `base` (a blob) to `result` (whose SHA-256 is
    /// `result_sha256`), made now (off the request threads) and stored as a blob, or as this
    /// process made it before; `None` when the base's blob is gone or the delta is not smaller
    /// than half the file (the log says why once).
    async fn herd_set_delta(
        &self,
        base: &str,
        result_sha256: &str,
        result: std::sync::Arc<Vec<u8>>,
    ) -> Option<crate::deltas::MadeDelta> {
        use crate::deltas::DeltaOutcome;
        let pair = (base.to_owned(), result_sha256.to_owned());
        match self.trust.delta_outcome(&pair) {
            Some(DeltaOutcome::Made(made))
                if self.blobs.contains(&made.sha256).await == Some(made.length) =>
            {
                return Some(made);
            }
            Some(DeltaOutcome::Skipped) => return None,
            _ => {}
        }
        let outcome = match self.make_herd_set_delta(base, result).await {
            Ok(Some(made)) => {
                tracing::info!(
                    base,
                    result = result_sha256,
                    bytes = made.length,
                    "made a delta of Herd's set"
                );
                DeltaOutcome::Made(made)
            }
            Ok(None) => DeltaOutcome::Skipped,
            Err(why) => {
                tracing::warn!(base, result = result_sha256, %why, "no delta of Herd's set from this version");
                DeltaOutcome::Skipped
            }
        };
        self.trust.remember_delta(pair, outcome.clone());
        match outcome {
            DeltaOutcome::Made(made) => Some(made),
            DeltaOutcome::Skipped => None,
        }
    }

    async fn make_herd_set_delta(
        &self,
        base: &str,
        result: std::sync::Arc<Vec<u8>>,
    ) -> Result<Option<crate::deltas::MadeDelta>, String> {
        use tokio::io::AsyncReadExt;
        let blob = self
            .blobs
            .read(base)
            .await
            .map_err(|err| format!("the previous version's blob: {err}"))?;
        let mut old = Vec::with_capacity(blob.size as usize);
        blob.file
            .take(crate::deltas::MAX_DELTA_CONTENT_BYTES)
            .read_to_end(&mut old)
            .await
            .map_err(|err| format!("reading the previous version: {err}"))?;
        if hex::encode(Sha256::digest(&old)) != base {
            return Err("the previous version's blob does not have its SHA-256".into());
        }
        let delta = tokio::task::spawn_blocking(move || {
            let delta = herd_delta::diff(&old, &result);
            ((delta.len() as u64).saturating_mul(2) < result.len() as u64).then_some(delta)
        })
        .await
        .map_err(|err| format!("computing the delta failed: {err}"))?;
        let Some(delta) = delta else {
            return Ok(None);
        };
        let sha256 = hex::encode(Sha256::digest(&delta));
        let length = delta.len() as u64;
        let stored = async {
            let mut upload = self.blobs.begin(&sha256, Some(length), length).await?;
            upload.write(&delta).await?;
            upload.commit().await
        };
        stored
            .await
            .map_err(|err| format!("storing the delta: {err}"))?;
        Ok(Some(crate::deltas::MadeDelta { sha256, length }))
    }

    /// Every signature of Herd's set, by SHA-256.
    pub async fn herd_signatures(&self) -> CenterResult<Vec<HerdSignatureDoc>> {
        let rows = self.store.herd_signatures().await?;
        Ok(rows.into_iter().map(signature_doc).collect())
    }

    /// An operator's verdict (`source` names the operator's token): `malicious` publishes the
    /// file's signature, `benign` removes it; either signs the repository at once when the
    /// set changed.
    pub async fn verdict(&self, doc: VerdictDoc, source: &str) -> CenterResult<VerdictOutcome> {
        check_verdict(&doc)?;
        let changed = match doc.verdict.as_str() {
            MALICIOUS => {
                let size = doc
                    .size
                    .expect("check_verdict: a malicious verdict has a size");
                let named = doc.threat.clone().unwrap_or_default();
                let threat = doc
                    .threat
                    .clone()
                    .unwrap_or_else(|| file_threat_id(&doc.sha256));
                let danger = doc
                    .danger
                    .clone()
                    .unwrap_or_else(|| DEFAULT_DANGER.to_owned());
                let name = doc.name.clone().unwrap_or_else(|| threat.clone());
                // A verdict that names the danger or the name says what the threat is;
                // without either it does not overwrite what an earlier verdict said.
                let replace = doc.danger.is_some() || doc.name.is_some();
                self.store
                    .herd_threat_put(
                        &HerdThreatRow {
                            id: threat.clone(),
                            name,
                            danger,
                            first_seen: unix_now(),
                        },
                        replace,
                    )
                    .await?;
                let row = HerdSignatureRow {
                    name: signature_name(&named, &doc.sha256),
                    sha256: doc.sha256.clone(),
                    size,
                    threat,
                    source: source.to_owned(),
                    first_terminal: String::new(),
                    first_signature: String::new(),
                    created_at: unix_now(),
                };
                self.store.herd_signature_add(&row).await?
            }
            _ => self.store.herd_signature_remove(&doc.sha256).await?,
        };
        self.store
            .file_verdict_record(&herd_store::FileVerdictRow {
                sha256: doc.sha256.clone(),
                verdict: doc.verdict.clone(),
                judged_by: source.to_owned(),
                judged_at: unix_now(),
            })
            .await?;
        if changed {
            tracing::info!(sha256 = %doc.sha256, verdict = %doc.verdict, %source, "verdict on a file");
            self.sign_herd_set().await?;
        }
        // Also when the set did not change: the verdict may have renamed or re-rated the threat.
        self.rebuild_herd_feed().await?;
        let signatures = self.store.herd_signatures().await?.len() as u64;
        Ok(VerdictOutcome {
            changed,
            set_sha256: self.herd_set_sha256().unwrap_or_default(),
            signatures,
        })
    }

    /// Writes the catalog document of Herd's own threats from the store (in one transaction)
    /// and, when it changed, plans with the new catalog at once; returns once a rebuild that
    /// read the store after the caller's change has been installed. Rebuilding merges the
    /// whole catalog (seconds for SPEC §8's), so concurrent callers — event batches of an
    /// outbreak — share rebuilds: each marks one as wanted and waits for the turn; the first
    /// in turn rebuilds for everyone who marked before it read the store, and the others find
    /// nothing left to do.
    pub(crate) async fn rebuild_herd_feed(&self) -> CenterResult<()> {
        use std::sync::atomic::Ordering::SeqCst;
        self.herd_feed.wanted.store(true, SeqCst);
        let _turn = self.herd_feed.turn.lock().await;
        if !self.herd_feed.wanted.swap(false, SeqCst) {
            return Ok(());
        }
        self.herd_feed.rebuilds.fetch_add(1, SeqCst);
        let revision = self
            .store
            .herd_feed_rebuild(&herd_feed_text, unix_now())
            .await?;
        if let Some(revision) = revision {
            tracing::info!(revision, "Herd's own threats changed the catalog");
            self.refresh_catalog().await.map_err(|err| {
                CenterError::internal(format!(
                    "Herd's threats are stored but the catalog did not reload: {err:#}"
                ))
            })?;
        }
        Ok(())
    }

    /// How many times this process rebuilt Herd's threats in the catalog.
    pub fn herd_feed_rebuilds(&self) -> u64 {
        self.herd_feed
            .rebuilds
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The SHA-256 of Herd's set as this process serves it, if it lists one.
    pub fn herd_set_sha256(&self) -> Option<String> {
        self.trust.served().targets.get(HERD_SET_TARGET).cloned()
    }

    /// Signs the repository so the set's change is served (and pushed) now.
    pub(crate) async fn sign_herd_set(&self) -> CenterResult<()> {
        match self.sign_repository(None).await {
            Ok(_) => Ok(()),
            Err(SignError::Center(err)) => Err(err),
            Err(SignError::Refused(why)) => Err(CenterError::new(
                ErrorKind::Conflict,
                format!("Herd's set changed but the repository could not be signed: {why}"),
            )),
        }
    }

    /// The automatic verdicts on newly stored `scan.detection` events of `terminal` (see the
    /// module documentation). A detection by Herd's own signatures changes nothing. Failures
    /// are logged: the events are stored already, and an operator can still judge by hand.
    pub(crate) async fn immunity_from_detections(&self, terminal: &str, rows: &[EventRow]) {
        let mut changed = false;
        for row in rows
            .iter()
            .filter(|r| r.kind == event_kinds::SCAN_DETECTION)
        {
            let Ok(detection) = serde_json::from_str::<Detection>(&row.data) else {
                continue;
            };
            self.alerts.raise(crate::alerts::AlertEvent::new(
                crate::alerts::AlertKind::Detection,
                terminal.to_owned(),
                format!(
                    "{} detected {} ({}), {}",
                    if detection.product.is_empty() {
                        "Herd"
                    } else {
                        &detection.product
                    },
                    detection.path,
                    detection.signatures.join(", "),
                    detection.action
                ),
            ));
            // A name no threat of the catalog has: a vendor may already describe it in a feed
            // the center polls, so poll now rather than at the feed's interval.
            let snapshot = self.catalog();
            let named = |signature: &String| {
                snapshot
                    .catalog
                    .threats
                    .iter()
                    .any(|t| t.id == *signature || t.name == *signature)
            };
            if !detection.only_herd() && !detection.signatures.iter().any(named) {
                self.poke_feeds();
            }
            if detection.only_herd() || detection.size == 0 {
                continue;
            }
            let first_signature = detection
                .signatures
                .iter()
                .find(|s| !s.starts_with(HERD_SIGNATURE_PREFIX))
                .cloned()
                .unwrap_or_default();
            let suspicious = detection.action == "reported";
            let source = if suspicious {
                let threshold = self.config.immunity_suspect_terminals;
                if threshold == 0 {
                    continue;
                }
                let seen = self
                    .store
                    .herd_suspect_record(
                        &detection.sha256,
                        terminal,
                        detection.size,
                        &first_signature,
                        row.at,
                    )
                    .await;
                match seen {
                    Ok(count) if count >= threshold => RULE_SUSPECT_TERMINALS,
                    Ok(_) => continue,
                    Err(err) => {
                        tracing::error!(%err, "cannot record a suspicious detection");
                        continue;
                    }
                }
            } else if self.config.immunity_cross_vendor {
                RULE_CROSS_VENDOR
            } else {
                continue;
            };
            // The threat: a catalog threat the vendor's signature names (then the catalog
            // has one threat, now covered by Herd's set too), or the file's own.
            let catalog_threat = detection.signatures.iter().find_map(|s| {
                snapshot
                    .catalog
                    .threats
                    .iter()
                    .find(|t| t.id == *s || t.name == *s)
            });
            let threat = match catalog_threat {
                Some(known) => HerdThreatRow {
                    id: known.id.clone(),
                    name: known.name.clone(),
                    danger: known.danger.to_string(),
                    first_seen: row.at,
                },
                None => HerdThreatRow {
                    id: file_threat_id(&detection.sha256),
                    name: if first_signature.is_empty() {
                        file_threat_id(&detection.sha256)
                    } else {
                        first_signature.clone()
                    },
                    danger: DEFAULT_DANGER.to_owned(),
                    first_seen: row.at,
                },
            };
            if let Err(err) = self.store.herd_threat_put(&threat, false).await {
                tracing::error!(%err, "cannot record Herd's threat");
                continue;
            }
            let signature = HerdSignatureRow {
                name: signature_name("", &detection.sha256),
                sha256: detection.sha256.clone(),
                size: detection.size,
                threat: threat.id,
                source: source.to_owned(),
                first_terminal: terminal.to_owned(),
                first_signature,
                created_at: unix_now(),
            };
            match self.store.herd_signature_add(&signature).await {
                Ok(added) => {
                    if added {
                        tracing::info!(sha256 = %signature.sha256, terminal, rule = source, "Herd's set covers a new file");
                    }
                    changed |= added;
                }
                Err(err) => tracing::error!(%err, "cannot add to Herd's set"),
            }
        }
        if changed && let Err(err) = self.sign_herd_set().await {
            tracing::error!(%err, "cannot sign Herd's set");
        }
        if changed && let Err(err) = self.rebuild_herd_feed().await {
            tracing::error!(%err, "cannot write Herd's threats into the catalog");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(sha: char, size: u64) -> HerdSignatureRow {
        let sha256: String = std::iter::repeat_n(sha, 64).collect();
        HerdSignatureRow {
            name: signature_name("", &sha256),
            sha256,
            size,
            threat: String::new(),
            source: "test".into(),
            first_terminal: String::new(),
            first_signature: String::new(),
            created_at: 0,
        }
    }

    #[test]
    fn the_set_is_one_hsb_line_per_signature() {
        let text = set_text(&[row('a', 10), row('b', 20)]);
        assert_eq!(
            text,
            format!(
                "{a}:10:Herd.Immunity.aaaaaaaaaaaaaaaa\n{b}:20:Herd.Immunity.bbbbbbbbbbbbbbbb\n",
                a = "a".repeat(64),
                b = "b".repeat(64)
            )
        );
    }

    #[test]
    fn the_feed_has_one_threat_per_named_threat_with_its_files() {
        let mut a = row('a', 10);
        a.threat = "worm-x".into();
        a.created_at = 2_000_000_000;
        let mut b = row('b', 20);
        b.threat = "worm-x".into();
        b.created_at = 1_900_000_000;
        // Made before threats were recorded: a threat of its own.
        let c = row('c', 30);
        let threats = [HerdThreatRow {
            id: "worm-x".into(),
            name: "Worm X".into(),
            danger: "critical".into(),
            first_seen: 1_800_000_000,
        }];
        let doc = herd_feed(&[a, b, c], &threats);
        assert_eq!(
            doc.vendors.len() + doc.products.len() + doc.coverage.len(),
            0
        );
        let summary: Vec<_> = doc
            .threats
            .iter()
            .map(|t| {
                (
                    t.id.as_str(),
                    t.name.as_str(),
                    t.danger.as_str(),
                    t.discovered.as_str(),
                    t.herd_since.as_deref().unwrap(),
                    t.aliases.len(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "herd-cccccccccccccccc",
                    "herd-cccccccccccccccc",
                    "high",
                    "1970-01-01",
                    "1970-01-01T00:00:00Z",
                    1
                ),
                (
                    "worm-x",
                    "Worm X",
                    "critical",
                    "2027-01-15",
                    "2030-03-17T17:46:40Z",
                    2
                ),
            ]
        );
        assert_eq!(
            doc.threats[1].aliases[0],
            format!("sha256:{}", "a".repeat(64))
        );
        // The document validates as a catalog on its own.
        doc.validate("Herd's threats").unwrap();
        // The same rows, the same bytes.
        assert_eq!(
            herd_feed_text(&[row('c', 30)], &[]),
            herd_feed_text(&[row('c', 30)], &[])
        );
    }

    #[test]
    fn a_changed_file_names_its_previous_versions_newest_first() {
        let v = |s: &str| s.to_owned();
        // First listed: no previous version.
        assert!(next_previous(None, vec![], "a").is_empty());
        // Unchanged: the same list, so a sign round that changes nothing lists the same.
        assert_eq!(next_previous(Some("b"), vec![v("a")], "b"), [v("a")]);
        // Changed: the version listed before first, at most MAX_DELTA_BASES.
        assert_eq!(
            next_previous(Some("d"), vec![v("c"), v("b"), v("a")], "e"),
            [v("d"), v("c"), v("b")]
        );
        // Back to an earlier version: it is not its own base.
        assert_eq!(next_previous(Some("b"), vec![v("a")], "a"), [v("b")]);
    }

    #[test]
    fn names_and_digests_are_checked() {
        assert_eq!(
            signature_name("virus-a", &"c".repeat(64)),
            "Herd.Immunity.virus-a.cccccccccccccccc"
        );
        assert!(check_sha256(&"a".repeat(64), "x").is_ok());
        let err = check_sha256(&"A".repeat(64), "the verdict: $.sha256").unwrap_err();
        assert!(err.starts_with("the verdict: $.sha256: "), "{err}");
        assert!(check_sha256("abc", "x").is_err());
        assert!(check_threat("virus-a").is_ok());
        assert!(check_threat("a b").is_err());
        assert!(check_threat("").is_err());
    }
}
