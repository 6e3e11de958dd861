-- Delivery receipts and suppression lists (issue 15, ADR 0019), as SQLite's
-- 0008. Times are epoch seconds as double precision like every other time.
--
-- The delivery state of a notification a provider accepted, beside its
-- processing status; NULL until an attempt is DONE with a provider message id.
ALTER TABLE notifications
    ADD COLUMN delivery_state text COLLATE "C",
    ADD COLUMN delivery_updated_at double precision,
    ADD COLUMN sent_at double precision,
    ADD COLUMN provider_message_id text COLLATE "C";

-- A receipt finds its notification by (tenant, provider, provider message id)
-- in one indexed read. Not UNIQUE on purpose: a provider that ever reused an
-- id must not make complete_attempt fail (the message was sent; refusing to
-- record that would resend it). The lookup takes the latest sent of any
-- duplicates (statements.RECEIPT_TARGET).
CREATE INDEX notifications_provider_message
    ON notifications (tenant, provider, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
-- Expiry looks for what is still 'sent' since before a cut-off: only those rows.
CREATE INDEX notifications_delivery_expiry ON notifications (sent_at)
    WHERE delivery_state = 'sent';
-- Listing by delivery state, newest first (as by status and by country);
-- notifications that never reached a provider are not indexed.
CREATE INDEX notifications_tenant_delivery ON notifications (tenant, delivery_state, id)
    WHERE delivery_state IS NOT NULL;

-- Every receipt recorded, as the provider reported it. identity is
-- json.dumps(Receipt.identity): the database refuses a second copy of one
-- provider event, so a duplicate is decided by the insert itself. The unique
-- index leads with notification_id, which also serves reading a
-- notification's events and retention's delete.
CREATE TABLE delivery_events (
    seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_id text COLLATE "C" NOT NULL,
    provider        text NOT NULL,
    state           text NOT NULL,
    raw_status      text NOT NULL,
    error_code      text,
    occurred_at     double precision,
    received_at     double precision NOT NULL,
    identity        text NOT NULL,
    UNIQUE (notification_id, identity)
);

-- A tenant's suppression list: one row per (channel, normalised address),
-- listed in byte order of (channel, address) like every other backend.
-- Retention never deletes these: they are the tenant's list, not history.
CREATE TABLE suppressions (
    tenant     text COLLATE "C" NOT NULL,
    channel    text COLLATE "C" NOT NULL,
    address    text COLLATE "C" NOT NULL,
    reason     text NOT NULL,
    source     text,
    note       text,
    created_at double precision NOT NULL,
    PRIMARY KEY (tenant, channel, address)
);
