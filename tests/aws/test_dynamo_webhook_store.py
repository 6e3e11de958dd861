"""Webhooks on DynamoDB (moto over HTTP): the outbox events every change writes, and the
WebhookStore port (endpoints, fan-out, claims, attempts, retries, replays, stats).

The backend-independent contract lives in tests/contract; these tests also read
the items and indexes the promises rest on.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest

from aws.motoserver import MotoAws
from integration_hub.adapters.aws import tables, webhook_deliveries, webhook_items
from integration_hub.adapters.aws.backend import DynamoBackend
from integration_hub.adapters.aws.dynamodb import DynamoStore
from integration_hub.adapters.sql import retention as sql_retention
from integration_hub.domain import errors, webhooks
from integration_hub.domain.models import Attempt, Notification, Outcome, from_epoch
from integration_hub.domain.receipts import DeliveryState, Receipt
from integration_hub.domain.status import Status
from integration_hub.domain.webhooks import (
    AttemptOutcome,
    AttemptResult,
    Delivery,
    DeliveryStatus,
    DisabledReason,
    DisablePolicy,
    Endpoint,
    EventType,
)
from integration_hub.ports import Completion
from integration_hub.ports.webhooks import EndpointChanged
from support import Backend, accept, notification

E = EventType
POLICY = DisablePolicy()
OK = AttemptResult(AttemptOutcome.SUCCESS, status_code=200, latency_ms=4.0)
ERROR = AttemptResult(AttemptOutcome.HTTP_ERROR, status_code=500, error="HTTP 500")
GONE = AttemptResult(AttemptOutcome.GONE, status_code=410, error="HTTP 410")


def store_of(aws: Backend) -> DynamoStore:
    store = aws.store
    assert isinstance(store, DynamoStore)
    return store


def endpoint(
    aws: Backend, tenant: str = "acme", types: frozenset[EventType] | None = None
) -> Endpoint:
    now = aws.clock.now()
    return Endpoint(
        id=webhooks.new_endpoint_id(),
        tenant=tenant,
        url=f"https://{tenant}.example.com/hooks",
        created_at=now,
        updated_at=now,
        secrets={"sealed": "opaque-ciphertext"},
        event_types=types,
    )


async def added(aws: Backend, tenant: str = "acme", **kwargs: object) -> Endpoint:
    made = endpoint(aws, tenant, **kwargs)  # type: ignore[arg-type]
    await store_of(aws).create_endpoint(made)
    aws.clock.advance(0.001)  # creation order
    return made


def attempt(number: int, outcome: Outcome, message_id: str | None = None) -> Attempt:
    return Attempt(number, "twilio", from_epoch(0), outcome, 2.0, provider_message_id=message_id)


async def us(aws: Backend) -> Notification:
    n = notification(country="US", clock=aws.clock)
    await accept(aws, n)
    return n


async def done(aws: Backend, message_id: str | None = "SM1") -> Notification:
    n = await us(aws)
    await aws.store.claim(n.id, "w", lease_seconds=30, max_attempts=5)
    recorded = await aws.store.complete_attempt(
        n.id, "w", attempt(1, Outcome.DELIVERED, message_id), status=Status.DONE
    )
    assert recorded is Completion.RECORDED
    return n


async def types_of(aws: Backend, n: Notification) -> list[EventType]:
    return [e.type for e in await store_of(aws).list_events(n.tenant, notification_id=n.id)]


def receipt(aws: Backend, state: DeliveryState, message_id: str = "SM1") -> Receipt:
    return Receipt(
        tenant="acme",
        provider="twilio",
        provider_message_id=message_id,
        state=state,
        raw_status=state.value,
        error_code=None,
        occurred_at=None,
        received_at=from_epoch(aws.clock.now()),
    )


async def claim(aws: Backend, worker: str = "t", **kwargs: object) -> list[Delivery]:
    """``claim_deliveries`` as ``worker``, 30 s leases, generous caps unless given."""
    args: dict[str, object] = {"lease_seconds": 30, "limit": 50, "per_endpoint": 50} | kwargs
    return await store_of(aws).claim_deliveries(token=worker, **args)  # type: ignore[arg-type]


# -- the outbox: one event per committed change, in the change's transaction ----------


async def test_accept_writes_the_accepted_event_of_the_stored_notification(aws: Backend) -> None:
    n = await us(aws)
    [event] = await store_of(aws).list_events("acme", notification_id=n.id)
    assert event.type is E.ACCEPTED
    assert event.notification_id == n.id
    assert event.occurred_at == aws.clock.now()
    assert event.data == {
        "id": n.id,
        "tenant": "acme",
        "country": "US",
        "channel": "sms",
        "provider": n.provider,
        "status": "RECEIVED",
        "delivery_state": None,
        "attempt_count": 0,
        "last_error": None,
    }


async def test_a_notifications_life_writes_its_events_in_order_at_one_instant(
    aws: Backend,
) -> None:
    # The manual clock never moves: the order is the changes', not the clock's.
    n = await done(aws)
    await aws.store.record_receipt(receipt(aws, DeliveryState.DELIVERED))
    await aws.store.record_receipt(receipt(aws, DeliveryState.READ))
    assert await types_of(aws, n) == [E.ACCEPTED, E.DONE, E.DELIVERED, E.READ]
    events = await store_of(aws).list_events("acme", notification_id=n.id)
    assert events[1].data["status"] == "DONE"
    assert events[1].data["delivery_state"] == "sent"
    assert events[1].data["attempt_count"] == 1
    assert events[3].data["delivery_state"] == "read"


async def test_a_retry_and_a_permanent_failure_write_retrying_and_failed(aws: Backend) -> None:
    n = await us(aws)
    await aws.store.claim(n.id, "a", lease_seconds=30, max_attempts=5)
    await aws.store.complete_attempt(
        n.id, "a", attempt(1, Outcome.TRANSIENT), status=Status.PROCESSING
    )
    await aws.store.claim(n.id, "b", lease_seconds=30, max_attempts=5)
    await aws.store.complete_attempt(n.id, "b", attempt(2, Outcome.PERMANENT), status=Status.FAILED)
    assert await types_of(aws, n) == [E.ACCEPTED, E.RETRYING, E.FAILED]


async def test_a_completion_that_fails_is_failed_though_it_writes_a_dead_letter(
    aws: Backend,
) -> None:
    # ports/webhooks.py: complete_attempt tells completion_event(status); dead_lettered
    # is for FAILED without a recorded outcome (dead_letter, a claim finding the budget spent).
    n = await us(aws)
    await aws.store.claim(n.id, "a", lease_seconds=30, max_attempts=5)
    await aws.store.complete_attempt(
        n.id,
        "a",
        attempt(1, Outcome.PERMANENT),
        status=Status.FAILED,
        dead_letter_reason="invalid recipient",
    )
    assert await types_of(aws, n) == [E.ACCEPTED, E.FAILED]
    assert [d.notification_id for d in await aws.store.list_dead_letters("acme")] == [n.id]
    last = (await store_of(aws).list_events("acme", notification_id=n.id))[-1]
    assert (last.data["status"], last.data["last_error"]) == ("FAILED", "invalid recipient")


async def test_an_accept_that_lost_its_key_writes_no_event(aws: Backend) -> None:
    n = notification(country="US", clock=aws.clock)
    store = aws.store
    assert (
        await store.reserve_idempotency_key(
            "acme", n.idempotency_key, "fp", reservation="r1", lock_seconds=10
        )
        is None
    )
    aws.clock.advance(11)  # the lock lapses and another request takes the key over
    assert (
        await store.reserve_idempotency_key(
            "acme", n.idempotency_key, "fp", reservation="r2", lock_seconds=10
        )
        is None
    )
    with pytest.raises(errors.IdempotencyInProgress):
        await store.accept(n, {"id": n.id}, reservation="r1", ttl_seconds=3600)
    assert await store.get_notification("acme", n.id) is None
    assert await store_of(aws).list_events("acme") == []
    assert (await store_of(aws).webhook_stats()).unfanned_events == 0


async def test_a_stale_completion_writes_no_event(aws: Backend) -> None:
    n = await us(aws)
    await aws.store.claim(n.id, "mine", lease_seconds=30, max_attempts=5)
    lost = await aws.store.complete_attempt(
        n.id, "not-mine", attempt(1, Outcome.DELIVERED, "SM9"), status=Status.DONE
    )
    assert lost is Completion.LOST
    assert await types_of(aws, n) == [E.ACCEPTED]


async def test_a_claim_that_finds_the_budget_spent_writes_dead_lettered(aws: Backend) -> None:
    n = await us(aws)
    await aws.store.claim(n.id, "a", lease_seconds=5, max_attempts=1)
    aws.clock.advance(6)
    ended = await aws.store.claim(n.id, "b", lease_seconds=5, max_attempts=1)
    assert ended is not None
    assert ended.status is Status.FAILED
    assert await types_of(aws, n) == [E.ACCEPTED, E.DEAD_LETTERED]


async def test_dead_letter_writes_its_event_once_and_redrive_writes_redriven(aws: Backend) -> None:
    n = await us(aws)
    assert await aws.store.dead_letter(n.id, "poison")
    assert await aws.store.dead_letter(n.id, "poison")  # settled already: no change
    assert await aws.store.redrive("acme", n.id) is False
    assert await types_of(aws, n) == [E.ACCEPTED, E.DEAD_LETTERED, E.REDRIVEN]
    last = (await store_of(aws).list_events("acme", notification_id=n.id))[-1]
    assert last.data["status"] == "RECEIVED"


async def test_a_receipt_that_does_not_move_the_state_writes_no_event(aws: Backend) -> None:
    n = await done(aws)
    await aws.store.record_receipt(receipt(aws, DeliveryState.READ))
    await aws.store.record_receipt(receipt(aws, DeliveryState.READ))  # duplicate
    await aws.store.record_receipt(receipt(aws, DeliveryState.DELIVERED))  # ranks lower
    assert await types_of(aws, n) == [E.ACCEPTED, E.DONE, E.READ]


async def test_expiry_writes_expired_and_only_for_what_it_expires(aws: Backend) -> None:
    silent = await done(aws, "SM-silent")
    answered = await done(aws, "SM-answered")
    await aws.store.record_receipt(receipt(aws, DeliveryState.DELIVERED, "SM-answered"))
    aws.clock.advance(3600)
    now = from_epoch(aws.clock.now())
    cut = now - timedelta(seconds=1800)
    assert await aws.store.expire_deliveries(sent_before=cut, now=now, limit=10) == 1
    assert await types_of(aws, silent) == [E.ACCEPTED, E.DONE, E.EXPIRED]
    assert await types_of(aws, answered) == [E.ACCEPTED, E.DONE, E.DELIVERED]


async def test_events_are_purged_with_their_notification(aws: Backend) -> None:
    n = await done(aws)
    aws.clock.advance(10_000)
    counts = await store_of(aws).purge(60)
    assert await types_of(aws, n) == []
    assert counts["webhook_events"] == 2  # accepted, done


# -- endpoints -------------------------------------------------------------------------


async def test_a_tenant_sees_only_its_own_endpoints_oldest_first(aws: Backend) -> None:
    store = store_of(aws)
    first, second = await added(aws), await added(aws)
    theirs = await added(aws, "globex")
    assert [e.id for e in await store.list_endpoints("acme")] == [first.id, second.id]
    assert await store.get_endpoint("acme", first.id) == first
    assert await store.get_endpoint("acme", theirs.id) is None
    assert await store.get_endpoint(None, theirs.id) == theirs
    assert not await store.delete_endpoint("acme", theirs.id)
    assert await store.get_endpoint(None, theirs.id) == theirs


async def test_an_endpoint_update_replaces_its_fields_but_not_its_owner(aws: Backend) -> None:
    store = store_of(aws)
    made = await added(aws)
    changed = replace(
        made,
        url="https://acme.example.com/v2",
        description="v2",
        event_types=frozenset({E.DONE}),
        enabled=False,
        disabled_reason=DisabledReason.BY_TENANT,
        disabled_at=5.0,
        consecutive_failures=3,
        failing_since=2.0,
        secrets={"sealed": "rotated"},
        updated_at=made.updated_at + 1,
    )
    # Another tenant's name finds nothing; the creation time is never rewritten.
    assert not await store.update_endpoint(replace(changed, tenant="globex"))
    assert await store.update_endpoint(replace(changed, created_at=0.0))
    assert await store.get_endpoint("acme", made.id) == replace(changed, revision=1)
    assert (await store.webhook_stats()).disabled_endpoints == 1
    assert not await store.update_endpoint(endpoint(aws))


# -- fan-out ---------------------------------------------------------------------------


async def test_fan_out_makes_one_delivery_per_accepting_endpoint_once(aws: Backend) -> None:
    store = store_of(aws)
    every = await added(aws)
    only_done = await added(aws, types=frozenset({E.DONE}))
    off = await added(aws)
    await store.update_endpoint(replace(off, enabled=False))
    await added(aws, "globex")
    n = await us(aws)
    assert (await store.webhook_stats()).unfanned_events == 1
    assert await store.fan_out() == 1
    assert await store.fan_out() == 0
    assert (await store.webhook_stats()).unfanned_events == 0
    [delivery] = await store.list_deliveries("acme", every.id)
    assert delivery.status is DeliveryStatus.PENDING
    assert delivery.event.type is E.ACCEPTED
    assert delivery.event.notification_id == n.id
    assert await store.list_deliveries("acme", only_done.id) == []
    assert await store.list_deliveries("acme", off.id) == []


async def test_concurrent_fan_outs_fan_each_event_exactly_once(aws: Backend) -> None:
    store = store_of(aws)
    hooks = [await added(aws) for _ in range(3)]
    made = [await us(aws) for _ in range(6)]
    counts = await asyncio.gather(*(store.fan_out() for _ in range(4)))
    assert sum(counts) == len(made)
    for hook in hooks:
        got = await store.list_deliveries("acme", hook.id)
        assert sorted(d.event.notification_id or "" for d in got) == sorted(n.id for n in made)


async def test_a_clock_behind_cannot_fan_a_later_event_out_first(aws: Backend) -> None:
    store = store_of(aws)
    hook = await added(aws)
    n = await us(aws)
    aws.clock.advance(-60)  # the worker's clock is a minute behind the API's
    await aws.store.claim(n.id, "w", lease_seconds=30, max_attempts=5)
    await aws.store.complete_attempt(
        n.id, "w", attempt(1, Outcome.DELIVERED, "SM1"), status=Status.DONE
    )
    # done is the oldest event by its time, but accepted comes first.
    assert await store.fan_out(limit=1) == 1
    assert [d.event.type for d in await store.list_deliveries("acme", hook.id)] == [E.ACCEPTED]
    assert await store.fan_out(limit=1) == 1
    [accepted] = await claim(aws)
    assert accepted.event.type is E.ACCEPTED


async def test_fan_out_takes_at_most_limit_oldest_first(aws: Backend) -> None:
    store = store_of(aws)
    hook = await added(aws)
    made = []
    for _ in range(3):
        made.append(await us(aws))
        aws.clock.advance(1)
    assert await store.fan_out(limit=2) == 2
    got = await store.list_deliveries("acme", hook.id)
    assert sorted(d.event.notification_id or "" for d in got) == sorted(n.id for n in made[:2])
    assert await store.fan_out(limit=2) == 1


async def test_a_delivery_carries_its_event_byte_for_byte(aws: Backend) -> None:
    store = store_of(aws)
    hook = await added(aws)
    ping = webhooks.ping_event(hook, aws.clock.now() + 0.123)
    await store.append_event(ping)
    assert await store.fan_out() == 1
    [delivery] = await claim(aws)
    assert delivery.event == ping
    assert delivery.event.body() == ping.body()
    n = await us(aws)
    await store.fan_out()
    [accepted] = await claim(aws)
    [event] = await store.list_events("acme", notification_id=n.id)
    assert accepted.event.body() == event.body()  # its nulls included


# -- claims ----------------------------------------------------------------------------


async def test_a_claim_leases_due_deliveries_and_a_lapsed_lease_is_claimable(
    aws: Backend,
) -> None:
    store = store_of(aws)
    hook = await added(aws)
    await us(aws)
    await store.fan_out()
    [got] = await claim(aws, "w1")
    assert (got.claim_token, got.claim_expires_at) == ("w1", aws.clock.now() + 30)
    assert await claim(aws, "w2") == []
    aws.clock.advance(31)
    [again] = await claim(aws, "w2")
    assert (again.id, again.claim_token) == (got.id, "w2")
    assert await store.finish_attempt(got, "w1", OK, policy=POLICY) is None
    assert (await store.list_deliveries("acme", hook.id))[0].attempts == ()


async def test_concurrent_claims_never_lease_one_delivery_twice(aws: Backend) -> None:
    store = store_of(aws)
    hooks = [await added(aws) for _ in range(3)]
    for hook in hooks:
        for _ in range(4):
            await store.append_event(webhooks.ping_event(hook, aws.clock.now()))
    await store.fan_out()
    waves = await asyncio.gather(*(claim(aws, f"w{i}", limit=5) for i in range(4)))
    taken = [d.id for wave in waves for d in wave]
    assert len(taken) == len(set(taken)) == 12
    for i, wave in enumerate(waves):
        assert all(d.claim_token == f"w{i}" for d in wave)


async def test_a_claim_keeps_to_per_endpoint_and_the_exclusions(aws: Backend) -> None:
    store = store_of(aws)
    busy, other = await added(aws), await added(aws)
    theirs = await added(aws, "globex")
    for _ in range(3):
        await us(aws)
    await store.fan_out()
    for _ in range(3):
        await store.append_event(webhooks.ping_event(theirs, aws.clock.now()))
    await store.fan_out()
    got = await claim(aws, per_endpoint=2, exclude_endpoints=[other.id], exclude_tenants=["globex"])
    assert [d.endpoint_id for d in got] == [busy.id, busy.id]
    rest = await claim(aws, "w2", limit=4)
    assert sorted(d.endpoint_id for d in rest).count(other.id) == 3
    assert len(rest) == 4


async def test_a_claim_pages_past_a_backlog_it_may_not_take(
    aws: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = store_of(aws)
    monkeypatch.setattr(webhook_deliveries, "MIN_PAGE", 1)
    monkeypatch.setattr(webhook_deliveries, "READ_AHEAD", 1)
    full, off, free = await added(aws), await added(aws), await added(aws)
    for hook in (full, off) * 12:
        await store.append_event(webhooks.ping_event(hook, aws.clock.now()))
    await store.fan_out()
    aws.clock.advance(1)
    await store.append_event(webhooks.ping_event(free, aws.clock.now()))
    await store.fan_out()
    await store.update_endpoint(replace(off, enabled=False))
    # One item per page: the 24 older ones are read past, a page at a time.
    [got] = await claim(aws, limit=1, exclude_endpoints=[full.id])
    assert got.endpoint_id == free.id


async def test_a_notifications_later_event_waits_for_the_earlier_delivery(aws: Backend) -> None:
    store = store_of(aws)
    hook = await added(aws)
    n = await done(aws)  # accepted and done, both unfanned
    assert await store.fan_out() == 2
    [first] = await claim(aws)
    assert first.event.type is E.ACCEPTED
    assert await claim(aws, "w2") == []  # done waits while accepted is pending
    decision = await store.finish_attempt(first, "t", ERROR, policy=POLICY)
    assert decision is not None
    assert decision.status is DeliveryStatus.PENDING
    aws.clock.advance(10_000)
    [retried] = await claim(aws, "w3")
    assert retried.id == first.id  # still the accepted one: done keeps waiting
    await store.finish_attempt(retried, "w3", OK, policy=POLICY)
    [after] = await claim(aws, "w4")
    assert (after.event.type, after.event.notification_id) == (E.DONE, n.id)
    assert len(await store.list_deliveries("acme", hook.id)) == 2


async def test_a_disabled_or_deleted_endpoint_gets_nothing_claimed(aws: Backend) -> None:
    store = store_of(aws)
    off, gone = await added(aws), await added(aws)
    await us(aws)
    await store.fan_out()
    await store.update_endpoint(replace(off, enabled=False))
    assert await store.delete_endpoint("acme", gone.id)
    assert await claim(aws) == []
    assert await store.list_deliveries(None, gone.id) == []
    await store.update_endpoint(replace(off, revision=1))
    [got] = await claim(aws)
    assert got.endpoint_id == off.id


# -- attempts ------------------------------------------------------------------------


async def test_a_success_finishes_the_delivery_with_its_attempt(aws: Backend) -> None:
    store = store_of(aws)
    hook = await added(aws)
    await us(aws)
    await store.fan_out()
    [got] = await claim(aws)
    decision = await store.finish_attempt(got, "t", OK, policy=POLICY)
    assert decision is not None
    assert decision.status is DeliveryStatus.SUCCEEDED
    found = await store.get_delivery("acme", got.id)
    assert found is not None
    assert (found.status, found.attempt_count, found.claim_token) == (
        DeliveryStatus.SUCCEEDED,
        1,
        None,
    )
    assert found.finished_at == aws.clock.now()
    assert [(a.number, a.result) for a in found.attempts] == [(1, OK)]
    assert await store.get_delivery("globex", got.id) is None
    assert (await store.webhook_stats()).pending == 0
    assert await store.finish_attempt(got, "t", OK, policy=POLICY) is None  # claim gone
    again = await store.get_delivery(None, got.id)
    assert again is not None
    assert len(again.attempts) == 1
    assert await store.get_endpoint("acme", hook.id) == hook


async def test_failures_schedule_a_retry_and_count_on_the_endpoint(aws: Backend) -> None:
    store = store_of(aws)
    hook = await added(aws)
    await us(aws)
    await store.fan_out()
    [got] = await claim(aws)
    decision = await store.finish_attempt(got, "t", ERROR, policy=POLICY)
    assert decision is not None
    assert decision.status is DeliveryStatus.PENDING
    assert decision.next_attempt_at is not None
    found = await store.get_delivery("acme", got.id)
    assert found is not None
    assert (found.last_status_code, found.last_error, found.next_attempt_at) == (
        500,
        "HTTP 500",
        decision.next_attempt_at,
    )
    counted = await store.get_endpoint("acme", hook.id)
    assert counted is not None
    assert (counted.consecutive_failures, counted.failing_since) == (1, aws.clock.now())
    stats = await store.webhook_stats()
    assert stats.pending == 1
    aws.clock.advance(100)
    assert (await store.webhook_stats()).oldest_due_age_seconds > 0


async def test_410_disables_the_endpoint_and_tells_the_others(aws: Backend) -> None:
    store = store_of(aws)
    gone, other = await added(aws), await added(aws)
    await store.append_event(webhooks.ping_event(gone, aws.clock.now()))
    await store.append_event(webhooks.ping_event(gone, aws.clock.now()))
    await store.fan_out()
    [got] = await claim(aws, limit=1)
    decision = await store.finish_attempt(got, "t", GONE, policy=POLICY)
    assert decision is not None
    assert (decision.status, decision.disable) == (DeliveryStatus.FAILED, DisabledReason.GONE)
    off = await store.get_endpoint("acme", gone.id)
    assert off is not None
    assert (off.enabled, off.disabled_reason, off.disabled_at) == (
        False,
        DisabledReason.GONE,
        aws.clock.now(),
    )
    # What was waiting for it gives up; nothing of it is claimable.
    waiting = [d for d in await store.list_deliveries("acme", gone.id) if d.id != got.id]
    assert [(d.status, d.last_error) for d in waiting] == [
        (DeliveryStatus.FAILED, "the endpoint was disabled")
    ]
    [told] = [e for e in await store.list_events("acme") if e.type is E.ENDPOINT_DISABLED]
    assert told.data == {"endpoint_id": gone.id, "url": gone.url, "reason": "gone"}
    assert (await store.webhook_stats()).disabled_endpoints == 1
    assert await store.fan_out() == 1
    [news] = await claim(aws)
    assert (news.endpoint_id, news.event.id) == (other.id, told.id)


async def test_concurrent_attempts_of_one_endpoint_all_count(aws: Backend) -> None:
    store = store_of(aws)
    hook = await added(aws)
    for _ in range(4):
        await store.append_event(webhooks.ping_event(hook, aws.clock.now()))
    await store.fan_out()
    got = await claim(aws)
    assert len(got) == 4
    decisions = await asyncio.gather(
        *(store.finish_attempt(d, "t", ERROR, policy=POLICY) for d in got)
    )
    assert all(d is not None for d in decisions)
    counted = await store.get_endpoint("acme", hook.id)
    assert counted is not None
    assert counted.consecutive_failures == 4


# -- listing, retrying, replaying ------------------------------------------------------


async def test_deliveries_list_newest_first_in_pages(aws: Backend) -> None:
    store = store_of(aws)
    hook = await added(aws)
    for _ in range(3):
        await store.append_event(webhooks.ping_event(hook, aws.clock.now()))
        await store.fan_out()
        await asyncio.sleep(0.002)  # delivery ids are time-ordered by the millisecond
    listed = await store.list_deliveries("acme", hook.id)
    assert [d.id for d in listed] == sorted((d.id for d in listed), reverse=True)
    page = await store.list_deliveries("acme", hook.id, limit=1, before_id=listed[0].id)
    assert [d.id for d in page] == [listed[1].id]
    assert await store.list_deliveries("globex", hook.id) == []


async def test_a_finished_delivery_can_be_retried_from_the_start(aws: Backend) -> None:
    store = store_of(aws)
    hook = await added(aws)
    await store.append_event(webhooks.ping_event(hook, aws.clock.now()))
    await store.fan_out()
    [got] = await claim(aws)
    await store.finish_attempt(got, "t", GONE, policy=POLICY)
    gone = await store.get_endpoint("acme", hook.id)
    assert gone is not None
    assert not gone.enabled  # 410 disabled it: an update read before that is refused
    with pytest.raises(EndpointChanged):
        await store.update_endpoint(replace(hook, enabled=True))
    assert await store.update_endpoint(gone.with_enabled(True, aws.clock.now()))
    assert not await store.retry_delivery("acme", "ep_other", got.id)
    assert not await store.retry_delivery("globex", hook.id, got.id)
    assert await store.retry_delivery("acme", hook.id, got.id)
    assert not await store.retry_delivery("acme", hook.id, got.id)  # pending already
    [again] = await claim(aws, "w2")
    assert (again.id, again.attempt_count, again.status) == (got.id, 1, DeliveryStatus.PENDING)
    await store.finish_attempt(again, "w2", OK, policy=POLICY)
    found = await store.get_delivery("acme", got.id)
    assert found is not None
    assert [(a.number, a.result.outcome) for a in found.attempts] == [
        (1, AttemptOutcome.GONE),
        (2, AttemptOutcome.SUCCESS),
    ]


async def test_replay_redelivers_what_the_endpoint_accepts_since_a_time(aws: Backend) -> None:
    store = store_of(aws)
    old = await us(aws)
    aws.clock.advance(100)
    since = aws.clock.now()
    n = await done(aws)
    await added(aws, "globex")
    await store.fan_out()
    hook = await added(aws)  # added after the events: nothing fanned to it
    assert await store.list_deliveries("acme", hook.id) == []
    assert await store.replay("acme", hook.id, since=since) == 2
    got = await store.list_deliveries("acme", hook.id)
    events = await store.list_events("acme", notification_id=n.id)
    assert sorted(d.event.id for d in got) == sorted(e.id for e in events)
    assert await store.replay("acme", hook.id, since=since, types=[E.DONE]) == 1
    assert await store.replay("globex", hook.id, since=since) == 0
    assert old.id not in {d.event.notification_id for d in got}


async def test_list_events_is_the_tenants_oldest_first(aws: Backend) -> None:
    store = store_of(aws)
    a = await us(aws)
    aws.clock.advance(1)
    b = await us(aws)
    hook = await added(aws, "globex")
    await store.append_event(webhooks.ping_event(hook, aws.clock.now()))
    events = await store.list_events("acme")
    assert [e.notification_id for e in events] == [a.id, b.id]
    assert [e.type for e in await store.list_events("globex")] == [E.TEST]
    assert await store.list_events("globex", notification_id=a.id) == []
    assert len(await store.list_events("acme", limit=1)) == 1


async def test_pending_deliveries_sit_in_the_sparse_due_index(
    aws: Backend, moto_aws: MotoAws
) -> None:
    store = store_of(aws)
    hook = await added(aws)
    await store.append_event(webhooks.ping_event(hook, aws.clock.now()))
    await store.fan_out()
    [got] = await claim(aws)

    def due() -> list[str]:
        found = []
        for shard in range(webhook_items.DUE_SHARDS):
            page = moto_aws.boto3_client("dynamodb").query(
                TableName=store.table,
                IndexName=webhook_items.WEBHOOK_INDEX,
                KeyConditionExpression="GSI5PK = :pk",
                ExpressionAttributeValues=tables.item({":pk": webhook_items.due_partition(shard)}),
            )
            found += [tables.plain(i)["id"] for i in page["Items"]]
        return found

    assert due() == [got.id]
    await store.finish_attempt(got, "t", OK, policy=POLICY)
    assert due() == []


async def test_retention_forgets_finished_deliveries_and_old_fanned_events(aws: Backend) -> None:
    store = store_of(aws)
    hook = await added(aws)
    await store.append_event(webhooks.ping_event(hook, aws.clock.now()))
    await store.append_event(webhooks.ping_event(hook, aws.clock.now()))
    await store.fan_out()
    finished, pending = await claim(aws)
    await store.finish_attempt(finished, "t", ERROR, policy=POLICY)
    await store.finish_attempt(pending, "t", ERROR, policy=POLICY)
    aws.clock.advance(webhooks.SCHEDULE[1])  # both due again
    [again] = [d for d in await claim(aws) if d.id == finished.id]
    await store.finish_attempt(again, "t", OK, policy=POLICY)  # its second attempt
    await store.append_event(webhooks.ping_event(hook, aws.clock.now()))  # unfanned
    aws.clock.advance(3600)
    backend = DynamoBackend(store, aws.queue)  # type: ignore[arg-type]
    counts = await backend.purge(60)
    # What the SQL stores report, in their order: the two fanned events, the
    # finished delivery and its two attempts.
    assert tuple(counts) == sql_retention.COUNTS
    assert {name: n for name, n in counts.items() if n} == {
        "webhook_events": 2,
        "webhook_deliveries": 1,
        "webhook_attempts": 2,
    }
    assert await store.get_delivery(None, finished.id) is None
    assert await store.get_delivery(None, pending.id) is not None
    assert [e.type for e in await store.list_events("acme")] == [E.TEST]
    assert (await store.webhook_stats()).unfanned_events == 1
