"""The Store contract: every backend must behave exactly like this."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest

from integration_hub.domain import errors
from integration_hub.domain.delivery import OutboundMessage
from integration_hub.domain.models import Attempt, Notification, Outcome
from integration_hub.domain.status import Status
from integration_hub.domain.tenants import ApiKeyRecord
from integration_hub.ports import ClaimRequest, Completion, NewKeyAccept, Settle
from support import Backend, accept, notification, tenant


def attempt(number: int, outcome: Outcome = Outcome.DELIVERED, **extra: object) -> Attempt:
    from integration_hub.domain.models import from_epoch

    return Attempt(
        number=number,
        provider="sandbox",
        started_at=from_epoch(0),
        outcome=outcome,
        latency_ms=1.5,
        **extra,  # type: ignore[arg-type]
    )


# -- tenants and keys --------------------------------------------------------


async def test_a_tenant_is_stored_once(backend: Backend) -> None:
    await backend.store.create_tenant(tenant("acme", backend.clock))
    with pytest.raises(errors.TenantExists):
        await backend.store.create_tenant(tenant("acme", backend.clock))
    found = await backend.store.get_tenant("acme")
    assert found is not None
    assert found.name == "Acme"
    assert [t.id for t in await backend.store.list_tenants()] == ["acme"]
    assert await backend.store.get_tenant("nobody") is None


async def test_api_keys_are_found_by_id(backend: Backend) -> None:
    await backend.store.create_tenant(tenant("acme", backend.clock))
    record = ApiKeyRecord("abcdef012345", "acme", "h" * 64, tenant("acme").created_at)
    await backend.store.add_api_key(record)
    assert await backend.store.get_api_key("abcdef012345") == record
    assert await backend.store.get_api_key("000000000000") is None


# -- idempotency and accept ------------------------------------------------------


async def test_a_reserved_key_is_reported_in_progress_until_accepted(backend: Backend) -> None:
    store = backend.store
    assert (
        await store.reserve_idempotency_key("acme", "k", "fp", reservation="r1", lock_seconds=10)
        is None
    )
    held = await store.reserve_idempotency_key("acme", "k", "fp", reservation="r2", lock_seconds=10)
    assert held is not None
    assert held.response is None
    assert held.fingerprint == "fp"
    n = notification(key="k", clock=backend.clock)
    await store.accept(n, {"id": n.id}, reservation="r1", ttl_seconds=3600)
    done = await store.reserve_idempotency_key("acme", "k", "fp", reservation="r3", lock_seconds=10)
    assert done is not None
    assert done.response == {"id": n.id}


async def test_idempotency_keys_of_two_tenants_never_collide(backend: Backend) -> None:
    store = backend.store
    assert (
        await store.reserve_idempotency_key("acme", "k", "a", reservation="r1", lock_seconds=10)
        is None
    )
    assert (
        await store.reserve_idempotency_key("globex", "k", "b", reservation="r2", lock_seconds=10)
        is None
    )


async def test_an_abandoned_reservation_is_taken_over_after_its_lock(backend: Backend) -> None:
    store = backend.store
    await store.reserve_idempotency_key("acme", "k", "fp", reservation="dead", lock_seconds=10)
    backend.clock.advance(11)
    assert (
        await store.reserve_idempotency_key("acme", "k", "fp", reservation="new", lock_seconds=10)
        is None
    )
    # The request that lost its reservation can no longer complete it.
    late = notification(key="k", clock=backend.clock)
    with pytest.raises(errors.IdempotencyInProgress):
        await store.accept(late, {"id": late.id}, reservation="dead", ttl_seconds=3600)
    assert await store.get_notification(None, late.id) is None
    assert (await backend.queue.stats()).visible == 0


async def test_a_completed_key_expires_after_its_ttl(backend: Backend) -> None:
    store = backend.store
    n = notification(key="k", clock=backend.clock)
    await store.reserve_idempotency_key("acme", "k", "fp", reservation="r", lock_seconds=10)
    await store.accept(n, {"id": n.id}, reservation="r", ttl_seconds=100)
    backend.clock.advance(99)
    assert (
        await store.reserve_idempotency_key("acme", "k", "fp", reservation="x", lock_seconds=10)
        is not None
    )
    backend.clock.advance(2)
    assert (
        await store.reserve_idempotency_key("acme", "k", "fp", reservation="y", lock_seconds=10)
        is None
    )


async def test_a_released_reservation_frees_the_key(backend: Backend) -> None:
    store = backend.store
    await store.reserve_idempotency_key("acme", "k", "fp", reservation="r", lock_seconds=10)
    await store.release_idempotency_key("acme", "k", reservation="other")
    assert (
        await store.reserve_idempotency_key("acme", "k", "fp", reservation="s", lock_seconds=10)
        is not None
    )
    await store.release_idempotency_key("acme", "k", reservation="r")
    assert (
        await store.reserve_idempotency_key("acme", "k", "fp", reservation="s", lock_seconds=10)
        is None
    )


async def test_accept_stores_the_notification_and_queues_it(backend: Backend) -> None:
    n = notification(clock=backend.clock)
    await accept(backend, n)
    stored = await backend.store.get_notification("acme", n.id)
    assert stored is not None
    assert (stored.status, stored.country, stored.channel) == (Status.RECEIVED, "ES", n.channel)
    assert stored.request == n.request
    messages = await backend.queue.receive(10, visibility_timeout=30)
    assert [m.notification_id for m in messages] == [n.id]
    assert messages[0].tenant == "acme"


# -- reads are scoped to the tenant ----------------------------------------------


async def test_another_tenants_notification_is_not_found(backend: Backend) -> None:
    n = notification("acme", clock=backend.clock)
    await accept(backend, n)
    assert await backend.store.get_notification("globex", n.id) is None
    assert await backend.store.get_notification(None, n.id) is not None
    assert await backend.store.list_notifications("globex") == []


async def test_listing_is_newest_first_with_cursor_and_filters(backend: Backend) -> None:
    made = []
    for country in ["ES", "MX", "US", "ES", "FR"]:
        n = notification("acme", country, clock=backend.clock)
        await accept(backend, n)
        made.append(n)
        await asyncio.sleep(0.002)  # ids are time-ordered to the millisecond
    await accept(backend, notification("globex", clock=backend.clock))
    ids = [n.id for n in made]
    page1 = await backend.store.list_notifications("acme", limit=2)
    assert [n.id for n in page1] == ids[::-1][:2]
    page2 = await backend.store.list_notifications("acme", limit=2, before_id=page1[-1].id)
    assert [n.id for n in page2] == ids[::-1][2:4]
    spain = await backend.store.list_notifications("acme", country="ES")
    assert [n.id for n in spain] == [ids[3], ids[0]]
    received = await backend.store.list_notifications("acme", status=Status.RECEIVED)
    assert len(received) == 5
    assert await backend.store.list_notifications("acme", status=Status.DONE) == []


def one_step(backend: Backend) -> NewKeyAccept:
    if not isinstance(backend.store, NewKeyAccept):
        pytest.skip(f"{backend.name} accepts in two phases only (reserve, then accept)")
    return backend.store


async def test_accept_new_stores_key_notification_and_queue_entry_at_once(
    backend: Backend,
) -> None:
    store = one_step(backend)
    n = notification(clock=backend.clock, key="k-new")
    first = await store.accept_new(n, {"id": n.id}, fingerprint="fp", ttl_seconds=60)
    assert first.existing is None
    assert first.enqueued
    stored = await backend.store.get_notification("acme", n.id)
    assert stored is not None
    assert stored.status is Status.RECEIVED
    [msg] = await backend.queue.receive(10, visibility_timeout=30)
    assert msg.notification_id == n.id
    # The key is complete at once: a second request replays the response.
    held = await backend.store.reserve_idempotency_key(
        "acme", "k-new", "fp", reservation="r2", lock_seconds=10
    )
    assert held is not None
    assert held.response == {"id": n.id}


async def test_accept_new_writes_nothing_when_the_key_is_held(backend: Backend) -> None:
    store = one_step(backend)
    done = notification(clock=backend.clock, key="k-done")
    await store.accept_new(done, {"id": done.id}, fingerprint="fp", ttl_seconds=60)
    await backend.store.reserve_idempotency_key(
        "acme", "k-busy", "fp2", reservation="r1", lock_seconds=10
    )
    again = notification(clock=backend.clock, key="k-done")
    replay = await store.accept_new(again, {"id": again.id}, fingerprint="fp", ttl_seconds=60)
    assert replay.existing is not None
    assert replay.existing.response == {"id": done.id}
    busy = notification(clock=backend.clock, key="k-busy")
    held = await store.accept_new(busy, {"id": busy.id}, fingerprint="fp2", ttl_seconds=60)
    assert held.existing is not None
    assert held.existing.response is None  # in progress: the caller answers 409
    for n in (again, busy):
        assert await backend.store.get_notification("acme", n.id) is None
    assert len(await backend.queue.receive(10, visibility_timeout=30)) == 1


async def test_accept_new_takes_over_an_expired_or_abandoned_key(backend: Backend) -> None:
    store = one_step(backend)
    old = notification(clock=backend.clock, key="k-old")
    await store.accept_new(old, {"id": old.id}, fingerprint="fp", ttl_seconds=60)
    await backend.store.reserve_idempotency_key(
        "acme", "k-dead", "fp", reservation="r1", lock_seconds=10
    )
    backend.clock.advance(61)
    for key in ("k-old", "k-dead"):
        n = notification(clock=backend.clock, key=key)
        first = await store.accept_new(n, {"id": n.id}, fingerprint="fp", ttl_seconds=60)
        assert first.existing is None, key
        assert await backend.store.get_notification("acme", n.id) is not None


async def test_concurrent_accept_new_with_one_key_accepts_exactly_once(backend: Backend) -> None:
    store = one_step(backend)
    attempts = [notification(clock=backend.clock, key="k-race") for _ in range(10)]
    results = await asyncio.gather(
        *(store.accept_new(n, {"id": n.id}, fingerprint="fp", ttl_seconds=60) for n in attempts)
    )
    winners = [n for n, r in zip(attempts, results, strict=True) if r.existing is None]
    assert len(winners) == 1
    assert all(
        r.existing.response == {"id": winners[0].id} for r in results if r.existing is not None
    )
    assert len(await backend.store.list_notifications("acme")) == 1


# -- claims ------------------------------------------------------------------------


async def test_claim_moves_to_processing_and_starts_an_attempt(backend: Backend) -> None:
    n = notification(clock=backend.clock)
    await accept(backend, n)
    claimed = await backend.store.claim(n.id, "t1", lease_seconds=30, max_attempts=5)
    assert claimed is not None
    assert claimed.claimed_by == "t1"
    assert (claimed.status, claimed.attempt_count, claimed.attempts_used) == (
        Status.PROCESSING,
        1,
        1,
    )
    seen = await backend.store.get_notification("acme", n.id)
    assert seen is not None
    assert [a.outcome for a in seen.attempts] == [Outcome.ABANDONED]


async def test_a_live_claim_is_not_taken_but_an_expired_one_is(backend: Backend) -> None:
    n = notification(clock=backend.clock)
    await accept(backend, n)
    await backend.store.claim(n.id, "t1", lease_seconds=30, max_attempts=5)
    held = await backend.store.claim(n.id, "t2", lease_seconds=30, max_attempts=5)
    assert held is not None
    assert held.claimed_by == "t1"
    backend.clock.advance(31)
    taken = await backend.store.claim(n.id, "t2", lease_seconds=30, max_attempts=5)
    assert taken is not None
    assert taken.claimed_by == "t2"
    assert taken.attempt_count == 2
    # The worker that lost its lease cannot finish: no second DONE.
    assert not await backend.store.complete_attempt(n.id, "t1", attempt(1), status=Status.DONE)
    assert await backend.store.complete_attempt(n.id, "t2", attempt(2), status=Status.DONE)
    assert not await backend.store.complete_attempt(n.id, "t2", attempt(2), status=Status.DONE)
    done = await backend.store.get_notification("acme", n.id)
    assert done is not None
    assert done.status is Status.DONE
    assert done.finished_at is not None
    assert [a.outcome for a in done.attempts] == [Outcome.ABANDONED, Outcome.DELIVERED]


def outbound(n: Notification, number: int) -> OutboundMessage:
    """What the sandbox was asked to deliver for ``n``'s attempt ``number``."""
    return replace(OutboundMessage.of(n), attempt=number)


