//! What operators and vendors change in the signed repository, each change checked before
//! it is stored: the repository's status (`GET /v1/trust`), the next root (`PUT
//! /v1/trust/root`: its chain, and online keys the center holds), a pending online key for a
//! root to come, a vendor's signing key, and a vendor's own signed role document. Signing and
//! serving are `tuf.rs`.

use std::collections::BTreeMap;

use herd_core::Timestamp;
use herd_proto::api::{
    OnlineKey, RoleAccepted, TrustDelegation, TrustRoleKeys, TrustRoleStatus, TrustRoot,
    TrustStatus, VendorSigningKey, VendorSigningKeyInfo,
};
use herd_proto::distribution::vendor_paths;
use herd_store::{OnlineKeyState, StoreError, TufDocument, TufState, VendorKeyRow};
use herd_tuf::metadata::{Envelope, parse_expiry};
use herd_tuf::repository::check_root_chain;
use herd_tuf::{PublicKey, Root, SigningKey, Targets};
use serde_json::Value;

use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::tuf::{
    ONLINE_ROLES, SignError, VendorUpload, held_root_keys, package_targets, public_key,
    root_keys_dir, seal_key, signed_by,
};
use crate::{Caller, Center, rfc3339, unix_now};

/// Pending online keys one role may have at a time: each is a key kept for a root that may
/// never come, so an endless loop of requests cannot fill the store.
pub const MAX_PENDING_KEYS_PER_ROLE: usize = 4;

fn invalid(message: impl Into<String>) -> CenterError {
    CenterError::new(ErrorKind::DocumentInvalid, message)
}

fn conflict(message: impl Into<String>) -> CenterError {
    CenterError::new(ErrorKind::Conflict, message)
}

fn from_sign(err: SignError) -> CenterError {
    match err {
        SignError::Refused(why) => invalid(why),
        SignError::Center(err) => err,
    }
}

fn store_conflict(err: StoreError) -> CenterError {
    match err {
        StoreError::Conflict(message) => conflict(message),
        other => other.into(),
    }
}

impl Center {
    /// Refuses a feed of a vendor without a registered signing key when the center requires
    /// vendors to sign (`require_vendor_signatures`).
    pub(crate) async fn check_vendor_signs(&self, vendor: &str) -> CenterResult<()> {
        if !self.config.require_vendor_signatures {
            return Ok(());
        }
        let state = self.store.tuf_state().await?;
        if state.vendor_keys.iter().any(|k| k.vendor == vendor) {
            return Ok(());
        }
        Err(CenterError::forbidden(format!(
            "vendor {vendor:?} has no registered signing key, and this center serves only \
             packages their vendor signed (require_vendor_signatures): register one first \
             (`herd vendor key register`, PUT /v1/vendors/{vendor}/signing-key)"
        )))
    }

    /// `GET /v1/trust`.
    pub async fn trust_status(&self) -> CenterResult<TrustStatus> {
        let state = self.store.tuf_state().await?;
        status_of(&state, &held_root_keys(&self.config.data_dir))
    }

