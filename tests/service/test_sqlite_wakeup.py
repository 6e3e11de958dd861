"""Waiting for messages on SQLite while another connection (process) commits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from integration_hub.adapters.sqlite.database import SqliteDatabase
from integration_hub.adapters.sqlite.queue import SqliteQueue


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[tuple[SqliteQueue, SqliteQueue]]:
    """Two databases on one file: as an API process and a worker process see it."""
    api, worker = SqliteDatabase(tmp_path / "q.db"), SqliteDatabase(tmp_path / "q.db")
    await api.migrate()
    await worker.migrate()
    yield SqliteQueue(api), SqliteQueue(worker)
    api.close()
    worker.close()


async def timed_wait(queue: SqliteQueue, max_wait: float) -> float:
    started = time.monotonic()
    await queue.wait_for_messages(max_wait)
    return time.monotonic() - started


async def test_a_commit_by_another_connection_ends_the_wait_early(
    two: tuple[SqliteQueue, SqliteQueue],
) -> None:
    api, worker = two
    waiting = asyncio.create_task(timed_wait(worker, 30))
    await asyncio.sleep(0.2)  # the worker is waiting by now
    assert not waiting.done()
    await api.enqueue("n1", "acme")
    # Generous for a loaded machine; the poll interval alone would be 30 s.
    took = await asyncio.wait_for(waiting, 10)
    assert took < 10
    assert [m.notification_id for m in await worker.receive(10, visibility_timeout=30)] == ["n1"]


async def test_commits_that_make_nothing_due_do_not_wake_the_waiter(
    two: tuple[SqliteQueue, SqliteQueue],
) -> None:
    api, worker = two
    waiting = asyncio.create_task(timed_wait(worker, 1.0))
    for i in range(5):
        await asyncio.sleep(0.05)
        # Delayed far into the future, and another idle consumer's empty receive.
        await api.enqueue(f"later-{i}", "acme", delay=3600)
        assert await api.receive(10, visibility_timeout=30) == []
    took = await waiting
    assert took >= 0.9  # it waited its whole second, then returned


async def test_a_delayed_message_from_another_connection_shortens_the_wait(
    two: tuple[SqliteQueue, SqliteQueue],
) -> None:
    api, worker = two
    waiting = asyncio.create_task(timed_wait(worker, 30))
    await asyncio.sleep(0.1)
    await api.enqueue("soon", "acme", delay=0.5)
    took = await asyncio.wait_for(waiting, 10)
    assert 0.3 < took < 10
    assert [m.notification_id for m in await worker.receive(10, visibility_timeout=30)] == ["soon"]
