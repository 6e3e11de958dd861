"""Helpers shared by the test suites."""

from __future__ import annotations

import itertools
import os
import random
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

from integration_hub.domain.ids import new_id
from integration_hub.domain.models import Notification, NotificationRequest, from_epoch
from integration_hub.domain.outbound import OutboundPolicy
from integration_hub.domain.routing import Channel, resolve
from integration_hub.domain.tenants import Tenant
from integration_hub.ports import Outbox, Queue, Store


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float | None = None) -> None:
        self.t = start if start is not None else time.time()

    def now(self) -> float:
        """Seconds since the epoch, as set."""
        return self.t

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.t += seconds


@dataclass
class Backend:
    """One backend's store, queue and outbox, on a clock the test controls."""

    name: str
    store: Store
    queue: Queue
    outbox: Outbox
    clock: ManualClock


def tenant(tenant_id: str = "acme", clock: ManualClock | None = None) -> Tenant:
    """A tenant value."""
    return Tenant(
        id=tenant_id, name=tenant_id.title(), created_at=from_epoch((clock or ManualClock()).now())
    )


def notification(
    tenant_id: str = "acme",
    country: str = "ES",
    *,
    clock: ManualClock | None = None,
    key: str | None = None,
    metadata: dict[str, object] | None = None,
) -> Notification:
    """A RECEIVED notification routed by the default table."""
    route = resolve(country)
    recipient = (
        {"email": "ana@example.com"}
        if route.channel is Channel.EMAIL
        else {"phone": "+5215512345678"}
    )
    now = from_epoch((clock or ManualClock()).now())
    return Notification(
        id=new_id(),
        tenant=tenant_id,
        country=country,
        channel=route.channel,
        provider=route.provider,
        request=NotificationRequest.model_validate(
            {"recipient": recipient, "subject": "s", "body": "hello", "metadata": metadata}
        ),
        idempotency_key=key or secrets.token_hex(8),
        created_at=now,
        updated_at=now,
    )


async def accept(backend: Backend, n: Notification) -> None:
    """Store a notification as the ingest service does: reserve, accept, enqueue."""
    reservation = secrets.token_hex(4)
    held = await backend.store.reserve_idempotency_key(
        n.tenant,
        n.idempotency_key,
        "fp-" + n.idempotency_key,
        reservation=reservation,
        lock_seconds=10,
    )
    assert held is None
    enqueued = await backend.store.accept(
        n, {"id": n.id}, reservation=reservation, ttl_seconds=3600
    )
    if not enqueued:
        await backend.queue.enqueue(n.id, n.tenant)


def api_gateway_event(
    method: str, path: str, key: str, body: object = None, **headers: str
) -> dict[str, object]:
    """An API Gateway HTTP API (payload 2.0) event from tenant acme with ``key``."""
    import json
    import uuid

    all_headers = {"authorization": f"Bearer {key}", "x-tenant": "acme", **headers}
    if body is not None:
        all_headers["content-type"] = "application/json"
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": all_headers,
        "isBase64Encoded": False,
        "body": json.dumps(body) if body is not None else None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api",
            "domainName": "api.example.com",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.9",
                "userAgent": "test",
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "timeEpoch": 0,
        },
    }


# The suites' fake providers listen on this machine over plain http, which the
# outbound rule refuses by default (loopback, and http without the dev
# setting): the suites widen it for them, explicitly. ``tests/conftest.py``
# puts LOCAL_OUTBOUND_ENV in the environment (in-process Settings and spawned
# hubs read it); adapters built directly take LOCAL_OUTBOUND.
LOCAL_NETWORKS = "127.0.0.0/8,::1/128"
LOCAL_OUTBOUND = OutboundPolicy.of(LOCAL_NETWORKS.split(","), allow_http=True)
LOCAL_OUTBOUND_ENV = {
    "IHUB_PROVIDER_ALLOWED_NETWORKS": LOCAL_NETWORKS,
    "IHUB_PROVIDER_ALLOW_HTTP": "true",
}


# Ports a test hands to a process that binds them later: each pytest-xdist worker
# draws from a range of its own below the kernel's ephemeral range (32768 and up,
# where bind(0) and outgoing connections take theirs), in turn from a random start.
# Parallel workers never pick the same port, and a worker does not get back a port
# it handed out moments ago, as bind(0) then close can.
PORT_RANGE_START = 20_000
PORTS_PER_WORKER = 1_500


def _worker_ports() -> Iterator[int]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) % 8 if worker.isdigit() else 0
    low = PORT_RANGE_START + index * PORTS_PER_WORKER
    start = random.randrange(PORTS_PER_WORKER)
    return (low + (start + i) % PORTS_PER_WORKER for i in itertools.count())


_PORTS = _worker_ports()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, for a process to bind."""
    for _ in range(PORTS_PER_WORKER):
        port = next(_PORTS)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # taken (by another service, or a test still holding it)
            return port
    raise RuntimeError("no free port left in this worker's range")
