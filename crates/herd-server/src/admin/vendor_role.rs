//! The role a vendor signs itself (`vendor-<vendor>`, `herd publish --key`): its targets are
//! the feed's packages as `herd_proto::distribution::package_targets` lists them (the same
//! function the center uses), each with the `content` digest of its uncompressed tar computed
//! from the local package file, found by SHA-256 under `--packages DIR`.
//!
//! [`role_document`] is pure; [`index_packages`] and [`content_digest`] read local files.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use herd_core::Timestamp;
use herd_proto::distribution::{ContentDigest, PackageTarget, custom_value};
use herd_tuf::metadata::SPEC_VERSION;
use herd_tuf::{TargetFile, Targets, format_expiry};
use sha2::{Digest, Sha256};

/// The most uncompressed content hashed for one package: a gzip stream that inflates beyond
/// this is not a definitions package.
pub const MAX_CONTENT_BYTES: u64 = 16 << 30;

/// How deep `--packages DIR` is searched for package files.
const MAX_DEPTH: usize = 4;

/// The vendor's role document: the targets as listed, nothing delegated further.
pub fn role_document(targets: &[PackageTarget], version: u64, expires: Timestamp) -> Targets {
    let targets = targets
        .iter()
        .map(|target| {
            (
                target.path.clone(),
                TargetFile {
                    length: target.length,
                    hashes: BTreeMap::from([("sha256".to_owned(), target.sha256.clone())]),
                    custom: Some(custom_value(&target.custom)),
                },
            )
        })
        .collect();
    Targets {
        type_: "targets".into(),
        spec_version: SPEC_VERSION.into(),
        version,
        expires: format_expiry(expires),
        targets,
        delegations: None,
    }
}

/// Fills in each archive package's `content` from its local file (`files`: SHA-256 → path).
/// A package whose file is missing is refused, naming the target, its SHA-256 and size, and
/// where it was looked for.
pub fn fill_content(
    targets: &mut [PackageTarget],
    files: &HashMap<String, PathBuf>,
    searched: &Path,
) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    for target in targets.iter_mut() {
        let Some(path) = files.get(&target.sha256) else {
            missing.push(format!(
                "  {} (sha256 {}, {} bytes)",
                target.path, target.sha256, target.length
            ));
            continue;
        };
        if target.custom.format == "archive" {
            target.custom.content = content_digest(path)?;
        }
    }
    if !missing.is_empty() {
        anyhow::bail!(
            "{} package file(s) of the feed are not under {} (searched {MAX_DEPTH} levels deep, \
             by SHA-256 and size); pass --packages DIR where they are:\n{}",
            missing.len(),
            searched.display(),
            missing.join("\n")
        );
    }
    Ok(())
}

/// The package files under `dir` whose size and SHA-256 are among `wanted` (SHA-256 → size),
/// by SHA-256. Only files of a wanted size are hashed; symbolic links are not followed.
pub fn index_packages(
    dir: &Path,
    wanted: &HashMap<String, u64>,
) -> anyhow::Result<HashMap<String, PathBuf>> {
    let sizes: HashSet<u64> = wanted.values().copied().collect();
    let mut found = HashMap::new();
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((current, depth)) = stack.pop() {
        let entries = std::fs::read_dir(&current)
            .map_err(|e| anyhow::anyhow!("cannot list {}: {e}", current.display()))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| anyhow::anyhow!("cannot list {}: {e}", current.display()))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            if kind.is_dir() && depth + 1 < MAX_DEPTH {
                stack.push((path, depth + 1));
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let size = entry
                .metadata()
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?
                .len();
            if !sizes.contains(&size) {
                continue;
            }
            let sha256 = file_sha256(&path)?;
            if wanted.get(&sha256) == Some(&size) {
                found.entry(sha256).or_insert(path);
            }
        }
    }
    Ok(found)
}

fn file_sha256(path: &Path) -> anyhow::Result<String> {
    let mut file = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    Ok(hex::encode(hasher.finalize()))
}

