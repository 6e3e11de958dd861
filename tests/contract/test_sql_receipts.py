"""Delivery receipts and suppression lists in the SQL store, on SQLite and PostgreSQL.

What every backend must do is tests/contract/test_receipts_store.py; here is
what the SQL store adds to it: the delivery state written by
``complete_attempt``, the database's own duplicate check, a provider message
id reused, receipts raced over two PostgreSQL connections, and hypothesis
checking that receipts recorded one by one, in any order and with
duplicates, end as ``receipts.fold`` says.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pg
from integration_hub.adapters.postgres.database import PostgresDatabase
from integration_hub.adapters.postgres.store import PostgresStore
from integration_hub.adapters.sql.store import SqlStore
from integration_hub.adapters.sqlite.database import SqliteDatabase
from integration_hub.adapters.sqlite.store import SqliteStore
from integration_hub.domain import receipts
from integration_hub.domain.models import Attempt, Notification, Outcome, from_epoch
from integration_hub.domain.receipts import DeliveryState, Receipt, SuppressionReason
from integration_hub.domain.routing import Channel
from integration_hub.domain.status import Status
from integration_hub.ports import Completion, Match, Suppression
from support import ManualClock, notification

S = DeliveryState


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    """A fresh SQL store of each kind on a clock the test moves."""
    clock = ManualClock()
    made: SqlStore
    if request.param == "sqlite":
        lite = SqliteDatabase(tmp_path / "receipts.db", clock=clock)
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


def clock_of(store: SqlStore) -> ManualClock:
    """The test's clock behind ``store``."""
    clock = store.sql.clock
    assert isinstance(clock, ManualClock)
    return clock


def now_of(store: SqlStore) -> datetime:
    """The store clock's now as a datetime."""
    return from_epoch(store.sql.clock.now())


async def finished(
    store: SqlStore,
    provider_message_id: str | None,
    *,
    tenant: str = "acme",
    country: str = "ES",
    status: Status = Status.DONE,
) -> Notification:
    """A notification accepted, claimed and finished with ``status`` at provider ``sandbox``."""
    n = notification(tenant, country, clock=clock_of(store))
    held = await store.reserve_idempotency_key(
        tenant, n.idempotency_key, "fp", reservation="r", lock_seconds=10
    )
    assert held is None
    await store.accept(n, {"id": n.id}, reservation="r", ttl_seconds=3600)
    token = "t-" + n.id
    assert await store.claim(n.id, token, lease_seconds=30, max_attempts=5) is not None
    attempt = Attempt(
        number=1,
        provider="sandbox",
        started_at=now_of(store),
        outcome=Outcome.DELIVERED if status is Status.DONE else Outcome.PERMANENT,
        latency_ms=1.0,
        provider_message_id=provider_message_id,
    )
    completion = await store.complete_attempt(
        n.id, token, attempt, status=status, dead_letter_reason="permanent: no"
    )
    assert completion is Completion.RECORDED
    return n


def receipt(
    store: SqlStore,
    provider_message_id: str,
    state: DeliveryState,
    raw_status: str | None = None,
    *,
    tenant: str = "acme",
    provider: str = "sandbox",
    error_code: str | None = None,
    occurred_at: datetime | None = None,
) -> Receipt:
    """A receipt received now."""
    return Receipt(
        tenant=tenant,
        provider=provider,
        provider_message_id=provider_message_id,
        state=state,
        raw_status=raw_status or str(state),
        error_code=error_code,
        occurred_at=occurred_at,
        received_at=now_of(store),
    )


# -- the delivery state a completion starts ---------------------------------------------


async def test_done_with_a_provider_message_id_is_sent_in_the_same_write(
    store: SqlStore,
) -> None:
    sent_at = now_of(store)
    n = await finished(store, "pm-1")
    found = await store.get_notification("acme", n.id)
    assert found is not None
    assert found.status is Status.DONE
    assert found.delivery_state is S.SENT
    assert found.delivery_updated_at == sent_at
    assert found.provider_message_id == "pm-1"
    listed = await store.list_notifications("acme", delivery_state=S.SENT)
    assert [x.id for x in listed] == [n.id]
    assert listed[0].delivery_state is S.SENT


