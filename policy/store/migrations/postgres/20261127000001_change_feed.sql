-- The change feed: every change to what gateways cache is announced on the channel
-- `gatehouse_changes`, whoever makes it (a gateway, the CLI, psql). NOTIFY is
-- transactional: listeners hear of a change only once it commits, and identical payloads
-- within one transaction are delivered once. Payloads (parsed by src/feed.rs):
--   apps:<slug>  users:<username>  sessions:<id_hash>  signing_keys  resync
-- `resync` (TRUNCATE, or a key too long for a payload) means "reload everything".

CREATE FUNCTION gatehouse_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_key text;
    new_key text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('gatehouse_changes', 'resync');
        RETURN NULL;
    END IF;
    IF TG_LEVEL = 'STATEMENT' THEN
        PERFORM pg_notify('gatehouse_changes', TG_TABLE_NAME);
        RETURN NULL;
    END IF;
    -- TG_ARGV[0] names the key column.
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        old_key := to_jsonb(OLD) ->> TG_ARGV[0];
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        new_key := to_jsonb(NEW) ->> TG_ARGV[0];
    END IF;
    -- A renamed key (possible from psql) announces both names.
    IF old_key IS NOT NULL AND old_key IS DISTINCT FROM new_key THEN
        PERFORM gatehouse_notify_key(TG_TABLE_NAME, old_key);
    END IF;
    IF new_key IS NOT NULL THEN
        PERFORM gatehouse_notify_key(TG_TABLE_NAME, new_key);
    END IF;
    RETURN NULL;
END
$$;

-- NOTIFY payloads must stay under 8000 bytes; a longer key is announced as `resync`.
CREATE FUNCTION gatehouse_notify_key(table_name text, key text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    payload text := table_name || ':' || key;
BEGIN
    IF octet_length(payload) > 7900 THEN
        payload := 'resync';
    END IF;
    PERFORM pg_notify('gatehouse_changes', payload);
END
$$;

CREATE TRIGGER apps_changed AFTER INSERT OR UPDATE OR DELETE ON apps
    FOR EACH ROW EXECUTE FUNCTION gatehouse_notify_change('slug');
CREATE TRIGGER users_changed AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION gatehouse_notify_change('username');
-- Sessions: only what caches must drop. last_seen updates (every request, now and then)
-- and new sessions are not announced.
CREATE TRIGGER sessions_deleted AFTER DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION gatehouse_notify_change('id_hash');
CREATE TRIGGER sessions_regrouped AFTER UPDATE OF groups_json, admin ON sessions
    FOR EACH ROW EXECUTE FUNCTION gatehouse_notify_change('id_hash');
CREATE TRIGGER signing_keys_changed AFTER INSERT OR UPDATE OR DELETE ON signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_notify_change();
CREATE TRIGGER gatehouse_truncated AFTER TRUNCATE ON apps
    FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_notify_change();
CREATE TRIGGER gatehouse_truncated AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_notify_change();
CREATE TRIGGER gatehouse_truncated AFTER TRUNCATE ON sessions
    FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_notify_change();
CREATE TRIGGER gatehouse_truncated AFTER TRUNCATE ON signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_notify_change();
