"""Workers die and stop: a claim outlives a SIGKILL, SIGTERM finishes what is in flight."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hubs import HubProcesses, make_hub, payload, wait_terminal


@pytest.fixture
def bare_hub(tmp_path: Path, backend_kind: str) -> Iterator[HubProcesses]:
    """An API with no worker yet: each test starts and kills its own."""
    procs = make_hub(tmp_path, backend_kind)
    procs.create_tenant("acme")
    procs.start_api()
    try:
        yield procs
    finally:
        procs.stop()


def wait_status(client: httpx.Client, hub: HubProcesses, nid: str, status: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        view = client.get(f"/v1/notifications/{nid}", headers=hub.headers("acme")).json()
        if view["status"] == status:
            return
        time.sleep(0.05)
    raise AssertionError(f"{nid} never reached {status}:\n{hub.logs()}")


def deliveries(hub: HubProcesses, nid: str) -> int:
    done = hub.cli("outbox", "--limit", "100000", "--json")
    return sum(1 for e in json.loads(done.stdout) if e["notification_id"] == nid)


def test_a_killed_workers_claim_is_finished_exactly_once_after_the_lease(
    bare_hub: HubProcesses,
) -> None:
    hub = bare_hub
    with httpx.Client(base_url=hub.base_url, timeout=10) as client:
        # The first attempt hangs in the provider; later ones are quick.
        body = payload("ES", metadata={"sandbox": {"delay": 30, "slow_times": 1}})
        h = hub.headers("acme", X_Country="ES", Idempotency_Key=str(uuid.uuid4()))
        nid = client.post("/v1/notifications", json=body, headers=h).json()["id"]
        doomed = hub.start_worker("doomed")
        wait_status(client, hub, nid, "PROCESSING")
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        killed_at = time.monotonic()
        hub.start_worker("survivor")
        view = wait_terminal(client, hub.headers("acme"), nid, timeout=30)
        # Not before the 3 s lease of the dead worker's claim ran out.
        assert time.monotonic() - killed_at >= 1.0
    assert view["status"] == "DONE", hub.logs()
    assert [a["outcome"] for a in view["attempts"]] == ["abandoned", "delivered"]
    assert deliveries(hub, nid) == 1


def test_sigterm_finishes_in_flight_work_before_exiting(bare_hub: HubProcesses) -> None:
    hub = bare_hub
    with httpx.Client(base_url=hub.base_url, timeout=10) as client:
        body = payload("MX", metadata={"sandbox": {"delay": 1.5}})
        h = hub.headers("acme", X_Country="MX", Idempotency_Key=str(uuid.uuid4()))
        nid = client.post("/v1/notifications", json=body, headers=h).json()["id"]
        worker = hub.start_worker("graceful")
        wait_status(client, hub, nid, "PROCESSING")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0
        view = client.get(f"/v1/notifications/{nid}", headers=hub.headers("acme")).json()
        # Accepted after the signal: a stopped worker takes no new work.
        h2 = hub.headers("acme", X_Country="MX", Idempotency_Key=str(uuid.uuid4()))
        later = client.post("/v1/notifications", json=payload("MX"), headers=h2).json()["id"]
        time.sleep(0.5)
        untouched = client.get(f"/v1/notifications/{later}", headers=hub.headers("acme")).json()
    assert view["status"] == "DONE"
    assert [a["outcome"] for a in view["attempts"]] == ["delivered"]
    assert deliveries(hub, nid) == 1
    assert untouched["status"] == "RECEIVED"