async def test_without_a_provider_message_id_or_when_failed_there_is_no_delivery_state(
    store: SqlStore,
) -> None:
    unnamed = await finished(store, None)
    failed = await finished(store, "pm-failed", status=Status.FAILED)
    for n in (unnamed, failed):
        found = await store.get_notification("acme", n.id)
        assert found is not None
        assert found.delivery_state is None
        assert found.delivery_updated_at is None
        assert found.provider_message_id is None
    assert await store.list_notifications("acme", delivery_state=S.SENT) == []
    unmatched = await store.record_receipt(receipt(store, "pm-failed", S.DELIVERED))
    assert unmatched.match is Match.UNMATCHED


# -- recording receipts ----------------------------------------------------------------------


async def test_a_receipt_advances_the_state_and_says_what_it_did(store: SqlStore) -> None:
    sent_at = now_of(store)
    n = await finished(store, "pm-1")
    clock_of(store).advance(5)

    record = await store.record_receipt(receipt(store, "pm-1", S.DELIVERED))

    assert record.match is Match.RECORDED
    assert record.notification_id == n.id
    assert record.channel is Channel.EMAIL
    assert record.recipient == "ana@example.com"
    assert (record.before, record.after) == (S.SENT, S.DELIVERED)
    assert record.sent_at == sent_at
    found = await store.get_notification("acme", n.id)
    assert found is not None
    assert found.delivery_state is S.DELIVERED
    assert found.delivery_updated_at == sent_at + timedelta(seconds=5)
    assert [x.id for x in await store.list_notifications("acme", delivery_state=S.DELIVERED)] == [
        n.id
    ]
    assert await store.list_notifications("acme", delivery_state=S.SENT) == []


async def test_a_phone_channel_receipt_names_the_phone(store: SqlStore) -> None:
    n = await finished(store, "pm-sms", country="MX")
    record = await store.record_receipt(receipt(store, "pm-sms", S.UNDELIVERED))
    assert record.notification_id == n.id
    assert record.channel is n.channel
    assert record.recipient == "+5215512345678"


async def test_a_lower_receipt_is_an_event_but_moves_nothing(store: SqlStore) -> None:
    n = await finished(store, "pm-1")
    clock_of(store).advance(1)
    await store.record_receipt(receipt(store, "pm-1", S.READ))
    read_at = now_of(store)
    clock_of(store).advance(1)

    late = await store.record_receipt(receipt(store, "pm-1", S.DELIVERED))

    assert late.match is Match.RECORDED
    assert (late.before, late.after) == (S.READ, S.READ)
    found = await store.get_notification("acme", n.id)
    assert found is not None
    assert found.delivery_state is S.READ
    assert found.delivery_updated_at == read_at  # unchanged state, unchanged time
    events = await store.delivery_events("acme", n.id)
    assert [e.state for e in events] == [S.READ, S.DELIVERED]


async def test_a_duplicate_writes_nothing_and_received_at_is_not_its_identity(
    store: SqlStore,
) -> None:
    n = await finished(store, "pm-1")
    first = receipt(store, "pm-1", S.DELIVERED, "delivered", occurred_at=now_of(store))
    assert (await store.record_receipt(first)).match is Match.RECORDED
    clock_of(store).advance(60)
    again = receipt(store, "pm-1", S.DELIVERED, "delivered", occurred_at=first.occurred_at)

    record = await store.record_receipt(again)

    assert record.match is Match.DUPLICATE
    assert record.notification_id == n.id
    assert record.before == record.after == S.DELIVERED
    [event] = await store.delivery_events("acme", n.id)
    assert event.received_at == first.received_at
    found = await store.get_notification("acme", n.id)
    assert found is not None
    assert found.delivery_updated_at == first.received_at
    # The same status with another error code is another event.
    other = receipt(store, "pm-1", S.DELIVERED, "delivered", error_code="0")
    assert (await store.record_receipt(other)).match is Match.RECORDED