async def test_a_sandbox_delivery_is_written_with_its_outcome_only_by_the_claim_holder(
    backend: Backend,
) -> None:
    n = notification(clock=backend.clock)
    await accept(backend, n)
    await backend.store.claim(n.id, "t1", lease_seconds=30, max_attempts=5)
    backend.clock.advance(31)
    await backend.store.claim(n.id, "t2", lease_seconds=30, max_attempts=5)
    late = attempt(1, provider_message_id="sandbox-1")
    lost = await backend.store.complete_attempt(
        n.id, "t1", late, status=Status.DONE, outbox=outbound(n, 1)
    )
    assert lost is Completion.LOST
    # The worker that lost its claim delivered nothing: the outbox is the record's.
    assert await backend.outbox.list_outbox("acme") == []
    ours = attempt(2, provider_message_id="sandbox-2")
    assert await backend.store.complete_attempt(
        n.id, "t2", ours, status=Status.DONE, outbox=outbound(n, 2)
    )
    [entry] = await backend.outbox.list_outbox("acme")
    assert (entry.notification_id, entry.attempt, entry.provider_message_id) == (
        n.id,
        2,
        "sandbox-2",
    )
    assert entry.recipient == n.request.recipient.email


async def test_a_finished_notification_is_not_claimed_again(backend: Backend) -> None:
    n = notification(clock=backend.clock)
    await accept(backend, n)
    await backend.store.claim(n.id, "t1", lease_seconds=30, max_attempts=5)
    await backend.store.complete_attempt(n.id, "t1", attempt(1), status=Status.DONE)
    again = await backend.store.claim(n.id, "t2", lease_seconds=30, max_attempts=5)
    assert again is not None
    assert again.status is Status.DONE
    assert again.claimed_by is None
    assert await backend.store.claim("no-such-id", "t", lease_seconds=30, max_attempts=5) is None


