"""Retention on PostgreSQL: forget finished notifications and expired idempotency keys.

A notification is finished when DONE or FAILED; it goes together with its
attempts, its dead letter, its sandbox deliveries and any queue entry left
behind. Deletion runs in small batches, each its own transaction, so that a
large purge never holds many locks or one long transaction; rows a worker
holds right now are skipped and left for the next run.
"""

from __future__ import annotations

from integration_hub.adapters.postgres.database import PostgresDatabase

PURGE_FINISHED = """
WITH doomed AS MATERIALIZED (
    SELECT id FROM notifications
    WHERE finished_at < $1 AND status IN ('DONE', 'FAILED')
    ORDER BY finished_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
),
attempts_gone AS (
    DELETE FROM attempts WHERE notification_id IN (SELECT id FROM doomed) RETURNING 1
),
dead_letters_gone AS (
    DELETE FROM dead_letters WHERE notification_id IN (SELECT id FROM doomed) RETURNING 1
),
outbox_gone AS (
    DELETE FROM outbox WHERE notification_id IN (SELECT id FROM doomed) RETURNING 1
),
queue_gone AS (
    DELETE FROM queue WHERE notification_id IN (SELECT id FROM doomed) RETURNING 1
),
notifications_gone AS (
    DELETE FROM notifications WHERE id IN (SELECT id FROM doomed) RETURNING 1
)
SELECT
    (SELECT COUNT(*) FROM notifications_gone) AS notifications,
    (SELECT COUNT(*) FROM attempts_gone) AS attempts,
    (SELECT COUNT(*) FROM dead_letters_gone) AS dead_letters,
    (SELECT COUNT(*) FROM outbox_gone) AS outbox,
    (SELECT COUNT(*) FROM queue_gone) AS queue
"""

PURGE_KEYS = """
WITH doomed AS MATERIALIZED (
    SELECT tenant, key FROM idempotency_keys
    WHERE expires_at <= $1
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
DELETE FROM idempotency_keys k USING doomed
WHERE k.tenant = doomed.tenant AND k.key = doomed.key
"""

COUNTS = ("notifications", "attempts", "dead_letters", "outbox", "queue", "idempotency_keys")


async def purge_database(
    db: PostgresDatabase, *, older_than_seconds: float, batch_size: int = 1000
) -> dict[str, int]:
    """Delete what finished more than ``older_than_seconds`` ago; rows deleted per table."""
    now = db.clock.now()
    cutoff = now - older_than_seconds
    counts = dict.fromkeys(COUNTS, 0)
    while True:
        async with db.transaction() as conn:
            row = await conn.fetchrow(PURGE_FINISHED, cutoff, batch_size)
        for name in COUNTS[:-1]:
            counts[name] += row[name]
        if row["notifications"] < batch_size:
            break
    while True:
        async with db.transaction() as conn:
            status = await conn.execute(PURGE_KEYS, now, batch_size)
        deleted = int(status.split()[-1])  # "DELETE <n>"
        counts["idempotency_keys"] += deleted
        if deleted < batch_size:
            break
    return counts
