//! Supervision with real processes (`sh` scripts): crash, abnormal exit, restart loop and hang
//! detected; the replacement transaction carried out, and failing at each step with the old
//! program running again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use herd_proto::fault::{Alternative, FaultKind};

use super::config::{HealthCheck, Heartbeat, ProgramConfig, RestartPolicy};
use super::replace::{Step, replace};
use super::verdicts::{FaultDirs, Fetched};
use super::watch::{Fault, Watched};
use crate::execute::{HookPolicy, HookRunner};
use crate::trust::SignedProgram;
use herd_lab::programs::Behaviour;

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    let mut permissions = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&path, permissions).unwrap();
    path
}

fn program(name: &str, command: &Path) -> ProgramConfig {
    ProgramConfig {
        name: name.into(),
        vendor: "company-a".into(),
        version: "1.0".into(),
        command: Some(vec![command.display().to_string()]),
        working_dir: None,
        pid_file: None,
        process_name: None,
        service_unit: None,
        definitions: vec![],
        crash_dir: None,
        heartbeat: None,
        restart: RestartPolicy {
            max: 2,
            window_secs: 60,
            delay_ms: 50,
        },
        health_check: None,
        alternatives: vec![],
    }
}

/// Polls until a fault is detected (or panics after 10 s).
fn next_fault(watched: &mut Watched) -> Fault {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(fault) = watched.poll() {
            return fault;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no fault of {} detected", watched.active.name);
}

/// Waits until `file` holds a pid other than `not`, that process alive; returns the pid.
fn wait_for_pid(file: &Path, not: Option<&str>) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(file) {
            let pid = text.trim().to_owned();
            if !pid.is_empty()
                && Some(pid.as_str()) != not
                && Path::new(&format!("/proc/{pid}")).exists()
            {
                return pid;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{} never named a running process", file.display());
}

#[test]
fn a_crash_with_its_crash_report_then_a_restart_loop() {
    let dir = tempfile::tempdir().unwrap();
    let crashes = dir.path().join("crashes");
    std::fs::create_dir(&crashes).unwrap();
    let conf = dir.path().join("a.conf");
    std::fs::write(&conf, "mode = fast\napi_token = s3cr3t\n").unwrap();
    let body = format!(
        "printf 'herd-crash/1\\nframe: parse_config at 0x7f00\\nframe: main\\n' > {}/$$.crash\n\
         kill -SEGV $$",
        crashes.display()
    );
    let mut config = program("mw-a", &script(dir.path(), "a.sh", &body));
    config.crash_dir = Some(crashes);
    config.definitions = vec![conf];
    let mut watched = Watched::new(config, None);
    watched.start().unwrap();
    let fault = next_fault(&mut watched);
    assert_eq!((fault.kind, fault.signal), (FaultKind::Crash, Some(11)));
    let report = watched.report(&fault, "linux-x86_64");
    report.validate("report").unwrap();
    assert_eq!(report.frames, ["parse_config at 0x7f00", "main"]);
    assert!(report.dump_sha256.is_some());
    assert_eq!(
        report.definitions[0].excerpt,
        "mode = fast\napi_token = [redacted]\n"
    );
    // Restarted after each failure; the third within the window (max 2) is a restart loop,
    // and the program is left stopped.
    assert_eq!(next_fault(&mut watched).kind, FaultKind::Crash);
    let looped = next_fault(&mut watched);
    assert_eq!((looped.kind, looped.failures), (FaultKind::RestartLoop, 3));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(watched.poll(), None);
    assert!(!watched.running());
}

#[test]
fn an_abnormal_exit_and_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let mut watched = Watched::new(
        program("mw-exit", &script(dir.path(), "exit.sh", "exit 3")),
        None,
    );
    watched.start().unwrap();
    let fault = next_fault(&mut watched);
    assert_eq!((fault.kind, fault.exit_code), (FaultKind::Exit, Some(3)));

    // Touches its heartbeat twice, then stops making progress.
    let beat = dir.path().join("beat");
    let body = format!(
        "touch {0}; sleep 0.2; touch {0}; exec sleep 1000",
        beat.display()
    );
    let mut config = program("mw-hang", &script(dir.path(), "hang.sh", &body));
    config.heartbeat = Some(Heartbeat {
        file: beat,
        limit_secs: 1,
    });
    let mut hung = Watched::new(config, None);
    let started = Instant::now();
    hung.start().unwrap();
    let fault = next_fault(&mut hung);
    assert_eq!(fault.kind, FaultKind::Hang);
    assert!(started.elapsed() >= Duration::from_secs(1));
    hung.stop();
}

#[test]
fn a_watched_process_that_vanishes_is_an_exit() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    let pid_file = dir.path().join("mw.pid");
    std::fs::write(&pid_file, child.id().to_string()).unwrap();
    let mut config = program("mw-watched", Path::new("unused"));
    config.command = None;
    config.pid_file = Some(pid_file);
    let mut watched = Watched::new(config, None);
    assert_eq!(watched.poll(), None);
    child.kill().unwrap();
    child.wait().unwrap();
    let fault = next_fault(&mut watched);
    assert_eq!((fault.kind, fault.pid), (FaultKind::Exit, child.id()));
    // Reported once.
    assert_eq!(watched.poll(), None);
}