async def test_a_retry_keeps_processing_and_releases_the_claim(backend: Backend) -> None:
    n = notification(clock=backend.clock)
    await accept(backend, n)
    await backend.store.claim(n.id, "t1", lease_seconds=30, max_attempts=5)
    failed = attempt(1, Outcome.TRANSIENT, error_class="timeout", error_code="T", message="slow")
    assert await backend.store.complete_attempt(n.id, "t1", failed, status=Status.PROCESSING)
    mid = await backend.store.get_notification("acme", n.id)
    assert mid is not None
    assert mid.status is Status.PROCESSING
    assert mid.claimed_by is None
    assert mid.last_error == "slow"
    again = await backend.store.claim(n.id, "t2", lease_seconds=30, max_attempts=5)
    assert again is not None
    assert again.claimed_by == "t2"
    assert again.attempt_count == 2


async def test_the_providers_raw_answer_is_kept_apart_from_the_message(backend: Backend) -> None:
    # Operators read ``provider_response``; tenants see only ``message``.
    n = notification(clock=backend.clock)
    await accept(backend, n)
    await backend.store.claim(n.id, "t1", lease_seconds=30, max_attempts=5)
    failed = attempt(
        1,
        Outcome.PERMANENT,
        error_class="provider_rejected",
        message="twilio HTTP 403",
        provider_response="<html>INTERNAL-ONLY-DATA</html>",
    )
    assert await backend.store.complete_attempt(n.id, "t1", failed, status=Status.FAILED)
    found = await backend.store.get_notification("acme", n.id)
    assert found is not None
    [stored] = found.attempts
    assert (stored.message, stored.provider_response) == (
        "twilio HTTP 403",
        "<html>INTERNAL-ONLY-DATA</html>",
    )
    assert "INTERNAL-ONLY-DATA" not in (found.last_error or "")


