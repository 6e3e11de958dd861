"""Latency traps that a benchmark found once, pinned by behaviour (not by timing)."""

from __future__ import annotations

import socket

from integration_hub.entrypoints.runner import bind


def test_the_api_socket_says_it_is_tcp_so_asyncio_disables_nagle() -> None:
    # asyncio sets TCP_NODELAY on accepted connections only when the listening
    # socket's proto is IPPROTO_TCP; with 0, keep-alive responses waited for
    # the client's delayed ACK (~40 ms each).
    sock = bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()
