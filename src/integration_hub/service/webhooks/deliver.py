"""The webhook delivery loop: fan out the outbox, claim due deliveries, send them signed.

Its own concurrency budget, apart from dispatch: a slow or dead endpoint holds
only its own slots (``InFlight``: per endpoint and per tenant), and the loop
never waits for a batch to finish before claiming more for the others.
Deliveries claimed beyond an endpoint's free slots wait here for one (their
lease covers that) instead of being sent at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from integration_hub.domain import webhooks
from integration_hub.domain.ids import new_id
from integration_hub.domain.webhooks import (
    AttemptOutcome,
    AttemptResult,
    Delivery,
    DisablePolicy,
    Endpoint,
    InFlight,
    SigningSecrets,
)
from integration_hub.ports import Clock
from integration_hub.ports.metrics import NoWebhookMetrics, WebhookMetrics
from integration_hub.ports.secrets import SealedData
from integration_hub.ports.webhooks import WebhookStore, WebhookTransport

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeliveryLoopSettings:
    """The loop's budget and pace (IHUB_WEBHOOKS_*)."""

    concurrency: int = 32
    per_endpoint: int = 4
    per_tenant: int = 16
    timeout_seconds: float = 15.0
    poll_interval_seconds: float = 1.0
    fan_out_batch: int = 500
    disable: DisablePolicy = field(default_factory=DisablePolicy)

    @property
    def lease_seconds(self) -> float:
        """A claim outlives the wait for a slot and the request itself."""
        return 3 * self.timeout_seconds + 15.0


class WebhookDeliverer:
    """Sends the tenants' webhooks from the store's outbox."""

    def __init__(
        self,
        store: WebhookStore,
        transport: WebhookTransport,
        sealed: SealedData,
        clock: Clock,
        settings: DeliveryLoopSettings | None = None,
        metrics: WebhookMetrics | None = None,
    ) -> None:
        self.store = store
        self.transport = transport
        self.sealed = sealed
        self.clock = clock
        self.settings = settings or DeliveryLoopSettings()
        self.metrics = metrics or NoWebhookMetrics()
        self.token = "wh-" + new_id()
        self.in_flight = InFlight(self.settings.per_endpoint, self.settings.per_tenant)
        self._waiting: deque[Delivery] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        # The last step left due deliveries unclaimed on purpose: it had no free slot,
        # or excluded endpoints and tenants at their caps.
        self._held_back = False
        self.outcomes: Counter[str] = Counter()
        """How many attempts this loop finished, by outcome (the scheduled Lambda reports it)."""

    # -- one step ---------------------------------------------------------------------

    async def step(self) -> int:
        """Fan out what is new, claim what is due and start sending it; how many started."""
        await self.store.fan_out(limit=self.settings.fan_out_batch)
        started = self._start_waiting()
        free = self.settings.concurrency - len(self._tasks) - len(self._waiting)
        if free <= 0:
            self._held_back = True
            return started
        exclude_endpoints = self.in_flight.full_endpoints() | {d.endpoint_id for d in self._waiting}
        exclude_tenants = self.in_flight.full_tenants()
        self._held_back = bool(exclude_endpoints or exclude_tenants)
        claimed = await self.store.claim_deliveries(
            token=self.token,
            lease_seconds=self.settings.lease_seconds,
            limit=free,
            per_endpoint=self.settings.per_endpoint,
            exclude_endpoints=exclude_endpoints,
            exclude_tenants=exclude_tenants,
        )
        self._waiting.extend(claimed)
        return started + self._start_waiting()

    def _start_waiting(self) -> int:
        started = 0
        for _ in range(len(self._waiting)):
            delivery = self._waiting.popleft()
            if len(self._tasks) < self.settings.concurrency and self.in_flight.admit(
                delivery.endpoint_id, delivery.tenant
            ):
                task = asyncio.create_task(self._deliver(delivery))
                self._tasks.add(task)
                task.add_done_callback(self._done)
                started += 1
            else:
                self._waiting.append(delivery)
        return started

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook delivery failed unexpectedly", exc_info=task.exception())

    async def _deliver(self, delivery: Delivery) -> None:
        try:
            endpoint = await self.store.get_endpoint(delivery.tenant, delivery.endpoint_id)
            if endpoint is None:
                return  # deleted meanwhile, with its deliveries
            result = await self._send(endpoint, delivery)
            self.outcomes[str(result.outcome)] += 1
            self.metrics.webhook_attempt(
                delivery.tenant, str(result.outcome), result.latency_ms / 1000.0
            )
            decision = await self.store.finish_attempt(
                delivery, self.token, result, policy=self.settings.disable
            )
            if decision is not None and decision.disable is not None:
                self.metrics.webhook_endpoint_disabled(str(decision.disable))
                log.warning(
                    "webhook endpoint disabled",
                    extra={"tenant": endpoint.tenant, "endpoint": endpoint.id},
                )
        finally:
            self.in_flight.release(delivery.endpoint_id, delivery.tenant)

    async def _send(self, endpoint: Endpoint, delivery: Delivery) -> AttemptResult:
        try:
            opened = await self.sealed.unseal(
                endpoint.tenant, webhooks.sealing_purpose(endpoint.id), endpoint.secrets
            )
            secrets = SigningSecrets.from_dict(opened)
        except Exception as exc:  # a secret that does not open is an attempt error
            return AttemptResult(
                AttemptOutcome.CONNECTION_ERROR, error=f"the endpoint's secret does not open: {exc}"
            )
        now = self.clock.now()
        body = delivery.event.body()
        headers = webhooks.sign(secrets.signing(now), delivery.event.id, int(now), body)
        return await self.transport.send(endpoint.url, headers, body)

    # -- running ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; errors of the store are logged and retried."""
        while not stop.is_set():
            # Cleared before the step: a request finishing during it wakes the wait below.
            self._wake.clear()
            try:
                started = await self.step()
            except Exception:
                log.exception("webhook delivery loop step failed; retrying")
                started = 0
            if started == 0:
                waits = [
                    asyncio.ensure_future(stop.wait()),
                    asyncio.ensure_future(self._wake.wait()),
                ]
                await asyncio.wait(
                    waits,
                    timeout=self.settings.poll_interval_seconds,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for w in waits:
                    w.cancel()

    async def drain(self, *, deadline_seconds: float) -> None:
        """Deliver until nothing is due or in flight, or ``deadline_seconds`` of wall time
        pass (the scheduled Lambda, tests). What is in flight at the deadline finishes."""
        until = time.monotonic() + deadline_seconds
        while time.monotonic() < until:
            started = await self.step()
            idle = started == 0 and not self._tasks and not self._waiting
            if idle and not self._held_back:
                return
            if idle:
                continue  # what was held back is claimable now that the slots are free
            if started == 0 and self._tasks:
                await asyncio.wait(
                    set(self._tasks),
                    timeout=max(0.0, until - time.monotonic()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
        await self.close(send=False)

    async def close(self, *, send: bool = True) -> None:
        """Let the requests in flight finish (their own timeout bounds it); then, with
        ``send``, close the transport. Waiting claims lapse to another process."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._waiting.clear()
        if send:
            await self.transport.close()
