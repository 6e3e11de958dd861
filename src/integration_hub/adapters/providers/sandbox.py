"""The sandbox provider: delivers into a local outbox, with fault injection.

Fault injection is driven by the request so that demos and tests can show
retries and dead letters without a real provider::

    "metadata": {"sandbox": {"fail": "transient", "times": 2, "retry_after": 0.5}}

``fail`` is ``transient``, ``permanent`` or ``configuration``; the first
``times`` attempts fail (every attempt if ``times`` is absent); ``delay``
makes the first ``slow_times`` calls (every call if absent) take that many
seconds: a slow provider.

Delivery receipts: with an emitter attached (``emit_to``, bootstrap passes
the hub's ``ReceiptService.record``, the code path of the real providers'
callbacks), every accepted message is reported ``delivered`` (and ``read``
on WhatsApp) a moment later, as ``Receipt(provider="sandbox")``. The request
may script them::

    "metadata": {"sandbox": {"receipts": ["bounced"], "receipt_delay": 0.5}}

``receipts`` lists delivery states in the order they are reported (``[]``:
none); ``receipt_delay`` is the wait in seconds before the first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from integration_hub.domain.delivery import (
    Delivered,
    DeliveryResult,
    OutboundMessage,
    PermanentFailure,
    ProviderCheck,
    TransientFailure,
)
from integration_hub.domain.receipts import (
    DeliveryState,
    InvalidAddress,
    Receipt,
    normalise_address,
)
from integration_hub.domain.routing import Channel
from integration_hub.ports import Match, ReceiptRecord

log = logging.getLogger(__name__)

MAX_DELAY_SECONDS = 60.0
PROVIDER = "sandbox"

ReceiptSink = Callable[[Sequence[Receipt]], Awaitable[Sequence[ReceiptRecord]]]
"""Where the sandbox reports receipts: ``ReceiptService.record``."""

# What a real provider of the channel would report for a message that arrived.
DEFAULT_RECEIPTS: dict[Channel, tuple[DeliveryState, ...]] = {
    Channel.EMAIL: (DeliveryState.DELIVERED,),
    Channel.SMS: (DeliveryState.DELIVERED,),
    Channel.WHATSAPP: (DeliveryState.DELIVERED, DeliveryState.READ),
}
# A request may script any provider outcome; "sent" and "expired" are the hub's own.
SCRIPTABLE = frozenset(DeliveryState) - {DeliveryState.SENT, DeliveryState.EXPIRED}


@dataclass(frozen=True, slots=True)
class ReceiptTiming:
    """When the sandbox reports: after ``delay`` seconds, trying again while unmatched.

    The receipt task starts when the provider call returns, before the
    worker has recorded the outcome; a receipt until then finds no
    notification (UNMATCHED), so it is tried ``attempts`` times, ``retry``
    seconds apart.
    """

    delay: float = 0.3
    retry: float = 0.5
    attempts: int = 20


class SandboxProvider:
    """Delivers into the outbox of the hub's own database.

    It writes nothing itself: its ``Delivered`` carries the message, and the
    store writes the outbox row in the transaction that records the outcome
    (``Store.complete_attempt``), so a worker killed between "delivered" and
    "recorded" has delivered nothing, and the re-claim delivers it once.
    """

    name = PROVIDER

    def __init__(
        self,
        channel: Channel,
        *,
        receipts: ReceiptSink | None = None,
        timing: ReceiptTiming | None = None,
    ) -> None:
        self.channel = channel
        self.timing = timing or ReceiptTiming()
        self._sink = receipts
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def emit_to(self, receipts: ReceiptSink | None) -> None:
        """Report receipts of later sends to ``receipts`` (None: stop reporting)."""
        self._sink = receipts

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        """Deliver into the outbox, unless the request asks for a failure."""
        spec = _fault_spec(message.metadata)
        delay = _number(spec.get("delay"), 0.0)
        slow_times = spec.get("slow_times")
        if delay > 0 and (not isinstance(slow_times, int) or message.attempt <= slow_times):
            await asyncio.sleep(min(delay, MAX_DELAY_SECONDS))
        fail = spec.get("fail")
        times = spec.get("times")
        failing = fail is not None and (not isinstance(times, int) or message.attempt <= times)
        if failing:
            detail = f"sandbox fault injection ({fail}, attempt {message.attempt})"
            if fail == "transient":
                retry_after = spec.get("retry_after")
                return TransientFailure(
                    error_class="sandbox_transient",
                    message=detail,
                    code="SANDBOX_TRANSIENT",
                    retry_after=_number(retry_after, 0.0) if retry_after is not None else None,
                )
            return PermanentFailure(
                error_class=f"sandbox_{fail}",
                message=detail,
                code=f"SANDBOX_{str(fail).upper()}",
                configuration=fail == "configuration",
            )
        provider_message_id = f"sandbox-{message.notification_id}-{message.attempt}"
        self._schedule(message, provider_message_id, spec)
        return Delivered(provider_message_id, outbox=message)

    def _schedule(self, message: OutboundMessage, message_id: str, spec: dict[str, Any]) -> None:
        """Start reporting the receipts of an accepted message, never waiting for them."""
        sink = self._sink
        if sink is None or self._closed:
            return
        states = _receipt_states(spec.get("receipts"), self.channel)
        if not states:
            return
        delay = min(_number(spec.get("receipt_delay"), self.timing.delay), MAX_DELAY_SECONDS)
        task = asyncio.get_running_loop().create_task(
            self._report(sink, message, message_id, states, delay),
            name=f"sandbox-receipts-{message_id}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report(
        self,
        sink: ReceiptSink,
        message: OutboundMessage,
        message_id: str,
        states: tuple[DeliveryState, ...],
        delay: float,
    ) -> None:
        await asyncio.sleep(delay)
        recipient = _address(message)
        for state in states:
            now = datetime.now(UTC)
            receipt = Receipt(
                tenant=message.tenant,
                provider=PROVIDER,
                provider_message_id=message_id,
                state=state,
                raw_status=state.value,
                error_code=None,
                occurred_at=now,
                received_at=now,
                channel=message.channel,
                recipient=recipient,
            )
            try:
                if not await self._record(sink, receipt):
                    log.warning("sandbox receipt for %s found no notification", message_id)
                    return
            except Exception:  # a store outage: the receipt is lost, the send is not
                log.warning("sandbox receipt for %s not recorded", message_id, exc_info=True)
                return

    async def _record(self, sink: ReceiptSink, receipt: Receipt) -> bool:
        """Record ``receipt``, again while the outcome is not committed: False if never matched."""
        for attempt in range(max(1, self.timing.attempts)):
            if attempt:
                await asyncio.sleep(self.timing.retry)
            records = await sink([receipt])
            if any(r.match is not Match.UNMATCHED for r in records):
                return True
        return False

    async def check(self) -> ProviderCheck:
        """Always ready: it delivers into the hub's own database."""
        return ProviderCheck(True, "sandbox outbox (nothing leaves the hub)")

    async def close(self) -> None:
        """Cancel the receipts still to be reported: none outlives the hub."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _fault_spec(metadata: dict[str, Any]) -> dict[str, Any]:
    spec = metadata.get("sandbox")
    return spec if isinstance(spec, dict) else {}


def _receipt_states(value: Any, channel: Channel) -> tuple[DeliveryState, ...]:
    """The states a request scripts (unknown names dropped), else the channel's default."""
    if not isinstance(value, list):
        return DEFAULT_RECEIPTS[channel]
    states = []
    for name in value:
        try:
            state = DeliveryState(name)
        except ValueError:
            continue
        if state in SCRIPTABLE:
            states.append(state)
    return tuple(states)


def _address(message: OutboundMessage) -> str | None:
    raw = message.recipient.email if message.channel is Channel.EMAIL else message.recipient.phone
    if not raw:
        return None
    try:
        return normalise_address(message.channel, raw)
    except InvalidAddress:
        return None


def _number(value: Any, default: float) -> float:
    return float(value) if isinstance(value, int | float) and value >= 0 else default
