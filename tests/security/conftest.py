"""Fixtures for the security tests: one real hub (uvicorn in its own process, SQLite file)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from hubs import HubProcesses, make_hub
from security.secfixtures import ADMIN_TOKEN, CLOSE, TENANTS, Ledger, Submitter


@pytest.fixture(scope="session")
def security_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcesses]:
    """`ihub api` on a fresh SQLite file with the security tenants; no worker, so that
    what is stored is exactly what the API accepted."""
    procs = make_hub(
        tmp_path_factory.mktemp("security-hub"),
        IHUB_ADMIN_TOKEN=ADMIN_TOKEN,
        IHUB_PUBLIC_URL="https://hub.example.test",
    )
    try:
        for tenant in TENANTS:
            procs.create_tenant(tenant)
        procs.start_api()
        yield procs
    finally:
        procs.stop()


@pytest.fixture(scope="session")
def ledger() -> Ledger:
    """Every 202 of the session, per tenant."""
    return Ledger()


@pytest.fixture
def client(security_hub: HubProcesses) -> Iterator[httpx.Client]:
    """A client that opens a connection per request (Connection: close): a 500 makes
    uvicorn drop the connection it came on, and on a kept-alive connection every
    response of this server waits ~40 ms for its last segment (Nagle and delayed ACK)."""
    with httpx.Client(base_url=security_hub.base_url, timeout=10, headers=CLOSE) as c:
        yield c


@pytest.fixture
def submitter(security_hub: HubProcesses, client: httpx.Client, ledger: Ledger) -> Submitter:
    """Submits as the hostile tenant and records what was accepted."""
    return Submitter(security_hub, client, ledger)
