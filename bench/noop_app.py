"""The ingest baseline: the hub's server stack answering a no-op endpoint.

Same stack as ``ihub api``: FastAPI behind uvicorn with the same
``uvicorn.Config`` (log level, access log, lifespan), one worker process, the
listening socket made by the hub's own ``runner.bind``, and the body parsed
into the same pydantic model, ``NotificationRequest``. With ``--nodelay`` the
socket is bound as ``bench.nodelay`` binds it (see there). It stores nothing and answers 202,
so ``hub / no-op`` measures what authentication, routing, idempotency and the
durable write cost on top of HTTP and JSON.

Run as ``python -m bench.noop_app --port P``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket

import uvicorn
from fastapi import FastAPI

from integration_hub.domain.models import NotificationRequest


def create_app() -> FastAPI:
    """A FastAPI app with one no-op ``POST /v1/notifications``."""
    app = FastAPI(title="no-op baseline")

    @app.post("/v1/notifications", status_code=202)
    async def submit(payload: NotificationRequest) -> dict[str, str]:
        return {"status": "RECEIVED", "channel": "email" if payload.recipient.email else "sms"}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def listening_socket(host: str, port: int, *, nodelay: bool) -> socket.socket:
    """The hub's own ``runner.bind`` (so a change there applies here), or the fixed one."""
    if nodelay:
        from bench.nodelay import bind

        return bind(host, port)
    from integration_hub.entrypoints.runner import bind as hub_bind

    return hub_bind(host, port)


async def serve(host: str, port: int, log_level: str, *, nodelay: bool = False) -> None:
    """Serve with the same uvicorn settings as the hub's API until a signal."""
    config = uvicorn.Config(
        create_app(), host=host, port=port, log_level=log_level, access_log=True, lifespan="on"
    )
    server = uvicorn.Server(config)
    await server.serve(sockets=[listening_socket(host, port, nodelay=nodelay)])


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--log-level", default="info")
    parser.add_argument(
        "--nodelay", action="store_true", help="bind as bench.nodelay does (TCP_NODELAY)"
    )
    args = parser.parse_args()
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    asyncio.run(serve(args.host, args.port, args.log_level, nodelay=args.nodelay))


if __name__ == "__main__":
    main()
