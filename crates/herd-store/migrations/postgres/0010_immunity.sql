-- Herd's own signature set (issue 13, SPEC §3.2): exact-hash signatures published by a
-- malicious verdict (an analyst's, or an automatic rule's: cross-vendor immunity, the same
-- suspicious hash from N terminals) and removed by a benign one. The center builds the set's
-- .hsb file from these rows, sorted by sha256, and lists it in TUF's `herd` role.
CREATE TABLE herd_signatures (
    sha256 TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    -- The signature name agents report (Herd.Immunity.<threat or hash prefix>).
    name TEXT NOT NULL,
    -- The catalog threat it stands for ('' when none was named).
    threat TEXT NOT NULL,
    -- Who or what judged it: 'analyst:<token label>', 'rule:cross-vendor', 'rule:uploads'.
    source TEXT NOT NULL,
    -- The terminal and signature whose detection led to it ('' for a manual verdict).
    first_terminal TEXT NOT NULL,
    first_signature TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Suspicious-only detections (a signature that marks a file suspicious, not infected), one row
-- per (file, terminal): the automatic rule "the same suspicious hash from N distinct terminals"
-- counts them.
CREATE TABLE herd_suspects (
    sha256 TEXT NOT NULL,
    terminal TEXT NOT NULL,
    size BIGINT NOT NULL,
    signature TEXT NOT NULL,
    seen_at BIGINT NOT NULL,
    PRIMARY KEY (sha256, terminal)
);

-- The sample store's index (the neutralised bytes are files in <data-dir>/samples/): one row
-- per file, by SHA-256 of its original bytes, kept once whoever sends it again.
CREATE TABLE samples (
    sha256 TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    reason TEXT NOT NULL,
    path TEXT NOT NULL,
    first_terminal TEXT NOT NULL,
    received_at BIGINT NOT NULL
);
