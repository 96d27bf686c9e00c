//! `herd demo`'s fault recovery step (SPEC §3.3, seed 002's first embodiment): a server in
//! the data center runs company A's middleware and licence server under `herd-agent
//! supervise`; the licence server exits with a status the fault database knows (its cause
//! and remedy reach the terminal), the middleware crashes with no known cause, and the center
//! has it replaced by company B's middleware, which it distributes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use herd_proto::api::NewEnrolmentToken;
use herd_proto::fault::{Alternative, Decision, FaultRule, ReplacementEntry};
use serde_json::json;

use super::Demo;

const PLATFORM: &str = "linux-x86_64";

impl Demo {
    pub(super) fn supervised_middleware_fails(&mut self) -> anyhow::Result<()> {
        let operator = self.operator()?;
        let dir = self.dir.join("faults");
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        self.show.say(
            "Operators teach the fault database one cause, and approve company B's middleware as\n\
             the replacement of company A's. Company B publishes it as a program release, which\n\
             the center signs as a TUF target like any package.",
        );
        operator
            .put_fault_rule(&FaultRule {
                id: "licence-a-trial".into(),
                program: "licence-server-a".into(),
                version_from: None,
                version_below: Some("2.0".into()),
                kinds: vec![],
                exit_codes: vec![3],
                signals: vec![],
                frame_pattern: None,
                definition_pattern: Some("licence = trial".into()),
                cause: "The trial licence has expired.".into(),
                remedy: "Install the site licence in licence.conf and restart.".into(),
            })
            .context("PUT /v1/fault-rules/licence-a-trial")?;
        let b_pid = dir.join("middleware-b.pid");
        let package = crate::programs::program_package(
            &dir.join("middleware-b-2.0.tar.gz"),
            "middleware-b",
            "company-b",
            "2.0",
            PLATFORM,
            &b_pid,
            crate::programs::Behaviour::Serves,
        )?;
        let feed = crate::programs::program_feed("company-b", &package);
        operator
            .publish_feed("company-b", feed.to_string().as_bytes())
            .context("PUT /v1/feeds/company-b")?;
        operator
            .upload_package(&dir.join("middleware-b-2.0.tar.gz"))
            .context("PUT /v1/packages")?;
        operator
            .put_replacement(&ReplacementEntry {
                program: "middleware-a".into(),
                platform: PLATFORM.into(),
                alternatives: vec![Alternative {
                    program: "middleware-b".into(),
                    vendor: "company-b".into(),
                    version: "2.0".into(),
                    package_sha256: None,
                    package_size: None,
                    target: None,
                }],
            })
            .context("PUT /v1/replacements/middleware-a")?;

        // The server enrols with the center directly.
        let token = operator
            .new_enrolment_token(&NewEnrolmentToken {
                label: "herd demo server".into(),
                uses: Some(1),
                ttl_secs: Some(3600),
                reenrol_terminal: None,
            })
            .context("POST /v1/enrolment-tokens")?;
        let token_file = dir.join("server.token");
        fs::write(&token_file, &token.token)?;
        let state = dir.join("server-1");
        let center = self.center()?.url.clone();
        let ca = self.dir.join("center").join("ca.pem");
        let agent = self.agent.exe.clone();
        let once = || {
            Command::new(&agent)
                .arg("run")
                .arg("--once")
                .arg("--server")
                .arg(&center)
                .arg("--ca")
                .arg(&ca)
                .arg("--state-dir")
                .arg(&state)
                .arg("--enrol-token-file")
                .arg(&token_file)
                .args([
                    "--id",
                    "server-1",
                    "--kind",
                    "server",
                    "--platform",
                    PLATFORM,
                ])
                .output()
                .context("cannot run herd-agent")
        };
        let enrolled = once()?;
        self.show.check(
            enrolled.status.success() || state.join("identity/cert.pem").exists(),
            "server-1 enrolled with the center",
        );

        let crashes = dir.join("crashes");
        fs::create_dir_all(&crashes)?;
        let licence_conf = dir.join("licence.conf");
        fs::write(
            &licence_conf,
            "licence = trial\nlicence_key = DEMO-SECRET\n",
        )?;
        let restart = json!({"max": 3, "window_secs": 60, "delay_ms": 3_600_000});
        let config = json!({
            "format": "herd.supervise/v1",
            "platform": PLATFORM,
            "programs": [
                {"name": "licence-server-a", "vendor": "company-a", "version": "1.4",
                 "command": [script(&dir.join("licence-server-a"), "exit 3")?],
                 "definitions": [licence_conf], "restart": restart},
                {"name": "middleware-a", "vendor": "company-a", "version": "3.1",
                 "command": [script(&dir.join("middleware-a"), &format!(
                     "printf 'herd-crash/1\\nframe: mw_parse_request at 0x55d0\\nframe: main\\n' > {}/$$.crash\nkill -SEGV $$",
                     crashes.display()))?],
                 "crash_dir": crashes, "restart": restart},
            ]
        });
        let config_file = dir.join("supervise.json");
        fs::write(&config_file, config.to_string())?;
        self.show.say(
            "server-1 runs `herd-agent supervise`: the licence server exits with status 3, the\n\
             middleware crashes (SIGSEGV); each fault is reported through the outbox.",
        );
        let log = fs::File::create(dir.join("supervise.log"))?;
        let mut supervisor = Command::new(&self.agent.exe)
            .arg("supervise")
            .arg("--state-dir")
            .arg(&state)
            .arg("--config")
            .arg(&config_file)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start herd-agent supervise")?;
        let awaited = state.join("faults-awaited.json");
        let reported = wait_for(Duration::from_secs(20), || {
            fs::read(&awaited)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Vec<u64>>(&bytes).ok())
                .is_some_and(|seqs| seqs.len() >= 2)
        });
        self.show
            .check(reported, "two fault reports queued in the outbox");
        let sent = once()?;
        self.show
            .check(sent.status.success(), "server-1 checked in and sent them");
        let replaced = wait_for(Duration::from_secs(20), || running(&b_pid));
        self.show.check(
            replaced,
            "middleware-a replaced by company B's middleware-b 2.0 (verified as a signed target, \
             downloaded, installed beside, health-checked, started)",
        );
        let status = Command::new(&self.agent.exe)
            .args(["status", "--state-dir"])
            .arg(&state)
            .output()
            .context("cannot run herd-agent status")?;
        let status = String::from_utf8_lossy(&status.stdout).into_owned();
        for line in status
            .lines()
            .filter(|l| l.starts_with("fault:") || l.starts_with("replacement:"))
        {
            self.show.detail(line);
        }
        self.show.check(
            status.contains("The trial licence has expired."),
            "the known fault's cause and remedy are shown on server-1 (`herd-agent status`)",
        );
        let buckets = operator.fault_buckets().context("GET /v1/faults")?.buckets;
        for bucket in &buckets {
            self.show.detail(&format!(
                "bucket {} {} {} {}: {}",
                bucket.id,
                bucket.program,
                bucket.version,
                bucket.kind.as_str(),
                bucket.decision.as_str()
            ));
        }
        let decided = |program: &str, decision: Decision| {
            buckets
                .iter()
                .any(|b| b.program == program && b.decision == decision)
        };
        self.show.check(
            decided("licence-server-a", Decision::Known)
                && decided("middleware-a", Decision::Replace),
            "the center's fault buckets: licence-server-a known, middleware-a replaced",
        );
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(supervisor.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = supervisor.wait();
        Ok(())
    }
}

fn script(path: &Path, body: &str) -> anyhow::Result<PathBuf> {
    fs::write(path, format!("#!/bin/sh\n{body}\n"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    let mut permissions = fs::metadata(path)?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    fs::set_permissions(path, permissions)?;
    Ok(path.to_owned())
}

fn running(pid_file: &Path) -> bool {
    fs::read_to_string(pid_file)
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .is_some_and(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok())
}

fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
