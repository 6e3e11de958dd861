"""`ihub api` and `ihub worker` as two processes on one SQLite file: the worker
notices the API's commits long before its poll interval."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hubs import HubProcesses, make_hub, payload, wait_terminal

POLL_SECONDS = 5.0
PICKUP_DEADLINE = 2.0  # generous for a loaded machine, and well below the poll


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcesses]:
    procs = make_hub(tmp_path, IHUB_POLL_INTERVAL_SECONDS=str(POLL_SECONDS))
    try:
        procs.start_api()
        procs.create_tenant("acme")
        procs.start_worker()
        yield procs
    finally:
        procs.stop()


def accept(client: httpx.Client, hub: HubProcesses) -> str:
    headers = hub.headers("acme", X_Country="ES", Idempotency_Key=str(uuid.uuid4()))
    answer = client.post("/v1/notifications", json=payload("ES"), headers=headers)
    assert answer.status_code == 202, answer.text
    notification_id: str = answer.json()["id"]
    return notification_id


def test_an_idle_worker_picks_up_another_process_commit_well_before_its_poll(
    hub: HubProcesses,
) -> None:
    headers = hub.headers("acme")
    with httpx.Client(base_url=hub.base_url, timeout=10) as client:
        # The first one may wait for the worker to start at all.
        first = wait_terminal(client, headers, accept(client, hub), timeout=30)
        assert first["status"] == "DONE", hub.logs()
        # Each next one is sent just after the worker finished the previous
        # one and went back to waiting: with only the 5 s poll it would take
        # about 5 s every time.
        for _ in range(3):
            sent = time.monotonic()
            view = wait_terminal(client, headers, accept(client, hub), timeout=POLL_SECONDS * 3)
            took = time.monotonic() - sent
            assert view["status"] == "DONE", hub.logs()
            assert took < PICKUP_DEADLINE, f"picked up after {took:.2f}s"
