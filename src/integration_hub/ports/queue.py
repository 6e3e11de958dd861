"""The queue of notification ids, and a queue service's own dead-letter queue."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class QueueMessage:
    """A received queue message, leased until its visibility timeout."""

    notification_id: str
    tenant: str
    receipt: str
    receive_count: int
    # W3C trace context the message carried (SQS message attributes); SQL
    # queues carry none and the dispatcher uses the notification's.
    traceparent: str | None = None
    tracestate: str | None = None


@dataclass(frozen=True, slots=True)
class Settle:
    """How to settle a received message once its attempt's outcome is recorded."""

    message: QueueMessage
    release_delay: float | None = None
    """None deletes the message (ack); seconds make it visible again then (a retry)."""


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Queue depth as an operator sees it."""

    visible: int
    in_flight: int
    delayed: int
    oldest_age_seconds: float


class Queue(Protocol):
    """At-least-once queue of notification ids with visibility timeouts."""

    async def enqueue(self, notification_id: str, tenant: str, *, delay: float = 0.0) -> None:
        """Make a notification id available after ``delay`` seconds."""
        ...

    async def receive(
        self, max_messages: int, *, visibility_timeout: float
    ) -> Sequence[QueueMessage]:
        """Lease up to ``max_messages`` available messages."""
        ...

    async def ack(self, message: QueueMessage) -> None:
        """Delete a message; a stale receipt is ignored."""
        ...

    async def release(self, message: QueueMessage, *, delay: float) -> None:
        """Make a leased message available again after ``delay`` seconds."""
        ...

    async def wait_for_messages(self, max_wait: float) -> None:
        """Return when messages may be available, or after ``max_wait`` seconds."""
        ...

    async def stats(self) -> QueueStats:
        """Current depth."""
        ...


@dataclass(frozen=True, slots=True)
class PoisonMessage:
    """A message the queue service itself gave up on (SQS: its DLQ after maxReceiveCount)."""

    message_id: str
    notification_id: str
    tenant: str
    receive_count: int
    sent_at: datetime


class QueueDeadLetters(Protocol):
    """A queue's own dead-letter queue, apart from the store's dead letters.

    Only queues with such a thing (SQS's redrive policy) have one; a SQL queue
    never gives up on a message, the dispatcher dead-letters in the store.
    """

    async def list_poison(self, tenant: str | None, *, limit: int) -> list[PoisonMessage]:
        """The messages waiting there, without consuming them; ``tenant=None``: all."""
        ...

    async def redrive_poison(
        self, tenant: str | None, notification_ids: Collection[str] | None
    ) -> list[str]:
        """Move messages back to the main queue (``None``: every one); the ids moved."""
        ...
