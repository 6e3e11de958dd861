"""Every backend behind the Store and Queue ports, over a real connection."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

import pg
from aws.motoserver import MotoAws, start_moto
from integration_hub.adapters.postgres.database import PostgresDatabase
from integration_hub.adapters.postgres.queue import PostgresOutbox, PostgresQueue
from integration_hub.adapters.postgres.store import PostgresStore
from integration_hub.adapters.sqlite.database import SqliteDatabase
from integration_hub.adapters.sqlite.queue import SqliteOutbox, SqliteQueue
from integration_hub.adapters.sqlite.store import SqliteStore
from support import Backend, ManualClock


async def _sqlite(request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock) -> Backend:
    db = SqliteDatabase(tmp_path / "contract.db", clock=clock)
    await db.migrate()
    return Backend("sqlite", SqliteStore(db), SqliteQueue(db), SqliteOutbox(db), clock)


async def _postgres(request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock) -> Backend:
    url: str = request.getfixturevalue("postgres_url")
    db = PostgresDatabase(url, clock=clock)
    await db.open()
    async with db.connection() as conn:
        await pg.truncate_all(conn)
    return Backend("postgres", PostgresStore(db), PostgresQueue(db), PostgresOutbox(db), clock)


# Contract tests the AWS backend does not run, and why (ADR 0011 lists them too).
# Each one has an AWS-specific counterpart in tests/aws that checks what holds on
# SQS with real (short) timeouts.
_WALL_CLOCK = (
    "SQS keeps visibility timeouts and delays on its own wall clock, which the"
    " test's ManualClock cannot advance"
)
AWS_EXCEPTIONS = {
    "test_a_received_message_is_invisible_until_its_timeout": _WALL_CLOCK,
    "test_ack_deletes_and_a_stale_receipt_is_ignored": _WALL_CLOCK,
    "test_delayed_messages_become_available_later": _WALL_CLOCK,
    "test_release_with_delay_is_a_backoff": _WALL_CLOCK
    + "; and a release is ChangeMessageVisibility, which SQS counts as in flight, not delayed",
    "test_stats_count_visible_in_flight_and_delayed": "SQS does not report the age of the"
    " oldest message (that is the CloudWatch metric ApproximateAgeOfOldestMessage)",
    "test_a_purge_forgets_old_finished_notifications_with_their_history": "the test's purge"
    " helper dispatches to SQLite and PostgreSQL only, and SQS messages cannot be deleted by"
    " notification id (queue count); DynamoDB retention is tested in tests/aws",
    "test_a_purge_forgets_expired_idempotency_keys_only": "the test's purge helper dispatches"
    " to SQLite and PostgreSQL only; DynamoDB retention is tested in tests/aws",
}


async def _aws(request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock) -> Backend:
    reason = AWS_EXCEPTIONS.get(request.node.originalname)
    if reason:
        pytest.skip(f"AWS exception (ADR 0011): {reason}")
    moto: MotoAws = request.getfixturevalue("moto_aws")
    request.addfinalizer(moto.cleanup)
    return await moto.backend(clock)


FACTORIES: dict[str, Callable[[pytest.FixtureRequest, Path, ManualClock], Awaitable[Backend]]] = {
    "sqlite": _sqlite,
    "postgres": _postgres,
    "aws": _aws,
}


@pytest.fixture(scope="session")
def moto_aws() -> Iterator[MotoAws]:
    """One moto server for the session (DynamoDB and SQS over HTTP)."""
    yield from start_moto()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One throwaway database for the session, migrated once; each test empties it."""

    async def migrate(url: str) -> None:
        db = PostgresDatabase(url)
        await db.open()
        try:
            await db.migrate()
        finally:
            await db.close()

    with pg.throwaway_database() as url:
        pg.run_sync(migrate(url))
        yield url


@pytest.fixture(params=sorted(FACTORIES))
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """A fresh, empty backend of each kind."""
    made = await FACTORIES[request.param](request, tmp_path, ManualClock())
    try:
        yield made
    finally:
        await made.store.close()
