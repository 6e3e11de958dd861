-- An endpoint's revision (ports/webhooks.py update_endpoint): moved by every
-- change of what its owner sets and of its enabled flag, so an update read
-- before another change is refused instead of writing over it.
ALTER TABLE webhook_endpoints ADD COLUMN revision integer NOT NULL DEFAULT 0;
