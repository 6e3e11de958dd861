"""One attempt at one notification: claim, route, call the provider, finish or retry."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from integration_hub import tracing
from integration_hub.domain import routing
from integration_hub.domain.delivery import (
    Delivered,
    DeliveryResult,
    OutboundMessage,
    PermanentFailure,
    TransientFailure,
)
from integration_hub.domain.errors import (
    DataRejected,
    ProviderNotConfigured,
    Unavailable,
    UnsupportedCountry,
)
from integration_hub.domain.models import Attempt, Notification, Outcome, from_epoch
from integration_hub.domain.retry import RetryPolicy
from integration_hub.domain.routing import Channel
from integration_hub.domain.status import TERMINAL, Status
from integration_hub.domain.tenants import Tenant, TenantStatus
from integration_hub.ports import (
    ClaimRequest,
    Clock,
    Completion,
    Metrics,
    NoMetrics,
    OutcomeJournal,
    PendingOutcome,
    ProviderDirectory,
    Queue,
    QueueMessage,
    Settle,
    Store,
)
from integration_hub.service.tenants import TenantCache

log = logging.getLogger(__name__)


def _log_journal_failure(synced: asyncio.Future[None]) -> None:
    if not synced.cancelled() and (exc := synced.exception()) is not None:
        # A full or failing disk: the record goes on, without the journal's protection.
        log.error("outcome journal write failed: %s", exc)


class Result(StrEnum):
    """What the dispatcher did with one message."""

    DONE = "done"
    RETRY = "retry"
    FAILED = "failed"
    DUPLICATE = "duplicate"  # already finished: a redelivery
    HELD = "held"  # another worker holds a live claim
    LOST = "lost"  # our claim was taken over while we worked
    MISSING = "missing"  # no such notification


# Results logged at DEBUG; the rest (retry, failed, held, lost) at INFO.
QUIET = frozenset({Result.DONE, Result.DUPLICATE, Result.MISSING})


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    """Timings of one attempt."""

    lease_seconds: float = 60.0
    provider_timeout_seconds: float = 20.0


@dataclass(frozen=True, slots=True)
class Claim:
    """A received message after its claim: what ``process`` continues from."""

    message: QueueMessage
    tenant: Tenant | None
    policy: RetryPolicy
    notification: Notification | None
    """As the claim left it (``claimed_by`` is the receipt when it is ours); None if missing."""
    lease_ends: float = 0.0
    """``time.monotonic()`` by which the claim's lease has surely run out."""


