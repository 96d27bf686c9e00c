//! The center as a TUF repository (SPEC §3.4): it opens the repository the store holds, or
//! initialises one at first start, computes what every targets role should list from the
//! merged catalog, and signs what changed or is about to expire — on every catalog revision
//! and periodically — with `herd_tuf::repository`. It is not where the operator's and vendors'
//! changes to the repository are checked (`trust.rs`) nor where it is served over HTTP
//! (`api/tuf.rs`).
//!
//! Several center processes may share one store: a sign round reads the repository's state
//! (and its `tuf` revision), signs, and stores the result only if the revision did not move
//! meanwhile (`Store::tuf_sign`), so two processes never sign the same version; the loser
//! reads again and usually finds nothing left to sign. Online keys are stored sealed under the
//! CA's key-encryption key and opened once per process.
//!
//! Package targets carry only the SHA-256 the blob store knows (TUF allows any hash set; a
//! client checks every hash listed). An `archive` package's `custom.herd.content` is the
//! SHA-256 and length of the tar inside its gzip, computed once per blob (`content_digest`) and
//! kept in the store beside the package's row.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use herd_core::{Catalog, PackageFormat, Timestamp};
use herd_proto::distribution::{
    ContentDigest, HERD_ROLE, PackageCustom, custom_value, herd_paths, package_target,
    parse_consistent_target_name, vendor_paths, vendor_role,
};
use herd_store::{
    OnlineKeyRow, OnlineKeyState, PackageContent, Store, StoreError, TufDocument, TufSigned,
    TufState, VendorRoleRow,
};
use herd_tls::seal::KeyEncryptionKey;
use herd_tuf::keyfile::{self, KeyFile};
use herd_tuf::metadata::{Envelope, parse_expiry};
use herd_tuf::repository::{
    Desired, DesiredRole, File, Lifetimes, OnlineKeys, Repository, RoleContent, root_document,
};
use herd_tuf::{PublicKey, Root, SigningKey, TargetFile, Targets, format_expiry, sign};
use sha2::{Digest, Sha256};

use crate::config::CenterConfig;
use crate::deltas::DeltaOutcome;
use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::{Center, unix_now};

/// Where an auto-initialised center keeps its root key and the roots it signed.
pub const ROOT_KEYS_DIR: &str = "tuf-root-keys";
/// The roles the center signs with online keys.
pub const ONLINE_ROLES: [&str; 3] = ["timestamp", "snapshot", "targets"];
/// The most uncompressed bytes hashed for one archive package: a package inflating past this
/// is not one Herd builds (the agent refuses far less), and hashing it would cost minutes.
pub const MAX_CONTENT_BYTES: u64 = 16 << 30;
/// A sign round that finds its revision moved reads again, this many times at most.
const SIGN_ATTEMPTS: usize = 5;
/// The longest pause between two sign rounds (expiry refresh).
const MAX_SIGN_INTERVAL_SECS: i64 = 60;

/// What this process knows of the repository: the online keys it opened, the newest root and
/// timestamp (served from memory: every terminal asks for the timestamp at each refresh), and
/// which targets may be downloaded.
#[derive(Debug, Default)]
pub struct Trust {
    /// Online keys opened so far, by key id: unsealing costs a key derivation, paid once.
    opened: Mutex<HashMap<String, Arc<SigningKey>>>,
    served: RwLock<Arc<Served>>,
    /// Serialises this process's sign rounds (the store serialises processes).
    rounds: tokio::sync::Mutex<RoundMemo>,
    /// Blobs whose content could not be read (not gzip, too large): not tried again.
    unreadable_content: Mutex<HashSet<String>>,
    /// Definition deltas made or skipped, by (base content, result content) SHA-256.
    deltas: Mutex<HashMap<(String, String), DeltaOutcome>>,
}

/// The inputs of the last sign round, to tell whether the next one is due.
#[derive(Debug, Default)]
struct RoundMemo {
    catalog_revision: Option<u64>,
    at: i64,
    /// The releases withdrawn (rollouts reverted) when it signed.
    withdrawn: Vec<String>,
}

/// The repository as this process serves it, as of one `tuf` revision.
#[derive(Debug, Default)]
pub struct Served {
    pub revision: u64,
    /// The newest root, `root.json`.
    pub root: Option<TufDocument>,
    pub timestamp: Option<TufDocument>,
    /// The newest version and expiry (Unix seconds) of every role.
    pub latest: BTreeMap<String, (u64, i64)>,
    /// The newest signed document of every role but root and timestamp, by role (what a
    /// check-in's answer carries to a terminal that holds an older one).
    pub documents: BTreeMap<String, Arc<str>>,
    /// Every target listed for the catalog of `catalog_revision`: path → SHA-256.
    pub targets: Arc<HashMap<String, String>>,
    pub catalog_revision: Option<u64>,
}

/// A vendor's signed role document, checked by `trust.rs`, to adopt in a sign round.
#[derive(Clone, Debug)]
pub(crate) struct VendorUpload {
    pub vendor: String,
    pub version: u64,
    pub bytes: Vec<u8>,
}

