-- A site renews its certificate over mutual TLS (issue 12): the certificate it renewed from
-- stays able to renew once more, so a site whose renewal answer was lost can ask again; an
-- operator may ask a site to renew at its next pull (a forced rotation).
ALTER TABLE sites ADD COLUMN previous_cert_sha256 TEXT;
ALTER TABLE sites ADD COLUMN renew_requested_at BIGINT;
