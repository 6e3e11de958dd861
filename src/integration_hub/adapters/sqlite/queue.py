"""The Queue and Outbox ports on SQLite, in the same file as the store."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from collections.abc import Sequence

from integration_hub.adapters import rows
from integration_hub.adapters.sqlite.database import SqliteDatabase
from integration_hub.domain.delivery import OutboundMessage
from integration_hub.ports import OutboxEntry, QueueMessage, QueueStats


def insert_outbox(
    conn: sqlite3.Connection, message: OutboundMessage, provider_message_id: str, now: float
) -> None:
    """Write one sandbox delivery (inside the caller's transaction)."""
    conn.execute(
        "INSERT INTO outbox (notification_id, tenant, channel, recipient, subject,"
        " body, attempt, provider_message_id, delivered_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows.outbox_values(message, provider_message_id, now),
    )


def _next_available(conn: sqlite3.Connection) -> float | None:
    row = conn.execute("SELECT MIN(available_at) AS t FROM queue").fetchone()
    return None if row["t"] is None else float(row["t"])


class SqliteQueue:
    """An SQS-like queue table: visibility timeouts, receive counts, delays."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        self._wakeup: asyncio.Event | None = None
        db.on_enqueue(self._wake)

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    async def enqueue(self, notification_id: str, tenant: str, *, delay: float = 0.0) -> None:
        """Make a notification id available after ``delay`` seconds."""
        now = self.db.clock.now()

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO queue (notification_id, tenant, available_at, enqueued_at,"
                " receive_count) VALUES (?, ?, ?, ?, 0)"
                " ON CONFLICT (notification_id) DO UPDATE SET"
                " available_at = excluded.available_at, receipt = NULL",
                (notification_id, tenant, now + delay, now),
            )

        await self.db.write(run)
        self.db.notify_enqueued()

    async def receive(
        self, max_messages: int, *, visibility_timeout: float
    ) -> Sequence[QueueMessage]:
        """Lease up to ``max_messages`` available messages, oldest first."""
        now = self.db.clock.now()
        receipt = secrets.token_hex(8)

        def run(conn: sqlite3.Connection) -> list[QueueMessage]:
            # One receipt per batch, suffixed per message: unique, and cheap.
            found = conn.execute(
                "UPDATE queue SET available_at = ?, receive_count = receive_count + 1,"
                " receipt = ? || '-' || notification_id"
                " WHERE notification_id IN (SELECT notification_id FROM queue"
                " WHERE available_at <= ? ORDER BY available_at LIMIT ?)"
                " RETURNING notification_id, tenant, receipt, receive_count",
                (now + visibility_timeout, receipt, now, max_messages),
            ).fetchall()
            return [
                QueueMessage(
                    notification_id=r["notification_id"],
                    tenant=r["tenant"],
                    receipt=r["receipt"],
                    receive_count=r["receive_count"],
                )
                for r in found
            ]

        return await self.db.write(run)

    async def ack(self, message: QueueMessage) -> None:
        """Delete a message; a stale receipt is ignored."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM queue WHERE notification_id = ? AND receipt = ?",
                (message.notification_id, message.receipt),
            )

        await self.db.write(run)

    async def release(self, message: QueueMessage, *, delay: float) -> None:
        """Make a leased message available again after ``delay`` seconds."""
        now = self.db.clock.now()

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE queue SET available_at = ?, receipt = NULL"
                " WHERE notification_id = ? AND receipt = ?",
                (now + delay, message.notification_id, message.receipt),
            )

        await self.db.write(run)

    async def wait_for_messages(self, max_wait: float) -> None:
        """Return when a message may be available, or after ``max_wait`` seconds.

        In-process enqueues wake us at once. Commits by other processes (an
        ``ihub api`` beside this worker) are noticed by the database's
        ``CommitWatcher`` (``PRAGMA data_version`` polled every 15 ms on its
        own thread): a change triggers one cheap read of the soonest
        available message, and we return only if one is due, so idle
        workers never wake each other. A delayed message shortens the wait.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        # Baseline first, then look: a commit after the look is a change.
        self._wakeup.clear()
        mark = await self.db.commits.mark()
        while True:
            soonest = await self.db.read(_next_available)
            now = self.db.clock.now()
            if soonest is not None:
                if soonest <= now:
                    return
                deadline = min(deadline, loop.time() + (soonest - now))
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            woken = asyncio.ensure_future(self._wakeup.wait())
            committed = asyncio.ensure_future(self.db.commits.changed_since(mark))
            try:
                done, _ = await asyncio.wait(
                    {woken, committed}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for task in (woken, committed):
                    task.cancel()
            if not done or woken in done:
                return  # the deadline, or an in-process enqueue
            mark = committed.result()  # someone committed: look again

    async def stats(self) -> QueueStats:
        """Current depth."""
        now = self.db.clock.now()

        def run(conn: sqlite3.Connection) -> QueueStats:
            r = conn.execute(
                "SELECT"
                " SUM(available_at <= ?) AS visible,"
                " SUM(available_at > ? AND receipt IS NOT NULL) AS in_flight,"
                " SUM(available_at > ? AND receipt IS NULL) AS delayed,"
                " MIN(enqueued_at) AS oldest FROM queue",
                (now, now, now),
            ).fetchone()
            return QueueStats(
                visible=r["visible"] or 0,
                in_flight=r["in_flight"] or 0,
                delayed=r["delayed"] or 0,
                oldest_age_seconds=0.0 if r["oldest"] is None else max(0.0, now - r["oldest"]),
            )

        return await self.db.read(run)


class SqliteOutbox:
    """The sandbox provider's deliveries, visible to every process on the file."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def append(self, message: OutboundMessage, provider_message_id: str) -> None:
        """Record one delivery."""
        now = self.db.clock.now()
        await self.db.write(lambda conn: insert_outbox(conn, message, provider_message_id, now))

    async def list_outbox(
        self, tenant: str | None = None, *, limit: int = 100
    ) -> list[OutboxEntry]:
        """Deliveries, newest first."""

        def run(conn: sqlite3.Connection) -> list[OutboxEntry]:
            if tenant is None:
                found = conn.execute("SELECT * FROM outbox ORDER BY seq DESC LIMIT ?", (limit,))
            else:
                found = conn.execute(
                    "SELECT * FROM outbox WHERE tenant = ? ORDER BY seq DESC LIMIT ?",
                    (tenant, limit),
                )
            return [rows.outbox_entry_from_row(r) for r in found]

        return await self.db.read(run)
