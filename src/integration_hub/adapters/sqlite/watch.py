"""Noticing other processes' commits to the SQLite file, cheaply.

``PRAGMA data_version`` on one connection changes whenever another
connection commits. A thread of its own polls it every ``interval`` seconds,
but only while some coroutine waits, and wakes the event loop only when the
value changed: an idle worker costs a few cheap reads a second and no event
loop turns.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable


class CommitWatcher:
    """Counts commits by other connections, as seen by a poll of ``data_version``."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], interval: float) -> None:
        self._connect = connect
        self.interval = interval
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._count = 0
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[int]]] = []

    async def mark(self) -> int:
        """A baseline taken by a poll made after this call: changes after it count."""
        return await self._wait(-1)

    async def changed_since(self, mark: int) -> int:
        """Return (the new mark) once a commit by another connection is seen after ``mark``."""
        return await self._wait(mark)

    async def _wait(self, mark: int) -> int:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        entry = (mark, loop, future)
        with self._lock:
            if self._stopped:
                raise RuntimeError("the commit watcher is closed")
            self._waiters.append(entry)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="ihub-sqlite-watch", daemon=True
                )
                self._thread.start()
        self._wanted.set()
        try:
            return await future
        finally:
            with self._lock:
                if entry in self._waiters:
                    self._waiters.remove(entry)

    def close(self) -> None:
        """Stop the thread; pending waits are left to their callers' timeouts."""
        with self._lock:
            self._stopped = True
            thread = self._thread
        self._wanted.set()
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        conn = self._connect()
        last: int | None = None
        while True:
            self._wanted.wait()
            with self._lock:
                if self._stopped:
                    return
                if not self._waiters:
                    self._wanted.clear()
                    continue
            version = int(conn.execute("PRAGMA data_version").fetchone()[0])
            with self._lock:
                if last is not None and version != last:
                    self._count += 1
                last = version
                # mark() waiters (-1) get the baseline; the others a newer count.
                due = [w for w in self._waiters if w[0] < self._count]
                for w in due:
                    self._waiters.remove(w)
                count = self._count
            for _, loop, future in due:
                loop.call_soon_threadsafe(_resolve, future, count)
            time.sleep(self.interval)


def _resolve(future: asyncio.Future[int], value: int) -> None:
    if not future.done():
        future.set_result(value)
