//! The quarantine store and `herd-agent quarantine list|restore|delete`.
//!
//! A quarantined file is stored as `ID.bin`, its bytes XOR-ed with a SHA-256 keystream derived
//! from the ID, so it can neither run nor match a signature where it lies (not a secrecy
//! measure: the key is the ID), plus `ID.json` with what restoring needs: the original path,
//! owner, mode and modification time, the signatures and the SHA-256 of the original bytes.
//! Both are written through `herd_fs::write_atomic` (a temporary with a unique name, synced,
//! renamed) before the original is removed, so a crash leaves either the original or a
//! complete quarantine entry, and never blocks the next quarantine.
//!
//! The sample queue (`scan --samples DIR`) is the same store without removing the original:
//! copies of files to send to the center (suspicious hits, files that could not be
//! quarantined), with the reason in their metadata.
//!
//! The agent does this as root on paths local users can change, so every path is reached
//! through directory handles (`herd_fs::Dir`), never following a symlink at any component: the
//! scanner reads a file through one descriptor (opened with `O_NOFOLLOW`, or fanotify's) and
//! hands over its (device, inode); the file is quarantined only if its name, looked up through
//! its parent's handle, still refers to that file, and it is removed with `unlinkat` on that
//! same handle only while it still does. A
//! restore walks the destination's parents the same way (a symlinked parent is refused),
//! creates the file exclusively with mode 0600, writes and syncs it, gives it its recorded
//! owner before its mode, and never restores setuid or setgid bits.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use herd_fs::{Dir, FileId};
use nix::sys::stat::FileStat;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where quarantine lives unless `--dir` says otherwise.
const DEFAULT_DIR: &str = "/var/lib/herd/quarantine";

#[derive(Debug, clap::Args)]
pub struct DirArg {
    /// The quarantine directory.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DIR)]
    dir: PathBuf,
}

#[derive(Debug, clap::Subcommand)]
pub enum QuarantineCommand {
    /// List quarantined files.
    List {
        #[command(flatten)]
        dir: DirArg,
        /// One JSON object per entry.
        #[arg(long)]
        json: bool,
    },
    /// Put a quarantined file back (its original path, or `--to`), with its owner, mode and time.
    Restore {
        id: String,
        #[command(flatten)]
        dir: DirArg,
        /// Restore to this path instead of the original one.
        #[arg(long, value_name = "PATH")]
        to: Option<PathBuf>,
    },
    /// Delete a quarantined file for good.
    Delete {
        id: String,
        #[command(flatten)]
        dir: DirArg,
    },
}

pub fn run(command: &QuarantineCommand) -> Result<()> {
    match command {
        QuarantineCommand::List { dir, json } => {
            let store = Store::open(&dir.dir)?;
            let mut out = std::io::stdout().lock();
            for meta in store.list()? {
                let line = if *json {
                    serde_json::to_string(&meta)?
                } else {
                    let when = meta.quarantined_unix;
                    let sigs = meta.signatures.join(",");
                    format!(
                        "{}  {when}  {sigs}  {}",
                        meta.id,
                        meta.original_path().display()
                    )
                };
                // A closed stdout (`| head`) ends the listing quietly.
                if writeln!(out, "{line}").is_err() {
                    break;
                }
            }
        }
        QuarantineCommand::Restore { id, dir, to } => {
            let restored = Store::open(&dir.dir)?.restore(id, to.as_deref())?;
            println!("{id}: restored to {}", restored.path.display());
            if let Some(mode) = restored.dropped_privilege_bits {
                println!(
                    "{id}: its setuid/setgid bits were not restored (mode was {mode:o}, now {:o}); \
                     set them again by hand if the file really needs them",
                    mode & !PRIVILEGE_BITS
                );
            }
        }
        QuarantineCommand::Delete { id, dir } => {
            Store::open(&dir.dir)?.delete(id)?;
            println!("{id}: deleted");
        }
    }
    Ok(())
}