    /// `PUT /v1/trust/root`: installs the next root after checking its chain, adding the
    /// center's own signatures first when it holds root keys the chain needs.
    pub async fn install_root(&self, body: &[u8]) -> CenterResult<TrustStatus> {
        let state = self.store.tuf_state().await?;
        let roots: Vec<Vec<u8>> = state
            .roots
            .iter()
            .map(|r| r.doc.as_bytes().to_vec())
            .collect();
        let current = check_root_chain(&roots)
            .map_err(|err| CenterError::internal(format!("the stored root chain: {err}")))?;
        let name = format!("{}.root.json", current.version + 1);
        let envelope =
            Envelope::<Root>::parse(&name, body).map_err(|err| invalid(err.to_string()))?;
        if envelope.signed.version != current.version + 1 {
            return Err(conflict(format!(
                "the root is version {}, but the center serves version {}: the next root is \
                 version {}",
                envelope.signed.version,
                current.version,
                current.version + 1
            )));
        }
        let expires = parse_expiry(&name, &envelope.signed.expires)
            .map_err(|err| invalid(err.to_string()))?;
        if expires <= Timestamp::from_unix_seconds(unix_now()) {
            return Err(invalid(format!(
                "{name} expired at {}",
                envelope.signed.expires
            )));
        }
        // The center's own root keys (an auto-initialised repository) co-sign, so an operator
        // moving the root offline hands over a chain every terminal accepts.
        let held = held_root_keys(&self.config.data_dir);
        let bytes =
            co_sign(body, &envelope, &[&current, &envelope.signed], &held).map_err(invalid)?;
        let mut chain = roots;
        chain.push(bytes.clone());
        let new = check_root_chain(&chain).map_err(|err| invalid(err.to_string()))?;
        let mut active = Vec::with_capacity(ONLINE_ROLES.len());
        for role in ONLINE_ROLES {
            let named = new
                .roles
                .get(role)
                .map(|r| r.keyids.clone())
                .unwrap_or_default();
            let held = |state_wanted: OnlineKeyState| {
                state
                    .online_keys
                    .iter()
                    .find(|k| k.role == role && k.state == state_wanted && named.contains(&k.keyid))
            };
            let key = held(OnlineKeyState::Active)
                .or_else(|| held(OnlineKeyState::Pending))
                .ok_or_else(|| {
                    invalid(format!(
                        "{name} names no {role} key the center holds ({named:?}): ask the center \
                         for one first (POST /v1/trust/online-keys/{role}) and name it"
                    ))
                })?;
            active.push(key.keyid.clone());
        }
        let document = TufDocument {
            role: "root".into(),
            version: new.version,
            expires_at: expires.unix_seconds(),
            doc: String::from_utf8(bytes.clone())
                .map_err(|_| invalid(format!("{name} is not UTF-8")))?,
        };
        self.store
            .tuf_root_install(state.revision, &document, &active)
            .await
            .map_err(store_conflict)?;
        let dir = root_keys_dir(&self.config.data_dir);
        if !held.is_empty() && dir.is_dir() {
            let path = dir.join(&name);
            if let Err(err) = herd_fs::write_atomic(&path, &bytes, 0o600) {
                tracing::warn!(path = %path.display(), %err, "cannot keep a copy of the new root");
            }
        }
        tracing::info!(version = new.version, "installed a new root");
        self.sign_repository(None).await.map_err(from_sign)?;
        self.trust_status().await
    }

    /// `POST /v1/trust/online-keys/{role}`: a new pending online key, which a root naming it
    /// makes active.
    pub async fn new_online_key(&self, role: &str) -> CenterResult<OnlineKey> {
        if !ONLINE_ROLES.contains(&role) {
            return Err(CenterError::not_found(format!(
                "no online role {role:?}: the center signs timestamp, snapshot and targets"
            )));
        }
        let state = self.store.tuf_state().await?;
        let pending = state
            .online_keys
            .iter()
            .filter(|k| k.role == role && k.state == OnlineKeyState::Pending)
            .count();
        if pending >= MAX_PENDING_KEYS_PER_ROLE {
            return Err(conflict(format!(
                "the center already holds {pending} pending {role} keys for roots not installed \
                 yet; install a root naming one of them"
            )));
        }
        let key = SigningKey::generate()
            .map_err(|err| CenterError::internal(format!("generating a key: {err}")))?;
        let row = seal_key(&key, role, OnlineKeyState::Pending, &self.kek, unix_now())?;
        self.store.tuf_online_key_add(&row).await?;
        Ok(OnlineKey {
            role: role.to_owned(),
            keyid: row.keyid,
            public: serde_json::to_value(key.public()).expect("a key serialises"),
            state: Some(OnlineKeyState::Pending.as_str().to_owned()),
        })
    }

    /// `PUT /v1/vendors/{vendor}/signing-key`: from now on `vendor-<vendor>` is delegated to
    /// this key, and only documents it signed are served for it.
    pub async fn register_vendor_key(
        &self,
        caller: &Caller,
        vendor: &str,
        request: VendorSigningKey,
    ) -> CenterResult<VendorSigningKeyInfo> {
        self.may_act_for(caller, vendor)?;
        let key: PublicKey = serde_json::from_value(request.public.clone())
            .map_err(|err| invalid(format!("the signing key: $.public: {err}")))?;
        check_ed25519(&key).map_err(|why| invalid(format!("the signing key: $.public: {why}")))?;
        let now = unix_now();
        let row = VendorKeyRow {
            vendor: vendor.to_owned(),
            keyid: key.key_id(),
            public: serde_json::to_string(&key).expect("a key serialises"),
            registered_at: now,
        };
        self.store.tuf_vendor_key_put(&row).await?;
        tracing::info!(vendor, keyid = %row.keyid, "registered a vendor's signing key");
        self.sign_repository(None).await.map_err(from_sign)?;
        Ok(VendorSigningKeyInfo {
            vendor: row.vendor,
            keyid: row.keyid,
            public: serde_json::to_value(&key).expect("a key serialises"),
            registered_at: rfc3339(now),
        })
    }

