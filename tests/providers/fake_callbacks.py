"""Receipts the provider fakes send back, scripted per test.

A real provider reports what happened to a message by calling the sender
back: Twilio posts a status callback to the message's ``StatusCallback``,
Meta posts webhooks to the app's configured URL, SES publishes events to an
SNS topic that posts to its HTTPS subscribers. The fakes do the same, signed
the way the provider signs, with what a test scripts::

    twilio.script(Step("sent"), Step("delivered", delay=0.1))      # the next message
    twilio.default_steps = [Step("delivered")]                      # every later one
    twilio.script(Step("read"), Step("delivered"), Step("delivered"))  # out of order, twice

By default each accepted message's steps are sent at once, in a task, each
after its ``delay``. With ``hold = True`` they wait in ``pending`` until the
test calls ``await fake.flush()``: the test can first wait for the hub to
record the send (a receipt that arrives before the send is committed is
unmatched, as it would be with the real provider), so nothing depends on
timing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from .fake_http import FakeHttpServer, ReceivedRequest, json_response


@dataclass(frozen=True, slots=True)
class Step:
    """One receipt to report: the provider's status word, its error code, a wait before it."""

    status: str
    error_code: str | None = None
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Pending:
    """A receipt waiting to be sent: the message it is about and the step."""

    message_id: str
    recipient: str
    step: Step
    url: str
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SentCallback:
    """One callback request the fake made, and what the hub answered (0: no answer)."""

    url: str
    body: bytes
    headers: dict[str, str]
    status: int
    answer: str


class Reporter:
    """The scripting and sending half of a fake that calls back (mixed into the fakes)."""

    def __init__(self) -> None:
        self.default_steps: list[Step] = []
        self.hold = False
        self.pending: list[Pending] = []
        self.callbacks: list[SentCallback] = []
        self._scripts: deque[list[Step]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def script(self, *steps: Step) -> None:
        """The receipts for the next accepted message (FIFO; then ``default_steps``)."""
        self._scripts.append(list(steps))

    def next_steps(self) -> list[Step]:
        """The steps for a message being accepted now."""
        return self._scripts.popleft() if self._scripts else list(self.default_steps)

    def report(self, items: list[Pending]) -> None:
        """Send ``items`` now in the background, or keep them for ``flush`` when holding."""
        if not items:
            return
        if self.hold:
            self.pending.extend(items)
            return
        task = asyncio.get_running_loop().create_task(self._send_all(items))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> list[SentCallback]:
        """Send every held receipt, in order, each after its delay: what the hub answered."""
        items, self.pending = self.pending, []
        start = len(self.callbacks)
        await self._send_all(items)
        return self.callbacks[start:]

    def take(self) -> list[tuple[str, bytes, dict[str, str]]]:
        """Sign every held receipt and hand it over unsent, as (url, body, headers).

        For a test that delivers them itself: on AWS, as API Gateway events
        into the API Lambda handler.
        """
        items, self.pending = self.pending, []
        return [(item.url, *self.request_for(item)) for item in items]

    async def settle(self) -> None:
        """Wait until the receipts sent in the background have all been answered."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _send_all(self, items: list[Pending]) -> None:
        for item in items:
            if item.step.delay > 0:
                await asyncio.sleep(item.step.delay)
            await self.send_one(item)

    async def send_one(self, item: Pending) -> SentCallback:
        """Sign and post one receipt; subclasses say how (``request_for``)."""
        body, headers = self.request_for(item)
        return await self.post(item.url, body, headers)

    def request_for(self, item: Pending) -> tuple[bytes, dict[str, str]]:
        """The body and headers the provider sends for ``item``."""
        raise NotImplementedError

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> SentCallback:
        """POST ``body`` to ``url`` and remember the answer (transport errors are status 0)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        try:
            async with self._session.post(url, data=body, headers=headers) as resp:
                sent = SentCallback(url, body, headers, resp.status, await resp.text())
        except (aiohttp.ClientError, TimeoutError) as exc:
            sent = SentCallback(url, body, headers, 0, repr(exc))
        self.callbacks.append(sent)
        return sent

    async def close_reporter(self) -> None:
        """Cancel what is still to be sent and close the client."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None


def answered(callbacks: list[SentCallback]) -> list[tuple[int, Any]]:
    """(status, answer) of each callback: for assertion messages."""
    return [(c.status, c.answer[:200]) for c in callbacks]


class CallbackReceiver(FakeHttpServer):
    """A stand-in for the hub's receipt endpoints: keeps every request, answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        super().__init__()
        self.status = status

    async def handle(self, request: ReceivedRequest) -> web.StreamResponse:
        """Answer every request with ``status`` and an empty JSON object."""
        return json_response(self.status, {})
