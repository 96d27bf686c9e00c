//! The collection of the package store, with time injected (`Center::collect_blobs(now)`):
//! a blob no current feed lists is deleted once older than the grace period, with its
//! package row, which frees its vendor's quota; abandoned uploads likewise; a blob a current
//! feed lists, or one being uploaded, or a definitions delta the signed `herd` role lists,
//! never is.

use std::sync::Arc;

use herd_center::config::{CenterConfig, ConfigFile};
use herd_center::{Caller, Center};
use sha2::{Digest as _, Sha256};

const GRACE: i64 = 86_400;

async fn center(dir: &std::path::Path) -> Arc<Center> {
    herd_tls::install_crypto_provider();
    let text = format!(
        "data_dir = {:?}\nblob_grace_secs = {GRACE}\n",
        dir.join("data").display().to_string()
    );
    let config = CenterConfig::from_file(ConfigFile::parse("test", &text).unwrap()).unwrap();
    Center::open(config).await.unwrap()
}

fn maker_a() -> Caller {
    Caller::Vendor("maker-a".into())
}

/// Uploads `bytes` as maker A; returns its digest.
async fn upload(center: &Center, bytes: &[u8]) -> String {
    let digest = hex::encode(Sha256::digest(bytes));
    let mut upload = center
        .begin_package_upload(&maker_a(), &digest, Some(bytes.len() as u64))
        .await
        .unwrap();
    upload.blob.write(bytes).await.unwrap();
    assert!(center.finish_package_upload(upload).await.unwrap().created);
    digest
}

/// Maker A's feed with one release listing `package`.
fn feed_listing(package: &str, size: usize) -> String {
    serde_json::json!({
        "format": "herd.catalog/v1",
        "vendors": [{"id": "maker-a", "name": "Maker A"}],
        "products": [{"id": "vaccine-a", "vendor": "maker-a", "name": "Vaccine A", "platforms": ["pc"]}],
        "releases": [{"product": "vaccine-a", "version": "1.0", "pattern": "a-1", "seq": 1,
            "published": "2000-01-01T00:00:00Z",
            "packages": [{"platform": "pc", "format": "archive", "sha256": package, "size": size}]}],
        "threats": [],
        "coverage": [],
    })
    .to_string()
}

fn blob_path(center: &Center, digest: &str) -> std::path::PathBuf {
    center
        .config
        .blob_dir
        .join("sha256")
        .join(&digest[..2])
        .join(digest)
}

#[tokio::test]
async fn an_unreferenced_blob_is_collected_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let center = center(dir.path()).await;
    let uploaded = herd_center::unix_now();
    let orphan = upload(&center, &[7u8; 5000]).await;
    // An upload a crashed process abandoned half-way, last written at the same time.
    let partial = center
        .config
        .blob_dir
        .join("tmp")
        .join(format!("{}.999999.0.part", "ab".repeat(32)));
    std::fs::write(&partial, [1u8; 300]).unwrap();

    let early = center.collect_blobs(uploaded + GRACE - 60).await.unwrap();
    assert_eq!(early.blobs_collected + early.partial_uploads_removed, 0);
    assert!(blob_path(&center, &orphan).exists() && partial.exists());
    assert_eq!(early.bytes_stored, 5000);

    let late = center.collect_blobs(uploaded + GRACE + 60).await.unwrap();
    assert_eq!(late.blobs_collected, 1);
    assert_eq!(late.partial_uploads_removed, 1);
    assert_eq!(late.bytes_collected, 5300);
    assert_eq!(late.bytes_stored, 0);
    assert!(!blob_path(&center, &orphan).exists() && !partial.exists());
    assert_eq!(center.store.package_get(&orphan).await.unwrap(), None);
    assert_eq!(center.store.package_bytes_of("maker-a").await.unwrap(), 0);
    let metrics = center.metrics.render();
    assert!(
        metrics.contains("herd_blobs_collected_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("herd_blob_bytes_collected_total 5300"),
        "{metrics}"
    );
    center.close().await;
}

#[tokio::test]
async fn a_referenced_blob_is_never_collected() {
    let dir = tempfile::tempdir().unwrap();
    let center = center(dir.path()).await;
    let listed = upload(&center, &[3u8; 4000]).await;
    center
        .publish_feed(
            &maker_a(),
            "maker-a",
            feed_listing(&listed, 4000).as_bytes(),
        )
        .await
        .unwrap();
    // A blob being uploaded again while the collection runs, long after it was first stored
    // and with no feed listing it, is not taken from under the upload.
    let reuploaded = upload(&center, &[4u8; 1000]).await;
    let in_progress = center
        .begin_package_upload(&maker_a(), &reuploaded, Some(1000))
        .await
        .unwrap();

    let decade_later = herd_center::unix_now() + 10 * 365 * 86_400;
    let collected = center.collect_blobs(decade_later).await.unwrap();
    assert_eq!(collected.blobs_collected, 0, "{collected:?}");
    assert!(blob_path(&center, &listed).exists());
    assert!(blob_path(&center, &reuploaded).exists());
    assert!(center.store.package_get(&listed).await.unwrap().is_some());

    // Once the upload is over, the blob nobody lists goes; the listed one stays.
    drop(in_progress);
    let collected = center.collect_blobs(decade_later).await.unwrap();
    assert_eq!(collected.blobs_collected, 1);
    assert!(!blob_path(&center, &reuploaded).exists());
    assert!(blob_path(&center, &listed).exists());
    center.close().await;
}

