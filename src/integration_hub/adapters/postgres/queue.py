"""The Queue and Outbox ports on PostgreSQL (``adapters/sql/queue.py``), beside the store.

Many workers receive from one table: ``FOR UPDATE SKIP LOCKED`` gives each
message to one receiver without anyone waiting on anyone else's locks. Every
enqueue sends ``pg_notify`` in its own statement, so a NOTIFY is only heard
once the message is visible; idle workers LISTEN (``wait_for_messages``, the
one part that differs from SQLite) and fall back to polling. The
module-level names are the PostgreSQL text of the queue's hot statements,
as tests/contract/test_postgres_indexes.py EXPLAINs them.
"""

from __future__ import annotations

import asyncio
import contextlib

from integration_hub.adapters.postgres.database import PostgresDatabase
from integration_hub.adapters.sql import queue
from integration_hub.adapters.sql import statements as q
from integration_hub.adapters.sql.dialect import POSTGRES
from integration_hub.adapters.sql.flow import AsyncRunner
from integration_hub.adapters.sql.queue import SqlOutbox, SqlQueue
from integration_hub.domain.errors import Unavailable

RECEIVE = POSTGRES.compile(q.RECEIVE).sql
NEXT_AVAILABLE = POSTGRES.compile(q.NEXT_AVAILABLE).sql
ACK = POSTGRES.compile(q.ACK).sql
TENANT_OUTBOX = POSTGRES.compile(q.TENANT_OUTBOX).sql


class PostgresQueue(SqlQueue):
    """An SQS-like queue table shared by every process: leases, receive counts, delays."""

    def __init__(self, db: PostgresDatabase) -> None:
        super().__init__(AsyncRunner(db))
        self.db = db
        db.on_enqueue(self._wake)

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
            soonest = await self.sql.read(queue.next_available())
        except Unavailable:
            soonest = None  # the caller's next receive reports the outage
        if soonest is not None:
            max_wait = max(0.0, min(max_wait, soonest - now))
        if max_wait == 0.0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), max_wait)


class PostgresOutbox(SqlOutbox):
    """The sandbox provider's deliveries, visible to every process on the database."""

    def __init__(self, db: PostgresDatabase) -> None:
        super().__init__(AsyncRunner(db))
        self.db = db
