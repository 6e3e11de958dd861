"""Fixtures for the acceptance suite: every hub once on SQLite, once on PostgreSQL
(skipped, or failed when CI=true, if the server is not reachable)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from hubs import BACKENDS, HubProcesses, make_hub


@pytest.fixture(params=BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    """Each backend a test's own hub runs on."""
    kind: str = request.param
    return kind


@pytest.fixture(scope="session", params=BACKENDS)
def hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HubProcesses]:
    """One API process and one worker process shared by the suite, tenants acme and globex."""
    procs = make_hub(tmp_path_factory.mktemp("hub"), request.param)
    try:
        procs.create_tenant("acme")
        procs.create_tenant("globex")
        procs.start_api()
        procs.start_worker()
        yield procs
    finally:
        procs.stop()


@pytest.fixture
def client(hub: HubProcesses) -> Iterator[httpx.Client]:
    """An HTTP client for the shared hub."""
    with httpx.Client(base_url=hub.base_url, timeout=10) as c:
        yield c
