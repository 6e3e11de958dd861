"""Retention on SQLite: forget finished notifications and expired idempotency keys.

The same contract as on PostgreSQL: a notification that finished (DONE or
FAILED) longer ago than the cut-off goes together with its attempts, dead
letter, sandbox deliveries and any leftover queue entry. Batches keep each
write transaction short, so the API and the worker keep their turn at the
single writer.
"""

from __future__ import annotations

import sqlite3

from integration_hub.adapters.sqlite.database import SqliteDatabase

COUNTS = ("notifications", "attempts", "dead_letters", "outbox", "queue", "idempotency_keys")

# Table and column that point at a finished notification, in deletion order.
_DEPENDENTS = (
    ("attempts", "attempts", "notification_id"),
    ("dead_letters", "dead_letters", "notification_id"),
    ("outbox", "outbox", "notification_id"),
    ("queue", "queue", "notification_id"),
    ("notifications", "notifications", "id"),
)


async def purge_database(
    db: SqliteDatabase, *, older_than_seconds: float, batch_size: int = 500
) -> dict[str, int]:
    """Delete what finished more than ``older_than_seconds`` ago; rows deleted per table."""
    now = db.clock.now()
    cutoff = now - older_than_seconds
    counts = dict.fromkeys(COUNTS, 0)

    def finished_batch(conn: sqlite3.Connection) -> int:
        ids = [
            r["id"]
            for r in conn.execute(
                "SELECT id FROM notifications WHERE finished_at < ?"
                " AND status IN ('DONE', 'FAILED') ORDER BY finished_at LIMIT ?",
                (cutoff, batch_size),
            )
        ]
        if ids:
            marks = ", ".join("?" * len(ids))
            for name, table, column in _DEPENDENTS:
                deleted = conn.execute(
                    f"DELETE FROM {table} WHERE {column} IN ({marks})",  # noqa: S608  # names are constants
                    ids,
                ).rowcount
                counts[name] += deleted
        return len(ids)

    def keys_batch(conn: sqlite3.Connection) -> int:
        deleted = conn.execute(
            "DELETE FROM idempotency_keys WHERE (tenant, key) IN"
            " (SELECT tenant, key FROM idempotency_keys WHERE expires_at <= ? LIMIT ?)",
            (now, batch_size),
        ).rowcount
        counts["idempotency_keys"] += deleted
        return deleted

    while await db.write(finished_batch) == batch_size:
        pass
    while await db.write(keys_batch) == batch_size:
        pass
    return counts
