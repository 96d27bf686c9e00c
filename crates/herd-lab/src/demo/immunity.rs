//! The demo's herd-immunity step (SPEC §3.2, issue 13): user B's PC and user A's phone run
//! `herd-agent run --scan` daemons behind the site; worm b, which only maker A's vaccine a
//! knows, lands on the PC and is detected and quarantined there; the detection travels through
//! the site to the center, whose cross-vendor rule publishes the worm's hash in Herd's own
//! signature set; the phone, running maker B's vaccine b, which does not know the worm, gets
//! the set pushed and detects the worm a moment later.
//!
//! Hook for alerts (issue 13's alert part): once the center has published the signature
//! ([`Demo::herd_immunity`] after "Herd's set"), an alert rule on new detections would deliver
//! to a local webhook sink here, whose received JSON the step prints.

use std::fs::{self, File};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use sha2::{Digest as _, Sha256};

use super::Demo;
use super::story::{self, Device, PC, PHONE};

/// How long each wait of the step may take.
const WAIT: Duration = Duration::from_secs(30);

/// A `herd-agent run --scan` daemon of the demo, its lines, stopped when dropped.
struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
    files: PathBuf,
}

impl Daemon {
    /// Waits for a line containing `wanted`; every line is also appended to the agent's log.
    fn wait_for(&self, wanted: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + WAIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(wanted) => return Ok(line),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        bail!(
            "the agent did not say {wanted:?} within {} s",
            WAIT.as_secs()
        )
    }

    /// Writes a file into the scanned directory and opens it as a user would (as root the
    /// agent denies the open of an infected file, so its result is not looked at).
    fn drop_file(&self, name: &str, content: &str) -> anyhow::Result<PathBuf> {
        let path = self.files.join(name);
        fs::write(&path, content).with_context(|| format!("cannot write {}", path.display()))?;
        let _ = File::open(&path).and_then(|mut f| f.read_to_end(&mut Vec::new()));
        Ok(path)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

impl Demo {
    /// Starts `herd-agent run --scan` for an enrolled terminal, through the site.
    fn start_scanning(&mut self, device: &Device) -> anyhow::Result<Daemon> {
        let server = match &self.site {
            Some(site) => site.url.clone(),
            None => self.center()?.url.clone(),
        };
        let dir = self.terminal_dir(device);
        let files = dir.join("files");
        fs::create_dir_all(&files).with_context(|| format!("cannot create {}", files.display()))?;
        let log_path = dir.join("agent.log");
        let mut log = crate::harness::append(&log_path)?;
        let mut child = Command::new(&self.agent.exe)
            .arg("run")
            .arg("--server")
            .arg(&server)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--prefix")
            .arg(self.prefix(device))
            .arg("--scan")
            .arg(&files)
            .args(["--daily-scan", "03:00", "--tz", story::TZ])
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log.try_clone()?))
            .spawn()
            .with_context(|| format!("cannot run {}", self.agent.exe.display()))?;
        self.show.detail(&format!(
            "  $ herd-agent run --server {server} --state-dir {} --prefix {} --scan {} --daily-scan 03:00 --tz {}",
            self.rel(&dir.join("state")),
            self.rel(&self.prefix(device)),
            self.rel(&files),
            story::TZ
        ));
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let daemon = Daemon {
            child,
            lines,
            files,
        };
        daemon.wait_for("herd-agent: scanning")?;
        Ok(daemon)
    }

    /// The herd-immunity step (see the module documentation).
    pub(super) fn herd_immunity(&mut self) -> anyhow::Result<()> {
        self.show.say(&format!(
            "Worm b is new: maker A's vaccine a names it ({}), maker B's vaccine b does not know it.",
            story::WORM_B_SIGNATURE
        ));
        let pc = self.start_scanning(&PC)?;
        let phone = self.start_scanning(&PHONE)?;
        self.show.say(
            "  both agents scan on access with their product's definitions plus Herd's own set",
        );

        let worm = story::worm_content();
        let sha256 = hex::encode(Sha256::digest(worm.as_bytes()));
        let on_pc = pc.drop_file(story::WORM_B_NAME, &worm)?;
        let found = pc.wait_for("is infected")?;
        let detected = Instant::now();
        self.show
            .say(&format!("  {}: {}", PC.describe, strip(&found)));
        self.show.check(
            found.contains(story::WORM_B_SIGNATURE) && !on_pc.exists(),
            &format!(
                "{}'s vaccine a detects worm b and quarantines it",
                PC.describe
            ),
        );

        let operator = self.operator()?;
        let deadline = Instant::now() + WAIT;
        let signature = loop {
            let set = operator.herd_set().context("GET /v1/herd-set")?;
            if let Some(signature) = set.into_iter().find(|s| s.sha256 == sha256) {
                break signature;
            }
            if Instant::now() > deadline {
                bail!(
                    "the center did not publish worm b's hash within {} s",
                    WAIT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        self.show.say(&format!(
            "  Herd's set: {} ({}; first seen on {} as {})",
            signature.name, signature.source, signature.first_terminal, signature.first_signature
        ));
        self.show.check(
            signature.source == "rule:cross-vendor" && signature.first_terminal == PC.id,
            "the detection reached the center through the site; its hash is in Herd's set, signed in the herd role",
        );
        // ALERT hook: a webhook sink would print the new-detection alert here.

        phone.wait_for("Herd's own set included")?;
        let on_phone = phone.drop_file(story::WORM_B_NAME, &worm)?;
        let found = phone.wait_for("is infected")?;
        let took = detected.elapsed();
        self.show
            .say(&format!("  {}: {}", PHONE.describe, strip(&found)));
        self.show.check(
            found.contains(&signature.name) && !on_phone.exists(),
            &format!(
                "{} (vaccine b, which does not know worm b) detects it with Herd's set, {:.1} s after the PC did",
                PHONE.describe,
                took.as_secs_f64()
            ),
        );
        Ok(())
    }
}

/// A daemon's line without its `herd-agent: ` prefix and the scratch directory.
fn strip(line: &str) -> String {
    let line = line.strip_prefix("herd-agent: ").unwrap_or(line);
    match line.find("/terminals/") {
        Some(at) => {
            let start = line[..at].rfind(' ').map_or(0, |s| s + 1);
            format!("{}{}", &line[..start], &line[at + 1..])
        }
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lines_are_shown_without_the_scratch_directory() {
        assert_eq!(
            super::strip("herd-agent: /tmp/x/terminals/pc-b/files/w.exe is infected (A)"),
            "terminals/pc-b/files/w.exe is infected (A)"
        );
    }
}
