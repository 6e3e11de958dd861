"""The sandbox provider: delivers into a local outbox, with fault injection.

Fault injection is driven by the request so that demos and tests can show
retries and dead letters without a real provider::

    "metadata": {"sandbox": {"fail": "transient", "times": 2, "retry_after": 0.5}}

``fail`` is ``transient``, ``permanent`` or ``configuration``; the first
``times`` attempts fail (every attempt if ``times`` is absent); ``delay``
makes the first ``slow_times`` calls (every call if absent) take that many
seconds: a slow provider.
"""

from __future__ import annotations

import asyncio
from typing import Any

from integration_hub.domain.delivery import (
    Delivered,
    DeliveryResult,
    OutboundMessage,
    PermanentFailure,
    ProviderCheck,
    TransientFailure,
)
from integration_hub.domain.routing import Channel

MAX_DELAY_SECONDS = 60.0


class SandboxProvider:
    """Delivers into the outbox of the hub's own database.

    It writes nothing itself: its ``Delivered`` carries the message, and the
    store writes the outbox row in the transaction that records the outcome
    (``Store.complete_attempt``), so a worker killed between "delivered" and
    "recorded" has delivered nothing, and the re-claim delivers it once.
    """

    name = "sandbox"

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

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
        return Delivered(provider_message_id, outbox=message)

    async def check(self) -> ProviderCheck:
        """Always ready: it delivers into the hub's own database."""
        return ProviderCheck(True, "sandbox outbox (nothing leaves the hub)")

    async def close(self) -> None:
        """Nothing to release."""


def _fault_spec(metadata: dict[str, Any]) -> dict[str, Any]:
    spec = metadata.get("sandbox")
    return spec if isinstance(spec, dict) else {}


def _number(value: Any, default: float) -> float:
    return float(value) if isinstance(value, int | float) and value >= 0 else default
