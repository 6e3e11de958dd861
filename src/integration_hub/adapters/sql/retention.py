"""Retention on a SQL database: forget finished notifications and expired keys.

A notification that finished (DONE or FAILED) longer ago than the cut-off
goes together with its attempts, dead letter, sandbox deliveries, delivery
events, webhook events (with their deliveries and attempts) and any leftover
queue entry; suppressions stay (they are the tenant's list). Webhook events
of no notification (``webhook.test``, ``endpoint.disabled``) go by age.
Deletion runs in batches, each its own transaction, so that a large purge
never holds the SQLite writer or many PostgreSQL locks for long; on
PostgreSQL rows a worker holds right now are skipped (``{skip_locked}``)
and left for the next run.
"""

from __future__ import annotations

from integration_hub.adapters.sql import statements as q
from integration_hub.adapters.sql.flow import Flow, Runner, count, rows

COUNTS = (
    "notifications",
    "attempts",
    "dead_letters",
    "outbox",
    "delivery_events",
    "queue",
    "idempotency_keys",
    "webhook_events",
    "webhook_deliveries",
    "webhook_attempts",
)
"""Rows deleted per table. Suppressions are not here: they are the tenant's
list, kept whatever happens to the notification that caused one."""


def finished_batch(cutoff: float, batch_size: int, counts: dict[str, int]) -> Flow[int]:
    """Delete up to ``batch_size`` finished notifications and what points at them."""
    ids = [r["id"] for r in (yield rows(q.FINISHED, cutoff=cutoff, limit=batch_size))]
    if ids:
        for name, statement in q.PURGE_DEPENDENTS:
            counts[name] += yield count(statement, ids=ids)
    return len(ids)


def unowned_events_batch(cutoff: float, batch_size: int, counts: dict[str, int]) -> Flow[int]:
    """Delete up to ``batch_size`` old webhook events of no notification, with deliveries."""
    ids = [r["id"] for r in (yield rows(q.UNOWNED_EVENTS, cutoff=cutoff, limit=batch_size))]
    if ids:
        for name, statement in q.PURGE_UNOWNED:
            counts[name] += yield count(statement, ids=ids)
    return len(ids)


def keys_batch(now: float, batch_size: int, counts: dict[str, int]) -> Flow[int]:
    """Delete up to ``batch_size`` expired Idempotency-Key records."""
    deleted: int = yield count(q.PURGE_KEYS, now=now, limit=batch_size)
    counts["idempotency_keys"] += deleted
    return deleted


async def purge(sql: Runner, *, older_than_seconds: float, batch_size: int) -> dict[str, int]:
    """Delete what finished more than ``older_than_seconds`` ago; rows deleted per table."""
    now = sql.clock.now()
    cutoff = now - older_than_seconds
    counts = dict.fromkeys(COUNTS, 0)
    # A batch that fails leaves ``counts`` as it was: its transaction rolled back
    # and the exception ends the purge.
    while await sql.write(finished_batch(cutoff, batch_size, counts)) == batch_size:
        pass
    while await sql.write(unowned_events_batch(cutoff, batch_size, counts)) == batch_size:
        pass
    while await sql.write(keys_batch(now, batch_size, counts)) == batch_size:
        pass
    return counts
