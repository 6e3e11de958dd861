"""A hub on a real SQLite file, served over ASGI, with tenants acme and globex, for the
webhook management tests (tenant API, admin API). Its clock moves only when told to."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

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


async def web_env(tmp_path: Path, **extra: object) -> AsyncGenerator[WebEnv, None]:
    """A ``WebEnv`` on a fresh SQLite file, with ``extra`` settings."""
    clock = ManualClock(time.time())
    s = settings(
        f"sqlite:///{tmp_path / 'hub.db'}",
        admin_token=ADMIN_TOKEN,
        tenant_cache_seconds=0,
        **extra,
    )
    hub = await build_hub(s, clock=clock)
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
