-- The web console (SPEC §3.6): sign-in sessions, one-time sign-in links, and the token roles
-- the console distinguishes (a viewer reads; an analyst judges samples).

ALTER TABLE api_tokens DROP CONSTRAINT IF EXISTS api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('operator', 'vendor', 'analyst', 'viewer'));

-- A signed-in browser: stored by the SHA-256 of its cookie's secret, bound to the API token it
-- was opened with (its role is the token's, read at every request, so revoking the token ends
-- the session). csrf: the token every form of the session carries.
CREATE TABLE console_sessions (
    hash TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL,
    label TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);
CREATE INDEX console_sessions_by_last_seen ON console_sessions (last_seen);

-- A one-time sign-in link (`herd console link`): stored by the SHA-256 of its secret; used_at
-- is set by the one request that takes it.
CREATE TABLE console_links (
    hash TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL,
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);

-- The console's chart of plan reports by hour reads reports by when they arrived.
CREATE INDEX events_plan_reports_by_arrival ON events (received_at) WHERE kind = 'plan.report';
