-- Signed status webhooks (issue 16), as SQLite's 0009: endpoints, the event
-- outbox written in the same transaction as each notification change,
-- deliveries and attempts. Times are epoch seconds as double precision.
--
-- A tenant's endpoints. event_types is a JSON array or NULL (every type);
-- secrets is the opaque sealed mapping the service hands over, never read here.
CREATE TABLE webhook_endpoints (
    id                   text COLLATE "C" PRIMARY KEY,
    tenant               text COLLATE "C" NOT NULL,
    url                  text NOT NULL,
    description          text,
    event_types          text,
    enabled              boolean NOT NULL DEFAULT true,
    disabled_reason      text,
    disabled_at          double precision,
    failing_since        double precision,
    consecutive_failures integer NOT NULL DEFAULT 0,
    secrets              text NOT NULL,
    created_at           double precision NOT NULL,
    updated_at           double precision NOT NULL
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant, id);

-- The outbox: one row per event, in commit order (seq). fanned is false
-- until fan_out has made its deliveries; endpoint_id addresses one endpoint
-- only (webhook.test), NULL means every accepting endpoint of the tenant.
CREATE TABLE webhook_events (
    seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              text COLLATE "C" NOT NULL UNIQUE,
    tenant          text COLLATE "C" NOT NULL,
    type            text NOT NULL,
    occurred_at     double precision NOT NULL,
    notification_id text COLLATE "C",
    endpoint_id     text COLLATE "C",
    data            text NOT NULL,
    fanned          boolean NOT NULL DEFAULT false
);
-- fan_out reads the unfanned events oldest first: only those rows.
CREATE INDEX webhook_events_unfanned ON webhook_events (seq) WHERE NOT fanned;
-- replay since a time, per tenant.
CREATE INDEX webhook_events_tenant_time ON webhook_events (tenant, occurred_at);
-- a notification's events (its listing; retention purges them with it).
CREATE INDEX webhook_events_notification ON webhook_events (notification_id);
-- events of no notification (webhook.test, endpoint.disabled), purged by age.
CREATE INDEX webhook_events_unowned ON webhook_events (occurred_at)
    WHERE notification_id IS NULL;

-- One delivery of an event to an endpoint (a replay adds another). event_seq
-- orders a notification's deliveries to one endpoint (may_deliver: the later
-- waits until every earlier one is finished). A claim sets claim_token and
-- moves next_attempt_at to the end of its lease, so a lapsed claim is due again.
-- schedule_offset: the attempts before a manual retry (its schedule starts over).
CREATE TABLE webhook_deliveries (
    seq              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               text COLLATE "C" NOT NULL UNIQUE,
    endpoint_id      text COLLATE "C" NOT NULL,
    tenant           text COLLATE "C" NOT NULL,
    event_id         text COLLATE "C" NOT NULL,
    event_seq        bigint NOT NULL,
    notification_id  text COLLATE "C",
    status           text NOT NULL,
    created_at       double precision NOT NULL,
    next_attempt_at  double precision,
    attempt_count    integer NOT NULL DEFAULT 0,
    schedule_offset  integer NOT NULL DEFAULT 0,
    claim_token      text,
    claim_expires_at double precision,
    last_status_code integer,
    last_error       text,
    finished_at      double precision
);
-- Due pending deliveries by next_attempt_at.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at, seq)
    WHERE status = 'pending';
-- The earlier pending deliveries of a notification to one endpoint (ordering).
CREATE INDEX webhook_deliveries_order
    ON webhook_deliveries (endpoint_id, notification_id, event_seq) WHERE status = 'pending';
-- An endpoint's deliveries, newest first.
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, seq);
-- An event's deliveries, and a notification's (retention purges them with it).
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);
CREATE INDEX webhook_deliveries_notification ON webhook_deliveries (notification_id);

-- Every attempt of a delivery, numbered from 1.
CREATE TABLE webhook_attempts (
    delivery_id      text COLLATE "C" NOT NULL,
    number           integer NOT NULL,
    at               double precision NOT NULL,
    outcome          text NOT NULL,
    status_code      integer,
    latency_ms       double precision,
    error            text,
    response_excerpt text,
    PRIMARY KEY (delivery_id, number)
);
