"""PostgreSQL: store, queue, outbox and secrets in one database, for many machines.

asyncpg is the optional ``postgres`` extra: it is imported when a backend
opens, so that naming this scheme without it is a clear configuration error.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from integration_hub.adapters.sql.backend import SqlBackend
from integration_hub.config import ConfigurationError
from integration_hub.ports import Backend, Clock

if TYPE_CHECKING:
    from integration_hub.adapters.postgres.database import PostgresDatabase
    from integration_hub.config import Settings

INSTALL_HINT = (
    "IHUB_DATABASE_URL names PostgreSQL, which needs asyncpg:"
    " pip install 'integration-hub[postgres]'"
)


class PostgresKind:
    """``postgresql://user@host:5432/database`` (or ``postgres://``)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def local_file(self) -> Path | None:
        """A server, not a file."""
        return None

    async def open(self, settings: Settings, clock: Clock) -> Backend:
        """Connect; migrate if ``IHUB_AUTO_MIGRATE``, else refuse a schema that is behind."""
        try:
            from integration_hub.adapters.postgres.database import PostgresDatabase
        except ModuleNotFoundError as exc:
            if exc.name != "asyncpg":
                raise
            raise ConfigurationError(INSTALL_HINT) from None
        db = PostgresDatabase(
            self.url,
            clock=clock,
            max_size=settings.database_pool_size,
            timeout=settings.database_timeout_seconds,
        )
        await db.open()
        backend = PostgresBackend(db)
        try:
            if settings.auto_migrate:
                await db.migrate()
            else:
                version, needed = await backend.versions()
                if version < needed:
                    raise ConfigurationError(
                        f"the database schema is at version {version} and this release needs"
                        f" {needed}: run `ihub migrate` (or set IHUB_AUTO_MIGRATE=true)"
                    )
        except BaseException:
            await db.close()
            raise
        return backend


class PostgresBackend(SqlBackend):
    """An open PostgreSQL database (a pool, and a LISTEN connection when waiting)."""

    def __init__(self, db: PostgresDatabase) -> None:
        from integration_hub.adapters.postgres.credentials import PostgresCredentials
        from integration_hub.adapters.postgres.queue import PostgresOutbox, PostgresQueue
        from integration_hub.adapters.postgres.store import PostgresStore

        super().__init__(
            PostgresStore(db), PostgresQueue(db), PostgresOutbox(db), PostgresCredentials(db)
        )
        self.db = db

    async def versions(self) -> tuple[int, int]:
        """(the schema's version, the version this release needs)."""
        from integration_hub.adapters.postgres.database import migrations

        return await self.db.schema_version(), migrations()[-1].version

    async def migrate(self) -> int | None:
        """Apply pending migrations under the advisory lock; the version."""
        version: int = await self.db.migrate()
        return version

    async def schema_problem(self) -> str | None:
        """A migration this release needs is missing (``/readyz`` says so)."""
        version, needed = await self.versions()
        if version < needed:
            return f"the schema is at version {version}, this release needs {needed}: ihub migrate"
        return None

    async def purge(self, older_than_seconds: float) -> dict[str, int]:
        """Retention in batches, skipping rows a worker holds."""
        from integration_hub.adapters.postgres.retention import purge_database

        return await purge_database(self.db, older_than_seconds=older_than_seconds)
