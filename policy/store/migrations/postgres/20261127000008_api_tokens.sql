-- API tokens for the JSON admin API. Only the SHA-256 of the secret is kept (the secret is
-- shown once, at creation). A revoked token keeps its row (shown as revoked) and is
-- refused from the next request: the gateway looks the hash up on every API call, so no
-- change notification is needed. `scope` is `admin` or `app:<slug>`.
CREATE TABLE api_tokens (
    id           TEXT   PRIMARY KEY,
    name         TEXT   NOT NULL,
    scope        TEXT   NOT NULL,
    secret_hash  TEXT   NOT NULL UNIQUE,
    created_by   TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    last_used_at BIGINT,
    revoked_at   BIGINT,
    revoked_by   TEXT
);
-- One live token per name, so the audit log's token names are unambiguous.
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;
