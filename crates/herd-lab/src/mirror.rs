//! A TUF mirror that can turn malicious: it serves a map of paths to bytes over plain HTTP on
//! loopback (std `TcpListener`, one thread per connection, at most `MAX_CONNECTIONS` at once,
//! every connection bounded in time), and for any path can withhold it, fail, replace its
//! bytes, trickle them, stall, or send endless data — the attacker of TUF's threat list sitting
//! between a terminal and its repository. Point it at a real repository with [`Mirror::proxy`]
//! (a center's `/tuf/`, read through herd-client, so with its CA), [`Mirror::serve_dir`] (a
//! directory laid out like `/tuf/metadata/…` and `/tuf/targets/…`), or fill it with
//! [`Mirror::put`]; [`Mirror::set`] turns one path malicious and [`Mirror::honest_all`] turns
//! the whole mirror honest again, at run time.
//!
//! `herd demo` shows the phone refusing what it serves; the agent's tests use it for every
//! attack on the way from repository to terminal. Not a production mirror: it keeps what it
//! was given in memory and reads the upstream anew at every request.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// How the mirror answers one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// 404, whether or not it has the file (withholding).
    Withhold,
    /// 503 Service Unavailable.
    Fail,
    /// Other bytes than the stored ones, under the same path.
    Replace(Vec<u8>),
    /// The stored bytes, `bytes_per_second` at a time (slow retrieval).
    Trickle { bytes_per_second: u64 },
    /// Headers, then nothing (slow retrieval).
    Stall,
    /// Headers without a length, then bytes until the client hangs up (endless data).
    Endless,
}

/// No connection stays open longer than this, whatever its behaviour.
const CONNECTION_LIMIT: Duration = Duration::from_secs(60);

/// Connections served at once; more are answered 503 at once (the mirror is loopback-only, but
/// a stalling or endless behaviour holds a thread per connection).
pub const MAX_CONNECTIONS: usize = 64;

/// The most a proxied file may weigh (metadata or a package).
const UPSTREAM_MAX_BYTES: u64 = 256 << 20;

#[derive(Default, Debug)]
struct State {
    /// Connections being served now.
    connections: usize,
    files: BTreeMap<String, Vec<u8>>,
    /// Where files not put here come from.
    upstream: Option<herd_client::Repository>,
    behaviours: BTreeMap<String, Behaviour>,
    requests: Vec<String>,
}

