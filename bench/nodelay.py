"""Run ``ihub`` with the listening socket bound as a TCP socket: a control for a fixed bug.

``integration_hub.entrypoints.runner.bind`` used to create its socket with
``socket.socket(family, SOCK_STREAM)``, whose ``proto`` is 0; asyncio sets
``TCP_NODELAY`` on accepted connections only when ``proto == IPPROTO_TCP``, so
every connection of ``ihub api`` keeps Nagle's algorithm, and uvicorn's
response (headers and body in two writes) waits for the client's delayed ACK,
about 40 ms per keep-alive request. ``runner.bind`` now passes
``IPPROTO_TCP``; this shim replaces ``bind`` with a function that does so
explicitly and is otherwise ``python -m integration_hub``, so that a
regression shows as a gain above 1x in the report:

    python -m bench.nodelay api --port 8000
"""

from __future__ import annotations

import socket
import sys


def bind(host: str, port: int) -> socket.socket:
    """``runner.bind`` with ``IPPROTO_TCP``, so asyncio disables Nagle per connection."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def main() -> None:
    """``ihub`` with the patched bind."""
    from integration_hub.entrypoints import cli, runner

    runner.bind = bind
    sys.argv[0] = "ihub"
    cli.main()


if __name__ == "__main__":
    main()
