-- Fault recovery (SPEC §3.3, seed 002 S11–S20). A fault report (a terminal's `fault.report`
-- event) is stored once per (terminal, seq) in `faults` with the center's verdict, and counted
-- in its bucket: faults with the same signature (program, version, kind, exit status or
-- signal, normalised top frames) share a bucket, whose id is a prefix of the signature's
-- SHA-256. `decision` is the verdict's (known, replace, use_alternative, escalated), the
-- bucket's that of its latest fault. The fault database's rules and the replacement table are
-- stored as their validated JSON documents (herd-proto's `fault` module), matched by the
-- center; report and verdict are JSON text.
CREATE TABLE fault_buckets (
    id TEXT PRIMARY KEY,
    program TEXT NOT NULL,
    version TEXT NOT NULL,
    kind TEXT NOT NULL,
    signature TEXT NOT NULL,
    faults INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    decision TEXT NOT NULL,
    -- When a fault of the bucket was first escalated (no rule, no alternative); NULL if never.
    escalated_at INTEGER
) WITHOUT ROWID;

CREATE TABLE faults (
    terminal TEXT NOT NULL REFERENCES terminals (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    bucket TEXT NOT NULL REFERENCES fault_buckets (id),
    decision TEXT NOT NULL,
    report TEXT NOT NULL,
    verdict TEXT NOT NULL,
    PRIMARY KEY (terminal, seq)
) WITHOUT ROWID;
CREATE INDEX faults_by_bucket ON faults (bucket, at);

CREATE TABLE fault_rules (
    id TEXT PRIMARY KEY,
    doc TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE replacements (
    program TEXT NOT NULL,
    platform TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (program, platform)
) WITHOUT ROWID;
