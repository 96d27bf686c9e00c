//! The agent's outbox (SPEC §3.5): a durable, ordered, at-least-once queue of events for the
//! center. Every event the agent emits is written here first; it is sent in order and deleted
//! only once the center has acknowledged it, so the agent keeps working while the center is
//! unreachable and catches up when it returns, and a crash (kill -9, power loss) at any moment
//! loses nothing and repeats nothing the center has not already deduplicated.
//!
//! Layout of the outbox directory:
//! - `<seq>.json` (`seq` zero-padded to 20 digits, so names sort as numbers): one `EventDoc`,
//!   written through `herd_fs` (a temporary file, fsync'ed, renamed into place) and the
//!   directory fsync'ed before [`Outbox::push`] returns — before anything can be sent.
//!   Temporaries a killed writer left are never read as events, and are removed by
//!   [`Outbox::open`].
//! - `acked`: the highest seq the center acknowledged, written durably before acknowledged files
//!   are deleted. The next seq is one more than the highest of the files and `acked`, so a seq is
//!   never reused, even after every file was sent and deleted and the agent then crashed.
//! - `lock`: a `herd_fs::LockFile` held by whoever reads or changes the directory, so several
//!   processes may emit events and flush safely.
//! - `refused/`: events the center refused as malformed, kept with the reason for inspection
//!   instead of blocking everything behind them; `corrupt/`: files that could not be read back.
//!
//! The seq is the idempotency key the center deduplicates on (per terminal), so sending a batch
//! twice — after a crash between the center's acknowledgement and the deletion — is harmless.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use herd_client::ClientError;
use herd_fs::{LockError, LockFile};
use herd_proto::api::{EventAck, EventBatch, EventDoc, codes};

use crate::run::clock;
use crate::run::durable::{self, PRIVATE_DIR, PRIVATE_FILE};

/// The most events sent in one request.
pub const MAX_BATCH: usize = 500;

/// The most bytes of events (as stored) sent in one request; the center accepts 8 MiB.
const MAX_BATCH_BYTES: usize = 4 << 20;

/// Digits of the zero-padded seq in file names (`u64::MAX` has 20).
const SEQ_DIGITS: usize = 20;

/// Test-only: `abort-after-ack:N` aborts the process right after the center acknowledged the
/// N-th batch of a flush and before anything is deleted — the moment where a crash makes the
/// next flush send events the center already holds.
pub const FAULT_ENV: &str = "HERD_AGENT_OUTBOX_FAULT";

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A durable write (an event, `acked`, a note) failed; the error names the file and step.
    #[error("outbox {0}")]
    Write(#[from] herd_fs::WriteError),
    #[error("{FAULT_ENV}={0:?}: expected abort-after-ack:N")]
    Fault(String),
}

/// Why a flush stopped before the outbox was empty.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    /// The center could not be reached or refused the terminal (not the events): try later.
    #[error("{0}")]
    Send(ClientError),
    /// The center's acknowledgement does not cover what was sent.
    #[error(
        "the center acknowledged events through seq {acked}, but the batch sent starts at seq {first}"
    )]
    Unacknowledged { acked: u64, first: u64 },
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

/// What a flush delivered.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Events acknowledged and deleted.
    pub delivered: u64,
    /// Requests made.
    pub batches: u64,
    /// Events the center refused as malformed, moved to `refused/`: `(seq, reason)`.
    pub refused: Vec<(u64, String)>,
    /// Files that could not be read back, moved to `corrupt/`: `(file name, reason)`.
    pub corrupt: Vec<(String, String)>,
}

/// The outbox's numbers, for `herd-agent status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OutboxStats {
    /// Events waiting to be sent.
    pub pending: u64,
    pub oldest_pending_seq: Option<u64>,
    /// The highest seq the center acknowledged.
    pub acked_through: u64,
    /// The seq the next event gets.
    pub next_seq: u64,
}

/// A durable queue of events in one directory. Holds no open files between calls.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    abort_after_ack: Option<u64>,
}

