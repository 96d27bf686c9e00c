-- Identity lifecycle. A re-enrolment token is bound to one terminal: only that terminal may
-- enrol with it, keeping its id and history while its certificate is replaced.
ALTER TABLE enrol_tokens ADD COLUMN reenrol_terminal TEXT;

-- The certificate a terminal renewed from last: still accepted (TLS refuses it once it has
-- expired) so that a terminal whose renewal answer was lost can renew again with it. One per
-- terminal: a renewal replaces it, so no older certificate is ever accepted.
CREATE TABLE terminal_previous_certs (
    terminal TEXT PRIMARY KEY REFERENCES terminals (id) ON DELETE CASCADE,
    cert_sha256 TEXT NOT NULL
);