/// A copy of `sleep` named `name` in `dir` (a process name no other test uses), started for
/// `secs` seconds.
fn named_process(dir: &Path, name: &str, secs: &str) -> std::process::Child {
    let program = dir.join(name);
    if !program.exists() {
        std::fs::copy("/bin/sleep", &program).unwrap();
    }
    std::process::Command::new(&program)
        .arg(secs)
        .spawn()
        .unwrap()
}

fn watched_by_name(name: &str) -> Watched {
    let mut config = program("mw-by-name", Path::new("unused"));
    config.command = None;
    config.process_name = Some(name.into());
    Watched::new(config, None)
}

#[test]
fn a_process_watched_by_name_that_dies_is_an_exit_even_before_it_is_reaped() {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("hmw-{}", std::process::id() % 100_000);
    let mut watched = watched_by_name(&name);
    // Nothing of that name runs yet: nothing to report.
    assert_eq!(watched.poll(), None);
    let mut child = named_process(dir.path(), &name, "1000");
    let deadline = Instant::now() + Duration::from_secs(10);
    while super::watch::find_by_name(&name) != Some(child.id()) {
        assert!(Instant::now() < deadline, "{name} never found");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(watched.poll(), None);
    // Killed by a signal and not reaped yet: a zombie is not a running program.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGSEGV,
    )
    .unwrap();
    let fault = next_fault(&mut watched);
    assert_eq!((fault.kind, fault.pid), (FaultKind::Exit, child.id()));
    assert_eq!(fault.exit_code, None, "not the agent's child: no status");
    child.wait().unwrap();
    assert_eq!(watched.poll(), None, "reported once");
}

#[test]
fn a_process_watched_by_name_restarted_between_two_looks_is_still_reported() {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("hmr-{}", std::process::id() % 100_000);
    let mut first = named_process(dir.path(), &name, "1000");
    let mut watched = watched_by_name(&name);
    let deadline = Instant::now() + Duration::from_secs(10);
    while watched.poll().is_none() && super::watch::find_by_name(&name) != Some(first.id()) {
        assert!(Instant::now() < deadline, "{name} never found");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(watched.poll(), None);
    // Its manager restarts it before the agent looks again: the first one's end is a fault,
    // and the new one is watched from then on.
    first.kill().unwrap();
    first.wait().unwrap();
    let mut second = named_process(dir.path(), &name, "1000");
    let fault = next_fault(&mut watched);
    assert_eq!((fault.kind, fault.pid), (FaultKind::Exit, first.id()));
    assert_eq!(watched.poll(), None);
    second.kill().unwrap();
    second.wait().unwrap();
    let fault = next_fault(&mut watched);
    assert_eq!((fault.kind, fault.pid), (FaultKind::Exit, second.id()));
}

#[test]
fn a_process_watched_by_name_that_stops_its_heartbeat_is_a_hang_and_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("hmh-{}", std::process::id() % 100_000);
    let mut child = named_process(dir.path(), &name, "1000");
    let mut watched = watched_by_name(&name);
    watched.active.heartbeat = Some(Heartbeat {
        file: dir.path().join("heartbeat"),
        limit_secs: 1,
    });
    let fault = next_fault(&mut watched);
    assert_eq!((fault.kind, fault.pid), (FaultKind::Hang, child.id()));
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
}

