//! Loading signature databases for `scan` and `watch`: files, directories read as `clamscan -d`
//! reads them, ClamAV's `.cvd`/`.cld` containers, and the compiled hash signature index kept
//! on disk so that millions of hash signatures are mapped, not parsed, at each start.
//!
//! The index (herd-scan's `hashtable` format) is keyed by what it was built from: the format
//! version, the verifying keys, and each database file's path, device, inode, size, and
//! modification and change times (metadata, not content: hashing 232 MB of text at each start
//! would cost more than the load it saves; the change time moves with every write and cannot
//! be set back by a user). A key that differs, or an index that fails its checks (magic,
//! version, lengths, checksums), is rebuilt and replaced by rename, never trusted; two
//! processes building at once each write a complete file and the last rename wins.
//! Body signatures (`.ndb`, `.ldb`, YARA) are stored in the index as text and compiled at each
//! load; they are thousands where hashes are millions.
//!
//! What is not a loadable database is reported per file, the rest loads; a container that
//! fails verification is reported whole (clamscan refuses it whole too).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use herd_scan::cvd::{self, ContainerKind, Keys};
use herd_scan::hashtable::{FORMAT_VERSION, HashTable, HashTableBuilder, PayloadCheck, Storage};
use herd_scan::mapped::{self, OpenError};
use herd_scan::{Database, Engine};
use sha2::{Digest, Sha256};

/// Where the index lives, if anywhere.
#[derive(Debug, Clone)]
pub enum IndexPlace {
    /// Compile in memory at each load (small sets, read-only systems).
    None,
    /// Keep indexes in this directory (created if missing), as asked for.
    Dir(PathBuf),
    /// The default directory: used only for sets of at least `DEFAULT_INDEX_FROM` hash
    /// signatures (smaller ones compile in a blink, and would litter the cache with an index
    /// per set), and a directory that cannot be written means compiling in memory, quietly.
    Default(PathBuf),
}

/// The hash signature count from which the default place keeps an index (about 0.1 s to
/// compile in memory below it).
pub const DEFAULT_INDEX_FROM: u64 = 100_000;

/// What happened to the index during a load, for the caller to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexOutcome {
    InMemory,
    /// An up-to-date index was mapped.
    Mapped(PathBuf),
    /// The index was (re)built; `why` says what was wrong with the one there.
    Built {
        path: PathBuf,
        why: String,
    },
    /// The index could not be written; the set was compiled in memory.
    Unwritable {
        path: PathBuf,
        error: String,
    },
}

#[derive(Debug)]
pub struct Loaded {
    pub engine: Engine,
    /// Bad or unsupported lines and files, one message each (`file:line: reason`).
    pub errors: Vec<String>,
    pub index: IndexOutcome,
    /// What identifies the set: the database files (path, device, inode, size, times), the
    /// verifying keys and the index format — the index file's key.
    pub set_key: [u8; 32],
}

