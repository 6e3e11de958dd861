"""What every reliability scenario shares: careful clients that keep a ledger,
an event loop thread for local servers, and waiting until the hub has drained."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import asyncpg  # type: ignore[import-untyped]
import httpx

from hubs import HubProcesses, payload
from reliability.invariants import TERMINAL, Facts, Ledger, read_facts

T = TypeVar("T")
F = TypeVar("F", bound="Serving")


class Serving(Protocol):
    """A local server a test starts and stops."""

    async def start(self) -> object: ...

    async def stop(self) -> object: ...


@dataclass(frozen=True)
class Sent:
    """One notification a client had acknowledged: what it sent and the id it got."""

    key: str
    country: str
    body: dict[str, Any]
    id: str


RETRYABLE_STATUSES = {409, 429, 503}
PG_BUSY = (asyncpg.TooManyConnectionsError, asyncpg.CannotConnectNowError)
TRANSPORT_ERRORS = (httpx.TransportError,)


class LoopThread:
    """An event loop in a thread, for the servers the hub's processes talk to."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        """Run ``coro`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=timeout)

    def stop(self) -> None:
        """Stop and close the loop."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@contextmanager
def served(fake: F) -> Iterator[F]:
    """``fake`` (a local provider server with ``start``/``stop``) served from a thread."""
    loop = LoopThread()
    loop.run(fake.start())
    try:
        yield fake
    finally:
        loop.run(fake.stop())
        loop.stop()


async def submit(
    client: httpx.AsyncClient,
    hub: HubProcesses,
    ledger: Ledger,
    key: str,
    country: str,
    body: dict[str, Any],
    *,
    tenant: str = "acme",
    within: float = 120.0,
    max_wait: float = 1.0,
) -> str:
    """POST until a 202, as a careful client does.

    A retryable answer (409, 429, 503: after its Retry-After, capped at
    ``max_wait``) or a dropped connection is retried with the same
    Idempotency-Key; every answer goes into ``ledger``. Anything else fails.
    """
    headers = hub.headers(tenant, X_Country=country, Idempotency_Key=key)
    deadline = time.monotonic() + within
    while True:
        try:
            resp = await client.post("/v1/notifications", json=body, headers=headers)
        except TRANSPORT_ERRORS as exc:
            ledger.retryable_error(key, type(exc).__name__)
            wait = 0.1
        else:
            if resp.status_code == 202:
                nid: str = resp.json()["id"]
                ledger.accepted(key, nid)
                if resp.headers.get("Idempotent-Replayed") == "true":
                    ledger.replays += 1
                return nid
            assert resp.status_code in RETRYABLE_STATUSES, (resp.status_code, resp.text)
            assert "Retry-After" in resp.headers, resp.headers
            assert resp.headers["content-type"] == "application/problem+json"
            ledger.retryable_error(key, str(resp.status_code))
            wait = min(float(resp.headers["Retry-After"]), max_wait)
        if time.monotonic() > deadline:
            raise AssertionError(f"key {key} never accepted; errors so far {ledger.errors}")
        await asyncio.sleep(wait)


async def load(
    hub: HubProcesses,
    ledger: Ledger,
    count: int,
    *,
    body: Callable[[int, str], dict[str, Any]] | None = None,
    countries: tuple[str, ...] = ("ES", "MX", "US"),
    concurrency: int = 16,
    base_url: str | None = None,
    on_progress: Callable[[int], None] | None = None,
    request_timeout: float = 30.0,
) -> list[Sent]:
    """Submit ``count`` notifications with ``concurrency`` clients; what was acknowledged.

    ``on_progress(i)`` is called after the i-th acknowledgement: scenarios
    inject their fault there, so that it lands in the middle of the load.
    """
    gate = asyncio.Semaphore(concurrency)
    done = 0
    sent: list[Sent] = []
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base_url or hub.base_url, timeout=request_timeout, limits=limits
    ) as client:

        async def one(i: int) -> None:
            nonlocal done
            key = f"rel-{uuid.uuid4()}"
            country = countries[i % len(countries)]
            data = body(i, key) if body else payload(country)
            async with gate:
                nid = await submit(client, hub, ledger, key, country, data)
            sent.append(Sent(key, country, data, nid))
            done += 1
            if on_progress is not None:
                on_progress(done)

        await asyncio.gather(*(one(i) for i in range(count)))
    return sent


async def replay(hub: HubProcesses, ledger: Ledger, sent: list[Sent]) -> int:
    """Send every acknowledged request again; how many came back marked as replays.

    The ledger flags any answer with another id than the first one.
    """
    before = ledger.replays
    async with httpx.AsyncClient(base_url=hub.base_url, timeout=30) as client:
        for s in sent:
            await submit(client, hub, ledger, s.key, s.country, s.body)
    return ledger.replays - before


def count_status(database_url: str, status: str) -> int:
    """How many notifications are in ``status`` now."""
    facts = read_facts(database_url, sandbox_outbox=False)
    return sum(1 for r in facts.rows.values() if r.status == status)


def wait_drained(
    database_url: str,
    sent: list[Sent],
    *,
    within: float = 90.0,
    sandbox_outbox: bool = True,
    interval: float = 0.25,
) -> Facts:
    """Read the facts until every acknowledged one is DONE or FAILED (or ``within`` passes).

    Reading thousands of rows holds this process's GIL: a provider fake served
    from a thread of it wants a longer ``interval``.
    """
    ids = [s.id for s in sent]
    deadline = time.monotonic() + within
    while True:
        try:
            facts = read_facts(database_url, sandbox_outbox=sandbox_outbox)
        except (OSError, *PG_BUSY) as exc:
            # The machine's PostgreSQL is shared: at its connection limit, ask again.
            if time.monotonic() > deadline:
                raise
            print(f"reading facts failed ({type(exc).__name__}); retrying")
            time.sleep(0.5)
            continue
        pending = [i for i in ids if i not in facts.rows or facts.rows[i].status not in TERMINAL]
        if not pending or time.monotonic() > deadline:
            return facts
        time.sleep(interval)
