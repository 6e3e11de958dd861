"""Receipts on DynamoDB, item by item: the index entry, the sparse SENT index, retention.

The contract suite (tests/contract/test_receipts_store.py) checks what the
ports promise; these tests check the items that promise rests on, read raw
from moto over HTTP.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aws.motoserver import MotoAws
from integration_hub.adapters.aws import items, tables
from integration_hub.adapters.aws.dynamodb import DynamoStore
from integration_hub.domain.models import Attempt, Notification, Outcome, from_epoch
from integration_hub.domain.receipts import DeliveryState, Receipt, SuppressionReason, merge
from integration_hub.domain.routing import Channel
from integration_hub.domain.status import Status
from integration_hub.ports import Match, Suppression
from support import Backend, accept, notification

S = DeliveryState


async def sent(aws: Backend, message_id: str, provider: str = "twilio") -> Notification:
    """A notification finished DONE at ``provider`` under ``message_id``."""
    n = notification(country="US", clock=aws.clock)
    await accept(aws, n)
    await aws.store.claim(n.id, "w", lease_seconds=30, max_attempts=5)
    attempt = Attempt(
        1, provider, from_epoch(0), Outcome.DELIVERED, 2.0, provider_message_id=message_id
    )
    assert await aws.store.complete_attempt(n.id, "w", attempt, status=Status.DONE)
    return n


def receipt(
    aws: Backend, state: DeliveryState, message_id: str, provider: str = "twilio"
) -> Receipt:
    return Receipt(
        tenant="acme",
        provider=provider,
        provider_message_id=message_id,
        state=state,
        raw_status=state.value,
        error_code=None,
        occurred_at=None,
        received_at=from_epoch(aws.clock.now()),
    )


def raw(moto: MotoAws, aws: Backend, key: dict[str, str]) -> dict[str, Any] | None:
    """An item as DynamoDB holds it (boto3, strongly consistent), or None."""
    store = aws.store
    assert isinstance(store, DynamoStore)
    found = moto.boto3_client("dynamodb").get_item(
        TableName=store.table, Key=tables.item(key), ConsistentRead=True
    )
    return tables.plain(found["Item"]) if "Item" in found else None


def in_sent_index(moto: MotoAws, aws: Backend, n: Notification) -> bool:
    """Whether GSI4's SENT partition of ``n`` lists it."""
    store = aws.store
    assert isinstance(store, DynamoStore)
    found = moto.boto3_client("dynamodb").query(
        TableName=store.table,
        IndexName=tables.SENT_INDEX,
        KeyConditionExpression="GSI4PK = :pk",
        ExpressionAttributeValues=tables.item({":pk": tables.sent_shard(n.id)}),
    )
    return any(tables.plain(i)["id"] == n.id for i in found["Items"])


async def test_done_puts_an_index_item_a_receipt_reads_by_key(
    aws: Backend, moto_aws: MotoAws
) -> None:
    n = await sent(aws, "SM#1/ä")
    index = raw(moto_aws, aws, items.provider_message_key("acme", "twilio", "SM#1/ä"))
    assert index is not None
    assert (index["notification_id"], index["tenant"]) == (n.id, "acme")
    # '#' is encoded: the key holds exactly four '#'-separated parts.
    assert index["PK"].count("#") == 3
    got = await aws.store.record_receipt(receipt(aws, S.DELIVERED, "SM#1/ä"))
    assert (got.match, got.notification_id) == (Match.RECORDED, n.id)


async def test_a_hash_in_an_id_cannot_reach_another_providers_key(aws: Backend) -> None:
    """Unencoded, (twilio, 'x#y') and (twilio#x, 'y') would be the same key."""
    n = await sent(aws, "x#y")
    other = await aws.store.record_receipt(receipt(aws, S.DELIVERED, "y", provider="twilio#x"))
    assert other.match is Match.UNMATCHED
    found = await aws.store.get_notification("acme", n.id)
    assert found is not None
    assert found.delivery_state is S.SENT


async def test_a_very_long_message_id_still_gets_an_index_item(aws: Backend) -> None:
    long_id = "M" * 3000  # beyond DynamoDB's 2048-byte partition key: hashed
    n = await sent(aws, long_id)
    assert len(items.provider_message_key("acme", "twilio", long_id)["PK"]) < 100
    got = await aws.store.record_receipt(receipt(aws, S.DELIVERED, long_id))
    assert (got.match, got.notification_id) == (Match.RECORDED, n.id)
    assert (await aws.store.record_receipt(receipt(aws, S.DELIVERED, "M" * 2999))).match is (
        Match.UNMATCHED
    )


async def test_a_notification_is_in_the_sent_index_only_while_sent(
    aws: Backend, moto_aws: MotoAws
) -> None:
    delivered, expiring = await sent(aws, "SM-d"), await sent(aws, "SM-e")
    assert in_sent_index(moto_aws, aws, delivered)
    assert in_sent_index(moto_aws, aws, expiring)
    item = raw(moto_aws, aws, items.notification_key(delivered.id))
    assert item is not None
    assert item["GSI4SK"] == f"{tables.epoch_key(aws.clock.now())}#{delivered.id}"
    await aws.store.record_receipt(receipt(aws, S.DELIVERED, "SM-d"))
    assert not in_sent_index(moto_aws, aws, delivered)
    assert in_sent_index(moto_aws, aws, expiring)
    # A 'sent' receipt keeps it there: the state did not leave 'sent'.
    await aws.store.record_receipt(receipt(aws, S.SENT, "SM-e"))
    assert in_sent_index(moto_aws, aws, expiring)
    aws.clock.advance(60)
    now = from_epoch(aws.clock.now())
    assert await aws.store.expire_deliveries(sent_before=now, now=now, limit=10) == 1
    assert not in_sent_index(moto_aws, aws, expiring)


