"""One provider call, with every way it can go wrong classified, and its attempt record."""

from __future__ import annotations

import asyncio
import logging

from integration_hub.domain import verdict
from integration_hub.domain.delivery import (
    Delivered,
    DeliveryResult,
    OutboundMessage,
    PermanentFailure,
    TransientFailure,
)
from integration_hub.domain.errors import DataRejected, ProviderNotConfigured
from integration_hub.domain.models import Attempt, Notification, from_epoch
from integration_hub.ports import ProviderDirectory

# The name operators' log filters know the dispatcher by (it was one module).
log = logging.getLogger("integration_hub.service.dispatch")


async def call_provider(
    providers: ProviderDirectory, n: Notification, provider_name: str, limit_seconds: float
) -> DeliveryResult:
    """Send ``n``'s current attempt through ``provider_name``; never raises for a provider.

    What the attempt records (``message``) is read by the tenant: it names
    what went wrong, never an exception's text, which may quote the request.
    That text goes to the operators' log instead. An outage of the hub's own
    store (Unavailable, reading the provider's settings) is not the
    provider's answer: it propagates, and the message comes back.
    """
    try:
        provider = await providers.get(n.tenant, n.channel, provider_name)
    except ProviderNotConfigured as exc:
        return PermanentFailure(
            error_class="provider_not_configured", message=exc.message, configuration=True
        )
    outbound = OutboundMessage.of(n)
    try:
        return await asyncio.wait_for(provider.send(outbound), limit_seconds)
    except TimeoutError:
        return TransientFailure(
            error_class="timeout", message=f"provider call exceeded {limit_seconds}s"
        )
    except DataRejected as exc:
        # A store refused this notification's data (the sandbox outbox on
        # PostgreSQL and a NUL byte): the same data fails every time, so
        # it fails now instead of burning the attempt budget.
        return verdict.data_rejected(exc.message)
    except Exception as exc:
        # A provider adapter must classify its own errors; anything that
        # escapes is a bug, retried within the budget rather than lost. The
        # traceback (with the text) is for operators; the tenant gets the type.
        log.exception("provider %s raised for notification %s", provider_name, n.id)
        return TransientFailure(
            error_class="unexpected_error",
            message=f"provider {provider_name} failed unexpectedly ({type(exc).__name__})",
        )


def attempt_of(
    n: Notification, provider: str, started: float, result: DeliveryResult, latency_ms: float = 0.0
) -> Attempt:
    """The attempt record of one provider call's classified answer."""
    attempt = Attempt(
        number=n.attempt_count,
        provider=provider,
        started_at=from_epoch(started),
        outcome=result.outcome,
        latency_ms=round(latency_ms, 3),
    )
    if isinstance(result, Delivered):
        attempt.provider_message_id = result.provider_message_id
        return attempt
    attempt.error_class = result.error_class
    attempt.error_code = result.code
    attempt.message = result.message
    attempt.provider_response = result.provider_response  # operators only
    return attempt
