"""Scenarios 1, 2 and 8: workers and APIs killed (SIGKILL) or stopped (SIGTERM) under load.

Every scenario counts, with the invariant checker, that nothing acknowledged
was lost, nothing was done twice, and every duplicate delivery is explained by
an attempt a killed worker abandoned (the documented crash window).
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable

import pytest

from hubs import HubProcesses, payload
from reliability.harness import count_status, load, replay, wait_drained
from reliability.invariants import Ledger, check, record, scale

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(600)]

BUDGET = 5
SLOW = {"IHUB_VISIBILITY_TIMEOUT_SECONDS": "2", "IHUB_PROVIDER_TIMEOUT_SECONDS": "1.5"}


def slow_body(seconds: float) -> Callable[[int, str], dict[str, object]]:
    """Bodies whose provider call takes ``seconds``: workers always hold claims."""

    def body(i: int, key: str) -> dict[str, object]:
        return payload(("ES", "MX", "US")[i % 3], metadata={"sandbox": {"delay": seconds}})

    return body


@pytest.mark.quick_backends("sqlite")
def test_a_worker_killed_repeatedly_mid_call_still_finishes_everything_exactly_once(
    new_hub: Callable[..., HubProcesses], backend: str
) -> None:
    hub = new_hub(IHUB_WORKER_CONCURRENCY="8", **SLOW)
    hub.start_api()
    worker = [hub.start_worker("worker0")]
    total, kills = scale(100), 3
    killed: list[int] = []
    stop = threading.Event()

    def killer() -> None:
        # Kill only a worker that is working: one that has finished a few since it started.
        for k in range(kills):
            seen = count_status(hub.database_url, "DONE")
            while not stop.is_set() and count_status(hub.database_url, "DONE") < seen + 5:
                time.sleep(0.1)
            if stop.is_set():
                return
            worker[0].send_signal(signal.SIGKILL)
            killed.append(worker[0].wait())
            worker[0] = hub.start_worker(f"worker{k + 1}")

    thread = threading.Thread(target=killer)
    thread.start()
    ledger = Ledger()
    try:
        sent = asyncio.run(load(hub, ledger, total, body=slow_body(0.3)))
        thread.join(timeout=120)
    finally:
        stop.set()
        thread.join()
    facts = wait_drained(hub.database_url, sent, within=120)
    report = check(ledger, facts, budget=BUDGET)
    record("1 worker SIGKILL x3", backend, report, ledger, f"{len(killed)} SIGKILL")
    assert killed == [-signal.SIGKILL] * kills
    abandoned = sum(r.ambiguous for r in facts.rows.values())
    assert abandoned > 0, "no claim was held when the worker died: the crash was not exercised"
    report.assert_ok()
    assert report.statuses == {"DONE": total}, hub.logs()[-3000:]


@pytest.mark.quick_backends("sqlite")
def test_an_api_killed_under_load_keeps_every_acknowledged_id_and_replays_it(
    new_hub: Callable[..., HubProcesses], backend: str
) -> None:
    # A killed API leaves keys reserved without an answer; they answer 409 until the lock ends.
    hub = new_hub(IHUB_IDEMPOTENCY_LOCK_SECONDS="2")
    hub.start_api()
    hub.start_worker()
    total = scale(150)
    marks = {total // 3, 2 * total // 3}
    restarts: list[threading.Thread] = []

    def kill_api(done: int) -> None:
        if done not in marks:
            return
        api = next(p for p in hub.procs if p.args[3] == "api" and p.poll() is None)  # type: ignore[index]
        api.send_signal(signal.SIGKILL)
        api.wait()
        # Restarted from another thread: the clients keep retrying meanwhile.
        restart = threading.Thread(target=hub.start_api)
        restart.start()
        restarts.append(restart)

    ledger = Ledger()
    sent = asyncio.run(load(hub, ledger, total, concurrency=32, on_progress=kill_api))
    for restart in restarts:
        restart.join()

    # Every client retries once more with its key: the original answer, marked replayed.
    replays = asyncio.run(replay(hub, ledger, sent))
    facts = wait_drained(hub.database_url, sent)
    report = check(ledger, facts, budget=BUDGET)
    record("2 API SIGKILL x2", backend, report, ledger, "2 SIGKILL of the API")
    assert len(restarts) == 2
    assert any(e in ledger.errors for e in ("ConnectError", "ReadError", "RemoteProtocolError"))
    report.assert_ok()
    assert replays == total
    assert report.statuses == {"DONE": total}
