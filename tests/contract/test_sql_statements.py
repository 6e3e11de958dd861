"""Every statement of adapters/sql/statements.py compiles and prepares on both databases.

Preparing parses the statement and resolves every table, column and type
against the migrated schema without running it, so a typo in a statement
that only a rare path runs (a purge, a redrive, a data-key rotation) fails
here rather than in production.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator

import asyncpg  # type: ignore[import-untyped]
import pytest

from integration_hub.adapters.sql import statements, webhook_statements
from integration_hub.adapters.sql.dialect import POSTGRES, SQLITE, Statement
from integration_hub.adapters.sqlite.database import SqliteDatabase

EVERY = statements.every() + webhook_statements.every()


@pytest.fixture(scope="module")
def sqlite_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    """A connection to a migrated SQLite file."""
    path = tmp_path_factory.mktemp("statements") / "hub.db"

    async def migrate() -> None:
        db = SqliteDatabase(path)
        try:
            await db.migrate()
        finally:
            db.close()

    asyncio.run(migrate())
    conn = sqlite3.connect(path)
    try:
        yield conn
    finally:
        conn.close()


def test_the_statements_module_is_not_empty() -> None:
    # every() finds the module's statements by type: an import change that
    # hid them would make the two tests below vacuous.
    assert len(EVERY) >= 50
    assert statements.RECEIVE in EVERY
    assert statements.PURGE_DEPENDENTS[0][1] in EVERY
    assert webhook_statements.CLAIM_DELIVERIES in EVERY


@pytest.mark.parametrize("statement", EVERY, ids=lambda s: s.name)
def test_each_statement_prepares_on_sqlite(
    sqlite_file: sqlite3.Connection, statement: Statement
) -> None:
    compiled = SQLITE.compile(statement)
    params = dict.fromkeys(compiled.names) | dict.fromkeys(compiled.lists, ())
    # EXPLAIN compiles the statement against the schema and runs none of it.
    plan = sqlite_file.execute("EXPLAIN " + compiled.sql, compiled.bind(params)).fetchall()
    assert plan
    assert sqlite_file.total_changes == 0


@pytest.mark.parametrize("statement", EVERY, ids=lambda s: s.name)
async def test_each_statement_prepares_on_postgres(postgres_url: str, statement: Statement) -> None:
    compiled = POSTGRES.compile(statement)
    conn = await asyncpg.connect(postgres_url)
    try:
        prepared = await conn.prepare(compiled.sql)
        # The server inferred one type per placeholder, as numbered.
        assert len(prepared.get_parameters()) == len(compiled.names)
    finally:
        await conn.close()


TYPO = Statement("typo", "SELECT notification_idd FROM queue WHERE available_at <= :now {lock}")


def test_a_typo_fails_to_prepare_on_sqlite(sqlite_file: sqlite3.Connection) -> None:
    compiled = SQLITE.compile(TYPO)
    with pytest.raises(sqlite3.OperationalError, match="notification_idd"):
        sqlite_file.execute("EXPLAIN " + compiled.sql, compiled.bind({"now": None}))


async def test_a_typo_fails_to_prepare_on_postgres(postgres_url: str) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:
        with pytest.raises(asyncpg.exceptions.UndefinedColumnError):
            await conn.prepare(POSTGRES.compile(TYPO).sql)
    finally:
        await conn.close()