/// An archive package whose content is `content`, gzip-compressed.
fn gzip(content: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(content).unwrap();
    gzip.finish().unwrap()
}

/// Maker A's feed with a release per `(version, seq, package, size)`.
fn feed_of(releases: &[(&str, u64, &str, usize)]) -> String {
    let releases: Vec<serde_json::Value> = releases
        .iter()
        .map(|(version, seq, package, size)| {
            serde_json::json!({"product": "vaccine-a", "version": version,
                "pattern": format!("a-{seq}"), "seq": seq,
                "published": format!("2000-01-{seq:02}T00:00:00Z"),
                "packages": [{"platform": "pc", "format": "archive", "sha256": package,
                              "size": size}]})
        })
        .collect();
    serde_json::json!({
        "format": "herd.catalog/v1",
        "vendors": [{"id": "maker-a", "name": "Maker A"}],
        "products": [{"id": "vaccine-a", "vendor": "maker-a", "name": "Vaccine A", "platforms": ["pc"]}],
        "releases": releases,
        "threats": [],
        "coverage": [],
    })
    .to_string()
}

/// The SHA-256 of every target the stored `herd` role lists (the definition deltas).
async fn herd_role_blobs(center: &Center) -> Vec<String> {
    let doc = center
        .store
        .tuf_document("herd", None)
        .await
        .unwrap()
        .expect("a herd role");
    let doc: serde_json::Value = serde_json::from_str(&doc.doc).unwrap();
    doc["signed"]["targets"]
        .as_object()
        .unwrap()
        .values()
        .map(|t| t["hashes"]["sha256"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_delta_the_signed_herd_role_lists_is_never_collected() {
    let dir = tempfile::tempdir().unwrap();
    let center = center(dir.path()).await;
    // Two releases whose contents differ in a few bytes: a delta far smaller than either.
    let first: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut second = first.clone();
    second[150_000..150_016].copy_from_slice(b"a new signature!");
    let (first, second) = (gzip(&first), gzip(&second));
    let (one, two) = (
        upload(&center, &first).await,
        upload(&center, &second).await,
    );
    let both = feed_of(&[
        ("1.0", 1, &one, first.len()),
        ("2.0", 2, &two, second.len()),
    ]);
    center
        .publish_feed(&maker_a(), "maker-a", both.as_bytes())
        .await
        .unwrap();
    let deltas = herd_role_blobs(&center).await;
    assert_eq!(deltas.len(), 1, "one delta, from 1.0's content to 2.0's");
    let delta = &deltas[0];
    assert!(blob_path(&center, delta).exists());

    let decade_later = herd_center::unix_now() + 10 * 365 * 86_400;
    let collected = center.collect_blobs(decade_later).await.unwrap();
    assert_eq!(collected.blobs_collected, 0, "{collected:?}");
    assert!(blob_path(&center, delta).exists());

    // Once 2.0 is gone from the feed, the signed role lists no delta, and the blob goes.
    let only_first = feed_of(&[("1.0", 1, &one, first.len())]);
    center
        .publish_feed(&maker_a(), "maker-a", only_first.as_bytes())
        .await
        .unwrap();
    assert!(herd_role_blobs(&center).await.is_empty());
    let collected = center.collect_blobs(decade_later).await.unwrap();
    assert_eq!(collected.blobs_collected, 2, "2.0's package and the delta");
    assert!(!blob_path(&center, delta).exists());
    center.close().await;
}

#[tokio::test]
async fn a_long_history_gets_its_deltas_over_several_rounds_the_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let center = center(dir.path()).await;
    let base: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let mut releases = Vec::new();
    for seq in 1..=5u8 {
        let mut content = base.clone();
        content[1000 * usize::from(seq)] = seq;
        let package = gzip(&content);
        let digest = upload(&center, &package).await;
        releases.push((format!("{seq}.0"), u64::from(seq), digest, package.len()));
    }
    let listed: Vec<(&str, u64, &str, usize)> = releases
        .iter()
        .map(|(v, seq, d, len)| (v.as_str(), *seq, d.as_str(), *len))
        .collect();
    let feed = feed_of(&listed);
    center
        .publish_feed(&maker_a(), "maker-a", feed.as_bytes())
        .await
        .unwrap();
    // 1 + 2 + 3 + 3 deltas are wanted; one round makes six, those of 5.0 and 4.0.
    let first_round = herd_role_blobs(&center).await;
    assert_eq!(first_round.len(), 6, "{first_round:?}");
    let herd: serde_json::Value = serde_json::from_str(
        &center
            .store
            .tuf_document("herd", None)
            .await
            .unwrap()
            .unwrap()
            .doc,
    )
    .unwrap();
    let paths: Vec<&String> = herd["signed"]["targets"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert!(
        paths
            .iter()
            .all(|p| p.contains("/5.0/") || p.contains("/4.0/")),
        "{paths:?}"
    );
    // The next round (here: the catalog changed again) makes the rest.
    let mut doc: serde_json::Value = serde_json::from_str(&feed).unwrap();
    doc["products"][0]["name"] = "Vaccine A, renamed".into();
    center
        .publish_feed(&maker_a(), "maker-a", doc.to_string().as_bytes())
        .await
        .unwrap();
    assert_eq!(herd_role_blobs(&center).await.len(), 9);
    center.close().await;
}
