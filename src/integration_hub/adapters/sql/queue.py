"""The Queue and Outbox ports on a SQL database, for SQLite and PostgreSQL.

An SQS-like queue table: a lease is ``available_at`` moved past the
visibility timeout, a receipt is matched on ack and release so that a stale
one changes nothing. How an idle worker waits for a message is all that
differs (``wait_for_messages``: SQLite watches commits to its file,
PostgreSQL LISTENs), so each backend's queue subclasses ``SqlQueue`` for it.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence

from integration_hub.adapters import rows as convert
from integration_hub.adapters.sql import statements as q
from integration_hub.adapters.sql import work
from integration_hub.adapters.sql.flow import Flow, Runner, rows, run, single, value
from integration_hub.domain.delivery import OutboundMessage
from integration_hub.ports import OutboxEntry, QueueMessage, QueueStats


def enqueue(notification_id: str, tenant: str, delay: float, now: float) -> Flow[None]:
    """Make a notification id available after ``delay`` seconds (with the NOTIFY)."""
    yield run(q.ENQUEUE, id=notification_id, tenant=tenant, available_at=now + delay, now=now)


def receive(
    max_messages: int, visibility_timeout: float, receipt: str, now: float
) -> Flow[list[QueueMessage]]:
    """Lease up to ``max_messages`` available messages, oldest first."""
    found = yield rows(
        q.RECEIVE,
        now=now,
        limit=max_messages,
        lease_until=now + visibility_timeout,
        receipt=receipt,
    )
    ordered = sorted(found, key=lambda r: (r["was_available_at"], r["notification_id"]))
    return [
        QueueMessage(
            notification_id=r["notification_id"],
            tenant=r["tenant"],
            receipt=r["receipt"],
            receive_count=r["receive_count"],
        )
        for r in ordered
    ]


def stats(now: float) -> Flow[QueueStats]:
    """Current depth."""
    r = (yield rows(q.STATS, now=now))[0]
    return QueueStats(
        visible=r["visible"] or 0,
        in_flight=r["in_flight"] or 0,
        delayed=r["delayed"] or 0,
        oldest_age_seconds=0.0 if r["oldest"] is None else max(0.0, now - r["oldest"]),
    )


def next_available() -> Flow[float | None]:
    """When the soonest message becomes (or became) available; None if the queue is empty."""
    soonest = yield value(q.NEXT_AVAILABLE)
    return None if soonest is None else float(soonest)


class SqlQueue:
    """Enqueue, receive, ack, release and stats, once for both databases."""

    def __init__(self, sql: Runner) -> None:
        self.sql = sql
        self._wakeup: asyncio.Event | None = None

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    async def enqueue(self, notification_id: str, tenant: str, *, delay: float = 0.0) -> None:
        """Make a notification id available after ``delay`` seconds."""
        now = self.sql.clock.now()
        await self.sql.autocommit(enqueue(notification_id, tenant, delay, now))
        self.sql.notify_enqueued()

    async def receive(
        self, max_messages: int, *, visibility_timeout: float
    ) -> Sequence[QueueMessage]:
        """Lease up to ``max_messages`` available messages, oldest first."""
        now = self.sql.clock.now()
        # One receipt per batch, suffixed per message: unique, and cheap.
        receipt = secrets.token_hex(8)
        return await self.sql.autocommit(receive(max_messages, visibility_timeout, receipt, now))

    async def ack(self, message: QueueMessage) -> None:
        """Delete a message; a stale receipt is ignored."""
        query = run(q.ACK, id=message.notification_id, receipt=message.receipt)
        await self.sql.autocommit(single(query))

    async def release(self, message: QueueMessage, *, delay: float) -> None:
        """Make a leased message available again after ``delay`` seconds."""
        now = self.sql.clock.now()
        query = run(
            q.RELEASE,
            available_at=now + delay,
            id=message.notification_id,
            receipt=message.receipt,
        )
        await self.sql.autocommit(single(query))

    async def stats(self) -> QueueStats:
        """Current depth."""
        return await self.sql.read(stats(self.sql.clock.now()))


class SqlOutbox:
    """The sandbox provider's deliveries, visible to every process on the database."""

    def __init__(self, sql: Runner) -> None:
        self.sql = sql

    async def append(self, message: OutboundMessage, provider_message_id: str) -> None:
        """Record one delivery."""
        now = self.sql.clock.now()
        await self.sql.autocommit(work.append_outbox(message, provider_message_id, now))

    async def list_outbox(
        self, tenant: str | None = None, *, limit: int = 100
    ) -> list[OutboxEntry]:
        """Deliveries, newest first."""
        if tenant is None:
            query = rows(q.OUTBOX, limit=limit)
        else:
            query = rows(q.TENANT_OUTBOX, tenant=tenant, limit=limit)
        found = await self.sql.read(single(query))
        return [convert.outbox_entry_from_row(r) for r in found]
