-- Per-app options set in the admin UI: identity header styles, which groups apps are told,
-- and whether the App Portal shows the app.
ALTER TABLE apps ADD COLUMN remote_headers INTEGER NOT NULL DEFAULT 0;
ALTER TABLE apps ADD COLUMN plotly_user_data INTEGER NOT NULL DEFAULT 0;
ALTER TABLE apps ADD COLUMN groups_sent TEXT NOT NULL DEFAULT 'all';
ALTER TABLE apps ADD COLUMN portal_visible INTEGER NOT NULL DEFAULT 1;
