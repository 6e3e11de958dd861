"""Bounds on slow clients: time to send a request head and body, connections per process.

Uvicorn times out idle keep-alive connections but not a client that sends a
request head or body slowly (slowloris): each such connection holds a file
descriptor for as long as the client likes. ``GuardedH11Protocol`` adds:

- a head deadline, from the connection's start (or from the first byte of a
  later request on a keep-alive connection) until the head is complete;
- a body deadline, from the head until the body's last byte: a deadline, not
  an idle time, so a trickle of one byte a second is cut off too;
- a ceiling on open connections: beyond it a new connection is answered 503
  and closed at once, before anything of it is read.

A head or body that misses its deadline is answered 408 (unless nothing of a
request arrived, or a response was already started) and the connection closed.

Only uvicorn's h11 protocol is guarded, and it is pinned: uvicorn would switch
to httptools by itself if that were installed, and silently lose the guard.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from integration_hub.entrypoints.api import problems

log = logging.getLogger(__name__)

# What the deadline timer is waiting for (one timer per connection at most).
_NOTHING = 0  # no deadline running: idle keep-alive, or the app is answering
_FIRST_BYTE = 1  # a new connection, nothing received yet
_HEAD = 2  # part of a request head received
_BODY = 3  # head complete, body still arriving
_LINGER = 4  # answered 408, our side shut: discarding input until the client closes

# How long a connection that was answered 408 still reads (and drops) what the
# client sends: closing at once with input unread makes the kernel send a
# reset, which can destroy the 408 before the client reads it.
LINGER_SECONDS = 1.0


@dataclass(frozen=True)
class ConnectionLimits:
    """What a client gets: seconds for a request head and body, open connections."""

    head_timeout: float
    body_timeout: float
    max_connections: int


def _raw_response(status: int, reason: str, slug: str, detail: str, *extra: str) -> bytes:
    body = json.dumps(
        {"type": problems.TYPE_PREFIX + slug, "title": reason, "status": status, "detail": detail}
    ).encode()
    head = [
        f"HTTP/1.1 {status} {reason}",
        f"content-type: {problems.MEDIA_TYPE}",
        f"content-length: {len(body)}",
        "connection: close",
        *extra,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


_OVERLOADED = _raw_response(
    503,
    "Service Unavailable",
    "overloaded",
    "too many open connections to this API process; nothing was read, retry later",
    "retry-after: 1",
)


class GuardedH11Protocol(H11Protocol):
    """Uvicorn's h11 protocol with head and body deadlines and a connection ceiling."""

    limits: ConnectionLimits  # set by protocol_class()
    last_refusal_logged = float("-inf")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting_for = _NOTHING
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            # Refused before reading: the client may retry, nothing was stored.
            self._refused = True
            transport.write(_OVERLOADED)
            transport.close()
            self._log_refusal()
            return
        super().connection_made(transport)
        self._arm(_FIRST_BYTE, self.limits.head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._waiting_for == _LINGER:
            return
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # A pipelined request parsed from the buffer just now cancelled the
        # keep-alive timer: its body needs the deadline. (A pipelined partial
        # head is still under the keep-alive timer.)
        if self.conn.their_state is h11.SEND_BODY and self._waiting_for != _BODY:
            self._arm(_BODY, self.limits.body_timeout)

    def _watch(self) -> None:
        """Start, keep or stop the deadline for what the client is sending now."""
        state = self.conn.their_state
        if state is h11.IDLE:
            if self._waiting_for == _FIRST_BYTE:
                self._waiting_for = _HEAD  # the deadline still counts from the connection
            elif self._waiting_for != _HEAD:
                # Part of the next head is buffered, or the client is idle
                # between requests (uvicorn's keep-alive timeout covers that).
                if self.conn.trailing_data[0]:
                    self._arm(_HEAD, self.limits.head_timeout)
                elif self._waiting_for != _NOTHING:
                    self._disarm()
        elif state is h11.SEND_BODY:
            if self._waiting_for != _BODY:
                self._arm(_BODY, self.limits.body_timeout)
        elif self._waiting_for != _NOTHING:
            self._disarm()

    def _arm(self, waiting_for: int, seconds: float) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._waiting_for = waiting_for
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._waiting_for = _NOTHING

    def _expired(self) -> None:
        waiting_for, self._waiting_for, self._deadline = self._waiting_for, _NOTHING, None
        if self.transport.is_closing():
            return
        if waiting_for == _HEAD:
            self._timed_out("head", self.limits.head_timeout)
            self._answer_and_close(self._timeout_response("head", self.limits.head_timeout))
            return
        if waiting_for == _BODY:
            self._timed_out("body", self.limits.body_timeout)
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                # The app's receive() now answers http.disconnect, its send() is ignored.
                started = cycle.response_started
                cycle.disconnected = True
                cycle.message_event.set()
                if not started:
                    self._answer_and_close(self._timeout_response("body", self.limits.body_timeout))
                    return
        # Nothing of a request arrived (closed as an idle keep-alive connection
        # is), or a response was already sent, or the linger is over.
        self.transport.close()

    def _answer_and_close(self, response: bytes) -> None:
        self.transport.write(response)
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()  # the client sees the answer, then end of stream
        self._arm(_LINGER, LINGER_SECONDS)

    def _log_refusal(self) -> None:
        # Once a minute at most: a flood of refusals must not flood the log too.
        now = self.loop.time()
        cls = type(self)
        if now - cls.last_refusal_logged >= 60.0:
            cls.last_refusal_logged = now
            log.warning(
                "refusing new connections with 503: %d open (IHUB_MAX_CONNECTIONS)",
                len(self.connections),
            )

    def _timed_out(self, part: str, seconds: float) -> None:
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "unknown client"
        log.warning("request %s from %s not received within %g s: closed", part, client, seconds)

    @staticmethod
    def _timeout_response(part: str, seconds: float) -> bytes:
        return _raw_response(
            408,
            "Request Timeout",
            "request-timeout",
            f"the request {part} was not received within {seconds:g} s",
        )


def protocol_class(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """The protocol class to give uvicorn (``Config(http=...)``) for these limits."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits})
