"""Reading notifications, their dead letters, redrive and sandbox deliveries.

Everything here lives in a notification's partition ``N#<id>`` (or a GSI
over it): the notification, its dead letter (``DL``) and its deliveries
(``OUTBOX#<seq>``), so that retention deletes one Query's worth of items.
"""

from __future__ import annotations

from typing import Any

from integration_hub.adapters import rows
from integration_hub.adapters.aws import conditions, items, tables, webhook_items
from integration_hub.adapters.aws.client import TableClient
from integration_hub.adapters.aws.session import is_client_error
from integration_hub.adapters.aws.tables import epoch_key, item, pending_shard, seq_key
from integration_hub.domain import lifecycle, webhooks
from integration_hub.domain.delivery import OutboundMessage
from integration_hub.domain.models import Notification
from integration_hub.domain.receipts import DeliveryState
from integration_hub.domain.status import Status
from integration_hub.ports import DeadLetter, OutboxEntry


class NotificationItems(TableClient):
    """Reads, the reconciler's index, dead letters, redrive and the Outbox port."""

    async def get_notification(
        self, tenant: str | None, notification_id: str
    ) -> Notification | None:
        """A notification with its attempts; ``tenant=None`` only for operators."""
        found = await self._get(items.notification_key(notification_id))
        if found is None or not lifecycle.visible_to(tenant, found["tenant"]):
            return None
        return items.notification(found)

    async def list_notifications(
        self,
        tenant: str,
        *,
        status: Status | None = None,
        country: str | None = None,
        delivery_state: DeliveryState | None = None,
        limit: int = 50,
        before_id: str | None = None,
    ) -> list[Notification]:
        """The tenant's notifications, newest first, strictly older than ``before_id``.

        The most selective index the filters allow (status, else country,
        else all of the tenant's), the other filters as a FilterExpression.
        """
        wanted: dict[str, str] = {}
        if status is not None:
            index, partition = "GSI2", items.status_index(tenant, status)
            if country is not None:
                wanted["country"] = country
        elif country is not None:
            index, partition = "GSI3", f"T#{tenant}#C#{country}"
        else:
            index, partition = "GSI1", f"T#{tenant}#N"
        if delivery_state is not None:
            wanted["delivery_state"] = str(delivery_state)
        filters = wanted or None
        found = await self._all(
            index, partition, below=before_id, newest_first=True, limit=limit, filters=filters
        )
        return [items.notification(f) for f in found]

    async def list_received(self, *, older_than: float, limit: int = 1000) -> list[Notification]:
        """RECEIVED notifications not claimed since ``older_than`` (epoch), for the reconciler."""
        out: list[Notification] = []
        for shard in range(tables.PENDING_SHARDS):
            async for found in self._query(
                tables.RECEIVED_INDEX,
                f"PENDING#{shard}",
                below=epoch_key(older_than),
                limit=limit - len(out),
            ):
                out.append(items.notification(found))
            if len(out) >= limit:
                break
        return out

    async def touch_received(self, notification: Notification) -> bool:
        """Mark a RECEIVED notification as re-enqueued now, so the next run skips it."""
        now = self.clock.now()
        u = items.Update().set("GSI4SK", value=f"{epoch_key(now)}#{notification.id}")
        condition = f"{u.name('status')} = {u.value(str(Status.RECEIVED))}"
        try:
            await self._update(items.notification_key(notification.id), u, condition)
        except Exception as exc:
            if is_client_error(exc, items.CONDITION_FAILED):
                return False  # claimed in the meantime
            raise
        return True

    async def list_dead_letters(self, tenant: str | None, *, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, newest first; ``tenant=None`` lists every tenant's."""
        index, partition = ("GSI2", "DL") if tenant is None else ("GSI1", f"T#{tenant}#DL")
        found = await self._all(index, partition, newest_first=True, limit=limit)
        return [rows.dead_letter_from_row(items.Row(d)) for d in found]

    async def count_dead_letters(self) -> int:
        """How many dead letters there are: a COUNT query of the DL partition of GSI2."""
        params: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": "GSI2",
            "KeyConditionExpression": "GSI2PK = :pk",
            "ExpressionAttributeValues": item({":pk": "DL"}),
            "Select": "COUNT",
        }
        total = 0
        while True:
            found = await self._call("query", **params)
            total += int(found.get("Count", 0))
            if "LastEvaluatedKey" not in found:
                return total
            params["ExclusiveStartKey"] = found["LastEvaluatedKey"]

    async def redrive(self, tenant: str | None, notification_id: str) -> bool | None:
        """FAILED -> RECEIVED with a fresh budget, removing the dead letter, with its
        ``notification.redriven`` event.

        The SQS message is the caller's to send (False), as for ``accept``.
        """
        now = self.clock.now()
        letter = await self._get(items.dead_letter_key(notification_id))
        if letter is None or not lifecycle.visible_to(tenant, letter["tenant"]):
            return None
        found = await self._get(items.notification_key(notification_id))
        if found is None:
            return None
        lifecycle.check_redrive(Status(found["status"]))
        u = items.Update().set("status", value=str(Status.RECEIVED)).set("attempts_used", value=0)
        u.set("finished_at", value=None).set("updated_at", value=now)
        u.set("GSI2PK", value=items.status_index(letter["tenant"], Status.RECEIVED))
        u.set("GSI4PK", value=pending_shard(notification_id))
        u.set("GSI4SK", value=f"{epoch_key(now)}#{notification_id}").bump()
        unchanged = conditions.unchanged(u, found["version"])
        after = found | {
            "status": str(Status.RECEIVED),
            "attempts_used": 0,
            "finished_at": None,
            "updated_at": now,
            "version": found["version"] + 1,
        }
        try:
            await self._transact(
                {
                    "Update": u.request(
                        self.table, items.notification_key(notification_id), unchanged
                    )
                },
                {
                    "Delete": {
                        "TableName": self.table,
                        "Key": item(items.dead_letter_key(notification_id)),
                        "ConditionExpression": "attribute_exists(PK)",
                    }
                },
                webhook_items.notification_event_put(
                    self.table, webhooks.REDRIVE_EVENT, after, now
                ),
            )
        except Exception as exc:
            if is_client_error(exc, items.TRANSACTION_CANCELED):
                return None  # redriven by someone else in the meantime
            raise
        return False

    async def append(self, message: OutboundMessage, provider_message_id: str) -> None:
        """Record one delivery, numbered by an atomic counter."""
        put = await outbox_put(self, message, provider_message_id, self.clock.now())
        await self._call("put_item", **put)

    async def list_outbox(
        self, tenant: str | None = None, *, limit: int = 100
    ) -> list[OutboxEntry]:
        """Deliveries, newest first."""
        index, partition = ("GSI2", "OUTBOX") if tenant is None else ("GSI1", f"T#{tenant}#OUTBOX")
        found = await self._all(index, partition, newest_first=True, limit=limit)
        return [rows.outbox_entry_from_row(items.Row(e)) for e in found]


async def outbox_put(
    client: TableClient, message: OutboundMessage, provider_message_id: str, now: float
) -> dict[str, Any]:
    """The ``Put`` of one sandbox delivery (for ``put_item`` or a transaction).

    Its number comes from an atomic counter, taken first: a delivery whose
    transaction is then cancelled leaves a gap in the numbers, nothing else.
    """
    counter = await client._update(
        {"PK": "COUNTER#outbox", "SK": "COUNTER"},
        items.Update().bump("seq"),
        returns="UPDATED_NEW",
    )
    seq = int(counter["seq"])
    values = dict(
        zip(rows.OUTBOX_COLUMNS, rows.outbox_values(message, provider_message_id, now), strict=True)
    )
    entry = {
        "PK": f"N#{message.notification_id}",
        "SK": f"OUTBOX#{seq_key(seq)}",
        "seq": seq,
        **values,
        "GSI1PK": f"T#{message.tenant}#OUTBOX",
        "GSI1SK": seq_key(seq),
        "GSI2PK": "OUTBOX",
        "GSI2SK": seq_key(seq),
    }
    return {"TableName": client.table, "Item": item(entry)}
