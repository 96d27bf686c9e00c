//! Crash-safety of herd-fs across real processes: a writer SIGKILLed between writing and
//! renaming, a writer killed at random moments, and locks held by another process that exits
//! or dies. Children are this test binary re-invoked with `HERD_FS_CHILD` set (see `child`).

use std::fs;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use herd_fs::{LockError, LockFile, is_temporary, remove_stale_temporaries, write_atomic};
use nix::sys::signal::{Signal, kill, raise};
use nix::unistd::Pid;

const CHILD_ENV: &str = "HERD_FS_CHILD";

/// Not a test: the body of the child processes, selected by `HERD_FS_CHILD=<role>:<path>`.
#[test]
fn child() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (role, path) = role.split_once(':').unwrap();
    let path = Path::new(path);
    match role {
        // Everything but the rename: the content is written and synced, then SIGKILL.
        "die-before-rename" => {
            let _ = herd_fs::write_atomic_with(path, 0o600, |file| {
                file.write_all(&version(2))?;
                file.sync_all()?;
                raise(Signal::SIGKILL).unwrap();
                unreachable!("SIGKILL cannot be handled");
            });
        }
        // Rewrites the file with ever newer versions until it is killed.
        "rewrite-forever" => {
            let mut stdout = std::io::stdout();
            for n in 1.. {
                write_atomic(path, &version(n), 0o600).unwrap();
                writeln!(stdout, "WROTE {n}").unwrap();
            }
        }
        "hold-lock" => {
            let _lock = LockFile::acquire(path).unwrap();
            // Straight to stdout: libtest may capture `println!`.
            writeln!(std::io::stdout(), "LOCKED").unwrap();
            std::thread::sleep(Duration::from_secs(60));
        }
        "hold-lock-briefly" => {
            let _lock = LockFile::acquire(path).unwrap();
            // Straight to stdout: libtest may capture `println!`.
            writeln!(std::io::stdout(), "LOCKED").unwrap();
            std::thread::sleep(Duration::from_millis(300));
        }
        other => panic!("unknown child role {other}"),
    }
}

fn spawn(role: &str, path: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{role}:{}", path.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Reads the child's stdout until a line holds `marker` (libtest may print before it).
fn wait_for(child: &mut Child, marker: &str) -> BufReader<std::process::ChildStdout> {
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert_ne!(out.read_line(&mut line).unwrap(), 0, "child ended first");
        if line.contains(marker) {
            return out;
        }
    }
}

/// 64 KiB saying which version it is in every byte, so a torn file is visible.
fn version(n: u64) -> Vec<u8> {
    let tag = format!("v{n:08};");
    tag.as_bytes()
        .iter()
        .copied()
        .cycle()
        .take(64 << 10)
        .collect()
}

fn assert_whole_version(bytes: &[u8]) -> u64 {
    assert_eq!(bytes.len(), 64 << 10, "torn file");
    let n: u64 = std::str::from_utf8(&bytes[1..9]).unwrap().parse().unwrap();
    assert_eq!(bytes, version(n), "torn file");
    n
}

fn temporaries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| is_temporary(name))
        .map(|name| name.into_string().unwrap())
        .collect()
}

#[test]
fn a_writer_killed_before_renaming_leaves_the_old_content_and_blocks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.json");
    write_atomic(&path, &version(1), 0o600).unwrap();
    let mut child = spawn("die-before-rename", &path);
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child must have been killed");
    // The old content, and exactly the temporary a crash at that moment leaves.
    assert_eq!(assert_whole_version(&fs::read(&path).unwrap()), 1);
    let leftovers = temporaries(dir.path());
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    assert_eq!(
        fs::read(dir.path().join(&leftovers[0])).unwrap(),
        version(2),
        "the temporary holds the unrenamed new content"
    );
    // The leftover does not block the next write, and clean-up removes it (its writer died).
    write_atomic(&path, &version(3), 0o600).unwrap();
    assert_eq!(assert_whole_version(&fs::read(&path).unwrap()), 3);
    assert_eq!(remove_stale_temporaries(dir.path()).unwrap(), 1);
    assert!(temporaries(dir.path()).is_empty());
    assert_eq!(remove_stale_temporaries(dir.path()).unwrap(), 0);
}

#[test]
fn a_writer_killed_at_any_moment_leaves_a_whole_version() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..5u64 {
        let path = dir.path().join(format!("state-{round}.json"));
        let mut child = spawn("rewrite-forever", &path);
        let mut out = wait_for(&mut child, "WROTE");
        // Let it run a little longer, by a different amount each round, then kill -9.
        std::thread::sleep(Duration::from_millis(3 + 7 * round));
        child.kill().unwrap();
        child.wait().unwrap();
        // `wait_for` read the report of version 1.
        let mut last_reported = 1;
        let mut line = String::new();
        while out.read_line(&mut line).unwrap_or(0) > 0 {
            if let Some((_, n)) = line.trim().split_once("WROTE ") {
                last_reported = n.parse().unwrap();
            }
            line.clear();
        }
        let n = assert_whole_version(&fs::read(&path).unwrap());
        // What a write reported as done is never lost; at most the one after it is in place.
        assert!(n >= last_reported, "version {n} < {last_reported}");
        assert!(n <= last_reported + 1, "version {n} > {last_reported} + 1");
        remove_stale_temporaries(dir.path()).unwrap();
        assert!(temporaries(dir.path()).is_empty());
    }
}

#[test]
fn a_lock_is_exclusive_across_processes_and_released_when_the_holder_dies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.lock");
    let mut child = spawn("hold-lock", &path);
    let _out = wait_for(&mut child, "LOCKED");
    match LockFile::try_acquire(&path) {
        Err(LockError::Locked { pid, .. }) => assert_eq!(pid, Some(child.id())),
        other => panic!("expected Locked, got {other:?}"),
    }
    let holder = LockFile::holder(&path).unwrap().unwrap();
    assert_eq!(holder.pid, Some(child.id()));
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    // The kernel released the lock with the dead process; no stale lock to break.
    assert_eq!(LockFile::holder(&path).unwrap(), None);
    let lock = LockFile::try_acquire(&path).unwrap();
    assert_eq!(lock.path(), path);
}

#[test]
fn a_waiting_acquire_gets_the_lock_when_the_holder_exits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.lock");
    let mut child = spawn("hold-lock-briefly", &path);
    let _out = wait_for(&mut child, "LOCKED");
    assert!(matches!(
        LockFile::try_acquire(&path),
        Err(LockError::Locked { .. })
    ));
    let lock = LockFile::acquire(&path).unwrap();
    assert!(child.wait().unwrap().success());
    drop(lock);
}
