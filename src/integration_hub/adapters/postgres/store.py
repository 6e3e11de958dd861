"""The Store port on PostgreSQL: the shared SQL store (``adapters/sql``) on asyncpg.

The module-level names are the PostgreSQL text of the statements the hub runs
most, as tests/contract/test_postgres_indexes.py EXPLAINs them.
"""

from __future__ import annotations

from typing import Any

from integration_hub.adapters.postgres.database import PostgresDatabase
from integration_hub.adapters.sql import statements as q
from integration_hub.adapters.sql.dialect import POSTGRES
from integration_hub.adapters.sql.flow import AsyncRunner
from integration_hub.adapters.sql.store import SqlStore
from integration_hub.domain.receipts import DeliveryState
from integration_hub.domain.status import Status

RESERVE = POSTGRES.compile(q.RESERVE).sql
CLAIM_LOCK = POSTGRES.compile(q.CLAIM_LOCK).sql
HOLDER_LOCK = POSTGRES.compile(q.HOLDER_LOCK).sql
DEAD_LETTERS = POSTGRES.compile(q.DEAD_LETTERS).sql
TENANT_DEAD_LETTERS = POSTGRES.compile(q.TENANT_DEAD_LETTERS).sql
RECEIPT_TARGET = POSTGRES.compile(q.RECEIPT_TARGET).sql
EXPIRY_DUE = POSTGRES.compile(q.EXPIRY_DUE).sql
DELIVERY_EVENTS = POSTGRES.compile(q.DELIVERY_EVENTS).sql
SUPPRESSION = POSTGRES.compile(q.SUPPRESSION).sql


class PostgresStore(SqlStore):
    """Tenants, keys, idempotency records, notifications and dead letters in PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
        super().__init__(AsyncRunner(db))
        self.db = db

    async def close(self) -> None:
        """Release connections."""
        await self.db.close()


def listing_query(
    tenant: str,
    status: Status | None,
    country: str | None,
    limit: int,
    before_id: str | None,
    delivery_state: DeliveryState | None = None,
) -> tuple[str, list[Any]]:
    """The SQL and arguments of one page of a tenant's notifications."""
    statement = q.listing(
        status=status is not None,
        country=country is not None,
        before=before_id is not None,
        delivery=delivery_state is not None,
    )
    compiled = POSTGRES.compile(statement)
    params = {
        "tenant": tenant,
        "status": None if status is None else str(status),
        "country": country,
        "delivery_state": None if delivery_state is None else str(delivery_state),
        "before_id": before_id,
        "limit": limit,
    }
    return compiled.sql, list(compiled.bind(params))
