"""The rules a backend states in its own language, against domain/lifecycle.py.

DynamoDB checks two lifecycle rules itself, as condition expressions, because
a read-then-write would race (adapters/aws/conditions.py): whether a request
may take an Idempotency-Key (``lifecycle.key_free``) and whether a worker may
record an attempt's outcome (``lifecycle.may_complete``). Here hypothesis
writes a state to a real table (moto in server mode, over HTTP), attempts the
conditional operation through the store, and asserts that it succeeds exactly
when the lifecycle function says so. The SQL stores check ``may_complete`` in
their UPDATE; the same property is checked on SQLite, through the public
Store methods only.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aws.motoserver import MotoAws
from integration_hub.adapters.aws import items
from integration_hub.adapters.aws.dynamodb import DynamoStore
from integration_hub.adapters.aws.tables import item
from integration_hub.adapters.sqlite.database import SqliteDatabase
from integration_hub.adapters.sqlite.queue import SqliteOutbox, SqliteQueue
from integration_hub.adapters.sqlite.store import SqliteStore
from integration_hub.domain import lifecycle
from integration_hub.domain.models import Attempt, Outcome, from_epoch
from integration_hub.domain.status import Status
from integration_hub.ports import Completion
from support import Backend, ManualClock, accept, notification

# Each example is a handful of HTTP round trips; the fixtures are made once per
# test and every example uses its own key or notification, so nothing leaks.
CONDITIONS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# Times relative to now: the boundary (0) exactly, close to it, and anywhere.
OFFSETS = st.sampled_from([0.0, -0.001, 0.001, -30.0, 30.0]) | st.floats(
    min_value=-3600, max_value=3600, allow_nan=False
)
# The statuses an outcome can be recorded as (RECEIVED is refused before any write).
TARGETS = st.sampled_from([Status.PROCESSING, Status.DONE, Status.FAILED])
OURS = "ours"


@pytest.fixture
async def dynamo(moto_aws: MotoAws) -> AsyncIterator[Backend]:
    """A fresh table and queue for the whole test (every example shares them)."""
    made = await moto_aws.backend(ManualClock())
    try:
        yield made
    finally:
        await made.store.close()
        moto_aws.cleanup()


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[Backend]:
    """A fresh SQLite backend for the whole test."""
    db = SqliteDatabase(tmp_path / "conditions.db", clock=(clock := ManualClock()))
    await db.migrate()
    made = Backend("sqlite", SqliteStore(db), SqliteQueue(db), SqliteOutbox(db), clock)
    try:
        yield made
    finally:
        await made.store.close()


def dynamo_store(backend: Backend) -> DynamoStore:
    assert isinstance(backend.store, DynamoStore)
    return backend.store


async def write(store: DynamoStore, operation: str, **params: Any) -> None:
    """A raw DynamoDB call on the store's table, to put an item in a given state."""
    client = await store.session.client("dynamodb")
    await getattr(client, operation)(TableName=store.table, **params)


def first_attempt(outcome: Outcome = Outcome.PERMANENT) -> Attempt:
    """Attempt 1 (the claim by ``OURS`` started it), ended with ``outcome``."""
    failed = outcome is not Outcome.DELIVERED
    return Attempt(
        number=1,
        provider="sandbox",
        started_at=from_epoch(0),
        outcome=outcome,
        latency_ms=1.0,
        error_class="permanent" if failed else None,
        message="refused" if failed else None,
    )


# -- the Idempotency-Key takeover ------------------------------------------------------


KEY_STATES = st.none() | st.builds(
    lambda expires, locked, completed: (expires, locked, completed),
    OFFSETS,
    OFFSETS,
    st.booleans(),
)


@CONDITIONS
@given(state=KEY_STATES)
async def test_dynamodb_takes_a_key_exactly_when_lifecycle_says_it_is_free(
    dynamo: Backend, state: tuple[float, float, bool] | None
) -> None:
    store = dynamo_store(dynamo)
    now = dynamo.clock.now()
    key = secrets.token_hex(8)
    expected_state = None
    if state is not None:
        expires, locked, completed = state
        record: dict[str, Any] = items.idempotency_key("acme", key) | {
            "tenant": "acme",
            "key": key,
            "fingerprint": "fp-old",
            "reservation": "old",
            "created_at": now - 7200,
            "expires_at": now + expires,
            "locked_until": now + locked,
            # No expires_ttl: TTL deletion is housekeeping, not the rule.
            "response": '{"id": "old"}' if completed else None,
        }
        await write(store, "put_item", Item=item(record))
        expected_state = lifecycle.KeyState.of(items.Row(record))
    free = lifecycle.key_free(expected_state, now)

    held = await store.reserve_idempotency_key(
        "acme", key, "fp-new", reservation="new", lock_seconds=10
    )

    assert (held is None) == free, (state, held)
    again = await store.reserve_idempotency_key(
        "acme", key, "fp-probe", reservation="probe", lock_seconds=10
    )
    assert again is not None  # whoever holds it now holds it live
    assert again.fingerprint == ("fp-new" if free else "fp-old")
    if not free:
        assert held is not None
        assert held.fingerprint == "fp-old"
        assert (held.response is not None) == (state is not None and state[2])