async def test_claims_that_died_mid_call_spend_the_budget(backend: Backend) -> None:
    n = notification(clock=backend.clock)
    await accept(backend, n)
    for token in ("a", "b"):
        got = await backend.store.claim(n.id, token, lease_seconds=30, max_attempts=2)
        assert got is not None
        assert got.claimed_by == token
        backend.clock.advance(31)
    last = await backend.store.claim(n.id, "c", lease_seconds=30, max_attempts=2)
    assert last is not None
    assert last.status is Status.FAILED
    assert last.claimed_by is None
    letters = await backend.store.list_dead_letters("acme")
    assert [d.notification_id for d in letters] == [n.id]
    assert "budget" in letters[0].reason


async def test_concurrent_claims_give_exactly_one_holder(backend: Backend) -> None:
    n = notification(clock=backend.clock)
    await accept(backend, n)
    results = await asyncio.gather(
        *[backend.store.claim(n.id, f"t{i}", lease_seconds=30, max_attempts=5) for i in range(20)]
    )
    holders = {r.claimed_by for r in results if r is not None}
    assert len(holders) == 1
    final = await backend.store.get_notification(None, n.id)
    assert final is not None
    assert final.attempt_count == 1


async def test_a_completion_acks_its_queue_message_in_the_same_transaction(
    backend: Backend,
) -> None:
    n = notification(clock=backend.clock)
    await accept(backend, n)
    [msg] = await backend.queue.receive(1, visibility_timeout=30)
    await backend.store.claim(n.id, msg.receipt, lease_seconds=30, max_attempts=5)
    done = await backend.store.complete_attempt(
        n.id, msg.receipt, attempt(1), status=Status.DONE, settle=Settle(msg)
    )
    if backend.name == "aws":
        # SQS cannot join a DynamoDB transaction: the caller acks.
        assert done is Completion.RECORDED
        return
    assert done is Completion.SETTLED
    backend.clock.advance(31)
    assert await backend.queue.receive(10, visibility_timeout=30) == []
    stats = await backend.queue.stats()
    assert (stats.visible, stats.in_flight, stats.delayed) == (0, 0, 0)


