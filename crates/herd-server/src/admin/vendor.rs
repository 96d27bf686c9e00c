//! The vendors' commands: `herd publish` (a catalog feed, and with `--key` the vendor's own
//! signed role, built in `vendor_role.rs`) and `herd upload` (package files).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use herd_client::ClientError;

use super::connect::{ServerArgs, Session};
use super::output::print_out;
use crate::Outcome;

/// Publish a vendor's catalog feed (`herd.catalog/v1`) to the center.
///
/// The feed replaces the vendor's previous one. It must describe only this vendor and its own
/// products; threats may be shared with other vendors' feeds. The center validates the feed
/// alone and merged with every other vendor's, and applies it completely or not at all.
/// Prints the catalog revision it produced, or that it was unchanged; a refused feed prints
/// every problem with its JSON path and exits 1.
///
/// With --key (the vendor's signing key, registered with `herd vendor key register`), then signs
/// the vendor's role `vendor-<vendor>` itself: every package of the feed as a target (with the
/// SHA-256 and length of an archive package's uncompressed tar, from the package files under
/// --packages), the next version, and uploads it: terminals then trust the vendor's key, not
/// the center's, for its packages.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  herd publish maker-a.json --vendor maker-a --token-file maker-a.token
  HERD_TOKEN=$(cat maker-b.token) herd publish maker-b.json
  herd publish dist/maker-a.json --key maker-a.key --packages dist/")]
pub struct PublishArgs {
    /// The feed file.
    #[arg(value_name = "FEED.json")]
    feed: PathBuf,
    /// The vendor id the feed is for [default: the feed's only vendor].
    #[arg(long, value_name = "VENDOR")]
    vendor: Option<String>,
    /// Sign the vendor's role with this key file after publishing.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// The key-encryption key the key is sealed under, if it is.
    #[arg(long, value_name = "FILE", requires = "key")]
    kek_file: Option<PathBuf>,
    /// Where the feed's package files are (found by SHA-256) [default: the feed's directory].
    #[arg(long, value_name = "DIR", requires = "key")]
    packages: Option<PathBuf>,
    /// Days until the signed role expires (publish again before).
    #[arg(long, value_name = "DAYS", default_value_t = 30, requires = "key",
          value_parser = clap::value_parser!(u32).range(1..=366))]
    role_expires_days: u32,
    #[command(flatten)]
    server: ServerArgs,
}

