"""PostgreSQL goes away under a running API and worker, then comes back.

The outage is real: the database refuses new sessions
(``ALLOW_CONNECTIONS false``) and every open one is terminated, so the
processes see the same errors as when a server restarts or fails over.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import pg
from hubs import HubProcesses, make_hub, payload, wait_terminal


@pytest.fixture
def pg_hub(tmp_path: Path) -> Iterator[HubProcesses]:
    """An API and a worker on a throwaway PostgreSQL database."""
    procs = make_hub(tmp_path, "postgres")
    try:
        procs.create_tenant("acme")
        procs.start_api()
        procs.start_worker()
        yield procs
    finally:
        procs.stop()


def submit(client: httpx.Client, hub: HubProcesses, key: str, **extra: object) -> httpx.Response:
    headers = hub.headers("acme", X_Country="MX", Idempotency_Key=key)
    return client.post("/v1/notifications", json=payload("MX", **extra), headers=headers)


def wait_processing(client: httpx.Client, hub: HubProcesses, ids: list[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        views = [client.get(f"/v1/notifications/{i}", headers=hub.headers("acme")) for i in ids]
        if all(v.json()["status"] == "PROCESSING" for v in views):
            return
        time.sleep(0.05)
    raise AssertionError("never PROCESSING:\n" + hub.logs())


def test_an_outage_answers_503_with_retry_after_then_loses_nothing(pg_hub: HubProcesses) -> None:
    hub = pg_hub
    accepted: dict[str, str] = {}  # Idempotency-Key -> notification id
    with httpx.Client(base_url=hub.base_url, timeout=10) as client:
        key = str(uuid.uuid4())
        quick = submit(client, hub, key)
        assert quick.status_code == 202, quick.text
        accepted[key] = quick.json()["id"]
        # In the provider call when the database goes: they cannot record an outcome.
        in_flight = []
        for _ in range(3):
            key = str(uuid.uuid4())
            slow = submit(client, hub, key, metadata={"sandbox": {"delay": 2, "slow_times": 1}})
            assert slow.status_code == 202
            accepted[key] = slow.json()["id"]
            in_flight.append(slow.json()["id"])
        wait_processing(client, hub, in_flight)

        pg.set_connections_allowed(hub.database_url, False)
        refused: list[str] = []
        try:
            started = time.monotonic()
            while time.monotonic() - started < 3.0 or len(refused) < 5:
                key = str(uuid.uuid4())
                resp = submit(client, hub, key)
                assert resp.status_code == 503, resp.text
                assert resp.headers["content-type"] == "application/problem+json"
                assert int(resp.headers["Retry-After"]) >= 1
                assert resp.json()["type"].endswith(":unavailable")
                refused.append(key)
                time.sleep(0.1)
            status = client.get(f"/v1/notifications/{in_flight[0]}", headers=hub.headers("acme"))
            assert status.status_code == 503
            assert "Retry-After" in status.headers
            assert client.get("/healthz").status_code == 200  # alive, just not ready
            not_ready = client.get("/readyz")
            assert not_ready.status_code == 503
            assert "Retry-After" in not_ready.headers
        finally:
            pg.set_connections_allowed(hub.database_url, True)

        # Clients retry what was refused, with the same keys, as Retry-After asks.
        for key in refused:
            deadline = time.monotonic() + 15
            while (resp := submit(client, hub, key)).status_code == 503:
                assert time.monotonic() < deadline, hub.logs()
                time.sleep(0.2)
            assert resp.status_code == 202, resp.text
            assert "Idempotent-Replayed" not in resp.headers  # refused means never stored
            accepted[key] = resp.json()["id"]

        views = {nid: wait_terminal(client, hub.headers("acme"), nid) for nid in accepted.values()}
        listed = client.get(
            "/v1/notifications", headers=hub.headers("acme"), params={"limit": 100}
        ).json()
    assert {nid: v["status"] for nid, v in views.items()} == dict.fromkeys(views, "DONE"), (
        hub.logs()
    )
    assert sorted(n["id"] for n in listed["items"]) == sorted(accepted.values())
    done = hub.cli("outbox", "--limit", "100000", "--json")
    assert done.returncode == 0, done.stderr
    delivered = [e["notification_id"] for e in json.loads(done.stdout)]
    assert sorted(delivered) == sorted(accepted.values())  # one delivery each
    for nid in in_flight:
        # The attempt cut off by the outage is abandoned; the next one delivers.
        assert [a["outcome"] for a in views[nid]["attempts"]][-1] == "delivered"
        assert len(views[nid]["attempts"]) >= 2
