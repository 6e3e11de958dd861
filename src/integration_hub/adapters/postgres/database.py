"""One PostgreSQL database shared by the store, the queue and the outbox.

Each process holds an asyncpg pool, plus one dedicated connection that
LISTENs for enqueue notifications. Every vendor error that means "the server
cannot be used right now" (refused or dropped connections, a server shutting
down or not accepting connections, an exhausted pool) becomes ``Unavailable``
here, at the edge, so that the API answers 503 with Retry-After and the worker
backs off; an error about the data itself (a NUL byte in a text column, a
broken constraint) becomes ``DataRejected``, which no caller retries. Time is
always the injected clock's, passed as a parameter: SQL ``now()`` would ignore
the clock tests move.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

# asyncpg ships no type information; the adapters treat its objects as Any.
import asyncpg  # type: ignore[import-untyped]
from asyncpg import Connection as Connection

from integration_hub.adapters.sql.dialect import NOTIFY_CHANNEL
from integration_hub.domain.errors import DataRejected, Unavailable
from integration_hub.ports import Clock, SystemClock

log = logging.getLogger(__name__)

CHANNEL = NOTIFY_CHANNEL
"""The LISTEN/NOTIFY channel that wakes idle workers after an enqueue."""

# Any constant works; it only has to differ from other applications' advisory locks.
MIGRATION_LOCK = 0x69_68_75_62_6D_69_67  # "ihubmig"

# Errors that mean the server cannot serve us right now, on an open connection.
_OUTAGE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,  # class 08, and a connection lost mid-query
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections
    asyncpg.exceptions.TransactionRollbackError,  # class 40: deadlock, serialization
)
# Errors about the data itself (SQLSTATE class 22: a NUL byte or a character
# the encoding lacks, a value out of range; class 23: a broken constraint the
# stores did not expect). The same statement fails the same way every time:
# they become DataRejected, never Unavailable, so that nobody retries them.
_REJECTED: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DataError,
    asyncpg.exceptions.IntegrityConstraintViolationError,
)
# Opening a connection fails in more ways (a database that does not accept
# connections, or does not exist yet): all of them mean "not now".
_CONNECT: tuple[type[BaseException], ...] = (
    *_OUTAGE,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)

_SERVER_SETTINGS = {
    "application_name": "integration-hub",
    # Every query here is a short indexed lookup; JIT compilation only adds latency.
    "jit": "off",
}

_LOG_INTERVAL = 5.0  # seconds between two warnings about the same outage

_MIGRATION_FILE = re.compile(r"^(\d+)_([\w-]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One versioned SQL file of ``migrations/``."""

    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The packaged migrations, in version order."""
    found = []
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


async def _no_reset(_: Any) -> None:
    # The pool's default reset runs one more query per release. Our
    # connections hold no session state: transactions are rolled back by
    # asyncpg itself, advisory locks are transaction-scoped, and LISTEN lives
    # on its own connection.
    return None


def rejected(exc: BaseException) -> DataRejected:
    """The DataRejected for a data error: its class and SQLSTATE, never its text.

    The server's message may quote the value (``invalid input syntax for type
    integer: "..."``), which can be a recipient; the class name says enough.
    """
    sqlstate = getattr(exc, "sqlstate", None)
    code = f" (SQLSTATE {sqlstate})" if sqlstate else ""
    return DataRejected(f"the database refused a value: {type(exc).__name__}{code}")


class PostgresDatabase:
    """A connection pool and a LISTEN connection for one database URL."""

    def __init__(
        self,
        url: str,
        *,
        clock: Clock | None = None,
        min_size: int = 0,
        max_size: int = 10,
        timeout: float = 5.0,
        command_timeout: float = 30.0,
        retry_after: float = 1.0,
    ) -> None:
        self.url = url
        self.clock: Clock = clock or SystemClock()
        self.min_size = min(min_size, max_size)
        self.max_size = max_size
        self.timeout = timeout
        self.command_timeout = command_timeout
        self.retry_after = retry_after
        self._pool: Any = None
        self._listener: Any = None
        self._listener_lock = asyncio.Lock()
        self._listener_retry_at = 0.0
        self._wakers: list[Callable[[], None]] = []
        self._quiet_until = 0.0
        self._unlogged = 0

    # -- errors -------------------------------------------------------------

    def _unavailable(self, exc: BaseException) -> Unavailable:
        # During an outage every request fails the same way: log the first
        # failure, then one line per interval with how many were not logged.
        now = time.monotonic()
        if now >= self._quiet_until:
            more = f" (and {self._unlogged} more since)" if self._unlogged else ""
            log.warning("PostgreSQL unavailable: %s: %s%s", type(exc).__name__, exc, more)
            self._quiet_until, self._unlogged = now + _LOG_INTERVAL, 0
        else:
            self._unlogged += 1
        # The detail reaches API clients: name the condition, not the server.
        return Unavailable(
            "the database is unavailable; try again shortly", retry_after=self.retry_after
        )

    def _is_outage(self, exc: BaseException, conn: Any) -> bool:
        if isinstance(exc, _OUTAGE):
            return True
        if isinstance(exc, asyncpg.exceptions.InternalClientError):
            # A session the server ended while it sat idle in the pool: its
            # FATAL message arrived before the socket closed, and the protocol
            # refuses new work ("another operation is in progress"). Drop it.
            conn.terminate()
            return True
        if not isinstance(exc, asyncpg.InterfaceError):
            return False
        # A rollback on a connection that just died reports "connection is closed".
        try:
            return bool(conn.is_closed())
        except asyncpg.InterfaceError:
            # The pool has already taken back the connection that broke under
            # us ("released back to the pool"): it is gone, like the server.
            return True

    # -- lifecycle ------------------------------------------------------------

    async def open(self) -> None:
        """Create the pool and check the server answers; Unavailable if it does not."""
        if self._pool is not None:
            return
        try:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=self.min_size,
                max_size=self.max_size,
                timeout=self.timeout,
                command_timeout=self.command_timeout,
                server_settings=_SERVER_SETTINGS,
                reset=_no_reset,
            )
        except _CONNECT as exc:
            raise self._unavailable(exc) from exc
        # Fail fast on a wrong URL or a server that is down: the pool itself
        # connects lazily (no idle floor to restore during an outage).
        try:
            async with self.connection() as conn:
                await conn.execute("SELECT 1")
        except Unavailable:
            await self.close()
            raise

    async def close(self) -> None:
        """Close the LISTEN connection and the pool."""
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                await asyncio.wait_for(listener.close(), self.timeout)
            except Exception:  # a dead server cannot say goodbye: just drop it
                listener.terminate()
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self.timeout)
            except Exception:
                pool.terminate()

    # -- connections and transactions ------------------------------------------

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A pooled connection; outages of any kind raise Unavailable."""
        if self._pool is None:
            raise RuntimeError("PostgresDatabase.open() has not been awaited")
        pool = self._pool
        try:
            conn = await pool.acquire(timeout=self.timeout)
        except _CONNECT as exc:  # includes the acquire timeout of an exhausted pool
            raise self._unavailable(exc) from exc
        try:
            yield conn
        except Exception as exc:
            if self._is_outage(exc, conn):
                raise self._unavailable(exc) from exc
            if isinstance(exc, _REJECTED):
                raise rejected(exc) from exc
            raise
        finally:
            try:
                await pool.release(conn)
            except Exception as exc:  # the pool has dropped the connection already
                log.debug("releasing a broken connection: %s", exc)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A pooled connection inside one transaction (READ COMMITTED)."""
        async with self.connection() as conn, conn.transaction():
            yield conn

    # -- migrations -------------------------------------------------------------

    async def migrate(self) -> int:
        """Apply pending migrations; safe when several processes start at once.

        Returns the schema version. Everything runs in one transaction under a
        transaction-scoped advisory lock, so a second starter waits, then finds
        nothing left to do; a failed migration leaves no trace.
        """
        known = migrations()
        async with self.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at double precision NOT NULL)"
            )
            applied = {
                r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")
            }
            for migration in known:
                if migration.version in applied:
                    continue
                log.info("applying migration %04d_%s", migration.version, migration.name)
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    self.clock.now(),
                )
                applied.add(migration.version)
        return max(applied, default=0)

    async def schema_version(self) -> int:
        """The highest applied migration, 0 for an empty database."""
        async with self.connection() as conn:
            if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
                return 0
            version = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        return int(version)

    # -- LISTEN/NOTIFY ------------------------------------------------------------

    def on_enqueue(self, waker: Callable[[], None]) -> None:
        """Call ``waker`` on the event loop when messages may have become available."""
        self._wakers.append(waker)

    def notify_enqueued(self) -> None:
        """Wake in-process consumers at once (other processes hear the NOTIFY)."""
        for waker in self._wakers:
            waker()

    def _on_notification(self, *_: object) -> None:
        self.notify_enqueued()

    def _on_listener_lost(self, *_: object) -> None:
        self._listener = None
        # Waiters may have missed a notification: let them look again.
        self.notify_enqueued()

    async def listen(self) -> bool:
        """Make sure this process LISTENs; False while it cannot (callers poll then)."""
        if self._listener is not None and not self._listener.is_closed():
            return True
        if time.monotonic() < self._listener_retry_at:
            return False
        async with self._listener_lock:
            if self._listener is not None and not self._listener.is_closed():
                return True
            conn = None
            try:
                conn = await asyncpg.connect(
                    self.url, timeout=self.timeout, server_settings=_SERVER_SETTINGS
                )
                await conn.add_listener(CHANNEL, self._on_notification)
            except _CONNECT as exc:
                if conn is not None:
                    conn.terminate()
                self._listener_retry_at = time.monotonic() + self.retry_after
                log.warning("cannot LISTEN (%s: %s); polling instead", type(exc).__name__, exc)
                return False
            conn.add_termination_listener(self._on_listener_lost)
            self._listener = conn
            return True
