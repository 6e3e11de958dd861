"""One SQLite file shared by the store, the queue and the outbox.

Writes go through a single writer thread with ``BEGIN IMMEDIATE`` (a deferred
transaction that later writes gets SQLITE_BUSY at once, ignoring the busy
timeout), which commits the writes queued at the same moment together (group
commit, ``writer.py``); reads use a small pool of reader threads, which WAL lets run beside
the writer. The event loop never touches a connection.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import TypeVar

from integration_hub.adapters.sqlite.watch import CommitWatcher
from integration_hub.adapters.sqlite.writer import GroupWriter
from integration_hub.domain.errors import DataRejected, Unavailable
from integration_hub.ports import Clock, SystemClock

T = TypeVar("T")

_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA temp_store=MEMORY",
)


# A value SQLite cannot take (too big, a constraint the stores did not expect
# to break): permanent, so DataRejected, never Unavailable. The stores catch
# the constraint errors they do expect (a taken tenant id) themselves.
_REJECTED = (sqlite3.DataError, sqlite3.IntegrityError)


def rejected(exc: sqlite3.Error) -> DataRejected:
    """The DataRejected for a data error: its class and SQLite error name, never its text."""
    name = getattr(exc, "sqlite_errorname", None)
    code = f" ({name})" if name else ""
    return DataRejected(f"the database refused a value: {type(exc).__name__}{code}")


def path_from_url(url: str) -> Path:
    """``sqlite:///relative.db`` or ``sqlite:////absolute.db`` to a path."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a sqlite URL: {url!r} (expected sqlite:///path/to/file.db)")
    return Path(url.removeprefix("sqlite:///"))


class SqliteDatabase:
    """Thread-confined access to one SQLite file for async callers."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Clock | None = None,
        busy_timeout_ms: int = 5000,
        readers: int = 4,
    ) -> None:
        self.path = path
        self.clock: Clock = clock or SystemClock()
        self._busy_timeout_ms = busy_timeout_ms
        self.writer = GroupWriter(self._connection)
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="ihub-sqlite-reader")
        # Its own thread, hence its own connection: PRAGMA data_version is
        # only comparable between two reads on the same connection.
        self.commits = CommitWatcher(self._connection, interval=0.015)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        self._migrated = False

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,  # we issue BEGIN ourselves
                check_same_thread=False,  # closed from the closing thread
                timeout=self._busy_timeout_ms / 1000,
            )
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
            for pragma in _PRAGMAS:
                conn.execute(pragma)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _run_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return fn(self._connection())

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a write transaction on the writer thread.

        The transaction may be shared with other writes queued at the same
        time (each in its own SAVEPOINT): ``fn`` must not COMMIT or ROLLBACK.
        If it raises, its own writes are undone and the exception is ours.
        """
        try:
            result: T = await asyncio.wrap_future(self.writer.submit(fn))
            return result
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise Unavailable(f"database busy: {exc}", retry_after=1.0) from exc
            raise
        except _REJECTED as exc:
            raise rejected(exc) from exc

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on a reader thread (a consistent snapshot per statement)."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._readers, self._run_read, fn)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise Unavailable(f"database busy: {exc}", retry_after=1.0) from exc
            raise
        except _REJECTED as exc:
            raise rejected(exc) from exc

    async def migrate(self) -> None:
        """Create or upgrade the schema; safe to run from several processes at once."""
        if self._migrated:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        scripts = sorted(
            (
                f
                for f in resources.files(__package__).joinpath("migrations").iterdir()
                if f.name.endswith(".sql")
            ),
            key=lambda f: f.name,
        )

        def apply(conn: sqlite3.Connection) -> None:
            for script in scripts:
                try:
                    conn.executescript(
                        "BEGIN IMMEDIATE;\n" + script.read_text(encoding="utf-8") + "\nCOMMIT;"
                    )
                except sqlite3.OperationalError as exc:
                    # ADD COLUMN cannot say IF NOT EXISTS: a column already
                    # there means this script ran (here or in another process).
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    if "duplicate column name" not in str(exc):
                        raise

        await asyncio.wrap_future(self.writer.submit(apply, transactional=False))
        self._migrated = True

    def on_enqueue(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` on the event loop after a write that made messages available."""
        self._listeners.append(listener)

    def notify_enqueued(self) -> None:
        """Wake in-process consumers (other processes poll)."""
        for listener in self._listeners:
            listener()

    def close(self) -> None:
        """Finish pending work and close every connection."""
        self.writer.close()
        self._readers.shutdown(wait=True)
        self.commits.close()
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