class Dispatcher:
    """Runs attempts; idempotent under redelivery and expired leases."""

    def __init__(
        self,
        store: Store,
        queue: Queue,
        providers: ProviderDirectory,
        clock: Clock,
        retry: RetryPolicy,
        tenants: TenantCache,
        settings: DispatchSettings | None = None,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.queue = queue
        self.providers = providers
        self.clock = clock
        self.retry = retry
        self.tenants = tenants
        self.settings = settings or DispatchSettings()
        self.metrics = metrics or NoMetrics()
        # Set by the worker process (``Worker.run``); None in the API and on Lambda.
        self.journal: OutcomeJournal | None = None
        # Notifications whose delivered outcome is journaled but not yet recorded:
        # a redelivery of one is not claimed (a claim would send it again).
        self._unrecorded: set[str] = set()

    def _policy(self, tenant: Tenant | None) -> RetryPolicy:
        if tenant is None:
            return self.retry
        base = tenant.backoff_base_seconds or self.retry.base_seconds
        return RetryPolicy(
            max_attempts=tenant.max_attempts or self.retry.max_attempts,
            base_seconds=base,
            cap_seconds=max(base, tenant.backoff_cap_seconds or self.retry.cap_seconds),
        )

    def _provider_name(self, tenant: Tenant | None, country: str, channel: Channel) -> str | None:
        # Read at dispatch time so that a changed route takes effect without a
        # restart; the channel itself was fixed (and the recipient checked) at ingest.
        try:
            route = tenant.route(country) if tenant else routing.resolve(country)
        except UnsupportedCountry:
            return None
        return route.provider if route.channel is channel else None

    async def handle(self, message: QueueMessage) -> Result:
        """Process one received message to its next state."""
        [claim] = await self._claim([message])
        return await self.process(claim)

    async def claim_batch(self, messages: Sequence[QueueMessage]) -> list[Claim]:
        """Claim a received batch with one store call (one transaction on SQL).

        If the batch fails, each message is claimed on its own so that one bad
        message cannot hold back the others; a message whose claim still fails
        is left out (logged) and comes back after its visibility timeout, until
        its receive count reaches the budget: then it is dead-lettered (poison).
        """
        unrecorded = [m for m in messages if m.notification_id in self._unrecorded]
        if unrecorded:
            # Still recording its outcome through an outage: left leased, it comes
            # back after its visibility timeout, by when the outcome is recorded.
            log.info("not claiming %d redelivered, still being recorded", len(unrecorded))
            messages = [m for m in messages if m.notification_id not in self._unrecorded]
            if not messages:
                return []
        try:
            return await self._claim(messages)
        except Exception as exc:
            if len(messages) == 1:
                log.exception("claim of %s failed", messages[0].notification_id)
                await self.give_up_quietly(messages[0], exc)
                return []
            log.warning("claiming a batch of %d failed (%s): one by one", len(messages), exc)
        claims: list[Claim] = []
        for message in messages:
            try:
                claims.extend(await self._claim([message]))
            except Exception as exc:
                log.exception("claim of %s failed", message.notification_id)
                await self.give_up_quietly(message, exc)
        return claims

    async def _claim(self, messages: Sequence[QueueMessage]) -> list[Claim]:
        # Taken before the claim: a lower bound of when its lease runs out.
        lease_ends = time.monotonic() + self.settings.lease_seconds
        tenants = {t: await self.tenants.get(t) for t in {m.tenant for m in messages}}
        policies = [self._policy(tenants[m.tenant]) for m in messages]
        found = await self.store.claim_many(
            [
                ClaimRequest(m.notification_id, m.receipt, p.max_attempts)
                for m, p in zip(messages, policies, strict=True)
            ],
            lease_seconds=self.settings.lease_seconds,
        )
        return [
            Claim(m, tenants[m.tenant], p, n, lease_ends)
            for m, p, n in zip(messages, policies, found, strict=True)
        ]

    async def process(self, claim: Claim) -> Result:
        """Take a claimed message to its next state: call the provider, record, settle."""
        with tracing.dispatching(claim.message) as scope:
            result = await self._process(claim, scope)
            scope.result = result
            # The log context says which notification, attempt, provider and
            # outcome. DONE is the common case and the attempt is recorded
            # anyway: a JSON line costs a few percent of an attempt (ADR 0015).
            log.log(logging.DEBUG if result in QUIET else logging.INFO, "dispatched: %s", result)
            return result

    async def _process(self, claim: Claim, scope: tracing.Dispatch) -> Result:
        message, tenant, policy, n = claim.message, claim.tenant, claim.policy, claim.notification
        token = message.receipt
        if n is None:
            await self.queue.ack(message)
            return Result.MISSING
        scope.claimed(n)
        if n.claimed_by != token:
            if n.status in TERMINAL:
                await self.queue.ack(message)
                return Result.DUPLICATE
            await self.queue.release(message, delay=self.settings.lease_seconds)
            return Result.HELD
        if tenant is None or tenant.status is not TenantStatus.ACTIVE:
            # A disabled (or deleted) tenant's queued notifications are not sent.
            state = "disabled" if tenant else "unknown"
            attempt = Attempt(
                number=n.attempt_count,
                provider=n.provider,
                started_at=from_epoch(self.clock.now()),
                outcome=Outcome.CONFIGURATION,
                latency_ms=0.0,
                error_class=f"tenant_{state}",
                message=f"tenant {n.tenant!r} is {state}: nothing was sent",
            )
            reason = f"configuration: tenant {n.tenant!r} is {state}"
            return await self._finish(
                message, n, attempt, Status.FAILED, reason, Result.FAILED, claim.lease_ends
            )
        provider_name = self._provider_name(tenant, n.country, n.channel) or n.provider
        return await self._attempt(message, n, provider_name, policy, claim.lease_ends)

    async def _attempt(
        self,
        message: QueueMessage,
        n: Notification,
        provider_name: str,
        policy: RetryPolicy,
        lease_ends: float,
    ) -> Result:
        started = self.clock.now()
        t0 = time.perf_counter()
        with tracing.provider_call(n, provider_name) as call:
            result = await self._call(n, provider_name)
            call.outcome(result)
        latency_ms = (time.perf_counter() - t0) * 1000
        self.metrics.attempted(n, provider_name, result, latency_ms / 1000)
        attempt = Attempt(
            number=n.attempt_count,
            provider=provider_name,
            started_at=from_epoch(started),
            outcome=result.outcome,
            latency_ms=round(latency_ms, 3),
        )
        if isinstance(result, Delivered):
            attempt.provider_message_id = result.provider_message_id
            if result.outbox is None:
                return await self._finish_delivered(message, n, attempt, lease_ends)
            try:  # the sandbox: delivered by the record itself
                return await self._finish(
                    message,
                    n,
                    attempt,
                    Status.DONE,
                    None,
                    Result.DONE,
                    lease_ends,
                    outbox=result.outbox,
                )
            except DataRejected as exc:
                # The database refused the delivery itself (a NUL byte on
                # PostgreSQL): the same data fails every time.
                result = PermanentFailure(error_class="data_rejected", message=exc.message)
                attempt.provider_message_id = None
                attempt.outcome = result.outcome
        attempt.error_class = result.error_class
        attempt.error_code = result.code
        attempt.message = result.message
        attempt.provider_response = result.provider_response  # operators only
        if isinstance(result, PermanentFailure):
            reason = f"{result.outcome}: {result.error_class}: {result.message}"
            return await self._finish(
                message, n, attempt, Status.FAILED, reason, Result.FAILED, lease_ends
            )
        if policy.exhausted(n.attempts_used):
            reason = (
                f"attempt budget of {policy.max_attempts} exhausted;"
                f" last error {result.error_class}: {result.message}"
            )
            return await self._finish(
                message, n, attempt, Status.FAILED, reason, Result.FAILED, lease_ends
            )
        delay = policy.delay(n.attempts_used, retry_after=result.retry_after)
        return await self._finish(
            message, n, attempt, Status.PROCESSING, None, Result.RETRY, lease_ends, delay
        )

    async def _finish(
        self,
        message: QueueMessage,
        n: Notification,
        attempt: Attempt,
        status: Status,
        reason: str | None,
        result: Result,
        lease_ends: float,
        release_delay: float | None = None,
        *,
        outbox: OutboundMessage | None = None,
    ) -> Result:
        # SQL backends settle the queue message in the completion's own
        # transaction; the others (DynamoDB + SQS) leave it to us.
        done = await self._record(
            n, message, attempt, status, reason, lease_ends, release_delay, outbox
        )
        if not done:
            # Our lease expired and another worker claimed it: its outcome counts.
            return Result.LOST
        if done is not Completion.SETTLED:
            if release_delay is None:
                await self.queue.ack(message)
            else:
                await self.queue.release(message, delay=release_delay)
        if status in TERMINAL:
            self.metrics.finished(n, attempt.provider, status, self.clock.now())
        return result

    async def _finish_delivered(
        self, message: QueueMessage, n: Notification, attempt: Attempt, lease_ends: float
    ) -> Result:
        """DONE, with the provider's answer journaled meanwhile (when there is a journal).

        A worker killed between the provider's "accepted" and the record
        used to leave the claim to a re-claim after the lease, which sent the
        message again. The journal survives the kill; the next worker records
        it before claiming anything (``replay_journal``). Journal and store
        are written at once: the answer is safe as soon as either has it.
        """
        journal = self.journal
        if journal is None:
            return await self._finish(
                message, n, attempt, Status.DONE, None, Result.DONE, lease_ends
            )
        seq, durable = journal.write(PendingOutcome(message, attempt, Status.DONE))
        synced = asyncio.ensure_future(durable)
        synced.add_done_callback(_log_journal_failure)
        self._unrecorded.add(n.id)
        try:
            result = await self._finish(
                message, n, attempt, Status.DONE, None, Result.DONE, lease_ends
            )
        except Exception:
            # Not an outage (those are waited out with a journal): the record
            # cannot be made, and replaying it at every start would not help.
            journal.forget(seq)
            raise
        finally:
            # Cancelled at shutdown, the outcome stays journaled for the next start.
            self._unrecorded.discard(n.id)
        journal.forget(seq)
        return result

    async def _record(
        self,
        n: Notification,
        message: QueueMessage,
        attempt: Attempt,
        status: Status,
        reason: str | None,
        lease_ends: float,
        release_delay: float | None,
        outbox: OutboundMessage | None,
    ) -> Completion | bool:
        # The provider has answered: giving up on a short outage here would
        # leave the attempt abandoned, and the re-claim after the lease would
        # call the provider again (a second delivery). So retry the record
        # for as long as our lease lasts. With a journal, a delivered outcome
        # is retried past the lease too, without releasing the claim: only
        # our receipt can record it (LOST if another worker took it over), and
        # this process does not claim it again meanwhile (``_unrecorded``).
        patient = self.journal is not None and n.id in self._unrecorded
        delay = 0.1
        while True:
            try:
                return await self.store.complete_attempt(
                    n.id,
                    message.receipt,
                    attempt,
                    status=status,
                    dead_letter_reason=reason,
                    settle=Settle(message, release_delay),
                    outbox=outbox,
                )
            except Unavailable:
                if not patient and time.monotonic() + delay >= lease_ends:
                    raise
                log.warning("recording attempt %d of %s: store unavailable", attempt.number, n.id)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def replay_journal(self, stop: asyncio.Event) -> int:
        """Record the outcomes stopped workers left journaled; call before any claim.

        An outage is waited out (nothing can be claimed without the store
        either) until ``stop``; what is left then stays journaled for the
        next start. Returns how many outcomes were settled.
        """
        journal = self.journal
        if journal is None:
            return 0
        settled = 0
        for seq, outcome in journal.pending():
            if not await self._replay(outcome, stop):
                break
            journal.forget(seq)
            settled += 1
        if settled:
            log.info("outcome journal: recorded %d outcomes of stopped workers", settled)
        return settled

    async def _replay(self, outcome: PendingOutcome, stop: asyncio.Event) -> bool:
        """Record one journaled outcome; False if stopped before it could be."""
        message = outcome.message
        delay = 0.1
        while True:
            try:
                done = await self.store.complete_attempt(
                    message.notification_id,
                    message.receipt,
                    outcome.attempt,
                    status=outcome.status,
                    dead_letter_reason=outcome.dead_letter_reason,
                    settle=Settle(message, outcome.release_delay),
                )
                break
            except Unavailable:
                if stop.is_set():
                    return False
                log.warning(
                    "replaying the outcome of %s: store unavailable", message.notification_id
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 2.0)
            except Exception:
                # Not an outage: it would fail at every start. The notification's
                # claim runs out and it is claimed (and sent) again.
                log.exception("replaying the outcome of %s failed", message.notification_id)
                return True
        if done is Completion.RECORDED:
            # DynamoDB + SQS: the queue is settled apart. An expired receipt
            # leaves the message to come back and be acked as a duplicate.
            with contextlib.suppress(Exception):
                if outcome.release_delay is None:
                    await self.queue.ack(message)
                else:
                    await self.queue.release(message, delay=outcome.release_delay)
        log.info(
            "replayed the journaled outcome of %s: %s",
            message.notification_id,
            "recorded" if done else "already settled or taken over",
        )
        return True

    async def give_up(self, message: QueueMessage, error: Exception) -> bool:
        """Dead-letter a message whose handling keeps raising, once it used the budget.

        A poison message (a stored request this version cannot read, a bug its
        content triggers) would otherwise come back after every visibility
        timeout, forever, never FAILED. An outage is not poison: it is waited out.
        """
        if isinstance(error, Unavailable):
            return False
        budget = self.retry.max_attempts
        with contextlib.suppress(Exception):  # the tenant may be what cannot be read
            budget = self._policy(await self.tenants.get(message.tenant)).max_attempts
        # A store that refused the data (DataRejected) refuses it on every
        # delivery: dead-letter it at once rather than after the budget.
        if message.receive_count < budget and not isinstance(error, DataRejected):
            return False
        # The error's text may quote the request (recipients): only its type is
        # kept (a DataRejected message names the error class, never the value).
        reason = (
            f"data rejected: {error.message}"
            if isinstance(error, DataRejected)
            else f"poison message: handling raised {type(error).__name__}"
            f" on each of {message.receive_count} deliveries"
        )
        if not await self.store.dead_letter(message.notification_id, reason):
            return False
        await self.queue.ack(message)
        return True

    async def give_up_quietly(self, message: QueueMessage, error: Exception) -> None:
        """``give_up``, logged; a failure to dead-letter is left to the next delivery."""
        try:
            if await self.give_up(message, error):
                log.error(
                    "dead-lettered %s: dispatch raised on %d deliveries",
                    message.notification_id,
                    message.receive_count,
                )
        except Exception as failure:  # the store is down too: the next delivery tries again
            log.warning("could not dead-letter %s: %s", message.notification_id, failure)

    async def _call(self, n: Notification, provider_name: str) -> DeliveryResult:
        try:
            provider = await self.providers.get(n.tenant, n.channel, provider_name)
        except ProviderNotConfigured as exc:
            return PermanentFailure(
                error_class="provider_not_configured", message=exc.message, configuration=True
            )
        outbound = OutboundMessage.of(n)
        try:
            return await asyncio.wait_for(
                provider.send(outbound), self.settings.provider_timeout_seconds
            )
        except TimeoutError:
            return TransientFailure(
                error_class="timeout",
                message=f"provider call exceeded {self.settings.provider_timeout_seconds}s",
            )
        except DataRejected as exc:
            # A store refused this notification's data (the sandbox outbox on
            # PostgreSQL and a NUL byte): the same data fails every time, so
            # it fails now instead of burning the attempt budget.
            return PermanentFailure(error_class="data_rejected", message=exc.message)
        except Exception as exc:
            # A provider adapter must classify its own errors; anything that
            # escapes is a bug, retried within the budget rather than lost.
            log.exception("provider %s raised for notification %s", provider_name, n.id)
            return TransientFailure(
                error_class="unexpected_error", message=f"{type(exc).__name__}: {exc}"[:500]
            )
