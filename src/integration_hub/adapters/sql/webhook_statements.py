"""The SQL of webhooks (endpoints, the event outbox, deliveries, attempts), written once.

As ``statements.py``: named parameters and the slots of ``dialect.py`` are
the only places SQLite and PostgreSQL differ; times are parameters. Booleans
are written ``TRUE``/``FALSE`` and tested bare (``WHERE enabled``), which both
databases read the same (SQLite stores 1 and 0).
"""

from __future__ import annotations

from functools import cache

from integration_hub.adapters.sql.dialect import Statement as S

# -- endpoints ----------------------------------------------------------------------------

INSERT_ENDPOINT = S(
    "insert_webhook_endpoint",
    """
INSERT INTO webhook_endpoints (id, tenant, url, description, event_types, enabled,
    disabled_reason, disabled_at, failing_since, consecutive_failures, secrets,
    created_at, updated_at)
VALUES (:id, :tenant, :url, :description, :event_types, :enabled,
    :disabled_reason, :disabled_at, :failing_since, :consecutive_failures, :secrets,
    :created_at, :updated_at)
""",
)
ENDPOINT = S("webhook_endpoint", "SELECT * FROM webhook_endpoints WHERE id = :id")
TENANT_ENDPOINT = S(
    "tenant_webhook_endpoint",
    "SELECT * FROM webhook_endpoints WHERE id = :id AND tenant = :tenant",
)
# Serialises the attempts finishing for one endpoint (its failure counters).
ENDPOINT_LOCK = S("webhook_endpoint_lock", "SELECT * FROM webhook_endpoints WHERE id = :id {lock}")
ENDPOINTS = S(
    "webhook_endpoints",
    "SELECT * FROM webhook_endpoints WHERE tenant = :tenant ORDER BY created_at, id",
)
ENDPOINTS_OF = S(
    "webhook_endpoints_of",
    "SELECT * FROM webhook_endpoints WHERE tenant {one_of:tenants} ORDER BY created_at, id",
)
# Creating one takes the tenant's lock first, so a concurrent creation counts only
# after this one commits (PostgreSQL's advisory lock; SQLite's single writer).
LOCK_TENANT_ENDPOINTS = S("lock_tenant_webhook_endpoints", "SELECT {xact_lock} AS locked")
COUNT_TENANT_ENDPOINTS = S(
    "count_tenant_webhook_endpoints",
    "SELECT count(*) AS n FROM webhook_endpoints WHERE tenant = :tenant",
)
# The owner's fields and the enabled flag, if no one changed them since the caller's
# read (revision); with the failure counters when webhooks.update_writes_counters says.
_UPDATE_ENDPOINT = """
UPDATE webhook_endpoints SET url = :url, description = :description,
    event_types = :event_types, secrets = :secrets, updated_at = :updated_at,
    enabled = :enabled, disabled_reason = :disabled_reason, disabled_at = :disabled_at,
    {counters}revision = revision + 1
WHERE id = :id AND tenant = :tenant AND revision = :revision
"""
UPDATE_ENDPOINT = S("update_webhook_endpoint", _UPDATE_ENDPOINT.replace("{counters}", ""))
UPDATE_ENDPOINT_AND_COUNTERS = S(
    "update_webhook_endpoint_and_counters",
    _UPDATE_ENDPOINT.replace(
        "{counters}",
        "failing_since = :failing_since, consecutive_failures = :consecutive_failures,\n    ",
    ),
)
ENDPOINT_HEALTH = S(
    "webhook_endpoint_health",
    "UPDATE webhook_endpoints SET failing_since = :failing_since,"
    " consecutive_failures = :consecutive_failures WHERE id = :id",
)
DISABLE_ENDPOINT = S(
    "disable_webhook_endpoint",
    "UPDATE webhook_endpoints SET enabled = FALSE, disabled_reason = :reason,"
    " disabled_at = :now, revision = revision + 1 WHERE id = :id",
)
DELETE_ENDPOINT_ATTEMPTS = S(
    "delete_webhook_endpoint_attempts",
    "DELETE FROM webhook_attempts WHERE delivery_id IN"
    " (SELECT id FROM webhook_deliveries WHERE endpoint_id = :id)",
)
DELETE_ENDPOINT_DELIVERIES = S(
    "delete_webhook_endpoint_deliveries", "DELETE FROM webhook_deliveries WHERE endpoint_id = :id"
)
DELETE_ENDPOINT = S(
    "delete_webhook_endpoint", "DELETE FROM webhook_endpoints WHERE id = :id AND tenant = :tenant"
)

