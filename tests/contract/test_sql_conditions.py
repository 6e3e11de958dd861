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
from integration_hub.domain import lifecycle
from integration_hub.domain.models import Attempt, Outcome, from_epoch
from integration_hub.domain.status import Status
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
