"""A Twilio that misbehaves on purpose: 5xx, slow answers, 429 with Retry-After,
connection resets, each at a configurable rate, with a log of what it did.

It is :class:`providers.fake_twilio.FakeTwilio` (same validation, same
documented bodies) with a fault drawn for every valid request::

    twilio = FaultyTwilio(Faults(error_rate=0.5, seed=7))
    ...                                   # the hub's worker sends to twilio.base_url
    twilio.log                            # (time, body, fault) for every valid request
    twilio.delivered()                    # bodies accepted, however late

A slow answer still delivers (a provider that accepted the message after the
hub stopped waiting): that is the ambiguous timeout the checker allows one
extra delivery for.
"""

from __future__ import annotations

import contextvars
import json
import random
import socket
import struct
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from aiohttp import web

from hubs import HubProcesses
from providers.fake_http import ReceivedRequest, json_response
from providers.fake_twilio import FakeTwilio, twilio_error
from reliability.harness import served

_RAW: contextvars.ContextVar[web.Request] = contextvars.ContextVar("raw_request")


@dataclass(frozen=True)
class Faults:
    """Rates (0 to 1) of each fault; what is left over is accepted at once."""

    error_rate: float = 0.0  # 503 with a Twilio error body
    slow_rate: float = 0.0  # accepted, after ``slow_seconds``
    slow_seconds: float = 3.0
    throttle_rate: float = 0.0  # 429, code 20429, Retry-After: ``retry_after``
    retry_after: int = 1
    reset_rate: float = 0.0  # TCP reset instead of an answer
    seed: int = 0


@dataclass(frozen=True)
class Served:
    """One valid request and what the fake did with it."""

    at: float  # time.monotonic() on arrival
    body: str
    fault: str  # ok, error, slow, throttle, reset


class FaultyTwilio(FakeTwilio):
    """FakeTwilio with faults drawn per request."""

    def __init__(self, faults: Faults | None = None) -> None:
        super().__init__()
        self.faults = faults or Faults()
        self._random = random.Random(self.faults.seed)
        self.log: list[Served] = []

    def _draw(self) -> str:
        f, x = self.faults, self._random.random()
        for name, rate in (
            ("error", f.error_rate),
            ("slow", f.slow_rate),
            ("throttle", f.throttle_rate),
            ("reset", f.reset_rate),
        ):
            if x < rate:
                return name
            x -= rate
        return "ok"

    def counts(self) -> Counter[str]:
        """How often each fault was served."""
        return Counter(s.fault for s in self.log)

    def delivered(self) -> Counter[str]:
        """Accepted messages by body (a slow answer counts: it was accepted)."""
        return Counter(m["body"] for m in self.messages)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        _RAW.set(request)
        return await super()._dispatch(request)

    async def answer(self, request: ReceivedRequest) -> web.StreamResponse:
        """Serve the drawn fault, or accept."""
        fault = self._draw()
        self.log.append(Served(time.monotonic(), request.form.get("Body", ""), fault))
        if fault == "error":
            return _json(503, twilio_error(503, 20500, "Service unavailable"))
        if fault == "throttle":
            body = twilio_error(429, 20429, "Too Many Requests")
            return _json(429, body, {"Retry-After": str(self.faults.retry_after)})
        if fault == "reset":
            return self._reset()
        if fault == "slow":
            await self._wait(self.faults.slow_seconds)  # cut short when the fake stops
        return self.accept(request)

    def _reset(self) -> web.StreamResponse:
        raw = _RAW.get()
        transport = raw.transport
        assert transport is not None
        sock: socket.socket | None = transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0: close() sends RST instead of FIN, as a crashing peer does.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.close()
        return web.Response(status=500)  # never reaches the closed connection


def _json(
    status: int, body: dict[str, object], headers: dict[str, str] | None = None
) -> web.Response:
    return json_response(status, body, headers)


@contextmanager
def serving(faults: Faults | None = None) -> Iterator[FaultyTwilio]:
    """A FaultyTwilio served from a thread of this process while the block runs."""
    with served(FaultyTwilio(faults)) as fake:
        yield fake


def use_twilio(hub: HubProcesses, twilio: FakeTwilio, tenant: str = "acme") -> None:
    """Route the tenant's SMS to ``twilio``, with its credentials set through the CLI."""
    assert hub.cli("tenants", "set-provider", tenant, "sms", "twilio").returncode == 0
    path = hub.workdir / "twilio.json"
    path.write_text(json.dumps(twilio.credentials()))
    done = hub.cli("tenants", "set-credentials", tenant, "twilio", "--from-file", str(path))
    path.unlink()
    assert done.returncode == 0, done.stderr
