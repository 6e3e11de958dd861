-- Webhook claims pick per endpoint (adapters/sql/webhook_statements.py): an
-- endpoint's pending deliveries by due time, so that a full endpoint's
-- backlog is never scanned by the claims of the others.
CREATE INDEX webhook_deliveries_endpoint_due
    ON webhook_deliveries (endpoint_id, next_attempt_at, seq) WHERE status = 'pending';
