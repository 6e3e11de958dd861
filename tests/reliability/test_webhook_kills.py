"""Scenario 13: the worker SIGKILLed while status webhooks are in flight (issue 16).

`ihub worker` runs the webhook delivery loop beside dispatch. A receiver that
verifies every request with the official ``standardwebhooks`` package holds
the next few requests unanswered, the worker is SIGKILLed while they hang, and
a new one is started; the killed loop's claims lapse after their lease (3 x
the 1 s timeout + 15 s) and are sent again under the same ``webhook-id``.

The checker then requires every committed status change to have exactly one
event (``event_mismatch``) and every event to have been received at least
once (``webhook_undelivered``). A repeated ``webhook-id`` must be explained:
by a request the killed loop had in flight (claimed and not finished in the
database when it died, and already received), or by an attempt the hub
recorded as timed out or cut off after sending (the receiver may have read
it). Nothing else may arrive twice.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from aiohttp import web

import pg
from hubs import HubProcesses, payload
from integration_hub.domain import webhooks
from providers.fake_http import ReceivedRequest
from reliability.harness import Sent, load, served, wait_drained
from reliability.invariants import CHECKER, Facts, Ledger, check, record, scale
from webhooks.receiver import WebhookReceiver
from webhooks.test_processes import WEBHOOK_ENV, add_endpoint

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(300)]

BUDGET = 5
KILLS = 3
# Requests held unanswered at each kill: every slot the loop has for one endpoint.
HELD = 4
# Longer than the hub's 1 s request timeout: a held request is still in flight
# when the worker dies (unless the kill came late, when its timeout is recorded).
HOLD_SECONDS = 5.0
# After a kill and before the restart: bytes the dead loop sent arrive, nothing else sends.
SETTLE_SECONDS = 0.3
ENV = {
    **WEBHOOK_ENV,
    "IHUB_WEBHOOKS_PER_ENDPOINT": str(HELD),
    "IHUB_MAX_ATTEMPTS": str(BUDGET),
}


class HoldingReceiver(WebhookReceiver):
    """The verifying receiver of tests/webhooks, noting when each verified request
    arrived; told to, it holds the next requests unanswered for ``HOLD_SECONDS``."""

    def __init__(self) -> None:
        super().__init__(webhooks.new_secret())
        self.arrivals: list[tuple[str, float]] = []  # (webhook-id, monotonic time)
        self.held = 0
        self._to_hold = 0
        self._lock = threading.Lock()  # the test's thread and the server's loop

    def hold(self, count: int) -> None:
        """Hold the next ``count`` verified requests."""
        with self._lock:
            self._to_hold, self.held = count, 0

    def release(self) -> None:
        """Hold no more requests (those held keep hanging)."""
        with self._lock:
            self._to_hold = 0

    def received(self) -> list[tuple[str, float]]:
        """Every verified request so far, in order of arrival."""
        with self._lock:
            return list(self.arrivals)

    async def answer(self, request: ReceivedRequest) -> web.StreamResponse:
        with self._lock:
            self.arrivals.append((request.headers["webhook-id"], time.monotonic()))
            holding = self._to_hold > 0
            if holding:
                self._to_hold -= 1
                self.held += 1
        if holding:
            # Popped by the answer below at once (no await between): a wait that
            # ends when the server stops.
            self.queue_delay(HOLD_SECONDS)
        return await super().answer(request)


def query(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` in the hub's database, read as the checker reads."""
    if database_url.startswith("sqlite:"):
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=10)
        try:
            return [tuple(r) for r in conn.execute(sql).fetchall()]
        finally:
            conn.close()

    async def fetch() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(database_url, server_settings={"application_name": CHECKER})
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    return pg.run_sync(fetch())


CLAIMED = (
    "SELECT event_id, claim_token FROM webhook_deliveries"
    " WHERE status = 'pending' AND claim_token IS NOT NULL"
)
UNFINISHED = (
    "SELECT (SELECT COUNT(*) FROM webhook_events WHERE NOT fanned),"
    " (SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending')"
)
# Attempts after which the receiver may have read the request although the hub never
# learnt its answer (as AMBIGUOUS_ERRORS of the invariant checker).
AMBIGUOUS = (
    "SELECT d.event_id FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id"
    " WHERE a.outcome IN ('timeout', 'connection_error')"
)


@dataclass(frozen=True)
class Kill:
    """One SIGKILL: the requests the dead loop had in flight, and when its successor started."""

    exit_code: int
    held: int
    in_flight: frozenset[str]  # webhook-ids claimed and unfinished at the death, received
    restarted_at: float


def kill_worker(
    hub: HubProcesses,
    worker: subprocess.Popen[bytes],
    receiver: HoldingReceiver,
    seen: set[str],
    name: str,
) -> tuple[Kill, subprocess.Popen[bytes]]:
    """SIGKILL ``worker``, read what its loop held, start ``name`` in its place.

    ``seen``: the claim tokens of loops killed before (a lapsed claim keeps its
    token until it is claimed again); the dead loop's own are the new ones.
    """
    worker.send_signal(signal.SIGKILL)
    code = worker.wait()
    receiver.release()
    time.sleep(SETTLE_SECONDS)
    # No loop runs now: every claim in the table is a dead loop's.
    claims = query(hub.database_url, CLAIMED)
    mine = {event for event, token in claims if token not in seen}
    seen.update(token for _, token in claims)
    arrived = {wid for wid, _ in receiver.received()}
    restarted_at = time.monotonic()
    successor = hub.start_worker(name)
    return Kill(code, receiver.held, frozenset(mine & arrived), restarted_at), successor


