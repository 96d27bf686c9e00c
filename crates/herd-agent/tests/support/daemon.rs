//! A running `herd-agent run` daemon and the lines it prints, for the agent's integration tests
//! that scan (`tests/immunity.rs`, `tests/herd_set.rs`), shared through
//! `#[path = "support/daemon.rs"]`. Each test builds the daemon's command line itself.

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running agent daemon scanning one directory, and the lines it prints.
pub struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    /// The directory it scans.
    pub files: PathBuf,
    /// Its state directory.
    pub state: PathBuf,
}

impl Daemon {
    /// Starts `command` (a `herd-agent run` scanning `files` with state in `state`) with its
    /// standard output read line by line.
    pub fn spawn(mut command: Command, files: PathBuf, state: PathBuf) -> Daemon {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Daemon {
            child,
            lines,
            seen: Vec::new(),
            files,
            state,
        }
    }

    /// Waits for a line containing `wanted` (after those already consumed), returning it.
    #[track_caller]
    pub fn wait_for(&mut self, wanted: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(wanted) => return line,
                Ok(line) => self.seen.push(line),
                Err(_) => break,
            }
        }
        panic!(
            "no line with {wanted:?} in 30 s; saw:\n{}",
            self.seen.join("\n")
        );
    }

    /// Lines printed within `within` that contain `wanted`.
    pub fn lines_with(&mut self, wanted: &str, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut found = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(wanted) => found.push(line),
                Ok(line) => self.seen.push(line),
                Err(_) => break,
            }
        }
        found
    }

    /// Writes a file into the scanned directory and opens it as a user would (an open that
    /// fanotify may deny, so the result is not looked at).
    pub fn drop_file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.files.join(name);
        fs::write(&path, content).unwrap();
        let _ = fs::File::open(&path).and_then(|mut f| f.read_to_end(&mut Vec::new()));
        path
    }

    /// The agent's copy of a file of Herd's set.
    pub fn set_file(&self, name: &str) -> Vec<u8> {
        fs::read(self.state.join("herd-set").join(name)).unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// The scanned directory (created) and the state directory of daemon `id` under `root`.
pub fn dirs(root: &Path, id: &str) -> (PathBuf, PathBuf) {
    let files = root.join(format!("{id}-files"));
    fs::create_dir_all(&files).unwrap();
    (files, root.join(id))
}