/// Why a sign round could not sign.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SignError {
    /// What the repository library refused (a vendor's document, a root that does not name
    /// the keys the center holds); the message says what.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Center(#[from] CenterError),
}

impl From<StoreError> for SignError {
    fn from(err: StoreError) -> SignError {
        SignError::Center(err.into())
    }
}

impl Trust {
    pub(crate) fn delta_outcome(&self, pair: &(String, String)) -> Option<DeltaOutcome> {
        self.deltas.lock().expect("deltas lock").get(pair).cloned()
    }

    pub(crate) fn remember_delta(&self, pair: (String, String), outcome: DeltaOutcome) {
        self.deltas
            .lock()
            .expect("deltas lock")
            .insert(pair, outcome);
    }

    /// The version of the `timestamp.json` this process serves (0 before there is one).
    pub fn timestamp_version(&self) -> u64 {
        self.served()
            .latest
            .get("timestamp")
            .map_or(0, |(version, _)| *version)
    }

    /// What this process serves now.
    pub fn served(&self) -> Arc<Served> {
        self.served.read().expect("served lock").clone()
    }

    fn serve(&self, state: &TufState, targets: Option<(u64, Arc<HashMap<String, String>>)>) {
        let mut served = self.served.write().expect("served lock");
        if state.revision < served.revision {
            return;
        }
        let (catalog_revision, targets) = match targets {
            Some((revision, targets)) => (Some(revision), targets),
            None => (served.catalog_revision, served.targets.clone()),
        };
        *served = Arc::new(Served {
            revision: state.revision,
            root: state.roots.last().cloned(),
            timestamp: state.latest.iter().find(|d| d.role == "timestamp").cloned(),
            latest: state
                .roots
                .last()
                .into_iter()
                .chain(&state.latest)
                .map(|d| (d.role.clone(), (d.version, d.expires_at)))
                .collect(),
            documents: state
                .latest
                .iter()
                .filter(|d| d.role != "timestamp" && d.role != "root")
                .map(|d| (d.role.clone(), Arc::from(d.doc.as_str())))
                .collect(),
            targets,
            catalog_revision,
        });
    }

    /// The online key `row` holds, opened with `kek` (once per process).
    fn open_key(
        &self,
        row: &OnlineKeyRow,
        kek: &KeyEncryptionKey,
    ) -> CenterResult<Arc<SigningKey>> {
        if let Some(key) = self.opened.lock().expect("keys lock").get(&row.keyid) {
            return Ok(key.clone());
        }
        let key = Arc::new(open_sealed_key(row, kek)?);
        self.opened
            .lock()
            .expect("keys lock")
            .insert(row.keyid.clone(), key.clone());
        Ok(key)
    }
}

/// Seals an online key for the store, bound to its public key.
pub(crate) fn seal_key(
    key: &SigningKey,
    role: &str,
    state: OnlineKeyState,
    kek: &KeyEncryptionKey,
    now: i64,
) -> CenterResult<OnlineKeyRow> {
    let public = serde_json::to_string(&key.public()).expect("a key serialises");
    let sealed = kek
        .seal(&BASE64.encode(key.pkcs8()), public.as_bytes())
        .map_err(|err| CenterError::internal(format!("sealing an online key: {err}")))?;
    Ok(OnlineKeyRow {
        keyid: key.key_id(),
        role: role.to_owned(),
        public,
        sealed,
        state,
        created_at: now,
    })
}

fn open_sealed_key(row: &OnlineKeyRow, kek: &KeyEncryptionKey) -> CenterResult<SigningKey> {
    let fail = |why: String| {
        CenterError::internal(format!(
            "the online {} key {} cannot be opened: {why} (is this the key-encryption key it \
             was sealed with?)",
            row.role, row.keyid
        ))
    };
    let encoded = kek
        .open(&row.sealed, row.public.as_bytes())
        .map_err(|err| fail(err.to_string()))?;
    let der = BASE64
        .decode(encoded.trim())
        .map_err(|err| fail(err.to_string()))?;
    let key = SigningKey::from_pkcs8(&der).map_err(|err| fail(err.to_string()))?;
    if key.key_id() != row.keyid {
        return Err(fail(format!("it is key {}", key.key_id())));
    }
    Ok(key)
}

/// The root keys the center holds in `<data-dir>/tuf-root-keys/` (an auto-initialised
/// repository), unsealed ones only. A file that is not a key is reported in the log and
/// skipped.
pub(crate) fn held_root_keys(data_dir: &Path) -> Vec<SigningKey> {
    let dir = data_dir.join(ROOT_KEYS_DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut keys = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("key") {
            continue;
        }
        let file = path.display().to_string();
        match std::fs::read_to_string(&path)
            .map_err(|err| err.to_string())
            .and_then(|text| keyfile::decode(&file, &text).map_err(|err| err.to_string()))
        {
            Ok(KeyFile::Clear(key)) => keys.push(key),
            // The operator's sealed keys: the center never writes those, nor opens them.
            Ok(KeyFile::Sealed { .. }) => {}
            Err(why) => tracing::warn!(path = %file, %why, "not a root key; skipped"),
        }
    }
    keys
}

