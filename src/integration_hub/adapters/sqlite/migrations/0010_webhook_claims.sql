-- Webhook claims pick per endpoint (adapters/sql/webhook_statements.py): an
-- endpoint's pending deliveries by due time, so that a full endpoint's
-- backlog is never scanned by the claims of the others.
CREATE INDEX IF NOT EXISTS webhook_deliveries_endpoint_due
    ON webhook_deliveries (endpoint_id, next_attempt_at, seq) WHERE status = 'pending';
INSERT OR IGNORE INTO schema_migrations (version, applied_at) VALUES (10, (julianday('now') - 2440587.5) * 86400.0);