async def test_a_received_notification_stays_in_the_reconcilers_index_only(
    aws: Backend, moto_aws: MotoAws
) -> None:
    """GSI4 holds both kinds of entry, in partitions of their own."""
    waiting = notification(clock=aws.clock)
    await accept(aws, waiting)
    item = raw(moto_aws, aws, items.notification_key(waiting.id))
    assert item is not None
    assert item["GSI4PK"].startswith("PENDING#")
    n = await sent(aws, "SM1")
    store = aws.store
    assert isinstance(store, DynamoStore)
    aws.clock.advance(10)
    assert [r.id for r in await store.list_received(older_than=aws.clock.now())] == [waiting.id]
    assert in_sent_index(moto_aws, aws, n)


async def test_concurrent_receipts_for_one_notification_lose_no_update(aws: Backend) -> None:
    """Each reads the same state; the conditional write makes the losers read again."""
    n = await sent(aws, "wamid.1", provider="whatsapp")
    states = [S.DELIVERED, S.READ, S.SENT, S.DELIVERED, S.UNDELIVERED, S.READ]
    incoming = [
        Receipt("acme", "whatsapp", "wamid.1", s, f"{s}-{i}", None, None, from_epoch(i))
        for i, s in enumerate(states)
    ]
    got = await asyncio.gather(*(aws.store.record_receipt(r) for r in incoming))
    assert {g.match for g in got} == {Match.RECORDED}
    found = await aws.store.get_notification("acme", n.id)
    assert found is not None
    assert found.delivery_state is merge(states) is S.READ
    events = await aws.store.delivery_events("acme", n.id)
    assert sorted(e.raw_status for e in events) == sorted(r.raw_status for r in incoming)
    # Numbered in the order written: the event count was part of every condition.
    assert len(events) == len(states)


async def test_retention_takes_the_events_and_the_index_item_and_keeps_suppressions(
    aws: Backend, moto_aws: MotoAws
) -> None:
    store = aws.store
    assert isinstance(store, DynamoStore)
    old = await sent(aws, "SM-old")
    await store.record_receipt(receipt(aws, S.SENT, "SM-old"))
    await store.record_receipt(receipt(aws, S.UNDELIVERED, "SM-old"))
    await store.add_suppression(
        Suppression(
            "acme",
            Channel.SMS,
            "+5215512345678",
            SuppressionReason.LANDLINE,
            from_epoch(aws.clock.now()),
            source=old.id,
        )
    )
    aws.clock.advance(100)
    young = await sent(aws, "SM-young")
    counts = await store.purge(50)
    assert (counts["notifications"], counts["delivery_events"]) == (1, 2)
    assert raw(moto_aws, aws, items.provider_message_key("acme", "twilio", "SM-old")) is None
    assert raw(moto_aws, aws, items.provider_message_key("acme", "twilio", "SM-young"))
    late = await store.record_receipt(receipt(aws, S.DELIVERED, "SM-old"))
    assert late.match is Match.UNMATCHED
    assert await store.get_notification(None, young.id) is not None
    assert await store.get_suppression("acme", Channel.SMS, "+5215512345678") is not None


async def test_retention_leaves_an_index_item_a_newer_notification_took_over(
    aws: Backend, moto_aws: MotoAws
) -> None:
    """A provider that reuses a message id: the entry names the newest notification."""
    store = aws.store
    assert isinstance(store, DynamoStore)
    await sent(aws, "SM-reused")
    aws.clock.advance(100)
    newer = await sent(aws, "SM-reused")
    assert (await store.purge(50))["notifications"] == 1
    index = raw(moto_aws, aws, items.provider_message_key("acme", "twilio", "SM-reused"))
    assert index is not None
    assert index["notification_id"] == newer.id
    got = await store.record_receipt(receipt(aws, S.DELIVERED, "SM-reused"))
    assert (got.match, got.notification_id) == (Match.RECORDED, newer.id)


async def test_a_hash_in_an_address_stays_inside_its_channel(aws: Backend) -> None:
    """The sort key is <channel>#<address>: only the first '#' ends the channel."""
    at = from_epoch(aws.clock.now())
    odd = Suppression("acme", Channel.EMAIL, "a#sms@example.com", SuppressionReason.OPERATOR, at)
    phone = Suppression("acme", Channel.SMS, "+34600000001", SuppressionReason.OPTED_OUT, at)
    for entry in (odd, phone):
        await aws.store.add_suppression(entry)
    assert await aws.store.get_suppression("acme", Channel.EMAIL, "a#sms@example.com") == odd
    assert await aws.store.list_suppressions("acme", channel=Channel.EMAIL) == [odd]
    assert await aws.store.list_suppressions("acme", channel=Channel.SMS) == [phone]
    assert (
        await aws.store.list_suppressions(
            "acme", channel=Channel.EMAIL, after=(Channel.EMAIL, "a#sms@example.com")
        )
        == []
    )
    # An ``after`` in an earlier channel starts the listing at this channel's first.
    assert await aws.store.list_suppressions(
        "acme", channel=Channel.SMS, after=(Channel.EMAIL, "zz@example.com")
    ) == [phone]
    # And one past this channel lists nothing of it.
    assert (
        await aws.store.list_suppressions("acme", channel=Channel.EMAIL, after=(Channel.SMS, "+1"))
        == []
    )
