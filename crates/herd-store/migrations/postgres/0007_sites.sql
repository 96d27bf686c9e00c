-- Site servers (SPEC §2, §3.5): the center's side (sites, the tokens they enrol with, which
-- site each terminal came through) and a site's own side (its queue to the center).

ALTER TABLE enrol_tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'terminal'
    CHECK (kind IN ('terminal', 'site'));

CREATE TABLE sites (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    cert_sha256 TEXT NOT NULL,
    enrolled_at BIGINT NOT NULL,
    last_contact BIGINT,
    relay_applied BIGINT NOT NULL DEFAULT 0,
    status TEXT,
    pushed_at BIGINT
);

ALTER TABLE terminals ADD COLUMN site TEXT;

-- Every site that has served a terminal (enrolled it, or adopted it when it failed over there):
-- each may relay what the terminal reported through it, including what it queued before the
-- terminal moved on.
CREATE TABLE site_terminals (
    site TEXT NOT NULL,
    terminal TEXT NOT NULL REFERENCES terminals (id) ON DELETE CASCADE,
    PRIMARY KEY (site, terminal)
);

-- Sites run on SQLite; the table exists here so that both schemas stay one.
CREATE TABLE site_queue (
    seq BIGSERIAL PRIMARY KEY,
    terminal TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    checkin_of TEXT UNIQUE
);
