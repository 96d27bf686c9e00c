-- Center processes sharing this database LISTEN on the channel herd_revisions
-- (herd_store::REVISIONS_CHANNEL) and re-read the revisions as soon as a transaction that moves
-- one commits, instead of polling every second. The notification is sent by triggers, so every
-- transaction that bumps a revision notifies (in the same transaction: PostgreSQL delivers it on
-- commit, and never for a rolled-back one), including those later migrations add: a revision is
-- an UPDATE of revisions, a terminal change an INSERT into terminal_changes, a CA change an
-- INSERT or UPDATE of ca. Identical notifications of one transaction are delivered once.
CREATE FUNCTION herd_notify_revisions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('herd_revisions', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER herd_revisions_notify AFTER INSERT OR UPDATE ON revisions
    FOR EACH STATEMENT EXECUTE FUNCTION herd_notify_revisions();
CREATE TRIGGER herd_terminal_changes_notify AFTER INSERT ON terminal_changes
    FOR EACH STATEMENT EXECUTE FUNCTION herd_notify_revisions();
CREATE TRIGGER herd_ca_notify AFTER INSERT OR UPDATE ON ca
    FOR EACH STATEMENT EXECUTE FUNCTION herd_notify_revisions();
