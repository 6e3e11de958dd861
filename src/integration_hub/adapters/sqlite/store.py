"""The Store port on SQLite: the shared SQL store (``adapters/sql``) on the writer thread."""

from __future__ import annotations

from integration_hub.adapters.sql.flow import SyncRunner
from integration_hub.adapters.sql.store import SqlStore
from integration_hub.adapters.sqlite.database import SqliteDatabase


class SqliteStore(SqlStore):
    """Tenants, keys, idempotency records, notifications and dead letters in SQLite."""

    def __init__(self, db: SqliteDatabase) -> None:
        super().__init__(SyncRunner(db))
        self.db = db

    async def close(self) -> None:
        """Release connections."""
        self.db.close()
