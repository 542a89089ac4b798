-- SQLite has no NOTIFY: the store announces this process's own writes after they commit
-- (see src/feed.rs). Kept so that both databases have the same migration versions as
-- ../postgres/20261127000001_change_feed.sql, which installs the triggers.
SELECT 1;
