//! What a fault report carries besides the exit status (SPEC §3.3.1, seed 002 S12): stack
//! frames and a dump digest from the program's crash report, and the digests and redacted
//! excerpts of its definition files, each bounded.
//!
//! The crash report format (a simple one of Herd's own; a program's crash handler, or a
//! wrapper reading its core with a debugger, writes it as `<crash_dir>/<pid>.crash`):
//!
//! ```text
//! herd-crash/1
//! signal: 11
//! frame: parse_config (config.c:120)
//! frame: main (main.c:40)
//! dump: /var/crash/core.1234
//! ```
//!
//! Lines are `name: value`; `frame` lines come top first; `dump` names a core dump whose
//! SHA-256 becomes the dump digest (else the crash report's own digest is used); other lines
//! are ignored. At most 64 KiB of a crash report are read.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use herd_proto::fault::{DefinitionFile, MAX_FRAMES, MAX_TEXT, excerpt_of};
use sha2::{Digest, Sha256};

/// The first line of a crash report.
pub const CRASH_FORMAT: &str = "herd-crash/1";

/// How much of a crash report or a definition file is read for frames or an excerpt.
const MAX_READ: u64 = 64 * 1024;

/// What a crash report gives.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Crash {
    pub frames: Vec<String>,
    pub dump_sha256: Option<String>,
}

/// Reads `<crash_dir>/<pid>.crash`, if there is one.
pub fn crash_report(crash_dir: &Path, pid: u32) -> Option<Crash> {
    let path = crash_dir.join(format!("{pid}.crash"));
    let text = read_head(&path).ok()?;
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some(CRASH_FORMAT) {
        return None;
    }
    let mut crash = Crash::default();
    let mut dump = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim() {
            "frame" if crash.frames.len() < MAX_FRAMES => crash.frames.push(bounded(value)),
            "dump" => dump = Some(value.to_owned()),
            _ => {}
        }
    }
    crash.dump_sha256 = dump
        .and_then(|dump| sha256_file(Path::new(&dump)).ok())
        .or_else(|| sha256_file(&path).ok());
    Some(crash)
}

/// A definition file's digest, size and redacted excerpt; one that cannot be read is listed
/// with its size 0 and the reason as its excerpt.
pub fn definition(path: &Path) -> DefinitionFile {
    let name = path.display().to_string();
    match (sha256_file(path), read_head(path), std::fs::metadata(path)) {
        (Ok(sha256), Ok(head), Ok(meta)) => {
            let (excerpt, cut) = excerpt_of(&head);
            DefinitionFile {
                path: name,
                sha256: Some(sha256),
                size: meta.len(),
                excerpt,
                truncated: cut || meta.len() > head.len() as u64,
            }
        }
        (Err(err), _, _) | (_, Err(err), _) | (_, _, Err(err)) => DefinitionFile {
            path: name,
            sha256: None,
            size: 0,
            excerpt: bounded(&format!("unreadable: {err}")),
            truncated: false,
        },
    }
}

/// The file's first [`MAX_READ`] bytes as text (invalid UTF-8 replaced).
fn read_head(path: &Path) -> io::Result<String> {
    let mut bytes = Vec::new();
    File::open(path)?.take(MAX_READ).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(herd_core::Sha256(hasher.finalize().into()).to_string())
}

/// Text cut to [`MAX_TEXT`] bytes at a character boundary, control characters dropped.
pub fn bounded(text: &str) -> String {
    let mut out: String = text
        .chars()
        .filter(|c| !c.is_control() || *c == '\t')
        .collect();
    let mut end = out.len().min(MAX_TEXT);
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_report_gives_frames_and_the_dumps_digest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("core.7"), b"core bytes").unwrap();
        std::fs::write(
            dir.path().join("7.crash"),
            format!(
                "{CRASH_FORMAT}\nsignal: 11\nframe: parse_config (config.c:120)\nframe: main\n\
                 dump: {}\n",
                dir.path().join("core.7").display()
            ),
        )
        .unwrap();
        let crash = crash_report(dir.path(), 7).unwrap();
        assert_eq!(crash.frames, ["parse_config (config.c:120)", "main"]);
        assert_eq!(
            crash.dump_sha256.unwrap(),
            sha256_file(&dir.path().join("core.7")).unwrap()
        );
        assert_eq!(crash_report(dir.path(), 8), None);
        std::fs::write(
            dir.path().join("9.crash"),
            b"not a crash report\nframe: x\n",
        )
        .unwrap();
        assert_eq!(crash_report(dir.path(), 9), None);
    }

    #[test]
    fn definition_excerpts_are_redacted_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.conf");
        let mut text = String::from(
            "mode = fast\ndb_password = hunter2\n-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n",
        );
        text.push_str(&"# padding\n".repeat(1000));
        std::fs::write(&path, &text).unwrap();
        let file = definition(&path);
        assert!(
            file.excerpt
                .starts_with("mode = fast\ndb_password = [redacted]\n[redacted PEM block]\n")
        );
        assert!(!file.excerpt.contains("hunter2") && !file.excerpt.contains("MIIE"));
        assert!(file.truncated && file.excerpt.len() <= herd_proto::fault::MAX_EXCERPT);
        assert_eq!(file.size, text.len() as u64);
        let missing = definition(&dir.path().join("missing.conf"));
        assert!(missing.sha256.is_none() && missing.excerpt.starts_with("unreadable"));
    }
}
