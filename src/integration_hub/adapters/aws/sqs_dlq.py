"""SQS's own dead-letter queue: look at poison messages, and move them back.

SQS moves a message to the DLQ of the queue's redrive policy once it has
been received ``maxReceiveCount`` times without being deleted: the worker
never finished it (it kept crashing, or the store kept failing). These are
not the hub's dead letters (notifications that ended FAILED, in the store).

Looking must not lose anything: a sweep receives with a short visibility
timeout and deletes nothing, then makes every message visible again. A
redrive sends each chosen message to the main queue with its body and
message attributes (the tenant, and whatever else rode along) and deletes
it from the DLQ only once that send succeeded; the worst case is a
duplicate in the main queue, which the dispatcher's claim absorbs (a
finished notification is acked as a duplicate, a held one released).

SQS's ``StartMessageMoveTask`` moves a whole DLQ, but cannot pick messages
by tenant or notification id, and moto does not implement it; the receive,
send, delete loop can, and is what the tests run against.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Collection, Mapping
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any

from integration_hub.adapters.aws.session import AwsSession, is_client_error, translated
from integration_hub.adapters.aws.sqs import MAX_BATCH, STALE_RECEIPT_CODES, SqsQueue
from integration_hub.domain import lifecycle
from integration_hub.ports import PoisonMessage

# Long enough to finish a sweep; if the process dies mid-sweep the messages
# reappear by themselves after this, so nothing is lost either way.
SWEEP_VISIBILITY = 30
# A long poll asks every SQS server: a short poll may miss messages.
SWEEP_WAIT = 1
# An operator tool, not a consumer: never hold more than this many at once.
MAX_SWEEP = 10_000
_ATTRIBUTE_FIELDS = ("DataType", "StringValue", "BinaryValue")


def _tenant(raw: Mapping[str, Any]) -> str:
    return str(raw.get("MessageAttributes", {}).get("tenant", {}).get("StringValue", ""))


def poison_message(raw: Mapping[str, Any]) -> PoisonMessage:
    """A DLQ message from ReceiveMessage as a PoisonMessage."""
    attributes = raw.get("Attributes", {})
    sent_ms = int(attributes.get("SentTimestamp", 0))
    return PoisonMessage(
        message_id=str(raw["MessageId"]),
        notification_id=str(raw["Body"]),
        tenant=_tenant(raw),
        receive_count=int(attributes.get("ApproximateReceiveCount", 0)),
        sent_at=datetime.fromtimestamp(sent_ms / 1000, UTC),
    )


def message_attributes(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The message attributes of a received message, as SendMessage takes them."""
    return {
        name: {k: v for k, v in value.items() if k in _ATTRIBUTE_FIELDS}
        for name, value in raw.get("MessageAttributes", {}).items()
    }


