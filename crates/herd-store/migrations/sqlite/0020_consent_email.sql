-- Consent by e-mail (SPEC §3.1.6, seed 002 ¶0080): where a terminal's user is written to, the
-- consent requests the center mailed with their signed accept and decline links, and the
-- address a queued e-mail goes to when it is not the channel's own.

-- The address consent notices for a terminal's user go to, set by an operator
-- (`herd terminals set-email`). Apart from `terminals` so that a terminal row stays narrow on
-- the check-in path; removed with its terminal.
CREATE TABLE terminal_contacts (
    terminal TEXT PRIMARY KEY REFERENCES terminals (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    set_at INTEGER NOT NULL
);

-- One request per (terminal, plan): the question the agent asked, mailed once. The links carry
-- the id, the answer and the expiry under the center's MAC; the row decides once (decision is
-- set only while it is NULL), so a link works once and the first answer, by e-mail or on the
-- device, wins.
CREATE TABLE consent_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    terminal TEXT NOT NULL REFERENCES terminals (id) ON DELETE CASCADE,
    plan_id TEXT NOT NULL,
    change TEXT NOT NULL,
    email TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    decision TEXT CHECK (decision IN ('accepted', 'declined')),
    decided_at INTEGER,
    -- 'email' or 'device'.
    decided_by TEXT,
    UNIQUE (terminal, plan_id)
);

-- A delivery to someone other than the channel's recipients (a consent notice to a terminal's
-- user): the e-mail channel sends it to this address only.
ALTER TABLE alert_deliveries ADD COLUMN recipient TEXT;