    /// `PUT /v1/tuf/roles/{role}`: a vendor's own signed role, served once it is checked:
    /// signed by the vendor's registered key, a version above the current one, not expired,
    /// listing only paths of the vendor's packages, each as the vendor's current feed has it.
    pub async fn accept_vendor_role(
        &self,
        caller: &Caller,
        role: &str,
        body: &[u8],
    ) -> CenterResult<RoleAccepted> {
        let vendor = role
            .strip_prefix("vendor-")
            .filter(|v| herd_core::check_identifier(v).is_ok())
            .ok_or_else(|| {
                CenterError::not_found(format!(
                    "role {role:?} is not uploaded: vendors upload their own role, vendor-<vendor>"
                ))
            })?;
        self.may_act_for(caller, vendor)?;
        let state = self.store.tuf_state().await?;
        let key_row = state
            .vendor_keys
            .iter()
            .find(|k| k.vendor == vendor)
            .ok_or_else(|| {
                conflict(format!(
                    "vendor {vendor:?} has no registered signing key: register it first \
                     (PUT /v1/vendors/{vendor}/signing-key)"
                ))
            })?;
        let key = public_key(&key_row.public, &format!("vendor {vendor}'s signing key"))?;
        let envelope =
            Envelope::<Targets>::parse(role, body).map_err(|err| invalid(err.to_string()))?;
        if !signed_by(role, body, &key) {
            return Err(invalid(format!(
                "{role} is not signed by vendor {vendor:?}'s registered key {}",
                key_row.keyid
            )));
        }
        let expires = envelope
            .expires(role)
            .map_err(|err| invalid(err.to_string()))?;
        if expires <= Timestamp::from_unix_seconds(unix_now()) {
            return Err(invalid(format!(
                "{role} expired at {}",
                envelope.signed.expires
            )));
        }
        let version = envelope.signed.version;
        if let Some(current) = state.latest.iter().find(|d| d.role == role)
            && version <= current.version
        {
            return Err(conflict(format!(
                "{role} version {version} is not above the version served, {}: a rollback \
                 (sign version {} or later)",
                current.version,
                current.version + 1
            )));
        }
        if envelope.signed.delegations.is_some() {
            return Err(invalid(format!(
                "{role} delegates further: a vendor's role may not"
            )));
        }
        let snapshot = self.catalog();
        let targets = package_targets(&snapshot.catalog, &Default::default());
        let feed = targets.get(vendor).ok_or_else(|| {
            conflict(format!(
                "vendor {vendor:?} has no current feed whose packages its role could list"
            ))
        })?;
        let patterns = vendor_paths(vendor);
        for (path, file) in &envelope.signed.targets {
            if !patterns
                .iter()
                .any(|p| herd_tuf::client::path_matches(p, path))
            {
                return Err(invalid(format!(
                    "{role} lists {path}, outside its paths {patterns:?}"
                )));
            }
            let Some(package) = feed.get(path) else {
                return Err(invalid(format!(
                    "{role} lists {path}, which is not a package of vendor {vendor:?}'s current \
                     feed"
                )));
            };
            if file.length != package.length
                || file.hashes.get("sha256") != package.hashes.get("sha256")
            {
                return Err(invalid(format!(
                    "{role} lists {path} with length {} and sha256 {:?}, but the feed's package \
                     has length {} and sha256 {}",
                    file.length,
                    file.hashes.get("sha256"),
                    package.length,
                    package.hashes["sha256"]
                )));
            }
        }
        let upload = VendorUpload {
            vendor: vendor.to_owned(),
            version,
            bytes: body.to_vec(),
        };
        self.sign_repository(Some(&upload))
            .await
            .map_err(from_sign)?;
        let served = self.trust.served();
        tracing::info!(role, version, "serving a vendor's own signed role");
        Ok(RoleAccepted {
            role: role.to_owned(),
            version,
            snapshot_version: served.latest.get("snapshot").map_or(0, |(v, _)| *v),
        })
    }

    fn may_act_for(&self, caller: &Caller, vendor: &str) -> CenterResult<()> {
        herd_core::check_identifier(vendor)
            .map_err(|message| CenterError::bad_request(format!("the vendor id: {message}")))?;
        match caller {
            Caller::Vendor(own) if own != vendor => Err(CenterError::new(
                ErrorKind::ForbiddenVendor,
                format!("this token acts for vendor {own:?}, not {vendor:?}"),
            )),
            _ => Ok(()),
        }
    }
}

/// An ed25519 key as TUF writes it: 32 bytes of hex.
fn check_ed25519(key: &PublicKey) -> Result<(), String> {
    if key.keytype != herd_tuf::keys::ED25519_NAME || key.scheme != herd_tuf::keys::ED25519_NAME {
        return Err(format!(
            "keytype {:?} and scheme {:?}: only ed25519 keys are accepted",
            key.keytype, key.scheme
        ));
    }
    match hex::decode(&key.keyval.public) {
        Ok(raw) if raw.len() == 32 => Ok(()),
        _ => Err("keyval.public is not 32 bytes of hex".into()),
    }
}

