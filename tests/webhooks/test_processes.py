"""Webhooks from real hub processes: `ihub worker` delivers them by default,
`ihub webhooks-worker` alone, and a delivery loop killed mid-request loses
nothing (its claims lapse to the next one: at least once, same webhook-id).

SQLite and PostgreSQL; the receiver verifies every request with the official
``standardwebhooks`` package.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from hubs import BACKENDS, HubProcesses, make_hub, payload, wait_terminal
from integration_hub.bootstrap import build_hub
from integration_hub.config import Settings
from integration_hub.domain import webhooks
from integration_hub.domain.webhooks import Endpoint, SigningSecrets
from webhooks.receiver import WebhookReceiver

WEBHOOK_ENV = {
    "IHUB_WEBHOOKS_ALLOW_HTTP": "true",
    "IHUB_WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8",
    "IHUB_WEBHOOKS_POLL_INTERVAL_SECONDS": "0.1",
    # A claim's lease is 3 x timeout + 15 s: a killed loop's claims lapse in 18 s.
    "IHUB_WEBHOOKS_TIMEOUT_SECONDS": "1",
}


@pytest.fixture(params=BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver(webhooks.new_secret()) as server:
        yield server


async def add_endpoint(hub: HubProcesses, tenant: str, receiver: WebhookReceiver) -> Endpoint:
    """An endpoint for ``tenant`` at ``receiver``, written as another hub process would."""
    key = hub.env.get("IHUB_MASTER_KEY")
    settings = Settings(
        database_url=hub.database_url, master_key=None if key is None else SecretStr(key)
    )
    opened = await build_hub(settings)
    try:
        now = opened.clock.now()
        endpoint_id = webhooks.new_endpoint_id()
        sealed = await opened.credentials.seal(
            tenant,
            webhooks.sealing_purpose(endpoint_id),
            SigningSecrets(receiver.secrets[0]).as_dict(),
        )
        endpoint = Endpoint(endpoint_id, tenant, receiver.base_url + "/hooks", now, now, sealed)
        await opened.webhook_store.create_endpoint(endpoint)
        return endpoint
    finally:
        await opened.close()


# The sandbox SMS provider reports each message delivered, as a real one would.
LIFE = ["notification.accepted", "notification.done", "notification.delivered"]


async def wait_for(receiver: WebhookReceiver, count: int, seconds: float = 30) -> None:
    for _ in range(int(seconds / 0.05)):
        if len(receiver.verified) >= count:
            return
        await asyncio.sleep(0.05)


async def wait_lives(receiver: WebhookReceiver, ids: list[str], seconds: float) -> None:
    for _ in range(int(seconds / 0.05)):
        if lives(receiver) == dict.fromkeys(ids, LIFE):
            return
        await asyncio.sleep(0.05)


def send(hub: HubProcesses, tenant: str, n: int) -> list[str]:
    with httpx.Client(base_url=hub.base_url, timeout=10) as client:
        ids = []
        for i in range(n):
            resp = client.post(
                "/v1/notifications",
                json=payload("US"),
                headers=hub.headers(
                    tenant, x_country="US", idempotency_key=f"k-{i}-{time.monotonic_ns()}"
                ),
            )
            assert resp.status_code == 202, resp.text
            ids.append(resp.json()["id"])
        for nid in ids:
            assert wait_terminal(client, hub.headers(tenant), nid)["status"] == "DONE"
    return ids


def lives(receiver: WebhookReceiver) -> dict[str, list[str]]:
    """Each notification's event types as they arrived (duplicates dropped by webhook-id)."""
    seen: set[str] = set()
    found: dict[str, list[str]] = {}
    for v in receiver.verified:
        if v.webhook_id in seen:
            continue
        seen.add(v.webhook_id)
        found.setdefault(v.payload["data"]["id"], []).append(v.payload["type"])
    return found


async def test_ihub_worker_delivers_webhooks_by_default(
    tmp_path: Path, backend_kind: str, receiver: WebhookReceiver
) -> None:
    hub = make_hub(tmp_path, backend_kind, **WEBHOOK_ENV)
    try:
        hub.start_api()
        hub.create_tenant("acme")
        await add_endpoint(hub, "acme", receiver)
        hub.start_worker()
        ids = await asyncio.to_thread(send, hub, "acme", 3)
        await wait_lives(receiver, ids, 30)
        assert receiver.rejected == []
        assert lives(receiver) == dict.fromkeys(ids, LIFE), hub.logs()
    finally:
        hub.stop()


async def test_a_killed_delivery_loop_loses_nothing(
    tmp_path: Path, backend_kind: str, receiver: WebhookReceiver
) -> None:
    hub = make_hub(tmp_path, backend_kind, IHUB_WEBHOOKS_IN_WORKER="false", **WEBHOOK_ENV)
    try:
        hub.start_api()
        hub.create_tenant("acme")
        await add_endpoint(hub, "acme", receiver)
        hub.start_worker()
        ids = await asyncio.to_thread(send, hub, "acme", 4)
        # The first requests hang: the loop is killed while they are in flight.
        for _ in range(4):
            receiver.queue_delay(30)
        first = hub._spawn("webhooks-worker", log="webhooks-1.log")
        await wait_for(receiver, 4, seconds=20)
        assert len(receiver.verified) == 4, hub.logs()
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        hub._spawn("webhooks-worker", log="webhooks-2.log")
        # Its claims lapse after their lease; every event arrives at least once.
        await wait_lives(receiver, ids, 60)
        assert lives(receiver) == dict.fromkeys(ids, LIFE), hub.logs()
        redelivered = [v.webhook_id for v in receiver.verified[:4]]
        assert set(redelivered) <= {v.webhook_id for v in receiver.verified[4:]}
    finally:
        hub.stop()
