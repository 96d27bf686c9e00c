-- The center's schema on PostgreSQL. Times are Unix seconds; JSON parts are stored as text, byte
-- for byte as the center wrote them (feed digests and plan field order depend on it).

-- The CA, created once by whichever center process starts first.
CREATE TABLE ca (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    cert_pem TEXT NOT NULL,
    key_pem TEXT NOT NULL
);

-- One row: counters bumped by every change of their kind.
CREATE TABLE revisions (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    catalog BIGINT NOT NULL,
    config BIGINT NOT NULL
);
INSERT INTO revisions (id, catalog, config) VALUES (1, 0, 0);

CREATE TABLE feeds (
    vendor TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    published_at BIGINT NOT NULL
);

CREATE TABLE packages (
    sha256 TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    vendor TEXT,
    uploaded_at BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    hash TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('operator', 'vendor')),
    vendor TEXT,
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE enrol_tokens (
    hash TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    uses_left BIGINT NOT NULL CHECK (uses_left >= 0),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
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

-- Updated at every check-in: room left in each page so those updates stay HOT (no index
-- changes) when neither the group nor the plan action moves.
CREATE TABLE terminals (
    id TEXT PRIMARY KEY,
    group_id TEXT NOT NULL REFERENCES groups (id),
    last_checkin BIGINT,
    last_address TEXT,
    agent_version TEXT,
    plan_id TEXT,
    plan_action TEXT,
    plan_uncovered BIGINT NOT NULL DEFAULT 0,
    planned_at BIGINT,
    enrolled_at BIGINT NOT NULL,
    cert_sha256 TEXT NOT NULL,
    user_name TEXT,
    tz TEXT,
    hardware TEXT NOT NULL,
    installed TEXT,
    plan TEXT,
    last_report TEXT
) WITH (fillfactor = 70);
-- Listing by group or by plan action, in id order (keyset paging).
CREATE INDEX terminals_by_group ON terminals (group_id, id);
CREATE INDEX terminals_by_action ON terminals (plan_action, id);

-- The network map: every address a terminal was seen at.
CREATE TABLE terminal_addresses (
    terminal TEXT NOT NULL REFERENCES terminals (id) ON DELETE CASCADE,
    address TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    checkins BIGINT NOT NULL,
    PRIMARY KEY (terminal, address)
);

CREATE TABLE events (
    terminal TEXT NOT NULL REFERENCES terminals (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (terminal, seq)
);
-- A terminal's latest plan report without walking its other events.
CREATE INDEX events_plan_reports ON events (terminal, seq) WHERE kind = 'plan.report';
