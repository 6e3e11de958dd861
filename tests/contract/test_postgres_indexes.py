"""PostgreSQL: the queries the hub runs all the time are answered from an index.

Each case EXPLAINs the adapter's own SQL (imported, not copied) on a few
thousand rows shaped like production data (many tenants, most queue entries
leased, few keys expired), after ANALYZE. No planner switches are touched:
if a query stops matching its index, or an index goes missing, this fails.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest

import pg
from integration_hub.adapters.postgres import queue, retention, store
from integration_hub.adapters.postgres.database import PostgresDatabase
from integration_hub.adapters.sql import webhook_statements
from integration_hub.adapters.sql.dialect import POSTGRES
from integration_hub.domain.receipts import DeliveryState
from integration_hub.domain.status import Status

ROWS = 10_000
TENANTS = 100
NOW = time.time()

FILL = [
    # Ids are time-ordered like new_id(); tenants interleave as they do in production.
    """
    INSERT INTO notifications (id, tenant, country, channel, provider, status, request,
        idempotency_key, created_at, updated_at, finished_at)
    SELECT lpad(to_hex(i), 12, '0'), 't' || (i % $2),
        (ARRAY['ES', 'MX', 'US', 'FR', 'CA'])[1 + i % 5], 'email', 'sandbox',
        (ARRAY['DONE', 'DONE', 'DONE', 'FAILED', 'RECEIVED', 'PROCESSING'])[1 + i % 6],
        '{}', 'k' || i, $3 - $1 + i, $3 - $1 + i, CASE WHEN i % 6 < 4 THEN $3 - $1 + i END
    FROM generate_series(1, $1) AS i
    """,
    # One message in fifty is visible; the others are leased by workers.
    """
    INSERT INTO queue (notification_id, tenant, available_at, enqueued_at, receive_count, receipt)
    SELECT lpad(to_hex(i), 12, '0'), 't' || (i % $2),
        $3 + CASE WHEN i % 50 = 0 THEN -10 ELSE 30 END, $3 - 60, 1, 'r-' || i
    FROM generate_series(1, $1) AS i
    """,
    """
    INSERT INTO attempts (notification_id, number, provider, started_at, finished_at, outcome)
    SELECT lpad(to_hex(i), 12, '0'), 1, 'sandbox' || ($2 * 0), $3 - $1 + i, $3 - $1 + i,
        'delivered'
    FROM generate_series(1, $1) AS i
    """,
    """
    INSERT INTO dead_letters (notification_id, tenant, reason, dead_lettered_at)
    SELECT lpad(to_hex(i), 12, '0'), 't' || (i % $2), 'permanent', $3 - $1 + i
    FROM generate_series(1, $1) AS i WHERE i % 6 = 3
    """,
    """
    INSERT INTO outbox (notification_id, tenant, channel, recipient, body, attempt,
        provider_message_id, delivered_at)
    SELECT lpad(to_hex(i), 12, '0'), 't' || (i % $2), 'email', 'a@example.com', 'hi', 1,
        'pm-' || i, $3 - $1 + i
    FROM generate_series(1, $1) AS i
    """,
    # Delivery receipts: a DONE notification reached a provider with a message
    # id; one in twenty is still waiting for its receipt, most were delivered.
    """
    UPDATE notifications SET provider = 'twilio', provider_message_id = 'SM' || id,
        sent_at = finished_at, delivery_updated_at = finished_at,
        delivery_state = (ARRAY['sent', 'delivered', 'delivered', 'delivered', 'read',
            'bounced', 'delivered', 'undelivered', 'delivered', 'delivered', 'delivered',
            'delivered', 'read', 'delivered', 'delivered', 'delivered', 'delivered',
            'delivered', 'expired', 'delivered'])[1 + (created_at::bigint % 20)]
    WHERE status = 'DONE' AND $1::integer > 0 AND $2::integer > 0 AND $3::float8 > 0
    """,
    """
    INSERT INTO delivery_events (notification_id, provider, state, raw_status, received_at,
        identity)
    SELECT n.id, 'twilio', s, s, n.sent_at + 1, '["' || n.id || '", "' || s || '"]'
    FROM notifications n, unnest(ARRAY['sent', 'delivered']) AS s
    WHERE n.delivery_state IS NOT NULL AND $1::integer > 0 AND $2::integer > 0
        AND $3::float8 > 0
    """,
    """
    INSERT INTO suppressions (tenant, channel, address, reason, created_at)
    SELECT 't' || (i % $2), 'sms', '+3460' || lpad(i::text, 7, '0'), 'opted_out', $3
    FROM generate_series(1, $1) AS i
    """,
    # Webhooks: one endpoint per tenant; the first has a backlog of half the
    # deliveries (three events per notification, the later ones waiting for the
    # first), the rest are finished.
    """
    INSERT INTO webhook_endpoints (id, tenant, url, secrets, created_at, updated_at)
    SELECT 'ep' || i, 't' || i, 'https://h.example.com/', '{}', $3, $3
    FROM generate_series(0, $2 - 1) AS i WHERE $1::integer > 0
    """,
    """
    INSERT INTO webhook_deliveries (id, endpoint_id, tenant, event_id, event_seq,
        notification_id, status, created_at, next_attempt_at)
    SELECT 'dlv' || i, 'ep' || CASE WHEN i % 2 = 0 THEN 0 ELSE i % $2 END,
        't' || CASE WHEN i % 2 = 0 THEN 0 ELSE i % $2 END, 'ev' || i, i, 'n' || (i / 6),
        CASE WHEN i % 2 = 0 THEN 'pending' ELSE 'succeeded' END, $3 - 60,
        CASE WHEN i % 2 = 0 THEN $3 - 60 + i / 1000.0 END
    FROM generate_series(1, $1) AS i
    """,
    # One key in fifty has expired.
    """
    INSERT INTO idempotency_keys (tenant, key, fingerprint, reservation, created_at,
        locked_until, expires_at, response)
    SELECT 't' || (i % $2), 'k' || i, 'fp', 'r', $3 - 60, $3 - 50,
        $3 + CASE WHEN i % 50 = 0 THEN -1 ELSE 86400 END, '{}'
    FROM generate_series(1, $1) AS i
    """,
]


@pytest.fixture(scope="module")
def filled() -> Iterator[str]:
    """A migrated throwaway database with a few thousand rows in every table, analysed."""

    async def fill(url: str) -> None:
        db = PostgresDatabase(url)
        await db.open()
        try:
            await db.migrate()
            async with db.connection() as conn:
                for statement in FILL:  # each takes $1 rows, $2 tenants, $3 now
                    await conn.execute(statement, ROWS, TENANTS, NOW)
                await conn.execute("ANALYZE")
        finally:
            await db.close()

    with pg.throwaway_database() as url:
        pg.run_sync(fill(url))
        yield url


def _listing(**filters: Any) -> tuple[str, list[Any]]:
    return store.listing_query(
        "t3",
        filters.get("status"),
        filters.get("country"),
        50,
        filters.get("before_id"),
        delivery_state=filters.get("delivery_state"),
    )


def _claim_deliveries() -> tuple[str, list[Any]]:
    compiled = POSTGRES.compile(webhook_statements.CLAIM_DELIVERIES)
    params = {
        "exclude_endpoints": [],
        "exclude_tenants": [],
        "now": NOW,
        "per_endpoint": 4,
        "limit": 32,
        "token": "wh-1",
        "until": NOW + 60,
    }
    return compiled.sql, [params[n] for n in compiled.names]


def case(name: str, sql: str, args: list[Any], index: str, whole: str | None) -> Any:
    """A query, the index (a pattern) that must answer it, the table it must not read whole."""
    return pytest.param(sql, args, index, whole, id=name)


CASES = [
    # Any index that leads with the tenant serves a plain page (the planner
    # picks among them by cost); filters must use their own.
    case("list", *_listing(), r"notifications_tenant\w*", "notifications"),
    case(
        "list by status",
        *_listing(status=str(Status.DONE)),
        "notifications_tenant_status",
        "notifications",
    ),
    case(
        "list by country", *_listing(country="ES"), "notifications_tenant_country", "notifications"
    ),
    case(
        "list a later page",
        *_listing(before_id="000000000c00"),
        r"notifications_tenant\w*",
        "notifications",
    ),
    case(
        "list by delivery state",
        *_listing(delivery_state=DeliveryState.BOUNCED),
        "notifications_tenant_delivery",
        "notifications",
    ),
    # A receipt finds its notification in one indexed read.
    case(
        "a receipt's notification",
        store.RECEIPT_TARGET,
        ["t3", "twilio", "SM000000000067"],
        "notifications_provider_message",
        "notifications",
    ),
    case(
        "due for expiry",
        store.EXPIRY_DUE,
        [NOW - ROWS / 2, 1000],
        "notifications_delivery_expiry",
        "notifications",
    ),
    case(
        "a notification's events",
        store.DELIVERY_EVENTS,
        ["000000000abc", "t3", 100],
        "delivery_events_notification_id_identity_key",
        "delivery_events",
    ),
    case(
        "a suppression",
        store.SUPPRESSION,
        ["t3", "sms", "+34600000003"],
        "suppressions_pkey",
        "suppressions",
    ),
    case("claim", store.CLAIM_LOCK, ["000000000abc"], "notifications_pkey", "notifications"),
    case(
        "complete an attempt",
        store.HOLDER_LOCK,
        ["000000000abc", "r"],
        "notifications_pkey",
        "notifications",
    ),
    case("receive", queue.RECEIVE, [NOW, 32, NOW + 30, "receipt"], "queue_available", "queue"),
    case("next available", queue.NEXT_AVAILABLE, [], "queue_available", "queue"),
    case("ack", queue.ACK, ["000000000abc", "r-2748"], "queue_pkey", "queue"),
    case(
        "dead letters of a tenant",
        store.TENANT_DEAD_LETTERS,
        ["t3", 100],
        "dead_letters_tenant",
        "dead_letters",
    ),
    case("dead letters", store.DEAD_LETTERS, [100], "dead_letters_time", "dead_letters"),
    case("outbox of a tenant", queue.TENANT_OUTBOX, ["t3", 100], "outbox_tenant", "outbox"),
    case(
        "reserve a key",
        store.RESERVE,
        ["t3", "k", "fp", "r", NOW, NOW + 10],
        "idempotency_keys_pkey",
        "idempotency_keys",
    ),
    # A purge batch finds its candidates by index; deleting a thousand rows of
    # ten thousand with a hash join over the whole table is then the planner's
    # right call, so only the search is held to an index.
    case(
        "finished for retention",
        retention.PURGE_FINISHED,
        [NOW - ROWS / 2, 1000],
        "notifications_finished",
        None,
    ),
    case("expired keys", retention.PURGE_KEYS, [NOW, 1000], "idempotency_keys_expiry", None),
    # Each enabled endpoint's first due deliveries, once per endpoint (LATERAL):
    # never the deliveries table read whole, nor a subquery per delivery.
    case(
        "claim webhook deliveries",
        *_claim_deliveries(),
        "webhook_deliveries_endpoint_due",
        "webhook_deliveries",
    ),
]


@pytest.mark.parametrize(("sql", "args", "index", "whole"), CASES)
async def test_the_query_is_answered_from_its_index(
    filled: str, sql: str, args: list[Any], index: str, whole: str | None
) -> None:
    conn = await asyncpg.connect(filled)
    try:
        plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql, *args))
    finally:
        await conn.close()
    assert "Index" in plan, plan
    assert re.search(rf"(Index|Arbiter Indexes).*\b{index}\b", plan), plan
    if whole is not None:
        assert not re.search(rf"Seq Scan on {whole}\b", plan), plan
