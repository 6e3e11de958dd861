"""``ihub webhooks ...`` through typer's CliRunner on a SQLite file, as the operator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from integration_hub.entrypoints import cli

URL = "https://hooks.example.com/in"


@pytest.fixture
def database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    for tenant in ("acme", "globex"):
        created = CliRunner().invoke(cli.app, ["tenants", "create", tenant, "--database", url])
        assert created.exit_code == 0, created.output
    return url


def ihub(database: str, *args: str) -> tuple[int, str]:
    done = CliRunner().invoke(cli.app, ["webhooks", *args, "--database", database])
    return done.exit_code, done.output


def ihub_json(database: str, *args: str) -> Any:
    code, out = ihub(database, *args, "--json")
    assert code == 0, out
    return json.loads(out)


def test_create_prints_the_secret_once_and_list_and_show_never(database: str) -> None:
    created = ihub_json(
        database,
        "create",
        "--tenant",
        "acme",
        "--url",
        URL,
        "--description",
        "orders",
        "--event-type",
        "notification.done",
        "-e",
        "notification.failed",
    )
    assert created["secret"].startswith("whsec_")
    assert created["event_types"] == ["notification.done", "notification.failed"]
    listed = ihub_json(database, "list", "--tenant", "acme")
    assert [e["id"] for e in listed] == [created["id"]]
    shown = ihub_json(database, "show", "--tenant", "acme", created["id"])
    assert shown == {k: v for k, v in created.items() if k != "secret"}
    for args in (("list",), ("show", created["id"])):
        code, out = ihub(database, *args, "--tenant", "acme")
        assert code == 0, out
        assert "whsec_" not in out
    code, out = ihub(database, "list", "--tenant", "acme")
    assert created["id"] in out
    code, out = ihub(database, "create", "--tenant", "acme", "--url", URL)
    assert code == 0, out
    assert "whsec_" in out  # the table form prints it too, this once
    assert ihub_json(database, "list", "--tenant", "globex") == []


def test_update_rotate_test_deliveries_replay_and_delete(database: str) -> None:
    created = ihub_json(database, "create", "--tenant", "acme", "--url", URL)
    eid = created["id"]
    off = ihub_json(database, "update", "--tenant", "acme", eid, "--disable")
    assert (off["enabled"], off["disabled_reason"]) == (False, "by_tenant")
    code, out = ihub(database, "test", "--tenant", "acme", eid)
    assert code == 1
    assert "disabled" in out
    on = ihub_json(
        database, "update", "--tenant", "acme", eid, "--enable", "-e", "notification.done"
    )
    assert (on["enabled"], on["event_types"]) == (True, ["notification.done"])
    every = ihub_json(database, "update", "--tenant", "acme", eid, "--all-events")
    assert every["event_types"] is None
    rotated = ihub_json(database, "rotate-secret", "--tenant", "acme", eid)
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != created["secret"]
    assert rotated["previous_secret_valid_until"] is not None
    sent = ihub_json(database, "test", "--tenant", "acme", eid)
    assert sent["type"] == "webhook.test"
    code, out = ihub(database, "deliveries", "--tenant", "acme", eid)
    assert code == 0, out
    replayed = ihub_json(database, "replay", "--tenant", "acme", eid, "--since", "0")
    assert replayed["replayed"] == 1  # the test event: it was for this endpoint
    code, out = ihub(database, "replay", "--tenant", "acme", eid, "--since", "last week")
    assert code == 1
    assert "RFC 3339" in out
    code, out = ihub(database, "retry", "--tenant", "acme", eid, "dlv_nope")
    assert code == 1
    assert "no delivery" in out
    code, out = ihub(database, "delete", "--tenant", "acme", eid)
    assert code == 0, out
    assert ihub_json(database, "list", "--tenant", "acme") == []


def test_errors_exit_1_saying_why(database: str) -> None:
    code, out = ihub(database, "create", "--tenant", "acme", "--url", "https://127.0.0.1/x")
    assert code == 1
    assert "loopback" in out
    code, out = ihub(database, "create", "--tenant", "acme", "--url", URL, "-e", "order.paid")
    assert code == 1
    assert "unknown event type" in out
    code, out = ihub(database, "list", "--tenant", "nobody")
    assert code == 1
    assert "nobody" in out
    theirs = ihub_json(database, "create", "--tenant", "globex", "--url", URL)
    code, out = ihub(database, "show", "--tenant", "acme", theirs["id"])
    assert code == 1
    assert "no webhook endpoint" in out