/// What `ID.json` holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub id: String,
    /// The original path as raw bytes in hex (paths need not be UTF-8)…
    pub original_path_hex: String,
    /// …and for people, lossily decoded.
    pub original_path: String,
    pub size: u64,
    pub sha256: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub mtime_unix: i64,
    pub quarantined_unix: u64,
    pub signatures: Vec<String>,
    /// Why a sample was captured (sample queue only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Meta {
    fn original_path(&self) -> PathBuf {
        PathBuf::from(std::ffi::OsString::from_vec(
            decode_hex(&self.original_path_hex).unwrap_or_default(),
        ))
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|p| u8::from_str_radix(p, 16).ok()))
        .collect()
}

/// XORs `data` with the keystream of `id`; applying it twice restores the data.
pub(crate) fn neutralise(id: &str, data: &mut [u8]) {
    for (block, chunk) in data.chunks_mut(32).enumerate() {
        let key = Sha256::new()
            .chain_update(id.as_bytes())
            .chain_update((block as u64).to_le_bytes())
            .finalize();
        for (b, k) in chunk.iter_mut().zip(key) {
            *b ^= k;
        }
    }
}

/// Mode bits a restore never gives back: a restored file must not run with its owner's or
/// group's privileges just because it was once quarantined with them.
const PRIVILEGE_BITS: u32 = 0o6000;

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    pub path: PathBuf,
    /// The recorded mode, when it had setuid or setgid bits that were not restored.
    pub dropped_privilege_bits: Option<u32>,
}

fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Where detected files go: quarantine and the sample queue, each if configured, and which
/// signature names only make a file suspicious.
#[derive(Debug, Default)]
pub struct Stores {
    pub quarantine: Option<Store>,
    pub samples: Option<Store>,
    pub suspicious_prefixes: Vec<String>,
}

/// What happened in a store: the entry id, or why it failed.
pub type StoreResult = Option<Result<String, String>>;

impl Stores {
    pub fn open(
        quarantine: Option<&Path>,
        samples: Option<&Path>,
        suspicious_prefixes: &[String],
    ) -> Result<Stores> {
        Ok(Stores {
            quarantine: quarantine.map(Store::open).transpose()?,
            samples: samples.map(Store::open).transpose()?,
            suspicious_prefixes: suspicious_prefixes.to_vec(),
        })
    }

    /// Whether a signature name marks its file as only suspicious (not proven malicious).
    pub fn suspicious(&self, name: &str) -> bool {
        self.suspicious_prefixes
            .iter()
            .any(|p| name.starts_with(p.as_str()))
    }

    /// Quarantines a detected file, or captures it as a sample when every hit is suspicious
    /// (an uncertain verdict leaves the file in place) or when quarantining it failed.
    /// `scanned` is the (device, inode) of the file whose bytes `content` are: only that file
    /// is quarantined or captured, whatever its path has become since.
    pub fn handle(
        &self,
        path: &Path,
        scanned: FileId,
        content: &[u8],
        names: &[Arc<str>],
    ) -> (StoreResult, StoreResult) {
        if names.is_empty() {
            return (None, None);
        }
        let only_suspicious = names.iter().all(|n| self.suspicious(n));
        let quarantined = match &self.quarantine {
            Some(q) if !only_suspicious => Some(
                q.put(path, scanned, content, names)
                    .map_err(|e| format!("{e:#}")),
            ),
            _ => None,
        };
        let reason = if let Some(Err(e)) = &quarantined {
            Some(format!("quarantine failed: {e}"))
        } else if names.iter().any(|n| self.suspicious(n)) {
            Some("suspicious".to_owned())
        } else {
            None
        };
        let sample = match (&self.samples, reason) {
            (Some(s), Some(reason)) => Some(
                s.capture(path, scanned, content, names, &reason)
                    .map_err(|e| format!("{e:#}")),
            ),
            _ => None,
        };
        (quarantined, sample)
    }
}

