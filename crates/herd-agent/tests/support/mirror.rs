//! A TUF mirror for tests that can turn malicious: it serves a map of paths to bytes over plain
//! HTTP on loopback (std `TcpListener`, one thread per connection, every connection bounded
//! in time), and for any path can withhold it, fail, replace its bytes, trickle them, stall,
//! or send endless data — the attacker of TUF's threat list sitting between a terminal and its
//! repository. Point it at a real repository with [`Mirror::proxy`] (a center's `/tuf/`, read
//! through herd-client, so with its CA), [`Mirror::serve_dir`] (a directory laid out like
//! `/tuf/metadata/…` and `/tuf/targets/…`), or fill it with [`Mirror::put`].
//!
//! Shared by the agent's unit tests (included with `#[path]`) and its integration tests.

#![allow(dead_code)] // Each test binary uses a different part.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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

/// Nothing a test does keeps a connection open longer than this.
const CONNECTION_LIMIT: Duration = Duration::from_secs(60);

#[derive(Default)]
struct State {
    files: BTreeMap<String, Vec<u8>>,
    /// Where files not put here come from.
    upstream: Option<herd_client::Repository>,
    behaviours: BTreeMap<String, Behaviour>,
    requests: Vec<String>,
}

/// A running mirror; stops when dropped.
pub struct Mirror {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Mirror {
    pub fn start() -> Mirror {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (state, stop) = (state.clone(), stop.clone());
                    thread::spawn(move || serve(stream, &state, &stop));
                }
            })
        };
        Mirror {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn put(&self, path: &str, bytes: impl Into<Vec<u8>>) {
        self.state
            .lock()
            .unwrap()
            .files
            .insert(path.to_owned(), bytes.into());
    }

    pub fn get(&self, path: &str) -> Option<Vec<u8>> {
        self.state.lock().unwrap().files.get(path).cloned()
    }

    pub fn remove(&self, path: &str) {
        self.state.lock().unwrap().files.remove(path);
    }

    /// Serves what it was not given from `upstream` (a center's repository:
    /// `Client::new(url, ca_pem, None)?.repository()`), read anew at each request.
    pub fn proxy(&self, upstream: herd_client::Repository) {
        self.state.lock().unwrap().upstream = Some(upstream);
    }

    /// Serves every file under `dir` at `/` + its relative path (a copy of a repository).
    pub fn serve_dir(&self, dir: &Path) {
        fn walk(mirror: &Mirror, root: &Path, dir: &Path) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(mirror, root, &path);
                } else {
                    let rel = path.strip_prefix(root).unwrap().to_string_lossy();
                    mirror.put(&format!("/{rel}"), std::fs::read(&path).unwrap());
                }
            }
        }
        walk(self, dir, dir);
    }

    /// Answers `path` this way from now on.
    pub fn set(&self, path: &str, behaviour: Behaviour) {
        self.state
            .lock()
            .unwrap()
            .behaviours
            .insert(path.to_owned(), behaviour);
    }

    /// Serves `path` honestly again.
    pub fn honest(&self, path: &str) {
        self.state.lock().unwrap().behaviours.remove(path);
    }

    /// The paths asked for so far (with a `Range` noted), and forgets them.
    pub fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut self.state.lock().unwrap().requests)
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
        let mut state = state.lock().unwrap();
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
            match upstream.get(path, herd_client::ReadLimits::metadata(1 << 30)) {
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