/// At first start (no root in the store): a 1-of-1 root key written to
/// `<data-dir>/tuf-root-keys/`, online keys sealed in the store, root version 1 signed. When
/// another process initialises first, what this one wrote is removed and its repository used.
pub(crate) async fn initialise(
    store: &dyn Store,
    kek: &KeyEncryptionKey,
    config: &CenterConfig,
) -> anyhow::Result<()> {
    if !store.tuf_state().await?.roots.is_empty() {
        return Ok(());
    }
    let now = unix_now();
    let root_key = SigningKey::generate()?;
    let online: Vec<SigningKey> = ONLINE_ROLES
        .iter()
        .map(|_| SigningKey::generate())
        .collect::<Result<_, _>>()?;
    let expires = Timestamp::from_unix_seconds(now).plus_seconds(Lifetimes::default().root_secs);
    let root = root_document(
        None,
        &[root_key.public()],
        1,
        [
            &online[0].public(),
            &online[1].public(),
            &online[2].public(),
        ],
        expires,
    );
    let bytes = sign(&root, &[&root_key]);
    let dir = config.data_dir.join(ROOT_KEYS_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let key_path = dir.join(keyfile::file_name("root", &root_key.key_id()));
    let root_path = dir.join("1.root.json");
    herd_fs::write_atomic(&key_path, keyfile::encode(&root_key).as_bytes(), 0o600)?;
    herd_fs::write_atomic(&root_path, &bytes, 0o600)?;
    let rows = ONLINE_ROLES
        .iter()
        .zip(&online)
        .map(|(role, key)| seal_key(key, role, OnlineKeyState::Active, kek, now))
        .collect::<CenterResult<Vec<_>>>()
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    let document = TufDocument {
        role: "root".into(),
        version: 1,
        expires_at: expires.unix_seconds(),
        doc: String::from_utf8(bytes).expect("signed JSON is UTF-8"),
    };
    if store.tuf_initialise(&document, &rows).await? {
        tracing::warn!(
            dir = %dir.display(),
            "initialised the signed repository with a root key kept online in the data \
             directory: anyone who copies it can sign a new root; move the root offline with \
             `herd keys init --install` (then delete the directory)"
        );
    } else {
        let _ = std::fs::remove_file(&key_path);
        let _ = std::fs::remove_file(&root_path);
    }
    Ok(())
}

/// Every package target of `catalog`, by vendor id: the target path, the package's length and
/// SHA-256, and its `custom.herd` (with `content` where `contents` knows it).
pub fn package_targets(
    catalog: &Catalog,
    contents: &HashMap<String, ContentDigest>,
) -> BTreeMap<String, BTreeMap<String, TargetFile>> {
    let mut by_vendor: BTreeMap<String, BTreeMap<String, TargetFile>> = catalog
        .vendors
        .iter()
        .map(|v| (v.id.clone(), BTreeMap::new()))
        .collect();
    for release in &catalog.releases {
        let product = catalog.product(release.product);
        let vendor = &catalog.vendors[product.vendor.get()].id;
        for package in &release.packages {
            let platform = &catalog.platforms[package.platform.get()];
            let format = package.format.as_str();
            let sha256 = package.sha256.to_string();
            let custom = PackageCustom {
                vendor: vendor.clone(),
                product: product.id.clone(),
                version: release.version.clone(),
                seq: release.seq,
                pattern: release.pattern.clone(),
                platform: platform.clone(),
                format: format.to_owned(),
                name: package.name.clone(),
                product_code: package.product_code.clone(),
                post_install: package.hooks.post_install.clone(),
                pre_uninstall: package.hooks.pre_uninstall.clone(),
                content: (package.format == PackageFormat::Archive)
                    .then(|| contents.get(&sha256).cloned())
                    .flatten(),
            };
            let path = package_target(vendor, &product.id, &release.version, platform, format);
            let target = TargetFile {
                length: package.size,
                hashes: BTreeMap::from([("sha256".to_owned(), sha256)]),
                custom: Some(custom_value(&custom)),
            };
            by_vendor
                .entry(vendor.clone())
                .or_default()
                .insert(path, target);
        }
    }
    by_vendor
}

/// What every targets role should be: one `vendor-<id>` role per vendor of the catalog, signed
/// by the vendor's registered key (`vendor_keys`, serving its checked upload from `uploads`)
/// or else by the center's online targets key (unless `require_vendor_signatures`, when such a
/// vendor gets no role), then `herd`, listing `herd_targets` (the definition deltas).
pub fn desired(
    targets: &BTreeMap<String, BTreeMap<String, TargetFile>>,
    herd_targets: &BTreeMap<String, TargetFile>,
    vendor_keys: &BTreeMap<String, PublicKey>,
    uploads: &BTreeMap<String, Vec<u8>>,
    targets_key: &PublicKey,
    require_vendor_signatures: bool,
) -> Desired {
    let mut roles = Vec::with_capacity(targets.len() + 1);
    for (vendor, listed) in targets {
        let (keys, content) = match vendor_keys.get(vendor) {
            Some(key) => (
                vec![key.clone()],
                RoleContent::Signed(uploads.get(vendor).cloned()),
            ),
            None if require_vendor_signatures => continue,
            None => (
                vec![targets_key.clone()],
                RoleContent::Online(listed.clone()),
            ),
        };
        roles.push(DesiredRole {
            name: vendor_role(vendor),
            paths: vendor_paths(vendor),
            terminating: true,
            keys,
            threshold: 1,
            content,
        });
    }
    roles.push(DesiredRole {
        name: HERD_ROLE.to_owned(),
        paths: herd_paths(),
        terminating: true,
        keys: vec![targets_key.clone()],
        threshold: 1,
        content: RoleContent::Online(herd_targets.clone()),
    });
    Desired { roles }
}

/// Every target the roles of `desired` list, path → SHA-256: what `/tuf/targets/` serves.
/// A vendor's own document counts for what it lists (the center checked each entry against
/// the feed when it was uploaded).
pub fn listed_targets(desired: &Desired) -> HashMap<String, String> {
    let mut index = HashMap::new();
    let mut add = |listed: &BTreeMap<String, TargetFile>| {
        for (path, file) in listed {
            if let Some(sha256) = file.hashes.get("sha256") {
                index.insert(path.clone(), sha256.clone());
            }
        }
    };
    for role in &desired.roles {
        match &role.content {
            RoleContent::Online(listed) => add(listed),
            RoleContent::Signed(Some(bytes)) => {
                if let Ok(envelope) = Envelope::<Targets>::parse(&role.name, bytes) {
                    add(&envelope.signed.targets);
                }
            }
            RoleContent::Signed(None) => {}
        }
    }
    index
}

/// The next root — the same keys, a fresh expiry — when less than half of `lifetime_secs`
/// remains of `root` and `held` has a threshold of its root keys (a root the center
/// initialised and still holds): without it, a center left with its first root would stop
/// being trusted after a year. `None` otherwise.
pub fn renewed_root(
    root: &Root,
    held: &[SigningKey],
    now: Timestamp,
    lifetime_secs: i64,
) -> Option<(Root, Vec<u8>)> {
    let expires = parse_expiry("root", &root.expires).ok()?;
    if expires >= now.plus_seconds(lifetime_secs / 2) {
        return None;
    }
    let role = root.roles.get("root")?;
    let mut signers: Vec<&SigningKey> = held
        .iter()
        .filter(|key| role.keyids.contains(&key.key_id()))
        .collect();
    signers.sort_by_key(|key| key.key_id());
    signers.dedup_by_key(|key| key.key_id());
    if (signers.len() as u64) < u64::from(role.threshold) {
        return None;
    }
    let mut next = root.clone();
    next.version += 1;
    next.expires = format_expiry(now.plus_seconds(lifetime_secs));
    let bytes = sign(&next, &signers);
    Some((next, bytes))
}

/// Whether `bytes` is a targets document signed by `key`.
pub(crate) fn signed_by(role: &str, bytes: &[u8], key: &PublicKey) -> bool {
    let Ok(envelope) = Envelope::<Targets>::parse(role, bytes) else {
        return false;
    };
    let keyid = key.key_id();
    envelope
        .check_threshold(
            role,
            &herd_tuf::RoleKeys {
                keyids: vec![keyid.clone()],
                threshold: 1,
            },
            &BTreeMap::from([(keyid, key.clone())]),
        )
        .is_ok()
}

/// The SHA-256 and length of the tar inside a gzip stream (its first member, as herd-package
/// unpacks it), reading at most `max` uncompressed bytes.
pub fn content_digest(gzip: impl Read, max: u64) -> Result<ContentDigest, String> {
    let mut decoder = flate2::read::GzDecoder::new(std::io::BufReader::new(gzip));
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut length: u64 = 0;
    loop {
        let read = match decoder.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(format!("not a gzip stream: {err}")),
        };
        length += read as u64;
        if length > max {
            return Err(format!("it inflates past {max} bytes"));
        }
        hasher.update(&buffer[..read]);
    }
    Ok(ContentDigest {
        sha256: hex::encode(hasher.finalize()),
        length,
    })
}

