"""Scenario 6: duplicates. The queue delivers the same message twice at once to two
workers (at-least-once delivery, as SQS may), and clients send the same request
with the same Idempotency-Key to two API processes at once.

Each notification must be DONE once, delivered once, and each key must make
exactly one notification, answered with the same id everywhere.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections import Counter
from collections.abc import Callable

import httpx
import pytest

from hubs import HubProcesses, payload
from integration_hub.bootstrap import build_hub
from integration_hub.config import Settings
from integration_hub.domain.models import NotificationRequest
from integration_hub.ports import QueueMessage
from integration_hub.service.dispatch import Result
from reliability.harness import Sent, submit, wait_drained
from reliability.invariants import Ledger, check, read_facts, record, scale

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(600)]

COUNTRIES = ("ES", "MX", "US")


async def test_one_message_delivered_to_two_workers_at_once_is_done_and_sent_once(
    new_hub: Callable[..., HubProcesses], backend: str
) -> None:
    hub = new_hub()
    settings = Settings(
        database_url=hub.database_url,
        visibility_timeout_seconds=2,
        provider_timeout_seconds=1,
        poll_interval_seconds=0.05,
    )
    # Two workers: two hubs, each with its own connections, in this process.
    one, two = await build_hub(settings), await build_hub(settings)
    try:
        tenant = await one.store.get_tenant("acme")
        assert tenant is not None
        total, ledger = scale(60), Ledger()
        for i in range(total):
            key, country = f"dup-{uuid.uuid4()}", COUNTRIES[i % 3]
            request = NotificationRequest.model_validate(
                payload(country, metadata={"sandbox": {"delay": 0.2}})
            )
            accepted = await one.ingest.submit(tenant, country, key, request)
            ledger.accepted(key, accepted.body["id"])
        messages: list[QueueMessage] = []
        while len(messages) < total:
            messages += await one.queue.receive(total, visibility_timeout=2)
        # The queue hands each message to a second worker too, with its own receipt.
        twins = [dataclasses.replace(m, receipt=m.receipt + "-again") for m in messages]
        results = Counter(
            await asyncio.gather(
                *(one.dispatcher.handle(m) for m in messages),
                *(two.dispatcher.handle(t) for t in twins),
            )
        )
        # The losers' leases come back: drain them as a worker would.
        redelivered: Counter[Result] = Counter()
        for _ in range(200):
            stats = await one.queue.stats()
            if stats.visible + stats.in_flight + stats.delayed == 0:
                break
            for m in await one.queue.receive(total, visibility_timeout=2):
                redelivered[await two.dispatcher.handle(m)] += 1
            await asyncio.sleep(0.1)
    finally:
        await one.close()
        await two.close()
    facts = read_facts(hub.database_url)
    report = check(ledger, facts, budget=5)
    record("6 same message to 2 workers", backend, report, ledger, f"{total} twin deliveries")
    report.assert_ok()
    assert results[Result.DONE] == total
    assert results[Result.HELD] + results[Result.DUPLICATE] == total, results
    assert set(redelivered) <= {Result.DUPLICATE}, redelivered
    assert report.statuses == {"DONE": total}
    assert report.crash_window_duplicates == 0


@pytest.mark.quick_backends("postgres")
def test_the_same_request_sent_to_two_apis_at_once_makes_one_notification(
    new_hub: Callable[..., HubProcesses], backend: str
) -> None:
    hub = new_hub()
    twin = HubProcesses(hub.workdir / "twin", hub.database_url, hub.env, keys=hub.keys)
    twin.workdir.mkdir()
    try:
        hub.start_api()
        twin.start_api()
        hub.start_worker()
        total, ledger = scale(100), Ledger()

        async def race() -> list[Sent]:
            gate = asyncio.Semaphore(16)
            sent: list[Sent] = []
            async with (
                httpx.AsyncClient(base_url=hub.base_url, timeout=30) as a,
                httpx.AsyncClient(base_url=twin.base_url, timeout=30) as b,
            ):

                async def pair(i: int) -> None:
                    key, country = f"twin-{uuid.uuid4()}", COUNTRIES[i % 3]
                    body = payload(country)
                    async with gate:
                        ids = await asyncio.gather(
                            submit(a, hub, ledger, key, country, body),
                            submit(b, hub, ledger, key, country, body),
                        )
                    sent.append(Sent(key, country, body, ids[0]))

                await asyncio.gather(*(pair(i) for i in range(total)))
            return sent

        sent = asyncio.run(race())
        facts = wait_drained(hub.database_url, sent)
    finally:
        twin.stop()
    report = check(ledger, facts, budget=5)
    record("6 same POST to 2 APIs", backend, report, ledger, f"{total} keys sent twice at once")
    report.assert_ok()
    assert ledger.replays == total  # one of each pair is the original, the other a replay
    assert report.statuses == {"DONE": total}
    assert report.deliveries == total