#[test]
fn a_pid_file_rewritten_by_a_restart_between_two_looks_still_reports_the_end() {
    // The process the pid file named ended and its manager started another before the agent
    // looked again: the end is reported (the process is followed by pid and start time, which
    // also tells a reused pid apart), and the newcomer watched from then on.
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    let pid_file = dir.path().join("mw.pid");
    std::fs::write(&pid_file, child.id().to_string()).unwrap();
    let mut config = program("mw-watched", Path::new("unused"));
    config.command = None;
    config.pid_file = Some(pid_file.clone());
    let mut watched = Watched::new(config, None);
    assert_eq!(watched.poll(), None);
    let start = super::watch::process_start(child.id()).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(super::watch::process_start(child.id()), None);
    // Another process under a pid file rewritten by the manager.
    let mut next = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    std::fs::write(&pid_file, next.id().to_string()).unwrap();
    let fault = next_fault(&mut watched);
    assert_eq!((fault.kind, fault.pid), (FaultKind::Exit, child.id()));
    assert!(super::watch::process_start(next.id()).is_some_and(|s| s >= start));
    assert_eq!(watched.poll(), None);
    next.kill().unwrap();
    next.wait().unwrap();
}

#[test]
fn a_service_unit_is_watched_through_systemctl_when_systemd_runs() {
    if !super::watch::systemd_running() {
        eprintln!(
            "skipped: systemd is not running here (no /run/systemd/system), so there is no \
             service unit to watch; `herd-agent supervise` refuses such a configuration \
             (tests/faults.rs checks the refusal)"
        );
        return;
    }
    // systemd runs: a unit that does not exist has no main pid, and is not an error.
    assert_eq!(
        super::watch::unit_main_pid("herd-test-no-such-unit.service"),
        Ok(None)
    );
}

/// A program A that writes its pid to `a.pid` and runs, with alternatives that write theirs.
struct Replacement {
    dir: tempfile::TempDir,
    dirs: FaultDirs,
    watched: Watched,
    /// The hook policy replacements run packages' hooks under (the default one).
    policy: HookPolicy,
    programs: PathBuf,
}

/// How a replacement runs packages' hooks: as the executor does, under `policy`.
fn runner<'a>(policy: &'a HookPolicy, programs: &'a Path) -> HookRunner<'a> {
    HookRunner {
        policy,
        timeout: std::time::Duration::from_secs(10),
        prefix: programs,
    }
}

impl Replacement {
    fn new(alternatives: &[(&str, &str, Option<&str>)]) -> Replacement {
        let dir = tempfile::tempdir().unwrap();
        let dirs = FaultDirs::new(&dir.path().join("state"));
        dirs.create().unwrap();
        let running = |name: &str| {
            format!(
                "echo $$ > {}/{name}.pid; exec sleep 1000",
                dir.path().display()
            )
        };
        let mut config = program("mw-a", &script(dir.path(), "a.sh", &running("a")));
        for (name, body, check) in alternatives {
            let body = body.replace("RUN", &running(name));
            let mut alternative = program(name, &script(dir.path(), &format!("{name}.sh"), &body));
            alternative.health_check = check.map(|check| HealthCheck {
                command: vec!["sh".into(), "-c".into(), check.into()],
                timeout_secs: 2,
                expect_exit: Some(0),
                expect_output: Some("ok".into()),
            });
            config.alternatives.push(alternative);
        }
        let mut watched = Watched::new(config, None);
        watched.start().unwrap();
        let programs = dirs.programs();
        let replacement = Replacement {
            dir,
            dirs,
            watched,
            policy: HookPolicy::least_privilege(),
            programs,
        };
        wait_for_pid(&replacement.pid_file("a"), None);
        replacement
    }

    fn pid_file(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.pid"))
    }

