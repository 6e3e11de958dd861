"""SQS's own DLQ on moto: poison messages are listed without being consumed, and
redriven to the main queue with their attributes, deleted from the DLQ only after."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from aws.motoserver import MotoAws
from integration_hub.adapters.aws.session import AwsSession, error_code
from integration_hub.adapters.aws.sqs import SqsQueue
from integration_hub.adapters.aws.sqs_dlq import SqsDeadLetters
from support import ManualClock


@dataclass
class Queues:
    """A main queue whose redrive policy moves a message after one receive."""

    sqs: Any  # boto3, to play SQS's part (moving messages to the DLQ)
    main: str
    dlq: str
    session: AwsSession
    dead: SqsDeadLetters
    queue: SqsQueue

    def poison(self, notification_id: str, tenant: str, **extra: str) -> None:
        """Send a message and let SQS give up on it: it ends in the DLQ."""
        attributes = {"tenant": {"DataType": "String", "StringValue": tenant}}
        for name, value in extra.items():
            attributes[name] = {"DataType": "String", "StringValue": value}
        self.sqs.send_message(
            QueueUrl=self.main, MessageBody=notification_id, MessageAttributes=attributes
        )
        # Received once and never deleted (visible again at once); the next
        # receive finds maxReceiveCount reached and SQS moves it to the DLQ.
        got = self.sqs.receive_message(QueueUrl=self.main, VisibilityTimeout=0)
        assert [m["Body"] for m in got["Messages"]] == [notification_id]
        assert self.sqs.receive_message(QueueUrl=self.main).get("Messages", []) == []

    def dlq_bodies(self) -> list[str]:
        """What the DLQ holds right now (received with visibility 0: left in place)."""
        got = self.sqs.receive_message(
            QueueUrl=self.dlq, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=1
        )
        return sorted(m["Body"] for m in got.get("Messages", []))


@pytest.fixture
async def queues(moto_aws: MotoAws) -> AsyncIterator[Queues]:
    sqs = moto_aws.boto3_client("sqs")
    name = "ihub-dlq-" + uuid.uuid4().hex[:8]
    main, dlq = moto_aws.queue_with_dlq(name, max_receive_count=1)
    session = AwsSession(moto_aws.config())
    queue = SqsQueue(session, name, clock=ManualClock())  # by name: resolved like the hub does
    try:
        yield Queues(sqs, main, dlq, session, SqsDeadLetters.of(queue), queue)
    finally:
        await session.close()
        for url in (main, dlq):
            with contextlib.suppress(ClientError):  # a test deleted it on purpose
                sqs.delete_queue(QueueUrl=url)


async def test_the_dlq_is_found_through_the_main_queues_redrive_policy(queues: Queues) -> None:
    assert await queues.dead.dlq_url() == queues.dlq
    assert await queues.dead.list_poison(None, limit=10) == []


async def test_a_queue_without_a_redrive_policy_has_no_poison_messages(
    moto_aws: MotoAws,
) -> None:
    sqs = moto_aws.boto3_client("sqs")
    url = sqs.create_queue(QueueName="ihub-plain-" + uuid.uuid4().hex[:8])["QueueUrl"]
    session = AwsSession(moto_aws.config())
    try:
        dead = SqsDeadLetters(session, url)
        assert await dead.dlq_url() is None
        assert await dead.list_poison(None, limit=10) == []
        assert await dead.redrive_poison(None, None) == []
    finally:
        await session.close()
        sqs.delete_queue(QueueUrl=url)


async def test_listing_shows_id_tenant_receives_and_age_and_consumes_nothing(
    queues: Queues,
) -> None:
    before = time.time()
    queues.poison("n-acme", "acme")
    queues.poison("n-globex", "globex")
    listed = await queues.dead.list_poison(None, limit=100)
    assert sorted((m.notification_id, m.tenant) for m in listed) == [
        ("n-acme", "acme"),
        ("n-globex", "globex"),
    ]
    for m in listed:
        assert m.receive_count >= 2  # the receive that moved it, and this listing's
        assert before - 5 <= m.sent_at.timestamp() <= time.time() + 5
        assert m.message_id
    # Nothing consumed, and visible again at once (not after a visibility timeout).
    assert queues.dlq_bodies() == ["n-acme", "n-globex"]
    again = await queues.dead.list_poison(None, limit=100)
    assert sorted(m.notification_id for m in again) == ["n-acme", "n-globex"]


async def test_listing_one_tenant_shows_only_its_messages(queues: Queues) -> None:
    queues.poison("n-acme", "acme")
    queues.poison("n-globex", "globex")
    listed = await queues.dead.list_poison("acme", limit=100)
    assert [(m.notification_id, m.tenant) for m in listed] == [("n-acme", "acme")]
    assert queues.dlq_bodies() == ["n-acme", "n-globex"]


async def test_redrive_sends_the_message_back_with_its_attributes_and_deletes_it(
    queues: Queues,
) -> None:
    queues.poison("n-acme", "acme", traceparent="00-abc-def-01")
    queues.poison("n-globex", "globex")

    assert await queues.dead.redrive_poison("acme", ["n-acme"]) == ["n-acme"]

    assert queues.dlq_bodies() == ["n-globex"]  # the other tenant's stays
    got = queues.sqs.receive_message(
        QueueUrl=queues.main, MessageAttributeNames=["All"], WaitTimeSeconds=1
    )["Messages"]
    assert [m["Body"] for m in got] == ["n-acme"]
    attributes = {k: v["StringValue"] for k, v in got[0]["MessageAttributes"].items()}
    assert attributes == {"tenant": "acme", "traceparent": "00-abc-def-01"}


async def test_redrive_of_another_tenants_message_moves_nothing(queues: Queues) -> None:
    queues.poison("n-globex", "globex")
    assert await queues.dead.redrive_poison("acme", ["n-globex"]) == []
    assert await queues.dead.redrive_poison("acme", None) == []
    assert queues.dlq_bodies() == ["n-globex"]


async def test_redrive_all_empties_the_dlq_into_the_queue_the_hub_reads(queues: Queues) -> None:
    for i in range(12):  # more than one ReceiveMessage batch
        queues.poison(f"n{i:02d}", "acme")
    moved = await queues.dead.redrive_poison(None, None)
    assert sorted(moved) == [f"n{i:02d}" for i in range(12)]
    assert queues.dlq_bodies() == []
    back = await queues.queue.receive(20, visibility_timeout=30)
    assert sorted((m.notification_id, m.tenant) for m in back) == [
        (f"n{i:02d}", "acme") for i in range(12)
    ]


async def test_a_failed_send_leaves_the_message_in_the_dlq(queues: Queues) -> None:
    queues.poison("n-acme", "acme")
    assert await queues.dead.dlq_url() == queues.dlq  # found while the main queue exists
    queues.sqs.delete_queue(QueueUrl=queues.main)  # now every send back fails

    with pytest.raises(ClientError) as failed:
        await queues.dead.redrive_poison(None, None)
    assert "NonExistentQueue" in error_code(failed.value) or "QueueDoesNotExist" in error_code(
        failed.value
    )
    assert queues.dlq_bodies() == ["n-acme"]  # not deleted, and visible again at once
