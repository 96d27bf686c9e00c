//! Supervision with real processes (`sh` scripts): crash, abnormal exit, restart loop and hang
//! detected; the replacement transaction carried out, and failing at each step with the old
//! program running again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use herd_proto::fault::{Alternative, FaultKind};

use super::config::{HealthCheck, Heartbeat, ProgramConfig, RestartPolicy};
use super::replace::{Step, replace};
use super::verdicts::FaultDirs;
use super::watch::{Fault, Watched};

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
        pid_file: None,
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

/// A program A that writes its pid to `a.pid` and runs, with alternatives that write theirs.
struct Replacement {
    dir: tempfile::TempDir,
    dirs: FaultDirs,
    watched: Watched,
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
                expect_exit: 0,
                expect_output: Some("ok".into()),
            });
            config.alternatives.push(alternative);
        }
        let mut watched = Watched::new(config, None);
        watched.start().unwrap();
        let replacement = Replacement { dir, dirs, watched };
        wait_for_pid(&replacement.pid_file("a"), None);
        replacement
    }

    fn pid_file(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.pid"))
    }

    fn alternative(name: &str, package: Option<&[u8]>) -> Alternative {
        Alternative {
            program: name.into(),
            vendor: "company-b".into(),
            version: "2.0".into(),
            package_sha256: package.map(|bytes| {
                use sha2::Digest;
                herd_core::Sha256(sha2::Sha256::digest(bytes).into()).to_string()
            }),
            package_size: package.map(|bytes| bytes.len() as u64),
        }
    }

    /// Replaces A with `alternative` and checks that it failed at `step` with A running again.
    fn fails_at(&mut self, alternative: &Alternative, step: Step) {
        let before = std::fs::read_to_string(self.pid_file("a")).unwrap();
        let outcome = replace(&mut self.watched, alternative, &self.dirs);
        assert!(!outcome.replaced, "{}", outcome.message);
        assert_eq!(outcome.failed_step, Some(step), "{}", outcome.message);
        assert!(
            outcome.message.contains("the old program was restored"),
            "{}",
            outcome.message
        );
        assert_eq!(self.watched.active_name(), "mw-a");
        assert!(self.watched.running());
        if step != Step::Fetch && step != Step::HealthCheck {
            // Stopped for the switch and started again.
            wait_for_pid(&self.pid_file("a"), Some(before.trim()));
        }
        let installed = self.dirs.programs().join(&alternative.program);
        assert!(!installed.join(&alternative.version).exists());
    }
}

#[test]
fn an_alternative_already_here_replaces_the_program() {
    let mut r = Replacement::new(&[("mw-b", "RUN", Some("echo ok"))]);
    let outcome = replace(
        &mut r.watched,
        &Replacement::alternative("mw-b", None),
        &r.dirs,
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
fn a_distributed_alternative_is_installed_checked_and_switched_to() {
    let mut r = Replacement::new(&[]);
    let body = format!(
        "#!/bin/sh\n[ \"$1\" = --herd-health-check ] && exit 0\necho $$ > {}/mw-b.pid\nexec sleep 1000\n",
        r.dir.path().display()
    );
    let alternative = Replacement::alternative("mw-b", Some(body.as_bytes()));
    std::fs::write(
        r.dirs
            .incoming()
            .join(alternative.package_sha256.as_ref().unwrap()),
        &body,
    )
    .unwrap();
    let outcome = replace(&mut r.watched, &alternative, &r.dirs);
    assert!(outcome.replaced, "{}", outcome.message);
    wait_for_pid(&r.pid_file("mw-b"), None);
    assert!(r.dirs.programs().join("mw-b/2.0/mw-b").exists());
}

#[test]
fn a_replacement_failing_at_each_step_restores_the_old_program() {
    let mut r = Replacement::new(&[
        ("mw-sick", "RUN", Some("echo not well; exit 1")),
        ("mw-dies", "exit 4", Some("echo ok")),
    ]);
    // Fetch: not here, and no package.
    r.fails_at(&Replacement::alternative("mw-nowhere", None), Step::Fetch);
    // Fetch: the downloaded package is not the one named.
    let alternative = Replacement::alternative("mw-b", Some(b"the real one"));
    std::fs::write(
        r.dirs
            .incoming()
            .join(alternative.package_sha256.as_ref().unwrap()),
        b"tampered",
    )
    .unwrap();
    r.fails_at(&alternative, Step::Fetch);
    // Health check: fails, before anything is switched.
    r.fails_at(
        &Replacement::alternative("mw-sick", None),
        Step::HealthCheck,
    );
    // Switch: the new program dies at once; the old one is started again.
    r.fails_at(&Replacement::alternative("mw-dies", None), Step::Switch);
    // A distributed one whose health check fails is removed again.
    let body = b"#!/bin/sh\nexit 1\n";
    let alternative = Replacement::alternative("mw-c", Some(body));
    std::fs::write(
        r.dirs
            .incoming()
            .join(alternative.package_sha256.as_ref().unwrap()),
        body,
    )
    .unwrap();
    r.fails_at(&alternative, Step::HealthCheck);
}