/// Loads `paths` (files and directories) with hashes indexed in `place`.
pub fn load(paths: &[PathBuf], place: &IndexPlace, keys: &Keys) -> Result<Loaded> {
    let files = database_files(paths)?;
    let key = set_key(&files, keys)?;
    let index_path = match place {
        IndexPlace::None => None,
        IndexPlace::Dir(dir) | IndexPlace::Default(dir) => Some(dir.join(index_name(&files))),
    };
    let mut why = "no index yet".to_owned();
    if let Some(path) = &index_path {
        match mapped::open_index(path, Some(key)) {
            Ok(table) => return from_index(table, path, key),
            Err(OpenError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(OpenError::OtherKey) => why = "the databases changed".to_owned(),
            Err(e) => why = format!("the index was unusable ({e})"),
        }
    }
    let (builder, db, errors) = compile(&files, keys)?;
    let default = matches!(place, IndexPlace::Default(_));
    let index_path =
        index_path.filter(|_| !default || builder.signature_count() >= DEFAULT_INDEX_FROM);
    let bytes = builder.finish(key);
    let mut engine = Engine::new(&db);
    let Some(path) = index_path else {
        let table = HashTable::from_storage(Storage::Owned(bytes), PayloadCheck::Verify)?;
        engine.add_hash_table(Arc::new(table));
        return Ok(Loaded {
            engine,
            errors,
            index: IndexOutcome::InMemory,
            set_key: key,
        });
    };
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .map_err(|e| e.to_string())
        .and_then(|()| herd_fs::write_atomic(&path, &bytes, 0o644).map_err(|e| e.to_string()));
    let (table, index) = match written {
        Ok(()) => {
            drop(bytes);
            let table = mapped::open_index(&path, Some(key))
                .with_context(|| format!("reading back the index {}", path.display()))?;
            (table, IndexOutcome::Built { path, why })
        }
        Err(error) => {
            let table = HashTable::from_storage(Storage::Owned(bytes), PayloadCheck::Verify)?;
            let outcome = if default {
                IndexOutcome::InMemory
            } else {
                IndexOutcome::Unwritable { path, error }
            };
            (table, outcome)
        }
    };
    engine.add_hash_table(Arc::new(table));
    Ok(Loaded {
        engine,
        errors,
        index,
        set_key: key,
    })
}

/// An up-to-date index: its stored texts compiled, its notes reported, its hashes mapped.
fn from_index(table: HashTable, path: &Path, set_key: [u8; 32]) -> Result<Loaded> {
    let mut db = Database::new();
    let mut errors: Vec<String> = table.notes().map(str::to_owned).collect();
    for (name, content) in table
        .texts()
        .with_context(|| format!("index {}", path.display()))?
    {
        errors.extend(db.load(name, content).iter().map(ToString::to_string));
    }
    let mut engine = Engine::new(&db);
    engine.add_hash_table(Arc::new(table));
    Ok(Loaded {
        engine,
        errors,
        index: IndexOutcome::Mapped(path.to_owned()),
        set_key,
    })
}

/// Parses every file: hash databases into the table, the rest into a `Database` (and kept as
/// text for the index). Errors that come from neither `Database::load` nor a stored text are
/// notes in the table, so an index gives them back.
fn compile(files: &[PathBuf], keys: &Keys) -> Result<(HashTableBuilder, Database, Vec<String>)> {
    let mut builder = HashTableBuilder::new();
    let mut db = Database::new();
    let mut errors = Vec::new();
    let one = |name: &str,
               content: &[u8],
               builder: &mut HashTableBuilder,
               db: &mut Database,
               errors: &mut Vec<String>| {
        if let Some(bad) = builder.load_hash_file(name, content) {
            for e in bad {
                builder.add_note(&e.to_string());
                errors.push(e.to_string());
            }
        } else {
            builder.add_text(name, content);
            errors.extend(db.load(name, content).iter().map(ToString::to_string));
        }
    };
    for file in files {
        let name = file.display().to_string();
        if is_hash_file(&name) {
            // A block of whole lines at a time: 4,000,000 lines are 232 MB of text, which
            // need not be held beside the table being built.
            let f = std::fs::File::open(file).with_context(|| format!("database {name}"))?;
            let mut reader = std::io::BufReader::with_capacity(1 << 20, f);
            let (mut block, mut lines_before) = (Vec::with_capacity(8 << 20), 0);
            loop {
                block.clear();
                while block.len() < 8 << 20 {
                    let n = std::io::BufRead::read_until(&mut reader, b'\n', &mut block)
                        .with_context(|| format!("database {name}"))?;
                    if n == 0 {
                        break;
                    }
                }
                if block.is_empty() {
                    break;
                }
                let bad = builder
                    .load_hash_lines(&name, lines_before, &block)
                    .unwrap_or_default();
                for e in bad {
                    builder.add_note(&e.to_string());
                    errors.push(e.to_string());
                }
                lines_before += block.iter().filter(|&&b| b == b'\n').count();
            }
            continue;
        }
        let content =
            std::fs::read(file).with_context(|| format!("database {}", file.display()))?;
        if ContainerKind::of(&name).is_some() {
            let mut members = Vec::new();
            let read = cvd::read_container(&name, &content, keys, &mut |member, data| {
                members.push((format!("{name}/{member}"), data.to_vec()));
            });
            drop(content);
            match read {
                Ok(_) => {
                    for (member, data) in members {
                        one(&member, &data, &mut builder, &mut db, &mut errors);
                    }
                }
                Err(e) => {
                    builder.add_note(&e.to_string());
                    errors.push(e.to_string());
                }
            }
        } else {
            one(&name, &content, &mut builder, &mut db, &mut errors);
        }
    }
    Ok((builder, db, errors))
}

fn is_hash_file(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".hdb") || lower.ends_with(".hsb")
}

