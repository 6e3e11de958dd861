"""Scenario 6 on AWS: SQS delivers the same message twice (at-least-once), to two
workers at once, on DynamoDB. Served by moto over real HTTP.

The second copy is a real SQS redelivery: after the first receive the
message's visibility timeout is set to 0, so it is visible again at once and a
second receive gets it with its own receipt handle, as SQS does when a lease
runs out while the first worker still works.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest

from aws.motoserver import MotoAws, start_moto
from hubs import payload
from integration_hub.bootstrap import Hub, build_hub
from integration_hub.config import Settings
from integration_hub.domain.models import NotificationRequest
from integration_hub.ports import QueueMessage
from integration_hub.service.dispatch import Result
from reliability.invariants import Facts, Ledger, Row, check, record, scale
from support import tenant

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(600)]

PAIRS = 15


@pytest.fixture(scope="module")
def moto_aws() -> Iterator[MotoAws]:
    """A moto server for this module."""
    yield from start_moto()


async def receive_all(hub: Hub, ids: set[str], visibility: float) -> dict[str, QueueMessage]:
    """Receive until every id in ``ids`` was seen once."""
    got: dict[str, QueueMessage] = {}
    for _ in range(100):
        for m in await hub.queue.receive(len(ids), visibility_timeout=visibility):
            got.setdefault(m.notification_id, m)
        if got.keys() >= ids:
            return got
    raise AssertionError(f"{len(ids - got.keys())} messages never received")


async def facts_of(hub: Hub, ids: list[str]) -> Facts:
    """The facts through the Store and Outbox ports (no SQL on DynamoDB)."""
    facts = Facts()
    for nid in ids:
        n = await hub.store.get_notification("acme", nid)
        assert n is not None
        facts.rows[nid] = Row(
            nid,
            n.idempotency_key,
            str(n.status),
            tuple(None if a.outcome.value == "abandoned" else a.outcome.value for a in n.attempts),
            tuple(a.error_class for a in n.attempts),
        )
    facts.dead_letters = {d.notification_id for d in await hub.store.list_dead_letters("acme")}
    outbox = await hub.outbox.list_outbox("acme", limit=10 * len(ids))
    facts.deliveries = Counter(e.notification_id for e in outbox)
    return facts


async def test_sqs_redelivering_one_message_to_two_workers_at_once_is_done_and_sent_once(
    moto_aws: MotoAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    sqs = moto_aws.boto3_client("sqs")
    url = sqs.create_queue(QueueName="ihub-rel-" + secrets.token_hex(3))["QueueUrl"]
    prefix = "ihub-rel-" + secrets.token_hex(3)
    settings = Settings(
        database_url=f"dynamodb://{prefix}?queue={url}&region=us-east-1&endpoint={moto_aws.endpoint}",
        # moto serialises every request: the provider call (sandbox delay plus
        # its outbox write) must not time out while 2 x total calls queue up.
        visibility_timeout_seconds=6,
        provider_timeout_seconds=5,
    )
    one = await build_hub(settings)
    two = await build_hub(settings)
    try:
        await one.store.create_tenant(tenant("acme"))
        acme = await one.store.get_tenant("acme")
        assert acme is not None
        total, ledger, ids = scale(30), Ledger(), []
        for i in range(total):
            key, country = f"sqs-{uuid.uuid4()}", ("ES", "MX", "US")[i % 3]
            request = NotificationRequest.model_validate(
                payload(country, metadata={"sandbox": {"delay": 0.2}})
            )
            accepted = await one.ingest.submit(acme, country, key, request)
            ledger.accepted(key, accepted.body["id"])
            ids.append(accepted.body["id"])
        first = await receive_all(one, set(ids), visibility=30)
        for m in first.values():  # the lease "runs out" at once
            await one.queue.release(m, delay=0)
        second = await receive_all(two, set(ids), visibility=6)
        assert all(first[i].receipt != second[i].receipt for i in ids)
        # Both copies of a message at once; at most PAIRS messages at a time,
        # since moto serialises requests and a queue of them would time calls out.
        gate = asyncio.Semaphore(PAIRS)

        async def both(i: str) -> list[Result]:
            async with gate:
                return list(
                    await asyncio.gather(
                        one.dispatcher.handle(first[i]), two.dispatcher.handle(second[i])
                    )
                )

        results = Counter(r for pair in await asyncio.gather(*map(both, ids)) for r in pair)
        # Copies released by the loser come back: drain them as a worker would.
        later: Counter[Result] = Counter()
        for _ in range(80):
            stats = await one.queue.stats()
            if stats.visible + stats.in_flight + stats.delayed == 0:
                break
            for m in await one.queue.receive(total, visibility_timeout=6):
                later[await one.dispatcher.handle(m)] += 1
            await asyncio.sleep(0.5)
        facts = await facts_of(one, ids)
    finally:
        await one.close()
        await two.close()
        moto_aws.boto3_client("dynamodb").delete_table(TableName=f"{prefix}-hub")
        sqs.delete_queue(QueueUrl=url)
    report = check(ledger, facts, budget=5)
    record("6 same message to 2 workers", "dynamodb+sqs", report, ledger, f"{total} redeliveries")
    report.assert_ok()
    assert results[Result.DONE] == total, results
    # The other copy found the claim held or the work done; on a loaded machine the
    # winner's lease can lapse mid-call, the other copy takes over and finishes, and
    # the winner's late completion is LOST: still sent once (the report above).
    losers = results[Result.HELD] + results[Result.DUPLICATE] + results[Result.LOST]
    assert losers == total, results
    assert set(later) <= {Result.DUPLICATE}, later
    assert report.statuses == {"DONE": total}