#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store> {
        // A store a local user could change (or a symlink to somewhere else) is refused.
        let handle = Dir::open_private(dir)
            .with_context(|| format!("quarantine directory {}", dir.display()))?;
        handle.set_mode(0o700)?;
        // A quarantine interrupted by a crash leaves a temporary, never a half entry.
        herd_fs::remove_stale_temporaries(dir)?;
        Ok(Store {
            dir: dir.to_owned(),
        })
    }

    fn paths(&self, id: &str) -> Result<(PathBuf, PathBuf)> {
        if !valid_id(id) {
            bail!("{id:?} is not a quarantine id (32 hex digits)");
        }
        Ok((
            self.dir.join(format!("{id}.bin")),
            self.dir.join(format!("{id}.json")),
        ))
    }

    /// Moves `path`, whose scanned content is `content` (read from the file `scanned`), into
    /// quarantine; returns the new id. Nothing is removed unless the name still refers to the
    /// scanned file, reached without following a symlink.
    pub fn put(
        &self,
        path: &Path,
        scanned: FileId,
        content: &[u8],
        signatures: &[Arc<str>],
    ) -> Result<String> {
        let original = find_scanned(path, scanned, content)?;
        let (id, bin, json) = self.store(path, &original.stat, content, signatures, None)?;
        if let Err(e) = original.parent.remove_file_if_same(&original.name, scanned) {
            // Leave no half entry: the file stays where it was and the caller reports it.
            let _ = fs::remove_file(&bin);
            let _ = fs::remove_file(&json);
            return Err(e).with_context(|| format!("removing {}", path.display()));
        }
        original.parent.sync()?;
        Ok(id)
    }

    /// Copies `path` (its scanned `content`, from the file `scanned`) into the store,
    /// neutralised, leaving the original: the sample queue, for files to send to the center.
    pub fn capture(
        &self,
        path: &Path,
        scanned: FileId,
        content: &[u8],
        signatures: &[Arc<str>],
        reason: &str,
    ) -> Result<String> {
        let original = find_scanned(path, scanned, content)?;
        Ok(self
            .store(path, &original.stat, content, signatures, Some(reason))?
            .0)
    }

    fn store(
        &self,
        path: &Path,
        stat: &FileStat,
        content: &[u8],
        signatures: &[Arc<str>],
        reason: Option<&str>,
    ) -> Result<(String, PathBuf, PathBuf)> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let digest = Sha256::digest(content);
        let id_source = Sha256::new()
            .chain_update(digest)
            .chain_update(path.as_os_str().as_bytes())
            .chain_update(now.as_nanos().to_le_bytes())
            .chain_update(std::process::id().to_le_bytes())
            .finalize();
        let id = hex(&id_source[..16]);
        let (bin, json) = self.paths(&id)?;
        let record = Meta {
            id: id.clone(),
            original_path_hex: hex(path.as_os_str().as_bytes()),
            original_path: path.display().to_string(),
            size: content.len() as u64,
            sha256: hex(&digest),
            uid: stat.st_uid,
            gid: stat.st_gid,
            mode: stat.st_mode & 0o7777,
            mtime_unix: stat.st_mtime,
            quarantined_unix: now.as_secs(),
            signatures: signatures.iter().map(|s| s.to_string()).collect(),
            reason: reason.map(str::to_owned),
        };
        let mut neutral = content.to_vec();
        neutralise(&id, &mut neutral);
        // The content before the metadata: `list` goes by the metadata, so an entry it shows
        // always has its content. Each write syncs the directory.
        herd_fs::write_atomic(&bin, &neutral, 0o600)?;
        herd_fs::write_atomic(&json, &serde_json::to_vec_pretty(&record)?, 0o600)?;
        Ok((id, bin, json))
    }

    pub fn list(&self) -> Result<Vec<Meta>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let meta: Meta = serde_json::from_slice(&fs::read(&path)?)
                    .with_context(|| format!("{}", path.display()))?;
                out.push(meta);
            }
        }
        out.sort_by(|a, b| (a.quarantined_unix, &a.id).cmp(&(b.quarantined_unix, &b.id)));
        Ok(out)
    }

    fn meta(&self, id: &str) -> Result<Meta> {
        let (_, json) = self.paths(id)?;
        let bytes = fs::read(&json).with_context(|| format!("no quarantine entry {id}"))?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// Restores entry `id` to `to` or its original path; refuses to overwrite anything, to go
    /// through a symlinked parent, and to give back setuid or setgid bits.
    pub fn restore(&self, id: &str, to: Option<&Path>) -> Result<Restored> {
        let meta = self.meta(id)?;
        let (bin, json) = self.paths(id)?;
        let mut data = fs::read(&bin)?;
        neutralise(id, &mut data);
        if hex(&Sha256::digest(&data)) != meta.sha256 {
            bail!("quarantine entry {id} is corrupt (SHA-256 differs); not restored");
        }
        let target = to
            .map(Path::to_owned)
            .unwrap_or_else(|| meta.original_path());
        let restoring = || format!("restoring to {}", target.display());
        let (parent, name) = Dir::open_parent(&target).with_context(restoring)?;
        // 0600 until the owner is right: nobody else can open it meanwhile.
        let mut f = parent.create_file(&name, 0o600).with_context(restoring)?;
        f.write_all(&data).with_context(restoring)?;
        // The owner before the mode: a file with the final mode but still root's (or with
        // another's owner and root's mode) never exists. Ownership can only be given away by
        // root; as anyone else the file stays theirs.
        if let Err(e) = std::os::unix::fs::fchown(&f, Some(meta.uid), Some(meta.gid))
            && e.kind() != std::io::ErrorKind::PermissionDenied
        {
            return Err(e).with_context(restoring);
        }
        let mode = meta.mode & 0o7777 & !PRIVILEGE_BITS;
        f.set_permissions(fs::Permissions::from_mode(mode))
            .with_context(restoring)?;
        let mtime = UNIX_EPOCH + Duration::from_secs(meta.mtime_unix.max(0) as u64);
        f.set_modified(mtime)?;
        f.sync_all()?;
        parent.sync()?;
        fs::remove_file(&bin)?;
        fs::remove_file(&json)?;
        Ok(Restored {
            path: target,
            dropped_privilege_bits: (meta.mode & PRIVILEGE_BITS != 0).then_some(meta.mode),
        })
    }

    pub fn delete(&self, id: &str) -> Result<()> {
        self.meta(id)?;
        let (bin, json) = self.paths(id)?;
        fs::remove_file(bin)?;
        fs::remove_file(json)?;
        Ok(())
    }
}

