"""The in-flight bound answers 503 + Retry-After at once instead of queueing requests."""

from __future__ import annotations

import asyncio

import httpx
from starlette.types import Receive, Scope, Send

from integration_hub.entrypoints.api.shedding import InFlightLimit


class Gate:
    """An ASGI app whose requests wait until the gate opens."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.full = asyncio.Event()  # two requests are waiting
        self.waiting = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.waiting += 1
        if self.waiting >= 2:
            self.full.set()
        await self.open.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def test_requests_beyond_the_limit_are_refused_with_retry_after_then_served_again() -> None:
    gate = Gate()
    limited = InFlightLimit(gate, limit=2)
    transport = httpx.ASGITransport(app=limited)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        held = [asyncio.create_task(client.get("/v1/notifications")) for _ in range(2)]
        await asyncio.wait_for(gate.full.wait(), 5)
        refused = await client.post("/v1/notifications", content=b"{}")
        gate.open.set()
        served = await asyncio.gather(*held)
        again = await client.get("/v1/notifications")
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"].endswith(":overloaded")
    assert [r.status_code for r in served] == [200, 200]
    assert again.status_code == 200
    assert limited.shed == 1
    assert limited.in_flight == 0


async def test_probes_and_metrics_are_never_shed_and_zero_means_no_bound() -> None:
    gate = Gate()
    gate.open.set()
    limited = InFlightLimit(gate, limit=1)
    limited.in_flight = 1  # as if one request were being served
    unbounded = InFlightLimit(gate, limit=0)
    unbounded.in_flight = 10_000
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=limited), base_url="http://h") as a,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=unbounded), base_url="http://h") as b,
    ):
        assert (await a.get("/healthz")).status_code == 200
        assert (await a.get("/readyz")).status_code == 200
        assert (await a.get("/metrics")).status_code == 200
        assert (await a.get("/v1/notifications")).status_code == 503
        assert (await b.get("/v1/notifications")).status_code == 200
