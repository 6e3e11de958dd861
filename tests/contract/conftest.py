"""Every backend behind the Store and Queue ports, over a real connection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from integration_hub.adapters.sqlite.database import SqliteDatabase
from integration_hub.adapters.sqlite.queue import SqliteOutbox, SqliteQueue
from integration_hub.adapters.sqlite.store import SqliteStore
from support import Backend, ManualClock


async def _sqlite(tmp_path: Path, clock: ManualClock) -> Backend:
    db = SqliteDatabase(tmp_path / "contract.db", clock=clock)
    await db.migrate()
    return Backend("sqlite", SqliteStore(db), SqliteQueue(db), SqliteOutbox(db), clock)


FACTORIES = {"sqlite": _sqlite}


@pytest.fixture(params=sorted(FACTORIES))
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """A fresh, empty backend of each kind."""
    made = await FACTORIES[request.param](tmp_path, ManualClock())
    try:
        yield made
    finally:
        await made.store.close()
