"""Retention on PostgreSQL (``adapters/sql/retention.py``).

Batches of 1000, each its own transaction, skipping rows a worker holds.
The module-level names are the PostgreSQL text of the two searches, as
tests/contract/test_postgres_indexes.py EXPLAINs them.
"""

from __future__ import annotations

from integration_hub.adapters.postgres.database import PostgresDatabase
from integration_hub.adapters.sql import retention
from integration_hub.adapters.sql import statements as q
from integration_hub.adapters.sql.dialect import POSTGRES
from integration_hub.adapters.sql.flow import AsyncRunner

PURGE_FINISHED = POSTGRES.compile(q.FINISHED).sql
PURGE_KEYS = POSTGRES.compile(q.PURGE_KEYS).sql
COUNTS = retention.COUNTS


async def purge_database(
    db: PostgresDatabase, *, older_than_seconds: float, batch_size: int = 1000
) -> dict[str, int]:
    """Delete what finished more than ``older_than_seconds`` ago; rows deleted per table."""
    return await retention.purge(
        AsyncRunner(db), older_than_seconds=older_than_seconds, batch_size=batch_size
    )
