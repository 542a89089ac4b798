-- Requests for access to an app, from its 403 page; decided by the app's admins. One
-- request per app and person: asking again updates it.
CREATE TABLE access_requests (
    app         TEXT   NOT NULL,
    username    TEXT   NOT NULL,
    reason      TEXT   NOT NULL DEFAULT '',
    groups_json TEXT   NOT NULL DEFAULT '[]',
    status      TEXT   NOT NULL CHECK (status IN ('pending', 'approved', 'declined')),
    created_at  BIGINT NOT NULL,
    decided_by  TEXT,
    decided_at  BIGINT,
    PRIMARY KEY (app, username)
);
CREATE INDEX access_requests_status ON access_requests (status, created_at);