/// The SHA-256 and length of an archive package's uncompressed tar, as deltas rebuild it:
/// a gzip package is inflated (its first member, as the agent unpacks it), a plain tar is its
/// own content; a zstd package has none here (`None`: no deltas for it).
pub fn content_digest(path: &Path) -> anyhow::Result<Option<ContentDigest>> {
    let read_error = |e: io::Error| anyhow::anyhow!("cannot read {}: {e}", path.display());
    let mut file = std::fs::File::open(path).map_err(read_error)?;
    let mut magic = [0u8; 4];
    let n = read_full(&mut file, &mut magic).map_err(read_error)?;
    let file = std::fs::File::open(path).map_err(read_error)?;
    let digest = match herd_package::archive::detect_compression(&magic[..n]) {
        herd_package::Codec::Gzip => digest_reader(
            flate2::read::GzDecoder::new(io::BufReader::new(file)),
            MAX_CONTENT_BYTES,
        ),
        herd_package::Codec::PlainTar => digest_reader(file, MAX_CONTENT_BYTES),
        herd_package::Codec::Zstd => return Ok(None),
    };
    digest
        .map(Some)
        .map_err(|e| anyhow::anyhow!("{}: its content: {e}", path.display()))
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..])? {
            0 => break,
            read => n += read,
        }
    }
    Ok(n)
}

/// SHA-256 and length of everything `reader` gives, refusing more than `max` bytes.
pub fn digest_reader(reader: impl Read, max: u64) -> io::Result<ContentDigest> {
    let mut hasher = Sha256::new();
    let mut limited = reader.take(max + 1);
    let length = io::copy(&mut limited, &mut hasher)?;
    if length > max {
        return Err(io::Error::other(format!("it inflates beyond {max} bytes")));
    }
    Ok(ContentDigest {
        sha256: hex::encode(hasher.finalize()),
        length,
    })
}

