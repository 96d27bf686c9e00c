-- The center as a TUF repository (SPEC §3.4). Everything center processes must agree on to
-- serve and sign the same repository lives here; tuf (on revisions) is bumped by every change
-- of it, so each process follows.

ALTER TABLE revisions ADD COLUMN tuf INTEGER NOT NULL DEFAULT 0;

-- Signed metadata as served under /tuf/metadata/, byte for byte: every root version (never
-- pruned: a client walks the chain from the root it holds), and the last few versions of the
-- other roles (a client that read one timestamp may still fetch the snapshot it names).
CREATE TABLE tuf_metadata (
    role TEXT NOT NULL,
    version INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (role, version)
);

-- The online keys (timestamp, snapshot, targets): the private key sealed under the CA's
-- key-encryption key, bound to the public key. pending: generated for a root not installed yet.
CREATE TABLE tuf_online_keys (
    keyid TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('timestamp', 'snapshot', 'targets')),
    public TEXT NOT NULL,
    sealed TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'pending')),
    created_at INTEGER NOT NULL
);

-- A vendor's own ed25519 key: its role vendor-<vendor> is delegated to it, and only documents
-- it signed are served for it.
CREATE TABLE tuf_vendor_keys (
    vendor TEXT PRIMARY KEY,
    keyid TEXT NOT NULL,
    public TEXT NOT NULL,
    registered_at INTEGER NOT NULL
);

-- The latest role document a vendor signed and uploaded (checked before it got here).
CREATE TABLE tuf_vendor_roles (
    vendor TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    doc TEXT NOT NULL,
    uploaded_at INTEGER NOT NULL
);

-- An archive package's uncompressed tar (its SHA-256 and length), which the signed metadata
-- names for deltas: computed once per blob.
ALTER TABLE packages ADD COLUMN content_sha256 TEXT;
ALTER TABLE packages ADD COLUMN content_length INTEGER;
