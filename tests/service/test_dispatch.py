"""The dispatcher against the real SQLite backend, a scripted provider and a manual clock."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from integration_hub.adapters.journal import FileJournal
from integration_hub.adapters.sqlite.database import SqliteDatabase
from integration_hub.adapters.sqlite.queue import SqliteOutbox, SqliteQueue
from integration_hub.adapters.sqlite.store import SqliteStore
from integration_hub.domain.delivery import (
    Delivered,
    DeliveryResult,
    OutboundMessage,
    PermanentFailure,
    ProviderCheck,
    TransientFailure,
)
from integration_hub.domain.errors import InvalidTransition, ProviderNotConfigured, Unavailable
from integration_hub.domain.models import Attempt, Notification, Outcome, from_epoch
from integration_hub.domain.retry import RetryPolicy
from integration_hub.domain.routing import Channel, Route
from integration_hub.domain.status import Status
from integration_hub.domain.tenants import Tenant
from integration_hub.ports import (
    ClaimRequest,
    Completion,
    NoMetrics,
    PendingOutcome,
    Provider,
    Queue,
    QueueMessage,
    Settle,
    Store,
)
from integration_hub.service.dispatch import Dispatcher, DispatchSettings, Result
from integration_hub.service.tenants import TenantCache
from support import Backend, ManualClock, accept, notification, tenant


class Scripted:
    """A provider that answers from a script, then delivers."""

    def __init__(self, name: str, *answers: DeliveryResult | Exception) -> None:
        self.name = name
        self.answers = list(answers)
        self.calls: list[OutboundMessage] = []

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        self.calls.append(message)
        if self.answers:
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        return Delivered(f"{self.name}-{message.attempt}")

    async def check(self) -> ProviderCheck:
        return ProviderCheck(True, "scripted")

    async def close(self) -> None:
        return None


class Directory:
    """The providers a test wires, by name."""

    def __init__(self, *providers: Provider) -> None:
        self.by_name = {p.name: p for p in providers}

    async def get(self, tenant: str, channel: Channel, name: str) -> Provider:
        try:
            return self.by_name[name]
        except KeyError:
            raise ProviderNotConfigured(f"no {name} for {tenant}") from None

    async def close(self) -> None:
        return None


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[Backend]:
    clock = ManualClock()
    db = SqliteDatabase(tmp_path / "svc.db", clock=clock)
    await db.migrate()
    made = Backend("sqlite", SqliteStore(db), SqliteQueue(db), SqliteOutbox(db), clock)
    await made.store.create_tenant(tenant("acme", clock))
    yield made
    await made.store.close()


def dispatcher(backend: Backend, *providers: Provider, max_attempts: int = 3) -> Dispatcher:
    return Dispatcher(
        backend.store,
        backend.queue,
        Directory(*providers),
        backend.clock,
        RetryPolicy(max_attempts=max_attempts, base_seconds=10, cap_seconds=100),
        TenantCache(backend.store, backend.clock, ttl_seconds=0),
        DispatchSettings(lease_seconds=30, provider_timeout_seconds=1),
    )


async def step(backend: Backend, d: Dispatcher) -> Result:
    [message] = await backend.queue.receive(1, visibility_timeout=30)
    return await d.handle(message)


async def test_delivered_is_done_with_the_provider_message_id(backend: Backend) -> None:
    provider = Scripted("sandbox")
    n = notification(clock=backend.clock)
    await accept(backend, n)
    assert await step(backend, dispatcher(backend, provider)) is Result.DONE
    done = await backend.store.get_notification("acme", n.id)
    assert done is not None
    assert done.status is Status.DONE
    assert done.attempts[0].provider_message_id == "sandbox-1"
    assert (await backend.queue.stats()).visible + (await backend.queue.stats()).delayed == 0


async def test_a_transient_failure_is_retried_no_sooner_than_retry_after(backend: Backend) -> None:
    provider = Scripted("sandbox", TransientFailure("rate_limited", "429", "429", retry_after=50))
    d = dispatcher(backend, provider)
    n = notification(clock=backend.clock)
    await accept(backend, n)
    assert await step(backend, d) is Result.RETRY
    backend.clock.advance(49.9)
    assert await backend.queue.receive(1, visibility_timeout=30) == []
    backend.clock.advance(0.2)
    assert await step(backend, d) is Result.DONE
    done = await backend.store.get_notification("acme", n.id)
    assert done is not None
    assert [a.outcome for a in done.attempts] == [Outcome.TRANSIENT, Outcome.DELIVERED]
    assert done.attempts[0].error_code == "429"
    assert [c.attempt for c in provider.calls] == [1, 2]


async def test_the_backoff_delay_is_within_the_policy_ceiling(backend: Backend) -> None:
    provider = Scripted("sandbox", TransientFailure("timeout", "slow"))
    d = dispatcher(backend, provider)
    await accept(backend, notification(clock=backend.clock))
    assert await step(backend, d) is Result.RETRY
    backend.clock.advance(10.001)  # ceiling after attempt 1 is base = 10 s
    assert await step(backend, d) is Result.DONE


async def test_an_exhausted_budget_ends_failed_and_dead_lettered(backend: Backend) -> None:
    failure = TransientFailure("server_error", "503")
    provider = Scripted("sandbox", failure, failure, failure)
    d = dispatcher(backend, provider, max_attempts=3)
    n = notification(clock=backend.clock)
    await accept(backend, n)
    results = []
    for _ in range(3):
        results.append(await step(backend, d))
        backend.clock.advance(100)
    assert results == [Result.RETRY, Result.RETRY, Result.FAILED]
    failed = await backend.store.get_notification("acme", n.id)
    assert failed is not None
    assert failed.status is Status.FAILED
    assert "budget of 3 exhausted" in (failed.last_error or "")
    assert [x.notification_id for x in await backend.store.list_dead_letters("acme")] == [n.id]
    assert await backend.queue.receive(1, visibility_timeout=30) == []


async def test_a_tenant_budget_overrides_the_default(backend: Backend) -> None:
    await backend.store.create_tenant(
        Tenant(id="tight", name="Tight", created_at=tenant().created_at, max_attempts=1)
    )
    provider = Scripted("sandbox", TransientFailure("server_error", "503"))
    n = notification("tight", clock=backend.clock)
    await accept(backend, n)
    assert await step(backend, dispatcher(backend, provider, max_attempts=5)) is Result.FAILED


async def test_a_permanent_failure_fails_at_once(backend: Backend) -> None:
    provider = Scripted("sandbox", PermanentFailure("invalid_recipient", "no such user", "21211"))
    n = notification(clock=backend.clock)
    await accept(backend, n)
    assert await step(backend, dispatcher(backend, provider)) is Result.FAILED
    failed = await backend.store.get_notification("acme", n.id)
    assert failed is not None
    assert failed.attempts[0].error_code == "21211"
    assert len(provider.calls) == 1


async def test_a_provider_that_raises_is_retried_not_lost(backend: Backend) -> None:
    provider = Scripted("sandbox", RuntimeError("adapter bug"))
    d = dispatcher(backend, provider)
    n = notification(clock=backend.clock)
    await accept(backend, n)
    assert await step(backend, d) is Result.RETRY
    mid = await backend.store.get_notification("acme", n.id)
    assert mid is not None
    assert mid.attempts[0].error_class == "unexpected_error"
    backend.clock.advance(100)
    assert await step(backend, d) is Result.DONE


async def test_a_redelivered_finished_message_is_a_duplicate_without_a_second_call(
    backend: Backend,
) -> None:
    provider = Scripted("sandbox")
    d = dispatcher(backend, provider)
    n = notification(clock=backend.clock)
    await accept(backend, n)
    [message] = await backend.queue.receive(1, visibility_timeout=30)
    assert await d.handle(message) is Result.DONE
    # The same message delivered again (a queue duplicate): nothing is sent.
    assert await d.handle(message) is Result.DUPLICATE
    assert len(provider.calls) == 1


async def test_an_unconfigured_provider_is_a_configuration_failure(backend: Backend) -> None:
    await backend.store.create_tenant(
        Tenant(
            id="routed",
            name="Routed",
            created_at=tenant().created_at,
            routes={"ES": Route(Channel.EMAIL, "smtp")},
        )
    )
    n = notification("routed", clock=backend.clock)
    await accept(backend, n)
    assert await step(backend, dispatcher(backend, Scripted("sandbox"))) is Result.FAILED
    failed = await backend.store.get_notification("routed", n.id)
    assert failed is not None
    assert failed.provider == "smtp"
    assert failed.attempts[0].outcome is Outcome.CONFIGURATION
    assert failed.attempts[0].error_class == "provider_not_configured"


class NoSettle:
    """The SQLite store as a backend whose queue cannot join its transactions."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.settles: list[Settle | None] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def complete_attempt(self, *args: Any, settle: Settle | None = None, **kw: Any) -> Any:
        self.settles.append(settle)
        return await self.store.complete_attempt(*args, **kw)


