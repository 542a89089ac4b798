-- App owners: people and groups who manage one app's viewers, grants and settings (and
-- nothing else) without being gateway administrators.
ALTER TABLE apps ADD COLUMN owner_users_json TEXT NOT NULL DEFAULT '[]';
ALTER TABLE apps ADD COLUMN owner_groups_json TEXT NOT NULL DEFAULT '[]';
