"""The WebhookStore contract, and the outbox every state change writes (ADR 0021).

Every backend: an event exists exactly when its change committed (none for a
stale completion or a duplicate receipt), fan-out makes one delivery per
accepting endpoint exactly once, claims respect leases, per-endpoint caps,
exclusions and the order of a notification's events, and an attempt's
outcome is recorded with what ``webhooks.decide_delivery`` decides.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest

from integration_hub.domain import webhooks
from integration_hub.domain.models import Attempt, Outcome, from_epoch
from integration_hub.domain.receipts import DeliveryState, Receipt
from integration_hub.domain.status import Status
from integration_hub.domain.webhooks import (
    AttemptOutcome,
    AttemptResult,
    DeliveryStatus,
    DisabledReason,
    DisablePolicy,
    Endpoint,
    EventType,
)
from integration_hub.ports.webhooks import EndpointChanged, WebhookStore
from support import Backend, accept, notification

E = EventType
POLICY = DisablePolicy()
OK = AttemptResult(AttemptOutcome.SUCCESS, status_code=200, latency_ms=4.0)
BOOM = AttemptResult(AttemptOutcome.HTTP_ERROR, status_code=500, latency_ms=3.0, error="HTTP 500")
GONE = AttemptResult(AttemptOutcome.GONE, status_code=410, latency_ms=2.0, error="HTTP 410")


@pytest.fixture
def store(backend: Backend) -> WebhookStore:
    return backend.store


def endpoint(
    backend: Backend,
    tenant: str = "acme",
    *,
    types: frozenset[EventType] | None = None,
    url: str = "https://hooks.example.com/in",
) -> Endpoint:
    now = backend.clock.now()
    return Endpoint(
        id=webhooks.new_endpoint_id(),
        tenant=tenant,
        url=url,
        created_at=now,
        updated_at=now,
        secrets={"sealed": "opaque"},
        event_types=types,
    )


def attempt(number: int, outcome: Outcome, message_id: str | None = None) -> Attempt:
    return Attempt(
        number=number,
        provider="twilio",
        started_at=from_epoch(0),
        outcome=outcome,
        latency_ms=3.0,
        error_class=None if outcome is Outcome.DELIVERED else "transient",
        message=None if outcome is Outcome.DELIVERED else "provider 503",
        provider_message_id=message_id,
    )


async def claimed_ping(backend: Backend, store: WebhookStore, ep: Endpoint) -> webhooks.Delivery:
    """A webhook.test event to ``ep``, fanned out and claimed by token ``a``."""
    await store.append_event(webhooks.ping_event(ep, backend.clock.now()))
    await store.fan_out()
    [got] = await store.claim_deliveries(token="a", lease_seconds=60, limit=10, per_endpoint=4)
    return got


async def types_of(store: WebhookStore, tenant: str, notification_id: str) -> list[EventType]:
    return [e.type for e in await store.list_events(tenant, notification_id=notification_id)]


# -- the outbox -----------------------------------------------------------------------------


async def test_each_change_of_a_notification_writes_its_event_in_order(
    backend: Backend, store: WebhookStore
) -> None:
    n = notification("acme", "US", clock=backend.clock)
    await accept(backend, n)
    assert await types_of(store, "acme", n.id) == [E.ACCEPTED]

    assert await backend.store.claim(n.id, "w1", lease_seconds=30, max_attempts=5)
    # Claiming is not a reported change.
    assert await types_of(store, "acme", n.id) == [E.ACCEPTED]
    await backend.store.complete_attempt(
        n.id, "w1", attempt(1, Outcome.TRANSIENT), status=Status.PROCESSING
    )
    backend.clock.advance(5)
    assert await backend.store.claim(n.id, "w1", lease_seconds=30, max_attempts=5)
    await backend.store.complete_attempt(
        n.id, "w1", attempt(2, Outcome.DELIVERED, "SM9"), status=Status.DONE
    )
    events = await store.list_events("acme", notification_id=n.id)
    assert [e.type for e in events] == [E.ACCEPTED, E.RETRYING, E.DONE]
    accepted, retrying, done = events
    assert accepted.data["status"] == "RECEIVED"
    assert accepted.data["attempt_count"] == 0
    assert retrying.data["status"] == "PROCESSING"
    assert retrying.data["last_error"] == "provider 503"
    assert retrying.data["attempt_count"] == 1
    assert done.data == {
        "id": n.id,
        "tenant": "acme",
        "country": "US",
        "channel": "sms",
        "provider": "twilio",
        "status": "DONE",
        "delivery_state": "sent",
        "attempt_count": 2,
        "last_error": None,
    }
    assert len({e.id for e in events}) == 3
    assert done.occurred_at == pytest.approx(backend.clock.now())
    # The body is the payload of the spec: {type, timestamp, data}.
    assert done.body().startswith(b'{"data":{')


async def test_a_stale_completion_writes_no_event(backend: Backend, store: WebhookStore) -> None:
    n = notification("acme", "US", clock=backend.clock)
    await accept(backend, n)
    assert await backend.store.claim(n.id, "w1", lease_seconds=30, max_attempts=5)
    lost = await backend.store.complete_attempt(
        n.id, "someone-else", attempt(1, Outcome.DELIVERED, "SM1"), status=Status.DONE
    )
    assert not lost
    assert await types_of(store, "acme", n.id) == [E.ACCEPTED]


async def test_a_completion_ending_failed_writes_failed_not_dead_lettered(
    backend: Backend, store: WebhookStore
) -> None:
    n = notification("acme", "US", clock=backend.clock)
    await accept(backend, n)
    assert await backend.store.claim(n.id, "w1", lease_seconds=30, max_attempts=5)
    refused = Attempt(
        number=1,
        provider="twilio",
        started_at=from_epoch(0),
        outcome=Outcome.PERMANENT,
        latency_ms=2.0,
        error_class="invalid_number",
        message="not a mobile number",
    )
    await backend.store.complete_attempt(n.id, "w1", refused, status=Status.FAILED)
    events = await store.list_events("acme", notification_id=n.id)
    assert [e.type for e in events] == [E.ACCEPTED, E.FAILED]
    assert events[-1].data["last_error"] == "not a mobile number"


async def test_dead_letter_and_redrive_write_their_events(
    backend: Backend, store: WebhookStore
) -> None:
    n = notification("acme", "US", clock=backend.clock)
    await accept(backend, n)
    assert await backend.store.dead_letter(n.id, "poison: unreadable")
    # AWS answers False: the caller sends the SQS message (ports/store.py).
    assert await backend.store.redrive("acme", n.id) is not None
    events = await store.list_events("acme", notification_id=n.id)
    assert [e.type for e in events] == [E.ACCEPTED, E.DEAD_LETTERED, E.REDRIVEN]
    assert events[1].data["status"] == "FAILED"
    assert events[1].data["last_error"] == "poison: unreadable"
    assert events[2].data["status"] == "RECEIVED"


async def test_a_claim_that_finds_the_budget_spent_writes_dead_lettered(
    backend: Backend, store: WebhookStore
) -> None:
    n = notification("acme", "US", clock=backend.clock)
    await accept(backend, n)
    # One attempt allowed; the worker dies mid-call and its lease lapses.
    assert await backend.store.claim(n.id, "w1", lease_seconds=30, max_attempts=1)
    backend.clock.advance(31)
    failed = await backend.store.claim(n.id, "w2", lease_seconds=30, max_attempts=1)
    assert failed is not None
    assert failed.status is Status.FAILED
    assert await types_of(store, "acme", n.id) == [E.ACCEPTED, E.DEAD_LETTERED]


async def test_receipts_write_an_event_only_when_the_state_moves(
    backend: Backend, store: WebhookStore
) -> None:
    n = notification("acme", "US", clock=backend.clock)
    await accept(backend, n)
    assert await backend.store.claim(n.id, "w1", lease_seconds=30, max_attempts=5)
    await backend.store.complete_attempt(
        n.id, "w1", attempt(1, Outcome.DELIVERED, "SM7"), status=Status.DONE
    )
    now = from_epoch(backend.clock.now())
    receipt = Receipt(
        tenant="acme",
        provider="twilio",
        provider_message_id="SM7",
        state=DeliveryState.DELIVERED,
        raw_status="delivered",
        error_code=None,
        occurred_at=now,
        received_at=now,
    )
    await backend.store.record_receipt(receipt)
    await backend.store.record_receipt(receipt)  # a duplicate: nothing moves
    events = await store.list_events("acme", notification_id=n.id)
    assert [e.type for e in events] == [E.ACCEPTED, E.DONE, E.DELIVERED]
    assert events[-1].data["delivery_state"] == "delivered"


async def test_expiry_writes_notification_expired(backend: Backend, store: WebhookStore) -> None:
    n = notification("acme", "US", clock=backend.clock)
    await accept(backend, n)
    assert await backend.store.claim(n.id, "w1", lease_seconds=30, max_attempts=5)
    await backend.store.complete_attempt(
        n.id, "w1", attempt(1, Outcome.DELIVERED, "SM8"), status=Status.DONE
    )
    backend.clock.advance(3600)
    now = from_epoch(backend.clock.now())
    expired = await backend.store.expire_deliveries(
        sent_before=now - timedelta(seconds=60), now=now, limit=10
    )
    assert expired == 1
    events = await store.list_events("acme", notification_id=n.id)
    assert [e.type for e in events] == [E.ACCEPTED, E.DONE, E.EXPIRED]
    assert events[-1].data["delivery_state"] == "expired"


# -- endpoints ------------------------------------------------------------------------------


async def test_endpoints_are_the_tenants_own(backend: Backend, store: WebhookStore) -> None:
    mine = endpoint(backend, types=frozenset({E.DONE, E.FAILED}))
    theirs = endpoint(backend, "globex")
    await store.create_endpoint(mine)
    await store.create_endpoint(theirs)
    assert await store.get_endpoint("acme", mine.id) == mine
    assert await store.get_endpoint("acme", theirs.id) is None
    assert await store.get_endpoint(None, theirs.id) == theirs
    assert await store.list_endpoints("acme") == [mine]

    changed = replace(mine, url="https://new.example.com/", enabled=False)
    assert await store.update_endpoint(changed)
    assert await store.get_endpoint("acme", mine.id) == replace(changed, revision=1)
    assert not await store.update_endpoint(replace(changed, tenant="globex", revision=1))
    assert not await store.delete_endpoint("globex", mine.id)
    assert await store.delete_endpoint("acme", mine.id)
    assert await store.get_endpoint("acme", mine.id) is None
    assert not await store.update_endpoint(changed)


async def test_an_update_read_before_another_change_is_refused_and_writes_nothing(
    backend: Backend, store: WebhookStore
) -> None:
    ep = endpoint(backend)
    await store.create_endpoint(ep)
    first = replace(ep, description="first")
    assert await store.update_endpoint(first)
    with pytest.raises(EndpointChanged):
        await store.update_endpoint(replace(ep, url="https://stale.example.com/"))
    assert await store.get_endpoint("acme", ep.id) == replace(first, revision=1)


async def test_an_update_read_before_the_loop_disabled_the_endpoint_cannot_re_enable_it(
    backend: Backend, store: WebhookStore
) -> None:
    ep = endpoint(backend)
    await store.create_endpoint(ep)
    read = await store.get_endpoint("acme", ep.id)
    assert read is not None
    got = await claimed_ping(backend, store, ep)
    decision = await store.finish_attempt(got, "a", GONE, policy=POLICY)
    assert decision is not None
    assert decision.disable is DisabledReason.GONE
    with pytest.raises(EndpointChanged):
        await store.update_endpoint(replace(read, description="renamed"))
    now = await store.get_endpoint("acme", ep.id)
    assert now is not None
    assert (now.enabled, now.disabled_reason, now.description) == (
        False,
        DisabledReason.GONE,
        "",
    )


async def test_an_update_keeps_the_loops_failure_counters_unless_it_flips_enabled(
    backend: Backend, store: WebhookStore
) -> None:
    ep = endpoint(backend)
    await store.create_endpoint(ep)
    read = await store.get_endpoint("acme", ep.id)
    assert read is not None
    got = await claimed_ping(backend, store, ep)
    await store.finish_attempt(got, "a", BOOM, policy=POLICY)  # the loop counts a failure
    assert await store.update_endpoint(replace(read, description="renamed"))
    kept = await store.get_endpoint("acme", ep.id)
    assert kept is not None
    assert (kept.description, kept.consecutive_failures) == ("renamed", 1)
    assert kept.failing_since is not None
    # Disabling and enabling again is a fresh start: the counters go with it.
    assert await store.update_endpoint(kept.with_enabled(False, backend.clock.now()))
    off = await store.get_endpoint("acme", ep.id)
    assert off is not None
    assert await store.update_endpoint(off.with_enabled(True, backend.clock.now()))
    fresh = await store.get_endpoint("acme", ep.id)
    assert fresh is not None
    assert (fresh.enabled, fresh.consecutive_failures, fresh.failing_since) == (True, 0, None)


async def test_concurrent_creations_never_take_a_tenant_past_the_cap(
    backend: Backend, store: WebhookStore
) -> None:
    made = await asyncio.gather(
        *(store.create_endpoint(endpoint(backend), limit=3) for _ in range(8))
    )
    assert made.count(True) == 3
    assert len(await store.list_endpoints("acme")) == 3
    # Another tenant has its own count; a deletion frees a place.
    assert await store.create_endpoint(endpoint(backend, "globex"), limit=3)
    first = (await store.list_endpoints("acme"))[0]
    assert not await store.create_endpoint(endpoint(backend), limit=3)
    assert await store.delete_endpoint("acme", first.id)
    assert await store.create_endpoint(endpoint(backend), limit=3)
    assert len(await store.list_endpoints("acme")) == 3


# -- fan-out and claims -----------------------------------------------------------------------


async def test_fan_out_makes_one_delivery_per_accepting_endpoint_once(
    backend: Backend, store: WebhookStore
) -> None:
    every = endpoint(backend)
    done_only = endpoint(backend, types=frozenset({E.DONE}))
    other_tenant = endpoint(backend, "globex")
    for e in (every, done_only, other_tenant):
        await store.create_endpoint(e)
    n = notification("acme", "US", clock=backend.clock)
    await accept(backend, n)
    assert await store.fan_out() == 1
    assert await store.fan_out() == 0
    assert [d.event.type for d in await store.list_deliveries("acme", every.id)] == [E.ACCEPTED]
    assert await store.list_deliveries("acme", done_only.id) == []
    assert await store.list_deliveries("globex", other_tenant.id) == []
    stats = await store.webhook_stats()
    assert (stats.pending, stats.unfanned_events) == (1, 0)


async def test_claims_lease_and_a_lapsed_lease_is_claimable_again(
    backend: Backend, store: WebhookStore
) -> None:
    ep = endpoint(backend)
    await store.create_endpoint(ep)
    await accept(backend, notification("acme", "US", clock=backend.clock))
    await store.fan_out()
    [first] = await store.claim_deliveries(token="a", lease_seconds=60, limit=10, per_endpoint=4)
    assert first.event.type is E.ACCEPTED
    assert first.event.body() == (await store.list_events("acme"))[0].body()
    assert await store.claim_deliveries(token="b", lease_seconds=60, limit=10, per_endpoint=4) == []
    backend.clock.advance(61)
    [again] = await store.claim_deliveries(token="b", lease_seconds=60, limit=10, per_endpoint=4)
    assert again.id == first.id
    # The first holder lost it: its late result records nothing.
    assert await store.finish_attempt(first, "a", OK, policy=POLICY) is None
    decision = await store.finish_attempt(again, "b", OK, policy=POLICY)
    assert decision is not None
    assert decision.status is DeliveryStatus.SUCCEEDED
    [done] = await store.list_deliveries("acme", ep.id)
    assert done.status is DeliveryStatus.SUCCEEDED
    assert [a.result.status_code for a in done.attempts] == [200]


async def test_claims_keep_per_endpoint_caps_exclusions_and_order(
    backend: Backend, store: WebhookStore
) -> None:
    busy = endpoint(backend)
    quiet = endpoint(backend, "globex")
    await store.create_endpoint(busy)
    await store.create_endpoint(quiet)
    for _ in range(6):
        await accept(backend, notification("acme", "US", clock=backend.clock))
    await accept(backend, notification("globex", "US", clock=backend.clock))
    await store.fan_out()

    claimed = await store.claim_deliveries(token="a", lease_seconds=60, limit=10, per_endpoint=4)
    by_endpoint = [d.endpoint_id for d in claimed]
    assert by_endpoint.count(busy.id) == 4
    assert by_endpoint.count(quiet.id) == 1
    assert (
        await store.claim_deliveries(
            token="b", lease_seconds=60, limit=10, per_endpoint=4, exclude_endpoints=[busy.id]
        )
        == []
    )
    more = await store.claim_deliveries(
        token="b", lease_seconds=60, limit=10, per_endpoint=4, exclude_tenants=["globex"]
    )
    assert [d.endpoint_id for d in more] == [busy.id, busy.id]


async def test_a_notifications_later_event_waits_for_its_earlier_one(
    backend: Backend, store: WebhookStore
) -> None:
    ep = endpoint(backend)
    await store.create_endpoint(ep)
    n = notification("acme", "US", clock=backend.clock)
    await accept(backend, n)
    assert await backend.store.claim(n.id, "w1", lease_seconds=30, max_attempts=5)
    await backend.store.complete_attempt(
        n.id, "w1", attempt(1, Outcome.DELIVERED, "SM1"), status=Status.DONE
    )
    await store.fan_out()
    [accepted] = await store.claim_deliveries(token="a", lease_seconds=60, limit=10, per_endpoint=4)
    assert accepted.event.type is E.ACCEPTED
    # done is due too, but not before accepted is finished, even after a failure.
    decision = await store.finish_attempt(accepted, "a", BOOM, policy=POLICY)
    assert decision is not None
    assert decision.status is DeliveryStatus.PENDING
    assert decision.next_attempt_at is not None
    backend.clock.advance(decision.next_attempt_at - backend.clock.now() - 0.5)
    assert await store.claim_deliveries(token="a", lease_seconds=60, limit=10, per_endpoint=4) == []
    backend.clock.advance(1)
    [retried] = await store.claim_deliveries(token="a", lease_seconds=60, limit=10, per_endpoint=4)
    assert retried.event.type is E.ACCEPTED
    await store.finish_attempt(retried, "a", OK, policy=POLICY)
    [done] = await store.claim_deliveries(token="a", lease_seconds=60, limit=10, per_endpoint=4)
    assert done.event.type is E.DONE


async def test_a_backlog_that_must_wait_never_hides_a_delivery_that_may_go(
    backend: Backend, store: WebhookStore
) -> None:
    """Five notifications' ``done`` deliveries wait behind their ``accepted`` ones, whose
    lapsed claims are due later than every ``done``: more than an endpoint's cap of
    deliveries that may not go sit ahead of the ones that may (a killed loop's claims)."""
    ep = endpoint(backend)
    await store.create_endpoint(ep)
    for _ in range(5):
        n = notification("acme", "US", clock=backend.clock)
        await accept(backend, n)
        assert await backend.store.claim(n.id, "w1", lease_seconds=30, max_attempts=5)
        await backend.store.complete_attempt(
            n.id, "w1", attempt(1, Outcome.DELIVERED, "SM1"), status=Status.DONE
        )
    await store.fan_out()
    lost: list[webhooks.Delivery] = []
    while got := await store.claim_deliveries(
        token="killed", lease_seconds=60, limit=10, per_endpoint=4
    ):
        lost += got
        backend.clock.advance(1)  # each lease ends later: due after every done
    assert {d.event.type for d in lost} == {E.ACCEPTED}
    assert len(lost) == 5
    backend.clock.advance(61)  # the killed loop's leases lapse

    again = await store.claim_deliveries(token="next", lease_seconds=60, limit=10, per_endpoint=4)
    assert [d.event.type for d in again] == [E.ACCEPTED] * 4
    assert {d.id for d in again} < {d.id for d in lost}


async def test_gone_disables_the_endpoint_and_tells_the_others(
    backend: Backend, store: WebhookStore
) -> None:
    dying = endpoint(backend)
    other = endpoint(backend)
    await store.create_endpoint(dying)
    await store.create_endpoint(other)
    await accept(backend, notification("acme", "US", clock=backend.clock))
    await accept(backend, notification("acme", "US", clock=backend.clock))
    await store.fan_out()
    claimed = await store.claim_deliveries(
        token="a", lease_seconds=60, limit=1, per_endpoint=1, exclude_endpoints=[other.id]
    )
    [delivery] = claimed
    decision = await store.finish_attempt(delivery, "a", GONE, policy=POLICY)
    assert decision is not None
    assert decision.disable is DisabledReason.GONE
    disabled = await store.get_endpoint("acme", dying.id)
    assert disabled is not None
    assert not disabled.enabled
    assert disabled.disabled_reason is DisabledReason.GONE
    # Its waiting delivery gave up; nothing of it is claimable now.
    statuses = {d.status for d in await store.list_deliveries("acme", dying.id)}
    assert statuses == {DeliveryStatus.FAILED}
    assert (await store.webhook_stats()).disabled_endpoints == 1
    [news] = [e for e in await store.list_events("acme") if e.type is E.ENDPOINT_DISABLED]
    assert news.data == {"endpoint_id": dying.id, "url": dying.url, "reason": "gone"}
    await store.fan_out()
    told = [d.event.type for d in await store.list_deliveries("acme", other.id)]
    assert told.count(E.ENDPOINT_DISABLED) == 1
    assert E.ENDPOINT_DISABLED not in [
        d.event.type for d in await store.list_deliveries("acme", dying.id)
    ]


async def test_consecutive_failures_disable_by_policy(
    backend: Backend, store: WebhookStore
) -> None:
    ep = endpoint(backend)
    await store.create_endpoint(ep)
    for _ in range(3):
        await accept(backend, notification("acme", "US", clock=backend.clock))
    await store.fan_out()
    policy = DisablePolicy(consecutive_failures=3)
    decisions = []
    for _ in range(3):
        [d] = await store.claim_deliveries(token="a", lease_seconds=60, limit=1, per_endpoint=1)
        decisions.append(await store.finish_attempt(d, "a", BOOM, policy=policy))
    assert [d.disable if d else "lost" for d in decisions] == [None, None, DisabledReason.FAILING]
    found = await store.get_endpoint("acme", ep.id)
    assert found is not None
    assert (found.enabled, found.consecutive_failures) == (False, 3)


async def test_a_finished_delivery_can_be_retried_with_a_fresh_schedule(
    backend: Backend, store: WebhookStore
) -> None:
    ep = endpoint(backend)
    await store.create_endpoint(ep)
    await accept(backend, notification("acme", "US", clock=backend.clock))
    await store.fan_out()
    # Spend the whole schedule.
    for _ in range(webhooks.MAX_ATTEMPTS):
        backend.clock.advance(webhooks.RETRY_AFTER_LIMIT_SECONDS * 11)
        [d] = await store.claim_deliveries(token="a", lease_seconds=60, limit=1, per_endpoint=1)
        decision = await store.finish_attempt(d, "a", BOOM, policy=POLICY)
    assert decision is not None
    assert decision.status is DeliveryStatus.FAILED
    [failed] = await store.list_deliveries("acme", ep.id)
    assert not await store.retry_delivery("globex", ep.id, failed.id)
    assert await store.retry_delivery("acme", ep.id, failed.id)
    assert not await store.retry_delivery("acme", ep.id, failed.id)  # pending already
    [d] = await store.claim_deliveries(token="a", lease_seconds=60, limit=1, per_endpoint=1)
    decision = await store.finish_attempt(d, "a", BOOM, policy=POLICY)
    assert decision is not None
    # Attempt 9 on record, the first of a new schedule: retried, not given up.
    assert decision.status is DeliveryStatus.PENDING
    fetched = await store.get_delivery("acme", d.id)
    assert fetched is not None
    assert [a.number for a in fetched.attempts] == list(range(1, webhooks.MAX_ATTEMPTS + 2))
    assert await store.get_delivery("globex", d.id) is None


async def test_replay_sends_the_events_since_a_time_again_with_their_ids(
    backend: Backend, store: WebhookStore
) -> None:
    ep = endpoint(backend, types=frozenset({E.ACCEPTED}))
    await store.create_endpoint(ep)
    await accept(backend, notification("acme", "US", clock=backend.clock))
    backend.clock.advance(100)
    since = backend.clock.now()
    second = notification("acme", "US", clock=backend.clock)
    await accept(backend, second)
    await store.fan_out()
    assert await store.replay("globex", ep.id, since=since) == 0
    assert await store.replay("acme", ep.id, since=since) == 1
    deliveries = await store.list_deliveries("acme", ep.id)
    assert len(deliveries) == 3
    assert [d.event.notification_id for d in deliveries[:2]] == [second.id, second.id]
    assert deliveries[0].event.id == deliveries[1].event.id
    assert await store.replay("acme", ep.id, since=0, types=[E.DONE]) == 0


async def test_deleting_an_endpoint_drops_its_deliveries(
    backend: Backend, store: WebhookStore
) -> None:
    ep = endpoint(backend)
    await store.create_endpoint(ep)
    await accept(backend, notification("acme", "US", clock=backend.clock))
    await store.fan_out()
    assert await store.delete_endpoint("acme", ep.id)
    assert (await store.webhook_stats()).pending == 0
    assert await store.claim_deliveries(token="a", lease_seconds=60, limit=5, per_endpoint=4) == []


async def test_stats_report_the_oldest_due_delivery(backend: Backend, store: WebhookStore) -> None:
    ep = endpoint(backend)
    await store.create_endpoint(ep)
    await accept(backend, notification("acme", "US", clock=backend.clock))
    assert (await store.webhook_stats()).unfanned_events == 1
    await store.fan_out()
    backend.clock.advance(42)
    stats = await store.webhook_stats()
    assert stats.oldest_due_age_seconds == pytest.approx(42)
    await store.append_event(webhooks.ping_event(ep, backend.clock.now()))
    assert (await store.webhook_stats()).unfanned_events == 1


async def test_concurrent_claims_never_lease_one_delivery_twice(
    backend: Backend, store: WebhookStore
) -> None:
    endpoints = [endpoint(backend) for _ in range(4)]
    for e in endpoints:
        await store.create_endpoint(e)
    for _ in range(10):
        await accept(backend, notification("acme", "US", clock=backend.clock))
    await store.fan_out()
    claims = await asyncio.gather(
        *(
            store.claim_deliveries(token=f"t{i}", lease_seconds=60, limit=8, per_endpoint=4)
            for i in range(4)
        )
    )
    ids = [d.id for claimed in claims for d in claimed]
    assert len(ids) == len(set(ids))
    assert ids
    # 40 due (10 notifications, 4 endpoints). Under contention a claim may take fewer
    # than it could (PostgreSQL skips the rows another claim holds), never one twice:
    # what none took is there for the next.
    rest = await store.claim_deliveries(token="t9", lease_seconds=60, limit=40, per_endpoint=10)
    assert sorted(ids + [d.id for d in rest]) == sorted(set(ids + [d.id for d in rest]))
    assert len(ids) + len(rest) == 40