async def test_a_retry_reschedules_its_queue_message_in_the_same_transaction(
    backend: Backend,
) -> None:
    n = notification(clock=backend.clock)
    await accept(backend, n)
    [msg] = await backend.queue.receive(1, visibility_timeout=30)
    await backend.store.claim(n.id, msg.receipt, lease_seconds=30, max_attempts=5)
    failed = attempt(1, Outcome.TRANSIENT, error_class="timeout", message="slow")
    done = await backend.store.complete_attempt(
        n.id, msg.receipt, failed, status=Status.PROCESSING, settle=Settle(msg, 50.0)
    )
    if backend.name == "aws":
        assert done is Completion.RECORDED
        return
    assert done is Completion.SETTLED
    assert (await backend.queue.stats()).delayed == 1
    backend.clock.advance(49.5)
    assert await backend.queue.receive(1, visibility_timeout=30) == []
    backend.clock.advance(1)
    [again] = await backend.queue.receive(1, visibility_timeout=30)
    assert again.notification_id == n.id
    assert again.receipt != msg.receipt


async def test_a_stale_receipt_settles_nothing_but_the_outcome_is_recorded(
    backend: Backend,
) -> None:
    n = notification(clock=backend.clock)
    await accept(backend, n)
    [first] = await backend.queue.receive(1, visibility_timeout=10)
    await backend.store.claim(n.id, first.receipt, lease_seconds=60, max_attempts=5)
    if backend.name != "aws":
        # The queue lease ran out before the claim's: another worker holds
        # the message now, under a new receipt.
        backend.clock.advance(11)
        [second] = await backend.queue.receive(1, visibility_timeout=30)
        assert second.receipt != first.receipt
    done = await backend.store.complete_attempt(
        n.id, first.receipt, attempt(1), status=Status.DONE, settle=Settle(first)
    )
    assert done
    finished = await backend.store.get_notification("acme", n.id)
    assert finished is not None
    assert finished.status is Status.DONE
    if backend.name != "aws":
        # The other worker's lease is untouched: its message is still in flight.
        assert (await backend.queue.stats()).in_flight == 1
        await backend.queue.ack(second)
        assert (await backend.queue.stats()).in_flight == 0


async def test_a_lost_claim_settles_nothing(backend: Backend) -> None:
    n = notification(clock=backend.clock)
    await accept(backend, n)
    [msg] = await backend.queue.receive(1, visibility_timeout=30)
    await backend.store.claim(n.id, "someone-else", lease_seconds=30, max_attempts=5)
    done = await backend.store.complete_attempt(
        n.id, msg.receipt, attempt(1), status=Status.DONE, settle=Settle(msg)
    )
    assert done is Completion.LOST
    if backend.name != "aws":
        assert (await backend.queue.stats()).in_flight == 1


