"""One flow, run by the sync driver on SQLite and by the async driver on PostgreSQL.

The flows here are small transactions on the real schema (the tenants
table); each test runs the same generator on both real databases and
asserts what a caller sees: the answers, what was committed, what was
rolled back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import pg
from integration_hub.adapters.postgres.database import PostgresDatabase
from integration_hub.adapters.sql.dialect import Statement
from integration_hub.adapters.sql.flow import (
    AsyncRunner,
    Flow,
    Runner,
    SyncRunner,
    count,
    row,
    rows,
    run,
    value,
)
from integration_hub.adapters.sqlite.database import SqliteDatabase
from integration_hub.domain.errors import DataRejected
from support import ManualClock

INSERT = Statement(
    "test_insert",
    "INSERT INTO tenants (id, name, status, created_at, config)"
    " VALUES (:id, :name, 'active', :now, '{}')",
)
RENAME = Statement("test_rename", "UPDATE tenants SET name = :name WHERE name LIKE :pattern")
BY_ID = Statement("test_by_id", "SELECT id, name FROM tenants WHERE id = :id {lock}")
NAMES = Statement("test_names", "SELECT name FROM tenants WHERE id {one_of:ids} ORDER BY id")
HOW_MANY = Statement("test_how_many", "SELECT COUNT(*) FROM tenants")


class Boom(Exception):
    """Raised by a flow after it wrote."""


def every_kind_of_result(now: float) -> Flow[dict[str, Any]]:
    """Writes three tenants, renames two, and reads them back every way there is."""
    for i in range(3):
        yield run(INSERT, id=f"t{i}", name=f"tenant {i}", now=now)
    renamed = yield count(RENAME, name="renamed", pattern="tenant _")
    first = yield row(BY_ID, id="t0")
    missing = yield row(BY_ID, id="nobody")
    names = yield rows(NAMES, ids=["t2", "t0"])
    total = yield value(HOW_MANY)
    none = yield value(Statement("test_none", "SELECT name FROM tenants WHERE id = :id"), id="x")
    return {
        "renamed": renamed,
        "first": (first["id"], first["name"]),
        "missing": missing,
        "names": [r["name"] for r in names],
        "total": total,
        "none": none,
    }


def insert_then_fail(tenant_id: str, now: float) -> Flow[None]:
    yield run(INSERT, id=tenant_id, name="doomed", now=now)
    raise Boom


def insert(tenant_id: str, now: float) -> Flow[int]:
    yield run(INSERT, id=tenant_id, name="kept", now=now)
    return int((yield value(HOW_MANY)))


@pytest.fixture(params=["sqlite", "postgres"])
async def runner(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Runner]:
    """A runner on a fresh, migrated database of each kind."""
    clock = ManualClock()
    if request.param == "sqlite":
        lite = SqliteDatabase(tmp_path / "flows.db", clock=clock)
        await lite.migrate()
        try:
            yield SyncRunner(lite)
        finally:
            lite.close()
        return
    db = PostgresDatabase(request.getfixturevalue("postgres_url"), clock=clock)
    await db.open()
    async with db.connection() as conn:
        await pg.truncate_all(conn)
    try:
        yield AsyncRunner(db)
    finally:
        await db.close()


async def test_a_flow_answers_the_same_on_both_databases(runner: Runner) -> None:
    answer = await runner.write(every_kind_of_result(runner.clock.now()))
    assert answer == {
        "renamed": 3,
        "first": ("t0", "renamed"),
        "missing": None,
        "names": ["renamed", "renamed"],
        "total": 3,
        "none": None,
    }
    assert await runner.read(insert_count()) == 3


def insert_count() -> Flow[int]:
    return int((yield value(HOW_MANY)))


async def test_a_flow_that_raises_leaves_nothing_behind(runner: Runner) -> None:
    with pytest.raises(Boom):
        await runner.write(insert_then_fail("t-doomed", runner.clock.now()))
    assert await runner.read(insert_count()) == 0
    # The database is usable afterwards.
    assert await runner.write(insert("t-kept", runner.clock.now())) == 1


async def test_concurrent_flows_each_commit_or_roll_back_alone(runner: Runner) -> None:
    now = runner.clock.now()
    results = await asyncio.gather(
        *(
            runner.write(insert_then_fail(f"bad{i}", now) if i % 2 else insert(f"ok{i}", now))
            for i in range(10)
        ),
        return_exceptions=True,
    )
    assert sum(isinstance(r, Boom) for r in results) == 5
    assert await runner.read(insert_count()) == 5


async def test_sqlite_runs_concurrent_flows_in_shared_group_commits(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "group.db", clock=ManualClock())
    await db.migrate()
    try:
        sql = SyncRunner(db)
        now = sql.clock.now()
        groups, jobs = db.writer.groups, db.writer.jobs
        await asyncio.gather(*(sql.write(insert(f"t{i}", now)) for i in range(50)))
        assert db.writer.jobs - jobs == 50
        assert db.writer.groups - groups < 50  # some flows shared a COMMIT (ADR 0013)
        assert await sql.read(insert_count()) == 50
    finally:
        db.close()


async def test_postgres_autocommit_refuses_a_flow_of_two_statements(postgres_url: str) -> None:
    db = PostgresDatabase(postgres_url, clock=ManualClock())
    await db.open()
    try:
        async with db.connection() as conn:
            await pg.truncate_all(conn)
        sql = AsyncRunner(db)
        with pytest.raises(RuntimeError, match="one statement"):
            await sql.autocommit(insert("t1", sql.clock.now()))
        # The first statement ran on its own (no transaction to undo it).
        assert await sql.read(insert_count()) == 1
    finally:
        await db.close()


async def test_a_flow_is_closed_at_once_when_a_statement_fails(runner: Runner) -> None:
    closed: list[bool] = []

    def watched() -> Flow[int]:
        try:
            yield run(INSERT, id="t1", name="n", now=0.0)
            yield run(INSERT, id="t1", name="n", now=0.0)  # the same id: refused
            return 0
        finally:
            closed.append(True)

    with pytest.raises(DataRejected):
        await runner.write(watched())
    assert closed == [True]
    assert await runner.read(insert_count()) == 0
