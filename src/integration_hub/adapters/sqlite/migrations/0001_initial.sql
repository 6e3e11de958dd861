-- Every statement is idempotent so that two processes starting at once
-- (API and worker) can both run the migration safely.
CREATE TABLE IF NOT EXISTS tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_at  REAL NOT NULL,
    config      TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE IF NOT EXISTS api_keys (
    key_id      TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL REFERENCES tenants(id),
    hash        TEXT NOT NULL,
    created_at  REAL NOT NULL,
    revoked_at  REAL
);
CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys (tenant);

CREATE TABLE IF NOT EXISTS idempotency_keys (
    tenant       TEXT NOT NULL,
    key          TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    reservation  TEXT NOT NULL,
    created_at   REAL NOT NULL,
    locked_until REAL NOT NULL,
    expires_at   REAL NOT NULL,
    response     TEXT,
    PRIMARY KEY (tenant, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_keys_expiry ON idempotency_keys (expires_at);

CREATE TABLE IF NOT EXISTS notifications (
    id               TEXT PRIMARY KEY,
    tenant           TEXT NOT NULL,
    country          TEXT NOT NULL,
    channel          TEXT NOT NULL,
    provider         TEXT NOT NULL,
    status           TEXT NOT NULL,
    request          TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    finished_at      REAL,
    attempts_used    INTEGER NOT NULL DEFAULT 0,
    attempt_count    INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    claim_token      TEXT,
    claim_expires_at REAL
) WITHOUT ROWID;
-- Listing is per tenant, newest first (ids are time-ordered), optionally
-- filtered by status or country.
CREATE INDEX IF NOT EXISTS notifications_tenant ON notifications (tenant, id);
CREATE INDEX IF NOT EXISTS notifications_tenant_status ON notifications (tenant, status, id);
CREATE INDEX IF NOT EXISTS notifications_tenant_country ON notifications (tenant, country, id);

CREATE TABLE IF NOT EXISTS attempts (
    notification_id     TEXT NOT NULL,
    number              INTEGER NOT NULL,
    provider            TEXT NOT NULL,
    started_at          REAL NOT NULL,
    finished_at         REAL,
    outcome             TEXT,
    error_class         TEXT,
    error_code          TEXT,
    message             TEXT,
    latency_ms          REAL,
    provider_message_id TEXT,
    PRIMARY KEY (notification_id, number)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS queue (
    notification_id TEXT PRIMARY KEY,
    tenant          TEXT NOT NULL,
    available_at    REAL NOT NULL,
    enqueued_at     REAL NOT NULL,
    receive_count   INTEGER NOT NULL DEFAULT 0,
    receipt         TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS queue_available ON queue (available_at);

CREATE TABLE IF NOT EXISTS dead_letters (
    notification_id  TEXT PRIMARY KEY,
    tenant           TEXT NOT NULL,
    reason           TEXT NOT NULL,
    dead_lettered_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dead_letters_tenant ON dead_letters (tenant, dead_lettered_at);

CREATE TABLE IF NOT EXISTS outbox (
    seq                 INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id     TEXT NOT NULL,
    tenant              TEXT NOT NULL,
    channel             TEXT NOT NULL,
    recipient           TEXT NOT NULL,
    subject             TEXT,
    body                TEXT NOT NULL,
    attempt             INTEGER NOT NULL,
    provider_message_id TEXT NOT NULL,
    delivered_at        REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_tenant ON outbox (tenant, seq);
CREATE INDEX IF NOT EXISTS outbox_notification ON outbox (notification_id);

CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    applied_at REAL NOT NULL
);
INSERT OR IGNORE INTO schema_migrations (version, applied_at) VALUES (1, (julianday('now') - 2440587.5) * 86400.0);