/// The version a role's next document must have: one more than the snapshot lists for it
/// (`snapshot`: the center's current `N.snapshot.json`, `None` when it serves none yet), or 1.
pub fn next_role_version(snapshot: Option<&herd_tuf::Snapshot>, role: &str) -> u64 {
    snapshot
        .and_then(|s| s.meta.get(&format!("{role}.json")))
        .map_or(1, |meta| meta.version + 1)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use herd_proto::catalog::CatalogDoc;
    use herd_proto::distribution::{PackageCustom, package_targets, read_custom, vendor_paths};
    use herd_tuf::SigningKey;
    use herd_tuf::metadata::{Envelope, RoleKeys};

    use super::*;

    fn sha256(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn feed(packages: &[(&str, &[u8])]) -> CatalogDoc {
        let packages: Vec<serde_json::Value> = packages
            .iter()
            .map(|(format, bytes)| {
                serde_json::json!({"platform": "linux", "format": format,
                    "sha256": sha256(bytes), "size": bytes.len(), "name": "acme-av"})
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "format": "herd.catalog/v1",
            "vendors": [{"id": "acme", "name": "Acme"}],
            "products": [{"id": "acme-av", "vendor": "acme", "name": "A", "platforms": ["linux"]}],
            "releases": [{"product": "acme-av", "version": "2", "pattern": "p", "seq": 2,
                          "published": "2026-01-01T00:00:00Z", "packages": packages}]
        }))
        .unwrap()
    }

    #[test]
    fn the_role_lists_every_package_with_its_content_and_verifies_under_the_vendor_key() {
        let dir = tempfile::tempdir().unwrap();
        let tar = b"pretend tar content".repeat(100);
        let archive = gzip(&tar);
        let deb = b"a deb package".to_vec();
        std::fs::create_dir(dir.path().join("dist")).unwrap();
        std::fs::write(dir.path().join("dist/a.tar.gz"), &archive).unwrap();
        std::fs::write(dir.path().join("b.deb"), &deb).unwrap();
        std::fs::write(dir.path().join("other"), b"unrelated").unwrap();
        let feed = feed(&[("archive", &archive), ("deb", &deb)]);
        let mut targets = package_targets(&feed);
        let wanted = targets
            .iter()
            .map(|t| (t.sha256.clone(), t.length))
            .collect();
        let files = index_packages(dir.path(), &wanted).unwrap();
        assert_eq!(files.len(), 2);
        fill_content(&mut targets, &files, dir.path()).unwrap();

        let expires = Timestamp::parse("2027-01-01T00:00:00Z").unwrap();
        let document = role_document(&targets, 3, expires);
        assert_eq!(document.version, 3);
        assert_eq!(document.expires, "2027-01-01T00:00:00Z");
        let archive_target = &document.targets["packages/acme/acme-av/2/linux.archive"];
        assert_eq!(archive_target.length, archive.len() as u64);
        assert_eq!(archive_target.hashes["sha256"], sha256(&archive));
        let custom: PackageCustom = read_custom("t", archive_target.custom.as_ref()).unwrap();
        let content = custom.content.unwrap();
        assert_eq!(
            (content.sha256, content.length),
            (sha256(&tar), tar.len() as u64),
            "the content is the uncompressed tar"
        );
        let deb_target = &document.targets["packages/acme/acme-av/2/linux.deb"];
        let custom: PackageCustom = read_custom("t", deb_target.custom.as_ref()).unwrap();
        assert_eq!(custom.content, None, "only archive packages have content");

        // Signed with the vendor's key, it verifies as the role the center delegates.
        let key = SigningKey::generate().unwrap();
        let bytes = herd_tuf::sign(&document, &[&key]);
        let envelope = Envelope::<Targets>::parse("vendor-acme", &bytes).unwrap();
        let keys = BTreeMap::from([(key.key_id(), key.public())]);
        let role = RoleKeys {
            keyids: vec![key.key_id()],
            threshold: 1,
        };
        envelope
            .check_threshold("vendor-acme", &role, &keys)
            .unwrap();
        for path in envelope.signed.targets.keys() {
            assert!(herd_tuf::client::path_matches(
                &vendor_paths("acme")[0],
                path
            ));
        }
    }

    #[test]
    fn a_missing_package_file_is_refused_naming_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let archive = gzip(b"tar");
        // Same size, other bytes: not the package.
        let mut impostor = archive.clone();
        impostor[20] ^= 1;
        std::fs::write(dir.path().join("a.tar.gz"), &impostor).unwrap();
        let feed = feed(&[("archive", &archive)]);
        let mut targets = package_targets(&feed);
        let wanted = targets
            .iter()
            .map(|t| (t.sha256.clone(), t.length))
            .collect();
        let files = index_packages(dir.path(), &wanted).unwrap();
        assert!(
            files.is_empty(),
            "a file of another SHA-256 is not the package"
        );
        let err = fill_content(&mut targets, &files, dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("1 package file(s) of the feed are not under")
                && err.contains("packages/acme/acme-av/2/linux.archive")
                && err.contains(&sha256(&archive)),
            "{err}"
        );
    }

    #[test]
    fn content_is_bounded_and_a_broken_gzip_is_refused() {
        let big = vec![0u8; 10_000];
        let err = digest_reader(&big[..], 9_999).unwrap_err().to_string();
        assert!(err.contains("inflates beyond 9999 bytes"), "{err}");
        assert_eq!(digest_reader(&big[..], 10_000).unwrap().length, 10_000);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.tar.gz");
        let mut broken = gzip(&big);
        broken.truncate(broken.len() / 2);
        std::fs::write(&path, &broken).unwrap();
        let err = content_digest(&path).unwrap_err().to_string();
        assert!(err.contains("broken.tar.gz: its content: "), "{err}");
        let plain = dir.path().join("plain.tar");
        std::fs::write(&plain, b"tar bytes").unwrap();
        assert_eq!(
            content_digest(&plain).unwrap().unwrap().sha256,
            sha256(b"tar bytes")
        );
    }

    #[test]
    fn the_next_version_follows_the_snapshot() {
        assert_eq!(next_role_version(None, "vendor-acme"), 1);
        let snapshot: herd_tuf::Snapshot = serde_json::from_value(serde_json::json!({
            "_type": "snapshot", "spec_version": "1.0.31", "version": 9,
            "expires": "2030-01-01T00:00:00Z",
            "meta": {"targets.json": {"version": 4}, "vendor-acme.json": {"version": 7}}
        }))
        .unwrap();
        assert_eq!(next_role_version(Some(&snapshot), "vendor-acme"), 8);
        assert_eq!(next_role_version(Some(&snapshot), "vendor-other"), 1);
    }
}