async def test_a_receipt_finds_only_its_tenant_and_provider(store: SqlStore) -> None:
    await finished(store, "pm-1", tenant="acme")
    for stranger in (
        receipt(store, "pm-1", S.DELIVERED, tenant="globex"),
        receipt(store, "pm-1", S.DELIVERED, provider="twilio"),
        receipt(store, "pm-2", S.DELIVERED),
    ):
        assert await store.record_receipt(stranger) == receipts_unmatched()


def receipts_unmatched() -> object:
    """What an unmatched receipt answers: nothing but the match."""
    from integration_hub.ports import ReceiptRecord

    return ReceiptRecord(Match.UNMATCHED)


async def test_a_provider_message_id_reused_never_fails_a_completion(store: SqlStore) -> None:
    # The index is not unique on purpose: the second send must still be DONE,
    # and its receipts go to the latest sent.
    older = await finished(store, "pm-reused")
    clock_of(store).advance(10)
    newer = await finished(store, "pm-reused")

    record = await store.record_receipt(receipt(store, "pm-reused", S.DELIVERED))

    assert record.notification_id == newer.id
    old = await store.get_notification("acme", older.id)
    assert old is not None
    assert old.status is Status.DONE
    assert old.delivery_state is S.SENT


async def test_events_are_the_tenants_own_oldest_received_first_at_most_100(
    store: SqlStore,
) -> None:
    n = await finished(store, "pm-1")
    for i in range(105):
        clock_of(store).advance(1)
        await store.record_receipt(receipt(store, "pm-1", S.DELIVERED, f"status-{i}"))
    events = await store.delivery_events("acme", n.id)
    assert [e.raw_status for e in events] == [f"status-{i}" for i in range(100)]
    assert events == sorted(events, key=lambda e: e.received_at)
    assert await store.delivery_events("globex", n.id) == []
    assert await store.delivery_events("acme", "no-such-id") == []


# -- expiry ---------------------------------------------------------------------------------


async def test_what_is_still_sent_past_the_cutoff_expires_up_to_the_limit(
    store: SqlStore,
) -> None:
    timeout = timedelta(hours=72)
    oldest = await finished(store, "pm-oldest")
    clock_of(store).advance(1)
    old = await finished(store, "pm-old")
    clock_of(store).advance(1)
    answered = await finished(store, "pm-answered")
    await store.record_receipt(receipt(store, "pm-answered", S.DELIVERED))
    clock_of(store).advance(3600)
    recent = await finished(store, "pm-recent")
    clock_of(store).advance(timeout.total_seconds() - 1800)
    now = now_of(store)
    cutoff = receipts.expiry_cutoff(now, timeout)

    assert await store.expire_deliveries(sent_before=cutoff, now=now, limit=1) == 1
    assert await store.expire_deliveries(sent_before=cutoff, now=now, limit=10) == 1
    assert await store.expire_deliveries(sent_before=cutoff, now=now, limit=10) == 0

    states = {}
    for n in (oldest, old, answered, recent):
        found = await store.get_notification("acme", n.id)
        assert found is not None
        states[n.id] = found.delivery_state
    assert states == {
        oldest.id: S.EXPIRED,
        old.id: S.EXPIRED,
        answered.id: S.DELIVERED,
        recent.id: S.SENT,
    }
    expired = await store.get_notification("acme", oldest.id)
    assert expired is not None
    assert expired.delivery_updated_at == now
    [event] = await store.delivery_events("acme", oldest.id)
    assert event.provider == receipts.EXPIRY_PROVIDER
    assert event.raw_status == receipts.EXPIRY_STATUS
    assert event.state is S.EXPIRED
    assert event.received_at == now
    # A real receipt arriving afterwards still wins.
    late = await store.record_receipt(receipt(store, "pm-oldest", S.DELIVERED))
    assert (late.before, late.after) == (S.EXPIRED, S.DELIVERED)


async def test_the_cutoff_itself_expires(store: SqlStore) -> None:
    sent_at = now_of(store)
    n = await finished(store, "pm-1")
    clock_of(store).advance(10)
    now = now_of(store)
    assert await store.expire_deliveries(sent_before=sent_at, now=now, limit=10) == 1
    found = await store.get_notification("acme", n.id)
    assert found is not None
    assert found.delivery_state is S.EXPIRED


