"""What a provider is asked to send, and how it answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from integration_hub.domain.models import Notification, Outcome, Recipient
from integration_hub.domain.routing import Channel


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One delivery attempt handed to a provider adapter."""

    notification_id: str
    tenant: str
    country: str
    channel: Channel
    recipient: Recipient
    subject: str | None
    body: str
    metadata: dict[str, Any]
    attempt: int  # 1-based, counted over the notification's whole life

    @classmethod
    def of(cls, n: Notification) -> OutboundMessage:
        """What to send for ``n``'s current attempt."""
        return cls(
            notification_id=n.id,
            tenant=n.tenant,
            country=n.country,
            channel=n.channel,
            recipient=n.request.recipient,
            subject=n.request.subject,
            body=n.request.body,
            metadata=n.request.metadata or {},
            attempt=n.attempt_count,
        )


@dataclass(frozen=True, slots=True)
class Delivered:
    """The provider accepted the message.

    ``outbox`` is set by the sandbox, which delivers into the hub's own
    database: the store writes that delivery in the same transaction as the
    outcome, so a worker that dies between the two cannot deliver it twice.
    """

    provider_message_id: str
    outcome: Outcome = Outcome.DELIVERED
    outbox: OutboundMessage | None = None


@dataclass(frozen=True, slots=True)
class TransientFailure:
    """Worth retrying: timeouts, connection errors, 5xx, rate limits."""

    error_class: str
    message: str
    code: str | None = None
    retry_after: float | None = None
    outcome: Outcome = Outcome.TRANSIENT
    # The provider's raw answer (truncated, secrets redacted): for operators
    # only, never shown to the tenant (``message`` is what the tenant sees).
    provider_response: str | None = None


@dataclass(frozen=True, slots=True)
class PermanentFailure:
    """Not worth retrying: invalid recipient, rejected content, blocked.

    ``configuration=True`` marks an operator problem (bad credentials, missing
    sender): permanent for the notification, and to be surfaced to operators.
    """

    error_class: str
    message: str
    code: str | None = None
    configuration: bool = False
    provider_response: str | None = None  # operators only, as in TransientFailure

    @property
    def outcome(self) -> Outcome:
        """CONFIGURATION for operator problems, PERMANENT otherwise."""
        return Outcome.CONFIGURATION if self.configuration else Outcome.PERMANENT


DeliveryResult = Delivered | TransientFailure | PermanentFailure


@dataclass(frozen=True, slots=True)
class ProviderCheck:
    """Whether a provider's configuration works, found without sending anything."""

    ok: bool
    detail: str

    @classmethod
    def failed(cls, result: DeliveryResult) -> ProviderCheck:
        """A failed check from the classified error of the probe."""
        if isinstance(result, Delivered):
            return cls(True, "ok")
        return cls(False, f"{result.outcome}: {result.error_class}: {result.message}")