# -- the outbox ---------------------------------------------------------------------------

INSERT_EVENT = S(
    "insert_webhook_event",
    """
INSERT INTO webhook_events (id, tenant, type, occurred_at, notification_id, endpoint_id, data)
VALUES (:id, :tenant, :type, :occurred_at, :notification_id, :endpoint_id, :data)
""",
)
# Oldest first. Locked (not skipped) on PostgreSQL: a second fan-out waits
# for the first, so a notification's deliveries exist in its events' order.
UNFANNED = S(
    "unfanned_webhook_events",
    """
SELECT * FROM webhook_events WHERE NOT fanned
ORDER BY seq
LIMIT :limit
{lock}
""",
)
MARK_FANNED = S(
    "mark_webhook_events_fanned",
    "UPDATE webhook_events SET fanned = TRUE WHERE seq {one_of:seqs}",
)
TENANT_EVENTS = S(
    "tenant_webhook_events",
    "SELECT * FROM webhook_events WHERE tenant = :tenant ORDER BY seq LIMIT :limit",
)
NOTIFICATION_EVENTS = S(
    "notification_webhook_events",
    "SELECT * FROM webhook_events WHERE tenant = :tenant AND notification_id = :notification_id"
    " ORDER BY seq LIMIT :limit",
)
EVENTS_SINCE = S(
    "webhook_events_since",
    "SELECT * FROM webhook_events WHERE tenant = :tenant AND occurred_at >= :since"
    " ORDER BY seq LIMIT :limit",
)

# -- deliveries ---------------------------------------------------------------------------

INSERT_DELIVERY = S(
    "insert_webhook_delivery",
    """
INSERT INTO webhook_deliveries (id, endpoint_id, tenant, event_id, event_seq, notification_id,
    status, created_at, next_attempt_at)
VALUES (:id, :endpoint_id, :tenant, :event_id, :event_seq, :notification_id,
    'pending', :now, :now)
""",
)

# Due: pending, next_attempt_at passed (a claim moves it to the lease's end),
# the endpoint enabled and not excluded, and no earlier pending delivery of
# the same notification to the same endpoint (webhooks.may_deliver). Picked
# per endpoint (at most :per_endpoint each, on the index of an endpoint's
# pending deliveries by due time, the subquery run once per endpoint: the
# {lateral} slot), so that an excluded endpoint's backlog, however long, costs
# nothing and a long one costs its first rows only; then the oldest due of those. On PostgreSQL the
# rows picked are locked with SKIP LOCKED, so concurrent claims take disjoint
# sets, and the UPDATE checks again that each is still due.
CLAIM_DELIVERIES = S(
    "claim_webhook_deliveries",
    """
WITH endpoints AS MATERIALIZED (
    SELECT e.id FROM webhook_endpoints e
    WHERE e.enabled AND NOT (e.id {one_of:exclude_endpoints})
        AND NOT (e.tenant {one_of:exclude_tenants})
),
due AS MATERIALIZED (
    SELECT d.id, d.next_attempt_at, d.seq FROM endpoints
    {lateral:webhook_deliveries}
        SELECT x.id FROM webhook_deliveries x
        WHERE x.endpoint_id = endpoints.id AND x.status = 'pending'
            AND x.next_attempt_at <= :now
            AND NOT EXISTS (
                SELECT 1 FROM webhook_deliveries p
                WHERE p.endpoint_id = x.endpoint_id AND p.notification_id = x.notification_id
                    AND p.event_seq < x.event_seq AND p.status = 'pending'
            )
        ORDER BY x.next_attempt_at, x.seq
        LIMIT :per_endpoint
        {skip_locked}
    {end_lateral:webhook_deliveries}
),
picked AS MATERIALIZED (
    SELECT id FROM due ORDER BY next_attempt_at, seq LIMIT :limit
)
UPDATE webhook_deliveries SET claim_token = :token, claim_expires_at = :until,
    next_attempt_at = :until
FROM picked
WHERE webhook_deliveries.id = picked.id AND webhook_deliveries.status = 'pending'
    AND webhook_deliveries.next_attempt_at <= :now
RETURNING webhook_deliveries.id
""",
)

