-- Gatehouse store, SQLite flavour. Keep column names and meanings identical to
-- ../postgres/20260101000000_initial.sql: the same SQL runs against both.
--
-- Conventions: user and group names are stored case-folded; times are epoch seconds;
-- flags are 0/1 integers (sqlx's Any driver has no SQLite boolean); lists are JSON arrays
-- of strings in TEXT columns.

CREATE TABLE users (
    username      TEXT    NOT NULL PRIMARY KEY,
    password_hash TEXT,
    email         TEXT,
    display_name  TEXT,
    admin         INTEGER NOT NULL DEFAULT 0 CHECK (admin IN (0, 1)),
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    groups_json   TEXT    NOT NULL DEFAULT '[]',
    created_at    BIGINT  NOT NULL
);

-- No foreign key to users: sessions of LDAP, OIDC and SAML users have no users row.
CREATE TABLE sessions (
    id_hash      TEXT    NOT NULL PRIMARY KEY,
    username     TEXT    NOT NULL,
    email        TEXT,
    display_name TEXT,
    groups_json  TEXT    NOT NULL DEFAULT '[]',
    admin        INTEGER NOT NULL DEFAULT 0 CHECK (admin IN (0, 1)),
    provider     TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    last_seen    BIGINT  NOT NULL
);
CREATE INDEX sessions_username ON sessions (username);
CREATE INDEX sessions_last_seen ON sessions (last_seen);
CREATE INDEX sessions_created_at ON sessions (created_at);

CREATE TABLE signing_keys (
    kid         TEXT   NOT NULL PRIMARY KEY,
    private_pem TEXT   NOT NULL,
    public_jwk  TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    retired_at  BIGINT
);

CREATE TABLE apps (
    slug              TEXT   NOT NULL PRIMARY KEY,
    name              TEXT   NOT NULL,
    description       TEXT   NOT NULL DEFAULT '',
    upstreams_json    TEXT   NOT NULL DEFAULT '[]',
    access            TEXT   NOT NULL CHECK (access IN ('public', 'authenticated', 'restricted')),
    allow_groups_json TEXT   NOT NULL DEFAULT '[]',
    allow_users_json  TEXT   NOT NULL DEFAULT '[]',
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

CREATE TABLE audit_log (
    id          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    at          BIGINT  NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    detail_json TEXT    NOT NULL DEFAULT 'null'
);
CREATE INDEX audit_log_at ON audit_log (at);
