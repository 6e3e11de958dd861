"""Group commit on the SQLite writer thread, on a real database file."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from integration_hub.adapters.sqlite.database import SqliteDatabase
from integration_hub.domain.errors import DataRejected, Unavailable


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    made = SqliteDatabase(tmp_path / "group.db")
    await made.migrate()

    def schema(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE items (name TEXT PRIMARY KEY)")
        conn.execute("CREATE TABLE parents (id INTEGER PRIMARY KEY)")
        conn.execute(
            "CREATE TABLE children (parent INTEGER"
            " REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED)"
        )

    await made.write(schema)
    yield made
    made.close()


def insert(name: str, *, then_fail: bool = False) -> Callable[[sqlite3.Connection], str]:
    def run(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO items (name) VALUES (?)", (name,))
        if then_fail:
            raise ValueError(f"{name} failed after writing")
        return name

    return run


async def names(db: SqliteDatabase) -> set[str]:
    def run(conn: sqlite3.Connection) -> set[str]:
        return {r["name"] for r in conn.execute("SELECT name FROM items")}

    return await db.read(run)


async def queued_behind_a_gate(
    db: SqliteDatabase, *fns: Callable[[sqlite3.Connection], Any]
) -> tuple[threading.Event, list[asyncio.Future[Any]]]:
    """Hold the writer in a first write so that ``fns`` queue up and form one group."""
    gate, entered = threading.Event(), threading.Event()

    def hold(conn: sqlite3.Connection) -> None:
        entered.set()
        gate.wait(30)

    first = asyncio.ensure_future(db.write(hold))
    assert await asyncio.to_thread(entered.wait, 30)
    futures = [asyncio.ensure_future(db.write(fn)) for fn in fns]
    await asyncio.sleep(0)  # let every write reach the writer's queue
    return gate, [first, *futures]


async def test_writes_queued_together_commit_in_one_transaction(db: SqliteDatabase) -> None:
    before = db.writer.groups
    gate, futures = await queued_behind_a_gate(db, *(insert(f"n{i}") for i in range(10)))
    gate.set()
    results = await asyncio.gather(*futures)
    assert results[1:] == [f"n{i}" for i in range(10)]
    assert await names(db) == {f"n{i}" for i in range(10)}
    # The gate's own transaction, then one for the ten queued behind it.
    assert db.writer.groups - before == 2


async def test_a_failing_write_is_rolled_back_alone_and_the_others_commit(
    db: SqliteDatabase,
) -> None:
    gate, futures = await queued_behind_a_gate(
        db, insert("a"), insert("bad", then_fail=True), insert("c"), insert("a")
    )
    gate.set()
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert results[1] == "a"
    assert isinstance(results[2], ValueError)
    assert results[3] == "c"
    # The second "a" breaks the primary key: its own error, nobody else's, and
    # a permanent one (DataRejected), never an outage to retry.
    assert isinstance(results[4], DataRejected)
    assert isinstance(results[4].__cause__, sqlite3.IntegrityError)
    assert await names(db) == {"a", "c"}


async def test_a_failed_commit_fails_every_write_of_the_group(db: SqliteDatabase) -> None:
    def orphan(conn: sqlite3.Connection) -> None:
        # A deferred foreign key is only checked at COMMIT.
        conn.execute("INSERT INTO children (parent) VALUES (42)")

    gate, futures = await queued_behind_a_gate(db, insert("x"), orphan, insert("y"))
    gate.set()
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(r, DataRejected) for r in results[1:])
    assert all(isinstance(r.__cause__, sqlite3.IntegrityError) for r in results[1:])
    assert await names(db) == set()
    # The writer carries on afterwards.
    assert await db.write(insert("z")) == "z"
    assert await names(db) == {"z"}


async def test_a_single_failing_write_is_rolled_back(db: SqliteDatabase) -> None:
    with pytest.raises(ValueError, match="solo failed"):
        await db.write(insert("solo", then_fail=True))
    assert await names(db) == set()


async def test_a_cancelled_write_that_has_not_started_is_not_run(db: SqliteDatabase) -> None:
    gate, futures = await queued_behind_a_gate(db, insert("kept"), insert("dropped"))
    futures[2].cancel()
    with pytest.raises(asyncio.CancelledError):
        await futures[2]  # the cancellation has reached the writer's queue
    gate.set()
    await futures[0]
    assert await futures[1] == "kept"
    assert await names(db) == {"kept"}


async def test_a_busy_database_is_unavailable_not_an_error(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "busy.db", busy_timeout_ms=50)
    await db.migrate()
    other = sqlite3.connect(tmp_path / "busy.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(Unavailable):
            await db.write(insert("late"))
        other.execute("ROLLBACK")
    finally:
        other.close()
        db.close()
