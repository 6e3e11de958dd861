"""One attempt at one notification: claim, route, call the provider, record its verdict."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from integration_hub.domain import lifecycle, routing, verdict
from integration_hub.domain.delivery import Delivered, OutboundMessage
from integration_hub.domain.errors import (
    DataRejected,
    InvariantBreach,
    Unavailable,
    UnsupportedCountry,
)
from integration_hub.domain.models import Attempt, Notification
from integration_hub.domain.retry import RetryPolicy
from integration_hub.domain.routing import Channel
from integration_hub.domain.status import TERMINAL
from integration_hub.domain.tenants import Tenant, TenantStatus
from integration_hub.domain.verdict import Verdict
from integration_hub.ports import (
    ClaimRequest,
    ClaimStore,
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
)
from integration_hub.service.dispatch import replay, tracing
from integration_hub.service.dispatch.calls import attempt_of, call_provider
from integration_hub.service.dispatch.model import QUIET, Claim, DispatchSettings, Result
from integration_hub.service.receipts import SuppressionCheck, recipient_address
from integration_hub.service.tenants import TenantCache
from integration_hub.tracing import log_scope

# The name operators' log filters know the dispatcher by (it was one module).
log = logging.getLogger("integration_hub.service.dispatch")


def _log_journal_failure(synced: asyncio.Future[None]) -> None:
    if not synced.cancelled() and (exc := synced.exception()) is not None:
        # A full or failing disk: the record goes on, without the journal's protection.
        log.error("outcome journal write failed: %s", exc)


class Dispatcher:
    """Runs attempts; idempotent under redelivery and expired leases."""

    def __init__(
        self,
        store: ClaimStore,
        queue: Queue,
        providers: ProviderDirectory,
        clock: Clock,
        retry: RetryPolicy,
        tenants: TenantCache,
        settings: DispatchSettings | None = None,
        *,
        metrics: Metrics | None = None,
        suppressions: SuppressionCheck | None = None,
    ) -> None:
        self.store = store
        self.queue = queue
        self.providers = providers
        # The recipient may have become suppressed after ingest: looked up
        # again before each provider call (None: no suppression lists).
        self.suppressions = suppressions
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
        try:
            [claim] = await self._claim([message])
        except InvariantBreach as breach:  # left to come back, as in ``process``
            self._breached(message, breach)
            return Result.BROKEN
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
                await self._claim_failed(messages[0], exc)
                return []
            log.warning("claiming a batch of %d failed (%s): one by one", len(messages), exc)
        claims: list[Claim] = []
        for message in messages:
            try:
                claims.extend(await self._claim([message]))
            except Exception as exc:
                await self._claim_failed(message, exc)
        return claims

    async def _claim_failed(self, message: QueueMessage, exc: Exception) -> None:
        if isinstance(exc, InvariantBreach):
            self._breached(message, exc)
        else:
            log.exception("claim of %s failed", message.notification_id)
        await self.give_up_quietly(message, exc)

    async def _claim(self, messages: Sequence[QueueMessage]) -> list[Claim]:
        # Taken before the claim: a lower bound of when its lease runs out.
        lease_ends = time.monotonic() + self.settings.lease_seconds
        tenants = {t: await self.tenants.get(t) for t in {m.tenant for m in messages}}
        policies = [lifecycle.retry_policy(self.retry, tenants[m.tenant]) for m in messages]
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
        """Take a claimed message to its next state: call the provider, record, settle.

        An invariant breach (a bug: the code broke one of its own rules, such
        as a status change the lifecycle forbids) is BROKEN: logged with its kind, counted
        (``ihub_invariant_breaches_total``), and the message is neither acked
        nor released. It stays leased and comes back after its visibility
        timeout, as after a crash, so it is never lost; each re-claim spends
        one attempt of the budget, so a breach that repeats ends FAILED with a
        dead letter (``lifecycle.exhausted_reason``) instead of looping. A
        breach after the provider answered may mean a second call on the
        re-claim: the price of not dropping the message.
        """
        with tracing.attempt(claim.message, claim.notification) as trace:
            try:
                result = await self._process(claim)
            except InvariantBreach as breach:
                self._breached(claim.message, breach)
                trace.outcome(Result.BROKEN, breach)
                return Result.BROKEN
            trace.outcome(result)
            # The log context says which notification, attempt, provider and
            # outcome. DONE is the common case and the attempt is recorded
            # anyway: a JSON line costs a few percent of an attempt (ADR 0015).
            log.log(logging.DEBUG if result in QUIET else logging.INFO, "dispatched: %s", result)
            return result

    def _breached(self, message: QueueMessage, breach: InvariantBreach) -> None:
        self.metrics.invariant_breach(breach.kind)
        with log_scope(breach=breach.kind):
            log.error(
                "invariant breach (%s) handling %s: %s; the message comes back after its"
                " visibility timeout",
                breach.kind,
                message.notification_id,
                breach.message,
            )

    async def _process(self, claim: Claim) -> Result:
        message, tenant, n = claim.message, claim.tenant, claim.notification
        if n is None:
            await self.queue.ack(message)
            return Result.MISSING
        if n.claimed_by != message.receipt:
            if n.status in TERMINAL:
                await self.queue.ack(message)
                return Result.DUPLICATE
            await self.queue.release(message, delay=self.settings.lease_seconds)
            return Result.HELD
        if tenant is None or tenant.status is not TenantStatus.ACTIVE:
            # A disabled (or deleted) tenant's queued notifications are not sent.
            judged = verdict.tenant_not_active(n.tenant, "disabled" if tenant else "unknown")
            assert judged.result is not None
            attempt = attempt_of(n, n.provider, self.clock.now(), judged.result)
            return await self._finish(message, n, attempt, judged, claim.lease_ends)
        provider_name = self._provider_name(tenant, n.country, n.channel) or n.provider
        if self.suppressions is not None:
            address = recipient_address(n.channel, n.request.recipient)
            found = await self.suppressions.find(n.tenant, n.channel, address)
            if found is not None:
                # Queued before its recipient was suppressed: FAILED, no call.
                result = verdict.suppressed(str(n.channel), str(found.reason))
                judged = verdict.judge(result, claim.policy, n.attempts_used)
                attempt = attempt_of(n, provider_name, self.clock.now(), result)
                return await self._finish(message, n, attempt, judged, claim.lease_ends)
        return await self._attempt(message, n, provider_name, claim.policy, claim.lease_ends)

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
        timeout = self.settings.provider_timeout_seconds
        with tracing.provider_call(n, provider_name) as call:
            result = await call_provider(self.providers, n, provider_name, timeout)
            call.outcome(result)
        latency_ms = (time.perf_counter() - t0) * 1000
        self.metrics.attempted(n, provider_name, result, latency_ms / 1000)
        attempt = attempt_of(n, provider_name, started, result, latency_ms)
        judged = verdict.judge(result, policy, n.attempts_used)
        if isinstance(result, Delivered):
            if result.outbox is None:
                return await self._finish_delivered(message, n, attempt, judged, lease_ends)
            try:  # the sandbox: delivered by the record itself
                return await self._finish(message, n, attempt, judged, lease_ends, result.outbox)
            except DataRejected as exc:
                # The database refused the delivery itself (a NUL byte on
                # PostgreSQL): the same data fails every time.
                result = verdict.data_rejected(exc.message)
                attempt = attempt_of(n, provider_name, started, result, latency_ms)
                judged = verdict.judge(result, policy, n.attempts_used)
        return await self._finish(message, n, attempt, judged, lease_ends)

    async def _finish(
        self,
        message: QueueMessage,
        n: Notification,
        attempt: Attempt,
        judged: Verdict,
        lease_ends: float,
        outbox: OutboundMessage | None = None,
    ) -> Result:
        # SQL backends settle the queue message in the completion's own
        # transaction; the others (DynamoDB + SQS) leave it to us.
        done = await self._record(n, message, attempt, judged, lease_ends, outbox)
        if done is Completion.LOST:
            # Our lease expired and another worker claimed it: its outcome counts.
            return Result.LOST
        if done is Completion.RECORDED:
            if judged.release_delay is None:
                await self.queue.ack(message)
            else:
                await self.queue.release(message, delay=judged.release_delay)
        if judged.terminal:
            self.metrics.finished(n, attempt.provider, judged.status, self.clock.now())
        return Result.of(judged)

    async def _finish_delivered(
        self,
        message: QueueMessage,
        n: Notification,
        attempt: Attempt,
        judged: Verdict,
        lease_ends: float,
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
            return await self._finish(message, n, attempt, judged, lease_ends)
        seq, durable = journal.write(PendingOutcome(message, attempt, judged.status))
        synced = asyncio.ensure_future(durable)
        synced.add_done_callback(_log_journal_failure)
        self._unrecorded.add(n.id)
        try:
            result = await self._finish(message, n, attempt, judged, lease_ends)
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
        judged: Verdict,
        lease_ends: float,
        outbox: OutboundMessage | None,
    ) -> Completion:
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
                    status=judged.status,
                    dead_letter_reason=judged.reason,
                    settle=Settle(message, judged.release_delay),
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

        See ``replay.replay_journal``; 0 without a journal.
        """
        if self.journal is None:
            return 0
        return await replay.replay_journal(self.store, self.queue, self.journal, stop)

    async def give_up(self, message: QueueMessage, error: Exception) -> bool:
        """Dead-letter a message whose handling keeps raising, once it used the budget.

        A poison message (a stored request this version cannot read, a bug its
        content triggers) would otherwise come back after every visibility
        timeout, forever, never FAILED. An outage is not poison: it is waited out.
        """
        if isinstance(error, Unavailable):
            return False
        policy = self.retry
        with contextlib.suppress(Exception):  # the tenant may be what cannot be read
            policy = lifecycle.retry_policy(self.retry, await self.tenants.get(message.tenant))
        judged = verdict.poison(error, message.receive_count, policy)
        if judged is None or judged.reason is None:
            return False
        if not await self.store.dead_letter(message.notification_id, judged.reason):
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
