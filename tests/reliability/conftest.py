"""Fixtures of the reliability suite: a hub per test, on each backend, started by the test."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hubs import BACKENDS, HubProcesses, make_hub


def full_run() -> bool:
    """`make reliability` (IHUB_RELIABILITY_SCALE set) runs every scenario on every backend."""
    return bool(os.environ.get("IHUB_RELIABILITY_SCALE"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep `make test` bounded: each scenario on its ``quick_backends`` only."""
    if full_run():
        return
    kept, dropped = [], []
    for item in items:
        marker = item.get_closest_marker("quick_backends")
        callspec = getattr(item, "callspec", None)
        chosen = callspec.params.get("backend") if callspec is not None else None
        if marker is not None and chosen is not None and chosen not in marker.args:
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


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
        # The machine's PostgreSQL is shared: a few connections per process do.
        hub = make_hub(tmp_path, backend, **{"IHUB_DATABASE_POOL_SIZE": "4", **env})
        made.append(hub)
        hub.create_tenant("acme")
        return hub

    try:
        yield factory
    finally:
        for hub in made:
            hub.stop()
