-- The CA can be replaced while the center runs: an online intermediate under an offline root,
-- rotated; its key sealed under the operator's key-encryption key in place of the plain text.
-- trust_pem: the anchors clients verify against when the issuing CA is an intermediate (NULL:
-- the CA is its own anchor). generation: bumped by every replacement, so each center process
-- notices and reloads the CA.
ALTER TABLE ca ADD COLUMN trust_pem TEXT;
ALTER TABLE ca ADD COLUMN generation BIGINT NOT NULL DEFAULT 1;