impl Outbox {
    /// Opens (creating it, owner-only) the outbox in `dir` and removes temporary files a crash
    /// left behind (their events were never acknowledged to the caller, so never sent).
    pub fn open(dir: &Path) -> Result<Outbox, OutboxError> {
        durable::create_dir(dir, PRIVATE_DIR).map_err(|source| OutboxError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let abort_after_ack = match std::env::var(FAULT_ENV) {
            Ok(value) => Some(
                value
                    .strip_prefix("abort-after-ack:")
                    .and_then(|n| n.parse().ok())
                    .ok_or(OutboxError::Fault(value))?,
            ),
            Err(_) => None,
        };
        let outbox = Outbox {
            dir: dir.to_owned(),
            abort_after_ack,
        };
        let _lock = outbox.lock()?;
        herd_fs::remove_stale_temporaries(dir)?;
        for name in outbox.names()? {
            // The temporaries of agents before herd-fs (`.tmp-<seq>`), which nothing else
            // would ever remove.
            if name.starts_with(".tmp-") {
                let path = dir.join(&name);
                fs::remove_file(&path).map_err(|source| OutboxError::Io { path, source })?;
            }
        }
        Ok(outbox)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one event, timestamped now; returns its seq once it is on disk.
    pub fn push(&self, kind: &str, data: serde_json::Value) -> Result<u64, OutboxError> {
        let seqs = self.push_all(vec![(kind.to_owned(), data)])?;
        Ok(seqs.start)
    }

    /// Appends events in order with consecutive seqs and one directory sync for all of them;
    /// returns their seqs once they are all on disk.
    pub fn push_all(
        &self,
        events: Vec<(String, serde_json::Value)>,
    ) -> Result<std::ops::Range<u64>, OutboxError> {
        let _lock = self.lock()?;
        let first = self.next_seq_locked()?;
        let at = clock::now_rfc3339();
        let mut seq = first;
        for (kind, data) in events {
            let event = EventDoc {
                seq,
                at: at.clone(),
                kind,
                data,
            };
            let bytes = serde_json::to_vec(&event).map_err(|e| OutboxError::Io {
                path: self.dir.clone(),
                source: io::Error::other(e),
            })?;
            self.write_event(seq, &bytes)?;
            seq += 1;
        }
        herd_fs::sync_dir(&self.dir)?;
        Ok(first..seq)
    }

    /// How many events wait, and where the sequence stands.
    pub fn stats(&self) -> Result<OutboxStats, OutboxError> {
        let _lock = self.lock()?;
        let seqs = self.pending_seqs()?;
        let acked_through = self.acked()?;
        let highest = seqs.last().copied().unwrap_or(0).max(acked_through);
        Ok(OutboxStats {
            pending: seqs.len() as u64,
            oldest_pending_seq: seqs.first().copied(),
            acked_through,
            next_seq: highest + 1,
        })
    }

    /// The waiting events of `kind` whose seq is above `after`, oldest first: read, not sent
    /// (the agent's self-protection counts its product's fault reports before they leave).
    /// Files that cannot be read back are skipped; the next flush sets them aside.
    pub fn pending_of_kind(&self, kind: &str, after: u64) -> Result<Vec<EventDoc>, OutboxError> {
        let _lock = self.lock()?;
        let mut found = Vec::new();
        for seq in self.pending_seqs()?.into_iter().filter(|&seq| seq > after) {
            let path = self.dir.join(file_name(seq));
            let bytes = match fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(OutboxError::Io { path, source }),
            };
            if let Ok(event) = serde_json::from_slice::<EventDoc>(&bytes)
                && event.seq == seq
                && event.kind == kind
            {
                found.push(event);
            }
        }
        Ok(found)
    }

    /// Sends every waiting event, oldest first, in batches of at most `batch_limit` (capped at
    /// [`MAX_BATCH`]) through `send`, deleting each batch once the center acknowledged it.
    ///
    /// A batch the center refuses as malformed (`bad_request`, `too_large`) is split until the
    /// offending event is alone; that event is moved to `refused/` so the rest can flow. Any
    /// other failure stops the flush with everything unsent kept for the next one.
    pub fn flush(
        &self,
        send: &mut dyn FnMut(&EventBatch) -> Result<EventAck, ClientError>,
        batch_limit: usize,
    ) -> Result<Flushed, FlushError> {
        let full = batch_limit.clamp(1, MAX_BATCH);
        let mut limit = full;
        let mut flushed = Flushed::default();
        loop {
            let batch = self.read_batch(limit, &mut flushed)?;
            let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
                return Ok(flushed);
            };
            let (first, last) = (first.seq, last.seq);
            let request = EventBatch { events: batch };
            flushed.batches += 1;
            match send(&request) {
                Ok(ack) => {
                    if ack.acked_through < first {
                        return Err(FlushError::Unacknowledged {
                            acked: ack.acked_through,
                            first,
                        });
                    }
                    if let Some(n) = self.abort_after_ack
                        && flushed.batches >= n
                    {
                        eprintln!(
                            "herd-agent: {FAULT_ENV}: aborting after the center acknowledged batch {n}"
                        );
                        std::process::abort();
                    }
                    // Never delete beyond what was sent: a later seq the center holds (from
                    // another copy of this state) says nothing about files not in this batch.
                    let through = ack.acked_through.min(last);
                    flushed.delivered += self.delete_through(&request.events, through)?;
                    limit = full;
                }
                Err(err) if is_malformed(&err) => {
                    if request.events.len() > 1 {
                        limit = request.events.len() / 2;
                        continue;
                    }
                    self.set_aside(first, "refused", &err.to_string())?;
                    flushed.refused.push((first, err.to_string()));
                    limit = full;
                }
                Err(err) => return Err(FlushError::Send(err)),
            }
        }
    }

