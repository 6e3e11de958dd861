"""The embedded backend: store, queue, outbox and secrets in one SQLite file."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from integration_hub.adapters.sql.backend import SqlBackend
from integration_hub.adapters.sqlite.credentials import SqliteCredentials
from integration_hub.adapters.sqlite.database import SqliteDatabase, path_from_url
from integration_hub.adapters.sqlite.queue import SqliteOutbox, SqliteQueue
from integration_hub.adapters.sqlite.retention import purge_database
from integration_hub.adapters.sqlite.store import SqliteStore
from integration_hub.config import ConfigurationError
from integration_hub.ports import Backend, Clock

if TYPE_CHECKING:
    from integration_hub.config import Settings


def newest_migration() -> int:
    """The version of the newest packaged script."""
    scripts = resources.files(__package__).joinpath("migrations")
    return max(int(f.name.split("_", 1)[0]) for f in scripts.iterdir() if f.name.endswith(".sql"))


class SqliteKind:
    """``sqlite:///relative.db`` or ``sqlite:////absolute.db``."""

    def __init__(self, url: str) -> None:
        scheme, _, rest = url.partition(":")
        try:
            self.path = path_from_url(scheme.lower() + ":" + rest)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None

    def local_file(self) -> Path | None:
        """The database file."""
        return self.path

    async def open(self, settings: Settings, clock: Clock) -> Backend:
        """Open the file and apply the packaged migrations (every script is idempotent)."""
        db = SqliteDatabase(
            self.path,
            clock=clock,
            busy_timeout_ms=round(settings.sqlite_busy_timeout_seconds * 1000),
        )
        await db.migrate()
        return SqliteBackend(db)


class SqliteBackend(SqlBackend):
    """An open SQLite file."""

    def __init__(self, db: SqliteDatabase) -> None:
        super().__init__(SqliteStore(db), SqliteQueue(db), SqliteOutbox(db), SqliteCredentials(db))
        self.db = db

    async def migrate(self) -> int | None:
        """Opening migrated: the schema is at the newest script."""
        await self.db.migrate()
        return newest_migration()

    async def schema_problem(self) -> str | None:
        """Never behind: every process migrates when it opens the file."""
        return None

    async def purge(self, older_than_seconds: float) -> dict[str, int]:
        """Retention in short write transactions."""
        return await purge_database(self.db, older_than_seconds=older_than_seconds)
