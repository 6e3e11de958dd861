"""Transactions written once as flows, run by a sync driver or an async one.

A flow is a generator: it yields a ``Query`` (a statement, its parameters
and what to fetch) and is sent back the result, decides what to do next
(through ``domain/lifecycle.py``), and finally returns its answer. It never
touches a connection, so the same flow runs

- on SQLite, by ``run_sync`` on the writer thread inside the group commit of
  ADR 0013 (``SyncRunner.write``) or on a reader thread (``SyncRunner.read``);
- on PostgreSQL, by ``run_async`` on a pooled asyncpg connection, inside one
  transaction (``AsyncRunner.write``) or outside any (``read``, ``autocommit``).

This is the shape of httpx's auth flows (ADR 0018): one generator, driven by
a sync and an async client.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol, TypeVar

from integration_hub.adapters.sql.dialect import POSTGRES, SQLITE, Dialect, Statement
from integration_hub.ports import Clock

T = TypeVar("T")


class Fetch(Enum):
    """What a query's result is, as sent back into the flow."""

    ALL = "all"
    """Every row (a list)."""
    ONE = "one"
    """The first row, or None."""
    VALUE = "value"
    """The first column of the first row, or None."""
    COUNT = "count"
    """How many rows the statement changed."""
    NOTHING = "nothing"
    """None."""


@dataclass(frozen=True, slots=True)
class Query:
    """One statement to run, with its parameters."""

    statement: Statement
    params: Mapping[str, Any]
    fetch: Fetch


Flow = Generator[Query, Any, T]
"""A transaction: yields queries, receives their results, returns its answer."""


def rows(statement: Statement, **params: Any) -> Query:
    """Fetch every row."""
    return Query(statement, params, Fetch.ALL)


def row(statement: Statement, **params: Any) -> Query:
    """Fetch the first row (None if there is none)."""
    return Query(statement, params, Fetch.ONE)


def value(statement: Statement, **params: Any) -> Query:
    """Fetch the first column of the first row (None if there is none)."""
    return Query(statement, params, Fetch.VALUE)


def count(statement: Statement, **params: Any) -> Query:
    """Run a write; receive how many rows it changed."""
    return Query(statement, params, Fetch.COUNT)


def run(statement: Statement, **params: Any) -> Query:
    """Run a write; receive None."""
    return Query(statement, params, Fetch.NOTHING)


def single(query: Query) -> Flow[Any]:
    """A flow of one query, answering its result."""
    return (yield query)


# -- the sync driver (SQLite) ---------------------------------------------------------


def run_sync(conn: Any, flow: Flow[T], dialect: Dialect = SQLITE) -> T:
    """Drive ``flow`` on a DB-API connection (``sqlite3``), in the caller's thread."""
    result: Any = None
    try:
        while True:
            query = flow.send(result)
            compiled = dialect.compile(query.statement)
            cursor = conn.execute(compiled.sql, compiled.bind(query.params))
            if query.fetch is Fetch.COUNT:
                result = cursor.rowcount
                continue
            # Read to the end: no statement stays open in the transaction.
            found = cursor.fetchall()
            if query.fetch is Fetch.ALL:
                result = found
            elif query.fetch is Fetch.ONE:
                result = found[0] if found else None
            elif query.fetch is Fetch.VALUE:
                result = found[0][0] if found else None
            else:
                result = None
    except StopIteration as done:
        answer: T = done.value
        return answer
    finally:
        flow.close()


# -- the async driver (asyncpg) --------------------------------------------------------


