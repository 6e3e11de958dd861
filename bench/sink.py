"""A local HTTP sink that answers like Twilio's Messages endpoint, as fast as it can.

A raw asyncio protocol (keep-alive, Content-Length bodies) rather than a web
framework, so that the sink is never the bottleneck of a drain benchmark:

- ``POST /2010-04-01/Accounts/{sid}/Messages.json`` answers ``201`` with
  ``{"sid": "SM<n>", "status": "queued"}``, which the hub's Twilio adapter
  classifies as delivered;
- ``GET /stats`` answers ``{"posts": n}``, the number of messages taken;
- ``POST /reset`` sets the count back to zero.

Run as ``python -m bench.sink --port P``; it prints ``ready <port>`` on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

_MESSAGES = b"/2010-04-01/Accounts/"


class _State:
    posts = 0


class SinkProtocol(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; requests are answered in order."""

    def __init__(self, state: _State) -> None:
        self.state = state
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        out: list[bytes] = []
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = self.buffer[:end]
            length = 0
            lower = head.lower()
            at = lower.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = lower.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop >= 0 else len(head)].strip())
            total = end + 4 + length
            if len(self.buffer) < total:
                break
            line = head[: head.find(b"\r\n")] if b"\r\n" in head else head
            self.buffer = self.buffer[total:]
            out.append(self._answer(line))
        if out and self.transport is not None:
            self.transport.write(b"".join(out))

    def _answer(self, line: bytes) -> bytes:
        method, _, rest = line.partition(b" ")
        path = rest.partition(b" ")[0]
        if method == b"POST" and path.startswith(_MESSAGES) and path.endswith(b"/Messages.json"):
            self.state.posts += 1
            body = b'{"sid":"SM%032d","status":"queued"}' % self.state.posts
            return _response(b"201 Created", body)
        if method == b"GET" and path == b"/stats":
            return _response(b"200 OK", json.dumps({"posts": self.state.posts}).encode())
        if method == b"POST" and path == b"/reset":
            self.state.posts = 0
            return _response(b"200 OK", b"{}")
        return _response(b"404 Not Found", b'{"code":20404,"message":"not found"}')


def _response(status: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


async def serve(host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    state = _State()
    server = await loop.create_server(lambda: SinkProtocol(state), host, port, backlog=2048)
    bound = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"ready {bound}\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
