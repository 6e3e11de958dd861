"""Retention on the DynamoDB table: delete old finished notifications and keys.

A notification goes with everything in its partition (attempts in the item,
dead letter, sandbox deliveries, delivery events, webhook events) and its
receipt index entry (``PMSG#…``). Suppressions stay: they are the tenant's
list. Webhook deliveries live outside the partition: ``purge_webhooks``
(adapters/aws/webhooks.py) deletes them, and the other events, by age.
"""

from __future__ import annotations

from typing import Any

from integration_hub.adapters.aws import items, webhook_items
from integration_hub.adapters.aws.client import TableClient
from integration_hub.adapters.aws.session import is_client_error
from integration_hub.adapters.aws.tables import item
from integration_hub.domain.status import Status

PURGE_COUNTS = (
    "notifications",
    "attempts",
    "dead_letters",
    "outbox",
    "delivery_events",
    "queue",
    "idempotency_keys",
    "webhook_events",
    "webhook_deliveries",
    "webhook_attempts",
)
"""Items deleted per kind, named as the SQL backends' tables (adapters/sql/retention.py)."""


class RetentionItems(TableClient):
    """``purge``: a Scan for what finished before the cut-off."""

    async def purge(self, older_than_seconds: float, *, page_size: int = 1000) -> dict[str, int]:
        """Delete what finished more than ``older_than_seconds`` ago; items per kind.

        A Scan: fine at the volumes a daily purge sees, and the table's TTL
        already removes expired idempotency keys on its own (those are not
        counted here). SQS messages are never counted: a finished
        notification's message was acked, and SQS drops any other after the
        queue's retention period.
        """
        now = self.clock.now()
        counts = dict.fromkeys(PURGE_COUNTS, 0)
        finished = "#sk = :n AND #finished < :cutoff AND #status IN (:done, :failed)"
        values = {":n": "N", ":cutoff": now - older_than_seconds}
        values |= {":done": str(Status.DONE), ":failed": str(Status.FAILED)}
        async for found in self._scan(finished, values, page_size):
            # First the receipt index entry, which lives outside the partition:
            # a purge that dies after it leaves the notification for the next run.
            await self._forget_index(found)
            for part in await self._all(None, f"N#{found['id']}"):
                await self._call(
                    "delete_item",
                    TableName=self.table,
                    Key=item({"PK": part["PK"], "SK": part["SK"]}),
                )
                if part["SK"] == "N":
                    counts["notifications"] += 1
                    counts["attempts"] += len(part.get("attempts") or {})

                elif part["SK"] == "DL":
                    counts["dead_letters"] += 1
                elif part["SK"].startswith("OUTBOX#"):
                    counts["outbox"] += 1
                elif part["SK"].startswith(items.EVENT_PREFIX):
                    counts["delivery_events"] += 1
                elif part["SK"].startswith(webhook_items.EVENT_PREFIX):
                    counts["webhook_events"] += 1
        async for found in self._scan(
            "#sk = :idem AND expires_at <= :now", {":idem": "IDEM", ":now": now}, page_size
        ):
            try:
                await self._call(
                    "delete_item",
                    TableName=self.table,
                    Key=item({"PK": found["PK"], "SK": "IDEM"}),
                    ConditionExpression="expires_at <= :now",
                    ExpressionAttributeValues=item({":now": now}),
                )
            except Exception as exc:
                if not is_client_error(exc, items.CONDITION_FAILED):
                    raise
                continue  # taken over meanwhile
            counts["idempotency_keys"] += 1
        return counts

    async def _forget_index(self, notification: dict[str, Any]) -> None:
        """Delete the receipt index entry of ``notification``, if it still names it.

        A provider that reused the message id for a newer notification owns
        the entry now: the condition leaves that one alone.
        """
        index = notification.get("receipt_index")
        if not index:
            return
        try:
            await self._call(
                "delete_item",
                TableName=self.table,
                Key=item({"PK": index, "SK": "PMSG"}),
                ConditionExpression="notification_id = :n",
                ExpressionAttributeValues=item({":n": notification["id"]}),
            )
        except Exception as exc:
            if not is_client_error(exc, items.CONDITION_FAILED):
                raise