    // -----------------------------------------------------------------------------------------

    fn io(&self, source: io::Error) -> OutboxError {
        OutboxError::Io {
            path: self.dir.clone(),
            source,
        }
    }

    fn lock(&self) -> Result<LockFile, OutboxError> {
        LockFile::acquire(&self.dir.join("lock")).map_err(|e| match e {
            LockError::Io { path, source } => OutboxError::Io { path, source },
            // A waiting acquire never reports the lock as held, but say so if it does.
            locked @ LockError::Locked { .. } => OutboxError::Io {
                path: self.dir.join("lock"),
                source: io::Error::new(io::ErrorKind::WouldBlock, locked),
            },
        })
    }

    fn names(&self) -> Result<Vec<String>, OutboxError> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| self.io(e))? {
            let entry = entry.map_err(|e| self.io(e))?;
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    /// The seqs of the events waiting, ascending.
    fn pending_seqs(&self) -> Result<Vec<u64>, OutboxError> {
        let mut seqs: Vec<u64> = self
            .names()?
            .iter()
            .filter_map(|name| seq_of(name))
            .collect();
        seqs.sort_unstable();
        Ok(seqs)
    }

    fn acked(&self) -> Result<u64, OutboxError> {
        let path = self.dir.join("acked");
        match durable::read_optional(&path) {
            Ok(None) => Ok(0),
            Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).trim().parse().map_err(|_| {
                OutboxError::Io {
                    path,
                    source: io::Error::new(
                        io::ErrorKind::InvalidData,
                        "not a sequence number; the next seq cannot be known safely (remove the \
                         file only if the terminal is enrolled again)",
                    ),
                }
            }),
            Err(source) => Err(OutboxError::Io { path, source }),
        }
    }

    fn next_seq_locked(&self) -> Result<u64, OutboxError> {
        let highest = self.pending_seqs()?.last().copied().unwrap_or(0);
        Ok(highest.max(self.acked()?) + 1)
    }

    /// Writes one event whole; the caller syncs the directory once for all it writes.
    fn write_event(&self, seq: u64, bytes: &[u8]) -> Result<(), OutboxError> {
        let path = self.dir.join(file_name(seq));
        Ok(herd_fs::replace_without_dir_sync(
            &path,
            bytes,
            PRIVATE_FILE,
        )?)
    }

    /// The oldest events, at most `limit` of them and about [`MAX_BATCH_BYTES`]; files that
    /// cannot be read back are moved to `corrupt/` (and listed in `flushed`).
    fn read_batch(
        &self,
        limit: usize,
        flushed: &mut Flushed,
    ) -> Result<Vec<EventDoc>, OutboxError> {
        let _lock = self.lock()?;
        let mut batch = Vec::new();
        let mut bytes_total = 0;
        for seq in self.pending_seqs()? {
            if batch.len() >= limit {
                break;
            }
            let name = file_name(seq);
            let path = self.dir.join(&name);
            let bytes = match fs::read(&path) {
                Ok(bytes) => bytes,
                // Another process flushed it meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(OutboxError::Io { path, source }),
            };
            if !batch.is_empty() && bytes_total + bytes.len() > MAX_BATCH_BYTES {
                break;
            }
            match serde_json::from_slice::<EventDoc>(&bytes) {
                Ok(event) if event.seq == seq => {
                    bytes_total += bytes.len();
                    batch.push(event);
                }
                Ok(event) => {
                    let why = format!("the file holds seq {}, not {seq}", event.seq);
                    self.set_aside(seq, "corrupt", &why)?;
                    flushed.corrupt.push((name, why));
                }
                Err(e) => {
                    let why = format!("not an event: {e}");
                    self.set_aside(seq, "corrupt", &why)?;
                    flushed.corrupt.push((name, why));
                }
            }
        }
        Ok(batch)
    }

    /// Records `through` as acknowledged, durably, then deletes the sent events up to it.
    fn delete_through(&self, sent: &[EventDoc], through: u64) -> Result<u64, OutboxError> {
        let _lock = self.lock()?;
        if through > self.acked()? {
            herd_fs::write_atomic(
                &self.dir.join("acked"),
                format!("{through}\n").as_bytes(),
                PRIVATE_FILE,
            )?;
        }
        let mut deleted = 0;
        for event in sent.iter().filter(|e| e.seq <= through) {
            let path = self.dir.join(file_name(event.seq));
            match fs::remove_file(&path) {
                Ok(()) => deleted += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(OutboxError::Io { path, source }),
            }
        }
        // A deletion lost in a crash only means the event is sent again and deduplicated.
        Ok(deleted)
    }

    /// Moves event `seq` into the `sub` directory with a note saying why.
    fn set_aside(&self, seq: u64, sub: &str, why: &str) -> Result<(), OutboxError> {
        let aside = self.dir.join(sub);
        durable::create_dir(&aside, PRIVATE_DIR).map_err(|e| self.io(e))?;
        let name = file_name(seq);
        let from = self.dir.join(&name);
        fs::rename(&from, aside.join(&name))
            .map_err(|source| OutboxError::Io { path: from, source })?;
        let note = aside.join(format!("{name}.reason"));
        herd_fs::write_atomic(&note, format!("{why}\n").as_bytes(), PRIVATE_FILE)?;
        Ok(herd_fs::sync_dir(&self.dir)?)
    }
}

