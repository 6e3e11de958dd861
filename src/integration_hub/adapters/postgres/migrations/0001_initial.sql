-- The schema of the SQLite backend, on PostgreSQL. The runner applies each
-- file once, in one transaction, under an advisory lock, and records it in
-- schema_migrations.
--
-- Times are epoch seconds as double precision, as on SQLite: every
-- comparison takes "now" from the application's clock as a parameter.
-- Identifiers use the "C" collation so that ordering (and the cursor of
-- time-ordered ids) is byte order whatever the database's locale.

CREATE TABLE tenants (
    id          text COLLATE "C" PRIMARY KEY,
    name        text NOT NULL,
    status      text NOT NULL,
    created_at  double precision NOT NULL,
    config      text NOT NULL DEFAULT '{}'
);

CREATE TABLE api_keys (
    key_id      text COLLATE "C" PRIMARY KEY,
    tenant      text COLLATE "C" NOT NULL REFERENCES tenants (id),
    hash        text NOT NULL,
    created_at  double precision NOT NULL,
    revoked_at  double precision
);
CREATE INDEX api_keys_tenant ON api_keys (tenant);

CREATE TABLE idempotency_keys (
    tenant       text COLLATE "C" NOT NULL,
    key          text COLLATE "C" NOT NULL,
    fingerprint  text NOT NULL,
    reservation  text NOT NULL,
    created_at   double precision NOT NULL,
    locked_until double precision NOT NULL,
    expires_at   double precision NOT NULL,
    response     text,
    PRIMARY KEY (tenant, key)
);
-- Retention deletes expired keys.
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);

CREATE TABLE notifications (
    id               text COLLATE "C" PRIMARY KEY,
    tenant           text COLLATE "C" NOT NULL,
    country          text COLLATE "C" NOT NULL,
    channel          text NOT NULL,
    provider         text NOT NULL,
    status           text COLLATE "C" NOT NULL,
    request          text NOT NULL,
    idempotency_key  text NOT NULL,
    created_at       double precision NOT NULL,
    updated_at       double precision NOT NULL,
    finished_at      double precision,
    attempts_used    integer NOT NULL DEFAULT 0,
    attempt_count    integer NOT NULL DEFAULT 0,
    last_error       text,
    claim_token      text,
    claim_expires_at double precision
);
-- Listing is per tenant, newest first (ids are time-ordered), optionally
-- filtered by status or country.
CREATE INDEX notifications_tenant ON notifications (tenant, id);
CREATE INDEX notifications_tenant_status ON notifications (tenant, status, id);
CREATE INDEX notifications_tenant_country ON notifications (tenant, country, id);
-- Retention finds finished notifications by age; unfinished ones are not indexed.
CREATE INDEX notifications_finished ON notifications (finished_at)
    WHERE finished_at IS NOT NULL;

CREATE TABLE attempts (
    notification_id     text COLLATE "C" NOT NULL,
    number              integer NOT NULL,
    provider            text NOT NULL,
    started_at          double precision NOT NULL,
    finished_at         double precision,
    outcome             text,
    error_class         text,
    error_code          text,
    message             text,
    latency_ms          double precision,
    provider_message_id text,
    PRIMARY KEY (notification_id, number)
);

CREATE TABLE queue (
    notification_id text COLLATE "C" PRIMARY KEY,
    tenant          text COLLATE "C" NOT NULL,
    available_at    double precision NOT NULL,
    enqueued_at     double precision NOT NULL,
    receive_count   integer NOT NULL DEFAULT 0,
    receipt         text
);
-- receive takes the oldest available messages; wait_for_messages reads MIN.
CREATE INDEX queue_available ON queue (available_at);

CREATE TABLE dead_letters (
    notification_id  text COLLATE "C" PRIMARY KEY,
    tenant           text COLLATE "C" NOT NULL,
    reason           text NOT NULL,
    dead_lettered_at double precision NOT NULL
);
CREATE INDEX dead_letters_tenant ON dead_letters (tenant, dead_lettered_at);
-- The operator's listing across tenants.
CREATE INDEX dead_letters_time ON dead_letters (dead_lettered_at);

CREATE TABLE outbox (
    seq                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_id     text COLLATE "C" NOT NULL,
    tenant              text COLLATE "C" NOT NULL,
    channel             text NOT NULL,
    recipient           text NOT NULL,
    subject             text,
    body                text NOT NULL,
    attempt             integer NOT NULL,
    provider_message_id text NOT NULL,
    delivered_at        double precision NOT NULL
);
CREATE INDEX outbox_tenant ON outbox (tenant, seq);
CREATE INDEX outbox_notification ON outbox (notification_id);