/// A parsed public key from its stored JSON.
pub(crate) fn public_key(json: &str, what: &str) -> CenterResult<PublicKey> {
    serde_json::from_str(json)
        .map_err(|err| CenterError::internal(format!("{what}: the stored key is not a key: {err}")))
}

impl Center {
    /// Signs what changed or is about to expire, if a round is due: the catalog changed, the
    /// repository changed (another process or an operator), or the interval passed.
    pub(crate) async fn sign_if_due(&self) {
        let catalog_revision = self.catalog().revision;
        let withdrawn = self.withdrawn_releases();
        let due = {
            let memo = self.trust.rounds.lock().await;
            memo.catalog_revision != Some(catalog_revision)
                || memo.withdrawn != withdrawn
                || unix_now() - memo.at >= self.sign_interval_secs()
        };
        if due && let Err(err) = self.sign_repository(None).await {
            tracing::error!(%err, "cannot sign the repository");
        }
    }

    /// Seconds between expiry checks: a quarter of the shortest lifetime, at most a minute,
    /// so nothing expires between two checks.
    fn sign_interval_secs(&self) -> i64 {
        let lifetimes = self.config.tuf_lifetimes;
        (lifetimes.timestamp_secs / 4).clamp(1, MAX_SIGN_INTERVAL_SECS)
    }

