"""An in-process hub on a real SQLite file or PostgreSQL database, served over ASGI,
with tenant acme configured for twilio, whatsapp_cloud and ses (receipt secrets
included) and tenant globex with none of them.

The providers' sends are answered by a fake directory (the provider message id
the test chooses); everything after it (the store, the receipt endpoints, the
signature checks, the suppression lists) is the real code on the real backend.
SNS certificates and SubscribeURL are served by a local HTTPS server for
``sns.us-east-1.amazonaws.com`` under a test CA (tests/providers/test_sns_receipts.py
makes it), trusted through IHUB_SNS_TEST_CA_FILE / IHUB_SNS_TEST_CONNECT_TO.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

import pg
from integration_hub.bootstrap import Hub, build_hub
from integration_hub.domain.delivery import (
    Delivered,
    DeliveryResult,
    OutboundMessage,
    ProviderCheck,
)
from integration_hub.domain.routing import Channel
from integration_hub.entrypoints.api import create_app
from integration_hub.entrypoints.tenant_admin import TenantAdmin
from integration_hub.ports import Provider
from integration_hub.service.tenants import create_tenant
from observability.obs_support import settings
from providers.test_sns_receipts import TOPIC, Pki, pki  # noqa: F401  (a fixture)

PUBLIC_URL = "https://hub.example.test/base"
TWILIO_TOKEN = "twilio-auth-token-of-acme-0123456789"
APP_SECRET = "meta-app-secret-of-acme"
VERIFY_TOKEN = "verify-token-acme"
ADMIN_TOKEN = "admin-token-for-receipt-tests"


class FakeProvider:
    """Answers each send with the next provider message id it was given."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ids: list[str] = []
        self.sent: list[OutboundMessage] = []

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        self.sent.append(message)
        return Delivered(self.ids.pop(0))

    async def check(self) -> ProviderCheck:
        return ProviderCheck(True, "fake")

    async def close(self) -> None:
        return None


class FakeDirectory:
    """One fake per provider name."""

    def __init__(self) -> None:
        self.providers: dict[str, FakeProvider] = {}

    async def get(self, tenant: str, channel: Channel, name: str) -> Provider:
        return self.providers.setdefault(name, FakeProvider(name))

    async def close(self) -> None:
        return None


@dataclass
class SnsServer:
    """The local HTTPS server standing in for sns.us-east-1.amazonaws.com."""

    port: int
    confirmations: list[str] = field(default_factory=list)


@dataclass
class Env:
    """The hub, its client, the fakes and each tenant's key."""

    hub: Hub
    client: httpx.AsyncClient
    providers: FakeDirectory
    keys: dict[str, str]
    sns: SnsServer

    def headers(self, tenant: str = "acme") -> dict[str, str]:
        """A tenant's auth headers."""
        return {"Authorization": f"Bearer {self.keys[tenant]}", "X-Tenant": tenant}

    def admin(self) -> dict[str, str]:
        """The admin API's auth header."""
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    async def submit(self, country: str, **recipient: str) -> httpx.Response:
        """POST /v1/notifications for acme."""
        body: dict[str, Any] = {"recipient": recipient, "body": "hello"}
        if "email" in recipient:
            body["subject"] = "Hi"
        headers = {
            **self.headers(),
            "X-Country": country,
            "Idempotency-Key": str(uuid.uuid4()),
        }
        return await self.client.post("/v1/notifications", json=body, headers=headers)

    async def send(self, country: str, provider: str, pmid: str, **recipient: str) -> str:
        """A notification accepted and sent (provider message id ``pmid``): its id."""
        answer = await self.submit(country, **recipient)
        assert answer.status_code == 202, answer.text
        await self.dispatch(provider, pmid)
        return str(answer.json()["id"])

    async def dispatch(self, provider: str, pmid: str | None = None) -> None:
        """Receive one queued message and run its attempt (answered with ``pmid``)."""
        if pmid is not None:
            self.providers.providers.setdefault(provider, FakeProvider(provider)).ids.append(pmid)
        [message] = await self.hub.queue.receive(1, visibility_timeout=30)
        await self.hub.dispatcher.handle(message)

    async def view(self, notification_id: str) -> dict[str, Any]:
        """GET /v1/notifications/{id} as acme."""
        path = f"/v1/notifications/{notification_id}"
        answer = await self.client.get(path, headers=self.headers())
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh SQLite file or a throwaway PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
        return
    url = pg.create_database()
    try:
        yield url
    finally:
        pg.drop_database(url)


@pytest.fixture
async def sns_server(pki: Pki) -> AsyncIterator[SnsServer]:  # noqa: F811
    """Serves the signing certificates and answers SubscribeURL visits."""
    server = SnsServer(0)

    async def pem(request: web.Request) -> web.StreamResponse:
        found = pki.pems.get(request.path)
        if found is None:
            raise web.HTTPNotFound()
        return web.Response(body=found, content_type="application/x-pem-file")

    async def confirm(request: web.Request) -> web.StreamResponse:
        server.confirmations.append(request.query_string)
        return web.Response(text="<ConfirmSubscriptionResponse/>", content_type="text/xml")

    app = web.Application()
    app.router.add_get("/", confirm)
    app.router.add_get("/{name}", pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    server.port = runner.addresses[0][1]
    try:
        yield server
    finally:
        await runner.cleanup()


async def configure(hub: Hub) -> None:
    """Tenant acme on twilio, whatsapp_cloud and ses, each with its receipt secrets."""
    admin = TenantAdmin(hub)
    await admin.set_channel_provider("acme", Channel.SMS, "twilio")
    await admin.set_channel_provider("acme", Channel.WHATSAPP, "whatsapp_cloud")
    await admin.set_channel_provider("acme", Channel.EMAIL, "ses")
    await admin.set_credentials(
        "acme",
        "twilio",
        {"account_sid": "AC" + "0" * 32, "auth_token": TWILIO_TOKEN, "from_number": "+15005550006"},
    )
    await admin.set_credentials(
        "acme",
        "whatsapp_cloud",
        {
            "phone_number_id": "1234567890",
            "access_token": "wa-access-token",
            "app_secret": APP_SECRET,
            "webhook_verify_token": VERIFY_TOKEN,
        },
    )
    await admin.set_credentials(
        "acme",
        "ses",
        {"from_address": "hub@example.com", "region": "us-east-1", "receipt_topic_arns": [TOPIC]},
    )


@pytest.fixture
async def env(database_url: str, pki: Pki, sns_server: SnsServer) -> AsyncIterator[Env]:  # noqa: F811
    """The configured hub on ``database_url`` and an ASGI client for it."""
    s = settings(
        database_url,
        public_url=PUBLIC_URL + "/",
        admin_token=ADMIN_TOKEN,
        tenant_cache_seconds=0,
        sns_test_ca_file=str(pki.ca_file),
        sns_test_connect_to=f"127.0.0.1:{sns_server.port}",
    )
    hub = await build_hub(s)
    keys = {
        name: (await create_tenant(hub.store, hub.clock, name)).api_key
        for name in ("acme", "globex")
    }
    await configure(hub)
    directory = FakeDirectory()
    hub.dispatcher.providers = directory
    app = create_app(hub=hub)
    app.state.hub = hub  # no lifespan under ASGITransport
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        try:
            yield Env(hub, client, directory, keys, sns_server)
        finally:
            await hub.close()
