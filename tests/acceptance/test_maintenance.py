"""Operator commands on every backend: `ihub migrate` and `ihub purge`."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hubs import HubProcesses, make_hub, payload, wait_terminal


@pytest.fixture
def own_hub(tmp_path: Path, backend_kind: str) -> Iterator[HubProcesses]:
    """A hub of each backend, nothing started."""
    procs = make_hub(tmp_path, backend_kind)
    try:
        yield procs
    finally:
        procs.stop()


def delivery_state(client: httpx.Client, hub: HubProcesses, nid: str) -> str | None:
    """The notification's delivery state as tenant acme sees it."""
    view = client.get(f"/v1/notifications/{nid}", headers=hub.headers("acme")).json()
    delivery = view["delivery"] or {}
    state: str | None = delivery.get("state")
    return state


def test_migrate_prints_the_schema_version_and_can_run_again(own_hub: HubProcesses) -> None:
    first = own_hub.cli("migrate")
    assert first.returncode == 0, first.stderr
    found = re.search(r"schema version: (\d+)", first.stdout)
    assert found, first.stdout
    assert int(found[1]) >= 1
    again = own_hub.cli("migrate")
    assert again.returncode == 0, again.stderr
    assert f"schema version: {found[1]}" in again.stdout


def test_purge_forgets_finished_notifications_only_once_old_enough(
    own_hub: HubProcesses,
) -> None:
    hub = own_hub
    hub.create_tenant("acme")
    hub.start_api()
    hub.start_worker()
    with httpx.Client(base_url=hub.base_url, timeout=10) as client:
        ids = []
        failing = {"metadata": {"sandbox": {"fail": "permanent"}}}
        for country, extra in (("ES", {}), ("MX", {}), ("US", failing)):
            h = hub.headers("acme", X_Country=country, Idempotency_Key=str(uuid.uuid4()))
            resp = client.post("/v1/notifications", json=payload(country, **extra), headers=h)
            assert resp.status_code == 202, resp.text
            ids.append(resp.json()["id"])
        views = [wait_terminal(client, hub.headers("acme"), nid) for nid in ids]
        assert [v["status"] for v in views] == ["DONE", "DONE", "FAILED"]
        # The sandbox's receipts (email delivered; WhatsApp delivered, read) are
        # three delivery events, purged with their notifications: wait for them.
        deadline = time.monotonic() + 20
        states: list[str | None] = []
        while states != ["delivered", "read"] and time.monotonic() < deadline:
            time.sleep(0.05)
            states = [delivery_state(client, hub, nid) for nid in ids[:2]]
        assert states == ["delivered", "read"]

        kept = hub.cli("purge", "--older-than", "3600", "--json")
        assert kept.returncode == 0, kept.stderr
        assert set(json.loads(kept.stdout).values()) == {0}

        purged = hub.cli("purge", "--older-than", "0", "--json")
        assert purged.returncode == 0, purged.stderr
        assert json.loads(purged.stdout) == {
            "notifications": 3,
            "attempts": 3,
            "dead_letters": 1,
            "outbox": 2,
            "delivery_events": 3,
            "queue": 0,
            "idempotency_keys": 0,
            # accepted, done, delivered; accepted, done, delivered, read; accepted,
            # failed: no endpoint, so no delivery.
            "webhook_events": 9,
            "webhook_deliveries": 0,
            "webhook_attempts": 0,
            "expired_deliveries": 0,
        }
        for nid in ids:
            gone = client.get(f"/v1/notifications/{nid}", headers=hub.headers("acme"))
            assert gone.status_code == 404
    assert json.loads(hub.cli("dlq", "list", "--json").stdout) == []
    assert json.loads(hub.cli("outbox", "--json").stdout) == []
    table = hub.cli("purge")
    assert table.returncode == 0, table.stderr
    assert "idempotency_keys" in table.stdout


def test_workers_purge_old_finished_notifications_on_their_own(
    tmp_path: Path, backend_kind: str
) -> None:
    procs = make_hub(
        tmp_path,
        backend_kind,
        IHUB_RETENTION_INTERVAL_SECONDS="0.5",
        IHUB_RETENTION_FINISHED_SECONDS="1",
    )
    try:
        procs.create_tenant("acme")
        procs.start_api()
        procs.start_worker()
        headers = procs.headers("acme", X_Country="ES", Idempotency_Key=str(uuid.uuid4()))
        with httpx.Client(base_url=procs.base_url, timeout=10) as client:
            nid = client.post("/v1/notifications", json=payload("ES"), headers=headers).json()["id"]
            assert wait_terminal(client, procs.headers("acme"), nid)["status"] == "DONE"
            deadline = time.monotonic() + 20
            code = 200
            while code == 200 and time.monotonic() < deadline:
                time.sleep(0.2)
                code = client.get(
                    f"/v1/notifications/{nid}", headers=procs.headers("acme")
                ).status_code
        assert code == 404, procs.logs()
    finally:
        procs.stop()
