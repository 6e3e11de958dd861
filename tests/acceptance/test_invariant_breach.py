"""An invariant breach (a bug) is a 500 and a one-line CLI error, never a 409 or a traceback.

The breach is real: a dead letter beside a notification that is not FAILED
(a row edited by hand, a half-applied repair), so a redrive would move it
RECEIVED -> RECEIVED, which the lifecycle forbids.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from exposition import value
from hubs import FAST, HubProcesses, make_hub, payload

ADMIN = {"Authorization": f"Bearer {FAST['IHUB_ADMIN_TOKEN']}"}


@pytest.fixture
def broken(tmp_path: Path) -> Iterator[tuple[HubProcesses, str]]:
    """A hub (API only, no worker) with one RECEIVED notification that has a dead letter."""
    hub = make_hub(tmp_path)
    try:
        hub.create_tenant("acme")
        hub.start_api()
        with httpx.Client(base_url=hub.base_url, timeout=10) as client:
            accepted = client.post(
                "/v1/notifications",
                json=payload("ES"),
                headers=hub.headers("acme", X_Country="ES", Idempotency_Key="k-breach"),
            )
            assert accepted.status_code == 202, accepted.text
        notification_id: str = accepted.json()["id"]
        with sqlite3.connect(tmp_path / "hub.db") as db:
            db.execute(
                "INSERT INTO dead_letters (notification_id, tenant, reason, dead_lettered_at)"
                " VALUES (?, 'acme', 'edited by hand', ?)",
                (notification_id, time.time()),
            )
        db.close()
        yield hub, notification_id
    finally:
        hub.stop()


def test_a_breach_on_the_api_is_a_generic_500_and_is_logged_with_its_kind(
    broken: tuple[HubProcesses, str],
) -> None:
    hub, _ = broken
    with httpx.Client(base_url=hub.base_url, timeout=10) as client:
        resp = client.post("/admin/v1/tenants/acme/dead-letters/redrive", headers=ADMIN)
    assert resp.status_code == 500
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["type"] == "urn:integration-hub:problem:internal-error"
    assert "RECEIVED" not in resp.text
    assert "transition" not in resp.text
    assert "invariant breach (invalid_transition)" in hub.logs()
    scraped = httpx.get(f"{hub.base_url}/metrics", timeout=10).text
    assert value(scraped, "ihub_invariant_breaches_total", kind="invalid_transition") == 1


def test_a_breach_in_the_cli_is_one_line_and_exit_70_without_a_traceback(
    broken: tuple[HubProcesses, str],
) -> None:
    hub, notification_id = broken
    done = hub.cli("dlq", "redrive", notification_id)
    assert done.returncode == 70, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("internal error (invalid_transition):")
