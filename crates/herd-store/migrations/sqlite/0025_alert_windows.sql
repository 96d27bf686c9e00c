-- Alert throttling shared by the center processes of one database (issue 13): each rule's
-- current window (the pure throttle's state as JSON) and a version that every write moves, so
-- a process writes only over the window it read and two processes never both send a summary
-- or a digest.
CREATE TABLE alert_windows (
    rule TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    state TEXT NOT NULL
);
