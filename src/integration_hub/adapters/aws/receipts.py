"""Delivery receipts on the DynamoDB table: record one, read the events, expire the silent.

A receipt finds its notification through the index item
``PMSG#<tenant>#<provider>#<message id>`` that ``complete_attempt`` wrote
(one strongly consistent GetItem). Its event is an item in the
notification's partition keyed by a hash of ``Receipt.identity``, so a
redelivered callback is refused by ``attribute_not_exists`` (DUPLICATE). The
new delivery state is ``receipts.advance`` of the state read, computed here in
Python, and written in the same transaction as the event under the condition
that the notification still has the state and the event count read: a
concurrent receipt makes the transaction fail, and it is read and decided
again (optimistic concurrency, as claims do on ``version``).

While the state is ``sent`` the notification has a ``SENT#<shard>`` entry in
GSI4 sorted by sent time; leaving ``sent`` removes it, so ``expire_deliveries``
queries only what can still expire.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from integration_hub.adapters.aws import items, tables, webhook_items
from integration_hub.adapters.aws.client import TableClient
from integration_hub.adapters.aws.session import is_client_error
from integration_hub.adapters.aws.tables import epoch_key, item
from integration_hub.adapters.rows import to_dt, to_dt_required, to_epoch
from integration_hub.domain import receipts, webhooks
from integration_hub.domain.errors import Unavailable
from integration_hub.domain.receipts import DeliveryState, Receipt
from integration_hub.domain.routing import Channel
from integration_hub.ports import DeliveryEvent, Match, ReceiptRecord

# What ``delivery_events`` returns at most (the port's bound).
MAX_EVENTS = 100
# A notification gets a handful of receipts; this many concurrent ones in a row
# means something is wrong, and the caller answers 503 (the provider retries).
MAX_RECEIPT_RETRIES = 20


def identity_hash(receipt: Receipt) -> str:
    """A stable digest of ``receipt.identity``: the sort key of its event."""
    encoded = json.dumps(receipt.identity, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode()).hexdigest()


def _state(found: Mapping[str, Any]) -> DeliveryState | None:
    value = found.get("delivery_state")
    return None if value is None else DeliveryState(value)


def _recipient(found: Mapping[str, Any]) -> tuple[Channel, str | None]:
    notification = items.notification(found)
    address = notification.request.recipient
    channel = notification.channel
    return channel, address.email if channel is Channel.EMAIL else address.phone


class _Outcome:
    """What one attempt to write an event ended with."""

    WRITTEN = "written"
    DUPLICATE = "duplicate"
    CHANGED = "changed"


class ReceiptItems(TableClient):
    """The ReceiptStore port (see ``ports.receipts``) on one DynamoDB table."""

    async def record_receipt(self, receipt: Receipt) -> ReceiptRecord:
        """Apply one provider event to the notification it names, atomically (see the port)."""
        index = await self._get(
            items.provider_message_key(
                receipt.tenant, receipt.provider, receipt.provider_message_id
            )
        )
        if index is None or index.get("tenant") != receipt.tenant:
            return ReceiptRecord(Match.UNMATCHED)
        nid = str(index["notification_id"])
        for _ in range(MAX_RECEIPT_RETRIES):
            found = await self._get(items.notification_key(nid))
            if found is None or found.get("tenant") != receipt.tenant:
                return ReceiptRecord(Match.UNMATCHED)  # purged since
            before = _state(found)
            after = receipts.advance(before, receipt.state)
            outcome = await self._write_event(found, receipt, before, after)
            if outcome == _Outcome.CHANGED:
                continue
            channel, recipient = _recipient(found)
            return ReceiptRecord(
                Match.RECORDED if outcome == _Outcome.WRITTEN else Match.DUPLICATE,
                notification_id=nid,
                channel=channel,
                recipient=recipient,
                before=before,
                after=after if outcome == _Outcome.WRITTEN else before,
                sent_at=to_dt(found.get("sent_at")),
            )
        raise Unavailable("notification is too contended right now")

    async def _write_event(
        self,
        found: Mapping[str, Any],
        receipt: Receipt,
        before: DeliveryState | None,
        after: DeliveryState,
    ) -> str:
        """Put the event and move the state to ``after``, if nothing changed since the read,
        with the webhook event of the move (``webhooks.delivery_event``) when it is one."""
        nid = str(found["id"])
        count = int(found.get("event_count") or 0)
        event = items.event_key(nid, identity_hash(receipt)) | {
            "seq": count + 1,
            "provider": receipt.provider,
            "state": str(receipt.state),
            "raw_status": receipt.raw_status,
            "error_code": receipt.error_code,
            "occurred_at": None if receipt.occurred_at is None else to_epoch(receipt.occurred_at),
            "received_at": to_epoch(receipt.received_at),
        }
        u = items.Update().set("event_count", value=count + 1)
        if after is not before:
            u.set("delivery_state", value=str(after))
            u.set("delivery_updated_at", value=to_epoch(receipt.received_at))
            if before is DeliveryState.SENT:
                # Out of the sparse SENT# index: nothing left to expire.
                u.remove("GSI4PK").remove("GSI4SK")
        state, seen = u.name("delivery_state"), u.name("event_count")
        same_state = (
            f"attribute_not_exists({state})"
            if before is None
            else f"{state} = {u.value(str(before))}"
        )
        same_count = f"attribute_not_exists({seen})" if count == 0 else f"{seen} = {u.value(count)}"
        told: tuple[dict[str, Any], ...] = ()
        moved = webhooks.delivery_event(before, after)
        if moved is not None:
            state_after = dict(found) | {"delivery_state": str(after), "event_count": count + 1}
            now = self.clock.now()
            told = (webhook_items.notification_event_put(self.table, moved, state_after, now),)
        try:
            await self._transact(
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": item(event),
                        "ConditionExpression": "attribute_not_exists(PK)",
                    }
                },
                {
                    "Update": u.request(
                        self.table, items.notification_key(nid), f"{same_state} AND {same_count}"
                    )
                },
                *told,
            )
        except Exception as exc:
            if not is_client_error(exc, items.TRANSACTION_CANCELED):
                raise
            codes = items.cancel_codes(exc)
            if codes and codes[0] == "ConditionalCheckFailed":
                return _Outcome.DUPLICATE
            if len(codes) > 1 and codes[1] == "ConditionalCheckFailed":
                return _Outcome.CHANGED
            raise
        return _Outcome.WRITTEN

    async def delivery_events(self, tenant: str, notification_id: str) -> list[DeliveryEvent]:
        """The tenant's notification's recorded events, oldest received first (max 100)."""
        found = await self._get(items.notification_key(notification_id))
        if found is None or found.get("tenant") != tenant:
            return []
        params: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :events)",
            "ExpressionAttributeValues": item(
                {":pk": f"N#{notification_id}", ":events": items.EVENT_PREFIX}
            ),
            "ConsistentRead": True,
        }
        events: list[dict[str, Any]] = []
        while True:
            page = await self._call("query", **params)
            events += [tables.plain(e) for e in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                break
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        # Keyed by identity (for duplicates), numbered in the order recorded.
        events.sort(key=lambda e: int(e["seq"]))
        return [
            DeliveryEvent(
                provider=e["provider"],
                state=DeliveryState(e["state"]),
                raw_status=e["raw_status"],
                error_code=e.get("error_code"),
                occurred_at=to_dt(e.get("occurred_at")),
                received_at=to_dt_required(e["received_at"]),
            )
            for e in events[:MAX_EVENTS]
        ]

    async def expire_deliveries(self, *, sent_before: datetime, now: datetime, limit: int) -> int:
        """Up to ``limit`` notifications still ``sent`` since ``sent_before`` become ``expired``.

        Reads the ``SENT#`` partitions of GSI4 up to the cut-off (inclusive:
        ``receipts.expiry_due``), then decides on each item as read
        consistently; a receipt recorded meanwhile wins (the state or event
        count changed, so the write fails and the item is decided again).
        """
        if limit <= 0:
            return 0
        # '$' sorts right after '#': every entry sent at the cut-off is below it.
        below = epoch_key(to_epoch(sent_before)) + "$"
        wait = now - sent_before
        expired = 0
        for shard in range(tables.PENDING_SHARDS):
            async for entry in self._query(
                tables.SENT_INDEX, f"SENT#{shard}", below=below, limit=limit - expired
            ):
                if await self._expire(str(entry["id"]), now, wait):
                    expired += 1
            if expired >= limit:
                break
        return expired

    async def _expire(self, notification_id: str, now: datetime, wait: timedelta) -> bool:
        """Expire one notification if it is still due; whether it was."""
        for _ in range(MAX_RECEIPT_RETRIES):
            found = await self._get(items.notification_key(notification_id))
            if found is None or found.get("sent_at") is None:
                return False
            before = _state(found)
            sent_at = to_dt_required(found["sent_at"])
            if not receipts.expiry_due(before, sent_at, now, wait):
                return False
            event = Receipt(
                tenant=found["tenant"],
                provider=receipts.EXPIRY_PROVIDER,
                provider_message_id=str(found.get("provider_message_id") or ""),
                state=DeliveryState.EXPIRED,
                raw_status=receipts.EXPIRY_STATUS,
                error_code=None,
                occurred_at=None,
                received_at=now,
            )
            after = receipts.advance(before, event.state)
            outcome = await self._write_event(found, event, before, after)
            if outcome == _Outcome.WRITTEN:
                return True
            if outcome == _Outcome.DUPLICATE:
                return False
        raise Unavailable("notification is too contended right now")
