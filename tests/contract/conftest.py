"""Every backend behind the Store and Queue ports, over a real connection."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

import pg
from integration_hub.adapters.postgres.database import PostgresDatabase
from integration_hub.adapters.postgres.queue import PostgresOutbox, PostgresQueue
from integration_hub.adapters.postgres.store import PostgresStore
from integration_hub.adapters.sqlite.database import SqliteDatabase
from integration_hub.adapters.sqlite.queue import SqliteOutbox, SqliteQueue
from integration_hub.adapters.sqlite.store import SqliteStore
from support import Backend, ManualClock


async def _sqlite(request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock) -> Backend:
    db = SqliteDatabase(tmp_path / "contract.db", clock=clock)
    await db.migrate()
    return Backend("sqlite", SqliteStore(db), SqliteQueue(db), SqliteOutbox(db), clock)


async def _postgres(request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock) -> Backend:
    url: str = request.getfixturevalue("postgres_url")
    db = PostgresDatabase(url, clock=clock)
    await db.open()
    async with db.connection() as conn:
        await pg.truncate_all(conn)
    return Backend("postgres", PostgresStore(db), PostgresQueue(db), PostgresOutbox(db), clock)


FACTORIES: dict[str, Callable[[pytest.FixtureRequest, Path, ManualClock], Awaitable[Backend]]] = {
    "sqlite": _sqlite,
    "postgres": _postgres,
}


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One throwaway database for the session, migrated once; each test empties it."""

    async def migrate(url: str) -> None:
        db = PostgresDatabase(url)
        await db.open()
        try:
            await db.migrate()
        finally:
            await db.close()

    with pg.throwaway_database() as url:
        pg.run_sync(migrate(url))
        yield url


@pytest.fixture(params=sorted(FACTORIES))
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """A fresh, empty backend of each kind."""
    made = await FACTORIES[request.param](request, tmp_path, ManualClock())
    try:
        yield made
    finally:
        await made.store.close()
