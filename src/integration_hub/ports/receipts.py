"""The store roles for delivery receipts and suppression lists (issue 15, ADR 0019).

Every rule is in ``domain.receipts`` (the merge order, duplicates, expiry,
what suppresses, who may lift a suppression); a backend only finds, writes
and reads, atomically where a docstring says so.

How a delivery state comes about, on every backend:

* ``ClaimStore.complete_attempt`` with status DONE and an attempt that has a
  ``provider_message_id`` sets, in the same transaction, the notification's
  ``delivery_state`` to ``sent``, ``delivery_updated_at`` and its sent time
  to the completion time, ``provider_message_id`` to the attempt's, and
  writes the index entry (tenant, provider, provider message id) ->
  notification id that ``record_receipt`` reads. DONE without a provider
  message id leaves the delivery state None (nothing can report on it).
* ``record_receipt`` applies one provider event; ``expire_deliveries`` ends
  what waited too long.
* Retention deletes a notification's events and index entry with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from integration_hub.domain.receipts import DeliveryState, Receipt, SuppressionReason
from integration_hub.domain.routing import Channel


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    """One recorded receipt of one notification, as the provider reported it."""

    provider: str
    state: DeliveryState
    raw_status: str
    error_code: str | None
    occurred_at: datetime | None
    received_at: datetime


class Match(StrEnum):
    """What ``record_receipt`` did with a receipt."""

    RECORDED = "recorded"
    """A new event: recorded, and the delivery state advanced (or kept) by it."""
    DUPLICATE = "duplicate"
    """An event already recorded (same ``Receipt.identity``): nothing written."""
    UNMATCHED = "unmatched"
    """No notification of this tenant has this provider message id: nothing written."""


@dataclass(frozen=True, slots=True)
class ReceiptRecord:
    """The answer of ``record_receipt``: enough for metrics and suppression."""

    match: Match
    notification_id: str | None = None
    channel: Channel | None = None
    recipient: str | None = None
    """The notification's recipient address as it was sent (email or phone)."""
    before: DeliveryState | None = None
    after: DeliveryState | None = None
    sent_at: datetime | None = None
    """When the provider accepted it (the ``sent`` time), for receipt latency."""


@dataclass(frozen=True, slots=True)
class Suppression:
    """A recipient a tenant must not send to on a channel, and why."""

    tenant: str
    channel: Channel
    address: str
    """Normalised: ``domain.receipts.normalise_address``."""
    reason: SuppressionReason
    created_at: datetime
    source: str | None = None
    """The notification whose receipt caused it, ``inbound`` for a keyword, or None."""
    note: str | None = None
    """Free text from the operator or tenant who added it."""


class ReceiptStore(Protocol):
    """Delivery receipts: record one, read a notification's events, expire the silent."""

    async def record_receipt(self, receipt: Receipt) -> ReceiptRecord:
        """Apply one provider event to the notification it names, atomically.

        Finds the notification by (``receipt.tenant``, ``receipt.provider``,
        ``receipt.provider_message_id``) in one indexed read: none is
        UNMATCHED and writes nothing. An event with the same
        ``receipt.identity`` already recorded for it is DUPLICATE and writes
        nothing. Otherwise, in one transaction, the event is recorded and the
        delivery state becomes ``receipts.advance(current, receipt.state)``;
        ``delivery_updated_at`` becomes ``receipt.received_at`` only when the
        state changed. Concurrent receipts for one notification must not lose
        an update (lock the row, or a conditional write retried).
        """
        ...

    async def delivery_events(self, tenant: str, notification_id: str) -> list[DeliveryEvent]:
        """The tenant's notification's recorded events, oldest received first (max 100)."""
        ...

    async def expire_deliveries(self, *, sent_before: datetime, now: datetime, limit: int) -> int:
        """Up to ``limit`` notifications still ``sent`` since before ``sent_before`` become
        ``expired`` (``delivery_updated_at = now``), each with an event from provider
        ``hub``, raw status ``expired``: how many. Only ``sent`` expires
        (``receipts.expiry_due``); a receipt recorded meanwhile wins.
        """
        ...


class SuppressionStore(Protocol):
    """Per-tenant suppression lists, keyed by (tenant, channel, normalised address)."""

    async def add_suppression(self, suppression: Suppression) -> Suppression:
        """Store it unless that address is already suppressed: the stored one either way."""
        ...

    async def get_suppression(
        self, tenant: str, channel: Channel, address: str
    ) -> Suppression | None:
        """The suppression for a normalised address, in one indexed read."""
        ...

    async def list_suppressions(
        self,
        tenant: str,
        *,
        channel: Channel | None = None,
        limit: int = 100,
        after: tuple[Channel, str] | None = None,
    ) -> list[Suppression]:
        """The tenant's suppressions ordered by (channel, address), strictly after ``after``."""
        ...

    async def remove_suppression(self, tenant: str, channel: Channel, address: str) -> bool:
        """Lift a suppression; False if there was none."""
        ...
