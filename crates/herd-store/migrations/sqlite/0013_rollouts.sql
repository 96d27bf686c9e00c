-- Rollout rings (SPEC §3.4): one row per release under rollout, keyed by `vendor/product/version`.
-- `phase` is rolling, paused, complete or reverted; `ring` indexes the center's configured rings
-- and `ring_started` is when the release reached it. The counters are what the rollout has seen
-- (successful and failed installs, faults attributed, terminals gone silent), incremented in
-- place; `version` is bumped by every transition, which is written only if it is still the
-- version the writer read, so two center processes never both promote or halt a rollout.
CREATE TABLE rollouts (
    release TEXT PRIMARY KEY,
    product TEXT NOT NULL,
    version TEXT NOT NULL,
    seq INTEGER NOT NULL,
    phase TEXT NOT NULL,
    ring INTEGER NOT NULL,
    ring_started INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    reason TEXT,
    succeeded INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    faults INTEGER NOT NULL DEFAULT 0,
    silent INTEGER NOT NULL DEFAULT 0,
    row_version INTEGER NOT NULL DEFAULT 1
) WITHOUT ROWID;