fn file_name(seq: u64) -> String {
    format!("{seq:0SEQ_DIGITS$}.json")
}

fn seq_of(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    if digits.len() != SEQ_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|seq| *seq > 0)
}

/// The center refused the events themselves (not who sent them, nor its own state). A batch
/// cut off while it was being sent counts as too large: that is what a center does with a
/// body over its limit, and splitting the batch is how the outbox gets past it.
fn is_malformed(err: &ClientError) -> bool {
    matches!(err, ClientError::RejectedWhileSending { .. })
        || matches!(err.code(), Some(codes::BAD_REQUEST | codes::TOO_LARGE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A center in memory: stores events by seq, refuses what the real one refuses (seqs not
    /// increasing within a batch) and what a test marks as bad, and fails on demand.
    #[derive(Default)]
    struct FakeCenter {
        stored: std::collections::BTreeMap<u64, EventDoc>,
        /// Arrival order of the events stored (first arrival only).
        arrivals: Vec<u64>,
        duplicates: u64,
        batch_sizes: Vec<usize>,
        /// Refuse any batch holding this seq as a bad request.
        poison: Option<u64>,
        /// Be unreachable for this many more calls.
        down_for: usize,
    }

    impl FakeCenter {
        fn send(&mut self, batch: &EventBatch) -> Result<EventAck, ClientError> {
            if self.down_for > 0 {
                self.down_for -= 1;
                return Err(ClientError::Unreachable {
                    server: "https://127.0.0.1:1".into(),
                    detail: "connection refused".into(),
                });
            }
            self.batch_sizes.push(batch.events.len());
            let mut previous = 0;
            for event in &batch.events {
                assert!(event.seq > previous, "events out of order in a batch");
                previous = event.seq;
                if Some(event.seq) == self.poison {
                    return Err(ClientError::Refused {
                        status: 400,
                        code: codes::BAD_REQUEST.into(),
                        message: format!("event {} is bad", event.seq),
                        problems: vec![],
                    });
                }
            }
            let mut accepted = 0;
            for event in &batch.events {
                if self.stored.insert(event.seq, event.clone()).is_none() {
                    self.arrivals.push(event.seq);
                    accepted += 1;
                } else {
                    self.duplicates += 1;
                }
            }
            Ok(EventAck {
                acked_through: self.stored.keys().next_back().copied().unwrap_or(0),
                accepted,
                duplicates: batch.events.len() as u64 - accepted,
            })
        }
    }

    fn push_numbered(outbox: &Outbox, range: std::ops::Range<u64>) {
        let events = range
            .map(|n| ("test.event".to_owned(), json!({ "n": n })))
            .collect();
        outbox.push_all(events).unwrap();
    }

    #[test]
    fn events_are_sent_in_order_in_batches_and_deleted_once_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("outbox")).unwrap();
        push_numbered(&outbox, 0..1234);
        assert_eq!(outbox.stats().unwrap().pending, 1234);
        let mut center = FakeCenter::default();
        let flushed = outbox.flush(&mut |b| center.send(b), MAX_BATCH).unwrap();
        assert_eq!(flushed.delivered, 1234);
        assert_eq!(center.batch_sizes, [500, 500, 234]);
        assert_eq!(center.arrivals, (1..=1234).collect::<Vec<_>>());
        let ns: Vec<u64> = center
            .stored
            .values()
            .map(|e| e.data["n"].as_u64().unwrap())
            .collect();
        assert_eq!(ns, (0..1234).collect::<Vec<_>>());
        let stats = outbox.stats().unwrap();
        assert_eq!(stats.pending, 0);
        assert_eq!(stats.acked_through, 1234);
        assert_eq!(stats.next_seq, 1235);
    }

    #[test]
    fn seqs_never_repeat_even_after_everything_was_sent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox");
        let outbox = Outbox::open(&path).unwrap();
        assert_eq!(outbox.push("agent.started", json!({})).unwrap(), 1);
        let mut center = FakeCenter::default();
        outbox.flush(&mut |b| center.send(b), 10).unwrap();
        drop(outbox);
        // A new process: the files are gone, the acknowledged mark is not.
        let outbox = Outbox::open(&path).unwrap();
        assert_eq!(outbox.push("agent.started", json!({})).unwrap(), 2);
    }

    #[test]
    fn an_unreachable_center_keeps_everything_for_the_next_flush() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("outbox")).unwrap();
        push_numbered(&outbox, 0..30);
        let mut center = FakeCenter {
            down_for: 1,
            ..FakeCenter::default()
        };
        let err = outbox.flush(&mut |b| center.send(b), 10).unwrap_err();
        assert!(
            matches!(&err, FlushError::Send(e) if e.is_retryable()),
            "{err}"
        );
        assert_eq!(outbox.stats().unwrap().pending, 30);
        // Events emitted while the center is down queue up behind the others.
        push_numbered(&outbox, 30..40);
        let flushed = outbox.flush(&mut |b| center.send(b), 10).unwrap();
        assert_eq!(flushed.delivered, 40);
        assert_eq!(center.arrivals, (1..=40).collect::<Vec<_>>());
    }

    #[test]
    fn a_crash_between_acknowledgement_and_deletion_only_causes_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox");
        let outbox = Outbox::open(&path).unwrap();
        push_numbered(&outbox, 0..25);
        let mut center = FakeCenter::default();
        // The center stores the first batch, then the agent "dies" before deleting it: the
        // files stay, as after a kill -9 at that moment.
        let batch = outbox.read_batch(10, &mut Flushed::default()).unwrap();
        center.send(&EventBatch { events: batch }).unwrap();
        drop(outbox);
        let outbox = Outbox::open(&path).unwrap();
        assert_eq!(outbox.stats().unwrap().pending, 25);
        let flushed = outbox.flush(&mut |b| center.send(b), 10).unwrap();
        assert_eq!(flushed.delivered, 25);
        assert_eq!(center.duplicates, 10);
        assert_eq!(center.arrivals, (1..=25).collect::<Vec<_>>());
    }

    #[test]
    fn a_malformed_event_is_set_aside_and_the_rest_flows() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("outbox")).unwrap();
        push_numbered(&outbox, 0..20);
        let mut center = FakeCenter {
            poison: Some(7),
            ..FakeCenter::default()
        };
        let flushed = outbox.flush(&mut |b| center.send(b), 20).unwrap();
        assert_eq!(flushed.delivered, 19);
        assert_eq!(flushed.refused.len(), 1);
        assert_eq!(flushed.refused[0].0, 7);
        assert!(flushed.refused[0].1.contains("event 7 is bad"));
        let expected: Vec<u64> = (1..=20).filter(|s| *s != 7).collect();
        assert_eq!(center.arrivals, expected);
        let aside = dir.path().join("outbox/refused");
        assert!(aside.join(file_name(7)).exists());
        let reason = fs::read_to_string(aside.join(format!("{}.reason", file_name(7)))).unwrap();
        assert!(reason.contains("bad_request"), "{reason}");
    }

    #[test]
    fn unreadable_files_are_set_aside_and_leftover_temporary_files_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox");
        let outbox = Outbox::open(&path).unwrap();
        push_numbered(&outbox, 0..3);
        fs::write(path.join(file_name(2)), b"{torn").unwrap();
        fs::write(path.join(".tmp-4"), b"half an event").unwrap();
        drop(outbox);
        let outbox = Outbox::open(&path).unwrap();
        assert!(!path.join(".tmp-4").exists());
        let mut center = FakeCenter::default();
        let flushed = outbox.flush(&mut |b| center.send(b), 10).unwrap();
        assert_eq!(flushed.delivered, 2);
        assert_eq!(flushed.corrupt.len(), 1);
        assert_eq!(center.arrivals, [1, 3]);
        assert!(path.join("corrupt").join(file_name(2)).exists());
    }

    #[test]
    fn an_acknowledgement_that_does_not_cover_the_batch_stops_the_flush() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("outbox")).unwrap();
        push_numbered(&outbox, 0..3);
        let err = outbox
            .flush(
                &mut |_| {
                    Ok(EventAck {
                        acked_through: 0,
                        accepted: 0,
                        duplicates: 0,
                    })
                },
                10,
            )
            .unwrap_err();
        assert!(
            matches!(err, FlushError::Unacknowledged { acked: 0, first: 1 }),
            "{err}"
        );
        assert_eq!(outbox.stats().unwrap().pending, 3);
    }

    // -- Crash safety, with real processes killed mid-write (see `crate::crash_child`). ------

    const CHILD_TEST: &str = "outbox::tests::crash_child";

    /// Not a test: the body of the child processes the crash tests start and kill.
    #[test]
    fn crash_child() {
        let Some((role, dir)) = crate::crash_child::role() else {
            return;
        };
        let outbox = Outbox::open(&dir).unwrap();
        match role.as_str() {
            // Three events pushed; the fourth written and synced, killed before its rename.
            "push-then-die" => {
                push_numbered(&outbox, 0..3);
                let event = EventDoc {
                    seq: 4,
                    at: clock::now_rfc3339(),
                    kind: "test.event".into(),
                    data: json!({ "n": 3 }),
                };
                let bytes = serde_json::to_vec(&event).unwrap();
                crate::crash_child::write_then_die(&dir.join(file_name(4)), &bytes, PRIVATE_FILE);
            }
            // Pushes events one by one, saying which seq each got, until it is killed.
            "push-forever" => {
                for n in 0u64.. {
                    let seq = outbox.push("test.event", json!({ "n": n })).unwrap();
                    crate::crash_child::say(&format!("PUSHED {seq}"));
                }
            }
            other => panic!("unknown child role {other}"),
        }
    }

    fn temporaries(dir: &Path) -> Vec<std::ffi::OsString> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|name| herd_fs::is_temporary(name))
            .collect()
    }

    #[test]
    fn an_event_killed_before_its_rename_is_never_sent_and_its_temporary_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox");
        let mut child = crate::crash_child::spawn(CHILD_TEST, "push-then-die", &path);
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(
            status.signal(),
            Some(9),
            "the child dies by SIGKILL: {status}"
        );
        assert_eq!(
            temporaries(&path).len(),
            1,
            "the crash left the fourth event's temporary"
        );

        // A process that had the outbox open before the crash ignores the temporary...
        let running = Outbox {
            dir: path.clone(),
            abort_after_ack: None,
        };
        let stats = running.stats().unwrap();
        assert_eq!((stats.pending, stats.next_seq), (3, 4));
        let mut center = FakeCenter::default();
        let flushed = running.flush(&mut |b| center.send(b), 10).unwrap();
        assert_eq!(
            flushed,
            Flushed {
                delivered: 3,
                batches: 1,
                ..Flushed::default()
            }
        );
        assert_eq!(center.arrivals, [1, 2, 3]);

        // ...and opening it removes the temporary, whose writer is dead. The unsent event's
        // seq is given again: the center never saw it.
        let outbox = Outbox::open(&path).unwrap();
        assert!(temporaries(&path).is_empty());
        assert_eq!(outbox.push("test.event", json!({ "n": 3 })).unwrap(), 4);
        outbox.flush(&mut |b| center.send(b), 10).unwrap();
        assert_eq!(center.arrivals, [1, 2, 3, 4]);
        assert_eq!(center.duplicates, 0);
    }

    #[test]
    fn a_writer_killed_at_any_moment_loses_no_completed_event_and_reorders_nothing() {
        for round in 0..3u64 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("outbox");
            let mut child = crate::crash_child::spawn(CHILD_TEST, "push-forever", &path);
            let (first, mut out) = crate::crash_child::wait_for(&mut child, "PUSHED");
            // Kill -9 at a different moment each round, most likely inside a write.
            std::thread::sleep(std::time::Duration::from_millis(5 + 10 * round));
            child.kill().unwrap();
            child.wait().unwrap();
            let mut last_reported: u64 = first
                .split("PUSHED ")
                .nth(1)
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            let mut line = String::new();
            while std::io::BufRead::read_line(&mut out, &mut line).unwrap_or(0) > 0 {
                if let Some((_, seq)) = line.trim().split_once("PUSHED ") {
                    last_reported = seq.parse().unwrap();
                }
                line.clear();
            }

            let outbox = Outbox::open(&path).unwrap();
            assert!(temporaries(&path).is_empty(), "round {round}");
            let mut center = FakeCenter::default();
            let flushed = outbox.flush(&mut |b| center.send(b), MAX_BATCH).unwrap();
            assert!(
                flushed.corrupt.is_empty(),
                "round {round}: {:?}",
                flushed.corrupt
            );
            // Every push that returned is delivered; the push in flight at the kill may be too
            // (its rename happened, its report did not); nothing after it, no gap, no repeat.
            let delivered = flushed.delivered;
            assert!(
                (last_reported..=last_reported + 1).contains(&delivered),
                "round {round}: {delivered} delivered, {last_reported} reported"
            );
            assert_eq!(center.arrivals, (1..=delivered).collect::<Vec<_>>());
            assert_eq!(center.duplicates, 0);
            for (seq, event) in &center.stored {
                assert_eq!(
                    event.data["n"],
                    json!(seq - 1),
                    "round {round}: event order"
                );
            }
        }
    }

    #[test]
    fn file_names_sort_as_numbers() {
        assert_eq!(file_name(42), "00000000000000000042.json");
        assert_eq!(seq_of(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(seq_of("00000000000000000000.json"), None);
        assert_eq!(seq_of("42.json"), None);
        assert_eq!(seq_of(".tmp-42"), None);
        assert_eq!(seq_of("acked"), None);
    }
}
