"""Where the sandbox provider puts what it delivers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from integration_hub.domain.delivery import OutboundMessage
from integration_hub.domain.routing import Channel


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A message the sandbox provider 'delivered'."""

    seq: int
    notification_id: str
    tenant: str
    channel: Channel
    recipient: str
    subject: str | None
    body: str
    attempt: int
    provider_message_id: str
    delivered_at: datetime


class Outbox(Protocol):
    """Where the sandbox provider puts what it delivers."""

    async def append(self, message: OutboundMessage, provider_message_id: str) -> None:
        """Record one delivery."""
        ...

    async def list_outbox(
        self, tenant: str | None = None, *, limit: int = 100
    ) -> list[OutboxEntry]:
        """Deliveries, newest first."""
        ...
