"""A value PostgreSQL refuses is a permanent error: never an outage, never retried.

Ingest refuses NUL and control characters, so these tests put the data in
below it, as a notification accepted before those rules (or by a bug) would
be: straight into the store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import pg
from integration_hub.adapters.postgres.database import PostgresDatabase
from integration_hub.adapters.postgres.queue import PostgresOutbox, PostgresQueue
from integration_hub.adapters.postgres.store import PostgresStore
from integration_hub.adapters.providers.sandbox import SandboxProvider
from integration_hub.domain.errors import DataRejected, Unavailable
from integration_hub.domain.models import STORED, NotificationRequest, Outcome
from integration_hub.domain.retry import RetryPolicy
from integration_hub.domain.routing import Channel
from integration_hub.domain.status import Status
from integration_hub.ports import Provider
from integration_hub.service.dispatch import Dispatcher, DispatchSettings, Result
from integration_hub.service.tenants import TenantCache
from support import Backend, ManualClock, accept, notification, tenant

NUL_BODY = "hello\x00world"


@pytest.fixture
async def backend(postgres_url: str) -> AsyncIterator[Backend]:
    clock = ManualClock()
    db = PostgresDatabase(postgres_url, clock=clock)
    await db.open()
    async with db.connection() as conn:
        await pg.truncate_all(conn)
    made = Backend("postgres", PostgresStore(db), PostgresQueue(db), PostgresOutbox(db), clock)
    await made.store.create_tenant(tenant("acme", clock))
    try:
        yield made
    finally:
        await made.store.close()


class Sandboxes:
    """The sandbox provider for every channel (the store writes its outbox rows)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def get(self, tenant: str, channel: Channel, name: str) -> Provider:
        return SandboxProvider(channel)

    async def close(self) -> None:
        return None


def dispatcher(backend: Backend, max_attempts: int = 5) -> Dispatcher:
    return Dispatcher(
        backend.store,
        backend.queue,
        Sandboxes(backend),
        backend.clock,
        RetryPolicy(max_attempts=max_attempts, base_seconds=1, cap_seconds=2),
        TenantCache(backend.store, backend.clock, ttl_seconds=0),
        DispatchSettings(lease_seconds=30, provider_timeout_seconds=5),
    )


async def test_a_nul_byte_in_a_text_value_is_rejected_data_not_an_outage(
    postgres_url: str,
) -> None:
    db = PostgresDatabase(postgres_url)
    await db.open()
    try:
        with pytest.raises(DataRejected) as caught:
            async with db.connection() as conn:
                await conn.execute("SELECT $1::text", NUL_BODY)
        assert not isinstance(caught.value, Unavailable)
        # The SQLSTATE and the error class, never the value itself.
        assert "22021" in caught.value.message
        assert "hello" not in caught.value.message
        # The pool is fine afterwards: nothing was taken for an outage.
        async with db.connection() as conn:
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await db.close()


async def test_a_store_write_postgres_refuses_raises_data_rejected(backend: Backend) -> None:
    with pytest.raises(DataRejected):
        await backend.store.reserve_idempotency_key(
            "acme", "key\x00", "fp", reservation="r1", lock_seconds=10
        )


async def test_a_stored_nul_that_the_outbox_refuses_fails_at_once_without_retries(
    backend: Backend,
) -> None:
    n = notification(clock=backend.clock)
    n.request = NotificationRequest.model_validate(
        {"recipient": {"email": "ana@example.com"}, "body": NUL_BODY}, context=STORED
    )
    await accept(backend, n)
    d = dispatcher(backend, max_attempts=5)
    [message] = await backend.queue.receive(1, visibility_timeout=30)
    assert await d.handle(message) is Result.FAILED
    failed = await backend.store.get_notification("acme", n.id)
    assert failed is not None
    assert failed.status is Status.FAILED
    # One attempt, a permanent one: the budget of five was not burnt on it.
    assert [(a.outcome, a.error_class) for a in failed.attempts] == [
        (Outcome.PERMANENT, "data_rejected")
    ]
    assert failed.last_error is not None
    assert "data_rejected" in failed.last_error
    assert "hello" not in failed.last_error
    # Settled: nothing comes back, however long we wait.
    backend.clock.advance(3600)
    assert await backend.queue.receive(10, visibility_timeout=30) == []
    [letter] = await backend.store.list_dead_letters("acme")
    assert letter.notification_id == n.id


async def test_handling_that_raises_data_rejected_is_dead_lettered_on_the_first_delivery(
    backend: Backend,
) -> None:
    n = notification(clock=backend.clock)
    await accept(backend, n)
    d = dispatcher(backend, max_attempts=5)
    [message] = await backend.queue.receive(1, visibility_timeout=30)
    assert message.receive_count == 1
    # What the worker does when recording an attempt raises DataRejected.
    assert await d.give_up(message, DataRejected("the database refused a value: DataError"))
    failed = await backend.store.get_notification("acme", n.id)
    assert failed is not None
    assert failed.status is Status.FAILED
    assert failed.last_error == "data rejected: the database refused a value: DataError"
    # An outage, by contrast, is still waited out.
    other = notification(clock=backend.clock)
    await accept(backend, other)
    [again] = await backend.queue.receive(1, visibility_timeout=30)
    assert not await d.give_up(again, Unavailable())
