//! The trust store, `<state>/trust/`: the newest trusted root and the last trusted timestamp,
//! snapshot, targets and delegated documents, exactly as received (their signatures cover
//! those bytes), each written through herd-fs (atomic, synced), so rollback and freeze
//! protection survive a restart.
//!
//! ```text
//! <state>/trust/
//!   root.json  timestamp.json  snapshot.json  targets.json
//!   delegated/<role>.json     one per delegated role loaded (vendor-<vendor>, herd)
//! ```
//!
//! Nothing read from here is trusted as such: at each refresh the root is checked again
//! (signed by a threshold of its own keys), and the other documents are loaded into a fresh
//! `TrustedSet` only if they still verify against what is newer.

use std::io;
use std::path::{Path, PathBuf};

use crate::run::durable::{self, PRIVATE_DIR, PRIVATE_FILE};

/// The top-level roles, whose names a delegated role may not take.
const TOP_LEVEL: [&str; 4] = ["root", "timestamp", "snapshot", "targets"];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {doing} {path}: {source}")]
    Io {
        doing: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Write(#[from] herd_fs::WriteError),
    #[error(
        "role name {0:?} cannot be stored: a delegated role is named with letters, digits, \
         `.`, `_` and `-` only, and not like a top-level role"
    )]
    RoleName(String),
}

/// The directory of trusted documents.
#[derive(Clone, Debug)]
pub struct TrustStore {
    dir: PathBuf,
}

impl TrustStore {
    /// `<state>/trust`; created on the first write.
    pub fn new(state_dir: &Path) -> TrustStore {
        TrustStore {
            dir: state_dir.join("trust"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where a role's document is kept; a delegated role's name becomes a file name, so it is
    /// checked first (it comes from signed metadata, but from a role the agent may not trust).
    fn path(&self, role: &str) -> Result<PathBuf, StoreError> {
        if TOP_LEVEL.contains(&role) {
            return Ok(self.dir.join(format!("{role}.json")));
        }
        if !is_role_name(role) {
            return Err(StoreError::RoleName(role.to_owned()));
        }
        Ok(self.dir.join("delegated").join(format!("{role}.json")))
    }

    pub fn load(&self, role: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(role)?;
        durable::read_optional(&path).map_err(|source| StoreError::Io {
            doing: "read",
            path,
            source,
        })
    }

    pub fn has_root(&self) -> Result<bool, StoreError> {
        Ok(self.load("root")?.is_some())
    }

    pub fn save(&self, role: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path(role)?;
        let parent = path.parent().expect("a file in the store");
        durable::create_dir(parent, PRIVATE_DIR).map_err(|source| StoreError::Io {
            doing: "create",
            path: parent.to_owned(),
            source,
        })?;
        herd_fs::write_atomic(&path, bytes, PRIVATE_FILE)?;
        Ok(())
    }

    /// The roles the store has a document of: the top-level ones present, then the delegated
    /// ones (sorted). Files whose names are not role names are left out.
    pub fn roles(&self) -> Result<Vec<String>, StoreError> {
        let mut roles: Vec<String> = TOP_LEVEL
            .iter()
            .filter(|role| self.dir.join(format!("{role}.json")).exists())
            .map(|role| (*role).to_owned())
            .collect();
        let delegated = self.dir.join("delegated");
        let entries = match std::fs::read_dir(&delegated) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(roles),
            Err(source) => {
                return Err(StoreError::Io {
                    doing: "list",
                    path: delegated,
                    source,
                });
            }
        };
        let mut names: Vec<String> = entries
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                let role = name.strip_suffix(".json")?;
                is_role_name(role).then(|| role.to_owned())
            })
            .collect();
        names.sort();
        roles.extend(names);
        Ok(roles)
    }

    /// Forgets a document (after a key rotation made it worthless, TUF §5.3.11).
    pub fn remove(&self, role: &str) -> Result<(), StoreError> {
        let path = self.path(role)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io {
                doing: "remove",
                path,
                source,
            }),
        }
    }
}

/// A role name usable as a file name and URL component.
pub fn is_role_name(role: &str) -> bool {
    !role.is_empty()
        && role.len() <= 128
        && !role.starts_with('.')
        && !TOP_LEVEL.contains(&role)
        && role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_round_trip_and_hostile_role_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = TrustStore::new(dir.path());
        assert!(!store.has_root().unwrap());
        store.save("root", b"r").unwrap();
        store.save("vendor-acme", b"v").unwrap();
        assert_eq!(store.load("root").unwrap().unwrap(), b"r");
        assert_eq!(store.load("vendor-acme").unwrap().unwrap(), b"v");
        assert!(dir.path().join("trust/delegated/vendor-acme.json").exists());
        store.remove("vendor-acme").unwrap();
        store.remove("vendor-acme").unwrap();
        assert_eq!(store.load("vendor-acme").unwrap(), None);
        for bad in ["../x", "a/b", "", ".hidden", "x\u{0}"] {
            let err = store.save(bad, b"x").unwrap_err().to_string();
            assert!(err.contains("cannot be stored"), "{bad:?}: {err}");
        }
    }
}
