-- Delivery receipts and suppression lists (issue 15, ADR 0019). The ALTERs
-- come first: the runner skips the whole script (one transaction) when
-- another process already added the columns.
--
-- The delivery state of a notification a provider accepted, beside its
-- processing status; NULL until an attempt is DONE with a provider message id.
ALTER TABLE notifications ADD COLUMN delivery_state TEXT;
ALTER TABLE notifications ADD COLUMN delivery_updated_at REAL;
ALTER TABLE notifications ADD COLUMN sent_at REAL;
ALTER TABLE notifications ADD COLUMN provider_message_id TEXT;

-- A receipt finds its notification by (tenant, provider, provider message id)
-- in one indexed read. Not UNIQUE on purpose: a provider that ever reused an
-- id must not make complete_attempt fail (the message was sent; refusing to
-- record that would resend it). The lookup takes the latest sent of any
-- duplicates (statements.RECEIPT_TARGET).
CREATE INDEX IF NOT EXISTS notifications_provider_message
    ON notifications (tenant, provider, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
-- Expiry looks for what is still 'sent' since before a cut-off: only those rows.
CREATE INDEX IF NOT EXISTS notifications_delivery_expiry ON notifications (sent_at)
    WHERE delivery_state = 'sent';
-- Listing by delivery state, newest first (as by status and by country);
-- notifications that never reached a provider are not indexed.
CREATE INDEX IF NOT EXISTS notifications_tenant_delivery
    ON notifications (tenant, delivery_state, id)
    WHERE delivery_state IS NOT NULL;

-- Every receipt recorded, as the provider reported it. identity is
-- json.dumps(Receipt.identity): the database refuses a second copy of one
-- provider event, so a duplicate is decided by the insert itself. The unique
-- index leads with notification_id, which also serves reading a
-- notification's events and retention's delete.
CREATE TABLE IF NOT EXISTS delivery_events (
    seq             INTEGER PRIMARY KEY,
    notification_id TEXT NOT NULL,
    provider        TEXT NOT NULL,
    state           TEXT NOT NULL,
    raw_status      TEXT NOT NULL,
    error_code      TEXT,
    occurred_at     REAL,
    received_at     REAL NOT NULL,
    identity        TEXT NOT NULL,
    UNIQUE (notification_id, identity)
);

-- A tenant's suppression list: one row per (channel, normalised address).
-- Retention never deletes these: they are the tenant's list, not history.
CREATE TABLE IF NOT EXISTS suppressions (
    tenant     TEXT NOT NULL,
    channel    TEXT NOT NULL,
    address    TEXT NOT NULL,
    reason     TEXT NOT NULL,
    source     TEXT,
    note       TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (tenant, channel, address)
) WITHOUT ROWID;
INSERT OR IGNORE INTO schema_migrations (version, applied_at) VALUES (8, (julianday('now') - 2440587.5) * 86400.0);
