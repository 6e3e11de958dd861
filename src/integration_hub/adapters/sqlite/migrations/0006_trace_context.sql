-- W3C trace context of the accepting request (ADR 0015). SQLite has no
-- ADD COLUMN IF NOT EXISTS: the migration runner skips a script whose
-- column another process already added.
ALTER TABLE notifications ADD COLUMN traceparent TEXT;
ALTER TABLE notifications ADD COLUMN tracestate TEXT;
INSERT OR IGNORE INTO schema_migrations (version, applied_at) VALUES (6, (julianday('now') - 2440587.5) * 86400.0);
