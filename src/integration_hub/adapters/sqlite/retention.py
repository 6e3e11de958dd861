"""Retention on SQLite (``adapters/sql/retention.py``).

Batches of 500 keep each write transaction short, so the API and the worker
keep their turn at the single writer.
"""

from __future__ import annotations

from integration_hub.adapters.sql import retention
from integration_hub.adapters.sql.flow import SyncRunner
from integration_hub.adapters.sqlite.database import SqliteDatabase

COUNTS = retention.COUNTS


async def purge_database(
    db: SqliteDatabase, *, older_than_seconds: float, batch_size: int = 500
) -> dict[str, int]:
    """Delete what finished more than ``older_than_seconds`` ago; rows deleted per table."""
    return await retention.purge(
        SyncRunner(db), older_than_seconds=older_than_seconds, batch_size=batch_size
    )
