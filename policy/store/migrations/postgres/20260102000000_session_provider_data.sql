-- Provider tokens of a session (OIDC refresh token, ID token for logout hints), JSON text.
ALTER TABLE sessions ADD COLUMN provider_data TEXT;
