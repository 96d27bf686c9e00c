-- Revisions a center process can keep its caches by, one per kind of cached thing. `config`
-- was bumped by group and rule changes and by terminal deletions alike, so any of them dropped
-- every cache; it becomes `groups` (groups and placement rules only; its value carries on, a
-- revision only has to grow), and terminals get a change log of their own.
ALTER TABLE revisions RENAME COLUMN config TO groups;

-- One row per change of a terminal's identity (enrolled, deleted), appended in the same
-- transaction: a center process evicts exactly the terminals named after the last id it saw.
-- Writers take this table's lock first (see `LOCK_TERMINAL_CHANGES` in postgres.rs), so ids
-- become visible in id order and a reader never skips one still uncommitted.
CREATE TABLE terminal_changes (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    terminal TEXT NOT NULL
);