/// Upload package files to the center, which stores them by SHA-256.
///
/// Each file is hashed, then streamed; the center checks the digest and size before storing
/// it. Prints each package's SHA-256 and size, as the feed's `packages` entries need them.
/// Uploading a package the center already holds is harmless.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  herd upload dist/vaccine-b-7.0-phone.tar.gz dist/vaccine-b-7.0-pc.tar.gz
  herd upload --token-file maker-b.token dist/*.tar.gz")]
pub struct UploadArgs {
    /// The package files.
    #[arg(value_name = "PACKAGE", required = true)]
    packages: Vec<PathBuf>,
    #[command(flatten)]
    server: ServerArgs,
}

pub(super) fn publish(args: PublishArgs) -> anyhow::Result<Outcome> {
    let feed = std::fs::read(&args.feed)
        .with_context(|| format!("cannot read the feed {}", args.feed.display()))?;
    // The key is opened before anything is sent: a wrong KEK must not leave a feed published
    // without its signed role.
    let signing_key = args
        .key
        .as_deref()
        .map(|key| super::keys::open_key_file(key, args.kek_file.as_deref()))
        .transpose()?;
    let vendor = match args.vendor {
        Some(vendor) => vendor,
        None => match feed_vendor(&feed) {
            Ok(vendor) => vendor,
            Err(why) => {
                eprintln!(
                    "herd: {}: {why}; name the vendor with --vendor",
                    args.feed.display()
                );
                return Ok(Outcome::InvalidInput);
            }
        },
    };
    let session = Session::open(&args.server)?;
    let published = match session.client.publish_feed(&vendor, &feed) {
        Ok(published) => published,
        Err(err) => {
            return session.failed(&format!("publishing {}", args.feed.display()), err);
        }
    };
    let mut text = if published.changed {
        format!(
            "published the feed of {}: catalog revision {} (feed sha256 {})\n",
            published.vendor, published.revision, published.sha256
        )
    } else {
        format!(
            "the feed of {} is unchanged: catalog revision {}\n",
            published.vendor, published.revision
        )
    };
    if !published.missing_packages.is_empty() {
        text.push_str(&format!(
            "the center does not hold {} of the packages the feed lists yet; upload them with `herd upload`:\n",
            published.missing_packages.len()
        ));
        for sha256 in &published.missing_packages {
            text.push_str(&format!("  {sha256}\n"));
        }
    }
    if !published.warnings.is_empty() {
        text.push_str("stored, but these parts do not count:\n");
        for warning in &published.warnings {
            text.push_str(&format!("  {}: {}\n", warning.path, warning.message));
        }
    }
    print_out(&text)?;
    if let Some(key) = signing_key {
        let packages = match &args.packages {
            Some(dir) => dir.clone(),
            None => feed_dir(&args.feed),
        };
        return sign_role(
            &session,
            &vendor,
            &feed,
            &key,
            &packages,
            args.role_expires_days,
        )
        .with_context(|| {
            format!(
                "the feed of {vendor} is published, but its role {} is not signed",
                herd_proto::distribution::vendor_role(&vendor)
            )
        });
    }
    Ok(Outcome::Success)
}

fn feed_dir(feed: &Path) -> PathBuf {
    feed.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Signs and uploads the vendor's role for the feed just published.
fn sign_role(
    session: &Session,
    vendor: &str,
    feed: &[u8],
    key: &herd_tuf::SigningKey,
    packages: &Path,
    expires_days: u32,
) -> anyhow::Result<Outcome> {
    use super::vendor_role;
    let role = herd_proto::distribution::vendor_role(vendor);
    let doc: herd_proto::catalog::CatalogDoc =
        serde_json::from_slice(feed).context("the feed the center accepted does not parse")?;
    let mut targets: Vec<_> = herd_proto::distribution::package_targets(&doc)
        .into_iter()
        .filter(|t| t.custom.vendor == vendor)
        .collect();
    let wanted: HashMap<String, u64> = targets
        .iter()
        .map(|t| (t.sha256.clone(), t.length))
        .collect();
    let files = vendor_role::index_packages(packages, &wanted)?;
    vendor_role::fill_content(&mut targets, &files, packages)?;
    let version = current_snapshot(session)
        .map(|snapshot| vendor_role::next_role_version(snapshot.as_ref(), &role))?;
    let now = herd_core::Timestamp::from_unix_seconds(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    );
    let expires = now.plus_seconds(i64::from(expires_days) * 86_400);
    let document = vendor_role::role_document(&targets, version, expires);
    let signed = herd_tuf::sign(&document, &[key]);
    if let Err(err) = session.client.put_role(&role, &signed) {
        return session.failed(&format!("uploading {role} version {version}"), err);
    }
    print_out(&format!(
        "signed {role} version {version} with key {}: {} package target(s), expires {}\n",
        key.key_id(),
        targets.len(),
        document.expires
    ))?;
    Ok(Outcome::Success)
}

/// The snapshot the center serves now (through its timestamp), `None` before it serves any.
/// Only version numbers are read from it: the center checks what is uploaded.
fn current_snapshot(session: &Session) -> anyhow::Result<Option<herd_tuf::Snapshot>> {
    use herd_tuf::metadata::Envelope;
    let fetch = |file: &str| {
        session
            .client
            .tuf_metadata(file)
            .map_err(|err| anyhow::anyhow!("reading the center's {file}: {err}"))
    };
    let Some(timestamp) = fetch("timestamp.json")? else {
        return Ok(None);
    };
    let timestamp = Envelope::<herd_tuf::TimestampRole>::parse("timestamp.json", &timestamp)?;
    let Some(meta) = timestamp.signed.meta.get("snapshot.json") else {
        return Ok(None);
    };
    let file = format!("{}.snapshot.json", meta.version);
    let Some(bytes) = fetch(&file)? else {
        anyhow::bail!("the center's timestamp names {file}, which it does not serve");
    };
    Ok(Some(
        Envelope::<herd_tuf::Snapshot>::parse(&file, &bytes)?.signed,
    ))
}

/// The vendor a feed describes, when it describes exactly one.
fn feed_vendor(feed: &[u8]) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_slice(feed).map_err(|err| format!("not JSON: {err}"))?;
    let ids: Vec<&str> = value
        .get("vendors")
        .and_then(|v| v.as_array())
        .map(|vendors| {
            vendors
                .iter()
                .filter_map(|v| v.get("id").and_then(|id| id.as_str()))
                .collect()
        })
        .unwrap_or_default();
    match ids.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => Err("the feed lists no vendor".to_owned()),
        many => Err(format!(
            "the feed lists {} vendors ({})",
            many.len(),
            many.join(", ")
        )),
    }
}

pub(super) fn upload(args: UploadArgs) -> anyhow::Result<Outcome> {
    let session = Session::open(&args.server)?;
    let mut outcome = Outcome::Success;
    let mut unreadable = 0;
    for path in &args.packages {
        match session.client.upload_package(path) {
            Ok(info) => {
                let note = if info.created {
                    ""
                } else {
                    "  (already stored)"
                };
                print_out(&format!(
                    "{}  {:>12}  {}{note}\n",
                    info.sha256,
                    info.size,
                    path.display()
                ))?;
            }
            // A file that cannot be read does not stop the others from being uploaded.
            Err(err @ ClientError::LocalIo { .. }) => {
                eprintln!("herd: {err}");
                unreadable += 1;
            }
            Err(err) if err.is_refusal() => {
                session.failed(&format!("uploading {}", path.display()), err)?;
                outcome = Outcome::InvalidInput;
            }
            // Unreachable or failing: the next files would fail the same way.
            Err(err) => return session.failed(&format!("uploading {}", path.display()), err),
        }
    }
    if unreadable > 0 {
        anyhow::bail!(
            "{unreadable} of {} package files could not be uploaded",
            args.packages.len()
        );
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendor_of_a_feed_is_inferred_only_when_it_is_unambiguous() {
        assert_eq!(
            feed_vendor(br#"{"vendors": [{"id": "maker-a", "name": "A"}]}"#),
            Ok("maker-a".to_owned())
        );
        assert_eq!(
            feed_vendor(br#"{"vendors": [{"id": "a"}, {"id": "b"}]}"#),
            Err("the feed lists 2 vendors (a, b)".to_owned())
        );
        assert_eq!(
            feed_vendor(br#"{"vendors": []}"#),
            Err("the feed lists no vendor".to_owned())
        );
        assert!(feed_vendor(b"{").unwrap_err().starts_with("not JSON: "));
    }
}
