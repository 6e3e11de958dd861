"""Scenarios 3 and 8: the database goes away under load; processes are stopped
(SIGTERM) under load. The API answers 503 with Retry-After while the database
is away, the worker pauses and resumes, graceful stops finish in-flight work,
and nothing acknowledged is lost.

Outages: on SQLite another connection holds the write lock (``BEGIN
EXCLUSIVE``) for longer than the busy timeout; on PostgreSQL the throwaway
database refuses new sessions and every backend of it is terminated
(``pg_terminate_backend``), which is what clients see when a server restarts.
The machine's PostgreSQL itself is never restarted.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import threading
import time
from collections.abc import Callable

import pytest

import pg
from hubs import HubProcesses, payload
from reliability.harness import count_status, load, wait_drained
from reliability.invariants import Ledger, check, record, scale

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(600)]

OUTAGE_SECONDS = 3.0
BUSY_TIMEOUT = "1"  # seconds: the SQLite outage outlasts it


def outage(hub: HubProcesses, backend: str, seconds: float) -> None:
    """Take the hub's database away for ``seconds``, once the worker is working.

    (A process that starts during an outage exits with an error, for its
    supervisor to restart: docs/reliability.md.)
    """
    deadline = time.monotonic() + 60
    while count_status(hub.database_url, "DONE") == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    if backend == "sqlite":
        conn = sqlite3.connect(hub.database_url.removeprefix("sqlite:///"), timeout=10)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            time.sleep(seconds)
            conn.execute("ROLLBACK")
        finally:
            conn.close()
    else:
        pg.set_connections_allowed(hub.database_url, False)
        try:
            time.sleep(seconds)
        finally:
            pg.set_connections_allowed(hub.database_url, True)


def slow(i: int, key: str) -> dict[str, object]:
    return payload(("ES", "MX", "US")[i % 3], metadata={"sandbox": {"delay": 0.2}})


def test_a_database_outage_under_load_answers_503_and_loses_nothing(
    new_hub: Callable[..., HubProcesses], backend: str
) -> None:
    # A lease longer than the outage: a worker whose provider call finished
    # keeps retrying to record it instead of leaving it to a re-claim.
    hub = new_hub(
        IHUB_SQLITE_BUSY_TIMEOUT_SECONDS=BUSY_TIMEOUT, IHUB_VISIBILITY_TIMEOUT_SECONDS="10"
    )
    hub.start_api()
    hub.start_worker()
    # A first notification proves the worker is working: the outage then starts at once.
    warm = asyncio.run(load(hub, Ledger(), 1))
    wait_drained(hub.database_url, warm)
    total = scale(150)
    faults: list[threading.Thread] = []

    def inject(done: int) -> None:
        if done == total // 4:
            fault = threading.Thread(target=outage, args=(hub, backend, OUTAGE_SECONDS))
            fault.start()
            faults.append(fault)

    ledger = Ledger()
    sent = asyncio.run(load(hub, ledger, total, body=slow, on_progress=inject))
    for fault in faults:
        fault.join()
    facts = wait_drained(hub.database_url, warm + sent, within=120)
    ledger.accepted(warm[0].key, warm[0].id)
    report = check(ledger, facts, budget=5)
    what = (
        f"write lock held {OUTAGE_SECONDS} s (busy timeout {BUSY_TIMEOUT} s)"
        if backend == "sqlite"
        else f"DB refused + backends killed {OUTAGE_SECONDS} s"
    )
    record("3 database outage", backend, report, ledger, what)
    assert ledger.errors["503"] > 0, f"the outage was never seen: {ledger.errors}"
    report.assert_ok()
    assert report.statuses == {"DONE": total + 1}, hub.logs()[-3000:]


@pytest.mark.quick_backends("postgres")
def test_sigterm_under_load_finishes_in_flight_work_and_loses_nothing(
    new_hub: Callable[..., HubProcesses], backend: str
) -> None:
    hub = new_hub(IHUB_WORKER_CONCURRENCY="8")
    api = [hub.start_api()]
    worker = [hub.start_worker("worker0")]
    total = scale(120)
    exits: list[int] = []
    restarts: list[threading.Thread] = []

    def stop_and_restart(done: int) -> None:
        def worker_cycle() -> None:
            # Stop a worker that is working (before its signal handlers exist,
            # SIGTERM simply ends a starting process).
            while count_status(hub.database_url, "DONE") == 0:
                time.sleep(0.1)
            worker[0].send_signal(signal.SIGTERM)
            exits.append(worker[0].wait(timeout=30))
            worker[0] = hub.start_worker("worker1")

        def api_cycle() -> None:
            api[0].send_signal(signal.SIGTERM)
            exits.append(api[0].wait(timeout=30))
            api[0] = hub.start_api()

        cycle = {total // 3: worker_cycle, 2 * total // 3: api_cycle}.get(done)
        if cycle is not None:
            thread = threading.Thread(target=cycle)
            thread.start()
            restarts.append(thread)

    ledger = Ledger()
    sent = asyncio.run(load(hub, ledger, total, body=slow, on_progress=stop_and_restart))
    for thread in restarts:
        thread.join()
    facts = wait_drained(hub.database_url, sent, within=120)
    report = check(ledger, facts, budget=5)
    record("8 SIGTERM worker + API", backend, report, ledger, "SIGTERM worker, SIGTERM API")
    assert exits == [0, 0], hub.logs()[-3000:]
    report.assert_ok()
    # A graceful stop abandons nothing: no attempt without an outcome, one delivery each.
    assert sum(r.ambiguous for r in facts.rows.values()) == 0
    assert report.crash_window_duplicates == 0
    assert report.statuses == {"DONE": total}
