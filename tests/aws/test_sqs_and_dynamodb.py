"""What the contract suite cannot check on AWS with a manual clock, with real (short) time."""

from __future__ import annotations

import asyncio

import pytest

from integration_hub.adapters.aws.dynamodb import DynamoStore
from integration_hub.adapters.aws.session import AwsConfig, AwsSession
from integration_hub.adapters.aws.sqs import message_from_lambda_record
from integration_hub.domain import errors
from integration_hub.domain.delivery import OutboundMessage
from integration_hub.domain.models import Attempt, Outcome, from_epoch
from integration_hub.domain.status import Status
from support import Backend, ManualClock, accept, notification

# SQS counts visibility timeouts and delays in whole seconds of real time.
TICK = 1.3


async def test_a_received_message_comes_back_after_its_visibility_timeout(aws: Backend) -> None:
    q = aws.queue
    await q.enqueue("n1", "acme")
    first = await q.receive(10, visibility_timeout=1)
    assert [(m.notification_id, m.tenant, m.receive_count) for m in first] == [("n1", "acme", 1)]
    assert await q.receive(10, visibility_timeout=1) == []
    await asyncio.sleep(TICK)
    again = await q.receive(10, visibility_timeout=30)
    assert [(m.notification_id, m.receive_count) for m in again] == [("n1", 2)]
    assert again[0].receipt != first[0].receipt
    await q.ack(again[0])
    await q.ack(again[0])  # twice: ignored
    stats = await q.stats()
    assert (stats.visible, stats.in_flight, stats.delayed) == (0, 0, 0)


async def test_a_receipt_sqs_does_not_know_is_ignored(aws: Backend) -> None:
    await aws.queue.enqueue("n1", "acme")
    msg = (await aws.queue.receive(1, visibility_timeout=30))[0]
    forged = type(msg)(msg.notification_id, msg.tenant, "not-a-receipt", 1)
    await aws.queue.ack(forged)
    await aws.queue.release(forged, delay=0)
    assert (await aws.queue.stats()).in_flight == 1


async def test_delays_and_releases_are_real_seconds(aws: Backend) -> None:
    q = aws.queue
    await q.enqueue("later", "acme", delay=1)
    await q.enqueue("now", "acme")
    got = await q.receive(10, visibility_timeout=30)
    assert [m.notification_id for m in got] == ["now"]
    await q.release(got[0], delay=1)
    stats = await q.stats()
    # A release is ChangeMessageVisibility: SQS counts it in flight, not delayed.
    assert (stats.visible, stats.in_flight, stats.delayed) == (0, 1, 1)
    await asyncio.sleep(TICK)
    again = sorted(await q.receive(10, visibility_timeout=30), key=lambda m: m.notification_id)
    assert [(m.notification_id, m.receive_count) for m in again] == [("later", 1), ("now", 2)]


async def test_receive_takes_more_than_ten_in_several_calls(aws: Backend) -> None:
    await asyncio.gather(*[aws.queue.enqueue(f"n{i}", "acme") for i in range(25)])
    got = await aws.queue.receive(25, visibility_timeout=30)
    assert sorted(m.notification_id for m in got) == sorted(f"n{i}" for i in range(25))


async def test_a_long_poll_keeps_what_it_leased_for_the_next_receive(aws: Backend) -> None:
    waiter = asyncio.create_task(aws.queue.wait_for_messages(5.0))
    await asyncio.sleep(0.1)
    await aws.queue.enqueue("n1", "acme")
    await asyncio.wait_for(waiter, 3.0)
    got = await aws.queue.receive(10, visibility_timeout=30)
    assert [m.notification_id for m in got] == ["n1"]


def test_a_lambda_record_becomes_a_queue_message() -> None:
    record = {
        "body": "n1",
        "receiptHandle": "rh",
        "attributes": {"ApproximateReceiveCount": "3"},
        "messageAttributes": {"tenant": {"stringValue": "acme", "dataType": "String"}},
    }
    msg = message_from_lambda_record(record)
    assert (msg.notification_id, msg.tenant, msg.receipt, msg.receive_count) == (
        "n1",
        "acme",
        "rh",
        3,
    )


async def test_an_unreachable_endpoint_is_unavailable() -> None:
    session = AwsSession(
        AwsConfig(
            endpoint_url="http://127.0.0.1:9",
            access_key_id="testing",
            secret_access_key="testing",
            connect_timeout=0.5,
        )
    )
    store = DynamoStore(session, "nowhere-hub", clock=ManualClock())
    try:
        with pytest.raises(errors.Unavailable):
            await store.get_tenant("acme")
    finally:
        await store.close()


async def test_a_purge_forgets_old_finished_notifications_and_expired_keys(
    aws: Backend,
) -> None:
    store = aws.store
    assert isinstance(store, DynamoStore)
    old, unfinished, recent = (notification(clock=aws.clock) for _ in range(3))
    for n in (old, unfinished, recent):
        await accept(aws, n)
    for n in (old, recent):
        token = "t-" + n.id
        await store.claim(n.id, token, lease_seconds=30, max_attempts=5)
        await aws.outbox.append(
            OutboundMessage(n.id, "acme", "ES", n.channel, n.request.recipient, "s", "b", {}, 1),
            "pm",
        )
        done = Attempt(1, "sandbox", from_epoch(0), Outcome.PERMANENT, 1.0)
        await store.complete_attempt(
            n.id, token, done, status=Status.FAILED, dead_letter_reason="permanent: no"
        )
        if n is old:
            aws.clock.advance(100)
    counts = await store.purge(50)
    assert counts == {
        "notifications": 1,
        "attempts": 1,
        "dead_letters": 1,
        "outbox": 1,
        "delivery_events": 0,
        "queue": 0,
        "idempotency_keys": 0,
        "webhook_events": 2,  # accepted, failed (no endpoint: no delivery)
        "webhook_deliveries": 0,
        "webhook_attempts": 0,
    }
    assert await store.get_notification(None, old.id) is None
    assert [d.notification_id for d in await store.list_dead_letters(None)] == [recent.id]
    assert await store.get_notification(None, unfinished.id) is not None
    aws.clock.advance(3600)
    assert (await store.purge(10**6))["idempotency_keys"] == 3
