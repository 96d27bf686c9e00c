-- Alerts and the vendor feeds the center polls (SPEC §3.6; seed 000 claim 3).

-- The durable queue of alert deliveries: one row per (alert, channel). A row is due while it is
-- neither delivered nor given up and its next_attempt_at has come; a process claims it by
-- moving next_attempt_at (a lease), so two processes do not send it at once.
CREATE TABLE alert_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    text TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    delivered_at INTEGER,
    failed_at INTEGER,
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
    interval_secs INTEGER NOT NULL,
    registered_at INTEGER NOT NULL,
    etag TEXT,
    last_modified TEXT,
    last_polled_at INTEGER,
    last_status TEXT
);
