"""Scenario 4: a provider storm. Half the calls answer 5xx, some take longer than
the hub waits, some answer 429 with Retry-After, some reset the connection.

Every notification must end in the state its own history of faults dictates
(DONE exactly when the provider accepted one in time, FAILED after the whole
budget otherwise), with one attempt per provider call, and no retry may come
before the Retry-After the provider asked for.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from hubs import HubProcesses, payload
from reliability.faulty_provider import Faults, FaultyTwilio, serving, use_twilio
from reliability.harness import load, wait_drained
from reliability.invariants import Ledger, check, record, scale

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(600)]

BUDGET = 5
STORM = Faults(
    error_rate=0.5, slow_rate=0.05, slow_seconds=2.0, throttle_rate=0.1, reset_rate=0.1, seed=8
)


@pytest.fixture
def twilio() -> Iterator[FaultyTwilio]:
    """The faulty Twilio, served from a thread of this process."""
    with serving(STORM) as fake:
        yield fake


def sms(i: int, key: str) -> dict[str, Any]:
    """An SMS whose text is its key: the provider's log maps back to the notification."""
    return payload("US", body=key)


@pytest.mark.quick_backends("postgres")
def test_a_provider_storm_ends_every_notification_in_the_right_state(
    new_hub: Callable[..., HubProcesses], backend: str, twilio: FaultyTwilio
) -> None:
    hub = new_hub(
        IHUB_PROVIDER_TIMEOUT_SECONDS="1",
        IHUB_VISIBILITY_TIMEOUT_SECONDS="3",
        IHUB_MAX_ATTEMPTS=str(BUDGET),
    )
    use_twilio(hub, twilio)
    hub.start_api()
    hub.start_worker()
    total = scale(80)
    ledger = Ledger()
    sent = asyncio.run(load(hub, ledger, total, body=sms, countries=("US",)))
    facts = wait_drained(hub.database_url, sent, within=180, sandbox_outbox=False)
    by_key = {s.key: s.id for s in sent}
    facts.deliveries.update({by_key[b]: n for b, n in twilio.delivered().items()})
    report = check(ledger, facts, budget=BUDGET)
    served = twilio.counts()
    record("4 provider storm", backend, report, ledger, json.dumps(dict(served)))
    report.assert_ok()
    assert min(served[f] for f in ("error", "slow", "throttle", "reset")) > 0, served

    history: dict[str, list[str]] = {}
    calls: dict[str, list[float]] = {}
    for s in twilio.log:
        history.setdefault(s.body, []).append(s.fault)
        calls.setdefault(s.body, []).append(s.at)
    wrong = []
    for key, nid in by_key.items():
        row, faults = facts.rows[nid], history.get(key, [])
        # One attempt per provider call; DONE exactly when the last call was accepted in time.
        expected = "DONE" if faults and faults[-1] == "ok" else "FAILED"
        ok_budget = expected == "DONE" or len(faults) == BUDGET
        if row.status != expected or len(row.outcomes) != len(faults) or not ok_budget:
            wrong.append((nid, row.status, row.outcomes, faults))
    assert not wrong, wrong[:5]
    early = [
        (key, later - at)
        for key, faults in history.items()
        for n, (fault, at, later) in enumerate(
            zip(faults, calls[key], calls[key][1:], strict=False)
        )
        if fault == "throttle" and later - at < STORM.retry_after - 0.05
    ]
    assert not early, f"retried before Retry-After: {early[:5]}"
