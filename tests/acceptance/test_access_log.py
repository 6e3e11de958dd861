"""IHUB_ACCESS_LOG: uvicorn's line per request, on by default, off on request."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from hubs import make_hub


@pytest.mark.parametrize(("setting", "logged"), [(None, True), ("false", False)])
def test_the_access_log_follows_ihub_access_log(
    tmp_path: Path, setting: str | None, logged: bool
) -> None:
    env = {"IHUB_LOG_LEVEL": "info"}
    if setting is not None:
        env["IHUB_ACCESS_LOG"] = setting
    hub = make_hub(tmp_path, **env)
    try:
        hub.start_api()
        assert httpx.get(f"{hub.base_url}/v1/nothing-here").status_code == 404
    finally:
        hub.stop()
    log = (tmp_path / "api.log").read_text()
    assert "Application startup complete" in log  # info lines are there either way
    # The line is JSON (structured logs): its quotes come escaped.
    assert ("GET /v1/nothing-here HTTP/1.1" in log) is logged