/// `body` with signatures added by those of `held` that `roots` name as root keys and have
/// not signed yet; `body` itself when there is nothing to add.
fn co_sign(
    body: &[u8],
    envelope: &Envelope<Root>,
    roots: &[&Root],
    held: &[SigningKey],
) -> Result<Vec<u8>, String> {
    let named = |key: &SigningKey| {
        let id = key.key_id();
        roots.iter().any(|root| {
            root.roles
                .get("root")
                .is_some_and(|r| r.keyids.contains(&id))
        })
    };
    let missing: Vec<&SigningKey> = held
        .iter()
        .filter(|key| named(key))
        .filter(|key| !envelope.signatures.iter().any(|s| s.keyid == key.key_id()))
        .collect();
    if missing.is_empty() {
        return Ok(body.to_vec());
    }
    let mut document: Value =
        serde_json::from_slice(body).map_err(|err| format!("the new root: {err}"))?;
    let signatures = document
        .get_mut("signatures")
        .and_then(Value::as_array_mut)
        .ok_or("the new root has no signatures list")?;
    for key in missing {
        signatures.push(serde_json::json!({
            "keyid": key.key_id(),
            "sig": key.sign(&envelope.canonical_signed),
        }));
    }
    Ok(serde_json::to_vec(&document).expect("JSON serialises"))
}

fn status_of(state: &TufState, held: &[SigningKey]) -> CenterResult<TrustStatus> {
    let roots: Vec<Vec<u8>> = state
        .roots
        .iter()
        .map(|r| r.doc.as_bytes().to_vec())
        .collect();
    let root = check_root_chain(&roots)
        .map_err(|err| CenterError::internal(format!("the stored root chain: {err}")))?;
    let root_keyids = root
        .roles
        .get("root")
        .map(|r| r.keyids.clone())
        .unwrap_or_default();
    let vendor_keys: BTreeMap<&str, &VendorKeyRow> = state
        .vendor_keys
        .iter()
        .map(|k| (k.vendor.as_str(), k))
        .collect();
    let targets = state.latest.iter().find(|d| d.role == "targets");
    let delegations = match targets {
        Some(doc) => {
            let envelope = Envelope::<Targets>::parse("targets", doc.doc.as_bytes())
                .map_err(|err| CenterError::internal(format!("the stored targets: {err}")))?;
            envelope
                .signed
                .delegations
                .map(|d| d.roles)
                .unwrap_or_default()
                .into_iter()
                .map(|role| {
                    let by_vendor = role
                        .name
                        .strip_prefix("vendor-")
                        .and_then(|v| vendor_keys.get(v))
                        .is_some_and(|k| role.keyids.contains(&k.keyid));
                    TrustDelegation {
                        signed_by: if by_vendor { "vendor" } else { "center" }.to_owned(),
                        role: role.name,
                        keyids: role.keyids,
                        threshold: role.threshold,
                        paths: role.paths.unwrap_or_default(),
                    }
                })
                .collect()
        }
        None => Vec::new(),
    };
    let json = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    Ok(TrustStatus {
        root: TrustRoot {
            version: root.version,
            expires: root.expires.clone(),
            roles: root
                .roles
                .iter()
                .map(|(role, keys)| TrustRoleKeys {
                    role: role.clone(),
                    keyids: keys.keyids.clone(),
                    threshold: keys.threshold,
                })
                .collect(),
            keys: serde_json::to_value(&root.keys).expect("keys serialise"),
            pinned_roles: serde_json::to_value(&root.pinned_roles).expect("pins serialise"),
        },
        roles: state
            .latest
            .iter()
            .map(|doc| TrustRoleStatus {
                role: doc.role.clone(),
                version: doc.version,
                expires: rfc3339(doc.expires_at),
            })
            .collect(),
        delegations,
        online_keys: state
            .online_keys
            .iter()
            .map(|k| OnlineKey {
                role: k.role.clone(),
                keyid: k.keyid.clone(),
                public: json(&k.public),
                state: Some(k.state.as_str().to_owned()),
            })
            .collect(),
        vendor_keys: state
            .vendor_keys
            .iter()
            .map(|k| VendorSigningKeyInfo {
                vendor: k.vendor.clone(),
                keyid: k.keyid.clone(),
                public: json(&k.public),
                registered_at: rfc3339(k.registered_at),
            })
            .collect(),
        center_root_keyids: held
            .iter()
            .map(SigningKey::key_id)
            .filter(|id| root_keyids.contains(id))
            .collect(),
    })
}