    /// Reads what the store holds and serves it (another process, or an operator through
    /// another process, changed the repository), with the files of Herd's set it lists
    /// (`herd_set::with_stored_set`), so a terminal woken by another process's verdict
    /// downloads the new set from this one too.
    pub(crate) async fn reload_repository(&self) -> CenterResult<()> {
        let state = self.store.tuf_state().await?;
        self.observe_expiries(&state);
        let served = self.trust.served();
        let targets = served.catalog_revision.map(|revision| {
            let index = crate::herd_set::with_stored_set(&served.targets, &state);
            (revision, Arc::new(index))
        });
        self.trust.serve(&state, targets);
        self.announce_changes();
        Ok(())
    }

    /// One sign round (see the module documentation), adopting `upload` if given. Returns the
    /// files signed.
    pub(crate) async fn sign_repository(
        &self,
        upload: Option<&VendorUpload>,
    ) -> Result<Vec<File>, SignError> {
        let mut memo = self.trust.rounds.lock().await;
        for _ in 0..SIGN_ATTEMPTS {
            let mut state = self.store.tuf_state().await?;
            match self.renew_root(&state).await {
                Ok(true) => state = self.store.tuf_state().await?,
                Ok(false) => {}
                // Another process changed the repository first: read it again.
                Err(StoreError::Conflict(_)) => continue,
                Err(err) => return Err(err.into()),
            }
            let snapshot = self.catalog();
            let contents = self.archive_contents(&snapshot.catalog).await?;
            let mut deltas = self
                .delta_targets(&snapshot.catalog, &contents, &state)
                .await;
            // Herd's own signature set (issue 13) is listed by the same role.
            deltas.extend(
                self.herd_set_targets(&state)
                    .await
                    .map_err(SignError::Center)?,
            );
            let keys = self.online_keys(&state).map_err(SignError::Center)?;
            let now = unix_now();
            // Halted releases are listed nowhere (`rollouts::withdraw_targets`).
            let withdrawn = self.withdrawn_releases();
            // Listing a large catalog and signing its roles takes a good part of a second:
            // off the threads that answer requests.
            let round = {
                let (state, catalog, upload, withdrawn) = (
                    state.clone(),
                    snapshot.catalog.clone(),
                    upload.cloned(),
                    withdrawn.clone(),
                );
                let mut deltas = deltas;
                let (lifetimes, require) = (
                    self.config.tuf_lifetimes,
                    self.config.require_vendor_signatures,
                );
                move || -> Result<_, SignError> {
                    let mut targets = package_targets(&catalog, &contents);
                    crate::rollouts::withdraw_targets(&withdrawn, &mut targets, &mut deltas);
                    let (mut repository, desired) = prepare(
                        &state,
                        &targets,
                        &deltas,
                        upload.as_ref(),
                        keys,
                        lifetimes,
                        require,
                    )
                    .map_err(SignError::Center)?;
                    let mut index = listed_targets(&desired);
                    // A vendor's own document may still list them: never served all the same.
                    index.retain(|path, _| !crate::rollouts::is_withdrawn_target(&withdrawn, path));
                    let files = repository
                        .update(&desired, Timestamp::from_unix_seconds(now))
                        .map_err(|err| SignError::Refused(err.to_string()))?;
                    Ok((files, index))
                }
            };
            let (files, index) = tokio::task::spawn_blocking(round).await.map_err(|err| {
                SignError::Center(CenterError::internal(format!("a sign round failed: {err}")))
            })??;
            let index = Arc::new(index);
            if files.is_empty() {
                memo.catalog_revision = Some(snapshot.revision);
                memo.at = now;
                memo.withdrawn = withdrawn.clone();
                self.observe_expiries(&state);
                self.trust.serve(&state, Some((snapshot.revision, index)));
                self.announce_changes();
                return Ok(files);
            }
            let signed = TufSigned {
                documents: files
                    .iter()
                    .map(|file| TufDocument {
                        role: file.role.clone(),
                        version: file.version,
                        expires_at: file.expires.unix_seconds(),
                        doc: String::from_utf8(file.bytes.clone()).expect("signed JSON is UTF-8"),
                    })
                    .collect(),
                upload: upload.map(|upload| VendorRoleRow {
                    vendor: upload.vendor.clone(),
                    version: upload.version,
                    doc: String::from_utf8_lossy(&upload.bytes).into_owned(),
                    uploaded_at: now,
                }),
            };
            match self.store.tuf_sign(state.revision, &signed).await {
                Ok(_) => {
                    // A vendor's own document is adopted, not signed here.
                    let adopted = upload.map(|u| vendor_role(&u.vendor));
                    for file in files.iter().filter(|f| Some(&f.role) != adopted.as_ref()) {
                        self.metrics.count_signature(&file.role);
                    }
                    memo.catalog_revision = Some(snapshot.revision);
                    memo.at = now;
                    memo.withdrawn = withdrawn.clone();
                    let state = self.store.tuf_state().await?;
                    self.observe_expiries(&state);
                    self.trust.serve(&state, Some((snapshot.revision, index)));
                    self.announce_changes();
                    tracing::info!(
                        files = %files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(" "),
                        "signed the repository"
                    );
                    return Ok(files);
                }
                // Another process signed first: read its state and try again.
                Err(StoreError::Conflict(_)) => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(SignError::Center(CenterError::new(
            ErrorKind::Conflict,
            "other center processes kept signing the repository; try again",
        )))
    }

    /// Installs the next root with a fresh expiry when it is due and the center holds the
    /// root keys to sign it ([`renewed_root`]); true if it did.
    async fn renew_root(&self, state: &TufState) -> Result<bool, StoreError> {
        let roots: Vec<Vec<u8>> = state
            .roots
            .iter()
            .map(|r| r.doc.as_bytes().to_vec())
            .collect();
        let Ok(root) = herd_tuf::repository::check_root_chain(&roots) else {
            return Ok(false);
        };
        let now = Timestamp::from_unix_seconds(unix_now());
        let lifetime = self.config.tuf_lifetimes.root_secs;
        let held = held_root_keys(&self.config.data_dir);
        let Some((next, bytes)) = renewed_root(&root, &held, now, lifetime) else {
            return Ok(false);
        };
        let active: Vec<String> = state
            .online_keys
            .iter()
            .filter(|k| k.state == OnlineKeyState::Active)
            .map(|k| k.keyid.clone())
            .collect();
        let document = TufDocument {
            role: "root".into(),
            version: next.version,
            expires_at: now.plus_seconds(lifetime).unix_seconds(),
            doc: String::from_utf8(bytes.clone()).expect("signed JSON is UTF-8"),
        };
        self.store
            .tuf_root_install(state.revision, &document, &active)
            .await?;
        let path = root_keys_dir(&self.config.data_dir).join(format!("{}.root.json", next.version));
        if let Err(err) = herd_fs::write_atomic(&path, &bytes, 0o600) {
            tracing::warn!(path = %path.display(), %err, "cannot keep a copy of the renewed root");
        }
        tracing::warn!(
            version = next.version,
            expires = %next.expires,
            "renewed the root with the root key the center holds online; move it offline with \
             `herd keys init --install`"
        );
        Ok(true)
    }

    /// The online keys (timestamp, snapshot, targets) the newest stored root names, opened.
    fn online_keys(&self, state: &TufState) -> CenterResult<[Arc<SigningKey>; 3]> {
        let roots: Vec<Vec<u8>> = state
            .roots
            .iter()
            .map(|r| r.doc.as_bytes().to_vec())
            .collect();
        let root = herd_tuf::repository::check_root_chain(&roots).map_err(|err| {
            CenterError::internal(format!("the stored root chain does not check: {err}"))
        })?;
        let mut keys = Vec::with_capacity(3);
        for role in ONLINE_ROLES {
            let named = root
                .roles
                .get(role)
                .map(|r| r.keyids.as_slice())
                .unwrap_or(&[]);
            let row = state
                .online_keys
                .iter()
                .find(|k| {
                    k.role == role && k.state == OnlineKeyState::Active && named.contains(&k.keyid)
                })
                .ok_or_else(|| {
                    CenterError::internal(format!(
                        "root version {} names no online {role} key the center holds",
                        root.version
                    ))
                })?;
            keys.push(self.trust.open_key(row, &self.kek)?);
        }
        Ok(keys.try_into().expect("one key per online role"))
    }

    /// The content digest of every archive package of `catalog` whose blob is stored,
    /// computing (and storing) those not known yet.
    async fn archive_contents(
        &self,
        catalog: &Catalog,
    ) -> CenterResult<HashMap<String, ContentDigest>> {
        let mut known: HashMap<String, ContentDigest> = self
            .store
            .package_contents()
            .await?
            .into_iter()
            .map(|c| {
                (
                    c.sha256,
                    ContentDigest {
                        sha256: c.content_sha256,
                        length: c.content_length,
                    },
                )
            })
            .collect();
        let wanted: Vec<String> = catalog
            .releases
            .iter()
            .flat_map(|r| &r.packages)
            .filter(|p| p.format == PackageFormat::Archive)
            .map(|p| p.sha256.to_string())
            .filter(|sha| !known.contains_key(sha))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if wanted.is_empty() {
            return Ok(known);
        }
        // One read for all: a feed may name thousands of packages not uploaded yet.
        let stored: HashSet<String> = self
            .store
            .packages()
            .await?
            .into_iter()
            .map(|p| p.sha256)
            .collect();
        for sha256 in wanted {
            if !stored.contains(&sha256)
                || self
                    .trust
                    .unreadable_content
                    .lock()
                    .expect("content lock")
                    .contains(&sha256)
            {
                continue;
            }
            let Ok(blob) = self.blobs.read(&sha256).await else {
                continue;
            };
            let file = blob.file.into_std().await;
            let digest =
                tokio::task::spawn_blocking(move || content_digest(file, MAX_CONTENT_BYTES))
                    .await
                    .map_err(|err| CenterError::internal(format!("hashing a package: {err}")))?;
            match digest {
                Ok(digest) => {
                    self.store
                        .package_content_set(&PackageContent {
                            sha256: sha256.clone(),
                            content_sha256: digest.sha256.clone(),
                            content_length: digest.length,
                        })
                        .await?;
                    known.insert(sha256, digest);
                }
                Err(why) => {
                    tracing::warn!(
                        package = %sha256,
                        %why,
                        "an archive package's content cannot be read; it is listed without it"
                    );
                    self.trust
                        .unreadable_content
                        .lock()
                        .expect("content lock")
                        .insert(sha256);
                }
            }
        }
        Ok(known)
    }

    fn observe_expiries(&self, state: &TufState) {
        let expiries = state
            .roots
            .last()
            .into_iter()
            .chain(&state.latest)
            .map(|d| (d.role.clone(), d.expires_at))
            .collect();
        self.metrics.set_tuf_expiries(expiries);
        self.metrics.tuf_revision.store(state.revision, Relaxed);
    }

    /// The newest root's text, for enrolment (`EnrolResponse.tuf_root`).
    pub(crate) async fn tuf_root_text(&self) -> CenterResult<Option<String>> {
        if let Some(root) = &self.trust.served().root {
            return Ok(Some(root.doc.clone()));
        }
        Ok(self
            .store
            .tuf_document("root", None)
            .await?
            .map(|root| root.doc))
    }

    /// The metadata file `name` of `/tuf/metadata/`: `root.json`, `timestamp.json` or
    /// `N.ROLE.json`. `NotFound` names what is missing.
    pub async fn tuf_metadata(&self, name: &str) -> CenterResult<Vec<u8>> {
        let served = self.trust.served();
        let missing = || CenterError::not_found(format!("no metadata {name:?} in this repository"));
        let document = match name {
            "root.json" => served.root.clone(),
            "timestamp.json" => match &served.timestamp {
                Some(timestamp) => Some(timestamp.clone()),
                None => self.store.tuf_document("timestamp", None).await?,
            },
            _ => {
                let (version, role) = parse_versioned_name(name).ok_or_else(missing)?;
                if role == "timestamp" {
                    return Err(missing());
                }
                self.store.tuf_document(role, Some(version)).await?
            }
        };
        document.map(|d| d.doc.into_bytes()).ok_or_else(missing)
    }

    /// The SHA-256 of the blob a `/tuf/targets/` path names: `DIRS/SHA256.BASENAME` where
    /// `DIRS/BASENAME` is a target listed now with that SHA-256. `NotFound` otherwise.
    pub fn tuf_target_blob(&self, path: &str) -> CenterResult<String> {
        let missing = || CenterError::not_found(format!("no target {path:?} in this repository"));
        let (target, sha256) = parse_consistent_target_name(path).ok_or_else(missing)?;
        let served = self.trust.served();
        match served.targets.get(&target) {
            Some(listed) if listed == sha256 => Ok(sha256.to_owned()),
            _ => Err(missing()),
        }
    }
}

/// The repository the store holds, resumed, and what it should list.
fn prepare(
    state: &TufState,
    targets: &BTreeMap<String, BTreeMap<String, TargetFile>>,
    herd_targets: &BTreeMap<String, TargetFile>,
    upload: Option<&VendorUpload>,
    keys: [Arc<SigningKey>; 3],
    lifetimes: Lifetimes,
    require_vendor_signatures: bool,
) -> CenterResult<(Repository, Desired)> {
    let roots: Vec<Vec<u8>> = state
        .roots
        .iter()
        .map(|r| r.doc.as_bytes().to_vec())
        .collect();
    let copy =
        |key: &Arc<SigningKey>| SigningKey::from_pkcs8(key.pkcs8()).expect("an opened key reloads");
    let targets_public = keys[2].public();
    let online = OnlineKeys {
        timestamp: copy(&keys[0]),
        snapshot: copy(&keys[1]),
        targets: copy(&keys[2]),
    };
    let mut repository = Repository::new(roots, online, lifetimes)
        .map_err(|err| CenterError::internal(format!("the stored repository: {err}")))?;

    let mut vendor_keys = BTreeMap::new();
    for row in &state.vendor_keys {
        vendor_keys.insert(
            row.vendor.clone(),
            public_key(&row.public, &format!("vendor {}'s signing key", row.vendor))?,
        );
    }
    // A vendor's upload is served only while its registered key signs it (a replaced key
    // leaves the role empty until the vendor signs again).
    let mut uploads: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for row in &state.vendor_roles {
        uploads.insert(row.vendor.clone(), row.doc.as_bytes().to_vec());
    }
    if let Some(upload) = upload {
        uploads.insert(upload.vendor.clone(), upload.bytes.clone());
    }
    uploads.retain(|vendor, bytes| {
        vendor_keys
            .get(vendor)
            .is_some_and(|key| signed_by(&vendor_role(vendor), bytes, key))
    });
    // Resume from the newest documents, except a vendor role the vendor's key did not
    // sign: once a vendor has a key, what the center signed for it is never served again.
    let resumed: Vec<(String, Vec<u8>)> = state
        .latest
        .iter()
        .filter(|doc| {
            let vendor = vendor_keys
                .keys()
                .find(|vendor| vendor_role(vendor) == doc.role);
            match vendor {
                None => true,
                Some(vendor) => state.vendor_roles.iter().any(|u| {
                    &u.vendor == vendor && u.doc == doc.doc && uploads.contains_key(vendor)
                }),
            }
        })
        .map(|doc| (doc.role.clone(), doc.doc.as_bytes().to_vec()))
        .collect();
    repository
        .resume(&resumed)
        .map_err(|err| CenterError::internal(format!("the stored metadata: {err}")))?;
    let desired = desired(
        targets,
        herd_targets,
        &vendor_keys,
        &uploads,
        &targets_public,
        require_vendor_signatures,
    );
    Ok((repository, desired))
}

/// `N.ROLE.json` → (N, ROLE), for a version without leading zeros and a role of identifier
/// characters.
fn parse_versioned_name(name: &str) -> Option<(u64, &str)> {
    let stem = name.strip_suffix(".json")?;
    let (version, role) = stem.split_once('.')?;
    if version.is_empty()
        || version.starts_with('0')
        || !version.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    if role.is_empty()
        || !role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return None;
    }
    Some((version.parse().ok()?, role))
}

/// The directory the auto-initialised root keys are in.
pub fn root_keys_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(ROOT_KEYS_DIR)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn versioned_names_parse_and_odd_ones_do_not() {
        assert_eq!(
            parse_versioned_name("3.snapshot.json"),
            Some((3, "snapshot"))
        );
        assert_eq!(
            parse_versioned_name("12.vendor-acme.json"),
            Some((12, "vendor-acme"))
        );
        for odd in [
            "snapshot.json",
            "03.snapshot.json",
            "x.snapshot.json",
            "3..json",
            "3.snap shot.json",
            "3.snapshot",
            "99999999999999999999999.targets.json",
        ] {
            assert_eq!(parse_versioned_name(odd), None, "{odd}");
        }
    }

