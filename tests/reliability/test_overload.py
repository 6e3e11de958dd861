"""Scenario 7: offered load far above what the API serves at once.

The API must shed (503 + Retry-After at once) rather than let requests wait
until clients time out; its memory must stay bounded; every request a client
retried is accepted in the end, and the backlog drains.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from hubs import HubProcesses
from reliability.harness import load, wait_drained
from reliability.invariants import Ledger, check, record, scale

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(600)]

LIMIT = 8


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.quick_backends("sqlite")
def test_an_overloaded_api_sheds_with_503_and_the_backlog_drains_afterwards(
    new_hub: Callable[..., HubProcesses], backend: str
) -> None:
    if not Path("/proc/self/status").exists():
        pytest.skip("reads memory from /proc")
    hub = new_hub(IHUB_MAX_IN_FLIGHT_REQUESTS=str(LIMIT))
    api = hub.start_api()
    before = rss_mb(api.pid)
    total = scale(300)
    ledger = Ledger()
    # Twenty-five times more clients than the API serves at once, and no worker yet:
    # the backlog grows during the burst.
    sent = asyncio.run(load(hub, ledger, total, concurrency=LIMIT * 25, request_timeout=10))
    peak = rss_mb(api.pid)
    hub.start_worker()
    facts = wait_drained(hub.database_url, sent, within=120)
    report = check(ledger, facts, budget=5)
    record("7 overload", backend, report, ledger, f"{LIMIT * 25} clients, limit {LIMIT}")
    timeouts = {e: n for e, n in ledger.errors.items() if "Timeout" in e}
    assert not timeouts, f"clients timed out instead of being shed: {ledger.errors}"
    assert ledger.errors["503"] > 0, "the load never exceeded the limit"
    assert peak - before < 100, f"API memory grew from {before:.0f} to {peak:.0f} MB"
    report.assert_ok()
    assert report.statuses == {"DONE": total}
