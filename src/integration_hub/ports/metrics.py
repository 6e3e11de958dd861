"""What the service layer reports for operators to count."""

from __future__ import annotations

from typing import Protocol

from integration_hub.domain.delivery import DeliveryResult
from integration_hub.domain.models import Notification
from integration_hub.domain.status import Status


class Metrics(Protocol):
    """What the service layer reports for operators to count (see adapters/metrics).

    Calls are synchronous and cheap; an implementation must never raise.
    """

    def accepted(self, n: Notification) -> None:
        """A new notification was persisted and queued (not an idempotent replay)."""
        ...

    def attempted(
        self, n: Notification, provider: str, result: DeliveryResult, seconds: float
    ) -> None:
        """One call to ``provider`` ended with ``result`` after ``seconds``."""
        ...

    def finished(self, n: Notification, provider: str, status: Status, at: float) -> None:
        """The notification reached DONE or FAILED at ``at`` (epoch seconds)."""
        ...

    def invariant_breach(self, kind: str) -> None:
        """The code broke one of its own rules (``InvariantBreach.kind``): a bug."""
        ...

    def receipt(self, provider: str, state: str) -> None:
        """A receipt was recorded as a new event (duplicates and unmatched not counted)."""
        ...

    def receipt_unmatched(self, provider: str) -> None:
        """A receipt named no notification of its tenant: nothing changed."""
        ...

    def receipt_duplicate(self, provider: str) -> None:
        """A receipt repeated an event already recorded: nothing changed."""
        ...

    def receipt_rejected(self, provider: str, reason: str) -> None:
        """A receipt request was refused (signature, malformed, too_large, untrusted)."""
        ...

    def receipt_latency(self, provider: str, seconds: float) -> None:
        """A notification reached ``delivered`` for the first time, ``seconds`` after ``sent``."""
        ...


class NoMetrics:
    """Counts nothing: the default for services built without metrics."""

    def accepted(self, n: Notification) -> None:
        """Nothing."""

    def attempted(
        self, n: Notification, provider: str, result: DeliveryResult, seconds: float
    ) -> None:
        """Nothing."""

    def finished(self, n: Notification, provider: str, status: Status, at: float) -> None:
        """Nothing."""

    def invariant_breach(self, kind: str) -> None:
        """Nothing."""

    def receipt(self, provider: str, state: str) -> None:
        """Nothing."""

    def receipt_unmatched(self, provider: str) -> None:
        """Nothing."""

    def receipt_duplicate(self, provider: str) -> None:
        """Nothing."""

    def receipt_rejected(self, provider: str, reason: str) -> None:
        """Nothing."""

    def receipt_latency(self, provider: str, seconds: float) -> None:
        """Nothing."""


class WebhookMetrics(Protocol):
    """What the webhook delivery loop reports (adapters/metrics: HubMetrics)."""

    def webhook_attempt(self, tenant: str, outcome: str, seconds: float) -> None:
        """One attempt to an endpoint, by its outcome (``AttemptOutcome``)."""
        ...

    def webhook_endpoint_disabled(self, reason: str) -> None:
        """The loop disabled an endpoint (``DisabledReason``)."""
        ...


class NoWebhookMetrics:
    """Counts nothing."""

    def webhook_attempt(self, tenant: str, outcome: str, seconds: float) -> None:
        """Nothing."""

    def webhook_endpoint_disabled(self, reason: str) -> None:
        """Nothing."""
