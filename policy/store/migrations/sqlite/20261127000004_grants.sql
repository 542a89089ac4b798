-- Grants beside an app's allow-lists: one user or group, optionally until a time. An
-- expired grant stays (shown as expired) until an admin removes it.
CREATE TABLE grants (
    app        TEXT   NOT NULL,
    kind       TEXT   NOT NULL CHECK (kind IN ('user', 'group')),
    name       TEXT   NOT NULL,
    expires_at BIGINT,
    created_by TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (app, kind, name)
);
