"""``ihub`` commands that only the AWS backend has refuse elsewhere, saying why."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from integration_hub.entrypoints import cli


@pytest.fixture
def sqlite_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("IHUB_MASTER_KEY_FILE", str(tmp_path / "absent.key"))
    return f"sqlite:///{tmp_path / 'hub.db'}"


def test_reconcile_on_sqlite_exits_2_because_it_enqueues_in_the_accept_transaction(
    sqlite_url: str,
) -> None:
    done = CliRunner().invoke(cli.app, ["reconcile", "--database", sqlite_url])
    assert done.exit_code == 2
    assert "only the DynamoDB backend needs a reconciler" in done.output


@pytest.mark.parametrize("command", [["list", "--queue"], ["redrive", "--queue", "--all"]])
def test_the_queue_dlq_on_sqlite_exits_2_as_its_queue_has_none(
    sqlite_url: str, command: list[str]
) -> None:
    done = CliRunner().invoke(cli.app, ["dlq", *command, "--database", sqlite_url])
    assert done.exit_code == 2
    assert "has no dead-letter queue of its own" in done.output


def test_dlq_list_on_sqlite_shows_the_store_section_only(sqlite_url: str) -> None:
    done = CliRunner().invoke(cli.app, ["dlq", "list", "--database", sqlite_url])
    assert done.exit_code == 0, done.output
    assert "Dead letters in the store" in done.output
    assert "SQS" not in done.output
