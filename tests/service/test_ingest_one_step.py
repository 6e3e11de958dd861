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
from integration_hub.domain.models import NotificationRequest
from integration_hub.domain.status import Status
from integration_hub.domain.tenants import Tenant
from integration_hub.ports import Store
from integration_hub.service.ingest import IngestService
from support import ManualClock, tenant


class Calls:
    """The SQLite store, counting the ingest calls made to it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if name not in {"accept_new", "reserve_idempotency_key", "accept", "consume_quota"}:
            return attr

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return await attr(*args, **kwargs)

        return counted


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
    ingest = IngestService(store, queue, clock)  # type: ignore[arg-type]
    acme = tenant("acme", clock)
    first = await ingest.submit(acme, "ES", "key-1", request())
    assert not first.replayed
    assert store.calls == Counter(accept_new=1)
    again = await ingest.submit(acme, "ES", "key-1", request())
    assert again.replayed
    assert again.body == first.body
    with pytest.raises(errors.IdempotencyConflict):
        await ingest.submit(acme, "ES", "key-1", request("another payload"))
    stored = await store.get_notification("acme", first.body["id"])
    assert stored is not None
    assert stored.status is Status.RECEIVED
    assert len(await queue.receive(10, visibility_timeout=30)) == 1


async def test_a_tenant_with_limits_keeps_the_two_phase_path_and_its_quota(
    parts: tuple[Calls, SqliteQueue, ManualClock],
) -> None:
    store, queue, clock = parts
    ingest = IngestService(store, queue, clock)  # type: ignore[arg-type]
    limited = Tenant(id="lim", name="Lim", created_at=tenant().created_at, daily_quota=1)
    await store.create_tenant(limited)
    assert not (await ingest.submit(limited, "ES", "a", request())).replayed
    assert store.calls == Counter(reserve_idempotency_key=1, consume_quota=1, accept=1)
    with pytest.raises(errors.RateLimited):
        await ingest.submit(limited, "ES", "b", request())
    assert store.calls["accept_new"] == 0
