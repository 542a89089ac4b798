-- The App Portal's order (lower first; ties keep the config file's order, then slug), and
-- gateway-wide settings made in the admin UI (the branding: product name, logo, accent),
-- which take precedence over the config file's.
ALTER TABLE apps ADD COLUMN portal_order INTEGER NOT NULL DEFAULT 0;
CREATE TABLE settings (
    name       TEXT   PRIMARY KEY,
    value      TEXT   NOT NULL,
    updated_by TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);
