"""Throwaway PostgreSQL databases for the test suites.

The server comes from ``IHUB_TEST_POSTGRES_URL`` (default: the local
server, maintenance database ``postgres``). Each throwaway database is
created through that maintenance connection and dropped (forcibly, in case
a killed process left sessions behind) when the test is done with it.

When the server cannot be reached, tests that need it are skipped with the
reason, or fail when ``CI=true``: a CI run must not go green by skipping.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
import pytest

T = TypeVar("T")

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PREFIX = "ihub_test_"


def server_url() -> str:
    """The maintenance database URL of the test server."""
    return os.environ.get("IHUB_TEST_POSTGRES_URL") or DEFAULT_SERVER_URL


def database_url(name: str) -> str:
    """The server URL with another database name."""
    parts = urlsplit(server_url())
    return urlunsplit(parts._replace(path="/" + name))


def database_name(url: str) -> str:
    """The database a URL names."""
    return urlsplit(url).path.lstrip("/")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a private loop in a private thread.

    Safe from synchronous fixtures and from inside a running event loop alike.
    """
    result: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, name="ihub-test-pg")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


async def admin(statement: str, *args: object) -> None:
    """Run one statement on the maintenance database."""
    conn = await asyncpg.connect(server_url(), timeout=5)
    try:
        await conn.execute(statement, *args)
    finally:
        await conn.close()


def _where(url: str) -> str:
    # Host, port and database only: never print a password.
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"


@functools.cache
def unreachable_reason() -> str | None:
    """Why the test server cannot be used, or None if it can (asked once per session)."""
    try:
        run_sync(admin("SELECT 1"))
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return (
            f"PostgreSQL not reachable at {_where(server_url())}: start it or set"
            f" IHUB_TEST_POSTGRES_URL ({type(exc).__name__}: {exc})"
        )
    return None


def require_server() -> None:
    """Skip the test when the server is down; fail instead when CI=true."""
    reason = unreachable_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)", pytrace=False)
    pytest.skip(reason)


def create_database() -> str:
    """A new, empty database on the test server; its URL."""
    require_server()
    name = PREFIX + secrets.token_hex(6)
    run_sync(admin(f'CREATE DATABASE "{name}"'))
    return database_url(name)


def drop_database(url: str) -> None:
    """Drop a database made by ``create_database``, whoever is still connected."""
    name = database_name(url)
    assert name.startswith(PREFIX), name
    run_sync(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def throwaway_database() -> Iterator[str]:
    """A new database for the duration of the block; its URL."""
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


def set_connections_allowed(url: str, allowed: bool) -> None:
    """Simulate an outage of one database: refuse new sessions and end current ones."""
    name = database_name(url)
    assert name.startswith(PREFIX), name
    run_sync(admin(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}'))
    if not allowed:
        run_sync(
            admin(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
        )


def terminate_backends(url: str, *, spare: str = "ihub-reliability-checker") -> int:
    """End every session of one database but those named ``spare`` (new ones are
    still allowed); how many."""
    name = database_name(url)
    assert name.startswith(PREFIX), name

    async def run() -> int:
        conn = await asyncpg.connect(server_url())
        try:
            ended = await conn.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()"
                " AND application_name IS DISTINCT FROM $2",
                name,
                spare,
            )
        finally:
            await conn.close()
        return sum(1 for r in ended if r[0])

    return run_sync(run())


async def truncate_all(conn: Any) -> None:
    """Empty every table of the current schema except the migration history."""
    tables = await conn.fetch(
        "SELECT quote_ident(tablename) AS t FROM pg_tables"
        " WHERE schemaname = current_schema() AND tablename <> 'schema_migrations'"
    )
    if tables:
        names = ", ".join(r["t"] for r in tables)
        await conn.execute(f"TRUNCATE {names} RESTART IDENTITY")