async def test_claim_many_answers_each_request_in_order_like_claim(backend: Backend) -> None:
    fresh, spent, held, done = (notification(clock=backend.clock) for _ in range(4))
    for n in (fresh, spent, held, done):
        await accept(backend, n)
    # spent: an earlier attempt died mid-call; held: another worker's live claim.
    await backend.store.claim(spent.id, "dead", lease_seconds=5, max_attempts=5)
    await backend.store.claim(done.id, "w0", lease_seconds=30, max_attempts=5)
    await backend.store.complete_attempt(done.id, "w0", attempt(1), status=Status.DONE)
    backend.clock.advance(6)
    await backend.store.claim(held.id, "other", lease_seconds=30, max_attempts=5)
    got = await backend.store.claim_many(
        [
            ClaimRequest(fresh.id, "r1", 5),
            ClaimRequest("no-such-id", "r2", 5),
            ClaimRequest(spent.id, "r3", 1),
            ClaimRequest(held.id, "r4", 5),
            ClaimRequest(done.id, "r5", 5),
        ],
        lease_seconds=30,
    )
    assert len(got) == 5
    first, missing, exhausted, other, finished = got
    assert first is not None
    assert (first.id, first.claimed_by, first.status) == (fresh.id, "r1", Status.PROCESSING)
    assert missing is None
    # The per-request budget applies: one attempt was already spent.
    assert exhausted is not None
    assert (exhausted.status, exhausted.claimed_by) == (Status.FAILED, None)
    assert [d.notification_id for d in await backend.store.list_dead_letters("acme")] == [spent.id]
    assert other is not None
    assert other.claimed_by == "other"
    assert finished is not None
    assert (finished.status, finished.claimed_by) == (Status.DONE, None)
    seen = await backend.store.get_notification("acme", fresh.id)
    assert seen is not None
    assert seen.attempt_count == 1


async def test_claim_many_of_nothing_claims_nothing(backend: Backend) -> None:
    assert await backend.store.claim_many([], lease_seconds=30) == []


def test_complete_attempt_refuses_an_illegal_status() -> None:
    from integration_hub.domain.status import check_transition

    with pytest.raises(errors.InvalidTransition):
        check_transition(Status.PROCESSING, Status.RECEIVED)


# -- dead letters and redrive ------------------------------------------------------


async def test_a_permanent_failure_is_dead_lettered_and_can_be_redriven(backend: Backend) -> None:
    n = notification(clock=backend.clock)
    await accept(backend, n)
    msg = (await backend.queue.receive(1, visibility_timeout=30))[0]
    await backend.store.claim(n.id, msg.receipt, lease_seconds=30, max_attempts=5)
    bad = attempt(1, Outcome.PERMANENT, error_class="invalid_recipient", message="no such user")
    assert await backend.store.complete_attempt(
        n.id, msg.receipt, bad, status=Status.FAILED, dead_letter_reason="permanent: no such user"
    )
    await backend.queue.ack(msg)
    failed = await backend.store.get_notification("acme", n.id)
    assert failed is not None
    assert failed.status is Status.FAILED
    assert failed.last_error == "permanent: no such user"
    assert [d.notification_id for d in await backend.store.list_dead_letters(None)] == [n.id]
    assert await backend.store.list_dead_letters("globex") == []
    assert await backend.store.count_dead_letters() == 1
    # Another tenant cannot redrive it; the owner can, once.
    assert await backend.store.redrive("globex", n.id) is None
    enqueued = await backend.store.redrive("acme", n.id)
    assert enqueued is not None
    if not enqueued:
        await backend.queue.enqueue(n.id, "acme")
    assert await backend.store.redrive("acme", n.id) is None
    back = await backend.store.get_notification("acme", n.id)
    assert back is not None
    assert back.status is Status.RECEIVED
    assert back.attempts_used == 0
    assert back.attempt_count == 1  # history is kept
    assert await backend.store.list_dead_letters(None) == []
    assert await backend.store.count_dead_letters() == 0
    again = await backend.queue.receive(1, visibility_timeout=30)
    assert [m.notification_id for m in again] == [n.id]


async def test_timestamps_are_utc(backend: Backend) -> None:
    n = notification(clock=backend.clock)
    await accept(backend, n)
    stored = await backend.store.get_notification("acme", n.id)
    assert stored is not None
    assert stored.created_at.utcoffset() == timedelta(0)


# -- keys and quotas ---------------------------------------------------------------


