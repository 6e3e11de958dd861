"""The Queue port on Amazon SQS (a standard queue; its DLQ is a redrive policy).

The message body is the notification id and the tenant a message attribute.
SQS keeps visibility timeouts and delays on its own (wall) clock; the
injected clock only dates the ``not_before`` of delays beyond SQS's 15-minute
maximum. ADR 0011 maps every Queue method to its SQS call, with the
differences from the SQL queues.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from integration_hub import tracing
from integration_hub.adapters.aws.session import AwsSession, is_client_error, translated
from integration_hub.ports import Clock, QueueMessage, QueueStats

MAX_BATCH = 10  # ReceiveMessage's MaxNumberOfMessages
MAX_DELAY = 900  # SendMessage's DelaySeconds
MAX_VISIBILITY = 43_200  # ChangeMessageVisibility: 12 hours
MAX_WAIT = 20  # WaitTimeSeconds of a long poll
STALE_RECEIPT_CODES = (
    "ReceiptHandleIsInvalid",
    "AWS.SimpleQueueService.MessageNotInflight",
    "MessageNotInflight",
    "InvalidParameterValue",
)


def _seconds(value: float, cap: int) -> int:
    """Whole seconds for SQS, rounded up so a delay is never shortened, capped."""
    return max(0, min(cap, math.ceil(value)))


def _attribute(attributes: Mapping[str, Any], name: str, value_key: str) -> str | None:
    value = (attributes.get(name) or {}).get(value_key)
    return str(value) if value else None


def message_from_lambda_record(record: Mapping[str, Any]) -> QueueMessage:
    """A message from an SQS event record as Lambda delivers it (attributes in camelCase)."""
    attributes = record.get("messageAttributes") or {}
    return QueueMessage(
        notification_id=str(record["body"]),
        tenant=_attribute(attributes, "tenant", "stringValue") or "",
        receipt=str(record["receiptHandle"]),
        receive_count=int((record.get("attributes") or {}).get("ApproximateReceiveCount", 1)),
        traceparent=_attribute(attributes, "traceparent", "stringValue"),
        tracestate=_attribute(attributes, "tracestate", "stringValue"),
    )


class SqsQueue:
    """At-least-once queue of notification ids on SQS."""

    def __init__(self, session: AwsSession, queue: str, *, clock: Clock) -> None:
        self.session = session
        self.queue = queue  # a queue URL, or a name resolved with GetQueueUrl
        self.clock = clock
        self._url: str | None = queue if queue.startswith(("http://", "https://")) else None
        # Messages a long poll in ``wait_for_messages`` leased; ``receive`` hands them out.
        self._buffer: list[QueueMessage] = []
        self._visibility = 30
        self._batch = MAX_BATCH

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        client = await self.session.client("sqs")
        async with translated("SQS"):
            if self._url is None:
                found = await client.get_queue_url(QueueName=self.queue)
                self._url = str(found["QueueUrl"])
            result: dict[str, Any] = await getattr(client, operation)(QueueUrl=self._url, **params)
            return result

    async def enqueue(self, notification_id: str, tenant: str, *, delay: float = 0.0) -> None:
        """SendMessage with DelaySeconds; beyond 15 minutes the rest is a ``not_before``."""
        attributes: dict[str, Any] = {"tenant": {"DataType": "String", "StringValue": tenant}}
        # The enqueuing span's W3C context, so the attempt joins its trace (ADR 0015).
        for name, value in tracing.carrier().items():
            attributes[name] = {"DataType": "String", "StringValue": value}
        if delay > MAX_DELAY:
            not_before = self.clock.now() + delay
            attributes["not_before"] = {"DataType": "Number", "StringValue": repr(not_before)}
        await self._call(
            "send_message",
            MessageBody=notification_id,
            DelaySeconds=_seconds(delay, MAX_DELAY),
            MessageAttributes=attributes,
        )

    async def _receive(self, count: int, visibility: int, wait: int) -> list[QueueMessage]:
        found = await self._call(
            "receive_message",
            MaxNumberOfMessages=count,
            VisibilityTimeout=visibility,
            WaitTimeSeconds=wait,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        out = []
        now = self.clock.now()
        for raw in found.get("Messages", []):
            attributes = raw.get("MessageAttributes", {})
            not_before = float(attributes.get("not_before", {}).get("StringValue", 0))
            if not_before > now:
                # A delay longer than SendMessage allows: hide it for the rest.
                await self._change_visibility(
                    raw["ReceiptHandle"], _seconds(not_before - now, MAX_VISIBILITY)
                )
                continue
            out.append(
                QueueMessage(
                    notification_id=raw["Body"],
                    tenant=attributes.get("tenant", {}).get("StringValue", ""),
                    receipt=raw["ReceiptHandle"],
                    receive_count=int(raw.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
                    traceparent=_attribute(attributes, "traceparent", "StringValue"),
                    tracestate=_attribute(attributes, "tracestate", "StringValue"),
                )
            )
        return out

    async def receive(
        self, max_messages: int, *, visibility_timeout: float
    ) -> Sequence[QueueMessage]:
        """ReceiveMessage in calls of at most 10 until ``max_messages`` or the queue runs dry."""
        self._visibility = _seconds(visibility_timeout, MAX_VISIBILITY)
        self._batch = max(1, min(MAX_BATCH, max_messages))
        out = self._buffer[:max_messages]
        del self._buffer[:max_messages]
        while len(out) < max_messages:
            wanted = min(MAX_BATCH, max_messages - len(out))
            got = await self._receive(wanted, self._visibility, 0)
            out.extend(got)
            if len(got) < wanted:
                break
        return out

    async def ack(self, message: QueueMessage) -> None:
        """DeleteMessage; a receipt SQS no longer knows is ignored."""
        try:
            await self._call("delete_message", ReceiptHandle=message.receipt)
        except Exception as exc:
            if not is_client_error(exc, *STALE_RECEIPT_CODES):
                raise

    async def _change_visibility(self, receipt: str, seconds: int) -> None:
        try:
            await self._call(
                "change_message_visibility", ReceiptHandle=receipt, VisibilityTimeout=seconds
            )
        except Exception as exc:
            if not is_client_error(exc, *STALE_RECEIPT_CODES):
                raise

    async def release(self, message: QueueMessage, *, delay: float) -> None:
        """ChangeMessageVisibility(delay): visible again after the delay (at most 12 h)."""
        await self._change_visibility(message.receipt, _seconds(delay, MAX_VISIBILITY))

    async def wait_for_messages(self, max_wait: float) -> None:
        """Long-poll for up to ``max_wait`` (whole seconds, 1 to 20); keep what arrives.

        A long poll returns as soon as a message arrives from any producer;
        the messages it leased are handed out by the next ``receive``.
        """
        if self._buffer:
            return
        started = time.monotonic()
        wait = max(1, min(MAX_WAIT, round(max_wait)))
        self._buffer.extend(await self._receive(self._batch, self._visibility, wait))
        if not self._buffer:
            # A message hidden for a long delay ended the poll early: sit out the rest.
            left = max_wait - (time.monotonic() - started)
            if left > 0:
                await asyncio.sleep(left)

    async def stats(self) -> QueueStats:
        """GetQueueAttributes (approximate); SQS does not report the oldest message's age."""
        found = await self._call(
            "get_queue_attributes",
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )
        attributes = found.get("Attributes", {})
        return QueueStats(
            visible=int(attributes.get("ApproximateNumberOfMessages", 0)),
            in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
            delayed=int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
            oldest_age_seconds=0.0,
        )

    async def close(self) -> None:
        """Close the AWS clients (shared with the store)."""
        await self.session.close()