class SqsDeadLetters:
    """The DLQ named by the main queue's redrive policy (QueueDeadLetters port)."""

    def __init__(self, session: AwsSession, queue: str) -> None:
        self.session = session
        self.queue = queue  # the main queue's URL, or its name
        self._urls: dict[str, str] = {}

    @classmethod
    def of(cls, queue: SqsQueue) -> SqsDeadLetters:
        """The DLQ of an SqsQueue, sharing its clients."""
        return cls(queue.session, queue.queue)

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        client = await self.session.client("sqs")
        async with translated("SQS"):
            result: dict[str, Any] = await getattr(client, operation)(**params)
            return result

    async def main_url(self) -> str:
        """The main queue's URL (resolved once if it was given by name)."""
        if "main" not in self._urls:
            if self.queue.startswith(("http://", "https://")):
                self._urls["main"] = self.queue
            else:
                found = await self._call("get_queue_url", QueueName=self.queue)
                self._urls["main"] = str(found["QueueUrl"])
        return self._urls["main"]

    async def dlq_url(self) -> str | None:
        """The DLQ's URL from the main queue's RedrivePolicy; None if it has none."""
        if "dlq" not in self._urls:
            found = await self._call(
                "get_queue_attributes", QueueUrl=await self.main_url(), AttributeNames=["All"]
            )
            policy = found.get("Attributes", {}).get("RedrivePolicy")
            if not policy:
                return None
            # arn:aws:sqs:<region>:<account>:<name>
            _, _, _, _, account, name = json.loads(policy)["deadLetterTargetArn"].split(":", 5)
            found = await self._call(
                "get_queue_url", QueueName=name, QueueOwnerAWSAccountId=account
            )
            self._urls["dlq"] = str(found["QueueUrl"])
        return self._urls["dlq"]

    async def _sweep(self, url: str, hidden: dict[str, str]) -> AsyncGenerator[dict[str, Any]]:
        """Every DLQ message once, hidden for SWEEP_VISIBILITY; ``hidden`` maps id -> receipt."""
        seen: set[str] = set()
        while len(seen) < MAX_SWEEP:
            found = await self._call(
                "receive_message",
                QueueUrl=url,
                MaxNumberOfMessages=MAX_BATCH,
                VisibilityTimeout=SWEEP_VISIBILITY,
                WaitTimeSeconds=SWEEP_WAIT,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            )
            fresh = [m for m in found.get("Messages", []) if m["MessageId"] not in seen]
            if not fresh:
                return
            for raw in fresh:
                seen.add(raw["MessageId"])
                hidden[raw["MessageId"]] = raw["ReceiptHandle"]
                yield raw

    async def _give_back(self, url: str, hidden: Mapping[str, str]) -> None:
        """Make what a sweep hid visible again at once."""
        receipts = list(hidden.values())
        for start in range(0, len(receipts), MAX_BATCH):
            entries = [
                {"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": 0}
                for i, r in enumerate(receipts[start : start + MAX_BATCH])
            ]
            # Per-entry failures (a receipt gone stale) are fine: SWEEP_VISIBILITY ends them.
            await self._call("change_message_visibility_batch", QueueUrl=url, Entries=entries)

    async def list_poison(self, tenant: str | None, *, limit: int) -> list[PoisonMessage]:
        """The DLQ's messages (of one tenant, or all), oldest sent first; none is consumed."""
        url = await self.dlq_url()
        if url is None:
            return []
        hidden: dict[str, str] = {}
        out: list[PoisonMessage] = []
        try:
            async with aclosing(self._sweep(url, hidden)) as sweep:
                async for raw in sweep:
                    if lifecycle.visible_to(tenant, _tenant(raw)):
                        out.append(poison_message(raw))
                        if len(out) >= limit:
                            break
        finally:
            await self._give_back(url, hidden)
        return sorted(out, key=lambda m: (m.sent_at, m.message_id))

    async def redrive_poison(
        self, tenant: str | None, notification_ids: Collection[str] | None
    ) -> list[str]:
        """Send the chosen DLQ messages back to the main queue, then delete them there."""
        url = await self.dlq_url()
        if url is None:
            return []
        main = await self.main_url()
        wanted = None if notification_ids is None else set(notification_ids)
        hidden: dict[str, str] = {}
        moved: list[str] = []
        try:
            async with aclosing(self._sweep(url, hidden)) as sweep:
                async for raw in sweep:
                    if not lifecycle.visible_to(tenant, _tenant(raw)):
                        continue
                    if wanted is not None and raw["Body"] not in wanted:
                        continue
                    await self._call(
                        "send_message",
                        QueueUrl=main,
                        MessageBody=raw["Body"],
                        MessageAttributes=message_attributes(raw),
                    )
                    # Only now: had the send failed, the message would still be in the DLQ.
                    try:
                        await self._call(
                            "delete_message", QueueUrl=url, ReceiptHandle=raw["ReceiptHandle"]
                        )
                    except Exception as exc:
                        # Hidden past SWEEP_VISIBILITY and received again: a duplicate at
                        # worst, which the claim absorbs.
                        if not is_client_error(exc, *STALE_RECEIPT_CODES):
                            raise
                    del hidden[raw["MessageId"]]
                    if raw["Body"] not in moved:
                        moved.append(raw["Body"])
        finally:
            await self._give_back(url, hidden)
        return moved