async def test_keys_are_listed_per_tenant_and_revoked_once(backend: Backend) -> None:
    store = backend.store
    for t in ("acme", "globex"):
        await store.create_tenant(tenant(t, backend.clock))
    created = tenant("acme").created_at
    await store.add_api_key(ApiKeyRecord("aaaaaaaaaaaa", "acme", "h1", created))
    await store.add_api_key(ApiKeyRecord("bbbbbbbbbbbb", "acme", "h2", created))
    await store.add_api_key(ApiKeyRecord("cccccccccccc", "globex", "h3", created))
    assert [k.key_id for k in await store.list_api_keys("acme")] == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]
    assert not await store.revoke_api_key("globex", "aaaaaaaaaaaa")  # not globex's key
    assert await store.revoke_api_key("acme", "aaaaaaaaaaaa")
    assert not await store.revoke_api_key("acme", "aaaaaaaaaaaa")  # already revoked
    revoked = await store.get_api_key("aaaaaaaaaaaa")
    assert revoked is not None
    assert revoked.revoked_at is not None
    assert (await store.get_api_key("bbbbbbbbbbbb")).revoked_at is None  # type: ignore[union-attr]


async def test_a_rate_limit_counts_per_second_and_refuses_without_counting(
    backend: Backend,
) -> None:
    store = backend.store
    await store.create_tenant(tenant("acme", backend.clock))
    backend.clock.t = 1_000_000.25
    for _ in range(3):
        assert await store.consume_quota("acme", per_second=3, per_day=None) is None
    wait = await store.consume_quota("acme", per_second=3, per_day=None)
    assert wait is not None
    assert 0 < wait <= 0.75
    backend.clock.advance(0.75)  # the next second
    assert await store.consume_quota("acme", per_second=3, per_day=None) is None
    # Other tenants have their own windows.
    await store.create_tenant(tenant("globex", backend.clock))
    assert await store.consume_quota("globex", per_second=1, per_day=None) is None


async def test_a_daily_quota_resets_at_utc_midnight(backend: Backend) -> None:
    store = backend.store
    await store.create_tenant(tenant("acme", backend.clock))
    midnight = 86400.0 * 20_000
    backend.clock.t = midnight - 10
    assert await store.consume_quota("acme", per_second=None, per_day=2) is None
    assert await store.consume_quota("acme", per_second=None, per_day=2) is None
    wait = await store.consume_quota("acme", per_second=None, per_day=2)
    assert wait == pytest.approx(10)
    backend.clock.advance(10)
    assert await store.consume_quota("acme", per_second=None, per_day=2) is None


async def test_a_refusal_by_one_window_counts_in_no_window(backend: Backend) -> None:
    store = backend.store
    await store.create_tenant(tenant("acme", backend.clock))
    backend.clock.t = 86400.0 * 20_000 + 5
    assert await store.consume_quota("acme", per_second=1, per_day=2) is None
    assert await store.consume_quota("acme", per_second=1, per_day=2) is not None  # 2nd in 1 s
    backend.clock.advance(1)
    assert await store.consume_quota("acme", per_second=1, per_day=2) is None  # day: 2 of 2
    backend.clock.advance(1)
    assert await store.consume_quota("acme", per_second=1, per_day=2) is not None


async def test_concurrent_quota_consumers_never_exceed_the_limit(backend: Backend) -> None:
    store = backend.store
    await store.create_tenant(tenant("acme", backend.clock))
    backend.clock.t = 86400.0 * 20_000 + 5
    results = await asyncio.gather(
        *[store.consume_quota("acme", per_second=None, per_day=7) for _ in range(20)]
    )
    assert sum(1 for r in results if r is None) == 7


async def test_an_unprocessable_notification_is_dead_lettered_unless_held_or_finished(
    backend: Backend,
) -> None:
    store = backend.store
    poison, held = notification(clock=backend.clock), notification(clock=backend.clock)
    await accept(backend, poison)
    await accept(backend, held)
    assert await store.dead_letter(poison.id, "poison message: raised ValueError")
    failed = await store.get_notification("acme", poison.id)
    assert failed is not None
    assert failed.status is Status.FAILED
    assert failed.last_error == "poison message: raised ValueError"
    # Finished stays as it is; another worker's live claim is left alone until it expires.
    assert await store.dead_letter(poison.id, "again")
    again = await store.get_notification("acme", poison.id)
    assert again is not None
    assert again.last_error == "poison message: raised ValueError"
    await store.claim(held.id, "t1", lease_seconds=30, max_attempts=5)
    assert not await store.dead_letter(held.id, "poison")
    still = await store.get_notification("acme", held.id)
    assert still is not None
    assert still.status is Status.PROCESSING
    backend.clock.advance(31)
    assert await store.dead_letter(held.id, "poison")
    letters = await store.list_dead_letters("acme")
    assert sorted(d.notification_id for d in letters) == sorted([poison.id, held.id])
    assert await store.dead_letter("no-such-id", "poison")
