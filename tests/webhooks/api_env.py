"""A hub on a real SQLite file or PostgreSQL database, served over ASGI, with tenants acme
and globex, for the webhook management tests (tenant API, admin API). Its clock moves only
when told to."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import pg
from integration_hub.bootstrap import Hub, build_hub
from integration_hub.entrypoints.api import create_app
from integration_hub.service.tenants import create_tenant
from observability.obs_support import settings
from support import ManualClock

ADMIN_TOKEN = "admin-token-for-webhook-tests"
URL = "https://hooks.example.com/in"


@dataclass
class WebEnv:
    """The hub, its ASGI client, its clock and each tenant's key."""

    hub: Hub
    client: httpx.AsyncClient
    clock: ManualClock
    keys: dict[str, str]

    def headers(self, tenant: str = "acme") -> dict[str, str]:
        """A tenant's auth headers."""
        return {"Authorization": f"Bearer {self.keys[tenant]}", "X-Tenant": tenant}

    def admin(self) -> dict[str, str]:
        """The admin API's auth header."""
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    async def create(self, tenant: str = "acme", **body: Any) -> dict[str, Any]:
        """POST /v1/webhooks as ``tenant``: the created endpoint, secret included."""
        answer = await self.client.post(
            "/v1/webhooks", json={"url": URL, **body}, headers=self.headers(tenant)
        )
        assert answer.status_code == 201, answer.text
        created: dict[str, Any] = answer.json()
        return created

    async def submit(self, country: str = "ES") -> str:
        """POST /v1/notifications for acme: its id."""
        headers = {**self.headers(), "X-Country": country, "Idempotency-Key": str(uuid.uuid4())}
        body = {"recipient": {"email": "ana@example.com"}, "subject": "Hi", "body": "hello"}
        answer = await self.client.post("/v1/notifications", json=body, headers=headers)
        assert answer.status_code == 202, answer.text
        return str(answer.json()["id"])


async def web_env(database_url: str, **extra: object) -> AsyncGenerator[WebEnv, None]:
    """A ``WebEnv`` on ``database_url`` (emptied first), with ``extra`` settings."""
    clock = ManualClock(time.time())
    s = settings(database_url, admin_token=ADMIN_TOKEN, tenant_cache_seconds=0, **extra)
    hub = await build_hub(s, clock=clock)
    if hub.backend is not None and database_url.startswith("postgres"):
        async with hub.backend.db.connection() as conn:  # type: ignore[attr-defined]
            await pg.truncate_all(conn)
    keys = {
        name: (await create_tenant(hub.store, hub.clock, name)).api_key
        for name in ("acme", "globex")
    }
    app = create_app(hub=hub)
    app.state.hub = hub  # no lifespan under ASGITransport
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        try:
            yield WebEnv(hub, client, clock, keys)
        finally:
            await hub.close()


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """One throwaway PostgreSQL database per module (emptied by each ``web_env``)."""
    with pg.throwaway_database() as url:
        yield url


def database_for(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of the backend ``request.param`` names: a fresh SQLite file or PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url
