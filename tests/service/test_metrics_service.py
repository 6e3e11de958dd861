"""Metrics counted by a wired hub (real SQLite file) as the ingest and dispatch services run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from exposition import families, label_values, value
from integration_hub.adapters.metrics.export import StateGauges
from integration_hub.bootstrap import Hub, build_hub
from integration_hub.config import Settings
from integration_hub.domain.errors import InvalidTransition
from integration_hub.domain.models import NotificationRequest
from integration_hub.domain.status import TERMINAL
from integration_hub.ports import Queue, QueueMessage, QueueStats
from integration_hub.service.dispatch import Result
from support import tenant

EMAIL = "ana@example.com"
PHONE = "+5215512345678"


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    """A hub on a fresh SQLite file, with tenants acme and globex and fast retries."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'hub.db'}",
        backoff_base_seconds=0.01,
        backoff_cap_seconds=0.02,
        metrics_tenant_label="on",
    )
    wired = await build_hub(settings)
    for t in ("acme", "globex"):
        await wired.store.create_tenant(tenant(t))
    try:
        yield wired
    finally:
        await wired.close()


async def submit(hub: Hub, tenant_id: str, country: str, **metadata: Any) -> str:
    """Accept one notification through the ingest service; its id."""
    t = await hub.store.get_tenant(tenant_id)
    assert t is not None
    email = country in {"ES", "FR", "IT", "GR"}
    request = NotificationRequest.model_validate(
        {
            "recipient": {"email": EMAIL} if email else {"phone": PHONE},
            "subject": "Hello" if email else None,
            "body": "hello",
            "metadata": metadata or None,
        }
    )
    accepted = await hub.ingest.submit(t, country, f"key-{time.monotonic_ns()}", request)
    notification_id: str = accepted.body["id"]
    return notification_id


async def drain(hub: Hub, ids: list[str]) -> None:
    """Dispatch until every id is DONE or FAILED (within a generous 20 s)."""
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline:
        for message in await hub.queue.receive(10, visibility_timeout=30):
            await hub.dispatcher.handle(message)
        states = [await hub.store.get_notification(None, i) for i in ids]
        if all(n is not None and n.status in TERMINAL for n in states):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("notifications did not finish in time")


async def scrape(hub: Hub) -> str:
    """The exposition, as GET /metrics renders it."""
    assert hub.metrics is not None
    hub.metrics.state.ttl = 0  # every scrape reads the store afresh
    return (await hub.metrics.render()).decode()


async def test_accepted_attempts_and_finished_are_counted_with_their_labels(hub: Hub) -> None:
    ids = [
        await submit(hub, "acme", "ES"),
        await submit(hub, "acme", "ES"),
        await submit(hub, "globex", "MX", sandbox={"fail": "transient", "times": 1}),
        await submit(hub, "globex", "US", sandbox={"fail": "permanent"}),
    ]
    await drain(hub, ids)
    text = await scrape(hub)

    accepted = "ihub_notifications_accepted_total"
    assert value(text, accepted, tenant="acme", country="ES", channel="email") == 2
    assert value(text, accepted, tenant="globex", country="MX", channel="whatsapp") == 1
    assert value(text, accepted, tenant="globex", country="US", channel="sms") == 1
    assert value(text, accepted, provider="sandbox") == 4

    finished = "ihub_notifications_finished_total"
    assert value(text, finished, tenant="acme", outcome="done") == 2
    assert value(text, finished, tenant="globex", country="MX", outcome="done") == 1
    assert value(text, finished, tenant="globex", country="US", outcome="failed") == 1

    attempts = "ihub_attempts_total"
    assert value(text, attempts, outcome="delivered", error_class="none") == 3
    assert value(text, attempts, outcome="transient", error_class="sandbox_transient") == 1
    assert value(text, attempts, outcome="permanent", error_class="sandbox_permanent") == 1

    calls = "ihub_provider_call_duration_seconds_count"
    assert value(text, calls, provider="sandbox") == 5
    assert value(text, "ihub_notification_duration_seconds_count", outcome="done") == 3
    assert value(text, "ihub_notification_duration_seconds_count", outcome="failed") == 1
    assert value(text, "ihub_dead_letters") == 1
    assert value(text, "ihub_queue_messages") == 0
    assert value(text, "ihub_store_up") == 1


async def test_an_idempotent_replay_is_not_counted_again(hub: Hub) -> None:
    t = await hub.store.get_tenant("acme")
    assert t is not None
    request = NotificationRequest.model_validate(
        {"recipient": {"email": EMAIL}, "subject": "s", "body": "b"}
    )
    first = await hub.ingest.submit(t, "ES", "same-key", request)
    again = await hub.ingest.submit(t, "ES", "same-key", request)
    assert again.replayed
    assert again.body == first.body
    assert value(await scrape(hub), "ihub_notifications_accepted_total") == 1


