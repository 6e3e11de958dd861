"""The Queue and Outbox ports on PostgreSQL, in the same database as the store.

Many workers receive from one table: ``FOR UPDATE SKIP LOCKED`` gives each
message to one receiver without anyone waiting on anyone else's locks, and a
lease is simply ``available_at`` moved past the visibility timeout. Every
enqueue sends ``pg_notify`` in its own transaction, so a NOTIFY is only heard
once the message is visible; idle workers LISTEN and fall back to polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Sequence

from integration_hub.adapters import rows
from integration_hub.adapters.postgres.database import CHANNEL, PostgresDatabase
from integration_hub.domain.delivery import OutboundMessage
from integration_hub.domain.errors import Unavailable
from integration_hub.ports import OutboxEntry, QueueMessage, QueueStats

# A new message, or one redriven: its receive count starts again.
ENQUEUE_FRESH = """
WITH queued AS (
    INSERT INTO queue (notification_id, tenant, available_at, enqueued_at, receive_count)
    VALUES ($1, $2, $3, $4, 0)
    ON CONFLICT (notification_id) DO UPDATE SET
        available_at = excluded.available_at, receipt = NULL, receive_count = 0
    RETURNING 1
)
SELECT pg_notify($5, '')
"""

ENQUEUE = """
WITH queued AS (
    INSERT INTO queue (notification_id, tenant, available_at, enqueued_at, receive_count)
    VALUES ($1, $2, $3, $4, 0)
    ON CONFLICT (notification_id) DO UPDATE SET
        available_at = excluded.available_at, receipt = NULL
    RETURNING 1
)
SELECT pg_notify($5, '')
"""

# The batch is picked once (MATERIALIZED: a LIMIT subquery under a join could
# otherwise be re-run) and locked with SKIP LOCKED, so concurrent receivers
# take disjoint batches. One receipt per batch, suffixed per message.
RECEIVE = """
WITH picked AS MATERIALIZED (
    SELECT notification_id, available_at FROM queue
    WHERE available_at <= $1
    ORDER BY available_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE queue AS q SET
    available_at = $3,
    receive_count = q.receive_count + 1,
    receipt = $4 || '-' || q.notification_id
FROM picked
WHERE q.notification_id = picked.notification_id
RETURNING q.notification_id, q.tenant, q.receipt, q.receive_count,
    picked.available_at AS was_available_at
"""

ACK = "DELETE FROM queue WHERE notification_id = $1 AND receipt = $2"

RELEASE = """
UPDATE queue SET available_at = $1, receipt = NULL WHERE notification_id = $2 AND receipt = $3
"""

NEXT_AVAILABLE = "SELECT MIN(available_at) FROM queue"

STATS = """
SELECT
    COUNT(*) FILTER (WHERE available_at <= $1) AS visible,
    COUNT(*) FILTER (WHERE available_at > $1 AND receipt IS NOT NULL) AS in_flight,
    COUNT(*) FILTER (WHERE available_at > $1 AND receipt IS NULL) AS delayed,
    MIN(enqueued_at) AS oldest
FROM queue
"""

APPEND = """
INSERT INTO outbox (notification_id, tenant, channel, recipient, subject, body, attempt,
    provider_message_id, delivered_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""

OUTBOX = "SELECT * FROM outbox ORDER BY seq DESC LIMIT $1"

TENANT_OUTBOX = "SELECT * FROM outbox WHERE tenant = $1 ORDER BY seq DESC LIMIT $2"


class PostgresQueue:
    """An SQS-like queue table shared by every process: leases, receive counts, delays."""

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db
        self._wakeup: asyncio.Event | None = None
        db.on_enqueue(self._wake)

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    async def enqueue(self, notification_id: str, tenant: str, *, delay: float = 0.0) -> None:
        """Make a notification id available after ``delay`` seconds."""
        now = self.db.clock.now()
        async with self.db.connection() as conn:
            await conn.execute(ENQUEUE, notification_id, tenant, now + delay, now, CHANNEL)
        self.db.notify_enqueued()

    async def receive(
        self, max_messages: int, *, visibility_timeout: float
    ) -> Sequence[QueueMessage]:
        """Lease up to ``max_messages`` available messages, oldest first."""
        now = self.db.clock.now()
        receipt = secrets.token_hex(8)
        async with self.db.connection() as conn:
            found = await conn.fetch(RECEIVE, now, max_messages, now + visibility_timeout, receipt)
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

    async def ack(self, message: QueueMessage) -> None:
        """Delete a message; a stale receipt is ignored."""
        async with self.db.connection() as conn:
            await conn.execute(ACK, message.notification_id, message.receipt)

    async def release(self, message: QueueMessage, *, delay: float) -> None:
        """Make a leased message available again after ``delay`` seconds."""
        now = self.db.clock.now()
        async with self.db.connection() as conn:
            await conn.execute(RELEASE, now + delay, message.notification_id, message.receipt)

    async def wait_for_messages(self, max_wait: float) -> None:
        """Return when a message may be available, or after ``max_wait`` seconds.

        A NOTIFY from any process (or an enqueue in this one) wakes us; a
        delayed message or an expiring lease shortens the wait. While the
        LISTEN connection is down this is a plain poll of ``max_wait``.
        """
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        # Cleared and LISTENing before looking, so that nothing enqueued
        # after the look can go unheard.
        self._wakeup.clear()
        await self.db.listen()
        now = self.db.clock.now()
        try:
            async with self.db.connection() as conn:
                soonest = await conn.fetchval(NEXT_AVAILABLE)
        except Unavailable:
            soonest = None  # the caller's next receive reports the outage
        if soonest is not None:
            max_wait = max(0.0, min(max_wait, soonest - now))
        if max_wait == 0.0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), max_wait)

    async def stats(self) -> QueueStats:
        """Current depth."""
        now = self.db.clock.now()
        async with self.db.connection() as conn:
            r = await conn.fetchrow(STATS, now)
        return QueueStats(
            visible=r["visible"],
            in_flight=r["in_flight"],
            delayed=r["delayed"],
            oldest_age_seconds=0.0 if r["oldest"] is None else max(0.0, now - r["oldest"]),
        )


class PostgresOutbox:
    """The sandbox provider's deliveries, visible to every process on the database."""

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    async def append(self, message: OutboundMessage, provider_message_id: str) -> None:
        """Record one delivery."""
        values = rows.outbox_values(message, provider_message_id, self.db.clock.now())
        async with self.db.connection() as conn:
            await conn.execute(APPEND, *values)

    async def list_outbox(
        self, tenant: str | None = None, *, limit: int = 100
    ) -> list[OutboxEntry]:
        """Deliveries, newest first."""
        async with self.db.connection() as conn:
            if tenant is None:
                found = await conn.fetch(OUTBOX, limit)
            else:
                found = await conn.fetch(TENANT_OUTBOX, tenant, limit)
        return [rows.outbox_entry_from_row(r) for r in found]
