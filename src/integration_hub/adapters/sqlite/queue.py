"""The Queue and Outbox ports on SQLite (``adapters/sql/queue.py``), in the store's file.

Only waiting differs from PostgreSQL: SQLite has no NOTIFY, so other
processes' commits are noticed by watching the file (``watch.py``).
"""

from __future__ import annotations

import asyncio

from integration_hub.adapters.sql import queue
from integration_hub.adapters.sql.flow import SyncRunner
from integration_hub.adapters.sql.queue import SqlOutbox, SqlQueue
from integration_hub.adapters.sqlite.database import SqliteDatabase


class SqliteQueue(SqlQueue):
    """An SQS-like queue table: visibility timeouts, receive counts, delays."""

    def __init__(self, db: SqliteDatabase) -> None:
        super().__init__(SyncRunner(db))
        self.db = db
        db.on_enqueue(self._wake)

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
            soonest = await self.sql.read(queue.next_available())
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


class SqliteOutbox(SqlOutbox):
    """The sandbox provider's deliveries, visible to every process on the file."""

    def __init__(self, db: SqliteDatabase) -> None:
        super().__init__(SyncRunner(db))
        self.db = db
