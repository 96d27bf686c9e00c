-- Analysts' body signatures in Herd's own set (issue 13): ClamAV .ndb and .ldb lines and YARA
-- files, each checked with the scan engine's parser before it is stored. The center writes
-- them, sorted by name, as herd.ndb, herd.ldb and herd.yar beside the .hsb of exact hashes in
-- TUF's `herd` role; removing a row retracts the signature the same way.
CREATE TABLE herd_body_signatures (
    -- The signature's name (an .ndb/.ldb line's first field), or the name a YARA file was
    -- added under; unique across formats, so `herd signatures remove NAME` is unambiguous.
    name TEXT PRIMARY KEY,
    format TEXT NOT NULL CHECK (format IN ('ndb', 'ldb', 'yar')),
    -- The line as written into the set (no line break), or the YARA file's text.
    body TEXT NOT NULL,
    -- The role that added it: 'analyst' or 'operator'.
    added_by TEXT NOT NULL,
    added_at INTEGER NOT NULL
);
