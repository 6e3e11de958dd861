"""A scriptable local HTTP server that the provider fakes build on.

A fake is a real ``aiohttp.web`` server on 127.0.0.1 and a free port. It keeps
every request it received, validates requests like the real API, and can be
told to answer the next requests with scripted responses (errors, 429 with
``Retry-After``, non-JSON 5xx, slow answers)::

    async with FakeTwilio() as twilio:          # or: await fake.start() / fake.stop()
        twilio.queue_response(503, "<html>down</html>")
        ...  # point an adapter at twilio.base_url
        assert twilio.requests[0].form["To"] == "+15551234567"

Scripted responses are served only to requests that pass the fake's own
validation, so a malformed request still fails the way the real API fails it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl

from aiohttp import web

import support

JsonBody = dict[str, Any] | list[Any]


def unused_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (right now; safe under xdist)."""
    return support.free_port()


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One request as the fake saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    form: dict[str, str] = field(default_factory=dict)
    json: Any = None
    query: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScriptedResponse:
    """An answer queued by a test; ``delay`` makes the fake slow to answer."""

    status: int = 200
    body: str | bytes | JsonBody = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class FakeHttpServer:
    """Base of the fakes: lifecycle, request log and scripted responses."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.requests: list[ReceivedRequest] = []
        self._script: deque[ScriptedResponse] = deque()
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self.base_url = ""

    async def start(self) -> str:
        """Listen on ``host``:``port`` (0 picks a free port); return the base URL."""
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        # A short shutdown timeout: a slow scripted answer must not hold up stop().
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.base_url = f"http://{self.host}:{self.port}"
        return self.base_url

    async def stop(self) -> None:
        """Stop listening and finish pending answers at once."""
        if self._stopping is not None:
            self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def queue_response(
        self,
        status: int,
        body: str | bytes | JsonBody = b"",
        *,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer the next valid request with this response (FIFO)."""
        self._script.append(ScriptedResponse(status, body, dict(headers or {}), delay))

    def queue_delay(self, seconds: float) -> None:
        """Make the next valid request wait ``seconds`` before its normal answer."""
        self._script.append(ScriptedResponse(status=0, delay=seconds))

    async def handle(self, request: ReceivedRequest) -> web.StreamResponse:
        """Validate and answer a request like the real API; subclasses implement it."""
        raise NotImplementedError

    def accept(self, request: ReceivedRequest) -> web.StreamResponse:
        """The success answer for a request that passed validation."""
        raise NotImplementedError

    async def answer(self, request: ReceivedRequest) -> web.StreamResponse:
        """Serve the next scripted response, or ``accept`` the request."""
        if not self._script:
            return self.accept(request)
        scripted = self._script.popleft()
        if scripted.delay > 0:
            await self._wait(scripted.delay)
        if scripted.status == 0:
            return self.accept(request)
        return render(scripted)

    async def _wait(self, seconds: float) -> None:
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        received = ReceivedRequest(
            method=request.method,
            path=request.path,
            headers=dict(request.headers),
            body=body,
            form=_form(request, body),
            json=_json(request, body),
            query=dict(request.query),
        )
        self.requests.append(received)
        return await self.handle(received)


def render(scripted: ScriptedResponse) -> web.Response:
    """A scripted response as an aiohttp response."""
    headers = dict(scripted.headers)
    if isinstance(scripted.body, dict | list):
        headers.setdefault("Content-Type", "application/json")
        return web.Response(
            status=scripted.status, body=json.dumps(scripted.body).encode(), headers=headers
        )
    payload = scripted.body.encode() if isinstance(scripted.body, str) else scripted.body
    headers.setdefault("Content-Type", "text/html; charset=utf-8")
    return web.Response(status=scripted.status, body=payload, headers=headers)


def json_response(
    status: int, body: JsonBody, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON answer."""
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def _form(request: web.Request, body: bytes) -> dict[str, str]:
    if request.content_type != "application/x-www-form-urlencoded":
        return {}
    return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))


def _json(request: web.Request, body: bytes) -> Any:
    if request.content_type != "application/json":
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None
