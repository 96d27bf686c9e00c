-- Who may say what about a threat, and what counts before an operator has looked.
-- A threat belongs to the vendor whose feed declared it first; other vendors' feeds may state
-- coverage for it but not change its name, danger or discovery date. `status` is `approved`,
-- `pending` (declared while the center requires approval: not planned against) or `rejected`.
CREATE TABLE threat_owners (
    threat TEXT PRIMARY KEY,
    vendor TEXT NOT NULL,
    status TEXT NOT NULL,
    declared_at INTEGER NOT NULL
);

-- Vendors seen publishing, with the same statuses: a pending or rejected vendor's feed is
-- stored but does not count in the merged catalog.
CREATE TABLE vendor_approvals (
    vendor TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    first_published_at INTEGER NOT NULL
);

-- Feeds published before this migration were accepted: their vendors are approved, and each
-- threat belongs to the first vendor (in vendor order) whose feed lists it, which is the
-- description the merge kept first until now.
INSERT INTO vendor_approvals (vendor, status, first_published_at)
SELECT vendor, 'approved', published_at FROM feeds;
INSERT INTO threat_owners (threat, vendor, status, declared_at)
SELECT t.value ->> 'id', f.vendor, 'approved', f.published_at
FROM feeds AS f, json_each(f.doc, '$.threats') AS t
WHERE true
ORDER BY f.vendor
ON CONFLICT (threat) DO NOTHING;

-- Packages by uploader, for the per-vendor storage quota.
CREATE INDEX packages_by_vendor ON packages (vendor);
