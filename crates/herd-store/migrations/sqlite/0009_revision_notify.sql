-- Nothing on SQLite: one center process owns an embedded database, so no other process needs
-- waking when a revision moves (PostgreSQL's 0009 adds the notification triggers). Kept so both
-- backends number their migrations alike.
SELECT 1;
