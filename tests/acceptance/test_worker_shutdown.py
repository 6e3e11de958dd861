"""A worker stopped (SIGTERM) while attempts are in flight: it waits the shutdown grace,
then says in its log how many attempts it cut off (issue 13.5)."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import httpx

from hubs import HubProcesses, make_hub, payload, wait_terminal


def _submit_slow(client: httpx.Client, hub: HubProcesses, delay: float) -> str:
    # Only the first attempt is slow: the one cut off.
    body = payload("ES", metadata={"sandbox": {"delay": delay, "slow_times": 1}})
    headers = hub.headers("acme", X_Country="ES", Idempotency_Key=str(uuid.uuid4()))
    resp = client.post("/v1/notifications", json=body, headers=headers)
    assert resp.status_code == 202, resp.text
    notification_id: str = resp.json()["id"]
    return notification_id


def _wait_status(
    client: httpx.Client, hub: HubProcesses, notification_id: str, status: str
) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        view = client.get(f"/v1/notifications/{notification_id}", headers=hub.headers("acme"))
        if view.json()["status"] == status:
            return
        time.sleep(0.05)
    raise AssertionError(f"{notification_id} never reached {status}:\n{hub.logs()[-3000:]}")


def test_a_worker_whose_grace_runs_out_logs_how_many_attempts_it_cut_off(
    tmp_path: Path,
) -> None:
    hub = make_hub(
        tmp_path,
        IHUB_SHUTDOWN_GRACE_SECONDS="0.5",
        IHUB_PROVIDER_TIMEOUT_SECONDS="8",
        IHUB_VISIBILITY_TIMEOUT_SECONDS="9",
    )
    try:
        hub.create_tenant("acme")
        hub.start_api()
        worker = hub.start_worker("worker1")
        with httpx.Client(base_url=hub.base_url, timeout=10) as client:
            ids = [_submit_slow(client, hub, delay=6) for _ in range(2)]
            for notification_id in ids:
                _wait_status(client, hub, notification_id, "PROCESSING")
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=15) == 0, hub.logs()[-3000:]
            log = (tmp_path / "worker1.log").read_text()
            assert "shutdown grace of 0.5s ran out: cutting off 2 in-flight attempts" in log, log

            # As the warning says, their messages come back: another worker finishes them.
            hub.start_worker("worker2")
            for notification_id in ids:
                view = wait_terminal(client, hub.headers("acme"), notification_id)
                assert view["status"] == "DONE", view
    finally:
        hub.stop()


def test_a_worker_that_finishes_within_its_grace_cuts_nothing_off(tmp_path: Path) -> None:
    hub = make_hub(tmp_path, IHUB_SHUTDOWN_GRACE_SECONDS="10")
    try:
        hub.create_tenant("acme")
        hub.start_api()
        worker = hub.start_worker("worker1")
        with httpx.Client(base_url=hub.base_url, timeout=10) as client:
            notification_id = _submit_slow(client, hub, delay=1)
            _wait_status(client, hub, notification_id, "PROCESSING")
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=15) == 0, hub.logs()[-3000:]
            view = client.get(f"/v1/notifications/{notification_id}", headers=hub.headers("acme"))
            assert view.json()["status"] == "DONE", view.text
        assert "cutting off" not in (tmp_path / "worker1.log").read_text()
    finally:
        hub.stop()
