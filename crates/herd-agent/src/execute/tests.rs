//! In-process tests of the executor's less common paths (the end-to-end runs through
//! `herd-agent apply` are in `tests/execute.rs`): a failing removal of the old product, a disk
//! filling up during a download, a package missing from the source or holding another
//! product, unsupported plans, the lock, journals that are pending or unreadable, and a
//! journal write killed before its rename.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use herd_core::{PackageFormat, Sha256 as Digest256};
use herd_package::{BuiltPackage, PackageSpec};
use herd_planner::script::{InstallSpec, UninstallSpec, install_script, uninstall_script};
use herd_proto::api::{ReportOutcome, StepStatus};
use herd_proto::plan::{Action, PlanDoc, ReleaseRef, Step};

use super::*;

struct Setup {
    dir: tempfile::TempDir,
    executor: Executor,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        // Hooks run as `nobody`, which must be able to reach the prefix (as on a real system).
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["packages", "src"] {
            fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let mut config = ExecutorConfig::new(dir.path().join("prefix"), dir.path().join("state"));
        config.space_margin = 0;
        let executor = Executor::new(config).unwrap();
        Setup { dir, executor }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn fetcher(&self) -> DirFetcher {
        DirFetcher::new(self.path("packages"))
    }

    fn package(&self, product: &str, version: &str, seq: u64) -> BuiltPackage {
        let src = |name: &str, content: &[u8]| {
            let path = self.path(&format!("src/{product}-{version}/{name}"));
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, content).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            path
        };
        let marker = format!("TEST-PATTERN-{product}-{version}");
        let hex: String = marker.bytes().map(|b| format!("{b:02x}")).collect();
        let spec = PackageSpec {
            product: product.into(),
            vendor: "maker".into(),
            version: version.into(),
            seq,
            pattern: format!("p-{seq}"),
            definitions: vec![src(
                "defs.ndb",
                format!("Test.{product}:0:*:{hex}\n").as_bytes(),
            )],
            test_pattern: src("test.txt", marker.as_bytes()),
            post_install: None,
            pre_uninstall: None,
            platforms: vec!["pc".into()],
        };
        let out = self.path(&format!("src/{product}-{version}.tar.gz"));
        let built = herd_package::build(&spec, &out).unwrap();
        fs::copy(&out, self.path("packages").join(&built.sha256)).unwrap();
        built
    }