/// The original of a quarantine or capture, found through its parent's handle.
struct Original {
    parent: Dir,
    name: OsString,
    stat: FileStat,
}

/// Finds `path` through its parent's handle, without following a symlink at any component,
/// and checks that the name still refers to the file that was scanned (same device and inode,
/// same size). The bytes themselves need no second read: the scanner read `content` from a
/// descriptor of that very file (opened with `O_NOFOLLOW`, or fanotify's event descriptor).
/// Not opening the file again also matters on access: an open by the agent would raise a
/// permission event of its own for the agent to answer while it waits.
fn find_scanned(path: &Path, scanned: FileId, content: &[u8]) -> Result<Original> {
    let changed = || {
        format!(
            "{} changed since it was scanned; left alone",
            path.display()
        )
    };
    let (parent, name) = Dir::open_parent(path).with_context(changed)?;
    let Some(stat) = parent.stat_at(&name).with_context(changed)? else {
        bail!(changed());
    };
    let regular = stat.st_mode & nix::libc::S_IFMT == nix::libc::S_IFREG;
    if !regular || FileId::of_stat(&stat) != scanned || stat.st_size as u64 != content.len() as u64
    {
        bail!(changed());
    }
    Ok(Original { parent, name, stat })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// The identity a scan of `path` would hand over.
    fn id_of(path: &Path) -> FileId {
        FileId::of_metadata(&fs::symlink_metadata(path).unwrap())
    }

    #[test]
    fn put_list_restore_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("q")).unwrap();
        let file = dir.path().join("evil.com");
        fs::write(&file, herd_scan::EICAR).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o751)).unwrap();
        let id = store
            .put(&file, id_of(&file), herd_scan::EICAR, &[Arc::from("Eicar")])
            .unwrap();
        assert!(!file.exists());
        let stored = fs::read(dir.path().join(format!("q/{id}.bin"))).unwrap();
        assert_eq!(stored.len(), 68);
        assert!(!stored.windows(5).any(|w| w == b"EICAR"), "neutralised");
        let list = store.list().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].signatures, ["Eicar"]);
        assert_eq!(list[0].original_path(), file);
        assert_eq!(store.restore(&id, None).unwrap().path, file);
        assert_eq!(fs::read(&file).unwrap(), herd_scan::EICAR);
        assert_eq!(fs::metadata(&file).unwrap().mode() & 0o7777, 0o751);
        assert!(store.list().unwrap().is_empty());

        let id = store
            .put(&file, id_of(&file), herd_scan::EICAR, &[Arc::from("Eicar")])
            .unwrap();
        fs::write(&file, b"new file in the way").unwrap();
        assert!(store.restore(&id, None).is_err(), "never overwrites");
        store.delete(&id).unwrap();
        assert!(store.list().unwrap().is_empty());
        assert!(store.delete(&id).is_err());
        assert!(store.delete("../../etc/passwd").is_err());
    }

    /// Not a test: the body of the child process the crash test below starts and kills.
    #[test]
    fn crash_child() {
        let Some((role, path)) = crate::crash_child::role() else {
            return;
        };
        assert_eq!(role, "metadata-then-die");
        crate::crash_child::write_then_die(&path, b"{ \"id\": torn", 0o600);
    }

    #[test]
    fn a_quarantine_killed_mid_write_blocks_nothing_and_is_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join("q");
        Store::open(&q).unwrap();
        let id = "0123456789abcdef0123456789abcdef";
        let mut child = crate::crash_child::spawn(
            "quarantine::tests::crash_child",
            "metadata-then-die",
            &q.join(format!("{id}.json")),
        );
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(child.wait().unwrap().signal(), Some(9));
        let leftovers = |q: &Path| {
            fs::read_dir(q)
                .unwrap()
                .filter(|e| herd_fs::is_temporary(&e.as_ref().unwrap().file_name()))
                .count()
        };
        assert_eq!(leftovers(&q), 1);
        // The half-written entry is not an entry, and opening the store removes it.
        let store = Store::open(&q).unwrap();
        assert!(store.list().unwrap().is_empty());
        assert_eq!(leftovers(&q), 0);
        let file = dir.path().join("evil.com");
        fs::write(&file, herd_scan::EICAR).unwrap();
        store
            .put(&file, id_of(&file), herd_scan::EICAR, &[Arc::from("Eicar")])
            .unwrap();
        assert_eq!(store.list().unwrap().len(), 1);
    }

    #[test]
    fn captured_samples_keep_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Store::open(&dir.path().join("samples")).unwrap();
        let file = dir.path().join("odd.bin");
        fs::write(&file, b"odd").unwrap();
        let id = queue
            .capture(
                &file,
                id_of(&file),
                b"odd",
                &[Arc::from("Suspicious.Odd")],
                "suspicious",
            )
            .unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"odd");
        let list = queue.list().unwrap();
        assert_eq!(list[0].id, id);
        assert_eq!(list[0].reason.as_deref(), Some("suspicious"));
    }

    #[test]
    fn changed_files_are_not_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("q")).unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"longer than scanned").unwrap();
        assert!(store.put(&file, id_of(&file), b"short", &[]).is_err());
        assert!(file.exists());
    }
}

