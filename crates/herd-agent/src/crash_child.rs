//! Test-only: crash tests run this test binary again as a child process, which finds its role
//! in `HERD_AGENT_TEST_CHILD` and is killed with SIGKILL mid-write, as a kill -9 or a power cut
//! would stop the agent. Not a fault hook in the agent itself: nothing here is compiled into it.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use nix::sys::signal::{Signal, raise};

const ENV: &str = "HERD_AGENT_TEST_CHILD";

/// The role and path this process was started with, if it is a child; a test that serves as
/// a child's body returns at once when this is `None`.
pub(crate) fn role() -> Option<(String, PathBuf)> {
    let value = std::env::var(ENV).ok()?;
    let (role, path) = value.split_once(':')?;
    Some((role.to_owned(), PathBuf::from(path)))
}

/// Runs the test `test` (its full path, e.g. `outbox::tests::crash_child`) of this binary as a
/// child with `role` and `path`; its stdout is piped for [`wait_for`].
pub(crate) fn spawn(test: &str, role: &str, path: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ENV, format!("{role}:{}", path.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Says `line` to the parent (straight to stdout: libtest may capture `println!`).
pub(crate) fn say(line: &str) {
    let mut out = std::io::stdout();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// Reads the child's stdout until a line holds `marker`; returns that line and the rest.
pub(crate) fn wait_for(child: &mut Child, marker: &str) -> (String, BufReader<ChildStdout>) {
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert_ne!(
            out.read_line(&mut line).unwrap(),
            0,
            "the child ended first"
        );
        if line.contains(marker) {
            return (line, out);
        }
    }
}

/// Writes `bytes` to `path` the way every durable write does (herd-fs), and dies by SIGKILL
/// after the temporary is written and synced, before the rename: the worst moment for a
/// reader of `path`.
pub(crate) fn write_then_die(path: &Path, bytes: &[u8], mode: u32) -> ! {
    let _ = herd_fs::write_atomic_with(path, mode, |file| {
        file.write_all(bytes)?;
        file.sync_all()?;
        raise(Signal::SIGKILL).unwrap();
        unreachable!("SIGKILL cannot be handled");
    });
    unreachable!("the write above never returns");
}