    fn alternative(name: &str) -> Alternative {
        Alternative {
            program: name.into(),
            vendor: "company-b".into(),
            version: "2.0".into(),
            package_sha256: None,
            package_size: None,
            target: None,
        }
    }

    /// A signed program package of `name` 2.0 (company B) as `herd-agent run` leaves it:
    /// downloaded into `incoming/<sha256>` and recorded as the signed target it verified.
    fn fetched(&self, name: &str, behaviour: Behaviour) -> (Alternative, Fetched) {
        let out = self.dir.path().join(format!("{name}.tar.gz"));
        let pid_file = self.pid_file(name);
        let built = herd_lab::programs::program_package(
            &out,
            name,
            "company-b",
            "2.0",
            "pc",
            &pid_file,
            behaviour,
        )
        .unwrap();
        std::fs::copy(&out, self.dirs.incoming().join(&built.sha256)).unwrap();
        let target = format!("packages/company-b/{name}/2.0/pc.archive");
        let alternative = Alternative {
            target: Some(target.clone()),
            ..Replacement::alternative(name)
        };
        let signed = SignedProgram {
            target,
            sha256: built.sha256,
            length: built.size,
        };
        (alternative, Fetched::Signed(signed))
    }

    /// Replaces A with `alternative` and checks that it failed at `step` with A running again.
    fn fails_at(
        &mut self,
        alternative: &Alternative,
        fetched: Option<&Fetched>,
        step: Step,
    ) -> String {
        let before = std::fs::read_to_string(self.pid_file("a")).unwrap();
        let hooks = runner(&self.policy, &self.programs);
        let outcome = replace(&mut self.watched, alternative, fetched, &self.dirs, &hooks);
        assert!(!outcome.replaced, "{}", outcome.message);
        assert_eq!(outcome.failed_step, Some(step), "{}", outcome.message);
        assert!(
            outcome.message.contains("the old program was restored"),
            "{}",
            outcome.message
        );
        assert_eq!(self.watched.active_name(), "mw-a");
        assert!(self.watched.running());
        if step != Step::Fetch && step != Step::HealthCheck && step != Step::Install {
            // Stopped for the switch and started again.
            wait_for_pid(&self.pid_file("a"), Some(before.trim()));
        }
        let installed = self.dirs.programs().join(&alternative.program);
        assert!(!installed.join(&alternative.version).exists());
        assert!(!installed.join("2.0.herd-staging").exists());
        outcome.message
    }
}

#[test]
fn an_alternative_already_here_replaces_the_program() {
    let mut r = Replacement::new(&[("mw-b", "RUN", Some("echo ok"))]);
    let outcome = replace(
        &mut r.watched,
        &Replacement::alternative("mw-b"),
        None,
        &r.dirs,
        &runner(&r.policy, &r.programs),
    );
    assert!(outcome.replaced, "{}", outcome.message);
    assert_eq!(r.watched.active_name(), "mw-b");
    wait_for_pid(&r.pid_file("mw-b"), None);
    let a = std::fs::read_to_string(r.pid_file("a")).unwrap();
    assert!(
        !Path::new(&format!("/proc/{}", a.trim())).exists(),
        "A still runs"
    );
}

#[test]
fn a_signed_program_package_is_installed_beside_checked_and_switched_to() {
    let mut r = Replacement::new(&[]);
    let (alternative, fetched) = r.fetched("mw-b", Behaviour::Serves);
    let outcome = replace(
        &mut r.watched,
        &alternative,
        Some(&fetched),
        &r.dirs,
        &runner(&r.policy, &r.programs),
    );
    assert!(outcome.replaced, "{}", outcome.message);
    assert!(
        outcome
            .message
            .contains("signed target packages/company-b/mw-b/2.0/pc.archive"),
        "{}",
        outcome.message
    );
    wait_for_pid(&r.pid_file("mw-b"), None);
    let dir = r.dirs.programs().join("mw-b/2.0");
    assert!(dir.join("bin/mw-b").exists() && dir.join("herd-package.json").exists());
    // It runs from its installed directory, where its configuration is.
    assert_eq!(r.watched.active.working_dir.as_deref(), Some(dir.as_path()));
}

