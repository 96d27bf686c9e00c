-- Herd's own threats (issue 13, SPEC §3.2.5): a malicious verdict makes its file a threat of
-- the catalog, covered by Herd's own set since the signature's release. One row per threat id
-- (the verdict's threat, a catalog threat the detection named, or herd-<first 16 hex digits>);
-- its files are the herd_signatures rows naming it. The center writes the catalog document of
-- these threats as the feed 'herd:immunity' (see herd_proto::merge::HERD_FEED_VENDOR).
CREATE TABLE herd_threats (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    -- low, medium, high or critical.
    danger TEXT NOT NULL,
    -- When Herd first saw it (unix seconds): its discovery date unless a vendor's is earlier.
    first_seen BIGINT NOT NULL
);
