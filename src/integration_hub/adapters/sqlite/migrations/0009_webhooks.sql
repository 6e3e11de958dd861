-- Signed status webhooks (issue 16): endpoints, the event outbox written in
-- the same transaction as each notification change, deliveries and attempts.
--
-- A tenant's endpoints. event_types is a JSON array or NULL (every type);
-- secrets is the opaque sealed mapping the service hands over, never read here.
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id                   TEXT PRIMARY KEY,
    tenant               TEXT NOT NULL,
    url                  TEXT NOT NULL,
    description          TEXT,
    event_types          TEXT,
    enabled              INTEGER NOT NULL DEFAULT 1,
    disabled_reason      TEXT,
    disabled_at          REAL,
    failing_since        REAL,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    secrets              TEXT NOT NULL,
    created_at           REAL NOT NULL,
    updated_at           REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_endpoints_tenant ON webhook_endpoints (tenant, id);

-- The outbox: one row per event, in commit order (seq). fanned is 0 until
-- fan_out has made its deliveries; endpoint_id addresses one endpoint only
-- (webhook.test), NULL means every accepting endpoint of the tenant.
CREATE TABLE IF NOT EXISTS webhook_events (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    tenant          TEXT NOT NULL,
    type            TEXT NOT NULL,
    occurred_at     REAL NOT NULL,
    notification_id TEXT,
    endpoint_id     TEXT,
    data            TEXT NOT NULL,
    fanned          INTEGER NOT NULL DEFAULT 0
);
-- fan_out reads the unfanned events oldest first: only those rows.
CREATE INDEX IF NOT EXISTS webhook_events_unfanned ON webhook_events (seq) WHERE NOT fanned;
-- replay since a time, per tenant.
CREATE INDEX IF NOT EXISTS webhook_events_tenant_time ON webhook_events (tenant, occurred_at);
-- a notification's events (its listing; retention purges them with it).
CREATE INDEX IF NOT EXISTS webhook_events_notification ON webhook_events (notification_id);
-- events of no notification (webhook.test, endpoint.disabled), purged by age.
CREATE INDEX IF NOT EXISTS webhook_events_unowned ON webhook_events (occurred_at)
    WHERE notification_id IS NULL;

-- One delivery of an event to an endpoint (a replay adds another). event_seq
-- orders a notification's deliveries to one endpoint (may_deliver: the later
-- waits until every earlier one is finished). A claim sets claim_token and
-- moves next_attempt_at to the end of its lease, so a lapsed claim is due again.
-- schedule_offset: the attempts before a manual retry (its schedule starts over).
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    seq              INTEGER PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    endpoint_id      TEXT NOT NULL,
    tenant           TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    event_seq        INTEGER NOT NULL,
    notification_id  TEXT,
    status           TEXT NOT NULL,
    created_at       REAL NOT NULL,
    next_attempt_at  REAL,
    attempt_count    INTEGER NOT NULL DEFAULT 0,
    schedule_offset  INTEGER NOT NULL DEFAULT 0,
    claim_token      TEXT,
    claim_expires_at REAL,
    last_status_code INTEGER,
    last_error       TEXT,
    finished_at      REAL
);
-- Due pending deliveries by next_attempt_at.
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (next_attempt_at, seq)
    WHERE status = 'pending';
-- The earlier pending deliveries of a notification to one endpoint (ordering).
CREATE INDEX IF NOT EXISTS webhook_deliveries_order
    ON webhook_deliveries (endpoint_id, notification_id, event_seq) WHERE status = 'pending';
-- An endpoint's deliveries, newest first.
CREATE INDEX IF NOT EXISTS webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, seq);
-- An event's deliveries, and a notification's (retention purges them with it).
CREATE INDEX IF NOT EXISTS webhook_deliveries_event ON webhook_deliveries (event_id);
CREATE INDEX IF NOT EXISTS webhook_deliveries_notification ON webhook_deliveries (notification_id);

-- Every attempt of a delivery, numbered from 1.
CREATE TABLE IF NOT EXISTS webhook_attempts (
    delivery_id      TEXT NOT NULL,
    number           INTEGER NOT NULL,
    at               REAL NOT NULL,
    outcome          TEXT NOT NULL,
    status_code      INTEGER,
    latency_ms       REAL,
    error            TEXT,
    response_excerpt TEXT,
    PRIMARY KEY (delivery_id, number)
) WITHOUT ROWID;
INSERT OR IGNORE INTO schema_migrations (version, applied_at) VALUES (9, (julianday('now') - 2440587.5) * 86400.0);
