"""PostgreSQL-only behaviour: LISTEN/NOTIFY across processes, migrations, outages, keys."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

import pg
from integration_hub.adapters.postgres.credentials import PostgresCredentials
from integration_hub.adapters.postgres.database import PostgresDatabase, migrations
from integration_hub.adapters.postgres.queue import PostgresOutbox, PostgresQueue
from integration_hub.adapters.postgres.store import PostgresStore
from integration_hub.bootstrap import ConfigurationError, build_hub
from integration_hub.config import Settings
from integration_hub.domain.errors import NotFound, Unavailable
from support import Backend, ManualClock, accept, notification, tenant

LATEST = migrations()[-1].version


@pytest.fixture
def fresh_url() -> Iterator[str]:
    """An empty throwaway database of its own."""
    with pg.throwaway_database() as url:
        yield url


async def opened(url: str, **options: Any) -> PostgresDatabase:
    db = PostgresDatabase(url, **options)
    await db.open()
    return db


@pytest.fixture
async def two_processes(postgres_url: str) -> AsyncIterator[tuple[PostgresQueue, PostgresQueue]]:
    """Two queues on one database that share nothing but the server, like two processes."""
    first, second = await opened(postgres_url), await opened(postgres_url)
    async with first.connection() as conn:
        await pg.truncate_all(conn)
    try:
        yield PostgresQueue(first), PostgresQueue(second)
    finally:
        await first.close()
        await second.close()


async def test_an_enqueue_elsewhere_wakes_a_waiting_worker_through_notify(
    two_processes: tuple[PostgresQueue, PostgresQueue],
) -> None:
    api, worker = two_processes
    waiting = asyncio.create_task(worker.wait_for_messages(10.0))
    await asyncio.sleep(0.3)  # the worker is LISTENing and waiting by now
    assert not waiting.done()
    started = time.monotonic()
    await api.enqueue("n1", "acme")
    await asyncio.wait_for(waiting, 5.0)
    assert time.monotonic() - started < 2.0
    assert [m.notification_id for m in await worker.receive(10, visibility_timeout=30)] == ["n1"]


async def test_a_delayed_message_elsewhere_is_waited_for_not_polled(
    two_processes: tuple[PostgresQueue, PostgresQueue],
) -> None:
    api, worker = two_processes
    await api.enqueue("later", "acme", delay=0.5)
    started = time.monotonic()
    await asyncio.wait_for(worker.wait_for_messages(10.0), 5.0)
    assert 0.3 <= time.monotonic() - started < 2.0


async def test_concurrent_starters_apply_each_migration_once(fresh_url: str) -> None:
    dbs = [await opened(fresh_url) for _ in range(5)]
    try:
        versions = await asyncio.gather(*[db.migrate() for db in dbs])
        assert versions == [LATEST] * 5
        async with dbs[0].connection() as conn:
            applied = [
                r["version"]
                for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")
            ]
        assert applied == [m.version for m in migrations()]
        assert await dbs[0].migrate() == LATEST
        assert await dbs[0].schema_version() == LATEST
    finally:
        for db in dbs:
            await db.close()


async def test_without_auto_migrate_an_old_schema_is_refused(fresh_url: str) -> None:
    settings = Settings(database_url=fresh_url, auto_migrate=False)
    with pytest.raises(ConfigurationError, match="ihub migrate"):
        await build_hub(settings)
    hub = await build_hub(Settings(database_url=fresh_url))  # migrates
    await hub.close()
    hub = await build_hub(settings)
    await hub.close()


async def test_an_unreachable_server_is_unavailable() -> None:
    db = PostgresDatabase("postgresql://postgres@127.0.0.1:1/nothing", timeout=2)
    with pytest.raises(Unavailable) as caught:
        await db.open()
    assert caught.value.retry_after > 0
    assert "127.0.0.1" not in caught.value.message  # clients see the condition, not the server


async def test_an_exhausted_pool_is_unavailable_not_a_hang(fresh_url: str) -> None:
    db = await opened(fresh_url, max_size=1, timeout=0.2)
    try:
        async with db.connection():
            started = time.monotonic()
            with pytest.raises(Unavailable):
                async with db.connection():
                    pass
            assert time.monotonic() - started < 2.0
    finally:
        await db.close()


async def test_an_outage_is_unavailable_and_the_backend_recovers(fresh_url: str) -> None:
    clock = ManualClock()
    db = await opened(fresh_url, clock=clock)
    await db.migrate()
    backend = Backend("postgres", PostgresStore(db), PostgresQueue(db), PostgresOutbox(db), clock)
    await backend.store.create_tenant(tenant("acme", clock))
    before = notification(clock=clock)
    await accept(backend, before)
    try:
        pg.set_connections_allowed(fresh_url, False)
        operations: list[Callable[[], Awaitable[object]]] = [
            lambda: backend.store.get_tenant("acme"),
            lambda: backend.store.get_notification("acme", before.id),
            lambda: backend.queue.receive(10, visibility_timeout=30),
            lambda: backend.store.claim(before.id, "t", lease_seconds=30, max_attempts=5),
            lambda: accept(backend, notification(clock=clock)),
        ]
        for operation in operations:
            with pytest.raises(Unavailable) as caught:
                await operation()
            assert caught.value.retry_after >= 1
        # A waiting worker falls back to polling instead of failing.
        await asyncio.wait_for(backend.queue.wait_for_messages(0.2), 5.0)
    finally:
        pg.set_connections_allowed(fresh_url, True)
    found = await backend.store.get_notification("acme", before.id)
    assert found is not None
    # Nothing half-written by the refused accept: the one accepted message is all there is.
    received = await backend.queue.receive(10, visibility_timeout=30)
    assert [m.notification_id for m in received] == [before.id]
    assert [n.id for n in await backend.store.list_notifications("acme")] == [before.id]
    await db.close()


@pytest.fixture
async def credentials(postgres_url: str) -> AsyncIterator[PostgresCredentials]:
    """The credential and data-key store on the emptied session database, tenant acme."""
    db = await opened(postgres_url)
    async with db.connection() as conn:
        await pg.truncate_all(conn)
    await PostgresStore(db).create_tenant(tenant("acme"))
    try:
        yield PostgresCredentials(db)
    finally:
        await db.close()


async def test_credentials_are_kept_per_tenant_and_provider(
    credentials: PostgresCredentials,
) -> None:
    assert await credentials.get_credentials("acme", "smtp") is None
    await credentials.put_credentials("acme", "smtp", {"host": "a"})
    await credentials.put_credentials("acme", "smtp", {"host": "b"})
    await credentials.put_credentials("acme", "twilio", {"sid": "x"})
    assert await credentials.get_credentials("acme", "smtp") == {"host": "b"}
    assert await credentials.list_credentials("acme") == ["smtp", "twilio"]
    with pytest.raises(NotFound):
        await credentials.put_credentials("nobody", "smtp", {})
    assert await credentials.list_credentials("nobody") == []


async def test_a_tenant_gets_one_data_key_even_when_two_race(
    credentials: PostgresCredentials,
) -> None:
    assert await credentials.get_data_key("acme") is None
    stored = await asyncio.gather(
        *[credentials.add_data_key("acme", bytes([i]) * 8) for i in range(5)]
    )
    assert len(set(stored)) == 1
    assert await credentials.get_data_key("acme") == stored[0]
    assert not await credentials.replace_data_key("acme", b"not it", b"new")
    assert await credentials.replace_data_key("acme", stored[0], b"rotated")
    assert await credentials.list_data_keys() == [("acme", b"rotated")]


async def test_a_connection_the_pool_took_back_mid_use_is_unavailable_not_a_crash(
    postgres_url: str,
) -> None:
    # Seen under a database outage: the pool had already released the broken
    # connection, so even asking it is_closed() raised, and the API answered 500.
    db = await opened(postgres_url)

    async def use_after_the_pool_took_it_back() -> None:
        async with db.connection() as conn:
            assert db._pool is not None
            await db._pool.release(conn)
            await conn.execute("SELECT 1")

    try:
        with pytest.raises(Unavailable):
            await use_after_the_pool_took_it_back()
        async with db.connection() as conn:  # the pool still serves
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await db.close()
