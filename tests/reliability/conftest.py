"""Fixtures of the reliability suite: a hub per test, on each backend, started by the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hubs import BACKENDS, HubProcesses, make_hub


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend a scenario runs on (PostgreSQL: skipped, or failed when CI=true)."""
    kind: str = request.param
    return kind


@pytest.fixture
def new_hub(tmp_path: Path, backend: str) -> Iterator[Callable[..., HubProcesses]]:
    """Make a hub (tenant acme created, nothing started) with extra IHUB_* settings."""
    made: list[HubProcesses] = []

    def factory(**env: str) -> HubProcesses:
        hub = make_hub(tmp_path, backend, **env)
        made.append(hub)
        hub.create_tenant("acme")
        return hub

    try:
        yield factory
    finally:
        for hub in made:
            hub.stop()
