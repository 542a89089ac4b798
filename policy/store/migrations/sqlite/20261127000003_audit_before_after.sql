-- Audit rows written in the same transaction as the change they record: who (actor and,
-- for requests, the client address) and the record before and after, as JSON text (never
-- password hashes or private keys). NULL before: created; NULL after: deleted.
ALTER TABLE audit_log ADD COLUMN client TEXT;
ALTER TABLE audit_log ADD COLUMN before_json TEXT;
ALTER TABLE audit_log ADD COLUMN after_json TEXT;
CREATE INDEX audit_log_actor ON audit_log (actor, at);
CREATE INDEX audit_log_action ON audit_log (action, at);
