-- An endpoint's revision (ports/webhooks.py update_endpoint): moved by every
-- change of what its owner sets and of its enabled flag, so an update read
-- before another change is refused instead of writing over it.
ALTER TABLE webhook_endpoints ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
INSERT OR IGNORE INTO schema_migrations (version, applied_at) VALUES (11, (julianday('now') - 2440587.5) * 86400.0);
