-- The latest verdict a person gave on a file (issue 16: the console's samples awaiting a
-- verdict). A malicious verdict also stands as the file's row in herd_signatures; a benign one
-- leaves nothing there, so without this record a sample judged benign would look unjudged.
CREATE TABLE file_verdicts (
    sha256 TEXT PRIMARY KEY,
    -- 'malicious' or 'benign'.
    verdict TEXT NOT NULL CHECK (verdict IN ('malicious', 'benign')),
    -- Who judged it: 'operator' or 'analyst'.
    judged_by TEXT NOT NULL,
    judged_at BIGINT NOT NULL
);
