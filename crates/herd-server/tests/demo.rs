//! `herd demo --exit` as a user runs it: the real `herd serve`, a real site server and four
//! real `herd-agent`s behind it play SPEC §5's worked example (with a malicious mirror the phone
//! refuses, and the center stopped while the site keeps serving) and every step must hold; an agent that does nothing makes the demo fail with exit code 1; usage errors exit 2
//! with a message saying what to do.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const HERD: &str = env!("CARGO_BIN_EXE_herd");

/// How long building `herd-agent` may take when this test has to (a cold build on a busy
/// 2-core machine).
const AGENT_BUILD_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// `herd-agent` beside `herd`, built once per test run when missing: `cargo test -p herd-server`
/// builds only this package's binaries. Set `HERD_DEMO_REBUILD_AGENT=1` to bring a stale agent
/// up to date first.
fn agent() -> &'static Path {
    static AGENT: OnceLock<PathBuf> = OnceLock::new();
    AGENT.get_or_init(|| {
        let herd = Path::new(HERD);
        let agent = herd.with_file_name("herd-agent");
        // `cargo test --workspace` (CI) has built it already; building again with `-p` would
        // unify features differently and recompile much of the tree.
        if agent.is_file() && std::env::var_os("HERD_DEMO_REBUILD_AGENT").is_none() {
            return agent;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_owned());
        let mut build = Command::new(cargo);
        build
            .args(["build", "-p", "herd-agent", "--bin", "herd-agent"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if herd.parent().and_then(Path::file_name) == Some("release".as_ref()) {
            build.arg("--release");
        }
        let output = run_bounded(&mut build, AGENT_BUILD_TIMEOUT);
        assert!(
            output.status.success() && agent.is_file(),
            "building herd-agent failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        agent
    })
}

/// Runs a command to its end, killing it (and failing the test) after `timeout`.
fn run_bounded(command: &mut Command, timeout: Duration) -> Output {
    let mut child = command.spawn().expect("the command starts");
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "{command:?} did not finish within {} s:\n{}\n{}",
                timeout.as_secs(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn demo(args: &[&str], agent: &Path) -> (Output, String) {
    let mut command = Command::new(HERD);
    command
        .arg("demo")
        .args(args)
        .arg("--agent")
        .arg(agent)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = run_bounded(&mut command, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output, stdout)
}

/// The temporary directory the demo announced.
fn announced_dir(stdout: &str) -> PathBuf {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Working in "))
        .expect("the demo says where it works");
    PathBuf::from(line.split(" (").next().expect("a path"))
}

#[test]
fn the_worked_example_plays_through_and_every_step_holds() {
    let (output, stdout) = demo(&["--exit"], agent());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "herd demo --exit failed:\n{stdout}\n{stderr}"
    );
    assert!(!stdout.contains('✗'), "a check failed:\n{stdout}");
    for expected in [
        // The phone cannot detect virus a before the switch…
        "samples/greeting-card.exe: OK\n   ✓ not detected (exit 0)",
        // …switches for SPEC §5's reason, as a transaction…
        "reason: vaccine-a 5.1 (a-1101) does not cover virus-a (high); vaccine-b 7.0 (b-1112) \
         covers it since 2000-11-12; policy latest-any-vendor",
        "uninstall  ok",
        "✓ phone-a switched vendors as one transaction: it runs vaccine-b 7.0 (b-1112) and \
         vaccine-a is uninstalled",
        // A malicious mirror's tampered vaccine b is refused, metadata first, then bytes…
        "herd-agent: warning: refused plan",
        "✓ phone-a refused maker B's role signed by a key its root does not delegate to \
         (signature): nothing downloaded, it still runs vaccine-a 5.1 (a-1101)",
        "✓ the center received the trust.refused event \
         (herd_trust_refusals_total{kind=\"signature\"} 0 → 1)",
        "✓ the downloaded bytes are not the signed SHA-256: plan rolled back",
        // …and the genuine one installed from the mirror once it is honest.
        "nothing is left to do (the genuine package, from the mirror)",
        // …and detects it after.
        "samples/greeting-card.exe: MakerB.VirusA FOUND\n   ✓ detected (exit 1)",
        // The latest-same-vendor PC is exposed with vaccine b offered, and told so.
        "✓ pc-b is exposed and offered vaccine-b",
        "the agent tells user-b: NOTICE:",
        "✓ pda-c is exposed with nothing to offer",
        "✓ stb-d is exposed with nothing to offer",
        // The center's view, through the API.
        "phone-a   user-a  phone  unknown      vaccine-b 7.0  none     0",
        "✓ the exposed terminals operators are asked to look at: pc-b, pda-c, stb-d",
        // The terminals sit behind a site server…
        "✓ the site server answers at https://127.0.0.1:",
        "herd-agent: enrolled as terminal phone-a (group unknown) with https://127.0.0.1:",
        // …which keeps answering them while the center is down, and queues what they report…
        "✓ the center stopped (exit status: 0)",
        "✓ pc-b checked in with the site at ",
        "plan exposed (vaccine-a 5.1 (a-1101) does not cover virus-a (high); no newer release",
        "✓ the site queued what they reported: herd_site_queue_depth 0 → ",
        // …which the center, back, receives once and in order.
        "✓ the queue drained to 0: the center applied ",
        " 0 duplicate(s)",
        "✓ the center shows stb-d's latest check-in, made through the site while the center was \
         down",
        "✓ each package crossed the center→site link once",
        "✓ the site server stopped cleanly on SIGTERM",
        "✓ the center stopped cleanly on SIGTERM",
        "✓ middleware-a replaced by company B's middleware-b 2.0 (verified as a signed target, \
         downloaded, installed beside, health-checked, started)",
        "✓ the known fault's cause and remedy are shown on server-1",
        "✓ the center's fault buckets: licence-server-a known, middleware-a replaced",
        "17/17 steps as expected",
    ] {
        assert!(
            stdout.contains(expected),
            "the output lacks {expected:?}:\n{stdout}"
        );
    }
    let dir = announced_dir(&stdout);
    assert!(
        !dir.exists(),
        "{} was not removed at the end",
        dir.display()
    );
}

#[test]
fn an_agent_that_does_nothing_fails_the_demo_and_stops_the_center() {
    let tmp = tempfile::tempdir().unwrap();
    // Answers `run --help` like a real agent, then never enrols or installs anything.
    let fake = tmp.path().join("herd-agent");
    std::fs::write(&fake, "#!/bin/sh\nexit 0\n").unwrap();
    let mut permissions = std::fs::metadata(&fake).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&fake, permissions).unwrap();

    let work = tmp.path().join("demo");
    let (output, stdout) = demo(&["--exit", "--dir", work.to_str().unwrap()], &fake);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("[6/17] Four terminals enrol through the site and get a product"),
        "{stdout}"
    );
    assert!(stdout.contains("✗ this step could not go on"), "{stdout}");
    assert!(stdout.contains("5/17 steps as expected"), "{stdout}");
    assert!(
        stdout.contains("Site server stopped (exit status: 0)"),
        "the site server was not stopped cleanly:\n{stdout}"
    );
    assert!(
        stdout.contains("Center stopped (exit status: 0)"),
        "the center was not stopped cleanly:\n{stdout}"
    );
    // A directory the user named is kept, with everything the demo made.
    assert!(work.join("center.log").is_file());
    assert!(work.join("feeds/maker-a.json").is_file());
}

#[test]
fn usage_errors_exit_2_and_say_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-agent");
    let (output, _) = demo(&["--exit"], &missing);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cargo build --release --bin herd-agent"),
        "{stderr}"
    );

    let busy = tmp.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("something"), "x").unwrap();
    let (output, _) = demo(&["--exit", "--dir", busy.to_str().unwrap()], agent());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is not empty"), "{stderr}");
}
