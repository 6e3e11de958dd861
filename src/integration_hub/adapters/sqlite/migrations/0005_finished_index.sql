-- The retention purge looks for notifications finished before a cut-off.
CREATE INDEX IF NOT EXISTS notifications_finished ON notifications (finished_at)
    WHERE finished_at IS NOT NULL;
INSERT OR IGNORE INTO schema_migrations (version, applied_at) VALUES (5, (julianday('now') - 2440587.5) * 86400.0);
