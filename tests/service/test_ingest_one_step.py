"""Ingest under a new Idempotency-Key in one store transaction, on a real SQLite store."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from integration_hub.adapters.sqlite.database import SqliteDatabase
from integration_hub.adapters.sqlite.queue import SqliteQueue
from integration_hub.adapters.sqlite.store import SqliteStore
from integration_hub.domain import errors
from integration_hub.domain.models import Notification, NotificationRequest
from integration_hub.domain.status import Status
from integration_hub.domain.tenants import Tenant
from integration_hub.ports import FirstAccept, IdempotencyRecord, IngestStore, NewKeyAccept
from integration_hub.service.ingest import IngestService
from support import ManualClock, tenant


class Calls(IngestStore, NewKeyAccept):
    """The SQLite store's ingest roles, counting the calls made to them.

    It subclasses the two ports so that mypy checks every method against them.
    """

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    async def consume_quota(
        self, tenant: str, *, per_second: int | None, per_day: int | None
    ) -> float | None:
        self.calls["consume_quota"] += 1
        return await self.inner.consume_quota(tenant, per_second=per_second, per_day=per_day)

    async def reserve_idempotency_key(
        self, tenant: str, key: str, fingerprint: str, *, reservation: str, lock_seconds: float
    ) -> IdempotencyRecord | None:
        self.calls["reserve_idempotency_key"] += 1
        return await self.inner.reserve_idempotency_key(
            tenant, key, fingerprint, reservation=reservation, lock_seconds=lock_seconds
        )

    async def release_idempotency_key(self, tenant: str, key: str, *, reservation: str) -> None:
        await self.inner.release_idempotency_key(tenant, key, reservation=reservation)

    async def accept(
        self,
        notification: Notification,
        response: dict[str, Any],
        *,
        reservation: str,
        ttl_seconds: float,
    ) -> bool:
        self.calls["accept"] += 1
        return await self.inner.accept(
            notification, response, reservation=reservation, ttl_seconds=ttl_seconds
        )

    async def accept_new(
        self,
        notification: Notification,
        response: dict[str, Any],
        *,
        fingerprint: str,
        ttl_seconds: float,
    ) -> FirstAccept:
        self.calls["accept_new"] += 1
        return await self.inner.accept_new(
            notification, response, fingerprint=fingerprint, ttl_seconds=ttl_seconds
        )


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[Calls, SqliteQueue, ManualClock]]:
    clock = ManualClock()
    db = SqliteDatabase(tmp_path / "ingest.db", clock=clock)
    await db.migrate()
    store = SqliteStore(db)
    yield Calls(store), SqliteQueue(db), clock
    await store.close()


def request(body: str = "hola") -> NotificationRequest:
    return NotificationRequest.model_validate(
        {"recipient": {"email": "a@example.com"}, "body": body}
    )


async def test_a_new_key_is_accepted_in_one_step_and_replayed_after(
    parts: tuple[Calls, SqliteQueue, ManualClock],
) -> None:
    store, queue, clock = parts
    ingest = IngestService(store, queue, clock)
    acme = tenant("acme", clock)
    first = await ingest.submit(acme, "ES", "key-1", request())
    assert not first.replayed
    assert store.calls == Counter(accept_new=1)
    again = await ingest.submit(acme, "ES", "key-1", request())
    assert again.replayed
    assert again.body == first.body
    with pytest.raises(errors.IdempotencyConflict):
        await ingest.submit(acme, "ES", "key-1", request("another payload"))
    stored = await store.inner.get_notification("acme", first.body["id"])
    assert stored is not None
    assert stored.status is Status.RECEIVED
    assert len(await queue.receive(10, visibility_timeout=30)) == 1


async def test_a_tenant_with_limits_keeps_the_two_phase_path_and_its_quota(
    parts: tuple[Calls, SqliteQueue, ManualClock],
) -> None:
    store, queue, clock = parts
    ingest = IngestService(store, queue, clock)
    limited = Tenant(id="lim", name="Lim", created_at=tenant().created_at, daily_quota=1)
    await store.inner.create_tenant(limited)
    assert not (await ingest.submit(limited, "ES", "a", request())).replayed
    assert store.calls == Counter(reserve_idempotency_key=1, consume_quota=1, accept=1)
    with pytest.raises(errors.RateLimited):
        await ingest.submit(limited, "ES", "b", request())
    assert store.calls["accept_new"] == 0
