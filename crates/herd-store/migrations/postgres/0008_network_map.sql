-- The network map (seed 001 claim 7, ¶0018): the interfaces a terminal's agent reported, each
-- (interface, MAC, address) seen once as a row, so a DHCP or PPP address change shows as a new
-- row beside the old one. Written only when the reported set changes (the agent sends it only
-- then); `current` marks the rows of the latest set, whose last_seen is the time it was
-- reported (the terminal's last check-in says it still holds). mac and address are '' when the
-- interface has none.
CREATE TABLE terminal_interfaces (
    terminal TEXT NOT NULL REFERENCES terminals (id) ON DELETE CASCADE,
    interface TEXT NOT NULL,
    mac TEXT NOT NULL,
    address TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    -- 1 or 0 (an integer, as on SQLite, so both backends bind it the same way).
    current BIGINT NOT NULL,
    PRIMARY KEY (terminal, interface, mac, address)
);
