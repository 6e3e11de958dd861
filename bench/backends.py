"""The database a scenario runs on, as a parameter: a SQLite file or a PostgreSQL database.

Both expose the same small synchronous interface the harness needs: the URL
the hub processes get, counts by status read straight from the database (so
that watching a drain puts no load on the API), snapshots to restore the same
backlog before every repetition, and cleanup.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sqlite3
from pathlib import Path
from typing import Any, Protocol

DEFAULT_POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

STATUS_SQL = (
    "SELECT status, COUNT(*) AS n, MIN(finished_at) AS first, MAX(finished_at) AS last"
    " FROM notifications GROUP BY status"
)


class Backend(Protocol):
    """What a scenario needs from a database."""

    kind: str
    url: str

    def status_counts(self) -> dict[str, int]: ...

    def finished_span(self) -> tuple[float | None, float | None]: ...

    def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]: ...

    def execute(self, sql: str) -> None: ...

    def snapshot(self) -> Snapshot: ...

    def size_bytes(self) -> int: ...

    def close(self) -> None: ...

    def drop(self) -> None: ...


class Snapshot(Protocol):
    """A frozen copy of a database, restored as a fresh backend."""

    def restore(self, label: str) -> Backend: ...

    def drop(self) -> None: ...


def postgres_admin_url() -> str:
    """The maintenance database the harness creates throwaway databases from."""
    return os.environ.get("BENCH_POSTGRES_URL") or os.environ.get(
        "IHUB_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL
    )


# -- SQLite ----------------------------------------------------------------------------


class SqliteBackend:
    """One SQLite file in the run's directory."""

    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"  # absolute path: sqlite:////abs/file.db
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self._conn.execute("PRAGMA busy_timeout=30000")
        return self._conn

    def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return list(self._connection().execute(sql, args).fetchall())

    def execute(self, sql: str) -> None:
        self._connection().executescript(sql)

    def status_counts(self) -> dict[str, int]:
        return {row[0]: int(row[1]) for row in self.fetch(STATUS_SQL)}

    def finished_span(self) -> tuple[float | None, float | None]:
        row = self.fetch(
            "SELECT MIN(finished_at), MAX(finished_at) FROM notifications WHERE status = 'DONE'"
        )[0]
        return row[0], row[1]

    def snapshot(self) -> SqliteSnapshot:
        """Checkpoint the WAL into the file and copy it (no process may hold it open)."""
        conn = self._connection()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.close()
        target = self.path.with_name(self.path.stem + "-snapshot.db")
        shutil.copyfile(self.path, target)
        return SqliteSnapshot(target)

    def size_bytes(self) -> int:
        """The file, its WAL and its shared-memory index."""
        total = 0
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.path) + suffix)
            if p.exists():
                total += p.stat().st_size
        return total

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def drop(self) -> None:
        self.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)


class SqliteSnapshot:
    """A checkpointed copy of a SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def restore(self, label: str) -> SqliteBackend:
        target = self.path.with_name(f"{label}.db")
        for suffix in ("", "-wal", "-shm"):
            Path(str(target) + suffix).unlink(missing_ok=True)
        shutil.copyfile(self.path, target)
        return SqliteBackend(target)

    def drop(self) -> None:
        self.path.unlink(missing_ok=True)


def sqlite_backend(workdir: Path, label: str) -> SqliteBackend:
    """A new, not yet created, SQLite file (the hub creates the schema)."""
    return SqliteBackend(workdir / f"{label}.db")


# -- PostgreSQL -------------------------------------------------------------------------


class _Pg:
    """A synchronous face on one asyncpg connection, with its own event loop."""

    def __init__(self, url: str) -> None:
        import asyncpg

        self._loop = asyncio.new_event_loop()
        self._conn = self._loop.run_until_complete(asyncpg.connect(url))

    def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        rows = self._loop.run_until_complete(self._conn.fetch(sql, *args))
        return [tuple(r.values()) for r in rows]

    def execute(self, sql: str) -> None:
        self._loop.run_until_complete(self._conn.execute(sql))

    def close(self) -> None:
        self._loop.run_until_complete(self._conn.close())
        self._loop.close()


def _database_url(admin_url: str, name: str) -> str:
    base, _, _ = admin_url.partition("?")
    head, _, _ = base.rpartition("/")
    query = admin_url.partition("?")[2]
    return f"{head}/{name}" + (f"?{query}" if query else "")


class PostgresBackend:
    """A throwaway ``ihub_bench_*`` database on the PostgreSQL server."""

    kind = "postgresql"

    def __init__(self, name: str, *, admin_url: str | None = None, create: bool = True) -> None:
        self.admin_url = admin_url or postgres_admin_url()
        self.name = name
        self.url = _database_url(self.admin_url, name)
        if create:
            admin = _Pg(self.admin_url)
            try:
                admin.execute(f'CREATE DATABASE "{name}"')
            finally:
                admin.close()
        self._conn: _Pg | None = None

    def _connection(self) -> _Pg:
        if self._conn is None:
            self._conn = _Pg(self.url)
        return self._conn

    def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return self._connection().fetch(sql, *args)

    def execute(self, sql: str) -> None:
        self._connection().execute(sql)

    def status_counts(self) -> dict[str, int]:
        return {row[0]: int(row[1]) for row in self.fetch(STATUS_SQL)}

    def finished_span(self) -> tuple[float | None, float | None]:
        row = self.fetch(
            "SELECT MIN(finished_at), MAX(finished_at) FROM notifications WHERE status = 'DONE'"
        )[0]
        return row[0], row[1]

    def snapshot(self) -> PostgresSnapshot:
        """This database becomes the template of later copies (no process may use it)."""
        self.close()
        return PostgresSnapshot(self.name, self.admin_url)

    def size_bytes(self) -> int:
        return int(self.fetch("SELECT pg_database_size(current_database())")[0][0])

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def drop(self) -> None:
        self.close()
        admin = _Pg(self.admin_url)
        try:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            admin.close()


class PostgresSnapshot:
    """A database used as the template of identical copies."""

    def __init__(self, name: str, admin_url: str) -> None:
        self.name = name
        self.admin_url = admin_url

    def restore(self, label: str) -> PostgresBackend:
        copy = f"{self.name}_{label}"[:63]
        admin = _Pg(self.admin_url)
        try:
            admin.execute(f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{copy}" TEMPLATE "{self.name}"')
        finally:
            admin.close()
        return PostgresBackend(copy, admin_url=self.admin_url, create=False)

    def drop(self) -> None:
        PostgresBackend(self.name, admin_url=self.admin_url, create=False).drop()


def postgres_backend(label: str) -> PostgresBackend:
    """A new empty database ``ihub_bench_<random>_<label>``."""
    return PostgresBackend(f"ihub_bench_{secrets.token_hex(4)}_{label}"[:63])


def postgres_available() -> str | None:
    """None if the server answers, else why not."""
    try:
        conn = _Pg(postgres_admin_url())
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    conn.close()
    return None


def new_backend(kind: str, workdir: Path, label: str) -> Backend:
    """A fresh database of ``kind`` (``sqlite`` or ``postgresql``)."""
    if kind == "sqlite":
        return sqlite_backend(workdir, label)
    if kind == "postgresql":
        return postgres_backend(label)
    raise ValueError(f"unknown backend {kind!r}")