    /// A plan as the planner writes it: fetch, install, verify, and optionally an uninstall
    /// (product, version, format, script).
    fn plan(&self, to: &BuiltPackage, uninstall: Option<(&str, &str, &str, String)>) -> PlanDoc {
        let m = &to.manifest;
        let install = install_script(&InstallSpec {
            product: &m.product,
            version: &m.version,
            pattern: &m.pattern,
            format: PackageFormat::Archive,
            sha256: Digest256::parse_hex(&to.sha256).unwrap(),
            size: to.size,
            name: None,
            product_code: None,
            post_install: None,
        });
        let mut steps = vec![
            Step::Fetch {
                product: m.product.clone(),
                version: m.version.clone(),
                format: "archive".into(),
                sha256: to.sha256.clone(),
                size: to.size,
                target: None,
            },
            Step::Install {
                product: m.product.clone(),
                version: m.version.clone(),
                format: "archive".into(),
                script: install,
            },
            Step::Verify {
                product: m.product.clone(),
                version: m.version.clone(),
                pattern: m.pattern.clone(),
            },
        ];
        if let Some((product, version, format, script)) = uninstall {
            steps.push(Step::Uninstall {
                product: product.into(),
                version: version.into(),
                format: format.into(),
                script,
                target: None,
            });
        }
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
                product: m.product.clone(),
                version: m.version.clone(),
                seq: m.seq,
            }),
            consent_required: false,
            not_before: None,
            steps,
            alternatives: vec![],
            reason: "test".into(),
        }
    }

    fn install(&self, package: &BuiltPackage) {
        let plan = self.plan(package, None);
        let report = self
            .executor
            .execute(&plan_id(&plan), &plan, &self.fetcher())
            .unwrap();
        assert_eq!(report.outcome, ReportOutcome::Succeeded, "{report:?}");
    }

    fn current(&self) -> PathBuf {
        fs::read_link(self.path("prefix/current")).unwrap()
    }

    fn downloads(&self) -> Vec<String> {
        fs::read_dir(self.path("state/downloads"))
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn statuses(report: &PlanReport) -> Vec<(&str, StepStatus)> {
    report
        .steps
        .iter()
        .map(|s| (s.kind.as_str(), s.status))
        .collect()
}

#[test]
fn a_failing_removal_of_the_old_product_keeps_the_new_one_active() {
    let setup = Setup::new();
    setup.install(&setup.package("old", "1.0", 1));
    let new = setup.package("new", "2.0", 2);
    // A package manager's uninstall script (the agent removes `archive` versions itself).
    let failing = "echo 'old: service still running' >&2\nexit 4\n".to_owned();
    let plan = setup.plan(&new, Some(("old", "1.0", "deb", failing)));
    let report = setup
        .executor
        .execute(&plan_id(&plan), &plan, &setup.fetcher())
        .unwrap();
    assert_eq!(report.outcome, ReportOutcome::Succeeded);
    assert_eq!(
        statuses(&report),
        [
            ("fetch", StepStatus::Ok),
            ("install", StepStatus::Ok),
            ("verify", StepStatus::Ok),
            ("activate", StepStatus::Ok),
            ("uninstall", StepStatus::Failed)
        ]
    );
    let message = report.message.unwrap();
    assert!(
        message.contains("the new product stays active")
            && message.contains("old 1.0 could not be removed")
            && message.contains("old: service still running"),
        "{message}"
    );
    assert_eq!(setup.current(), PathBuf::from("products/new/2.0"));
    assert!(!setup.path("state/journal.json").exists());
}

#[test]
fn an_archive_update_removes_the_old_version_with_the_agents_own_code() {
    let setup = Setup::new();
    setup.install(&setup.package("vaccine", "1.0", 1));
    let next = setup.package("vaccine", "1.1", 2);
    let script = uninstall_script(&UninstallSpec {
        product: "vaccine",
        version: "1.0",
        format: PackageFormat::Archive,
        name: None,
        product_code: None,
        pre_uninstall: None,
    });
    let plan = setup.plan(&next, Some(("vaccine", "1.0", "archive", script)));
    let report = setup
        .executor
        .execute(&plan_id(&plan), &plan, &setup.fetcher())
        .unwrap();
    assert_eq!(report.outcome, ReportOutcome::Succeeded, "{report:?}");
    assert_eq!(setup.current(), PathBuf::from("products/vaccine/1.1"));
    assert!(!setup.path("prefix/products/vaccine/1.0").exists());
    assert!(setup.path("prefix/products/vaccine/1.1").exists());
    assert!(setup.downloads().is_empty(), "{:?}", setup.downloads());
}

/// Writes a few bytes, then fails the way a full disk does.
struct FillsTheDisk;

impl Fetcher for FillsTheDisk {
    fn fetch(&self, _: &str, _: u64, dest: &Path, _: u64) -> Result<(), FetchError> {
        fs::write(dest, b"partial").unwrap();
        Err(FetchError::Write {
            path: dest.to_owned(),
            source: io::Error::from(io::ErrorKind::StorageFull),
        })
    }
}

#[test]
fn a_disk_filling_up_during_a_download_defers_and_leaves_no_partial_file() {
    let setup = Setup::new();
    setup.install(&setup.package("old", "1.0", 1));
    let plan = setup.plan(&setup.package("new", "2.0", 2), None);
    let report = setup
        .executor
        .execute(&plan_id(&plan), &plan, &FillsTheDisk)
        .unwrap();
    assert_eq!(report.outcome, ReportOutcome::Deferred);
    let fetch = report.steps[0].detail.as_deref().unwrap();
    assert!(
        fetch.contains("the disk filled up") && fetch.contains("deleted"),
        "{fetch}"
    );
    assert!(setup.downloads().is_empty(), "{:?}", setup.downloads());
    assert_eq!(setup.current(), PathBuf::from("products/old/1.0"));
}

/// A source whose own digest check failed.
struct ServesCorruptBytes;

impl Fetcher for ServesCorruptBytes {
    fn fetch(&self, _: &str, size: u64, dest: &Path, _: u64) -> Result<(), FetchError> {
        fs::write(dest, vec![0u8; size as usize]).unwrap();
        Err(FetchError::Corrupt(
            "SHA-256 mismatch after download".into(),
        ))
    }
}

#[test]
fn a_source_reporting_corrupt_bytes_rolls_back_and_deletes_them() {
    let setup = Setup::new();
    setup.install(&setup.package("old", "1.0", 1));
    let plan = setup.plan(&setup.package("new", "2.0", 2), None);
    let report = setup
        .executor
        .execute(&plan_id(&plan), &plan, &ServesCorruptBytes)
        .unwrap();
    assert_eq!(report.outcome, ReportOutcome::RolledBack);
    let fetch = report.steps[0].detail.as_deref().unwrap();
    assert!(fetch.contains("corrupt package"), "{fetch}");
    assert!(setup.downloads().is_empty(), "{:?}", setup.downloads());
    assert_eq!(setup.current(), PathBuf::from("products/old/1.0"));
}

#[test]
fn a_package_missing_from_the_source_rolls_back() {
    let setup = Setup::new();
    let new = setup.package("new", "2.0", 2);
    fs::remove_file(setup.path("packages").join(&new.sha256)).unwrap();
    let plan = setup.plan(&new, None);
    let report = setup
        .executor
        .execute(&plan_id(&plan), &plan, &setup.fetcher())
        .unwrap();
    assert_eq!(report.outcome, ReportOutcome::RolledBack);
    assert!(
        report.steps[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("has no package"),
        "{report:?}"
    );
    assert_eq!(report.installed, None);
    assert!(!setup.path("prefix/current").exists());
}

#[test]
fn a_package_holding_another_product_is_refused_before_unpacking() {
    let setup = Setup::new();
    let new = setup.package("new", "2.0", 2);
    let other = setup.package("other", "9.9", 9);
    let mut plan = setup.plan(&new, None);
    // The catalog's digest and script name `other`'s package, the release says `new`.
    let other_plan = setup.plan(&other, None);
    plan.steps[0] = Step::Fetch {
        product: "new".into(),
        version: "2.0".into(),
        format: "archive".into(),
        sha256: other.sha256.clone(),
        size: other.size,
        target: None,
    };
    let Step::Install { script, .. } = &other_plan.steps[1] else {
        unreachable!()
    };
    plan.steps[1] = Step::Install {
        product: "new".into(),
        version: "2.0".into(),
        format: "archive".into(),
        script: script.clone(),
    };
    let report = setup
        .executor
        .execute(&plan_id(&plan), &plan, &setup.fetcher())
        .unwrap();
    assert_eq!(report.outcome, ReportOutcome::RolledBack);
    let install = report.steps[1].detail.as_deref().unwrap();
    assert!(
        install.contains("the package holds other 9.9, but the plan installs new 2.0"),
        "{install}"
    );
    assert!(!setup.path("prefix/products").exists());
}

#[test]
fn a_plan_this_agent_cannot_carry_out_changes_nothing() {
    let setup = Setup::new();
    let mut plan = setup.plan(&setup.package("new", "2.0", 2), None);
    if let Step::Install { format, .. } = &mut plan.steps[1] {
        *format = "deb".into();
    }
    let report = setup
        .executor
        .execute("p", &plan, &setup.fetcher())
        .unwrap();
    assert_eq!(report.outcome, ReportOutcome::RolledBack);
    assert!(
        report.steps.iter().all(|s| s.status == StepStatus::Skipped),
        "{report:?}"
    );
    assert!(report.message.unwrap().contains("archive packages only"));
    assert!(setup.downloads().is_empty());

    let mut nothing = plan.clone();
    nothing.steps.clear();
    nothing.action = Action::None;
    let report = setup
        .executor
        .execute("n", &nothing, &setup.fetcher())
        .unwrap();
    assert_eq!(report.outcome, ReportOutcome::Succeeded);
    assert!(report.steps.is_empty());
}

#[test]
fn one_process_at_a_time() {
    let setup = Setup::new();
    let plan = setup.plan(&setup.package("new", "2.0", 2), None);
    let held = setup.executor.lock().unwrap();
    let err = setup
        .executor
        .execute("p", &plan, &setup.fetcher())
        .unwrap_err();
    assert!(matches!(err, ExecError::Busy { .. }), "{err}");
    assert!(matches!(
        setup.executor.recover(),
        Err(ExecError::Busy { .. })
    ));
    drop(held);
    setup
        .executor
        .execute("p", &plan, &setup.fetcher())
        .unwrap();
}

#[test]
fn a_pending_journal_must_be_recovered_and_a_corrupt_one_is_set_aside() {
    let setup = Setup::new();
    let plan = setup.plan(&setup.package("new", "2.0", 2), None);
    let journal_path = setup.path("state/journal.json");
    Journal::begin(
        journal_path.clone(),
        "earlier",
        &plan,
        setup.path("state/downloads"),
        None,
    )
    .unwrap();
    let err = setup
        .executor
        .execute("p", &plan, &setup.fetcher())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "plan earlier was interrupted and must be recovered first (Executor::recover)"
    );
    let report = setup.executor.recover().unwrap().unwrap();
    assert_eq!(report.plan_id, "earlier");
    assert_eq!(report.outcome, ReportOutcome::Deferred);
    assert_eq!(setup.executor.recover().unwrap(), None);

    fs::write(&journal_path, b"{ torn").unwrap();
    let err = setup.executor.recover().unwrap_err().to_string();
    assert!(err.contains("moved aside to"), "{err}");
    assert!(setup.path("state/journal.json.corrupt").exists());
    assert_eq!(setup.executor.recover().unwrap(), None);
}

/// Not a test: the body of the child process the crash test below starts; it overwrites the
/// journal with a torn document and is killed (SIGKILL) before the rename.
#[test]
fn crash_child() {
    let Some((role, path)) = crate::crash_child::role() else {
        return;
    };
    assert_eq!(role, "journal-then-die");
    crate::crash_child::write_then_die(&path, b"{ \"format\": \"herd.journal/v1\", torn", 0o644);
}

#[test]
fn a_journal_write_killed_before_its_rename_leaves_the_previous_journal_and_recovery_cleans_up() {
    let setup = Setup::new();
    let plan = setup.plan(&setup.package("new", "2.0", 2), None);
    let journal_path = setup.path("state/journal.json");
    let pending = Journal::begin(
        journal_path.clone(),
        "earlier",
        &plan,
        setup.path("state/downloads"),
        None,
    )
    .unwrap();
    let mut child = crate::crash_child::spawn(
        "execute::tests::crash_child",
        "journal-then-die",
        &journal_path,
    );
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(child.wait().unwrap().signal(), Some(9));
    let temporaries = || {
        fs::read_dir(setup.path("state"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|name| herd_fs::is_temporary(name))
            .count()
    };
    assert_eq!(temporaries(), 1, "the killed write left its temporary");
    // The journal is the one saved before the crash, whole; the torn temporary is ignored.
    assert_eq!(journal::load(&journal_path).unwrap(), Some(pending));
    // Recovery finishes the pending plan and removes the temporary, whose writer is dead.
    let report = setup.executor.recover().unwrap().unwrap();
    assert_eq!(report.plan_id, "earlier");
    assert_eq!(report.outcome, ReportOutcome::Deferred);
    assert_eq!(temporaries(), 0);
    assert_eq!(setup.executor.recover().unwrap(), None);
}

/// A package with a post-install hook that writes the uid it runs as into `<dir>/ids/<version>`
/// (a directory anyone may write), and, when `root`, a manifest saying its hooks need root.
fn package_with_id_hook(setup: &Setup, version: &str, root: bool) -> BuiltPackage {
    use herd_package::archive::FileEntry;
    use herd_package::{ENGINE, HooksRunAs, Manifest, PACKAGE_FORMAT};
    let marker = format!("TEST-PATTERN-hooked-{version}");
    let hex: String = marker.bytes().map(|b| format!("{b:02x}")).collect();
    let manifest = Manifest {
        format: PACKAGE_FORMAT.into(),
        product: "hooked".into(),
        vendor: "maker".into(),
        version: version.into(),
        seq: 1,
        pattern: "p-1".into(),
        kind: None,
        engine: Some(ENGINE.into()),
        definitions: vec!["defs/defs.ndb".into()],
        test_pattern: Some("test/test.txt".into()),
        health_check: None,
        post_install: Some("bin/post-install".into()),
        pre_uninstall: None,
        hooks_run_as: root.then_some(HooksRunAs::Root),
        run: None,
    };
    let entry = |data: Vec<u8>, executable| FileEntry { data, executable };
    let hook = format!(
        "#!/bin/sh\nout=\"$HERD_PREFIX/../ids/{version}\"\nid -u > \"$out\"\nid -G > \"$out.groups\"\n\
         grep NoNewPrivs /proc/self/status > \"$out.nnp\"\n"
    );
    let files = [
        (
            "defs/defs.ndb",
            entry(format!("Test.hooked:0:*:{hex}\n").into_bytes(), false),
        ),
        ("test/test.txt", entry(marker.into_bytes(), false)),
        ("bin/post-install", entry(hook.into_bytes(), true)),
    ]
    .into_iter()
    .map(|(path, e)| (path.to_owned(), e))
    .collect();
    publish(setup, manifest, &files)
}

/// Encodes a package made by hand (what `herd_package::build` would refuse to make) and puts
/// it where the test's fetcher finds it.
fn publish(
    setup: &Setup,
    manifest: herd_package::Manifest,
    files: &std::collections::BTreeMap<String, herd_package::archive::FileEntry>,
) -> BuiltPackage {
    let bytes = herd_package::archive::encode(&manifest, files).unwrap();
    let sha256 = hex_digest(&bytes);
    fs::write(setup.path("packages").join(&sha256), &bytes).unwrap();
    BuiltPackage {
        sha256,
        size: bytes.len() as u64,
        manifest,
        catalog_packages: vec![],
    }
}

fn hex_digest(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[test]
fn a_hook_runs_as_nobody_unless_the_policy_allows_root() {
    let setup = Setup::new();
    let ids = setup.path("ids");
    fs::create_dir(&ids).unwrap();
    fs::set_permissions(&ids, fs::Permissions::from_mode(0o777)).unwrap();
    let uid_of = |version: &str| {
        fs::read_to_string(ids.join(version))
            .unwrap()
            .trim()
            .to_owned()
    };

    // An ordinary package: its hook runs as nobody, not as the root agent.
    let plain = package_with_id_hook(&setup, "1.0", false);
    let plan = setup.plan(&plain, None);
    let report = setup
        .executor
        .execute(&plan_id(&plan), &plan, &setup.fetcher())
        .unwrap();
    assert_eq!(report.outcome, ReportOutcome::Succeeded, "{report:?}");
    assert_eq!(uid_of("1.0"), "65534");
    // No supplementary groups (root's included), and no way back up through a setuid program.
    assert_eq!(uid_of("1.0.groups"), "65534");
    assert!(uid_of("1.0.nnp").ends_with('1'), "{}", uid_of("1.0.nnp"));
    let install = report.steps.iter().find(|s| s.kind == "install").unwrap();
    assert!(
        install
            .detail
            .as_deref()
            .unwrap()
            .contains("as nobody (uid 65534)"),
        "{install:?}"
    );

    // A package declaring root hooks, on an agent whose policy does not allow them: refused,
    // rolled back, nothing unpacked, the hook never ran.
    let wants_root = package_with_id_hook(&setup, "2.0", true);
    let plan = setup.plan(&wants_root, None);
    let report = setup
        .executor
        .execute(&plan_id(&plan), &plan, &setup.fetcher())
        .unwrap();
    assert_eq!(report.outcome, ReportOutcome::RolledBack, "{report:?}");
    let install = report.steps.iter().find(|s| s.kind == "install").unwrap();
    assert!(
        install
            .detail
            .as_deref()
            .unwrap()
            .contains("--allow-root-hooks"),
        "{install:?}"
    );
    assert!(!ids.join("2.0").exists());
    assert!(!setup.path("prefix/products/hooked/2.0").exists());
    assert_eq!(setup.current(), PathBuf::from("products/hooked/1.0"));

    // The same package on an agent started with --allow-root-hooks: its hook runs as root.
    let mut config = setup.executor.config.clone();
    config.hooks = HookPolicy::resolve("nobody", true).unwrap();
    let allowing = Executor::new(config).unwrap();
    let plan = setup.plan(&wants_root, None);
    let id = format!("{}-allowed", plan_id(&plan));
    let report = allowing.execute(&id, &plan, &setup.fetcher()).unwrap();
    assert_eq!(report.outcome, ReportOutcome::Succeeded, "{report:?}");
    assert_eq!(uid_of("2.0"), "0");
}

#[test]
fn root_is_not_an_unprivileged_hook_user() {
    let err = HookPolicy::resolve("root", false).unwrap_err();
    assert!(err.contains("is root"), "{err}");
    let err = HookPolicy::resolve("no-such-user-herd", false).unwrap_err();
    assert!(err.contains("no such user"), "{err}");
}

#[test]
fn a_part_file_planted_as_a_symlink_is_not_followed() {
    let setup = Setup::new();
    let new = setup.package("new", "2.0", 2);
    let victim = setup.path("victim");
    fs::write(&victim, b"root's file").unwrap();
    let downloads = setup.path("state/downloads");
    fs::create_dir_all(&downloads).unwrap();
    fs::set_permissions(&downloads, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&victim, downloads.join(format!("{}.part", new.sha256))).unwrap();
    let plan = setup.plan(&new, None);
    let report = setup
        .executor
        .execute(&plan_id(&plan), &plan, &setup.fetcher())
        .unwrap();
    assert_eq!(report.outcome, ReportOutcome::Succeeded, "{report:?}");
    assert_eq!(fs::read(&victim).unwrap(), b"root's file");
    assert_eq!(setup.current(), PathBuf::from("products/new/2.0"));
}

#[test]
fn a_download_directory_a_local_user_can_write_is_refused() {
    let setup = Setup::new();
    let new = setup.package("new", "2.0", 2);
    let shared = setup.path("shared-downloads");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    let mut config = setup.executor.config.clone();
    config.download_dirs = vec![shared.clone()];
    let executor = Executor::new(config).unwrap();
    let plan = setup.plan(&new, None);
    let report = executor
        .execute(&plan_id(&plan), &plan, &setup.fetcher())
        .unwrap();
    assert_eq!(report.outcome, ReportOutcome::Deferred, "{report:?}");
    let message = report.message.unwrap();
    assert!(message.contains("lets other users change"), "{message}");
    assert!(fs::read_dir(&shared).unwrap().next().is_none());

    // A download directory that is a symlink is refused the same way.
    let link = setup.path("linked-downloads");
    std::os::unix::fs::symlink(setup.path("state"), &link).unwrap();
    let mut config = setup.executor.config.clone();
    config.download_dirs = vec![link];
    let executor = Executor::new(config).unwrap();
    let report = executor
        .execute(&plan_id(&plan), &plan, &setup.fetcher())
        .unwrap();
    assert_eq!(report.outcome, ReportOutcome::Deferred, "{report:?}");
    assert!(report.message.unwrap().contains("symbolic link"));
}

/// Company A's middleware `version` as a program package: no definitions, a health check
/// running `bin/middleware --health` from the installed directory with `timeout_ms`, expecting
/// exit status 0 and "ready" on its output. `body` is the shell the program runs for `--health`.
fn program_package(setup: &Setup, version: &str, body: &str, timeout_ms: u64) -> BuiltPackage {
    use herd_package::archive::FileEntry;
    use herd_package::{HealthCheck, Manifest, PACKAGE_FORMAT};
    let manifest = Manifest {
        format: PACKAGE_FORMAT.into(),
        product: "middleware-a".into(),
        vendor: "maker-a".into(),
        version: version.into(),
        seq: version.replace('.', "").parse().unwrap(),
        pattern: format!("middleware-a {version}"),
        kind: Some("program".into()),
        engine: None,
        definitions: vec![],
        test_pattern: None,
        health_check: Some(HealthCheck {
            command: vec!["bin/middleware".into(), "--health".into()],
            timeout_ms,
            exit_status: Some(0),
            output_contains: Some("ready".into()),
        }),
        post_install: None,
        pre_uninstall: None,
        hooks_run_as: None,
        run: None,
    };
    let program = format!(
        "#!/bin/sh\n# middleware-a {version}\n[ \"$1\" = --health ] || exec sleep 3600\n\
         # The check reads the program's own configuration, as a real one would.\n\
         . ./etc/middleware.conf\n{body}\n"
    );
    let files = [
        (
            "bin/middleware",
            FileEntry {
                data: program.into_bytes(),
                executable: true,
            },
        ),
        (
            "etc/middleware.conf",
            FileEntry {
                data: format!("VERSION={version}\n").into_bytes(),
                executable: false,
            },
        ),
    ]
    .into_iter()
    .map(|(path, e)| (path.to_owned(), e))
    .collect();
    publish(setup, manifest, &files)
}

/// Installs middleware 1.0 (healthy), then tries `version` with the health check `body`: the
/// report of the second plan, which removes 1.0 once `version` is verified.
fn update_middleware(setup: &Setup, version: &str, body: &str, timeout_ms: u64) -> PlanReport {
    let healthy = program_package(setup, "1.0", "echo \"middleware $VERSION ready\"", 2000);
    setup.install(&healthy);
    assert_eq!(setup.current(), Path::new("products/middleware-a/1.0"));
    let next = program_package(setup, version, body, timeout_ms);
    let plan = setup.plan(
        &next,
        Some(("middleware-a", "1.0", "archive", String::new())),
    );
    setup
        .executor
        .execute(&plan_id(&plan), &plan, &setup.fetcher())
        .unwrap()
}

/// What a failed health check must leave: 1.0 active and whole, `version` gone, the verify step
/// failed for `why`, the report saying the plan was rolled back.
fn assert_rolled_back(setup: &Setup, report: &PlanReport, version: &str, why: &str) {
    assert_eq!(report.outcome, ReportOutcome::RolledBack, "{report:?}");
    let verify = report.steps.iter().find(|s| s.kind == "verify").unwrap();
    assert_eq!(verify.status, StepStatus::Failed);
    let detail = verify.detail.as_deref().unwrap();
    assert!(detail.contains(why), "{detail}");
    assert_eq!(setup.current(), Path::new("products/middleware-a/1.0"));
    assert!(
        setup
            .path("prefix/products/middleware-a/1.0/bin/middleware")
            .is_file()
    );
    assert!(
        !setup
            .path(&format!("prefix/products/middleware-a/{version}"))
            .exists()
    );
    let message = report.message.as_deref().unwrap();
    assert!(
        message.contains("middleware-a 1.0 (middleware-a 1.0) is active, as before the plan"),
        "{message}"
    );
}

#[test]
fn a_program_whose_health_check_passes_replaces_the_old_version() {
    let setup = Setup::new();
    let report = update_middleware(&setup, "2.0", "echo \"middleware $VERSION ready\"", 2000);
    assert_eq!(report.outcome, ReportOutcome::Succeeded, "{report:?}");
    let verify = report.steps.iter().find(|s| s.kind == "verify").unwrap();
    let detail = verify.detail.as_deref().unwrap();
    assert!(
        detail.starts_with("middleware-a 2.0 (middleware-a 2.0, a program); its health check `bin/middleware --health` passed"),
        "{detail}"
    );
    assert!(
        detail.ends_with("exit status 0 and output containing \"ready\""),
        "{detail}"
    );
    assert_eq!(setup.current(), Path::new("products/middleware-a/2.0"));
    assert!(!setup.path("prefix/products/middleware-a/1.0").exists());
    let installed = setup.executor.installed().unwrap();
    assert_eq!(
        (installed.product.as_str(), installed.version.as_str()),
        ("middleware-a", "2.0")
    );
}

#[test]
fn a_health_check_failing_by_its_exit_status_rolls_back() {
    let setup = Setup::new();
    let report = update_middleware(
        &setup,
        "2.0",
        "echo \"middleware $VERSION ready\"; echo 'cannot bind port 8080' >&2; exit 3",
        2000,
    );
    assert_rolled_back(
        &setup,
        &report,
        "2.0",
        "the health check `bin/middleware --health` failed",
    );
    let verify = report.steps.iter().find(|s| s.kind == "verify").unwrap();
    let detail = verify.detail.as_deref().unwrap();
    assert!(
        detail.contains(
            "it ended with exit status: 3, not exit status 0; stderr: cannot bind port 8080"
        ),
        "{detail}"
    );
}

#[test]
fn a_health_check_failing_by_its_output_rolls_back() {
    let setup = Setup::new();
    let report = update_middleware(&setup, "2.0", "echo \"middleware $VERSION degraded\"", 2000);
    assert_rolled_back(
        &setup,
        &report,
        "2.0",
        "its output does not contain \"ready\" (it printed \"middleware 2.0 degraded\"; exit status: 0)",
    );
}

#[test]
fn a_health_check_that_hangs_is_killed_at_its_limit_and_rolls_back() {
    let setup = Setup::new();
    let started = std::time::Instant::now();
    // The hang has a child too: the whole process group goes at the limit.
    let report = update_middleware(&setup, "2.0", "sleep 60 & sleep 60; echo ready", 300);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_rolled_back(
        &setup,
        &report,
        "2.0",
        "it did not finish within its 300 ms limit and was killed",
    );
}

#[test]
fn a_health_check_program_missing_from_the_install_rolls_back() {
    let setup = Setup::new();
    // The program exists in the package but fails to start: its interpreter is not there.
    let report = update_middleware(&setup, "2.0", "exec ./no-such-interpreter", 2000);
    assert_rolled_back(&setup, &report, "2.0", "not exit status 0");
}
