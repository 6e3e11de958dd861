"""The webhook delivery loop on SQLite and PostgreSQL, to a real receiver over HTTP.

Every request is verified by the official ``standardwebhooks`` package. The
hub is the composition root's (``build_hub``: the real store, envelope
encryption of the endpoint's secret, the aiohttp sender behind the outbound
rule); the clock is a ManualClock so that the retry schedule can be walked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

import pg
from exposition import value
from integration_hub.adapters.webhooks import AiohttpWebhookTransport
from integration_hub.bootstrap import Hub, build_hub
from integration_hub.domain import webhooks
from integration_hub.domain.models import Attempt, Outcome, from_epoch
from integration_hub.domain.outbound import OutboundPolicy
from integration_hub.domain.status import Status
from integration_hub.domain.webhooks import (
    Delivery,
    DeliveryStatus,
    DisabledReason,
    Endpoint,
    EventType,
    SigningSecrets,
)
from integration_hub.ports.webhooks import WebhookStore
from integration_hub.service.webhooks.deliver import DeliveryLoopSettings, WebhookDeliverer
from observability.obs_support import settings
from support import ManualClock, notification, tenant
from webhooks.receiver import WebhookReceiver

E = EventType
LOCAL = OutboundPolicy.of(["127.0.0.0/8"], allow_http=True)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with pg.throwaway_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(time.time())


@pytest.fixture
async def hub(database_url: str, clock: ManualClock) -> AsyncIterator[Hub]:
    made = await build_hub(
        settings(
            database_url,
            webhooks_allow_http=True,
            webhooks_allowed_networks="127.0.0.0/8",
            webhooks_timeout_seconds=2.0,
        ),
        clock=clock,
    )
    if made.backend is not None and database_url.startswith("postgres"):
        async with made.backend.db.connection() as conn:  # type: ignore[attr-defined]
            await pg.truncate_all(conn)
    for t in ("acme", "globex"):
        await made.store.create_tenant(tenant(t, clock))
    try:
        yield made
    finally:
        await made.close()


async def add_endpoint(
    hub: Hub, receiver: WebhookReceiver, tenant_id: str = "acme", path: str = "/hooks"
) -> Endpoint:
    """An endpoint at ``receiver`` with its secret sealed as the service seals it."""
    now = hub.clock.now()
    endpoint_id = webhooks.new_endpoint_id()
    sealed = await hub.credentials.seal(
        tenant_id,
        webhooks.sealing_purpose(endpoint_id),
        SigningSecrets(receiver.secrets[0]).as_dict(),
    )
    endpoint = Endpoint(
        id=endpoint_id,
        tenant=tenant_id,
        url=receiver.base_url + path,
        created_at=now,
        updated_at=now,
        secrets=sealed,
    )
    await hub.webhook_store.create_endpoint(endpoint)
    return endpoint


async def accept(hub: Hub, tenant_id: str = "acme") -> str:
    """A notification stored RECEIVED, as the ingest service stores it."""
    n = notification(tenant_id, "US", clock=hub.clock)  # type: ignore[arg-type]
    held = await hub.store.reserve_idempotency_key(
        n.tenant, n.idempotency_key, "fp", reservation="r", lock_seconds=10
    )
    assert held is None
    assert await hub.store.accept(n, {"id": n.id}, reservation="r", ttl_seconds=60)
    return n.id


async def finish(hub: Hub, notification_id: str) -> None:
    assert await hub.store.claim(notification_id, "w", lease_seconds=30, max_attempts=5)
    done = Attempt(
        number=1,
        provider="twilio",
        started_at=from_epoch(hub.clock.now()),
        outcome=Outcome.DELIVERED,
        latency_ms=1.0,
        provider_message_id="SM1",
    )
    assert await hub.store.complete_attempt(notification_id, "w", done, status=Status.DONE)


@pytest.fixture
async def receiver(clock: ManualClock) -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver(webhooks.new_secret(), clock=clock.now) as server:
        yield server


@pytest.fixture
async def deliverer(hub: Hub) -> AsyncIterator[WebhookDeliverer]:
    loop = hub.webhook_deliverer()
    try:
        yield loop
    finally:
        await loop.close()


async def test_a_notifications_events_arrive_signed_verified_and_in_order(
    hub: Hub, receiver: WebhookReceiver, deliverer: WebhookDeliverer
) -> None:
    await add_endpoint(hub, receiver)
    first = await accept(hub)
    await finish(hub, first)
    second = await accept(hub)
    await deliverer.drain(deadline_seconds=10)

    assert receiver.rejected == []
    got = [(v.payload["data"]["id"], v.payload["type"]) for v in receiver.verified]
    assert sorted(got) == sorted(
        [
            (first, "notification.accepted"),
            (first, "notification.done"),
            (second, "notification.accepted"),
        ]
    )
    # Per notification, in the order of its changes.
    assert [t for n, t in got if n == first] == ["notification.accepted", "notification.done"]
    events = await hub.webhook_store.list_events("acme")
    assert {v.webhook_id for v in receiver.verified} == {e.id for e in events}
    done = next(v for v in receiver.verified if v.payload["type"] == "notification.done")
    assert done.payload["data"]["status"] == "DONE"
    assert done.payload["data"]["delivery_state"] == "sent"


async def test_a_receiver_failing_three_times_is_retried_on_the_schedule(
    hub: Hub, receiver: WebhookReceiver, deliverer: WebhookDeliverer, clock: ManualClock
) -> None:
    endpoint = await add_endpoint(hub, receiver)
    await accept(hub)
    for _ in range(3):
        receiver.queue_response(500, "down")
    sent_at = []
    for attempt in range(1, 5):
        await deliverer.drain(deadline_seconds=10)
        sent_at.append(clock.now())
        [delivery] = await hub.webhook_store.list_deliveries("acme", endpoint.id)
        assert delivery.attempt_count == attempt
        if attempt < 4:
            assert delivery.status is DeliveryStatus.PENDING
            assert delivery.next_attempt_at is not None
            wait = delivery.next_attempt_at - clock.now()
            # Full jitter on the Standard Webhooks schedule: at most its next step.
            assert 0 <= wait <= webhooks.SCHEDULE[attempt] + 1e-6
            # Not due a moment before its time.
            clock.advance(max(0.0, wait - 0.5))
            if wait > 0.5:
                assert await deliverer.step() == 0
            clock.advance(0.5)
    [delivery] = await hub.webhook_store.list_deliveries("acme", endpoint.id)
    assert delivery.status is DeliveryStatus.SUCCEEDED
    assert [a.result.status_code for a in delivery.attempts] == [500, 500, 500, 200]
    # The same message each time: one webhook-id, four verified requests.
    assert len({v.webhook_id for v in receiver.verified}) == 1
    assert len(receiver.verified) == 4


async def test_gone_disables_the_endpoint_and_the_others_hear_of_it(
    hub: Hub, receiver: WebhookReceiver, deliverer: WebhookDeliverer, clock: ManualClock
) -> None:
    async with WebhookReceiver(webhooks.new_secret(), clock=clock.now) as dying:
        gone = await add_endpoint(hub, dying)
        other = await add_endpoint(hub, receiver)
        dying.queue_response(410, "gone")
        await accept(hub)
        await deliverer.drain(deadline_seconds=10)
    found = await hub.webhook_store.get_endpoint("acme", gone.id)
    assert found is not None
    assert (found.enabled, found.disabled_reason) == (False, DisabledReason.GONE)
    assert len(dying.requests) == 1
    await deliverer.drain(deadline_seconds=10)
    assert [v.payload["type"] for v in receiver.verified] == [
        "notification.accepted",
        "endpoint.disabled",
    ]
    news = receiver.verified[-1].payload["data"]
    assert news == {"endpoint_id": gone.id, "url": gone.url, "reason": "gone"}
    assert {d.event.type for d in await hub.webhook_store.list_deliveries("acme", other.id)} == {
        E.ENDPOINT_DISABLED,
        E.ACCEPTED,
    }


async def test_a_hanging_endpoint_holds_only_its_own_slots(hub: Hub, clock: ManualClock) -> None:
    # A loop whose requests may hang for 30 s: the hanging endpoint's never end
    # while the test runs, so what the others get cannot be the slow one's leftovers.
    loop = WebhookDeliverer(
        hub.webhook_store,
        AiohttpWebhookTransport(LOCAL, timeout_seconds=30),
        hub.credentials,
        hub.clock,
        DeliveryLoopSettings(timeout_seconds=30, per_endpoint=4, per_tenant=16),
    )
    stop = asyncio.Event()
    slow = WebhookReceiver(webhooks.new_secret(), clock=clock.now)
    async with WebhookReceiver(webhooks.new_secret(), clock=clock.now) as fast:
        await slow.start()
        hanging = await add_endpoint(hub, slow, "acme")
        await add_endpoint(hub, fast, "globex")
        for _ in range(12):
            slow.queue_delay(60)
            await accept(hub, "acme")
        for _ in range(20):
            await accept(hub, "globex")
        task = asyncio.create_task(loop.run(stop))
        try:
            for _ in range(400):
                if len(fast.verified) == 20:
                    break
                await asyncio.sleep(0.05)
            assert len(fast.verified) == 20
            # The hanging endpoint holds its 4 slots (IHUB_WEBHOOKS_PER_ENDPOINT), no more,
            # and none of its requests has ended.
            assert len(slow.requests) == 4
            assert loop.in_flight.endpoints[hanging.id] == 4
            [*_, oldest] = await hub.webhook_store.list_deliveries("acme", hanging.id, limit=20)
            assert oldest.attempt_count == 0
        finally:
            stop.set()
            await slow.stop()  # the hanging requests end: the loop can finish
            await asyncio.wait_for(task, 20)
            await loop.close()


async def test_metrics_count_attempts_and_read_the_webhook_queue(
    hub: Hub, receiver: WebhookReceiver, deliverer: WebhookDeliverer, clock: ManualClock
) -> None:
    assert hub.metrics is not None
    hub.metrics.state.ttl = 0
    endpoint = await add_endpoint(hub, receiver)
    await accept(hub)
    await accept(hub)
    text = (await hub.metrics.render()).decode()
    assert value(text, "ihub_webhook_events_unfanned") == 2
    receiver.queue_response(503, "busy")
    await deliverer.drain(deadline_seconds=10)
    clock.advance(60)
    text = (await hub.metrics.render()).decode()
    assert value(text, "ihub_webhook_deliveries_total", outcome="success") == 1
    assert value(text, "ihub_webhook_deliveries_total", outcome="http_error") == 1
    assert value(text, "ihub_webhook_delivery_seconds_count") == 2
    assert value(text, "ihub_webhook_deliveries_pending") == 1
    assert value(text, "ihub_webhook_oldest_due_age_seconds") > 0
    assert value(text, "ihub_webhook_events_unfanned") == 0
    assert value(text, "ihub_webhook_endpoints_disabled") == 0
    await hub.webhook_store.update_endpoint(replace(endpoint, enabled=False))
    text = (await hub.metrics.render()).decode()
    assert value(text, "ihub_webhook_endpoints_disabled") == 1
    # A disabled endpoint's deliveries are not due: they do not age the queue.
    assert value(text, "ihub_webhook_oldest_due_age_seconds") == 0


class SlowClaims:
    """The store, with claims slow enough for the requests in flight to end meanwhile."""

    def __init__(self, store: WebhookStore) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def claim_deliveries(self, **kwargs: Any) -> list[Delivery]:
        await asyncio.sleep(0.2)
        return await self.store.claim_deliveries(**kwargs)


async def test_one_drain_delivers_a_backlog_larger_than_the_endpoints_slots(
    hub: Hub, receiver: WebhookReceiver
) -> None:
    # 12 events, 4 slots, and the slots free up while a claim that excluded the
    # (then full) endpoint runs: the drain must claim again, not stop there.
    await add_endpoint(hub, receiver)
    for _ in range(12):
        await accept(hub)
    loop = WebhookDeliverer(
        cast("WebhookStore", SlowClaims(hub.webhook_store)),
        AiohttpWebhookTransport(LOCAL, timeout_seconds=5),
        hub.credentials,
        hub.clock,
        DeliveryLoopSettings(timeout_seconds=5),
    )
    try:
        await loop.drain(deadline_seconds=30)
    finally:
        await loop.close()
    assert len(receiver.verified) == 12
    assert (await hub.webhook_store.webhook_stats()).pending == 0
