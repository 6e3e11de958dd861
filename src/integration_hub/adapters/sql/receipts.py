"""Flows of delivery receipts and suppression lists (ports/receipts.py).

The merge order is ``receipts.advance``, a duplicate is decided by the
unique (notification, identity) of ``delivery_events``, and what expires is
``receipts.expiry_due``: these flows find, write and read, nothing more.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from integration_hub.adapters.rows import to_dt, to_dt_required, to_epoch
from integration_hub.adapters.sql import statements as q
from integration_hub.adapters.sql.flow import Flow, count, row, rows, run
from integration_hub.adapters.sql.webhooks import record_change
from integration_hub.domain import receipts, webhooks
from integration_hub.domain.models import STORED, NotificationRequest
from integration_hub.domain.receipts import DeliveryState, Receipt, SuppressionReason
from integration_hub.domain.routing import Channel
from integration_hub.ports.receipts import DeliveryEvent, Match, ReceiptRecord, Suppression

EVENTS_LIMIT = 100
"""The most events ``delivery_events`` answers (the port's maximum)."""
_MICROSECOND = 1e-6


def identity_text(receipt: Receipt) -> str:
    """``receipt.identity`` as the unique column stores it: canonical JSON."""
    return json.dumps(receipt.identity)


def _state(value: str | None) -> DeliveryState | None:
    return None if value is None else DeliveryState(value)


def _recipient(channel: Channel, request: str) -> str | None:
    """The address the notification was sent to, from its stored request."""
    recipient = NotificationRequest.model_validate_json(request, context=STORED).recipient
    return recipient.email if channel is Channel.EMAIL else recipient.phone


def add_event(notification_id: str, receipt: Receipt) -> Flow[bool]:
    """Record ``receipt`` as an event of the notification; False if it already was."""
    inserted: int = yield count(
        q.ADD_DELIVERY_EVENT,
        id=notification_id,
        provider=receipt.provider,
        state=str(receipt.state),
        raw_status=receipt.raw_status,
        error_code=receipt.error_code,
        occurred_at=None if receipt.occurred_at is None else to_epoch(receipt.occurred_at),
        received_at=to_epoch(receipt.received_at),
        identity=identity_text(receipt),
    )
    return inserted > 0


def record_receipt(receipt: Receipt) -> Flow[ReceiptRecord]:
    """Apply one receipt to the notification it names (``ReceiptStore.record_receipt``)."""
    found = yield row(
        q.RECEIPT_TARGET,
        tenant=receipt.tenant,
        provider=receipt.provider,
        provider_message_id=receipt.provider_message_id,
    )
    if found is None:
        return ReceiptRecord(Match.UNMATCHED)
    notification_id: str = found["id"]
    channel = Channel(found["channel"])
    before = _state(found["delivery_state"])
    recorded = yield from add_event(notification_id, receipt)
    after = receipts.advance(before, receipt.state) if recorded else before
    if after is not before:
        now = to_epoch(receipt.received_at)
        changed = yield row(q.SET_DELIVERY_STATE, state=str(after), now=now, id=notification_id)
        type_ = None if after is None else webhooks.delivery_event(before, after)
        if type_ is not None:
            yield from record_change(type_, changed, now)
    return ReceiptRecord(
        Match.RECORDED if recorded else Match.DUPLICATE,
        notification_id=notification_id,
        channel=channel,
        recipient=_recipient(channel, found["request"]),
        before=before,
        after=after,
        sent_at=to_dt(found["sent_at"]),
    )


def event_from_row(found: Mapping[str, Any]) -> DeliveryEvent:
    """A delivery_events row to a DeliveryEvent."""
    return DeliveryEvent(
        provider=found["provider"],
        state=DeliveryState(found["state"]),
        raw_status=found["raw_status"],
        error_code=found["error_code"],
        occurred_at=to_dt(found["occurred_at"]),
        received_at=to_dt_required(found["received_at"]),
    )


def delivery_events(tenant: str, notification_id: str) -> Flow[list[DeliveryEvent]]:
    """The tenant's notification's events, oldest received first."""
    found = yield rows(q.DELIVERY_EVENTS, id=notification_id, tenant=tenant, limit=EVENTS_LIMIT)
    return [event_from_row(r) for r in found]


def expire_deliveries(sent_before: datetime, now: datetime, limit: int) -> Flow[int]:
    """Up to ``limit`` notifications still ``sent`` since before ``sent_before`` expire.

    The search is the partial index of what is still 'sent'; whether each
    expires is ``receipts.expiry_due``; the update repeats the 'sent' guard
    so that a receipt recorded meanwhile (SQLite: never, one writer;
    PostgreSQL: the candidates are locked, others skipped) is not overwritten.
    """
    # Stored times are the clock's floats, finer than a datetime's microsecond:
    # the search takes a microsecond more and expiry_due decides on datetimes.
    cutoff = to_epoch(sent_before) + _MICROSECOND
    found = yield rows(q.EXPIRY_DUE, cutoff=cutoff, limit=limit)
    timeout = now - sent_before
    expired = 0
    for candidate in found:
        state = _state(candidate["delivery_state"])
        if not receipts.expiry_due(state, to_dt_required(candidate["sent_at"]), now, timeout):
            continue
        changed = yield row(q.EXPIRE, now=to_epoch(now), id=candidate["id"])
        if changed is None:
            continue
        type_ = webhooks.delivery_event(state, DeliveryState.EXPIRED)
        if type_ is not None:
            yield from record_change(type_, changed, to_epoch(now))
        event = Receipt(
            tenant=candidate["tenant"],
            provider=receipts.EXPIRY_PROVIDER,
            provider_message_id=candidate["provider_message_id"] or "",
            state=DeliveryState.EXPIRED,
            raw_status=receipts.EXPIRY_STATUS,
            error_code=None,
            occurred_at=now,
            received_at=now,
        )
        yield from add_event(candidate["id"], event)
        expired += 1
    return expired


# -- suppression lists ------------------------------------------------------------------


def suppression_from_row(found: Mapping[str, Any]) -> Suppression:
    """A suppressions row to a Suppression."""
    return Suppression(
        tenant=found["tenant"],
        channel=Channel(found["channel"]),
        address=found["address"],
        reason=SuppressionReason(found["reason"]),
        created_at=to_dt_required(found["created_at"]),
        source=found["source"],
        note=found["note"],
    )


def _key(tenant: str, channel: Channel, address: str) -> dict[str, str]:
    return {"tenant": tenant, "channel": str(channel), "address": address}


def add_suppression(suppression: Suppression) -> Flow[Suppression]:
    """Store it unless the address is already suppressed; the stored one either way."""
    key = _key(suppression.tenant, suppression.channel, suppression.address)
    yield run(
        q.ADD_SUPPRESSION,
        **key,
        reason=str(suppression.reason),
        source=suppression.source,
        note=suppression.note,
        created_at=to_epoch(suppression.created_at),
    )
    stored = yield row(q.SUPPRESSION, **key)
    return suppression_from_row(stored)


def get_suppression(tenant: str, channel: Channel, address: str) -> Flow[Suppression | None]:
    """The suppression of one normalised address, by primary key."""
    found = yield row(q.SUPPRESSION, **_key(tenant, channel, address))
    return None if found is None else suppression_from_row(found)


def list_suppressions(
    tenant: str, channel: Channel | None, limit: int, after: tuple[Channel, str] | None
) -> Flow[list[Suppression]]:
    """The tenant's suppressions in (channel, address) order, strictly after ``after``."""
    statement = q.suppression_listing(channel=channel is not None, after=after is not None)
    found = yield rows(
        statement,
        tenant=tenant,
        channel=None if channel is None else str(channel),
        after_channel=None if after is None else str(after[0]),
        after_address=None if after is None else after[1],
        limit=limit,
    )
    return [suppression_from_row(r) for r in found]


def remove_suppression(tenant: str, channel: Channel, address: str) -> Flow[bool]:
    """Delete one suppression; False if there was none."""
    deleted: int = yield count(q.REMOVE_SUPPRESSION, **_key(tenant, channel, address))
    return deleted > 0
