-- The center's schema on SQLite. Times are Unix seconds; JSON parts are stored as text, byte
-- for byte as the center wrote them (feed digests and plan field order depend on it).

-- The CA, created once by whichever center process starts first.
CREATE TABLE ca (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    cert_pem TEXT NOT NULL,
    key_pem TEXT NOT NULL
);

-- One row: counters bumped by every change of their kind.
CREATE TABLE revisions (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    catalog INTEGER NOT NULL,
    config INTEGER NOT NULL
);
INSERT INTO revisions (id, catalog, config) VALUES (1, 0, 0);

CREATE TABLE feeds (
    vendor TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    published_at INTEGER NOT NULL
);

CREATE TABLE packages (
    sha256 TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    vendor TEXT,
    uploaded_at INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    hash TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('operator', 'vendor')),
    vendor TEXT,
    label TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE enrol_tokens (
    hash TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    uses_left INTEGER NOT NULL CHECK (uses_left >= 0),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE groups (
    id TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    policy TEXT NOT NULL
);
INSERT INTO groups (id, description, policy) VALUES (
    'unknown',
    'Terminals that no placement rule placed',
    '{"apply":"latest-any-vendor","min_danger":"low","consent":"auto","window":null}'
);

-- Placement rules in evaluation order.
CREATE TABLE rules (
    position INTEGER PRIMARY KEY,
    group_id TEXT NOT NULL REFERENCES groups (id),
    rule TEXT NOT NULL
);
CREATE INDEX rules_by_group ON rules (group_id);

-- A terminal is two rows. This one holds what check-ins change and stays narrow (about 200
-- bytes), so a batch of check-ins dirties few pages; the documents live in terminal_docs and
-- are rewritten only when their digest here changes.
CREATE TABLE terminals (
    id TEXT PRIMARY KEY,
    group_id TEXT NOT NULL REFERENCES groups (id),
    last_checkin INTEGER,
    last_address TEXT,
    -- Check-ins from last_address not yet added to its terminal_addresses row: they are added
    -- when the terminal's address changes, and the network map is read as the sum of both.
    address_checkins INTEGER NOT NULL DEFAULT 0,
    address_first INTEGER,
    address_last INTEGER,
    agent_version TEXT,
    tz TEXT,
    -- 64-bit FNV-1a digests of terminal_docs.installed and .hardware as last written.
    installed_digest INTEGER,
    hardware_digest INTEGER,
    plan_id TEXT,
    plan_action TEXT,
    plan_uncovered INTEGER NOT NULL DEFAULT 0,
    planned_at INTEGER
) WITHOUT ROWID;
-- Listing by group or by plan action, in id order (keyset paging).
CREATE INDEX terminals_by_group ON terminals (group_id, id);
CREATE INDEX terminals_by_action ON terminals (plan_action, id);

CREATE TABLE terminal_docs (
    id TEXT PRIMARY KEY REFERENCES terminals (id) ON DELETE CASCADE,
    enrolled_at INTEGER NOT NULL,
    cert_sha256 TEXT NOT NULL,
    user_name TEXT,
    hardware TEXT NOT NULL,
    installed TEXT,
    plan TEXT,
    last_report TEXT
);

-- The network map: every address a terminal was seen at (see terminals.address_checkins).
CREATE TABLE terminal_addresses (
    terminal TEXT NOT NULL REFERENCES terminals (id) ON DELETE CASCADE,
    address TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    checkins INTEGER NOT NULL,
    PRIMARY KEY (terminal, address)
) WITHOUT ROWID;

CREATE TABLE events (
    terminal TEXT NOT NULL REFERENCES terminals (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (terminal, seq)
);
-- A terminal's latest plan report without walking its other events.
CREATE INDEX events_plan_reports ON events (terminal, seq) WHERE kind = 'plan.report';
