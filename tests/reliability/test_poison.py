"""Scenario 5: poison input. Some stored requests cannot be read by the worker (as a
row written by a newer release, or damaged by hand, would be): every dispatch
of them raises. They must be dead-lettered once the attempt budget is spent,
and the rest of the queue must flow past them meanwhile.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable

import pytest

import pg
from hubs import HubProcesses
from reliability.harness import load, wait_drained
from reliability.invariants import Ledger, check, read_facts, record, scale

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(600)]

BUDGET = 3
UNREADABLE = '{"recipient": 5}'


def corrupt(database_url: str, ids: list[str]) -> None:
    """Overwrite the stored requests of ``ids`` with one no release can read."""
    if database_url.startswith("sqlite:"):
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"))
        with conn:
            conn.executemany(
                "UPDATE notifications SET request = ? WHERE id = ?", [(UNREADABLE, i) for i in ids]
            )
        conn.close()
        return
    import asyncpg  # type: ignore[import-untyped]

    async def run() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(
                "UPDATE notifications SET request = $1 WHERE id = ANY($2::text[])", UNREADABLE, ids
            )
        finally:
            await conn.close()

    pg.run_sync(run())


@pytest.mark.quick_backends("sqlite")
def test_poison_messages_are_dead_lettered_after_the_budget_without_blocking_the_queue(
    new_hub: Callable[..., HubProcesses], backend: str
) -> None:
    hub = new_hub(
        IHUB_MAX_ATTEMPTS=str(BUDGET),
        IHUB_VISIBILITY_TIMEOUT_SECONDS="1",
        IHUB_PROVIDER_TIMEOUT_SECONDS="0.5",
    )
    hub.start_api()
    total = scale(100)
    ledger = Ledger()
    sent = asyncio.run(load(hub, ledger, total))
    poison = [s.id for s in sent[:: max(1, total // 10)]]
    corrupt(hub.database_url, poison)
    hub.start_worker()
    healthy = [s for s in sent if s.id not in poison]
    # The healthy ones are not held up behind the poison: done before it is dead-lettered.
    early = wait_drained(hub.database_url, healthy, within=60)
    assert all(early.rows[s.id].status == "DONE" for s in healthy)
    facts = wait_drained(hub.database_url, sent, within=60)
    report = check(ledger, facts, budget=BUDGET)
    record("5 poison rows", backend, report, ledger, f"{len(poison)} unreadable rows")
    report.assert_ok()
    assert report.statuses == {"DONE": total - len(poison), "FAILED": len(poison)}
    assert all(facts.rows[i].status == "FAILED" for i in poison)
    assert facts.dead_letters == set(poison)
    assert read_facts(hub.database_url).rows.keys() == {s.id for s in sent}
    assert "dead-lettered" in hub.logs()