# -- completing an attempt ----------------------------------------------------------------


@dataclass(frozen=True)
class ClaimShape:
    """A notification's status and claim token, as written to the item."""

    status: Status
    claim_token: str | None


CLAIM_SHAPES = st.builds(
    ClaimShape, st.sampled_from(list(Status)), st.sampled_from([None, OURS, "theirs"])
)


@CONDITIONS
@given(shape=CLAIM_SHAPES, target=TARGETS)
async def test_dynamodb_records_an_outcome_exactly_when_lifecycle_says_it_may(
    dynamo: Backend, shape: ClaimShape, target: Status
) -> None:
    store = dynamo_store(dynamo)
    n = notification(clock=dynamo.clock)
    await accept(dynamo, n)
    # Claimed by us first, so that attempt 1 is in the item; then put in the shape.
    assert await store.claim(n.id, OURS, lease_seconds=30, max_attempts=5) is not None
    token = (
        "SET #status = :status, claim_token = :token"
        if shape.claim_token is not None
        else "SET #status = :status REMOVE claim_token"
    )
    values = {":status": str(shape.status)} | (
        {":token": shape.claim_token} if shape.claim_token is not None else {}
    )
    await write(
        store,
        "update_item",
        Key=item(items.notification_key(n.id)),
        UpdateExpression=token,
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues=item(values),
    )
    allowed = lifecycle.may_complete(shape.status, shape.claim_token, OURS)

    done = await store.complete_attempt(n.id, OURS, first_attempt(), status=target)

    assert bool(done) == allowed, (shape, target, done)
    seen = await store.get_notification("acme", n.id)
    assert seen is not None
    assert seen.status is (target if allowed else shape.status)
    letters = [d.notification_id for d in await store.list_dead_letters("acme")]
    assert (n.id in letters) == (allowed and target is Status.FAILED)


# The states a notification reaches through the Store's own methods, and its
# status and claim token in each.
SQL_SHAPES = {
    "received": ClaimShape(Status.RECEIVED, None),
    "claimed by us": ClaimShape(Status.PROCESSING, OURS),
    "taken over": ClaimShape(Status.PROCESSING, "theirs"),
    "done": ClaimShape(Status.DONE, None),
    "failed": ClaimShape(Status.FAILED, None),
    "redriven": ClaimShape(Status.RECEIVED, None),
}


async def reach(backend: Backend, state: str) -> str:
    """A new notification in ``state``, through the public Store methods only."""
    store, clock = backend.store, backend.clock
    n = notification(clock=clock)
    await accept(backend, n)
    if state == "received":
        return n.id
    assert await store.claim(n.id, OURS, lease_seconds=30, max_attempts=5) is not None
    if state == "taken over":
        clock.advance(31)
        taken = await store.claim(n.id, "theirs", lease_seconds=30, max_attempts=5)
        assert taken is not None
        assert taken.claimed_by == "theirs"
    elif state in ("done", "failed", "redriven"):
        if state == "done":
            ended = await store.complete_attempt(
                n.id, OURS, first_attempt(Outcome.DELIVERED), status=Status.DONE
            )
        else:
            ended = await store.complete_attempt(n.id, OURS, first_attempt(), status=Status.FAILED)
        assert ended
        if state == "redriven":
            assert await store.redrive("acme", n.id) is not None
    return n.id


@CONDITIONS
@given(state=st.sampled_from(sorted(SQL_SHAPES)), target=TARGETS)
async def test_sqlite_records_an_outcome_exactly_when_lifecycle_says_it_may(
    sqlite: Backend, state: str, target: Status
) -> None:
    shape = SQL_SHAPES[state]
    nid = await reach(sqlite, state)
    seen = await sqlite.store.get_notification("acme", nid)
    assert seen is not None
    assert seen.status is shape.status
    allowed = lifecycle.may_complete(shape.status, shape.claim_token, OURS)

    done = await sqlite.store.complete_attempt(nid, OURS, first_attempt(), status=target)

    assert (done is not Completion.LOST) == allowed, (state, target, done)
    seen = await sqlite.store.get_notification("acme", nid)
    assert seen is not None
    assert seen.status is (target if allowed else shape.status)
