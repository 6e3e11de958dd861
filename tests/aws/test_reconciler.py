"""No loss between DynamoDB and SQS: a failed send is repaired by the reconciler."""

from __future__ import annotations

import secrets

import pytest

from aws.motoserver import MotoAws
from integration_hub.adapters.aws.dynamodb import DynamoStore
from integration_hub.adapters.aws.reconciler import reconcile
from integration_hub.adapters.aws.sqs import SqsQueue
from integration_hub.domain.models import Attempt, Outcome, from_epoch
from integration_hub.domain.status import Status
from integration_hub.ports import Queue
from support import Backend, ManualClock, notification, tenant


def dynamo(aws: Backend) -> DynamoStore:
    """The backend's store as what it is here: the reconciler reads DynamoDB's index."""
    assert isinstance(aws.store, DynamoStore)
    return aws.store


def broken_queue(aws: Backend) -> SqsQueue:
    """The same queue URL with a typo: every send fails, as in an outage."""
    assert isinstance(aws.queue, SqsQueue)
    return SqsQueue(dynamo(aws).session, aws.queue.queue + "-missing", clock=aws.clock)


async def accept_with(aws: Backend, queue: Queue, n_tenant: str = "acme") -> str:
    """Accept one notification as the ingest service does, sending through ``queue``."""
    n = notification(n_tenant, clock=aws.clock)
    reservation = secrets.token_hex(4)
    await aws.store.reserve_idempotency_key(
        n.tenant, n.idempotency_key, "fp", reservation=reservation, lock_seconds=10
    )
    assert not await aws.store.accept(n, {"id": n.id}, reservation=reservation, ttl_seconds=3600)
    await queue.enqueue(n.id, n.tenant)
    return n.id


async def test_a_notification_whose_send_failed_is_enqueued_by_the_reconciler(
    aws: Backend,
) -> None:
    with pytest.raises(Exception, match=r"NonExistentQueue|does not exist"):
        await accept_with(aws, broken_queue(aws))
    lost = (await aws.store.list_notifications("acme"))[0]
    assert lost.status is Status.RECEIVED
    assert await aws.queue.receive(10, visibility_timeout=30) == []

    assert await reconcile(dynamo(aws), aws.queue, older_than_seconds=60) == 0  # too recent
    aws.clock.advance(61)
    assert await reconcile(dynamo(aws), aws.queue, older_than_seconds=60) == 1

    got = await aws.queue.receive(10, visibility_timeout=30)
    assert [(m.notification_id, m.tenant) for m in got] == [(lost.id, "acme")]
    # The next run leaves it alone for another period.
    assert await reconcile(dynamo(aws), aws.queue, older_than_seconds=60) == 0


async def test_claimed_and_fresh_notifications_are_not_re_enqueued(aws: Backend) -> None:
    claimed = await accept_with(aws, aws.queue)
    aws.clock.advance(30)
    await accept_with(aws, aws.queue)  # recent
    await aws.store.claim(claimed, "t1", lease_seconds=30, max_attempts=5)
    aws.clock.advance(40)
    assert await reconcile(dynamo(aws), aws.queue, older_than_seconds=60) == 0


async def test_a_redrive_whose_send_failed_is_enqueued_by_the_reconciler(aws: Backend) -> None:
    nid = await accept_with(aws, aws.queue)
    msg = (await aws.queue.receive(1, visibility_timeout=30))[0]
    await aws.store.claim(nid, msg.receipt, lease_seconds=30, max_attempts=5)
    bad = Attempt(1, "sandbox", from_epoch(0), Outcome.PERMANENT, 1.0, message="no")
    assert await aws.store.complete_attempt(
        nid, msg.receipt, bad, status=Status.FAILED, dead_letter_reason="permanent: no"
    )
    await aws.queue.ack(msg)
    assert await aws.store.redrive("acme", nid) is False  # the caller must send
    with pytest.raises(Exception, match=r"NonExistentQueue|does not exist"):
        await broken_queue(aws).enqueue(nid, "acme")
    aws.clock.advance(61)
    assert await reconcile(dynamo(aws), aws.queue, older_than_seconds=60) == 1
    got = await aws.queue.receive(10, visibility_timeout=30)
    assert [m.notification_id for m in got] == [nid]


async def test_build_hub_opens_dynamodb_and_sqs_by_url(
    moto_aws: MotoAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    from integration_hub.bootstrap import build_hub
    from integration_hub.config import Settings

    # The hub uses the default credential chain; give it moto's fake keys only.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    sqs = moto_aws.boto3_client("sqs")
    url = sqs.create_queue(QueueName="ihub-boot-" + secrets.token_hex(3))["QueueUrl"]
    prefix = "ihub-boot-" + secrets.token_hex(3)
    settings = Settings(
        database_url=f"dynamodb://{prefix}?queue={url}&region=us-east-1&endpoint={moto_aws.endpoint}"
    )
    hub = await build_hub(settings, clock=ManualClock())
    try:
        await hub.store.create_tenant(tenant("acme", ManualClock()))
        assert [t.id for t in await hub.store.list_tenants()] == ["acme"]
        await hub.queue.enqueue("n1", "acme")
        assert [m.notification_id for m in await hub.queue.receive(10, visibility_timeout=30)] == [
            "n1"
        ]
        assert (await hub.purge(86400))["queue"] == 0
    finally:
        await hub.close()
        moto_aws.boto3_client("dynamodb").delete_table(TableName=f"{prefix}-hub")
        sqs.delete_queue(QueueUrl=url)
