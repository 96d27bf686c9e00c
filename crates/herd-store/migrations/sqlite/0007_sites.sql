-- Site servers (SPEC §2, §3.5): the center's side (sites, the tokens they enrol with, which
-- site each terminal came through) and a site's own side (its queue to the center).

-- An enrolment token is for a terminal or for a site; a site token enrols exactly one site.
ALTER TABLE enrol_tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'terminal'
    CHECK (kind IN ('terminal', 'site'));

-- Sites enrolled with this center. relay_applied: the highest queue seq of the site the
-- center applied (a replayed item at or below it is acknowledged, not applied again).
CREATE TABLE sites (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    cert_sha256 TEXT NOT NULL,
    enrolled_at INTEGER NOT NULL,
    last_contact INTEGER,
    relay_applied INTEGER NOT NULL DEFAULT 0,
    status TEXT,
    pushed_at INTEGER
);

-- The site a terminal enrolled through (NULL: directly with the center). A site acts only for
-- its own terminals.
ALTER TABLE terminals ADD COLUMN site TEXT;

-- Every site that has served a terminal (enrolled it, or adopted it when it failed over there):
-- each may relay what the terminal reported through it, including what it queued before the
-- terminal moved on.
CREATE TABLE site_terminals (
    site TEXT NOT NULL,
    terminal TEXT NOT NULL REFERENCES terminals (id) ON DELETE CASCADE,
    PRIMARY KEY (site, terminal)
);

-- On a site: what it must send to the center, in order. A check-in is state, so a terminal has
-- at most one check-in waiting (checkin_of, unique, replaced by the newer one); events are
-- kept each, in order.
CREATE TABLE site_queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    terminal TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    checkin_of TEXT UNIQUE
);
