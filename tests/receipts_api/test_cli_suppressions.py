"""``ihub suppressions list|add|remove --tenant T`` on a SQLite file, and ``ihub purge``
expiring what no receipt ended."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from integration_hub.entrypoints import cli


@pytest.fixture
def database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    created = CliRunner().invoke(cli.app, ["tenants", "create", "acme", "--database", url])
    assert created.exit_code == 0, created.output
    return url


def ihub(database: str, *args: str) -> tuple[int, str]:
    done = CliRunner().invoke(cli.app, [*args, "--database", database])
    return done.exit_code, done.output


def test_add_list_and_remove_as_the_operator(database: str) -> None:
    code, out = ihub(
        database,
        "suppressions",
        "add",
        "--tenant",
        "acme",
        "--channel",
        "email",
        "--address",
        " Ana@Example.com ",
        "--note",
        "asked by phone",
        "--json",
    )
    assert code == 0, out
    added = json.loads(out)
    assert (added["address"], added["reason"], added["note"]) == (
        "ana@example.com",
        "operator",
        "asked by phone",
    )
    code, out = ihub(database, "suppressions", "list", "--tenant", "acme", "--json")
    assert code == 0, out
    assert [s["address"] for s in json.loads(out)] == ["ana@example.com"]
    code, out = ihub(database, "suppressions", "list", "--tenant", "acme")
    assert code == 0
    assert "ana@example.com" in out
    code, out = ihub(
        database,
        "suppressions",
        "remove",
        "--tenant",
        "acme",
        "--channel",
        "email",
        "--address",
        "ANA@example.com",
    )
    assert code == 0, out
    code, out = ihub(database, "suppressions", "list", "--tenant", "acme", "--json")
    assert json.loads(out) == []


def test_errors_exit_1_saying_why(database: str) -> None:
    code, out = ihub(
        database,
        "suppressions",
        "remove",
        "--tenant",
        "acme",
        "--channel",
        "sms",
        "--address",
        "+15005550001",
    )
    assert code == 1
    assert "no such suppression" in out
    code, out = ihub(
        database, "suppressions", "add", "--tenant", "acme", "--channel", "sms", "--address", "12"
    )
    assert code == 1
    assert "address is not an E.164 phone number" in out
    code, out = ihub(database, "suppressions", "list", "--tenant", "nobody")
    assert code == 1
    assert "no tenant 'nobody'" in out


def test_purge_reports_expired_deliveries(database: str) -> None:
    code, out = ihub(database, "purge", "--json")
    assert code == 0, out
    assert json.loads(out)["expired_deliveries"] == 0