    #[test]
    fn the_content_of_a_gzip_is_its_inflated_bytes_and_bounded() {
        let tar = b"pretend this is a tar".repeat(100);
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(&tar).unwrap();
        let gzip = gzip.finish().unwrap();
        let digest = content_digest(&gzip[..], 1 << 20).unwrap();
        assert_eq!(digest.length, tar.len() as u64);
        assert_eq!(digest.sha256, hex::encode(Sha256::digest(&tar)));
        let err = content_digest(&gzip[..], 100).unwrap_err();
        assert!(err.contains("inflates past 100"), "{err}");
        let err = content_digest(&b"plain"[..], 100).unwrap_err();
        assert!(err.contains("not a gzip"), "{err}");
    }

    #[test]
    fn a_root_the_center_holds_is_renewed_at_half_its_life_and_chains() {
        let key = SigningKey::generate().unwrap();
        let online: Vec<SigningKey> = (0..3).map(|_| SigningKey::generate().unwrap()).collect();
        let year = 365 * 86_400;
        let start = Timestamp::from_unix_seconds(1_000_000_000);
        let root = root_document(
            None,
            &[key.public()],
            1,
            [
                &online[0].public(),
                &online[1].public(),
                &online[2].public(),
            ],
            start.plus_seconds(year),
        );
        let first = sign(&root, &[&key]);
        let held = [key];
        assert!(
            renewed_root(&root, &held, start, year).is_none(),
            "a fresh root"
        );
        let later = start.plus_seconds(year / 2 + 1);
        let (next, bytes) = renewed_root(&root, &held, later, year).unwrap();
        assert_eq!(next.version, 2);
        assert_eq!(next.keys, root.keys);
        assert_eq!(next.expires, format_expiry(later.plus_seconds(year)));
        let chained = herd_tuf::repository::check_root_chain(&[first, bytes]).unwrap();
        assert_eq!(chained, next);
        // Without the root key (moved offline), the center cannot and does not renew it.
        let stranger = [SigningKey::generate().unwrap()];
        assert!(renewed_root(&root, &stranger, later, year).is_none());
        assert!(renewed_root(&root, &[], later, year).is_none());
    }

    #[test]
    fn a_sealed_key_opens_only_with_its_kek() {
        let kek = KeyEncryptionKey::from_secret(b"0123456789abcdef0123456789abcdef").unwrap();
        let other = KeyEncryptionKey::from_secret(b"fedcba9876543210fedcba9876543210").unwrap();
        let key = SigningKey::generate().unwrap();
        let row = seal_key(&key, "snapshot", OnlineKeyState::Active, &kek, 1).unwrap();
        assert_eq!(row.keyid, key.key_id());
        assert!(!row.sealed.contains(&BASE64.encode(key.pkcs8())));
        assert_eq!(open_sealed_key(&row, &kek).unwrap().key_id(), key.key_id());
        let err = open_sealed_key(&row, &other).err().unwrap();
        assert!(err.to_string().contains("cannot be opened"), "{err}");
        // Bound to its public key: moved onto another key's row, it does not open.
        let mut moved = row.clone();
        moved.public = serde_json::to_string(&SigningKey::generate().unwrap().public()).unwrap();
        assert!(open_sealed_key(&moved, &kek).is_err());
    }
}