#[test]
fn a_replacement_failing_at_each_step_restores_the_old_program() {
    let mut r = Replacement::new(&[
        ("mw-sick", "RUN", Some("echo not well; exit 1")),
        ("mw-dies", "exit 4", Some("echo ok")),
    ]);
    // Fetch: not here, and no signed package fetched.
    r.fails_at(&Replacement::alternative("mw-nowhere"), None, Step::Fetch);
    // Fetch: `herd-agent run` refused the target (unsigned, tampered, wrong software).
    let refused = Fetched::Refused("no role delegated for it lists it".into());
    let message = r.fails_at(
        &Replacement::alternative("mw-b"),
        Some(&refused),
        Step::Fetch,
    );
    assert!(message.contains("no role delegated"), "{message}");
    // Fetch: the bytes kept are not the signed ones (changed on disk since).
    let (alternative, fetched) = r.fetched("mw-b", Behaviour::Serves);
    let Fetched::Signed(signed) = &fetched else {
        unreachable!()
    };
    std::fs::write(r.dirs.incoming().join(&signed.sha256), b"tampered").unwrap();
    let message = r.fails_at(&alternative, Some(&fetched), Step::Fetch);
    assert!(message.contains("not the signed"), "{message}");
    // Install: a signed package whose manifest is another program than the verdict's.
    let (_, other) = r.fetched("mw-x", Behaviour::Serves);
    r.fails_at(&alternative, Some(&other), Step::Install);
    // Health check: an alternative here that fails it, before anything is switched.
    r.fails_at(
        &Replacement::alternative("mw-sick"),
        None,
        Step::HealthCheck,
    );
    // Health check: a signed package whose own check fails is removed again.
    let (alternative, fetched) = r.fetched("mw-ill", Behaviour::Unhealthy);
    let message = r.fails_at(&alternative, Some(&fetched), Step::HealthCheck);
    assert!(message.contains("not exit status 0"), "{message}");
    // Switch: the new program dies at once; the old one is started again.
    r.fails_at(&Replacement::alternative("mw-dies"), None, Step::Switch);
    let (alternative, fetched) = r.fetched("mw-gone", Behaviour::DiesAtStart);
    r.fails_at(&alternative, Some(&fetched), Step::Switch);
}

/// A replacement's package hooks run as an install's do (the executor's runner, under the
/// agent's hook policy): the post-install hook once it is in place, the pre-uninstall hook
/// before a program a replacement installed is replaced in turn; a failing post-install hook
/// fails the install step and the old program runs again.
#[test]
fn a_replacements_package_hooks_run_under_the_hook_policy() {
    let mut r = Replacement::new(&[]);
    let (hooked, fetched) = r.fetched("mw-h", Behaviour::Hooked);
    let hooks = runner(&r.policy, &r.programs);
    let outcome = replace(&mut r.watched, &hooked, Some(&fetched), &r.dirs, &hooks);
    assert!(outcome.replaced, "{}", outcome.message);
    assert!(
        outcome
            .message
            .contains("post-install hook bin/post-install ran as "),
        "{}",
        outcome.message
    );
    wait_for_pid(&r.pid_file("mw-h"), None);
    // mw-h, installed by a replacement, is replaced in turn: its pre-uninstall hook runs
    // before it is removed.
    let (b, fetched) = r.fetched("mw-b", Behaviour::Serves);
    let outcome = replace(&mut r.watched, &b, Some(&fetched), &r.dirs, &hooks);
    assert!(outcome.replaced, "{}", outcome.message);
    assert!(
        outcome
            .message
            .contains("its pre-uninstall hook bin/pre-uninstall ran as "),
        "{}",
        outcome.message
    );
    assert!(!r.dirs.programs().join("mw-h/2.0").exists());
    // A post-install hook that fails: the install step fails, nothing stays installed.
    let mut r = Replacement::new(&[]);
    let (failing, fetched) = r.fetched("mw-f", Behaviour::HookFails);
    let message = r.fails_at(&failing, Some(&fetched), Step::Install);
    assert!(
        message.contains("its post-install hook: the hook bin/post-install failed"),
        "{message}"
    );
}