_WITH_EVENT = """
SELECT d.*, e.type AS event_type, e.occurred_at AS event_occurred_at, e.data AS event_data,
    e.endpoint_id AS event_endpoint_id
FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
"""
CLAIMED = S(
    "claimed_webhook_deliveries",
    _WITH_EVENT + "WHERE d.claim_token = :token AND d.id {one_of:ids} ORDER BY d.next_attempt_at",
)
DELIVERY = S("webhook_delivery", _WITH_EVENT + "WHERE d.id = :id")


@cache
def delivery_listing(*, before: bool) -> S:
    """One page of an endpoint's deliveries, newest first."""
    sql = [_WITH_EVENT, "WHERE d.endpoint_id = :endpoint_id"]
    if before:
        sql.append("AND d.seq < (SELECT b.seq FROM webhook_deliveries b WHERE b.id = :before_id)")
    sql.append("ORDER BY d.seq DESC LIMIT :limit")
    return S("list_webhook_deliveries" + ("_before" if before else ""), " ".join(sql))


ATTEMPTS = S(
    "webhook_attempts",
    "SELECT * FROM webhook_attempts WHERE delivery_id {one_of:ids} ORDER BY delivery_id, number",
)
HELD_DELIVERY = S(
    "held_webhook_delivery",
    "SELECT * FROM webhook_deliveries WHERE id = :id AND claim_token = :token {lock}",
)
INSERT_ATTEMPT = S(
    "insert_webhook_attempt",
    """
INSERT INTO webhook_attempts (delivery_id, number, at, outcome, status_code, latency_ms, error,
    response_excerpt)
VALUES (:delivery_id, :number, :at, :outcome, :status_code, :latency_ms, :error,
    :response_excerpt)
""",
)
FINISH_DELIVERY = S(
    "finish_webhook_delivery",
    """
UPDATE webhook_deliveries SET status = :status, next_attempt_at = :next_attempt_at,
    attempt_count = :attempt_count, last_status_code = :status_code, last_error = :error,
    finished_at = :finished_at, claim_token = NULL, claim_expires_at = NULL
WHERE id = :id
""",
)
# An endpoint disabled: what waits for it fails (a replay sends it again);
# what is in flight finishes as its attempt says.
FAIL_WAITING = S(
    "fail_waiting_webhook_deliveries",
    """
UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL, last_error = :reason,
    finished_at = :now
WHERE endpoint_id = :id AND status = 'pending' AND (claim_token IS NULL OR next_attempt_at <= :now)
""",
)
# A finished delivery due again at once, its schedule starting over from its
# next attempt (schedule_offset) while the attempts so far stay on record.
RETRY_DELIVERY = S(
    "retry_webhook_delivery",
    """
UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = :now,
    schedule_offset = attempt_count, finished_at = NULL, claim_token = NULL,
    claim_expires_at = NULL
WHERE id = :id AND endpoint_id = :endpoint_id AND status <> 'pending'
""",
)
STATS = S(
    "webhook_stats",
    """
SELECT
    (SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending') AS pending,
    (SELECT MIN(d.next_attempt_at) FROM webhook_deliveries d
        JOIN webhook_endpoints e ON e.id = d.endpoint_id
        WHERE d.status = 'pending' AND d.next_attempt_at <= :now AND e.enabled) AS oldest_due,
    (SELECT COUNT(*) FROM webhook_events WHERE NOT fanned) AS unfanned,
    (SELECT COUNT(*) FROM webhook_endpoints WHERE NOT enabled) AS disabled
""",
)


def every() -> list[S]:
    """Every statement of this module, the listing in each of its shapes too."""
    found = [v for v in globals().values() if isinstance(v, S)]
    return found + [delivery_listing(before=b) for b in (False, True)]