async def test_queue_depth_and_oldest_age_are_read_from_the_store_at_scrape_time(
    hub: Hub,
) -> None:
    for _ in range(3):
        await submit(hub, "acme", "FR")
    leased = await hub.queue.receive(1, visibility_timeout=30)
    assert len(leased) == 1
    await asyncio.sleep(0.05)
    text = await scrape(hub)
    assert value(text, "ihub_queue_messages", state="visible") == 2
    assert value(text, "ihub_queue_messages", state="in_flight") == 1
    assert value(text, "ihub_queue_messages", state="delayed") == 0
    assert value(text, "ihub_queue_oldest_message_age_seconds") >= 0.05


async def test_the_exposition_holds_no_id_recipient_or_secret(hub: Hub) -> None:
    ids = [
        await submit(hub, "acme", "ES"),
        # A fault named like an address: its error class must not reach a label.
        await submit(hub, "globex", "MX", sandbox={"fail": EMAIL}),
    ]
    await drain(hub, ids)
    text = await scrape(hub)
    for secret in [*ids, EMAIL, PHONE, "+52155", "example.com", "key-"]:
        assert secret not in text
    assert "other" in label_values(text, "ihub_attempts_total", "error_class")


async def test_top_n_tenant_label_folds_the_other_tenants_into_other(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'hub.db'}", metrics_tenant_label="top:2"
    )
    hub = await build_hub(settings)
    try:
        names = ["t1", "t2", "t3", "t4", "t5"]
        for name in names:
            await hub.store.create_tenant(tenant(name))
        for name in names:
            await submit(hub, name, "IT")
        text = await scrape(hub)
        assert label_values(text, "ihub_notifications_accepted_total", "tenant") == {
            "t1",
            "t2",
            "other",
        }
        assert value(text, "ihub_notifications_accepted_total", tenant="other") == 3
    finally:
        await hub.close()


async def test_tenant_label_off_counts_every_tenant_in_one_series(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'hub.db'}", metrics_tenant_label="off")
    hub = await build_hub(settings)
    try:
        for name in ("acme", "globex"):
            await hub.store.create_tenant(tenant(name))
            await submit(hub, name, "GR")
        text = await scrape(hub)
        assert label_values(text, "ihub_notifications_accepted_total", "tenant") == {"all"}
        assert "acme" not in text
        assert "globex" not in text
    finally:
        await hub.close()


class CountingQueue(Queue):
    """A queue whose stats() counts its calls and can be made to fail.

    It subclasses the port so that mypy checks every method against it.
    """

    def __init__(self, inner: Queue) -> None:
        self.inner = inner
        self.calls = 0
        self.failing = False

    async def stats(self) -> QueueStats:
        self.calls += 1
        if self.failing:
            raise ConnectionError("store down")
        return await self.inner.stats()

    async def enqueue(self, notification_id: str, tenant: str, *, delay: float = 0.0) -> None:
        await self.inner.enqueue(notification_id, tenant, delay=delay)

    async def receive(
        self, max_messages: int, *, visibility_timeout: float
    ) -> Sequence[QueueMessage]:
        return await self.inner.receive(max_messages, visibility_timeout=visibility_timeout)

    async def ack(self, message: QueueMessage) -> None:
        await self.inner.ack(message)

    async def release(self, message: QueueMessage, *, delay: float) -> None:
        await self.inner.release(message, delay=delay)

    async def wait_for_messages(self, max_wait: float) -> None:
        await self.inner.wait_for_messages(max_wait)


async def test_scrape_time_gauges_are_cached_for_their_ttl(hub: Hub) -> None:
    queue = CountingQueue(hub.queue)
    state = StateGauges(hub.store, queue, ttl_seconds=60)
    await asyncio.gather(*(state.refresh() for _ in range(5)))
    await state.refresh()
    assert queue.calls == 1
    state.ttl = 0
    await state.refresh()
    assert queue.calls == 2


async def test_a_store_that_fails_at_scrape_time_reports_store_up_zero(hub: Hub) -> None:
    assert hub.metrics is not None
    queue = CountingQueue(hub.queue)
    queue.failing = True
    hub.metrics.state.queue = queue
    text = await scrape(hub)
    assert value(text, "ihub_store_up") == 0
    assert "ihub_queue_messages" not in families(text)
    assert value(text, "ihub_dead_letters") == 0  # still read: only the queue failed
    assert "ihub_dead_letters" in families(text)


class BreakingStore:
    """The hub's store, whose completions break an invariant (as a bug would)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def complete_attempt(self, *args: Any, **kwargs: Any) -> Any:
        raise InvalidTransition("cannot move a notification from DONE to DONE")


async def test_invariant_breaches_are_counted_by_kind_from_zero(hub: Hub) -> None:
    text = await scrape(hub)
    assert "ihub_invariant_breaches" in families(text)
    assert value(text, "ihub_invariant_breaches_total", kind="invalid_transition") == 0
    assert 'ihub_invariant_breaches_total{kind="invalid_transition"} 0.0' in text

    hub.dispatcher.store = BreakingStore(hub.store)
    await submit(hub, "acme", "ES")
    [message] = await hub.queue.receive(1, visibility_timeout=30)
    assert await hub.dispatcher.handle(message) is Result.BROKEN
    text = await scrape(hub)
    assert value(text, "ihub_invariant_breaches_total", kind="invalid_transition") == 1
