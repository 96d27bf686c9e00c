-- Revisions a center process can keep its caches by, one per kind of cached thing. `config`
-- was bumped by group and rule changes and by terminal deletions alike, so any of them dropped
-- every cache; it becomes `groups` (groups and placement rules only; its value carries on, a
-- revision only has to grow), and terminals get a change log of their own.
ALTER TABLE revisions RENAME COLUMN config TO groups;

-- One row per change of a terminal's identity (enrolled, deleted), appended in the same
-- transaction: a center process evicts exactly the terminals named after the last id it saw.
-- AUTOINCREMENT so an id is never reused, even should old rows be pruned.
CREATE TABLE terminal_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    terminal TEXT NOT NULL
);
