"""/readyz: ready only when store and queue answer and the schema is current; never a 500."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest

import pg
from hubs import make_hub

pytestmark = pytest.mark.acceptance


async def _execute(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def test_readyz_is_503_while_a_migration_this_release_needs_is_missing(tmp_path: Path) -> None:
    pg.require_server()
    hub = make_hub(tmp_path, "postgres")
    try:
        hub.start_api()
        with httpx.Client(base_url=hub.base_url, timeout=10) as client:
            assert client.get("/readyz").status_code == 200
            # As if the database were restored from a backup older than the release.
            pg.run_sync(
                _execute(
                    hub.database_url,
                    "CREATE TABLE hidden_migration AS SELECT * FROM schema_migrations"
                    " WHERE version = (SELECT MAX(version) FROM schema_migrations);"
                    " DELETE FROM schema_migrations WHERE version IN"
                    " (SELECT version FROM hidden_migration)",
                )
            )
            behind = client.get("/readyz")
            assert behind.status_code == 503
            assert behind.headers["content-type"] == "application/problem+json"
            assert "ihub migrate" in behind.json()["detail"]
            assert "Retry-After" in behind.headers
            assert client.get("/healthz").status_code == 200  # alive, not ready
            pg.run_sync(
                _execute(
                    hub.database_url,
                    "INSERT INTO schema_migrations SELECT * FROM hidden_migration",
                )
            )
            assert client.get("/readyz").status_code == 200
    finally:
        hub.stop()


def test_readyz_is_503_not_500_when_the_store_fails_unexpectedly(tmp_path: Path) -> None:
    hub = make_hub(tmp_path)
    try:
        hub.start_api()
        with httpx.Client(base_url=hub.base_url, timeout=10) as client:
            assert client.get("/readyz").status_code == 200
            with closing(sqlite3.connect(tmp_path / "hub.db")) as conn, conn:
                conn.execute("ALTER TABLE queue RENAME TO queue_gone")
            broken = client.get("/readyz")
            assert broken.status_code == 503, broken.text
            assert broken.headers["content-type"] == "application/problem+json"
            assert "not ready" in broken.json()["detail"]
            assert str(tmp_path) not in broken.text
    finally:
        hub.stop()