/// A running mirror; stops when dropped.
#[derive(Debug)]
pub struct Mirror {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Mirror {
    /// Starts serving on a free loopback port, with nothing to serve yet.
    pub fn start() -> io::Result<Mirror> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut stream) = stream else { continue };
                    if !admit(&state) {
                        let _ = respond(&mut stream, "503 Service Unavailable", &[], b"busy\n");
                        continue;
                    }
                    let (state, stop) = (state.clone(), stop.clone());
                    thread::spawn(move || {
                        serve(stream, &state, &stop);
                        lock(&state).connections -= 1;
                    });
                }
            })
        };
        Ok(Mirror {
            addr,
            state,
            stop,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `bytes` at `path` (`/tuf/metadata/timestamp.json`), before anything upstream.
    pub fn put(&self, path: &str, bytes: impl Into<Vec<u8>>) {
        lock(&self.state)
            .files
            .insert(path.to_owned(), bytes.into());
    }

    /// What was put at `path`.
    pub fn get(&self, path: &str) -> Option<Vec<u8>> {
        lock(&self.state).files.get(path).cloned()
    }

    pub fn remove(&self, path: &str) {
        lock(&self.state).files.remove(path);
    }

    /// Serves what it was not given from `upstream` (a center's repository:
    /// `Client::new(url, ca_pem, None)?.repository()`), read anew at each request.
    pub fn proxy(&self, upstream: herd_client::Repository) {
        lock(&self.state).upstream = Some(upstream);
    }

    /// Serves every file under `dir` at `/` + its relative path (a copy of a repository).
    /// Symbolic links are not followed.
    pub fn serve_dir(&self, dir: &Path) -> io::Result<()> {
        fn walk(mirror: &Mirror, root: &Path, dir: &Path) -> io::Result<()> {
            let named = |e: io::Error, path: &Path| {
                io::Error::new(e.kind(), format!("{}: {e}", path.display()))
            };
            for entry in std::fs::read_dir(dir).map_err(|e| named(e, dir))? {
                let entry = entry.map_err(|e| named(e, dir))?;
                let path = entry.path();
                let kind = entry.file_type().map_err(|e| named(e, &path))?;
                if kind.is_dir() {
                    walk(mirror, root, &path)?;
                } else if kind.is_file() {
                    let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy();
                    let bytes = std::fs::read(&path).map_err(|e| named(e, &path))?;
                    mirror.put(&format!("/{rel}"), bytes);
                }
            }
            Ok(())
        }
        walk(self, dir, dir)
    }

    /// Answers `path` this way from now on.
    pub fn set(&self, path: &str, behaviour: Behaviour) {
        lock(&self.state)
            .behaviours
            .insert(path.to_owned(), behaviour);
    }

    /// Serves `path` honestly again.
    pub fn honest(&self, path: &str) {
        lock(&self.state).behaviours.remove(path);
    }

    /// Serves every path honestly again (what was put or proxied, as it is).
    pub fn honest_all(&self) {
        lock(&self.state).behaviours.clear();
    }

    /// Whether some path is answered otherwise than honestly.
    pub fn is_malicious(&self) -> bool {
        !lock(&self.state).behaviours.is_empty()
    }

    /// The paths asked for so far (with a `Range` noted), and forgets them.
    pub fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut lock(&self.state).requests)
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The state, even if a connection's thread panicked while holding it (what it guards stays
/// consistent: every change is one insertion or removal).
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts a new connection in, unless `MAX_CONNECTIONS` are being served.
fn admit(state: &Mutex<State>) -> bool {
    let mut state = lock(state);
    if state.connections >= MAX_CONNECTIONS {
        return false;
    }
    state.connections += 1;
    true
}

fn serve(mut stream: TcpStream, state: &Mutex<State>, stop: &AtomicBool) {
    let started = Instant::now();
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) if head.len() < 16 << 10 => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let range_from: Option<usize> = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if !name.eq_ignore_ascii_case("range") {
            return None;
        }
        value
            .trim()
            .strip_prefix("bytes=")?
            .strip_suffix('-')?
            .parse()
            .ok()
    });
    let (file, behaviour, upstream) = {
        let mut state = lock(state);
        let noted = match range_from {
            Some(from) => format!("{path} (from {from})"),
            None => path.to_owned(),
        };
        state.requests.push(noted);
        (
            state.files.get(path).cloned(),
            state.behaviours.get(path).cloned(),
            state.upstream.clone(),
        )
    };
    let file = match (file, upstream) {
        (Some(file), _) => Some(file),
        (None, Some(upstream)) => {
            match upstream.get(path, herd_client::ReadLimits::metadata(UPSTREAM_MAX_BYTES)) {
                Ok(bytes) => Some(bytes),
                Err(herd_client::RepositoryError::NotFound { .. }) => None,
                Err(e) => {
                    let _ = respond(
                        &mut stream,
                        "502 Bad Gateway",
                        &[],
                        format!("{e}\n").as_bytes(),
                    );
                    return;
                }
            }
        }
        (None, None) => None,
    };
    if method != "GET" {
        let _ = respond(&mut stream, "405 Method Not Allowed", &[], b"");
        return;
    }
    let file = match (behaviour.clone(), file) {
        (Some(Behaviour::Withhold), _) | (None, None) => {
            let _ = respond(&mut stream, "404 Not Found", &[], b"not found\n");
            return;
        }
        (Some(Behaviour::Fail), _) => {
            let _ = respond(&mut stream, "503 Service Unavailable", &[], b"down\n");
            return;
        }
        (Some(Behaviour::Replace(bytes)), _) => bytes,
        (Some(Behaviour::Endless), _) => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            let chunk = vec![b'{'; 64 << 10];
            while !stop.load(Ordering::SeqCst) && started.elapsed() < CONNECTION_LIMIT {
                if stream.write_all(&chunk).is_err() {
                    break;
                }
            }
            return;
        }
        (Some(Behaviour::Stall), Some(bytes)) => {
            let header = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                bytes.len()
            );
            let _ = stream.write_all(header.as_bytes());
            // Hold the connection until the client gives up (or the test ends).
            let mut sink = [0u8; 64];
            let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
            while !stop.load(Ordering::SeqCst) && started.elapsed() < CONNECTION_LIMIT {
                match stream.read(&mut sink) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => break,
                }
            }
            return;
        }
        (Some(Behaviour::Trickle { bytes_per_second }), Some(bytes)) => {
            let header = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                bytes.len()
            );
            let _ = stream.write_all(header.as_bytes());
            let pause = Duration::from_secs_f64(1.0 / bytes_per_second.max(1) as f64);
            for b in bytes {
                if stop.load(Ordering::SeqCst)
                    || started.elapsed() > CONNECTION_LIMIT
                    || stream.write_all(&[b]).is_err()
                {
                    break;
                }
                thread::sleep(pause);
            }
            return;
        }
        (Some(Behaviour::Stall | Behaviour::Trickle { .. }), None) => {
            let _ = respond(&mut stream, "404 Not Found", &[], b"not found\n");
            return;
        }
        (None, Some(bytes)) => bytes,
    };
    match range_from {
        Some(from) if from > 0 && from < file.len() => {
            let range = format!("bytes {from}-{}/{}", file.len() - 1, file.len());
            let _ = respond(
                &mut stream,
                "206 Partial Content",
                &[("Content-Range", &range)],
                &file[from..],
            );
        }
        Some(from) if from >= file.len() && from > 0 => {
            let _ = respond(&mut stream, "416 Range Not Satisfiable", &[], b"");
        }
        _ => {
            let _ = respond(&mut stream, "200 OK", &[], &file);
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `GET path` over a fresh connection: the status line and the body.
    fn get(mirror: &Mirror, path: &str) -> (String, Vec<u8>) {
        let mut stream = TcpStream::connect(mirror.addr).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: mirror\r\n\r\n").unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).unwrap();
        let end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let status = String::from_utf8_lossy(&answer[..end])
            .lines()
            .next()
            .unwrap()
            .to_owned();
        (status, answer[end + 4..].to_vec())
    }

    #[test]
    fn a_path_turns_malicious_and_the_whole_mirror_honest_again() {
        let mirror = Mirror::start().unwrap();
        assert!(mirror.url().starts_with("http://127.0.0.1:"));
        mirror.put("/tuf/targets/p", b"genuine".to_vec());
        assert_eq!(
            get(&mirror, "/tuf/targets/p"),
            ("HTTP/1.1 200 OK".to_owned(), b"genuine".to_vec())
        );
        mirror.set("/tuf/targets/p", Behaviour::Replace(b"tampered".to_vec()));
        mirror.set("/tuf/metadata/timestamp.json", Behaviour::Fail);
        assert!(mirror.is_malicious());
        assert_eq!(get(&mirror, "/tuf/targets/p").1, b"tampered");
        assert_eq!(
            get(&mirror, "/tuf/metadata/timestamp.json").0,
            "HTTP/1.1 503 Service Unavailable"
        );
        mirror.honest_all();
        assert!(!mirror.is_malicious());
        assert_eq!(get(&mirror, "/tuf/targets/p").1, b"genuine");
        assert_eq!(get(&mirror, "/missing").0, "HTTP/1.1 404 Not Found");
        assert_eq!(
            mirror.take_requests(),
            [
                "/tuf/targets/p",
                "/tuf/targets/p",
                "/tuf/metadata/timestamp.json",
                "/tuf/targets/p",
                "/missing"
            ]
        );
    }

    #[test]
    fn a_directory_is_served_by_relative_path_and_a_missing_one_is_named() {
        let dir = std::env::temp_dir().join(format!("herd-lab-mirror-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("tuf/metadata")).unwrap();
        std::fs::write(dir.join("tuf/metadata/root.json"), b"{}").unwrap();
        let mirror = Mirror::start().unwrap();
        mirror.serve_dir(&dir).unwrap();
        assert_eq!(get(&mirror, "/tuf/metadata/root.json").1, b"{}");
        let missing = dir.join("nowhere");
        let err = mirror.serve_dir(&missing).unwrap_err();
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn connections_beyond_the_bound_are_turned_away_not_queued() {
        let mirror = Mirror::start().unwrap();
        mirror.put("/stall", b"never sent".to_vec());
        mirror.set("/stall", Behaviour::Stall);
        let held: Vec<TcpStream> = (0..MAX_CONNECTIONS)
            .map(|_| {
                let mut stream = TcpStream::connect(mirror.addr).unwrap();
                write!(stream, "GET /stall HTTP/1.1\r\n\r\n").unwrap();
                // The headers arrive once the connection is being served (and counted).
                let mut first = [0u8; 12];
                stream.read_exact(&mut first).unwrap();
                stream
            })
            .collect();
        // Turned away before its request is read: the answer comes unasked.
        let mut turned_away = TcpStream::connect(mirror.addr).unwrap();
        let mut answer = String::new();
        turned_away.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 503 Service Unavailable"),
            "{answer}"
        );
        drop(held);
    }
}
