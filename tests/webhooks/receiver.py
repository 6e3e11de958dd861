"""A webhook receiver over real HTTP that verifies every request with the official
``standardwebhooks`` package (a verifier no one here wrote).

It keeps what it received, verified or not, and can be told to answer the next
requests with a status, a ``Retry-After``, a redirect, a long or endless body,
or to hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any
from unittest import mock

from aiohttp import web
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from providers.fake_http import FakeHttpServer, ReceivedRequest


@dataclass(frozen=True, slots=True)
class Verified:
    """A request that passed verification, with its parsed payload."""

    webhook_id: str
    payload: Any


class WebhookReceiver(FakeHttpServer):
    """Answers 200 to every request whose Standard Webhooks signature verifies, else 400."""

    def __init__(self, secret: str, *, clock: Callable[[], float] | None = None) -> None:
        super().__init__()
        # Timestamps are checked against this clock (a test's ManualClock), if given.
        self.clock = clock
        self.secrets = [secret]
        self.verified: list[Verified] = []
        self.rejected: list[ReceivedRequest] = []
        self.streams: list[tuple[int, float]] = []

    def verify(self, request: ReceivedRequest) -> Any:
        """The payload if one of the receiver's secrets verifies ``request``, else None."""
        for secret in self.secrets:
            try:
                if self.clock is None:
                    return Webhook(secret).verify(request.body, request.headers)
                with mock.patch("standardwebhooks.webhooks.datetime", _clocked(self.clock)):
                    return Webhook(secret).verify(request.body, request.headers)
            except WebhookVerificationError:
                pass
        return None

    def stream_then_hang(self, size: int, hang_seconds: float) -> None:
        """Answer the next request 200 with ``size`` bytes, then keep the body open."""
        self.streams.append((size, hang_seconds))

    async def handle(self, request: ReceivedRequest) -> web.StreamResponse:
        payload = self.verify(request)
        if payload is None:
            self.rejected.append(request)
            return web.Response(status=400, text="bad signature")
        self.verified.append(Verified(request.headers["webhook-id"], payload))
        if self.streams:
            return await self._stream(*self.streams.pop(0))
        return await self.answer(request)

    def accept(self, request: ReceivedRequest) -> web.StreamResponse:
        return web.json_response({"ok": True})

    async def _stream(self, size: int, hang_seconds: float) -> web.StreamResponse:
        async def chunks() -> AsyncIterator[bytes]:
            left = size
            while left > 0:
                step = min(left, 16 * 1024)
                left -= step
                yield b"x" * step
            await asyncio.sleep(hang_seconds)
            yield b"end"

        return web.Response(status=200, body=chunks(), content_type="text/plain")


def _clocked(clock: Callable[[], float]) -> type[datetime]:
    """``datetime`` whose ``now`` is ``clock``'s: the library checks the timestamp
    tolerance against it (everything else it verifies is unchanged)."""

    class Clocked(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Clocked:
            return cls.fromtimestamp(clock(), tz or UTC)

    return Clocked