# -- suppression lists ----------------------------------------------------------------------


def suppression(
    store: SqlStore,
    address: str,
    channel: Channel = Channel.EMAIL,
    reason: SuppressionReason = SuppressionReason.HARD_BOUNCE,
    *,
    tenant: str = "acme",
    note: str | None = None,
) -> Suppression:
    """A suppression created now."""
    return Suppression(tenant, channel, address, reason, now_of(store), "n-1", note)


async def test_a_suppression_is_stored_once_and_the_first_one_stays(store: SqlStore) -> None:
    first = suppression(store, "ana@example.com", note="bounced")
    assert await store.add_suppression(first) == first
    clock_of(store).advance(5)
    second = suppression(store, "ana@example.com", reason=SuppressionReason.OPERATOR)
    assert await store.add_suppression(second) == first
    assert await store.get_suppression("acme", Channel.EMAIL, "ana@example.com") == first
    assert await store.get_suppression("acme", Channel.SMS, "ana@example.com") is None
    assert await store.get_suppression("globex", Channel.EMAIL, "ana@example.com") is None


async def test_suppressions_list_in_channel_and_address_order_page_by_page(
    store: SqlStore,
) -> None:
    wanted = [
        suppression(store, "b@example.com"),
        suppression(store, "a@example.com"),
        suppression(store, "+34600000002", Channel.SMS, SuppressionReason.OPTED_OUT),
        suppression(store, "+34600000001", Channel.SMS, SuppressionReason.LANDLINE),
        suppression(store, "+34600000001", Channel.WHATSAPP, SuppressionReason.NOT_ON_WHATSAPP),
    ]
    for s in wanted:
        await store.add_suppression(s)
    await store.add_suppression(suppression(store, "z@example.com", tenant="globex"))
    ordered = sorted(wanted, key=lambda s: (str(s.channel), s.address))

    assert await store.list_suppressions("acme") == ordered
    pages: list[Suppression] = []
    after: tuple[Channel, str] | None = None
    while page := await store.list_suppressions("acme", limit=2, after=after):
        pages += page
        after = (page[-1].channel, page[-1].address)
    assert pages == ordered
    sms = await store.list_suppressions("acme", channel=Channel.SMS)
    assert [s.address for s in sms] == ["+34600000001", "+34600000002"]
    later = await store.list_suppressions(
        "acme", channel=Channel.SMS, after=(Channel.SMS, "+34600000001")
    )
    assert [s.address for s in later] == ["+34600000002"]
    assert [s.address for s in await store.list_suppressions("globex")] == ["z@example.com"]


async def test_removing_a_suppression_says_whether_there_was_one(store: SqlStore) -> None:
    await store.add_suppression(suppression(store, "ana@example.com"))
    assert not await store.remove_suppression("globex", Channel.EMAIL, "ana@example.com")
    assert await store.remove_suppression("acme", Channel.EMAIL, "ana@example.com")
    assert not await store.remove_suppression("acme", Channel.EMAIL, "ana@example.com")
    assert await store.get_suppression("acme", Channel.EMAIL, "ana@example.com") is None


# -- concurrency (PostgreSQL) ------------------------------------------------------------------


async def test_receipts_raced_over_many_connections_lose_nothing(store: SqlStore) -> None:
    if not isinstance(store, PostgresStore):
        pytest.skip("SQLite serialises every write on one writer thread")
    n = await finished(store, "pm-1")
    states = [S.DELIVERED, S.READ, S.UNDELIVERED, S.BOUNCED, S.DELIVERED, S.READ]
    raced = [receipt(store, "pm-1", s, f"{s}-{i}") for i, s in enumerate(states)]
    # Every receipt in its own transaction on its own pooled connection, all at once.
    records = await asyncio.gather(*(store.record_receipt(r) for r in raced))
    assert all(r.match is Match.RECORDED for r in records)
    found = await store.get_notification("acme", n.id)
    assert found is not None
    assert found.delivery_state is receipts.merge(states) is S.READ
    events = await store.delivery_events("acme", n.id)
    assert sorted(e.raw_status for e in events) == sorted(r.raw_status for r in raced)
    # The same event raced twice is recorded once.
    twins = [receipt(store, "pm-1", S.COMPLAINED, "complaint")] * 2
    matches = sorted(str(r.match) for r in await asyncio.gather(*map(store.record_receipt, twins)))
    assert matches == [str(Match.DUPLICATE), str(Match.RECORDED)]
    found = await store.get_notification("acme", n.id)
    assert found is not None
    assert found.delivery_state is S.COMPLAINED


