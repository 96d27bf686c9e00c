-- Alerts, the vendor feeds the center polls, and messages (SPEC §3.6; seed 000 claim 3; seed 001 ¶0044).

-- The durable queue of alert deliveries: one row per (alert, channel). A row is due while it is
-- neither delivered nor given up and its next_attempt_at has come; a process claims it by
-- moving next_attempt_at (a lease), so two processes do not send it at once.
CREATE TABLE alert_deliveries (
    id BIGSERIAL PRIMARY KEY,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    text TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    delivered_at BIGINT,
    failed_at BIGINT,
    last_error TEXT
);
CREATE INDEX alert_deliveries_due ON alert_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;

-- Vendor feeds the center fetches itself (seed 000 claim 3): one URL per vendor, polled every
-- interval_secs with the validators of the last answer (ETag, Last-Modified), so an unchanged
-- feed costs a 304.
CREATE TABLE feed_sources (
    vendor TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    interval_secs BIGINT NOT NULL,
    registered_at BIGINT NOT NULL,
    etag TEXT,
    last_modified TEXT,
    last_polled_at BIGINT,
    last_status TEXT
);

-- Messages between operators and device users (seed 001 ¶0044): audience 'all', 'group'
-- (target: the group), 'terminal' (target: the terminal), or 'center' (a terminal's answer or
-- status; target: the terminal). site: the site of the terminal a message is to or from, so a
-- per-site thread keeps the center-site record.
CREATE TABLE messages (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    sender TEXT NOT NULL,
    audience TEXT NOT NULL CHECK (audience IN ('all', 'group', 'terminal', 'center')),
    target TEXT NOT NULL,
    site TEXT,
    body TEXT NOT NULL,
    reply_to BIGINT
);
CREATE INDEX messages_audience ON messages (audience, target, id);