async def test_a_backend_that_cannot_settle_gets_its_message_acked_by_the_dispatcher(
    backend: Backend,
) -> None:
    store = NoSettle(backend.store)
    d = dispatcher(backend, Scripted("sandbox"))
    d.store = cast(Store, store)
    await accept(backend, notification(clock=backend.clock))
    assert await step(backend, d) is Result.DONE
    assert [s.release_delay for s in store.settles if s is not None] == [None]
    backend.clock.advance(100)
    stats = await backend.queue.stats()
    assert (stats.visible, stats.in_flight, stats.delayed) == (0, 0, 0)


async def test_a_backend_that_cannot_settle_gets_its_retry_released_by_the_dispatcher(
    backend: Backend,
) -> None:
    store = NoSettle(backend.store)
    provider = Scripted("sandbox", TransientFailure("rate_limited", "429", "429", retry_after=50))
    d = dispatcher(backend, provider)
    d.store = cast(Store, store)
    await accept(backend, notification(clock=backend.clock))
    assert await step(backend, d) is Result.RETRY
    assert [s.release_delay for s in store.settles if s is not None] == [50]
    assert (await backend.queue.stats()).delayed == 1
    backend.clock.advance(50.1)
    assert await step(backend, d) is Result.DONE


class CountingQueue:
    """The SQLite queue, counting the acks and releases the dispatcher makes itself."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.queue, name)

    async def ack(self, message: QueueMessage) -> None:
        self.calls.append("ack")
        await self.queue.ack(message)

    async def release(self, message: QueueMessage, *, delay: float) -> None:
        self.calls.append("release")
        await self.queue.release(message, delay=delay)


async def test_on_sqlite_the_outcome_settles_the_message_without_a_separate_ack(
    backend: Backend,
) -> None:
    queue = CountingQueue(backend.queue)
    provider = Scripted("sandbox", TransientFailure("timeout", "slow"))
    d = dispatcher(backend, provider)
    d.queue = cast(Queue, queue)
    await accept(backend, notification(clock=backend.clock))
    assert await step(backend, d) is Result.RETRY
    backend.clock.advance(100)
    assert await step(backend, d) is Result.DONE
    assert queue.calls == []
    backend.clock.advance(100)
    stats = await backend.queue.stats()
    assert (stats.visible, stats.in_flight, stats.delayed) == (0, 0, 0)


class FlakyBatches:
    """The SQLite store, counting batch claims and (if told) failing those of several."""

    def __init__(self, store: Store, *, refuse: bool = True) -> None:
        self.store = store
        self.refuse = refuse
        self.batches: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def claim_many(self, requests: Sequence[ClaimRequest], *, lease_seconds: float) -> Any:
        self.batches.append(len(requests))
        if self.refuse and len(requests) > 1:
            raise RuntimeError("batch refused")
        return await self.store.claim_many(requests, lease_seconds=lease_seconds)


async def test_a_batch_is_claimed_in_one_store_call_with_each_tenants_budget(
    backend: Backend,
) -> None:
    await backend.store.create_tenant(
        Tenant(id="tight", name="Tight", created_at=tenant().created_at, max_attempts=1)
    )
    failure = TransientFailure("server_error", "503")
    provider = Scripted("sandbox", failure, failure)
    store = FlakyBatches(backend.store, refuse=False)
    d = dispatcher(backend, provider, max_attempts=5)
    d.store = cast(Store, store)
    tight, acme = notification("tight", clock=backend.clock), notification(clock=backend.clock)
    await accept(backend, tight)
    await accept(backend, acme)
    messages = await backend.queue.receive(10, visibility_timeout=30)
    claims = await d.claim_batch(messages)
    assert store.batches == [2]
    assert [c.notification.claimed_by if c.notification else None for c in claims] == [
        m.receipt for m in messages
    ]
    assert {c.policy.max_attempts for c in claims} == {1, 5}
    results = {c.message.notification_id: await d.process(c) for c in claims}
    # The same transient failure: the tight tenant's budget of one is spent.
    assert results == {tight.id: Result.FAILED, acme.id: Result.RETRY}


async def test_a_failed_batch_claim_falls_back_to_one_claim_per_message(
    backend: Backend,
) -> None:
    store = FlakyBatches(backend.store)
    d = dispatcher(backend, Scripted("sandbox"))
    d.store = cast(Store, store)
    ids = set()
    for _ in range(3):
        n = notification(clock=backend.clock)
        ids.add(n.id)
        await accept(backend, n)
    messages = await backend.queue.receive(10, visibility_timeout=30)
    claims = await d.claim_batch(messages)
    assert store.batches == [3, 1, 1, 1]
    assert {c.message.notification_id for c in claims} == ids
    assert [await d.process(c) for c in claims] == [Result.DONE] * 3


async def test_a_message_that_keeps_raising_is_dead_lettered_once_its_receives_reach_the_budget(
    backend: Backend,
) -> None:
    from integration_hub.domain.errors import Unavailable

    d = dispatcher(backend, Scripted("sandbox"), max_attempts=3)
    n = notification(clock=backend.clock)
    await accept(backend, n)
    for receives in (1, 2, 3):
        [message] = await backend.queue.receive(1, visibility_timeout=30)
        assert message.receive_count == receives
        if receives < 3:
            # Under the budget, and an outage at any count, are not poison.
            assert not await d.give_up(message, ValueError("cannot read the request"))
            assert not await d.give_up(message, Unavailable("database busy"))
            backend.clock.advance(31)
    assert not await d.give_up(message, Unavailable("database busy"))
    assert await d.give_up(message, ValueError("the recipient +34600000000 is unreadable"))
    failed = await backend.store.get_notification("acme", n.id)
    assert failed is not None
    assert failed.status is Status.FAILED
    assert failed.last_error == "poison message: handling raised ValueError on each of 3 deliveries"
    assert [d.notification_id for d in await backend.store.list_dead_letters("acme")] == [n.id]
    stats = await backend.queue.stats()
    assert stats.visible + stats.in_flight + stats.delayed == 0  # acknowledged


class Flaky:
    """The real store, whose first ``failures`` complete_attempt calls find it unavailable."""

    def __init__(self, store: Store, failures: int) -> None:
        self.store = store
        self.failures = failures

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def complete_attempt(self, *args: Any, **kwargs: Any) -> Completion:
        if self.failures > 0:
            self.failures -= 1
            raise Unavailable("database busy")
        return await self.store.complete_attempt(*args, **kwargs)


async def test_a_short_outage_after_the_provider_answered_does_not_cause_a_second_call(
    backend: Backend,
) -> None:
    provider = Scripted("sandbox")
    backend.store = Flaky(backend.store, failures=2)
    n = notification(clock=backend.clock)
    await accept(backend, n)
    assert await step(backend, dispatcher(backend, provider)) is Result.DONE
    done = await backend.store.get_notification("acme", n.id)
    assert done is not None
    assert [a.outcome for a in done.attempts] == [Outcome.DELIVERED]
    assert len(provider.calls) == 1


async def test_an_outage_longer_than_the_lease_leaves_the_attempt_to_the_next_claim(
    backend: Backend,
) -> None:
    from integration_hub.domain.errors import Unavailable

    provider = Scripted("sandbox")
    backend.store = Flaky(backend.store, failures=1000)
    d = dispatcher(backend, provider)
    d.settings = DispatchSettings(lease_seconds=0.3, provider_timeout_seconds=0.1)
    await accept(backend, notification(clock=backend.clock))
    with pytest.raises(Unavailable):
        await step(backend, d)


# -- the outcome journal: a delivered answer survives the worker -----------------


def delivered(number: int) -> Attempt:
    return Attempt(
        number=number,
        provider="sandbox",
        started_at=from_epoch(0),
        outcome=Outcome.DELIVERED,
        latency_ms=1.0,
        provider_message_id=f"sandbox-{number}",
    )


async def test_a_journaled_delivery_is_recorded_at_start_and_never_sent_again(
    backend: Backend, tmp_path: Path
) -> None:
    provider = Scripted("sandbox")
    n = notification(clock=backend.clock)
    await accept(backend, n)
    [message] = await backend.queue.receive(1, visibility_timeout=30)
    [claim] = await dispatcher(backend, provider).claim_batch([message])
    assert claim.notification is not None
    assert claim.notification.claimed_by == message.receipt
    # The worker heard "delivered", journaled it and died before recording it.
    journal_dir = tmp_path / "outcomes"
    dead = FileJournal.open(journal_dir)
    _, synced = dead.write(PendingOutcome(message, delivered(1), Status.DONE))
    await synced
    await dead.close()
    backend.clock.advance(31)  # the lease has run out: a claim would send again

    d = dispatcher(backend, provider)
    d.journal = FileJournal.open(journal_dir)
    assert await d.replay_journal(asyncio.Event()) == 1
    assert await backend.queue.receive(1, visibility_timeout=30) == []
    done = await backend.store.get_notification("acme", n.id)
    assert done is not None
    assert done.status is Status.DONE
    assert [a.provider_message_id for a in done.attempts] == ["sandbox-1"]
    assert provider.calls == []
    await d.journal.close()
    assert FileJournal.open(journal_dir).pending() == []


def files(directory: Path) -> list[Path]:
    return list(directory.iterdir())


class Outage:
    """The store, with ``complete_attempt`` unavailable for the first ``times`` calls."""

    def __init__(self, store: Store, times: int) -> None:
        self.store = store
        self.times = times

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def complete_attempt(self, *args: Any, **kwargs: Any) -> Completion:
        if self.times > 0:
            self.times -= 1
            raise Unavailable("database unavailable")
        return await self.store.complete_attempt(*args, **kwargs)


async def test_with_a_journal_a_delivery_is_recorded_past_the_lease_and_not_claimed_again(
    backend: Backend, tmp_path: Path
) -> None:
    provider = Scripted("sandbox")
    n = notification(clock=backend.clock)
    await accept(backend, n)
    down = Outage(backend.store, times=5)  # 0.1 + 0.2 + 0.4 + 0.8 + 1.6 s of retries
    d = Dispatcher(
        cast(Store, down),
        backend.queue,
        Directory(provider),
        backend.clock,
        RetryPolicy(max_attempts=3, base_seconds=10, cap_seconds=100),
        TenantCache(backend.store, backend.clock, ttl_seconds=0),
        DispatchSettings(lease_seconds=0.5, provider_timeout_seconds=0.2),
    )
    journal_dir = tmp_path / "outcomes"
    d.journal = FileJournal.open(journal_dir)
    [message] = await backend.queue.receive(1, visibility_timeout=30)
    running = asyncio.create_task(d.handle(message))
    await asyncio.sleep(0.05)
    assert len(provider.calls) == 1
    # The lease has run out while it records: a redelivery is not claimed (sent) again.
    await asyncio.sleep(0.6)
    backend.clock.advance(31)
    twin = QueueMessage(message.notification_id, message.tenant, "another-receipt", 2)
    assert await d.claim_batch([twin]) == []
    assert await running is Result.DONE
    assert len(provider.calls) == 1
    done = await backend.store.get_notification("acme", n.id)
    assert done is not None
    assert done.status is Status.DONE
    await d.journal.close()
    assert files(journal_dir) == [], "the recorded outcome is still journaled"


async def test_without_a_journal_the_record_gives_up_when_the_lease_ends(
    backend: Backend,
) -> None:
    n = notification(clock=backend.clock)
    await accept(backend, n)
    d = Dispatcher(
        cast(Store, Outage(backend.store, times=5)),
        backend.queue,
        Directory(Scripted("sandbox")),
        backend.clock,
        RetryPolicy(max_attempts=3, base_seconds=10, cap_seconds=100),
        TenantCache(backend.store, backend.clock, ttl_seconds=0),
        DispatchSettings(lease_seconds=0.5, provider_timeout_seconds=0.2),
    )
    [message] = await backend.queue.receive(1, visibility_timeout=30)
    with pytest.raises(Unavailable):
        await d.handle(message)


# -- what the tenant reads, and invariant breaches ----------------------------------


async def test_a_provider_exceptions_text_stays_out_of_the_tenant_readable_attempt(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    leak = "ana@example.org was refused with token sk_live_123"
    d = dispatcher(backend, Scripted("sandbox", RuntimeError(leak)))
    n = notification(clock=backend.clock)
    await accept(backend, n)
    with caplog.at_level(logging.ERROR, logger="integration_hub.service.dispatch"):
        assert await step(backend, d) is Result.RETRY
    mid = await backend.store.get_notification("acme", n.id)
    assert mid is not None
    [attempt] = mid.attempts
    assert attempt.error_class == "unexpected_error"
    assert attempt.message is not None
    assert "RuntimeError" in attempt.message
    assert "ana@example.org" not in attempt.message
    assert "sk_live" not in attempt.message
    assert "ana@example.org" not in (mid.last_error or "")
    # The operators' log has the traceback (the log chain redacts it).
    [logged] = [r for r in caplog.records if r.exc_info]
    assert leak in str(logged.exc_info[1] if logged.exc_info else "")


class Breaches(NoMetrics):
    """Counts nothing but invariant breaches."""

    def __init__(self) -> None:
        self.kinds: list[str] = []

    def invariant_breach(self, kind: str) -> None:
        self.kinds.append(kind)


class Breaking:
    """The store, whose first ``times`` completions (or claims) break an invariant."""

    def __init__(self, store: Store, times: int, *, on: str = "complete_attempt") -> None:
        self.store = store
        self.times = times
        self.on = on

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def _breach(self, operation: str) -> None:
        if self.on == operation and self.times > 0:
            self.times -= 1
            raise InvalidTransition("cannot move a notification from DONE to DONE")

    async def claim_many(
        self, requests: Sequence[ClaimRequest], *, lease_seconds: float
    ) -> list[Notification | None]:
        self._breach("claim_many")
        return await self.store.claim_many(requests, lease_seconds=lease_seconds)

    async def complete_attempt(self, *args: Any, **kwargs: Any) -> Completion:
        self._breach("complete_attempt")
        return await self.store.complete_attempt(*args, **kwargs)


async def test_an_invariant_breach_is_broken_counted_and_its_message_comes_back(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    provider = Scripted("sandbox")
    d = dispatcher(backend, provider)
    d.store = cast(Store, Breaking(backend.store, times=1))
    d.metrics = counted = Breaches()
    n = notification(clock=backend.clock)
    await accept(backend, n)
    with caplog.at_level(logging.ERROR, logger="integration_hub.service.dispatch"):
        assert await step(backend, d) is Result.BROKEN
    assert counted.kinds == ["invalid_transition"]
    assert any("invariant breach (invalid_transition)" in r.getMessage() for r in caplog.records)
    # Neither acked nor released: still leased, not lost.
    stats = await backend.queue.stats()
    assert (stats.visible, stats.in_flight, stats.delayed) == (0, 1, 0)
    backend.clock.advance(31)  # its visibility timeout and the claim's lease run out
    assert await step(backend, d) is Result.DONE
    done = await backend.store.get_notification("acme", n.id)
    assert done is not None
    assert done.status is Status.DONE
    assert len(provider.calls) == 2  # the price of not dropping it: a second call


async def test_a_breach_that_repeats_ends_failed_once_the_budget_is_spent(
    backend: Backend,
) -> None:
    d = dispatcher(backend, Scripted("sandbox"), max_attempts=3)
    d.store = cast(Store, Breaking(backend.store, times=1000))
    d.metrics = counted = Breaches()
    n = notification(clock=backend.clock)
    await accept(backend, n)
    results = []
    for _ in range(4):
        results.append(await step(backend, d))
        backend.clock.advance(31)
    assert results == [Result.BROKEN] * 3 + [Result.DUPLICATE]
    assert counted.kinds == ["invalid_transition"] * 3
    failed = await backend.store.get_notification("acme", n.id)
    assert failed is not None
    assert failed.status is Status.FAILED
    assert [x.notification_id for x in await backend.store.list_dead_letters("acme")] == [n.id]
    assert await backend.queue.receive(1, visibility_timeout=30) == []


async def test_a_breach_in_a_claim_is_counted_and_its_message_left_to_come_back(
    backend: Backend,
) -> None:
    d = dispatcher(backend, Scripted("sandbox"))
    d.store = cast(Store, Breaking(backend.store, times=1, on="claim_many"))
    d.metrics = counted = Breaches()
    await accept(backend, notification(clock=backend.clock))
    messages = await backend.queue.receive(10, visibility_timeout=30)
    assert await d.claim_batch(messages) == []
    assert counted.kinds == ["invalid_transition"]
    assert (await backend.queue.stats()).in_flight == 1
    backend.clock.advance(31)
    assert await step(backend, d) is Result.DONE


async def test_a_breach_in_the_claim_of_a_single_message_is_broken_and_counted(
    backend: Backend,
) -> None:
    d = dispatcher(backend, Scripted("sandbox"))
    d.store = cast(Store, Breaking(backend.store, times=1, on="claim_many"))
    d.metrics = counted = Breaches()
    await accept(backend, notification(clock=backend.clock))
    assert await step(backend, d) is Result.BROKEN
    assert counted.kinds == ["invalid_transition"]
    assert (await backend.queue.stats()).in_flight == 1
