"""DynamoDB throttling, answered for real over HTTP by a proxy in front of moto:
every form DynamoDB uses is ``Unavailable`` to the hub, never a 500, never taken
for a lost claim or a missing tenant."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from aws.motoserver import MotoAws
from aws.throttle import THROTTLE_CODES, Throttle, throttling_proxy
from integration_hub.adapters.aws.dynamodb import DynamoStore
from integration_hub.adapters.aws.session import AwsSession
from integration_hub.domain import errors
from integration_hub.domain.models import Attempt, Outcome, from_epoch
from integration_hub.domain.status import Status
from support import Backend, accept, notification


@pytest.fixture
async def throttled(moto_aws: MotoAws, aws: Backend) -> AsyncIterator[tuple[DynamoStore, Throttle]]:
    """The ``aws`` backend's table, reached through a throttling proxy (off until set)."""
    throttle = Throttle()
    with throttling_proxy(moto_aws.endpoint, throttle) as endpoint:
        session = AwsSession(dataclasses.replace(moto_aws.config(), endpoint_url=endpoint))
        assert isinstance(aws.store, DynamoStore)
        store = DynamoStore(session, aws.store.table, clock=aws.clock)
        try:
            yield store, throttle
        finally:
            await store.close()


async def test_an_accept_whose_transaction_is_cancelled_by_throttling_is_unavailable(
    aws: Backend, throttled: tuple[DynamoStore, Throttle]
) -> None:
    store, throttle = throttled
    n = notification(clock=aws.clock)
    held = await store.reserve_idempotency_key(
        "acme", n.idempotency_key, "fp", reservation="r1", lock_seconds=10
    )
    assert held is None
    throttle.rate, throttle.operations, throttle.cancel_share = (
        1.0,
        frozenset({"TransactWriteItems"}),
        1.0,
    )
    with pytest.raises(errors.Unavailable) as caught:
        await store.accept(n, {"id": n.id}, reservation="r1", ttl_seconds=60)
    assert caught.value.retry_after is not None
    assert throttle.injected == {"TransactWriteItems TransactionCanceledException": 1}
    throttle.rate = 0.0  # the client's retry, once DynamoDB has capacity again, succeeds
    assert await store.accept(n, {"id": n.id}, reservation="r1", ttl_seconds=60) is False
    stored = await aws.store.get_notification("acme", n.id)
    assert stored is not None
    assert stored.status is Status.RECEIVED


async def test_a_completion_whose_transaction_is_cancelled_by_throttling_is_not_a_lost_claim(
    aws: Backend, throttled: tuple[DynamoStore, Throttle]
) -> None:
    store, throttle = throttled
    n = notification(clock=aws.clock)
    await accept(aws, n)
    claimed = await store.claim(n.id, "token", lease_seconds=30, max_attempts=5)
    assert claimed is not None
    assert claimed.claimed_by == "token"
    failed = Attempt(1, "sandbox", from_epoch(aws.clock.now()), Outcome.PERMANENT, 1.0)
    throttle.rate, throttle.operations, throttle.cancel_share = (
        1.0,
        frozenset({"TransactWriteItems"}),
        1.0,
    )
    # LOST would tell the dispatcher another worker owns it: the outcome would
    # never be recorded and the re-claim after the lease would call the provider again.
    with pytest.raises(errors.Unavailable):
        await store.complete_attempt(
            n.id, "token", failed, status=Status.FAILED, dead_letter_reason="permanent"
        )
    throttle.rate = 0.0
    done = await store.complete_attempt(
        n.id, "token", failed, status=Status.FAILED, dead_letter_reason="permanent"
    )
    assert done
    stored = await aws.store.get_notification("acme", n.id)
    assert stored is not None
    assert stored.status is Status.FAILED


@pytest.mark.parametrize("code", THROTTLE_CODES)
async def test_every_throttling_error_of_dynamodb_is_unavailable_with_a_retry_after(
    aws: Backend, throttled: tuple[DynamoStore, Throttle], code: str
) -> None:
    store, throttle = throttled
    n = notification(clock=aws.clock)
    await accept(aws, n)
    throttle.rate, throttle.codes = 1.0, (code,)
    calls = {
        "GetItem": store.claim(n.id, "t", lease_seconds=30, max_attempts=5),
        "PutItem": store.reserve_idempotency_key("acme", "k", "f", reservation="r", lock_seconds=1),
        "Query": store.list_dead_letters("acme"),
    }
    for call in calls.values():
        with pytest.raises(errors.Unavailable) as caught:
            await call
        assert caught.value.retry_after is not None
    # Each call was refused three times: once, then on each of the SDK's two
    # retries (``retries={"max_attempts": 2}`` counts retries): the SDK saw throttling.
    assert throttle.injected == {f"{operation} {code}": 3 for operation in calls}


class FirstCallsThrottled(Throttle):
    """Refuses the first ``refusals`` calls of ``operations`` (then forwards every one)."""

    def __init__(self, operations: frozenset[str], refusals: int) -> None:
        super().__init__(rate=1.0, operations=operations)
        self.refusals = refusals

    def verdict(self, operation: str) -> str | None:
        """Throttle while refusals are left, as a busy account does at a process's start."""
        if operation in self.operations and self.refusals > 0:
            self.refusals -= 1
            return super().verdict(operation)
        self.passed[operation] += 1
        return None


async def test_a_starting_process_waits_out_a_throttled_create_table(moto_aws: MotoAws) -> None:
    """The worker of the throttling scenario died at start when its first call, the local
    CreateTable, was throttled: startup now waits throttling out, boundedly."""
    import secrets

    from integration_hub.adapters.aws import tables

    # More refusals than the SDK's own quick retries of one call (3 calls in all)
    # absorb: only the start's own waiting gets past them.
    throttle = FirstCallsThrottled(frozenset({"CreateTable"}), refusals=5)
    name = tables.table_name("ihub-start-" + secrets.token_hex(3))
    with throttling_proxy(moto_aws.endpoint, throttle) as endpoint:
        session = AwsSession(dataclasses.replace(moto_aws.config(), endpoint_url=endpoint))
        try:
            await tables.ensure_table(session, name)
        finally:
            await session.close()
    try:
        assert throttle.total() == 5
        assert throttle.passed["CreateTable"] == 1
        described = moto_aws.boto3_client("dynamodb").describe_table(TableName=name)
        assert described["Table"]["TableStatus"] == "ACTIVE"
    finally:
        moto_aws.boto3_client("dynamodb").delete_table(TableName=name)


async def test_a_lasting_throttle_still_ends_the_start(
    moto_aws: MotoAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    from integration_hub.adapters.aws import tables

    monkeypatch.setattr(tables, "STARTUP_ATTEMPTS", 2)
    throttle = FirstCallsThrottled(frozenset({"CreateTable"}), refusals=100)
    with throttling_proxy(moto_aws.endpoint, throttle) as endpoint:
        session = AwsSession(dataclasses.replace(moto_aws.config(), endpoint_url=endpoint))
        try:
            with pytest.raises(errors.Unavailable):
                await tables.ensure_table(session, tables.table_name("ihub-never"))
        finally:
            await session.close()
    # Two starts of at most 3 SDK calls each: more than one start's worth, and bounded.
    assert 3 < throttle.total() <= 6
