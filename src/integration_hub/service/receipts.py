"""Delivery receipts and suppression lists: what the receipt endpoints, the API and the CLI call.

Every rule is the domain's (``domain.receipts``): the merge order and
duplicates are applied by the store's ``record_receipt``, what suppresses is
``suppression_for``, who may lift is ``may_lift``, when a message expires is
``expiry_cutoff``. This service sequences them and counts what happened.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum
from typing import Protocol

from integration_hub.domain import errors
from integration_hub.domain.models import Recipient, from_epoch
from integration_hub.domain.receipts import (
    OPT_IN_KEYWORDS,
    OPT_OUT_KEYWORDS,
    DeliveryState,
    InvalidAddress,
    Lifter,
    Receipt,
    SuppressionReason,
    expiry_cutoff,
    may_lift,
    normalise_address,
    suppression_for,
)
from integration_hub.domain.routing import Channel
from integration_hub.ports import (
    Clock,
    Match,
    Metrics,
    NoMetrics,
    ReceiptRecord,
    ReceiptStore,
    Suppression,
    SuppressionStore,
)

log = logging.getLogger(__name__)

INBOUND_SOURCE = "inbound"
"""The ``Suppression.source`` of an entry an inbound keyword (STOP) added."""


@dataclass(frozen=True, slots=True)
class ReceiptPolicy:
    """The settings the service needs (IHUB_RECEIPT_TIMEOUT_HOURS and the keyword lists)."""

    timeout: timedelta = timedelta(hours=72)
    opt_out: tuple[str, ...] = OPT_OUT_KEYWORDS
    opt_in: tuple[str, ...] = OPT_IN_KEYWORDS
    expire_batch: int = 500
    """Notifications expired per store call: bounded transactions on a large backlog."""


class Removal(StrEnum):
    """What asking to lift a suppression did."""

    REMOVED = "removed"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"


@dataclass(frozen=True, slots=True)
class RemoveResult:
    """The outcome of ``remove``, with the reason of a suppression that was not lifted."""

    outcome: Removal
    reason: SuppressionReason | None = None


def recipient_field(channel: Channel) -> str:
    """The request field that holds the address for ``channel`` (for problems)."""
    return "recipient.email" if channel is Channel.EMAIL else "recipient.phone"


def recipient_address(channel: Channel, recipient: Recipient) -> str | None:
    """The address of ``recipient`` that ``channel`` sends to."""
    return recipient.email if channel is Channel.EMAIL else recipient.phone


class SuppressionCheck:
    """The one lookup ingest and dispatch make before sending to a recipient."""

    def __init__(self, store: SuppressionStore) -> None:
        self.store = store

    async def find(self, tenant: str, channel: Channel, address: str | None) -> Suppression | None:
        """The tenant's suppression of this address on ``channel``, if any (one indexed read).

        An address that does not normalise cannot be on a list: None.
        """
        if not address:
            return None
        try:
            key = normalise_address(channel, address)
        except InvalidAddress:
            return None
        return await self.store.get_suppression(tenant, channel, key)


class ReceiptStores(ReceiptStore, SuppressionStore, Protocol):
    """Both roles this service uses, as one store object implements them."""


class ReceiptService:
    """Records receipts, keeps suppression lists, expires messages no receipt ended."""

    def __init__(
        self,
        store: ReceiptStores,
        clock: Clock,
        metrics: Metrics | None = None,
        policy: ReceiptPolicy | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.metrics = metrics or NoMetrics()
        self.policy = policy or ReceiptPolicy()
        self.check = SuppressionCheck(store)

    # -- receipts ---------------------------------------------------------------------

    async def record(
        self, receipts: Sequence[Receipt], *, routed_as: str | None = None
    ) -> list[ReceiptRecord]:
        """Record each receipt (in order), count it, and suppress where it says so.

        ``routed_as`` is the provider name routes and attempts use when the
        receipt adapter names the provider otherwise (``whatsapp_cloud`` sends
        what the ``whatsapp`` adapter reports on): the store finds and records
        the event under it, while the suppression codes and the metrics keep
        the adapter's name.
        """
        records: list[ReceiptRecord] = []
        for receipt in receipts:
            stored = receipt
            if routed_as is not None and routed_as != receipt.provider:
                stored = replace(receipt, provider=routed_as)
            rec = await self.store.record_receipt(stored)
            records.append(rec)
            if rec.match is Match.UNMATCHED:
                self.metrics.receipt_unmatched(receipt.provider)
                continue
            if rec.match is Match.DUPLICATE:
                self.metrics.receipt_duplicate(receipt.provider)
                continue
            self.metrics.receipt(receipt.provider, str(receipt.state))
            self._latency(receipt, rec)
            reason = suppression_for(receipt)
            if reason is not None:
                await self._suppress_from(receipt, rec, reason)
        return records

    def _latency(self, receipt: Receipt, rec: ReceiptRecord) -> None:
        first = rec.before is not DeliveryState.DELIVERED and rec.after is DeliveryState.DELIVERED
        if first and rec.sent_at is not None:
            reached = receipt.occurred_at or receipt.received_at
            self.metrics.receipt_latency(receipt.provider, (reached - rec.sent_at).total_seconds())

    async def _suppress_from(
        self, receipt: Receipt, rec: ReceiptRecord, reason: SuppressionReason
    ) -> None:
        if rec.channel is None or not rec.recipient:
            return
        try:
            address = normalise_address(rec.channel, rec.recipient)
        except InvalidAddress:
            log.warning(
                "receipt for %s suppresses its recipient, whose address does not normalise"
                " for %s: not suppressed",
                rec.notification_id,
                rec.channel,
            )
            return
        await self.store.add_suppression(
            Suppression(
                tenant=receipt.tenant,
                channel=rec.channel,
                address=address,
                reason=reason,
                created_at=receipt.received_at,
                source=rec.notification_id,
            )
        )
        log.info(
            "suppressed the recipient of %s on %s (%s)", rec.notification_id, rec.channel, reason
        )

    async def expire(self) -> int:
        """Messages still ``sent`` after IHUB_RECEIPT_TIMEOUT_HOURS become ``expired``: how many."""
        now = from_epoch(self.clock.now())
        cutoff = expiry_cutoff(now, self.policy.timeout)
        batch = self.policy.expire_batch
        total = 0
        while True:
            done = await self.store.expire_deliveries(sent_before=cutoff, now=now, limit=batch)
            total += done
            if done < batch:
                return total

    # -- inbound keywords -------------------------------------------------------------

    async def opt_out(self, tenant: str, channel: Channel, address: str) -> Suppression | None:
        """The recipient asked to stop (STOP): suppressed as ``opted_out`` (None: no address)."""
        try:
            key = normalise_address(channel, address)
        except InvalidAddress:
            return None
        return await self.store.add_suppression(
            Suppression(
                tenant=tenant,
                channel=channel,
                address=key,
                reason=SuppressionReason.OPTED_OUT,
                created_at=from_epoch(self.clock.now()),
                source=INBOUND_SOURCE,
            )
        )

    async def opt_in(self, tenant: str, channel: Channel, address: str) -> bool:
        """The recipient asked to start again (START): lifts only an opt-out. Lifted?"""
        result = await self.remove(tenant, channel, address, by=Lifter.RECIPIENT, strict=False)
        return result.outcome is Removal.REMOVED

    # -- suppression management -------------------------------------------------------

    def _key(self, channel: Channel, address: str) -> str:
        try:
            return normalise_address(channel, address)
        except InvalidAddress as exc:
            what = "an email address" if channel is Channel.EMAIL else "an E.164 phone number"
            raise errors.HubError(f"address is not {what} ({exc})", field="address") from None

    async def add(
        self,
        tenant: str,
        channel: Channel,
        address: str,
        *,
        reason: SuppressionReason = SuppressionReason.OPERATOR,
        note: str | None = None,
    ) -> Suppression:
        """Suppress ``address`` on ``channel``: the stored entry (an older one wins)."""
        return await self.store.add_suppression(
            Suppression(
                tenant=tenant,
                channel=channel,
                address=self._key(channel, address),
                reason=reason,
                created_at=from_epoch(self.clock.now()),
                note=note,
            )
        )

    async def list(
        self,
        tenant: str,
        *,
        channel: Channel | None = None,
        limit: int = 100,
        after: tuple[Channel, str] | None = None,
    ) -> list[Suppression]:
        """The tenant's suppressions ordered by (channel, address), after ``after``."""
        return await self.store.list_suppressions(tenant, channel=channel, limit=limit, after=after)

    async def get(self, tenant: str, channel: Channel, address: str) -> Suppression | None:
        """One suppression, the address normalised first."""
        return await self.store.get_suppression(tenant, channel, self._key(channel, address))

    async def remove(
        self, tenant: str, channel: Channel, address: str, *, by: Lifter, strict: bool = True
    ) -> RemoveResult:
        """Lift a suppression if ``by`` may (``may_lift``).

        ``strict``: an address that does not normalise is a 422 naming
        ``address``; otherwise it is simply not found.
        """
        try:
            key = normalise_address(channel, address)
        except InvalidAddress:
            if strict:
                self._key(channel, address)
            return RemoveResult(Removal.NOT_FOUND)
        found = await self.store.get_suppression(tenant, channel, key)
        if found is None:
            return RemoveResult(Removal.NOT_FOUND)
        if not may_lift(found.reason, by):
            return RemoveResult(Removal.FORBIDDEN, found.reason)
        if not await self.store.remove_suppression(tenant, channel, key):
            return RemoveResult(Removal.NOT_FOUND)  # lifted meanwhile
        log.info("lifted a %s suppression on %s (by the %s)", found.reason, channel, by)
        return RemoveResult(Removal.REMOVED, found.reason)

    async def lift(self, tenant: str, channel: Channel, address: str, *, by: Lifter) -> None:
        """``remove`` for the API and CLI: NotFound or LiftForbidden unless it was lifted.

        An address that does not normalise cannot be on the list: NotFound too.
        """
        result = await self.remove(tenant, channel, address, by=by, strict=False)
        if result.outcome is Removal.NOT_FOUND:
            raise errors.NotFound("no such suppression", field="address")
        if result.outcome is Removal.FORBIDDEN:
            assert result.reason is not None
            raise errors.LiftForbidden(str(result.reason))
