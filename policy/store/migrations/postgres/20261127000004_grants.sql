-- Grants beside an app's allow-lists: one user or group, optionally until a time. An
-- expired grant stays (shown as expired) until an admin removes it. A change announces
-- `grants:<app>`, which gateways treat as a change of that app.
CREATE TABLE grants (
    app        TEXT   NOT NULL,
    kind       TEXT   NOT NULL CHECK (kind IN ('user', 'group')),
    name       TEXT   NOT NULL,
    expires_at BIGINT,
    created_by TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (app, kind, name)
);
CREATE TRIGGER grants_changed AFTER INSERT OR UPDATE OR DELETE ON grants
    FOR EACH ROW EXECUTE FUNCTION gatehouse_notify_change('app');
