"""The rules the SQL stores state in SQL, against domain/lifecycle.py, on both databases.

**The Idempotency-Key takeover.** The stores take a key exactly when
``lifecycle.key_free`` says so.

The takeover must be atomic, so statements.RESERVE (and RESERVE_COMPLETE)
state ``key_free`` in SQL, as the conflict clause of one upsert. Here
hypothesis writes a key record in any state (or none) to a real SQLite file
and a real PostgreSQL database, reserves the key through the store, and
asserts that the store took it exactly when the lifecycle function says it
is free: the two definitions are checked against each other property by
property, boundaries (an expiry or a lock lapsing right now) included.

**The order of a notification's webhooks.** The webhook claim
(webhook_statements.CLAIM_DELIVERIES) states ``webhooks.may_deliver`` in SQL:
a delivery goes only once every earlier delivery of its notification to its
endpoint is finished. Here the earlier deliveries are put in every status
(and every way of being pending) with the store's own operations, and the
claim must take the later one exactly when ``may_deliver`` says it may go,
whatever else of the tenant is pending (another notification's delivery,
another endpoint's, the notification's later ones).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pg
from integration_hub.adapters.postgres.database import PostgresDatabase
from integration_hub.adapters.postgres.store import PostgresStore
from integration_hub.adapters.sql.dialect import Statement
from integration_hub.adapters.sql.flow import run, single
from integration_hub.adapters.sql.store import SqlStore
from integration_hub.adapters.sqlite.database import SqliteDatabase
from integration_hub.adapters.sqlite.store import SqliteStore
from integration_hub.domain import lifecycle, webhooks
from integration_hub.domain.models import Attempt, Outcome, from_epoch
from integration_hub.domain.status import Status
from integration_hub.domain.webhooks import (
    AttemptOutcome,
    AttemptResult,
    DeliveryStatus,
    DisablePolicy,
    Endpoint,
    EventType,
    WebhookEvent,
)
from integration_hub.ports import Completion
from support import ManualClock, notification

EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
# Times relative to now: the boundary (0) exactly, close to it, and anywhere.
OFFSETS = st.sampled_from([0.0, -0.001, 0.001, -30.0, 30.0]) | st.floats(
    min_value=-3600, max_value=3600, allow_nan=False
)
KEY_STATES = st.none() | st.tuples(OFFSETS, OFFSETS, st.booleans())

PUT_KEY = Statement(
    "test_put_key",
    "INSERT INTO idempotency_keys (tenant, key, fingerprint, reservation, created_at,"
    " locked_until, expires_at, response)"
    " VALUES ('acme', :key, 'fp-old', 'old', :created_at, :locked_until, :expires_at, :response)",
)


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    """A fresh SQL store of each kind for the whole test (examples use their own keys)."""
    clock = ManualClock()
    made: SqlStore
    if request.param == "sqlite":
        lite = SqliteDatabase(tmp_path / "keys.db", clock=clock)
        await lite.migrate()
        made = SqliteStore(lite)
    else:
        db = PostgresDatabase(request.getfixturevalue("postgres_url"), clock=clock)
        await db.open()
        async with db.connection() as conn:
            await pg.truncate_all(conn)
        made = PostgresStore(db)
    try:
        yield made
    finally:
        await made.close()


async def put(store: SqlStore, state: tuple[float, float, bool] | None) -> tuple[str, bool]:
    """A new key in ``state`` (None: no record); the key and whether lifecycle calls it free."""
    now = store.sql.clock.now()
    key = secrets.token_hex(8)
    if state is None:
        return key, lifecycle.key_free(None, now)
    expires, locked, completed = state
    record = {
        "key": key,
        "created_at": now - 7200,
        "expires_at": now + expires,
        "locked_until": now + locked,
        "response": json.dumps({"id": "old"}) if completed else None,
    }
    await store.sql.write(single(run(PUT_KEY, **record)))
    return key, lifecycle.key_free(lifecycle.KeyState.of(record), now)


@EXAMPLES
@given(state=KEY_STATES)
async def test_reserve_takes_a_key_exactly_when_lifecycle_says_it_is_free(
    store: SqlStore, state: tuple[float, float, bool] | None
) -> None:
    key, free = await put(store, state)

    held = await store.reserve_idempotency_key(
        "acme", key, "fp-new", reservation="new", lock_seconds=10
    )

    assert (held is None) == free, (state, held)
    again = await store.reserve_idempotency_key(
        "acme", key, "fp-probe", reservation="probe", lock_seconds=10
    )
    assert again is not None  # whoever holds it now holds it live
    assert again.fingerprint == ("fp-new" if free else "fp-old")
    if held is not None:
        assert held.fingerprint == "fp-old"
        assert (held.response is not None) == (state is not None and state[2])


@EXAMPLES
@given(state=KEY_STATES)
async def test_a_one_step_accept_takes_a_key_exactly_when_lifecycle_says_it_is_free(
    store: SqlStore, state: tuple[float, float, bool] | None
) -> None:
    key, free = await put(store, state)
    n = notification(key=key)

    accepted = await store.accept_new(n, {"id": n.id}, fingerprint="fp-new", ttl_seconds=60)

    assert (accepted.existing is None) == free, (state, accepted)
    assert (await store.get_notification("acme", n.id) is not None) == free


# -- recording an outcome ----------------------------------------------------------------

OURS = "ours"
SHAPE = Statement(
    "test_shape", "UPDATE notifications SET status = :status, claim_token = :token WHERE id = :id"
)


@EXAMPLES
@given(
    status=st.sampled_from(list(Status)),
    token=st.sampled_from([None, OURS, "theirs"]),
    target=st.sampled_from([Status.PROCESSING, Status.DONE, Status.FAILED]),
)
async def test_an_outcome_is_recorded_exactly_when_lifecycle_says_it_may(
    store: SqlStore, status: Status, token: str | None, target: Status
) -> None:
    n = notification()
    accepted = await store.accept_new(n, {"id": n.id}, fingerprint="fp", ttl_seconds=60)
    assert accepted.existing is None
    assert await store.claim(n.id, OURS, lease_seconds=30, max_attempts=5) is not None
    await store.sql.write(single(run(SHAPE, status=str(status), token=token, id=n.id)))
    allowed = lifecycle.may_complete(status, token, OURS)
    attempt = Attempt(
        number=1,
        provider="sandbox",
        started_at=from_epoch(0),
        outcome=Outcome.PERMANENT,
        latency_ms=1.0,
        error_class="permanent",
        message="refused",
    )

    done = await store.complete_attempt(n.id, OURS, attempt, status=target)

    assert (done is not Completion.LOST) == allowed, (status, token, target, done)
    seen = await store.get_notification("acme", n.id)
    assert seen is not None
    assert seen.status is (target if allowed else status)


# -- the order of a notification's webhook deliveries ------------------------------------

# How an earlier delivery is left, made with the store's operations, and its status.
SHAPES = {
    "succeeded": DeliveryStatus.SUCCEEDED,
    "failed": DeliveryStatus.FAILED,  # the endpoint answered 410 (then was enabled again)
    "waiting": DeliveryStatus.PENDING,  # due, not claimed (a retry of a finished one)
    "scheduled": DeliveryStatus.PENDING,  # an attempt failed, the next one is scheduled
    "in_flight": DeliveryStatus.PENDING,  # claimed, the lease live
    "lapsed": DeliveryStatus.PENDING,  # claimed, the lease lapsed: due again
}
HEADS = st.lists(
    st.sampled_from(["succeeded", "failed"])
    | st.sampled_from(["waiting", "scheduled", "in_flight", "lapsed"]),
    max_size=4,
)
WEBHOOK_EXAMPLES = settings(EXAMPLES, max_examples=40)
POLICY = DisablePolicy()
OK = AttemptResult(AttemptOutcome.SUCCESS, status_code=200)
BOOM = AttemptResult(AttemptOutcome.HTTP_ERROR, status_code=500, error="HTTP 500")
GONE = AttemptResult(AttemptOutcome.GONE, status_code=410, error="HTTP 410")
LEASE = 3600.0
SHORT_LEASE = 1.0


def new_endpoint(tenant: str, now: float) -> Endpoint:
    return Endpoint(
        id=webhooks.new_endpoint_id(),
        tenant=tenant,
        url="https://hooks.example.com/in",
        created_at=now,
        updated_at=now,
        secrets={"sealed": "opaque"},
    )


def change(tenant: str, notification_id: str, now: float) -> WebhookEvent:
    """An event of the notification (for every endpoint of the tenant)."""
    data = {"id": notification_id}
    return webhooks.event(
        EventType.RETRYING,
        tenant=tenant,
        occurred_at=now,
        data=data,
        notification_id=notification_id,
    )


async def attempt_one(
    store: SqlStore,
    delivery_id: str,
    result: AttemptResult | None,
    *,
    lease: float = LEASE,
) -> None:
    """Make ``delivery_id`` due (a retry if it is finished), claim what is due, which must
    include it, and record ``result`` for it (None: leave it claimed)."""
    found = await store.get_delivery(None, delivery_id)
    assert found is not None
    if found.status.finished:
        assert await store.retry_delivery(None, found.endpoint_id, delivery_id)
    claimed = await store.claim_deliveries(
        token="shaper", lease_seconds=lease, limit=1000, per_endpoint=1000
    )
    mine = [d for d in claimed if d.id == delivery_id]
    if not mine:  # every earlier delivery of its notification to its endpoint is finished
        pytest.fail("the claim refused a delivery that webhooks.may_deliver lets go")
    if result is None:
        return
    assert await store.finish_attempt(mine[0], "shaper", result, policy=POLICY) is not None
    if result is GONE:  # disabled: enabled again, to go on
        endpoint = await store.get_endpoint(None, found.endpoint_id)
        assert endpoint is not None
        assert await store.update_endpoint(endpoint.with_enabled(True, store.sql.clock.now()))


async def add_delivery(store: SqlStore, tenant: str, endpoint_id: str, n: str) -> str:
    """A new event of notification ``n``, fanned out: its delivery to ``endpoint_id``."""
    event = change(tenant, n, store.sql.clock.now())
    await store.append_event(event)
    await store.fan_out()
    found = await store.list_deliveries(tenant, endpoint_id, limit=1000)
    [delivery_id] = [d.id for d in found if d.event.id == event.id]
    return delivery_id


@WEBHOOK_EXAMPLES
@given(heads=HEADS, noise=st.booleans(), after=st.integers(min_value=0, max_value=2))
async def test_a_webhook_claim_takes_a_delivery_exactly_when_may_deliver_says_it_may_go(
    store: SqlStore, heads: list[str], noise: bool, after: int
) -> None:
    clock = store.sql.clock
    assert isinstance(clock, ManualClock)
    tenant = "t-" + secrets.token_hex(6)
    ours = new_endpoint(tenant, clock.now())
    endpoints = [ours, new_endpoint(tenant, clock.now())] if noise else [ours]
    for e in endpoints:
        await store.create_endpoint(e)
    n = "n-" + secrets.token_hex(6)
    try:
        if noise:  # another notification's delivery to ours, earlier than all of n's
            await add_delivery(store, tenant, ours.id, "n-other-" + secrets.token_hex(6))
        # One at a time, each finished before the next exists: the earlier ones, the later.
        earlier = []
        for shape in heads:
            earlier.append(await add_delivery(store, tenant, ours.id, n))
            await attempt_one(store, earlier[-1], GONE if shape == "failed" else OK)
        later = await add_delivery(store, tenant, ours.id, n)
        await attempt_one(store, later, OK)
        for _ in range(after):  # n's deliveries after the later one, pending
            await add_delivery(store, tenant, ours.id, n)
        # Then the earlier ones pending again, the last first: what is claimed for that
        # needs every delivery before it finished.
        for shape, delivery_id in reversed(list(zip(heads, earlier, strict=True))):
            if shape in ("scheduled", "in_flight", "lapsed"):
                result = BOOM if shape == "scheduled" else None
                lease = SHORT_LEASE if shape == "lapsed" else LEASE
                await attempt_one(store, delivery_id, result, lease=lease)
            elif shape == "waiting":
                assert await store.retry_delivery(None, ours.id, delivery_id)
        clock.advance(2 * SHORT_LEASE)
        for shape, delivery_id in zip(heads, earlier, strict=True):
            found = await store.get_delivery(None, delivery_id)
            assert found is not None
            assert found.status is SHAPES[shape], (heads, shape)
            if shape in ("in_flight", "lapsed"):
                assert found.next_attempt_at is not None
                assert (found.next_attempt_at <= clock.now()) == (shape == "lapsed")
        assert await store.retry_delivery(None, ours.id, later)

        claimed = await store.claim_deliveries(
            token="probe", lease_seconds=60, limit=1000, per_endpoint=1000
        )

        may_go = webhooks.may_deliver([SHAPES[s] for s in heads])
        assert (later in {d.id for d in claimed}) == may_go, (heads, noise, after)
    finally:
        for e in endpoints:
            await store.delete_endpoint(tenant, e.id)