async def test_two_receipts_on_two_connections_serialise_on_the_row_lock(
    store: SqlStore,
) -> None:
    # The first receipt's transaction holds the row (opened by hand, left
    # uncommitted); the second, on another connection, must wait for it and
    # then see its state, not the one it would have read before.
    if not isinstance(store, PostgresStore):
        pytest.skip("SQLite serialises every write on one writer thread")
    from integration_hub.adapters.sql import receipts as flows
    from integration_hub.adapters.sql.flow import run_async

    n = await finished(store, "pm-1")
    async with store.db.transaction() as first:
        held = await run_async(first, flows.record_receipt(receipt(store, "pm-1", S.READ)))
        assert held.after is S.READ
        second = asyncio.ensure_future(store.record_receipt(receipt(store, "pm-1", S.DELIVERED)))
        await waiting_on_a_lock(store)
        assert not second.done()
    record = await second
    assert (record.before, record.after) == (S.READ, S.READ)
    found = await store.get_notification("acme", n.id)
    assert found is not None
    assert found.delivery_state is S.READ


async def waiting_on_a_lock(store: PostgresStore) -> None:
    """Return once a session of this database waits on a lock (no fixed sleep decides)."""
    async with store.db.connection() as conn:
        for _ in range(1200):
            waiting = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if waiting:
                return
            await asyncio.sleep(0.05)
    raise AssertionError("the second receipt never waited for the first one's row lock")


# -- any order, any duplicates (SQLite) ---------------------------------------------------------

EXAMPLES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
EVENTS = st.lists(
    st.tuples(st.sampled_from(list(DeliveryState)), st.sampled_from(["a", "b"])),
    min_size=1,
    max_size=6,
)


@pytest.fixture
async def lite(tmp_path: Path) -> AsyncIterator[SqlStore]:
    """One SQLite store for every example (each example sends its own notification)."""
    db = SqliteDatabase(tmp_path / "fold.db", clock=ManualClock())
    await db.migrate()
    made = SqliteStore(db)
    try:
        yield made
    finally:
        await made.close()


@EXAMPLES
@given(events=EVENTS, data=st.data())
async def test_receipts_in_any_order_with_duplicates_end_as_fold_says(
    lite: SqlStore, events: list[tuple[DeliveryState, str]], data: st.DataObject
) -> None:
    pmid = "pm-" + secrets.token_hex(6)
    n = await finished(lite, pmid)
    distinct = [receipt(lite, pmid, state, raw) for state, raw in events]
    # Duplicates: some receipts redelivered, later and with a later received time.
    copies = data.draw(st.lists(st.sampled_from(distinct), max_size=4))
    arrivals = data.draw(st.permutations(distinct + copies))
    recorded = []
    for r in arrivals:
        clock_of(lite).advance(1)
        arriving = Receipt(
            r.tenant,
            r.provider,
            r.provider_message_id,
            r.state,
            r.raw_status,
            r.error_code,
            r.occurred_at,
            now_of(lite),
        )
        recorded.append(arriving)
        await lite.record_receipt(arriving)

    state, folded = receipts.fold(recorded)
    found = await lite.get_notification("acme", n.id)
    assert found is not None
    assert state is not None
    assert found.delivery_state is receipts.advance(S.SENT, state)
    assert found.delivery_state is receipts.merge([S.SENT, *(r.state for r in recorded)])
    events_seen = await lite.delivery_events("acme", n.id)
    assert [(e.state, e.raw_status, e.received_at) for e in events_seen] == [
        (r.state, r.raw_status, r.received_at) for r in folded
    ]