/// Attacks by a local user on quarantine and restore, attempted for real: the attacker's moves
/// are made by a real unprivileged process (`setpriv` to uid 65534) in a directory it owns.
#[cfg(test)]
mod attacks {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::process::Command;

    /// A world the attacker (uid 65534) can write in: `<tmp>/home` belongs to it.
    fn world() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let home = tmp.path().join("home");
        fs::create_dir(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
        (tmp, home)
    }

    /// Runs `script` with `sh` as the unprivileged user 65534, in `dir`.
    fn as_attacker(dir: &Path, script: &str) {
        let status = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sh",
                "-c",
                script,
            ])
            .current_dir(dir)
            .status()
            .expect("setpriv runs");
        assert!(status.success(), "the attacker's step failed: {script}");
    }

    #[test]
    fn a_directory_swapped_for_a_symlink_cannot_redirect_a_quarantine() {
        let (tmp, home) = world();
        let q = Store::open(&tmp.path().join("q")).unwrap();
        // The attacker's infected file, as the scan saw it.
        as_attacker(&home, "mkdir d && echo infected-bytes > d/evil");
        let scanned_path = home.join("d/evil");
        let content = fs::read(&scanned_path).unwrap();
        let scanned = FileId::of_metadata(&fs::symlink_metadata(&scanned_path).unwrap());
        // Root's directory holding a file of the same name (think /etc and passwd).
        let victim_dir = tmp.path().join("victim");
        fs::create_dir(&victim_dir).unwrap();
        fs::write(victim_dir.join("evil"), &content).unwrap();
        // Between the scan and the quarantine, the attacker swaps its directory for a link.
        as_attacker(
            &home,
            &format!("mv d d.old && ln -s {} d", victim_dir.display()),
        );
        let err = q
            .put(&scanned_path, scanned, &content, &[Arc::from("Eicar")])
            .unwrap_err();
        assert!(format!("{err:#}").contains("symbolic link"), "{err:#}");
        assert_eq!(fs::read(victim_dir.join("evil")).unwrap(), content);
        assert!(
            q.list().unwrap().is_empty(),
            "no entry for a refused quarantine"
        );

        // Same name, same directory, another file (the attacker replaced the scanned one):
        // left alone too.
        as_attacker(
            &home,
            "rm d && mv d.old d && mv d/evil d/evil.old && cp d/evil.old d/evil",
        );
        let err = q
            .put(&scanned_path, scanned, &content, &[Arc::from("Eicar")])
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("changed since it was scanned"),
            "{err:#}"
        );
        assert!(scanned_path.exists());
    }

    #[test]
    fn a_symlinked_parent_cannot_redirect_a_restore() {
        let (tmp, home) = world();
        let q = Store::open(&tmp.path().join("q")).unwrap();
        as_attacker(&home, "mkdir d && echo infected-bytes > d/evil");
        let path = home.join("d/evil");
        let content = fs::read(&path).unwrap();
        let id = q
            .put(
                &path,
                FileId::of_metadata(&fs::metadata(&path).unwrap()),
                &content,
                &[Arc::from("Eicar")],
            )
            .unwrap();
        // Root's directory, where the restore must not write.
        let victim_dir = tmp.path().join("victim");
        fs::create_dir(&victim_dir).unwrap();
        as_attacker(
            &home,
            &format!("rmdir d && ln -s {} d", victim_dir.display()),
        );
        let err = q.restore(&id, None).unwrap_err();
        assert!(format!("{err:#}").contains("symbolic link"), "{err:#}");
        assert!(fs::read_dir(&victim_dir).unwrap().next().is_none());
        assert_eq!(
            q.list().unwrap().len(),
            1,
            "the entry is kept for a later restore"
        );

        // A planted file (or link) at the destination itself is never overwritten either.
        as_attacker(
            &home,
            &format!("rm d && mkdir d && ln -s {}/x d/evil", victim_dir.display()),
        );
        assert!(q.restore(&id, None).is_err());
        assert!(!victim_dir.join("x").exists());
    }

    #[test]
    fn a_restored_setuid_file_loses_its_setuid_bit() {
        let (tmp, home) = world();
        let q = Store::open(&tmp.path().join("q")).unwrap();
        as_attacker(&home, "echo infected-bytes > tool && chmod 4755 tool");
        let path = home.join("tool");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o4755);
        let content = fs::read(&path).unwrap();
        let id = q
            .put(
                &path,
                FileId::of_metadata(&fs::metadata(&path).unwrap()),
                &content,
                &[Arc::from("Eicar")],
            )
            .unwrap();
        let restored = q.restore(&id, None).unwrap();
        assert_eq!(restored.dropped_privilege_bits, Some(0o4755));
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o755);
        // It goes back to its owner, who is not root.
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
        assert_eq!(fs::read(&path).unwrap(), content);
    }

    #[test]
    fn a_quarantine_directory_a_user_can_write_is_refused() {
        let (tmp, home) = world();
        let err = Store::open(&home).unwrap_err();
        assert!(
            format!("{err:#}").contains("belongs to uid 65534"),
            "{err:#}"
        );
        let link = tmp.path().join("q-link");
        std::os::unix::fs::symlink(&home, &link).unwrap();
        let err = Store::open(&link).unwrap_err();
        assert!(format!("{err:#}").contains("symbolic link"), "{err:#}");
    }
}
