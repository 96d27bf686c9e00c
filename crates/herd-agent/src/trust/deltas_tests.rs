//! `rebuild` against the malicious mirror: the content a signed delta rebuilds is written
//! only when it is the package's signed content; a replaced delta, a kept content changed
//! behind the agent's back, a delta against another base, and a result other than the
//! signed content are each refused by name, with nothing written.

#[path = "../../tests/support/mirror.rs"]
mod mirror;

use std::collections::BTreeMap;

use herd_client::Repository;
use herd_proto::distribution::ContentDigest;
use herd_tuf::TargetFile;
use mirror::{Behaviour, Mirror};
use sha2::{Digest, Sha256};

use super::{DeltaOffer, rebuild};
use herd_proto::distribution::consistent_target_name;

fn sha(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

struct Setup {
    mirror: Mirror,
    dir: tempfile::TempDir,
    base: Vec<u8>,
    result: Vec<u8>,
    offer: DeltaOffer,
}

const DELTA_PATH: &str = "herd/deltas/acme/av/2/linux.archive.from-base";

/// A kept base content, a delta from it to `result` served by the mirror, and the offer
/// the verified metadata would make for it.
fn setup() -> Setup {
    let base: Vec<u8> = (0..100_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let mut result = base.clone();
    result[5000..5008].copy_from_slice(b"changed!");
    let delta = herd_delta::diff(&base, &result);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(format!("{}.tar", sha(&base))), &base).unwrap();
    let mirror = Mirror::start();
    mirror.put(
        &format!(
            "/tuf/targets/{}",
            consistent_target_name(DELTA_PATH, &sha(&delta))
        ),
        delta.clone(),
    );
    let offer = DeltaOffer {
        path: DELTA_PATH.into(),
        delta: TargetFile {
            length: delta.len() as u64,
            hashes: BTreeMap::from([("sha256".to_owned(), sha(&delta))]),
            custom: None,
        },
        base_sha256: sha(&base),
        content: ContentDigest {
            sha256: sha(&result),
            length: result.len() as u64,
        },
    };
    Setup {
        mirror,
        dir,
        base,
        result,
        offer,
    }
}

impl Setup {
    fn rebuild(&self) -> Result<Vec<u8>, String> {
        let upstream = Repository::mirror(&self.mirror.url()).unwrap();
        let dest = self.dir.path().join("out.tar");
        let _ = std::fs::remove_file(&dest);
        let outcome = rebuild(&upstream, &self.offer, self.dir.path(), &dest);
        match outcome {
            Ok(rebuilt) => {
                assert_eq!(rebuilt.downloaded, self.offer.delta.length);
                Ok(std::fs::read(&dest).unwrap())
            }
            Err(why) => {
                assert!(!dest.exists(), "nothing is written on a refusal");
                Err(why)
            }
        }
    }

    fn delta_url(&self) -> String {
        format!(
            "/tuf/targets/{}",
            consistent_target_name(DELTA_PATH, &self.offer.delta.hashes["sha256"])
        )
    }
}

#[test]
fn a_signed_delta_rebuilds_the_signed_content() {
    let setup = setup();
    assert_eq!(setup.rebuild().unwrap(), setup.result);
}

#[test]
fn a_replaced_delta_is_refused() {
    let setup = setup();
    let mut bytes = herd_delta::diff(&setup.base, &setup.result);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    setup
        .mirror
        .set(&setup.delta_url(), Behaviour::Replace(bytes));
    let err = setup.rebuild().unwrap_err();
    assert!(err.contains("the delta is not the signed one"), "{err}");
}

#[test]
fn a_kept_content_changed_behind_the_agents_back_is_refused() {
    let setup = setup();
    let kept = setup.dir.path().join(format!("{}.tar", sha(&setup.base)));
    let mut changed = setup.base.clone();
    changed[10] ^= 1;
    std::fs::write(&kept, changed).unwrap();
    let err = setup.rebuild().unwrap_err();
    assert!(err.contains("the kept content"), "{err}");
    assert!(err.contains("changed"), "{err}");
    std::fs::remove_file(&kept).unwrap();
    let err = setup.rebuild().unwrap_err();
    assert!(err.contains(&kept.display().to_string()), "{err}");
}

#[test]
fn a_signed_delta_against_another_base_is_refused() {
    let mut setup = setup();
    let other_base = vec![1u8; 50_000];
    let delta = herd_delta::diff(&other_base, &setup.result);
    setup.offer.delta = TargetFile {
        length: delta.len() as u64,
        hashes: BTreeMap::from([("sha256".to_owned(), sha(&delta))]),
        custom: None,
    };
    setup.mirror.put(&setup.delta_url(), delta);
    let err = setup.rebuild().unwrap_err();
    assert!(err.contains("the delta does not apply"), "{err}");
}

#[test]
fn a_result_other_than_the_signed_content_is_refused() {
    let mut setup = setup();
    setup.offer.content.sha256 = sha(b"what the package target signs");
    let err = setup.rebuild().unwrap_err();
    assert!(err.contains("is not the signed content"), "{err}");
    // A signed length smaller than the result bounds what apply may produce.
    let mut setup = self::setup();
    setup.offer.content.length -= 1;
    let err = setup.rebuild().unwrap_err();
    assert!(err.contains("the delta does not apply"), "{err}");
}
