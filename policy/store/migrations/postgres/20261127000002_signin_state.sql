-- Sign-in state shared by every replica, so that any of them can finish a sign-in another
-- started. Keep column names identical to ../sqlite/20261127000002_signin_state.sql.

-- An OIDC/SAML sign-in in flight (state, PKCE verifier, nonce, RelayState …), JSON text.
-- Taken exactly once (DELETE … RETURNING); expired rows are swept.
CREATE TABLE login_attempts (
    key        TEXT   NOT NULL PRIMARY KEY,
    provider   TEXT   NOT NULL,
    data       TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX login_attempts_expires_at ON login_attempts (expires_at);

-- Ids of SAML assertions already used (replay cache), until the assertion would expire.
CREATE TABLE seen_assertions (
    id         TEXT   NOT NULL PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX seen_assertions_expires_at ON seen_assertions (expires_at);

-- One row per failed sign-in, keyed by what is limited (a user name, a client address).
CREATE TABLE failed_signins (
    id  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key TEXT   NOT NULL,
    at  BIGINT NOT NULL
);
CREATE INDEX failed_signins_key_at ON failed_signins (key, at);
CREATE INDEX failed_signins_at ON failed_signins (at);