/// libclamav's load order for a directory (`cli_loaddbdir`): `.ign`/`.ign2` first, then
/// daily.cld, daily.cvd, local.gdb, daily.cfg, `.crb`, then everything else.
fn priority(name: &str) -> u8 {
    let lower = name.to_ascii_lowercase();
    match name {
        _ if lower.ends_with(".ign") || lower.ends_with(".ign2") => 1,
        "daily.cld" => 2,
        "daily.cvd" => 3,
        "local.gdb" => 4,
        "daily.cfg" => 5,
        _ if lower.ends_with(".crb") => 6,
        _ => 7,
    }
}

fn header_version(path: &Path) -> Option<u32> {
    use std::io::Read;
    let mut head = vec![0u8; cvd::HEADER_LEN];
    std::fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    cvd::parse_header(&head).ok().map(|h| h.version)
}

/// The database files named by `paths`, in load order. A directory is read as clamscan reads
/// it: the files whose extension libclamav takes for a database (`cvd::DATABASE_EXTENSIONS`),
/// in its priority order (then by name, where libclamav takes the directory's order), with
/// its rules for containers of the same name: `X.cvd` is skipped when `X.cld` is as new or
/// newer (libclamav warns about the duplicate and loads the `.cld`), and `daily.cld` is skipped
/// when `daily.cvd` is newer. (An older `X.cld` beside a newer `X.cvd` loads both, as in
/// libclamav, whose source marks that as a to-do.)
pub fn database_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        let meta =
            std::fs::metadata(path).with_context(|| format!("database {}", path.display()))?;
        if !meta.is_dir() {
            out.push(path.clone());
            continue;
        }
        let mut files: Vec<(u8, String, PathBuf)> = std::fs::read_dir(path)
            .with_context(|| format!("database directory {}", path.display()))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_owned();
                cvd::is_database_name(&name).then(|| (priority(&name), name, e.path()))
            })
            .collect();
        files.sort();
        let version_of = |name: &str| -> Option<u32> {
            files
                .iter()
                .find(|(_, n, _)| n == name)
                .and_then(|(_, _, p)| header_version(p))
        };
        let skipped: Vec<String> = files
            .iter()
            .filter(|(_, name, _)| {
                let Some((stem, ext)) = name.rsplit_once('.') else {
                    return false;
                };
                match ext {
                    "cvd" => version_of(&format!("{stem}.cld"))
                        .is_some_and(|cld| version_of(name).is_none_or(|cvd| cld >= cvd)),
                    "cld" if name == "daily.cld" => version_of("daily.cvd")
                        .is_some_and(|cvd| version_of(name).is_none_or(|cld| cvd > cld)),
                    _ => false,
                }
            })
            .map(|(_, name, _)| name.clone())
            .collect();
        out.extend(
            files
                .into_iter()
                .filter(|(_, name, _)| !skipped.contains(name))
                .map(|(_, _, p)| p),
        );
    }
    Ok(out)
}

/// What the index stands for: see the module docs.
fn set_key(files: &[PathBuf], keys: &Keys) -> Result<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(b"herd-signature-index\0");
    h.update(FORMAT_VERSION.to_le_bytes());
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(format!("{keys:?}").as_bytes());
    for file in files {
        let m = std::fs::metadata(file).with_context(|| format!("database {}", file.display()))?;
        let file = canonical(file);
        h.update(file.as_os_str().as_encoded_bytes());
        h.update([0]);
        for n in [
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime() as u64,
            m.mtime_nsec() as u64,
            m.ctime() as u64,
            m.ctime_nsec() as u64,
        ] {
            h.update(n.to_le_bytes());
        }
    }
    Ok(h.finalize().into())
}

/// The same file named by a relative or an absolute path is the same set member.
fn canonical(file: &Path) -> PathBuf {
    std::fs::canonicalize(file).unwrap_or_else(|_| file.to_owned())
}

