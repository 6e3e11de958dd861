"""A worker's local record of provider answers not yet in the store."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol

from integration_hub.domain.models import Attempt
from integration_hub.domain.status import Status
from integration_hub.ports.queue import QueueMessage


@dataclass(frozen=True, slots=True)
class PendingOutcome:
    """A provider's answer that is not yet recorded in the store: what
    ``Store.complete_attempt`` is to be called with, under the claim's receipt."""

    message: QueueMessage
    attempt: Attempt
    status: Status
    dead_letter_reason: str | None = None
    release_delay: float | None = None


class OutcomeJournal(Protocol):
    """A worker's local, durable record of provider answers not yet in the store.

    The dispatcher journals an answer that says "delivered" while it
    records it, and forgets it once recorded; a worker that starts replays
    what a killed one left (``pending``) before it claims anything, so a
    message the provider accepted is not sent again by a re-claim.
    """

    def pending(self) -> list[tuple[int, PendingOutcome]]:
        """What earlier workers left unrecorded, with the sequence numbers to forget."""
        ...

    def write(self, outcome: PendingOutcome) -> tuple[int, Awaitable[None]]:
        """Start making ``outcome`` durable: its sequence number, and an awaitable
        done once it is fsynced (or once it was forgotten before it had to be)."""
        ...

    def forget(self, seq: int) -> None:
        """The outcome is recorded (or can never be): no need to replay it."""
        ...

    async def close(self) -> None:
        """Flush and release the journal."""
        ...
