-- `groups_sent = "auto"` became the default (identity headers that app servers accept: all
-- groups while they fit, else the ones the app's policy names). Apps saved before could only
-- say "all", the old default, which now means "send everything however large": move them to
-- the new default. An administrator who wants "all" chooses it again in the app's form.
ALTER TABLE apps ALTER COLUMN groups_sent SET DEFAULT 'auto';
UPDATE apps SET groups_sent = 'auto' WHERE groups_sent = 'all';
