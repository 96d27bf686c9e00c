//! Fuzz target: the metadata parser and the client's checks on whatever a mirror sends.
//! The input is split at NUL bytes into a root, a timestamp, a snapshot, a targets document
//! and a delegated role; each is offered to a trusted set in TUF's order, as an agent does
//! with what its upstream serves. Nothing may panic, whatever the bytes.
#![no_main]

use herd_core::Timestamp;
use herd_tuf::TrustedSet;
use herd_tuf::metadata::{Envelope, Root, Snapshot, Targets, TimestampRole};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0);
    let root = parts.next().unwrap_or_default();
    let timestamp = parts.next().unwrap_or_default();
    let snapshot = parts.next().unwrap_or_default();
    let targets = parts.next().unwrap_or_default();
    let delegated = parts.next().unwrap_or_default();
    // Every document type on every part: the parser alone.
    for part in [root, timestamp, snapshot, targets, delegated] {
        let _ = Envelope::<Root>::parse("root", part);
        let _ = Envelope::<TimestampRole>::parse("timestamp", part);
        let _ = Envelope::<Snapshot>::parse("snapshot", part);
        let _ = Envelope::<Targets>::parse("targets", part);
    }
    // The client's workflow on them.
    let now = Timestamp::from_unix_seconds(1_800_000_000);
    let Ok(mut set) = TrustedSet::new(root, now) else { return };
    let _ = set.update_root(timestamp);
    if set.root_update_finished().is_err() {
        return;
    }
    if set.update_timestamp(timestamp, None).is_err() {
        return;
    }
    if set.update_snapshot(snapshot, None).is_err() {
        return;
    }
    if set.update_targets(targets).is_err() {
        return;
    }
    let _ = set.update_delegated("vendor-fuzz", "targets", delegated);
    let _ = set.find_target("packages/fuzz/product/1.0/linux.archive");
});