/// One index file per set of database paths, so different sets do not evict each other.
fn index_name(files: &[PathBuf]) -> String {
    let mut h = Sha256::new();
    for file in files {
        h.update(canonical(file).as_os_str().as_encoded_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("signatures-{hex}.idx")
}

/// The default index place for `scan` and `watch` without `--index-dir`: the active
/// product's `<prefix>/signature-index` with `--prefix` (so the agent's own definitions are
/// indexed in its state directory, where the prefix lives by default), else the user's cache
/// directory.
pub fn default_index_dir(prefix: Option<&Path>) -> IndexPlace {
    if let Some(prefix) = prefix {
        return IndexPlace::Default(prefix.join(herd_proto::layout::SIGNATURE_INDEX_DIR));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")));
    match cache {
        Some(dir) => IndexPlace::Default(dir.join("herd-agent").join("signatures")),
        None => IndexPlace::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_scan::cvd::build::{PrivateKey, Spec, container};
    use herd_scan::{MatchOptions, Scratch};

    const EICAR_MD5: &str = "44d88612fea8a8f36de82e1278abb02f";

    fn hits(loaded: &Loaded) -> Vec<String> {
        let mut scratch = Scratch::default();
        let options = MatchOptions {
            all_matches: true,
            ..MatchOptions::default()
        };
        let found = loaded
            .engine
            .match_bytes(herd_scan::EICAR, &mut scratch, options)
            .unwrap();
        found.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn index_round_trip_stale_rebuild_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        std::fs::create_dir(&db).unwrap();
        std::fs::write(
            db.join("a.hdb"),
            format!("{EICAR_MD5}:68:Eicar.A\nbad line\n"),
        )
        .unwrap();
        std::fs::write(
            db.join("b.ndb"),
            "Eicar.B:0:*:58354f2150254041505b345c505a58\n",
        )
        .unwrap();
        let place = IndexPlace::Dir(dir.path().join("index"));
        let keys = Keys::default();
        let paths = [db.clone()];

        let first = load(&paths, &place, &keys).unwrap();
        let IndexOutcome::Built { path, why } = &first.index else {
            panic!("{:?}", first.index)
        };
        assert_eq!(why, "no index yet");
        let index = path.clone();
        assert_eq!(hits(&first), ["Eicar.A", "Eicar.B"]);
        assert_eq!(first.engine.signature_count(), 2);
        let expected_errors = [format!(
            "{}: expected 3 to 5 fields separated by ':', found 1",
            db.join("a.hdb").display().to_string() + ":2"
        )];
        assert_eq!(first.errors, expected_errors);

        // Unchanged: mapped, with the same signatures and the same errors.
        let second = load(&paths, &place, &keys).unwrap();
        assert_eq!(second.index, IndexOutcome::Mapped(index.clone()));
        assert_eq!(hits(&second), ["Eicar.A", "Eicar.B"]);
        assert_eq!(second.errors, expected_errors);
        assert_eq!(second.engine.signature_count(), 2);

        // A database changed: rebuilt, and the new signature is what matches.
        std::fs::write(db.join("a.hdb"), format!("{EICAR_MD5}:68:Eicar.C\n")).unwrap();
        let third = load(&paths, &place, &keys).unwrap();
        assert!(
            matches!(&third.index, IndexOutcome::Built { why, .. } if why == "the databases changed")
        );
        assert_eq!(hits(&third), ["Eicar.C", "Eicar.B"]);
        assert!(third.errors.is_empty());

        // Truncated, then corrupted: detected, rebuilt, never trusted.
        let bytes = std::fs::read(&index).unwrap();
        std::fs::write(&index, &bytes[..bytes.len() - 10]).unwrap();
        let fourth = load(&paths, &place, &keys).unwrap();
        assert!(
            matches!(&fourth.index, IndexOutcome::Built { why, .. } if why.contains("truncated")),
            "{:?}",
            fourth.index
        );
        assert_eq!(hits(&fourth), ["Eicar.C", "Eicar.B"]);
        let mut corrupt = bytes.clone();
        let at = corrupt.len() - 20;
        corrupt[at] ^= 0x10;
        std::fs::write(&index, &corrupt).unwrap();
        let fifth = load(&paths, &place, &keys).unwrap();
        assert!(
            matches!(&fifth.index, IndexOutcome::Built { why, .. } if why.contains("checksum")),
            "{:?}",
            fifth.index
        );
        assert_eq!(hits(&fifth), ["Eicar.C", "Eicar.B"]);

        // In memory, no file.
        let memory = load(&paths, &IndexPlace::None, &keys).unwrap();
        assert_eq!(memory.index, IndexOutcome::InMemory);
        assert_eq!(hits(&memory), ["Eicar.C", "Eicar.B"]);
    }

    #[test]
    fn large_hash_files_are_read_in_blocks_with_lines_counted_across_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("big.hdb");
        let mut text = String::new();
        let mut line = 0;
        while text.len() < 9 << 20 {
            line += 1;
            text.push_str(&format!(
                "{:032x}:{}:Sig.{line}\n",
                u128::from(line as u32) * 31,
                1000 + line
            ));
        }
        text.push_str("not a signature\n");
        text.push_str(&format!("{EICAR_MD5}:68:Eicar.After.The.First.Block\n"));
        std::fs::write(&db, text).unwrap();
        let loaded = load(
            std::slice::from_ref(&db),
            &IndexPlace::None,
            &Keys::default(),
        )
        .unwrap();
        assert_eq!(hits(&loaded), ["Eicar.After.The.First.Block"]);
        assert_eq!(
            loaded.errors,
            [format!(
                "{}:{}: expected 3 to 5 fields separated by ':', found 1",
                db.display(),
                line + 1
            )]
        );
        assert_eq!(loaded.engine.signature_count(), line + 1);
    }

    #[test]
    fn concurrent_builders_leave_a_complete_index() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("big.hdb");
        let mut text = String::new();
        for i in 0..20_000u32 {
            text.push_str(&format!(
                "{:032x}:{}:Sig.{i}\n",
                u128::from(i) * 7919,
                1000 + i
            ));
        }
        text.push_str(&format!("{EICAR_MD5}:68:Eicar.Big\n"));
        std::fs::write(&db, text).unwrap();
        let place = IndexPlace::Dir(dir.path().join("index"));
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let loaded = load(std::slice::from_ref(&db), &place, &Keys::default()).unwrap();
                    assert_eq!(hits(&loaded), ["Eicar.Big"]);
                });
            }
        });
        let loaded = load(std::slice::from_ref(&db), &place, &Keys::default()).unwrap();
        assert!(matches!(loaded.index, IndexOutcome::Mapped(_)));
        assert_eq!(loaded.engine.signature_count(), 20_001);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("index"))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".idx"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn directories_of_containers_load_as_clamscan_picks_them() {
        let dir = tempfile::tempdir().unwrap();
        let key = PrivateKey::test_key();
        let keys = key.keys();
        let hdb = |name: &str| format!("{EICAR_MD5}:68:{name}\n").into_bytes();
        let write = |file: &str, kind, version, sig: &str| {
            let stem = file.split('.').next().unwrap();
            let members = [(format!("{stem}.hdb"), hdb(sig))];
            let members: Vec<(&str, &[u8])> =
                members.iter().map(|(n, d)| (n.as_str(), &d[..])).collect();
            let bytes = container(kind, stem, &members, &Spec::new(version, 1), &key);
            std::fs::write(dir.path().join(file), bytes).unwrap();
        };
        // daily: the .cvd is newer than the .cld, so only the .cvd loads.
        write("daily.cld", ContainerKind::Cld, 5, "Daily.Cld.Old");
        write("daily.cvd", ContainerKind::Cvd, 6, "Daily.Cvd.New");
        // main: a .cld as new as the .cvd wins.
        write("main.cvd", ContainerKind::Cvd, 3, "Main.Cvd");
        write("main.cld", ContainerKind::Cld, 3, "Main.Cld");
        // bytecode: an older .cld beside a newer .cvd loads both (libclamav's to-do).
        write("bytecode.cld", ContainerKind::Cld, 1, "Bytecode.Cld");
        write("bytecode.cvd", ContainerKind::Cvd, 2, "Bytecode.Cvd");
        std::fs::write(dir.path().join("local.ign2"), "Nothing\n").unwrap();
        std::fs::write(dir.path().join("local.pdb"), "H:example.com\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a database\n").unwrap();
        std::fs::write(dir.path().join("COPYING"), "not a database\n").unwrap();
        let files = database_files(&[dir.path().to_owned()]).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "local.ign2",
                "daily.cvd",
                "bytecode.cld",
                "bytecode.cvd",
                "local.pdb",
                "main.cld"
            ]
        );
        let loaded = load(&[dir.path().to_owned()], &IndexPlace::None, &keys).unwrap();
        assert_eq!(
            hits(&loaded),
            ["Daily.Cvd.New", "Bytecode.Cld", "Bytecode.Cvd", "Main.Cld"]
        );
        // The .pdb is a file this engine cannot load: reported, the rest loaded.
        assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
        assert!(
            loaded.errors[0].contains("local.pdb:0: unsupported database type"),
            "{:?}",
            loaded.errors
        );

        // A container ClamAV's key does not verify is refused whole, the others still load
        // through their own checks... none does here, since all are test-signed.
        let refused = load(
            &[dir.path().to_owned()],
            &IndexPlace::None,
            &Keys::default(),
        )
        .unwrap();
        assert!(hits(&refused).is_empty());
        assert_eq!(refused.errors.len(), 5, "{:?}", refused.errors);
        assert!(
            refused
                .errors
                .iter()
                .any(|e| e.contains("daily.cvd: the digital signature does not verify"))
        );
    }

    /// clamscan (when installed) on the same directories: plain databases give the same
    /// detections, and a container signed with another key than Talos's is refused by both.
    /// (A directory of genuine containers cannot be compared here: only Talos can sign them,
    /// and its `.info` signature is checked in a `.cld` as well.)
    #[test]
    fn clamscan_agrees_on_directories() {
        if std::process::Command::new("clamscan")
            .arg("--version")
            .output()
            .is_err()
        {
            println!("skipped: clamscan is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        std::fs::create_dir(&db).unwrap();
        std::fs::write(db.join("a.hdb"), format!("{EICAR_MD5}:68:Eicar.A\n")).unwrap();
        std::fs::write(
            db.join("b.ndb"),
            "Eicar.B:0:*:58354f2150254041505b345c505a58\n",
        )
        .unwrap();
        std::fs::write(db.join("README"), "not a database\n").unwrap();
        let sample = dir.path().join("eicar.com");
        std::fs::write(&sample, herd_scan::EICAR).unwrap();
        let clamscan = |db: &Path| {
            std::process::Command::new("clamscan")
                .args(["--no-summary", "--allmatch", "-d"])
                .arg(db)
                .arg(&sample)
                .output()
                .unwrap()
        };
        let out = clamscan(&db);
        let text = String::from_utf8_lossy(&out.stdout);
        let mut clam: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_suffix(" FOUND"))
            .filter_map(|l| {
                l.rsplit_once(": ")
                    .map(|(_, n)| n.trim_end_matches(".UNOFFICIAL").to_owned())
            })
            .collect();
        clam.sort();
        let loaded = load(
            std::slice::from_ref(&db),
            &IndexPlace::None,
            &Keys::default(),
        )
        .unwrap();
        let mut herd = hits(&loaded);
        herd.sort();
        assert_eq!(herd, clam);
        assert!(loaded.errors.is_empty());

        let key = PrivateKey::test_key();
        let members: [(&str, &[u8]); 1] =
            [("t.hdb", b"44d88612fea8a8f36de82e1278abb02f:68:Eicar.T\n")];
        std::fs::write(
            db.join("t.cld"),
            container(ContainerKind::Cld, "t", &members, &Spec::new(1, 1), &key),
        )
        .unwrap();
        let out = clamscan(&db);
        assert_eq!(
            out.status.code(),
            Some(2),
            "clamscan loads a container Talos did not sign"
        );
        let loaded = load(
            std::slice::from_ref(&db),
            &IndexPlace::None,
            &Keys::default(),
        )
        .unwrap();
        assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
        assert!(
            loaded.errors[0].contains(
                "t.cld: t.info: the digital signature does not verify with the .info key"
            ),
            "{:?}",
            loaded.errors
        );
    }
}