async def run_async(
    conn: Any, flow: Flow[T], dialect: Dialect = POSTGRES, *, statements: int | None = None
) -> T:
    """Drive ``flow`` on an asyncpg connection; at most ``statements`` queries if given."""
    result: Any = None
    ran = 0
    try:
        while True:
            query = flow.send(result)
            ran += 1
            if statements is not None and ran > statements:
                raise RuntimeError(f"{query.statement.name}: this flow must be one statement")
            compiled = dialect.compile(query.statement)
            args = compiled.bind(query.params)
            if query.fetch is Fetch.ALL:
                result = await conn.fetch(compiled.sql, *args)
            elif query.fetch is Fetch.ONE:
                result = await conn.fetchrow(compiled.sql, *args)
            elif query.fetch is Fetch.VALUE:
                result = await conn.fetchval(compiled.sql, *args)
            elif query.fetch is Fetch.COUNT:
                status = await conn.execute(compiled.sql, *args)
                result = int(status.split()[-1])  # "UPDATE 1", "INSERT 0 1", "DELETE 3"
            else:
                await conn.execute(compiled.sql, *args)
                result = None
    except StopIteration as done:
        answer: T = done.value
        return answer
    finally:
        flow.close()


# -- runners: where each backend runs a flow ------------------------------------------


class Runner(Protocol):
    """Runs flows against one database; the shared store, queue and retention use it."""

    @property
    def clock(self) -> Clock:
        """The database's clock: every time in SQL is this clock's, passed as a parameter."""
        ...

    async def read(self, flow: Flow[T]) -> T:
        """Run a flow that only reads."""
        ...

    async def write(self, flow: Flow[T]) -> T:
        """Run a flow in one write transaction."""
        ...

    async def autocommit(self, flow: Flow[T]) -> T:
        """Run a flow of one statement (atomic by itself: no BEGIN/COMMIT needed)."""
        ...

    def notify_enqueued(self) -> None:
        """Wake this process's idle consumers after a write that enqueued."""
        ...


class ThreadedDatabase(Protocol):
    """What ``SyncRunner`` needs of ``SqliteDatabase``."""

    clock: Clock

    async def read(self, fn: Callable[[Any], T]) -> T: ...

    async def write(self, fn: Callable[[Any], T]) -> T: ...

    def notify_enqueued(self) -> None: ...


class PooledDatabase(Protocol):
    """What ``AsyncRunner`` needs of ``PostgresDatabase``."""

    clock: Clock

    def connection(self) -> AbstractAsyncContextManager[Any]: ...

    def transaction(self) -> AbstractAsyncContextManager[Any]: ...

    def notify_enqueued(self) -> None: ...


class SyncRunner:
    """Flows on SQLite: writes on the writer thread (group commit), reads on a reader."""

    def __init__(self, db: ThreadedDatabase) -> None:
        self.db = db

    @property
    def clock(self) -> Clock:
        """The database's clock."""
        return self.db.clock

    async def read(self, flow: Flow[T]) -> T:
        """On a reader thread."""
        return await self.db.read(lambda conn: run_sync(conn, flow))

    async def write(self, flow: Flow[T]) -> T:
        """On the writer thread, in its own SAVEPOINT of a group transaction."""
        return await self.db.write(lambda conn: run_sync(conn, flow))

    async def autocommit(self, flow: Flow[T]) -> T:
        """Every write goes through the writer thread."""
        return await self.write(flow)

    def notify_enqueued(self) -> None:
        """Wake in-process consumers."""
        self.db.notify_enqueued()


class AsyncRunner:
    """Flows on PostgreSQL: one pooled connection per flow."""

    def __init__(self, db: PooledDatabase) -> None:
        self.db = db

    @property
    def clock(self) -> Clock:
        """The database's clock."""
        return self.db.clock

    async def read(self, flow: Flow[T]) -> T:
        """On a connection, outside a transaction (each statement its own snapshot)."""
        async with self.db.connection() as conn:
            return await run_async(conn, flow)

    async def write(self, flow: Flow[T]) -> T:
        """In one transaction (READ COMMITTED); row locks come from ``{lock}``."""
        async with self.db.transaction() as conn:
            return await run_async(conn, flow)

    async def autocommit(self, flow: Flow[T]) -> T:
        """One statement, without the two extra round trips of BEGIN and COMMIT."""
        async with self.db.connection() as conn:
            return await run_async(conn, flow, statements=1)

    def notify_enqueued(self) -> None:
        """Wake in-process consumers (other processes hear the NOTIFY)."""
        self.db.notify_enqueued()