def body(i: int, key: str) -> dict[str, object]:
    """Every third fails twice (transiently) first: its `retrying` events are sent too."""
    country = ("ES", "MX", "US")[i % 3]
    if i % 3 == 0:
        return payload(country, metadata={"sandbox": {"fail": "transient", "times": 2}})
    return payload(country)


def wait_until(condition: Callable[[], bool], within: float) -> bool:
    """Poll ``condition`` until it holds (True) or ``within`` seconds pass (False)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def wait_received(
    hub: HubProcesses, receiver: HoldingReceiver, sent: list[Sent], within: float
) -> Facts:
    """The facts once every notification is finished, no webhook is left to send (every
    event fanned out, every delivery finished: a killed loop's claims were sent again)
    and every event was received, twice in a row (receipts add events after DONE); or
    the facts when ``within`` passes."""
    deadline = time.monotonic() + within
    last: set[str] | None = None
    while True:
        facts = wait_drained(hub.database_url, sent, within=max(1.0, deadline - time.monotonic()))
        assert facts.events is not None
        events = {e for evs in facts.events.values() for e, _ in evs}
        left = query(hub.database_url, UNFINISHED)[0]
        received = {wid for wid, _ in receiver.received()}
        done = events <= received and not any(left)
        if (done and events == last) or time.monotonic() > deadline:
            return facts
        last = events if done else None
        time.sleep(0.5)


@pytest.mark.quick_backends("sqlite", "postgres")
def test_a_worker_killed_with_webhooks_in_flight_delivers_every_event_at_least_once(
    new_hub: Callable[..., HubProcesses], backend: str
) -> None:
    hub = new_hub(**ENV)
    hub.start_api()
    wave = scale(10)
    ledger = Ledger()
    sent: list[Sent] = []
    kills: list[Kill] = []
    seen: set[str] = set()
    with served(HoldingReceiver()) as receiver:
        asyncio.run(add_endpoint(hub, "acme", receiver))
        worker = hub.start_worker("worker0")
        for k in range(KILLS):
            # A wave of load; the first requests its webhooks make hang, and the
            # worker is killed while they do (and while dispatch retries the wave).
            receiver.hold(HELD)
            sent += asyncio.run(load(hub, ledger, wave, body=body))
            wait_until(lambda: receiver.held >= HELD, within=20)
            killed, worker = kill_worker(hub, worker, receiver, seen, f"worker{k + 1}")
            kills.append(killed)
        sent += asyncio.run(load(hub, ledger, wave, body=body))
        # The killed loops' claims lapse 18 s after they were taken.
        facts = wait_received(hub, receiver, sent, within=90)
        arrivals = receiver.received()
        rejected = len(receiver.rejected)
    assert facts.events is not None
    copies = Counter(wid for wid, _ in arrivals)
    facts.webhooks_received = set(copies)
    report = check(ledger, facts, budget=BUDGET)

    in_flight = Counter(wid for kill in kills for wid in kill.in_flight)
    ambiguous = Counter(row[0] for row in query(hub.database_url, AMBIGUOUS))
    repeated = {wid: n for wid, n in copies.items() if n > 1}
    unexplained = {wid: n for wid, n in repeated.items() if n - 1 > in_flight[wid] + ambiguous[wid]}
    events = sum(len(evs) for evs in facts.events.values())
    retrying = sum(t == "notification.retrying" for evs in facts.events.values() for _, t in evs)
    faults = (
        f"{len(kills)} worker SIGKILL, {sum(len(k.in_flight) for k in kills)} webhook requests"
        f" in flight; {events} events, {len(arrivals)} webhook requests received,"
        f" {sum(n - 1 for n in repeated.values())} repeats ({len(unexplained)} unexplained,"
        f" {sum(ambiguous.values())} timed-out or cut-off attempts)"
    )
    record("13 worker SIGKILL with webhooks in flight", backend, report, ledger, faults)
    print(f"\n{faults}")

    assert [k.exit_code for k in kills] == [-signal.SIGKILL] * KILLS
    assert all(k.in_flight for k in kills), f"a kill caught no webhook in flight: {kills}"
    assert rejected == 0
    report.assert_ok()  # event_mismatch and webhook_undelivered among the rules
    assert report.statuses == {"DONE": len(sent)}, hub.logs()[-3000:]
    assert retrying > 0, "no notification.retrying event: the transient failures did not happen"
    # What a killed loop had in flight came again, under the same webhook-id.
    for kill in kills:
        again = {wid for wid, at in arrivals if at > kill.restarted_at}
        assert kill.in_flight <= again, sorted(kill.in_flight - again)
    assert not unexplained, f"received more often than kills and timeouts explain: {unexplained}"
    # A notification's deliveries to one endpoint go one after another, kills or not:
    # no event of it arrives, even again, after a later one did (a killed loop's claim
    # on an event holds back the next until it was sent again).
    position = {e: (nid, i) for nid, evs in facts.events.items() for i, (e, _) in enumerate(evs)}
    arrived: dict[str, list[int]] = {}
    for wid, _ in arrivals:
        nid, i = position[wid]
        arrived.setdefault(nid, []).append(i)
    for nid, order in arrived.items():
        assert order == sorted(order), (nid, order, facts.events[nid])
